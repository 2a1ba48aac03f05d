//! One connection's TCB and its user calls (RFC 9293 §3.10.1–§3.10.6).
//! The segment arrival path is in `input.rs` (tcp_input), segment
//! generation in `output.rs` (tcp_output), timers in `timer.rs`
//! (tcp_timer). No I/O: the caller feeds segments in, takes segments out,
//! and calls `on_timer` at `poll_at()`.

mod input;
pub mod output;
mod timer;

use crate::assembler::Assembler;
use crate::cc::{Cc, CcAlgorithm};
use crate::ring::Ring;
use crate::rtt::RttEstimator;
use crate::sack::Scoreboard;
use crate::{Env, Instant, Seq};
use core::time::Duration;
use softnet_wire::tcp::{TcpFlags, TcpRepr};
use std::sync::Arc;

pub use input::{Drop, Verdict};

/// RFC 9293 §3.3.2 states.
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum State {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl State {
    /// Past the handshake (RFC 9293's "synchronized" states).
    pub fn synchronized(self) -> bool {
        !matches!(self, State::Closed | State::Listen | State::SynSent | State::SynReceived)
    }
}

/// Why a connection failed, as the socket layer reports it.
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub enum TcpError {
    /// RST in answer to our SYN (ECONNREFUSED).
    Refused,
    /// RST on a synchronized connection (ECONNRESET).
    Reset,
    /// Retransmissions or keepalives unanswered (ETIMEDOUT).
    TimedOut,
    /// Nothing to read yet / no room to write (EAGAIN).
    WouldBlock,
    /// Writing after shutdown, or on a closed connection (EPIPE).
    NotConnected,
    /// An ICMP host/address unreachable answered our SYN (EHOSTUNREACH).
    HostUnreachable,
}

/// Keepalive timing (RFC 9293 §3.8.4; OpenBSD's tcp_keepidle/intvl/cnt).
#[derive(Debug, Copy, Clone, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

/// A writer waiting for room is woken once 1/`SEND_LOWAT_DIV` of the
/// send buffer is free (`Tcb::send_wakeup_due`).
pub const SEND_LOWAT_DIV: usize = 3;

/// A receiver batching its ACKs (`Tcb::ack_may_wait`) sends one at the
/// latest when 1/`STRETCH_ACK_DIV` of the offered window is unacknowledged.
pub const STRETCH_ACK_DIV: usize = 4;

/// Per-connection settings. The rings' sizes are their capacities: their
/// memory is taken at the first byte and grows with use (`ring.rs`).
#[derive(Debug, Clone)]
pub struct Config {
    pub rx_buffer: usize,
    pub tx_buffer: usize,
    /// The MSS we advertise (from the route's MTU): 1460 for 1500.
    pub mss: u16,
    pub nodelay: bool,
    /// TCP_NOPUSH (the BSDs' TF_NOPUSH): a partial segment waits for more
    /// data, the FIN, or the option cleared, so a response written and
    /// then closed leaves as one segment with the FIN.
    pub nopush: bool,
    pub window_scaling: bool,
    pub timestamps: bool,
    pub sack: bool,
    pub cc: CcAlgorithm,
    pub delayed_ack: Duration,
    pub rto_initial: Duration,
    pub rto_min: Duration,
    pub rto_max: Duration,
    /// Retransmissions of one segment before the connection is dropped
    /// (OpenBSD TCP_MAXRXTSHIFT).
    pub max_retries: u32,
    pub keepalive: Option<Keepalive>,
    /// MSL; TIME_WAIT lasts 2*MSL.
    pub msl: Duration,
    /// How long FIN_WAIT_2 waits for the peer's FIN after close().
    pub fin_wait2_timeout: Duration,
    /// Out-of-order ranges kept (each at least one segment).
    pub max_ooo_ranges: usize,
    /// SACK blocks remembered by the sender.
    pub max_sack_blocks: usize,
    /// RFC 5961 §7: challenge ACKs per second per connection.
    pub challenge_ack_limit: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            // 256 KiB each way (Linux autotunes from 128 KiB receive and
            // 16 KiB send up to MBs): 64 KiB in flight bounded a sender
            // that waits for the scheduler between refills, and a receive
            // window of 64 KiB stalled the peer while the worker was off
            // its CPU. The rings' memory is taken with use (`ring.rs`), so
            // idle connections and short exchanges pay nothing for it.
            rx_buffer: 256 * 1024,
            tx_buffer: 256 * 1024,
            mss: 1460,
            nodelay: false,
            nopush: false,
            window_scaling: true,
            timestamps: true,
            sack: true,
            cc: CcAlgorithm::Cubic,
            delayed_ack: Duration::from_millis(40),
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            max_retries: 12,
            keepalive: None,
            msl: Duration::from_secs(30),
            fin_wait2_timeout: Duration::from_secs(60),
            max_ooo_ranges: 16,
            max_sack_blocks: 16,
            challenge_ack_limit: 10,
        }
    }
}

