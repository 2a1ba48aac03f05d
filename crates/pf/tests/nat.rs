//! Translation through `PacketFilter::test`: nat-to, rdr-to, binat-to on
//! match and pass rules, the packets of translated states both ways,
//! ICMP query ids and errors, every checksum checked against a full
//! re-sum, ports running out, pools that lose their addresses, reloads.

use crate::common;
use common::{forward_back, forward_out, net, test, Net};

use std::collections::HashSet;
use std::net::Ipv4Addr;

use softnet_core::filter::Direction;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use softnet_wire::ipv4::{IpProtocol, Ipv4Packet};
use softnet_wire::tcp::{TcpFlags, TcpPacket};
use softnet_wire::udp::UdpPacket;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const A2: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 3);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// em1's address, what NAT hides A behind.
const R: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);

fn pf(n: &Net, text: &str) -> Pf {
    softnet_core::rng::install(softnet_core::rng::WorkerRng::seeded(7));
    common::pf_with(n, text)
}

fn t0() -> Instant {
    Instant::from_secs(1)
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> PacketBuf {
    PacketBuf::from_slice(&common::udp_bytes(src, dst, sport, dport, b"some data"))
}

fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: TcpFlags, seq: u32, ack: u32) -> PacketBuf {
    PacketBuf::from_slice(&common::tcp_bytes(src, dst, sport, dport, flags, seq, ack, 0))
}

