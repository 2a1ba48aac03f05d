//! Bulk TCP between two stacks in memory (issue 13's per-segment path):
//! one connection moves `TCP_BULK_MB` MiB (default 8) from A to B, both
//! applications on this thread with non-blocking sockets, the workers
//! polled round by round on a manual clock. It checks what the data path
//! must not do per segment: allocate (a global allocator counts the calls
//! made while the bulk runs), or answer every segment with an ACK. The
//! receiving worker answers a round's in-order data with one ACK (RFC
//! 5681 §4.2's every second segment, batched as LRO/GRO receivers do), at
//! the latest when a quarter of the offered window is unacknowledged
//! (`softnet_tcp::STRETCH_ACK_DIV`).
//!
//! It is also the harness to profile the path with:
//! `TCP_BULK_MB=64 valgrind --tool=callgrind --toggle-collect='*tcp_bulk::bulk*' target/release/deps/tcp_bulk-*`
//!
//! ```text
//!  stack A  a0 10.0.0.1/24 ── wire ── b0 10.0.0.2/24  stack B
//! ```

mod common;

use common::{two_stacks_with, TwoStacks};
use softnet_core::link::LinkQueue;
use softnet_core::packet::{PacketBuf, PacketPool};
use softnet_core::sock::api::{TcpListener, TcpStream};
use softnet_core::stack::Stack;
use softnet_core::time::ManualClock;
use softnet_core::worker::Worker;
use softnet_tcp::State;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Counting;

/// Allocation calls (alloc, alloc_zeroed, realloc) in the whole process.
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Frames a link queue sent, split at `SMALL` bytes: pure ACKs below it,
/// data segments above.
#[derive(Default)]
struct Tally {
    small: AtomicU64,
    large: AtomicU64,
}

/// Frames of at most this many bytes count as ACKs (Ethernet + IPv4 +
/// TCP with timestamps and three SACK blocks is 14 + 20 + 60 = 94).
const SMALL: usize = 100;

struct Counted {
    inner: Box<dyn LinkQueue>,
    tally: Arc<Tally>,
}

impl LinkQueue for Counted {
    fn recv(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.inner.recv(pool, out, max)
    }
    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        for f in frames.iter() {
            let c = if f.len() <= SMALL { &self.tally.small } else { &self.tally.large };
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.send(pool, frames)
    }
}

struct Pair {
    clock: Arc<ManualClock>,
    a: Arc<Stack>,
    b: Arc<Stack>,
    wa: Worker,
    wb: Worker,
    /// What A and B put on the wire.
    tx_a: Arc<Tally>,
    tx_b: Arc<Tally>,
}

impl Pair {
    fn new() -> Pair {
        let (tx_a, tx_b) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
        let tallies = [tx_a.clone(), tx_b.clone()];
        let TwoStacks { clock, a, b, wa, wb } = two_stacks_with(2048, 4096, |q, side| {
            let tally = &tallies[side];
            q.into_iter().map(|inner| Box::new(Counted { inner, tally: tally.clone() }) as Box<dyn LinkQueue>).collect()
        });
        Pair { clock, a, b, wa, wb, tx_a, tx_b }
    }

    fn step(&mut self, d: Duration) {
        self.wa.poll();
        self.wb.poll();
        self.clock.advance(d);
    }
}

/// What a bulk run saw.
struct Run {
    allocs: u64,
    data_frames: u64,
    acks: u64,
}

