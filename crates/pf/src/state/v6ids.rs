//! IPv6 addresses of live states by a 32-bit id, so that an IPv6 key
//! packs into the same two index words as an IPv4 key (its addresses'
//! ids where an IPv4 key has the addresses, and `KEY_INET6` beside the
//! protocol). The index, its lock-free probes and the slot mirrors are
//! then the same for both families, and the IPv4 path does not change.
//!
//! pf compares whole `pf_state_key`s (two 16-byte `pf_addr`s); here the
//! ids stand for the addresses exactly: an address has one id while any
//! state's key holds it (counted), and an id freed when its last state
//! goes is handed out again only after `REUSE_DELAY` other ids were
//! freed, so a packet that read an id just before its address went does
//! not meet a new address under it. A packet whose address has no id has
//! no state (`NO_ID` in its words matches none).
//!
//! The table is shared by every `StateTable` of the process (ids are only
//! names), sharded by address; a state's insert and removal take one
//! shard lock per address. A packet's lookup takes no lock: each shard
//! keeps, beside its map, an open-addressed copy of it (address → id,
//! linear probing) that readers probe under the shard's sequence lock,
//! and that its writer changes only when an address gets its first hold
//! or loses its last (`Shard`). Only a probe that meets a writer at work
//! takes the lock.
//!
//! (Session 10 put a per-thread cache of 1,024 addresses in front of the
//! locked map: with more addresses than that in flight, as
//! `softnet bench --inet6`'s 2,500, most lookups missed it and took a
//! shard lock and a SipHash-free but pointer-chasing map probe.)

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::{LazyLock, OnceLock};

use parking_lot::Mutex;

use crate::addr::PfAddr;

/// No address has this id: words with it match no state.
pub const NO_ID: u32 = 0;
const SHARDS: usize = 64;
/// Freed ids wait behind this many others before reuse.
const REUSE_DELAY: usize = 4096;

