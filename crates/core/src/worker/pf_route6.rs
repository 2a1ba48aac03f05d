//! pf's routing options for IPv6 packets in the stack (pf.c `pf_route6`):
//! what the worker does with a `RouteDecision::To6` / `Dup6` the filter
//! left in a packet it passed, the next hop's address in the buffer's
//! `pf_hop6`. The IPv4 counterpart is `pf_route.rs`.
//!
//! * After pf in, `To6`: the hop limit goes down by one (time exceeded
//!   when it runs out), the next hop's interface (named, or the IPv6
//!   route to the address) must take the packet whole (packet too big
//!   with its MTU: a router never fragments, RFC 8200 §5; a datagram pf
//!   reassembled goes out in its original fragments, pf_refragment6),
//!   and the packet joins the batch's forwarded IPv6 packets, so pf out
//!   runs on that interface, then nd6 resolves the next hop.
//! * After pf out, `To6`: out of the next hop's interface without another
//!   pf out.
//! * `Dup6`, after either hook: a copy goes to the next hop (hop limit
//!   down by one after pf in; no pf out, no ICMPv6 error about the copy)
//!   and the packet itself goes its way.
//!
//! No route to the next hop (or a reject, blackhole or local one), its
//! interface down or gone: `ip6.noroute` and, for a forwarded packet that
//! is not a copy, destination unreachable (no route), as pf_route6 does.
//! An IPv4 next hop on an IPv6 packet (pf never makes one) is dropped and
//! counted `ip6.filtered`.

use super::icmp6::Icmp6Err;
use super::ip6_forward::out_size;
use super::ip6_output::NO_ROUTE;
use super::ip_forward::path_mtu;
use super::pf_route::usable_hop;
use super::*;
use crate::filter::RouteDecision;
use crate::iface::WeakIf;
use softnet_wire::ipv6::Ipv6Packet;
use std::net::Ipv6Addr;

/// The interface, link-level next hop and MTU that reach the IPv6 next
/// hop `addr` (on `ifp` if pf named one) in routing table `rtable`.
fn route_target6<'a>(
    cx: &Ctx<'a>,
    rtable: u16,
    ifp: Option<WeakIf>,
    addr: Ipv6Addr,
) -> Option<(&'a Arc<Interface>, Ipv6Addr, usize)> {
    let ifs: &'a IfSnapshot = cx.ifs;
    if let Some(w) = ifp {
        let out = ifs.get_weak(w)?;
        return out.is_up().then_some((out, addr, out.mtu() as usize));
    }
    let (w, hop, rmtu) = if rtable == 0 {
        cx.rt6.and_then(|t| t.lookup(addr)).and_then(|r| usable_hop(&r, addr))?
    } else {
        cx.stack.routes.snapshot6(rtable).and_then(|t| t.lookup(addr).and_then(|r| usable_hop(&r, addr)))?
    };
    let out = ifs.get_weak(w)?;
    out.is_up().then_some((out, hop, path_mtu(rmtu, out) as usize))
}

impl WorkerState {
    /// After pf in passed the IPv6 packet `p`: acts on the routing
    /// decision the filter left in it. The packet when it goes on by its
    /// destination (no decision, or the original of a `dup-to`).
    #[inline]
    pub(super) fn pf_route6_in(&mut self, cx: &Ctx, in_ifp: &Arc<Interface>, p: PacketBuf) -> Option<PacketBuf> {
        if p.meta.pf_route == RouteDecision::None {
            return Some(p);
        }
        self.pf_route6_in_slow(cx, in_ifp, p)
    }

