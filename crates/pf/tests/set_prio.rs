//! `set prio` and `prio` as pf_test and pf_match_rule treat them: the
//! passed packet's priority (`PacketMeta::prio`) set from the rules'
//! actions (match rules included) or from its state, the second value for
//! bare TCP ACKs and TOS lowdelay; `prio N` rules compare with the
//! priority the packet has when it reaches the hook.

use crate::common;

use common::{net, tcp_bytes, udp_bytes, HeapBufs as Bufs, Net};

use std::net::Ipv4Addr;

use softnet_core::filter::{Direction, PacketFilter, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::tcp::TcpFlags;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn run(pf: &Pf, dir: Direction, ifp: &Interface, pkt: PacketBuf) -> Option<PacketBuf> {
    let mut r = vec![];
    match pf.test(0, Instant::from_secs(1), dir, ifp, pkt, &mut Bufs, &mut r) {
        Verdict::Pass(p) => Some(p),
        _ => None,
    }
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> PacketBuf {
    PacketBuf::from_slice(&udp_bytes(src, dst, sport, dport, b"x"))
}

fn tcp(f: &str, len: usize) -> PacketBuf {
    PacketBuf::from_slice(&tcp_bytes(A, B, 40000, 80, TcpFlags::from_letters(f).unwrap(), 1, 1, len))
}

fn prio_in(pf: &Pf, n: &Net, pkt: PacketBuf) -> u8 {
    run(pf, Direction::In, &n.em0, pkt).expect("passed").meta.prio()
}

#[test]
fn match_and_pass_rules_set_the_priority_the_last_one_winning() {
    let n = net();
    let pf = common::pf_with(
        &n,
        "pass no state\nmatch in proto udp to port 7 set prio 6\nmatch in proto udp to port 8 set prio 1\n\
         pass in proto udp to port 8 set prio 5 no state\n",
    );
    assert_eq!(prio_in(&pf, &n, udp(A, B, 1, 7)), 6, "a match rule's set prio");
    assert_eq!(prio_in(&pf, &n, udp(A, B, 1, 8)), 5, "the deciding rule's comes after the match rule's");
    assert_eq!(prio_in(&pf, &n, udp(A, B, 1, 9)), 3, "IFQ_DEFPRIO without set prio");
}

#[test]
fn the_second_value_is_for_bare_acks_and_lowdelay() {
    let n = net();
    let pf =
        common::pf_with(&n, "pass in proto tcp set prio (2, 6) no state\npass in proto udp set prio (2, 6) no state\n");
    assert_eq!(prio_in(&pf, &n, tcp("A", 0)), 6, "an ACK without data");
    assert_eq!(prio_in(&pf, &n, tcp("PA", 10)), 2, "data");
    let mut lowdelay = udp_bytes(A, B, 1, 2, b"x");
    lowdelay[1] = 0x10;
    // (the header checksum is not checked by the filter's parse of TOS)
    let sum = softnet_wire::ipv4::Ipv4Packet::new_unchecked(&lowdelay[..]).checksum();
    let fixed = softnet_wire::checksum::update16(sum, 0x4500, 0x4510);
    lowdelay[10..12].copy_from_slice(&fixed.to_be_bytes());
    assert_eq!(prio_in(&pf, &n, PacketBuf::from_slice(&lowdelay)), 6, "TOS lowdelay");
    assert_eq!(prio_in(&pf, &n, udp(A, B, 1, 2)), 2);
}

#[test]
fn a_state_gives_its_priority_to_every_packet_of_it() {
    let n = net();
    let pf = common::pf_with(&n, "pass out all no state\npass in proto udp set prio 5\n");
    assert_eq!(prio_in(&pf, &n, udp(A, B, 1000, 53)), 5);
    // The answer, through the state at pf out on em0 (the state's other direction).
    let back = run(&pf, Direction::Out, &n.em0, udp(B, A, 53, 1000)).expect("answer passes");
    assert_eq!(back.meta.prio(), 5);
    let again = run(&pf, Direction::In, &n.em0, udp(A, B, 1000, 53)).expect("passes");
    assert_eq!(again.meta.prio(), 5);
}

#[test]
fn prio_rules_match_the_priority_the_packet_came_with() {
    let n = net();
    let pf = common::pf_with(
        &n,
        "pass all no state\nmatch in proto udp to port 7 set prio 6\nblock out quick prio 6\nblock in quick prio 6\n",
    );
    // pf in: the `set prio 6` applies after the walk, so `block in prio 6`
    // does not see it ...
    let p = run(&pf, Direction::In, &n.em0, udp(A, B, 1, 7)).expect("passes in");
    assert_eq!(p.meta.prio(), 6);
    // ... and pf out does.
    assert!(run(&pf, Direction::Out, &n.em1, p).is_none(), "blocked out by prio 6");
    let q = run(&pf, Direction::In, &n.em0, udp(A, B, 1, 8)).expect("passes in");
    assert!(run(&pf, Direction::Out, &n.em1, q).is_some(), "priority 3 passes out");
}

#[test]
fn set_prio_loads_and_a_bad_priority_does_not() {
    let n = net();
    let ok = softnet_pf::load_ruleset("pass in set prio (1, 7)\n", "pf.conf", &n.resolver);
    assert!(ok.is_ok(), "{ok:?}");
    let bad = softnet_pf::load_ruleset("pass in set prio 8\n", "pf.conf", &n.resolver).unwrap_err();
    assert_eq!(bad[0].to_string(), "pf.conf:1: prio must be 0 - 7");
}
