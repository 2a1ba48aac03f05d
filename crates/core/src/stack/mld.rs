//! MLD for the groups the router joins (RFC 3810, MLDv2 as a listener;
//! RFC 2710 when a querier speaks MLDv1): the solicited-node group of
//! each address and all-routers (ff02::2) are reported when they are
//! joined (an address added, the interface coming up) with a State
//! Change Report (CHANGE_TO_EXCLUDE, no sources) sent at once and again
//! after a random time up to the Unsolicited Report Interval (1 s), so
//! Robustness Variable (2) times (§6.1); a query heard by a worker
//! (`Nd6Table::queue_query`) is answered with a Current State Report
//! (MODE_IS_EXCLUDE) of every group it asks for, after a random time up
//! to its Maximum Response Delay (§6.2), at the first `tick` past it.
//! ff02::1 and groups below link scope are never reported (§6). Reports
//! go from the interface's link-local address (:: until it passed DAD,
//! §5.2.13) to ff02::16 (an MLDv1 report to its group), hop limit 1,
//! with a router alert (§5). Not on a loopback interface.

use super::Stack;
use crate::iface::{IfIndex, Interface};
use crate::nd6::MldQueryHeard;
use crate::packet::PacketBuf;
use crate::time::Instant;
use softnet_wire::ethernet::{EtherType, EthernetRepr, HEADER_LEN};
use softnet_wire::icmpv6::Icmpv6Repr;
use softnet_wire::ipv4::IpProtocol;
use softnet_wire::ipv6::{multicast_mac, Ipv6Repr, ALL_NODES};
use softnet_wire::ipv6ext::router_alert_hop_by_hop;
use softnet_wire::mld::{emit_records, record_type, MldRecordRepr, MldRepr, RECORD_HEADER_LEN};
use std::net::Ipv6Addr;
use std::time::Duration;

/// ff02::16, where MLDv2 reports go.
pub const ALL_MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
/// The Unsolicited Report Interval (RFC 3810 §9.11).
const UNSOLICITED_REPORT_INTERVAL_MS: u32 = 1000;
/// Reports waiting at most (more are sent at once).
const PENDING_MAX: usize = 256;

/// A report due later.
#[derive(Debug, Clone)]
enum Due {
    /// The retransmission of a State Change Report for these groups.
    Change(Vec<Ipv6Addr>),
    /// The answer to a query: every group (`None`) or one; MLDv1 if the
    /// querier spoke it.
    Current { group: Option<Ipv6Addr>, v1: bool },
}

/// The reports scheduled, by interface and time.
#[derive(Default)]
pub struct MldState {
    pending: Vec<(IfIndex, Instant, Due)>,
}

/// Groups MLD reports: at least link scope, not all-nodes (RFC 3810 §6).
pub fn reportable(g: &Ipv6Addr) -> bool {
    *g != ALL_NODES && (g.octets()[1] & 0x0f) >= 2
}

impl Stack {
    /// Groups just joined on `ifp` (`groups` may hold others: only the
    /// reportable ones go): a State Change Report now and one more later.
    pub(super) fn mld_join(&self, ifp: &Interface, groups: &[Ipv6Addr]) {
        let groups: Vec<Ipv6Addr> = groups.iter().copied().filter(reportable).collect();
        if groups.is_empty() || !ifp.is_up() || ifp.is_loopback() {
            return;
        }
        self.send_mld_v2(ifp, record_type::CHANGE_TO_EXCLUDE, &groups);
        let delay = self.rng.lock().uniform(UNSOLICITED_REPORT_INTERVAL_MS);
        let due = self.clock.now() + Duration::from_millis(delay as u64);
        self.mld_schedule(ifp, due, Due::Change(groups));
    }

    fn mld_schedule(&self, ifp: &Interface, due: Instant, what: Due) {
        let mut st = self.mld.lock();
        if st.pending.len() < PENDING_MAX {
            st.pending.push((ifp.index(), due, what));
            return;
        }
        drop(st);
        self.mld_send_due(ifp, &what);
    }

    /// From `tick`: the queries the workers heard are scheduled, the
    /// reports due are sent.
    pub(super) fn mld_timer(&self) {
        let now = self.clock.now();
        let ifs = self.ifaces.load();
        for q in self.nd6.take_queries() {
            let Some(ifp) = ifs.get(q.ifindex) else { continue };
            self.mld_query(ifp, now, q);
        }
        let due: Vec<(IfIndex, Due)> = {
            let mut st = self.mld.lock();
            let (due, keep) = std::mem::take(&mut st.pending).into_iter().partition(|(_, t, _)| *t <= now);
            st.pending = keep;
            due.into_iter().map(|(i, _, d)| (i, d)).collect::<Vec<_>>()
        };
        for (i, d) in due {
            if let Some(ifp) = ifs.get(i) {
                self.mld_send_due(ifp, &d);
            }
        }
    }

