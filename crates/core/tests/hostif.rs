//! Host interfaces in memory (VPP linux-cp's model): interface r0 of the
//! router has a host twin, a virtual wire whose far end stands for the
//! Linux TAP. What is for the router and not consumed by the stack is
//! punted to it as it arrived; what the host sends goes out of r0; the
//! host's ARP requests are answered from the router's table.
//!
//! ```text
//!  host A 10.0.1.2 ── r0 10.0.1.1 [router] r1 10.0.2.1 ── host B 10.0.2.2
//!                     └─ twin "hr0" (the test reads and writes its far end)
//! ```

use softnet_core::host::HostEvent;
use softnet_core::packet::PacketBuf;
use softnet_core::topo::*;
use softnet_core::vlink::{self, VirtualPort};
use softnet_wire::arp::{ArpOperation, ArpPacket, ArpRepr};
use softnet_wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr, HEADER_LEN};
use softnet_wire::icmpv4::Icmpv4Repr;
use softnet_wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use softnet_wire::tcp::TcpPacket;
use std::net::Ipv4Addr;

/// The topology with a twin on r0; returns the twin's far end.
fn lab() -> (TwoHosts, VirtualPort) {
    let t = TwoHosts::new(1);
    let (near, far) = vlink::wire(1, 256);
    t.stack.attach_host("r0", "hr0", near.link_queues()).unwrap();
    (t, far)
}

/// Every frame the twin received so far.
fn frames(twin: &VirtualPort) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut p = PacketBuf::with_capacity(70_000);
    while twin.recv(&mut p) {
        out.push(p.data().to_vec());
    }
    out
}

fn ip_of(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    assert_eq!(EthernetFrame::new_checked(frame).unwrap().ethertype(), EtherType::IPV4);
    Ipv4Packet::new_checked(&frame[HEADER_LEN..]).unwrap()
}

