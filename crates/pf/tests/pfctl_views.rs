//! The verbose pfctl views, text exactly as pfctl prints it: `-sr -v`,
//! `-sr -vv`, `-sl`, `-ss -vv`, `-si -v`, and the direction-split rule
//! counters behind them.

use crate::common;
use common::{net, pf_with, udp_bytes, HeapBufs as Bufs, Net};

use std::net::Ipv4Addr;
use std::sync::Arc;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::ipv4::Ipv4Packet;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

/// A UDP datagram with a 4-byte payload: 32 bytes on the wire.
fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> PacketBuf {
    PacketBuf::from_slice(&udp_bytes(src, dst, sport, dport, b"data"))
}

fn pass(pf: &Pf, now: Instant, dir: Direction, ifp: &Interface, p: PacketBuf) -> bool {
    let mut r = vec![];
    matches!(pf.test(0, now, dir, ifp, p, &mut Bufs, &mut r), Verdict::Pass(_))
}

const RULES: &str = "table <lan> { 10.0.1.0/24 10.0.1.7 }\n\
                     block in on em1 label \"blocked\"\n\
                     pass in on em0 proto udp from <lan> to port 7 label \"udp7\"\n\
                     pass out on em1 proto udp label \"udp-out\"\n\
                     pass in on em0 proto tcp from (em0) to port 22\n";

/// One UDP exchange through the router (A on em0 to B:7 on em1 and the
/// answer back) and one blocked datagram in on em1.
fn traffic(n: &Net) -> Pf {
    let pf = pf_with(n, RULES);
    let em0 = n.em0.clone();
    pf.set_if_lookup(Arc::new(move |name| (name == "em0").then(|| em0.addrs().to_vec())));
    let t = Instant::from_secs(1);
    assert!(pass(&pf, t, Direction::In, &n.em0, udp(A, B, 1000, 7)));
    assert!(pass(&pf, t, Direction::Out, &n.em1, udp(A, B, 1000, 7)));
    assert!(pass(&pf, t, Direction::In, &n.em1, udp(B, A, 7, 1000)));
    assert!(pass(&pf, t, Direction::Out, &n.em0, udp(B, A, 7, 1000)));
    assert!(!pass(&pf, t, Direction::In, &n.em1, udp(B, A, 5, 9)));
    pf
}

#[test]
fn sr_v_and_vv_print_counters_rule_numbers_and_address_counts() {
    let n = net();
    let pf = traffic(&n);
    let pid = std::process::id();
    let sr = pf.show_rules(0);
    assert_eq!(
        sr,
        "block drop in on em1 all label \"blocked\"\n\
         pass in on em0 proto udp from <lan> to any port = 7 label \"udp7\"\n\
         pass out on em1 proto udp all label \"udp-out\"\n\
         pass in on em0 proto tcp from (em0) to any port = 22 flags S/SA\n"
    );
    let v = pf.show_rules(1);
    let want_v = format!(
        "block drop in on em1 all label \"blocked\"\n\
         \x20 [ Evaluations: 3         Packets: 1         Bytes: 32          States: 0     ]\n\
         \x20 [ Inserted: uid 0 pid {pid} State Creations: 0     ]\n\
         pass in on em0 proto udp from <lan> to any port = 7 label \"udp7\"\n\
         \x20 [ Evaluations: 2         Packets: 2         Bytes: 64          States: 1     ]\n\
         \x20 [ Inserted: uid 0 pid {pid} State Creations: 1     ]\n\
         pass out on em1 proto udp all label \"udp-out\"\n\
         \x20 [ Evaluations: 3         Packets: 2         Bytes: 64          States: 1     ]\n\
         \x20 [ Inserted: uid 0 pid {pid} State Creations: 1     ]\n\
         pass in on em0 proto tcp from (em0) to any port = 22 flags S/SA\n\
         \x20 [ Evaluations: 3         Packets: 0         Bytes: 0           States: 0     ]\n\
         \x20 [ Inserted: uid 0 pid {pid} State Creations: 0     ]\n"
    );
    assert_eq!(v, want_v);
    // -vv: the same with `@N ` in front and the address counts.
    let vv = pf.show_rules(2);
    let want_vv = want_v
        .replace("block drop", "@0 block drop")
        .replace("pass in on em0 proto udp from <lan>", "@1 pass in on em0 proto udp from <lan:2>")
        .replace("pass out", "@2 pass out")
        .replace("pass in on em0 proto tcp from (em0)", "@3 pass in on em0 proto tcp from (em0:1)");
    assert_eq!(vv, want_vv);
    // An interface nobody can look up, an emptied table: `:*`, `:0`.
    pf.set_if_lookup(Arc::new(|_| None));
    pf.table_flush("lan").unwrap();
    let vv = pf.show_rules(2);
    assert!(vv.contains("@1 pass in on em0 proto udp from <lan:0> to any port = 7"), "{vv}");
    assert!(vv.contains("@3 pass in on em0 proto tcp from (em0:*) to any port = 22"), "{vv}");
}

