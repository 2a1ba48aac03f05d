//! Routing tables: longest-prefix match per routing table (rtable id).
//!
//! The control thread owns the authoritative set of routes of each table (a
//! `BTreeMap` keyed by network and prefix length) and a trie built from it
//! (`trie.rs`). After every change — or once after a batch of changes — it
//! publishes the trie as an immutable `RouteSnapshot` with `arc-swap`.
//! Workers load the snapshot once per batch and look up without locks or
//! allocation. Old snapshots are retired to a list and freed on the control
//! thread once no reader holds them, never on a worker.
//!
//! Every change emits exactly one route message (`rtmsg.rs`).

mod netstat;
mod trie;

pub use netstat::{format_netstat_rn, netname};

use crate::iface::{prefix_mask, IfAddr, IfIndex, WeakIf};
use crate::rtmsg::{RouteMonitor, RtmBody, RtmRoute, RtmType};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::{BitAnd, BitOr, BitOrAssign, Not};
use std::sync::Arc;
use trie::{Held, Key, Node};

/// Route flags, with OpenBSD's `RTF_*` bit values.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct RouteFlags(pub u32);

impl RouteFlags {
    pub const UP: RouteFlags = RouteFlags(0x1);
    pub const GATEWAY: RouteFlags = RouteFlags(0x2);
    pub const HOST: RouteFlags = RouteFlags(0x4);
    pub const REJECT: RouteFlags = RouteFlags(0x8);
    /// Message completed: only in route messages, never in a table.
    pub const DONE: RouteFlags = RouteFlags(0x40);
    pub const CLONING: RouteFlags = RouteFlags(0x100);
    pub const LLINFO: RouteFlags = RouteFlags(0x400);
    pub const STATIC: RouteFlags = RouteFlags(0x800);
    pub const BLACKHOLE: RouteFlags = RouteFlags(0x1000);
    pub const CLONED: RouteFlags = RouteFlags(0x10000);
    pub const LOCAL: RouteFlags = RouteFlags(0x200000);
    pub const BROADCAST: RouteFlags = RouteFlags(0x400000);
    pub const CONNECTED: RouteFlags = RouteFlags(0x800000);

    pub const fn empty() -> Self {
        RouteFlags(0)
    }
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// All bits of `other` are set.
    pub const fn contains(self, other: RouteFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Any bit of `other` is set.
    pub const fn intersects(self, other: RouteFlags) -> bool {
        self.0 & other.0 != 0
    }
    pub fn insert(&mut self, other: RouteFlags) {
        self.0 |= other.0
    }
    pub fn remove(&mut self, other: RouteFlags) {
        self.0 &= !other.0
    }
}

impl BitOr for RouteFlags {
    type Output = RouteFlags;
    fn bitor(self, o: RouteFlags) -> RouteFlags {
        RouteFlags(self.0 | o.0)
    }
}

impl BitOrAssign for RouteFlags {
    fn bitor_assign(&mut self, o: RouteFlags) {
        self.0 |= o.0
    }
}

impl BitAnd for RouteFlags {
    type Output = RouteFlags;
    fn bitand(self, o: RouteFlags) -> RouteFlags {
        RouteFlags(self.0 & o.0)
    }
}

impl Not for RouteFlags {
    type Output = RouteFlags;
    fn not(self) -> RouteFlags {
        RouteFlags(!self.0)
    }
}

/// Letters in the order of OpenBSD netstat's table.
const FLAG_LETTERS: &[(RouteFlags, char)] = &[
    (RouteFlags::UP, 'U'),
    (RouteFlags::GATEWAY, 'G'),
    (RouteFlags::HOST, 'H'),
    (RouteFlags::REJECT, 'R'),
    (RouteFlags::CLONING, 'C'),
    (RouteFlags::LLINFO, 'L'),
    (RouteFlags::STATIC, 'S'),
    (RouteFlags::BLACKHOLE, 'B'),
    (RouteFlags::CLONED, 'c'),
    (RouteFlags::LOCAL, 'l'),
    (RouteFlags::BROADCAST, 'b'),
    (RouteFlags::CONNECTED, 'n'),
];

impl fmt::Display for RouteFlags {
    /// netstat's letters: a connected route is `UCn`, a local one `UHLl`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: String = FLAG_LETTERS.iter().filter(|(b, _)| self.contains(*b)).map(|(_, c)| *c).collect();
        f.pad(&s)
    }
}

