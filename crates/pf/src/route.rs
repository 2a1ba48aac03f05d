//! pf's routing options on pf's side: `route-to`, `reply-to`, `dup-to`.
//!
//! A routing option names next hops: addresses, found by the route to
//! them as OpenBSD since 6.9 does (pf_route's `rtalloc_mpath(st->rt_addr)`),
//! or, in the older form pfctl still reads here, an address on a named
//! interface (`(if addr)`, `addr@if`: pf's `rt_kif`, no route lookup).
//! When a rule with one creates
//! a state, the state remembers the option and the next hop chosen from
//! the rule's pool (pf_set_rt_ifp: `st->rt`, `st->rt_addr`, from the
//! state's own rule only; pfctl refuses the options on `match` and `block`
//! rules and on rules without state). Every packet the state passes afterwards gets the decision
//! pf_route makes for it (`decision`), which the stack carries out
//! (`softnet_core::filter::RouteDecision`):
//!
//! * `route-to`: packets in the state's direction go to the next hop;
//! * `reply-to`: packets against the state's direction (the replies) do;
//! * `dup-to`: every packet, either way, is copied to the next hop and
//!   goes its way too.
//!
//! `pfctl -ss` shows nothing of it (print_state prints no route).

use std::net::Ipv4Addr;
use std::sync::Arc;

use softnet_core::filter::{NextHop, RouteDecision};
use softnet_core::iface::WeakIf;

use crate::lb::{CPool, IfAddrs};
use crate::model::{Addr, PoolType, Route, RouteKind};
use crate::table::Table;

/// A rule's routing option compiled: pf_rule's `rt` and its `route` pool.
pub struct CRoute {
    pub kind: RouteKind,
    pub pool: CPool,
    /// `(if addr)` / `addr@if`: the interface the next hop is on (pf's
    /// `rt_kif`), instead of the route to it.
    pub ifname: Option<String>,
}

/// Why a routing option cannot be loaded yet (`check_supported` says
/// "`what` not supported yet").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl CRoute {
    /// What of a routing option softnet does not do yet: IPv6 next hops
    /// (`sticky-address` keeps the next hop in a source node:
    /// `crate::srcnode`, at state creation.)
    pub fn check(r: &Route) -> Result<(), Unsupported> {
        let kw = r.kind.keyword();
        let p = &r.pool;
        if matches!(&p.addr, Addr::Net(n) if n.addr.is_ipv6()) || matches!(&p.addr, Addr::Range(a, _) if a.is_ipv6()) {
            return Err(Unsupported(format!("{kw} to an IPv6 address")));
        }
        Ok(())
    }

    /// The routing option of a `pass` rule; `tables` finds the ruleset's
    /// tables (a list of next hops is one, `<__automatic_N>`, as pfctl
    /// makes it).
    pub fn compile(r: &Route, tables: &dyn Fn(&str) -> Option<Arc<Table>>) -> Result<CRoute, Unsupported> {
        Self::check(r)?;
        let pool = CPool::new(&r.pool, &mut |name| tables(name))
            .ok_or_else(|| Unsupported(format!("{} to this address", r.kind.keyword())))?;
        Ok(CRoute { kind: r.kind, pool, ifname: r.pool.ifname.clone() })
    }

    /// The next hop a new state from `src` remembers (pf_set_rt_ifp's
    /// pf_map_addr on the rule's route pool). `None`: the pool has no
    /// address to give (an empty table, an interface with no peer
    /// address); pf then makes no state (reason `no-route`).
    /// With an interface named, that interface as it is now (`if_ref`):
    /// none, no state. A `least-states` pool counts the state on the
    /// address it gave until `released`.
    pub fn next_hop(
        &self,
        if_addrs: IfAddrs,
        if_ref: &dyn Fn(&str) -> Option<WeakIf>,
        src: Ipv4Addr,
    ) -> Option<NextHop> {
        let addr = Ipv4Addr::from(self.pool.map(if_addrs, u32::from(src), None)?);
        self.hop_to(addr, if_ref)
    }

    /// The next hop `addr` of this option's pool (one the pool gave, or a
    /// source node kept for `sticky-address`): on the option's interface
    /// if it names one, else reached by the route to it.
    pub fn hop_to(&self, addr: Ipv4Addr, if_ref: &dyn Fn(&str) -> Option<WeakIf>) -> Option<NextHop> {
        Some(match &self.ifname {
            Some(name) => NextHop::on(if_ref(name)?, addr),
            None => NextHop::routed(addr),
        })
    }
}

