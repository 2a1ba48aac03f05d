//! IPv6 output (OpenBSD's ip6_output.c with nd6_resolve): `ip6_output`
//! for what the router sends itself (route, fragment only if it must, RFC
//! 8200 §4.5; a TCP super-segment whole to a device with segmentation
//! offload, else cut by `gso_out6`), `route6` (the route of a destination, link-local ones by
//! their scope), `ether_out6` (Ethernet
//! header, multicast MAC or the neighbor cache through the worker's cache,
//! solicitations sent) and the staging.

use super::icmp6::Icmp6Err;
use super::*;
use softnet_wire::icmpv6::DstUnreachable as Unreach6;
use softnet_wire::ipv6::{multicast_mac, Ipv6AddrExt, Ipv6Packet, HEADER_LEN as IPV6_HEADER};
use softnet_wire::ipv6ext::{FragmentRepr, FRAGMENT_HEADER_LEN};
use std::net::Ipv6Addr;

/// The interface, next hop and MTU for `dst`: a link-local or multicast
/// destination leaves by its scope (`scope`, the interface the packet
/// answers); others by the longest matching route (an on-link one by its
/// prefix's connected route).
pub(super) fn route6<'a>(
    cx: &Ctx<'a>,
    dst: Ipv6Addr,
    scope: Option<IfIndex>,
) -> Option<(&'a Arc<Interface>, Ipv6Addr, usize)> {
    if dst.is_multicast() || dst.is_link_local_unicast() {
        let ifp = scope.and_then(|s| cx.ifs.get(s)).filter(|i| i.is_up())?;
        return Some((ifp, dst, ifp.mtu() as usize));
    }
    match cx.rt6.and_then(|t| t.lookup(dst)) {
        Some(r) => {
            if r.flags.intersects(RouteFlags::REJECT | RouteFlags::BLACKHOLE) {
                return None;
            }
            if r.flags.contains(RouteFlags::LOCAL) {
                // One of ours: out through lo0 (crate::loopback).
                let lo = cx.ifs.by_name(crate::loopback::LO0).filter(|i| i.is_up() && i.is_loopback())?;
                return Some((lo, dst, lo.mtu() as usize));
            }
            let ifp = cx.ifs.get_weak(r.ifp).filter(|i| i.is_up())?;
            let mtu = if r.mtu != 0 { r.mtu.min(ifp.mtu()) } else { ifp.mtu() } as usize;
            Some((ifp, r.gateway.unwrap_or(dst), mtu))
        }
        None => None,
    }
}

impl WorkerState {
    /// Sends a packet the router originates (an echo reply, an ICMPv6
    /// error, a RST, a filter's reply): route it, pf out (not for the
    /// filter's own replies, `PF_GENERATED`), then out, fragmented if it
    /// must be. `scope`: the interface a link-local or multicast
    /// destination is on.
    pub(super) fn ip6_output(&mut self, cx: &Ctx, p: PacketBuf, scope: Option<IfIndex>) {
        let pf = p.meta.flags & mflags::PF_GENERATED == 0;
        self.ip6_output_with(cx, p, scope, pf)
    }

    /// `ip6_output` for a packet a divert socket wrote back: pf out
    /// diverted it, and it does not meet pf out again (`divpkt.rs`).
    pub(super) fn ip6_output_past_pf(&mut self, cx: &Ctx, p: PacketBuf) {
        self.ip6_output_with(cx, p, None, false)
    }