#[test]
fn sl_splits_packets_and_bytes_by_direction() {
    let n = net();
    let pf = traffic(&n);
    // label evaluations packets bytes in-packets in-bytes out-packets out-bytes states
    assert_eq!(
        pf.show_labels(),
        "blocked 3 1 32 1 32 0 0 0\n\
         udp7 2 2 64 1 32 1 32 1\n\
         udp-out 3 2 64 1 32 1 32 1\n"
    );
    // -sa has a LABEL COUNTERS section, after INFO, when a rule has a label.
    let all = pf.show_all(0, Instant::from_secs(1));
    let labels = all.find("\n\nLABEL COUNTERS:\nblocked 3 1 32").expect(&all);
    assert!(all.find("\n\nINFO:\n").unwrap() < labels && labels < all.find("\n\nTIMEOUTS:\n").unwrap(), "{all}");
    let plain = pf_with(&n, "pass\n");
    assert_eq!(plain.show_labels(), "");
    assert!(!plain.show_all(0, Instant::from_secs(1)).contains("LABEL COUNTERS"));
}

#[test]
fn ss_vv_prints_state_id_and_creator_id() {
    let n = net();
    let pf = pf_with(&n, "set hostid 0x1234abcd\npass\n");
    pf.set_next_state_id(0x6500_0000_0000_0000);
    let t = Instant::from_secs(1);
    assert!(pass(&pf, t, Direction::In, &n.em0, udp(A, B, 1000, 7)));
    assert!(pass(&pf, t, Direction::Out, &n.em1, udp(A, B, 1000, 7)));
    let now = Instant::from_secs(3);
    let ss = pf.show_states(0, now);
    assert_eq!(
        ss,
        "all udp 10.0.2.2:7 <- 10.0.1.2:1000       NO_TRAFFIC:SINGLE\n\
         all udp 10.0.1.2:1000 -> 10.0.2.2:7       SINGLE:NO_TRAFFIC\n",
        "an inbound state prints its peers the other way round (dst:src), as print_state"
    );
    // -v adds the age line; -vv the id line, ids in creation order.
    let v = pf.show_states(1, now);
    let vv = pf.show_states(2, now);
    assert_eq!(
        vv,
        "all udp 10.0.2.2:7 <- 10.0.1.2:1000       NO_TRAFFIC:SINGLE\n\
         \x20  age 00:00:02, expires in 00:00:58, 1:0 pkts, 32:0 bytes, rule 0\n\
         \x20  id: 6500000000000000 creatorid: 1234abcd\n\
         all udp 10.0.1.2:1000 -> 10.0.2.2:7       SINGLE:NO_TRAFFIC\n\
         \x20  age 00:00:02, expires in 00:00:58, 1:0 pkts, 32:0 bytes, rule 0\n\
         \x20  id: 6500000000000001 creatorid: 1234abcd\n"
    );
    assert_eq!(v, vv.lines().filter(|l| !l.starts_with("   id: ")).map(|l| format!("{l}\n")).collect::<String>());
    // A new host id is for new states; the old ones keep their creator.
    let res = &n.resolver;
    pf.load(&softnet_pf::parse_ruleset("set hostid 42\npass\n", "pf.conf", res).unwrap(), res).unwrap();
    assert_eq!(pf.hostid(), 42);
    assert!(pass(&pf, t, Direction::In, &n.em0, udp(A, B, 1001, 7)));
    let vv = pf.show_states(2, now);
    assert!(vv.ends_with("   id: 6500000000000002 creatorid: 0000002a\n"), "{vv}");
    assert_eq!(vv.matches("creatorid: 1234abcd").count(), 2, "{vv}");
    // Without `set hostid` a load keeps the one in force; a fresh pf has
    // a random nonzero one.
    pf.load(&softnet_pf::parse_ruleset("pass\n", "pf.conf", res).unwrap(), res).unwrap();
    assert_eq!(pf.hostid(), 42);
    assert_ne!(Pf::new().hostid(), 0);
}

