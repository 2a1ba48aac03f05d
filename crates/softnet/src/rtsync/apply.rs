//! The mirror's changes written into softnet's table, a batch at a time:
//! one `RouteTables::batch`, so the workers get one new snapshot per
//! flush however many routes it carries, and each route that changed gets
//! its one route message (RTM_ADD, RTM_CHANGE or RTM_DELETE).
//!
//! softnet's own routes (config, route(8), addresses) win: a kernel route
//! to the same prefix is not installed over one (counted as shadowed), and
//! a withdrawal never removes one. Only routes the sync installed
//! (`RouteOrigin::Kernel`) are changed or removed.

use super::mirror::{Mirror, Prefix};
use super::nexthop::{NhCache, NhError};
use super::translate::{Fam, KKind, KRoute};
use softnet_core::iface::{IfIndex, WeakIf};
use softnet_core::route::{Route, RouteBatch, RouteFlags, RouteOrigin, RouteTables, SetOutcome};
use softnet_core::rtmsg::Source;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What the sync has done, for the log and the tests.
#[derive(Default, Debug)]
pub struct SyncStats {
    /// Route messages the sync caused in softnet's table.
    pub changes: AtomicU64,
    /// Flushes that changed something (each one snapshot per family).
    pub batches: AtomicU64,
    /// Full resyncs (start, overruns).
    pub resyncs: AtomicU64,
    /// Receive buffer overruns (ENOBUFS).
    pub overruns: AtomicU64,
    /// Kernel routes softnet cannot represent.
    pub unsupported: AtomicU64,
    /// Kernel routes not installed because softnet has its own route there.
    pub shadowed: AtomicU64,
    /// Kernel routes whose next hop softnet cannot reach (retried).
    pub unresolved: AtomicU64,
}

impl SyncStats {
    fn inc(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// The `route sync:` section of `netstat -s`.
    pub fn format(&self) -> String {
        let rows = [
            (&self.changes, "route change", "route changes", "made in softnet's table"),
            (&self.batches, "batch", "batches", "published"),
            (&self.resyncs, "full resync", "full resyncs", ""),
            (&self.overruns, "receive buffer overrun", "receive buffer overruns", ""),
            (&self.unsupported, "kernel route", "kernel routes", "not representable"),
            (&self.shadowed, "kernel route", "kernel routes", "shadowed by softnet's own"),
            (&self.unresolved, "kernel route", "kernel routes", "with an unreachable next hop"),
        ];
        let mut o = String::from("route sync:\n");
        for (c, one, many, what) in rows {
            let n = c.load(Relaxed);
            let noun = if n == 1 { one } else { many };
            let line = format!("\t{n} {noun} {what}");
            o.push_str(line.trim_end());
            o.push('\n');
        }
        o
    }
}

/// Maps the kernel's interface index of a next hop to softnet's interface.
pub trait IfResolver {
    fn resolve(&mut self, kernel_ifindex: u32) -> Option<WeakIf>;
}

impl<F: FnMut(u32) -> Option<WeakIf>> IfResolver for F {
    fn resolve(&mut self, k: u32) -> Option<WeakIf> {
        self(k)
    }
}

/// Routes from the kernel's protocols that mean "configured by hand"
/// (`ip route add` is `boot`; `proto static`) get `S` as softnet's own
/// static routes have it; a routing daemon's do not.
fn is_static_proto(p: u8) -> bool {
    p == 3 || p == 4
}

/// softnet's route for a kernel route.
pub fn to_route<A: Fam>(k: &KRoute<A>, ifs: &mut impl IfResolver) -> Result<Route<A>, String> {
    let origin = RouteOrigin::Kernel(k.proto);
    let mut flags = RouteFlags::UP;
    if k.prefix_len == A::MAX_LEN {
        flags |= RouteFlags::HOST;
    }
    if is_static_proto(k.proto) {
        flags |= RouteFlags::STATIC;
    }
    let base = Route {
        dest: k.dest,
        prefix_len: k.prefix_len,
        gateway: None,
        ifp: WeakIf::default(),
        ifa: None,
        flags,
        mtu: k.mtu,
        priority: origin.priority(),
        origin,
        mpath: None,
    };
    let hops = match &k.kind {
        KKind::Blackhole => return Ok(Route { flags: flags | RouteFlags::BLACKHOLE, ..base }),
        KKind::Reject => return Ok(Route { flags: flags | RouteFlags::REJECT, ..base }),
        KKind::Unicast(hops) => hops,
        KKind::Object(id) => return Err(format!("nexthop object {id} not resolved")),
    };
    let mut out = Vec::with_capacity(hops.len());
    for h in hops {
        // An interface softnet does not have is left to the gateway: the
        // table finds the one of softnet's that reaches it.
        let ifp = if h.oif != 0 { ifs.resolve(h.oif) } else { None };
        if h.gateway.is_none() && ifp.is_none() {
            return Err(format!("kernel interface {} is not one of softnet's", h.oif));
        }
        out.push(Route { gateway: h.gateway, ifp: ifp.unwrap_or_default(), ..base.clone() });
    }
    if out.len() == 1 {
        return Ok(out.pop().expect("one"));
    }
    let mut first = out[0].clone();
    first.mpath = Some(out.into());
    Ok(first)
}

/// A route that names a nexthop object with the object's hops in its
/// place; others as they are.
pub fn resolve_object<'a, A: Fam>(k: &'a KRoute<A>, nh: &NhCache) -> Result<Cow<'a, KRoute<A>>, NhError> {
    match k.kind {
        KKind::Object(id) => Ok(Cow::Owned(KRoute { kind: nh.resolve(id)?, ..k.clone() })),
        _ => Ok(Cow::Borrowed(k)),
    }
}