impl fmt::Debug for RouteFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RouteFlags({:#x} {})", self.0, self)
    }
}

/// Route priorities as OpenBSD assigns them (lower wins in OpenBSD's
/// multipath; here one route per prefix, the priority is informational).
pub mod prio {
    pub const LOCAL: u8 = 1;
    pub const CONNECTED: u8 = 4;
    pub const STATIC: u8 = 8;
}

/// One route. Tables hand out `Arc<Route>`; a route is never changed in
/// place (a change replaces it).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Route {
    pub dest: Ipv4Addr,
    pub prefix_len: u8,
    /// Next hop; `None` for directly reachable destinations. The table keeps
    /// `RouteFlags::GATEWAY` set exactly when this is `Some`.
    pub gateway: Option<Ipv4Addr>,
    pub ifp: WeakIf,
    /// Source address to use.
    pub ifa: Option<Ipv4Addr>,
    pub flags: RouteFlags,
    /// 0 = the interface's.
    pub mtu: u32,
    pub priority: u8,
}

impl Route {
    /// A static route via `gateway`; `add` finds the interface (and source
    /// address) from the connected route that reaches the gateway.
    pub fn via(dest: Ipv4Addr, prefix_len: u8, gateway: Ipv4Addr) -> Route {
        Route {
            dest,
            prefix_len,
            gateway: Some(gateway),
            ifp: WeakIf::default(),
            ifa: None,
            flags: RouteFlags::UP | RouteFlags::GATEWAY | RouteFlags::STATIC,
            mtu: 0,
            priority: prio::STATIC,
        }
    }

    /// The connected route of an interface address (`UCn`).
    pub fn connected(ifp: WeakIf, a: IfAddr) -> Route {
        Route {
            dest: a.network(),
            prefix_len: a.prefix_len,
            gateway: None,
            ifp,
            ifa: Some(a.addr),
            flags: RouteFlags::UP | RouteFlags::CLONING | RouteFlags::CONNECTED,
            mtu: 0,
            priority: prio::CONNECTED,
        }
    }

    /// The local host route of an interface address (`UHLl`), attached to
    /// the interface that owns the address.
    pub fn local(ifp: WeakIf, addr: Ipv4Addr) -> Route {
        Route {
            dest: addr,
            prefix_len: 32,
            gateway: None,
            ifp,
            ifa: Some(addr),
            flags: RouteFlags::UP | RouteFlags::HOST | RouteFlags::LLINFO | RouteFlags::LOCAL,
            mtu: 0,
            priority: prio::LOCAL,
        }
    }

    /// The directed-broadcast host route of an interface address (`UHb`).
    pub fn broadcast(ifp: WeakIf, a: IfAddr) -> Option<Route> {
        Some(Route {
            dest: a.broadcast()?,
            prefix_len: 32,
            gateway: None,
            ifp,
            ifa: Some(a.addr),
            flags: RouteFlags::UP | RouteFlags::HOST | RouteFlags::BROADCAST,
            mtu: 0,
            priority: prio::LOCAL,
        })
    }

    fn key(&self) -> Key {
        (u32::from(self.dest), self.prefix_len)
    }

    /// Whether `ip` falls in this route's prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = prefix_mask(self.prefix_len);
        u32::from(ip) & m == u32::from(self.dest) & m
    }
}

/// Errors of route changes, worded as route(8) reports them.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum RouteError {
    /// EEXIST.
    #[error("route already exists")]
    Exists,
    /// ESRCH.
    #[error("not in table")]
    NotInTable,
    /// ENETUNREACH: no directly connected route reaches the gateway.
    #[error("network unreachable")]
    NetworkUnreachable,
    /// EINVAL.
    #[error("bad prefix length /{0} (0-32)")]
    BadPrefix(u8),
}