/// Writes `len` bytes from `c` to `s` in 64 KiB writes and reads them in
/// 64 KiB reads, round by round; returns what the counters saw meanwhile.
#[inline(never)]
fn bulk(p: &mut Pair, c: &mut TcpStream, s: &mut TcpStream, len: usize) -> Run {
    let chunk = vec![0x5au8; 65536];
    let mut buf = vec![0u8; 65536];
    let (a0, b0) = (p.tx_a.large.load(Ordering::Relaxed), p.tx_b.small.load(Ordering::Relaxed));
    let allocs0 = ALLOCS.load(Ordering::Relaxed);
    let (mut sent, mut got) = (0usize, 0usize);
    for _ in 0..(len / 100) {
        p.step(Duration::from_micros(20));
        while sent < len {
            match c.write(&chunk[..(len - sent).min(chunk.len())]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        loop {
            match s.read(&mut buf) {
                Ok(0) => panic!("EOF after {got} bytes"),
                Ok(n) => {
                    got += n;
                    assert_eq!(buf[n - 1], 0x5a);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        if got == len {
            return Run {
                allocs: ALLOCS.load(Ordering::Relaxed) - allocs0,
                data_frames: p.tx_a.large.load(Ordering::Relaxed) - a0,
                acks: p.tx_b.small.load(Ordering::Relaxed) - b0,
            };
        }
    }
    panic!("bulk did not finish: sent {sent} got {got}");
}

fn connected(p: &mut Pair) -> (TcpStream, TcpStream) {
    let server: SocketAddr = "10.0.0.2:5001".parse().unwrap();
    let mut l = TcpListener::bind(&p.b, server).unwrap();
    l.set_nonblocking(true).unwrap();
    let mut c = TcpStream::start_connect(&p.a, server).unwrap();
    c.set_nonblocking(true).unwrap();
    for _ in 0..1000 {
        p.step(Duration::from_millis(1));
        if let Ok((mut s, _)) = l.accept() {
            s.set_nonblocking(true).unwrap();
            assert_eq!(c.state(), State::Established);
            return (c, s);
        }
    }
    panic!("no connection");
}

#[test]
fn bulk_transfer_allocates_nothing_and_acks_a_batch_within_a_quarter_window() {
    let mb: usize = std::env::var("TCP_BULK_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let mut p = Pair::new();
    let (mut c, mut s) = connected(&mut p);
    // The first bytes take the rings, the out-of-order and SACK vectors
    // and the workers' scratch; the window opens. The rings' memory grows
    // with use: B does not read until its receive ring is full, so both
    // rings reach their capacity before the bulk is counted.
    let chunk = vec![0x5au8; 65536];
    let mut filled = 0;
    for _ in 0..200 {
        p.step(Duration::from_micros(20));
        while let Ok(n) = c.write(&chunk) {
            filled += n;
        }
    }
    let mut buf = vec![0u8; 65536];
    for _ in 0..10_000 {
        if filled == 0 {
            break;
        }
        p.step(Duration::from_micros(20));
        while let Ok(n) = s.read(&mut buf) {
            assert!(n > 0, "EOF");
            filled -= n;
        }
    }
    assert_eq!(filled, 0, "the rings did not drain");
    bulk(&mut p, &mut c, &mut s, 1 << 20);
    let r = bulk(&mut p, &mut c, &mut s, mb << 20);
    eprintln!(
        "{mb} MiB: {} data frames, {} ACKs ({:.2} segments an ACK), {} allocations",
        r.data_frames,
        r.acks,
        r.data_frames as f64 / r.acks.max(1) as f64,
        r.allocs
    );
    let full = (mb << 20) as u64 / s.mss() as u64;
    assert!(r.data_frames >= full, "{} data frames for {full} full segments", r.data_frames);
    // At most one ACK every second segment (a window update may add a
    // few), and none covering more than a quarter of the window (plus the
    // segment that crossed it): the sender keeps most of its window open.
    assert!(r.acks * 2 <= r.data_frames + r.data_frames / 20, "{} ACKs for {} segments", r.acks, r.data_frames);
    let window = softnet_tcp::Config::default().rx_buffer;
    let per_ack = (window / softnet_tcp::STRETCH_ACK_DIV) as u64 / s.mss() as u64 + 1;
    assert!(r.acks * per_ack >= r.data_frames, "{} ACKs for {} segments: too few", r.acks, r.data_frames);
    assert_eq!(r.allocs, 0, "allocations while the bulk ran");
    drop((c, s));
    assert!(p.a.socks.tcp_snapshot().len() <= 1 && p.b.socks.tcp_snapshot().len() <= 1);
}
