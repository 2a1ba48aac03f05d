//! The routing header (RFC 8200 §4.4, RFC 5095) and the fragment header
//! (RFC 8200 §4.5).

use super::{FRAGMENT_HEADER_LEN, FRAG_OFFSET_OFFSET, ROUTING_TYPE_OFFSET, SEGMENTS_LEFT_OFFSET};
use crate::ipv4::IpProtocol;
use crate::{get16, get32, put16, put32, WireError};

/// Routing types (IANA "Routing Types").
pub mod routing_type {
    /// Type 0, source route: deprecated, must be treated as unrecognized
    /// (RFC 5095 §3).
    pub const SOURCE_ROUTE: u8 = 0;
    /// Type 2, Mobile IPv6 (RFC 6275).
    pub const TYPE2: u8 = 2;
    /// RPL source route (RFC 6554).
    pub const RPL: u8 = 3;
    /// Segment routing header (RFC 8754).
    pub const SEGMENT_ROUTING: u8 = 4;
}

/// A routing header (RFC 8200 §4.4): next header, length, routing type,
/// segments left, type-specific data.
#[derive(Debug, Clone)]
pub struct RoutingHeader<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> RoutingHeader<T> {
    pub const fn new_unchecked(buf: T) -> Self {
        RoutingHeader { buf }
    }

    /// Checks the whole header ((length + 1) × 8 ≥ 8 bytes) is in the buffer.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < 8 || (b[1] as usize + 1) * 8 > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(RoutingHeader { buf })
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buf.as_ref()[0])
    }

    pub fn header_len(&self) -> usize {
        (self.buf.as_ref()[1] as usize + 1) * 8
    }

    pub fn routing_type(&self) -> u8 {
        self.buf.as_ref()[ROUTING_TYPE_OFFSET]
    }

    pub fn segments_left(&self) -> u8 {
        self.buf.as_ref()[SEGMENTS_LEFT_OFFSET]
    }

    /// Type 0, deprecated by RFC 5095. OpenBSD refuses it whatever its
    /// segments left (see [`HeaderChain::bad_routing`]).
    pub fn is_type0(&self) -> bool {
        self.routing_type() == routing_type::SOURCE_ROUTE
    }

    /// The type-specific data (after the 4 fixed bytes).
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[4..self.header_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RoutingHeader<T> {
    /// Segments left minus one, as a node that processes the header does.
    pub fn set_segments_left(&mut self, n: u8) {
        self.buf.as_mut()[SEGMENTS_LEFT_OFFSET] = n;
    }
}

/// A routing header, borrowing its type-specific data.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct RoutingRepr<'a> {
    pub next_header: IpProtocol,
    pub routing_type: u8,
    pub segments_left: u8,
    /// 4 + 8k bytes.
    pub data: &'a [u8],
}

impl<'a> RoutingRepr<'a> {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(h: &RoutingHeader<&'a T>) -> Result<Self, WireError> {
        let b: &'a [u8] = T::as_ref(h.buf);
        Ok(RoutingRepr {
            next_header: h.next_header(),
            routing_type: h.routing_type(),
            segments_left: h.segments_left(),
            data: &b[4..h.header_len()],
        })
    }

    pub fn header_len(&self) -> usize {
        4 + self.data.len()
    }

    /// Panics if `data.len()` is not 4 + 8k or `buf` is too short.
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.header_len();
        assert!(len.is_multiple_of(8) && len <= 2048, "routing data must be 4 + 8k bytes");
        buf[0] = self.next_header.0;
        buf[1] = (len / 8 - 1) as u8;
        buf[ROUTING_TYPE_OFFSET] = self.routing_type;
        buf[SEGMENTS_LEFT_OFFSET] = self.segments_left;
        buf[4..len].copy_from_slice(self.data);
    }
}

// ---- fragment header ---------------------------------------------------------

const FRAG_MASK: u16 = 0xFFF8;
const FLAG_M: u16 = 0x0001;

