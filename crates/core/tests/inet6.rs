//! IPv6 addresses on the stack's interfaces: the automatic link-local
//! address, `ifconfig inet6` checks, DAD (RFC 4862) driven by the stack's
//! timer on the injected clock with the solicitations it sends, the
//! multicast groups, and the neighbor cache's solicitations from the timer.

use parking_lot::Mutex;
use softnet_core::iface::{Dad6State, IfIndex};
use softnet_core::link::LinkQueue;
use softnet_core::nd6::dad::DadInput;
use softnet_core::nd6::{Nd6Resolve, Nd6Stats, Nd6WorkerCache, NdEntryKind};
use softnet_core::packet::{PacketBuf, PacketPool};
use softnet_core::rng::FixedEntropy;
use softnet_core::stack::{Stack, StackConfig, StackError};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_wire::ethernet::{MacAddr, HEADER_LEN};
use softnet_wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use softnet_wire::ipv6::Ipv6Packet;
use softnet_wire::ndp::NdpRepr;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

/// Keeps every frame sent.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Vec<u8>>>>);

impl LinkQueue for Capture {
    fn recv(&mut self, _: &mut PacketPool, _: &mut Vec<PacketBuf>, _: usize) -> usize {
        0
    }
    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        let n = frames.len();
        for p in frames.drain(..) {
            self.0.lock().push(p.data().to_vec());
            pool.free(p);
        }
        n
    }
}

/// A neighbor solicitation as sent: (eth dst, ip src, ip dst, hop limit,
/// target, source link-layer address).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ns {
    eth_dst: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    target: Ipv6Addr,
    slla: Option<MacAddr>,
}

impl Capture {
    fn take_ns(&self) -> Vec<Ns> {
        let frames: Vec<Vec<u8>> = self.0.lock().drain(..).collect();
        frames
            .iter()
            .filter_map(|f| {
                let ip = Ipv6Packet::new_checked(&f[HEADER_LEN..]).ok()?;
                let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
                let Ok(Icmpv6Repr::Ndp(n @ NdpRepr::NeighborSolicit { target, .. })) =
                    Icmpv6Repr::parse(ip.src(), ip.dst(), &icmp)
                else {
                    return None;
                };
                let mut dst = [0u8; 6];
                dst.copy_from_slice(&f[..6]);
                Some(Ns {
                    eth_dst: MacAddr(dst),
                    src: ip.src(),
                    dst: ip.dst(),
                    hop_limit: ip.hop_limit(),
                    target,
                    slla: n.lladdr().unwrap(),
                })
            })
            .collect()
    }
}

const MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x01, 0x01]);
const T0: Instant = Instant::from_secs(500);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

struct Rig {
    stack: Arc<Stack>,
    clock: Arc<ManualClock>,
    cap: Capture,
}

impl Rig {
    fn new() -> Rig {
        let clock = Arc::new(ManualClock::new(T0));
        let stack =
            Stack::with_clock_and_entropy(StackConfig::default(), clock.clone(), Arc::new(FixedEntropy::new(7)));
        let cap = Capture::default();
        stack.create_interface("sn0", MAC, 1500, vec![Box::new(cap.clone())]).unwrap();
        Rig { stack, clock, cap }
    }
    fn state(&self, a: Ipv6Addr) -> Option<Dad6State> {
        self.stack.ifaces.load().by_name("sn0").unwrap().addr6_state(a)
    }
    fn tick_for(&self, d: Duration) {
        let end = self.clock.now() + d;
        while self.clock.now() < end {
            self.clock.advance(Duration::from_millis(100));
            self.stack.tick();
        }
    }
}

fn ll() -> Ipv6Addr {
    ip("fe80::ff:fe00:101")
}

#[test]
fn an_interface_gets_its_eui64_link_local_address_tentative_until_up() {
    let r = Rig::new();
    let ifp = r.stack.ifaces.load().by_name("sn0").cloned().unwrap();
    let inet6 = ifp.inet6();
    assert_eq!(inet6.addrs.len(), 1);
    assert_eq!((inet6.addrs[0].addr, inet6.addrs[0].prefix_len), (ll(), 64));
    assert_eq!(inet6.addrs[0].state, Dad6State::Tentative);
    // RFC 4862 5.4.2: the solicited-node group is joined before DAD.
    for g in ["ff02::1", "ff02::2", "ff02::1:ff00:101"] {
        assert!(ifp.is_joined6(ip(g)), "{g}");
    }
    assert_eq!(ifp.source6_for(ip("fe80::9")), None, "a tentative address is not a source");
    r.tick_for(Duration::from_secs(5));
    assert!(r.cap.take_ns().is_empty(), "no DAD while down");
    assert_eq!(r.state(ll()), Some(Dad6State::Tentative));
    let e = r.stack.nd6.entry(ll(), Some(ifp.index()));
    assert_eq!(e[0].kind, NdEntryKind::Local);
}