/// Counters kept per connection; the socket layer adds them to the
/// worker's `netstat -s` counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnStats {
    pub segs_out: u64,
    pub bytes_out: u64,
    pub rexmt_segs: u64,
    pub rexmt_bytes: u64,
    pub rto_expired: u64,
    pub fast_recoveries: u64,
    pub challenge_acks: u64,
    pub challenge_acks_limited: u64,
    pub ooo_dropped: u64,
    pub window_probes: u64,
    pub keepalive_probes: u64,
}

/// Loss recovery in progress (RFC 6675 with SACK, RFC 6582 without).
#[derive(Debug, Copy, Clone)]
struct Recovery {
    /// RecoveryPoint / "recover": SND.MAX when it began.
    point: Seq,
    /// RFC 6675 HighRxt.
    high_rxt: Seq,
    /// NewReno: the window inflation from duplicate ACKs.
    inflation: u32,
    /// NewReno: retransmit the first unacknowledged segment next.
    rxt_first: bool,
}

/// A TCP connection.
pub struct Tcb {
    /// Shared by the connections of one listener or socket profile.
    cfg: Arc<Config>,
    nodelay: bool,
    /// TF_NOPUSH (`set_nopush`).
    nopush: bool,
    state: State,
    local_port: u16,
    remote_port: u16,

    iss: Seq,
    snd_una: Seq,
    snd_nxt: Seq,
    snd_max: Seq,
    snd_wnd: u32,
    snd_wl1: Seq,
    snd_wl2: Seq,
    max_snd_wnd: u32,
    smss: usize,

    irs: Seq,
    rcv_nxt: Seq,
    /// The right edge of the window last advertised (never moved left).
    rcv_adv: Seq,

    snd_wscale: u8,
    rcv_wscale: u8,
    ws_ok: bool,
    ts_ok: bool,
    sack_ok: bool,
    ts_offset: u32,
    ts_recent: u32,
    ts_recent_age: Instant,
    last_ack_sent: Seq,

    tx: Ring,
    rx: Ring,
    ooo: Assembler,
    /// The peer's FIN, when seen ahead of the data before it.
    remote_fin: Option<Seq>,
    /// shutdown(SHUT_WR) or close(): a FIN follows the queued data.
    fin_queued: bool,
    /// close() was called: data arriving now gets a RST.
    user_closed: bool,

    rtt: RttEstimator,
    rtt_timing: Option<(Seq, Instant)>,
    cc: Cc,
    sack: Scoreboard,
    recovery: Option<Recovery>,
    /// RFC 6582 "recover": no new fast recovery until SND.UNA passes it.
    recover: Seq,
    dupacks: u32,

    rexmt_at: Option<Instant>,
    persist_at: Option<Instant>,
    delack_at: Option<Instant>,
    keep_at: Option<Instant>,
    /// TIME_WAIT's 2MSL, or FIN_WAIT_2's timeout after close().
    close_at: Option<Instant>,
    rxt_shift: u32,
    persist_shift: u32,
    keep_probes: u32,
    last_rx: Instant,

    ack_now: bool,
    /// The window grown since our SYN,ACK (whose window field is not
    /// scaled, RFC 7323 §2.2: 64 KiB of a 256 KiB buffer) waits for the
    /// next segment that goes anyway (the response, or the ACK of the
    /// peer's first data, delayed or not) instead of a window update of
    /// its own: the peer holds the SYN,ACK's window, room to send, and
    /// OpenBSD's tcp_input sends nothing for the handshake's last ACK.
    /// Set when a passive open completes, cleared by any segment sent.
    wnd_update_held: bool,
    /// In-order segments received since the last ACK we sent.
    unacked_segs: u32,
    /// A RST to send next, ports included (a LISTEN TCB answers any peer).
    /// Boxed: rare, and an idle TCB should stay small.
    pending_rst: Option<Box<TcpRepr>>,
    force_probe: bool,
    keep_probe: bool,
    challenge_window: Instant,
    challenge_count: u32,

