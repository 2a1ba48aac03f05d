//! The async socket API (feature `tokio`) on tokio's runtime: two softnet
//! stacks on one virtual wire, their workers driven by a thread of their
//! own on a manual clock (50 µs a round), the tasks on a current-thread
//! tokio runtime in the test's thread. Every await that cannot finish at
//! once must be woken by a worker (a lost wake-up hangs the task and the
//! test's timeout fails it).
//! (`common::two_stacks`: A 10.0.0.1, B 10.0.0.2.)

mod common;

use common::{two_stacks, TwoStacks};
use softnet_core::sock::async_api::{TcpListener, TcpStream, UdpSocket};
use softnet_core::stack::Stack;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// Two stacks and the thread that runs their workers until dropped.
struct Pair {
    a: Arc<Stack>,
    b: Arc<Stack>,
    stop: Arc<AtomicBool>,
    driver: Option<std::thread::JoinHandle<()>>,
}

impl Pair {
    fn new() -> Pair {
        let TwoStacks { clock, a, b, wa, wb } = two_stacks(2048, 4096);
        let stop = Arc::new(AtomicBool::new(false));
        let (sa, sb, st) = (a.clone(), b.clone(), stop.clone());
        let driver = std::thread::spawn(move || {
            let (mut wa, mut wb) = (wa, wb);
            let mut round = 0u64;
            while !st.load(Ordering::Relaxed) {
                wa.poll();
                wb.poll();
                clock.advance(Duration::from_micros(50));
                round += 1;
                if round.is_multiple_of(2000) {
                    sa.tick();
                    sb.tick();
                }
                std::thread::yield_now();
            }
        });
        Pair { a, b, stop, driver: Some(driver) }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(d) = self.driver.take() {
            let _ = d.join();
        }
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

const LIMIT: Duration = Duration::from_secs(120);

/// A writes 1 MiB and shuts its side down; B reads it to the end
/// (AsyncRead), checks every byte and answers with the count; A reads
/// the answer to the end. The accept and B's first read wait before A
/// has connected or sent anything.
#[tokio::test(flavor = "current_thread")]
async fn tcp_transfer_and_reply_on_tokio() {
    let p = Pair::new();
    let len = 1 << 20;
    let l = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    let server = tokio::spawn(async move {
        let (mut s, peer) = l.accept().await.unwrap();
        assert_eq!(s.peer_addr().unwrap(), peer);
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), len);
        for (i, b) in got.iter().enumerate() {
            assert_eq!(*b, pattern(i), "byte {i} differs");
        }
        s.write_all(format!("got {}", got.len()).as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let client = async {
        let mut c = TcpStream::connect(&p.a, sa("10.0.0.2:80")).await.unwrap();
        assert_eq!(c.peer_addr().unwrap(), sa("10.0.0.2:80"));
        let data: Vec<u8> = (0..len).map(pattern).collect();
        c.write_all(&data).await.unwrap();
        c.shutdown().await.unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).await.unwrap();
        reply
    };
    let reply = timeout(LIMIT, client).await.expect("client timed out");
    assert_eq!(reply, format!("got {len}"));
    timeout(LIMIT, server).await.expect("server timed out").unwrap();
}

/// An async listener's options reach the streams it accepts (sonewconn):
/// with a zero SO_LINGER, dropping the accepted stream resets the
/// connection, and the drop does not wait.
#[tokio::test(flavor = "current_thread")]
async fn an_accepted_stream_inherits_the_listeners_linger() {
    let p = Pair::new();
    let l = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    l.set_linger(Some(Duration::ZERO)).unwrap();
    l.set_nodelay(true).unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        drop(s);
    });
    let client = async {
        let mut c = TcpStream::connect(&p.a, sa("10.0.0.2:80")).await.unwrap();
        let mut buf = [0u8; 16];
        c.read(&mut buf).await
    };
    let r = timeout(LIMIT, client).await.expect("client timed out");
    assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    timeout(LIMIT, server).await.expect("server timed out").unwrap();
}

