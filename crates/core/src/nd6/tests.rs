//! Neighbor cache behaviour, one test per behaviour, on the injected clock.
//! R is the router under test with fd00:1::1/64 and its link-local address
//! on sn0, fd00:2::1/64 on sn1; H is a host on sn0.

use super::*;
use crate::iface::{Dad6State, If6Addr, InterfaceConfig, InterfaceTable};
use crate::link::LinkQueue;
use crate::packet::PacketPool;
use softnet_wire::ndp::NaFlags;
use std::sync::Arc;

struct NullQueue;
impl LinkQueue for NullQueue {
    fn recv(&mut self, _: &mut PacketPool, _: &mut Vec<PacketBuf>, _: usize) -> usize {
        0
    }
    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        let n = frames.len();
        frames.drain(..).for_each(|p| pool.free(p));
        n
    }
}

const MAC1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const MAC2: MacAddr = MacAddr([2, 0, 0, 0, 2, 1]);
const HMAC: MacAddr = MacAddr([2, 0xaa, 0, 0, 0, 2]);
const OTHER_MAC: MacAddr = MacAddr([2, 0xbb, 0, 0, 0, 9]);
const T0: Instant = Instant::from_secs(1000);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}
fn a1() -> Ipv6Addr {
    ip("fd00:1::1")
}
fn h() -> Ipv6Addr {
    ip("fd00:1::2")
}
fn ll1() -> Ipv6Addr {
    ip("fe80::1")
}
fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
fn ms(s: u64) -> Duration {
    Duration::from_millis(s)
}
fn frame(tag: u8) -> PacketBuf {
    PacketBuf::from_slice(&[tag; 60])
}
fn na(router: bool, solicited: bool, override_: bool) -> NaFlags {
    NaFlags { router, solicited, override_ }
}

struct Rig {
    #[allow(dead_code)]
    ifaces: InterfaceTable,
    if1: Arc<Interface>,
    if2: Arc<Interface>,
    nd: Nd6Table,
    stats: Nd6Stats,
    out: Nd6Input,
    cache: Nd6WorkerCache,
}

impl Rig {
    fn with(cfg: Nd6Config) -> Rig {
        let ifaces = InterfaceTable::new();
        let mk = |name: &str, mac| {
            ifaces
                .create(InterfaceConfig { name: name.into(), mac, mtu: 1500, queues: vec![Box::new(NullQueue)] })
                .unwrap()
        };
        let if1 = mk("sn0", MAC1);
        let if2 = mk("sn1", MAC2);
        let ok = |s: &str, l| If6Addr { addr: ip(s), prefix_len: l, state: Dad6State::Preferred };
        if1.set_addrs6(vec![ok("fe80::1", 64), ok("fd00:1::1", 64)]);
        if2.set_addrs6(vec![ok("fe80::2", 64), ok("fd00:2::1", 64)]);
        // The middle of the random range: ReachableTime is 30 s exactly.
        let nd = Nd6Table::new(cfg, 1 << 31);
        for a in if1.inet6().addrs.iter() {
            nd.add_local(&if1, a.addr);
        }
        for a in if2.inet6().addrs.iter() {
            nd.add_local(&if2, a.addr);
        }
        Rig { ifaces, if1, if2, nd, stats: Nd6Stats::default(), out: Nd6Input::new(), cache: Nd6WorkerCache::new() }
    }
    fn new() -> Rig {
        Self::with(Nd6Config::default())
    }
    fn resolve(&mut self, now: Instant, dst: Ipv6Addr, tag: u8) -> Nd6Resolve {
        self.nd.resolve(now, &self.if1, dst, a1(), frame(tag), &mut self.cache, &self.stats)
    }
    fn na(&mut self, now: Instant, target: Ipv6Addr, flags: NaFlags, tlla: Option<MacAddr>) {
        let ifp = self.if1.clone();
        self.nd.na_input(now, &ifp, target, flags, tlla, &self.stats, &mut self.out);
    }
    fn ns(&mut self, now: Instant, src: Ipv6Addr, target: Ipv6Addr, slla: Option<MacAddr>) {
        let ifp = self.if1.clone();
        self.nd.ns_input(now, &ifp, src, target, slla, &self.stats, &mut self.out);
    }
    fn entry(&self, a: Ipv6Addr) -> NdEntry {
        self.nd.entry(a, Some(self.if1.index())).pop().unwrap_or_else(|| panic!("no entry for {a}"))
    }
    fn state(&self, a: Ipv6Addr) -> Option<NdState> {
        self.nd.entry(a, Some(self.if1.index())).pop().map(|e| e.state)
    }
    /// Makes H's entry REACHABLE at `now` (resolve, solicited NA).
    fn reachable_h(&mut self, now: Instant) {
        let _ = self.resolve(now, h(), 1);
        self.na(now, h(), na(false, true, true), Some(HMAC));
        assert_eq!(self.state(h()), Some(NdState::Reachable));
        self.out.clear();
    }
    fn timer(&self, now: Instant) -> Nd6Timer {
        self.nd.timer(now, &self.stats)
    }
}

