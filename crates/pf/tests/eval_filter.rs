//! Crafted IPv4 packets through `PacketFilter::test`: a default-deny
//! ruleset passing ssh and ping with states, block return, fragments,
//! ICMP errors, expiry and pflog.

use crate::common;
use common::{ip_repr, net, pf_with, pflog_records, tcp_bytes, udp_bytes, HeapBufs as Bufs};

use std::net::Ipv4Addr;
use std::sync::Arc;

use softnet_core::filter::{Decision, Direction, PacketFilter, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::pflog::{PflogQueue, PF_DROP, PF_MATCH, PF_PASS};
use softnet_pf::{parse_ruleset, Pf};
use softnet_wire::icmpv4::Icmpv4Repr;
use softnet_wire::ipv4::{IpProtocol, Ipv4Packet};
use softnet_wire::tcp::{TcpFlags, TcpPacket};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

#[allow(clippy::too_many_arguments)]
fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    len: usize,
) -> PacketBuf {
    PacketBuf::from_slice(&tcp_bytes(src, dst, sport, dport, flags, seq, ack, len))
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_bytes(src, dst, sport, dport, payload)
}

fn icmp(src: Ipv4Addr, dst: Ipv4Addr, r: Icmpv4Repr) -> PacketBuf {
    let i = ip_repr(src, dst, IpProtocol::ICMP, r.buffer_len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    r.emit(&mut b[20..]);
    PacketBuf::from_slice(&b)
}

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;

fn flags(a: TcpFlags, b: TcpFlags) -> TcpFlags {
    TcpFlags::from_bits(a.bits() | b.bits())
}

/// Runs one packet; true if it passed.
fn run(pf: &Pf, now: Instant, dir: Direction, ifp: &Interface, p: PacketBuf) -> bool {
    let mut replies = vec![];
    matches!(pf.test(0, now, dir, ifp, p, &mut Bufs, &mut replies), Verdict::Pass(_))
}

const RULES: &str =
    "block all\npass out all\npass in proto tcp to port ssh\npass in on em0 inet proto icmp icmp-type echoreq\n";

#[test]
fn default_deny_passes_ssh_and_ping_with_states() {
    let n = net();
    let pf = pf_with(&n, RULES);
    let t = Instant::from_secs(100);
    // Handshake, forwarded em0 -> em1 and back.
    assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, SYN, 1000, 0, 0)));
    assert!(run(&pf, t, Direction::Out, &n.em1, tcp(CLIENT, SERVER, 40000, 22, SYN, 1000, 0, 0)));
    assert!(run(&pf, t, Direction::In, &n.em1, tcp(SERVER, CLIENT, 22, 40000, flags(SYN, ACK), 5000, 1001, 0)));
    assert!(run(&pf, t, Direction::Out, &n.em0, tcp(SERVER, CLIENT, 22, 40000, flags(SYN, ACK), 5000, 1001, 0)));
    assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, ACK, 1001, 5001, 0)));
    assert!(run(&pf, t, Direction::Out, &n.em1, tcp(CLIENT, SERVER, 40000, 22, ACK, 1001, 5001, 0)));
    assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, ACK, 1001, 5001, 100)));
    assert_eq!(pf.state_count(), 2);
    let ss = pf.show_states(0, t);
    assert!(ss.contains("all tcp 10.0.2.2:22 <- 10.0.1.2:40000       ESTABLISHED:ESTABLISHED\n"), "{ss}");
    assert!(ss.contains("all tcp 10.0.1.2:40000 -> 10.0.2.2:22       ESTABLISHED:ESTABLISHED\n"), "{ss}");

    // Telnet is blocked; so is an unsolicited segment from the server.
    assert!(!run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40001, 23, SYN, 1, 0, 0)));
    assert!(!run(&pf, t, Direction::In, &n.em1, tcp(SERVER, CLIENT, 22, 40009, ACK, 1, 1, 0)));

    // Out of window: dropped and counted.
    assert!(!run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, ACK, 900_000, 5001, 10)));
    assert_eq!(pf.counter("state-mismatch"), Some(1));

    // Ping and its reply.
    let req = Icmpv4Repr::EchoRequest { ident: 7, seq_no: 1, data: b"ping" };
    let rep = Icmpv4Repr::EchoReply { ident: 7, seq_no: 1, data: b"ping" };
    assert!(run(&pf, t, Direction::In, &n.em0, icmp(CLIENT, SERVER, req)));
    assert!(run(&pf, t, Direction::Out, &n.em1, icmp(CLIENT, SERVER, req)));
    assert!(run(&pf, t, Direction::In, &n.em1, icmp(SERVER, CLIENT, rep)));
    assert!(run(&pf, t, Direction::Out, &n.em0, icmp(SERVER, CLIENT, rep)));
    // An echo request from the server side has no state and no rule.
    let req2 = Icmpv4Repr::EchoRequest { ident: 9, seq_no: 1, data: b"x" };
    assert!(!run(&pf, t, Direction::In, &n.em1, icmp(SERVER, CLIENT, req2)));
    let ss = pf.show_states(0, t);
    // As pf keys an echo: the id on the requester's side, the type (8) on
    // the other; pfctl prints the key as it is.
    assert!(ss.contains("all icmp 10.0.2.2:8 <- 10.0.1.2:7       0:0\n"), "{ss}");
    assert!(ss.contains("all icmp 10.0.1.2:7 -> 10.0.2.2:8       0:0\n"), "{ss}");

    // Rule counters.
    let sr = pf.show_rules(1);
    assert!(sr.contains("pass in proto tcp from any to any port = 22 flags S/SA\n  [ Evaluations: "), "{sr}");
    let si = pf.show_info(0, t);
    assert!(si.contains(&format!("  {:<25} {:>14}", "current entries", 4)), "{si}");
}

