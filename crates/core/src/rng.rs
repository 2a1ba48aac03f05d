//! Randomness for the data path: one ChaCha generator per worker thread,
//! seeded from an injected entropy source (the OS's `getrandom` in the
//! daemon, a fixed seed in tests), stirred once per batch.
//!
//! What must not be guessable comes from here: IP IDs, NAT source ports,
//! pf's state id start, ICMP query ids, `source-hash` keys drawn at run
//! time. OpenBSD takes these from `arc4random(9)`, a ChaCha20 stream
//! rekeyed from its own output and reseeded from the entropy pool; this
//! follows the same shape with ChaCha12 per worker thread, so the data
//! path draws numbers without a lock or a system call.
//!
//! The generator lives in a thread-local: the worker installs it on its
//! thread at its first batch, and pf (called on that thread) draws from it
//! with `random_u32` and friends. A thread with no generator installed
//! (the control thread, a unit test) gets one seeded from the OS on first
//! use.

use std::cell::RefCell;

use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

use crate::time::Instant;

/// Where a worker's generator gets its seeds, injected like the clock.
pub trait Entropy: Send + Sync {
    /// 32 bytes of seed for `worker`'s generator; called at start and at
    /// every reseed (`RESEED_INTERVAL`).
    fn seed(&self, worker: usize) -> [u8; 32];
}

/// The operating system's entropy (`getrandom(2)`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn seed(&self, _worker: usize) -> [u8; 32] {
        os_seed()
    }
}

fn os_seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    // getrandom(2) fails only on kernels without it (before 3.17); a
    // process that cannot get entropy must not run with a guessable seed.
    getrandom::fill(&mut s).expect("getrandom: no entropy from the operating system");
    s
}

/// A fixed seed for deterministic tests: each worker's seeds are derived
/// from it, its id and how many seeds it drew before.
#[derive(Debug)]
pub struct FixedEntropy {
    seed: u64,
    drawn: std::sync::atomic::AtomicU64,
}

impl FixedEntropy {
    pub fn new(seed: u64) -> FixedEntropy {
        FixedEntropy { seed, drawn: std::sync::atomic::AtomicU64::new(0) }
    }
}

impl Entropy for FixedEntropy {
    fn seed(&self, worker: usize) -> [u8; 32] {
        let n = self.drawn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        fixed_seed(self.seed, worker as u64, n)
    }
}

fn fixed_seed(seed: u64, worker: u64, n: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&worker.to_le_bytes());
    s[16..24].copy_from_slice(&n.to_le_bytes());
    s
}

/// How long a generator runs on one seed before it is reseeded from its
/// entropy source (arc4random reseeds after about 1.6 MB of output).
pub const RESEED_INTERVAL: core::time::Duration = core::time::Duration::from_secs(300);

/// One worker's generator.
pub struct WorkerRng {
    rng: ChaCha12Rng,
    /// Drawn from since the last stir.
    used: bool,
    seeded_at: Instant,
}

impl WorkerRng {
    pub fn from_seed(seed: [u8; 32], now: Instant) -> WorkerRng {
        WorkerRng { rng: ChaCha12Rng::from_seed(seed), used: false, seeded_at: now }
    }

    /// A generator with a fixed seed (tests).
    pub fn seeded(seed: u64) -> WorkerRng {
        WorkerRng::from_seed(fixed_seed(seed, 0, 0), Instant::ZERO)
    }

    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        self.used = true;
        self.rng.next_u32()
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.used = true;
        self.rng.next_u64()
    }

    /// A number in `0..n`, uniform (arc4random_uniform's rejection of the
    /// low remainder); 0 when `n` is 0 or 1.
    pub fn uniform(&mut self, n: u32) -> u32 {
        if n < 2 {
            return 0;
        }
        let min = n.wrapping_neg() % n;
        loop {
            let r = self.next_u32();
            if r >= min {
                return r % n;
            }
        }
    }

    /// Once per batch: rekey from the generator's own output and the batch
    /// time (so output already given cannot be used to find earlier or
    /// later output after this point), and reseed from `entropy` every
    /// `RESEED_INTERVAL`. A generator not drawn from since the last stir
    /// is left alone: an idle worker costs nothing.
    pub fn stir(&mut self, now: Instant, entropy: &dyn Entropy, worker: usize) {
        if !self.used {
            return;
        }
        self.used = false;
        let mut seed = [0u8; 32];
        if now.saturating_since(self.seeded_at) >= RESEED_INTERVAL {
            seed = entropy.seed(worker);
            self.seeded_at = now;
        }
        let mut next = [0u8; 32];
        self.rng.fill_bytes(&mut next);
        for (s, n) in seed.iter_mut().zip(next) {
            *s ^= n;
        }
        for (s, t) in seed.iter_mut().zip(now.as_nanos().to_le_bytes()) {
            *s ^= t;
        }
        self.rng = ChaCha12Rng::from_seed(seed);
    }
}