/// A SYN from A to `dst`:`dport`.
fn send_syn(t: &mut TwoHosts, dst: Ipv4Addr, dport: u16) {
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

/// A frame the host sends out of its twin: an IPv4 packet from `src` to
/// `dst`, Ethernet from r0's MAC (the twin's) to `dst_mac`.
fn host_frame(dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let repr =
        Ipv4Repr { src, dst, protocol: proto, ttl: 64, tos: 0, ident: 7, dont_frag: true, payload_len: payload.len() };
    let mut f = vec![0u8; HEADER_LEN + 20 + payload.len()];
    EthernetRepr { src: R0_MAC, dst: dst_mac, ethertype: EtherType::IPV4, vlan: None }.emit(&mut f);
    repr.emit(&mut f[HEADER_LEN..HEADER_LEN + 20]);
    f[HEADER_LEN + 20..].copy_from_slice(payload);
    f
}

fn host_arp_request(target: Ipv4Addr) -> Vec<u8> {
    let req = ArpRepr {
        operation: ArpOperation::Request,
        sender_hw: R0_MAC,
        sender_ip: R0_IP,
        target_hw: MacAddr::ZERO,
        target_ip: target,
    };
    let mut f = vec![0u8; 60];
    EthernetRepr { src: R0_MAC, dst: MacAddr::BROADCAST, ethertype: EtherType::ARP, vlan: None }.emit(&mut f);
    req.emit(&mut f[HEADER_LEN..HEADER_LEN + ArpRepr::LEN]);
    f
}

fn arp_replies(frames: &[Vec<u8>]) -> Vec<(MacAddr, ArpRepr)> {
    frames
        .iter()
        .filter(|f| EthernetFrame::new_checked(&f[..]).unwrap().ethertype() == EtherType::ARP)
        .map(|f| {
            let e = EthernetFrame::new_checked(&f[..]).unwrap();
            (e.dst(), ArpRepr::parse(&ArpPacket::new_checked(e.payload()).unwrap()).unwrap())
        })
        .collect()
}

fn host_stats(t: &TwoHosts) -> softnet_core::hostif::HostStatsTotal {
    t.stack.ifaces.load().by_name("r0").unwrap().host().unwrap().stats_total()
}

#[test]
fn tcp_to_the_router_is_punted_as_it_arrived_and_not_reset() {
    let (mut t, twin) = lab();
    send_syn(&mut t, R0_IP, 179);
    // To the other interface's address too: it arrived on r0.
    send_syn(&mut t, R1_IP, 22);
    t.settle();
    let got = frames(&twin);
    assert_eq!(got.len(), 2, "both SYNs punted");
    let e = EthernetFrame::new_checked(&got[0][..]).unwrap();
    assert_eq!((e.src(), e.dst()), (A_MAC, R0_MAC), "the Ethernet header as it arrived");
    let ip = ip_of(&got[0]);
    assert_eq!((ip.src(), ip.dst(), ip.protocol()), (A_IP, R0_IP, IpProtocol::TCP));
    assert_eq!(TcpPacket::new_checked(ip.payload()).unwrap().dst_port(), 179);
    assert_eq!(ip_of(&got[1]).dst(), R1_IP);
    let ev = t.a.take_events();
    assert!(!ev.iter().any(|e| matches!(e, HostEvent::Tcp { .. })), "no RST from the stack: {ev:?}");
    assert_eq!(host_stats(&t).punted, 2);
}

#[test]
fn without_a_twin_the_stack_still_resets_and_refuses() {
    let mut t = TwoHosts::new(1);
    send_syn(&mut t, R0_IP, 179);
    t.a.send_udp(R0_IP, 5000, 33434, 10, 64);
    t.settle();
    let ev = t.a.take_events();
    assert!(ev.iter().any(|e| matches!(e, HostEvent::Tcp { flags, .. } if flags & 0x04 != 0)), "{ev:?}");
    assert!(ev.iter().any(|e| matches!(e, HostEvent::Unreachable { code: 3, .. })), "{ev:?}");
}

#[test]
fn udp_and_other_protocols_are_punted_instead_of_refused() {
    let (mut t, twin) = lab();
    t.a.send_udp(R0_IP, 5000, 3784, 10, 64);
    t.a.send_ip(R0_IP, IpProtocol(89), 1, &[0u8; 24]);
    t.settle();
    let got = frames(&twin);
    let protos: Vec<IpProtocol> = got.iter().map(|f| ip_of(f).protocol()).collect();
    assert_eq!(protos, vec![IpProtocol::UDP, IpProtocol(89)]);
    let ev = t.a.take_events();
    assert!(!ev.iter().any(|e| matches!(e, HostEvent::Unreachable { .. })), "{ev:?}");
}

#[test]
fn echo_requests_stay_the_stacks_and_replies_to_the_hosts_pings_are_punted() {
    let (mut t, twin) = lab();
    t.a.ping(R0_IP, 9, 1, 64, 8);
    t.settle();
    assert!(t.a.take_events().iter().any(|e| matches!(e, HostEvent::EchoReply { from, .. } if *from == R0_IP)));
    assert!(frames(&twin).is_empty(), "an echo request the stack answers is not punted");
    // The host pings A (A is known now): its request goes out of r0, A's
    // reply is punted.
    let req = Icmpv4Repr::EchoRequest { ident: 77, seq_no: 1, data: b"hostping" };
    let mut icmp = vec![0u8; req.buffer_len()];
    req.emit(&mut icmp);
    assert!(twin.send(0, &host_frame(A_MAC, R0_IP, A_IP, IpProtocol::ICMP, &icmp)));
    t.settle();
    assert!(t.a.take_events().iter().any(|e| matches!(e, HostEvent::EchoRequestAnswered { .. })));
    let got = frames(&twin);
    assert_eq!(got.len(), 1);
    let ip = ip_of(&got[0]);
    assert_eq!((ip.src(), ip.dst(), ip.protocol()), (A_IP, R0_IP, IpProtocol::ICMP));
    assert_eq!(ip.payload()[0], 0, "an echo reply");
    let s = host_stats(&t);
    assert_eq!((s.from_host, s.transmitted, s.punted), (1, 1, 1));
}

#[test]
fn the_hosts_arp_requests_are_answered_from_the_routers_table() {
    let (mut t, twin) = lab();
    // A is not known yet: the router asks on r0, A answers, the host gets
    // the answer.
    assert!(twin.send(0, &host_arp_request(A_IP)));
    t.settle();
    let ev = t.a.take_events();
    assert!(ev.iter().any(|e| matches!(e, HostEvent::ArpLearned { ip, .. } if *ip == R0_IP)), "{ev:?}");
    let r = arp_replies(&frames(&twin));
    assert_eq!(r.len(), 1, "answered once resolved");
    let (dst, rep) = r[0];
    assert_eq!(dst, R0_MAC);
    assert_eq!((rep.operation, rep.sender_ip, rep.sender_hw, rep.target_ip), (ArpOperation::Reply, A_IP, A_MAC, R0_IP));
    // Known now: answered at once, nothing on the wire.
    assert!(twin.send(0, &host_arp_request(A_IP)));
    t.settle();
    assert_eq!(arp_replies(&frames(&twin)).len(), 1);
    assert!(t.a.take_events().is_empty());
    // Off the link, and the router's own address: no answer.
    assert!(twin.send(0, &host_arp_request(Ipv4Addr::new(10, 0, 9, 9))));
    assert!(twin.send(0, &host_arp_request(R1_IP)));
    t.settle();
    assert!(frames(&twin).is_empty());
    let s = host_stats(&t);
    assert_eq!((s.arp_answered, s.dropped, s.transmitted), (2, 2, 0));
}

#[test]
fn multicast_is_punted_only_for_groups_the_host_joined() {
    let (mut t, twin) = lab();
    let ospf = Ipv4Addr::new(224, 0, 0, 5);
    t.a.send_ip(ospf, IpProtocol(89), 1, &[0u8; 24]);
    t.settle();
    assert!(frames(&twin).is_empty(), "not joined: dropped");
    assert!(t.stack.set_host_groups("r0", vec![ospf], vec![]).unwrap());
    t.a.send_ip(ospf, IpProtocol(89), 1, &[0u8; 24]);
    t.a.send_ip(Ipv4Addr::new(224, 0, 0, 6), IpProtocol(89), 1, &[0u8; 24]);
    t.settle();
    let got = frames(&twin);
    assert_eq!(got.len(), 1);
    let e = EthernetFrame::new_checked(&got[0][..]).unwrap();
    assert_eq!(e.dst(), MacAddr([0x01, 0x00, 0x5e, 0, 0, 5]), "the group's MAC, as the twin expects it");
    assert_eq!(ip_of(&got[0]).dst(), ospf);
}

#[test]
fn a_twin_is_attached_once_and_names_are_not_shared() {
    let (t, _twin) = lab();
    let (near, _far) = vlink::wire(1, 8);
    let e = t.stack.attach_host("r0", "hr0b", near.link_queues()).unwrap_err().to_string();
    assert!(e.contains("has a host interface already"), "{e}");
    let (near, _far) = vlink::wire(1, 8);
    let e = t.stack.attach_host("r1", "hr0", near.link_queues()).unwrap_err().to_string();
    assert!(e.contains("another interface"), "{e}");
    let (near, _far) = vlink::wire(1, 8);
    assert!(t.stack.attach_host("nope", "hx", near.link_queues()).is_err());
    assert_eq!(t.stack.host_owner("hr0").map(|i| i.name().to_string()).as_deref(), Some("r0"));
    assert!(t.stack.host_owner("r0").is_none() && t.stack.host_owner("hr0b").is_none());
    assert!(t.stack.set_host_groups("r1", vec![], vec![]).is_err(), "r1 has no twin");
}

#[test]
fn malformed_frames_from_the_host_are_counted_and_dropped() {
    let (mut t, twin) = lab();
    assert!(twin.send(0, &[0u8; 10]));
    let mut short = host_frame(A_MAC, R0_IP, A_IP, IpProtocol::UDP, &[]);
    short.truncate(HEADER_LEN + 8);
    assert!(twin.send(0, &short));
    t.settle();
    let s = host_stats(&t);
    assert_eq!((s.from_host, s.dropped, s.transmitted), (2, 2, 0));
    assert!(t.a.take_events().is_empty());
}

/// A twin's queue that logs its calls: `S` for a send that carried
/// frames, `R` for a read.
struct Logged {
    inner: Box<dyn softnet_core::link::LinkQueue>,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl softnet_core::link::LinkQueue for Logged {
    fn recv(&mut self, pool: &mut softnet_core::packet::PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.log.lock().unwrap().push('R');
        self.inner.recv(pool, out, max)
    }

    fn send(&mut self, pool: &mut softnet_core::packet::PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        if !frames.is_empty() {
            self.log.lock().unwrap().push('S');
        }
        self.inner.send(pool, frames)
    }
}

#[test]
fn what_a_batch_punts_is_written_before_the_round_reads_the_host() {
    // The punted frame reaches the host before the worker's same round
    // reads the twin, so an answer the host has ready by then goes out in
    // that round instead of waiting for the next.
    let mut t = TwoHosts::new(1);
    let (near, far) = vlink::wire(1, 256);
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let queues = near
        .link_queues()
        .into_iter()
        .map(|inner| Box::new(Logged { inner, log: log.clone() }) as Box<dyn softnet_core::link::LinkQueue>)
        .collect();
    t.stack.attach_host("r0", "hr0", queues).unwrap();
    t.settle();
    log.lock().unwrap().clear();
    send_syn(&mut t, R0_IP, 179);
    // Rounds by hand, each marked in the log.
    for _ in 0..4 {
        t.a.poll();
        log.lock().unwrap().push('|');
        t.workers[0].poll();
    }
    assert_eq!(frames(&far).len(), 1, "the SYN punted");
    let log = log.lock().unwrap().clone();
    assert!(log.contains("|SR|"), "the punt is written before the round's read of the twin: {log}");
}
