//! The state table: states in a slab of fixed-size slots, found through a
//! sharded hash index keyed by `StateKey`.
//!
//! * Slab: chunks of `CHUNK` slots allocated on demand and never moved or
//!   freed while the table lives, so a slot index stays valid and workers
//!   reach a slot without any table-wide lock. Each slot holds one
//!   `StateData` (plain `Copy` data, no boxes) behind its own small mutex:
//!   the same state can be hit by two workers at once (one per direction).
//! * Index: `SHARDS` maps from key to the (at most `PER_KEY`) states that
//!   hang off it, if-bound ones first. A lookup takes one shard lock for a
//!   few nanoseconds; inserts and removals take it to change the map.
//! * Key/state split: a state has a wire key and a stack key, equal unless
//!   NAT rewrites the packet. NAT is not built, so both are the same key
//!   and only one is indexed; `StateData::key` is that key.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

/// Index shards (a power of two).
pub const SHARDS: usize = 64;
/// Slots per slab chunk.
pub const CHUNK: usize = 4096;
/// Most states per key (if-bound and floating, in and out).
pub const PER_KEY: usize = 2;
/// Most chunks: 4096 × 4096 = 16 M states.
const MAX_CHUNKS: usize = 4096;
const NONE: u32 = u32::MAX;

/// TCP peer states, as pf's `TCPS_*`.
pub mod tcps {
    pub const CLOSED: u8 = 0;
    pub const LISTEN: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECEIVED: u8 = 3;
    pub const ESTABLISHED: u8 = 4;
    pub const CLOSE_WAIT: u8 = 5;
    pub const FIN_WAIT_1: u8 = 6;
    pub const CLOSING: u8 = 7;
    pub const LAST_ACK: u8 = 8;
    pub const FIN_WAIT_2: u8 = 9;
    pub const TIME_WAIT: u8 = 10;
    pub const NAMES: [&str; 11] = [
        "CLOSED",
        "LISTEN",
        "SYN_SENT",
        "SYN_RCVD",
        "ESTABLISHED",
        "CLOSE_WAIT",
        "FIN_WAIT_1",
        "CLOSING",
        "LAST_ACK",
        "FIN_WAIT_2",
        "TIME_WAIT",
    ];
}

/// UDP and "other" peer states (`PFUDPS_*`, `PFOTHERS_*`).
pub mod udps {
    pub const NO_TRAFFIC: u8 = 0;
    pub const SINGLE: u8 = 1;
    pub const MULTIPLE: u8 = 2;
    pub const NAMES: [&str; 3] = ["NO_TRAFFIC", "SINGLE", "MULTIPLE"];
}

/// `PF_WSCALE_FLAG`: the peer sent a window scale option.
pub const WSCALE_FLAG: u8 = 0x80;
pub const WSCALE_MASK: u8 = 0x0f;

/// Which timeout a state is under (index into `Timeout::ALL` order of
/// `crate::names::Timeout`), plus `PURGE`.
pub type TimeoutId = u8;
/// The state is dead: removed at the next purge, never matched.
pub const TIMEOUT_PURGE: TimeoutId = u8::MAX;

/// The lookup key of a state, as pf's `pf_state_key`: addresses and ports
/// in the order of the packet that created the state for an inbound
/// state (index 0 is the source), reversed for an outbound one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateKey {
    pub addr: [Ipv4Addr; 2],
    pub port: [u16; 2],
    pub proto: u8,
    pub rtable: u16,
}

impl std::hash::Hash for StateKey {
    /// Two words instead of the derived per-byte walk: the index hashes
    /// every packet's key.
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        let a = (u32::from(self.addr[0]) as u64) << 32 | u32::from(self.addr[1]) as u64;
        let b = (self.port[0] as u64) << 48 | (self.port[1] as u64) << 32 | (self.proto as u64) << 16 | self.rtable as u64;
        h.write_u64(a);
        h.write_u64(b);
    }
}

impl Default for StateKey {
    fn default() -> Self {
        StateKey::empty()
    }
}

