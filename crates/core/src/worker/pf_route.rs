//! pf's routing options in the stack: what the worker does with a
//! `RouteDecision` the filter left in a packet it passed (pf.c `pf_route`,
//! called from `pf_test` for a state with `route-to`, `reply-to` or
//! `dup-to`).
//!
//! * After pf in, `To(next hop)`: the TTL goes down by one (time exceeded
//!   when it runs out), the route to the next hop picks the interface,
//!   and the packet joins the batch's forwarded packets, so pf out runs on
//!   that interface (`pf_test(PF_OUT, ifp)`) and then the MTU check
//!   (needfrag with that interface's MTU), fragmentation and ARP for the
//!   next hop.
//! * After pf out, `To(next hop)`: re-sent by the next hop's route without
//!   another pf out, as pf_route does for `pd->dir == PF_OUT`.
//! * `Dup(next hop)`, after either hook: a copy goes to the next hop (TTL
//!   down by one after pf in; no pf out, no ICMP error about the copy),
//!   and the packet itself goes on as if nothing happened.
//!
//! No route to the next hop, a reject/blackhole/local route, or its
//! interface down or gone: `ip.noroute` and (not for copies) host
//! unreachable, as pf_route's `!rtisvalid(rt)` branch. A next hop that
//! never answers ARP: the ARP hold queue gives up (`ip.odropped`), and for
//! a forwarded packet host unreachable.
//!
//! The plain path pays one compare of `meta.pf_route` per packet.

use super::*;
use crate::filter::{NextHop, RouteDecision};

/// The interface and link-level next hop that reach a route-to target
/// `nh` in routing table `rtable`: its named interface, or the route to
/// it if that is usable; the interface must be there and up.
fn route_target<'a>(cx: &Ctx<'a>, rtable: u16, nh: NextHop) -> Option<(&'a Arc<Interface>, Ipv4Addr)> {
    let ifs: &'a IfSnapshot = cx.ifs;
    if let Some(w) = nh.ifp {
        let out = ifs.get_weak(w)?;
        return out.is_up().then_some((out, nh.addr));
    }
    let nh = nh.addr;
    let (w, hop, _) = if rtable == 0 {
        cx.rt.lookup(nh).and_then(|r| usable_hop(&r, nh))?
    } else {
        cx.stack.routes.snapshot(rtable).and_then(|t| t.lookup(nh).and_then(|r| usable_hop(&r, nh)))?
    };
    let out = ifs.get_weak(w)?;
    out.is_up().then_some((out, hop))
}

/// The route `r` to a route-to next hop `addr` if pf_route may take it
/// (not reject, blackhole or local; either family): its interface, the
/// link-level next hop (its gateway, or `addr` on a connected network)
/// and its MTU (0: the interface's).
pub(super) fn usable_hop<A: crate::route::RouteAddr>(
    r: &crate::route::Nhop<A>,
    addr: A,
) -> Option<(crate::iface::WeakIf, A, u32)> {
    (!r.flags.intersects(RouteFlags::REJECT | RouteFlags::BLACKHOLE | RouteFlags::LOCAL))
        .then(|| (r.ifp, r.gateway.unwrap_or(addr), r.mtu))
}

impl WorkerState {
    /// After pf in passed `p`: acts on the routing decision the filter
    /// left in it. Returns the packet when it goes on by its destination
    /// (no decision, or the original of a `dup-to`).
    pub(super) fn pf_route_in(&mut self, cx: &Ctx, in_ifp: &Arc<Interface>, mut p: PacketBuf) -> Option<PacketBuf> {
        match std::mem::take(&mut p.meta.pf_route) {
            RouteDecision::None => Some(p),
            RouteDecision::Dup(nh) => {
                self.pf_dup(cx, &p, nh, true);
                Some(p)
            }
            RouteDecision::To(nh) => {
                self.pf_route_to_in(cx, in_ifp, p, nh);
                None
            }
            RouteDecision::AfTo => {
                self.af_to_in(cx, in_ifp, p);
                None
            }
            RouteDecision::DivertPacket(port) => {
                self.divert_packet(cx, Some(in_ifp), port, p);
                None
            }
            RouteDecision::To6(_) | RouteDecision::Dup6(_) => self.pf_route_wrong_family(cx, p),
        }
    }

    /// After pf out passed `p` (forwarded, with `rcvif` the interface it
    /// came in on, or the router's own): acts on the routing decision.
    /// Returns the packet when it goes on as it was going.
    pub(super) fn pf_route_out(
        &mut self,
        cx: &Ctx,
        rcvif: Option<&Arc<Interface>>,
        mut p: PacketBuf,
    ) -> Option<PacketBuf> {
        match std::mem::take(&mut p.meta.pf_route) {
            RouteDecision::None => Some(p),
            RouteDecision::Dup(nh) => {
                self.pf_dup(cx, &p, nh, false);
                Some(p)
            }
            RouteDecision::To(nh) => {
                let Some((out, hop)) = route_target(cx, p.meta.rtable, nh) else {
                    return self.pf_route_noroute(cx, rcvif.map(|i| &**i), p);
                };
                if rcvif.is_some() {
                    cx.stats.ip.forward.inc();
                }
                self.send_via(cx, out, hop, out.mtu() as usize, rcvif, p, true);
                None
            }
            // pf sets it on pf in only.
            RouteDecision::AfTo => Some(p),
            RouteDecision::DivertPacket(port) => {
                self.divert_packet(cx, None, port, p);
                None
            }
            RouteDecision::To6(_) | RouteDecision::Dup6(_) => self.pf_route_wrong_family(cx, p),
        }
    }

