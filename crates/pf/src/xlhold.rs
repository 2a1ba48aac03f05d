//! What a translating state holds of its `nat-to` and `rdr-to` pools:
//! the `least-states` count it took on the address its pool gave
//! (pf_lb.c's pf_map_addr_states_increase, given back by
//! pf_postprocess_addr when the state ends) and the source node a
//! `sticky-address` pool keeps that address in (pf_map_addr's
//! `sns[PF_SN_NAT]`, `sns[PF_SN_RDR]`, released by
//! pf_src_tree_remove_state).
//!
//! The translating rule may be a `match` rule other than the state's
//! own, and a state's fixed-size data has no room for it: a state that
//! holds something is flagged (`srcflags::XLATE`) and its holds are kept
//! here by state id, in shards, touched when such a state is made or
//! ends (never per packet, never by a state without holds).

use std::collections::HashMap;
use std::net::IpAddr;
#[cfg(test)]
use std::net::Ipv4Addr;

use parking_lot::Mutex;

use crate::compile::CompiledRuleset;
use crate::srcnode::NodeKey;

const SHARDS: usize = 16;

/// What a state holds of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolHold {
    /// The translating rule: its ruleset's generation and its number
    /// there (as `StateData::ruleset_gen`, `rule_nr`).
    pub gen: u32,
    pub nr: u32,
    /// The address the pool gave (either family: its count is in the
    /// pool's counts of that family).
    pub addr: IpAddr,
    /// A `least-states` count taken on `addr`.
    pub counted: bool,
    /// The `sticky-address` node the state counts on.
    pub node: Option<NodeKey>,
}

/// A state's holds: of its nat-to pool (`[0]`) and its rdr-to pool (`[1]`).
pub type Holds = [Option<PoolHold>; 2];

impl PoolHold {
    /// pf_postprocess_addr: the `least-states` count goes back to the
    /// pool (pool `which` of the rule: 0 nat-to, 1 rdr-to), while the
    /// rule is loaded (a reloaded rule's pool counts afresh).
    pub fn give_back(&self, rs: &CompiledRuleset, which: usize) {
        if !self.counted {
            return;
        }
        if let Some(r) = rs.state_rule(self.gen, self.nr) {
            let pool = if which == 0 { r.nat.as_ref() } else { r.rdr.as_ref() };
            if let Some(p) = pool {
                match self.addr {
                    IpAddr::V4(a) => p.loads.decrease(u32::from(a)),
                    IpAddr::V6(a) => p.loads6.decrease(u128::from(a)),
                }
            }
        }
    }
}

/// Every state's holds, by state id.
#[derive(Default)]
pub struct XlHolds {
    shards: [Mutex<HashMap<u64, Holds>>; SHARDS],
}

impl XlHolds {
    fn shard(&self, id: u64) -> &Mutex<HashMap<u64, Holds>> {
        &self.shards[(id as usize ^ (id >> 16) as usize) % SHARDS]
    }

    /// Records the holds of the state `id`.
    pub fn put(&self, id: u64, h: Holds) {
        self.shard(id).lock().insert(id, h);
    }

    /// Takes the holds of the state `id` (once: it is ending).
    pub fn take(&self, id: u64) -> Option<Holds> {
        self.shard(id).lock().remove(&id)
    }

    /// The nodes the state `id` counts on.
    pub fn nodes(&self, id: u64) -> impl Iterator<Item = NodeKey> {
        let h = self.shard(id).lock().get(&id).copied().unwrap_or([None, None]);
        h.into_iter().flatten().filter_map(|h| h.node)
    }

    /// pf_state_rm_src_node: the nodes `gone` picks were removed (`-K`,
    /// `-F Sources`); the states live on without them.
    pub fn detach(&self, gone: impl Fn(&NodeKey) -> bool) {
        for s in &self.shards {
            for h in s.lock().values_mut().flat_map(|h| h.iter_mut().flatten()) {
                if h.node.is_some_and(|k| gone(&k)) {
                    h.node = None;
                }
            }
        }
    }

    /// States with holds.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srcnode::SN_NAT;

    #[test]
    fn holds_are_taken_once_and_detached_nodes_stay_detached() {
        let x = XlHolds::default();
        let a = Ipv4Addr::new(10, 0, 1, 2);
        let k = NodeKey::of_rule(1, 0, SN_NAT, a.into());
        let h = PoolHold { gen: 1, nr: 0, addr: Ipv4Addr::new(192, 0, 2, 1).into(), counted: true, node: Some(k) };
        x.put(7, [Some(h), None]);
        x.put(8, [None, Some(h)]);
        assert_eq!(x.nodes(7).collect::<Vec<_>>(), [k]);
        x.detach(|n| *n == k);
        assert_eq!(x.nodes(8).count(), 0);
        assert_eq!(x.take(7).unwrap()[0].unwrap().node, None);
        assert_eq!(x.take(7), None);
        assert_eq!(x.len(), 1);
    }
}
