//! IPv6 neighbor discovery (RFC 4861) for the stack, with OpenBSD's
//! semantics (sys/netinet6/nd6.c: `nd6_resolve`, `nd6_llinfo_timer`,
//! `nd6_cache_lladdr`; nd6_nbr.c: `nd6_ns_input`, `nd6_na_input`), the
//! sibling of [`crate::arp`].
//!
//! # The table
//!
//! One neighbor cache for all interfaces, keyed by (interface, address):
//! link-local addresses are only unique on their link (OpenBSD embeds the
//! scope in the address; we key by it). The table is split into shards
//! chosen by a hash of the address, each a `parking_lot::Mutex<HashMap>`,
//! held only for the lookup or update of one entry, never across a call
//! out of this module.
//!
//! An entry is in one of nd6.c's states ([`NdState`]): NOSTATE (created by
//! a message without a link-layer address), INCOMPLETE (solicitations are
//! out, packets wait in the entry's hold queue), REACHABLE (confirmed
//! within ReachableTime), STALE (not confirmed lately; used as is), DELAY
//! (used while STALE: a probe follows after DELAY_FIRST_PROBE_TIME unless
//! something confirms it) and PROBE (unicast solicitations every
//! RETRANS_TIMER, MAX_UNICAST_SOLICIT of them, then the entry goes). Kinds
//! ([`NdEntryKind`]): dynamic, static (`ndp -s`, no timers; the wire does
//! not change it) and local (the router's own addresses, flag `l`). Any
//! resolved entry may be a proxy entry (`ndp -s … proxy`, flag `p`): the
//! router answers solicitations for it on its interface. `isrouter` (flag
//! `R`) follows the messages as nd6_cache_lladdr and nd6_na_input set it.
//!
//! # The data path
//!
//! [`Nd6Table::resolve`] is called for every packet sent to an IPv6 next
//! hop on an Ethernet interface. Its fast path is a per-worker
//! [`Nd6WorkerCache`]: a direct-mapped array of (interface, address) → MAC
//! slots, each valid until the moment the entry's state would change on
//! its own (a REACHABLE entry's ReachableTime, a DELAY or PROBE entry's
//! timer, never for static ones). The table keeps a generation, bumped
//! under the shard lock whenever a resolved mapping goes away, changes
//! its MAC or becomes STALE before its time (an advertisement); the
//! worker compares it once per call and
//! empties its cache when it moved. A hit takes no lock and allocates
//! nothing. STALE entries are never cached, so the first packet to one
//! takes the lock and starts NUD (STALE → DELAY, RFC 4861 §7.3.3).
//!
//! An unresolved next hop follows nd6_resolve: the packet is held (at most
//! `hold_per_entry` per entry, the oldest pushed out; above `hold_total`
//! in all, the entry's queue is purged and the packet dropped), and the
//! first packet sends a multicast solicitation. Further solicitations and
//! NUD probes come from [`Nd6Table::timer`] (nd6_llinfo_timer), which the
//! owner calls at least once per RETRANS_TIMER: it returns the
//! solicitations to send and the held packets of neighbors given up, for
//! which the caller sends ICMPv6 address unreachable (RFC 4861 §7.2.2).
//!
//! New entries beyond `max_entries` are refused and counted
//! (`Nd6Stats::cache_full`): a scan of a /64 cannot grow the table without
//! bound (OpenBSD purges least recently used entries at
//! ip6_neighborgcthresh instead; a refusal keeps the entries in use).
//!
//! # Input
//!
//! `nbr.rs`: [`Nd6Table::ns_input`], [`Nd6Table::na_input`] and
//! [`Nd6Table::cache_lladdr`] (RS, RA, redirect) as nd6_nbr.c and RFC 4861
//! §7.2.3–§7.2.5 and Appendix C; their results (an advertisement to send,
//! held packets released, a message about one of our tentative addresses
//! for DAD) go to an [`Nd6Input`]. DAD itself is [`dad`].
//!
//! # What the IPv6 data path calls (worker/ip6_output.rs, icmp6.rs)
//!
//! * Output (nd6_resolve): for a unicast on-link next hop,
//!   `stack.nd6.resolve(now, ifp, next_hop, ip_src, frame, &mut
//!   nd6_cache, &stats.nd6)` with a per-worker [`Nd6WorkerCache`].
//!   `Resolved(mac, f)`: write `mac` (`ether::set_dst`) and send.
//!   `Held { solicit, dropped }`: send `solicit` with
//!   `ether::build_ndp_frame(.., solicit.dst_mac(), src, solicit.dst_ip(),
//!   NdpMsg::Ns { target, slla: Some(ifp.mac()) })`, `src` being
//!   `solicit.src_hint` when `ifp.addr6_state(hint)` is `Preferred`, else
//!   `ifp.source6_for(target)`; free `dropped`. `Dropped(f)`: free.
//!   Once per batch, `nd6_cache.drain_dropped()` back to the pool.
//!   Multicast destinations need no resolution (`ipv6::multicast_mac`).
//! * Input (icmp6_input): an NDP message parsed by `Icmpv6Repr::parse`
//!   goes to [`Nd6Table::input`] (validity checks counted, then NS, NA,
//!   RS, RA, redirect). Then `out.advert`: send it with
//!   `build_ndp_frame(.., NdpMsg::Na { target, flags, tlla })` from
//!   `ifp.source6_for(advert.dst)` to `advert.dst` at `advert.dst_mac`
//!   (else resolved like any packet); `out.flushed`: set each frame's MAC
//!   and send; `out.dad`: `stack.dad_input(ifindex, addr, what)`. A frame
//!   whose Ethernet source is the interface's own MAC is not handed in
//!   (the input functions also skip messages carrying our MAC).
//! * ip6_input: a destination is ours on `ifp` when
//!   `ifp.addr6_state(dst) == Some(Dad6State::Preferred)`, or when it is
//!   a group `ifp.is_joined6(dst)`; a tentative address takes only NS and
//!   NA (RFC 4862 §5.4).
//! * Timers: `Stack::tick` runs [`Nd6Table::timer`] through
//!   `Stack::nd6_timer`, which sends the solicitations from the control
//!   thread and returns the held packets of neighbors given up; today
//!   the tick frees them (counted), the data path will send ICMPv6
//!   address unreachable for each (`Nd6Timer::unreachable`).