fn tag(p: &PacketBuf) -> u8 {
    p.data()[0]
}

// ---- resolution and its timers ------------------------------------------------

#[test]
fn an_unknown_neighbor_holds_the_packet_and_sends_one_multicast_solicitation() {
    let mut r = Rig::new();
    let Nd6Resolve::Held { solicit: Some(ns), dropped: None } = r.resolve(T0, h(), 1) else {
        panic!("not held with a solicitation")
    };
    assert_eq!(ns, NsRequest { ifindex: r.if1.index(), target: h(), dest: NsDest::Multicast, src_hint: Some(a1()) });
    assert_eq!(ns.dst_ip(), ip("ff02::1:ff00:2"));
    assert_eq!(ns.dst_mac(), MacAddr([0x33, 0x33, 0xff, 0, 0, 2]));
    assert!(matches!(r.resolve(T0 + ms(10), h(), 2), Nd6Resolve::Held { solicit: None, dropped: None }));
    let e = r.entry(h());
    assert_eq!((e.state, e.held, e.asked, e.mac), (NdState::Incomplete, 2, 1, None));
    assert_eq!(e.expire, Some(T0 + secs(1)), "RETRANS_TIMER");
}

#[test]
fn incomplete_solicits_max_multicast_solicit_times_then_gives_up_with_its_packets() {
    let mut r = Rig::new();
    let _ = r.resolve(T0, h(), 1);
    let _ = r.resolve(T0, h(), 2);
    assert!(r.timer(T0 + ms(999)).solicits.is_empty(), "not before RETRANS_TIMER");
    for i in 1..=2 {
        let t = r.timer(T0 + secs(i));
        assert_eq!(t.solicits.len(), 1, "solicitation {}", i + 1);
        assert_eq!(t.solicits[0].dest, NsDest::Multicast);
        assert!(t.unreachable.is_empty());
    }
    assert_eq!(r.entry(h()).asked, 3);
    let t = r.timer(T0 + secs(3));
    assert!(t.solicits.is_empty());
    let given_up: Vec<_> = t.unreachable.iter().map(|(i, a, p)| (*i, *a, tag(p))).collect();
    assert_eq!(given_up, vec![(r.if1.index(), h(), 1), (r.if1.index(), h(), 2)], "ICMPv6 unreachable for each");
    assert_eq!(r.state(h()), None, "nd6_free");
    assert_eq!(r.stats.dropped_no_entry.get(), 2);
    assert_eq!(r.stats.timeouts.get(), 1);
    assert_eq!(r.nd.held_total(), 0);
    // The next packet starts over.
    assert!(matches!(r.resolve(T0 + secs(4), h(), 3), Nd6Resolve::Held { solicit: Some(_), .. }));
}

#[test]
fn a_solicited_advertisement_makes_it_reachable_and_releases_the_held_packets() {
    let mut r = Rig::new();
    let _ = r.resolve(T0, h(), 1);
    let _ = r.resolve(T0, h(), 2);
    r.na(T0 + ms(5), h(), na(false, true, true), Some(HMAC));
    let f: Vec<_> = r.out.flushed.iter().map(|(i, m, p)| (*i, *m, tag(p))).collect();
    assert_eq!(f, vec![(r.if1.index(), HMAC, 1), (r.if1.index(), HMAC, 2)]);
    let e = r.entry(h());
    assert_eq!((e.state, e.mac, e.asked, e.held), (NdState::Reachable, Some(HMAC), 0, 0));
    assert_eq!(e.expire, Some(T0 + ms(5) + secs(30)));
    assert_eq!(r.nd.held_total(), 0);
    assert!(matches!(r.resolve(T0 + ms(6), h(), 3), Nd6Resolve::Resolved(HMAC, _)));
}

#[test]
fn an_unsolicited_advertisement_makes_an_incomplete_entry_stale() {
    let mut r = Rig::new();
    let _ = r.resolve(T0, h(), 1);
    r.na(T0, h(), na(false, false, true), Some(HMAC));
    assert_eq!(r.state(h()), Some(NdState::Stale));
    assert_eq!(r.out.flushed.len(), 1, "held packets go to the address it gave");
    assert_eq!(r.entry(h()).expire, Some(T0 + secs(86400)), "nd6_gctimer");
}

#[test]
fn an_advertisement_without_a_link_layer_address_cannot_resolve() {
    let mut r = Rig::new();
    let _ = r.resolve(T0, h(), 1);
    r.na(T0, h(), na(false, true, true), None);
    assert_eq!(r.state(h()), Some(NdState::Incomplete));
    assert!(r.out.flushed.is_empty());
    assert_eq!(r.stats.dropped.get(), 1);
}

#[test]
fn an_advertisement_for_a_neighbor_without_an_entry_makes_none() {
    let mut r = Rig::new();
    r.na(T0, h(), na(false, false, true), Some(HMAC));
    assert_eq!(r.state(h()), None, "RFC 4861 7.2.5: silently discarded");
    assert_eq!(r.stats.dropped.get(), 1);
}

