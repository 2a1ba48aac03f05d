//! TCP segmentation offload in memory (issue 13): stack A's link says it
//! cuts TCP super-segments (`LinkQueue::tso_max`), so A's worker sends new
//! data in super-segments of up to 64 KB (`Tcb::output_tso`, large
//! buffers, `mflags::TSO`); the link cuts each at its MSS with
//! `gso::segment_tcp`, as the kernel behind a TAP with the virtio-net
//! header would, and B receives ordinary segments. The byte stream B reads
//! is the one A wrote, and super-segments were really sent; over IPv4 and
//! over IPv6.
//!
//! ```text
//!  stack A  a0 10.0.0.1/24 ── (cut at the MSS) wire ── b0 10.0.0.2/24  stack B
//!             fd00::1/64                                  fd00::2/64
//! ```

use crate::common::{two_stacks_with, TwoStacks};
use softnet_core::filter::{BufferSource, Direction, FilterReplies, PacketFilter, Verdict};
use softnet_core::gso::segment_tcp;
use softnet_core::iface::{Interface, WeakIf};
use softnet_core::link::LinkQueue;
use softnet_core::packet::{mflags, PacketBuf, PacketPool};
use softnet_core::sock::api::{TcpListener, TcpStream};
use softnet_core::time::Instant;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Seen {
    /// Super-segments handed to the link, and the segments cut from them.
    trains: AtomicU64,
    /// Of them, IPv6 ones.
    trains6: AtomicU64,
    pieces: AtomicU64,
    largest: AtomicU64,
}

/// A link with segmentation offload over the in-memory wire.
struct Offload {
    inner: Box<dyn LinkQueue>,
    seen: Arc<Seen>,
    cut: Vec<PacketBuf>,
}

impl LinkQueue for Offload {
    fn recv(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.inner.recv(pool, out, max)
    }
    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        self.inner.send(pool, frames)
    }
    fn send_mixed(&mut self, pool: &mut PacketPool, large: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        let mut out = std::mem::take(&mut self.cut);
        for p in frames.drain(..) {
            if p.meta.flags & mflags::TSO == 0 {
                out.push(p);
                continue;
            }
            assert_ne!(p.capacity(), pool.buf_size(), "a super-segment is in a large buffer");
            if p.data()[12..14] == [0x86, 0xdd] {
                self.seen.trains6.fetch_add(1, Ordering::Relaxed);
            }
            self.seen.trains.fetch_add(1, Ordering::Relaxed);
            self.seen.largest.fetch_max(p.len() as u64, Ordering::Relaxed);
            let mss = p.meta.pf_frag_max as usize;
            let n = segment_tcp(p.data(), 14, mss, || pool.alloc(), |s| out.push(s)).expect("cut");
            self.seen.pieces.fetch_add(n as u64, Ordering::Relaxed);
            large.free(p);
        }
        let sent = self.inner.send(pool, &mut out);
        self.cut = out;
        sent
    }
    fn tso_max(&self) -> u32 {
        65535
    }
}

#[test]
fn a_tso_send_through_the_stack_delivers_the_same_byte_stream() {
    tso_send("10.0.0.2:5001".parse().unwrap());
}

/// The same over IPv6 (`GSO_TCPV6` on a TAP): A's super-segments pass
/// `ip6_output` whole (no MTU check, no fragmentation) and are cut by the
/// link into segments B's checksums accept.
#[test]
fn a_tso_send_over_ipv6_delivers_the_same_byte_stream() {
    tso_send("[fd00::2]:5001".parse().unwrap());
}

/// The TSO send over `server` (IPv4 or IPv6): super-segments on the link,
/// most of the stream in them.
fn tso_send(server: SocketAddr) {
    let seen = tso_send_with(server, None);
    let (trains, pieces, largest) = (
        seen.trains.load(Ordering::Relaxed),
        seen.pieces.load(Ordering::Relaxed),
        seen.largest.load(Ordering::Relaxed),
    );
    assert!(trains > 0 && pieces > 2 * trains, "super-segments sent: {trains} cut into {pieces}");
    let want6 = if server.is_ipv6() { trains } else { 0 };
    assert_eq!(seen.trains6.load(Ordering::Relaxed), want6, "every super-segment of the connection's family");
    assert!(largest > 4 * 1514 && largest <= 65535 + 14, "largest super-frame {largest}");
    // Most of the stream went in super-segments (each cut piece is at most
    // one MSS of 1448 bytes).
    assert!(pieces * 1448 > 3 << 20, "{pieces} pieces");
}

