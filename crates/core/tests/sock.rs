//! The socket layer in memory: two softnet stacks on one virtual wire
//! (ARP / NDP between them, each with one worker on a manual clock and a
//! fixed seed), driven round by round from this thread with non-blocking
//! sockets. Whole TCP transfers over IPv4 and IPv6, on a clean wire and on
//! one that loses and reorders frames; a closed port refused; the listen
//! backlog; UDP both ways.
//!
//! ```text
//!  stack A  a0 10.0.0.1/24 fd00::1/64 ── wire ── b0 10.0.0.2/24 fd00::2/64  stack B
//! ```

use crate::common;

use softnet_core::iface::IfAddr;
use softnet_core::link::LinkQueue;
use softnet_core::packet::{PacketBuf, PacketPool};
use softnet_core::rng::FixedEntropy;
use softnet_core::sock::api::{TcpListener, TcpStream, UdpSocket};
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::vlink;
use softnet_core::worker::Worker;
use softnet_tcp::State;
use softnet_wire::ethernet::MacAddr;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A link queue that loses and reorders what it sends, from a seeded
/// generator (xorshift), so a run is repeatable.
struct Lossy {
    inner: Box<dyn LinkQueue>,
    state: u64,
    /// Per mille of frames lost.
    loss: u64,
    /// Per mille of frames held back and sent after the next one.
    reorder: u64,
    held: Vec<PacketBuf>,
    lost: Arc<AtomicU64>,
}

impl Lossy {
    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % 1000
    }
}

impl LinkQueue for Lossy {
    fn recv(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.inner.recv(pool, out, max)
    }
    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        let n = frames.len();
        let mut keep: Vec<PacketBuf> = Vec::with_capacity(n + 1);
        for p in frames.drain(..) {
            let r = self.next();
            if r < self.loss {
                self.lost.fetch_add(1, Ordering::Relaxed);
                pool.free(p);
            } else if r < self.loss + self.reorder && self.held.is_empty() {
                self.held.push(p);
            } else {
                keep.push(p);
                keep.append(&mut self.held);
            }
        }
        self.inner.send(pool, &mut keep);
        n
    }
}

const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

struct Pair {
    clock: Arc<ManualClock>,
    a: Arc<Stack>,
    b: Arc<Stack>,
    /// Each stack's workers (worker i uses queue i of the wire).
    wa: Vec<Worker>,
    wb: Vec<Worker>,
    /// Frames the wire lost, both ways.
    lost: Arc<AtomicU64>,
    /// B's end of the wire, to put crafted frames on it towards A.
    wire_b: vlink::VirtualPort,
}

impl Pair {
    /// Two stacks; `loss` and `reorder` in per mille on both directions.
    fn new(loss: u64, reorder: u64) -> Pair {
        Self::with_workers(loss, reorder, 1)
    }

    /// With `workers` workers on each side and as many queues on the wire.
    fn with_workers(loss: u64, reorder: u64, workers: usize) -> Pair {
        let clock = Arc::new(ManualClock::new(Instant::from_secs(100)));
        let dynclock: Arc<dyn Clock> = clock.clone();
        let cfg = StackConfig { pool_size: 2048, workers, ..StackConfig::default() };
        let a = Stack::with_clock_and_entropy(cfg.clone(), dynclock.clone(), Arc::new(FixedEntropy::new(1)));
        let b = Stack::with_clock_and_entropy(cfg, dynclock.clone(), Arc::new(FixedEntropy::new(2)));
        let (pa, pb) = vlink::wire(workers, 4096);
        let lost = Arc::new(AtomicU64::new(0));
        let lossy = |q: Vec<Box<dyn LinkQueue>>, seed: u64| -> Vec<Box<dyn LinkQueue>> {
            q.into_iter()
                .map(|inner| {
                    Box::new(Lossy { inner, state: seed, loss, reorder, held: Vec::new(), lost: lost.clone() })
                        as Box<dyn LinkQueue>
                })
                .collect()
        };
        a.create_interface("a0", A_MAC, 1500, lossy(pa.link_queues(), 0x9e3779b97f4a7c15)).unwrap();
        b.create_interface("b0", B_MAC, 1500, lossy(pb.link_queues(), 0x2545f4914f6cdd1d)).unwrap();
        a.add_address("a0", IfAddr::new("10.0.0.1".parse().unwrap(), 24)).unwrap();
        b.add_address("b0", IfAddr::new("10.0.0.2".parse().unwrap(), 24)).unwrap();
        a.add_address6("a0", "fd00::1".parse().unwrap(), 64).unwrap();
        b.add_address6("b0", "fd00::2".parse().unwrap(), 64).unwrap();
        a.set_up("a0", true).unwrap();
        b.set_up("b0", true).unwrap();
        let wa = (0..workers).map(|i| Worker::new(i, a.clone(), dynclock.clone())).collect();
        let wb = (0..workers).map(|i| Worker::new(i, b.clone(), dynclock.clone())).collect();
        let mut p = Pair { clock, a, b, wa, wb, lost, wire_b: pb };
        // DAD: the IPv6 addresses become preferred.
        for _ in 0..40 {
            p.step(Duration::from_millis(100));
        }
        p
    }