#[test]
fn reachable_time_is_randomized_between_half_and_one_and_a_half_times_the_base() {
    let base = secs(30);
    assert_eq!(compute_reachable_time(base, 0), secs(15));
    assert_eq!(compute_reachable_time(base, 1 << 31), secs(30));
    assert!(compute_reachable_time(base, u32::MAX) < secs(45));
    assert!(compute_reachable_time(base, u32::MAX) > secs(44));
    let nd = Nd6Table::new(Nd6Config::default(), 0);
    assert_eq!(nd.reachable_time(), secs(15));
    nd.set_reachable_random(u32::MAX / 4);
    assert!((nd.reachable_time().as_millis() as i64 - 22_500).abs() < 2, "{:?}", nd.reachable_time());
}

#[test]
fn reachable_becomes_stale_after_reachable_time_and_stale_is_collected_after_the_gc_timer() {
    let mut r = Rig::new();
    r.reachable_h(T0);
    let _ = r.timer(T0 + secs(29));
    assert_eq!(r.state(h()), Some(NdState::Reachable));
    let _ = r.timer(T0 + secs(30));
    assert_eq!(r.state(h()), Some(NdState::Stale));
    assert_eq!(r.entry(h()).mac, Some(HMAC), "a stale entry keeps its address");
    let _ = r.timer(T0 + secs(30) + secs(86399));
    assert_eq!(r.state(h()), Some(NdState::Stale));
    let _ = r.timer(T0 + secs(30) + secs(86400));
    assert_eq!(r.state(h()), None);
}

#[test]
fn using_a_stale_entry_sends_at_once_then_delay_probes_unicast_and_gives_up() {
    let mut r = Rig::new();
    r.reachable_h(T0);
    let _ = r.timer(T0 + secs(30));
    let t1 = T0 + secs(40);
    assert!(matches!(r.resolve(t1, h(), 9), Nd6Resolve::Resolved(HMAC, _)), "stale is used as is");
    let e = r.entry(h());
    assert_eq!((e.state, e.expire), (NdState::Delay, Some(t1 + secs(5))), "DELAY_FIRST_PROBE_TIME");
    assert!(r.timer(t1 + secs(4)).solicits.is_empty());
    let t = r.timer(t1 + secs(5));
    let probe = NsRequest { ifindex: r.if1.index(), target: h(), dest: NsDest::Unicast(HMAC), src_hint: Some(a1()) };
    assert_eq!(t.solicits, vec![probe]);
    assert_eq!(probe.dst_ip(), h());
    assert_eq!(probe.dst_mac(), HMAC);
    assert_eq!((r.entry(h()).state, r.entry(h()).asked), (NdState::Probe, 1));
    assert!(matches!(r.resolve(t1 + secs(5), h(), 10), Nd6Resolve::Resolved(HMAC, _)), "still used while probing");
    assert_eq!(r.timer(t1 + secs(6)).solicits, vec![probe]);
    assert_eq!(r.timer(t1 + secs(7)).solicits, vec![probe]);
    assert_eq!(r.entry(h()).asked, 3, "MAX_UNICAST_SOLICIT");
    let t = r.timer(t1 + secs(8));
    assert!(t.solicits.is_empty());
    assert_eq!(r.state(h()), None);
}

#[test]
fn a_solicited_advertisement_during_delay_or_probe_makes_it_reachable_without_more_probes() {
    for probing in [false, true] {
        let mut r = Rig::new();
        r.reachable_h(T0);
        let t1 = T0 + secs(31);
        let _ = r.resolve(t1, h(), 9);
        if probing {
            let _ = r.timer(t1 + secs(5));
            assert_eq!(r.state(h()), Some(NdState::Probe));
        }
        r.na(t1 + secs(6), h(), na(false, true, false), Some(HMAC));
        let e = r.entry(h());
        assert_eq!((e.state, e.asked), (NdState::Reachable, 0), "probing {probing}");
        assert!(r.timer(t1 + secs(7)).solicits.is_empty());
    }
}

#[test]
fn advertisements_to_a_resolved_entry_follow_rfc4861_appendix_c() {
    // (override, solicited, lladdr, state before) -> (state after, MAC after)
    let new = Some(OTHER_MAC);
    let same = Some(HMAC);
    use NdState::{Reachable as R, Stale as S};
    let cases = [
        (false, false, None, R, R, HMAC),
        (false, false, same, R, R, HMAC),
        (false, false, new, R, S, HMAC),
        (false, true, None, S, R, HMAC),
        (false, true, same, S, R, HMAC),
        (false, true, new, R, S, HMAC),
        (false, true, new, S, S, HMAC),
        (true, false, None, R, R, HMAC),
        (true, false, same, R, R, HMAC),
        (true, false, new, R, S, OTHER_MAC),
        (true, true, None, S, R, HMAC),
        (true, true, same, S, R, HMAC),
        (true, true, new, S, R, OTHER_MAC),
    ];
    for (i, (o, s, ll, before, after, mac)) in cases.into_iter().enumerate() {
        let mut r = Rig::new();
        r.reachable_h(T0);
        if before == S {
            let _ = r.timer(T0 + secs(30));
        }
        assert_eq!(r.state(h()), Some(before));
        r.na(T0 + secs(31), h(), na(false, s, o), ll);
        let e = r.entry(h());
        assert_eq!((e.state, e.mac), (after, Some(mac)), "case {i}: O={o} S={s} ll={ll:?} from {before:?}");
    }
}