    error: Option<TcpError>,
    stats: ConnStats,
}

impl Tcb {
    fn new(cfg: Arc<Config>, env: &mut dyn Env, local_port: u16, remote_port: u16, state: State) -> Tcb {
        let now = env.now();
        let rtt = RttEstimator::new(cfg.rto_initial, cfg.rto_min, cfg.rto_max);
        let smss = 536;
        Tcb {
            state,
            local_port,
            remote_port,
            iss: Seq(0),
            snd_una: Seq(0),
            snd_nxt: Seq(0),
            snd_max: Seq(0),
            snd_wnd: 0,
            snd_wl1: Seq(0),
            snd_wl2: Seq(0),
            max_snd_wnd: 0,
            smss,
            irs: Seq(0),
            rcv_nxt: Seq(0),
            rcv_adv: Seq(0),
            snd_wscale: 0,
            rcv_wscale: 0,
            ws_ok: false,
            ts_ok: false,
            sack_ok: false,
            ts_offset: env.random_u32(),
            ts_recent: 0,
            ts_recent_age: now,
            last_ack_sent: Seq(0),
            tx: Ring::new(cfg.tx_buffer),
            rx: Ring::new(cfg.rx_buffer),
            ooo: Assembler::new(cfg.max_ooo_ranges),
            remote_fin: None,
            fin_queued: false,
            user_closed: false,
            rtt,
            rtt_timing: None,
            cc: cfg.cc.build(smss as u32),
            sack: Scoreboard::new(cfg.max_sack_blocks),
            recovery: None,
            recover: Seq(0),
            dupacks: 0,
            rexmt_at: None,
            persist_at: None,
            delack_at: None,
            keep_at: None,
            close_at: None,
            rxt_shift: 0,
            persist_shift: 0,
            keep_probes: 0,
            last_rx: now,
            ack_now: false,
            wnd_update_held: false,
            unacked_segs: 0,
            pending_rst: None,
            force_probe: false,
            keep_probe: false,
            challenge_window: now,
            challenge_count: 0,
            error: None,
            stats: ConnStats::default(),
            nodelay: cfg.nodelay,
            nopush: cfg.nopush,
            cfg,
        }
    }

    /// Active open (RFC 9293 §3.10.1): SYN_SENT; the SYN goes out at the
    /// next `output`.
    pub fn connect(cfg: impl Into<Arc<Config>>, env: &mut dyn Env, local_port: u16, remote_port: u16) -> Tcb {
        let mut t = Tcb::new(cfg.into(), env, local_port, remote_port, State::SynSent);
        t.set_iss(env.isn(local_port, remote_port));
        t.rcv_wscale = t.wanted_wscale();
        t
    }

    /// Passive open: LISTEN. A SYN makes this TCB SYN_RECEIVED; the socket
    /// layer keeps a fresh LISTEN TCB per listening socket and hands each
    /// SYN to a new one (its SYN cache in front).
    pub fn listen(cfg: impl Into<Arc<Config>>, env: &mut dyn Env, local_port: u16) -> Tcb {
        Tcb::new(cfg.into(), env, local_port, 0, State::Listen)
    }

    fn set_iss(&mut self, iss: Seq) {
        self.iss = iss;
        self.snd_una = iss;
        self.snd_nxt = iss;
        self.snd_max = iss;
        self.recover = iss;
    }