#[test]
fn si_v_prints_hostid_checksum_and_the_verbose_sections() {
    let n = net();
    let pf = pf_with(&n, "set hostid 0xdeadbeef\npass in proto udp keep state (max 1)\n");
    let t = Instant::from_secs(0);
    assert!(pass(&pf, t, Direction::In, &n.em0, udp(A, B, 1000, 7)));
    // The rule's one state is taken: pf_create_state counts LCNT_STATES.
    assert!(!pass(&pf, t, Direction::In, &n.em0, udp(A, B, 1001, 7)));
    // A fragment waits in the reassembly queue.
    let whole = udp_bytes(A, B, 1002, 7, &[0x5a; 100]);
    let mut b = whole[..20 + 64].to_vec();
    {
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_total_len(84);
        p.set_flags_frag(false, true, 0);
        p.fill_checksum();
    }
    let mut r = vec![];
    assert!(matches!(
        pf.test(0, t, Direction::In, &n.em0, PacketBuf::from_slice(&b), &mut Bufs, &mut r),
        Verdict::Consumed
    ));
    let si = pf.show_info(1, t);
    let sum = checksum_of(&si);
    let want = format!(
        "Status: Enabled                                  Debug: err\n\
         \n\
         Hostid:   0xdeadbeef\n\
         Checksum: 0x{sum}\n\
         \n\
         State Table                          Total             Rate\n\
         \x20 current entries                        1               \n\
         \x20 half-open tcp                          0               \n\
         \x20 searches                               2               \n\
         \x20 inserts                                1               \n\
         \x20 removals                               0               \n\
         Source Tracking Table\n\
         \x20 current entries                        0               \n\
         \x20 searches                               0               \n\
         \x20 inserts                                0               \n\
         \x20 removals                               0               \n\
         Fragments\n\
         \x20 current entries                        1               \n\
         \x20 searches                               1               \n\
         \x20 inserts                                1               \n\
         \x20 removals                               0               \n\
         Counters\n"
    );
    assert!(si.starts_with(&want), "{si}\n---\n{want}");
    let limits = "Limit Counters\n\
                  \x20 max states per rule                    1               \n\
                  \x20 max-src-states                         0               \n\
                  \x20 max-src-nodes                          0               \n\
                  \x20 max-src-conn                           0               \n\
                  \x20 max-src-conn-rate                      0               \n\
                  \x20 overload table insertion               0               \n\
                  \x20 overload flush states                  0               \n\
                  \x20 synfloods detected                     0               \n\
                  \x20 syncookies sent                        0               \n\
                  \x20 syncookies validated                   0               \n";
    assert!(si.ends_with(limits), "{si}");
    assert!(si.contains(&format!("\n  {:<25} {:>14} {:>14}\n", "state-limit", 1, "")), "{si}");
    // Without -v: none of it (the level 0 view is unchanged).
    let plain = pf.show_info(0, t);
    for s in ["Hostid", "Checksum", "Source Tracking", "Fragments", "Limit Counters"] {
        assert!(!plain.contains(s), "{plain}");
    }
    // With a running time the counters get rates, as pfctl's %14.1f/s.
    let later = pf.show_info(1, Instant::from_secs(2));
    assert!(later.contains(&format!("\n  {:<25} {:>14} {:>14}/s\n", "max states per rule", 1, "0.5")), "{later}");
}