#[test]
fn solicitations_and_other_messages_cache_the_sender_as_appendix_c_says() {
    let mut r = Rig::new();
    let ifp = r.if1.clone();
    let mut out = Nd6Input::new();
    let cache = |r: &Rig, out: &mut Nd6Input, ll, msg| r.nd.cache_lladdr(T0, &ifp, h(), ll, msg, &r.stats, out);
    // (6) new without lladdr: NOSTATE
    cache(&r, &mut out, None, NdMsg::Ns);
    assert_eq!(r.state(h()), Some(NdState::NoState));
    // (3) existing without lladdr, lladdr given: STALE
    cache(&r, &mut out, Some(HMAC), NdMsg::Ns);
    assert_eq!((r.entry(h()).state, r.entry(h()).mac), (NdState::Stale, Some(HMAC)));
    // (4) the same address: no change (a REACHABLE entry stays so)
    r.na(T0, h(), na(false, true, false), None);
    assert_eq!(r.state(h()), Some(NdState::Reachable));
    cache(&r, &mut out, Some(HMAC), NdMsg::Ns);
    assert_eq!(r.state(h()), Some(NdState::Reachable));
    // (2) no lladdr: no change
    cache(&r, &mut out, None, NdMsg::Ns);
    assert_eq!(r.state(h()), Some(NdState::Reachable));
    // (5) another address: recorded, STALE
    cache(&r, &mut out, Some(OTHER_MAC), NdMsg::Ns);
    assert_eq!((r.entry(h()).state, r.entry(h()).mac), (NdState::Stale, Some(OTHER_MAC)));
    // (7) new with lladdr: STALE
    let h2 = ip("fd00:1::3");
    r.nd.cache_lladdr(T0, &ifp, h2, Some(HMAC), NdMsg::Ns, &r.stats, &mut out);
    assert_eq!(r.state(h2), Some(NdState::Stale));
    // (3) with packets held: they go
    let h3 = ip("fd00:1::4");
    let _ = r.resolve(T0, h3, 7);
    r.nd.cache_lladdr(T0, &ifp, h3, Some(OTHER_MAC), NdMsg::Ns, &r.stats, &mut out);
    assert_eq!(r.state(h3), Some(NdState::Stale));
    assert_eq!(out.flushed.iter().map(|(_, m, p)| (*m, tag(p))).collect::<Vec<_>>(), vec![(OTHER_MAC, 7)]);
    // :: and multicast senders are never cached.
    r.nd.cache_lladdr(T0, &ifp, Ipv6Addr::UNSPECIFIED, Some(HMAC), NdMsg::Ns, &r.stats, &mut out);
    r.nd.cache_lladdr(T0, &ifp, ip("ff02::1"), Some(HMAC), NdMsg::Ns, &r.stats, &mut out);
    assert!(r.nd.entry(Ipv6Addr::UNSPECIFIED, None).is_empty() && r.nd.entry(ip("ff02::1"), None).is_empty());
}

#[test]
fn the_router_flag_follows_ra_rs_ns_redirect_and_advertisements() {
    let mut r = Rig::new();
    let ifp = r.if1.clone();
    let mut out = Nd6Input::new();
    let router = |r: &Rig| r.entry(h()).router;
    r.nd.cache_lladdr(T0, &ifp, h(), Some(HMAC), NdMsg::Ra, &r.stats, &mut out);
    assert!(router(&r), "RA with lladdr sets isrouter");
    r.nd.cache_lladdr(T0, &ifp, h(), Some(HMAC), NdMsg::Ns, &r.stats, &mut out);
    assert!(router(&r), "an NS to an existing entry leaves it");
    r.nd.cache_lladdr(T0, &ifp, h(), None, NdMsg::Rs, &r.stats, &mut out);
    assert!(!router(&r), "an RS clears it");
    r.nd.cache_lladdr(T0, &ifp, h(), None, NdMsg::Redirect { router: true }, &r.stats, &mut out);
    assert!(router(&r), "a redirect to a better router sets it");
    r.nd.cache_lladdr(T0, &ifp, h(), None, NdMsg::Redirect { router: false }, &r.stats, &mut out);
    assert!(router(&r), "an on-link redirect leaves an existing entry's flag");
    r.na(T0, h(), na(false, true, false), None);
    assert!(!router(&r), "an NA without R clears it");
    r.na(T0, h(), na(true, true, false), None);
    assert!(router(&r), "an NA with R sets it");
    let h2 = ip("fd00:1::3");
    r.nd.cache_lladdr(T0, &ifp, h2, None, NdMsg::Ra, &r.stats, &mut out);
    assert!(!r.entry(h2).router, "an RA without lladdr does not make a new entry a router (case 6)");
}

