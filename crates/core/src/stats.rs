//! Protocol counters, one set per worker, printed the way OpenBSD's
//! `netstat -s` prints them (usr.bin/netstat/inet.c: ip_stats, icmp_stats);
//! the IPv6 sections are in `stats6.rs`.

use crate::percpu::{Counter, PerWorker};
use std::fmt::Write;

/// IPv4 counters (OpenBSD `struct ipstat`, the fields we keep).
#[derive(Default, Debug)]
pub struct IpStats {
    pub total: Counter,
    pub badsum: Counter,
    pub toosmall: Counter,
    pub tooshort: Counter,
    pub badhlen: Counter,
    pub badlen: Counter,
    pub badoptions: Counter,
    pub badvers: Counter,
    pub fragments: Counter,
    pub fragdropped: Counter,
    pub fragtimeout: Counter,
    pub reassembled: Counter,
    pub delivered: Counter,
    pub noproto: Counter,
    pub forward: Counter,
    pub cantforward: Counter,
    pub redirectsent: Counter,
    pub localout: Counter,
    pub odropped: Counter,
    pub noroute: Counter,
    pub fragmented: Counter,
    pub ofragments: Counter,
    pub cantfrag: Counter,
    pub badaddr: Counter,
    pub notmember: Counter,
    pub ttlexceeded: Counter,
    pub blackholed: Counter,
    pub filtered: Counter,
}

/// Number of ICMP types kept in the histograms (0..=18, as netstat names).
pub const ICMP_MAXTYPE: usize = 18;

/// ICMP counters (OpenBSD `struct icmpstat`).
#[derive(Default, Debug)]
pub struct IcmpStats {
    pub error: Counter,
    pub oldicmp: Counter,
    pub oldshort: Counter,
    pub bmcast: Counter,
    pub toofreq: Counter,
    pub outhist: [Counter; ICMP_MAXTYPE + 1],
    pub badcode: Counter,
    pub tooshort: Counter,
    pub checksum: Counter,
    pub badlen: Counter,
    pub inhist: [Counter; ICMP_MAXTYPE + 1],
    pub reflect: Counter,
    pub bmcastecho: Counter,
}

/// UDP and TCP to the router itself (nothing listens: port unreachable / RST).
#[derive(Default, Debug)]
pub struct TransportStats {
    pub udp_ipackets: Counter,
    pub udp_hdrops: Counter,
    pub udp_badsum: Counter,
    pub udp_badlen: Counter,
    pub udp_noport: Counter,
    pub udp_noportbcast: Counter,
    pub tcp_rcvtotal: Counter,
    pub tcp_rcvbadsum: Counter,
    pub tcp_rcvshort: Counter,
    pub tcp_sndrst: Counter,
    /// Segments for a socket dropped for a malformed option (a bad length).
    pub tcp_rcvbadopt: Counter,
    /// Segments (and their payload bytes) outside the receive window.
    pub tcp_rcvpackafterwin: Counter,
    pub tcp_rcvbyteafterwin: Counter,
    /// RFC 7323 PAWS: segments with an old timestamp.
    pub tcp_pawsdrop: Counter,
    /// ACKs for data not yet sent.
    pub tcp_rcvacktoomuch: Counter,
    /// Data after the application closed (the connection is reset).
    pub tcp_rcvafterclose: Counter,
    /// RFC 5961 §3 / §4: in-window RSTs and SYNs answered with a
    /// challenge ACK instead of acting on them.
    pub tcp_badrst: Counter,
    pub tcp_badsyn: Counter,
    /// Segments of a connection processed by a worker that does not own
    /// it (the link steered them elsewhere; see `sock`'s Ownership).
    pub tcp_steermiss: Counter,
    /// ICMP errors quoting a TCP segment not in flight (ignored).
    pub tcp_icmpbadseq: Counter,
    /// UDP datagrams the sockets sent (udps_opackets).
    pub udp_opackets: Counter,
}

