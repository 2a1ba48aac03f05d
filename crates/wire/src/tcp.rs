//! TCP (RFC 9293) segments over IPv4 and IPv6 (RFC 8200 §8.1 pseudo-header), with the options of RFC 9293, RFC
//! 7323 (window scale, timestamps) and RFC 2018 (SACK).

use core::fmt;
use core::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::ipv4::IpProtocol;
use crate::{get16, get32, put16, put32, WireError};

/// Header length without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Header length with the most options (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;
/// The largest window scale shift (RFC 7323 §2.3).
pub const MAX_WINDOW_SCALE: u8 = 14;

/// TCP control bits.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// pf's letters, in pf's order: F S R P A U E W.
    const LETTERS: [(u8, char); 8] =
        [(0x01, 'F'), (0x02, 'S'), (0x04, 'R'), (0x08, 'P'), (0x10, 'A'), (0x20, 'U'), (0x40, 'E'), (0x80, 'W')];

    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }
    pub const fn all() -> TcpFlags {
        TcpFlags(0xFF)
    }
    pub const fn bits(self) -> u8 {
        self.0
    }
    pub const fn from_bits(b: u8) -> TcpFlags {
        TcpFlags(b)
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// All bits of `other` are set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Any bit of `other` is set.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }
    pub fn insert(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }
    pub fn remove(&mut self, other: TcpFlags) {
        self.0 &= !other.0;
    }
    pub fn set(&mut self, other: TcpFlags, on: bool) {
        if on {
            self.insert(other)
        } else {
            self.remove(other)
        }
    }

    /// Parses pf-style letters ("S", "SA", "FSRPAUEW"); an empty string is
    /// no flags. Any other character gives `None`.
    pub fn from_letters(s: &str) -> Option<TcpFlags> {
        let mut f = 0u8;
        for ch in s.chars() {
            let (bit, _) = Self::LETTERS.iter().find(|(_, c)| *c == ch)?;
            f |= bit;
        }
        Some(TcpFlags(f))
    }
}

/// pf's notation: the letters of the set flags in the order FSRPAUEW,
/// e.g. "S", "SA", "FA"; nothing for no flags.
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, ch) in Self::LETTERS {
            if self.0 & bit != 0 {
                fmt::Write::write_char(f, ch)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpFlags({self})")
    }
}

