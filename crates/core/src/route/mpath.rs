//! Multipath routes and where a route came from.
//!
//! A destination with several equal next hops (ECMP) is one table entry,
//! flagged `MPATH` as OpenBSD's multipath routes are, whose `mpath` holds
//! one whole route per next hop. The forwarding path picks one per flow
//! (OpenBSD's rtable_mpath_select): RFC 2992's hash-threshold over the
//! packet's source and destination, so a flow keeps its next hop and the
//! flows spread evenly; a route with one next hop costs nothing more than
//! the `None` check.

use super::Route;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Who made a route.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default, Hash)]
pub enum RouteOrigin {
    /// softnet itself: its config, route(8), an interface's address.
    #[default]
    Own,
    /// Mirrored from a kernel routing table (`sync_routes`), with the
    /// kernel's protocol (rtm_protocol: 3 boot, 4 static, 11 zebra,
    /// 12 bird, 186 bgp, 188 ospf, ...). Only the sync changes or removes
    /// such a route; it never touches an `Own` one.
    Kernel(u8),
}

/// Linux's route protocol names (iproute2's rt_protos).
const PROTO_NAMES: &[(u8, &str)] = &[
    (0, "unspec"),
    (1, "redirect"),
    (2, "kernel"),
    (3, "boot"),
    (4, "static"),
    (8, "gated"),
    (9, "ra"),
    (10, "mrt"),
    (11, "zebra"),
    (12, "bird"),
    (13, "dnrouted"),
    (14, "xorp"),
    (15, "ntk"),
    (16, "dhcp"),
    (17, "mrouted"),
    (18, "keepalived"),
    (42, "babel"),
    (99, "openr"),
    (186, "bgp"),
    (187, "isis"),
    (188, "ospf"),
    (189, "rip"),
    (192, "eigrp"),
];

impl RouteOrigin {
    pub fn is_kernel(self) -> bool {
        matches!(self, RouteOrigin::Kernel(_))
    }

    /// The kernel protocol's name as `ip route` prints it (`bird`,
    /// `bgp`, or the number), `None` for softnet's own routes.
    pub fn proto_name(self) -> Option<String> {
        let RouteOrigin::Kernel(p) = self else { return None };
        Some(PROTO_NAMES.iter().find(|(n, _)| *n == p).map_or_else(|| p.to_string(), |(_, s)| s.to_string()))
    }

    /// The OpenBSD route priority (RTP_*) of a route of this origin:
    /// what a routing daemon of that protocol uses there (bgpd RTP_BGP,
    /// ospfd RTP_OSPF, ...); static for the others.
    pub fn priority(self) -> u8 {
        match self {
            RouteOrigin::Kernel(186) => 48, // RTP_BGP
            RouteOrigin::Kernel(189) => 40, // RTP_RIP
            RouteOrigin::Kernel(187) => 36, // RTP_ISIS
            RouteOrigin::Kernel(188) => 32, // RTP_OSPF
            RouteOrigin::Kernel(192) => 28, // RTP_EIGRP
            _ => super::prio::STATIC,
        }
    }
}

/// splitmix64's finalizer: every input bit moves every output bit.
#[inline]
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The flow hash multipath selection uses: the source and destination
/// addresses (as OpenBSD's rt_hash), widened to 128 bits for IPv4.
#[inline]
pub fn mpath_hash(src: u128, dst: u128) -> u32 {
    let s = (src as u64) ^ ((src >> 64) as u64);
    let d = (dst as u64) ^ ((dst >> 64) as u64);
    (mix64(s ^ mix64(d)) >> 32) as u32
}

impl<A: super::RouteAddr> Route<A> {
    /// The next hop of this route for flow hash `hash`: the route itself,
    /// or one of a multipath route's, by hash-threshold (RFC 2992 §2:
    /// the hash space cut into equal regions, one per next hop).
    #[inline]
    pub fn select(&self, hash: u32) -> &Route<A> {
        match &self.mpath {
            None => self,
            Some(hops) => &hops[((hash as u64 * hops.len() as u64) >> 32) as usize],
        }
    }

    /// The routes netstat lists for this entry: each next hop of a
    /// multipath route, else the route itself.
    pub fn hops(&self) -> &[Route<A>] {
        match &self.mpath {
            Some(h) => h,
            None => std::slice::from_ref(self),
        }
    }
}

impl Route<Ipv4Addr> {
    /// `select` for a packet from `src` to `dst` (the hash computed only
    /// for a multipath route).
    #[inline]
    pub fn select_flow(&self, src: Ipv4Addr, dst: Ipv4Addr) -> &Route<Ipv4Addr> {
        if self.mpath.is_none() {
            return self;
        }
        self.select(mpath_hash(u32::from(src) as u128, u32::from(dst) as u128))
    }
}

