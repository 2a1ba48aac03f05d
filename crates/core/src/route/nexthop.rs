//! Next hops: what the forwarding path needs of a route, shared by every
//! route that goes the same way (FreeBSD's nhop_object, VPP's adjacency).
//!
//! The trie's leaves are not routes but small indices into a table of next
//! hops that each snapshot holds (`RouteSnapshot::nexthops`). A table of a
//! million BGP routes through two gateways has a handful of next hops, so
//! copying a trie node on a change is a copy of plain integers, and
//! freeing one touches no reference count: the route sync's withdrawals
//! no longer pay a reference-count operation per leaf of every node they
//! copy (BENCHMARKS §1 "Route sync", session 11). A lookup reaches the
//! next hop through the snapshot's chunk array, which stays in cache,
//! with one load after the leaf's where a leaf holding an `Arc<Route>`
//! took two.
//!
//! The control thread counts the routes using each next hop
//! (`NhopTable`, FreeBSD's nhop refcount, kept on the control thread:
//! no atomic touched); a next hop no route uses any more gives its index
//! back for reuse. Each published snapshot carries its own immutable view
//! of the table: chunks of 256 next hops shared copy-on-write with the
//! control thread's, so a publish after a new next hop copies one chunk,
//! and an old snapshot's indices stay valid as long as a reader holds it.

use super::family::RouteAddr;
use super::{Route, RouteError, RouteFlags};
use crate::iface::WeakIf;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Deref;
use std::sync::Arc;

/// Where a route sends a packet: a route's fields that forwarding reads.
/// Routes that agree on all of them share one next hop.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Nhop<A: RouteAddr = Ipv4Addr> {
    /// The route's flags (first: the forwarding path tests them first).
    pub flags: RouteFlags,
    pub ifp: WeakIf,
    /// The gateway; `None` for a directly reachable destination.
    pub gateway: Option<A>,
    /// Source address to use.
    pub ifa: Option<A>,
    /// 0 = the interface's.
    pub mtu: u32,
    /// A multipath route's next hops, in the route's order.
    pub mpath: Option<Arc<[Nhop<A>]>>,
}

impl<A: RouteAddr> Nhop<A> {
    /// The next hop of route `r`.
    pub fn of(r: &Route<A>) -> Self {
        Nhop {
            flags: r.flags,
            ifp: r.ifp,
            gateway: r.gateway,
            ifa: r.ifa,
            mtu: r.mtu,
            mpath: r.mpath.as_ref().map(|hops| hops.iter().map(Nhop::of).collect()),
        }
    }

    /// The placeholder at index 0 of every table: index 0 is "no route"
    /// in a leaf, so no route ever refers to it.
    fn unused() -> Self {
        Nhop { flags: RouteFlags::empty(), ifp: WeakIf::default(), gateway: None, ifa: None, mtu: 0, mpath: None }
    }

    /// The next hop for flow hash `hash`: this one, or one of a multipath
    /// next hop's by hash-threshold, as `Route::select` (RFC 2992 §2).
    #[inline]
    pub fn select(&self, hash: u32) -> &Nhop<A> {
        match &self.mpath {
            None => self,
            Some(hops) => &hops[((hash as u64 * hops.len() as u64) >> 32) as usize],
        }
    }
}

impl Nhop<Ipv4Addr> {
    /// `select` for a packet from `src` to `dst` (the hash computed only
    /// for a multipath next hop).
    #[inline]
    pub fn select_flow(&self, src: Ipv4Addr, dst: Ipv4Addr) -> &Nhop<Ipv4Addr> {
        if self.mpath.is_none() {
            return self;
        }
        self.select(super::mpath_hash(u32::from(src) as u128, u32::from(dst) as u128))
    }
}

