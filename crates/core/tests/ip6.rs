//! The IPv6 data path in memory: ip6_input's checks, echo to the router's
//! global and link-local addresses, forwarding with neighbor resolution,
//! time exceeded, packet too big, scope, no route, bad extension header
//! chains (RH0, unknown next header, bad options, truncation), fragments
//! to the router, ICMPv6 error rate limiting and the netstat -s sections.
//!
//! ```text
//!  A fd00:1::2 ── r0 fd00:1::1/64 [router] r1 fd00:2::1/64 ── B fd00:2::2
//! ```

use crate::common;

use common::frames6::{frame, icmp, ipv6};
use softnet_core::filter::{BufferSource, Direction, FilterReplies, NextHop, PacketFilter, RouteDecision, Verdict};
use softnet_core::iface::Dad6State;
use softnet_core::packet::{mflags, PacketBuf};
use softnet_core::rng::FixedEntropy;
use softnet_core::stack::{RouteTarget6, Stack, StackConfig};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::vlink::{self, VirtualPort};
use softnet_core::worker::Worker;
use softnet_wire::ethernet::{MacAddr, HEADER_LEN};
use softnet_wire::icmpv6::{self, DstUnreachable as Unreach6, Icmpv6Packet, Icmpv6Repr, ParamProblem};
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::{link_local_from_mac, Ipv6Packet};
use softnet_wire::ndp::{NaFlags, NdpRepr};
use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const R0_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const R1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 1]);
const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 2]);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn r0() -> Ipv6Addr {
    ip("fd00:1::1")
}
fn r1() -> Ipv6Addr {
    ip("fd00:2::1")
}
fn a() -> Ipv6Addr {
    ip("fd00:1::2")
}
fn b() -> Ipv6Addr {
    ip("fd00:2::2")
}

struct Rig {
    stack: Arc<Stack>,
    clock: Arc<ManualClock>,
    worker: Worker,
    a: VirtualPort,
    b: VirtualPort,
}

impl Rig {
    fn new(r1_mtu: u32, config: StackConfig) -> Rig {
        let clock = Arc::new(ManualClock::new(Instant::from_secs(1000)));
        let stack = Stack::with_clock_and_entropy(config, clock.clone(), Arc::new(FixedEntropy::new(3)));
        let (r0_port, a_port) = vlink::wire(1, 1024);
        let (r1_port, b_port) = vlink::wire(1, 1024);
        stack.create_interface("r0", R0_MAC, 1500, r0_port.link_queues()).unwrap();
        stack.create_interface("r1", R1_MAC, r1_mtu, r1_port.link_queues()).unwrap();
        stack.add_address6("r0", r0(), 64).unwrap();
        stack.add_address6("r1", r1(), 64).unwrap();
        stack.set_up("r0", true).unwrap();
        stack.set_up("r1", true).unwrap();
        let dynclock: Arc<dyn Clock> = clock.clone();
        let worker = Worker::new(0, stack.clone(), dynclock);
        let rig = Rig { stack, clock, worker, a: a_port, b: b_port };
        // DAD: every address preferred after a few seconds of timer.
        for _ in 0..40 {
            rig.clock.advance(Duration::from_millis(100));
            rig.stack.tick();
        }
        let ifs = rig.stack.ifaces.load();
        for (name, addr) in [("r0", r0()), ("r1", r1()), ("r0", link_local_from_mac(R0_MAC))] {
            assert_eq!(ifs.by_name(name).unwrap().addr6_state(addr), Some(Dad6State::Preferred), "{addr}");
        }
        drop(ifs);
        rig.take(true);
        rig.take(false);
        rig
    }

    fn with_neighbors() -> Rig {
        let rig = Rig::new(1500, StackConfig { pool_size: 1024, ..StackConfig::default() });
        rig.stack.ndp_set(a(), None, A_MAC, false, false).unwrap();
        rig.stack.ndp_set(b(), None, B_MAC, false, false).unwrap();
        rig
    }

    fn run(&mut self) {
        for _ in 0..10 {
            if self.worker.poll() == 0 {
                break;
            }
        }
    }

    /// Frames the router sent to A (`to_a`) or B.
    fn take(&self, to_a: bool) -> Vec<Vec<u8>> {
        let port = if to_a { &self.a } else { &self.b };
        let mut out = Vec::new();
        let mut p = PacketBuf::with_capacity(4096);
        while port.recv(&mut p) {
            out.push(p.data().to_vec());
        }
        out
    }

    fn send_from_a(&mut self, pkt: &[u8]) {
        self.a.send(0, &frame(R0_MAC, A_MAC, pkt));
        self.run();
    }

    fn stat(&self, f: impl Fn(&softnet_core::stats::StackStats) -> u64) -> u64 {
        self.stack.stats.iter().map(f).sum()
    }
}

