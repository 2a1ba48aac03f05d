//! Rule options through `PacketFilter::test`: tags, rtable, allow-opts,
//! interfaces, dynamic addresses, tables, timeouts (per rule and
//! adaptive), and the pfctl text views.

use crate::common;
use common::{net, HeapBufs as Bufs, Net};

use std::net::Ipv4Addr;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::iface::{IfAddr, Interface};
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::model::{IpNet, TableEntry};
use softnet_pf::Pf;
use softnet_wire::ipv4::Ipv4Packet;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn pf(n: &Net, text: &str) -> Pf {
    common::pf_with(n, text)
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> PacketBuf {
    PacketBuf::from_slice(&common::udp_bytes(src, dst, sport, dport, b"data"))
}

/// A UDP packet with a record-route option (IP options).
fn udp_with_options(src: Ipv4Addr, dst: Ipv4Addr) -> PacketBuf {
    let p = udp(src, dst, 1000, 53);
    let d = p.data();
    let mut b = Vec::new();
    b.extend_from_slice(&d[..20]);
    b.extend_from_slice(&[7, 7, 4, 0, 0, 0, 0, 1]); // RR, len 7, ptr 4, + NOP pad
    b.extend_from_slice(&d[20..]);
    let total = b.len() as u16;
    let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
    ip.set_header_len(28);
    ip.set_total_len(total);
    ip.fill_checksum();
    PacketBuf::from_slice(&b)
}

fn test(pf: &Pf, now: Instant, dir: Direction, ifp: &Interface, p: PacketBuf) -> Option<PacketBuf> {
    let mut r = vec![];
    match pf.test(0, now, dir, ifp, p, &mut Bufs, &mut r) {
        Verdict::Pass(p) => Some(p),
        _ => None,
    }
}

#[test]
fn tag_tagged_and_rtable_follow_the_rules() {
    let n = net();
    let pf = pf(&n, "match in on em0 tag FROM_LAN\npass out tagged FROM_LAN\nblock out on em1 proto udp to port 9\npass in proto udp to port 7 rtable 3 no state\n");
    let t = Instant::from_secs(1);
    let p = test(&pf, t, Direction::In, &n.em0, udp(A, B, 1, 7)).unwrap();
    assert_ne!(p.meta.pf_tag, 0);
    assert_eq!(p.meta.rtable, 3);
    // Tagged packets pass out; the block for port 9 comes after and wins
    // (last match) for untagged packets only when it matches.
    let tagged = test(&pf, t, Direction::Out, &n.em1, p).unwrap();
    assert_ne!(tagged.meta.pf_tag, 0);
    assert!(test(&pf, t, Direction::Out, &n.em1, udp(A, B, 1, 9)).is_none());
}

#[test]
fn ip_options_are_blocked_unless_allow_opts() {
    let n = net();
    let pf1 = pf(&n, "pass in proto udp\n");
    assert!(test(&pf1, Instant::from_secs(1), Direction::In, &n.em0, udp_with_options(A, B)).is_none());
    assert_eq!(pf1.counter("ip-option"), Some(1));
    let pf2 = pf(&n, "pass in proto udp allow-opts\n");
    assert!(test(&pf2, Instant::from_secs(1), Direction::In, &n.em0, udp_with_options(A, B)).is_some());
}

#[test]
fn interfaces_groups_negation_and_dynamic_addresses() {
    let n = net();
    let pf = pf(&n, "block all\npass in on ! em0 proto udp\npass in on egress proto udp to port 5\npass in proto udp to (em0) port 6\n");
    let t = Instant::from_secs(1);
    assert!(test(&pf, t, Direction::In, &n.em1, udp(A, B, 1, 2)).is_some());
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 3, 2)).is_none());
    // (em0) follows em0's current address.
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, "10.0.1.1".parse().unwrap(), 1, 6)).is_some());
    // (New source ports: the first packet left a state.)
    n.em0.set_addrs(vec![IfAddr::new("10.0.9.1".parse().unwrap(), 24)]);
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, "10.0.1.1".parse().unwrap(), 2, 6)).is_none());
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, "10.0.9.1".parse().unwrap(), 3, 6)).is_some());
}

