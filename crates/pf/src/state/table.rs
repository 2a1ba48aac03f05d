//! `StateTable`: the index shards, the chain walk, insert, remove,
//! purge (its data-path reads are in `probe.rs`).

use super::*;

/// Writers' lock over the index buckets `b` with `b % SHARDS == shard`,
/// and a sequence the lock-free readers check: it moves (odd while in
/// progress) whenever a state leaves one of the shard's chains, the only
/// change that can send a reader astray.
#[repr(align(64))]
pub(super) struct Shard {
    pub(super) lock: Mutex<()>,
    pub(super) version: AtomicU32,
}

/// Index buckets (a power of two): chain heads, `slot + 1` (0: empty).
#[cfg(not(any(loom, miri, fuzzing)))]
pub const BUCKETS: usize = 1 << 20;
/// Under Miri, which retags the whole bucket array at each index into it,
/// and in the fuzz targets (`--cfg fuzzing`), which make a table per input:
/// 4 MB of index zeroed each time was most of the control target's run
/// (and longer chains there are no loss: collisions get exercised).
#[cfg(all(any(miri, fuzzing), not(loom)))]
pub const BUCKETS: usize = 1 << 10;
/// Under loom: every key on one chain (and the placement independent of
/// the table's random seed, which loom's replays need).
#[cfg(loom)]
pub const BUCKETS: usize = 1;
/// Most keys `lookup_heads` takes at once.
pub const HINT_BATCH: usize = 64;
/// Longest chain a lock-free probe walks before it takes the shard lock.
pub(super) const MAX_HOPS: u32 = 64;

/// A state's own key words and its translated ones, if it translates.
pub type StateKeys = ((u64, u64), Option<(u64, u64)>);

/// A chain link (slot + 1) with this bit reaches the slot by its
/// translated key (`NatSlot`), and goes on by `NatSlot::next`.
pub const NAT_LINK: u32 = 1 << 31;

/// A translating state's second index entry: its translated key words
/// and its link in that key's chain. Slot `i`'s is `nat[i]`.
#[derive(Default)]
pub struct NatSlot {
    pub(super) k0: AtomicU64,
    pub(super) k1: AtomicU64,
    next: AtomicU32,
}

/// The translated keys of one slab chunk's slots, made with the chunk's
/// first translating state.
/// (A fixed length: a slot's place in it needs no bounds check.)
type NatChunk = OnceLock<Box<[NatSlot; CHUNK]>>;

/// The scrub values (`ScrubActs::pack`) of one slab chunk's slots, made
/// with the chunk's first scrubbing state: kept beside the slots, whose
/// state data fills its cache lines to the byte.
type ScrubChunk = OnceLock<Box<[AtomicU64]>>;
/// `scrub (reassemble tcp)` peers by slot (`crate::tcpnorm::PeerScrub`,
/// four words each: the state's source, then its destination).
type TcpScrubChunk = OnceLock<Box<[[AtomicU64; 8]]>>;

/// Why a state could not be inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// `set limit states` reached (pf's `state-limit` / `memory`).
    Limit,
    /// A state with the same key, interface and direction exists.
    Conflict,
}

pub struct StateTable {
    pub(super) slab: Slab,
    /// Slots handed out so far (high-water mark).
    pub(super) next: AtomicU32,
    pub(super) free: Mutex<Vec<u32>>,
    pub(super) buckets: HugeArray<AtomicU32>,
    pub(super) shards: Box<[Shard]>,
    pub(super) seed: u64,
    pub(super) count: AtomicUsize,
    pub(super) limit: AtomicUsize,
    pub(super) next_id: AtomicU64,
    /// Where the incremental purge goes on from.
    pub(super) purge_cursor: AtomicU32,
    /// Translated keys and links by slot, a chunk of them made at the
    /// chunk's first translating state.
    pub(super) nat: Box<[NatChunk]>,
    /// Scrub values by slot, for states with `sflags::SCRUB`.
    pub(super) scrub: Box<[ScrubChunk]>,
    /// TCP normalization by slot, for states whose scrub values have
    /// `scrubflags::SCRUB_TCP`.
    pub(super) tcp_scrub: Box<[TcpScrubChunk]>,
    /// `StateCold` by slot, for states with `LOG_MATCHES_ALL` or `ROUTED`.
    pub(super) cold: Box<[ColdChunk]>,
    pub inserts: AtomicU64,
    pub removals: AtomicU64,
}

