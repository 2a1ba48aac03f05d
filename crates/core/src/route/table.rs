//! The routing tables: the control thread's routes of each table and
//! family, the published snapshots the workers read, and the changes.

use super::family::RouteAddr;
use super::nexthop::{self, Hop, Nhop, NhopTable};
use super::trie::{self, Key, Leaf, Node, Spare};
use super::{Route, RouteError, RouteFlags};
use crate::iface::{IfIndex, WeakIf};
use crate::rtmsg::{RouteMonitor, RtmBody, RtmRoute, RtmType, Source};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::{btree_map, BTreeMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// A published, immutable view of one family of one routing table.
pub struct RouteSnapshot<A: RouteAddr = Ipv4Addr> {
    root: Arc<Node<A>>,
    /// The next hops the trie's leaves index (`nexthop.rs`).
    nexthops: nexthop::Published<A>,
    len: usize,
    version: u64,
}

/// The IPv6 snapshot of a table.
pub type RouteSnapshot6 = RouteSnapshot<Ipv6Addr>;

impl RouteSnapshot<Ipv4Addr> {
    /// Longest-prefix match: no lock, no allocation, at most four nodes;
    /// the matching prefix and its next hop, valid as long as the snapshot.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<Hop<'_>> {
        trie::lookup4(&self.root, u32::from(dst)).map(|l| self.hop(dst, l))
    }
}

impl RouteSnapshot<Ipv6Addr> {
    /// Longest-prefix match for a global destination: no lock, no
    /// allocation. A link-local destination matches only unscoped routes
    /// (`fe80::/10`) this way: use `lookup_scoped` with its interface.
    #[inline]
    pub fn lookup(&self, dst: Ipv6Addr) -> Option<Hop<'_, Ipv6Addr>> {
        trie::lookup6(&self.root, u128::from(dst)).map(|l| self.hop(dst, l))
    }
}

impl<A: RouteAddr> RouteSnapshot<A> {
    /// The snapshot of a new table.
    fn empty() -> Self {
        RouteSnapshot { root: Arc::new(Node::default()), nexthops: NhopTable::new().publish(), len: 0, version: 0 }
    }
    /// Longest-prefix match of `dst` as seen from interface `scope` (the
    /// receiving or outgoing interface of a link-local address; ignored for
    /// unscoped addresses and for IPv4).
    #[inline]
    pub fn lookup_scoped(&self, dst: A, scope: IfIndex) -> Option<Hop<'_, A>> {
        trie::lookup(&self.root, A::key_bits(dst, A::MAX_LEN, scope)).map(|l| self.hop(dst, l))
    }
    /// The match of `dst` that leaf `l` names: one load after the leaf.
    #[inline]
    fn hop(&self, dst: A, l: Leaf) -> Hop<'_, A> {
        Hop::new(dst, trie::leaf_len(l), nexthop::published_get(&self.nexthops, trie::leaf_nh(l)))
    }
    /// Number of routes.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Publish count of this family of the table; grows with every publish.
    pub fn version(&self) -> u64 {
        self.version
    }
    /// Trie nodes (a measure of memory use).
    pub fn node_count(&self) -> usize {
        self.root.node_count()
    }
}

/// Where a table's snapshots are published, one per family.
pub struct PublishedTable {
    pub(super) v4: ArcSwap<RouteSnapshot<Ipv4Addr>>,
    pub(super) v6: ArcSwap<RouteSnapshot<Ipv6Addr>>,
}

type Directory = Vec<Option<Arc<PublishedTable>>>;

/// The control thread's routes of one family of one table.
pub struct FamilyState<A: RouteAddr> {
    map: BTreeMap<Key<A>, Entry<A>>,
    /// The next hops of the routes in `map`, counted.
    nexthops: NhopTable<A>,
    /// Routes in `map` of each prefix length (index 0..=`A::MAX_LEN`).
    per_len: Vec<u32>,
    /// The working trie: shared with the published snapshot until changed.
    root: Arc<Node<A>>,
    /// Nodes of retired snapshots for the working trie's copies.
    spare: Spare<A>,
    dirty: bool,
    version: u64,
}

