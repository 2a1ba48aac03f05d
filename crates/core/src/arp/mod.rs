//! ARP (RFC 826) for the stack, with OpenBSD's semantics (sys/netinet/
//! if_ether.c: `arpresolve`, `in_arpinput`, `arpcache`, `arptimer`) and
//! RFC 5227's address defence.
//!
//! # The table
//!
//! One table for all interfaces, keyed by IPv4 address (as OpenBSD keys its
//! ARP entries by host route in one routing domain); each entry records the
//! interface it belongs to. The table is split into shards, each a
//! `parking_lot::Mutex<HashMap>`, chosen by a hash of the address, so that
//! workers resolving different neighbours rarely meet on one lock. A shard
//! lock is held only for the lookup or update of one entry, never across a
//! call out of this module.
//!
//! Entry kinds ([`ArpEntryKind`]): *incomplete* (a request is out, packets
//! wait in the entry's hold queue), *dynamic* (learned, expires after
//! `keep`; `arp -s … temp` entries are dynamic too), *static* (`arp -s`:
//! never expires, but a reply from the same interface may overwrite it, and
//! it then becomes dynamic, as in OpenBSD), *permanent* (`arp -s …
//! permanent`: never overwritten) and *local* (the router's own addresses,
//! flag `l`). Any resolved entry may be *published* (proxy ARP, flag `p`).
//!
//! # The data path
//!
//! [`ArpTable::resolve`] is called for every packet sent to an Ethernet
//! next hop. Its fast path is a per-worker [`ArpWorkerCache`]: a small
//! direct-mapped array of (interface, address) → MAC slots, each valid until
//! a deadline (the entry's expiry, or the moment a refresh request is due).
//! The table keeps a *generation* counter, bumped (under the shard lock)
//! whenever a resolved mapping is removed or changes its MAC; the worker
//! loads it once per `resolve` (one read of a read-mostly cache line) and
//! empties its cache when it moved. A hit costs that load, a hash and a
//! compare, takes no lock and allocates nothing. A miss takes the shard
//! lock, and on a resolved entry fills the slot.
//!
//! Unresolved next hops follow `arpresolve`: the packet is held (at most
//! `hold_per_entry` per entry, the oldest pushed out, and `hold_total` in
//! all, above which the entry's queue is purged and the packet dropped), a
//! request goes out at most once per `resend_interval` while traffic keeps
//! arriving, and after `max_tries` unanswered requests the held packets are
//! dropped and the entry is *rejected* for `down`: packets to it come back
//! as [`ArpResolve::Rejected`] and the caller sends ICMP host unreachable.
//!
//! Packets given up in bulk (a purged hold queue) cannot fit in one return
//! value; they go to the worker cache's *dropped* list and the worker hands
//! them back to its pool with [`ArpWorkerCache::drain_dropped`]. Likewise a
//! refresh request (sent shortly before a dynamic entry expires, as OpenBSD
//! does) is queued in [`ArpWorkerCache::drain_requests`]. Both lists are
//! allocated once with the cache and are bounded: when a worker does not
//! drain them, dropped buffers are freed and refreshes are skipped.
//!
//! # Input
//!
//! [`ArpTable::input`] follows OpenBSD's `in_arpinput`: it learns the
//! sender when the router is the target (or updates an entry that exists),
//! refuses to overwrite permanent and local entries or entries on another
//! interface (logging OpenBSD's messages), defends its own addresses, and
//! answers requests for its addresses on the receiving interface and for
//! addresses published on that interface. A reply that resolves an
//! incomplete entry hands the held frames back in [`ArpInput::flushed`].

use crate::iface::{IfIndex, IfSnapshot, Interface};
use crate::neighcache::NeighCache;
use crate::packet::PacketBuf;
use crate::time::Instant;
use crossbeam::utils::CachePadded;
use parking_lot::Mutex;
use softnet_wire::arp::{ArpOperation, ArpRepr};
use softnet_wire::ethernet::MacAddr;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

mod query;
mod show;
mod stats;
#[cfg(test)]
mod tests;

pub use query::ArpQuery;
pub use show::format_arp_an;
pub(crate) use show::sec2str;
pub use stats::{format_arp_stats, ArpStats, ArpStatsTotal};

