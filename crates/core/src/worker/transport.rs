//! The transport protocols' input for packets addressed to the router:
//! after verifying checksums, a segment or datagram that matches a socket
//! goes to it (`sockio`); for the rest udp_input answers port unreachable,
//! tcp_input a closed-port RST (RFC 793).

use super::*;
use softnet_wire::tcp::MIN_HEADER_LEN as TCP_MIN_HEADER;
use softnet_wire::udp::{self, UdpPacket};

impl WorkerState {
    pub(super) fn udp_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, p: PacketBuf, bcast: bool) {
        let ts = &cx.stats.transport;
        ts.udp_ipackets.inc();
        let ip = Ipv4Packet::new_unchecked(p.data());
        let (src, dst) = (ip.src(), ip.dst());
        let payload = ip.payload();
        if payload.len() < udp::HEADER_LEN {
            ts.udp_hdrops.inc();
            return self.free(p);
        }
        let ulen = UdpPacket::new_unchecked(payload).len() as usize;
        if ulen < udp::HEADER_LEN || ulen > payload.len() {
            ts.udp_badlen.inc();
            return self.free(p);
        }
        let udp = UdpPacket::new_unchecked(&payload[..ulen]);
        if udp.checksum() != 0 && !udp.verify_checksum(src, dst) {
            ts.udp_badsum.inc();
            return self.free(p);
        }
        let off = ip.header_len() as usize;
        let Some(p) = self.udp_sock_input(cx, p, (off, ulen), src.into(), dst.into()) else { return };
        // Nothing of the stack's listens: the host twin's, if any.
        let Some(p) = self.punt(cx, p) else { return };
        if bcast {
            ts.udp_noportbcast.inc();
        } else {
            // Nothing listens on the router: port unreachable (traceroute's
            // last hop when it targets the router).
            ts.udp_noport.inc();
            self.icmp_error(cx, Some(ifp), &p, bcast, IcmpErr::Unreach(DstUnreachable::PortUnreachable, 0));
        }
        self.free(p);
    }

    pub(super) fn tcp_input(&mut self, cx: &Ctx, _ifp: &Arc<Interface>, p: PacketBuf, bcast: bool) {
        let ts = &cx.stats.transport;
        ts.tcp_rcvtotal.inc();
        let ip = Ipv4Packet::new_unchecked(p.data());
        let (src, dst) = (ip.src(), ip.dst());
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            ts.tcp_rcvshort.inc();
            return self.free(p);
        };
        // A checksum the link vouched for (a TAP's NEEDS_CSUM frame,
        // completed, or a super-segment: `lro`) is not summed again.
        if p.meta.csum & csum_flags::L4_OK == 0 && !tcp.verify_checksum(src, dst) {
            ts.tcp_rcvbadsum.inc();
            return self.free(p);
        }
        let flags = tcp.flags();
        if bcast {
            return self.free(p);
        }
        let off = ip.header_len() as usize;
        let end = off + ip.payload().len();
        let Some(p) = self.tcp_sock_input(cx, p, (off, end), src.into(), dst.into()) else { return };
        // No connection of the stack's: the host twin's, if any.
        let Some(p) = self.punt(cx, p) else { return };
        if flags.contains(TcpFlags::RST) {
            return self.free(p);
        }
        let ip = Ipv4Packet::new_unchecked(p.data());
        let tcp = TcpPacket::new_unchecked(&p.data()[ip.header_len() as usize..ip.total_len() as usize]);
        let repr = closed_port_rst(&tcp);
        let Some(mut r) = self.pool.alloc() else {
            cx.stats.ip.odropped.inc();
            return self.free(p);
        };
        let ip_repr = Ipv4Repr {
            src: dst,
            dst: src,
            protocol: IpProtocol::TCP,
            ttl: cx.stack.config.default_ttl,
            tos: 0,
            ident: self.next_ip_id(),
            dont_frag: true,
            payload_len: TCP_MIN_HEADER,
        };
        self.free(p);
        if r.rewind(IPV4_MIN_HEADER + TCP_MIN_HEADER).is_err() {
            return self.free(r);
        }
        let buf = r.data_mut();
        ip_repr.emit(&mut buf[..IPV4_MIN_HEADER]);
        repr.emit(&mut buf[IPV4_MIN_HEADER..]);
        let mut t = TcpPacket::new_unchecked(&mut buf[IPV4_MIN_HEADER..]);
        t.fill_checksum(dst, src);
        ts.tcp_sndrst.inc();
        self.ip_output(cx, r);
    }
}

/// RFC 793 "Reset Generation" for a closed port (IPv4 and IPv6 alike): if
/// the segment has an ACK, <SEQ=SEG.ACK><CTL=RST>; else <SEQ=0>
/// <ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, where SEG.LEN counts SYN and FIN.
pub(super) fn closed_port_rst(tcp: &TcpPacket<&[u8]>) -> TcpRepr {
    let flags = tcp.flags();
    let seg_len =
        tcp.payload().len() as u32 + flags.contains(TcpFlags::SYN) as u32 + flags.contains(TcpFlags::FIN) as u32;
    let (seq, ack, rflags) = if flags.contains(TcpFlags::ACK) {
        (tcp.ack_number(), 0, TcpFlags::RST)
    } else {
        (0, tcp.seq_number().wrapping_add(seg_len), TcpFlags::RST | TcpFlags::ACK)
    };
    TcpRepr {
        src_port: tcp.dst_port(),
        dst_port: tcp.src_port(),
        seq,
        ack,
        flags: rflags,
        window: 0,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    }
}
