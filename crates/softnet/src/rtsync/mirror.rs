//! The sync's copy of one family of the kernel table, and mark and sweep.
//!
//! The kernel keeps one route per destination, prefix length and metric
//! (and type of service, which the sync refuses); the route in use for a
//! prefix is the one with the lowest metric. The mirror keeps them all, so
//! that withdrawing the best one uncovers the next as the kernel does, and
//! notes which prefixes changed since the last flush: a burst of changes
//! to one prefix reaches softnet's table as one change.
//!
//! A resync (at start, and after the socket overran and messages were
//! lost) is a mark and sweep: every route of a fresh dump is entered and
//! marked, and at the end every route not marked is removed. Changes heard
//! on the event socket after the dump are applied afterwards as usual.

use super::translate::{Fam, KKind, KRoute};
use std::collections::{hash_map, BTreeSet, HashMap};

/// A prefix: destination and length.
pub type Prefix<A> = (A, u8);

/// The routes of one prefix, by metric, lowest first: nearly always one,
/// so a vector (one small allocation) rather than a map (a 700-byte
/// B-tree node per prefix: most of the mirror's memory and of a
/// withdrawal's allocator work at 1,000,000 prefixes).
type ByMetric<A> = Vec<KRoute<A>>;

fn metric_pos<A>(by: &ByMetric<A>, metric: u32) -> Result<usize, usize> {
    by.binary_search_by_key(&metric, |r| r.metric)
}

pub struct Mirror<A: Fam> {
    routes: HashMap<Prefix<A>, ByMetric<A>>,
    touched: BTreeSet<Prefix<A>>,
    /// During a resync, the routes the dump has given (prefix, metric).
    marked: Option<BTreeSet<(Prefix<A>, u32)>>,
}

impl<A: Fam> Default for Mirror<A> {
    fn default() -> Self {
        Mirror { routes: HashMap::new(), touched: BTreeSet::new(), marked: None }
    }
}

impl<A: Fam> Mirror<A> {
    /// RTM_NEWROUTE (or a route of a dump): enters or replaces the route
    /// with its prefix and metric.
    pub fn new_route(&mut self, r: KRoute<A>) {
        let p = (r.dest, r.prefix_len);
        if let Some(m) = &mut self.marked {
            m.insert((p, r.metric));
        }
        let by = self.routes.entry(p).or_default();
        match metric_pos(by, r.metric) {
            Ok(i) if by[i] == r => return,
            Ok(i) => by[i] = r,
            Err(i) => {
                // One route a prefix is the rule: no room for four.
                by.reserve_exact(1);
                by.insert(i, r)
            }
        }
        self.touched.insert(p);
    }

    /// RTM_DELROUTE: removes the route with this prefix and metric.
    pub fn del_route(&mut self, dest: A, prefix_len: u8, metric: u32) {
        let p = (dest, prefix_len);
        // One search: a withdrawal of a large feed pays each in cache misses.
        let hash_map::Entry::Occupied(mut e) = self.routes.entry(p) else { return };
        if let Ok(i) = metric_pos(e.get(), metric) {
            e.get_mut().remove(i);
            if e.get().is_empty() {
                e.remove();
            }
            self.touched.insert(p);
        }
    }

    /// Starts a resync: the routes of the dump that follows get marked.
    pub fn begin_resync(&mut self) {
        self.marked = Some(BTreeSet::new());
    }

    /// Ends a resync: removes every route the dump did not give; returns
    /// how many.
    pub fn end_resync(&mut self) -> usize {
        let Some(marked) = self.marked.take() else { return 0 };
        let mut swept = 0;
        let touched = &mut self.touched;
        self.routes.retain(|p, by| {
            let before = by.len();
            by.retain(|r| marked.contains(&(*p, r.metric)));
            if by.len() != before {
                swept += before - by.len();
                touched.insert(*p);
            }
            !by.is_empty()
        });
        swept
    }

    /// Whether a resync is under way.
    #[cfg(test)]
    pub fn resyncing(&self) -> bool {
        self.marked.is_some()
    }

    /// The route in use for a prefix: the lowest metric's.
    pub fn best(&self, p: &Prefix<A>) -> Option<&KRoute<A>> {
        self.routes.get(p).and_then(|by| by.first())
    }

    /// Prefixes changed since the last call.
    pub fn take_touched(&mut self) -> BTreeSet<Prefix<A>> {
        std::mem::take(&mut self.touched)
    }

    /// Marks a prefix for the next flush (a retry).
    pub fn touch(&mut self, p: Prefix<A>) {
        self.touched.insert(p);
    }

    /// Nexthop objects changed: the prefixes whose route in use names one
    /// of them are flushed again (their hops are looked up anew).
    pub fn touch_objects(&mut self, ids: &BTreeSet<u32>) {
        if ids.is_empty() {
            return;
        }
        for (p, by) in &self.routes {
            if by.first().is_some_and(|r| matches!(r.kind, KKind::Object(id) if ids.contains(&id))) {
                self.touched.insert(*p);
            }
        }
    }