/// Ethernet-level input counters.
#[derive(Default, Debug)]
pub struct EtherStats {
    /// Frames shorter than an Ethernet header.
    pub runts: Counter,
    /// Frames for another unicast MAC (seen in promiscuous mode).
    pub not_for_us: Counter,
    /// Frames with an 802.1Q tag (no VLAN interfaces configured).
    pub vlan_dropped: Counter,
    /// Other EtherTypes.
    pub unknown_type: Counter,
    /// Frames dropped because the packet pool was empty.
    pub nobufs: Counter,
}

/// Everything one worker counts, aligned so that workers never share lines.
#[derive(Default, Debug)]
pub struct StackStats {
    pub ip: IpStats,
    pub icmp: IcmpStats,
    pub transport: TransportStats,
    pub ether: EtherStats,
    pub arp: crate::arp::ArpStats,
    pub nd6: crate::nd6::Nd6Stats,
    pub ip6: crate::stats6::Ip6Stats,
    pub icmp6: crate::stats6::Icmp6Stats,
}

/// Prints one netstat line: `%u` is the value, `%s` the plural "s".
pub(crate) fn p(o: &mut String, v: u64, text: &str) {
    let plural = if v == 1 { "" } else { "s" };
    let line = text.replacen("%u", &v.to_string(), 1).replacen("%s", plural, 1);
    o.push_str(&line);
    o.push('\n');
}

/// ICMP type names as netstat prints them.
pub const ICMP_NAMES: [&str; ICMP_MAXTYPE + 1] = [
    "echo reply",
    "#1",
    "#2",
    "destination unreachable",
    "source quench",
    "routing redirect",
    "#6",
    "#7",
    "echo",
    "router advertisement",
    "router solicitation",
    "time exceeded",
    "parameter problem",
    "time stamp",
    "time stamp reply",
    "information request",
    "information request reply",
    "address mask request",
    "address mask reply",
];

/// `netstat -s` for ip, icmp, udp, tcp (the router's own) and ether.
pub fn format_netstat_s(stats: &PerWorker<StackStats>) -> String {
    format_netstat_s_with(stats, None)
}

