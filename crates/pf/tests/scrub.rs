//! `scrub (no-df, min-ttl, max-mss, random-id)` and `set tos` through
//! `PacketFilter::test` (pf_scrub, pf_normalize_mss): on the packet a
//! rule passes, on every packet of its state both ways, gathered from
//! `match` rules as pf_rule_to_actions does; every rewritten packet's
//! checksums checked against a full re-sum.

use crate::common;
use common::{net, test, HeapBufs as Bufs, Net};

use std::collections::HashSet;
use std::net::Ipv4Addr;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::ipv4::Ipv4Packet;
use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
use softnet_wire::udp::UdpPacket;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn pf(n: &Net, text: &str) -> Pf {
    softnet_core::rng::install(softnet_core::rng::WorkerRng::seeded(7));
    common::pf_with(n, text)
}

/// pf in on em0, then pf out on em1.
fn forward_out(pf: &Pf, n: &Net, p: PacketBuf) -> PacketBuf {
    common::forward_out(pf, n, p).expect("passed in and out")
}

/// pf in on em1, then pf out on em0.
fn forward_back(pf: &Pf, n: &Net, p: PacketBuf) -> PacketBuf {
    common::forward_back(pf, n, p).expect("passed in and out")
}

/// A UDP datagram with its IP header's TOS, DF and TTL set (checksum
/// refilled).
fn udp(src: Ipv4Addr, dst: Ipv4Addr, tos: u8, df: bool, ttl: u8) -> PacketBuf {
    // The reply's ports are the request's, swapped.
    let (sport, dport) = if src == A { (5000, 53) } else { (53, 5000) };
    let mut b = common::udp_bytes(src, dst, sport, dport, b"some data");
    b[1] = tos;
    b[6] = if df { 0x40 } else { 0 };
    b[8] = ttl;
    Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
    PacketBuf::from_slice(&b)
}

