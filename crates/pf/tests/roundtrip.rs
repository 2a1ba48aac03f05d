//! Property: any rule the parser accepts prints to a form that parses
//! back to the same printed text (pfctl's "selfpf" check, over generated
//! rules instead of a fixed list).

use proptest::prelude::*;
use softnet_pf::model::OptLevel;
use softnet_pf::{parse_ruleset, print_ruleset, PrintOpts, StaticResolver};

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(items)
}

const HOSTS: &[&str] = &[
    "",
    "any",
    "10.0.0.0/8",
    "! 192.168.1.1",
    "<t>",
    "! <t>",
    "(em0)",
    "(em1:network)",
    "2001:db8::/32",
    "self",
    "em1:network",
    "em0:0",
    "{ 10.0.0.1, 2001:db8::1 }",
    "{ 10.0.0.1 ! 10.0.0.2 }",
    "no-route",
    "urpf-failed",
    "10.1.1.1 - 10.1.1.9",
];
const PORTS: &[&str] =
    &["", "port 22", "port ssh", "port { 80 443 }", "port 1000:2000", "port > 1023", "port 1 >< 5", "port != 7"];

fn endpoint(kw: &'static str) -> impl Strategy<Value = String> {
    (pick(HOSTS), prop_oneof![3 => Just(""), 1 => pick(PORTS)]).prop_map(move |(h, p)| {
        if h.is_empty() && p.is_empty() {
            String::new()
        } else {
            format!("{kw} {h} {p}")
        }
    })
}

fn rule() -> impl Strategy<Value = String> {
    let head = (
        pick(&[
            "pass",
            "block",
            "block drop",
            "block return",
            "block return-rst(ttl 3)",
            "match",
            "block return-icmp(host-unr, 3)",
        ]),
        pick(&["", "in", "out"]),
        pick(&["", "log", "log (all, matches)"]),
        pick(&["", "quick"]),
        pick(&["", "on em0", "on ! em1", "on { em0 lo0 }", "on egress"]),
        pick(&["", "inet", "inet6"]),
        pick(&["", "proto tcp", "proto udp", "proto icmp", "proto { tcp udp }", "proto 132", "proto ipv6-icmp"]),
    );
    let opts = proptest::collection::vec(
        pick(&[
            "flags S/SA",
            "flags any",
            "flags /FSRA",
            "keep state",
            "no state",
            "modulate state",
            "keep state (max 10, if-bound, tcp.first 5)",
            "keep state (floating, no-sync)",
            "tos 0x10",
            "allow-opts",
            "label \"r$nr $srcaddr:$dstport\"",
            "tag T",
            "tagged T",
            "! tagged U",
            "rtable 2",
            "icmp-type echoreq code 0",
            "icmp6-type neighbrsol",
        ]),
        0..4,
    );
    (head, endpoint("from"), endpoint("to"), opts)
        .prop_map(|((a, d, l, q, on, af, p), f, t, o)| format!("{a} {d} {l} {q} {on} {af} {p} {f} {t} {}", o.join(" ")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn printed_rules_parse_back_the_same(rules in proptest::collection::vec(rule(), 1..6), policy in pick(&["", "set state-policy if-bound\n", "set block-policy return\n"])) {
        let r = StaticResolver::example();
        let head = format!("table <t> {{ 10.0.0.1 }}\n{policy}");
        // keep the generated rules pfctl would accept
        let rules: Vec<&String> =
            rules.iter().filter(|l| parse_ruleset(&format!("{head}{l}\n"), "pf.conf", &r).is_ok()).collect();
        if rules.is_empty() {
            return Ok(());
        }
        let src = format!("{head}{}\n", rules.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"));
        let rs = parse_ruleset(&src, "pf.conf", &r).unwrap();
        for level in [OptLevel::None, OptLevel::Basic] {
            let opts = PrintOpts { verbose: 1, opt_level: Some(level) };
            let first = print_ruleset(&rs, &opts);
            let again = parse_ruleset(&first, "pf.conf", &r);
            prop_assert!(again.is_ok(), "source:\n{}\nprinted:\n{}\nerrors: {:?}", src, first, again.err());
            let second = print_ruleset(&again.unwrap(), &opts);
            prop_assert_eq!(&first, &second, "source:\n{}", src);
        }
    }
}
