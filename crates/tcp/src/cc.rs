//! Congestion control behind a trait: NewReno (RFC 5681, RFC 6582) and
//! CUBIC (RFC 9438, the default). The connection owns loss detection and
//! recovery (dup ACKs, SACK, RFC 6675's pipe); an algorithm only says how
//! big the window is after each event. Windows are in bytes.

use crate::Instant;
use core::time::Duration;

pub trait CongestionControl: Send {
    fn cwnd(&self) -> u32;
    fn ssthresh(&self) -> u32;
    /// New data was acknowledged outside loss recovery.
    fn on_ack(&mut self, now: Instant, acked: u32, srtt: Option<Duration>);
    /// Loss detected by duplicate ACKs or SACK: recovery begins.
    fn on_loss(&mut self, now: Instant, flight: u32);
    /// Recovery ended with a full ACK (RFC 6582 §3.2 step 3).
    fn on_recovery_end(&mut self, flight: u32);
    /// The retransmission timer expired (RFC 5681 eq. 4, loss window).
    fn on_rto(&mut self, flight: u32);
    /// The send MSS changed (PMTU): later increments use the new one.
    fn set_mss(&mut self, smss: u32);
}

/// Which algorithm a connection uses.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Default)]
pub enum CcAlgorithm {
    NewReno,
    #[default]
    Cubic,
}

impl CcAlgorithm {
    pub fn build(self, smss: u32) -> Cc {
        match self {
            CcAlgorithm::NewReno => Cc::NewReno(NewReno::new(smss)),
            CcAlgorithm::Cubic => Cc::Cubic(Cubic::new(smss)),
        }
    }
}

/// A connection's algorithm, held in its TCB (not boxed: a connection
/// that allocated one for its SYN and another for the handshake's MSS
/// made two heap allocations of every short connection's four; BENCHMARKS
/// §4, session 15).
pub enum Cc {
    NewReno(NewReno),
    Cubic(Cubic),
}

macro_rules! each {
    ($s:expr, $c:ident => $e:expr) => {
        match $s {
            Cc::NewReno($c) => $e,
            Cc::Cubic($c) => $e,
        }
    };
}

/// The algorithm's calls without the trait in scope (the TCB's).
impl Cc {
    #[inline]
    pub fn cwnd(&self) -> u32 {
        each!(self, c => c.cwnd())
    }
    #[inline]
    pub fn ssthresh(&self) -> u32 {
        each!(self, c => c.ssthresh())
    }
    #[inline]
    pub fn on_ack(&mut self, now: Instant, acked: u32, srtt: Option<Duration>) {
        each!(self, c => c.on_ack(now, acked, srtt))
    }
    #[inline]
    pub fn on_loss(&mut self, now: Instant, flight: u32) {
        each!(self, c => c.on_loss(now, flight))
    }
    #[inline]
    pub fn on_recovery_end(&mut self, flight: u32) {
        each!(self, c => c.on_recovery_end(flight))
    }
    #[inline]
    pub fn on_rto(&mut self, flight: u32) {
        each!(self, c => c.on_rto(flight))
    }
    #[inline]
    pub fn set_mss(&mut self, smss: u32) {
        each!(self, c => c.set_mss(smss))
    }
}

impl CongestionControl for Cc {
    fn cwnd(&self) -> u32 {
        Cc::cwnd(self)
    }
    fn ssthresh(&self) -> u32 {
        Cc::ssthresh(self)
    }
    fn on_ack(&mut self, now: Instant, acked: u32, srtt: Option<Duration>) {
        Cc::on_ack(self, now, acked, srtt)
    }
    fn on_loss(&mut self, now: Instant, flight: u32) {
        Cc::on_loss(self, now, flight)
    }
    fn on_recovery_end(&mut self, flight: u32) {
        Cc::on_recovery_end(self, flight)
    }
    fn on_rto(&mut self, flight: u32) {
        Cc::on_rto(self, flight)
    }
    fn set_mss(&mut self, smss: u32) {
        Cc::set_mss(self, smss)
    }
}

