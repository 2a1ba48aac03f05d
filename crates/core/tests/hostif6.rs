//! Host interfaces over IPv6 in memory: r0 has a host twin (the test
//! reads and writes its far end, standing for the Linux TAP). TCP and
//! unknown next headers for the router are punted instead of refused, the
//! host's neighbor solicitations are answered from the router's neighbor
//! cache (resolving first), its other NDP stays off the wire, its packets
//! go out of r0, multicast of the groups it joined is punted.
//!
//! ```text
//!  A fd00:1::2 ── r0 fd00:1::1/64 [router] r1 fd00:2::1/64 ── B
//!                 └─ twin "hr0"
//! ```

use crate::common;

use common::frames6::{frame, icmp, ipv6};
use softnet_core::iface::Dad6State;
use softnet_core::packet::PacketBuf;
use softnet_core::rng::FixedEntropy;
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::vlink::{self, VirtualPort};
use softnet_core::worker::Worker;
use softnet_wire::ethernet::{EthernetFrame, MacAddr, HEADER_LEN};
use softnet_wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::Ipv6Packet;
use softnet_wire::ndp::{NaFlags, NdpRepr};
use softnet_wire::tcp::TcpPacket;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

const R0_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const R1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 1]);
const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

struct Rig {
    stack: Arc<Stack>,
    worker: Worker,
    a: VirtualPort,
    twin: VirtualPort,
}

impl Rig {
    fn new() -> Rig {
        let clock = Arc::new(ManualClock::new(Instant::from_secs(1000)));
        let config = StackConfig { pool_size: 1024, ..StackConfig::default() };
        let stack = Stack::with_clock_and_entropy(config, clock.clone(), Arc::new(FixedEntropy::new(3)));
        let (r0_port, a_port) = vlink::wire(1, 1024);
        let (r1_port, _b_port) = vlink::wire(1, 1024);
        stack.create_interface("r0", R0_MAC, 1500, r0_port.link_queues()).unwrap();
        stack.create_interface("r1", R1_MAC, 1500, r1_port.link_queues()).unwrap();
        stack.add_address6("r0", ip("fd00:1::1"), 64).unwrap();
        stack.add_address6("r1", ip("fd00:2::1"), 64).unwrap();
        let (near, twin) = vlink::wire(1, 256);
        stack.attach_host("r0", "hr0", near.link_queues()).unwrap();
        stack.set_up("r0", true).unwrap();
        stack.set_up("r1", true).unwrap();
        let dynclock: Arc<dyn Clock> = clock.clone();
        let worker = Worker::new(0, stack.clone(), dynclock);
        for _ in 0..40 {
            clock.advance(Duration::from_millis(100));
            stack.tick();
        }
        assert_eq!(stack.ifaces.load().by_name("r0").unwrap().addr6_state(ip("fd00:1::1")), Some(Dad6State::Preferred));
        let mut rig = Rig { stack, worker, a: a_port, twin };
        rig.run();
        take(&rig.a);
        take(&rig.twin);
        rig
    }

    fn run(&mut self) {
        for _ in 0..10 {
            if self.worker.poll() == 0 {
                break;
            }
        }
    }

    fn host_stats(&self) -> softnet_core::hostif::HostStatsTotal {
        self.stack.ifaces.load().by_name("r0").unwrap().host().unwrap().stats_total()
    }
}

fn take(port: &VirtualPort) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = PacketBuf::with_capacity(4096);
    while port.recv(&mut p) {
        out.push(p.data().to_vec());
    }
    out
}

fn syn(src: Ipv6Addr, dst: Ipv6Addr, dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&4096u16.to_be_bytes());
    TcpPacket::new_unchecked(&mut t[..]).fill_checksum_v6(src, dst);
    ipv6(src, dst, IpProtocol::TCP, 64, &t)
}

/// The host's solicitation for `target` from its (r0's) address `src`.
fn host_ns(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let ns = NdpRepr::NeighborSolicit { target, options: &[1, 1, 2, 0, 0, 0, 1, 1] };
    let o = target.octets();
    let snm = Ipv6Addr::from([0xff02, 0, 0, 0, 0, 1, 0xff00 | o[13] as u16, u16::from_be_bytes([o[14], o[15]])]);
    let m = icmp(src, snm, &Icmpv6Repr::Ndp(ns));
    frame(MacAddr([0x33, 0x33, 0xff, o[13], o[14], o[15]]), R0_MAC, &ipv6(src, snm, IpProtocol::ICMPV6, 255, &m))
}

/// An NDP message seen: (eth src, eth dst, ip src, ip dst, repr type, target, flags).
type Ndp = (MacAddr, MacAddr, Ipv6Addr, Ipv6Addr, u8, Ipv6Addr, Option<NaFlags>);

/// The NDP messages among `frames`.
fn ndp_of(f: &[u8]) -> Option<Ndp> {
    let e = EthernetFrame::new_checked(f).ok()?;
    let ip = Ipv6Packet::new_checked(e.payload()).ok()?;
    if ip.next_header() != IpProtocol::ICMPV6 || ip.hop_limit() != 255 {
        return None;
    }
    let m = Icmpv6Packet::new_checked(ip.payload()).ok()?;
    match Icmpv6Repr::parse(ip.src(), ip.dst(), &m).ok()? {
        Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit { target, .. }) => {
            Some((e.src(), e.dst(), ip.src(), ip.dst(), 135, target, None))
        }
        Icmpv6Repr::Ndp(NdpRepr::NeighborAdvert { target, flags, .. }) => {
            Some((e.src(), e.dst(), ip.src(), ip.dst(), 136, target, Some(flags)))
        }
        _ => None,
    }
}

