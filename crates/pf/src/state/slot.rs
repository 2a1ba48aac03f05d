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
/// the time it writes; the counters sit on the next line; `data` after.
#[repr(C, align(64))]
pub struct Slot {
    pub(super) seq: AtomicU32,
    /// Next state in the index bucket's chain (slot index + 1; 0 ends it).
    pub(super) next: AtomicU32,
    pub(super) k0: AtomicU64,
    pub(super) k1: AtomicU64,
    pub(super) bind: AtomicU64,
    /// rule_nr | ruleset_gen << 32.
    pub(super) rule: AtomicU64,
    /// tag | rtable << 16 | src.state << 32 | dst.state << 40.
    pub(super) extra: AtomicU64,
    /// Authoritative last-activity time and counters (`data`'s copies are
    /// filled in under the lock).
    pub(super) expire: AtomicU64,
    /// For an inbound state: slot + 1 of the state the out hook last found
    /// for this state's packets (0: none), the reverse link of pf.c's
    /// `sk_reverse`. Only a hint: written without the lock, always
    /// verified before use (`probe_linked`).
    pub(super) rev: AtomicU32,
    /// 1 while this is the only state indexed under its key, so that a
    /// usable state found by a link is the one a probe would find.
    /// Written under the slot's lock (readers check `seq`).
    pub(super) solo: AtomicU32,
    pub(super) packets: [AtomicU64; 2],
    pub(super) bytes: [AtomicU64; 2],
    pub(super) data: UnsafeCell<StateData>,
}

// SAFETY: `data` is only touched while `seq` is odd and held by the
// toucher (see `SlotGuard`); everything else is atomic.
unsafe impl Sync for Slot {}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            seq: AtomicU32::new(0),
            next: AtomicU32::new(0),
            k0: AtomicU64::new(0),
            k1: AtomicU64::new(0),
            bind: AtomicU64::new(0),
            rule: AtomicU64::new(0),
            extra: AtomicU64::new(0),
            expire: AtomicU64::new(0),
            rev: AtomicU32::new(0),
            solo: AtomicU32::new(0),
            packets: [AtomicU64::new(0), AtomicU64::new(0)],
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
            data: UnsafeCell::new(StateData::default()),
        }
    }
}

/// A slot held by its writer: derefs to the state, with `expire`,
/// `packets` and `bytes` read from the atomics; changes to them and the
/// mirrored fields are published on drop.
pub struct SlotGuard<'a> {
    pub(super) slot: &'a Slot,
    /// The state, reached through the cell (loom tracks the access
    /// while this lives, so it goes before the lock is released).
    data: std::mem::ManuallyDrop<crate::sync::MutPtr<StateData>>,
    pub(super) seq: u32,
    pub(super) before: (u64, [u64; 2], [u64; 2]),
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
        for i in 0..2 {
            d.packets[i] = self.packets[i].load(Ordering::Relaxed);
            d.bytes[i] = self.bytes[i].load(Ordering::Relaxed);
        }
        let before = (d.expire, d.packets, d.bytes);
        SlotGuard { slot: self, data: std::mem::ManuallyDrop::new(data), seq, before }
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
        for i in 0..2 {
            s.packets[i].store(self.packets[i], Ordering::Relaxed);
            s.bytes[i].store(self.bytes[i], Ordering::Relaxed);
        }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let s = self.slot;
        // SAFETY: still held.
        let d: &StateData = unsafe { (*self.data).deref() };
        // Only what changed goes back, so a lock-free bump of the other
        // direction's counters in the meantime is not undone.
        if d.expire != self.before.0 {
            s.expire.store(d.expire, Ordering::Relaxed);
        }
        for i in 0..2 {
            if d.packets[i] != self.before.1[i] {
                s.packets[i].store(d.packets[i], Ordering::Relaxed);
            }
            if d.bytes[i] != self.before.2[i] {
                s.bytes[i].store(d.bytes[i], Ordering::Relaxed);
            }
        }
        s.bind.store(bind_word(d), Ordering::Relaxed);
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

/// Result of a lock-free probe.
pub enum Probe {
    /// No state for the key on this interface.
    Miss,
    Hit(StateView),
    /// A writer is busy with the state (or the index changed under the
    /// probe): take the locked path.
    Busy,
}
