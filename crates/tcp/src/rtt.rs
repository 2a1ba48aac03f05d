//! The retransmission timer as RFC 6298: SRTT, RTTVAR, RTO = SRTT +
//! max(G, 4*RTTVAR), clamped to [min, max], doubled per backoff (§5.5).
//! Karn's rule (§3) is the caller's: it samples only segments that were not
//! retransmitted (or uses timestamps, RFC 7323 §4).

use core::time::Duration;

/// Clock granularity G.
const GRANULARITY: Duration = Duration::from_millis(1);

/// Microseconds in a u32 (the bounds: up to 71 minutes), to keep every
/// TCB small.
fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    backoff: u32,
    /// The bounds and the first RTO, in microseconds.
    min_us: u32,
    max_us: u32,
    initial_us: u32,
}

impl RttEstimator {
    pub fn new(initial: Duration, min: Duration, max: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            backoff: 0,
            min_us: micros(min),
            max_us: micros(max),
            initial_us: micros(initial),
        }
    }

    /// One measurement R (§2.2, §2.3).
    pub fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + delta / 4;
                self.srtt = Some(srtt * 7 / 8 + r / 8);
            }
        }
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The current RTO with the backoff applied.
    pub fn rto(&self) -> Duration {
        let us = |v: u32| Duration::from_micros(u64::from(v));
        let (min, max) = (us(self.min_us), us(self.max_us));
        let base = match self.srtt {
            None => us(self.initial_us),
            Some(s) => s + GRANULARITY.max(self.rttvar * 4),
        };
        let base = base.clamp(min, max);
        base.checked_mul(1 << self.backoff.min(16)).unwrap_or(max).min(max)
    }

    /// §5.5: the timer expired.
    pub fn back_off(&mut self) {
        self.backoff = (self.backoff + 1).min(16);
    }

    /// An ACK of new data ends the backoff (§5.7 in effect).
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn follows_rfc6298() {
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        assert_eq!(e.rto(), ms(1000), "initial RTO");
        e.sample(ms(100));
        // SRTT 100, RTTVAR 50: 100 + 200 = 300.
        assert_eq!(e.rto(), ms(300));
        e.sample(ms(100));
        // RTTVAR = 3/4*50 + 0 = 37.5; SRTT 100: 100 + 150 = 250.
        assert_eq!(e.rto(), Duration::from_micros(250_000));
        e.back_off();
        e.back_off();
        assert_eq!(e.rto(), ms(1000));
        e.reset_backoff();
        for _ in 0..100 {
            e.sample(ms(10));
        }
        assert_eq!(e.rto(), ms(200), "clamped to the minimum");
        for _ in 0..20 {
            e.back_off();
        }
        assert_eq!(e.rto(), ms(60_000), "clamped to the maximum");
    }
}
