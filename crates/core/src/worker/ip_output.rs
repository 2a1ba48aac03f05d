//! IPv4 output (OpenBSD's ip_output.c): `ip_output` for what the router
//! sends itself (route, pf out, fragment or not) and `fragment`
//! (ip_fragment, RFC 791); both end in `ether_out`.

use super::*;

impl WorkerState {
    /// Sends a packet the router originates (an ICMP message, a RST, a
    /// filter's reply): route it, pf out (not for the filter's replies),
    /// then out as forwarding would.
    pub(super) fn ip_output(&mut self, cx: &Ctx, p: PacketBuf) {
        let pf = p.meta.flags & mflags::PF_GENERATED == 0;
        self.ip_output_with(cx, p, pf)
    }

    /// `ip_output` for a packet a divert socket wrote back: pf out
    /// diverted it, and it does not meet pf out again (`divpkt.rs`).
    pub(super) fn ip_output_past_pf(&mut self, cx: &Ctx, p: PacketBuf) {
        self.ip_output_with(cx, p, false)
    }

    /// `ip_output`, with pf out (`pf`) or without.
    fn ip_output_with(&mut self, cx: &Ctx, p: PacketBuf, pf: bool) {
        let ips = &cx.stats.ip;
        ips.localout.inc();
        let dst = Ipv4Packet::new_unchecked(p.data()).dst();
        let route = cx.rt.lookup(dst);
        let out = route.filter(|r| !r.flags.intersects(RouteFlags::REJECT | RouteFlags::BLACKHOLE));
        // One of ours leaves through lo0 (ip_output's rtable_loindex for
        // RTF_LOCAL, crate::loopback).
        let out_if = |r: &Nhop| match r.flags.contains(RouteFlags::LOCAL) {
            true => cx.ifs.by_name(crate::loopback::LO0).filter(|i| i.is_loopback()),
            false => cx.ifs.get_weak(r.ifp),
        };
        let Some((r, ifp)) = out.and_then(|r| out_if(&r).map(|i| (r, i))).filter(|(_, i)| i.is_up()) else {
            ips.noroute.inc();
            return self.free(p);
        };
        let next_hop = r.gateway.unwrap_or(dst);
        let mtu = if r.mtu != 0 { r.mtu.min(ifp.mtu()) } else { ifp.mtu() } as usize;
        let p = match cx.filter {
            Some(f) if pf => match self.local_out_filter(cx, f, ifp, p) {
                Some(p) => p,
                None => return,
            },
            _ => p,
        };
        if p.meta.flags & mflags::TSO != 0 {
            // A TCP super-segment pf out passed whole (its state's window
            // covers all of it): whole to a device that cuts it, cut here
            // for any other way out.
            if p.meta.pf_route == RouteDecision::None && p.len() <= ifp.tso_max() as usize {
                return self.ether_out(cx, ifp, next_hop, p, None);
            }
            return self.gso_out(cx, ifp, next_hop, p, mtu);
        }
        let p = if p.meta.pf_route != RouteDecision::None {
            // route-to, reply-to, dup-to on the router's own packet.
            match self.pf_route_out(cx, None, p) {
                Some(p) => p,
                None => return,
            }
        } else {
            p
        };
        if p.len() > mtu {
            return self.fragment(cx, ifp, next_hop, p, mtu, None);
        }
        self.ether_out(cx, ifp, next_hop, p, None);
    }

    /// A TCP super-segment that cannot leave whole (its interface has no
    /// segmentation offload, or pf routes it elsewhere): cut into
    /// segments of its MSS (`gso::segment_tcp`, each with its checksum),
    /// each then on the way an ordinary segment takes after pf out (pf's
    /// route-to, or the route's interface).
    fn gso_out(&mut self, cx: &Ctx, ifp: &Arc<Interface>, next_hop: Ipv4Addr, p: PacketBuf, mtu: usize) {
        let mut meta = p.meta;
        meta.flags &= !mflags::TSO;
        let mss = std::mem::take(&mut meta.pf_frag_max) as usize;
        let mut segs = std::mem::take(&mut self.gso_scratch);
        let pool = &mut self.pool;
        let r = crate::gso::segment_tcp(p.data(), 0, mss, || pool.alloc(), |s| segs.push(s));
        self.free(p);
        if r.is_err() {
            // Buffers ran out (or, never from the engine, a bad header):
            // what was cut goes, the rest is the engine's to send again.
            cx.stats.ip.odropped.inc();
        }
        for mut s in segs.drain(..) {
            s.meta = meta;
            let s = match s.meta.pf_route {
                RouteDecision::None => s,
                _ => match self.pf_route_out(cx, None, s) {
                    Some(s) => s,
                    None => continue,
                },
            };
            if s.len() > mtu {
                self.fragment(cx, ifp, next_hop, s, mtu, None);
            } else {
                self.ether_out(cx, ifp, next_hop, s, None);
            }
        }
        self.gso_scratch = segs;
    }

    /// RFC 791 fragmentation (ip_fragment): the first fragment keeps all
    /// options, the others only those with the copy flag; payloads are
    /// multiples of 8 bytes; the last fragment keeps the original MF.
    pub(super) fn fragment(
        &mut self,
        cx: &Ctx,
        ifp: &Arc<Interface>,
        next_hop: Ipv4Addr,
        p: PacketBuf,
        mtu: usize,
        rcvif: Option<&Arc<Interface>>,
    ) {
        let ips = &cx.stats.ip;
        let d = p.data();
        let ip = Ipv4Packet::new_unchecked(d);
        let hlen = ip.header_len() as usize;
        let orig_off = ip.frag_offset() as usize;
        let orig_mf = ip.more_frags();
        let payload = ip.payload();
        // Header of the later fragments: base header + copied options.
        let mut later_hdr = [0u8; 60];
        later_hdr[..IPV4_MIN_HEADER].copy_from_slice(&d[..IPV4_MIN_HEADER]);
        let mut later_len = IPV4_MIN_HEADER + ipv4::copy_options(ip.options(), &mut later_hdr[IPV4_MIN_HEADER..]);
        later_len = later_len.div_ceil(4) * 4;
        if mtu < hlen + 8 || mtu < later_len + 8 {
            ips.cantfrag.inc();
            return self.free(p);
        }
        ips.fragmented.inc();
        let mut pos = 0usize;
        let mut first = true;
        while pos < payload.len() {
            let h = if first { hlen } else { later_len };
            let room = (mtu - h) & !7;
            let chunk = room.min(payload.len() - pos);
            let last = pos + chunk == payload.len();
            let Some(mut f) = self.pool.alloc() else {
                ips.odropped.inc();
                break;
            };
            if f.rewind(h + chunk).is_err() {
                self.free(f);
                ips.odropped.inc();
                break;
            }
            let fb = f.data_mut();
            if first {
                fb[..h].copy_from_slice(&d[..h]);
            } else {
                fb[..h].copy_from_slice(&later_hdr[..h]);
            }
            fb[h..].copy_from_slice(&payload[pos..pos + chunk]);
            {
                let mut fip = Ipv4Packet::new_unchecked(&mut fb[..]);
                fip.set_header_len(h as u8);
                fip.set_total_len((h + chunk) as u16);
                fip.set_flags_frag(false, !last || orig_mf, (orig_off + pos) as u16);
                fip.fill_checksum();
            }
            ips.ofragments.inc();
            self.ether_out(cx, ifp, next_hop, f, rcvif);
            pos += chunk;
            first = false;
        }
        self.free(p);
    }
}