impl CRoute {
    /// A state that had next hop `addr` from this pool is gone (or was
    /// never made): `least-states` counts it no more (pfr_states_decrease).
    pub fn released(&self, addr: Ipv4Addr) {
        if self.pool.kind == PoolType::LeastStates {
            self.pool.loads.decrease(u32::from(addr));
        }
    }
}

/// What pf_route does with a packet of a state with routing option `kind`
/// and next hop `rt_addr`: `state_dir` is the direction the state was made
/// in and `pkt_dir` the packet's (both `DIR_IN`/`DIR_OUT` codes).
#[inline]
pub fn decision(kind: RouteKind, rt_addr: NextHop, state_dir: u8, pkt_dir: u8) -> RouteDecision {
    match kind {
        RouteKind::DupTo => RouteDecision::Dup(rt_addr),
        // pf_route: `(st->rt == PF_REPLYTO) == (st->direction == pd->dir)`
        // leaves the packet alone.
        _ if (kind == RouteKind::ReplyTo) == (state_dir == pkt_dir) => RouteDecision::None,
        _ => RouteDecision::To(rt_addr),
    }
}

/// A state's routing option as it keeps it (`StateData::rt`): 0 none, else
/// the option.
pub fn kind_code(k: Option<RouteKind>) -> u8 {
    match k {
        None => 0,
        Some(RouteKind::RouteTo) => 1,
        Some(RouteKind::ReplyTo) => 2,
        Some(RouteKind::DupTo) => 3,
    }
}

