//! Multicast Listener Discovery: MLDv1 (RFC 2710) query, report and done;
//! MLDv2 (RFC 3810) query and report. Enough for a router to report the
//! groups it joins (solicited-node, all-routers) and to read queries.
//!
//! MLD messages are sent with hop limit 1, from a link-local source, with
//! a hop-by-hop router alert (RFC 2710 §3, RFC 3810 §5; see
//! [`router_alert_hop_by_hop`](crate::ipv6ext::router_alert_hop_by_hop)).

use std::net::Ipv6Addr;

use crate::icmpv6::{msg_type, Icmpv6Packet};
use crate::{get16, put16, WireError};

/// MLDv1 messages and the MLDv2 query's fixed part.
pub const V1_LEN: usize = 24;
/// An MLDv2 query without sources.
pub const V2_QUERY_MIN_LEN: usize = 28;
/// An MLDv2 report's header (before the records).
pub const V2_REPORT_HEADER_LEN: usize = 8;
/// A multicast address record without sources or auxiliary data.
pub const RECORD_HEADER_LEN: usize = 20;

/// Multicast address record types (RFC 3810 §5.2.12).
pub mod record_type {
    pub const MODE_IS_INCLUDE: u8 = 1;
    pub const MODE_IS_EXCLUDE: u8 = 2;
    /// Sent on leaving a group (with no sources).
    pub const CHANGE_TO_INCLUDE: u8 = 3;
    /// Sent on joining a group (with no sources: "all sources").
    pub const CHANGE_TO_EXCLUDE: u8 = 4;
    pub const ALLOW_NEW_SOURCES: u8 = 5;
    pub const BLOCK_OLD_SOURCES: u8 = 6;
}

mod field {
    pub const MAX_RESP: usize = 4;
    pub const GROUP: usize = 8;
    pub const FLAGS_QRV: usize = 24;
    pub const QQIC: usize = 25;
    pub const NUM_SOURCES: usize = 26;
    pub const SOURCES: usize = 28;
    pub const NUM_RECORDS: usize = 6;
}

fn get_ip6(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

/// The MLDv2 part of a query (RFC 3810 §5.1).
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct MldV2Query<'a> {
    /// S: suppress router-side processing.
    pub suppress: bool,
    /// Querier's robustness variable (3 bits).
    pub qrv: u8,
    /// Querier's query interval code.
    pub qqic: u8,
    /// The source addresses, 16 bytes each.
    pub sources: &'a [u8],
}

impl MldV2Query<'_> {
    /// The query interval in seconds (RFC 3810 §5.1.9: exponential above 127).
    pub fn qqi_secs(&self) -> u32 {
        let c = self.qqic as u32;
        if c < 128 {
            c
        } else {
            ((c & 0x0F) | 0x10) << (((c >> 4) & 0x07) + 3)
        }
    }

    pub fn sources(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.sources.chunks_exact(16).map(|c| get_ip6(c, 0))
    }
}

/// One multicast address record of an MLDv2 report.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct MldRecord<'a> {
    pub record_type: u8,
    pub group: Ipv6Addr,
    /// 16 bytes per source.
    pub sources: &'a [u8],
    pub aux: &'a [u8],
}

impl MldRecord<'_> {
    pub fn sources(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.sources.chunks_exact(16).map(|c| get_ip6(c, 0))
    }
}

/// Iterates over `count` records; one `Truncated` error, then nothing, if
/// a record runs past the end.
pub fn records(b: &[u8], count: u16) -> MldRecords<'_> {
    MldRecords { b, pos: 0, left: count }
}

/// Iterator returned by [`records`].
#[derive(Debug, Clone)]
pub struct MldRecords<'a> {
    b: &'a [u8],
    pos: usize,
    left: u16,
}

