//! Property: the rule walk with skip steps decides every packet as a plain
//! walk over all rules does (last match wins, `quick` stops, pf's default
//! is pass). Rulesets are generated from fields that skip steps cover
//! (interface, direction, protocol, addresses, ports), stateless so that
//! each packet is decided by the rules alone; the reference walk below
//! knows nothing of skip steps. The same with inline anchors (nested,
//! `quick` or not, filtered on direction, interface or protocol) against a
//! reference of current pf.c's pf_match_rule over the tree.

use crate::common;
use common::{net, pf_with, HeapBufs as Bufs};

use std::net::Ipv4Addr;

use proptest::prelude::*;
use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_wire::ipv4::{IpProtocol, Ipv4Repr};
use softnet_wire::tcp::{TcpFlags, TcpRepr};
use softnet_wire::udp::UdpRepr;

/// One address choice: its pf.conf text and what it matches.
#[derive(Debug, Clone, Copy)]
struct Host {
    text: &'static str,
    net: u32,
    mask: u32,
    negated: bool,
}

const fn host(text: &'static str, net: [u8; 4], prefix: u32, negated: bool) -> Host {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    Host { text, net: u32::from_be_bytes(net), mask, negated }
}

const HOSTS: &[Host] = &[
    host("any", [0, 0, 0, 0], 0, false),
    host("10.0.0.0/8", [10, 0, 0, 0], 8, false),
    host("10.1.0.0/16", [10, 1, 0, 0], 16, false),
    host("10.1.2.3", [10, 1, 2, 3], 32, false),
    host("! 10.1.2.3", [10, 1, 2, 3], 32, true),
    host("! 10.0.0.0/8", [10, 0, 0, 0], 8, true),
];

/// Port choices: text and the range matched (inclusive).
const PORTS: &[(&str, u16, u16)] =
    &[("", 0, u16::MAX), ("port 22", 22, 22), ("port > 1000", 1001, u16::MAX), ("port 1:100", 1, 100)];

#[derive(Debug, Clone)]
struct Rule {
    pass: bool,
    quick: bool,
    dir: Option<Direction>,
    /// (interface, negated)
    on: Option<(&'static str, bool)>,
    proto: Option<u8>,
    src: Host,
    sport: usize,
    dst: Host,
    dport: usize,
}

impl Rule {
    fn text(&self) -> String {
        let mut s = String::from(if self.pass { "pass" } else { "block drop" });
        match self.dir {
            Some(Direction::In) => s.push_str(" in"),
            Some(Direction::Out) => s.push_str(" out"),
            None => {}
        }
        if self.quick {
            s.push_str(" quick");
        }
        if let Some((i, neg)) = self.on {
            s.push_str(if neg { " on ! " } else { " on " });
            s.push_str(i);
        }
        match self.proto {
            Some(6) => s.push_str(" proto tcp"),
            Some(17) => s.push_str(" proto udp"),
            _ => {}
        }
        s.push_str(&format!(
            " from {} {} to {} {}",
            self.src.text, PORTS[self.sport].0, self.dst.text, PORTS[self.dport].0
        ));
        if self.pass {
            s.push_str(" no state");
        }
        s
    }

    fn matches(&self, p: &Packet) -> bool {
        let addr = |h: &Host, a: u32| (a & h.mask == h.net) != h.negated;
        let port = |i: usize, v: u16| v >= PORTS[i].1 && v <= PORTS[i].2;
        self.dir.is_none_or(|d| d == p.dir)
            && self.on.is_none_or(|(i, neg)| (i == p.ifname) != neg)
            && self.proto.is_none_or(|x| x == p.proto)
            && addr(&self.src, p.src)
            && addr(&self.dst, p.dst)
            && port(self.sport, p.sport)
            && port(self.dport, p.dport)
    }
}

#[derive(Debug, Clone)]
struct Packet {
    dir: Direction,
    ifname: &'static str,
    proto: u8,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
}

/// Last match wins, `quick` ends the walk; no match passes.
fn reference(rules: &[Rule], p: &Packet) -> bool {
    let mut pass = true;
    for r in rules {
        if r.matches(p) {
            pass = r.pass;
            if r.quick {
                break;
            }
        }
    }
    pass
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::sample::select(vec![None, Some(Direction::In), Some(Direction::Out)]),
        prop::sample::select(vec![None, Some(("em0", false)), Some(("em1", false)), Some(("em0", true))]),
        prop::sample::select(vec![None, Some(6u8), Some(17u8)]),
        (prop::sample::select(HOSTS), prop::sample::select(HOSTS)),
        (0..PORTS.len(), 0..PORTS.len()),
    )
        .prop_map(|(pass, quick, dir, on, proto, (src, dst), (sport, dport))| {
            // pfctl: ports only on tcp/udp rules
            let (sport, dport) = if proto.is_some() { (sport, dport) } else { (0, 0) };
            Rule { pass, quick, dir, on, proto, src, sport, dst, dport }
        })
}

