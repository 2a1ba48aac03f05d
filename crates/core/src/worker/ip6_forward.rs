//! IPv6 forwarding (OpenBSD's ip6_forward.c): hop limit (time exceeded),
//! scope (a link-local source or destination is never forwarded: beyond
//! scope, RFC 4443 §3.1 code 2), the route (no route: unreachable code 0;
//! reject: code 6 as RFC 4443 names it; blackhole: silent), the outgoing
//! link's MTU (packet too big, RFC 4443 §3.2: an IPv6 router never
//! fragments, RFC 8200 §5), then out through `ether_out6`. Errors quote
//! the packet as it arrived (the hop limit is decremented last). With a
//! filter installed the packets that pass wait in `fwd6` for pf out over
//! the batch (`forward6_batch`, as ip_forward.rs's `forward_batch`), one
//! filter call per run leaving by the same interface.

use super::icmp6::Icmp6Err;
use super::ip6_output::NO_ROUTE;
use super::*;
use crate::route::Nhop;
use softnet_wire::icmpv6::DstUnreachable as Unreach6;
use softnet_wire::ipv6::{Ipv6AddrExt, Ipv6Packet};
use std::net::Ipv6Addr;

/// Where a forwarded IPv6 packet waiting for pf out goes (`ip6_forward`'s
/// decisions, for `ether_out6`).
pub(super) struct Fwd6Info {
    out: IfIndex,
    next_hop: Ipv6Addr,
}

/// Forwarded IPv6 packets of the batch waiting for pf out, and where each
/// goes.
pub(super) type Fwd6Queue = super::ip_forward::Forwarded<Fwd6Info>;

/// The size the packet leaves in: whole, or the largest of the fragments
/// pf_refragment6 cuts a datagram pf reassembled into.
#[inline(always)]
pub(super) fn out_size(p: &PacketBuf) -> usize {
    match p.meta.pf_frag_max {
        0 => p.len(),
        max => crate::refrag6::refragment_size(p.data(), max as usize).unwrap_or(usize::MAX),
    }
}

impl WorkerState {
    /// ip6_forward: `route` is the lookup ip6_input made for the
    /// destination.
    pub(super) fn ip6_forward(
        &mut self,
        cx: &Ctx,
        in_ifp: &Arc<Interface>,
        mut p: PacketBuf,
        route: Option<&Nhop<Ipv6Addr>>,
    ) {
        let s = &cx.stats.ip6;
        let ip = Ipv6Packet::new_unchecked(p.data());
        let (src, dst, hlim) = (ip.src(), ip.dst(), ip.hop_limit());
        if src.is_unspecified() || dst.is_multicast() {
            s.cantforward.inc();
            return self.free(p);
        }
        if hlim <= 1 {
            s.hoplimit.inc();
            self.icmp6_error(cx, in_ifp, &p, false, Icmp6Err::TimeExceeded);
            return self.free(p);
        }
        if src.is_link_local_unicast() || dst.is_link_local_unicast() {
            s.cantforward.inc();
            s.badscope.inc();
            self.icmp6_error(cx, in_ifp, &p, false, Icmp6Err::Unreach(Unreach6::BeyondScope));
            return self.free(p);
        }
        let (out, next_hop, mtu) = match route.map(|r| r.select_flow(src, dst)) {
            Some(r) => {
                if r.flags.contains(RouteFlags::BLACKHOLE) {
                    s.blackholed.inc();
                    return self.free(p);
                }
                if r.flags.contains(RouteFlags::REJECT) {
                    s.noroute.inc();
                    self.icmp6_error(cx, in_ifp, &p, false, Icmp6Err::Unreach(Unreach6::RejectRoute));
                    return self.free(p);
                }
                let Some(out) = cx.ifs.get_weak(r.ifp).filter(|o| o.is_up()) else {
                    s.noroute.inc();
                    self.icmp6_error(cx, in_ifp, &p, false, NO_ROUTE);
                    return self.free(p);
                };
                (out, r.gateway.unwrap_or(dst), super::ip_forward::path_mtu(r.mtu, out) as usize)
            }
            None => {
                s.noroute.inc();
                self.icmp6_error(cx, in_ifp, &p, false, NO_ROUTE);
                return self.free(p);
            }
        };
        // A datagram pf reassembled leaves in fragments of the size it
        // came in (pf_refragment6): those must fit.
        if out_size(&p) > mtu {
            s.toobig.inc();
            s.cantforward.inc();
            self.icmp6_error(cx, in_ifp, &p, false, Icmp6Err::PacketTooBig(mtu as u32));
            return self.free(p);
        }
        Ipv6Packet::new_unchecked(p.data_mut()).decrement_hop_limit();
        if cx.filter.is_some() {
            // pf out runs over the batch's forwarded packets together.
            return self.fwd6.push(p, Fwd6Info { out: out.index(), next_hop });
        }
        s.forward.inc();
        self.ether_out6(cx, out, next_hop, src, p);
    }

