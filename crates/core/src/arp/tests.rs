//! ARP behaviour, one test per behaviour. R is the router under test; A1 is
//! its address on the receiving interface sn0, A2 its address on sn1.

use super::*;
use crate::iface::{IfAddr, InterfaceConfig, InterfaceTable};
use crate::link::LinkQueue;
use crate::packet::PacketPool;
use std::io;
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

const A1: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const A2: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
const MAC1: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const MAC2: MacAddr = MacAddr([2, 0, 0, 0, 2, 1]);
/// A host H on sn0's network.
const H: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const HMAC: MacAddr = MacAddr([2, 0xaa, 0, 0, 0, 2]);
const OTHER_MAC: MacAddr = MacAddr([2, 0xbb, 0, 0, 0, 9]);
/// A host on sn1's network.
const H2: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const H2MAC: MacAddr = MacAddr([2, 0xcc, 0, 0, 0, 2]);
const T0: Instant = Instant::from_secs(1000);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

struct Rig {
    ifaces: InterfaceTable,
    if1: Arc<Interface>,
    if2: Arc<Interface>,
    arp: ArpTable,
    stats: ArpStats,
    out: ArpInput,
    cache: ArpWorkerCache,
}

impl Rig {
    fn new() -> Rig {
        let ifaces = InterfaceTable::new();
        let mk = |name: &str, mac| {
            ifaces
                .create(InterfaceConfig { name: name.into(), mac, mtu: 1500, queues: vec![Box::new(NullQueue)] })
                .unwrap()
        };
        let if1 = mk("sn0", MAC1);
        let if2 = mk("sn1", MAC2);
        if1.set_addrs(vec![IfAddr::new(A1, 24)]);
        if2.set_addrs(vec![IfAddr::new(A2, 24)]);
        let arp = ArpTable::new(ArpConfig::default());
        arp.add_local(&if1, A1);
        arp.add_local(&if2, A2);
        Rig { ifaces, if1, if2, arp, stats: ArpStats::default(), out: ArpInput::new(), cache: ArpWorkerCache::new() }
    }

    fn input_on(&mut self, now: Instant, ifp: &Arc<Interface>, m: ArpRepr) {
        let ifs = self.ifaces.load();
        self.arp.input(now, &ifs, ifp, &m, &self.stats, &mut self.out);
    }

    fn input(&mut self, m: ArpRepr) {
        let ifp = self.if1.clone();
        self.input_on(T0, &ifp, m);
    }

    fn resolve(&mut self, now: Instant, ip: Ipv4Addr, tag: u8) -> ArpResolve {
        self.arp.resolve(now, &self.if1, ip, frame(tag), &mut self.cache, &self.stats)
    }

    fn add_static(&self, ip: Ipv4Addr, mac: MacAddr, kind: ArpStaticKind, publish: bool) -> Result<IfIndex, ArpError> {
        self.arp.add_static(T0, &self.ifaces.load(), ip, mac, kind, publish)
    }
}

fn frame(tag: u8) -> PacketBuf {
    PacketBuf::from_slice(&[tag; 60])
}

fn req(sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> ArpRepr {
    ArpRepr {
        operation: ArpOperation::Request,
        sender_hw: sha,
        sender_ip: spa,
        target_hw: MacAddr::ZERO,
        target_ip: tpa,
    }
}

fn reply(sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) -> ArpRepr {
    ArpRepr { operation: ArpOperation::Reply, sender_hw: sha, sender_ip: spa, target_hw: tha, target_ip: tpa }
}

#[derive(Clone, Default)]
struct Capture(Arc<parking_lot::Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with tracing captured; returns its value and the log text.
fn logged<R>(f: impl FnOnce() -> R) -> (R, String) {
    let cap = Capture::default();
    let w = cap.clone();
    let sub = tracing_subscriber::fmt().with_writer(move || w.clone()).with_ansi(false).without_time().finish();
    let r = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8(cap.0.lock().clone()).unwrap();
    (r, text)
}

fn entry(r: &Rig, ip: Ipv4Addr) -> ArpEntry {
    r.arp.entry(ip).unwrap_or_else(|| panic!("no entry for {ip}"))
}

// ---- input: the fourteen behaviours ----------------------------------------

#[test]
fn request_for_own_address_is_answered_and_sender_learned() {
    let mut r = Rig::new();
    r.input(req(HMAC, H, A1));
    assert_eq!(
        r.out.reply,
        Some(ArpRepr { operation: ArpOperation::Reply, sender_hw: MAC1, sender_ip: A1, target_hw: HMAC, target_ip: H })
    );
    let e = entry(&r, H);
    assert_eq!((e.mac, e.kind, e.ifindex), (Some(HMAC), ArpEntryKind::Dynamic, r.if1.index()));
    assert_eq!(e.expire, Some(T0 + secs(20 * 60)));
    assert_eq!((r.stats.received.get(), r.stats.requests_received.get()), (1, 1));
}

#[test]
fn request_with_multicast_sender_is_answered_and_overwrites_entry_with_log() {
    let mut r = Rig::new();
    r.input(req(HMAC, H, A1));
    let mcast = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]);
    let (_, log) = logged(|| r.input(req(mcast, H, A1)));
    assert!(r.out.reply.is_some_and(|x| x.target_hw == mcast && x.sender_ip == A1));
    assert_eq!(entry(&r, H).mac, Some(mcast));
    assert!(log.contains(&format!("arp info overwritten for {H} by {mcast} on sn0")), "{log}");
}