const ADDRS: &[[u8; 4]] = &[[10, 1, 2, 3], [10, 1, 9, 9], [10, 7, 0, 1], [192, 168, 0, 1]];

fn packet() -> impl Strategy<Value = Packet> {
    (
        prop::sample::select(vec![Direction::In, Direction::Out]),
        prop::sample::select(vec!["em0", "em1"]),
        prop::sample::select(vec![6u8, 17u8]),
        (prop::sample::select(ADDRS), prop::sample::select(ADDRS)),
        (
            prop::sample::select(vec![22u16, 50, 80, 1001, 40000]),
            prop::sample::select(vec![22u16, 50, 80, 1001, 40000]),
        ),
    )
        .prop_map(|(dir, ifname, proto, (s, d), (sport, dport))| Packet {
            dir,
            ifname,
            proto,
            src: u32::from_be_bytes(s),
            dst: u32::from_be_bytes(d),
            sport,
            dport,
        })
}

fn wire(p: &Packet) -> PacketBuf {
    let (src, dst) = (Ipv4Addr::from(p.src), Ipv4Addr::from(p.dst));
    let (proto, l4): (IpProtocol, Vec<u8>) = if p.proto == 6 {
        let t = TcpRepr {
            src_port: p.sport,
            dst_port: p.dport,
            seq: 1,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 1024,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload_len: 0,
        };
        let mut b = vec![0u8; t.buffer_len()];
        t.emit_with_payload(&mut b, src, dst, &[]);
        (IpProtocol::TCP, b)
    } else {
        let u = UdpRepr { src_port: p.sport, dst_port: p.dport, payload_len: 4 };
        let mut b = vec![0u8; u.buffer_len()];
        u.emit_with_payload(&mut b, src, dst, b"data");
        (IpProtocol::UDP, b)
    };
    let i = Ipv4Repr { src, dst, protocol: proto, ttl: 64, tos: 0, ident: 1, dont_frag: false, payload_len: l4.len() };
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    b[20..].copy_from_slice(&l4);
    PacketBuf::from_slice(&b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn skip_steps_decide_as_a_plain_walk(
        rules in proptest::collection::vec(rule(), 1..24),
        packets in proptest::collection::vec(packet(), 1..16),
    ) {
        let n = net();
        let text: String = rules.iter().map(|r| r.text() + "\n").collect();
        let pf = pf_with(&n, &text);
        for p in &packets {
            let ifp = if p.ifname == "em0" { &n.em0 } else { &n.em1 };
            let mut replies = vec![];
            let v = pf.test(0, Instant::from_secs(1), p.dir, ifp, wire(p), &mut Bufs, &mut replies);
            let passed = matches!(v, Verdict::Pass(_));
            prop_assert_eq!(passed, reference(&rules, p), "{:?}\n{}", p, text);
        }
    }
}

/// A rule or an inline anchor (its rule's match fields, `quick`, and the
/// rules and anchors inside it).
#[derive(Debug, Clone)]
enum Item {
    Rule(Rule),
    Anchor { quick: bool, on: Rule, body: Vec<Item> },
}

fn item_text(items: &[Item], out: &mut String) {
    for it in items {
        match it {
            Item::Rule(r) => {
                out.push_str(&r.text());
                out.push('\n');
            }
            Item::Anchor { quick, on, body } => {
                // The anchor rule's words are the rule's, after `anchor`.
                let words = on.text();
                let words = words.trim_start_matches("pass").trim_start_matches("block drop");
                let words = words.trim_end_matches(" no state");
                let words = words.replacen(" quick", "", 1);
                let (dir, rest) = match words.strip_prefix(" in") {
                    Some(r) => (" in", r.to_string()),
                    None => match words.strip_prefix(" out") {
                        Some(r) => (" out", r.to_string()),
                        None => ("", words.clone()),
                    },
                };
                out.push_str(&format!("anchor{dir}{}{rest} {{\n", if *quick { " quick" } else { "" }));
                item_text(body, out);
                out.push_str("}\n");
            }
        }
    }
}

/// pf_match_rule over a tree of inline anchors (current pf.c): last match
/// wins, a matching `quick` rule ends everything, a `quick` anchor ends it
/// after the anchor when the last match was found right under it (with
/// `ctx->a` restored as the anchor stack pops).
fn reference_tree(items: &[Item], p: &Packet) -> bool {
    struct St {
        pass: bool,
        a: Option<usize>,
        am: Option<usize>,
        next_id: usize,
    }
    fn walk(items: &[Item], p: &Packet, st: &mut St) -> bool {
        for it in items {
            let id = st.next_id;
            st.next_id += 1;
            match it {
                Item::Rule(r) => {
                    if r.matches(p) {
                        st.pass = r.pass;
                        st.am = st.a;
                        if r.quick {
                            return true;
                        }
                    }
                }
                Item::Anchor { quick, on, body } => {
                    let before = st.next_id;
                    if on.matches(p) {
                        let outer = st.a;
                        st.a = Some(id);
                        if walk(body, p, st) {
                            return true;
                        }
                        st.a = outer;
                        if *quick && st.am == Some(id) {
                            return true;
                        }
                    }
                    // Ids stay the same whether the body was walked or not.
                    st.next_id = before + count(body);
                }
            }
        }
        false
    }
    fn count(items: &[Item]) -> usize {
        items.iter().map(|i| 1 + if let Item::Anchor { body, .. } = i { count(body) } else { 0 }).sum()
    }
    let mut st = St { pass: true, a: None, am: None, next_id: 0 };
    walk(items, p, &mut st);
    st.pass
}

/// An anchor rule's match fields: often none, else one of direction,
/// interface or protocol (so that anchors are stepped into often).
fn anchor_filter() -> impl Strategy<Value = Rule> {
    (rule(), 0..5usize).prop_map(|(mut r, keep)| {
        let any = HOSTS[0];
        (r.src, r.dst, r.sport, r.dport) = (any, any, 0, 0);
        r.quick = false;
        if keep != 1 {
            r.dir = None;
        }
        if keep != 2 {
            r.on = None;
        }
        if keep != 3 {
            r.proto = None;
        }
        r
    })
}

fn items() -> impl Strategy<Value = Vec<Item>> {
    let leaf = rule().prop_map(Item::Rule);
    let tree = leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            2 => rule().prop_map(Item::Rule),
            1 => (any::<bool>(), anchor_filter(), proptest::collection::vec(inner, 0..6))
                .prop_map(|(quick, on, body)| Item::Anchor { quick, on, body }),
        ]
    });
    proptest::collection::vec(tree, 1..10)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn anchors_decide_as_pf_match_rule_walks_them(
        tree in items(),
        packets in proptest::collection::vec(packet(), 1..24),
    ) {
        let n = net();
        let mut text = String::new();
        item_text(&tree, &mut text);
        let pf = pf_with(&n, &text);
        for p in &packets {
            let ifp = if p.ifname == "em0" { &n.em0 } else { &n.em1 };
            let mut replies = vec![];
            let v = pf.test(0, Instant::from_secs(1), p.dir, ifp, wire(p), &mut Bufs, &mut replies);
            let passed = matches!(v, Verdict::Pass(_));
            prop_assert_eq!(passed, reference_tree(&tree, p), "{:?}\n{}", p, text);
        }
    }
}
