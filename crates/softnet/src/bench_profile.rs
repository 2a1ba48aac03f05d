//! The forwarding benches' routers polled on the test's own thread for a
//! fixed number of rounds, for callgrind: instructions and cache misses
//! per packet through the whole worker (generator copy, ether and IP
//! input, the route lookup, forwarding, neighbor resolution, staging and
//! the sink), IPv4 against IPv6 with `bench --inet6`'s shapes (100,000
//! routes: IPv4 /24s, IPv6 /48s; 1 or 10,000 flows). Timing on a shared
//! machine cannot tell a few instructions apart; counts can (BENCHMARKS.md
//! §1, "IPv6 forwarding against IPv4").
//!
//! ```sh
//! cargo test --release -p softnet --lib bench_profile -- --ignored --nocapture --exact bench_profile::profile_forward6_100k_10k
//! valgrind --tool=callgrind --cache-sim=yes --D1=49152,12,64 --LL=4194304,16,64 \
//!     --toggle-collect='*profiled_rounds*' target/release/deps/softnet-HASH \
//!     --ignored --nocapture --exact bench_profile::profile_forward6_100k_10k
//! ```
//!
//! Each case prints the packets forwarded inside `profiled_rounds` (what
//! callgrind's counts are divided by).

use crate::bench::{self, BenchCase};
use crate::bench6;
use softnet_core::time::{Clock, MonotonicClock};
use softnet_core::worker::Worker;
use std::sync::Arc;

/// Rounds counted; each receives a batch of 64 frames.
const ROUNDS: usize = 4_000;

/// The span callgrind counts (`--toggle-collect='*profiled_rounds*'`).
#[inline(never)]
fn profiled_rounds(w: &mut Worker, rounds: usize) -> usize {
    (0..rounds).map(|_| w.poll()).sum()
}

/// Polls the router of `case` (IPv6's `bench --inet6` router if `v6`,
/// else `bench`'s) on this thread: every flow twice before counting, then
/// `ROUNDS` rounds; the packets forwarded in those.
fn profile(v6: bool, routes: usize, flows: usize) -> u64 {
    let case = BenchCase { workers: 1, routes, flows };
    let (stack, counters) = if v6 { bench6::build6(case) } else { bench::build(case) }.expect("router");
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
    let mut w = Worker::new(0, stack, clock);
    let warm = 2 * flows.div_ceil(softnet_core::worker::BATCH) + 16;
    profiled_warmup(&mut w, warm);
    let before = counters[0].0.get();
    let received = profiled_rounds(&mut w, ROUNDS);
    let sent = counters[0].0.get() - before;
    let family = if v6 { "IPv6" } else { "IPv4" };
    println!("{family}, {routes} routes, {flows} flows: {received} received, {sent} forwarded in {ROUNDS} rounds");
    assert_eq!(sent, received as u64, "every frame generated is forwarded");
    sent
}

/// The rounds before counting (a name callgrind does not collect).
#[inline(never)]
fn profiled_warmup(w: &mut Worker, rounds: usize) {
    for _ in 0..rounds {
        w.poll();
    }
}

#[test]
#[ignore = "a profile case for callgrind (BENCHMARKS.md §1), not a test"]
fn profile_forward4_100k_1() {
    profile(false, 100_000, 1);
}

#[test]
#[ignore = "a profile case for callgrind (BENCHMARKS.md §1), not a test"]
fn profile_forward6_100k_1() {
    profile(true, 100_000, 1);
}

#[test]
#[ignore = "a profile case for callgrind (BENCHMARKS.md §1), not a test"]
fn profile_forward4_100k_10k() {
    profile(false, 100_000, 10_000);
}

#[test]
#[ignore = "a profile case for callgrind (BENCHMARKS.md §1), not a test"]
fn profile_forward6_100k_10k() {
    profile(true, 100_000, 10_000);
}
