//! The index's hasher, prefetching, and the memory behind the table:
//! huge-page arrays and the reserved slab.

use super::*;

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
pub(super) fn fmix(mut x: u64) -> u64 {
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
pub(super) fn reversed(k: (u64, u64)) -> (u64, u64) {
    let (p0, p1) = ((k.1 >> 48) & 0xffff, (k.1 >> 32) & 0xffff);
    (k.0.rotate_left(32), p1 << 48 | p0 << 32 | (k.1 & 0xffff_ffff))
}

/// `_mm_prefetch` hints: into every cache level, or into L2 and below.
#[cfg(target_arch = "x86_64")]
pub(super) const TO_L1: i32 = std::arch::x86_64::_MM_HINT_T0;
#[cfg(target_arch = "x86_64")]
pub(super) const TO_L2: i32 = std::arch::x86_64::_MM_HINT_T1;
#[cfg(not(target_arch = "x86_64"))]
pub(super) const TO_L1: i32 = 0;
#[cfg(not(target_arch = "x86_64"))]
pub(super) const TO_L2: i32 = 0;

/// Asks the CPU to start loading `p`'s cache line, as far in as `HINT`
/// says (`TO_L1`; `TO_L2` for what is read later in the batch, so it does
/// not push the batch's working set out of L1 meanwhile).
#[inline(always)]
pub(super) fn prefetch<const HINT: i32, T>(p: &T) {
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
pub(super) fn prefetch_line<T>(p: &T) {
    prefetch::<TO_L1, T>(p)
}

#[inline(always)]
pub(super) fn prefetch_line_l2<T>(p: &T) {
    prefetch::<TO_L2, T>(p)
}

/// The line of a slot the per-packet path touches (the mirrors, the time
/// and the recent counts).
#[inline(always)]
pub(super) fn prefetch_slot(s: &Slot) {
    prefetch_line(s);
}

/// A fixed-size array of zeroes in memory aligned to 2 MiB and marked for
/// transparent huge pages, for the bucket array: every packet reads it at
/// random, and with 4 KiB pages each of those reads is also a TLB miss
/// (4 MiB spans 1,024 pages). Allocated zeroed, so parts never written
/// cost no memory and read as the zero page. (Not the slab: a huge page
/// fault may compact memory, a stall a worker should not take when it
/// allocates a chunk.)
pub(crate) struct HugeArray<T: Zeroable> {
    pub(super) ptr: std::ptr::NonNull<T>,
    pub(super) len: usize,
}

// SAFETY: owns its elements like a `Box<[T]>`.
unsafe impl<T: Zeroable + Send> Send for HugeArray<T> {}
unsafe impl<T: Zeroable + Sync> Sync for HugeArray<T> {}

pub(super) const HUGE_PAGE: usize = 2 << 20;

/// Types for which all-zero bytes are a valid value (under loom, whose
/// atomics carry the model's bookkeeping, they are made by `Default`).
#[cfg(not(loom))]
pub(crate) trait Zeroable {}
#[cfg(loom)]
pub(crate) trait Zeroable: Default {}
impl Zeroable for AtomicU32 {}

impl<T: Zeroable> HugeArray<T> {
    pub(super) fn layout(len: usize) -> std::alloc::Layout {
        let bytes = (std::mem::size_of::<T>() * len).max(1);
        if !Self::huge(len) {
            // A small array (Miri's, the fuzz targets'): not 2 MiB zeroed
            // for it each time.
            return std::alloc::Layout::from_size_align(bytes, std::mem::align_of::<T>()).expect("array layout");
        }
        let size = bytes.next_multiple_of(HUGE_PAGE);
        std::alloc::Layout::from_size_align(size, HUGE_PAGE.max(std::mem::align_of::<T>())).expect("array layout")
    }

    /// Whether an array of `len` fills a huge page at least.
    fn huge(len: usize) -> bool {
        std::mem::size_of::<T>() * len >= HUGE_PAGE
    }

    pub(super) fn zeroed(len: usize) -> Self {
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
        let Some(ptr) = std::ptr::NonNull::new(p) else { std::alloc::handle_alloc_error(layout) };
        #[cfg(loom)]
        for i in 0..len {
            // SAFETY: inside the fresh allocation.
            unsafe { p.add(i).write(T::default()) };
        }
        // Advice only: without huge pages the array works the same.
        #[cfg(all(target_os = "linux", not(miri)))]
        if Self::huge(len) {
            // SAFETY: the range is our own fresh allocation.
            unsafe {
                libc::madvise(p as *mut libc::c_void, layout.size(), libc::MADV_HUGEPAGE);
            }
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
pub(super) struct Slab {
    pub(super) base: std::ptr::NonNull<Slot>,
    /// Slots made usable so far (whole chunks); only grows.
    pub(super) usable: AtomicU32,
    pub(super) grow: Mutex<()>,
}

// SAFETY: the slots are `Sync` (atomics and a lock-guarded cell); the
// mapping is owned by the slab and unmapped only on drop.
unsafe impl Send for Slab {}
unsafe impl Sync for Slab {}

impl Slab {
    const BYTES: usize = MAX_CHUNKS * CHUNK * std::mem::size_of::<Slot>();

    pub(super) fn new() -> Slab {
        let p = vm::reserve(Self::BYTES);
        assert!(!p.is_null(), "cannot reserve {} bytes of address space for the state slab", Self::BYTES);
        let base = std::ptr::NonNull::new(p as *mut Slot).expect("checked");
        Slab { base, usable: AtomicU32::new(0), grow: Mutex::new(()) }
    }

    #[inline]
    pub(super) fn get(&self, idx: u32) -> Option<&Slot> {
        if idx < self.usable.load(Ordering::Acquire) {
            // SAFETY: slots below `usable` are mapped read-write, and zero
            // bytes are a valid `Slot`; the mapping outlives `&self`.
            Some(unsafe { &*self.base.as_ptr().add(idx as usize) })
        } else {
            None
        }
    }

    /// Prefetches slot `idx`'s first line into L2, whether or not the slot
    /// is usable (a prefetch never faults; no reference is made).
    #[inline(always)]
    pub(super) fn prefetch_l2(&self, idx: u32) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch never faults and has no visible effect.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<TO_L2>(self.base.as_ptr().wrapping_add(idx as usize) as *const i8)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = idx;
    }

    /// The slots usable now, for many lookups (`SlabView::get`).
    #[inline(always)]
    pub(super) fn view(&self) -> SlabView<'_> {
        SlabView { base: self.base, usable: self.usable.load(Ordering::Acquire), slab: std::marker::PhantomData }
    }

    /// Makes slot `idx` (and its whole chunk) usable; false when the
    /// reservation is used up or the kernel refuses the memory.
    pub(super) fn ensure(&self, idx: u32) -> bool {
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
        let start = unsafe { self.base.as_ptr().add(have) } as *mut u8;
        // SAFETY: the range lies inside our reservation.
        if !unsafe { vm::commit(start, (want - have) * size) } {
            return false;
        }
        // Fault the chunk in now, all at once, rather than a page at a
        // time under the index locks as states land in it.
        for off in (0..(want - have) * size).step_by(4096) {
            // SAFETY: inside the range just made writable; the byte is a
            // zero of a slot nobody uses yet, written back as zero.
            unsafe { std::ptr::write_volatile(start.add(off), 0) };
        }
        // Loom's atomics are not valid as zero bytes: make the slots.
        #[cfg(loom)]
        for i in have..want {
            // SAFETY: inside the range just made writable, unused.
            unsafe { self.base.as_ptr().add(i).write(Slot::default()) };
        }
        self.usable.store(want as u32, Ordering::Release);
        true
    }
}

/// The slab's usable slots as one read of `Slab::usable` saw them: the
/// slab only grows and never unmaps a slot while it lives, so they stay
/// usable while this borrows it (a batch's lookups read the count once,
/// not once a slot).
#[derive(Clone, Copy)]
pub(super) struct SlabView<'a> {
    base: std::ptr::NonNull<Slot>,
    usable: u32,
    slab: std::marker::PhantomData<&'a Slab>,
}

impl<'a> SlabView<'a> {
    /// `Slab::get` against the count this view read.
    #[inline(always)]
    pub(super) fn get(self, idx: u32) -> Option<&'a Slot> {
        if idx < self.usable {
            // SAFETY: as `Slab::get`: slots below a count `usable` once
            // showed stay mapped read-write for the slab's life, and the
            // view borrows the slab.
            Some(unsafe { &*self.base.as_ptr().add(idx as usize) })
        } else {
            None
        }
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // Loom's slots have the model's bookkeeping to drop (std's have
        // nothing to drop).
        #[cfg(loom)]
        for i in 0..self.usable.load(Ordering::Relaxed) as usize {
            // SAFETY: made by `ensure`, dropped once, here.
            unsafe { std::ptr::drop_in_place(self.base.as_ptr().add(i)) };
        }
        // SAFETY: our own mapping; no slot reference outlives the slab.
        unsafe { vm::release(self.base.as_ptr() as *mut u8, Self::BYTES) };
    }
}

/// The slab's address space: reserved inaccessible (no memory, no commit
/// charge), made usable a chunk at a time, given back on drop. Under
/// Miri, which has no `PROT_NONE` mappings or `mprotect`, a zeroed
/// allocation that is usable from the start (and `MAX_CHUNKS` is small).
mod vm {
    /// Null when refused.
    #[cfg(not(miri))]
    pub(super) fn reserve(bytes: usize) -> *mut u8 {
        // SAFETY: a fresh anonymous mapping, owned by the caller.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p as *mut u8
        }
    }

    /// # Safety
    /// `p .. p + len` lies inside one reservation.
    #[cfg(not(miri))]
    pub(super) unsafe fn commit(p: *mut u8, len: usize) -> bool {
        // SAFETY: the caller's.
        unsafe { libc::mprotect(p as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE) == 0 }
    }

    /// # Safety
    /// `p` is a reservation of `bytes`, used no more.
    #[cfg(not(miri))]
    pub(super) unsafe fn release(p: *mut u8, bytes: usize) {
        // SAFETY: the caller's.
        unsafe { libc::munmap(p as *mut libc::c_void, bytes) };
    }

    #[cfg(miri)]
    fn layout(bytes: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(bytes, 4096).expect("slab layout")
    }

    #[cfg(miri)]
    pub(super) fn reserve(bytes: usize) -> *mut u8 {
        // SAFETY: a non-zero size.
        unsafe { std::alloc::alloc_zeroed(layout(bytes)) }
    }

    #[cfg(miri)]
    pub(super) unsafe fn commit(_: *mut u8, _: usize) -> bool {
        true
    }

    #[cfg(miri)]
    pub(super) unsafe fn release(p: *mut u8, bytes: usize) {
        // SAFETY: from `reserve` with this size.
        unsafe { std::alloc::dealloc(p, layout(bytes)) };
    }
}