/// Ten connections served concurrently by tasks of one listener, each
/// echoing what it reads (tokio::io::copy over split halves).
#[tokio::test(flavor = "current_thread")]
async fn tcp_echo_of_ten_concurrent_connections() {
    let p = Pair::new();
    let l = TcpListener::bind(&p.b, sa("10.0.0.2:7")).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(s);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    let mut clients = Vec::new();
    for k in 0..10usize {
        let a = p.a.clone();
        clients.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(&a, sa("10.0.0.2:7")).await.unwrap();
            let data: Vec<u8> = (0..100_000).map(|i| pattern(i + k)).collect();
            let (mut r, mut w) = tokio::io::split(&mut c);
            let send = async {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut back = Vec::new();
            let recv = r.read_to_end(&mut back);
            let (_, n) = tokio::join!(send, recv);
            n.unwrap();
            assert!(back == data, "connection {k}: echo differs ({} bytes back)", back.len());
        }));
    }
    for c in clients {
        timeout(LIMIT, c).await.expect("echo timed out").unwrap();
    }
}

/// A connection to a port nobody listens on is refused (the RST wakes
/// the connecting task).
#[tokio::test(flavor = "current_thread")]
async fn tcp_connect_refused() {
    let p = Pair::new();
    let e = timeout(LIMIT, TcpStream::connect(&p.a, sa("10.0.0.2:81")))
        .await
        .expect("connect timed out")
        .err()
        .expect("connected to a closed port");
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
}

/// UDP: B waits in recv_from before A sends; B echoes each datagram. A
/// then queues 2 MB, 32 times its send ring: each send_to that finds the
/// ring full waits until the worker has drained it, so all succeed.
#[tokio::test(flavor = "current_thread")]
async fn udp_echo_and_send_waiting_for_ring_space() {
    let p = Pair::new();
    let b = UdpSocket::bind(&p.b, sa("10.0.0.2:53")).unwrap();
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        b.send_to(&buf[..n], from).await.unwrap();
        let mut more = 0usize;
        while let Ok(Ok(n)) = timeout(Duration::from_secs(2), b.recv(&mut buf)).await {
            more += n;
        }
        more
    });
    let a = UdpSocket::bind(&p.a, sa("10.0.0.1:0")).unwrap();
    a.connect(sa("10.0.0.2:53")).unwrap();
    let run = async {
        a.send(b"hello").await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = a.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"hello"[..], sa("10.0.0.2:53")));
        let chunk = [0x42u8; 1000];
        for _ in 0..2000 {
            assert_eq!(a.send(&chunk).await.unwrap(), 1000);
        }
    };
    timeout(LIMIT, run).await.expect("udp timed out");
    let more = timeout(LIMIT, echo).await.expect("echo timed out").unwrap();
    // The echo task reads as the datagrams come; its ring may overflow
    // while it is not scheduled, but datagrams do arrive.
    assert!(more > 0 && more.is_multiple_of(1000), "received {more}");
}

/// SO_BINDANY and IP_RECVDSTADDR on tokio: A connects from an address
/// and port it chose (`connect_from`) and sends from an address it does
/// not have (`bind_any`); B's wildcard socket reads each datagram's
/// destination beside it (`recv_from_to`).
#[tokio::test(flavor = "current_thread")]
async fn connect_from_bind_any_and_recv_from_to_on_tokio() {
    let p = Pair::new();
    let l = TcpListener::bind(&p.b, sa("10.0.0.2:7100")).unwrap();
    let (c, accepted) = tokio::join!(
        timeout(LIMIT, TcpStream::connect_from(&p.a, sa("10.0.0.1:40001"), sa("10.0.0.2:7100"))),
        timeout(LIMIT, l.accept())
    );
    let (c, (s, peer)) = (c.unwrap().unwrap(), accepted.unwrap().unwrap());
    assert_eq!(c.local_addr().unwrap(), sa("10.0.0.1:40001"));
    assert_eq!((peer, s.local_addr().unwrap()), (sa("10.0.0.1:40001"), sa("10.0.0.2:7100")));

    let rx = UdpSocket::bind(&p.b, sa("0.0.0.0:7200")).unwrap();
    let foreign = UdpSocket::bind_any(&p.a, sa("10.0.0.99:5000")).unwrap();
    assert_eq!(foreign.local_addr().unwrap(), sa("10.0.0.99:5000"));
    foreign.send_to(b"from afar", sa("10.0.0.2:7200")).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, from, to) = timeout(LIMIT, rx.recv_from_to(&mut buf)).await.unwrap().unwrap();
    assert_eq!((&buf[..n], from, to), (&b"from afar"[..], sa("10.0.0.99:5000"), sa("10.0.0.2:7200")));
}

