//! Tables defined inside anchors, as pf_table.c keeps them: each anchor a
//! namespace of its own; a table an anchor's rules name resolves to the
//! anchor's own when it is active there, else to the main ruleset's
//! (pfr_attach_table's `pfrkt_root`, pfr_match_addr); `-a NAME -t T -T
//! …`, `-a NAME -sT`, `-a NAME -F Tables`; tables going with their
//! anchor's rules; pfctl's messages.

use crate::common;

use common::{net, HeapBufs as Bufs, Net};

use std::net::Ipv4Addr;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::time::Instant;
use softnet_pf::model::{IpNet, TableEntry};
use softnet_pf::parse::{parse_ruleset_in, FsFiles};
use softnet_pf::table::TableKey;
use softnet_pf::Pf;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const C: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 3);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn passes_from(pf: &Pf, n: &Net, src: Ipv4Addr, dport: u16) -> bool {
    let pkt = softnet_core::packet::PacketBuf::from_slice(&common::udp_bytes(src, B, 1000, dport, b"x"));
    let mut r = vec![];
    matches!(pf.test(0, Instant::from_secs(1), Direction::In, &n.em0, pkt, &mut Bufs, &mut r), Verdict::Pass(_))
}

fn load_anchor(pf: &Pf, n: &Net, path: &str, text: &str) {
    let rs = parse_ruleset_in(text, "stdin", path, &n.resolver, &FsFiles::default()).unwrap();
    softnet_pf::check_supported(&rs).unwrap();
    pf.load_anchor(&rs, &n.resolver).unwrap();
}

fn entry(a: Ipv4Addr) -> TableEntry {
    TableEntry { negated: false, net: IpNet::new(a.into(), 32) }
}

fn key(anchor: &str, name: &str) -> TableKey {
    TableKey::new(anchor, name)
}

#[test]
fn an_inline_anchors_table_lives_in_the_anchors_namespace() {
    let n = net();
    let pf = common::pf_with(
        &n,
        "pass no state\nanchor \"relayd\" {\n table <t> { 10.0.1.2 }\n block in quick from <t>\n}\n",
    );
    assert!(!passes_from(&pf, &n, A, 7), "A is in relayd's <t>");
    assert!(passes_from(&pf, &n, C, 7));
    assert_eq!(pf.show_tables("relayd"), "t\n");
    assert_eq!(pf.show_tables(""), "", "the main ruleset has no active <t>");
    assert_eq!(pf.table_show(key("relayd", "t"), false).unwrap(), "   10.0.1.2\n");
    assert_eq!(pf.table_show("t", false).unwrap_err(), "pfctl: Table does not exist.");
    assert_eq!(pf.table_show(key("nope", "t"), false).unwrap_err(), "pfctl: Table does not exist.");
}

#[test]
fn an_anchors_rule_uses_the_main_table_until_the_anchor_has_its_own() {
    let n = net();
    let pf = common::pf_with(&n, "table <t> { 10.0.1.2 }\npass no state\nanchor \"a\"\n");
    load_anchor(&pf, &n, "a", "block in quick from <t>\n");
    assert!(!passes_from(&pf, &n, A, 7), "the root table <t> (the main ruleset's) holds A");
    assert!(passes_from(&pf, &n, C, 7));
    assert_eq!(pf.show_tables("a"), "", "a's <t> is only named, not active");
    // pfctl -a a -t t -T add C: a's own <t>, and pfctl's warning.
    assert_eq!(
        pf.table_add(key("a", "t"), &[entry(C)]).unwrap(),
        "pfctl: warning: namespace collision with <t> global table.\n1 table created.\n1/1 addresses added."
    );
    assert!(passes_from(&pf, &n, A, 7), "a's own <t> does not hold A");
    assert!(!passes_from(&pf, &n, C, 7), "a's own <t> holds C");
    assert_eq!(pf.show_tables("a"), "t\n");
    assert_eq!(pf.table_show("t", false).unwrap(), "   10.0.1.2\n", "the main <t> unchanged");
    assert_eq!(
        pf.table_test(key("a", "t"), &[C.into(), A.into()]).unwrap(),
        ("1/2 addresses match.".to_string(), false)
    );
    // -a a -F Tables: a's <t> stops being active; a's rule reads the main one again.
    assert_eq!(pf.clear_tables("a").unwrap(), 1);
    assert!(!passes_from(&pf, &n, A, 7));
    assert!(passes_from(&pf, &n, C, 7));
    assert_eq!(pf.show_tables("a"), "");
    assert_eq!(pf.table_show(key("a", "t"), false).unwrap_err(), "pfctl: Table does not exist.");
    assert_eq!(pf.namespace_collisions(None), None);
}

