//! IPv6 routes: the table API, scoped (link-local) routes, messages,
//! netstat's Internet6 section, and the trie against a naive search.

use super::*;
use crate::iface::IfIndex;
use crate::rtmsg::{RouteMessage, RouteMonitor, RtmType};
use crossbeam::channel::Receiver;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn ifw(i: u32) -> WeakIf {
    WeakIf { index: IfIndex(i), generation: i * 10 }
}

fn tables() -> (RouteTables, Receiver<RouteMessage>) {
    let m = Arc::new(RouteMonitor::new());
    let rx = m.subscribe();
    let t = RouteTables::new(m);
    t.set_ifname_resolver(|w| w.index.0.checked_sub(1).map(|i| format!("em{i}")));
    (t, rx)
}

/// Interface 1 (em0) on 2001:db8:1::1/64 and fe80::1, interface 2 (em1) on
/// 2001:db8:2::1/64 and fe80::2: connected and local routes as the
/// interface code adds them.
fn two_nets() -> (RouteTables, Receiver<RouteMessage>) {
    let (t, rx) = tables();
    for (i, g, ll) in [(1, "2001:db8:1::1", "fe80::1"), (2, "2001:db8:2::1", "fe80::2")] {
        t.add(0, Route6::connected6(ifw(i), ip6(g), 64)).unwrap();
        t.add(0, Route::local(ifw(i), ip6(g))).unwrap();
        t.add(0, Route6::connected6(ifw(i), ip6(ll), 64)).unwrap();
        t.add(0, Route::local(ifw(i), ip6(ll))).unwrap();
    }
    (t, rx)
}

fn dest_of(t: &RouteTables, dst: &str) -> Option<(Ipv6Addr, u8)> {
    let snap = t.snapshot6(0).unwrap();
    snap.lookup(ip6(dst)).map(|r| (r.dest, r.prefix_len))
}

fn via(dest: &str, len: u8, gw: &str) -> Route6 {
    Route::via(ip6(dest), len, ip6(gw))
}

#[test]
fn longest_prefix_wins_at_every_level_of_the_v6_trie() {
    let (t, _rx) = two_nets();
    for (d, l) in
        [("::", 0), ("2001:db8::", 32), ("2001:db8:aa::", 48), ("2001:db8:aa:bb00::", 56), ("2001:db8:aa:bb01::", 64)]
    {
        t.add(0, via(d, l, "2001:db8:1::fe")).unwrap();
    }
    t.add(0, via("2001:db8:aa:bb01::77", 128, "2001:db8:2::fe")).unwrap();
    assert_eq!(dest_of(&t, "2a00::1"), Some((ip6("::"), 0)));
    assert_eq!(dest_of(&t, "2001:db8:ff::1"), Some((ip6("2001:db8::"), 32)));
    assert_eq!(dest_of(&t, "2001:db8:aa:1::1"), Some((ip6("2001:db8:aa::"), 48)));
    assert_eq!(dest_of(&t, "2001:db8:aa:bb02::1"), Some((ip6("2001:db8:aa:bb00::"), 56)));
    assert_eq!(dest_of(&t, "2001:db8:aa:bb01::1"), Some((ip6("2001:db8:aa:bb01::"), 64)));
    assert_eq!(dest_of(&t, "2001:db8:aa:bb01::77"), Some((ip6("2001:db8:aa:bb01::77"), 128)));
    assert_eq!(dest_of(&t, "2001:db8:1::5"), Some((ip6("2001:db8:1::"), 64)));
    let host = t.lookup(0, ip6("2001:db8:aa:bb01::77")).unwrap();
    assert_eq!(host.ifp, ifw(2), "the gateway's connected route picks the interface");
    assert_eq!(host.ifa, Some(ip6("2001:db8:2::1")));
    assert!(host.flags.contains(RouteFlags::GATEWAY | RouteFlags::STATIC));
}