#[test]
fn tcp_and_unknown_next_headers_are_punted_instead_of_refused() {
    let mut r = Rig::new();
    r.stack.ndp_set(ip("fd00:1::2"), None, A_MAC, false, false).unwrap();
    r.a.send(0, &frame(R0_MAC, A_MAC, &syn(ip("fd00:1::2"), ip("fd00:1::1"), 179)));
    r.a.send(0, &frame(R0_MAC, A_MAC, &ipv6(ip("fd00:1::2"), ip("fd00:1::1"), IpProtocol(89), 1, &[0; 16])));
    r.run();
    let got = take(&r.twin);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0][..12], [R0_MAC.0, A_MAC.0].concat()[..], "the Ethernet header as it arrived");
    let nh: Vec<IpProtocol> =
        got.iter().map(|f| Ipv6Packet::new_checked(&f[HEADER_LEN..]).unwrap().next_header()).collect();
    assert_eq!(nh, vec![IpProtocol::TCP, IpProtocol(89)]);
    assert!(take(&r.a).is_empty(), "no RST, no parameter problem");
}

#[test]
fn the_hosts_solicitations_are_answered_from_the_neighbor_cache() {
    let mut r = Rig::new();
    let (a, r0) = (ip("fd00:1::2"), ip("fd00:1::1"));
    r.twin.send(0, &host_ns(r0, a));
    r.run();
    assert!(take(&r.twin).is_empty(), "not known yet");
    // The router solicits A on r0 itself.
    let out: Vec<_> = take(&r.a).iter().filter_map(|f| ndp_of(f)).collect();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, out[0].4, out[0].5), (R0_MAC, 135, a));
    // A advertises; the host gets its answer.
    let na = NdpRepr::NeighborAdvert {
        flags: NaFlags { router: false, solicited: true, override_: true },
        target: a,
        options: &[2, 1, 2, 0, 0, 0, 1, 2],
    };
    r.a.send(0, &frame(R0_MAC, A_MAC, &ipv6(a, r0, IpProtocol::ICMPV6, 255, &icmp(a, r0, &Icmpv6Repr::Ndp(na)))));
    r.run();
    let got: Vec<_> = take(&r.twin).iter().filter_map(|f| ndp_of(f)).collect();
    assert_eq!(got.len(), 1, "{got:?}");
    let (esrc, edst, isrc, idst, t, target, flags) = got[0];
    assert_eq!((esrc, edst, isrc, idst, t, target), (A_MAC, R0_MAC, a, r0, 136, a));
    assert_eq!(flags, Some(NaFlags { router: false, solicited: true, override_: true }));
    // Known: answered at once, nothing on the wire.
    r.twin.send(0, &host_ns(r0, a));
    r.run();
    assert_eq!(take(&r.twin).len(), 1);
    assert!(take(&r.a).is_empty());
    // Off the link, and the router's own: no answer.
    r.twin.send(0, &host_ns(r0, ip("fd00:9::9")));
    r.twin.send(0, &host_ns(r0, ip("fd00:2::1")));
    r.run();
    assert!(take(&r.twin).is_empty() && take(&r.a).is_empty());
    let s = r.host_stats();
    assert_eq!((s.nd_answered, s.dropped, s.transmitted), (2, 2, 0));
}

#[test]
fn the_hosts_other_ndp_stays_off_the_wire_and_its_packets_go_out() {
    let mut r = Rig::new();
    let (a, r0) = (ip("fd00:1::2"), ip("fd00:1::1"));
    let ll = ip("fe80::ff:fe00:101");
    let rs = icmp(ll, ip("ff02::2"), &Icmpv6Repr::Ndp(NdpRepr::RouterSolicit { options: &[] }));
    r.twin.send(
        0,
        &frame(MacAddr([0x33, 0x33, 0, 0, 0, 2]), R0_MAC, &ipv6(ll, ip("ff02::2"), IpProtocol::ICMPV6, 255, &rs)),
    );
    r.twin.send(0, &frame(A_MAC, R0_MAC, &syn(r0, a, 22)));
    r.run();
    let out = take(&r.a);
    assert_eq!(out.len(), 1, "only the SYN");
    let ip6 = Ipv6Packet::new_checked(&out[0][HEADER_LEN..]).unwrap();
    assert_eq!((ip6.src(), ip6.dst(), ip6.next_header()), (r0, a, IpProtocol::TCP));
    let s = r.host_stats();
    assert_eq!((s.from_host, s.transmitted, s.dropped), (2, 1, 1));
}

#[test]
fn multicast_of_a_group_the_host_joined_is_punted() {
    let mut r = Rig::new();
    let a_ll = ip("fe80::2");
    let ospf = ip("ff02::5");
    let hello = ipv6(a_ll, ospf, IpProtocol(89), 1, &[0; 16]);
    r.a.send(0, &frame(MacAddr([0x33, 0x33, 0, 0, 0, 5]), A_MAC, &hello));
    r.run();
    assert!(take(&r.twin).is_empty(), "not joined");
    r.stack.set_host_groups("r0", vec![], vec![ospf]).unwrap();
    r.a.send(0, &frame(MacAddr([0x33, 0x33, 0, 0, 0, 5]), A_MAC, &hello));
    r.run();
    let got = take(&r.twin);
    assert_eq!(got.len(), 1);
    assert_eq!(EthernetFrame::new_checked(&got[0][..]).unwrap().dst(), MacAddr([0x33, 0x33, 0, 0, 0, 5]));
}