#[test]
fn icmp_error_is_matched_to_the_state_of_the_packet_it_quotes() {
    let n = net();
    let pf = pf_with(&n, RULES);
    let t = Instant::from_secs(100);
    let syn = tcp(CLIENT, SERVER, 40000, 22, SYN, 1000, 0, 0);
    let quoted = syn.data()[..28].to_vec();
    assert!(run(&pf, t, Direction::In, &n.em0, syn));
    assert!(run(&pf, t, Direction::Out, &n.em1, tcp(CLIENT, SERVER, 40000, 22, SYN, 1000, 0, 0)));
    // A router behind em1 says the server is unreachable.
    let gw = Ipv4Addr::new(10, 0, 2, 254);
    let err = Icmpv4Repr::DstUnreachable {
        code: softnet_wire::icmpv4::DstUnreachable::HostUnreachable,
        next_hop_mtu: 0,
        data: &quoted,
    };
    assert!(run(&pf, t, Direction::In, &n.em1, icmp(gw, CLIENT, err)));
    assert!(run(&pf, t, Direction::Out, &n.em0, icmp(gw, CLIENT, err)));
    // The same error quoting a sequence number far outside the window is dropped.
    let mut bad = quoted.clone();
    bad[24..28].copy_from_slice(&3_000_000_000u32.to_be_bytes());
    let err = Icmpv4Repr::DstUnreachable {
        code: softnet_wire::icmpv4::DstUnreachable::HostUnreachable,
        next_hop_mtu: 0,
        data: &bad,
    };
    assert!(!run(&pf, t, Direction::In, &n.em1, icmp(gw, CLIENT, err)));
    // An error about a connection pf never saw falls to the rules (blocked).
    let mut other = quoted.clone();
    other[20..22].copy_from_slice(&41000u16.to_be_bytes());
    let err = Icmpv4Repr::DstUnreachable {
        code: softnet_wire::icmpv4::DstUnreachable::HostUnreachable,
        next_hop_mtu: 0,
        data: &other,
    };
    assert!(!run(&pf, t, Direction::In, &n.em1, icmp(gw, CLIENT, err)));
}

#[test]
fn block_return_rst_answers_with_the_right_sequence_numbers() {
    let n = net();
    let pf = pf_with(&n, "block return-rst in proto tcp to port 23\nblock return in proto udp\n");
    let t = Instant::from_secs(1);
    let mut replies = vec![];
    let v =
        pf.test(0, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40001, 23, SYN, 1000, 0, 0), &mut Bufs, &mut replies);
    assert!(matches!(v, Verdict::Drop(_)));
    assert_eq!(replies.len(), 1);
    let r = Ipv4Packet::new_checked(replies[0].data()).unwrap();
    assert_eq!((r.src(), r.dst()), (SERVER, CLIENT));
    let th = TcpPacket::new_checked(r.payload()).unwrap();
    assert_eq!((th.src_port(), th.dst_port()), (23, 40001));
    assert_eq!((th.seq_number(), th.ack_number()), (0, 1001));
    assert!(th.flags().contains(TcpFlags::RST));
    assert!(th.verify_checksum(SERVER, CLIENT));

    // An ACK segment gets seq = its ack.
    replies.clear();
    pf.test(0, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40001, 23, ACK, 2000, 777, 10), &mut Bufs, &mut replies);
    let r = Ipv4Packet::new_checked(replies[0].data()).unwrap();
    let th = TcpPacket::new_checked(r.payload()).unwrap();
    assert_eq!((th.seq_number(), th.ack_number()), (777, 2010));

    // UDP gets port unreachable from the router's address.
    replies.clear();
    let u = PacketBuf::from_slice(&udp(CLIENT, SERVER, 5000, 53, b"q"));
    pf.test(0, t, Direction::In, &n.em0, u, &mut Bufs, &mut replies);
    let r = Ipv4Packet::new_checked(replies[0].data()).unwrap();
    assert_eq!((r.src(), r.dst(), r.protocol()), (Ipv4Addr::new(10, 0, 1, 1), CLIENT, IpProtocol::ICMP));
    assert_eq!(&r.payload()[..2], &[3, 3]);
}

