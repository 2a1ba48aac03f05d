//! pf's `route-to`, `reply-to` and `dup-to` to IPv6 next hops through the
//! stack, in memory (pf.c pf_route6): the state made by the rule keeps
//! the next hop and routes its later packets, nd6 resolving it on the
//! next hop's link.
//!
//! ```text
//!  A fd00:1::2 ── r0 fd00:1::1/64 [router + pf] r1 fd00:2::1/64 ── B fd00:2::2
//!                                               r2 fd00:3::1/64 ── C fd00:3::2,
//!                                                                  C2 fd00:3::3 / fe80::c
//! ```

use softnet_core::packet::PacketBuf;
use softnet_core::rng::FixedEntropy;
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::stats::StackStats;
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::vlink::{self, VirtualPort};
use softnet_core::worker::Worker;
use softnet_pf::{parse_ruleset, Pf, StaticResolver};
use softnet_wire::ethernet::{EtherType, MacAddr, HEADER_LEN};
use softnet_wire::icmpv6::Icmpv6Repr;
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::{Ipv6Packet, Ipv6Repr};
use softnet_wire::udp::UdpRepr;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

const R_MAC: [MacAddr; 3] = [MacAddr([2, 0, 0, 0, 1, 1]), MacAddr([2, 0, 0, 0, 2, 1]), MacAddr([2, 0, 0, 0, 3, 1])];
const HOST_MAC: [MacAddr; 3] = [MacAddr([2, 0, 0, 0, 1, 2]), MacAddr([2, 0, 0, 0, 2, 2]), MacAddr([2, 0, 0, 0, 3, 2])];
const C2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 3, 3]);
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

struct Lab {
    stack: Arc<Stack>,
    clock: Arc<ManualClock>,
    worker: Worker,
    ports: Vec<VirtualPort>,
    pf: Pf,
}

impl Lab {
    fn new(rules: &str) -> Lab {
        let clock = Arc::new(ManualClock::new(Instant::from_secs(1000)));
        let config = StackConfig { pool_size: 1024, ..StackConfig::default() };
        let stack = Stack::with_clock_and_entropy(config, clock.clone(), Arc::new(FixedEntropy::new(5)));
        let mut ports = Vec::new();
        let mut resolver = StaticResolver::new();
        for (i, mac) in R_MAC.iter().enumerate() {
            let (r, host) = vlink::wire(1, 1024);
            let name = format!("r{i}");
            let addr = format!("fd00:{}::1", i + 1);
            stack.create_interface(&name, *mac, 1500, r.link_queues()).unwrap();
            stack.add_address6(&name, ip(&addr), 64).unwrap();
            stack.set_up(&name, true).unwrap();
            resolver = resolver.with_interface(&name, &[&format!("{addr}/64")]);
            ports.push(host);
        }
        let dynclock: Arc<dyn Clock> = clock.clone();
        let worker = Worker::new(0, stack.clone(), dynclock);
        let mut lab = Lab { stack, clock, worker, ports, pf: Pf::new() };
        for _ in 0..40 {
            lab.clock.advance(Duration::from_millis(100));
            lab.stack.tick();
        }
        for (i, m) in HOST_MAC.iter().enumerate() {
            lab.stack.ndp_set(ip(&format!("fd00:{}::2", i + 1)), None, *m, false, false).unwrap();
        }
        lab.stack.ndp_set(ip("fd00:3::3"), None, C2_MAC, false, false).unwrap();
        lab.stack.ndp_set(ip("fe80::c"), Some("r2"), C2_MAC, false, false).unwrap();
        let rs = parse_ruleset(rules, "pf.conf", &resolver).unwrap_or_else(|e| panic!("{e:?}"));
        lab.pf.load(&rs, &resolver).unwrap();
        let stack = lab.stack.clone();
        lab.pf.set_if_ref_lookup(Arc::new(move |name| stack.ifaces.load().by_name(name).map(|i| i.weak())));
        lab.stack.set_filter(Some(Box::new(lab.pf.clone())));
        lab.run();
        for i in 0..3 {
            lab.take(i);
        }
        lab
    }

    fn run(&mut self) {
        for _ in 0..10 {
            if self.worker.poll() == 0 {
                break;
            }
        }
    }