    /// `ip6_output`, with pf out (`pf`) or without.
    fn ip6_output_with(&mut self, cx: &Ctx, p: PacketBuf, scope: Option<IfIndex>, pf: bool) {
        let s = &cx.stats.ip6;
        s.localout.inc();
        let ip = Ipv6Packet::new_unchecked(p.data());
        let (src, dst) = (ip.src(), ip.dst());
        let Some((ifp, next_hop, mtu)) = route6(cx, dst, scope) else {
            s.noroute.inc();
            return self.free(p);
        };
        let p = match cx.filter {
            Some(f) if pf => match self.local_out_filter(cx, f, ifp, p) {
                Some(p) => p,
                None => return,
            },
            _ => p,
        };
        if p.meta.flags & mflags::TSO != 0 {
            // A TCP super-segment pf out passed whole (its state's window
            // covers all of it): past the MTU check, as ip_output's, whole
            // to a device that cuts it, cut here for any other way out.
            if p.meta.pf_route == RouteDecision::None && p.len() <= ifp.tso_max() as usize {
                return self.ether_out6(cx, ifp, next_hop, src, p);
            }
            return self.gso_out6(cx, ifp, next_hop, p, mtu);
        }
        let Some(p) = self.pf_route6(cx, None, p) else { return };
        if p.len() > mtu {
            return self.fragment6(cx, ifp, next_hop, p, mtu);
        }
        self.ether_out6(cx, ifp, next_hop, src, p);
    }

    /// `ip_output`'s `gso_out` for IPv6: a TCP super-segment that cannot
    /// leave whole (its interface has no segmentation offload, or pf routes
    /// it elsewhere) cut into segments of its MSS (`gso::segment_tcp`, each
    /// with its checksum), each then on the way an ordinary segment takes
    /// after pf out (pf's route-to / dup-to, or the route's interface).
    fn gso_out6(&mut self, cx: &Ctx, ifp: &Arc<Interface>, next_hop: Ipv6Addr, p: PacketBuf, mtu: usize) {
        let mut meta = p.meta;
        meta.flags &= !mflags::TSO;
        let mss = std::mem::take(&mut meta.pf_frag_max) as usize;
        let src = Ipv6Packet::new_unchecked(p.data()).src();
        // pf's route-to / dup-to next hop is the buffer's, not the
        // metadata's: each piece gets it too.
        let hop6 = p.pf_hop6;
        let mut segs = std::mem::take(&mut self.gso_scratch);
        let pool = &mut self.pool;
        let r = crate::gso::segment_tcp(p.data(), 0, mss, || pool.alloc(), |s| segs.push(s));
        self.free(p);
        if r.is_err() {
            // Buffers ran out: what was cut goes, the rest is the
            // engine's to send again.
            cx.stats.ip6.odropped.inc();
        }
        for mut s in segs.drain(..) {
            s.meta = meta;
            s.pf_hop6 = hop6;
            let Some(s) = self.pf_route6(cx, None, s) else { continue };
            if s.len() > mtu {
                self.fragment6(cx, ifp, next_hop, s, mtu);
            } else {
                self.ether_out6(cx, ifp, next_hop, src, s);
            }
        }
        self.gso_scratch = segs;
    }

    /// RFC 8200 §4.5 for the router's own packets (which carry no
    /// extension headers: the unfragmentable part is the fixed header):
    /// fragments of a multiple of 8 bytes, one random identification.
    pub(super) fn fragment6(&mut self, cx: &Ctx, ifp: &Arc<Interface>, next_hop: Ipv6Addr, p: PacketBuf, mtu: usize) {
        let s = &cx.stats.ip6;
        let d = p.data();
        let ip = Ipv6Packet::new_unchecked(d);
        let (src, nh) = (ip.src(), ip.next_header());
        let payload = ip.payload();
        let room = mtu.saturating_sub(IPV6_HEADER + FRAGMENT_HEADER_LEN) & !7;
        if room == 0 || softnet_wire::ipv6ext::is_ext_header(nh) {
            s.cantfrag.inc();
            return self.free(p);
        }
        s.fragmented.inc();
        let ident = crate::rng::random_u32();
        let mut pos = 0;
        while pos < payload.len() {
            let chunk = room.min(payload.len() - pos);
            let last = pos + chunk == payload.len();
            let Some(mut f) = self.pool.alloc() else {
                s.odropped.inc();
                break;
            };
            let len = IPV6_HEADER + FRAGMENT_HEADER_LEN + chunk;
            if f.rewind(len).is_err() {
                self.free(f);
                s.odropped.inc();
                break;
            }
            let fb = f.data_mut();
            fb[..IPV6_HEADER].copy_from_slice(&d[..IPV6_HEADER]);
            let frag = FragmentRepr { next_header: nh, frag_offset: pos as u16, more_frags: !last, ident };
            frag.emit(&mut fb[IPV6_HEADER..IPV6_HEADER + FRAGMENT_HEADER_LEN]);
            fb[IPV6_HEADER + FRAGMENT_HEADER_LEN..].copy_from_slice(&payload[pos..pos + chunk]);
            {
                let mut fip = Ipv6Packet::new_unchecked(&mut fb[..]);
                fip.set_next_header(IpProtocol::IPV6_FRAG);
                fip.set_payload_len((len - IPV6_HEADER) as u16);
            }
            f.meta = p.meta;
            s.ofragments.inc();
            self.ether_out6(cx, ifp, next_hop, src, f);
            pos += chunk;
        }
        self.free(p);
    }

