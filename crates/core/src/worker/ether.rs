//! Ethernet (OpenBSD's if_ethersubr.c and the ARP glue of if_ether.c):
//! `ether_input` checks a frame and hands it to `ip_input` or `arp_input`
//! by EtherType; `ether_out` (ether_output + arpresolve) puts the header on
//! and finds the link destination. IPv6 frames go to `ip6_input` from the
//! same EtherType switch; their way out (nd6_resolve) is `ip6_output`'s.

use super::*;

/// The Ethernet layer's ARP state on this worker: a direct-mapped cache in
/// front of the shared table, and scratch for what ARP hands back (all
/// capacity reserved at start).
pub(super) struct ArpGlue {
    pub(super) cache: ArpWorkerCache,
    pub(super) out: ArpInput,
    /// Frames ARP gave up on during the batch.
    pub(super) dropped: Vec<PacketBuf>,
    /// Requests to broadcast after the batch.
    pub(super) requests: Vec<crate::arp::ArpRequest>,
}

impl ArpGlue {
    pub(super) fn new() -> Self {
        ArpGlue {
            cache: ArpWorkerCache::new(),
            out: ArpInput::new(),
            dropped: Vec::with_capacity(256),
            requests: Vec::with_capacity(64),
        }
    }
}

impl WorkerState {
    pub(super) fn ether_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, mut p: PacketBuf) {
        let ist = ifp.stats.get(self.id);
        ist.ipackets.inc();
        ist.ibytes.add(p.len() as u64);
        let es = &cx.stats.ether;
        if !ifp.is_up() {
            ist.idrops.inc();
            return self.free(p);
        }
        let Ok(frame) = EthernetFrame::new_checked(p.data()) else {
            es.runts.inc();
            ist.ierrors.inc();
            return self.free(p);
        };
        let dst = frame.dst();
        let link_bcast = dst.is_multicast();
        if !link_bcast && dst != ifp.mac() {
            es.not_for_us.inc();
            return self.free(p);
        }
        if frame.vlan().is_some() {
            es.vlan_dropped.inc();
            ist.idrops.inc();
            return self.free(p);
        }
        let ethertype = frame.ethertype();
        p.meta.rcvif = ifp.index();
        match ethertype {
            EtherType::IPV4 => {
                let _ = p.pull_front(HEADER_LEN);
                self.ip_input(cx, ifp, p, link_bcast);
            }
            EtherType::ARP => self.arp_input(cx, ifp, p),
            EtherType::IPV6 => {
                let _ = p.pull_front(HEADER_LEN);
                self.ip6_input(cx, ifp, p, link_bcast);
            }
            _ => {
                es.unknown_type.inc();
                ist.idrops.inc();
                self.free(p);
            }
        }
    }

    pub(super) fn arp_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, mut p: PacketBuf) {
        let arps = &cx.stats.arp;
        let repr = match ArpPacket::new_checked(EthernetFrame::new_unchecked(p.data()).payload())
            .and_then(|a| ArpRepr::parse(&a))
        {
            Ok(r) => r,
            Err(_) => {
                arps.dropped_bad.inc();
                ifp.stats.get(self.id).ierrors.inc();
                return self.free(p);
            }
        };
        self.arp.out.clear();
        cx.stack.arp.input(cx.now, cx.ifs, ifp, &repr, arps, &mut self.arp.out);
        if let Some(reply) = self.arp.out.reply.take() {
            // Reuse the request's buffer for the reply.
            if build_arp_frame(&mut p, ifp.mac(), reply.target_hw, &reply).is_ok() {
                arps.replies_sent.inc();
                self.stage(cx, ifp.index(), p);
            } else {
                self.free(p);
            }
        } else {
            self.free(p);
        }
        let mut flushed = std::mem::take(&mut self.arp.out.flushed);
        for (ifindex, mac, mut frame) in flushed.drain(..) {
            set_dst(&mut frame, mac);
            self.stage(cx, ifindex, frame);
        }
        self.arp.out.flushed = flushed;
    }

    /// What ARP left for this worker during the batch: frames it gave up on
    /// (returned to the pool) and refresh requests to broadcast.
    pub(super) fn arp_housekeeping(&mut self, cx: &Ctx) {
        let mut dropped = std::mem::take(&mut self.arp.dropped);
        dropped.extend(self.arp.cache.drain_dropped());
        for p in dropped.drain(..) {
            cx.stats.ip.odropped.inc();
            self.free(p);
        }
        self.arp.dropped = dropped;
        let mut requests = std::mem::take(&mut self.arp.requests);
        requests.extend(self.arp.cache.drain_requests());
        for req in requests.drain(..) {
            if let Some(ifp) = cx.ifs.get(req.ifindex) {
                self.send_arp_request(cx, ifp, &req.repr);
            }
        }
        self.arp.requests = requests;
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
        if p.capacity() != self.pool.buf_size() && !(p.meta.flags & mflags::TSO != 0 && ifp.tso_max() != 0) {
            // A reassembled datagram that fits the link: move it to a normal
            // buffer so the large one returns to its pool. (A TCP
            // super-segment for a device that cuts it stays whole.)
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
        if ifp.is_loopback() {
            // looutput: no resolution, back in at the next poll.
            set_dst(&mut p, ifp.mac());
            return self.stage(cx, ifp.index(), p);
        }
        if next_hop.is_broadcast() || ifp.is_subnet_broadcast(next_hop) {
            set_dst(&mut p, MacAddr::BROADCAST);
            return self.stage(cx, ifp.index(), p);
        }
        match cx.stack.arp.resolve(cx.now, ifp, next_hop, p, &mut self.arp.cache, &cx.stats.arp) {
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
