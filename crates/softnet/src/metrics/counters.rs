//! The stack's protocol counters as metric families: one row per counter
//! of `StackStats` (the per-worker counters `netstat -s` sums), named
//! `<protocol>_<what>` (the exposition adds `softnet_` and `_total`), its
//! help the netstat line's words and the BSD field it stands for.

use softnet_core::percpu::Counter;
use softnet_core::stats::StackStats;

/// One counter of `StackStats`.
pub struct Stat {
    pub name: &'static str,
    pub help: &'static str,
    pub get: fn(&StackStats) -> &Counter,
}

const fn stat(name: &'static str, help: &'static str, get: fn(&StackStats) -> &Counter) -> Stat {
    Stat { name, help, get }
}

/// ipstat (netstat -s "ip:").
pub const IP: &[Stat] = &[
    stat("ip_received_packets", "IPv4 packets received (ips_total)", |s| &s.ip.total),
    stat("ip_bad_checksum_packets", "IPv4 packets with a bad header checksum (ips_badsum)", |s| &s.ip.badsum),
    stat("ip_too_small_packets", "IPv4 packets smaller than the minimum (ips_toosmall)", |s| &s.ip.toosmall),
    stat("ip_too_short_packets", "IPv4 packets with data size < data length (ips_tooshort)", |s| &s.ip.tooshort),
    stat("ip_bad_header_length_packets", "IPv4 packets with header length < data size (ips_badhlen)", |s| {
        &s.ip.badhlen
    }),
    stat("ip_bad_length_packets", "IPv4 packets with data length < header length (ips_badlen)", |s| &s.ip.badlen),
    stat("ip_bad_options_packets", "IPv4 packets with bad options (ips_badoptions)", |s| &s.ip.badoptions),
    stat("ip_bad_version_packets", "IPv4 packets with an incorrect version number (ips_badvers)", |s| &s.ip.badvers),
    stat("ip_fragments_received", "IPv4 fragments received (ips_fragments)", |s| &s.ip.fragments),
    stat("ip_fragments_dropped", "IPv4 fragments dropped, dup or out of space (ips_fragdropped)", |s| {
        &s.ip.fragdropped
    }),
    stat("ip_fragments_timed_out", "IPv4 fragments dropped after timeout (ips_fragtimeout)", |s| &s.ip.fragtimeout),
    stat("ip_reassembled_packets", "IPv4 packets reassembled ok (ips_reassembled)", |s| &s.ip.reassembled),
    stat("ip_delivered_packets", "IPv4 packets for this host (ips_delivered)", |s| &s.ip.delivered),
    stat("ip_unknown_protocol_packets", "IPv4 packets for an unknown protocol (ips_noproto)", |s| &s.ip.noproto),
    stat("ip_forwarded_packets", "IPv4 packets forwarded (ips_forward)", |s| &s.ip.forward),
    stat("ip_not_forwardable_packets", "IPv4 packets not forwardable (ips_cantforward)", |s| &s.ip.cantforward),
    stat("ip_redirects_sent", "ICMP redirects sent (ips_redirectsent)", |s| &s.ip.redirectsent),
    stat("ip_local_out_packets", "IPv4 packets sent from this host (ips_localout)", |s| &s.ip.localout),
    stat("ip_output_dropped_packets", "IPv4 output packets dropped for want of buffers, etc. (ips_odropped)", |s| {
        &s.ip.odropped
    }),
    stat("ip_no_route_packets", "IPv4 output packets discarded for want of a route (ips_noroute)", |s| &s.ip.noroute),
    stat("ip_fragmented_datagrams", "IPv4 output datagrams fragmented (ips_fragmented)", |s| &s.ip.fragmented),
    stat("ip_fragments_created", "IPv4 fragments created (ips_ofragments)", |s| &s.ip.ofragments),
    stat("ip_cant_fragment_datagrams", "IPv4 datagrams that could not be fragmented (ips_cantfrag)", |s| {
        &s.ip.cantfrag
    }),
    stat("ip_bad_address_packets", "IPv4 datagrams with a bad address in the header (ips_badaddr)", |s| &s.ip.badaddr),
    stat("ip_multicast_not_member_packets", "IPv4 multicast packets of groups not joined (ips_notmember)", |s| {
        &s.ip.notmember
    }),
    stat("ip_ttl_exceeded_packets", "IPv4 packets whose TTL ran out here", |s| &s.ip.ttlexceeded),
    stat("ip_blackholed_packets", "IPv4 packets discarded by blackhole routes", |s| &s.ip.blackholed),
    stat("ip_filtered_packets", "IPv4 packets blocked by the packet filter", |s| &s.ip.filtered),
];

