//! IPv4 input (OpenBSD's ip_input.c): `ip_input` (ipv4_input's header
//! checks), the batch's pf in (`ip_input_batch`), then `ip_input_filtered`
//! (ip_input_if's choice: ours, or ip_forward) and local delivery
//! (`local_input`, ip_ours, with reassembly for the router itself).

use super::*;

impl WorkerState {
    pub(super) fn ip_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, mut p: PacketBuf, link_bcast: bool) {
        let ips = &cx.stats.ip;
        ips.total.inc();
        let data = p.data();
        if data.len() < IPV4_MIN_HEADER {
            ips.toosmall.inc();
            return self.drop_in(ifp, p);
        }
        let ip = Ipv4Packet::new_unchecked(data);
        if ip.version() != 4 {
            ips.badvers.inc();
            return self.drop_in(ifp, p);
        }
        let hlen = ip.header_len() as usize;
        if hlen < IPV4_MIN_HEADER || hlen > data.len() {
            ips.badhlen.inc();
            return self.drop_in(ifp, p);
        }
        if !ip.verify_checksum() {
            ips.badsum.inc();
            return self.drop_in(ifp, p);
        }
        let total = ip.total_len() as usize;
        if total < hlen {
            ips.badlen.inc();
            return self.drop_in(ifp, p);
        }
        if total > data.len() {
            ips.tooshort.inc();
            return self.drop_in(ifp, p);
        }
        let src = ip.src();
        let dst_loopback = ip.dst().is_loopback();
        let is_frag = ip.more_frags() || ip.frag_offset() != 0;
        // Trim Ethernet padding.
        let _ = p.set_len(total);
        p.meta.csum |= csum_flags::IP_HDR_OK;
        // 127/8 must not appear on the wire (RFC 1122 §3.2.1.3): only on
        // a loopback interface.
        let on_wire = !ifp.is_loopback();
        if src.is_multicast() || src.is_broadcast() || (on_wire && (src.is_loopback() || dst_loopback)) {
            ips.badaddr.inc();
            return self.drop_in(ifp, p);
        }
        if hlen > IPV4_MIN_HEADER {
            let ip = Ipv4Packet::new_unchecked(p.data());
            if let Err(e) = ipv4::check_options(ip.options()) {
                ips.badoptions.inc();
                let pointer = (IPV4_MIN_HEADER + e.offset()) as u8;
                self.icmp_error(cx, Some(ifp), &p, link_bcast, IcmpErr::ParamProblem(pointer));
                return self.drop_in(ifp, p);
            }
            if ipv4::has_source_route(ip.options()) {
                // OpenBSD's default (net.inet.ip.sourceroute=0): refuse.
                ips.badoptions.inc();
                self.icmp_error(cx, Some(ifp), &p, link_bcast, IcmpErr::Unreach(DstUnreachable::SrcRouteFailed, 0));
                return self.drop_in(ifp, p);
            }
        }
        if is_frag {
            ips.fragments.inc();
        }

        if cx.filter.is_none() {
            return self.ip_input_filtered(cx, ifp, p, link_bcast);
        }
        // pf in takes the batch's packets together (`ip_input_batch`).
        if link_bcast {
            p.meta.flags |= mflags::LINK_BCAST;
        }
        self.ipq.push(Some(p));
    }

    /// The rest of IP input for the batch `ip_input` left in `ipq`: pf in
    /// over the whole batch, then delivery or forwarding per packet, then
    /// pf out over the forwarded packets (`forward_batch`).
    pub(super) fn ip_input_batch(&mut self, cx: &Ctx, ifp: &Arc<Interface>) {
        if self.ipq.is_empty() {
            return;
        }
        let Some(f) = cx.filter else { return };
        let mut ipq = std::mem::take(&mut self.ipq);
        let mut decisions = std::mem::take(&mut self.hook.decisions);
        let all = decisions_for(&mut decisions, ipq.len());
        self.filter_batch(cx, f, Direction::In, ifp, &mut ipq, all);
        for (slot, &d) in ipq.iter_mut().zip(decisions.iter()) {
            if let Some(mut p) = self.decided(cx, slot, d) {
                if p.meta.pf_route != RouteDecision::None && lro::is_super(&p) {
                    // pf's routing takes segments (`lro`).
                    self.lro_each(cx, p, |w, s| {
                        if let Some(s) = w.pf_route_in(cx, ifp, s) {
                            let link_bcast = s.meta.flags & mflags::LINK_BCAST != 0;
                            w.ip_input_filtered(cx, ifp, s, link_bcast);
                        }
                    });
                    continue;
                }
                if p.meta.pf_route != RouteDecision::None {
                    // route-to, reply-to, dup-to (pf_route after pf in).
                    p = match self.pf_route_in(cx, ifp, p) {
                        Some(p) => p,
                        None => continue,
                    };
                }
                let link_bcast = p.meta.flags & mflags::LINK_BCAST != 0;
                self.ip_input_filtered(cx, ifp, p, link_bcast);
            }
        }
        ipq.clear();
        self.ipq = ipq;
        self.hook.decisions = decisions;
        self.forward_batch(cx);
        // af-to's packets now IPv6 (an empty queue returns at once)
        self.forward6_batch(cx);
    }

    /// IP input after pf in: local delivery or forwarding.
    pub(super) fn ip_input_filtered(&mut self, cx: &Ctx, ifp: &Arc<Interface>, p: PacketBuf, link_bcast: bool) {
        let ips = &cx.stats.ip;
        if p.meta.flags & mflags::PF_DIVERTED != 0 {
            // pf's divert-to / divert-reply: ours whatever the
            // destination (in_ouraddr asks pf_ouraddr first).
            return self.local_input(cx, ifp, p, false);
        }
        let dst = Ipv4Packet::new_unchecked(p.data()).dst();
        if dst.is_multicast() {
            if ifp.host().is_some_and(|h| h.is_joined4(dst)) {
                // A group the host joined on the interface's twin.
                return self.local_input(cx, ifp, p, true);
            }
            ips.notmember.inc();
            return self.free(p);
        }
        if dst.is_broadcast() {
            return self.local_input(cx, ifp, p, true);
        }
        // A filter may have put the packet in another routing table (pf's
        // `rtable`): everything after is looked up there, as OpenBSD's
        // ip_input with ph_rtableid. A table that does not exist routes
        // nothing.
        let other = (p.meta.rtable != 0).then(|| cx.stack.routes.snapshot(p.meta.rtable));
        let route = match &other {
            None => cx.rt.lookup(dst),
            Some(table) => table.as_ref().and_then(|t| t.lookup(dst)),
        };
        if let Some(r) = route {
            if r.flags.contains(RouteFlags::LOCAL) {
                return self.local_input(cx, ifp, p, false);
            }
            if r.flags.contains(RouteFlags::BROADCAST) {
                // A directed broadcast: ours unless forwarding them is on
                // and it is for another interface's subnet.
                if !(cx.stack.config.directed_broadcast && r.ifp != ifp.weak()) {
                    return self.local_input(cx, ifp, p, true);
                }
            }
        }
        if link_bcast || !cx.stack.config.forwarding {
            // Never forward what arrived as a link-level broadcast.
            ips.cantforward.inc();
            return self.free(p);
        }
        if lro::is_super(&p) {
            // Forwarded as the segments it stands for (`lro`).
            return self.lro_each(cx, p, |w, s| w.ip_forward(cx, ifp, s, route.map(|r| r.next_hop())));
        }
        self.ip_forward(cx, ifp, p, route.map(|r| r.next_hop()));
    }

    // ---- local delivery ----------------------------------------------------

    pub(super) fn local_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, p: PacketBuf, bcast: bool) {
        let ips = &cx.stats.ip;
        let is_frag = Ipv4Packet::new_unchecked(p.data()).is_fragment();
        let mut p = p;
        if is_frag {
            match self.reassemble(cx, p) {
                Some(whole) => p = whole,
                None => return,
            }
        }
        ips.delivered.inc();
        let proto = Ipv4Packet::new_unchecked(p.data()).protocol();
        match proto {
            IpProtocol::ICMP => self.icmp_input(cx, ifp, p, bcast),
            IpProtocol::UDP => self.udp_input(cx, ifp, p, bcast),
            IpProtocol::TCP => self.tcp_input(cx, ifp, p, bcast),
            _ => {
                let Some(p) = self.punt(cx, p) else { return };
                ips.noproto.inc();
                if !bcast {
                    self.icmp_error(cx, Some(ifp), &p, bcast, IcmpErr::Unreach(DstUnreachable::ProtoUnreachable, 0));
                }
                self.free(p);
            }
        }
    }

    /// A fragment for the router itself: kept until its datagram is whole
    /// (then returned in one large buffer), or dropped and counted.
    pub(super) fn reassemble(&mut self, cx: &Ctx, p: PacketBuf) -> Option<PacketBuf> {
        let ips = &cx.stats.ip;
        let result = cx.stack.reass.add(cx.now, p.data());
        let meta = p.meta;
        self.free(p);
        let (header, payload) = match result {
            ReassResult::Held => return None,
            ReassResult::Dropped => {
                ips.fragdropped.inc();
                return None;
            }
            ReassResult::Complete { header, payload } => (header, payload),
        };
        let Some(mut whole) = self.large_pool.alloc() else {
            ips.fragdropped.inc();
            return None;
        };
        let len = header.len() + payload.len();
        if whole.set_len(len).is_err() {
            ips.fragdropped.inc();
            self.free(whole);
            return None;
        }
        whole.data_mut()[..header.len()].copy_from_slice(&header);
        whole.data_mut()[header.len()..].copy_from_slice(&payload);
        whole.meta = meta;
        let mut ip = Ipv4Packet::new_unchecked(whole.data_mut());
        ip.set_total_len(len as u16);
        ip.set_flags_frag(false, false, 0);
        ip.fill_checksum();
        ips.reassembled.inc();
        Some(whole)
    }
}
