//! Interfaces: index + generation, strong references by lookup, addresses,
//! flags, per-worker counters, and the destroy protocol of DESIGN.md.
//!
//! The table is an immutable snapshot published with `arc-swap`: workers load
//! it once per batch and look interfaces up by index; the control thread
//! builds a new snapshot for every change. A lookup of a detaching or
//! destroyed interface gives nothing.

use crate::link::{LinkQueue, LinkState};
use crate::percpu::{Counter, PerWorker};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use softnet_wire::ethernet::MacAddr;
use softnet_wire::ipv6::{Ipv6AddrExt, ALL_NODES, ALL_ROUTERS};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An interface index as packets and tables carry it. 0 means "none".
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct IfIndex(pub u32);

impl IfIndex {
    pub const NONE: IfIndex = IfIndex(0);
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for IfIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A weak reference to an interface as routes and states hold it: the index
/// and the generation of the interface it meant. When that interface is
/// destroyed (and perhaps the index reused) the lookup fails cleanly.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct WeakIf {
    pub index: IfIndex,
    pub generation: u32,
}

/// An IPv4 address of an interface with its prefix length.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct IfAddr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl IfAddr {
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Self {
        IfAddr { addr, prefix_len }
    }
    pub fn mask(&self) -> u32 {
        prefix_mask(self.prefix_len)
    }
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    /// The directed broadcast address; `None` for /31 and /32 (RFC 3021).
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        if self.prefix_len >= 31 {
            None
        } else {
            Some(Ipv4Addr::from(u32::from(self.addr) | !self.mask()))
        }
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.mask()) == (u32::from(self.addr) & self.mask())
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// The DAD state of an IPv6 address (RFC 4862 §5.4): ifconfig's
/// `tentative` and `duplicated` flags (IN6_IFF_TENTATIVE,
/// IN6_IFF_DUPLICATED). Only `Preferred` addresses are used as sources or
/// accepted as destinations.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum Dad6State {
    /// Being checked (or waiting for the interface to come up).
    Tentative,
    /// Another node has it: never used (RFC 4862 §5.4.5).
    Duplicated,
    /// Checked: in use.
    Preferred,
}

/// An IPv6 address of an interface with its prefix length and DAD state.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct If6Addr {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
    pub state: Dad6State,
}

impl If6Addr {
    /// A new address: tentative until DAD has run.
    pub fn new(addr: Ipv6Addr, prefix_len: u8) -> Self {
        If6Addr { addr, prefix_len, state: Dad6State::Tentative }
    }
    /// The prefix (the address with the host bits zero).
    pub fn network(&self) -> Ipv6Addr {
        self.addr.mask(self.prefix_len)
    }
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        ip.mask(self.prefix_len) == self.network()
    }
    pub fn is_usable(&self) -> bool {
        self.state == Dad6State::Preferred
    }
    /// fe80::/10: scoped to its link (ifconfig prints it with
    /// `%IF` and `scopeid`, RFC 4007).
    pub fn is_link_local(&self) -> bool {
        self.addr.is_link_local_unicast()
    }
}

impl fmt::Display for If6Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// An interface's IPv6 configuration as one snapshot: its addresses and
/// the multicast groups they imply (in6_multi): all-nodes (ff02::1),
/// all-routers (ff02::2, the stack is a router) and the solicited-node
/// group of every address, tentative ones included (RFC 4862 §5.4.2:
/// joined before DAD's solicitation goes out). `groups` is sorted, without
/// repeats; empty while the interface has no IPv6 address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inet6 {
    pub addrs: Vec<If6Addr>,
    pub groups: Vec<Ipv6Addr>,
}

