//! pf's `divert-packet port N` with the stack's divert(4) sockets, in
//! memory: host A -- r0 [router + pf] r1 -- host B. pf hands the packets
//! of the rule (and of the state it made, both ways) to the socket on
//! the port; the program reads each with the address of where it was,
//! may change it, and writes it back to be re-injected in the same
//! direction, past the hook that diverted it. No socket on the port: the
//! packet is dropped and counted (divert_packet's `divs_noport`).

use softnet_core::host::HostEvent;
use softnet_core::sock::api::DivertSocket;
use softnet_core::topo::*;
use softnet_pf::{parse_ruleset, Pf, StaticResolver};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;

fn resolver() -> StaticResolver {
    StaticResolver::new().with_interface("r0", &["10.0.1.1/24"]).with_interface("r1", &["10.0.2.1/24"])
}

fn load(pf: &Pf, rules: &str) {
    let rs = parse_ruleset(rules, "pf.conf", &resolver()).unwrap_or_else(|e| panic!("{e:?}"));
    softnet_pf::check_supported(&rs).unwrap_or_else(|e| panic!("{e:?}"));
    pf.load(&rs, &resolver()).unwrap();
}

fn lab(rules: &str) -> (TwoHosts, Pf) {
    let h = TwoHosts::new(1);
    let pf = Pf::new();
    load(&pf, rules);
    h.stack.set_filter(Some(Box::new(pf.clone())));
    (h, pf)
}

/// Every packet waiting on `s`: (packet, address).
fn drain(s: &DivertSocket) -> Vec<(Vec<u8>, IpAddr)> {
    let mut out = vec![];
    let mut buf = [0u8; 2048];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, a)) => out.push((buf[..n].to_vec(), a)),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WouldBlock);
                return out;
            }
        }
    }
}

/// Writes every packet waiting on `s` back unchanged to where it was;
/// returns their addresses.
fn reflect(h: &mut TwoHosts, s: &DivertSocket) -> Vec<IpAddr> {
    h.settle();
    let got = drain(s);
    for (p, a) in &got {
        s.send_to(p, *a).unwrap();
    }
    h.settle();
    got.into_iter().map(|(_, a)| a).collect()
}