impl StateKey {
    pub const fn empty() -> StateKey {
        StateKey { addr: [Ipv4Addr::UNSPECIFIED; 2], port: [0; 2], proto: 0, rtable: 0 }
    }
}

/// One side of a connection, as pf's `pf_state_peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peer {
    pub seqlo: u32,
    pub seqhi: u32,
    /// Sequence number modulator (`modulate state`).
    pub seqdiff: u32,
    /// Largest window seen (unscaled).
    pub max_win: u16,
    /// `WSCALE_FLAG | shift` once the peer's SYN carried the option.
    pub wscale: u8,
    /// `tcps::*` or `udps::*` (ICMP: 0).
    pub state: u8,
}

/// State flags.
pub mod sflags {
    pub const SLOPPY: u8 = 1 << 0;
    /// `log (all)`: log every packet of the state.
    pub const LOG_ALL: u8 = 1 << 1;
    /// The creating rule allowed IP options.
    pub const ALLOW_OPTS: u8 = 1 << 2;
}

/// Packet direction as states record it (pf's `PF_IN`/`PF_OUT`).
pub const DIR_IN: u8 = 1;
pub const DIR_OUT: u8 = 2;

/// One state. Plain data, fixed size: `size_of::<Slot>() × 1M` fits in
/// 256 MB (a test checks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateData {
    pub key: StateKey,
    /// Interface index the state is bound to; 0 = floating (`all`).
    pub kif: u32,
    pub direction: u8,
    pub flags: u8,
    pub timeout: TimeoutId,
    /// The state's own timeouts: index into `StateTable::timeout_sets` (0 = the rule had none).
    pub timeout_set: u16,
    pub src: Peer,
    pub dst: Peer,
    /// Number of the rule that created the state in the ruleset of `ruleset_gen`.
    pub rule_nr: u32,
    pub ruleset_gen: u32,
    /// pf tag id given to the state's packets (0 = none).
    pub tag: u16,
    /// Routing table for the state's packets; -1 = unchanged.
    pub rtable: i16,
    /// Creation and last activity (nanoseconds of the injected clock).
    pub creation: u64,
    pub expire: u64,
    /// [0]: packets in the state's direction, [1]: the other way.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub id: u64,
    /// Slot in use.
    pub live: bool,
}

impl Default for StateData {
    fn default() -> Self {
        StateData {
            key: StateKey::empty(),
            kif: 0,
            direction: 0,
            flags: 0,
            timeout: 0,
            timeout_set: 0,
            src: Peer::default(),
            dst: Peer::default(),
            rule_nr: 0,
            ruleset_gen: 0,
            tag: 0,
            rtable: -1,
            creation: 0,
            expire: 0,
            packets: [0; 2],
            bytes: [0; 2],
            id: 0,
            live: false,
        }
    }
}

/// One slab slot.
pub type Slot = Mutex<StateData>;

/// Keyed hasher for the index (seeded per table, so flows cannot be
/// chosen to collide).
#[derive(Clone)]
pub struct KeyHasherBuilder(u64);

pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64)
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(i as u64)
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64)
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(23) ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64)
    }
}

impl BuildHasher for KeyHasherBuilder {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

/// A random 64-bit seed from std's per-process keys.
pub fn random_seed() -> u64 {
    let s = std::collections::hash_map::RandomState::new();
    let mut h = s.build_hasher();
    h.write_u64(0x5eed);
    h.finish()
}

type Shard = Mutex<HashMap<StateKey, [u32; PER_KEY], KeyHasherBuilder>>;

/// Why a state could not be inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// `set limit states` reached (pf's `state-limit` / `memory`).
    Limit,
    /// A state with the same key, interface and direction exists.
    Conflict,
}

pub struct StateTable {
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
    /// Slots handed out so far (high-water mark).
    next: AtomicU32,
    free: Mutex<Vec<u32>>,
    shards: Box<[Shard]>,
    hasher: KeyHasherBuilder,
    count: AtomicUsize,
    limit: AtomicUsize,
    next_id: AtomicU64,
    /// Where the incremental purge goes on from.
    purge_cursor: AtomicU32,
    pub inserts: AtomicU64,
    pub removals: AtomicU64,
}

