//! Host interfaces (VPP linux-cp's model): an interface of the stack may
//! have a twin in the host OS (`host = "NAME"` in the configuration, a
//! Linux TAP of that name in the daemon's namespace) so that routing
//! daemons, sshd and the like run on the host unchanged.
//!
//! The twin carries the interface's MAC, addresses, MTU and link state (the
//! daemon keeps them in step); the stack keeps the data path:
//!
//! * Punt (stack → host): what is addressed to the router and the stack
//!   does not consume itself (not an echo request it answers, not ARP or
//!   NDP, not a socket of its own) goes to the twin of the interface it
//!   arrived on, as it arrived (its Ethernet header kept), after pf in;
//!   so does multicast of a group the host joined on the twin
//!   (`HostPort::set_groups`, from the host's own membership lists).
//! * Transmit (host → wire): what the host sends out of the twin goes out
//!   of the interface as the host built it, after pf out on the interface.
//!   The host's ARP requests and neighbor solicitations never reach the
//!   wire: they are answered from the stack's ARP table and neighbor cache
//!   (resolving first if need be), so the host and the stack agree on
//!   every neighbor. The host's other NDP messages (router solicitations,
//!   advertisements, redirects) are the stack's business and dropped.
//!
//! The twin's queues are `LinkQueue`s like the interface's own: a worker
//! uses queue `w % queues` of both. In memory a `vlink` pair stands in for
//! the TAP.

use crate::link::LinkQueue;
use crate::percpu::{Counter, PerWorker};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Counters of one host interface, one set per worker (`netstat -s`'s
/// `hostif:` section sums them).
#[derive(Default, Debug)]
pub struct HostStats {
    /// Packets handed to the host.
    pub punted: Counter,
    /// Packets the host's link did not take (a full or down TAP).
    pub punt_errors: Counter,
    /// Frames read from the host.
    pub from_host: Counter,
    /// Of those, sent on the interface.
    pub transmitted: Counter,
    /// Of those, blocked by pf out.
    pub filtered: Counter,
    /// Of those, dropped: the interface down, a malformed frame, NDP the
    /// stack keeps to itself, an ARP or NDP question nobody answered.
    pub dropped: Counter,
    /// ARP requests of the host answered from the stack's table.
    pub arp_answered: Counter,
    /// Neighbor solicitations of the host answered from the neighbor
    /// cache.
    pub nd_answered: Counter,
}

/// Totals of `HostStats` over the workers.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatsTotal {
    pub punted: u64,
    pub punt_errors: u64,
    pub from_host: u64,
    pub transmitted: u64,
    pub filtered: u64,
    pub dropped: u64,
    pub arp_answered: u64,
    pub nd_answered: u64,
}

/// The multicast groups the host joined on its twin, sorted.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct HostGroups {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

/// The host side of an interface: the twin's name, its link queues and
/// the groups the host joined there.
pub struct HostPort {
    name: String,
    queues: Box<[Mutex<Box<dyn LinkQueue>>]>,
    groups: ArcSwap<HostGroups>,
    pub stats: PerWorker<HostStats>,
}

impl HostPort {
    /// A host port named `name` (the host's interface name) over `queues`
    /// (at least one).
    pub fn new(name: &str, queues: Vec<Box<dyn LinkQueue>>) -> Option<HostPort> {
        if queues.is_empty() {
            return None;
        }
        Some(HostPort {
            name: name.to_string(),
            queues: queues.into_iter().map(Mutex::new).collect(),
            groups: ArcSwap::from_pointee(HostGroups::default()),
            stats: PerWorker::new(),
        })
    }

    /// The host's name of the twin.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue worker `w` uses.
    #[inline]
    pub fn queue(&self, w: usize) -> &Mutex<Box<dyn LinkQueue>> {
        &self.queues[w % self.queues.len()]
    }

    /// Replaces the groups the host joined (sorted here); returns whether
    /// they changed.
    pub fn set_groups(&self, mut v4: Vec<Ipv4Addr>, mut v6: Vec<Ipv6Addr>) -> bool {
        v4.sort();
        v4.dedup();
        v6.sort();
        v6.dedup();
        let new = HostGroups { v4, v6 };
        if **self.groups.load() == new {
            return false;
        }
        self.groups.store(Arc::new(new));
        true
    }

    /// The groups the host joined (a snapshot).
    pub fn groups(&self) -> Arc<HostGroups> {
        self.groups.load_full()
    }

    /// Whether the host listens to the IPv4 group `g` on its twin.
    #[inline]
    pub fn is_joined4(&self, g: Ipv4Addr) -> bool {
        self.groups.load().v4.binary_search(&g).is_ok()
    }

    /// Whether the host listens to the IPv6 group `g` on its twin.
    #[inline]
    pub fn is_joined6(&self, g: Ipv6Addr) -> bool {
        self.groups.load().v6.binary_search(&g).is_ok()
    }

    /// Counters summed over the workers.
    pub fn stats_total(&self) -> HostStatsTotal {
        let s = &self.stats;
        HostStatsTotal {
            punted: s.sum(|s| &s.punted),
            punt_errors: s.sum(|s| &s.punt_errors),
            from_host: s.sum(|s| &s.from_host),
            transmitted: s.sum(|s| &s.transmitted),
            filtered: s.sum(|s| &s.filtered),
            dropped: s.sum(|s| &s.dropped),
            arp_answered: s.sum(|s| &s.arp_answered),
            nd_answered: s.sum(|s| &s.nd_answered),
        }
    }
}

impl std::fmt::Debug for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPort").field("name", &self.name).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vlink;

    #[test]
    fn groups_are_kept_sorted_and_a_repeat_is_no_change() {
        let (a, _b) = vlink::wire(1, 8);
        let h = HostPort::new("hx0", a.link_queues()).unwrap();
        let g1: Ipv4Addr = "224.0.0.6".parse().unwrap();
        let g2: Ipv4Addr = "224.0.0.5".parse().unwrap();
        assert!(h.set_groups(vec![g1, g2, g1], vec![]));
        assert_eq!(h.groups().v4, vec![g2, g1]);
        assert!(h.is_joined4(g2) && h.is_joined4(g1) && !h.is_joined4("224.0.0.1".parse().unwrap()));
        assert!(!h.set_groups(vec![g2, g1], vec![]));
        assert!(h.set_groups(vec![], vec!["ff02::5".parse().unwrap()]));
        assert!(!h.is_joined4(g2) && h.is_joined6("ff02::5".parse().unwrap()));
    }

    #[test]
    fn a_host_port_needs_a_queue() {
        assert!(HostPort::new("hx0", Vec::new()).is_none());
    }
}
