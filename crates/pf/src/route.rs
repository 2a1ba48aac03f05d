//! pf's routing options on pf's side: `route-to`, `reply-to`, `dup-to`.
//!
//! A routing option names next hops: addresses of the rule's family (pf_route
//! for IPv4, pf_route6 for IPv6), found by the route to
//! them as OpenBSD since 6.9 does (pf_route's `rtalloc_mpath(st->rt_addr)`),
//! or, in the older form pfctl still reads here, an address on a named
//! interface (`(if addr)`, `addr@if`: pf's `rt_kif`, no route lookup).
//! When a rule with one creates
//! a state, the state remembers the option and the next hop chosen from
//! the rule's pool (pf_set_rt_ifp: `st->rt`, `st->rt_addr`, from the
//! state's own rule only; pfctl refuses the options on `match` and `block`
//! rules and on rules without state). Every packet the state passes afterwards gets the decision
//! pf_route makes for it (`decision`, left in the packet by `apply`), which
//! the stack carries out (`softnet_core::filter::RouteDecision`; an IPv6
//! next hop's address beside the metadata, `PacketData::pf_hop6`):
//!
//! * `route-to`: packets in the state's direction go to the next hop;
//! * `reply-to`: packets against the state's direction (the replies) do;
//! * `dup-to`: every packet, either way, is copied to the next hop and
//!   goes its way too.
//!
//! `pfctl -ss` shows nothing of it (print_state prints no route).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use softnet_core::filter::{NextHop, RouteDecision};
use softnet_core::iface::WeakIf;
use softnet_core::packet::PacketBuf;

use crate::lb::{CPool, IfAddrs, IfAddrs6};
use crate::model::{PoolType, Route, RouteKind};
use crate::table::Table;

/// A rule's routing option compiled: pf_rule's `rt` and its `route` pool.
pub struct CRoute {
    pub kind: RouteKind,
    pub pool: CPool,
    /// `(if addr)` / `addr@if`: the interface the next hop is on (pf's
    /// `rt_kif`), instead of the route to it.
    pub ifname: Option<String>,
}

/// Why a routing option cannot be loaded (`check_supported` says
/// "`what` not supported yet").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

/// A next hop pf chose for a state (pf's `st->rt_addr`, of the state's
/// family, and `rt_kif`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    pub addr: IpAddr,
    /// `(if addr)`: the interface the address is on; none: the route to it.
    pub ifp: Option<WeakIf>,
}

impl CRoute {
    /// The routing option of a `pass` rule; `tables` finds the ruleset's
    /// tables (a list of next hops is one, `<__automatic_N>`, as pfctl
    /// makes it).
    pub fn compile(r: &Route, tables: &dyn Fn(&str) -> Option<Arc<Table>>) -> Result<CRoute, Unsupported> {
        let pool = CPool::new(&r.pool, &mut |name| tables(name))
            .ok_or_else(|| Unsupported(format!("{} to this address", r.kind.keyword())))?;
        Ok(CRoute { kind: r.kind, pool, ifname: r.pool.ifname.clone() })
    }

    /// The next hop a new state from `src` remembers (pf_set_rt_ifp's
    /// pf_map_addr on the rule's route pool, in the source's family).
    /// `None`: the pool has no address to give (an empty table, an
    /// interface with no peer address, none of that family); pf then
    /// makes no state (reason `no-route`).
    /// With an interface named, that interface as it is now (`if_ref`):
    /// none, no state. A `least-states` pool counts the state on the
    /// address it gave until `released`.
    pub fn next_hop(
        &self,
        if_addrs: IfAddrs,
        if_addrs6: IfAddrs6,
        if_ref: &dyn Fn(&str) -> Option<WeakIf>,
        src: IpAddr,
    ) -> Option<Hop> {
        let addr = match src {
            IpAddr::V4(s) => IpAddr::V4(Ipv4Addr::from(self.pool.map(if_addrs, u32::from(s), None)?)),
            IpAddr::V6(s) => IpAddr::V6(Ipv6Addr::from(self.pool.map6(if_addrs6, u128::from(s), None)?)),
        };
        self.hop_to(addr, if_ref)
    }

