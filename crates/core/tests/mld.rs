//! MLD for the groups the router joins (stack/mld.rs, RFC 3810): State
//! Change Reports when the interface comes up and when an address adds a
//! group (each sent twice), Current State Reports answering MLDv2 and
//! MLDv1 queries within their delay, queries that break RFC 3810 §5.1.14
//! ignored.

use softnet_core::rng::FixedEntropy;
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::vlink::{self, VirtualPort};
use softnet_core::worker::Worker;
use softnet_wire::ethernet::{EtherType, MacAddr, HEADER_LEN};
use softnet_wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::{link_local_from_mac, Ipv6Packet, Ipv6Repr};
use softnet_wire::ipv6ext::router_alert_hop_by_hop;
use softnet_wire::mld::{record_type, MldRepr};
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

const R0_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

struct Rig {
    stack: Arc<Stack>,
    clock: Arc<ManualClock>,
    worker: Worker,
    a: VirtualPort,
}

/// What a report says: (eth dst, ip src, ip dst, hop limit, type, records
/// as (type, group)).
type Report = (MacAddr, Ipv6Addr, Ipv6Addr, u8, u8, Vec<(u8, Ipv6Addr)>);

impl Rig {
    fn new() -> Rig {
        let clock = Arc::new(ManualClock::new(Instant::from_secs(1000)));
        let stack =
            Stack::with_clock_and_entropy(StackConfig::default(), clock.clone(), Arc::new(FixedEntropy::new(9)));
        let (r0_port, a_port) = vlink::wire(1, 1024);
        stack.create_interface("r0", R0_MAC, 1500, r0_port.link_queues()).unwrap();
        let dynclock: Arc<dyn Clock> = clock.clone();
        let worker = Worker::new(0, stack.clone(), dynclock);
        Rig { stack, clock, worker, a: a_port }
    }

    /// Time passes in 100 ms steps with the stack's timer and the worker.
    fn wait(&mut self, ms: u64) {
        for _ in 0..ms / 100 {
            self.clock.advance(Duration::from_millis(100));
            self.stack.tick();
            self.worker.poll();
        }
    }

    /// The MLD reports the router sent since the last call.
    fn reports(&self) -> Vec<Report> {
        let mut out = Vec::new();
        let mut p = softnet_core::packet::PacketBuf::with_capacity(4096);
        while self.a.recv(&mut p) {
            let f = p.data();
            let ip6 = Ipv6Packet::new_checked(&f[HEADER_LEN..]).unwrap();
            if ip6.next_header() != IpProtocol::HOPOPT {
                continue; // DAD's solicitations
            }
            assert_eq!(&ip6.payload()[..8], &router_alert_hop_by_hop(IpProtocol::ICMPV6), "the router alert");
            let body = &ip6.payload()[8..ip6.payload_len() as usize];
            let icmp = Icmpv6Packet::new_checked(body).unwrap();
            let Icmpv6Repr::Mld(m) = Icmpv6Repr::parse(ip6.src(), ip6.dst(), &icmp).unwrap() else { panic!("not MLD") };
            let recs = match m {
                MldRepr::Report { group } => vec![(0, group)],
                _ => m.records().map(|r| r.unwrap()).map(|r| (r.record_type, r.group)).collect(),
            };
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&f[..6]);
            out.push((MacAddr(mac), ip6.src(), ip6.dst(), ip6.hop_limit(), m.msg_type(), recs));
        }
        out
    }

    fn query(&mut self, src: Ipv6Addr, hop_limit: u8, m: MldRepr<'_>) {
        let icmp = Icmpv6Repr::Mld(m);
        let hbh = router_alert_hop_by_hop(IpProtocol::ICMPV6);
        let dst = ip("ff02::1");
        let r = Ipv6Repr {
            src,
            dst,
            next_header: IpProtocol::HOPOPT,
            hop_limit,
            traffic_class: 0,
            flow_label: 0,
            payload_len: 8 + icmp.buffer_len(),
        };
        let mut pkt = vec![0u8; r.buffer_len()];
        r.emit(&mut pkt);
        pkt[40..48].copy_from_slice(&hbh);
        icmp.emit(src, dst, &mut pkt[48..]);
        let mut f = vec![0x33, 0x33, 0, 0, 0, 1];
        f.extend_from_slice(&A_MAC.0);
        f.extend_from_slice(&EtherType::IPV6.0.to_be_bytes());
        f.extend_from_slice(&pkt);
        self.a.send(0, &f);
        self.worker.poll();
    }
}

