//! The IPv6 half of the cross-layer parse walk: the fixed header, the
//! extension header chain, ICMPv6 with NDP and MLD, UDP and TCP over IPv6.
//! Shared by the `parse_stack6` property test and the `parse_ipv6`,
//! `parse_icmpv6` and `parse_ndp` fuzz targets (fuzz/).
#![allow(dead_code)]

use std::net::Ipv6Addr;

use softnet_wire::icmpv6::{self, Icmpv6Packet, Icmpv6Repr, ParamProblem};
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::{Ipv6Packet, Ipv6Repr};
use softnet_wire::ipv6ext::{
    self, FragmentHeader, FragmentRepr, OptionsHeader, OptionsRepr, RoutingHeader, RoutingRepr,
};
use softnet_wire::mld::MldRepr;
use softnet_wire::ndp::{self, NdpOption, NdpRepr};
use softnet_wire::tcp::{TcpPacket, TcpRepr};
use softnet_wire::udp::{UdpPacket, UdpRepr};

/// Addresses the fuzz entry points use for checksums.
pub const SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
pub const DST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 2);

/// Parses `b` as an IPv6 packet and everything beneath it. Panics only on
/// a bug: an accessor that panicked after a checked constructor, an offset
/// outside the packet, or a Repr that does not survive emit → parse.
/// Returns the layers that parsed (`super::reached`).
pub fn ip6(b: &[u8]) -> u32 {
    use super::reached;
    quoted(b);
    let Ok(p) = Ipv6Packet::new_checked(b) else { return 0 };
    let r = Ipv6Repr::parse(&p).unwrap();
    let mut out = [0u8; 40];
    r.emit(&mut out);
    assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_unchecked(&out[..])).unwrap(), r);
    let pkt = p.packet();
    for pointer in [0, 42, 70000] {
        let pp = Icmpv6Repr::ParamProblem { code: ParamProblem::UnrecognizedOption, pointer, data: &[] };
        let _ = icmpv6::error_allowed(b, pointer == 42, &pp);
    }
    let mut it = p.ext_headers();
    for h in it.by_ref() {
        let h = match h {
            Ok(h) => h,
            Err(e) => {
                assert!(e.offset <= pkt.len(), "{e:?} outside {} bytes", pkt.len());
                return reached::IPV6;
            }
        };
        assert_eq!(&pkt[h.offset..h.offset + h.bytes.len()], h.bytes);
        match h.kind {
            IpProtocol::HOPOPT | IpProtocol::IPV6_OPTS => {
                for o in h.options().unwrap() {
                    let o = o.expect("the walker checked the options");
                    assert!(o.offset >= h.offset + 2 && o.offset < h.offset + h.bytes.len());
                }
                let v = OptionsHeader::new_checked(h.bytes).unwrap();
                let r = OptionsRepr::parse(&v).unwrap();
                let mut out = vec![0u8; r.header_len()];
                r.emit(&mut out);
                assert_eq!(&out[..], h.bytes);
            }
            IpProtocol::IPV6_ROUTE => {
                let v = RoutingHeader::new_checked(h.bytes).unwrap();
                let _ = (v.is_type0(), v.segments_left());
                let r = RoutingRepr::parse(&v).unwrap();
                let mut out = vec![0u8; r.header_len()];
                r.emit(&mut out);
                assert_eq!(&out[..], h.bytes);
            }
            IpProtocol::IPV6_FRAG => {
                let r = FragmentRepr::parse(&FragmentHeader::new_checked(h.bytes).unwrap()).unwrap();
                let mut out = [0u8; 8];
                r.emit(&mut out);
                assert_eq!(FragmentRepr::parse(&FragmentHeader::new_checked(&out[..]).unwrap()).unwrap(), r);
            }
            _ => {}
        }
    }
    let c = it.summary().expect("walk ended without error");
    assert!(c.upper_offset <= pkt.len() && c.nh_offset < c.upper_offset.max(7));
    if c.is_later_fragment() {
        return reached::IPV6 | reached::EXT;
    }
    let l4 = &pkt[c.upper_offset..];
    let (src, dst) = (p.src(), p.dst());
    reached::IPV6
        | reached::EXT
        | match c.upper {
            IpProtocol::ICMPV6 => icmp6(src, dst, l4),
            IpProtocol::UDP => udp6(l4, src, dst),
            IpProtocol::TCP => tcp6(l4, src, dst),
            _ => 0,
        }
}

