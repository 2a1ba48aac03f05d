//! `softnet bench`: 64-byte UDP forwarding in memory, measured per worker.
//!
//! Frames are generated inside each worker (a `GeneratorQueue` on r0
//! copies prebuilt frames into the worker's buffers, as a NIC would) and
//! counted by a `SinkQueue` on r1, so the generator never steals the other
//! core. Each configuration runs several times; the median is reported.

use softnet_core::gen::{GeneratorQueue, SinkQueue};
use softnet_core::host::Host;
use softnet_core::iface::IfAddr;
use softnet_core::link::LinkQueue;
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::time::{Clock, MonotonicClock};
use softnet_core::topo::{A_IP, A_MAC, B_IP, B_MAC, R0_IP, R0_MAC, R1_IP, R1_MAC};
use softnet_core::vlink;
use softnet_core::worker::Worker;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct BenchCase {
    pub workers: usize,
    pub routes: usize,
    pub flows: usize,
}

pub struct BenchResult {
    pub case: BenchCase,
    pub mpps: f64,
}

/// Destination of flow `j`: spread over the benchmark's prefixes.
fn flow_dst(j: usize, routes: usize) -> Ipv4Addr {
    let r = j % routes;
    let host = 1 + (j / routes) as u32 % 250;
    Ipv4Addr::from(route_prefix(r, routes) | host)
}

/// The `r`-th benchmark prefix: /24s from 11.0.0.0 for big tables, /16s
/// from 11.0.0.0 for small ones.
fn route_prefix(r: usize, routes: usize) -> u32 {
    let base = u32::from(Ipv4Addr::new(11, 0, 0, 0));
    if routes > 1000 {
        base + (r as u32) * 256
    } else {
        base + (r as u32) * 65536
    }
}

fn route_len(routes: usize) -> u8 {
    if routes > 1000 {
        24
    } else {
        16
    }
}

pub(crate) type SinkCounters = Vec<Arc<softnet_core::percpu::CacheAligned<softnet_core::percpu::Counter>>>;

pub(crate) fn build(case: BenchCase) -> anyhow::Result<(Arc<Stack>, SinkCounters)> {
    // Frames from A to each flow's destination, via the router's r0 MAC.
    let (_, a_port) = vlink::wire(1, 1);
    let mut a = Host::new("A", A_MAC, IfAddr::new(A_IP, 24), Some(R0_IP), a_port);
    let frames: Vec<Vec<u8>> = (0..case.flows)
        .map(|j| a.udp_frame(R0_MAC, flow_dst(j, case.routes), 20000 + (j % 1000) as u16, 9000, 18))
        .collect();
    build_with(case, frames)
}

/// The router of `build`, fed `frames`.
fn build_with(case: BenchCase, frames: Vec<Vec<u8>>) -> anyhow::Result<(Arc<Stack>, SinkCounters)> {
    let stack = Stack::new(StackConfig { workers: case.workers, ..StackConfig::default() });
    let mut gens: Vec<Box<dyn LinkQueue>> = Vec::new();
    let mut sinks: Vec<Box<dyn LinkQueue>> = Vec::new();
    let mut counters = Vec::new();
    for w in 0..case.workers {
        // As a NIC's RSS would: each flow on one worker's queue (flow j on
        // worker j % workers), so workers never share a flow's state; with
        // fewer flows than workers every worker sends all of them, each
        // starting at a different point of the list.
        let f: Vec<Vec<u8>> = if frames.len() >= case.workers {
            frames.iter().skip(w).step_by(case.workers).cloned().collect()
        } else {
            let mut f = frames.clone();
            f.rotate_left(w * frames.len() / case.workers);
            f
        };
        gens.push(Box::new(GeneratorQueue::new(f)));
        let s = SinkQueue::new();
        counters.push(s.sent.clone());
        sinks.push(Box::new(s));
    }
    stack.create_interface("r0", R0_MAC, 1500, gens)?;
    stack.create_interface("r1", R1_MAC, 1500, sinks)?;
    stack.add_address("r0", IfAddr::new(R0_IP, 24))?;
    stack.add_address("r1", IfAddr::new(R1_IP, 24))?;
    stack.set_up("r0", true)?;
    stack.set_up("r1", true)?;
    stack.arp_add_static(B_IP, B_MAC)?;
    let len = route_len(case.routes);
    stack.routes_batch(
        0,
        (0..case.routes).map(|r| (Ipv4Addr::from(route_prefix(r, case.routes)), len, B_IP)).collect(),
    )?;
    Ok((stack, counters))
}

