//! The worker's side of pf's `divert-packet` (`crate::sock::divsock`):
//! a packet pf in or pf out left `RouteDecision::DivertPacket(port)` in
//! goes to the divert socket on that port (divert_packet), and what a
//! divert socket's program writes is re-injected (divert_output): out by
//! its route without pf out again, or as received on the interface with
//! the address written, without pf in again.

use super::*;
use crate::sock::divsock::{packet_ok, DivertPcb, Reinject};
use std::net::{IpAddr, Ipv6Addr};

impl WorkerState {
    /// divert_packet / divert6_packet for `p`, which pf in on `in_ifp` or
    /// pf out (`None`) diverted to `port`: the record's address is the
    /// receiving interface's first address of the packet's family (the
    /// unspecified address when it has none, or going out).
    #[cold]
    pub(super) fn divert_packet(&mut self, cx: &Ctx, in_ifp: Option<&Interface>, port: u16, p: PacketBuf) {
        let v6 = p.data().first().is_some_and(|b| b >> 4 == 6);
        let addr: IpAddr = match (in_ifp, v6) {
            (Some(ifp), false) => ifp.addrs().first().map_or(Ipv4Addr::UNSPECIFIED, |a| a.addr).into(),
            (Some(ifp), true) => ifp.inet6().addrs.first().map_or(Ipv6Addr::UNSPECIFIED, |a| a.addr).into(),
            (None, false) => Ipv4Addr::UNSPECIFIED.into(),
            (None, true) => Ipv6Addr::UNSPECIFIED.into(),
        };
        cx.stack.socks.divert_deliver(port, addr, p.data());
        self.free(p);
    }

    /// divert_output for every packet the socket's program wrote.
    pub(super) fn divert_emit(&mut self, cx: &Ctx, pcb: &DivertPcb) {
        let socks = &cx.stack.socks;
        let stats = &socks.divert_stats();
        while let Some(len) = pcb.output_len() {
            let buf = if len + crate::packet::HEADROOM <= self.pool.buf_size() {
                self.pool.alloc()
            } else {
                self.large_pool.alloc()
            };
            let Some(mut p) = buf else {
                cx.stats.ip.odropped.inc();
                return;
            };
            if p.rewind(len).is_err() {
                // A large buffer holds any IP packet; a small one was
                // picked only for what fits.
                pcb.take_output(&mut []);
                stats.errors.fetch_add(1, Ordering::Relaxed);
                self.free(p);
                continue;
            }
            let Some((n, to)) = pcb.take_output(p.data_mut()) else {
                self.free(p);
                return;
            };
            stats.opackets.fetch_add(1, Ordering::Relaxed);
            if n != len || !packet_ok(p.data()) {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                self.free(p);
                continue;
            }
            p.meta = PacketMeta::default();
            match to {
                Reinject::Out => self.divert_out(cx, p),
                Reinject::In(addr) => {
                    let ifs = cx.ifs;
                    let ifp = match addr {
                        IpAddr::V4(a) => ifs.owner_of(a),
                        IpAddr::V6(a) => ifs.owner_of6(a),
                    };
                    match ifp {
                        Some(ifp) => {
                            let ifp = ifp.clone();
                            self.divert_in(cx, &ifp, p);
                        }
                        None => {
                            // EADDRNOTAVAIL
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                            self.free(p);
                        }
                    }
                }
            }
        }
        // What the re-injected packets left to forward.
        self.forward_batch(cx);
        self.forward6_batch(cx);
    }

    /// divert_output to the unspecified address: ip_output with
    /// IP_RAWOUTPUT (the header as written, its checksum filled in), past
    /// pf out, which diverted it.
    fn divert_out(&mut self, cx: &Ctx, mut p: PacketBuf) {
        if p.data()[0] >> 4 == 4 {
            Ipv4Packet::new_unchecked(p.data_mut()).fill_checksum();
            self.ip_output_past_pf(cx, p);
        } else {
            self.ip6_output_past_pf(cx, p);
        }
    }

    /// divert_output to one of the router's addresses: ipv4_input /
    /// ip6_input on its interface, past pf in, which diverted it, with
    /// the IP and transport checksums computed again (the program may
    /// have changed the packet).
    fn divert_in(&mut self, cx: &Ctx, ifp: &Arc<Interface>, mut p: PacketBuf) {
        p.meta.rcvif = ifp.index();
        if p.data()[0] >> 4 == 4 {
            fill_checksums4(p.data_mut());
            self.ip_input_filtered(cx, ifp, p, false);
        } else {
            fill_checksums6(p.data_mut());
            self.ip6_input_translated(cx, ifp, p);
        }
    }
}

/// The IPv4 header's checksum and, for a TCP or UDP packet that is not
/// a fragment, its transport checksum (in_proto_cksum_out).
fn fill_checksums4(d: &mut [u8]) {
    let mut ip = Ipv4Packet::new_unchecked(&mut *d);
    ip.fill_checksum();
    if ip.is_fragment() {
        return;
    }
    let (src, dst, proto, hl) = (ip.src(), ip.dst(), ip.protocol(), ip.header_len() as usize);
    let l4 = &mut d[hl..];
    match proto {
        IpProtocol::TCP if l4.len() >= softnet_wire::tcp::MIN_HEADER_LEN => {
            TcpPacket::new_unchecked(l4).fill_checksum(src, dst)
        }
        IpProtocol::UDP if l4.len() >= softnet_wire::udp::HEADER_LEN => {
            softnet_wire::udp::UdpPacket::new_unchecked(l4).fill_checksum(src, dst)
        }
        IpProtocol::ICMP if l4.len() >= 8 => icmpv4::Icmpv4Packet::new_unchecked(l4).fill_checksum(),
        _ => {}
    }
}

/// The transport checksum of an IPv6 TCP, UDP or ICMPv6 packet right
/// after the fixed header (in6_proto_cksum_out); other packets are left
/// as written.
fn fill_checksums6(d: &mut [u8]) {
    use softnet_wire::ipv6::{Ipv6Packet, HEADER_LEN as H6};
    let ip = Ipv6Packet::new_unchecked(&*d);
    let (src, dst, nh) = (ip.src(), ip.dst(), ip.next_header());
    let l4 = &mut d[H6..];
    match nh {
        IpProtocol::TCP if l4.len() >= softnet_wire::tcp::MIN_HEADER_LEN => {
            TcpPacket::new_unchecked(l4).fill_checksum_v6(src, dst)
        }
        IpProtocol::UDP if l4.len() >= softnet_wire::udp::HEADER_LEN => {
            softnet_wire::udp::UdpPacket::new_unchecked(l4).fill_checksum_v6(src, dst)
        }
        IpProtocol::ICMPV6 if l4.len() >= 8 => {
            softnet_wire::icmpv6::Icmpv6Packet::new_unchecked(l4).fill_checksum(src, dst)
        }
        _ => {}
    }
}