#[test]
fn block_return_icmp_sends_the_code_the_rule_names() {
    let n = net();
    let pf = pf_with(&n, "block return-icmp(host-unr) in proto udp to port 8\nblock return-icmp(net-unr) in proto tcp to port 9\nblock return-icmp in proto udp to port 10\n");
    let t = Instant::from_secs(1);
    let answer = |p: PacketBuf| {
        let mut replies = vec![];
        assert!(matches!(pf.test(0, t, Direction::In, &n.em0, p, &mut Bufs, &mut replies), Verdict::Drop(_)));
        assert_eq!(replies.len(), 1);
        let r = Ipv4Packet::new_checked(replies[0].data()).unwrap();
        assert_eq!((r.dst(), r.protocol()), (CLIENT, IpProtocol::ICMP));
        // Type, code, and the quoted header's source.
        let q = Ipv4Packet::new_unchecked(&r.payload()[8..]);
        (r.payload()[0], r.payload()[1], q.src())
    };
    assert_eq!(answer(PacketBuf::from_slice(&udp(CLIENT, SERVER, 5000, 8, b"q"))), (3, 1, CLIENT));
    // return-icmp answers TCP with ICMP too, not with a RST.
    assert_eq!(answer(tcp(CLIENT, SERVER, 40000, 9, SYN, 1, 0, 0)), (3, 0, CLIENT));
    assert_eq!(answer(PacketBuf::from_slice(&udp(CLIENT, SERVER, 5000, 10, b"q"))), (3, 3, CLIENT));
}

#[test]
fn block_policy_return_makes_plain_block_answer() {
    let n = net();
    let t = Instant::from_secs(1);
    for (rules, answers) in [("block in all\n", 0), ("set block-policy return\nblock in all\n", 1)] {
        let pf = pf_with(&n, rules);
        let mut replies = vec![];
        pf.test(0, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, SYN, 1, 0, 0), &mut Bufs, &mut replies);
        let u = PacketBuf::from_slice(&udp(CLIENT, SERVER, 5000, 53, b"q"));
        pf.test(0, t, Direction::In, &n.em0, u, &mut Bufs, &mut replies);
        assert_eq!(replies.len(), 2 * answers, "{rules}");
        if answers == 1 {
            // TCP gets a RST, UDP a port unreachable.
            let r = Ipv4Packet::new_checked(replies[0].data()).unwrap();
            assert!(TcpPacket::new_checked(r.payload()).unwrap().flags().contains(TcpFlags::RST));
            let r = Ipv4Packet::new_checked(replies[1].data()).unwrap();
            assert_eq!(&r.payload()[..2], &[3, 3]);
        }
    }
}

#[test]
fn echo_reply_must_carry_the_id_of_the_request() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in on em0 inet proto icmp icmp-type echoreq\n");
    let t = Instant::from_secs(1);
    let req = Icmpv4Repr::EchoRequest { ident: 7, seq_no: 1, data: b"ping" };
    assert!(run(&pf, t, Direction::In, &n.em0, icmp(CLIENT, SERVER, req)));
    let other = Icmpv4Repr::EchoReply { ident: 8, seq_no: 1, data: b"ping" };
    assert!(!run(&pf, t, Direction::Out, &n.em0, icmp(SERVER, CLIENT, other)), "another id: no state");
    let rep = Icmpv4Repr::EchoReply { ident: 7, seq_no: 1, data: b"ping" };
    assert!(run(&pf, t, Direction::Out, &n.em0, icmp(SERVER, CLIENT, rep)));
}

#[test]
fn udp_state_expires_after_its_timeout() {
    let n = net();
    let pf = pf_with(&n, "block all\npass out proto udp\n");
    let t = Instant::from_secs(10);
    assert!(run(&pf, t, Direction::Out, &n.em1, PacketBuf::from_slice(&udp(CLIENT, SERVER, 5000, 53, b"q"))));
    let ss = pf.show_states(0, t);
    assert_eq!(ss, "all udp 10.0.1.2:5000 -> 10.0.2.2:53       SINGLE:NO_TRAFFIC\n");
    // The answer passes through the state.
    assert!(run(&pf, t, Direction::In, &n.em1, PacketBuf::from_slice(&udp(SERVER, CLIENT, 53, 5000, b"a"))));
    assert!(pf.show_states(0, t).contains("MULTIPLE:SINGLE"));
    // udp.single is 30 s after the last packet.
    assert_eq!(pf.expire_states(Instant::from_secs(39)), 0);
    assert_eq!(pf.expire_states(Instant::from_secs(41)), 1);
    assert_eq!(pf.state_count(), 0);
    assert!(!run(&pf, t, Direction::In, &n.em1, PacketBuf::from_slice(&udp(SERVER, CLIENT, 53, 5000, b"a"))));
}

/// A fragment of the datagram `whole` (20-byte header): `data` at byte
/// offset `off` of its payload, more fragments to come or not.
fn fragment(whole: &[u8], off: usize, data: &[u8], more: bool) -> PacketBuf {
    let mut b = whole[..20].to_vec();
    b.extend_from_slice(data);
    let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
    p.set_total_len((20 + data.len()) as u16);
    p.set_flags_frag(false, more, off as u16);
    p.fill_checksum();
    PacketBuf::from_slice(&b)
}

/// With reassembly on, pf's rules see whole datagrams: a `fragment` rule
/// matches none, fragmented or not.
#[test]
fn fragment_rules_never_see_reassembled_datagrams() {
    let n = net();
    let pf = pf_with(&n, "pass in\nblock in fragment\n");
    let t = Instant::from_secs(1);
    let whole = udp(CLIENT, SERVER, 5000, 53, &[0x5a; 100]);
    let payload = &whole[20..];
    let mut replies = vec![];
    let v = pf.test(0, t, Direction::In, &n.em0, fragment(&whole, 64, &payload[64..], false), &mut Bufs, &mut replies);
    assert!(matches!(v, Verdict::Consumed));
    let v = pf.test(0, t, Direction::In, &n.em0, fragment(&whole, 0, &payload[..64], true), &mut Bufs, &mut replies);
    assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
    let v = pf.test(0, t, Direction::In, &n.em0, PacketBuf::from_slice(&whole), &mut Bufs, &mut replies);
    assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
}

