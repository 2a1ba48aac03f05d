//! The host twin's neighbor solicitations (`crate::hostif`): answered
//! from this cache; a neighbor it does not know yet is resolved as
//! nd6_resolve would, without a packet to hold (the timer sends the
//! further solicitations).

use super::*;

/// What the cache says to the host's solicitation for `target`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Nd6Query {
    /// Answer with this MAC (`router`: the neighbor is a router).
    Known(MacAddr, bool),
    /// Being resolved; send `solicit` now if there is one.
    Pending(Option<NsRequest>),
    /// Not a neighbor on this link (off its prefixes, one of the router's
    /// own addresses), or the cache is full: no answer.
    Unknown,
}

impl Nd6Table {
    /// The answer to the host's solicitation for `target` on `ifp`
    /// (`src`: the solicitation's source, the hint for ours).
    pub fn query(&self, now: Instant, ifp: &Interface, target: Ipv6Addr, src: Ipv6Addr) -> Nd6Query {
        let cfg = &self.config;
        let key = (ifp.index(), target);
        let mut shard = self.shard(target).lock();
        let e = match shard.get_mut(&key) {
            Some(e) => e,
            None => {
                let inet6 = ifp.inet6();
                let on_link = target.is_link_local_unicast()
                    || inet6.addrs.iter().any(|a| !a.is_link_local() && a.contains(target));
                if !on_link || target.is_multicast() || inet6.find(target).is_some() {
                    return Nd6Query::Unknown;
                }
                if !self.reserve_entry() {
                    return Nd6Query::Unknown;
                }
                shard.insert(key, Entry::new(NdEntryKind::Dynamic, NdState::NoState, MacAddr::ZERO));
                shard.get_mut(&key).expect("just inserted")
            }
        };
        if e.kind == NdEntryKind::Local {
            return Nd6Query::Unknown;
        }
        if e.state.is_resolved() {
            return Nd6Query::Known(e.mac, e.router);
        }
        if e.state == NdState::NoState {
            e.state = NdState::Incomplete;
        }
        if e.saddr.is_none() && !src.is_unspecified() {
            e.saddr = Some(src);
        }
        if e.asked != 0 {
            return Nd6Query::Pending(None);
        }
        e.asked = 1;
        e.timer = Some(now + cfg.retrans_timer);
        Nd6Query::Pending(Some(NsRequest { ifindex: ifp.index(), target, dest: NsDest::Multicast, src_hint: e.saddr }))
    }

    /// The MAC of `target` on interface `ifindex` once resolved (and
    /// whether it is a router), for the host's pending solicitations.
    pub fn resolved_on(&self, ifindex: IfIndex, target: Ipv6Addr) -> Option<(MacAddr, bool)> {
        let shard = self.shard(target).lock();
        shard
            .get(&(ifindex, target))
            .filter(|e| e.state.is_resolved() && e.kind != NdEntryKind::Local)
            .map(|e| (e.mac, e.router))
    }
}