    /// The IPv6 frames the router sent to host `i`: (Ethernet destination,
    /// IPv6 source, destination, hop limit).
    fn take(&self, i: usize) -> Vec<(MacAddr, Ipv6Addr, Ipv6Addr, u8)> {
        let mut out = Vec::new();
        let mut p = PacketBuf::with_capacity(4096);
        while self.ports[i].recv(&mut p) {
            let f = p.data();
            let ip6 = Ipv6Packet::new_checked(&f[HEADER_LEN..]).unwrap();
            if ip6.next_header() == IpProtocol::ICMPV6 && ip6.payload()[0] >= 130 {
                continue; // MLD and neighbor discovery
            }
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&f[..6]);
            out.push((MacAddr(mac), ip6.src(), ip6.dst(), ip6.hop_limit()));
        }
        out
    }

    /// Host `i` sends the IPv6 packet `pkt` to the router.
    fn send(&mut self, i: usize, pkt: &[u8]) {
        let mut f = Vec::new();
        f.extend_from_slice(&R_MAC[i].0);
        f.extend_from_slice(&HOST_MAC[i].0);
        f.extend_from_slice(&EtherType::IPV6.0.to_be_bytes());
        f.extend_from_slice(pkt);
        self.ports[i].send(0, &f);
        self.run();
    }

    fn stat(&self, f: impl Fn(&StackStats) -> u64) -> u64 {
        self.stack.stats.iter().map(f).sum()
    }
}

fn ip6(src: Ipv6Addr, dst: Ipv6Addr, next: IpProtocol, payload_len: usize) -> Vec<u8> {
    let r = Ipv6Repr { src, dst, next_header: next, hop_limit: 64, traffic_class: 0, flow_label: 0, payload_len };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut b);
    b
}

fn echo(src: Ipv6Addr, dst: Ipv6Addr, reply: bool, ident: u16) -> Vec<u8> {
    let r = if reply {
        Icmpv6Repr::EchoReply { ident, seq_no: 1, data: b"ping" }
    } else {
        Icmpv6Repr::EchoRequest { ident, seq_no: 1, data: b"ping" }
    };
    let mut b = ip6(src, dst, IpProtocol::ICMPV6, r.buffer_len());
    r.emit(src, dst, &mut b[40..]);
    b
}

fn udp(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    let payload = b"hello";
    let u = UdpRepr { src_port: sport, dst_port: dport, payload_len: payload.len() };
    let mut b = ip6(src, dst, IpProtocol::UDP, u.buffer_len());
    u.emit_with_payload_v6(&mut b[40..], src, dst, payload);
    b
}

fn a() -> Ipv6Addr {
    ip("fd00:1::2")
}
fn b() -> Ipv6Addr {
    ip("fd00:2::2")
}

#[test]
fn route_to_sends_the_states_packets_to_the_ipv6_next_hop() {
    let mut l = Lab::new("pass\npass in on r0 inet6 proto icmp6 from fd00:1::2 to fd00:2::2 route-to fd00:3::2\n");
    for _ in 0..3 {
        l.send(A, &echo(a(), b(), false, 7));
    }
    // The first packet made the state; the next two matched it.
    assert_eq!(l.take(C), [(HOST_MAC[C], a(), b(), 63); 3]);
    assert!(l.take(B).is_empty(), "not routed by the destination");
    let ss = l.pf.show_states(0, l.clock.now());
    assert!(ss.contains("all ipv6-icmp fd00:2::2[128] <- fd00:1::2[7]"), "{ss}");
    // pf out ran on the route-to interface: `pass` made a state there.
    assert!(ss.contains("all ipv6-icmp fd00:1::2[7] -> fd00:2::2[128]"), "{ss}");
    assert_eq!(ss.lines().count(), 2, "{ss}");
}

#[test]
fn reply_to_sends_the_replies_of_a_connection_to_the_ipv6_next_hop() {
    let mut l = Lab::new("pass\npass in on r1 inet6 proto icmp6 reply-to fd00:3::2\n");
    for _ in 0..2 {
        l.send(B, &echo(b(), a(), false, 9));
        assert_eq!(l.take(A), [(HOST_MAC[A], b(), a(), 63)], "the request reached A by its route");
        l.send(A, &echo(a(), b(), true, 9));
    }
    assert!(l.take(B).is_empty());
    assert_eq!(l.take(C), [(HOST_MAC[C], a(), b(), 63); 2], "A's replies went to C");
}

