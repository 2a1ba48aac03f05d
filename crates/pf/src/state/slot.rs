//! A state's slot: the locked `StateData`, the lock-free mirrors and
//! counters the per-packet path reads, and the views taken of them.

use super::*;

/// One slab slot: the state behind a per-slot lock, plus atomic copies of
/// what the per-packet fast path reads (so it reads without the lock and
/// without a data race) and the counters it bumps.
///
/// `seq` is a sequence lock: odd while a writer holds the slot. Writers
/// (`lock`) change `data` and republish the mirrors before releasing;
/// readers of the mirrors check `seq` before and after.
///
/// Layout: one cache line holds everything the lock-free path reads and
/// writes (the mirrors, the time, the counts since the last fold); the
/// chain link and `data` (which holds the counters' totals) follow.
/// A state on the fast path costs one line (`RECENT_PKT_BITS`).
#[repr(C, align(64))]
pub struct Slot {
    pub(super) seq: AtomicU32,
    /// For an inbound state: slot + 1 of the state the out hook last found
    /// for this state's packets (0: none), the reverse link of pf.c's
    /// `sk_reverse`. Only a hint: written without the lock, always
    /// verified before use (`probe_linked`).
    pub(super) rev: AtomicU32,
    pub(super) k0: AtomicU64,
    pub(super) k1: AtomicU64,
    /// kif | direction << 32 | flags << 40 | timeout << 48 | `BIND_LIVE`
    /// | `BIND_SOLO`.
    pub(super) bind: AtomicU64,
    /// rule_nr | ruleset_gen << 32.
    pub(super) rule: AtomicU64,
    /// tag | rtable << 16 | src.state << 32 | dst.state << 40.
    pub(super) extra: AtomicU64,
    /// Authoritative last-activity time (`data`'s copy is filled in under
    /// the lock).
    pub(super) expire: AtomicU64,
    /// Packets and bytes counted lock-free by direction since they were
    /// last folded into `data`'s totals: packets in the top
    /// `RECENT_PKT_BITS` bits, bytes below. Only the lock-free counter of
    /// a direction (`StateTable::touch`) writes its word, and it folds the
    /// word into the totals under the lock when it would overflow; a lock
    /// holder sees totals + recent and writes back totals only, so a
    /// concurrent count is never undone.
    pub(super) recent: [AtomicU32; 2],
    /// Next state in the index bucket's chain (slot index + 1; 0 ends it).
    /// Read only by chain walks, which the fast path (a hint or a link)
    /// skips.
    pub(super) next: AtomicU32,
    pub(super) data: UnsafeCell<StateData>,
}

/// Packet bits of a `Slot::recent` word, above its byte bits: 255
/// packets (under loom one, so the models' second packet folds) between
/// folds, so the fold's lock and line come once in 255 packets at most.
#[cfg(not(loom))]
pub(super) const RECENT_PKT_BITS: u32 = 8;
#[cfg(loom)]
pub(super) const RECENT_PKT_BITS: u32 = 1;
pub(super) const RECENT_BYTE_BITS: u32 = 32 - RECENT_PKT_BITS;
/// One packet in a `recent` word.
pub(super) const RECENT_ONE: u32 = 1 << RECENT_BYTE_BITS;
/// The largest packet a `recent` word counts: a full word of packets this
/// size does not carry out of the byte bits (65,793 bytes: every IPv4
/// packet and every IPv6 packet but a jumbogram; larger ones fold).
pub(super) const RECENT_MAX_BYTES: u64 = ((1 << RECENT_BYTE_BITS) - 1) / ((1 << RECENT_PKT_BITS) - 1);

/// A `recent` word's (packets, bytes).
#[inline(always)]
pub(super) fn recent_parts(w: u32) -> (u64, u64) {
    ((w >> RECENT_BYTE_BITS) as u64, (w & (RECENT_ONE - 1)) as u64)
}

// SAFETY: `data` is only touched while `seq` is odd and held by the
// toucher (see `SlotGuard`); everything else is atomic.
unsafe impl Sync for Slot {}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            seq: AtomicU32::new(0),
            rev: AtomicU32::new(0),
            k0: AtomicU64::new(0),
            k1: AtomicU64::new(0),
            bind: AtomicU64::new(0),
            rule: AtomicU64::new(0),
            extra: AtomicU64::new(0),
            expire: AtomicU64::new(0),
            recent: [AtomicU32::new(0), AtomicU32::new(0)],
            next: AtomicU32::new(0),
            data: UnsafeCell::new(StateData::default()),
        }
    }
}

/// A slot held by its writer: derefs to the state, with `expire` read
/// from its atomic and the `recent` counts added to `packets` and
/// `bytes`; changes to them and the mirrored fields are published on
/// drop.
pub struct SlotGuard<'a> {
    pub(super) slot: &'a Slot,
    /// The state, reached through the cell (loom tracks the access
    /// while this lives, so it goes before the lock is released).
    data: std::mem::ManuallyDrop<crate::sync::MutPtr<StateData>>,
    pub(super) seq: u32,
    /// `expire` as read at lock time.
    pub(super) before: u64,
    /// The `recent` words added to the view at lock time (taken out
    /// again at drop: what was counted meanwhile stays in `recent`).
    pub(super) recent: [u32; 2],
}