#[test]
fn probe_for_own_address_is_defended_and_nothing_learned() {
    let mut r = Rig::new();
    let before = r.arp.entries();
    r.input(req(HMAC, Ipv4Addr::UNSPECIFIED, A1));
    assert_eq!(
        r.out.reply,
        Some(ArpRepr {
            operation: ArpOperation::Reply,
            sender_hw: MAC1,
            sender_ip: A1,
            target_hw: HMAC,
            target_ip: Ipv4Addr::UNSPECIFIED
        })
    );
    assert_eq!(r.arp.entries(), before);
}

#[test]
fn request_with_broadcast_sender_is_rejected_and_logged() {
    let mut r = Rig::new();
    let (_, log) = logged(|| r.input(req(MacAddr::BROADCAST, H, A1)));
    assert!(r.out.reply.is_none());
    assert!(r.arp.entry(H).is_none());
    assert!(log.contains(&format!("arp: ether address is broadcast for IP address {H}!")), "{log}");
}

#[test]
fn announcement_of_own_address_is_defended_and_logged_as_duplicate() {
    let mut r = Rig::new();
    let (_, log) = logged(|| r.input(req(OTHER_MAC, A1, A1)));
    assert_eq!(
        r.out.reply,
        Some(ArpRepr {
            operation: ArpOperation::Reply,
            sender_hw: MAC1,
            sender_ip: A1,
            target_hw: OTHER_MAC,
            target_ip: A1
        })
    );
    assert!(log.contains(&format!("duplicate IP address {A1} sent from ethernet address {OTHER_MAC}")), "{log}");
    let e = entry(&r, A1);
    assert_eq!((e.kind, e.mac), (ArpEntryKind::Local, Some(MAC1)));
    assert_eq!(r.stats.dup_ips.get(), 1);
}

#[test]
fn gratuitous_reply_claiming_own_address_is_logged_not_answered() {
    let mut r = Rig::new();
    let (_, log) = logged(|| r.input(reply(OTHER_MAC, A1, MacAddr::BROADCAST, A1)));
    assert!(r.out.reply.is_none());
    assert!(log.contains(&format!("duplicate IP address {A1} sent from ethernet address {OTHER_MAC}")), "{log}");
    let e = entry(&r, A1);
    assert_eq!((e.kind, e.mac), (ArpEntryKind::Local, Some(MAC1)));
}

#[test]
fn request_claiming_permanent_entry_is_refused_and_logged() {
    let mut r = Rig::new();
    r.add_static(H, HMAC, ArpStaticKind::Permanent, false).unwrap();
    let before = entry(&r, H);
    let (_, log) = logged(|| r.input(req(OTHER_MAC, H, A1)));
    assert!(r.out.reply.is_none());
    assert!(log.contains(&format!("arp: attempt to overwrite permanent entry for {H} by {OTHER_MAC} on sn0")), "{log}");
    assert_eq!(entry(&r, H), before);
}

#[test]
fn request_claiming_address_of_another_interface_is_refused_as_permanent() {
    let mut r = Rig::new();
    let before = entry(&r, A2);
    let (_, log) = logged(|| r.input(req(OTHER_MAC, A2, A1)));
    assert!(r.out.reply.is_none());
    assert!(
        log.contains(&format!("arp: attempt to overwrite permanent entry for {A2} by {OTHER_MAC} on sn0")),
        "{log}"
    );
    assert_eq!(entry(&r, A2), before);
}