pub(crate) fn pin(cpu: usize) {
    // SAFETY: plain libc call on a zeroed cpu_set_t that we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

pub(crate) fn run_once(case: BenchCase, secs: f64) -> anyhow::Result<f64> {
    let (stack, counters) = build(case)?;
    measure(case, secs, stack, counters)
}

/// The workers' mean CPU time in seconds (`SOFTNET_BENCH_CPUTIME=1`
/// divides by it instead of the wall clock).
fn workers_cpu<T>(threads: &[std::thread::JoinHandle<T>]) -> f64 {
    use std::os::unix::thread::JoinHandleExt;
    threads
        .iter()
        .map(|t| {
            let mut id: libc::clockid_t = 0;
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: the threads are alive until the caller joins them.
            unsafe {
                libc::pthread_getcpuclockid(t.as_pthread_t(), &mut id);
                libc::clock_gettime(id, &mut ts);
            }
            ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
        })
        .sum::<f64>()
        / threads.len() as f64
}

/// Runs the workers of a built router; packets per second out of r1.
pub(crate) fn measure(case: BenchCase, secs: f64, stack: Arc<Stack>, counters: SinkCounters) -> anyhow::Result<f64> {
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
    let stop = Arc::new(AtomicBool::new(false));
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads: Vec<_> = (0..case.workers)
        .map(|i| {
            let w = Worker::new(i, stack.clone(), clock.clone());
            let stop = stop.clone();
            // One worker: the last core; two: one each.
            let cpu = if case.workers == 1 { ncpu - 1 } else { i % ncpu };
            std::thread::spawn(move || {
                pin(cpu);
                w.run(&stop, |_, _, _| std::hint::spin_loop())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // SOFTNET_BENCH_CPUTIME=1: divide by the workers' CPU time instead of
    // the wall clock, so time the scheduler gave to other processes on a
    // shared machine does not count (for A/B comparisons).
    let cputime = std::env::var_os("SOFTNET_BENCH_CPUTIME").is_some_and(|v| v == "1");
    let cpu = || workers_cpu(&threads);
    let c0: u64 = counters.iter().map(|c| c.0.get()).sum();
    let (t0, cpu0) = (Instant::now(), cpu());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let c1: u64 = counters.iter().map(|c| c.0.get()).sum();
    let dt = if cputime { cpu() - cpu0 } else { t0.elapsed().as_secs_f64() };
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let forwarded = softnet_core::percpu::PerWorker::sum(&stack.stats, |s| &s.ip.forward)
        + softnet_core::percpu::PerWorker::sum(&stack.stats, |s| &s.ip6.forward);
    anyhow::ensure!(forwarded > 0, "nothing was forwarded: {case:?}");
    // SOFTNET_BENCH_FWD=1: the packets forwarded over the whole run, to
    // divide a profiler's instruction count by (BENCHMARKS.md §2).
    if std::env::var_os("SOFTNET_BENCH_FWD").is_some_and(|v| v == "1") {
        eprintln!("forwarded {forwarded}");
    }
    Ok((c1 - c0) as f64 / dt)
}

pub fn run(secs: f64, repeat: usize, quick: bool) -> anyhow::Result<()> {
    let mut cases = Vec::new();
    for &routes in &[10usize, 100_000] {
        for &flows in &[1usize, 10_000] {
            for &workers in &[1usize, 2] {
                cases.push(BenchCase { workers, routes, flows });
            }
        }
    }
    if quick {
        cases.retain(|c| c.flows == 1 || c.routes == 100_000);
    }
    println!("softnet bench: 64-byte UDP forwarding in memory, {secs} s x {repeat} runs per case, median");
    println!();
    println!("| workers | routes | flows | Mpps (median) | ns/packet/worker | runs (Mpps) |");
    println!("|---:|---:|---:|---:|---:|---|");
    let mut results = Vec::new();
    for case in cases {
        let mut runs = Vec::new();
        for _ in 0..repeat {
            runs.push(run_once(case, secs)? / 1e6);
        }
        let mut sorted = runs.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mpps = sorted[sorted.len() / 2];
        let ns = case.workers as f64 * 1e3 / mpps;
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {} |",
            case.workers,
            case.routes,
            case.flows,
            mpps,
            ns,
            runs.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ")
        );
        results.push(BenchResult { case, mpps });
    }
    println!();
    for r in results.iter().filter(|r| r.case.workers == 2) {
        if let Some(one) = results
            .iter()
            .find(|o| o.case.workers == 1 && o.case.routes == r.case.routes && o.case.flows == r.case.flows)
        {
            println!(
                "scaling {} routes, {} flows: 2 workers = {:.2}x one worker",
                r.case.routes,
                r.case.flows,
                r.mpps / one.mpps
            );
        }
    }
    Ok(())
}

// pf: the same forwarding with the filter in the stack's hooks.

/// What the filter is given in a pf benchmark case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PfCase {
    /// (a) `pass all` (keep state): every packet hits an established state
    /// at pf in and at pf out.
    Stateful,
    /// (b) 1,000 rules, `no state`, only the last one matching.
    Rules1000,
    /// (c) `block from <t>` with 100,000 prefixes, not matching; then pass.
    Table100k,
    /// (d) a new flow each packet: states created per second.
    Create,
    /// (e) as (a), with `nat-to` on r1: pf out finds each packet's
    /// translating state and rewrites its source.
    Nat,
    /// (f) as (d), each new flow translated (a source port found free).
    NatCreate,
}

impl PfCase {
    fn label(self) -> &'static str {
        match self {
            PfCase::Stateful => "(a) pass keep state, 10k flows",
            PfCase::Rules1000 => "(b) 1,000 rules, last matches",
            PfCase::Table100k => "(c) table of 100k prefixes",
            PfCase::Create => "(d) new state per packet",
            PfCase::Nat => "(e) nat-to, 10k flows",
            PfCase::NatCreate => "(f) new nat-to state per packet",
        }
    }

    fn ruleset(self, states: usize) -> String {
        match self {
            PfCase::Stateful => "pass all\n".to_string(),
            PfCase::Rules1000 => {
                let mut t: String =
                    (1..1000).map(|i| format!("pass proto udp to port {} no state\n", 10_000 + i)).collect();
                t.push_str("pass proto udp to port 9000 no state\n");
                t
            }
            PfCase::Table100k => "table <t> persist\nblock from <t>\npass all no state\n".to_string(),
            PfCase::Create => format!("set limit states {}\npass in all\npass out all no state\n", states + 1000),
            PfCase::Nat => "match out on r1 nat-to 10.0.2.1\npass all\n".to_string(),
            // a translated packet always gets a state, `no state` or not
            PfCase::NatCreate => format!(
                "set limit states {}\nmatch out on r1 nat-to 10.0.2.1\npass in all no state\npass out all no state\n",
                states + 1000
            ),
        }
    }
}

/// Frames of `n` distinct UDP flows (source and destination ports vary)
/// toward the benchmark prefixes.
fn pf_frames(n: usize, routes: usize) -> Vec<Vec<u8>> {
    let (_, a_port) = vlink::wire(1, 1);
    let mut a = Host::new("A", A_MAC, IfAddr::new(A_IP, 24), Some(R0_IP), a_port);
    (0..n)
        .map(|j| a.udp_frame(R0_MAC, flow_dst(j, routes), 1024 + (j % 50_000) as u16, 9000 + (j / 50_000) as u16, 18))
        .collect()
}

/// Loads `case`'s ruleset (and table) into a new pf and installs it in the
/// stack's hook, as the daemon does.
fn pf_install(stack: &Stack, case: PfCase, states: usize) -> anyhow::Result<softnet_pf::Pf> {
    use softnet_pf::model::{IpNet, TableEntry};
    let resolver = softnet_pf::StaticResolver::new()
        .with_interface("r0", &["10.0.1.1/24"])
        .with_interface("r1", &["10.0.2.1/24"])
        .with_egress("r1");
    let rs = softnet_pf::parse_ruleset(&case.ruleset(states), "bench.conf", &resolver)
        .map_err(|e| anyhow::anyhow!("bench ruleset: {e:?}"))?;
    let pf = softnet_pf::Pf::new();
    pf.load(&rs, &resolver)?;
    if case == PfCase::Table100k {
        // 100,000 /24s from 20.0.0.0: none holds A.
        let base = u32::from(Ipv4Addr::new(20, 0, 0, 0));
        let entries: Vec<TableEntry> = (0..100_000u32)
            .map(|i| TableEntry { negated: false, net: IpNet::new(Ipv4Addr::from(base + i * 256).into(), 24) })
            .collect();
        pf.table_add("t", &entries).map_err(|e| anyhow::anyhow!(e))?;
    }
    stack.set_filter(Some(Box::new(pf.clone())));
    Ok(pf)
}

/// (d), (f): time until every one of `n` new flows has its state; new
/// states per second.
fn create_once(workers: usize, n: usize, pc: PfCase) -> anyhow::Result<f64> {
    let case = BenchCase { workers, routes: 10, flows: n };
    let (stack, _) = build_with(case, pf_frames(n, case.routes))?;
    let pf = pf_install(&stack, pc, n)?;
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
    let stop = Arc::new(AtomicBool::new(false));
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let t0 = Instant::now();
    let threads: Vec<_> = (0..workers)
        .map(|i| {
            let w = Worker::new(i, stack.clone(), clock.clone());
            let stop = stop.clone();
            let cpu = if workers == 1 { ncpu - 1 } else { i % ncpu };
            std::thread::spawn(move || {
                pin(cpu);
                w.run(&stop, |_, _, _| std::hint::spin_loop())
            })
        })
        .collect();
    while pf.state_count() < n && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_micros(200));
    }
    // As measure(): the workers' CPU time under SOFTNET_BENCH_CPUTIME=1.
    let cputime = std::env::var_os("SOFTNET_BENCH_CPUTIME").is_some_and(|v| v == "1");
    let dt = if cputime { workers_cpu(&threads) } else { t0.elapsed().as_secs_f64() };
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    anyhow::ensure!(pf.state_count() >= n, "only {} of {n} states created", pf.state_count());
    Ok(n as f64 / dt)
}