fn bound(h: &TwoHosts, port: u16) -> DivertSocket {
    let mut s = DivertSocket::bind(&h.stack, port).unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

fn stat(h: &TwoHosts, f: impl Fn(&softnet_core::sock::divsock::DivertStats) -> &std::sync::atomic::AtomicU64) -> u64 {
    f(h.stack.socks.divert_stats()).load(Ordering::Relaxed)
}

fn echo_replies(ev: &[HostEvent]) -> usize {
    ev.iter().filter(|e| matches!(e, HostEvent::EchoReply { .. })).count()
}

fn answered(ev: &[HostEvent]) -> usize {
    ev.iter().filter(|e| matches!(e, HostEvent::EchoRequestAnswered { .. })).count()
}

const R0: IpAddr = IpAddr::V4(R0_IP);
const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[test]
fn a_diverted_connection_goes_through_the_socket_both_ways() {
    let (mut h, pf) = lab("pass\npass in on r0 proto icmp divert-packet port 700\n");
    // pfctl adds the scrub divert-packet implies (as OpenBSD's does).
    let sr = pf.show_rules(0);
    assert!(sr.contains("pass in on r0 proto icmp all scrub (reassemble tcp) divert-packet port 700"), "{sr}");
    let s = bound(&h, 700);
    for seq in 0..2 {
        h.t_ping(seq);
        // The request, from pf in on r0: the address of r0.
        assert_eq!(reflect(&mut h, &s), [R0]);
        assert_eq!(answered(&h.b.take_events()), 1, "re-injected inbound, forwarded to B");
        // B's reply leaving by r0 matches the state: diverted by pf out.
        assert_eq!(reflect(&mut h, &s), [ANY]);
        assert_eq!(echo_replies(&h.a.take_events()), 1, "re-injected outbound, sent to A");
    }
    assert_eq!(stat(&h, |s| &s.ipackets), 4);
    assert_eq!(stat(&h, |s| &s.opackets), 4);
    // The state diverts after a reload that drops its rule (pf_test
    // diverts by the state's rule, which the state keeps).
    load(&pf, "pass\n");
    h.t_ping(2);
    assert_eq!(reflect(&mut h, &s), [R0]);
    assert_eq!(reflect(&mut h, &s), [ANY]);
    assert_eq!(echo_replies(&h.a.take_events()), 1);
}

#[test]
fn what_the_program_writes_is_what_goes_on() {
    // A's datagram to B port 9 arrives at B on port 19: the program
    // changed the port, the stack filled the checksums in again.
    let (mut h, _pf) = lab("pass\npass in on r0 proto udp divert-packet port 700\n");
    let s = bound(&h, 700);
    h.a.send_udp(B_IP, 5000, 9, 32, 64);
    h.settle();
    let got = drain(&s);
    assert_eq!(got.len(), 1);
    let (mut p, a) = got.into_iter().next().unwrap();
    assert_eq!(a, R0);
    // The packet as A sent it: its own addresses, TTL not yet lowered.
    assert_eq!((&p[12..16], &p[16..20], p[8]), (&A_IP.octets()[..], &B_IP.octets()[..], 64));
    p[22..24].copy_from_slice(&19u16.to_be_bytes());
    s.send_to(&p, a).unwrap();
    h.settle();
    let ev = h.b.take_events();
    assert!(
        ev.iter().any(|e| matches!(e, HostEvent::Udp { from, dst_port: 19, src_port: 5000, .. } if *from == A_IP)),
        "{ev:?}"
    );
}

#[test]
fn without_a_socket_on_the_port_the_packet_is_dropped_and_counted() {
    let (mut h, _pf) = lab("pass\npass in on r0 proto icmp divert-packet port 700\n");
    let other = bound(&h, 701);
    h.t_ping(1);
    h.settle();
    assert_eq!(answered(&h.b.take_events()), 0);
    assert!(drain(&other).is_empty());
    assert_eq!((stat(&h, |s| &s.ipackets), stat(&h, |s| &s.noport)), (1, 1));
    // Bound now: the state's next packet gets there.
    let s = bound(&h, 700);
    h.t_ping(1);
    assert_eq!(reflect(&mut h, &s), [R0]);
    assert_eq!(answered(&h.b.take_events()), 1);
}

#[test]
fn a_stateless_rule_diverts_only_its_own_packets() {
    let (mut h, _pf) = lab("pass\npass in on r0 proto icmp divert-packet port 700 no state\n");
    let s = bound(&h, 700);
    h.t_ping(1);
    assert_eq!(reflect(&mut h, &s), [R0]);
    // B's reply is passed by `pass` on its way out: not diverted.
    assert!(drain(&s).is_empty());
    assert_eq!(echo_replies(&h.a.take_events()), 1);
}

#[test]
fn an_outbound_rule_diverts_after_pf_out_and_the_packet_leaves_past_it() {
    let (mut h, _pf) = lab("pass\npass out on r1 proto icmp divert-packet port 700\n");
    let s = bound(&h, 700);
    h.t_ping(1);
    assert_eq!(reflect(&mut h, &s), [ANY]);
    assert_eq!(answered(&h.b.take_events()), 1);
    // B's reply comes in on r1, the state's other way: diverted at pf in,
    // with r1's address.
    assert_eq!(reflect(&mut h, &s), [IpAddr::V4(R1_IP)]);
    assert_eq!(echo_replies(&h.a.take_events()), 1);
}

#[test]
fn bad_writes_are_refused_and_counted() {
    let (mut h, _pf) = lab("pass\n");
    let s = bound(&h, 700);
    assert_eq!(DivertSocket::bind(&h.stack, 700).err().map(|e| e.kind()), Some(ErrorKind::AddrInUse));
    let udp = softnet_core::host::udp_datagram(A_IP, B_IP, 1, 2, 8);
    let mut p = h.a.build_ip(B_IP, softnet_wire::ipv4::IpProtocol::UDP, 64, &udp, false);
    assert_eq!(s.send_to(&p[..p.len() - 1], ANY).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(s.send_to(&[0x45; 10], ANY).unwrap_err().kind(), ErrorKind::InvalidInput);
    let foreign = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(s.send_to(&p, foreign).unwrap_err().kind(), ErrorKind::AddrNotAvailable);
    p[3] += 1; // a total length past the end
    assert_eq!(s.send_to(&p, ANY).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(stat(&h, |s| &s.errors), 4);
    h.settle();
    assert_eq!(stat(&h, |s| &s.opackets), 0, "nothing refused was sent");
}

#[test]
fn divert_packet_with_af_to_is_refused_at_load() {
    let rs = parse_ruleset(
        "pass in on r0 inet af-to inet6 from fd00::1 to fd00::2 divert-packet port 700\n",
        "pf.conf",
        &resolver(),
    )
    .unwrap();
    let errs = softnet_pf::check_supported(&rs).unwrap_err();
    assert_eq!(errs[0].message, "divert-packet with af-to not supported yet");
}

trait Ping {
    fn t_ping(&mut self, seq: u16);
}

impl Ping for TwoHosts {
    /// A pings B (ident 1: one ICMP state for every `seq`).
    fn t_ping(&mut self, seq: u16) {
        self.a.ping(B_IP, 1, seq, 64, 8);
    }
}

#[test]
fn a_full_send_ring_waits_for_the_worker_and_nothing_is_lost() {
    let (mut h, _pf) = lab("pass\n");
    // B's address resolved first: the ARP hold queue keeps only a few.
    h.t_ping(1);
    h.settle();
    let s = bound(&h, 700);
    let udp = softnet_core::host::udp_datagram(A_IP, B_IP, 1, 2, 1000);
    let p = h.a.build_ip(B_IP, softnet_wire::ipv4::IpProtocol::UDP, 64, &udp, false);
    // Non-blocking: written until the ring is full, then WouldBlock.
    let mut n = 0;
    loop {
        match s.send_to(&p, ANY) {
            Ok(_) => n += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WouldBlock);
                break;
            }
        }
    }
    assert!(n > 10, "{n}");
    h.settle();
    let got = h.b.take_events().iter().filter(|e| matches!(e, HostEvent::Udp { dst_port: 2, .. })).count();
    assert_eq!((got as u64, stat(&h, |s| &s.opackets)), (n, n));
    // A blocking writer waits for the worker instead.
    let mut s = s;
    s.set_nonblocking(false).unwrap();
    std::thread::scope(|sc| {
        let w = sc.spawn(|| (0..3 * n).for_each(|_| assert!(s.send_to(&p, ANY).is_ok())));
        while !w.is_finished() {
            h.settle();
        }
    });
    h.settle();
    let got = h.b.take_events().iter().filter(|e| matches!(e, HostEvent::Udp { dst_port: 2, .. })).count();
    assert_eq!(got as u64, 3 * n);
}

/// The UDP datagrams to `port` B received.
fn udp_at_b(h: &mut TwoHosts, port: u16) -> usize {
    h.b.take_events().iter().filter(|e| matches!(e, HostEvent::Udp { dst_port, .. } if *dst_port == port)).count()
}

/// A's datagram to B port 9, read from the socket, its port changed to
/// `to` and written back where it was (in, on r0's address).
fn rewrite_and_write_back(h: &mut TwoHosts, s: &DivertSocket, src_port: u16, to: u16) {
    h.a.send_udp(B_IP, src_port, 9, 32, 64);
    h.settle();
    let got = drain(s);
    assert_eq!(got.len(), 1);
    let (mut p, a) = got.into_iter().next().unwrap();
    assert_eq!(a, R0);
    p[22..24].copy_from_slice(&to.to_be_bytes());
    s.send_to(&p, a).unwrap();
    h.settle();
}

/// pf.c's pf_test (today's, as since divert-packet came): a packet divert_output
/// tagged PF_TAG_DIVERTED_PACKET passes the first pf_test it meets
/// unfiltered, and that clears the tag. Written back inbound it skips pf
/// in, which diverted it (a rule that would block it there does not),
/// and when it is forwarded pf out filters it as any packet.
#[test]
fn a_packet_written_back_in_skips_pf_in_and_meets_pf_out_when_forwarded() {
    let (mut h, _pf) =
        lab("pass\nblock in quick on r0 proto udp to port 19\nblock out quick on r1 proto udp to port 29\n\
         pass in on r0 proto udp to port 9 divert-packet port 700\n");
    let s = bound(&h, 700);
    // Port 19: pf in would block it; it is past pf in.
    rewrite_and_write_back(&mut h, &s, 5000, 19);
    assert_eq!(udp_at_b(&mut h, 19), 1, "not filtered by pf in again");
    // Port 29: pf out blocks it.
    rewrite_and_write_back(&mut h, &s, 5001, 29);
    assert_eq!(udp_at_b(&mut h, 29), 0, "filtered by pf out");
    // A datagram sent to port 19 directly is blocked by pf in.
    h.a.send_udp(B_IP, 5002, 19, 32, 64);
    h.settle();
    assert_eq!(udp_at_b(&mut h, 19), 0);
    assert!(drain(&s).is_empty());
}

/// The tag cleared at pf in, the forwarded packet can be diverted again
/// by a `divert-packet` rule out; written back out, it leaves past pf
/// out and is not diverted a third time.
#[test]
fn a_packet_written_back_in_can_be_diverted_again_by_pf_out() {
    let (mut h, _pf) =
        lab("pass\npass in on r0 proto udp divert-packet port 700\npass out on r1 proto udp divert-packet port 701\n");
    let s_in = bound(&h, 700);
    let s_out = bound(&h, 701);
    h.a.send_udp(B_IP, 5000, 9, 32, 64);
    assert_eq!(reflect(&mut h, &s_in), [R0]);
    assert_eq!(udp_at_b(&mut h, 9), 0, "not yet: diverted at pf out");
    assert_eq!(reflect(&mut h, &s_out), [ANY]);
    assert_eq!(udp_at_b(&mut h, 9), 1);
    assert!(drain(&s_in).is_empty() && drain(&s_out).is_empty());
    assert_eq!((stat(&h, |s| &s.ipackets), stat(&h, |s| &s.opackets)), (2, 2));
}