/// A fragment header (RFC 8200 §4.5): next header, reserved, 13-bit offset
/// in 8-byte units + 2 reserved bits + M, 32-bit identification.
#[derive(Debug, Clone)]
pub struct FragmentHeader<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    pub const fn new_unchecked(buf: T) -> Self {
        FragmentHeader { buf }
    }

    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < FRAGMENT_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(FragmentHeader { buf })
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buf.as_ref()[0])
    }

    /// Fragment offset in bytes (the field × 8).
    pub fn frag_offset(&self) -> u16 {
        get16(self.buf.as_ref(), FRAG_OFFSET_OFFSET) & FRAG_MASK
    }

    pub fn more_frags(&self) -> bool {
        get16(self.buf.as_ref(), FRAG_OFFSET_OFFSET) & FLAG_M != 0
    }

    pub fn ident(&self) -> u32 {
        get32(self.buf.as_ref(), 4)
    }

    /// Offset 0 and no more fragments: an atomic fragment (RFC 6946: the
    /// whole packet; processed in isolation, never reassembled with others).
    pub fn is_atomic(&self) -> bool {
        self.frag_offset() == 0 && !self.more_frags()
    }
}

/// A fragment header.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct FragmentRepr {
    pub next_header: IpProtocol,
    /// In bytes, a multiple of 8.
    pub frag_offset: u16,
    pub more_frags: bool,
    pub ident: u32,
}

impl FragmentRepr {
    pub fn parse<T: AsRef<[u8]>>(h: &FragmentHeader<T>) -> Result<Self, WireError> {
        Ok(FragmentRepr {
            next_header: h.next_header(),
            frag_offset: h.frag_offset(),
            more_frags: h.more_frags(),
            ident: h.ident(),
        })
    }

    pub const fn header_len(&self) -> usize {
        FRAGMENT_HEADER_LEN
    }

    pub fn is_atomic(&self) -> bool {
        self.frag_offset == 0 && !self.more_frags
    }

    /// Writes the 8 bytes (reserved fields zero). Panics if `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = self.next_header.0;
        buf[1] = 0;
        put16(buf, FRAG_OFFSET_OFFSET, (self.frag_offset & FRAG_MASK) | self.more_frags as u16);
        put32(buf, 4, self.ident);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frag(nh: u8, off: u16, m: bool, id: u32) -> [u8; 8] {
        let mut f = [0u8; 8];
        FragmentRepr { next_header: IpProtocol(nh), frag_offset: off, more_frags: m, ident: id }.emit(&mut f);
        f
    }

    #[test]
    fn fragment_header_fields() {
        let f = frag(17, 1448, true, 0xdeadbeef);
        assert_eq!(f, [17, 0, 0x05, 0xa9, 0xde, 0xad, 0xbe, 0xef]);
        let h = FragmentHeader::new_checked(&f[..]).unwrap();
        assert_eq!((h.frag_offset(), h.more_frags(), h.ident(), h.is_atomic()), (1448, true, 0xdeadbeef, false));
        assert!(FragmentHeader::new_checked(&frag(17, 0, false, 1)[..]).unwrap().is_atomic());
        assert_eq!(FragmentHeader::new_checked(&f[..7]).unwrap_err(), WireError::Truncated);
        // The two reserved bits are ignored.
        let mut g = f;
        g[3] |= 0x06;
        assert_eq!(FragmentRepr::parse(&FragmentHeader::new_checked(&g[..]).unwrap()).unwrap().frag_offset, 1448);
    }

    proptest! {
        #[test]
        fn fragment_repr_round_trips(nh in any::<u8>(), off in 0u16..8192, m in any::<bool>(), id in any::<u32>()) {
            let r = FragmentRepr { next_header: IpProtocol(nh), frag_offset: off * 8, more_frags: m, ident: id };
            let mut b = [0u8; 8];
            r.emit(&mut b);
            prop_assert_eq!(FragmentRepr::parse(&FragmentHeader::new_checked(&b[..]).unwrap()).unwrap(), r);
        }
    }
}
