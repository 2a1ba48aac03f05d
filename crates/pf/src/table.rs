//! pf tables: sets of IPv4 and IPv6 prefixes matched by longest prefix, with
//! negated entries (`!10.1.0.0/16` inside `10.0.0.0/8` carves a hole), as
//! pf's radix tables do, and per-entry counters (`pfctl -T show -v`).
//!
//! Workers read a table without a lock: its entries are an immutable
//! snapshot published with `arc-swap`. The control thread (`pfctl -T add
//! …`) edits the authoritative entry list under a mutex, builds a new
//! snapshot and swaps it in; a packet sees the old set or the new one.
//!
//! The lookup structure is one open-addressing hash array per prefix
//! length (network address → entry position), probed from the longest
//! length that holds entries down to the shortest: one probe per length
//! present, usually one or a handful.
//!
//! Counters are per worker (single writer, no locked read-modify-write):
//! per-entry counters live in the snapshot, one array per worker indexed
//! by the entry's position, allocated the first time that worker counts.
//! When a snapshot is replaced, the control thread waits for the workers
//! to let go of the old one, then folds its counts into the entry list, so
//! entries that stay keep their counters.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use softnet_core::percpu::{Counter, PerWorker, MAX_WORKERS};

use crate::model::{IpNet, TableEntry};

/// Counter slots per entry: direction (in, out) × (block, pass, xpass).
const STAT_SLOTS: usize = 6;

/// What a matching packet did, for the per-entry counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableOp {
    Block = 0,
    Pass = 1,
    /// Passed although the table said "not in" (a negated rule).
    XPass = 2,
}

/// One entry's counters as one worker keeps them.
#[derive(Default)]
struct EntryCounters {
    packets: [Counter; STAT_SLOTS],
    bytes: [Counter; STAT_SLOTS],
}

/// One entry in the control thread's list, with the counts folded in from
/// snapshots that are gone.
#[derive(Debug, Clone, Copy)]
struct EntryCtl {
    negated: bool,
    packets: [u64; STAT_SLOTS],
    bytes: [u64; STAT_SLOTS],
    /// Seconds since the epoch when the counters were last cleared.
    cleared: u64,
}

impl EntryCtl {
    fn new(negated: bool) -> EntryCtl {
        EntryCtl { negated, packets: [0; STAT_SLOTS], bytes: [0; STAT_SLOTS], cleared: 0 }
    }
}

/// Empty slot marker in a `LenMap`.
const NO_POS: u32 = u32::MAX;

/// A network address a `LenMap` is keyed by: an IPv4 one, or an IPv6
/// one as one integer.
trait NetKey: Copy + Default + Eq {
    /// The key's home slot in a table of `1 << bits` slots.
    fn home(self, bits: u32) -> usize;
}

impl NetKey for u32 {
    #[inline]
    fn home(self, bits: u32) -> usize {
        (self.wrapping_mul(0x9e37_79b1) >> (32 - bits)) as usize
    }
}

impl NetKey for u128 {
    #[inline]
    fn home(self, bits: u32) -> usize {
        let f = self as u64 ^ (self >> 64) as u64;
        (f.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }
}

/// Network address → entry position for one prefix length: open
/// addressing, linear probing, at most half full.
struct LenMap<K> {
    bits: u32,
    slots: Box<[(K, u32)]>,
}

impl<K> Default for LenMap<K> {
    fn default() -> Self {
        LenMap { bits: 1, slots: Box::new([]) }
    }
}

impl<K: NetKey> LenMap<K> {
    fn build(items: &[(K, u32)]) -> LenMap<K> {
        if items.is_empty() {
            return LenMap::default();
        }
        let bits = (items.len() * 2).next_power_of_two().trailing_zeros().max(1);
        let mut slots = vec![(K::default(), NO_POS); 1usize << bits].into_boxed_slice();
        let mask = slots.len() - 1;
        for &(net, pos) in items {
            let mut i = net.home(bits);
            while slots[i].1 != NO_POS {
                i = (i + 1) & mask;
            }
            slots[i] = (net, pos);
        }
        LenMap { bits, slots }
    }