#[test]
fn ipv4_and_ipv6_routes_live_apart() {
    let (t, _rx) = two_nets();
    let v4_before = t.snapshot(0).unwrap().version();
    t.add(0, via("::", 0, "2001:db8:1::fe")).unwrap();
    assert_eq!(t.snapshot(0).unwrap().version(), v4_before, "a v6 change does not republish v4");
    assert!(t.routes(0).is_empty());
    assert_eq!(t.routes6(0).len(), 9);
    let v4 = Route::via(std::net::Ipv4Addr::new(0, 0, 0, 0), 0, std::net::Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(t.add(0, v4).unwrap_err(), RouteError::NetworkUnreachable, "no v4 network: v6 routes do not count");
}

#[test]
fn link_local_routes_are_one_per_interface_and_found_by_scope() {
    let (t, _rx) = two_nets();
    let snap = t.snapshot6(0).unwrap();
    let on = |s: u32| snap.lookup_scoped(ip6("fe80::99"), IfIndex(s)).map(|r| (r.prefix_len, r.ifp));
    assert_eq!(on(1), Some((64, ifw(1))));
    assert_eq!(on(2), Some((64, ifw(2))));
    assert_eq!(on(3), None, "no link-local prefix on interface 3");
    assert!(snap.lookup(ip6("fe80::99")).is_none(), "without a scope a link-local address matches nothing scoped");
    assert_eq!(snap.lookup_scoped(ip6("fe80::2"), IfIndex(2)).unwrap().flags.to_string(), "UHLl");
    assert_eq!(snap.lookup_scoped(ip6("2001:db8:2::9"), IfIndex(1)).unwrap().ifp, ifw(2), "scope ignored for globals");
    assert!(t.get_scoped(0, ip6("fe80::"), 64, IfIndex(2)).is_some());
    assert!(t.get(0, ip6("fe80::"), 64).is_none());
    // The unscoped fe80::/10 (OpenBSD's reject route) catches every scope.
    let mut rej = via("fe80::", 10, "::1");
    rej.flags.insert(RouteFlags::REJECT);
    t.add(0, rej).unwrap();
    let snap = t.snapshot6(0).unwrap();
    assert_eq!(snap.lookup_scoped(ip6("fe80::99"), IfIndex(3)).unwrap().prefix_len, 10);
    assert_eq!(snap.lookup_scoped(ip6("fe80::99"), IfIndex(1)).unwrap().prefix_len, 64);
    t.delete_scoped(0, ip6("fe80::"), 64, None, IfIndex(1)).unwrap();
    assert_eq!(t.lookup_scoped(0, ip6("fe80::99"), IfIndex(1)).unwrap().prefix_len, 10);
    assert_eq!(t.lookup_scoped(0, ip6("fe80::99"), IfIndex(2)).unwrap().prefix_len, 64);
}

#[test]
fn link_local_gateway_needs_its_scope_and_a_link_there() {
    let (t, _rx) = two_nets();
    assert_eq!(t.add(0, via("::", 0, "fe80::fe")).unwrap_err(), RouteError::NoScope);
    let mut r = via("::", 0, "fe80::fe");
    r.ifp = ifw(2);
    let r = t.add(0, r).unwrap();
    assert_eq!((r.ifp, r.ifa), (ifw(2), Some(ip6("fe80::2"))), "source from the link-local prefix of that link");
    let mut r = via("2001:db8:9::", 48, "fe80::fe");
    r.ifp = ifw(3);
    assert_eq!(t.add(0, r).unwrap_err(), RouteError::NetworkUnreachable, "no link-local prefix on interface 3");
    let e = RouteError::NoScope;
    assert_eq!((e.errno(), e.strerror()), (22, "Invalid argument"));
}

#[test]
fn scoped_destination_without_interface_is_refused() {
    let (t, _rx) = two_nets();
    let mut r = Route6::connected6(WeakIf::default(), ip6("fe80::5"), 64);
    r.ifa = None;
    assert_eq!(t.add(0, r).unwrap_err(), RouteError::NoScope);
    // A scoped destination through a scoped gateway takes the gateway's link.
    let mut r = via("fe80::77", 128, "fe80::fe");
    r.ifp = ifw(1);
    assert_eq!(t.add(0, r).unwrap().ifp, ifw(1));
    assert!(t.get_scoped(0, ip6("fe80::77"), 128, IfIndex(1)).is_some());
}

#[test]
fn v6_errors_as_route8_reports_them() {
    let (t, rx) = two_nets();
    rx.try_iter().count();
    assert_eq!(t.add(0, via("2001:db8::", 129, "2001:db8:1::fe")).unwrap_err(), RouteError::BadPrefix6(129));
    assert_eq!(RouteError::BadPrefix6(129).to_string(), "bad prefix length /129 (0-128)");
    assert_eq!(t.add(0, via("2001:db8:9::", 48, "2001:db8:77::1")).unwrap_err(), RouteError::NetworkUnreachable);
    t.add(0, via("2001:db8:9::", 48, "2001:db8:1::fe")).unwrap();
    assert_eq!(t.add(0, via("2001:db8:9::", 48, "2001:db8:2::fe")).unwrap_err(), RouteError::Exists);
    assert_eq!(t.delete(0, ip6("2001:db8:8::"), 48, None).unwrap_err(), RouteError::NotInTable);
    assert_eq!(
        t.delete(0, ip6("2001:db8:9::"), 48, Some(ip6("2001:db8:2::fe"))).unwrap_err(),
        RouteError::NotInTable,
        "wrong gateway"
    );
    assert_eq!(t.change(0, via("2001:db8:8::", 48, "2001:db8:1::fe")).unwrap_err(), RouteError::NotInTable);
    let kinds: Vec<_> = rx.try_iter().map(|m| m.kind).collect();
    assert_eq!(kinds, vec![RtmType::Add], "failed changes announce nothing");
}

#[test]
fn host_bits_cleared_and_change_replaces_and_delete_uncovers() {
    let (t, rx) = two_nets();
    let r = t.add(0, via("2001:db8:9:1234::1", 48, "2001:db8:1::fe")).unwrap();
    assert_eq!(r.dest, ip6("2001:db8:9::"));
    t.add(0, via("2001:db8:9:1::", 64, "2001:db8:1::fe")).unwrap();
    rx.try_iter().count();
    let mut c = via("2001:db8:9::", 48, "2001:db8:2::fe");
    c.mtu = 1280;
    let new = t.change(0, c).unwrap();
    assert_eq!((new.ifp, new.mtu), (ifw(2), 1280));
    assert!(Arc::ptr_eq(&t.lookup(0, ip6("2001:db8:9:2::1")).unwrap(), &new));
    assert_eq!(dest_of(&t, "2001:db8:9:1::1"), Some((ip6("2001:db8:9:1::"), 64)));
    t.delete(0, ip6("2001:db8:9:1::"), 64, Some(ip6("2001:db8:1::fe"))).unwrap();
    assert_eq!(dest_of(&t, "2001:db8:9:1::1"), Some((ip6("2001:db8:9::"), 48)));
    let kinds: Vec<_> = rx.try_iter().map(|m| m.kind).collect();
    assert_eq!(kinds, vec![RtmType::Change, RtmType::Delete]);
}

#[test]
fn v6_route_messages_print_scoped_addresses_with_their_interface() {
    let (t, rx) = two_nets();
    rx.try_iter().count();
    let mut r = via("::", 0, "fe80::fe");
    r.ifp = ifw(1);
    t.add(0, r).unwrap();
    let text = rx.try_recv().unwrap().to_string();
    assert!(text.starts_with("RTM_ADD: Add Route: priority 8, table 0, if# 1, name em0, pid: 0, seq 9, errno 0\n"));
    assert!(text.contains("\nflags:<UP,GATEWAY,DONE,STATIC>\n"), "{text}");
    assert!(text.ends_with("sockaddrs: <DST,GATEWAY,NETMASK,IFP,IFA>\n :: fe80::fe%em0 :: em0 fe80::1%em0"), "{text}");
}

#[test]
fn batch_of_both_families_publishes_each_once() {
    let (t, rx) = two_nets();
    rx.try_iter().count();
    let (v4, v6) = (t.snapshot(0).unwrap().version(), t.snapshot6(0).unwrap().version());
    let held = t.snapshot6(0).unwrap();
    t.batch(0, |b| {
        for i in 0..20u16 {
            let d = Ipv6Addr::new(0x2001, 0xdb8, 0x100 + i, 0, 0, 0, 0, 0);
            b.add(Route::via(d, 48, ip6("2001:db8:1::fe"))).unwrap();
        }
        assert_eq!(b.lookup(ip6("2001:db8:105::1")).unwrap().prefix_len, 48, "the batch sees its changes");
        assert!(b.get(ip6("2001:db8:105::"), 48).is_some());
    });
    assert_eq!(t.snapshot6(0).unwrap().version(), v6 + 1);
    assert_eq!(t.snapshot(0).unwrap().version(), v4);
    assert!(held.lookup(ip6("2001:db8:105::1")).is_none(), "an old snapshot never changes");
    assert_eq!(rx.try_iter().count(), 20);
}

#[test]
fn old_v6_snapshot_is_freed_by_the_control_thread() {
    let (t, _rx) = two_nets();
    let r = t.add(0, via("2001:db8:9::", 48, "2001:db8:1::fe")).unwrap();
    let weak: Weak<Route6> = Arc::downgrade(&r);
    drop(r);
    let reader = t.snapshot6(0).unwrap();
    let snap: Weak<RouteSnapshot6> = Arc::downgrade(&*reader);
    t.delete(0, ip6("2001:db8:9::"), 48, None).unwrap();
    assert!(weak.upgrade().is_none(), "snapshots hold next hops, not routes");
    assert_eq!(t.reap(), 1);
    drop(reader);
    assert!(snap.upgrade().is_some(), "the worker's drop frees nothing");
    assert_eq!(t.reap(), 0);
    assert!(snap.upgrade().is_none());
}

#[test]
fn delete_for_interface_takes_both_families() {
    let (t, rx) = two_nets();
    t.add(0, Route::connected(ifw(1), crate::iface::IfAddr::new(std::net::Ipv4Addr::new(10, 0, 1, 1), 24))).unwrap();
    t.add(0, via("2001:db8:9::", 48, "2001:db8:1::fe")).unwrap();
    rx.try_iter().count();
    assert_eq!(t.delete_for_interface(ifw(1)), 6);
    assert!(t.routes(0).is_empty());
    assert!(t.routes6(0).iter().all(|r| r.ifp == ifw(2)));
    assert_eq!(rx.try_iter().filter(|m| m.kind == RtmType::Delete).count(), 6);
}

#[test]
fn deleting_every_v6_route_leaves_an_empty_trie() {
    let (t, _rx) = two_nets();
    for i in 0..300u32 {
        let x = (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        let d = Ipv6Addr::from((0x2001_0db8u128 << 96) | (x >> 32));
        let _ = t.add(0, Route::via(d, 32 + (i % 97) as u8, ip6("2001:db8:1::fe")));
    }
    for r in t.routes6(0) {
        t.delete_scoped(0, r.dest, r.prefix_len, None, r.ifp.index).unwrap();
    }
    let s = t.snapshot6(0).unwrap();
    assert!(s.is_empty());
    assert_eq!(s.node_count(), 1, "emptied nodes are pruned");
}

#[test]
fn netstat_prints_the_internet6_section_as_openbsd() {
    let (t, _rx) = two_nets();
    let mut r = via("::", 0, "fe80::fe");
    r.ifp = ifw(1);
    t.add(0, r).unwrap();
    let mut r = via("2001:db8:aaaa:bbbb:cccc:dddd::", 96, "2001:db8:2::fe");
    r.mtu = 1280;
    t.add(0, r).unwrap();
    let v6 = t.routes6(0);
    let name = |w: WeakIf| Some(format!("em{}", w.index.0 - 1));
    let out = format_netstat_rn_families(None, Some(&v6), name, 0);
    let expect = "\
Routing tables

Internet6:
Destination                                 Gateway                                 Flags   Refs   Mtu  Prio Iface
default                                     fe80::fe%em0                            UGS        0     -     8 em0
2001:db8:1::/64                             2001:db8:1::1                           UCn        0     -     4 em0
2001:db8:1::1                               2001:db8:1::1                           UHLl       0     -     1 em0
2001:db8:2::/64                             2001:db8:2::1                           UCn        0     -     4 em1
2001:db8:2::1                               2001:db8:2::1                           UHLl       0     -     1 em1
2001:db8:aaaa:bbbb:cccc:dddd::/96           2001:db8:2::fe                          UGS        0  1280     8 em1
fe80::%em0/64                               fe80::1%em0                             UCn        0     -     4 em0
fe80::1%em0                                 fe80::1%em0                             UHLl       0     -     1 em0
fe80::%em1/64                               fe80::2%em1                             UCn        0     -     4 em1
fe80::2%em1                                 fe80::2%em1                             UHLl       0     -     1 em1
";
    assert_eq!(out, expect);
    let both = format_netstat_rn_families(Some(&[]), Some(&v6), name, 0);
    assert!(both.starts_with("Routing tables\n\nInternet:\nDestination "), "{both}");
    assert!(both.contains("Iface\n\nInternet6:\nDestination "), "{both}");
    let none6 = format_netstat_rn_families(Some(&[]), Some(&[]), name, 0);
    assert!(!none6.contains("Internet6"), "no v6 routes: no section, as show.c");
    let only6 = format_netstat_rn_families(None, Some(&[]), name, 2);
    assert_eq!(
        only6.lines().collect::<Vec<_>>(),
        ["Routing tables (rtable 2)", "", "Internet6:", expect.lines().nth(3).unwrap()]
    );
}

#[test]
fn netname6_names_as_show_c() {
    let f = RouteFlags::UP;
    assert_eq!(netname6(ip6("::"), 0, f, "em0"), "default");
    assert_eq!(netname6(ip6("::"), 96, f, "em0"), "::/96");
    assert_eq!(netname6(ip6("2001:db8::"), 32, f, "em0"), "2001:db8::/32");
    assert_eq!(netname6(ip6("fe80::"), 10, f, "em0"), "fe80::/10");
    assert_eq!(netname6(ip6("ff02::"), 16, f, "em0"), "ff02::/16");
    assert_eq!(netname6(ip6("ff02::"), 32, f, "em0"), "ff02::%em0/32");
    assert_eq!(netname6(ip6("fe80::1"), 128, f | RouteFlags::HOST, "em0"), "fe80::1%em0");
    assert_eq!(netname6(ip6("2001:db8::1"), 128, f, "em0"), "2001:db8::1/128");
}

/// Naive longest-prefix match over a list, for checking the trie.
fn naive(routes: &BTreeMap<(u128, u8), u32>, dst: u128) -> Option<(u128, u8)> {
    routes.keys().filter(|(p, l)| dst & prefix_mask6(*l) == *p).max_by_key(|(_, l)| *l).copied()
}

fn arb_prefix6() -> impl Strategy<Value = (u128, u8)> {
    // Few distinct values in a few places, so prefixes nest and collide
    // across many levels; lengths over the whole range.
    (0u128..3, 0u128..3, 0u128..4, 0u128..3, any::<u8>(), 0u8..=128).prop_map(|(a, b, c, d, e, l)| {
        let addr = (0x2001u128 << 112) | (a << 100) | (b << 64) | (c << 40) | (d << 20) | e as u128;
        (addr & prefix_mask6(l), l)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("ROUTE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)))]
    #[test]
    fn v6_lookup_agrees_with_naive_longest_prefix_search(
        ops in proptest::collection::vec((any::<bool>(), arb_prefix6()), 1..120),
        probes in proptest::collection::vec(any::<u128>(), 0..40),
    ) {
        let (t, _rx) = tables();
        let mut model: BTreeMap<(u128, u8), u32> = BTreeMap::new();
        let mut points = probes.clone();
        for (n, (insert, (p, l))) in ops.iter().enumerate() {
            let tag = n as u32;
            if *insert {
                let mut r = Route::via(Ipv6Addr::from(*p), *l, Ipv6Addr::from(0x2001_0db8u128 << 96 | tag as u128));
                r.ifp = ifw(1);
                let res = t.add(0, r);
                prop_assert_eq!(res.is_ok(), !model.contains_key(&(*p, *l)));
                model.entry((*p, *l)).or_insert(tag);
            } else {
                let res = t.delete(0, Ipv6Addr::from(*p), *l, None);
                prop_assert_eq!(res.is_ok(), model.remove(&(*p, *l)).is_some());
            }
            let end = *p | !prefix_mask6(*l);
            points.extend([*p, end, p.wrapping_sub(1), end.wrapping_add(1), *p ^ (1 << 64), *p ^ 0x80]);
            let snap = t.snapshot6(0).unwrap();
            for &d in &points {
                let want = naive(&model, d);
                let got = snap.lookup(Ipv6Addr::from(d)).map(|r| (u128::from(r.dest), r.prefix_len));
                prop_assert_eq!(got, want, "dst {}", Ipv6Addr::from(d));
                if let (Some(r), Some(k)) = (snap.lookup(Ipv6Addr::from(d)), want) {
                    prop_assert_eq!(r.gateway, Some(Ipv6Addr::from(0x2001_0db8u128 << 96 | model[&k] as u128)));
                }
            }
        }
        prop_assert_eq!(t.snapshot6(0).unwrap().len(), model.len());
    }
}

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// A v6 table shaped like real ones: mostly /48s, then /32../44 and
/// /56../64, a few /128s, all under 2000::/4 (deterministic).
fn v6_table_like_prefixes(n: usize, seed: u64) -> Vec<(u128, u8)> {
    let mut next = xorshift(seed);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let v = next();
        let len = match v % 100 {
            0..=54 => 48,
            55..=74 => 32 + 4 * ((v >> 8) % 4) as u8, // /32, /36, /40, /44
            75..=94 => 56 + 8 * ((v >> 8) % 2) as u8, // /56, /64
            _ => 128,
        };
        let hi = ((next() as u128) << 64 | next() as u128) >> 4 | (0x2u128 << 124);
        let addr = hi & prefix_mask6(len);
        if seen.insert((addr, len)) {
            out.push((addr, len));
        }
    }
    out
}

/// This thread's CPU time in ns: the machine is shared, and time spent
/// descheduled is not the lookup's.
#[allow(unsafe_code)]
fn cpu_ns() -> u128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn ns_per_lookup6(t: &RouteTables, addrs: &[Ipv6Addr], rounds: usize) -> f64 {
    let snap = t.snapshot6(0).unwrap();
    let mut acc = 0usize;
    let start = cpu_ns();
    for _ in 0..rounds {
        for a in addrs {
            acc += snap.lookup(std::hint::black_box(*a)).map_or(0, |r| r.prefix_len as usize);
        }
    }
    std::hint::black_box(acc);
    (cpu_ns() - start) as f64 / (rounds * addrs.len()) as f64
}

fn ns_per_lookup4(t: &RouteTables, addrs: &[std::net::Ipv4Addr], rounds: usize) -> f64 {
    let snap = t.snapshot(0).unwrap();
    let mut acc = 0usize;
    let start = cpu_ns();
    for _ in 0..rounds {
        for a in addrs {
            acc += snap.lookup(std::hint::black_box(*a)).map_or(0, |r| r.prefix_len as usize);
        }
    }
    std::hint::black_box(acc);
    (cpu_ns() - start) as f64 / (rounds * addrs.len()) as f64
}

fn load6(t: &RouteTables, prefixes: &[(u128, u8)]) {
    t.batch(0, |b| {
        for (i, (p, l)) in prefixes.iter().enumerate() {
            let mut r = Route::via(Ipv6Addr::from(*p), *l, Ipv6Addr::from(0xfd00u128 << 112 | i as u128));
            r.ifp = ifw(1);
            b.add(r).unwrap();
        }
    });
}

/// ns per lookup of the v6 trie against the v4 trie, 100,000 routes each,
/// destinations inside the tables' prefixes (run with --release --ignored
/// --nocapture; the figures go in the report, no timing assertion: the
/// machine is shared). "dense": the forwarding benchmark's layout (v4:
/// 100,000 consecutive /24s; v6: 100,000 consecutive /48s or /64s);
/// "table-like": v4 BGP-like lengths, v6 mostly /48 with /32../64 and /128.
#[test]
#[ignore = "measurement; run by hand with --release"]
fn lookup_cost_v6_against_v4_at_100k_routes() {
    let mut next = xorshift(0x1357_9bdf_2468_ace0);
    let n = 100_000u32;
    let (t4, _r4) = tables();
    t4.batch(0, |b| {
        for i in 0..n {
            let mut r =
                Route::via(std::net::Ipv4Addr::from(0x0b00_0000 + i * 256), 24, std::net::Ipv4Addr::new(10, 0, 0, 1));
            r.ifp = ifw(1);
            b.add(r).unwrap();
        }
    });
    let d4: Vec<std::net::Ipv4Addr> =
        (0..1 << 20).map(|_| std::net::Ipv4Addr::from(0x0b00_0000 + (next() as u32 % (n * 256)))).collect();
    let dense = |len: u8| {
        let (t6, r6) = tables();
        let base = u128::from(ip6("2001:db8::"));
        let ps: Vec<(u128, u8)> = (0..n as u128).map(|i| (base + (i << (128 - len as u32)), len)).collect();
        load6(&t6, &ps);
        (t6, r6, ps)
    };
    let inside = |ps: &[(u128, u8)], k: usize, next: &mut dyn FnMut() -> u64| -> Vec<Ipv6Addr> {
        (0..k)
            .map(|_| {
                let (p, l) = ps[(next() % ps.len() as u64) as usize];
                let host = ((next() as u128) << 64 | next() as u128) & !prefix_mask6(l);
                Ipv6Addr::from(p | host)
            })
            .collect()
    };
    for len in [48u8, 64] {
        let (t6, _r, ps) = dense(len);
        let d6 = inside(&ps, 1 << 20, &mut next);
        let (mut v4, mut v6) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            v4 = v4.min(ns_per_lookup4(&t4, &d4, 1));
            v6 = v6.min(ns_per_lookup6(&t6, &d6, 1));
        }
        println!(
            "dense 100k, 1M random destinations: v4 /24s {v4:.1} ns/lookup, v6 /{len}s {v6:.1} ns/lookup (x{:.2}); v6 trie {} nodes",
            v6 / v4,
            t6.snapshot6(0).unwrap().node_count()
        );
        let (h4, h6) = (&d4[..4096], &d6[..4096]);
        let (mut v4, mut v6) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            v4 = v4.min(ns_per_lookup4(&t4, h4, 200));
            v6 = v6.min(ns_per_lookup6(&t6, h6, 200));
        }
        println!("dense 100k, hot 4096 destinations: v4 /24s {v4:.1} ns, v6 /{len}s {v6:.1} ns (x{:.2})", v6 / v4);
    }
    let (tb4, _rb4) = tables();
    tb4.batch(0, |b| {
        let mut x = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut k = 0;
        let mut seen = std::collections::HashSet::new();
        while k < n {
            let v = x();
            let len = match v % 100 {
                0..=59 => 24,
                60..=84 => 17 + (v >> 8) % 7,
                85..=94 => 8 + (v >> 8) % 9,
                _ => 25 + (v >> 8) % 8,
            } as u8;
            let a = ((v >> 32) as u32) & crate::iface::prefix_mask(len);
            if seen.insert((a, len)) {
                let mut r = Route::via(std::net::Ipv4Addr::from(a), len, std::net::Ipv4Addr::new(10, 0, 0, 1));
                r.ifp = ifw(1);
                b.add(r).unwrap();
                k += 1;
            }
        }
    });
    let rb4 = tb4.routes(0);
    let h4: Vec<std::net::Ipv4Addr> = (0..4096)
        .map(|_| {
            let r = &rb4[(next() % rb4.len() as u64) as usize];
            std::net::Ipv4Addr::from(u32::from(r.dest) | (next() as u32 & !crate::iface::prefix_mask(r.prefix_len)))
        })
        .collect();
    let ps6 = v6_table_like_prefixes(n as usize, 0x9e37_79b9_7f4a_7c15);
    let (tb6, _rb6) = tables();
    load6(&tb6, &ps6);
    let h6 = inside(&ps6, 4096, &mut next);
    let u4: Vec<std::net::Ipv4Addr> = (0..1 << 20)
        .map(|_| {
            let r = &rb4[(next() % rb4.len() as u64) as usize];
            std::net::Ipv4Addr::from(u32::from(r.dest) | (next() as u32 & !crate::iface::prefix_mask(r.prefix_len)))
        })
        .collect();
    let u6 = inside(&ps6, 1 << 20, &mut next);
    // The machine is shared: interleave, keep each side's best of five.
    let best = |f: &mut dyn FnMut() -> (f64, f64)| {
        (0..5).map(|_| f()).fold((f64::MAX, f64::MAX), |(a, b), (x, y)| (a.min(x), b.min(y)))
    };
    let (a, b) = best(&mut || (ns_per_lookup4(&tb4, &h4, 200), ns_per_lookup6(&tb6, &h6, 200)));
    println!("table-like 100k, hot 4096 destinations: v4 {a:.1} ns, v6 {b:.1} ns (x{:.2})", b / a);
    let (a, b) = best(&mut || (ns_per_lookup4(&tb4, &u4, 1), ns_per_lookup6(&tb6, &u6, 1)));
    println!("table-like 100k, 1M random destinations: v4 {a:.1} ns, v6 {b:.1} ns (x{:.2})", b / a);
}

#[test]
fn nodes_without_routes_and_with_one_child_are_left_out() {
    let (t, _rx) = tables();
    let mut r = via("2a00:1:2:3::", 64, "2001:db8:1::fe");
    r.ifp = ifw(1);
    t.add(0, r).unwrap();
    assert_eq!(t.snapshot6(0).unwrap().node_count(), 2, "the root and the /64's node at level 7");
    let mut r = via("2a00:1:2:3:4::", 80, "2001:db8:1::fe");
    r.ifp = ifw(1);
    t.add(0, r).unwrap();
    assert_eq!(t.snapshot6(0).unwrap().node_count(), 3, "the /80's node hangs right under the /64's");
    let mut r = via("2a00:1:5:3::", 64, "2001:db8:1::fe");
    r.ifp = ifw(1);
    t.add(0, r).unwrap();
    assert_eq!(t.snapshot6(0).unwrap().node_count(), 5, "a split at level 5 where the two /64s part");
    t.delete(0, ip6("2a00:1:2:3::"), 64, None).unwrap();
    t.delete(0, ip6("2a00:1:5:3::"), 64, None).unwrap();
    assert_eq!(t.snapshot6(0).unwrap().node_count(), 2, "the split node and the emptied /64 node gone");
    assert_eq!(t.lookup(0, ip6("2a00:1:2:3:4::1")).unwrap().prefix_len, 80);
    assert!(t.lookup(0, ip6("2a00:1:2:3:5::1")).is_none());
}

#[test]
fn lookups_jump_over_runs_without_routes_and_stop_where_the_bits_differ() {
    let (t, _rx) = two_nets();
    t.add(0, via("::", 0, "2001:db8:1::fe")).unwrap();
    // Alone in 2a00::/8 below level 0: levels 1..5 are a run of empty nodes.
    t.add(0, via("2a00:1:2:3::", 64, "2001:db8:1::fe")).unwrap();
    assert_eq!(dest_of(&t, "2a00:1:2:3::9"), Some((ip6("2a00:1:2:3::"), 64)));
    for other in ["2a00:1:2:4::9", "2a00:1:3:3::9", "2a00:0:2:3::9", "2a01:1:2:3::9"] {
        assert_eq!(dest_of(&t, other), Some((ip6("::"), 0)), "{other} differs inside the run");
    }
    // A route in the middle of the run splits it; taking it out joins it again.
    t.add(0, via("2a00:1::", 32, "2001:db8:1::fe")).unwrap();
    assert_eq!(dest_of(&t, "2a00:1:3:3::9"), Some((ip6("2a00:1::"), 32)));
    assert_eq!(dest_of(&t, "2a00:1:2:3::9"), Some((ip6("2a00:1:2:3::"), 64)));
    t.add(0, via("2a00:1:2:3:4::", 80, "2001:db8:1::fe")).unwrap();
    t.delete(0, ip6("2a00:1::"), 32, None).unwrap();
    assert_eq!(dest_of(&t, "2a00:1:3:3::9"), Some((ip6("::"), 0)));
    assert_eq!(dest_of(&t, "2a00:1:2:3:4::1"), Some((ip6("2a00:1:2:3:4::"), 80)));
    t.delete(0, ip6("2a00:1:2:3::"), 64, None).unwrap();
    assert_eq!(dest_of(&t, "2a00:1:2:3:4::1"), Some((ip6("2a00:1:2:3:4::"), 80)));
    assert_eq!(dest_of(&t, "2a00:1:2:3:5::1"), Some((ip6("::"), 0)));
    // A snapshot taken before a change keeps its own runs.
    let old = t.snapshot6(0).unwrap();
    t.add(0, via("2a00:1:2:3:4:5::", 96, "2001:db8:1::fe")).unwrap();
    assert_eq!(old.lookup(ip6("2a00:1:2:3:4:5::1")).unwrap().prefix_len, 80);
    assert_eq!(t.lookup(0, ip6("2a00:1:2:3:4:5::1")).unwrap().prefix_len, 96);
}

/// Many lookups of 4096 hot destinations in a dense 100k table, for
/// `perf stat` (ROUTE_FAMILY=4 or 6; run by hand with --release).
#[test]
#[ignore = "measurement; run by hand under perf stat"]
fn hot_dense_lookups_for_perf() {
    let six = std::env::var("ROUTE_FAMILY").map(|f| f == "6").unwrap_or(true);
    let mut next = xorshift(7);
    let n = 100_000u32;
    let rounds = 20_000;
    if six {
        let (t6, _r) = tables();
        let base = u128::from(ip6("2001:db8::"));
        let ps: Vec<(u128, u8)> = (0..n as u128).map(|i| (base + (i << 80), 48)).collect();
        load6(&t6, &ps);
        let d: Vec<Ipv6Addr> =
            (0..4096).map(|_| Ipv6Addr::from(base + ((next() as u128 % n as u128) << 80) + next() as u128)).collect();
        println!("v6 {:.1} ns", ns_per_lookup6(&t6, &d, rounds));
    } else {
        let (t4, _r) = tables();
        t4.batch(0, |b| {
            for i in 0..n {
                let mut r = Route::via(
                    std::net::Ipv4Addr::from(0x0b00_0000 + i * 256),
                    24,
                    std::net::Ipv4Addr::new(10, 0, 0, 1),
                );
                r.ifp = ifw(1);
                b.add(r).unwrap();
            }
        });
        let d: Vec<std::net::Ipv4Addr> =
            (0..4096).map(|_| std::net::Ipv4Addr::from(0x0b00_0000 + (next() as u32 % (n * 256)))).collect();
        println!("v4 {:.1} ns", ns_per_lookup4(&t4, &d, rounds));
    }
}

/// The publication cost of the v6 trie: 100,000 table-like routes, then
/// the dense /48s of `bench --inet6`, each added alone (a path copy and a
/// publish each), then deleted alone (run with --release --ignored
/// --nocapture; CPU time, no timing assertion: the machine is shared).
#[test]
#[ignore = "measurement; run by hand with --release"]
fn publish_cost_v6_one_route_at_a_time() {
    let n = 100_000usize;
    let dense: Vec<(u128, u8)> = (0..n as u128).map(|r| ((0x2400u128 << 112) | (r << 80), 48)).collect();
    for (name, ps) in [("table-like", v6_table_like_prefixes(n, 0x9e37_79b9_7f4a_7c15)), ("dense /48", dense)] {
        let (t, rx) = tables();
        drop(rx);
        let start = cpu_ns();
        for (i, (p, l)) in ps.iter().enumerate() {
            let mut r = Route::via(Ipv6Addr::from(*p), *l, Ipv6Addr::from(0xfd00u128 << 112 | i as u128));
            r.ifp = ifw(1);
            t.add(0, r).unwrap();
        }
        let add = (cpu_ns() - start) as f64 / 1e9;
        let snap = t.snapshot6(0).unwrap();
        assert_eq!((snap.len(), snap.version()), (n, n as u64));
        let nodes = snap.node_count();
        drop(snap);
        let start = cpu_ns();
        for (p, l) in &ps {
            t.delete(0, Ipv6Addr::from(*p), *l, None).unwrap();
        }
        let del = (cpu_ns() - start) as f64 / 1e9;
        assert_eq!(t.snapshot6(0).unwrap().node_count(), 1);
        println!("v6 {name}: {n} adds {add:.2} s, {n} deletes {del:.2} s, a publish each; {nodes} trie nodes");
    }
}
