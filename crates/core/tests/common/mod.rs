//! Set-up shared by the socket tests: two stacks on one virtual wire, on
//! one manual clock, each with one worker.
//!
//! ```text
//!  stack A  a0 10.0.0.1/24 ── wire ── b0 10.0.0.2/24  stack B
//! ```
//!
//! Each test binary uses a part of this module.
#![allow(dead_code)]

pub mod frames6;

use softnet_core::iface::IfAddr;
use softnet_core::link::LinkQueue;
use softnet_core::rng::FixedEntropy;
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::vlink;
use softnet_core::worker::Worker;
use softnet_wire::ethernet::MacAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct TwoStacks {
    pub clock: Arc<ManualClock>,
    pub a: Arc<Stack>,
    pub b: Arc<Stack>,
    /// A's worker and B's (not yet polled).
    pub wa: Worker,
    pub wb: Worker,
}

/// Stacks of `pool_size` buffers each (entropy seeds 1 and 2), joined by a
/// wire of one queue of `ring` frames, the interfaces up.
pub fn two_stacks(pool_size: usize, ring: usize) -> TwoStacks {
    two_stacks_with(pool_size, ring, |q, _| q)
}

/// `two_stacks`, each side's link queues passed through `wrap` (with 0
/// for A's, 1 for B's) before its interface takes them.
pub fn two_stacks_with(
    pool_size: usize,
    ring: usize,
    mut wrap: impl FnMut(Vec<Box<dyn LinkQueue>>, usize) -> Vec<Box<dyn LinkQueue>>,
) -> TwoStacks {
    let clock = Arc::new(ManualClock::new(Instant::from_secs(100)));
    let dynclock: Arc<dyn Clock> = clock.clone();
    let cfg = StackConfig { pool_size, ..StackConfig::default() };
    let a = Stack::with_clock_and_entropy(cfg.clone(), dynclock.clone(), Arc::new(FixedEntropy::new(1)));
    let b = Stack::with_clock_and_entropy(cfg, dynclock.clone(), Arc::new(FixedEntropy::new(2)));
    let (pa, pb) = vlink::wire(1, ring);
    a.create_interface("a0", MacAddr([2, 0, 0, 0, 0, 1]), 1500, wrap(pa.link_queues(), 0)).unwrap();
    b.create_interface("b0", MacAddr([2, 0, 0, 0, 0, 2]), 1500, wrap(pb.link_queues(), 1)).unwrap();
    a.add_address("a0", IfAddr::new("10.0.0.1".parse().unwrap(), 24)).unwrap();
    b.add_address("b0", IfAddr::new("10.0.0.2".parse().unwrap(), 24)).unwrap();
    a.set_up("a0", true).unwrap();
    b.set_up("b0", true).unwrap();
    let wa = Worker::new(0, a.clone(), dynclock.clone());
    let wb = Worker::new(0, b.clone(), dynclock);
    TwoStacks { clock, a, b, wa, wb }
}

/// One round of `workers` (both stacks'), then the clock moves by `d`;
/// the stacks' control-side timers run whenever the clock crosses a
/// 100 ms boundary.
pub fn step_workers<'a>(
    clock: &ManualClock,
    stacks: [&Stack; 2],
    workers: impl IntoIterator<Item = &'a mut Worker>,
    d: Duration,
) {
    let before = clock.now().as_nanos() / 100_000_000;
    for w in workers {
        w.poll();
    }
    clock.advance(d);
    if clock.now().as_nanos() / 100_000_000 != before {
        for s in stacks {
            s.tick();
        }
    }
}
