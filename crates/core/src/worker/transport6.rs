//! UDP and TCP over IPv6 to the router (the siblings of transport.rs):
//! what matches a socket goes to it (`sockio`); for the rest udp6_input
//! answers port unreachable, tcp6_input a closed-port RST (RFC 9293 §3.10.7.1), after verifying
//! checksums (a zero UDP checksum is invalid over IPv6, RFC 8200 §8.1).

use super::icmp6::{Icmp6Err, IP6_DEFHLIM};
use super::transport::closed_port_rst;
use super::*;
use softnet_wire::ipv6::{Ipv6Packet, Ipv6Repr, HEADER_LEN as IPV6_HEADER};
use softnet_wire::tcp::MIN_HEADER_LEN as TCP_MIN_HEADER;

impl WorkerState {
    /// UDP to the router: nothing listens, so a port unreachable (RFC 4443
    /// §3.1 code 4) for a datagram with a good checksum to a unicast
    /// address (udp6_input's ICMP6_DST_UNREACH_NOPORT).
    pub(super) fn udp6_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, p: PacketBuf, off: usize, link_mcast: bool) {
        let ts = &cx.stats.transport;
        ts.udp_ipackets.inc();
        let ip = Ipv6Packet::new_unchecked(p.data());
        let (src, dst) = (ip.src(), ip.dst());
        let Ok(udp) = softnet_wire::udp::UdpPacket::new_checked(&p.data()[off..]) else {
            ts.udp_hdrops.inc();
            return self.free(p);
        };
        // RFC 8200 §8.1: a zero UDP checksum is invalid over IPv6.
        if udp.checksum() == 0 || !udp.verify_checksum_v6(src, dst) {
            ts.udp_badsum.inc();
            return self.free(p);
        }
        let ulen = udp.len() as usize;
        let p = if !dst.is_multicast() && !link_mcast {
            let Some(p) = self.udp_sock_input(cx, p, (off, ulen), src.into(), dst.into()) else { return };
            p
        } else {
            p
        };
        // Nothing of the stack's listens: the host twin's, if any.
        let Some(p) = self.punt(cx, p) else { return };
        if dst.is_multicast() || link_mcast {
            ts.udp_noportbcast.inc();
            return self.free(p);
        }
        self.udp6_noport(cx, ifp, p, link_mcast)
    }

    /// No socket took a unicast datagram: port unreachable.
    fn udp6_noport(&mut self, cx: &Ctx, ifp: &Arc<Interface>, p: PacketBuf, link_mcast: bool) {
        cx.stats.transport.udp_noport.inc();
        let e = Icmp6Err::Unreach(softnet_wire::icmpv6::DstUnreachable::PortUnreachable);
        self.icmp6_error(cx, ifp, &p, link_mcast, e);
        self.free(p)
    }

    /// TCP to the router: a RST for anything but a RST, unless it came to
    /// a multicast address (tcp_input's dropwithreset rules).
    pub(super) fn tcp6_input(&mut self, cx: &Ctx, p: PacketBuf, off: usize, link_mcast: bool) {
        let ts = &cx.stats.transport;
        ts.tcp_rcvtotal.inc();
        let ip = Ipv6Packet::new_unchecked(p.data());
        let (src, dst) = (ip.src(), ip.dst());
        let Ok(tcp) = TcpPacket::new_checked(&p.data()[off..]) else {
            ts.tcp_rcvshort.inc();
            return self.free(p);
        };
        // A checksum the link vouched for (`lro`) is not summed again.
        if p.meta.csum & csum_flags::L4_OK == 0 && !tcp.verify_checksum_v6(src, dst) {
            ts.tcp_rcvbadsum.inc();
            return self.free(p);
        }
        let flags = tcp.flags();
        if dst.is_multicast() || link_mcast {
            return self.free(p);
        }
        let end = p.len();
        let Some(p) = self.tcp_sock_input(cx, p, (off, end), src.into(), dst.into()) else { return };
        // No connection of the stack's: the host twin's, if any.
        let Some(p) = self.punt(cx, p) else { return };
        if flags.contains(TcpFlags::RST) {
            return self.free(p);
        }
        let repr = closed_port_rst(&TcpPacket::new_unchecked(&p.data()[off..]));
        let rcvif = p.meta.rcvif;
        let Some(mut r) = self.pool.alloc() else {
            cx.stats.ip6.odropped.inc();
            return self.free(p);
        };
        self.free(p);
        let ip_repr = Ipv6Repr {
            src: dst,
            dst: src,
            next_header: IpProtocol::TCP,
            hop_limit: IP6_DEFHLIM,
            traffic_class: 0,
            flow_label: 0,
            payload_len: TCP_MIN_HEADER,
        };
        if r.rewind(IPV6_HEADER + TCP_MIN_HEADER).is_err() {
            return self.free(r);
        }
        let buf = r.data_mut();
        ip_repr.emit(&mut buf[..IPV6_HEADER]);
        repr.emit_with_payload_v6(&mut buf[IPV6_HEADER..], dst, src, &[]);
        ts.tcp_sndrst.inc();
        self.ip6_output(cx, r, Some(rcvif));
    }
}