#[test]
fn request_claiming_entry_on_another_interface_is_refused_and_logged() {
    let mut r = Rig::new();
    r.add_static(H2, H2MAC, ArpStaticKind::Temp, false).unwrap();
    let before = entry(&r, H2);
    assert_eq!(before.ifindex, r.if2.index());
    let (_, log) = logged(|| r.input(req(OTHER_MAC, H2, A1)));
    assert!(r.out.reply.is_none());
    assert!(log.contains(&format!("arp: attempt to overwrite entry for {H2} on sn1 by {OTHER_MAC} on sn0")), "{log}");
    assert_eq!(entry(&r, H2), before);
}

#[test]
fn request_claiming_incomplete_entry_on_another_interface_is_refused_and_logged() {
    let mut r = Rig::new();
    let if2 = r.if2.clone();
    let res = r.arp.resolve(T0, &if2, H2, frame(1), &mut r.cache, &r.stats);
    assert!(matches!(res, ArpResolve::Held { request: Some(_), dropped: None }));
    let (_, log) = logged(|| r.input(req(OTHER_MAC, H2, A1)));
    assert!(r.out.reply.is_none());
    assert!(r.out.flushed.is_empty());
    assert!(log.contains(&format!("arp: attempt to add entry for {H2} on sn1 by {OTHER_MAC} on sn0")), "{log}");
    let e = entry(&r, H2);
    assert_eq!((e.kind, e.mac, e.held), (ArpEntryKind::Incomplete, None, 1));
}

#[test]
fn request_for_address_published_on_receiving_interface_is_answered() {
    let mut r = Rig::new();
    let p = Ipv4Addr::new(10, 0, 1, 50);
    let pmac = MacAddr([2, 0xdd, 0, 0, 0, 50]);
    r.add_static(p, pmac, ArpStaticKind::Static, true).unwrap();
    r.input(req(HMAC, H, p));
    assert_eq!(
        r.out.reply,
        Some(ArpRepr { operation: ArpOperation::Reply, sender_hw: pmac, sender_ip: p, target_hw: HMAC, target_ip: H })
    );
}

#[test]
fn request_for_static_unpublished_address_is_not_answered() {
    let mut r = Rig::new();
    let p = Ipv4Addr::new(10, 0, 1, 50);
    r.add_static(p, MacAddr([2, 0xdd, 0, 0, 0, 50]), ArpStaticKind::Static, false).unwrap();
    r.input(req(HMAC, H, p));
    assert!(r.out.reply.is_none());
    assert!(r.arp.entry(H).is_none(), "not the target: nothing learned");
}

#[test]
fn request_for_address_published_on_another_interface_is_not_answered() {
    let mut r = Rig::new();
    let p = Ipv4Addr::new(10, 0, 2, 50);
    r.add_static(p, MacAddr([2, 0xdd, 0, 0, 0, 50]), ArpStaticKind::Static, true).unwrap();
    r.input(req(HMAC, H, p));
    assert!(r.out.reply.is_none());
}

#[test]
fn request_for_address_of_another_interface_is_not_answered() {
    let mut r = Rig::new();
    r.input(req(HMAC, H, A2));
    assert!(r.out.reply.is_none(), "BSD answers only for the receiving interface's addresses");
    assert!(r.arp.entry(H).is_none());
}

// ---- input: more ---------------------------------------------------------------

#[test]
fn reply_updates_existing_entry_without_being_target() {
    let mut r = Rig::new();
    r.input(req(HMAC, H, A1));
    let later = T0 + secs(60);
    let ifp = r.if1.clone();
    r.input_on(later, &ifp, req(HMAC, H, Ipv4Addr::new(10, 0, 1, 77)));
    assert!(r.out.reply.is_none());
    assert_eq!(entry(&r, H).expire, Some(later + secs(1200)), "RFC 826 merge refreshes the entry");
}

#[test]
fn static_entry_overwritten_from_same_interface_becomes_dynamic() {
    let mut r = Rig::new();
    r.add_static(H, HMAC, ArpStaticKind::Static, false).unwrap();
    let (_, log) = logged(|| r.input(req(OTHER_MAC, H, A1)));
    assert!(log.contains("arp info overwritten for"), "{log}");
    let e = entry(&r, H);
    assert_eq!((e.kind, e.mac, e.expire), (ArpEntryKind::Dynamic, Some(OTHER_MAC), Some(T0 + secs(1200))));
}