impl core::str::FromStr for TcpFlags {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, WireError> {
        TcpFlags::from_letters(s).ok_or(WireError::Malformed)
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, o: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | o.0)
    }
}
impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, o: TcpFlags) {
        self.0 |= o.0;
    }
}
impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, o: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & o.0)
    }
}
impl BitAndAssign for TcpFlags {
    fn bitand_assign(&mut self, o: TcpFlags) {
        self.0 &= o.0;
    }
}
impl Not for TcpFlags {
    type Output = TcpFlags;
    fn not(self) -> TcpFlags {
        TcpFlags(!self.0)
    }
}
impl From<u8> for TcpFlags {
    fn from(b: u8) -> Self {
        TcpFlags(b)
    }
}
impl From<TcpFlags> for u8 {
    fn from(f: TcpFlags) -> u8 {
        f.0
    }
}

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// A view of a TCP segment. The segment is the whole buffer (TCP has no
/// length field): slice the IP payload exactly.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub const fn new_unchecked(buf: T) -> Self {
        TcpPacket { buf }
    }

    /// Checks the fixed header is present (`Truncated`), data offset ≥ 5
    /// (`Malformed`) and the whole header within the buffer (`Truncated`).
    /// Options are not parsed here.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hlen = ((b[field::DATA_OFF] >> 4) as usize) * 4;
        if hlen < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if hlen > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(TcpPacket { buf })
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    pub fn src_port(&self) -> u16 {
        get16(self.buf.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        get16(self.buf.as_ref(), field::DST_PORT)
    }

    pub fn seq_number(&self) -> u32 {
        get32(self.buf.as_ref(), field::SEQ)
    }

    /// Same as [`seq_number`](Self::seq_number).
    pub fn seq(&self) -> u32 {
        self.seq_number()
    }

    pub fn ack_number(&self) -> u32 {
        get32(self.buf.as_ref(), field::ACK)
    }

    /// Same as [`ack_number`](Self::ack_number).
    pub fn ack(&self) -> u32 {
        self.ack_number()
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> u8 {
        (self.buf.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The eight control bits (the NS/AE bit in byte 12 is not included).
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buf.as_ref()[field::FLAGS])
    }

    /// The four bits between the data offset and the control bits (BSD's
    /// `th_x2`: three reserved bits and the NS/AE bit).
    pub fn reserved(&self) -> u8 {
        self.buf.as_ref()[field::DATA_OFF] & 0x0F
    }

    pub fn window(&self) -> u16 {
        get16(self.buf.as_ref(), field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        get16(self.buf.as_ref(), field::CHECKSUM)
    }

    pub fn urgent(&self) -> u16 {
        get16(self.buf.as_ref(), field::URGENT)
    }

    /// Options bytes (between the fixed header and the data offset).
    pub fn options(&self) -> &[u8] {
        &self.buf.as_ref()[MIN_HEADER_LEN..self.header_len() as usize]
    }

    /// An iterator over the parsed options.
    pub fn option_iter(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.options())
    }

    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len() as usize..]
    }

    /// Sequence space the segment uses: payload plus one each for SYN, FIN.
    pub fn segment_len(&self) -> usize {
        let f = self.flags();
        self.payload().len() + f.contains(TcpFlags::SYN) as usize + f.contains(TcpFlags::FIN) as usize
    }

    fn sum_with_pseudo(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        let b = self.buf.as_ref();
        let ph = checksum::pseudo_header_v4(src, dst, IpProtocol::TCP.0, b.len() as u16);
        checksum::combine(ph, checksum::sum(b))
    }

    /// Verifies the checksum over the whole buffer with the IPv4
    /// pseudo-header.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::finish(self.sum_with_pseudo(src, dst)) == 0
    }

    fn sum_with_pseudo_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
        let b = self.buf.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::TCP.0, b.len() as u32);
        checksum::combine(ph, checksum::sum(b))
    }

    /// Verifies the checksum over the whole buffer with the IPv6
    /// pseudo-header (`dst` is the final destination).
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::finish(self.sum_with_pseudo_v6(src, dst)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn b(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }
    pub fn set_src_port(&mut self, p: u16) {
        put16(self.b(), field::SRC_PORT, p);
    }
    pub fn set_dst_port(&mut self, p: u16) {
        put16(self.b(), field::DST_PORT, p);
    }
    pub fn set_seq_number(&mut self, v: u32) {
        put32(self.b(), field::SEQ, v);
    }
    pub fn set_seq(&mut self, v: u32) {
        self.set_seq_number(v);
    }
    pub fn set_ack_number(&mut self, v: u32) {
        put32(self.b(), field::ACK, v);
    }
    pub fn set_ack(&mut self, v: u32) {
        self.set_ack_number(v);
    }
    /// Sets the data offset from a header length in bytes (multiple of 4);
    /// clears the reserved bits.
    pub fn set_header_len(&mut self, len: u8) {
        self.b()[field::DATA_OFF] = ((len / 4) & 0x0F) << 4;
    }
    pub fn set_flags(&mut self, f: TcpFlags) {
        self.b()[field::FLAGS] = f.0;
    }
    pub fn set_window(&mut self, w: u16) {
        put16(self.b(), field::WINDOW, w);
    }
    pub fn set_checksum(&mut self, c: u16) {
        put16(self.b(), field::CHECKSUM, c);
    }
    pub fn set_urgent(&mut self, u: u16) {
        put16(self.b(), field::URGENT, u);
    }
    pub fn options_mut(&mut self) -> &mut [u8] {
        let h = self.header_len() as usize;
        &mut self.b()[MIN_HEADER_LEN..h]
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len() as usize;
        &mut self.b()[h..]
    }
    /// Computes the checksum over the whole buffer with the IPv4
    /// pseudo-header.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::finish(self.sum_with_pseudo(src, dst));
        self.set_checksum(c);
    }
    /// Computes the checksum over the whole buffer with the IPv6
    /// pseudo-header.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = checksum::finish(self.sum_with_pseudo_v6(src, dst));
        self.set_checksum(c);
    }
}

