//! `softnet bench --inet6`: IPv6 forwarding against IPv4 forwarding in the
//! same run (issue 12: within 1.2x of IPv4's ns/packet with 100,000 v6
//! routes). Same router shape, generator and sink as `bench`: one worker,
//! UDP with an 18-byte payload from A to each flow's destination, 100,000
//! routes (IPv4 /24s, IPv6 /48s; and 10 routes, IPv4 /16s) via B; the two
//! families run interleaved, the median of each is reported. Then IPv6
//! through pf's established states against IPv6 without pf (issue 12:
//! within +60 ns).

use crate::bench::{self, BenchCase};
use softnet_core::gen::{GeneratorQueue, SinkQueue};
use softnet_core::link::LinkQueue;
use softnet_core::route::{prio, Route6, RouteFlags};
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::topo::{A_MAC, B_MAC, R0_MAC, R1_MAC};
use softnet_wire::ethernet::EtherType;
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::Ipv6Repr;
use softnet_wire::udp::UdpPacket;
use std::net::Ipv6Addr;
use std::sync::Arc;

/// The UDP payload of every frame (the IPv4 bench's: 64-byte frames for
/// IPv4, 84-byte ones for IPv6).
const PAYLOAD: usize = 18;

fn a6() -> Ipv6Addr {
    "fd00:1::2".parse().unwrap()
}
fn b6() -> Ipv6Addr {
    "fd00:2::2".parse().unwrap()
}

/// The `r`-th benchmark prefix: /48s from 2400::/12.
fn prefix6(r: usize) -> u128 {
    (0x2400u128 << 112) | ((r as u128) << 80)
}

fn flow_dst6(j: usize, routes: usize) -> Ipv6Addr {
    Ipv6Addr::from(prefix6(j % routes) | (1 + (j / routes) as u128 % 250))
}

/// An Ethernet + IPv6 + UDP frame from A to `dst` via the router's r0.
fn udp6_frame(dst: Ipv6Addr, sport: u16) -> Vec<u8> {
    let ip = Ipv6Repr {
        src: a6(),
        dst,
        next_header: IpProtocol::UDP,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        payload_len: 8 + PAYLOAD,
    };
    let mut f = vec![0u8; 14 + ip.buffer_len()];
    f[0..6].copy_from_slice(&R0_MAC.0);
    f[6..12].copy_from_slice(&A_MAC.0);
    f[12..14].copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
    ip.emit(&mut f[14..]);
    let mut u = UdpPacket::new_unchecked(&mut f[54..]);
    u.set_src_port(sport);
    u.set_dst_port(9000);
    u.set_len((8 + PAYLOAD) as u16);
    u.fill_checksum_v6(a6(), dst);
    f
}

/// The IPv6 router: r0 fd00:1::1/64 fed the frames, r1 fd00:2::1/64 to a
/// sink, B a static neighbor, `routes` /48s via B.
pub(crate) fn build6(case: BenchCase) -> anyhow::Result<(Arc<Stack>, bench::SinkCounters)> {
    let frames: Vec<Vec<u8>> =
        (0..case.flows).map(|j| udp6_frame(flow_dst6(j, case.routes), 20000 + (j % 10_000) as u16)).collect();
    let stack = Stack::new(StackConfig { workers: case.workers, ..StackConfig::default() });
    let mut gens: Vec<Box<dyn LinkQueue>> = Vec::new();
    let mut sinks: Vec<Box<dyn LinkQueue>> = Vec::new();
    let mut counters = Vec::new();
    for w in 0..case.workers {
        gens.push(Box::new(GeneratorQueue::new(frames.iter().skip(w).step_by(case.workers).cloned().collect())));
        let s = SinkQueue::new();
        counters.push(s.sent.clone());
        sinks.push(Box::new(s));
    }
    stack.create_interface("r0", R0_MAC, 1500, gens)?;
    stack.create_interface("r1", R1_MAC, 1500, sinks)?;
    stack.add_address6("r0", "fd00:1::1".parse()?, 64)?;
    stack.add_address6("r1", "fd00:2::1".parse()?, 64)?;
    stack.set_up("r0", true)?;
    stack.set_up("r1", true)?;
    stack.ndp_set(b6(), None, B_MAC, false, false)?;
    let r1 = stack.ifaces.load().by_name("r1").map(|i| i.weak()).ok_or_else(|| anyhow::anyhow!("r1"))?;
    stack.routes.batch(0, |b| -> anyhow::Result<()> {
        for r in 0..case.routes {
            b.add(Route6 {
                dest: Ipv6Addr::from(prefix6(r)),
                prefix_len: 48,
                gateway: Some(b6()),
                ifp: r1,
                ifa: None,
                flags: RouteFlags::UP | RouteFlags::GATEWAY | RouteFlags::STATIC,
                mtu: 0,
                priority: prio::STATIC,
                origin: Default::default(),
                mpath: None,
            })?;
        }
        Ok(())
    })?;
    Ok((stack, counters))
}