/// Counts its wake-ups.
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A writer waiting for room in the send buffer is woken once a third of
/// it is free (`Tcb::send_wakeup_due`, Linux's sk_stream_is_writeable),
/// not in every round in which an ACK freed a segment or two: each wake
/// refills a third of the buffer at once. The workers are stepped here,
/// round by round, and B's application reads 4 KiB a round, so its
/// window opens, and A's ACKs come back, a few segments at a time.
#[test]
fn a_waiting_writer_is_woken_only_at_the_send_low_water_mark() {
    use softnet_core::sock::api;
    use std::io::Read;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::AsyncWrite;

    let TwoStacks { clock, a, b, mut wa, mut wb } = two_stacks(2048, 4096);
    let cap = softnet_tcp::Config::default().tx_buffer;
    let total = 8 * cap;
    let mut l = api::TcpListener::bind(&b, sa("10.0.0.2:80")).unwrap();
    l.set_nonblocking(true).unwrap();
    let c = api::TcpStream::start_connect(&a, sa("10.0.0.2:80")).unwrap();
    let step = |wa: &mut softnet_core::worker::Worker, wb: &mut softnet_core::worker::Worker| {
        common::step_workers(&clock, [&a, &b], [wa, wb], Duration::from_micros(50));
    };
    let mut server = None;
    for _ in 0..1000 {
        step(&mut wa, &mut wb);
        if let Ok((s, _)) = l.accept() {
            server = Some(s);
            break;
        }
    }
    let mut server = server.expect("handshake");
    server.set_nonblocking(true).unwrap();
    let mut c = TcpStream::from_std(c);

    let count = Arc::new(CountingWaker(Default::default()));
    let waker = std::task::Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let data = vec![0x5au8; cap];
    let mut sink = vec![0u8; 4096];
    let (mut sent, mut received, mut after_wake) = (0usize, 0usize, Vec::new());
    let mut rounds = 0;
    while received < total {
        // Write until the buffer is full (as `write_all` does), then wait
        // for the wake-up, stepping the workers with B reading.
        let woken = count.0.load(Ordering::Relaxed);
        let mut first = true;
        while sent < total {
            match Pin::new(&mut c).poll_write(&mut cx, &data[..(total - sent).min(cap)]) {
                Poll::Ready(Ok(n)) => {
                    sent += n;
                    if first && woken > 0 {
                        after_wake.push(n);
                    }
                    first = false;
                }
                Poll::Ready(Err(e)) => panic!("write: {e}"),
                Poll::Pending => break,
            }
        }
        while (sent == total || count.0.load(Ordering::Relaxed) == woken) && received < total {
            step(&mut wa, &mut wb);
            rounds += 1;
            assert!(rounds < 200_000, "stalled at {sent} sent, {received} received");
            received += server.read(&mut sink).unwrap_or(0);
        }
    }
    assert_eq!(received, total);
    let wakes = count.0.load(Ordering::Relaxed);
    assert!(!after_wake.is_empty(), "the writer never waited");
    // Each write after a wake-up finds at least a third of the buffer
    // free (the last may be the tail of the transfer).
    let short: Vec<_> = after_wake.iter().filter(|&&n| n < cap / 3).collect();
    assert!(short.len() <= 1, "writes after a wake-up smaller than a third of {cap}: {short:?} of {after_wake:?}");
    assert!(wakes <= total / (cap / 3) + 2, "{wakes} wake-ups for {total} bytes");
}
