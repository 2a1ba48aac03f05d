//! The state table: states in a slab of fixed-size slots, found through a
//! hash index keyed by `StateKey` that workers read without locks.
//!
//! * Slab: one address range reserved for every slot the table may ever
//!   have, made usable `CHUNK` slots at a time on demand and never moved
//!   or freed while the table lives, so a slot index stays valid and
//!   workers reach a slot with one multiply-add from the slab's base,
//!   without any table-wide lock. Each slot holds one
//!   `StateData` (plain `Copy` data, no boxes) behind its own spin lock
//!   (a sequence lock: TCP tracking and state changes take it), plus
//!   atomic copies of what the per-packet path reads and the counters it
//!   bumps, so an established UDP/ICMP packet touches no lock at all.
//! * Index: `BUCKETS` chains threaded through the slots (`Slot::next`),
//!   read without locks: a probe walks the chain comparing atomic key
//!   words and trusts a miss only if the shard's version did not move
//!   meanwhile; writers (insert, remove) take the shard's lock. At most
//!   `PER_KEY` states per key; if-bound ones are found before floating ones.
//! * Reverse links: pf in leaves the inbound state's slot in the packet
//!   (`PacketMeta::pf_link`), and that state keeps the slot of the
//!   outbound state pf out found for it last (`Slot::rev`), so pf out
//!   reads the outbound state without a hash probe, as pf.c's
//!   `pf_find_state` follows `pf.statekey->sk_reverse`. The link is a
//!   hint checked in full (key, liveness, interface, and `Slot::solo`:
//!   the only state on its key, so the one a probe would find).
//! * Key/state split: a state has a wire key and a stack key, equal unless
//!   NAT rewrites the packet. NAT is not built, so both are the same key
//!   and only one is indexed; `StateData::key` is that key.

use std::cell::UnsafeCell;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Index shards (a power of two).
pub const SHARDS: usize = 64;
/// Slots per slab chunk (the slab is made usable a chunk at a time).
pub const CHUNK: usize = 4096;
/// Most states per key (if-bound and floating, in and out).
pub const PER_KEY: usize = 2;
/// Most chunks: 4096 × 4096 = 16 M states (4 GiB of address space
/// reserved, memory used only for the chunks made usable).
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
        let b =
            (self.port[0] as u64) << 48 | (self.port[1] as u64) << 32 | (self.proto as u64) << 16 | self.rtable as u64;
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

    /// The key as two words, as the index compares and hashes it.
    #[inline]
    pub fn words(&self) -> (u64, u64) {
        pack(self)
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
    /// `log (all)` on the state's own rule: every packet of the state is
    /// logged under that rule.
    pub const LOG_ALL: u8 = 1 << 1;
    /// The creating rule allowed IP options.
    pub const ALLOW_OPTS: u8 = 1 << 2;
    /// The creating packet matched `match … log (all)` rules: every packet
    /// of the state is logged under each of them (`StateData::log_match`).
    pub const LOG_MATCHES_ALL: u8 = 1 << 3;
    /// The state counts on a source-tracking node (`crate::srcnode`) of
    /// its rule and source ...
    pub const SRC_NODE: u8 = 1 << 4;
    /// ... the global one for its source (`source-track global`).
    pub const SRC_GLOBAL: u8 = 1 << 5;
    /// Its TCP handshake completed and counts in the node's connections
    /// (pf's `src.tcp_est`).
    pub const TCP_EST: u8 = 1 << 6;
}

/// Most `match … log (all)` rules a state remembers for its packets' log
/// records; pf keeps every `match` rule in the state's `match_rules`.
pub const LOG_MATCH_MAX: usize = 4;
/// An unused entry of `StateData::log_match`.
pub const NO_RULE: u32 = u32::MAX;

/// Packet direction as states record it (pf's `PF_IN`/`PF_OUT`).
pub const DIR_IN: u8 = 1;
pub const DIR_OUT: u8 = 2;

/// One state. Plain data, fixed size: `size_of::<Slot>() × 1M` fits in
/// 256 MB (a test checks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateData {
    pub key: StateKey,
    /// Interface the state is bound to, by generation (unique for the
    /// interface's life, unlike its index); 0 = floating (`all`).
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
    /// The `match … log (all)` rules the creating packet matched (numbers
    /// in the ruleset of `ruleset_gen`, in the order matched, the first
    /// `LOG_MATCH_MAX` of them; `NO_RULE` after the last): pf.c's
    /// `match_rules` as pf_test walks them to log each packet of the state.
    pub log_match: [u32; LOG_MATCH_MAX],
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
    /// pf's state id: unique among this host's states, given at insert.
    pub id: u64,
    /// pf's `creatorid`: the host id (`set hostid`) of the pf that made
    /// the state. Cold: read by `pfctl -ss -vv` only.
    pub creatorid: u32,
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
            log_match: [NO_RULE; LOG_MATCH_MAX],
            tag: 0,
            rtable: -1,
            creation: 0,
            expire: 0,
            packets: [0; 2],
            bytes: [0; 2],
            id: 0,
            creatorid: 0,
            live: false,
        }
    }
}