    #[inline]
    fn home(&self, net: K) -> usize {
        net.home(self.bits)
    }

    #[inline]
    fn get(&self, net: K) -> Option<u32> {
        let mask = self.slots.len().wrapping_sub(1);
        let mut i = self.home(net);
        loop {
            let (k, pos) = *self.slots.get(i)?;
            if pos == NO_POS {
                return None;
            }
            if k == net {
                return Some(pos);
            }
            i = (i + 1) & mask;
        }
    }
}

/// An entry's key: its family (IPv4 entries first, as pfctl lists the
/// IPv4 radix tree before the IPv6 one), network and prefix length; an
/// IPv4 network in the low 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct EntryKey {
    v6: bool,
    net: u128,
    len: u8,
}

/// What workers read: the entries and the lookup structure, immutable,
/// plus the per-worker counters of this snapshot's entries.
struct Snapshot {
    /// (key, negated), in `show` order.
    entries: Box<[(EntryKey, bool)]>,
    /// Bit `l` set when some IPv4 entry has prefix length `l`.
    lens: u64,
    by_len: Box<[LenMap<u32>]>,
    /// The same for IPv6 entries: bit `l` of `lens6[l / 64]`.
    lens6: [u64; 3],
    by_len6: Box<[LenMap<u128>]>,
    /// Per worker: counters by entry position, allocated the first time
    /// that worker counts a packet.
    stats: Box<[OnceLock<Box<[EntryCounters]>>]>,
}

impl Snapshot {
    fn build(ctl: &BTreeMap<EntryKey, EntryCtl>) -> Snapshot {
        let entries: Box<[(EntryKey, bool)]> = ctl.iter().map(|(&k, e)| (k, e.negated)).collect();
        let mut per_len: Vec<Vec<(u32, u32)>> = vec![vec![]; 33];
        let mut per_len6: Vec<Vec<(u128, u32)>> = vec![vec![]; 129];
        let (mut lens, mut lens6) = (0u64, [0u64; 3]);
        for (pos, &(k, _)) in entries.iter().enumerate() {
            if k.v6 {
                per_len6[k.len as usize].push((k.net, pos as u32));
                lens6[k.len as usize / 64] |= 1u64 << (k.len % 64);
            } else {
                per_len[k.len as usize].push((k.net as u32, pos as u32));
                lens |= 1u64 << k.len;
            }
        }
        Snapshot {
            entries,
            lens,
            by_len: per_len.iter().map(|v| LenMap::build(v)).collect(),
            lens6,
            by_len6: per_len6.iter().map(|v| LenMap::build(v)).collect(),
            stats: (0..MAX_WORKERS).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Position of the longest IPv6 prefix holding `a`.
    fn lookup6(&self, a: u128) -> Option<usize> {
        for w in (0..3).rev() {
            let mut lens = self.lens6[w];
            while lens != 0 {
                let b = 63 - lens.leading_zeros();
                lens &= !(1u64 << b);
                let l = w as u32 * 64 + b;
                if let Some(pos) = self.by_len6[l as usize].get(a & crate::addr::mask6(l as u8)) {
                    return Some(pos as usize);
                }
            }
        }
        None
    }

    /// `lookup` or `lookup6` by family.
    fn lookup_ip(&self, a: IpAddr) -> Option<usize> {
        match a {
            IpAddr::V4(a) => self.lookup(u32::from(a)),
            IpAddr::V6(a) => self.lookup6(u128::from(a)),
        }
    }

    /// Position of the longest prefix holding `a`.
    #[inline]
    fn lookup(&self, a: u32) -> Option<usize> {
        let mut lens = self.lens;
        while lens != 0 {
            let l = 63 - lens.leading_zeros();
            lens &= !(1u64 << l);
            if let Some(pos) = self.by_len[l as usize].get(a & mask(l as u8)) {
                return Some(pos as usize);
            }
        }
        None
    }

    /// Worker `w`'s counters for entry `pos`, this snapshot's.
    fn counts(&self, w: usize, pos: usize) -> Option<&EntryCounters> {
        self.stats.get(w % MAX_WORKERS)?.get()?.get(pos)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32) as u32)
    }
}

