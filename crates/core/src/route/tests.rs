use super::*;
use crate::iface::{prefix_mask, IfIndex};
use crate::rtmsg::{RouteMessage, RouteMonitor, RtmType};
use crossbeam::channel::Receiver;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Weak;
use std::time::Instant;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ifw(i: u32) -> WeakIf {
    WeakIf { index: IfIndex(i), generation: i * 10 }
}

fn tables() -> (RouteTables, Receiver<RouteMessage>) {
    let m = Arc::new(RouteMonitor::new());
    let rx = m.subscribe();
    (RouteTables::new(m), rx)
}

/// A table with interface 1 on 10.0.1.1/24 and interface 2 on 10.0.2.1/24.
fn two_nets() -> (RouteTables, Receiver<RouteMessage>) {
    let (t, rx) = tables();
    for (i, a) in [(1, "10.0.1.1"), (2, "10.0.2.1")] {
        let a = IfAddr::new(ip(a), 24);
        t.add(0, Route::connected(ifw(i), a)).unwrap();
        t.add(0, Route::local(ifw(i), a.addr)).unwrap();
        t.add(0, Route::broadcast(ifw(i), a).unwrap()).unwrap();
    }
    (t, rx)
}

fn dest_of(t: &RouteTables, dst: &str) -> Option<(Ipv4Addr, u8)> {
    let snap = t.snapshot(0).unwrap();
    snap.lookup(ip(dst)).map(|r| (r.dest, r.prefix_len))
}

#[test]
fn flags_print_in_openbsd_netstat_order() {
    let a = IfAddr::new(ip("10.0.1.1"), 24);
    assert_eq!(Route::connected(ifw(1), a).flags.to_string(), "UCn");
    assert_eq!(Route::local(ifw(1), a.addr).flags.to_string(), "UHLl");
    assert_eq!(Route::broadcast(ifw(1), a).unwrap().flags.to_string(), "UHb");
    assert_eq!(Route::via(ip("0.0.0.0"), 0, ip("10.0.1.254")).flags.to_string(), "UGS");
    let all = RouteFlags(FLAG_LETTERS.iter().fold(0, |acc, (f, _)| acc | f.0));
    assert_eq!(all.to_string(), "UGHRCLSBcPlbn");
    assert_eq!(format!("{:<6}|", RouteFlags::UP), "U     |");
}

#[test]
fn longest_prefix_wins_at_every_level() {
    let (t, _rx) = tables();
    for (d, l) in
        [("0.0.0.0", 0), ("10.0.0.0", 8), ("10.0.0.0", 12), ("10.0.1.0", 24), ("10.0.1.128", 25), ("10.0.1.200", 32)]
    {
        let mut r = Route::via(ip(d), l, ip("192.0.2.1"));
        r.ifp = ifw(1);
        t.add(0, r).unwrap();
    }
    assert_eq!(dest_of(&t, "192.168.0.1"), Some((ip("0.0.0.0"), 0)));
    assert_eq!(dest_of(&t, "10.200.0.1"), Some((ip("10.0.0.0"), 8)));
    assert_eq!(dest_of(&t, "10.15.0.1"), Some((ip("10.0.0.0"), 12)));
    assert_eq!(dest_of(&t, "10.0.1.5"), Some((ip("10.0.1.0"), 24)));
    assert_eq!(dest_of(&t, "10.0.1.129"), Some((ip("10.0.1.128"), 25)));
    assert_eq!(dest_of(&t, "10.0.1.200"), Some((ip("10.0.1.200"), 32)));
    assert_eq!(dest_of(&t, "10.0.1.201"), Some((ip("10.0.1.128"), 25)));
    assert_eq!(t.lookup(0, ip("10.0.1.5")).unwrap().prefix_len, 24);
}

#[test]
fn empty_table_finds_nothing() {
    let (t, _rx) = tables();
    assert!(dest_of(&t, "1.2.3.4").is_none());
    assert!(t.snapshot(0).unwrap().is_empty());
    assert!(t.snapshot(7).is_none(), "a table that was never created");
}

