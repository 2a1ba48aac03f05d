//! `StateTable`: the index shards, probes, reverse links, insert,
//! remove, purge.

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
/// Most keys `lookup_hints` takes at once.
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
    k0: AtomicU64,
    k1: AtomicU64,
    next: AtomicU32,
}

/// The translated keys of one slab chunk's slots, made with the chunk's
/// first translating state.
type NatChunk = OnceLock<Box<[NatSlot]>>;

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
    fn nat_slot(&self, idx: u32) -> Option<&NatSlot> {
        self.nat.get(idx as usize / CHUNK)?.get()?.get(idx as usize % CHUNK)
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

    /// Lock-free read of the state for `key` on `ifidx`.
    #[inline]
    pub fn probe(&self, key: (u64, u64), ifidx: u32) -> Probe {
        let Some(idx) = self.find_words(key, ifidx) else { return Probe::Miss };
        match self.read_view(idx, key, ifidx, false) {
            Some(v) => Probe::Hit(v),
            None => Probe::Busy,
        }
    }

    /// The state in slot `link - 1` if it is the one `probe(key, ifidx)`
    /// would find: live, usable on `ifidx`, holding `key`, and the only
    /// state on that key. `None` (take `probe`) otherwise. This follows a
    /// reverse link (pf.c `pf_find_state`, which goes from the packet's
    /// `pf.statekey` to `sk_reverse` instead of searching the tree); the
    /// link is only a hint, so a removed state, a slot reused for another
    /// key or a key that gained a second state all fall back to the
    /// search.
    #[inline(always)]
    pub fn probe_linked(&self, link: u32, key: (u64, u64), ifidx: u32) -> Option<StateView> {
        self.probe_linked_slot(link, key, ifidx).map(|(v, _)| v)
    }

    /// What the IPv4 fast path (`eval::fast4`) reads of the state for
    /// `key` on `ifidx` on the in hook (`IN`) or the out hook: the state
    /// in slot `link - 1` if `probe_linked` would take it, else the one a
    /// search finds (`find_words`, out of line), as `Cx::probe_linked`
    /// goes on to `probe`, only if
    /// its packets on this hook take the fast path (`FAST_IN`,
    /// `FAST_OUT`; those bits also say it is live and not purged, which
    /// is all `usable` adds to its interface test). `None`: no such state,
    /// or one the fast path leaves (off the fast path, or a writer at
    /// work), for the general path. (One read of the slot for both ways,
    /// so that what it found stays in registers, not in a copy returned
    /// through memory.) On the in hook `link` is `lookup_heads`'
    /// unverified hint; a miss there prefetches for pf out as
    /// `lookup_hints` does (`hint_missed`).
    #[inline(always)]
    pub fn probe_fast4<const IN: bool>(&self, link: u32, key: (u64, u64), ifidx: u32) -> Option<(FastView, &Slot)> {
        // (link 0: no slot, `u32::MAX`)
        let (mut idx, mut linked) = (link.wrapping_sub(1), true);
        loop {
            match self.read_fast_slot::<IN>(idx, key, ifidx, linked) {
                Some(found) => return found,
                None if linked => (idx, linked) = (self.find_words_cold(key, ifidx, IN)?, false),
                None => return None,
            }
        }
    }

    /// `probe_fast4`'s read of slot `idx`: `None` if it is not the state
    /// for `key` on `ifidx` (with `solo`, alone on its key) as
    /// `read_view_slot` decides (its liveness left to the fast bit),
    /// `Some(None)` if it is but the fast path leaves the packet (or the
    /// read was torn).
    #[inline(always)]
    #[allow(clippy::option_option)]
    fn read_fast_slot<const IN: bool>(
        &self,
        idx: u32,
        key: (u64, u64),
        ifidx: u32,
        solo: bool,
    ) -> Option<Option<(FastView, &Slot)>> {
        let s = self.slot(idx)?;
        let s1 = s.seq.load(Ordering::Acquire);
        let k = s.key_words();
        let bind = s.bind.load(Ordering::Relaxed);
        let rule = s.rule.load(Ordering::Relaxed);
        let extra = s.extra.load(Ordering::Relaxed);
        let rev = if IN { s.rev.load(Ordering::Relaxed) } else { 0 };
        // a translating state found by its translated key (never by a
        // link: `solo` speaks of its own key)
        let by_nat = k != key && !solo && (bind >> 40) as u8 & sflags::NAT != 0 && self.nat_key_is(idx, key);
        fence(Ordering::Acquire);
        if s1 & 1 != 0 || s.seq.load(Ordering::Relaxed) != s1 {
            return Some(None);
        }
        let kif = bind as u32;
        if (k != key && !by_nat) || (kif != 0 && kif != ifidx) || (solo && bind & BIND_SOLO == 0) {
            return None;
        }
        if (extra >> 48) as u8 & if IN { FAST_IN } else { FAST_OUT } == 0 {
            return Some(None);
        }
        let fwd = (bind >> 32) as u8 == if IN { DIR_IN } else { DIR_OUT };
        let nat = (bind >> 40) as u8 & sflags::NAT != 0;
        Some(Some((FastView { idx, fwd, nat, rule, rev }, s)))
    }

    /// `probe_linked_slot`, or when the link names no state that fits,
    /// the state a search finds for `key` on `ifidx` (`find_words`, out of
    /// line), read as `probe` reads it: what `Cx::probe_linked` finds,
    /// with the slot read. `None` also for a state a writer is busy with.
    /// IPv6's fast path (`eval::test_established6_words`); IPv4's has
    /// `probe_fast4`.
    #[inline(always)]
    pub fn probe_linked_or_search(&self, link: u32, key: (u64, u64), ifidx: u32) -> Option<(StateView, &Slot)> {
        // (link 0: no slot, `u32::MAX`)
        let (mut idx, mut linked) = (link.wrapping_sub(1), true);
        loop {
            if let Some(found) = self.read_view_slot(idx, key, ifidx, linked) {
                return Some(found);
            }
            if !linked {
                return None;
            }
            (idx, linked) = (self.find_words_cold(key, ifidx, false)?, false);
        }
    }

    /// `find_words` out of line, for a packet its link did not take to
    /// its state (~2 % of them at 10,000 flows: a key not first in its
    /// bucket, which the batch's hint guesses).
    #[cold]
    #[inline(never)]
    fn find_words_cold(&self, key: (u64, u64), ifidx: u32, inbound: bool) -> Option<u32> {
        if inbound {
            self.hint_missed(key);
        }
        self.find_words(key, ifidx)
    }

    /// `probe_linked` with the slot it read, for `touch_slot`.
    #[inline(always)]
    pub fn probe_linked_slot(&self, link: u32, key: (u64, u64), ifidx: u32) -> Option<(StateView, &Slot)> {
        let idx = link.checked_sub(1)?;
        self.read_view_slot(idx, key, ifidx, true)
    }

    /// A consistent read of slot `idx`'s mirrors, if it holds `key` and is
    /// usable on `ifidx` (and, with `solo`, is alone on its key).
    #[inline(always)]
    pub(super) fn read_view(&self, idx: u32, key: (u64, u64), ifidx: u32, solo: bool) -> Option<StateView> {
        self.read_view_slot(idx, key, ifidx, solo).map(|(v, _)| v)
    }

    /// `read_view` with the slot it read.
    #[inline(always)]
    fn read_view_slot(&self, idx: u32, key: (u64, u64), ifidx: u32, solo: bool) -> Option<(StateView, &Slot)> {
        let s = self.slot(idx)?;
        let s1 = s.seq.load(Ordering::Acquire);
        if s1 & 1 != 0 {
            return None;
        }
        let k = s.key_words();
        let bind = s.bind.load(Ordering::Relaxed);
        let rule = s.rule.load(Ordering::Relaxed);
        let extra = s.extra.load(Ordering::Relaxed);
        let alone = bind & BIND_SOLO != 0;
        let rev = s.rev.load(Ordering::Relaxed);
        // a translating state found by its translated key (never by a
        // link: `solo` speaks of its own key)
        let by_nat = k != key && !solo && (bind >> 40) as u8 & sflags::NAT != 0 && self.nat_key_is(idx, key);
        fence(Ordering::Acquire);
        if s.seq.load(Ordering::Relaxed) != s1
            || (k != key && !by_nat)
            || usable(bind, ifidx).is_none()
            || (solo && !alone)
        {
            return None;
        }
        let v = StateView {
            idx,
            direction: (bind >> 32) as u8,
            flags: (bind >> 40) as u8,
            timeout: (bind >> 48) as u8,
            src_state: (extra >> 32) as u8,
            dst_state: (extra >> 40) as u8,
            rule_nr: rule as u32,
            ruleset_gen: (rule >> 32) as u32,
            tag: extra as u16,
            rtable: (extra >> 16) as u16 as i16,
            rev,
            fast: (extra >> 48) as u8,
        };
        Some((v, s))
    }

    #[inline]
    fn nat_key_is(&self, idx: u32, key: (u64, u64)) -> bool {
        self.nat_slot(idx)
            .is_some_and(|n| n.k0.load(Ordering::Acquire) == key.0 && n.k1.load(Ordering::Acquire) == key.1)
    }

    /// Lookup guesses for a batch of in-hook keys, with their memory loads
    /// overlapped: every key's bucket is prefetched first, then every
    /// chain's first slot, then, where that slot holds the key, the slot
    /// its reverse link names (what pf out will read), else the bucket pf
    /// out will probe. `hints[i]` becomes slot + 1 of the first slot when
    /// it holds `keys[i]` (0 otherwise); a hint is only a guess, verified
    /// in full before use. A key whose second word is 0 (no key: a packet
    /// the fast parses do not take; a real key's holds its protocol) gets
    /// 0. Reads only.
    pub fn lookup_hints(&self, keys: &[(u64, u64)], hints: &mut [u32]) {
        // The first two passes: every bucket, then every chain's head.
        self.lookup_heads(keys, hints);
        let n = keys.len().min(hints.len()).min(HINT_BATCH);
        let (keys, hints) = (&keys[..n], &mut hints[..n]);
        let buckets: &[AtomicU32; BUCKETS] = (&self.buckets[..]).try_into().expect("BUCKETS buckets");
        let bucket_of = |k: (u64, u64)| self.bucket_of(k) & (BUCKETS - 1);
        let slots = self.slab.view();
        for (k, h) in keys.iter().zip(hints.iter_mut()) {
            if k.1 == 0 {
                continue;
            }
            match h.checked_sub(1).and_then(|i| slots.get(i)) {
                Some(s) if s.key_words() == *k => {
                    if let Some(r) = s.rev.load(Ordering::Relaxed).checked_sub(1).and_then(|i| slots.get(i)) {
                        // Read by pf out, after the whole batch went
                        // through pf in and routing: into L2.
                        prefetch_line_l2(r);
                    }
                }
                // No state for the key at the chain's head: pf out will
                // search too, with the reversed key (no NAT: the outbound
                // key of a forwarded packet is its inbound key reversed).
                _ => {
                    *h = 0;
                    prefetch_line_l2(&buckets[bucket_of(reversed(*k))]);
                }
            }
        }
    }

    /// `lookup_hints`' first two passes, for IPv4's batch loop
    /// (`batch::chunk4`): every key's bucket prefetched, then every
    /// chain's first slot, and `hints[i]` is slot + 1 of that first slot
    /// (0: an empty chain, or no key), *not verified*: whether it holds the
    /// key is the first thing the fast path reads of it anyway
    /// (`probe_fast4`, which with `test_established4` prefetches what
    /// `lookup_hints`' third pass does: `hint_missed`, `prefetch_rev`); a packet for the
    /// general path has its hint verified there (`verified_hint`). Reads
    /// only.
    pub fn lookup_heads(&self, keys: &[(u64, u64)], hints: &mut [u32]) {
        let n = keys.len().min(hints.len()).min(HINT_BATCH);
        let (keys, hints) = (&keys[..n], &mut hints[..n]);
        let buckets: &[AtomicU32; BUCKETS] = (&self.buckets[..]).try_into().expect("BUCKETS buckets");
        let slots = self.slab.view();
        let mut bucket = [0u32; HINT_BATCH];
        for (k, b) in keys.iter().zip(bucket.iter_mut()) {
            if k.1 != 0 {
                *b = self.bucket_of(*k) as u32;
                prefetch_line(&buckets[*b as usize & (BUCKETS - 1)]);
            }
        }
        for ((k, b), h) in keys.iter().zip(bucket.iter()).zip(hints.iter_mut()) {
            *h = 0;
            if k.1 != 0 {
                let head = buckets[*b as usize & (BUCKETS - 1)].load(Ordering::Relaxed);
                if let Some(s) = head.checked_sub(1).and_then(|i| slots.get(i)) {
                    prefetch_slot(s);
                    *h = head;
                }
            }
        }
    }

    /// `hint` (from `lookup_heads`) if its slot holds in-hook key `k`, else
    /// 0: what `lookup_hints` would have given, for the general path,
    /// which takes a hint as a state it may lock. Prefetches as
    /// `lookup_hints`' third pass does (`prefetch_rev`, `hint_missed`).
    #[inline]
    pub fn verified_hint(&self, k: (u64, u64), hint: u32) -> u32 {
        match hint.checked_sub(1).and_then(|i| self.slot(i)) {
            Some(s) if s.key_words() == k => {
                self.prefetch_rev(s.rev.load(Ordering::Relaxed));
                hint
            }
            _ => {
                self.hint_missed(k);
                0
            }
        }
    }

    /// For an in-hook packet whose state is in a slot of reverse link
    /// `rev`: the slot `rev` names (the state pf out will read, after the
    /// whole batch went through pf in and routing) into L2.
    #[inline(always)]
    pub fn prefetch_rev(&self, rev: u32) {
        if let Some(i) = rev.checked_sub(1) {
            // Not checked against the usable slots: a prefetch of any
            // address is only a hint, and a link names a slot handed out.
            self.slab.prefetch_l2(i);
        }
    }

    /// For an in-hook packet whose key `k` is not at its chain's head:
    /// pf out will search too, with the reversed key (no NAT: the
    /// outbound key of a forwarded packet is its inbound key reversed), so
    /// its bucket into L2.
    #[cold]
    #[inline(never)]
    pub fn hint_missed(&self, k: (u64, u64)) {
        prefetch_line_l2(&self.buckets[self.bucket_of(reversed(k))]);
    }

    /// Slot `idx`'s reverse link (`Slot::rev`).
    #[inline]
    pub fn rev(&self, idx: u32) -> u32 {
        self.slot(idx).map_or(0, |s| s.rev.load(Ordering::Relaxed))
    }

    /// Points slot `idx`'s reverse link at slot `to_link - 1` (written only
    /// when it changes, so a stable flow leaves the line clean).
    #[inline]
    pub fn set_rev(&self, idx: u32, to_link: u32) {
        if let Some(s) = self.slot(idx) {
            if s.rev.load(Ordering::Relaxed) != to_link {
                s.rev.store(to_link, Ordering::Relaxed);
            }
        }
    }

    /// Lock-free per-packet update after a `Hit`: counters of direction
    /// `fwd` and the last-activity time, written only when it moved by a
    /// second or more (pf keeps it in seconds) so workers hitting the same
    /// state do not trade its cache line for nothing. The counters are
    /// plain load + store (no locked RMW): exact while one worker carries
    /// a direction of a flow.
    #[inline]
    pub fn touch(&self, idx: u32, fwd: bool, bytes: u64, now: u64) {
        if let Some(s) = self.slot(idx) {
            Self::touch_slot(s, fwd, bytes, now);
        }
    }

    /// `touch` of the slot a `probe_linked_slot` read (not looked up again).
    #[inline(always)]
    pub fn touch_slot(s: &Slot, fwd: bool, bytes: u64, now: u64) {
        let i = if fwd { 0 } else { 1 };
        // A full word's packets carry out of the top: fold it.
        match s.recent[i].load(Ordering::Relaxed).checked_add(RECENT_ONE | bytes as u32) {
            Some(w) if bytes <= RECENT_MAX_BYTES => s.recent[i].store(w, Ordering::Relaxed),
            _ => fold_count(s, i, bytes),
        }
        let e = s.expire.load(Ordering::Relaxed);
        if now >= e.saturating_add(1_000_000_000) {
            s.expire.store(now, Ordering::Relaxed);
        }
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
            let chunk = self.nat[idx as usize / CHUNK].get_or_init(|| (0..CHUNK).map(|_| NatSlot::default()).collect());
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

/// `touch`'s count of a packet whose direction `i`'s `recent` word is
/// full: the word and the packet go into the totals under the slot's
/// lock (one packet in 255 at most).
#[cold]
#[inline(never)]
fn fold_count(s: &Slot, i: usize, bytes: u64) {
    let mut g = s.lock();
    g.fold_recent(i);
    g.packets[i] = g.packets[i].wrapping_add(1);
    g.bytes[i] = g.bytes[i].wrapping_add(bytes);
}