/// Where a table lives (pfr_table's `pfrt_anchor`, `pfrt_name`): the path
/// of the anchor whose namespace holds it ("" for the main ruleset) and
/// its name. Each anchor has a namespace of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableKey {
    pub anchor: String,
    pub name: String,
}

impl TableKey {
    pub fn new(anchor: &str, name: &str) -> TableKey {
        TableKey { anchor: anchor.to_string(), name: name.to_string() }
    }

    /// A table of the main ruleset.
    pub fn main(name: &str) -> TableKey {
        TableKey::new("", name)
    }
}

/// Tables by where they live.
pub type Tables = std::collections::HashMap<TableKey, Arc<Table>>;

/// A pf table.
///
/// A table is active (PFR_TFLAG_ACTIVE) when a ruleset defines it or
/// `pfctl -T add` made it; a table an anchor's rule only names is not,
/// and a lookup in it goes to its root, the main ruleset's table of the
/// same name, as pfr_match_addr and pfr_pool_get do (`pfrkt_root`). The
/// main ruleset's tables have no root. softnet makes a table the main
/// ruleset only names active (and empty) at once, where pf leaves it
/// inactive until `-T add`: a lookup gives the same answer.
pub struct Table {
    pub name: String,
    /// The anchor whose namespace holds it ("" = the main ruleset).
    pub anchor: String,
    persist: AtomicBool,
    pub constant: bool,
    pub counters: bool,
    active: AtomicBool,
    /// The main ruleset's table of this name, for an anchor's table.
    root: ArcSwapOption<Table>,
    snap: ArcSwap<Snapshot>,
    /// The authoritative entries (control thread), in `show` order.
    ctl: Mutex<BTreeMap<EntryKey, EntryCtl>>,
    /// Lookups that found no entry, for `-T show -v`: per worker.
    no_match: PerWorker<Counter>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("name", &self.name).field("entries", &self.len()).finish()
    }
}

/// One entry as `show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownEntry {
    pub net: IpNet,
    pub negated: bool,
}

fn key(net: &IpNet) -> EntryKey {
    match net.addr {
        IpAddr::V4(a) => {
            let len = net.prefix.min(32);
            EntryKey { v6: false, net: (u32::from(a) & mask(len)) as u128, len }
        }
        IpAddr::V6(a) => {
            let len = net.prefix.min(128);
            EntryKey { v6: true, net: u128::from(a) & crate::addr::mask6(len), len }
        }
    }
}

impl EntryKey {
    fn net(&self) -> IpNet {
        let addr = if self.v6 { IpAddr::V6(self.net.into()) } else { IpAddr::V4((self.net as u32).into()) };
        IpNet::new(addr, self.len)
    }
}

/// How many entries a table holding exactly `entries` has (one per
/// prefix).
pub fn count_distinct(entries: &[TableEntry]) -> usize {
    entries.iter().map(|e| key(&e.net)).collect::<HashSet<_>>().len()
}

/// How long `publish` waits for workers to drop an old snapshot before
/// folding its counters anyway (a worker holds one for one packet).
const DRAIN_WAIT: Duration = Duration::from_secs(1);

impl Table {
    /// An active table of the main ruleset.
    pub fn new(name: &str) -> Table {
        Table::in_anchor("", name, true)
    }

