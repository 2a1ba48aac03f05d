//! nat-to and rdr-to pools through `PacketFilter::test`: `sticky-address`
//! keeps a source on one address in its node (`pfctl -sS` shows it as
//! print_src_node does), `least-states` gives the address with the fewest
//! states and gets each state's count back however the state ends
//! (purge, kill, flush, a state refused).

use crate::common;
use common::{net, HeapBufs as Bufs, Net};

use std::net::Ipv4Addr;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::ipv4::Ipv4Packet;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const A2: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 3);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn pf(n: &Net, text: &str) -> Pf {
    softnet_core::rng::install(softnet_core::rng::WorkerRng::seeded(7));
    assert!(softnet_pf::load_ruleset(text, "pf.conf", &n.resolver).is_ok(), "loads, not refused");
    common::pf_with(n, text)
}

fn at(s: u64) -> Instant {
    Instant::from_secs(s)
}

/// A UDP packet from `src:sport` to B:53 out through em1 (A's side is
/// em0); its source and destination after pf, if it passed.
fn out(pf: &Pf, n: &Net, t: Instant, src: Ipv4Addr, sport: u16) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let p = PacketBuf::from_slice(&common::udp_bytes(src, B, sport, 53, b"q"));
    let mut r = vec![];
    let p = match pf.test(0, t, Direction::In, &n.em0, p, &mut Bufs, &mut r) {
        Verdict::Pass(p) => p,
        _ => return None,
    };
    match pf.test(0, t, Direction::Out, &n.em1, p, &mut Bufs, &mut r) {
        Verdict::Pass(p) => {
            let ip = Ipv4Packet::new_unchecked(p.data());
            Some((ip.src(), ip.dst()))
        }
        _ => None,
    }
}

fn nat_src(pf: &Pf, n: &Net, t: Instant, src: Ipv4Addr, sport: u16) -> Option<Ipv4Addr> {
    out(pf, n, t, src, sport).map(|(s, _)| s)
}

#[test]
fn sticky_address_keeps_a_source_on_one_nat_address() {
    let n = net();
    let pf = pf(&n, "match out on em1 nat-to { 192.0.2.1, 192.0.2.2 } round-robin sticky-address\npass\n");
    let t = at(1);
    pf.tick(t);
    let a = nat_src(&pf, &n, t, A, 1000).expect("passes");
    // Round-robin alone would give A's next connections the other
    // address in turn; the node keeps the first.
    for sport in 1001..1005 {
        assert_eq!(nat_src(&pf, &n, t, A, sport), Some(a));
    }
    let a2 = nat_src(&pf, &n, t, A2, 1000).expect("passes");
    assert_ne!(a, a2, "the pool's next address for another source");
    assert_eq!(
        pf.show_src_nodes(0, t),
        format!(
            "10.0.1.2 nat-to {a} ( states 5, connections 0, rate 0.0/0s )\n\
             10.0.1.3 nat-to {a2} ( states 1, connections 0, rate 0.0/0s )\n"
        )
    );
    // -sS -v: the match rule's node, with its states' packets.
    assert!(pf.show_src_nodes(1, t).contains(", 5 pkts, 145 bytes, rule 0\n"), "{}", pf.show_src_nodes(1, t));
    // -K A -K a kills A's node (its states live on); A's next connection
    // takes the pool's next address, and keeps it.
    assert_eq!(pf.kill_src_nodes(A, Some(a)), 1);
    let b = nat_src(&pf, &n, t, A, 2000).unwrap();
    assert_eq!(nat_src(&pf, &n, t, A, 2001), Some(b), "sticky again");
    // Every state gone (src.track 0): the nodes go at the next purge.
    assert!(pf.flush_states() > 0);
    pf.tick(at(2));
    assert_eq!(pf.src_node_count(), 0);
    // A reload starts over: a new rule, no node.
    assert!(nat_src(&pf, &n, at(2), A, 3000).is_some());
    assert_eq!(pf.src_node_count(), 1);
}

#[test]
fn sticky_address_on_an_rdr_to_pool() {
    let n = net();
    let pf = pf(&n, "pass in on em0 proto udp to port 53 rdr-to { 10.0.2.3, 10.0.2.4 } round-robin sticky-address\n");
    let t = at(1);
    pf.tick(t);
    let d = out(&pf, &n, t, A, 1000).unwrap().1;
    assert_eq!(out(&pf, &n, t, A, 1001).unwrap().1, d);
    assert_ne!(out(&pf, &n, t, A2, 1000).unwrap().1, d);
    assert!(pf.show_src_nodes(0, t).starts_with(&format!("10.0.1.2 rdr-to {d} ( states 2,")));
}

