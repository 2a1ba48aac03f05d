//! State table tests: keys, probes, links, inserts and removals, the slab.

use super::*;

fn key(p: u16) -> StateKey {
    StateKey {
        addr: ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()],
        port: [p, 22],
        proto: 6,
        af: crate::addr::Af::Inet,
        rtable: 0,
    }
}

#[test]
fn a_million_states_fit_in_256_mb() {
    let per_state = std::mem::size_of::<Slot>();
    // Index: the bucket array (fixed size) plus the chain link in the slot.
    let index = BUCKETS * std::mem::size_of::<AtomicU32>();
    assert!(per_state * 1_000_000 + index <= 256 << 20, "slot {per_state} B per state + index {index} B");
    // The fast path reads and writes one line of a state: its mirrors,
    // time and recent counts.
    assert_eq!(std::mem::offset_of!(Slot, next), 64, "the fast path's fields fill the first line");
    assert!(std::mem::offset_of!(Slot, recent) + 8 <= 64);
    assert_eq!(per_state, 256);
}

#[test]
fn insert_lookup_remove_and_limit() {
    let t = StateTable::new(2);
    let a = t.insert(StateData { key: key(1), direction: DIR_IN, ..Default::default() }).unwrap();
    assert_eq!(t.find(&key(1), 0), Some(a));
    assert_eq!(
        t.insert(StateData { key: key(1), direction: DIR_IN, ..Default::default() }),
        Err(InsertError::Conflict)
    );
    // Same key, other direction: both hang off the key.
    let b = t.insert(StateData { key: key(1), direction: DIR_OUT, ..Default::default() }).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t.insert(StateData { key: key(2), ..Default::default() }), Err(InsertError::Limit));
    assert!(t.remove(a));
    assert!(!t.remove(a));
    assert_eq!(t.lookup_all(&key(1)), vec![b]);
    assert_eq!(t.find(&key(1), 0), Some(b));
    assert_eq!(t.len(), 1);
    assert_eq!(t.remove_if(|_, _| true), 1);
    assert!(t.is_empty());
}

#[test]
fn if_bound_states_come_before_floating_ones() {
    let t = StateTable::new(10);
    let f = t.insert(StateData { key: key(1), direction: DIR_IN, ..Default::default() }).unwrap();
    let b = t.insert(StateData { key: key(1), direction: DIR_IN, kif: 3, ..Default::default() }).unwrap();
    assert_eq!(t.find(&key(1), 3), Some(b));
    assert_eq!(t.find(&key(1), 4), Some(f));
    assert_eq!(t.find(&key(1), 0), Some(f));
}

