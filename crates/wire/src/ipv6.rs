//! IPv6 (RFC 8200): the fixed header view, an owned Repr, and the address
//! helpers the stack needs (RFC 4291: scopes, solicited-node multicast,
//! EUI-64 interface identifiers; RFC 2464 §7: multicast MAC mapping).
//!
//! Extension headers are in [`crate::ipv6ext`].

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::ethernet::MacAddr;
use crate::ipv4::IpProtocol;
use crate::ipv6ext::ExtHeaders;
use crate::{get16, put16, WireError};

/// The fixed header: extension headers follow it inside the payload.
pub const HEADER_LEN: usize = 40;
/// The minimum link MTU every IPv6 link supports (RFC 8200 §5).
pub const MIN_MTU: usize = 1280;

mod field {
    use core::ops::Range;
    /// Version (4 bits), traffic class (8 bits), flow label (20 bits).
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Offset of the payload length field: the ICMPv6 parameter problem
/// pointer for a fragment whose length is not a multiple of 8 (RFC 8200 §4.5).
pub const PAYLOAD_LEN_OFFSET: usize = field::PAYLOAD_LEN;
/// Offset of the next header field in the fixed header.
pub const NEXT_HEADER_OFFSET: usize = field::NEXT_HEADER;

#[inline]
fn get_ip6(b: &[u8], r: core::ops::Range<usize>) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[r]);
    Ipv6Addr::from(a)
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// No checks: accessors panic if the buffer is shorter than they need.
    pub const fn new_unchecked(buf: T) -> Self {
        Ipv6Packet { buf }
    }

    /// Checks the 40-byte header is present (`Truncated`), version 6
    /// (`BadVersion`) and header + payload length within the buffer
    /// (`Truncated`). Accepts bytes after the payload (Ethernet padding).
    /// A payload length of 0 is an empty payload: jumbograms (RFC 2675) are
    /// not supported.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER_TC_FLOW] >> 4 != 6 {
            return Err(WireError::BadVersion);
        }
        if HEADER_LEN + get16(b, field::PAYLOAD_LEN) as usize > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(Ipv6Packet { buf })
    }

    /// For the packet an ICMPv6 error quotes, which is usually cut short
    /// (RFC 4443 §2.4 (c)): checks the 40-byte header and version 6 only.
    /// The payload length may run past the buffer; [`payload`](Self::payload),
    /// [`packet`](Self::packet) and the header walk stop at the buffer's end.
    pub fn new_quoted(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER_TC_FLOW] >> 4 != 6 {
            return Err(WireError::BadVersion);
        }
        Ok(Ipv6Packet { buf })
    }

    /// Whether the buffer holds fewer bytes than the payload length says
    /// (only possible with [`new_quoted`](Self::new_quoted)).
    pub fn is_cut(&self) -> bool {
        self.total_len() > self.buf.as_ref().len()
    }

    /// End of the packet's bytes: the payload length, clamped to the buffer.
    fn end(&self) -> usize {
        self.total_len().min(self.buf.as_ref().len())
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.buf.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// The traffic class byte (DSCP << 2 | ECN).
    pub fn traffic_class(&self) -> u8 {
        let b = self.buf.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// The 20-bit flow label (RFC 6437).
    pub fn flow_label(&self) -> u32 {
        let b = self.buf.as_ref();
        u32::from_be_bytes([0, b[1] & 0x0F, b[2], b[3]])
    }

    /// Bytes after the fixed header (extension headers included).
    pub fn payload_len(&self) -> u16 {
        get16(self.buf.as_ref(), field::PAYLOAD_LEN)
    }

    /// Header plus payload.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len() as usize
    }

    /// The next header field: the first extension header or the upper layer.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buf.as_ref()[field::NEXT_HEADER])
    }

    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[field::HOP_LIMIT]
    }

    pub fn src(&self) -> Ipv6Addr {
        get_ip6(self.buf.as_ref(), field::SRC)
    }

    pub fn dst(&self) -> Ipv6Addr {
        get_ip6(self.buf.as_ref(), field::DST)
    }

    /// The fixed header (40 bytes).
    pub fn header(&self) -> &[u8] {
        &self.buf.as_ref()[..HEADER_LEN]
    }

    /// The payload up to the payload length (padding excluded; for a
    /// quoted packet, up to the end of the quote).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..self.end()]
    }

    /// The packet up to the payload length (padding excluded; for a quoted
    /// packet, up to the end of the quote).
    pub fn packet(&self) -> &[u8] {
        &self.buf.as_ref()[..self.end()]
    }

    /// The extension header chain, walked from the fixed header's next
    /// header. Offsets in its items and errors are from the start of this
    /// packet, so an error's offset is the ICMPv6 parameter problem pointer.
    /// A cut quote (see [`new_quoted`](Self::new_quoted)) is walked as one.
    pub fn ext_headers(&self) -> ExtHeaders<'_> {
        ExtHeaders::new(self.next_header(), self.packet(), HEADER_LEN).cut(self.is_cut())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn b(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }

    /// Writes version 6, the traffic class and the flow label (masked to
    /// 20 bits) in one go.
    pub fn set_ver_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | ((traffic_class as u32) << 20) | (flow_label & 0xF_FFFF);
        self.b()[0..4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_traffic_class(&mut self, tc: u8) {
        let fl = self.flow_label();
        self.set_ver_tc_flow(tc, fl);
    }

    pub fn set_flow_label(&mut self, fl: u32) {
        let tc = self.traffic_class();
        self.set_ver_tc_flow(tc, fl);
    }

    pub fn set_payload_len(&mut self, len: u16) {
        put16(self.b(), field::PAYLOAD_LEN, len);
    }

    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.b()[field::NEXT_HEADER] = p.0;
    }

    pub fn set_hop_limit(&mut self, h: u8) {
        self.b()[field::HOP_LIMIT] = h;
    }

    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.b()[field::SRC].copy_from_slice(&a.octets());
    }

    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.b()[field::DST].copy_from_slice(&a.octets());
    }

    /// Hop limit minus one (never below zero); returns the new value. IPv6
    /// has no header checksum, so nothing else changes.
    pub fn decrement_hop_limit(&mut self) -> u8 {
        let h = self.hop_limit().saturating_sub(1);
        self.set_hop_limit(h);
        h
    }

    /// The payload up to the payload length (or the end of a quote).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.end();
        &mut self.b()[HEADER_LEN..end]
    }
}