    fn wanted_wscale(&self) -> u8 {
        if !self.cfg.window_scaling {
            return 0;
        }
        let mut s = 0;
        while s < softnet_wire::tcp::MAX_WINDOW_SCALE && (self.cfg.rx_buffer >> s) > 0xffff {
            s += 1;
        }
        s
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn local_port(&self) -> u16 {
        self.local_port
    }
    pub fn remote_port(&self) -> u16 {
        self.remote_port
    }
    pub fn error(&self) -> Option<TcpError> {
        self.error
    }
    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }
    /// The effective send MSS (payload bytes per segment).
    pub fn mss(&self) -> usize {
        self.smss
    }
    pub fn cwnd(&self) -> u32 {
        self.cc.cwnd()
    }
    /// Whether more than one MSS of new data could go out now (queued past
    /// SND.NXT and inside both windows, outside recovery): what makes a
    /// segmentation-offload buffer worth taking for [`Tcb::output_tso`].
    pub fn tso_due(&self) -> bool {
        if self.recovery.is_some() || !self.state.synchronized() {
            return false;
        }
        let off = self.snd_nxt.since(self.data_start());
        let avail = self.tx.len().saturating_sub(off);
        let outstanding = self.snd_nxt.since(self.snd_una);
        let wnd = (self.snd_wnd as usize).min(self.cc.cwnd() as usize);
        avail > self.smss && wnd.saturating_sub(outstanding) > self.smss
    }
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }
    /// Bytes queued to send, unacknowledged included (netstat's Send-Q).
    pub fn send_queue(&self) -> usize {
        self.tx.len()
    }
    /// Bytes received in order and not yet read (Recv-Q).
    pub fn recv_queue(&self) -> usize {
        self.rx.len()
    }
    pub fn send_capacity(&self) -> usize {
        self.tx.free()
    }
    pub fn set_nodelay(&mut self, on: bool) {
        self.nodelay = on;
    }
    /// TCP_NODELAY as set.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }
    /// TCP_NOPUSH as set.
    pub fn nopush(&self) -> bool {
        self.nopush
    }
    /// The settings the connection was made with (its listener's, or the
    /// socket's), as `set_keepalive` left them.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// SO_KEEPALIVE with its timing (tcp_ctloutput / tcp_setpersist's
    /// neighbour in OpenBSD's tcp_usrreq.c; TCP_KEEPIDLE, TCP_KEEPINTVL
    /// and TCP_KEEPCNT on Linux): on a synchronized connection the idle
    /// timer starts from the last segment received; `None` stops it. The
    /// connection's settings are shared with its listener's other
    /// connections, so they are copied once here, not at each segment.
    pub fn set_keepalive(&mut self, k: Option<Keepalive>, now: Instant) {
        if self.cfg.keepalive != k {
            self.cfg = Arc::new(Config { keepalive: k, ..(*self.cfg).clone() });
        }
        self.keep_probes = 0;
        self.keep_probe = false;
        self.keep_at = match k {
            Some(k) if matches!(self.state, State::Established | State::CloseWait | State::FinWait2) => {
                Some((self.last_rx + k.idle).max(now))
            }
            _ => None,
        };
    }
    /// TCP_NOPUSH (tcp_ctloutput's TF_NOPUSH): while on, data less than a
    /// full segment is held until more is written or the FIN is queued
    /// (close, shutdown), which then leaves in the same segment; the
    /// persist timer sends it in the end if neither comes. Clearing it
    /// lets the held data go at the next `output` (the BSDs call
    /// tcp_output there; the caller does).
    pub fn set_nopush(&mut self, on: bool) {
        self.nopush = on;
    }
    /// An ACK is owed for in-order data: two segments or more arrived
    /// since the last ACK (RFC 5681 §4.2's every second segment).
    fn ack_owed(&self) -> bool {
        self.unacked_segs >= 2
    }

    /// Whether the ACK owed may wait for the end of the caller's input
    /// batch, so that one ACK answers the batch's segments (what LRO/GRO
    /// receivers send): nothing asks for an ACK at once (a duplicate, a
    /// hole filled, a FIN, the delayed-ACK timer), no data is queued out
    /// of order, and the data not yet acknowledged is less than a
    /// `STRETCH_ACK_DIV`th of the window the peer was last offered, so
    /// the sender keeps most of its window open while the batch is read
    /// (a stretch ACK that covered the whole window stalled a Linux
    /// sender for a batch's time: RFC 2525 §2.13, BENCHMARKS §4 session 9).
    /// Below two segments nothing is owed yet and the answer is true.
    pub fn ack_may_wait(&self) -> bool {
        if self.ack_now || !self.ooo.is_empty() {
            return false;
        }
        if !self.ack_owed() {
            return true;
        }
        let window = self.rcv_adv.since(self.last_ack_sent);
        self.rcv_nxt.since(self.last_ack_sent) < window / STRETCH_ACK_DIV
    }

    /// Data above a hole is queued (out of order): the receiver owes the
    /// peer duplicate ACKs now (RFC 5681 §4.2), not at the end of a batch.
    pub fn reassembling(&self) -> bool {
        !self.ooo.is_empty()
    }
    /// The connection is over and its TCB can be freed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
    /// The peer's FIN has been received and everything before it read.
    pub fn at_eof(&self) -> bool {
        self.rx.is_empty() && self.fin_received()
    }
    fn fin_received(&self) -> bool {
        matches!(self.state, State::CloseWait | State::Closing | State::LastAck | State::TimeWait)
            || (self.state == State::Closed && self.error.is_none())
    }

    /// Queues bytes to send; returns how many fit.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, TcpError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait if !self.fin_queued => {}
            _ => return Err(TcpError::NotConnected),
        }
        if data.is_empty() {
            return Ok(0);
        }
        match self.tx.enqueue(data) {
            0 => Err(TcpError::WouldBlock),
            n => Ok(n),
        }
    }

    /// Whether a writer waiting for room should be woken (Linux's
    /// sk_stream_is_writeable, BSD's sowriteable with a low-water mark):
    /// a third of the send buffer free, or `send` would fail now. A writer
    /// woken for every ACK wrote a couple of segments' worth and slept
    /// again, two scheduler hand-offs per refill; woken at a third it
    /// refills a third of the buffer at once.
    pub fn send_wakeup_due(&self) -> bool {
        let sending = matches!(self.state, State::SynSent | State::SynReceived | State::Established | State::CloseWait);
        self.error.is_some()
            || !sending
            || self.fin_queued
            || self.tx.free() >= (self.tx.capacity() / SEND_LOWAT_DIV).max(1)
    }

    /// Reads received bytes. `Ok(0)` is end of stream.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, TcpError> {
        let n = self.rx.dequeue(buf);
        if n > 0 {
            return Ok(n);
        }
        if self.fin_received() {
            return Ok(0);
        }
        Err(self.error.unwrap_or(TcpError::WouldBlock))
    }

    /// Path MTU discovery lowered the MSS (RFC 1191 §6.5; OpenBSD
    /// tcp_mtudisc): `mss` is the path MTU less the IP and TCP headers.
    /// What is in flight goes again in segments that fit.
    pub fn lower_mss(&mut self, mss: u16) {
        let ts_room = if self.ts_ok { 12 } else { 0 };
        let new = usize::from(mss).saturating_sub(ts_room).max(64);
        if new < self.smss {
            self.smss = new;
            self.cc.set_mss(new as u32);
            self.snd_nxt = self.snd_una;
            self.rtt_timing = None;
        }
    }

    /// shutdown(SHUT_WR): a FIN after the queued data (§3.10.4).
    pub fn shutdown(&mut self) {
        match self.state {
            State::Listen | State::SynSent | State::Closed => self.state = State::Closed,
            State::SynReceived | State::Established => {
                self.fin_queued = true;
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.state = State::LastAck;
            }
            _ => {}
        }
    }

    /// close(): shutdown, and the socket is gone: unread data (now or
    /// later) resets the connection as BSD does (RFC 2525 §2.17).
    pub fn close(&mut self, env: &mut dyn Env) {
        if !self.rx.is_empty() {
            self.abort();
            return;
        }
        self.user_closed = true;
        self.shutdown();
        if self.state == State::FinWait2 && self.close_at.is_none() {
            self.close_at = Some(env.now() + self.cfg.fin_wait2_timeout);
        }
    }

    /// abort(): RST if synchronized, then CLOSED (§3.10.5).
    pub fn abort(&mut self) {
        if matches!(self.state, State::SynReceived) || self.state.synchronized() && self.state != State::TimeWait {
            // §3.10.5: <SEQ=SND.NXT><CTL=RST>, as if answering an ACK of it.
            let me = TcpRepr {
                src_port: self.remote_port,
                dst_port: self.local_port,
                seq: 0,
                ack: self.snd_nxt.max(self.snd_una).0,
                flags: TcpFlags::ACK,
                window: 0,
                max_seg_size: None,
                window_scale: None,
                sack_permitted: false,
                sack_ranges: [None; 3],
                timestamp: None,
                payload_len: 0,
            };
            self.pending_rst = crate::reset::reset_reply(&me).map(Box::new);
        }
        self.enter_closed(None);
    }

    /// Ends TIME_WAIT before its 2MSL, sending nothing (FreeBSD's
    /// tcp_twclose as tcp_tw_2msl_scan calls it to reuse the oldest
    /// TIME_WAIT when no room is left for a new connection): the socket
    /// layer recycles its oldest at the connection limit. False, and
    /// nothing changed, in any other state.
    pub fn end_time_wait(&mut self) -> bool {
        if self.state != State::TimeWait {
            return false;
        }
        self.enter_closed(None);
        true
    }

    /// Whether `seq`, quoted by an ICMP error, is of a segment we sent and
    /// that is not acknowledged yet (tcp_ctlinput's SND.UNA <= seq <
    /// SND.MAX; RFC 5927 §4.1: a blind attacker must guess it).
    pub fn quotes_unacked(&self, seq: Seq) -> bool {
        seq.ge(self.snd_una) && seq.lt(self.snd_max)
    }

    /// An ICMP destination unreachable about this connection (tcp_notify,
    /// RFC 1122 §4.2.3.9, RFC 5461 §4): while our SYN is unanswered it
    /// fails the connection with `err` (ECONNREFUSED for a port or
    /// protocol unreachable, EHOSTUNREACH for an address); a connection
    /// past SYN_SENT ignores it, as a soft error. True if it closed.
    pub fn icmp_unreachable(&mut self, err: TcpError) -> bool {
        if self.state != State::SynSent {
            return false;
        }
        self.enter_closed(Some(err));
        true
    }

    fn enter_closed(&mut self, err: Option<TcpError>) {
        self.state = State::Closed;
        if err.is_some() {
            self.error = err;
        }
        self.rexmt_at = None;
        self.persist_at = None;
        self.delack_at = None;
        self.keep_at = None;
        self.close_at = None;
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.rexmt_at = None;
        self.persist_at = None;
        self.keep_at = None;
        self.close_at = Some(now + self.cfg.msl * 2);
        // Nothing more is sent, nor received past the FIN: the send ring
        // (all acknowledged) and a read receive ring go back now, so
        // TIME_WAIT costs only the TCB.
        self.tx.release();
        self.rx.release();
    }

    /// The next time `on_timer` has work; the socket layer files the TCB on
    /// its timer wheel at this instant. Asked after every segment: the
    /// five timers compared in registers (an array of them built on the
    /// stack and read back in 16-byte loads stalled on store forwarding,
    /// 3-4 % of a receiving server's samples).
    #[inline]
    pub fn poll_at(&self) -> Option<Instant> {
        earlier(earlier(earlier(self.rexmt_at, self.persist_at), earlier(self.delack_at, self.keep_at)), self.close_at)
    }

    /// The TSval clock (RFC 7323 §5.4): 1 ms ticks plus a random offset.
    fn ts_now(&self, now: Instant) -> u32 {
        (now.as_millis() as u32).wrapping_add(self.ts_offset)
    }

    /// The FIN's sequence number while one is queued and not yet
    /// acknowledged (past FIN_WAIT_1 / CLOSING / LAST_ACK it is).
    fn fin_seq(&self) -> Option<Seq> {
        let unacked = matches!(self.state, State::FinWait1 | State::Closing | State::LastAck);
        (self.fin_queued && unacked).then(|| self.data_start() + self.tx.len())
    }

    /// The sequence number of the first byte in the send ring.
    fn data_start(&self) -> Seq {
        if self.snd_una == self.iss {
            self.iss + 1
        } else {
            self.snd_una
        }
    }
}

