//! Segment generation (RFC 9293 §3.8.6, §3.10; OpenBSD tcp_output.c):
//! what to send now, Nagle and sender-side silly-window avoidance, window
//! updates with receiver-side SWS avoidance, RFC 6675 NextSeg in recovery.

use super::{State, Tcb};
use crate::{Env, Instant, Seq};
use softnet_wire::tcp::{TcpFlags, TcpRepr, MAX_HEADER_LEN};

/// A buffer this large holds any segment the connection emits.
pub fn segment_buffer_len(mss: u16) -> usize {
    MAX_HEADER_LEN + usize::from(mss)
}

impl Tcb {
    /// Writes the next segment to send into `buf` (header with checksum 0,
    /// then payload: `repr.buffer_len()` bytes) and returns its header, or
    /// None when nothing is due. Call until None. The caller fills the
    /// checksum (it knows the addresses). `buf` must hold
    /// [`segment_buffer_len`] bytes.
    pub fn output(&mut self, env: &mut dyn Env, buf: &mut [u8]) -> Option<TcpRepr> {
        self.output_tso(env, buf, 0)
    }

    /// [`Tcb::output`] for a device that segments (TSO): new data may go
    /// out as one segment of up to `tso_max` payload bytes, which the
    /// device cuts into segments of [`Tcb::mss`] (its gso size) with the
    /// same header. Such a segment is a train of full-sized segments, with
    /// a partial one at its end only when that one would go out now on its
    /// own (Nagle, TCP_NOPUSH and SWS avoidance asked of the tail as of a
    /// lone segment; Linux's tcp_mss_split_point). Retransmissions in
    /// recovery stay one MSS. `tso_max` 0 (or below the MSS): `output`.
    /// `buf` must hold `MAX_HEADER_LEN + tso_max` bytes.
    pub fn output_tso(&mut self, env: &mut dyn Env, buf: &mut [u8], tso_max: usize) -> Option<TcpRepr> {
        let now = env.now();
        if let Some(r) = self.pending_rst.take() {
            return Some(self.emit_rst(*r, buf));
        }
        match self.state {
            State::Closed | State::Listen => return None,
            State::TimeWait => return self.ack_if_due(now, buf),
            _ => {}
        }
        // SYN or SYN,ACK (again after a timeout).
        if matches!(self.state, State::SynSent | State::SynReceived) && self.snd_nxt == self.iss {
            return Some(self.emit_syn(now, buf));
        }
        if !self.state.synchronized() {
            return self.ack_if_due(now, buf);
        }
        if self.keep_probe {
            // RFC 9293 §3.8.4: SEG.SEQ = SND.NXT-1, no data.
            self.keep_probe = false;
            self.stats.keepalive_probes += 1;
            return Some(self.emit(now, buf, self.snd_una - 1, 0, TcpFlags::ACK));
        }
        if let Some(r) = self.recovery {
            if let Some(seg) = self.recovery_output(now, buf, r) {
                return Some(seg);
            }
        }
        if let Some(seg) = self.data_output(now, buf, tso_max.max(self.smss)) {
            return Some(seg);
        }
        self.ack_if_due(now, buf)
    }

    /// In recovery: NewReno's retransmission of the first hole, or RFC 6675
    /// NextSeg rules 1 and 3 while cwnd - pipe allows (rule 2, new data, is
    /// `data_output`'s).
    fn recovery_output(&mut self, now: Instant, buf: &mut [u8], mut r: super::Recovery) -> Option<TcpRepr> {
        if !self.sack_ok {
            if !r.rxt_first {
                return None;
            }
            r.rxt_first = false;
            self.recovery = Some(r);
            let len = self.tx_len_from(self.snd_una).min(self.smss);
            return Some(self.emit_data(now, buf, self.snd_una, len, true));
        }
        let pipe = self.sack.pipe(self.snd_una, self.snd_max, r.high_rxt, self.smss);
        if (self.cc.cwnd() as usize) < pipe + self.smss {
            return None;
        }
        let mut next = self.sack.next_seg(self.snd_una, self.snd_max, r.high_rxt, self.smss, false);
        if next.is_none()
            && self.tx_len_from(self.snd_max) > 0
            && self.snd_wnd as usize > self.snd_max.since(self.snd_una)
        {
            return None; // rule 2: new data, sent by data_output
        }
        if next.is_none() {
            next = self.sack.next_seg(self.snd_una, self.snd_max, r.high_rxt, self.smss, true);
        }
        let (s, len) = next?;
        let len = len.min(self.tx_len_from(s));
        if len == 0 {
            return None;
        }
        r.high_rxt = s + len;
        self.recovery = Some(r);
        Some(self.emit_data(now, buf, s, len, true))
    }

