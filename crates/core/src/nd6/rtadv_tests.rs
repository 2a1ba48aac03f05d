use super::*;
use softnet_wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};

const IF1: IfIndex = IfIndex(1);
const IF2: IfIndex = IfIndex(2);
const T0: Instant = Instant::from_secs(1000);
const MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 9, 9]);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn run(a: &mut Advertiser, now: Instant, rng: &mut WorkerRng) -> Vec<RaSend> {
    let mut v = Vec::new();
    a.timer(now, |_| true, rng, &mut v);
    v
}

/// Steps the clock to every deadline until `until`; returns the send times
/// and destinations.
fn sends_until(a: &mut Advertiser, until: Instant, rng: &mut WorkerRng) -> Vec<(Instant, RaDest)> {
    let mut out = Vec::new();
    while let Some(t) = a.next_deadline() {
        if t > until {
            break;
        }
        for s in run(a, t, rng) {
            out.push((t, s.dest));
        }
    }
    out
}

#[test]
fn the_first_advertisement_is_within_a_second_and_the_initial_three_at_most_16_s_apart() {
    for seed in 0..20 {
        let mut rng = WorkerRng::seeded(seed);
        let mut a = Advertiser::new();
        assert_eq!(a.configure(T0, IF1, Some(RaConfig::default()), true, &mut rng), None);
        let sends = sends_until(&mut a, T0 + Duration::from_secs(3600), &mut rng);
        assert!(sends.iter().all(|s| s.1 == RaDest::AllNodes));
        assert!(sends[0].0 <= T0 + Duration::from_secs(1), "seed {seed}: first at {:?}", sends[0].0);
        let gaps: Vec<Duration> = sends.windows(2).map(|w| w[1].0 - w[0].0).collect();
        for (k, g) in gaps.iter().enumerate() {
            if k < MAX_INITIAL_RTR_ADVERTISEMENTS as usize {
                assert!(*g <= MAX_INITIAL_RTR_ADVERT_INTERVAL, "seed {seed}: initial gap {k} is {g:?}");
            } else {
                assert!(
                    (DEFAULT_MIN_INTERVAL..=DEFAULT_MAX_INTERVAL).contains(g),
                    "seed {seed}: gap {k} is {g:?}, not in [200 s, 600 s]"
                );
            }
        }
        assert!(gaps.len() >= 8, "an hour holds at least 3 + 5 advertisements");
    }
}

#[test]
fn intervals_follow_a_configured_min_and_max() {
    let mut rng = WorkerRng::seeded(7);
    let mut a = Advertiser::new();
    let cfg = RaConfig {
        min_interval: Duration::from_secs(3),
        max_interval: Duration::from_secs(4),
        router_lifetime: 30,
        ..RaConfig::default()
    };
    a.configure(T0, IF1, Some(cfg), true, &mut rng);
    let sends = sends_until(&mut a, T0 + Duration::from_secs(120), &mut rng);
    for w in sends.windows(2) {
        let g = w[1].0 - w[0].0;
        assert!((Duration::from_secs(3)..=Duration::from_secs(4)).contains(&g), "{g:?}");
    }
}

#[test]
fn nothing_goes_out_before_the_link_local_address_is_ready_nor_while_down() {
    let mut rng = WorkerRng::seeded(1);
    let mut a = Advertiser::new();
    a.configure(T0, IF1, Some(RaConfig::default()), false, &mut rng);
    assert_eq!(a.next_deadline(), None, "down: no deadline");
    a.set_up(T0, IF1, true, &mut rng);
    let due = a.next_deadline().unwrap();
    let mut v = Vec::new();
    a.timer(due, |_| false, &mut rng, &mut v);
    assert!(v.is_empty(), "link-local still tentative");
    assert_eq!(a.next_deadline(), Some(due), "still due");
    let later = due + Duration::from_millis(1500);
    a.timer(later, |i| i == IF1, &mut rng, &mut v);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].dest, RaDest::AllNodes);
}

