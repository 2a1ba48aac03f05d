//! The stack's side of pf's `route-to`, `reply-to` and `dup-to`: a filter
//! leaves a `RouteDecision` in a packet it passes, and the worker sends the
//! packet (or a copy) to that next hop, as pf.c's pf_route does.
//! Topology: A -- r0 [router] r1 -- B, r2 -- C (ThreeHosts).

use softnet_core::filter::{BufferSource, Direction, FilterReplies, NextHop, PacketFilter, RouteDecision, Verdict};
use softnet_core::host::{udp_datagram, HostEvent};
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::percpu::PerWorker;
use softnet_core::stats::StackStats;
use softnet_core::time::Instant;
use softnet_core::topo::*;
use softnet_wire::ipv4::{IpProtocol, Ipv4Packet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn sum(stats: &PerWorker<StackStats>, f: impl Fn(&StackStats) -> &softnet_core::percpu::Counter) -> u64 {
    stats.iter().map(|s| f(s).get()).sum()
}

/// Every hook call the filter saw: (direction, interface, src, dst).
type Seen = Arc<Mutex<Vec<(Direction, String, Ipv4Addr, Ipv4Addr)>>>;

/// A filter that passes everything and gives packets from `src` seen at
/// hook `dir` the routing decision `decision` (what pf's state does for
/// a `route-to`/`reply-to`/`dup-to` rule).
struct RouteFilter {
    dir: Direction,
    src: Ipv4Addr,
    decision: RouteDecision,
    seen: Seen,
}

impl PacketFilter for RouteFilter {
    fn test(
        &self,
        _worker: usize,
        _now: Instant,
        dir: Direction,
        ifp: &Interface,
        mut pkt: PacketBuf,
        _bufs: &mut dyn BufferSource,
        _replies: &mut FilterReplies,
    ) -> Verdict {
        let ip = Ipv4Packet::new_unchecked(pkt.data());
        let (src, dst) = (ip.src(), ip.dst());
        self.seen.lock().unwrap().push((dir, ifp.name().to_string(), src, dst));
        if dir == self.dir && src == self.src {
            pkt.meta.pf_route = self.decision;
        }
        Verdict::Pass(pkt)
    }
}

fn with_filter(dir: Direction, src: Ipv4Addr, decision: RouteDecision) -> (ThreeHosts, Seen) {
    let h = ThreeHosts::new(1);
    let seen = Seen::default();
    h.t.stack.set_filter(Some(Box::new(RouteFilter { dir, src, decision, seen: seen.clone() })));
    (h, seen)
}

fn transits(ev: &[HostEvent]) -> Vec<(Ipv4Addr, Ipv4Addr, u8)> {
    ev.iter()
        .filter_map(|e| match e {
            HostEvent::Transit { from, dst, ttl, .. } => Some((*from, *dst, *ttl)),
            _ => None,
        })
        .collect()
}

fn echo_replies(ev: &[HostEvent]) -> usize {
    ev.iter().filter(|e| matches!(e, HostEvent::EchoReply { .. })).count()
}

fn out_hooks(seen: &Seen) -> Vec<String> {
    seen.lock().unwrap().iter().filter(|s| s.0 == Direction::Out).map(|s| s.1.clone()).collect()
}

#[test]
fn route_to_after_pf_in_goes_to_the_next_hop_with_pf_out_on_its_interface() {
    let (mut h, seen) = with_filter(Direction::In, A_IP, RouteDecision::To(NextHop::routed(C_IP)));
    h.t.a.ping(B_IP, 1, 1, 64, 8);
    h.settle();
    assert_eq!(transits(&h.c.take_events()), [(A_IP, B_IP, 63)], "C got A's packet for B, TTL down by one");
    assert!(h.t.b.take_events().iter().all(|e| !matches!(e, HostEvent::EchoRequestAnswered { .. })));
    assert_eq!(out_hooks(&seen), ["r2"], "pf out ran on the route-to interface only");
    assert_eq!(sum(&h.t.stack.stats, |s| &s.ip.forward), 1);
}

#[test]
fn route_to_after_pf_out_is_resent_without_another_pf_out() {
    let (mut h, seen) = with_filter(Direction::Out, A_IP, RouteDecision::To(NextHop::routed(C_IP)));
    h.t.a.ping(B_IP, 1, 1, 64, 8);
    h.settle();
    assert_eq!(transits(&h.c.take_events()), [(A_IP, B_IP, 63)]);
    assert_eq!(out_hooks(&seen), ["r1"], "pf out ran once, on the interface the table chose");
}

#[test]
fn dup_to_copies_to_the_next_hop_and_the_original_reaches_its_destination() {
    let (mut h, seen) = with_filter(Direction::In, A_IP, RouteDecision::Dup(NextHop::routed(C_IP)));
    for seq in 0..3 {
        h.t.a.ping(B_IP, 1, seq, 64, 8);
    }
    h.settle();
    assert_eq!(echo_replies(&h.t.a.take_events()), 3, "the originals went to B and were answered");
    assert_eq!(transits(&h.c.take_events()), [(A_IP, B_IP, 63); 3], "a copy of each at C");
    // The copies skip pf out; the originals and the replies do not.
    let mut outs = out_hooks(&seen);
    outs.sort();
    assert_eq!(outs, ["r0", "r0", "r0", "r1", "r1", "r1"]);
}

#[test]
fn route_to_with_ttl_one_gets_time_exceeded() {
    let (mut h, _) = with_filter(Direction::In, A_IP, RouteDecision::To(NextHop::routed(C_IP)));
    h.t.a.ping(B_IP, 1, 1, 1, 8);
    h.settle();
    let ev = h.t.a.take_events();
    assert!(ev.contains(&HostEvent::TimeExceeded { from: R0_IP, orig_dst: B_IP }), "{ev:?}");
    assert!(transits(&h.c.take_events()).is_empty());
    assert_eq!(sum(&h.t.stack.stats, |s| &s.ip.ttlexceeded), 1);
}

#[test]
fn route_to_a_next_hop_without_a_route_is_host_unreachable_and_counted() {
    let ghost = Ipv4Addr::new(192, 168, 9, 9);
    let (mut h, _) = with_filter(Direction::In, A_IP, RouteDecision::To(NextHop::routed(ghost)));
    h.t.a.ping(B_IP, 1, 1, 64, 8);
    h.settle();
    let ev = h.t.a.take_events();
    assert!(
        ev.iter().any(|e| matches!(e, HostEvent::Unreachable { code: 1, orig_dst, .. } if *orig_dst == B_IP)),
        "{ev:?}"
    );
    assert_eq!(sum(&h.t.stack.stats, |s| &s.ip.noroute), 1);
    assert!(h.t.b.take_events().is_empty());
}

#[test]
fn route_to_an_interface_down_or_destroyed_is_a_counted_drop() {
    let (mut h, _) = with_filter(Direction::In, A_IP, RouteDecision::To(NextHop::routed(C_IP)));
    h.t.stack.set_up("r2", false).unwrap();
    h.t.a.ping(B_IP, 1, 1, 64, 8);
    h.settle();
    assert_eq!(sum(&h.t.stack.stats, |s| &s.ip.noroute), 1);
    h.t.stack.set_up("r2", true).unwrap();
    h.t.a.ping(B_IP, 1, 2, 64, 8);
    h.settle();
    assert_eq!(transits(&h.c.take_events()).len(), 1, "up again: routed to C");
    h.t.stack.destroy_interface("r2").unwrap();
    h.t.a.ping(B_IP, 1, 3, 64, 8);
    h.settle();
    assert_eq!(sum(&h.t.stack.stats, |s| &s.ip.noroute), 2);
    let ev = h.t.a.take_events();
    assert_eq!(ev.iter().filter(|e| matches!(e, HostEvent::Unreachable { code: 1, .. })).count(), 2, "{ev:?}");
}

#[test]
fn route_to_needs_fragmentation_by_the_chosen_interfaces_mtu() {
    let (mut h, _) = with_filter(Direction::In, A_IP, RouteDecision::To(NextHop::routed(C_IP)));
    h.t.stack.ifaces.load().by_name("r2").unwrap().set_mtu(1000);
    let pkt = h.t.a.build_ip(B_IP, IpProtocol::UDP, 64, &udp_datagram(A_IP, B_IP, 1, 2, 1192)[..], true);
    h.t.a.send_ip_packet(B_IP, pkt);
    h.settle();
    let ev = h.t.a.take_events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, HostEvent::Unreachable { code: 4, mtu: 1000, orig_dst, .. } if *orig_dst == B_IP)),
        "{ev:?}"
    );
    assert_eq!(sum(&h.t.stack.stats, |s| &s.ip.cantfrag), 1);
    // Without DF it goes to C in fragments.
    let pkt = h.t.a.build_ip(B_IP, IpProtocol::UDP, 64, &udp_datagram(A_IP, B_IP, 1, 2, 1192)[..], false);
    h.t.a.send_ip_packet(B_IP, pkt);
    h.settle();
    assert_eq!(transits(&h.c.take_events()).len(), 2);
    assert_eq!(sum(&h.t.stack.stats, |s| &s.ip.fragmented), 1);
}