/// The interface a scoped destination's key carries (`fe80::%em0/64`).
fn scope_of<A: Fam>(p: &Prefix<A>, best: Option<&KRoute<A>>, ifs: &mut impl IfResolver) -> IfIndex {
    if !p.0.is_scoped() || p.1 <= 16 {
        return IfIndex::NONE;
    }
    let oif = match best.map(|b| &b.kind) {
        Some(KKind::Unicast(h)) => h[0].oif,
        _ => 0,
    };
    ifs.resolve(oif).map(|w| w.index).unwrap_or(IfIndex::NONE)
}

/// One prefix brought in line with the mirror; returns the messages it
/// caused (0 or 1).
fn sync_prefix<A: Fam>(
    b: &mut RouteBatch<'_>,
    p: Prefix<A>,
    best: Option<&KRoute<A>>,
    ctx: &mut FlushCtx<'_, impl IfResolver>,
    unresolved: &mut BTreeSet<Prefix<A>>,
) -> u64 {
    let (ifs, stats) = (&mut *ctx.ifs, ctx.stats);
    let resolved = best.map(|k| resolve_object(k, ctx.nh));
    let scope = scope_of(&p, resolved.as_ref().and_then(|r| r.as_deref().ok()), ifs);
    if resolved.is_none() {
        // Withdrawn: the route goes if the sync installed it, in one
        // search of the table (a feed's withdrawal is a million of these).
        return u64::from(b.delete_where::<A>(p.0, p.1, scope, |t| t.origin.is_kernel()).is_ok());
    }
    // softnet's own route there (config, route(8), an address's) wins:
    // looked for only on the paths that do not set one (`set_where`
    // finds it on the way).
    let own = |b: &RouteBatch<'_>| b.get_scoped::<A>(p.0, p.1, scope).is_some_and(|t| !t.origin.is_kernel());
    // The kernel no longer uses what the sync installed there.
    let remove =
        |b: &mut RouteBatch<'_>| u64::from(b.delete_where::<A>(p.0, p.1, scope, |t| t.origin.is_kernel()).is_ok());
    let k = match resolved.expect("withdrawals returned above") {
        Ok(k) => Ok(k),
        // Not representable: counted and logged, not retried (a change
        // of the object brings the prefix back).
        Err(NhError::Unsupported(why)) => {
            if own(b) {
                SyncStats::inc(&stats.shadowed, 1);
                return 0;
            }
            SyncStats::inc(&stats.unsupported, 1);
            tracing::warn!("route sync: kernel route {}/{} not representable in softnet ({why}): skipped", p.0, p.1);
            return remove(b);
        }
        Err(e @ NhError::Unknown(_)) => Err(e.to_string()),
    };
    let made = k
        .and_then(|k| to_route(&k, ifs))
        .and_then(|r| b.set_where(r, |t| t.origin.is_kernel()).map_err(|e| e.to_string()));
    match made {
        Ok(SetOutcome::Made(_)) => 1,
        Ok(SetOutcome::Same) => 0,
        Ok(SetOutcome::Refused) => {
            SyncStats::inc(&stats.shadowed, 1);
            0
        }
        Err(_) if own(b) => {
            SyncStats::inc(&stats.shadowed, 1);
            0
        }
        Err(e) => {
            tracing::debug!("route sync: {}/{}: {e}", p.0, p.1);
            SyncStats::inc(&stats.unresolved, 1);
            unresolved.insert(p);
            remove(b)
        }
    }
}