/// Parses `b` as an ICMPv6 message from `src` to `dst`; returns the
/// layers that parsed.
pub fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, b: &[u8]) -> u32 {
    use super::reached;
    let Ok(p) = Icmpv6Packet::new_checked(b) else { return 0 };
    let _ = (p.mtu(), p.pointer(), p.echo_ident(), p.data().len());
    let Ok(r) = Icmpv6Repr::parse(src, dst, &p) else { return 0 };
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(src, dst, &mut out);
    let q = Icmpv6Packet::new_checked(&out[..]).unwrap();
    assert!(q.verify_checksum(src, dst));
    assert_eq!(Icmpv6Repr::parse(src, dst, &q).unwrap(), r);
    match r {
        Icmpv6Repr::Ndp(n) => {
            ndp_body(src, dst, n);
            reached::ICMP6 | reached::NDP
        }
        Icmpv6Repr::Mld(m) => {
            mld_body(m);
            reached::ICMP6 | reached::MLD
        }
        // An error quotes the invoking packet (usually cut short).
        _ => {
            if let (true, Some(d)) = (r.is_error(), r.data()) {
                quoted(d);
                if ip6(d) != 0 {
                    return reached::ICMP6 | reached::QUOTED_IP;
                }
            }
            reached::ICMP6
        }
    }
}

/// A quoted packet, cut or not: the view and the walk stay in the quote.
fn quoted(d: &[u8]) {
    let Ok(q) = Ipv6Packet::new_quoted(d) else { return };
    assert!(q.packet().len() <= d.len());
    match q.ext_headers().walk() {
        Ok(c) => assert!(c.upper_offset <= q.packet().len()),
        Err(e) => assert!(e.offset <= q.packet().len()),
    }
}

fn ndp_body(src: Ipv6Addr, dst: Ipv6Addr, n: NdpRepr) {
    let _ = (n.lladdr(), n.mtu(), n.redirected_header(), n.validate(src, dst, 255));
    let _ = n.prefixes().count();
    for o in n.options() {
        let Ok(o) = o else { continue };
        // Every option that parses re-emits to one that parses the same
        // (redirected header and unknown data keep their padding).
        let mut out = vec![0u8; o.buffer_len()];
        assert_eq!(o.emit(&mut out), out.len());
        let back: Vec<_> = ndp::options(&out, 0).collect();
        assert_eq!(back, [Ok(o)]);
        if let NdpOption::RedirectedHeader(d) = o {
            ip6(d);
        }
    }
}

fn mld_body(m: MldRepr) {
    let _ = m.max_resp_delay_ms();
    for r in m.records() {
        let r = r.expect("parse checked the records");
        let _ = r.sources().count();
    }
    if let MldRepr::Query { v2: Some(q), .. } = m {
        let _ = (q.qqi_secs(), q.sources().count());
    }
}

fn udp6(b: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
    let Ok(p) = UdpPacket::new_checked(b) else { return 0 };
    let _ = p.verify_checksum_v6(src, dst);
    let r = UdpRepr::parse(&p).unwrap();
    let mut out = vec![0u8; r.buffer_len()];
    r.emit_with_payload_v6(&mut out, src, dst, p.payload());
    let q = UdpPacket::new_checked(&out[..]).unwrap();
    assert!(q.verify_checksum_v6(src, dst));
    assert_eq!(UdpRepr::parse(&q).unwrap(), r);
    super::reached::UDP
}

fn tcp6(b: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
    let Ok(p) = TcpPacket::new_checked(b) else { return 0 };
    let _ = p.verify_checksum_v6(src, dst);
    let Ok(r) = TcpRepr::parse(&p) else { return 0 };
    let mut out = vec![0u8; r.buffer_len()];
    r.emit_with_payload_v6(&mut out, src, dst, p.payload());
    let q = TcpPacket::new_checked(&out[..]).unwrap();
    assert!(q.verify_checksum_v6(src, dst));
    assert_eq!(TcpRepr::parse(&q).unwrap(), r);
    super::reached::TCP
}

/// Fuzz entry: `data` as an ICMPv6 message between [`SRC`] and [`DST`],
/// its checksum fixed first so the parsers beneath it run.
pub fn icmp6_fixed(data: &[u8]) {
    let mut b = data.to_vec();
    if b.len() >= 8 {
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(SRC, DST);
    }
    icmp6(SRC, DST, &b);
}

/// Fuzz entry: `data` as an NDP message (the first byte picks the type
/// 133..=137, code 0, checksum fixed), and the rest also as a bare options
/// area.
pub fn ndp_fixed(data: &[u8]) {
    let Some((&t, rest)) = data.split_first() else { return };
    let _ = ndp::check_framing(rest, 0);
    for o in ndp::options(rest, 0) {
        if let Err(e) = o {
            assert!(e.offset < rest.len());
        }
    }
    let mut b = vec![133 + t % 5, 0, 0, 0];
    b.extend_from_slice(rest);
    if b.len() >= 8 {
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(SRC, DST);
    }
    icmp6(SRC, DST, &b);
}

/// Fuzz entry: `data` as an IPv6 packet; also as a chain after a fixed
/// header whose next header is the first byte (so the walker runs without
/// the fuzzer having to find a valid fixed header).
pub fn ip6_and_chain(data: &[u8]) {
    ip6(data);
    let Some((&first, rest)) = data.split_first() else { return };
    let r = Ipv6Repr {
        src: SRC,
        dst: DST,
        next_header: IpProtocol(first),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        payload_len: rest.len().min(65535),
    };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut b);
    b[40..].copy_from_slice(&rest[..r.payload_len]);
    ip6(&b);
    let _ = ipv6ext::check_options(rest, 0);
}
