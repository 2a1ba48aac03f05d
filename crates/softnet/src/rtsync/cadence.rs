//! When the sync flushes its pending changes into softnet's table: the
//! batching policy of the thread in `mod.rs`, on its own so that it can be
//! tested with a clock the test drives.
//!
//! A lone change (a static route added by hand, one flapping prefix) goes
//! after `QUIET` without further messages, at most `MAX_LINGER` after it
//! came. While a burst lasts (at least `BURST_MIN` prefixes flushed in the
//! last `BURST_GAP`: a daemon's feed or withdrawal) a batch ignores quiet
//! gaps and is flushed `BURST_LINGER` after its first change, and each
//! next batch of the burst twice as long after its first, up to
//! `BURST_LINGER_MAX`: the kernel passes a daemon's routes on one message
//! at a time with gaps of a few milliseconds, and each batch path-copies
//! every trie node it touches, so quiet-gap batches of a scattered
//! withdrawal cost a node copy per route, and 500 ms batches of a
//! 1,000,000-prefix withdrawal still about one per two routes
//! (BENCHMARKS §1 "Route sync", sessions 9, 13 and 14). A short burst is
//! published within `BURST_LINGER`; only one that has lasted seconds
//! trails the kernel by up to `BURST_LINGER_MAX`. `MAX_BATCH` pending
//! prefixes flush at once in either mode.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Flush once the socket has been quiet this long ...
pub const QUIET: Duration = Duration::from_millis(2);
/// ... or this long after the first change of a batch.
pub const MAX_LINGER: Duration = Duration::from_millis(50);
/// ... or when this many prefixes wait.
pub const MAX_BATCH: usize = 50_000;
/// At least this many prefixes flushed ...
pub const BURST_MIN: usize = 100;
/// ... within this time make the next batch a burst batch ...
pub const BURST_GAP: Duration = Duration::from_secs(1);
/// ... flushed this long after its first change, whatever the gaps; the
/// burst's next batch twice as long as the one before ...
pub const BURST_LINGER: Duration = Duration::from_millis(500);
/// ... up to this.
pub const BURST_LINGER_MAX: Duration = Duration::from_secs(2);
/// How long the thread waits for messages with nothing pending.
pub const IDLE: Duration = Duration::from_millis(200);

/// The batch under way: when its first change came, whether it is a
/// burst batch, and how long it may wait after its first change.
#[derive(Clone, Copy, Debug)]
struct Batch {
    first: Instant,
    burst: bool,
    linger: Duration,
}

#[derive(Default, Debug)]
pub struct Cadence {
    batch: Option<Batch>,
    /// The flushes of the last `BURST_GAP`: when, and how many prefixes.
    recent: VecDeque<(Instant, usize)>,
    /// The linger of the last batch flushed, when it was a burst batch.
    burst_linger: Option<Duration>,
}

impl Cadence {
    /// Notes that changes are pending at `now` (the first one starts a
    /// batch).
    pub fn pending(&mut self, now: Instant) {
        if self.batch.is_none() {
            self.forget(now);
            let burst = self.recent.iter().map(|(_, n)| n).sum::<usize>() >= BURST_MIN;
            let linger = match (burst, self.burst_linger) {
                (false, _) => MAX_LINGER,
                (true, None) => BURST_LINGER,
                (true, Some(l)) => (l * 2).min(BURST_LINGER_MAX),
            };
            self.batch = Some(Batch { first: now, burst, linger });
        }
    }

    /// When the batch under way started.
    pub fn first(&self) -> Option<Instant> {
        self.batch.map(|b| b.first)
    }

    /// Whether the batch under way is a burst batch.
    #[cfg(test)]
    pub fn in_burst(&self) -> bool {
        self.batch.is_some_and(|b| b.burst)
    }

    /// How long to wait for the next message, with `pending` prefixes
    /// waiting; whole milliseconds rounded up (poll(2)'s unit), so a wait
    /// that ends finds its deadline passed.
    pub fn wait(&self, now: Instant, pending: usize) -> Duration {
        if pending == 0 {
            return IDLE;
        }
        let Some(b) = &self.batch else { return QUIET };
        let left = (b.first + b.linger).saturating_duration_since(now);
        let d = if b.burst { left } else { left.min(QUIET) };
        Duration::from_millis(d.as_nanos().div_ceil(1_000_000) as u64)
    }

    /// Whether to flush now: `pending` prefixes wait, and `quiet` says the
    /// last wait ended without a message.
    pub fn due(&self, now: Instant, pending: usize, quiet: bool) -> bool {
        if pending == 0 {
            return false;
        }
        if pending >= MAX_BATCH {
            return true;
        }
        match &self.batch {
            None => quiet,
            Some(b) => now.saturating_duration_since(b.first) >= b.linger || (quiet && !b.burst),
        }
    }

