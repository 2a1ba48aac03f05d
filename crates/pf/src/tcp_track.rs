//! TCP state tracking as pf does it (`pf_tcp_track_full`, after Guido van
//! Rooij's "Real Stateful TCP Packet Filtering in IP Filter"): each peer's
//! acceptable sequence window, window scaling when both SYNs carried the
//! option, the peers' TCP states, and which timeout applies.

use crate::names::Timeout;
use crate::state::{sflags, tcps, Peer, StateData, WSCALE_FLAG, WSCALE_MASK};

pub const TH_FIN: u8 = 0x01;
pub const TH_SYN: u8 = 0x02;
pub const TH_RST: u8 = 0x04;
pub const TH_ACK: u8 = 0x10;

/// Retransmissions may lag a window plus a fragment's worth behind.
const MAX_ACK_WINDOW: i64 = 0xffff + 1500;
/// Largest unscaled TCP window.
const TCP_MAXWIN: u32 = 0xffff;

/// The parts of a TCP segment tracking reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpSeg {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    /// Payload bytes.
    pub len: u32,
    /// The window scale option as pf_get_wscale gives it: its shift
    /// (capped at 14) with `WSCALE_FLAG`, 0 without the option. One byte,
    /// so that a packet description stays within a cache line.
    pub wscale: u8,
}

impl TcpSeg {
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// pf's `pf_get_wscale`: the flag plus the shift, 0 without the option.
pub fn wscale_of(seg: &TcpSeg) -> u8 {
    if seg.has(TH_SYN) {
        seg.wscale
    } else {
        0
    }
}

#[inline]
fn seq_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}
#[inline]
fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}
#[inline]
fn seq_leq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// What tracking decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// In window: pass. `rewrite` holds the new (seq, ack) when the state
    /// modulates sequence numbers.
    Pass { rewrite: Option<(u32, u32)> },
    /// Out of window (`state-mismatch`). `rst` asks for a RST to the
    /// sender with this sequence number (a mismatch during the handshake).
    Drop { rst: Option<u32> },
    /// `scrub (reassemble tcp)`'s timestamp checks refused it
    /// (`bad-timestamp`, pf_normalize_tcp_stateful).
    DropTs,
}

/// Initializes a new TCP state from its first packet (pf_create_state).
/// `iss` is the modulated initial sequence number when the rule says
/// `modulate state` and this is a SYN; returns the rewritten seq then.
pub fn init_state(st: &mut StateData, seg: &TcpSeg, iss: Option<u32>) -> Option<u32> {
    let src = &mut st.src;
    src.seqlo = seg.seq;
    src.seqhi = seg.seq.wrapping_add(seg.len).wrapping_add(1);
    let mut rewrite = None;
    if seg.flags & (TH_SYN | TH_ACK) == TH_SYN {
        if let Some(iss) = iss {
            let mut d = iss.wrapping_sub(src.seqlo);
            if d == 0 {
                d = 1;
            }
            src.seqdiff = d;
            rewrite = Some(src.seqlo.wrapping_add(d));
        }
    }
    if seg.has(TH_SYN) {
        src.seqhi = src.seqhi.wrapping_add(1);
        src.wscale = wscale_of(seg);
    }
    src.max_win = seg.win.max(1);
    if src.wscale & WSCALE_MASK != 0 {
        let s = (src.wscale & WSCALE_MASK) as u32;
        let w = src.max_win as u32 + (1 << s);
        src.max_win = ((w - 1) >> s) as u16;
    }
    if seg.has(TH_FIN) {
        src.seqhi = src.seqhi.wrapping_add(1);
    }
    st.dst = Peer { seqhi: 1, max_win: 1, ..Peer::default() };
    st.src.state = tcps::SYN_SENT;
    st.dst.state = tcps::CLOSED;
    rewrite
}

