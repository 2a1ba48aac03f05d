//! af-to (NAT64) through `PacketFilter::test`: an IPv6 client's TCP, UDP
//! and ping to `64:ff9b::/96` leave as IPv4 from the pool's address, the
//! IPv4 server's answers come back as IPv6 from the embedded address;
//! pf out on either side lets the translated packets by unchanged; every
//! checksum checked by a full re-sum; what cannot be translated is
//! dropped as `translate`.

use crate::common;
use common::{net, pf_with, tcp_bytes, udp_bytes, HeapBufs as Bufs, Net};

use std::net::{Ipv4Addr, Ipv6Addr};

use softnet_core::filter::{Direction, PacketFilter, RouteDecision, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use softnet_wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use softnet_wire::ipv4::{IpProtocol, Ipv4Packet};
use softnet_wire::ipv6::{Ipv6Packet, Ipv6Repr};
use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
use softnet_wire::udp::{UdpPacket, UdpRepr};

const RULES: &str = "block all\npass out all\npass in on em0 inet6 from any to 64:ff9b::/96 af-to inet from 10.0.2.1\n";
const A: &str = "2001:db8:1::2";
/// B (10.0.2.2) as A sees it: RFC 6052's well-known prefix.
const B6: &str = "64:ff9b::a00:202";
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const R: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn pf(n: &Net, text: &str) -> Pf {
    softnet_core::rng::install(softnet_core::rng::WorkerRng::seeded(5));
    pf_with(n, text)
}

fn test(pf: &Pf, dir: Direction, ifp: &Interface, b: &[u8]) -> Option<PacketBuf> {
    let mut r = vec![];
    match pf.test(0, Instant::from_secs(1), dir, ifp, PacketBuf::from_slice(b), &mut Bufs, &mut r) {
        Verdict::Pass(p) => Some(p),
        _ => None,
    }
}

/// pf in on `inn`, then (the translated packet) pf out on `out`, which
/// must leave it as it is.
fn through(pf: &Pf, inn: &Interface, out: &Interface, b: &[u8]) -> Option<PacketBuf> {
    let mut p = test(pf, Direction::In, inn, b)?;
    assert_eq!(p.meta.pf_route, RouteDecision::AfTo, "handed to the other family's path");
    p.meta.pf_route = RouteDecision::None;
    let bytes = p.data().to_vec();
    let o = test(pf, Direction::Out, out, &bytes).expect("pf out passes it (the af-to state)");
    assert_eq!(o.data(), &bytes[..], "pf out changes nothing");
    assert_eq!(o.meta.pf_route, RouteDecision::None);
    Some(o)
}

fn v6(next: IpProtocol, len: usize, fill: impl FnOnce(&mut [u8], Ipv6Addr, Ipv6Addr), src: &str, dst: &str) -> Vec<u8> {
    let (s, d) = (a6(src), a6(dst));
    let r = Ipv6Repr {
        src: s,
        dst: d,
        next_header: next,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        payload_len: len,
    };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut b);
    fill(&mut b[40..], s, d);
    b
}

fn tcp6(src: &str, dst: &str, sport: u16, dport: u16, flags: TcpFlags, seq: u32, ack: u32) -> Vec<u8> {
    let t = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq,
        ack,
        flags,
        window: 8192,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    };
    v6(IpProtocol::TCP, t.buffer_len(), |b, s, d| t.emit_with_payload_v6(b, s, d, &[]), src, dst)
}

/// An IPv4 packet's (src, sport, dst, dport), every checksum checked.
fn ends4(p: &PacketBuf) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = Ipv4Packet::new_checked(p.data()).unwrap();
    assert!(ip.verify_checksum());
    assert!(ip.dont_frag(), "RFC 7915 §5.1: DF set");
    let (s, d) = (ip.src(), ip.dst());
    match ip.protocol() {
        IpProtocol::TCP => {
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(t.verify_checksum(s, d), "TCP checksum");
            (s, t.src_port(), d, t.dst_port())
        }
        IpProtocol::UDP => {
            let u = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(u.verify_checksum(s, d), "UDP checksum");
            (s, u.src_port(), d, u.dst_port())
        }
        IpProtocol::ICMP => {
            let c = Icmpv4Packet::new_checked(ip.payload()).unwrap();
            assert!(c.verify_checksum());
            (s, c.echo_ident(), d, c.msg_type() as u16)
        }
        p => panic!("{p:?}"),
    }
}