#[test]
fn lock_free_lookups_never_miss_a_live_state_under_churn() {
    // Smaller under Miri, which runs it ~1,000 times slower (with its
    // data-race detector and weak-memory emulation on the real threads).
    let (kept, churned, rounds) = if cfg!(miri) { (40u16, 10u16, 3) } else { (2000, 500, 200) };
    let t = std::sync::Arc::new(StateTable::new(1 << 20));
    let keep: Vec<u32> = (0..kept)
        .map(|p| t.insert(StateData { key: key(p), direction: DIR_IN, ..Default::default() }).unwrap())
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (t, stop) = (t.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            // At least one round, however the threads are scheduled.
            while n == 0 || !stop.load(Ordering::Relaxed) {
                let ids: Vec<u32> = (0..churned)
                    .filter_map(|p| {
                        let mut k = key(p);
                        k.port[1] = 23;
                        t.insert(StateData { key: k, direction: DIR_OUT, ..Default::default() }).ok()
                    })
                    .collect();
                for i in ids {
                    assert!(t.remove(i));
                }
                n += 1;
            }
            n
        })
    };
    for round in 0..rounds {
        for (p, &idx) in keep.iter().enumerate() {
            assert_eq!(t.find(&key(p as u16), 0), Some(idx), "round {round}");
            match t.probe(key(p as u16).words(), 0) {
                Probe::Hit(v) => assert_eq!(v.idx, idx),
                Probe::Busy => {}
                Probe::Miss => panic!("miss on a live state"),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert!(churn.join().unwrap() > 0);
    assert_eq!(t.len(), kept as usize);
}

#[test]
fn a_link_finds_only_the_state_a_probe_would_find() {
    let t = StateTable::new(100);
    let a = t.insert(StateData { key: key(1), direction: DIR_OUT, ..Default::default() }).unwrap();
    let v = t.probe_linked(a + 1, key(1).words(), 7).expect("alone and usable");
    assert_eq!(v.idx, a);
    assert!(t.probe_linked(0, key(1).words(), 7).is_none(), "no link");
    assert!(t.probe_linked(a + 1, key(2).words(), 7).is_none(), "another key");
    assert!(t.probe_linked(a + 100, key(1).words(), 7).is_none(), "a slot never used");
    // A second state on the key: the link no longer decides.
    let b = t.insert(StateData { key: key(1), direction: DIR_IN, kif: 7, ..Default::default() }).unwrap();
    assert!(t.probe_linked(a + 1, key(1).words(), 7).is_none());
    assert!(t.probe_linked(b + 1, key(1).words(), 7).is_none());
    assert!(matches!(t.probe(key(1).words(), 7), Probe::Hit(v) if v.idx == b), "if-bound first");
    // Alone again once the other goes.
    assert!(t.remove(b));
    assert_eq!(t.probe_linked(a + 1, key(1).words(), 7).map(|v| v.idx), Some(a));
    // Bound elsewhere: not usable here.
    let c = t.insert(StateData { key: key(3), direction: DIR_OUT, kif: 5, ..Default::default() }).unwrap();
    assert!(t.probe_linked(c + 1, key(3).words(), 7).is_none());
    assert_eq!(t.probe_linked(c + 1, key(3).words(), 5).map(|v| v.idx), Some(c));
    // Removed, then the slot reused for another key.
    assert!(t.remove(a));
    assert!(t.probe_linked(a + 1, key(1).words(), 7).is_none(), "removed");
    let d = t.insert(StateData { key: key(4), direction: DIR_OUT, ..Default::default() }).unwrap();
    assert_eq!(d, a, "the free slot is reused");
    assert!(t.probe_linked(a + 1, key(1).words(), 7).is_none(), "reused for another key");
    assert_eq!(t.probe_linked(a + 1, key(4).words(), 7).map(|v| v.idx), Some(d));
    // Purge-marked (TCP state reuse): never found.
    t.with_state(key(4).words(), 7, |_, st| st.timeout = TIMEOUT_PURGE).unwrap();
    assert!(t.probe_linked(d + 1, key(4).words(), 7).is_none());
    // The reverse link is a plain hint on the slot, cleared on reuse.
    t.set_rev(c, d + 1);
    assert_eq!(t.rev(c), d + 1);
    assert!(t.remove(c));
    let e = t.insert(StateData { key: key(5), direction: DIR_IN, ..Default::default() }).unwrap();
    assert_eq!(e, c);
    assert_eq!(t.rev(e), 0);
}

#[test]
fn links_never_disagree_with_probes_under_random_churn() {
    // Few keys, interfaces and directions, so keys often hold two
    // states and slots are reused for other keys.
    let t = StateTable::new(64);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut live: Vec<u32> = vec![];
    for _ in 0..if cfg!(miri) { 200 } else { 20_000 } {
        let r = next();
        if r % 3 != 0 || live.is_empty() {
            let st = StateData {
                key: key((r >> 8) as u16 % 6),
                direction: if r & 16 != 0 { DIR_IN } else { DIR_OUT },
                kif: (r >> 20) as u32 % 3,
                timeout: if r % 29 == 0 { TIMEOUT_PURGE } else { 0 },
                ..Default::default()
            };
            if let Ok(i) = t.insert(st) {
                live.push(i);
            }
        } else {
            let i = live.swap_remove((r >> 8) as usize % live.len());
            assert!(t.remove(i));
        }
        for slot in 0..t.high_water() {
            for p in 0..6 {
                for ifidx in 0..3 {
                    let k = key(p).words();
                    if let Some(v) = t.probe_linked(slot + 1, k, ifidx) {
                        match t.probe(k, ifidx) {
                            Probe::Hit(w) => assert_eq!(v.idx, w.idx, "slot {slot} key {p} if {ifidx}"),
                            _ => panic!("link found slot {slot} for key {p} on {ifidx}, probe did not"),
                        }
                    }
                    let locked = t.with_state_linked(slot + 1, k, ifidx, |_, _, _| ()).map(|(i, _)| i);
                    assert_eq!(locked, t.find(&key(p), ifidx), "locked path, slot {slot} key {p} if {ifidx}");
                }
            }
        }
    }
}

#[test]
fn reversed_key_words_are_the_other_sides_key() {
    let k = key(1234);
    let mut r = k;
    r.addr.swap(0, 1);
    r.port.swap(0, 1);
    assert_eq!(reversed(k.words()), r.words());
    assert_eq!(reversed(reversed(k.words())), k.words());
}

fn nat_key(p: u16) -> StateKey {
    StateKey {
        addr: ["10.0.0.1".parse().unwrap(), "192.0.2.1".parse().unwrap()],
        port: [p, 50001],
        proto: 6,
        af: crate::addr::Af::Inet,
        rtable: 0,
    }
}

#[test]
fn a_translating_state_is_found_by_both_keys_and_leaves_both() {
    let t = StateTable::new(10);
    let a =
        t.insert_nat(StateData { key: key(1), direction: DIR_OUT, ..Default::default() }, Some(nat_key(1))).unwrap();
    assert_eq!(t.find(&key(1), 0), Some(a));
    assert_eq!(t.find(&nat_key(1), 0), Some(a));
    assert_eq!(t.nat_key(a), Some(nat_key(1).words()));
    assert!(t.get(a).unwrap().flags & sflags::NAT != 0);
    assert!(t.key_in_use(key(1).words()) && t.key_in_use(nat_key(1).words()));
    assert!(matches!(t.probe(nat_key(1).words(), 0), Probe::Hit(v) if v.idx == a));
    // the translated tuple is taken: another state cannot have it
    assert_eq!(
        t.insert_nat(StateData { key: key(2), direction: DIR_OUT, ..Default::default() }, Some(nat_key(1))),
        Err(InsertError::Conflict)
    );
    assert_eq!(t.with_state(nat_key(1).words(), 0, |i, _| i), Some(a));
    assert!(t.remove(a));
    assert_eq!(t.find(&key(1), 0), None);
    assert_eq!(t.find(&nat_key(1), 0), None);
    assert!(!t.key_in_use(nat_key(1).words()));
    // a translation to the same key is no translation
    let b = t.insert_nat(StateData { key: key(3), ..Default::default() }, Some(key(3))).unwrap();
    assert_eq!(t.nat_key(b), None);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(if cfg!(miri) { 2 } else { 24 }))]
    /// Inserts and removals of translating and plain states against a
    /// reference map: every live key (own or translated) finds its state,
    /// every other key nothing, whatever chains the keys share.
    #[test]
    fn both_keys_index_like_a_map(ops in proptest::collection::vec((0u16..40, 0u16..40, proptest::bool::ANY, proptest::bool::ANY), 1..120)) {
        use std::collections::HashMap;
        let t = StateTable::new(1000);
        let mut by_key: HashMap<(u64, u64), u32> = HashMap::new();
        let mut keys_of: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
        for (p, q, nat, remove) in ops {
            if remove {
                if let Some(&idx) = by_key.get(&key(p).words()) {
                    proptest::prop_assert!(t.remove(idx));
                    for k in keys_of.remove(&idx).unwrap() {
                        by_key.remove(&k);
                    }
                }
                continue;
            }
            let nk = nat.then(|| nat_key(q));
            let ks: Vec<(u64, u64)> = std::iter::once(key(p).words()).chain(nk.map(|k| k.words())).collect();
            let free = ks.iter().all(|k| !by_key.contains_key(k));
            let r = t.insert_nat(StateData { key: key(p), direction: DIR_OUT, ..Default::default() }, nk);
            proptest::prop_assert_eq!(r.is_ok(), free);
            if let Ok(idx) = r {
                for k in &ks {
                    by_key.insert(*k, idx);
                }
                keys_of.insert(idx, ks);
            }
            for x in 0..40u16 {
                for k in [key(x), nat_key(x)] {
                    proptest::prop_assert_eq!(t.find(&k, 0), by_key.get(&k.words()).copied());
                }
            }
        }
    }
}

