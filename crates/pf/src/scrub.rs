//! The packet scrubbing a rule's `scrub (no-df, min-ttl N, max-mss N,
//! random-id)` and `set tos` ask for (pf_norm.c `pf_scrub`,
//! `pf_normalize_mss`): gathered from the `match` rules and the deciding
//! rule as pf_rule_to_actions does, kept on the state, and applied to
//! every packet the rule or the state passes, with the checksums updated
//! incrementally (RFC 1624).

use softnet_wire::checksum::update16;
use softnet_wire::tcp::option_kind::{END as TCPOPT_EOL, MSS as TCPOPT_MAXSEG, NOP as TCPOPT_NOP};

use softnet_wire::ipv6::Ipv6Packet;

use crate::rule_opts::Scrub;

/// pfvar.h `PFSTATE_NODF`, `PFSTATE_RANDOMID`, `PFSTATE_SETTOS`.
pub mod scrubflags {
    pub const NODF: u8 = 1 << 0;
    pub const RANDOMID: u8 = 1 << 1;
    pub const SETTOS: u8 = 1 << 2;
    /// `PFSTATE_SCRUB_TCP`: `reassemble tcp` (`crate::tcpnorm`).
    pub const SCRUB_TCP: u8 = 1 << 3;
    /// `PFSTATE_SETPRIO`: `set prio`, the packet's priority (not a change
    /// to the packet's bytes).
    pub const SETPRIO: u8 = 1 << 4;
}

/// `IPTOS_LOWDELAY`: a TOS that takes `set prio`'s second value.
const IPTOS_LOWDELAY: u8 = 0x10;

/// `IPTOS_ECN_MASK`: the ECN bits `set tos` leaves as they are.
const IPTOS_ECN_MASK: u8 = 0x03;
const IP_DF: u16 = 0x4000;
const PROTO_TCP: u8 = 6;
const TCPOLEN_MAXSEG: u8 = 4;

/// pf's `pf_rule_actions` scrub part (and a state's `state_flags`,
/// `min_ttl`, `set_tos`, `max_mss`): 0 in a field is "none".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubActs {
    /// `scrubflags::*`.
    pub flags: u8,
    pub min_ttl: u8,
    pub set_tos: u8,
    pub max_mss: u16,
    /// `set prio (a, b)` (`set prio N` is `(N, N)`), with
    /// `scrubflags::SETPRIO`.
    pub prio: [u8; 2],
}

impl ScrubActs {
    /// A rule's own: its `scrub (…)`, `set tos` and `set prio`.
    pub fn of_rule(s: &Scrub, tos: Option<u8>, prio: Option<(u8, u8)>) -> ScrubActs {
        let flags = (if s.no_df { scrubflags::NODF } else { 0 })
            | (if s.random_id { scrubflags::RANDOMID } else { 0 })
            | (if tos.is_some() { scrubflags::SETTOS } else { 0 })
            | (if s.reassemble_tcp { scrubflags::SCRUB_TCP } else { 0 })
            | (if prio.is_some() { scrubflags::SETPRIO } else { 0 });
        let prio = prio.map_or([0; 2], |(a, b)| [a, b]);
        ScrubActs {
            flags,
            min_ttl: s.min_ttl.unwrap_or(0),
            set_tos: tos.unwrap_or(0),
            max_mss: s.max_mss.unwrap_or(0),
            prio,
        }
    }

    /// Whether pf_scrub changes the packet's bytes (`set prio` alone
    /// changes only its metadata).
    pub fn edits(&self) -> bool {
        self.flags & !scrubflags::SETPRIO != 0 || self.min_ttl != 0 || self.max_mss != 0
    }

    /// pf_test's choice of `set prio` value: the second for a TCP segment
    /// that acknowledges and carries no data, or a TOS with
    /// IPTOS_LOWDELAY (pf's `pqid` case), else the first; `None` without
    /// `set prio`.
    pub fn prio_for(&self, tcp_bare_ack: bool, tos: u8) -> Option<u8> {
        if self.flags & scrubflags::SETPRIO == 0 {
            return None;
        }
        Some(if tcp_bare_ack || tos & IPTOS_LOWDELAY != 0 { self.prio[1] } else { self.prio[0] })
    }

    pub fn any(&self) -> bool {
        *self != ScrubActs::default()
    }

    /// One word, as the state table keeps it.
    pub fn pack(&self) -> u64 {
        self.flags as u64
            | (self.min_ttl as u64) << 8
            | (self.set_tos as u64) << 16
            | (self.max_mss as u64) << 24
            | (self.prio[0] as u64) << 40
            | (self.prio[1] as u64) << 48
    }