#[test]
fn dad_sends_one_solicitation_from_unspecified_and_the_address_becomes_preferred() {
    let r = Rig::new();
    r.stack.set_up("sn0", true).unwrap();
    // Within MAX_RTR_SOLICITATION_DELAY, one solicitation.
    r.tick_for(Duration::from_secs(1));
    let ns = r.cap.take_ns();
    assert_eq!(
        ns,
        vec![Ns {
            eth_dst: MacAddr([0x33, 0x33, 0xff, 0x00, 0x01, 0x01]),
            src: Ipv6Addr::UNSPECIFIED,
            dst: ip("ff02::1:ff00:101"),
            hop_limit: 255,
            target: ll(),
            slla: None,
        }]
    );
    assert_eq!(r.state(ll()), Some(Dad6State::Tentative));
    r.tick_for(Duration::from_millis(1100));
    assert_eq!(r.state(ll()), Some(Dad6State::Preferred));
    assert!(r.cap.take_ns().is_empty(), "DupAddrDetectTransmits is 1");
    let ifp = r.stack.ifaces.load().by_name("sn0").cloned().unwrap();
    assert_eq!(ifp.source6_for(ip("fe80::9")), Some(ll()));
}

#[test]
fn an_address_added_while_up_is_tested_at_once_and_a_duplicate_is_never_used() {
    let r = Rig::new();
    r.stack.set_up("sn0", true).unwrap();
    r.tick_for(Duration::from_secs(3));
    let _ = r.cap.take_ns();
    let a = ip("fd00:1::1");
    r.stack.add_address6("sn0", a, 64).unwrap();
    assert_eq!(r.state(a), Some(Dad6State::Tentative));
    r.tick_for(Duration::from_millis(100));
    let ns = r.cap.take_ns();
    assert_eq!(ns.len(), 1);
    assert_eq!((ns[0].target, ns[0].dst), (a, ip("ff02::1:ff00:1")));
    // Another node answers.
    let idx = r.stack.ifaces.load().by_name("sn0").unwrap().index();
    assert!(r.stack.dad_input(idx, a, DadInput::Na));
    assert!(!r.stack.dad_input(IfIndex(idx.0 + 1), a, DadInput::Na));
    r.tick_for(Duration::from_millis(100));
    assert_eq!(r.state(a), Some(Dad6State::Duplicated));
    r.tick_for(Duration::from_secs(3));
    assert_eq!(r.state(a), Some(Dad6State::Duplicated), "stays so");
    let ifp = r.stack.ifaces.load().by_name("sn0").cloned().unwrap();
    assert_eq!(ifp.source6_for(ip("fd00:1::9")), Some(ll()), "not the duplicate");
    let dups: u64 = r.stack.stats.iter().map(|s| s.nd6.dup_addrs.get()).sum();
    assert_eq!(dups, 1);
}

#[test]
fn down_stops_dad_and_up_starts_it_again() {
    let r = Rig::new();
    r.stack.set_up("sn0", true).unwrap();
    r.stack.set_up("sn0", false).unwrap();
    r.tick_for(Duration::from_secs(3));
    assert!(r.cap.take_ns().is_empty());
    assert_eq!(r.state(ll()), Some(Dad6State::Tentative));
    r.stack.set_up("sn0", true).unwrap();
    r.tick_for(Duration::from_secs(3));
    assert_eq!(r.cap.take_ns().len(), 1);
    assert_eq!(r.state(ll()), Some(Dad6State::Preferred));
}