#[test]
fn route_to_a_next_hop_that_never_answers_arp_drops_it_and_other_traffic_flows() {
    let ghost = Ipv4Addr::new(10, 0, 3, 99);
    let (mut h, _) = with_filter(Direction::In, A_IP, RouteDecision::To(NextHop::routed(ghost)));
    for s in 0..7u16 {
        h.t.a.ping(B_IP, 1, s, 64, 8);
        h.settle();
        h.t.advance(Duration::from_secs(1));
    }
    let ev = h.t.a.take_events();
    assert!(ev.iter().any(|e| matches!(e, HostEvent::Unreachable { code: 1, .. })), "{ev:?}");
    assert!(transits(&h.c.take_events()).is_empty());
    // B's own traffic is not routed by the filter and gets through.
    h.t.b.ping(C_IP, 2, 1, 64, 8);
    h.settle();
    assert_eq!(echo_replies(&h.t.b.take_events()), 1);
}

#[test]
fn dup_to_an_unroutable_next_hop_drops_only_the_copy_silently() {
    let ghost = Ipv4Addr::new(192, 168, 9, 9);
    let (mut h, _) = with_filter(Direction::In, A_IP, RouteDecision::Dup(NextHop::routed(ghost)));
    h.t.a.ping(B_IP, 1, 1, 64, 8);
    h.settle();
    let ev = h.t.a.take_events();
    assert_eq!(echo_replies(&ev), 1);
    assert!(ev.iter().all(|e| !matches!(e, HostEvent::Unreachable { .. })), "{ev:?}");
    assert_eq!(sum(&h.t.stack.stats, |s| &s.ip.noroute), 1);
}