/// Tunables, with OpenBSD's values as defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArpConfig {
    /// Packets held per incomplete entry (LA_HOLD_QUEUE).
    pub hold_per_entry: usize,
    /// Packets held over all entries (LA_HOLD_TOTAL).
    pub hold_total: usize,
    /// Requests sent for one resolution before giving up (arp_maxtries).
    pub max_tries: u32,
    /// Least time between two requests for one entry.
    pub resend_interval: Duration,
    /// How long an entry stays rejected after giving up (arpt_down).
    pub down: Duration,
    /// Lifetime of a learned entry (arpt_keep).
    pub keep: Duration,
    /// A request is re-sent this long before a used dynamic entry expires
    /// (OpenBSD: arpt_keep / 8).
    pub refresh_before: Duration,
    /// Lock shards of the table.
    pub shards: usize,
}

impl Default for ArpConfig {
    fn default() -> Self {
        ArpConfig {
            hold_per_entry: 10,
            hold_total: 100,
            max_tries: 5,
            resend_interval: Duration::from_secs(1),
            down: Duration::from_secs(20),
            keep: Duration::from_secs(20 * 60),
            refresh_before: Duration::from_secs(20 * 60 / 8),
            shards: 16,
        }
    }
}

/// What kind of entry an address has (as `arp -an` tells them apart).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ArpEntryKind {
    /// A request is out; no MAC yet.
    Incomplete,
    /// Learned from the wire (or `arp -s … temp`): expires.
    Dynamic,
    /// `arp -s`: does not expire; a reply on its interface may overwrite it.
    Static,
    /// `arp -s … permanent`: never overwritten by the wire.
    Permanent,
    /// One of the router's own addresses (permanent, flag `l`).
    Local,
}

/// The lifetime `arp -s` asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum ArpStaticKind {
    /// `temp`: expires like a learned entry.
    Temp,
    /// The default: no expiry.
    #[default]
    Static,
    /// `permanent`: no expiry, and the wire cannot change it.
    Permanent,
}

/// One entry as the control plane sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArpEntry {
    pub ip: Ipv4Addr,
    pub ifindex: IfIndex,
    /// `None` while incomplete.
    pub mac: Option<MacAddr>,
    pub kind: ArpEntryKind,
    pub published: bool,
    /// When a dynamic entry expires.
    pub expire: Option<Instant>,
    /// Until when an incomplete entry is rejected (after giving up).
    pub rejected_until: Option<Instant>,
    /// Packets waiting in the hold queue.
    pub held: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArpError {
    /// No interface has a network containing the address.
    #[error("arp: {0}: no route to host")]
    NoRoute(Ipv4Addr),
    /// The address is not one a neighbour can have (unspecified, broadcast,
    /// multicast, or a network's own network or broadcast address).
    #[error("cannot intuit interface index and type for {0}")]
    CannotIntuit(Ipv4Addr),
    /// The address is one of the router's own.
    #[error("arp: {0}: is a local address of this router")]
    LocalAddress(Ipv4Addr),
    /// `arp -d` of an address without an entry.
    #[error("arp: delete: cannot locate {0}")]
    NotFound(Ipv4Addr),
}

/// An ARP request the caller must broadcast now on interface `ifindex`.
/// Dereferences to the message itself (sender = the interface's address on
/// the next hop's network, target = the next hop).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ArpRequest {
    pub ifindex: IfIndex,
    pub repr: ArpRepr,
}

impl Deref for ArpRequest {
    type Target = ArpRepr;
    fn deref(&self) -> &ArpRepr {
        &self.repr
    }
}

/// What became of a frame handed to [`ArpTable::resolve`].
#[derive(Debug)]
pub enum ArpResolve {
    /// Send it: write this destination MAC.
    Resolved(MacAddr, PacketBuf),
    /// The frame waits for a reply. `request`: broadcast it now.
    /// `dropped`: a frame pushed out of a full hold queue (or this one, when
    /// all hold queues together are full); the caller counts it as an output
    /// drop (already counted in `ArpStats`) and frees it.
    Held { request: Option<ArpRequest>, dropped: Option<PacketBuf> },
    /// The neighbour does not answer (rejected entry): the caller sends ICMP
    /// host unreachable for it (when forwarded) and frees it.
    Rejected(PacketBuf),
    /// Cannot be resolved on this interface (it has no IPv4 address, or the
    /// address has a static entry on another interface): free it.
    Dropped(PacketBuf),
}

