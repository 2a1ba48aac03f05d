//! The batch hook's IPv6 fast path (`eval::fast6`: the datagram read
//! straight to its key words, the addresses' ids through the chunk's memo
//! on pf in and from pf in's note on pf out, the search when the link
//! names no state that fits, the counters owed for the chunk) against
//! the per-packet hook, which decides every packet the general way.

use crate::common;
use crate::fast4::{rounds_both_ways, state_lines};
use common::{net, pf_with, udp6_bytes, Net};

use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;

/// The answer to a datagram as it left: addresses and ports swapped.
fn reply6(p: &PacketBuf) -> PacketBuf {
    let d = p.data();
    let addr = |at: usize| std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&d[at..at + 16]).unwrap()).to_string();
    let (sport, dport) = (u16::from_be_bytes([d[40], d[41]]), u16::from_be_bytes([d[42], d[43]]));
    PacketBuf::from_slice(&udp6_bytes(&addr(24), &addr(8), dport, sport, &[0x5a; 12]))
}

/// Enough flows that some keys are not the first of their index bucket
/// (the batch's hint names the bucket's first state only: the fast path
/// then searches), to many destination addresses (the chunk's memo
/// misses, as `softnet bench --inet6`'s 2,500 do), some of them states
/// off the fast path (a tag), some blocked, some to an address no state
/// holds: every round through the batch hook and packet by packet ends
/// in the same verdicts, states, rule counters and searches, with the
/// fast path's counts added once a chunk (`eval::fast4::Owed`).
#[test]
fn many_ipv6_flows_decide_and_count_as_the_general_path() {
    const FLOWS: u16 = 4096;
    let rules = "pass all\npass in on em0 inet6 proto udp from any port 30000:30099 tag T1\n\
                 block in on em0 inet6 proto udp to port 55\n";
    let n: Net = net();
    let (batched, single) = (pf_with(&n, rules), pf_with(&n, rules));
    let pfs = (&batched, &single);
    let now = Instant::from_secs(10);
    let frames: Vec<Vec<u8>> = (0..FLOWS)
        .map(|j| {
            let src = format!("2001:db8:1::{:x}", 2 + j % 3);
            let dst = format!("2001:db8:2::{:x}", 0x1000 + j % 1000);
            udp6_bytes(&src, &dst, 30000 + j, 53 + j % 3, &[0u8; 18])
        })
        .collect();
    rounds_both_ways(&n, pfs, now, &frames, reply6, false);
    // A third of the flows (to port 55) blocked; the rest with a state
    // each way.
    let blocked = (0..FLOWS).filter(|j| j % 3 == 2).count();
    assert_eq!(batched.state_count(), 2 * (FLOWS as usize - blocked));
    let s = state_lines(&batched, now);
    assert!(s.contains("MULTIPLE:MULTIPLE"), "answered flows: {s}");
}

/// The states the IPv6 fast path must leave to the general path, beside
/// those it takes, in one run of batches: translating states (`nat-to`
/// on the way out: their rewrite words hold ids, so
/// `eval::test_established_words::<_, true>` refuses them by link and by
/// search alike),
/// if-bound states (their interface checked as the general path checks
/// it), states made on the out hook (the in hook's packets go against
/// them: the hook bits, not the way bits, say which hook's packets take
/// the fast path) and floating ones; every round through the batch hook
/// and packet by packet ends in the same verdicts, states, rule counters
/// and searches.
#[test]
fn ipv6_nat_bound_and_outbound_states_decide_as_the_general_path() {
    const FLOWS: u16 = 1024;
    let rules = "match out on em1 inet6 proto udp from any port 30000:30199 nat-to 2001:db8:2::1\n\
                 pass all\n\
                 pass in on em0 inet6 proto udp from any port 30200:30399 no state\n\
                 pass out on em1 inet6 proto udp from any port 30200:30399\n\
                 pass in on em0 inet6 proto udp from any port 30400:30599 keep state (if-bound)\n\
                 pass out on em1 inet6 proto udp from any port 30400:30599 keep state (if-bound)\n";
    let n: Net = net();
    let (batched, single) = (pf_with(&n, rules), pf_with(&n, rules));
    let pfs = (&batched, &single);
    let now = Instant::from_secs(10);
    let frames: Vec<Vec<u8>> = (0..FLOWS)
        .map(|j| {
            let src = format!("2001:db8:1::{:x}", 2 + j % 5);
            let dst = format!("2001:db8:3::{:x}", 0x100 + j % 300);
            udp6_bytes(&src, &dst, 30000 + j % 800, 53 + j % 7, &[0u8; 18])
        })
        .collect();
    rounds_both_ways(&n, pfs, now, &frames, reply6, true);
    let s = state_lines(&batched, now);
    assert!(s.contains("2001:db8:2::1"), "translated flows: {s}");
    assert!(s.contains("MULTIPLE:MULTIPLE"), "answered flows: {s}");
    // Two states a flow: those of ports 30200:30399 made both on the way
    // out (on em1 by the first datagram, on em0 by its answer), the
    // others one in on em0 and one out on em1.
    assert_eq!(batched.state_count(), 2 * FLOWS as usize);
}