/// The earlier of two optional deadlines (`None`: not set).
#[inline]
fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (Some(x), None) => Some(x),
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `poll_at`'s pairwise minimum over five optional deadlines is the
    /// minimum of those set, for every pattern of set and unset timers
    /// and every order of their values.
    #[test]
    fn earlier_chain_is_the_minimum_of_the_timers_set() {
        let vals = [Instant::from_nanos(5), Instant::from_nanos(1), Instant::from_nanos(9), Instant::ZERO];
        for mask in 0u32..1 << 5 {
            for rot in 0..5 {
                let t: Vec<Option<Instant>> =
                    (0..5).map(|i| (mask >> i & 1 == 1).then(|| vals[(i + rot) % vals.len()])).collect();
                let want = t.iter().flatten().min().copied();
                let got = earlier(earlier(earlier(t[0], t[1]), earlier(t[2], t[3])), t[4]);
                assert_eq!(got, want, "{t:?}");
            }
        }
    }

    /// Issue 13 wants an idle connection, buffers aside, under 1 KB: the
    /// TCB itself plus its bounded out-of-order and SACK tables.
    #[test]
    fn idle_connection_without_buffers_fits_in_a_kilobyte() {
        let cfg = Config::default();
        let tables = (cfg.max_ooo_ranges + cfg.max_sack_blocks) * core::mem::size_of::<(Seq, Seq)>()
            + core::mem::size_of::<crate::cc::Cubic>();
        let tcb = core::mem::size_of::<Tcb>();
        eprintln!("Tcb {tcb} bytes, OOO and SACK tables {tables} bytes");
        assert!(tcb + tables <= 1024, "{tcb} + {tables}");
    }
}