/// An IPv6 fixed header.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The fixed header's next header (first extension header or upper layer).
    pub next_header: IpProtocol,
    pub hop_limit: u8,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
    /// Bytes after the fixed header.
    pub payload_len: usize,
}

impl Ipv6Repr {
    /// Parses a checked packet (IPv6 has no header checksum).
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Self, WireError> {
        Ok(Ipv6Repr {
            src: p.src(),
            dst: p.dst(),
            next_header: p.next_header(),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
            payload_len: p.payload_len() as usize,
        })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the 40-byte header at the start of `buf`. Panics if `buf` is
    /// shorter than 40 bytes or the payload length exceeds 65535.
    pub fn emit(&self, buf: &mut [u8]) {
        let len = u16::try_from(self.payload_len).expect("IPv6 payload length over 65535");
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_ver_tc_flow(self.traffic_class, self.flow_label);
        p.set_payload_len(len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src(self.src);
        p.set_dst(self.dst);
    }
}

// ---- addresses -------------------------------------------------------------

/// ff02::1, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, all routers on the link.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// ff02::16, where MLDv2 reports go (RFC 3810 §5.2.14).
pub const ALL_MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
/// ff02::1:ff00:0/104, the solicited-node multicast prefix (RFC 4291 §2.7.1).
pub const SOLICITED_NODE_PREFIX: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0);
/// 64:ff9b::/96, the NAT64 well-known prefix (RFC 6052 §2.1).
pub const NAT64_WELL_KNOWN_PREFIX: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);

/// Multicast scopes (RFC 4291 §2.7, RFC 7346).
#[derive(Debug, Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MulticastScope {
    InterfaceLocal,
    LinkLocal,
    RealmLocal,
    AdminLocal,
    SiteLocal,
    OrganizationLocal,
    Global,
    /// A reserved or unassigned scope value.
    Other(u8),
}

impl MulticastScope {
    pub fn from_bits(v: u8) -> MulticastScope {
        match v & 0x0F {
            1 => MulticastScope::InterfaceLocal,
            2 => MulticastScope::LinkLocal,
            3 => MulticastScope::RealmLocal,
            4 => MulticastScope::AdminLocal,
            5 => MulticastScope::SiteLocal,
            8 => MulticastScope::OrganizationLocal,
            0xE => MulticastScope::Global,
            v => MulticastScope::Other(v),
        }
    }
}