    /// An IPv6 next hop for an IPv4 packet (pf never makes one): dropped
    /// and counted (`ip.filtered`), never sent by a wrong-family address.
    #[cold]
    fn pf_route_wrong_family(&mut self, cx: &Ctx, p: PacketBuf) -> Option<PacketBuf> {
        cx.stats.ip.filtered.inc();
        self.free(p);
        None
    }

    /// `route-to`/`reply-to` after pf in: TTL, the next hop's route, then
    /// pf out on its interface with the batch's forwarded packets.
    fn pf_route_to_in(&mut self, cx: &Ctx, in_ifp: &Arc<Interface>, mut p: PacketBuf, nh: NextHop) {
        let ips = &cx.stats.ip;
        if Ipv4Packet::new_unchecked(p.data()).ttl() <= 1 {
            ips.ttlexceeded.inc();
            self.icmp_error(cx, Some(in_ifp), &p, false, IcmpErr::TimeExceeded);
            return self.free(p);
        }
        let Some((out, hop)) = route_target(cx, p.meta.rtable, nh) else {
            self.pf_route_noroute(cx, Some(in_ifp), p);
            return;
        };
        Ipv4Packet::new_unchecked(p.data_mut()).decrement_ttl();
        let mtu = out.mtu();
        if cx.filter.is_some() {
            self.fwd.push(p, FwdInfo { out: out.index(), in_if: in_ifp.index(), next_hop: hop, mtu });
            return;
        }
        // A decision without a filter (a test's hook): straight out.
        self.forward_out(cx, out, hop, mtu as usize, in_ifp, p);
    }

    /// No usable route to a route-to next hop: counted, host unreachable.
    #[cold]
    fn pf_route_noroute(&mut self, cx: &Ctx, rcvif: Option<&Interface>, p: PacketBuf) -> Option<PacketBuf> {
        cx.stats.ip.noroute.inc();
        self.icmp_error(cx, rcvif, &p, false, IcmpErr::Unreach(DstUnreachable::HostUnreachable, 0));
        self.free(p);
        None
    }

    /// `dup-to`: a copy of `p` to `nh` (TTL down by one after pf in), with
    /// no filter and no ICMP error about it; every failure is a counted
    /// drop of the copy only.
    fn pf_dup(&mut self, cx: &Ctx, p: &PacketBuf, nh: NextHop, after_in: bool) {
        let ips = &cx.stats.ip;
        let Some(mut c) = self.pf_copy(p) else {
            ips.odropped.inc();
            return;
        };
        if after_in {
            if Ipv4Packet::new_unchecked(c.data()).ttl() <= 1 {
                ips.ttlexceeded.inc();
                return self.free(c);
            }
            Ipv4Packet::new_unchecked(c.data_mut()).decrement_ttl();
        }
        let Some((out, hop)) = route_target(cx, c.meta.rtable, nh) else {
            ips.noroute.inc();
            return self.free(c);
        };
        self.send_via(cx, out, hop, out.mtu() as usize, None, c, false);
    }

    /// A copy of `p` for `dup-to` (either family): its data and metadata
    /// without the routing decision. None: no buffer.
    pub(super) fn pf_copy(&mut self, p: &PacketBuf) -> Option<PacketBuf> {
        let buf = if p.len() <= self.pool.buf_size() - crate::packet::HEADROOM {
            self.pool.alloc()
        } else {
            self.large_pool.alloc()
        };
        let mut c = buf?;
        if c.set_len(p.len()).is_err() {
            self.free(c);
            return None;
        }
        c.data_mut().copy_from_slice(p.data());
        c.meta = p.meta;
        c.meta.pf_route = RouteDecision::None;
        Some(c)
    }

    /// Out of `out` to `hop`: fragmented to `mtu`, or refused with DF
    /// (needfrag quoting `mtu` when `icmp`), then ARP and staging.
    #[allow(clippy::too_many_arguments)]
    fn send_via(
        &mut self,
        cx: &Ctx,
        out: &Arc<Interface>,
        hop: Ipv4Addr,
        mtu: usize,
        rcvif: Option<&Arc<Interface>>,
        p: PacketBuf,
        icmp: bool,
    ) {
        if p.len() > mtu {
            if Ipv4Packet::new_unchecked(p.data()).dont_frag() {
                cx.stats.ip.cantfrag.inc();
                if icmp {
                    let m = mtu.min(u16::MAX as usize) as u16;
                    let r = rcvif.map(|i| &**i);
                    self.icmp_error(cx, r, &p, false, IcmpErr::Unreach(DstUnreachable::FragRequired, m));
                }
                return self.free(p);
            }
            return self.fragment(cx, out, hop, p, mtu, rcvif);
        }
        self.ether_out(cx, out, hop, p, rcvif);
    }
}
