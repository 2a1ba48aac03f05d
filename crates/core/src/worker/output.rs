//! Forwarding and output (OpenBSD's ip_forward, ip_output, ip_fragment,
//! ether_output + arpresolve): where a packet goes once the input side
//! and pf in have decided it leaves the router.

use super::*;

impl WorkerState {
    pub(super) fn ip_forward(
        &mut self,
        cx: &Ctx,
        in_ifp: &Arc<Interface>,
        mut p: PacketBuf,
        route: Option<&Arc<Route>>,
    ) {
        let ips = &cx.stats.ip;
        let ip = Ipv4Packet::new_unchecked(p.data());
        let (src, dst, ttl) = (ip.src(), ip.dst(), ip.ttl());
        // in_canforward(): not to net 0, loopback, class E; not from 0.
        let d = dst.octets()[0];
        if src.is_unspecified() || d == 0 || d == 127 || d >= 240 {
            ips.cantforward.inc();
            return self.free(p);
        }
        if ttl <= 1 {
            ips.ttlexceeded.inc();
            self.icmp_error(cx, Some(in_ifp), &p, false, IcmpErr::TimeExceeded);
            return self.free(p);
        }
        let Some(r) = route else {
            ips.noroute.inc();
            self.icmp_error(cx, Some(in_ifp), &p, false, IcmpErr::Unreach(DstUnreachable::HostUnreachable, 0));
            return self.free(p);
        };
        if r.flags.contains(RouteFlags::BLACKHOLE) {
            ips.blackholed.inc();
            return self.free(p);
        }
        let out = if r.flags.contains(RouteFlags::REJECT) { None } else { cx.ifs.get_weak(r.ifp) };
        let Some(out) = out.filter(|o| o.is_up()) else {
            ips.noroute.inc();
            self.icmp_error(cx, Some(in_ifp), &p, false, IcmpErr::Unreach(DstUnreachable::HostUnreachable, 0));
            return self.free(p);
        };
        let next_hop = r.gateway.unwrap_or(dst);
        let hlen = Ipv4Packet::new_unchecked(p.data()).header_len() as usize;
        if hlen > IPV4_MIN_HEADER {
            // ip_dooptions: the router records itself in Record Route and
            // Timestamp options of what it forwards.
            let out_addr = r.ifa.or_else(|| out.source_for(next_hop)).unwrap_or(Ipv4Addr::UNSPECIFIED);
            let in_addr = in_ifp.source_for(src).unwrap_or(out_addr);
            let mine = |a: Ipv4Addr| cx.ifs.owner_of(a).is_some();
            match record_options(&mut p.data_mut()[..hlen], out_addr, in_addr, cx.ts_ms, mine) {
                Ok(true) => Ipv4Packet::new_unchecked(p.data_mut()).fill_checksum(),
                Ok(false) => {}
                Err(pointer) => {
                    ips.badoptions.inc();
                    self.icmp_error(cx, Some(in_ifp), &p, false, IcmpErr::ParamProblem(pointer));
                    return self.free(p);
                }
            }
        }
        Ipv4Packet::new_unchecked(p.data_mut()).decrement_ttl();
        if cx.stack.config.send_redirects
            && Arc::ptr_eq(out, in_ifp)
            && in_ifp.addrs().iter().any(|a| a.contains(src) && a.contains(next_hop))
        {
            // ip_forward: the sender could reach the next hop directly.
            ips.redirectsent.inc();
            self.icmp_error(cx, Some(in_ifp), &p, false, IcmpErr::Redirect(next_hop));
        }
        let mtu = if r.mtu != 0 { r.mtu.min(out.mtu()) } else { out.mtu() } as usize;
        if cx.filter.is_some() {
            // pf out runs over the batch's forwarded packets together.
            self.fwdq.push(Some(p));
            self.fwdinfo.push(FwdInfo { out: out.index(), in_if: in_ifp.index(), next_hop, mtu: mtu as u32 });
            return;
        }
        self.forward_out(cx, out, next_hop, mtu, in_ifp, p);
    }

    /// ip_forward after pf out: fragment if needed (or refuse with DF),
    /// then out.
    pub(super) fn forward_out(
        &mut self,
        cx: &Ctx,
        out: &Arc<Interface>,
        next_hop: Ipv4Addr,
        mtu: usize,
        in_ifp: &Arc<Interface>,
        p: PacketBuf,
    ) {
        let ips = &cx.stats.ip;
        if p.len() > mtu {
            let df = Ipv4Packet::new_unchecked(p.data()).dont_frag();
            if df {
                ips.cantfrag.inc();
                let m = mtu.min(u16::MAX as usize) as u16;
                self.icmp_error(cx, Some(in_ifp), &p, false, IcmpErr::Unreach(DstUnreachable::FragRequired, m));
                return self.free(p);
            }
            ips.forward.inc();
            return self.fragment(cx, out, next_hop, p, mtu, Some(in_ifp));
        }
        ips.forward.inc();
        self.ether_out(cx, out, next_hop, p, Some(in_ifp));
    }