/// icmpstat (netstat -s "icmp:"), without the histograms.
pub const ICMP: &[Stat] = &[
    stat("icmp_error_calls", "Calls to icmp_error (icps_error)", |s| &s.icmp.error),
    stat("icmp_errors_not_sent_old_icmp", "Errors not sent: the old message was ICMP (icps_oldicmp)", |s| {
        &s.icmp.oldicmp
    }),
    stat("icmp_errors_not_sent_old_short", "Errors not sent: the old IP message was too short (icps_oldshort)", |s| {
        &s.icmp.oldshort
    }),
    stat(
        "icmp_errors_not_sent_bmcast",
        "Errors not sent: broadcast/multicast or non-first fragment (icps_bmcast)",
        |s| &s.icmp.bmcast,
    ),
    stat("icmp_errors_rate_limited", "Errors not sent because of rate limitation (icps_toofreq)", |s| &s.icmp.toofreq),
    stat("icmp_bad_code_messages", "ICMP messages with bad code fields (icps_badcode)", |s| &s.icmp.badcode),
    stat("icmp_too_short_messages", "ICMP messages shorter than the minimum (icps_tooshort)", |s| &s.icmp.tooshort),
    stat("icmp_bad_checksum_messages", "ICMP messages with a bad checksum (icps_checksum)", |s| &s.icmp.checksum),
    stat("icmp_bad_length_messages", "ICMP messages with a bad length (icps_badlen)", |s| &s.icmp.badlen),
    stat("icmp_broadcast_echo_ignored", "Broadcast/multicast echo requests ignored (icps_bmcastecho)", |s| {
        &s.icmp.bmcastecho
    }),
    stat("icmp_responses_generated", "ICMP message responses generated (icps_reflect)", |s| &s.icmp.reflect),
];

/// udpstat and tcpstat of the router's own transport input.
pub const TRANSPORT: &[Stat] = &[
    stat("udp_received_datagrams", "UDP datagrams received (udps_ipackets)", |s| &s.transport.udp_ipackets),
    stat("udp_incomplete_header_datagrams", "UDP datagrams with an incomplete header (udps_hdrops)", |s| {
        &s.transport.udp_hdrops
    }),
    stat("udp_bad_length_datagrams", "UDP datagrams with a bad data length field (udps_badlen)", |s| {
        &s.transport.udp_badlen
    }),
    stat("udp_bad_checksum_datagrams", "UDP datagrams with a bad checksum (udps_badsum)", |s| &s.transport.udp_badsum),
    stat("udp_no_socket_datagrams", "UDP datagrams dropped for want of a socket (udps_noport)", |s| {
        &s.transport.udp_noport
    }),
    stat(
        "udp_no_socket_broadcast_datagrams",
        "Broadcast/multicast UDP datagrams dropped for want of a socket (udps_noportbcast)",
        |s| &s.transport.udp_noportbcast,
    ),
    stat("udp_output_datagrams", "UDP datagrams the sockets sent (udps_opackets)", |s| &s.transport.udp_opackets),
    stat("tcp_received_packets", "TCP packets received (tcps_rcvtotal)", |s| &s.transport.tcp_rcvtotal),
    stat("tcp_bad_checksum_packets", "TCP packets discarded for a bad checksum (tcps_rcvbadsum)", |s| {
        &s.transport.tcp_rcvbadsum
    }),
    stat("tcp_too_short_packets", "TCP packets discarded as too short (tcps_rcvshort)", |s| &s.transport.tcp_rcvshort),
    stat("tcp_resets_sent", "TCP resets sent (tcps_sndrst)", |s| &s.transport.tcp_sndrst),
];

/// Ethernet input.
pub const ETHER: &[Stat] = &[
    stat("ether_runt_frames", "Frames shorter than an Ethernet header", |s| &s.ether.runts),
    stat("ether_other_host_frames", "Frames for another host", |s| &s.ether.not_for_us),
    stat("ether_vlan_dropped_frames", "802.1Q tagged frames dropped (no VLAN interface)", |s| &s.ether.vlan_dropped),
    stat("ether_unknown_type_frames", "Frames with an unknown EtherType", |s| &s.ether.unknown_type),
    stat("ether_no_buffer_frames", "Frames dropped for want of a packet buffer", |s| &s.ether.nobufs),
];

