//! `scrub (reassemble tcp)`: the per-peer TCP normalization of a state
//! (pf_norm.c `pf_normalize_tcp_init`, `pf_normalize_tcp_stateful`,
//! `pf_normalize_tcp_cleanup`). Each peer's highest TTL is enforced on
//! its packets, its TCP timestamps are modulated by a random offset
//! (and the echoes unmodulated on the way back), and the timestamps are
//! checked as PAWS (RFC 1323) numbers against blind insertion.
//!
//! The values live beside the state (`StateTable::tcp_scrub_*`), read
//! and written under the state's lock; a state without `reassemble tcp`
//! never reaches this module.

use softnet_wire::checksum::{update16, update32};
use softnet_wire::tcp::option_kind::{END as TCPOPT_EOL, NOP as TCPOPT_NOP, TIMESTAMP as TCPOPT_TIMESTAMP};

use crate::state::tcps::ESTABLISHED;
use crate::tcp_track::{TH_RST, TH_SYN};

/// pfvar.h `PFSS_*`: a peer's normalization flags.
pub mod pfss {
    /// The peer's SYN carried timestamps: they are modulated.
    pub const TIMESTAMP: u8 = 1 << 0;
    /// The PAWS values are set up (a timestamp was echoed).
    pub const PAWS: u8 = 1 << 1;
    /// Idled out of PAWS checking.
    pub const PAWS_IDLED: u8 = 1 << 2;
    /// The peer timestamps its data packets.
    pub const DATA_TS: u8 = 1 << 3;
    /// The peer does not timestamp its data packets.
    pub const DATA_NOTS: u8 = 1 << 4;
    /// pf's `scrub != NULL`: the peer's normalization exists.
    pub const LIVE: u8 = 1 << 7;
}

const TCPOLEN_TIMESTAMP: usize = 10;

/// RFC 1323's fastest timestamp clock (1 kHz) plus 10% skew.
const TS_MAXFREQ: u64 = 1100;
/// PAWS is given up after this long without a timestamp (the 1 ms clock
/// wraps in 24 days) …
const TS_MAX_IDLE: u64 = 24 * 24 * 60 * 60 * NS;
/// … and after this long a connection (the tsecr lower bound is loose).
const TS_MAX_CONN: u64 = 12 * 24 * 60 * 60 * NS;
const NS: u64 = 1_000_000_000;

/// pf's `struct pf_state_scrub`: one peer's normalization.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerScrub {
    /// `pfss::*`; 0: none (pf's NULL `scrub`).
    pub flags: u8,
    /// The highest TTL seen from the peer.
    pub ttl: u8,
    /// The peer's timestamp modulation.
    pub ts_mod: u32,
    /// The peer's lowest, latest timestamp and latest echo (its own,
    /// unmodulated clock; the echo in the other peer's).
    pub tsval0: u32,
    pub tsval: u32,
    pub tsecr: u32,
    /// When the peer's last timestamp was seen (ns).
    pub last: u64,
}

impl PeerScrub {
    pub fn live(&self) -> bool {
        self.flags & pfss::LIVE != 0
    }

    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// Four words, as the state table keeps a peer.
    pub fn pack(&self) -> [u64; 4] {
        [
            self.flags as u64 | (self.ttl as u64) << 8 | (self.ts_mod as u64) << 32,
            self.tsval0 as u64 | (self.tsval as u64) << 32,
            self.tsecr as u64,
            self.last,
        ]
    }

    pub fn unpack(w: [u64; 4]) -> PeerScrub {
        PeerScrub {
            flags: w[0] as u8,
            ttl: (w[0] >> 8) as u8,
            ts_mod: (w[0] >> 32) as u32,
            tsval0: w[1] as u32,
            tsval: (w[1] >> 32) as u32,
            tsecr: w[2] as u32,
            last: w[3],
        }
    }
}