    #[cold]
    fn pf_route6_in_slow(&mut self, cx: &Ctx, in_ifp: &Arc<Interface>, mut p: PacketBuf) -> Option<PacketBuf> {
        match std::mem::take(&mut p.meta.pf_route) {
            RouteDecision::None => Some(p),
            RouteDecision::Dup6(ifp) => {
                self.pf_dup6(cx, &p, ifp, true);
                Some(p)
            }
            RouteDecision::To6(ifp) => {
                self.pf_route6_to_in(cx, in_ifp, p, ifp);
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
            RouteDecision::To(_) | RouteDecision::Dup(_) => self.pf_route6_wrong_family(cx, p),
        }
    }

    /// After pf out passed the IPv6 packet `p` (forwarded, with `rcvif`
    /// the interface it came in on, or the router's own): acts on the
    /// routing decision. The packet when it goes on as it was going.
    #[inline]
    pub(super) fn pf_route6(&mut self, cx: &Ctx, rcvif: Option<&Arc<Interface>>, p: PacketBuf) -> Option<PacketBuf> {
        if p.meta.pf_route == RouteDecision::None {
            return Some(p);
        }
        self.pf_route6_out_slow(cx, rcvif, p)
    }

    #[cold]
    fn pf_route6_out_slow(&mut self, cx: &Ctx, rcvif: Option<&Arc<Interface>>, mut p: PacketBuf) -> Option<PacketBuf> {
        match std::mem::take(&mut p.meta.pf_route) {
            RouteDecision::None | RouteDecision::AfTo => Some(p),
            RouteDecision::DivertPacket(port) => {
                self.divert_packet(cx, None, port, p);
                None
            }
            RouteDecision::Dup6(ifp) => {
                self.pf_dup6(cx, &p, ifp, false);
                Some(p)
            }
            RouteDecision::To6(ifp) => {
                let hop = p.pf_hop6;
                let Some((out, next_hop, mtu)) = route_target6(cx, p.meta.rtable, ifp, hop) else {
                    return self.pf_route6_noroute(cx, rcvif, p);
                };
                if rcvif.is_some() {
                    cx.stats.ip6.forward.inc();
                }
                self.send6_via(cx, out, next_hop, mtu, rcvif, p, true);
                None
            }
            RouteDecision::To(_) | RouteDecision::Dup(_) => self.pf_route6_wrong_family(cx, p),
        }
    }

    #[cold]
    fn pf_route6_wrong_family(&mut self, cx: &Ctx, p: PacketBuf) -> Option<PacketBuf> {
        cx.stats.ip6.filtered.inc();
        self.free(p);
        None
    }

    /// `route-to`/`reply-to` after pf in: hop limit, the next hop's
    /// interface and MTU, then pf out there with the batch's forwarded
    /// IPv6 packets.
    fn pf_route6_to_in(&mut self, cx: &Ctx, in_ifp: &Arc<Interface>, mut p: PacketBuf, ifp: Option<WeakIf>) {
        let s = &cx.stats.ip6;
        if Ipv6Packet::new_unchecked(p.data()).hop_limit() <= 1 {
            s.hoplimit.inc();
            self.icmp6_error(cx, in_ifp, &p, false, Icmp6Err::TimeExceeded);
            return self.free(p);
        }
        let Some((out, next_hop, mtu)) = route_target6(cx, p.meta.rtable, ifp, p.pf_hop6) else {
            self.pf_route6_noroute(cx, Some(in_ifp), p);
            return;
        };
        if out_size(&p) > mtu {
            s.toobig.inc();
            s.cantforward.inc();
            self.icmp6_error(cx, in_ifp, &p, false, Icmp6Err::PacketTooBig(mtu as u32));
            return self.free(p);
        }
        Ipv6Packet::new_unchecked(p.data_mut()).decrement_hop_limit();
        if cx.filter.is_some() {
            return self.queue_forward6(p, out.index(), next_hop);
        }
        // A decision without a filter (a test's hook): straight out.
        s.forward.inc();
        self.send6_via(cx, out, next_hop, mtu, Some(in_ifp), p, true);
    }

    /// No usable route to a route-to next hop: counted, and unreachable
    /// (no route) about a forwarded packet.
    #[cold]
    fn pf_route6_noroute(&mut self, cx: &Ctx, rcvif: Option<&Arc<Interface>>, p: PacketBuf) -> Option<PacketBuf> {
        cx.stats.ip6.noroute.inc();
        if let Some(r) = rcvif {
            self.icmp6_error(cx, r, &p, false, NO_ROUTE);
        }
        self.free(p);
        None
    }

    /// `dup-to`: a copy of `p` to the next hop (hop limit down by one
    /// after pf in), with no filter and no ICMPv6 error about it; every
    /// failure is a counted drop of the copy only.
    fn pf_dup6(&mut self, cx: &Ctx, p: &PacketBuf, ifp: Option<WeakIf>, after_in: bool) {
        let s = &cx.stats.ip6;
        let Some(mut c) = self.pf_copy(p) else {
            s.odropped.inc();
            return;
        };
        if after_in {
            if Ipv6Packet::new_unchecked(c.data()).hop_limit() <= 1 {
                s.hoplimit.inc();
                return self.free(c);
            }
            Ipv6Packet::new_unchecked(c.data_mut()).decrement_hop_limit();
        }
        let Some((out, next_hop, mtu)) = route_target6(cx, c.meta.rtable, ifp, p.pf_hop6) else {
            s.noroute.inc();
            return self.free(c);
        };
        self.send6_via(cx, out, next_hop, mtu, None, c, false);
    }

    /// Out of `out` to `next_hop`: whole, or in the fragments pf
    /// reassembled it from. Too big: the router's own packet (`icmp`, no
    /// `rcvif`) is fragmented as ip6_output does; a forwarded one gets
    /// packet too big quoting `mtu` when `icmp`; a copy is dropped.
    #[allow(clippy::too_many_arguments)]
    fn send6_via(
        &mut self,
        cx: &Ctx,
        out: &Arc<Interface>,
        next_hop: Ipv6Addr,
        mtu: usize,
        rcvif: Option<&Arc<Interface>>,
        p: PacketBuf,
        icmp: bool,
    ) {
        let src = Ipv6Packet::new_unchecked(p.data()).src();
        if p.meta.pf_frag_max != 0 {
            if out_size(&p) > mtu {
                cx.stats.ip6.cantfrag.inc();
                return self.free(p);
            }
            return self.refragment6(cx, out, next_hop, src, p);
        }
        if p.len() > mtu {
            if icmp && rcvif.is_none() {
                return self.fragment6(cx, out, next_hop, p, mtu);
            }
            let s = &cx.stats.ip6;
            s.toobig.inc();
            s.cantforward.inc();
            if let (true, Some(r)) = (icmp, rcvif) {
                self.icmp6_error(cx, r, &p, false, Icmp6Err::PacketTooBig(mtu as u32));
            }
            return self.free(p);
        }
        self.ether_out6(cx, out, next_hop, src, p);
    }
}