/// What a flush reads besides the mirror: the kernel's interfaces, its
/// nexthop objects, and the counters it writes.
pub struct FlushCtx<'a, I: IfResolver> {
    pub ifs: &'a mut I,
    pub nh: &'a NhCache,
    pub stats: &'a SyncStats,
    /// The sync's tag in the route monitor: its messages are not sent
    /// back to it (`RouteMonitor::subscribe_others`).
    pub source: Option<Source>,
}

/// Writes the mirror's pending changes into table `rtable` as one batch.
/// Prefixes that could not be installed (a next hop softnet cannot reach
/// yet, a nexthop object not known yet) go to `unresolved`, to be tried
/// again. Returns the messages caused.
pub fn flush<A: Fam>(
    routes: &RouteTables,
    rtable: u16,
    mirror: &mut Mirror<A>,
    ctx: &mut FlushCtx<'_, impl IfResolver>,
    unresolved: &mut BTreeSet<Prefix<A>>,
) -> u64 {
    let stats = ctx.stats;
    let touched = mirror.take_touched();
    if touched.is_empty() {
        return 0;
    }
    let n = routes.batch_as(rtable, ctx.source, |b| {
        touched.into_iter().map(|p| sync_prefix(b, p, mirror.best(&p), ctx, unresolved)).sum::<u64>()
    });
    if n > 0 {
        SyncStats::inc(&stats.changes, n);
        SyncStats::inc(&stats.batches, 1);
    }
    n
}

/// After a resync: the kernel routes in softnet's table that the mirror
/// does not have (installed before a restart of the sync, or left by a
/// failed change) are removed; returns how many.
pub fn sweep_table<A: Fam>(
    routes: &RouteTables,
    rtable: u16,
    mirror: &Mirror<A>,
    stats: &SyncStats,
    source: Option<Source>,
) -> u64 {
    let stale: Vec<(A, u8, IfIndex)> = routes
        .routes_of::<A>(rtable)
        .iter()
        .filter(|r| r.origin.is_kernel() && mirror.best(&(r.dest, r.prefix_len)).is_none())
        .map(|r| (r.dest, r.prefix_len, if r.dest.is_scoped() { r.ifp.index } else { IfIndex::NONE }))
        .collect();
    if stale.is_empty() {
        return 0;
    }
    let n = routes.batch_as(rtable, source, |b| {
        stale.iter().filter(|(d, l, s)| b.delete_scoped::<A>(*d, *l, None, *s).is_ok()).count() as u64
    });
    SyncStats::inc(&stats.changes, n);
    SyncStats::inc(&stats.batches, 1);
    n
}

#[cfg(test)]
mod tests {
    use super::super::translate::KHop;
    use super::*;
    use softnet_core::iface::IfAddr;
    use softnet_core::rtmsg::{RouteMonitor, RtmType};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    fn ifw(i: u32) -> WeakIf {
        WeakIf { index: IfIndex(i), generation: 1 }
    }