impl Inet6 {
    pub fn new(addrs: Vec<If6Addr>) -> Inet6 {
        let mut groups: Vec<Ipv6Addr> = Vec::with_capacity(addrs.len() + 2);
        if !addrs.is_empty() {
            groups.push(ALL_NODES);
            groups.push(ALL_ROUTERS);
            groups.extend(addrs.iter().map(|a| a.addr.solicited_node()));
        }
        groups.sort();
        groups.dedup();
        Inet6 { addrs, groups }
    }
    /// The address entry of `ip`, if it is one of these.
    pub fn find(&self, ip: Ipv6Addr) -> Option<&If6Addr> {
        self.addrs.iter().find(|a| a.addr == ip)
    }
    /// IN6_LOOKUP_MULTI: whether packets to `group` are for this interface.
    pub fn is_joined(&self, group: Ipv6Addr) -> bool {
        self.groups.binary_search(&group).is_ok()
    }
    /// The source for a packet to `dst` out of this interface (RFC 6724's
    /// rules that matter with one interface): usable addresses only; a
    /// link-scoped destination gets the link-local address; otherwise the
    /// address with the longest prefix containing `dst`, else a global
    /// address, else the link-local one.
    pub fn source_for(&self, dst: Ipv6Addr) -> Option<Ipv6Addr> {
        let usable = || self.addrs.iter().filter(|a| a.is_usable());
        let ll = usable().find(|a| a.is_link_local()).map(|a| a.addr);
        if dst.is_link_scoped() {
            return ll;
        }
        usable()
            .filter(|a| !a.is_link_local() && a.contains(dst))
            .max_by_key(|a| a.prefix_len)
            .or_else(|| usable().find(|a| !a.is_link_local()))
            .map(|a| a.addr)
            .or(ll)
    }
}

/// A group name as ifconfig(8) and if_addgroup accept it: shorter than
/// IFNAMSIZ, not ending in a digit (so it cannot be taken for an
/// interface), not one of the groups the stack keeps itself.
pub fn check_group_name(group: &str) -> Result<(), IfError> {
    if group.is_empty() || group.len() > 15 || group.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(IfError::BadGroup(group.to_string(), "not a group name"));
    }
    if group.ends_with(|c: char| c.is_ascii_digit()) {
        return Err(IfError::BadGroup(group.to_string(), "group names may not end in a digit"));
    }
    if group == "all" || group == "egress" {
        return Err(IfError::BadGroup(group.to_string(), "group is kept by the stack"));
    }
    Ok(())
}

/// Netmask for a prefix length (0..=32).
pub fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32) as u32)
    }
}

/// Interface flags, as ifconfig shows them.
pub mod if_flags {
    pub const UP: u32 = 1 << 0;
    pub const BROADCAST: u32 = 1 << 1;
    /// IFF_LOOPBACK: lo0 (`crate::loopback`).
    pub const LOOPBACK: u32 = 1 << 3;
    pub const RUNNING: u32 = 1 << 6;
    pub const MULTICAST: u32 = 1 << 15;
}

/// Per-interface counters (as `netstat -i` shows them), one set per worker.
#[derive(Default, Debug)]
pub struct IfStats {
    pub ipackets: Counter,
    pub ierrors: Counter,
    pub idrops: Counter,
    pub ibytes: Counter,
    pub opackets: Counter,
    pub oerrors: Counter,
    pub obytes: Counter,
}

/// Totals of `IfStats` over all workers.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfStatsTotal {
    pub ipackets: u64,
    pub ierrors: u64,
    pub idrops: u64,
    pub ibytes: u64,
    pub opackets: u64,
    pub oerrors: u64,
    pub obytes: u64,
}

/// `Interface::bcast_bits`' bit for an address.
#[inline]
fn bcast_bit(ip: Ipv4Addr) -> u64 {
    1 << (u32::from(ip).wrapping_mul(0x9e37_79b1) >> 26)
}

