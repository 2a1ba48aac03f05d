//! UDP (RFC 768) over IPv4 and IPv6 (RFC 8200 §8.1: the checksum is
//! mandatory over IPv6).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::ipv4::IpProtocol;
use crate::{get16, put16, WireError};

pub const HEADER_LEN: usize = 8;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LEN: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A view of a UDP datagram. The datagram is the first `len()` bytes of the
/// buffer; bytes after it are ignored.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// No checks. `payload` and the checksum methods clamp the length field
    /// to the buffer, so only the header accessors can panic.
    pub const fn new_unchecked(buf: T) -> Self {
        UdpPacket { buf }
    }

    /// Checks the header is present (`Truncated`), the length field is at
    /// least 8 (`Malformed`) and within the buffer (`Truncated`).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = get16(b, field::LEN) as usize;
        if len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(UdpPacket { buf })
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn src_port(&self) -> u16 {
        get16(self.buf.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        get16(self.buf.as_ref(), field::DST_PORT)
    }

    /// The length field (header + payload).
    pub fn len(&self) -> u16 {
        get16(self.buf.as_ref(), field::LEN)
    }

    /// The length field is zero (never true after `new_checked`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn checksum(&self) -> u16 {
        get16(self.buf.as_ref(), field::CHECKSUM)
    }

    /// The datagram's end: the length field, clamped to the buffer.
    fn end(&self) -> usize {
        let b = self.buf.as_ref();
        (self.len() as usize).clamp(HEADER_LEN.min(b.len()), b.len())
    }

    pub fn payload(&self) -> &[u8] {
        let end = self.end();
        &self.buf.as_ref()[HEADER_LEN.min(end)..end]
    }

    /// Verifies the checksum with the IPv4 pseudo-header. A zero checksum
    /// means "none" and verifies.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let d = &self.buf.as_ref()[..self.end()];
        let ph = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP.0, d.len() as u16);
        checksum::finish(checksum::combine(ph, checksum::sum(d))) == 0
    }

    /// Verifies the checksum with the IPv6 pseudo-header (`dst` is the final
    /// destination). A zero checksum does not verify: RFC 8200 §8.1 makes
    /// the UDP checksum mandatory over IPv6 and has receivers discard it.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let d = &self.buf.as_ref()[..self.end()];
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP.0, d.len() as u32);
        checksum::finish(checksum::combine(ph, checksum::sum(d))) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), field::SRC_PORT, p);
    }
    pub fn set_dst_port(&mut self, p: u16) {
        put16(self.buf.as_mut(), field::DST_PORT, p);
    }
    pub fn set_len(&mut self, len: u16) {
        put16(self.buf.as_mut(), field::LEN, len);
    }
    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buf.as_mut(), field::CHECKSUM, c);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.end();
        &mut self.buf.as_mut()[HEADER_LEN.min(end)..end]
    }
    /// Computes the checksum over the first `len()` bytes with the IPv4
    /// pseudo-header; a computed zero is sent as 0xFFFF (RFC 768).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let end = self.end();
        let d = &self.buf.as_ref()[..end];
        let ph = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP.0, end as u16);
        let c = checksum::finish(checksum::combine(ph, checksum::sum(d)));
        self.set_checksum(if c == 0 { 0xFFFF } else { c });
    }
    /// [`fill_checksum`](Self::fill_checksum) with the IPv6 pseudo-header;
    /// a computed zero is sent as 0xFFFF (RFC 8200 §8.1).
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let end = self.end();
        let d = &self.buf.as_ref()[..end];
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP.0, end as u32);
        let c = checksum::finish(checksum::combine(ph, checksum::sum(d)));
        self.set_checksum(if c == 0 { 0xFFFF } else { c });
    }
}