// ---- solicitations and advertisements for us ------------------------------

#[test]
fn a_solicitation_for_our_address_is_answered_and_its_sender_learned() {
    let mut r = Rig::new();
    r.ns(T0, h(), a1(), Some(HMAC));
    assert_eq!(
        r.out.advert,
        Some(NaReply {
            ifindex: r.if1.index(),
            dst: h(),
            dst_mac: Some(HMAC),
            target: a1(),
            flags: na(true, true, true),
            tlla: MAC1
        })
    );
    assert_eq!((r.entry(h()).state, r.entry(h()).mac), (NdState::Stale, Some(HMAC)));
    // For the link-local address, from a link-local sender, too.
    r.ns(T0, ip("fe80::99"), ll1(), Some(HMAC));
    assert_eq!(r.out.advert.map(|a| (a.dst, a.target)), Some((ip("fe80::99"), ll1())));
    assert_eq!(r.stats.ns_received.get(), 2);
}

#[test]
fn a_solicitation_without_a_source_link_layer_address_is_answered_through_the_cache() {
    let mut r = Rig::new();
    r.ns(T0, h(), a1(), None);
    let a = r.out.advert.expect("answered");
    assert_eq!(a.dst_mac, None, "the data path resolves the sender");
    assert_eq!(r.state(h()), Some(NdState::NoState));
}

#[test]
fn solicitations_we_do_not_answer() {
    let mut r = Rig::new();
    // For another host, for sn1's address on sn0, from a non-neighbor.
    for (src, target) in [(h(), ip("fd00:1::77")), (h(), ip("fd00:2::1")), (ip("fd00:9::2"), a1())] {
        r.ns(T0, src, target, Some(HMAC));
        assert_eq!(r.out.advert, None, "{src} -> {target}");
    }
    assert_eq!(r.state(ip("fd00:9::2")), None, "a non-neighbor is not learned");
    assert_eq!(r.stats.dropped.get(), 3);
    // From one of our own addresses: another node uses it.
    r.ns(T0, a1(), a1(), Some(OTHER_MAC));
    assert_eq!(r.out.advert, None);
    assert_eq!(r.stats.dup_addrs.get(), 1);
    // Our own, looped back.
    r.ns(T0, h(), a1(), Some(MAC1));
    assert_eq!(r.out.advert, None);
}

#[test]
fn a_dad_solicitation_for_our_address_is_defended_to_all_nodes_without_learning() {
    let mut r = Rig::new();
    r.ns(T0, Ipv6Addr::UNSPECIFIED, a1(), None);
    let a = r.out.advert.expect("defended");
    assert_eq!((a.dst, a.dst_mac), (ip("ff02::1"), Some(MacAddr([0x33, 0x33, 0, 0, 0, 1]))));
    assert_eq!(a.flags, na(true, false, true), "not solicited (RFC 4861 7.2.4)");
    assert!(r.out.dad.is_none());
    assert_eq!(r.nd.entries().iter().filter(|e| e.kind == NdEntryKind::Dynamic).count(), 0);
}

#[test]
fn messages_about_a_tentative_address_go_to_dad() {
    let mut r = Rig::new();
    let t = ip("fd00:1::5");
    let mut addrs = r.if1.inet6().addrs.clone();
    addrs.push(If6Addr::new(t, 64));
    r.if1.set_addrs6(addrs);
    r.ns(T0, Ipv6Addr::UNSPECIFIED, t, None);
    assert_eq!(r.out.dad, Some((r.if1.index(), t, dad::DadInput::Ns)));
    assert_eq!(r.out.advert, None, "a tentative address is not defended");
    r.ns(T0, h(), t, Some(HMAC));
    assert_eq!((r.out.dad, r.out.advert), (None, None), "RFC 4862 5.4.3: resolution for it is dropped");
    assert_eq!(r.state(h()), None);
    r.na(T0, t, na(false, false, true), Some(OTHER_MAC));
    assert_eq!(r.out.dad, Some((r.if1.index(), t, dad::DadInput::Na)));
    // An advertisement of an address in use is logged as a duplicate.
    r.na(T0, a1(), na(false, false, true), Some(OTHER_MAC));
    assert_eq!(r.out.dad, None);
    assert_eq!(r.stats.dup_addrs.get(), 1);
}

// ---- static and proxy entries ------------------------------------------------