/// The timeout for the peers' states (the tail of pf_tcp_track_full).
pub fn timeout_for(src: u8, dst: u8) -> Timeout {
    if src >= tcps::FIN_WAIT_2 && dst >= tcps::FIN_WAIT_2 {
        Timeout::TcpClosed
    } else if src >= tcps::CLOSING && dst >= tcps::CLOSING {
        Timeout::TcpFinWait
    } else if src < tcps::ESTABLISHED || dst < tcps::ESTABLISHED {
        Timeout::TcpOpening
    } else if src >= tcps::CLOSING || dst >= tcps::CLOSING {
        Timeout::TcpClosing
    } else {
        Timeout::TcpEstablished
    }
}

/// Tracks one segment of an existing state. `fwd` is true when the
/// segment goes in the state's direction (from the state's `src`).
/// `new_iss` supplies a random ISN for the deferred modulator of the
/// answering side. On `Pass`, the caller updates `st.expire` and sets the
/// timeout returned in `timeout`.
pub fn track_full(
    st: &mut StateData,
    fwd: bool,
    seg: &TcpSeg,
    new_iss: impl FnOnce() -> u32,
) -> (Track, Option<Timeout>) {
    track_full_norm(st, fwd, seg, new_iss, |_, _| false)
}

/// `track_full` of a state with `scrub (reassemble tcp)`: `norm` is
/// pf_normalize_tcp_stateful, run where pf_tcp_track_full runs it (on a
/// segment in the window, or loosely matched, before the peers are
/// updated) with the peers' TCP states (sender, receiver); true drops
/// the segment (`Track::DropTs`).
pub fn track_full_norm(
    st: &mut StateData,
    fwd: bool,
    seg: &TcpSeg,
    new_iss: impl FnOnce() -> u32,
    norm: impl FnOnce(u8, u8) -> bool,
) -> (Track, Option<Timeout>) {
    let (src, dst) = if fwd { (&mut st.src, &mut st.dst) } else { (&mut st.dst, &mut st.src) };
    let mut win = seg.win as u32;
    let (mut sws, mut dws) = if src.wscale != 0 && dst.wscale != 0 && !seg.has(TH_SYN) {
        ((src.wscale & WSCALE_MASK) as u32, (dst.wscale & WSCALE_MASK) as u32)
    } else {
        (0, 0)
    };
    let orig_seq = seg.seq;
    let mut seq = seg.seq;
    let ack_raw = seg.ack;
    let mut ack;
    let mut end;
    let data_end;
    let mut rewrite = None;
    if src.seqlo == 0 {
        // First packet from this end.
        if dst.seqdiff != 0 && src.seqdiff == 0 {
            let mut d = new_iss().wrapping_sub(seq);
            if d == 0 {
                d = 1;
            }
            src.seqdiff = d;
            ack = ack_raw.wrapping_sub(dst.seqdiff);
            rewrite = Some((seq.wrapping_add(src.seqdiff), ack));
        } else {
            ack = ack_raw;
        }
        end = seq.wrapping_add(seg.len);
        if seg.has(TH_SYN) {
            end = end.wrapping_add(1);
            if dst.wscale & WSCALE_FLAG != 0 {
                src.wscale = wscale_of(seg);
                if src.wscale & WSCALE_FLAG != 0 {
                    // Remove the scale factor from the initial window.
                    sws = (src.wscale & WSCALE_MASK) as u32;
                    win = (win + (1 << sws) - 1) >> sws;
                    dws = (dst.wscale & WSCALE_MASK) as u32;
                } else {
                    // The other side's window was scaled for nothing.
                    dst.max_win = TCP_MAXWIN.min((dst.max_win as u32) << (dst.wscale & WSCALE_MASK)) as u16;
                    dst.wscale = 0;
                }
            }
        }
        data_end = end;
        if seg.has(TH_FIN) {
            end = end.wrapping_add(1);
        }
        src.seqlo = seq;
        if src.state < tcps::SYN_SENT {
            src.state = tcps::SYN_SENT;
        }
        let w = 1u32.max((dst.max_win as u32) << dws);
        if src.seqhi == 1 || seq_geq(end.wrapping_add(w), src.seqhi) {
            src.seqhi = end.wrapping_add(w);
        }
        if win > src.max_win as u32 {
            src.max_win = win.min(u16::MAX as u32) as u16;
        }
    } else {
        ack = ack_raw.wrapping_sub(dst.seqdiff);
        if src.seqdiff != 0 {
            rewrite = Some((seq.wrapping_add(src.seqdiff), ack));
        }
        end = seq.wrapping_add(seg.len);
        if seg.has(TH_SYN) {
            end = end.wrapping_add(1);
        }
        data_end = end;
        if seg.has(TH_FIN) {
            end = end.wrapping_add(1);
        }
    }
    let mut data_end = data_end;

    if !seg.has(TH_ACK) {
        // Let it pass the ack skew check.
        ack = dst.seqlo;
    } else if (ack == 0 && seg.flags & (TH_ACK | TH_RST) == TH_ACK | TH_RST) || dst.state < tcps::SYN_SENT {
        // Broken stacks (and ours) ack nothing in a FIN|ACK after a
        // timed-out SYN.
        ack = dst.seqlo;
    }
    if seq == end {
        // Ease the restrictions on segments without data.
        seq = src.seqlo;
        end = seq;
        data_end = seq;
    }
    let ackskew = dst.seqlo.wrapping_sub(ack) as i32 as i64;
    let back = (dst.max_win as u32) << dws;

    let rst_ok = !seg.has(TH_RST)
        || orig_seq == src.seqlo
        || orig_seq == src.seqlo.wrapping_add(1)
        || orig_seq.wrapping_add(1) == src.seqlo
        || (seq_geq(orig_seq, src.seqlo.wrapping_sub(back))
            && seq_leq(orig_seq, src.seqlo.wrapping_add(1))
            && ackskew == 0
            && seg.flags & (TH_ACK | TH_RST) == TH_ACK | TH_RST);

    if seq_geq(src.seqhi, data_end)
        && seq_geq(seq, src.seqlo.wrapping_sub(back))
        && ackskew >= -MAX_ACK_WINDOW
        && ackskew <= (MAX_ACK_WINDOW << sws)
        && rst_ok
    {
        if norm(src.state, dst.state) {
            return (Track::DropTs, None);
        }
        if (src.max_win as u32) < win {
            src.max_win = win.min(u16::MAX as u32) as u16;
        }
        if seq_gt(end, src.seqlo) {
            src.seqlo = end;
        }
        let w = win << sws;
        if seq_geq(ack.wrapping_add(w), dst.seqhi) {
            dst.seqhi = ack.wrapping_add(w.max(1));
        }
        if seg.has(TH_SYN) && src.state < tcps::SYN_SENT {
            src.state = tcps::SYN_SENT;
        }
        if seg.has(TH_FIN) && src.state < tcps::CLOSING {
            src.state = tcps::CLOSING;
        }
        if seg.has(TH_ACK) {
            if dst.state == tcps::SYN_SENT {
                dst.state = tcps::ESTABLISHED;
            } else if dst.state == tcps::CLOSING {
                dst.state = tcps::FIN_WAIT_2;
            }
        }
        if seg.has(TH_RST) {
            src.state = tcps::TIME_WAIT;
            dst.state = tcps::TIME_WAIT;
        }
        let t = timeout_for(src.state, dst.state);
        (Track::Pass { rewrite }, Some(t))
    } else if (dst.state < tcps::SYN_SENT || dst.state >= tcps::FIN_WAIT_2 || src.state >= tcps::FIN_WAIT_2)
        && seq_geq(src.seqhi.wrapping_add(MAX_ACK_WINDOW as u32), data_end)
        && seq_geq(seq, src.seqlo.wrapping_sub(MAX_ACK_WINDOW as u32))
    {
        // Loose match: shotgunned SYNs, a connection picked up after the
        // state was lost, funky packets right after a close. The timeout is
        // not refreshed, so floods of these do not keep a state alive.
        if norm(src.state, dst.state) {
            return (Track::DropTs, None);
        }
        if (src.max_win as u32) < win {
            src.max_win = win.min(u16::MAX as u32) as u16;
        }
        if seq_gt(end, src.seqlo) {
            src.seqlo = end;
        }
        let w = win << sws;
        if seq_geq(ack.wrapping_add(w), dst.seqhi) {
            dst.seqhi = ack.wrapping_add(w.max(1));
        }
        if seg.has(TH_FIN) && src.state < tcps::CLOSING {
            src.state = tcps::CLOSING;
        }
        if seg.has(TH_RST) {
            src.state = tcps::TIME_WAIT;
            dst.state = tcps::TIME_WAIT;
        }
        (Track::Pass { rewrite }, None)
    } else {
        let mut rst = None;
        if st.dst.state == tcps::SYN_SENT && st.src.state == tcps::SYN_SENT {
            // Mismatch during the handshake: reset the sender, forget its side.
            if !seg.has(TH_RST) {
                rst = Some(seg.ack);
            }
            let src = if fwd { &mut st.src } else { &mut st.dst };
            src.seqlo = 0;
            src.seqhi = 1;
            src.max_win = 1;
        }
        (Track::Drop { rst }, None)
    }
}