#[test]
fn sender_on_another_interfaces_network_is_not_learned_and_not_answered() {
    let mut r = Rig::new();
    let (_, log) = logged(|| r.input(req(OTHER_MAC, H2, A1)));
    assert!(r.out.reply.is_none());
    assert!(r.arp.entry(H2).is_none());
    assert!(log.contains(&format!("arp: attempt to add entry for {H2} on sn1 by {OTHER_MAC} on sn0")), "{log}");
}

#[test]
fn own_frames_looped_back_are_ignored() {
    let mut r = Rig::new();
    r.input(req(MAC1, H, A1));
    assert!(r.out.reply.is_none());
    assert!(r.arp.entry(H).is_none());
}

// ---- resolution ----------------------------------------------------------------

#[test]
fn unresolved_next_hop_holds_packet_and_sends_request() {
    let mut r = Rig::new();
    match r.resolve(T0, H, 1) {
        ArpResolve::Held { request: Some(q), dropped: None } => {
            assert_eq!(q.ifindex, r.if1.index());
            assert_eq!(
                q.repr,
                ArpRepr {
                    operation: ArpOperation::Request,
                    sender_hw: MAC1,
                    sender_ip: A1,
                    target_hw: MacAddr::ZERO,
                    target_ip: H
                }
            );
            assert_eq!((q.sender_ip, q.target_ip), (A1, H), "derefs to the message");
        }
        x => panic!("{x:?}"),
    }
    let e = entry(&r, H);
    assert_eq!((e.kind, e.held), (ArpEntryKind::Incomplete, 1));
    assert_eq!(r.arp.held_total(), 1);
}

#[test]
fn reply_flushes_held_frames_in_order() {
    let mut r = Rig::new();
    for tag in 1..=3 {
        let _ = r.resolve(T0, H, tag);
    }
    r.input(reply(HMAC, H, MAC1, A1));
    assert!(r.out.reply.is_none());
    let got: Vec<(IfIndex, MacAddr, u8)> = r.out.flushed.drain(..).map(|(i, m, p)| (i, m, p.data()[0])).collect();
    let i1 = r.if1.index();
    assert_eq!(got, vec![(i1, HMAC, 1), (i1, HMAC, 2), (i1, HMAC, 3)]);
    assert_eq!(r.arp.held_total(), 0);
    assert!(matches!(r.resolve(T0, H, 4), ArpResolve::Resolved(m, _) if m == HMAC));
}

#[test]
fn hold_queue_keeps_ten_per_entry_dropping_the_oldest() {
    let mut r = Rig::new();
    for tag in 0..10 {
        assert!(matches!(r.resolve(T0, H, tag), ArpResolve::Held { dropped: None, .. }));
    }
    match r.resolve(T0, H, 10) {
        ArpResolve::Held { dropped: Some(p), .. } => assert_eq!(p.data()[0], 0, "the oldest goes"),
        x => panic!("{x:?}"),
    }
    assert_eq!(entry(&r, H).held, 10);
    assert_eq!(r.stats.dropped_hold_full.get(), 1);
    r.input(reply(HMAC, H, MAC1, A1));
    let tags: Vec<u8> = r.out.flushed.iter().map(|(_, _, p)| p.data()[0]).collect();
    assert_eq!(tags, (1..=10).collect::<Vec<u8>>());
}

#[test]
fn hold_total_is_bounded_at_one_hundred_purging_the_entry() {
    let mut r = Rig::new();
    for host in 0..10u8 {
        for tag in 0..10 {
            let ip = Ipv4Addr::new(10, 0, 1, 100 + host);
            assert!(matches!(r.resolve(T0, ip, tag), ArpResolve::Held { dropped: None, .. }));
        }
    }
    assert_eq!(r.arp.held_total(), 100);
    let ip = Ipv4Addr::new(10, 0, 1, 100);
    match r.resolve(T0, ip, 99) {
        ArpResolve::Held { dropped: Some(p), .. } => assert_eq!(p.data()[0], 99),
        x => panic!("{x:?}"),
    }
    assert_eq!(r.cache.drain_dropped().count(), 10, "the entry's queue is purged");
    assert_eq!(entry(&r, ip).held, 0);
    assert_eq!(r.arp.held_total(), 90);
    assert_eq!(r.stats.dropped_hold_full.get(), 11);
}

