//! Crafted packets through `PacketFilter::test` and `test_batch` for what
//! pf does before it looks at states or rules: pf.c `pf_setup_pdesc`'s
//! `short` drops and pf_norm.c `pf_normalize_tcp`.

use crate::common;
use common::{ip_repr, net, pf_with, pflog_records, tcp_bytes, udp_bytes, HeapBufs as Bufs};

use std::net::Ipv4Addr;
use std::sync::Arc;

use softnet_core::filter::{Decision, Direction, PacketFilter, Verdict};
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::pflog::{PflogQueue, PF_DROP};
use softnet_pf::Pf;
use softnet_wire::ipv4::{IpProtocol, Ipv4Packet};
use softnet_wire::tcp::{TcpFlags, TcpPacket};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const DEFAULT_RULE_NR: u32 = u32::MAX;
const REASON_SHORT: u8 = 3;

/// An IPv4 + TCP segment with a valid checksum and `len` bytes of data.
fn tcp(sport: u16, dport: u16, flags: u8, len: usize) -> Vec<u8> {
    let ack = if flags & TcpFlags::ACK.bits() != 0 { 5001 } else { 0 };
    tcp_bytes(CLIENT, SERVER, sport, dport, TcpFlags::from_bits(flags), 1000, ack, len)
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_bytes(CLIENT, SERVER, sport, dport, payload)
}

/// An IP header for protocol `proto` around `l4` as it is (lengths and
/// checksums of `l4` left alone).
fn raw(proto: IpProtocol, l4: &[u8]) -> Vec<u8> {
    let i = ip_repr(CLIENT, SERVER, proto, l4.len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    b[20..].copy_from_slice(l4);
    b
}

/// The packet through `test` and, on a fresh filter, through
/// `test_batch` between two good packets: both must give the same verdict.
fn both(rules: &str, p: &[u8]) -> (bool, Pf) {
    let n = net();
    let t = Instant::from_secs(1);
    let pf = pf_with(&n, rules);
    let mut replies = vec![];
    let one = pf.test(0, t, Direction::In, &n.em0, PacketBuf::from_slice(p), &mut Bufs, &mut replies);
    let one = matches!(one, Verdict::Pass(_));
    let batch_pf = pf_with(&n, rules);
    let good = udp(5000, 53, b"q");
    let mut pkts =
        [Some(PacketBuf::from_slice(&good)), Some(PacketBuf::from_slice(p)), Some(PacketBuf::from_slice(&good))];
    let mut d = [Decision::Consumed; 3];
    batch_pf.test_batch(0, t, Direction::In, &n.em0, &mut pkts, &mut d, &mut Bufs, &mut replies);
    assert_eq!(d[0], Decision::Pass);
    assert_eq!(d[2], Decision::Pass);
    assert_eq!(d[1] == Decision::Pass, one, "test and test_batch disagree on {p:?}");
    (one, pf)
}

/// (rule number, action, reason) of each pflog record.
fn drain(q: &PflogQueue) -> Vec<(u32, u8, u8)> {
    pflog_records(q).into_iter().map(|r| (r.rule, r.action, r.reason)).collect()
}

#[test]
fn malformed_tcp_and_udp_headers_are_dropped_as_short_and_logged() {
    const ACK: u8 = 0x10;
    const SYN: u8 = 0x02;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        // The common path (an ACK, a 20-byte IP header) and the full one (a SYN).
        ("tcp ack to port 0", tcp(40000, 0, ACK, 10)),
        ("tcp syn to port 0", tcp(40000, 0, SYN, 0)),
        ("udp to port 0", udp(5000, 0, b"q")),
    ];
    // TCP data offset 4: a header shorter than 20 bytes (pf: short, not bad-offset).
    let mut p = tcp(40000, 22, ACK, 10);
    p[32] = 0x40;
    cases.push(("tcp data offset 4", p));
    // TCP data offset 15 (60 bytes) in a 30-byte segment.
    let mut p = tcp(40000, 22, ACK, 10);
    p[32] = 0xf0;
    cases.push(("tcp data offset past the datagram", p));
    // Less than the 20 fixed bytes of a TCP header.
    cases.push(("tcp header cut", raw(IpProtocol::TCP, &tcp(40000, 22, ACK, 0)[20..32])));
    // UDP length below the header, and past the datagram.
    let mut p = udp(5000, 53, b"q");
    p[24..26].copy_from_slice(&7u16.to_be_bytes());
    cases.push(("udp length 7", p));
    let mut p = udp(5000, 53, b"q");
    p[24..26].copy_from_slice(&10u16.to_be_bytes());
    cases.push(("udp length past the datagram", p));
    cases.push(("udp header cut", raw(IpProtocol::UDP, &[0x13, 0x88, 0, 53, 0, 8])));
    // ICMP: fewer than ICMP_MINLEN (8) bytes.
    cases.push(("icmp header cut", raw(IpProtocol::ICMP, &[8, 0, 0, 0, 0, 7])));
    for (what, p) in &cases {
        let (passed, pf) = both("pass all\n", p);
        assert!(!passed, "{what}");
        assert_eq!(pf.counter("short"), Some(1), "{what}");
        assert_eq!(pf.counter("bad-offset"), Some(0), "{what}");
        assert_eq!(pf.counter("match"), Some(0), "{what}: no rule saw it");
        // PF_LOG_FORCE: logged with no `log` rule, under the default rule.
        let n = net();
        let pf = pf_with(&n, "pass all\n");
        let q = Arc::new(PflogQueue::new(16));
        pf.set_pflog(Some(q.clone()));
        let v =
            pf.test(0, Instant::from_secs(1), Direction::In, &n.em0, PacketBuf::from_slice(p), &mut Bufs, &mut vec![]);
        assert!(matches!(v, Verdict::Drop(_)), "{what}");
        assert_eq!(drain(&q), [(DEFAULT_RULE_NR, PF_DROP, REASON_SHORT)], "{what}");
    }
}

