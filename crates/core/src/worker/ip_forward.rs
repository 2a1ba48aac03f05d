//! IPv4 forwarding (OpenBSD's ip_forward): `ip_forward` (TTL, route,
//! options, redirects), the batch's pf out (`forward_batch`), then
//! `forward_out` (the MTU check: fragment, or "fragmentation needed"). An
//! IPv6 counterpart belongs beside this file (ip6_forward.rs).

use super::*;

/// Where a forwarded packet waiting for pf out goes (`ip_forward`'s
/// decisions, for `forward_out`).
pub(super) struct FwdInfo {
    pub(super) out: IfIndex,
    pub(super) in_if: IfIndex,
    pub(super) next_hop: Ipv4Addr,
    pub(super) mtu: u32,
}

/// Forwarded packets of the batch waiting for pf out, and where each goes
/// (`FwdInfo`; IPv6's `Fwd6Info`).
pub(super) struct Forwarded<I> {
    pub(super) pkts: Vec<Option<PacketBuf>>,
    pub(super) info: Vec<I>,
}

/// The batch's forwarded IPv4 packets.
pub(super) type FwdQueue = Forwarded<FwdInfo>;

impl<I> Forwarded<I> {
    pub(super) fn new() -> Self {
        Forwarded { pkts: Vec::with_capacity(BATCH), info: Vec::with_capacity(BATCH) }
    }

    /// Queues `p` for pf out, going where `info` says.
    #[inline(always)]
    pub(super) fn push(&mut self, p: PacketBuf, info: I) {
        self.pkts.push(Some(p));
        self.info.push(info);
    }
}

/// The MTU a packet leaves `out` with by a route of MTU `route_mtu` (0:
/// the interface's): the smaller of the two.
#[inline(always)]
pub(super) fn path_mtu(route_mtu: u32, out: &Interface) -> u32 {
    if route_mtu != 0 {
        route_mtu.min(out.mtu())
    } else {
        out.mtu()
    }
}

impl WorkerState {
    pub(super) fn ip_forward(&mut self, cx: &Ctx, in_ifp: &Arc<Interface>, mut p: PacketBuf, route: Option<&Nhop>) {
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
        let Some(r) = route.map(|r| r.select_flow(src, dst)) else {
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
        let mtu = path_mtu(r.mtu, out) as usize;
        if cx.filter.is_some() {
            // pf out runs over the batch's forwarded packets together.
            self.fwd.push(p, FwdInfo { out: out.index(), in_if: in_ifp.index(), next_hop, mtu: mtu as u32 });
            return;
        }
        self.forward_out(cx, out, next_hop, mtu, in_ifp, p);
    }

    /// Drops the forwarded packets of an interface destroyed since the
    /// batch began, counted in `odropped` (ip's or ip6's), as staged
    /// frames of a gone interface are.
    pub(super) fn drop_detached(&mut self, q: &mut [Option<PacketBuf>], odropped: &crate::percpu::Counter) {
        for p in q.iter_mut().filter_map(Option::take) {
            odropped.inc();
            self.free(p);
        }
    }

    /// pf out over the packets `ip_forward` left in `fwd`, one filter
    /// call per run of packets leaving by the same interface, then each
    /// goes on to `forward_out`.
    pub(super) fn forward_batch(&mut self, cx: &Ctx) {
        let Some(f) = cx.filter else { return };
        if self.fwd.pkts.is_empty() {
            return;
        }
        let mut fwdq = std::mem::take(&mut self.fwd.pkts);
        let mut info = std::mem::take(&mut self.fwd.info);
        let mut decisions = std::mem::take(&mut self.hook.decisions);
        let mut start = 0;
        while start < info.len() {
            let out_idx = info[start].out;
            let end = info[start..].iter().position(|i| i.out != out_idx).map_or(info.len(), |n| start + n);
            // The snapshot is the batch's, but `destroy` marks an interface
            // detaching at once, and a detaching one is not found: its
            // packets are dropped and counted (found by test_churn.py: a
            // destroy during a batch stopped the worker on an expect).
            let Some(out) = cx.ifs.get(out_idx) else {
                self.drop_detached(&mut fwdq[start..end], &cx.stats.ip.odropped);
                start = end;
                continue;
            };
            let run = decisions_for(&mut decisions, end - start);
            self.filter_batch(cx, f, Direction::Out, out, &mut fwdq[start..end], run);
            for ((slot, &d), i) in fwdq[start..end].iter_mut().zip(decisions.iter()).zip(&info[start..end]) {
                if let Some(mut p) = self.decided(cx, slot, d) {
                    let Some(in_ifp) = cx.ifs.get(i.in_if) else {
                        cx.stats.ip.odropped.inc();
                        self.free(p);
                        continue;
                    };
                    if p.meta.pf_route != RouteDecision::None {
                        // pf_route after pf out: re-routed, or copied.
                        p = match self.pf_route_out(cx, Some(in_ifp), p) {
                            Some(p) => p,
                            None => continue,
                        };
                    }
                    self.forward_out(cx, out, i.next_hop, i.mtu as usize, in_ifp, p);
                }
            }
            start = end;
        }
        fwdq.clear();
        info.clear();
        self.fwd.pkts = fwdq;
        self.fwd.info = info;
        self.hook.decisions = decisions;
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
}
