//! Translation of IPv6 through `PacketFilter::test`: nat-to, rdr-to and
//! binat-to on `inet6` rules, the packets of translated states both
//! ways, ICMPv6 echo ids and ICMPv6 errors translated back, every
//! checksum (IPv6's pseudo-header included) checked by a full re-sum,
//! ports running out, `(if)` pools following the interface's addresses.

use crate::common;
use common::{a6, echo6_bytes, forward_back, forward_out, icmp6_bytes, net, tcp6_bytes, test, udp6_bytes, Net};

use std::net::Ipv6Addr;

use softnet_core::filter::Direction;
use softnet_core::iface::{Dad6State, If6Addr};
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::Ipv6Packet;
use softnet_wire::tcp::{TcpFlags, TcpPacket};
use softnet_wire::udp::UdpPacket;

/// A and A2 behind the router (em0), B beyond it (em1), R em1's address.
const A: &str = "2001:db8:1::2";
const A2: &str = "2001:db8:1::3";
const B: &str = "2001:db8:2::2";
const R: &str = "2001:db8:2::1";

fn pf(n: &Net, text: &str) -> Pf {
    softnet_core::rng::install(softnet_core::rng::WorkerRng::seeded(11));
    n.em1.set_addrs6(vec![If6Addr { addr: a6(R), prefix_len: 64, state: Dad6State::Preferred }]);
    common::pf_with(n, text)
}

fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> PacketBuf {
    PacketBuf::from_slice(&udp6_bytes(src, dst, sport, dport, b"some data"))
}

fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: TcpFlags, seq: u32, ack: u32) -> PacketBuf {
    PacketBuf::from_slice(&tcp6_bytes(src, dst, sport, dport, flags, seq, ack))
}

fn icmp6(src: &str, dst: &str, r: &Icmpv6Repr) -> PacketBuf {
    PacketBuf::from_slice(&icmp6_bytes(src, dst, 64, r))
}

fn echo(src: &str, dst: &str, request: bool, ident: u16) -> PacketBuf {
    PacketBuf::from_slice(&echo6_bytes(src, dst, !request, ident))
}