impl<'a> Iterator for MldRecords<'a> {
    type Item = Result<MldRecord<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = &self.b[self.pos.min(self.b.len())..];
        if r.len() < RECORD_HEADER_LEN {
            self.left = 0;
            return Some(Err(WireError::Truncated));
        }
        let aux = r[1] as usize * 4;
        let nsrc = get16(r, 2) as usize * 16;
        let len = RECORD_HEADER_LEN + nsrc + aux;
        if len > r.len() {
            self.left = 0;
            return Some(Err(WireError::Truncated));
        }
        self.pos += len;
        Some(Ok(MldRecord {
            record_type: r[0],
            group: get_ip6(r, 4),
            sources: &r[RECORD_HEADER_LEN..RECORD_HEADER_LEN + nsrc],
            aux: &r[RECORD_HEADER_LEN + nsrc..len],
        }))
    }
}

/// A record to emit (no auxiliary data: RFC 3810 §5.2.10 defines none).
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct MldRecordRepr<'a> {
    pub record_type: u8,
    pub group: Ipv6Addr,
    pub sources: &'a [Ipv6Addr],
}

impl MldRecordRepr<'_> {
    pub fn buffer_len(&self) -> usize {
        RECORD_HEADER_LEN + 16 * self.sources.len()
    }

    /// Writes the record; returns its length. Panics if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let n = self.buffer_len();
        buf[0] = self.record_type;
        buf[1] = 0;
        put16(buf, 2, u16::try_from(self.sources.len()).expect("over 65535 sources"));
        buf[4..20].copy_from_slice(&self.group.octets());
        for (i, s) in self.sources.iter().enumerate() {
            buf[20 + 16 * i..36 + 16 * i].copy_from_slice(&s.octets());
        }
        n
    }
}

