//! The synchronization primitives pf's lock-free code is built on: std's
//! and parking_lot's normally, loom's under `--cfg loom`, so that the code
//! loom checks (`state::loom_tests`) is the production code and not a copy
//! of it. Each item has the same shape in both builds; the std ones cost
//! nothing over using std directly.
//!
//! Run the models with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p softnet-pf --lib loom`
//! (crates/pf/LOOM.md).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize};
pub(crate) use std::sync::atomic::Ordering;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize};

#[cfg(loom)]
pub(crate) use loom::{hint::spin_loop, thread::yield_now};
#[cfg(not(loom))]
pub(crate) use std::{hint::spin_loop, thread::yield_now};

#[cfg(not(loom))]
pub(crate) use parking_lot::{Mutex, MutexGuard};

/// A mutex with parking_lot's shape (`lock` gives the guard) over loom's.
#[cfg(loom)]
#[derive(Default)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(t: T) -> Self {
        Mutex(loom::sync::Mutex::new(t))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().expect("loom mutex poisoned")
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::{MutPtr, UnsafeCell};

/// `std::cell::UnsafeCell` with loom's interface: `get_mut` hands out a
/// `MutPtr` (loom tracks the access while it lives).
#[cfg(not(loom))]
#[derive(Default)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(t: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(t))
    }

    #[inline(always)]
    pub(crate) fn get_mut(&self) -> MutPtr<T> {
        MutPtr(self.0.get())
    }
}

/// A raw pointer into an `UnsafeCell` (loom's `MutPtr`).
#[cfg(not(loom))]
pub(crate) struct MutPtr<T>(*mut T);

#[cfg(not(loom))]
impl<T> MutPtr<T> {
    /// # Safety
    /// As dereferencing a `*mut T`: the caller has exclusive access.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn deref(&self) -> &mut T {
        // SAFETY: the caller's.
        unsafe { &mut *self.0 }
    }
}

#[cfg(not(loom))]
pub(crate) use std::sync::OnceLock;

/// `std::sync::OnceLock`'s `get` / `get_or_init` over loom's atomics and
/// mutex (loom has no `OnceLock`): the value is published by a release
/// store of its pointer, as std's is by its state word.
#[cfg(loom)]
pub(crate) struct OnceLock<T> {
    ptr: loom::sync::atomic::AtomicPtr<T>,
    init: loom::sync::Mutex<()>,
}

#[cfg(loom)]
impl<T> OnceLock<T> {
    pub(crate) fn new() -> Self {
        OnceLock { ptr: loom::sync::atomic::AtomicPtr::new(std::ptr::null_mut()), init: loom::sync::Mutex::new(()) }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: a non-null pointer is a leaked box, freed only on drop.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    pub(crate) fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        if let Some(v) = self.get() {
            return v;
        }
        let _g = self.init.lock().expect("loom mutex poisoned");
        if let Some(v) = self.get() {
            return v;
        }
        let p = Box::into_raw(Box::new(f()));
        self.ptr.store(p, Ordering::Release);
        // SAFETY: just made; freed only on drop.
        unsafe { &*p }
    }
}

#[cfg(loom)]
impl<T> Drop for OnceLock<T> {
    fn drop(&mut self) {
        let p = self.ptr.with_mut(|p| *p);
        if !p.is_null() {
            // SAFETY: ours, from `get_or_init`.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}