/// What [`ArpTable::input`] wants sent. Reused by a worker: allocated once.
#[derive(Debug, Default)]
pub struct ArpInput {
    /// A reply to send, unicast to `reply.target_hw`, on the receiving
    /// interface.
    pub reply: Option<ArpRepr>,
    /// Held frames released by the message: (interface, destination MAC,
    /// frame), in the order they were held.
    pub flushed: Vec<(IfIndex, MacAddr, PacketBuf)>,
}

impl ArpInput {
    pub fn new() -> Self {
        ArpInput { reply: None, flushed: Vec::with_capacity(ArpConfig::default().hold_per_entry) }
    }

    /// Forgets the previous message's results (frames left in `flushed`
    /// are freed).
    pub fn clear(&mut self) {
        self.reply = None;
        self.flushed.clear();
    }
}

/// Bound of the cache's refresh-request list.
const CACHE_REQUESTS_MAX: usize = 16;

/// A worker's private cache of resolved next hops (see the module docs
/// and `neighcache`), with the refresh requests it collects.
#[derive(Default)]
pub struct ArpWorkerCache {
    slots: NeighCache<Ipv4Addr>,
    requests: Vec<ArpRequest>,
}

impl ArpWorkerCache {
    pub fn new() -> Self {
        ArpWorkerCache { slots: NeighCache::new(), requests: Vec::with_capacity(CACHE_REQUESTS_MAX) }
    }

    /// Frames ARP gave up on in bulk (a purged hold queue), already counted
    /// in `ArpStats`: the worker returns them to its pool.
    pub fn drain_dropped(&mut self) -> std::vec::Drain<'_, PacketBuf> {
        self.slots.drain_dropped()
    }

    /// Refresh requests for dynamic entries about to expire that are still
    /// in use: the worker broadcasts them (OpenBSD's refresh in arpresolve).
    pub fn drain_requests(&mut self) -> std::vec::Drain<'_, ArpRequest> {
        self.requests.drain(..)
    }
}

const NEVER: Instant = Instant::from_nanos(u64::MAX);

struct Entry {
    ifindex: IfIndex,
    /// Meaningless while `kind` is `Incomplete`.
    mac: MacAddr,
    kind: ArpEntryKind,
    published: bool,
    /// Expiry of a dynamic entry; `None` for the others.
    expire: Option<Instant>,
    /// Requests sent in the current round (la_asked).
    asked: u32,
    /// When the last request went out.
    last_asked: Instant,
    /// A refresh request was sent for the current lifetime.
    refreshed: bool,
    reject_until: Option<Instant>,
    hold: VecDeque<PacketBuf>,
}

impl Entry {
    fn new(ifindex: IfIndex, kind: ArpEntryKind, mac: MacAddr) -> Self {
        Entry {
            ifindex,
            mac,
            kind,
            published: false,
            expire: None,
            asked: 0,
            last_asked: Instant::ZERO,
            refreshed: false,
            reject_until: None,
            hold: VecDeque::new(),
        }
    }

    fn is_resolved(&self) -> bool {
        self.kind != ArpEntryKind::Incomplete
    }

    fn info(&self, ip: Ipv4Addr) -> ArpEntry {
        ArpEntry {
            ip,
            ifindex: self.ifindex,
            mac: self.is_resolved().then_some(self.mac),
            kind: self.kind,
            published: self.published,
            expire: self.expire,
            rejected_until: self.reject_until,
            held: self.hold.len(),
        }
    }
}

type Shard = HashMap<Ipv4Addr, Entry>;

/// The ARP table of all interfaces (see the module docs).
pub struct ArpTable {
    config: ArpConfig,
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    /// Bumped whenever a resolved mapping goes away or changes.
    generation: CachePadded<AtomicU64>,
    /// Packets held over all entries.
    hold_total: CachePadded<AtomicUsize>,
    /// Held packets of entries deleted (`arp -d`, `-da`, an interface
    /// destroyed), waiting for `expire` to hand them back with its own so
    /// that the stack returns them to the pools (dropping them here lost a
    /// pool's buffer for good: found by test_churn.py's netstat -m).
    released: Mutex<Vec<PacketBuf>>,
}

impl ArpTable {
    pub fn new(config: ArpConfig) -> Self {
        let n = config.shards.max(1);
        ArpTable {
            shards: (0..n).map(|_| CachePadded::new(Mutex::new(HashMap::new()))).collect(),
            config,
            generation: CachePadded::new(AtomicU64::new(1)),
            hold_total: CachePadded::new(AtomicUsize::new(0)),
            released: Mutex::new(Vec::new()),
        }
    }