impl<A: RouteAddr> FamilyState<A> {
    fn new(root: Arc<Node<A>>) -> Self {
        FamilyState {
            map: BTreeMap::new(),
            nexthops: NhopTable::new(),
            per_len: vec![0; A::MAX_LEN as usize + 1],
            root,
            spare: Spare::default(),
            dirty: false,
            version: 0,
        }
    }

    /// The route of leaf `l` found for key `dst` (a scope-embedded key).
    fn route_of(&self, dst: A::Bits, l: Leaf) -> Option<&Arc<Route<A>>> {
        let len = trie::leaf_len(l);
        self.map.get(&(A::mask_bits(dst, len), len)).map(|e| &e.route)
    }

    /// Longest-prefix match of key `dst` on the working trie: the route.
    fn lookup_route(&self, dst: A::Bits) -> Option<&Arc<Route<A>>> {
        self.route_of(dst, trie::lookup(&self.root, dst)?)
    }

    /// The leaf of the longest route of `key/len`'s level that covers its
    /// whole block, `key/len` itself left out: what takes its slots when it
    /// goes. Lengths the table has none of are not looked up (a table of
    /// /24s withdraws a /24 without seven map searches).
    fn replacement(&self, key: A::Bits, len: u8) -> Leaf {
        (trie::level_min(trie::level_of(len))..len)
            .rev()
            .filter(|&l| self.per_len[l as usize] > 0)
            .find_map(|l| self.map.get(&(A::mask_bits(key, l), l)).map(|e| trie::leaf(e.nh, l)))
            .unwrap_or(0)
    }

    /// Publishes the working trie if it changed; returns the snapshot it
    /// replaces, to be retired.
    fn publish(&mut self, to: &ArcSwap<RouteSnapshot<A>>) -> Option<Arc<RouteSnapshot<A>>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.version += 1;
        let snap = Arc::new(RouteSnapshot {
            root: self.root.clone(),
            nexthops: self.nexthops.publish(),
            len: self.map.len(),
            version: self.version,
        });
        Some(to.swap(snap))
    }
}

/// A route in the control thread's map, with the index of its next hop.
struct Entry<A: RouteAddr> {
    route: Arc<Route<A>>,
    nh: u32,
}

/// The control thread's state of one table: both families.
pub struct TableState {
    pub(super) v4: FamilyState<Ipv4Addr>,
    pub(super) v6: FamilyState<Ipv6Addr>,
    published: Arc<PublishedTable>,
}

/// Something a reader may still hold: a snapshot of either family of a
/// table, or a directory. Freed here once it does not, a snapshot's trie
/// nodes kept as its table's spares (`trie::Spare`).
enum Retired {
    Directory(Arc<Directory>),
    V4(u16, Arc<RouteSnapshot<Ipv4Addr>>),
    V6(u16, Arc<RouteSnapshot<Ipv6Addr>>),
}

impl Retired {
    /// Whether a reader still holds it.
    fn held(&self) -> bool {
        match self {
            Retired::Directory(d) => Arc::strong_count(d) > 1,
            Retired::V4(_, s) => Arc::strong_count(s) > 1,
            Retired::V6(_, s) => Arc::strong_count(s) > 1,
        }
    }
}

type IfNameFn = dyn Fn(WeakIf) -> Option<String> + Send + Sync;

struct Control {
    tables: BTreeMap<u16, TableState>,
    retired: Vec<Retired>,
    ifname: Option<Box<IfNameFn>>,
}

