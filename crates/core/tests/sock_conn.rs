//! Connections accepted from a listener, their options (inherited from
//! the listener as sonewconn and syn_cache_get copy them) and close
//! (SO_LINGER), and a short connection's costs in frames and wake-ups (issue 13's
//! connections per second): a response written and then closed under
//! TCP_NOPUSH leaves with its FIN in one frame, and a worker wakes a
//! listener's accept() once a round, after every handshake of the round.
//! Two stacks on one virtual wire, one worker each, driven round by round
//! from the test's thread (`common::two_stacks`: A 10.0.0.1, B 10.0.0.2).

use crate::common::{step_workers, two_stacks_with, TwoStacks};
use softnet_core::link::LinkQueue;
use softnet_core::packet::{PacketBuf, PacketPool};
use softnet_core::sock::api::{TcpListener, TcpStream};
use softnet_core::stack::Stack;
use softnet_core::time::ManualClock;
use softnet_core::worker::Worker;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts the frames a side puts on the wire.
struct Counted {
    inner: Box<dyn LinkQueue>,
    sent: Arc<AtomicU64>,
}

impl LinkQueue for Counted {
    fn recv(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.inner.recv(pool, out, max)
    }
    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        self.sent.fetch_add(frames.len() as u64, Ordering::Relaxed);
        self.inner.send(pool, frames)
    }
}

struct Pair {
    clock: Arc<ManualClock>,
    a: Arc<Stack>,
    b: Arc<Stack>,
    wa: Worker,
    wb: Worker,
    /// Frames B sent.
    b_sent: Arc<AtomicU64>,
}

impl Pair {
    fn new() -> Pair {
        let b_sent = Arc::new(AtomicU64::new(0));
        let TwoStacks { clock, a, b, wa, wb } = two_stacks_with(1024, 1024, |q, side| match side {
            1 => q
                .into_iter()
                .map(|inner| Box::new(Counted { inner, sent: b_sent.clone() }) as Box<dyn LinkQueue>)
                .collect(),
            _ => q,
        });
        Pair { clock, a, b, wa, wb, b_sent }
    }

    fn step(&mut self) {
        step_workers(&self.clock, [&self.a, &self.b], [&mut self.wa, &mut self.wb], Duration::from_micros(100));
    }

    /// A connection from A to `l`, accepted on B (non-blocking both).
    fn connect(&mut self, l: &TcpListener) -> (TcpStream, TcpStream) {
        let mut c = TcpStream::start_connect(&self.a, l.local_addr().unwrap()).unwrap();
        c.set_nonblocking(true).unwrap();
        for _ in 0..100 {
            self.step();
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(true).unwrap();
                    return (c, s);
                }
                Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock),
            }
        }
        panic!("no connection");
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// B answers with 1 KB and closes, the worker running between the write
/// and the close (as a worker woken by the write does): the frames B sent
/// for it, and A's copy of the answer.
fn answer_and_close(p: &mut Pair, l: &TcpListener, nopush: bool) -> (u64, Vec<u8>) {
    let (mut c, s) = p.connect(l);
    for _ in 0..5 {
        p.step();
    }
    s.set_nopush(nopush).unwrap();
    let before = p.b_sent.load(Ordering::Relaxed);
    (&s).write_all(&[b'x'; 1024]).unwrap();
    p.step();
    drop(s);
    p.step();
    let sent = p.b_sent.load(Ordering::Relaxed) - before;
    let mut got = Vec::new();
    for _ in 0..100 {
        p.step();
        let mut buf = [0u8; 4096];
        match c.read(&mut buf) {
            Ok(0) => return (sent, got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock),
        }
    }
    panic!("no end of stream");
}