#[test]
fn tables_match_and_change_at_run_time() {
    let n = net();
    let pf = pf(&n, "table <bad> { 10.0.1.0/24 !10.0.1.2 }\nblock in quick from <bad>\npass\n");
    let t = Instant::from_secs(1);
    assert!(test(&pf, t, Direction::In, &n.em0, udp("10.0.1.3".parse().unwrap(), B, 1, 2)).is_none());
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 1, 2)).is_some());
    let e = TableEntry { negated: false, net: IpNet::new("10.0.1.2".parse().unwrap(), 32) };
    let ne = TableEntry { negated: true, net: IpNet::new("10.0.1.2".parse().unwrap(), 32) };
    assert_eq!(pf.table_delete("bad", &[ne]).unwrap(), "1/1 addresses deleted.");
    assert_eq!(pf.table_add("bad", &[e]).unwrap(), "1/1 addresses added.");
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 1, 3)).is_none());
    assert_eq!(pf.table_test("bad", &[A.into()]).unwrap(), ("1/1 addresses match.".to_string(), true));
    assert_eq!(pf.table_show("bad", false).unwrap(), "   10.0.1.0/24\n   10.0.1.2\n");
    assert_eq!(pf.show_tables(""), "bad\n");
    assert!(pf.table_show("nope", false).is_err());
    // The deciding rule's table counts the packets per entry (-T show -v):
    // two blocked from 10.0.1.3 (10.0.1.0/24), one from 10.0.1.2 (its own).
    assert!(test(&pf, t, Direction::In, &n.em0, udp("10.0.1.3".parse().unwrap(), B, 1, 4)).is_none());
    let v = pf.table_show("bad", true).unwrap();
    let net_part = v.split("10.0.1.2").next().unwrap();
    assert!(net_part.contains("In/Block:    [ Packets: 2 "), "{v}");
    assert!(v.split("10.0.1.2").nth(1).unwrap().contains("In/Block:    [ Packets: 1 "), "{v}");
}

#[test]
fn per_rule_and_adaptive_timeouts() {
    let n = net();
    let pf = pf(&n, "pass out proto udp keep state (udp.first 5)\npass in proto udp\n");
    let t = Instant::from_secs(100);
    test(&pf, t, Direction::Out, &n.em1, udp(A, B, 1, 2)).unwrap();
    test(&pf, t, Direction::In, &n.em0, udp(A, B, 1, 2)).unwrap();
    assert_eq!(pf.state_count(), 2);
    assert_eq!(pf.expire_states(Instant::from_secs(106)), 1, "udp.first 5 for the first rule's state");
    assert_eq!(pf.expire_states(Instant::from_secs(159)), 0);
    assert_eq!(pf.expire_states(Instant::from_secs(161)), 1);

    // Adaptive: with 3 states, start 2 and end 4, timeouts are halved.
    let pf = pf_with_opts(&n, "set timeout { adaptive.start 2, adaptive.end 4 }\npass\n");
    for p in 1..=3 {
        test(&pf, t, Direction::In, &n.em0, udp(A, B, p, 2)).unwrap();
    }
    // udp.first 60 × (4 − 3) / (4 − 2) = 30.
    assert_eq!(pf.expire_states(Instant::from_secs(129)), 0);
    // The first state to go lowers the count below adaptive.start: the
    // others are back on the full timeout (pf_state_expires does the same).
    assert_eq!(pf.expire_states(Instant::from_secs(131)), 1);
    assert_eq!(pf.expire_states(Instant::from_secs(161)), 2);
}

fn pf_with_opts(n: &Net, text: &str) -> Pf {
    pf(n, text)
}

#[test]
fn state_limit_is_enforced() {
    let n = net();
    let pf = pf(&n, "set limit states 2\npass\n");
    let t = Instant::from_secs(1);
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 1, 2)).is_some());
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 2, 2)).is_some());
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 3, 2)).is_none());
    assert_eq!(pf.counter("memory"), Some(1));
    assert!(pf.show_memory().starts_with("states        hard limit        2\n"), "{}", pf.show_memory());
}

