//! The per-packet path of an established state: it allocates nothing
//! (a counting global allocator watches), and (ignored, for humans) what
//! one hook call costs for UDP and TCP.
//!
//! `cargo test --release -p softnet-pf --test hot_path -- --ignored --nocapture`

mod common;
use common::{net, pf_with, tcp_bytes, udp_bytes, Net, NoBufs as Bufs};

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::tcp::TcpFlags;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Counts only on the test's own thread (the harness allocates on others).
    static WATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn note() {
    if WATCHED.with(|w| w.get()) {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> PacketBuf {
    PacketBuf::from_slice(&udp_bytes(src, dst, sport, dport, &[0u8; 18]))
}

fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: TcpFlags, seq: u32, ack: u32) -> PacketBuf {
    PacketBuf::from_slice(&tcp_bytes(src, dst, sport, dport, flags, seq, ack, 0))
}

fn pass(
    pf: &Pf,
    now: Instant,
    dir: Direction,
    ifp: &Interface,
    p: PacketBuf,
    replies: &mut Vec<PacketBuf>,
) -> PacketBuf {
    match pf.test(0, now, dir, ifp, p, &mut Bufs, replies) {
        Verdict::Pass(p) => p,
        v => panic!("{v:?}"),
    }
}

/// A forwarded flow's packet through both hooks (in on em0, out on em1).
fn forward(pf: &Pf, n: &Net, now: Instant, p: PacketBuf, replies: &mut Vec<PacketBuf>) -> PacketBuf {
    let p = pass(pf, now, Direction::In, &n.em0, p, replies);
    pass(pf, now, Direction::Out, &n.em1, p, replies)
}

/// Reply through both hooks (in on em1, out on em0).
fn backward(pf: &Pf, n: &Net, now: Instant, p: PacketBuf, replies: &mut Vec<PacketBuf>) -> PacketBuf {
    let p = pass(pf, now, Direction::In, &n.em1, p, replies);
    pass(pf, now, Direction::Out, &n.em0, p, replies)
}

const RULES: &str = "block all\npass out all\npass in proto tcp to port ssh\npass in proto udp to port 53\n";

/// Established UDP and TCP flows, states on both hooks; returns the
/// packets that keep hitting them.
fn established(pf: &Pf, n: &Net, t: Instant) -> (PacketBuf, PacketBuf, PacketBuf) {
    let mut r = vec![];
    let syn = TcpFlags::SYN;
    let ack = TcpFlags::ACK;
    let synack = TcpFlags::from_bits(syn.bits() | ack.bits());
    forward(pf, n, t, tcp(CLIENT, SERVER, 40000, 22, syn, 1000, 0), &mut r);
    backward(pf, n, t, tcp(SERVER, CLIENT, 22, 40000, synack, 5000, 1001), &mut r);
    let a = forward(pf, n, t, tcp(CLIENT, SERVER, 40000, 22, ack, 1001, 5001), &mut r);
    let q = forward(pf, n, t, udp(CLIENT, SERVER, 5000, 53), &mut r);
    let resp = backward(pf, n, t, udp(SERVER, CLIENT, 53, 5000), &mut r);
    assert_eq!(pf.state_count(), 4);
    (a, q, resp)
}

#[test]
fn established_state_packets_allocate_nothing() {
    let n = net();
    let pf = pf_with(&n, RULES);
    let t = Instant::from_secs(10);
    let (mut a, mut q, mut resp) = established(&pf, &n, t);
    let mut replies = Vec::with_capacity(4);
    // Warm up (lazily initialised thread-locals of arc-swap and the like).
    for _ in 0..100 {
        a = forward(&pf, &n, t, a, &mut replies);
        q = forward(&pf, &n, t, q, &mut replies);
        resp = backward(&pf, &n, t, resp, &mut replies);
    }
    WATCHED.with(|w| w.set(true));
    let before = ALLOCS.load(Ordering::SeqCst);
    for i in 0..10_000u64 {
        let now = Instant::from_nanos(t.as_nanos() + i * 1_000_000);
        a = forward(&pf, &n, now, a, &mut replies);
        q = forward(&pf, &n, now, q, &mut replies);
        resp = backward(&pf, &n, now, resp, &mut replies);
    }
    let allocs = ALLOCS.load(Ordering::SeqCst) - before;
    WATCHED.with(|w| w.set(false));
    assert_eq!(allocs, 0, "{allocs} allocations for 60,000 hook calls on established states");
    assert!(replies.is_empty());
}

/// Minimum and median of `rounds` timings of `iters` calls of `f`, ns per call.
fn time(rounds: usize, iters: u32, mut f: impl FnMut()) -> (f64, f64) {
    let mut v: Vec<f64> = (0..rounds)
        .map(|_| {
            let s = std::time::Instant::now();
            for _ in 0..iters {
                f();
            }
            s.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2])
}

#[test]
#[ignore]
fn measure_established_hook_cost() {
    let n = net();
    let pf = pf_with(&n, RULES);
    let t = Instant::from_secs(10);
    let (a, q, _) = established(&pf, &n, t);
    let mut replies = vec![];
    let mut slot = Some(q);
    let (min, med) = time(1001, 2_000, || {
        let p = slot.take().unwrap();
        slot = Some(pass(&pf, t, Direction::In, &n.em0, p, &mut replies));
    });
    eprintln!("udp established, one hook call:       min {min:6.1} ns  median {med:6.1} ns");
    let (min, med) = time(1001, 1_000, || {
        let p = slot.take().unwrap();
        slot = Some(forward(&pf, &n, t, p, &mut replies));
    });
    eprintln!("udp established, in + out (forwarded): min {min:6.1} ns  median {med:6.1} ns");
    let mut slot = Some(a);
    let (min, med) = time(1001, 2_000, || {
        let p = slot.take().unwrap();
        slot = Some(pass(&pf, t, Direction::In, &n.em0, p, &mut replies));
    });
    eprintln!("tcp established, one hook call:       min {min:6.1} ns  median {med:6.1} ns");
    let (min, med) = time(1001, 1_000, || {
        let p = slot.take().unwrap();
        slot = Some(forward(&pf, &n, t, p, &mut replies));
    });
    eprintln!("tcp established, in + out (forwarded): min {min:6.1} ns  median {med:6.1} ns");
    pf.disable(t).unwrap();
    let (min, med) = time(1001, 2_000, || {
        let p = slot.take().unwrap();
        slot = Some(pass(&pf, t, Direction::In, &n.em0, p, &mut replies));
    });
    eprintln!("pf disabled (the call itself):         min {min:6.1} ns  median {med:6.1} ns");
}

/// What a forwarded packet costs with 10,000 established UDP flows hit in
/// turn (as `softnet bench --pf` case (a), without the rest of the stack),
/// so the state lookups miss the caches. One buffer is rewritten per flow,
/// as the generator's frames are hot when pf sees them.
#[test]
#[ignore]
fn measure_10k_flows_cost() {
    const FLOWS: u16 = 10_000;
    let n = net();
    let pf = pf_with(&n, "pass all\n");
    let t = Instant::from_secs(10);
    let mut replies = vec![];
    let set_ports = |p: &mut PacketBuf, j: u16| {
        let d = p.data_mut();
        d[20..22].copy_from_slice(&(1024 + j).to_be_bytes());
        d[22..24].copy_from_slice(&9000u16.to_be_bytes());
        p.meta = Default::default();
    };
    let mut p = udp(CLIENT, SERVER, 1024, 9000);
    for j in 0..FLOWS {
        set_ports(&mut p, j);
        p = forward(&pf, &n, t, p, &mut replies);
    }
    assert_eq!(pf.state_count(), 2 * FLOWS as usize);
    let mut slot = Some(p);
    let mut j = 0u16;
    let (min, med) = time(101, 20_000, || {
        let mut p = slot.take().unwrap();
        j = if j + 1 == FLOWS { 0 } else { j + 1 };
        set_ports(&mut p, j);
        slot = Some(forward(&pf, &n, t, p, &mut replies));
    });
    eprintln!("udp, 10k established flows, in + out:  min {min:6.1} ns  median {med:6.1} ns");
    pf.disable(t).unwrap();
    let (min, med) = time(101, 20_000, || {
        let mut p = slot.take().unwrap();
        j = if j + 1 == FLOWS { 0 } else { j + 1 };
        set_ports(&mut p, j);
        slot = Some(forward(&pf, &n, t, p, &mut replies));
    });
    eprintln!("pf disabled, in + out (the harness):   min {min:6.1} ns  median {med:6.1} ns");
}

/// Times rounds of one batch of 64 through both hooks (`test_batch` in
/// on em0, then out on em1, as the worker calls them), `refill` preparing
/// each buffer before every round; every packet must pass. Returns (min,
/// median) ns per packet.
fn time_batches(pf: &Pf, n: &Net, t: Instant, first: &[u8], mut refill: impl FnMut(&mut PacketBuf)) -> (f64, f64) {
    use softnet_core::filter::Decision;
    const B: usize = 64;
    let mut replies = vec![];
    let mut pkts: Vec<Option<PacketBuf>> = (0..B).map(|_| Some(PacketBuf::from_slice(first))).collect();
    let mut d = [Decision::Drop; B];
    let r = time(201, 200, || {
        for s in pkts.iter_mut() {
            refill(s.as_mut().unwrap());
        }
        pf.test_batch(0, t, Direction::In, &n.em0, &mut pkts, &mut d, &mut Bufs, &mut replies);
        pf.test_batch(0, t, Direction::Out, &n.em1, &mut pkts, &mut d, &mut Bufs, &mut replies);
    });
    assert!(d.iter().all(|d| *d == Decision::Pass));
    (r.0 / B as f64, r.1 / B as f64)
}

/// `time_batches` with each buffer refilled from `frames` in turn (a
/// copy of the next frame, its metadata reset): flows whose frames differ
/// in more than the ports, or that a translating state rewrites (the
/// next round must not see the rewritten bytes).
fn time_cycling(pf: &Pf, n: &Net, t: Instant, frames: &[PacketBuf]) -> (f64, f64) {
    let mut j = 0usize;
    time_batches(pf, n, t, frames[0].data(), |p| {
        j = if j + 1 >= frames.len() { 0 } else { j + 1 };
        p.data_mut().copy_from_slice(frames[j].data());
        p.meta = Default::default();
    })
}

/// What a forwarded packet costs when pf sees batches of 64 (as the
/// worker calls it: `test_batch` in on em0 for the batch, then out on
/// em1), over `flows` established UDP flows hit in turn.
fn batch_cost(flows: u16) -> (f64, f64) {
    let n = net();
    let pf = pf_with(&n, "pass all\n");
    let t = Instant::from_secs(10);
    let mut replies = vec![];
    let mut p = udp(CLIENT, SERVER, 1024, 9000);
    let set_ports = |p: &mut PacketBuf, j: u16| {
        let d = p.data_mut();
        d[20..22].copy_from_slice(&(1024 + j).to_be_bytes());
        p.meta = Default::default();
    };
    for j in 0..flows {
        set_ports(&mut p, j);
        p = forward(&pf, &n, t, p, &mut replies);
    }
    assert_eq!(pf.state_count(), 2 * flows as usize);
    let mut j = 0u16;
    time_batches(&pf, &n, t, p.data(), |p| {
        j = if j + 1 >= flows { 0 } else { j + 1 };
        set_ports(p, j);
    })
}

/// `batch_cost` with each flow's frame copied into the batch's buffers
/// (a translating state rewrites addresses the next round must not see),
/// under `rules`: what a plain state and a `nat-to` state cost alike.
fn batch_cost_copy(rules: &str, flows: u16) -> (f64, f64) {
    let n = net();
    let pf = pf_with(&n, rules);
    let t = Instant::from_secs(10);
    let mut replies = vec![];
    let frames: Vec<PacketBuf> = (0..flows)
        .map(|j| {
            let p = udp(CLIENT, SERVER, 1024 + j, 9000);
            let copy = PacketBuf::from_slice(p.data());
            forward(&pf, &n, t, p, &mut replies);
            copy
        })
        .collect();
    assert_eq!(pf.state_count(), 2 * flows as usize);
    time_cycling(&pf, &n, t, &frames)
}

/// `batch_cost` for established TCP connections (a bare ACK each, the
/// same segment again and again: a duplicate ACK in the window).
fn batch_cost_tcp(flows: u16) -> (f64, f64) {
    let n = net();
    let pf = pf_with(&n, "pass all\n");
    let t = Instant::from_secs(10);
    let mut r = vec![];
    let (syn, ack) = (TcpFlags::SYN, TcpFlags::ACK);
    let synack = TcpFlags::from_bits(syn.bits() | ack.bits());
    let acks: Vec<PacketBuf> = (0..flows)
        .map(|j| {
            let sp = 1024 + j;
            forward(&pf, &n, t, tcp(CLIENT, SERVER, sp, 22, syn, 1000, 0), &mut r);
            backward(&pf, &n, t, tcp(SERVER, CLIENT, 22, sp, synack, 5000, 1001), &mut r);
            forward(&pf, &n, t, tcp(CLIENT, SERVER, sp, 22, ack, 1001, 5001), &mut r)
        })
        .collect();
    assert_eq!(pf.state_count(), 2 * flows as usize);
    time_cycling(&pf, &n, t, &acks)
}

#[test]
#[ignore]
fn measure_batch_cost() {
    for flows in [64, 10_000] {
        let (min, med) = batch_cost(flows);
        eprintln!("udp, batches of 64, {flows:5} flows, in + out: min {min:6.1} ns  median {med:6.1} ns per packet");
    }
    for flows in [64, 10_000] {
        let plain = batch_cost_copy("pass all\n", flows);
        let nat = batch_cost_copy("match out on em1 from 10.0.1.0/24 nat-to 10.0.2.1\npass all\n", flows);
        eprintln!(
            "udp, batches of 64, {flows:5} flows, frames copied, in + out: median {:6.1} ns plain, {:6.1} ns nat-to (+{:.1})",
            plain.1,
            nat.1,
            nat.1 - plain.1
        );
    }
    for flows in [64, 10_000] {
        let (min, med) = batch_cost_tcp(flows);
        eprintln!("tcp, batches of 64, {flows:5} flows, in + out: min {min:6.1} ns  median {med:6.1} ns per packet");
    }
    for flows in [64, 10_000] {
        let (min, med) = batch_cost6(flows);
        eprintln!("udp6, batches of 64, {flows:5} flows, in + out: min {min:6.1} ns  median {med:6.1} ns per packet");
    }
}

const CLIENT6: &str = "2001:db8:1::2";
const SERVER6: &str = "2001:db8:2::2";

/// A UDP datagram with 18 bytes of payload.
fn udp6(src: &str, dst: &str, sport: u16, dport: u16) -> PacketBuf {
    use softnet_wire::ipv4::IpProtocol;
    use softnet_wire::ipv6::Ipv6Repr;
    use softnet_wire::udp::UdpRepr;
    let (src, dst): (std::net::Ipv6Addr, std::net::Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
    let u = UdpRepr { src_port: sport, dst_port: dport, payload_len: 18 };
    let ip = Ipv6Repr {
        src,
        dst,
        next_header: IpProtocol::UDP,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        payload_len: u.buffer_len(),
    };
    let mut b = vec![0u8; ip.buffer_len()];
    ip.emit(&mut b);
    u.emit_with_payload_v6(&mut b[40..], src, dst, &[0u8; 18]);
    PacketBuf::from_slice(&b)
}

/// IPv6's established packets allocate nothing either (the address ids
/// come from the thread's cache once looked up).
#[test]
fn established_ipv6_packets_allocate_nothing() {
    let n = net();
    let pf = pf_with(&n, "pass all\n");
    let t = Instant::from_secs(10);
    let mut replies = Vec::with_capacity(4);
    let mut q = forward(&pf, &n, t, udp6(CLIENT6, SERVER6, 5000, 53), &mut replies);
    let mut resp = backward(&pf, &n, t, udp6(SERVER6, CLIENT6, 53, 5000), &mut replies);
    for _ in 0..100 {
        q = forward(&pf, &n, t, q, &mut replies);
        resp = backward(&pf, &n, t, resp, &mut replies);
    }
    WATCHED.with(|w| w.set(true));
    let before = ALLOCS.load(Ordering::SeqCst);
    for i in 0..10_000u64 {
        let now = Instant::from_nanos(t.as_nanos() + i * 1_000_000);
        q = forward(&pf, &n, now, q, &mut replies);
        resp = backward(&pf, &n, now, resp, &mut replies);
    }
    let allocs = ALLOCS.load(Ordering::SeqCst) - before;
    WATCHED.with(|w| w.set(false));
    assert_eq!(allocs, 0, "{allocs} allocations for 40,000 hook calls on established IPv6 states");
    assert_eq!(pf.state_count(), 2);
}

/// `batch_cost` for IPv6: established UDP states, the general path (no
/// fast parse or inline established path for IPv6 yet).
fn batch_cost6(flows: u16) -> (f64, f64) {
    let n = net();
    let pf = pf_with(&n, "pass all\n");
    let t = Instant::from_secs(10);
    let mut replies = vec![];
    let mut p = udp6(CLIENT6, SERVER6, 1024, 9000);
    let set_ports = |p: &mut PacketBuf, j: u16| {
        let d = p.data_mut();
        d[40..42].copy_from_slice(&(1024 + j).to_be_bytes());
        p.meta = Default::default();
    };
    for j in 0..flows {
        set_ports(&mut p, j);
        p = forward(&pf, &n, t, p, &mut replies);
    }
    assert_eq!(pf.state_count(), 2 * flows as usize);
    let mut j = 0u16;
    time_batches(&pf, &n, t, p.data(), |p| {
        j = if j + 1 >= flows { 0 } else { j + 1 };
        set_ports(p, j);
    })
}

/// For instruction counts (BENCHMARKS.md §2): `valgrind --tool=callgrind
/// --toggle-collect='*test_batch*'` over this test counts what the
/// established UDP packet costs pf, both hooks, 10,000 flows.
#[test]
#[ignore]
fn profile_udp_batch() {
    let (min, med) = batch_cost(10_000);
    eprintln!("udp, batches of 64, 10000 flows, in + out: min {min:6.1} ns  median {med:6.1} ns per packet");
}

/// `profile_udp_batch` for IPv6 (64 flows).
#[test]
#[ignore]
fn profile_udp6_batch() {
    let (min, med) = batch_cost6(64);
    eprintln!("udp6, batches of 64, 64 flows, in + out: min {min:6.1} ns  median {med:6.1} ns per packet");
}

/// `batch_cost6` in `softnet bench --inet6`'s shape: `flows` flows from
/// one source to `addrs` destination addresses (frames copied each
/// round), so that a packet's addresses are not all the last packet's:
/// what the in hook's address-id lookups (`state::v6ids`) cost when a
/// worker sees thousands of addresses.
fn batch_cost6_addrs(flows: u16, addrs: u16) -> (f64, f64) {
    let n = net();
    let pf = pf_with(&n, "pass all\n");
    let t = Instant::from_secs(10);
    let mut replies = vec![];
    let frames: Vec<PacketBuf> = (0..flows)
        .map(|j| {
            let dst = format!("2001:db8:2::{:x}", 0x1000 + j % addrs);
            let p = udp6(CLIENT6, &dst, 1024 + j, 9000);
            let copy = PacketBuf::from_slice(p.data());
            forward(&pf, &n, t, p, &mut replies);
            copy
        })
        .collect();
    assert_eq!(pf.state_count(), 2 * flows as usize);
    time_cycling(&pf, &n, t, &frames)
}

/// `profile_udp6_batch` in `softnet bench --inet6`'s shape: 10,000 flows
/// to 2,500 destination addresses.
#[test]
#[ignore]
fn profile_udp6_addrs_batch() {
    let (min, med) = batch_cost6_addrs(10_000, 2_500);
    eprintln!(
        "udp6, batches of 64, 10000 flows to 2500 addresses, copied, in + out: min {min:6.1} ns  median {med:6.1} ns per packet"
    );
}

/// `profile_udp_batch` for `nat-to` states (frames copied each round,
/// 10,000 flows; callgrind: subtract `profile_udp_copy_batch`'s count for
/// what the translation costs).
#[test]
#[ignore]
fn profile_nat_batch() {
    let (min, med) = batch_cost_copy("match out on em1 from 10.0.1.0/24 nat-to 10.0.2.1\npass all\n", 10_000);
    eprintln!(
        "udp nat-to, batches of 64, 10000 flows, copied, in + out: min {min:6.1} ns  median {med:6.1} ns per packet"
    );
}

/// `profile_nat_batch` without the translation: plain states, frames
/// copied the same way.
#[test]
#[ignore]
fn profile_udp_copy_batch() {
    let (min, med) = batch_cost_copy("pass all\n", 10_000);
    eprintln!("udp, batches of 64, 10000 flows, copied, in + out: min {min:6.1} ns  median {med:6.1} ns per packet");
}