#[test]
fn fragments_are_reassembled_before_filtering() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in proto udp to port 53\n");
    let t = Instant::from_secs(1);
    let whole = udp(CLIENT, SERVER, 5000, 53, &[0x5a; 100]);
    let payload = &whole[20..];
    let frag = |off: usize, data: &[u8], more: bool| fragment(&whole, off, data, more);
    let mut replies = vec![];
    let v = pf.test(0, t, Direction::In, &n.em0, frag(64, &payload[64..], false), &mut Bufs, &mut replies);
    assert!(matches!(v, Verdict::Consumed));
    // A fragment overlapping the held one is kept (pf_reassemble trims
    // the held one's head: the newer data wins there); one wholly inside
    // a held one is dropped.
    let v = pf.test(0, t, Direction::In, &n.em0, frag(56, &payload[56..72], true), &mut Bufs, &mut replies);
    assert!(matches!(v, Verdict::Consumed), "{v:?}");
    let v = pf.test(0, t, Direction::In, &n.em0, frag(64, &payload[64..72], true), &mut Bufs, &mut replies);
    assert!(matches!(v, Verdict::Drop(_)), "{v:?}");
    assert_eq!(pf.counter("fragment"), Some(1));
    let v = pf.test(0, t, Direction::In, &n.em0, frag(0, &payload[..64], true), &mut Bufs, &mut replies);
    let Verdict::Pass(p) = v else { panic!("reassembled datagram should pass: {v:?}") };
    assert_eq!(p.data(), &whole[..]);
    assert_eq!(pf.state_count(), 1);

    // A lone fragment expires with the frag timeout (60 s), not before.
    assert_eq!(pf.status().fragments.entries, 0, "the reassembled datagram's fragments are gone");
    let removed = pf.status().fragments.removals;
    let v = pf.test(0, t, Direction::In, &n.em0, frag(64, &payload[64..], false), &mut Bufs, &mut replies);
    assert!(matches!(v, Verdict::Consumed));
    assert_eq!(pf.status().fragments.entries, 1);
    pf.tick(Instant::from_secs(60));
    assert_eq!(pf.status().fragments.entries, 1, "held until the frag timeout");
    pf.tick(Instant::from_secs(62));
    assert_eq!(pf.status().fragments.entries, 0, "expired after the frag timeout");
    assert_eq!(pf.status().fragments.removals, removed + 1);
}

#[test]
fn logged_blocks_reach_the_pflog_queue() {
    let n = net();
    let pf = pf_with(&n, "block log all\n");
    let q = Arc::new(PflogQueue::new(16));
    pf.set_pflog(Some(q.clone()));
    assert!(!run(&pf, Instant::from_secs(1), Direction::In, &n.em0, tcp(CLIENT, SERVER, 1, 2, SYN, 1, 0, 0)));
    let mut out = vec![];
    assert_eq!(q.drain_to(&mut out, 0).unwrap(), 1);
    let rec = &out[16..];
    assert_eq!(rec[0], 100);
    assert_eq!(rec[2], 1, "action block");
    assert_eq!(&rec[4..8], b"em0\0");
    assert_eq!(rec[60], 1, "dir in");
    assert_eq!(rec[100], 0x45, "the IPv4 packet follows the header");
}

#[test]
fn disabled_pf_passes_everything_and_reload_keeps_states() {
    let n = net();
    let pf = pf_with(&n, "block all\npass out proto udp\n");
    let t = Instant::from_secs(1);
    assert!(run(&pf, t, Direction::Out, &n.em1, PacketBuf::from_slice(&udp(CLIENT, SERVER, 5000, 53, b"q"))));
    let rs = parse_ruleset("block all\n", "pf.conf", &n.resolver).unwrap();
    pf.load(&rs, &n.resolver).unwrap();
    assert_eq!(pf.state_count(), 1);
    assert!(run(&pf, t, Direction::In, &n.em1, PacketBuf::from_slice(&udp(SERVER, CLIENT, 53, 5000, b"a"))));
    assert!(!run(&pf, t, Direction::Out, &n.em1, PacketBuf::from_slice(&udp(CLIENT, SERVER, 5001, 53, b"q"))));
    pf.disable(t).unwrap();
    assert!(run(&pf, t, Direction::Out, &n.em1, PacketBuf::from_slice(&udp(CLIENT, SERVER, 5001, 53, b"q"))));
    pf.enable(t).unwrap();
    assert_eq!(pf.kill_states(CLIENT, None), 1);
    assert_eq!(pf.state_count(), 0);
}

#[test]
fn sloppy_state_passes_segments_outside_the_window() {
    let n = net();
    for (rules, passes) in [("pass proto tcp keep state\n", false), ("pass proto tcp keep state (sloppy)\n", true)] {
        let pf = pf_with(&n, rules);
        let t = Instant::from_secs(1);
        assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, SYN, 1000, 0, 0)));
        assert!(run(&pf, t, Direction::Out, &n.em0, tcp(SERVER, CLIENT, 22, 40000, flags(SYN, ACK), 5000, 1001, 0)));
        assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, ACK, 1001, 5001, 0)));
        let far = tcp(CLIENT, SERVER, 40000, 22, ACK, 900_000, 5001, 10);
        assert_eq!(run(&pf, t, Direction::In, &n.em0, far), passes, "{rules}");
        assert_eq!(pf.counter("state-mismatch"), Some(if passes { 0 } else { 1 }));
        assert_eq!(pf.state_count(), 1);
    }
}

