//! Anchors in the rule walk, as pf.c's pf_match_rule steps into them:
//! `quick` inside an anchor, `quick` on the anchor rule, the last match
//! after an anchor, wildcards, nesting, filters on the anchor rule, `match`
//! rules, states made by anchor rules, and loads and flushes of one anchor.

use crate::common;

use common::{net, HeapBufs as Bufs, Net};

use std::net::Ipv4Addr;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::parse::{parse_ruleset_in, FsFiles};
use softnet_pf::Pf;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn udp(src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> PacketBuf {
    PacketBuf::from_slice(&common::udp_bytes(src, dst, 1000, dport, b"data"))
}

fn passes(pf: &Pf, dir: Direction, ifp: &Interface, src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> bool {
    let mut r = vec![];
    matches!(pf.test(0, Instant::from_secs(1), dir, ifp, udp(src, dst, dport), &mut Bufs, &mut r), Verdict::Pass(_))
}

fn passes_in(pf: &Pf, n: &Net, dport: u16) -> bool {
    passes(pf, Direction::In, &n.em0, A, B, dport)
}

fn load_anchor(pf: &Pf, n: &Net, path: &str, text: &str) {
    let rs = parse_ruleset_in(text, "stdin", path, &n.resolver, &FsFiles::default()).unwrap();
    pf.load_anchor(&rs, &n.resolver).unwrap();
}

#[test]
fn quick_inside_an_anchor_ends_the_evaluation() {
    let n = net();
    let pf = common::pf_with(
        &n,
        "block all\nanchor \"a\" {\n pass quick proto udp to port 7 no state\n}\nblock proto udp to port 7\n",
    );
    assert!(passes_in(&pf, &n, 7));
    assert!(!passes_in(&pf, &n, 8));
}

#[test]
fn a_match_inside_an_anchor_is_not_the_last_match_when_rules_follow() {
    let n = net();
    let pf = common::pf_with(&n, "anchor \"a\" {\n pass proto udp no state\n}\nblock proto udp to port 9\n");
    assert!(passes_in(&pf, &n, 7));
    assert!(!passes_in(&pf, &n, 9), "the block after the anchor matches last");
}

#[test]
fn a_quick_anchor_stops_after_it_only_when_a_rule_inside_matched() {
    let n = net();
    let pf = common::pf_with(&n, "block all\nanchor \"a\" quick {\n pass proto udp to port 7 no state\n}\nblock all\n");
    assert!(passes_in(&pf, &n, 7), "matched inside the quick anchor: evaluation ends there");
    assert!(!passes_in(&pf, &n, 8), "nothing matched inside: the rules after it go on");
}

#[test]
fn the_anchor_rule_filters_what_steps_in() {
    let n = net();
    let pf = common::pf_with(&n, "block all\nanchor \"lan\" in on em0 from 10.0.1.0/24 {\n pass no state\n}\n");
    assert!(passes(&pf, Direction::In, &n.em0, A, B, 7));
    assert!(!passes(&pf, Direction::In, &n.em1, A, B, 7), "on em0 only");
    assert!(!passes(&pf, Direction::Out, &n.em0, A, B, 7), "in only");
    assert!(!passes(&pf, Direction::In, &n.em0, B, A, 7), "from 10.0.1.0/24 only");
}

#[test]
fn nested_anchors_with_skip_steps_inside_each() {
    let n = net();
    let pf = common::pf_with(
        &n,
        "anchor \"o\" in {\n anchor \"i\" proto udp {\n  block proto udp to port 6\n  pass quick proto udp to port 7 no state\n }\n block quick proto udp\n}\npass no state\n",
    );
    assert!(passes_in(&pf, &n, 7), "quick two anchors deep");
    assert!(!passes_in(&pf, &n, 8), "the outer anchor's block quick");
    assert!(passes(&pf, Direction::Out, &n.em1, A, B, 8), "out: the anchor is skipped");
}

#[test]
fn match_rules_inside_anchors_apply() {
    let n = net();
    let pf = common::pf_with(
        &n,
        "block in\nanchor \"m\" {\n match in proto udp to port 7 tag T\n}\npass in tagged T no state\n",
    );
    assert!(passes_in(&pf, &n, 7));
    assert!(!passes_in(&pf, &n, 8));
}

#[test]
fn wildcard_anchors_evaluate_every_child_loaded_with_a() {
    let n = net();
    let pf = common::pf_with(&n, "block all\nanchor \"relayd/*\"\n");
    assert!(!passes_in(&pf, &n, 7), "no child loaded: an empty anchor");
    load_anchor(&pf, &n, "relayd/a", "pass proto udp to port 7 no state\n");
    load_anchor(&pf, &n, "relayd/b", "pass quick proto udp to port 8 no state\n");
    assert!(passes_in(&pf, &n, 7));
    assert!(passes_in(&pf, &n, 8));
    assert!(!passes_in(&pf, &n, 9));
    assert_eq!(pf.show_anchors("", 0).unwrap(), "  relayd\n  relayd/a\n  relayd/b\n");
    assert_eq!(
        pf.show_anchor_rules("relayd/b", false, false, 0).unwrap(),
        "pass quick proto udp from any to any port = 8 no state\n"
    );
    // A main ruleset load keeps the anchors loaded on their own.
    let rs = softnet_pf::parse_ruleset("block all\nanchor \"relayd/*\"\n", "pf.conf", &n.resolver).unwrap();
    pf.load(&rs, &n.resolver).unwrap();
    assert!(passes_in(&pf, &n, 8));
    // -a relayd/a -F rules: its port closes, the other stays open.
    assert_eq!(pf.flush_anchor("relayd/a").unwrap(), 1);
    assert!(!passes_in(&pf, &n, 7));
    assert!(passes_in(&pf, &n, 8));
    assert_eq!(pf.show_anchors("relayd", 0).unwrap(), "  relayd/b\n", "an empty anchor nobody calls goes");
}

#[test]
fn a_quick_wildcard_anchor_stops_after_the_child_that_matched() {
    let n = net();
    let pf = common::pf_with(&n, "anchor \"w/*\" quick\nblock all\n");
    load_anchor(&pf, &n, "w/a", "pass proto udp to port 7 no state\n");
    assert!(passes_in(&pf, &n, 7));
    assert!(!passes_in(&pf, &n, 8));
}

#[test]
fn states_made_under_an_anchor_know_their_rule() {
    let n = net();
    let pf = common::pf_with(&n, "block all\nanchor \"a\" {\n pass proto udp to port 7\n}\n");
    assert!(passes_in(&pf, &n, 7));
    let sr = pf.show_anchor_rules("a", false, false, 1).unwrap();
    assert!(sr.contains("States: 1 "), "{sr}");
    let ss = pf.show_states(1, Instant::from_secs(1));
    assert!(ss.contains("rule 0"), "the rule's number in its anchor: {ss}");
    let main = pf.show_rules(1);
    assert!(main.starts_with("block drop all\n"), "{main}");
    assert!(main.contains("anchor \"a\" all\n  [ Evaluations: 1 "), "{main}");
}

#[test]
fn anchors_calling_themselves_are_cut_at_pfs_stack_depth() {
    let n = net();
    let pf = common::pf_with(&n, "pass no state\nanchor \"x\" {\n anchor \"/x\"\n}\n");
    assert!(!passes_in(&pf, &n, 7), "PF_ANCHOR_STACK_MAX exceeded: PF_TEST_FAIL drops");
}

#[test]
fn anchors_nothing_loaded_are_empty_and_listed() {
    let n = net();
    let pf = common::pf_with(&n, "anchor \"nothere\"\nanchor \"ftp-proxy/*\"\npass no state\n");
    assert!(passes_in(&pf, &n, 7));
    assert_eq!(pf.show_anchors("", 0).unwrap(), "  ftp-proxy\n  nothere\n");
    assert!(pf.show_anchors("bogus", 0).is_err());
    assert!(pf.show_anchor_rules("bogus", false, false, 0).is_err());
}

#[test]
fn a_bad_anchor_load_changes_nothing() {
    let n = net();
    let pf = common::pf_with(&n, "block all\nanchor \"a\"\n");
    load_anchor(&pf, &n, "a", "pass quick proto udp to port 7 no state\n");
    let rs = parse_ruleset_in("anchor \"b//c\"\npass all no state\n", "stdin", "a", &n.resolver, &FsFiles::default())
        .unwrap();
    let e = pf.load_anchor(&rs, &n.resolver).unwrap_err().to_string();
    assert_eq!(e, "stdin:1: anchor \"b//c\": empty anchor path component");
    assert!(passes_in(&pf, &n, 7));
    assert!(!passes_in(&pf, &n, 8), "the rules loaded before are still there");
}

#[test]
fn unnamed_inline_anchors_print_their_rules_in_sr() {
    let n = net();
    let pf = common::pf_with(&n, "anchor in {\n pass quick no state\n}\nanchor \"named\" {\n block\n}\n");
    assert_eq!(
        pf.show_rules(0),
        "anchor in all {\n  pass quick all no state\n}\nanchor \"named\" all\n",
        "pfctl -sr recurses only into `_` anchors"
    );
    assert_eq!(pf.show_anchors("", 0).unwrap(), "  named\n");
    assert_eq!(pf.show_anchors("", 1).unwrap(), "  _1\n  named\n");
    assert_eq!(
        pf.show_anchor_rules("", true, false, 0).unwrap(),
        "anchor in all {\n  pass quick all no state\n}\nanchor \"named\" all {\n  block drop all\n}\n"
    );
}

#[test]
fn set_limit_anchors_bounds_how_many_exist() {
    let n = net();
    let pf = common::pf_with(&n, "set limit anchors 2\nanchor \"a\"\nanchor \"b\"\npass no state\n");
    let rs = parse_ruleset_in("anchor \"c\"\n", "stdin", "a", &n.resolver, &FsFiles::default()).unwrap();
    let e = pf.load_anchor(&rs, &n.resolver).unwrap_err().to_string();
    assert!(e.contains("3 anchors: over the limit of 2"), "{e}");
    assert_eq!(pf.show_anchors("", 0).unwrap(), "  a\n  b\n", "nothing changed");
}

#[test]
fn pflog_names_the_anchor_rule_the_subrule_and_the_anchor() {
    let n = net();
    let pf = common::pf_with(&n, "block log all\nanchor \"relayd/*\"\n");
    load_anchor(&pf, &n, "relayd/web", "pass proto tcp\nblock log quick proto udp to port 9\n");
    let q = std::sync::Arc::new(softnet_pf::pflog::PflogQueue::new(16));
    pf.set_pflog(Some(q.clone()));
    assert!(!passes_in(&pf, &n, 9));
    assert!(!passes_in(&pf, &n, 0x1234 >> 4), "port 291: the main block, no anchor rule matched last");
    let mut out = vec![];
    q.drain_to(&mut out, 0).unwrap();
    let mut recs = vec![];
    let mut b = &out[..];
    while b.len() >= 16 {
        let len = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
        let rec = &b[16..16 + len];
        let name: String = rec[20..36].iter().take_while(|c| **c != 0).map(|c| *c as char).collect();
        let word = |at: usize| i32::from_be_bytes(rec[at..at + 4].try_into().unwrap());
        recs.push((name, word(36), word(40)));
        b = &b[16 + len..];
    }
    // pflog_packet: rulenr is the anchor rule's (1 in main), subrulenr the
    // rule's own (1 in relayd/web), ruleset the anchor's name.
    assert_eq!(recs, vec![("web".to_string(), 1, 1), (String::new(), 0, -1)]);
}

#[test]
fn an_anchor_load_leaves_the_other_rulesets_counters_and_states_alone() {
    let n = net();
    let pf = common::pf_with(&n, "anchor \"a\"\npass in proto udp keep state (max 1)\n");
    assert!(passes_in(&pf, &n, 7));
    assert!(!passes_in(&pf, &n, 8), "max 1: a second flow is refused");
    load_anchor(&pf, &n, "a", "block in proto udp to port 9\n");
    // The main ruleset is untouched: its rule still holds its state (max 1
    // still refuses a new flow), its counters went on, and the state's
    // packets still count for it.
    assert!(!passes_in(&pf, &n, 10), "max 1 after the anchor load");
    assert!(passes_in(&pf, &n, 7), "the state passes its flow");
    let sr = pf.show_rules(1);
    let main_rule = sr.lines().skip_while(|l| !l.starts_with("pass in")).nth(1).unwrap_or_default().to_string();
    assert!(main_rule.contains("Packets: 4 ") && main_rule.contains("States: 1 "), "{sr}");
    let anchor_rule = sr.lines().nth(1).unwrap_or_default();
    assert!(anchor_rule.contains("Packets: 0 "), "the main rule is not found under the anchor: {sr}");
    let ss = pf.show_states(1, Instant::from_secs(1));
    assert!(ss.contains("rule 1"), "{ss}");
    // A main reload replaces the main ruleset: a new rule, no states yet.
    let rs = softnet_pf::parse_ruleset("anchor \"a\"\npass in proto udp keep state (max 1)\n", "pf.conf", &n.resolver)
        .unwrap();
    pf.load(&rs, &n.resolver).unwrap();
    assert!(pf.show_rules(1).contains("States: 0 "), "{}", pf.show_rules(1));
}

#[test]
fn recursive_sr_lists_wildcard_children_as_pfctl_show_rules() {
    let n = net();
    let pf = common::pf_with(&n, "anchor \"relayd/*\"\npass no state\n");
    load_anchor(&pf, &n, "relayd/a", "pass in quick proto udp to port 7 no state\n");
    // pfctl -a 'relayd/*' -sr
    assert_eq!(
        pf.show_anchor_rules("relayd", true, true, 0).unwrap(),
        "anchor \"a\" all {\n  pass in quick proto udp from any to any port = 7 no state\n}\n"
    );
    // pfctl -a '*' -sr: the main ruleset, into every anchor.
    assert_eq!(
        pf.show_anchor_rules("", true, false, 0).unwrap(),
        "anchor \"relayd/*\" all {\n  anchor \"a\" all {\n    pass in quick proto udp from any to any port = 7 no state\n  }\n}\npass all no state\n"
    );
}

#[test]
fn pflog_names_the_anchor_rule_the_packet_went_through() {
    let n = net();
    let pf = common::pf_with(&n, "pass all no state\nanchor \"x\" in on em1\nanchor \"x\" out\n");
    load_anchor(&pf, &n, "x", "block log quick proto udp to port 9\n");
    let q = std::sync::Arc::new(softnet_pf::pflog::PflogQueue::new(16));
    pf.set_pflog(Some(q.clone()));
    assert!(!passes(&pf, Direction::Out, &n.em0, A, B, 9));
    let mut out = vec![];
    q.drain_to(&mut out, 0).unwrap();
    let rec = &out[16..];
    let name: String = rec[20..36].iter().take_while(|c| **c != 0).map(|c| *c as char).collect();
    let word = |at: usize| i32::from_be_bytes(rec[at..at + 4].try_into().unwrap());
    assert_eq!((name.as_str(), word(36), word(40)), ("x", 2, 0), "under the second anchor rule, @2");
}
