//! IPv6 and ICMPv6 counters, one set per worker, printed the way OpenBSD's
//! `netstat -s` prints them (usr.bin/netstat/inet6.c: ip6_stats,
//! icmp6_stats), and the nd6 section.

use crate::percpu::{Counter, PerWorker};
use crate::stats::StackStats;
use std::fmt::Write;

/// IPv6 counters (OpenBSD `struct ip6stat`, the fields we keep).
#[derive(Default, Debug)]
pub struct Ip6Stats {
    pub total: Counter,
    pub toosmall: Counter,
    pub tooshort: Counter,
    pub badoptions: Counter,
    pub badvers: Counter,
    pub fragments: Counter,
    pub fragdropped: Counter,
    /// Datagrams dropped whole for an overlapping fragment (RFC 5722).
    pub fragoverlap: Counter,
    pub reassembled: Counter,
    pub delivered: Counter,
    pub forward: Counter,
    pub cantforward: Counter,
    pub localout: Counter,
    pub odropped: Counter,
    pub noroute: Counter,
    pub fragmented: Counter,
    pub ofragments: Counter,
    pub cantfrag: Counter,
    pub badscope: Counter,
    pub notmember: Counter,
    pub toomanyhdr: Counter,
    pub noproto: Counter,
    /// Packets whose hop limit ran out here (ICMPv6 time exceeded).
    pub hoplimit: Counter,
    /// Forwarded packets larger than the outgoing link's MTU (packet too
    /// big sent: an IPv6 router never fragments, RFC 8200 §5).
    pub toobig: Counter,
    pub blackholed: Counter,
    /// Packets to an address of ours that is tentative or duplicated
    /// (RFC 4862 §5.4: only NS and NA are taken).
    pub tentative: Counter,
    /// Blocked by the packet filter (pf in, pf out, or a `route-to`
    /// style decision pf cannot make for IPv6).
    pub filtered: Counter,
}

/// ICMPv6 message types kept in the histograms (all 256).
pub const ICMP6_TYPES: usize = 256;

/// ICMPv6 counters (OpenBSD `struct icmp6stat`).
#[derive(Debug)]
pub struct Icmp6Stats {
    pub error: Counter,
    /// Errors not sent: the invoking packet was an ICMPv6 error or
    /// redirect, or its source does not name one node (icp6s_canterror).
    pub canterror: Counter,
    /// Errors not sent about multicast (RFC 4443 §2.4 (e.3)).
    pub bmcast: Counter,
    pub toofreq: Counter,
    pub outhist: [Counter; ICMP6_TYPES],
    pub badcode: Counter,
    pub tooshort: Counter,
    pub checksum: Counter,
    pub badlen: Counter,
    pub inhist: [Counter; ICMP6_TYPES],
    pub reflect: Counter,
    /// MLD messages received (counted only: the router is no querier).
    pub mld: Counter,
}

impl Default for Icmp6Stats {
    fn default() -> Self {
        Icmp6Stats {
            error: Counter::default(),
            canterror: Counter::default(),
            bmcast: Counter::default(),
            toofreq: Counter::default(),
            outhist: std::array::from_fn(|_| Counter::default()),
            badcode: Counter::default(),
            tooshort: Counter::default(),
            checksum: Counter::default(),
            badlen: Counter::default(),
            inhist: std::array::from_fn(|_| Counter::default()),
            reflect: Counter::default(),
            mld: Counter::default(),
        }
    }
}

/// ICMPv6 type names as netstat's inet6.c prints them (icmp6names).
pub fn icmp6_name(t: usize) -> Option<&'static str> {
    Some(match t {
        1 => "unreach",
        2 => "packet too big",
        3 => "time exceed",
        4 => "parameter problem",
        128 => "echo",
        129 => "echo reply",
        130 => "multicast listener query",
        131 => "multicast listener report",
        132 => "multicast listener done",
        133 => "router solicitation",
        134 => "router advertisement",
        135 => "neighbor solicitation",
        136 => "neighbor advertisement",
        137 => "redirect",
        143 => "MLDv2 listener report",
        _ => return None,
    })
}

fn p(o: &mut String, v: u64, text: &str) {
    let plural = if v == 1 { "" } else { "s" };
    let line = text.replacen("%u", &v.to_string(), 1).replacen("%s", plural, 1);
    o.push_str(&line);
    o.push('\n');
}

fn hist6(o: &mut String, title: &str, stats: &PerWorker<StackStats>, f: impl Fn(&StackStats) -> &[Counter]) {
    let mut first = true;
    for t in 0..ICMP6_TYPES {
        let v: u64 = stats.iter().map(|w| f(w)[t].get()).sum();
        if v == 0 {
            continue;
        }
        if first {
            let _ = writeln!(o, "\t{title}:");
            first = false;
        }
        match icmp6_name(t) {
            Some(name) => {
                let _ = writeln!(o, "\t\t{name}: {v}");
            }
            None => {
                let _ = writeln!(o, "\t\t#{t}: {v}");
            }
        }
    }
}

