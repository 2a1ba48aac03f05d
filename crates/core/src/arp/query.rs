//! The host twin's ARP questions (`crate::hostif`): the host never
//! resolves on the wire itself; its requests are answered from this table,
//! and a neighbor the table does not know yet is resolved as arpresolve
//! would, without a packet to hold.

use super::*;

/// What the table says to "who has `target`?" asked on an interface's
/// host twin.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ArpQuery {
    /// Answer with this MAC.
    Known(MacAddr),
    /// Being resolved; broadcast `request` now if there is one. The
    /// question can be answered once the entry completes.
    Pending(Option<ArpRequest>),
    /// Not a neighbor on this interface (off its networks, one of the
    /// router's own addresses, known on another interface) or one that
    /// does not answer (rejected): no answer.
    Unknown,
}

impl ArpTable {
    /// The answer to the host's request for `target` on `ifp`, starting
    /// or pushing on resolution as `resolve` does for a packet: a new
    /// entry is incomplete with a request out, further requests go at the
    /// table's resend interval, and after `max_tries` the entry is
    /// rejected for `down`.
    pub fn query(&self, now: Instant, ifp: &Interface, target: Ipv4Addr) -> ArpQuery {
        let cfg = &self.config;
        let mut shard = self.shard(target).lock();
        let e = match shard.get_mut(&target) {
            Some(e) => e,
            None => {
                let on_link = ifp.addrs().iter().any(|a| {
                    a.contains(target) && a.broadcast() != Some(target) && a.network() != target && a.addr != target
                });
                if !on_link {
                    return ArpQuery::Unknown;
                }
                let mut e = Entry::new(ifp.index(), ArpEntryKind::Incomplete, MacAddr::ZERO);
                e.asked = 1;
                e.last_asked = now;
                shard.insert(target, e);
                return ArpQuery::Pending(self.request_for(ifp, target));
            }
        };
        if e.ifindex != ifp.index() || e.kind == ArpEntryKind::Local {
            return ArpQuery::Unknown;
        }
        if e.is_resolved() && e.expire.is_none_or(|t| t > now) {
            return ArpQuery::Known(e.mac);
        }
        if e.is_resolved() {
            // Expired but not yet reaped: resolve again.
            e.kind = ArpEntryKind::Incomplete;
            e.expire = None;
            e.asked = 0;
            e.refreshed = false;
            e.reject_until = None;
        }
        if let Some(until) = e.reject_until {
            if now < until {
                return ArpQuery::Unknown;
            }
            e.reject_until = None;
            e.asked = 0;
        }
        let due = e.asked == 0 || now >= e.last_asked + cfg.resend_interval;
        if !due {
            return ArpQuery::Pending(None);
        }
        if e.asked >= cfg.max_tries {
            e.reject_until = Some(now + cfg.down);
            e.asked = 0;
            e.last_asked = now;
            return ArpQuery::Unknown;
        }
        e.asked += 1;
        e.last_asked = now;
        ArpQuery::Pending(self.request_for(ifp, target))
    }

    /// The MAC of `target` on interface `ifindex` once resolved (the
    /// pending questions of the host are asked again with it).
    pub fn resolved_on(&self, now: Instant, ifindex: IfIndex, target: Ipv4Addr) -> Option<MacAddr> {
        let shard = self.shard(target).lock();
        shard
            .get(&target)
            .filter(|e| e.ifindex == ifindex && e.is_resolved() && e.kind != ArpEntryKind::Local)
            .filter(|e| e.expire.is_none_or(|t| t > now))
            .map(|e| e.mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::{IfAddr, InterfaceConfig, InterfaceTable};

    fn table_and_if() -> (ArpTable, Arc<Interface>) {
        let ifs = InterfaceTable::new();
        let (port, _peer) = crate::vlink::wire(1, 8);
        let ifp = ifs
            .create(InterfaceConfig {
                name: "em0".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                mtu: 1500,
                queues: port.link_queues(),
            })
            .unwrap();
        ifp.set_addrs(vec![IfAddr::new(Ipv4Addr::new(10, 0, 1, 1), 24)]);
        (ArpTable::new(ArpConfig::default()), ifp)
    }
    use std::sync::Arc;

    #[test]
    fn an_unknown_neighbor_is_resolved_then_known() {
        let (t, ifp) = table_and_if();
        let now = Instant::from_secs(100);
        let n = Ipv4Addr::new(10, 0, 1, 2);
        let ArpQuery::Pending(Some(req)) = t.query(now, &ifp, n) else { panic!("a request goes out") };
        assert_eq!((req.ifindex, req.target_ip, req.sender_ip), (ifp.index(), n, Ipv4Addr::new(10, 0, 1, 1)));
        // Asked again within the resend interval: nothing new on the wire.
        assert_eq!(t.query(now + Duration::from_millis(10), &ifp, n), ArpQuery::Pending(None));
        assert_eq!(t.resolved_on(now, ifp.index(), n), None);
        // The neighbor's reply completes the entry.
        let ifs = InterfaceTable::new();
        let reply = ArpRepr {
            operation: ArpOperation::Reply,
            sender_hw: MacAddr([2, 0, 0, 0, 0, 2]),
            sender_ip: n,
            target_hw: ifp.mac(),
            target_ip: Ipv4Addr::new(10, 0, 1, 1),
        };
        let mut out = ArpInput::new();
        t.input(now, &ifs.load(), &ifp, &reply, &ArpStats::default(), &mut out);
        assert_eq!(t.query(now, &ifp, n), ArpQuery::Known(MacAddr([2, 0, 0, 0, 0, 2])));
        assert_eq!(t.resolved_on(now, ifp.index(), n), Some(MacAddr([2, 0, 0, 0, 0, 2])));
    }

    #[test]
    fn off_link_own_and_silent_neighbors_get_no_answer() {
        let (t, ifp) = table_and_if();
        let mut now = Instant::from_secs(100);
        assert_eq!(t.query(now, &ifp, Ipv4Addr::new(10, 0, 2, 2)), ArpQuery::Unknown);
        assert_eq!(t.query(now, &ifp, Ipv4Addr::new(10, 0, 1, 255)), ArpQuery::Unknown);
        t.add_local(&ifp, Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(t.query(now, &ifp, Ipv4Addr::new(10, 0, 1, 1)), ArpQuery::Unknown);
        // A neighbor that never answers: max_tries requests, then rejected.
        let n = Ipv4Addr::new(10, 0, 1, 9);
        let mut sent = 0;
        for _ in 0..20 {
            match t.query(now, &ifp, n) {
                ArpQuery::Pending(Some(_)) => sent += 1,
                ArpQuery::Pending(None) => {}
                ArpQuery::Unknown => break,
                ArpQuery::Known(_) => panic!("nobody answered"),
            }
            now = now + Duration::from_secs(1);
        }
        assert_eq!(sent, ArpConfig::default().max_tries);
        assert_eq!(t.query(now, &ifp, n), ArpQuery::Unknown, "rejected for a while");
    }
}
