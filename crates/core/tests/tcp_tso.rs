//! TCP segmentation offload in memory (issue 13): stack A's link says it
//! cuts TCP super-segments (`LinkQueue::tso_max`), so A's worker sends new
//! data in super-segments of up to 64 KB (`Tcb::output_tso`, large
//! buffers, `mflags::TSO`); the link cuts each at its MSS with
//! `gso::segment_tcp`, as the kernel behind a TAP with the virtio-net
//! header would, and B receives ordinary segments. The byte stream B reads
//! is the one A wrote, and super-segments were really sent.
//!
//! ```text
//!  stack A  a0 10.0.0.1/24 ── (cut at the MSS) wire ── b0 10.0.0.2/24  stack B
//! ```

use crate::common::{two_stacks_with, TwoStacks};
use softnet_core::gso::segment_tcp;
use softnet_core::link::LinkQueue;
use softnet_core::packet::{mflags, PacketBuf, PacketPool};
use softnet_core::sock::api::{TcpListener, TcpStream};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Seen {
    /// Super-segments handed to the link, and the segments cut from them.
    trains: AtomicU64,
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
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    let TwoStacks { clock, a, b, mut wa, mut wb } = two_stacks_with(2048, 4096, |q, side| match side {
        0 => q
            .into_iter()
            .map(|inner| Box::new(Offload { inner, seen: s2.clone(), cut: Vec::new() }) as Box<dyn LinkQueue>)
            .collect(),
        _ => q,
    });
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
    for _ in 0..200_000 {
        step(Duration::from_micros(20));
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
    let (trains, pieces, largest) = (
        seen.trains.load(Ordering::Relaxed),
        seen.pieces.load(Ordering::Relaxed),
        seen.largest.load(Ordering::Relaxed),
    );
    assert!(trains > 0 && pieces > 2 * trains, "super-segments sent: {trains} cut into {pieces}");
    assert!(largest > 4 * 1514 && largest <= 65535 + 14, "largest super-frame {largest}");
    // Most of the stream went in super-segments (each cut piece is at most
    // one MSS of 1448 bytes).
    assert!(pieces * 1448 > len as u64 / 2, "{pieces} pieces of {len} bytes");
}
