//! The engine's view of time and randomness: both injected, never the OS.

use core::ops::{Add, Sub};
use core::time::Duration;

/// Nanoseconds from an epoch the caller chooses (core's `Instant` converts
/// by `as_nanos`).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);
    pub const fn from_nanos(ns: u64) -> Instant {
        Instant(ns)
    }
    pub const fn from_millis(ms: u64) -> Instant {
        Instant(ms * 1_000_000)
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.as_nanos() as u64))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, o: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(o.0))
    }
}

/// What a connection needs from the world at each call: the time, random
/// numbers, and initial sequence numbers for its 4-tuple (the caller knows
/// the addresses; [`crate::IsnGen`] computes them as RFC 6528).
pub trait Env {
    fn now(&self) -> Instant;
    fn random_u32(&mut self) -> u32;
    fn isn(&mut self, local_port: u16, remote_port: u16) -> crate::Seq;
}
