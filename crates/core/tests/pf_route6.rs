//! The stack's side of pf's `route-to`, `reply-to` and `dup-to` to IPv6
//! next hops (pf.c `pf_route6`): a filter leaves `To6`/`Dup6` and the
//! address in a packet it passes, and the worker sends the packet (or a
//! copy) there, nd6 resolving the next hop.
//!
//! ```text
//!  A fd00:1::2 ── r0 fd00:1::1/64 [router] r1 fd00:2::1/64 ── B fd00:2::2
//!                                          r2 fd00:3::1/64 ── C fd00:3::2
//! ```

use softnet_core::filter::{BufferSource, Direction, FilterReplies, PacketFilter, Verdict};
use softnet_core::iface::{Interface, WeakIf};
use softnet_core::packet::PacketBuf;
use softnet_core::rng::FixedEntropy;
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::stats::StackStats;
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::vlink::{self, VirtualPort};
use softnet_core::worker::Worker;
use softnet_wire::ethernet::{EtherType, MacAddr, HEADER_LEN};
use softnet_wire::icmpv6::{self, Icmpv6Packet, Icmpv6Repr};
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::{Ipv6Packet, Ipv6Repr};
use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const R_MAC: [MacAddr; 3] = [MacAddr([2, 0, 0, 0, 1, 1]), MacAddr([2, 0, 0, 0, 2, 1]), MacAddr([2, 0, 0, 0, 3, 1])];
const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 2]);
const C_MAC: MacAddr = MacAddr([2, 0, 0, 0, 3, 2]);
const C2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 3, 3]);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// What the filter does: at hook `dir`, packets from A get a route to
/// `hop` (on `ifname` if given; a copy when `dup`).
#[derive(Clone)]
struct Plan {
    dir: Direction,
    dup: bool,
    hop: Ipv6Addr,
    ifname: Option<&'static str>,
}

type Seen = Arc<Mutex<Vec<(Direction, String)>>>;

struct Route6Filter {
    plan: Plan,
    ifs: Mutex<Option<WeakIf>>,
    seen: Seen,
}

impl PacketFilter for Route6Filter {
    fn test(
        &self,
        _worker: usize,
        _now: Instant,
        dir: Direction,
        ifp: &Interface,
        mut pkt: PacketBuf,
        _bufs: &mut dyn BufferSource,
        _replies: &mut FilterReplies,
    ) -> Verdict {
        self.seen.lock().unwrap().push((dir, ifp.name().to_string()));
        let src = Ipv6Packet::new_unchecked(pkt.data()).src();
        if dir == self.plan.dir && src == ip("fd00:1::2") {
            let w = *self.ifs.lock().unwrap();
            pkt.set_route6(self.plan.dup, self.plan.hop, w);
        }
        Verdict::Pass(pkt)
    }
}

struct Rig {
    stack: Arc<Stack>,
    clock: Arc<ManualClock>,
    worker: Worker,
    ports: Vec<VirtualPort>,
    seen: Seen,
}

impl Rig {
    fn new(plan: Plan, r2_mtu: u32) -> Rig {
        let clock = Arc::new(ManualClock::new(Instant::from_secs(1000)));
        let config = StackConfig { pool_size: 1024, ..StackConfig::default() };
        let stack = Stack::with_clock_and_entropy(config, clock.clone(), Arc::new(FixedEntropy::new(3)));
        let mut ports = Vec::new();
        for (i, mtu) in [1500, 1500, r2_mtu].into_iter().enumerate() {
            let (r, host) = vlink::wire(1, 1024);
            let name = format!("r{i}");
            stack.create_interface(&name, R_MAC[i], mtu, r.link_queues()).unwrap();
            stack.add_address6(&name, ip(&format!("fd00:{}::1", i + 1)), 64).unwrap();
            stack.set_up(&name, true).unwrap();
            ports.push(host);
        }
        let dynclock: Arc<dyn Clock> = clock.clone();
        let worker = Worker::new(0, stack.clone(), dynclock);
        let seen = Seen::default();
        let ifname = plan.ifname;
        let f = Route6Filter { plan, ifs: Mutex::new(None), seen: seen.clone() };
        if let Some(n) = ifname {
            *f.ifs.lock().unwrap() = Some(stack.ifaces.load().by_name(n).unwrap().weak());
        }
        let mut rig = Rig { stack, clock, worker, ports, seen };
        for _ in 0..40 {
            rig.clock.advance(Duration::from_millis(100));
            rig.stack.tick();
        }
        for (a, m) in [("fd00:1::2", A_MAC), ("fd00:2::2", B_MAC), ("fd00:3::2", C_MAC)] {
            rig.stack.ndp_set(ip(a), None, m, false, false).unwrap();
        }
        rig.stack.ndp_set(ip("fe80::c"), Some("r2"), C2_MAC, false, false).unwrap();
        rig.stack.set_filter(Some(Box::new(f)));
        for i in 0..3 {
            rig.take(i);
        }
        rig.seen.lock().unwrap().clear();
        rig.run();
        rig
    }