#[test]
fn the_routers_own_packets_follow_a_route_decision_of_pf_out() {
    // The router's echo reply from R1_IP to A would leave by r0; pf out
    // sends it to C instead.
    let (mut h, _) = with_filter(Direction::Out, R1_IP, RouteDecision::To(NextHop::routed(C_IP)));
    h.t.a.ping(R1_IP, 1, 1, 64, 8);
    h.settle();
    assert_eq!(echo_replies(&h.t.a.take_events()), 0);
    assert_eq!(transits(&h.c.take_events()), [(R1_IP, A_IP, 255)]);
}

#[test]
fn a_next_hop_on_a_named_interface_goes_out_there_and_not_once_it_is_gone() {
    let h = ThreeHosts::new(1);
    let r2 = h.t.stack.ifaces.load().by_name("r2").unwrap().weak();
    let seen = Seen::default();
    let decision = RouteDecision::To(NextHop::on(r2, C_IP));
    h.t.stack.set_filter(Some(Box::new(RouteFilter { dir: Direction::In, src: A_IP, decision, seen: seen.clone() })));
    let mut h = h;
    h.t.a.ping(B_IP, 1, 1, 64, 8);
    h.settle();
    assert_eq!(transits(&h.c.take_events()), [(A_IP, B_IP, 63)]);
    // A new r2 is another interface: the old one's next hop is gone.
    h.t.stack.destroy_interface("r2").unwrap();
    let (port, _c) = softnet_core::vlink::wire(1, 64);
    h.t.stack.create_interface("r2", R2_MAC, 1500, port.link_queues()).unwrap();
    h.t.stack.set_up("r2", true).unwrap();
    h.t.a.ping(B_IP, 1, 2, 64, 8);
    h.settle();
    assert_eq!(sum(&h.t.stack.stats, |s| &s.ip.noroute), 1);
}
