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