    pub fn config(&self) -> &ArpConfig {
        &self.config
    }

    #[inline]
    fn shard(&self, ip: Ipv4Addr) -> &Mutex<Shard> {
        let h = u32::from(ip).wrapping_mul(0x9E37_79B1) >> 16;
        &self.shards[h as usize % self.shards.len()]
    }

    /// Called with the shard lock held, so a worker that read the old
    /// mapping under the lock has also loaded the old generation.
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Packets currently held over all entries.
    pub fn held_total(&self) -> usize {
        self.hold_total.load(Ordering::Relaxed)
    }

    fn unhold(&self, n: usize) {
        if n > 0 {
            self.hold_total.fetch_sub(n, Ordering::Relaxed);
        }
    }

    fn request_for(&self, ifp: &Interface, target: Ipv4Addr) -> Option<ArpRequest> {
        let sender_ip = ifp.source_for(target)?;
        Some(ArpRequest {
            ifindex: ifp.index(),
            repr: ArpRepr {
                operation: ArpOperation::Request,
                sender_hw: ifp.mac(),
                sender_ip,
                target_hw: MacAddr::ZERO,
                target_ip: target,
            },
        })
    }

    // ---- data path ------------------------------------------------------

    /// arpresolve: the destination MAC for `frame` (a complete Ethernet
    /// frame) sent on `ifp` to `next_hop`. Never allocates once the entry
    /// exists; a resolved entry in `cache` costs no lock.
    #[inline]
    pub fn resolve(
        &self,
        now: Instant,
        ifp: &Interface,
        next_hop: Ipv4Addr,
        frame: PacketBuf,
        cache: &mut ArpWorkerCache,
        stats: &ArpStats,
    ) -> ArpResolve {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(mac) = cache.slots.lookup(generation, now, ifp.index(), next_hop) {
            return ArpResolve::Resolved(mac, frame);
        }
        self.resolve_slow(now, ifp, next_hop, frame, cache, stats)
    }

