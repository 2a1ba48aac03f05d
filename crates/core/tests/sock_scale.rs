//! The socket layer at scale, in memory: per-worker connection tables and
//! SYN caches, the port of a local connection chosen for its worker, and
//! tens of thousands of idle or half-open connections against the
//! stack's limits, each refusal counted.
//!
//! ```text
//!  stack A  a0 10.0.0.1/24 ── wire (one queue per worker) ── b0 10.0.0.2/24  stack B
//! ```

use crate::common;

use parking_lot::Mutex;
use softnet_core::iface::IfAddr;
use softnet_core::link::LinkQueue;
use softnet_core::packet::{PacketBuf, PacketPool};
use softnet_core::rng::FixedEntropy;
use softnet_core::sock::api::{TcpListener, TcpStream};
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::vlink;
use softnet_core::worker::Worker;
use softnet_tcp::State;
use softnet_wire::ethernet::MacAddr;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

/// A queue that receives on one queue of the wire and sends on another:
/// a link whose spread is not the flow's way back (the kernel's seeded
/// fanout hash can do this to a connection softnet opened).
struct Crossed {
    rx: Arc<Mutex<Box<dyn LinkQueue>>>,
    tx: Arc<Mutex<Box<dyn LinkQueue>>>,
}

impl LinkQueue for Crossed {
    fn recv(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.rx.lock().recv(pool, out, max)
    }
    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        self.tx.lock().send(pool, frames)
    }
}

struct Pair {
    clock: Arc<ManualClock>,
    a: Arc<Stack>,
    b: Arc<Stack>,
    wa: Vec<Worker>,
    wb: Vec<Worker>,
    /// A's end of the wire, to put crafted frames on it towards B.
    wire_a: vlink::VirtualPort,
}

impl Pair {
    /// `workers` workers a side, worker i on queue i; with `crossed`, A's
    /// worker i sends on queue i + 1 (mod workers) instead.
    fn new(workers: usize, crossed: bool) -> Pair {
        let clock = Arc::new(ManualClock::new(Instant::from_secs(100)));
        let dynclock: Arc<dyn Clock> = clock.clone();
        let cfg = StackConfig { pool_size: 4096, workers, ..StackConfig::default() };
        let a = Stack::with_clock_and_entropy(cfg.clone(), dynclock.clone(), Arc::new(FixedEntropy::new(1)));
        let b = Stack::with_clock_and_entropy(cfg, dynclock.clone(), Arc::new(FixedEntropy::new(2)));
        let (pa, pb) = vlink::wire(workers, 4096);
        let qa = if crossed {
            let q: Vec<_> = pa.link_queues().into_iter().map(|q| Arc::new(Mutex::new(q))).collect();
            (0..workers)
                .map(|i| Box::new(Crossed { rx: q[i].clone(), tx: q[(i + 1) % workers].clone() }) as Box<dyn LinkQueue>)
                .collect()
        } else {
            pa.link_queues()
        };
        a.create_interface("a0", A_MAC, 1500, qa).unwrap();
        b.create_interface("b0", B_MAC, 1500, pb.link_queues()).unwrap();
        a.add_address("a0", IfAddr::new("10.0.0.1".parse().unwrap(), 24)).unwrap();
        b.add_address("b0", IfAddr::new("10.0.0.2".parse().unwrap(), 24)).unwrap();
        a.set_up("a0", true).unwrap();
        b.set_up("b0", true).unwrap();
        // Neighbours known: no first packet waits for ARP (and leaves from
        // whichever worker hears the reply).
        a.arp_add_static("10.0.0.2".parse().unwrap(), B_MAC).unwrap();
        b.arp_add_static("10.0.0.1".parse().unwrap(), A_MAC).unwrap();
        let wa = (0..workers).map(|i| Worker::new(i, a.clone(), dynclock.clone())).collect();
        let wb = (0..workers).map(|i| Worker::new(i, b.clone(), dynclock.clone())).collect();
        Pair { clock, a, b, wa, wb, wire_a: pa }
    }