fn echo(src: Ipv4Addr, dst: Ipv4Addr, request: bool, ident: u16) -> PacketBuf {
    let data = b"ping";
    let r = if request {
        Icmpv4Repr::EchoRequest { ident, seq_no: 1, data }
    } else {
        Icmpv4Repr::EchoReply { ident, seq_no: 1, data }
    };
    let i = common::ip_repr(src, dst, IpProtocol::ICMP, r.buffer_len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    r.emit(&mut b[20..]);
    PacketBuf::from_slice(&b)
}

/// An ICMP error from `from` to `to` quoting the start of `quoted`.
fn icmp_error(from: Ipv4Addr, to: Ipv4Addr, quoted: &[u8]) -> PacketBuf {
    let q = &quoted[..quoted.len().min(28)];
    let r = Icmpv4Repr::DstUnreachable {
        code: softnet_wire::icmpv4::DstUnreachable::PortUnreachable,
        next_hop_mtu: 0,
        data: q,
    };
    let i = common::ip_repr(from, to, IpProtocol::ICMP, r.buffer_len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    r.emit(&mut b[20..]);
    PacketBuf::from_slice(&b)
}

/// (src, sport, dst, dport) of a TCP/UDP packet; every checksum checked
/// by a full re-sum.
fn ends(p: &PacketBuf) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = Ipv4Packet::new_checked(p.data()).unwrap();
    assert!(ip.verify_checksum(), "IP checksum");
    let (s, d) = (ip.src(), ip.dst());
    match ip.protocol() {
        IpProtocol::UDP => {
            let u = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(u.verify_checksum(s, d), "UDP checksum");
            (s, u.src_port(), d, u.dst_port())
        }
        IpProtocol::TCP => {
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(t.verify_checksum(s, d), "TCP checksum");
            (s, t.src_port(), d, t.dst_port())
        }
        IpProtocol::ICMP => {
            let c = Icmpv4Packet::new_checked(ip.payload()).unwrap();
            assert!(c.verify_checksum(), "ICMP checksum");
            (s, c.echo_ident(), d, 0)
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn nat_to_hides_the_source_and_replies_find_their_way_back() {
    let n = net();
    let pf = pf(&n, "match out on em1 from 10.0.1.0/24 nat-to (em1:0)\npass\n");
    let out = forward_out(&pf, &n, udp(A, B, 5353, 53)).unwrap();
    let (s, sp, d, dp) = ends(&out);
    assert_eq!((s, d, dp), (R, B, 53));
    assert!((50001..=65535).contains(&sp), "{sp}");
    // the same flow keeps its port
    assert_eq!(ends(&forward_out(&pf, &n, udp(A, B, 5353, 53)).unwrap()), (R, sp, B, 53));
    // B's answer goes to the router's port and comes back to A's
    let back = forward_back(&pf, &n, udp(B, R, 53, sp)).unwrap();
    assert_eq!(ends(&back), (B, 53, A, 5353));
    // a packet to the translated port from elsewhere is no reply
    assert_eq!(
        ends(&test(&pf, Direction::In, &n.em1, udp(Ipv4Addr::new(10, 0, 2, 9), R, 53, sp)).unwrap()).2,
        R,
        "not translated"
    );
}

#[test]
fn source_ports_are_random_and_distinct_per_flow() {
    let n = net();
    let pf = pf(&n, "pass out on em1 from 10.0.1.0/24 nat-to 10.0.2.1\n");
    let mut ports = vec![];
    for sp in 1000..1040 {
        let (_, p, _, _) = ends(&test(&pf, Direction::Out, &n.em1, udp(A, B, sp, 53)).unwrap());
        ports.push(p);
    }
    let set: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(set.len(), ports.len(), "one tuple per flow");
    let ascending = ports.windows(2).filter(|w| w[1] == w[0].wrapping_add(1)).count();
    assert!(ascending < 5, "not sequential: {ports:?}");
}

#[test]
fn a_tcp_connection_through_nat() {
    let n = net();
    let pf = pf(&n, "pass out on em1 proto tcp nat-to 10.0.2.1\npass in\n");
    let syn = forward_out(&pf, &n, tcp(A, B, 40000, 80, TcpFlags::SYN, 1000, 0)).unwrap();
    let (s, sp, d, _) = ends(&syn);
    assert_eq!((s, d), (R, B));
    let synack = forward_back(&pf, &n, tcp(B, R, 80, sp, TcpFlags::SYN | TcpFlags::ACK, 5000, 1001)).unwrap();
    assert_eq!(ends(&synack), (B, 80, A, 40000));
    let ack = forward_out(&pf, &n, tcp(A, B, 40000, 80, TcpFlags::ACK, 1001, 5001)).unwrap();
    assert_eq!(ends(&ack), (R, sp, B, 80));
    let data = forward_back(&pf, &n, tcp(B, R, 80, sp, TcpFlags::ACK | TcpFlags::PSH, 5001, 1001)).unwrap();
    assert_eq!(ends(&data), (B, 80, A, 40000));
}

#[test]
fn rdr_to_forwards_a_port_and_the_answers_come_from_it() {
    let n = net();
    let pf = pf(&n, "pass in on em1 proto tcp to 10.0.2.1 port 80 rdr-to 10.0.1.5 port 8080\npass out\n");
    let syn = test(&pf, Direction::In, &n.em1, tcp(B, R, 3333, 80, TcpFlags::SYN, 1, 0)).unwrap();
    assert_eq!(ends(&syn), (B, 3333, Ipv4Addr::new(10, 0, 1, 5), 8080));
    let syn = test(&pf, Direction::Out, &n.em0, syn).unwrap();
    let s = Ipv4Addr::new(10, 0, 1, 5);
    let synack = test(&pf, Direction::In, &n.em0, tcp(s, B, 8080, 3333, TcpFlags::SYN | TcpFlags::ACK, 9, 2)).unwrap();
    let synack = test(&pf, Direction::Out, &n.em1, synack).unwrap();
    assert_eq!(ends(&synack), (R, 80, B, 3333));
    drop(syn);
}

#[test]
fn binat_to_maps_both_ways_and_keeps_ports() {
    let n = net();
    let pf = pf(&n, "pass on em1 from 10.0.1.5 binat-to 10.0.2.9\npass on em0\n");
    let h = Ipv4Addr::new(10, 0, 1, 5);
    let pub_ = Ipv4Addr::new(10, 0, 2, 9);
    let out = test(&pf, Direction::Out, &n.em1, udp(h, B, 4444, 53)).unwrap();
    assert_eq!(ends(&out), (pub_, 4444, B, 53), "static-port");
    let back = test(&pf, Direction::In, &n.em1, udp(B, pub_, 53, 4444)).unwrap();
    assert_eq!(ends(&back), (B, 53, h, 4444));
    // and inbound first: B reaches the host by its public address
    let inb = test(&pf, Direction::In, &n.em1, udp(B, pub_, 7000, 9999)).unwrap();
    assert_eq!(ends(&inb), (B, 7000, h, 9999));
    let reply = test(&pf, Direction::Out, &n.em1, udp(h, B, 9999, 7000)).unwrap();
    assert_eq!(ends(&reply), (pub_, 9999, B, 7000));
}

#[test]
fn two_hosts_pinging_with_the_same_id_get_their_own_replies() {
    let n = net();
    let pf = pf(&n, "match out on em1 nat-to 10.0.2.1\npass\n");
    let a = forward_out(&pf, &n, echo(A, B, true, 77)).unwrap();
    let a2 = forward_out(&pf, &n, echo(A2, B, true, 77)).unwrap();
    let (ida, ida2) = (ends(&a).1, ends(&a2).1);
    assert_eq!((ends(&a).0, ends(&a2).0), (R, R));
    assert_ne!(ida, ida2, "the query ids are translated apart");
    let ra = forward_back(&pf, &n, echo(B, R, false, ida)).unwrap();
    let ra2 = forward_back(&pf, &n, echo(B, R, false, ida2)).unwrap();
    assert_eq!((ends(&ra).2, ends(&ra).1), (A, 77));
    assert_eq!((ends(&ra2).2, ends(&ra2).1), (A2, 77));
}

#[test]
fn an_icmp_error_about_a_translated_packet_goes_back_translated() {
    let n = net();
    let pf = pf(&n, "match out on em1 nat-to 10.0.2.1\npass\n");
    let out = forward_out(&pf, &n, udp(A, B, 5353, 9)).unwrap();
    let (_, sp, _, _) = ends(&out);
    // B: port unreachable, quoting what it got
    let err = forward_back(&pf, &n, icmp_error(B, R, out.data())).unwrap();
    let ip = Ipv4Packet::new_checked(err.data()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src(), ip.dst()), (B, A));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(), "ICMP checksum over the rewritten quote");
    let q = Ipv4Packet::new_unchecked(icmp.data());
    assert!(q.verify_checksum(), "quoted IP checksum");
    assert_eq!((q.src(), q.dst()), (A, B));
    let qu = UdpPacket::new_unchecked(&icmp.data()[20..]);
    assert_eq!((qu.src_port(), qu.dst_port()), (5353, 9));
    // the quoted UDP checksum still fits the quoted packet (8 of 9 data
    // bytes quoted: compare with the original's)
    let orig = udp(A, B, 5353, 9);
    assert_eq!(qu.checksum(), UdpPacket::new_unchecked(&orig.data()[20..]).checksum());
    assert_ne!(sp, 0);
}

#[test]
fn when_every_port_is_taken_new_flows_are_dropped_as_translate() {
    let n = net();
    let pf = pf(
        &n,
        "pass out on em1 proto udp from 10.0.1.0/24 nat-to 10.0.2.1 port 50000:50001\npass out on em1 proto tcp\n",
    );
    let a = test(&pf, Direction::Out, &n.em1, udp(A, B, 1, 53)).unwrap();
    let b = test(&pf, Direction::Out, &n.em1, udp(A, B, 2, 53)).unwrap();
    let mut ports = vec![ends(&a).1, ends(&b).1];
    ports.sort();
    assert_eq!(ports, vec![50000, 50001]);
    assert!(test(&pf, Direction::Out, &n.em1, udp(A, B, 3, 53)).is_none());
    assert_eq!(pf.counter("translate"), Some(1));
    // existing flows and other traffic go on
    assert!(test(&pf, Direction::Out, &n.em1, udp(A, B, 1, 53)).is_some());
    assert!(test(&pf, Direction::Out, &n.em1, tcp(A, B, 5, 80, TcpFlags::SYN, 1, 0)).is_some());
}

#[test]
fn a_pool_table_emptied_at_run_time_translates_no_more() {
    let n = net();
    let pf = pf(&n, "table <pool> { 10.0.2.7 }\npass out on em1 nat-to <pool>\n");
    assert_eq!(ends(&test(&pf, Direction::Out, &n.em1, udp(A, B, 1, 53)).unwrap()).0, Ipv4Addr::new(10, 0, 2, 7));
    pf.table_flush("pool").unwrap();
    assert!(test(&pf, Direction::Out, &n.em1, udp(A, B, 2, 53)).is_none());
    assert_eq!(pf.counter("translate"), Some(1));
    // the flow made before keeps its translation
    assert_eq!(ends(&test(&pf, Direction::Out, &n.em1, udp(A, B, 1, 53)).unwrap()).0, Ipv4Addr::new(10, 0, 2, 7));
}

#[test]
fn an_interface_without_an_address_translates_nothing() {
    let n = net();
    let pf = pf(&n, "pass out on em1 nat-to (em1:0)\n");
    n.em1.set_addrs(vec![]);
    assert!(test(&pf, Direction::Out, &n.em1, udp(A, B, 1, 53)).is_none());
    assert_eq!(pf.counter("translate"), Some(1));
    n.em1.set_addrs(vec![softnet_core::iface::IfAddr::new(Ipv4Addr::new(10, 0, 2, 77), 24)]);
    let p = test(&pf, Direction::Out, &n.em1, udp(A, B, 1, 53)).unwrap();
    assert_eq!(ends(&p).0, Ipv4Addr::new(10, 0, 2, 77), "follows the new address");
}

#[test]
fn a_match_rules_translation_holds_unless_the_deciding_rule_has_one() {
    let n = net();
    // pf applies a `match` rule's translation at once and the deciding
    // rule's at the end; a pass rule a later rule overrides gives none
    let pf = pf(
        &n,
        "match out on em1 nat-to 10.0.2.7\npass out on em1 proto udp to port 55 nat-to 10.0.2.9\npass out on em1\npass out on em1 proto udp to port 53 nat-to 10.0.2.8\n",
    );
    let src = |port| ends(&test(&pf, Direction::Out, &n.em1, udp(A, B, 1, port)).unwrap()).0;
    assert_eq!(src(53), Ipv4Addr::new(10, 0, 2, 8));
    assert_eq!(src(54), Ipv4Addr::new(10, 0, 2, 7));
    assert_eq!(src(55), Ipv4Addr::new(10, 0, 2, 7));
}

#[test]
fn translated_states_survive_a_reload() {
    let n = net();
    let text = "match out on em1 nat-to 10.0.2.1\npass\n";
    let pf = pf(&n, text);
    let out = forward_out(&pf, &n, udp(A, B, 5353, 53)).unwrap();
    let sp = ends(&out).1;
    let rs = softnet_pf::parse_ruleset(text, "pf.conf", &n.resolver).unwrap();
    pf.load(&rs, &n.resolver).unwrap();
    assert_eq!(ends(&forward_back(&pf, &n, udp(B, R, 53, sp)).unwrap()), (B, 53, A, 5353));
}

#[test]
fn pfctl_ss_prints_translated_states_as_print_state() {
    let n = net();
    let pf = pf(&n, "pass out on em1 proto tcp nat-to 10.0.2.1\npass in on em1 proto tcp to 10.0.2.1 port 80 rdr-to 10.0.1.5 port 8080\n");
    let syn = test(&pf, Direction::Out, &n.em1, tcp(A, B, 40000, 80, TcpFlags::SYN, 1000, 0)).unwrap();
    let sp = ends(&syn).1;
    test(&pf, Direction::In, &n.em1, tcp(B, R, 3333, 80, TcpFlags::SYN, 1, 0)).unwrap();
    let ss = pf.show_states(0, t0());
    let lines: Vec<&str> = ss.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("all tcp 10.0.2.1:{sp} (10.0.1.2:40000) -> 10.0.2.2:80       SYN_SENT:CLOSED"),
            "all tcp 10.0.2.1:80 (10.0.1.5:8080) <- 10.0.2.2:3333       CLOSED:SYN_SENT".to_string(),
        ]
    );
}