/// `netstat -s` with the socket layer's counters (connections, the SYN
/// cache, socket buffers) in the udp and tcp sections.
pub fn format_netstat_s_with(stats: &PerWorker<StackStats>, socks: Option<&crate::sock::Sockets>) -> String {
    let mut o = String::new();
    let s = |f: &dyn Fn(&StackStats) -> &Counter| stats.iter().map(|w| f(w).get()).sum::<u64>();
    let _ = writeln!(o, "ip:");
    p(&mut o, s(&|w| &w.ip.total), "\t%u total packet%s received");
    p(&mut o, s(&|w| &w.ip.badsum), "\t%u bad header checksum%s");
    p(&mut o, s(&|w| &w.ip.toosmall), "\t%u with size smaller than minimum");
    p(&mut o, s(&|w| &w.ip.tooshort), "\t%u with data size < data length");
    p(&mut o, s(&|w| &w.ip.badhlen), "\t%u with header length < data size");
    p(&mut o, s(&|w| &w.ip.badlen), "\t%u with data length < header length");
    p(&mut o, s(&|w| &w.ip.badoptions), "\t%u with bad options");
    p(&mut o, s(&|w| &w.ip.badvers), "\t%u with incorrect version number");
    p(&mut o, s(&|w| &w.ip.fragments), "\t%u fragment%s received");
    p(&mut o, s(&|w| &w.ip.fragdropped), "\t%u fragment%s dropped (dup or out of space)");
    p(&mut o, s(&|w| &w.ip.fragtimeout), "\t%u fragment%s dropped after timeout");
    p(&mut o, s(&|w| &w.ip.reassembled), "\t%u packet%s reassembled ok");
    p(&mut o, s(&|w| &w.ip.delivered), "\t%u packet%s for this host");
    p(&mut o, s(&|w| &w.ip.noproto), "\t%u packet%s for unknown/unsupported protocol");
    p(&mut o, s(&|w| &w.ip.forward), "\t%u packet%s forwarded");
    p(&mut o, s(&|w| &w.ip.cantforward), "\t%u packet%s not forwardable");
    p(&mut o, s(&|w| &w.ip.redirectsent), "\t%u redirect%s sent");
    p(&mut o, s(&|w| &w.ip.localout), "\t%u packet%s sent from this host");
    p(&mut o, s(&|w| &w.ip.odropped), "\t%u output packet%s dropped due to no bufs, etc.");
    p(&mut o, s(&|w| &w.ip.noroute), "\t%u output packet%s discarded due to no route");
    p(&mut o, s(&|w| &w.ip.fragmented), "\t%u output datagram%s fragmented");
    p(&mut o, s(&|w| &w.ip.ofragments), "\t%u fragment%s created");
    p(&mut o, s(&|w| &w.ip.cantfrag), "\t%u datagram%s that can't be fragmented");
    p(&mut o, s(&|w| &w.ip.badaddr), "\t%u datagram%s with bad address in header");
    p(&mut o, s(&|w| &w.ip.notmember), "\t%u multicast packet%s which we don't join");
    p(&mut o, s(&|w| &w.ip.ttlexceeded), "\t%u packet%s with ttl exceeded");
    p(&mut o, s(&|w| &w.ip.blackholed), "\t%u packet%s discarded by blackhole routes");
    p(&mut o, s(&|w| &w.ip.filtered), "\t%u packet%s blocked by the packet filter");

    let _ = writeln!(o, "icmp:");
    p(&mut o, s(&|w| &w.icmp.error), "\t%u call%s to icmp_error");
    p(&mut o, s(&|w| &w.icmp.oldicmp), "\t%u error%s not generated because old message was icmp");
    p(&mut o, s(&|w| &w.icmp.oldshort), "\t%u error%s not generated because old ip message was too short");
    p(
        &mut o,
        s(&|w| &w.icmp.bmcast),
        "\t%u error%s not generated because of broadcast/multicast or non-first fragment",
    );
    p(&mut o, s(&|w| &w.icmp.toofreq), "\t%u error%s not generated because of rate limitation");
    hist(&mut o, "Output histogram", stats, |w| &w.icmp.outhist);
    p(&mut o, s(&|w| &w.icmp.badcode), "\t%u message%s with bad code fields");
    p(&mut o, s(&|w| &w.icmp.tooshort), "\t%u message%s < minimum length");
    p(&mut o, s(&|w| &w.icmp.checksum), "\t%u bad checksum%s");
    p(&mut o, s(&|w| &w.icmp.badlen), "\t%u message%s with bad length");
    p(&mut o, s(&|w| &w.icmp.bmcastecho), "\t%u broadcast/multicast echo request%s ignored");
    hist(&mut o, "Input histogram", stats, |w| &w.icmp.inhist);
    p(&mut o, s(&|w| &w.icmp.reflect), "\t%u message response%s generated");

    crate::sock::netstat::format_udp_s(&mut o, stats, socks);
    crate::sock::netstat::format_tcp_s(&mut o, stats, socks);
    if let Some(so) = socks {
        crate::sock::netstat::format_divert_s(&mut o, so);
    }

    let _ = writeln!(o, "ether:");
    p(&mut o, s(&|w| &w.ether.runts), "\t%u frame%s shorter than an ethernet header");
    p(&mut o, s(&|w| &w.ether.not_for_us), "\t%u frame%s for another host");
    p(&mut o, s(&|w| &w.ether.vlan_dropped), "\t%u 802.1Q tagged frame%s dropped (no vlan interface)");
    p(&mut o, s(&|w| &w.ether.unknown_type), "\t%u frame%s with unknown ethertype");
    p(&mut o, s(&|w| &w.ether.nobufs), "\t%u frame%s dropped for want of a packet buffer");

    o.push_str(&crate::arp::format_arp_stats(stats.iter().map(|w| &w.arp)));
    crate::stats6::format_netstat_s6(stats, &mut o);
    o
}

fn hist(
    o: &mut String,
    title: &str,
    stats: &PerWorker<StackStats>,
    f: impl Fn(&StackStats) -> &[Counter; ICMP_MAXTYPE + 1],
) {
    let mut first = true;
    for (i, name) in ICMP_NAMES.iter().enumerate() {
        let v: u64 = stats.iter().map(|w| f(w)[i].get()).sum();
        if v != 0 {
            if first {
                let _ = writeln!(o, "\t{title}:");
                first = false;
            }
            let _ = writeln!(o, "\t\t{name}: {v}");
        }
    }
}
