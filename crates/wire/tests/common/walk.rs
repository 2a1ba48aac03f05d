//! The cross-layer parse walk (IPv6 in walk6.rs) shared by the `parse_stack` property test and
//! the `parse_frame` fuzz target (fuzz/), which includes this file.
#![allow(dead_code)]

use softnet_wire::arp::{ArpPacket, ArpRepr};
use softnet_wire::ethernet::{EtherType, EthernetFrame, EthernetRepr};
use softnet_wire::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use softnet_wire::ipv4::{self, IpProtocol, Ipv4Packet, Ipv4Repr};
use softnet_wire::tcp::{TcpOptions, TcpPacket, TcpRepr};
use softnet_wire::udp::{UdpPacket, UdpRepr};

#[path = "walk6.rs"]
pub mod walk6;

/// The layers a walk reached: a bit for each Repr that parsed, so that a
/// test can tell a walk through every layer from parsers that rejected
/// everything.
pub mod reached {
    pub const ETH: u32 = 1 << 0;
    pub const ARP: u32 = 1 << 1;
    pub const IPV4: u32 = 1 << 2;
    pub const ICMP: u32 = 1 << 3;
    pub const UDP: u32 = 1 << 4;
    pub const TCP: u32 = 1 << 5;
    /// The IP packet an ICMP error quotes (its header at least).
    pub const QUOTED_IP: u32 = 1 << 6;
    pub const IPV6: u32 = 1 << 7;
    pub const ICMP6: u32 = 1 << 8;
    pub const NDP: u32 = 1 << 9;
    pub const MLD: u32 = 1 << 10;
    /// An IPv6 extension header chain walked to its upper layer.
    pub const EXT: u32 = 1 << 11;
}

/// Parses `data` as an Ethernet frame and everything beneath it, and also
/// as a bare IPv4 packet. Panics only on a bug: an accessor that panicked
/// after a checked constructor, or a Repr that does not survive emit → parse.
pub fn frame(data: &[u8]) {
    frame_reached(data);
}

/// [`frame`], returning the layers of the Ethernet frame that parsed
/// ([`reached`]; the bare-packet walks do not count).
pub fn frame_reached(data: &[u8]) -> u32 {
    // Also treat the input as a bare IPv4 packet, so the fuzzer does not
    // have to find an Ethernet header first.
    ip(data);
    walk6::ip6(data);
    let Ok(f) = EthernetFrame::new_checked(data) else {
        return 0;
    };
    let r = EthernetRepr::parse(&f).unwrap();
    let mut h = [0u8; 18];
    r.emit(&mut h);
    assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&h[..r.header_len()]).unwrap()).unwrap(), r);
    reached::ETH
        | match f.ethertype() {
            EtherType::ARP => arp(f.payload()),
            EtherType::IPV4 => ip(f.payload()),
            EtherType::IPV6 => walk6::ip6(f.payload()),
            _ => 0,
        }
}

fn arp(b: &[u8]) -> u32 {
    let Ok(p) = ArpPacket::new_checked(b) else { return 0 };
    let r = ArpRepr::parse(&p).unwrap();
    let mut out = [0u8; ArpRepr::LEN];
    r.emit(&mut out);
    assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&out[..]).unwrap()).unwrap(), r);
    reached::ARP
}

/// The layers beneath an IPv4 header reached; `IPV4` when its Repr parsed.
fn ip(b: &[u8]) -> u32 {
    let Ok(p) = Ipv4Packet::new_checked(b) else { return 0 };
    let _ = (p.verify_checksum(), p.is_fragment(), p.frag_offset(), p.dscp());
    let opts = p.options();
    let checked = ipv4::check_options(opts);
    let _ = ipv4::has_source_route(opts);
    let mut copied = [0u8; 40];
    let n = ipv4::copy_options(opts, &mut copied);
    if checked.is_ok() {
        assert!(ipv4::check_options(&copied[..n]).is_ok());
    }
    let mut got = 0;
    if let Ok(r) = Ipv4Repr::parse(&p) {
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut out);
        assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_checked(&out[..]).unwrap()).unwrap(), r);
        got = reached::IPV4;
    }
    let (src, dst) = (p.src(), p.dst());
    let payload = p.payload();
    got | match p.protocol() {
        IpProtocol::ICMP => icmp(payload),
        IpProtocol::UDP => udp(payload, src, dst),
        IpProtocol::TCP => tcp(payload, src, dst),
        _ => 0,
    }
}

fn icmp(b: &[u8]) -> u32 {
    let Ok(p) = Icmpv4Packet::new_checked(b) else { return 0 };
    let Ok(r) = Icmpv4Repr::parse(&p) else { return 0 };
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut out);
    assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&out[..]).unwrap()).unwrap(), r);
    // An error quotes an IP header: parse it too (it is usually cut short).
    if r.is_error() && ip(r.data()) != 0 {
        return reached::ICMP | reached::QUOTED_IP;
    }
    reached::ICMP
}

fn udp(b: &[u8], src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr) -> u32 {
    let Ok(p) = UdpPacket::new_checked(b) else { return 0 };
    let _ = p.verify_checksum(src, dst);
    let r = UdpRepr::parse(&p).unwrap();
    let mut out = vec![0u8; r.buffer_len()];
    r.emit_with_payload(&mut out, src, dst, p.payload());
    let q = UdpPacket::new_checked(&out[..]).unwrap();
    assert!(q.verify_checksum(src, dst));
    assert_eq!(UdpRepr::parse(&q).unwrap(), r);
    reached::UDP
}

fn tcp(b: &[u8], src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr) -> u32 {
    let Ok(p) = TcpPacket::new_checked(b) else { return 0 };
    let _ = (p.verify_checksum(src, dst), p.flags().to_string(), p.segment_len());
    for o in TcpOptions::new(p.options()) {
        let _ = o;
    }
    let Ok(r) = TcpRepr::parse(&p) else { return 0 };
    let mut out = vec![0u8; r.buffer_len()];
    r.emit_with_payload(&mut out, src, dst, p.payload());
    let q = TcpPacket::new_checked(&out[..]).unwrap();
    assert!(q.verify_checksum(src, dst));
    assert_eq!(TcpRepr::parse(&q).unwrap(), r);
    reached::TCP
}