/// A UDP header.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl UdpRepr {
    /// Parses a checked datagram. The checksum is not verified here (it
    /// needs the addresses): use [`UdpPacket::verify_checksum`].
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> Result<Self, WireError> {
        Ok(UdpRepr { src_port: p.src_port(), dst_port: p.dst_port(), payload_len: p.len() as usize - HEADER_LEN })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the 8-byte header (length = 8 + payload_len, checksum 0) at
    /// the start of `buf`. Write the payload, then call
    /// [`UdpPacket::fill_checksum`] — or use [`emit_with_payload`](Self::emit_with_payload).
    /// Panics if `buf` is shorter than 8 or the length exceeds 65535.
    pub fn emit(&self, buf: &mut [u8]) {
        let len = u16::try_from(self.buffer_len()).expect("UDP length over 65535");
        let mut p = UdpPacket::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(len);
        p.set_checksum(0);
    }

    /// Writes header and `payload` and fills the checksum. Panics if
    /// `payload.len() != payload_len` or `buf` is shorter than
    /// `buffer_len()`.
    pub fn emit_with_payload(&self, buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) {
        assert_eq!(payload.len(), self.payload_len, "UDP payload length differs from the Repr's");
        let buf = &mut buf[..self.buffer_len()];
        self.emit(buf);
        buf[HEADER_LEN..].copy_from_slice(payload);
        UdpPacket::new_unchecked(buf).fill_checksum(src, dst);
    }

    /// [`emit_with_payload`](Self::emit_with_payload) over IPv6.
    pub fn emit_with_payload_v6(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) {
        assert_eq!(payload.len(), self.payload_len, "UDP payload length differs from the Repr's");
        let buf = &mut buf[..self.buffer_len()];
        self.emit(buf);
        buf[HEADER_LEN..].copy_from_slice(payload);
        UdpPacket::new_unchecked(buf).fill_checksum_v6(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);

    #[test]
    fn emit_with_payload_verifies_and_parses() {
        let r = UdpRepr { src_port: 5353, dst_port: 53, payload_len: 5 };
        let mut b = [0u8; 13];
        r.emit_with_payload(&mut b, SRC, DST, b"hello");
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(192, 168, 1, 3)));
        assert_eq!(p.payload(), b"hello");
        assert_eq!(UdpRepr::parse(&p).unwrap(), r);
    }

    #[test]
    fn known_datagram_checksum() {
        // 10.0.0.1:1024 -> 10.0.0.2:53, payload "ab": computed by hand.
        // pseudo: 0a00+0001+0a00+0002+0011+000a = 0x141e
        // header: 0400+0035+000a = 0x043f; payload 0x6162.
        // sum = 0x141e+0x043f+0x6162 = 0x79bf -> checksum 0x8640.
        let r = UdpRepr { src_port: 1024, dst_port: 53, payload_len: 2 };
        let mut b = [0u8; 10];
        r.emit_with_payload(&mut b, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), b"ab");
        assert_eq!(UdpPacket::new_checked(&b[..]).unwrap().checksum(), 0x8640);
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut b = [0u8; 12];
        UdpRepr { src_port: 1, dst_port: 2, payload_len: 4 }.emit(&mut b);
        b[8] = 0xff;
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose a payload word that makes the sum 0xFFFF.
        let mut b = [0u8; 10];
        UdpRepr { src_port: 0, dst_port: 0, payload_len: 2 }.emit(&mut b);
        let ph = checksum::pseudo_header_v4(SRC, DST, 17, 10);
        let partial = checksum::combine(ph, checksum::sum(&b));
        let w = !(partial as u16);
        b[8..10].copy_from_slice(&w.to_be_bytes());
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(SRC, DST);
        assert_eq!(p.checksum(), 0xFFFF);
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn length_field_is_checked() {
        let mut b = [0u8; 12];
        UdpRepr { src_port: 1, dst_port: 2, payload_len: 4 }.emit(&mut b);
        assert!(UdpPacket::new_checked(&b[..]).is_ok());
        assert_eq!(UdpPacket::new_checked(&b[..11]).unwrap_err(), WireError::Truncated);
        assert_eq!(UdpPacket::new_checked(&b[..7]).unwrap_err(), WireError::Truncated);
        b[5] = 7;
        assert_eq!(UdpPacket::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
        // Trailing bytes beyond the length field are not payload.
        b[5] = 9;
        assert_eq!(UdpPacket::new_checked(&b[..]).unwrap().payload().len(), 1);
    }

    #[test]
    fn known_datagram_checksum_over_ipv6() {
        // fe80::1:1024 -> fe80::2:53, payload "ab", by hand:
        // pseudo: fe80+0001+fe80+0002+000a+0011 = 0x1fd1e -> 0xfd1f
        // header: 0400+0035+000a = 0x043f; payload 0x6162.
        // 0xfd1f+0x043f+0x6162 = 0x162c0 -> 0x62c1 -> checksum 0x9d3e.
        let (s, d): (Ipv6Addr, Ipv6Addr) = ("fe80::1".parse().unwrap(), "fe80::2".parse().unwrap());
        let r = UdpRepr { src_port: 1024, dst_port: 53, payload_len: 2 };
        let mut b = [0u8; 10];
        r.emit_with_payload_v6(&mut b, s, d, b"ab");
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.checksum(), 0x9d3e);
        assert!(p.verify_checksum_v6(s, d));
        assert!(!p.verify_checksum_v6(d, "fe80::3".parse().unwrap()));
    }

    #[test]
    fn linux_datagram_over_ipv6_gets_the_checksum_tcpdump_computed() {
        // Linux fd00::a.35646 -> fd00::b.53 "hello": tcpdump's sum 0x3678.
        let (s, d): (Ipv6Addr, Ipv6Addr) = ("fd00::a".parse().unwrap(), "fd00::b".parse().unwrap());
        let r = UdpRepr { src_port: 35646, dst_port: 53, payload_len: 5 };
        let mut b = [0u8; 13];
        r.emit_with_payload_v6(&mut b, s, d, b"hello");
        assert_eq!(&b[..8], &[0x8b, 0x3e, 0x00, 0x35, 0x00, 0x0d, 0x36, 0x78]);
    }

    #[test]
    fn zero_checksum_is_invalid_over_ipv6() {
        let mut b = [0u8; 12];
        UdpRepr { src_port: 1, dst_port: 2, payload_len: 4 }.emit(&mut b);
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum_v6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST));
    }

    proptest! {
        #[test]
        fn repr_round_trips_over_ipv6(sp in any::<u16>(), dp in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..100),
                                      s in any::<u128>(), d in any::<u128>()) {
            let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            let r = UdpRepr { src_port: sp, dst_port: dp, payload_len: payload.len() };
            let mut b = vec![0u8; r.buffer_len()];
            r.emit_with_payload_v6(&mut b, s, d, &payload);
            let p = UdpPacket::new_checked(&b[..]).unwrap();
            prop_assert!(p.verify_checksum_v6(s, d));
            prop_assert_eq!(UdpRepr::parse(&p).unwrap(), r);
        }

        #[test]
        fn repr_round_trips(sp in any::<u16>(), dp in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..100),
                            s in any::<u32>(), d in any::<u32>()) {
            let r = UdpRepr { src_port: sp, dst_port: dp, payload_len: payload.len() };
            let mut b = vec![0u8; r.buffer_len()];
            r.emit_with_payload(&mut b, s.into(), d.into(), &payload);
            let p = UdpPacket::new_checked(&b[..]).unwrap();
            prop_assert!(p.verify_checksum(s.into(), d.into()));
            prop_assert_ne!(p.checksum(), 0);
            prop_assert_eq!(UdpRepr::parse(&p).unwrap(), r);
            prop_assert_eq!(p.payload(), &payload[..]);
        }

        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let u = UdpPacket::new_unchecked(&b[..]);
            if b.len() >= HEADER_LEN {
                let _ = (u.payload().len(), u.verify_checksum(SRC, DST));
            }
            if let Ok(p) = UdpPacket::new_checked(&b[..]) {
                let _ = (p.payload().len(), p.verify_checksum(SRC, DST));
                let _ = UdpRepr::parse(&p);
            }
        }
    }
}