/// Calls `each` with the offset of every timestamp option of the TCP
/// header `th` (walked as pf_normalize_tcp_init does) until it says stop.
fn walk_ts(th: &[u8], mut each: impl FnMut(usize) -> bool) {
    let thoff = ((th[12] >> 4) as usize * 4).min(th.len());
    let mut i = 20;
    while i + TCPOLEN_TIMESTAMP <= thoff {
        match th[i] {
            TCPOPT_EOL | TCPOPT_NOP => i += 1,
            kind => {
                let len = th[i + 1] as usize;
                if kind == TCPOPT_TIMESTAMP && len >= TCPOLEN_TIMESTAMP && !each(i) {
                    return;
                }
                i += len.max(2);
            }
        }
    }
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// Where the packet's TTL (IPv4) or hop limit (IPv6) is.
#[inline]
fn ttl_at(ip: &[u8]) -> usize {
    if ip[0] >> 4 == 6 {
        IPV6_HOP_LIMIT
    } else {
        IPV4_TTL
    }
}
const IPV4_TTL: usize = 8;
const IPV6_HOP_LIMIT: usize = 7;

/// pf_normalize_tcp_init for the peer sending the IPv4 or IPv6 packet
/// `ip` (TCP header at `hlen`): its TTL or hop limit, and on a SYN with
/// timestamps the modulation (`rand32`) and the first PAWS values.
pub fn init(ip: &[u8], hlen: usize, now: u64, rand32: impl FnOnce() -> u32) -> PeerScrub {
    let mut p = PeerScrub { flags: pfss::LIVE, ttl: ip[ttl_at(ip)], ..PeerScrub::default() };
    let th = &ip[hlen..];
    if th.len() < 20 || th[13] & TH_SYN == 0 {
        return p;
    }
    let mut rand32 = Some(rand32);
    walk_ts(th, |i| {
        p.flags |= pfss::TIMESTAMP;
        if let Some(r) = rand32.take() {
            p.ts_mod = r();
        }
        p.tsval0 = be32(th, i + 2);
        p.tsval = p.tsval0;
        p.tsecr = be32(th, i + 6);
        p.last = now;
        true
    });
    p
}

/// Why pf_normalize_tcp_stateful dropped a packet: always `PFRES_TS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTimestamp;

/// What pf_normalize_tcp_stateful needs to know of the state.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// The peers' TCP states (sender, receiver), before this packet.
    pub src_state: u8,
    pub dst_state: u8,
    /// TCP payload bytes (`pd->p_len`).
    pub payload: u32,
    pub now: u64,
    /// The state's creation (ns).
    pub created: u64,
    /// `tcp.tsdiff` (seconds).
    pub ts_fudge: u32,
}

