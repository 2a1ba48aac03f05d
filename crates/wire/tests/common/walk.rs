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

/// Parses `data` as an Ethernet frame and everything beneath it, and also
/// as a bare IPv4 packet. Panics only on a bug: an accessor that panicked
/// after a checked constructor, or a Repr that does not survive emit → parse.
pub fn frame(data: &[u8]) {
    // Also treat the input as a bare IPv4 packet, so the fuzzer does not
    // have to find an Ethernet header first.
    ip(data);
    walk6::ip6(data);
    let Ok(f) = EthernetFrame::new_checked(data) else {
        return;
    };
    let r = EthernetRepr::parse(&f).unwrap();
    let mut h = [0u8; 18];
    r.emit(&mut h);
    assert_eq!(EthernetRepr::parse(&EthernetFrame::new_checked(&h[..r.header_len()]).unwrap()).unwrap(), r);
    match f.ethertype() {
        EtherType::ARP => arp(f.payload()),
        EtherType::IPV4 => ip(f.payload()),
        EtherType::IPV6 => walk6::ip6(f.payload()),
        _ => {}
    }
}

fn arp(b: &[u8]) {
    let Ok(p) = ArpPacket::new_checked(b) else { return };
    let r = ArpRepr::parse(&p).unwrap();
    let mut out = [0u8; ArpRepr::LEN];
    r.emit(&mut out);
    assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&out[..]).unwrap()).unwrap(), r);
}

fn ip(b: &[u8]) {
    let Ok(p) = Ipv4Packet::new_checked(b) else { return };
    let _ = (p.verify_checksum(), p.is_fragment(), p.frag_offset(), p.dscp());
    let opts = p.options();
    let checked = ipv4::check_options(opts);
    let _ = ipv4::has_source_route(opts);
    let mut copied = [0u8; 40];
    let n = ipv4::copy_options(opts, &mut copied);
    if checked.is_ok() {
        assert!(ipv4::check_options(&copied[..n]).is_ok());
    }
    if let Ok(r) = Ipv4Repr::parse(&p) {
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut out);
        assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_checked(&out[..]).unwrap()).unwrap(), r);
    }
    let (src, dst) = (p.src(), p.dst());
    let payload = p.payload();
    match p.protocol() {
        IpProtocol::ICMP => icmp(payload),
        IpProtocol::UDP => udp(payload, src, dst),
        IpProtocol::TCP => tcp(payload, src, dst),
        _ => {}
    }
}

fn icmp(b: &[u8]) {
    let Ok(p) = Icmpv4Packet::new_checked(b) else { return };
    let Ok(r) = Icmpv4Repr::parse(&p) else { return };
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut out);
    assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&out[..]).unwrap()).unwrap(), r);
    // An error quotes an IP header: parse it too (it is usually cut short).
    if r.is_error() {
        ip(r.data());
    }
}

fn udp(b: &[u8], src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr) {
    let Ok(p) = UdpPacket::new_checked(b) else { return };
    let _ = p.verify_checksum(src, dst);
    let r = UdpRepr::parse(&p).unwrap();
    let mut out = vec![0u8; r.buffer_len()];
    r.emit_with_payload(&mut out, src, dst, p.payload());
    let q = UdpPacket::new_checked(&out[..]).unwrap();
    assert!(q.verify_checksum(src, dst));
    assert_eq!(UdpRepr::parse(&q).unwrap(), r);
}

fn tcp(b: &[u8], src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr) {
    let Ok(p) = TcpPacket::new_checked(b) else { return };
    let _ = (p.verify_checksum(src, dst), p.flags().to_string(), p.segment_len());
    for o in TcpOptions::new(p.options()) {
        let _ = o;
    }
    let Ok(r) = TcpRepr::parse(&p) else { return };
    let mut out = vec![0u8; r.buffer_len()];
    r.emit_with_payload(&mut out, src, dst, p.payload());
    let q = TcpPacket::new_checked(&out[..]).unwrap();
    assert!(q.verify_checksum(src, dst));
    assert_eq!(TcpRepr::parse(&q).unwrap(), r);
}