    fn step(&mut self, d: Duration) {
        common::step_workers(&self.clock, [&self.a, &self.b], self.wa.iter_mut().chain(self.wb.iter_mut()), d);
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn steermiss(st: &Stack) -> u64 {
    st.stats.sum(|s| &s.transport.tcp_steermiss)
}

/// A writes `n` bytes on `c`, B reads them on `s`, and back.
fn echo(p: &mut Pair, c: &mut TcpStream, s: &mut TcpStream, n: usize) {
    let data: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
    c.set_nonblocking(true).unwrap();
    s.set_nonblocking(true).unwrap();
    for (from, to) in [(0, 1), (1, 0)] {
        let (w, r): (&mut TcpStream, &mut TcpStream) = if from == 0 { (&mut *c, &mut *s) } else { (&mut *s, &mut *c) };
        assert_eq!(w.write(&data).unwrap(), n);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        for _ in 0..1000 {
            p.step(Duration::from_millis(1));
            match r.read(&mut buf) {
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock),
            }
            if got.len() == n {
                break;
            }
        }
        assert_eq!(got, data, "{from} -> {to}");
    }
}

#[test]
fn local_connections_are_spread_over_workers_and_filed_in_their_owners_tables() {
    let mut p = Pair::new(2, false);
    let mut l = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    l.set_nonblocking(true).unwrap();
    let cs: Vec<TcpStream> = (0..8).map(|_| TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap()).collect();
    // Each port chosen for the worker with the fewest connections: the
    // eight alternate between the two workers (port parity).
    let parity: Vec<u16> = cs.iter().map(|c| c.local_addr().unwrap().port() % 2).collect();
    assert_eq!(parity, [0, 1, 0, 1, 0, 1, 0, 1]);
    for _ in 0..50 {
        p.step(Duration::from_millis(1));
    }
    assert!(cs.iter().all(|c| c.state() == State::Established));
    // The SYN left from the worker its port names, the answer came back
    // to it: each side's connections are in their owners' tables, four
    // each, and no segment was processed off its connection's worker.
    assert_eq!(p.a.socks.tcp_count_per_worker(), [4, 4]);
    assert_eq!(p.b.socks.tcp_count_per_worker(), [4, 4]);
    assert_eq!((p.a.socks.tcp_count(), p.b.socks.tcp_count()), (8, 8));
    assert_eq!((steermiss(&p.a), steermiss(&p.b)), (0, 0));
    let sc = &p.b.socks.syncache.stats;
    assert_eq!((sc.added.load(Ordering::Relaxed), sc.completed.load(Ordering::Relaxed)), (8, 8));
    let mut ss: Vec<TcpStream> = (0..8).map(|_| l.accept().unwrap().0).collect();
    let mut cs = cs;
    for c in cs.iter_mut().take(2) {
        let me = c.local_addr().unwrap();
        let s = ss.iter_mut().find(|s| s.peer_addr().unwrap() == me).unwrap();
        echo(&mut p, c, s, 3000);
    }
    assert_eq!((steermiss(&p.a), steermiss(&p.b)), (0, 0));
    // A closes first, then B: B's side leaves every table, A's waits in
    // TIME_WAIT, still in its owners' tables.
    drop(cs);
    for _ in 0..20 {
        p.step(Duration::from_millis(1));
    }
    drop(ss);
    for _ in 0..20 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!((p.b.socks.tcp_count_per_worker(), p.b.socks.tcp_count()), (vec![0, 0], 0));
    assert_eq!((p.a.socks.tcp_count_per_worker(), p.a.socks.tcp_count()), (vec![4, 4], 8));
}

#[test]
fn a_connection_answered_on_another_worker_moves_to_its_table() {
    // A's worker 0 sends on queue 1: the answer to its SYN reaches A's
    // worker 1, which claims the connection; its entry moves from worker
    // 0's table to worker 1's. On B the ACK reaches worker 0, whose SYN
    // cache lacks the entry (worker 1 filed it): found in the other cache.
    let mut p = Pair::new(2, true);
    let mut l = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    l.set_nonblocking(true).unwrap();
    let mut c = TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap();
    assert_eq!(c.local_addr().unwrap().port() % 2, 0, "the first connection goes to worker 0");
    assert_eq!(p.a.socks.tcp_count_per_worker(), [1, 0], "filed for the worker sending its SYN");
    for _ in 0..50 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(c.state(), State::Established);
    assert_eq!(p.a.socks.tcp_count_per_worker(), [0, 1], "moved to the worker that claimed it");
    assert_eq!(p.b.socks.tcp_count_per_worker(), [1, 0], "B's: the worker completing the handshake");
    let sc = &p.b.socks.syncache.stats;
    assert_eq!((sc.added.load(Ordering::Relaxed), sc.completed.load(Ordering::Relaxed)), (1, 1));
    assert!(p.b.socks.syncache.is_empty());
    let (mut s, _) = l.accept().unwrap();
    echo(&mut p, &mut c, &mut s, 5000);
    // The crossed link sends B's answers to A's worker 0: processed there,
    // under the connection's lock, and counted.
    assert!(steermiss(&p.a) > 0);
    assert_eq!(p.a.socks.tcp_count(), 1);
}

/// Opens `n` connections from A to `server` and accepts them on B,
/// `batch` at a time. Returns A's streams (Established or Closed) and
/// B's accepted ones.
fn open_many(
    p: &mut Pair,
    l: &mut TcpListener,
    server: SocketAddr,
    n: usize,
    batch: usize,
) -> (Vec<TcpStream>, Vec<TcpStream>) {
    let (mut cs, mut ss) = (Vec::with_capacity(n), Vec::new());
    while cs.len() < n {
        let k = batch.min(n - cs.len());
        let first = cs.len();
        for _ in 0..k {
            cs.push(TcpStream::start_connect(&p.a, server).unwrap());
        }
        for _ in 0..100 {
            p.step(Duration::from_millis(1));
            while let Ok((s, _)) = l.accept() {
                ss.push(s);
            }
            if cs[first..].iter().all(|c| c.state() != State::SynSent) {
                break;
            }
        }
        // The last ACKs (and B's RSTs) in flight: a worker takes 64
        // frames a queue a round.
        for _ in 0..30 {
            p.step(Duration::from_millis(1));
            while let Ok((s, _)) = l.accept() {
                ss.push(s);
            }
        }
    }
    (cs, ss)
}

#[test]
fn tens_of_thousands_of_idle_connections_stop_at_the_limit_counted() {
    let mut p = Pair::new(2, false);
    p.b.socks.set_max_connections(20_000);
    let mut l80 = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    let mut l81 = TcpListener::bind(&p.b, sa("10.0.0.2:81")).unwrap();
    l80.set_nonblocking(true).unwrap();
    l81.set_nonblocking(true).unwrap();
    // 24,000 connections (12,000 to each port: a 4-tuple per ephemeral
    // port), left idle: B holds 20,000; the ACK completing each of the
    // other 4,000 handshakes is answered with a RST, counted.
    let (mut cs, mut ss) = open_many(&mut p, &mut l80, sa("10.0.0.2:80"), 12_000, 1000);
    let (cs81, ss81) = open_many(&mut p, &mut l81, sa("10.0.0.2:81"), 12_000, 1000);
    cs.extend(cs81);
    ss.extend(ss81);
    let est = cs.iter().filter(|c| c.state() == State::Established).count();
    let reset = cs.iter().filter(|c| c.state() == State::Closed).count();
    assert_eq!((est, reset, ss.len()), (20_000, 4_000, 20_000));
    let bs = &p.b.socks;
    assert_eq!(bs.tcp_count(), 20_000);
    assert_eq!(bs.tcp_count_per_worker().iter().sum::<usize>(), 20_000);
    assert_eq!(bs.stats.tcp_connlimit.load(Ordering::Relaxed), 4_000);
    assert_eq!(bs.syncache.stats.completed.load(Ordering::Relaxed), 24_000);
    assert!(bs.syncache.is_empty());
    let ns = softnet_core::stats::format_netstat_s_with(&p.b.stats, Some(&p.b.socks));
    assert!(ns.contains("\t4000 connections refused at the connection limit\n"), "{ns}");
    // Idle: an hour of clock changes nothing (no keepalive by default).
    for _ in 0..36 {
        p.step(Duration::from_secs(100));
    }
    assert_eq!(p.b.socks.tcp_count(), 20_000);
    assert_eq!(cs.iter().filter(|c| c.state() == State::Established).count(), 20_000);
    // 1,000 closed by A, then by B, leave B's table (A keeps TIME_WAIT);
    // then 1,000 new connections fit again.
    let keep_c = cs.split_off(1_000);
    let closed: std::collections::HashSet<(SocketAddr, SocketAddr)> =
        cs.iter().map(|c| (c.local_addr().unwrap(), c.peer_addr().unwrap())).collect();
    drop(cs);
    for _ in 0..50 {
        p.step(Duration::from_millis(1));
    }
    let (gone_s, keep_s): (Vec<_>, Vec<_>) =
        ss.into_iter().partition(|s| closed.contains(&(s.peer_addr().unwrap(), s.local_addr().unwrap())));
    assert_eq!(gone_s.len(), 1_000);
    assert!(gone_s.iter().all(|s| s.state() == State::CloseWait));
    drop(gone_s);
    for _ in 0..50 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(p.b.socks.tcp_count(), 19_000);
    let (more, more_s) = open_many(&mut p, &mut l80, sa("10.0.0.2:80"), 1_000, 1000);
    assert_eq!(more.iter().filter(|c| c.state() == State::Established).count(), 1_000);
    assert_eq!((more_s.len(), p.b.socks.tcp_count()), (1_000, 20_000));
    assert_eq!(p.b.socks.stats.tcp_connlimit.load(Ordering::Relaxed), 4_000);
    // A at its own limit: the oldest of the 1,000 it holds in TIME_WAIT
    // makes room for a connect (`tw_recycle`); once TIME_WAIT is over and
    // every place is a live connection, connect fails with ENOBUFS,
    // counted.
    let a_count = p.a.socks.tcp_count();
    assert_eq!(a_count, 21_000, "20,000 established, 1,000 in TIME_WAIT");
    p.a.socks.set_max_connections(a_count);
    let c = TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap();
    assert_eq!(p.a.socks.stats.tcp_tw_recycled.load(Ordering::Relaxed), 1);
    assert_eq!((p.a.socks.tcp_count(), p.a.socks.stats.tcp_connlimit.load(Ordering::Relaxed)), (a_count, 0));
    drop(c);
    for _ in 0..70 {
        p.step(Duration::from_secs(1));
    }
    let a_count = p.a.socks.tcp_count();
    assert_eq!(a_count, 20_000);
    p.a.socks.set_max_connections(a_count);
    let e = TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::OutOfMemory);
    assert_eq!(p.a.socks.stats.tcp_connlimit.load(Ordering::Relaxed), 1);
    assert_eq!(p.a.socks.stats.tcp_tw_recycled.load(Ordering::Relaxed), 1);
    drop((keep_c, keep_s, more, more_s));
}