    pub fn unpack(w: u64) -> ScrubActs {
        ScrubActs {
            flags: w as u8,
            min_ttl: (w >> 8) as u8,
            set_tos: (w >> 16) as u8,
            max_mss: (w >> 24) as u16,
            prio: [(w >> 40) as u8, (w >> 48) as u8],
        }
    }

    /// pf_rule_to_actions: a later rule's values replace the earlier ones
    /// it sets; the flags add up.
    pub fn add(&mut self, r: &ScrubActs) {
        if r.flags & scrubflags::SETTOS != 0 {
            self.set_tos = r.set_tos;
        }
        if r.min_ttl != 0 {
            self.min_ttl = r.min_ttl;
        }
        if r.max_mss != 0 {
            self.max_mss = r.max_mss;
        }
        if r.flags & scrubflags::SETPRIO != 0 {
            self.prio = r.prio;
        }
        self.flags |= r.flags;
    }
}

/// pf_scrub then, for TCP, pf_normalize_mss, on the IPv4 packet `d`
/// (header length `hlen`, total length `tot_len`, both checked by the
/// parse): DF cleared, the TTL raised to `min_ttl`, the TOS set (ECN
/// bits kept), a random IP id for a packet that is not a fragment, the
/// MSS option lowered to `max_mss`. `rand16` draws the id
/// (`softnet_core::rng::random_u16` in the data path).
pub fn apply(d: &mut [u8], hlen: usize, tot_len: usize, a: &ScrubActs, rand16: impl FnOnce() -> u16) {
    let mut sum = be16(d, 10);
    let off = be16(d, 6);
    if a.flags & scrubflags::NODF != 0 && off & IP_DF != 0 {
        put16(d, 6, off & !IP_DF);
        sum = update16(sum, off, off & !IP_DF);
    }
    // TTL and protocol share a checksum word.
    if a.min_ttl != 0 && d[8] < a.min_ttl {
        let old = be16(d, 8);
        d[8] = a.min_ttl;
        sum = update16(sum, old, be16(d, 8));
    }
    // TOS and the version/header length share one.
    if a.flags & scrubflags::SETTOS != 0 {
        let old = be16(d, 0);
        d[1] = a.set_tos | (d[1] & IPTOS_ECN_MASK);
        sum = update16(sum, old, be16(d, 0));
    }
    // "random-id, but not for fragments": the offset and MF, read after
    // no-df.
    if a.flags & scrubflags::RANDOMID != 0 && be16(d, 6) & !IP_DF == 0 {
        let old = be16(d, 4);
        let id = rand16();
        put16(d, 4, id);
        sum = update16(sum, old, id);
    }
    put16(d, 10, sum);
    if a.max_mss != 0 && d[9] == PROTO_TCP && be16(d, 6) & 0x3fff == 0 {
        normalize_mss(&mut d[hlen..tot_len], a.max_mss);
    }
}

/// pf_scrub's IPv6 part then pf_normalize_mss, on the IPv6 packet `d`
/// (its transport header at `l4`, `tot_len` long; `tcp`: a TCP segment
/// that is not a fragment): the hop limit raised to `min_ttl`, the
/// traffic class set (its ECN bits kept), the MSS lowered to `max_mss`.
/// `no-df` and `random-id` have nothing to change in an IPv6 header (pf
/// ignores them for IPv6 too); IPv6 has no header checksum.
pub fn apply6(d: &mut [u8], l4: usize, tot_len: usize, tcp: bool, a: &ScrubActs) {
    let mut ip = Ipv6Packet::new_unchecked(&mut d[..]);
    if a.min_ttl != 0 && ip.hop_limit() < a.min_ttl {
        ip.set_hop_limit(a.min_ttl);
    }
    if a.flags & scrubflags::SETTOS != 0 {
        let tc = a.set_tos | (ip.traffic_class() & IPTOS_ECN_MASK);
        ip.set_traffic_class(tc);
    }
    if a.max_mss != 0 && tcp {
        normalize_mss(&mut d[l4..tot_len], a.max_mss);
    }
}

/// pf_normalize_ip under `set reassemble yes no-df`: the DF bit of a
/// fragment is cleared before reassembly, which would refuse it.
pub fn clear_df(d: &mut [u8]) {
    let off = be16(d, 6);
    if off & IP_DF != 0 {
        put16(d, 6, off & !IP_DF);
        let sum = update16(be16(d, 10), off, off & !IP_DF);
        put16(d, 10, sum);
    }
}

