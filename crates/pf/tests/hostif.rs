//! pf and the host twins (`softnet_core::hostif`): what is punted to the
//! host has passed pf in on the interface it arrived on; what the host
//! sends out of its twin passes pf out on the paired interface. In
//! memory: host A -- r0 [router + pf, twin "hr0"] r1 -- host B.

use softnet_core::host::HostEvent;
use softnet_core::packet::PacketBuf;
use softnet_core::topo::*;
use softnet_core::vlink::{self, VirtualPort};
use softnet_pf::{parse_ruleset, Pf, StaticResolver};
use softnet_wire::ethernet::{EtherType, EthernetRepr, HEADER_LEN};
use softnet_wire::ipv4::{IpProtocol, Ipv4Repr};

fn lab(rules: &str) -> (TwoHosts, VirtualPort) {
    let t = TwoHosts::new(1);
    let resolver = StaticResolver::new()
        .with_interface("r0", &["10.0.1.1/24"])
        .with_interface("r1", &["10.0.2.1/24"])
        .with_egress("r1");
    let rs = parse_ruleset(rules, "pf.conf", &resolver).unwrap_or_else(|e| panic!("{e:?}"));
    let pf = Pf::new();
    pf.load(&rs, &resolver).unwrap();
    t.stack.set_filter(Some(Box::new(pf)));
    let (near, far) = vlink::wire(1, 256);
    t.stack.attach_host("r0", "hr0", near.link_queues()).unwrap();
    (t, far)
}

fn punted(twin: &VirtualPort) -> usize {
    let mut p = PacketBuf::with_capacity(70_000);
    let mut n = 0;
    while twin.recv(&mut p) {
        n += 1;
    }
    n
}

/// A UDP datagram the host sends from r0's address to A at A's MAC.
fn host_udp(dport: u16) -> Vec<u8> {
    let l4 = softnet_core::host::udp_datagram(R0_IP, A_IP, 4000, dport, 4);
    let ip = Ipv4Repr {
        src: R0_IP,
        dst: A_IP,
        protocol: IpProtocol::UDP,
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_frag: false,
        payload_len: l4.len(),
    };
    let mut f = vec![0u8; HEADER_LEN + 20 + l4.len()];
    EthernetRepr { src: R0_MAC, dst: A_MAC, ethertype: EtherType::IPV4, vlan: None }.emit(&mut f);
    ip.emit(&mut f[HEADER_LEN..HEADER_LEN + 20]);
    f[HEADER_LEN + 20..].copy_from_slice(&l4);
    f
}

#[test]
fn pf_in_decides_before_the_punt() {
    let (mut t, twin) = lab("pass all\nblock in on r0 proto udp to port 3784\n");
    t.a.send_udp(R0_IP, 5000, 3784, 10, 64);
    t.a.send_udp(R0_IP, 5000, 3785, 10, 64);
    t.settle();
    assert_eq!(punted(&twin), 1, "the blocked datagram never reaches the host");
}

#[test]
fn pf_out_on_the_paired_interface_filters_what_the_host_sends() {
    let (mut t, twin) = lab("pass all\nblock out on r0 proto udp to port 9\n");
    // A must be known to the router for its MAC to be right; the host
    // built the frame with it in any case.
    t.a.ping(R0_IP, 1, 1, 64, 8);
    t.settle();
    t.a.take_events();
    assert!(twin.send(0, &host_udp(9)));
    assert!(twin.send(0, &host_udp(10)));
    t.settle();
    let ev = t.a.take_events();
    let to =
        |port: u16| ev.iter().filter(|e| matches!(e, HostEvent::Udp { dst_port, .. } if *dst_port == port)).count();
    assert_eq!((to(9), to(10)), (0, 1), "port 9 blocked by pf out on r0, port 10 sent");
    let s = t.stack.ifaces.load().by_name("r0").unwrap().host().unwrap().stats_total();
    assert_eq!((s.from_host, s.filtered, s.transmitted), (2, 1, 1));
}

#[test]
fn the_state_the_hosts_packet_made_lets_the_answer_in_to_be_punted() {
    let (mut t, twin) = lab("block all\npass out on r0 proto udp keep state\npass in on r0 proto icmp\n");
    t.a.ping(R0_IP, 1, 1, 64, 8);
    t.settle();
    punted(&twin);
    t.a.take_events();
    assert!(twin.send(0, &host_udp(7)));
    t.settle();
    // A answers UDP port 7 with nothing (a stub); answer by hand: A sends
    // a datagram back to the host's source port, which only the state
    // lets in.
    t.a.send_udp(R0_IP, 7, 4000, 4, 64);
    t.a.send_udp(R0_IP, 7, 4001, 4, 64);
    t.settle();
    assert_eq!(punted(&twin), 1, "the reply in the state's flow is punted, the other blocked");
}