impl Nhop<Ipv6Addr> {
    /// `select` for a packet from `src` to `dst`.
    #[inline]
    pub fn select_flow(&self, src: Ipv6Addr, dst: Ipv6Addr) -> &Nhop<Ipv6Addr> {
        if self.mpath.is_none() {
            return self;
        }
        self.select(super::mpath_hash(u128::from(src), u128::from(dst)))
    }
}

/// What a snapshot's longest-prefix match finds: the matching prefix and
/// its next hop (dereferences to the `Nhop`).
#[derive(Clone, Copy, Debug)]
pub struct Hop<'a, A: RouteAddr = Ipv4Addr> {
    /// The matching route's network (the destination masked to its
    /// length; a scoped route's plain address).
    pub dest: A,
    pub prefix_len: u8,
    nh: &'a Nhop<A>,
}

impl<'a, A: RouteAddr> Hop<'a, A> {
    #[inline]
    pub(super) fn new(dst: A, prefix_len: u8, nh: &'a Nhop<A>) -> Self {
        Hop { dest: A::from_bits(A::mask_bits(dst.to_bits(), prefix_len)), prefix_len, nh }
    }
    /// The next hop, with the snapshot's lifetime.
    #[inline]
    pub fn next_hop(&self) -> &'a Nhop<A> {
        self.nh
    }
    /// Whether `ip` falls in the matching prefix.
    pub fn contains(&self, ip: A) -> bool {
        A::mask_bits(ip.to_bits(), self.prefix_len) == self.dest.to_bits()
    }
}

impl<A: RouteAddr> Deref for Hop<'_, A> {
    type Target = Nhop<A>;
    #[inline]
    fn deref(&self) -> &Nhop<A> {
        self.nh
    }
}

/// Largest next-hop index a leaf can hold (24 bits; the low 8 carry the
/// prefix length, `trie.rs`).
pub(super) const MAX_NEXTHOPS: usize = (1 << 24) - 1;

/// Next hops per chunk of a table.
const CHUNK: usize = 256;

/// A published table of next hops: chunks of `CHUNK`, each shared with the
/// control thread's table until a next hop in it changes, so that
/// publishing after a change copies one chunk and the chunk pointers, not
/// every next hop (a feed with a next hop per route published route by
/// route stays linear).
pub(super) type Published<A> = Arc<[Arc<[Nhop<A>]>]>;

/// Next hop `i` of a published table.
#[inline]
pub(super) fn published_get<A: RouteAddr>(t: &Published<A>, i: u32) -> &Nhop<A> {
    &t[i as usize / CHUNK][i as usize % CHUNK]
}

/// The control thread's next hops of one family of one table, with the
/// number of routes using each.
pub(super) struct NhopTable<A: RouteAddr> {
    /// Index 0 is the unused placeholder, as are slots not handed out; a
    /// freed index keeps its old next hop until reused (no leaf of a newer
    /// trie refers to it).
    chunks: Vec<Arc<[Nhop<A>]>>,
    /// Indices handed out so far (the next new one).
    len: usize,
    refs: Vec<u32>,
    index: HashMap<Nhop<A>, u32>,
    free: Vec<u32>,
    /// The table published with the last snapshot, and whether a next hop
    /// was set since.
    published: Published<A>,
    changed: bool,
}

impl<A: RouteAddr> NhopTable<A> {
    pub(super) fn new() -> Self {
        let chunks = vec![Self::blank()];
        NhopTable {
            published: chunks.clone().into(),
            chunks,
            len: 1,
            refs: vec![0],
            index: HashMap::new(),
            free: Vec::new(),
            changed: false,
        }
    }

    fn blank() -> Arc<[Nhop<A>]> {
        vec![Nhop::unused(); CHUNK].into()
    }

    /// Puts `nh` at index `i`, copying its chunk if a snapshot shares it.
    fn set(&mut self, i: usize, nh: Nhop<A>) {
        if i / CHUNK == self.chunks.len() {
            self.chunks.push(Self::blank());
        }
        let c = &mut self.chunks[i / CHUNK];
        match Arc::get_mut(c) {
            Some(m) => m[i % CHUNK] = nh,
            None => {
                let mut v = c.to_vec();
                v[i % CHUNK] = nh;
                *c = v.into();
            }
        }
        self.changed = true;
    }