/// RFC 5681 §3.1: IW = min(4*SMSS, max(2*SMSS, 4380)).
pub fn initial_window(smss: u32) -> u32 {
    (4 * smss).min((2 * smss).max(4380))
}

fn loss_ssthresh(flight: u32, smss: u32) -> u32 {
    (flight / 2).max(2 * smss)
}

/// RFC 5681 slow start and congestion avoidance (byte counting).
pub struct NewReno {
    smss: u32,
    cwnd: u32,
    ssthresh: u32,
    acked_in_ca: u32,
}

impl NewReno {
    pub fn new(smss: u32) -> NewReno {
        NewReno { smss, cwnd: initial_window(smss), ssthresh: u32::MAX, acked_in_ca: 0 }
    }
}

impl CongestionControl for NewReno {
    fn cwnd(&self) -> u32 {
        self.cwnd
    }
    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }
    fn on_ack(&mut self, _now: Instant, acked: u32, _srtt: Option<Duration>) {
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(acked.min(self.smss));
        } else {
            self.acked_in_ca = self.acked_in_ca.saturating_add(acked);
            if self.acked_in_ca >= self.cwnd {
                self.acked_in_ca -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(self.smss);
            }
        }
    }
    fn on_loss(&mut self, _now: Instant, flight: u32) {
        self.ssthresh = loss_ssthresh(flight, self.smss);
        self.cwnd = self.ssthresh;
        self.acked_in_ca = 0;
    }
    fn on_recovery_end(&mut self, flight: u32) {
        // RFC 6582 §3.2 step 3, option (1) with the burst guard.
        self.cwnd = self.ssthresh.min(flight.max(self.smss) + self.smss);
    }
    fn on_rto(&mut self, flight: u32) {
        self.ssthresh = loss_ssthresh(flight, self.smss);
        self.cwnd = self.smss;
        self.acked_in_ca = 0;
    }
    fn set_mss(&mut self, smss: u32) {
        self.smss = smss.max(1);
    }
}

/// RFC 9438 constants.
const CUBIC_C: f64 = 0.4;
const CUBIC_BETA: f64 = 0.7;

/// CUBIC (RFC 9438), windows kept in segments internally.
pub struct Cubic {
    smss: u32,
    cwnd: f64,
    ssthresh: f64,
    w_max: f64,
    k: f64,
    w_est: f64,
    epoch: Option<Instant>,
}

impl Cubic {
    pub fn new(smss: u32) -> Cubic {
        Cubic {
            smss,
            cwnd: f64::from(initial_window(smss)) / f64::from(smss),
            ssthresh: f64::INFINITY,
            w_max: 0.0,
            k: 0.0,
            w_est: 0.0,
            epoch: None,
        }
    }

    /// W_cubic(t) = C*(t-K)^3 + W_max (§4.2).
    fn w_cubic(&self, t: f64) -> f64 {
        CUBIC_C * (t - self.k).powi(3) + self.w_max
    }

    /// §4.6 and §4.7: the window reduction with fast convergence.
    fn reduce(&mut self) {
        self.epoch = None;
        self.w_max = if self.cwnd < self.w_max { self.cwnd * (1.0 + CUBIC_BETA) / 2.0 } else { self.cwnd };
        self.ssthresh = (self.cwnd * CUBIC_BETA).max(2.0);
    }
}