use crate::iface::{IfIndex, Interface};
use crate::packet::PacketBuf;
use crate::percpu::Counter;
use crate::time::Instant;
use crossbeam::utils::CachePadded;
use parking_lot::Mutex;
use softnet_wire::ethernet::MacAddr;
use softnet_wire::ipv6::{multicast_mac, Ipv6AddrExt};
use std::collections::{HashMap, VecDeque};
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

mod cache;
mod control;
pub mod dad;
mod nbr;
mod query;
pub mod rtadv;
mod show;
#[cfg(test)]
mod tests;

pub use cache::Nd6WorkerCache;
pub use nbr::{NaReply, Nd6Input, NdMsg};
pub use query::Nd6Query;
pub use show::{format_ndp_an, neighbor_name};

/// Tunables, with RFC 4861 §10's and OpenBSD's values as defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nd6Config {
    /// Packets held per incomplete entry (LN_HOLD_QUEUE).
    pub hold_per_entry: usize,
    /// Packets held over all entries (LN_HOLD_TOTAL).
    pub hold_total: usize,
    /// MAX_MULTICAST_SOLICIT (nd6_mmaxtries).
    pub max_multicast_solicit: u32,
    /// MAX_UNICAST_SOLICIT (nd6_umaxtries).
    pub max_unicast_solicit: u32,
    /// RETRANS_TIMER.
    pub retrans_timer: Duration,
    /// REACHABLE_TIME, the base of the randomized ReachableTime.
    pub base_reachable_time: Duration,
    /// DELAY_FIRST_PROBE_TIME (nd6_delay).
    pub delay_first_probe: Duration,
    /// How long a STALE entry lives unused (nd6_gctimer, one day).
    pub gc_timer: Duration,
    /// Entries in all; new ones beyond are refused and counted.
    pub max_entries: usize,
    /// Lifetime of an `ndp -s … temp` entry (ndp(8): 20 minutes).
    pub temp_lifetime: Duration,
    /// Lock shards of the table.
    pub shards: usize,
}