/// The same for an IPv6 packet.
fn ends6(p: &PacketBuf) -> (Ipv6Addr, u16, Ipv6Addr, u16) {
    let ip = Ipv6Packet::new_checked(p.data()).unwrap();
    let (s, d) = (ip.src(), ip.dst());
    let l4 = &p.data()[40..];
    match ip.next_header() {
        IpProtocol::TCP => {
            let t = TcpPacket::new_checked(l4).unwrap();
            assert!(t.verify_checksum_v6(s, d), "TCP checksum");
            (s, t.src_port(), d, t.dst_port())
        }
        IpProtocol::UDP => {
            let u = UdpPacket::new_checked(l4).unwrap();
            assert!(u.verify_checksum_v6(s, d), "UDP checksum");
            (s, u.src_port(), d, u.dst_port())
        }
        IpProtocol::ICMPV6 => {
            let c = Icmpv6Packet::new_checked(l4).unwrap();
            assert!(c.verify_checksum(s, d), "ICMPv6 checksum");
            (s, c.echo_ident(), d, c.msg_type() as u16)
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn a_tcp_connection_from_an_ipv6_client_to_an_ipv4_server() {
    let n = net();
    let pf = pf(&n, RULES);
    let syn = through(&pf, &n.em0, &n.em1, &tcp6(A, B6, 40000, 80, TcpFlags::SYN, 1000, 0)).unwrap();
    let (s, sp, d, dp) = ends4(&syn);
    assert_eq!((s, d, dp), (R, B, 80));
    assert!((50001..=65535).contains(&sp), "{sp}");
    assert_eq!(Ipv4Packet::new_checked(syn.data()).unwrap().ttl(), 64, "the hop limit");
    let sa = tcp_bytes(B, R, 80, sp, TcpFlags::SYN | TcpFlags::ACK, 5000, 1001, 0);
    let sa = through(&pf, &n.em1, &n.em0, &sa).unwrap();
    assert_eq!(ends6(&sa), (a6(B6), 80, a6(A), 40000));
    // -ss as print_state prints an af-to state
    assert_eq!(
        pf.show_states(0, Instant::from_secs(1)),
        format!("all tcp 64:ff9b::a00:202[80] (10.0.2.2:80) -> 2001:db8:1::2[40000] (10.0.2.1:{sp})       SYN_SENT:ESTABLISHED\n")
    );
    let ack = through(&pf, &n.em0, &n.em1, &tcp6(A, B6, 40000, 80, TcpFlags::ACK, 1001, 5001)).unwrap();
    assert_eq!(ends4(&ack), (R, sp, B, 80));
    let data = tcp_bytes(B, R, 80, sp, TcpFlags::ACK | TcpFlags::PSH, 5001, 1001, 100);
    let data = through(&pf, &n.em1, &n.em0, &data).unwrap();
    assert_eq!(ends6(&data), (a6(B6), 80, a6(A), 40000));
    assert_eq!(&data.data()[60..], &[0x61; 100][..], "the payload");
    // nothing else from the IPv4 side gets in
    assert!(test(&pf, Direction::In, &n.em1, &tcp_bytes(B, R, 80, 9999, TcpFlags::SYN, 1, 0, 0)).is_none());
}

#[test]
fn udp_and_ping_through_nat64() {
    let n = net();
    let pf = pf(&n, RULES);
    let payload = b"query";
    let u = UdpRepr { src_port: 5353, dst_port: 53, payload_len: payload.len() };
    let q = v6(IpProtocol::UDP, u.buffer_len(), |b, s, d| u.emit_with_payload_v6(b, s, d, payload), A, B6);
    let out = through(&pf, &n.em0, &n.em1, &q).unwrap();
    let (s, sp, d, dp) = ends4(&out);
    assert_eq!((s, d, dp), (R, B, 53));
    let ans = through(&pf, &n.em1, &n.em0, &udp_bytes(B, R, 53, sp, b"answer")).unwrap();
    assert_eq!(ends6(&ans), (a6(B6), 53, a6(A), 5353));
    // ping: ICMPv6 echo ↔ ICMP echo, the id translated and back
    let e = Icmpv6Repr::EchoRequest { ident: 77, seq_no: 1, data: b"ping" };
    let ping = v6(IpProtocol::ICMPV6, e.buffer_len(), |b, s, d| e.emit(s, d, b), A, B6);
    let out = through(&pf, &n.em0, &n.em1, &ping).unwrap();
    let (s, id, d, ty) = ends4(&out);
    assert_eq!((s, d, ty), (R, B, 8));
    let rep = Icmpv4Repr::EchoReply { ident: id, seq_no: 1, data: b"ping" };
    let i = common::ip_repr(B, R, IpProtocol::ICMP, rep.buffer_len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    rep.emit(&mut b[20..]);
    let back = through(&pf, &n.em1, &n.em0, &b).unwrap();
    assert_eq!(ends6(&back), (a6(B6), 77, a6(A), 129), "an echo reply to A's id");
}

#[test]
fn what_cannot_be_translated_is_dropped_as_translate() {
    let n = net();
    let pf = pf(&n, RULES);
    // a destination outside any prefix the rule embeds: not this rule's
    assert!(test(&pf, Direction::In, &n.em0, &tcp6(A, "2001:db8:2::2", 1, 80, TcpFlags::SYN, 1, 0)).is_none());
    assert_eq!(pf.counter("translate"), Some(0));
    // an ICMPv6 query that is not an echo request (a node information
    // query, type 139): RFC 7915 has no ICMP for it
    let niq = v6(
        IpProtocol::ICMPV6,
        16,
        |b, s, d| {
            b[0] = 139;
            Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(s, d);
        },
        A,
        B6,
    );
    assert!(test(&pf, Direction::In, &n.em0, &niq).is_none());
    assert_eq!(pf.counter("translate"), Some(1));
    // every port of the pool in use
    let pf = pf_with(&n, "pass\npass in on em0 inet6 to 64:ff9b::/96 af-to inet from 10.0.2.1 port 50000\n");
    assert!(through(&pf, &n.em0, &n.em1, &tcp6(A, B6, 1, 80, TcpFlags::SYN, 1, 0)).is_some());
    assert!(test(&pf, Direction::In, &n.em0, &tcp6(A, B6, 2, 80, TcpFlags::SYN, 1, 0)).is_none());
    assert_eq!(pf.counter("translate"), Some(1));
}

#[test]
fn a_to_pool_and_a_longer_prefix_give_the_ipv4_destination() {
    let n = net();
    // RFC 6052 /64: the IPv4 address after the u octet
    let pf = pf(&n, "pass\npass in on em0 inet6 to 2001:db8:64::/64 af-to inet from 10.0.2.1\n");
    let embedded = softnet_wire::ipv6::nat64_embed(a6("2001:db8:64::"), 64, B).unwrap();
    let syn = through(&pf, &n.em0, &n.em1, &tcp6(A, &embedded.to_string(), 1, 80, TcpFlags::SYN, 1, 0)).unwrap();
    assert_eq!(ends4(&syn).2, B);
    let pf = pf_with(&n, "pass\npass in on em0 inet6 to 2001:db8:99::1 af-to inet from 10.0.2.1 to 10.0.2.9\n");
    let syn = through(&pf, &n.em0, &n.em1, &tcp6(A, "2001:db8:99::1", 1, 80, TcpFlags::SYN, 1, 0)).unwrap();
    assert_eq!(ends4(&syn).2, Ipv4Addr::new(10, 0, 2, 9));
}

/// An ICMP error from `from` to the router about the translated packet
/// `quoted` (its first 28 bytes, or `whole`).
fn icmp4_error(from: Ipv4Addr, r: &Icmpv4Repr) -> Vec<u8> {
    let i = common::ip_repr(from, R, IpProtocol::ICMP, r.buffer_len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    r.emit(&mut b[20..]);
    b
}

#[test]
fn icmp_errors_from_the_ipv4_side_reach_the_client_as_icmp6() {
    let n = net();
    let pf = pf(&n, RULES);
    let sent = tcp6(A, B6, 40000, 80, TcpFlags::SYN, 1000, 0);
    let syn = through(&pf, &n.em0, &n.em1, &sent).unwrap();
    let hop = Ipv4Addr::new(10, 0, 2, 254);
    // fragmentation needed from a router on the IPv4 side: packet too
    // big with 20 more, from the router's embedded address, quoting what
    // A sent
    let needfrag = Icmpv4Repr::DstUnreachable {
        code: softnet_wire::icmpv4::DstUnreachable::FragRequired,
        next_hop_mtu: 1400,
        data: syn.data(),
    };
    let e = through(&pf, &n.em1, &n.em0, &icmp4_error(hop, &needfrag)).unwrap();
    let ip = Ipv6Packet::new_checked(e.data()).unwrap();
    let src = softnet_wire::ipv6::nat64_embed(a6("64:ff9b::"), 96, hop).unwrap();
    assert_eq!((ip.src(), ip.dst(), ip.next_header()), (src, a6(A), IpProtocol::ICMPV6));
    let icmp = Icmpv6Packet::new_checked(&e.data()[40..]).unwrap();
    assert!(icmp.verify_checksum(src, a6(A)));
    assert_eq!((icmp.msg_type(), icmp.mtu()), (2, 1420));
    assert_eq!(icmp.data(), &sent[..], "the quote is A's segment as A sent it (checksum included)");
    // port unreachable from B about a UDP datagram: the whole datagram quoted
    let u = UdpRepr { src_port: 5353, dst_port: 9, payload_len: 4 };
    let q6 = v6(IpProtocol::UDP, u.buffer_len(), |b, s, d| u.emit_with_payload_v6(b, s, d, b"abcd"), A, B6);
    let out = through(&pf, &n.em0, &n.em1, &q6).unwrap();
    let unreach = Icmpv4Repr::DstUnreachable {
        code: softnet_wire::icmpv4::DstUnreachable::PortUnreachable,
        next_hop_mtu: 0,
        data: out.data(),
    };
    let e = through(&pf, &n.em1, &n.em0, &icmp4_error(B, &unreach)).unwrap();
    let icmp = Icmpv6Packet::new_checked(&e.data()[40..]).unwrap();
    assert!(icmp.verify_checksum(a6(B6), a6(A)));
    assert_eq!((icmp.msg_type(), icmp.code()), (1, 4));
    assert_eq!(icmp.data(), &q6[..]);
    // time exceeded keeps its code; a parameter problem is dropped
    let te = Icmpv4Repr::TimeExceeded { code: softnet_wire::icmpv4::TimeExceeded::TtlExpired, data: syn.data() };
    let e = through(&pf, &n.em1, &n.em0, &icmp4_error(hop, &te)).unwrap();
    assert_eq!(Icmpv6Packet::new_checked(&e.data()[40..]).unwrap().msg_type(), 3);
    let mut pp = icmp4_error(hop, &te);
    pp[20] = 12;
    let c = softnet_wire::checksum::checksum(&{
        let mut m = pp[20..].to_vec();
        m[2] = 0;
        m[3] = 0;
        m
    });
    pp[22..24].copy_from_slice(&c.to_be_bytes());
    assert!(test(&pf, Direction::In, &n.em1, &pp).is_none());
    assert_eq!(pf.counter("translate"), Some(1));
}

#[test]
fn icmp6_errors_from_the_ipv6_side_reach_the_server_as_icmp() {
    let n = net();
    let pf = pf(&n, RULES);
    let syn = through(&pf, &n.em0, &n.em1, &tcp6(A, B6, 40000, 80, TcpFlags::SYN, 1000, 0)).unwrap();
    let sp = ends4(&syn).1;
    // the server's answer, translated for A
    let sent = tcp_bytes(B, R, 80, sp, TcpFlags::SYN | TcpFlags::ACK, 5000, 1001, 0);
    let sa = through(&pf, &n.em1, &n.em0, &sent).unwrap();
    // a router on A's side: packet too big about it
    let hop = "2001:db8:1::fe";
    let ptb = Icmpv6Repr::PacketTooBig { mtu: 1300, data: sa.data() };
    let e = v6(IpProtocol::ICMPV6, ptb.buffer_len(), |b, s, d| ptb.emit(s, d, b), hop, B6);
    let e = through(&pf, &n.em0, &n.em1, &e).unwrap();
    let ip = Ipv4Packet::new_checked(e.data()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src(), ip.dst(), ip.protocol()), (R, B, IpProtocol::ICMP));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.msg_type(), icmp.code(), icmp.next_hop_mtu()), (3, 4, 1280));
    let quote = icmp.data();
    assert_eq!(&quote[12..], &sent[12..], "the quote is B's segment as B sent it (but its TTL, id and DF)");
    // A's port unreachable about a UDP datagram from B
    let u = UdpRepr { src_port: 5353, dst_port: 9, payload_len: 0 };
    let q6 = v6(IpProtocol::UDP, u.buffer_len(), |b, s, d| u.emit_with_payload_v6(b, s, d, &[]), A, B6);
    let out = through(&pf, &n.em0, &n.em1, &q6).unwrap();
    let up = ends4(&out).1;
    let ans = through(&pf, &n.em1, &n.em0, &udp_bytes(B, R, 9, up, b"late")).unwrap();
    let unr =
        Icmpv6Repr::DstUnreachable { code: softnet_wire::icmpv6::DstUnreachable::PortUnreachable, data: ans.data() };
    let e = v6(IpProtocol::ICMPV6, unr.buffer_len(), |b, s, d| unr.emit(s, d, b), A, B6);
    let e = through(&pf, &n.em0, &n.em1, &e).unwrap();
    let ip = Ipv4Packet::new_checked(e.data()).unwrap();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.msg_type(), icmp.code()), (3, 3));
    let q = Ipv4Packet::new_checked(icmp.data()).unwrap();
    assert!(q.verify_checksum());
    assert_eq!((q.src(), q.dst()), (B, R));
    let qu = UdpPacket::new_checked(q.payload()).unwrap();
    assert!(qu.verify_checksum(B, R), "the quoted datagram's checksum, moved back");
    assert_eq!((qu.src_port(), qu.dst_port()), (9, up));
}