    /// Bytes of queued data at and after `seq`.
    fn tx_len_from(&self, seq: Seq) -> usize {
        let off = seq.since(self.data_start());
        self.tx.len().saturating_sub(off)
    }

    fn data_output(&mut self, now: Instant, buf: &mut [u8], seg_max: usize) -> Option<TcpRepr> {
        let start = self.data_start();
        let off = self.snd_nxt.since(start);
        let fin_seq = self.fin_seq();
        if off > self.tx.len() {
            return None; // the FIN is sent already
        }
        let avail = self.tx.len() - off;
        let outstanding = self.snd_nxt.since(self.snd_una);
        let cwnd = match self.recovery {
            Some(r) if self.sack_ok => {
                let pipe = self.sack.pipe(self.snd_una, self.snd_max, r.high_rxt, self.smss);
                (self.cc.cwnd() as usize).saturating_sub(pipe) + outstanding
            }
            Some(r) => self.cc.cwnd() as usize + r.inflation as usize,
            None => self.cc.cwnd() as usize,
        };
        let wnd = (self.snd_wnd as usize).min(cwnd);
        let usable = wnd.saturating_sub(outstanding);
        let mut len = avail.min(usable).min(seg_max);
        if len > self.smss && len % self.smss != 0 {
            // A TSO train: its partial tail goes with it only if it would
            // go out alone after the full segments (all queued, no Nagle
            // hold with those in flight, no TCP_NOPUSH), or the FIN joins it.
            let fin_next = fin_seq.is_some_and(|f| self.snd_nxt + len == f);
            let tail_now = len == avail && ((self.nodelay && !self.nopush) || fin_next);
            if !tail_now {
                len -= len % self.smss;
            }
        }
        let mut probe = false;
        if self.force_probe && avail > 0 {
            // The persist timer: one byte into a zero window, or what the
            // small window takes.
            if len == 0 {
                len = 1;
                self.stats.window_probes += 1;
            }
            probe = true;
        }
        self.force_probe = false;
        if len == 0 && self.snd_wnd == 0 && avail > 0 {
            // A zero window with data waiting: the persist timer takes over
            // from the retransmission timer, from SND.UNA (tcp_output's
            // sendwin == 0 case); a probe answered shows the window again.
            self.rexmt_at = None;
            self.rxt_shift = 0;
            self.snd_nxt = self.snd_una;
            if self.persist_at.is_none() {
                self.arm_persist(now);
            }
            return None;
        }
        let fin = fin_seq.is_some_and(|f| self.snd_nxt + len == f) && (len == avail);
        let send = if len == 0 {
            fin && avail == 0
        } else if len >= self.smss || probe || fin || self.snd_nxt.lt(self.snd_max) {
            // A full segment, a probe, the FIN, or a retransmission (which
            // SWS avoidance must not hold back: tcp_output's snd_nxt <
            // snd_max rule).
            true
        } else {
            // Nagle (RFC 9293 §3.7.4) and sender SWS avoidance (§3.8.6.2.1);
            // TF_NOPUSH holds back the last partial segment (tcp_output's
            // `len + off >= sb_cc && !TF_NOPUSH`) until the FIN joins it.
            let all_queued = len == avail;
            (all_queued && (self.nodelay || outstanding == 0) && !self.nopush) || len >= (self.max_snd_wnd as usize) / 2
        };
        if !send {
            // Data held back with nothing in flight: the persist timer
            // probes a zero window, or overrides SWS avoidance (§3.8.6.2.1's
            // override timeout) so a small window is used eventually.
            if avail > 0 && outstanding == 0 && self.persist_at.is_none() && self.rexmt_at.is_none() {
                self.arm_persist(now);
            }
            return None;
        }
        let rxt = self.snd_nxt.lt(self.snd_max);
        let mut flags = TcpFlags::ACK;
        if fin {
            flags |= TcpFlags::FIN;
        }
        if len > 0 && len == avail {
            flags |= TcpFlags::PSH;
        }
        let seq = self.snd_nxt;
        let seg = self.emit_payload(now, buf, seq, len, flags, rxt);
        self.snd_nxt = seq + len + usize::from(fin);
        self.snd_max = self.snd_max.max(self.snd_nxt);
        if probe && self.snd_wnd == 0 {
            self.arm_persist(now);
        } else if self.rexmt_at.is_none() {
            self.rexmt_at = Some(now + self.rtt.rto());
        }
        if !rxt && self.rtt_timing.is_none() && !self.ts_ok {
            self.rtt_timing = Some((seq, now));
        }
        Some(seg)
    }