/// Key words as the index compares them (and hashes them).
#[inline]
fn pack(k: &StateKey) -> (u64, u64) {
    let a = (u32::from(k.addr[0]) as u64) << 32 | u32::from(k.addr[1]) as u64;
    let b = (k.port[0] as u64) << 48 | (k.port[1] as u64) << 32 | (k.proto as u64) << 16 | k.rtable as u64;
    (a, b)
}

/// `bind` word: kif | direction << 32 | flags << 40 | timeout << 48 | live << 56.
const BIND_LIVE: u64 = 1 << 56;

#[inline]
fn bind_word(st: &StateData) -> u64 {
    st.kif as u64
        | (st.direction as u64) << 32
        | (st.flags as u64) << 40
        | (st.timeout as u64) << 48
        | if st.live { BIND_LIVE } else { 0 }
}

#[inline]
fn extra_word(st: &StateData) -> u64 {
    st.tag as u64 | (st.rtable as u16 as u64) << 16 | (st.src.state as u64) << 32 | (st.dst.state as u64) << 40
}

/// Whether a state with this `bind` word is live, not purged, and usable
/// on interface `ifidx`: `Some(true)` bound to it, `Some(false)` floating.
#[inline]
fn usable(bind: u64, ifidx: u32) -> Option<bool> {
    if bind & BIND_LIVE == 0 || (bind >> 48) as u8 == TIMEOUT_PURGE {
        return None;
    }
    let kif = bind as u32;
    if kif == 0 {
        Some(false)
    } else if kif == ifidx {
        Some(true)
    } else {
        None
    }
}

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
    seq: AtomicU32,
    /// Next state in the index bucket's chain (slot index + 1; 0 ends it).
    next: AtomicU32,
    k0: AtomicU64,
    k1: AtomicU64,
    bind: AtomicU64,
    /// rule_nr | ruleset_gen << 32.
    rule: AtomicU64,
    /// tag | rtable << 16 | src.state << 32 | dst.state << 40.
    extra: AtomicU64,
    /// Authoritative last-activity time and counters (`data`'s copies are
    /// filled in under the lock).
    expire: AtomicU64,
    /// For an inbound state: slot + 1 of the state the out hook last found
    /// for this state's packets (0: none), the reverse link of pf.c's
    /// `sk_reverse`. Only a hint: written without the lock, always
    /// verified before use (`probe_linked`).
    rev: AtomicU32,
    /// 1 while this is the only state indexed under its key, so that a
    /// usable state found by a link is the one a probe would find.
    /// Written under the slot's lock (readers check `seq`).
    solo: AtomicU32,
    packets: [AtomicU64; 2],
    bytes: [AtomicU64; 2],
    data: UnsafeCell<StateData>,
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
    slot: &'a Slot,
    seq: u32,
    before: (u64, [u64; 2], [u64; 2]),
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
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        };
        // SAFETY: we hold the lock.
        let d = unsafe { &mut *self.data.get() };
        d.expire = self.expire.load(Ordering::Relaxed);
        for i in 0..2 {
            d.packets[i] = self.packets[i].load(Ordering::Relaxed);
            d.bytes[i] = self.bytes[i].load(Ordering::Relaxed);
        }
        let before = (d.expire, d.packets, d.bytes);
        SlotGuard { slot: self, seq, before }
    }

    /// The slot's key words, bind word and (for a consistent read) `seq`.
    #[inline]
    fn key_words(&self) -> (u64, u64) {
        (self.k0.load(Ordering::Acquire), self.k1.load(Ordering::Acquire))
    }
}

impl std::ops::Deref for SlotGuard<'_> {
    type Target = StateData;
    fn deref(&self) -> &StateData {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.slot.data.get() }
    }
}

impl std::ops::DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut StateData {
        // SAFETY: the guard holds the lock.
        unsafe { &mut *self.slot.data.get() }
    }
}

