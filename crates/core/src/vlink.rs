//! The `virtual` link: two ports joined in memory, like a veth pair.
//!
//! Each direction of each queue is a pair of bounded lock-free queues of
//! fixed-size slots: `full` carries frames, `empty` returns the slots. A
//! sender copies its frame into a free slot; the receiver copies it out into
//! a buffer from its own pool and returns the slot. Frames never move pool
//! buffers between owners, and nothing is allocated per frame.

use crate::link::LinkQueue;
use crate::packet::{PacketBuf, PacketPool};
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Slot {
    data: Box<[u8]>,
    len: usize,
}

/// One direction of one queue.
struct Channel {
    full: ArrayQueue<Slot>,
    empty: ArrayQueue<Slot>,
    /// Frames lost because the ring was full (the peer is not keeping up).
    dropped: AtomicU64,
    /// Frames too long for a slot.
    oversize: AtomicU64,
}

impl Channel {
    fn new(depth: usize, slot_size: usize) -> Arc<Self> {
        let c = Channel {
            full: ArrayQueue::new(depth),
            empty: ArrayQueue::new(depth),
            dropped: AtomicU64::new(0),
            oversize: AtomicU64::new(0),
        };
        for _ in 0..depth {
            let _ = c.empty.push(Slot { data: vec![0u8; slot_size].into_boxed_slice(), len: 0 });
        }
        Arc::new(c)
    }

    fn push(&self, frame: &[u8]) -> bool {
        let Some(mut slot) = self.empty.pop() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if frame.len() > slot.data.len() {
            self.oversize.fetch_add(1, Ordering::Relaxed);
            let _ = self.empty.push(slot);
            return false;
        }
        slot.data[..frame.len()].copy_from_slice(frame);
        slot.len = frame.len();
        // Cannot fail: a slot taken from `empty` always has room in `full`.
        let _ = self.full.push(slot);
        true
    }

    fn pop_into(&self, p: &mut PacketBuf) -> Option<bool> {
        let slot = self.full.pop()?;
        let ok = p.set_len(slot.len).is_ok();
        if ok {
            p.data_mut().copy_from_slice(&slot.data[..slot.len]);
        }
        let _ = self.empty.push(slot);
        Some(ok)
    }
}

/// Counters of one port's transmit side.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VirtualStats {
    pub dropped: u64,
    pub oversize: u64,
}

/// One end of a virtual wire.
pub struct VirtualPort {
    tx: Vec<Arc<Channel>>,
    rx: Vec<Arc<Channel>>,
}

/// Default ring depth per queue and direction.
pub const DEFAULT_DEPTH: usize = 1024;
/// Largest frame a virtual link carries (a 9000-byte MTU plus headers).
pub const SLOT_SIZE: usize = 9216;

/// Makes a wire with `queues` queues in each direction and returns its two
/// ends.
pub fn wire(queues: usize, depth: usize) -> (VirtualPort, VirtualPort) {
    wire_with_slot(queues, depth, 2048)
}

/// As `wire`, with slots of `slot_size` bytes.
pub fn wire_with_slot(queues: usize, depth: usize, slot_size: usize) -> (VirtualPort, VirtualPort) {
    let queues = queues.max(1);
    let ab: Vec<_> = (0..queues).map(|_| Channel::new(depth, slot_size)).collect();
    let ba: Vec<_> = (0..queues).map(|_| Channel::new(depth, slot_size)).collect();
    (VirtualPort { tx: ab.clone(), rx: ba.clone() }, VirtualPort { tx: ba, rx: ab })
}

impl VirtualPort {
    pub fn queue_count(&self) -> usize {
        self.rx.len()
    }

    /// The port's queues as `LinkQueue`s, for an interface.
    pub fn link_queues(&self) -> Vec<Box<dyn LinkQueue>> {
        (0..self.rx.len())
            .map(|i| Box::new(VirtualQueue { rx: self.rx[i].clone(), tx: self.tx[i].clone() }) as Box<dyn LinkQueue>)
            .collect()
    }

    /// Sends one frame on queue `q` (for host stubs and tests).
    pub fn send(&self, q: usize, frame: &[u8]) -> bool {
        self.tx[q % self.tx.len()].push(frame)
    }

    /// Receives one frame from any queue into `p` (for host stubs).
    pub fn recv(&self, p: &mut PacketBuf) -> bool {
        for c in &self.rx {
            if let Some(ok) = c.pop_into(p) {
                return ok;
            }
        }
        false
    }

    pub fn tx_stats(&self) -> VirtualStats {
        VirtualStats {
            dropped: self.tx.iter().map(|c| c.dropped.load(Ordering::Relaxed)).sum(),
            oversize: self.tx.iter().map(|c| c.oversize.load(Ordering::Relaxed)).sum(),
        }
    }
}

/// One queue of a virtual port, as an interface uses it.
pub struct VirtualQueue {
    rx: Arc<Channel>,
    tx: Arc<Channel>,
}

impl LinkQueue for VirtualQueue {
    fn recv(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let mut n = 0;
        while n < max && !self.rx.full.is_empty() {
            let Some(mut p) = pool.alloc() else { break };
            match self.rx.pop_into(&mut p) {
                Some(true) => {
                    out.push(p);
                    n += 1;
                }
                Some(false) | None => pool.free(p),
            }
        }
        n
    }

    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        let mut sent = 0;
        for p in frames.drain(..) {
            if self.tx.push(p.data()) {
                sent += 1;
            }
            pool.free(p);
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::DEFAULT_BUF_SIZE;

    #[test]
    fn frames_cross_the_wire_in_order_without_moving_buffers() {
        let (a, b) = wire(1, 4);
        let mut pool = PacketPool::new(8, DEFAULT_BUF_SIZE);
        let mut qa = a.link_queues().pop().unwrap();
        let mut qb = b.link_queues().pop().unwrap();
        let mut frames = vec![PacketBuf::from_slice(&[1; 60]), PacketBuf::from_slice(&[2; 70])];
        assert_eq!(qa.send(&mut pool, &mut frames), 2);
        let mut out = Vec::with_capacity(8);
        assert_eq!(qb.recv(&mut pool, &mut out, 8), 2);
        assert_eq!(out[0].data(), &[1; 60][..]);
        assert_eq!(out[1].len(), 70);
    }

    #[test]
    fn full_ring_drops_and_counts() {
        let (a, _b) = wire(1, 2);
        assert!(a.send(0, &[0; 60]));
        assert!(a.send(0, &[0; 60]));
        assert!(!a.send(0, &[0; 60]));
        assert_eq!(a.tx_stats().dropped, 1);
        assert!(!a.send(0, &[0; 4000]));
        assert_eq!(a.tx_stats().oversize, 0, "a full ring is counted before size");
    }
}
