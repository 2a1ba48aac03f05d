//! IPv4 (RFC 791): header view, options walker, and an owned Repr.

use core::fmt;
use std::net::Ipv4Addr;

use crate::checksum;
use crate::{get16, get_ip, put16, put_ip, WireError};

/// Header length without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Header length with the most options (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

/// The IP protocol number (the IPv4 `protocol` / IPv6 `next header` field).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    pub const HOPOPT: IpProtocol = IpProtocol(0);
    pub const ICMP: IpProtocol = IpProtocol(1);
    pub const IGMP: IpProtocol = IpProtocol(2);
    pub const IPIP: IpProtocol = IpProtocol(4);
    pub const TCP: IpProtocol = IpProtocol(6);
    pub const UDP: IpProtocol = IpProtocol(17);
    pub const IPV6: IpProtocol = IpProtocol(41);
    pub const IPV6_ROUTE: IpProtocol = IpProtocol(43);
    pub const IPV6_FRAG: IpProtocol = IpProtocol(44);
    pub const GRE: IpProtocol = IpProtocol(47);
    pub const ESP: IpProtocol = IpProtocol(50);
    pub const AH: IpProtocol = IpProtocol(51);
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    pub const IPV6_NONXT: IpProtocol = IpProtocol(59);
    pub const IPV6_OPTS: IpProtocol = IpProtocol(60);
    pub const OSPF: IpProtocol = IpProtocol(89);
    pub const PIM: IpProtocol = IpProtocol(103);
    pub const CARP: IpProtocol = IpProtocol(112);
    pub const SCTP: IpProtocol = IpProtocol(132);
    pub const PFSYNC: IpProtocol = IpProtocol(240);

    /// The lower-case name pf and /etc/protocols use, if well known.
    pub fn name(&self) -> Option<&'static str> {
        Some(match *self {
            IpProtocol::HOPOPT => "hopopt",
            IpProtocol::ICMP => "icmp",
            IpProtocol::IGMP => "igmp",
            IpProtocol::IPIP => "ipencap",
            IpProtocol::TCP => "tcp",
            IpProtocol::UDP => "udp",
            IpProtocol::IPV6 => "ipv6",
            IpProtocol::IPV6_ROUTE => "ipv6-route",
            IpProtocol::IPV6_FRAG => "ipv6-frag",
            IpProtocol::GRE => "gre",
            IpProtocol::ESP => "esp",
            IpProtocol::AH => "ah",
            IpProtocol::ICMPV6 => "ipv6-icmp",
            IpProtocol::IPV6_NONXT => "ipv6-nonxt",
            IpProtocol::IPV6_OPTS => "ipv6-opts",
            IpProtocol::OSPF => "ospf",
            IpProtocol::PIM => "pim",
            IpProtocol::CARP => "carp",
            IpProtocol::SCTP => "sctp",
            IpProtocol::PFSYNC => "pfsync",
            _ => return None,
        })
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<u8> for IpProtocol {
    fn from(v: u8) -> Self {
        IpProtocol(v)
    }
}

