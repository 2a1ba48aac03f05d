//! Destroying an interface under forwarding load: two workers forward at
//! full speed through r1 while the control thread destroys and re-creates
//! it 1,000 times. Nothing panics, every destroy returns, drops are
//! counted, and no reference leaks: the live count comes back to zero.

use softnet_core::gen::{GeneratorQueue, SinkQueue};
use softnet_core::host::Host;
use softnet_core::iface::IfAddr;
use softnet_core::link::LinkQueue;
use softnet_core::percpu::PerWorker;
use softnet_core::stack::{RouteTarget, Stack, StackConfig};
use softnet_core::time::{Clock, MonotonicClock};
use softnet_core::topo::*;
use softnet_core::vlink;
use softnet_core::worker::Worker;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn sinks(n: usize) -> Vec<Box<dyn LinkQueue>> {
    (0..n).map(|_| Box::new(SinkQueue::new()) as Box<dyn LinkQueue>).collect()
}

fn bring_up_r1(stack: &Stack) {
    stack.create_interface("r1", R1_MAC, 1500, sinks(2)).unwrap();
    stack.add_address("r1", IfAddr::new(R1_IP, 24)).unwrap();
    stack.set_up("r1", true).unwrap();
    stack.arp_add_static(B_IP, B_MAC).unwrap();
    stack.add_route(0, Ipv4Addr::new(11, 0, 0, 0), 8, RouteTarget::Gateway(B_IP)).unwrap();
}

#[test]
fn destroy_waits_for_strong_refs_while_forwarding() {
    let stack = Stack::new(StackConfig { workers: 2, pool_size: 1024, ..StackConfig::default() });
    let (_, a_port) = vlink::wire(1, 1);
    let mut a = Host::new("A", A_MAC, IfAddr::new(A_IP, 24), Some(R0_IP), a_port);
    let frames: Vec<Vec<u8>> =
        (0..64u32).map(|j| a.udp_frame(R0_MAC, Ipv4Addr::from(0x0b00_0001 + j), 20000, 9000, 18)).collect();
    let gens: Vec<Box<dyn LinkQueue>> =
        (0..2).map(|_| Box::new(GeneratorQueue::new(frames.clone())) as Box<dyn LinkQueue>).collect();
    stack.create_interface("r0", R0_MAC, 1500, gens).unwrap();
    stack.add_address("r0", IfAddr::new(R0_IP, 24)).unwrap();
    stack.set_up("r0", true).unwrap();
    bring_up_r1(&stack);

    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let w = Worker::new(i, stack.clone(), clock.clone());
            let stop = stop.clone();
            std::thread::spawn(move || w.run(&stop, |_, _, _| std::thread::yield_now()))
        })
        .collect();

    let forwarded = || PerWorker::sum(&stack.stats, |s| &s.ip.forward);
    let dropped = || PerWorker::sum(&stack.stats, |s| &s.ip.noroute) + PerWorker::sum(&stack.stats, |s| &s.ip.odropped);
    // At least 1,000 rounds, and on until the workers have both forwarded
    // and dropped: on a busy machine 1,000 rounds can end before a worker
    // thread first runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut i = 0;
    while i < 1000 || forwarded() == 0 || dropped() == 0 {
        assert!(std::time::Instant::now() < deadline, "iteration {i}: too slow, something hangs");
        stack.destroy_interface("r1").unwrap();
        assert!(stack.ifaces.load().by_name("r1").is_none());
        bring_up_r1(&stack);
        i += 1;
        if i >= 1000 {
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("worker panicked");
    }
    assert!(forwarded() > 0, "workers forwarded while r1 came and went");
    assert!(dropped() > 0, "packets caught while r1 was gone were counted");
    stack.destroy_interface("r1").unwrap();
    stack.destroy_interface("r0").unwrap();
    assert_eq!(stack.ifaces.live_count(), 0, "every interface was freed");
}

/// A filter whose out hook starts destroying the interface its packets
/// came in on: `ifconfig r0 destroy` on the control thread while a worker
/// has a forwarded batch in hand (destroy marks the interface detaching
/// at once, and the batch's snapshot no longer finds it).
struct DetachInOnOut(std::sync::Weak<Stack>);

impl softnet_core::filter::PacketFilter for DetachInOnOut {
    fn test(
        &self,
        _worker: usize,
        _now: softnet_core::time::Instant,
        dir: softnet_core::filter::Direction,
        _ifp: &softnet_core::iface::Interface,
        pkt: softnet_core::packet::PacketBuf,
        _bufs: &mut dyn softnet_core::filter::BufferSource,
        _replies: &mut softnet_core::filter::FilterReplies,
    ) -> softnet_core::filter::Verdict {
        if dir == softnet_core::filter::Direction::Out {
            if let Some(stack) = self.0.upgrade() {
                let _ = stack.ifaces.begin_destroy("r0");
            }
        }
        softnet_core::filter::Verdict::Pass(pkt)
    }
}

/// Found by tests/e2e/test_churn.py: a worker stopped on an `expect`
/// ("received this batch") when the interface a forwarded batch came in
/// on was destroyed between pf in and pf out. Its packets are dropped and
/// counted instead, and the worker goes on.
#[test]
fn a_destroy_during_a_forwarded_batch_drops_and_counts_its_packets() {
    let mut t = TwoHosts::new(1);
    t.a.ping(B_IP, 1, 1, 64, 8);
    t.settle();
    t.a.take_events();
    let sum = |t: &TwoHosts, f: fn(&softnet_core::stats::StackStats) -> &softnet_core::percpu::Counter| {
        PerWorker::sum(&t.stack.stats, f)
    };
    let before = sum(&t, |s| &s.ip.odropped);
    t.stack.set_filter(Some(Box::new(DetachInOnOut(Arc::downgrade(&t.stack)))));
    t.a.send_udp(B_IP, 5000, 9, 10, 64);
    t.settle();
    assert_eq!(sum(&t, |s| &s.ip.odropped), before + 1, "the datagram was dropped and counted");
    assert!(t.stack.ifaces.load().by_name("r0").is_none(), "r0 is detaching");
    // The worker is still there: B's traffic to the router is answered.
    t.b.ping(R1_IP, 1, 2, 64, 8);
    t.settle();
    assert!(t.b.take_events().iter().any(|e| matches!(e, softnet_core::host::HostEvent::EchoReply { .. })));
}
