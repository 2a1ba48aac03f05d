//! `softnet demo`: an in-memory topology — two hosts, one router with two
//! workers on threads — and a human-readable report of what happened.

use softnet_core::host::{Host, HostEvent};
use softnet_core::iface::IfAddr;
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::time::{Clock, MonotonicClock};
use softnet_core::topo::{A_IP, A_MAC, B_IP, B_MAC, R0_IP, R0_MAC, R1_IP, R1_MAC};
use softnet_core::vlink;
use softnet_core::worker::{idle_backoff, Worker};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Demo {
    stack: Arc<Stack>,
    a: Host,
    b: Host,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Demo {
    fn new(workers: usize) -> anyhow::Result<Demo> {
        let stack = Stack::new(StackConfig { workers, ..StackConfig::default() });
        let (r0_port, a_port) = vlink::wire(workers, 4096);
        let (r1_port, b_port) = vlink::wire(workers, 4096);
        stack.create_interface("r0", R0_MAC, 1500, r0_port.link_queues())?;
        stack.create_interface("r1", R1_MAC, 1500, r1_port.link_queues())?;
        stack.add_address("r0", IfAddr::new(R0_IP, 24))?;
        stack.add_address("r1", IfAddr::new(R1_IP, 24))?;
        stack.set_up("r0", true)?;
        stack.set_up("r1", true)?;
        let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..workers)
            .map(|i| {
                let w = Worker::new(i, stack.clone(), clock.clone());
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("softnet-w{i}"))
                    .spawn(move || w.run(&stop, idle_backoff))
                    .expect("spawn worker")
            })
            .collect();
        let a = Host::new("A", A_MAC, IfAddr::new(A_IP, 24), Some(R0_IP), a_port);
        let b = Host::new("B", B_MAC, IfAddr::new(B_IP, 24), Some(R1_IP), b_port);
        Ok(Demo { stack, a, b, stop, threads })
    }

    /// Polls both hosts until `f` finds what it waits for in A's events, or
    /// the deadline passes.
    fn wait_a<T>(&mut self, timeout: Duration, mut f: impl FnMut(&HostEvent) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.a.poll();
            self.b.poll();
            if let Some(pos) = self.a.events.iter().position(|e| f(e).is_some()) {
                let e = self.a.events.remove(pos);
                return f(&e);
            }
            std::thread::yield_now();
        }
        None
    }

    fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