impl Default for Nd6Config {
    fn default() -> Self {
        Nd6Config {
            hold_per_entry: 10,
            hold_total: 100,
            max_multicast_solicit: 3,
            max_unicast_solicit: 3,
            retrans_timer: Duration::from_secs(1),
            base_reachable_time: Duration::from_secs(30),
            delay_first_probe: Duration::from_secs(5),
            gc_timer: Duration::from_secs(24 * 60 * 60),
            max_entries: 2048,
            temp_lifetime: Duration::from_secs(20 * 60),
            shards: 16,
        }
    }
}

/// ReachableTime for a base and a random 32-bit value: uniformly between
/// MIN_RANDOM_FACTOR (0.5) and MAX_RANDOM_FACTOR (1.5) times the base (RFC
/// 4861 §6.3.2; OpenBSD's ND_COMPUTE_RTIME).
pub fn compute_reachable_time(base: Duration, random: u32) -> Duration {
    let base_ns = base.as_nanos() as u64;
    let spread = (base_ns as u128 * random as u128 / (u32::MAX as u128 + 1)) as u64;
    Duration::from_nanos(base_ns / 2 + spread)
}

/// A neighbor cache entry's state (nd6.h's ND6_LLINFO_*; `ndp -an`'s S
/// column letter in [`NdState::letter`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NdState {
    NoState,
    Incomplete,
    Reachable,
    Stale,
    Delay,
    Probe,
}

impl NdState {
    /// Whether the entry has a link-layer address.
    pub fn is_resolved(self) -> bool {
        self > NdState::Incomplete
    }
    pub fn letter(self) -> char {
        match self {
            NdState::NoState => 'N',
            NdState::Incomplete => 'I',
            NdState::Reachable => 'R',
            NdState::Stale => 'S',
            NdState::Delay => 'D',
            NdState::Probe => 'P',
        }
    }
}

/// What made an entry.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum NdEntryKind {
    /// Learned from the wire or created to resolve: timers run.
    Dynamic,
    /// `ndp -s`: no NUD; the wire does not change it. `temp` ones expire.
    Static,
    /// One of the router's own addresses (flag `l`).
    Local,
}

/// One entry as the control plane sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NdEntry {
    pub addr: Ipv6Addr,
    pub ifindex: IfIndex,
    /// `None` until resolved.
    pub mac: Option<MacAddr>,
    pub state: NdState,
    pub kind: NdEntryKind,
    pub proxy: bool,
    pub router: bool,
    /// Solicitations sent in the current round (ln_asked).
    pub asked: u32,
    /// When the entry's timer runs out (ln_expire); `None`: never.
    pub expire: Option<Instant>,
    /// Packets waiting in the hold queue.
    pub held: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NdError {
    /// No interface has a prefix containing the address (ndp(8)'s failed
    /// route lookup).
    #[error("RTM_GET({0}) failed")]
    NoRoute(Ipv6Addr),
    /// Not an address a neighbor can have (unspecified, multicast,
    /// loopback).
    #[error("set: cannot configure a new entry")]
    CannotConfigure(Ipv6Addr),
    /// One of the router's own addresses (its local route exists).
    #[error("writing to routing socket: File exists")]
    LocalAddress(Ipv6Addr),
    /// `ndp -d` of an address without an entry.
    #[error("delete: cannot delete non-NDP entry")]
    NotFound(Ipv6Addr),
    /// The table holds `max_entries`.
    #[error("writing to routing socket: No buffer space available")]
    Full(Ipv6Addr),
}

/// Where a solicitation goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NsDest {
    /// To the target's solicited-node group (address resolution).
    Multicast,
    /// To the target itself at its cached MAC (a NUD probe, §7.3.3).
    Unicast(MacAddr),
}

