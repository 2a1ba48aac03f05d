//! ARP's counters (`netstat -s`, section "arp:"): one set per worker,
//! summed for the view, worded like FreeBSD's (if_ether.c's arpstat).

use crate::percpu::Counter;
use std::fmt::Write as _;

/// ARP counters, one set per worker (`netstat -s`, section "arp:").
#[derive(Default, Debug)]
pub struct ArpStats {
    /// Requests broadcast (counted by whoever sends them).
    pub requests_sent: Counter,
    /// Replies sent (counted by whoever sends them).
    pub replies_sent: Counter,
    pub requests_received: Counter,
    pub replies_received: Counter,
    /// ARP packets received (well-formed ones; see `dropped_bad`).
    pub received: Counter,
    /// Malformed ARP packets (counted by the caller that parses).
    pub dropped_bad: Counter,
    /// Packets dropped because their next hop did not answer (given up,
    /// or sent to a rejected entry).
    pub dropped_no_entry: Counter,
    /// Packets dropped from (or not admitted to) a full hold queue.
    pub dropped_hold_full: Counter,
    /// Entries that timed out.
    pub timeouts: Counter,
    /// Messages from another host claiming one of our addresses.
    pub dup_ips: Counter,
}

/// `ArpStats` summed over workers.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpStatsTotal {
    pub requests_sent: u64,
    pub replies_sent: u64,
    pub requests_received: u64,
    pub replies_received: u64,
    pub received: u64,
    pub dropped_bad: u64,
    pub dropped_no_entry: u64,
    pub dropped_hold_full: u64,
    pub timeouts: u64,
    pub dup_ips: u64,
}

impl ArpStatsTotal {
    pub fn sum<'a>(stats: impl IntoIterator<Item = &'a ArpStats>) -> Self {
        let mut t = ArpStatsTotal::default();
        for s in stats {
            t.requests_sent += s.requests_sent.get();
            t.replies_sent += s.replies_sent.get();
            t.requests_received += s.requests_received.get();
            t.replies_received += s.replies_received.get();
            t.received += s.received.get();
            t.dropped_bad += s.dropped_bad.get();
            t.dropped_no_entry += s.dropped_no_entry.get();
            t.dropped_hold_full += s.dropped_hold_full.get();
            t.timeouts += s.timeouts.get();
            t.dup_ips += s.dup_ips.get();
        }
        t
    }

    /// The "arp:" section of `netstat -s`, worded like FreeBSD's.
    pub fn format(&self) -> String {
        fn line(o: &mut String, v: u64, what: &str, one: &str, many: &str, rest: &str) {
            let _ = writeln!(o, "\t{v} {what}{}{rest}", if v == 1 { one } else { many });
        }
        let mut o = String::from("arp:\n");
        line(&mut o, self.requests_sent, "ARP request", "", "s", " sent");
        line(&mut o, self.replies_sent, "ARP repl", "y", "ies", " sent");
        line(&mut o, self.requests_received, "ARP request", "", "s", " received");
        line(&mut o, self.replies_received, "ARP repl", "y", "ies", " received");
        line(&mut o, self.received, "ARP packet", "", "s", " received");
        line(&mut o, self.dropped_bad, "malformed ARP packet", "", "s", " dropped");
        line(&mut o, self.dropped_no_entry, "total packet", "", "s", " dropped due to no ARP entry");
        line(&mut o, self.dropped_hold_full, "packet", "", "s", " dropped due to full hold queue");
        line(&mut o, self.timeouts, "ARP entr", "y", "ies", " timed out");
        line(&mut o, self.dup_ips, "Duplicate IP", "", "s", " seen");
        o
    }
}

/// The "arp:" section of `netstat -s` from every worker's counters.
pub fn format_arp_stats<'a>(stats: impl IntoIterator<Item = &'a ArpStats>) -> String {
    ArpStatsTotal::sum(stats).format()
}