/// ARP (netstat -s "arp:").
pub const ARP: &[Stat] = &[
    stat("arp_requests_sent", "ARP requests sent", |s| &s.arp.requests_sent),
    stat("arp_replies_sent", "ARP replies sent", |s| &s.arp.replies_sent),
    stat("arp_requests_received", "ARP requests received", |s| &s.arp.requests_received),
    stat("arp_replies_received", "ARP replies received", |s| &s.arp.replies_received),
    stat("arp_received_packets", "ARP packets received", |s| &s.arp.received),
    stat("arp_bad_packets", "Malformed ARP packets dropped", |s| &s.arp.dropped_bad),
    stat("arp_no_entry_dropped_packets", "Packets dropped because their next hop did not answer ARP", |s| {
        &s.arp.dropped_no_entry
    }),
    stat("arp_hold_full_dropped_packets", "Packets dropped from a full ARP hold queue", |s| &s.arp.dropped_hold_full),
    stat("arp_entry_timeouts", "ARP entries that timed out", |s| &s.arp.timeouts),
    stat("arp_duplicate_address_messages", "ARP messages from another host claiming one of our addresses", |s| {
        &s.arp.dup_ips
    }),
];

/// ip6stat (netstat -s "ip6:").
pub const IP6: &[Stat] = &[
    stat("ip6_received_packets", "IPv6 packets received (ip6s_total)", |s| &s.ip6.total),
    stat("ip6_too_small_packets", "IPv6 packets smaller than the minimum (ip6s_toosmall)", |s| &s.ip6.toosmall),
    stat("ip6_too_short_packets", "IPv6 packets with data size < data length (ip6s_tooshort)", |s| &s.ip6.tooshort),
    stat("ip6_bad_options_packets", "IPv6 packets with bad options (ip6s_badoptions)", |s| &s.ip6.badoptions),
    stat("ip6_bad_version_packets", "IPv6 packets with an incorrect version number (ip6s_badvers)", |s| &s.ip6.badvers),
    stat("ip6_fragments_received", "IPv6 fragments received (ip6s_fragments)", |s| &s.ip6.fragments),
    stat("ip6_fragments_dropped", "IPv6 fragments dropped, dup or out of space (ip6s_fragdropped)", |s| {
        &s.ip6.fragdropped
    }),
    stat("ip6_fragment_overlap_datagrams", "IPv6 datagrams dropped for overlapping fragments (RFC 5722)", |s| {
        &s.ip6.fragoverlap
    }),
    stat("ip6_reassembled_packets", "IPv6 packets reassembled ok (ip6s_reassembled)", |s| &s.ip6.reassembled),
    stat("ip6_delivered_packets", "IPv6 packets for this host (ip6s_delivered)", |s| &s.ip6.delivered),
    stat("ip6_forwarded_packets", "IPv6 packets forwarded (ip6s_forward)", |s| &s.ip6.forward),
    stat("ip6_not_forwardable_packets", "IPv6 packets not forwardable (ip6s_cantforward)", |s| &s.ip6.cantforward),
    stat("ip6_local_out_packets", "IPv6 packets sent from this host (ip6s_localout)", |s| &s.ip6.localout),
    stat("ip6_output_dropped_packets", "IPv6 output packets dropped for want of buffers, etc. (ip6s_odropped)", |s| {
        &s.ip6.odropped
    }),
    stat("ip6_no_route_packets", "IPv6 output packets discarded for want of a route (ip6s_noroute)", |s| {
        &s.ip6.noroute
    }),
    stat("ip6_fragmented_datagrams", "IPv6 output datagrams fragmented (ip6s_fragmented)", |s| &s.ip6.fragmented),
    stat("ip6_fragments_created", "IPv6 fragments created (ip6s_ofragments)", |s| &s.ip6.ofragments),
    stat("ip6_cant_fragment_datagrams", "IPv6 datagrams that could not be fragmented (ip6s_cantfrag)", |s| {
        &s.ip6.cantfrag
    }),
    stat("ip6_bad_scope_packets", "IPv6 packets that violated scope rules (ip6s_badscope)", |s| &s.ip6.badscope),
    stat("ip6_multicast_not_member_packets", "IPv6 multicast packets of groups not joined (ip6s_notmember)", |s| {
        &s.ip6.notmember
    }),
    stat("ip6_too_many_headers_packets", "IPv6 packets whose headers are not continuous (ip6s_toomanyhdr)", |s| {
        &s.ip6.toomanyhdr
    }),
    stat("ip6_unknown_protocol_packets", "IPv6 packets for an unknown protocol", |s| &s.ip6.noproto),
    stat("ip6_hop_limit_exceeded_packets", "IPv6 packets whose hop limit ran out here", |s| &s.ip6.hoplimit),
    stat("ip6_too_big_packets", "IPv6 packets too big for the outgoing link", |s| &s.ip6.toobig),
    stat("ip6_blackholed_packets", "IPv6 packets discarded by blackhole routes", |s| &s.ip6.blackholed),
    stat("ip6_tentative_packets", "IPv6 packets to a tentative or duplicated address", |s| &s.ip6.tentative),
    stat("ip6_filtered_packets", "IPv6 packets blocked by the packet filter", |s| &s.ip6.filtered),
];