// ---- options -------------------------------------------------------------

/// Option kinds.
pub mod option_kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// One TCP option.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum TcpOption<'a> {
    EndOfList,
    NoOp,
    MaxSegmentSize(u16),
    /// The shift as sent (may exceed 14; RFC 7323 says use 14 then).
    WindowScale(u8),
    SackPermitted,
    /// Up to 3 (left, right) blocks; a fourth block on the wire is skipped.
    SackRange([Option<(u32, u32)>; 3]),
    Timestamp {
        tsval: u32,
        tsecr: u32,
    },
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

impl<'a> TcpOption<'a> {
    /// Parses the option at the start of `buf`, returning the bytes after
    /// it. EOL consumes one byte (what follows is padding). A length byte
    /// that is missing, below 2, past the end (`Truncated`), or wrong for
    /// the kind (`Malformed`) is an error.
    pub fn parse(buf: &'a [u8]) -> Result<(&'a [u8], TcpOption<'a>), WireError> {
        let (&kind, rest) = buf.split_first().ok_or(WireError::Truncated)?;
        match kind {
            option_kind::END => return Ok((rest, TcpOption::EndOfList)),
            option_kind::NOP => return Ok((rest, TcpOption::NoOp)),
            _ => {}
        }
        let &len = rest.first().ok_or(WireError::Truncated)?;
        let len = len as usize;
        if len < 2 {
            return Err(WireError::Malformed);
        }
        if len > buf.len() {
            return Err(WireError::Truncated);
        }
        let data = &buf[2..len];
        let rest = &buf[len..];
        let opt = match kind {
            option_kind::MSS => match data {
                [a, b] => TcpOption::MaxSegmentSize(u16::from_be_bytes([*a, *b])),
                _ => return Err(WireError::Malformed),
            },
            option_kind::WINDOW_SCALE => match data {
                [s] => TcpOption::WindowScale(*s),
                _ => return Err(WireError::Malformed),
            },
            option_kind::SACK_PERMITTED => match data {
                [] => TcpOption::SackPermitted,
                _ => return Err(WireError::Malformed),
            },
            option_kind::SACK => {
                if data.is_empty() || !data.len().is_multiple_of(8) {
                    return Err(WireError::Malformed);
                }
                let mut blocks = [None; 3];
                for (slot, c) in blocks.iter_mut().zip(data.chunks_exact(8)) {
                    *slot = Some((get32(c, 0), get32(c, 4)));
                }
                TcpOption::SackRange(blocks)
            }
            option_kind::TIMESTAMP => {
                if data.len() != 8 {
                    return Err(WireError::Malformed);
                }
                TcpOption::Timestamp { tsval: get32(data, 0), tsecr: get32(data, 4) }
            }
            _ => TcpOption::Unknown { kind, data },
        };
        Ok((rest, opt))
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOp => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(b) => 2 + 8 * b.iter().flatten().count(),
            TcpOption::Timestamp { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buf`; returns the bytes written.
    /// Panics if `buf` is shorter than `buffer_len()` (or an `Unknown`
    /// option's data exceeds 253 bytes).
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let n = self.buffer_len();
        let b = &mut buf[..n];
        match *self {
            TcpOption::EndOfList => b[0] = option_kind::END,
            TcpOption::NoOp => b[0] = option_kind::NOP,
            TcpOption::MaxSegmentSize(m) => {
                b[..2].copy_from_slice(&[option_kind::MSS, 4]);
                put16(b, 2, m);
            }
            TcpOption::WindowScale(s) => b.copy_from_slice(&[option_kind::WINDOW_SCALE, 3, s]),
            TcpOption::SackPermitted => b.copy_from_slice(&[option_kind::SACK_PERMITTED, 2]),
            TcpOption::SackRange(blocks) => {
                b[0] = option_kind::SACK;
                b[1] = n as u8;
                for (i, (l, r)) in blocks.iter().flatten().enumerate() {
                    put32(b, 2 + 8 * i, *l);
                    put32(b, 6 + 8 * i, *r);
                }
            }
            TcpOption::Timestamp { tsval, tsecr } => {
                b[..2].copy_from_slice(&[option_kind::TIMESTAMP, 10]);
                put32(b, 2, tsval);
                put32(b, 6, tsecr);
            }
            TcpOption::Unknown { kind, data } => {
                b[0] = kind;
                b[1] = u8::try_from(n).expect("TCP option over 255 bytes");
                b[2..].copy_from_slice(data);
            }
        }
        n
    }
}

/// Iterator over an options area: yields each option, stops after
/// `EndOfList`, and on a malformed option yields the error once and stops.
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptions<'a> {
    pub fn new(opts: &'a [u8]) -> Self {
        TcpOptions { rest: opts }
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>, WireError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match TcpOption::parse(self.rest) {
            Ok((rest, opt)) => {
                self.rest = if opt == TcpOption::EndOfList { &[] } else { rest };
                Some(Ok(opt))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

// ---- Repr ----------------------------------------------------------------

/// A TCP header with the options the stack and pf look at.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub max_seg_size: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// SACK blocks, filled from the front.
    pub sack_ranges: [Option<(u32, u32)>; 3],
    /// (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
    pub payload_len: usize,
}

impl TcpRepr {
    /// Parses a checked segment. Unknown options are skipped; a malformed
    /// option is an error. The checksum is not verified here (it needs the
    /// addresses): use [`TcpPacket::verify_checksum`].
    pub fn parse<T: AsRef<[u8]>>(p: &TcpPacket<T>) -> Result<Self, WireError> {
        let mut r = TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq_number(),
            ack: p.ack_number(),
            flags: p.flags(),
            window: p.window(),
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload_len: p.payload().len(),
        };
        for opt in p.option_iter() {
            match opt? {
                TcpOption::MaxSegmentSize(m) => r.max_seg_size = Some(m),
                TcpOption::WindowScale(s) => r.window_scale = Some(s),
                TcpOption::SackPermitted => r.sack_permitted = true,
                TcpOption::SackRange(b) => r.sack_ranges = b,
                TcpOption::Timestamp { tsval, tsecr } => r.timestamp = Some((tsval, tsecr)),
                TcpOption::EndOfList | TcpOption::NoOp | TcpOption::Unknown { .. } => {}
            }
        }
        Ok(r)
    }

    /// How many SACK blocks fit beside the other options in 40 bytes.
    fn sack_blocks(&self) -> usize {
        let others = self.others_len();
        let room = (MAX_HEADER_LEN - MIN_HEADER_LEN).saturating_sub(others);
        let want = self.sack_ranges.iter().flatten().count();
        if want == 0 || room < 10 {
            0
        } else {
            want.min((room - 2) / 8)
        }
    }

    fn others_len(&self) -> usize {
        self.max_seg_size.map_or(0, |_| 4)
            + self.window_scale.map_or(0, |_| 3)
            + if self.sack_permitted { 2 } else { 0 }
            + self.timestamp.map_or(0, |_| 10)
    }

    fn options_len(&self) -> usize {
        let n = self.sack_blocks();
        self.others_len() + if n > 0 { 2 + 8 * n } else { 0 }
    }

    /// 20 plus the options, padded to a multiple of 4 (at most 60). SACK
    /// blocks that do not fit beside the other options are left out.
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + self.options_len().div_ceil(4) * 4
    }

    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes the header with its options (MSS, window scale, SACK
    /// permitted, timestamp, SACK; padded with EOL to 4 bytes) at the start
    /// of `buf`, checksum 0. Write the payload after `header_len()`, then
    /// call [`TcpPacket::fill_checksum`] on exactly header + payload.
    /// Panics if `buf` is shorter than `header_len()`.
    pub fn emit(&self, buf: &mut [u8]) {
        let hlen = self.header_len();
        let mut p = TcpPacket::new_unchecked(&mut buf[..hlen]);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq);
        p.set_ack_number(self.ack);
        p.set_header_len(hlen as u8);
        p.set_flags(self.flags);
        p.set_window(self.window);
        p.set_checksum(0);
        p.set_urgent(0);
        let o = p.options_mut();
        let mut at = 0;
        if let Some(m) = self.max_seg_size {
            at += TcpOption::MaxSegmentSize(m).emit(&mut o[at..]);
        }
        if let Some(s) = self.window_scale {
            at += TcpOption::WindowScale(s).emit(&mut o[at..]);
        }
        if self.sack_permitted {
            at += TcpOption::SackPermitted.emit(&mut o[at..]);
        }
        if let Some((tsval, tsecr)) = self.timestamp {
            at += TcpOption::Timestamp { tsval, tsecr }.emit(&mut o[at..]);
        }
        let n = self.sack_blocks();
        if n > 0 {
            let mut blocks = [None; 3];
            for (slot, b) in blocks.iter_mut().zip(self.sack_ranges.iter().flatten().take(n)) {
                *slot = Some(*b);
            }
            at += TcpOption::SackRange(blocks).emit(&mut o[at..]);
        }
        o[at..].fill(option_kind::END);
    }

    /// Writes header and `payload` and fills the checksum. Panics if
    /// `payload.len() != payload_len` or `buf` is too short.
    pub fn emit_with_payload(&self, buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) {
        assert_eq!(payload.len(), self.payload_len, "TCP payload length differs from the Repr's");
        let buf = &mut buf[..self.buffer_len()];
        self.emit(buf);
        buf[self.header_len()..].copy_from_slice(payload);
        TcpPacket::new_unchecked(buf).fill_checksum(src, dst);
    }

    /// [`emit_with_payload`](Self::emit_with_payload) over IPv6.
    pub fn emit_with_payload_v6(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) {
        assert_eq!(payload.len(), self.payload_len, "TCP payload length differs from the Repr's");
        let buf = &mut buf[..self.buffer_len()];
        self.emit(buf);
        buf[self.header_len()..].copy_from_slice(payload);
        TcpPacket::new_unchecked(buf).fill_checksum_v6(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);

    fn syn() -> TcpRepr {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: 0x01020304,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 64240,
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            sack_ranges: [None; 3],
            timestamp: Some((1000, 0)),
            payload_len: 0,
        }
    }

    #[test]
    fn flags_display_like_pf() {
        assert_eq!(TcpFlags::SYN.to_string(), "S");
        assert_eq!((TcpFlags::SYN | TcpFlags::ACK).to_string(), "SA");
        assert_eq!((TcpFlags::ACK | TcpFlags::FIN).to_string(), "FA");
        assert_eq!(TcpFlags::all().to_string(), "FSRPAUEW");
        assert_eq!(TcpFlags::empty().to_string(), "");
        assert_eq!("SA".parse::<TcpFlags>().unwrap(), TcpFlags::SYN | TcpFlags::ACK);
        assert!("SX".parse::<TcpFlags>().is_err());
        let f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.contains(TcpFlags::SYN) && !f.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert!(f.intersects(TcpFlags::SYN | TcpFlags::FIN));
        assert_eq!(f & !TcpFlags::ACK, TcpFlags::SYN);
    }

    #[test]
    fn reserved_bits_sit_between_offset_and_flags_and_set_header_len_clears_them() {
        let mut b = [0u8; 24];
        b[12] = 0x6b;
        b[13] = 0x12;
        let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!((p.header_len(), p.reserved(), p.flags()), (24, 0x0b, TcpFlags::SYN | TcpFlags::ACK));
        p.set_header_len(24);
        assert_eq!((p.header_len(), p.reserved(), p.flags()), (24, 0, TcpFlags::SYN | TcpFlags::ACK));
    }

    #[test]
    fn syn_with_options_round_trips() {
        let r = syn();
        // 4 + 3 + 2 + 10 = 19 -> padded to 20.
        assert_eq!(r.header_len(), 40);
        let mut b = [0u8; 40];
        r.emit_with_payload(&mut b, SRC, DST, &[]);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(10, 0, 1, 2)));
        assert_eq!(p.flags(), TcpFlags::SYN);
        assert_eq!(p.segment_len(), 1);
        assert_eq!(p.options()[19], 0);
        assert_eq!(TcpRepr::parse(&p).unwrap(), r);
    }

    #[test]
    fn linux_syn_options_parse() {
        // MSS 1460, SACK_PERM, TS, NOP, WS 7 — Linux's order.
        let o = [2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];
        let opts: Vec<_> = TcpOptions::new(&o).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            opts,
            [
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamp { tsval: 1, tsecr: 0 },
                TcpOption::NoOp,
                TcpOption::WindowScale(7),
            ]
        );
    }

    #[test]
    fn malformed_options_are_errors_not_panics() {
        assert_eq!(TcpOption::parse(&[2]).unwrap_err(), WireError::Truncated);
        assert_eq!(TcpOption::parse(&[2, 4, 5]).unwrap_err(), WireError::Truncated);
        assert_eq!(TcpOption::parse(&[2, 3, 5]).unwrap_err(), WireError::Malformed);
        assert_eq!(TcpOption::parse(&[30, 1]).unwrap_err(), WireError::Malformed);
        assert_eq!(TcpOption::parse(&[30, 0]).unwrap_err(), WireError::Malformed);
        assert_eq!(TcpOption::parse(&[5, 2]).unwrap_err(), WireError::Malformed);
        assert_eq!(TcpOption::parse(&[5, 9, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(), WireError::Malformed);
        assert_eq!(TcpOption::parse(&[8, 9, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(), WireError::Malformed);
        assert_eq!(TcpOption::parse(&[]).unwrap_err(), WireError::Truncated);
        let (rest, o) = TcpOption::parse(&[30, 3, 9, 1]).unwrap();
        assert_eq!(o, TcpOption::Unknown { kind: 30, data: &[9] });
        assert_eq!(rest, &[1]);
        // The iterator stops after the error and after EOL.
        let mut it = TcpOptions::new(&[1, 2, 1, 1]);
        assert_eq!(it.next(), Some(Ok(TcpOption::NoOp)));
        assert!(matches!(it.next(), Some(Err(_))));
        assert_eq!(it.next(), None);
        let v: Vec<_> = TcpOptions::new(&[0, 2, 1]).collect();
        assert_eq!(v, [Ok(TcpOption::EndOfList)]);
    }

    #[test]
    fn four_sack_blocks_keep_three() {
        let mut o = vec![5, 34];
        for i in 0..8u32 {
            o.extend_from_slice(&(i * 100).to_be_bytes());
        }
        let (_, opt) = TcpOption::parse(&o).unwrap();
        assert_eq!(opt, TcpOption::SackRange([Some((0, 100)), Some((200, 300)), Some((400, 500))]));
    }

    #[test]
    fn sack_blocks_that_do_not_fit_are_dropped() {
        let mut r = syn();
        r.sack_ranges = [Some((1, 2)), Some((3, 4)), Some((5, 6))];
        // 19 bytes of others leave 21: two blocks (18 bytes).
        assert_eq!(r.header_len(), 60);
        let mut b = [0u8; 60];
        r.emit(&mut b);
        let got = TcpRepr::parse(&TcpPacket::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(got.sack_ranges, [Some((1, 2)), Some((3, 4)), None]);
    }

    #[test]
    fn rst_without_options_is_20_bytes() {
        let r = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq: 0,
            ack: 5,
            flags: TcpFlags::RST | TcpFlags::ACK,
            window: 0,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload_len: 0,
        };
        assert_eq!(r.header_len(), 20);
        let mut b = [0u8; 20];
        r.emit(&mut b);
        TcpPacket::new_unchecked(&mut b[..]).fill_checksum(SRC, DST);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(SRC, DST));
        assert_eq!(p.header_len(), 20);
        assert_eq!(TcpRepr::parse(&p).unwrap(), r);
    }

    #[test]
    fn bad_data_offsets_are_rejected() {
        let mut b = [0u8; 24];
        b[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
        b[12] = 0x70;
        assert_eq!(TcpPacket::new_checked(&b[..]).unwrap_err(), WireError::Truncated);
        b[12] = 0x60;
        assert!(TcpPacket::new_checked(&b[..]).is_ok());
        assert_eq!(TcpPacket::new_checked(&b[..19]).unwrap_err(), WireError::Truncated);
    }

    fn arb_repr() -> impl Strategy<Value = TcpRepr> {
        (
            (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>(), any::<u8>(), any::<u16>()),
            (
                proptest::option::of(any::<u16>()),
                proptest::option::of(any::<u8>()),
                any::<bool>(),
                proptest::collection::vec(any::<(u32, u32)>(), 0..=3),
                proptest::option::of(any::<(u32, u32)>()),
                0usize..64,
            ),
        )
            .prop_map(|((sp, dp, seq, ack, fl, win), (mss, ws, sp_ok, sacks, ts, plen))| {
                let mut sack_ranges = [None; 3];
                for (s, v) in sack_ranges.iter_mut().zip(sacks) {
                    *s = Some(v);
                }
                TcpRepr {
                    src_port: sp,
                    dst_port: dp,
                    seq,
                    ack,
                    flags: TcpFlags(fl),
                    window: win,
                    max_seg_size: mss,
                    window_scale: ws,
                    sack_permitted: sp_ok,
                    sack_ranges,
                    timestamp: ts,
                    payload_len: plen,
                }
            })
    }

    /// Linux 6.x SYN fd00::a.49376 -> fd00::b.8080 as captured; the
    /// checksum field held the offload's partial sum, so it is replaced by
    /// the value tcpdump computed (0x3b01).
    const LINUX_SYN_V6: [u8; 40] = [
        0xc0, 0xe0, 0x1f, 0x90, 0x25, 0x28, 0x07, 0x85, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfd, 0x20, 0x3b, 0x01,
        0x00, 0x00, 0x02, 0x04, 0x05, 0xa0, 0x04, 0x02, 0x08, 0x0a, 0xde, 0x1b, 0x2a, 0x9f, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x03, 0x03, 0x0a,
    ];

    #[test]
    fn linux_syn_over_ipv6_verifies_with_the_v6_pseudo_header() {
        let (s, d): (Ipv6Addr, Ipv6Addr) = ("fd00::a".parse().unwrap(), "fd00::b".parse().unwrap());
        let p = TcpPacket::new_checked(&LINUX_SYN_V6[..]).unwrap();
        assert!(p.verify_checksum_v6(s, d));
        assert!(!p.verify_checksum_v6(s, "fd00::c".parse().unwrap()));
        let r = TcpRepr::parse(&p).unwrap();
        assert_eq!((r.src_port, r.dst_port, r.seq, r.flags), (49376, 8080, 623380357, TcpFlags::SYN));
        assert_eq!((r.max_seg_size, r.window_scale, r.sack_permitted), (Some(1440), Some(10), true));
        let mut b = LINUX_SYN_V6;
        let mut q = TcpPacket::new_checked(&mut b[..]).unwrap();
        q.set_checksum(0xfa44);
        q.fill_checksum_v6(s, d);
        assert_eq!(q.checksum(), 0x3b01);
        // Our own emit (options in our order) verifies too.
        let mut out = vec![0u8; r.buffer_len()];
        r.emit_with_payload_v6(&mut out, s, d, &[]);
        let o = TcpPacket::new_checked(&out[..]).unwrap();
        assert!(o.verify_checksum_v6(s, d));
        assert_eq!(TcpRepr::parse(&o).unwrap(), r);
    }

    proptest! {
        #[test]
        fn repr_round_trips_over_ipv6(r in arb_repr(), s in any::<u128>(), d in any::<u128>()) {
            let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            let payload: Vec<u8> = (0..r.payload_len).map(|i| i as u8).collect();
            let mut b = vec![0u8; r.buffer_len()];
            r.emit_with_payload_v6(&mut b, s, d, &payload);
            let p = TcpPacket::new_checked(&b[..]).unwrap();
            prop_assert!(p.verify_checksum_v6(s, d));
        }

        #[test]
        fn repr_round_trips(r in arb_repr(), s in any::<u32>(), d in any::<u32>()) {
            let payload: Vec<u8> = (0..r.payload_len).map(|i| i as u8).collect();
            let mut b = vec![0u8; r.buffer_len()];
            r.emit_with_payload(&mut b, s.into(), d.into(), &payload);
            let p = TcpPacket::new_checked(&b[..]).unwrap();
            prop_assert!(p.verify_checksum(s.into(), d.into()));
            prop_assert!(r.header_len() <= MAX_HEADER_LEN && r.header_len() % 4 == 0);
            let got = TcpRepr::parse(&p).unwrap();
            // SACK blocks that did not fit are the only loss.
            let mut want = r;
            let n = r.sack_blocks();
            for slot in want.sack_ranges.iter_mut().skip(n) {
                *slot = None;
            }
            prop_assert_eq!(got, want);
            prop_assert_eq!(p.payload(), &payload[..]);
        }

        #[test]
        fn option_round_trips(o in prop_oneof![
            Just(TcpOption::NoOp),
            any::<u16>().prop_map(TcpOption::MaxSegmentSize),
            any::<u8>().prop_map(TcpOption::WindowScale),
            Just(TcpOption::SackPermitted),
            any::<(u32, u32)>().prop_map(|(tsval, tsecr)| TcpOption::Timestamp { tsval, tsecr }),
            any::<[(u32, u32); 3]>().prop_map(|b| TcpOption::SackRange([Some(b[0]), Some(b[1]), Some(b[2])])),
        ]) {
            let mut b = [0u8; 40];
            let n = o.emit(&mut b);
            prop_assert_eq!(n, o.buffer_len());
            let (rest, got) = TcpOption::parse(&b[..n]).unwrap();
            prop_assert!(rest.is_empty());
            prop_assert_eq!(got, o);
        }

        #[test]
        fn random_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..80), off in 5u8..16) {
            if b.len() > 12 && off as usize * 4 <= b.len() {
                b[12] = off << 4; // mostly valid offsets, random options
            }
            if let Ok(p) = TcpPacket::new_checked(&b[..]) {
                let _ = (p.payload().len(), p.verify_checksum(SRC, DST), p.flags().to_string());
                for o in p.option_iter() {
                    let _ = o;
                }
                let _ = TcpRepr::parse(&p);
            }
        }

        #[test]
        fn option_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..50)) {
            let mut n = 0;
            for o in TcpOptions::new(&b) {
                n += 1;
                prop_assert!(n <= b.len());
                let _ = o;
            }
        }
    }
}
