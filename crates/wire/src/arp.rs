//! ARP (RFC 826) for Ethernet hardware and IPv4 protocol addresses only.

use core::fmt;
use std::net::Ipv4Addr;

use crate::ethernet::{EtherType, MacAddr};
use crate::{get16, get_ip, put16, put_ip, WireError};

/// Length of an Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = 28;

/// Hardware type Ethernet (RFC 826 `ar$hrd`).
pub const HTYPE_ETHERNET: u16 = 1;

mod field {
    use core::ops::Range;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: usize = 14;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: usize = 24;
}

/// The ARP opcode.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(v: u16) -> Self {
        match v {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            v => ArpOperation::Unknown(v),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(o: ArpOperation) -> u16 {
        match o {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(v) => v,
        }
    }
}

impl fmt::Display for ArpOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArpOperation::Request => f.write_str("request"),
            ArpOperation::Reply => f.write_str("reply"),
            ArpOperation::Unknown(v) => write!(f, "op {v}"),
        }
    }
}

/// A view of an Ethernet/IPv4 ARP packet. Trailing bytes (Ethernet padding)
/// are ignored.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const fn new_unchecked(buf: T) -> Self {
        ArpPacket { buf }
    }

    /// Accepts only hardware type Ethernet and protocol type IPv4 (else
    /// `Unsupported`) with address lengths 6 and 4 (else `Malformed`), and at
    /// least 28 bytes (else `Truncated`).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < field::OPER {
            return Err(WireError::Truncated);
        }
        if get16(b, field::HTYPE) != HTYPE_ETHERNET || get16(b, field::PTYPE) != EtherType::IPV4.0 {
            return Err(WireError::Unsupported);
        }
        if b[field::HLEN] != 6 || b[field::PLEN] != 4 {
            return Err(WireError::Malformed);
        }
        if b.len() < ARP_LEN {
            return Err(WireError::Truncated);
        }
        Ok(ArpPacket { buf })
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn hardware_type(&self) -> u16 {
        get16(self.buf.as_ref(), field::HTYPE)
    }

    pub fn protocol_type(&self) -> EtherType {
        EtherType(get16(self.buf.as_ref(), field::PTYPE))
    }

    pub fn hardware_len(&self) -> u8 {
        self.buf.as_ref()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buf.as_ref()[field::PLEN]
    }

    pub fn operation(&self) -> ArpOperation {
        get16(self.buf.as_ref(), field::OPER).into()
    }

    pub fn sender_hw(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[field::SHA]);
        MacAddr(m)
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        get_ip(self.buf.as_ref(), field::SPA)
    }

    pub fn target_hw(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[field::THA]);
        MacAddr(m)
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        get_ip(self.buf.as_ref(), field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    pub fn set_operation(&mut self, op: ArpOperation) {
        put16(self.buf.as_mut(), field::OPER, op.into());
    }
    pub fn set_sender_hw(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::SHA].copy_from_slice(&m.0);
    }
    pub fn set_sender_ip(&mut self, a: Ipv4Addr) {
        put_ip(self.buf.as_mut(), field::SPA, a);
    }
    pub fn set_target_hw(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::THA].copy_from_slice(&m.0);
    }
    pub fn set_target_ip(&mut self, a: Ipv4Addr) {
        put_ip(self.buf.as_mut(), field::TPA, a);
    }
}