impl StateTable {
    pub fn new(limit: usize) -> StateTable {
        let seed = random_seed();
        let hasher = KeyHasherBuilder(seed);
        StateTable {
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
            next: AtomicU32::new(0),
            free: Mutex::new(Vec::new()),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::with_hasher(hasher.clone()))).collect(),
            hasher,
            count: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            next_id: AtomicU64::new(1),
            purge_cursor: AtomicU32::new(0),
            inserts: AtomicU64::new(0),
            removals: AtomicU64::new(0),
        }
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// States in the table.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots ever handed out (the range `purge` and `for_each` visit).
    pub fn high_water(&self) -> u32 {
        self.next.load(Ordering::Acquire)
    }

    #[inline]
    pub fn slot(&self, idx: u32) -> Option<&Slot> {
        let c = self.chunks.get(idx as usize / CHUNK)?.get()?;
        c.get(idx as usize % CHUNK)
    }

    #[inline]
    fn shard(&self, key: &StateKey) -> &Shard {
        let h = self.hasher.hash_one(key);
        &self.shards[(h >> 58) as usize & (SHARDS - 1)]
    }

    /// The states hanging off `key` (if-bound first), as slot indices.
    #[inline]
    pub fn lookup(&self, key: &StateKey) -> [u32; PER_KEY] {
        let g = self.shard(key).lock();
        g.get(key).copied().unwrap_or([NONE; PER_KEY])
    }

    fn alloc_slot(&self) -> Option<u32> {
        if let Some(i) = self.free.lock().pop() {
            return Some(i);
        }
        let i = self.next.fetch_add(1, Ordering::AcqRel);
        let chunk = i as usize / CHUNK;
        if chunk >= MAX_CHUNKS {
            self.next.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.chunks[chunk].get_or_init(|| (0..CHUNK).map(|_| Mutex::new(StateData::default())).collect());
        Some(i)
    }

    /// Inserts a state; returns its slot index. `conflict` decides whether
    /// an existing state on the same key forbids this one (it is called
    /// with the existing state's data).
    pub fn insert(&self, mut st: StateData) -> Result<u32, InsertError> {
        let n = self.count.fetch_add(1, Ordering::AcqRel);
        if n >= self.limit() {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(InsertError::Limit);
        }
        let Some(idx) = self.alloc_slot() else {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(InsertError::Limit);
        };
        st.live = true;
        st.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = st.key;
        let bound = st.kif != 0;
        let mut shard = self.shard(&key).lock();
        let ent = shard.entry(key).or_insert([NONE; PER_KEY]);
        // pf_state_key_attach: same interface and direction is a conflict
        // unless the old state is closed down or dead.
        let mut free_pos = None;
        for (pos, &i) in ent.iter().enumerate() {
            if i == NONE {
                if free_pos.is_none() {
                    free_pos = Some(pos);
                }
                continue;
            }
            let Some(s) = self.slot(i) else { continue };
            let o = s.lock();
            if !o.live || o.key != key || o.timeout == TIMEOUT_PURGE {
                if free_pos.is_none() {
                    free_pos = Some(pos);
                }
                continue;
            }
            if o.kif == st.kif && o.direction == st.direction {
                drop(o);
                drop(shard);
                self.count.fetch_sub(1, Ordering::AcqRel);
                self.free.lock().push(idx);
                return Err(InsertError::Conflict);
            }
        }
        let Some(pos) = free_pos else {
            drop(shard);
            self.count.fetch_sub(1, Ordering::AcqRel);
            self.free.lock().push(idx);
            return Err(InsertError::Conflict);
        };
        *self.slot(idx).expect("allocated").lock() = st;
        ent[pos] = idx;
        // If-bound states before floating ones.
        if bound && pos > 0 {
            ent.swap(0, pos);
        }
        drop(shard);
        self.inserts.fetch_add(1, Ordering::Relaxed);
        Ok(idx)
    }

    /// Removes the state in slot `idx` (if still live and still `key`).
    pub fn remove(&self, idx: u32) -> bool {
        let Some(slot) = self.slot(idx) else { return false };
        let key = {
            let mut s = slot.lock();
            if !s.live {
                return false;
            }
            s.live = false;
            s.timeout = TIMEOUT_PURGE;
            s.key
        };
        {
            let mut shard = self.shard(&key).lock();
            if let Some(ent) = shard.get_mut(&key) {
                for i in ent.iter_mut() {
                    if *i == idx {
                        *i = NONE;
                    }
                }
                if ent.iter().all(|i| *i == NONE) {
                    shard.remove(&key);
                }
            }
        }
        self.free.lock().push(idx);
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.removals.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Copies of all live states with their slot indices.
    pub fn snapshot(&self) -> Vec<(u32, StateData)> {
        let mut v = vec![];
        for i in 0..self.high_water() {
            if let Some(s) = self.slot(i) {
                let d = *s.lock();
                if d.live {
                    v.push((i, d));
                }
            }
        }
        v.sort_by_key(|(_, d)| d.id);
        v
    }

    /// Removes the states `pred` picks; returns how many.
    pub fn remove_if(&self, mut pred: impl FnMut(&StateData) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.high_water() {
            let kill = match self.slot(i) {
                Some(s) => {
                    let d = s.lock();
                    d.live && pred(&d)
                }
                None => false,
            };
            if kill && self.remove(i) {
                n += 1;
            }
        }
        n
    }

    /// Visits `budget` slots from where the last call stopped, removing
    /// the states `expired` says are over (pf's purge thread, which walks
    /// a fraction of the table every second).
    pub fn purge_some(&self, budget: u32, mut expired: impl FnMut(&StateData) -> bool) -> usize {
        let hw = self.high_water();
        if hw == 0 {
            return 0;
        }
        let mut at = self.purge_cursor.load(Ordering::Relaxed) % hw;
        let mut n = 0;
        for _ in 0..budget.min(hw) {
            let kill = match self.slot(at) {
                Some(s) => {
                    let d = s.lock();
                    d.live && (d.timeout == TIMEOUT_PURGE || expired(&d))
                }
                None => false,
            };
            if kill && self.remove(at) {
                n += 1;
            }
            at = (at + 1) % hw;
        }
        self.purge_cursor.store(at, Ordering::Relaxed);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: u16) -> StateKey {
        StateKey { addr: ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()], port: [p, 22], proto: 6, rtable: 0 }
    }

    #[test]
    fn a_million_states_fit_in_256_mb() {
        let per_state = std::mem::size_of::<Slot>();
        // Index: one map entry (key + slots + hash overhead, generously).
        let index = std::mem::size_of::<(StateKey, [u32; PER_KEY])>() * 2;
        assert!((per_state + index) * 1_000_000 <= 256 << 20, "slot {per_state} B + index {index} B per state");
    }

    #[test]
    fn insert_lookup_remove_and_limit() {
        let t = StateTable::new(2);
        let a = t.insert(StateData { key: key(1), direction: DIR_IN, ..Default::default() }).unwrap();
        assert_eq!(t.lookup(&key(1))[0], a);
        assert_eq!(
            t.insert(StateData { key: key(1), direction: DIR_IN, ..Default::default() }),
            Err(InsertError::Conflict)
        );
        // Same key, other direction: both hang off the key.
        let b = t.insert(StateData { key: key(1), direction: DIR_OUT, ..Default::default() }).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.insert(StateData { key: key(2), ..Default::default() }), Err(InsertError::Limit));
        assert!(t.remove(a));
        assert!(!t.remove(a));
        assert_eq!(t.lookup(&key(1)), [NONE, b]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove_if(|_| true), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn if_bound_states_come_before_floating_ones() {
        let t = StateTable::new(10);
        let f = t.insert(StateData { key: key(1), direction: DIR_IN, ..Default::default() }).unwrap();
        let b = t.insert(StateData { key: key(1), direction: DIR_IN, kif: 3, ..Default::default() }).unwrap();
        assert_eq!(t.lookup(&key(1)), [b, f]);
    }
}
