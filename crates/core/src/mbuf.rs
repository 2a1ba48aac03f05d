//! Packet buffer and reference accounting: what `softnet netstat -m`
//! shows (OpenBSD's mbuf view, netstat(1) `-m`): each worker's pools
//! (buffers, free, in use, peak, requests denied), the shared spill, the
//! control thread's pool, and the references the control plane holds on
//! interfaces and route snapshots.
//!
//! Workers own their pools and nobody else may touch them, so each worker
//! publishes its pools' levels once per round into its own slot
//! (`PoolGauges`, relaxed stores, never per packet); the control thread
//! reads the slots. At idle (no traffic, held packets expired) every
//! buffer is back in a pool or the spill: in use is 0. The churn tests
//! compare this view with the one taken before the churn.

use crate::packet::PacketPool;
use crate::percpu::Gauge;
use std::fmt::Write as _;

/// One pool's levels as its worker last published them.
#[derive(Default, Debug)]
pub struct PoolLevels {
    pub buf_size: Gauge,
    pub total: Gauge,
    pub free: Gauge,
    pub low: Gauge,
    pub exhausted: Gauge,
}

impl PoolLevels {
    #[inline]
    fn publish(&self, p: &PacketPool) {
        self.buf_size.set(p.buf_size() as u64);
        self.total.set(p.limit() as u64);
        self.free.set(p.available() as u64);
        self.low.set(p.low_water() as u64);
        self.exhausted.set(p.exhausted);
    }

    fn read(&self) -> PoolCount {
        PoolCount {
            buf_size: self.buf_size.get() as usize,
            total: self.total.get() as usize,
            free: self.free.get() as usize,
            low: self.low.get() as usize,
            denied: self.exhausted.get(),
        }
    }
}

/// A worker's slot: its packet pool and its pool of large buffers
/// (reassembly).
#[derive(Default, Debug)]
pub struct PoolGauges {
    pub small: PoolLevels,
    pub large: PoolLevels,
    /// Rounds published (0: the worker has not run yet).
    pub rounds: crate::percpu::Counter,
}

impl PoolGauges {
    /// The worker's end of a round: a dozen relaxed stores into its own
    /// cache line.
    #[inline]
    pub fn publish(&self, small: &PacketPool, large: &PacketPool) {
        self.small.publish(small);
        self.large.publish(large);
        self.rounds.inc();
    }
}

/// One pool, read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCount {
    pub buf_size: usize,
    pub total: usize,
    pub free: usize,
    /// The fewest free since start (`total - low` is the peak in use).
    pub low: usize,
    /// Requests for a buffer that found the pool (and the spill) empty.
    pub denied: u64,
}

/// An interface's references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfRefs {
    pub name: String,
    pub index: u32,
    pub generation: u32,
    /// Strong references (`Arc::strong_count`), the interface table's own
    /// included.
    pub refs: usize,
}

/// What `netstat -m` prints, read at one moment.
#[derive(Clone, Debug, Default)]
pub struct BufferView {
    /// Per worker: (packet pool, large pool); `None` for a worker that has
    /// not run a round yet.
    pub workers: Vec<Option<(PoolCount, PoolCount)>>,
    /// Buffers waiting in the workers' shared spill.
    pub spill: usize,
    /// The control thread's pool (frames it sends itself).
    pub control: PoolCount,
    /// Buffers held by the ARP and neighbor tables' hold queues.
    pub held_arp: usize,
    pub held_nd6: usize,
    pub interfaces: Vec<IfRefs>,
    /// Interface objects not yet freed: the listed ones plus destroyed
    /// ones something still references.
    pub if_allocated: usize,
    /// Per routing table: (id, IPv4 routes, IPv6 routes).
    pub routes: Vec<(u16, usize, usize)>,
    /// Old route snapshots a reader still holds (freed once none does).
    pub routes_retired: usize,
}

