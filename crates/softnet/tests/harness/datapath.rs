//! The whole data path under arbitrary frames: an in-memory router (host A
//! -- r0 [router + pf] r1 -- host B) with a pf ruleset loaded the way the
//! daemon loads it (`PfService`: nat-to, rdr-to, scrub, block return,
//! states of TCP, UDP and ICMP in it), then the input's frames on either
//! wire, with the clock moved between them. Afterwards, whatever the
//! frames were:
//!
//! * nothing panicked (libFuzzer reports it, `cargo test` fails);
//! * every frame the router took off a wire was counted exactly once by
//!   the layer that consumed it (`ipackets` of the interfaces equals the
//!   sum of Ethernet's drops, ARP's messages and IPv4's and IPv6's
//!   totals);
//! * once every timer has run out (states, fragments, ARP and ND holds)
//!   each worker's packet pool holds all its buffers again: nothing was
//!   leaked or kept.
//!
//! Input: records of `[kind, len_hi, len_lo, frame...]`. `kind` bit 0:
//! the wire (A's or B's); bit 1: the Ethernet addresses set to the
//! sender's and the router's; bit 2: IPv4/IPv6 and TCP/UDP/ICMP checksums
//! fixed (so that mutations reach past the checksum checks); bits 3-7
//! (when not 0): the clock moved by that many seconds first, the wires
//! drained before and after.

use softnet::pfglue::PfService;
use softnet_core::host::Host;
use softnet_core::iface::IfAddr;
use softnet_core::rng::FixedEntropy;
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::topo::{A_IP, A_MAC, B_IP, B_MAC, R0_IP, R0_MAC, R1_IP, R1_MAC};
use softnet_core::vlink;
use softnet_core::worker::Worker;
use softnet_wire::checksum;
use softnet_wire::ethernet::{EtherType, HEADER_LEN};
use softnet_wire::ipv4::{IpProtocol, Ipv4Packet};
use softnet_wire::ipv6::Ipv6Packet;
use std::sync::Arc;
use std::time::Duration;

/// The ruleset: every kind of state the evaluation keeps (plain, nat-to,
/// rdr-to, synproxy-free TCP tracking, ICMP), scrub, and blocks that
/// answer (return-rst / return-icmp) so replies are generated too.
pub const RULES: &str = "\
set limit states 64
set reassemble yes
match in all scrub (no-df random-id max-mss 1400)
block return log all
pass out on r1 inet from 10.0.1.0/24 nat-to (r1)
pass in on r0 inet proto { tcp udp icmp } keep state (max 32)
pass in on r1 inet proto tcp to port 80 rdr-to 10.0.1.2 port 8080
pass in on r0 inet6 all
pass out on r0 all
pass in on r1 inet proto icmp all
pass in on r1 proto udp to port 53 keep state (udp.first 5)
";

/// Worker count: two, so that states created on one worker are met on the
/// other (the frames go to either queue).
const WORKERS: usize = 2;
const POOL: usize = 256;
const MAX_FRAME: usize = 1518;

pub struct Lab {
    pub stack: Arc<Stack>,
    pub clock: Arc<ManualClock>,
    pub workers: Vec<Worker>,
    pub a: Host,
    pub b: Host,
    pub pf: PfService,
}

impl Lab {
    pub fn new() -> Lab {
        let clock = Arc::new(ManualClock::new(Instant::from_secs(1000)));
        let config = StackConfig { workers: WORKERS, pool_size: POOL, ..StackConfig::default() };
        let dynclock: Arc<dyn Clock> = clock.clone();
        let stack = Stack::with_clock_and_entropy(config, dynclock.clone(), Arc::new(FixedEntropy::new(7)));
        // Rings of 128 frames (a batch between settles is at most 8 frames
        // and what they cause): 1024-deep ones cost 16 MB of zeroing per
        // input, most of a run's time.
        let (r0_port, a_port) = vlink::wire(WORKERS, 128);
        let (r1_port, b_port) = vlink::wire(WORKERS, 128);
        stack.create_interface("r0", R0_MAC, 1500, r0_port.link_queues()).expect("r0");
        stack.create_interface("r1", R1_MAC, 1500, r1_port.link_queues()).expect("r1");
        stack.add_address("r0", IfAddr::new(R0_IP, 24)).expect("r0 addr");
        stack.add_address("r1", IfAddr::new(R1_IP, 24)).expect("r1 addr");
        stack.set_up("r0", true).expect("up");
        stack.set_up("r1", true).expect("up");
        let workers = (0..WORKERS).map(|i| Worker::new(i, stack.clone(), dynclock.clone())).collect();
        let a = Host::new("A", A_MAC, IfAddr::new(A_IP, 24), Some(R0_IP), a_port);
        let b = Host::new("B", B_MAC, IfAddr::new(B_IP, 24), Some(R1_IP), b_port);
        // One pf per thread, emptied for each lab: a new one maps and
        // faults in a state table chunk every time (most of a run's cost).
        thread_local!(static PF: softnet_pf::Pf = softnet_pf::Pf::new());
        let pf = PF.with(|pf| {
            pf.flush_all();
            PfService::with_pf(stack.clone(), pf.clone())
        });
        assert_eq!(pf.pf.state_count(), 0);
        pf.load_text("pf.conf", RULES, None).expect("the fuzz ruleset loads");
        pf.enable().expect("pf enabled");
        let mut lab = Lab { stack, clock, workers, a, b, pf };
        lab.prime();
        lab
    }