#[test]
fn requests_are_resent_at_most_once_a_second() {
    let mut r = Rig::new();
    let mut sent = 0;
    // Traffic every 100 ms for 3.5 s: requests at 0, 1, 2, 3 s.
    for i in 0..35u64 {
        if let ArpResolve::Held { request: Some(_), .. } = r.resolve(T0 + Duration::from_millis(100 * i), H, 0) {
            sent += 1;
        }
        r.cache.drain_dropped().for_each(drop);
    }
    assert_eq!(sent, 4);
}

#[test]
fn five_unanswered_requests_drop_held_and_reject_for_twenty_seconds() {
    let mut r = Rig::new();
    for s in 0..5 {
        match r.resolve(T0 + secs(s), H, s as u8) {
            ArpResolve::Held { request: Some(_), dropped: None } => {}
            x => panic!("at {s}s: {x:?}"),
        }
    }
    // The sixth second: give up.
    let t = T0 + secs(5);
    assert!(matches!(r.resolve(t, H, 5), ArpResolve::Rejected(p) if p.data()[0] == 5));
    let dropped: Vec<u8> = r.cache.drain_dropped().map(|p| p.data()[0]).collect();
    assert_eq!(dropped, vec![0, 1, 2, 3, 4]);
    assert_eq!(r.arp.held_total(), 0);
    assert_eq!(entry(&r, H).rejected_until, Some(t + secs(20)));
    // Rejected for 20 s: the caller sends ICMP host unreachable.
    assert!(matches!(r.resolve(t + secs(19), H, 6), ArpResolve::Rejected(_)));
    assert_eq!(r.stats.dropped_no_entry.get(), 7);
    // Then it is tried again.
    assert!(matches!(r.resolve(t + secs(20), H, 7), ArpResolve::Held { request: Some(_), .. }));
    r.input_on(t + secs(21), &r.if1.clone(), reply(HMAC, H, MAC1, A1));
    assert_eq!(r.out.flushed.len(), 1);
    assert!(matches!(r.resolve(t + secs(21), H, 8), ArpResolve::Resolved(m, _) if m == HMAC));
}

#[test]
fn resolved_entry_served_from_worker_cache_until_it_changes() {
    let mut r = Rig::new();
    r.input(req(HMAC, H, A1));
    assert!(matches!(r.resolve(T0, H, 0), ArpResolve::Resolved(m, _) if m == HMAC));
    // Served from the cache: the table is not consulted (prove it by
    // poisoning nothing but checking the slot).
    assert!(r.cache.slots.lookup(r.arp.generation.load(Ordering::Acquire), T0, r.if1.index(), H).is_some());
    // A new MAC (same interface) invalidates the caches.
    r.input(req(OTHER_MAC, H, A1));
    assert!(matches!(r.resolve(T0, H, 0), ArpResolve::Resolved(m, _) if m == OTHER_MAC));
    // Deleted: unresolved again.
    r.arp.delete(H).unwrap();
    assert!(matches!(r.resolve(T0, H, 0), ArpResolve::Held { request: Some(_), .. }));
}

#[test]
fn dynamic_entry_expires_after_twenty_minutes() {
    let mut r = Rig::new();
    r.input(req(HMAC, H, A1));
    assert!(matches!(r.resolve(T0, H, 0), ArpResolve::Resolved(..)));
    // Still there a second before.
    assert!(r.arp.expire(T0 + secs(1199), &r.stats).is_empty());
    assert!(r.arp.entry(H).is_some());
    assert!(r.arp.expire(T0 + secs(1200), &r.stats).is_empty());
    assert!(r.arp.entry(H).is_none());
    assert_eq!(r.stats.timeouts.get(), 1);
    // Even without the timer, an expired entry does not resolve.
    r.input(req(HMAC, H, A1));
    assert!(matches!(r.resolve(T0 + secs(1200), H, 0), ArpResolve::Held { request: Some(_), .. }));
}