/// Writes `recs` one after another; returns the bytes written (the
/// `records` of a [`MldRepr::ReportV2`] with `count = recs.len()`).
pub fn emit_records(recs: &[MldRecordRepr<'_>], buf: &mut [u8]) -> usize {
    let mut at = 0;
    for r in recs {
        at += r.emit(&mut buf[at..]);
    }
    at
}

/// An MLD message.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum MldRepr<'a> {
    /// A general query (`group` ::) or a group-specific one; MLDv2 if
    /// `v2` is set (a message of 28 bytes or more, RFC 3810 §8.1).
    Query { max_resp_code: u16, group: Ipv6Addr, v2: Option<MldV2Query<'a>> },
    /// MLDv1 report (type 131).
    Report { group: Ipv6Addr },
    /// MLDv1 done (type 132).
    Done { group: Ipv6Addr },
    /// MLDv2 report (type 143): `count` records in `records`.
    ReportV2 { count: u16, records: &'a [u8] },
}

impl<'a> MldRepr<'a> {
    /// Parses an MLD message (types 130, 131, 132, 143; checksum verified
    /// by [`Icmpv6Repr::parse`](crate::icmpv6::Icmpv6Repr::parse)). A
    /// query of 25..=27 bytes is `Malformed` (RFC 3810 §8.1 ignores it);
    /// short messages, sources or records past the end are `Truncated`.
    /// Bytes after the last source or record are ignored.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Icmpv6Packet<&'a T>) -> Result<Self, WireError> {
        let b: &'a [u8] = T::as_ref(p.buf);
        match p.msg_type() {
            msg_type::MLDV2_REPORT => {
                let count = get16(b, field::NUM_RECORDS);
                let area = &b[V2_REPORT_HEADER_LEN..];
                let mut used = 0;
                for r in records(area, count) {
                    let r = r?;
                    used += RECORD_HEADER_LEN + r.sources.len() + r.aux.len();
                }
                Ok(MldRepr::ReportV2 { count, records: &area[..used] })
            }
            t @ (msg_type::MLD_QUERY | msg_type::MLD_REPORT | msg_type::MLD_DONE) => {
                if b.len() < V1_LEN {
                    return Err(WireError::Truncated);
                }
                let group = get_ip6(b, field::GROUP);
                Ok(match t {
                    msg_type::MLD_REPORT => MldRepr::Report { group },
                    msg_type::MLD_DONE => MldRepr::Done { group },
                    _ => {
                        let max_resp_code = get16(b, field::MAX_RESP);
                        let v2 = match b.len() {
                            V1_LEN => None,
                            n if n < V2_QUERY_MIN_LEN => return Err(WireError::Malformed),
                            n => {
                                let nsrc = get16(b, field::NUM_SOURCES) as usize * 16;
                                if field::SOURCES + nsrc > n {
                                    return Err(WireError::Truncated);
                                }
                                Some(MldV2Query {
                                    suppress: b[field::FLAGS_QRV] & 0x08 != 0,
                                    qrv: b[field::FLAGS_QRV] & 0x07,
                                    qqic: b[field::QQIC],
                                    sources: &b[field::SOURCES..field::SOURCES + nsrc],
                                })
                            }
                        };
                        MldRepr::Query { max_resp_code, group, v2 }
                    }
                })
            }
            _ => Err(WireError::Unsupported),
        }
    }

    pub fn msg_type(&self) -> u8 {
        match self {
            MldRepr::Query { .. } => msg_type::MLD_QUERY,
            MldRepr::Report { .. } => msg_type::MLD_REPORT,
            MldRepr::Done { .. } => msg_type::MLD_DONE,
            MldRepr::ReportV2 { .. } => msg_type::MLDV2_REPORT,
        }
    }

    /// A query's maximum response delay in milliseconds (MLDv2's code is
    /// exponential from 32768, RFC 3810 §5.1.3).
    pub fn max_resp_delay_ms(&self) -> Option<u32> {
        let MldRepr::Query { max_resp_code, v2, .. } = *self else { return None };
        let c = max_resp_code as u32;
        Some(if v2.is_none() || c < 32768 { c } else { ((c & 0x0FFF) | 0x1000) << (((c >> 12) & 0x07) + 3) })
    }

    /// The records of an MLDv2 report (empty for other messages).
    pub fn records(&self) -> MldRecords<'a> {
        match *self {
            MldRepr::ReportV2 { count, records: r } => records(r, count),
            _ => records(&[], 0),
        }
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            MldRepr::Query { v2: None, .. } | MldRepr::Report { .. } | MldRepr::Done { .. } => V1_LEN,
            MldRepr::Query { v2: Some(q), .. } => V2_QUERY_MIN_LEN + q.sources.len(),
            MldRepr::ReportV2 { records, .. } => V2_REPORT_HEADER_LEN + records.len(),
        }
    }

    /// Writes the message (code 0, checksum 0) at the start of `buf`; the
    /// ICMPv6 Repr fills the checksum. Panics if `buf` is short, or a
    /// query's sources are not a multiple of 16 bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..self.buffer_len()];
        b[..8].fill(0);
        b[0] = self.msg_type();
        match *self {
            MldRepr::Report { group } | MldRepr::Done { group } => b[8..24].copy_from_slice(&group.octets()),
            MldRepr::Query { max_resp_code, group, v2 } => {
                put16(b, field::MAX_RESP, max_resp_code);
                b[8..24].copy_from_slice(&group.octets());
                if let Some(q) = v2 {
                    assert!(q.sources.len() % 16 == 0, "MLDv2 query sources are 16 bytes each");
                    b[field::FLAGS_QRV] = if q.suppress { 0x08 } else { 0 } | (q.qrv & 0x07);
                    b[field::QQIC] = q.qqic;
                    put16(b, field::NUM_SOURCES, (q.sources.len() / 16) as u16);
                    b[field::SOURCES..].copy_from_slice(q.sources);
                }
            }
            MldRepr::ReportV2 { count, records } => {
                put16(b, field::NUM_RECORDS, count);
                b[V2_REPORT_HEADER_LEN..].copy_from_slice(records);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::icmpv6::tests::{a, icmp_of};
    use crate::icmpv6::Icmpv6Repr;
    use crate::ipv6;
    use proptest::prelude::*;

    fn parse<'a>(s: Ipv6Addr, d: Ipv6Addr, m: &'a [u8]) -> Result<MldRepr<'a>, WireError> {
        match Icmpv6Repr::parse(s, d, &Icmpv6Packet::new_checked(m).unwrap())? {
            Icmpv6Repr::Mld(r) => Ok(r),
            r => panic!("not MLD: {r:?}"),
        }
    }

    fn emit(r: MldRepr, s: Ipv6Addr, d: Ipv6Addr) -> Vec<u8> {
        let i = Icmpv6Repr::Mld(r);
        let mut b = vec![0u8; i.buffer_len()];
        i.emit(s, d, &mut b);
        b
    }

    /// Linux 6.x joining ff02::1:ff00:b, ff05::2 and ff02::2 from :: (before
    /// its link-local address was ready), with the router alert header.
    const LINUX_MLDV2_REPORT: [u8; 116] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x4c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x16, 0x3a, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00, 0x8f, 0x00, 0x69, 0x48, 0x00, 0x00,
        0x00, 0x03, 0x04, 0x00, 0x00, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0xff, 0x00, 0x00, 0x0b, 0x04, 0x00, 0x00, 0x00, 0xff, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x00, 0x00, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
    ];

    #[test]
    fn linux_mldv2_report_parses_and_is_rebuilt_byte_for_byte() {
        let p = ipv6::Ipv6Packet::new_checked(&LINUX_MLDV2_REPORT[..]).unwrap();
        assert_eq!((p.hop_limit(), p.dst()), (1, ipv6::ALL_MLDV2_ROUTERS));
        let (s, d, m) = icmp_of(&LINUX_MLDV2_REPORT);
        let r = parse(s, d, m).unwrap();
        let recs: Vec<_> = r.records().map(Result::unwrap).collect();
        let groups: Vec<_> = recs.iter().map(|r| (r.record_type, r.group)).collect();
        let want = [a("ff02::1:ff00:b"), a("ff05::2"), a("ff02::2")];
        assert_eq!(groups, want.map(|g| (record_type::CHANGE_TO_EXCLUDE, g)));
        assert!(recs.iter().all(|r| r.sources.is_empty() && r.aux.is_empty()));
        // What the stack would send for the same joins.
        let reprs =
            want.map(|group| MldRecordRepr { record_type: record_type::CHANGE_TO_EXCLUDE, group, sources: &[] });
        let mut area = [0u8; 60];
        let n = emit_records(&reprs, &mut area);
        let built = MldRepr::ReportV2 { count: 3, records: &area[..n] };
        assert_eq!(built, r);
        assert_eq!(emit(built, s, d), m);
    }

    #[test]
    fn mldv1_messages_round_trip() {
        let (s, d) = (a("fe80::1"), a("ff02::1:ff00:1"));
        for r in [
            MldRepr::Report { group: d },
            MldRepr::Done { group: d },
            MldRepr::Query { max_resp_code: 10_000, group: Ipv6Addr::UNSPECIFIED, v2: None },
        ] {
            let b = emit(r, s, d);
            assert_eq!(b.len(), 24);
            assert_eq!(parse(s, d, &b).unwrap(), r);
        }
        let q = MldRepr::Query { max_resp_code: 40_000, group: Ipv6Addr::UNSPECIFIED, v2: None };
        assert_eq!(q.max_resp_delay_ms(), Some(40_000));
        assert_eq!(MldRepr::Report { group: d }.max_resp_delay_ms(), None);
    }

    #[test]
    fn mldv2_query_fields_and_exponential_codes() {
        let (s, d) = (a("fe80::1"), ipv6::ALL_NODES);
        let src = [0x20u8; 32];
        let q = MldV2Query { suppress: true, qrv: 2, qqic: 125, sources: &src };
        let r = MldRepr::Query { max_resp_code: 10_000, group: a("ff0e::5"), v2: Some(q) };
        let b = emit(r, s, d);
        assert_eq!(b.len(), 28 + 32);
        assert_eq!(&b[24..28], &[0x0a, 125, 0, 2]);
        let p = parse(s, d, &b).unwrap();
        assert_eq!(p, r);
        assert_eq!(p.max_resp_delay_ms(), Some(10_000));
        assert_eq!(q.qqi_secs(), 125);
        let MldRepr::Query { v2: Some(v2), .. } = p else { panic!() };
        assert_eq!(v2.sources().count(), 2);
        // RFC 3810 §5.1.3: 0x8000 is mant 0, exp 0: 0x1000 << 3.
        let big = MldRepr::Query { max_resp_code: 0x8000, group: Ipv6Addr::UNSPECIFIED, v2: Some(q) };
        assert_eq!(big.max_resp_delay_ms(), Some(0x1000 << 3));
        let max = MldRepr::Query { max_resp_code: 0xFFFF, group: Ipv6Addr::UNSPECIFIED, v2: Some(q) };
        assert_eq!(max.max_resp_delay_ms(), Some(0x1FFF << 10));
        assert_eq!(MldV2Query { qqic: 0x80, ..q }.qqi_secs(), 0x10 << 3);
        assert_eq!(MldV2Query { qqic: 0xFF, ..q }.qqi_secs(), 0x1F << 10);
    }

    #[test]
    fn bad_lengths_are_refused() {
        let (s, d) = (a("fe80::1"), ipv6::ALL_NODES);
        let r = MldRepr::Query { max_resp_code: 1, group: Ipv6Addr::UNSPECIFIED, v2: None };
        let mut b = emit(r, s, d);
        // 26 bytes: neither v1 nor v2.
        b.extend_from_slice(&[0, 0]);
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(s, d);
        assert_eq!(parse(s, d, &b).unwrap_err(), WireError::Malformed);
        // 28 bytes claiming one source.
        b.extend_from_slice(&[0, 1]);
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(s, d);
        assert_eq!(parse(s, d, &b).unwrap_err(), WireError::Truncated);
        // 23 bytes.
        let mut b = emit(MldRepr::Report { group: d }, s, d);
        b.pop();
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(s, d);
        assert_eq!(parse(s, d, &b).unwrap_err(), WireError::Truncated);
        // A v2 report claiming more records than it holds, or a record whose
        // sources / aux data run past the end.
        let (s2, d2, m) = icmp_of(&LINUX_MLDV2_REPORT);
        for (at, v) in [(7, 4u8), (9, 1), (11, 1)] {
            let mut b = m.to_vec();
            b[at] = v;
            Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(s2, d2);
            assert_eq!(parse(s2, d2, &b).unwrap_err(), WireError::Truncated, "byte {at}");
        }
    }

    proptest! {
        #[test]
        fn reports_round_trip(recs in proptest::collection::vec((1u8..7, any::<u128>(), 0usize..3), 0..5)) {
            let srcs: Vec<Ipv6Addr> = (0..3u128).map(Ipv6Addr::from).collect();
            let reprs: Vec<_> = recs.iter().map(|&(t, g, n)| MldRecordRepr { record_type: t, group: g.into(), sources: &srcs[..n] }).collect();
            let mut area = vec![0u8; reprs.iter().map(|r| r.buffer_len()).sum()];
            let n = emit_records(&reprs, &mut area);
            let r = MldRepr::ReportV2 { count: reprs.len() as u16, records: &area[..n] };
            let (s, d) = (a("fe80::1"), ipv6::ALL_MLDV2_ROUTERS);
            let b = emit(r, s, d);
            let p = parse(s, d, &b).unwrap();
            prop_assert_eq!(p, r);
            let back: Vec<_> = p.records().map(|x| { let x = x.unwrap(); (x.record_type, x.group, x.sources().collect::<Vec<_>>()) }).collect();
            let want: Vec<_> = reprs.iter().map(|x| (x.record_type, x.group, x.sources.to_vec())).collect();
            prop_assert_eq!(back, want);
        }

        #[test]
        fn records_walker_never_panics(b in proptest::collection::vec(any::<u8>(), 0..100), count in any::<u16>()) {
            let mut n = 0;
            for r in records(&b, count) {
                n += 1;
                if r.is_err() { break; }
            }
            prop_assert!(n <= count as usize);
        }
    }
}