    /// A table in `anchor`'s namespace, active or not (pfr_create_ktable).
    pub fn in_anchor(anchor: &str, name: &str, active: bool) -> Table {
        Table {
            name: name.to_string(),
            anchor: anchor.to_string(),
            persist: AtomicBool::new(false),
            constant: false,
            counters: false,
            active: AtomicBool::new(active),
            root: ArcSwapOption::empty(),
            snap: ArcSwap::from_pointee(Snapshot::build(&BTreeMap::new())),
            ctl: Mutex::new(BTreeMap::new()),
            no_match: PerWorker::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.snap.load().entries.len()
    }

    pub fn key(&self) -> TableKey {
        TableKey::new(&self.anchor, &self.name)
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::Relaxed);
    }

    pub fn is_persist(&self) -> bool {
        self.persist.load(Ordering::Relaxed)
    }

    pub fn set_persist(&self, on: bool) {
        self.persist.store(on, Ordering::Relaxed);
    }

    /// Points an anchor's table at the main ruleset's table of its name.
    pub fn set_root(&self, root: Option<Arc<Table>>) {
        self.root.store(root);
    }

    pub fn root(&self) -> Option<Arc<Table>> {
        self.root.load_full()
    }

    /// How many entries the table a lookup reads holds (this one or its
    /// root); `None` when neither is active.
    pub fn resolved_len(&self) -> Option<usize> {
        self.with_resolved(|t| t.map(|t| t.len()))
    }

    /// pfr_match_addr's choice of the table a lookup reads: this one when
    /// active, else its root when that is active, else none (no match).
    #[inline]
    fn with_resolved<R>(&self, f: impl FnOnce(Option<&Table>) -> R) -> R {
        if self.active.load(Ordering::Relaxed) {
            return f(Some(self));
        }
        let root = self.root.load();
        f(root.as_deref().filter(|r| r.active.load(Ordering::Relaxed)))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds a snapshot of `ctl` and publishes it; then waits for readers
    /// to drop the old one and (with `carry`) folds its counters into
    /// `ctl`, so entries still present keep them. The old snapshot is
    /// freed here, on the control thread.
    fn publish(&self, ctl: &mut BTreeMap<EntryKey, EntryCtl>, carry: bool) {
        let old = self.snap.swap(Arc::new(Snapshot::build(ctl)));
        // `swap` turned every outstanding reader guard into a strong count.
        let t0 = Instant::now();
        while Arc::strong_count(&old) > 1 && t0.elapsed() < DRAIN_WAIT {
            std::thread::yield_now();
        }
        if !carry {
            return;
        }
        for stats in old.stats.iter().filter_map(|s| s.get()) {
            for (&(k, _), c) in old.entries.iter().zip(stats.iter()) {
                let Some(e) = ctl.get_mut(&k) else { continue };
                for i in 0..STAT_SLOTS {
                    e.packets[i] += c.packets[i].get();
                    e.bytes[i] += c.bytes[i].get();
                }
            }
        }
    }

    fn add_locked(ctl: &mut BTreeMap<EntryKey, EntryCtl>, entries: &[TableEntry]) -> usize {
        let mut n = 0;
        for e in entries {
            if let std::collections::btree_map::Entry::Vacant(v) = ctl.entry(key(&e.net)) {
                v.insert(EntryCtl::new(e.negated));
                n += 1;
            }
        }
        n
    }

    /// `add` within pf's entry pool: adds nothing and gives `None` when
    /// more than `room` entries would be new.
    pub fn add_within(&self, entries: &[TableEntry], room: usize) -> Option<usize> {
        let mut ctl = self.ctl.lock();
        let new: HashSet<EntryKey> = entries.iter().map(|e| key(&e.net)).filter(|k| !ctl.contains_key(k)).collect();
        if new.len() > room {
            return None;
        }
        let n = Self::add_locked(&mut ctl, entries);
        if n > 0 {
            self.publish(&mut ctl, true);
        }
        Some(n)
    }

    /// `replace` within pf's entry pool: changes nothing and gives `None`
    /// when the table would grow by more than `room` entries.
    pub fn replace_within(&self, entries: &[TableEntry], room: usize) -> Option<(usize, usize)> {
        if count_distinct(entries).saturating_sub(self.len()) > room {
            return None;
        }
        Some(self.replace(entries))
    }

    /// Adds entries; returns how many were new.
    pub fn add(&self, entries: &[TableEntry]) -> usize {
        let mut ctl = self.ctl.lock();
        let n = Self::add_locked(&mut ctl, entries);
        if n > 0 {
            self.publish(&mut ctl, true);
        }
        n
    }

    /// Deletes entries (negation must match); returns how many went.
    pub fn delete(&self, entries: &[TableEntry]) -> usize {
        let mut ctl = self.ctl.lock();
        let mut n = 0;
        for e in entries {
            let key = key(&e.net);
            if ctl.get(&key).is_some_and(|x| x.negated == e.negated) {
                ctl.remove(&key);
                n += 1;
            }
        }
        if n > 0 {
            self.publish(&mut ctl, true);
        }
        n
    }

    /// Replaces the contents; returns (added, deleted). Readers see the
    /// old set or the new one, never a mix.
    pub fn replace(&self, entries: &[TableEntry]) -> (usize, usize) {
        let mut ctl = self.ctl.lock();
        let keep: HashSet<(EntryKey, bool)> = entries.iter().map(|e| (key(&e.net), e.negated)).collect();
        let before = ctl.len();
        ctl.retain(|&k, e| keep.contains(&(k, e.negated)));
        let deleted = before - ctl.len();
        let added = Self::add_locked(&mut ctl, entries);
        if added + deleted > 0 {
            self.publish(&mut ctl, true);
        }
        (added, deleted)
    }

    /// Removes every entry; returns how many there were.
    pub fn flush(&self) -> usize {
        let mut ctl = self.ctl.lock();
        let n = ctl.len();
        ctl.clear();
        self.publish(&mut ctl, false);
        n
    }

    /// Whether `a` is in the table: the longest matching prefix exists and
    /// is not negated. No lock, no shared write.
    /// An anchor's table that is not active answers from its root.
    #[inline]
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        self.with_resolved(|t| t.is_some_and(|t| t.contains_here(a)))
    }