#[test]
fn pfctl_views_have_pfctl_layouts() {
    let n = net();
    let pf = pf(&n, "set timeout udp.first 61\npass\n");
    let st = pf.show_timeouts();
    assert!(st.starts_with("tcp.first                   120s\n"), "{st}");
    assert!(st.contains("udp.first                    61s\n"), "{st}");
    assert!(st.contains("adaptive.start            60000 states\n"), "{st}");
    // pfctl's pf_timeouts order: the adaptive pair, then src.track last.
    assert!(
        st.ends_with("interval                     10s\nadaptive.start            60000 states\nadaptive.end             120000 states\nsrc.track                     0s\n"),
        "{st}"
    );
    let sm = pf.show_memory();
    assert_eq!(
        sm,
        "states        hard limit   100000\nsrc-nodes     hard limit    10000\nfrags         hard limit    65536\n\
         tables        hard limit     1000\ntable-entries hard limit   200000\npktdelay-pkts hard limit    10000\n\
         anchors       hard limit      512\n"
    );
    let unlimited = pf_with_opts(&n, "set limit { anchors 4294967295, pktdelay-pkts 5 }\npass\n").show_memory();
    assert!(unlimited.ends_with("pktdelay-pkts hard limit        5\nanchors       unlimited\n"), "{unlimited}");
    let t = Instant::from_secs(1);
    test(&pf, t, Direction::In, &n.em0, udp(A, B, 1, 2)).unwrap();
    let ssv = pf.show_states(1, Instant::from_secs(11));
    assert!(ssv.contains("   age 00:00:10, expires in 00:00:51, 1:0 pkts, 32:0 bytes, rule 0\n"), "{ssv}");
    let all = pf.show_all(0, t);
    assert!(all.starts_with("FILTER RULES:\npass all flags S/SA\n\nSTATES:\nall udp "), "{all}");
    assert!(all.contains("\n\nINFO:\nStatus: ") && all.contains("\n\nLIMITS:\nstates "), "{all}");
    // No tables: no TABLES title (nor a STATES one without states).
    assert!(!all.contains("TABLES:"), "{all}");
    pf.flush_states();
    assert!(!pf.show_all(0, t).contains("STATES:"));
    assert_eq!(pf.flush_rules(), 1);
    assert_eq!(pf.show_rules(0), "");
}

/// `-sr` prints a floating rule under `set state-policy if-bound` as
/// pfctl does (no statelock option): without the `set` lines it parses
/// back floating, and the if-bound ones say so. `-nv`, which prints the
/// `set` line first, has to say `(floating)` instead.
#[test]
fn pfctl_sr_prints_floating_rules_without_an_option_and_round_trips() {
    let n = net();
    let text = "pass in proto tcp keep state (floating)\nset state-policy if-bound\npass out proto tcp\n";
    let pf = pf(&n, text);
    let sr = pf.show_rules(0);
    assert_eq!(sr, "pass in proto tcp all flags S/SA\npass out proto tcp all flags S/SA keep state (if-bound)\n");
    let r = softnet_pf::StaticResolver::example();
    let again = softnet_pf::parse_ruleset(&sr, "sr", &r).unwrap();
    assert_eq!(softnet_pf::print_ruleset(&again, &softnet_pf::PrintOpts::default()), sr);
    let nv = softnet_pf::parse_ruleset(text, "pf.conf", &r).unwrap();
    let nv = softnet_pf::print_ruleset(&nv, &softnet_pf::PrintOpts { verbose: 1, ..Default::default() });
    assert!(nv.contains("pass in proto tcp all flags S/SA keep state (floating)\n"), "{nv}");
}