#[test]
fn entry_in_use_is_refreshed_shortly_before_expiry() {
    let mut r = Rig::new();
    r.input(req(HMAC, H, A1));
    assert!(matches!(r.resolve(T0 + secs(1000), H, 0), ArpResolve::Resolved(..)));
    assert_eq!(r.cache.drain_requests().count(), 0);
    // 150 s before expiry: one refresh request, still resolved.
    assert!(matches!(r.resolve(T0 + secs(1050), H, 0), ArpResolve::Resolved(..)));
    let reqs: Vec<ArpRequest> = r.cache.drain_requests().collect();
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].target_ip, reqs[0].sender_ip), (H, A1));
    assert!(matches!(r.resolve(T0 + secs(1100), H, 0), ArpResolve::Resolved(..)));
    assert_eq!(r.cache.drain_requests().count(), 0, "once");
    // The answer renews it.
    r.input_on(T0 + secs(1101), &r.if1.clone(), reply(HMAC, H, MAC1, A1));
    assert_eq!(entry(&r, H).expire, Some(T0 + secs(1101 + 1200)));
}

#[test]
fn incomplete_entry_times_out_without_traffic() {
    let mut r = Rig::new();
    let _ = r.resolve(T0, H, 7);
    assert!(r.arp.expire(T0 + secs(19), &r.stats).is_empty());
    let dropped = r.arp.expire(T0 + secs(20), &r.stats);
    assert_eq!(dropped.len(), 1);
    assert!(r.arp.entry(H).is_none());
    assert_eq!(r.arp.held_total(), 0);
}

#[test]
fn interface_without_address_cannot_resolve() {
    let mut r = Rig::new();
    r.if1.set_addrs(vec![]);
    assert!(matches!(r.resolve(T0, H, 0), ArpResolve::Dropped(_)));
}

// ---- control ---------------------------------------------------------------------

#[test]
fn add_static_finds_interface_by_network_and_reports_errors() {
    let r = Rig::new();
    assert_eq!(r.add_static(H2, H2MAC, ArpStaticKind::Static, false), Ok(r.if2.index()));
    let far = Ipv4Addr::new(10, 9, 9, 9);
    let e = r.add_static(far, H2MAC, ArpStaticKind::Static, false).unwrap_err();
    assert_eq!(e.to_string(), "arp: 10.9.9.9: no route to host");
    assert_eq!(r.add_static(A1, H2MAC, ArpStaticKind::Static, false), Err(ArpError::LocalAddress(A1)));
    let e = r.add_static(Ipv4Addr::new(10, 0, 1, 255), H2MAC, ArpStaticKind::Static, false).unwrap_err();
    assert_eq!(e.to_string(), "cannot intuit interface index and type for 10.0.1.255");
}

#[test]
fn delete_spares_local_entries_and_reports_missing_ones() {
    let r = Rig::new();
    r.add_static(H, HMAC, ArpStaticKind::Permanent, false).unwrap();
    assert_eq!(r.arp.delete(H), Ok(true));
    assert_eq!(r.arp.delete(H).unwrap_err().to_string(), "arp: delete: cannot locate 10.0.1.2");
    assert_eq!(r.arp.delete(A1), Ok(false));
    assert!(r.arp.entry(A1).is_some());
}

#[test]
fn delete_all_removes_everything_but_local_entries() {
    let mut r = Rig::new();
    r.input(req(HMAC, H, A1));
    r.add_static(H2, H2MAC, ArpStaticKind::Permanent, true).unwrap();
    let _ = r.resolve(T0, Ipv4Addr::new(10, 0, 1, 3), 0);
    assert_eq!(r.arp.delete_all(), 3);
    let left: Vec<Ipv4Addr> = r.arp.entries().iter().map(|e| e.ip).collect();
    assert_eq!(left, vec![A1, A2]);
    assert_eq!(r.arp.held_total(), 0);
}

#[test]
fn remove_interface_forgets_its_entries() {
    let mut r = Rig::new();
    r.input(req(HMAC, H, A1));
    r.add_static(H2, H2MAC, ArpStaticKind::Static, false).unwrap();
    assert_eq!(r.arp.remove_interface(r.if1.index()), 2);
    let left: Vec<Ipv4Addr> = r.arp.entries().iter().map(|e| e.ip).collect();
    assert_eq!(left, vec![A2, H2]);
}

#[test]
fn remove_local_only_removes_that_interfaces_local_entry() {
    let r = Rig::new();
    r.arp.remove_local(&r.if2, A1);
    assert!(r.arp.entry(A1).is_some());
    r.arp.remove_local(&r.if1, A1);
    assert!(r.arp.entry(A1).is_none());
}