    /// The next hop `addr` of this option's pool (one the pool gave, or a
    /// source node kept for `sticky-address`): on the option's interface
    /// if it names one, else reached by the route to it.
    pub fn hop_to(&self, addr: IpAddr, if_ref: &dyn Fn(&str) -> Option<WeakIf>) -> Option<Hop> {
        let ifp = match &self.ifname {
            Some(name) => Some(if_ref(name)?),
            None => None,
        };
        Some(Hop { addr, ifp })
    }
}

impl CRoute {
    /// A state that had next hop `addr` from this pool is gone (or was
    /// never made): `least-states` counts it no more (pfr_states_decrease).
    pub fn released(&self, addr: IpAddr) {
        if self.pool.kind == PoolType::LeastStates {
            match addr {
                IpAddr::V4(a) => self.pool.loads.decrease(u32::from(a)),
                IpAddr::V6(a) => self.pool.loads6.decrease(u128::from(a)),
            }
        }
    }
}

/// What pf_route does with one packet of a routed state.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// Nothing: it goes by its destination.
    Stay,
    /// To the state's next hop instead.
    To,
    /// A copy to the next hop, the packet its way.
    Dup,
}

/// What pf_route does with a packet of a state with routing option
/// `kind`: `state_dir` is the direction the state was made in and
/// `pkt_dir` the packet's (both `DIR_IN`/`DIR_OUT` codes).
#[inline]
pub fn decision(kind: RouteKind, state_dir: u8, pkt_dir: u8) -> Act {
    match kind {
        RouteKind::DupTo => Act::Dup,
        // pf_route: `(st->rt == PF_REPLYTO) == (st->direction == pd->dir)`
        // leaves the packet alone.
        _ if (kind == RouteKind::ReplyTo) == (state_dir == pkt_dir) => Act::Stay,
        _ => Act::To,
    }
}