/// `keep state (sloppy)`: follow the flags only (pf_tcp_track_sloppy).
pub fn track_sloppy(st: &mut StateData, fwd: bool, seg: &TcpSeg) -> Timeout {
    let (src, dst) = if fwd { (&mut st.src, &mut st.dst) } else { (&mut st.dst, &mut st.src) };
    if seg.has(TH_SYN) && src.state < tcps::SYN_SENT {
        src.state = tcps::SYN_SENT;
    }
    if seg.has(TH_FIN) && src.state < tcps::CLOSING {
        src.state = tcps::CLOSING;
    }
    if seg.has(TH_ACK) {
        if dst.state == tcps::SYN_SENT {
            dst.state = tcps::ESTABLISHED;
        } else if dst.state == tcps::CLOSING {
            dst.state = tcps::FIN_WAIT_2;
        } else if src.state == tcps::SYN_SENT && dst.state < tcps::SYN_SENT {
            // Only one half of the connection is seen.
            src.state = tcps::ESTABLISHED;
            dst.state = tcps::ESTABLISHED;
        } else if src.state == tcps::CLOSING && dst.state == tcps::ESTABLISHED && dst.seqlo == 0 {
            dst.state = tcps::CLOSING;
        }
    }
    if seg.has(TH_RST) {
        src.state = tcps::TIME_WAIT;
        dst.state = tcps::TIME_WAIT;
    }
    timeout_for(src.state, dst.state)
}