/// pf_setup_pdesc checks the destination port only, and lets a UDP
/// length shorter than the datagram be.
#[test]
fn source_port_zero_and_trailing_bytes_are_not_short() {
    for p in [tcp(0, 22, 0x10, 10), udp(0, 53, b"q"), {
        let mut p = udp(5000, 53, b"abc");
        p[24..26].copy_from_slice(&9u16.to_be_bytes());
        p
    }] {
        let (passed, pf) = both("pass all\n", &p);
        assert!(passed, "{p:?}");
        assert_eq!(pf.counter("short"), Some(0));
    }
}

#[test]
fn headers_that_fit_exactly_pass() {
    let mut p = tcp(40000, 22, 0x10, 0);
    // A 24-byte TCP header (one NOP option word) ending the datagram.
    p.splice(40..40, [1, 1, 1, 1]);
    p[32] = 0x60;
    let tot = p.len() as u16;
    let mut ipp = Ipv4Packet::new_unchecked(&mut p[..]);
    ipp.set_total_len(tot);
    ipp.fill_checksum();
    let mut t = TcpPacket::new_unchecked(&mut p[20..]);
    t.fill_checksum(CLIENT, SERVER);
    let (passed, _) = both("pass all\n", &p);
    assert!(passed);
    let (passed, _) = both("pass all\n", &raw(IpProtocol::ICMP, &[8, 0, 0xf7, 0xf8, 0, 7, 0, 0]));
    assert!(passed);
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;

/// `tcp(...)` with the reserved bits and urgent pointer set as given and
/// the checksum made valid again.
fn tcp_x(flags: u8, x2: u8, urp: u16) -> Vec<u8> {
    let mut p = tcp(40000, 22, flags, 10);
    p[32] |= x2;
    p[38..40].copy_from_slice(&urp.to_be_bytes());
    TcpPacket::new_unchecked(&mut p[20..]).fill_checksum(CLIENT, SERVER);
    p
}

/// One packet through `test` and through `test_batch` (on a second
/// filter loaded with the same rules); both must agree. The packet as it
/// leaves when passed.
fn through(rules: &str, p: &[u8]) -> (Option<Vec<u8>>, Pf) {
    let n = net();
    let t = Instant::from_secs(1);
    let pf = pf_with(&n, rules);
    let mut replies = vec![];
    let one = match pf.test(0, t, Direction::In, &n.em0, PacketBuf::from_slice(p), &mut Bufs, &mut replies) {
        Verdict::Pass(p) => Some(p.data().to_vec()),
        _ => None,
    };
    let other = pf_with(&n, rules);
    let mut pkts = [Some(PacketBuf::from_slice(p))];
    let mut d = [Decision::Consumed];
    other.test_batch(0, t, Direction::In, &n.em0, &mut pkts, &mut d, &mut Bufs, &mut replies);
    let batch = (d[0] == Decision::Pass).then(|| pkts[0].as_ref().unwrap().data().to_vec());
    assert_eq!(one, batch, "test and test_batch disagree on {p:?}");
    (one, pf)
}

#[test]
fn illegal_tcp_flag_combinations_are_dropped_as_normalize_before_any_rule() {
    for (what, flags) in [
        ("null scan", 0),
        ("FIN scan", FIN),
        ("Xmas without ACK", FIN | PSH | URG),
        ("SYN+RST", SYN | RST),
        ("SYN+ACK+RST", SYN | ACK | RST),
        ("PUSH without ACK", PSH),
        ("URG without ACK", URG),
        ("RST+FIN without ACK", RST | FIN),
        ("SYN+FIN+PUSH without ACK", SYN | FIN | PSH),
    ] {
        // Even a logged pass-everything rule never sees it: counted, not logged.
        let n = net();
        let pf = pf_with(&n, "pass log all\n");
        let q = Arc::new(PflogQueue::new(16));
        pf.set_pflog(Some(q.clone()));
        let v = pf.test(
            0,
            Instant::from_secs(1),
            Direction::In,
            &n.em0,
            PacketBuf::from_slice(&tcp_x(flags, 0, 0)),
            &mut Bufs,
            &mut vec![],
        );
        assert!(matches!(v, Verdict::Drop(_)), "{what}");
        assert_eq!(pf.counter("normalize"), Some(1), "{what}");
        assert_eq!(pf.counter("match"), Some(0), "{what}");
        assert_eq!(pf.state_count(), 0, "{what}");
        assert!(drain(&q).is_empty(), "{what}");
        let (passed, pf) = through("pass all\n", &tcp_x(flags, 0, 0));
        assert_eq!(passed, None, "{what}");
        assert_eq!(pf.counter("normalize"), Some(1), "{what}");
    }
    // Legal ones pass: RST alone, and each flag with ACK.
    for flags in [RST, ACK, FIN | ACK, PSH | ACK, URG | ACK, RST | ACK, SYN, SYN | ACK] {
        let (passed, pf) = through("pass all\n", &tcp_x(flags, 0, 0));
        assert!(passed.is_some(), "{flags:#x}");
        assert_eq!(pf.counter("normalize"), Some(0));
    }
}

/// pf_test normalizes before it looks the state up: a FIN without ACK on
/// an established connection is a normalize drop, not a state mismatch.
#[test]
fn normalization_comes_before_the_state_lookup() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in proto tcp\n");
    let t = Instant::from_secs(1);
    let run = |p: Vec<u8>, dir: Direction| {
        matches!(pf.test(0, t, dir, &n.em0, PacketBuf::from_slice(&p), &mut Bufs, &mut vec![]), Verdict::Pass(_))
    };
    assert!(run(tcp(40000, 22, SYN, 0), Direction::In));
    assert_eq!(pf.state_count(), 1);
    assert!(!run(tcp(40000, 22, FIN, 0), Direction::In));
    assert_eq!(pf.counter("normalize"), Some(1));
    assert_eq!(pf.counter("state-mismatch"), Some(0));
}