#[test]
fn adding_an_existing_route_fails_with_file_exists() {
    let (t, rx) = two_nets();
    let n = rx.try_iter().count();
    assert_eq!(n, 6);
    let e = t.add(0, Route::connected(ifw(1), IfAddr::new(ip("10.0.1.9"), 24))).unwrap_err();
    assert_eq!(e, RouteError::Exists);
    assert_eq!(e.to_string(), "route already exists");
    assert_eq!((e.errno(), e.strerror()), (17, "File exists"));
    assert_eq!(rx.try_iter().count(), 0, "a failed change announces nothing");
}

#[test]
fn gateway_route_takes_interface_and_source_from_connected_route() {
    let (t, _rx) = two_nets();
    let r = t.add(0, Route::via(ip("0.0.0.0"), 0, ip("10.0.2.254"))).unwrap();
    assert_eq!(r.ifp, ifw(2));
    assert_eq!(r.ifa, Some(ip("10.0.2.1")));
    assert_eq!(t.lookup(0, ip("8.8.8.8")).unwrap().gateway, Some(ip("10.0.2.254")));
}

#[test]
fn gateway_off_every_connected_network_is_unreachable() {
    let (t, _rx) = two_nets();
    let e = t.add(0, Route::via(ip("172.16.0.0"), 12, ip("192.0.2.1"))).unwrap_err();
    assert_eq!(e, RouteError::NetworkUnreachable);
    t.add(0, Route::via(ip("0.0.0.0"), 0, ip("10.0.2.254"))).unwrap();
    let e = t.add(0, Route::via(ip("172.16.0.0"), 12, ip("192.0.2.1"))).unwrap_err();
    assert_eq!(e, RouteError::NetworkUnreachable, "reachable only through another gateway");
    let mut bh = Route::via(ip("172.16.0.0"), 12, ip("127.0.0.1"));
    bh.flags.insert(RouteFlags::BLACKHOLE);
    assert!(t.add(0, bh).is_ok(), "discard routes need no reachable gateway");
}

#[test]
fn bad_prefix_length_is_rejected() {
    let (t, _rx) = tables();
    let mut r = Route::via(ip("10.0.0.0"), 33, ip("10.0.0.1"));
    r.ifp = ifw(1);
    assert_eq!(t.add(0, r).unwrap_err(), RouteError::BadPrefix(33));
    assert_eq!(t.delete(0, ip("10.0.0.0"), 40, None).unwrap_err(), RouteError::BadPrefix(40));
}

#[test]
fn host_bits_of_destination_are_cleared() {
    let (t, _rx) = two_nets();
    let r = t.add(0, Route::via(ip("192.168.7.99"), 16, ip("10.0.1.254"))).unwrap();
    assert_eq!(r.dest, ip("192.168.0.0"));
    assert!(t.get(0, ip("192.168.200.1"), 16).is_some());
}

#[test]
fn deleting_a_route_uncovers_the_less_specific_one() {
    let (t, rx) = two_nets();
    t.add(0, Route::via(ip("0.0.0.0"), 0, ip("10.0.2.254"))).unwrap();
    t.add(0, Route::via(ip("10.9.0.0"), 16, ip("10.0.1.254"))).unwrap();
    t.add(0, Route::via(ip("10.9.4.0"), 22, ip("10.0.1.253"))).unwrap();
    assert_eq!(dest_of(&t, "10.9.5.1"), Some((ip("10.9.4.0"), 22)));
    rx.try_iter().count();
    let gone = t.delete(0, ip("10.9.4.0"), 22, None).unwrap();
    assert_eq!(gone.gateway, Some(ip("10.0.1.253")));
    assert_eq!(dest_of(&t, "10.9.5.1"), Some((ip("10.9.0.0"), 16)));
    t.delete(0, ip("10.9.0.0"), 16, Some(ip("10.0.1.254"))).unwrap();
    assert_eq!(dest_of(&t, "10.9.5.1"), Some((ip("0.0.0.0"), 0)));
    let kinds: Vec<_> = rx.try_iter().map(|m| m.kind).collect();
    assert_eq!(kinds, vec![RtmType::Delete, RtmType::Delete]);
}