#[test]
fn syn_on_an_established_state_gets_a_challenge_ack() {
    let n = net();
    let pf = pf_with(&n, "pass\n");
    let t = Instant::from_secs(1);
    assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, SYN, 1000, 0, 0)));
    assert!(run(&pf, t, Direction::Out, &n.em0, tcp(SERVER, CLIENT, 22, 40000, flags(SYN, ACK), 5000, 1001, 0)));
    assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, ACK, 1001, 5001, 0)));
    let mut replies = vec![];
    let v =
        pf.test(0, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, SYN, 77, 0, 0), &mut Bufs, &mut replies);
    assert!(matches!(v, Verdict::Drop(_)));
    assert_eq!(replies.len(), 1);
    let r = Ipv4Packet::new_checked(replies[0].data()).unwrap();
    assert_eq!((r.src(), r.dst()), (SERVER, CLIENT));
    let th = TcpPacket::new_checked(r.payload()).unwrap();
    assert_eq!(th.flags(), ACK);
    // dst->seqlo and src->seqlo, as pf_send_challenge_ack: the client's
    // seqlo only moves past its SYN with data.
    assert_eq!((th.seq_number(), th.ack_number()), (5001, 1000));
}

#[test]
fn modulate_state_rewrites_the_isn_with_a_valid_checksum() {
    let n = net();
    let pf = pf_with(&n, "pass in proto tcp modulate state\n");
    let mut replies = vec![];
    let v = pf.test(
        0,
        Instant::from_secs(1),
        Direction::In,
        &n.em0,
        tcp(CLIENT, SERVER, 40000, 22, SYN, 1000, 0, 0),
        &mut Bufs,
        &mut replies,
    );
    let Verdict::Pass(p) = v else { panic!() };
    let r = Ipv4Packet::new_checked(p.data()).unwrap();
    let th = TcpPacket::new_checked(r.payload()).unwrap();
    assert_ne!(th.seq_number(), 1000);
    assert!(th.verify_checksum(CLIENT, SERVER));
}

/// Nanoseconds per established-state packet (run with --release --ignored).
#[test]
#[ignore]
fn measure_established_state_lookup() {
    let n = net();
    let pf = pf_with(&n, RULES);
    let t = Instant::from_secs(1);
    assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, SYN, 1000, 0, 0)));
    assert!(run(&pf, t, Direction::Out, &n.em0, tcp(SERVER, CLIENT, 22, 40000, flags(SYN, ACK), 5000, 1001, 0)));
    let mut p = tcp(CLIENT, SERVER, 40000, 22, ACK, 1001, 5001, 0);
    let mut replies = vec![];
    let iters = 2_000_000;
    let start = std::time::Instant::now();
    for _ in 0..iters {
        p = match pf.test(0, t, Direction::In, &n.em0, p, &mut Bufs, &mut replies) {
            Verdict::Pass(p) => p,
            v => panic!("{v:?}"),
        };
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    eprintln!("established-state packet: {ns:.1} ns");
}

/// (rule number, action) of each pflog record in the queue.
fn drain_log(q: &PflogQueue) -> Vec<(u32, u8)> {
    pflog_records(q).into_iter().map(|r| (r.rule, r.action)).collect()
}

#[test]
fn log_matches_logs_the_packet_at_every_later_matching_rule() {
    let n = net();
    let rules = "match in log (matches) proto tcp\npass in proto tcp no state\nblock in proto tcp to port 23\n";
    let pf = pf_with(&n, rules);
    let q = Arc::new(PflogQueue::new(16));
    pf.set_pflog(Some(q.clone()));
    let t = Instant::from_secs(1);
    assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, SYN, 1, 0, 0)));
    // The match rule; the pass rule when the walk reaches it, and again
    // when pf_test_rule logs the deciding rule's matches.
    assert_eq!(drain_log(&q), [(0, PF_MATCH), (1, PF_PASS), (1, PF_PASS)]);
    assert!(!run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 23, SYN, 1, 0, 0)));
    // A pass rule that does not decide is logged once, the block twice.
    assert_eq!(drain_log(&q), [(0, PF_MATCH), (1, PF_PASS), (2, PF_DROP), (2, PF_DROP)]);
    // Without `matches` only the match rule itself logs.
    let pf = pf_with(&n, &rules.replace("log (matches)", "log"));
    pf.set_pflog(Some(q.clone()));
    assert!(!run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 23, SYN, 1, 0, 0)));
    assert_eq!(drain_log(&q), [(0, PF_MATCH)]);
}