/// (src, sport, dst, dport) of a TCP/UDP/echo packet (an echo's id as its
/// source port); every checksum checked by a full re-sum.
fn ends(p: &PacketBuf) -> (Ipv6Addr, u16, Ipv6Addr, u16) {
    let ip = Ipv6Packet::new_checked(p.data()).unwrap();
    let (s, d) = (ip.src(), ip.dst());
    let l4 = &p.data()[40..];
    match ip.next_header() {
        IpProtocol::UDP => {
            let u = UdpPacket::new_checked(l4).unwrap();
            assert!(u.verify_checksum_v6(s, d), "UDP checksum");
            (s, u.src_port(), d, u.dst_port())
        }
        IpProtocol::TCP => {
            let t = TcpPacket::new_checked(l4).unwrap();
            assert!(t.verify_checksum_v6(s, d), "TCP checksum");
            (s, t.src_port(), d, t.dst_port())
        }
        IpProtocol::ICMPV6 => {
            let c = Icmpv6Packet::new_checked(l4).unwrap();
            assert!(c.verify_checksum(s, d), "ICMPv6 checksum");
            (s, c.echo_ident(), d, 0)
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn nat_to_hides_the_source_and_replies_find_their_way_back() {
    let n = net();
    let pf = pf(&n, "match out on em1 inet6 from 2001:db8:1::/64 nat-to 2001:db8:2::1\npass\n");
    let out = forward_out(&pf, &n, udp(A, B, 5353, 53)).unwrap();
    let (s, sp, d, dp) = ends(&out);
    assert_eq!((s, d, dp), (a6(R), a6(B), 53));
    assert!((50001..=65535).contains(&sp), "{sp}");
    assert_eq!(
        ends(&forward_out(&pf, &n, udp(A, B, 5353, 53)).unwrap()),
        (a6(R), sp, a6(B), 53),
        "same flow, same port"
    );
    let back = forward_back(&pf, &n, udp(B, R, 53, sp)).unwrap();
    assert_eq!(ends(&back), (a6(B), 53, a6(A), 5353));
    // a packet to the translated port from elsewhere is no reply
    let other = test(&pf, Direction::In, &n.em1, udp("2001:db8:2::9", R, 53, sp)).unwrap();
    assert_eq!(ends(&other).2, a6(R), "not translated");
}

#[test]
fn a_tcp_connection_through_nat_to_the_interfaces_address() {
    let n = net();
    let pf = pf(&n, "pass out on em1 inet6 proto tcp nat-to (em1)\npass in\n");
    let syn = forward_out(&pf, &n, tcp(A, B, 40000, 80, TcpFlags::SYN, 1000, 0)).unwrap();
    let (s, sp, d, _) = ends(&syn);
    assert_eq!((s, d), (a6(R), a6(B)));
    let synack = forward_back(&pf, &n, tcp(B, R, 80, sp, TcpFlags::SYN | TcpFlags::ACK, 5000, 1001)).unwrap();
    assert_eq!(ends(&synack), (a6(B), 80, a6(A), 40000));
    let ack = forward_out(&pf, &n, tcp(A, B, 40000, 80, TcpFlags::ACK, 1001, 5001)).unwrap();
    assert_eq!(ends(&ack), (a6(R), sp, a6(B), 80));
    let data = forward_back(&pf, &n, tcp(B, R, 80, sp, TcpFlags::ACK | TcpFlags::PSH, 5001, 1001)).unwrap();
    assert_eq!(ends(&data), (a6(B), 80, a6(A), 40000));
    // `(em1)` follows the interface: a new address, new connections use it
    n.em1.set_addrs6(vec![If6Addr { addr: a6("2001:db8:2::77"), prefix_len: 64, state: Dad6State::Preferred }]);
    let syn2 = forward_out(&pf, &n, tcp(A, B, 40001, 80, TcpFlags::SYN, 1, 0)).unwrap();
    assert_eq!(ends(&syn2).0, a6("2001:db8:2::77"));
    // an interface with no usable IPv6 address translates nothing
    n.em1.set_addrs6(vec![If6Addr { addr: a6("2001:db8:2::78"), prefix_len: 64, state: Dad6State::Tentative }]);
    assert!(forward_out(&pf, &n, tcp(A, B, 40002, 80, TcpFlags::SYN, 1, 0)).is_none());
    assert_eq!(pf.counter("translate"), Some(1));
}

#[test]
fn rdr_to_forwards_a_port_and_the_answers_come_from_it() {
    let n = net();
    let pf =
        pf(&n, "pass in on em1 inet6 proto tcp to 2001:db8:2::1 port 80 rdr-to 2001:db8:1::5 port 8080\npass out\n");
    let srv = "2001:db8:1::5";
    let syn = test(&pf, Direction::In, &n.em1, tcp(B, R, 3333, 80, TcpFlags::SYN, 1, 0)).unwrap();
    assert_eq!(ends(&syn), (a6(B), 3333, a6(srv), 8080));
    test(&pf, Direction::Out, &n.em0, syn).unwrap();
    let synack =
        test(&pf, Direction::In, &n.em0, tcp(srv, B, 8080, 3333, TcpFlags::SYN | TcpFlags::ACK, 9, 2)).unwrap();
    let synack = test(&pf, Direction::Out, &n.em1, synack).unwrap();
    assert_eq!(ends(&synack), (a6(R), 80, a6(B), 3333));
}

#[test]
fn binat_to_maps_both_ways_and_keeps_ports() {
    let n = net();
    let pf = pf(&n, "pass on em1 inet6 from 2001:db8:1::5 binat-to 2001:db8:2::9\npass on em0\n");
    let (h, pub_) = ("2001:db8:1::5", "2001:db8:2::9");
    let out = test(&pf, Direction::Out, &n.em1, udp(h, B, 4444, 53)).unwrap();
    assert_eq!(ends(&out), (a6(pub_), 4444, a6(B), 53), "static-port");
    let back = test(&pf, Direction::In, &n.em1, udp(B, pub_, 53, 4444)).unwrap();
    assert_eq!(ends(&back), (a6(B), 53, a6(h), 4444));
    let inb = test(&pf, Direction::In, &n.em1, udp(B, pub_, 7000, 9999)).unwrap();
    assert_eq!(ends(&inb), (a6(B), 7000, a6(h), 9999));
    let reply = test(&pf, Direction::Out, &n.em1, udp(h, B, 9999, 7000)).unwrap();
    assert_eq!(ends(&reply), (a6(pub_), 9999, a6(B), 7000));
}

#[test]
fn two_hosts_pinging_with_the_same_id_get_their_own_replies() {
    let n = net();
    let pf = pf(&n, "match out on em1 inet6 nat-to 2001:db8:2::1\npass\n");
    let a = forward_out(&pf, &n, echo(A, B, true, 77)).unwrap();
    let a2 = forward_out(&pf, &n, echo(A2, B, true, 77)).unwrap();
    let (ida, ida2) = (ends(&a).1, ends(&a2).1);
    assert_eq!((ends(&a).0, ends(&a2).0), (a6(R), a6(R)));
    assert_ne!(ida, ida2, "the query ids are translated apart");
    let ra = forward_back(&pf, &n, echo(B, R, false, ida)).unwrap();
    let ra2 = forward_back(&pf, &n, echo(B, R, false, ida2)).unwrap();
    assert_eq!((ends(&ra).2, ends(&ra).1), (a6(A), 77));
    assert_eq!((ends(&ra2).2, ends(&ra2).1), (a6(A2), 77));
}

/// An ICMPv6 error (`ty`: port unreachable, packet too big) from B about
/// the translated packet `quoted`.
fn icmp6_error(from: &str, to: &str, too_big: bool, quoted: &[u8]) -> PacketBuf {
    let r = if too_big {
        Icmpv6Repr::PacketTooBig { mtu: 1280, data: quoted }
    } else {
        Icmpv6Repr::DstUnreachable { code: softnet_wire::icmpv6::DstUnreachable::PortUnreachable, data: quoted }
    };
    icmp6(from, to, &r)
}

#[test]
fn icmp6_errors_about_translated_packets_go_back_translated() {
    let n = net();
    let pf = pf(&n, "match out on em1 inet6 nat-to 2001:db8:2::1\npass\n");
    // a UDP datagram: port unreachable, the whole datagram quoted
    let out = forward_out(&pf, &n, udp(A, B, 5353, 9)).unwrap();
    let err = forward_back(&pf, &n, icmp6_error(B, R, false, out.data())).unwrap();
    let ip = Ipv6Packet::new_checked(err.data()).unwrap();
    assert_eq!((ip.src(), ip.dst()), (a6(B), a6(A)));
    let icmp = Icmpv6Packet::new_checked(&err.data()[40..]).unwrap();
    assert!(icmp.verify_checksum(a6(B), a6(A)), "ICMPv6 checksum over the rewritten quote");
    let quote = icmp.data();
    assert_eq!(quote, udp(A, B, 5353, 9).data(), "the quote is what A sent");
    // a TCP segment, quoted by a packet too big
    let syn = forward_out(&pf, &n, tcp(A, B, 40000, 443, TcpFlags::SYN, 1000, 0)).unwrap();
    let err = forward_back(&pf, &n, icmp6_error(B, R, true, syn.data())).unwrap();
    let icmp = Icmpv6Packet::new_checked(&err.data()[40..]).unwrap();
    assert!(icmp.verify_checksum(a6(B), a6(A)));
    assert_eq!(icmp.data(), tcp(A, B, 40000, 443, TcpFlags::SYN, 1000, 0).data());
    // an echo request's error: the quoted id goes back too
    let ping = forward_out(&pf, &n, echo(A, B, true, 4242)).unwrap();
    let err = forward_back(&pf, &n, icmp6_error(B, R, false, ping.data())).unwrap();
    let icmp = Icmpv6Packet::new_checked(&err.data()[40..]).unwrap();
    assert!(icmp.verify_checksum(a6(B), a6(A)));
    assert_eq!(icmp.data(), echo(A, B, true, 4242).data());
    // an error quoting a packet no state translated is not rewritten
    let stray = udp(R, B, 60000, 9);
    assert!(test(&pf, Direction::In, &n.em1, icmp6_error(B, R, false, stray.data()))
        .is_some_and(|p| { Ipv6Packet::new_checked(p.data()).unwrap().dst() == a6(R) }));
}

#[test]
fn when_every_port_is_taken_new_flows_are_dropped_as_translate() {
    let n = net();
    let pf =
        pf(&n, "pass out on em1 inet6 proto udp nat-to 2001:db8:2::1 port 50000:50001\npass out on em1 proto tcp\n");
    let a = test(&pf, Direction::Out, &n.em1, udp(A, B, 1, 53)).unwrap();
    let b = test(&pf, Direction::Out, &n.em1, udp(A, B, 2, 53)).unwrap();
    let mut ports = vec![ends(&a).1, ends(&b).1];
    ports.sort();
    assert_eq!(ports, vec![50000, 50001]);
    assert!(test(&pf, Direction::Out, &n.em1, udp(A, B, 3, 53)).is_none());
    assert_eq!(pf.counter("translate"), Some(1));
    assert!(test(&pf, Direction::Out, &n.em1, udp(A, B, 1, 53)).is_some(), "an existing flow goes on");
    assert!(test(&pf, Direction::Out, &n.em1, tcp(A, B, 5, 80, TcpFlags::SYN, 1, 0)).is_some());
}

#[test]
fn pools_over_networks_and_tables_give_ipv6_addresses() {
    let n = net();
    let pf = pf(
        &n,
        "table <p6> { 2001:db8:9::1 2001:db8:9::2 10.9.9.9 }\n\
         pass out on em1 inet6 proto udp to port 53 nat-to <p6> round-robin\n\
         pass out on em1 inet6 proto udp to port 54 nat-to 2001:db8:8::/126 source-hash 0x0102030405060708090a0b0c0d0e0f10\n\
         pass out on em1 inet6 proto udp to port 55 nat-to 2001:db8:7::/120 random\n",
    );
    let src = |sport, dport| ends(&test(&pf, Direction::Out, &n.em1, udp(A, B, sport, dport)).unwrap()).0;
    // round-robin over the table's IPv6 entries (its IPv4 entry is not one)
    assert_eq!([src(1, 53), src(2, 53), src(3, 53)], [a6("2001:db8:9::1"), a6("2001:db8:9::2"), a6("2001:db8:9::1")]);
    // source-hash: one source, one address of the network
    let h = src(1, 54);
    assert_eq!(u128::from(h) >> 2, u128::from(a6("2001:db8:8::")) >> 2);
    assert_eq!(src(2, 54), h);
    let h2 = ends(&test(&pf, Direction::Out, &n.em1, udp(A2, B, 1, 54)).unwrap()).0;
    assert_eq!(u128::from(h2) >> 2, u128::from(a6("2001:db8:8::")) >> 2);
    // random: inside the network
    for p in 1..20 {
        assert_eq!(u128::from(src(p, 55)) >> 8, u128::from(a6("2001:db8:7::")) >> 8);
    }
}

#[test]
fn pfctl_ss_prints_translated_ipv6_states() {
    let n = net();
    let pf = pf(&n, "pass out on em1 inet6 proto tcp nat-to 2001:db8:2::1\n");
    let syn = test(&pf, Direction::Out, &n.em1, tcp(A, B, 40000, 80, TcpFlags::SYN, 1000, 0)).unwrap();
    let sp = ends(&syn).1;
    let ss = pf.show_states(0, Instant::from_secs(1));
    assert_eq!(
        ss.lines().collect::<Vec<_>>(),
        vec![format!("all tcp 2001:db8:2::1[{sp}] (2001:db8:1::2[40000]) -> 2001:db8:2::2[80]       SYN_SENT:CLOSED")]
    );
}

#[test]
fn inet6_translation_loads() {
    let n = net();
    for text in [
        "pass out inet6 nat-to 2001:db8::1\n",
        "pass in inet6 rdr-to 2001:db8::1\n",
        "pass on em1 inet6 from 2001:db8:1::5 binat-to 2001:db8:2::9\n",
        "pass out inet6 nat-to 2001:db8::/64 round-robin sticky-address\n",
    ] {
        assert!(softnet_pf::load_ruleset(text, "pf.conf", &n.resolver).is_ok(), "{text}");
    }
}