#[test]
fn af_to_inet6_takes_an_ipv4_client_to_an_ipv6_server() {
    let n = net();
    // NAT46: B reaches the IPv6 server 2001:db8:1::a00:263 as 10.0.2.99
    let pf = pf(
        &n,
        "block all\npass out all\npass in on em1 inet to 10.0.2.99 af-to inet6 from 2001:db8:1::1 to 2001:db8:1::/96\n",
    );
    let (nat6, srv6) = (a6("2001:db8:1::1"), a6("2001:db8:1::a00:263"));
    let v4dst = Ipv4Addr::new(10, 0, 2, 99);
    let syn = through(&pf, &n.em1, &n.em0, &tcp_bytes(B, v4dst, 40000, 80, TcpFlags::SYN, 1000, 0, 0)).unwrap();
    let (s, sp, d, dp) = ends6(&syn);
    assert_eq!((s, d, dp), (nat6, srv6, 80));
    assert!((50001..=65535).contains(&sp), "{sp}");
    let sa = through(
        &pf,
        &n.em0,
        &n.em1,
        &tcp6("2001:db8:1::a00:263", "2001:db8:1::1", 80, sp, TcpFlags::SYN | TcpFlags::ACK, 5000, 1001),
    )
    .unwrap();
    assert_eq!(ends4(&sa), (v4dst, 80, B, 40000));
    let ack = through(&pf, &n.em1, &n.em0, &tcp_bytes(B, v4dst, 40000, 80, TcpFlags::ACK, 1001, 5001, 10)).unwrap();
    assert_eq!(ends6(&ack), (nat6, sp, srv6, 80));
    // ping: ICMP echo to ICMPv6 echo and back
    let e = Icmpv4Repr::EchoRequest { ident: 9, seq_no: 1, data: b"ping" };
    let i = common::ip_repr(B, v4dst, IpProtocol::ICMP, e.buffer_len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    e.emit(&mut b[20..]);
    let out = through(&pf, &n.em1, &n.em0, &b).unwrap();
    let (s, id, d, ty) = ends6(&out);
    assert_eq!((s, d, ty), (nat6, srv6, 128));
    let r = Icmpv6Repr::EchoReply { ident: id, seq_no: 1, data: b"ping" };
    let rep = v6(IpProtocol::ICMPV6, r.buffer_len(), |b, s, d| r.emit(s, d, b), "2001:db8:1::a00:263", "2001:db8:1::1");
    let back = through(&pf, &n.em0, &n.em1, &rep).unwrap();
    assert_eq!(ends4(&back), (v4dst, 9, B, 0), "the echo reply with B's id");
}

/// The source address each of `flows` UDP datagrams (sender, sport) of
/// a NAT64 pf got.
fn nat64_sources(pf: &Pf, n: &Net, flows: &[(&str, u16)]) -> Vec<Ipv4Addr> {
    flows
        .iter()
        .map(|&(src, sport)| {
            let u = UdpRepr { src_port: sport, dst_port: 53, payload_len: 1 };
            let q = v6(IpProtocol::UDP, u.buffer_len(), |b, s, d| u.emit_with_payload_v6(b, s, d, b"q"), src, B6);
            ends4(&through(pf, &n.em0, &n.em1, &q).unwrap()).0
        })
        .collect()
}

#[test]
fn sticky_address_on_the_from_pool_keeps_a_sources_translated_address() {
    let n = net();
    let pool = "{ 10.0.2.1, 10.0.2.3 } round-robin";
    let rules = |opts: &str| {
        format!("block all\npass out all\npass in on em0 inet6 from any to 64:ff9b::/96 af-to inet from {pool}{opts}\n")
    };
    let (r1, r3) = (R, Ipv4Addr::new(10, 0, 2, 3));
    // Without it, each new state the next address.
    let plain = pf(&n, &rules(""));
    assert_eq!(nat64_sources(&plain, &n, &[(A, 5000), (A, 5001), (A, 5002)]), [r1, r3, r1]);
    // With it, A keeps the first; the node is keyed as pf_map_addr keys it
    // in the new family: the first 32 bits of the source, so a client of
    // another /32 gets the next address and one of A's /32 shares A's.
    let sticky = pf(&n, &rules(" sticky-address"));
    let flows = [(A, 5000), (A, 5001), ("2001:db9::5", 5000), (A, 5002), ("2001:db8:7::9", 5000)];
    assert_eq!(nat64_sources(&sticky, &n, &flows), [r1, r1, r3, r1, r1]);
    let sn = sticky.show_src_nodes(0, Instant::from_secs(1));
    assert!(sn.contains("32.1.13.184 nat-to 10.0.2.1 ( states 4,"), "{sn}");
    assert!(sn.contains("32.1.13.185 nat-to 10.0.2.3 ( states 1,"), "{sn}");
    // NAT46 likewise: the IPv4 source as the first 32 bits of an IPv6 one.
    let pf46 = pf(
        &n,
        "block all\npass out all\npass in on em1 inet to 10.0.2.99 af-to inet6 from \
         { 2001:db8:1::1, 2001:db8:1::2 } round-robin sticky-address to 2001:db8:1::/96\n",
    );
    let v4dst = Ipv4Addr::new(10, 0, 2, 99);
    let srcs: Vec<Ipv6Addr> = (0..3)
        .map(|i| ends6(&through(&pf46, &n.em1, &n.em0, &udp_bytes(B, v4dst, 6000 + i, 53, b"q")).unwrap()).0)
        .collect();
    assert_eq!(srcs, [a6("2001:db8:1::1"); 3]);
    let sn = pf46.show_src_nodes(0, Instant::from_secs(1));
    assert!(sn.contains("a00:202:: nat-to 2001:db8:1::1 ( states 3,"), "{sn}");
}

#[test]
fn sticky_address_on_the_to_pool_keys_its_nodes_by_the_translated_source() {
    let n = net();
    // NAT64 to one of two servers: round-robin alone alternates; with
    // sticky-address the node of the translated source (every client of
    // the one `from` address) keeps the first server.
    let rules = |opts: &str| {
        format!(
            "block all\npass out all\npass in on em0 inet6 from any to 64:ff9b::/96 af-to inet from 10.0.2.1 \
             to {{ 10.0.2.7, 10.0.2.8 }} round-robin{opts}\n"
        )
    };
    let (s7, s8) = (Ipv4Addr::new(10, 0, 2, 7), Ipv4Addr::new(10, 0, 2, 8));
    let dsts = |pf: &Pf, flows: &[(&str, u16)]| -> Vec<Ipv4Addr> {
        flows
            .iter()
            .map(|&(src, sport)| {
                let u = UdpRepr { src_port: sport, dst_port: 53, payload_len: 1 };
                let q = v6(IpProtocol::UDP, u.buffer_len(), |b, s, d| u.emit_with_payload_v6(b, s, d, b"q"), src, B6);
                ends4(&through(pf, &n.em0, &n.em1, &q).unwrap()).2
            })
            .collect()
    };
    let flows = [(A, 5000), ("2001:db9::5", 5000), (A, 5001)];
    assert_eq!(dsts(&pf(&n, &rules("")), &flows), [s7, s8, s7]);
    let sticky = pf(&n, &rules(" sticky-address"));
    assert_eq!(dsts(&sticky, &flows), [s7, s7, s7]);
    let sn = sticky.show_src_nodes(0, Instant::from_secs(1));
    assert!(sn.contains("10.0.2.1 rdr-to 10.0.2.7 ( states 3,"), "{sn}");
    // NAT46: the node of the translated IPv6 source keeps the first
    // prefix the `to` pool gave.
    let pf46 = pf(
        &n,
        "block all\npass out all\npass in on em1 inet to 10.0.2.99 af-to inet6 from 2001:db8:1::1 \
         to { 2001:db8:2::/96, 2001:db8:3::/96 } round-robin sticky-address\n",
    );
    let v4dst = Ipv4Addr::new(10, 0, 2, 99);
    let dsts6: Vec<Ipv6Addr> = (0..3)
        .map(|i| ends6(&through(&pf46, &n.em1, &n.em0, &udp_bytes(B, v4dst, 6000 + i, 53, b"q")).unwrap()).2)
        .collect();
    assert_eq!(dsts6, [a6("2001:db8:2::a00:263"); 3]);
    let sn = pf46.show_src_nodes(0, Instant::from_secs(1));
    assert!(sn.contains("2001:db8:1::1 rdr-to 2001:db8:2:: ( states 3,"), "{sn}");
}

#[test]
fn icmp_errors_of_nat46_connections_are_translated_both_ways() {
    let n = net();
    let pf = pf(
        &n,
        "block all\npass out all\npass in on em1 inet to 10.0.2.99 af-to inet6 from 2001:db8:1::1 to 2001:db8:1::/96\n",
    );
    let (nat6, srv6) = (a6("2001:db8:1::1"), a6("2001:db8:1::a00:263"));
    let v4dst = Ipv4Addr::new(10, 0, 2, 99);
    // B's datagram to the server, and the server's port unreachable about
    // it: B gets an ICMP error from the address it sent to, quoting its
    // datagram as it sent it.
    let sent = udp_bytes(B, v4dst, 5353, 9, b"abcd");
    let out = through(&pf, &n.em1, &n.em0, &sent).unwrap();
    let sp = ends6(&out).1;
    let unr =
        Icmpv6Repr::DstUnreachable { code: softnet_wire::icmpv6::DstUnreachable::PortUnreachable, data: out.data() };
    let e =
        v6(IpProtocol::ICMPV6, unr.buffer_len(), |b, s, d| unr.emit(s, d, b), "2001:db8:1::a00:263", "2001:db8:1::1");
    let e = through(&pf, &n.em0, &n.em1, &e).expect("translated for B");
    let ip = Ipv4Packet::new_checked(e.data()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src(), ip.dst(), ip.protocol()), (v4dst, B, IpProtocol::ICMP));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.msg_type(), icmp.code()), (3, 3));
    let q = Ipv4Packet::new_checked(icmp.data()).unwrap();
    assert_eq!((q.src(), q.dst()), (B, v4dst));
    let qu = UdpPacket::new_checked(q.payload()).unwrap();
    assert!(qu.verify_checksum(B, v4dst), "the quoted datagram's checksum, moved back");
    assert_eq!((qu.src_port(), qu.dst_port(), qu.payload()), (5353, 9, &b"abcd"[..]));
    // packet too big from a router on the IPv6 side: fragmentation needed, 20 less
    let ptb = Icmpv6Repr::PacketTooBig { mtu: 1400, data: out.data() };
    let e = v6(IpProtocol::ICMPV6, ptb.buffer_len(), |b, s, d| ptb.emit(s, d, b), "2001:db8:1::fe", "2001:db8:1::1");
    let e = through(&pf, &n.em0, &n.em1, &e).unwrap();
    let icmp = Icmpv4Packet::new_checked(&e.data()[20..]).unwrap();
    assert_eq!((icmp.msg_type(), icmp.code(), icmp.next_hop_mtu()), (3, 4, 1380));
    // The server's answer, and B's port unreachable about it: the server
    // gets an ICMPv6 error from B's translated address quoting its
    // datagram as it sent it.
    let ans = udp6_bytes(srv6, nat6, 9, sp, b"late");
    let back = through(&pf, &n.em0, &n.em1, &ans).unwrap();
    assert_eq!(ends4(&back), (v4dst, 9, B, 5353));
    let unr4 = Icmpv4Repr::DstUnreachable {
        code: softnet_wire::icmpv4::DstUnreachable::PortUnreachable,
        next_hop_mtu: 0,
        data: back.data(),
    };
    let i = common::ip_repr(B, v4dst, IpProtocol::ICMP, unr4.buffer_len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    unr4.emit(&mut b[20..]);
    let e = through(&pf, &n.em1, &n.em0, &b).expect("translated for the server");
    let ip = Ipv6Packet::new_checked(e.data()).unwrap();
    assert_eq!((ip.src(), ip.dst(), ip.next_header()), (nat6, srv6, IpProtocol::ICMPV6));
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(nat6, srv6));
    assert_eq!((icmp.msg_type(), icmp.code()), (1, 4));
    assert_eq!(icmp.data(), &ans[..], "the quote is the server's datagram as it sent it");
    assert!(matches!(pf.counter("translate"), None | Some(0)), "none dropped as translate");
}

fn udp6_bytes(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let u = UdpRepr { src_port: sport, dst_port: dport, payload_len: payload.len() };
    let r = Ipv6Repr {
        src,
        dst,
        next_header: IpProtocol::UDP,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        payload_len: u.buffer_len(),
    };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut b);
    u.emit_with_payload_v6(&mut b[40..], src, dst, payload);
    b
}