    /// Nexthop objects deleted: the kernel deleted the routes that named
    /// them without a message, so they leave the mirror here. Returns how
    /// many routes.
    pub fn remove_objects(&mut self, ids: &BTreeSet<u32>) -> usize {
        if ids.is_empty() {
            return 0;
        }
        let mut gone = 0;
        let touched = &mut self.touched;
        self.routes.retain(|p, by| {
            let before = by.len();
            by.retain(|r| !matches!(r.kind, KKind::Object(id) if ids.contains(&id)));
            if by.len() != before {
                gone += before - by.len();
                touched.insert(*p);
            }
            !by.is_empty()
        });
        gone
    }

    /// Prefixes waiting for a flush.
    pub fn pending(&self) -> usize {
        self.touched.len()
    }

    /// Prefixes the kernel table has.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Every prefix the kernel table has.
    pub fn prefixes(&self) -> impl Iterator<Item = &Prefix<A>> {
        self.routes.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::super::translate::KHop;
    use super::*;
    use std::net::Ipv4Addr;

    fn r(net: u8, metric: u32, gw: u8) -> KRoute<Ipv4Addr> {
        KRoute {
            dest: Ipv4Addr::new(10, net, 0, 0),
            prefix_len: 16,
            metric,
            proto: 12,
            kind: KKind::Unicast(vec![KHop { gateway: Some(Ipv4Addr::new(10, 0, 2, gw)), oif: 0 }]),
            mtu: 0,
        }
    }

    fn p(net: u8) -> Prefix<Ipv4Addr> {
        (Ipv4Addr::new(10, net, 0, 0), 16)
    }

    #[test]
    fn the_lowest_metric_is_in_use_and_its_withdrawal_uncovers_the_next() {
        let mut m = Mirror::default();
        m.new_route(r(9, 200, 3));
        m.new_route(r(9, 100, 2));
        assert_eq!(m.best(&p(9)), Some(&r(9, 100, 2)));
        assert_eq!(m.take_touched().len(), 1, "one prefix touched by both");
        m.del_route(Ipv4Addr::new(10, 9, 0, 0), 16, 100);
        assert_eq!(m.best(&p(9)), Some(&r(9, 200, 3)));
        m.del_route(Ipv4Addr::new(10, 9, 0, 0), 16, 200);
        assert_eq!(m.best(&p(9)), None);
        assert_eq!(m.len(), 0);
        assert_eq!(m.take_touched().into_iter().collect::<Vec<_>>(), vec![p(9)]);
        // Withdrawing what is not there touches nothing.
        m.del_route(Ipv4Addr::new(10, 8, 0, 0), 16, 0);
        assert_eq!(m.pending(), 0);
    }

    #[test]
    fn the_same_route_again_touches_nothing() {
        let mut m = Mirror::default();
        m.new_route(r(9, 0, 2));
        m.take_touched();
        m.new_route(r(9, 0, 2));
        assert_eq!(m.pending(), 0);
        m.new_route(r(9, 0, 3));
        assert_eq!(m.pending(), 1, "a replaced gateway is a change");
    }

    #[test]
    fn mark_and_sweep_removes_what_the_dump_lacks_and_keeps_the_rest() {
        let mut m = Mirror::default();
        for net in 1..=5 {
            m.new_route(r(net, 0, 2));
        }
        m.new_route(r(3, 50, 4));
        m.take_touched();
        // Lost while the socket overran: 2 withdrawn, 4 changed, 6 added,
        // 3's metric-50 route withdrawn.
        m.begin_resync();
        assert!(m.resyncing());
        for route in [r(1, 0, 2), r(3, 0, 2), r(4, 0, 9), r(5, 0, 2), r(6, 0, 2)] {
            m.new_route(route);
        }
        assert_eq!(m.end_resync(), 2, "10.2/16 and 10.3/16 metric 50 swept");
        assert!(!m.resyncing());
        let touched: Vec<u8> = m.take_touched().into_iter().map(|(a, _)| a.octets()[1]).collect();
        assert_eq!(touched, vec![2, 3, 4, 6], "only what changed is flushed");
        assert_eq!(m.best(&p(2)), None);
        assert_eq!(m.best(&p(4)), Some(&r(4, 0, 9)));
        assert_eq!(m.best(&p(3)), Some(&r(3, 0, 2)));
        assert_eq!(m.prefixes().count(), 5);
        // Routes naming nexthop objects: a changed object re-flushes the
        // prefixes using it, a deleted one removes their routes.
        let mut o = r(7, 0, 2);
        o.kind = KKind::Object(5);
        m.new_route(o.clone());
        m.new_route(KRoute { metric: 10, kind: KKind::Object(6), ..o.clone() });
        m.new_route(KRoute { dest: Ipv4Addr::new(10, 8, 0, 0), kind: KKind::Object(6), ..o });
        m.take_touched();
        m.touch_objects(&BTreeSet::from([6]));
        assert_eq!(m.take_touched().into_iter().collect::<Vec<_>>(), vec![p(8)], "10.7's route in use is 5's");
        assert_eq!(m.remove_objects(&BTreeSet::from([6])), 2);
        assert_eq!(m.take_touched().into_iter().collect::<Vec<_>>(), vec![p(7), p(8)]);
        assert_eq!(m.best(&p(8)), None);
        assert_eq!(m.best(&p(7)).map(|r| r.metric), Some(0));
        // An empty dump sweeps everything.
        m.begin_resync();
        assert_eq!(m.end_resync(), 6);
        assert_eq!(m.len(), 0);
    }
}
