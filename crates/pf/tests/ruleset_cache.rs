//! Each worker thread keeps its own handle on the ruleset in use: a
//! reload is seen by the next packet, filters never share a cache entry,
//! and replaced rulesets are freed by `tick`, not by the workers.

mod common;
use common::{net, pf_with, NoBufs as Bufs};

use std::net::Ipv4Addr;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;

fn udp(dport: u16) -> PacketBuf {
    PacketBuf::from_slice(&common::udp_bytes(Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 2, 2), 5000, dport, &[]))
}

fn passes(pf: &Pf, n: &common::Net, dport: u16) -> bool {
    matches!(
        pf.test(0, Instant::from_secs(1), Direction::In, &n.em0, udp(dport), &mut Bufs, &mut vec![]),
        Verdict::Pass(_)
    )
}

#[test]
fn a_reload_is_seen_by_the_next_packet_on_the_same_thread() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in proto udp to port 53 no state\n");
    assert!(passes(&pf, &n, 53));
    assert!(!passes(&pf, &n, 54));
    let rs = softnet_pf::parse_ruleset("block all\npass in proto udp to port 54 no state\n", "pf.conf", &n.resolver)
        .unwrap();
    pf.load(&rs, &n.resolver).unwrap();
    assert!(!passes(&pf, &n, 53));
    assert!(passes(&pf, &n, 54));
    pf.flush_rules();
    assert!(passes(&pf, &n, 53), "empty ruleset: pass");
}

#[test]
fn two_filters_on_one_thread_keep_their_own_rulesets() {
    let n = net();
    let a = pf_with(&n, "block all\n");
    let b = pf_with(&n, "pass all no state\n");
    for _ in 0..3 {
        assert!(!passes(&a, &n, 53));
        assert!(passes(&b, &n, 53));
    }
}

#[test]
fn replaced_rulesets_are_freed_by_tick_once_no_thread_holds_them() {
    let n = net();
    let pf = pf_with(&n, "block all\n");
    assert!(!passes(&pf, &n, 53));
    let old = std::sync::Arc::downgrade(&pf.ruleset());
    let rs = softnet_pf::parse_ruleset("pass all no state\n", "pf.conf", &n.resolver).unwrap();
    pf.load(&rs, &n.resolver).unwrap();
    // A worker thread that saw the old ruleset still holds it.
    let worker = {
        let (pf, n2) = (pf.clone(), net());
        std::thread::spawn(move || passes(&pf, &n2, 53)).join().unwrap()
    };
    assert!(worker);
    pf.tick(Instant::from_secs(2));
    // This thread's cache dropped the old one at its next packet.
    assert!(passes(&pf, &n, 53));
    assert!(old.upgrade().is_some(), "kept on the retired list until tick");
    pf.tick(Instant::from_secs(3));
    assert!(old.upgrade().is_none(), "freed by tick");
}
