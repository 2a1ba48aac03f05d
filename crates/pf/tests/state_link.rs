//! The link pf in leaves in a packet for pf out (the inbound state's
//! reverse link, as pf.c's `pf.statekey` / `sk_reverse`) is a hint only:
//! whatever happened to the states since, pf out decides exactly as a
//! search of the state table would.

mod common;
use common::{net, pf_with, Net};

use std::net::Ipv4Addr;

use softnet_core::filter::{BufferSource, Direction, PacketFilter, Verdict};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::time::Instant;
use softnet_pf::Pf;
use softnet_wire::ipv4::{IpProtocol, Ipv4Repr};
use softnet_wire::udp::UdpRepr;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

struct Bufs;
impl BufferSource for Bufs {
    fn alloc(&mut self) -> Option<PacketBuf> {
        None
    }
    fn alloc_large(&mut self) -> Option<PacketBuf> {
        None
    }
    fn free(&mut self, _p: PacketBuf) {}
}

fn udp(sport: u16, dport: u16) -> PacketBuf {
    let payload = [0u8; 18];
    let u = UdpRepr { src_port: sport, dst_port: dport, payload_len: payload.len() };
    let i = Ipv4Repr {
        src: CLIENT,
        dst: SERVER,
        protocol: IpProtocol::UDP,
        ttl: 64,
        tos: 0,
        ident: 7,
        dont_frag: false,
        payload_len: u.buffer_len(),
    };
    let mut b = vec![0u8; i.buffer_len()];
    i.emit(&mut b);
    u.emit_with_payload(&mut b[20..], CLIENT, SERVER, &payload);
    PacketBuf::from_slice(&b)
}

fn hook(pf: &Pf, dir: Direction, ifp: &Interface, p: PacketBuf) -> Result<PacketBuf, ()> {
    match pf.test(0, Instant::from_secs(10), dir, ifp, p, &mut Bufs, &mut vec![]) {
        Verdict::Pass(p) => Ok(p),
        Verdict::Drop(_) => Err(()),
        Verdict::Consumed => panic!("consumed"),
    }
}

fn pf_in(pf: &Pf, n: &Net, p: PacketBuf) -> PacketBuf {
    hook(pf, Direction::In, &n.em0, p).expect("passes in")
}

fn pf_out(pf: &Pf, n: &Net, p: PacketBuf) -> Result<PacketBuf, ()> {
    hook(pf, Direction::Out, &n.em1, p)
}

/// Packets counted on each state, in `pfctl -ss -v` order.
fn state_lines(pf: &Pf) -> String {
    pf.show_states(true, Instant::from_secs(10))
}

/// Only udp to port 53 may leave on em1; anything may come in.
const RULES: &str = "block all\npass in all\npass out on em1 proto udp to port 53\n";

#[test]
fn established_flow_goes_through_its_own_states_with_or_without_the_link() {
    let n = net();
    let pf = pf_with(&n, RULES);
    for _ in 0..3 {
        let p = pf_in(&pf, &n, udp(5000, 53));
        assert_ne!(p.meta.pf_link, 0, "pf in leaves the state's link");
        pf_out(&pf, &n, p).expect("passes out");
    }
    assert_eq!(pf.state_count(), 2);
    let linked = state_lines(&pf);
    // The same packets without a link (or with a foreign one) count the same.
    let pf2 = pf_with(&n, RULES);
    for i in 0..3u64 {
        let mut p = pf_in(&pf2, &n, udp(5000, 53));
        p.meta.pf_link = [0, 0x0000_0005_0000_0003, u64::MAX][i as usize];
        pf_out(&pf2, &n, p).expect("passes out");
    }
    let strip = |s: &str| s.lines().filter(|l| !l.contains("id:")).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(&linked), strip(&state_lines(&pf2)));
    assert!(linked.contains("3:0 pkts"), "{linked}");
}