fn echo(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, size: usize) -> Vec<u8> {
    let data = vec![0x5a; size];
    let m = icmp(src, dst, &Icmpv6Repr::EchoRequest { ident: 7, seq_no: 1, data: &data });
    ipv6(src, dst, IpProtocol::ICMPV6, hop_limit, &m)
}

/// The ICMPv6 message of a frame the router sent: (eth dst, ip src, ip
/// dst, hop limit, type, code, word at 4..8).
fn icmp_of(f: &[u8]) -> Option<(MacAddr, Ipv6Addr, Ipv6Addr, u8, u8, u8, u32)> {
    let ip = Ipv6Packet::new_checked(&f[HEADER_LEN..]).ok()?;
    if ip.next_header() != IpProtocol::ICMPV6 {
        return None;
    }
    let m = Icmpv6Packet::new_checked(ip.payload()).ok()?;
    assert!(m.verify_checksum(ip.src(), ip.dst()), "the router's ICMPv6 checksum");
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&f[..6]);
    let word = u32::from_be_bytes(ip.payload()[4..8].try_into().unwrap());
    Some((MacAddr(mac), ip.src(), ip.dst(), ip.hop_limit(), m.msg_type(), m.code(), word))
}

#[test]
fn echo_to_the_routers_global_and_link_local_addresses_is_answered() {
    let mut r = Rig::with_neighbors();
    r.send_from_a(&echo(a(), r0(), 64, 56));
    let out = r.take(true);
    assert_eq!(out.len(), 1);
    let (mac, src, dst, hl, t, code, _) = icmp_of(&out[0]).unwrap();
    assert_eq!((mac, src, dst, hl, t, code), (A_MAC, r0(), a(), 64, icmpv6::msg_type::ECHO_REPLY, 0));
    // The address of the other interface answers too.
    r.send_from_a(&echo(a(), r1(), 64, 56));
    let out = r.take(true);
    assert_eq!(icmp_of(&out[0]).unwrap().1, r1());
    // Link-local to link-local: A's fe80 address is resolved by NS.
    let a_ll = link_local_from_mac(A_MAC);
    let r0_ll = link_local_from_mac(R0_MAC);
    r.send_from_a(&echo(a_ll, r0_ll, 64, 8));
    let out = r.take(true);
    let ns: Vec<_> = out.iter().filter_map(|f| icmp_of(f)).collect();
    assert_eq!(ns.len(), 1, "a solicitation for A's link-local address");
    assert_eq!(ns[0].4, icmpv6::msg_type::NEIGHBOR_SOLICIT);
    assert_eq!(ns[0].2, ip("ff02::1:ff00:102"));
    // A answers; the held reply goes out.
    let na = NdpRepr::NeighborAdvert {
        flags: NaFlags { router: false, solicited: true, override_: true },
        target: a_ll,
        options: &[2, 1, 2, 0, 0, 0, 1, 2],
    };
    let m = icmp(a_ll, r0_ll, &Icmpv6Repr::Ndp(na));
    r.send_from_a(&ipv6(a_ll, r0_ll, IpProtocol::ICMPV6, 255, &m));
    let out = r.take(true);
    assert_eq!(out.len(), 1);
    let (mac, src, dst, _, t, _, _) = icmp_of(&out[0]).unwrap();
    assert_eq!((mac, src, dst, t), (A_MAC, r0_ll, a_ll, icmpv6::msg_type::ECHO_REPLY));
    assert_eq!(r.stat(|s| s.icmp6.reflect.get()), 3);
    assert_eq!(r.stat(|s| s.icmp6.inhist[128].get()), 3);
}

#[test]
fn forwarded_packets_lose_one_hop_and_go_to_the_resolved_neighbor() {
    let mut r = Rig::new(1500, StackConfig { pool_size: 1024, ..StackConfig::default() });
    r.stack.ndp_set(a(), None, A_MAC, false, false).unwrap();
    let p = echo(a(), b(), 64, 100);
    r.send_from_a(&p);
    // B is unknown: the packet is held and a solicitation goes out on r1.
    let out = r.take(false);
    assert_eq!(out.len(), 1);
    let ns = icmp_of(&out[0]).unwrap();
    assert_eq!((ns.1, ns.2, ns.3, ns.4), (r1(), ip("ff02::1:ff00:2"), 255, icmpv6::msg_type::NEIGHBOR_SOLICIT));
    let na = NdpRepr::NeighborAdvert {
        flags: NaFlags { router: false, solicited: true, override_: true },
        target: b(),
        options: &[2, 1, 2, 0, 0, 0, 2, 2],
    };
    let m = icmp(b(), r1(), &Icmpv6Repr::Ndp(na));
    r.b.send(0, &frame(R1_MAC, B_MAC, &ipv6(b(), r1(), IpProtocol::ICMPV6, 255, &m)));
    r.run();
    let out = r.take(false);
    assert_eq!(out.len(), 1, "the held packet");
    assert_eq!(&out[0][..6], &B_MAC.0);
    assert_eq!(&out[0][6..12], &R1_MAC.0);
    let fwd = Ipv6Packet::new_checked(&out[0][HEADER_LEN..]).unwrap();
    assert_eq!(fwd.hop_limit(), 63);
    assert_eq!(&out[0][HEADER_LEN + 8..], &p[8..], "nothing else changed");
    // Now resolved: the next one goes at once.
    r.send_from_a(&echo(a(), b(), 64, 100));
    assert_eq!(r.take(false).len(), 1);
    assert_eq!(r.stat(|s| s.ip6.forward.get()), 2);
}