/// The option a state's `rt` code names.
pub fn kind_of(code: u8) -> Option<RouteKind> {
    match code {
        1 => Some(RouteKind::RouteTo),
        2 => Some(RouteKind::ReplyTo),
        3 => Some(RouteKind::DupTo),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IfAddrModifier, IpNet, Pool, PoolRole};
    use crate::state::{DIR_IN, DIR_OUT};

    fn route(kind: RouteKind, addr: Addr, pool_kind: PoolType) -> Route {
        let mut pool = Pool::single(addr, PoolRole::Route);
        pool.kind = pool_kind;
        Route { kind, pool }
    }

    fn net(s: &str) -> Addr {
        let (a, p) = s.split_once('/').unwrap_or((s, "32"));
        Addr::Net(IpNet { addr: a.parse().unwrap(), prefix: p.parse().unwrap() })
    }

    fn no_ifs(_: &str) -> Option<Vec<softnet_core::iface::IfAddr>> {
        None
    }

    fn no_refs(_: &str) -> Option<WeakIf> {
        None
    }

    #[test]
    fn route_to_goes_the_states_way_reply_to_the_other_dup_to_both() {
        let nh = NextHop::routed(Ipv4Addr::new(10, 0, 3, 2));
        for (state_dir, other) in [(DIR_IN, DIR_OUT), (DIR_OUT, DIR_IN)] {
            assert_eq!(decision(RouteKind::RouteTo, nh, state_dir, state_dir), RouteDecision::To(nh));
            assert_eq!(decision(RouteKind::RouteTo, nh, state_dir, other), RouteDecision::None);
            assert_eq!(decision(RouteKind::ReplyTo, nh, state_dir, state_dir), RouteDecision::None);
            assert_eq!(decision(RouteKind::ReplyTo, nh, state_dir, other), RouteDecision::To(nh));
            assert_eq!(decision(RouteKind::DupTo, nh, state_dir, state_dir), RouteDecision::Dup(nh));
            assert_eq!(decision(RouteKind::DupTo, nh, state_dir, other), RouteDecision::Dup(nh));
        }
    }

    #[test]
    fn next_hops_come_from_the_pool_as_pf_map_addr_gives_them() {
        let tables = |_: &str| None;
        let src = Ipv4Addr::new(10, 0, 1, 77);
        let one = CRoute::compile(&route(RouteKind::RouteTo, net("10.0.3.2"), PoolType::None), &tables).unwrap();
        assert_eq!(one.next_hop(&no_ifs, &no_refs, src), Some(NextHop::routed(Ipv4Addr::new(10, 0, 3, 2))));
        // bitmask: the pool's network bits, the source's host bits.
        let bm = CRoute::compile(&route(RouteKind::RouteTo, net("10.0.3.0/24"), PoolType::Bitmask), &tables).unwrap();
        assert_eq!(bm.next_hop(&no_ifs, &no_refs, src), Some(NextHop::routed(Ipv4Addr::new(10, 0, 3, 77))));
        // round-robin over a table's entries, in turn.
        let t = Arc::new(Table::new("gw"));
        let host = |s: &str| crate::model::TableEntry { negated: false, net: IpNet::host(s.parse().unwrap()) };
        t.add(&[host("10.0.3.2"), host("10.0.3.3")]);
        let tables = |n: &str| (n == "gw").then(|| t.clone());
        let rr =
            CRoute::compile(&route(RouteKind::DupTo, Addr::Table("gw".into()), PoolType::RoundRobin), &tables).unwrap();
        let got: Vec<_> = (0..3).map(|_| rr.next_hop(&no_ifs, &no_refs, src).unwrap().addr).collect();
        assert_eq!(got, [Ipv4Addr::new(10, 0, 3, 2), Ipv4Addr::new(10, 0, 3, 3), Ipv4Addr::new(10, 0, 3, 2)]);
        // (if:peer): softnet's interfaces have no peer address: nothing.
        let dynif =
            Addr::Dynamic { ifname: "r2".into(), modifier: IfAddrModifier::Peer, no_alias: false, prefix: None };
        let peer = CRoute::compile(&route(RouteKind::RouteTo, dynif, PoolType::RoundRobin), &tables).unwrap();
        let r2 = |_: &str| Some(vec![softnet_core::iface::IfAddr::new(Ipv4Addr::new(10, 0, 3, 1), 24)]);
        assert_eq!(peer.next_hop(&r2, &no_refs, src), None);
    }

    #[test]
    fn ipv6_next_hops_are_refused_for_now() {
        let mut r = route(RouteKind::ReplyTo, net("10.0.3.0/24"), PoolType::RoundRobin);
        r.pool.sticky = true;
        assert!(CRoute::check(&r).is_ok(), "sticky-address: source nodes keep the next hop");
        let e = CRoute::check(&route(RouteKind::DupTo, net("fec0::1"), PoolType::None)).unwrap_err();
        assert_eq!(e.0, "dup-to to an IPv6 address");
    }

    #[test]
    fn least_states_gives_the_next_hop_with_fewest_states_and_counts_them_off() {
        let t = Arc::new(Table::new("gw"));
        let host = |s: &str| crate::model::TableEntry { negated: false, net: IpNet::host(s.parse().unwrap()) };
        t.add(&[host("10.0.3.2"), host("10.0.3.3")]);
        let tables = |n: &str| (n == "gw").then(|| t.clone());
        let r = CRoute::compile(&route(RouteKind::RouteTo, Addr::Table("gw".into()), PoolType::LeastStates), &tables)
            .unwrap();
        let src = Ipv4Addr::new(10, 0, 1, 2);
        let a = r.next_hop(&no_ifs, &no_refs, src).unwrap().addr;
        let b = r.next_hop(&no_ifs, &no_refs, src).unwrap().addr;
        assert_ne!(a, b, "each next hop has one state");
        // a's state ends: a has the fewest again.
        r.released(a);
        assert_eq!(r.next_hop(&no_ifs, &no_refs, src).unwrap().addr, a);
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in [None, Some(RouteKind::RouteTo), Some(RouteKind::ReplyTo), Some(RouteKind::DupTo)] {
            assert_eq!(kind_of(kind_code(k)), k);
        }
    }
}