pub fn run(secs: f64, repeat: usize) -> anyhow::Result<()> {
    println!("softnet bench --inet6: UDP ({PAYLOAD}-byte payload) forwarding in memory, IPv4 and IPv6 interleaved,");
    println!("{secs} s x {repeat} runs per case, median, one worker");
    println!();
    println!("| routes | flows | IPv4 ns/packet | IPv6 ns/packet | IPv6 / IPv4 | runs v4 / v6 (Mpps) |");
    println!("|---:|---:|---:|---:|---:|---|");
    // SOFTNET_BENCH_PF_ONLY=1: the pf row alone (for profiling).
    let pf_only = std::env::var_os("SOFTNET_BENCH_PF_ONLY").is_some_and(|v| v == "1");
    // 10 routes too: the difference between the two rows is the lookup's.
    let rows: &[(usize, usize)] = if pf_only { &[] } else { &[(10, 1), (100_000, 1), (100_000, 10_000)] };
    for &(routes, flows) in rows {
        let case = BenchCase { workers: 1, routes, flows };
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for _ in 0..repeat {
            v4.push(bench::run_once(case, secs)? / 1e6);
            let (stack, counters) = build6(case)?;
            v6.push(bench::measure(case, secs, stack, counters)? / 1e6);
        }
        let med = |v: &Vec<f64>| {
            let mut s = v.clone();
            s.sort_by(|a, b| a.partial_cmp(b).unwrap());
            s[s.len() / 2]
        };
        let (ns4, ns6) = (1e3 / med(&v4), 1e3 / med(&v6));
        let fmt = |v: &Vec<f64>| v.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ");
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.2}x | {} / {} |",
            case.routes,
            flows,
            ns4,
            ns6,
            ns6 / ns4,
            fmt(&v4),
            fmt(&v6)
        );
    }
    pf_row(secs, repeat)
}

/// Issue 12's pf figure: IPv6 forwarding through `pass all` (a state per
/// flow, pf in on r0 and out on r1), 10 routes and 10,000 established
/// flows, against the same forwarding without pf, interleaved.
fn pf_row(secs: f64, repeat: usize) -> anyhow::Result<()> {
    let case = BenchCase { workers: 1, routes: 10, flows: 10_000 };
    let (mut base, mut with) = (Vec::new(), Vec::new());
    for _ in 0..repeat {
        let (stack, counters) = build6(case)?;
        base.push(bench::measure(case, secs, stack, counters)? / 1e6);
        let (stack, counters) = build6(case)?;
        let resolver = softnet_pf::StaticResolver::new();
        let rs = softnet_pf::parse_ruleset("pass all\n", "bench6.conf", &resolver)
            .map_err(|e| anyhow::anyhow!("bench ruleset: {e:?}"))?;
        let pf = softnet_pf::Pf::new();
        pf.load(&rs, &resolver)?;
        stack.set_filter(Some(Box::new(pf.clone())));
        with.push(bench::measure(case, secs, stack, counters)? / 1e6);
        anyhow::ensure!(pf.state_count() >= 2 * case.flows, "only {} states", pf.state_count());
    }
    let med = |v: &Vec<f64>| {
        let mut s = v.clone();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        s[s.len() / 2]
    };
    let (ns, ns_pf) = (1e3 / med(&base), 1e3 / med(&with));
    let fmt = |v: &Vec<f64>| v.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ");
    println!();
    println!("| IPv6, 10 routes, 10,000 flows | ns/packet | runs (Mpps) |");
    println!("|---|---:|---|");
    println!("| forwarding | {ns:.1} | {} |", fmt(&base));
    println!("| with pf `pass all` (established states) | {ns_pf:.1} | {} |", fmt(&with));
    println!("| pf cost | {:+.1} | |", ns_pf - ns);
    Ok(())
}