fn key6(a: &str, b: &str, p: u16) -> StateKey {
    StateKey {
        addr: [a.parse().unwrap(), b.parse().unwrap()],
        port: [p, 443],
        proto: 6,
        af: crate::addr::Af::Inet6,
        rtable: 0,
    }
}

/// IPv6 keys go through the same index as IPv4 ones: found by their full
/// addresses (an address differing in any word is another key), never
/// equal to an IPv4 key with the same low words, and their addresses'
/// ids go when the last state holding them goes.
#[test]
fn ipv6_keys_are_found_by_their_whole_addresses_and_release_their_ids() {
    let t = StateTable::new(100);
    let k = key6("2001:db8:a::1", "2001:db8:b::2", 1000);
    let a = t.insert(StateData { key: k, direction: DIR_IN, ..Default::default() }).unwrap();
    assert_eq!(t.find(&k, 0), Some(a));
    assert_eq!(unpack(k.words()), k);
    assert_eq!(t.get(a).unwrap().key, k);
    // Another address in the first word only, or the last word only.
    assert_eq!(t.find(&key6("2001:db8:c::1", "2001:db8:b::2", 1000), 0), None);
    assert_eq!(t.find(&key6("2001:db8:a::1", "2001:db8:b::3", 1000), 0), None);
    // The IPv4 key with the same first words is another key.
    let mut v4 = k;
    v4.af = crate::addr::Af::Inet;
    assert_eq!(t.find(&v4, 0), None);
    assert_ne!(v4.words(), k.words());
    // Same addresses, other ports: a second state; both hold the ids.
    let k2 = key6("2001:db8:a::1", "2001:db8:b::2", 1001);
    let b = t.insert(StateData { key: k2, direction: DIR_IN, ..Default::default() }).unwrap();
    assert!(t.remove(a));
    assert_eq!(t.find(&k2, 0), Some(b));
    assert_ne!(v6ids::lookup(k.addr[0]), v6ids::NO_ID);
    assert!(t.remove(b));
    assert_eq!(v6ids::lookup(k.addr[0]), v6ids::NO_ID);
    assert_eq!(v6ids::lookup(k.addr[1]), v6ids::NO_ID);
    // A refused insert gives its holds back too.
    let t1 = StateTable::new(0);
    let k3 = key6("2001:db8:d::1", "2001:db8:d::2", 7);
    assert_eq!(t1.insert(StateData { key: k3, ..Default::default() }), Err(InsertError::Limit));
    assert_eq!(v6ids::lookup(k3.addr[0]), v6ids::NO_ID);
}

