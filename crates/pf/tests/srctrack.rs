//! Source tracking through `PacketFilter::test`: nodes counted per source
//! (`pfctl -sS`), max-src-states, max-src-conn and max-src-conn-rate
//! with `overload <t> flush`, `set limit src-nodes`, expiry after
//! `src.track`, `pfctl -K`, and the `-si -v` counters.

use crate::common;
use common::{net, pf_with, tcp_bytes, udp_bytes, HeapBufs, Net};

use std::net::Ipv4Addr;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::tcp::TcpFlags;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const A2: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 3);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn run(pf: &Pf, now: Instant, dir: Direction, ifp: &Interface, p: Vec<u8>) -> bool {
    let mut replies = vec![];
    matches!(pf.test(0, now, dir, ifp, PacketBuf::from_slice(&p), &mut HeapBufs, &mut replies), Verdict::Pass(_))
}

fn udp(pf: &Pf, n: &Net, t: Instant, src: Ipv4Addr, sport: u16) -> bool {
    run(pf, t, Direction::In, &n.em0, udp_bytes(src, SERVER, sport, 53, b"q"))
}

/// A TCP handshake from `src`:`sport` to SERVER:80 as pf on em0 sees it
/// (SYN in, SYN-ACK out, ACK in); whether each of the three passed.
fn handshake(pf: &Pf, n: &Net, t: Instant, src: Ipv4Addr, sport: u16) -> [bool; 3] {
    let syn = TcpFlags::SYN;
    let ack = TcpFlags::ACK;
    let synack = TcpFlags::from_bits(syn.bits() | ack.bits());
    [
        run(pf, t, Direction::In, &n.em0, tcp_bytes(src, SERVER, sport, 80, syn, 1000, 0, 0)),
        run(pf, t, Direction::Out, &n.em0, tcp_bytes(SERVER, src, 80, sport, synack, 5000, 1001, 0)),
        run(pf, t, Direction::In, &n.em0, tcp_bytes(src, SERVER, sport, 80, ack, 1001, 5001, 0)),
    ]
}