pub struct Interface {
    index: IfIndex,
    generation: u32,
    name: String,
    mac: MacAddr,
    mtu: AtomicU32,
    /// Segmentation offload: the longest TCP/IPv4 super-segment its links
    /// take (`LinkQueue::tso_max` of its first queue), 0 for none.
    tso_max: u32,
    flags: AtomicU32,
    detaching: AtomicBool,
    link_state: AtomicU32,
    addrs: ArcSwap<Vec<IfAddr>>,
    /// IPv6 addresses and the multicast groups they imply.
    inet6: ArcSwap<Inet6>,
    /// One bit per subnet broadcast address of `addrs` (a 64-bit Bloom
    /// filter), so the per-packet "is the next hop a broadcast?" check
    /// loads no snapshot for the addresses that cannot be one.
    bcast_bits: AtomicU64,
    queues: Box<[Mutex<Box<dyn LinkQueue>>]>,
    /// Interface groups set by `ifconfig IF group NAME` (if_addgroup), in
    /// the order added. `all` and `egress` are implied, not stored.
    groups: Mutex<Vec<String>>,
    /// The host's twin of this interface (`crate::hostif`), attached once.
    host: std::sync::OnceLock<Arc<crate::hostif::HostPort>>,
    pub stats: PerWorker<IfStats>,
    /// The owning table's count of live interfaces (decremented on drop).
    live: Arc<AtomicUsize>,
}