impl From<IpProtocol> for u8 {
    fn from(p: IpProtocol) -> u8 {
        p.0
    }
}

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const ADDRS: Range<usize> = 12..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_MASK: u16 = 0x1FFF;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// No checks: accessors panic if the buffer is shorter than they need.
    pub const fn new_unchecked(buf: T) -> Self {
        Ipv4Packet { buf }
    }

    /// Checks version 4, IHL ≥ 5, header and `total_len` within the buffer
    /// and `total_len ≥ header_len`. Does not verify the checksum, and
    /// accepts bytes after `total_len` (Ethernet padding).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let hlen = ((b[field::VER_IHL] & 0x0F) as usize) * 4;
        if hlen < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if hlen > b.len() {
            return Err(WireError::Truncated);
        }
        let total = get16(b, field::TOTAL_LEN) as usize;
        if total < hlen {
            return Err(WireError::Malformed);
        }
        if total > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(Ipv4Packet { buf })
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.buf.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> u8 {
        (self.buf.as_ref()[field::VER_IHL] & 0x0F) * 4
    }

    /// The whole type-of-service byte (DSCP << 2 | ECN).
    pub fn tos(&self) -> u8 {
        self.buf.as_ref()[field::TOS]
    }

    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    pub fn total_len(&self) -> u16 {
        get16(self.buf.as_ref(), field::TOTAL_LEN)
    }

    pub fn ident(&self) -> u16 {
        get16(self.buf.as_ref(), field::IDENT)
    }

    fn flags_frag(&self) -> u16 {
        get16(self.buf.as_ref(), field::FLAGS_FRAG)
    }

    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// The reserved (evil) bit.
    pub fn reserved_flag(&self) -> bool {
        self.flags_frag() & 0x8000 != 0
    }

    /// Fragment offset in bytes (the field × 8).
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag() & FRAG_MASK) << 3
    }

    /// A fragment: more fragments follow, or the offset is not zero.
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | FRAG_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buf.as_ref()[field::PROTOCOL])
    }

    pub fn checksum(&self) -> u16 {
        get16(self.buf.as_ref(), field::CHECKSUM)
    }

    pub fn src(&self) -> Ipv4Addr {
        get_ip(self.buf.as_ref(), field::SRC)
    }

    pub fn dst(&self) -> Ipv4Addr {
        get_ip(self.buf.as_ref(), field::DST)
    }

    /// The options bytes (between the fixed header and `header_len`).
    pub fn options(&self) -> &[u8] {
        &self.buf.as_ref()[MIN_HEADER_LEN..self.header_len() as usize]
    }

    /// The header (first `header_len` bytes).
    pub fn header(&self) -> &[u8] {
        &self.buf.as_ref()[..self.header_len() as usize]
    }

    /// The payload: from `header_len` up to `total_len` (padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len() as usize..self.total_len() as usize]
    }

    /// The header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn b(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }

    /// Sets version 4 and the header length in bytes (a multiple of 4).
    pub fn set_header_len(&mut self, len: u8) {
        self.b()[field::VER_IHL] = 0x40 | ((len / 4) & 0x0F);
    }

    pub fn set_tos(&mut self, tos: u8) {
        self.b()[field::TOS] = tos;
    }

    pub fn set_total_len(&mut self, len: u16) {
        put16(self.b(), field::TOTAL_LEN, len);
    }

    pub fn set_ident(&mut self, id: u16) {
        put16(self.b(), field::IDENT, id);
    }

    /// Sets DF, MF and the fragment offset (in bytes, a multiple of 8);
    /// clears the reserved bit.
    pub fn set_flags_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let v =
            if dont_frag { FLAG_DF } else { 0 } | if more_frags { FLAG_MF } else { 0 } | ((offset >> 3) & FRAG_MASK);
        put16(self.b(), field::FLAGS_FRAG, v);
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.b()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, p: IpProtocol) {
        self.b()[field::PROTOCOL] = p.0;
    }

    pub fn set_checksum(&mut self, c: u16) {
        put16(self.b(), field::CHECKSUM, c);
    }

    pub fn set_src(&mut self, a: Ipv4Addr) {
        put_ip(self.b(), field::SRC, a);
    }

    pub fn set_dst(&mut self, a: Ipv4Addr) {
        put_ip(self.b(), field::DST, a);
    }

    /// Recomputes the header checksum over `header_len` bytes.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// TTL minus one (never below zero) with the RFC 1624 incremental
    /// checksum update; no re-sum. Returns the new TTL.
    pub fn decrement_ttl(&mut self) -> u8 {
        let ttl = self.ttl();
        if ttl == 0 {
            return 0;
        }
        let proto = self.b()[field::PROTOCOL];
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_ttl(ttl - 1);
        self.set_checksum(c);
        ttl - 1
    }

    /// Rewrites the source address, updating the header checksum
    /// incrementally (for NAT). Transport checksums are the caller's.
    pub fn set_src_incremental(&mut self, a: Ipv4Addr) {
        let c = checksum::update32(self.checksum(), self.src().into(), a.into());
        self.set_src(a);
        self.set_checksum(c);
    }

    /// Like [`set_src_incremental`](Self::set_src_incremental) for the
    /// destination.
    pub fn set_dst_incremental(&mut self, a: Ipv4Addr) {
        let c = checksum::update32(self.checksum(), self.dst().into(), a.into());
        self.set_dst(a);
        self.set_checksum(c);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let h = self.header_len() as usize;
        &mut self.b()[MIN_HEADER_LEN..h]
    }

    /// The payload up to `total_len`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len() as usize, self.total_len() as usize);
        &mut self.b()[h..t]
    }

    /// The source and destination addresses as one 8-byte slice.
    pub fn addrs_mut(&mut self) -> &mut [u8] {
        &mut self.b()[field::ADDRS]
    }
}

