//! Segment arrival (RFC 9293 §3.10.7; OpenBSD tcp_input.c), with RFC 5961's
//! defences, RFC 7323's PAWS and RFC 6675 / RFC 6582 loss detection.

use super::{Recovery, State, Tcb, TcpError};
use crate::{Env, Instant, Seq};
use core::time::Duration;
use softnet_wire::tcp::{TcpFlags, TcpRepr, MAX_WINDOW_SCALE};

/// What became of a segment.
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Dropped(Drop),
    /// A SYN reopening a TIME_WAIT connection (RFC 6191): this TCB is
    /// closed; the socket layer hands the SYN to its listener.
    Reopen,
}

/// Why a segment was dropped (each a `netstat -s` counter).
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum Drop {
    /// The TCB is closed (a RST answers it unless it was a RST).
    Closed,
    /// LISTEN got something other than a SYN.
    NotSyn,
    /// SYN_SENT got an ACK for something we never sent.
    BadAck,
    /// RFC 9293 §3.10.7.4 acceptability test failed.
    OutOfWindow,
    /// RFC 7323 §5 PAWS: an old timestamp.
    Paws,
    /// RFC 5961 §3: an in-window RST not at RCV.NXT (challenge ACK sent).
    RstChallenged,
    /// RFC 5961 §4: a SYN on a synchronized connection (challenge ACK sent).
    SynChallenged,
    /// RFC 5961 §5: an ACK below SND.UNA - MAX.SND.WND (challenge ACK sent).
    AckTooOld,
    /// An ACK for data not yet sent.
    AckTooNew,
    /// No ACK flag on a synchronized connection.
    NoAck,
    /// Data or FIN after close(): the connection was reset.
    DataAfterClose,
}

/// RFC 7323 §5.5: timestamps older than 24 days no longer guard PAWS.
const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);

impl Tcb {
    /// Processes one segment (checksum already verified by the caller).
    pub fn input(&mut self, env: &mut dyn Env, seg: &TcpRepr, payload: &[u8]) -> Verdict {
        let now = env.now();
        match self.state {
            State::Closed => {
                self.reset_reply(seg);
                Verdict::Dropped(Drop::Closed)
            }
            State::Listen => self.listen_input(env, now, seg, payload),
            State::SynSent => self.syn_sent_input(now, seg, payload),
            _ => self.sync_input(now, seg, payload),
        }
    }

    /// RFC 9293 §3.10.7.1: a RST answering a segment that has no connection.
    fn reset_reply(&mut self, seg: &TcpRepr) {
        if let Some(r) = crate::reset::reset_reply(seg) {
            self.pending_rst = Some(Box::new(r));
        }
    }