impl Interface {
    pub fn index(&self) -> IfIndex {
        self.index
    }
    pub fn generation(&self) -> u32 {
        self.generation
    }
    pub fn weak(&self) -> WeakIf {
        WeakIf { index: self.index, generation: self.generation }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn mac(&self) -> MacAddr {
        self.mac
    }
    pub fn mtu(&self) -> u32 {
        self.mtu.load(Ordering::Relaxed)
    }
    pub fn set_mtu(&self, mtu: u32) {
        self.mtu.store(mtu, Ordering::Relaxed)
    }
    /// The longest TCP/IPv4 super-segment (IP total length) the interface
    /// sends whole, its device cutting it (TSO); 0: none.
    pub fn tso_max(&self) -> u32 {
        self.tso_max
    }
    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }
    pub fn is_up(&self) -> bool {
        self.flags() & if_flags::UP != 0
    }
    /// IFF_LOOPBACK: the loopback interface (`crate::loopback`).
    pub fn is_loopback(&self) -> bool {
        self.flags() & if_flags::LOOPBACK != 0
    }
    /// Makes a new interface the loopback: IFF_LOOPBACK instead of
    /// IFF_BROADCAST, as if_loop.c's loop_clone_create sets them.
    pub(crate) fn mark_loopback(&self) {
        self.flags.fetch_and(!if_flags::BROADCAST, Ordering::Relaxed);
        self.flags.fetch_or(if_flags::LOOPBACK, Ordering::Relaxed);
    }
    pub fn set_up(&self, up: bool) {
        if up {
            self.flags.fetch_or(if_flags::UP | if_flags::RUNNING, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!(if_flags::UP | if_flags::RUNNING), Ordering::Relaxed);
        }
    }
    pub fn is_detaching(&self) -> bool {
        self.detaching.load(Ordering::Acquire)
    }
    pub fn link_state(&self) -> LinkState {
        match self.link_state.load(Ordering::Relaxed) {
            1 => LinkState::Up,
            2 => LinkState::Down,
            _ => LinkState::Unknown,
        }
    }
    /// Records the carrier state; returns true if it changed.
    pub fn set_link_state(&self, s: LinkState) -> bool {
        let v = match s {
            LinkState::Up => 1,
            LinkState::Down => 2,
            LinkState::Unknown => 0,
        };
        self.link_state.swap(v, Ordering::Relaxed) != v
    }
    /// The interface's IPv4 addresses (a snapshot).
    pub fn addrs(&self) -> arc_swap::Guard<Arc<Vec<IfAddr>>> {
        self.addrs.load()
    }
    /// Replaces the address list (control thread only; the stack adds the
    /// routes and route messages).
    pub fn set_addrs(&self, addrs: Vec<IfAddr>) {
        let bits = addrs.iter().filter_map(|a| a.broadcast()).fold(0, |b, a| b | bcast_bit(a));
        // Old and new bits while the list changes, so a reader with either
        // list finds its broadcast addresses.
        self.bcast_bits.fetch_or(bits, Ordering::Relaxed);
        self.addrs.store(Arc::new(addrs));
        self.bcast_bits.store(bits, Ordering::Relaxed);
    }
    /// Whether `ip` is the subnet broadcast address of one of the
    /// interface's addresses (the snapshot is loaded only when the filter
    /// says it may be).
    #[inline]
    pub fn is_subnet_broadcast(&self, ip: Ipv4Addr) -> bool {
        self.bcast_bits.load(Ordering::Relaxed) & bcast_bit(ip) != 0
            && self.addrs.load().iter().any(|a| a.broadcast() == Some(ip))
    }
    pub fn has_addr(&self, ip: Ipv4Addr) -> bool {
        self.addrs.load().iter().any(|a| a.addr == ip)
    }
    /// The first address whose subnet contains `ip`, else the first address.
    pub fn source_for(&self, ip: Ipv4Addr) -> Option<Ipv4Addr> {
        let a = self.addrs.load();
        a.iter().find(|a| a.contains(ip)).or_else(|| a.first()).map(|a| a.addr)
    }
    /// The interface's IPv6 addresses and groups (a snapshot).
    #[inline]
    pub fn inet6(&self) -> arc_swap::Guard<Arc<Inet6>> {
        self.inet6.load()
    }
    /// Replaces the IPv6 addresses (control thread only; the stack adds
    /// the routes, neighbor entries and DAD); the groups follow.
    pub fn set_addrs6(&self, addrs: Vec<If6Addr>) {
        self.inet6.store(Arc::new(Inet6::new(addrs)));
    }
    /// The DAD state of `ip` if it is one of the interface's IPv6
    /// addresses (the data path: "is this packet for me?" takes only a
    /// `Preferred` answer; NS/NA about a `Tentative` one go to DAD).
    #[inline]
    pub fn addr6_state(&self, ip: Ipv6Addr) -> Option<Dad6State> {
        self.inet6.load().find(ip).map(|a| a.state)
    }
    /// Whether the interface listens to the multicast group `group`.
    #[inline]
    pub fn is_joined6(&self, group: Ipv6Addr) -> bool {
        self.inet6.load().is_joined(group)
    }
    /// The IPv6 source for a packet to `dst` out of this interface.
    pub fn source6_for(&self, dst: Ipv6Addr) -> Option<Ipv6Addr> {
        self.inet6.load().source_for(dst)
    }
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }
    /// The groups `ifconfig IF group NAME` put this interface in.
    pub fn groups(&self) -> Vec<String> {
        self.groups.lock().clone()
    }
    /// Adds a group (if_addgroup); false if the interface is already in it.
    pub fn add_group(&self, group: &str) -> Result<bool, IfError> {
        check_group_name(group)?;
        let mut g = self.groups.lock();
        if g.iter().any(|x| x == group) {
            return Ok(false);
        }
        g.push(group.to_string());
        Ok(true)
    }
    /// Removes a group (if_delgroup); false if it was not a member.
    pub fn del_group(&self, group: &str) -> bool {
        let mut g = self.groups.lock();
        let before = g.len();
        g.retain(|x| x != group);
        g.len() != before
    }

    /// The host's twin of this interface, if it has one.
    #[inline]
    pub fn host(&self) -> Option<&Arc<crate::hostif::HostPort>> {
        self.host.get()
    }
    /// Attaches the host's twin (once; the port is handed back if the
    /// interface has one already).
    pub fn attach_host(&self, h: Arc<crate::hostif::HostPort>) -> Result<(), Arc<crate::hostif::HostPort>> {
        self.host.set(h)
    }

    /// The queue worker `w` uses.
    pub fn queue(&self, w: usize) -> &Mutex<Box<dyn LinkQueue>> {
        &self.queues[w % self.queues.len()]
    }
    /// Counters summed over workers, plus what the link lost on receive
    /// before the stack saw it (each queue is locked briefly: control
    /// thread only).
    pub fn stats_total(&self) -> IfStatsTotal {
        let lost = self.queues.iter().fold(crate::link::RxLosses::default(), |acc, q| {
            let l = q.lock().rx_losses();
            crate::link::RxLosses { errors: acc.errors + l.errors, dropped: acc.dropped + l.dropped }
        });
        IfStatsTotal {
            ipackets: self.stats.sum(|s| &s.ipackets),
            ierrors: self.stats.sum(|s| &s.ierrors) + lost.errors,
            idrops: self.stats.sum(|s| &s.idrops) + lost.dropped,
            ibytes: self.stats.sum(|s| &s.ibytes),
            opackets: self.stats.sum(|s| &s.opackets),
            oerrors: self.stats.sum(|s| &s.oerrors),
            obytes: self.stats.sum(|s| &s.obytes),
        }
    }
}

