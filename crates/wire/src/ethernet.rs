use core::fmt;

use crate::{get16, put16, WireError};

/// A 48-bit Ethernet (EUI-48) address.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
    /// Group bit set (broadcast included).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && *self != Self::ZERO
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl MacAddr {
    /// Parses "aa:bb:cc:dd:ee:ff" (also with '-' separators).
    pub fn parse(s: &str) -> Result<MacAddr, WireError> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split([':', '-']) {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return Err(WireError::Malformed);
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| WireError::Malformed)?;
            n += 1;
        }
        if n != 6 {
            return Err(WireError::Malformed);
        }
        Ok(MacAddr(out))
    }

    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl core::str::FromStr for MacAddr {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MacAddr::parse(s)
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

/// An Ethernet II type field.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(0x0800);
    pub const ARP: EtherType = EtherType(0x0806);
    pub const VLAN: EtherType = EtherType(0x8100);
    pub const IPV6: EtherType = EtherType(0x86DD);
    /// 802.1ad service tag (QinQ); not decoded by [`EthernetFrame`].
    pub const QINQ: EtherType = EtherType(0x88A8);
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EtherType::IPV4 => f.write_str("IPv4"),
            EtherType::ARP => f.write_str("ARP"),
            EtherType::VLAN => f.write_str("802.1Q"),
            EtherType::IPV6 => f.write_str("IPv6"),
            EtherType(t) => write!(f, "0x{t:04x}"),
        }
    }
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Untagged Ethernet II header length.
pub const HEADER_LEN: usize = 14;
/// Header length with one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = 18;

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const TYPE: usize = 12;
    pub const TCI: usize = 14;
    pub const INNER_TYPE: usize = 16;
}

/// A view of an Ethernet II frame, optionally with one 802.1Q tag.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// No checks: accessors panic if the buffer is shorter than the header.
    pub const fn new_unchecked(buf: T) -> Self {
        EthernetFrame { buf }
    }

    /// Checks that the whole header (including a VLAN tag) is present.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if get16(b, field::TYPE) == EtherType::VLAN.0 && b.len() < VLAN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(EthernetFrame { buf })
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    fn tagged(&self) -> bool {
        get16(self.buf.as_ref(), field::TYPE) == EtherType::VLAN.0
    }

    /// 14, or 18 with an 802.1Q tag.
    pub fn header_len(&self) -> usize {
        if self.tagged() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    pub fn dst(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[field::DST]);
        MacAddr(m)
    }

    pub fn src(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[field::SRC]);
        MacAddr(m)
    }

    /// The payload's type: the inner type after an 802.1Q tag if present.
    pub fn ethertype(&self) -> EtherType {
        let b = self.buf.as_ref();
        if self.tagged() {
            EtherType(get16(b, field::INNER_TYPE))
        } else {
            EtherType(get16(b, field::TYPE))
        }
    }

    /// The full 802.1Q tag control information (PCP, DEI, VID), if tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        self.tagged().then(|| get16(self.buf.as_ref(), field::TCI))
    }

    /// The VLAN id (12 bits) if tagged.
    pub fn vlan(&self) -> Option<u16> {
        self.vlan_tci().map(|t| t & 0x0FFF)
    }

    /// The priority code point (3 bits) if tagged.
    pub fn vlan_pcp(&self) -> Option<u8> {
        self.vlan_tci().map(|t| (t >> 13) as u8)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::DST].copy_from_slice(&m.0);
    }

    pub fn set_src(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&m.0);
    }

    /// Sets the payload's type (after the tag if the frame is tagged).
    pub fn set_ethertype(&mut self, t: EtherType) {
        let at = if self.tagged() { field::INNER_TYPE } else { field::TYPE };
        put16(self.buf.as_mut(), at, t.0);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buf.as_mut()[h..]
    }
}