/// pf_tcp_track_full: a segment carrying data 3,000,000 octets past what
/// the peer's window allows matches its state and is dropped, on a
/// translating state as on a plain one; a zero-length ACK with the
/// sequence at the window's edge passes.
#[test]
fn segments_far_outside_the_window_are_dropped_with_or_without_nat() {
    for rules in ["pass out on em1 proto tcp nat-to 10.0.2.1\npass in\n", "pass\n"] {
        let n = net();
        let pf = pf(&n, rules);
        let syn = forward_out(&pf, &n, tcp(A, B, 40000, 80, TcpFlags::SYN, 1000, 0)).unwrap();
        let (s, sp, _, _) = ends(&syn);
        forward_back(&pf, &n, tcp(B, s, 80, sp, TcpFlags::SYN | TcpFlags::ACK, 5000, 1001)).unwrap();
        forward_out(&pf, &n, tcp(A, B, 40000, 80, TcpFlags::ACK, 1001, 5001)).unwrap();
        let data = |seq: u32, len: usize| {
            PacketBuf::from_slice(&common::tcp_bytes(A, B, 40000, 80, TcpFlags::ACK | TcpFlags::PSH, seq, 5001, len))
        };
        assert!(forward_out(&pf, &n, data(1001, 100)).is_some(), "{rules}: in the window");
        assert!(forward_out(&pf, &n, data(1101 + 3_000_000, 100)).is_none(), "{rules}: 3,000,000 past the window");
        let back = |seq: u32, len: usize| {
            let b = common::tcp_bytes(B, s, 80, sp, TcpFlags::ACK | TcpFlags::PSH, seq, 1101, len);
            PacketBuf::from_slice(&b)
        };
        assert!(forward_back(&pf, &n, back(5001 + 3_000_000, 100)).is_none(), "{rules}: the reply side too");
        assert!(forward_back(&pf, &n, back(5001, 100)).is_some(), "{rules}: the state still works");
    }
}
