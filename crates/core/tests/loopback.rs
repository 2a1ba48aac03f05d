//! lo0 in memory (crate::loopback): created as OpenBSD attaches it, the
//! router's packets to its own addresses out through lo0 and back in on
//! it (seen by a filter both ways), loopback addresses refused on the
//! wire and on other interfaces.
//!
//! ```text
//!  A 10.0.1.2 / fd00:1::2 ── r0 10.0.1.1/24, fd00:1::1/64 [router] lo0
//! ```

use softnet_core::filter::{BufferSource, Direction, FilterReplies, PacketFilter, Verdict};
use softnet_core::iface::{if_flags, IfAddr};
use softnet_core::packet::PacketBuf;
use softnet_core::rng::FixedEntropy;
use softnet_core::route::RouteFlags;
use softnet_core::stack::{Stack, StackConfig, StackError};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::vlink::{self, VirtualPort};
use softnet_core::worker::Worker;
use softnet_wire::ethernet::{EtherType, MacAddr};
use softnet_wire::icmpv4::Icmpv4Repr;
use softnet_wire::icmpv6::Icmpv6Repr;
use softnet_wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use softnet_wire::ipv6::{Ipv6Packet, Ipv6Repr};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const R0_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const R0: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);

fn r0_6() -> Ipv6Addr {
    "fd00:1::1".parse().unwrap()
}
fn a_6() -> Ipv6Addr {
    "fd00:1::2".parse().unwrap()
}

/// What a filter saw: direction, interface index, source, destination.
type Seen = Arc<Mutex<Vec<(Direction, u32, IpAddr, IpAddr)>>>;

struct Recorder(Seen);

impl PacketFilter for Recorder {
    fn test(
        &self,
        _worker: usize,
        _now: Instant,
        dir: Direction,
        ifp: &softnet_core::iface::Interface,
        pkt: PacketBuf,
        _: &mut dyn BufferSource,
        _: &mut FilterReplies,
    ) -> Verdict {
        let d = pkt.data();
        let (s, t) = if d[0] >> 4 == 4 {
            let ip = Ipv4Packet::new_unchecked(d);
            (IpAddr::V4(ip.src()), IpAddr::V4(ip.dst()))
        } else {
            let ip = Ipv6Packet::new_unchecked(d);
            (IpAddr::V6(ip.src()), IpAddr::V6(ip.dst()))
        };
        self.0.lock().unwrap().push((dir, ifp.index().0, s, t));
        Verdict::Pass(pkt)
    }
}

struct Rig {
    stack: Arc<Stack>,
    worker: Worker,
    a: VirtualPort,
    seen: Seen,
}

impl Rig {
    fn new() -> Rig {
        let clock = Arc::new(ManualClock::new(Instant::from_secs(1000)));
        let stack =
            Stack::with_clock_and_entropy(StackConfig::default(), clock.clone(), Arc::new(FixedEntropy::new(5)));
        stack.create_loopback().unwrap();
        let (r0_port, a_port) = vlink::wire(1, 1024);
        stack.create_interface("r0", R0_MAC, 1500, r0_port.link_queues()).unwrap();
        stack.add_address("r0", IfAddr::new(R0, 24)).unwrap();
        stack.add_address6("r0", r0_6(), 64).unwrap();
        stack.set_up("r0", true).unwrap();
        for _ in 0..40 {
            clock.advance(Duration::from_millis(100));
            stack.tick();
        }
        stack.arp_add_static(A, A_MAC).unwrap();
        stack.ndp_set(a_6(), None, A_MAC, false, false).unwrap();
        let seen: Seen = Arc::default();
        stack.set_filter(Some(Box::new(Recorder(seen.clone()))));
        let dynclock: Arc<dyn Clock> = clock.clone();
        let worker = Worker::new(0, stack.clone(), dynclock);
        let mut rig = Rig { stack, worker, a: a_port, seen };
        rig.run();
        rig.take();
        rig.seen.lock().unwrap().clear();
        rig
    }

    fn run(&mut self) {
        for _ in 0..10 {
            if self.worker.poll() == 0 {
                break;
            }
        }
    }

    fn take(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut p = PacketBuf::with_capacity(4096);
        while self.a.recv(&mut p) {
            out.push(p.data().to_vec());
        }
        out
    }

    fn send_from_a(&mut self, ethertype: EtherType, pkt: &[u8]) {
        let mut f = Vec::new();
        f.extend_from_slice(&R0_MAC.0);
        f.extend_from_slice(&A_MAC.0);
        f.extend_from_slice(&ethertype.0.to_be_bytes());
        f.extend_from_slice(pkt);
        self.a.send(0, &f);
        self.run();
    }

    fn lo0(&self) -> Arc<softnet_core::iface::Interface> {
        self.stack.ifaces.load().by_name("lo0").unwrap().clone()
    }
}

fn echo4(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest { ident: 9, seq_no: 1, data: b"loopback" };
    let ip = Ipv4Repr {
        src,
        dst,
        protocol: IpProtocol::ICMP,
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_frag: false,
        payload_len: icmp.buffer_len(),
    };
    let mut b = vec![0u8; 20 + icmp.buffer_len()];
    ip.emit(&mut b);
    icmp.emit(&mut b[20..]);
    b
}