#[test]
fn a_solicitation_with_a_link_layer_address_is_answered_unicast_within_max_ra_delay_time() {
    for seed in 0..10 {
        let mut rng = WorkerRng::seeded(seed);
        let mut a = Advertiser::new();
        a.configure(T0, IF1, Some(RaConfig::default()), true, &mut rng);
        // Past the first advertisement.
        let t1 = a.next_deadline().unwrap();
        run(&mut a, t1, &mut rng);
        let host = ip("fe80::99");
        let rs = RsHeard { ifindex: IF1, src: host, slla: Some(HOST_MAC) };
        assert!(a.rs_input(t1, rs, &mut rng));
        assert!(a.rs_input(t1, rs, &mut rng), "a repeat is merged");
        let sends = sends_until(&mut a, t1 + MAX_RA_DELAY_TIME, &mut rng);
        assert_eq!(sends.len(), 1, "seed {seed}: {sends:?}");
        assert_eq!(sends[0].1, RaDest::Unicast(host, HOST_MAC));
        assert!(sends[0].0 <= t1 + MAX_RA_DELAY_TIME);
        let st = &a.status()[0];
        assert_eq!(st.solicited, 2);
    }
}

#[test]
fn multicast_answers_are_rate_limited_to_one_per_min_delay_between_ras() {
    let mut rng = WorkerRng::seeded(3);
    let mut a = Advertiser::new();
    a.configure(T0, IF1, Some(RaConfig::default()), true, &mut rng);
    let t1 = a.next_deadline().unwrap();
    assert_eq!(run(&mut a, t1, &mut rng).len(), 1);
    // From :: (no address yet): multicast, not before t1 + 3 s.
    let rs = RsHeard { ifindex: IF1, src: Ipv6Addr::UNSPECIFIED, slla: None };
    a.rs_input(t1 + Duration::from_millis(100), rs, &mut rng);
    let d = a.next_deadline().unwrap();
    assert!(d >= t1 + MIN_DELAY_BETWEEN_RAS, "{d:?}");
    assert!(d <= t1 + MIN_DELAY_BETWEEN_RAS + MAX_RA_DELAY_TIME, "{d:?}");
    // Many more solicitations do not add advertisements.
    for k in 0..50 {
        a.rs_input(t1 + Duration::from_millis(200 + k), rs, &mut rng);
    }
    let sends = sends_until(&mut a, t1 + Duration::from_secs(4), &mut rng);
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].1, RaDest::AllNodes);
    // Long after the last multicast: answered within MAX_RA_DELAY_TIME.
    let t2 = t1 + Duration::from_secs(10);
    a.rs_input(t2, rs, &mut rng);
    let d = a.next_deadline().unwrap();
    assert!(d >= t2 && d <= t2 + MAX_RA_DELAY_TIME, "{d:?}");
}

#[test]
fn a_multicast_answer_never_moves_the_scheduled_one_later() {
    let mut rng = WorkerRng::seeded(5);
    let mut a = Advertiser::new();
    a.configure(T0, IF1, Some(RaConfig::default()), true, &mut rng);
    let first = a.next_deadline().unwrap();
    // Before the first unsolicited one, due within a second anyway.
    a.rs_input(T0, RsHeard { ifindex: IF1, src: Ipv6Addr::UNSPECIFIED, slla: None }, &mut rng);
    assert!(a.next_deadline().unwrap() <= first);
}

#[test]
fn a_unicast_flood_is_bounded_and_the_rest_gets_the_multicast_answer() {
    let mut rng = WorkerRng::seeded(9);
    let mut a = Advertiser::new();
    a.configure(T0, IF1, Some(RaConfig::default()), true, &mut rng);
    let t1 = a.next_deadline().unwrap();
    run(&mut a, t1, &mut rng);
    for k in 0..100u16 {
        let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 1, k);
        a.rs_input(t1, RsHeard { ifindex: IF1, src, slla: Some(HOST_MAC) }, &mut rng);
    }
    let sends = sends_until(&mut a, t1 + Duration::from_secs(5), &mut rng);
    let uni = sends.iter().filter(|s| matches!(s.1, RaDest::Unicast(..))).count();
    let multi = sends.iter().filter(|s| s.1 == RaDest::AllNodes).count();
    assert_eq!((uni, multi), (MAX_PENDING_UNICAST, 1));
}

