//! IPv6 frames built by hand for the tests that feed a stack's wire.

use softnet_wire::ethernet::{EtherType, MacAddr, HEADER_LEN};
use softnet_wire::icmpv6::Icmpv6Repr;
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::Ipv6Repr;
use std::net::Ipv6Addr;

/// An Ethernet frame carrying IPv6 packet `pkt`.
pub fn frame(dst: MacAddr, src: MacAddr, pkt: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER_LEN + pkt.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&EtherType::IPV6.0.to_be_bytes());
    f.extend_from_slice(pkt);
    f
}

/// An IPv6 packet: header naming `nh`, then `payload`.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, nh: IpProtocol, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let r =
        Ipv6Repr { src, dst, next_header: nh, hop_limit, traffic_class: 0, flow_label: 0, payload_len: payload.len() };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut b);
    b[40..].copy_from_slice(payload);
    b
}

/// An ICMPv6 message with its checksum for `src` -> `dst`.
pub fn icmp(src: Ipv6Addr, dst: Ipv6Addr, repr: &Icmpv6Repr) -> Vec<u8> {
    let mut m = vec![0u8; repr.buffer_len()];
    repr.emit(src, dst, &mut m);
    m
}