impl Route<Ipv6Addr> {
    /// `select` for a packet from `src` to `dst`.
    #[inline]
    pub fn select_flow(&self, src: Ipv6Addr, dst: Ipv6Addr) -> &Route<Ipv6Addr> {
        if self.mpath.is_none() {
            return self;
        }
        self.select(mpath_hash(u128::from(src), u128::from(dst)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::{IfIndex, WeakIf};
    use crate::route::RouteFlags;
    use std::sync::Arc;

    fn hop(gw: [u8; 4], ifx: u32) -> Route {
        let mut r = Route::via(Ipv4Addr::new(10, 9, 0, 0), 16, Ipv4Addr::from(gw));
        r.ifp = WeakIf { index: IfIndex(ifx), generation: 1 };
        r.flags |= RouteFlags::MPATH;
        r
    }

    #[test]
    fn flows_spread_over_every_next_hop_and_each_flow_keeps_one() {
        let hops: Arc<[Route]> = vec![hop([10, 0, 2, 2], 2), hop([10, 0, 3, 2], 3), hop([10, 0, 4, 2], 4)].into();
        let mut r = hops[0].clone();
        r.mpath = Some(hops.clone());
        let mut count = [0usize; 3];
        for i in 0..3000u32 {
            let dst = Ipv4Addr::from(0x0a09_0000 + i);
            let src = Ipv4Addr::new(10, 0, 1, 2);
            let h = r.select_flow(src, dst);
            assert_eq!(h as *const Route, r.select_flow(src, dst) as *const Route, "a flow keeps its next hop");
            count[hops.iter().position(|x| x.gateway == h.gateway).unwrap()] += 1;
        }
        for c in count {
            assert!((800..1200).contains(&c), "uneven spread {count:?}");
        }
        assert_eq!(r.hops().len(), 3);
    }

    #[test]
    fn a_single_route_selects_itself() {
        let r = Route::via(Ipv4Addr::new(10, 9, 0, 0), 16, Ipv4Addr::new(10, 0, 2, 2));
        assert!(std::ptr::eq(r.select(12345), &r));
        assert_eq!(r.hops().len(), 1);
        // Hash-threshold's ends land in the first and last region.
        let hops: Arc<[Route]> = vec![hop([1, 1, 1, 1], 1), hop([2, 2, 2, 2], 2)].into();
        let mut m = hops[0].clone();
        m.mpath = Some(hops);
        assert_eq!(m.select(0).gateway, Some(Ipv4Addr::new(1, 1, 1, 1)));
        assert_eq!(m.select(u32::MAX).gateway, Some(Ipv4Addr::new(2, 2, 2, 2)));
    }

    #[test]
    fn a_multipath_route_resolves_each_hop_and_prints_a_line_per_hop() {
        use crate::iface::IfAddr;
        use crate::route::{format_netstat_rn, RouteTables};
        use crate::rtmsg::RouteMonitor;
        let m = Arc::new(RouteMonitor::new());
        let rx = m.subscribe();
        let t = RouteTables::new(m);
        for i in [2u32, 3] {
            let a = IfAddr::new(Ipv4Addr::new(10, 0, i as u8, 1), 24);
            t.add(0, Route::connected(WeakIf { index: IfIndex(i), generation: 1 }, a)).unwrap();
        }
        let gw = |o: u8| Route::via(Ipv4Addr::new(10, 9, 0, 0), 16, Ipv4Addr::new(10, 0, o, 2));
        let mut r = gw(2);
        r.origin = RouteOrigin::Kernel(12);
        r.mpath = Some(vec![gw(2), gw(3)].into());
        while rx.try_recv().is_ok() {}
        let added = t.add(0, r).unwrap();
        assert_eq!(rx.try_iter().count(), 1, "one message for the route");
        let hops = added.mpath.as_ref().unwrap();
        assert_eq!(hops.iter().map(|h| h.ifp.index.0).collect::<Vec<_>>(), vec![2, 3]);
        assert!(hops.iter().all(|h| h.flags.contains(RouteFlags::MPATH) && h.origin == RouteOrigin::Kernel(12)));
        assert_eq!((added.gateway, added.ifp.index), (Some(Ipv4Addr::new(10, 0, 2, 2)), IfIndex(2)));
        let out = format_netstat_rn(&t.routes(0), |w| Some(format!("r{}", w.index)), 0);
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("10.9/16")).collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].contains("10.0.2.2") && lines[0].contains("UGSP") && lines[0].ends_with("r2"), "{out}");
        assert!(lines[1].contains("10.0.3.2") && lines[1].ends_with("r3"), "{out}");
        // A hop off every connected network fails the whole route.
        let mut bad = gw(2);
        bad.mpath = Some(vec![gw(2), gw(7)].into());
        assert_eq!(t.change(0, bad), Err(crate::route::RouteError::NetworkUnreachable));
        // One hop is a plain route.
        let mut one = gw(3);
        one.mpath = Some(vec![gw(3)].into());
        let one = t.change(0, one).unwrap();
        assert!(one.mpath.is_none() && !one.flags.contains(RouteFlags::MPATH));
    }

    #[test]
    fn kernel_protocols_have_names_and_openbsd_priorities() {
        assert_eq!(RouteOrigin::Kernel(12).proto_name().as_deref(), Some("bird"));
        assert_eq!(RouteOrigin::Kernel(186).proto_name().as_deref(), Some("bgp"));
        assert_eq!(RouteOrigin::Kernel(250).proto_name().as_deref(), Some("250"));
        assert_eq!(RouteOrigin::Own.proto_name(), None);
        assert_eq!(RouteOrigin::Kernel(186).priority(), 48);
        assert_eq!(RouteOrigin::Kernel(3).priority(), 8);
    }
}