#[test]
fn syn_fin_is_passed_as_a_syn_with_fin_cleared_and_a_valid_checksum() {
    let p = tcp_x(SYN | FIN, 0, 0);
    let (out, pf) = through("pass all\n", &p);
    let out = out.expect("passed");
    let t = TcpPacket::new_checked(&out[20..]).unwrap();
    assert_eq!(t.flags().bits(), SYN);
    assert!(t.verify_checksum(CLIENT, SERVER));
    assert_eq!(out[..33], p[..33]);
    assert_eq!(out[34..36], p[34..36]);
    assert_eq!(out[38..], p[38..]);
    assert_eq!(pf.counter("normalize"), Some(0));
    // The state is made from the segment as rewritten: a SYN (no FIN in
    // its sequence space). Inbound: pfctl prints the responder first.
    let ss = pf.show_states(0, Instant::from_secs(1));
    assert!(ss.contains("<- 10.0.1.2:40000       CLOSED:SYN_SENT"), "{ss}");
}

#[test]
fn reserved_bits_and_an_urgent_pointer_without_urg_are_cleared() {
    for (flags, x2, urp, want_x2, want_urp) in [
        (ACK, 0x0f, 0, 0, 0),
        (ACK, 0x01, 0, 0, 0),
        (ACK | PSH, 0, 1234, 0, 0),
        (ACK, 0x0a, 0xffff, 0, 0),
        // URG set: its pointer is kept.
        (ACK | URG, 0, 1234, 0, 1234),
        (ACK | URG, 0x02, 1234, 0, 1234),
        (SYN, 0x04, 9, 0, 0),
    ] {
        let p = tcp_x(flags, x2, urp);
        let (out, _) = through("pass all\n", &p);
        let out = out.unwrap_or_else(|| panic!("{flags:#x} {x2:#x} {urp}: dropped"));
        let t = TcpPacket::new_checked(&out[20..]).unwrap();
        assert_eq!((t.flags().bits(), t.header_len(), t.reserved(), t.urgent()), (flags, 20, want_x2, want_urp));
        assert!(t.verify_checksum(CLIENT, SERVER), "{flags:#x} {x2:#x} {urp}");
        if x2 == 0 && urp == want_urp {
            assert_eq!(out, p, "nothing to do, nothing done");
        }
    }
}
