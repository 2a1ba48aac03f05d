//! `scrub (…)` and `set tos` on IPv6 packets (pf_scrub's IPv6 part,
//! pf_normalize_mss, pf_normalize_tcp_stateful's hop limit): on the
//! packet a rule passes and on the packets of its state.

use crate::common;
use common::{net, pf_with, HeapBufs as Bufs};

use std::net::Ipv6Addr;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::{Ipv6Packet, Ipv6Repr};
use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

const A: &str = "2001:db8:1::2";
const B: &str = "2001:db8:2::2";

#[allow(clippy::too_many_arguments)]
fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: TcpFlags, seq: u32, ack: u32, hlim: u8, tc: u8) -> Vec<u8> {
    let (s, d) = (a6(src), a6(dst));
    let t = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq,
        ack,
        flags,
        window: 8192,
        max_seg_size: flags.contains(TcpFlags::SYN).then_some(1460),
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    };
    let r = Ipv6Repr {
        src: s,
        dst: d,
        next_header: IpProtocol::TCP,
        hop_limit: hlim,
        traffic_class: tc,
        flow_label: 7,
        payload_len: t.buffer_len(),
    };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut b);
    t.emit_with_payload_v6(&mut b[40..], s, d, &[]);
    b
}

fn go(pf: &Pf, dir: Direction, ifp: &Interface, b: Vec<u8>) -> Option<Vec<u8>> {
    let mut r = vec![];
    match pf.test(0, Instant::from_secs(1), dir, ifp, PacketBuf::from_slice(&b), &mut Bufs, &mut r) {
        Verdict::Pass(p) => Some(p.data().to_vec()),
        _ => None,
    }
}

/// (hop limit, traffic class, MSS option), the TCP checksum checked.
fn look(p: &[u8]) -> (u8, u8, Option<u16>) {
    let ip = Ipv6Packet::new_checked(p).unwrap();
    let t = TcpPacket::new_checked(&p[40..]).unwrap();
    assert!(t.verify_checksum_v6(ip.src(), ip.dst()), "TCP checksum");
    (ip.hop_limit(), ip.traffic_class(), TcpRepr::parse(&t).unwrap().max_seg_size)
}

#[test]
fn scrub_options_apply_to_ipv6_packets_and_their_states() {
    let n = net();
    let pf = pf_with(&n, "match inet6 scrub (min-ttl 20 max-mss 1300) set tos 0x20\npass\n");
    let syn = go(&pf, Direction::In, &n.em0, tcp(A, B, 40000, 80, TcpFlags::SYN, 1, 0, 5, 0x01)).unwrap();
    assert_eq!(look(&syn), (20, 0x21, Some(1300)), "hop limit, traffic class (ECN kept), MSS");
    // the state's packets both ways get the same
    let synack =
        go(&pf, Direction::In, &n.em1, tcp(B, A, 80, 40000, TcpFlags::SYN | TcpFlags::ACK, 9, 2, 64, 0)).unwrap();
    assert_eq!(look(&synack), (64, 0x20, Some(1300)));
    let ack = go(&pf, Direction::In, &n.em0, tcp(A, B, 40000, 80, TcpFlags::ACK, 2, 10, 1, 0)).unwrap();
    assert_eq!(look(&ack), (20, 0x20, None));
}

#[test]
fn reassemble_tcp_keeps_each_peers_highest_hop_limit() {
    let n = net();
    let pf = pf_with(&n, "pass inet6 proto tcp scrub (reassemble tcp)\n");
    go(&pf, Direction::In, &n.em0, tcp(A, B, 40000, 80, TcpFlags::SYN, 1, 0, 60, 0)).unwrap();
    go(&pf, Direction::In, &n.em0, tcp(B, A, 80, 40000, TcpFlags::SYN | TcpFlags::ACK, 9, 2, 50, 0)).unwrap();
    // A's later segment comes with a lower hop limit: raised to A's highest
    let ack = go(&pf, Direction::In, &n.em0, tcp(A, B, 40000, 80, TcpFlags::ACK, 2, 10, 33, 0)).unwrap();
    assert_eq!(look(&ack).0, 60);
    // a higher one becomes the highest
    let ack = go(&pf, Direction::In, &n.em0, tcp(A, B, 40000, 80, TcpFlags::ACK, 2, 10, 61, 0)).unwrap();
    assert_eq!(look(&ack).0, 61);
    let ack = go(&pf, Direction::In, &n.em0, tcp(A, B, 40000, 80, TcpFlags::ACK, 2, 10, 1, 0)).unwrap();
    assert_eq!(look(&ack).0, 61);
}

#[test]
fn inet6_scrub_rules_load() {
    let n = net();
    for text in
        ["pass in inet6 scrub (max-mss 1400)\n", "match inet6 scrub (min-ttl 10 reassemble tcp) set tos lowdelay\n"]
    {
        assert!(softnet_pf::load_ruleset(text, "pf.conf", &n.resolver).is_ok(), "{text}");
    }
}