/// pf_log_matches case by case, as pf_match_rule and pf_test_rule call it.
#[test]
fn log_matches_follows_pf_case_by_case() {
    const DEFAULT_RULE: u32 = u32::MAX;
    let n = net();
    let t = Instant::from_secs(1);
    for (rules, want) in [
        // No rule decides: pf's default rule (-1, pass) is logged.
        ("match in log (matches) proto tcp\n", &[(0, PF_MATCH), (DEFAULT_RULE, PF_PASS)][..]),
        // Two `log (matches)` rules: each logs itself once; every later
        // match logs once per such rule (the deciding one twice over).
        (
            "match in log (matches) proto tcp\nmatch in log (matches) proto tcp\npass in proto tcp no state\n",
            &[(0, PF_MATCH), (1, PF_MATCH), (2, PF_PASS), (2, PF_PASS), (2, PF_PASS), (2, PF_PASS)],
        ),
        // A later `match` rule without `log` is logged by the matches rule.
        (
            "match in log (matches) proto tcp\nmatch in proto tcp tag X\npass in proto tcp no state\n",
            &[(0, PF_MATCH), (1, PF_MATCH), (2, PF_PASS), (2, PF_PASS)],
        ),
        // A logged `quick` rule: in the walk, its own `log`, its matches.
        (
            "match in log (matches) proto tcp\npass in log quick proto tcp no state\nblock in proto tcp\n",
            &[(0, PF_MATCH), (1, PF_PASS), (1, PF_PASS), (1, PF_PASS)],
        ),
        // A deciding rule that says `log (matches)` itself was logged by
        // its own `log` only.
        (
            "match in log (matches) proto tcp\npass in log (matches) proto tcp no state\n",
            &[(0, PF_MATCH), (1, PF_PASS)],
        ),
        // `matches` on a pass rule is not an action: later rules are not logged.
        ("pass in log (matches) proto tcp no state\npass in proto tcp no state\n", &[]),
    ] {
        let pf = pf_with(&n, rules);
        let q = Arc::new(PflogQueue::new(16));
        pf.set_pflog(Some(q.clone()));
        run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, SYN, 1, 0, 0));
        assert_eq!(drain_log(&q), want, "{rules}");
    }
}

/// pf logs the deciding rule before it makes the state; a state it cannot
/// make drops the packet without a second record.
#[test]
fn a_logged_pass_rule_over_its_state_limit_logs_the_match_only() {
    let n = net();
    let pf = pf_with(&n, "pass in log proto tcp keep state (max 1)\n");
    let q = Arc::new(PflogQueue::new(16));
    pf.set_pflog(Some(q.clone()));
    let t = Instant::from_secs(1);
    assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, SYN, 1, 0, 0)));
    assert_eq!(drain_log(&q), [(0, PF_PASS)]);
    assert!(!run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40001, 22, SYN, 1, 0, 0)));
    assert_eq!(drain_log(&q), [(0, PF_PASS)]);
    assert_eq!(pf.counter("state-limit"), Some(1));
}

/// pf_test logs each packet of a state (`pd.pflog |= st->log`) under the
/// state's rule if that rule says `log (all)`, then under every `match`
/// rule with `log (all)` the creating packet matched (the state's
/// `match_rules`, latest first): a `match log (all)` rule's records carry
/// its own number and action, not the pass rule's.
#[test]
fn log_all_on_a_match_rule_logs_every_packet_of_the_state_under_the_match_rule() {
    let n = net();
    let t = Instant::from_secs(1);
    type Recs = &'static [(u32, u8)];
    let cases: [(&str, Recs, Recs); 6] = [
        ("match in log (all) proto tcp\npass proto tcp\n", &[(0, PF_MATCH)], &[(0, PF_MATCH)]),
        ("match in log proto tcp\npass proto tcp\n", &[(0, PF_MATCH)], &[]),
        ("pass log (all) proto tcp\n", &[(0, PF_PASS)], &[(0, PF_PASS)]),
        // A plain `log` on the pass rule logs the first packet only.
        ("match in log (all) proto tcp\npass log proto tcp\n", &[(0, PF_MATCH), (1, PF_PASS)], &[(0, PF_MATCH)]),
        (
            "match in log (all) proto tcp\npass log (all) proto tcp\n",
            &[(0, PF_MATCH), (1, PF_PASS)],
            &[(1, PF_PASS), (0, PF_MATCH)],
        ),
        // Two of them, and one without `all`: the state's rules latest first.
        (
            "match in log (all) proto tcp\nmatch in log proto tcp\nmatch in log (all) proto tcp to port 22\npass proto tcp\n",
            &[(0, PF_MATCH), (1, PF_MATCH), (2, PF_MATCH)],
            &[(2, PF_MATCH), (0, PF_MATCH)],
        ),
    ];
    for (rules, first, later) in cases {
        let pf = pf_with(&n, rules);
        let q = Arc::new(PflogQueue::new(16));
        pf.set_pflog(Some(q.clone()));
        assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, SYN, 1000, 0, 0)));
        assert_eq!(drain_log(&q), first, "{rules}");
        assert!(run(&pf, t, Direction::Out, &n.em0, tcp(SERVER, CLIENT, 22, 40000, flags(SYN, ACK), 5000, 1001, 0)));
        assert_eq!(drain_log(&q), later, "{rules}: reply");
        assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, ACK, 1001, 5001, 0)));
        assert_eq!(drain_log(&q), later, "{rules}: ack");
    }
}