#[test]
fn deleting_a_missing_route_or_wrong_gateway_is_not_in_table() {
    let (t, rx) = two_nets();
    t.add(0, Route::via(ip("10.9.0.0"), 16, ip("10.0.1.254"))).unwrap();
    rx.try_iter().count();
    let e = t.delete(0, ip("10.8.0.0"), 16, None).unwrap_err();
    assert_eq!((e.to_string().as_str(), e.errno()), ("not in table", 3));
    assert_eq!(t.delete(0, ip("10.9.0.0"), 16, Some(ip("10.0.1.1"))).unwrap_err(), RouteError::NotInTable);
    assert!(t.get(0, ip("10.9.0.0"), 16).is_some());
    assert_eq!(rx.try_iter().count(), 0);
    // A connected route may be named by its interface address.
    assert!(t.delete(0, ip("10.0.1.0"), 24, Some(ip("10.0.1.1"))).is_ok());
}

#[test]
fn change_replaces_the_route_and_announces_one_change() {
    let (t, rx) = two_nets();
    t.add(0, Route::via(ip("10.9.0.0"), 16, ip("10.0.1.254"))).unwrap();
    t.add(0, Route::via(ip("10.9.9.0"), 24, ip("10.0.1.254"))).unwrap();
    rx.try_iter().count();
    let mut r = Route::via(ip("10.9.0.0"), 16, ip("10.0.2.254"));
    r.mtu = 1400;
    let new = t.change(0, r).unwrap();
    assert_eq!(new.ifp, ifw(2));
    let got = t.lookup(0, ip("10.9.1.1")).unwrap();
    assert!(Arc::ptr_eq(&got, &new));
    assert_eq!(got.mtu, 1400);
    assert_eq!(dest_of(&t, "10.9.9.9"), Some((ip("10.9.9.0"), 24)), "a more specific route stays");
    assert_eq!(t.routes(0).len(), 8);
    let msgs: Vec<_> = rx.try_iter().collect();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].kind, RtmType::Change);
    assert_eq!(t.change(0, Route::via(ip("10.10.0.0"), 16, ip("10.0.2.254"))).unwrap_err(), RouteError::NotInTable);
}

#[test]
fn every_change_emits_exactly_one_message_with_increasing_sequence() {
    let m = Arc::new(RouteMonitor::new());
    let rx1 = m.subscribe();
    let rx2 = m.subscribe();
    let t = RouteTables::new(m.clone());
    t.set_ifname_resolver(|w| Some(format!("sn{}", w.index)));
    let a = IfAddr::new(ip("10.0.1.1"), 24);
    t.add(0, Route::connected(ifw(1), a)).unwrap();
    t.add(0, Route::via(ip("0.0.0.0"), 0, ip("10.0.1.254"))).unwrap();
    t.change(0, Route::via(ip("0.0.0.0"), 0, ip("10.0.1.253"))).unwrap();
    let _ = t.add(0, Route::connected(ifw(1), a)); // fails: no message
    t.delete(0, ip("0.0.0.0"), 0, None).unwrap();
    t.batch(0, |b| {
        b.add(Route::local(ifw(1), a.addr)).unwrap();
        b.add(Route::broadcast(ifw(1), a).unwrap()).unwrap();
    });
    for rx in [&rx1, &rx2] {
        let msgs: Vec<_> = rx.try_iter().collect();
        let kinds: Vec<_> = msgs.iter().map(|m| m.kind).collect();
        use RtmType::*;
        assert_eq!(kinds, vec![Add, Add, Change, Delete, Add, Add]);
        assert!(msgs.windows(2).all(|w| w[0].seq < w[1].seq));
        let text = msgs[1].to_string();
        assert!(text.starts_with("RTM_ADD: Add Route: priority 8, table 0, if# 1, name sn1,"), "{text}");
        assert!(text.contains("flags:<UP,GATEWAY,DONE,STATIC>"), "{text}");
        assert!(text.ends_with(" 0.0.0.0 10.0.1.254 0.0.0.0 sn1 10.0.1.1"), "{text}");
    }
}

#[test]
fn batch_publishes_once_and_readers_see_all_or_nothing() {
    let (t, _rx) = two_nets();
    let before = t.snapshot(0).unwrap().version();
    let held = t.snapshot(0).unwrap();
    t.batch(0, |b| {
        for i in 0..50u32 {
            b.add(Route::via(Ipv4Addr::from(0xc0a8_0000 | (i << 8)), 24, ip("10.0.1.254"))).unwrap();
        }
        assert_eq!(b.lookup(ip("192.168.3.1")).unwrap().prefix_len, 24, "the batch sees its own changes");
        assert!(t.snapshot(0).unwrap().lookup(ip("192.168.3.1")).is_none(), "readers do not, yet");
    });
    let after = t.snapshot(0).unwrap();
    assert_eq!(after.version(), before + 1);
    assert_eq!(after.len(), 56);
    assert!(held.lookup(ip("192.168.3.1")).is_none(), "an old snapshot never changes");
    assert_eq!(held.len(), 6);
}