#[test]
fn solicitations_on_other_interfaces_or_while_down_send_nothing() {
    let mut rng = WorkerRng::seeded(2);
    let mut a = Advertiser::new();
    a.configure(T0, IF1, Some(RaConfig::default()), false, &mut rng);
    assert!(!a.rs_input(T0, RsHeard { ifindex: IF2, src: ip("fe80::1"), slla: Some(HOST_MAC) }, &mut rng));
    assert!(a.rs_input(T0, RsHeard { ifindex: IF1, src: ip("fe80::1"), slla: Some(HOST_MAC) }, &mut rng));
    assert_eq!(a.next_deadline(), None);
}

#[test]
fn removing_the_configuration_gives_one_final_advertisement_and_stops() {
    let mut rng = WorkerRng::seeded(4);
    let mut a = Advertiser::new();
    a.configure(T0, IF1, Some(RaConfig::default()), true, &mut rng);
    a.configure(T0, IF2, Some(RaConfig::default()), false, &mut rng);
    let fin = a.configure(T0, IF1, None, true, &mut rng).unwrap();
    assert!(fin.leaving);
    assert_eq!((fin.ifindex, fin.dest), (IF1, RaDest::AllNodes));
    assert_eq!(a.remove(IF1), None, "gone already");
    assert_eq!(a.remove(IF2), None, "down: no final advertisement");
    assert_eq!(a.next_deadline(), None);
}

#[test]
fn a_changed_configuration_restarts_the_initial_advertisements_an_equal_one_does_not() {
    let mut rng = WorkerRng::seeded(6);
    let mut a = Advertiser::new();
    a.configure(T0, IF1, Some(RaConfig::default()), true, &mut rng);
    let _ = sends_until(&mut a, T0 + Duration::from_secs(600), &mut rng);
    let t = T0 + Duration::from_secs(600);
    let next = a.next_deadline().unwrap();
    assert!(next > t + Duration::from_secs(16), "in the slow phase");
    a.configure(t, IF1, Some(RaConfig::default()), true, &mut rng);
    assert_eq!(a.next_deadline(), Some(next), "unchanged");
    a.configure(t, IF1, Some(RaConfig { hop_limit: 64, ..RaConfig::default() }), true, &mut rng);
    assert!(a.next_deadline().unwrap() <= t + Duration::from_secs(1));
    assert_eq!(a.config(IF1).unwrap().hop_limit, 64);
}