/// Evaluations count exactly the rules looked at: skip steps jump over
/// rules (not counted), `quick` stops the walk, last match wins.
#[test]
fn evaluations_count_only_rules_looked_at() {
    let n = net();
    let pf = pf(
        &n,
        "block in on em1 proto tcp\n\
         block in on em1 proto tcp to port 80\n\
         pass in proto udp to port 7 no state\n\
         pass in proto udp to port 8 no state\n\
         block out all\n\
         pass in quick proto udp to port 9 no state\n\
         pass in proto udp no state\n",
    );
    let t = Instant::from_secs(1);
    // em0, port 9: 0 (skips 1 by interface), 2, 3, 4, 5 (quick).
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 1, 9)).is_some());
    // em1, port 7: 0 (skips 1 by proto), 2 (matches), 3, 4, 5, 6 (wins).
    assert!(test(&pf, t, Direction::In, &n.em1, udp(A, B, 1, 7)).is_some());
    let sr = pf.show_rules(1);
    let counts: Vec<(u64, u64, u64)> = sr
        .lines()
        .filter_map(|l| l.strip_prefix("  [ Evaluations: "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().unwrap(), f[2].parse().unwrap(), f[4].parse().unwrap())
        })
        .collect();
    let evals: Vec<u64> = counts.iter().map(|c| c.0).collect();
    let packets: Vec<u64> = counts.iter().map(|c| c.1).collect();
    assert_eq!(evals, [2, 0, 2, 2, 2, 2, 1], "{sr}");
    assert_eq!(packets, [0, 0, 0, 0, 0, 1, 1], "{sr}");
    assert_eq!(counts[5].2, 32, "{sr}");
    // Another worker's counts add up.
    let mut r = vec![];
    assert!(matches!(pf.test(3, t, Direction::In, &n.em0, udp(A, B, 1, 9), &mut Bufs, &mut r), Verdict::Pass(_)));
    let sr = pf.show_rules(1);
    assert!(sr.contains("pass in quick proto udp from any to any port = 9 no state\n  [ Evaluations: 3 "), "{sr}");
}

/// Routing table 0 with em0's and em1's connected routes, and the lookup
/// pf uses (as the daemon installs it).
fn routes_of(n: &Net) -> std::sync::Arc<softnet_core::route::RouteTables> {
    use softnet_core::route::{Route, RouteTables};
    use softnet_core::rtmsg::RouteMonitor;
    let t = std::sync::Arc::new(RouteTables::new(std::sync::Arc::new(RouteMonitor::new())));
    t.add(0, Route::connected(n.em0.weak(), IfAddr::new("10.0.1.1".parse().unwrap(), 24))).unwrap();
    t.add(0, Route::connected(n.em1.weak(), IfAddr::new("10.0.2.1".parse().unwrap(), 24))).unwrap();
    t
}

fn install_routes(pf: &Pf, t: &std::sync::Arc<softnet_core::route::RouteTables>) {
    let t = t.clone();
    pf.set_route_lookup(std::sync::Arc::new(move |rtable, addr| t.snapshot(rtable)?.lookup(addr).map(|r| r.ifp)));
}

const FAR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);

#[test]
fn no_route_matches_addresses_the_routing_table_cannot_reach() {
    use softnet_core::route::{Route, RouteFlags};
    let n = net();
    let pf = pf(&n, "block in quick from no-route\nblock in quick to no-route\npass no state\n");
    let t = Instant::from_secs(1);
    // No route lookup yet: no-route matches nothing (as before).
    assert!(test(&pf, t, Direction::In, &n.em0, udp(FAR, B, 1, 2)).is_some());
    let rt = routes_of(&n);
    install_routes(&pf, &rt);
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 1, 2)).is_some());
    assert!(test(&pf, t, Direction::In, &n.em0, udp(FAR, B, 1, 2)).is_none(), "source without a route");
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, FAR, 1, 2)).is_none(), "destination without a route");
    // A blackhole route is a route (pf_routable: rtalloc finds it).
    let mut bh: Route = Route::via("192.0.2.0".parse().unwrap(), 24, "127.0.0.1".parse().unwrap());
    bh.gateway = None;
    bh.flags = RouteFlags::UP | RouteFlags::STATIC | RouteFlags::BLACKHOLE;
    rt.add(0, bh).unwrap();
    assert!(test(&pf, t, Direction::In, &n.em0, udp(FAR, B, 1, 2)).is_some());
    // So is a default route.
    rt.delete(0, "192.0.2.0".parse::<Ipv4Addr>().unwrap(), 24, None).unwrap();
    assert!(test(&pf, t, Direction::In, &n.em0, udp(FAR, B, 1, 3)).is_none());
    rt.add(0, Route::via(Ipv4Addr::UNSPECIFIED, 0, "10.0.2.254".parse().unwrap())).unwrap();
    assert!(test(&pf, t, Direction::In, &n.em0, udp(FAR, B, 1, 4)).is_some());
}

