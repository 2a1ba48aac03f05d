//! The steady-state data path allocates nothing: a counting global
//! allocator watches a worker forward thousands of packets (with ARP
//! resolved, routes in place, ICMP errors not involved).
//!
//! Only the test's own thread is counted: the worker runs on it, and
//! libtest's main thread allocates after it spawns the test thread
//! (its running-tests map, the timeout queue, the channel it waits on).
//! Under load those allocations landed inside the measured window and
//! failed the test now and then ("4 allocations while forwarding ...").
//!
//! `connlife` counts what a short TCP connection costs its server the
//! same way (allocations and frames, from SYN to TIME_WAIT's end).

mod common;

use softnet_core::gen::{GeneratorQueue, SinkQueue};
use softnet_core::host::Host;
use softnet_core::iface::IfAddr;
use softnet_core::link::LinkQueue;
use softnet_core::percpu::{CacheAligned, Counter};
use softnet_core::stack::{RouteTarget, Stack, StackConfig};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::topo::*;
use softnet_core::vlink;
use softnet_core::worker::Worker;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

struct Counting;

thread_local! {
    /// Set on the thread that runs the worker while it is measured.
    static WATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Allocations of this thread while watched (per thread: the tests
    /// run in parallel).
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Their bytes.
    static BYTES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Each watched allocation's backtrace on stderr (`CONNLIFE_BT=1` for
/// `connlife`: where a connection's allocations are made).
static BT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn note(size: usize) {
    if WATCHED.with(|w| w.get()) {
        if BT.load(Ordering::Relaxed) {
            WATCHED.with(|w| w.set(false));
            eprintln!("ALLOC {size}\n{}", std::backtrace::Backtrace::force_capture());
            WATCHED.with(|w| w.set(true));
        }
        ALLOCS.with(|a| a.set(a.get() + 1));
        BYTES.with(|b| b.set(b.get() + size as u64));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note(n);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A filter that passes everything and sends every packet in, alternately,
/// to B as its next hop (`route-to`) and a copy of it there (`dup-to`), as
/// pf's routing options do.
struct RouteAll(std::sync::atomic::AtomicBool);
impl softnet_core::filter::PacketFilter for RouteAll {
    fn test(
        &self,
        _worker: usize,
        _now: Instant,
        dir: softnet_core::filter::Direction,
        _ifp: &softnet_core::iface::Interface,
        mut pkt: softnet_core::packet::PacketBuf,
        _bufs: &mut dyn softnet_core::filter::BufferSource,
        _replies: &mut softnet_core::filter::FilterReplies,
    ) -> softnet_core::filter::Verdict {
        use softnet_core::filter::{NextHop, RouteDecision};
        if dir == softnet_core::filter::Direction::In {
            let dup = self.0.fetch_xor(true, Ordering::Relaxed);
            pkt.meta.pf_route =
                if dup { RouteDecision::Dup(NextHop::routed(B_IP)) } else { RouteDecision::To(NextHop::routed(B_IP)) };
        }
        softnet_core::filter::Verdict::Pass(pkt)
    }
}

#[test]
fn forwarding_allocates_nothing_per_packet_in_steady_state() {
    let (allocs, forwarded) = measure(false);
    assert!(forwarded >= 2000 * 60, "forwarded only {forwarded}");
    assert_eq!(allocs, 0, "{allocs} allocations while forwarding {forwarded} packets");
}

#[test]
fn route_to_and_dup_to_allocate_nothing_per_packet_in_steady_state() {
    let (allocs, sent) = measure(true);
    // Half the packets are sent twice (the copy and the original).
    assert!(sent >= 2000 * 60 * 3 / 2, "sent only {sent}");
    assert_eq!(allocs, 0, "{allocs} allocations while sending {sent} packets");
}

/// Allocations on the worker's thread, and frames sent, over 2,000 polls
/// of a warm worker forwarding 1,000 flows (with a `RouteAll` filter when
/// `routed`).
fn measure(routed: bool) -> (u64, u64) {
    let stack = Stack::new(StackConfig { workers: 1, pool_size: 512, ..StackConfig::default() });
    let (_, a_port) = vlink::wire(1, 1);
    let mut a = Host::new("A", A_MAC, IfAddr::new(A_IP, 24), Some(R0_IP), a_port);
    // 1,000 flows over 100 routes.
    let frames: Vec<Vec<u8>> = (0..1000u32)
        .map(|j| {
            a.udp_frame(R0_MAC, Ipv4Addr::from(0x0b00_0000 + (j % 100) * 256 + 1 + j / 100), 20000 + j as u16, 9000, 18)
        })
        .collect();
    let gen = GeneratorQueue::new(frames);
    let sink = SinkQueue::new();
    let sent = sink.sent.clone();
    stack.create_interface("r0", R0_MAC, 1500, vec![Box::new(gen) as Box<dyn LinkQueue>]).unwrap();
    stack.create_interface("r1", R1_MAC, 1500, vec![Box::new(sink) as Box<dyn LinkQueue>]).unwrap();
    stack.add_address("r0", IfAddr::new(R0_IP, 24)).unwrap();
    stack.add_address("r1", IfAddr::new(R1_IP, 24)).unwrap();
    stack.set_up("r0", true).unwrap();
    stack.set_up("r1", true).unwrap();
    stack.arp_add_static(B_IP, B_MAC).unwrap();
    for r in 0..100u32 {
        stack.add_route(0, Ipv4Addr::from(0x0b00_0000 + r * 256), 24, RouteTarget::Gateway(B_IP)).unwrap();
    }
    if routed {
        stack.set_filter(Some(Box::new(RouteAll(Default::default()))));
    }
    steady_allocs(&stack, &sent)
}

/// Allocations on the worker's thread, and frames `sent` counts, over
/// 2,000 polls (the clock 1 ms on every 100) of a worker on `stack`
/// warmed by 200 polls (caches filled, staging vectors at their size).
fn steady_allocs(stack: &Arc<Stack>, sent: &CacheAligned<Counter>) -> (u64, u64) {
    let clock = Arc::new(ManualClock::new(Instant::from_secs(10)));
    let dynclock: Arc<dyn Clock> = clock.clone();
    let mut w = Worker::new(0, stack.clone(), dynclock);
    // Warm up: caches fill, staging vectors reach their size.
    for _ in 0..200 {
        w.poll();
    }
    WATCHED.with(|w| w.set(true));
    let before = ALLOCS.with(|a| a.get());
    let sent_before = sent.0.get();
    for i in 0..2000 {
        if i % 100 == 0 {
            clock.advance(std::time::Duration::from_millis(1));
        }
        w.poll();
    }
    let allocs = ALLOCS.with(|a| a.get()) - before;
    WATCHED.with(|w| w.set(false));
    let forwarded = sent.0.get() - sent_before;
    (allocs, forwarded)
}

/// The neighbor cache's data path: resolving known neighbors — from the
/// worker cache, through the table when the cache misses (300 neighbors
/// for 64 slots), and with STALE entries moving to DELAY — allocates
/// nothing.
#[test]
fn neighbor_resolution_allocates_nothing_for_known_neighbors() {
    use softnet_core::iface::{Dad6State, If6Addr};
    use softnet_core::nd6::{Nd6Config, Nd6Input, Nd6Resolve, Nd6Stats, Nd6Table, Nd6WorkerCache};
    use softnet_core::packet::PacketBuf;
    use softnet_wire::ndp::NaFlags;
    use std::net::Ipv6Addr;

    let stack = Stack::new(StackConfig { workers: 1, pool_size: 16, ..StackConfig::default() });
    let ifp =
        stack.create_interface("r0", R0_MAC, 1500, vec![Box::new(SinkQueue::new()) as Box<dyn LinkQueue>]).unwrap();
    let mine: Ipv6Addr = "fd00:1::1".parse().unwrap();
    ifp.set_addrs6(vec![If6Addr { addr: mine, prefix_len: 64, state: Dad6State::Preferred }]);
    let nd = Nd6Table::new(Nd6Config::default(), 1 << 31);
    let stats = Nd6Stats::default();
    let mut cache = Nd6WorkerCache::new();
    let mut out = Nd6Input::new();
    let neighbors: Vec<Ipv6Addr> = (0..300u16).map(|i| Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 1, i)).collect();
    let t0 = Instant::from_secs(100);
    let mut frame = Some(PacketBuf::from_slice(&[0u8; 60]));
    for (i, n) in neighbors.iter().enumerate() {
        let _ = nd.resolve(t0, &ifp, *n, mine, PacketBuf::from_slice(&[0u8; 60]), &mut cache, &stats);
        let mac = softnet_wire::ethernet::MacAddr([2, 0xaa, 0, 0, (i >> 8) as u8, i as u8]);
        let solicited = i % 2 == 0; // half REACHABLE, half STALE
        let flags = NaFlags { router: false, solicited, override_: true };
        nd.na_input(t0, &ifp, *n, flags, Some(mac), &stats, &mut out);
        out.clear();
    }
    let mut resolve_all = |now: Instant, frame: &mut Option<PacketBuf>| {
        let mut hits = 0u64;
        for n in &neighbors {
            match nd.resolve(now, &ifp, *n, mine, frame.take().unwrap(), &mut cache, &stats) {
                Nd6Resolve::Resolved(_, f) => {
                    hits += 1;
                    *frame = Some(f);
                }
                other => panic!("{n} not resolved: {other:?}"),
            }
        }
        hits
    };
    // Warm up (STALE entries go to DELAY here).
    resolve_all(t0 + std::time::Duration::from_millis(10), &mut frame);
    WATCHED.with(|w| w.set(true));
    let before = ALLOCS.with(|a| a.get());
    let mut hits = 0;
    for i in 0..200u64 {
        hits += resolve_all(t0 + std::time::Duration::from_millis(20 + i), &mut frame);
    }
    let allocs = ALLOCS.with(|a| a.get()) - before;
    WATCHED.with(|w| w.set(false));
    assert_eq!(hits, 300 * 200);
    assert_eq!(allocs, 0, "{allocs} allocations resolving {hits} packets");
}

/// IPv6 forwarding (ip6_input, ip6_forward, ether_out6 through the
/// worker's neighbor cache) allocates nothing per packet either.
#[test]
fn ipv6_forwarding_allocates_nothing_per_packet_in_steady_state() {
    use softnet_core::stack::RouteTarget6;
    use softnet_wire::ipv6::Ipv6Repr;
    use std::net::Ipv6Addr;

    let stack = Stack::new(StackConfig { workers: 1, pool_size: 512, ..StackConfig::default() });
    let src: Ipv6Addr = "fd00:1::2".parse().unwrap();
    let b: Ipv6Addr = "fd00:2::2".parse().unwrap();
    // 1,000 flows over 100 /48s via B.
    let frames: Vec<Vec<u8>> = (0..1000u32)
        .map(|j| {
            let dst = Ipv6Addr::from((0x2400u128 << 112) | (((j % 100) as u128) << 80) | (1 + j / 100) as u128);
            let ip = Ipv6Repr {
                src,
                dst,
                next_header: softnet_wire::ipv4::IpProtocol::UDP,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                payload_len: 26,
            };
            let mut f = vec![0u8; 14 + ip.buffer_len()];
            f[0..6].copy_from_slice(&R0_MAC.0);
            f[6..12].copy_from_slice(&A_MAC.0);
            f[12..14].copy_from_slice(&[0x86, 0xdd]);
            ip.emit(&mut f[14..]);
            f[54..56].copy_from_slice(&(20000 + j as u16).to_be_bytes());
            f[56..58].copy_from_slice(&9000u16.to_be_bytes());
            f[58..60].copy_from_slice(&26u16.to_be_bytes());
            f
        })
        .collect();
    let sink = SinkQueue::new();
    let sent = sink.sent.clone();
    stack
        .create_interface("r0", R0_MAC, 1500, vec![Box::new(GeneratorQueue::new(frames)) as Box<dyn LinkQueue>])
        .unwrap();
    stack.create_interface("r1", R1_MAC, 1500, vec![Box::new(sink) as Box<dyn LinkQueue>]).unwrap();
    stack.add_address6("r0", "fd00:1::1".parse().unwrap(), 64).unwrap();
    stack.add_address6("r1", "fd00:2::1".parse().unwrap(), 64).unwrap();
    stack.set_up("r0", true).unwrap();
    stack.set_up("r1", true).unwrap();
    stack.ndp_set(b, None, B_MAC, false, false).unwrap();
    for r in 0..100u128 {
        let dest = Ipv6Addr::from((0x2400u128 << 112) | (r << 80));
        stack.add_route6(0, dest, 48, None, &RouteTarget6::Gateway(b, None)).unwrap();
    }
    let (allocs, forwarded) = steady_allocs(&stack, &sent);
    assert!(forwarded >= 2000 * 60, "forwarded only {forwarded}");
    assert_eq!(allocs, 0, "{allocs} allocations while forwarding {forwarded} IPv6 packets");
}

/// Passes everything (pf's hooks run, nothing changes).
struct PassAll;
impl softnet_core::filter::PacketFilter for PassAll {
    fn test(
        &self,
        _worker: usize,
        _now: Instant,
        _dir: softnet_core::filter::Direction,
        _ifp: &softnet_core::iface::Interface,
        pkt: softnet_core::packet::PacketBuf,
        _bufs: &mut dyn softnet_core::filter::BufferSource,
        _replies: &mut softnet_core::filter::FilterReplies,
    ) -> softnet_core::filter::Verdict {
        softnet_core::filter::Verdict::Pass(pkt)
    }
}

/// The host twin's data path (softnet_core::hostif): punting UDP for the
/// router to the twin, and sending the host's UDP and answering its ARP
/// requests through pf out, allocate nothing once warm.
#[test]
fn punting_and_the_hosts_traffic_allocate_nothing_in_steady_state() {
    use softnet_wire::arp::{ArpOperation, ArpRepr};
    use softnet_wire::ethernet::{EtherType, EthernetRepr, MacAddr, HEADER_LEN};
    let stack = Stack::new(StackConfig { workers: 1, pool_size: 512, ..StackConfig::default() });
    let (_, a_port) = vlink::wire(1, 1);
    let mut a = Host::new("A", A_MAC, IfAddr::new(A_IP, 24), Some(R0_IP), a_port);
    let to_router: Vec<Vec<u8>> = (0..64u16).map(|j| a.udp_frame(R0_MAC, R0_IP, 30000 + j, 179, 40)).collect();
    // The host's frames: UDP to A at A's MAC (the Ethernet source is the
    // twin's, r0's MAC), and an ARP request for A now and then.
    let mut from_host: Vec<Vec<u8>> = (0..63u16)
        .map(|j| {
            let mut f = a.udp_frame(MacAddr::ZERO, A_IP, 179, 30000 + j, 40);
            EthernetRepr { src: R0_MAC, dst: A_MAC, ethertype: EtherType::IPV4, vlan: None }.emit(&mut f);
            f
        })
        .collect();
    let req = ArpRepr {
        operation: ArpOperation::Request,
        sender_hw: R0_MAC,
        sender_ip: R0_IP,
        target_hw: MacAddr::ZERO,
        target_ip: A_IP,
    };
    let mut arp = vec![0u8; 60];
    EthernetRepr { src: R0_MAC, dst: MacAddr::BROADCAST, ethertype: EtherType::ARP, vlan: None }.emit(&mut arp);
    req.emit(&mut arp[HEADER_LEN..HEADER_LEN + ArpRepr::LEN]);
    from_host.push(arp);
    stack
        .create_interface("r0", R0_MAC, 1500, vec![Box::new(GeneratorQueue::new(to_router)) as Box<dyn LinkQueue>])
        .unwrap();
    stack.attach_host("r0", "hr0", vec![Box::new(GeneratorQueue::new(from_host)) as Box<dyn LinkQueue>]).unwrap();
    stack.add_address("r0", IfAddr::new(R0_IP, 24)).unwrap();
    stack.set_up("r0", true).unwrap();
    stack.arp_add_static(A_IP, A_MAC).unwrap();
    stack.set_filter(Some(Box::new(PassAll)));
    let clock = Arc::new(ManualClock::new(Instant::from_secs(10)));
    let dynclock: Arc<dyn Clock> = clock.clone();
    let mut w = Worker::new(0, stack.clone(), dynclock);
    for _ in 0..200 {
        w.poll();
    }
    let host = stack.ifaces.load().by_name("r0").unwrap().host().unwrap().clone();
    let s0 = host.stats_total();
    WATCHED.with(|w| w.set(true));
    let before = ALLOCS.with(|a| a.get());
    for i in 0..2000 {
        if i % 100 == 0 {
            clock.advance(std::time::Duration::from_millis(1));
        }
        w.poll();
    }
    let allocs = ALLOCS.with(|a| a.get()) - before;
    WATCHED.with(|w| w.set(false));
    let s = host.stats_total();
    let (punted, sent, arp) = (s.punted - s0.punted, s.transmitted - s0.transmitted, s.arp_answered - s0.arp_answered);
    assert!(punted >= 2000 * 60 && sent >= 2000 * 60 && arp >= 2000, "punted {punted} sent {sent} arp {arp}");
    assert_eq!((s.dropped, s.punt_errors, s.filtered), (0, 0, 0));
    assert_eq!(allocs, 0, "{allocs} allocations while punting {punted}, sending {sent}, answering {arp}");
}

/// A short connection's life on the server (issue 13's connections per
/// second: accept, a 1 KB response, close), counted: the heap allocations
/// the server's side makes for one connection from its SYN to the end of
/// its TIME_WAIT (its worker's rounds and the application's accept, write
/// and close), and the frames it sends. Two stacks in memory
/// (`common::two_stacks`: A the client 10.0.0.1, B the server 10.0.0.2),
/// one worker each, driven round by round from the test's thread; only
/// B's work is watched.
mod connlife {
    use super::common::{two_stacks_with, TwoStacks};
    use super::{ALLOCS, BYTES, WATCHED};
    use softnet_core::link::LinkQueue;
    use softnet_core::packet::{PacketBuf, PacketPool};
    use softnet_core::sock::api::{TcpListener, TcpStream};
    use softnet_core::worker::Worker;
    use std::cell::Cell;
    use std::io::{ErrorKind, Read, Write};
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Runs `f` as the server's work (counted).
    fn server<T>(f: impl FnOnce() -> T) -> T {
        WATCHED.with(|w| w.set(true));
        let r = f();
        WATCHED.with(|w| w.set(false));
        r
    }

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

    const RESPONSE: [u8; 1024] = [b'x'; 1024];

    /// Connections counted (after as many to warm the tables up).
    const N: u64 = 256;
    /// Connections open at once (the benchmark's 4 client threads, and more).
    const AT_ONCE: usize = 8;

    #[test]
    fn a_short_connections_server_side_allocations_and_frames() {
        let b_sent = Arc::new(AtomicU64::new(0));
        let TwoStacks { clock, a, b, mut wa, mut wb } = two_stacks_with(4096, 4096, |q, side| match side {
            1 => q
                .into_iter()
                .map(|inner| Box::new(Counted { inner, sent: b_sent.clone() }) as Box<dyn LinkQueue>)
                .collect(),
            _ => q,
        });
        let addr: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let mut l = server(|| TcpListener::bind_with_backlog(&b, addr, 128).unwrap());
        l.set_nonblocking(true).unwrap();
        let step = |wa: &mut Worker, wb: &mut Worker| {
            wa.poll();
            server(|| wb.poll());
            clock.advance(Duration::from_micros(100));
        };
        // `n` connections, AT_ONCE at a time: A connects, B accepts, writes
        // 1 KB and closes (NOPUSH, as the benchmark's server), A reads to the
        // end and closes; then the clock runs past B's TIME_WAITs.
        let run = |n: u64, wa: &mut Worker, wb: &mut Worker| {
            let mut done = 0u64;
            let mut clients: Vec<(TcpStream, Vec<u8>)> = Vec::new();
            let mut opened = 0u64;
            let mut rounds = 0;
            while done < n {
                while clients.len() < AT_ONCE && opened < n {
                    clients.push((TcpStream::start_connect(&a, addr).unwrap(), Vec::new()));
                    opened += 1;
                }
                step(wa, wb);
                server(|| loop {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            s.set_nopush(true).unwrap();
                            s.write_all(&RESPONSE).unwrap();
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("accept: {e}"),
                    }
                });
                clients.retain_mut(|(c, got)| {
                    c.set_nonblocking(true).unwrap();
                    let mut buf = [0u8; 2048];
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) => {
                                assert_eq!(got.len(), RESPONSE.len());
                                done += 1;
                                return false;
                            }
                            Ok(k) => got.extend_from_slice(&buf[..k]),
                            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                            Err(e) => panic!("read: {e}"),
                        }
                    }
                });
                rounds += 1;
                assert!(rounds < 100_000, "{done} of {n} connections done");
            }
            // The last FINs and ACKs, then TIME_WAIT (2 MSL, 60 s) runs out.
            for _ in 0..100 {
                step(wa, wb);
            }
            // Each of B's connections waits in TIME_WAIT on the queue of
            // its worker, in the order they entered it, not on the heap
            // (fewer than n when A's random port met one of them again: a
            // SYN reopens a TIME_WAIT connection, RFC 6191).
            let tw = b.socks.tcp_count();
            assert!(tw > n as usize / 2, "{tw} connections in TIME_WAIT");
            // (A reopened one's entry stays until its deadline.)
            let q = b.socks.timer_entries(0).1;
            assert!((tw..=n as usize).contains(&q), "{q} on B's TIME_WAIT queue, {tw} in TIME_WAIT");
            clock.advance(Duration::from_secs(61));
            for _ in 0..100 {
                step(wa, wb);
            }
            assert_eq!(b.socks.tcp_count(), 0, "B's connections all gone after TIME_WAIT");
            assert_eq!(b.socks.timer_entries(0), (0, 0), "nothing left filed");
        };
        run(N, &mut wa, &mut wb);
        super::BT.store(std::env::var_os("CONNLIFE_BT").is_some(), Ordering::Relaxed);
        let (a0, b0, f0) = (ALLOCS.with(Cell::get), BYTES.with(Cell::get), b_sent.load(Ordering::Relaxed));
        run(N, &mut wa, &mut wb);
        let allocs = ALLOCS.with(Cell::get) - a0;
        let bytes = BYTES.with(Cell::get) - b0;
        let frames = b_sent.load(Ordering::Relaxed) - f0;
        eprintln!(
            "server, per connection: {:.2} allocations ({:.0} bytes), {:.2} frames sent",
            allocs as f64 / N as f64,
            bytes as f64 / N as f64,
            frames as f64 / N as f64
        );
        // SYN,ACK; the answer with its FIN; the ACK of the client's FIN
        // (main sent a window update after the handshake too: 4).
        assert_eq!(frames, 3 * N, "frames the server sent");
        // The PCB and the send ring's first 4 KiB (main: 4, the
        // congestion control boxed twice); one more allowed.
        assert!(allocs <= 3 * N, "{allocs} allocations for {N} connections");
    }
}
