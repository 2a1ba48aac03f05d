//! The steady state: no allocation per segment (a counting allocator
//! proves it), and a measure of bytes per second through two engines in
//! memory (`cargo test --release -p softnet-tcp --test steady_state --
//! --ignored --nocapture`).

mod sim;

use sim::{TestEnv, A_PORT, B_PORT};
use softnet_tcp::{segment_buffer_len, Config, Instant, State, Tcb};
use softnet_wire::tcp::{TcpPacket, TcpRepr};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Two engines wired back to back without a link model: each segment
/// written by one is parsed from the same buffer and fed to the other.
struct Lean {
    a: Tcb,
    b: Tcb,
    ea: TestEnv,
    eb: TestEnv,
    buf: Vec<u8>,
    src: Vec<u8>,
    sink: Vec<u8>,
    received: u64,
    segments: u64,
}

impl Lean {
    fn new(cfg: Config) -> Lean {
        let mut ea = TestEnv::new(1, [10, 0, 0, 1], [10, 0, 0, 2]);
        let mut eb = TestEnv::new(2, [10, 0, 0, 2], [10, 0, 0, 1]);
        let a = Tcb::connect(cfg.clone(), &mut ea, A_PORT, B_PORT);
        let b = Tcb::listen(cfg, &mut eb, B_PORT);
        Lean {
            a,
            b,
            ea,
            eb,
            buf: vec![0; segment_buffer_len(1460)],
            src: vec![0x5a; 65536],
            sink: vec![0; 65536],
            received: 0,
            segments: 0,
        }
    }

    /// Moves every pending segment of `from` into `to`.
    fn pump(from: &mut Tcb, fe: &mut TestEnv, to: &mut Tcb, te: &mut TestEnv, buf: &mut [u8]) -> u64 {
        let mut n = 0;
        while let Some(r) = from.output(fe, buf) {
            let p = TcpPacket::new_unchecked(&buf[..r.buffer_len()]);
            let repr = TcpRepr::parse(&p).unwrap();
            to.input(te, &repr, p.payload());
            n += 1;
        }
        n
    }

    /// One round: A writes what fits, segments flow both ways, B reads all.
    fn round(&mut self) {
        let now = self.ea.now + Duration::from_micros(10);
        self.ea.now = now;
        self.eb.now = now;
        let _ = self.a.send(&self.src);
        self.segments += Lean::pump(&mut self.a, &mut self.ea, &mut self.b, &mut self.eb, &mut self.buf);
        while let Ok(n) = self.b.recv(&mut self.sink) {
            if n == 0 {
                break;
            }
            self.received += n as u64;
        }
        self.segments += Lean::pump(&mut self.b, &mut self.eb, &mut self.a, &mut self.ea, &mut self.buf);
        for (t, e) in [(&mut self.a, &mut self.ea), (&mut self.b, &mut self.eb)] {
            if t.poll_at().is_some_and(|d| d <= now) {
                t.on_timer(e);
            }
        }
    }
}

#[test]
fn steady_state_transfer_allocates_nothing() {
    let mut l = Lean::new(Config::default());
    for _ in 0..200 {
        l.round();
    }
    assert_eq!((l.a.state(), l.b.state()), (State::Established, State::Established));
    let before = l.received;
    // The counter counts (so a zero below means something).
    COUNTING.with(|c| c.set(true));
    drop(std::hint::black_box(Box::new(1u64)));
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCS.swap(0, Ordering::Relaxed), 1);
    COUNTING.with(|c| c.set(true));
    for _ in 0..2000 {
        l.round();
    }
    COUNTING.with(|c| c.set(false));
    assert!(l.received - before > 10_000_000, "data moved: {}", l.received - before);
    assert_eq!(ALLOCS.load(Ordering::Relaxed), 0, "allocations in the steady state");
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn measure_bytes_per_second_through_two_engines() {
    let cfg = Config { rx_buffer: 256 * 1024, tx_buffer: 256 * 1024, ..Config::default() };
    let mut l = Lean::new(cfg);
    for _ in 0..100 {
        l.round();
    }
    let start = std::time::Instant::now();
    let (r0, s0) = (l.received, l.segments);
    while start.elapsed() < Duration::from_secs(3) {
        for _ in 0..100 {
            l.round();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = (l.received - r0) as f64;
    println!(
        "two engines in memory: {:.0} MB/s ({:.2} Gbit/s), {:.2} M segments/s, cwnd {} (virtual time {:?})",
        bytes / secs / 1e6,
        bytes * 8.0 / secs / 1e9,
        (l.segments - s0) as f64 / secs / 1e6,
        l.a.cwnd(),
        Instant::from_nanos(l.ea.now.as_nanos()),
    );
}