    #[inline]
    fn contains_here(&self, a: Ipv4Addr) -> bool {
        let s = self.snap.load();
        matches!(s.lookup(u32::from(a)), Some(pos) if !s.entries[pos].1)
    }

    /// `contains` for an IPv6 address (pfr_match_addr over the table's
    /// IPv6 entries).
    pub fn contains6(&self, a: std::net::Ipv6Addr) -> bool {
        self.with_resolved(|t| t.is_some_and(|t| t.contains_ip_here(IpAddr::V6(a))))
    }

    fn contains_ip_here(&self, a: IpAddr) -> bool {
        let s = self.snap.load();
        matches!(s.lookup_ip(a), Some(pos) if !s.entries[pos].1)
    }

    /// `contains` that also counts the packet on the matching entry (or as
    /// no match), in worker `worker`'s counters.
    pub fn match_and_count(&self, worker: usize, a: Ipv4Addr, out: bool, op: TableOp, bytes: u64) -> bool {
        self.with_resolved(|t| t.is_some_and(|t| t.match_and_count_here(worker, IpAddr::V4(a), out, op, bytes)))
    }

    fn match_and_count_here(&self, worker: usize, a: IpAddr, out: bool, op: TableOp, bytes: u64) -> bool {
        let s = self.snap.load();
        match s.lookup_ip(a) {
            Some(pos) => {
                let slot = if out { 3 } else { 0 } + op as usize;
                let stats = s.stats[worker % MAX_WORKERS]
                    .get_or_init(|| (0..s.entries.len()).map(|_| EntryCounters::default()).collect());
                stats[pos].packets[slot].inc();
                stats[pos].bytes[slot].add(bytes);
                !s.entries[pos].1
            }
            None => {
                self.no_match.get(worker).inc();
                false
            }
        }
    }