/// icmp6stat (netstat -s "icmp6:"), without the histograms.
pub const ICMP6: &[Stat] = &[
    stat("icmp6_error_calls", "Calls to icmp6_error (icp6s_error)", |s| &s.icmp6.error),
    stat(
        "icmp6_errors_not_sent_old_icmp6",
        "Errors not sent: the old message was ICMPv6 or so (icp6s_canterror)",
        |s| &s.icmp6.canterror,
    ),
    stat("icmp6_errors_not_sent_multicast", "Errors not sent because of multicast", |s| &s.icmp6.bmcast),
    stat("icmp6_errors_rate_limited", "Errors not sent because of rate limitation (icp6s_toofreq)", |s| {
        &s.icmp6.toofreq
    }),
    stat("icmp6_bad_code_messages", "ICMPv6 messages with bad code fields", |s| &s.icmp6.badcode),
    stat("icmp6_too_short_messages", "ICMPv6 messages shorter than the minimum", |s| &s.icmp6.tooshort),
    stat("icmp6_bad_checksum_messages", "ICMPv6 messages with a bad checksum", |s| &s.icmp6.checksum),
    stat("icmp6_bad_length_messages", "ICMPv6 messages with a bad length", |s| &s.icmp6.badlen),
    stat("icmp6_responses_generated", "ICMPv6 message responses generated (icp6s_reflect)", |s| &s.icmp6.reflect),
    stat("icmp6_mld_received_messages", "MLD messages received", |s| &s.icmp6.mld),
];

/// Neighbor discovery (netstat -s "nd6:").
pub const ND6: &[Stat] = &[
    stat("nd6_solicitations_sent", "Neighbor solicitations sent", |s| &s.nd6.ns_sent),
    stat("nd6_advertisements_sent", "Neighbor advertisements sent", |s| &s.nd6.na_sent),
    stat("nd6_solicitations_received", "Neighbor solicitations received", |s| &s.nd6.ns_received),
    stat("nd6_advertisements_received", "Neighbor advertisements received", |s| &s.nd6.na_received),
    stat("nd6_dropped_messages", "Neighbor discovery messages dropped", |s| &s.nd6.dropped),
    stat("nd6_bad_hop_limit_messages", "Neighbor discovery messages with a hop limit other than 255", |s| {
        &s.nd6.bad_hop_limit
    }),
    stat("nd6_invalid_messages", "Invalid neighbor discovery messages", |s| &s.nd6.invalid),
    stat("nd6_no_entry_dropped_packets", "Packets dropped because their neighbor never answered", |s| {
        &s.nd6.dropped_no_entry
    }),
    stat("nd6_hold_full_dropped_packets", "Packets dropped from a full neighbor hold queue", |s| {
        &s.nd6.dropped_hold_full
    }),
    stat("nd6_cache_full_refusals", "New neighbors refused because the cache was full", |s| &s.nd6.cache_full),
    stat("nd6_entry_timeouts", "Neighbor cache entries that timed out", |s| &s.nd6.timeouts),
    stat("nd6_duplicate_address_messages", "Messages from another node claiming one of our addresses", |s| {
        &s.nd6.dup_addrs
    }),
    stat("nd6_redirects_ignored", "ICMPv6 redirects ignored because the router forwards", |s| &s.nd6.redirects_ignored),
    stat("nd6_router_solicitations_received", "Router solicitations received", |s| &s.nd6.rs_received),
    stat("nd6_router_solicitations_dropped", "Router solicitations dropped: the advertiser's queue was full", |s| {
        &s.nd6.rs_dropped
    }),
    stat("nd6_router_advertisements_sent", "Router advertisements sent", |s| &s.nd6.ra_sent),
];

/// Every table, in exposition order.
pub const ALL: &[&[Stat]] = &[IP, ICMP, TRANSPORT, ETHER, ARP, IP6, ICMP6, ND6];