#[test]
fn old_snapshot_is_freed_by_the_control_thread_not_the_reader() {
    let (t, _rx) = two_nets();
    let r = t.add(0, Route::via(ip("10.9.0.0"), 16, ip("10.0.1.254"))).unwrap();
    let weak: Weak<Route> = Arc::downgrade(&r);
    drop(r);
    let reader = t.snapshot(0).unwrap();
    let snap: Weak<RouteSnapshot> = Arc::downgrade(&*reader);
    assert!(reader.lookup(ip("10.9.1.1")).is_some());
    t.delete(0, ip("10.9.0.0"), 16, None).unwrap();
    // Snapshots hold next hops, not routes: the route goes with the delete.
    assert!(weak.upgrade().is_none(), "freed by the delete on the control thread");
    assert_eq!(reader.lookup(ip("10.9.1.1")).unwrap().gateway, Some(ip("10.0.1.254")), "the old snapshot's next hop");
    assert_eq!(t.reap(), 1, "the reader still holds the old snapshot");
    drop(reader); // the worker lets go: this must not free anything
    assert!(snap.upgrade().is_some(), "still owned by the retired list");
    assert_eq!(t.reap(), 0);
    assert!(snap.upgrade().is_none(), "freed by reap on the control thread");
}

#[test]
fn delete_for_interface_removes_its_routes_in_all_tables_one_message_each() {
    let (t, rx) = two_nets();
    t.add(0, Route::via(ip("10.9.0.0"), 16, ip("10.0.1.254"))).unwrap();
    t.add(0, Route::via(ip("0.0.0.0"), 0, ip("10.0.2.254"))).unwrap();
    t.add(5, Route::connected(ifw(1), IfAddr::new(ip("10.0.1.1"), 24))).unwrap();
    rx.try_iter().count();
    assert_eq!(t.delete_for_interface(ifw(1)), 5);
    let msgs: Vec<_> = rx.try_iter().collect();
    assert_eq!(msgs.len(), 5);
    assert!(msgs.iter().all(|m| m.kind == RtmType::Delete));
    assert_eq!(msgs.iter().filter(|m| m.rtable == 5).count(), 1);
    assert!(t.routes(0).iter().all(|r| r.ifp == ifw(2)));
    assert!(t.routes(5).is_empty());
    assert!(t.lookup(0, ip("10.0.1.7")).unwrap().gateway.is_some(), "now via the default route");
    assert_eq!(t.delete_for_interface(WeakIf { index: IfIndex(2), generation: 99 }), 0, "another generation");
}

#[test]
fn routing_tables_are_separate() {
    let (t, _rx) = tables();
    t.add(3, Route::connected(ifw(1), IfAddr::new(ip("10.0.1.1"), 24))).unwrap();
    assert!(t.lookup(3, ip("10.0.1.5")).is_some());
    assert!(t.lookup(0, ip("10.0.1.5")).is_none());
    assert!(t.snapshot(2).is_none());
    assert_eq!(t.table_ids(), vec![0, 3]);
}

#[test]
fn routes_come_in_netstat_order() {
    let (t, _rx) = two_nets();
    t.add(0, Route::via(ip("0.0.0.0"), 0, ip("10.0.2.254"))).unwrap();
    t.add(0, Route::via(ip("10.0.0.0"), 8, ip("10.0.2.254"))).unwrap();
    let names: Vec<String> = t.routes(0).iter().map(|r| netname(r.dest, r.prefix_len, r.flags)).collect();
    assert_eq!(
        names,
        ["default", "10/8", "10.0.1/24", "10.0.1.1", "10.0.1.255", "10.0.2/24", "10.0.2.1", "10.0.2.255"]
    );
}