    /// softnet interface 2 on 10.0.2.1/24 (kernel ifindex 42), 3 on 10.0.3.1/24.
    fn table() -> (RouteTables, crossbeam::channel::Receiver<softnet_core::rtmsg::RouteMessage>) {
        let m = Arc::new(RouteMonitor::new());
        let t = RouteTables::new(m.clone());
        for i in [2u32, 3] {
            let a = IfAddr::new(Ipv4Addr::new(10, 0, i as u8, 1), 24);
            t.add(0, Route::connected(ifw(i), a)).unwrap();
        }
        (t, m.subscribe())
    }

    fn resolver(k: u32) -> Option<WeakIf> {
        (k == 42).then(|| ifw(2))
    }

    fn fl<A: Fam>(
        t: &RouteTables,
        m: &mut Mirror<A>,
        nh: &NhCache,
        stats: &SyncStats,
        unres: &mut BTreeSet<Prefix<A>>,
    ) -> u64 {
        flush(t, 0, m, &mut FlushCtx { ifs: &mut resolver, nh, stats, source: None }, unres)
    }

    fn kr(net: u8, gw: Option<[u8; 4]>, oif: u32) -> KRoute<Ipv4Addr> {
        KRoute {
            dest: Ipv4Addr::new(10, net, 0, 0),
            prefix_len: 16,
            metric: 0,
            proto: 12,
            kind: KKind::Unicast(vec![KHop { gateway: gw.map(Ipv4Addr::from), oif }]),
            mtu: 0,
        }
    }

    fn kinds(rx: &crossbeam::channel::Receiver<softnet_core::rtmsg::RouteMessage>) -> Vec<RtmType> {
        rx.try_iter().map(|m| m.kind).collect()
    }

    #[test]
    fn a_burst_is_one_snapshot_and_one_message_per_route() {
        let (t, rx) = table();
        let stats = SyncStats::default();
        let mut m = Mirror::default();
        let mut unres = BTreeSet::new();
        for net in 100..200 {
            m.new_route(kr(net, Some([10, 0, 2, 2]), 0));
        }
        let v0 = t.snapshot(0).unwrap().version();
        assert_eq!(fl(&t, &mut m, &NhCache::default(), &stats, &mut unres), 100);
        assert_eq!(t.snapshot(0).unwrap().version(), v0 + 1, "one snapshot for the batch");
        assert_eq!(kinds(&rx), vec![RtmType::Add; 100]);
        let r = t.get(0, Ipv4Addr::new(10, 150, 0, 0), 16).unwrap();
        assert_eq!((r.ifp, r.origin, r.flags.to_string()), (ifw(2), RouteOrigin::Kernel(12), "UG".to_string()));
        // Flushing again with nothing new: no snapshot, no message.
        assert_eq!(fl(&t, &mut m, &NhCache::default(), &stats, &mut unres), 0);
        assert_eq!(t.snapshot(0).unwrap().version(), v0 + 1);
        // A changed gateway is one RTM_CHANGE; a withdrawal one RTM_DELETE.
        m.new_route(kr(150, Some([10, 0, 3, 2]), 0));
        m.del_route(Ipv4Addr::new(10, 151, 0, 0), 16, 0);
        assert_eq!(fl(&t, &mut m, &NhCache::default(), &stats, &mut unres), 2);
        assert_eq!(kinds(&rx), vec![RtmType::Change, RtmType::Delete]);
        assert_eq!(t.get(0, Ipv4Addr::new(10, 150, 0, 0), 16).unwrap().ifp, ifw(3));
    }