    fn resolve_slow(
        &self,
        now: Instant,
        ifp: &Interface,
        next_hop: Ipv4Addr,
        frame: PacketBuf,
        cache: &mut ArpWorkerCache,
        stats: &ArpStats,
    ) -> ArpResolve {
        let cfg = &self.config;
        let ifindex = ifp.index();
        let mut shard = self.shard(next_hop).lock();

        // The route now says the next hop is on `ifp`; an entry elsewhere is
        // stale if learned, and wins if configured.
        if let Some(e) = shard.get(&next_hop) {
            if e.ifindex != ifindex {
                if matches!(e.kind, ArpEntryKind::Incomplete | ArpEntryKind::Dynamic) {
                    let old = shard.remove(&next_hop).expect("just found");
                    self.unhold(old.hold.len());
                    stats.dropped_no_entry.add(old.hold.len() as u64);
                    old.hold.into_iter().for_each(|p| cache.slots.push_dropped(p));
                    self.bump();
                } else {
                    stats.dropped_no_entry.inc();
                    return ArpResolve::Dropped(frame);
                }
            }
        }
        let e = match shard.entry(next_hop) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                if ifp.source_for(next_hop).is_none() {
                    stats.dropped_no_entry.inc();
                    return ArpResolve::Dropped(frame);
                }
                let mut e = Entry::new(ifindex, ArpEntryKind::Incomplete, MacAddr::ZERO);
                e.hold.reserve_exact(cfg.hold_per_entry);
                v.insert(e)
            }
        };

        if e.is_resolved() {
            let live = e.expire.is_none_or(|t| t > now);
            if live {
                let mac = e.mac;
                let mut valid_until = e.expire.unwrap_or(NEVER);
                if e.kind == ArpEntryKind::Dynamic && !e.refreshed {
                    let refresh_at = valid_until - cfg.refresh_before;
                    if now >= refresh_at {
                        if cache.requests.len() < CACHE_REQUESTS_MAX {
                            if let Some(req) = self.request_for(ifp, next_hop) {
                                e.refreshed = true;
                                e.last_asked = now;
                                cache.requests.push(req);
                            }
                        }
                    } else {
                        valid_until = refresh_at;
                    }
                }
                drop(shard);
                cache.slots.insert(ifindex, next_hop, mac, valid_until);
                return ArpResolve::Resolved(mac, frame);
            }
            // Expired but not yet reaped: resolve again.
            e.hold.reserve_exact(cfg.hold_per_entry);
            e.kind = ArpEntryKind::Incomplete;
            e.expire = None;
            e.asked = 0;
            e.refreshed = false;
            e.reject_until = None;
        }

        if let Some(until) = e.reject_until {
            if now < until {
                stats.dropped_no_entry.inc();
                return ArpResolve::Rejected(frame);
            }
            e.reject_until = None;
            e.asked = 0;
        }

        let due = e.asked == 0 || now >= e.last_asked + cfg.resend_interval;
        if due && e.asked >= cfg.max_tries {
            // Nobody answers: give up on what waits and reject for a while.
            e.reject_until = Some(now + cfg.down);
            e.asked = 0;
            e.last_asked = now;
            let n = e.hold.len();
            self.unhold(n);
            stats.dropped_no_entry.add(n as u64 + 1);
            e.hold.drain(..).for_each(|p| cache.slots.push_dropped(p));
            return ArpResolve::Rejected(frame);
        }

        let dropped = crate::hold::push(
            &self.hold_total,
            &mut e.hold,
            frame,
            cfg.hold_per_entry,
            cfg.hold_total,
            &stats.dropped_hold_full,
            |p| cache.slots.push_dropped(p),
        );

        let mut request = None;
        if due {
            e.last_asked = now;
            e.asked += 1;
            request = self.request_for(ifp, next_hop);
        }
        ArpResolve::Held { request, dropped }
    }

    // ---- input ------------------------------------------------------------

    /// in_arpinput: an ARP message received on `ifp`. Results go to `out`
    /// (cleared first).
    pub fn input(
        &self,
        now: Instant,
        ifs: &IfSnapshot,
        ifp: &Interface,
        arp: &ArpRepr,
        stats: &ArpStats,
        out: &mut ArpInput,
    ) {
        out.clear();
        stats.received.inc();
        let op = arp.operation;
        match op {
            ArpOperation::Request => stats.requests_received.inc(),
            ArpOperation::Reply => stats.replies_received.inc(),
            ArpOperation::Unknown(_) => return,
        }
        let (sha, spa, tpa) = (arp.sender_hw, arp.sender_ip, arp.target_ip);
        if sha.is_broadcast() {
            tracing::warn!("arp: ether address is broadcast for IP address {spa}!");
            return;
        }
        if sha == ifp.mac() {
            return; // our own, looped back
        }
        let target = ifp.has_addr(tpa);
        let mut itaddr = tpa;
        if spa != Ipv4Addr::UNSPECIFIED && ifp.has_addr(spa) {
            tracing::warn!("duplicate IP address {spa} sent from ethernet address {sha}");
            stats.dup_ips.inc();
            // A request for it is answered: the defence of RFC 5227 2.4.
            itaddr = spa;
        } else if spa != Ipv4Addr::UNSPECIFIED && self.cache_sender(now, ifs, ifp, sha, spa, target, out).is_err() {
            return;
        }
        if op != ArpOperation::Request {
            return;
        }
        let sender_hw = if target {
            ifp.mac()
        } else {
            // Proxy ARP: only the interface the entry is published on answers.
            match self.published_on(itaddr, ifp.index()) {
                Some(mac) => mac,
                None => return,
            }
        };
        out.reply = Some(ArpRepr {
            operation: ArpOperation::Reply,
            sender_hw,
            sender_ip: itaddr,
            target_hw: sha,
            target_ip: spa,
        });
    }

    fn published_on(&self, ip: Ipv4Addr, ifindex: IfIndex) -> Option<MacAddr> {
        let shard = self.shard(ip).lock();
        shard.get(&ip).filter(|e| e.published && e.is_resolved() && e.ifindex == ifindex).map(|e| e.mac)
    }

    /// arpcache: learn or update the sender. `Err` means the message is
    /// refused (logged) and not answered.
    #[allow(clippy::too_many_arguments)]
    fn cache_sender(
        &self,
        now: Instant,
        ifs: &IfSnapshot,
        ifp: &Interface,
        sha: MacAddr,
        spa: Ipv4Addr,
        target: bool,
        out: &mut ArpInput,
    ) -> Result<(), ()> {
        let ifname = |idx: IfIndex| ifs.get(idx).map(|i| i.name().to_string()).unwrap_or_else(|| "?".into());
        let mut shard = self.shard(spa).lock();
        let Some(e) = shard.get_mut(&spa) else {
            // RFC 826: a new entry only when we are the target.
            if !target {
                return Ok(());
            }
            if ifp.addrs().iter().any(|a| a.contains(spa) && a.broadcast() != Some(spa)) {
                let mut e = Entry::new(ifp.index(), ArpEntryKind::Dynamic, sha);
                e.expire = Some(now + self.config.keep);
                shard.insert(spa, e);
                return Ok(());
            }
            drop(shard);
            if let Some(other) =
                ifs.iter().find(|i| i.index() != ifp.index() && i.addrs().iter().any(|a| a.contains(spa)))
            {
                tracing::warn!("arp: attempt to add entry for {spa} on {} by {sha} on {}", other.name(), ifp.name());
                return Err(());
            }
            return Ok(());
        };
        if e.is_resolved() {
            if e.mac != sha {
                if matches!(e.kind, ArpEntryKind::Permanent | ArpEntryKind::Local) {
                    tracing::warn!("arp: attempt to overwrite permanent entry for {spa} by {sha} on {}", ifp.name());
                    return Err(());
                }
                if e.ifindex != ifp.index() {
                    tracing::warn!(
                        "arp: attempt to overwrite entry for {spa} on {} by {sha} on {}",
                        ifname(e.ifindex),
                        ifp.name()
                    );
                    return Err(());
                }
                tracing::info!("arp info overwritten for {spa} by {sha} on {}", ifp.name());
                e.kind = ArpEntryKind::Dynamic; // no longer static
                e.mac = sha;
                self.bump();
            }
        } else if e.ifindex != ifp.index() {
            tracing::warn!("arp: attempt to add entry for {spa} on {} by {sha} on {}", ifname(e.ifindex), ifp.name());
            return Err(());
        } else {
            e.kind = ArpEntryKind::Dynamic;
            e.mac = sha;
        }
        if e.kind == ArpEntryKind::Dynamic {
            e.expire = Some(now + self.config.keep);
        }
        e.reject_until = None;
        e.asked = 0;
        e.refreshed = false;
        let n = e.hold.len();
        let ifindex = e.ifindex;
        out.flushed.extend(e.hold.drain(..).map(|p| (ifindex, sha, p)));
        self.unhold(n);
        Ok(())
    }

    /// A gratuitous ARP request announcing `ip` on `ifp` (RFC 5227 3:
    /// sender and target are both `ip`), to broadcast.
    pub fn gratuitous(&self, ifp: &Interface, ip: Ipv4Addr) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_hw: ifp.mac(),
            sender_ip: ip,
            target_hw: MacAddr::ZERO,
            target_ip: ip,
        }
    }

    // ---- control ----------------------------------------------------------

    /// Replaces whatever `ip` had; the removed entry's held frames are
    /// freed here (control thread).
    fn put(&self, ip: Ipv4Addr, e: Entry) {
        let mut shard = self.shard(ip).lock();
        if let Some(old) = shard.insert(ip, e) {
            self.unhold(old.hold.len());
        }
        self.bump();
    }

    /// An address of the router was configured on `ifp`.
    pub fn add_local(&self, ifp: &Interface, ip: Ipv4Addr) {
        self.put(ip, Entry::new(ifp.index(), ArpEntryKind::Local, ifp.mac()));
    }

    /// An address of the router was removed from `ifp`.
    pub fn remove_local(&self, ifp: &Interface, ip: Ipv4Addr) {
        let mut shard = self.shard(ip).lock();
        if shard.get(&ip).is_some_and(|e| e.kind == ArpEntryKind::Local && e.ifindex == ifp.index()) {
            shard.remove(&ip);
            self.bump();
        }
    }

    /// `arp -s ip mac [temp|permanent] [pub]`: the interface is the one with
    /// a network containing `ip`. An existing entry is replaced (like
    /// OpenBSD's `arp -F -s`); the router's own addresses are refused.
    pub fn add_static(
        &self,
        now: Instant,
        ifs: &IfSnapshot,
        ip: Ipv4Addr,
        mac: MacAddr,
        kind: ArpStaticKind,
        publish: bool,
    ) -> Result<IfIndex, ArpError> {
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(ArpError::CannotIntuit(ip));
        }
        if ifs.owner_of(ip).is_some() {
            return Err(ArpError::LocalAddress(ip));
        }
        let ifp = ifs.iter().find(|i| i.addrs().iter().any(|a| a.contains(ip))).ok_or(ArpError::NoRoute(ip))?;
        if ifp
            .addrs()
            .iter()
            .any(|a| a.contains(ip) && a.prefix_len < 31 && (a.network() == ip || a.broadcast() == Some(ip)))
        {
            return Err(ArpError::CannotIntuit(ip));
        }
        let (k, expire) = match kind {
            ArpStaticKind::Temp => (ArpEntryKind::Dynamic, Some(now + self.config.keep)),
            ArpStaticKind::Static => (ArpEntryKind::Static, None),
            ArpStaticKind::Permanent => (ArpEntryKind::Permanent, None),
        };
        let mut e = Entry::new(ifp.index(), k, mac);
        e.expire = expire;
        e.published = publish;
        self.put(ip, e);
        Ok(ifp.index())
    }

    /// `arp -d ip`. `Ok(false)`: a local entry, which arp(8) silently spares.
    pub fn delete(&self, ip: Ipv4Addr) -> Result<bool, ArpError> {
        let mut shard = self.shard(ip).lock();
        match shard.get(&ip) {
            None => Err(ArpError::NotFound(ip)),
            Some(e) if e.kind == ArpEntryKind::Local => Ok(false),
            Some(_) => {
                let old = shard.remove(&ip).expect("just found");
                self.unhold(old.hold.len());
                self.released.lock().extend(old.hold);
                self.bump();
                Ok(true)
            }
        }
    }

    /// `arp -da`: deletes every entry but the router's own addresses
    /// (OpenBSD's arp(8) skips RTF_LOCAL entries). Returns how many went.
    pub fn delete_all(&self) -> usize {
        self.remove_where(|e| e.kind != ArpEntryKind::Local)
    }

    /// Forgets every entry of an interface being destroyed.
    pub fn remove_interface(&self, ifindex: IfIndex) -> usize {
        self.remove_where(|e| e.ifindex == ifindex)
    }

    fn remove_where(&self, f: impl Fn(&Entry) -> bool) -> usize {
        let mut n = 0;
        for s in self.shards.iter() {
            let mut shard = s.lock();
            let before = shard.len();
            shard.retain(|_, e| {
                let keep = !f(e);
                if !keep {
                    self.unhold(e.hold.len());
                    self.released.lock().extend(e.hold.drain(..));
                }
                keep
            });
            if shard.len() != before {
                n += before - shard.len();
                self.bump();
            }
        }
        n
    }

    /// arptimer, for the control thread (about once a second): removes
    /// dynamic entries past their expiry, incomplete entries no request
    /// went out for in `down`, and rejected entries whose time is up.
    /// Returns the held frames given up (counted in `stats`), and those of
    /// entries deleted since the last call.
    pub fn expire(&self, now: Instant, stats: &ArpStats) -> Vec<PacketBuf> {
        let cfg = &self.config;
        let mut dropped = Vec::new();
        for s in self.shards.iter() {
            let mut shard = s.lock();
            let mut bump = false;
            shard.retain(|_, e| {
                let gone = match e.kind {
                    ArpEntryKind::Dynamic => e.expire.is_some_and(|t| t <= now),
                    ArpEntryKind::Incomplete => match e.reject_until {
                        Some(until) => until <= now,
                        None => now >= e.last_asked + cfg.down,
                    },
                    _ => false,
                };
                if gone {
                    stats.timeouts.inc();
                    bump |= e.kind == ArpEntryKind::Dynamic;
                    self.unhold(e.hold.len());
                    stats.dropped_no_entry.add(e.hold.len() as u64);
                    dropped.extend(e.hold.drain(..));
                }
                !gone
            });
            if bump {
                self.bump();
            }
        }
        dropped.append(&mut self.released.lock());
        dropped
    }

    /// The entry of one address (`arp -n host`).
    pub fn entry(&self, ip: Ipv4Addr) -> Option<ArpEntry> {
        self.shard(ip).lock().get(&ip).map(|e| e.info(ip))
    }

    /// All entries in address order (`arp -an`).
    pub fn entries(&self) -> Vec<ArpEntry> {
        let mut v = Vec::new();
        for s in self.shards.iter() {
            v.extend(s.lock().iter().map(|(ip, e)| e.info(*ip)));
        }
        v.sort_by_key(|e| u32::from(e.ip));
        v
    }
}
