//! The state machine segment by segment (RFC 9293 §3.10), its defences
//! (RFC 5961, RFC 7323 PAWS) and bad input.

mod sim;

use sim::{deliver, drain, Seg, TestEnv, A_PORT, B_PORT};
use softnet_tcp::{Config, Drop, Keepalive, State, Tcb, TcpError, Verdict, STRETCH_ACK_DIV};
use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
use std::time::Duration;

struct Pair {
    a: Tcb,
    b: Tcb,
    ea: TestEnv,
    eb: TestEnv,
}

impl Pair {
    fn envs() -> (TestEnv, TestEnv) {
        (TestEnv::new(11, [10, 0, 0, 1], [10, 0, 0, 2]), TestEnv::new(22, [10, 0, 0, 2], [10, 0, 0, 1]))
    }

    /// A connected to B through the three-way handshake.
    fn established(cfg_a: Config, cfg_b: Config) -> Pair {
        let (mut ea, mut eb) = Pair::envs();
        let mut a = Tcb::connect(cfg_a, &mut ea, A_PORT, B_PORT);
        let mut b = Tcb::listen(cfg_b, &mut eb, B_PORT);
        let syn = one(drain(&mut a, &mut ea));
        assert_eq!(deliver(&mut b, &mut eb, &syn), Verdict::Accepted);
        let synack = one(drain(&mut b, &mut eb));
        deliver(&mut a, &mut ea, &synack);
        let ack = one(drain(&mut a, &mut ea));
        deliver(&mut b, &mut eb, &ack);
        assert_eq!((a.state(), b.state()), (State::Established, State::Established));
        Pair { a, b, ea, eb }
    }

    fn default() -> Pair {
        Pair::established(Config::default(), Config::default())
    }

    fn advance(&mut self, d: Duration) {
        self.ea.now = self.ea.now + d;
        self.eb.now = self.eb.now + d;
    }

    /// Everything A sends goes to B and back, until quiet.
    fn exchange(&mut self) {
        for _ in 0..100 {
            let from_a = drain(&mut self.a, &mut self.ea);
            let from_b = drain(&mut self.b, &mut self.eb);
            if from_a.is_empty() && from_b.is_empty() {
                return;
            }
            for s in &from_a {
                deliver(&mut self.b, &mut self.eb, s);
            }
            for s in &from_b {
                deliver(&mut self.a, &mut self.ea, s);
            }
        }
        panic!("no quiet");
    }

    /// A segment from B's side as B would send it now (for forging).
    fn b_segment(&mut self) -> TcpRepr {
        self.b.send(b"x").unwrap();
        let s = one(drain(&mut self.b, &mut self.eb));
        s.repr
    }
}

fn one(v: Vec<Seg>) -> Seg {
    assert_eq!(v.len(), 1, "expected one segment: {v:?}");
    v.into_iter().next().unwrap()
}

fn seg(repr: TcpRepr, payload: &[u8]) -> Seg {
    Seg { repr: TcpRepr { payload_len: payload.len(), ..repr }, payload: payload.to_vec() }
}