impl BufferView {
    /// Packet-size buffers of the workers: (in the pools, made); their
    /// difference is what is in use (in flight or held), counting the
    /// spill as free.
    pub fn worker_buffers(&self) -> (usize, usize) {
        let (mut free, mut total) = (self.spill, 0);
        for (s, _) in self.workers.iter().flatten() {
            free += s.free;
            total += s.total;
        }
        (free.min(total), total)
    }

    /// netstat -m's text.
    pub fn format(&self) -> String {
        let mut o = String::new();
        let (free, total) = self.worker_buffers();
        let _ = writeln!(o, "{} packet buffers in use of {}", total - free, total);
        let _ = writeln!(o, "worker  size    total   free    in use  peak    denied");
        for (w, pools) in self.workers.iter().enumerate() {
            match pools {
                None => {
                    let _ = writeln!(o, "{w:<7} (not started)");
                }
                Some((s, l)) => {
                    for p in [s, l] {
                        let _ = writeln!(
                            o,
                            "{w:<7} {:<7} {:<7} {:<7} {:<7} {:<7} {}",
                            p.buf_size,
                            p.total,
                            p.free,
                            p.total.saturating_sub(p.free),
                            p.total.saturating_sub(p.low),
                            p.denied
                        );
                    }
                }
            }
        }
        let c = &self.control;
        let _ = writeln!(
            o,
            "control {:<7} {:<7} {:<7} {:<7} {:<7} {}",
            c.buf_size,
            c.total,
            c.free,
            c.total.saturating_sub(c.free),
            c.total.saturating_sub(c.low),
            c.denied
        );
        let denied: u64 = self.workers.iter().flatten().map(|(s, l)| s.denied + l.denied).sum::<u64>() + c.denied;
        let _ = writeln!(o, "{} buffers in the shared spill", self.spill);
        let _ = writeln!(o, "{} buffers held for ARP, {} for neighbor discovery", self.held_arp, self.held_nd6);
        let _ = writeln!(o, "{denied} requests for buffers denied");
        let _ = writeln!(o, "{} interfaces listed, {} allocated", self.interfaces.len(), self.if_allocated);
        for i in &self.interfaces {
            let _ = writeln!(o, "  {} index {} generation {} refs {}", i.name, i.index, i.generation, i.refs);
        }
        for (t, v4, v6) in &self.routes {
            let _ = writeln!(o, "table {t}: {v4} inet routes, {v6} inet6 routes");
        }
        let _ = writeln!(o, "{} route snapshots retired and still held", self.routes_retired);
        o
    }
}

/// Reads a worker's slot (`None` before its first round).
pub fn read_worker(g: &PoolGauges) -> Option<(PoolCount, PoolCount)> {
    (g.rounds.get() > 0).then(|| (g.small.read(), g.large.read()))
}

/// A pool's levels read directly (the control thread's own pool).
pub fn read_pool(p: &PacketPool) -> PoolCount {
    PoolCount { buf_size: p.buf_size(), total: p.limit(), free: p.available(), low: p.low_water(), denied: p.exhausted }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::DEFAULT_BUF_SIZE;

    #[test]
    fn published_levels_show_in_use_and_peak_and_return_to_idle() {
        let g = PoolGauges::default();
        assert_eq!(read_worker(&g), None, "a worker that never ran");
        let mut small = PacketPool::new(8, DEFAULT_BUF_SIZE);
        let large = PacketPool::new(2, 4096);
        let held: Vec<_> = (0..5).map(|_| small.alloc().unwrap()).collect();
        g.publish(&small, &large);
        let (s, l) = read_worker(&g).unwrap();
        assert_eq!((s.total, s.free, s.total - s.low), (8, 3, 5));
        assert_eq!((l.total, l.free), (2, 2));
        let view = BufferView { workers: vec![Some((s, l))], spill: 1, ..Default::default() };
        assert_eq!(view.worker_buffers(), (4, 8));
        assert!(view.format().starts_with("4 packet buffers in use of 8\n"), "{}", view.format());
        for p in held {
            small.free(p);
        }
        g.publish(&small, &large);
        let (s, _) = read_worker(&g).unwrap();
        assert_eq!((s.free, s.total - s.low), (8, 5), "idle again; the peak stays");
    }
}