impl CongestionControl for Cubic {
    fn cwnd(&self) -> u32 {
        (self.cwnd * f64::from(self.smss)).min(f64::from(u32::MAX)) as u32
    }
    fn ssthresh(&self) -> u32 {
        (self.ssthresh * f64::from(self.smss)).min(f64::from(u32::MAX)) as u32
    }
    fn on_ack(&mut self, now: Instant, acked: u32, srtt: Option<Duration>) {
        let segs = f64::from(acked) / f64::from(self.smss);
        if self.cwnd < self.ssthresh {
            self.cwnd += segs.min(1.0);
            return;
        }
        let epoch = *self.epoch.get_or_insert_with(|| {
            // §4.2: a new congestion-avoidance epoch.
            if self.cwnd < self.w_max {
                self.k = ((self.w_max - self.cwnd) / CUBIC_C).cbrt();
            } else {
                self.k = 0.0;
                self.w_max = self.cwnd;
            }
            self.w_est = self.cwnd;
            now
        });
        let t = (now - epoch).as_secs_f64();
        let rtt = srtt.map_or(0.1, |d| d.as_secs_f64());
        // §4.3: the Reno-friendly estimate.
        let alpha = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);
        self.w_est += alpha * segs / self.cwnd;
        let w = self.w_cubic(t);
        if w < self.w_est {
            self.cwnd = self.w_est;
        } else {
            // §4.4, §4.5: approach W_cubic(t + RTT), at most 1.5x per RTT.
            let target = self.w_cubic(t + rtt).clamp(self.cwnd, 1.5 * self.cwnd);
            self.cwnd += (target - self.cwnd) / self.cwnd * segs;
        }
    }
    fn on_loss(&mut self, _now: Instant, _flight: u32) {
        self.reduce();
        self.cwnd = self.ssthresh;
    }
    fn on_recovery_end(&mut self, _flight: u32) {
        self.cwnd = self.ssthresh;
    }
    fn on_rto(&mut self, _flight: u32) {
        self.reduce();
        self.cwnd = 1.0;
    }
    fn set_mss(&mut self, smss: u32) {
        // Keep the window in bytes: rescale the segment counts.
        let k = f64::from(self.smss) / f64::from(smss.max(1));
        self.cwnd *= k;
        self.ssthresh *= k;
        self.w_max *= k;
        self.w_est *= k;
        self.epoch = None;
        self.smss = smss.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    #[test]
    fn newreno_slow_start_avoidance_and_loss() {
        let mut c = NewReno::new(MSS);
        assert_eq!(c.cwnd(), 4000);
        c.on_ack(Instant::ZERO, 1000, None);
        assert_eq!(c.cwnd(), 5000);
        c.on_loss(Instant::ZERO, 10_000);
        assert_eq!((c.cwnd(), c.ssthresh()), (5000, 5000));
        for _ in 0..5 {
            c.on_ack(Instant::ZERO, 1000, None);
        }
        assert_eq!(c.cwnd(), 6000, "one SMSS per window in congestion avoidance");
        c.on_rto(6000);
        assert_eq!((c.cwnd(), c.ssthresh()), (1000, 3000));
    }

    #[test]
    fn cubic_reduces_by_beta_and_regrows_to_wmax_after_k() {
        let mut c = Cubic::new(MSS);
        c.cwnd = 100.0;
        c.ssthresh = 50.0;
        c.on_loss(Instant::ZERO, 100_000);
        assert_eq!(c.cwnd(), 70_000);
        // K = cbrt((100 - 70) / 0.4) ≈ 4.22 s: near W_max after K seconds.
        let mut now = Instant::ZERO;
        let rtt = Duration::from_millis(100);
        for _ in 0..43 {
            now = now + rtt;
            let segs = c.cwnd as u32;
            for _ in 0..segs {
                c.on_ack(now, MSS, Some(rtt));
            }
        }
        let w = c.cwnd;
        assert!((95.0..115.0).contains(&w), "cwnd {w} near W_max 100 at t≈K");
        // A second loss below W_max: fast convergence lowers W_max.
        c.cwnd = 90.0;
        c.w_max = 100.0;
        c.on_loss(now, 0);
        assert!((c.w_max - 76.5).abs() < 1e-9, "W_max = 90 * (1 + 0.7) / 2");
        c.on_rto(0);
        assert_eq!(c.cwnd(), MSS);
    }

    #[test]
    fn a_smaller_mss_keeps_the_window_in_bytes() {
        let mut c = Cubic::new(MSS);
        c.cwnd = 20.0;
        c.set_mss(500);
        assert_eq!(c.cwnd(), 20_000);
        let mut n = NewReno::new(MSS);
        n.set_mss(500);
        n.on_ack(Instant::ZERO, 1000, None);
        assert_eq!(n.cwnd(), 4500, "slow start adds at most the new SMSS");
    }
}