#[test]
fn proxy_entries_are_answered_on_their_interface_with_their_address_and_no_override() {
    let mut r = Rig::new();
    let p = ip("fd00:1::50");
    let ifs = r.ifaces.load();
    assert_eq!(r.nd.add_static(T0, &ifs, p, None, OTHER_MAC, false, true), Ok(r.if1.index()));
    r.ns(T0, h(), p, Some(HMAC));
    let a = r.out.advert.expect("answered");
    assert_eq!((a.tlla, a.flags), (OTHER_MAC, na(true, true, false)));
    let ifp2 = r.if2.clone();
    r.nd.ns_input(T0, &ifp2, ip("fd00:2::2"), p, Some(HMAC), &r.stats, &mut r.out);
    assert_eq!(r.out.advert, None, "not on another interface");
    // A plain static entry is not answered for.
    let s = ip("fd00:1::51");
    r.nd.add_static(T0, &ifs, s, None, OTHER_MAC, false, false).unwrap();
    r.ns(T0, h(), s, Some(HMAC));
    assert_eq!(r.out.advert, None);
}

#[test]
fn static_entries_resolve_forever_and_the_wire_does_not_change_them() {
    let mut r = Rig::new();
    let ifs = r.ifaces.load();
    r.nd.add_static(T0, &ifs, h(), None, HMAC, false, false).unwrap();
    let e = r.entry(h());
    assert_eq!((e.state, e.kind, e.expire), (NdState::Reachable, NdEntryKind::Static, None));
    r.na(T0, h(), na(true, true, true), Some(OTHER_MAC));
    r.ns(T0, h(), a1(), Some(OTHER_MAC));
    let _ = r.timer(T0 + secs(10 * 86400));
    assert_eq!(r.entry(h()).mac, Some(HMAC));
    assert!(matches!(r.resolve(T0 + secs(10 * 86400), h(), 1), Nd6Resolve::Resolved(HMAC, _)));
    assert_eq!(r.state(h()), Some(NdState::Reachable), "no NUD for static entries");
}

#[test]
fn a_temp_static_entry_ends_after_twenty_minutes() {
    let r = Rig::new();
    let ifs = r.ifaces.load();
    r.nd.add_static(T0, &ifs, h(), None, HMAC, true, false).unwrap();
    assert_eq!(r.entry(h()).expire, Some(T0 + secs(1200)));
    let _ = r.timer(T0 + secs(1199));
    assert!(r.state(h()).is_some());
    let _ = r.timer(T0 + secs(1200));
    assert!(r.state(h()).is_none());
}

#[test]
fn ndp_s_refuses_what_ndp_refuses() {
    let r = Rig::new();
    let ifs = r.ifaces.load();
    let s = |a: &str, scope| r.nd.add_static(T0, &ifs, ip(a), scope, HMAC, false, false);
    assert_eq!(s("2001:db8::1", None), Err(NdError::NoRoute(ip("2001:db8::1"))));
    assert_eq!(s("fe80::9", None), Err(NdError::NoRoute(ip("fe80::9"))), "link-local needs its scope");
    assert_eq!(s("fe80::9", Some(r.if2.index())), Ok(r.if2.index()));
    assert_eq!(s("ff02::1", None), Err(NdError::CannotConfigure(ip("ff02::1"))));
    assert_eq!(s("::", None), Err(NdError::CannotConfigure(Ipv6Addr::UNSPECIFIED)));
    assert_eq!(s("fd00:1::1", None), Err(NdError::LocalAddress(a1())));
    assert_eq!(NdError::NoRoute(ip("2001:db8::1")).to_string(), "RTM_GET(2001:db8::1) failed");
}

#[test]
fn delete_spares_local_entries_and_clear_removes_only_learned_ones() {
    let mut r = Rig::new();
    let ifs = r.ifaces.load();
    r.reachable_h(T0);
    let _ = r.resolve(T0, ip("fd00:1::3"), 1);
    r.nd.add_static(T0, &ifs, ip("fd00:1::9"), None, HMAC, false, false).unwrap();
    assert_eq!(r.nd.delete(a1(), None), Ok(false));
    assert_eq!(r.nd.delete(ip("fd00:1::77"), None), Err(NdError::NotFound(ip("fd00:1::77"))));
    let gone: Vec<_> = r.nd.delete_dynamic().into_iter().map(|e| e.addr).collect();
    assert_eq!(gone, vec![h(), ip("fd00:1::3")]);
    assert_eq!(r.nd.held_total(), 0);
    // Their held packets go back to the pools, not to the allocator
    // (found by tests/e2e/test_churn.py's netstat -m on ARP's twin).
    assert!(!r.nd.take_released().is_empty(), "held packets handed back");
    assert!(r.nd.take_released().is_empty(), "once");
    assert_eq!(r.nd.delete(ip("fd00:1::9"), None), Ok(true));
    assert!(r.nd.entries().iter().all(|e| e.kind == NdEntryKind::Local));
    assert_eq!(r.nd.len(), 4, "the four local entries");
    assert_eq!(r.nd.remove_interface(r.if1.index()), 2);
    assert_eq!(r.nd.len(), 2);
}

// ---- limits ------------------------------------------------------------------