impl Control {
    fn reap(&mut self) -> usize {
        // ArcSwap settles readers' borrowed loads into real counts when it
        // swaps, so a count of 1 means nobody can reach the object any more.
        let mut i = 0;
        while i < self.retired.len() {
            if self.retired[i].held() {
                i += 1;
                continue;
            }
            match self.retired.swap_remove(i) {
                Retired::Directory(_) => {}
                Retired::V4(id, s) => {
                    if let (Ok(s), Some(t)) = (Arc::try_unwrap(s), self.tables.get_mut(&id)) {
                        t.v4.spare.recycle(s.root);
                    }
                }
                Retired::V6(id, s) => {
                    if let (Ok(s), Some(t)) = (Arc::try_unwrap(s), self.tables.get_mut(&id)) {
                        t.v6.spare.recycle(s.root);
                    }
                }
            }
        }
        self.retired.len()
    }
}

/// All routing tables of the stack. Table 0 always exists; others are
/// created by their first change.
///
/// The change and query methods are generic over the family: the address
/// type given (`Ipv4Addr` or `Ipv6Addr`) picks it.
pub struct RouteTables {
    directory: ArcSwap<Directory>,
    control: Mutex<Control>,
    monitor: Arc<RouteMonitor>,
}

impl RouteTables {
    pub fn new(monitor: Arc<RouteMonitor>) -> Self {
        let t = RouteTables {
            directory: ArcSwap::from_pointee(Vec::new()),
            control: Mutex::new(Control { tables: BTreeMap::new(), retired: Vec::new(), ifname: None }),
            monitor,
        };
        t.batch(0, |_| ());
        t
    }

    pub fn monitor(&self) -> &Arc<RouteMonitor> {
        &self.monitor
    }

    /// How route messages name interfaces (without it they say `link#N`).
    pub fn set_ifname_resolver(&self, f: impl Fn(WeakIf) -> Option<String> + Send + Sync + 'static) {
        self.control.lock().ifname = Some(Box::new(f));
    }

    /// The current IPv4 snapshot of a table, for a worker to load once per
    /// batch and drop at its end. `None` if the table does not exist.
    #[inline]
    pub fn snapshot(&self, rtable: u16) -> Option<arc_swap::Guard<Arc<RouteSnapshot>>> {
        self.snapshot_of::<Ipv4Addr>(rtable)
    }

    /// The current IPv6 snapshot of a table, as `snapshot`.
    #[inline]
    pub fn snapshot6(&self, rtable: u16) -> Option<arc_swap::Guard<Arc<RouteSnapshot6>>> {
        self.snapshot_of::<Ipv6Addr>(rtable)
    }

    /// The current snapshot of one family of a table.
    #[inline]
    pub fn snapshot_of<A: RouteAddr>(&self, rtable: u16) -> Option<arc_swap::Guard<Arc<RouteSnapshot<A>>>> {
        let dir = self.directory.load();
        let t = dir.get(rtable as usize)?.as_ref()?;
        Some(A::published(t).load())
    }

    /// Distinct next hops one family of a table's routes use (`nexthop.rs`).
    pub fn nexthops_in_use<A: RouteAddr>(&self, rtable: u16) -> usize {
        self.lock().tables.get(&rtable).map_or(0, |t| A::state(t).nexthops.in_use())
    }

    /// Ids of existing tables, ascending.
    pub fn table_ids(&self) -> Vec<u16> {
        self.control.lock().tables.keys().copied().collect()
    }

    /// Adds a route; `RouteError::Exists` if the table has one for the same
    /// destination and prefix length (and scope).
    pub fn add<A: RouteAddr>(&self, rtable: u16, r: Route<A>) -> Result<Arc<Route<A>>, RouteError> {
        self.batch(rtable, |b| b.add(r))
    }

    /// Deletes the route for `dest/prefix_len`; with a gateway, only if the
    /// route goes there.
    pub fn delete<A: RouteAddr>(
        &self,
        rtable: u16,
        dest: A,
        prefix_len: u8,
        gateway: Option<A>,
    ) -> Result<Arc<Route<A>>, RouteError> {
        self.batch(rtable, |b| b.delete_scoped(dest, prefix_len, gateway, IfIndex::NONE))
    }