/// The helpers IPv6 code needs on [`Ipv6Addr`] beyond the standard
/// library's stable ones (`is_unspecified`, `is_loopback`, `is_multicast`,
/// `is_unique_local`). Names differ from unstable std methods on purpose.
pub trait Ipv6AddrExt {
    /// fe80::/10 (RFC 4291 §2.5.6).
    fn is_link_local_unicast(&self) -> bool;
    /// 2001:db8::/32 (RFC 3849).
    fn is_documentation_prefix(&self) -> bool;
    /// ::ffff:0:0/96 (RFC 4291 §2.5.5.2).
    fn is_v4_mapped(&self) -> bool;
    /// Unicast: neither unspecified nor multicast.
    fn is_unicast_addr(&self) -> bool;
    /// The scope of a multicast address, `None` for a unicast one.
    fn mcast_scope(&self) -> Option<MulticastScope>;
    /// A link-scoped address: link-local unicast, or multicast with
    /// interface- or link-local scope (RFC 4007): never forwarded.
    fn is_link_scoped(&self) -> bool;
    /// ff02::1:ffXX:XXXX, the solicited-node group of this address (RFC
    /// 4291 §2.7.1): the prefix and the low 24 bits.
    fn solicited_node(&self) -> Ipv6Addr;
    /// Whether this is a solicited-node multicast address.
    fn is_solicited_node(&self) -> bool;
    /// The first `len` bits (0..=128), the rest zero.
    fn mask(&self, len: u8) -> Ipv6Addr;
    /// The low 64 bits (the interface identifier of a /64 address).
    fn interface_id(&self) -> [u8; 8];
}

impl Ipv6AddrExt for Ipv6Addr {
    fn is_link_local_unicast(&self) -> bool {
        self.segments()[0] & 0xffc0 == 0xfe80
    }
    fn is_documentation_prefix(&self) -> bool {
        let s = self.segments();
        s[0] == 0x2001 && s[1] == 0x0db8
    }
    fn is_v4_mapped(&self) -> bool {
        let s = self.segments();
        s[..5] == [0; 5] && s[5] == 0xffff
    }
    fn is_unicast_addr(&self) -> bool {
        !self.is_unspecified() && !self.is_multicast()
    }
    fn mcast_scope(&self) -> Option<MulticastScope> {
        let o = self.octets();
        (o[0] == 0xff).then(|| MulticastScope::from_bits(o[1]))
    }
    fn is_link_scoped(&self) -> bool {
        self.is_link_local_unicast()
            || matches!(self.mcast_scope(), Some(MulticastScope::InterfaceLocal | MulticastScope::LinkLocal))
    }
    fn solicited_node(&self) -> Ipv6Addr {
        let mut o = SOLICITED_NODE_PREFIX.octets();
        o[13..].copy_from_slice(&self.octets()[13..]);
        Ipv6Addr::from(o)
    }
    fn is_solicited_node(&self) -> bool {
        self.octets()[..13] == SOLICITED_NODE_PREFIX.octets()[..13]
    }
    fn mask(&self, len: u8) -> Ipv6Addr {
        let len = len.min(128) as u32;
        let m = if len == 0 { 0 } else { u128::MAX << (128 - len) };
        Ipv6Addr::from(u128::from(*self) & m)
    }
    fn interface_id(&self) -> [u8; 8] {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.octets()[8..]);
        id
    }
}

/// The modified EUI-64 interface identifier of a MAC address (RFC 4291
/// App. A): ff:fe inserted in the middle, the universal/local bit inverted.
pub fn eui64_interface_id(mac: MacAddr) -> [u8; 8] {
    let m = mac.octets();
    [m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]
}

/// A /64 prefix's first 64 bits joined with an interface identifier.
pub fn from_prefix_and_id(prefix: Ipv6Addr, id: [u8; 8]) -> Ipv6Addr {
    let mut o = prefix.octets();
    o[8..].copy_from_slice(&id);
    Ipv6Addr::from(o)
}

/// fe80::/64 with the MAC's modified EUI-64 identifier: the link-local
/// address an interface configures (RFC 4862 §5.3).
pub fn link_local_from_mac(mac: MacAddr) -> Ipv6Addr {
    from_prefix_and_id(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), eui64_interface_id(mac))
}