impl SlotGuard<'_> {
    /// Publishes the key and rule mirrors too (a new state in the slot).
    fn publish_all(&self) {
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
        let d = unsafe { &*s.data.get() };
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

/// Keyed hasher for the index (seeded per table, so flows cannot be
/// chosen to collide).
#[derive(Clone)]
pub struct KeyHasherBuilder(u64);

pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        fmix(self.0)
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

#[inline]
fn fmix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
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

/// Key words with the two sides swapped: `StateKey::words` of the same
/// packet seen by the other hook.
#[inline]
fn reversed(k: (u64, u64)) -> (u64, u64) {
    let (p0, p1) = ((k.1 >> 48) & 0xffff, (k.1 >> 32) & 0xffff);
    (k.0.rotate_left(32), p1 << 48 | p0 << 32 | (k.1 & 0xffff_ffff))
}

/// `_mm_prefetch` hints: into every cache level, or into L2 and below.
#[cfg(target_arch = "x86_64")]
const TO_L1: i32 = std::arch::x86_64::_MM_HINT_T0;
#[cfg(target_arch = "x86_64")]
const TO_L2: i32 = std::arch::x86_64::_MM_HINT_T1;
#[cfg(not(target_arch = "x86_64"))]
const TO_L1: i32 = 0;
#[cfg(not(target_arch = "x86_64"))]
const TO_L2: i32 = 0;

/// Asks the CPU to start loading `p`'s cache line, as far in as `HINT`
/// says (`TO_L1`; `TO_L2` for what is read later in the batch, so it does
/// not push the batch's working set out of L1 meanwhile).
#[inline(always)]
fn prefetch<const HINT: i32, T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unused_unsafe)]
    // SAFETY: a prefetch never faults and has no visible effect.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<HINT>(p as *const T as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[inline(always)]
fn prefetch_line<T>(p: &T) {
    prefetch::<TO_L1, T>(p)
}

#[inline(always)]
fn prefetch_line_l2<T>(p: &T) {
    prefetch::<TO_L2, T>(p)
}

/// The two lines of a slot the per-packet path touches (the mirrors and
/// the counters).
#[inline(always)]
fn prefetch_slot(s: &Slot) {
    prefetch_line(s);
    prefetch_line(&s.packets);
}

/// A fixed-size array of zeroes in memory aligned to 2 MiB and marked for
/// transparent huge pages, for the bucket array: every packet reads it at
/// random, and with 4 KiB pages each of those reads is also a TLB miss
/// (4 MiB spans 1,024 pages). Allocated zeroed, so parts never written
/// cost no memory and read as the zero page. (Not the slab: a huge page
/// fault may compact memory, a stall a worker should not take when it
/// allocates a chunk.)
pub(crate) struct HugeArray<T: Zeroable> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
}

// SAFETY: owns its elements like a `Box<[T]>`.
unsafe impl<T: Zeroable + Send> Send for HugeArray<T> {}
unsafe impl<T: Zeroable + Sync> Sync for HugeArray<T> {}

const HUGE_PAGE: usize = 2 << 20;

/// Types for which all-zero bytes are a valid value.
pub(crate) trait Zeroable {}
impl Zeroable for AtomicU32 {}

impl<T: Zeroable> HugeArray<T> {
    fn layout(len: usize) -> std::alloc::Layout {
        let size = (std::mem::size_of::<T>() * len).max(1).next_multiple_of(HUGE_PAGE);
        std::alloc::Layout::from_size_align(size, HUGE_PAGE.max(std::mem::align_of::<T>())).expect("array layout")
    }

    fn zeroed(len: usize) -> Self {
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
        let Some(ptr) = std::ptr::NonNull::new(p) else { std::alloc::handle_alloc_error(layout) };
        // Advice only: without huge pages the array works the same.
        #[cfg(target_os = "linux")]
        // SAFETY: the range is our own fresh allocation.
        unsafe {
            libc::madvise(p as *mut libc::c_void, layout.size(), libc::MADV_HUGEPAGE);
        }
        HugeArray { ptr, len }
    }
}

impl<T: Zeroable> std::ops::Deref for HugeArray<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised elements live at `ptr` until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> Drop for HugeArray<T> {
    fn drop(&mut self) {
        // SAFETY: the layout is the one the array was allocated with; the
        // elements (atomics) need no drop.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len));
            std::alloc::dealloc(self.ptr.as_ptr() as *mut u8, Self::layout(self.len));
        }
    }
}

/// The slots: `MAX_CHUNKS × CHUNK` of them reserved as one inaccessible
/// private mapping at start (no memory, no commit charge), each chunk
/// made readable and writable when the slab first grows into it. Fresh
/// pages read as zeroes, and an all-zero `Slot` is a free slot. A slot is
/// at `base + idx`: one step from the table, where chunk pointers cost
/// the per-packet path two dependent loads more.
struct Slab {
    base: std::ptr::NonNull<Slot>,
    /// Slots made usable so far (whole chunks); only grows.
    usable: AtomicU32,
    grow: Mutex<()>,
}