    /// `match_and_count` for an IPv6 address.
    pub fn match_and_count6(&self, worker: usize, a: std::net::Ipv6Addr, out: bool, op: TableOp, bytes: u64) -> bool {
        self.with_resolved(|t| t.is_some_and(|t| t.match_and_count_here(worker, IpAddr::V6(a), out, op, bytes)))
    }

    /// Lookups that found no entry, summed over workers.
    pub fn no_match(&self) -> u64 {
        self.no_match.sum(|c| c)
    }

    /// `pfctl -T test`: how many of `addrs` (either family) match.
    pub fn test(&self, addrs: &[IpAddr]) -> usize {
        addrs.iter().filter(|a| self.contains_ip_here(**a)).count()
    }

    /// The table as an address pool reads it (pf_lb.c's `pfr_pool_get`):
    /// the snapshot of the moment, so a connection is mapped against one
    /// consistent set of entries while the control thread may change them.
    /// An anchor's table that is not active lends its root's entries
    /// (pfr_pool_get); with neither active the pool is empty.
    pub fn pool_view(&self) -> TablePool {
        self.with_resolved(|t| match t {
            Some(t) => TablePool { snap: t.snap.load_full() },
            None => TablePool { snap: empty_snapshot() },
        })
    }

    /// Entries sorted by address then prefix length.
    pub fn show(&self) -> Vec<ShownEntry> {
        self.snap.load().entries.iter().map(|&(k, negated)| ShownEntry { net: k.net(), negated }).collect()
    }

    /// `pfctl -t T -T show [-v]` text.
    pub fn show_text(&self, verbose: bool) -> String {
        let ctl = self.ctl.lock();
        let s = self.snap.load();
        let mut out = String::new();
        for (pos, (k, e)) in ctl.iter().enumerate() {
            let host = if k.v6 { 128 } else { 32 };
            let addr = k.net().addr;
            let text = if k.len == host { addr.to_string() } else { format!("{addr}/{}", k.len) };
            let _ = writeln!(out, "  {}{}", if e.negated { '!' } else { ' ' }, text);
            if verbose {
                let _ = writeln!(out, "\tCleared:     {}", ctime(e.cleared));
                const NAMES: [&str; STAT_SLOTS] =
                    ["In/Block:", "In/Pass:", "In/XPass:", "Out/Block:", "Out/Pass:", "Out/XPass:"];
                for (i, name) in NAMES.iter().enumerate() {
                    let (mut p, mut b) = (e.packets[i], e.bytes[i]);
                    for w in 0..MAX_WORKERS {
                        if let Some(c) = s.counts(w, pos) {
                            p += c.packets[i].get();
                            b += c.bytes[i].get();
                        }
                    }
                    let _ = writeln!(out, "\t{:<12} [ Packets: {:<18} Bytes: {:<18} ]", name, p, b);
                }
            }
        }
        out
    }

    /// Clears the per-entry counters (`-T zero`), stamping `now_epoch`:
    /// a fresh snapshot with fresh counters (workers' counters are theirs
    /// to write, so they are replaced rather than reset).
    pub fn zero(&self, now_epoch: u64) {
        let mut ctl = self.ctl.lock();
        for e in ctl.values_mut() {
            *e = EntryCtl { cleared: now_epoch, ..EntryCtl::new(e.negated) };
        }
        self.publish(&mut ctl, false);
    }
}

/// The snapshot of a table with no entries, made once: an inactive
/// table's pool view allocates nothing.
fn empty_snapshot() -> Arc<Snapshot> {
    static EMPTY: OnceLock<Arc<Snapshot>> = OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(Snapshot::build(&BTreeMap::new()))).clone()
}

