//! The two address families a routing table holds, and how an address
//! becomes a trie key.
//!
//! IPv6 scoped addresses follow KAME (OpenBSD's in6_embedscope): a
//! link-local unicast address (fe80::/10) or an interface- or link-local
//! multicast address (ff01::/16, ff02::/16) means nothing without its
//! interface, so its key carries the interface index in bits 16..31, where
//! such addresses are always zero. `fe80::%em0/64` and `fe80::%em1/64` are
//! then two routes, and a lookup finds the one of the interface it is
//! scoped to. Routes keep the plain address and name the interface in
//! `ifp`; only keys are embedded.

use super::table::{FamilyState, PublishedTable, RouteSnapshot, TableState};
use crate::iface::IfIndex;
use arc_swap::ArcSwap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address type a routing table is kept for: `Ipv4Addr` or `Ipv6Addr`.
pub trait RouteAddr:
    Copy + Eq + Ord + Hash + fmt::Debug + fmt::Display + Into<IpAddr> + Send + Sync + 'static + private::Sealed
{
    /// The address as an integer, most significant bit first.
    type Bits: Copy + Eq + Ord + Hash + fmt::Debug + Send + Sync + 'static;
    /// Longest prefix: 32 or 128.
    const MAX_LEN: u8;
    /// Trie levels of 8 bits each.
    const LEVELS: u8;
    /// Whether the trie leaves out nodes that would hold no route and have
    /// one child (path compression): IPv6's long keys leave runs of them
    /// under nearly every prefix; IPv4's four levels are walked as they are.
    const COMPRESS: bool;
    /// `AF_INET` or `AF_INET6`, for messages and errors.
    const FAMILY: &'static str;

    fn to_bits(self) -> Self::Bits;
    fn from_bits(b: Self::Bits) -> Self;
    /// `b` with the bits past `len` cleared.
    fn mask_bits(b: Self::Bits, len: u8) -> Self::Bits;
    /// The 8-bit slot of `b` at trie `level`.
    fn slot(b: Self::Bits, level: u8) -> usize;
    /// All bits clear (the root's position).
    const ZERO_BITS: Self::Bits;
    /// Whether the address needs an interface to mean anything (KAME's
    /// IN6_IS_SCOPE_EMBED). Never for IPv4.
    fn is_scoped(self) -> bool;
    /// The key of `addr/len` on interface `scope`: the masked address, with
    /// the scope embedded when the address is scoped.
    fn key_bits(addr: Self, len: u8, scope: IfIndex) -> Self::Bits;
    /// The netmask of a prefix length, as an address.
    fn netmask(len: u8) -> Self;
    /// The prefix-length error of this family.
    fn bad_prefix(len: u8) -> super::RouteError;

    /// This family's routes in a table (the control thread's side).
    #[doc(hidden)]
    fn state(t: &TableState) -> &FamilyState<Self>;
    #[doc(hidden)]
    fn state_mut(t: &mut TableState) -> &mut FamilyState<Self>;
    /// Where this family's snapshot of a table is published.
    #[doc(hidden)]
    fn published(p: &PublishedTable) -> &ArcSwap<RouteSnapshot<Self>>;
}

mod private {
    pub trait Sealed {}
    impl Sealed for std::net::Ipv4Addr {}
    impl Sealed for std::net::Ipv6Addr {}
}

/// IPv6 netmask for a prefix length (0..=128).
pub fn prefix_mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128) as u32)
    }
}

impl RouteAddr for Ipv4Addr {
    type Bits = u32;
    const MAX_LEN: u8 = 32;
    const LEVELS: u8 = 4;
    const COMPRESS: bool = false;
    const ZERO_BITS: u32 = 0;
    const FAMILY: &'static str = "inet";

    #[inline]
    fn to_bits(self) -> u32 {
        u32::from(self)
    }
    #[inline]
    fn from_bits(b: u32) -> Self {
        Ipv4Addr::from(b)
    }
    #[inline]
    fn mask_bits(b: u32, len: u8) -> u32 {
        b & crate::iface::prefix_mask(len)
    }
    #[inline]
    fn slot(b: u32, level: u8) -> usize {
        ((b >> (24 - 8 * level as u32)) & 0xff) as usize
    }
    #[inline]
    fn is_scoped(self) -> bool {
        false
    }
    #[inline]
    fn key_bits(addr: Self, len: u8, _scope: IfIndex) -> u32 {
        u32::from(addr) & crate::iface::prefix_mask(len)
    }
    fn netmask(len: u8) -> Self {
        Ipv4Addr::from(crate::iface::prefix_mask(len))
    }
    fn bad_prefix(len: u8) -> super::RouteError {
        super::RouteError::BadPrefix(len)
    }
    fn state(t: &TableState) -> &FamilyState<Self> {
        &t.v4
    }
    fn state_mut(t: &mut TableState) -> &mut FamilyState<Self> {
        &mut t.v4
    }
    fn published(p: &PublishedTable) -> &ArcSwap<RouteSnapshot<Self>> {
        &p.v4
    }
}

