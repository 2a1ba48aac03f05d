//! pf's routing options on pf's side: `route-to`, `reply-to`, `dup-to`.
//!
//! As OpenBSD since 6.9, a routing option names next hops (addresses), not
//! interfaces: the stack finds the interface by the route to the next hop
//! (pf_route's `rtalloc_mpath(st->rt_addr)`). When a rule with one creates
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

use softnet_core::filter::RouteDecision;

use crate::model::{Route, RouteKind};

/// A rule's routing option compiled (pf_rule's `rt` and `route` pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CRoute {
    pub kind: RouteKind,
    pub target: RouteTarget,
}

/// Where a routing option sends packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// One next hop.
    Host(Ipv4Addr),
}

/// Why a routing option cannot be loaded yet (`check_supported` says
/// "`what` not supported yet").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl CRoute {
    /// The routing option of a parsed rule, or what of it softnet does not
    /// do yet: a pool of several addresses, a table, an interface's
    /// address, a pool type.
    pub fn compile(r: &Route) -> Result<CRoute, Unsupported> {
        let kw = r.kind.keyword();
        let s = &r.spec;
        let pool = || Unsupported(format!("{kw} with an address pool"));
        if s.targets.len() != 1 || !s.pool_opts.is_empty() || s.port.is_some() {
            return Err(pool());
        }
        let t = &s.targets[0];
        let host = t.strip_suffix("/32").unwrap_or(t);
        let addr: Ipv4Addr = host.parse().map_err(|_| pool())?;
        Ok(CRoute { kind: r.kind, target: RouteTarget::Host(addr) })
    }

    /// The next hop a new state remembers (pf_set_rt_ifp's pf_map_addr on
    /// the rule's route pool). `None`: the pool has no address to give
    /// (pf: the state is not made, reason `no-route`).
    pub fn next_hop(&self, _src: Ipv4Addr) -> Option<Ipv4Addr> {
        match self.target {
            RouteTarget::Host(a) => Some(a),
        }
    }
}

/// What pf_route does with a packet of a state with routing option `kind`
/// and next hop `rt_addr`: `state_dir` is the direction the state was made
/// in and `pkt_dir` the packet's (both `DIR_IN`/`DIR_OUT` codes).
#[inline]
pub fn decision(kind: RouteKind, rt_addr: Ipv4Addr, state_dir: u8, pkt_dir: u8) -> RouteDecision {
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
    use crate::model::RedirSpec;
    use crate::state::{DIR_IN, DIR_OUT};

    fn route(kind: RouteKind, targets: &[&str], opts: &[&str]) -> Route {
        Route {
            kind,
            spec: RedirSpec {
                targets: targets.iter().map(|s| s.to_string()).collect(),
                port: None,
                pool_opts: opts.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    #[test]
    fn route_to_goes_the_states_way_reply_to_the_other_dup_to_both() {
        let nh = Ipv4Addr::new(10, 0, 3, 2);
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
    fn one_address_compiles_and_pools_are_refused_for_now() {
        let r = CRoute::compile(&route(RouteKind::ReplyTo, &["10.0.3.2"], &[])).unwrap();
        assert_eq!(r.target, RouteTarget::Host(Ipv4Addr::new(10, 0, 3, 2)));
        assert_eq!(r.next_hop(Ipv4Addr::new(10, 0, 1, 2)), Some(Ipv4Addr::new(10, 0, 3, 2)));
        assert!(CRoute::compile(&route(RouteKind::RouteTo, &["10.0.3.2/32"], &[])).is_ok());
        for (t, o) in [
            (&["10.0.3.0/24"][..], &[][..]),
            (&["10.0.3.2", "10.0.3.3"], &[]),
            (&["<gw>"], &[]),
            (&["(sn-r2:peer)"], &[]),
            (&["10.0.3.2"], &["round-robin"]),
        ] {
            let e = CRoute::compile(&route(RouteKind::DupTo, t, o)).unwrap_err();
            assert_eq!(e.0, "dup-to with an address pool", "{t:?} {o:?}");
        }
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in [None, Some(RouteKind::RouteTo), Some(RouteKind::ReplyTo), Some(RouteKind::DupTo)] {
            assert_eq!(kind_of(kind_code(k)), k);
        }
    }
}