    /// One round of both workers (and the control side's timers every
    /// 100 ms of clock), then the clock moves by `d`.
    fn step(&mut self, d: Duration) {
        common::step_workers(&self.clock, [&self.a, &self.b], self.wa.iter_mut().chain(self.wb.iter_mut()), d);
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The byte at offset `i` of the test stream.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

/// A sends `len` bytes to B's listener and closes; B reads them all,
/// checks them, answers with a short reply and closes. Returns the rounds
/// it took.
fn transfer(p: &mut Pair, server: SocketAddr, len: usize) -> usize {
    let mut l = TcpListener::bind(&p.b, server).unwrap();
    l.set_nonblocking(true).unwrap();
    let mut c = TcpStream::start_connect(&p.a, server).unwrap();
    c.set_nonblocking(true).unwrap();
    let (mut sent, mut got, mut reply) = (0usize, 0usize, Vec::new());
    let mut s: Option<TcpStream> = None;
    let mut buf = vec![0u8; 16384];
    let mut chunk = vec![0u8; 16384];
    let mut client_shut = false;
    let mut server_done = false;
    for round in 0..2_000_000 {
        p.step(Duration::from_micros(50));
        if s.is_none() {
            match l.accept() {
                Ok((mut st, peer)) => {
                    assert_eq!(peer, c.local_addr().unwrap());
                    assert_eq!(st.local_addr().unwrap(), server);
                    st.set_nonblocking(true).unwrap();
                    s = Some(st);
                }
                Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock),
            }
        }
        if c.state() == State::Established || c.state() == State::CloseWait {
            while sent < len {
                let n = (len - sent).min(chunk.len());
                for (k, b) in chunk[..n].iter_mut().enumerate() {
                    *b = pattern(sent + k);
                }
                match c.write(&chunk[..n]) {
                    Ok(w) => sent += w,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("write: {e}"),
                }
            }
            if sent == len && !client_shut {
                c.shutdown(std::net::Shutdown::Write).unwrap();
                client_shut = true;
            }
        }
        if let Some(st) = s.as_mut() {
            if !server_done {
                loop {
                    match st.read(&mut buf) {
                        Ok(0) => {
                            assert_eq!(got, len, "server saw EOF early");
                            st.write_all(b"thanks").unwrap();
                            server_done = true;
                            break;
                        }
                        Ok(n) => {
                            for (k, b) in buf[..n].iter().enumerate() {
                                assert_eq!(*b, pattern(got + k), "byte {} differs", got + k);
                            }
                            got += n;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("server read: {e}"),
                    }
                }
            }
        }
        if server_done && s.is_some() {
            // close(): the reply then FIN go out by themselves.
            s = None;
        }
        if client_shut {
            match c.read(&mut buf) {
                Ok(0) => {
                    assert_eq!(reply, b"thanks");
                    return round;
                }
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("client read: {e}"),
            }
        }
    }
    panic!("transfer did not finish: sent {sent} got {got} client {:?}", c.state());
}

/// After 2MSL nothing is left in either table.
fn drain(p: &mut Pair) {
    for _ in 0..700 {
        p.step(Duration::from_millis(100));
    }
    assert!(p.a.socks.tcp_snapshot().is_empty(), "A: {:?}", p.a.socks.tcp_snapshot());
    assert!(p.b.socks.tcp_snapshot().is_empty(), "B: {:?}", p.b.socks.tcp_snapshot());
}

#[test]
fn tcp_transfer_over_ipv4() {
    let mut p = Pair::new(0, 0);
    transfer(&mut p, sa("10.0.0.2:80"), 1 << 20);
    // The closing side that sent the last FIN first (A) is in TIME_WAIT.
    let a = p.a.socks.tcp_snapshot();
    assert!(a.iter().any(|x| x.state == State::TimeWait), "{a:?}");
    drain(&mut p);
}

#[test]
fn tcp_transfer_over_ipv6() {
    let mut p = Pair::new(0, 0);
    transfer(&mut p, sa("[fd00::2]:8080"), 300_000);
    drain(&mut p);
}

#[test]
fn tcp_transfer_under_loss_and_reordering() {
    // 2 % of frames lost and 2 % reordered each way.
    let mut p = Pair::new(20, 20);
    transfer(&mut p, sa("10.0.0.2:80"), 1 << 20);
    let lost = p.lost.load(Ordering::Relaxed);
    assert!(lost > 20, "the wire lost {lost} frames");
    drain(&mut p);
    let mut p = Pair::new(20, 20);
    transfer(&mut p, sa("[fd00::2]:80"), 256 * 1024);
    drain(&mut p);
}

#[test]
fn connect_to_a_closed_port_is_refused_and_bind_checks_addresses() {
    let mut p = Pair::new(0, 0);
    let c = TcpStream::start_connect(&p.a, sa("10.0.0.2:81")).unwrap();
    for _ in 0..100 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(c.state(), State::Closed);
    let mut c = c;
    c.set_nonblocking(true).unwrap();
    let e = c.read(&mut [0u8; 10]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    assert_eq!(p.b.stats.sum(|s| &s.transport.tcp_sndrst), 1);
    // Not an address of B; the port taken.
    assert_eq!(TcpListener::bind(&p.b, sa("10.0.0.9:80")).err().unwrap().kind(), ErrorKind::AddrNotAvailable);
    let _l = TcpListener::bind(&p.b, sa("0.0.0.0:80")).unwrap();
    assert_eq!(TcpListener::bind(&p.b, sa("0.0.0.0:80")).err().unwrap().kind(), ErrorKind::AddrInUse);
    assert_eq!(TcpStream::start_connect(&p.a, sa("192.0.2.1:80")).err().unwrap().kind(), ErrorKind::HostUnreachable);
}

#[test]
fn a_full_accept_queue_drops_syns_and_resets_late_handshakes() {
    let mut p = Pair::new(0, 0);
    let mut l = TcpListener::bind_with_backlog(&p.b, sa("10.0.0.2:80"), 2).unwrap();
    l.set_nonblocking(true).unwrap();
    let b = p.b.clone();
    let drops = || b.socks.stats.tcp_listendrop.load(Ordering::Relaxed);
    // Three SYNs find the queue empty: three cache entries; the third ACK
    // finds it full and is reset (syn_cache_get's resetandabort).
    let cs: Vec<TcpStream> = (0..3).map(|_| TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap()).collect();
    for _ in 0..200 {
        p.step(Duration::from_millis(1));
    }
    let b = p.b.clone();
    let sc = &b.socks.syncache.stats;
    assert_eq!((sc.added.load(Ordering::Relaxed), sc.completed.load(Ordering::Relaxed)), (3, 3));
    assert!(p.b.socks.syncache.is_empty());
    let states: Vec<State> = cs.iter().map(|c| c.state()).collect();
    assert_eq!(states.iter().filter(|s| **s == State::Established).count(), 2, "{states:?}");
    assert_eq!(states.iter().filter(|s| **s == State::Closed).count(), 1, "{states:?}");
    assert_eq!(drops(), 1);
    // While the queue is full a SYN is dropped; the client's SYN comes
    // again after its RTO (1 s) and gets in once accept made room.
    let late = TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap();
    for _ in 0..100 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!((late.state(), drops()), (State::SynSent, 2));
    let (a1, _) = l.accept().unwrap();
    let (a2, _) = l.accept().unwrap();
    assert_eq!(l.accept().err().unwrap().kind(), ErrorKind::WouldBlock);
    for _ in 0..1500 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(late.state(), State::Established);
    let (a3, _) = l.accept().unwrap();
    drop((a1, a2, a3));
}

#[test]
fn syn_cookies_take_over_when_the_cache_is_full() {
    let mut p = Pair::new(0, 0);
    // A cache of nothing: every SYN is answered with a cookie.
    p.b.socks.syncache.set_limit(0);
    transfer(&mut p, sa("10.0.0.2:80"), 200_000);
    let b = p.b.clone();
    let sc = &b.socks.syncache.stats;
    assert_eq!(sc.cookies_sent.load(Ordering::Relaxed), 1);
    assert_eq!(sc.cookies_ok.load(Ordering::Relaxed), 1);
    assert_eq!(sc.added.load(Ordering::Relaxed), 0);
    drain(&mut p);
    // Over IPv6 as well, with a cache of one and a second connection
    // waiting in it.
    p.b.socks.syncache.set_limit(1);
    let _l = TcpListener::bind(&p.b, sa("[fd00::2]:81")).unwrap();
    let c1 = TcpStream::start_connect(&p.a, sa("[fd00::2]:81")).unwrap();
    let c2 = TcpStream::start_connect(&p.a, sa("[fd00::2]:81")).unwrap();
    for _ in 0..100 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!((c1.state(), c2.state()), (State::Established, State::Established));
    assert_eq!(sc.cookies_ok.load(Ordering::Relaxed), 2);
}

#[test]
fn half_open_connections_cost_a_cache_entry_and_expire() {
    let mut p = Pair::new(0, 0);
    let _l = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    // A first connection: both ends know each other's MAC.
    let c = TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap();
    for _ in 0..20 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(c.state(), State::Established);
    // A's SYN reaches B, then A's interface goes down: B's SYN,ACKs go
    // nowhere and the handshake never completes.
    let c = TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap();
    p.wa[0].poll();
    p.a.set_up("a0", false).unwrap();
    for _ in 0..10 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(p.b.socks.syncache.len(), 1);
    let conns = p.b.socks.tcp_snapshot().len();
    assert_eq!(conns, 2, "the listener and the first connection; nothing for the SYN");
    // Retransmitted at 1, 2, 4, 8 s after the first, dropped after the last.
    for _ in 0..400 {
        p.step(Duration::from_millis(100));
    }
    let sc = &p.b.socks.syncache.stats;
    assert_eq!(p.b.socks.syncache.len(), 0);
    assert_eq!(sc.timed_out.load(Ordering::Relaxed), 1);
    drop(c);
}

#[test]
fn udp_both_ways_over_both_families() {
    let mut p = Pair::new(0, 0);
    for (server, client) in [("10.0.0.2:53", "10.0.0.1:0"), ("[fd00::2]:53", "[fd00::1]:0")] {
        let mut s = UdpSocket::bind(&p.b, sa(server)).unwrap();
        let mut c = UdpSocket::bind(&p.a, sa(client)).unwrap();
        s.set_nonblocking(true).unwrap();
        c.set_nonblocking(true).unwrap();
        assert_ne!(c.local_addr().unwrap().port(), 0);
        for i in 0..10u8 {
            c.send_to(&[i; 100], sa(server)).unwrap();
        }
        for _ in 0..50 {
            p.step(Duration::from_millis(1));
        }
        let mut buf = [0u8; 200];
        for i in 0..10u8 {
            let (n, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!((n, buf[0], from.ip()), (100, i, sa(client).ip()));
            s.send_to(&buf[..n], from).unwrap();
        }
        assert_eq!(s.recv_from(&mut buf).err().unwrap().kind(), ErrorKind::WouldBlock);
        for _ in 0..50 {
            p.step(Duration::from_millis(1));
        }
        for i in 0..10u8 {
            let (n, from) = c.recv_from(&mut buf[..50]).unwrap();
            assert_eq!((n, buf[0], from), (50, i, sa(server)), "truncated to the buffer");
        }
    }
    // Nothing bound: port unreachable as before.
    let c = UdpSocket::bind(&p.a, sa("10.0.0.1:0")).unwrap();
    c.send_to(b"x", sa("10.0.0.2:9")).unwrap();
    for _ in 0..50 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(p.b.stats.sum(|s| &s.transport.udp_noport), 1);
    let e = c.send_to(b"x", sa("10.0.0.255:9")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
}

#[test]
fn netstat_shows_the_pcbs_as_openbsd() {
    use softnet_core::sock::netstat::Filter;
    let mut p = Pair::new(0, 0);
    let _l = TcpListener::bind(&p.b, sa("0.0.0.0:80")).unwrap();
    let _l6 = TcpListener::bind(&p.b, sa("[fd00::2]:443")).unwrap();
    let _u = UdpSocket::bind(&p.b, sa("10.0.0.2:53")).unwrap();
    let mut c = TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap();
    c.set_nonblocking(true).unwrap();
    for _ in 0..50 {
        p.step(Duration::from_millis(1));
    }
    c.write_all(b"hello").unwrap();
    for _ in 0..5 {
        p.step(Duration::from_millis(1));
    }
    let all = Filter { all: true, inet: true, inet6: true, tcp: true, udp: true };
    let port = c.local_addr().unwrap().port();
    let want = format!(
        "Active Internet connections (including servers)
Proto   Recv-Q Send-Q  Local Address          Foreign Address        TCP-State
tcp          0      0  *.80                   *.*                    LISTEN
tcp          5      0  10.0.0.2.80            10.0.0.1.{port:<13} ESTABLISHED
Active Internet connections (including servers)
Proto   Recv-Q Send-Q  Local Address          Foreign Address        (state)
udp          0      0  10.0.0.2.53            *.*                   
Active Internet6 connections (including servers)
Proto   Recv-Q Send-Q  Local Address                           Foreign Address                         TCP-State
tcp6         0      0  fd00::2.443                             *.*                                     LISTEN
"
    );
    assert_eq!(p.b.socks.netstat(all), want);
    // Without -a: connections only; -p udp: none.
    let conns = p.b.socks.netstat(Filter { all: false, ..all });
    assert_eq!(conns.lines().count(), 3, "{conns}");
    assert!(conns.contains("ESTABLISHED") && !conns.contains("LISTEN"));
    assert_eq!(p.b.socks.netstat(Filter { all: false, tcp: false, ..all }), "");
    // The client's Send-Q holds the 5 bytes until B's delayed ACK.
    let a = p.a.socks.netstat(all);
    assert!(
        a.contains(&format!("tcp          0      5  10.0.0.1.{port:<13} 10.0.0.2.80            ESTABLISHED")),
        "{a}"
    );
}

#[test]
fn icmp_errors_reach_their_sockets() {
    use softnet_wire::ethernet::{EtherType, EthernetRepr, HEADER_LEN};
    use softnet_wire::icmpv4::{DstUnreachable, Icmpv4Repr};
    use softnet_wire::ipv4::{IpProtocol, Ipv4Repr};
    let mut p = Pair::new(0, 0);
    // Port unreachable: ECONNREFUSED on a connected UDP socket.
    let mut u = UdpSocket::bind(&p.a, sa("10.0.0.1:0")).unwrap();
    u.set_nonblocking(true).unwrap();
    u.connect(sa("10.0.0.2:9")).unwrap();
    u.send(b"anyone?").unwrap();
    for _ in 0..20 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(u.recv(&mut [0u8; 16]).unwrap_err().kind(), ErrorKind::ConnectionRefused);
    assert_eq!(u.recv(&mut [0u8; 16]).unwrap_err().kind(), ErrorKind::WouldBlock, "reported once");
    // Fragmentation needed: the connection's MSS follows the next-hop MTU.
    let _l = TcpListener::bind(&p.b, sa("10.0.0.2:80")).unwrap();
    let c = TcpStream::start_connect(&p.a, sa("10.0.0.2:80")).unwrap();
    for _ in 0..20 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(c.state(), State::Established);
    let before = c.mss();
    let local = c.local_addr().unwrap();
    // Only an error about a segment in flight counts (tcp_ctlinput).
    let seq = seq_in_flight(&mut p, &c);
    let mut quote = vec![0u8; 28];
    Ipv4Repr {
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        protocol: IpProtocol::TCP,
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_frag: true,
        payload_len: 1000,
    }
    .emit(&mut quote[..20]);
    quote[20..22].copy_from_slice(&local.port().to_be_bytes());
    quote[22..24].copy_from_slice(&80u16.to_be_bytes());
    quote[24..28].copy_from_slice(&seq.to_be_bytes());
    let icmp = Icmpv4Repr::DstUnreachable { code: DstUnreachable::FragRequired, next_hop_mtu: 1000, data: &quote };
    let mut frame = vec![0u8; HEADER_LEN + 20 + icmp.buffer_len()];
    EthernetRepr { src: B_MAC, dst: A_MAC, ethertype: EtherType::IPV4, vlan: None }.emit(&mut frame);
    Ipv4Repr {
        src: "10.0.0.2".parse().unwrap(),
        dst: "10.0.0.1".parse().unwrap(),
        protocol: IpProtocol::ICMP,
        ttl: 64,
        tos: 0,
        ident: 2,
        dont_frag: false,
        payload_len: icmp.buffer_len(),
    }
    .emit(&mut frame[HEADER_LEN..HEADER_LEN + 20]);
    icmp.emit(&mut frame[HEADER_LEN + 20..]);
    assert!(p.wire_b.send(0, &frame));
    p.step(Duration::from_millis(1));
    // 1000 less 40 bytes of headers, less the timestamp option's 12.
    assert_eq!((before, c.mss()), (1448, 948));
}

/// Writes to `c` and runs A's worker alone, then takes A's data segment
/// off the wire before B sees it: its sequence number (in flight until A
/// retransmits it).
fn seq_in_flight(p: &mut Pair, c: &TcpStream) -> u32 {
    (&*c).write_all(&[7u8; 100]).unwrap();
    p.wa[0].poll();
    let mut pool = PacketPool::new(4, 2048);
    let mut buf = pool.alloc().unwrap();
    let mut seq = None;
    while p.wire_b.recv(&mut buf) {
        if let Some(s) = tcp_seq_of(buf.data(), c.local_addr().unwrap().port(), true) {
            seq = Some(s);
        }
    }
    seq.expect("A's data segment on the wire")
}

/// The sequence number of a TCP segment from `port` in an Ethernet frame
/// (IPv4 or IPv6 without extension headers), with payload if `data`.
fn tcp_seq_of(f: &[u8], port: u16, data: bool) -> Option<u32> {
    let ip = &f[14..];
    let (proto, l4) = match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 => (ip[9], &ip[usize::from(ip[0] & 15) * 4..usize::from(u16::from_be_bytes([ip[2], ip[3]]))]),
        0x86dd => (ip[6], &ip[40..40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]))]),
        _ => return None,
    };
    let hl = usize::from(l4[12] >> 4) * 4;
    (proto == 6 && u16::from_be_bytes([l4[0], l4[1]]) == port && (!data || l4.len() > hl))
        .then(|| u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]))
}