/// A `-si -v` line's first number.
fn info_value(pf: &Pf, name: &str, t: Instant) -> u64 {
    let info = pf.show_info(1, t);
    let line = info.lines().find(|l| l.trim_start().starts_with(name)).unwrap_or_else(|| panic!("{name}:\n{info}"));
    line[2 + name.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn max_src_states_refuses_the_next_state_of_that_source_and_ss_shows_the_nodes() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in on em0 proto udp keep state (max-src-states 2)\n");
    let t = Instant::from_secs(10);
    assert!(udp(&pf, &n, t, A, 1));
    assert!(udp(&pf, &n, t, A, 2));
    assert!(!udp(&pf, &n, t, A, 3), "the third state of A");
    assert!(udp(&pf, &n, t, A2, 1), "another source");
    assert_eq!(pf.counter("src-limit"), Some(1));
    assert_eq!(info_value(&pf, "max-src-states", t), 1);
    assert_eq!(
        pf.show_src_nodes(0, t),
        "10.0.1.2 ( states 2, connections 0, rate 0.0/0s )\n10.0.1.3 ( states 1, connections 0, rate 0.0/0s )\n"
    );
    // -ss -v says which states count on a node.
    let ss = pf.show_states(1, t);
    assert_eq!(ss.matches(", rule 1, source-track\n").count(), 3, "{ss}");
    // -v: age, packets and bytes (of the live states), no rule: global.
    let v = pf.show_src_nodes(1, Instant::from_secs(75));
    assert!(
        v.contains("10.0.1.2 ( states 2, connections 0, rate 0.0/0s )\n   age 00:01:05, 2 pkts, 58 bytes\n"),
        "{v}"
    );
    // Source Tracking Table in -si -v.
    assert_eq!(info_value(&pf, "current entries", t), 3, "states first");
    let info = pf.show_info(1, t);
    let sst: Vec<Vec<&str>> = info
        .split("Source Tracking Table\n")
        .nth(1)
        .unwrap()
        .lines()
        .take(4)
        .map(|l| l.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(
        sst,
        [
            vec!["current", "entries", "2"],
            vec!["searches", "4", "0.4/s"],
            vec!["inserts", "2", "0.2/s"],
            vec!["removals", "0", "0.0/s"]
        ]
    );
}

#[test]
fn max_src_conn_overloads_the_source_and_flushes_its_states_of_the_rule() {
    let n = net();
    let pf = pf_with(
        &n,
        "table <bad> persist\nblock all\nblock in quick from <bad>\npass out all\n\
         pass in on em0 proto tcp to port 80 keep state (max-src-conn 1, overload <bad> flush)\n\
         pass in on em0 proto udp\n",
    );
    let t = Instant::from_secs(10);
    pf.tick(t);
    assert!(udp(&pf, &n, t, A, 7), "A's UDP state, another rule's");
    assert_eq!(handshake(&pf, &n, t, A, 1000), [true; 3]);
    assert_eq!(pf.show_src_nodes(0, t), "10.0.1.2 ( states 1, connections 1, rate 1.0/0s )\n");
    assert_eq!(
        pf.show_src_nodes(1, t).lines().nth(1),
        Some("   age 00:00:00, 3 pkts, 120 bytes, rule 3"),
        "a per-rule node says its rule"
    );
    // The second connection's handshake goes over max-src-conn: its ACK
    // is dropped, the state killed, A's states of the rule flushed.
    assert_eq!(handshake(&pf, &n, t, A, 1001), [true, true, false]);
    assert_eq!(pf.counter("src-limit"), Some(1));
    assert_eq!(info_value(&pf, "max-src-conn", t), 1);
    assert_eq!(info_value(&pf, "overload table insertion", t), 1);
    assert_eq!(info_value(&pf, "overload flush states", t), 1);
    // A's first connection is gone at once (its next segment finds no state).
    let ack = TcpFlags::ACK;
    assert!(!run(&pf, t, Direction::In, &n.em0, tcp_bytes(A, SERVER, 1000, 80, ack, 1001, 5001, 10)));
    // The purge removes them; A goes into <bad> on the control thread.
    pf.tick(Instant::from_secs(11));
    assert_eq!(pf.table("bad").unwrap().test(&[A.into()]), 1);
    assert!(!pf.show_states(0, t).contains(":1000 "), "{}", pf.show_states(0, t));
    assert!(pf.show_states(0, t).contains("10.0.1.2:7 "), "the UDP state of the other rule stays");
    // With no state left and src.track 0 (the default) the node is gone.
    assert_eq!(pf.show_src_nodes(0, t), "");
    // A is blocked now; another source still connects.
    assert!(!handshake(&pf, &n, t, A, 1002)[0]);
    assert_eq!(handshake(&pf, &n, t, A2, 2000), [true; 3]);
}

#[test]
fn flush_global_ends_the_sources_states_of_every_rule() {
    let n = net();
    let pf = pf_with(
        &n,
        "table <bad> persist\nblock all\npass out all\n\
         pass in on em0 proto tcp to port 80 keep state (max-src-conn 1, overload <bad> flush global)\n\
         pass in on em0 proto udp\n",
    );
    let t = Instant::from_secs(10);
    assert!(udp(&pf, &n, t, A, 7));
    assert!(udp(&pf, &n, t, A2, 7));
    assert_eq!(handshake(&pf, &n, t, A, 1000), [true; 3]);
    assert_eq!(handshake(&pf, &n, t, A, 1001), [true, true, false]);
    pf.tick(Instant::from_secs(11));
    let ss = pf.show_states(0, t);
    assert!(!ss.contains("10.0.1.2:"), "{ss}");
    assert!(ss.contains("10.0.1.3:7 "), "{ss}");
}

#[test]
fn max_src_conn_rate_overloads_a_source_opening_connections_too_fast() {
    let n = net();
    let pf = pf_with(
        &n,
        "table <bad> persist\nblock all\nblock in quick from <bad>\npass out all\n\
         pass in on em0 proto tcp to port 80 keep state (max-src-conn-rate 3/10, overload <bad> flush)\n",
    );
    // Three connections in 10 s are fine, the fourth is over the rate.
    for (i, s) in [0u64, 1, 2].into_iter().enumerate() {
        assert_eq!(handshake(&pf, &n, Instant::from_secs(10 + s), A, 1000 + i as u16), [true; 3]);
    }
    let v = pf.show_src_nodes(0, Instant::from_secs(12));
    assert!(v.starts_with("10.0.1.2 ( states 3, connections 3, rate 2."), "{v}");
    assert!(v.ends_with("/10s )\n"), "{v}");
    assert_eq!(handshake(&pf, &n, Instant::from_secs(12), A, 1003), [true, true, false]);
    assert_eq!(info_value(&pf, "max-src-conn-rate", Instant::from_secs(12)), 1);
    pf.tick(Instant::from_secs(13));
    assert_eq!(pf.table("bad").unwrap().test(&[A.into()]), 1);
    assert_eq!(pf.state_count(), 0);
    // The slow source is fine.
    for s in [20u64, 40, 60, 80] {
        assert_eq!(handshake(&pf, &n, Instant::from_secs(s), A2, 2000 + s as u16), [true; 3]);
    }
}

#[test]
fn the_src_nodes_limit_refuses_a_new_source() {
    let n = net();
    let pf = pf_with(&n, "set limit src-nodes 1\nblock all\npass in on em0 proto udp keep state (source-track rule)\n");
    let t = Instant::from_secs(1);
    assert!(udp(&pf, &n, t, A, 1));
    assert!(udp(&pf, &n, t, A, 2), "the same source's node");
    assert!(!udp(&pf, &n, t, A2, 1));
    assert_eq!(pf.counter("src-limit"), Some(1));
    assert_eq!(pf.src_node_count(), 1);
    assert_eq!(pf.state_count(), 2);
    // No limit counter moves for the pool limit (pf's pool_get fails).
    for c in ["max-src-states", "max-src-nodes"] {
        assert_eq!(info_value(&pf, c, t), 0, "{c}");
    }
}

#[test]
fn max_src_nodes_refuses_the_rules_next_source() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in on em0 proto udp keep state (max-src-nodes 1)\n");
    let t = Instant::from_secs(1);
    assert!(udp(&pf, &n, t, A, 1));
    assert!(!udp(&pf, &n, t, A2, 1));
    assert_eq!(info_value(&pf, "max-src-nodes", t), 1);
}

#[test]
fn a_node_expires_src_track_seconds_after_its_last_state() {
    let n = net();
    let pf = pf_with(&n, "set timeout src.track 30\nblock all\npass in on em0 proto udp keep state (source-track)\n");
    let t = Instant::from_secs(100);
    assert!(udp(&pf, &n, t, A, 1));
    pf.tick(t);
    // udp.first: 60 s; the state goes at 160, the node stays until 190.
    pf.tick(Instant::from_secs(161));
    assert_eq!(pf.state_count(), 0);
    let v = pf.show_src_nodes(1, Instant::from_secs(170));
    assert_eq!(
        v,
        "10.0.1.2 ( states 0, connections 0, rate 0.0/0s )\n   age 00:01:10, expires in 00:00:21, 1 pkts, 29 bytes\n"
    );
    pf.tick(Instant::from_secs(190));
    assert_eq!(pf.src_node_count(), 1);
    pf.tick(Instant::from_secs(192));
    assert_eq!(pf.src_node_count(), 0);
    assert_eq!(pf.show_src_nodes(0, Instant::from_secs(192)), "");
}

#[test]
fn kill_removes_the_sources_nodes_and_its_states_live_on() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in on em0 proto udp keep state (max-src-states 1)\n");
    let t = Instant::from_secs(1);
    pf.tick(t);
    assert!(udp(&pf, &n, t, A, 1));
    assert!(udp(&pf, &n, t, A2, 1));
    assert!(!udp(&pf, &n, t, A, 2));
    assert_eq!(pf.kill_src_nodes(A, Some(Ipv4Addr::new(10, 9, 9, 9))), 0, "no node redirects there");
    assert_eq!(pf.kill_src_nodes(A, None), 1);
    assert_eq!(pf.kill_src_nodes(A, None), 0);
    // A's state no longer counts on a node.
    let ss = pf.show_states(1, t);
    assert_eq!(ss.matches(", source-track\n").count(), 1, "{ss}");
    assert_eq!(pf.show_src_nodes(0, t), "10.0.1.3 ( states 1, connections 0, rate 0.0/0s )\n");
    assert_eq!(pf.state_count(), 2);
    // A starts over: a new node, and the old state no longer counts.
    assert!(udp(&pf, &n, t, A, 2));
    assert!(!udp(&pf, &n, t, A, 3));
    pf.kill_states(A, None);
    assert_eq!(pf.show_src_nodes(0, t).lines().next(), Some("10.0.1.2 ( states 0, connections 0, rate 0.0/0s )"));
}