impl Drop for Interface {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl fmt::Debug for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interface").field("index", &self.index).field("name", &self.name).finish()
    }
}

/// What the control thread needs to create an interface.
pub struct InterfaceConfig {
    pub name: String,
    pub mac: MacAddr,
    pub mtu: u32,
    pub queues: Vec<Box<dyn LinkQueue>>,
}

/// The published, immutable view of all interfaces.
#[derive(Default)]
pub struct IfSnapshot {
    by_index: Vec<Option<Arc<Interface>>>,
}

impl IfSnapshot {
    /// The interface with this index, unless it is gone or detaching.
    #[inline]
    pub fn get(&self, idx: IfIndex) -> Option<&Arc<Interface>> {
        match self.by_index.get(idx.as_usize()) {
            Some(Some(ifp)) if !ifp.is_detaching() => Some(ifp),
            _ => None,
        }
    }
    /// The interface a weak reference names, if it is still that one.
    #[inline]
    pub fn get_weak(&self, w: WeakIf) -> Option<&Arc<Interface>> {
        self.get(w.index).filter(|i| i.generation == w.generation)
    }
    pub fn by_name(&self, name: &str) -> Option<&Arc<Interface>> {
        self.iter().find(|i| i.name == name)
    }
    /// Interfaces that are not detaching, in index order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Interface>> {
        self.by_index.iter().flatten().filter(|i| !i.is_detaching())
    }
    /// The interface that has `ip` as one of its IPv6 addresses (a
    /// link-local one is only unique with its interface: see
    /// `Interface::addr6_state`).
    pub fn owner_of6(&self, ip: Ipv6Addr) -> Option<&Arc<Interface>> {
        self.iter().find(|i| i.addr6_state(ip).is_some())
    }
    /// The interface that has `ip` as one of its addresses.
    pub fn owner_of(&self, ip: Ipv4Addr) -> Option<&Arc<Interface>> {
        self.iter().find(|i| i.has_addr(ip))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IfError {
    #[error("interface {0} already exists")]
    Exists(String),
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("interface {0} has no link queues")]
    NoQueues(String),
    #[error("interface name {0:?} is invalid (1-15 characters, no '/' or whitespace)")]
    BadName(String),
    #[error("{0}: {1}")]
    BadGroup(String, &'static str),
}

/// All interfaces. Readers `load()`; the control thread changes it.
pub struct InterfaceTable {
    snap: ArcSwap<IfSnapshot>,
    control: Mutex<ControlState>,
    live: Arc<AtomicUsize>,
}

#[derive(Default)]
struct ControlState {
    next_generation: u32,
}

impl Default for InterfaceTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InterfaceTable {
    pub fn new() -> Self {
        InterfaceTable {
            snap: ArcSwap::from_pointee(IfSnapshot::default()),
            control: Mutex::new(ControlState::default()),
            live: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// `Interface` objects of this table not yet freed (including ones
    /// destroyed but still referenced).
    pub fn live_count(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// The current snapshot; a worker loads it once per batch and drops it
    /// at the end of the batch.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<IfSnapshot>> {
        self.snap.load()
    }

    pub fn load_full(&self) -> Arc<IfSnapshot> {
        self.snap.load_full()
    }

    /// Creates an interface (down, no addresses) in the lowest free index.
    pub fn create(&self, cfg: InterfaceConfig) -> Result<Arc<Interface>, IfError> {
        let name = cfg.name;
        if name.is_empty() || name.len() > 15 || name.contains('/') || name.chars().any(char::is_whitespace) {
            return Err(IfError::BadName(name));
        }
        if cfg.queues.is_empty() {
            return Err(IfError::NoQueues(name));
        }
        let mut ctl = self.control.lock();
        let cur = self.snap.load_full();
        if cur.by_index.iter().flatten().any(|i| i.name == name) {
            return Err(IfError::Exists(name));
        }
        // Never 0: pf uses 0 for "bound to no interface".
        ctl.next_generation = ctl.next_generation.wrapping_add(1).max(1);
        let mut by_index = cur.by_index.clone();
        if by_index.is_empty() {
            by_index.push(None); // index 0 is "none"
        }
        let slot = by_index.iter().skip(1).position(|s| s.is_none()).map(|p| p + 1);
        let index = slot.unwrap_or(by_index.len());
        let ifp = Arc::new(Interface {
            index: IfIndex(index as u32),
            generation: ctl.next_generation,
            name,
            mac: cfg.mac,
            mtu: AtomicU32::new(cfg.mtu),
            tso_max: cfg.queues.first().map_or(0, |q| q.tso_max()),
            flags: AtomicU32::new(if_flags::BROADCAST | if_flags::MULTICAST),
            detaching: AtomicBool::new(false),
            link_state: AtomicU32::new(0),
            addrs: ArcSwap::from_pointee(Vec::new()),
            inet6: ArcSwap::from_pointee(Inet6::default()),
            bcast_bits: AtomicU64::new(0),
            queues: cfg.queues.into_iter().map(Mutex::new).collect(),
            groups: Mutex::new(Vec::new()),
            host: std::sync::OnceLock::new(),
            stats: PerWorker::new(),
            live: self.live.clone(),
        });
        self.live.fetch_add(1, Ordering::SeqCst);
        if index == by_index.len() {
            by_index.push(Some(ifp.clone()));
        } else {
            by_index[index] = Some(ifp.clone());
        }
        self.snap.store(Arc::new(IfSnapshot { by_index }));
        Ok(ifp)
    }

    /// First half of destroy: mark the interface detaching so that new
    /// lookups fail. The caller then removes its addresses and routes (with
    /// route messages) and calls `finish_destroy`.
    pub fn begin_destroy(&self, name: &str) -> Result<Arc<Interface>, IfError> {
        let _ctl = self.control.lock();
        let cur = self.snap.load();
        let ifp = cur.by_index.iter().flatten().find(|i| i.name == name && !i.is_detaching()).cloned();
        let ifp = ifp.ok_or_else(|| IfError::NoSuchInterface(name.to_string()))?;
        ifp.detaching.store(true, Ordering::Release);
        ifp.set_up(false);
        Ok(ifp)
    }

    /// Second half of destroy: unpublish the interface, then wait until the
    /// last strong reference other than `ifp` is gone, logging what it waits
    /// for, and free it here on the control thread.
    pub fn finish_destroy(&self, ifp: Arc<Interface>) {
        let old = {
            let _ctl = self.control.lock();
            let cur = self.snap.load_full();
            let mut by_index = cur.by_index.clone();
            if let Some(slot) = by_index.get_mut(ifp.index.as_usize()) {
                if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &ifp)) {
                    *slot = None;
                }
            }
            // Trailing empty slots are trimmed so indices get reused.
            while by_index.len() > 1 && by_index.last().is_some_and(|s| s.is_none()) {
                by_index.pop();
            }
            let new = Arc::new(IfSnapshot { by_index });
            drop(cur);
            self.snap.swap(new)
        };
        // Old snapshots are freed here, never on a worker: wait until no
        // worker still holds this one, then drop it.
        wait_until_sole(&old, "interface snapshot");
        drop(old);
        wait_until_sole(&ifp, ifp.name());
        drop(ifp);
    }
}

/// Waits until `a` is the only strong reference, logging every second.
pub fn wait_until_sole<T>(a: &Arc<T>, what: &str) {
    let mut spins = 0u64;
    loop {
        let n = Arc::strong_count(a);
        if n <= 1 {
            return;
        }
        spins += 1;
        if spins.is_multiple_of(1000) {
            tracing::info!("{what}: waiting for {} reference(s) to go", n - 1);
        }
        if spins < 100 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{PacketBuf, PacketPool};

    struct NullQueue;
    impl LinkQueue for NullQueue {
        fn recv(&mut self, _: &mut PacketPool, _: &mut Vec<PacketBuf>, _: usize) -> usize {
            0
        }
        fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
            let n = frames.len();
            frames.drain(..).for_each(|p| pool.free(p));
            n
        }
    }

    fn cfg(name: &str) -> InterfaceConfig {
        InterfaceConfig {
            name: name.into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            queues: vec![Box::new(NullQueue)],
        }
    }

    #[test]
    fn groups_are_added_once_removed_and_checked_as_ifconfig_does() {
        let t = InterfaceTable::new();
        let a = t.create(cfg("em0")).unwrap();
        assert!(a.add_group("lan").unwrap());
        assert!(a.add_group("dmz").unwrap());
        assert!(!a.add_group("lan").unwrap());
        assert_eq!(a.groups(), ["lan", "dmz"]);
        for bad in ["", "lan0", "all", "egress", "a b", "sixteen-chars-xx"] {
            assert!(matches!(a.add_group(bad), Err(IfError::BadGroup(..))), "{bad:?}");
        }
        assert!(a.del_group("lan"));
        assert!(!a.del_group("lan"));
        assert_eq!(a.groups(), ["dmz"]);
    }

    #[test]
    fn create_assigns_lowest_free_index_and_new_generation() {
        let t = InterfaceTable::new();
        let a = t.create(cfg("a")).unwrap();
        let b = t.create(cfg("b")).unwrap();
        assert_eq!((a.index(), b.index()), (IfIndex(1), IfIndex(2)));
        let wa = a.weak();
        drop(a);
        let a = t.begin_destroy("a").unwrap();
        t.finish_destroy(a);
        assert!(t.load().get_weak(wa).is_none());
        let c = t.create(cfg("c")).unwrap();
        assert_eq!(c.index(), IfIndex(1));
        assert_ne!(c.generation(), wa.generation);
        assert!(t.load().get_weak(wa).is_none(), "a reused index is not the old interface");
        assert_eq!(t.create(cfg("b")).unwrap_err(), IfError::Exists("b".into()));
        assert!(matches!(t.create(cfg("bad name")), Err(IfError::BadName(_))));
    }

    #[test]
    fn detaching_interface_is_not_found() {
        let t = InterfaceTable::new();
        let a = t.create(cfg("a")).unwrap();
        let idx = a.index();
        drop(a);
        let a = t.begin_destroy("a").unwrap();
        assert!(t.load().get(idx).is_none());
        assert!(t.begin_destroy("a").is_err());
        t.finish_destroy(a);
    }

    #[test]
    fn ifaddr_network_and_broadcast() {
        let a = IfAddr::new(Ipv4Addr::new(10, 0, 1, 1), 24);
        assert_eq!(a.network(), Ipv4Addr::new(10, 0, 1, 0));
        assert_eq!(a.broadcast(), Some(Ipv4Addr::new(10, 0, 1, 255)));
        assert!(a.contains(Ipv4Addr::new(10, 0, 1, 77)));
        assert!(!a.contains(Ipv4Addr::new(10, 0, 2, 1)));
        assert_eq!(IfAddr::new(Ipv4Addr::new(10, 0, 0, 0), 31).broadcast(), None);
        assert_eq!(prefix_mask(0), 0);
        assert_eq!(prefix_mask(32), u32::MAX);
    }

    #[test]
    fn subnet_broadcasts_follow_the_address_list() {
        let t = InterfaceTable::new();
        let a = t.create(cfg("a")).unwrap();
        let b1 = Ipv4Addr::new(10, 0, 1, 255);
        assert!(!a.is_subnet_broadcast(b1), "no addresses");
        a.set_addrs(vec![IfAddr::new(Ipv4Addr::new(10, 0, 1, 1), 24), IfAddr::new(Ipv4Addr::new(192, 168, 0, 1), 30)]);
        assert!(a.is_subnet_broadcast(b1));
        assert!(a.is_subnet_broadcast(Ipv4Addr::new(192, 168, 0, 3)));
        // Every other address of the subnets (and around them) is not one,
        // whatever bits it shares with the filter.
        for host in 0..=255u8 {
            let ip = Ipv4Addr::new(10, 0, 1, host);
            assert_eq!(a.is_subnet_broadcast(ip), host == 255, "{ip}");
            assert!(!a.is_subnet_broadcast(Ipv4Addr::new(10, 0, 2, host)));
        }
        a.set_addrs(vec![IfAddr::new(Ipv4Addr::new(10, 0, 2, 1), 24)]);
        assert!(!a.is_subnet_broadcast(b1), "removed with its address");
        assert!(a.is_subnet_broadcast(Ipv4Addr::new(10, 0, 2, 255)));
        a.set_addrs(vec![IfAddr::new(Ipv4Addr::new(10, 0, 3, 0), 31)]);
        assert!(!a.is_subnet_broadcast(Ipv4Addr::new(10, 0, 3, 1)), "a /31 has no broadcast address");
    }
}

#[cfg(test)]
mod inet6_tests {
    use super::*;

    fn a(s: &str, len: u8, state: Dad6State) -> If6Addr {
        If6Addr { addr: s.parse().unwrap(), prefix_len: len, state }
    }
    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn groups_are_all_nodes_all_routers_and_each_solicited_node_group_once() {
        assert!(Inet6::new(vec![]).groups.is_empty(), "no IPv6, no groups");
        let i = Inet6::new(vec![
            a("fe80::200:ff:fe00:101", 64, Dad6State::Tentative),
            a("fd00:1::200:ff:fe00:101", 64, Dad6State::Preferred),
            a("fd00:1::1", 64, Dad6State::Duplicated),
        ]);
        // The two EUI-64 addresses share one solicited-node group.
        assert_eq!(i.groups.len(), 4, "{:?}", i.groups);
        for g in ["ff02::1", "ff02::2", "ff02::1:ff00:101", "ff02::1:ff00:1"] {
            assert!(i.is_joined(ip(g)), "{g}");
        }
        for g in ["ff02::1:ff00:102", "ff05::2", "ff02::16", "fd00:1::1"] {
            assert!(!i.is_joined(ip(g)), "{g}");
        }
    }

    #[test]
    fn source_selection_uses_only_preferred_addresses_of_the_right_scope() {
        let mut i = Inet6::new(vec![
            a("fe80::1", 64, Dad6State::Preferred),
            a("fd00:1::1", 64, Dad6State::Preferred),
            a("fd00:1:0:8::1", 64, Dad6State::Preferred),
            a("2001:db8::1", 48, Dad6State::Tentative),
        ]);
        assert_eq!(i.source_for(ip("fe80::9")), Some(ip("fe80::1")));
        assert_eq!(i.source_for(ip("ff02::1:ff00:9")), Some(ip("fe80::1")));
        assert_eq!(i.source_for(ip("fd00:1:0:8::9")), Some(ip("fd00:1:0:8::1")));
        assert_eq!(i.source_for(ip("2001:db8::9")), Some(ip("fd00:1::1")), "the tentative one is not used");
        i = Inet6::new(vec![a("fe80::1", 64, Dad6State::Preferred), a("fd00::1", 64, Dad6State::Duplicated)]);
        assert_eq!(i.source_for(ip("2001:db8::9")), Some(ip("fe80::1")));
        i = Inet6::new(vec![a("fe80::1", 64, Dad6State::Tentative)]);
        assert_eq!(i.source_for(ip("fe80::9")), None);
    }

    #[test]
    fn prefixes_contain_their_addresses() {
        let x = a("fd00:1::1", 64, Dad6State::Preferred);
        assert_eq!(x.network(), ip("fd00:1::"));
        assert!(x.contains(ip("fd00:1::ffff:1")));
        assert!(!x.contains(ip("fd00:2::1")));
        assert!(a("::", 0, Dad6State::Preferred).contains(ip("2001:db8::1")));
        assert!(a("fd00::1", 128, Dad6State::Preferred).contains(ip("fd00::1")));
        assert!(!a("fd00::1", 128, Dad6State::Preferred).contains(ip("fd00::2")));
    }
}