#[test]
fn negated_no_route_and_the_rtable_of_a_match_rule() {
    let n = net();
    let rt = routes_of(&n);
    // Packets with a route pass; a packet put in table 1 (which does not
    // exist) has no route there.
    let pf1 = pf(&n, "block all\npass in from ! no-route no state\n");
    install_routes(&pf1, &rt);
    let t = Instant::from_secs(1);
    assert!(test(&pf1, t, Direction::In, &n.em0, udp(A, B, 1, 2)).is_some());
    assert!(test(&pf1, t, Direction::In, &n.em0, udp(FAR, B, 1, 2)).is_none());
    let pf2 = pf(&n, "match in proto udp to port 9 rtable 1\nblock in quick from no-route\npass no state\n");
    install_routes(&pf2, &rt);
    assert!(test(&pf2, t, Direction::In, &n.em0, udp(A, B, 1, 8)).is_some());
    assert!(test(&pf2, t, Direction::In, &n.em0, udp(A, B, 1, 9)).is_none(), "looked up in rtable 1");
    let mut p = udp(A, B, 1, 8);
    p.meta.rtable = 1;
    assert!(test(&pf2, t, Direction::In, &n.em0, p).is_none(), "the packet's own rtable");
}

#[test]
fn urpf_failed_matches_sources_whose_route_leaves_by_another_interface() {
    let n = net();
    let rt = routes_of(&n);
    let pf = pf(&n, "block in quick from urpf-failed\npass no state\n");
    install_routes(&pf, &rt);
    let t = Instant::from_secs(1);
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 1, 2)).is_some(), "10.0.1.2 is behind em0");
    assert!(test(&pf, t, Direction::In, &n.em1, udp(A, B, 1, 2)).is_none(), "10.0.1.2 is not behind em1");
    assert!(test(&pf, t, Direction::In, &n.em0, udp(FAR, B, 1, 2)).is_none(), "no route back at all");
    rt.add(0, softnet_core::route::Route::via(Ipv4Addr::UNSPECIFIED, 0, "10.0.2.254".parse().unwrap())).unwrap();
    assert!(test(&pf, t, Direction::In, &n.em1, udp(FAR, B, 1, 2)).is_some(), "the default route leaves by em1");
    assert!(test(&pf, t, Direction::In, &n.em0, udp(FAR, B, 1, 2)).is_none());
    // `! urpf-failed`: only sources that pass the check.
    let pf2 = pf_neg(&n, &rt);
    assert!(test(&pf2, t, Direction::In, &n.em0, udp(A, B, 1, 2)).is_some());
    assert!(test(&pf2, t, Direction::In, &n.em1, udp(A, B, 1, 2)).is_none());
}

fn pf_neg(n: &Net, rt: &std::sync::Arc<softnet_core::route::RouteTables>) -> Pf {
    let p = pf(n, "block all\npass in from ! urpf-failed no state\n");
    install_routes(&p, rt);
    p
}

#[test]
fn if_bound_state_does_not_match_a_new_interface_that_reuses_the_index() {
    use softnet_core::iface::{InterfaceConfig, InterfaceTable};
    use softnet_core::vlink;
    let table = InterfaceTable::new();
    let mk = |name: &str| {
        let (a, _b) = vlink::wire(1, 16);
        let i = table
            .create(InterfaceConfig { name: name.into(), mac: Default::default(), mtu: 1500, queues: a.link_queues() })
            .unwrap();
        i.set_addrs(vec![IfAddr::new("10.0.1.1".parse().unwrap(), 24)]);
        i.set_up(true);
        i
    };
    let n = net();
    let pf = pf(&n, "block all\npass in proto udp keep state (if-bound)\n");
    let t = Instant::from_secs(1);
    let tun0 = mk("tun0");
    let (old_index, old_gen) = (tun0.index(), tun0.generation());
    assert!(test(&pf, t, Direction::In, &tun0, udp(A, B, 1000, 53)).is_some());
    assert!(test(&pf, t, Direction::Out, &tun0, udp(B, A, 53, 1000)).is_some(), "the reply matches the state on tun0");
    assert!(test(&pf, t, Direction::Out, &n.em1, udp(B, A, 53, 1000)).is_none(), "bound: not on another interface");
    let ifp = table.begin_destroy("tun0").unwrap();
    drop(tun0);
    table.finish_destroy(ifp);
    let tun1 = mk("tun1");
    assert_eq!(tun1.index(), old_index, "the index is reused");
    assert_ne!(tun1.generation(), old_gen);
    assert!(
        test(&pf, t, Direction::Out, &tun1, udp(B, A, 53, 1000)).is_none(),
        "a state bound to the destroyed tun0 must not match on tun1"
    );
    assert_eq!(pf.state_count(), 1);
    assert!(pf.show_states(0, t).starts_with("tun0 udp"), "{}", pf.show_states(0, t));
}

