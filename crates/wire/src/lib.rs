//! Packet formats: zero-copy views with checked constructors, plus small
//! owned `Repr`s that parse and emit. No I/O, no allocation.
//!
//! Each protocol has a view (`EthernetFrame`, `ArpPacket`, `Ipv4Packet`,
//! `Icmpv4Packet`, `UdpPacket`, `TcpPacket`, `Ipv6Packet`, the IPv6
//! extension headers, `Icmpv6Packet`; NDP and MLD messages are ICMPv6)
//! over any `T: AsRef<[u8]>`.
//! `new_checked` validates every length the accessors rely on, so after it
//! succeeds no accessor panics. `new_unchecked` skips the checks: accessors
//! may then panic on a short buffer (the caller has checked already).
//!
//! Each `Repr::emit` writes into a caller-provided buffer and panics if the
//! buffer is shorter than the Repr's `header_len()` / `buffer_len()`: that is
//! a programming error, not bad input.

#![forbid(unsafe_code)]

/// An enum of ICMP / ICMPv6 codes with `from_code`, `From<_> for u8` and
/// `TryFrom<u8>`.
macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $n:expr,)* }) => {
        $(#[$m])*
        #[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name { $($(#[$vm])* $v = $n,)* }

        impl $name {
            /// The variant for a code, if it is a known one.
            pub fn from_code(code: u8) -> Option<Self> {
                match code { $($n => Some($name::$v),)* _ => None }
            }
        }

        impl From<$name> for u8 {
            fn from(c: $name) -> u8 { c as u8 }
        }

        impl TryFrom<u8> for $name {
            type Error = $crate::WireError;
            fn try_from(c: u8) -> Result<Self, $crate::WireError> {
                $name::from_code(c).ok_or($crate::WireError::Unsupported)
            }
        }
    };
}

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6ext;
pub mod mld;
pub mod ndp;
pub mod tcp;
pub mod udp;

/// Why a buffer is not a valid packet of the kind asked for.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header or a length field says.
    #[error("truncated packet")]
    Truncated,
    /// A field holds a value the format forbids (bad length, bad option).
    #[error("malformed packet")]
    Malformed,
    /// The version field is not the one this parser handles.
    #[error("bad version")]
    BadVersion,
    /// The checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// Well-formed, but a kind this crate does not handle (e.g. ARP over
    /// something other than Ethernet/IPv4).
    #[error("unsupported packet")]
    Unsupported,
}

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr};
pub use icmpv6::{Icmpv6Packet, Icmpv6Repr};
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6AddrExt, Ipv6Packet, Ipv6Repr};
pub use mld::MldRepr;
pub use ndp::NdpRepr;
pub use tcp::{TcpFlags, TcpOption, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};

#[inline]
pub(crate) fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn get_ip(b: &[u8], at: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

#[inline]
pub(crate) fn put_ip(b: &mut [u8], at: usize, a: std::net::Ipv4Addr) {
    b[at..at + 4].copy_from_slice(&a.octets());
}
