//! `scrub (reassemble tcp)` through `PacketFilter::test` (pf_norm.c
//! pf_normalize_tcp_init, pf_normalize_tcp_stateful): each peer's TTL
//! raised to the highest it sent, its TCP timestamps modulated on the way
//! through and the echoes restored on the way back, the PAWS drops
//! (`bad-timestamp`); every rewritten packet's checksums checked against
//! a full re-sum.

use crate::common;
use common::{net, HeapBufs as Bufs, Net};

use std::net::Ipv4Addr;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::ipv4::Ipv4Packet;
use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const A_ISN: u32 = 1000;
const B_ISN: u32 = 50_000;

fn pf(n: &Net, text: &str) -> Pf {
    softnet_core::rng::install(softnet_core::rng::WorkerRng::seeded(7));
    common::pf_with(n, text)
}

/// A segment from A (`from_a`) or B with the TTL, flags, numbers, `len`
/// data bytes and the timestamp option `ts` (and a second one, raw, with
/// `twice`).
fn seg(from_a: bool, ttl: u8, flags: TcpFlags, seq: u32, ack: u32, len: usize, ts: Option<(u32, u32)>) -> Vec<u8> {
    let (src, dst, sport, dport) = if from_a { (A, B, 40000, 80) } else { (B, A, 80, 40000) };
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
        timestamp: ts,
        payload_len: len,
    };
    let i = common::ip_repr(src, dst, softnet_wire::ipv4::IpProtocol::TCP, t.buffer_len());
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    t.emit_with_payload(&mut b[20..], src, dst, &vec![0x61; len]);
    b[8] = ttl;
    Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
    b
}

struct Lab {
    n: Net,
    pf: Pf,
    /// Seconds on the injected clock.
    now: u64,
}

impl Lab {
    fn new(rules: &str) -> Lab {
        let n = net();
        let pf = pf(&n, rules);
        Lab { n, pf, now: 1 }
    }

    fn hook(&self, dir: Direction, a_side: bool, p: PacketBuf) -> Option<PacketBuf> {
        let ifp = if a_side { &self.n.em0 } else { &self.n.em1 };
        let mut r = vec![];
        match self.pf.test(0, Instant::from_secs(self.now), dir, ifp, p, &mut Bufs, &mut r) {
            Verdict::Pass(p) => Some(p),
            _ => None,
        }
    }

    /// Through pf in on the sender's side and out on the other.
    fn through(&self, from_a: bool, b: Vec<u8>) -> Option<PacketBuf> {
        let p = self.hook(Direction::In, from_a, PacketBuf::from_slice(&b))?;
        self.hook(Direction::Out, !from_a, p)
    }
}

fn assert_sums(p: &PacketBuf) {
    let ip = Ipv4Packet::new_checked(p.data()).unwrap();
    assert!(ip.verify_checksum(), "IP checksum {:x?}", p.data());
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(t.verify_checksum(ip.src(), ip.dst()), "TCP checksum {:x?}", p.data());
}

fn ts_of(p: &PacketBuf) -> Option<(u32, u32)> {
    let ip = Ipv4Packet::new_checked(p.data()).unwrap();
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    TcpRepr::parse(&t).ok()?.timestamp
}

fn ttl_of(p: &PacketBuf) -> u8 {
    Ipv4Packet::new_unchecked(p.data()).ttl()
}

const RULES: &str = "match in all scrub (reassemble tcp)\npass all\n";

/// The handshake with timestamps; returns A's and B's modulations as B
/// and A see them (seen tsval - sent tsval).
fn handshake(l: &Lab) -> (u32, u32) {
    let p = l.through(true, seg(true, 64, TcpFlags::SYN, A_ISN, 0, 0, Some((100, 0)))).expect("SYN");
    assert_sums(&p);
    let (tsval, tsecr) = ts_of(&p).unwrap();
    assert_eq!(tsecr, 0, "an empty echo stays empty");
    let ma = tsval.wrapping_sub(100);
    assert_ne!(ma, 0, "A's timestamps modulated");
    let p = l
        .through(false, seg(false, 64, TcpFlags::SYN | TcpFlags::ACK, B_ISN, A_ISN + 1, 0, Some((7000, tsval))))
        .expect("SYN+ACK");
    assert_sums(&p);
    let (tsval_b, tsecr) = ts_of(&p).unwrap();
    assert_eq!(tsecr, 100, "A's echo restored on the way back");
    let mb = tsval_b.wrapping_sub(7000);
    assert_ne!(mb, 0, "B's timestamps modulated");
    assert_ne!(ma, mb, "one modulation per peer");
    let p = l.through(true, seg(true, 64, TcpFlags::ACK, A_ISN + 1, B_ISN + 1, 0, Some((101, tsval_b)))).expect("ACK");
    assert_sums(&p);
    assert_eq!(ts_of(&p), Some((101u32.wrapping_add(ma), 7000)));
    (ma, mb)
}