// ---- options -------------------------------------------------------------

/// IPv4 option types (copy flag, class and number in one byte).
pub mod option {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const RR: u8 = 7;
    pub const TS: u8 = 68;
    pub const SECURITY: u8 = 130;
    pub const LSRR: u8 = 131;
    pub const SATID: u8 = 136;
    pub const SSRR: u8 = 137;
    pub const RA: u8 = 148;
    /// The copied flag: the option goes into every fragment.
    pub const COPIED: u8 = 0x80;
}

/// What is wrong with an options area.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum OptionErrorKind {
    /// An option's length byte is missing, below 2, or runs past the header.
    BadLength,
    /// A route or timestamp option's pointer is below its minimum.
    BadPointer,
}

/// An invalid option, with the byte offset of the offending octet relative
/// to the start of the options (add 20 for an ICMP parameter-problem pointer
/// into the header).
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("bad IPv4 option ({kind:?}) at options offset {offset}")]
pub struct OptionError {
    pub offset: usize,
    pub kind: OptionErrorKind,
}

impl OptionError {
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// One option from [`options`]: its type and its whole bytes (type and
/// length included; one byte for EOL and NOP).
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub struct Ipv4Option<'a> {
    pub kind: u8,
    pub offset: usize,
    pub bytes: &'a [u8],
}

/// The Ethernet address of an IPv4 multicast group (RFC 1112 §6.4: the
/// low 23 bits of the group under 01:00:5e).
pub fn multicast_mac(group: Ipv4Addr) -> crate::ethernet::MacAddr {
    let o = group.octets();
    crate::ethernet::MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
}

/// Iterates over the options area, stopping after EOL. Yields an error once
/// (and then stops) when an option is malformed.
pub fn options(opts: &[u8]) -> Options<'_> {
    Options { opts, pos: 0, done: false }
}

/// Iterator returned by [`options`].
#[derive(Debug, Clone)]
pub struct Options<'a> {
    opts: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<Ipv4Option<'a>, OptionError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.opts.len() {
            return None;
        }
        let at = self.pos;
        let kind = self.opts[at];
        if kind == option::EOL || kind == option::NOP {
            self.pos += 1;
            self.done = kind == option::EOL;
            return Some(Ok(Ipv4Option { kind, offset: at, bytes: &self.opts[at..at + 1] }));
        }
        let bad = |offset, kind| Some(Err(OptionError { offset, kind }));
        let Some(&len) = self.opts.get(at + 1) else {
            self.done = true;
            return bad(at + 1, OptionErrorKind::BadLength);
        };
        let len = len as usize;
        if len < 2 || at + len > self.opts.len() {
            self.done = true;
            return bad(at + 1, OptionErrorKind::BadLength);
        }
        let bytes = &self.opts[at..at + len];
        // Options with a pointer (RFC 791): route recording needs room for
        // the pointer (length ≥ 3, pointer ≥ 4); timestamp has pointer and
        // overflow/flags (length ≥ 4, pointer ≥ 5).
        let (min_len, min_ptr) = match kind {
            option::RR | option::LSRR | option::SSRR => (3, 4),
            option::TS => (4, 5),
            _ => (2, 0),
        };
        if len < min_len {
            self.done = true;
            return bad(at + 1, OptionErrorKind::BadLength);
        }
        if min_ptr > 0 && (bytes[2] as usize) < min_ptr {
            self.done = true;
            return bad(at + 2, OptionErrorKind::BadPointer);
        }
        self.pos += len;
        Some(Ok(Ipv4Option { kind, offset: at, bytes }))
    }
}

/// Walks the options per RFC 791: EOL ends them, NOP is one byte, every
/// other option carries a length that must be ≥ 2 and stay inside the
/// header. The error's offset points at the offending byte.
pub fn check_options(opts: &[u8]) -> Result<(), OptionError> {
    for o in options(opts) {
        o?;
    }
    Ok(())
}

/// Whether the options hold a loose or strict source route. Stops quietly at
/// the first malformed option (run [`check_options`] first).
pub fn has_source_route(opts: &[u8]) -> bool {
    options(opts).map_while(Result::ok).any(|o| o.kind == option::LSRR || o.kind == option::SSRR)
}

