//! The loopback interface `lo0`, as OpenBSD has it (if_loop.c,
//! in6_ifattach_loopback): created with the stack's interfaces, never
//! attached to a device, flags `UP,LOOPBACK,RUNNING,MULTICAST`, mtu
//! 32768, in the interface group `lo`, with `127.0.0.1/8`, `::1/128` and
//! `fe80::1%lo0/64` (no DAD on a loopback interface: in6if_do_dad).
//!
//! What the router sends to one of its own addresses leaves through lo0
//! (ip_output and ip6_output use lo0 for a route with RTF_LOCAL, as
//! OpenBSD's `rtable_loindex`) and comes back in on lo0 at the worker's
//! next poll (`LoopQueue`, looutput → if_input_local), so pf sees it `out
//! on lo0` and `in on lo0` as on OpenBSD. Loopback addresses (127/8, ::1)
//! are accepted only on a loopback interface (ip_input's and ip6_input's
//! "must not appear on the wire", RFC 1122 §3.2.1.3, RFC 4291 §2.5.3).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::link::LinkQueue;
use crate::packet::{PacketBuf, PacketPool};

/// The loopback interface's name.
pub const LO0: &str = "lo0";
/// Its group (OpenBSD puts each interface in its driver's group).
pub const LO_GROUP: &str = "lo";
/// LOMTU (if_loop.c).
pub const LOMTU: u32 = 32768;
/// `127.0.0.1/8` (netstart's `ifconfig lo0 inet 127.0.0.1/8`).
pub const LO_ADDR: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 0, 0, 1), 8);
/// `::1/128` (in6_ifattach_loopback).
pub const LO_ADDR6: (Ipv6Addr, u8) = (Ipv6Addr::LOCALHOST, 128);
/// `fe80::1%lo0/64`: a loopback interface's link-local identifier is 1
/// (in6_ifattach_linklocal).
pub const LO_LINK_LOCAL: (Ipv6Addr, u8) = (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1), 64);

/// Frames one queue holds between a worker's send and its next poll;
/// more are dropped (counted as output errors, as IFQ_MAXLEN drops).
pub const LOOP_DEPTH: usize = 256;

/// One worker's queue of lo0: what it sends it receives at its next poll.
/// The buffers move, nothing is copied or allocated per frame.
pub struct LoopQueue {
    ring: VecDeque<PacketBuf>,
}

impl LoopQueue {
    pub fn new() -> LoopQueue {
        LoopQueue { ring: VecDeque::with_capacity(LOOP_DEPTH) }
    }
}

impl Default for LoopQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl LinkQueue for LoopQueue {
    fn recv(&mut self, _pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let n = max.min(self.ring.len());
        out.extend(self.ring.drain(..n));
        n
    }

    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        let mut sent = 0;
        for p in frames.drain(..) {
            if self.ring.len() < LOOP_DEPTH {
                self.ring.push_back(p);
                sent += 1;
            } else {
                pool.free(p);
            }
        }
        sent
    }
}

/// The queues of lo0: one per worker.
pub fn loop_queues(workers: usize) -> Vec<Box<dyn LinkQueue>> {
    (0..workers.max(1)).map(|_| Box::new(LoopQueue::new()) as Box<dyn LinkQueue>).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_sent_is_received_in_order_and_a_full_queue_drops() {
        let mut pool = PacketPool::new(LOOP_DEPTH + 8, 256);
        let mut q = LoopQueue::new();
        let mut frames: Vec<PacketBuf> = (0..LOOP_DEPTH + 3)
            .map(|i| {
                let mut p = pool.alloc().unwrap();
                p.set_len(1).unwrap();
                p.data_mut()[0] = i as u8;
                p
            })
            .collect();
        assert_eq!(q.send(&mut pool, &mut frames), LOOP_DEPTH);
        assert!(frames.is_empty());
        // The 3 dropped went back to the pool.
        assert_eq!(pool.available(), 5 + 3);
        let mut out = Vec::with_capacity(64);
        assert_eq!(q.recv(&mut pool, &mut out, 64), 64);
        assert!(out.iter().enumerate().all(|(i, p)| p.data()[0] == i as u8));
        out.clear();
        assert_eq!(q.recv(&mut pool, &mut out, 1000), LOOP_DEPTH - 64);
        assert_eq!(out[0].data()[0], 64);
        assert_eq!(q.recv(&mut pool, &mut out, 1000), 0);
    }
}
