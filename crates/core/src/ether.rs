//! Frame builders shared by the data path and the control thread.

use crate::packet::{BufferTooSmall, PacketBuf};
use softnet_wire::arp::ArpRepr;
use softnet_wire::ethernet::{EtherType, EthernetRepr, MacAddr, HEADER_LEN};
use softnet_wire::icmpv6::Icmpv6Repr;
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::Ipv6Repr;
use softnet_wire::ndp::{NaFlags, NdpOption, NdpRepr};
use std::net::Ipv6Addr;

/// Writes an Ethernet header carrying an ARP message into `p` (replacing
/// its contents).
pub fn build_arp_frame(p: &mut PacketBuf, src: MacAddr, dst: MacAddr, arp: &ArpRepr) -> Result<(), BufferTooSmall> {
    // ARP frames are padded to the 60-byte Ethernet minimum.
    let len = (HEADER_LEN + ArpRepr::LEN).max(60);
    p.rewind(len)?;
    let buf = p.data_mut();
    buf.fill(0);
    EthernetRepr { src, dst, ethertype: EtherType::ARP, vlan: None }.emit(buf);
    arp.emit(&mut buf[HEADER_LEN..HEADER_LEN + ArpRepr::LEN]);
    Ok(())
}

/// Prepends an Ethernet header for an IPv4 packet that starts at `data()`;
/// the destination is filled in later (after ARP).
#[inline]
pub fn prepend_ipv4_header(p: &mut PacketBuf, src: MacAddr) -> Result<(), BufferTooSmall> {
    p.push_front(HEADER_LEN)?;
    let b = p.data_mut();
    b[6..12].copy_from_slice(&src.0);
    b[12..14].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
    Ok(())
}

#[inline]
pub fn set_dst(p: &mut PacketBuf, dst: MacAddr) {
    p.data_mut()[0..6].copy_from_slice(&dst.0);
}

/// Writes a whole NDP frame into `p` (replacing its contents): Ethernet,
/// IPv6 with hop limit 255 (RFC 4861 §6.1.2 and §7.1: receivers drop any
/// other) and the ICMPv6 message with its checksum. `lladdr` is the
/// message's link-layer option (source for NS, target for NA).
pub fn build_ndp_frame(
    p: &mut PacketBuf,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: Ipv6Addr,
    dst_ip: Ipv6Addr,
    msg: NdpMsg,
) -> Result<(), BufferTooSmall> {
    let mut opt = [0u8; 8];
    let opts: &[u8] = match msg {
        NdpMsg::Ns { slla: Some(m), .. } => {
            NdpOption::SourceLinkAddr(m).emit(&mut opt);
            &opt
        }
        NdpMsg::Na { tlla, .. } => {
            NdpOption::TargetLinkAddr(tlla).emit(&mut opt);
            &opt
        }
        NdpMsg::Ns { slla: None, .. } => &[],
    };
    let ndp = match msg {
        NdpMsg::Ns { target, .. } => NdpRepr::NeighborSolicit { target, options: opts },
        NdpMsg::Na { target, flags, .. } => NdpRepr::NeighborAdvert { flags, target, options: opts },
    };
    build_ndp_repr_frame(p, src_mac, dst_mac, src_ip, dst_ip, ndp)
}

/// Writes a whole NDP frame carrying `ndp` (any message, its options
/// already laid out) into `p`, as [`build_ndp_frame`].
pub fn build_ndp_repr_frame(
    p: &mut PacketBuf,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: Ipv6Addr,
    dst_ip: Ipv6Addr,
    ndp: NdpRepr<'_>,
) -> Result<(), BufferTooSmall> {
    let icmp = Icmpv6Repr::Ndp(ndp);
    let ip = Ipv6Repr {
        src: src_ip,
        dst: dst_ip,
        next_header: IpProtocol::ICMPV6,
        hop_limit: softnet_wire::ndp::HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
        payload_len: icmp.buffer_len(),
    };
    // At least 78 bytes: never below the Ethernet minimum.
    let len = HEADER_LEN + ip.buffer_len();
    p.rewind(len)?;
    let buf = p.data_mut();
    buf.fill(0);
    EthernetRepr { src: src_mac, dst: dst_mac, ethertype: EtherType::IPV6, vlan: None }.emit(buf);
    ip.emit(&mut buf[HEADER_LEN..]);
    icmp.emit(src_ip, dst_ip, &mut buf[HEADER_LEN + ip.header_len()..len]);
    Ok(())
}

/// The neighbor discovery messages [`build_ndp_frame`] writes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NdpMsg {
    /// A neighbor solicitation; `slla` is omitted for DAD (source ::).
    Ns { target: Ipv6Addr, slla: Option<MacAddr> },
    /// A neighbor advertisement with a target link-layer address option.
    Na { target: Ipv6Addr, flags: NaFlags, tlla: MacAddr },
}

#[cfg(test)]
mod tests {
    use super::*;
    use softnet_wire::icmpv6::Icmpv6Packet;
    use softnet_wire::ipv6::Ipv6Packet;

    fn parse(p: &PacketBuf, check: impl FnOnce(Ipv6Addr, Ipv6Addr, u8, NdpRepr<'_>)) {
        let ip = Ipv6Packet::new_checked(&p.data()[HEADER_LEN..]).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        let (src, dst, hl) = (ip.src(), ip.dst(), ip.hop_limit());
        let Icmpv6Repr::Ndp(n) = Icmpv6Repr::parse(src, dst, &icmp).unwrap() else { panic!("not NDP") };
        check(src, dst, hl, n);
    }

    #[test]
    fn ndp_frames_parse_back_with_hop_limit_255_and_their_options() {
        let mut p = PacketBuf::with_capacity(2048);
        let mac = MacAddr([2, 0, 0, 0, 1, 1]);
        let (src, dst, t): (Ipv6Addr, Ipv6Addr, Ipv6Addr) =
            ("fe80::1".parse().unwrap(), "ff02::1:ff00:2".parse().unwrap(), "fd00:1::2".parse().unwrap());
        build_ndp_frame(
            &mut p,
            mac,
            MacAddr([0x33, 0x33, 0xff, 0, 0, 2]),
            src,
            dst,
            NdpMsg::Ns { target: t, slla: Some(mac) },
        )
        .unwrap();
        assert_eq!(p.len(), 14 + 40 + 32);
        parse(&p, |s, d, hl, n| {
            assert_eq!((s, d, hl), (src, dst, 255));
            assert!(matches!(n, NdpRepr::NeighborSolicit { target, .. } if target == t));
            assert_eq!(n.lladdr(), Ok(Some(mac)));
            assert!(n.validate(s, d, hl).is_ok());
        });

        build_ndp_frame(&mut p, mac, mac, Ipv6Addr::UNSPECIFIED, dst, NdpMsg::Ns { target: t, slla: None }).unwrap();
        parse(&p, |s, d, hl, n| {
            assert_eq!(n.lladdr(), Ok(None), "no option from ::");
            assert!(n.validate(s, d, hl).is_ok(), "a valid DAD solicitation");
        });

        let flags = NaFlags { router: true, solicited: true, override_: true };
        build_ndp_frame(&mut p, mac, mac, t, src, NdpMsg::Na { target: t, flags, tlla: mac }).unwrap();
        parse(&p, |_, _, _, n| {
            assert!(matches!(n, NdpRepr::NeighborAdvert { flags: f, target, .. } if f == flags && target == t));
            assert_eq!(n.lladdr(), Ok(Some(mac)));
        });
    }
}