/// pf_normalize_tcp_stateful on the IPv4 or IPv6 packet `ip` (TCP
/// header at `hlen`) from the peer `src` to `dst`: the TTL (hop limit)
/// raised to the sender's highest, the timestamps modulated, the PAWS
/// checks. Checksums are updated incrementally (IPv6 has no header
/// checksum). On `Err` the packet is dropped (`bad-timestamp`).
pub fn stateful(
    ip: &mut [u8],
    hlen: usize,
    src: &mut PeerScrub,
    dst: &mut PeerScrub,
    cx: &Ctx,
) -> Result<(), BadTimestamp> {
    let t = ttl_at(ip);
    if src.live() && ip[t] != src.ttl {
        if ip[t] > src.ttl {
            src.ttl = ip[t];
        }
        if t == IPV6_HOP_LIMIT {
            ip[t] = src.ttl;
        } else {
            let old = u16::from_be_bytes([ip[8], ip[9]]);
            ip[8] = src.ttl;
            let s = update16(u16::from_be_bytes([ip[10], ip[11]]), old, u16::from_be_bytes([ip[8], ip[9]]));
            ip[10..12].copy_from_slice(&s.to_be_bytes());
        }
    }
    let th = &mut ip[hlen..];
    if th.len() < 20 {
        return Ok(());
    }
    let flags = th[13];
    let (mut tsval, mut tsecr, mut got_ts, mut multiple) = (0u32, 0u32, false, false);
    if (th[12] >> 4) > 5 && (src.has(pfss::TIMESTAMP) || dst.has(pfss::TIMESTAMP)) {
        let mut at = None;
        walk_ts(th, |i| {
            if at.is_some() {
                multiple = true;
                return false;
            }
            at = Some(i);
            true
        });
        if multiple {
            return Err(BadTimestamp);
        }
        if let Some(i) = at {
            got_ts = true;
            tsval = be32(th, i + 2);
            tsecr = be32(th, i + 6);
            let mut sum = u16::from_be_bytes([th[16], th[17]]);
            if tsval != 0 && src.has(pfss::TIMESTAMP) {
                sum = put32(th, i + 2, tsval.wrapping_add(src.ts_mod), sum);
            }
            if tsecr != 0 && dst.has(pfss::TIMESTAMP) {
                tsecr = tsecr.wrapping_sub(dst.ts_mod);
                sum = put32(th, i + 6, tsecr, sum);
            }
            th[16..18].copy_from_slice(&sum.to_be_bytes());
        }
    }

    // Idled out of PAWS: the 1 ms timestamp clock may have wrapped.
    if src.has(pfss::PAWS)
        && (cx.now.saturating_sub(src.last) > TS_MAX_IDLE || cx.now.saturating_sub(cx.created) > TS_MAX_CONN)
    {
        src.flags = (src.flags & !pfss::PAWS) | pfss::PAWS_IDLED;
    }
    if dst.has(pfss::PAWS) && cx.now.saturating_sub(dst.last) > TS_MAX_IDLE {
        dst.flags = (dst.flags & !pfss::PAWS) | pfss::PAWS_IDLED;
    }

    let both_paws = src.has(pfss::PAWS) && dst.has(pfss::PAWS);
    if got_ts && both_paws {
        // RFC 1323 bounds: tsval >= the last echo of it, tsval <= the
        // last one plus what the fastest clock counts since (with
        // `tcp.tsdiff` of leeway), tsecr between the other peer's first
        // and latest timestamps.
        let delta = cx.now.saturating_sub(src.last);
        let from_last =
            ((delta / NS + cx.ts_fudge as u64) * TS_MAXFREQ + (delta % NS) / 1000 / (1_000_000 / TS_MAXFREQ)) as u32;
        if cx.src_state >= ESTABLISHED
            && cx.dst_state >= ESTABLISHED
            && (seq_lt(tsval, dst.tsecr)
                || seq_gt(tsval, src.tsval.wrapping_add(from_last))
                || (tsecr != 0 && (seq_gt(tsecr, dst.tsval) || seq_lt(tsecr, dst.tsval0))))
        {
            return Err(BadTimestamp);
        }
    } else if !got_ts && flags & TH_RST == 0 && cx.payload > 0 && both_paws && src.has(pfss::DATA_TS) {
        // A data packet without the timestamp its sender always put on
        // data: an insertion. (pf's wider test, established or data or
        // SYN, only drops data packets.)
        return Err(BadTimestamp);
    }

    // Whether the sender timestamps its data: required from then on.
    if cx.payload > 0 && src.flags & (pfss::TIMESTAMP | pfss::DATA_TS | pfss::DATA_NOTS) == pfss::TIMESTAMP {
        src.flags |= if got_ts { pfss::DATA_TS } else { pfss::DATA_NOTS };
    }

    // The PAWS values.
    if got_ts && src.flags & (pfss::PAWS_IDLED | pfss::TIMESTAMP) == pfss::TIMESTAMP {
        src.last = cx.now;
        let paws = src.has(pfss::PAWS);
        if seq_geq(tsval, src.tsval) || !paws {
            src.tsval = tsval;
        }
        if tsecr != 0 {
            if seq_geq(tsecr, src.tsecr) || !paws {
                src.tsecr = tsecr;
            }
            if !paws && (seq_lt(tsval, src.tsval0) || src.tsval0 == 0) {
                src.tsval0 = tsval;
            }
            src.flags |= pfss::PAWS;
        }
    }
    Ok(())
}

