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
use std::hash::{BuildHasher, Hash, Hasher};

/// A prefix: destination and length.
pub type Prefix<A> = (A, u8);

/// A prefix as the mirror's hash map keys it: hashed by `BlockHash`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Key<A>(Prefix<A>);

impl<A: Fam> Hash for Key<A> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let (dest, len) = self.0;
        let bits = match dest.into() {
            std::net::IpAddr::V4(a) => u128::from(u32::from(a)),
            std::net::IpAddr::V6(a) => u128::from(a),
        };
        // The prefix's own bits, its last one lowest: consecutive /24s
        // (or /48s ...) are consecutive numbers.
        let net = bits.checked_shr(u32::from(A::MAX_LEN - len.min(A::MAX_LEN))).unwrap_or(0);
        h.write_u128(net);
        h.write_u8(len);
    }
}

/// The mirror's hash: prefixes that differ only in their last six bits
/// (64 consecutive /24s, say) land in one aligned run of 64 buckets, the
/// run itself chosen by a seeded multiply-fold hash of the rest. A feed
/// that comes in order (BIRD's, and every dump: the kernel's order) then
/// fills a few cache lines of the table at a time instead of a random
/// bucket per route, which cost session 12's hash map a quarter of its
/// adding rate against the B-tree it replaced (BENCHMARKS §1 "Route
/// sync", sessions 12 and 13); a scattered withdrawal still costs one
/// probe. The top bits (hashbrown's tag) carry the offset too, so the 64
/// neighbours of a run do not share a tag. The seed is random per map: a
/// peer that picks its prefixes cannot pick their buckets beyond the 64
/// of a run.
#[derive(Clone)]
struct BlockHash {
    seed: [u64; 2],
}

impl Default for BlockHash {
    fn default() -> Self {
        let r = std::collections::hash_map::RandomState::new();
        BlockHash { seed: [r.hash_one(0x5eed_u64) | 1, r.hash_one(0xb10c_u64)] }
    }
}

impl BuildHasher for BlockHash {
    type Hasher = BlockHasher;
    fn build_hasher(&self) -> BlockHasher {
        BlockHasher { seed: self.seed, net: 0, len: 0 }
    }
}

struct BlockHasher {
    seed: [u64; 2],
    net: u128,
    len: u8,
}

/// The high and low halves of a 128-bit product folded together.
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for BlockHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `Key` is hashed here, through write_u128 and write_u8.
        for &b in bytes {
            self.net = (self.net << 8) | u128::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.net = n;
    }
    fn write_u8(&mut self, n: u8) {
        self.len = n;
    }
    fn finish(&self) -> u64 {
        let off = (self.net & 63) as u64;
        let run = self.net >> 6;
        let lo = run as u64 ^ self.seed[0];
        let hi = (run >> 64) as u64 ^ (u64::from(self.len) << 56) ^ self.seed[1];
        let m = fold_mul(fold_mul(lo, hi | 1) ^ hi, 0x9e37_79b9_7f4a_7c15);
        m ^ off ^ (off << 57)
    }
}

/// The routes of one prefix, by metric, lowest first: nearly always one,
/// so a vector (one small allocation) rather than a map (a 700-byte
/// B-tree node per prefix: most of the mirror's memory and of a
/// withdrawal's allocator work at 1,000,000 prefixes).
type ByMetric<A> = Vec<KRoute<A>>;

fn metric_pos<A>(by: &ByMetric<A>, metric: u32) -> Result<usize, usize> {
    by.binary_search_by_key(&metric, |r| r.metric)
}

pub struct Mirror<A: Fam> {
    routes: HashMap<Key<A>, ByMetric<A>, BlockHash>,
    /// Prefixes changed since the last flush, in the order heard, a
    /// prefix changed twice twice: sorted and deduplicated once a flush
    /// (`take_touched`). A `BTreeSet` here cost a feed's sync 5-6 % of
    /// its time in node inserts (BENCHMARKS §1 "Route sync", session 13).
    touched: Vec<Prefix<A>>,
    /// During a resync, the routes the dump has given (prefix, metric).
    marked: Option<BTreeSet<(Prefix<A>, u32)>>,
}

impl<A: Fam> Default for Mirror<A> {
    fn default() -> Self {
        Mirror { routes: HashMap::default(), touched: Vec::new(), marked: None }
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
        let by = self.routes.entry(Key(p)).or_default();
        match metric_pos(by, r.metric) {
            Ok(i) if by[i] == r => return,
            Ok(i) => by[i] = r,
            Err(i) => {
                // One route a prefix is the rule: no room for four.
                by.reserve_exact(1);
                by.insert(i, r)
            }
        }
        self.touched.push(p);
    }