/// `ctime(3)`-style UTC text for seconds since the epoch (no newline).
pub fn ctime(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs / 86400;
    let rem = secs % 86400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        y
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A table's entries of one family as an address pool
/// (`crate::lb::AddrBlocks<u32>` for IPv4, `<u128>` for IPv6): the
/// entries that are not negated, in order; `count` is every entry of the
/// family (pf's `pfrkt_cnt` of the pool's family).
pub struct TablePool {
    snap: Arc<Snapshot>,
}

impl crate::lb::AddrBlocks for TablePool {
    fn count(&self) -> usize {
        self.snap.entries.iter().filter(|e| !e.0.v6).count()
    }
    fn block(&self, idx: usize) -> Option<(u32, u32)> {
        self.snap.entries.iter().filter(|e| !e.0.v6 && !e.1).nth(idx).map(|&(k, _)| (k.net as u32, mask(k.len)))
    }
    fn nested(&self, a: u32, idx: usize) -> Option<(u32, u32)> {
        let pos = self.snap.lookup(a)?;
        let own = self.snap.entries.iter().enumerate().filter(|e| !e.1 .0.v6 && !e.1 .1).nth(idx)?.0;
        (pos != own).then(|| {
            let (k, _) = self.snap.entries[pos];
            (k.net as u32, mask(k.len))
        })
    }
}

impl crate::lb::AddrBlocks<u128> for TablePool {
    fn count(&self) -> usize {
        self.snap.entries.iter().filter(|e| e.0.v6).count()
    }
    fn block(&self, idx: usize) -> Option<(u128, u128)> {
        self.snap.entries.iter().filter(|e| e.0.v6 && !e.1).nth(idx).map(|&(k, _)| (k.net, crate::addr::mask6(k.len)))
    }
    fn nested(&self, a: u128, idx: usize) -> Option<(u128, u128)> {
        let pos = self.snap.lookup6(a)?;
        let own = self.snap.entries.iter().enumerate().filter(|e| e.1 .0.v6 && !e.1 .1).nth(idx)?.0;
        (pos != own).then(|| {
            let (k, _) = self.snap.entries[pos];
            (k.net, crate::addr::mask6(k.len))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str, negated: bool) -> TableEntry {
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        TableEntry { negated, net: IpNet::new(a.parse().unwrap(), l.parse().unwrap()) }
    }

    #[test]
    fn longest_prefix_wins_and_negated_entries_carve_holes() {
        let t = Table::new("t");
        assert_eq!(t.add(&[e("10.0.0.0/8", false), e("10.1.0.0/16", true), e("10.1.2.3", false)]), 3);
        assert!(t.contains("10.9.9.9".parse().unwrap()));
        assert!(!t.contains("10.1.9.9".parse().unwrap()));
        assert!(t.contains("10.1.2.3".parse().unwrap()));
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(t.test(&["10.0.0.1".parse().unwrap(), "11.0.0.1".parse().unwrap()]), 1);
        // IPv6 entries beside them, each family matched in its own
        t.add(&[e("2001:db8::/32", false), e("2001:db8:1::/48", true), e("::ffff:10.0.0.0/104", false)]);
        assert!(t.contains6("2001:db8:2::1".parse().unwrap()));
        assert!(!t.contains6("2001:db8:1::1".parse().unwrap()));
        assert!(!t.contains6("2001:db9::1".parse().unwrap()));
        assert!(t.contains6("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!t.contains("32.1.13.184".parse().unwrap()), "no IPv4 address is in an IPv6 prefix");
        assert_eq!(t.test(&["2001:db8::5".parse().unwrap(), "2001:db8:1::5".parse().unwrap()]), 1);
        assert_eq!(
            t.delete(&[e("2001:db8::/32", false), e("2001:db8:1::/48", true), e("::ffff:10.0.0.0/104", false)]),
            3
        );
        assert_eq!(t.delete(&[e("10.1.0.0/16", true)]), 1);
        assert!(t.contains("10.1.9.9".parse().unwrap()));
        assert_eq!(t.replace(&[e("192.168.0.0/24", false)]), (1, 2));
        assert_eq!(t.len(), 1);
        assert_eq!(t.flush(), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn show_lists_entries_like_pfctl() {
        let t = Table::new("t");
        t.add(&[e("10.0.0.0/8", false), e("10.1.0.0/16", true), e("192.168.1.1", false)]);
        assert_eq!(t.show_text(false), "   10.0.0.0/8\n  !10.1.0.0/16\n   192.168.1.1\n");
        t.match_and_count(0, "192.168.1.1".parse().unwrap(), false, TableOp::Pass, 60);
        let v = t.show_text(true);
        assert!(v.contains("\tCleared:     Thu Jan  1 00:00:00 1970\n"), "{v}");
        assert!(v.contains("\tIn/Pass:     [ Packets: 1                  Bytes: 60                 ]\n"), "{v}");
    }

    #[test]
    fn counters_are_per_worker_summed_and_survive_changes_to_other_entries() {
        let t = Table::new("t");
        t.add(&[e("10.0.0.0/8", false), e("192.168.1.1", false)]);
        let a: Ipv4Addr = "10.1.2.3".parse().unwrap();
        assert!(t.match_and_count(0, a, false, TableOp::Pass, 100));
        assert!(t.match_and_count(1, a, false, TableOp::Pass, 50));
        assert!(t.match_and_count(1, a, true, TableOp::Block, 7));
        assert!(!t.match_and_count(1, "11.0.0.1".parse().unwrap(), false, TableOp::Pass, 7));
        assert_eq!(t.no_match(), 1);
        let pass = "\tIn/Pass:     [ Packets: 2                  Bytes: 150                ]\n";
        let block = "\tOut/Block:   [ Packets: 1                  Bytes: 7                  ]\n";
        assert!(t.show_text(true).contains(pass), "{}", t.show_text(true));
        // A new snapshot (add, delete) keeps the counts of entries that stay.
        t.add(&[e("172.16.0.0/12", false)]);
        assert_eq!(t.delete(&[e("192.168.1.1", false)]), 1);
        assert!(t.match_and_count(0, a, false, TableOp::Pass, 1));
        let v = t.show_text(true);
        assert!(v.contains("\tIn/Pass:     [ Packets: 3                  Bytes: 151                ]\n"), "{v}");
        assert!(v.contains(block), "{v}");
        // Deleted and added again: counters start over.
        t.delete(&[e("10.0.0.0/8", false)]);
        t.add(&[e("10.0.0.0/8", false)]);
        assert!(!t.show_text(true).contains(block));
        t.match_and_count(0, a, false, TableOp::Pass, 1);
        t.zero(86400);
        let v = t.show_text(true);
        assert!(v.contains("\tCleared:     Fri Jan  2 00:00:00 1970\n"), "{v}");
        assert!(!v.contains("Packets: 1 "), "{v}");
    }

    /// The hash-per-length lookup against a linear longest-prefix scan, on
    /// a table big enough to have collisions and many lengths.
    #[test]
    fn lookup_agrees_with_a_linear_scan() {
        let mut x = 0x1234_5678u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let t = Table::new("t");
        let mut all = vec![];
        for _ in 0..5000 {
            let l = (rnd() % 33) as u8;
            let net = rnd() & mask(l) & 0x3fff_ffff;
            let neg = rnd() % 5 == 0;
            all.push((net, l, neg));
            t.add(&[TableEntry { negated: neg, net: IpNet::new(IpAddr::V4(net.into()), l) }]);
        }
        let mut uniq: BTreeMap<(u32, u8), bool> = BTreeMap::new();
        for (n, l, g) in all {
            uniq.entry((n, l)).or_insert(g);
        }
        for i in 0..20000u32 {
            let a = if i % 2 == 0 { rnd() & 0x3fff_ffff } else { rnd() };
            let want = uniq
                .iter()
                .filter(|((n, l), _)| a & mask(*l) == *n)
                .max_by_key(|((_, l), _)| *l)
                .is_some_and(|(_, neg)| !neg);
            assert_eq!(t.contains(a.into()), want, "{}", Ipv4Addr::from(a));
        }
    }
}
