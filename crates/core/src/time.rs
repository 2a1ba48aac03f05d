//! Time as the stack sees it: an injected clock, never the OS directly.
//!
//! `Instant` counts nanoseconds from an arbitrary epoch chosen by the clock.
//! Workers read the clock once per batch and pass the value down.

use core::ops::{Add, Sub};
use core::time::Duration;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);
    pub const fn from_nanos(ns: u64) -> Self {
        Instant(ns)
    }
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms * 1_000_000)
    }
    pub const fn from_secs(s: u64) -> Self {
        Instant(s * 1_000_000_000)
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }
    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.as_nanos() as u64))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(d.as_nanos() as u64))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, other: Instant) -> Duration {
        self.saturating_since(other)
    }
}

/// Where the stack gets the time from.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;

    /// Milliseconds since midnight UT, for the IP Timestamp option
    /// (RFC 791). Clocks without a calendar count from their epoch.
    fn ms_since_midnight_ut(&self) -> u32 {
        (self.now().as_nanos() / 1_000_000 % 86_400_000) as u32
    }
}

/// The real monotonic clock (CLOCK_MONOTONIC through `std::time::Instant`).
pub struct MonotonicClock {
    origin: std::time::Instant,
}

impl MonotonicClock {
    pub fn new() -> Self {
        MonotonicClock { origin: std::time::Instant::now() }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        // Start at 1 s so that "never" (zero) is always in the past.
        Instant(self.origin.elapsed().as_nanos() as u64 + 1_000_000_000)
    }

    fn ms_since_midnight_ut(&self) -> u32 {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        (ms % 86_400_000) as u32
    }
}

/// A clock that moves only when told to: for deterministic tests.
#[derive(Default)]
pub struct ManualClock {
    ns: AtomicU64,
}

impl ManualClock {
    pub fn new(start: Instant) -> Self {
        ManualClock { ns: AtomicU64::new(start.0) }
    }
    pub fn advance(&self, d: Duration) {
        self.ns.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
    pub fn set(&self, t: Instant) {
        self.ns.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant(self.ns.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::new(Instant::from_secs(5));
        assert_eq!(c.now(), Instant::from_secs(5));
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now().as_nanos(), 6_500_000_000);
    }

    #[test]
    fn instant_subtraction_saturates() {
        let a = Instant::from_secs(1);
        let b = Instant::from_secs(3);
        assert_eq!(b - a, Duration::from_secs(2));
        assert_eq!(a - b, Duration::ZERO);
    }
}
