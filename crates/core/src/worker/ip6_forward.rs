//! IPv6 forwarding (OpenBSD's ip6_forward.c): hop limit (time exceeded),
//! scope (a link-local source or destination is never forwarded: beyond
//! scope, RFC 4443 §3.1 code 2), the route (no route: unreachable code 0;
//! reject: code 6 as RFC 4443 names it; blackhole: silent), the outgoing
//! link's MTU (packet too big, RFC 4443 §3.2: an IPv6 router never
//! fragments, RFC 8200 §5), then out through `ether_out6`. Errors quote
//! the packet as it arrived (the hop limit is decremented last).

use super::icmp6::Icmp6Err;
use super::ip6_output::{onlink6, NO_ROUTE};
use super::*;
use crate::route::Route6;
use softnet_wire::icmpv6::DstUnreachable as Unreach6;
use softnet_wire::ipv6::{Ipv6AddrExt, Ipv6Packet};

impl WorkerState {
    /// ip6_forward: `route` is the lookup ip6_input made for the
    /// destination (none: no route, or only on-link by an address's
    /// prefix).
    pub(super) fn ip6_forward(&mut self, cx: &Ctx, in_ifp: &Arc<Interface>, mut p: PacketBuf, route: Option<&Route6>) {
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
        let (out, next_hop, mtu) = match route {
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
                let mtu = if r.mtu != 0 { r.mtu.min(out.mtu()) } else { out.mtu() };
                (out, r.gateway.unwrap_or(dst), mtu as usize)
            }
            None => match onlink6(cx, dst) {
                Some(out) => (out, dst, out.mtu() as usize),
                None => {
                    s.noroute.inc();
                    self.icmp6_error(cx, in_ifp, &p, false, NO_ROUTE);
                    return self.free(p);
                }
            },
        };
        if p.len() > mtu {
            s.toobig.inc();
            s.cantforward.inc();
            self.icmp6_error(cx, in_ifp, &p, false, Icmp6Err::PacketTooBig(mtu as u32));
            return self.free(p);
        }
        Ipv6Packet::new_unchecked(p.data_mut()).decrement_hop_limit();
        s.forward.inc();
        self.ether_out6(cx, out, next_hop, src, p);
    }
}