#[test]
fn timestamps_are_modulated_through_and_restored_back() {
    let l = Lab::new(RULES);
    let (ma, mb) = handshake(&l);
    for i in 0..4u32 {
        let p = l
            .through(
                true,
                seg(
                    true,
                    64,
                    TcpFlags::ACK,
                    A_ISN + 1 + i * 10,
                    B_ISN + 1,
                    10,
                    Some((102 + i, (7000 + i).wrapping_add(mb))),
                ),
            )
            .expect("data from A");
        assert_sums(&p);
        assert_eq!(ts_of(&p), Some(((102 + i).wrapping_add(ma), 7000 + i)));
        let p = l
            .through(
                false,
                seg(
                    false,
                    64,
                    TcpFlags::ACK,
                    B_ISN + 1,
                    A_ISN + 11 + i * 10,
                    0,
                    Some((7001 + i, (102 + i).wrapping_add(ma))),
                ),
            )
            .expect("ack from B");
        assert_sums(&p);
        assert_eq!(ts_of(&p), Some(((7001 + i).wrapping_add(mb), 102 + i)));
    }
    assert_eq!(l.pf.counter("bad-timestamp"), Some(0));
}

#[test]
fn segments_without_timestamps_at_the_start_are_left_alone() {
    let l = Lab::new(RULES);
    let p = l.through(true, seg(true, 64, TcpFlags::SYN, A_ISN, 0, 0, None)).unwrap();
    assert_eq!(ts_of(&p), None);
    // B timestamps though A did not: B's are modulated, A's are not.
    let p =
        l.through(false, seg(false, 64, TcpFlags::SYN | TcpFlags::ACK, B_ISN, A_ISN + 1, 0, Some((7000, 0)))).unwrap();
    let mb = ts_of(&p).unwrap().0.wrapping_sub(7000);
    assert_ne!(mb, 0);
    let p = l.through(true, seg(true, 64, TcpFlags::ACK, A_ISN + 1, B_ISN + 1, 5, Some((55, 7000 + mb)))).unwrap();
    assert_sums(&p);
    assert_eq!(ts_of(&p), Some((55, 7000)), "A's value as sent, B's echo restored");
}

#[test]
fn a_lower_ttl_is_raised_to_the_highest_the_peer_sent() {
    let l = Lab::new(RULES);
    let p = l.through(true, seg(true, 64, TcpFlags::SYN, A_ISN, 0, 0, None)).unwrap();
    assert_eq!(ttl_of(&p), 64);
    let p = l.through(false, seg(false, 50, TcpFlags::SYN | TcpFlags::ACK, B_ISN, A_ISN + 1, 0, None)).unwrap();
    assert_eq!(ttl_of(&p), 50);
    // A lower TTL from A: raised to 64 (B's own stays its own).
    let p = l.through(true, seg(true, 3, TcpFlags::ACK, A_ISN + 1, B_ISN + 1, 0, None)).unwrap();
    assert_eq!(ttl_of(&p), 64);
    assert_sums(&p);
    // A higher one is the new highest.
    let p = l.through(true, seg(true, 90, TcpFlags::ACK, A_ISN + 1, B_ISN + 1, 4, None)).unwrap();
    assert_eq!(ttl_of(&p), 90);
    let p = l.through(true, seg(true, 64, TcpFlags::ACK, A_ISN + 5, B_ISN + 1, 4, None)).unwrap();
    assert_eq!(ttl_of(&p), 90);
    assert_sums(&p);
    let p = l.through(false, seg(false, 10, TcpFlags::ACK, B_ISN + 1, A_ISN + 9, 0, None)).unwrap();
    assert_eq!(ttl_of(&p), 50, "B's own highest");
    assert_sums(&p);
}