    /// RTM_DELROUTE: removes the route with this prefix and metric.
    pub fn del_route(&mut self, dest: A, prefix_len: u8, metric: u32) {
        let p = (dest, prefix_len);
        // One search: a withdrawal of a large feed pays each in cache misses.
        let hash_map::Entry::Occupied(mut e) = self.routes.entry(Key(p)) else { return };
        if let Ok(i) = metric_pos(e.get(), metric) {
            e.get_mut().remove(i);
            if e.get().is_empty() {
                e.remove();
            }
            self.touched.push(p);
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
        self.routes.retain(|Key(p), by| {
            let before = by.len();
            by.retain(|r| marked.contains(&(*p, r.metric)));
            if by.len() != before {
                swept += before - by.len();
                touched.push(*p);
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
        self.routes.get(&Key(*p)).and_then(|by| by.first())
    }

    /// Prefixes changed since the last call, each once, in order (a
    /// flush in order walks the trie's nodes in order).
    pub fn take_touched(&mut self) -> Vec<Prefix<A>> {
        let mut t = std::mem::take(&mut self.touched);
        t.sort_unstable();
        t.dedup();
        t
    }

    /// Marks a prefix for the next flush (a retry).
    pub fn touch(&mut self, p: Prefix<A>) {
        self.touched.push(p);
    }

    /// Nexthop objects changed: the prefixes whose route in use names one
    /// of them are flushed again (their hops are looked up anew).
    pub fn touch_objects(&mut self, ids: &BTreeSet<u32>) {
        if ids.is_empty() {
            return;
        }
        for (Key(p), by) in &self.routes {
            if by.first().is_some_and(|r| matches!(r.kind, KKind::Object(id) if ids.contains(&id))) {
                self.touched.push(*p);
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
        self.routes.retain(|Key(p), by| {
            let before = by.len();
            by.retain(|r| !matches!(r.kind, KKind::Object(id) if ids.contains(&id)));
            if by.len() != before {
                gone += before - by.len();
                touched.push(*p);
            }
            !by.is_empty()
        });
        gone
    }

    /// Changes waiting for a flush: the prefixes, a prefix changed twice
    /// counted twice (at least as many as `take_touched` returns; 0 when
    /// none).
    pub fn pending(&self) -> usize {
        self.touched.len()
    }

    /// Prefixes the kernel table has.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Every prefix the kernel table has.
    pub fn prefixes(&self) -> impl Iterator<Item = &Prefix<A>> {
        self.routes.keys().map(|k| &k.0)
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
    fn the_block_hash_keeps_neighbours_together_and_spreads_the_rest() {
        let b = BlockHash::default();
        let h = |a: u32, len: u8| b.hash_one(Key((Ipv4Addr::from(a), len)));
        // The run: the bits between the offset (0..6) and the tag (57..64).
        let run_of = |x: u64| (x >> 6) & ((1 << 51) - 1);
        // 64 consecutive /24s: one aligned run of 64 buckets, every tag
        // (the top seven bits) different.
        let run: Vec<u64> = (0..64u32).map(|i| h(0x2000_0000 + (i << 8), 24)).collect();
        assert!(run.iter().all(|&x| run_of(x) == run_of(run[0])));
        let mut low: Vec<u64> = run.iter().map(|x| x & 63).collect();
        low.sort_unstable();
        assert_eq!(low, (0..64).collect::<Vec<u64>>());
        let mut tags: Vec<u64> = run.iter().map(|x| x >> 57).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), 64);
        // The next 64, the same bits at another length, the same prefix
        // in another map: elsewhere.
        assert_ne!(run_of(h(0x2000_4000, 24)), run_of(run[0]));
        assert_ne!(run_of(h(0x2000_0000, 23)), run_of(run[0]));
        assert_ne!(BlockHash::default().hash_one(Key((Ipv4Addr::from(0x2000_0000), 24))), run[0]);
        // IPv6: consecutive /48s likewise; the map works as a map.
        let b6 = BlockHash::default();
        let p6 = |i: u128| Key((std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) + (i << 80)), 48));
        assert_eq!(run_of(b6.hash_one(p6(1))), run_of(b6.hash_one(p6(2))));
        let mut m: HashMap<Key<std::net::Ipv6Addr>, u32, BlockHash> = HashMap::default();
        for i in 0..10_000u32 {
            m.insert(p6(i.into()), i);
        }
        assert!((0..10_000u32).all(|i| m.get(&p6(i.into())) == Some(&i)));
    }

    /// The mirror's hash against std's (SipHash, session 12's): 1,000,000
    /// /24s added in order, then withdrawn in a scattered order.
    /// `cargo test --release -p softnet mirror_hash -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement"]
    fn mirror_hash_in_order_and_scattered() {
        fn cpu() -> std::time::Duration {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: a valid timespec for the kernel to fill.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        }
        fn run<S: BuildHasher + Default>(name: &str, order: &[u32]) {
            let n = order.len() as u32;
            let mut m: HashMap<Key<Ipv4Addr>, ByMetric<Ipv4Addr>, S> = HashMap::default();
            let k = |i: u32| Key((Ipv4Addr::from(0x2000_0000 + (i << 8)), 24));
            let c0 = cpu();
            for i in 0..n {
                m.entry(k(i)).or_default().push(r(9, 32, 2));
            }
            let add = cpu() - c0;
            let c1 = cpu();
            for &i in order {
                m.remove(&k(i));
            }
            let del = cpu() - c1;
            println!(
                "{name}: add in order {:>8.0} routes/s, withdraw scattered {:>8.0} routes/s",
                f64::from(n) / add.as_secs_f64(),
                f64::from(n) / del.as_secs_f64()
            );
        }
        let n: u32 = std::env::var("RTSYNC_1M_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        let order = super::super::scattered_order(n);
        for _ in 0..3 {
            run::<std::collections::hash_map::RandomState>("SipHash  ", &order);
            run::<BlockHash>("BlockHash", &order);
        }
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