#[test]
fn a_dropped_table_gives_back_its_ipv6_ids() {
    let k = key6("2001:db8:77::1", "2001:db8:77::2", 5);
    let t = StateTable::new(10);
    t.insert(StateData { key: k, direction: DIR_OUT, ..Default::default() }).unwrap();
    assert_ne!(v6ids::lookup(k.addr[0]), v6ids::NO_ID);
    drop(t);
    assert_eq!(v6ids::lookup(k.addr[0]), v6ids::NO_ID);
    assert_eq!(v6ids::lookup(k.addr[1]), v6ids::NO_ID);
}

/// A state's `fast` bits (published with it, read by the fast paths)
/// say exactly what the per-packet tests they replace said: the packet
/// leaves the peers and the timeout as they are (`other_step`, with a
/// diverted state's timeout never matching), the state has no flag but
/// `NAT` among those that ask the verdict for work, no tag, and (its own
/// way) no rtable; UDP only. Every combination of those fields, both
/// ways.
#[test]
fn fast_bits_say_what_the_per_packet_tests_said() {
    use crate::compile::tidx;
    use crate::names::Timeout;
    let plain_mask =
        sflags::LOG_ALL | sflags::LOG_MATCHES_ALL | sflags::NAT | sflags::SCRUB | sflags::ROUTED | sflags::AFTO;
    let timeouts =
        [Timeout::UdpFirst, Timeout::UdpSingle, Timeout::UdpMultiple, Timeout::OtherSingle, Timeout::TcpFirst];
    let flag_sets = [0, sflags::NAT, sflags::LOG_ALL, sflags::SCRUB, sflags::ROUTED, sflags::AFTO, sflags::ALLOW_OPTS];
    let t = StateTable::new(1 << 16);
    let (mut n, mut fast_seen) = (0u16, [0usize; 4]);
    for proto in [17u8, 6, 1] {
        for (s, d) in (0..3u8).flat_map(|s| (0..3u8).map(move |d| (s, d))) {
            for to in timeouts {
                for flags in flag_sets {
                    for (tag, rtable, diverted) in [(0u16, -1i16, false), (7, -1, false), (0, 3, false), (0, -1, true)]
                    {
                        n += 1;
                        let mut k = key(n);
                        k.proto = proto;
                        let mut st = StateData {
                            key: k,
                            direction: DIR_IN,
                            flags,
                            tag,
                            rtable,
                            live: true,
                            ..Default::default()
                        };
                        st.src.state = s;
                        st.dst.state = d;
                        st.timeout = tidx(to) as u8;
                        st.src_flags = if diverted { srcflags::DIVERTED } else { 0 };
                        let idx = t.insert(st).unwrap();
                        let Probe::Hit(v) = t.probe(k.words(), 0) else { panic!("inserted") };
                        assert_eq!(v.idx, idx);
                        for fwd in [true, false] {
                            // the tests of `test_established` before the bits
                            let (s0, d0) = if fwd { (v.src_state, v.dst_state) } else { (v.dst_state, v.src_state) };
                            let (mut s1, mut d1) = (s0, d0);
                            let step = other_step(proto == 17, &mut s1, &mut d1);
                            let steady = s1 == s0 && d1 == d0 && v.timeout == tidx(step) as u8;
                            let extra = v.flags & plain_mask;
                            let want = proto == 17
                                && steady
                                && (extra == 0 || extra == sflags::NAT)
                                && v.tag == 0
                                && !(fwd && v.rtable >= 0);
                            let bit = if fwd { FAST_FWD } else { FAST_REV };
                            assert_eq!(v.fast & bit != 0, want, "{st:?} fwd {fwd}");
                            // an inbound state: the in hook's packets go its way
                            let hook = if fwd { FAST_IN } else { FAST_OUT };
                            assert_eq!(v.fast & hook != 0, want, "{st:?} fwd {fwd}");
                        }
                        fast_seen[(v.fast & (FAST_FWD | FAST_REV)) as usize] += 1;
                    }
                }
            }
        }
    }
    assert!(fast_seen.iter().all(|&c| c > 0), "every combination of the bits is made: {fast_seen:?}");
}