/// Whether a state is sloppy.
pub fn is_sloppy(st: &StateData) -> bool {
    st.flags & sflags::SLOPPY != 0
}

/// The window check pf applies to the TCP header quoted in an ICMP error
/// (pf_test_state_icmp): the quoted sequence number must lie within what
/// the quoted packet's sender may send. `fwd` as in `track_full`, for the
/// quoted packet.
pub fn quoted_seq_ok(st: &StateData, fwd: bool, quoted_seq: u32) -> bool {
    let (src, dst) = if fwd { (&st.src, &st.dst) } else { (&st.dst, &st.src) };
    let dws = if src.wscale != 0 && dst.wscale != 0 { (dst.wscale & WSCALE_MASK) as u32 } else { 0 };
    let seq = quoted_seq.wrapping_sub(src.seqdiff);
    seq_geq(src.seqhi, seq) && seq_geq(seq, src.seqlo.wrapping_sub((dst.max_win as u32) << dws))
}

#[cfg(test)]
mod tests {
    use super::*;

    const C_ISN: u32 = 1000;
    const S_ISN: u32 = 5000;

    fn seg(flags: u8, seq: u32, ack: u32, len: u32) -> TcpSeg {
        TcpSeg { flags, seq, ack, win: 8192, len, wscale: 0 }
    }

    fn pass(t: (Track, Option<Timeout>)) -> bool {
        matches!(t.0, Track::Pass { .. })
    }

