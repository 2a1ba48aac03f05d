//! Router advertisements from the stack (RFC 4861 §6.2, rad(8)): sent by
//! the stack's timer on the injected clock from the link-local address
//! once it passed DAD, answers to solicitations the data path hands to
//! nd6's input, the final advertisement, counters and the `rad` view.

use parking_lot::Mutex;
use softnet_core::link::LinkQueue;
use softnet_core::nd6::rtadv::{PrefixConf, RaConfig, RaPrefix, MAX_RA_DELAY_TIME};
use softnet_core::nd6::{Nd6Input, RS_QUEUE};
use softnet_core::packet::{PacketBuf, PacketPool};
use softnet_core::percpu::CONTROL_SLOT;
use softnet_core::rng::FixedEntropy;
use softnet_core::stack::{Stack, StackConfig, StackError};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_wire::ethernet::{MacAddr, HEADER_LEN};
use softnet_wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use softnet_wire::ipv6::{Ipv6Packet, ALL_NODES};
use softnet_wire::ndp::{NdpOption, NdpRepr, PrefixInfo};
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

/// Frames sent, with the time they went.
type Frames = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

#[derive(Clone)]
struct Capture(Frames, Arc<ManualClock>);

impl LinkQueue for Capture {
    fn recv(&mut self, _: &mut PacketPool, _: &mut Vec<PacketBuf>, _: usize) -> usize {
        0
    }
    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        let n = frames.len();
        let now = self.1.now();
        for p in frames.drain(..) {
            self.0.lock().push((now, p.data().to_vec()));
            pool.free(p);
        }
        n
    }
}

/// A router advertisement as sent.
#[derive(Clone, Debug)]
struct Ra {
    at: Instant,
    eth_dst: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    router_lifetime: u16,
    slla: Option<MacAddr>,
    mtu: Option<u32>,
    prefixes: Vec<PrefixInfo>,
}

impl Capture {
    fn take_ras(&self) -> Vec<Ra> {
        let frames: Vec<(Instant, Vec<u8>)> = self.0.lock().drain(..).collect();
        frames
            .iter()
            .filter_map(|(at, f)| {
                let ip = Ipv6Packet::new_checked(&f[HEADER_LEN..]).ok()?;
                let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
                let Ok(Icmpv6Repr::Ndp(n @ NdpRepr::RouterAdvert { router_lifetime, .. })) =
                    Icmpv6Repr::parse(ip.src(), ip.dst(), &icmp)
                else {
                    return None;
                };
                assert!(n.validate(ip.src(), ip.dst(), ip.hop_limit()).is_ok());
                let mut dst = [0u8; 6];
                dst.copy_from_slice(&f[..6]);
                Some(Ra {
                    at: *at,
                    eth_dst: MacAddr(dst),
                    src: ip.src(),
                    dst: ip.dst(),
                    hop_limit: ip.hop_limit(),
                    router_lifetime,
                    slla: n.lladdr().unwrap(),
                    mtu: n.mtu(),
                    prefixes: n.prefixes().collect(),
                })
            })
            .collect()
    }
}

const MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x01, 0x01]);
const HOST: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x09, 0x09]);
const T0: Instant = Instant::from_secs(500);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn ll() -> Ipv6Addr {
    ip("fe80::ff:fe00:101")
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
        let cap = Capture(Frames::default(), clock.clone());
        stack.create_interface("sn0", MAC, 1500, vec![Box::new(cap.clone())]).unwrap();
        stack.add_address6("sn0", ip("fd00:1::1"), 64).unwrap();
        Rig { stack, clock, cap }
    }
    /// The daemon's loop: the advertiser every 100 ms, the tick each second.
    fn run_for(&self, d: Duration) {
        let end = self.clock.now() + d;
        let mut k = 0u64;
        while self.clock.now() < end {
            self.clock.advance(Duration::from_millis(100));
            k += 1;
            if k.is_multiple_of(10) {
                self.stack.tick();
            } else {
                self.stack.rtadv_timer();
            }
        }
    }
    /// What the IPv6 data path does with a router solicitation: nd6's
    /// input dispatch.
    fn solicit(&self, src: Ipv6Addr, slla: Option<MacAddr>) {
        let mut opt = [0u8; 8];
        let opts: &[u8] = match slla {
            Some(m) => {
                NdpOption::SourceLinkAddr(m).emit(&mut opt);
                &opt
            }
            None => &[],
        };
        let ifp = self.stack.ifaces.load().by_name("sn0").cloned().unwrap();
        let msg = NdpRepr::RouterSolicit { options: opts };
        let stats = &self.stack.stats.get(0).nd6;
        let mut out = Nd6Input::new();
        let dst = ip("ff02::2");
        self.stack.nd6.input(self.clock.now(), &ifp, src, dst, 255, &msg, true, stats, &mut out).unwrap();
    }
    fn counter(&self, f: impl Fn(&softnet_core::nd6::Nd6Stats) -> u64) -> u64 {
        self.stack.stats.iter().map(|w| f(&w.nd6)).sum()
    }
}