    /// The index of `nh` for one more route: its existing one, or a new
    /// one. Refused when every index is taken (ENOBUFS).
    pub(super) fn acquire(&mut self, nh: Nhop<A>) -> Result<u32, RouteError> {
        if let Some(&i) = self.index.get(&nh) {
            self.refs[i as usize] += 1;
            return Ok(i);
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None if self.len <= MAX_NEXTHOPS => {
                self.len += 1;
                self.refs.push(0);
                (self.len - 1) as u32
            }
            None => return Err(RouteError::NoNextHop),
        };
        self.set(i as usize, nh.clone());
        self.refs[i as usize] = 1;
        self.index.insert(nh, i);
        Ok(i)
    }

    /// One route fewer uses next hop `i`; the last one frees the index.
    pub(super) fn release(&mut self, i: u32) {
        let r = &mut self.refs[i as usize];
        *r -= 1;
        if *r == 0 {
            self.index.remove(&self.chunks[i as usize / CHUNK][i as usize % CHUNK]);
            self.free.push(i);
        }
    }

    #[cfg(test)]
    fn get(&self, i: u32) -> &Nhop<A> {
        &self.chunks[i as usize / CHUNK][i as usize % CHUNK]
    }

    /// Next hops in use.
    pub(super) fn in_use(&self) -> usize {
        self.index.len()
    }

    /// The table for a snapshot about to be published: the last one when
    /// no next hop was set since.
    pub(super) fn publish(&mut self) -> Published<A> {
        if self.changed {
            self.changed = false;
            self.published = self.chunks.clone().into();
        }
        self.published.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::IfIndex;

    fn via(gw: u8) -> Nhop {
        let mut r = Route::via(Ipv4Addr::new(10, 9, 0, 0), 16, Ipv4Addr::new(10, 0, 0, gw));
        r.ifp = WeakIf { index: IfIndex(2), generation: 1 };
        Nhop::of(&r)
    }

    #[test]
    fn routes_through_one_gateway_share_a_next_hop_and_free_it_together() {
        let mut t = NhopTable::<Ipv4Addr>::new();
        let a = t.acquire(via(1)).unwrap();
        assert_eq!(t.acquire(via(1)).unwrap(), a, "same next hop, same index");
        let b = t.acquire(via(2)).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, 0, "index 0 is never handed out");
        assert_eq!(t.in_use(), 2);
        let snap = t.publish();
        assert_eq!(*published_get(&snap, a), via(1));
        t.release(a);
        assert_eq!(t.in_use(), 2, "one route still uses it");
        t.release(a);
        assert_eq!(t.in_use(), 1);
        // The freed index is reused; the old snapshot keeps its copy.
        let c = t.acquire(via(3)).unwrap();
        assert_eq!(c, a);
        assert_eq!(*published_get(&snap, a), via(1));
        assert_eq!(*published_get(&t.publish(), c), via(3));
        assert_eq!(*t.get(b), via(2));
    }