#[test]
fn an_anchor_loaded_with_a_defines_its_tables_and_keeps_them_over_other_loads() {
    let n = net();
    let pf = common::pf_with(&n, "pass no state\nanchor \"ftp-proxy/*\"\n");
    load_anchor(
        &pf,
        &n,
        "ftp-proxy/1",
        "table <p> { 10.0.1.2 10.0.1.3 }\nblock in quick proto udp from <p> to port 21\n",
    );
    assert!(!passes_from(&pf, &n, A, 21));
    assert!(passes_from(&pf, &n, A, 22));
    assert_eq!(pf.show_tables("ftp-proxy/1"), "p\n");
    // -a ftp-proxy/1 -t p -T delete / flush / replace.
    assert_eq!(pf.table_delete(key("ftp-proxy/1", "p"), &[entry(A)]).unwrap(), "1/1 addresses deleted.");
    assert!(passes_from(&pf, &n, A, 21));
    assert_eq!(
        pf.table_replace(key("ftp-proxy/1", "p"), &[entry(A)]).unwrap(),
        "1 addresses added.\n1 addresses deleted."
    );
    assert!(!passes_from(&pf, &n, A, 21));
    // Another anchor's load and a main load leave it as it is.
    load_anchor(&pf, &n, "ftp-proxy/2", "pass quick from 10.0.9.9\n");
    let main = softnet_pf::parse_ruleset("pass no state\nanchor \"ftp-proxy/*\"\n", "pf.conf", &n.resolver).unwrap();
    pf.load(&main, &n.resolver).unwrap();
    assert!(!passes_from(&pf, &n, A, 21), "kept over other loads");
    assert_eq!(pf.table_show(key("ftp-proxy/1", "p"), false).unwrap(), "   10.0.1.2\n");
    // The anchor loaded again without the definition: a table its rules
    // still name keeps its addresses (pf leaves it active).
    load_anchor(&pf, &n, "ftp-proxy/1", "block in quick proto udp from <p> to port 21\n");
    assert!(!passes_from(&pf, &n, A, 21));
    // -a ftp-proxy/1 -F rules: no rule names it, it was not persistent: gone,
    // and the anchor with it.
    pf.flush_anchor("ftp-proxy/1").unwrap();
    assert_eq!(pf.table_show(key("ftp-proxy/1", "p"), false).unwrap_err(), "pfctl: Table does not exist.");
    assert_eq!(pf.show_anchors("", 0).unwrap(), "  ftp-proxy\n  ftp-proxy/2\n");
}

#[test]
fn a_table_made_in_a_new_anchor_makes_the_anchor_and_stays() {
    let n = net();
    let pf = common::pf_with(&n, "pass no state\nanchor \"relayd/*\"\n");
    assert_eq!(pf.show_anchors("", 0).unwrap(), "  relayd\n");
    assert_eq!(
        pf.table_add(key("relayd/web", "hosts"), &[entry(A)]).unwrap(),
        "1 table created.\n1/1 addresses added."
    );
    assert_eq!(pf.show_anchors("", 0).unwrap(), "  relayd\n  relayd/web\n");
    // Persistent (pfctl's CREATE_TABLE): a later load of the anchor keeps it,
    // and its rules use it.
    load_anchor(&pf, &n, "relayd/web", "block in quick from <hosts>\n");
    assert!(!passes_from(&pf, &n, A, 80));
    assert!(passes_from(&pf, &n, C, 80));
    pf.flush_anchor("relayd/web").unwrap();
    assert_eq!(pf.show_tables("relayd/web"), "hosts\n", "persistent: outlives the rules");
    assert_eq!(pf.clear_tables("relayd/web").unwrap(), 1);
    assert_eq!(pf.show_tables("relayd/web"), "");
    assert_eq!(pf.show_anchors("", 0).unwrap(), "  relayd\n", "nothing keeps relayd/web any more");
}

#[test]
fn a_pool_list_in_an_anchors_rule_becomes_a_table_of_the_anchor() {
    let n = net();
    let pf = common::pf_with(
        &n,
        "block no state\nanchor \"a\" {\n pass in quick proto udp to port 9 rdr-to { 10.0.2.5 10.0.2.6 } round-robin\n}\n",
    );
    // pfctl's own table for the list (add_opt_table) is defined in the anchor.
    assert_eq!(pf.show_tables("a"), "__automatic_0\n");
    assert_eq!(pf.show_tables(""), "");
    let pkt = softnet_core::packet::PacketBuf::from_slice(&common::udp_bytes(A, B, 1000, 9, b"x"));
    let mut r = vec![];
    match pf.test(0, Instant::from_secs(1), Direction::In, &n.em0, pkt, &mut Bufs, &mut r) {
        Verdict::Pass(p) => assert_eq!(&p.data()[16..20], &[10, 0, 2, 5], "redirected to the pool's first address"),
        _ => panic!("blocked"),
    }
}

#[test]
fn anchor_tables_load_atomically_with_the_tables_limit() {
    let n = net();
    let pf = common::pf_with(&n, "set limit tables 2\ntable <x> { 10.0.9.1 }\npass no state\nanchor \"a\"\n");
    let rs = parse_ruleset_in(
        "table <t1> { 10.0.1.2 }\ntable <t2> { 10.0.1.3 }\nblock in quick from <t1>\nblock in quick from <t2>\n",
        "anchor.conf",
        "a",
        &n.resolver,
        &FsFiles::default(),
    )
    .unwrap();
    let e = pf.load_anchor(&rs, &n.resolver).unwrap_err().to_string();
    assert_eq!(e, "anchor.conf:2: cannot define table t2: Cannot allocate memory");
    assert!(passes_from(&pf, &n, A, 7), "nothing of the anchor loaded");
    assert_eq!(pf.show_tables("a"), "");
}

#[test]
fn a_table_defined_in_an_anchor_prints_with_nv_and_parses_back() {
    let n = net();
    let text = "anchor \"a\" {\n table <t> persist { 10.0.1.2 }\n pass in from <t>\n}\n";
    let rs = softnet_pf::parse_ruleset(text, "stdin", &n.resolver).unwrap();
    assert_eq!(rs.tables[0].anchor, "a");
    let out = softnet_pf::print_ruleset(&rs, &softnet_pf::PrintOpts { verbose: 1, opt_level: None });
    assert_eq!(out, "table <t> persist { 10.0.1.2 }\nanchor \"a\" all {\n  pass in from <t> to any flags S/SA\n}\n");
}