/// A neighbor solicitation the caller must send now on `ifindex`
/// (nd6_ns_output): hop limit 255, target `target`, a source link-layer
/// address option with the interface's MAC.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NsRequest {
    pub ifindex: IfIndex,
    pub target: Ipv6Addr,
    pub dest: NsDest,
    /// The source of the packet that started the resolution (ln_saddr6):
    /// the solicitation's source if it is one of the interface's usable
    /// addresses, else the caller selects one
    /// ([`Interface::source6_for`]).
    pub src_hint: Option<Ipv6Addr>,
}

impl NsRequest {
    /// The IPv6 destination.
    pub fn dst_ip(&self) -> Ipv6Addr {
        match self.dest {
            NsDest::Multicast => self.target.solicited_node(),
            NsDest::Unicast(_) => self.target,
        }
    }
    /// The Ethernet destination.
    pub fn dst_mac(&self) -> MacAddr {
        match self.dest {
            NsDest::Multicast => multicast_mac(self.target.solicited_node()),
            NsDest::Unicast(m) => m,
        }
    }
}

/// What became of a frame handed to [`Nd6Table::resolve`].
#[derive(Debug)]
pub enum Nd6Resolve {
    /// Send it: write this destination MAC.
    Resolved(MacAddr, PacketBuf),
    /// The frame waits for an advertisement. `solicit`: send it now.
    /// `dropped`: a frame pushed out of a full hold queue (or this one,
    /// when all hold queues together are full), already counted; the
    /// caller frees it.
    Held { solicit: Option<NsRequest>, dropped: Option<PacketBuf> },
    /// No entry can be made (the table is full): counted, the caller frees
    /// it.
    Dropped(PacketBuf),
}

/// What [`Nd6Table::timer`] wants done (nd6_llinfo_timer).
#[derive(Debug, Default)]
pub struct Nd6Timer {
    /// Solicitations to send: multicast ones for INCOMPLETE entries,
    /// unicast NUD probes for PROBE entries.
    pub solicits: Vec<NsRequest>,
    /// Held packets of neighbors that never answered: for each, the caller
    /// sends ICMPv6 destination unreachable (address unreachable) with the
    /// interface as the receiving one, then frees it. Already counted.
    pub unreachable: Vec<(IfIndex, Ipv6Addr, PacketBuf)>,
}

/// Neighbor discovery counters, one set per worker.
#[derive(Default, Debug)]
pub struct Nd6Stats {
    /// Solicitations sent (counted by whoever sends them).
    pub ns_sent: Counter,
    /// Advertisements sent (counted by whoever sends them).
    pub na_sent: Counter,
    pub ns_received: Counter,
    pub na_received: Counter,
    /// Messages dropped: not for us, from a non-neighbor, about an entry
    /// we do not have, or refused.
    pub dropped: Counter,
    /// Packets dropped because their next hop never answered.
    pub dropped_no_entry: Counter,
    /// Packets dropped from (or not admitted to) a full hold queue.
    pub dropped_hold_full: Counter,
    /// New entries refused because the table is full.
    pub cache_full: Counter,
    /// Entries that timed out (given up or garbage collected).
    pub timeouts: Counter,
    /// Messages from another node claiming one of our addresses.
    pub dup_addrs: Counter,
    /// NDP messages with a hop limit other than 255 (RFC 4861 §6.1, §7.1:
    /// not from this link).
    pub bad_hop_limit: Counter,
    /// NDP messages failing the other RFC 4861 validity checks (bad
    /// link-layer option, multicast target, a DAD solicitation with a
    /// source link-layer option or not to a solicited-node group, …).
    pub invalid: Counter,
    /// Redirects ignored because the router forwards (icmp6_redirect_input).
    pub redirects_ignored: Counter,
    /// Router solicitations received (valid ones, queued for the
    /// advertiser).
    pub rs_received: Counter,
    /// Router solicitations dropped because the advertiser's queue was
    /// full (the answers already due cover them).
    pub rs_dropped: Counter,
    /// Router advertisements sent (by the control thread).
    pub ra_sent: Counter,
}