#[test]
fn max_states_per_rule_is_enforced_and_adapts_the_rules_timeouts() {
    let n = net();
    // max 10: pfctl adds adaptive.start 6, adaptive.end 12 for the rule.
    let pf = pf(&n, "pass in proto udp keep state (max 10)\n");
    assert!(
        pf.show_rules(0).contains("keep state (max 10, adaptive.start 6, adaptive.end 12)"),
        "{}",
        pf.show_rules(0)
    );
    let t = Instant::from_secs(100);
    for p in 1..=10 {
        assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, p, 53)).is_some());
    }
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 11, 53)).is_none(), "the 11th state is refused");
    assert_eq!(pf.counter("state-limit"), Some(1));
    assert_eq!(pf.state_count(), 10);
    // 10 states of the rule: udp.first 60 × (12 − 10) / (12 − 6) = 20 s.
    assert_eq!(pf.expire_states(Instant::from_secs(119)), 0);
    // The first to go leaves 9: 60 × 3 / 6 = 30 s for the others.
    assert_eq!(pf.expire_states(Instant::from_secs(121)), 1);
    // Its slot in the rule's count is free again.
    assert!(test(&pf, Instant::from_secs(121), Direction::In, &n.em0, udp(A, B, 11, 53)).is_some());
    assert!(test(&pf, Instant::from_secs(121), Direction::In, &n.em0, udp(A, B, 12, 53)).is_none());
    assert_eq!(pf.counter("state-limit"), Some(2));
}

#[test]
fn loginterface_traffic_shows_in_pfctl_si() {
    let n = net();
    let pf = pf(
        &n,
        "set loginterface em0\nblock in proto udp to port 9\npass in proto udp to port 7 no state\npass out no state\n",
    );
    let t = Instant::from_secs(1);
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 1, 7)).is_some());
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 2, 7)).is_some());
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 3, 9)).is_none());
    assert!(test(&pf, t, Direction::Out, &n.em0, udp(B, A, 7, 1)).is_some());
    assert!(test(&pf, t, Direction::In, &n.em1, udp(B, A, 7, 1)).is_some(), "not the log interface");
    let si = pf.show_info(0, t);
    let want = "Interface Stats for em0               IPv4             IPv6
  Bytes In                              96                0
  Bytes Out                             32                0
  Packets In
    Passed                               2                0
    Blocked                              1                0
  Packets Out
    Passed                               1                0
    Blocked                              0                0

State Table ";
    assert!(si.contains(want), "{si}");
    // A ruleset that does not name one keeps it (as pfctl); `none` drops
    // it; naming another interface starts from zero.
    let res = &n.resolver;
    pf.load(&softnet_pf::parse_ruleset("pass no state\n", "pf.conf", res).unwrap(), res).unwrap();
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 4, 7)).is_some());
    assert!(pf.show_info(0, t).contains("  Bytes In                             128 "), "{}", pf.show_info(0, t));
    pf.load(&softnet_pf::parse_ruleset("set loginterface none\npass\n", "pf.conf", res).unwrap(), res).unwrap();
    assert!(!pf.show_info(0, t).contains("Interface Stats"));
    pf.load(&softnet_pf::parse_ruleset("set loginterface em1\npass no state\n", "pf.conf", res).unwrap(), res).unwrap();
    assert!(test(&pf, t, Direction::In, &n.em1, udp(B, A, 7, 2)).is_some());
    let si = pf.show_info(0, t);
    assert!(
        si.contains("Interface Stats for em1 ") && si.contains("  Bytes In                              32 "),
        "{si}"
    );
}

fn entry(a: &str) -> TableEntry {
    TableEntry { negated: false, net: IpNet::new(a.parse().unwrap(), 32) }
}