    #[test]
    fn the_syncs_own_messages_reach_route_monitor_once_each_and_not_the_sync() {
        let (t, rx) = table();
        let (me, own) = t.monitor().subscribe_others();
        let stats = SyncStats::default();
        let mut m = Mirror::default();
        let mut unres = BTreeSet::new();
        let mut fl_as = |m: &mut Mirror<Ipv4Addr>| {
            let ctx = &mut FlushCtx { ifs: &mut resolver, nh: &NhCache::default(), stats: &stats, source: Some(me) };
            flush(&t, 0, m, ctx, &mut unres)
        };
        for net in 100..110 {
            m.new_route(kr(net, Some([10, 0, 2, 2]), 0));
        }
        assert_eq!(fl_as(&mut m), 10);
        for net in 100..110 {
            m.del_route(Ipv4Addr::new(10, net, 0, 0), 16, 0);
        }
        assert_eq!(fl_as(&mut m), 10);
        let got: Vec<_> = rx.try_iter().collect();
        assert_eq!(got.iter().filter(|m| m.kind == RtmType::Add).count(), 10);
        assert_eq!(got.iter().filter(|m| m.kind == RtmType::Delete).count(), 10, "one RTM_DELETE a route");
        assert!(got.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        assert_eq!(own.try_iter().count(), 0, "the sync hears none of its own");
        // Somebody else's change it hears.
        t.delete(0, Ipv4Addr::new(10, 0, 3, 0), 24, None).unwrap();
        assert_eq!(kinds(&own), vec![RtmType::Delete]);
    }

    #[test]
    fn softnets_own_routes_are_never_replaced_or_removed() {
        let (t, rx) = table();
        let stats = SyncStats::default();
        let mut m = Mirror::default();
        let mut unres = BTreeSet::new();
        t.add(0, Route::via(Ipv4Addr::new(10, 9, 0, 0), 16, Ipv4Addr::new(10, 0, 3, 2))).unwrap();
        rx.try_iter().count();
        m.new_route(kr(9, Some([10, 0, 2, 2]), 0));
        assert_eq!(fl(&t, &mut m, &NhCache::default(), &stats, &mut unres), 0);
        assert_eq!(stats.shadowed.load(Relaxed), 1);
        m.del_route(Ipv4Addr::new(10, 9, 0, 0), 16, 0);
        assert_eq!(fl(&t, &mut m, &NhCache::default(), &stats, &mut unres), 0);
        let r = t.get(0, Ipv4Addr::new(10, 9, 0, 0), 16).unwrap();
        assert_eq!((r.gateway, r.origin), (Some(Ipv4Addr::new(10, 0, 3, 2)), RouteOrigin::Own));
        assert!(kinds(&rx).is_empty());
        // Nor does a table sweep.
        assert_eq!(sweep_table(&t, 0, &m, &stats, None), 0);
        assert!(t.get(0, Ipv4Addr::new(10, 0, 2, 0), 24).is_some(), "connected routes stay");
    }

    #[test]
    fn next_hops_by_kernel_interface_multipath_and_discard_routes() {
        let (t, _rx) = table();
        let stats = SyncStats::default();
        let mut m = Mirror::default();
        let mut unres = BTreeSet::new();
        // A route through an interface only (no gateway): the kernel's
        // ifindex 42 is softnet's 2; one via an unknown interface fails.
        m.new_route(kr(7, None, 42));
        m.new_route(kr(8, None, 77));
        let mut ecmp = kr(6, None, 0);
        ecmp.kind = KKind::Unicast(vec![
            KHop { gateway: Some(Ipv4Addr::new(10, 0, 2, 2)), oif: 0 },
            KHop { gateway: Some(Ipv4Addr::new(10, 0, 3, 2)), oif: 0 },
        ]);
        m.new_route(ecmp);
        let mut bh = kr(5, None, 0);
        bh.kind = KKind::Blackhole;
        bh.proto = 3;
        m.new_route(bh);
        let mut rej = kr(4, None, 0);
        rej.kind = KKind::Reject;
        m.new_route(rej);
        // Off every connected network: unresolved, retried later.
        m.new_route(kr(3, Some([192, 0, 2, 1]), 0));
        assert_eq!(fl(&t, &mut m, &NhCache::default(), &stats, &mut unres), 4);
        let get = |n: u8| t.get(0, Ipv4Addr::new(10, n, 0, 0), 16);
        let r7 = get(7).unwrap();
        assert_eq!((r7.gateway, r7.ifp), (None, ifw(2)));
        assert!(get(8).is_none() && get(3).is_none());
        assert_eq!(unres.len(), 2);
        assert_eq!(stats.unresolved.load(Relaxed), 2);
        let r6 = get(6).unwrap();
        let hops: Vec<u32> = r6.hops().iter().map(|h| h.ifp.index.0).collect();
        assert_eq!(hops, vec![2, 3]);
        assert!(r6.flags.contains(RouteFlags::MPATH));
        assert_eq!(get(5).unwrap().flags.to_string(), "USB");
        assert_eq!(get(4).unwrap().flags.to_string(), "UR");
        // The unresolved one comes in once its gateway is reachable.
        t.add(0, Route::connected(ifw(9), IfAddr::new(Ipv4Addr::new(192, 0, 2, 9), 24))).unwrap();
        for p in std::mem::take(&mut unres) {
            m.touch(p);
        }
        assert_eq!(fl(&t, &mut m, &NhCache::default(), &stats, &mut unres), 1);
        assert_eq!(get(3).unwrap().ifp, ifw(9));
    }

    #[test]
    fn routes_naming_nexthop_objects_resolve_through_the_cache() {
        use super::super::nexthop::{NhKind, NhMessage};
        let (t, _rx) = table();
        let stats = SyncStats::default();
        let mut m = Mirror::default();
        let mut unres = BTreeSet::new();
        let mut nh = NhCache::default();
        let hop = |gw: [u8; 4], oif| NhKind::Hop { gateway: Some(Ipv4Addr::from(gw).into()), oif };
        nh.insert(NhMessage { id: 5, kind: hop([10, 0, 2, 2], 42) });
        nh.insert(NhMessage { id: 6, kind: hop([10, 0, 3, 2], 0) });
        nh.insert(NhMessage { id: 7, kind: NhKind::Group(vec![(5, 1), (6, 1)]) });
        let obj = |net, id| KRoute { kind: KKind::Object(id), ..kr(net, None, 0) };
        m.new_route(obj(5, 5));
        m.new_route(obj(7, 7));
        // Not known yet (a route heard before its object): retried.
        m.new_route(obj(9, 99));
        assert_eq!(fl(&t, &mut m, &nh, &stats, &mut unres), 2);
        let get = |n: u8| t.get(0, Ipv4Addr::new(10, n, 0, 0), 16);
        let r5 = get(5).unwrap();
        assert_eq!((r5.gateway, r5.ifp), (Some(Ipv4Addr::new(10, 0, 2, 2)), ifw(2)));
        let r7 = get(7).unwrap();
        assert!(r7.flags.contains(RouteFlags::MPATH));
        assert_eq!(r7.hops().iter().map(|h| h.ifp.index.0).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(unres.iter().copied().collect::<Vec<_>>(), vec![(Ipv4Addr::new(10, 9, 0, 0), 16)]);
        nh.insert(NhMessage { id: 99, kind: NhKind::Blackhole });
        for p in std::mem::take(&mut unres) {
            m.touch(p);
        }
        assert_eq!(fl(&t, &mut m, &nh, &stats, &mut unres), 1);
        assert_eq!(get(9).unwrap().flags.to_string(), "UB");
        // A member replaced: the group's route follows.
        let c = nh.insert(NhMessage { id: 6, kind: hop([10, 0, 2, 3], 0) });
        m.touch_objects(&c.changed);
        assert_eq!(fl(&t, &mut m, &nh, &stats, &mut unres), 1);
        let gws: Vec<_> = get(7).unwrap().hops().iter().map(|h| h.gateway).collect();
        assert_eq!(gws, vec![Some(Ipv4Addr::new(10, 0, 2, 2)), Some(Ipv4Addr::new(10, 0, 2, 3))]);
        // Deleted: the routes naming it leave softnet's table.
        let c = nh.remove(5);
        m.remove_objects(&c.deleted);
        m.touch_objects(&c.changed);
        assert_eq!(fl(&t, &mut m, &nh, &stats, &mut unres), 2, "10.5 deleted, 10.7 down to one hop");
        assert!(get(5).is_none());
        assert!(!get(7).unwrap().flags.contains(RouteFlags::MPATH));
        // An IPv4 route naming an object with an IPv6 gateway: not
        // representable, counted, not retried.
        let v6gw: std::net::Ipv6Addr = "fe80::2".parse().unwrap();
        nh.insert(NhMessage { id: 10, kind: NhKind::Hop { gateway: Some(v6gw.into()), oif: 42 } });
        m.new_route(obj(10, 10));
        assert_eq!(fl(&t, &mut m, &nh, &stats, &mut unres), 0);
        assert_eq!(stats.unsupported.load(Relaxed), 1);
        assert!(unres.is_empty() && get(10).is_none());
    }

    #[test]
    fn a_resync_after_an_overrun_converges_on_the_kernels_table() {
        let (t, rx) = table();
        let stats = SyncStats::default();
        let mut m = Mirror::default();
        let mut unres = BTreeSet::new();
        for net in 10..20 {
            m.new_route(kr(net, Some([10, 0, 2, 2]), 0));
        }
        fl(&t, &mut m, &NhCache::default(), &stats, &mut unres);
        rx.try_iter().count();
        // The dump after the overrun: 10..15 unchanged, 15..20 gone, 30 new.
        m.begin_resync();
        for net in (10..15).chain([30]) {
            m.new_route(kr(net, Some([10, 0, 2, 2]), 0));
        }
        assert_eq!(m.end_resync(), 5);
        assert_eq!(fl(&t, &mut m, &NhCache::default(), &stats, &mut unres), 6);
        let k = kinds(&rx);
        assert_eq!(k.iter().filter(|k| **k == RtmType::Delete).count(), 5);
        assert_eq!(k.iter().filter(|k| **k == RtmType::Add).count(), 1);
        let kernel: Vec<u8> = t.routes(0).iter().filter(|r| r.origin.is_kernel()).map(|r| r.dest.octets()[1]).collect();
        assert_eq!(kernel, vec![10, 11, 12, 13, 14, 30]);
        // A kernel route in the table the mirror never had is swept too.
        let mut stray = Route::via(Ipv4Addr::new(10, 99, 0, 0), 16, Ipv4Addr::new(10, 0, 2, 2));
        stray.origin = RouteOrigin::Kernel(186);
        t.add(0, stray).unwrap();
        assert_eq!(sweep_table(&t, 0, &m, &stats, None), 1);
        assert!(t.get(0, Ipv4Addr::new(10, 99, 0, 0), 16).is_none());
    }

    /// BENCHMARKS.md's figure: 100,000 kernel routes into softnet's table
    /// in batches of the sizes given, against one flush per route.
    /// `cargo test --release -p softnet rtsync_100k -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement"]
    fn rtsync_100k_changes_batched_vs_per_route() {
        let n = 100_000u32;
        let route = |i: u32| KRoute {
            dest: Ipv4Addr::from(0x0b00_0000 + (i << 8)),
            prefix_len: 24,
            metric: 0,
            proto: 12,
            kind: KKind::Unicast(vec![KHop { gateway: Some(Ipv4Addr::new(10, 0, 2, 2)), oif: 0 }]),
            mtu: 0,
        };
        for batch in [n as usize, 10_000, 1_000, 100, 1] {
            let (t, rx) = table();
            drop(rx);
            let stats = SyncStats::default();
            let mut m = Mirror::default();
            let mut unres = BTreeSet::new();
            let v0 = t.snapshot(0).unwrap().version();
            let t0 = std::time::Instant::now();
            for i in 0..n {
                m.new_route(route(i));
                if m.pending() >= batch {
                    fl(&t, &mut m, &NhCache::default(), &stats, &mut unres);
                }
            }
            fl(&t, &mut m, &NhCache::default(), &stats, &mut unres);
            let add = t0.elapsed();
            let t1 = std::time::Instant::now();
            for i in 0..n {
                let r = route(i);
                m.del_route(r.dest, r.prefix_len, 0);
                if m.pending() >= batch {
                    fl(&t, &mut m, &NhCache::default(), &stats, &mut unres);
                }
            }
            fl(&t, &mut m, &NhCache::default(), &stats, &mut unres);
            let del = t1.elapsed();
            let snaps = t.snapshot(0).unwrap().version() - v0;
            assert_eq!(stats.changes.load(Relaxed), 2 * n as u64);
            println!(
                "batch {batch:>6}: add {:>7.0} ms ({:>9.0} routes/s), delete {:>7.0} ms ({:>9.0} routes/s), {snaps} snapshots",
                add.as_secs_f64() * 1e3,
                n as f64 / add.as_secs_f64(),
                del.as_secs_f64() * 1e3,
                n as f64 / del.as_secs_f64(),
            );
        }
    }

    /// BENCHMARKS.md's figure: the withdrawal of the 1,000,000-prefix feed
    /// of bench/rtsync_1m.sh (/24s from 32.0.0.0 on, 4,096 /16s full)
    /// in a scattered order as BIRD's (a fixed-seed shuffle), flushed
    /// every N prefixes: the sync's CPU per route against the batch size.
    /// `RTSYNC_1M_N=1000000 cargo test --release -p softnet rtsync_withdraw -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement"]
    fn rtsync_withdraw_scattered_by_batch_size() {
        let n: u32 = std::env::var("RTSYNC_1M_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        let route = |i: u32| KRoute {
            dest: Ipv4Addr::from(0x2000_0000 + (i << 8)),
            prefix_len: 24,
            metric: 32,
            proto: 12,
            kind: KKind::Unicast(vec![KHop { gateway: Some(Ipv4Addr::new(10, 0, 2, 2)), oif: 0 }]),
            mtu: 0,
        };
        let order = super::super::scattered_order(n);
        let batches: Vec<usize> = std::env::var("RTSYNC_BATCHES")
            .ok()
            .map(|v| v.split(',').filter_map(|b| b.parse().ok()).collect())
            .unwrap_or_else(|| vec![1_000, 5_000, 20_000, 50_000]);
        for batch in batches {
            let (t, rx) = table();
            drop(rx);
            let stats = SyncStats::default();
            let mut m = Mirror::default();
            let mut unres = BTreeSet::new();
            let c0 = super::super::thread_cpu();
            for i in 0..n {
                m.new_route(route(i));
                if m.pending() >= 50_000 {
                    fl(&t, &mut m, &NhCache::default(), &stats, &mut unres);
                }
            }
            fl(&t, &mut m, &NhCache::default(), &stats, &mut unres);
            let add = super::super::thread_cpu() - c0;
            let c1 = super::super::thread_cpu();
            let b0 = stats.batches.load(Relaxed);
            for &i in &order {
                let r = route(i);
                m.del_route(r.dest, r.prefix_len, r.metric);
                if m.pending() >= batch {
                    fl(&t, &mut m, &NhCache::default(), &stats, &mut unres);
                }
            }
            fl(&t, &mut m, &NhCache::default(), &stats, &mut unres);
            let del = super::super::thread_cpu() - c1;
            assert_eq!(stats.changes.load(Relaxed), 2 * n as u64);
            println!(
                "batch {batch:>6}: add (in order, 50,000 a batch) {:>6.0} ms CPU ({:>7.0} routes/s), scattered delete {:>6.0} ms CPU ({:>7.0} routes/s) in {} batches",
                add.as_secs_f64() * 1e3,
                n as f64 / add.as_secs_f64(),
                del.as_secs_f64() * 1e3,
                n as f64 / del.as_secs_f64(),
                stats.batches.load(Relaxed) - b0,
            );
        }
    }

    #[test]
    fn ipv6_routes_via_a_link_local_gateway_take_the_kernels_interface() {
        let m6 = Arc::new(RouteMonitor::new());
        let t = RouteTables::new(m6);
        let stats = SyncStats::default();
        let mut m: Mirror<Ipv6Addr> = Mirror::default();
        let mut unres = BTreeSet::new();
        let gw: Ipv6Addr = "fe80::2".parse().unwrap();
        m.new_route(KRoute {
            dest: "2001:db8:9::".parse().unwrap(),
            prefix_len: 48,
            metric: 1024,
            proto: 186,
            kind: KKind::Unicast(vec![KHop { gateway: Some(gw), oif: 42 }]),
            mtu: 0,
        });
        t.add(0, Route::connected6(ifw(2), "fe80::1".parse().unwrap(), 64)).unwrap();
        assert_eq!(fl(&t, &mut m, &NhCache::default(), &stats, &mut unres), 1);
        let r = t.get(0, "2001:db8:9::".parse::<Ipv6Addr>().unwrap(), 48).unwrap();
        assert_eq!((r.gateway, r.ifp, r.priority), (Some(gw), ifw(2), 48));
    }
}