/// An ICMPv6 error from B to A quoting an IPv6 packet fd00::1 -> fd00::2
/// (`proto`, ports, sequence number).
fn icmp6_to_a(p: &Pair, msg: softnet_wire::icmpv6::Icmpv6Repr<'_>) {
    use softnet_wire::ethernet::{EtherType, EthernetRepr, HEADER_LEN};
    use softnet_wire::ipv4::IpProtocol;
    use softnet_wire::ipv6::Ipv6Repr;
    let (a, b) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
    let mut frame = vec![0u8; HEADER_LEN + 40 + msg.buffer_len()];
    EthernetRepr { src: B_MAC, dst: A_MAC, ethertype: EtherType::IPV6, vlan: None }.emit(&mut frame);
    Ipv6Repr {
        src: b,
        dst: a,
        next_header: IpProtocol::ICMPV6,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        payload_len: msg.buffer_len(),
    }
    .emit(&mut frame[HEADER_LEN..HEADER_LEN + 40]);
    msg.emit(b, a, &mut frame[HEADER_LEN + 40..]);
    assert!(p.wire_b.send(0, &frame));
}

/// The first 48 bytes of an IPv6 packet fd00::1 -> fd00::2: the header
/// and the transport header's ports and sequence number.
fn quote6(proto: u8, sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    use softnet_wire::ipv4::IpProtocol;
    use softnet_wire::ipv6::Ipv6Repr;
    let mut q = vec![0u8; 48];
    Ipv6Repr {
        src: "fd00::1".parse().unwrap(),
        dst: "fd00::2".parse().unwrap(),
        next_header: IpProtocol::from(proto),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        payload_len: 1000,
    }
    .emit(&mut q[..40]);
    q[40..42].copy_from_slice(&sport.to_be_bytes());
    q[42..44].copy_from_slice(&dport.to_be_bytes());
    q[44..48].copy_from_slice(&seq.to_be_bytes());
    q
}

