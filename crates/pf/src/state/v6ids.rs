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
//! shard lock per address. A packet's lookup takes none when its thread
//! looked the address up before: each thread keeps a small direct-mapped
//! cache of address → id, and a cached id is used only after the id's
//! entry in `MIRROR` (a lock-free copy of which address each live id
//! names, under a sequence lock per entry, cleared when the id is freed)
//! confirms it. A miss takes the shard lock as before and fills the cache.

use std::cell::Cell;
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
type IdShard = Mutex<HashMap<u128, (u32, u32), std::hash::BuildHasherDefault<AddrHasher>>>;

struct Ids {
    shards: Box<[IdShard]>,
    /// id → address (index 0 unused).
    by_id: Mutex<Vec<u128>>,
    free: Mutex<VecDeque<u32>>,
}

static IDS: LazyLock<Ids> = LazyLock::new(|| Ids {
    shards: (0..SHARDS).map(|_| Mutex::new(HashMap::default())).collect(),
    by_id: Mutex::new(vec![0]),
    free: Mutex::new(VecDeque::new()),
});

#[inline]
fn shard(a: u128) -> usize {
    let x = (a as u64) ^ (a >> 64) as u64;
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % SHARDS
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

/// Entries of a thread's cache (a power of two): 32 KiB.
const CACHED: usize = 1024;

thread_local! {
    /// This thread's recent lookups: (address, id), by `cache_slot`.
    static CACHE: [Cell<(u128, u32)>; CACHED] = const { [const { Cell::new((0, NO_ID)) }; CACHED] };
}

#[inline]
fn cache_slot(a: u128) -> usize {
    let x = (a as u64 ^ (a >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> (64 - CACHED.ilog2())) as usize
}

/// The id of `a` while a state holds it, else `NO_ID`.
#[inline(always)]
pub fn lookup(a: PfAddr) -> u32 {
    let a = a.u128();
    let slot = cache_slot(a);
    let (ca, cid) = CACHE.with(|c| c[slot].get());
    if cid != NO_ID && ca == a && mirror_names(cid, a) {
        return cid;
    }
    lookup_locked(a, slot)
}

/// Whether `id` names `a` now: how a packet checks the ids a linked
/// state's key holds against its own addresses (the state its link names
/// holds its ids already), without hashing it or taking the cache.
#[inline(always)]
pub fn names(id: u32, a: PfAddr) -> bool {
    mirror_names(id, a.u128())
}

/// `lookup` past this thread's cache: the shard, under its lock.
#[cold]
#[inline(never)]
fn lookup_locked(a: u128, slot: usize) -> u32 {
    let id = IDS.shards[shard(a)].lock().get(&a).map_or(NO_ID, |e| e.0);
    if id != NO_ID {
        CACHE.with(|c| c[slot].set((a, id)));
    }
    id
}

/// `a`'s id, given one if it has none, counted as held once more.
pub fn acquire(a: PfAddr) -> u32 {
    let a = a.u128();
    let mut m = IDS.shards[shard(a)].lock();
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
    id
}

/// One hold of `id` given back; the last one frees it.
pub fn release(id: u32) {
    if id == NO_ID {
        return;
    }
    let Some(a) = IDS.by_id.lock().get(id as usize).copied() else { return };
    let mut m = IDS.shards[shard(a)].lock();
    let Some(e) = m.get_mut(&a) else { return };
    if e.0 != id {
        return;
    }
    e.1 -= 1;
    if e.1 == 0 {
        m.remove(&a);
        // Cached copies stop naming it before it can be handed out again.
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

    /// A thread's cached id is used only while the id still names the
    /// address: once freed, the cache says nothing; once handed to
    /// another address, the old one does not get it.
    #[test]
    fn a_cached_id_is_checked_against_the_mirror() {
        let a = PfAddr::from_v6("2001:db8:fffe::1".parse().unwrap());
        let id = acquire(a);
        assert_eq!(lookup(a), id);
        assert_eq!(lookup(a), id, "from the cache");
        assert!(mirror_names(id, a.u128()));
        release(id);
        assert!(!mirror_names(id, a.u128()));
        assert_eq!(lookup(a), NO_ID, "a freed id is not served from the cache");
        // Another thread's lookups have their own cache and the same answers.
        let b = PfAddr::from_v6("2001:db8:fffe::2".parse().unwrap());
        let idb = acquire(b);
        let got = std::thread::spawn(move || (lookup(b), lookup(b), lookup(a))).join().unwrap();
        assert_eq!(got, (idb, idb, NO_ID));
        // The id reused for another address: the first one's cached copy
        // must not find it.
        let again = acquire(a);
        assert_eq!(lookup(a), again);
        release(again);
        mirror_set(again, Some(b.u128()));
        assert_eq!(lookup(a), NO_ID);
        mirror_set(again, None);
        release(idb);
    }
}