fn parse_ra(options: &[u8], cfg: &RaConfig, leaving: bool, check: impl FnOnce(NdpRepr<'_>)) {
    let repr = cfg.repr(leaving, options);
    let icmp = Icmpv6Repr::Ndp(repr);
    let mut buf = vec![0u8; icmp.buffer_len()];
    let (src, dst) = (ip("fe80::1"), softnet_wire::ipv6::ALL_NODES);
    icmp.emit(src, dst, &mut buf);
    let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
    let Icmpv6Repr::Ndp(n) = Icmpv6Repr::parse(src, dst, &p).unwrap() else { panic!("not NDP") };
    assert!(n.validate(src, dst, 255).is_ok());
    check(n);
}

#[test]
fn the_advertisement_carries_the_configured_fields_and_options() {
    let cfg = RaConfig {
        hop_limit: 64,
        managed: true,
        other: true,
        preference: RouterPreference::High,
        router_lifetime: 1200,
        reachable_time: 30000,
        retrans_timer: 1000,
        mtu: 1400,
        prefixes: vec![RaPrefix {
            prefix: ip("2001:db8:9::"),
            prefix_len: 48,
            conf: PrefixConf { valid_lifetime: 100, preferred_lifetime: 50, on_link: false, autonomous: false },
        }],
        dns: DnsConf { lifetime: 900, nameservers: vec![ip("2001:db8::53")], search: vec!["example.org".into()] },
        ..RaConfig::default()
    };
    assert_eq!(cfg.check(), Ok(()));
    let addrs = [
        If6Addr { addr: ip("fe80::1"), prefix_len: 64, state: Dad6State::Preferred },
        If6Addr { addr: ip("fd00:1::1"), prefix_len: 64, state: Dad6State::Preferred },
        If6Addr { addr: ip("fd00:1::2"), prefix_len: 64, state: Dad6State::Tentative },
        If6Addr { addr: ip("fd00:2::1"), prefix_len: 64, state: Dad6State::Duplicated },
        If6Addr { addr: ip("fd00:3::1"), prefix_len: 128, state: Dad6State::Preferred },
    ];
    let prefixes = cfg.advertised_prefixes(&addrs);
    let got: Vec<String> = prefixes.iter().map(|p| format!("{}/{}", p.prefix, p.prefix_len)).collect();
    assert_eq!(got, ["2001:db8:9::/48", "fd00:1::/64"], "configured first; auto once; no ll, dup or /128");
    let mut opts = Vec::new();
    cfg.build_options(MAC, &prefixes, &mut opts);
    parse_ra(&opts, &cfg, false, |n| {
        let NdpRepr::RouterAdvert {
            hop_limit,
            managed,
            other,
            preference,
            router_lifetime,
            reachable_time,
            retrans_timer,
            ..
        } = n
        else {
            panic!("not an RA")
        };
        assert_eq!((hop_limit, managed, other, preference), (64, true, true, RouterPreference::High));
        assert_eq!((router_lifetime, reachable_time, retrans_timer), (1200, 30000, 1000));
        assert_eq!(n.lladdr(), Ok(Some(MAC)));
        assert_eq!(n.mtu(), Some(1400));
        let pis: Vec<PrefixInfo> = n.prefixes().collect();
        assert_eq!(pis.len(), 2);
        assert_eq!(
            pis[1],
            PrefixInfo {
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                valid_lifetime: 5400,
                preferred_lifetime: 2700,
                prefix: ip("fd00:1::")
            }
        );
        assert!(!pis[0].on_link && !pis[0].autonomous && pis[0].valid_lifetime == 100);
        let mut rdnss = None;
        let mut dnssl = None;
        for o in n.options().flatten() {
            match o {
                NdpOption::Rdnss { lifetime, servers } => rdnss = Some((lifetime, servers.to_vec())),
                NdpOption::Dnssl { lifetime, domains } => dnssl = Some((lifetime, domains.to_vec())),
                _ => {}
            }
        }
        assert_eq!(rdnss, Some((900, ip("2001:db8::53").octets().to_vec())));
        let (lt, d) = dnssl.unwrap();
        assert_eq!(lt, 900);
        assert_eq!(&d[..13], b"\x07example\x03org\x00");
        assert!(d.len() % 8 == 0 && d[13..].iter().all(|&b| b == 0));
    });
}

#[test]
fn not_a_default_router_and_the_leaving_advertisement_have_router_lifetime_0() {
    let cfg = RaConfig { default_router: false, preference: RouterPreference::High, ..RaConfig::default() };
    parse_ra(&[], &cfg, false, |n| {
        assert!(matches!(n, NdpRepr::RouterAdvert { router_lifetime: 0, preference: RouterPreference::Medium, .. }));
    });
    let cfg = RaConfig { hop_limit: 64, managed: true, ..RaConfig::default() };
    let mut opts = Vec::new();
    NdpOption::SourceLinkAddr(MAC).emit({
        opts.resize(8, 0);
        &mut opts
    });
    parse_ra(&opts, &cfg, true, |n| {
        assert!(matches!(
            n,
            NdpRepr::RouterAdvert { router_lifetime: 0, hop_limit: 0, managed: false, other: false, .. }
        ));
        assert_eq!(n.prefixes().count(), 0);
    });
}

#[test]
fn no_auto_prefix_advertises_only_configured_prefixes_and_source_lladdr_can_be_left_out() {
    let cfg = RaConfig { auto_prefix: None, source_lladdr: false, ..RaConfig::default() };
    let addrs = [If6Addr { addr: ip("fd00:1::1"), prefix_len: 64, state: Dad6State::Preferred }];
    assert!(cfg.advertised_prefixes(&addrs).is_empty());
    let mut opts = vec![1, 2, 3];
    cfg.build_options(MAC, &[], &mut opts);
    assert!(opts.is_empty());
}

#[test]
fn bad_configurations_are_refused_with_what_is_wrong() {
    let cases: Vec<(RaConfig, &str)> = vec![
        (
            RaConfig { max_interval: Duration::from_secs(2), ..RaConfig::default() },
            "max interval 2 out of range 4-1800",
        ),
        (RaConfig { max_interval: Duration::from_secs(1801), ..RaConfig::default() }, "max interval 1801"),
        (
            RaConfig { min_interval: Duration::from_secs(500), ..RaConfig::default() },
            "min interval 500 out of range 3-450",
        ),
        (RaConfig { min_interval: Duration::from_secs(2), ..RaConfig::default() }, "min interval 2"),
        (RaConfig { router_lifetime: 100, ..RaConfig::default() }, "router lifetime 100 out of range: 0 or 600-9000"),
        (RaConfig { router_lifetime: 9001, ..RaConfig::default() }, "router lifetime 9001"),
        (RaConfig { mtu: 1000, ..RaConfig::default() }, "mtu 1000 below the IPv6 minimum 1280"),
        (RaConfig { reachable_time: 3_600_001, ..RaConfig::default() }, "reachable time 3600001"),
        (
            RaConfig {
                auto_prefix: Some(PrefixConf { valid_lifetime: 10, preferred_lifetime: 20, ..PrefixConf::default() }),
                ..RaConfig::default()
            },
            "preferred lifetime 20 above valid lifetime 10",
        ),
        (
            RaConfig {
                prefixes: vec![RaPrefix { prefix: ip("fe80::"), prefix_len: 64, conf: PrefixConf::default() }],
                ..RaConfig::default()
            },
            "prefix fe80::/64 is not a unicast prefix",
        ),
        (
            RaConfig { dns: DnsConf { search: vec!["a..b".into()], ..DnsConf::default() }, ..RaConfig::default() },
            "empty label",
        ),
        (
            RaConfig {
                prefixes: (0..40)
                    .map(|k| RaPrefix {
                        prefix: Ipv6Addr::new(0x2001, 0xdb8, k, 0, 0, 0, 0, 0),
                        prefix_len: 64,
                        conf: PrefixConf::default(),
                    })
                    .collect(),
                ..RaConfig::default()
            },
            "over 1240",
        ),
    ];
    for (cfg, want) in cases {
        let e = cfg.check().unwrap_err();
        assert!(e.contains(want), "got {e:?}, want {want:?}");
    }
    assert_eq!(RaConfig::default().check(), Ok(()));
    assert_eq!(RaConfig { router_lifetime: 0, ..RaConfig::default() }.check(), Ok(()));
}

#[test]
fn auto_prefixes_beyond_the_size_limit_are_left_out() {
    let cfg = RaConfig::default();
    let addrs: Vec<If6Addr> = (0..60)
        .map(|k| If6Addr {
            addr: Ipv6Addr::new(0x2001, 0xdb8, k, 0, 0, 0, 0, 1),
            prefix_len: 64,
            state: Dad6State::Preferred,
        })
        .collect();
    let prefixes = cfg.advertised_prefixes(&addrs);
    assert_eq!(prefixes.len(), 60);
    let mut opts = Vec::new();
    cfg.build_options(MAC, &prefixes, &mut opts);
    assert!(16 + opts.len() <= MAX_RA_LEN);
    parse_ra(&opts, &cfg, false, |n| assert_eq!(n.prefixes().count(), (MAX_RA_LEN - 16 - 8) / 32));
}