#[test]
fn hold_queues_keep_the_newest_per_entry_and_purge_when_all_are_full() {
    let mut r = Rig::with(Nd6Config { hold_per_entry: 2, hold_total: 3, ..Nd6Config::default() });
    let _ = r.resolve(T0, h(), 1);
    let _ = r.resolve(T0, h(), 2);
    let Nd6Resolve::Held { dropped: Some(old), .. } = r.resolve(T0, h(), 3) else { panic!("oldest not pushed out") };
    assert_eq!(tag(&old), 1);
    let h2 = ip("fd00:1::3");
    let _ = r.resolve(T0, h2, 4);
    assert_eq!(r.nd.held_total(), 3);
    // A fourth packet anywhere: that entry's queue is purged with it.
    let Nd6Resolve::Held { dropped: Some(p), .. } = r.resolve(T0, h2, 5) else { panic!("not dropped") };
    assert_eq!(tag(&p), 5);
    assert_eq!(r.cache.drain_dropped().map(|p| tag(&p)).collect::<Vec<_>>(), vec![4]);
    assert_eq!(r.nd.held_total(), 2);
    assert_eq!(r.stats.dropped_hold_full.get(), 3);
}

#[test]
fn a_full_table_refuses_new_entries_and_counts_them_but_keeps_its_own_addresses() {
    let mut r = Rig::with(Nd6Config { max_entries: 6, ..Nd6Config::default() });
    assert_eq!(r.nd.len(), 4);
    let _ = r.resolve(T0, ip("fd00:1::10"), 1);
    let _ = r.resolve(T0, ip("fd00:1::11"), 1);
    assert!(matches!(r.resolve(T0, ip("fd00:1::12"), 7), Nd6Resolve::Dropped(_)));
    assert_eq!(r.stats.cache_full.get(), 1);
    r.ns(T0, ip("fd00:1::13"), a1(), Some(HMAC));
    assert!(r.out.advert.is_some(), "answered, not learned");
    assert_eq!(r.state(ip("fd00:1::13")), None);
    assert_eq!(r.stats.cache_full.get(), 2);
    let ifs = r.ifaces.load();
    assert_eq!(r.nd.add_static(T0, &ifs, h(), None, HMAC, false, false), Err(NdError::Full(h())));
    r.nd.add_local(&r.if1, ip("fd00:1::1:1"));
    assert_eq!(r.nd.len(), 7);
    // Entries that go make room again.
    for i in 1..=3 {
        let _ = r.timer(T0 + secs(i));
    }
    assert_eq!(r.nd.len(), 5);
    assert!(matches!(r.resolve(T0 + secs(4), ip("fd00:1::12"), 7), Nd6Resolve::Held { .. }));
}

// ---- the worker cache ----------------------------------------------------------

#[test]
fn the_worker_cache_serves_reachable_entries_until_reachable_time_then_nud_starts() {
    let mut r = Rig::new();
    r.reachable_h(T0);
    assert!(matches!(r.resolve(T0 + secs(1), h(), 1), Nd6Resolve::Resolved(HMAC, _)));
    // Served from the cache: the table's entry is not touched even when
    // it is gone behind the cache's back without a generation change.
    let g = r.nd.generation();
    assert_eq!(r.cache.lookup(g, T0 + secs(2), r.if1.index(), h()), Some(HMAC));
    assert_eq!(r.cache.lookup(g, T0 + secs(30), r.if1.index(), h()), None, "valid until ReachableTime");
    // Past it, the slow path finds it stale (the timer has not run) and
    // starts NUD.
    assert!(matches!(r.resolve(T0 + secs(31), h(), 2), Nd6Resolve::Resolved(HMAC, _)));
    assert_eq!(r.state(h()), Some(NdState::Delay));
}

#[test]
fn a_changed_link_layer_address_reaches_every_worker_cache_at_once() {
    let mut r = Rig::new();
    r.reachable_h(T0);
    assert!(matches!(r.resolve(T0 + secs(1), h(), 1), Nd6Resolve::Resolved(HMAC, _)));
    r.na(T0 + secs(2), h(), na(false, false, true), Some(OTHER_MAC));
    assert!(matches!(r.resolve(T0 + secs(2), h(), 2), Nd6Resolve::Resolved(OTHER_MAC, _)));
    // A deleted entry is not served either.
    r.nd.delete(h(), None).unwrap();
    assert!(matches!(r.resolve(T0 + secs(3), h(), 3), Nd6Resolve::Held { .. }));
}

#[test]
fn link_local_neighbors_are_per_interface() {
    let mut r = Rig::new();
    let n = ip("fe80::99");
    let _ = r.resolve(T0, n, 1);
    let ifp2 = r.if2.clone();
    let res = r.nd.resolve(T0, &ifp2, n, ip("fe80::2"), frame(2), &mut r.cache, &r.stats);
    assert!(matches!(res, Nd6Resolve::Held { solicit: Some(_), .. }), "a second entry on sn1");
    r.na(T0, n, na(false, true, true), Some(HMAC));
    assert_eq!(r.nd.entry(n, Some(r.if1.index()))[0].state, NdState::Reachable);
    assert_eq!(r.nd.entry(n, Some(r.if2.index()))[0].state, NdState::Incomplete);
}

// ---- ndp -an ---------------------------------------------------------------------