pub(crate) const NEVER: Instant = Instant::from_nanos(u64::MAX);

struct Entry {
    state: NdState,
    kind: NdEntryKind,
    /// Meaningless until resolved.
    mac: MacAddr,
    proxy: bool,
    router: bool,
    asked: u32,
    /// ln_expire: when the state's timer runs out; `None` for none.
    timer: Option<Instant>,
    /// The source of the packet that started the resolution.
    saddr: Option<Ipv6Addr>,
    hold: VecDeque<PacketBuf>,
}

impl Entry {
    fn new(kind: NdEntryKind, state: NdState, mac: MacAddr) -> Self {
        Entry {
            state,
            kind,
            mac,
            proxy: false,
            router: false,
            asked: 0,
            timer: None,
            saddr: None,
            hold: VecDeque::new(),
        }
    }

    fn info(&self, ifindex: IfIndex, addr: Ipv6Addr) -> NdEntry {
        NdEntry {
            addr,
            ifindex,
            mac: self.state.is_resolved().then_some(self.mac),
            state: self.state,
            kind: self.kind,
            proxy: self.proxy,
            router: self.router,
            asked: self.asked,
            expire: self.timer,
            held: self.hold.len(),
        }
    }
}

type Key = (IfIndex, Ipv6Addr);
type Shard = HashMap<Key, Entry>;

/// The neighbor cache of all interfaces (see the module docs).
pub struct Nd6Table {
    config: Nd6Config,
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    /// Bumped whenever a resolved mapping goes away, changes its MAC or
    /// becomes STALE before its time.
    generation: CachePadded<AtomicU64>,
    /// Packets held over all entries.
    hold_total: CachePadded<AtomicUsize>,
    /// Held packets of entries removed with packets still held (`ndp -d`,
    /// an interface destroyed), until the stack takes them back to the
    /// pools (`take_released`), as ARP's.
    released: parking_lot::Mutex<Vec<PacketBuf>>,
    /// Entries over all shards.
    count: CachePadded<AtomicUsize>,
    /// ReachableTime in nanoseconds (randomized; see
    /// [`Nd6Table::set_reachable_random`]).
    reachable_ns: AtomicU64,
    /// Router solicitations heard by the data path, for the control
    /// thread's advertiser ([`Nd6Table::take_solicits`]): a bounded
    /// lock-free queue.
    solicits: crossbeam::queue::ArrayQueue<rtadv::RsHeard>,
    /// Held packets of neighbors given up (`Nd6Timer::unreachable`), from
    /// the control thread's timer to a worker, which answers each with
    /// ICMPv6 address unreachable ([`Nd6Table::queue_unreachable`]).
    unreach: crossbeam::queue::ArrayQueue<PacketBuf>,
    /// MLD queries heard by the data path, for the control thread's
    /// listener (`stack/mld.rs`): a bounded lock-free queue.
    queries: crossbeam::queue::ArrayQueue<MldQueryHeard>,
}

/// An MLD query a worker heard (RFC 3810 §6.2): the interface, the group
/// asked for (:: for all), the Maximum Response Delay, and whether the
/// querier speaks MLDv1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MldQueryHeard {
    pub ifindex: IfIndex,
    pub group: Ipv6Addr,
    pub max_resp_ms: u32,
    pub v1: bool,
}

/// Router solicitations waiting for the control thread at most.
pub const RS_QUEUE: usize = 64;
/// Given-up packets waiting for a worker's address unreachable at most;
/// more are freed unanswered (the error is rate limited anyway).
pub const UNREACH_QUEUE: usize = 256;

