//! Memory of an idle TCP connection, without buffers (issue 13: at most
//! 1 KB): the heap bytes two stacks in memory hold for 2,000 established
//! connections that moved no data (A's active ends and B's accepted
//! ones, with the application's handles), counted by a global allocator
//! that tracks live bytes. The receive and send rings are taken at the
//! first byte, so an idle connection holds none: what is left is the PCB
//! (`TcpConn` and its `Tcb`), its share of the connection table and the
//! timer heap, and the engine's small bounded vectors.
//!
//! One test in this file: the counter is global, and tests run in
//! parallel threads.

use softnet_core::iface::IfAddr;
use softnet_core::rng::FixedEntropy;
use softnet_core::sock::api::{TcpListener, TcpStream};
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::vlink;
use softnet_core::worker::Worker;
use softnet_tcp::State;
use softnet_wire::ethernet::MacAddr;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Counting;

/// Bytes allocated and not yet freed, in the whole process.
static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as i64 - l.size() as i64, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Connections each side holds.
const N: usize = 2000;
/// The bound per idle connection, buffers not counted.
const MAX_BYTES: i64 = 1024;

#[test]
fn idle_connection_costs_at_most_1kb_without_buffers() {
    let clock = Arc::new(ManualClock::new(Instant::from_secs(100)));
    let dynclock: Arc<dyn Clock> = clock.clone();
    let cfg = StackConfig { pool_size: 4096, ..StackConfig::default() };
    let a = Stack::with_clock_and_entropy(cfg.clone(), dynclock.clone(), Arc::new(FixedEntropy::new(1)));
    let b = Stack::with_clock_and_entropy(cfg, dynclock.clone(), Arc::new(FixedEntropy::new(2)));
    let (pa, pb) = vlink::wire(1, 8192);
    a.create_interface("a0", MacAddr([2, 0, 0, 0, 0, 1]), 1500, pa.link_queues()).unwrap();
    b.create_interface("b0", MacAddr([2, 0, 0, 0, 0, 2]), 1500, pb.link_queues()).unwrap();
    a.add_address("a0", IfAddr::new("10.0.0.1".parse().unwrap(), 24)).unwrap();
    b.add_address("b0", IfAddr::new("10.0.0.2".parse().unwrap(), 24)).unwrap();
    a.set_up("a0", true).unwrap();
    b.set_up("b0", true).unwrap();
    let mut wa = Worker::new(0, a.clone(), dynclock.clone());
    let mut wb = Worker::new(0, b.clone(), dynclock);
    let mut step = |d: Duration| {
        wa.poll();
        wb.poll();
        clock.advance(d);
    };
    let server: SocketAddr = "10.0.0.2:80".parse().unwrap();
    let mut l = TcpListener::bind_with_backlog(&b, server, 2 * N).unwrap();
    l.set_nonblocking(true).unwrap();
    let mut clients: Vec<TcpStream> = Vec::with_capacity(N + 1);
    let mut accepted: Vec<TcpStream> = Vec::with_capacity(N + 1);
    let open_one = |clients: &mut Vec<TcpStream>| clients.push(TcpStream::start_connect(&a, server).unwrap());
    // One connection first, so that ARP, the tables' first allocations
    // and the workers' scratch are in place before the count.
    open_one(&mut clients);
    for _ in 0..200 {
        step(Duration::from_millis(1));
    }
    accepted.push(l.accept().unwrap().0);
    for _ in 0..100 {
        step(Duration::from_millis(10));
    }
    let before = LIVE.load(Ordering::Relaxed);
    // Opened 50 at a time, as connections arrive: the SYN cache's table
    // sized for 2,000 half-open ones at once would be counted otherwise
    // (its high-water mark, not a cost of an established connection).
    for round in 0..4000 {
        if round % 10 == 0 && clients.len() < N + 1 {
            for _ in 0..50.min(N + 1 - clients.len()) {
                open_one(&mut clients);
            }
        }
        step(Duration::from_millis(1));
        loop {
            match l.accept() {
                Ok((s, _)) => accepted.push(s),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("accept: {e}"),
            }
        }
        if accepted.len() == N + 1 {
            break;
        }
    }
    assert_eq!(accepted.len(), N + 1, "connections accepted");
    // Idle: the delayed ACKs and the SYN cache's timers are done.
    for _ in 0..100 {
        step(Duration::from_millis(10));
    }
    assert!(clients.iter().chain(&accepted).all(|s| s.state() == State::Established));
    assert_eq!(b.socks.syncache.len(), 0, "no half-open connection left");
    let after = LIVE.load(Ordering::Relaxed);
    let per_conn = (after - before) / (2 * N as i64);
    eprintln!(
        "size_of Tcb {} TcpConn {} TcpStream {}",
        std::mem::size_of::<softnet_tcp::Tcb>(),
        std::mem::size_of::<softnet_core::sock::TcpConn>(),
        std::mem::size_of::<TcpStream>()
    );
    eprintln!("live heap: +{} bytes for {N} connections on each side: {per_conn} bytes each", after - before);
    assert!(per_conn <= MAX_BYTES, "{per_conn} bytes per idle connection (bound {MAX_BYTES})");
    // Not vacuous: each connection does hold its PCB.
    assert!(per_conn >= std::mem::size_of::<softnet_tcp::Tcb>() as i64, "{per_conn} bytes: less than a TCB");
}