#[test]
fn icmpv6_errors_reach_their_sockets() {
    use softnet_wire::icmpv6::{DstUnreachable, Icmpv6Repr};
    let mut p = Pair::new(0, 0);
    // Port unreachable: ECONNREFUSED on a connected UDP socket.
    let mut u = UdpSocket::bind(&p.a, sa("[fd00::1]:0")).unwrap();
    u.set_nonblocking(true).unwrap();
    u.connect(sa("[fd00::2]:9")).unwrap();
    u.send(b"anyone?").unwrap();
    for _ in 0..20 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(u.recv(&mut [0u8; 16]).unwrap_err().kind(), ErrorKind::ConnectionRefused, "B's own unreachable");
    // Address unreachable, quoted by a router: EHOSTUNREACH on it.
    let q = quote6(17, u.local_addr().unwrap().port(), 9, 0);
    icmp6_to_a(&p, Icmpv6Repr::DstUnreachable { code: DstUnreachable::AddrUnreachable, data: &q });
    p.step(Duration::from_millis(1));
    assert_eq!(u.recv(&mut [0u8; 16]).unwrap_err().kind(), ErrorKind::HostUnreachable);
    assert_eq!(u.recv(&mut [0u8; 16]).unwrap_err().kind(), ErrorKind::WouldBlock, "reported once");

    // Packet too big lowers an established connection's MSS, when it
    // quotes a segment in flight; a quote of anything else is ignored.
    let _l = TcpListener::bind(&p.b, sa("[fd00::2]:80")).unwrap();
    let c = TcpStream::start_connect(&p.a, sa("[fd00::2]:80")).unwrap();
    for _ in 0..20 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(c.state(), State::Established);
    let (before, port) = (c.mss(), c.local_addr().unwrap().port());
    let seq = seq_in_flight(&mut p, &c);
    let q = quote6(6, port, 80, seq.wrapping_sub(100_000));
    icmp6_to_a(&p, Icmpv6Repr::PacketTooBig { mtu: 1300, data: &q });
    p.step(Duration::from_millis(1));
    assert_eq!(c.mss(), before, "a quote of a sequence number not in flight is ignored");
    let ns = softnet_core::stats::format_netstat_s_with(&p.a.stats, Some(&p.a.socks));
    assert!(ns.contains("\t\t1 ICMP error ignored (not about a segment in flight)\n"), "{ns}");
    let q = quote6(6, port, 80, seq);
    icmp6_to_a(&p, Icmpv6Repr::PacketTooBig { mtu: 1300, data: &q });
    p.step(Duration::from_millis(1));
    // 1300 less 60 bytes of headers, less the timestamp option's 12.
    assert_eq!((before, c.mss()), (1428, 1228));
    // The data still arrives (retransmitted in smaller segments).
    for _ in 0..2000 {
        p.step(Duration::from_millis(10));
    }

    // Address unreachable while the SYN is unanswered: the connect fails
    // with EHOSTUNREACH (B never sees the SYN: it is taken off the wire).
    let c = TcpStream::start_connect(&p.a, sa("[fd00::2]:81")).unwrap();
    p.wa[0].poll();
    let port = c.local_addr().unwrap().port();
    let mut pool = PacketPool::new(4, 2048);
    let mut buf = pool.alloc().unwrap();
    let mut iss = None;
    while p.wire_b.recv(&mut buf) {
        iss = iss.or(tcp_seq_of(buf.data(), port, false));
    }
    let q = quote6(6, port, 81, iss.expect("the SYN"));
    icmp6_to_a(&p, Icmpv6Repr::DstUnreachable { code: DstUnreachable::AddrUnreachable, data: &q });
    p.step(Duration::from_millis(1));
    assert_eq!(c.state(), State::Closed);
    assert_eq!((&c).read(&mut [0u8; 4]).unwrap_err().kind(), ErrorKind::HostUnreachable);
}