/// Writes the 32-bit `v` at `at` of the TCP header `th`, returning the
/// checksum `sum` updated (an option starts on any byte: at an odd
/// offset the value spans three checksum words).
fn put32(th: &mut [u8], at: usize, v: u32, sum: u16) -> u16 {
    if at.is_multiple_of(2) {
        let old = be32(th, at);
        th[at..at + 4].copy_from_slice(&v.to_be_bytes());
        return update32(sum, old, v);
    }
    let w = |d: &[u8], i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
    let olds = [w(th, at - 1), w(th, at + 1), w(th, at + 3)];
    th[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let news = [w(th, at - 1), w(th, at + 1), w(th, at + 3)];
    (0..3).fold(sum, |s, k| update16(s, olds[k], news[k]))
}

fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

fn seq_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// pf_create_state's part for a `reassemble tcp` state: the creating
/// packet's sender starts its peer (pf_normalize_tcp_init) and the packet
/// is normalized (pf_normalize_tcp_stateful); the answering peer starts
/// at its first packet (`start_peer`). `st` is the new state's data.
pub fn on_create(
    ip: &mut [u8],
    hlen: usize,
    st: &crate::state::StateData,
    payload: u32,
    ts_fudge: u32,
    rand32: impl FnOnce() -> u32,
) -> Result<[PeerScrub; 2], BadTimestamp> {
    let mut src = init(ip, hlen, st.creation, rand32);
    let mut dst = PeerScrub::default();
    let cx = Ctx {
        src_state: st.src.state,
        dst_state: st.dst.state,
        payload,
        now: st.creation,
        created: st.creation,
        ts_fudge,
    };
    stateful(ip, hlen, &mut src, &mut dst, &cx)?;
    Ok([src, dst])
}

#[cfg(test)]
mod tests {
    use super::*;
    use softnet_wire::checksum::checksum;

    /// IPv4 + TCP with `opts`, both checksums filled.
    fn pkt(opts: &[u8], ttl: u8) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, ttl, 6, 0, 0, 10, 0, 1, 2, 10, 0, 2, 2];
        let doff = (20 + opts.len()) / 4;
        p.extend_from_slice(&[
            0x9c,
            0x40,
            0,
            80,
            0,
            0,
            3,
            0xe9,
            0,
            0,
            0,
            0,
            (doff as u8) << 4,
            0x02,
            0x20,
            0,
            0,
            0,
            0,
            0,
        ]);
        p.extend_from_slice(opts);
        let tot = p.len() as u16;
        p[2..4].copy_from_slice(&tot.to_be_bytes());
        let s = checksum(&p[..20]);
        p[10..12].copy_from_slice(&s.to_be_bytes());
        let s = tcp_sum(&p);
        p[36..38].copy_from_slice(&s.to_be_bytes());
        p
    }

    fn tcp_sum(p: &[u8]) -> u16 {
        let mut ph = p[12..20].to_vec();
        ph.extend_from_slice(&[0, 6]);
        ph.extend_from_slice(&((p.len() - 20) as u16).to_be_bytes());
        let mut seg = p[20..].to_vec();
        seg[16] = 0;
        seg[17] = 0;
        ph.extend_from_slice(&seg);
        checksum(&ph)
    }

    fn cx() -> Ctx {
        Ctx { src_state: 2, dst_state: 0, payload: 0, now: 5, created: 5, ts_fudge: 30 }
    }

    #[test]
    fn timestamps_at_an_odd_offset_keep_the_checksum() {
        // NOP, TS, then 1 byte of padding: the TS values start at byte 23.
        let mut o = vec![1, 8, 10];
        o.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        o.extend_from_slice(&0x0a0b_0c0du32.to_be_bytes());
        o.push(0);
        let mut p = pkt(&o, 64);
        let mut src = init(&p, 20, 5, || 0x1111_2222);
        assert_eq!((src.flags & pfss::TIMESTAMP, src.tsval0, src.tsecr), (pfss::TIMESTAMP, 0x0102_0304, 0x0a0b_0c0d));
        let mut dst = PeerScrub { flags: pfss::LIVE | pfss::TIMESTAMP, ts_mod: 0x0a00_0000, ..PeerScrub::default() };
        stateful(&mut p, 20, &mut src, &mut dst, &cx()).unwrap();
        assert_eq!(be32(&p, 43), 0x0102_0304 + 0x1111_2222);
        assert_eq!(be32(&p, 47), 0x000b_0c0d);
        assert_eq!(tcp_sum(&p), u16::from_be_bytes([p[36], p[37]]));
    }

    #[test]
    fn peers_survive_their_packing() {
        let p = PeerScrub {
            flags: pfss::LIVE | pfss::PAWS,
            ttl: 9,
            ts_mod: 0xdead_beef,
            tsval0: 1,
            tsval: u32::MAX,
            tsecr: 3,
            last: u64::MAX - 7,
        };
        assert_eq!(PeerScrub::unpack(p.pack()), p);
    }

    #[test]
    fn a_ttl_above_the_highest_becomes_it_and_the_ip_checksum_follows() {
        let mut p = pkt(&[], 30);
        let mut src = PeerScrub { flags: pfss::LIVE, ttl: 64, ..PeerScrub::default() };
        let mut dst = PeerScrub::default();
        stateful(&mut p, 20, &mut src, &mut dst, &cx()).unwrap();
        assert_eq!(p[8], 64);
        assert_eq!(checksum(&p[..20]), 0);
        // Truncated TCP headers are left alone (the parse refused them before).
        let mut short = p[..30].to_vec();
        assert!(stateful(&mut short, 20, &mut src, &mut dst, &cx()).is_ok());
    }
}