    /// The persist timer: the RTO doubled per probe, between 1 s (RFC 9293
    /// §3.8.6.2.1's SWS override wants at most 1 s) and RTO max. OpenBSD's
    /// tcp_setpersist uses 5 s to 60 s; the lower floor lets a small window
    /// be used sooner.
    fn arm_persist(&mut self, now: Instant) {
        let d = self.rtt.rto().max(self.cfg.rto_min) * (1 << self.persist_shift.min(6));
        self.persist_at = Some(now + d.clamp(core::time::Duration::from_secs(1), self.cfg.rto_max));
        self.persist_shift += 1;
    }

    fn emit_data(&mut self, now: Instant, buf: &mut [u8], seq: Seq, len: usize, rxt: bool) -> TcpRepr {
        let seg = self.emit_payload(now, buf, seq, len, TcpFlags::ACK, rxt);
        if self.rexmt_at.is_none() {
            self.rexmt_at = Some(now + self.rtt.rto());
        }
        seg
    }

    fn emit_payload(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        seq: Seq,
        len: usize,
        flags: TcpFlags,
        rxt: bool,
    ) -> TcpRepr {
        let seg = self.emit(now, buf, seq, len, flags);
        let off = seq.since(self.data_start());
        let hl = seg.header_len();
        self.tx.peek(off, &mut buf[hl..hl + len]);
        self.stats.bytes_out += len as u64;
        if rxt && len > 0 {
            self.stats.rexmt_segs += 1;
            self.stats.rexmt_bytes += len as u64;
        }
        seg
    }

    /// The window to advertise: the free receive space, but an increase
    /// only when it is worth it (receiver SWS avoidance, RFC 9293
    /// §3.8.6.2.2), and never moving the right edge left.
    fn window_to_offer(&self) -> usize {
        let cur = self.rcv_adv.since(self.rcv_nxt);
        let max = 0xffff_usize << self.rcv_wscale;
        let free = self.rx.free().min(max);
        let step = (self.rx.capacity() / 2).min(self.cfg.mss as usize);
        let offer = if free >= cur + step { free } else { cur };
        // Round down to what the scaled field can say (never up).
        (offer >> self.rcv_wscale) << self.rcv_wscale
    }