pub fn run(workers: usize, flood: u64) -> anyhow::Result<()> {
    let mut out = String::new();
    let mut d = Demo::new(workers)?;
    writeln!(out, "softnet demo: two hosts and a router with {workers} workers, all in memory\n")?;
    writeln!(out, "  A {A_IP}/24 ({A_MAC}) -- r0 {R0_IP}/24 [router] r1 {R1_IP}/24 -- B {B_IP}/24 ({B_MAC})\n")?;

    // 1. ARP: A resolves its gateway on the first ping.
    writeln!(out, "== ARP resolution")?;
    d.a.ping(B_IP, 0x5eed, 0, 64, 56);
    let gw = d.wait_a(Duration::from_secs(2), |e| match e {
        HostEvent::ArpLearned { ip, mac } if *ip == R0_IP => Some(*mac),
        _ => None,
    });
    match gw {
        Some(mac) => writeln!(out, "  A: who-has {R0_IP}? -> {R0_IP} is-at {mac}")?,
        None => writeln!(out, "  A: no ARP reply from {R0_IP}")?,
    }
    let first = d.wait_a(Duration::from_secs(2), |e| matches!(e, HostEvent::EchoReply { .. }).then_some(()));
    let b_learned = d.b.arp_entry(R1_IP);
    match b_learned {
        Some(mac) => writeln!(out, "  router: who-has {B_IP}? -> answered; B learned {R1_IP} is-at {mac}")?,
        None => writeln!(out, "  router: B did not learn the router's address")?,
    }
    if first.is_none() {
        writeln!(out, "  (first echo reply lost while ARP resolved)")?;
    }

    // 2. Ping through the router.
    writeln!(out, "\n== ping {B_IP} from A (56 data bytes)")?;
    let mut rtts = Vec::new();
    for seq in 1..=5u16 {
        let t0 = Instant::now();
        d.a.ping(B_IP, 0x5eed, seq, 64, 56);
        let got = d.wait_a(Duration::from_secs(1), |e| match e {
            HostEvent::EchoReply { from, seq: s, ttl, len, .. } if *s == seq => Some((*from, *ttl, *len)),
            _ => None,
        });
        match got {
            Some((from, ttl, len)) => {
                let rtt = t0.elapsed().as_secs_f64() * 1e3;
                rtts.push(rtt);
                writeln!(out, "  {} bytes from {from}: icmp_seq={seq} ttl={ttl} time={rtt:.3} ms", len + 8)?;
            }
            None => writeln!(out, "  icmp_seq={seq}: no reply")?,
        }
    }
    if !rtts.is_empty() {
        let min = rtts.iter().cloned().fold(f64::MAX, f64::min);
        let max = rtts.iter().cloned().fold(0.0, f64::max);
        let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
        writeln!(
            out,
            "  5 packets transmitted, {} received; round-trip min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms",
            rtts.len()
        )?;
    }

    // 3. Traceroute: TTL 1 expires at the router, TTL 2 reaches B.
    writeln!(out, "\n== traceroute to {B_IP} from A")?;
    for ttl in 1..=2u8 {
        let t0 = Instant::now();
        d.a.send_udp(B_IP, 40000 + ttl as u16, 33433 + ttl as u16, 12, ttl);
        let hop = if ttl == 1 {
            d.wait_a(Duration::from_secs(1), |e| match e {
                HostEvent::TimeExceeded { from, .. } => Some(format!("{from} (time exceeded)")),
                _ => None,
            })
        } else {
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut r = None;
            while Instant::now() < deadline && r.is_none() {
                d.a.poll();
                d.b.poll();
                if d.b.events.iter().any(|e| matches!(e, HostEvent::Udp { dst_port, .. } if *dst_port == 33435)) {
                    r = Some(format!("{B_IP} (reached)"));
                }
            }
            r
        };
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        match hop {
            Some(h) => writeln!(out, "  {ttl}  {h}  {ms:.3} ms")?,
            None => writeln!(out, "  {ttl}  *")?,
        }
    }

    // 4. UDP flood A -> B.
    writeln!(out, "\n== UDP flood A -> B: {flood} datagrams of 18 bytes (64-byte frames)")?;
    d.b.quiet_udp = true;
    let before = d.b.udp_received;
    let frame = d.a.udp_frame(R0_MAC, B_IP, 9000, 9000, 18);
    let t0 = Instant::now();
    let mut sent = 0u64;
    let deadline = t0 + Duration::from_secs(10);
    while sent < flood && Instant::now() < deadline {
        for _ in 0..64 {
            if sent < flood && d.a.port().send((sent as usize) % workers, &frame) {
                sent += 1;
            }
        }
        d.b.poll();
    }
    let drain_deadline = Instant::now() + Duration::from_secs(2);
    while d.b.udp_received - before < sent && Instant::now() < drain_deadline {
        d.b.poll();
    }
    let secs = t0.elapsed().as_secs_f64();
    let got = d.b.udp_received - before;
    writeln!(
        out,
        "  sent {sent}, B received {got} in {secs:.3} s: {:.0} packets/s forwarded (generator, sink and {workers} workers share this machine)",
        got as f64 / secs
    )?;

    d.a.poll();
    d.b.poll();
    let stack = d.stack.clone();
    d.shutdown();

    writeln!(out, "\n== netstat -rn")?;
    out.push_str(&crate::show::netstat_rn(&stack, 0, crate::proto::AddrFamily::All));
    writeln!(out, "\n== netstat -i")?;
    out.push_str(&crate::show::netstat_i(&stack));
    writeln!(out, "\n== netstat -s")?;
    out.push_str(&softnet_core::stats::format_netstat_s_with(&stack.stats, Some(&stack.socks)));
    writeln!(out, "\n== arp -an")?;
    out.push_str(&crate::show::arp_an(&stack));
    print!("{out}");
    Ok(())
}