#[test]
fn netname_trims_octets_beyond_the_prefix() {
    let f = RouteFlags::UP;
    assert_eq!(netname(ip("0.0.0.0"), 0, f), "default");
    assert_eq!(netname(ip("10.0.0.0"), 8, f), "10/8");
    assert_eq!(netname(ip("172.16.0.0"), 12, f), "172.16/12");
    assert_eq!(netname(ip("10.0.0.0"), 24, f), "10.0.0/24");
    assert_eq!(netname(ip("10.0.1.128"), 25, f), "10.0.1.128/25");
    assert_eq!(netname(ip("10.0.1.1"), 32, f), "10.0.1.1/32");
    assert_eq!(netname(ip("10.0.1.1"), 32, f | RouteFlags::HOST), "10.0.1.1");
}

#[test]
fn netstat_rn_prints_like_openbsd_without_use_column() {
    let (t, _rx) = two_nets();
    let mut r = Route::via(ip("0.0.0.0"), 0, ip("10.0.2.254"));
    r.mtu = 1400;
    t.add(0, r).unwrap();
    let routes = t.routes(0);
    let held_elsewhere = routes[1].clone(); // someone else holds 10.0.1/24
    let out = format_netstat_rn(&routes, |w| Some(format!("sn-r{}", w.index)), 0);
    let expect = "\
Routing tables

Internet:
Destination        Gateway            Flags   Refs   Mtu  Prio Iface
default            10.0.2.254         UGS        0  1400     8 sn-r2
10.0.1/24          link#1             UCn        1     -     4 sn-r1
10.0.1.1           10.0.1.1           UHLl       0     -     1 sn-r1
10.0.1.255         10.0.1.1           UHb        0     -     1 sn-r1
10.0.2/24          link#2             UCn        0     -     4 sn-r2
10.0.2.1           10.0.2.1           UHLl       0     -     1 sn-r2
10.0.2.255         10.0.2.1           UHb        0     -     1 sn-r2
";
    assert_eq!(out, expect);
    drop(held_elsewhere);
    assert!(format_netstat_rn(&[], |_| None, 4).starts_with("Routing tables (rtable 4)\n\nInternet:\n"));
}

#[test]
fn deleting_every_route_leaves_an_empty_trie() {
    let (t, _rx) = two_nets();
    for i in 0..300u32 {
        let d = Ipv4Addr::from(0x0a00_0000 | (i.wrapping_mul(2_654_435_761) & 0x00ff_fff0));
        let _ = t.add(0, Route::via(d, 8 + (i % 25) as u8, ip("10.0.1.254")));
    }
    for r in t.routes(0) {
        t.delete(0, r.dest, r.prefix_len, None).unwrap();
    }
    let s = t.snapshot(0).unwrap();
    assert!(s.is_empty());
    assert_eq!(s.node_count(), 1, "emptied nodes are pruned");
    assert!(s.lookup(ip("10.0.1.1")).is_none());
}

#[test]
fn readers_on_other_threads_always_find_a_covering_route() {
    let (t, _rx) = two_nets();
    t.add(0, Route::via(ip("0.0.0.0"), 0, ip("10.0.2.254"))).unwrap();
    let t = Arc::new(t);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|k| {
            let (t, stop, progress) = (t.clone(), stop.clone(), progress.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut x = 0x1234_5678u32 ^ k;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let snap = t.snapshot(0).unwrap();
                    for _ in 0..64 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        let dst = Ipv4Addr::from(0xac10_0000 | (x & 0xffff));
                        let r = snap.lookup(dst).expect("default route is always there");
                        assert!(r.contains(dst));
                        n += 1;
                    }
                    progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                n
            })
        })
        .collect();
    // Smaller under Miri, which checks the snapshots' publication and
    // reaping (arc-swap's and ours) for data races on these threads.
    let (rounds, routes) = if cfg!(miri) { (2, 5) } else { (20u32, 50u32) };
    for _round in 0..rounds {
        for i in 0..routes {
            let d = Ipv4Addr::from(0xac10_0000 | (i << 8));
            t.add(0, Route::via(d, 24, ip("10.0.1.254"))).unwrap();
        }
        for i in 0..routes {
            t.delete(0, Ipv4Addr::from(0xac10_0000 | (i << 8)), 24, None).unwrap();
        }
    }
    // On a loaded machine the readers may not have run yet: let them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while progress.load(std::sync::atomic::Ordering::Relaxed) < 2 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let looked: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(looked > 0);
    assert_eq!(t.reap(), 0, "all retired snapshots freed once readers stop");
}