#[test]
fn nopush_sends_the_answer_and_the_fin_in_one_frame() {
    let mut p = Pair::new();
    let mut l = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    l.set_nonblocking(true).unwrap();
    let (push, got) = answer_and_close(&mut p, &l, false);
    assert_eq!((push, got.len()), (2, 1024), "the answer, then the FIN alone");
    let (nopush, got) = answer_and_close(&mut p, &l, true);
    assert_eq!((nopush, got.len()), (1, 1024), "the answer with the FIN");
    assert!(got.iter().all(|&b| b == b'x'));
}

/// A worker wakes the task waiting in accept once, at the end of the
/// round, with all of the round's handshakes queued (not at the first
/// of them, in the middle of the round, once per connection).
#[cfg(feature = "tokio")]
#[test]
fn accept_is_woken_once_a_round_with_the_rounds_handshakes() {
    use std::sync::Mutex;
    use std::task::{Context, Wake, Waker};

    /// The listener's accept count at each wake-up.
    struct Seen {
        stack: Arc<Stack>,
        wakes: Mutex<Vec<u64>>,
    }
    impl Wake for Seen {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref()
        }
        fn wake_by_ref(self: &Arc<Self>) {
            let n = self.stack.socks.stats.tcp_accepts.load(Ordering::Relaxed);
            self.wakes.lock().unwrap().push(n);
        }
    }

    let mut p = Pair::new();
    let l = softnet_core::sock::async_api::TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    let seen = Arc::new(Seen { stack: p.b.clone(), wakes: Mutex::new(Vec::new()) });
    let waker = Waker::from(seen.clone());
    let mut cx = Context::from_waker(&waker);
    // A first connection resolves ARP both ways.
    let first = TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap();
    for _ in 0..20 {
        p.step();
    }
    assert!(l.poll_accept(&mut cx).is_ready());
    seen.wakes.lock().unwrap().clear();
    assert!(l.poll_accept(&mut cx).is_pending());
    // Eight more: their SYNs leave in one round of A's, their handshakes
    // complete in one round of B's.
    let more: Vec<TcpStream> = (0..8).map(|_| TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap()).collect();
    for _ in 0..5 {
        p.step();
    }
    assert_eq!(p.b.socks.stats.tcp_accepts.load(Ordering::Relaxed), 9);
    assert_eq!(*seen.wakes.lock().unwrap(), [9], "one wake-up, after the round's eight");
    for _ in 0..8 {
        assert!(l.poll_accept(&mut cx).is_ready());
    }
    drop((first, more));
}

/// A's connection to B's listener `l` and the stream B accepted, after
/// the handshake settled (ARP resolved, nothing in flight).
fn settled(p: &mut Pair, l: &TcpListener) -> (TcpStream, TcpStream) {
    let (c, s) = p.connect(l);
    for _ in 0..5 {
        p.step();
    }
    (c, s)
}

/// The frames B sends for two small writes, the second while the first
/// is unacknowledged (A delays its ACK): Nagle holds the second unless
/// TCP_NODELAY.
fn small_writes(p: &mut Pair, s: &TcpStream) -> u64 {
    let before = p.b_sent.load(Ordering::Relaxed);
    (&*s).write_all(&[b'a'; 100]).unwrap();
    p.step();
    (&*s).write_all(&[b'b'; 100]).unwrap();
    p.step();
    p.b_sent.load(Ordering::Relaxed) - before
}