/// A connects from port `port` (its worker, and B's, the port's parity:
/// the wire's queue) to B's port 80; B accepts it if it can. Returns A's
/// stream and B's.
fn connect_from(p: &mut Pair, l: &mut TcpListener, port: u16) -> (TcpStream, Option<TcpStream>) {
    let local = SocketAddr::new("10.0.0.1".parse().unwrap(), port);
    let c = TcpStream::start_connect_from(&p.a, local, sa("10.0.0.2:80")).unwrap();
    for _ in 0..30 {
        p.step(Duration::from_millis(1));
    }
    let s = l.accept().ok().map(|(s, _)| s);
    (c, s)
}

/// B's connections with their states, by A's port.
fn b_conns(p: &Pair) -> Vec<(u16, State)> {
    let mut v: Vec<_> =
        p.b.socks.tcp_snapshot().into_iter().filter_map(|i| Some((i.remote?.port(), i.state))).collect();
    v.sort_by_key(|c| c.0);
    v
}

fn tw_recycled(st: &Stack) -> u64 {
    st.socks.stats.tcp_tw_recycled.load(Ordering::Relaxed)
}

fn connlimit(st: &Stack) -> u64 {
    st.socks.stats.tcp_connlimit.load(Ordering::Relaxed)
}

#[test]
fn a_server_closing_first_at_the_limit_recycles_its_oldest_time_wait() {
    // B, the server, closes first: every connection it served waits in
    // TIME_WAIT on B for 2MSL, holding a place under B's limit. At the
    // limit the oldest TIME_WAIT on the worker completing the handshake
    // gives its place to the new connection (FreeBSD's
    // tcp_tw_2msl_scan(reuse)), another worker's when that one has none;
    // only a limit full of live connections refuses.
    let mut p = Pair::new(2, false);
    p.b.socks.set_max_connections(6);
    let mut l = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    l.set_nonblocking(true).unwrap();
    // Six served and closed by B first, a second apart: ports 40000..=40005,
    // even ones on B's worker 0, odd ones on worker 1.
    for port in 40_000..40_006 {
        let (c, s) = connect_from(&mut p, &mut l, port);
        assert_eq!(c.state(), State::Established, "{port}");
        drop(s.expect("accepted"));
        for _ in 0..20 {
            p.step(Duration::from_millis(1));
        }
        assert_eq!(c.state(), State::CloseWait, "{port}");
        drop(c);
        for _ in 0..20 {
            p.step(Duration::from_millis(1));
        }
        p.step(Duration::from_secs(1));
    }
    assert_eq!(b_conns(&p), (40_000..40_006).map(|port| (port, State::TimeWait)).collect::<Vec<_>>());
    assert_eq!((p.b.socks.tcp_count(), p.a.socks.tcp_count()), (6, 0));
    assert_eq!((p.b.socks.timer_entries(0).1, p.b.socks.timer_entries(1).1), (3, 3), "on their workers' queues");
    assert_eq!((tw_recycled(&p.b), connlimit(&p.b)), (0, 0));

    // A seventh (port 40010, B's worker 0) takes the place of worker 0's
    // oldest TIME_WAIT, 40000's.
    let (c10, s10) = connect_from(&mut p, &mut l, 40_010);
    assert_eq!(c10.state(), State::Established);
    let s10 = s10.expect("accepted, not reset");
    assert_eq!((tw_recycled(&p.b), connlimit(&p.b), p.b.socks.tcp_count()), (1, 0, 6));
    let tw = |p: &Pair| b_conns(p).into_iter().filter(|c| c.1 == State::TimeWait).map(|c| c.0).collect::<Vec<_>>();
    assert_eq!(tw(&p), [40_001, 40_002, 40_003, 40_004, 40_005]);

    // A limit lowered under the count closes nothing and recycles nothing:
    // the next one is refused (its handshake reset), counted.
    p.b.socks.set_max_connections(5);
    let (c, s) = connect_from(&mut p, &mut l, 40_020);
    assert!(s.is_none());
    assert_eq!(c.state(), State::Closed, "reset");
    assert_eq!((tw_recycled(&p.b), connlimit(&p.b), p.b.socks.tcp_count()), (1, 1, 6));
    p.b.socks.set_max_connections(6);

    // Worker 0's other two, oldest first; then worker 0 has none left and
    // worker 1's oldest (40001) goes.
    let mut keep = vec![(c10, s10)];
    for (port, gone) in [(40_012, 40_002), (40_014, 40_004), (40_016, 40_001)] {
        let (c, s) = connect_from(&mut p, &mut l, port);
        assert_eq!(c.state(), State::Established, "{port}");
        keep.push((c, s.expect("accepted")));
        assert!(!tw(&p).contains(&gone), "{port} took {gone}'s place: {:?}", b_conns(&p));
    }
    assert_eq!(tw(&p), [40_003, 40_005]);
    assert_eq!((p.b.socks.timer_entries(0).1, p.b.socks.timer_entries(1).1), (0, 2));
    // The last two TIME_WAITs go to two more; then B holds six live
    // connections and the next is refused.
    for port in [40_018, 40_019] {
        let (c, s) = connect_from(&mut p, &mut l, port);
        keep.push((c, s.expect("accepted")));
    }
    assert!(tw(&p).is_empty());
    let (c, s) = connect_from(&mut p, &mut l, 40_021);
    assert!(s.is_none());
    assert_eq!(c.state(), State::Closed, "reset");
    assert_eq!((tw_recycled(&p.b), connlimit(&p.b), p.b.socks.tcp_count()), (6, 2, 6));
    assert!(keep.iter().all(|(c, _)| c.state() == State::Established));
    let ns = softnet_core::stats::format_netstat_s_with(&p.b.stats, Some(&p.b.socks));
    assert!(ns.contains("\t6 connections in TIME_WAIT recycled at the connection limit\n"), "{ns}");
    assert!(ns.contains("\t2 connections refused at the connection limit\n"), "{ns}");
    // The recycled ones left nothing behind: past their 2MSL no queue
    // entry is left, and the six live ones are untouched.
    for _ in 0..70 {
        p.step(Duration::from_secs(1));
    }
    assert_eq!((p.b.socks.timer_entries(0).1, p.b.socks.timer_entries(1).1), (0, 0));
    assert_eq!(p.b.socks.tcp_count(), 6);
    assert!(keep.iter().all(|(c, s)| c.state() == State::Established && s.state() == State::Established));
}