    /// A state after the three-way handshake (client is `src`).
    fn established() -> StateData {
        let mut st = StateData::default();
        init_state(&mut st, &seg(TH_SYN, C_ISN, 0, 0), None);
        assert!(pass(track_full(&mut st, false, &seg(TH_SYN | TH_ACK, S_ISN, C_ISN + 1, 0), || 0)));
        let r = track_full(&mut st, true, &seg(TH_ACK, C_ISN + 1, S_ISN + 1, 0), || 0);
        assert_eq!(r.1, Some(Timeout::TcpEstablished));
        assert_eq!((st.src.state, st.dst.state), (tcps::ESTABLISHED, tcps::ESTABLISHED));
        st
    }

    #[test]
    fn handshake_and_data_in_window_pass() {
        let mut st = established();
        assert!(pass(track_full(&mut st, true, &seg(TH_ACK, C_ISN + 1, S_ISN + 1, 100), || 0)));
        assert!(pass(track_full(&mut st, false, &seg(TH_ACK, S_ISN + 1, C_ISN + 101, 500), || 0)));
        assert_eq!(st.src.seqlo, C_ISN + 101);
        assert_eq!(st.dst.seqlo, S_ISN + 501);
    }

    #[test]
    fn segment_beyond_the_window_is_dropped() {
        let mut st = established();
        let far = C_ISN + 1 + 8192 * 4;
        assert_eq!(track_full(&mut st, true, &seg(TH_ACK, far, S_ISN + 1, 100), || 0).0, Track::Drop { rst: None });
    }

    #[test]
    fn rst_before_the_window_is_dropped_and_exact_rst_accepted() {
        let mut st = established();
        let before = C_ISN.wrapping_sub(100_000);
        assert!(!pass(track_full(&mut st, true, &seg(TH_RST, before, 0, 0), || 0)));
        // Inside the window but not exact: pf wants an exact (±1) match.
        assert!(!pass(track_full(&mut st, true, &seg(TH_RST, C_ISN + 1 + 3000, 0, 0), || 0)));
        assert_eq!(st.src.state, tcps::ESTABLISHED);
        assert!(pass(track_full(&mut st, true, &seg(TH_RST, C_ISN + 1, 0, 0), || 0)));
        assert_eq!((st.src.state, st.dst.state), (tcps::TIME_WAIT, tcps::TIME_WAIT));
    }

    #[test]
    fn fin_with_a_lower_sequence_is_a_retransmission_and_passes() {
        let mut st = established();
        assert!(pass(track_full(&mut st, true, &seg(TH_ACK, C_ISN + 1, S_ISN + 1, 1000), || 0)));
        // FIN carrying old data 500 bytes back: within one window back.
        let r = track_full(&mut st, true, &seg(TH_FIN | TH_ACK, C_ISN + 501, S_ISN + 1, 0), || 0);
        assert!(pass(r));
        assert_eq!(st.src.state, tcps::CLOSING);
        // Far below the window: dropped.
        let r = track_full(&mut st, false, &seg(TH_FIN | TH_ACK, S_ISN.wrapping_sub(200_000), C_ISN + 1001, 0), || 0);
        assert!(!pass(r));
    }

    #[test]
    fn fin_with_a_negative_or_too_high_ack_is_dropped() {
        let mut st = established();
        // Acks data the server never sent (too high).
        let too_high = S_ISN + 1 + 200_000;
        assert!(!pass(track_full(&mut st, true, &seg(TH_FIN | TH_ACK, C_ISN + 1, too_high, 0), || 0)));
        // Acks far behind (negative skew beyond one window and a fragment).
        let too_low = S_ISN.wrapping_sub(200_000);
        assert!(!pass(track_full(&mut st, true, &seg(TH_FIN | TH_ACK, C_ISN + 1, too_low, 0), || 0)));
        assert_eq!(st.src.state, tcps::ESTABLISHED);
        assert!(pass(track_full(&mut st, true, &seg(TH_FIN | TH_ACK, C_ISN + 1, S_ISN + 1, 0), || 0)));
    }

