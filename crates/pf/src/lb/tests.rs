//! pf_lb.c's pool selection and port search, against hand-computed and
//! reference answers.

use super::*;
use proptest::prelude::*;

fn ip(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

fn seq_rng(vals: Vec<u32>) -> impl FnMut(u32) -> u32 {
    let mut i = 0;
    move |n| {
        let v = vals[i % vals.len()] % n.max(1);
        i += 1;
        v
    }
}

fn pool(kind: PoolType, addrs: PoolAddrs) -> PoolSpec {
    PoolSpec { kind, addrs, sticky: false }
}

#[test]
fn bitmask_keeps_the_host_bits_of_the_source() {
    let p = pool(PoolType::Bitmask, PoolAddrs::Single { addr: ip(192, 0, 2, 0), mask: 0xffff_ff00 });
    let c = PoolCursor::new();
    let a = map_addr(&p, &c, None, ip(10, 1, 2, 77), None, None, &mut seq_rng(vec![0])).unwrap();
    assert_eq!(a, ip(192, 0, 2, 77));
}

#[test]
fn a_single_address_round_robin_is_that_address() {
    let p = pool(PoolType::RoundRobin, PoolAddrs::Single { addr: ip(192, 0, 2, 9), mask: u32::MAX });
    let c = PoolCursor::new();
    for _ in 0..3 {
        assert_eq!(map_addr(&p, &c, None, 1, None, None, &mut seq_rng(vec![0])), Some(ip(192, 0, 2, 9)));
    }
}

#[test]
fn round_robin_walks_a_table_address_by_address_and_wraps() {
    // a /31 network then a host: .0 .1 then 10.9.9.9, then again
    let blocks = [(ip(10, 0, 0, 0), 0xffff_fffe), (ip(10, 9, 9, 9), u32::MAX)];
    let bl = BlockList(&blocks[..]);
    let p = pool(PoolType::RoundRobin, PoolAddrs::Blocks(&bl));
    let c = PoolCursor::new();
    let got: Vec<u32> = (0..6).map(|_| map_addr(&p, &c, None, 1, None, None, &mut seq_rng(vec![0])).unwrap()).collect();
    assert_eq!(
        got,
        vec![ip(10, 0, 0, 0), ip(10, 0, 0, 1), ip(10, 9, 9, 9), ip(10, 0, 0, 0), ip(10, 0, 0, 1), ip(10, 9, 9, 9)]
    );
}

#[test]
fn round_robin_skips_a_nested_block() {
    // 10.0.0.0/30 with 10.0.0.1 also an entry: .0, (.1 is its own
    // block, after) .2, .3, then .1
    let blocks = [(ip(10, 0, 0, 0), 0xffff_fffc), (ip(10, 0, 0, 1), u32::MAX)];
    let bl = BlockList(&blocks[..]);
    let p = pool(PoolType::RoundRobin, PoolAddrs::Blocks(&bl));
    let c = PoolCursor::new();
    let got: Vec<u32> = (0..4).map(|_| map_addr(&p, &c, None, 1, None, None, &mut seq_rng(vec![0])).unwrap()).collect();
    assert_eq!(got, vec![ip(10, 0, 0, 0), ip(10, 0, 0, 2), ip(10, 0, 0, 3), ip(10, 0, 0, 1)]);
}

#[test]
fn an_empty_table_gives_nothing() {
    let blocks: [(u32, u32); 0] = [];
    for kind in [PoolType::RoundRobin, PoolType::Random, PoolType::LeastStates] {
        let bl = BlockList(&blocks[..]);
        let p = pool(kind, PoolAddrs::Blocks(&bl));
        assert_eq!(map_addr(&p, &PoolCursor::new(), None, 1, None, None, &mut seq_rng(vec![0])), None);
    }
}

#[test]
fn source_hash_is_stable_per_source_and_keyed() {
    let k1 = HashKey([1, 2, 3, 4]);
    let k2 = HashKey([5, 6, 7, 8]);
    let blocks = [(ip(10, 0, 0, 1), u32::MAX), (ip(10, 0, 0, 2), u32::MAX), (ip(10, 0, 0, 3), u32::MAX)];
    let bl = BlockList(&blocks[..]);
    let p1 = pool(PoolType::SourceHash(k1), PoolAddrs::Blocks(&bl));
    let c = PoolCursor::new();
    let mut r = seq_rng(vec![0]);
    for s in 0..50u32 {
        let a = map_addr(&p1, &c, None, s, None, None, &mut r).unwrap();
        let b = map_addr(&p1, &c, None, s, None, None, &mut r).unwrap();
        assert_eq!(a, b);
        // reference: index = hash mod count
        assert_eq!(a, blocks[(pf_hash(s, &k1) % 3) as usize].0);
    }
    let bl = BlockList(&blocks[..]);
    let p2 = pool(PoolType::SourceHash(k2), PoolAddrs::Blocks(&bl));
    let differs = (0..50u32)
        .any(|s| map_addr(&p1, &c, None, s, None, None, &mut r) != map_addr(&p2, &c, None, s, None, None, &mut r));
    assert!(differs, "another key maps some source elsewhere");
}

#[test]
fn least_states_picks_the_address_with_fewest_states() {
    let blocks = [(ip(10, 0, 0, 1), u32::MAX), (ip(10, 0, 0, 2), u32::MAX), (ip(10, 0, 0, 3), u32::MAX)];
    let bl = BlockList(&blocks[..]);
    let p = pool(PoolType::LeastStates, PoolAddrs::Blocks(&bl));
    let c = PoolCursor::new();
    let loads = PoolLoads::default();
    let mut r = seq_rng(vec![0]);
    let mut got = vec![];
    for _ in 0..6 {
        got.push(map_addr(&p, &c, Some(&loads), 1, None, None, &mut r).unwrap());
    }
    // each address gets two
    for b in &blocks {
        assert_eq!(got.iter().filter(|&&a| a == b.0).count(), 2, "{got:?}");
        assert_eq!(loads.get(b.0), 2);
    }
    loads.decrease(ip(10, 0, 0, 2));
    assert_eq!(map_addr(&p, &c, Some(&loads), 1, None, None, &mut r), Some(ip(10, 0, 0, 2)));
}

#[test]
fn get_sport_gives_back_the_count_of_an_address_it_moves_past() {
    let blocks = [(ip(10, 0, 0, 1), u32::MAX), (ip(10, 0, 0, 2), u32::MAX)];
    let bl = BlockList(&blocks[..]);
    let p = pool(PoolType::LeastStates, PoolAddrs::Blocks(&bl));
    let c = PoolCursor::new();
    let loads = PoolLoads::default();
    let mut r = seq_rng(vec![0]);
    // 10.0.0.1 (the first pick) has no free port: 10.0.0.2 is taken,
    // and only it counts the state.
    let full = ip(10, 0, 0, 1);
    let got = get_sport(&p, &c, Some(&loads), 17, false, 1, 1000, (5000, 5001), None, &mut r, &mut |a, _| a == full);
    assert_eq!(got, SportResult::Found { addr: ip(10, 0, 0, 2), port: 5000 });
    assert_eq!((loads.get(full), loads.get(ip(10, 0, 0, 2))), (0, 1));
    // Every port of both in use: nothing is left counted.
    let got = get_sport(&p, &c, Some(&loads), 17, false, 1, 1000, (5000, 5001), None, &mut r, &mut |_, _| true);
    assert_eq!(got, SportResult::Exhausted);
    assert_eq!((loads.get(full), loads.get(ip(10, 0, 0, 2))), (0, 1));
}

#[test]
fn sticky_address_is_used_when_the_pool_says_so() {
    let blocks = [(ip(10, 0, 0, 1), u32::MAX), (ip(10, 0, 0, 2), u32::MAX)];
    let bl = BlockList(&blocks[..]);
    let mut p = pool(PoolType::RoundRobin, PoolAddrs::Blocks(&bl));
    let c = PoolCursor::new();
    let mut r = seq_rng(vec![0]);
    assert_eq!(map_addr(&p, &c, None, 1, None, Some(ip(10, 0, 0, 2)), &mut r), Some(ip(10, 0, 0, 1)));
    p.sticky = true;
    assert_eq!(map_addr(&p, &c, None, 1, None, Some(ip(10, 0, 0, 2)), &mut r), Some(ip(10, 0, 0, 2)));
}

#[test]
fn get_sport_static_port_keeps_the_port_unless_taken() {
    let p = pool(PoolType::None, PoolAddrs::Single { addr: ip(192, 0, 2, 1), mask: u32::MAX });
    let c = PoolCursor::new();
    let r = get_sport(&p, &c, None, 17, false, 1, 4444, (0, 0), None, &mut seq_rng(vec![0]), &mut |_, _| false);
    assert_eq!(r, SportResult::Found { addr: ip(192, 0, 2, 1), port: 4444 });
    let r = get_sport(&p, &c, None, 17, false, 1, 4444, (0, 0), None, &mut seq_rng(vec![0]), &mut |_, _| true);
    assert_eq!(r, SportResult::Exhausted);
}

#[test]
fn get_sport_leaves_non_echo_icmp_alone_and_gives_echo_an_id() {
    let p = pool(PoolType::None, PoolAddrs::Single { addr: ip(192, 0, 2, 1), mask: u32::MAX });
    let c = PoolCursor::new();
    let r = get_sport(&p, &c, None, 1, false, 1, 0, (50001, 65535), None, &mut seq_rng(vec![5]), &mut |_, _| true);
    assert_eq!(r, SportResult::Found { addr: ip(192, 0, 2, 1), port: 0 });
    let r = get_sport(&p, &c, None, 1, true, 1, 7, (50001, 65535), None, &mut seq_rng(vec![99]), &mut |_, _| false);
    assert_eq!(r, SportResult::Found { addr: ip(192, 0, 2, 1), port: 100 });
}

#[test]
fn get_sport_falls_to_the_next_address_when_one_is_full() {
    let blocks = [(ip(10, 0, 0, 1), u32::MAX), (ip(10, 0, 0, 2), u32::MAX)];
    let bl = BlockList(&blocks[..]);
    let p = pool(PoolType::RoundRobin, PoolAddrs::Blocks(&bl));
    let c = PoolCursor::new();
    // every port of 10.0.0.1 in use
    let r = get_sport(&p, &c, None, 6, false, 1, 1234, (1000, 1003), None, &mut seq_rng(vec![2]), &mut |a, _| {
        a == ip(10, 0, 0, 1)
    });
    assert_eq!(r, SportResult::Found { addr: ip(10, 0, 0, 2), port: 1002 });
    // everything in use: exhausted after one round
    let r = get_sport(&p, &c, None, 6, false, 1, 1234, (1000, 1003), None, &mut seq_rng(vec![2]), &mut |_, _| true);
    assert_eq!(r, SportResult::Exhausted);
}

#[test]
fn rdr_port_maps_ranges() {
    assert_eq!(rdr_port([0, 0], 0, 80), 80);
    assert_eq!(rdr_port([8080, 0], 0, 80), 8080);
    // port 8000:8010 rdr-to port 9000:9010
    assert_eq!(rdr_port([9000, 9010], 8000, 8005), 9005);
    // a narrower target range wraps
    assert_eq!(rdr_port([9000, 9001], 8000, 8005), 9001);
}

proptest! {
    /// pf_get_sport against a reference: the port is in range, free,
    /// and when a free port exists one is found; exhausted only when
    /// none is.
    #[test]
    fn get_sport_finds_a_free_port_in_range(
        lo in 1000u16..1100, width in 0u16..40, used in proptest::collection::btree_set(1000u16..1140, 0..60),
        start in any::<u32>(),
    ) {
        let hi = lo + width;
        let p = pool(PoolType::None, PoolAddrs::Single { addr: 7, mask: u32::MAX });
        let c = PoolCursor::new();
        let r = get_sport(&p, &c, None, 6, false, 1, 5, (lo, hi), None, &mut seq_rng(vec![start]),
            &mut |_, port| used.contains(&port));
        let any_free = (lo..=hi).any(|q| !used.contains(&q));
        match r {
            SportResult::Found { addr, port } => {
                prop_assert_eq!(addr, 7);
                prop_assert!(port >= lo && port <= hi);
                prop_assert!(!used.contains(&port));
            }
            SportResult::Exhausted => prop_assert!(!any_free),
        }
    }

    /// Round-robin over any set of host blocks hands out each address
    /// once per round, in order.
    #[test]
    fn round_robin_over_hosts_is_a_rotation(hosts in proptest::collection::btree_set(1u32..1_000_000, 1..20)) {
        let blocks: Vec<(u32, u32)> = hosts.iter().map(|&h| (h, u32::MAX)).collect();
        let bl = BlockList(&blocks[..]);
        let p = pool(PoolType::RoundRobin, PoolAddrs::Blocks(&bl));
        let c = PoolCursor::new();
        let mut r = seq_rng(vec![0]);
        let got: Vec<u32> = (0..blocks.len() * 2)
            .map(|_| map_addr(&p, &c, None, 1, None, None, &mut r).unwrap()).collect();
        let want: Vec<u32> = hosts.iter().chain(hosts.iter()).copied().collect();
        prop_assert_eq!(got, want);
    }

    /// Random over a network stays in it.
    #[test]
    fn random_over_a_network_stays_inside(prefix in 16u32..32, r0 in any::<u32>()) {
        let mask = u32::MAX << (32 - prefix);
        let net = ip(172, 16, 0, 0) & mask;
        let p = pool(PoolType::Random, PoolAddrs::Single { addr: net, mask });
        let mut init = 0;
        let a = map_addr(&p, &PoolCursor::new(), None, 1, Some(&mut init), None, &mut seq_rng(vec![r0])).unwrap();
        prop_assert_eq!(a & mask, net);
        prop_assert_eq!(init, a);
    }
}

fn cpool(text: &str) -> (CPool, Option<Arc<Table>>) {
    use crate::model::{IpNet, TableEntry};
    let t = Arc::new(Table::new("pool"));
    t.add(&[
        TableEntry { negated: false, net: IpNet::host(IpAddr::V4("10.0.0.1".parse().unwrap())) },
        TableEntry { negated: false, net: IpNet::host(IpAddr::V4("10.0.0.2".parse().unwrap())) },
    ]);
    let addr = match text {
        "table" => Addr::Table("pool".into()),
        "if" => {
            Addr::Dynamic { ifname: "em0".into(), modifier: IfAddrModifier::Address, no_alias: false, prefix: None }
        }
        "if0" => {
            Addr::Dynamic { ifname: "em0".into(), modifier: IfAddrModifier::Address, no_alias: true, prefix: None }
        }
        _ => Addr::Net(IpNet::new(IpAddr::V4(text.parse().unwrap()), 32)),
    };
    let kind =
        if text.starts_with("if") && text != "if0" || text == "table" { PoolType::RoundRobin } else { PoolType::None };
    let p = Pool { addr, ifname: None, proxy_port: [NAT_PORT_LOW, NAT_PORT_HIGH], kind, sticky: false };
    let tc = t.clone();
    (CPool::new(&p, &mut |n| (n == "pool").then(|| tc.clone())).unwrap(), Some(t))
}

#[test]
fn a_table_pool_follows_the_table_and_an_emptied_one_gives_nothing() {
    let (p, t) = cpool("table");
    let none = |_: &str| None;
    assert_eq!(p.map(&none, 1, None), Some(ip(10, 0, 0, 1)));
    assert_eq!(p.map(&none, 1, None), Some(ip(10, 0, 0, 2)));
    t.unwrap().flush();
    assert_eq!(p.map(&none, 1, None), None);
    let r = p.get_sport(&none, 6, false, 1, 1234, None, &mut |_, _| false);
    assert_eq!(r, SportResult::Exhausted);
}

#[test]
fn an_interface_pool_follows_its_addresses() {
    let addrs = std::cell::RefCell::new(vec![IfAddr::new("192.0.2.1".parse().unwrap(), 24)]);
    let look = |n: &str| (n == "em0").then(|| addrs.borrow().clone());
    let (p0, _) = cpool("if0");
    assert_eq!(p0.map(&look, 1, None), Some(ip(192, 0, 2, 1)));
    // the address changes: the next connection gets the new one
    *addrs.borrow_mut() = vec![IfAddr::new("198.51.100.7".parse().unwrap(), 24)];
    assert_eq!(p0.map(&look, 1, None), Some(ip(198, 51, 100, 7)));
    // no address: nothing to translate to
    addrs.borrow_mut().clear();
    assert_eq!(p0.map(&look, 1, None), None);
    // `(if)` with aliases round-robins over them
    *addrs.borrow_mut() =
        vec![IfAddr::new("192.0.2.1".parse().unwrap(), 24), IfAddr::new("192.0.2.9".parse().unwrap(), 24)];
    let (p, _) = cpool("if");
    let got: Vec<u32> = (0..3).map(|_| p.map(&look, 1, None).unwrap()).collect();
    assert_eq!(got, vec![ip(192, 0, 2, 1), ip(192, 0, 2, 9), ip(192, 0, 2, 1)]);
}

#[test]
fn nat_ports_are_random_in_the_default_range() {
    softnet_core::rng::install(softnet_core::rng::WorkerRng::seeded(42));
    let (p, _) = cpool("192.0.2.1");
    let none = |_: &str| None;
    let mut ports = std::collections::HashSet::new();
    for _ in 0..200 {
        match p.get_sport(&none, 17, false, 1, 5353, None, &mut |_, _| false) {
            SportResult::Found { addr, port } => {
                assert_eq!(addr, ip(192, 0, 2, 1));
                assert!((NAT_PORT_LOW..=NAT_PORT_HIGH).contains(&port));
                ports.insert(port);
            }
            SportResult::Exhausted => panic!("free ports"),
        }
    }
    assert!(ports.len() > 150, "random, not sequential: {} distinct", ports.len());
}

#[test]
fn ipv6_pools_walk_their_addresses_as_ipv4_ones_do() {
    let net: u128 = u128::from("2001:db8::".parse::<std::net::Ipv6Addr>().unwrap());
    let mask = !3u128;
    let p = PoolSpec { kind: PoolType::RoundRobin, addrs: PoolAddrs::Single { addr: net, mask }, sticky: false };
    let c = PoolCursor6::fresh();
    let got: Vec<u128> =
        (0..5).map(|_| map_addr(&p, &c, None, 1u128, None, None, &mut seq_rng(vec![0])).unwrap()).collect();
    // pf counts host bits from the cursor: .0 .1 .2 .3, then the counter
    // reaches the network's own bits and the pool is at its end
    assert_eq!(got[..4], [net, net + 1, net + 2, net + 3]);
    // bitmask keeps the source's host bits; random stays in the network
    let b = PoolSpec { kind: PoolType::Bitmask, addrs: PoolAddrs::Single { addr: net, mask }, sticky: false };
    assert_eq!(map_addr(&b, &c, None, 0xffff_u128, None, None, &mut seq_rng(vec![0])), Some(net + 3));
    let r =
        PoolSpec { kind: PoolType::Random, addrs: PoolAddrs::Single { addr: net, mask: !0xffffu128 }, sticky: false };
    for seed in 0..20u32 {
        let mut init = 0u128;
        let a = map_addr(&r, &c, None, 1u128, Some(&mut init), None, &mut seq_rng(vec![seed * 7919, seed])).unwrap();
        assert_eq!(a & !0xffff, net);
        assert_eq!(init, a);
    }
}

#[test]
fn ipv6_source_hash_is_pf_hashs_words_flipped() {
    let key = HashKey([1, 2, 3, 4]);
    let a: u128 = u128::from("2001:db8::77".parse::<std::net::Ipv6Addr>().unwrap());
    let (h, addr) = a.hash(&key);
    assert_eq!(h, pf_hash_bytes(&a.to_be_bytes(), &key));
    let (lo, hi) = (h as u32, (h >> 32) as u32);
    let words = [(addr >> 96) as u32, (addr >> 64) as u32, (addr >> 32) as u32, addr as u32];
    assert_eq!(words, [lo.swap_bytes(), hi.swap_bytes(), (!hi).swap_bytes(), (!lo).swap_bytes()]);
}

#[test]
fn get_sport_finds_a_free_ipv6_port_and_gives_echo_an_id() {
    let net: u128 = u128::from("2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap());
    let p = PoolSpec { kind: PoolType::None, addrs: PoolAddrs::Single { addr: net, mask: u128::MAX }, sticky: false };
    let c = PoolCursor6::fresh();
    let mut r = seq_rng(vec![0]);
    let got = get_sport(&p, &c, None, 17, false, 5u128, 1000, (5000, 5002), None, &mut r, &mut |_, port| port < 5002);
    assert_eq!(got, SportResult::Found { addr: net, port: 5002 });
    let got = get_sport(&p, &c, None, 58, true, 5u128, 77, (50001, 65535), None, &mut r, &mut |_, port| port == 0);
    assert!(matches!(got, SportResult::Found { addr, port } if addr == net && port >= 1));
    let got = get_sport(&p, &c, None, 58, false, 5u128, 77, (50001, 65535), None, &mut r, &mut |_, _| false);
    assert_eq!(got, SportResult::Found { addr: net, port: 77 }, "other ICMPv6 keeps its id");
}