/// A SYN from `src:sport` to B's 10.0.0.2:80 as it arrives on B's wire.
fn syn_frame(src: Ipv4Addr, sport: u16, seq: u32) -> Vec<u8> {
    use softnet_wire::ethernet::{EtherType, EthernetRepr, HEADER_LEN};
    use softnet_wire::ipv4::{IpProtocol, Ipv4Repr};
    use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
    let dst: Ipv4Addr = "10.0.0.2".parse().unwrap();
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: 80,
        seq,
        ack: 0,
        flags: TcpFlags::SYN,
        window: 65535,
        max_seg_size: Some(1460),
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    };
    let tl = tcp.buffer_len();
    let mut f = vec![0u8; HEADER_LEN + 20 + tl];
    EthernetRepr { src: MacAddr([2, 0, 0, 0, 0, 0x66]), dst: B_MAC, ethertype: EtherType::IPV4, vlan: None }
        .emit(&mut f);
    let ip = Ipv4Repr {
        src,
        dst,
        protocol: IpProtocol::TCP,
        ttl: 64,
        tos: 0,
        ident: sport,
        dont_frag: true,
        payload_len: tl,
    };
    ip.emit(&mut f[HEADER_LEN..HEADER_LEN + 20]);
    tcp.emit(&mut f[HEADER_LEN + 20..]);
    TcpPacket::new_unchecked(&mut f[HEADER_LEN + 20..]).fill_checksum(src, dst);
    f
}