/// pf_normalize_mss: every MSS option of the segment above `max` is
/// lowered to it, the TCP checksum updated.
fn normalize_mss(seg: &mut [u8], max: u16) {
    if seg.len() < 20 {
        return;
    }
    let thoff = ((seg[12] >> 4) as usize * 4).min(seg.len());
    let mut i = 20;
    while i < thoff {
        match seg[i] {
            TCPOPT_EOL => break,
            TCPOPT_NOP => i += 1,
            kind => {
                let Some(&len) = seg.get(i + 1).filter(|&&l| l >= 2) else { break };
                let len = len as usize;
                if i + len > thoff {
                    break;
                }
                if kind == TCPOPT_MAXSEG && len == TCPOLEN_MAXSEG as usize {
                    let mss = be16(seg, i + 2);
                    if mss > max {
                        put16(seg, i + 2, max);
                        // Options start on any byte: a 16-bit value at an
                        // odd offset sits across two checksum words.
                        if i % 2 == 0 {
                            let s = update16(be16(seg, 16), mss, max);
                            put16(seg, 16, s);
                        } else {
                            let (w0, w1) = (i + 1, i + 3);
                            let (o0, o1) = (
                                u16::from_be_bytes([seg[w0], (mss >> 8) as u8]),
                                u16::from_be_bytes([mss as u8, seg[w1 + 1]]),
                            );
                            let s = update16(be16(seg, 16), o0, be16(seg, w0));
                            let s = update16(s, o1, be16(seg, w1));
                            put16(seg, 16, s);
                        }
                    }
                }
                i += len;
            }
        }
    }
}

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn put16(d: &mut [u8], at: usize, v: u16) {
    d[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use softnet_wire::checksum::checksum;

    /// IPv6: the hop limit raised, the traffic class set with its ECN
    /// bits kept, the flow label untouched, the MSS lowered with the TCP
    /// checksum still right for IPv6's pseudo-header.
    #[test]
    fn ipv6_packets_get_hop_limit_traffic_class_and_mss() {
        use softnet_wire::ipv4::IpProtocol;
        use softnet_wire::ipv6::Ipv6Repr;
        use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
        let (src, dst) = ("2001:db8:1::2".parse().unwrap(), "2001:db8:2::2".parse().unwrap());
        let t = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: 1,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 8192,
            max_seg_size: Some(1460),
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload_len: 0,
        };
        let ir = Ipv6Repr {
            src,
            dst,
            next_header: IpProtocol::TCP,
            hop_limit: 3,
            traffic_class: 0x03,
            flow_label: 0x12345,
            payload_len: t.buffer_len(),
        };
        let mut p = vec![0u8; ir.buffer_len()];
        ir.emit(&mut p[..40]);
        t.emit_with_payload_v6(&mut p[40..], src, dst, &[]);
        let tot = p.len();
        let a = ScrubActs {
            flags: scrubflags::SETTOS | scrubflags::NODF,
            min_ttl: 10,
            set_tos: 0xb8,
            max_mss: 1400,
            prio: [0; 2],
        };
        apply6(&mut p, 40, tot, true, &a);
        let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!((ip.hop_limit(), ip.traffic_class(), ip.flow_label()), (10, 0xbb, 0x12345));
        let tcp = TcpPacket::new_checked(&p[40..]).unwrap();
        assert!(tcp.verify_checksum_v6(src, dst));
        assert_eq!(TcpRepr::parse(&tcp).unwrap().max_seg_size, Some(1400));
        // a hop limit above the minimum stays
        let mut q = p.clone();
        q[7] = 200;
        apply6(&mut q, 40, tot, true, &ScrubActs { min_ttl: 10, ..ScrubActs::default() });
        assert_eq!(q[7], 200);
    }

    fn tcp_syn(opts: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0x12, 0, 0, 0x12, 0x34, 0x40, 0, 3, 6, 0, 0, 10, 0, 1, 2, 10, 0, 2, 2];
        let doff = (20 + opts.len()) / 4;
        let mut t = vec![0x9c, 0x40, 0, 22, 0, 0, 3, 0xe9, 0, 0, 0, 0, (doff as u8) << 4, 0x02, 0x20, 0, 0, 0, 0, 0];
        t.extend_from_slice(opts);
        p.extend_from_slice(&t);
        let tot = p.len() as u16;
        p[2..4].copy_from_slice(&tot.to_be_bytes());
        let s = checksum(&p[..20]);
        p[10..12].copy_from_slice(&s.to_be_bytes());
        fill_tcp(&mut p);
        p
    }

    fn tcp_sum(p: &[u8]) -> u16 {
        let mut ph = vec![];
        ph.extend_from_slice(&p[12..20]);
        ph.extend_from_slice(&[0, 6]);
        ph.extend_from_slice(&((p.len() - 20) as u16).to_be_bytes());
        let mut seg = p[20..].to_vec();
        seg[16] = 0;
        seg[17] = 0;
        ph.extend_from_slice(&seg);
        checksum(&ph)
    }

    fn fill_tcp(p: &mut [u8]) {
        let s = tcp_sum(p);
        p[36..38].copy_from_slice(&s.to_be_bytes());
    }

    fn sums_ok(p: &[u8]) {
        assert_eq!(checksum(&p[..20]), 0, "IP checksum {p:x?}");
        assert_eq!(tcp_sum(p), be16(p, 36), "TCP checksum {p:x?}");
    }

    #[test]
    fn every_option_rewrites_its_field_and_keeps_the_checksums() {
        // MSS 1460 at an even and an odd option offset.
        for opts in [vec![2, 4, 0x05, 0xb4], vec![1, 2, 4, 0x05, 0xb4, 1, 1, 0]] {
            let mut p = tcp_syn(&opts);
            let before = p.clone();
            let a = ScrubActs {
                flags: scrubflags::NODF | scrubflags::RANDOMID | scrubflags::SETTOS,
                min_ttl: 64,
                set_tos: 0x10,
                max_mss: 1200,
                prio: [0; 2],
            };
            let tot = p.len();
            apply(&mut p, 20, tot, &a, || 0xbeef);
            assert_eq!(be16(&p, 6), 0, "DF cleared");
            assert_eq!(p[8], 64, "TTL raised");
            assert_eq!(p[1], 0x12, "TOS 0x10 with the ECN bits kept");
            assert_eq!(be16(&p, 4), 0xbeef);
            let at = 40 + opts.iter().position(|&b| b == 2).unwrap();
            assert_eq!(be16(&p, at + 2), 1200);
            sums_ok(&p);
            // Nothing else moved.
            for i in (0..p.len()).filter(|&i| ![1, 4, 5, 6, 8, 10, 11, 36, 37, at + 2, at + 3].contains(&i)) {
                assert_eq!(p[i], before[i], "byte {i}");
            }
        }
    }

    #[test]
    fn values_already_within_bounds_stay() {
        let mut p = tcp_syn(&[2, 4, 0x02, 0x00]);
        p[8] = 200;
        p[10] = 0;
        p[11] = 0;
        let s = checksum(&p[..20]);
        p[10..12].copy_from_slice(&s.to_be_bytes());
        let before = p.clone();
        let a = ScrubActs { flags: 0, min_ttl: 64, set_tos: 0, max_mss: 1200, prio: [0; 2] };
        let tot = p.len();
        apply(&mut p, 20, tot, &a, || unreachable!());
        assert_eq!(p, before);
    }

    #[test]
    fn fragments_keep_their_id() {
        let mut p = tcp_syn(&[]);
        p[6] = 0x20; // MF
        p[10] = 0;
        p[11] = 0;
        let s = checksum(&p[..20]);
        p[10..12].copy_from_slice(&s.to_be_bytes());
        let a = ScrubActs { flags: scrubflags::RANDOMID, ..ScrubActs::default() };
        let tot = p.len();
        apply(&mut p, 20, tot, &a, || 7);
        assert_eq!(be16(&p, 4), 0x1234);
    }

    #[test]
    fn later_rules_replace_values_and_add_flags() {
        let mut a = ScrubActs::of_rule(&Scrub { no_df: true, min_ttl: Some(10), ..Scrub::default() }, Some(0x10), None);
        a.add(&ScrubActs::of_rule(&Scrub { random_id: true, max_mss: Some(1400), ..Scrub::default() }, None, None));
        assert_eq!(
            a,
            ScrubActs {
                flags: scrubflags::NODF | scrubflags::RANDOMID | scrubflags::SETTOS,
                min_ttl: 10,
                set_tos: 0x10,
                max_mss: 1400,
                prio: [0; 2],
            }
        );
        a.add(&ScrubActs::of_rule(&Scrub { min_ttl: Some(30), ..Scrub::default() }, Some(0x08), Some((1, 6))));
        assert_eq!((a.min_ttl, a.set_tos, a.max_mss), (30, 0x08, 1400));
        // set prio: kept in the state's word with the rest.
        assert_eq!(ScrubActs::unpack(a.pack()), a);
        assert_eq!((a.prio_for(false, 0), a.prio_for(true, 0), a.prio_for(false, 0x10)), (Some(1), Some(6), Some(6)));
        assert!(!ScrubActs::of_rule(&Scrub::default(), None, Some((2, 2))).edits(), "set prio alone edits no byte");
    }
}