#[test]
fn flush_sources_clears_every_node_and_the_states_live_on() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in on em0 proto udp keep state (max-src-states 1)\n");
    let t = Instant::from_secs(1);
    assert!(udp(&pf, &n, t, A, 1));
    assert!(udp(&pf, &n, t, A2, 1));
    assert_eq!(pf.flush_src_nodes(), 2);
    assert_eq!((pf.src_node_count(), pf.state_count()), (0, 2));
    assert!(udp(&pf, &n, t, A, 2), "A starts over");
    pf.flush_all();
    assert_eq!((pf.src_node_count(), pf.state_count()), (0, 0));
}

#[test]
fn an_outbound_rule_tracks_the_packets_source_and_releases_it() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in all no state\npass out on em1 proto udp keep state (max-src-states 1)\n");
    let t = Instant::from_secs(1);
    pf.tick(t);
    let out = |sport: u16| run(&pf, t, Direction::Out, &n.em1, udp_bytes(A, SERVER, sport, 53, b"q"));
    assert!(out(1));
    assert!(!out(2), "A's second outbound state");
    assert_eq!(pf.show_src_nodes(0, t), "10.0.1.2 ( states 1, connections 0, rate 0.0/0s )\n");
    // The answer passes through the state; the state's removal frees the node.
    assert!(run(&pf, t, Direction::In, &n.em1, udp_bytes(SERVER, A, 53, 1, b"a")));
    pf.kill_states(A, None);
    assert_eq!(pf.show_src_nodes(0, t), "10.0.1.2 ( states 0, connections 0, rate 0.0/0s )\n");
    pf.tick(Instant::from_secs(2));
    assert_eq!(pf.src_node_count(), 0);
    assert!(out(3));
}