/// Bits 16..31 of an IPv6 address, where KAME embeds the scope.
const SCOPE_SHIFT: u32 = 96;
const SCOPE_FIELD: u128 = 0xffff << SCOPE_SHIFT;

/// fe80::/10, ff01::/16 or ff02::/16: addresses KAME embeds a scope into.
#[inline]
pub fn is_scoped6(a: Ipv6Addr) -> bool {
    let s = a.segments()[0];
    (s & 0xffc0) == 0xfe80 || s == 0xff01 || s == 0xff02
}

/// The key bits of `a` with the interface index embedded (KAME's
/// in6_embedscope); unscoped addresses unchanged.
#[inline]
pub fn embed_scope6(a: Ipv6Addr, scope: IfIndex) -> u128 {
    let b = u128::from(a);
    if is_scoped6(a) {
        (b & !SCOPE_FIELD) | (((scope.0 & 0xffff) as u128) << SCOPE_SHIFT)
    } else {
        b
    }
}

impl RouteAddr for Ipv6Addr {
    type Bits = u128;
    const MAX_LEN: u8 = 128;
    const LEVELS: u8 = 16;
    const COMPRESS: bool = true;
    const ZERO_BITS: u128 = 0;
    const FAMILY: &'static str = "inet6";

    #[inline]
    fn to_bits(self) -> u128 {
        u128::from(self)
    }
    #[inline]
    fn from_bits(b: u128) -> Self {
        Ipv6Addr::from(b)
    }
    #[inline]
    fn mask_bits(b: u128, len: u8) -> u128 {
        b & prefix_mask6(len)
    }
    #[inline]
    fn slot(b: u128, level: u8) -> usize {
        ((b >> (120 - 8 * level as u32)) & 0xff) as usize
    }
    #[inline]
    fn is_scoped(self) -> bool {
        is_scoped6(self)
    }
    #[inline]
    fn key_bits(addr: Self, len: u8, scope: IfIndex) -> u128 {
        embed_scope6(addr, scope) & prefix_mask6(len)
    }
    fn netmask(len: u8) -> Self {
        Ipv6Addr::from(prefix_mask6(len))
    }
    fn bad_prefix(len: u8) -> super::RouteError {
        super::RouteError::BadPrefix6(len)
    }
    fn state(t: &TableState) -> &FamilyState<Self> {
        &t.v6
    }
    fn state_mut(t: &mut TableState) -> &mut FamilyState<Self> {
        &mut t.v6
    }
    fn published(p: &PublishedTable) -> &ArcSwap<RouteSnapshot<Self>> {
        &p.v6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn link_local_keys_carry_the_interface_as_kame_embeds_it() {
        let a = ip6("fe80::1");
        assert_eq!(Ipv6Addr::key_bits(a, 128, IfIndex(3)), u128::from(ip6("fe80:3::1")));
        assert_eq!(Ipv6Addr::key_bits(a, 64, IfIndex(3)), u128::from(ip6("fe80:3::")));
        assert_eq!(Ipv6Addr::key_bits(a, 10, IfIndex(3)), u128::from(ip6("fe80::")), "fe80::/10 is unscoped");
        assert_eq!(Ipv6Addr::key_bits(ip6("ff02::1"), 128, IfIndex(2)), u128::from(ip6("ff02:2::1")));
        assert_eq!(Ipv6Addr::key_bits(ip6("ff05::1"), 128, IfIndex(2)), u128::from(ip6("ff05::1")));
        assert_eq!(Ipv6Addr::key_bits(ip6("2001:db8::1"), 32, IfIndex(2)), u128::from(ip6("2001:db8::")));
        assert!(ip6("febf::1").is_scoped() && !ip6("fec0::1").is_scoped());
    }

    #[test]
    fn slots_walk_the_address_from_the_top() {
        let b = u128::from(ip6("2001:db8:1:2::"));
        let s: Vec<usize> = (0..8).map(|l| Ipv6Addr::slot(b, l)).collect();
        assert_eq!(s, vec![0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x02]);
        assert_eq!(Ipv4Addr::slot(0x0a01_0203, 3), 3);
        assert_eq!(prefix_mask6(0), 0);
        assert_eq!(prefix_mask6(128), u128::MAX);
        assert_eq!(Ipv6Addr::netmask(64), ip6("ffff:ffff:ffff:ffff::"));
    }
}
