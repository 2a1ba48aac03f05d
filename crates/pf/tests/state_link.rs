//! The link pf in leaves in a packet for pf out (the inbound state's
//! reverse link, as pf.c's `pf.statekey` / `sk_reverse`) is a hint only:
//! whatever happened to the states since, pf out decides exactly as a
//! search of the state table would.

use crate::common;
use common::{net, pf_with, udp_bytes, Net, NoBufs as Bufs};

use std::net::Ipv4Addr;

use softnet_core::filter::{Decision, Direction, PacketFilter, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn udp(sport: u16, dport: u16) -> PacketBuf {
    PacketBuf::from_slice(&udp_bytes(CLIENT, SERVER, sport, dport, &[0u8; 18]))
}

fn hook(pf: &Pf, dir: Direction, ifp: &Interface, p: PacketBuf) -> Result<PacketBuf, ()> {
    match pf.test(0, Instant::from_secs(10), dir, ifp, p, &mut Bufs, &mut vec![]) {
        Verdict::Pass(p) => Ok(p),
        Verdict::Drop(_) => Err(()),
        Verdict::Consumed => panic!("consumed"),
    }
}

fn pf_in(pf: &Pf, n: &Net, p: PacketBuf) -> PacketBuf {
    hook(pf, Direction::In, &n.em0, p).expect("passes in")
}

fn pf_out(pf: &Pf, n: &Net, p: PacketBuf) -> Result<PacketBuf, ()> {
    hook(pf, Direction::Out, &n.em1, p)
}

/// Packets counted on each state, in `pfctl -ss -v` order.
fn state_lines(pf: &Pf) -> String {
    pf.show_states(1, Instant::from_secs(10))
}

/// Only udp to port 53 may leave on em1; anything may come in.
const RULES: &str = "block all\npass in all\npass out on em1 proto udp to port 53\n";

#[test]
fn established_flow_goes_through_its_own_states_with_or_without_the_link() {
    let n = net();
    let pf = pf_with(&n, RULES);
    for _ in 0..3 {
        let p = pf_in(&pf, &n, udp(5000, 53));
        assert_ne!(p.meta.pf_link, 0, "pf in leaves the state's link");
        pf_out(&pf, &n, p).expect("passes out");
    }
    assert_eq!(pf.state_count(), 2);
    let linked = state_lines(&pf);
    // The same packets without a link (or with a foreign one) count the same.
    let pf2 = pf_with(&n, RULES);
    for i in 0..3u64 {
        let mut p = pf_in(&pf2, &n, udp(5000, 53));
        p.meta.pf_link = [0, 0x0000_0005_0000_0003, u64::MAX][i as usize];
        pf_out(&pf2, &n, p).expect("passes out");
    }
    let strip = |s: &str| s.lines().filter(|l| !l.contains("id:")).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(&linked), strip(&state_lines(&pf2)));
    assert!(linked.contains("3:0 pkts"), "{linked}");
}

#[test]
fn a_stale_link_never_passes_a_packet_its_states_no_longer_pass() {
    let n = net();
    let pf = pf_with(&n, RULES);
    // Establish, then keep a packet that has been through pf in.
    let p = pf_in(&pf, &n, udp(5000, 53));
    pf_out(&pf, &n, p).unwrap();
    let p = pf_in(&pf, &n, udp(5000, 53));
    let p = pf_out(&pf, &n, p).unwrap();
    let stale = pf_in(&pf, &n, p);
    assert_ne!(stale.meta.pf_link >> 32, 0, "the link reaches the outbound state");

    // The states go (pfctl -F states); the ruleset no longer passes it out.
    assert_eq!(pf.flush_states(), 2);
    let rs = softnet_pf::parse_ruleset("block all\npass in all\n", "pf.conf", &n.resolver).unwrap();
    pf.load(&rs, &n.resolver).unwrap();
    let mut again = udp(5000, 53);
    again.meta = stale.meta;
    assert!(pf_out(&pf, &n, again).is_err(), "removed state found through the link");

    // The slots are reused by other flows' states (other keys).
    for port in [6000, 6001] {
        let p = pf_in(&pf, &n, udp(port, 53));
        assert!(pf_out(&pf, &n, p).is_err());
    }
    assert_eq!(pf.state_count(), 2, "two inbound states, in the freed slots");
    let mut again = udp(5000, 53);
    again.meta = stale.meta;
    assert!(pf_out(&pf, &n, again).is_err(), "reused slot taken for the flow's state");
}