#[test]
fn gratuitous_request_announces_the_address() {
    let r = Rig::new();
    assert_eq!(
        r.arp.gratuitous(&r.if1, A1),
        ArpRepr {
            operation: ArpOperation::Request,
            sender_hw: MAC1,
            sender_ip: A1,
            target_hw: MacAddr::ZERO,
            target_ip: A1
        }
    );
}

#[test]
fn arp_an_prints_openbsd_columns() {
    let mut r = Rig::new();
    r.input(req(HMAC, H, A1));
    r.add_static(Ipv4Addr::new(10, 0, 1, 50), MacAddr([2, 0xdd, 0, 0, 0, 0x50]), ArpStaticKind::Static, true).unwrap();
    r.add_static(H2, H2MAC, ArpStaticKind::Permanent, false).unwrap();
    let _ = r.resolve(T0, Ipv4Addr::new(10, 0, 1, 3), 0);
    let ifs = r.ifaces.load();
    let text = format_arp_an(&r.arp.entries(), |i| ifs.get(i).map(|i| i.name().to_string()), T0 + secs(1));
    let want = "\
Host                                 Ethernet Address    Netif Expire    Flags
10.0.1.1                             02:00:00:00:01:01     sn0 permanent l
10.0.1.2                             02:aa:00:00:00:02     sn0 19m59s    \n\
10.0.1.3                             (incomplete)          sn0 expired   \n\
10.0.1.50                            02:dd:00:00:00:50     sn0 static    p
10.0.2.1                             02:00:00:00:02:01     sn1 permanent l
10.0.2.2                             02:cc:00:00:00:02     sn1 permanent \n";
    assert_eq!(text, want);
}

#[test]
fn sec2str_matches_arp8() {
    assert_eq!(sec2str(0), "0s");
    assert_eq!(sec2str(59), "59s");
    assert_eq!(sec2str(1199), "19m59s");
    assert_eq!(sec2str(3600), "1h0m0s");
    assert_eq!(sec2str(90061), "1d1h1m1s");
}

#[test]
fn stats_format_prints_the_arp_section() {
    let a = ArpStats::default();
    let b = ArpStats::default();
    a.requests_sent.add(2);
    b.requests_sent.inc();
    a.replies_sent.inc();
    b.dup_ips.inc();
    let s = format_arp_stats([&a, &b]);
    assert!(s.starts_with("arp:\n\t3 ARP requests sent\n\t1 ARP reply sent\n"), "{s}");
    assert!(s.contains("\t0 ARP replies received\n"), "{s}");
    assert!(s.contains("\t1 Duplicate IP seen\n"), "{s}");
    assert!(s.contains("\t0 ARP entries timed out\n"), "{s}");
}

#[test]
fn concurrent_resolve_and_input_keep_hold_accounting_exact() {
    let r = Rig::new();
    let ifs = r.ifaces.load();
    let hosts: Vec<Ipv4Addr> = (10..40u8).map(|h| Ipv4Addr::new(10, 0, 1, h)).collect();
    // Fewer rounds under Miri (its race detector on these four threads).
    let rounds = if cfg!(miri) { 100 } else { 2000 };
    std::thread::scope(|s| {
        for w in 0..3u64 {
            let (r, hosts) = (&r, &hosts);
            s.spawn(move || {
                let mut cache = ArpWorkerCache::new();
                let stats = ArpStats::default();
                for i in 0..rounds as u64 {
                    let ip = hosts[((i * 7 + w) % hosts.len() as u64) as usize];
                    let now = T0 + Duration::from_millis(i);
                    let _ = r.arp.resolve(now, &r.if1, ip, frame(0), &mut cache, &stats);
                    cache.drain_dropped().for_each(drop);
                }
            });
        }
        let (r, hosts, ifs) = (&r, &hosts, &ifs);
        s.spawn(move || {
            let mut out = ArpInput::new();
            let stats = ArpStats::default();
            for i in 0..rounds {
                let ip = hosts[i % hosts.len()];
                let mac = MacAddr([2, 0xee, 0, 0, 0, (i % 251) as u8]);
                r.arp.input(T0, ifs, &r.if1, &reply(mac, ip, MAC1, A1), &stats, &mut out);
                if i % (rounds / 4) == 0 {
                    r.arp.delete_all();
                }
            }
        });
    });
    let held: usize = r.arp.entries().iter().map(|e| e.held).sum();
    assert_eq!(r.arp.held_total(), held);
    assert!(held <= 100);
}
