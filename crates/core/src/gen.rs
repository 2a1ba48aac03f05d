//! Traffic generator and sink links for benchmarks and the allocation test.
//!
//! `GeneratorQueue` hands a worker prebuilt frames (copied into its own
//! buffers, as a NIC's DMA would fill them), cycling through a set of flows;
//! `SinkQueue` counts what is sent and returns the buffers. Generating inside
//! the worker keeps the generator off the other cores.

use crate::link::LinkQueue;
use crate::packet::{PacketBuf, PacketPool};
use crate::percpu::{CacheAligned, Counter};
use std::sync::Arc;

pub struct GeneratorQueue {
    frames: Vec<Vec<u8>>,
    next: usize,
    /// Frames handed out (shared so the benchmark can read it).
    pub generated: Arc<CacheAligned<Counter>>,
}

impl GeneratorQueue {
    /// A generator cycling through `frames` (one per flow).
    pub fn new(frames: Vec<Vec<u8>>) -> Self {
        assert!(!frames.is_empty());
        GeneratorQueue { frames, next: 0, generated: Arc::new(CacheAligned(Counter::default())) }
    }
}

impl LinkQueue for GeneratorQueue {
    fn recv(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(mut p) = pool.alloc() else { break };
            let f = &self.frames[self.next];
            self.next += 1;
            if self.next == self.frames.len() {
                self.next = 0;
            }
            if p.set_len(f.len()).is_err() {
                pool.free(p);
                break;
            }
            p.data_mut().copy_from_slice(f);
            out.push(p);
            n += 1;
        }
        self.generated.0.add(n as u64);
        n
    }

    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        let n = frames.len();
        frames.drain(..).for_each(|p| pool.free(p));
        n
    }
}

/// Counts and discards what is sent to it; receives nothing.
pub struct SinkQueue {
    pub sent: Arc<CacheAligned<Counter>>,
}

impl SinkQueue {
    pub fn new() -> Self {
        SinkQueue { sent: Arc::new(CacheAligned(Counter::default())) }
    }
}

impl Default for SinkQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl LinkQueue for SinkQueue {
    fn recv(&mut self, _: &mut PacketPool, _: &mut Vec<PacketBuf>, _: usize) -> usize {
        0
    }

    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        let n = frames.len();
        self.sent.0.add(n as u64);
        frames.drain(..).for_each(|p| pool.free(p));
        n
    }
}