/// The Ethernet destination of an IPv6 multicast packet: 33:33 and the low
/// 32 bits of the group (RFC 2464 §7).
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// Where the four IPv4 octets sit in an IPv4-embedded IPv6 address for
/// each prefix length RFC 6052 §2.2 allows (octet 8, bits 64..71, is
/// always zero).
fn nat64_octets(prefix_len: u8) -> Option<[usize; 4]> {
    Some(match prefix_len {
        32 => [4, 5, 6, 7],
        40 => [5, 6, 7, 9],
        48 => [6, 7, 9, 10],
        56 => [7, 9, 10, 11],
        64 => [9, 10, 11, 12],
        96 => [12, 13, 14, 15],
        _ => return None,
    })
}

/// The IPv4-embedded IPv6 address of `v4` under `prefix`/`prefix_len`
/// (RFC 6052 §2.2; pf.c inet_nat46's direction), suffix zero. `None` for a
/// prefix length other than 32, 40, 48, 56, 64 or 96.
pub fn nat64_embed(prefix: Ipv6Addr, prefix_len: u8, v4: Ipv4Addr) -> Option<Ipv6Addr> {
    let at = nat64_octets(prefix_len)?;
    let mut o = prefix.mask(prefix_len).octets();
    for (i, b) in at.iter().zip(v4.octets()) {
        o[*i] = b;
    }
    Some(Ipv6Addr::from(o))
}