/// RFC 4861 §7.2.2: a neighbor that never answers its solicitations is
/// given up, and each packet held for it gets ICMPv6 destination
/// unreachable, address unreachable (code 3), quoting it, from the side it
/// came in on.
#[test]
fn held_packets_of_a_neighbor_that_never_answers_get_address_unreachable() {
    let mut r = Rig::new(1500, StackConfig { pool_size: 1024, ..StackConfig::default() });
    r.stack.ndp_set(a(), None, A_MAC, false, false).unwrap();
    let p1 = echo(a(), b(), 64, 100);
    let p2 = echo(a(), b(), 64, 20);
    r.send_from_a(&p1);
    r.send_from_a(&p2);
    let mut solicits = r.take(false).len();
    assert!(r.take(true).is_empty(), "nothing for A while B is being solicited");
    // MAX_MULTICAST_SOLICIT solicitations RetransTimer (1 s) apart, then
    // the entry is given up.
    for _ in 0..50 {
        r.clock.advance(Duration::from_millis(100));
        r.stack.tick();
        r.run();
        solicits += r.take(false).len();
    }
    assert_eq!(solicits, 3, "three solicitations for B");
    let out = r.take(true);
    assert_eq!(out.len(), 2, "an error for each held packet");
    for (f, orig) in out.iter().zip([&p1, &p2]) {
        let (mac, src, dst, _, t, code, _) = icmp_of(f).unwrap();
        assert_eq!((mac, src, dst, t, code), (A_MAC, r0(), a(), icmpv6::msg_type::DST_UNREACHABLE, 3));
        let quoted = &f[HEADER_LEN + 40 + 8..];
        assert_eq!(&quoted[8..40], &orig[8..40], "the original's addresses quoted");
        assert_eq!(&quoted[40..], &orig[40..], "and its payload");
    }
    assert_eq!(r.stat(|s| s.icmp6.outhist[1].get()), 2);
    // Nothing is left queued: a later round sends nothing more.
    r.run();
    assert!(r.take(true).is_empty());
}

#[test]
fn hop_limit_one_gets_time_exceeded_from_the_receiving_side() {
    let mut r = Rig::with_neighbors();
    r.send_from_a(&echo(a(), b(), 1, 8));
    assert!(r.take(false).is_empty());
    let out = r.take(true);
    let (mac, src, dst, hl, t, code, _) = icmp_of(&out[0]).unwrap();
    assert_eq!((mac, src, dst, hl, t, code), (A_MAC, r0(), a(), 64, icmpv6::msg_type::TIME_EXCEEDED, 0));
    assert_eq!(r.stat(|s| s.ip6.hoplimit.get()), 1);
}

#[test]
fn too_big_for_the_outgoing_link_gets_packet_too_big_with_its_mtu() {
    let mut r = Rig::new(1400, StackConfig { pool_size: 1024, ..StackConfig::default() });
    r.stack.ndp_set(a(), None, A_MAC, false, false).unwrap();
    r.stack.ndp_set(b(), None, B_MAC, false, false).unwrap();
    // ping -s 1452: 40 + 8 + 1452 = 1500 bytes.
    r.send_from_a(&echo(a(), b(), 64, 1452));
    assert!(r.take(false).is_empty(), "never fragmented");
    let out = r.take(true);
    let (_, src, dst, _, t, code, mtu) = icmp_of(&out[0]).unwrap();
    assert_eq!((src, dst, t, code, mtu), (r0(), a(), icmpv6::msg_type::PACKET_TOO_BIG, 0, 1400));
    // The quote: as much of the packet as fits in 1280 bytes.
    assert_eq!(out[0].len() - HEADER_LEN, 1280);
    // One that fits goes through.
    r.send_from_a(&echo(a(), b(), 64, 1352));
    assert_eq!(r.take(false).len(), 1);
}

#[test]
fn link_local_sources_and_destinations_are_never_forwarded() {
    let mut r = Rig::with_neighbors();
    let a_ll = link_local_from_mac(A_MAC);
    r.stack.ndp_set(a_ll, Some("r0"), A_MAC, false, false).unwrap();
    r.send_from_a(&echo(a_ll, b(), 64, 8));
    assert!(r.take(false).is_empty());
    let out = r.take(true);
    let e = icmp_of(&out[0]).unwrap();
    assert_eq!((e.1, e.2, e.4, e.5), (link_local_from_mac(R0_MAC), a_ll, icmpv6::msg_type::DST_UNREACHABLE, 2));
    // A link-local destination that is not ours.
    r.send_from_a(&echo(a(), ip("fe80::99"), 64, 8));
    assert!(r.take(false).is_empty());
    let e = icmp_of(&r.take(true)[0]).unwrap();
    assert_eq!((e.4, e.5), (icmpv6::msg_type::DST_UNREACHABLE, 2));
    assert_eq!(r.stat(|s| s.ip6.badscope.get()), 2);
}