#[test]
fn an_advertising_interface_sends_from_its_link_local_address_after_dad_with_its_prefix() {
    let r = Rig::new();
    r.stack.set_router_adv("sn0", Some(RaConfig { mtu: 1500, ..RaConfig::default() })).unwrap();
    r.run_for(Duration::from_secs(5));
    assert!(r.cap.take_ras().is_empty(), "nothing while down");
    r.stack.set_up("sn0", true).unwrap();
    r.run_for(Duration::from_secs(60));
    let ras = r.cap.take_ras();
    assert!(ras.len() >= 3, "the initial advertisements: {ras:?}");
    let first = &ras[0];
    // DAD of the link-local address: up to 1 s delay + RETRANS_TIMER.
    assert!(first.at <= T0 + Duration::from_secs(5 + 3), "{:?}", first.at);
    let ifp = r.stack.ifaces.load().by_name("sn0").cloned().unwrap();
    let dad_done = ifp.addr6_state(ll()) == Some(softnet_core::iface::Dad6State::Preferred);
    assert!(dad_done);
    for ra in &ras {
        assert_eq!((ra.src, ra.dst, ra.hop_limit), (ll(), ALL_NODES, 255));
        assert_eq!(ra.eth_dst, MacAddr([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(ra.router_lifetime, 1800);
        assert_eq!(ra.slla, Some(MAC));
        assert_eq!(ra.mtu, Some(1500));
        assert_eq!(
            ra.prefixes,
            [PrefixInfo {
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                valid_lifetime: 5400,
                preferred_lifetime: 2700,
                prefix: ip("fd00:1::")
            }]
        );
    }
    for w in ras.windows(2).take(3) {
        assert!(w[1].at - w[0].at <= Duration::from_secs(16) + Duration::from_millis(100));
    }
    assert_eq!(r.counter(|s| s.ra_sent.get()), ras.len() as u64);
    let netstat = softnet_core::stats::format_netstat_s(&r.stack.stats);
    assert!(netstat.contains(&format!("\t{} router advertisements sent\n", ras.len())), "{netstat}");
    assert!(netstat.contains("\t0 router solicitations received\n"), "{netstat}");
    assert!(
        netstat.contains(&format!("\tOutput packet histogram:\n\t\trouter advertisement: {}\n", ras.len())),
        "{netstat}"
    );
    let show = r.stack.rad_show();
    assert!(show.starts_with("interface sn0 {\n\tdefault router yes\n\thop limit 0\n"), "{show}");
    assert!(show.contains("\tmtu 1500\n\tauto prefix {\n\t\tvalid lifetime 5400\n"), "{show}");
    assert!(
        show.contains(&format!("# sn0: advertising fd00:1::/64; {} sent, 0 solicitations heard; next in", ras.len()))
    );
}

#[test]
fn a_solicitation_through_nd6_input_is_answered_unicast_within_max_ra_delay_time() {
    let r = Rig::new();
    r.stack.set_up("sn0", true).unwrap();
    r.run_for(Duration::from_secs(3));
    r.stack.set_router_adv("sn0", Some(RaConfig::default())).unwrap();
    r.run_for(Duration::from_secs(2));
    r.cap.take_ras();
    let host = ip("fe80::9");
    let t = r.clock.now();
    r.solicit(host, Some(HOST));
    assert_eq!(r.counter(|s| s.rs_received.get()), 1);
    r.run_for(MAX_RA_DELAY_TIME + Duration::from_millis(200));
    let ras = r.cap.take_ras();
    assert_eq!(ras.len(), 1, "{ras:?}");
    assert_eq!((ras[0].dst, ras[0].eth_dst), (host, HOST));
    assert!(ras[0].at - t <= MAX_RA_DELAY_TIME + Duration::from_millis(100));
    // The neighbor cache learned the host (RFC 4861 §6.2.6).
    assert!(!r.stack.nd6.entry(host, None).is_empty());
    // From :: : to all-nodes, at least 3 s after the last multicast one.
    r.solicit(Ipv6Addr::UNSPECIFIED, None);
    r.run_for(Duration::from_secs(4));
    let ras = r.cap.take_ras();
    assert!(ras.iter().any(|ra| ra.dst == ALL_NODES), "{ras:?}");
    assert!(r.stack.rad_show().contains("2 solicitations heard"));
}

#[test]
fn a_solicitation_flood_fills_a_bounded_queue_and_is_counted() {
    let r = Rig::new();
    r.stack.set_up("sn0", true).unwrap();
    r.stack.set_router_adv("sn0", Some(RaConfig::default())).unwrap();
    r.run_for(Duration::from_secs(5));
    r.cap.take_ras();
    for k in 0..200u16 {
        r.solicit(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 2, k), Some(HOST));
    }
    assert_eq!(r.counter(|s| s.rs_received.get()), 200);
    assert_eq!(r.counter(|s| s.rs_dropped.get()), 200 - RS_QUEUE as u64);
    r.run_for(Duration::from_secs(4));
    let ras = r.cap.take_ras();
    assert!(ras.len() <= softnet_core::nd6::rtadv::MAX_PENDING_UNICAST + 2, "{}", ras.len());
}

#[test]
fn removing_the_configuration_or_destroying_the_interface_sends_router_lifetime_0() {
    let r = Rig::new();
    r.stack.set_up("sn0", true).unwrap();
    r.stack.set_router_adv("sn0", Some(RaConfig::default())).unwrap();
    r.run_for(Duration::from_secs(5));
    assert!(!r.cap.take_ras().is_empty());
    r.stack.set_router_adv("sn0", None).unwrap();
    let ras = r.cap.take_ras();
    assert_eq!(ras.len(), 1);
    assert_eq!((ras[0].router_lifetime, ras[0].dst, ras[0].prefixes.len()), (0, ALL_NODES, 0));
    r.run_for(Duration::from_secs(60));
    assert!(r.cap.take_ras().is_empty(), "stopped");
    assert_eq!(r.stack.rad_show(), "");

    r.stack.set_router_adv("sn0", Some(RaConfig::default())).unwrap();
    r.run_for(Duration::from_secs(2));
    assert!(!r.cap.take_ras().is_empty());
    r.stack.destroy_interface("sn0").unwrap();
    let ras = r.cap.take_ras();
    assert_eq!(ras.len(), 1);
    assert_eq!((ras[0].router_lifetime, ras[0].src), (0, ll()));
}

#[test]
fn a_bad_configuration_is_refused_and_the_running_one_stays() {
    let r = Rig::new();
    let good = RaConfig {
        auto_prefix: None,
        prefixes: vec![RaPrefix { prefix: ip("2001:db8::"), prefix_len: 64, conf: PrefixConf::default() }],
        ..RaConfig::default()
    };
    r.stack.set_router_adv("sn0", Some(good.clone())).unwrap();
    let bad = RaConfig { router_lifetime: 10, ..RaConfig::default() };
    let e = r.stack.set_router_adv("sn0", Some(bad)).unwrap_err();
    assert!(matches!(e, StackError::RouterAdv(_)));
    assert_eq!(
        e.to_string(),
        "sn0: router advertisements: router lifetime 10 out of range: 0 or 600-9000 seconds (max interval to 9000)"
    );
    assert_eq!(r.stack.router_adv("sn0"), Some(good));
    assert!(r.stack.set_router_adv("nope", None).is_err());
    let _ = CONTROL_SLOT;
}
