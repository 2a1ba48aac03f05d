//! pf's `route-to`, `reply-to` and `dup-to` through the stack, in memory:
//! host A -- r0 [router + pf] r1 -- host B, r2 -- host C (a second next
//! hop). The state made by the rule remembers the next hop and routes
//! its later packets: route-to in the state's direction, reply-to in the
//! other, dup-to copies both ways (pf.c pf_route).

use softnet_core::host::HostEvent;
use softnet_core::percpu::Counter;
use softnet_core::stats::StackStats;
use softnet_core::time::Clock;
use softnet_core::topo::*;
use softnet_pf::{parse_ruleset, Pf, StaticResolver};
use std::net::Ipv4Addr;

fn lab(rules: &str) -> (ThreeHosts, Pf) {
    let h = ThreeHosts::new(1);
    let resolver = StaticResolver::new()
        .with_interface("r0", &["10.0.1.1/24"])
        .with_interface("r1", &["10.0.2.1/24"])
        .with_interface("r2", &["10.0.3.1/24"]);
    let rs = parse_ruleset(rules, "pf.conf", &resolver).unwrap_or_else(|e| panic!("{e:?}"));
    let pf = Pf::new();
    pf.load(&rs, &resolver).unwrap();
    let stack = h.t.stack.clone();
    pf.set_if_ref_lookup(std::sync::Arc::new(move |name| stack.ifaces.load().by_name(name).map(|i| i.weak())));
    h.t.stack.set_filter(Some(Box::new(pf.clone())));
    (h, pf)
}

fn sum(h: &ThreeHosts, f: impl Fn(&StackStats) -> &Counter) -> u64 {
    h.t.stack.stats.iter().map(|s| f(s).get()).sum()
}

/// (from, to, ttl) of the IPv4 packets for other hosts that reached a host.
fn transits(ev: &[HostEvent]) -> Vec<(Ipv4Addr, Ipv4Addr, u8)> {
    ev.iter()
        .filter_map(|e| match e {
            HostEvent::Transit { from, dst, ttl, .. } => Some((*from, *dst, *ttl)),
            _ => None,
        })
        .collect()
}

fn echo_replies(ev: &[HostEvent]) -> usize {
    ev.iter().filter(|e| matches!(e, HostEvent::EchoReply { .. })).count()
}

fn answered(ev: &[HostEvent]) -> usize {
    ev.iter().filter(|e| matches!(e, HostEvent::EchoRequestAnswered { .. })).count()
}

#[test]
fn route_to_sends_the_states_packets_to_the_next_hop() {
    let (mut h, pf) = lab("pass\npass in on r0 proto icmp from 10.0.1.2 to 10.0.2.2 route-to 10.0.3.2\n");
    for seq in 0..3 {
        h.t.a.ping(B_IP, 1, seq, 64, 8);
        h.settle();
    }
    // The first packet made the state; the next two matched it.
    assert_eq!(transits(&h.c.take_events()), [(A_IP, B_IP, 63); 3]);
    assert_eq!(answered(&h.t.b.take_events()), 0);
    let ss = pf.show_states(0, h.t.clock.now());
    assert!(ss.contains("all icmp 10.0.2.2:8 <- 10.0.1.2:1"), "{ss}");
    // pf out ran on r2 (the route-to interface): `pass` made a state there.
    assert_eq!(ss.lines().count(), 2, "{ss}");
}

#[test]
fn reply_to_sends_the_replies_of_a_connection_to_the_next_hop() {
    // B pings A; the state made in on r1 sends A's replies to C.
    let (mut h, _pf) = lab("pass\npass in on r1 proto icmp reply-to 10.0.3.2\n");
    for seq in 0..2 {
        h.t.b.ping(A_IP, 2, seq, 64, 8);
        h.settle();
    }
    assert_eq!(answered(&h.t.a.take_events()), 2, "the requests reached A");
    assert_eq!(echo_replies(&h.t.b.take_events()), 0);
    assert_eq!(transits(&h.c.take_events()), [(A_IP, B_IP, 63); 2], "A's replies went to C");
}

#[test]
fn dup_to_copies_both_ways_and_the_originals_go_through() {
    let (mut h, _pf) = lab("pass\npass in on r0 proto icmp from 10.0.1.2 dup-to 10.0.3.2\n");
    for seq in 0..2 {
        h.t.a.ping(B_IP, 1, seq, 64, 8);
        h.settle();
    }
    assert_eq!(echo_replies(&h.t.a.take_events()), 2);
    let mut copies = transits(&h.c.take_events());
    copies.sort();
    // Requests copied at pf in on r0 (TTL down by one), B's replies at
    // pf out on r0 (the state's other way, already forwarded).
    assert_eq!(copies, [(A_IP, B_IP, 63), (A_IP, B_IP, 63), (B_IP, A_IP, 63), (B_IP, A_IP, 63)]);
}

#[test]
fn route_to_on_an_out_rule_reroutes_after_pf_out() {
    let (mut h, _pf) = lab("pass\npass out on r1 proto icmp to 10.0.2.2 route-to 10.0.3.2\n");
    h.t.a.ping(B_IP, 1, 1, 64, 8);
    h.settle();
    assert_eq!(transits(&h.c.take_events()), [(A_IP, B_IP, 63)]);
    assert_eq!(answered(&h.t.b.take_events()), 0);
}