    /// Whether a read that freed receive space should make the stack send
    /// a window update now (Linux's tcp_cleanup_rbuf): only when the window
    /// the peer holds is at most half the largest we can offer and the new
    /// offer at least doubles it. Otherwise the peer still has room to
    /// send, and the ACKs its data draws carry the new window: a reader
    /// that asked for an update after every read cost a worker wake-up and
    /// an ACK frame per read.
    pub fn window_update_due(&self) -> bool {
        if !matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) {
            return false;
        }
        let cur = self.rcv_adv.since(self.rcv_nxt);
        let max = self.rx.capacity().min(0xffff_usize << self.rcv_wscale);
        let offer = self.window_to_offer();
        2 * cur <= max && offer > cur && offer >= 2 * cur
    }

    fn ack_if_due(&mut self, now: Instant, buf: &mut [u8]) -> Option<TcpRepr> {
        // A window update once the offer has grown enough (SWS avoidance),
        // but not for the window our SYN,ACK could not scale alone
        // (`wnd_update_held`).
        let update = matches!(self.state, State::Established | State::FinWait1 | State::FinWait2)
            && !self.wnd_update_held
            && self.window_to_offer() > self.rcv_adv.since(self.rcv_nxt);
        if !(self.ack_now || self.ack_owed() || update) {
            return None;
        }
        Some(self.emit(now, buf, self.snd_nxt, 0, TcpFlags::ACK))
    }

    fn emit_syn(&mut self, now: Instant, buf: &mut [u8]) -> TcpRepr {
        let mut flags = TcpFlags::SYN;
        if self.state == State::SynReceived {
            flags |= TcpFlags::ACK;
        }
        let active = self.state == State::SynSent;
        let wnd = self.rx.free().min(0xffff);
        let seg = TcpRepr {
            src_port: self.local_port,
            dst_port: self.remote_port,
            seq: self.iss.0,
            ack: if active { 0 } else { self.rcv_nxt.0 },
            flags,
            window: wnd as u16,
            max_seg_size: Some(self.cfg.mss),
            window_scale: (self.cfg.window_scaling && (active || self.ws_ok)).then_some(self.rcv_wscale),
            sack_permitted: self.cfg.sack && (active || self.sack_ok),
            sack_ranges: [None; 3],
            timestamp: (self.cfg.timestamps && (active || self.ts_ok))
                .then(|| (self.ts_now(now), if active { 0 } else { self.ts_recent })),
            payload_len: 0,
        };
        seg.emit(buf);
        if !active {
            self.rcv_adv = self.rcv_nxt + wnd;
            self.last_ack_sent = self.rcv_nxt;
            self.ack_now = false;
        }
        let rxt = self.snd_max != self.iss;
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        if rxt {
            self.stats.rexmt_segs += 1;
        } else if !self.ts_ok {
            self.rtt_timing = Some((self.iss, now));
        }
        if self.rexmt_at.is_none() {
            self.rexmt_at = Some(now + self.rtt.rto());
        }
        self.stats.segs_out += 1;
        seg
    }

    /// A segment with ACK, the current window, timestamps and SACK blocks.
    fn emit(&mut self, now: Instant, buf: &mut [u8], seq: Seq, len: usize, flags: TcpFlags) -> TcpRepr {
        let offer = self.window_to_offer();
        let seg = TcpRepr {
            src_port: self.local_port,
            dst_port: self.remote_port,
            seq: seq.0,
            ack: self.rcv_nxt.0,
            flags,
            window: (offer >> self.rcv_wscale) as u16,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: if self.sack_ok { self.ooo.sack_blocks() } else { [None; 3] },
            timestamp: self.ts_ok.then(|| (self.ts_now(now), self.ts_recent)),
            payload_len: len,
        };
        seg.emit(buf);
        self.rcv_adv = self.rcv_adv.max(self.rcv_nxt + offer);
        self.last_ack_sent = self.rcv_nxt;
        self.ack_now = false;
        self.wnd_update_held = false;
        self.unacked_segs = 0;
        self.delack_at = None;
        self.stats.segs_out += 1;
        seg
    }

    fn emit_rst(&mut self, r: TcpRepr, buf: &mut [u8]) -> TcpRepr {
        r.emit(buf);
        self.stats.segs_out += 1;
        r
    }
}