impl RouteError {
    /// The errno a BSD routing socket would report.
    pub fn errno(&self) -> i32 {
        match self {
            RouteError::Exists => 17,
            RouteError::NotInTable => 3,
            RouteError::NetworkUnreachable => 51,
            RouteError::BadPrefix(_) => 22,
        }
    }
    /// strerror of `errno()`, as route(8) prints after the route.
    pub fn strerror(&self) -> &'static str {
        match self {
            RouteError::Exists => "File exists",
            RouteError::NotInTable => "No such process",
            RouteError::NetworkUnreachable => "Network is unreachable",
            RouteError::BadPrefix(_) => "Invalid argument",
        }
    }
}

/// A published, immutable view of one routing table.
pub struct RouteSnapshot {
    root: Arc<Node>,
    len: usize,
    version: u64,
}

impl RouteSnapshot {
    /// Longest-prefix match: no lock, no allocation, at most four nodes.
    /// Use the route by reference within the batch; a worker that clones
    /// the `Arc` may end up freeing a deleted route itself.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&Arc<Route>> {
        trie::lookup(&self.root, u32::from(dst))
    }
    /// Number of routes.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Publish count of the table; grows with every publish.
    pub fn version(&self) -> u64 {
        self.version
    }
    /// Trie nodes (a measure of memory use).
    pub fn node_count(&self) -> usize {
        self.root.node_count()
    }
}

/// Where a table's snapshot is published.
struct PublishedTable {
    snap: ArcSwap<RouteSnapshot>,
}

type Directory = Vec<Option<Arc<PublishedTable>>>;

/// The control thread's state of one table.
struct TableState {
    map: BTreeMap<Key, Held>,
    /// The working trie: shared with the published snapshot until changed.
    root: Arc<Node>,
    published: Arc<PublishedTable>,
    dirty: bool,
    version: u64,
}