/// Copies the options that have the copied flag (those every fragment after
/// the first carries, RFC 791) into `out`; returns the bytes written
/// (unpadded). Stops at EOL or the first malformed option. Panics if `out`
/// is shorter than `opts`.
pub fn copy_options(opts: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    for o in options(opts).map_while(Result::ok) {
        if o.kind & option::COPIED != 0 {
            out[n..n + o.bytes.len()].copy_from_slice(o.bytes);
            n += o.bytes.len();
        }
    }
    n
}

// ---- Repr ----------------------------------------------------------------

/// An IPv4 header without options.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpProtocol,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    /// Bytes after the header (total length − header length).
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Parses a checked packet, verifying the header checksum (else
    /// `BadChecksum`). Options are skipped; `payload_len` excludes them.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self, WireError> {
        if !p.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        Ok(Ipv4Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            payload_len: p.total_len() as usize - p.header_len() as usize,
        })
    }

    /// Always 20: this Repr emits no options.
    pub const fn header_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN + self.payload_len
    }

    /// Writes the 20-byte header (no options, not a fragment) at the start
    /// of `buf` and fills its checksum. Panics if `buf` is shorter than 20
    /// bytes or the total length exceeds 65535.
    pub fn emit(&self, buf: &mut [u8]) {
        let total = u16::try_from(self.buffer_len()).expect("IPv4 total length over 65535");
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..MIN_HEADER_LEN]);
        p.set_header_len(MIN_HEADER_LEN as u8);
        p.set_tos(self.tos);
        p.set_total_len(total);
        p.set_ident(self.ident);
        p.set_flags_frag(self.dont_frag, false, 0);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src(self.src);
        p.set_dst(self.dst);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_groups_map_to_their_low_23_bits() {
        let m = multicast_mac(Ipv4Addr::new(224, 128, 0, 5));
        assert_eq!(m.0, [0x01, 0x00, 0x5e, 0x00, 0x00, 0x05]);
    }
    use proptest::prelude::*;

    // 192.168.0.1 -> 192.168.0.199, UDP, total 0x73, DF, TTL 64, sum b861.
    fn sample() -> [u8; 20] {
        [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ]
    }

    fn packet(len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[..20].copy_from_slice(&sample());
        b
    }

    #[test]
    fn reads_header_fields() {
        let b = packet(0x73);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x73);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert_eq!(p.src(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 0x73 - 20);
        assert!(p.options().is_empty());
    }

    #[test]
    fn trailing_padding_is_tolerated_and_excluded_from_payload() {
        let mut b = packet(0x73 + 6);
        b[0x73..].fill(0xee);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 0x73 - 20);
    }

    #[test]
    fn checked_constructor_rejects_bad_headers() {
        assert_eq!(Ipv4Packet::new_checked(&packet(20)[..19]).unwrap_err(), WireError::Truncated);
        let mut b = packet(0x73);
        b[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), WireError::BadVersion);
        let mut b = packet(0x73);
        b[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
        let mut b = packet(0x73);
        b[0] = 0x4f; // 60-byte header in a 0x73 buffer is fine ...
        assert!(Ipv4Packet::new_checked(&b[..]).is_ok());
        assert_eq!(Ipv4Packet::new_checked(&b[..40]).unwrap_err(), WireError::Truncated);
        let mut b = packet(0x73);
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
        let b = packet(0x72); // total_len 0x73 > buffer
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn decrement_ttl_updates_checksum_incrementally() {
        let mut b = packet(0x73);
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        for want in (0..64).rev() {
            assert_eq!(p.decrement_ttl(), want);
            assert!(p.verify_checksum(), "ttl {want}");
        }
        assert_eq!(p.decrement_ttl(), 0);
        assert!(p.verify_checksum());
    }

    #[test]
    fn incremental_address_rewrite_keeps_checksum_valid() {
        let mut b = packet(0x73);
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_src_incremental(Ipv4Addr::new(10, 1, 2, 3));
        p.set_dst_incremental(Ipv4Addr::new(255, 0, 0, 255));
        assert!(p.verify_checksum());
        assert_eq!(p.src(), Ipv4Addr::new(10, 1, 2, 3));
    }

    #[test]
    fn fragment_fields_round_trip() {
        let mut b = packet(0x73);
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_flags_frag(false, true, 1480);
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        p.set_flags_frag(false, false, 8 * 0x1FFF);
        assert_eq!(p.frag_offset(), 8 * 0x1FFF);
        assert!(p.is_fragment() && !p.more_frags());
        p.fill_checksum();
        assert!(p.verify_checksum());
    }

    #[test]
    fn options_walker_accepts_valid_options() {
        // NOP, RR (len 7, ptr 4), NOP, EOL, then garbage ignored after EOL.
        let o = [1, 7, 7, 4, 0, 0, 0, 0, 1, 0, 0xff, 0x00];
        assert_eq!(check_options(&o), Ok(()));
        // Router alert (len 4), all padding.
        assert_eq!(check_options(&[148, 4, 0, 0]), Ok(()));
        assert_eq!(check_options(&[]), Ok(()));
        assert!(!has_source_route(&o));
    }

    #[test]
    fn options_walker_reports_the_offending_byte() {
        // Length byte missing: the type is the last byte.
        let e = check_options(&[1, 1, 1, 148]).unwrap_err();
        assert_eq!((e.offset(), e.kind), (4, OptionErrorKind::BadLength));
        // Length below 2.
        let e = check_options(&[1, 148, 1, 0]).unwrap_err();
        assert_eq!((e.offset(), e.kind), (2, OptionErrorKind::BadLength));
        // Length past the end of the header.
        let e = check_options(&[148, 8, 0, 0]).unwrap_err();
        assert_eq!(e.offset(), 1);
        // Record route with pointer 3.
        let e = check_options(&[7, 7, 3, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!((e.offset(), e.kind), (2, OptionErrorKind::BadPointer));
        // Timestamp shorter than 4.
        let e = check_options(&[1, 68, 3, 5]).unwrap_err();
        assert_eq!((e.offset(), e.kind), (2, OptionErrorKind::BadLength));
    }

    #[test]
    fn source_routes_are_found_and_copied_options_selected() {
        let o = [1, 131, 7, 4, 10, 0, 0, 1, 7, 3, 4, 148, 4, 0, 0, 0];
        assert_eq!(check_options(&o), Ok(()));
        assert!(has_source_route(&o));
        let mut out = [0u8; 16];
        let n = copy_options(&o, &mut out);
        // LSRR (copied) and router alert (copied); NOP and RR are not.
        assert_eq!(&out[..n], &[131, 7, 4, 10, 0, 0, 1, 148, 4, 0, 0]);
        assert!(has_source_route(&[137, 3, 4, 0]));
    }

    #[test]
    fn repr_emits_a_valid_header() {
        let r = Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::ICMP,
            ttl: 64,
            tos: 0x10,
            ident: 0x1234,
            dont_frag: true,
            payload_len: 8,
        };
        let mut b = [0u8; 28];
        r.emit(&mut b);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), r);
        b[8] = 1;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap_err(), WireError::BadChecksum);
    }

    fn arb_repr() -> impl Strategy<Value = Ipv4Repr> {
        (any::<u32>(), any::<u32>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u16>(), any::<bool>(), 0usize..200)
            .prop_map(|(s, d, pr, ttl, tos, ident, df, len)| Ipv4Repr {
                src: s.into(),
                dst: d.into(),
                protocol: IpProtocol(pr),
                ttl,
                tos,
                ident,
                dont_frag: df,
                payload_len: len,
            })
    }

    proptest! {
        #[test]
        fn repr_round_trips(r in arb_repr()) {
            let mut b = vec![0u8; r.buffer_len()];
            r.emit(&mut b);
            let p = Ipv4Packet::new_checked(&b[..]).unwrap();
            prop_assert_eq!(Ipv4Repr::parse(&p).unwrap(), r);
        }

        #[test]
        fn random_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..100), fix in any::<bool>()) {
            if fix && b.len() >= 20 {
                // Make most of them plausible so the deeper paths run.
                b[0] = 0x40 | (b[0] & 0x0F);
                let len = b.len() as u16;
                b[2..4].copy_from_slice(&len.to_be_bytes());
            }
            if let Ok(p) = Ipv4Packet::new_checked(&b[..]) {
                let _ = (p.payload().len(), p.options().len(), p.verify_checksum(), p.frag_offset());
                let _ = check_options(p.options());
                let _ = has_source_route(p.options());
                let mut out = [0u8; 40];
                let _ = copy_options(p.options(), &mut out);
                let _ = Ipv4Repr::parse(&p);
            }
        }

        #[test]
        fn option_walker_never_panics(o in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = check_options(&o);
            if let Err(e) = check_options(&o) {
                prop_assert!(e.offset() < o.len().max(1) + 1);
            }
        }
    }
}