    /// ether_output for IPv6: the Ethernet header, then the link
    /// destination (`resolve_out6`). `src` is the packet's IPv6 source
    /// (the solicitation's source when it is one of ours).
    pub(super) fn ether_out6(
        &mut self,
        cx: &Ctx,
        ifp: &Arc<Interface>,
        next_hop: Ipv6Addr,
        src: Ipv6Addr,
        mut p: PacketBuf,
    ) {
        if p.capacity() != self.pool.buf_size() && !(p.meta.flags & mflags::TSO != 0 && ifp.tso_max() != 0) {
            // A reassembled datagram (an echo reply to it) that fits the
            // link: into a normal buffer, so the large one returns to its
            // pool. (A TCP super-segment for a device that cuts it stays
            // whole.)
            let Some(mut q) = self.pool.alloc() else {
                cx.stats.ip6.odropped.inc();
                return self.free(p);
            };
            if q.set_len(p.len()).is_err() {
                cx.stats.ip6.odropped.inc();
                self.free(q);
                return self.free(p);
            }
            q.data_mut().copy_from_slice(p.data());
            q.meta = p.meta;
            self.free(p);
            p = q;
        }
        if p.push_front(HEADER_LEN).is_err() {
            cx.stats.ip6.odropped.inc();
            return self.free(p);
        }
        {
            let b = p.data_mut();
            b[6..12].copy_from_slice(&ifp.mac().0);
            b[12..14].copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
        }
        self.resolve_out6(cx, ifp, next_hop, src, p);
    }

    /// nd6_resolve for a whole frame: a multicast next hop maps to its
    /// MAC (RFC 2464 §7); a unicast one goes through the worker's cache
    /// and the neighbor table (held, with a solicitation, until answered).
    pub(super) fn resolve_out6(
        &mut self,
        cx: &Ctx,
        ifp: &Arc<Interface>,
        next_hop: Ipv6Addr,
        src: Ipv6Addr,
        p: PacketBuf,
    ) {
        let mut p = p;
        if ifp.is_loopback() {
            // looutput: no resolution, back in at the next poll.
            set_dst(&mut p, ifp.mac());
            return self.stage(cx, ifp.index(), p);
        }
        if next_hop.is_multicast() {
            set_dst(&mut p, multicast_mac(next_hop));
            return self.stage(cx, ifp.index(), p);
        }
        let nd_cache = &mut self.icmp6.nd_cache;
        match cx.stack.nd6.resolve(cx.now, ifp, next_hop, src, p, nd_cache, &cx.stats.nd6) {
            crate::nd6::Nd6Resolve::Resolved(mac, mut p) => {
                set_dst(&mut p, mac);
                self.stage(cx, ifp.index(), p);
            }
            crate::nd6::Nd6Resolve::Held { solicit, dropped } => {
                if let Some(d) = dropped {
                    cx.stats.ip6.odropped.inc();
                    self.free(d);
                }
                if let Some(req) = solicit {
                    self.send_ns(cx, ifp, &req);
                }
            }
            crate::nd6::Nd6Resolve::Dropped(p) => {
                cx.stats.ip6.odropped.inc();
                self.free(p);
            }
        }
    }
}

/// The error a forwarded packet without a way out gets (ip6_forward's
/// ICMP6_DST_UNREACH_NOROUTE).
pub(super) const NO_ROUTE: Icmp6Err = Icmp6Err::Unreach(Unreach6::NoRoute);
