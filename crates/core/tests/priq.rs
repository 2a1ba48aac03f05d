//! Packet priority on transmit, as OpenBSD's priq: when the router stages
//! more frames for an interface than its link takes, the higher
//! priorities (`PacketMeta::prio`, which pf's `set prio` sets) go out and
//! the lowest are the ones lost. Topology: A -- r0 [router] r1 -- B, B's
//! wire four frames deep.

use softnet_core::filter::{BufferSource, Direction, FilterReplies, PacketFilter, Verdict};
use softnet_core::host::HostEvent;
use softnet_core::iface::Interface;
use softnet_core::packet::PacketBuf;
use softnet_core::stack::StackConfig;
use softnet_core::time::Instant;
use softnet_core::topo::*;
use std::sync::Arc;

/// Gives UDP datagrams to port 7 priority 7 (pf's `set prio 7`) at pf in.
struct PrioFilter;

impl PacketFilter for PrioFilter {
    fn test(
        &self,
        _worker: usize,
        _now: Instant,
        dir: Direction,
        _ifp: &Interface,
        mut pkt: PacketBuf,
        _bufs: &mut dyn BufferSource,
        _replies: &mut FilterReplies,
    ) -> Verdict {
        let d = pkt.data();
        if dir == Direction::In && d.len() >= 24 && d[9] == 17 && u16::from_be_bytes([d[22], d[23]]) == 7 {
            pkt.meta.set_prio(7);
        }
        Verdict::Pass(pkt)
    }
}

fn udp_ports(ev: &[HostEvent]) -> Vec<u16> {
    ev.iter()
        .filter_map(|e| match e {
            HostEvent::Udp { dst_port, .. } => Some(*dst_port),
            _ => None,
        })
        .collect()
}

#[test]
fn a_link_that_takes_fewer_frames_gets_the_higher_priorities() {
    let config = StackConfig { workers: 1, pool_size: 1024, ..StackConfig::default() };
    let mut t = TwoHosts::with_b_depth(config, Arc::new(softnet_core::rng::OsEntropy), 4);
    // B's address resolved first, so the burst goes out in one staging.
    t.a.send_udp(B_IP, 1000, 9, 8, 64);
    t.settle();
    assert_eq!(udp_ports(&t.b.take_events()), [9]);
    t.stack.set_filter(Some(Box::new(PrioFilter)));
    // Eight datagrams in one batch, low and high priority in turn: the
    // link takes four, the four of priority 7.
    for i in 0..8u16 {
        t.a.send_udp(B_IP, 2000 + i, if i % 2 == 0 { 9 } else { 7 }, 8, 64);
    }
    t.settle();
    assert_eq!(udp_ports(&t.b.take_events()), [7, 7, 7, 7]);
    // One priority only: arrival order, the first four.
    for i in 0..8u16 {
        t.a.send_udp(B_IP, 3000 + i, 9, 8, 64);
    }
    t.settle();
    assert_eq!(udp_ports(&t.b.take_events()), [9, 9, 9, 9]);
}