// SAFETY: the slots are `Sync` (atomics and a lock-guarded cell); the
// mapping is owned by the slab and unmapped only on drop.
unsafe impl Send for Slab {}
unsafe impl Sync for Slab {}

impl Slab {
    const BYTES: usize = MAX_CHUNKS * CHUNK * std::mem::size_of::<Slot>();

    fn new() -> Slab {
        // SAFETY: a fresh anonymous mapping, owned by the slab.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::BYTES,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "cannot reserve {} bytes of address space for the state slab", Self::BYTES);
        let base = std::ptr::NonNull::new(p as *mut Slot).expect("mmap returned null");
        Slab { base, usable: AtomicU32::new(0), grow: Mutex::new(()) }
    }

    #[inline]
    fn get(&self, idx: u32) -> Option<&Slot> {
        if idx < self.usable.load(Ordering::Acquire) {
            // SAFETY: slots below `usable` are mapped read-write, and zero
            // bytes are a valid `Slot`; the mapping outlives `&self`.
            Some(unsafe { &*self.base.as_ptr().add(idx as usize) })
        } else {
            None
        }
    }

    /// Makes slot `idx` (and its whole chunk) usable; false when the
    /// reservation is used up or the kernel refuses the memory.
    fn ensure(&self, idx: u32) -> bool {
        if idx < self.usable.load(Ordering::Acquire) {
            return true;
        }
        let _g = self.grow.lock();
        let have = self.usable.load(Ordering::Acquire) as usize;
        if (idx as usize) < have {
            return true;
        }
        let want = (idx as usize / CHUNK + 1) * CHUNK;
        if want > MAX_CHUNKS * CHUNK {
            return false;
        }
        let size = std::mem::size_of::<Slot>();
        // SAFETY: the range lies inside our reservation.
        let rc = unsafe {
            libc::mprotect(
                self.base.as_ptr().add(have) as *mut libc::c_void,
                (want - have) * size,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return false;
        }
        // Fault the chunk in now, all at once, rather than a page at a
        // time under the index locks as states land in it.
        let start = self.base.as_ptr() as usize + have * size;
        for page in (start..self.base.as_ptr() as usize + want * size).step_by(4096) {
            // SAFETY: inside the range just made writable; the byte is a
            // zero of a slot nobody uses yet, written back as zero.
            unsafe { std::ptr::write_volatile(page as *mut u8, 0) };
        }
        self.usable.store(want as u32, Ordering::Release);
        true
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: our own mapping; no slot reference outlives the slab.
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, Self::BYTES) };
    }
}

/// Writers' lock over the index buckets `b` with `b % SHARDS == shard`,
/// and a sequence the lock-free readers check: it moves (odd while in
/// progress) whenever a state leaves one of the shard's chains, the only
/// change that can send a reader astray.
#[repr(align(64))]
struct Shard {
    lock: Mutex<()>,
    version: AtomicU32,
}

/// Index buckets (a power of two): chain heads, `slot + 1` (0: empty).
pub const BUCKETS: usize = 1 << 20;
/// Most keys `lookup_hints` takes at once.
pub const HINT_BATCH: usize = 64;
/// Longest chain a lock-free probe walks before it takes the shard lock.
const MAX_HOPS: u32 = 64;

/// Why a state could not be inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// `set limit states` reached (pf's `state-limit` / `memory`).
    Limit,
    /// A state with the same key, interface and direction exists.
    Conflict,
}