    /// RFC 3810 §6.2: an answer at a random time up to the query's
    /// Maximum Response Delay; a pending answer to a general query covers
    /// a later one.
    fn mld_query(&self, ifp: &Interface, now: Instant, q: MldQueryHeard) {
        if !ifp.is_up() || ifp.is_loopback() {
            return;
        }
        let group = (!q.group.is_unspecified()).then_some(q.group);
        if let Some(g) = group {
            if !reportable(&g) || !ifp.is_joined6(g) {
                return;
            }
        }
        let pending_general = self
            .mld
            .lock()
            .pending
            .iter()
            .any(|(i, _, d)| *i == ifp.index() && matches!(d, Due::Current { group: None, .. }));
        if pending_general {
            return;
        }
        let delay = self.rng.lock().uniform(q.max_resp_ms.max(1));
        self.mld_schedule(ifp, now + Duration::from_millis(delay as u64), Due::Current { group, v1: q.v1 });
    }

    fn mld_send_due(&self, ifp: &Interface, d: &Due) {
        let joined: Vec<Ipv6Addr> = ifp.inet6().groups.iter().copied().filter(reportable).collect();
        match d {
            Due::Change(groups) => {
                let still: Vec<Ipv6Addr> = groups.iter().copied().filter(|g| joined.contains(g)).collect();
                if !still.is_empty() {
                    self.send_mld_v2(ifp, record_type::CHANGE_TO_EXCLUDE, &still);
                }
            }
            Due::Current { group, v1 } => {
                let groups: Vec<Ipv6Addr> = match group {
                    Some(g) => joined.iter().copied().filter(|j| j == g).collect(),
                    None => joined,
                };
                if *v1 {
                    for g in groups {
                        self.send_mld(ifp, g, MldRepr::Report { group: g });
                    }
                } else if !groups.is_empty() {
                    self.send_mld_v2(ifp, record_type::MODE_IS_EXCLUDE, &groups);
                }
            }
        }
    }

    /// An MLDv2 report with one record of `kind` (no sources) per group.
    fn send_mld_v2(&self, ifp: &Interface, kind: u8, groups: &[Ipv6Addr]) {
        let recs: Vec<MldRecordRepr<'_>> =
            groups.iter().map(|g| MldRecordRepr { record_type: kind, group: *g, sources: &[] }).collect();
        let mut area = vec![0u8; RECORD_HEADER_LEN * recs.len()];
        let n = emit_records(&recs, &mut area);
        self.send_mld(ifp, ALL_MLDV2_ROUTERS, MldRepr::ReportV2 { count: recs.len() as u16, records: &area[..n] });
    }

    /// One MLD message from the control thread: hop limit 1, the router
    /// alert, from the link-local address (or ::).
    fn send_mld(&self, ifp: &Interface, dst: Ipv6Addr, mld: MldRepr<'_>) {
        let src = ifp
            .inet6()
            .addrs
            .iter()
            .find(|a| a.is_link_local() && a.is_usable())
            .map_or(Ipv6Addr::UNSPECIFIED, |a| a.addr);
        let icmp = Icmpv6Repr::Mld(mld);
        let hbh = router_alert_hop_by_hop(IpProtocol::ICMPV6);
        let ip = Ipv6Repr {
            src,
            dst,
            next_header: IpProtocol::HOPOPT,
            hop_limit: 1,
            traffic_class: 0,
            flow_label: 0,
            payload_len: hbh.len() + icmp.buffer_len(),
        };
        let len = HEADER_LEN + ip.buffer_len();
        let mut pool = self.control_pool.lock();
        let Some(mut p) = pool.alloc() else { return };
        if p.rewind(len.max(60)).is_err() {
            pool.free(p);
            return;
        }
        let _ = p.set_len(len.max(60));
        let b = p.data_mut();
        b.fill(0);
        EthernetRepr { src: ifp.mac(), dst: multicast_mac(dst), ethertype: EtherType::IPV6, vlan: None }.emit(b);
        ip.emit(&mut b[HEADER_LEN..]);
        let at = HEADER_LEN + 40;
        b[at..at + hbh.len()].copy_from_slice(&hbh);
        icmp.emit(src, dst, &mut b[at + hbh.len()..len]);
        let mut frames: Vec<PacketBuf> = vec![p];
        let sent = ifp.queue(crate::percpu::CONTROL_SLOT).lock().send(&mut pool, &mut frames);
        let st = ifp.stats.get(crate::percpu::CONTROL_SLOT);
        let icmp6 = &self.stats.get(crate::percpu::CONTROL_SLOT).icmp6;
        if sent == 1 {
            st.opackets.inc();
            icmp6.outhist[icmp.msg_type() as usize].inc();
        } else {
            st.oerrors.inc();
        }
    }
}