/// An Ethernet/IPv4 ARP message.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub sender_hw: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_hw: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Bytes [`emit`](Self::emit) writes.
    pub const LEN: usize = ARP_LEN;

    /// Every opcode parses; unknown ones as `ArpOperation::Unknown` (the
    /// caller decides; RFC 826 updates the cache before looking at it).
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<Self, WireError> {
        Ok(ArpRepr {
            operation: p.operation(),
            sender_hw: p.sender_hw(),
            sender_ip: p.sender_ip(),
            target_hw: p.target_hw(),
            target_ip: p.target_ip(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        ARP_LEN
    }

    /// Writes the 28-byte packet at the start of `buf`; panics if shorter.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..ARP_LEN];
        put16(b, field::HTYPE, HTYPE_ETHERNET);
        put16(b, field::PTYPE, EtherType::IPV4.0);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        let mut p = ArpPacket::new_unchecked(b);
        p.set_operation(self.operation);
        p.set_sender_hw(self.sender_hw);
        p.set_sender_ip(self.sender_ip);
        p.set_target_hw(self.target_hw);
        p.set_target_ip(self.target_ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // A who-has 10.0.0.2 tell 10.0.0.1 as seen on the wire.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype ptype hlen plen op
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 10, 0, 0, 1, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 0, 0, 2, // target
    ];

    #[test]
    fn parses_a_request() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        let r = ArpRepr::parse(&p).unwrap();
        assert_eq!(
            r,
            ArpRepr {
                operation: ArpOperation::Request,
                sender_hw: MacAddr([2, 0, 0, 0, 0, 1]),
                sender_ip: Ipv4Addr::new(10, 0, 0, 1),
                target_hw: MacAddr::ZERO,
                target_ip: Ipv4Addr::new(10, 0, 0, 2),
            }
        );
        let mut out = [0u8; 28];
        r.emit(&mut out);
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn padding_after_the_packet_is_ignored() {
        let mut b = [0u8; 46];
        b[..28].copy_from_slice(&REQUEST);
        assert!(ArpPacket::new_checked(&b[..]).is_ok());
    }

    #[test]
    fn non_ethernet_ipv4_is_unsupported() {
        let mut b = REQUEST;
        b[1] = 6; // IEEE 802
        assert_eq!(ArpPacket::new_checked(&b[..]).unwrap_err(), WireError::Unsupported);
        let mut b = REQUEST;
        b[2] = 0x86; // IPv6 protocol type
        b[3] = 0xdd;
        assert_eq!(ArpPacket::new_checked(&b[..]).unwrap_err(), WireError::Unsupported);
    }

    #[test]
    fn wrong_address_lengths_are_malformed() {
        let mut b = REQUEST;
        b[4] = 8;
        assert_eq!(ArpPacket::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
        let mut b = REQUEST;
        b[5] = 16;
        assert_eq!(ArpPacket::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
    }

    #[test]
    fn short_packets_are_truncated() {
        assert_eq!(ArpPacket::new_checked(&REQUEST[..27]).unwrap_err(), WireError::Truncated);
        assert_eq!(ArpPacket::new_checked(&REQUEST[..3]).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn unknown_opcode_is_kept() {
        let mut b = REQUEST;
        b[7] = 9;
        let r = ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.operation, ArpOperation::Unknown(9));
    }

    fn arb_repr() -> impl Strategy<Value = ArpRepr> {
        (any::<u16>(), any::<[u8; 6]>(), any::<u32>(), any::<[u8; 6]>(), any::<u32>()).prop_map(
            |(op, sh, si, th, ti)| ArpRepr {
                operation: op.into(),
                sender_hw: MacAddr(sh),
                sender_ip: si.into(),
                target_hw: MacAddr(th),
                target_ip: ti.into(),
            },
        )
    }

    proptest! {
        #[test]
        fn repr_round_trips(r in arb_repr()) {
            let mut b = [0u8; ArpRepr::LEN];
            r.emit(&mut b);
            let p = ArpPacket::new_checked(&b[..]).unwrap();
            prop_assert_eq!(ArpRepr::parse(&p).unwrap(), r);
        }

        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = ArpPacket::new_checked(&b[..]) {
                let _ = ArpRepr::parse(&p);
            }
        }

        #[test]
        fn random_bodies_with_valid_prefix_parse(tail in proptest::collection::vec(any::<u8>(), 22..40)) {
            let mut b = REQUEST[..6].to_vec();
            b.extend_from_slice(&tail);
            let p = ArpPacket::new_checked(&b[..]).unwrap();
            prop_assert!(ArpRepr::parse(&p).is_ok());
        }
    }
}