/// sonewconn and syn_cache_get: a connection accepted from a listener
/// carries the listener's options (TF_NODELAY, TF_NOPUSH, SO_KEEPALIVE,
/// the buffers' sizes, SO_LINGER, the timeouts), as they were when its
/// handshake completed; and they act (Nagle off, keepalive probes).
#[test]
fn accepted_connections_inherit_the_listeners_options() {
    use softnet_tcp::Keepalive;
    let mut p = Pair::new();
    let mut l = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    l.set_nonblocking(true).unwrap();
    // The defaults first: Nagle holds the second small write.
    let (_c0, s0) = settled(&mut p, &l);
    assert!(!s0.nodelay().unwrap() && !s0.nopush().unwrap());
    assert_eq!((s0.keepalive().unwrap(), s0.linger().unwrap(), s0.read_timeout().unwrap()), (None, None, None));
    assert_eq!(small_writes(&mut p, &s0), 1, "Nagle");

    let ka = Keepalive { idle: Duration::from_secs(30), interval: Duration::from_secs(5), count: 2 };
    l.set_nodelay(true).unwrap();
    l.set_nopush(true).unwrap();
    l.set_keepalive(Some(ka)).unwrap();
    l.set_recv_buffer_size(64 * 1024).unwrap();
    l.set_send_buffer_size(32 * 1024).unwrap();
    l.set_linger(Some(Duration::ZERO)).unwrap();
    l.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    l.set_write_timeout(Some(Duration::from_secs(4))).unwrap();
    let (mut c1, s1) = settled(&mut p, &l);
    assert!(s1.nodelay().unwrap() && s1.nopush().unwrap());
    assert_eq!(s1.keepalive().unwrap(), Some(ka));
    assert_eq!((s1.recv_buffer_size().unwrap(), s1.send_buffer_size().unwrap()), (64 * 1024, 32 * 1024));
    assert_eq!(s1.linger().unwrap(), Some(Duration::ZERO));
    assert_eq!(s1.read_timeout().unwrap(), Some(Duration::from_secs(3)));
    assert_eq!(s1.write_timeout().unwrap(), Some(Duration::from_secs(4)));
    // The stream accepted before keeps what it had.
    assert_eq!((s0.nodelay().unwrap(), s0.keepalive().unwrap()), (false, None));

    // TF_NODELAY inherited: both small writes leave at once (NOPUSH
    // off on the stream itself, which it may change).
    s1.set_nopush(false).unwrap();
    assert_eq!(small_writes(&mut p, &s1), 2, "no Nagle");
    let mut buf = [0u8; 512];
    for _ in 0..5 {
        p.step();
    }
    assert_eq!(c1.read(&mut buf).unwrap(), 200);

    // SO_KEEPALIVE inherited: after 30 s of silence B probes A (A
    // answers, so the connection stays).
    assert_eq!(p.b.socks.conn_stats().keepalive_probes, 0);
    p.clock.advance(Duration::from_secs(31));
    for _ in 0..5 {
        p.step();
    }
    assert_eq!(p.b.socks.conn_stats().keepalive_probes, 1, "s1's probe, none from s0");
    assert_eq!(s1.state(), softnet_tcp::State::Established);

    // SO_LINGER of zero inherited: close resets the connection.
    drop(s1);
    for _ in 0..5 {
        p.step();
    }
    assert_eq!(c1.read(&mut buf).unwrap_err().kind(), ErrorKind::ConnectionReset);
    drop(s0);
}

/// SO_RCVBUF / SO_SNDBUF on a listener as sbreserve takes them: 0 or
/// too large refused (ENOBUFS) and nothing changed; too small raised.
#[test]
fn bad_socket_buffer_sizes_are_refused_and_change_nothing() {
    let p = Pair::new();
    let l = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    let before = l.recv_buffer_size().unwrap();
    assert!(l.set_recv_buffer_size(0).is_err());
    assert!(l.set_send_buffer_size(usize::MAX).is_err());
    assert_eq!(l.recv_buffer_size().unwrap(), before);
    l.set_recv_buffer_size(1).unwrap();
    assert_eq!(l.recv_buffer_size().unwrap(), softnet_core::sock::opts::MIN_SOCKBUF);
}