pub struct StateTable {
    slab: Slab,
    /// Slots handed out so far (high-water mark).
    next: AtomicU32,
    free: Mutex<Vec<u32>>,
    buckets: HugeArray<AtomicU32>,
    shards: Box<[Shard]>,
    seed: u64,
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
    fn bucket_of(&self, k: (u64, u64)) -> usize {
        let h = fmix((k.0 ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(23) ^ k.1);
        h as usize & (BUCKETS - 1)
    }

    #[inline]
    fn shard_of(&self, bucket: usize) -> &Shard {
        &self.shards[bucket & (SHARDS - 1)]
    }

    /// Walks bucket `b`'s chain for the state usable on `ifidx` (bound to
    /// it first, else floating). `None` in the second place: the walk was
    /// cut short.
    #[inline]
    fn walk(&self, b: usize, k: (u64, u64), ifidx: u32) -> (u32, bool) {
        let mut cur = self.buckets[b].load(Ordering::Acquire);
        let mut floating = NONE;
        let mut hops = 0;
        while cur != 0 {
            let idx = cur - 1;
            let Some(s) = self.slot(idx) else { return (NONE, false) };
            if s.key_words() == k {
                match usable(s.bind.load(Ordering::Acquire), ifidx) {
                    Some(true) => return (idx, true),
                    Some(false) if floating == NONE => floating = idx,
                    _ => {}
                }
            }
            cur = s.next.load(Ordering::Acquire);
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
                std::sync::atomic::fence(Ordering::Acquire);
                if complete && shard.version.load(Ordering::Relaxed) == v1 {
                    return (idx != NONE).then_some(idx);
                }
            }
            std::hint::spin_loop();
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
        while cur != 0 {
            let s = self.slot(cur - 1).expect("linked");
            if s.key_words() == k && s.bind.load(Ordering::Relaxed) & BIND_LIVE != 0 {
                v.push(cur - 1);
            }
            cur = s.next.load(Ordering::Acquire);
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
        let idx = link.checked_sub(1)?;
        self.read_view(idx, key, ifidx, true)
    }

    /// A consistent read of slot `idx`'s mirrors, if it holds `key` and is
    /// usable on `ifidx` (and, with `solo`, is alone on its key).
    #[inline(always)]
    fn read_view(&self, idx: u32, key: (u64, u64), ifidx: u32, solo: bool) -> Option<StateView> {
        let s = self.slot(idx)?;
        let s1 = s.seq.load(Ordering::Acquire);
        if s1 & 1 != 0 {
            return None;
        }
        let k = s.key_words();
        let bind = s.bind.load(Ordering::Relaxed);
        let rule = s.rule.load(Ordering::Relaxed);
        let extra = s.extra.load(Ordering::Relaxed);
        let alone = s.solo.load(Ordering::Relaxed) != 0;
        let rev = s.rev.load(Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Acquire);
        if s.seq.load(Ordering::Relaxed) != s1 || k != key || usable(bind, ifidx).is_none() || (solo && !alone) {
            return None;
        }
        Some(StateView {
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
        })
    }

    /// Lookup guesses for a batch of in-hook keys, with their memory loads
    /// overlapped: every key's bucket is prefetched first, then every
    /// chain's first slot, then, where that slot holds the key, the slot
    /// its reverse link names (what pf out will read), else the bucket pf
    /// out will probe. `hints[i]` becomes slot + 1 of the first slot when
    /// it holds `keys[i]` (0 otherwise); a hint is only a guess, verified
    /// in full before use. `keys[i] == None` (a packet the fast parse does
    /// not take) gets 0. Reads only.
    pub fn lookup_hints(&self, keys: &[Option<(u64, u64)>], hints: &mut [u32]) {
        let n = keys.len().min(hints.len()).min(HINT_BATCH);
        let mut bucket = [0u32; HINT_BATCH];
        for i in 0..n {
            if let Some(k) = keys[i] {
                let b = self.bucket_of(k);
                bucket[i] = b as u32;
                prefetch_line(&self.buckets[b]);
            }
        }
        for i in 0..n {
            hints[i] = 0;
            if keys[i].is_some() {
                let head = self.buckets[bucket[i] as usize].load(Ordering::Relaxed);
                if let Some(s) = head.checked_sub(1).and_then(|i| self.slot(i)) {
                    prefetch_slot(s);
                    hints[i] = head;
                }
            }
        }
        for i in 0..n {
            let Some(k) = keys[i] else { continue };
            let s = hints[i].checked_sub(1).and_then(|i| self.slot(i));
            match s {
                Some(s) if s.key_words() == k => {
                    if let Some(r) = s.rev.load(Ordering::Relaxed).checked_sub(1).and_then(|i| self.slot(i)) {
                        // Read by pf out, after the whole batch went
                        // through pf in and routing: into L2.
                        prefetch_line_l2(r);
                        prefetch_line_l2(&r.packets);
                    }
                }
                // No state for the key at the chain's head: pf out will
                // search too, with the reversed key (no NAT: the outbound
                // key of a forwarded packet is its inbound key reversed).
                _ => {
                    hints[i] = 0;
                    prefetch_line_l2(&self.buckets[self.bucket_of(reversed(k))]);
                }
            }
        }
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
        let Some(s) = self.slot(idx) else { return };
        let i = if fwd { 0 } else { 1 };
        s.packets[i].store(s.packets[i].load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        s.bytes[i].store(s.bytes[i].load(Ordering::Relaxed).wrapping_add(bytes), Ordering::Relaxed);
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
        let ok =
            |g: &SlotGuard| g.live && pack(&g.key) == k && g.timeout != TIMEOUT_PURGE && (g.kif == 0 || g.kif == ifidx);
        if let Some(s) = link.checked_sub(1).and_then(|i| self.slot(i)) {
            let mut g = s.lock();
            if ok(&g) && s.solo.load(Ordering::Relaxed) != 0 {
                let rev = s.rev.load(Ordering::Relaxed);
                return Some((link - 1, f(link - 1, rev, &mut g)));
            }
        }
        for _ in 0..4 {
            let idx = self.find_words(k, ifidx)?;
            let Some(s) = self.slot(idx) else { continue };
            let mut g = s.lock();
            if ok(&g) {
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

    fn alloc_slot(&self) -> Option<u32> {
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
        let k = pack(&st.key);
        let b = self.bucket_of(k);
        let shard = self.shard_of(b);
        let sg = shard.lock.lock();
        let mut cur = self.buckets[b].load(Ordering::Acquire);
        let mut on_key = 0;
        // Every state indexed on the key, purge-marked ones included.
        let mut on_key_all = 0;
        let mut conflict = false;
        while cur != 0 {
            let s = self.slot(cur - 1).expect("linked");
            if s.key_words() == k {
                on_key_all += 1;
                let bind = s.bind.load(Ordering::Acquire);
                if bind & BIND_LIVE != 0 && (bind >> 48) as u8 != TIMEOUT_PURGE {
                    on_key += 1;
                    if bind as u32 == st.kif && (bind >> 32) as u8 == st.direction {
                        conflict = true;
                    }
                }
            }
            cur = s.next.load(Ordering::Acquire);
        }
        if conflict || on_key >= PER_KEY {
            drop(sg);
            self.count.fetch_sub(1, Ordering::AcqRel);
            self.free.lock().push(idx);
            return Err(InsertError::Conflict);
        }
        // The states already on the key are no longer alone on it.
        if on_key_all > 0 {
            let mut cur = self.buckets[b].load(Ordering::Acquire);
            while cur != 0 {
                let s = self.slot(cur - 1).expect("linked");
                if s.key_words() == k {
                    let _g = s.lock();
                    s.solo.store(0, Ordering::Relaxed);
                }
                cur = s.next.load(Ordering::Acquire);
            }
        }
        let s = self.slot(idx).expect("allocated");
        {
            let mut g = s.lock();
            *g = st;
            g.publish_all();
            s.solo.store((on_key_all == 0) as u32, Ordering::Relaxed);
            s.rev.store(0, Ordering::Relaxed);
            g.before = (st.expire, st.packets, st.bytes);
            s.next.store(self.buckets[b].load(Ordering::Relaxed), Ordering::Release);
        }
        self.buckets[b].store(idx + 1, Ordering::Release);
        drop(sg);
        self.inserts.fetch_add(1, Ordering::Relaxed);
        Ok(idx)
    }

    /// Removes the state in slot `idx` (if still live).
    pub fn remove(&self, idx: u32) -> bool {
        self.remove_id(idx, None)
    }

    /// Removes the state in slot `idx` if it is still live (and still
    /// state `id`, when given: the slot may have been reused since).
    fn remove_id(&self, idx: u32, id: Option<u64>) -> bool {
        let Some(slot) = self.slot(idx) else { return false };
        let k = slot.key_words();
        let b = self.bucket_of(k);
        let shard = self.shard_of(b);
        let sg = shard.lock.lock();
        {
            let mut g = slot.lock();
            if !g.live || pack(&g.key) != k || id.is_some_and(|id| g.id != id) {
                return false;
            }
            g.live = false;
            g.timeout = TIMEOUT_PURGE;
        }
        // Unlink; readers walking the chain see the version move.
        let v = shard.version.load(Ordering::Relaxed);
        shard.version.store(v.wrapping_add(1), Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        let next = slot.next.load(Ordering::Relaxed);
        let mut cur = self.buckets[b].load(Ordering::Relaxed);
        if cur == idx + 1 {
            self.buckets[b].store(next, Ordering::Release);
        } else {
            while cur != 0 {
                let s = self.slot(cur - 1).expect("linked");
                let n = s.next.load(Ordering::Relaxed);
                if n == idx + 1 {
                    s.next.store(next, Ordering::Release);
                    break;
                }
                cur = n;
            }
        }
        shard.version.store(v.wrapping_add(2), Ordering::Release);
        // A state left alone on the key can be found by its link again.
        let mut left = None;
        let mut others = 0;
        let mut cur = self.buckets[b].load(Ordering::Relaxed);
        while cur != 0 {
            let s = self.slot(cur - 1).expect("linked");
            if s.key_words() == k {
                others += 1;
                left = Some(s);
            }
            cur = s.next.load(Ordering::Relaxed);
        }
        if let (1, Some(s)) = (others, left) {
            let _g = s.lock();
            s.solo.store(1, Ordering::Relaxed);
        }
        drop(sg);
        self.free.lock().push(idx);
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.removals.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A copy of the state in slot `idx`, if live.
    pub fn get(&self, idx: u32) -> Option<StateData> {
        let g = self.slot(idx)?.lock();
        g.live.then_some(*g)
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
    pub fn remove_if(&self, mut pred: impl FnMut(&StateData) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.high_water() {
            let kill = self.get(i).filter(|d| pred(d)).map(|d| d.id);
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
    pub fn purge_some(&self, budget: u32, mut expired: impl FnMut(&StateData) -> bool) -> usize {
        let hw = self.high_water();
        if hw == 0 {
            return 0;
        }
        let mut at = self.purge_cursor.load(Ordering::Relaxed) % hw;
        let mut n = 0;
        for _ in 0..budget.min(hw) {
            // `expired` sees purge-marked states too (the caller counts
            // every state removed).
            let kill = self.get(at).filter(|d| expired(d)).map(|d| d.id);
            if kill.is_some() && self.remove_id(at, kill) {
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
        StateKey {
            addr: ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()],
            port: [p, 22],
            proto: 6,
            rtable: 0,
        }
    }

    #[test]
    fn a_million_states_fit_in_256_mb() {
        let per_state = std::mem::size_of::<Slot>();
        // Index: the bucket array (fixed size) plus the chain link in the slot.
        let index = BUCKETS * std::mem::size_of::<AtomicU32>();
        assert!(per_state * 1_000_000 + index <= 256 << 20, "slot {per_state} B per state + index {index} B");
        assert_eq!(std::mem::offset_of!(Slot, packets), 64, "the fast path's fields fill the first line");
    }

    #[test]
    fn insert_lookup_remove_and_limit() {
        let t = StateTable::new(2);
        let a = t.insert(StateData { key: key(1), direction: DIR_IN, ..Default::default() }).unwrap();
        assert_eq!(t.find(&key(1), 0), Some(a));
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
        assert_eq!(t.lookup_all(&key(1)), vec![b]);
        assert_eq!(t.find(&key(1), 0), Some(b));
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove_if(|_| true), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn if_bound_states_come_before_floating_ones() {
        let t = StateTable::new(10);
        let f = t.insert(StateData { key: key(1), direction: DIR_IN, ..Default::default() }).unwrap();
        let b = t.insert(StateData { key: key(1), direction: DIR_IN, kif: 3, ..Default::default() }).unwrap();
        assert_eq!(t.find(&key(1), 3), Some(b));
        assert_eq!(t.find(&key(1), 4), Some(f));
        assert_eq!(t.find(&key(1), 0), Some(f));
    }

    #[test]
    fn lock_free_lookups_never_miss_a_live_state_under_churn() {
        let t = std::sync::Arc::new(StateTable::new(1 << 20));
        let keep: Vec<u32> = (0..2000u16)
            .map(|p| t.insert(StateData { key: key(p), direction: DIR_IN, ..Default::default() }).unwrap())
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<u32> = (0..500u16)
                        .filter_map(|p| {
                            let mut k = key(p);
                            k.port[1] = 23;
                            t.insert(StateData { key: k, direction: DIR_OUT, ..Default::default() }).ok()
                        })
                        .collect();
                    for i in ids {
                        assert!(t.remove(i));
                    }
                    n += 1;
                }
                n
            })
        };
        for round in 0..200 {
            for (p, &idx) in keep.iter().enumerate() {
                assert_eq!(t.find(&key(p as u16), 0), Some(idx), "round {round}");
                match t.probe(key(p as u16).words(), 0) {
                    Probe::Hit(v) => assert_eq!(v.idx, idx),
                    Probe::Busy => {}
                    Probe::Miss => panic!("miss on a live state"),
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(churn.join().unwrap() > 0);
        assert_eq!(t.len(), 2000);
    }

    #[test]
    fn a_link_finds_only_the_state_a_probe_would_find() {
        let t = StateTable::new(100);
        let a = t.insert(StateData { key: key(1), direction: DIR_OUT, ..Default::default() }).unwrap();
        let v = t.probe_linked(a + 1, key(1).words(), 7).expect("alone and usable");
        assert_eq!(v.idx, a);
        assert!(t.probe_linked(0, key(1).words(), 7).is_none(), "no link");
        assert!(t.probe_linked(a + 1, key(2).words(), 7).is_none(), "another key");
        assert!(t.probe_linked(a + 100, key(1).words(), 7).is_none(), "a slot never used");
        // A second state on the key: the link no longer decides.
        let b = t.insert(StateData { key: key(1), direction: DIR_IN, kif: 7, ..Default::default() }).unwrap();
        assert!(t.probe_linked(a + 1, key(1).words(), 7).is_none());
        assert!(t.probe_linked(b + 1, key(1).words(), 7).is_none());
        assert!(matches!(t.probe(key(1).words(), 7), Probe::Hit(v) if v.idx == b), "if-bound first");
        // Alone again once the other goes.
        assert!(t.remove(b));
        assert_eq!(t.probe_linked(a + 1, key(1).words(), 7).map(|v| v.idx), Some(a));
        // Bound elsewhere: not usable here.
        let c = t.insert(StateData { key: key(3), direction: DIR_OUT, kif: 5, ..Default::default() }).unwrap();
        assert!(t.probe_linked(c + 1, key(3).words(), 7).is_none());
        assert_eq!(t.probe_linked(c + 1, key(3).words(), 5).map(|v| v.idx), Some(c));
        // Removed, then the slot reused for another key.
        assert!(t.remove(a));
        assert!(t.probe_linked(a + 1, key(1).words(), 7).is_none(), "removed");
        let d = t.insert(StateData { key: key(4), direction: DIR_OUT, ..Default::default() }).unwrap();
        assert_eq!(d, a, "the free slot is reused");
        assert!(t.probe_linked(a + 1, key(1).words(), 7).is_none(), "reused for another key");
        assert_eq!(t.probe_linked(a + 1, key(4).words(), 7).map(|v| v.idx), Some(d));
        // Purge-marked (TCP state reuse): never found.
        t.with_state(key(4).words(), 7, |_, st| st.timeout = TIMEOUT_PURGE).unwrap();
        assert!(t.probe_linked(d + 1, key(4).words(), 7).is_none());
        // The reverse link is a plain hint on the slot, cleared on reuse.
        t.set_rev(c, d + 1);
        assert_eq!(t.rev(c), d + 1);
        assert!(t.remove(c));
        let e = t.insert(StateData { key: key(5), direction: DIR_IN, ..Default::default() }).unwrap();
        assert_eq!(e, c);
        assert_eq!(t.rev(e), 0);
    }

    #[test]
    fn links_never_disagree_with_probes_under_random_churn() {
        // Few keys, interfaces and directions, so keys often hold two
        // states and slots are reused for other keys.
        let t = StateTable::new(64);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut live: Vec<u32> = vec![];
        for _ in 0..20_000 {
            let r = next();
            if r % 3 != 0 || live.is_empty() {
                let st = StateData {
                    key: key((r >> 8) as u16 % 6),
                    direction: if r & 16 != 0 { DIR_IN } else { DIR_OUT },
                    kif: (r >> 20) as u32 % 3,
                    timeout: if r % 29 == 0 { TIMEOUT_PURGE } else { 0 },
                    ..Default::default()
                };
                if let Ok(i) = t.insert(st) {
                    live.push(i);
                }
            } else {
                let i = live.swap_remove((r >> 8) as usize % live.len());
                assert!(t.remove(i));
            }
            for slot in 0..t.high_water() {
                for p in 0..6 {
                    for ifidx in 0..3 {
                        let k = key(p).words();
                        if let Some(v) = t.probe_linked(slot + 1, k, ifidx) {
                            match t.probe(k, ifidx) {
                                Probe::Hit(w) => assert_eq!(v.idx, w.idx, "slot {slot} key {p} if {ifidx}"),
                                _ => panic!("link found slot {slot} for key {p} on {ifidx}, probe did not"),
                            }
                        }
                        let locked = t.with_state_linked(slot + 1, k, ifidx, |_, _, _| ()).map(|(i, _)| i);
                        assert_eq!(locked, t.find(&key(p), ifidx), "locked path, slot {slot} key {p} if {ifidx}");
                    }
                }
            }
        }
    }

    #[test]
    fn reversed_key_words_are_the_other_sides_key() {
        let k = key(1234);
        let mut r = k;
        r.addr.swap(0, 1);
        r.port.swap(0, 1);
        assert_eq!(reversed(k.words()), r.words());
        assert_eq!(reversed(reversed(k.words())), k.words());
    }
}