/// Leaves `act` to next hop `hop` in the packet for the stack: an IPv4
/// `RouteDecision` in the metadata, or an IPv6 one with the address in
/// `pf_hop6`.
pub fn apply(pkt: &mut PacketBuf, act: Act, hop: Hop) {
    let dup = match act {
        Act::Stay => return,
        Act::To => false,
        Act::Dup => true,
    };
    match hop.addr {
        IpAddr::V4(a) => {
            let nh = NextHop { addr: a, ifp: hop.ifp };
            pkt.meta.pf_route = if dup { RouteDecision::Dup(nh) } else { RouteDecision::To(nh) };
        }
        IpAddr::V6(a) => pkt.set_route6(dup, a, hop.ifp),
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
    use crate::model::{Addr, IfAddrModifier, IpNet, Pool, PoolRole};
    use crate::state::{DIR_IN, DIR_OUT};

    fn route(kind: RouteKind, addr: Addr, pool_kind: PoolType) -> Route {
        let mut pool = Pool::single(addr, PoolRole::Route);
        pool.kind = pool_kind;
        Route { kind, pool }
    }

    fn net(s: &str) -> Addr {
        let host = if s.contains(':') { "128" } else { "32" };
        let (a, p) = s.split_once('/').unwrap_or((s, host));
        Addr::Net(IpNet { addr: a.parse().unwrap(), prefix: p.parse().unwrap() })
    }

    fn no_ifs(_: &str) -> Option<Vec<softnet_core::iface::IfAddr>> {
        None
    }

    fn no_refs(_: &str) -> Option<WeakIf> {
        None
    }

    fn no_ifs6(_: &str) -> Option<Vec<softnet_core::iface::If6Addr>> {
        None
    }

    fn v4(a: &str) -> IpAddr {
        IpAddr::V4(a.parse().unwrap())
    }

    fn routed(a: &str) -> Option<Hop> {
        Some(Hop { addr: a.parse().unwrap(), ifp: None })
    }

    #[test]
    fn route_to_goes_the_states_way_reply_to_the_other_dup_to_both() {
        for (state_dir, other) in [(DIR_IN, DIR_OUT), (DIR_OUT, DIR_IN)] {
            assert_eq!(decision(RouteKind::RouteTo, state_dir, state_dir), Act::To);
            assert_eq!(decision(RouteKind::RouteTo, state_dir, other), Act::Stay);
            assert_eq!(decision(RouteKind::ReplyTo, state_dir, state_dir), Act::Stay);
            assert_eq!(decision(RouteKind::ReplyTo, state_dir, other), Act::To);
            assert_eq!(decision(RouteKind::DupTo, state_dir, state_dir), Act::Dup);
            assert_eq!(decision(RouteKind::DupTo, state_dir, other), Act::Dup);
        }
    }

    #[test]
    fn apply_leaves_the_decision_of_the_next_hops_family() {
        let mut p = PacketBuf::with_capacity(256);
        let w = WeakIf { index: softnet_core::iface::IfIndex(3), generation: 7 };
        apply(&mut p, Act::Stay, Hop { addr: v4("10.0.3.2"), ifp: None });
        assert_eq!(p.meta.pf_route, RouteDecision::None);
        apply(&mut p, Act::To, Hop { addr: v4("10.0.3.2"), ifp: Some(w) });
        assert_eq!(p.meta.pf_route, RouteDecision::To(NextHop::on(w, Ipv4Addr::new(10, 0, 3, 2))));
        apply(&mut p, Act::Dup, Hop { addr: "fd00:3::2".parse().unwrap(), ifp: None });
        assert_eq!(p.meta.pf_route, RouteDecision::Dup6(None));
        assert_eq!(p.pf_hop6, "fd00:3::2".parse::<Ipv6Addr>().unwrap());
        apply(&mut p, Act::To, Hop { addr: "fe80::1".parse().unwrap(), ifp: Some(w) });
        assert_eq!((p.meta.pf_route, p.pf_hop6), (RouteDecision::To6(Some(w)), "fe80::1".parse().unwrap()));
    }

    #[test]
    fn next_hops_come_from_the_pool_as_pf_map_addr_gives_them() {
        let tables = |_: &str| None;
        let src = v4("10.0.1.77");
        let one = CRoute::compile(&route(RouteKind::RouteTo, net("10.0.3.2"), PoolType::None), &tables).unwrap();
        assert_eq!(one.next_hop(&no_ifs, &no_ifs6, &no_refs, src), routed("10.0.3.2"));
        // bitmask: the pool's network bits, the source's host bits.
        let bm = CRoute::compile(&route(RouteKind::RouteTo, net("10.0.3.0/24"), PoolType::Bitmask), &tables).unwrap();
        assert_eq!(bm.next_hop(&no_ifs, &no_ifs6, &no_refs, src), routed("10.0.3.77"));
        // round-robin over a table's entries, in turn.
        let t = Arc::new(Table::new("gw"));
        let host = |s: &str| crate::model::TableEntry { negated: false, net: IpNet::host(s.parse().unwrap()) };
        t.add(&[host("10.0.3.2"), host("10.0.3.3")]);
        let tables = |n: &str| (n == "gw").then(|| t.clone());
        let rr =
            CRoute::compile(&route(RouteKind::DupTo, Addr::Table("gw".into()), PoolType::RoundRobin), &tables).unwrap();
        let got: Vec<_> = (0..3).map(|_| rr.next_hop(&no_ifs, &no_ifs6, &no_refs, src).unwrap().addr).collect();
        assert_eq!(got, [v4("10.0.3.2"), v4("10.0.3.3"), v4("10.0.3.2")]);
        // (if:peer): softnet's interfaces have no peer address: nothing.
        let dynif =
            Addr::Dynamic { ifname: "r2".into(), modifier: IfAddrModifier::Peer, no_alias: false, prefix: None };
        let peer = CRoute::compile(&route(RouteKind::RouteTo, dynif, PoolType::RoundRobin), &tables).unwrap();
        let r2 = |_: &str| Some(vec![softnet_core::iface::IfAddr::new(Ipv4Addr::new(10, 0, 3, 1), 24)]);
        assert_eq!(peer.next_hop(&r2, &no_ifs6, &no_refs, src), None);
    }

    #[test]
    fn ipv6_next_hops_come_from_the_pool_in_the_sources_family() {
        let src6: IpAddr = "fd00:1::77".parse().unwrap();
        let tables = |_: &str| None;
        let one = CRoute::compile(&route(RouteKind::DupTo, net("fec0::1"), PoolType::None), &tables).unwrap();
        assert_eq!(one.next_hop(&no_ifs, &no_ifs6, &no_refs, src6), routed("fec0::1"));
        // An IPv6 pool has nothing for an IPv4 source (pfctl refuses the
        // mix on one rule; a table of both families is asked per family).
        assert_eq!(one.next_hop(&no_ifs, &no_ifs6, &no_refs, v4("10.0.1.1")), None);
        let bm = CRoute::compile(&route(RouteKind::RouteTo, net("fd00:3::/64"), PoolType::Bitmask), &tables).unwrap();
        assert_eq!(bm.next_hop(&no_ifs, &no_ifs6, &no_refs, src6), routed("fd00:3::77"));
        // A table with both families: each source gets its own family's.
        let t = Arc::new(Table::new("gw"));
        let host = |s: &str| crate::model::TableEntry { negated: false, net: IpNet::host(s.parse().unwrap()) };
        t.add(&[host("10.0.3.2"), host("fd00:3::2"), host("fd00:3::3")]);
        let tables = |n: &str| (n == "gw").then(|| t.clone());
        let rr = CRoute::compile(&route(RouteKind::RouteTo, Addr::Table("gw".into()), PoolType::RoundRobin), &tables)
            .unwrap();
        let got: Vec<_> = (0..3).map(|_| rr.next_hop(&no_ifs, &no_ifs6, &no_refs, src6).unwrap().addr).collect();
        let want: Vec<IpAddr> = ["fd00:3::2", "fd00:3::3", "fd00:3::2"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(got, want);
        assert_eq!(rr.next_hop(&no_ifs, &no_ifs6, &no_refs, v4("10.0.1.1")), routed("10.0.3.2"));
        // (if addr): the interface as it is now, or no next hop.
        let mut named = route(RouteKind::RouteTo, net("fe80::1"), PoolType::None);
        named.pool.ifname = Some("r2".into());
        let named = CRoute::compile(&named, &tables).unwrap();
        let w = WeakIf { index: softnet_core::iface::IfIndex(4), generation: 1 };
        let r2 = |n: &str| (n == "r2").then_some(w);
        let want = Some(Hop { addr: "fe80::1".parse().unwrap(), ifp: Some(w) });
        assert_eq!(named.next_hop(&no_ifs, &no_ifs6, &r2, src6), want);
        assert_eq!(named.next_hop(&no_ifs, &no_ifs6, &no_refs, src6), None, "r2 gone: no next hop");
    }

    #[test]
    fn least_states_gives_the_next_hop_with_fewest_states_and_counts_them_off() {
        let t = Arc::new(Table::new("gw"));
        let host = |s: &str| crate::model::TableEntry { negated: false, net: IpNet::host(s.parse().unwrap()) };
        t.add(&[host("10.0.3.2"), host("10.0.3.3"), host("fd00:3::2"), host("fd00:3::3")]);
        let tables = |n: &str| (n == "gw").then(|| t.clone());
        let r = CRoute::compile(&route(RouteKind::RouteTo, Addr::Table("gw".into()), PoolType::LeastStates), &tables)
            .unwrap();
        for src in [v4("10.0.1.2"), "fd00:1::2".parse().unwrap()] {
            let a = r.next_hop(&no_ifs, &no_ifs6, &no_refs, src).unwrap().addr;
            let b = r.next_hop(&no_ifs, &no_ifs6, &no_refs, src).unwrap().addr;
            assert_ne!(a, b, "each next hop has one state");
            // a's state ends: a has the fewest again.
            r.released(a);
            assert_eq!(r.next_hop(&no_ifs, &no_ifs6, &no_refs, src).unwrap().addr, a);
        }
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in [None, Some(RouteKind::RouteTo), Some(RouteKind::ReplyTo), Some(RouteKind::DupTo)] {
            assert_eq!(kind_of(kind_code(k)), k);
        }
    }
}