#[test]
fn a_stale_link_never_passes_a_packet_its_states_no_longer_pass() {
    let n = net();
    let pf = pf_with(&n, RULES);
    // Establish, then keep a packet that has been through pf in.
    let p = pf_in(&pf, &n, udp(5000, 53));
    pf_out(&pf, &n, p).unwrap();
    let p = pf_in(&pf, &n, udp(5000, 53));
    let p = pf_out(&pf, &n, p).unwrap();
    let stale = pf_in(&pf, &n, p);
    assert_ne!(stale.meta.pf_link >> 32, 0, "the link reaches the outbound state");

    // The states go (pfctl -F states); the ruleset no longer passes it out.
    assert_eq!(pf.flush_states(), 2);
    let rs = softnet_pf::parse_ruleset("block all\npass in all\n", "pf.conf", &n.resolver).unwrap();
    pf.load(&rs, &n.resolver).unwrap();
    let mut again = udp(5000, 53);
    again.meta = stale.meta;
    assert!(pf_out(&pf, &n, again).is_err(), "removed state found through the link");

    // The slots are reused by other flows' states (other keys).
    for port in [6000, 6001] {
        let p = pf_in(&pf, &n, udp(port, 53));
        assert!(pf_out(&pf, &n, p).is_err());
    }
    assert_eq!(pf.state_count(), 2, "two inbound states, in the freed slots");
    let mut again = udp(5000, 53);
    again.meta = stale.meta;
    assert!(pf_out(&pf, &n, again).is_err(), "reused slot taken for the flow's state");
}

#[test]
fn the_link_survives_a_ruleset_reload_and_follows_the_kept_states() {
    let n = net();
    let pf = pf_with(&n, RULES);
    let p = pf_in(&pf, &n, udp(5000, 53));
    pf_out(&pf, &n, p).unwrap();
    // Reload with a ruleset that would block out: the kept state passes.
    let rs = softnet_pf::parse_ruleset("block all\npass in all\n", "pf.conf", &n.resolver).unwrap();
    pf.load(&rs, &n.resolver).unwrap();
    for _ in 0..3 {
        let p = pf_in(&pf, &n, udp(5000, 53));
        pf_out(&pf, &n, p).expect("kept state passes out");
    }
    assert!(state_lines(&pf).contains("4:0 pkts"), "{}", state_lines(&pf));
}

#[test]
fn a_link_to_a_state_of_another_key_is_refused_and_the_search_decides() {
    let n = net();
    let pf = pf_with(&n, "pass all\n");
    let p = pf_in(&pf, &n, udp(5000, 53));
    pf_out(&pf, &n, p).unwrap();
    let p = pf_in(&pf, &n, udp(5000, 53));
    let linked = pf_out(&pf, &n, p).unwrap();
    assert_eq!(pf.state_count(), 2);
    // Point the link at the inbound state (same flow, the other key).
    let in_slot = linked.meta.pf_link & 0xffff_ffff;
    let mut p = pf_in(&pf, &n, udp(5000, 53));
    p.meta.pf_link = in_slot << 32 | in_slot;
    pf_out(&pf, &n, p).unwrap();
    assert_eq!(pf.state_count(), 2, "no second outbound state");
    let s = state_lines(&pf);
    assert_eq!(s.matches("3:0 pkts").count(), 2, "{s}");
}

#[test]
fn prefetch_takes_any_bytes_and_changes_nothing() {
    let n = net();
    let pf = pf_with(&n, RULES);
    let p = pf_in(&pf, &n, udp(5000, 53));
    pf_out(&pf, &n, p).unwrap();
    let before = state_lines(&pf);
    let frame = udp(5000, 53);
    let mut junk = frame.data().to_vec();
    let mut x = 0x9e37_79b9u32;
    for len in 0..junk.len() + 1 {
        for round in 0..pf.prefetch_rounds() + 1 {
            pf.prefetch(&n.em0, &frame.data()[..len], round);
            pf.prefetch(&n.em0, &junk[..len], round);
        }
        for b in junk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
    }
    assert_eq!(pf.prefetch_rounds(), 3);
    assert_eq!(before, state_lines(&pf));
    pf.disable(Instant::from_secs(10)).unwrap();
    assert_eq!(pf.prefetch_rounds(), 0, "disabled: nothing to prefetch");
}