#[test]
fn handshake_negotiates_mss_window_scale_sack_and_timestamps() {
    let (mut ea, mut eb) = Pair::envs();
    let cfg = Config { rx_buffer: 1 << 20, ..Config::default() };
    let mut a = Tcb::connect(cfg.clone(), &mut ea, A_PORT, B_PORT);
    let mut b = Tcb::listen(Config { mss: 1000, rx_buffer: 64 * 1024, ..Config::default() }, &mut eb, B_PORT);
    let syn = one(drain(&mut a, &mut ea));
    assert_eq!(syn.repr.flags, TcpFlags::SYN);
    assert_eq!(syn.repr.max_seg_size, Some(1460));
    assert_eq!(syn.repr.window_scale, Some(5), "1 MB needs a shift of 5");
    assert!(syn.repr.sack_permitted);
    assert!(syn.repr.timestamp.is_some_and(|(v, e)| v != 0 && e == 0));
    deliver(&mut b, &mut eb, &syn);
    assert_eq!(b.state(), State::SynReceived);
    let synack = one(drain(&mut b, &mut eb));
    assert_eq!(synack.repr.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(synack.repr.ack, syn.repr.seq.wrapping_add(1));
    assert_eq!(synack.repr.window_scale, Some(1), "64 KB buffer: shift 1");
    assert_eq!(synack.repr.timestamp.unwrap().1, syn.repr.timestamp.unwrap().0, "TSecr echoes");
    deliver(&mut a, &mut ea, &synack);
    assert_eq!(a.state(), State::Established);
    assert_eq!(a.mss(), 1000 - 12, "the peer's MSS less the timestamp option");
    let ack = one(drain(&mut a, &mut ea));
    deliver(&mut b, &mut eb, &ack);
    assert_eq!(b.state(), State::Established);
    assert_eq!(b.mss(), 1000 - 12, "our own MSS bounds what we send");
}

#[test]
fn peer_without_options_gets_none_back() {
    let (mut ea, mut eb) = Pair::envs();
    let mut b = Tcb::listen(Config::default(), &mut eb, B_PORT);
    let mut a = Tcb::connect(Config::default(), &mut ea, A_PORT, B_PORT);
    let mut syn = one(drain(&mut a, &mut ea));
    syn.repr.window_scale = None;
    syn.repr.sack_permitted = false;
    syn.repr.timestamp = None;
    syn.repr.max_seg_size = None;
    deliver(&mut b, &mut eb, &syn);
    let synack = one(drain(&mut b, &mut eb));
    assert_eq!((synack.repr.window_scale, synack.repr.sack_permitted, synack.repr.timestamp), (None, false, None));
    assert_eq!(b.mss(), 536, "RFC 9293 default send MSS");
}

#[test]
fn simultaneous_open_reaches_established_on_both_sides() {
    let (mut ea, mut eb) = Pair::envs();
    let mut a = Tcb::connect(Config::default(), &mut ea, A_PORT, B_PORT);
    let mut b = Tcb::connect(Config::default(), &mut eb, B_PORT, A_PORT);
    let sa = one(drain(&mut a, &mut ea));
    let sb = one(drain(&mut b, &mut eb));
    deliver(&mut a, &mut ea, &sb);
    deliver(&mut b, &mut eb, &sa);
    assert_eq!((a.state(), b.state()), (State::SynReceived, State::SynReceived));
    let sa2 = one(drain(&mut a, &mut ea));
    let sb2 = one(drain(&mut b, &mut eb));
    assert_eq!(sa2.repr.flags, TcpFlags::SYN | TcpFlags::ACK);
    deliver(&mut a, &mut ea, &sb2);
    deliver(&mut b, &mut eb, &sa2);
    assert_eq!((a.state(), b.state()), (State::Established, State::Established));
}

#[test]
fn orderly_close_walks_fin_wait_close_wait_last_ack_time_wait() {
    let mut p = Pair::default();
    p.a.close(&mut p.ea);
    assert_eq!(p.a.state(), State::FinWait1);
    let fin = one(drain(&mut p.a, &mut p.ea));
    assert!(fin.repr.flags.contains(TcpFlags::FIN));
    deliver(&mut p.b, &mut p.eb, &fin);
    assert_eq!(p.b.state(), State::CloseWait);
    let mut buf = [0; 8];
    assert_eq!(p.b.recv(&mut buf), Ok(0), "end of stream");
    let ack = one(drain(&mut p.b, &mut p.eb));
    deliver(&mut p.a, &mut p.ea, &ack);
    assert_eq!(p.a.state(), State::FinWait2);
    assert!(drain(&mut p.a, &mut p.ea).is_empty(), "an acknowledged FIN is not sent again");
    p.b.close(&mut p.eb);
    assert_eq!(p.b.state(), State::LastAck);
    let fin_b = one(drain(&mut p.b, &mut p.eb));
    deliver(&mut p.a, &mut p.ea, &fin_b);
    assert_eq!(p.a.state(), State::TimeWait);
    let last = one(drain(&mut p.a, &mut p.ea));
    deliver(&mut p.b, &mut p.eb, &last);
    assert_eq!(p.b.state(), State::Closed);
    assert_eq!(p.b.error(), None);
    // A retransmitted FIN in TIME_WAIT is ACKed again.
    deliver(&mut p.a, &mut p.ea, &fin_b);
    assert_eq!(one(drain(&mut p.a, &mut p.ea)).repr.flags, TcpFlags::ACK);
    // 2MSL later A is gone.
    p.advance(Duration::from_secs(59));
    p.a.on_timer(&mut p.ea);
    assert_eq!(p.a.state(), State::TimeWait);
    p.advance(Duration::from_secs(2));
    p.a.on_timer(&mut p.ea);
    assert_eq!(p.a.state(), State::Closed);
}

#[test]
fn time_wait_ended_early_closes_silently_and_nothing_else_does() {
    let mut p = Pair::default();
    // Not in TIME_WAIT: refused, nothing changed.
    assert!(!p.a.end_time_wait());
    assert_eq!(p.a.state(), State::Established);
    p.a.close(&mut p.ea);
    p.exchange();
    assert_eq!((p.a.state(), p.b.state()), (State::FinWait2, State::CloseWait));
    assert!(!p.a.end_time_wait());
    assert_eq!(p.a.state(), State::FinWait2);
    p.b.close(&mut p.eb);
    p.exchange();
    assert_eq!((p.a.state(), p.b.state()), (State::TimeWait, State::Closed));
    assert!(p.a.poll_at().is_some(), "2MSL is due");
    // Recycled: CLOSED at once, no segment (no RST: the peer is gone
    // already), no timer left, and no error for a reader.
    assert!(p.a.end_time_wait());
    assert_eq!(p.a.state(), State::Closed);
    assert!(drain(&mut p.a, &mut p.ea).is_empty());
    assert_eq!((p.a.poll_at(), p.a.error()), (None, None));
    assert_eq!(p.a.recv(&mut [0; 4]), Ok(0), "end of stream, as after 2MSL");
    assert!(!p.a.end_time_wait(), "once");
}

#[test]
fn simultaneous_close_goes_through_closing_to_time_wait() {
    let mut p = Pair::default();
    p.a.close(&mut p.ea);
    p.b.close(&mut p.eb);
    let fa = one(drain(&mut p.a, &mut p.ea));
    let fb = one(drain(&mut p.b, &mut p.eb));
    deliver(&mut p.a, &mut p.ea, &fb);
    deliver(&mut p.b, &mut p.eb, &fa);
    assert_eq!((p.a.state(), p.b.state()), (State::Closing, State::Closing));
    p.exchange();
    assert_eq!((p.a.state(), p.b.state()), (State::TimeWait, State::TimeWait));
}

#[test]
fn half_close_lets_the_other_side_keep_sending() {
    let mut p = Pair::default();
    p.a.shutdown();
    p.exchange();
    assert_eq!((p.a.state(), p.b.state()), (State::FinWait2, State::CloseWait));
    assert_eq!(p.a.send(b"more"), Err(TcpError::NotConnected));
    assert_eq!(p.b.send(b"still talking"), Ok(13));
    p.exchange();
    let mut buf = [0; 32];
    assert_eq!(p.a.recv(&mut buf), Ok(13));
    assert_eq!(&buf[..13], b"still talking");
    p.b.close(&mut p.eb);
    p.exchange();
    assert_eq!((p.a.state(), p.b.state()), (State::TimeWait, State::Closed));
}

#[test]
fn rst_at_rcv_nxt_resets_in_window_rst_is_challenged_outside_ignored() {
    let mut p = Pair::default();
    let base = p.b_segment();
    let rst = |seq: u32| TcpRepr {
        seq,
        flags: TcpFlags::RST,
        timestamp: None,
        sack_ranges: [None; 3],
        payload_len: 0,
        ..base
    };
    // Out of window: dropped silently.
    let v = deliver(&mut p.a, &mut p.ea, &seg(rst(base.seq.wrapping_add(1_000_000)), b""));
    assert_eq!(v, Verdict::Dropped(Drop::OutOfWindow));
    assert!(drain(&mut p.a, &mut p.ea).is_empty(), "no reply to an out-of-window RST");
    // In window, not exact: challenge ACK (RFC 5961 §3.2).
    let v = deliver(&mut p.a, &mut p.ea, &seg(rst(base.seq.wrapping_add(100)), b""));
    assert_eq!(v, Verdict::Dropped(Drop::RstChallenged));
    let ch = one(drain(&mut p.a, &mut p.ea));
    assert_eq!(ch.repr.flags, TcpFlags::ACK);
    assert_eq!(ch.repr.ack, base.seq, "the challenge ACK names RCV.NXT");
    assert_eq!(p.a.state(), State::Established);
    // Exactly RCV.NXT: reset.
    assert_eq!(deliver(&mut p.a, &mut p.ea, &seg(rst(base.seq), b"")), Verdict::Accepted);
    assert_eq!((p.a.state(), p.a.error()), (State::Closed, Some(TcpError::Reset)));
    let mut buf = [0; 4];
    assert_eq!(p.a.recv(&mut buf), Err(TcpError::Reset));
}

#[test]
fn challenge_acks_are_rate_limited() {
    let mut p = Pair::default();
    let base = p.b_segment();
    for i in 0..100u32 {
        let r = TcpRepr { seq: base.seq.wrapping_add(10 + i), flags: TcpFlags::RST, timestamp: None, ..base };
        deliver(&mut p.a, &mut p.ea, &seg(r, b""));
        drain(&mut p.a, &mut p.ea);
    }
    assert_eq!(p.a.stats().challenge_acks, 10);
    assert_eq!(p.a.stats().challenge_acks_limited, 90);
    p.advance(Duration::from_secs(1));
    let r = TcpRepr { seq: base.seq.wrapping_add(5), flags: TcpFlags::RST, timestamp: None, ..base };
    deliver(&mut p.a, &mut p.ea, &seg(r, b""));
    assert_eq!(p.a.stats().challenge_acks, 11, "a new second, a new allowance");
}

#[test]
fn syn_on_an_established_connection_gets_a_challenge_ack() {
    let mut p = Pair::default();
    let base = p.b_segment();
    for seq in [base.seq, base.seq.wrapping_add(1000), base.seq.wrapping_sub(5)] {
        let syn = TcpRepr { seq, flags: TcpFlags::SYN, ..base };
        let v = deliver(&mut p.a, &mut p.ea, &seg(syn, b""));
        assert!(matches!(v, Verdict::Dropped(Drop::SynChallenged) | Verdict::Dropped(Drop::OutOfWindow)), "{v:?}");
        let r = one(drain(&mut p.a, &mut p.ea));
        assert_eq!(r.repr.flags, TcpFlags::ACK);
        assert_eq!(p.a.state(), State::Established);
    }
}

#[test]
fn blind_data_with_an_old_ack_is_refused_with_a_challenge() {
    let mut p = Pair::default();
    let base = p.b_segment();
    // An ACK far below SND.UNA - MAX.SND.WND (RFC 5961 §5.2).
    let forged = TcpRepr { ack: base.ack.wrapping_sub(1_000_000), ..base };
    let v = deliver(&mut p.a, &mut p.ea, &seg(forged, b"evil"));
    assert_eq!(v, Verdict::Dropped(Drop::AckTooOld));
    assert_eq!(one(drain(&mut p.a, &mut p.ea)).repr.flags, TcpFlags::ACK);
    let mut buf = [0; 8];
    assert_eq!(p.a.recv(&mut buf), Err(TcpError::WouldBlock), "nothing delivered");
    // An ACK of data never sent.
    let forged = TcpRepr { ack: base.ack.wrapping_add(50_000), ..base };
    assert_eq!(deliver(&mut p.a, &mut p.ea, &seg(forged, b"evil")), Verdict::Dropped(Drop::AckTooNew));
    assert_eq!(p.a.recv(&mut buf), Err(TcpError::WouldBlock));
}

#[test]
fn out_of_window_data_is_acked_and_not_delivered() {
    let mut p = Pair::default();
    let base = p.b_segment();
    let far = TcpRepr { seq: base.seq.wrapping_add(10_000_000), ..base };
    assert_eq!(deliver(&mut p.a, &mut p.ea, &seg(far, b"junk")), Verdict::Dropped(Drop::OutOfWindow));
    let ack = one(drain(&mut p.a, &mut p.ea));
    assert_eq!(ack.repr.ack, base.seq);
    let old = TcpRepr { seq: base.seq.wrapping_sub(100), ..base };
    assert_eq!(deliver(&mut p.a, &mut p.ea, &seg(old, b"junk")), Verdict::Dropped(Drop::OutOfWindow));
    let mut buf = [0; 8];
    assert_eq!(p.a.recv(&mut buf), Err(TcpError::WouldBlock));
}

#[test]
fn paws_drops_a_segment_with_an_old_timestamp() {
    let mut p = Pair::default();
    let base = p.b_segment();
    let (tsval, tsecr) = base.timestamp.unwrap();
    let old = TcpRepr { timestamp: Some((tsval.wrapping_sub(1000), tsecr)), ..base };
    assert_eq!(deliver(&mut p.a, &mut p.ea, &seg(old, b"x")), Verdict::Dropped(Drop::Paws));
    assert_eq!(one(drain(&mut p.a, &mut p.ea)).repr.flags, TcpFlags::ACK);
    assert_eq!(deliver(&mut p.a, &mut p.ea, &seg(base, b"x")), Verdict::Accepted);
}

#[test]
fn syn_with_data_to_a_listener_leaves_the_data_unacknowledged() {
    let (mut ea, mut eb) = Pair::envs();
    let mut a = Tcb::connect(Config::default(), &mut ea, A_PORT, B_PORT);
    let mut b = Tcb::listen(Config::default(), &mut eb, B_PORT);
    let syn = one(drain(&mut a, &mut ea));
    deliver(&mut b, &mut eb, &seg(syn.repr, b"early data"));
    let synack = one(drain(&mut b, &mut eb));
    assert_eq!(synack.repr.ack, syn.repr.seq.wrapping_add(1), "only the SYN is acknowledged");
    assert_eq!(b.recv_queue(), 0);
}

#[test]
fn listener_ignores_rst_and_answers_a_stray_ack_with_rst() {
    let (mut ea, mut eb) = Pair::envs();
    let mut b = Tcb::listen(Config::default(), &mut eb, B_PORT);
    let mut a = Tcb::connect(Config::default(), &mut ea, A_PORT, B_PORT);
    let syn = one(drain(&mut a, &mut ea)).repr;
    let rst = TcpRepr { flags: TcpFlags::RST, ..syn };
    assert_eq!(deliver(&mut b, &mut eb, &seg(rst, b"")), Verdict::Dropped(Drop::NotSyn));
    assert!(drain(&mut b, &mut eb).is_empty());
    let ack = TcpRepr { flags: TcpFlags::ACK, ack: 12345, ..syn };
    assert_eq!(deliver(&mut b, &mut eb, &seg(ack, b"")), Verdict::Dropped(Drop::NotSyn));
    let r = one(drain(&mut b, &mut eb));
    assert_eq!((r.repr.flags, r.repr.seq), (TcpFlags::RST, 12345));
    assert_eq!((r.repr.src_port, r.repr.dst_port), (B_PORT, A_PORT), "to the peer that sent it");
    assert_eq!(b.state(), State::Listen);
}

#[test]
fn syn_sent_rejects_a_bad_ack_and_is_refused_by_rst() {
    let (mut ea, _) = Pair::envs();
    let mut a = Tcb::connect(Config::default(), &mut ea, A_PORT, B_PORT);
    let syn = one(drain(&mut a, &mut ea)).repr;
    let bad = TcpRepr {
        flags: TcpFlags::SYN | TcpFlags::ACK,
        ack: syn.seq.wrapping_add(99),
        src_port: B_PORT,
        dst_port: A_PORT,
        ..syn
    };
    assert_eq!(deliver(&mut a, &mut ea, &seg(bad, b"")), Verdict::Dropped(Drop::BadAck));
    let r = one(drain(&mut a, &mut ea));
    assert_eq!((r.repr.flags, r.repr.seq), (TcpFlags::RST, syn.seq.wrapping_add(99)));
    let refused = TcpRepr { flags: TcpFlags::RST | TcpFlags::ACK, ack: syn.seq.wrapping_add(1), ..bad };
    deliver(&mut a, &mut ea, &seg(refused, b""));
    assert_eq!((a.state(), a.error()), (State::Closed, Some(TcpError::Refused)));
}

#[test]
fn delayed_ack_waits_for_a_second_segment_or_the_timer() {
    let mut p = Pair::default();
    p.b.set_nodelay(true);
    p.b.send(&[1; 100]).unwrap();
    let s1 = one(drain(&mut p.b, &mut p.eb));
    deliver(&mut p.a, &mut p.ea, &s1);
    assert!(drain(&mut p.a, &mut p.ea).is_empty(), "one segment: the ACK is delayed");
    let due = p.a.poll_at().unwrap();
    assert_eq!(due - p.ea.now, Duration::from_millis(40));
    p.advance(Duration::from_millis(40));
    p.a.on_timer(&mut p.ea);
    assert_eq!(one(drain(&mut p.a, &mut p.ea)).repr.ack, s1.repr.seq.wrapping_add(100));
    deliver(&mut p.b, &mut p.eb, &s1); // keep B's view simple: nothing changes
    p.b.send(&[2; 3000]).unwrap();
    let segs = drain(&mut p.b, &mut p.eb);
    assert!(segs.len() >= 2);
    deliver(&mut p.a, &mut p.ea, &segs[0]);
    assert!(drain(&mut p.a, &mut p.ea).is_empty());
    deliver(&mut p.a, &mut p.ea, &segs[1]);
    assert_eq!(drain(&mut p.a, &mut p.ea).len(), 1, "every second segment is ACKed at once");
}

/// A caller that batches its input (the worker) may let the ACK owed for
/// in-order data wait for the end of the batch (`Tcb::ack_may_wait`),
/// until a quarter of the offered window is unacknowledged; then one ACK
/// covers it all. A hole or a duplicate is answered at once.
#[test]
fn a_batched_ack_waits_until_a_quarter_of_the_window_is_unacknowledged() {
    let mut p = Pair::default();
    let base = p.b_segment();
    assert_eq!(deliver(&mut p.a, &mut p.ea, &seg(base, b"x")), Verdict::Accepted);
    assert!(p.a.ack_may_wait(), "one segment: nothing owed yet");
    // The window A offered in the handshake is its whole receive buffer.
    let quarter = Config::default().rx_buffer / STRETCH_ACK_DIV;
    let chunk = [7u8; 1400];
    let mut next = base.seq.wrapping_add(1);
    let mut unacked = 1;
    let mut segs = 0;
    while p.a.ack_may_wait() {
        let s = TcpRepr { seq: next, ..base };
        assert_eq!(deliver(&mut p.a, &mut p.ea, &seg(s, &chunk)), Verdict::Accepted);
        next = next.wrapping_add(chunk.len() as u32);
        unacked += chunk.len();
        segs += 1;
        assert!(segs < 1000, "the ACK never became due");
    }
    assert!(unacked >= quarter && unacked < quarter + chunk.len(), "{unacked} bytes unacked, quarter {quarter}");
    let ack = one(drain(&mut p.a, &mut p.ea));
    assert_eq!(ack.repr.ack, next, "one ACK for the whole batch");
    assert!(p.a.ack_may_wait());

    // Two more in order: an ACK is owed and may wait; output still sends
    // it to a caller that does not batch.
    for _ in 0..2 {
        deliver(&mut p.a, &mut p.ea, &seg(TcpRepr { seq: next, ..base }, &chunk));
        next = next.wrapping_add(chunk.len() as u32);
    }
    assert!(p.a.ack_may_wait());
    assert_eq!(one(drain(&mut p.a, &mut p.ea)).repr.ack, next);

    // A duplicate: at once.
    let old = TcpRepr { seq: next.wrapping_sub(chunk.len() as u32), ..base };
    deliver(&mut p.a, &mut p.ea, &seg(old, &chunk));
    assert!(!p.a.ack_may_wait(), "a duplicate is answered at once");
    assert_eq!(one(drain(&mut p.a, &mut p.ea)).repr.ack, next);

    // A hole: at once, and while it lasts.
    let ahead = TcpRepr { seq: next.wrapping_add(chunk.len() as u32), ..base };
    deliver(&mut p.a, &mut p.ea, &seg(ahead, &chunk));
    assert!(!p.a.ack_may_wait(), "data above a hole is answered at once");
    drain(&mut p.a, &mut p.ea);
    assert!(!p.a.ack_may_wait(), "not while the hole lasts");
    deliver(&mut p.a, &mut p.ea, &seg(TcpRepr { seq: next, ..base }, &chunk));
    assert!(!p.a.ack_may_wait(), "the hole filled: at once");
    assert_eq!(one(drain(&mut p.a, &mut p.ea)).repr.ack, next.wrapping_add(2 * chunk.len() as u32));
    assert!(p.a.ack_may_wait());
}

/// A read asks for a window update only when the peer's window is at
/// most half the buffer and the update at least doubles it (Linux's
/// tcp_cleanup_rbuf); otherwise the ACKs of the data still coming carry it.
#[test]
fn a_read_asks_for_a_window_update_only_when_it_doubles_a_small_window() {
    let mut p = Pair::default();
    let base = p.b_segment();
    deliver(&mut p.a, &mut p.ea, &seg(base, b"x"));
    let chunk = [7u8; 1400];
    let mut next = base.seq.wrapping_add(1);
    let mut feed = |p: &mut Pair, n: usize| {
        for _ in 0..n {
            assert_eq!(deliver(&mut p.a, &mut p.ea, &seg(TcpRepr { seq: next, ..base }, &chunk)), Verdict::Accepted);
            next = next.wrapping_add(chunk.len() as u32);
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    // A tenth of the window used: reading it all is no news for the peer.
    feed(&mut p, 18);
    assert!(!p.a.window_update_due());
    assert!(p.a.recv(&mut buf).unwrap() > 0);
    assert!(!p.a.window_update_due(), "the peer's window is still over half");
    drain(&mut p.a, &mut p.ea);
    // Over half of it used: a small read is not enough, reading it all is.
    feed(&mut p, 110);
    assert_eq!(p.a.recv(&mut buf[..1000]), Ok(1000));
    assert!(!p.a.window_update_due(), "a small read does not double the window");
    assert!(p.a.recv(&mut buf).unwrap() > 0);
    assert!(p.a.window_update_due(), "the whole buffer free: more than twice the peer's window");
    let upd = one(drain(&mut p.a, &mut p.ea));
    assert_eq!(upd.repr.ack, next);
    assert!(!p.a.window_update_due(), "sent");
}

#[test]
fn nagle_holds_small_writes_while_data_is_unacknowledged_unless_nodelay() {
    for nodelay in [false, true] {
        let mut p = Pair::default();
        p.a.set_nodelay(nodelay);
        p.a.send(b"first").unwrap();
        let first = one(drain(&mut p.a, &mut p.ea));
        deliver(&mut p.b, &mut p.eb, &first);
        p.a.send(b"second").unwrap();
        let held = drain(&mut p.a, &mut p.ea);
        if nodelay {
            assert_eq!(held.len(), 1);
        } else {
            assert!(held.is_empty(), "Nagle: wait for the ACK");
            p.advance(Duration::from_millis(40));
            p.b.on_timer(&mut p.eb);
            p.exchange();
            assert_eq!(p.b.recv_queue(), 11, "sent once the first was ACKed");
        }
    }
}

#[test]
fn nopush_sends_a_response_and_its_fin_in_one_segment() {
    // Without TCP_NOPUSH a response written and then closed leaves as two
    // segments when output runs in between (the worker woken by the write).
    let mut p = Pair::default();
    p.a.send(&[b'x'; 1024]).unwrap();
    let data = one(drain(&mut p.a, &mut p.ea));
    assert_eq!((data.payload.len(), data.repr.flags.contains(TcpFlags::FIN)), (1024, false));
    p.a.close(&mut p.ea);
    assert_eq!(one(drain(&mut p.a, &mut p.ea)).payload.len(), 0, "the FIN alone");

    // With it the partial segment waits for the FIN: one segment.
    let mut p = Pair::established(Config { nopush: true, ..Config::default() }, Config::default());
    p.a.send(&[b'x'; 1024]).unwrap();
    assert!(drain(&mut p.a, &mut p.ea).is_empty(), "a partial segment is held");
    p.a.close(&mut p.ea);
    let both = one(drain(&mut p.a, &mut p.ea));
    assert_eq!(both.payload.len(), 1024);
    assert!(both.repr.flags.contains(TcpFlags::FIN | TcpFlags::PSH));
    deliver(&mut p.b, &mut p.eb, &both);
    assert_eq!((p.b.state(), p.b.recv_queue()), (State::CloseWait, 1024));

    // Full segments are not held; the rest goes when the option is
    // cleared, or with the persist timer if nobody clears it.
    let mut p = Pair::default();
    p.a.set_nopush(true);
    let mss = p.a.mss();
    p.a.send(&vec![7u8; mss * 2 + 100]).unwrap();
    let full = drain(&mut p.a, &mut p.ea);
    assert_eq!(full.iter().map(|s| s.payload.len()).collect::<Vec<_>>(), [mss, mss]);
    for s in &full {
        deliver(&mut p.b, &mut p.eb, s);
    }
    p.exchange();
    assert_eq!(p.b.recv_queue(), 2 * mss, "the last 100 bytes held");
    p.a.set_nopush(false);
    assert_eq!(one(drain(&mut p.a, &mut p.ea)).payload.len(), 100, "cleared: pushed");

    let mut p = Pair::default();
    p.a.set_nopush(true);
    p.a.send(b"held").unwrap();
    assert!(drain(&mut p.a, &mut p.ea).is_empty());
    p.advance(Duration::from_millis(1500));
    p.a.on_timer(&mut p.ea);
    assert_eq!(one(drain(&mut p.a, &mut p.ea)).payload, b"held", "the persist timer sends it");
}

#[test]
fn the_ack_completing_a_passive_open_draws_no_window_update() {
    // B's SYN,ACK offers 64 KiB of its 256 KiB (a SYN's window is not
    // scaled): the handshake's last ACK is answered by nothing, as
    // OpenBSD's tcp_input does (main sent a window update: a frame of
    // every short connection's four); B's first segment tells the window.
    let mut p = Pair::default();
    assert!(drain(&mut p.b, &mut p.eb).is_empty(), "nothing for the handshake's ACK");
    p.advance(Duration::from_millis(500));
    p.b.on_timer(&mut p.eb);
    assert!(drain(&mut p.b, &mut p.eb).is_empty(), "nor later");
    p.b.send(&[b'x'; 100]).unwrap();
    let data = one(drain(&mut p.b, &mut p.eb));
    let scale = 3; // 256 KiB needs a shift of 3
    assert_eq!(usize::from(data.repr.window) << scale, 256 * 1024, "the whole window with the data");

    // Once the peer sent something, a grown window is told as before: A's
    // data read by B, whose next output offers the space again.
    let mut p = Pair::default();
    p.a.send(&[b'y'; 3000]).unwrap();
    for s in drain(&mut p.a, &mut p.ea) {
        deliver(&mut p.b, &mut p.eb, &s);
    }
    p.advance(Duration::from_millis(200));
    p.b.on_timer(&mut p.eb);
    let acks = drain(&mut p.b, &mut p.eb);
    assert!(usize::from(acks.last().unwrap().repr.window) << scale < 256 * 1024, "the data took room");
    let mut buf = [0u8; 3000];
    assert!(p.b.recv(&mut buf).unwrap() >= 2000);
    let update = one(drain(&mut p.b, &mut p.eb));
    assert_eq!(usize::from(update.repr.window) << scale, 256 * 1024, "a window update after the read");
}

#[test]
fn out_of_order_flood_of_tiny_segments_is_bounded_and_the_stream_survives() {
    let cfg = Config { max_ooo_ranges: 16, ..Config::default() };
    let mut p = Pair::established(cfg, Config::default());
    let base = p.b_segment();
    // 10,000 one-byte segments, each leaving a hole before it.
    for i in 0..10_000u32 {
        let s = TcpRepr { seq: base.seq.wrapping_add(2 + 2 * i), ..base };
        deliver(&mut p.a, &mut p.ea, &seg(s, b"z"));
        drain(&mut p.a, &mut p.ea);
    }
    assert!(p.a.stats().ooo_dropped >= 10_000 - 16 - 1, "{:?}", p.a.stats());
    assert_eq!(p.a.recv_queue(), 0);
    // The hole at RCV.NXT fills: the queued pieces join the stream.
    deliver(&mut p.a, &mut p.ea, &seg(base, b"ab"));
    let mut buf = [0; 64];
    let n = p.a.recv(&mut buf).unwrap();
    assert_eq!(&buf[..3], b"abz");
    assert_eq!(n, 3);
}

#[test]
fn rto_backs_off_and_gives_up_with_timed_out() {
    let cfg = Config { max_retries: 4, ..Config::default() };
    let mut p = Pair::established(cfg, Config::default());
    p.a.send(b"lost forever").unwrap();
    drain(&mut p.a, &mut p.ea);
    let mut gaps = Vec::new();
    let mut last = p.ea.now;
    while !p.a.is_closed() {
        let t = p.a.poll_at().unwrap();
        p.advance(t - p.ea.now);
        p.a.on_timer(&mut p.ea);
        let out = drain(&mut p.a, &mut p.ea);
        if out.iter().any(|s| s.payload == b"lost forever") {
            gaps.push((p.ea.now - last).as_millis());
            last = p.ea.now;
        }
        if out.iter().any(|s| s.repr.flags.contains(TcpFlags::RST)) {
            break;
        }
    }
    assert_eq!(gaps.len(), 4);
    for w in gaps.windows(2) {
        assert_eq!(w[1], 2 * w[0], "exponential backoff: {gaps:?}");
    }
    assert_eq!(p.a.error(), Some(TcpError::TimedOut));
}

#[test]
fn keepalive_probes_a_silent_peer_then_drops_it() {
    let ka = Keepalive { idle: Duration::from_secs(60), interval: Duration::from_secs(10), count: 3 };
    let mut p = Pair::established(Config { keepalive: Some(ka), ..Config::default() }, Config::default());
    // First probe after 60 s idle; the peer answers it.
    p.advance(Duration::from_secs(60));
    p.a.on_timer(&mut p.ea);
    let probe = one(drain(&mut p.a, &mut p.ea));
    assert_eq!(probe.payload.len(), 0);
    deliver(&mut p.b, &mut p.eb, &probe);
    let answer = one(drain(&mut p.b, &mut p.eb));
    deliver(&mut p.a, &mut p.ea, &answer);
    assert_eq!(p.a.state(), State::Established);
    // Now the peer is gone: three probes, then dropped.
    let mut probes = 0;
    for _ in 0..20 {
        let t = p.a.poll_at().unwrap();
        p.advance(t - p.ea.now);
        p.a.on_timer(&mut p.ea);
        probes += drain(&mut p.a, &mut p.ea).iter().filter(|s| !s.repr.flags.contains(TcpFlags::RST)).count();
        if p.a.is_closed() {
            break;
        }
    }
    assert_eq!(probes, 3);
    assert_eq!(p.a.error(), Some(TcpError::TimedOut));
    assert_eq!(p.a.stats().keepalive_probes, 4);
}

/// SO_KEEPALIVE turned on a connection that is up (setsockopt after
/// connect or accept): the idle timer counts from the last segment
/// received, and turning it off stops the probes.
#[test]
fn keepalive_set_on_an_established_connection_probes_then_stops_when_cleared() {
    let ka = Keepalive { idle: Duration::from_secs(60), interval: Duration::from_secs(10), count: 3 };
    let mut p = Pair::default();
    assert_eq!(p.a.poll_at(), None, "no keepalive by default");
    p.advance(Duration::from_secs(50));
    let now = p.ea.now;
    p.a.set_keepalive(Some(ka), now);
    assert_eq!(p.a.config().keepalive, Some(ka));
    // Idle since the handshake 50 s ago: the first probe is 10 s away.
    assert_eq!(p.a.poll_at().map(|t| t - now), Some(Duration::from_secs(10)));
    p.advance(Duration::from_secs(10));
    p.a.on_timer(&mut p.ea);
    let probe = one(drain(&mut p.a, &mut p.ea));
    assert_eq!(probe.payload.len(), 0);
    assert_eq!(p.a.stats().keepalive_probes, 1);
    // Off: no timer, no more probes.
    let now = p.ea.now;
    p.a.set_keepalive(None, now);
    assert_eq!(p.a.poll_at(), None);
    p.advance(Duration::from_secs(600));
    p.a.on_timer(&mut p.ea);
    assert!(drain(&mut p.a, &mut p.ea).is_empty());
    assert_eq!(p.a.state(), State::Established);
}

#[test]
fn time_wait_is_reopened_by_a_newer_syn() {
    let mut p = Pair::default();
    let base = p.b_segment();
    deliver(&mut p.a, &mut p.ea, &seg(base, b"x"));
    p.a.recv(&mut [0; 4]).unwrap();
    p.exchange();
    p.a.close(&mut p.ea);
    p.exchange();
    p.b.close(&mut p.eb);
    p.exchange();
    assert_eq!(p.a.state(), State::TimeWait);
    let (tsval, _) = base.timestamp.unwrap();
    let old =
        TcpRepr { seq: base.seq, flags: TcpFlags::SYN, ack: 0, timestamp: Some((tsval.wrapping_sub(5), 0)), ..base };
    assert_ne!(deliver(&mut p.a, &mut p.ea, &seg(old, b"")), Verdict::Reopen);
    let newer = TcpRepr { timestamp: Some((tsval.wrapping_add(100_000), 0)), ..old };
    assert_eq!(deliver(&mut p.a, &mut p.ea, &seg(newer, b"")), Verdict::Reopen);
    assert!(p.a.is_closed());
}

#[test]
fn closed_tcb_answers_with_rst_and_close_with_unread_data_resets() {
    let mut p = Pair::default();
    p.b.send(b"unread").unwrap();
    p.exchange();
    p.a.close(&mut p.ea);
    assert_eq!(p.a.state(), State::Closed);
    let r = one(drain(&mut p.a, &mut p.ea));
    assert!(r.repr.flags.contains(TcpFlags::RST), "RFC 2525: unread data means RST");
    deliver(&mut p.b, &mut p.eb, &r);
    assert_eq!(p.b.error(), Some(TcpError::Reset));
    // A segment to the closed TCB gets a RST.
    let s = p.b_segment_after_reset();
    assert_eq!(deliver(&mut p.a, &mut p.ea, &seg(s, b"x")), Verdict::Dropped(Drop::Closed));
    assert!(one(drain(&mut p.a, &mut p.ea)).repr.flags.contains(TcpFlags::RST));
}

impl Pair {
    fn b_segment_after_reset(&self) -> TcpRepr {
        TcpRepr {
            src_port: B_PORT,
            dst_port: A_PORT,
            seq: 1,
            ack: 2,
            flags: TcpFlags::ACK,
            window: 100,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload_len: 1,
        }
    }
}

#[test]
fn receiver_does_not_advertise_silly_window_increases() {
    let cfg = Config { rx_buffer: 8 * 1460, ..Config::default() };
    let mut p = Pair::established(cfg, Config::default());
    p.b.set_nodelay(true);
    p.b.send(&[7; 8 * 1460]).unwrap();
    p.exchange();
    assert_eq!(p.a.recv_queue(), 8 * 1460, "window full");
    let mut buf = [0; 100];
    p.a.recv(&mut buf).unwrap();
    assert!(drain(&mut p.a, &mut p.ea).is_empty(), "100 bytes free: no window update");
    let mut big = [0; 1460];
    p.a.recv(&mut big).unwrap();
    let upd = one(drain(&mut p.a, &mut p.ea));
    assert_eq!(upd.repr.flags, TcpFlags::ACK);
    assert!(u32::from(upd.repr.window) << 3 >= 1460, "a window update once a full MSS is free");
}

#[test]
fn malformed_options_never_reach_the_engine() {
    // An MSS option with length 3: the wire crate refuses the header, so
    // the socket layer counts and drops it before any TCB sees it.
    let mut bytes = [0u8; 24];
    let r = TcpRepr {
        src_port: 1,
        dst_port: 2,
        seq: 0,
        ack: 0,
        flags: TcpFlags::SYN,
        window: 1,
        max_seg_size: Some(1460),
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    };
    r.emit(&mut bytes);
    bytes[21] = 3;
    let p = TcpPacket::new_checked(&bytes[..]).unwrap();
    assert!(TcpRepr::parse(&p).is_err());
}

#[test]
fn path_mtu_lowers_the_mss_and_resends_what_is_in_flight() {
    let mut p = Pair::default();
    p.a.send(&[3; 3000]).unwrap();
    let first = drain(&mut p.a, &mut p.ea);
    assert!(first.iter().any(|s| s.payload.len() == 1448));
    p.a.lower_mss(600);
    assert_eq!(p.a.mss(), 588, "less the timestamp option");
    let again = drain(&mut p.a, &mut p.ea);
    assert!(!again.is_empty());
    assert!(again.iter().all(|s| s.payload.len() <= 588));
    assert_eq!(again[0].repr.seq, first[0].repr.seq, "from SND.UNA");
    p.a.lower_mss(1400);
    assert_eq!(p.a.mss(), 588, "never raised by a needfrag");
}

#[test]
fn lost_syn_and_syn_ack_are_sent_again_then_given_up() {
    let cfg = Config { max_retries: 3, ..Config::default() };
    let (mut ea, mut eb) = Pair::envs();
    let mut a = Tcb::connect(cfg.clone(), &mut ea, A_PORT, B_PORT);
    let syn = one(drain(&mut a, &mut ea));
    // The SYN is lost: sent again after the initial RTO (1 s).
    ea.now = ea.now + Duration::from_millis(999);
    a.on_timer(&mut ea);
    assert!(drain(&mut a, &mut ea).is_empty());
    ea.now = ea.now + Duration::from_millis(1);
    a.on_timer(&mut ea);
    let again = one(drain(&mut a, &mut ea));
    assert_eq!((again.repr.flags, again.repr.seq), (TcpFlags::SYN, syn.repr.seq));
    // The listener's SYN,ACK is lost every time: it gives up.
    let mut b = Tcb::listen(cfg, &mut eb, B_PORT);
    deliver(&mut b, &mut eb, &again);
    let mut synacks = drain(&mut b, &mut eb).len();
    while !b.is_closed() {
        let t = b.poll_at().expect("a timer while the handshake is pending");
        eb.now = t;
        b.on_timer(&mut eb);
        synacks += drain(&mut b, &mut eb).iter().filter(|s| s.repr.flags == TcpFlags::SYN | TcpFlags::ACK).count();
    }
    assert_eq!(synacks, 4, "the first and three retransmissions");
    assert_eq!(b.error(), Some(TcpError::TimedOut));
}

#[test]
fn fin_wait_2_after_close_times_out() {
    let mut p = Pair::default();
    p.a.close(&mut p.ea);
    p.exchange();
    assert_eq!((p.a.state(), p.b.state()), (State::FinWait2, State::CloseWait));
    // The peer never closes: FIN_WAIT_2 ends after fin_wait2_timeout.
    p.advance(Duration::from_secs(59));
    p.a.on_timer(&mut p.ea);
    assert_eq!(p.a.state(), State::FinWait2);
    p.advance(Duration::from_secs(1));
    p.a.on_timer(&mut p.ea);
    assert_eq!(p.a.state(), State::Closed);
    // After shutdown() alone (the socket still open) it waits for the FIN.
    let mut p = Pair::default();
    p.a.shutdown();
    p.exchange();
    p.advance(Duration::from_secs(600));
    p.a.on_timer(&mut p.ea);
    assert_eq!(p.a.state(), State::FinWait2);
}