/// The IPv4 address embedded in `addr` under a prefix of `prefix_len`
/// (RFC 6052 §2.3; pf.c inet_nat64's direction).
pub fn nat64_extract(addr: Ipv6Addr, prefix_len: u8) -> Option<Ipv4Addr> {
    let at = nat64_octets(prefix_len)?;
    let o = addr.octets();
    Some(Ipv4Addr::new(o[at[0]], o[at[1]], o[at[2]], o[at[3]]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Linux 6.x, `ping -6 -s 8 fd00::b` from fd00::a: echo request with
    /// flow label 0xf965f, hop limit 64.
    pub(crate) const LINUX_ECHO_REQUEST: [u8; 56] = [
        0x60, 0x0f, 0x96, 0x5f, 0x00, 0x10, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x0b, 0x80, 0x00, 0x11, 0x7e, 0x68, 0x0f, 0x00, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
        0x06, 0x07,
    ];

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn reads_a_linux_echo_request_header() {
        let p = Ipv6Packet::new_checked(&LINUX_ECHO_REQUEST[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0xf965f);
        assert_eq!(p.payload_len(), 16);
        assert_eq!(p.next_header(), IpProtocol::ICMPV6);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), a("fd00::a"));
        assert_eq!(p.dst(), a("fd00::b"));
        assert_eq!(p.payload().len(), 16);
        let r = Ipv6Repr::parse(&p).unwrap();
        let mut out = [0u8; 40];
        r.emit(&mut out);
        assert_eq!(&out[..], &LINUX_ECHO_REQUEST[..40]);
    }

    #[test]
    fn checked_constructor_rejects_short_and_wrong_version() {
        let b = LINUX_ECHO_REQUEST;
        assert_eq!(Ipv6Packet::new_checked(&b[..39]).unwrap_err(), WireError::Truncated);
        assert_eq!(Ipv6Packet::new_checked(&b[..55]).unwrap_err(), WireError::Truncated);
        let mut c = b;
        c[0] = 0x45;
        assert_eq!(Ipv6Packet::new_checked(&c[..]).unwrap_err(), WireError::BadVersion);
        // Padding after the payload is tolerated and not payload.
        let mut v = b.to_vec();
        v.extend_from_slice(&[0xee; 6]);
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.payload().len(), 16);
        assert_eq!(p.packet().len(), 56);
    }

    #[test]
    fn quoted_packets_may_be_cut() {
        let b = LINUX_ECHO_REQUEST;
        assert_eq!(Ipv6Packet::new_checked(&b[..48]).unwrap_err(), WireError::Truncated);
        let q = Ipv6Packet::new_quoted(&b[..48]).unwrap();
        assert!(q.is_cut());
        assert_eq!((q.payload_len(), q.payload().len(), q.packet().len()), (16, 8, 48));
        let c = q.ext_headers().walk().unwrap();
        assert_eq!((c.upper, c.upper_offset), (IpProtocol::ICMPV6, 40));
        assert!(!Ipv6Packet::new_quoted(&b[..]).unwrap().is_cut());
        assert_eq!(Ipv6Packet::new_quoted(&b[..39]).unwrap_err(), WireError::Truncated);
        let mut v4 = b;
        v4[0] = 0x45;
        assert_eq!(Ipv6Packet::new_quoted(&v4[..]).unwrap_err(), WireError::BadVersion);
    }

    #[test]
    fn traffic_class_and_flow_label_setters_keep_each_other() {
        let mut b = LINUX_ECHO_REQUEST;
        let mut p = Ipv6Packet::new_checked(&mut b[..]).unwrap();
        p.set_traffic_class(0xb8);
        assert_eq!((p.traffic_class(), p.dscp(), p.ecn(), p.flow_label()), (0xb8, 46, 0, 0xf965f));
        p.set_flow_label(0x0123_4567); // masked to 20 bits
        assert_eq!((p.traffic_class(), p.flow_label(), p.version()), (0xb8, 0x3_4567, 6));
        assert_eq!(p.decrement_hop_limit(), 63);
        p.set_hop_limit(0);
        assert_eq!(p.decrement_hop_limit(), 0);
    }

    #[test]
    fn solicited_node_address_per_rfc4291() {
        // RFC 4291 §2.7.1 example: 4037::01:800:200E:8C6C -> FF02::1:FF0E:8C6C.
        let s = a("4037::01:800:200E:8C6C").solicited_node();
        assert_eq!(s, a("ff02::1:ff0e:8c6c"));
        assert!(s.is_solicited_node());
        assert!(!a("ff02::1:fe0e:8c6c").is_solicited_node());
        assert_eq!(multicast_mac(s), MacAddr([0x33, 0x33, 0xff, 0x0e, 0x8c, 0x6c]));
    }

    #[test]
    fn eui64_from_mac_per_rfc4291_appendix_a() {
        // RFC 4291 App. A: 34-56-78-9A-BC-DE -> 3656:78FF:FE9A:BCDE.
        let id = eui64_interface_id(MacAddr([0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde]));
        assert_eq!(id, [0x36, 0x56, 0x78, 0xff, 0xfe, 0x9a, 0xbc, 0xde]);
        // Linux gave 02:00:00:00:00:0a the link-local fe80::ff:fe00:a.
        let ll = link_local_from_mac(MacAddr([2, 0, 0, 0, 0, 0x0a]));
        assert_eq!(ll, a("fe80::ff:fe00:a"));
        assert!(ll.is_link_local_unicast() && ll.is_link_scoped());
        assert_eq!(ll.interface_id(), [0, 0, 0, 0xff, 0xfe, 0, 0, 0x0a]);
        assert_eq!(from_prefix_and_id(a("2001:db8:1:2::"), ll.interface_id()), a("2001:db8:1:2:0:ff:fe00:a"));
    }

    #[test]
    fn addresses_are_classified() {
        assert!(a("::").is_unspecified() && !a("::").is_unicast_addr());
        assert!(a("::1").is_loopback() && a("::1").is_unicast_addr());
        assert!(a("2001:db8::1").is_documentation_prefix() && !a("2001:db9::1").is_documentation_prefix());
        assert!(a("fd00::1").is_unique_local() && a("fc00::").is_unique_local() && !a("fe00::").is_unique_local());
        assert!(a("febf::1").is_link_local_unicast() && !a("fec0::1").is_link_local_unicast());
        assert!(a("::ffff:10.0.0.1").is_v4_mapped() && !a("64:ff9b::10.0.0.1").is_v4_mapped());
        assert_eq!(a("ff02::1").mcast_scope(), Some(MulticastScope::LinkLocal));
        assert_eq!(a("ff01::1").mcast_scope(), Some(MulticastScope::InterfaceLocal));
        assert_eq!(a("ff05::2").mcast_scope(), Some(MulticastScope::SiteLocal));
        assert_eq!(a("ff0e::1").mcast_scope(), Some(MulticastScope::Global));
        assert_eq!(a("ff18::1").mcast_scope(), Some(MulticastScope::OrganizationLocal));
        assert_eq!(a("ff00::1").mcast_scope(), Some(MulticastScope::Other(0)));
        assert_eq!(a("2001::1").mcast_scope(), None);
        assert!(ALL_NODES.is_link_scoped() && !a("ff05::2").is_link_scoped() && !a("2001::1").is_link_scoped());
    }

    #[test]
    fn mask_keeps_the_prefix_bits() {
        let x = a("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(x.mask(0), a("::"));
        assert_eq!(x.mask(32), a("2001:db8::"));
        assert_eq!(x.mask(33), a("2001:db8:8000::"));
        assert_eq!(x.mask(64), a("2001:db8:ffff:ffff::"));
        assert_eq!(x.mask(128), x);
        assert_eq!(x.mask(200), x);
    }

    #[test]
    fn nat64_addresses_per_rfc6052_table() {
        // RFC 6052 §2.4, every row for 192.0.2.33.
        let v4 = Ipv4Addr::new(192, 0, 2, 33);
        for (prefix, len, want) in [
            ("2001:db8::", 32, "2001:db8:c000:221::"),
            ("2001:db8:100::", 40, "2001:db8:1c0:2:21::"),
            ("2001:db8:122::", 48, "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::", 56, "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::", 64, "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::", 96, "2001:db8:122:344::192.0.2.33"),
            ("64:ff9b::", 96, "64:ff9b::192.0.2.33"),
        ] {
            assert_eq!(nat64_embed(a(prefix), len, v4), Some(a(want)), "/{len}");
            assert_eq!(nat64_extract(a(want), len), Some(v4), "/{len}");
        }
        assert_eq!(nat64_embed(NAT64_WELL_KNOWN_PREFIX, 80, v4), None);
        assert_eq!(nat64_extract(a("64:ff9b::1"), 33), None);
    }

    fn arb_repr() -> impl Strategy<Value = Ipv6Repr> {
        (any::<u128>(), any::<u128>(), any::<u8>(), any::<u8>(), any::<u8>(), 0u32..0x10_0000, 0usize..300).prop_map(
            |(s, d, nh, hl, tc, fl, len)| Ipv6Repr {
                src: s.into(),
                dst: d.into(),
                next_header: IpProtocol(nh),
                hop_limit: hl,
                traffic_class: tc,
                flow_label: fl,
                payload_len: len,
            },
        )
    }

    proptest! {
        #[test]
        fn repr_round_trips(r in arb_repr()) {
            let mut b = vec![0u8; r.buffer_len()];
            r.emit(&mut b);
            let p = Ipv6Packet::new_checked(&b[..]).unwrap();
            prop_assert_eq!(Ipv6Repr::parse(&p).unwrap(), r);
        }

        #[test]
        fn quoted_random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(p) = Ipv6Packet::new_quoted(&b[..]) {
                prop_assert!(p.packet().len() <= b.len());
                let _ = (p.payload().len(), p.is_cut(), p.ext_headers().walk());
            }
        }

        #[test]
        fn random_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..120), fix in any::<bool>()) {
            if fix && b.len() >= 40 {
                b[0] = 0x60 | (b[0] & 0x0F);
                let len = (b.len() - 40) as u16;
                b[4..6].copy_from_slice(&len.to_be_bytes());
            }
            if let Ok(p) = Ipv6Packet::new_checked(&b[..]) {
                let _ = (p.payload().len(), p.flow_label(), p.traffic_class(), p.src(), p.dst());
                let _ = Ipv6Repr::parse(&p).unwrap();
                for h in p.ext_headers() {
                    let _ = h;
                }
            }
        }

        #[test]
        fn nat64_embed_then_extract_is_identity(p in any::<u128>(), v in any::<u32>(), i in 0usize..6) {
            let len = [32u8, 40, 48, 56, 64, 96][i];
            let x = nat64_embed(Ipv6Addr::from(p), len, Ipv4Addr::from(v)).unwrap();
            prop_assert_eq!(nat64_extract(x, len), Some(Ipv4Addr::from(v)));
            // Octet 8 (the "u" octet) is zero unless the /96 prefix covers it.
            if len < 96 {
                prop_assert_eq!(x.octets()[8], 0);
            }
            prop_assert_eq!(x.mask(len), Ipv6Addr::from(p).mask(len));
        }

        #[test]
        fn solicited_node_keeps_low_24_bits(x in any::<u128>()) {
            let s = Ipv6Addr::from(x).solicited_node();
            prop_assert!(s.is_solicited_node());
            prop_assert_eq!(u128::from(s) & 0xFF_FFFF, x & 0xFF_FFFF);
            prop_assert_eq!(s.mcast_scope(), Some(MulticastScope::LinkLocal));
        }
    }
}