    fn run(&mut self) {
        for _ in 0..10 {
            if self.worker.poll() == 0 {
                break;
            }
        }
    }

    fn take(&self, i: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut p = PacketBuf::with_capacity(4096);
        while self.ports[i].recv(&mut p) {
            out.push(p.data().to_vec());
        }
        out
    }

    fn send_from_a(&mut self, pkt: &[u8]) {
        let mut f = Vec::new();
        f.extend_from_slice(&R_MAC[0].0);
        f.extend_from_slice(&A_MAC.0);
        f.extend_from_slice(&EtherType::IPV6.0.to_be_bytes());
        f.extend_from_slice(pkt);
        self.ports[0].send(0, &f);
        self.run();
    }

    fn stat(&self, f: impl Fn(&StackStats) -> u64) -> u64 {
        self.stack.stats.iter().map(f).sum()
    }

    fn out_hooks(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().filter(|s| s.0 == Direction::Out).map(|s| s.1.clone()).collect()
    }
}

fn echo(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, size: usize) -> Vec<u8> {
    let data = vec![0x5a; size];
    let repr = Icmpv6Repr::EchoRequest { ident: 7, seq_no: 1, data: &data };
    let mut m = vec![0u8; repr.buffer_len()];
    repr.emit(src, dst, &mut m);
    let r = Ipv6Repr {
        src,
        dst,
        next_header: IpProtocol::ICMPV6,
        hop_limit,
        traffic_class: 0,
        flow_label: 0,
        payload_len: m.len(),
    };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut b);
    b[40..].copy_from_slice(&m);
    b
}

/// A frame's (Ethernet destination, IPv6 source, destination, hop limit,
/// ICMPv6 type, code).
fn summary(f: &[u8]) -> (MacAddr, Ipv6Addr, Ipv6Addr, u8, u8, u8) {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&f[..6]);
    let ip = Ipv6Packet::new_checked(&f[HEADER_LEN..]).unwrap();
    let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    (MacAddr(mac), ip.src(), ip.dst(), ip.hop_limit(), m.msg_type(), m.code())
}

fn a() -> Ipv6Addr {
    ip("fd00:1::2")
}
fn b() -> Ipv6Addr {
    ip("fd00:2::2")
}
fn c() -> Ipv6Addr {
    ip("fd00:3::2")
}
const ECHO: u8 = icmpv6::msg_type::ECHO_REQUEST;

fn plan(dir: Direction, dup: bool, hop: Ipv6Addr) -> Plan {
    Plan { dir, dup, hop, ifname: None }
}

#[test]
fn route_to_after_pf_in_goes_to_the_next_hop_with_pf_out_on_its_interface() {
    let mut r = Rig::new(plan(Direction::In, false, c()), 1500);
    r.send_from_a(&echo(a(), b(), 64, 8));
    let at_c = r.take(2);
    assert_eq!(at_c.len(), 1);
    assert_eq!(summary(&at_c[0]), (C_MAC, a(), b(), 63, ECHO, 0), "C got A's packet for B, hop limit down by one");
    assert!(r.take(1).is_empty(), "not routed by its destination");
    assert_eq!(r.out_hooks(), ["r2"], "pf out ran on the next hop's interface only");
    assert_eq!(r.stat(|s| s.ip6.forward.get()), 1);
}