#[test]
fn routing_options_on_match_block_or_stateless_rules_are_refused_as_pfctl_does() {
    let resolver = StaticResolver::new().with_interface("r2", &["10.0.3.1/24"]);
    let errs = |text: &str| -> Vec<String> {
        parse_ruleset(text, "pf.conf", &resolver).unwrap_err().iter().map(|e| e.to_string()).collect()
    };
    let stateless = errs("pass in route-to 10.0.3.2 no state\n");
    assert_eq!(
        stateless[..2],
        ["pf.conf:1: route-to, reply-to and dup-to require keep state", "pf.conf:1: skipping rule due to errors"]
    );
    let block = errs("block in reply-to 10.0.3.2\n");
    assert!(
        block.contains(&"pf.conf:1: route-to, reply-to and dup-to are not supported on block rules".to_string()),
        "{block:?}"
    );
    // pf takes a state's route from the state's own rule only
    // (pf_set_rt_ifp): a match rule's would do nothing.
    let m = errs("match in dup-to 10.0.3.2\n");
    assert!(
        m.contains(&"pf.conf:1: route-to, reply-to and dup-to are not supported on match rules".to_string()),
        "{m:?}"
    );
}

#[test]
fn a_round_robin_pool_gives_each_new_state_the_next_next_hop() {
    // Next hops B and C in turn (a list is a table, walked in address
    // order as pfr_pool_get does): each ping flow (ICMP id) is a state.
    let (mut h, _pf) =
        lab("pass\npass in on r0 proto icmp from 10.0.1.2 route-to { 10.0.3.2, 10.0.2.2 } round-robin\n");
    for id in 1..=3 {
        h.t.a.ping(B_IP, id, 1, 64, 8);
        h.settle();
    }
    assert_eq!(transits(&h.c.take_events()), [(A_IP, B_IP, 63)], "flow 2 went to C");
    let ev = h.t.a.take_events();
    let ids: Vec<u16> = ev
        .iter()
        .filter_map(|e| match e {
            HostEvent::EchoReply { ident, .. } => Some(*ident),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [1, 3], "flows 1 and 3 went to B");
}

#[test]
fn a_route_to_pool_that_gives_no_address_drops_the_packet_as_no_route() {
    // An empty table: pf_map_addr has nothing, the state is not made.
    let (mut h, pf) = lab("table <gw> persist\npass\npass in on r0 proto icmp route-to <gw>\n");
    h.t.a.ping(B_IP, 1, 1, 64, 8);
    h.settle();
    assert_eq!(echo_replies(&h.t.a.take_events()), 0);
    assert!(pf.show_info(0, h.t.clock.now()).contains("no-route"), "{}", pf.show_info(0, h.t.clock.now()));
    let si = pf.show_info(0, h.t.clock.now());
    let n: u64 = si
        .lines()
        .find(|l| l.trim_start().starts_with("no-route"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert_eq!(n, 1, "{si}");
}

#[test]
fn a_next_hop_without_a_route_drops_the_states_packets_and_counts_them() {
    let (mut h, _pf) = lab("pass\npass in on r0 proto icmp route-to 192.168.9.9\n");
    h.t.a.ping(B_IP, 1, 1, 64, 8);
    h.settle();
    let ev = h.t.a.take_events();
    assert!(ev.iter().any(|e| matches!(e, HostEvent::Unreachable { code: 1, .. })), "{ev:?}");
    assert_eq!(sum(&h, |s| &s.ip.noroute), 1);
    // Other traffic is not affected.
    h.t.a.send_udp(B_IP, 5000, 9, 10, 64);
    h.settle();
    assert!(h.t.b.take_events().iter().any(|e| matches!(e, HostEvent::Udp { .. })));
}

#[test]
fn udp_of_an_established_state_is_routed_on_the_lock_free_path_too() {
    let (mut h, _pf) = lab("pass\npass in on r0 proto udp route-to 10.0.3.2\n");
    for _ in 0..4 {
        h.t.a.send_udp(B_IP, 5000, 53, 10, 64);
        h.settle();
    }
    assert_eq!(transits(&h.c.take_events()), [(A_IP, B_IP, 63); 4]);
    assert!(h.t.b.take_events().iter().all(|e| !matches!(e, HostEvent::Udp { .. })));
}

#[test]
fn route_to_an_address_on_a_named_interface_goes_out_there() {
    let (mut h, _pf) =
        lab("pass\npass in on r0 proto icmp route-to (r2 10.0.3.2)\npass in on r0 proto udp route-to 10.0.3.2@r2\n");
    h.t.a.ping(B_IP, 1, 1, 64, 8);
    h.t.a.send_udp(B_IP, 5000, 53, 10, 64);
    h.settle();
    let mut got = transits(&h.c.take_events());
    got.sort();
    assert_eq!(got, [(A_IP, B_IP, 63); 2]);
    // The interface destroyed: the states' next hop is gone with it.
    h.t.stack.destroy_interface("r2").unwrap();
    h.t.a.ping(B_IP, 1, 2, 64, 8);
    h.settle();
    assert_eq!(sum(&h, |s| &s.ip.noroute), 1);
    // An interface that does not exist is a load error, as pfctl's.
    let resolver = StaticResolver::new().with_interface("r2", &["10.0.3.1/24"]);
    let e = parse_ruleset("pass in route-to (r9 10.0.3.2)\n", "pf.conf", &resolver).unwrap_err();
    assert_eq!(e[0].to_string(), "pf.conf:1: routeto: unknown interface r9");
}

#[test]
fn a_state_not_made_for_want_of_a_next_hop_counts_on_no_source_node() {
    let (mut h, pf) = lab(
        "table <gw> persist\npass\npass in on r0 proto icmp route-to <gw> keep state (source-track rule, max-src-states 5)\n",
    );
    h.t.a.ping(B_IP, 1, 1, 64, 8);
    h.settle();
    assert_eq!(echo_replies(&h.t.a.take_events()), 0);
    // The node acquired for the state counts no state (it was undone).
    let ss = pf.show_src_nodes(0, h.t.clock.now());
    assert!(ss.lines().all(|l| l.contains("states 0")), "{ss}");
}