/// pf's route-to on A's IPv6 super-segments (to B, out of a0: the way they
/// were going, but a `RouteDecision`): pf out sees each whole, then
/// `ip6_output` cuts it (`gso_out6`, each piece checksummed) and sends the
/// pieces on pf's way; the link gets no super-segment, B the same stream.
#[test]
fn an_ipv6_super_segment_pf_routes_is_cut_by_the_stack() {
    let routed = Arc::new(AtomicU64::new(0));
    let seen = tso_send_with("[fd00::2]:5001".parse().unwrap(), Some(routed.clone()));
    let routed = routed.load(Ordering::Relaxed);
    assert!(routed > 10, "super-segments pf out saw whole and routed: {routed}");
    assert_eq!(seen.trains.load(Ordering::Relaxed), 0, "every one cut before the link");
}

/// pf out's stand-in: a super-segment (`mflags::TSO`) is counted in
/// `routed` and given a route-to B's address on a0.
struct RouteTso {
    routed: Arc<AtomicU64>,
    a0: WeakIf,
}

impl PacketFilter for RouteTso {
    fn test(
        &self,
        _worker: usize,
        _now: Instant,
        dir: Direction,
        _ifp: &Interface,
        mut pkt: PacketBuf,
        _bufs: &mut dyn BufferSource,
        _replies: &mut FilterReplies,
    ) -> Verdict {
        if dir == Direction::Out && pkt.meta.flags & mflags::TSO != 0 {
            assert!(pkt.len() > 1500, "whole at pf out");
            self.routed.fetch_add(1, Ordering::Relaxed);
            pkt.set_route6(false, "fd00::2".parse().unwrap(), Some(self.a0));
        }
        Verdict::Pass(pkt)
    }
}

/// A sends 6 MB to B's listener at `server` (an IPv4 or IPv6 address of
/// B's) through its offload link, with `RouteTso` as A's filter when
/// `route` is given; B reads them equal. What the link saw.
fn tso_send_with(server: SocketAddr, route: Option<Arc<AtomicU64>>) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    let mut t = two_stacks_with(2048, 4096, |q, side| match side {
        0 => q
            .into_iter()
            .map(|inner| Box::new(Offload { inner, seen: s2.clone(), cut: Vec::new() }) as Box<dyn LinkQueue>)
            .collect(),
        _ => q,
    });
    if let Some(routed) = route {
        let a0 = t.a.ifaces.load().by_name("a0").unwrap().weak();
        t.a.set_filter(Some(Box::new(RouteTso { routed, a0 })));
    }
    if server.is_ipv6() {
        add_ipv6(&mut t);
    }
    stream_a_to_b(&mut t, server, 6 << 20, Duration::from_micros(20));
    seen
}

/// fd00::1/64 on A's a0 and fd00::2/64 on B's b0, preferred once DAD is
/// done.
fn add_ipv6(t: &mut TwoStacks) {
    t.a.add_address6("a0", "fd00::1".parse().unwrap(), 64).unwrap();
    t.b.add_address6("b0", "fd00::2".parse().unwrap(), 64).unwrap();
    for _ in 0..40 {
        crate::common::step_workers(&t.clock, [&t.a, &t.b], [&mut t.wa, &mut t.wb], Duration::from_millis(100));
    }
}