/// The best (highest) rate of several runs: noise only slows a run.
fn best(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::MIN, f64::max)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `softnet bench --pf`: the pf cases against the same forwarding without
/// pf; ns/packet/worker and the difference pf makes.
pub fn run_pf(secs: f64, repeat: usize, quick: bool) -> anyhow::Result<()> {
    const FLOWS: usize = 10_000;
    const NEW_FLOWS: usize = 200_000;
    let workers_list: &[usize] = if quick { &[1] } else { &[1, 2] };
    println!("softnet bench --pf: 64-byte UDP forwarding in memory with pf, {secs} s x {repeat} runs per case, median");
    println!("(pf is called twice per forwarded packet: pf in on r0, pf out on r1)");
    println!();
    println!(
        "| case | workers | Mpps | ns/packet/worker | without pf: Mpps | ns/packet/worker | pf cost ns/packet | best of each: pf cost | runs (Mpps) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    // SOFTNET_BENCH_PF_CASES=ac: only those cases (for A/B runs).
    let only = std::env::var("SOFTNET_BENCH_PF_CASES").unwrap_or_else(|_| "abcdef".into());
    // SOFTNET_BENCH_PF_ONLY=1: skip the runs without pf (for profiling pf
    // alone); the table then shows no baseline.
    let pf_only = std::env::var_os("SOFTNET_BENCH_PF_ONLY").is_some_and(|v| v == "1");
    for &workers in workers_list {
        let case = BenchCase { workers, routes: 10, flows: FLOWS };
        let ns_of = |mpps: f64| workers as f64 * 1e3 / mpps;
        for (pc, _) in [(PfCase::Stateful, 'a'), (PfCase::Rules1000, 'b'), (PfCase::Table100k, 'c'), (PfCase::Nat, 'e')]
            .into_iter()
            .filter(|(_, c)| only.contains(*c))
        {
            // Each run with pf is paired with a run without it, the order
            // alternating, so that a shared machine's slow minutes fall on
            // both sides: the cost is the median of the pairs' differences.
            // Noise only slows a run, so the best run of each side gives a
            // second estimate ("best of each").
            let (mut runs, mut base, mut diffs) = (Vec::new(), Vec::new(), Vec::new());
            for r in 0..repeat {
                let mut b = f64::NAN;
                let one_base = || -> anyhow::Result<f64> {
                    let (stack, counters) = build_with(case, pf_frames(FLOWS, case.routes))?;
                    Ok(measure(case, secs, stack, counters)? / 1e6)
                };
                if !pf_only && r % 2 == 0 {
                    b = one_base()?;
                }
                let (stack, counters) = build_with(case, pf_frames(FLOWS, case.routes))?;
                let _pf = pf_install(&stack, pc, FLOWS)?;
                let m = measure(case, secs, stack, counters)? / 1e6;
                if !pf_only && r % 2 == 1 {
                    b = one_base()?;
                }
                runs.push(m);
                if !pf_only {
                    base.push(b);
                    diffs.push(ns_of(m) - ns_of(b));
                }
            }
            let mpps = median(runs.clone());
            let (base_mpps, cost, best) = if pf_only {
                (f64::NAN, f64::NAN, f64::NAN)
            } else {
                (median(base.clone()), median(diffs), ns_of(best(&runs)) - ns_of(best(&base)))
            };
            println!(
                "| {} | {} | {:.2} | {:.0} | {:.2} | {:.0} | {:+.0} | {:+.0} | {} |",
                pc.label(),
                workers,
                mpps,
                ns_of(mpps),
                base_mpps,
                ns_of(base_mpps),
                cost,
                best,
                runs.iter()
                    .zip(base.iter().chain(std::iter::repeat(&f64::NAN)))
                    .map(|(r, b)| format!("{r:.2}/{b:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        for (pc, c) in [(PfCase::Create, 'd'), (PfCase::NatCreate, 'f')] {
            if !only.contains(c) {
                continue;
            }
            // against forwarding the same number of distinct flows.
            let dcase = BenchCase { workers, routes: 10, flows: NEW_FLOWS };
            let mut base = Vec::new();
            let mut runs = Vec::new();
            for _ in 0..repeat {
                let (stack, counters) = build_with(dcase, pf_frames(NEW_FLOWS, dcase.routes))?;
                base.push(measure(dcase, secs, stack, counters)? / 1e6);
                runs.push(create_once(workers, NEW_FLOWS, pc)? / 1e6);
            }
            let best_cost = ns_of(best(&runs)) - ns_of(best(&base));
            let (mpps, base_mpps) = (median(runs.clone()), median(base));
            let (ns, base_ns) = (ns_of(mpps), ns_of(base_mpps));
            println!(
                "| {} ({}k states/s) | {} | {:.2} | {:.0} | {:.2} | {:.0} | {:+.0} | {:+.0} | {} |",
                pc.label(),
                (mpps * 1e3).round(),
                workers,
                mpps,
                ns,
                base_mpps,
                base_ns,
                ns - base_ns,
                best_cost,
                runs.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ")
            );
        }
    }
    Ok(())
}