#[test]
fn route_to_after_pf_out_is_resent_without_another_pf_out() {
    let mut r = Rig::new(plan(Direction::Out, false, c()), 1500);
    r.send_from_a(&echo(a(), b(), 64, 8));
    let at_c = r.take(2);
    assert_eq!(at_c.len(), 1);
    assert_eq!(summary(&at_c[0]), (C_MAC, a(), b(), 63, ECHO, 0));
    assert!(r.take(1).is_empty());
    assert_eq!(r.out_hooks(), ["r1"], "pf out once, on the interface the table chose");
    assert_eq!(r.stat(|s| s.ip6.forward.get()), 1);
}

#[test]
fn dup_to_sends_a_copy_and_the_packet_its_way() {
    for dir in [Direction::In, Direction::Out] {
        let mut r = Rig::new(plan(dir, true, c()), 1500);
        r.send_from_a(&echo(a(), b(), 64, 8));
        let (at_b, at_c) = (r.take(1), r.take(2));
        assert_eq!(at_b.len(), 1, "{dir:?}: the packet goes to B");
        assert_eq!(summary(&at_b[0]), (B_MAC, a(), b(), 63, ECHO, 0));
        assert_eq!(at_c.len(), 1, "{dir:?}: and a copy to C");
        assert_eq!(summary(&at_c[0]), (C_MAC, a(), b(), 63, ECHO, 0));
        assert_eq!(r.out_hooks(), ["r1"], "{dir:?}: no pf out on the copy");
    }
}

#[test]
fn route_to_an_interface_and_link_local_address_needs_no_route() {
    let hop = ip("fe80::c");
    let mut r = Rig::new(Plan { dir: Direction::In, dup: false, hop, ifname: Some("r2") }, 1500);
    r.send_from_a(&echo(a(), b(), 64, 8));
    let at_c = r.take(2);
    assert_eq!(at_c.len(), 1);
    assert_eq!(summary(&at_c[0]).0, C2_MAC, "sent to fe80::c's link address on r2");
}

#[test]
fn no_route_to_the_next_hop_is_unreachable_and_counted() {
    let mut r = Rig::new(plan(Direction::In, false, ip("fd00:9::1")), 1500);
    r.send_from_a(&echo(a(), b(), 64, 8));
    assert!(r.take(1).is_empty() && r.take(2).is_empty());
    let back = r.take(0);
    assert_eq!(back.len(), 1);
    let (_, src, dst, _, t, code) = summary(&back[0]);
    assert_eq!((src, dst, t, code), (ip("fd00:1::1"), a(), icmpv6::msg_type::DST_UNREACHABLE, 0));
    assert_eq!(r.stat(|s| s.ip6.noroute.get()), 1);
    // A copy to nowhere: counted, no error, the packet goes its way.
    let mut r = Rig::new(plan(Direction::In, true, ip("fd00:9::1")), 1500);
    r.send_from_a(&echo(a(), b(), 64, 8));
    assert_eq!(r.take(1).len(), 1);
    assert!(r.take(0).is_empty(), "no error about a copy");
    assert_eq!(r.stat(|s| s.ip6.noroute.get()), 1);
}

#[test]
fn hop_limit_and_mtu_are_checked_on_the_next_hops_link() {
    let mut r = Rig::new(plan(Direction::In, false, c()), 1280);
    r.send_from_a(&echo(a(), b(), 1, 8));
    let back = r.take(0);
    assert_eq!(back.len(), 1);
    assert_eq!(summary(&back[0]).4, icmpv6::msg_type::TIME_EXCEEDED);
    assert_eq!(r.stat(|s| s.ip6.hoplimit.get()), 1);
    // 1,400 bytes fit r1 (B's way) but not r2's 1,280.
    r.send_from_a(&echo(a(), b(), 64, 1352));
    assert!(r.take(1).is_empty() && r.take(2).is_empty());
    let back = r.take(0);
    assert_eq!(back.len(), 1);
    let ip6 = Ipv6Packet::new_checked(&back[0][HEADER_LEN..]).unwrap();
    let mtu = u32::from_be_bytes(ip6.payload()[4..8].try_into().unwrap());
    assert_eq!((summary(&back[0]).4, mtu), (icmpv6::msg_type::PACKET_TOO_BIG, 1280));
    assert_eq!(r.stat(|s| s.ip6.toobig.get()), 1);
}

#[test]
fn the_metadata_stays_48_bytes() {
    assert_eq!(std::mem::size_of::<softnet_core::packet::PacketMeta>(), 48);
}