#[test]
fn a_flood_of_tens_of_thousands_of_half_open_connections_costs_the_cache_limit() {
    let mut p = Pair::new(2, false);
    let _l = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    // The flood's source answers nothing: B's SYN,ACKs go to a MAC no one
    // has (A's interface ignores them).
    let spoofed: Ipv4Addr = "10.0.0.66".parse().unwrap();
    p.b.arp_add_static(spoofed, MacAddr([2, 0, 0, 0, 0, 0x66])).unwrap();
    let limit = softnet_core::sock::syncache::DEFAULT_LIMIT;
    let n: u32 = 30_000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        for &i in chunk {
            let sport = 20_000 + i as u16;
            // On the queue its flow would hash to (here: the port's parity).
            assert!(p.wire_a.send(usize::from(sport % 2), &syn_frame(spoofed, sport, i.wrapping_mul(7919))));
        }
        for _ in 0..40 {
            p.step(Duration::from_micros(100));
        }
    }
    let b = p.b.clone();
    let sc = &b.socks.syncache.stats;
    let (added, overflow) = (sc.added.load(Ordering::Relaxed), sc.overflow.load(Ordering::Relaxed));
    // Each worker's cache holds its share of OpenBSD's limit; the rest
    // were answered with cookies and cost nothing.
    assert_eq!(added, 2 * limit.div_ceil(2) as u64);
    assert_eq!(p.b.socks.syncache.len() as u64, added);
    assert_eq!(added + overflow, u64::from(n));
    assert_eq!(sc.cookies_sent.load(Ordering::Relaxed), overflow);
    assert_eq!(p.b.socks.tcp_count(), 0, "no connection for a half-open one");
    // A real client still gets in, through a cookie.
    let c = TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap();
    for _ in 0..50 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(c.state(), State::Established);
    assert_eq!(sc.cookies_ok.load(Ordering::Relaxed), 1);
    // Four retransmissions (1 + 2 + 4 + 8 s, then 16 s more): all gone.
    for _ in 0..40 {
        p.step(Duration::from_secs(1));
    }
    assert_eq!(p.b.socks.syncache.len(), 0);
    assert_eq!(sc.timed_out.load(Ordering::Relaxed), added);
    let ns = softnet_core::stats::format_netstat_s_with(&p.b.stats, Some(&p.b.socks));
    // (the real client's SYN among them)
    assert!(ns.contains(&format!("\t\t{} not added, the cache full (a cookie sent)\n", overflow + 1)), "{ns}");
    drop(c);
}