#[test]
fn the_link_survives_a_ruleset_reload_and_follows_the_kept_states() {
    let n = net();
    let pf = pf_with(&n, RULES);
    let p = pf_in(&pf, &n, udp(5000, 53));
    pf_out(&pf, &n, p).unwrap();
    // Reload with a ruleset that would block out: the kept state passes.
    let rs = softnet_pf::parse_ruleset("block all\npass in all\n", "pf.conf", &n.resolver).unwrap();
    pf.load(&rs, &n.resolver).unwrap();
    for _ in 0..3 {
        let p = pf_in(&pf, &n, udp(5000, 53));
        pf_out(&pf, &n, p).expect("kept state passes out");
    }
    assert!(state_lines(&pf).contains("4:0 pkts"), "{}", state_lines(&pf));
}

#[test]
fn a_link_to_a_state_of_another_key_is_refused_and_the_search_decides() {
    let n = net();
    let pf = pf_with(&n, "pass all\n");
    let p = pf_in(&pf, &n, udp(5000, 53));
    pf_out(&pf, &n, p).unwrap();
    let p = pf_in(&pf, &n, udp(5000, 53));
    let linked = pf_out(&pf, &n, p).unwrap();
    assert_eq!(pf.state_count(), 2);
    // Point the link at the inbound state (same flow, the other key).
    let in_slot = linked.meta.pf_link & 0xffff_ffff;
    let mut p = pf_in(&pf, &n, udp(5000, 53));
    p.meta.pf_link = in_slot << 32 | in_slot;
    pf_out(&pf, &n, p).unwrap();
    assert_eq!(pf.state_count(), 2, "no second outbound state");
    let s = state_lines(&pf);
    assert_eq!(s.matches("3:0 pkts").count(), 2, "{s}");
}

