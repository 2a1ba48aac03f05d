//! Timers (OpenBSD tcp_timer.c): retransmission (RFC 6298 §5), persist
//! (zero-window probes, RFC 9293 §3.8.6.1), delayed ACK, keepalive,
//! TIME_WAIT's 2MSL and FIN_WAIT_2's timeout.

use super::{State, Tcb, TcpError};
use crate::{Env, Instant};

impl Tcb {
    /// Runs the timers due at `now`; then call `output`.
    pub fn on_timer(&mut self, env: &mut dyn Env) {
        let now = env.now();
        if self.close_at.is_some_and(|t| t <= now) {
            self.close_at = None;
            if matches!(self.state, State::TimeWait | State::FinWait2) {
                self.enter_closed(None);
                return;
            }
        }
        if self.delack_at.is_some_and(|t| t <= now) {
            self.delack_at = None;
            self.ack_now = true;
        }
        if self.rexmt_at.is_some_and(|t| t <= now) {
            self.rexmt_at = None;
            self.retransmit_timeout(now);
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            self.persist_at = None;
            if self.snd_wnd == 0 && self.snd_nxt != self.snd_una {
                // The last probe byte was not taken: probe again from SND.UNA.
                self.snd_nxt = self.snd_una;
            }
            self.force_probe = true;
        }
        if self.keep_at.is_some_and(|t| t <= now) {
            self.keep_at = None;
            self.keepalive_timeout(now);
        }
    }

    /// RFC 6298 §5.4–5.6 and RFC 5681 §3.1: back off, go back to SND.UNA,
    /// shrink the window; Karn's rule stops the RTT timing.
    fn retransmit_timeout(&mut self, now: Instant) {
        if self.snd_una == self.snd_max && !matches!(self.state, State::SynSent | State::SynReceived) {
            return;
        }
        self.rxt_shift += 1;
        if self.rxt_shift > self.cfg.max_retries {
            if self.state.synchronized() {
                self.abort();
            }
            self.enter_closed(Some(TcpError::TimedOut));
            return;
        }
        self.stats.rto_expired += 1;
        self.rtt.back_off();
        let flight = self.snd_max.since(self.snd_una) as u32;
        self.cc.on_rto(flight);
        self.recover = self.snd_max;
        self.recovery = None;
        self.dupacks = 0;
        self.sack.clear();
        self.rtt_timing = None;
        self.snd_nxt = self.snd_una;
        self.rexmt_at = Some(now + self.rtt.rto());
    }

    fn keepalive_timeout(&mut self, now: Instant) {
        let Some(k) = self.cfg.keepalive else { return };
        if !matches!(self.state, State::Established | State::CloseWait | State::FinWait2) {
            return;
        }
        let idle = now - self.last_rx;
        if idle < k.idle {
            self.keep_at = Some(self.last_rx + k.idle);
            return;
        }
        if self.keep_probes >= k.count {
            self.abort();
            self.error = Some(TcpError::TimedOut);
            return;
        }
        self.keep_probes += 1;
        self.keep_probe = true;
        self.keep_at = Some(now + k.interval);
    }
}