#[test]
fn a_state_refused_for_want_of_a_next_hop_gives_its_node_back() {
    let n = net();
    let pf = pf_with(
        &n,
        "table <hops> persist\nblock all\npass in on em0 proto udp route-to <hops> keep state (max-src-states 1)\n",
    );
    let t = Instant::from_secs(1);
    pf.tick(t);
    for sport in 1..=3 {
        assert!(!udp(&pf, &n, t, A, sport));
    }
    assert_eq!(pf.counter("no-route"), Some(3), "no-route each time, not src-limit");
    assert_eq!(pf.counter("src-limit"), Some(0));
    pf.tick(Instant::from_secs(2));
    assert_eq!(pf.src_node_count(), 0);
}

/// The next hop pf gave a UDP packet from `src` (route-to), if it passed.
fn next_hop(pf: &Pf, n: &Net, t: Instant, src: Ipv4Addr, sport: u16) -> Option<Ipv4Addr> {
    let mut replies = vec![];
    let p = PacketBuf::from_slice(&udp_bytes(src, SERVER, sport, 53, b"q"));
    match pf.test(0, t, Direction::In, &n.em0, p, &mut HeapBufs, &mut replies) {
        Verdict::Pass(p) => match p.meta.pf_route {
            softnet_core::filter::RouteDecision::To(a) => Some(a.addr),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn sticky_address_keeps_a_sources_next_hop_in_its_node() {
    let n = net();
    let text = "block all\npass in on em0 proto udp route-to { 10.0.2.3, 10.0.2.4 } round-robin sticky-address\n";
    assert!(softnet_pf::load_ruleset(text, "pf.conf", &n.resolver).is_ok(), "loads, not refused");
    let pf = pf_with(&n, text);
    let t = Instant::from_secs(1);
    pf.tick(t);
    let a = next_hop(&pf, &n, t, A, 1).expect("routed");
    // Round-robin would give A's second state the other hop; the node
    // keeps the first. A2 gets the pool's next one.
    assert_eq!(next_hop(&pf, &n, t, A, 2), Some(a));
    let a2 = next_hop(&pf, &n, t, A2, 1).expect("routed");
    assert_ne!(a, a2);
    assert_eq!(
        pf.show_src_nodes(0, t),
        format!(
            "10.0.1.2 route-to {a} ( states 2, connections 0, rate 0.0/0s )\n\
             10.0.1.3 route-to {a2} ( states 1, connections 0, rate 0.0/0s )\n"
        )
    );
    // The rule does not track sources: no node of that kind, no limits.
    assert!(!pf.show_states(1, t).contains("source-track"));
    // -K A alone matches nodes with no sticky address; with the hop it
    // kills A's, and A's next state gets the pool's next hop.
    assert_eq!(pf.kill_src_nodes(A, None), 0);
    assert_eq!(pf.kill_src_nodes(A, Some(a)), 1);
    assert_eq!(next_hop(&pf, &n, t, A, 3), Some(a));
    assert_eq!(next_hop(&pf, &n, t, A, 4), Some(a), "sticky again");
    // States gone, nodes go (src.track 0).
    pf.flush_states();
    pf.tick(Instant::from_secs(2));
    assert_eq!(pf.src_node_count(), 0);
}