    /// `delete` of a scoped destination (`fe80::%em0/64`): `scope` is its
    /// interface.
    pub fn delete_scoped<A: RouteAddr>(
        &self,
        rtable: u16,
        dest: A,
        prefix_len: u8,
        gateway: Option<A>,
        scope: IfIndex,
    ) -> Result<Arc<Route<A>>, RouteError> {
        self.batch(rtable, |b| b.delete_scoped(dest, prefix_len, gateway, scope))
    }

    /// Replaces the route for `r`'s destination and prefix length.
    pub fn change<A: RouteAddr>(&self, rtable: u16, r: Route<A>) -> Result<Arc<Route<A>>, RouteError> {
        self.batch(rtable, |b| b.change(r))
    }

    /// The route for exactly `dest/prefix_len`.
    pub fn get<A: RouteAddr>(&self, rtable: u16, dest: A, prefix_len: u8) -> Option<Arc<Route<A>>> {
        self.get_scoped(rtable, dest, prefix_len, IfIndex::NONE)
    }

    /// `get` of a scoped destination on interface `scope`.
    pub fn get_scoped<A: RouteAddr>(
        &self,
        rtable: u16,
        dest: A,
        prefix_len: u8,
        scope: IfIndex,
    ) -> Option<Arc<Route<A>>> {
        if prefix_len > A::MAX_LEN {
            return None;
        }
        let ctl = self.lock();
        let key = (A::key_bits(dest, prefix_len, scope), prefix_len);
        A::state(ctl.tables.get(&rtable)?).map.get(&key).map(|e| e.route.clone())
    }

    /// Longest-prefix match on the published table (`route get`).
    pub fn lookup<A: RouteAddr>(&self, rtable: u16, dst: A) -> Option<Arc<Route<A>>> {
        self.lookup_scoped(rtable, dst, IfIndex::NONE)
    }

    /// Longest-prefix match of a destination as seen from interface `scope`.
    /// (The control thread's trie: outside a batch, the published one.)
    pub fn lookup_scoped<A: RouteAddr>(&self, rtable: u16, dst: A, scope: IfIndex) -> Option<Arc<Route<A>>> {
        let ctl = self.lock();
        A::state(ctl.tables.get(&rtable)?).lookup_route(A::key_bits(dst, A::MAX_LEN, scope)).cloned()
    }

    /// All IPv4 routes of a table in `netstat -rn` order: by destination,
    /// then shorter prefix first.
    pub fn routes(&self, rtable: u16) -> Vec<Arc<Route>> {
        self.routes_of::<Ipv4Addr>(rtable)
    }

    /// All IPv6 routes of a table in `netstat -rn` order (scoped routes by
    /// their embedded key: after the unscoped ones of the same prefix).
    pub fn routes6(&self, rtable: u16) -> Vec<Arc<Route<Ipv6Addr>>> {
        self.routes_of::<Ipv6Addr>(rtable)
    }

    /// All routes of one family of a table, in `netstat -rn` order.
    pub fn routes_of<A: RouteAddr>(&self, rtable: u16) -> Vec<Arc<Route<A>>> {
        let ctl = self.lock();
        ctl.tables.get(&rtable).map(|t| A::state(t).map.values().map(|e| e.route.clone()).collect()).unwrap_or_default()
    }

    /// Removes every route, in every table and family, that uses interface
    /// `ifp`, each with its own route message. Returns how many.
    pub fn delete_for_interface(&self, ifp: WeakIf) -> usize {
        let ids = self.table_ids();
        let mut n = 0;
        for id in ids {
            n += self.batch(id, |b| b.delete_for_interface::<Ipv4Addr>(ifp) + b.delete_for_interface::<Ipv6Addr>(ifp));
        }
        n
    }