/// SO_LINGER with a time: dropping a blocking stream waits until the
/// peer acknowledged the FIN (the worker running meanwhile), not the
/// whole time; a non-blocking stream does not wait.
#[test]
fn a_lingering_close_waits_for_the_fin_to_be_acknowledged() {
    use std::sync::atomic::AtomicBool;
    let mut p = Pair::new();
    let mut l = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    l.set_nonblocking(true).unwrap();
    l.set_linger(Some(Duration::from_secs(20))).unwrap();
    let (_c, mut s) = settled(&mut p, &l);
    s.set_nonblocking(false).unwrap();
    (&s).write_all(&[b'x'; 3000]).unwrap();
    let done = AtomicBool::new(false);
    let t0 = std::time::Instant::now();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            drop(s);
            done.store(true, Ordering::Release);
        });
        for _ in 0..200_000 {
            if done.load(Ordering::Acquire) {
                break;
            }
            p.step();
            std::thread::yield_now();
        }
    });
    assert!(done.load(Ordering::Acquire));
    assert!(t0.elapsed() < Duration::from_secs(15), "returned when the FIN was acknowledged");
    // Everything B sent was acknowledged: nothing left in its table but
    // FIN_WAIT_2 (A has not closed).
    let st: Vec<_> = p.b.socks.tcp_snapshot().into_iter().filter(|i| i.remote.is_some()).map(|i| i.state).collect();
    assert_eq!(st, [softnet_tcp::State::FinWait2]);
    // Non-blocking: no wait, although no worker runs.
    let (_c2, s2) = settled(&mut p, &l);
    let t0 = std::time::Instant::now();
    drop(s2);
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// accept() takes the connections a round completed from the listen
/// queue in one batch (`acceptq.rs`); those handed over still count
/// against the backlog until accept() returns them (so_qlen), and a
/// listener closed with some handed over resets them.
#[test]
fn accept_takes_a_rounds_connections_in_one_batch_within_the_backlog() {
    let mut p = Pair::new();
    let mut l = TcpListener::bind_with_backlog(&p.b, sa("10.0.0.2:80"), 4).unwrap();
    l.set_nonblocking(true).unwrap();
    let accepts = |p: &Pair| p.b.socks.stats.tcp_accepts.load(Ordering::Relaxed);
    let drops = |p: &Pair| p.b.socks.stats.tcp_listendrop.load(Ordering::Relaxed);
    // A first connection resolves ARP both ways.
    let (_c0, _s0) = p.connect(&l);
    let mut clients: Vec<TcpStream> =
        (0..4).map(|_| TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap()).collect();
    for _ in 0..5 {
        p.step();
    }
    assert_eq!((accepts(&p), l.queued()), (5, 4));
    let (s1, _) = l.accept().unwrap();
    assert_eq!(l.queued(), 3, "three handed over, not yet accepted");
    // With them the backlog has room for one more: of two new
    // handshakes, the second is reset when it completes (syn_cache_get's
    // resetandabort), counted as a listen drop.
    clients.extend((0..2).map(|_| TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap()));
    for _ in 0..5 {
        p.step();
    }
    assert_eq!((accepts(&p), drops(&p)), (6, 1));
    let resets = |clients: &mut Vec<TcpStream>| {
        let mut buf = [0u8; 16];
        let mut n = 0;
        for c in clients.iter_mut() {
            c.set_nonblocking(true).unwrap();
            if matches!(c.read(&mut buf), Err(e) if e.kind() == ErrorKind::ConnectionReset) {
                n += 1;
            }
        }
        n
    };
    assert_eq!(resets(&mut clients), 1);
    let mut streams = vec![s1];
    for _ in 0..4 {
        streams.push(l.accept().unwrap().0);
    }
    assert_eq!(l.accept().err().map(|e| e.kind()), Some(ErrorKind::WouldBlock));
    assert_eq!(l.queued(), 0);
    // Two more in one round: one accepted, one handed over with it.
    clients.extend((0..2).map(|_| TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap()));
    for _ in 0..5 {
        p.step();
    }
    assert_eq!(accepts(&p), 8);
    streams.push(l.accept().unwrap().0);
    assert_eq!(l.queued(), 1);
    // Closed with one handed over and not accepted: it is reset.
    drop(l);
    for _ in 0..5 {
        p.step();
    }
    assert_eq!(resets(&mut clients), 2);
    drop(streams);
}