#[test]
fn dup_to_copies_both_ways_and_the_originals_go_through() {
    let mut l = Lab::new("pass\npass in on r0 inet6 proto icmp6 dup-to fd00:3::2\n");
    l.send(A, &echo(a(), b(), false, 3));
    assert_eq!(l.take(B), [(HOST_MAC[B], a(), b(), 63)]);
    l.send(B, &echo(b(), a(), true, 3));
    assert_eq!(l.take(A), [(HOST_MAC[A], b(), a(), 63)]);
    // The request was copied after pf in (hop limit down), the reply
    // after pf out on r0 (already down).
    assert_eq!(l.take(C), [(HOST_MAC[C], a(), b(), 63), (HOST_MAC[C], b(), a(), 63)]);
}

#[test]
fn route_to_on_an_out_rule_reroutes_after_pf_out() {
    let mut l = Lab::new("pass\npass out on r1 inet6 proto icmp6 route-to fd00:3::3\n");
    l.send(A, &echo(a(), b(), false, 4));
    assert!(l.take(B).is_empty());
    assert_eq!(l.take(C), [(C2_MAC, a(), b(), 63)]);
    let ss = l.pf.show_states(0, l.clock.now());
    assert_eq!(ss.lines().count(), 2, "in on r0, out on r1, no pf out on r2: {ss}");
}

#[test]
fn udp_of_an_established_ipv6_state_is_routed_on_the_fast_path_too() {
    let mut l = Lab::new("pass\npass in on r0 inet6 proto udp route-to fd00:3::2\n");
    for _ in 0..4 {
        l.send(A, &udp(a(), b(), 5000, 53));
    }
    assert_eq!(l.take(C), [(HOST_MAC[C], a(), b(), 63); 4]);
    assert!(l.take(B).is_empty());
}

#[test]
fn route_to_a_link_local_address_on_a_named_interface() {
    let mut l = Lab::new("pass\npass in on r0 inet6 proto icmp6 route-to (r2 fe80::c)\n");
    l.send(A, &echo(a(), b(), false, 5));
    assert_eq!(l.take(C), [(C2_MAC, a(), b(), 63)]);
    // The interface destroyed: the state's next hop is gone with it.
    l.stack.destroy_interface("r2").unwrap();
    l.send(A, &echo(a(), b(), false, 5));
    assert_eq!(l.stat(|s| s.ip6.noroute.get()), 1);
    assert!(l.take(B).is_empty());
}

#[test]
fn a_round_robin_table_of_ipv6_next_hops_and_sticky_address() {
    let mut l = Lab::new(
        "table <gw> { fd00:3::2 fd00:3::3 }\npass\npass in on r0 inet6 proto icmp6 route-to <gw> round-robin\n",
    );
    for id in 0..4 {
        l.send(A, &echo(a(), b(), false, 100 + id));
    }
    let macs: Vec<MacAddr> = l.take(C).iter().map(|f| f.0).collect();
    assert_eq!(macs, [HOST_MAC[C], C2_MAC, HOST_MAC[C], C2_MAC], "each new state the next next hop");
    // sticky-address: one source, one next hop for all its states.
    let mut l = Lab::new(
        "table <gw> { fd00:3::2 fd00:3::3 }\npass\n\
         pass in on r0 inet6 proto icmp6 route-to <gw> round-robin sticky-address\n",
    );
    for id in 0..4 {
        l.send(A, &echo(a(), b(), false, 100 + id));
    }
    let macs: Vec<MacAddr> = l.take(C).iter().map(|f| f.0).collect();
    assert_eq!(macs, [HOST_MAC[C]; 4]);
    let sn = l.pf.show_src_nodes(0, l.clock.now());
    assert!(sn.contains("fd00:1::2 route-to fd00:3::2 ( states 4,"), "{sn}");
}

#[test]
fn a_next_hop_without_a_route_drops_and_answers_unreachable() {
    let mut l = Lab::new("pass\npass in on r0 inet6 proto icmp6 route-to fd00:9::1\n");
    l.send(A, &echo(a(), b(), false, 6));
    assert!(l.take(B).is_empty() && l.take(C).is_empty());
    assert_eq!(l.stat(|s| s.ip6.noroute.get()), 1);
    let back = l.take(A);
    assert_eq!(back.len(), 1, "destination unreachable to A");
    assert_eq!((back[0].1, back[0].2), (ip("fd00:1::1"), a()));
}