#[test]
fn ndp_an_prints_as_openbsd_ndp() {
    let mut r = Rig::new();
    r.reachable_h(T0);
    let _ = r.resolve(T0, ip("fd00:1::3"), 1);
    let ifs = r.ifaces.load();
    r.nd.add_static(T0, &ifs, ip("fd00:1::50"), None, OTHER_MAC, false, true).unwrap();
    let ifp = r.if1.clone();
    r.nd.cache_lladdr(T0, &ifp, ip("fe80::99"), Some(HMAC), NdMsg::Ra, &r.stats, &mut r.out);
    let names = |i: IfIndex| ifs.get(i).map(|x| x.name().to_string());
    let text = format_ndp_an(&r.nd.entries(), names, T0 + secs(10));
    let want = "\
Neighbor                             Linklayer Address   Netif Expire    S Flags
fd00:1::1                            02:00:00:00:01:01     sn0 permanent R l
fd00:1::2                            02:aa:00:00:00:02     sn0 20s       R 
fd00:1::3                            (incomplete)          sn0 expired   I  1
fd00:1::50                           02:bb:00:00:00:09     sn0 permanent R p
fd00:2::1                            02:00:00:00:02:01     sn1 permanent R l
fe80::1%sn0                          02:00:00:00:01:01     sn0 permanent R l
fe80::2%sn1                          02:00:00:00:02:01     sn1 permanent R l
fe80::99%sn0                         02:aa:00:00:00:02     sn0 23h59m50s S R
";
    assert_eq!(text, want, "\n{text}");
}

// ---- icmp6_input's NDP dispatch ------------------------------------------------

#[test]
fn ndp_messages_are_validated_counted_and_dispatched() {
    use softnet_wire::ndp::{NdpInvalid, NdpOption, NdpRepr};
    let mut r = Rig::new();
    let ifp = r.if1.clone();
    let mut opt = [0u8; 8];
    NdpOption::SourceLinkAddr(HMAC).emit(&mut opt);
    let ns = NdpRepr::NeighborSolicit { target: a1(), options: &opt };
    let input = |r: &mut Rig, src, dst, hl, m: &NdpRepr<'_>, fwd| {
        r.nd.input(T0, &ifp, src, dst, hl, m, fwd, &r.stats, &mut r.out)
    };
    // Hop limit 254: not from this link.
    assert_eq!(input(&mut r, h(), ip("ff02::1:ff00:1"), 254, &ns, true), Err(NdpInvalid::HopLimit));
    assert_eq!((r.stats.bad_hop_limit.get(), r.stats.ns_received.get()), (1, 0));
    assert!(r.out.advert.is_none() && r.state(h()).is_none());
    // A DAD solicitation must not carry a source link-layer address.
    let e = input(&mut r, Ipv6Addr::UNSPECIFIED, ip("ff02::1:ff00:1"), 255, &ns, true);
    assert_eq!(e, Err(NdpInvalid::UnspecifiedSourceWithLladdr));
    assert_eq!(r.stats.invalid.get(), 1);
    // A link-layer option of the wrong length.
    let bad = [1u8, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let e = input(&mut r, h(), a1(), 255, &NdpRepr::NeighborSolicit { target: a1(), options: &bad }, true);
    assert_eq!(e, Err(NdpInvalid::BadLladdr));
    // A good one is answered.
    assert_eq!(input(&mut r, h(), ip("ff02::1:ff00:1"), 255, &ns, true), Ok(()));
    assert_eq!(r.out.advert.map(|a| a.target), Some(a1()));
    assert_eq!(r.state(h()), Some(NdState::Stale));
    // An advertisement.
    let mut topt = [0u8; 8];
    NdpOption::TargetLinkAddr(OTHER_MAC).emit(&mut topt);
    let adv = NdpRepr::NeighborAdvert { flags: na(true, false, true), target: h(), options: &topt };
    assert_eq!(input(&mut r, h(), ip("ff02::1"), 255, &adv, true), Ok(()));
    assert_eq!((r.entry(h()).mac, r.entry(h()).router), (Some(OTHER_MAC), true));
    // A router solicitation from a host clears the flag.
    let rs = NdpRepr::RouterSolicit { options: &opt };
    assert_eq!(input(&mut r, h(), ip("ff02::2"), 255, &rs, true), Ok(()));
    assert!(!r.entry(h()).router);
    assert_eq!(r.entry(h()).mac, Some(HMAC));
    // A redirect: ignored while forwarding, cached otherwise.
    let n = ip("fe80::77");
    let rd = NdpRepr::Redirect { target: n, dest: ip("fd00:9::1"), options: &topt };
    assert_eq!(input(&mut r, ip("fe80::1:1"), a1(), 255, &rd, true), Ok(()));
    assert_eq!((r.stats.redirects_ignored.get(), r.state(n)), (1, None));
    assert_eq!(input(&mut r, ip("fe80::1:1"), a1(), 255, &rd, false), Ok(()));
    assert!(r.entry(n).router, "a redirect to a better router");
    assert_eq!(r.entry(n).mac, Some(OTHER_MAC));
}