    /// States before the frames: A pings B and sends UDP through.
    fn prime(&mut self) {
        self.a.ping(B_IP, 9, 1, 64, 16);
        self.a.send_udp(B_IP, 5353, 53, 20, 64);
        self.a.send_udp(B_IP, 4000, 4001, 20, 64);
        self.settle();
        self.a.take_events();
        self.b.take_events();
    }

    /// Runs hosts and workers until nothing moves (bounded).
    pub fn settle(&mut self) {
        for _ in 0..1000 {
            let mut n = self.a.poll() + self.b.poll();
            for w in &mut self.workers {
                n += w.poll();
            }
            if n == 0 {
                break;
            }
        }
    }

    /// The clock moved by `d`: the stack's and pf's timers run, and the
    /// workers' (they read the clock on their next poll).
    pub fn advance(&mut self, d: Duration) {
        self.clock.advance(d);
        self.stack.tick();
        self.settle();
    }

    fn counted_frames(&self) -> (u64, u64) {
        let ifs = self.stack.ifaces.load();
        let ipackets: u64 = ifs.iter().map(|i| i.stats.iter().map(|s| s.ipackets.get()).sum::<u64>()).sum();
        let st = &self.stack.stats;
        let s = |f: &dyn Fn(&softnet_core::stats::StackStats) -> u64| st.iter().map(f).sum::<u64>();
        let consumed = s(&|x| {
            x.ether.runts.get()
                + x.ether.not_for_us.get()
                + x.ether.vlan_dropped.get()
                + x.ether.unknown_type.get()
                + x.arp.received.get()
                + x.arp.dropped_bad.get()
                + x.ip.total.get()
                + x.ip6.total.get()
        });
        (ipackets, consumed)
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

/// Sets the Ethernet addresses of `f` to `src` → the router's `dst`
/// (keeping a multicast destination, which reaches the router too).
fn fix_ether(f: &mut [u8], src: [u8; 6], dst: [u8; 6]) {
    if f.len() >= HEADER_LEN {
        if f[0] & 1 == 0 {
            f[0..6].copy_from_slice(&dst);
        }
        f[6..12].copy_from_slice(&src);
    }
}

/// The checksum of an upper-layer message at `l4` with `pseudo` (0 for
/// ICMP, which has none), written at `at` inside it when it fits.
fn fill_l4(l4: &mut [u8], at: usize, pseudo: u32) {
    if l4.len() >= at + 2 {
        l4[at..at + 2].fill(0);
        let c = checksum::finish(checksum::combine(pseudo, checksum::sum(l4)));
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Where each protocol keeps its checksum.
fn csum_offset(p: IpProtocol) -> Option<usize> {
    match p {
        IpProtocol::TCP => Some(16),
        IpProtocol::UDP => Some(6),
        IpProtocol::ICMP | IpProtocol::ICMPV6 => Some(2),
        _ => None,
    }
}

/// Fixes the IPv4 header checksum and the TCP/UDP/ICMP checksum of an
/// unfragmented packet, or the upper-layer checksum right behind an IPv6
/// header, as far as the lengths in the headers allow.
fn fix_checksums(f: &mut [u8]) {
    if f.len() < HEADER_LEN + 20 {
        return;
    }
    let et = u16::from_be_bytes([f[12], f[13]]);
    let ip = &mut f[HEADER_LEN..];
    if et == EtherType::IPV4.0 {
        let iplen = ip.len();
        let mut p = Ipv4Packet::new_unchecked(&mut *ip);
        let hlen = p.header_len() as usize;
        if p.version() != 4 || hlen < 20 || hlen > iplen {
            return;
        }
        p.fill_checksum();
        let (proto, src, dst) = (p.protocol(), p.src(), p.dst());
        let end = (p.total_len() as usize).min(ip.len());
        if end <= hlen {
            return;
        }
        let l4 = &mut ip[hlen..end];
        if let Some(at) = csum_offset(proto) {
            let pseudo = if proto == IpProtocol::ICMP {
                0
            } else {
                checksum::pseudo_header_v4(src, dst, proto.0, l4.len() as u16)
            };
            fill_l4(l4, at, pseudo);
        }
    } else if et == EtherType::IPV6.0 && ip.len() >= 40 {
        let p = Ipv6Packet::new_unchecked(&*ip);
        let (nh, src, dst) = (p.next_header(), p.src(), p.dst());
        let end = (40 + p.payload_len() as usize).min(ip.len());
        let l4 = &mut ip[40..end];
        if let Some(at) = csum_offset(nh) {
            let pseudo = checksum::pseudo_header_v6(src, dst, nh.0, l4.len() as u32);
            fill_l4(l4, at, pseudo);
        }
    }
}

/// Inputs one lab takes in a row in the fuzz target (`run_reusing`). Each
/// input moves the clock by two hours and more, and `Instant` counts
/// nanoseconds in a u64 (584 years): a lab is built again well before its
/// clock could stop.
pub const INPUTS_PER_LAB: u32 = 1000;

/// One fuzz input through a new lab; panics when a property fails (the
/// tests, and a crash input replayed on its own).
pub fn run(data: &[u8]) {
    check(&mut Lab::new(), data);
}

/// One fuzz input through the lab the previous inputs used (a new one
/// every `INPUTS_PER_LAB`): building a router, its pools and rings and
/// loading the ruleset is most of an input's time otherwise. Each input
/// leaves the lab idle, which `check` asserts (every buffer back, no state
/// left, fragments and holds expired), and is then primed again with the
/// setup's states. What carries over is what a router keeps between
/// unrelated packets anyway: counters, expired cache entries, the clock
/// (never moved back). A crash that needs the history does not reproduce
/// with `run` alone: replay the inputs of the run before it in order.
pub fn run_reusing(data: &[u8]) {
    thread_local!(static LAB: std::cell::RefCell<(Option<Lab>, u32)> = const { std::cell::RefCell::new((None, 0)) });
    LAB.with_borrow_mut(|(lab, used)| {
        match lab {
            Some(l) if *used < INPUTS_PER_LAB => l.prime(),
            _ => {
                // The old lab goes first: the new one empties the
                // thread's pf, which the old one's workers still hold.
                *lab = None;
                *lab = Some(Lab::new());
                *used = 0;
            }
        }
        *used += 1;
        check(lab.as_mut().expect("built above"), data);
    });
}

/// Buffers in the pools and the shared spill (a buffer freed on another
/// worker than its own may wait there until a pool that runs short takes
/// it: it is not lost).
fn pooled(lab: &Lab) -> usize {
    lab.workers.iter().map(|w| w.pool_available()).sum::<usize>() + lab.stack.spill.len()
}

/// `data`'s frames through a primed `lab`; panics when a property fails.
fn check(lab: &mut Lab, data: &[u8]) {
    assert_eq!(pooled(lab), POOL * WORKERS, "pools full after setup");
    assert!(lab.pf.pf.state_count() >= 3, "setup made states");
    let mut rest = data;
    let mut frame = Vec::with_capacity(MAX_FRAME);
    let mut sent = 0u64;
    while rest.len() >= 3 {
        let kind = rest[0];
        let len = (u16::from_be_bytes([rest[1], rest[2]]) as usize).min(MAX_FRAME).min(rest.len() - 3);
        frame.clear();
        frame.extend_from_slice(&rest[3..3 + len]);
        rest = &rest[3 + len..];
        if kind >> 3 != 0 {
            lab.settle();
            lab.advance(Duration::from_secs(u64::from(kind >> 3)));
        }
        let from_b = kind & 1 != 0;
        if kind & 2 != 0 {
            let (src, dst) = if from_b { (B_MAC.0, R1_MAC.0) } else { (A_MAC.0, R0_MAC.0) };
            fix_ether(&mut frame, src, dst);
        }
        if kind & 4 != 0 {
            fix_checksums(&mut frame);
        }
        let port = if from_b { lab.b.port() } else { lab.a.port() };
        // Either queue: a flow's packets may meet another worker.
        if port.send(usize::from(kind >> 3 & 1), &frame) {
            sent += 1;
        }
        // A batch now and then, so that frames meet states and holds
        // that earlier ones made.
        if sent.is_multiple_of(8) {
            lab.settle();
        }
    }
    lab.settle();
    let (ipackets, consumed) = lab.counted_frames();
    assert_eq!(ipackets, consumed, "every frame taken in is counted once by the layer that consumed it");
    // Two hours: every state, fragment queue, ARP and ND hold times out.
    for _ in 0..12 {
        lab.advance(Duration::from_secs(600));
    }
    assert_eq!(pooled(lab), POOL * WORKERS, "every buffer back in a pool once the timers ran out");
    assert_eq!(lab.pf.pf.state_count(), 0, "every state expired");
}