/// `least-states`: A2 makes a state (on the pool's first address, `p`),
/// then A makes two (on the other, `q`: the fewest, then a tie, which
/// keeps the cursor's address). `end` ends A's states; then A2's next
/// connection gets `q` if their counts were given back (q 0, p 1), else
/// `p` (q 2, p 1).
fn next_after_ending_as_states(text: &str, end: impl Fn(&Pf)) {
    let n = net();
    let pf = pf(&n, text);
    let t = at(1);
    pf.tick(t);
    let p = nat_src(&pf, &n, t, A2, 1).unwrap();
    let q = nat_src(&pf, &n, t, A, 1).unwrap();
    assert_ne!(p, q);
    assert_eq!(nat_src(&pf, &n, t, A, 2), Some(q));
    end(&pf);
    assert_eq!(nat_src(&pf, &n, t, A2, 2), Some(q), "A's states gave their counts back");
}

const LEAST: &str = "match out on em1 nat-to { 192.0.2.1, 192.0.2.2 } least-states\npass out\n";

#[test]
fn least_states_gets_a_killed_states_count_back() {
    next_after_ending_as_states(LEAST, |pf| assert_eq!(pf.kill_states(A, None), 2));
}

#[test]
fn least_states_gets_a_flushed_states_count_back() {
    // A2's goes too: both at 0, the cursor's address (q) is the pick.
    next_after_ending_as_states(LEAST, |pf| assert_eq!(pf.flush_states(), 3));
}

#[test]
fn least_states_gets_a_purged_states_count_back() {
    // A's states expire (udp.first 60 s, so does A2's): purged.
    next_after_ending_as_states(LEAST, |pf| {
        pf.tick(at(200));
        assert_eq!(pf.state_count(), 0);
    });
}

#[test]
fn least_states_on_rdr_to_gets_the_count_back() {
    let n = net();
    let text = "pass in on em0 proto udp to port 53 rdr-to { 10.0.2.3, 10.0.2.4 } least-states\n";
    let pf = pf(&n, text);
    let t = at(1);
    pf.tick(t);
    let dst = |src, sport| out(&pf, &n, t, src, sport).unwrap().1;
    let p = dst(A2, 1);
    let q = dst(A, 1);
    assert_ne!(p, q);
    assert_eq!(dst(A, 2), q);
    assert_eq!(pf.kill_states(A, None), 2);
    assert_eq!(dst(A2, 2), q);
}

#[test]
fn a_state_refused_gives_its_least_states_count_back() {
    let n = net();
    // Port 53 takes one state at most: A's next ones are refused after
    // the pool counted them (on q, the tie keeping the cursor's address).
    let text = "match out on em1 nat-to { 192.0.2.1, 192.0.2.2 } least-states\n\
                pass out proto udp to port 53 keep state (max 1)\npass out proto udp to port 54\n";
    let pf = pf(&n, text);
    let t = at(1);
    pf.tick(t);
    let to = |src, sport, dport| {
        let pk = PacketBuf::from_slice(&common::udp_bytes(src, B, sport, dport, b"q"));
        let mut r = vec![];
        match pf.test(0, t, Direction::Out, &n.em1, pk, &mut Bufs, &mut r) {
            Verdict::Pass(pk) => Some(Ipv4Packet::new_unchecked(pk.data()).src()),
            _ => None,
        }
    };
    let p = to(A2, 1, 54).unwrap();
    let q = to(A, 1, 53).unwrap();
    assert_ne!(p, q);
    for sport in 2..5 {
        assert_eq!(to(A, sport, 53), None, "state limit");
    }
    assert_eq!(pf.counter("state-limit"), Some(3));
    // Every state ends: both addresses are back at 0 (had the refused
    // kept their counts, one would be ahead and get neither of the next
    // two), so the next two connections get one each.
    assert_eq!(pf.flush_states(), 2);
    assert_ne!(to(A2, 2, 54), to(A2, 3, 54));
}

#[test]
fn least_states_with_sticky_address_counts_the_pick_only() {
    let n = net();
    let text = "match out on em1 nat-to { 192.0.2.1, 192.0.2.2 } least-states sticky-address\npass\n";
    let pf = pf(&n, text);
    let t = at(1);
    pf.tick(t);
    let a = nat_src(&pf, &n, t, A, 1).unwrap();
    assert_eq!(nat_src(&pf, &n, t, A, 2), Some(a), "sticky");
    // A's sticky states did not count on `a`: A2 gets the other address
    // (fewest: 0), then A2 is sticky there.
    let b = nat_src(&pf, &n, t, A2, 1).unwrap();
    assert_ne!(a, b);
    assert_eq!(nat_src(&pf, &n, t, A2, 2), Some(b));
    pf.flush_states();
    pf.tick(at(2));
    assert_eq!(pf.src_node_count(), 0);
}
