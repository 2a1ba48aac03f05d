//! pf out for what the router sends itself (OpenBSD's ip_output calls
//! pf_test(PF_OUT) on locally generated packets): echo replies, ICMP
//! errors and RSTs from the router pass pf out on their interface, where
//! `block out` stops them and states pass them (an ICMP error through the
//! state of the packet it quotes); pf's own return-rst / return-icmp
//! replies (PF_TAG_GENERATED) are not filtered. In memory: host A -- r0
//! [router + pf] r1 -- host B.

use softnet_core::host::HostEvent;
use softnet_core::percpu::Counter;
use softnet_core::stats::StackStats;
use softnet_core::topo::*;
use softnet_pf::{parse_ruleset, Pf, StaticResolver};
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::tcp::TcpPacket;

/// The topology with `rules` loaded into a pf in the stack's hook.
fn lab(rules: &str) -> (TwoHosts, Pf) {
    let t = TwoHosts::new(1);
    let resolver = StaticResolver::new()
        .with_interface("r0", &["10.0.1.1/24"])
        .with_interface("r1", &["10.0.2.1/24"])
        .with_egress("r1");
    let rs = parse_ruleset(rules, "pf.conf", &resolver).unwrap_or_else(|e| panic!("{e:?}"));
    let pf = Pf::new();
    pf.load(&rs, &resolver).unwrap();
    t.stack.set_filter(Some(Box::new(pf.clone())));
    (t, pf)
}

fn filtered(t: &TwoHosts) -> u64 {
    sum(t, |s| &s.ip.filtered)
}

fn sum(t: &TwoHosts, f: impl Fn(&StackStats) -> &Counter) -> u64 {
    t.stack.stats.iter().map(|s| f(s).get()).sum()
}

fn echo_replies_from(ev: &[HostEvent], from_ip: std::net::Ipv4Addr) -> usize {
    ev.iter().filter(|e| matches!(e, HostEvent::EchoReply { from, .. } if *from == from_ip)).count()
}

fn unreachables(ev: &[HostEvent], code_want: u8) -> usize {
    ev.iter().filter(|e| matches!(e, HostEvent::Unreachable { code, .. } if *code == code_want)).count()
}

fn time_exceeded(ev: &[HostEvent]) -> usize {
    ev.iter().filter(|e| matches!(e, HostEvent::TimeExceeded { .. })).count()
}

fn rsts(ev: &[HostEvent], port: u16) -> usize {
    ev.iter()
        .filter(|e| matches!(e, HostEvent::Tcp { src_port, flags, .. } if *src_port == port && flags & 0x04 != 0))
        .count()
}

/// A SYN from A to `dst`:`dport`.
fn send_syn(t: &mut TwoHosts, dst: std::net::Ipv4Addr, dport: u16) {
    let mut syn = vec![0u8; 20];
    syn[0..2].copy_from_slice(&40000u16.to_be_bytes());
    syn[2..4].copy_from_slice(&dport.to_be_bytes());
    syn[4..8].copy_from_slice(&1000u32.to_be_bytes());
    syn[12] = 5 << 4;
    syn[13] = 0x02;
    syn[14..16].copy_from_slice(&4096u16.to_be_bytes());
    TcpPacket::new_unchecked(&mut syn[..]).fill_checksum(A_IP, dst);
    t.a.send_ip(dst, IpProtocol::TCP, 64, &syn);
}

#[test]
fn block_out_stops_the_routers_own_echo_replies_errors_and_rsts() {
    let (mut t, _pf) = lab("pass all no state\nblock out on r0 all\n");
    // Echo replies from both of the router's addresses leave by r0.
    t.a.ping(R0_IP, 1, 1, 64, 8);
    t.a.ping(R1_IP, 1, 2, 64, 8);
    // Port unreachable, time exceeded, RST from a closed port.
    t.a.send_udp(R0_IP, 5000, 33434, 10, 64);
    t.a.ping(B_IP, 1, 3, 1, 8);
    send_syn(&mut t, R0_IP, 22);
    t.settle();
    let ev = t.a.take_events();
    assert_eq!(echo_replies_from(&ev, R0_IP) + echo_replies_from(&ev, R1_IP), 0, "{ev:?}");
    assert_eq!(unreachables(&ev, 3), 0, "{ev:?}");
    assert_eq!(time_exceeded(&ev), 0, "{ev:?}");
    assert_eq!(rsts(&ev, 22), 0, "{ev:?}");
    assert_eq!(sum(&t, |s| &s.icmp.reflect), 2, "the router did answer");
    assert_eq!(filtered(&t), 5, "each answer blocked by pf out on r0");
}

#[test]
fn block_out_on_another_interface_lets_the_routers_answers_out() {
    let (mut t, _pf) = lab("pass all no state\nblock out on r1 all\n");
    t.a.ping(R1_IP, 1, 1, 64, 8);
    t.a.send_udp(R0_IP, 5000, 33434, 10, 64);
    t.settle();
    let ev = t.a.take_events();
    assert_eq!(echo_replies_from(&ev, R1_IP), 1, "{ev:?}");
    assert_eq!(unreachables(&ev, 3), 1, "{ev:?}");
    assert_eq!(filtered(&t), 0);
}

#[test]
fn states_pass_the_routers_answers_through_block_out() {
    let (mut t, pf) = lab("block out on r0 all\npass in on r0 all\n");
    // The echo request's state passes the reply.
    t.a.ping(R0_IP, 7, 1, 64, 8);
    t.settle();
    assert_eq!(echo_replies_from(&t.a.take_events(), R0_IP), 1);
    // ICMP errors pass through the state of the packet they quote: the UDP
    // datagram to a closed port, the echo request whose TTL ran out.
    t.a.send_udp(R0_IP, 5000, 33434, 10, 64);
    t.a.ping(B_IP, 8, 1, 1, 8);
    t.settle();
    let ev = t.a.take_events();
    assert_eq!(unreachables(&ev, 3), 1, "{ev:?}");
    assert_eq!(time_exceeded(&ev), 1, "{ev:?}");
    // The RST from a closed port goes out through the SYN's state.
    send_syn(&mut t, R0_IP, 22);
    t.settle();
    assert_eq!(rsts(&t.a.take_events(), 22), 1);
    assert_eq!(filtered(&t), 0);
    // The answers made no states of their own: one per question.
    assert_eq!(pf.state_count(), 4, "{}", pf.state_count());
}

#[test]
fn pfs_own_return_rst_and_return_icmp_pass_block_out_untested() {
    let rules = "block all\n\
                 block return-rst in on r0 proto tcp to port 23\n\
                 block return-icmp in on r0 proto udp to port 9999\n";
    let (mut t, pf) = lab(rules);
    send_syn(&mut t, B_IP, 23);
    t.a.send_udp(B_IP, 5000, 9999, 10, 64);
    t.settle();
    let ev = t.a.take_events();
    assert_eq!(rsts(&ev, 23), 1, "return-rst through block all: {ev:?}");
    assert_eq!(unreachables(&ev, 3), 1, "return-icmp through block all: {ev:?}");
    // The two questions blocked in; the answers never met a rule.
    assert_eq!(filtered(&t), 2);
    assert_eq!(pf.state_count(), 0);
}