fn groups(reports: &[Report], kind: u8) -> Vec<Ipv6Addr> {
    let mut g: Vec<Ipv6Addr> = reports.iter().flat_map(|r| r.5.iter().filter(|x| x.0 == kind).map(|x| x.1)).collect();
    g.sort();
    g
}

#[test]
fn joins_are_reported_twice_and_queries_answered_within_their_delay() {
    let mut r = Rig::new();
    let ll = link_local_from_mac(R0_MAC);
    let sn_ll = ip("ff02::1:ff00:101");
    assert!(r.reports().is_empty(), "nothing while the interface is down");
    r.stack.set_up("r0", true).unwrap();
    let first = r.reports();
    assert_eq!(first.len(), 1);
    let (mac, src, dst, hl, t, _) = &first[0];
    // DAD has not run yet: from ::, to ff02::16, hop limit 1.
    assert_eq!(
        (*mac, *src, *dst, *hl, *t),
        (MacAddr([0x33, 0x33, 0, 0, 0, 0x16]), Ipv6Addr::UNSPECIFIED, ip("ff02::16"), 1, 143)
    );
    assert_eq!(groups(&first, record_type::CHANGE_TO_EXCLUDE), vec![ip("ff02::2"), sn_ll], "all-nodes never reported");
    r.wait(1100);
    let again = r.reports();
    assert_eq!(groups(&again, record_type::CHANGE_TO_EXCLUDE), vec![ip("ff02::2"), sn_ll], "the retransmission");
    r.wait(3000); // DAD done: the link-local address is the source now
    assert!(r.reports().is_empty());

    // An address with a new solicited-node group: only that group.
    r.stack.add_address6("r0", ip("fd00:1::1"), 64).unwrap();
    let rep = r.reports();
    assert_eq!((rep.len(), rep[0].1), (1, ll));
    assert_eq!(groups(&rep, record_type::CHANGE_TO_EXCLUDE), vec![ip("ff02::1:ff00:1")]);
    // One whose group is joined already (same low 24 bits): no report.
    r.wait(1100);
    r.reports();
    r.stack.add_address6("r0", ip("fd00:2::1"), 64).unwrap();
    r.wait(1100);
    assert!(r.reports().is_empty());

    // A general MLDv2 query, maximum response delay 2 s: one current
    // state report of every group within it.
    let q = MldRepr::Query {
        max_resp_code: 2000,
        group: Ipv6Addr::UNSPECIFIED,
        v2: Some(softnet_wire::mld::MldV2Query { suppress: false, qrv: 2, qqic: 125, sources: &[] }),
    };
    r.query(ip("fe80::99"), 1, q);
    r.wait(2100);
    let ans = r.reports();
    assert_eq!(ans.len(), 1);
    assert_eq!(ans[0].1, ll);
    assert_eq!(groups(&ans, record_type::MODE_IS_EXCLUDE), vec![ip("ff02::2"), ip("ff02::1:ff00:1"), sn_ll]);
    // An MLDv1 query for one group: an MLDv1 report to that group.
    r.query(ip("fe80::99"), 1, MldRepr::Query { max_resp_code: 500, group: sn_ll, v2: None });
    r.wait(600);
    let v1 = r.reports();
    assert_eq!(v1.len(), 1);
    assert_eq!((v1[0].2, v1[0].4, v1[0].5.clone()), (sn_ll, 131, vec![(0, sn_ll)]));
    // Queries from a global source or with another hop limit: ignored.
    r.query(ip("fd00:1::99"), 1, MldRepr::Query { max_resp_code: 100, group: Ipv6Addr::UNSPECIFIED, v2: None });
    r.query(ip("fe80::99"), 64, MldRepr::Query { max_resp_code: 100, group: Ipv6Addr::UNSPECIFIED, v2: None });
    // And one for a group the router is not in.
    r.query(ip("fe80::99"), 1, MldRepr::Query { max_resp_code: 100, group: ip("ff02::1:ff99:9999"), v2: None });
    r.wait(500);
    assert!(r.reports().is_empty());
}