impl StateTable {
    pub fn new(limit: usize) -> StateTable {
        StateTable {
            slab: Slab::new(),
            next: AtomicU32::new(0),
            free: Mutex::new(Vec::new()),
            buckets: HugeArray::zeroed(BUCKETS),
            shards: (0..SHARDS).map(|_| Shard { lock: Mutex::new(()), version: AtomicU32::new(0) }).collect(),
            seed: random_seed(),
            count: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            next_id: AtomicU64::new(1),
            purge_cursor: AtomicU32::new(0),
            nat: (0..MAX_CHUNKS).map(|_| NatChunk::new()).collect(),
            scrub: (0..MAX_CHUNKS).map(|_| ScrubChunk::new()).collect(),
            tcp_scrub: (0..MAX_CHUNKS).map(|_| TcpScrubChunk::new()).collect(),
            cold: (0..MAX_CHUNKS).map(|_| ColdChunk::new()).collect(),
            inserts: AtomicU64::new(0),
            removals: AtomicU64::new(0),
        }
    }

    /// The id the next inserted state gets (pf starts its ids at the
    /// boot time shifted left 32 bits, so ids do not repeat across boots).
    pub fn set_next_id(&self, id: u64) {
        self.next_id.store(id, Ordering::Relaxed);
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
        self.slab.get(idx)
    }