/// Packets each worker of `st` sent from the stack itself.
fn localout(st: &Stack) -> Vec<u64> {
    (0..st.config.workers).map(|i| st.stats.get(i).ip.localout.get()).collect()
}

#[test]
fn a_connection_is_served_by_one_worker_on_each_side() {
    // Two workers a side, worker i on queue i of the wire: a flow's
    // frames stay on one queue index, as a link's flow hash keeps them.
    let mut p = Pair::with_workers(0, 0, 2);
    let server = sa("10.0.0.2:80");
    let mut l = TcpListener::bind(&p.b, server).unwrap();
    l.set_nonblocking(true).unwrap();
    let c = TcpStream::start_connect(&p.a, server).unwrap();
    for _ in 0..50 {
        p.step(Duration::from_millis(1));
    }
    assert_eq!(c.state(), State::Established);
    let (s, _) = l.accept().unwrap();
    let (a0, b0) = (localout(&p.a), localout(&p.b));
    // 2 MB from A, 256 KB back, both sides' applications writing from
    // this thread while every worker polls.
    let (mut sent, mut got, mut back, mut got_back) = (0usize, 0usize, 0usize, 0usize);
    let chunk: Vec<u8> = (0..16384).map(pattern).collect();
    let mut buf = vec![0u8; 65536];
    let (mut c, mut s) = (c, s);
    c.set_nonblocking(true).unwrap();
    s.set_nonblocking(true).unwrap();
    for _ in 0..200_000 {
        if sent < 2 << 20 {
            if let Ok(n) = c.write(&chunk[..chunk.len().min((2 << 20) - sent)]) {
                sent += n;
            }
        }
        if back < 256 << 10 {
            if let Ok(n) = s.write(&chunk[..chunk.len().min((256 << 10) - back)]) {
                back += n;
            }
        }
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            got_back += n;
        }
        if got == 2 << 20 && got_back == 256 << 10 {
            break;
        }
        p.step(Duration::from_micros(100));
    }
    assert_eq!((got, got_back), (2 << 20, 256 << 10));
    // Each side sent the whole transfer from one worker (the connection's
    // owner), the same queue index on both.
    let (a1, b1) = (localout(&p.a), localout(&p.b));
    let moved = |x: &[u64], y: &[u64]| -> Vec<bool> { x.iter().zip(y).map(|(x, y)| y > x).collect() };
    let (ma, mb) = (moved(&a0, &a1), moved(&b0, &b1));
    assert_eq!(ma.iter().filter(|m| **m).count(), 1, "A's sending workers: {a0:?} -> {a1:?}");
    assert_eq!(ma, mb, "B's sending worker is A's: {b0:?} -> {b1:?}");
    for st in [&p.a, &p.b] {
        let ns = softnet_core::stats::format_netstat_s_with(&st.stats, Some(&st.socks));
        assert!(ns.contains("\t\t0 packets processed off their connection's worker\n"), "{ns}");
    }
}
