//! In-memory topologies: a router (a `Stack` with workers) joined to host
//! stubs by virtual links. Tests step it deterministically on one thread
//! with a manual clock; the demo runs the workers on threads.
//!
//! ```text
//!  host A 10.0.1.2/24 ── r0 10.0.1.1/24 [router] r1 10.0.2.1/24 ── host B 10.0.2.2/24
//!                                          r2 10.0.3.1/24 ── host C 10.0.3.2/24  (ThreeHosts)
//! ```

use crate::host::Host;
use crate::iface::IfAddr;
use crate::stack::{Stack, StackConfig};
use crate::time::{Clock, Instant, ManualClock};
use crate::vlink;
use crate::worker::Worker;
use softnet_wire::ethernet::MacAddr;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub const R0_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x01]);
pub const R1_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x02, 0x01]);
pub const A_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x02]);
pub const B_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x02, 0x02]);
pub const R0_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
pub const R1_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
pub const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const R2_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x03, 0x01]);
pub const C_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x03, 0x02]);
pub const R2_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 1);
pub const C_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 2);

/// Two hosts and a router between them.
pub struct TwoHosts {
    pub stack: Arc<Stack>,
    pub clock: Arc<ManualClock>,
    pub workers: Vec<Worker>,
    pub a: Host,
    pub b: Host,
}

impl TwoHosts {
    /// Builds the topology with `workers` workers (stepped by the caller).
    pub fn new(workers: usize) -> TwoHosts {
        Self::with_config(StackConfig { workers, pool_size: 1024, ..StackConfig::default() })
    }

    pub fn with_config(config: StackConfig) -> TwoHosts {
        Self::with_entropy(config, Arc::new(crate::rng::OsEntropy))
    }

    /// With the workers' random generators seeded from `entropy`.
    pub fn with_entropy(config: StackConfig, entropy: Arc<dyn crate::rng::Entropy>) -> TwoHosts {
        Self::with_b_depth(config, entropy, 1024)
    }

    /// With B's wire `depth` frames deep each way (a link that takes
    /// fewer frames than the router stages for it).
    pub fn with_b_depth(config: StackConfig, entropy: Arc<dyn crate::rng::Entropy>, depth: usize) -> TwoHosts {
        let clock = Arc::new(ManualClock::new(Instant::from_secs(1000)));
        let nworkers = config.workers.max(1);
        let stack = Stack::with_clock_and_entropy(config, Arc::new(crate::time::MonotonicClock::new()), entropy);
        let (r0_port, a_port) = vlink::wire(nworkers, 1024);
        let (r1_port, b_port) = vlink::wire(nworkers, depth);
        stack.create_interface("r0", R0_MAC, 1500, r0_port.link_queues()).expect("r0");
        stack.create_interface("r1", R1_MAC, 1500, r1_port.link_queues()).expect("r1");
        stack.add_address("r0", IfAddr::new(R0_IP, 24)).expect("r0 addr");
        stack.add_address("r1", IfAddr::new(R1_IP, 24)).expect("r1 addr");
        stack.set_up("r0", true).expect("up");
        stack.set_up("r1", true).expect("up");
        let dynclock: Arc<dyn Clock> = clock.clone();
        let workers = (0..nworkers).map(|i| Worker::new(i, stack.clone(), dynclock.clone())).collect();
        let a = Host::new("A", A_MAC, IfAddr::new(A_IP, 24), Some(R0_IP), a_port);
        let b = Host::new("B", B_MAC, IfAddr::new(B_IP, 24), Some(R1_IP), b_port);
        let mut t = TwoHosts { stack, clock, workers, a, b };
        // Gratuitous ARPs from address configuration: let the hosts see them.
        t.settle();
        t.a.take_events();
        t.b.take_events();
        t
    }

    /// Runs hosts and workers until nothing moves (bounded).
    pub fn settle(&mut self) -> usize {
        let mut total = 0;
        for _ in 0..1000 {
            let mut n = self.a.poll() + self.b.poll();
            for w in &mut self.workers {
                n += w.poll();
            }
            total += n;
            if n == 0 {
                break;
            }
        }
        total
    }

    pub fn advance(&mut self, d: std::time::Duration) {
        self.clock.advance(d);
    }
}

/// `TwoHosts` plus a third host C behind a third router interface r2 (a
/// second next hop, for pf's route-to, reply-to and dup-to).
pub struct ThreeHosts {
    pub t: TwoHosts,
    pub c: Host,
}

impl ThreeHosts {
    pub fn new(workers: usize) -> ThreeHosts {
        let t = TwoHosts::new(workers);
        let (r2_port, c_port) = vlink::wire(workers.max(1), 1024);
        t.stack.create_interface("r2", R2_MAC, 1500, r2_port.link_queues()).expect("r2");
        t.stack.add_address("r2", IfAddr::new(R2_IP, 24)).expect("r2 addr");
        t.stack.set_up("r2", true).expect("up");
        let c = Host::new("C", C_MAC, IfAddr::new(C_IP, 24), Some(R2_IP), c_port);
        let mut h = ThreeHosts { t, c };
        h.settle();
        h.t.a.take_events();
        h.t.b.take_events();
        h.c.take_events();
        h
    }

    /// Runs hosts and workers until nothing moves (bounded).
    pub fn settle(&mut self) -> usize {
        let mut total = 0;
        for _ in 0..1000 {
            let mut n = self.c.poll() + self.t.settle();
            n += self.c.poll();
            total += n;
            if n == 0 {
                break;
            }
        }
        total
    }
}