    #[test]
    fn close_moves_through_fin_states_to_closed_timeout() {
        let mut st = established();
        let r = track_full(&mut st, true, &seg(TH_FIN | TH_ACK, C_ISN + 1, S_ISN + 1, 0), || 0);
        assert_eq!(r.1, Some(Timeout::TcpClosing));
        let r = track_full(&mut st, false, &seg(TH_FIN | TH_ACK, S_ISN + 1, C_ISN + 2, 0), || 0);
        assert_eq!((st.src.state, st.dst.state), (tcps::FIN_WAIT_2, tcps::CLOSING));
        assert_eq!(r.1, Some(Timeout::TcpFinWait));
        let r = track_full(&mut st, true, &seg(TH_ACK, C_ISN + 2, S_ISN + 2, 0), || 0);
        assert_eq!(r.1, Some(Timeout::TcpClosed));
    }

    #[test]
    fn window_scaling_applies_only_when_both_syns_carry_it() {
        let mut st = StateData::default();
        let mut syn = seg(TH_SYN, C_ISN, 0, 0);
        syn.wscale = WSCALE_FLAG | 7;
        syn.win = 65535;
        init_state(&mut st, &syn, None);
        assert_eq!(st.src.wscale, WSCALE_FLAG | 7);
        // The SYN|ACK has no option: the client's scale is dropped.
        assert!(pass(track_full(&mut st, false, &seg(TH_SYN | TH_ACK, S_ISN, C_ISN + 1, 0), || 0)));
        assert_eq!(st.src.wscale, 0);
        assert_eq!(st.dst.wscale, 0);

        let mut st = StateData::default();
        init_state(&mut st, &syn, None);
        let mut sa = seg(TH_SYN | TH_ACK, S_ISN, C_ISN + 1, 0);
        sa.wscale = WSCALE_FLAG | 2;
        assert!(pass(track_full(&mut st, false, &sa, || 0)));
        assert_eq!(st.dst.wscale, WSCALE_FLAG | 2);
        assert!(pass(track_full(&mut st, true, &seg(TH_ACK, C_ISN + 1, S_ISN + 1, 0), || 0)));
        // Server window 8192 << 2 = 32768 past its ack: a segment 30000 in passes.
        assert!(pass(track_full(&mut st, true, &seg(TH_ACK, C_ISN + 1, S_ISN + 1, 100), || 0)));
        assert!(pass(track_full(&mut st, false, &seg(TH_ACK, S_ISN + 1, C_ISN + 101, 20000), || 0)));
    }

    #[test]
    fn modulated_state_rewrites_sequence_numbers() {
        let mut st = StateData::default();
        let r = init_state(&mut st, &seg(TH_SYN, C_ISN, 0, 0), Some(777_777));
        assert_eq!(r, Some(777_777));
        // The server acks the modulated ISN + 1; pf rewrites the ack back
        // and gives the server a modulated ISN too (9000).
        let (t, _) = track_full(&mut st, false, &seg(TH_SYN | TH_ACK, S_ISN, 777_778, 0), || 9000);
        assert_eq!(t, Track::Pass { rewrite: Some((9000, C_ISN + 1)) });
        // The client acks the server's modulated ISN.
        let (t, _) = track_full(&mut st, true, &seg(TH_ACK, C_ISN + 1, 9001, 0), || 0);
        assert_eq!(t, Track::Pass { rewrite: Some((777_778, S_ISN + 1)) });
        assert_eq!((st.src.state, st.dst.state), (tcps::ESTABLISHED, tcps::ESTABLISHED));
    }

    #[test]
    fn handshake_mismatch_asks_for_a_reset() {
        let mut st = StateData::default();
        init_state(&mut st, &seg(TH_SYN, C_ISN, 0, 0), None);
        assert!(pass(track_full(&mut st, false, &seg(TH_SYN, S_ISN, 0, 0), || 0)));
        let (t, _) = track_full(&mut st, true, &seg(TH_ACK, C_ISN + 900_000, 42, 10), || 0);
        assert_eq!(t, Track::Drop { rst: Some(42) });
    }

    #[test]
    fn sloppy_tracking_follows_flags_only() {
        let mut st = StateData::default();
        init_state(&mut st, &seg(TH_SYN, C_ISN, 0, 0), None);
        let t = track_sloppy(&mut st, true, &seg(TH_ACK, 99_999_999, 1, 0));
        assert_eq!(t, Timeout::TcpEstablished);
    }
}