    fn take_options(&mut self, seg: &TcpRepr, now: Instant) {
        let peer_mss = seg.max_seg_size.map_or(536, usize::from).max(64);
        self.ts_ok = self.cfg.timestamps && seg.timestamp.is_some();
        self.sack_ok = self.cfg.sack && seg.sack_permitted;
        match seg.window_scale {
            Some(s) if self.cfg.window_scaling => {
                self.ws_ok = true;
                self.snd_wscale = s.min(MAX_WINDOW_SCALE);
                self.rcv_wscale = self.wanted_wscale();
            }
            _ => {
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        if let (true, Some((tsval, _))) = (self.ts_ok, seg.timestamp) {
            self.ts_recent = tsval;
            self.ts_recent_age = now;
        }
        let ts_room = if self.ts_ok { 12 } else { 0 };
        self.smss = peer_mss.min(usize::from(self.cfg.mss)) - ts_room;
        self.cc = self.cfg.cc.build(self.smss as u32);
        self.irs = Seq(seg.seq);
        self.rcv_nxt = self.irs + 1;
        self.rcv_adv = self.rcv_nxt;
        self.snd_wnd = u32::from(seg.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = Seq(seg.seq);
    }

    fn listen_input(&mut self, env: &mut dyn Env, now: Instant, seg: &TcpRepr, payload: &[u8]) -> Verdict {
        let f = seg.flags;
        if f.contains(TcpFlags::RST) {
            return Verdict::Dropped(Drop::NotSyn);
        }
        if f.contains(TcpFlags::ACK) {
            self.reset_reply(seg);
            return Verdict::Dropped(Drop::NotSyn);
        }
        if !f.contains(TcpFlags::SYN) {
            return Verdict::Dropped(Drop::NotSyn);
        }
        // Data on the SYN is not queued (OpenBSD's SYN cache keeps none):
        // it is left unacknowledged and the peer sends it again.
        let _ = payload;
        self.remote_port = seg.src_port;
        self.take_options(seg, now);
        self.set_iss(env.isn(self.local_port, self.remote_port));
        self.state = State::SynReceived;
        self.last_rx = now;
        Verdict::Accepted
    }

    fn syn_sent_input(&mut self, now: Instant, seg: &TcpRepr, _payload: &[u8]) -> Verdict {
        let f = seg.flags;
        let ack = Seq(seg.ack);
        let ack_ok = f.contains(TcpFlags::ACK) && ack.gt(self.iss) && ack.le(self.snd_max);
        if f.contains(TcpFlags::ACK) && !ack_ok {
            self.reset_reply(seg);
            return Verdict::Dropped(Drop::BadAck);
        }
        if f.contains(TcpFlags::RST) {
            if ack_ok {
                self.enter_closed(Some(TcpError::Refused));
                return Verdict::Accepted;
            }
            return Verdict::Dropped(Drop::NotSyn);
        }
        if !f.contains(TcpFlags::SYN) {
            return Verdict::Dropped(Drop::NotSyn);
        }
        self.take_options(seg, now);
        self.last_rx = now;
        self.ack_now = true;
        if ack_ok {
            self.snd_una = ack;
            self.snd_wl2 = ack;
            self.sample_rtt(now, seg);
            self.rexmt_at = None;
            self.rxt_shift = 0;
            self.rtt.reset_backoff();
            self.state = State::Established;
            self.arm_keepalive(now);
        } else {
            // Simultaneous open (§3.5, figure 8): SYN,ACK from SYN_RECEIVED.
            self.state = State::SynReceived;
            self.snd_nxt = self.iss;
        }
        Verdict::Accepted
    }

    /// RFC 5961 §7: challenge ACKs, rate-limited per connection.
    fn challenge_ack(&mut self, now: Instant) {
        if now - self.challenge_window >= Duration::from_secs(1) {
            self.challenge_window = now;
            self.challenge_count = 0;
        }
        if self.challenge_count < self.cfg.challenge_ack_limit {
            self.challenge_count += 1;
            self.stats.challenge_acks += 1;
            self.ack_now = true;
        } else {
            self.stats.challenge_acks_limited += 1;
        }
    }

    /// The receive window as the acceptability test sees it.
    fn rcv_wnd(&self) -> usize {
        self.rcv_adv.since(self.rcv_nxt)
    }

    /// RFC 9293 §3.10.7.4's four cases.
    fn acceptable(&self, seq: Seq, len: usize) -> bool {
        let wnd = self.rcv_wnd();
        let end = self.rcv_nxt + wnd;
        match (len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => seq.in_range(self.rcv_nxt, end),
            (_, 0) => false,
            _ => seq.in_range(self.rcv_nxt, end) || (seq + (len - 1)).in_range(self.rcv_nxt, end),
        }
    }

    fn sync_input(&mut self, now: Instant, seg: &TcpRepr, payload: &[u8]) -> Verdict {
        let f = seg.flags;
        let seq = Seq(seg.seq);
        let len = seg_len(seg);

        // Simultaneous open: the peer's SYN,ACK repeats the SYN we have
        // already taken; drop the SYN bit and go on with the ACK (as
        // tcp_input trims a duplicate SYN).
        if self.state == State::SynReceived && f.contains(TcpFlags::SYN | TcpFlags::ACK) && seq + 1 == self.rcv_nxt {
            let mut s = *seg;
            s.flags.remove(TcpFlags::SYN);
            s.seq = s.seq.wrapping_add(1);
            return self.sync_input(now, &s, payload);
        }

        // TIME_WAIT reuse (RFC 6191): a new SYN above what this connection used.
        if self.state == State::TimeWait && f.contains(TcpFlags::SYN) && !f.contains(TcpFlags::ACK) {
            let newer = match (self.ts_ok, seg.timestamp) {
                (true, Some((tsval, _))) => Seq(tsval).gt(Seq(self.ts_recent)),
                _ => seq.gt(self.rcv_nxt),
            };
            if newer {
                self.enter_closed(None);
                return Verdict::Reopen;
            }
        }

        // PAWS (RFC 7323 §5.3 R1).
        if let (true, Some((tsval, _))) = (self.ts_ok, seg.timestamp) {
            if !f.contains(TcpFlags::RST) && Seq(tsval).lt(Seq(self.ts_recent)) && now - self.ts_recent_age < PAWS_IDLE
            {
                self.ack_now = true;
                return Verdict::Dropped(Drop::Paws);
            }
        }

        // A retransmitted SYN in SYN_RECEIVED: send the SYN,ACK again.
        if self.state == State::SynReceived
            && f.contains(TcpFlags::SYN)
            && !f.contains(TcpFlags::ACK)
            && seq + 1 == self.rcv_nxt
        {
            self.snd_nxt = self.iss;
            return Verdict::Accepted;
        }

        if !self.acceptable(seq, len) {
            if !f.contains(TcpFlags::RST) {
                self.ack_now = true;
            }
            return Verdict::Dropped(Drop::OutOfWindow);
        }

        // RST (RFC 5961 §3.2): exactly RCV.NXT resets, else challenge.
        if f.contains(TcpFlags::RST) {
            if seq != self.rcv_nxt {
                self.challenge_ack(now);
                return Verdict::Dropped(Drop::RstChallenged);
            }
            let err = match self.state {
                State::TimeWait | State::Closing | State::LastAck => None,
                State::SynReceived => Some(TcpError::Refused),
                _ => Some(TcpError::Reset),
            };
            self.enter_closed(err);
            if err.is_none() {
                self.error = None;
            }
            return Verdict::Accepted;
        }

        // SYN on a synchronized connection (RFC 5961 §4).
        if f.contains(TcpFlags::SYN) {
            self.challenge_ack(now);
            return Verdict::Dropped(Drop::SynChallenged);
        }

        if !f.contains(TcpFlags::ACK) {
            return Verdict::Dropped(Drop::NoAck);
        }

        // RFC 7323 §4.3: TS.Recent from a segment covering Last.ACK.sent.
        if let (true, Some((tsval, _))) = (self.ts_ok, seg.timestamp) {
            if seq.le(self.last_ack_sent) && Seq(tsval).ge(Seq(self.ts_recent)) {
                self.ts_recent = tsval;
                self.ts_recent_age = now;
            }
        }
        self.last_rx = now;
        self.keep_probes = 0;

        let ack = Seq(seg.ack);
        if self.state == State::SynReceived {
            if ack.gt(self.snd_una) && ack.le(self.snd_max) {
                self.state = if self.fin_queued { State::FinWait1 } else { State::Established };
                self.wnd_update_held = true;
                self.snd_wnd = u32::from(seg.window) << self.snd_wscale;
                self.snd_wl1 = seq;
                self.snd_wl2 = ack;
                self.arm_keepalive(now);
            } else {
                self.reset_reply(seg);
                return Verdict::Dropped(Drop::BadAck);
            }
        }

        // RFC 5961 §5.2: the acceptable ACK range.
        if ack.gt(self.snd_max) {
            self.ack_now = true;
            return Verdict::Dropped(Drop::AckTooNew);
        }
        if ack.lt(self.snd_una - self.max_snd_wnd as usize) {
            self.challenge_ack(now);
            return Verdict::Dropped(Drop::AckTooOld);
        }

        self.ack_input(now, seg, seq, ack, payload.len());
        if self.state == State::Closed {
            return Verdict::Accepted;
        }
        if self.state == State::TimeWait {
            // The peer's FIN again: ACK it and restart 2MSL.
            if f.contains(TcpFlags::FIN) {
                self.ack_now = true;
                self.close_at = Some(now + self.cfg.msl * 2);
            }
            return Verdict::Accepted;
        }

        if self.user_closed && !payload.is_empty() && (seq + payload.len()).gt(self.rcv_nxt) {
            self.abort();
            return Verdict::Dropped(Drop::DataAfterClose);
        }
        self.data_input(now, seq, payload, f.contains(TcpFlags::FIN));
        Verdict::Accepted
    }

    fn sample_rtt(&mut self, now: Instant, seg: &TcpRepr) {
        // RFC 7323 §4.1: RTTM from TSecr; else one timed segment (Karn's
        // rule: the timing is cancelled when anything is retransmitted).
        if let (true, Some((_, tsecr))) = (self.ts_ok, seg.timestamp) {
            if tsecr != 0 {
                let ms = self.ts_now(now).wrapping_sub(tsecr);
                if ms < 60_000 {
                    self.rtt.sample(Duration::from_millis(u64::from(ms)));
                }
                return;
            }
        }
        if let Some((s, t)) = self.rtt_timing {
            if Seq(seg.ack).gt(s) {
                self.rtt.sample(now - t);
                self.rtt_timing = None;
            }
        }
    }

    fn ack_input(&mut self, now: Instant, seg: &TcpRepr, seq: Seq, ack: Seq, data_len: usize) {
        let window = u32::from(seg.window) << self.snd_wscale;
        let flight = self.snd_max.since(self.snd_una) as u32;
        let new_sack = self.sack_ok && self.sack.update(ack.max(self.snd_una), self.snd_max, &seg.sack_ranges);

        if ack.gt(self.snd_una) {
            let mut acked = ack.since(self.snd_una);
            if self.snd_una == self.iss {
                acked -= 1; // our SYN
            }
            let fin_acked = self.fin_seq().is_some_and(|f| ack.gt(f));
            if fin_acked {
                acked -= 1;
            }
            self.tx.consume(acked);
            self.sample_rtt(now, seg);
            self.rtt.reset_backoff();
            self.rxt_shift = 0;
            self.snd_una = ack;
            if self.snd_nxt.lt(ack) {
                self.snd_nxt = ack;
            }
            self.rexmt_at = if ack == self.snd_max { None } else { Some(now + self.rtt.rto()) };
            self.dupacks = 0;
            match self.recovery {
                Some(r) if ack.ge(r.point) => {
                    self.recovery = None;
                    self.cc.on_recovery_end(self.snd_max.since(ack) as u32);
                }
                Some(mut r) => {
                    // Partial ACK.
                    r.high_rxt = r.high_rxt.max(ack);
                    if !self.sack_ok {
                        // RFC 6582 §3.2 step 5: retransmit the next hole, deflate.
                        r.inflation = r.inflation.saturating_sub(acked as u32) + self.smss as u32;
                        r.rxt_first = true;
                    }
                    self.recovery = Some(r);
                }
                // Grow only when the window was the limit (RFC 7661 §4.1:
                // an application- or receiver-limited flow does not validate
                // a larger cwnd).
                None if flight as usize + self.smss >= self.cc.cwnd() as usize => {
                    self.cc.on_ack(now, acked as u32, self.rtt.srtt())
                }
                None => {}
            }
            if fin_acked {
                match self.state {
                    State::FinWait1 => {
                        self.state = State::FinWait2;
                        if self.user_closed {
                            self.close_at = Some(now + self.cfg.fin_wait2_timeout);
                        }
                    }
                    State::Closing => self.enter_time_wait(now),
                    State::LastAck => self.enter_closed(None),
                    _ => {}
                }
            }
        } else if ack == self.snd_una
            && data_len == 0
            && !seg.flags.intersects(TcpFlags::SYN | TcpFlags::FIN)
            && window == self.snd_wnd
            && self.snd_max != self.snd_una
        {
            // A duplicate ACK (RFC 5681 §2).
            self.dupacks += 1;
            if let Some(r) = self.recovery.as_mut() {
                if !self.sack_ok {
                    r.inflation += self.smss as u32;
                }
            }
        }

        // Loss detection: three duplicate ACKs, or SACK says SND.UNA is lost
        // (RFC 6675 §5), once per window (RFC 6582 "recover").
        let lost = self.dupacks >= 3 || (new_sack && self.sack.is_lost(self.snd_una, self.smss));
        if lost && self.recovery.is_none() && self.snd_una.gt(self.recover) && self.snd_max != self.snd_una {
            self.recover = self.snd_max;
            self.cc.on_loss(now, flight);
            self.stats.fast_recoveries += 1;
            self.rtt_timing = None;
            self.recovery = Some(Recovery {
                point: self.snd_max,
                high_rxt: self.snd_una,
                inflation: if self.sack_ok { 0 } else { 3 * self.smss as u32 },
                rxt_first: !self.sack_ok,
            });
            self.snd_nxt = self.snd_max;
        }

        // Window update (§3.10.7.4, SND.WL1/SND.WL2).
        if self.snd_wl1.lt(seq) || (self.snd_wl1 == seq && self.snd_wl2.le(ack)) {
            self.snd_wnd = window;
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            if window > 0 {
                self.persist_at = None;
                self.persist_shift = 0;
            }
        }
    }

    fn data_input(&mut self, now: Instant, seq: Seq, payload: &[u8], fin: bool) {
        if !matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) {
            // CLOSE_WAIT, CLOSING, LAST_ACK: the peer's FIN came already.
            return;
        }
        if fin {
            let fin_seq = seq + payload.len();
            if fin_seq.in_range(self.rcv_nxt, self.rcv_adv + 1) {
                self.remote_fin = Some(fin_seq);
            }
        }
        // Trim to [RCV.NXT, right edge).
        let mut data = payload;
        let mut seq = seq;
        if seq.lt(self.rcv_nxt) {
            let skip = self.rcv_nxt.since(seq).min(data.len());
            data = &data[skip..];
            seq = self.rcv_nxt;
            self.ack_now = true; // a retransmission: tell the peer at once
        }
        let room = self.rcv_adv.since(seq).min(self.rx.free().saturating_sub(seq.since(self.rcv_nxt)));
        data = &data[..data.len().min(room)];
        if !data.is_empty() {
            let off = seq.since(self.rcv_nxt);
            if off == 0 {
                let n = self.rx.write_at(0, data);
                self.rx.commit(n);
                self.rcv_nxt = self.rcv_nxt + n;
                let more = self.ooo.take_front(self.rcv_nxt);
                let more = more.min(self.rx.free());
                self.rx.commit(more);
                self.rcv_nxt = self.rcv_nxt + more;
                if more > 0 || !self.ooo.is_empty() {
                    self.ack_now = true; // RFC 5681 §4.2: filling a hole
                } else {
                    // RFC 5681 §4.2: an ACK is owed from the second
                    // segment on (`ack_owed`); `output` sends it, and a
                    // caller that batches input may send one for several
                    // (`ack_may_wait`). The first arms the delayed ACK.
                    // A super-segment (a link's LRO: several of the
                    // peer's segments in one) counts as the two it at
                    // least stands for, as Linux's __tcp_ack_snd_check
                    // owes an ACK for more than one full frame received;
                    // twice our MSS, so a peer whose segments are a few
                    // bytes longer than our MSS is not ACKed per segment.
                    self.unacked_segs += if n > 2 * self.smss { 2 } else { 1 };
                    if self.delack_at.is_none() {
                        self.delack_at = Some(now + self.cfg.delayed_ack);
                    }
                }
            } else {
                // Out of order: an immediate duplicate ACK with SACK.
                self.ack_now = true;
                if self.ooo.insert(seq, seq + data.len()).is_ok() {
                    self.rx.write_at(off, data);
                } else {
                    self.stats.ooo_dropped += 1;
                }
            }
        }
        if self.remote_fin == Some(self.rcv_nxt) {
            self.remote_fin = None;
            self.rcv_nxt = self.rcv_nxt + 1;
            self.ack_now = true;
            match self.state {
                State::Established => self.state = State::CloseWait,
                State::FinWait1 => self.state = State::Closing,
                State::FinWait2 => self.enter_time_wait(now),
                _ => {}
            }
        }
    }

    pub(super) fn arm_keepalive(&mut self, now: Instant) {
        if let Some(k) = self.cfg.keepalive {
            self.keep_at = Some(now + k.idle);
        }
    }
}

use crate::reset::seg_len;