    /// pf_refragment6: a datagram pf reassembled goes out in fragments of
    /// its largest original fragment's payload with its identification
    /// (`crate::refrag6`); one that cannot be cut so is dropped
    /// (`cantfrag`).
    pub(super) fn refragment6(
        &mut self,
        cx: &Ctx,
        out: &Arc<Interface>,
        next_hop: Ipv6Addr,
        src: Ipv6Addr,
        p: PacketBuf,
    ) {
        let s = &cx.stats.ip6;
        let mut meta = p.meta;
        meta.pf_frag_max = 0;
        meta.flow_hash = 0;
        let Some(mut cut) = crate::refrag6::Refrag6::new(p.data(), p.meta.flow_hash, p.meta.pf_frag_max as usize)
        else {
            s.cantfrag.inc();
            return self.free(p);
        };
        s.fragmented.inc();
        while cut.more(p.data()) {
            let Some(mut f) = self.pool.alloc() else {
                s.odropped.inc();
                break;
            };
            if !cut.next_into(p.data(), &mut f) {
                s.odropped.inc();
                self.free(f);
                break;
            }
            f.meta = meta;
            s.ofragments.inc();
            self.ether_out6(cx, out, next_hop, src, f);
        }
        self.free(p);
    }

    /// Queues `p` for pf out on interface `out` with the batch's
    /// forwarded IPv6 packets (route-to after pf in).
    pub(super) fn queue_forward6(&mut self, p: PacketBuf, out: IfIndex, next_hop: Ipv6Addr) {
        self.fwd6.push(p, Fwd6Info { out, next_hop });
    }

    /// pf out over the packets `ip6_forward` left in `fwd6`, one filter
    /// call per run of packets leaving by the same interface, then each
    /// one pf passes goes out.
    pub(super) fn forward6_batch(&mut self, cx: &Ctx) {
        let Some(f) = cx.filter else { return };
        if self.fwd6.pkts.is_empty() {
            return;
        }
        let mut q = std::mem::take(&mut self.fwd6.pkts);
        let mut info = std::mem::take(&mut self.fwd6.info);
        let mut decisions = std::mem::take(&mut self.hook.decisions);
        let mut start = 0;
        while start < info.len() {
            let out_idx = info[start].out;
            let end = info[start..].iter().position(|i| i.out != out_idx).map_or(info.len(), |n| start + n);
            // A detaching interface is not found (`forward_batch`): its
            // packets are dropped and counted.
            let Some(out) = cx.ifs.get(out_idx) else {
                self.drop_detached(&mut q[start..end], &cx.stats.ip6.odropped);
                start = end;
                continue;
            };
            let run = decisions_for(&mut decisions, end - start);
            self.filter_batch(cx, f, Direction::Out, out, &mut q[start..end], run);
            for ((slot, &d), i) in q[start..end].iter_mut().zip(decisions.iter()).zip(&info[start..end]) {
                let Some(p) = self.decided(cx, slot, d) else { continue };
                let p = if p.meta.pf_route != RouteDecision::None {
                    // pf_route6 after pf out: re-routed, or copied.
                    let rcvif = cx.ifs.get(p.meta.rcvif);
                    let Some(p) = self.pf_route6(cx, rcvif, p) else { continue };
                    p
                } else {
                    p
                };
                cx.stats.ip6.forward.inc();
                let src = Ipv6Packet::new_unchecked(p.data()).src();
                if p.meta.pf_frag_max != 0 {
                    self.refragment6(cx, out, i.next_hop, src, p);
                    continue;
                }
                self.ether_out6(cx, out, i.next_hop, src, p);
            }
            start = end;
        }
        q.clear();
        info.clear();
        self.fwd6.pkts = q;
        self.fwd6.info = info;
        self.hook.decisions = decisions;
    }
}