/// A connects to B's listener at `server` and writes `len` bytes of a
/// pattern, both workers polled and the clock moved by `tick` a round;
/// B reads them equal.
fn stream_a_to_b(t: &mut TwoStacks, server: SocketAddr, len: usize, tick: Duration) {
    let TwoStacks { clock, a, b, wa, wb } = t;
    let mut step = |d| {
        wa.poll();
        wb.poll();
        clock.advance(d);
    };
    let mut l = TcpListener::bind(b, server).unwrap();
    l.set_nonblocking(true).unwrap();
    let mut c = TcpStream::start_connect(a, server).unwrap();
    c.set_nonblocking(true).unwrap();
    let mut s = None;
    for _ in 0..1000 {
        step(Duration::from_millis(1));
        if let Ok((x, _)) = l.accept() {
            s = Some(x);
            break;
        }
    }
    let mut s = s.expect("connected");
    s.set_nonblocking(true).unwrap();
    let data: Vec<u8> = (0..len).map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (mut sent, mut got) = (0, Vec::with_capacity(len));
    let mut buf = vec![0u8; 65536];
    for _ in 0..200_000 {
        step(tick);
        while sent < len {
            match c.write(&data[sent..(sent + 65536).min(len)]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        loop {
            match s.read(&mut buf) {
                Ok(0) => panic!("EOF after {} bytes", got.len()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        if got.len() == len {
            break;
        }
    }
    assert_eq!(got.len(), len, "all bytes arrived");
    assert!(got == data, "the byte stream B read is the one A wrote");
}

/// What A's link sends to B, kept whole (the wire stands in for a TAP
/// with receive offload): each frame with its gso size (0: a plain one).
type Chan = Arc<std::sync::Mutex<std::collections::VecDeque<(Vec<u8>, u16)>>>;

/// One frame kept aside, with its gso size.
type Sample = Arc<std::sync::Mutex<Option<(Vec<u8>, u16)>>>;

/// A's side of an LRO wire: every frame A sends goes to B whole through
/// `chan` (super-segments uncut); what B sends comes over the in-memory
/// wire.
struct LroTx {
    inner: Box<dyn LinkQueue>,
    chan: Chan,
}

impl LroTx {
    fn take(
        &mut self,
        pool: &mut PacketPool,
        mut large: Option<&mut PacketPool>,
        frames: &mut Vec<PacketBuf>,
    ) -> usize {
        let n = frames.len();
        let mut ch = self.chan.lock().unwrap();
        for p in frames.drain(..) {
            let gso = if p.meta.flags & mflags::TSO != 0 { p.meta.pf_frag_max } else { 0 };
            ch.push_back((p.data().to_vec(), gso));
            match large.as_deref_mut() {
                Some(l) if p.capacity() != pool.buf_size() => l.free(p),
                _ => pool.free(p),
            }
        }
        n
    }
}

impl LinkQueue for LroTx {
    fn recv(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.inner.recv(pool, out, max)
    }
    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        self.take(pool, None, frames)
    }
    fn send_mixed(&mut self, pool: &mut PacketPool, large: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        self.take(pool, Some(large), frames)
    }
    fn tso_max(&self) -> u32 {
        65535
    }
}

/// B's side: A's frames from `chan`, a super-segment whole in a large
/// buffer (`mflags::TSO`, its gso size, its checksum vouched for: what
/// the TAP's `vnet_rx` makes of a GSO frame).
struct LroRx {
    inner: Box<dyn LinkQueue>,
    chan: Chan,
    seen: Arc<Seen>,
    /// The first super-segment received (the bad ones are made from it).
    sample: Sample,
}

impl LinkQueue for LroRx {
    fn recv(&mut self, _: &mut PacketPool, _: &mut Vec<PacketBuf>, _: usize) -> usize {
        unreachable!("the worker reads with recv_mixed")
    }
    fn recv_mixed(
        &mut self,
        pool: &mut PacketPool,
        large: &mut PacketPool,
        out: &mut Vec<PacketBuf>,
        max: usize,
    ) -> usize {
        let mut n = 0;
        let mut ch = self.chan.lock().unwrap();
        while n < max {
            let Some((f, gso)) = ch.pop_front() else { break };
            let mut p = if gso != 0 { large.alloc().expect("a large buffer") } else { pool.alloc().expect("a buffer") };
            p.set_len(f.len()).unwrap();
            p.data_mut().copy_from_slice(&f);
            if gso != 0 {
                p.meta.flags |= mflags::TSO;
                p.meta.pf_frag_max = gso;
                p.meta.csum |= softnet_core::packet::csum_flags::L4_OK;
                self.seen.trains.fetch_add(1, Ordering::Relaxed);
                self.seen.largest.fetch_max(f.len() as u64, Ordering::Relaxed);
                self.seen.pieces.fetch_add((f.len() - 66) as u64, Ordering::Relaxed);
                self.sample.lock().unwrap().get_or_insert_with(|| (f.clone(), gso));
            }
            out.push(p);
            n += 1;
        }
        drop(ch);
        n + self.inner.recv(pool, out, max - n)
    }
    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        self.inner.send(pool, frames)
    }
}

/// A frame of A's super-segment with its TCP header changed by `f` (the
/// IP header's checksum stays right: only TCP fields move).
fn altered(f: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut g = f.to_vec();
    let l4 = 14 + (g[14] & 0x0f) as usize * 4;
    edit(&mut g[l4..]);
    g
}

/// Moves a TCP header's timestamp value well ahead, so that PAWS (RFC
/// 7323 §5) does not take the segment before the window check does.
fn fresh_timestamp(t: &mut [u8]) {
    let end = (t[12] >> 4) as usize * 4;
    let mut i = 20;
    while i < end {
        match t[i] {
            0 => break,
            1 => i += 1,
            k => {
                let l = t[i + 1] as usize;
                if k == 8 && l == 10 {
                    let v = u32::from_be_bytes([t[i + 2], t[i + 3], t[i + 4], t[i + 5]]).wrapping_add(1 << 20);
                    t[i + 2..i + 6].copy_from_slice(&v.to_be_bytes());
                }
                i += l.max(2);
            }
        }
    }
}

#[test]
fn super_segments_received_whole_deliver_the_same_byte_stream_and_bad_ones_are_counted() {
    let chan: Chan = Default::default();
    let seen = Arc::new(Seen::default());
    let sample: Sample = Default::default();
    let (c2, s2, sm2) = (chan.clone(), seen.clone(), sample.clone());
    let TwoStacks { clock, a, b, mut wa, mut wb } = two_stacks_with(2048, 4096, |q, side| match side {
        0 => q.into_iter().map(|inner| Box::new(LroTx { inner, chan: c2.clone() }) as Box<dyn LinkQueue>).collect(),
        _ => q
            .into_iter()
            .map(|inner| {
                Box::new(LroRx { inner, chan: c2.clone(), seen: s2.clone(), sample: sm2.clone() }) as Box<dyn LinkQueue>
            })
            .collect(),
    });
    let _ = &a;
    let mut step = |d| {
        wa.poll();
        wb.poll();
        clock.advance(d);
    };
    let server: SocketAddr = "10.0.0.2:5001".parse().unwrap();
    let mut l = TcpListener::bind(&b, server).unwrap();
    l.set_nonblocking(true).unwrap();
    let mut c = TcpStream::start_connect(&a, server).unwrap();
    c.set_nonblocking(true).unwrap();
    let mut s = None;
    for _ in 0..1000 {
        step(Duration::from_millis(1));
        if let Ok((x, _)) = l.accept() {
            s = Some(x);
            break;
        }
    }
    let mut s = s.expect("connected");
    s.set_nonblocking(true).unwrap();
    let len = 6 << 20;
    let data: Vec<u8> = (0..len).map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (mut sent, mut got) = (0, Vec::with_capacity(len));
    let mut buf = vec![0u8; 65536];
    let mut read = |s: &mut TcpStream, got: &mut Vec<u8>| loop {
        match s.read(&mut buf) {
            Ok(0) => panic!("EOF after {} bytes", got.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("read: {e}"),
        }
    };
    for _ in 0..200_000 {
        step(Duration::from_micros(20));
        while sent < len {
            match c.write(&data[sent..(sent + 65536).min(len)]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        read(&mut s, &mut got);
        if got.len() == len {
            break;
        }
    }
    assert_eq!(got.len(), len, "all bytes arrived");
    assert!(got == data, "the byte stream B read is the one A wrote");
    let trains = seen.trains.load(Ordering::Relaxed);
    let in_trains = seen.pieces.load(Ordering::Relaxed);
    assert!(trains > 0, "super-segments received whole");
    assert!(in_trains > len as u64 / 2, "{in_trains} of {len} bytes came in super-segments");
    // B's TCP took each super-segment as one segment: far fewer inputs
    // than the stream's 1,448-byte segments.
    let rcvd = b.stats.sum(|s| &s.transport.tcp_rcvtotal);
    assert!(rcvd < (len / 1448 / 2) as u64, "B's TCP input ran {rcvd} times for {len} bytes");

    // A super-segment whose sequence is far outside B's window: dropped
    // and counted, the stream untouched; one for a closed port: a RST.
    let (f, gso) = sample.lock().unwrap().clone().expect("a super-segment seen");
    let after = b.stats.sum(|s| &s.transport.tcp_rcvpackafterwin);
    let rsts = b.stats.sum(|s| &s.transport.tcp_sndrst);
    let far = altered(&f, |t| {
        let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]).wrapping_add(1 << 30);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        fresh_timestamp(t);
    });
    let closed = altered(&f, |t| t[2..4].copy_from_slice(&5999u16.to_be_bytes()));
    chan.lock().unwrap().extend([(far, gso), (closed, gso)]);
    for _ in 0..50 {
        step(Duration::from_millis(1));
    }
    assert_eq!(b.stats.sum(|s| &s.transport.tcp_rcvpackafterwin), after + 1, "out of window: counted");
    assert_eq!(b.stats.sum(|s| &s.transport.tcp_sndrst), rsts + 1, "closed port: a RST");

    // One for another host (B forwards): cut into its segments before it
    // is forwarded, each within the MTU (not refused as too big for DF).
    let fwd0 = b.stats.sum(|s| &s.ip.forward);
    let cantfrag0 = b.stats.sum(|s| &s.ip.cantfrag);
    let mut other = f.clone();
    other[30..34].copy_from_slice(&[10, 0, 0, 3]);
    other[24..26].copy_from_slice(&[0, 0]);
    let sum = softnet_wire::checksum::finish(softnet_wire::checksum::sum(&other[14..34]));
    other[24..26].copy_from_slice(&sum.to_be_bytes());
    let payload =
        f.len() - 14 - (f[14] & 0x0f) as usize * 4 - (f[14 + (f[14] & 0x0f) as usize * 4 + 12] >> 4) as usize * 4;
    chan.lock().unwrap().push_back((other, gso));
    for _ in 0..5 {
        step(Duration::from_millis(1));
    }
    let segs = payload.div_ceil(gso as usize) as u64;
    assert!(segs > 1, "the sample is a train of {payload} bytes at {gso}");
    assert_eq!(b.stats.sum(|s| &s.ip.forward), fwd0 + segs, "forwarded as {segs} segments");
    assert_eq!(b.stats.sum(|s| &s.ip.cantfrag), cantfrag0, "none too big for the MTU");
    // The connection still carries data.
    c.write_all(b"after").unwrap();
    let mut tail = Vec::new();
    for _ in 0..1000 {
        step(Duration::from_millis(1));
        read(&mut s, &mut tail);
        if tail.len() == 5 {
            break;
        }
    }
    assert_eq!(tail, b"after");
}

/// pf in's route-to on an IPv6 super-frame B receives whole (to A's
/// address, out of b0): B cuts it (`lro`) and each piece goes A's way
/// with pf's next hop (`pf_hop6`, beside the metadata: a piece without
/// it was routed to `::` and lost); A forwards the pieces back to B,
/// whose socket reads the stream equal.
#[test]
fn an_ipv6_super_frame_pf_routes_on_the_way_in_is_cut_with_its_next_hop() {
    let chan: Chan = Default::default();
    let seen = Arc::new(Seen::default());
    let sample: Sample = Default::default();
    let (c2, s2, sm2) = (chan.clone(), seen.clone(), sample.clone());
    let mut t = two_stacks_with(2048, 4096, |q, side| match side {
        0 => q.into_iter().map(|inner| Box::new(LroTx { inner, chan: c2.clone() }) as Box<dyn LinkQueue>).collect(),
        _ => q
            .into_iter()
            .map(|inner| {
                Box::new(LroRx { inner, chan: c2.clone(), seen: s2.clone(), sample: sm2.clone() }) as Box<dyn LinkQueue>
            })
            .collect(),
    });
    add_ipv6(&mut t);
    let routed = Arc::new(AtomicU64::new(0));
    let b0 = t.b.ifaces.load().by_name("b0").unwrap().weak();
    t.b.set_filter(Some(Box::new(RouteIn6 { routed: routed.clone(), b0 })));
    stream_a_to_b(&mut t, "[fd00::2]:5001".parse().unwrap(), 2 << 20, Duration::from_micros(50));
    let routed = routed.load(Ordering::Relaxed);
    let forwarded = t.a.stats.sum(|s| &s.ip6.forward);
    assert!(routed > 4, "super-frames pf in routed whole: {routed}");
    // Each routed super-frame's pieces reached A and came back forwarded.
    assert!(forwarded > 2 * routed, "A forwarded {forwarded} pieces of {routed} routed super-frames");
}

/// pf in's stand-in on B: an IPv6 super-frame (`mflags::TSO`) is counted
/// in `routed` and given a route-to A's address on b0.
struct RouteIn6 {
    routed: Arc<AtomicU64>,
    b0: WeakIf,
}

impl PacketFilter for RouteIn6 {
    fn test(
        &self,
        _worker: usize,
        _now: Instant,
        dir: Direction,
        _ifp: &Interface,
        mut pkt: PacketBuf,
        _bufs: &mut dyn BufferSource,
        _replies: &mut FilterReplies,
    ) -> Verdict {
        if dir == Direction::In && pkt.meta.flags & mflags::TSO != 0 && pkt.data()[0] >> 4 == 6 {
            self.routed.fetch_add(1, Ordering::Relaxed);
            pkt.set_route6(false, "fd00::1".parse().unwrap(), Some(self.b0));
        }
        Verdict::Pass(pkt)
    }
}