#[test]
fn table_limits_refuse_what_goes_over_and_change_nothing() {
    let n = net();
    let res = &n.resolver;
    let load = |pf: &Pf, text: &str| {
        let rs = softnet_pf::parse_ruleset(text, "pf.conf", res).unwrap();
        pf.load(&rs, res).map_err(|e| e.to_string())
    };
    let pf =
        pf(&n, "set limit table-entries 4\ntable <a> persist { 10.0.0.1 10.0.0.2 }\ntable <b> { 10.0.0.3 }\npass\n");
    // One entry of room left.
    assert_eq!(
        pf.table_add("b", &[entry("10.0.0.4"), entry("10.0.0.5")]).unwrap_err(),
        "pfctl: Cannot allocate memory"
    );
    assert_eq!(pf.table_show("b", false).unwrap(), "   10.0.0.3\n", "nothing added");
    assert_eq!(pf.table_add("b", &[entry("10.0.0.3"), entry("10.0.0.4")]).unwrap(), "1/2 addresses added.");
    assert!(pf.table_replace("b", &[entry("10.0.0.7"), entry("10.0.0.8"), entry("10.0.0.9")]).is_err());
    assert_eq!(
        pf.table_replace("b", &[entry("10.0.0.7"), entry("10.0.0.8")]).unwrap(),
        "2 addresses added.\n2 addresses deleted."
    );
    // A ruleset over the limit loads nothing: <a> keeps its entries.
    let e = load(&pf, "set limit table-entries 4\ntable <a> persist { 10.0.1.1 10.0.1.2 10.0.1.3 }\ntable <b> { 10.0.0.3 10.0.0.4 }\npass\n");
    assert_eq!(e.unwrap_err(), "pf.conf:3: cannot define table b: Cannot allocate memory");
    assert_eq!(pf.table_show("a", false).unwrap(), "   10.0.0.1\n   10.0.0.2\n");
    // set limit tables: the second table is one too many, at load and by -T add.
    let e = load(&pf, "set limit tables 1\ntable <a> persist { 10.0.0.1 }\ntable <c> { 10.0.0.3 }\npass\n");
    assert_eq!(e.unwrap_err(), "pf.conf:3: cannot define table c: Cannot allocate memory");
    load(&pf, "set limit tables 1\ntable <a> persist { 10.0.0.1 }\npass\n").unwrap();
    assert_eq!(pf.table_add("new", &[entry("10.0.0.1")]).unwrap_err(), "pfctl: Cannot allocate memory");
    assert!(pf.table_show("new", false).is_err());
}

/// `user`/`group` compare with the socket that owns a packet (pf's
/// pf_socket_lookup); forwarded traffic has none, so its ids are unknown:
/// `user N` never matches it, `user unknown` and `user != N` always do.
#[test]
fn user_and_group_never_match_forwarded_packets_except_unknown_and_ne() {
    let n = net();
    let t = Instant::from_secs(1);
    let verdict = |rules: &str| test(&pf(&n, rules), t, Direction::In, &n.em0, udp(A, B, 1000, 53)).is_some();
    assert!(!verdict("block in\npass in proto udp user root\npass in proto udp group wheel\n"));
    assert!(!verdict("block in\npass in proto udp user >= 0\n"));
    assert!(!verdict("block in\npass in proto udp user 0 >< 70000\n"));
    assert!(verdict("block in\npass in proto udp user unknown\n"));
    assert!(verdict("block in\npass in proto udp user != 0\n"));
    assert!(verdict("block in\npass in proto udp group != wheel\n"));
    assert!(!verdict("block in\npass in proto udp user unknown group bin\n"));
    // a block rule on a user does not touch forwarded traffic
    assert!(verdict("pass in\nblock in proto udp user { root, bin, www }\n"));
}

/// `probability`: the rule matches that share of the packets it is asked
/// about (pf draws a random number per rule), with the worker's generator
/// (seeded here for a fixed sequence).
#[test]
fn probability_matches_that_share_of_packets() {
    softnet_core::rng::install(softnet_core::rng::WorkerRng::seeded(7));
    let n = net();
    let t = Instant::from_secs(1);
    let passed = |rules: &str| {
        let pf = pf(&n, rules);
        (0..2000u16).filter(|i| test(&pf, t, Direction::In, &n.em0, udp(A, B, 1000 + i, 53)).is_some()).count()
    };
    let half = passed("block in\npass in proto udp probability 50% no state\n");
    assert!((900..1100).contains(&half), "{half} of 2000 at 50%");
    let tenth = passed("block in\npass in proto udp probability 0.1 no state\n");
    assert!((140..260).contains(&tenth), "{tenth} of 2000 at 10%");
    assert_eq!(passed("block in\npass in proto udp probability 100% no state\n"), 2000);
    // the smallest probability pfctl stores is 1 in 2^32: practically never
    assert_eq!(passed("block in\npass in proto udp probability 0% no state\n"), 0);
}