#[test]
fn no_route_gets_unreachable_code_0_and_routes_are_followed() {
    let mut r = Rig::with_neighbors();
    r.send_from_a(&echo(a(), ip("2001:db8::1"), 64, 8));
    let e = icmp_of(&r.take(true)[0]).unwrap();
    assert_eq!((e.4, e.5), (icmpv6::msg_type::DST_UNREACHABLE, 0));
    assert_eq!(r.stat(|s| s.ip6.noroute.get()), 1);
    // A route via B (the gateway on r1's connected route, which its address
    // brought).
    r.stack.add_route6(0, ip("2001:db8::"), 32, None, &RouteTarget6::Gateway(b(), None)).unwrap();
    r.send_from_a(&echo(a(), ip("2001:db8::1"), 64, 8));
    let out = r.take(false);
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][..6], &B_MAC.0);
    // Blackhole: silent.
    r.stack.add_route6(0, ip("2001:db9::"), 32, None, &RouteTarget6::Blackhole).unwrap();
    r.send_from_a(&echo(a(), ip("2001:db9::1"), 64, 8));
    assert!(r.take(false).is_empty() && r.take(true).is_empty());
    assert_eq!(r.stat(|s| s.ip6.blackholed.get()), 1);
}

#[test]
fn forwarding_off_forwards_nothing_but_answers() {
    let mut r = Rig::new(1500, StackConfig { forwarding6: false, pool_size: 1024, ..StackConfig::default() });
    r.stack.ndp_set(a(), None, A_MAC, false, false).unwrap();
    r.stack.ndp_set(b(), None, B_MAC, false, false).unwrap();
    r.send_from_a(&echo(a(), b(), 64, 8));
    assert!(r.take(false).is_empty());
    assert_eq!(r.stat(|s| s.ip6.cantforward.get()), 1);
    r.send_from_a(&echo(a(), r0(), 64, 8));
    assert_eq!(r.take(true).len(), 1);
}

/// A parameter problem sent to A: (code, pointer).
fn param_problem(r: &Rig) -> (u8, u32) {
    let out = r.take(true);
    assert_eq!(out.len(), 1, "one error");
    let e = icmp_of(&out[0]).unwrap();
    assert_eq!((e.2, e.4), (a(), icmpv6::msg_type::PARAM_PROBLEM));
    (e.5, e.6)
}

#[test]
fn routing_header_type_0_is_a_parameter_problem_at_its_type() {
    let mut r = Rig::with_neighbors();
    // RH0 naming UDP, one address, segments left 1.
    let mut rh = vec![17u8, 2, 0, 1, 0, 0, 0, 0];
    rh.extend_from_slice(&b().octets());
    rh.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
    r.send_from_a(&ipv6(a(), b(), IpProtocol::IPV6_ROUTE, 64, &rh));
    assert!(r.take(false).is_empty(), "not forwarded");
    assert_eq!(param_problem(&r), (ParamProblem::ErroneousHeader as u8, 42));
    assert_eq!(r.stat(|s| s.ip6.badoptions.get()), 1);
}