/// The hook bits (`FAST_IN`, `FAST_OUT`) are the way bits of the hook's
/// packets, which the state's direction decides; no fast bit is left on a
/// state being purged or removed; and `probe_fast4` finds a state, by its
/// link or by a search, exactly when its hook bit is set.
#[test]
fn fast_hook_bits_follow_the_direction_and_the_state_s_life() {
    use crate::compile::tidx;
    use crate::names::Timeout;
    let t = StateTable::new(16);
    let fast_bits = |idx: u32| (t.slot(idx).unwrap().extra.load(Ordering::Relaxed) >> 48) as u8;
    for (n, direction) in [(1u16, DIR_IN), (2, DIR_OUT)] {
        let mut k = key(n);
        k.proto = 17;
        let mut st = StateData { key: k, direction, live: true, ..Default::default() };
        st.src.state = udps::MULTIPLE;
        st.dst.state = udps::MULTIPLE;
        st.timeout = tidx(Timeout::UdpMultiple) as u8;
        let idx = t.insert(st).unwrap();
        let w = k.words();
        let found =
            |link: u32| (t.probe_fast4::<true>(link, w, 0).is_some(), t.probe_fast4::<false>(link, w, 0).is_some());
        assert_eq!(fast_bits(idx), FAST_FWD | FAST_REV | FAST_IN | FAST_OUT);
        assert_eq!(found(idx + 1), (true, true), "by the link");
        assert_eq!(found(0), (true, true), "by a search");
        // An rtable takes the state's own way off the fast path.
        t.with_state(w, 0, |_, st| st.rtable = 3).unwrap();
        let own_way = if direction == DIR_IN { FAST_IN } else { FAST_OUT };
        assert_eq!(fast_bits(idx), FAST_REV | (FAST_IN | FAST_OUT) & !own_way);
        assert_eq!(found(idx + 1), (direction == DIR_OUT, direction == DIR_IN));
        let fv = t.probe_fast4::<true>(0, w, 0).or(t.probe_fast4::<false>(0, w, 0)).unwrap().0;
        assert!(!fv.fwd && !fv.nat && fv.idx == idx);
        t.with_state(w, 0, |_, st| st.rtable = -1).unwrap();
        // Marked for the purge, then removed: no bit at all.
        t.with_state(w, 0, |_, st| st.timeout = TIMEOUT_PURGE).unwrap();
        assert_eq!(fast_bits(idx), 0);
        assert_eq!(found(idx + 1), (false, false));
        assert!(t.remove(idx));
        assert_eq!(fast_bits(idx), 0);
        assert_eq!(found(idx + 1), (false, false));
        assert_eq!(found(0), (false, false));
    }
}