/// The checksum is pf_hash_rule's: the same rules give the same digest,
/// a hashed field changes it, timeouts and limits do not; before any load
/// it is all zeros.
#[test]
fn ruleset_checksum_follows_the_hashed_fields() {
    let n = net();
    let sum = |text: &str| checksum_of(&pf_with(&n, text).show_info(1, Instant::from_secs(0)));
    let a = sum("pass in proto tcp to port 22\n");
    assert_eq!(a.len(), 32);
    assert_eq!(a, sum("pass in proto tcp to port 22\n"));
    assert_eq!(a, sum("set timeout tcp.first 10\nset limit states 500\npass in proto tcp to port 22\n"));
    assert_ne!(a, sum("pass in proto tcp to port 23\n"));
    assert_ne!(a, sum("pass out proto tcp to port 22\n"));
    assert_ne!(a, sum("pass in proto tcp to port 22 label \"ssh\"\n"));
    assert_eq!(checksum_of(&Pf::new().show_info(1, Instant::from_secs(0))), "0".repeat(32));
    // No rules at all: the MD5 of nothing, as pf_calc_chksum on an empty ruleset.
    let pf = pf_with(&n, "pass\n");
    pf.flush_rules();
    assert_eq!(checksum_of(&pf.show_info(1, Instant::from_secs(0))), "d41d8cd98f00b204e9800998ecf8427e");
}

fn checksum_of(si: &str) -> String {
    si.lines().find_map(|l| l.strip_prefix("Checksum: 0x")).expect(si).to_string()
}

/// `Pf::status` (pf_status as DIOCGETSTATUS gives it, for the metrics
/// endpoint) holds the numbers `-si` and `-sl` print; labels shared by
/// several rules are summed into one entry.
#[test]
fn status_agrees_with_si_and_sl() {
    let n = net();
    let pf = traffic(&n);
    let s = pf.status();
    assert!(s.running);
    assert_eq!(s.rules, 4);
    // One state in on em0 and one out on em1.
    assert_eq!((s.states.entries, s.states.inserts, s.states.removals), (2, 2, 0));
    let si = pf.show_info(0, Instant::from_secs(1));
    assert!(si.contains(&format!("\n  {:<25} {:>14} ", "searches", s.states.searches)), "{si}");
    assert!(s.states.searches >= 4, "every packet searched the state table");
    // PFRES_MATCH: the two packets that made states and the blocked one.
    assert_eq!(s.reasons[0], 3);
    assert!(si.contains(&format!("\n  {:<25} {:>14} ", "match", 3)), "{si}");
    assert_eq!(s.state_limit, 100_000);
    let labels: Vec<String> = s
        .labels
        .iter()
        .map(|l| {
            let pk = l.packets[0] + l.packets[1];
            let by = l.bytes[0] + l.bytes[1];
            format!(
                "{} {} {pk} {by} {} {} {} {} {}\n",
                l.label, l.evaluations, l.packets[0], l.bytes[0], l.packets[1], l.bytes[1], l.states_created
            )
        })
        .collect();
    assert_eq!(labels.concat(), pf.show_labels());
    let twice = pf_with(&n, "pass in label \"x\"\npass out label \"x\"\npass label \"y\"\n");
    let names: Vec<String> = twice.status().labels.into_iter().map(|l| l.label).collect();
    assert_eq!(names, ["x", "y"]);
}