#[inline]
fn addr_hash(a: Ipv6Addr) -> u64 {
    let v = u128::from(a);
    ((v as u64) ^ ((v >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Nd6Table {
    /// A table whose ReachableTime is drawn from `random` (a 32-bit value
    /// from the owner's generator).
    pub fn new(config: Nd6Config, random: u32) -> Self {
        let n = config.shards.max(1);
        let reachable = compute_reachable_time(config.base_reachable_time, random);
        Nd6Table {
            shards: (0..n).map(|_| CachePadded::new(Mutex::new(HashMap::new()))).collect(),
            config,
            generation: CachePadded::new(AtomicU64::new(1)),
            hold_total: CachePadded::new(AtomicUsize::new(0)),
            released: parking_lot::Mutex::new(Vec::new()),
            count: CachePadded::new(AtomicUsize::new(0)),
            reachable_ns: AtomicU64::new(reachable.as_nanos() as u64),
            solicits: crossbeam::queue::ArrayQueue::new(RS_QUEUE),
            unreach: crossbeam::queue::ArrayQueue::new(UNREACH_QUEUE),
            queries: crossbeam::queue::ArrayQueue::new(RS_QUEUE),
        }
    }

    pub fn config(&self) -> &Nd6Config {
        &self.config
    }

    /// ReachableTime now.
    pub fn reachable_time(&self) -> Duration {
        Duration::from_nanos(self.reachable_ns.load(Ordering::Relaxed))
    }

    /// Draws ReachableTime again (RFC 4861 §6.3.4: at least every few
    /// hours; OpenBSD's nd6_slowtimo every two).
    pub fn set_reachable_random(&self, random: u32) {
        let t = compute_reachable_time(self.config.base_reachable_time, random);
        self.reachable_ns.store(t.as_nanos() as u64, Ordering::Relaxed);
    }

    #[inline]
    fn shard(&self, addr: Ipv6Addr) -> &Mutex<Shard> {
        &self.shards[(addr_hash(addr) >> 32) as usize % self.shards.len()]
    }

    /// Called with the shard lock held, so a worker that read the old
    /// mapping under the lock has also loaded the old generation.
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    #[inline]
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Packets currently held over all entries.
    pub fn held_total(&self) -> usize {
        self.hold_total.load(Ordering::Relaxed)
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn unhold(&self, n: usize) {
        if n > 0 {
            self.hold_total.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Takes a slot for a new entry; false when the table is full.
    fn reserve_entry(&self) -> bool {
        let mut cur = self.count.load(Ordering::Relaxed);
        loop {
            if cur >= self.config.max_entries {
                return false;
            }
            match self.count.compare_exchange_weak(cur, cur + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(c) => cur = c,
            }
        }
    }

    fn release_entries(&self, n: usize) {
        if n > 0 {
            self.count.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Removes an entry (shard lock held), its held packets to `dropped`.
    /// The held packets of entries removed since the last call, for the
    /// pools (the control thread's timer).
    pub fn take_released(&self) -> Vec<PacketBuf> {
        std::mem::take(&mut *self.released.lock())
    }

    fn remove_locked(&self, shard: &mut Shard, key: &Key) -> Option<Entry> {
        let mut e = shard.remove(key)?;
        self.release_entries(1);
        self.unhold(e.hold.len());
        if !e.hold.is_empty() {
            self.released.lock().extend(e.hold.drain(..));
        }
        if e.state.is_resolved() {
            self.bump();
        }
        Some(e)
    }

    // ---- data path ------------------------------------------------------

    /// nd6_resolve: the destination MAC for `frame` (a complete Ethernet
    /// frame) sent on `ifp` to the on-link `next_hop`, whose IPv6 source
    /// is `src`. A cached resolved entry costs no lock and no allocation.
    /// Multicast next hops are the caller's (RFC 2464 §7: no resolution).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn resolve(
        &self,
        now: Instant,
        ifp: &Interface,
        next_hop: Ipv6Addr,
        src: Ipv6Addr,
        frame: PacketBuf,
        cache: &mut Nd6WorkerCache,
        stats: &Nd6Stats,
    ) -> Nd6Resolve {
        if let Some(mac) = cache.lookup(self.generation(), now, ifp.index(), next_hop) {
            return Nd6Resolve::Resolved(mac, frame);
        }
        self.resolve_slow(now, ifp.index(), next_hop, src, frame, cache, stats)
    }

    #[allow(clippy::too_many_arguments)]
    fn resolve_slow(
        &self,
        now: Instant,
        ifindex: IfIndex,
        next_hop: Ipv6Addr,
        src: Ipv6Addr,
        frame: PacketBuf,
        cache: &mut Nd6WorkerCache,
        stats: &Nd6Stats,
    ) -> Nd6Resolve {
        let cfg = &self.config;
        let key = (ifindex, next_hop);
        let mut shard = self.shard(next_hop).lock();
        let e = match shard.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                if !self.reserve_entry() {
                    stats.cache_full.inc();
                    return Nd6Resolve::Dropped(frame);
                }
                let mut e = Entry::new(NdEntryKind::Dynamic, NdState::NoState, MacAddr::ZERO);
                e.hold.reserve_exact(cfg.hold_per_entry);
                v.insert(e)
            }
        };

        // A REACHABLE entry past its time is STALE (the timer may not have
        // run yet).
        if e.state == NdState::Reachable && e.kind == NdEntryKind::Dynamic && e.timer.is_some_and(|t| t <= now) {
            e.state = NdState::Stale;
            e.timer = Some(now + cfg.gc_timer);
        }
        // RFC 4861 §7.3.3: the first packet to a STALE neighbor starts NUD.
        if e.state == NdState::Stale && e.kind == NdEntryKind::Dynamic {
            e.asked = 0;
            e.state = NdState::Delay;
            e.timer = Some(now + cfg.delay_first_probe);
        }
        if e.state.is_resolved() {
            let mac = e.mac;
            let valid_until = match (e.kind, e.state) {
                (NdEntryKind::Dynamic, _) => e.timer.unwrap_or(now),
                // Static entries: until a change bumps the generation, or a
                // `temp` entry's end.
                _ => e.timer.unwrap_or(NEVER),
            };
            drop(shard);
            cache.insert(ifindex, next_hop, mac, valid_until);
            return Nd6Resolve::Resolved(mac, frame);
        }

        if e.state == NdState::NoState {
            e.state = NdState::Incomplete;
        }
        if e.saddr.is_none() && !src.is_unspecified() {
            e.saddr = Some(src);
        }
        let dropped = crate::hold::push(
            &self.hold_total,
            &mut e.hold,
            frame,
            cfg.hold_per_entry,
            cfg.hold_total,
            &stats.dropped_hold_full,
            |p| cache.push_dropped(p),
        );

        // The first solicitation goes now; the timer sends the others.
        let mut solicit = None;
        if e.asked == 0 {
            e.asked = 1;
            e.timer = Some(now + cfg.retrans_timer);
            solicit = Some(NsRequest { ifindex, target: next_hop, dest: NsDest::Multicast, src_hint: e.saddr });
        }
        Nd6Resolve::Held { solicit, dropped }
    }

    /// nd6_llinfo_timer over the whole table, for the owner's timer (at
    /// least once per RETRANS_TIMER): INCOMPLETE entries solicit again or
    /// give up (their held packets come back for ICMPv6 errors), REACHABLE
    /// ones become STALE, STALE ones are collected, DELAY ones start
    /// probing, PROBE ones probe again or go; `ndp -s … temp` entries end.
    pub fn timer(&self, now: Instant, stats: &Nd6Stats) -> Nd6Timer {
        let cfg = &self.config;
        let mut out = Nd6Timer::default();
        for s in self.shards.iter() {
            let mut shard = s.lock();
            let mut gone = Vec::new();
            for (key, e) in shard.iter_mut() {
                let Some(t) = e.timer else { continue };
                if t > now {
                    continue;
                }
                let (ifindex, addr) = *key;
                if e.kind != NdEntryKind::Dynamic {
                    // A `temp` static entry's end.
                    gone.push(*key);
                    continue;
                }
                match e.state {
                    NdState::NoState => gone.push(*key),
                    NdState::Incomplete => {
                        if e.asked < cfg.max_multicast_solicit {
                            e.asked += 1;
                            e.timer = Some(now + cfg.retrans_timer);
                            out.solicits.push(NsRequest {
                                ifindex,
                                target: addr,
                                dest: NsDest::Multicast,
                                src_hint: e.saddr,
                            });
                        } else {
                            let n = e.hold.len();
                            stats.dropped_no_entry.add(n as u64);
                            self.unhold(n);
                            out.unreachable.extend(e.hold.drain(..).map(|p| (ifindex, addr, p)));
                            gone.push(*key);
                        }
                    }
                    NdState::Reachable => {
                        // No generation bump: the workers' slots for it
                        // ended at this same deadline.
                        e.state = NdState::Stale;
                        e.timer = Some(now + cfg.gc_timer);
                    }
                    NdState::Stale => gone.push(*key),
                    NdState::Delay => {
                        e.asked = 1;
                        e.state = NdState::Probe;
                        e.timer = Some(now + cfg.retrans_timer);
                        out.solicits.push(NsRequest {
                            ifindex,
                            target: addr,
                            dest: NsDest::Unicast(e.mac),
                            src_hint: e.saddr,
                        });
                    }
                    NdState::Probe => {
                        if e.asked < cfg.max_unicast_solicit {
                            e.asked += 1;
                            e.timer = Some(now + cfg.retrans_timer);
                            out.solicits.push(NsRequest {
                                ifindex,
                                target: addr,
                                dest: NsDest::Unicast(e.mac),
                                src_hint: e.saddr,
                            });
                        } else {
                            gone.push(*key);
                        }
                    }
                }
            }
            for key in gone {
                if let Some(e) = self.remove_locked(&mut shard, &key) {
                    stats.timeouts.inc();
                    stats.dropped_no_entry.add(e.hold.len() as u64);
                    out.unreachable.extend(e.hold.into_iter().map(|p| (key.0, key.1, p)));
                }
            }
        }
        out
    }

    /// A valid router solicitation for the advertiser (RFC 4861 §6.2.6):
    /// queued without a lock; counted and dropped when the queue is full.
    pub fn queue_solicit(&self, rs: rtadv::RsHeard, stats: &Nd6Stats) {
        stats.rs_received.inc();
        if self.solicits.push(rs).is_err() {
            stats.rs_dropped.inc();
        }
    }

    /// nd6_llinfo_timer's icmp6_error2 for the held packets of a neighbor
    /// given up (RFC 4861 §7.2.2): queued for the workers, which send the
    /// errors ([`Nd6Table::take_unreachable`]); returns how many were
    /// freed for want of room.
    pub fn queue_unreachable(&self, given_up: impl IntoIterator<Item = PacketBuf>) -> usize {
        let mut freed = 0;
        for p in given_up {
            if self.unreach.push(p).is_err() {
                freed += 1;
            }
        }
        freed
    }

    /// An MLD query for the control thread; one that does not fit is
    /// dropped (a querier asks again).
    pub fn queue_query(&self, q: MldQueryHeard) {
        let _ = self.queries.push(q);
    }

    /// The control thread takes the queued MLD queries.
    pub fn take_queries(&self) -> impl Iterator<Item = MldQueryHeard> + '_ {
        std::iter::from_fn(|| self.queries.pop())
    }

    /// A worker takes a given-up packet to answer.
    pub fn take_unreachable(&self) -> Option<PacketBuf> {
        self.unreach.pop()
    }

    /// The control thread takes the queued router solicitations.
    pub fn take_solicits(&self) -> impl Iterator<Item = rtadv::RsHeard> + '_ {
        std::iter::from_fn(|| self.solicits.pop())
    }

    /// Whether `addr` is a neighbor on `ifp` (nd6_is_addr_neighbor):
    /// link-local, inside one of the interface's prefixes, or with an
    /// entry on it.
    pub fn is_neighbor(&self, ifp: &Interface, addr: Ipv6Addr) -> bool {
        addr.is_link_local_unicast()
            || ifp.inet6().addrs.iter().any(|a| a.contains(addr))
            || self.shard(addr).lock().contains_key(&(ifp.index(), addr))
    }
}