    /// Sends a packet the router originates (an ICMP message, a RST, a
    /// filter's reply): route it, pf out (not for the filter's replies),
    /// then out as forwarding would.
    pub(super) fn ip_output(&mut self, cx: &Ctx, p: PacketBuf) {
        let ips = &cx.stats.ip;
        ips.localout.inc();
        let dst = Ipv4Packet::new_unchecked(p.data()).dst();
        let route = cx.rt.lookup(dst);
        let out = route.filter(|r| !r.flags.intersects(RouteFlags::REJECT | RouteFlags::BLACKHOLE | RouteFlags::LOCAL));
        let Some((r, ifp)) = out.and_then(|r| cx.ifs.get_weak(r.ifp).map(|i| (r, i))).filter(|(_, i)| i.is_up()) else {
            ips.noroute.inc();
            return self.free(p);
        };
        let next_hop = r.gateway.unwrap_or(dst);
        let mtu = if r.mtu != 0 { r.mtu.min(ifp.mtu()) } else { ifp.mtu() } as usize;
        let p = match cx.filter {
            Some(f) if p.meta.flags & mflags::PF_GENERATED == 0 => match self.local_out_filter(cx, f, ifp, p) {
                Some(p) => p,
                None => return,
            },
            _ => p,
        };
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

    /// pf out on `ifp` for a packet the router originates, as OpenBSD's
    /// ip_output calls pf_test(PF_OUT) before fragmenting; one packet at a
    /// time (a cold path). The filter's own replies (`PF_GENERATED`) never
    /// get here. The packet if the filter passed it.
    #[cold]
    pub(super) fn local_out_filter(
        &mut self,
        cx: &Ctx,
        f: &FilterSlot,
        ifp: &Interface,
        p: PacketBuf,
    ) -> Option<PacketBuf> {
        // A batch of one on the stack: this may run while a received
        // batch holds the worker's queues. What the filter answers with
        // is marked generated, so sending it does not come back here.
        let mut slot = [Some(p)];
        let mut d = [Decision::Consumed];
        self.filter_batch(cx, f, Direction::Out, ifp, &mut slot, &mut d);
        self.decided(cx, &mut slot[0], d[0])
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
        let payload = &d[hlen..];
        // Header of the later fragments: base header + copied options.
        let mut later_hdr = [0u8; 60];
        later_hdr[..IPV4_MIN_HEADER].copy_from_slice(&d[..IPV4_MIN_HEADER]);
        let mut later_len =
            IPV4_MIN_HEADER + ipv4::copy_options(&d[IPV4_MIN_HEADER..hlen], &mut later_hdr[IPV4_MIN_HEADER..]);
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

    /// ether_output + arpresolve: Ethernet header, link destination from
    /// ARP (or broadcast), then staging. `rcvif` is set for forwarded
    /// packets, which get an ICMP host unreachable if ARP gave up.
    pub(super) fn ether_out(
        &mut self,
        cx: &Ctx,
        ifp: &Arc<Interface>,
        next_hop: Ipv4Addr,
        mut p: PacketBuf,
        rcvif: Option<&Arc<Interface>>,
    ) {
        if p.capacity() != self.pool.buf_size() {
            // A reassembled datagram that fits the link: move it to a normal
            // buffer so the large one returns to its pool.
            let Some(mut q) = self.pool.alloc() else {
                cx.stats.ip.odropped.inc();
                return self.free(p);
            };
            if q.set_len(p.len()).is_err() {
                cx.stats.ip.odropped.inc();
                self.free(q);
                return self.free(p);
            }
            q.data_mut().copy_from_slice(p.data());
            q.meta = p.meta;
            self.free(p);
            p = q;
        }
        if prepend_ipv4_header(&mut p, ifp.mac()).is_err() {
            cx.stats.ip.odropped.inc();
            return self.free(p);
        }
        if next_hop.is_broadcast() || ifp.is_subnet_broadcast(next_hop) {
            set_dst(&mut p, MacAddr::BROADCAST);
            return self.stage(cx, ifp.index(), p);
        }
        match cx.stack.arp.resolve(cx.now, ifp, next_hop, p, &mut self.arp_cache, &cx.stats.arp) {
            ArpResolve::Resolved(mac, mut p) => {
                set_dst(&mut p, mac);
                self.stage(cx, ifp.index(), p);
            }
            ArpResolve::Held { request, dropped } => {
                if let Some(d) = dropped {
                    cx.stats.ip.odropped.inc();
                    self.free(d);
                }
                if let Some(req) = request {
                    self.send_arp_request(cx, ifp, &req.repr);
                }
            }
            ArpResolve::Rejected(mut p) => {
                if let Some(rcvif) = rcvif {
                    let _ = p.pull_front(HEADER_LEN);
                    self.icmp_error(cx, Some(rcvif), &p, false, IcmpErr::Unreach(DstUnreachable::HostUnreachable, 0));
                }
                cx.stats.ip.noroute.inc();
                self.free(p);
            }
            ArpResolve::Dropped(p) => {
                cx.stats.ip.odropped.inc();
                self.free(p);
            }
        }
    }

    pub(super) fn send_arp_request(&mut self, cx: &Ctx, ifp: &Arc<Interface>, req: &ArpRepr) {
        let Some(mut p) = self.pool.alloc() else {
            cx.stats.ip.odropped.inc();
            return;
        };
        if build_arp_frame(&mut p, ifp.mac(), MacAddr::BROADCAST, req).is_err() {
            return self.free(p);
        }
        cx.stats.arp.requests_sent.inc();
        self.stage(cx, ifp.index(), p);
    }
}