    /// Notes a flush of `prefixes` at `now`: the batch is over.
    pub fn flushed(&mut self, now: Instant, prefixes: usize) {
        self.burst_linger = self.batch.take().filter(|b| b.burst).map(|b| b.linger);
        self.forget(now);
        self.recent.push_back((now, prefixes));
    }

    fn forget(&mut self, now: Instant) {
        while self.recent.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) >= BURST_GAP) {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_lone_change_goes_after_quiet() {
        let t0 = Instant::now();
        let mut c = Cadence::default();
        assert_eq!(c.wait(t0, 0), IDLE);
        assert!(!c.due(t0, 0, true));
        c.pending(t0);
        assert!(!c.in_burst());
        assert_eq!(c.wait(t0, 1), QUIET);
        assert!(!c.due(t0 + MS, 1, false), "a message came: keep collecting");
        assert!(c.due(t0 + 2 * MS, 1, true), "quiet: flush");
        // A stream without a quiet gap still goes at MAX_LINGER.
        assert!(!c.due(t0 + MAX_LINGER - MS, 1, false));
        assert_eq!(c.wait(t0 + MAX_LINGER - Duration::from_micros(300), 1), MS, "rounded up to whole ms");
        assert!(c.due(t0 + MAX_LINGER, 1, false));
        c.flushed(t0 + 2 * MS, 1);
        // One prefix a flush is never a burst.
        c.pending(t0 + 10 * MS);
        assert!(!c.in_burst());
    }

    #[test]
    fn a_burst_ignores_quiet_gaps_until_its_linger() {
        let t0 = Instant::now();
        let mut c = Cadence::default();
        // A feed starts: its first batches go as a lone change's would
        // (60 prefixes, then 50: 110 in the last second).
        c.pending(t0);
        assert!(c.due(t0 + 3 * MS, 60, true));
        c.flushed(t0 + 3 * MS, 60);
        c.pending(t0 + 5 * MS);
        assert!(!c.in_burst(), "60 prefixes are not a burst yet");
        c.flushed(t0 + 8 * MS, 50);
        // Now a burst: a quiet gap does not flush, the linger does.
        let t1 = t0 + 10 * MS;
        c.pending(t1);
        assert!(c.in_burst());
        assert_eq!(c.first(), Some(t1));
        assert_eq!(c.wait(t1, 5), BURST_LINGER);
        assert_eq!(c.wait(t1 + 100 * MS, 5), BURST_LINGER - 100 * MS);
        assert!(!c.due(t1 + 100 * MS, 5, true));
        assert!(!c.due(t1 + BURST_LINGER - MS, 5, true));
        assert!(c.due(t1 + BURST_LINGER, 5, true));
        // MAX_BATCH pending flush at once, burst or not.
        assert!(c.due(t1 + MS, MAX_BATCH, false));
        c.flushed(t1 + BURST_LINGER, 900);
        // The burst lasts while its flushes are recent ...
        c.pending(t1 + BURST_LINGER + 900 * MS);
        assert!(c.in_burst());
        c.flushed(t1 + BURST_LINGER + 1400 * MS, 20);
        // ... and ends a second after the last large one.
        c.pending(t1 + BURST_LINGER + 2500 * MS);
        assert!(!c.in_burst(), "no large flush in the last second");
    }

    #[test]
    fn a_long_burst_doubles_its_linger_up_to_the_max_and_starts_over_after() {
        let t0 = Instant::now();
        let mut c = Cadence::default();
        c.pending(t0);
        c.flushed(t0 + 3 * MS, 5_000);
        // The burst's batches wait 0.5, 1, 2, 2 s after their first change.
        let mut t = t0 + 4 * MS;
        for linger in [BURST_LINGER, 2 * BURST_LINGER, BURST_LINGER_MAX, BURST_LINGER_MAX] {
            c.pending(t);
            assert!(c.in_burst());
            assert_eq!(c.wait(t, 10), linger);
            assert!(!c.due(t + linger - MS, 10, true), "a quiet gap does not end a burst batch");
            assert!(c.due(t + linger, 10, false));
            c.flushed(t + linger, 5_000);
            t += linger + MS;
        }
        // MAX_BATCH still flushes a long batch at once.
        c.pending(t);
        assert!(c.due(t + MS, MAX_BATCH, false));
        c.flushed(t + MS, MAX_BATCH);
        // Over: a lone change goes after QUIET; the next burst starts at
        // BURST_LINGER again.
        let t2 = t + 3000 * MS;
        c.pending(t2);
        assert!(!c.in_burst());
        assert!(c.due(t2 + QUIET, 1, true));
        c.flushed(t2 + QUIET, 1);
        c.pending(t2 + 10 * MS);
        c.flushed(t2 + 20 * MS, 500);
        c.pending(t2 + 30 * MS);
        assert!(c.in_burst());
        assert_eq!(c.wait(t2 + 30 * MS, 10), BURST_LINGER);
    }
}
