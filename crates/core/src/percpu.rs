//! Per-worker values: one cache-line-aligned slot per worker, written only by
//! its owner with plain (non-locked) stores, summed by readers.

use std::sync::atomic::{AtomicU64, Ordering};

/// Most workers a daemon runs; slots beyond the configured count stay zero.
pub const MAX_WORKERS: usize = 16;

/// Pads and aligns `T` to a cache line so owners never share one.
#[repr(align(64))]
#[derive(Default)]
pub struct CacheAligned<T>(pub T);

/// A counter written by one thread only. `add` is a relaxed load and store,
/// not a locked read-modify-write: cheap on the data path, and exact because
/// there is a single writer.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value written by one thread only (a level, not a count): `set` is
/// a relaxed store, for the owner to publish what readers may sample.
#[derive(Default, Debug)]
pub struct Gauge(AtomicU64);

impl Gauge {
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A `T` per worker. Worker `w` writes `get(w)`; readers visit all.
pub struct PerWorker<T> {
    slots: Box<[CacheAligned<T>]>,
}

impl<T: Default> PerWorker<T> {
    pub fn new() -> Self {
        PerWorker { slots: (0..MAX_WORKERS).map(|_| CacheAligned(T::default())).collect() }
    }
}

impl<T: Default> Default for PerWorker<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> PerWorker<T> {
    /// Worker `w`'s slot (`w` wraps at `MAX_WORKERS`; the control thread
    /// uses the last slot).
    #[inline]
    pub fn get(&self, w: usize) -> &T {
        &self.slots[w % MAX_WORKERS].0
    }
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|s| &s.0)
    }
    /// Sums one counter over all workers.
    pub fn sum(&self, f: impl Fn(&T) -> &Counter) -> u64 {
        self.iter().map(|t| f(t).get()).sum()
    }
}

/// Slot the control thread writes (never a worker's).
pub const CONTROL_SLOT: usize = MAX_WORKERS - 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Stats {
        a: Counter,
    }

    #[test]
    fn per_worker_counters_sum_over_workers() {
        let p: PerWorker<Stats> = PerWorker::new();
        p.get(0).a.add(3);
        p.get(1).a.inc();
        p.get(CONTROL_SLOT).a.inc();
        assert_eq!(p.sum(|s| &s.a), 5);
        assert_eq!(std::mem::align_of::<CacheAligned<Stats>>(), 64);
    }
}