/// The same through the lock-free path of an established UDP state, both
/// hook entry points, and an ICMP error matched to the state.
#[test]
fn match_log_all_records_follow_udp_states_and_icmp_errors() {
    let n = net();
    let t = Instant::from_secs(1);
    let pf = pf_with(&n, "block all\nmatch in log (all) proto udp\npass proto udp\npass proto icmp no state\n");
    let q = Arc::new(PflogQueue::new(64));
    pf.set_pflog(Some(q.clone()));
    let out = |p: Vec<u8>| PacketBuf::from_slice(&p);
    assert!(run(&pf, t, Direction::In, &n.em0, out(udp(CLIENT, SERVER, 5000, 53, b"q"))));
    assert_eq!(drain_log(&q), [(1, PF_MATCH)]);
    // Same direction again: the state does not change (no lock taken).
    assert!(run(&pf, t, Direction::In, &n.em0, out(udp(CLIENT, SERVER, 5000, 53, b"q"))));
    assert_eq!(drain_log(&q), [(1, PF_MATCH)]);
    let mut pkts = [Some(out(udp(CLIENT, SERVER, 5000, 53, b"a"))), Some(out(udp(CLIENT, SERVER, 5000, 53, b"b")))];
    let mut d = [Decision::Consumed; 2];
    pf.test_batch(0, t, Direction::In, &n.em0, &mut pkts, &mut d, &mut Bufs, &mut vec![]);
    assert_eq!(d, [Decision::Pass; 2]);
    assert_eq!(drain_log(&q), [(1, PF_MATCH), (1, PF_MATCH)]);
    // The reply, out through the same state.
    assert!(run(&pf, t, Direction::Out, &n.em0, out(udp(SERVER, CLIENT, 53, 5000, b"r"))));
    assert_eq!(drain_log(&q), [(1, PF_MATCH)]);
    // A port unreachable about the datagram, going back out em0: the
    // state's packet, logged under the match rule; a `pass … no state`
    // rule would not have logged it.
    let quoted = udp(CLIENT, SERVER, 5000, 53, b"q")[..28].to_vec();
    let err = Icmpv4Repr::DstUnreachable {
        code: softnet_wire::icmpv4::DstUnreachable::PortUnreachable,
        next_hop_mtu: 0,
        data: &quoted,
    };
    assert!(run(&pf, t, Direction::Out, &n.em0, icmp(SERVER, CLIENT, err)));
    assert_eq!(drain_log(&q), [(1, PF_MATCH)]);
    // IP options on a state that does not allow them: the forced record
    // under the state's rule, then the match rule's, both for ip-option.
    assert!(!run(&pf, t, Direction::In, &n.em0, udp_with_options(CLIENT, SERVER, 5000, 53)));
    assert_eq!(
        drain_log_reasons(&q),
        [(2, PF_PASS, REASON_IP_OPTION, CLIENT), (1, PF_MATCH, REASON_IP_OPTION, CLIENT)]
    );
}

#[test]
fn pfctl_si_counts_half_open_tcp_states() {
    let n = net();
    let pf = pf_with(&n, "pass proto { tcp udp }\n");
    let t = Instant::from_secs(1);
    let half = |pf: &Pf| {
        let si = pf.show_info(0, t);
        let l = si.lines().find(|l| l.starts_with("  half-open tcp")).unwrap_or_else(|| panic!("{si}")).to_string();
        // pfctl: "  %-25s %14u %14s" right after "current entries"
        let prev = si.lines().take_while(|x| !x.starts_with("  half-open tcp")).last().unwrap().to_string();
        assert!(prev.starts_with("  current entries"), "{si}");
        assert_eq!(l.len(), 2 + 25 + 1 + 14 + 1 + 14, "{l:?}");
        l[28..42].trim().parse::<usize>().unwrap()
    };
    assert_eq!(half(&pf), 0);
    assert!(run(&pf, t, Direction::Out, &n.em1, PacketBuf::from_slice(&udp(CLIENT, SERVER, 5000, 53, b"q"))));
    assert!(run(&pf, t, Direction::In, &n.em0, tcp(CLIENT, SERVER, 40000, 22, SYN, 1000, 0, 0)));
    assert_eq!(half(&pf), 1);
    assert!(run(&pf, t, Direction::Out, &n.em0, tcp(SERVER, CLIENT, 22, 40000, flags(SYN, ACK), 5000, 1001, 0)));
    assert_eq!(half(&pf), 0);
    assert_eq!(pf.state_count(), 2);
}

#[test]
fn pfctl_si_names_the_debug_level_as_pfctl_does() {
    let n = net();
    let t = Instant::from_secs(1);
    for (set, shown) in [
        ("", "err"),
        ("set debug warning\n", "warn"),
        ("set debug 7\n", "debug"),
        ("set debug NOTICE\n", "notice"),
        ("set debug panic\n", "emerg"),
    ] {
        let pf = pf_with(&n, &format!("{set}pass\n"));
        let si = pf.show_info(0, t);
        let first = si.lines().next().unwrap();
        assert_eq!(first.len(), 44 + 15, "{first:?}");
        assert!(first.ends_with(&format!("Debug: {shown}")), "{set}: {first:?}");
    }
}

/// (rule number, action, reason, source address) of each pflog record.
fn drain_log_reasons(q: &PflogQueue) -> Vec<(u32, u8, u8, Ipv4Addr)> {
    pflog_records(q).into_iter().map(|r| (r.rule, r.action, r.reason, r.src)).collect()
}