/// A multiply-xorshift hash of an address: the map is keyed by addresses
/// only, and SipHash would cost an IPv6 packet more than its lookup.
#[derive(Default, Clone, Copy)]
struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u128(&mut self, a: u128) {
        let x = (a as u64 ^ (a >> 64) as u64 ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}

/// Address → (id, states' keys holding it).
type IdMap = HashMap<u128, (u32, u32), std::hash::BuildHasherDefault<AddrHasher>>;

struct Ids {
    shards: Box<[Shard]>,
    /// id → address (index 0 unused).
    by_id: Mutex<Vec<u128>>,
    free: Mutex<VecDeque<u32>>,
}

static IDS: LazyLock<Ids> = LazyLock::new(|| Ids {
    shards: (0..SHARDS).map(|_| Shard::default()).collect(),
    by_id: Mutex::new(vec![0]),
    free: Mutex::new(VecDeque::new()),
});

/// An address's hash: its top bits pick the shard, the bits below them
/// its home in the shard's probe table.
#[inline(always)]
fn addr_hash(a: u128) -> u64 {
    let x = (a as u64) ^ (a >> 64) as u64;
    let x = x ^ (x >> 32);
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[inline(always)]
fn shard(a: u128) -> usize {
    (addr_hash(a) >> 58) as usize % SHARDS
}

/// An address's first probe position in a table of `mask + 1` entries.
#[inline(always)]
fn home(a: u128, mask: usize) -> usize {
    (addr_hash(a) >> 20) as usize & mask
}

/// Entries of a shard's first probe table (a power of two); each table
/// after it has twice as many as the one before.
const BASE: usize = 64;
/// IdEntry tables a shard can grow through: the last one holds
/// `BASE << (GENS - 1)` entries (a shard never holds more than 16 M ids).
const GENS: usize = 19;

/// One address of a probe table: `id` is `NO_ID` for an empty entry.
/// (32 bytes: an entry never straddles two cache lines.)
#[derive(Default)]
#[repr(align(32))]
struct IdEntry {
    id: AtomicU32,
    lo: AtomicU64,
    hi: AtomicU64,
}

/// The part of a shard a packet's lookup reads: the sequence lock and
/// the current probe table, 16 bytes. The 64 shards' heads sit together
/// (`HEADS`, 16 cache lines), apart from the writers' parts (`Shard`), so
/// a lookup reads one line that stays in L1 and then one entry: with
/// the sequence word and the table's pointer inside 512-byte shards
/// (session 12), a lookup read two lines of the shard (its first and
/// last), and the shards' hot lines, 8 lines apart, fell into 16 of L1's
/// 64 sets and evicted each other: 2.6 misses a lookup with 2,500
/// addresses, against 1.0 now (BENCHMARKS §2, session 13 pf6c).
///
/// `table` is the current table's address with the base-2 logarithm of
/// its length in the low five bits (entries are 32-byte aligned), one
/// word, so a reader never pairs a table with another's length: 0 while
/// the shard has no table, `PAST_LAST` once it outgrew the last one.
#[derive(Default)]
struct Head {
    seq: AtomicU32,
    table: AtomicU64,
}

/// `Head::table` when the shard is past its last table: every lookup
/// takes the lock.
const PAST_LAST: u64 = 1;
const LOG_BITS: u64 = 31;

impl Head {
    const fn new() -> Self {
        Head { seq: AtomicU32::new(0), table: AtomicU64::new(0) }
    }

    /// `a`'s id from the probe table without the lock: `Some(NO_ID)` for
    /// an address without one, `None` when a writer was at work.
    #[inline(always)]
    fn probe(&self, a: u128) -> Option<u32> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 != 0 {
            return None;
        }
        // Acquire: the table's entries, filled before it was published
        // here, are visible.
        let w = self.table.load(Ordering::Acquire);
        let t = (w & !LOG_BITS) as usize as *const IdEntry;
        if t.is_null() {
            // No table yet (no address), or past the last one (`insert`).
            return (w != PAST_LAST).then_some(NO_ID);
        }
        let len = 1usize << (w & LOG_BITS);
        let mask = len - 1;
        let (lo, hi) = (a as u64, (a >> 64) as u64);
        let mut i = home(a, mask);
        let mut id = NO_ID;
        // Bounded: a table is at most half full, but a torn read of one
        // being changed must not spin either.
        for _ in 0..len {
            // SAFETY: `t` and `len` come from one word that `Shard::
            // table_for` stored for a table of `len` entries, and `i` is
            // masked below `len`; tables live as long as their shard and
            // are never freed while it does (a reader that loaded an
            // older table reads valid memory and then sees `seq` moved).
            let e = unsafe { &*t.add(i) };
            let eid = e.id.load(Ordering::Relaxed);
            if eid == NO_ID {
                break;
            }
            if e.lo.load(Ordering::Relaxed) == lo && e.hi.load(Ordering::Relaxed) == hi {
                id = eid;
                break;
            }
            i = (i + 1) & mask;
        }
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == s1).then_some(id)
    }

    /// Starts a change of the probe table (the caller holds the shard's
    /// map lock).
    fn write_begin(&self) -> u32 {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        // The odd `seq` is visible before any entry changes (as
        // `Slot::lock`'s fence: a reader that sees a new entry then sees
        // `seq` moved).
        fence(Ordering::Release);
        s
    }

    fn write_end(&self, s: u32) {
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

/// The shards' heads, one 1 KiB block on its own lines.
#[repr(align(64))]
struct Heads([Head; SHARDS]);

static HEADS: Heads = Heads([const { Head::new() }; SHARDS]);

/// One shard's writers' part: the map its writers keep (address → id and
/// holds, under `map`'s lock), and the tables of the copy of it readers
/// probe without the lock through the shard's `Head`.
///
/// The copy is an open-addressed table (linear probing, at most half
/// full) under the head's sequence lock (odd while the writer, holding
/// `map`'s lock, changes it): a reader's probe counts only if the
/// sequence did not move while it ran, so a writer may move entries (a
/// removal shifts the entries after it back, Knuth's algorithm R) and
/// readers need no per-entry protocol. A full table is replaced by one
/// twice its size (`tables[cur]`); tables are never freed, so a reader
/// that loaded an old one reads memory still valid (and then sees the
/// sequence moved). The old ones add up to less than the current one.
struct Shard {
    /// Index of the current table in `tables`.
    cur: AtomicU32,
    tables: [OnceLock<Box<[IdEntry]>>; GENS],
    map: Mutex<IdMap>,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { cur: AtomicU32::new(0), tables: [const { OnceLock::new() }; GENS], map: Mutex::new(HashMap::default()) }
    }
}

impl Shard {
    /// The current table, made (or replaced by one twice its size, filled
    /// from `map`, and published in `head`) when it would be more than
    /// half full with `live` addresses. The caller holds `map`'s lock and
    /// is inside `head`'s `write_begin`/`write_end`.
    fn table_for(&self, head: &Head, map: &IdMap, live: usize) -> Option<&[IdEntry]> {
        let mut cur = self.cur.load(Ordering::Relaxed) as usize;
        if let Some(t) = self.tables.get(cur)?.get() {
            if live * 2 <= t.len() {
                return Some(t);
            }
            cur += 1;
        }
        while cur < GENS && live * 2 > BASE << cur {
            cur += 1;
        }
        let t = self.tables.get(cur)?.get_or_init(|| (0..BASE << cur).map(|_| IdEntry::default()).collect());
        for (&a, &(id, _)) in map {
            put(t, a, id);
        }
        self.cur.store(cur as u32, Ordering::Relaxed);
        debug_assert!(t.len().is_power_of_two() && (t.len().trailing_zeros() as u64) <= LOG_BITS);
        head.table.store(t.as_ptr() as usize as u64 | t.len().trailing_zeros() as u64, Ordering::Relaxed);
        Some(t)
    }

    /// Enters `a` → `id` in the probe table (`a` has just got its first
    /// hold; `map` holds it already).
    fn insert(&self, head: &Head, map: &IdMap, a: u128, id: u32) {
        let s = head.write_begin();
        let cur = self.cur.load(Ordering::Relaxed) as usize;
        let had = self.tables.get(cur).and_then(|t| t.get()).map(|t| t.len());
        match self.table_for(head, map, map.len()) {
            // A new table was filled from `map`, `a` with the rest.
            Some(t) if Some(t.len()) != had => {}
            Some(t) => put(t, a, id),
            // Past the last table: from now on every lookup in this shard
            // takes the lock (`Head::probe`).
            None => {
                self.cur.store(GENS as u32, Ordering::Relaxed);
                head.table.store(PAST_LAST, Ordering::Relaxed);
            }
        }
        head.write_end(s);
    }

    /// Takes `a` out of the probe table (its last hold is gone).
    fn remove(&self, head: &Head, a: u128) {
        let cur = self.cur.load(Ordering::Relaxed) as usize;
        let Some(t) = self.tables.get(cur).and_then(|t| t.get()) else { return };
        let s = head.write_begin();
        take(t, a);
        head.write_end(s);
    }
}

/// `a` → `id` into `t` (not in it yet, and `t` not full).
fn put(t: &[IdEntry], a: u128, id: u32) {
    let mask = t.len() - 1;
    let mut i = home(a, mask);
    while t[i].id.load(Ordering::Relaxed) != NO_ID {
        i = (i + 1) & mask;
    }
    t[i].lo.store(a as u64, Ordering::Relaxed);
    t[i].hi.store((a >> 64) as u64, Ordering::Relaxed);
    t[i].id.store(id, Ordering::Relaxed);
}

/// `a` out of `t`, the entries after it in its run shifted back so that
/// every one stays reachable from its home (Knuth, TAOCP vol. 3, 6.4,
/// algorithm R).
fn take(t: &[IdEntry], a: u128) {
    let mask = t.len() - 1;
    let addr = |e: &IdEntry| e.lo.load(Ordering::Relaxed) as u128 | (e.hi.load(Ordering::Relaxed) as u128) << 64;
    let mut i = home(a, mask);
    loop {
        if t[i].id.load(Ordering::Relaxed) == NO_ID {
            return;
        }
        if addr(&t[i]) == a {
            break;
        }
        i = (i + 1) & mask;
    }
    // `i` is the hole; move back into it the next entry of the run that
    // may live there (its home is not cyclically within (i, j]).
    let mut j = i;
    loop {
        j = (j + 1) & mask;
        let id = t[j].id.load(Ordering::Relaxed);
        if id == NO_ID {
            break;
        }
        let b = addr(&t[j]);
        let h = home(b, mask);
        if (j.wrapping_sub(h) & mask) >= (j.wrapping_sub(i) & mask) {
            t[i].lo.store(b as u64, Ordering::Relaxed);
            t[i].hi.store((b >> 64) as u64, Ordering::Relaxed);
            t[i].id.store(id, Ordering::Relaxed);
            i = j;
        }
    }
    t[i].id.store(NO_ID, Ordering::Relaxed);
}

/// Ids per `MIRROR` chunk, and chunks: ids past `CHUNK * CHUNKS` (16 M)
/// are not mirrored, so their lookups always take the shard lock.
const CHUNK: usize = 4096;
const CHUNKS: usize = 4096;

/// One id's mirror entry: the address it names while `live` is 1.
/// Written by the one thread that assigns or frees the id (under `IDS`'
/// locks), read by any, under the sequence lock `seq` (odd while written).
#[derive(Default)]
struct Entry {
    seq: AtomicU32,
    live: AtomicU32,
    lo: AtomicU64,
    hi: AtomicU64,
}

/// Chunks of a fixed size, so that a read indexes one without a bounds
/// check (a masked index into an array).
static MIRROR: [OnceLock<Box<[Entry; CHUNK]>>; CHUNKS] = [const { OnceLock::new() }; CHUNKS];

/// Records in the mirror that `id` names `a` (`Some`) or nothing (`None`).
fn mirror_set(id: u32, a: Option<u128>) {
    let (c, i) = (id as usize / CHUNK, id as usize % CHUNK);
    if c >= CHUNKS {
        return;
    }
    let e = &MIRROR[c].get_or_init(|| {
        let v: Box<[Entry]> = (0..CHUNK).map(|_| Entry::default()).collect();
        v.try_into().unwrap_or_else(|_| unreachable!("CHUNK entries"))
    })[i];
    let s = e.seq.load(Ordering::Relaxed);
    e.seq.store(s.wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    let a = a.unwrap_or(0);
    e.live.store(0, Ordering::Relaxed);
    e.lo.store(a as u64, Ordering::Relaxed);
    e.hi.store((a >> 64) as u64, Ordering::Relaxed);
    e.live.store(1, Ordering::Relaxed);
    e.seq.store(s.wrapping_add(2), Ordering::Release);
}

/// Whether the mirror says `id` names `a` now (a consistent read).
#[inline(always)]
fn mirror_names(id: u32, a: u128) -> bool {
    let (c, i) = (id as usize / CHUNK, id as usize % CHUNK);
    let Some(e) = MIRROR.get(c).and_then(|m| m.get()).map(|m| &m[i]) else { return false };
    let s1 = e.seq.load(Ordering::Acquire);
    let live = e.live.load(Ordering::Relaxed);
    let (lo, hi) = (e.lo.load(Ordering::Relaxed), e.hi.load(Ordering::Relaxed));
    fence(Ordering::Acquire);
    let s2 = e.seq.load(Ordering::Relaxed);
    s1 == s2 && s1 & 1 == 0 && live == 1 && (lo as u128 | (hi as u128) << 64) == a
}

/// The id of `a` while a state holds it, else `NO_ID`.
#[inline(always)]
pub fn lookup(a: PfAddr) -> u32 {
    lookup_value(a.u128())
}

/// `lookup` of an address given as its `pf_addr` value (`PfAddr::u128`).
#[inline(always)]
fn lookup_value(a: u128) -> u32 {
    let i = shard(a);
    match HEADS.0[i].probe(a) {
        Some(id) => id,
        None => lookup_locked(&IDS.shards[i], a),
    }
}

/// The ids a batch looked up last, a source's and a destination's: the
/// packets of a batch often share one side's address (a flow's packets,
/// a host's flows), and the same address looked up again has the same id
/// (as exact as the lookup: an id freed meanwhile goes to another
/// address only after `REUSE_DELAY` others). The addresses are kept as
/// the packet's header has them (network order), so that a packet read
/// straight off its header (`eval::fast_udp6`) is compared without
/// turning its addresses into `pf_addr` words first.
#[derive(Default)]
pub struct Memo {
    addr: [[u8; 16]; 2],
    id: [u32; 2],
}

impl Memo {
    /// `lookup(a)`, `a` a packet's source (`side` 0) or destination (1).
    #[inline(always)]
    pub fn lookup(&mut self, side: usize, a: PfAddr) -> u32 {
        self.lookup_octets(side, &a.octets())
    }

    /// `lookup` of an address as the header has it (`PfAddr::octets`).
    #[inline(always)]
    pub fn lookup_octets(&mut self, side: usize, a: &[u8; 16]) -> u32 {
        let side = side & 1;
        if self.addr[side] == *a && self.id[side] != NO_ID {
            return self.id[side];
        }
        let id = lookup_value(u128::from_be_bytes(*a));
        (self.addr[side], self.id[side]) = (*a, id);
        id
    }
}

/// Whether `id` names `a` now: how a packet checks the ids a linked
/// state's key holds against its own addresses (the state its link names
/// holds its ids already), without hashing it.
#[inline(always)]
pub fn names(id: u32, a: PfAddr) -> bool {
    mirror_names(id, a.u128())
}

/// `lookup` when a writer was changing the shard's probe table: the
/// shard's map, under its lock.
#[cold]
#[inline(never)]
fn lookup_locked(sh: &Shard, a: u128) -> u32 {
    sh.map.lock().get(&a).map_or(NO_ID, |e| e.0)
}

/// `a`'s id, given one if it has none, counted as held once more.
pub fn acquire(a: PfAddr) -> u32 {
    let a = a.u128();
    let i = shard(a);
    let sh = &IDS.shards[i];
    let mut m = sh.map.lock();
    if let Some(e) = m.get_mut(&a) {
        e.1 += 1;
        return e.0;
    }
    let reused = {
        let mut f = IDS.free.lock();
        if f.len() > REUSE_DELAY {
            f.pop_front()
        } else {
            None
        }
    };
    let mut by_id = IDS.by_id.lock();
    let id = match reused {
        Some(id) => {
            by_id[id as usize] = a;
            id
        }
        None => {
            by_id.push(a);
            (by_id.len() - 1) as u32
        }
    };
    mirror_set(id, Some(a));
    m.insert(a, (id, 1));
    sh.insert(&HEADS.0[i], &m, a, id);
    id
}

/// One hold of `id` given back; the last one frees it.
pub fn release(id: u32) {
    if id == NO_ID {
        return;
    }
    let Some(a) = IDS.by_id.lock().get(id as usize).copied() else { return };
    let i = shard(a);
    let sh = &IDS.shards[i];
    let mut m = sh.map.lock();
    let Some(e) = m.get_mut(&a) else { return };
    if e.0 != id {
        return;
    }
    e.1 -= 1;
    if e.1 == 0 {
        m.remove(&a);
        sh.remove(&HEADS.0[i], a);
        // The mirror stops naming it before it can be handed out again.
        mirror_set(id, None);
        drop(m);
        IDS.free.lock().push_back(id);
    }
}

/// The address `id` stands for (`UNSPECIFIED` for `NO_ID` or a freed id
/// never reused).
pub fn addr_of(id: u32) -> PfAddr {
    let a = IDS.by_id.lock().get(id as usize).copied().unwrap_or(0);
    PfAddr([(a >> 96) as u32, (a >> 64) as u32, (a >> 32) as u32, a as u32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_keeps_its_id_while_held_and_loses_it_after() {
        let a = PfAddr::from_v6("2001:db8:ffff::77".parse().unwrap());
        assert_eq!(lookup(a), NO_ID);
        let id = acquire(a);
        assert_ne!(id, NO_ID);
        assert_eq!(acquire(a), id);
        assert_eq!(lookup(a), id);
        assert_eq!(addr_of(id), a);
        release(id);
        assert_eq!(lookup(a), id);
        release(id);
        assert_eq!(lookup(a), NO_ID);
        // A freed id is not handed out again at once.
        let b = PfAddr::from_v6("2001:db8:ffff::78".parse().unwrap());
        let id2 = acquire(b);
        assert_ne!(id2, id);
        release(id2);
    }

    /// `names` checks an id against the mirror: once freed, the id names
    /// nothing; once handed to another address, not the old one.
    #[test]
    fn the_mirror_names_an_id_only_while_it_stands_for_the_address() {
        let a = PfAddr::from_v6("2001:db8:fffe::1".parse().unwrap());
        let id = acquire(a);
        assert_eq!(lookup(a), id);
        assert!(names(id, a));
        release(id);
        assert!(!names(id, a));
        assert_eq!(lookup(a), NO_ID);
        // Another thread's lookups have the same answers.
        let b = PfAddr::from_v6("2001:db8:fffe::2".parse().unwrap());
        let idb = acquire(b);
        let got = std::thread::spawn(move || (lookup(b), lookup(b), lookup(a))).join().unwrap();
        assert_eq!(got, (idb, idb, NO_ID));
        // The id reused for another address: the first one does not get it.
        let again = acquire(a);
        assert_eq!(lookup(a), again);
        release(again);
        mirror_set(again, Some(b.u128()));
        assert!(!names(again, a));
        mirror_set(again, None);
        release(idb);
    }

    /// A memo answers as `lookup` for each side: the last id of that
    /// side's address, a lookup for another address, and no id kept for
    /// an address without one; an address given as its header's bytes
    /// has the same id as given as `pf_addr` words.
    #[test]
    fn a_memo_answers_as_a_lookup_for_each_side() {
        let a = PfAddr::from_v6("2001:db8:fffd::1".parse().unwrap());
        let b = PfAddr::from_v6("2001:db8:fffd::2".parse().unwrap());
        let mut m = Memo::default();
        assert_eq!((m.lookup(0, a), m.lookup(1, b)), (NO_ID, NO_ID));
        let (ia, ib) = (acquire(a), acquire(b));
        // An address without an id is looked up again: it has one now.
        assert_eq!((m.lookup(0, a), m.lookup(1, b)), (ia, ib));
        assert_eq!((m.lookup(0, a), m.lookup(1, b)), (ia, ib));
        assert_eq!((m.lookup(0, b), m.lookup(1, a)), (ib, ia));
        // An address as its header has it: the same ids, looked up or
        // from the memo, whichever way the memo learnt it.
        let (oa, ob) = (a.octets(), b.octets());
        let mut o = Memo::default();
        for _ in 0..2 {
            assert_eq!((o.lookup_octets(0, &oa), o.lookup_octets(1, &ob)), (ia, ib));
        }
        assert_eq!((o.lookup(0, a), o.lookup(1, b)), (ia, ib));
        assert_eq!((m.lookup_octets(0, &ob), m.lookup_octets(1, &oa)), (ib, ia));
        release(ia);
        release(ib);
        assert_eq!((m.lookup(1, b), m.lookup(0, a)), (NO_ID, NO_ID));
    }

    /// A fixed-seed xorshift.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// The lock-free probe table of one shard gives the map's answer for
    /// every address, through growth from `BASE` entries and removals
    /// that shift runs back (addresses close together, as a prefix's
    /// hosts are, and some whose hashes share a home).
    #[test]
    fn a_shards_probe_table_answers_as_its_map_through_growth_and_removals() {
        let (sh, hd) = (Shard::default(), Head::default());
        let mut m = IdMap::default();
        let universe: Vec<u128> = (0..1500u128)
            .map(|i| if i % 3 == 0 { (0x2001_0db8u128 << 96) | i } else { (0x2400u128 << 112) | (i << 80) | 7 })
            .collect();
        let mut next = rng(0x9e37_79b9);
        let mut id = 0u32;
        for round in 0..20_000 {
            let a = universe[next() as usize % universe.len()];
            // Grow for the first half, then mostly shrink.
            let add = next() % 100 < if round < 10_000 { 70 } else { 30 };
            if add && !m.contains_key(&a) {
                id += 1;
                m.insert(a, (id, 1));
                sh.insert(&hd, &m, a, id);
            } else if !add && m.remove(&a).is_some() {
                sh.remove(&hd, a);
            }
            if round % 500 == 0 || round == 19_999 {
                for &b in &universe {
                    assert_eq!(hd.probe(b), Some(m.get(&b).map_or(NO_ID, |e| e.0)), "round {round}, {b:x}");
                }
            }
        }
        assert!(sh.cur.load(Ordering::Relaxed) > 0, "the table grew");
    }

    /// Readers without the lock never see a held address without its id
    /// (nor with another's) while a writer adds and removes others in the
    /// same shard, growing and shifting its table.
    #[test]
    fn a_probe_never_loses_a_held_address_while_others_come_and_go() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let sh = Arc::new((Shard::default(), Head::default()));
        let held: Vec<u128> = (0..40u128).map(|i| (0x2001_0db8u128 << 96) | (i << 4)).collect();
        let mut m = IdMap::default();
        for (i, &a) in held.iter().enumerate() {
            m.insert(a, (i as u32 + 1, 1));
            sh.0.insert(&sh.1, &m, a, i as u32 + 1);
        }
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (sh, done, held) = (sh.clone(), done.clone(), held.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                loop {
                    // One more round after the writer stopped.
                    let stop = done.load(Ordering::Acquire);
                    for (i, &a) in held.iter().enumerate() {
                        if let Some(id) = sh.1.probe(a) {
                            assert_eq!(id, i as u32 + 1, "{a:x}");
                            seen += 1;
                        }
                    }
                    if stop {
                        break seen;
                    }
                }
            })
        };
        let mut next = rng(0x5eed);
        let mut id = 1000u32;
        let mut others: Vec<u128> = Vec::new();
        for round in 0..30_000 {
            if others.len() < 300 && (round < 15_000 || next().is_multiple_of(2)) {
                let a = (0x2001_0db8u128 << 96) | (next() as u128 & 0xfff) << 4 | 1;
                if let std::collections::hash_map::Entry::Vacant(v) = m.entry(a) {
                    id += 1;
                    v.insert((id, 1));
                    sh.0.insert(&sh.1, &m, a, id);
                    others.push(a);
                }
            } else if !others.is_empty() {
                let a = others.swap_remove(next() as usize % others.len());
                m.remove(&a);
                sh.0.remove(&sh.1, a);
            }
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0);
        for (i, &a) in held.iter().enumerate() {
            assert_eq!(sh.1.probe(a), Some(i as u32 + 1));
        }
    }
}