fn echo6(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let icmp = Icmpv6Repr::EchoRequest { ident: 9, seq_no: 1, data: b"loopback" };
    let mut m = vec![0u8; icmp.buffer_len()];
    icmp.emit(src, dst, &mut m);
    let r = Ipv6Repr {
        src,
        dst,
        next_header: IpProtocol::ICMPV6,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        payload_len: m.len(),
    };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut b);
    b[40..].copy_from_slice(&m);
    b
}

#[test]
fn lo0_is_attached_as_openbsd_does() {
    let r = Rig::new();
    let lo = r.lo0();
    assert!(lo.is_loopback() && lo.is_up());
    assert_eq!(lo.flags() & if_flags::BROADCAST, 0);
    assert_eq!(lo.mtu(), 32768);
    assert_eq!(lo.groups(), vec!["lo".to_string()]);
    assert_eq!(lo.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(), vec!["127.0.0.1/8"]);
    let six: Vec<String> = lo.inet6().addrs.iter().map(|a| format!("{a} {:?}", a.state)).collect();
    assert_eq!(six, vec!["::1/128 Preferred", "fe80::1/64 Preferred"]);
    // Local routes for its addresses, no broadcast route.
    let rt = r.stack.routes.snapshot(0).unwrap();
    let local = rt.lookup(Ipv4Addr::LOCALHOST).unwrap();
    assert!(local.flags.contains(RouteFlags::LOCAL) && local.ifp == lo.weak());
    assert!(!rt.lookup(Ipv4Addr::new(127, 255, 255, 255)).unwrap().flags.contains(RouteFlags::BROADCAST));
    let rt6 = r.stack.routes.snapshot6(0).unwrap();
    assert!(rt6.lookup(Ipv6Addr::LOCALHOST).unwrap().flags.contains(RouteFlags::LOCAL));
    // Once per stack.
    assert!(matches!(r.stack.create_loopback(), Err(StackError::If(_))));
}

#[test]
fn loopback_addresses_belong_to_a_loopback_interface_only() {
    let r = Rig::new();
    let e = r.stack.add_address("r0", IfAddr::new(Ipv4Addr::new(127, 0, 0, 2), 8)).unwrap_err();
    assert!(e.to_string().contains("not a unicast address"), "{e}");
    let e = r.stack.add_address6("r0", Ipv6Addr::LOCALHOST, 128).unwrap_err();
    assert!(e.to_string().contains("not a unicast address"), "{e}");
    // lo0 takes more of them, as ifconfig lo0 alias does.
    r.stack.add_address("lo0", IfAddr::new(Ipv4Addr::new(127, 0, 0, 2), 32)).unwrap();
}

#[test]
fn loopback_addresses_from_the_wire_are_dropped() {
    let mut r = Rig::new();
    r.send_from_a(EtherType::IPV4, &echo4(A, Ipv4Addr::LOCALHOST));
    r.send_from_a(EtherType::IPV4, &echo4(Ipv4Addr::LOCALHOST, R0));
    r.send_from_a(EtherType::IPV6, &echo6(a_6(), Ipv6Addr::LOCALHOST));
    r.send_from_a(EtherType::IPV6, &echo6(Ipv6Addr::LOCALHOST, r0_6()));
    assert!(r.take().is_empty());
    let sum = |f: &dyn Fn(&softnet_core::stats::StackStats) -> u64| r.stack.stats.iter().map(f).sum::<u64>();
    assert_eq!(sum(&|s| s.ip.badaddr.get()), 2);
    assert_eq!(sum(&|s| s.ip6.badscope.get()), 2);
    assert_eq!(r.lo0().stats_total().ipackets, 0);
}

/// An echo request from the router's own address (spoofed by A): the
/// reply is for the router itself, so it leaves through lo0 and comes
/// back in on lo0, where it is delivered (an echo reply is consumed).
#[test]
fn the_routers_packets_to_itself_go_out_and_back_in_on_lo0() {
    let mut r = Rig::new();
    let lo = r.lo0().index().0;
    r.send_from_a(EtherType::IPV4, &echo4(R0, R0));
    assert!(r.take().is_empty(), "nothing for A");
    let v4 = IpAddr::V4(R0);
    let seen = r.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (Direction::In, 2, v4, v4),   // the request, in on r0
            (Direction::Out, lo, v4, v4), // the reply, out on lo0
            (Direction::In, lo, v4, v4),  // and in on lo0
        ]
    );
    let st = r.lo0().stats_total();
    assert_eq!((st.opackets, st.ipackets), (1, 1));
    let stack = r.stack.clone();
    let sum = |f: &dyn Fn(&softnet_core::stats::StackStats) -> u64| stack.stats.iter().map(f).sum::<u64>();
    assert_eq!(sum(&|s| s.icmp.inhist[0].get()), 1, "the echo reply came in");

    r.seen.lock().unwrap().clear();
    r.send_from_a(EtherType::IPV6, &echo6(r0_6(), r0_6()));
    assert!(r.take().is_empty(), "nothing for A");
    let v6 = IpAddr::V6(r0_6());
    let seen = r.seen.lock().unwrap().clone();
    assert_eq!(seen, vec![(Direction::In, 2, v6, v6), (Direction::Out, lo, v6, v6), (Direction::In, lo, v6, v6)]);
    let st = r.lo0().stats_total();
    assert_eq!((st.opackets, st.ipackets), (2, 2));
    assert_eq!(sum(&|s| s.icmp6.inhist[129].get()), 1, "the echo reply came in");
}