/// `udp(...)` with a Router Alert option in its IPv4 header.
fn udp_with_options(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> PacketBuf {
    let plain = udp(src, dst, sport, dport, b"opt");
    let mut b = plain[..20].to_vec();
    b.extend_from_slice(&[0x94, 0x04, 0x00, 0x00]);
    b.extend_from_slice(&plain[20..]);
    let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
    p.set_header_len(24);
    p.set_total_len((plain.len() + 4) as u16);
    p.fill_checksum();
    PacketBuf::from_slice(&b)
}

const DEFAULT_RULE_NR: u32 = u32::MAX;
const REASON_FRAGMENT: u8 = 2;
const REASON_SHORT: u8 = 3;
const REASON_IP_OPTION: u8 = 8;

/// pf_test's PF_LOG_FORCE: malformed packets and fragments reassembly
/// refuses are logged without `log` on any rule, under the default rule
/// as blocks.
#[test]
fn malformed_packets_and_refused_fragments_are_logged_without_a_log_rule() {
    let n = net();
    let pf = pf_with(&n, "pass all\n");
    let q = Arc::new(PflogQueue::new(16));
    pf.set_pflog(Some(q.clone()));
    let t = Instant::from_secs(1);
    // A UDP length past the end of the datagram: short.
    let mut bad = udp(CLIENT, SERVER, 5000, 53, b"q");
    bad[24..26].copy_from_slice(&200u16.to_be_bytes());
    assert!(!run(&pf, t, Direction::In, &n.em0, PacketBuf::from_slice(&bad)));
    assert_eq!(drain_log_reasons(&q), [(DEFAULT_RULE_NR, PF_DROP, REASON_SHORT, CLIENT)]);
    // A fragment past the end of a datagram whose last fragment is held
    // is refused (fragment).
    let whole = udp(CLIENT, SERVER, 5000, 53, &[0x5a; 100]);
    let frag = |off: usize, data: &[u8], more: bool| fragment(&whole, off, data, more);
    let mut replies = vec![];
    let v = pf.test(0, t, Direction::In, &n.em0, frag(64, &whole[20 + 64..], false), &mut Bufs, &mut replies);
    assert!(matches!(v, Verdict::Consumed));
    let v = pf.test(0, t, Direction::In, &n.em0, frag(104, &[0x5a; 16], true), &mut Bufs, &mut replies);
    assert!(matches!(v, Verdict::Drop(_)), "{v:?}");
    assert_eq!(drain_log_reasons(&q), [(DEFAULT_RULE_NR, PF_DROP, REASON_FRAGMENT, CLIENT)]);
    // Good packets pass unlogged.
    assert!(run(&pf, t, Direction::In, &n.em0, PacketBuf::from_slice(&udp(CLIENT, SERVER, 5001, 53, b"q"))));
    assert!(drain_log_reasons(&q).is_empty());
    // Without pflog nothing is written, and the drops are counted still.
    pf.set_pflog(None);
    assert!(!run(&pf, t, Direction::In, &n.em0, PacketBuf::from_slice(&bad)));
    assert_eq!(pf.counter("short"), Some(2));
}

/// IP options without `allow-opts`: dropped and logged whatever the
/// rules say about logging, once, under the rule or state that passed
/// the packet (as pf's header writes it: that rule's action) or the
/// default rule (a block).
#[test]
fn packets_dropped_for_ip_options_are_always_logged() {
    let n = net();
    let t = Instant::from_secs(1);
    for (rules, want) in [
        // pf's default rule passes; the options drop the packet.
        ("", &[(DEFAULT_RULE_NR, PF_DROP, REASON_IP_OPTION, CLIENT)][..]),
        ("pass in all no state\n", &[(0, PF_PASS, REASON_IP_OPTION, CLIENT)]),
        // A logged rule: its own record, then the forced one.
        ("pass in log all no state\n", &[(0, PF_PASS, 0, CLIENT), (0, PF_PASS, REASON_IP_OPTION, CLIENT)]),
        ("block in log all\npass in all no state\n", &[(1, PF_PASS, REASON_IP_OPTION, CLIENT)]),
    ] {
        let pf = pf_with(&n, rules);
        let q = Arc::new(PflogQueue::new(16));
        pf.set_pflog(Some(q.clone()));
        assert!(!run(&pf, t, Direction::In, &n.em0, udp_with_options(CLIENT, SERVER, 5000, 53)), "{rules}");
        assert_eq!(drain_log_reasons(&q), want, "{rules:?}");
        assert_eq!(pf.counter("ip-option"), Some(1));
    }
    // Through a state, logged or not: one record under the state's rule.
    for rules in ["block all\npass in proto udp\n", "block all\npass in log proto udp\n"] {
        let pf = pf_with(&n, rules);
        let q = Arc::new(PflogQueue::new(16));
        pf.set_pflog(Some(q.clone()));
        assert!(run(&pf, t, Direction::In, &n.em0, PacketBuf::from_slice(&udp(CLIENT, SERVER, 5000, 53, b"q"))));
        drain_log_reasons(&q);
        assert!(!run(&pf, t, Direction::In, &n.em0, udp_with_options(CLIENT, SERVER, 5000, 53)));
        assert_eq!(drain_log_reasons(&q), [(1, PF_PASS, REASON_IP_OPTION, CLIENT)], "{rules:?}");
    }
}
