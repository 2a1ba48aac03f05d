//! Source tracking for IPv6 sources: max-src-states, max-src-conn with
//! `overload <t> flush` putting an IPv6 address in the table, nodes in
//! `pfctl -sS`, and `sticky-address` on IPv6 nat-to pools.

use crate::common;
use common::{a6, net, pf_with, tcp6_bytes as tcp, udp6_bytes, HeapBufs, Net};

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::ipv6::Ipv6Packet;
use softnet_wire::tcp::TcpFlags;

const A: &str = "2001:db8:1::2";
const A2: &str = "2001:db8:1::3";
const SERVER: &str = "2001:db8:2::2";

fn udp(src: &str, dst: &str, sport: u16) -> Vec<u8> {
    udp6_bytes(src, dst, sport, 53, b"q")
}

fn run(pf: &Pf, now: Instant, dir: Direction, ifp: &Interface, p: Vec<u8>) -> Option<PacketBuf> {
    let mut replies = vec![];
    match pf.test(0, now, dir, ifp, PacketBuf::from_slice(&p), &mut HeapBufs, &mut replies) {
        Verdict::Pass(p) => Some(p),
        _ => None,
    }
}

fn handshake(pf: &Pf, n: &Net, t: Instant, src: &str, sport: u16) -> [bool; 3] {
    let synack = TcpFlags::SYN | TcpFlags::ACK;
    [
        run(pf, t, Direction::In, &n.em0, tcp(src, SERVER, sport, 80, TcpFlags::SYN, 1000, 0)).is_some(),
        run(pf, t, Direction::Out, &n.em0, tcp(SERVER, src, 80, sport, synack, 5000, 1001)).is_some(),
        run(pf, t, Direction::In, &n.em0, tcp(src, SERVER, sport, 80, TcpFlags::ACK, 1001, 5001)).is_some(),
    ]
}

#[test]
fn max_src_states_counts_ipv6_sources_and_ss_shows_them() {
    let n = net();
    let pf = pf_with(&n, "block all\npass in on em0 inet6 proto udp keep state (max-src-states 2)\n");
    let t = Instant::from_secs(10);
    let go = |src, sport| run(&pf, t, Direction::In, &n.em0, udp(src, SERVER, sport)).is_some();
    assert!(go(A, 1));
    assert!(go(A, 2));
    assert!(!go(A, 3), "the third state of A");
    assert!(go(A2, 1), "another source");
    assert_eq!(pf.counter("src-limit"), Some(1));
    assert_eq!(
        pf.show_src_nodes(0, t),
        "2001:db8:1::2 ( states 2, connections 0, rate 0.0/0s )\n2001:db8:1::3 ( states 1, connections 0, rate 0.0/0s )\n"
    );
}

#[test]
fn max_src_conn_overloads_an_ipv6_source_and_flushes_its_states() {
    let n = net();
    let pf = pf_with(
        &n,
        "table <bad> persist\nblock all\nblock in quick from <bad>\npass out all\n\
         pass in on em0 inet6 proto tcp to port 80 keep state (max-src-conn 1, overload <bad> flush)\n",
    );
    let t = Instant::from_secs(10);
    pf.tick(t);
    assert_eq!(handshake(&pf, &n, t, A, 1000), [true; 3]);
    assert_eq!(handshake(&pf, &n, t, A, 1001), [true, true, false], "over max-src-conn");
    assert_eq!(pf.counter("src-limit"), Some(1));
    // the first connection's state is flushed, A goes into <bad>
    assert!(run(&pf, t, Direction::In, &n.em0, tcp(A, SERVER, 1000, 80, TcpFlags::ACK, 1001, 5001)).is_none());
    pf.tick(Instant::from_secs(11));
    assert_eq!(pf.table("bad").unwrap().test(&[a6(A).into()]), 1);
    assert!(!handshake(&pf, &n, t, A, 1002)[0], "A is blocked");
    assert_eq!(handshake(&pf, &n, t, A2, 2000), [true; 3], "another source still connects");
}

#[test]
fn sticky_address_keeps_an_ipv6_sources_translation() {
    let n = net();
    let pf = pf_with(&n, "pass out on em1 inet6 nat-to 2001:db8:9::/120 round-robin sticky-address\npass in\n");
    let t = Instant::from_secs(10);
    let src_of = |src, sport| {
        let p = run(&pf, t, Direction::Out, &n.em1, udp(src, SERVER, sport)).unwrap();
        Ipv6Packet::new_checked(p.data()).unwrap().src()
    };
    let a = src_of(A, 1);
    assert_eq!(src_of(A, 2), a, "the same source keeps its address");
    assert_eq!(src_of(A, 3), a);
    let b = src_of(A2, 1);
    assert_ne!(b, a, "round-robin moved on for another source");
    assert_eq!(src_of(A2, 2), b);
    let nodes = pf.show_src_nodes(0, t);
    assert!(nodes.contains(&format!("2001:db8:1::2 nat-to {a} ( states 3,")), "{nodes}");
}