thread_local! {
    static RNG: RefCell<Option<WorkerRng>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's generator (seeded from the OS if none was
/// installed).
#[inline]
pub fn with<R>(f: impl FnOnce(&mut WorkerRng) -> R) -> R {
    RNG.with(|c| {
        let mut c = c.borrow_mut();
        let rng = c.get_or_insert_with(|| WorkerRng::from_seed(os_seed(), Instant::ZERO));
        f(rng)
    })
}

/// Installs `rng` as this thread's generator (a worker at its first batch;
/// a test that wants a fixed sequence).
pub fn install(rng: WorkerRng) {
    RNG.with(|c| *c.borrow_mut() = Some(rng));
}

/// Whether this thread has a generator.
pub fn installed() -> bool {
    RNG.with(|c| c.borrow().is_some())
}

#[inline]
pub fn random_u32() -> u32 {
    with(|r| r.next_u32())
}

#[inline]
pub fn random_u16() -> u16 {
    (random_u32() >> 16) as u16
}

/// A number in `0..n` (arc4random_uniform).
#[inline]
pub fn uniform(n: u32) -> u32 {
    with(|r| r.uniform(n))
}

/// The batch's stir of this thread's generator (see `WorkerRng::stir`).
pub fn stir(now: Instant, entropy: &dyn Entropy, worker: usize) {
    RNG.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            Some(r) => r.stir(now, entropy, worker),
            None => *c = Some(WorkerRng::from_seed(entropy.seed(worker), now)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_seed_gives_the_same_sequence() {
        let mut a = WorkerRng::seeded(7);
        let mut b = WorkerRng::seeded(7);
        let mut c = WorkerRng::seeded(8);
        let xa: Vec<u32> = (0..8).map(|_| a.next_u32()).collect();
        let xb: Vec<u32> = (0..8).map(|_| b.next_u32()).collect();
        let xc: Vec<u32> = (0..8).map(|_| c.next_u32()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn stirring_changes_the_stream_only_after_use() {
        let e = FixedEntropy::new(1);
        let mut a = WorkerRng::seeded(3);
        let mut b = WorkerRng::seeded(3);
        // unused: stir is a no-op
        a.stir(Instant::from_secs(1), &e, 0);
        assert_eq!(a.next_u32(), b.next_u32());
        // used: the next output differs from the unstirred stream
        a.stir(Instant::from_secs(2), &e, 0);
        assert_ne!(a.next_u32(), b.next_u32());
    }

    #[test]
    fn uniform_stays_in_range_and_covers_it() {
        let mut r = WorkerRng::seeded(9);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let v = r.uniform(7);
            assert!(v < 7);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(r.uniform(0), 0);
        assert_eq!(r.uniform(1), 0);
    }

    #[test]
    fn fixed_entropy_differs_per_worker_and_draw() {
        let e = FixedEntropy::new(5);
        let a = e.seed(0);
        let b = e.seed(0);
        let c = FixedEntropy::new(5).seed(1);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn the_thread_generator_can_be_installed_with_a_seed() {
        install(WorkerRng::seeded(11));
        let x = random_u32();
        install(WorkerRng::seeded(11));
        assert_eq!(random_u32(), x);
        assert!(installed());
    }
}
