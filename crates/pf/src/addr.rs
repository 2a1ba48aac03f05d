//! pf's `struct pf_addr`: one 16-byte address for both families, read
//! with the family it goes with (`sa_family_t af` beside it in pf).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::model::AddressFamily as Af;

/// An address of either family, as four 32-bit words (pf's `addr32`) in
/// host order: an IPv4 address is word 0 with the rest zero, an IPv6
/// address its four big-endian words in order. Which family it is comes
/// from beside it (`Pd::af`, `StateKey::af`), as in pf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct PfAddr(pub [u32; 4]);

impl PfAddr {
    pub const UNSPECIFIED: PfAddr = PfAddr([0; 4]);

    #[inline]
    pub const fn from_v4(a: Ipv4Addr) -> PfAddr {
        PfAddr([u32::from_be_bytes(a.octets()), 0, 0, 0])
    }

    #[inline]
    pub fn from_v6(a: Ipv6Addr) -> PfAddr {
        let o = a.octets();
        let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
        PfAddr([w(0), w(4), w(8), w(12)])
    }

    pub fn from_ip(a: IpAddr) -> PfAddr {
        match a {
            IpAddr::V4(a) => PfAddr::from_v4(a),
            IpAddr::V6(a) => PfAddr::from_v6(a),
        }
    }

    /// The address as IPv4 (word 0).
    #[inline]
    pub const fn v4(self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.0[0])
    }

    #[inline]
    pub fn v6(self) -> Ipv6Addr {
        Ipv6Addr::from(self.u128())
    }

    /// The IPv6 address as one integer (most significant word first).
    #[inline]
    pub fn u128(self) -> u128 {
        (self.0[0] as u128) << 96 | (self.0[1] as u128) << 64 | (self.0[2] as u128) << 32 | self.0[3] as u128
    }

    /// The 16 bytes of `struct pf_addr` (an IPv4 address in the first 4).
    pub fn octets(self) -> [u8; 16] {
        let mut o = [0u8; 16];
        for (i, w) in self.0.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        o
    }

    pub fn to_ip(self, af: Af) -> IpAddr {
        match af {
            Af::Inet => IpAddr::V4(self.v4()),
            Af::Inet6 => IpAddr::V6(self.v6()),
        }
    }
}

/// An IPv6 netmask of `prefix` bits, as one integer.
pub fn mask6(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => u128::MAX << (128 - p.min(128) as u32),
    }
}

impl std::str::FromStr for PfAddr {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<PfAddr, Self::Err> {
        s.parse::<IpAddr>().map(PfAddr::from_ip)
    }
}

impl From<Ipv4Addr> for PfAddr {
    fn from(a: Ipv4Addr) -> PfAddr {
        PfAddr::from_v4(a)
    }
}

impl From<Ipv6Addr> for PfAddr {
    fn from(a: Ipv6Addr) -> PfAddr {
        PfAddr::from_v6(a)
    }
}

impl From<IpAddr> for PfAddr {
    fn from(a: IpAddr) -> PfAddr {
        PfAddr::from_ip(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_round_trip_and_v4_is_word_zero() {
        let a: Ipv4Addr = "10.1.2.3".parse().unwrap();
        let p = PfAddr::from_v4(a);
        assert_eq!(p.0, [0x0a01_0203, 0, 0, 0]);
        assert_eq!(p.v4(), a);
        let b: Ipv6Addr = "2001:db8::1:2".parse().unwrap();
        let q = PfAddr::from_v6(b);
        assert_eq!(q.0, [0x2001_0db8, 0, 0, 0x0001_0002]);
        assert_eq!(q.v6(), b);
        assert_eq!(q.to_ip(Af::Inet6), IpAddr::V6(b));
        assert_eq!(PfAddr::from_ip(IpAddr::V4(a)), p);
    }
}