/// Naive longest-prefix match over a list, for checking the trie.
fn naive(routes: &BTreeMap<(u32, u8), u32>, dst: u32) -> Option<(u32, u8)> {
    routes.keys().filter(|(p, l)| dst & prefix_mask(*l) == *p).max_by_key(|(_, l)| *l).copied()
}

fn arb_prefix() -> impl Strategy<Value = (u32, u8)> {
    // Few distinct upper bits, so prefixes nest and collide a lot.
    (0u32..3, 0u32..3, 0u32..4, any::<u8>(), 0u8..=32).prop_map(|(a, b, c, d, l)| {
        let addr = (a << 30) | (b << 20) | (c << 12) | d as u32;
        (addr & prefix_mask(l), l)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn lookup_agrees_with_naive_longest_prefix_search(
        ops in proptest::collection::vec((any::<bool>(), arb_prefix()), 1..120),
        probes in proptest::collection::vec(any::<u32>(), 0..40),
    ) {
        let (t, _rx) = tables();
        let mut model: BTreeMap<(u32, u8), u32> = BTreeMap::new();
        let mut points = probes.clone();
        for (n, (insert, (p, l))) in ops.iter().enumerate() {
            let tag = n as u32;
            if *insert {
                let mut r = Route::via(Ipv4Addr::from(*p), *l, Ipv4Addr::from(tag));
                r.ifp = ifw(1);
                let res = t.add(0, r);
                prop_assert_eq!(res.is_ok(), !model.contains_key(&(*p, *l)));
                model.entry((*p, *l)).or_insert(tag);
            } else {
                let res = t.delete(0, Ipv4Addr::from(*p), *l, None);
                prop_assert_eq!(res.is_ok(), model.remove(&(*p, *l)).is_some());
            }
            let end = *p | !prefix_mask(*l);
            points.extend([*p, end, p.wrapping_sub(1), end.wrapping_add(1), *p ^ 0x80]);
            let snap = t.snapshot(0).unwrap();
            for &d in &points {
                let want = naive(&model, d);
                let got = snap.lookup(Ipv4Addr::from(d)).map(|r| (u32::from(r.dest), r.prefix_len));
                prop_assert_eq!(got, want, "dst {}", Ipv4Addr::from(d));
                if let (Some(r), Some(k)) = (snap.lookup(Ipv4Addr::from(d)), want) {
                    prop_assert_eq!(r.gateway, Some(Ipv4Addr::from(model[&k])));
                }
            }
        }
        prop_assert_eq!(t.snapshot(0).unwrap().len(), model.len());
    }
}

/// The routes a test expects: prefix → gateway.
type Model = BTreeMap<(u32, u8), u32>;

/// Every destination worth probing for `model`: each prefix's ends and
/// their neighbours.
fn probe_points(model: &Model, extra: &[u32]) -> Vec<u32> {
    let mut points = extra.to_vec();
    for &(p, l) in model.keys() {
        let end = p | !prefix_mask(l);
        points.extend([p, end, p.wrapping_sub(1), end.wrapping_add(1), p ^ 0x80]);
    }
    points
}

fn check_snapshot(snap: &RouteSnapshot, model: &Model, points: &[u32]) -> Result<(), TestCaseError> {
    for &d in points {
        let want = naive(model, d);
        let got = snap.lookup(Ipv4Addr::from(d));
        prop_assert_eq!(got.map(|r| (u32::from(r.dest), r.prefix_len)), want, "dst {}", Ipv4Addr::from(d));
        if let (Some(r), Some(k)) = (got, want) {
            prop_assert_eq!(r.gateway, Some(Ipv4Addr::from(model[&k])));
        }
    }
    prop_assert_eq!(snap.len(), model.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Adds and deletes in batches of random size (the route sync's way:
    /// one snapshot per batch, nodes copied once per batch), with a few
    /// gateways so that next hops are shared and leaves merge into runs;
    /// every snapshot is checked against the naive search when it is
    /// published and again, unchanged, after the batches that follow it,
    /// while a reader still holds it.
    #[test]
    fn batched_changes_agree_with_naive_search_and_spare_held_snapshots(
        batches in proptest::collection::vec(
            proptest::collection::vec((any::<bool>(), arb_prefix(), 1u32..4), 0..40), 1..12),
        probes in proptest::collection::vec(any::<u32>(), 0..20),
    ) {
        let (t, _rx) = tables();
        let mut model: BTreeMap<(u32, u8), u32> = BTreeMap::new();
        let mut held: Vec<(arc_swap::Guard<Arc<RouteSnapshot>>, Model)> = Vec::new();
        for ops in &batches {
            t.batch(0, |b| {
                for &(insert, (p, l), gw) in ops {
                    if insert {
                        let mut r = Route::via(Ipv4Addr::from(p), l, Ipv4Addr::from(gw));
                        r.ifp = ifw(1);
                        // Add or replace: a changed gateway is a new leaf.
                        b.set(r).unwrap();
                        model.insert((p, l), gw);
                    } else {
                        let res = b.delete(Ipv4Addr::from(p), l, None);
                        assert_eq!(res.is_ok(), model.remove(&(p, l)).is_some());
                    }
                }
            });
            check_snapshot(&t.snapshot(0).unwrap(), &model, &probe_points(&model, &probes))?;
            // Snapshots held across later batches do not change.
            for (snap, then) in &held {
                check_snapshot(snap, then, &probe_points(then, &probes))?;
            }
            held.push((t.snapshot(0).unwrap(), model.clone()));
            if held.len() > 3 {
                held.remove(0);
            }
        }
        drop(held);
        // Everything deleted in one batch: the trie is one empty root.
        t.batch(0, |b| {
            for &(p, l) in model.keys() {
                b.delete(Ipv4Addr::from(p), l, None).unwrap();
            }
        });
        let snap = t.snapshot(0).unwrap();
        prop_assert_eq!(snap.node_count(), 1);
        prop_assert!(snap.lookup(Ipv4Addr::new(0, 0, 0, 0)).is_none());
    }
}

/// A BGP-like mix of prefix lengths, deterministic.
fn bgp_like_prefixes(n: usize, seed: u64) -> Vec<(u32, u8)> {
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let v = next();
        let len = match v % 100 {
            0..=59 => 24,
            60..=84 => 17 + (v >> 8) % 7, // /17../23
            85..=94 => 8 + (v >> 8) % 9,  // /8../16
            _ => 25 + (v >> 8) % 8,       // /25../32
        } as u8;
        let addr = ((v >> 32) as u32) & prefix_mask(len);
        if seen.insert((addr, len)) {
            out.push((addr, len));
        }
    }
    out
}

fn load(t: &RouteTables, prefixes: &[(u32, u8)]) {
    for (i, (p, l)) in prefixes.iter().enumerate() {
        let mut r = Route::via(Ipv4Addr::from(*p), *l, Ipv4Addr::from(0x0a00_0000 | i as u32));
        r.ifp = ifw(1);
        t.add(0, r).unwrap();
    }
}

#[test]
fn loading_100k_routes_one_by_one_completes() {
    let (t, rx) = tables();
    drop(rx);
    let prefixes = bgp_like_prefixes(100_000, 0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    load(&t, &prefixes);
    let took = start.elapsed();
    let snap = t.snapshot(0).unwrap();
    println!(
        "loaded {} routes one by one (a publish each) in {:?}; {} trie nodes",
        snap.len(),
        took,
        snap.node_count()
    );
    assert_eq!(snap.len(), 100_000);
    assert_eq!(snap.version(), 100_000);
    assert_eq!(t.reap(), 0);
    let (p, l) = prefixes[77_777];
    assert_eq!(snap.lookup(Ipv4Addr::from(p)).map(|r| r.prefix_len >= l), Some(true));
}

#[test]
fn loading_10k_routes_one_by_one_completes() {
    let (t, _rx) = tables();
    let prefixes = bgp_like_prefixes(10_000, 42);
    let start = Instant::now();
    load(&t, &prefixes);
    println!("loaded 10000 routes one by one in {:?}", start.elapsed());
    assert_eq!(t.snapshot(0).unwrap().len(), 10_000);
}

fn ns_per_lookup(t: &RouteTables, addrs: &[Ipv4Addr], rounds: usize, deref: bool) -> f64 {
    let snap = t.snapshot(0).unwrap();
    let mut acc = 0usize;
    let start = Instant::now();
    for _ in 0..rounds {
        for a in addrs {
            let r = snap.lookup(std::hint::black_box(*a));
            if deref {
                acc += r.map_or(0, |r| r.flags.bits() as usize);
            } else {
                acc += r.map_or(0, |r| r.next_hop() as *const _ as usize);
            }
        }
    }
    let el = start.elapsed();
    std::hint::black_box(acc);
    el.as_nanos() as f64 / (rounds * addrs.len()) as f64
}

fn default_via(t: &RouteTables) {
    let mut r = Route::via(ip("0.0.0.0"), 0, ip("10.0.0.1"));
    r.ifp = ifw(1);
    t.add(0, r).unwrap();
}

/// Prints ns per lookup for 10 and 100,000 prefixes (run with --release
/// --ignored --nocapture). No timing assertion: the machine is shared.
/// "uniform": 1M destinations spread over the whole address space, so the
/// big table misses the caches on most lookups; "hot": 4096 destinations
/// inside the table's prefixes, repeated (a busy router's working set):
/// the trie's own cost, its depth, without memory stalls.
#[test]
#[ignore = "measurement; run by hand with --release"]
fn lookup_cost_10_vs_100k_prefixes() {
    let mut x = 0x1357_9bdf_2468_ace0u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let uniform: Vec<Ipv4Addr> = (0..1 << 20).map(|_| Ipv4Addr::from((next() >> 16) as u32)).collect();
    let small_p = bgp_like_prefixes(10, 7);
    let big_p = bgp_like_prefixes(100_000, 0x9e37_79b9_7f4a_7c15);
    let inside = |ps: &[(u32, u8)], n: usize, next: &mut dyn FnMut() -> u64| -> Vec<Ipv4Addr> {
        (0..n)
            .map(|_| {
                let (p, l) = ps[(next() % ps.len() as u64) as usize];
                Ipv4Addr::from(p | (next() as u32 & !prefix_mask(l)))
            })
            .collect()
    };
    let hot_small = inside(&small_p, 4096, &mut next);
    let hot_big = inside(&big_p, 4096, &mut next);
    let (small, _r1) = tables();
    load(&small, &small_p);
    default_via(&small);
    let (big, _r2) = tables();
    load(&big, &big_p);
    default_via(&big);
    for deref in [false, true] {
        ns_per_lookup(&small, &uniform, 1, deref);
        ns_per_lookup(&big, &uniform, 1, deref);
        let s = ns_per_lookup(&small, &uniform, 4, deref);
        let b = ns_per_lookup(&big, &uniform, 4, deref);
        let hs = ns_per_lookup(&small, &hot_small, 500, deref);
        let hb = ns_per_lookup(&big, &hot_big, 500, deref);
        println!(
            "lookup{}: uniform: 10 prefixes {s:.1} ns, 100k {b:.1} ns (x{:.2}); hot: 10 prefixes {hs:.1} ns, 100k {hb:.1} ns (x{:.2})",
            if deref { " + read route" } else { "" },
            b / s,
            hb / hs
        );
    }
    // The forwarding benchmark's layout: 100,000 /24s from 11.0.0.0
    // (dense, as real tables cluster) against 10 /16s from 11.0.0.0, with
    // destinations inside the prefixes.
    let dense_big: Vec<(u32, u8)> = (0..100_000u32).map(|i| (0x0b00_0000 + i * 256, 24)).collect();
    let dense_small: Vec<(u32, u8)> = (0..10u32).map(|i| (0x0b00_0000 + i * 65536, 16)).collect();
    let (dsmall, _r3) = tables();
    load(&dsmall, &dense_small);
    let (dbig, _r4) = tables();
    load(&dbig, &dense_big);
    let in_small = inside(&dense_small, 1 << 20, &mut next);
    let in_big = inside(&dense_big, 1 << 20, &mut next);
    ns_per_lookup(&dsmall, &in_small, 1, true);
    ns_per_lookup(&dbig, &in_big, 1, true);
    let s = ns_per_lookup(&dsmall, &in_small, 4, true);
    let b = ns_per_lookup(&dbig, &in_big, 4, true);
    println!("dense /24s + read route, random destinations: 10 prefixes {s:.1} ns, 100k {b:.1} ns (x{:.2})", b / s);
}