/// `received-on`: the interface a packet came in on, whatever interface
/// the rule sees it on (pf_match_rcvif); a group names its members.
#[test]
fn received_on_matches_the_receiving_interface_in_and_out() {
    let n = net();
    let t = Instant::from_secs(1);
    let pf = pf(&n, "block all\npass in on em0 no state\npass out received-on em0 no state\n");
    let (em0, em1) = (n.em0.index(), n.em1.index());
    pf.set_ifname_lookup(std::sync::Arc::new(move |i| {
        [(em0, "em0"), (em1, "em1")].iter().find(|(x, _)| *x == i).map(|(_, s)| s.to_string())
    }));
    let from = |rcvif| {
        let mut p = udp(A, B, 1000, 53);
        p.meta.rcvif = rcvif;
        p
    };
    // came in on em0, goes out em1: passes
    assert!(test(&pf, t, Direction::Out, &n.em1, from(em0)).is_some());
    // came in on em1 (or the router made it): blocked
    assert!(test(&pf, t, Direction::Out, &n.em1, from(em1)).is_none());
    assert!(test(&pf, t, Direction::Out, &n.em1, from(softnet_core::iface::IfIndex::NONE)).is_none());
    // negated, and inbound (the receiving interface is the rule's own)
    let pf = pf_neg_rcv(&n);
    assert!(test(&pf, t, Direction::In, &n.em1, udp(A, B, 1000, 53)).is_some());
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 1000, 53)).is_none());
}

fn pf_neg_rcv(n: &Net) -> Pf {
    pf(n, "block all\npass in ! received-on em0 no state\n")
}

/// `once`: the rule decides one packet, then the walk passes it by
/// (PFRULE_EXPIRED); `-sr` marks it `# expired`; a reload brings it back.
#[test]
fn a_once_rule_decides_one_packet() {
    let n = net();
    let t = Instant::from_secs(1);
    let text = "block all\npass in proto udp to port 53 once no state\n";
    let pf = pf(&n, text);
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 1000, 53)).is_some());
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 1001, 53)).is_none());
    assert_eq!(
        pf.show_rules(0),
        "block drop all\npass in proto udp from any to any port = 53 no state once # expired\n"
    );
    let rs = softnet_pf::parse_ruleset(text, "pf.conf", &n.resolver).unwrap();
    pf.load(&rs, &n.resolver).unwrap();
    assert!(test(&pf, t, Direction::In, &n.em0, udp(A, B, 1002, 53)).is_some());
}

/// `max-pkt-rate N/S`: the rule matches at most N packets in S seconds
/// (a decaying count, pf_threshold); past that, later rules decide.
#[test]
fn max_pkt_rate_stops_matching_over_the_rate() {
    let n = net();
    let pf = pf(&n, "block all\npass in proto udp max-pkt-rate 3/10 no state\n");
    let at = |s: u64, port: u16| test(&pf, Instant::from_secs(s), Direction::In, &n.em0, udp(A, B, port, 53)).is_some();
    assert!(at(100, 1) && at(100, 2) && at(100, 3));
    assert!(!at(100, 4), "a fourth packet in the same second is over the rate");
    // the count decays over the 10 seconds, and is gone after them
    assert!(!at(101, 5));
    assert!(at(120, 6));
}

/// `prio N` matches the packet's priority: 3 (IFQ_DEFPRIO) for every
/// packet, as nothing in softnet sets another (`set prio` is refused).
#[test]
fn prio_matches_the_default_priority_only() {
    let n = net();
    let t = Instant::from_secs(1);
    let verdict = |rules: &str| test(&pf(&n, rules), t, Direction::In, &n.em0, udp(A, B, 1000, 53)).is_some();
    assert!(verdict("block all\npass in prio 3 no state\n"));
    assert!(!verdict("block all\npass in prio 0 no state\n"));
    assert!(!verdict("block all\npass in prio 7 no state\n"));
}