/// A small xorshift generator (deterministic runs).
struct Rng(u32);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// The in hook over a batch (the stack's path, with the batch's lookup
/// guesses) decides every packet as the per-packet hook does, whatever
/// the states did in between: random flows, junk and truncated packets,
/// flushes, kills and reloads, on two filters fed the same sequence.
#[test]
fn a_batch_decides_as_packets_one_by_one_under_churn() {
    let n = net();
    let (batched, single) = (pf_with(&n, RULES), pf_with(&n, RULES));
    let mut rng = Rng(0x2545_f491);
    let now = Instant::from_secs(10);
    for round in 0..400 {
        let len = (rng.next() % 70) as usize;
        let mut batch = Vec::new();
        for _ in 0..len {
            let r = rng.next();
            let mut p = udp(5000 + (r % 24) as u16, if r & 0x100 != 0 { 53 } else { 54 });
            match (r >> 12) % 16 {
                // A truncated packet, or one with a byte changed.
                0 => {
                    let cut = (r >> 20) as usize % p.len();
                    p = PacketBuf::from_slice(&p.data()[..cut]);
                }
                1 => {
                    let at = (r >> 20) as usize % p.len();
                    p.data_mut()[at] ^= (r >> 8) as u8 | 1;
                }
                _ => {}
            }
            batch.push(p);
        }
        let copies: Vec<PacketBuf> = batch.iter().map(|p| PacketBuf::from_slice(p.data())).collect();
        let mut slots: Vec<Option<PacketBuf>> = batch.into_iter().map(Some).collect();
        let mut decisions = vec![Decision::Pass; len];
        batched.test_batch(0, now, Direction::In, &n.em0, &mut slots, &mut decisions, &mut Bufs, &mut vec![]);
        let (mut passed, mut dropped, mut consumed) = (Vec::new(), 0, 0);
        for (slot, d) in slots.into_iter().zip(decisions) {
            match d {
                Decision::Pass => passed.push(slot.expect("a passed packet stays in its slot")),
                Decision::Drop => {
                    assert!(slot.is_some(), "a blocked packet stays in its slot");
                    dropped += 1
                }
                Decision::Consumed => {
                    assert!(slot.is_none(), "a kept fragment leaves its slot");
                    consumed += 1
                }
            }
        }
        let (mut one_by_one, mut kept) = (Vec::new(), 0);
        for p in copies {
            match single.test(0, now, Direction::In, &n.em0, p, &mut Bufs, &mut vec![]) {
                Verdict::Pass(p) => one_by_one.push(p),
                Verdict::Drop(_) => {}
                // A byte turned the packet into a fragment, kept.
                Verdict::Consumed => kept += 1,
            }
        }
        assert_eq!(passed.len(), one_by_one.len(), "round {round}");
        assert_eq!(consumed, kept, "round {round}");
        assert_eq!(dropped + passed.len() + kept, len, "round {round}");
        for (a, b) in passed.iter().zip(&one_by_one) {
            assert_eq!(a.data(), b.data(), "round {round}: same packets, same order");
            assert_eq!(a.meta.pf_link, b.meta.pf_link, "round {round}: the same state found");
        }
        // pf out: the batch against one by one.
        let mut slots: Vec<Option<PacketBuf>> = passed.into_iter().map(Some).collect();
        let mut decisions = vec![Decision::Consumed; slots.len()];
        batched.test_batch(0, now, Direction::Out, &n.em1, &mut slots, &mut decisions, &mut Bufs, &mut vec![]);
        for (d, b) in decisions.into_iter().zip(one_by_one) {
            assert_eq!(d == Decision::Pass, pf_out(&single, &n, b).is_ok(), "round {round}");
        }
        match rng.next() % 40 {
            0 => assert_eq!(batched.flush_states(), single.flush_states()),
            1 => {
                let k = (CLIENT, None);
                assert_eq!(batched.kill_states(k.0, k.1), single.kill_states(k.0, k.1));
            }
            2 => {
                let text = if round % 2 == 0 { "block all\npass in all\n" } else { RULES };
                for pf in [&batched, &single] {
                    pf.load(&softnet_pf::parse_ruleset(text, "pf.conf", &n.resolver).unwrap(), &n.resolver).unwrap();
                }
            }
            _ => {}
        }
        let strip = |s: String| s.lines().filter(|l| !l.contains("id:")).collect::<Vec<_>>().join("\n");
        assert_eq!(strip(state_lines(&batched)), strip(state_lines(&single)), "round {round}");
    }
    assert!(batched.state_count() > 0);
}

#[test]
fn a_disabled_filter_passes_a_whole_batch_untouched() {
    let n = net();
    let pf = pf_with(&n, "block all\n");
    pf.disable(Instant::from_secs(10)).unwrap();
    let mut batch: Vec<PacketBuf> = (0..5).map(|i| udp(5000 + i, 53)).collect();
    let mut slots: Vec<Option<PacketBuf>> = batch.drain(..).map(Some).collect();
    slots.push(None);
    let mut decisions = vec![Decision::Drop; 6];
    pf.test_batch(0, Instant::from_secs(10), Direction::In, &n.em0, &mut slots, &mut decisions, &mut Bufs, &mut vec![]);
    assert_eq!(decisions[5], Decision::Consumed, "an empty slot stays empty");
    for (i, (slot, d)) in slots.iter().zip(&decisions).take(5).enumerate() {
        assert_eq!(*d, Decision::Pass);
        assert_eq!(slot.as_ref().unwrap().data(), udp(5000 + i as u16, 53).data());
    }
    assert_eq!(pf.state_count(), 0);
}