#[test]
fn an_unknown_next_header_to_the_router_is_a_parameter_problem_code_1() {
    let mut r = Rig::with_neighbors();
    r.send_from_a(&ipv6(a(), r0(), IpProtocol(200), 64, &[0; 16]));
    assert_eq!(param_problem(&r), (1, 6));
    // After a destination options header: the pointer is that header's.
    let dstopts = [200u8, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    r.send_from_a(&ipv6(a(), r0(), IpProtocol::IPV6_OPTS, 64, &dstopts));
    assert_eq!(param_problem(&r), (1, 40));
    assert_eq!(r.stat(|s| s.ip6.noproto.get()), 2);
    // Forwarded, it is not the router's business.
    r.send_from_a(&ipv6(a(), b(), IpProtocol(200), 64, &[0; 16]));
    assert_eq!(r.take(false).len(), 1);
}

#[test]
fn hop_by_hop_options_follow_their_action_bits() {
    let mut r = Rig::with_neighbors();
    let hbh = |opt: u8| {
        let mut h = vec![59u8, 0, opt, 2, 0, 0, 1, 0];
        h.truncate(8);
        h
    };
    // 00: skipped, the packet is forwarded.
    r.send_from_a(&ipv6(a(), b(), IpProtocol::HOPOPT, 64, &hbh(0x1e)));
    assert_eq!(r.take(false).len(), 1);
    // 01: dropped silently.
    r.send_from_a(&ipv6(a(), b(), IpProtocol::HOPOPT, 64, &hbh(0x5e)));
    assert!(r.take(false).is_empty() && r.take(true).is_empty());
    // 10: parameter problem code 2 at the option.
    r.send_from_a(&ipv6(a(), b(), IpProtocol::HOPOPT, 64, &hbh(0x9e)));
    assert_eq!(param_problem(&r), (2, 42));
    // 11 to multicast: dropped without an error.
    r.send_from_a(&ipv6(a(), ip("ff02::1"), IpProtocol::HOPOPT, 64, &hbh(0xde)));
    assert!(r.take(true).is_empty());
    assert_eq!(r.stat(|s| s.ip6.badoptions.get()), 3);
}

#[test]
fn truncated_and_malformed_packets_are_counted() {
    let mut r = Rig::with_neighbors();
    // Shorter than a header; a payload length past the frame; a
    // destination options header running past the packet.
    r.send_from_a(&[0x60, 0, 0, 0]);
    let mut long = echo(a(), r0(), 64, 8);
    long[5] = 200;
    r.send_from_a(&long);
    r.send_from_a(&ipv6(a(), r0(), IpProtocol::IPV6_OPTS, 64, &[17, 3, 1, 0]));
    // Sources that cannot come from the wire.
    r.send_from_a(&echo(ip("ff02::1"), r0(), 64, 8));
    r.send_from_a(&echo(ip("::1"), r0(), 64, 8));
    r.send_from_a(&echo(Ipv6Addr::UNSPECIFIED, b(), 64, 8));
    assert!(r.take(true).is_empty() && r.take(false).is_empty());
    assert_eq!(r.stat(|s| s.ip6.toosmall.get()), 1);
    assert_eq!(r.stat(|s| s.ip6.tooshort.get()), 2);
    assert_eq!(r.stat(|s| s.ip6.badscope.get()), 2);
    assert_eq!(r.stat(|s| s.ip6.cantforward.get()), 1, "from :: is never forwarded");
    // Ethernet padding is trimmed: a small packet in a 60-byte frame.
    let small = ipv6(a(), r0(), IpProtocol::IPV6_NONXT, 64, &[]);
    let mut f = frame(R0_MAC, A_MAC, &small);
    f.resize(60, 0);
    r.a.send(0, &f);
    r.run();
    assert_eq!(r.stat(|s| s.ip6.delivered.get()), 1);
}

/// A fragment of `m` (an ICMPv6 message): data `m[off..end]`, M flag.
fn fragment(m: &[u8], ident: u8, off: usize, end: usize, more: bool) -> Vec<u8> {
    let om = (off as u16) | more as u16;
    let mut fr = vec![58u8, 0, (om >> 8) as u8, om as u8, 0, 0, 0, ident];
    fr.extend_from_slice(&m[off..end]);
    ipv6(a(), r0(), IpProtocol::IPV6_FRAG, 64, &fr)
}

#[test]
fn fragments_to_the_router_are_reassembled_overlaps_drop_the_datagram_and_atomic_ones_are_whole() {
    let mut r = Rig::with_neighbors();
    let data: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    let m = icmp(a(), r0(), &Icmpv6Repr::EchoRequest { ident: 1, seq_no: 1, data: &data });
    // Out of order: the last fragment first.
    r.send_from_a(&fragment(&m, 9, 1232, m.len(), false));
    assert!(r.take(true).is_empty());
    r.send_from_a(&fragment(&m, 9, 0, 1232, true));
    let out = r.take(true);
    assert_eq!(out.len(), 2, "the 2,048-byte reply goes out in fragments");
    let mut whole = Vec::new();
    for f in &out {
        let ip = Ipv6Packet::new_checked(&f[HEADER_LEN..]).unwrap();
        whole.extend_from_slice(&ip.payload()[8..]);
    }
    assert_eq!(whole[0], icmpv6::msg_type::ECHO_REPLY);
    assert_eq!(&whole[8..], &data[..], "the reply carries the reassembled data");
    assert_eq!(r.stat(|s| s.ip6.reassembled.get()), 1);
    // Overlapping fragments (RFC 5722): the whole datagram goes, and a
    // fragment of it arriving later too.
    r.send_from_a(&fragment(&m, 10, 0, 1232, true));
    r.send_from_a(&fragment(&m, 10, 1224, 1232 + 8, true));
    r.send_from_a(&fragment(&m, 10, 1232, m.len(), false));
    assert!(r.take(true).is_empty());
    assert_eq!(r.stat(|s| s.ip6.fragoverlap.get()), 2);
    assert_eq!(r.stat(|s| s.ip6.reassembled.get()), 1);
    // An atomic fragment (offset 0, M clear, RFC 6946) is a whole packet.
    let small = icmp(a(), r0(), &Icmpv6Repr::EchoRequest { ident: 1, seq_no: 2, data: &[1; 16] });
    r.send_from_a(&fragment(&small, 11, 0, small.len(), false));
    let e = icmp_of(&r.take(true)[0]).unwrap();
    assert_eq!(e.4, icmpv6::msg_type::ECHO_REPLY);
    assert_eq!(r.stat(|s| s.ip6.fragments.get()), 6);
}

#[test]
fn errors_are_rate_limited_and_never_about_errors() {
    let mut r =
        Rig::new(1500, StackConfig { icmp_err_rate: 10, icmp_err_burst: 5, pool_size: 1024, ..StackConfig::default() });
    r.stack.ndp_set(a(), None, A_MAC, false, false).unwrap();
    for _ in 0..20 {
        r.send_from_a(&echo(a(), b(), 1, 8));
    }
    assert_eq!(r.take(true).len(), 5, "the burst");
    assert_eq!(r.stat(|s| s.icmp6.toofreq.get()), 15);
    // An error about an error: never.
    r.clock.advance(Duration::from_secs(10));
    let te = icmp(a(), b(), &Icmpv6Repr::TimeExceeded { code: icmpv6::TimeExceeded::HopLimitExceeded, data: &[0; 48] });
    r.send_from_a(&ipv6(a(), b(), IpProtocol::ICMPV6, 1, &te));
    assert!(r.take(true).is_empty());
    assert_eq!(r.stat(|s| s.icmp6.canterror.get()), 1);
}

#[test]
fn netstat_s_has_the_ip6_icmp6_and_nd6_sections() {
    let mut r = Rig::with_neighbors();
    r.send_from_a(&echo(a(), r0(), 64, 8));
    r.send_from_a(&echo(a(), b(), 64, 8));
    let s = softnet_core::stats::format_netstat_s(&r.stack.stats);
    assert!(s.contains("ip6:\n\t2 total packets received\n"), "{s}");
    assert!(s.contains("\t1 packet forwarded\n"), "{s}");
    assert!(s.contains("icmp6:\n"), "{s}");
    assert!(s.contains("\tOutput packet histogram:\n\t\techo reply: 1\n"), "{s}");
    assert!(s.contains("\tInput packet histogram:\n\t\techo: 1\n"), "{s}");
    assert!(s.contains("nd6:\n"), "{s}");
}

/// Every hook call a filter saw: (direction, interface, src, dst, ICMPv6
/// type or 0).
type Seen6 = Arc<Mutex<Vec<(Direction, String, Ipv6Addr, Ipv6Addr, u8)>>>;

/// A filter for the IPv6 hooks: records what it is shown, blocks packets
/// to `block` (answering them with an ICMPv6 unreachable of its own when
/// `answer`, as pf's `block return`), and gives packets to `route` a
/// `RouteDecision` (what an inet6 route-to would be).
#[derive(Default)]
struct Filter6 {
    seen: Seen6,
    block: Option<Ipv6Addr>,
    answer: bool,
    route: Option<Ipv6Addr>,
}

impl PacketFilter for Filter6 {
    fn test(
        &self,
        _worker: usize,
        _now: Instant,
        dir: Direction,
        ifp: &softnet_core::iface::Interface,
        mut pkt: PacketBuf,
        bufs: &mut dyn BufferSource,
        replies: &mut FilterReplies,
    ) -> Verdict {
        let ip = Ipv6Packet::new_checked(pkt.data()).expect("an IPv6 packet");
        let (src, dst) = (ip.src(), ip.dst());
        let t = if ip.next_header() == IpProtocol::ICMPV6 { ip.payload()[0] } else { 0 };
        self.seen.lock().unwrap().push((dir, ifp.name().to_string(), src, dst, t));
        if Some(dst) == self.block {
            if self.answer {
                let m = icmp(dst, src, &Icmpv6Repr::DstUnreachable { code: Unreach6::AdminProhibited, data: &[] });
                let mut r = bufs.alloc().unwrap();
                let b = ipv6(dst, src, IpProtocol::ICMPV6, 64, &m);
                r.rewind(b.len()).unwrap();
                r.data_mut().copy_from_slice(&b);
                r.meta.flags |= mflags::PF_GENERATED;
                replies.push(r);
            }
            return Verdict::Drop(pkt);
        }
        if Some(dst) == self.route {
            pkt.meta.pf_route = RouteDecision::To(NextHop::routed(std::net::Ipv4Addr::new(10, 0, 0, 1)));
        }
        Verdict::Pass(pkt)
    }
}

fn with_filter(f: Filter6) -> (Rig, Seen6) {
    let r = Rig::with_neighbors();
    let seen = f.seen.clone();
    r.stack.set_filter(Some(Box::new(f)));
    (r, seen)
}

fn hooks(seen: &Seen6) -> Vec<(Direction, String, Ipv6Addr, Ipv6Addr, u8)> {
    std::mem::take(&mut *seen.lock().unwrap())
}

#[test]
fn pf_sees_forwarded_packets_in_and_out_and_the_routers_own_out() {
    let (mut r, seen) = with_filter(Filter6::default());
    r.send_from_a(&echo(a(), b(), 64, 8));
    assert_eq!(r.take(false).len(), 1, "forwarded to B");
    let e = icmpv6::msg_type::ECHO_REQUEST;
    assert_eq!(
        hooks(&seen),
        vec![(Direction::In, "r0".into(), a(), b(), e), (Direction::Out, "r1".into(), a(), b(), e)]
    );
    // An echo to the router: pf in, then pf out on the reply.
    r.send_from_a(&echo(a(), r0(), 64, 8));
    let out = r.take(true);
    assert_eq!(icmp_of(&out[0]).unwrap().4, icmpv6::msg_type::ECHO_REPLY);
    let reply = icmpv6::msg_type::ECHO_REPLY;
    assert_eq!(
        hooks(&seen),
        vec![(Direction::In, "r0".into(), a(), r0(), e), (Direction::Out, "r0".into(), r0(), a(), reply)]
    );
    // TCP to the router: its RST goes through pf out.
    let t = tcp_syn(a(), r0());
    r.send_from_a(&t);
    assert_eq!(r.take(true).len(), 1, "the RST");
    let h = hooks(&seen);
    assert_eq!(
        h.iter().map(|x| (x.0, x.2, x.3)).collect::<Vec<_>>(),
        vec![(Direction::In, a(), r0()), (Direction::Out, r0(), a())]
    );
}

#[test]
fn neighbor_discovery_goes_through_pf_both_ways() {
    let (mut r, seen) = with_filter(Filter6::default());
    let ns = NdpRepr::NeighborSolicit { target: r0(), options: &[1, 1, 2, 0, 0, 0, 1, 2] };
    let dst = ip("ff02::1:ff00:1");
    let m = icmp(a(), dst, &Icmpv6Repr::Ndp(ns));
    r.a.send(0, &frame(MacAddr([0x33, 0x33, 0xff, 0, 0, 1]), A_MAC, &ipv6(a(), dst, IpProtocol::ICMPV6, 255, &m)));
    r.run();
    let out = r.take(true);
    let na = icmp_of(&out[0]).unwrap();
    assert_eq!((na.0, na.1, na.2, na.4), (A_MAC, r0(), a(), icmpv6::msg_type::NEIGHBOR_ADVERT));
    let (ns_t, na_t) = (icmpv6::msg_type::NEIGHBOR_SOLICIT, icmpv6::msg_type::NEIGHBOR_ADVERT);
    assert_eq!(
        hooks(&seen),
        vec![(Direction::In, "r0".into(), a(), dst, ns_t), (Direction::Out, "r0".into(), r0(), a(), na_t)]
    );
    // The router's own solicitation (forwarding to an unresolved
    // neighbor) is shown to pf out too.
    let c = ip("fd00:2::3");
    r.send_from_a(&echo(a(), c, 64, 8));
    let out = r.take(false);
    assert_eq!(icmp_of(&out[0]).unwrap().4, ns_t, "{out:?}");
    let h = hooks(&seen);
    assert_eq!(h.last().map(|x| (x.0, x.1.as_str(), x.4)), Some((Direction::Out, "r1", ns_t)), "{h:?}");
}

#[test]
fn a_blocking_filter_drops_and_counts_and_its_own_answer_is_sent_without_pf_out() {
    let (mut r, seen) = with_filter(Filter6 { block: Some(b()), answer: true, ..Filter6::default() });
    r.send_from_a(&echo(a(), b(), 64, 8));
    assert!(r.take(false).is_empty(), "blocked in");
    assert_eq!(r.stat(|s| s.ip6.filtered.get()), 1);
    let out = r.take(true);
    assert_eq!(out.len(), 1, "the filter's answer");
    let u = icmp_of(&out[0]).unwrap();
    assert_eq!((u.1, u.2, u.4, u.5), (b(), a(), icmpv6::msg_type::DST_UNREACHABLE, 1));
    // One hook call: the answer is the filter's own, not shown to pf out.
    assert_eq!(hooks(&seen).len(), 1);
    // Blocked at pf out: the router's own echo reply.
    let (mut r, _) = with_filter(Filter6 { block: Some(a()), ..Filter6::default() });
    r.send_from_a(&echo(a(), r0(), 64, 8));
    assert!(r.take(true).is_empty(), "the reply is blocked");
    assert_eq!(r.stat(|s| s.ip6.filtered.get()), 1);
    // IPv4 counters untouched.
    assert_eq!(r.stat(|s| s.ip.filtered.get()), 0);
}

#[test]
fn a_route_decision_on_an_ipv6_packet_is_dropped_and_counted() {
    let (mut r, _) = with_filter(Filter6 { route: Some(b()), ..Filter6::default() });
    r.send_from_a(&echo(a(), b(), 64, 8));
    assert!(r.take(false).is_empty() && r.take(true).is_empty());
    // Dropped after pf in: it never reaches pf out.
    assert_eq!(r.stat(|s| s.ip6.filtered.get()), 1);
    r.send_from_a(&echo(a(), r0(), 64, 8));
    assert_eq!(r.take(true).len(), 1, "others pass");
}

/// A TCP SYN from `src` to `dst`.
fn tcp_syn(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[4..8].copy_from_slice(&1u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&1024u16.to_be_bytes());
    let mut p = ipv6(src, dst, IpProtocol::TCP, 64, &t);
    let mut tcp = softnet_wire::tcp::TcpPacket::new_unchecked(&mut p[40..]);
    tcp.fill_checksum_v6(src, dst);
    p
}

#[test]
fn the_routers_own_packets_over_the_mtu_are_fragmented_as_rfc_8200_says() {
    let mut r = Rig::new(1400, StackConfig { pool_size: 1024, ..StackConfig::default() });
    r.stack.ndp_set(b(), None, B_MAC, false, false).unwrap();
    // B's 1,500-byte echo request to r1 (the in-memory link takes it);
    // the reply leaves by r1, whose MTU is 1,400.
    let req = echo(b(), r1(), 64, 1452);
    r.b.send(0, &frame(R1_MAC, B_MAC, &req));
    r.run();
    let out = r.take(false);
    assert_eq!(out.len(), 2, "two fragments");
    let mut whole = Vec::new();
    let mut idents = Vec::new();
    for (i, f) in out.iter().enumerate() {
        assert!(f.len() - HEADER_LEN <= 1400);
        let ip = Ipv6Packet::new_checked(&f[HEADER_LEN..]).unwrap();
        assert_eq!((ip.src(), ip.dst(), ip.next_header()), (r1(), b(), IpProtocol::IPV6_FRAG));
        let fh = ip.payload();
        assert_eq!(fh[0], 58, "the fragment header names ICMPv6");
        let off_m = u16::from_be_bytes([fh[2], fh[3]]);
        assert_eq!((off_m & 1 == 1), i == 0, "M set on the first only");
        assert_eq!((off_m & !7) as usize, whole.len(), "offsets in order, multiples of 8");
        idents.push(u32::from_be_bytes(fh[4..8].try_into().unwrap()));
        whole.extend_from_slice(&fh[8..]);
    }
    assert_eq!(idents[0], idents[1]);
    let m = Icmpv6Packet::new_checked(&whole[..]).unwrap();
    assert_eq!(m.msg_type(), icmpv6::msg_type::ECHO_REPLY);
    assert!(m.verify_checksum(r1(), b()));
    assert_eq!(whole.len(), 8 + 1452);
    assert_eq!(r.stat(|s| s.ip6.fragmented.get()), 1);
    assert_eq!(r.stat(|s| s.ip6.ofragments.get()), 2);
}

#[test]
fn tcp_and_udp_to_the_router_get_a_reset_and_port_unreachable() {
    use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
    let mut r = Rig::with_neighbors();
    let syn = TcpRepr {
        src_port: 40000,
        dst_port: 22,
        seq: 1000,
        ack: 0,
        flags: TcpFlags::SYN,
        window: 1000,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    };
    let mut seg = vec![0u8; syn.buffer_len()];
    syn.emit_with_payload_v6(&mut seg, a(), r0(), &[]);
    r.send_from_a(&ipv6(a(), r0(), IpProtocol::TCP, 64, &seg));
    let out = r.take(true);
    assert_eq!(out.len(), 1);
    let ip = Ipv6Packet::new_checked(&out[0][HEADER_LEN..]).unwrap();
    assert_eq!((ip.src(), ip.dst(), ip.next_header()), (r0(), a(), IpProtocol::TCP));
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(t.verify_checksum_v6(r0(), a()));
    assert_eq!((t.src_port(), t.dst_port(), t.seq_number(), t.ack_number()), (22, 40000, 0, 1001));
    assert_eq!(t.flags(), TcpFlags::RST | TcpFlags::ACK);
    // A bad checksum gets nothing.
    seg[16] ^= 0xff;
    r.send_from_a(&ipv6(a(), r0(), IpProtocol::TCP, 64, &seg));
    assert!(r.take(true).is_empty());
    assert_eq!(r.stat(|s| s.transport.tcp_rcvbadsum.get()), 1);
    // UDP: port unreachable (code 4); a zero checksum is invalid over IPv6.
    let mut udp = vec![0x9c, 0x40, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4];
    r.send_from_a(&ipv6(a(), r0(), IpProtocol::UDP, 64, &udp));
    assert!(r.take(true).is_empty());
    softnet_wire::udp::UdpPacket::new_unchecked(&mut udp[..]).fill_checksum_v6(a(), r0());
    r.send_from_a(&ipv6(a(), r0(), IpProtocol::UDP, 64, &udp));
    let e = icmp_of(&r.take(true)[0]).unwrap();
    assert_eq!((e.1, e.4, e.5), (r0(), icmpv6::msg_type::DST_UNREACHABLE, 4));
    assert_eq!(r.stat(|s| s.transport.udp_badsum.get()), 1);
}