#[test]
fn ifconfig_inet6_refuses_bad_and_duplicate_addresses_and_changes_nothing() {
    let r = Rig::new();
    r.stack.create_interface("sn1", MacAddr([2, 0, 0, 0, 2, 1]), 1500, vec![Box::new(Capture::default())]).unwrap();
    r.stack.add_address6("sn0", ip("fd00:1::1"), 64).unwrap();
    let bad = |a: &str, l: u8| match r.stack.add_address6("sn0", ip(a), l) {
        Err(StackError::BadAddr6(_, _, why)) => why,
        other => panic!("{a}/{l}: {other:?}"),
    };
    assert_eq!(bad("fd00:2::1", 0), "prefix length not 1 to 128");
    assert_eq!(bad("fd00:2::1", 129), "prefix length not 1 to 128");
    for a in ["::", "ff02::1", "::1", "::ffff:10.0.0.1"] {
        assert_eq!(bad(a, 64), "not a unicast address", "{a}");
    }
    assert_eq!(bad("fe80::5", 48), "a link-local address is a /64");
    assert!(matches!(r.stack.add_address6("sn0", ip("fd00:1::1"), 48), Err(StackError::Addr6Exists(..))));
    assert!(matches!(r.stack.add_address6("sn1", ip("fd00:1::1"), 64), Err(StackError::Addr6Exists(..))));
    // A link-local address is unique only on its link.
    r.stack.add_address6("sn1", ip("fe80::5"), 64).unwrap();
    r.stack.add_address6("sn0", ip("fe80::5"), 64).unwrap();
    assert!(matches!(r.stack.add_address6("sn0", ip("fe80::5"), 64), Err(StackError::Addr6Exists(..))));
    let e = r.stack.add_address6("sn0", ip("fe80::5"), 48).unwrap_err();
    assert_eq!(e.to_string(), "sn0: bad address fe80::5/48: a link-local address is a /64");
    let ifp = r.stack.ifaces.load().by_name("sn0").cloned().unwrap();
    assert_eq!(ifp.inet6().addrs.len(), 3, "link-local, fd00:1::1, fe80::5");
    assert!(matches!(r.stack.add_address6("nope", ip("fd00:3::1"), 64), Err(StackError::If(_))));
}

#[test]
fn deleting_an_address_leaves_its_group_and_its_local_entry() {
    let r = Rig::new();
    let a = ip("fd00:1::77");
    r.stack.add_address6("sn0", a, 64).unwrap();
    let ifp = r.stack.ifaces.load().by_name("sn0").cloned().unwrap();
    assert!(ifp.is_joined6(ip("ff02::1:ff00:77")));
    assert_eq!(r.stack.nd6.entry(a, None).len(), 1);
    r.stack.delete_address6("sn0", a).unwrap();
    assert!(!ifp.is_joined6(ip("ff02::1:ff00:77")));
    assert!(ifp.is_joined6(ip("ff02::1:ff00:101")), "the link-local address's group stays");
    assert!(r.stack.nd6.entry(a, None).is_empty());
    let e = r.stack.delete_address6("sn0", a).unwrap_err();
    assert_eq!(e.to_string(), "sn0: address fd00:1::77 not configured");
    // Without any IPv6 address, no group at all.
    r.stack.delete_address6("sn0", ll()).unwrap();
    assert!(!ifp.is_joined6(ip("ff02::1")));
}

#[test]
fn the_timer_sends_the_neighbor_caches_solicitations_with_a_usable_source() {
    let r = Rig::new();
    r.stack.set_up("sn0", true).unwrap();
    let a = ip("fd00:1::1");
    r.stack.add_address6("sn0", a, 64).unwrap();
    r.tick_for(Duration::from_secs(3));
    let _ = r.cap.take_ns();
    let ifp = r.stack.ifaces.load().by_name("sn0").cloned().unwrap();
    let stats = Nd6Stats::default();
    let mut cache = Nd6WorkerCache::new();
    let h = ip("fd00:1::2");
    let now = r.clock.now();
    let res = r.stack.nd6.resolve(now, &ifp, h, a, PacketBuf::from_slice(&[0; 60]), &mut cache, &stats);
    assert!(matches!(res, Nd6Resolve::Held { solicit: Some(_), .. }));
    // The second and third solicitations come from the timer, then the
    // entry goes.
    r.tick_for(Duration::from_secs(4));
    let ns = r.cap.take_ns();
    let want = Ns {
        eth_dst: MacAddr([0x33, 0x33, 0xff, 0, 0, 2]),
        src: a,
        dst: ip("ff02::1:ff00:2"),
        hop_limit: 255,
        target: h,
        slla: Some(MAC),
    };
    assert_eq!(ns, vec![want.clone(), want]);
    assert!(r.stack.nd6.entry(h, None).is_empty());
    let dropped: u64 = r.stack.stats.iter().map(|s| s.nd6.dropped_no_entry.get()).sum();
    assert_eq!(dropped, 1, "the held packet");
}

#[test]
fn destroy_forgets_the_interfaces_neighbors_and_tests() {
    let r = Rig::new();
    r.stack.set_up("sn0", true).unwrap();
    r.stack.ndp_set(ip("fe80::9"), Some("sn0"), MacAddr([2, 0, 0, 0, 0, 9]), false, false).unwrap();
    assert_eq!(r.stack.nd6.len(), 2);
    r.stack.destroy_interface("sn0").unwrap();
    assert_eq!(r.stack.nd6.len(), 0);
    assert!(r.stack.dad.lock().next_deadline().is_none());
}