/// `netstat -s`'s ip6, icmp6 and nd6 sections.
pub fn format_netstat_s6(stats: &PerWorker<StackStats>, o: &mut String) {
    let s = |f: &dyn Fn(&StackStats) -> &Counter| stats.iter().map(|w| f(w).get()).sum::<u64>();
    let _ = writeln!(o, "ip6:");
    p(o, s(&|w| &w.ip6.total), "\t%u total packet%s received");
    p(o, s(&|w| &w.ip6.toosmall), "\t%u with size smaller than minimum");
    p(o, s(&|w| &w.ip6.tooshort), "\t%u with data size < data length");
    p(o, s(&|w| &w.ip6.badoptions), "\t%u with bad options");
    p(o, s(&|w| &w.ip6.badvers), "\t%u with incorrect version number");
    p(o, s(&|w| &w.ip6.fragments), "\t%u fragment%s received");
    p(o, s(&|w| &w.ip6.fragdropped), "\t%u fragment%s dropped (dup or out of space)");
    p(o, s(&|w| &w.ip6.fragoverlap), "\t%u datagram%s dropped for overlapping fragments");
    p(o, s(&|w| &w.ip6.reassembled), "\t%u packet%s reassembled ok");
    p(o, s(&|w| &w.ip6.delivered), "\t%u packet%s for this host");
    p(o, s(&|w| &w.ip6.forward), "\t%u packet%s forwarded");
    p(o, s(&|w| &w.ip6.cantforward), "\t%u packet%s not forwardable");
    p(o, s(&|w| &w.ip6.localout), "\t%u packet%s sent from this host");
    p(o, s(&|w| &w.ip6.odropped), "\t%u output packet%s dropped due to no bufs, etc.");
    p(o, s(&|w| &w.ip6.noroute), "\t%u output packet%s discarded due to no route");
    p(o, s(&|w| &w.ip6.fragmented), "\t%u output datagram%s fragmented");
    p(o, s(&|w| &w.ip6.ofragments), "\t%u fragment%s created");
    p(o, s(&|w| &w.ip6.cantfrag), "\t%u datagram%s that can't be fragmented");
    p(o, s(&|w| &w.ip6.badscope), "\t%u packet%s that violated scope rules");
    p(o, s(&|w| &w.ip6.notmember), "\t%u multicast packet%s which we don't join");
    p(o, s(&|w| &w.ip6.toomanyhdr), "\t%u packet%s whose headers are not continuous");
    p(o, s(&|w| &w.ip6.noproto), "\t%u packet%s for unknown/unsupported protocol");
    p(o, s(&|w| &w.ip6.hoplimit), "\t%u packet%s with hop limit exceeded");
    p(o, s(&|w| &w.ip6.toobig), "\t%u packet%s too big for the outgoing link");
    p(o, s(&|w| &w.ip6.blackholed), "\t%u packet%s discarded by blackhole routes");
    p(o, s(&|w| &w.ip6.tentative), "\t%u packet%s to a tentative or duplicated address");
    p(o, s(&|w| &w.ip6.filtered), "\t%u packet%s blocked by the packet filter");

    let _ = writeln!(o, "icmp6:");
    p(o, s(&|w| &w.icmp6.error), "\t%u call%s to icmp6_error");
    p(o, s(&|w| &w.icmp6.canterror), "\t%u error%s not generated because old message was icmp6 or so");
    p(o, s(&|w| &w.icmp6.bmcast), "\t%u error%s not generated because of multicast");
    p(o, s(&|w| &w.icmp6.toofreq), "\t%u error%s not generated because of rate limitation");
    hist6(o, "Output packet histogram", stats, |w| &w.icmp6.outhist[..]);
    p(o, s(&|w| &w.icmp6.badcode), "\t%u message%s with bad code fields");
    p(o, s(&|w| &w.icmp6.tooshort), "\t%u message%s < minimum length");
    p(o, s(&|w| &w.icmp6.checksum), "\t%u bad checksum%s");
    p(o, s(&|w| &w.icmp6.badlen), "\t%u message%s with bad length");
    hist6(o, "Input packet histogram", stats, |w| &w.icmp6.inhist[..]);
    p(o, s(&|w| &w.icmp6.reflect), "\t%u message response%s generated");
    p(o, s(&|w| &w.icmp6.mld), "\t%u MLD message%s received");

    let _ = writeln!(o, "nd6:");
    p(o, s(&|w| &w.nd6.ns_sent), "\t%u neighbor solicitation%s sent");
    p(o, s(&|w| &w.nd6.na_sent), "\t%u neighbor advertisement%s sent");
    p(o, s(&|w| &w.nd6.ns_received), "\t%u neighbor solicitation%s received");
    p(o, s(&|w| &w.nd6.na_received), "\t%u neighbor advertisement%s received");
    p(o, s(&|w| &w.nd6.dropped), "\t%u message%s dropped");
    p(o, s(&|w| &w.nd6.bad_hop_limit), "\t%u message%s with hop limit other than 255");
    p(o, s(&|w| &w.nd6.invalid), "\t%u invalid message%s");
    p(o, s(&|w| &w.nd6.dropped_no_entry), "\t%u packet%s dropped: neighbor never answered");
    p(o, s(&|w| &w.nd6.dropped_hold_full), "\t%u packet%s dropped: hold queue full");
    p(o, s(&|w| &w.nd6.cache_full), "\t%u new neighbor%s refused: cache full");
    p(o, s(&|w| &w.nd6.timeouts), "\t%u neighbor cache timeout%s");
    p(o, s(&|w| &w.nd6.dup_addrs), "\t%u message%s claiming one of our addresses");
    p(o, s(&|w| &w.nd6.redirects_ignored), "\t%u redirect%s ignored (forwarding)");
    p(o, s(&|w| &w.nd6.rs_received), "\t%u router solicitation%s received");
    p(o, s(&|w| &w.nd6.rs_dropped), "\t%u router solicitation%s dropped: advertiser queue full");
    p(o, s(&|w| &w.nd6.ra_sent), "\t%u router advertisement%s sent");
}