    /// Runs several changes of one table (creating it if needed) and
    /// publishes once at the end. Each change still emits its own message,
    /// in order; a failed change changes nothing, the others stand.
    pub fn batch<R>(&self, rtable: u16, f: impl FnOnce(&mut RouteBatch<'_>) -> R) -> R {
        self.batch_as(rtable, None, f)
    }

    /// `batch` on behalf of `source` (`RouteMonitor::subscribe_others`):
    /// its messages go to every subscriber but that source's own, and are
    /// not made at all when nobody else listens. The route sync's way: it
    /// has no use for its own messages back, one per route of a feed.
    pub fn batch_as<R>(&self, rtable: u16, source: Option<Source>, f: impl FnOnce(&mut RouteBatch<'_>) -> R) -> R {
        let mut guard = self.lock();
        let ctl = &mut *guard;
        if !ctl.tables.contains_key(&rtable) {
            let published = Arc::new(PublishedTable {
                v4: ArcSwap::from_pointee(RouteSnapshot::empty()),
                v6: ArcSwap::from_pointee(RouteSnapshot::empty()),
            });
            let mut dir: Directory = (**self.directory.load()).clone();
            if dir.len() <= rtable as usize {
                dir.resize(rtable as usize + 1, None);
            }
            dir[rtable as usize] = Some(published.clone());
            let old = self.directory.swap(Arc::new(dir));
            ctl.retired.push(Retired::Directory(old));
            let st = TableState {
                v4: FamilyState::new(published.v4.load().root.clone()),
                v6: FamilyState::new(published.v6.load().root.clone()),
                published,
            };
            ctl.tables.insert(rtable, st);
        }
        let st = ctl.tables.get_mut(&rtable).expect("table just ensured");
        let mut b = RouteBatch { rtable, st, monitor: &self.monitor, ifname: ctl.ifname.as_deref(), source };
        let out = f(&mut b);
        let st = b.st;
        let old4 = st.v4.publish(&st.published.v4).map(|s| Retired::V4(rtable, s));
        let old6 = st.v6.publish(&st.published.v6).map(|s| Retired::V6(rtable, s));
        if old4.is_some() || old6.is_some() {
            ctl.retired.extend(old4.into_iter().chain(old6));
            ctl.reap();
        }
        out
    }

    /// Frees old snapshots no reader holds any more; returns how many are
    /// still held. Every control call does this too.
    pub fn reap(&self) -> usize {
        self.control.lock().reap()
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Control> {
        let mut ctl = self.control.lock();
        ctl.reap();
        ctl
    }
}

/// What `RouteBatch::set_where` did.
#[derive(Debug)]
pub enum SetOutcome<A: RouteAddr> {
    /// The route is in the table now (RTM_ADD or RTM_CHANGE sent).
    Made(Arc<Route<A>>),
    /// The same route was there: nothing changed, no message.
    Same,
    /// Another route was there and `replaceable` refused it.
    Refused,
}

/// Changes to one table, published together when the batch ends.
pub struct RouteBatch<'a> {
    rtable: u16,
    st: &'a mut TableState,
    monitor: &'a RouteMonitor,
    ifname: Option<&'a IfNameFn>,
    /// Whose changes these are (`RouteTables::batch_as`).
    source: Option<Source>,
}

fn check_len<A: RouteAddr>(len: u8) -> Result<(), RouteError> {
    if len > A::MAX_LEN {
        Err(A::bad_prefix(len))
    } else {
        Ok(())
    }
}

impl RouteBatch<'_> {
    pub fn rtable(&self) -> u16 {
        self.rtable
    }

    pub fn add<A: RouteAddr>(&mut self, r: Route<A>) -> Result<Arc<Route<A>>, RouteError> {
        let r = self.normalize(r)?;
        if A::state(self.st).map.contains_key(&r.key()) {
            return Err(RouteError::Exists);
        }
        self.install(RtmType::Add, r)
    }

    pub fn change<A: RouteAddr>(&mut self, r: Route<A>) -> Result<Arc<Route<A>>, RouteError> {
        check_len::<A>(r.prefix_len)?;
        if !A::state(self.st).map.contains_key(&r.key()) {
            return Err(RouteError::NotInTable);
        }
        let r = self.normalize(r)?;
        self.install(RtmType::Change, r)
    }

    pub fn delete<A: RouteAddr>(
        &mut self,
        dest: A,
        prefix_len: u8,
        gateway: Option<A>,
    ) -> Result<Arc<Route<A>>, RouteError> {
        self.delete_scoped(dest, prefix_len, gateway, IfIndex::NONE)
    }

    /// `delete` of a destination scoped to interface `scope`.
    pub fn delete_scoped<A: RouteAddr>(
        &mut self,
        dest: A,
        prefix_len: u8,
        gateway: Option<A>,
        scope: IfIndex,
    ) -> Result<Arc<Route<A>>, RouteError> {
        // A directly connected route's "gateway" is its own address.
        self.delete_where(dest, prefix_len, scope, |held| match gateway {
            Some(g) => held.gateway == Some(g) || (held.gateway.is_none() && held.ifa == Some(g)),
            None => true,
        })
    }

    /// Deletes the route for exactly `dest/prefix_len` on interface
    /// `scope` if `accept` says so (the route sync removes only the routes
    /// it installed); `RouteError::NotInTable` if there is none or `accept`
    /// refuses it. One search of the table's map, not a look and a remove:
    /// a withdrawal of a 1,000,000-prefix feed pays each search in cache
    /// misses (BENCHMARKS §1 "Route sync", session 12).
    pub fn delete_where<A: RouteAddr>(
        &mut self,
        dest: A,
        prefix_len: u8,
        scope: IfIndex,
        accept: impl FnOnce(&Route<A>) -> bool,
    ) -> Result<Arc<Route<A>>, RouteError> {
        check_len::<A>(prefix_len)?;
        let key = (A::key_bits(dest, prefix_len, scope), prefix_len);
        match A::state_mut(self.st).map.entry(key) {
            btree_map::Entry::Occupied(e) if accept(&e.get().route) => {
                let gone = e.remove();
                Ok(self.unlink(key, gone))
            }
            _ => Err(RouteError::NotInTable),
        }
    }

    fn remove_key<A: RouteAddr>(&mut self, key: Key<A>) -> Arc<Route<A>> {
        let gone = A::state_mut(self.st).map.remove(&key).expect("present");
        self.unlink(key, gone)
    }

    /// Takes `gone`, just removed from the map under `key`, out of the trie
    /// and the next hops, and announces it.
    fn unlink<A: RouteAddr>(&mut self, key: Key<A>, gone: Entry<A>) -> Arc<Route<A>> {
        let fam = A::state_mut(self.st);
        fam.per_len[key.1 as usize] -= 1;
        let replacement = fam.replacement(key.0, key.1);
        trie::remove(&mut fam.root, &mut fam.spare, key.0, key.1, replacement);
        fam.nexthops.release(gone.nh);
        fam.dirty = true;
        self.announce(RtmType::Delete, &gone.route);
        gone.route
    }

    /// Deletes this family's routes that use `ifp`; returns how many.
    fn delete_for_interface<A: RouteAddr>(&mut self, ifp: WeakIf) -> usize {
        let keys: Vec<Key<A>> =
            A::state(self.st).map.iter().filter(|(_, e)| e.route.ifp == ifp).map(|(k, _)| *k).collect();
        for k in &keys {
            self.remove_key::<A>(*k);
        }
        keys.len()
    }

    /// Adds `r`, or replaces the route with its key when that one differs
    /// (RTM_ADD or RTM_CHANGE); when the same route is there already,
    /// nothing changes and no message goes out (`Ok(None)`). The route
    /// sync's way in: a resync that finds the table as it was says nothing.
    pub fn set<A: RouteAddr>(&mut self, r: Route<A>) -> Result<Option<Arc<Route<A>>>, RouteError> {
        Ok(match self.set_where(r, |_| true)? {
            SetOutcome::Made(r) => Some(r),
            SetOutcome::Same | SetOutcome::Refused => None,
        })
    }

    /// `set`, but a route already there is replaced only if `replaceable`
    /// accepts it (the route sync replaces only what it installed), with
    /// one search of the table's map: a feed of 1,000,000 prefixes pays
    /// each search (BENCHMARKS §1 "Route sync", session 13).
    pub fn set_where<A: RouteAddr>(
        &mut self,
        r: Route<A>,
        replaceable: impl FnOnce(&Route<A>) -> bool,
    ) -> Result<SetOutcome<A>, RouteError> {
        let r = self.normalize(r)?;
        let key = r.key();
        let fam = A::state_mut(self.st);
        // As `install`, but in the entry the one search found.
        let (kind, route) = match fam.map.entry(key) {
            btree_map::Entry::Occupied(e) if *e.get().route == r => return Ok(SetOutcome::Same),
            btree_map::Entry::Occupied(e) if !replaceable(&e.get().route) => return Ok(SetOutcome::Refused),
            btree_map::Entry::Occupied(mut e) => {
                let nh = fam.nexthops.acquire(Nhop::of(&r))?;
                let route = Arc::new(r);
                trie::insert(&mut fam.root, &mut fam.spare, key.0, key.1, trie::leaf(nh, key.1));
                let old = std::mem::replace(e.get_mut(), Entry { route: route.clone(), nh });
                fam.nexthops.release(old.nh);
                (RtmType::Change, route)
            }
            btree_map::Entry::Vacant(e) => {
                let nh = fam.nexthops.acquire(Nhop::of(&r))?;
                let route = Arc::new(r);
                trie::insert(&mut fam.root, &mut fam.spare, key.0, key.1, trie::leaf(nh, key.1));
                e.insert(Entry { route: route.clone(), nh });
                fam.per_len[key.1 as usize] += 1;
                (RtmType::Add, route)
            }
        };
        fam.dirty = true;
        self.announce(kind, &route);
        Ok(SetOutcome::Made(route))
    }

    /// The route for exactly `dest/prefix_len` on interface `scope` (a
    /// scoped destination's), changes of this batch included.
    pub fn get_scoped<A: RouteAddr>(&self, dest: A, prefix_len: u8, scope: IfIndex) -> Option<Arc<Route<A>>> {
        let key = (A::key_bits(dest, prefix_len.min(A::MAX_LEN), scope), prefix_len);
        A::state(self.st).map.get(&key).map(|e| e.route.clone())
    }

    /// The route for exactly `dest/prefix_len`, changes of this batch included.
    pub fn get<A: RouteAddr>(&self, dest: A, prefix_len: u8) -> Option<Arc<Route<A>>> {
        let key = (A::key_bits(dest, prefix_len.min(A::MAX_LEN), IfIndex::NONE), prefix_len);
        A::state(self.st).map.get(&key).map(|e| e.route.clone())
    }

    /// Longest-prefix match, changes of this batch included.
    pub fn lookup<A: RouteAddr>(&self, dst: A) -> Option<Arc<Route<A>>> {
        A::state(self.st).lookup_route(A::key_bits(dst, A::MAX_LEN, IfIndex::NONE)).cloned()
    }

    /// Checks the prefix, clears host bits, sets `UP`, makes `GATEWAY`
    /// agree with the gateway, and finds the interface of a gateway route
    /// given without one. A scoped (link-local) gateway is looked up on the
    /// interface it is scoped to, and must be reached there.
    fn normalize<A: RouteAddr>(&self, mut r: Route<A>) -> Result<Route<A>, RouteError> {
        if let Some(hops) = r.mpath.take() {
            return self.normalize_mpath(r, &hops);
        }
        check_len::<A>(r.prefix_len)?;
        r.dest = A::from_bits(A::mask_bits(r.dest.to_bits(), r.prefix_len));
        r.flags.insert(RouteFlags::UP);
        r.flags.remove(RouteFlags::DONE);
        if r.gateway.is_some() {
            r.flags.insert(RouteFlags::GATEWAY);
        } else {
            r.flags.remove(RouteFlags::GATEWAY);
        }
        let discard = r.flags.intersects(RouteFlags::REJECT | RouteFlags::BLACKHOLE);
        if let (Some(gw), false) = (r.gateway, discard) {
            let scoped = gw.is_scoped();
            if scoped && r.ifp.index == IfIndex::NONE {
                return Err(RouteError::NoScope);
            }
            if r.ifp.index == IfIndex::NONE || scoped {
                // As BSD: the gateway must be on a directly connected network.
                let key = A::key_bits(gw, A::MAX_LEN, r.ifp.index);
                let via = A::state(self.st).lookup_route(key).ok_or(RouteError::NetworkUnreachable)?;
                if via.flags.contains(RouteFlags::GATEWAY) || (scoped && via.ifp != r.ifp) {
                    return Err(RouteError::NetworkUnreachable);
                }
                r.ifp = via.ifp;
                r.ifa = r.ifa.or(via.ifa);
            }
        }
        // A scoped destination's key embeds its interface: it needs one.
        if r.dest.is_scoped() && r.prefix_len > 16 && r.ifp.index == IfIndex::NONE {
            return Err(RouteError::NoScope);
        }
        Ok(r)
    }

    /// A multipath route: each next hop normalized as a route of its own
    /// (its interface found from its gateway), all flagged `MPATH`, the
    /// entry itself the first of them. One next hop is a plain route.
    fn normalize_mpath<A: RouteAddr>(&self, r: Route<A>, hops: &[Route<A>]) -> Result<Route<A>, RouteError> {
        let mut out = Vec::with_capacity(hops.len());
        for h in hops {
            let mut h = h.clone();
            h.mpath = None;
            h.dest = r.dest;
            h.prefix_len = r.prefix_len;
            h.origin = r.origin;
            h.priority = r.priority;
            h.flags.insert(RouteFlags::MPATH);
            out.push(self.normalize(h)?);
        }
        let Some(mut first) = out.first().cloned() else {
            let mut single = r;
            single.flags.remove(RouteFlags::MPATH);
            return self.normalize(single);
        };
        if out.len() == 1 {
            first.flags.remove(RouteFlags::MPATH);
        } else {
            first.mpath = Some(out.into());
        }
        Ok(first)
    }

    /// Puts a normalized route in (replacing one with the same key).
    /// Refused only when the table's next hops are exhausted.
    fn install<A: RouteAddr>(&mut self, kind: RtmType, r: Route<A>) -> Result<Arc<Route<A>>, RouteError> {
        let key = r.key();
        let fam = A::state_mut(self.st);
        let nh = fam.nexthops.acquire(Nhop::of(&r))?;
        let route = Arc::new(r);
        trie::insert(&mut fam.root, &mut fam.spare, key.0, key.1, trie::leaf(nh, key.1));
        match fam.map.insert(key, Entry { route: route.clone(), nh }) {
            Some(old) => fam.nexthops.release(old.nh),
            None => fam.per_len[key.1 as usize] += 1,
        }
        fam.dirty = true;
        self.announce(kind, &route);
        Ok(route)
    }

    /// The change's route message; its body (the interface's name a
    /// `String`) made only for a subscriber that receives it.
    fn announce<A: RouteAddr>(&self, kind: RtmType, r: &Route<A>) {
        self.monitor.emit_lazy(kind, self.rtable, self.source, || {
            RtmBody::Route(RtmRoute {
                dest: r.dest.into(),
                prefix_len: r.prefix_len,
                gateway: r.gateway.map(Into::into),
                flags: r.flags | RouteFlags::DONE,
                ifindex: r.ifp.index,
                ifname: self.ifname.and_then(|f| f(r.ifp)),
                ifa: r.ifa.map(Into::into),
                mtu: r.mtu,
                priority: r.priority,
            })
        });
    }
}