#[test]
fn paws_drops_what_pf_drops_as_bad_timestamp() {
    let mut l = Lab::new(RULES);
    let (ma, mb) = handshake(&l);
    let bad = |l: &Lab| l.pf.counter("bad-timestamp").unwrap();
    // A timestamp further ahead than the fastest clock counts since the
    // last one (1100/s, plus tcp.tsdiff 30 s of leeway).
    let far = 101 + 40 * 1100;
    assert!(l.through(true, seg(true, 64, TcpFlags::ACK, A_ISN + 1, B_ISN + 1, 10, Some((far, 7000 + mb)))).is_none());
    assert_eq!(bad(&l), 1);
    // As time passes, the bound moves.
    l.now += 20;
    let p = l.through(true, seg(true, 64, TcpFlags::ACK, A_ISN + 1, B_ISN + 1, 10, Some((far, 7000 + mb)))).unwrap();
    assert_eq!(ts_of(&p), Some((far.wrapping_add(ma), 7000)));
    assert_eq!(bad(&l), 1);
    // An echo of a B timestamp B never sent (above its latest).
    assert!(l.through(true, seg(true, 64, TcpFlags::ACK, A_ISN + 11, B_ISN + 1, 10, Some((far, 9000 + mb)))).is_none());
    // An echo below B's first.
    assert!(l.through(true, seg(true, 64, TcpFlags::ACK, A_ISN + 11, B_ISN + 1, 10, Some((far, 6000 + mb)))).is_none());
    // A timestamp below what B last echoed of A's.
    let p = l
        .through(false, seg(false, 64, TcpFlags::ACK, B_ISN + 1, A_ISN + 11, 0, Some((7001, far.wrapping_add(ma)))))
        .unwrap();
    assert_eq!(ts_of(&p), Some((7001 + mb, far)));
    assert!(l
        .through(true, seg(true, 64, TcpFlags::ACK, A_ISN + 11, B_ISN + 1, 10, Some((far - 1, 7001 + mb))))
        .is_none());
    assert_eq!(bad(&l), 4);
    // A data segment without a timestamp from a peer that put one on its
    // data: an insertion.
    assert!(l.through(true, seg(true, 64, TcpFlags::ACK, A_ISN + 11, B_ISN + 1, 10, None)).is_none());
    assert_eq!(bad(&l), 5);
    // An empty ACK without one passes.
    assert!(l.through(true, seg(true, 64, TcpFlags::ACK, A_ISN + 11, B_ISN + 1, 0, None)).is_some());
    // The good segment still passes.
    assert!(l.through(true, seg(true, 64, TcpFlags::ACK, A_ISN + 11, B_ISN + 1, 10, Some((far, 7001 + mb)))).is_some());
    assert_eq!(bad(&l), 5);
}

#[test]
fn two_timestamp_options_are_dropped() {
    let l = Lab::new(RULES);
    handshake(&l);
    // Replace the 12 option bytes (NOP NOP TS) of a segment with two TS.
    let mut b = seg(true, 64, TcpFlags::ACK, A_ISN + 1, B_ISN + 1, 0, Some((102, 7000)));
    let mut opts = b[40..52].to_vec();
    opts.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 102, 0, 0, 0, 0]);
    b.truncate(40);
    b.extend_from_slice(&opts);
    b[32] = ((20 + 24) / 4) << 4;
    let len = b.len() as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
    let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
    let (s, d) = (ip.src(), ip.dst());
    TcpPacket::new_unchecked(ip.payload_mut()).fill_checksum(s, d);
    assert!(l.through(true, b).is_none());
    assert_eq!(l.pf.counter("bad-timestamp"), Some(1));
}

#[test]
fn states_without_reassemble_tcp_rewrite_nothing() {
    let l = Lab::new("match in all scrub (no-df)\npass all\n");
    let p = l.through(true, seg(true, 64, TcpFlags::SYN, A_ISN, 0, 0, Some((100, 0)))).unwrap();
    assert_eq!(ts_of(&p), Some((100, 0)));
    let p = l
        .through(false, seg(false, 64, TcpFlags::SYN | TcpFlags::ACK, B_ISN, A_ISN + 1, 0, Some((7000, 100))))
        .unwrap();
    assert_eq!(ts_of(&p), Some((7000, 100)));
    let p = l.through(true, seg(true, 3, TcpFlags::ACK, A_ISN + 1, B_ISN + 1, 0, Some((101, 7000)))).unwrap();
    assert_eq!(ttl_of(&p), 3);
}

#[test]
fn pfctl_ss_v_names_the_state_flags() {
    let l = Lab::new("match in all scrub (reassemble tcp no-df random-id) set tos 0x10\npass all\n");
    l.through(true, seg(true, 64, TcpFlags::SYN, A_ISN, 0, 0, Some((100, 0)))).unwrap();
    let ss = l.pf.show_states(1, Instant::from_secs(2));
    let lines: Vec<&str> = ss.lines().filter(|l| l.contains(", rule ")).collect();
    assert_eq!(lines.len(), 2, "{ss}");
    // The inbound state has the match rule's scrub, the outbound none.
    assert!(lines[0].ends_with(", rule 1, no-df, set-tos 0x10, random-id, reassemble-tcp"), "{ss}");
    assert!(lines[1].ends_with(", rule 1"), "{ss}");
}