impl Slot {
    /// Takes the slot's writer lock (a spin: holders keep it for a few
    /// dozen nanoseconds).
    pub fn lock(&self) -> SlotGuard<'_> {
        let mut spins = 0u32;
        let seq = loop {
            let s = self.seq.load(Ordering::Relaxed);
            if s & 1 == 0 && self.seq.compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                break s + 1;
            }
            spins += 1;
            if spins > 64 {
                crate::sync::yield_now();
            } else {
                spin_loop();
            }
        };
        // The odd `seq` must be visible before any mirror this writer
        // changes: a reader that sees a new mirror value and then (after
        // its acquire fence) `seq` must find it moved, or it takes a mix
        // of two states for one (Boehm, "Can seqlocks get along with
        // programming language memory models?", 2012). The acquire CAS
        // alone orders nothing after it for other threads; on x86 this
        // fence costs nothing, on ARM it is the barrier that was missing
        // (found by loom: `loom_seqlock_reader_never_sees_a_torn_state`).
        fence(Ordering::Release);
        let data = self.data.get_mut();
        // SAFETY: we hold the lock.
        let d = unsafe { data.deref() };
        d.expire = self.expire.load(Ordering::Relaxed);
        let recent = [0, 1].map(|i| self.recent[i].load(Ordering::Relaxed));
        for (i, w) in recent.iter().enumerate() {
            let (p, b) = recent_parts(*w);
            d.packets[i] = d.packets[i].wrapping_add(p);
            d.bytes[i] = d.bytes[i].wrapping_add(b);
        }
        let before = d.expire;
        SlotGuard { slot: self, data: std::mem::ManuallyDrop::new(data), seq, before, recent }
    }

    /// The slot's key words, bind word and (for a consistent read) `seq`.
    #[inline]
    pub(super) fn key_words(&self) -> (u64, u64) {
        (self.k0.load(Ordering::Acquire), self.k1.load(Ordering::Acquire))
    }
}

impl std::ops::Deref for SlotGuard<'_> {
    type Target = StateData;
    fn deref(&self) -> &StateData {
        // SAFETY: the guard holds the lock.
        unsafe { (*self.data).deref() }
    }
}

impl std::ops::DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut StateData {
        // SAFETY: the guard holds the lock.
        unsafe { (*self.data).deref() }
    }
}

impl SlotGuard<'_> {
    /// Publishes the key and rule mirrors too (a new state in the slot).
    pub(super) fn publish_all(&self) {
        let s = self.slot;
        let (a, b) = pack(&self.key);
        s.k0.store(a, Ordering::Relaxed);
        s.k1.store(b, Ordering::Relaxed);
        s.rule.store(self.rule_nr as u64 | (self.ruleset_gen as u64) << 32, Ordering::Relaxed);
        s.expire.store(self.expire, Ordering::Relaxed);
    }

    /// Empties direction `i`'s `recent` word, its counts staying in the
    /// view (and so in the totals at drop). Only the lock-free counter of
    /// that direction may call it (`StateTable::touch`'s fold), or a
    /// writer of a state no packet can reach yet (an insert).
    pub(super) fn fold_recent(&mut self, i: usize) {
        self.slot.recent[i].store(0, Ordering::Relaxed);
        self.recent[i] = 0;
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let s = self.slot;
        // SAFETY: still held.
        let d: &mut StateData = unsafe { (*self.data).deref() };
        if d.expire != self.before {
            s.expire.store(d.expire, Ordering::Relaxed);
        }
        // The totals keep what the view showed less the `recent` counts
        // it was given: those, and any counted since, stay in `recent`.
        for (i, w) in self.recent.iter().enumerate() {
            let (p, b) = recent_parts(*w);
            d.packets[i] = d.packets[i].wrapping_sub(p);
            d.bytes[i] = d.bytes[i].wrapping_sub(b);
        }
        let solo = s.bind.load(Ordering::Relaxed) & BIND_SOLO;
        s.bind.store(bind_word(d) | solo, Ordering::Relaxed);
        s.extra.store(extra_word(d), Ordering::Relaxed);
        // SAFETY: dropped once, here, after the last use of `d`.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.data) };
        s.seq.store(self.seq.wrapping_add(1), Ordering::Release);
    }
}

/// What the lock-free path read of a state (a consistent snapshot of the
/// mirrored fields).
#[derive(Debug, Clone, Copy)]
pub struct StateView {
    pub idx: u32,
    pub direction: u8,
    pub flags: u8,
    pub timeout: TimeoutId,
    pub src_state: u8,
    pub dst_state: u8,
    pub rule_nr: u32,
    pub ruleset_gen: u32,
    pub tag: u16,
    pub rtable: i16,
    /// The state's reverse link (`Slot::rev`): slot + 1, 0 none.
    pub rev: u32,
    /// `FAST_FWD | FAST_REV`: which way its packets take the fast path.
    pub fast: u8,
}

/// What the IPv4 fast path reads of a state (`StateTable::probe_fast4`),
/// a consistent snapshot as `StateView` is.
#[derive(Debug, Clone, Copy)]
pub struct FastView {
    pub idx: u32,
    /// The packet goes the state's way (its counts are direction 0's).
    pub fwd: bool,
    /// The state translates (`sflags::NAT`).
    pub nat: bool,
    /// The slot's rule word: rule number | ruleset generation << 32.
    pub rule: u64,
    /// The state's reverse link (`Slot::rev`), read on the in hook only
    /// (0 on the out hook, which does not use it).
    pub rev: u32,
}

/// Result of a lock-free probe.
pub enum Probe {
    /// No state for the key on this interface.
    Miss,
    Hit(StateView),
    /// A writer is busy with the state (or the index changed under the
    /// probe): take the locked path.
    Busy,
}