/// What a translating state's fast-path packet is rewritten to
/// (`StateTable::nat_target`), as `eval::nat::view_target` picks it from
/// the state's keys: going its way by its own key, the translated key;
/// coming back by the translated key, its own; a packet by a key against
/// that key's way, none (the general path's), and none once the slot
/// holds another state.
#[test]
fn a_translating_state_s_fast_target_is_its_other_key() {
    use crate::compile::tidx;
    use crate::names::Timeout;
    let t = StateTable::new(16);
    let (mut own, mut nk) = (key(1), nat_key(1));
    own.proto = 17;
    nk.proto = 17;
    let state = |k: StateKey| {
        let mut st = StateData { key: k, direction: DIR_OUT, live: true, ..Default::default() };
        st.src.state = udps::MULTIPLE;
        st.dst.state = udps::MULTIPLE;
        st.timeout = tidx(Timeout::UdpMultiple) as u8;
        st
    };
    let idx = t.insert_nat(state(own), Some(nk)).unwrap();
    let (w, n) = (own.words(), nk.words());
    // the fast path finds it both ways, flagged as translating
    let out = t.probe_fast4::<false>(idx + 1, w, 0).map(|(v, _)| (v.idx, v.fwd, v.nat));
    assert_eq!(out, Some((idx, true, true)));
    let back = t.probe_fast4::<true>(0, n, 0).map(|(v, _)| (v.idx, v.fwd, v.nat));
    assert_eq!(back, Some((idx, false, true)));
    assert_eq!(t.nat_target(idx, w, true), Some(n), "its way: to the translated key");
    assert_eq!(t.nat_target(idx, n, false), Some(w), "back: to its own key");
    assert_eq!(t.nat_target(idx, w, false), None, "its own key against its way");
    assert_eq!(t.nat_target(idx, n, true), None, "the translated key against its way");
    // removed, the slot taken by another translating state: no target
    // for the old keys
    assert!(t.remove(idx));
    let other = t.insert_nat(state(key(2)), Some(nat_key(2))).unwrap();
    assert_eq!(other, idx, "the slot is reused");
    assert_eq!(t.nat_target(idx, w, true), None);
    assert_eq!(t.nat_target(idx, n, false), None);
    assert_eq!(t.nat_target(idx, key(2).words(), true), Some(nat_key(2).words()));
}

/// The lock-free counts (`Slot::recent`) fold into the totals when a
/// word fills or a packet is too large for it, and a locked writer in between
/// neither loses nor doubles any: every count read back exactly.
#[test]
fn recent_counts_fold_into_the_totals_exactly() {
    let t = StateTable::new(4);
    let a = t.insert(StateData { key: key(1), direction: DIR_IN, ..Default::default() }).unwrap();
    let (mut p, mut b) = ([0u64; 2], [0u64; 2]);
    for n in 0..5_000u64 {
        // full words of packets fold, and so does a packet too large for
        // a word (an IPv6 jumbogram's length)
        let len = match n % 11 {
            0 => 70_000,
            1 | 5 => 65_535,
            _ => 60 + n % 1400,
        };
        let fwd = n % 3 != 0;
        let i = usize::from(!fwd);
        t.touch(a, fwd, len, 0);
        (p[i], b[i]) = (p[i] + 1, b[i] + len);
        if n % 97 == 0 {
            // a locked writer counting the other way (the general path)
            t.with_state(key(1).words(), 0, |_, st| {
                st.packets[1 - i] += 1;
                st.bytes[1 - i] += 40;
            })
            .expect("state there");
            (p[1 - i], b[1 - i]) = (p[1 - i] + 1, b[1 - i] + 40);
        }
        if n % 501 == 0 {
            let st = t.get(a).expect("live");
            assert_eq!((st.packets, st.bytes), (p, b), "after {n} packets");
        }
    }
    let st = t.get(a).expect("live");
    assert_eq!((st.packets, st.bytes), (p, b));
    // A state inserted into the slot again starts from its own counts.
    assert!(t.remove(a));
    t.touch(a, true, 100, 0);
    let c = t.insert(StateData { key: key(2), direction: DIR_IN, packets: [3, 0], ..Default::default() }).unwrap();
    assert_eq!(c, a, "the slot is reused");
    let st = t.get(c).expect("live");
    assert_eq!((st.packets, st.bytes), ([3, 0], [0, 0]));
}