    /// Through the routing table: a feed of /24s via one gateway is one
    /// next hop; lookups find each prefix and the gateway of the moment;
    /// withdrawing them all frees it.
    #[test]
    fn a_feed_through_one_gateway_is_one_next_hop() {
        use crate::iface::IfAddr;
        use crate::route::RouteTables;
        use crate::rtmsg::RouteMonitor;
        let t = RouteTables::new(Arc::new(RouteMonitor::new()));
        for i in [2u32, 3] {
            let a = IfAddr::new(Ipv4Addr::new(10, 0, i as u8, 1), 24);
            t.add(0, Route::connected(WeakIf { index: IfIndex(i), generation: 1 }, a)).unwrap();
        }
        assert_eq!(t.nexthops_in_use::<Ipv4Addr>(0), 2, "one per connected route");
        let net = |i: u32| Ipv4Addr::from(0x2000_0000 + (i << 8));
        t.batch(0, |b| {
            for i in 0..1000 {
                b.add(Route::via(net(i), 24, Ipv4Addr::new(10, 0, 2, 2))).unwrap();
            }
        });
        assert_eq!(t.nexthops_in_use::<Ipv4Addr>(0), 3);
        let snap = t.snapshot(0).unwrap();
        for i in [0, 1, 517, 999] {
            let h = snap.lookup(Ipv4Addr::from(u32::from(net(i)) + 9)).unwrap();
            assert_eq!((h.dest, h.prefix_len, h.gateway), (net(i), 24, Some(Ipv4Addr::new(10, 0, 2, 2))));
            assert_eq!(h.ifp.index, IfIndex(2));
        }
        // One route moved to the other gateway: a next hop of its own.
        t.change(0, Route::via(net(517), 24, Ipv4Addr::new(10, 0, 3, 2))).unwrap();
        assert_eq!(t.nexthops_in_use::<Ipv4Addr>(0), 4);
        let now = t.snapshot(0).unwrap();
        let h = now.lookup(net(517)).unwrap();
        assert_eq!((h.gateway, h.ifp.index), (Some(Ipv4Addr::new(10, 0, 3, 2)), IfIndex(3)));
        assert_eq!(now.lookup(net(518)).unwrap().gateway, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(snap.lookup(net(517)).unwrap().gateway, Some(Ipv4Addr::new(10, 0, 2, 2)), "old snapshot kept");
        t.batch(0, |b| {
            for i in 0..1000 {
                b.delete(net(i), 24, None).unwrap();
            }
        });
        assert_eq!(t.nexthops_in_use::<Ipv4Addr>(0), 2, "the feed's next hops freed");
        assert!(t.snapshot(0).unwrap().lookup(net(517)).is_none());
        // The old snapshot still answers with the next hops it was made with.
        assert_eq!(snap.lookup(net(3)).unwrap().gateway, Some(Ipv4Addr::new(10, 0, 2, 2)));
    }

    /// A next hop per route, published one by one, copies a chunk per
    /// publish, not the table: the chunks a snapshot holds stay shared.
    #[test]
    fn publishing_copies_only_the_chunk_that_changed() {
        let mut t = NhopTable::<Ipv4Addr>::new();
        let hop = |i: u32| {
            let mut r = Route::via(Ipv4Addr::new(10, 9, 0, 0), 16, Ipv4Addr::from(0x0a00_0000 + i));
            r.ifp = WeakIf { index: IfIndex(2), generation: 1 };
            Nhop::of(&r)
        };
        let ids: Vec<u32> = (0..1000).map(|i| t.acquire(hop(i)).unwrap()).collect();
        let first = t.publish();
        assert_eq!(first.len(), 4);
        let new = t.acquire(hop(5000)).unwrap();
        assert_eq!(new as usize / CHUNK, 3);
        let second = t.publish();
        for c in 0..3 {
            assert!(Arc::ptr_eq(&first[c], &second[c]), "chunk {c} shared");
        }
        assert!(!Arc::ptr_eq(&first[3], &second[3]));
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(*published_get(&second, id), hop(i as u32));
        }
        assert_eq!(*published_get(&second, new), hop(5000));
        assert_eq!(*published_get(&first, new), Nhop::unused(), "the old snapshot unchanged");
    }

    #[test]
    fn a_table_without_new_next_hops_publishes_the_same_copy() {
        let mut t = NhopTable::<Ipv4Addr>::new();
        let a = t.acquire(via(1)).unwrap();
        let s1 = t.publish();
        t.acquire(via(1)).unwrap();
        t.release(a);
        assert!(Arc::ptr_eq(&s1, &t.publish()));
    }
}