/// Something a reader may still hold; freed here once it does not.
enum Retired {
    Snapshot(#[allow(dead_code)] Arc<RouteSnapshot>),
    Directory(#[allow(dead_code)] Arc<Directory>),
}

impl Retired {
    fn in_use(&self) -> bool {
        match self {
            Retired::Snapshot(a) => Arc::strong_count(a) > 1,
            Retired::Directory(a) => Arc::strong_count(a) > 1,
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
        self.retired.retain(|r| r.in_use());
        self.retired.len()
    }
}

/// All routing tables of the stack. Table 0 always exists; others are
/// created by their first change.
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

    /// The current snapshot of a table, for a worker to load once per batch
    /// and drop at its end. `None` if the table does not exist.
    #[inline]
    pub fn snapshot(&self, rtable: u16) -> Option<arc_swap::Guard<Arc<RouteSnapshot>>> {
        let dir = self.directory.load();
        let t = dir.get(rtable as usize)?.as_ref()?;
        Some(t.snap.load())
    }

    /// Ids of existing tables, ascending.
    pub fn table_ids(&self) -> Vec<u16> {
        self.control.lock().tables.keys().copied().collect()
    }

    /// Adds a route; `RouteError::Exists` if the table has one for the same
    /// destination and prefix length.
    pub fn add(&self, rtable: u16, r: Route) -> Result<Arc<Route>, RouteError> {
        self.batch(rtable, |b| b.add(r))
    }

    /// Deletes the route for `dest/prefix_len`; with a gateway, only if the
    /// route goes there.
    pub fn delete(
        &self,
        rtable: u16,
        dest: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Arc<Route>, RouteError> {
        self.batch(rtable, |b| b.delete(dest, prefix_len, gateway))
    }

    /// Replaces the route for `r`'s destination and prefix length.
    pub fn change(&self, rtable: u16, r: Route) -> Result<Arc<Route>, RouteError> {
        self.batch(rtable, |b| b.change(r))
    }

    /// The route for exactly `dest/prefix_len`.
    pub fn get(&self, rtable: u16, dest: Ipv4Addr, prefix_len: u8) -> Option<Arc<Route>> {
        if prefix_len > 32 {
            return None;
        }
        let ctl = self.lock();
        let key = (u32::from(dest) & prefix_mask(prefix_len), prefix_len);
        ctl.tables.get(&rtable)?.map.get(&key).map(|h| (**h).clone())
    }

    /// Longest-prefix match on the published table (`route get`).
    pub fn lookup(&self, rtable: u16, dst: Ipv4Addr) -> Option<Arc<Route>> {
        self.snapshot(rtable)?.lookup(dst).cloned()
    }

    /// All routes of a table in `netstat -rn` order: by destination, then
    /// shorter prefix first.
    pub fn routes(&self, rtable: u16) -> Vec<Arc<Route>> {
        let ctl = self.lock();
        ctl.tables.get(&rtable).map(|t| t.map.values().map(|h| (**h).clone()).collect()).unwrap_or_default()
    }

    /// Removes every route, in every table, that uses interface `ifp`, each
    /// with its own route message. Returns how many.
    pub fn delete_for_interface(&self, ifp: WeakIf) -> usize {
        let ids = self.table_ids();
        let mut n = 0;
        for id in ids {
            n += self.batch(id, |b| {
                let keys: Vec<Key> = b.st.map.iter().filter(|(_, h)| h.ifp == ifp).map(|(k, _)| *k).collect();
                for (dest, len) in &keys {
                    let r = b.delete(Ipv4Addr::from(*dest), *len, None);
                    debug_assert!(r.is_ok());
                }
                keys.len()
            });
        }
        n
    }

    /// Runs several changes of one table (creating it if needed) and
    /// publishes once at the end. Each change still emits its own message,
    /// in order; a failed change changes nothing, the others stand.
    pub fn batch<R>(&self, rtable: u16, f: impl FnOnce(&mut RouteBatch<'_>) -> R) -> R {
        let mut guard = self.lock();
        let ctl = &mut *guard;
        if !ctl.tables.contains_key(&rtable) {
            let published = Arc::new(PublishedTable {
                snap: ArcSwap::from_pointee(RouteSnapshot { root: Arc::new(Node::default()), len: 0, version: 0 }),
            });
            let mut dir: Directory = (**self.directory.load()).clone();
            if dir.len() <= rtable as usize {
                dir.resize(rtable as usize + 1, None);
            }
            dir[rtable as usize] = Some(published.clone());
            let old = self.directory.swap(Arc::new(dir));
            ctl.retired.push(Retired::Directory(old));
            let root = published.snap.load().root.clone();
            ctl.tables.insert(rtable, TableState { map: BTreeMap::new(), root, published, dirty: false, version: 0 });
        }
        let st = ctl.tables.get_mut(&rtable).expect("table just ensured");
        let mut b = RouteBatch { rtable, st, monitor: &self.monitor, ifname: ctl.ifname.as_deref() };
        let out = f(&mut b);
        if st_publish(b.st, &mut ctl.retired) {
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

/// Publishes the working trie if it changed; returns whether it did.
fn st_publish(st: &mut TableState, retired: &mut Vec<Retired>) -> bool {
    if !st.dirty {
        return false;
    }
    st.dirty = false;
    st.version += 1;
    let snap = Arc::new(RouteSnapshot { root: st.root.clone(), len: st.map.len(), version: st.version });
    let old = st.published.snap.swap(snap);
    retired.push(Retired::Snapshot(old));
    true
}

/// Changes to one table, published together when the batch ends.
pub struct RouteBatch<'a> {
    rtable: u16,
    st: &'a mut TableState,
    monitor: &'a RouteMonitor,
    ifname: Option<&'a IfNameFn>,
}

fn check_len(len: u8) -> Result<(), RouteError> {
    if len > 32 {
        Err(RouteError::BadPrefix(len))
    } else {
        Ok(())
    }
}

impl RouteBatch<'_> {
    pub fn rtable(&self) -> u16 {
        self.rtable
    }

    pub fn add(&mut self, r: Route) -> Result<Arc<Route>, RouteError> {
        let r = self.normalize(r)?;
        if self.st.map.contains_key(&r.key()) {
            return Err(RouteError::Exists);
        }
        Ok(self.install(RtmType::Add, r))
    }

    pub fn change(&mut self, r: Route) -> Result<Arc<Route>, RouteError> {
        check_len(r.prefix_len)?;
        let key = (u32::from(r.dest) & prefix_mask(r.prefix_len), r.prefix_len);
        if !self.st.map.contains_key(&key) {
            return Err(RouteError::NotInTable);
        }
        let r = self.normalize(r)?;
        Ok(self.install(RtmType::Change, r))
    }

    pub fn delete(
        &mut self,
        dest: Ipv4Addr,
        prefix_len: u8,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Arc<Route>, RouteError> {
        check_len(prefix_len)?;
        let key = (u32::from(dest) & prefix_mask(prefix_len), prefix_len);
        let held = self.st.map.get(&key).ok_or(RouteError::NotInTable)?;
        if let Some(g) = gateway {
            // A directly connected route's "gateway" is its own address.
            if held.gateway != Some(g) && (held.gateway.is_some() || held.ifa != Some(g)) {
                return Err(RouteError::NotInTable);
            }
        }
        let held = self.st.map.remove(&key).expect("present");
        trie::remove(&mut self.st.root, &self.st.map, key.0, key.1, &held);
        self.st.dirty = true;
        let route: Arc<Route> = (*held).clone();
        self.announce(RtmType::Delete, &route);
        Ok(route)
    }

    /// The route for exactly `dest/prefix_len`, changes of this batch included.
    pub fn get(&self, dest: Ipv4Addr, prefix_len: u8) -> Option<Arc<Route>> {
        let key = (u32::from(dest) & prefix_mask(prefix_len.min(32)), prefix_len);
        self.st.map.get(&key).map(|h| (**h).clone())
    }

    /// Longest-prefix match, changes of this batch included.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<Arc<Route>> {
        trie::lookup(&self.st.root, u32::from(dst)).cloned()
    }

    /// Checks the prefix, clears host bits, sets `UP`, makes `GATEWAY`
    /// agree with the gateway, and finds the interface of a gateway route
    /// given without one.
    fn normalize(&self, mut r: Route) -> Result<Route, RouteError> {
        check_len(r.prefix_len)?;
        r.dest = Ipv4Addr::from(u32::from(r.dest) & prefix_mask(r.prefix_len));
        r.flags.insert(RouteFlags::UP);
        r.flags.remove(RouteFlags::DONE);
        if r.gateway.is_some() {
            r.flags.insert(RouteFlags::GATEWAY);
        } else {
            r.flags.remove(RouteFlags::GATEWAY);
        }
        let discard = r.flags.intersects(RouteFlags::REJECT | RouteFlags::BLACKHOLE);
        if let (Some(gw), true, false) = (r.gateway, r.ifp.index == IfIndex::NONE, discard) {
            // As BSD: the gateway must be on a directly connected network.
            let via = trie::lookup(&self.st.root, u32::from(gw)).ok_or(RouteError::NetworkUnreachable)?;
            if via.flags.contains(RouteFlags::GATEWAY) {
                return Err(RouteError::NetworkUnreachable);
            }
            r.ifp = via.ifp;
            r.ifa = r.ifa.or(via.ifa);
        }
        Ok(r)
    }

    /// Puts a normalized route in (replacing one with the same key).
    fn install(&mut self, kind: RtmType, r: Route) -> Arc<Route> {
        let key = r.key();
        let route = Arc::new(r);
        let held: Held = Arc::new(route.clone());
        trie::insert(&mut self.st.root, key.0, key.1, &held);
        self.st.map.insert(key, held);
        self.st.dirty = true;
        self.announce(kind, &route);
        route
    }

    fn announce(&self, kind: RtmType, r: &Route) {
        let body = RtmBody::Route(RtmRoute {
            dest: r.dest,
            prefix_len: r.prefix_len,
            gateway: r.gateway,
            flags: r.flags | RouteFlags::DONE,
            ifindex: r.ifp.index,
            ifname: self.ifname.and_then(|f| f(r.ifp)),
            ifa: r.ifa,
            mtu: r.mtu,
            priority: r.priority,
        });
        self.monitor.emit(kind, self.rtable, body);
    }
}

#[cfg(test)]
mod tests;