fn syn_mss(mss: u16) -> PacketBuf {
    let t = TcpRepr {
        src_port: 40000,
        dst_port: 22,
        seq: 1000,
        ack: 0,
        flags: TcpFlags::SYN,
        window: 8192,
        max_seg_size: Some(mss),
        window_scale: Some(7),
        sack_permitted: true,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    };
    let i = common::ip_repr(A, B, softnet_wire::ipv4::IpProtocol::TCP, t.buffer_len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    t.emit_with_payload(&mut b[20..], A, B, &[]);
    PacketBuf::from_slice(&b)
}

/// The IP checksum and the UDP or TCP one, summed again in full.
fn assert_sums(p: &PacketBuf) {
    let ip = Ipv4Packet::new_checked(p.data()).unwrap();
    assert!(ip.verify_checksum(), "IP checksum {:x?}", p.data());
    let (src, dst) = (ip.src(), ip.dst());
    match ip.protocol().0 {
        17 => assert!(UdpPacket::new_checked(ip.payload()).unwrap().verify_checksum(src, dst)),
        6 => assert!(TcpPacket::new_checked(ip.payload()).unwrap().verify_checksum(src, dst), "{:x?}", p.data()),
        _ => {}
    }
}

fn ip(p: &PacketBuf) -> Ipv4Packet<&[u8]> {
    Ipv4Packet::new_unchecked(p.data())
}

/// The MSS option's value in a SYN.
fn mss_of(p: &PacketBuf) -> Option<u16> {
    let ip = ip(p);
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    TcpRepr::parse(&t).ok()?.max_seg_size
}

#[test]
fn match_no_df_and_min_ttl_scrub_every_packet_of_the_state_both_ways() {
    let n = net();
    let pf = pf(&n, "match all scrub (no-df min-ttl 100)\npass all\n");
    for i in 0..3 {
        let before = udp(A, B, 0, true, 3 + i);
        let p = forward_out(&pf, &n, udp(A, B, 0, true, 3 + i));
        assert!(!ip(&p).dont_frag(), "DF cleared");
        // Two hops through pf: raised once, then left.
        assert_eq!(ip(&p).ttl(), 100);
        assert_sums(&p);
        // Nothing else moved: ident, addresses, payload.
        assert_eq!(p.data()[4..6], before.data()[4..6]);
        assert_eq!(p.data()[12..], before.data()[12..]);
        let r = forward_back(&pf, &n, udp(B, A, 0, true, 200));
        // The state's values go with its packets the other way too.
        assert!(!ip(&r).dont_frag());
        assert_eq!(ip(&r).ttl(), 200, "a TTL above min-ttl stays");
        assert_sums(&r);
    }
    assert_eq!(pf.state_count(), 2, "one state per hook");
}

#[test]
fn set_tos_keeps_the_ecn_bits() {
    let n = net();
    let pf = pf(&n, "pass all set tos 0x10\n");
    for ecn in 0..4u8 {
        let p = forward_out(&pf, &n, udp(A, B, 0xe0 | ecn, false, 64));
        assert_eq!(ip(&p).tos(), 0x10 | ecn);
        assert_sums(&p);
    }
    let r = forward_back(&pf, &n, udp(B, A, 0x08, false, 64));
    assert_eq!(ip(&r).tos(), 0x10);
    assert_sums(&r);
}

#[test]
fn random_id_gives_each_packet_a_fresh_id() {
    let n = net();
    let pf = pf(&n, "pass out all scrub (random-id)\npass in all no state\n");
    let mut ids = HashSet::new();
    for _ in 0..32 {
        let p = forward_out(&pf, &n, udp(A, B, 0, false, 64));
        assert_sums(&p);
        ids.insert(ip(&p).ident());
    }
    // 32 draws of 16 bits: a repeat or two at most, never all the same.
    assert!(ids.len() >= 30, "{ids:?}");
    // The inbound rule does not scrub: the id stays.
    let p = test(&pf, Direction::In, &n.em0, udp(A, B, 0, false, 64)).unwrap();
    assert_eq!(ip(&p).ident(), 7);
}

#[test]
fn max_mss_lowers_a_syns_mss_and_leaves_a_smaller_one() {
    let n = net();
    let pf = pf(&n, "match in all scrub (max-mss 1200)\npass all\n");
    let p = forward_out(&pf, &n, syn_mss(1460));
    assert_eq!(mss_of(&p), Some(1200));
    assert_sums(&p);
    let n2 = net();
    let pf2 = self::pf(&n2, "match in all scrub (max-mss 1200)\npass all\n");
    let p = forward_out(&pf2, &n2, syn_mss(536));
    assert_eq!(mss_of(&p), Some(536));
    assert_sums(&p);
}

#[test]
fn stateless_rules_scrub_their_packets_and_later_rules_override() {
    let n = net();
    let pf = pf(
        &n,
        "match all scrub (min-ttl 10)\nmatch all scrub (min-ttl 30) set tos 0x08\npass all no state scrub (no-df)\n",
    );
    let p = forward_out(&pf, &n, udp(A, B, 0, true, 1));
    assert_eq!((ip(&p).ttl(), ip(&p).tos(), ip(&p).dont_frag()), (30, 0x08, false));
    assert_sums(&p);
    assert_eq!(pf.state_count(), 0);
}

#[test]
fn rules_without_scrub_leave_packets_alone() {
    let n = net();
    let pf = pf(&n, "match in all scrub (min-ttl 50)\npass all\n");
    // The match rule is `in` only: pf out on em1 gives nothing more.
    let before = udp(A, B, 0x04, true, 60);
    let p = forward_out(&pf, &n, udp(A, B, 0x04, true, 60));
    assert_eq!(p.data(), before.data());
}

#[test]
fn every_scrub_option_loads() {
    let n = net();
    assert!(softnet_pf::parse::load_ruleset("pass all scrub (reassemble tcp)\n", "pf.conf", &n.resolver).is_ok());
    let ok =
        "set reassemble yes no-df\nmatch all scrub (no-df random-id min-ttl 5 max-mss 1400) set tos 0x10\npass all\n";
    assert!(softnet_pf::parse::load_ruleset(ok, "pf.conf", &n.resolver).is_ok());
}

/// A fragment of the datagram `whole` (20-byte header): `data` at byte
/// offset `off` of its payload, with DF.
fn df_fragment(whole: &[u8], off: usize, data: &[u8], more: bool) -> PacketBuf {
    let mut b = whole[..20].to_vec();
    b.extend_from_slice(data);
    let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
    p.set_total_len((20 + data.len()) as u16);
    p.set_flags_frag(true, more, off as u16);
    p.fill_checksum();
    PacketBuf::from_slice(&b)
}

/// pf_normalize_ip: a fragment with DF is refused, unless `set
/// reassemble yes no-df` clears DF first; the datagram is then
/// reassembled and passes without DF.
#[test]
fn reassemble_no_df_takes_fragments_with_df() {
    let mut whole = common::udp_bytes(A, B, 5000, 53, &[0x5a; 100]);
    let payload = whole[20..].to_vec();
    let n = net();
    let run = |pf: &Pf, p: PacketBuf| {
        let mut r = vec![];
        pf.test(0, Instant::from_secs(1), Direction::In, &n.em0, p, &mut Bufs, &mut r)
    };
    let plain = pf(&n, "pass all\n");
    assert!(matches!(run(&plain, df_fragment(&whole, 64, &payload[64..], false)), Verdict::Drop(_)));
    assert_eq!(plain.counter("fragment"), Some(1));

    let nodf = pf(&n, "set reassemble yes no-df\npass all\n");
    assert!(matches!(run(&nodf, df_fragment(&whole, 64, &payload[64..], false)), Verdict::Consumed));
    let Verdict::Pass(p) = run(&nodf, df_fragment(&whole, 0, &payload[..64], true)) else {
        panic!("the reassembled datagram passes")
    };
    assert_sums(&p);
    assert!(!ip(&p).dont_frag());
    // The datagram as sent, DF clear either way.
    Ipv4Packet::new_unchecked(&mut whole[..]).fill_checksum();
    assert_eq!(p.data(), &whole[..]);
    assert_eq!(nodf.counter("fragment"), Some(0));
}

/// pf_rule_to_actions runs for `match` rules and the deciding rule only:
/// a `pass` rule a later one overrides gives nothing.
#[test]
fn an_overridden_pass_rule_does_not_scrub() {
    let n = net();
    let pf = pf(&n, "pass all scrub (min-ttl 100 no-df)\npass all\n");
    let p = forward_out(&pf, &n, udp(A, B, 0, true, 9));
    assert_eq!((ip(&p).ttl(), ip(&p).dont_frag()), (9, true));
    let pf = self::pf(&n, "pass all\npass all scrub (min-ttl 100 no-df)\n");
    let p = forward_out(&pf, &n, udp(A, B, 0, true, 9));
    assert_eq!((ip(&p).ttl(), ip(&p).dont_frag()), (100, false));
}