    #[inline]
    pub(super) fn bucket_of(&self, k: (u64, u64)) -> usize {
        let h = fmix((k.0 ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(23) ^ k.1);
        h as usize & (BUCKETS - 1)
    }

    #[inline]
    pub(super) fn shard_of(&self, bucket: usize) -> &Shard {
        &self.shards[bucket & (SHARDS - 1)]
    }

    /// Slot `idx`'s translated key entry, if there is a side array.
    #[inline]
    pub(super) fn nat_slot(&self, idx: u32) -> Option<&NatSlot> {
        Some(&self.nat.get(idx as usize / CHUNK)?.get()?[idx as usize % CHUNK])
    }

    /// The key a chain link reaches its slot by, and the chain's next
    /// link after it. `None`: no such slot.
    #[inline]
    pub(super) fn chain_at(&self, link: u32) -> Option<(u32, &Slot, (u64, u64), u32)> {
        let idx = (link & !NAT_LINK).checked_sub(1)?;
        let s = self.slot(idx)?;
        if link & NAT_LINK == 0 {
            return Some((idx, s, s.key_words(), s.next.load(Ordering::Acquire)));
        }
        let n = self.nat_slot(idx)?;
        let k = (n.k0.load(Ordering::Acquire), n.k1.load(Ordering::Acquire));
        Some((idx, s, k, n.next.load(Ordering::Acquire)))
    }

    /// The translated key of the state in slot `idx` (a translating
    /// state's), as index words.
    #[inline]
    pub fn nat_key(&self, idx: u32) -> Option<(u64, u64)> {
        let s = self.slot(idx)?;
        if (s.bind.load(Ordering::Acquire) >> 40) as u8 & sflags::NAT == 0 {
            return None;
        }
        let n = self.nat_slot(idx)?;
        Some((n.k0.load(Ordering::Acquire), n.k1.load(Ordering::Acquire)))
    }

    /// Slot `idx`'s own key words (whatever it holds now: a caller
    /// verifies them against its packet).
    #[inline(always)]
    pub fn key_words_of(&self, idx: u32) -> Option<(u64, u64)> {
        self.slot(idx).map(|s| s.key_words())
    }

    /// Slot `idx`'s own key words and, for a translating state, its
    /// translated ones: what the lock-free path rewrites a packet by (both
    /// stay for the state's life; a caller matches them against its
    /// packet, so a slot reused meanwhile shows as no match).
    #[inline]
    pub fn keys(&self, idx: u32) -> Option<StateKeys> {
        let s = self.slot(idx)?;
        Some((s.key_words(), self.nat_key(idx)))
    }

    /// Whether any live state has `k` as a key (its own or its translated
    /// one), whatever its interface: pf_get_sport's test that a translated
    /// tuple is free.
    pub fn key_in_use(&self, k: (u64, u64)) -> bool {
        let b = self.bucket_of(k);
        let shard = self.shard_of(b);
        // Lock-free as `find_words`; a tuple taken meanwhile is caught by
        // `insert_nat`'s conflict check.
        for _ in 0..4 {
            let v1 = shard.version.load(Ordering::Acquire);
            if v1 & 1 == 0 {
                let r = self.any_live(b, k);
                fence(Ordering::Acquire);
                if let Some(found) = r {
                    if shard.version.load(Ordering::Relaxed) == v1 {
                        return found;
                    }
                }
            }
            spin_loop();
        }
        let _g = shard.lock.lock();
        self.any_live(b, k).unwrap_or(true)
    }

    /// Whether bucket `b`'s chain holds a live state on `k` (`None`: the
    /// walk was cut short).
    fn any_live(&self, b: usize, k: (u64, u64)) -> Option<bool> {
        let mut cur = self.buckets[b].load(Ordering::Acquire);
        let mut hops = 0;
        while cur != 0 {
            let (_, s, key, next) = self.chain_at(cur)?;
            let bind = s.bind.load(Ordering::Acquire);
            if key == k && bind & BIND_LIVE != 0 && (bind >> 48) as u8 != TIMEOUT_PURGE {
                return Some(true);
            }
            cur = next;
            hops += 1;
            if hops >= MAX_HOPS * 4 {
                return None;
            }
        }
        Some(false)
    }

    /// Walks bucket `b`'s chain for the state usable on `ifidx` (bound to
    /// it first, else floating). `None` in the second place: the walk was
    /// cut short.
    #[inline]
    pub(super) fn walk(&self, b: usize, k: (u64, u64), ifidx: u32) -> (u32, bool) {
        let mut cur = self.buckets[b].load(Ordering::Acquire);
        let mut floating = NONE;
        let mut hops = 0;
        while cur != 0 {
            let Some((idx, s, key, next)) = self.chain_at(cur) else { return (NONE, false) };
            if key == k {
                match usable(s.bind.load(Ordering::Acquire), ifidx) {
                    Some(true) => return (idx, true),
                    Some(false) if floating == NONE => floating = idx,
                    _ => {}
                }
            }
            cur = next;
            hops += 1;
            if hops >= MAX_HOPS {
                return (NONE, false);
            }
        }
        (floating, true)
    }

    /// The state for `key` usable on interface `ifidx` (if-bound to it
    /// before floating), as a slot index. Lock-free unless the shard
    /// changes under the walk; the caller checks the slot's key again.
    #[inline]
    pub fn find(&self, key: &StateKey, ifidx: u32) -> Option<u32> {
        self.find_words(pack(key), ifidx)
    }

    /// `find` by key words (`StateKey::words`).
    #[inline]
    pub fn find_words(&self, k: (u64, u64), ifidx: u32) -> Option<u32> {
        let b = self.bucket_of(k);
        let shard = self.shard_of(b);
        for _ in 0..4 {
            let v1 = shard.version.load(Ordering::Acquire);
            if v1 & 1 == 0 {
                let (idx, complete) = self.walk(b, k, ifidx);
                fence(Ordering::Acquire);
                if complete && shard.version.load(Ordering::Relaxed) == v1 {
                    return (idx != NONE).then_some(idx);
                }
            }
            spin_loop();
        }
        let _g = shard.lock.lock();
        let (idx, _) = self.walk(b, k, ifidx);
        (idx != NONE).then_some(idx)
    }

    /// All live states on `key` (tests).
    pub fn lookup_all(&self, key: &StateKey) -> Vec<u32> {
        let k = pack(key);
        let b = self.bucket_of(k);
        let _g = self.shard_of(b).lock.lock();
        let mut v = vec![];
        let mut cur = self.buckets[b].load(Ordering::Acquire);
        while let Some((idx, s, key, next)) = self.chain_at(cur) {
            if key == k && s.bind.load(Ordering::Relaxed) & BIND_LIVE != 0 {
                v.push(idx);
            }
            cur = next;
        }
        v
    }

    /// Runs `f` on the state for `key` usable on `ifidx`, under the slot's
    /// lock; `f` gets the slot index too. `None` when there is none.
    pub fn with_state<R>(&self, k: (u64, u64), ifidx: u32, f: impl FnOnce(u32, &mut StateData) -> R) -> Option<R> {
        self.with_state_linked(0, k, ifidx, |idx, _, st| f(idx, st)).map(|(_, r)| r)
    }

    /// `with_state`, trying the reverse link `link` (slot + 1, 0: none)
    /// first as `probe_linked` does; `f` gets the slot index and the
    /// slot's reverse link. Returns the slot index with `f`'s result.
    pub fn with_state_linked<R>(
        &self,
        link: u32,
        k: (u64, u64),
        ifidx: u32,
        f: impl FnOnce(u32, u32, &mut StateData) -> R,
    ) -> Option<(u32, R)> {
        // (For an IPv6 key `pack` looks its addresses' ids up again; the
        // slot's own index words would do, but choosing between them
        // here costs the IPv4 TCP path ~10 ns a packet.)
        let ok = |idx: u32, g: &SlotGuard| {
            g.live
                && (pack(&g.key) == k || (g.flags & sflags::NAT != 0 && self.nat_key_is(idx, k)))
                && g.timeout != TIMEOUT_PURGE
                && (g.kif == 0 || g.kif == ifidx)
        };
        if let Some(s) = link.checked_sub(1).and_then(|i| self.slot(i)) {
            let mut g = s.lock();
            if pack(&g.key) == k && ok(link - 1, &g) && s.bind.load(Ordering::Relaxed) & BIND_SOLO != 0 {
                let rev = s.rev.load(Ordering::Relaxed);
                return Some((link - 1, f(link - 1, rev, &mut g)));
            }
        }
        for _ in 0..4 {
            let idx = self.find_words(k, ifidx)?;
            let Some(s) = self.slot(idx) else { continue };
            let mut g = s.lock();
            if ok(idx, &g) {
                let rev = s.rev.load(Ordering::Relaxed);
                return Some((idx, f(idx, rev, &mut g)));
            }
        }
        // The slot kept changing under us: walk with the shard held.
        let b = self.bucket_of(k);
        let _sg = self.shard_of(b).lock.lock();
        let (idx, _) = self.walk(b, k, ifidx);
        let s = self.slot(idx)?;
        let mut g = s.lock();
        let rev = s.rev.load(Ordering::Relaxed);
        Some((idx, f(idx, rev, &mut g)))
    }

    pub(super) fn alloc_slot(&self) -> Option<u32> {
        if let Some(i) = self.free.lock().pop() {
            return Some(i);
        }
        let i = self.next.fetch_add(1, Ordering::AcqRel);
        if !self.slab.ensure(i) {
            self.next.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(i)
    }

    /// Inserts a state; returns its slot index. An existing live state on
    /// the same key with the same interface and direction (or `PER_KEY`
    /// of them) is a conflict, as pf_state_key_attach.
    pub fn insert(&self, st: StateData) -> Result<u32, InsertError> {
        self.insert_nat(st, None)
    }

    /// The shards of buckets `b` and `b2` locked in a fixed order (one
    /// lock when they share a shard).
    fn lock_two(
        &self,
        b: usize,
        b2: Option<usize>,
    ) -> (crate::sync::MutexGuard<'_, ()>, Option<crate::sync::MutexGuard<'_, ()>>) {
        let s1 = b & (SHARDS - 1);
        match b2.map(|b2| b2 & (SHARDS - 1)) {
            Some(s2) if s2 != s1 => {
                let (lo, hi) = if s1 < s2 { (s1, s2) } else { (s2, s1) };
                let g1 = self.shards[lo].lock.lock();
                let g2 = self.shards[hi].lock.lock();
                (g1, Some(g2))
            }
            _ => (self.shards[s1].lock.lock(), None),
        }
    }

    /// Live states on `k` in bucket `b`: (all indexed, live and usable,
    /// whether one has `kif` and `direction`).
    fn on_key(&self, b: usize, k: (u64, u64), kif: u32, direction: u8) -> (u32, u32, bool) {
        let (mut all, mut live, mut conflict) = (0, 0, false);
        let mut cur = self.buckets[b].load(Ordering::Acquire);
        while let Some((_, s, key, next)) = self.chain_at(cur) {
            if key == k {
                all += 1;
                let bind = s.bind.load(Ordering::Acquire);
                if bind & BIND_LIVE != 0 && (bind >> 48) as u8 != TIMEOUT_PURGE {
                    live += 1;
                    if bind as u32 == kif && (bind >> 32) as u8 == direction {
                        conflict = true;
                    }
                }
            }
            cur = next;
        }
        (all, live, conflict)
    }

    /// Marks the states indexed on `k` by their own key as no longer alone.
    fn clear_solo(&self, b: usize, k: (u64, u64)) {
        let mut cur = self.buckets[b].load(Ordering::Acquire);
        while let Some((_, s, key, next)) = self.chain_at(cur) {
            if key == k && cur & NAT_LINK == 0 {
                let _g = s.lock();
                s.bind.store(s.bind.load(Ordering::Relaxed) & !BIND_SOLO, Ordering::Relaxed);
            }
            cur = next;
        }
    }

    /// `insert` of a state that translates: also indexed under `nat_key`
    /// (the translated key), which must be free as its own key is.
    pub fn insert_nat(&self, st: StateData, nat_key: Option<StateKey>) -> Result<u32, InsertError> {
        self.insert_scrubbed(st, nat_key, crate::scrub::ScrubActs::default())
    }

    /// `insert_nat` of a state that also scrubs its packets with `scrub`
    /// (none: `ScrubActs::default()`), which `sflags::SCRUB` then says.
    pub fn insert_scrubbed(
        &self,
        st: StateData,
        nat_key: Option<StateKey>,
        scrub: crate::scrub::ScrubActs,
    ) -> Result<u32, InsertError> {
        self.insert_scrubbed_tcp(st, nat_key, scrub, None, StateCold::default())
    }

    /// `insert_scrubbed` of a `reassemble tcp` state (`scrub` has
    /// `SCRUB_TCP`) with its peers' normalization as the creating packet
    /// left it (`crate::tcpnorm::on_create`).
    pub fn insert_scrubbed_tcp(
        &self,
        mut st: StateData,
        nat_key: Option<StateKey>,
        scrub: crate::scrub::ScrubActs,
        peers: Option<[crate::tcpnorm::PeerScrub; 2]>,
        cold: StateCold,
    ) -> Result<u32, InsertError> {
        // An IPv6 key's addresses get their ids first (`v6ids`); every
        // way out without a state gives them back.
        hold_key(&st.key);
        let own = pack(&st.key);
        let nk = nat_key.and_then(|k| {
            hold_key(&k);
            let w = pack(&k);
            // A translated key equal to its own is not indexed twice: its
            // second hold goes back at once.
            if w == own {
                release_key(w);
                return None;
            }
            Some(w)
        });
        let give_back = || {
            release_key(own);
            if let Some(w) = nk {
                release_key(w);
            }
        };
        // The count goes up only below the limit, so that no reader of
        // `len` (`pfctl -si`'s current entries) ever sees it past the
        // limit, not even for a moment (pf's pool_sethardlimit on
        // pf_state_pl: pool_get fails at the limit).
        let limit = self.limit();
        if self.count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).is_err() {
            give_back();
            return Err(InsertError::Limit);
        }
        let Some(idx) = self.alloc_slot() else {
            self.count.fetch_sub(1, Ordering::AcqRel);
            give_back();
            return Err(InsertError::Limit);
        };
        st.live = true;
        st.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if nk.is_some() {
            // The translated key's ids stay held with the state's own.
            st.flags |= sflags::NAT;
        } else {
            st.flags &= !sflags::NAT;
        }
        if scrub.any() {
            st.flags |= sflags::SCRUB;
        } else {
            st.flags &= !sflags::SCRUB;
        }
        let k = pack(&st.key);
        let b = self.bucket_of(k);
        let b2 = nk.map(|nk| self.bucket_of(nk));
        let locks = self.lock_two(b, b2);
        let (all, live, conflict) = self.on_key(b, k, st.kif, st.direction);
        let (nat_all, nat_conflict) = match nk {
            Some(nk) => {
                let (a, l, c) = self.on_key(b2.expect("with nk"), nk, st.kif, st.direction);
                (a, c || l >= PER_KEY as u32)
            }
            None => (0, false),
        };
        if conflict || live >= PER_KEY as u32 || nat_conflict {
            drop(locks);
            self.count.fetch_sub(1, Ordering::AcqRel);
            self.free.lock().push(idx);
            give_back();
            return Err(InsertError::Conflict);
        }
        // The states already on the keys are no longer alone on them.
        if all > 0 {
            self.clear_solo(b, k);
        }
        if let (Some(nk), true) = (nk, nat_all > 0) {
            self.clear_solo(b2.expect("with nk"), nk);
        }
        let s = self.slot(idx).expect("allocated");
        if let Some(nk) = nk {
            let chunk = self.nat[idx as usize / CHUNK].get_or_init(|| {
                let all: Box<[NatSlot]> = (0..CHUNK).map(|_| NatSlot::default()).collect();
                all.try_into().unwrap_or_else(|_| unreachable!("CHUNK slots"))
            });
            let e = &chunk[idx as usize % CHUNK];
            e.k0.store(nk.0, Ordering::Relaxed);
            e.k1.store(nk.1, Ordering::Relaxed);
            let b2 = b2.expect("with nk");
            e.next.store(self.buckets[b2].load(Ordering::Relaxed), Ordering::Release);
        }
        if st.flags & (sflags::LOG_MATCHES_ALL | sflags::ROUTED) != 0 {
            // Written before the state is published (the bucket store).
            self.set_cold(idx, &cold);
        }
        if scrub.any() {
            // Written before the state is published (the bucket store).
            let chunk =
                self.scrub[idx as usize / CHUNK].get_or_init(|| (0..CHUNK).map(|_| AtomicU64::new(0)).collect());
            chunk[idx as usize % CHUNK].store(scrub.pack(), Ordering::Relaxed);
        }
        if scrub.flags & crate::scrub::scrubflags::SCRUB_TCP != 0 {
            // A slot's previous peers are replaced here
            // (pf_normalize_tcp_cleanup's part): both start as none.
            let chunk = self.tcp_scrub[idx as usize / CHUNK]
                .get_or_init(|| (0..CHUNK).map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect());
            let e = &chunk[idx as usize % CHUNK];
            let p = peers.unwrap_or_default();
            for (k, peer) in p.iter().enumerate() {
                for (i, w) in peer.pack().into_iter().enumerate() {
                    e[k * 4 + i].store(w, Ordering::Relaxed);
                }
            }
        }
        {
            let mut g = s.lock();
            *g = st;
            // What was counted into the slot's `recent` words before (its
            // last state's, or a stale link's) is not this state's.
            g.fold_recent(0);
            g.fold_recent(1);
            g.publish_all();
            let solo = if all == 0 { BIND_SOLO } else { 0 };
            s.bind.store(s.bind.load(Ordering::Relaxed) & !BIND_SOLO | solo, Ordering::Relaxed);
            s.rev.store(0, Ordering::Relaxed);
            g.before = st.expire;
            s.next.store(self.buckets[b].load(Ordering::Relaxed), Ordering::Release);
        }
        self.buckets[b].store(idx + 1, Ordering::Release);
        if let Some(b2) = b2 {
            self.buckets[b2].store((idx + 1) | NAT_LINK, Ordering::Release);
        }
        drop(locks);
        self.inserts.fetch_add(1, Ordering::Relaxed);
        Ok(idx)
    }

    /// Removes the state in slot `idx` (if still live).
    pub fn remove(&self, idx: u32) -> bool {
        self.remove_id(idx, None)
    }

    /// Takes `link` out of bucket `b`'s chain (the shard is held and its
    /// version odd).
    fn unlink(&self, b: usize, link: u32) {
        let Some((_, _, _, after)) = self.chain_at(link) else { return };
        let mut cur = self.buckets[b].load(Ordering::Relaxed);
        if cur == link {
            self.buckets[b].store(after, Ordering::Release);
            return;
        }
        while let Some((idx, s, _, next)) = self.chain_at(cur) {
            if next == link {
                if cur & NAT_LINK == 0 {
                    s.next.store(after, Ordering::Release);
                } else if let Some(n) = self.nat_slot(idx) {
                    n.next.store(after, Ordering::Release);
                }
                return;
            }
            cur = next;
        }
    }

    /// After a state left key `k`'s chain in bucket `b`: a state left
    /// alone on its own key can be found by its link again.
    fn restore_solo(&self, b: usize, k: (u64, u64)) {
        let mut left = None;
        let mut others = 0;
        let mut cur = self.buckets[b].load(Ordering::Relaxed);
        while let Some((_, s, key, next)) = self.chain_at(cur) {
            if key == k {
                others += 1;
                left = (cur & NAT_LINK == 0).then_some(s);
            }
            cur = next;
        }
        if let (1, Some(s)) = (others, left) {
            let _g = s.lock();
            s.bind.store(s.bind.load(Ordering::Relaxed) | BIND_SOLO, Ordering::Relaxed);
        }
    }

    /// Removes the state in slot `idx` if it is still live (and still
    /// state `id`, when given: the slot may have been reused since).
    pub(super) fn remove_id(&self, idx: u32, id: Option<u64>) -> bool {
        let Some(slot) = self.slot(idx) else { return false };
        let k = slot.key_words();
        let b = self.bucket_of(k);
        // A state's translated key is set at insert and kept for its life.
        let nk = self.nat_key(idx);
        let b2 = nk.map(|nk| self.bucket_of(nk));
        let locks = self.lock_two(b, b2);
        {
            let mut g = slot.lock();
            if !g.live || pack(&g.key) != k || id.is_some_and(|id| g.id != id) {
                return false;
            }
            if (g.flags & sflags::NAT != 0) != nk.is_some() {
                return false;
            }
            g.live = false;
            g.timeout = TIMEOUT_PURGE;
        }
        // Unlink; readers walking the chains see the versions move.
        let shards: Vec<&Shard> = match b2.map(|b2| b2 & (SHARDS - 1)) {
            Some(s2) if s2 != b & (SHARDS - 1) => vec![self.shard_of(b), &self.shards[s2]],
            _ => vec![self.shard_of(b)],
        };
        let vs: Vec<u32> = shards.iter().map(|sh| sh.version.load(Ordering::Relaxed)).collect();
        for (sh, v) in shards.iter().zip(&vs) {
            sh.version.store(v.wrapping_add(1), Ordering::Relaxed);
        }
        fence(Ordering::Release);
        self.unlink(b, idx + 1);
        if let Some(b2) = b2 {
            self.unlink(b2, (idx + 1) | NAT_LINK);
        }
        for (sh, v) in shards.iter().zip(&vs) {
            sh.version.store(v.wrapping_add(2), Ordering::Release);
        }
        self.restore_solo(b, k);
        if let (Some(b2), Some(nk)) = (b2, nk) {
            self.restore_solo(b2, nk);
        }
        drop(locks);
        self.free.lock().push(idx);
        // What insert held of an IPv6 key and of its translated key.
        release_key(k);
        if let Some(nk) = nk {
            release_key(nk);
        }
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.removals.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A copy of the state in slot `idx`, if live.
    pub fn get(&self, idx: u32) -> Option<StateData> {
        let g = self.slot(idx)?.lock();
        g.live.then_some(*g)
    }

    /// `f` on the live state in slot `idx` under its lock.
    pub fn with_slot<R>(&self, idx: u32, f: impl FnOnce(&StateData) -> R) -> Option<R> {
        let g = self.slot(idx)?.lock();
        if !g.live {
            return None;
        }
        Some(f(&g))
    }

    /// Copies of all live states with their slot indices.
    pub fn snapshot(&self) -> Vec<(u32, StateData)> {
        let mut v = vec![];
        for i in 0..self.high_water() {
            if let Some(d) = self.get(i) {
                v.push((i, d));
            }
        }
        v.sort_by_key(|(_, d)| d.id);
        v
    }

    /// How many live states `pred` picks (each looked at under its lock,
    /// nothing copied).
    pub fn count_if(&self, mut pred: impl FnMut(&StateData) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.high_water() {
            if let Some(slot) = self.slot(i) {
                let g = slot.lock();
                if g.live && pred(&g) {
                    n += 1;
                }
            }
        }
        n
    }

    /// Removes the states `pred` picks; returns how many.
    pub fn remove_if(&self, mut pred: impl FnMut(u32, &StateData) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.high_water() {
            let kill = self.get(i).filter(|d| pred(i, d)).map(|d| d.id);
            if kill.is_some() && self.remove_id(i, kill) {
                n += 1;
            }
        }
        n
    }

    /// Changes, under each one's lock, the live states `pred` picks;
    /// returns how many. (pf marks states to end this way, for the purge
    /// to remove them: a worker may call it.)
    pub fn update_if(&self, mut pred: impl FnMut(&StateData) -> bool, mut f: impl FnMut(&mut StateData)) -> usize {
        let mut n = 0;
        for i in 0..self.high_water() {
            if let Some(slot) = self.slot(i) {
                let mut g = slot.lock();
                if g.live && pred(&g) {
                    f(&mut g);
                    n += 1;
                }
            }
        }
        n
    }

    /// Visits `budget` slots from where the last call stopped, removing
    /// the states `expired` says are over (pf's purge thread, which walks
    /// a fraction of the table every second).
    pub fn purge_some(&self, budget: u32, mut expired: impl FnMut(u32, &StateData) -> bool) -> usize {
        let hw = self.high_water();
        if hw == 0 {
            return 0;
        }
        let mut at = self.purge_cursor.load(Ordering::Relaxed) % hw;
        let mut n = 0;
        for _ in 0..budget.min(hw) {
            // `expired` sees purge-marked states too (the caller counts
            // every state removed).
            let kill = self.get(at).filter(|d| expired(at, d)).map(|d| d.id);
            if kill.is_some() && self.remove_id(at, kill) {
                n += 1;
            }
            at = (at + 1) % hw;
        }
        self.purge_cursor.store(at, Ordering::Relaxed);
        n
    }
}
