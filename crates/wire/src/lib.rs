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

/// The parts of a view that ICMP and ICMPv6 share (RFC 792, RFC 4443
/// §2.1): the 8-byte header (type, code, checksum, then a type-specific
/// word, the identifier and sequence number of an echo) and what follows
/// it. The view `$view { buf }` has a `field` module in scope with TYPE,
/// CODE, CHECKSUM, IDENT, SEQ_NO and DATA, and a `HEADER_LEN` of 8.
macro_rules! icmp_header {
    ($view:ident) => {
        impl<T: AsRef<[u8]>> $view<T> {
            pub const fn new_unchecked(buf: T) -> Self {
                $view { buf }
            }

            /// Checks that the 8-byte header is present (type, code,
            /// checksum and the 4-byte type-specific word).
            pub fn new_checked(buf: T) -> Result<Self, $crate::WireError> {
                if buf.as_ref().len() < HEADER_LEN {
                    return Err($crate::WireError::Truncated);
                }
                Ok($view { buf })
            }

            pub fn into_inner(self) -> T {
                self.buf
            }

            pub fn msg_type(&self) -> u8 {
                self.buf.as_ref()[field::TYPE]
            }

            pub fn code(&self) -> u8 {
                self.buf.as_ref()[field::CODE]
            }

            pub fn checksum(&self) -> u16 {
                $crate::get16(self.buf.as_ref(), field::CHECKSUM)
            }

            /// Echo identifier (bytes 4..6; ICMP's timestamp and
            /// information messages have it too).
            pub fn echo_ident(&self) -> u16 {
                $crate::get16(self.buf.as_ref(), field::IDENT)
            }

            /// Echo sequence number (bytes 6..8).
            pub fn echo_seq_no(&self) -> u16 {
                $crate::get16(self.buf.as_ref(), field::SEQ_NO)
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $view<T> {
            pub fn set_msg_type(&mut self, t: u8) {
                self.buf.as_mut()[field::TYPE] = t;
            }
            pub fn set_code(&mut self, c: u8) {
                self.buf.as_mut()[field::CODE] = c;
            }
            pub fn set_checksum(&mut self, c: u16) {
                $crate::put16(self.buf.as_mut(), field::CHECKSUM, c);
            }
            pub fn set_echo_ident(&mut self, v: u16) {
                $crate::put16(self.buf.as_mut(), field::IDENT, v);
            }
            pub fn set_echo_seq_no(&mut self, v: u16) {
                $crate::put16(self.buf.as_mut(), field::SEQ_NO, v);
            }
            pub fn data_mut(&mut self) -> &mut [u8] {
                &mut self.buf.as_mut()[field::DATA..]
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
