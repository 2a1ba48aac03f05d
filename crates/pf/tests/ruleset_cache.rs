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

/// Reloads and ticks on one thread while another runs packets: no
/// packet passes that both rulesets block, the worker sees the last one once loads stop, and every replaced ruleset
/// is freed once the worker has gone. Under Miri this is the check of the
/// cache's unsafe handle, arc-swap's publication and `tick`'s reaping
/// for data races on real threads.
#[test]
fn reloads_under_traffic_on_another_thread_free_every_replaced_ruleset() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in proto udp to port 53 no state\n");
    let rulesets: Vec<_> = [53, 54]
        .iter()
        .map(|p| {
            let text = format!("block all\npass in proto udp to port {p} no state\n");
            softnet_pf::parse_ruleset(&text, "pf.conf", &n.resolver).unwrap()
        })
        .collect();
    let (loads, packets) = if cfg!(miri) { (4u64, 8u32) } else { (200, 2000) };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let (pf, done, n2) = (pf.clone(), done.clone(), net());
        std::thread::spawn(move || {
            for i in 0..packets {
                // both rulesets block everything else
                assert!(!passes(&pf, &n2, 55 + (i % 2) as u16));
                passes(&pf, &n2, 53 + (i % 2) as u16);
            }
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::yield_now();
            }
            // the last load (port 54) is what the next packet sees
            passes(&pf, &n2, 54) && !passes(&pf, &n2, 53)
        })
    };
    let mut replaced = vec![];
    for i in 0..loads {
        replaced.push(std::sync::Arc::downgrade(&pf.ruleset()));
        pf.load(&rulesets[(i % 2) as usize], &n.resolver).unwrap();
        pf.tick(Instant::from_secs(2 + i));
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    assert!(worker.join().unwrap(), "the worker saw the last ruleset");
    // This thread's cache lets go of the old one at its next packet.
    assert!(passes(&pf, &n, 54));
    pf.tick(Instant::from_secs(2 + loads));
    assert!(replaced.iter().all(|w| w.upgrade().is_none()), "a replaced ruleset outlived every holder");
}