/// An Ethernet header.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src: MacAddr,
    pub dst: MacAddr,
    /// The payload's type (inner type when `vlan` is set).
    pub ethertype: EtherType,
    /// 802.1Q VLAN id (12 bits); emitted with priority 0.
    pub vlan: Option<u16>,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self, WireError> {
        Ok(EthernetRepr { src: frame.src(), dst: frame.dst(), ethertype: frame.ethertype(), vlan: frame.vlan() })
    }

    pub const fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header at the start of `buf`. Panics if `buf` is shorter
    /// than [`header_len`](Self::header_len).
    pub fn emit(&self, buf: &mut [u8]) {
        buf[field::DST].copy_from_slice(&self.dst.0);
        buf[field::SRC].copy_from_slice(&self.src.0);
        match self.vlan {
            Some(vid) => {
                put16(buf, field::TYPE, EtherType::VLAN.0);
                put16(buf, field::TCI, vid & 0x0FFF);
                put16(buf, field::INNER_TYPE, self.ethertype.0);
            }
            None => put16(buf, field::TYPE, self.ethertype.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FRAME: [u8; 18] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x01, 0x01, // src
        0x08, 0x06, // ARP
        0xde, 0xad, 0xbe, 0xef,
    ];

    #[test]
    fn untagged_frame_fields() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert!(f.dst().is_broadcast());
        assert_eq!(f.src(), MacAddr([2, 0, 0, 0, 1, 1]));
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.vlan(), None);
        assert_eq!(f.header_len(), HEADER_LEN);
        assert_eq!(f.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn tagged_frame_reports_inner_type_and_vid() {
        let mut b = [0u8; 22];
        let r = EthernetRepr {
            src: MacAddr([2, 0, 0, 0, 0, 2]),
            dst: MacAddr::BROADCAST,
            ethertype: EtherType::IPV4,
            vlan: Some(42),
        };
        r.emit(&mut b);
        b[14] |= 0xA0; // PCP 5
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.vlan(), Some(42));
        assert_eq!(f.vlan_pcp(), Some(5));
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload().len(), 4);
        assert_eq!(EthernetRepr::parse(&f).unwrap(), r);
    }

    #[test]
    fn short_frames_are_truncated() {
        assert_eq!(EthernetFrame::new_checked(&FRAME[..13]).unwrap_err(), WireError::Truncated);
        let mut t = [0u8; 17];
        t[12] = 0x81;
        assert_eq!(EthernetFrame::new_checked(&t[..]).unwrap_err(), WireError::Truncated);
        assert!(EthernetFrame::new_checked(&FRAME[..14]).unwrap().payload().is_empty());
    }

    #[test]
    fn setters_write_fields() {
        let mut b = FRAME;
        let mut f = EthernetFrame::new_checked(&mut b[..]).unwrap();
        f.set_dst(MacAddr([1, 2, 3, 4, 5, 6]));
        f.set_src(MacAddr([7, 8, 9, 10, 11, 12]));
        f.set_ethertype(EtherType::IPV6);
        f.payload_mut()[0] = 0;
        let f = EthernetFrame::new_checked(f.into_inner()).unwrap();
        assert_eq!(f.dst(), MacAddr([1, 2, 3, 4, 5, 6]));
        assert_eq!(f.src(), MacAddr([7, 8, 9, 10, 11, 12]));
        assert_eq!(f.ethertype(), EtherType::IPV6);
        assert_eq!(f.payload()[0], 0);
    }

    #[test]
    fn mac_display_and_parse() {
        let m = MacAddr([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        assert_eq!(m.to_string(), "aa:bb:cc:dd:ee:ff");
        assert_eq!("aa:bb:cc:dd:ee:ff".parse::<MacAddr>().unwrap(), m);
        assert_eq!("AA-BB-CC-DD-EE-FF".parse::<MacAddr>().unwrap(), m);
        assert!("aa:bb:cc:dd:ee".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:dd:ee:ff:00".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:dd:ee:fg".parse::<MacAddr>().is_err());
        assert!(MacAddr::BROADCAST.is_multicast() && !MacAddr::BROADCAST.is_unicast());
        assert!(!MacAddr::ZERO.is_unicast());
    }

    fn mac() -> impl Strategy<Value = MacAddr> {
        any::<[u8; 6]>().prop_map(MacAddr)
    }

    proptest! {
        #[test]
        fn repr_round_trips(src in mac(), dst in mac(), t in any::<u16>(), vlan in proptest::option::of(0u16..4096)) {
            // An untagged frame whose type is 0x8100 would read back as tagged.
            prop_assume!(vlan.is_some() || t != EtherType::VLAN.0);
            let r = EthernetRepr { src, dst, ethertype: EtherType(t), vlan };
            let mut b = [0u8; 18];
            r.emit(&mut b);
            let f = EthernetFrame::new_checked(&b[..r.header_len()]).unwrap();
            prop_assert_eq!(EthernetRepr::parse(&f).unwrap(), r);
        }

        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(f) = EthernetFrame::new_checked(&b[..]) {
                let _ = (f.dst(), f.src(), f.ethertype(), f.vlan(), f.payload().len());
                let _ = EthernetRepr::parse(&f);
            }
        }
    }
}
