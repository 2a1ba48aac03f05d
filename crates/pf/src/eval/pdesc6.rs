//! pf_setup_pdesc for IPv6 (pf.c's AF_INET6 case): pf_walk_header6 over
//! the extension headers and pf_walk_option6 over the hop-by-hop
//! options, then the transport header as for IPv4, and pf_icmp_mapping's
//! IPv6 half.

use softnet_wire::icmpv6::{self, msg_type as t6};
use softnet_wire::ipv6::{self, Ipv6Packet};
use softnet_wire::ipv6ext::{option_type, FragmentHeader, OptionsHeader, RoutingHeader, MAX_EXT_HEADERS};

use super::*;

const PROTO_HOPOPTS: u8 = IpProtocol::HOPOPT.0;
const PROTO_ROUTING: u8 = IpProtocol::IPV6_ROUTE.0;
const PROTO_FRAGMENT: u8 = IpProtocol::IPV6_FRAG.0;
const PROTO_DSTOPTS: u8 = IpProtocol::IPV6_OPTS.0;
const PROTO_AH: u8 = IpProtocol::AH.0;
/// `IPV6_MAXPACKET`: a jumbo payload length must be above it.
const IPV6_MAXPACKET: u32 = 65535;
/// An NS or NA: the ICMPv6 header and the 16-byte target
/// (`sizeof(struct nd_neighbor_solicit)`).
const ND_NS_LEN: usize = 24;
/// An MLD query or report (`sizeof(struct mld_hdr)`).
const MLD_LEN: usize = 24;
/// Hop limit of every NDP message (RFC 4861 §7.1).
const ND_HOP_LIMIT: u8 = 255;

/// What pf_walk_header6 leaves in the pdesc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk6 {
    /// Where the upper-layer header starts (for a fragment pf does not
    /// look into: the fragment header).
    pub off: usize,
    /// The upper-layer protocol (`IPPROTO_FRAGMENT` for a non-first
    /// fragment).
    pub proto: u8,
    /// Offset of the fragment header of a fragment that is not atomic
    /// (0: none): pf's `fragoff`, PF_VPROTO_FRAGMENT.
    pub fragoff: usize,
    /// Options other than padding (pf's `badopts`, router alerts of MLD
    /// messages left out).
    pub badopts: bool,
}

/// pf_walk_option6 over the options in `d[off..end]` of a hop-by-hop
/// header: a jumbo option is a bad option here (pf_setup_pdesc then drops
/// the packet, `normalize`); `Err` with `ip-option` for an option running
/// past its header, or a second or malformed jumbo.
fn walk_option6(d: &[u8], mut off: usize, end: usize, plen: u16, jumbolen: &mut u32) -> Result<u8, Reason> {
    // bit 0: router alert, bit 1: anything else but padding
    let mut bad = 0u8;
    while off < end {
        let ty = *d.get(off).ok_or(Reason::Short)?;
        if ty == option_type::PAD1 {
            off += 1;
            continue;
        }
        let len = *d.get(off + 1).ok_or(Reason::Short)? as usize;
        if off + 2 + len > end {
            return Err(Reason::IpOption);
        }
        match ty {
            option_type::PADN => {}
            option_type::JUMBO => {
                bad |= 2;
                if *jumbolen != 0 || plen != 0 || len != 4 {
                    return Err(Reason::IpOption);
                }
                *jumbolen = u32::from_be_bytes([d[off + 2], d[off + 3], d[off + 4], d[off + 5]]);
                if *jumbolen <= IPV6_MAXPACKET {
                    return Err(Reason::IpOption);
                }
            }
            option_type::ROUTER_ALERT => bad |= 1,
            _ => bad |= 2,
        }
        off += 2 + len;
    }
    Ok(bad)
}

/// pf.c `pf_walk_header6`: the extension headers after the fixed header
/// of `d` (its payload length checked against the buffer by the caller).
/// Drops: routing type 0, a second routing header, a hop-by-hop header
/// not first, a jumbogram, more than `MAX_EXT_HEADERS` headers
/// (`ip-option`); a second fragment header or a fragment of a jumbogram
/// (`fragment`); headers running past the packet's bytes (`short`). A non-first fragment stops the walk; a
/// fragment too short for the next header it names is left as a
/// fragment.
pub fn walk_header6(d: &[u8]) -> Result<(Walk6, u32), Reason> {
    let ip = Ipv6Packet::new_unchecked(d);
    let plen = ip.payload_len();
    let end = ipv6::HEADER_LEN + plen as usize;
    let mut off = ipv6::HEADER_LEN;
    let mut proto = ip.next_header().0;
    let (mut fragoff, mut jumbolen) = (0usize, 0u32);
    // bit 0: router alert, bit 1: other options
    let mut badopts = 0u8;
    let (mut frags, mut rthdrs) = (0, 0);
    // "fragments may be short": stop at the fragment header.
    let as_fragment = |fragoff: usize| {
        let w = Walk6 { off: fragoff, proto: PROTO_FRAGMENT, fragoff, badopts: false };
        (w, 0)
    };
    // Headers are read from the packet's bytes as pf_pull_hdr reads the
    // mbuf; `end` (the payload length) only decides whether a fragment
    // is too short to look into.
    let hdr = |at: usize, len: usize| d.get(at..at + len).ok_or(Reason::Short);
    for hdr_cnt in 0..MAX_EXT_HEADERS {
        match proto {
            PROTO_ROUTING | PROTO_DSTOPTS => badopts |= 2,
            PROTO_HOPOPTS => {
                let h = OptionsHeader::new_checked(d.get(off..).ok_or(Reason::Short)?).map_err(|_| Reason::Short)?;
                let hl = h.header_len();
                badopts |= walk_option6(d, off + 2, off + hl, plen, &mut jumbolen)?;
                // an option header holding only padding is fishy
                if badopts == 0 {
                    badopts |= 2;
                }
            }
            _ => {}
        }
        match proto {
            PROTO_FRAGMENT => {
                frags += 1;
                if frags > 1 || jumbolen != 0 {
                    return Err(Reason::Fragment);
                }
                let f = FragmentHeader::new_checked(hdr(off, 8)?).map_err(|_| Reason::Short)?;
                if f.frag_offset() != 0 {
                    let w = Walk6 { off, proto, fragoff: off, badopts: badopts != 0 };
                    return Ok((w, jumbolen));
                }
                // RFC 6946: an atomic fragment is not reassembled.
                if f.more_frags() {
                    fragoff = off;
                }
                off += 8;
                proto = f.next_header().0;
            }
            PROTO_ROUTING | PROTO_HOPOPTS | PROTO_AH | PROTO_DSTOPTS => {
                if proto == PROTO_ROUTING {
                    rthdrs += 1;
                    if rthdrs > 1 {
                        return Err(Reason::IpOption);
                    }
                    if fragoff != 0 && end < off + 4 {
                        return Ok(as_fragment(fragoff));
                    }
                    let rh = RoutingHeader::new_unchecked(hdr(off, 4)?);
                    if rh.is_type0() {
                        return Err(Reason::IpOption);
                    }
                }
                // RFC 8200 §4.1: hop-by-hop only right after the header.
                if proto == PROTO_HOPOPTS && hdr_cnt > 0 {
                    return Err(Reason::IpOption);
                }
                if fragoff != 0 && end < off + 2 {
                    return Ok(as_fragment(fragoff));
                }
                let ext = hdr(off, 2)?;
                // pf's "IPv6 missing jumbo": a jumbogram is not filtered.
                if proto == PROTO_HOPOPTS && fragoff == 0 && plen == 0 && jumbolen != 0 {
                    return Err(Reason::IpOption);
                }
                let len = if proto == PROTO_AH { (ext[1] as usize + 2) * 4 } else { (ext[1] as usize + 1) * 8 };
                proto = ext[0];
                off += len;
            }
            PROTO_ICMPV6 => {
                if fragoff != 0 && end < off + icmpv6::HEADER_LEN {
                    return Ok(as_fragment(fragoff));
                }
                let ic = hdr(off, icmpv6::HEADER_LEN)?;
                // MLD messages carry a router alert: RFC 2710 wants hop
                // limit 1 and a link-local source, else they are invalid.
                if matches!(ic[0], t6::MLD_QUERY | t6::MLD_REPORT | t6::MLD_DONE | t6::MLDV2_REPORT) {
                    let ll = ip.src().segments()[0] & 0xffc0 == 0xfe80;
                    if ip.hop_limit() != 1 || !ll {
                        return Err(Reason::IpOption);
                    }
                    badopts &= !1;
                }
                return Ok((Walk6 { off, proto, fragoff, badopts: badopts != 0 }, jumbolen));
            }
            PROTO_TCP | PROTO_UDP => {
                let need =
                    if proto == PROTO_TCP { softnet_wire::tcp::MIN_HEADER_LEN } else { softnet_wire::udp::HEADER_LEN };
                if fragoff != 0 && end < off + need {
                    return Ok(as_fragment(fragoff));
                }
                return Ok((Walk6 { off, proto, fragoff, badopts: badopts != 0 }, jumbolen));
            }
            _ => return Ok((Walk6 { off, proto, fragoff, badopts: badopts != 0 }, jumbolen)),
        }
    }
    Err(Reason::IpOption)
}

/// pf_icmp_mapping for IPv6: (is an error, the query's direction, the
/// virtual type that keys the state, whether the key's addresses come
/// from an NDP target (PF_ICMP_MULTI_SOLICITED)). The virtual id of NS/NA
/// and MLD is made from the address they carry (`nd_virtual_id`).
pub(super) fn icmp6_mapping(ty: u8) -> (bool, Direction, u8, bool) {
    match ty {
        t6::ECHO_REQUEST => (false, Direction::In, t6::ECHO_REQUEST, false),
        t6::ECHO_REPLY => (false, Direction::Out, t6::ECHO_REQUEST, false),
        t6::MLD_QUERY => (false, Direction::In, t6::MLD_QUERY, false),
        t6::MLD_REPORT => (false, Direction::Out, t6::MLD_QUERY, false),
        ICMP6_WRUREQUEST => (false, Direction::In, ICMP6_WRUREQUEST, false),
        ICMP6_WRUREPLY => (false, Direction::Out, ICMP6_WRUREQUEST, false),
        MLD_MTRACE => (false, Direction::In, MLD_MTRACE, false),
        MLD_MTRACE_RESP => (false, Direction::Out, MLD_MTRACE, false),
        t6::NEIGHBOR_SOLICIT => (false, Direction::In, t6::NEIGHBOR_SOLICIT, true),
        t6::NEIGHBOR_ADVERT => (false, Direction::Out, t6::NEIGHBOR_SOLICIT, true),
        t6::DST_UNREACHABLE | t6::PACKET_TOO_BIG | t6::TIME_EXCEEDED | t6::PARAM_PROBLEM => {
            (true, Direction::In, ty, false)
        }
        _ => (false, Direction::In, ty, false),
    }
}

/// Node information query / reply (pf's ICMP6_WRUREQUEST/REPLY).
const ICMP6_WRUREQUEST: u8 = 139;
const ICMP6_WRUREPLY: u8 = 140;
/// Multicast traceroute and its response.
const MLD_MTRACE: u8 = 201;
const MLD_MTRACE_RESP: u8 = 200;

/// pf's fake id of NS/NA and MLD messages: the words of the address they
/// carry xored, low 16 bits.
fn addr_virtual_id(a: &[u8]) -> u16 {
    let w = |i: usize| u32::from_be_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    (w(0) ^ w(4) ^ w(8) ^ w(12)) as u16
}

/// pf_setup_pdesc for an IPv6 packet (`d` starts at the IPv6 header).
/// `Err` is the drop reason: `short` for a packet shorter than its
/// header or payload length says, a TCP/UDP/ICMPv6 header not in it, or
/// to port 0 (as for IPv4); `normalize` for an NDP message whose hop
/// limit is not 255 (and pf_setup_pdesc's jumbogram check, which the
/// walk's own makes unreachable); the walk's reasons. A fragment pf does not look into (`Pd::frag`) has no
/// transport fields.
pub fn parse_pd6(d: &[u8]) -> Result<Pd, Reason> {
    let ip = Ipv6Packet::new_checked(d).map_err(|_| Reason::Short)?;
    let (w, jumbolen) = walk_header6(d)?;
    if jumbolen != 0 {
        return Err(Reason::Normalize);
    }
    let tot = ipv6::HEADER_LEN + ip.payload_len() as usize;
    // The chain ends past the payload (an AH or options length that runs
    // over it): pf would go on with an offset outside the packet; here it
    // is a short packet.
    if w.off > tot {
        return Err(Reason::Short);
    }
    let mut pd = Pd::ip(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, w.proto, 0, w.off, tot);
    pd.af = Af::Inet6;
    pd.src = PfAddr::from_v6(ip.src());
    pd.dst = PfAddr::from_v6(ip.dst());
    // The traffic class without its ECN bits (pf: flow & 0x0fc00000).
    pd.tos = ip.traffic_class() & 0xfc;
    pd.badopts = w.badopts;
    if w.fragoff != 0 {
        pd.frag = true;
        return Ok(pd);
    }
    let l4 = &d[w.off.min(tot)..tot];
    match w.proto {
        PROTO_TCP | PROTO_UDP => transport(&mut pd, l4)?,
        PROTO_ICMPV6 => {
            if l4.len() < icmpv6::HEADER_LEN {
                return Err(Reason::Short);
            }
            let (ty, code) = (l4[0], l4[1]);
            let need = match ty {
                t6::MLD_QUERY | t6::MLD_REPORT => MLD_LEN,
                t6::NEIGHBOR_SOLICIT | t6::NEIGHBOR_ADVERT => ND_NS_LEN,
                _ => icmpv6::HEADER_LEN,
            };
            if matches!(
                ty,
                t6::NEIGHBOR_SOLICIT | t6::NEIGHBOR_ADVERT | t6::ROUTER_SOLICIT | t6::ROUTER_ADVERT | t6::REDIRECT
            ) && ip.hop_limit() != ND_HOP_LIMIT
            {
                return Err(Reason::Normalize);
            }
            if l4.len() < need {
                return Err(Reason::Short);
            }
            pd.icmp_type = ty;
            pd.icmp_code = code;
            let (_, idir, vtype, _) = icmp6_mapping(ty);
            let icmp_id = match ty {
                t6::ECHO_REQUEST | t6::ECHO_REPLY => u16::from_be_bytes([l4[4], l4[5]]),
                t6::MLD_QUERY | t6::MLD_REPORT | t6::NEIGHBOR_SOLICIT | t6::NEIGHBOR_ADVERT => {
                    addr_virtual_id(&l4[8..24])
                }
                _ => 0,
            };
            if idir == Direction::In {
                pd.sport = icmp_id;
                pd.dport = vtype as u16;
            } else {
                pd.sport = vtype as u16;
                pd.dport = icmp_id;
            }
        }
        _ => {}
    }
    Ok(pd)
}

/// The TCP or UDP header of `l4` into `pd`, with pf_setup_pdesc's checks
/// (the same for both families).
fn transport(pd: &mut Pd, l4: &[u8]) -> Result<(), Reason> {
    if pd.proto == PROTO_UDP {
        if l4.len() < softnet_wire::udp::HEADER_LEN {
            return Err(Reason::Short);
        }
        let ulen = be16(l4, 4) as usize;
        if ulen > l4.len() || ulen < softnet_wire::udp::HEADER_LEN {
            return Err(Reason::Short);
        }
        pd.sport = be16(l4, 0);
        pd.dport = be16(l4, 2);
    } else {
        if l4.len() < softnet_wire::tcp::MIN_HEADER_LEN {
            return Err(Reason::Short);
        }
        let t = TcpPacket::new_unchecked(l4);
        let off = t.header_len() as usize;
        if off < softnet_wire::tcp::MIN_HEADER_LEN || off > l4.len() {
            return Err(Reason::Short);
        }
        pd.sport = t.src_port();
        pd.dport = t.dst_port();
        let flags = t.flags().bits();
        let mut wscale = 0;
        if flags & TH_SYN != 0 {
            for o in TcpPacket::new_checked(l4).map_err(|_| Reason::Short)?.option_iter() {
                if let Ok(softnet_wire::tcp::TcpOption::WindowScale(s)) = o {
                    wscale = crate::state::WSCALE_FLAG | s.min(14);
                }
            }
        }
        pd.tcp = TcpSeg {
            flags,
            seq: t.seq_number(),
            ack: t.ack_number(),
            win: t.window(),
            len: (l4.len() - off) as u32,
            wscale,
        };
    }
    if pd.dport == 0 {
        return Err(Reason::Short);
    }
    Ok(())
}

/// pf_state_key_addr_setup for an ICMPv6 NDP message: a neighbor
/// solicitation is keyed to its target (the destination side), an
/// advertisement from its target (the source side), to `::` when it went
/// to a multicast group (an unsolicited one). `None` for anything else:
/// the packet's own addresses key it.
pub(super) fn nd_key_addrs(pd: &Pd, data: &[u8]) -> Option<(PfAddr, PfAddr)> {
    if pd.af != Af::Inet6 || pd.proto != PROTO_ICMPV6 || pd.frag {
        return None;
    }
    let target = || {
        let t: [u8; 16] = data.get(pd.hlen() + 8..pd.hlen() + 24)?.try_into().ok()?;
        Some(PfAddr::from_v6(std::net::Ipv6Addr::from(t)))
    };
    match pd.icmp_type {
        t6::NEIGHBOR_SOLICIT => Some((pd.src, target()?)),
        t6::NEIGHBOR_ADVERT => {
            let dst = if pd.dst.v6().is_multicast() { PfAddr::UNSPECIFIED } else { pd.dst };
            Some((target()?, dst))
        }
        _ => None,
    }
}

/// The packet's state key as pf_state_key_setup makes it for a new
/// state: `pkt_key`, with an NDP message's target in place of an address
/// (`nd_key_addrs`).
pub(super) fn new_state_key(pd: &Pd, data: &[u8], dir: Direction) -> StateKey {
    let mut k = pkt_key(pd, dir);
    if let Some((s, d)) = nd_key_addrs(pd, data) {
        let (si, di) = if dir == Direction::In { (0, 1) } else { (1, 0) };
        k.addr[si] = s;
        k.addr[di] = d;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip6(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, next, 64];
        p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8:1::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(payload);
        p
    }

    const UDP: [u8; 10] = [0x13, 0x88, 0, 53, 0, 10, 0, 0, 0x61, 0x62];

    #[test]
    fn plain_udp_and_a_chain_of_extension_headers() {
        let pd = parse_pd6(&ip6(PROTO_UDP, &UDP)).unwrap();
        assert_eq!((pd.af, pd.proto, pd.hlen(), pd.tot_len(), pd.sport, pd.dport), (Af::Inet6, 17, 40, 50, 5000, 53));
        assert!(!pd.badopts && !pd.frag);
        // destination options (PadN only) then UDP: an option header.
        let mut p = vec![PROTO_UDP, 0, 1, 4, 0, 0, 0, 0];
        p.extend_from_slice(&UDP);
        let pd = parse_pd6(&ip6(PROTO_DSTOPTS, &p)).unwrap();
        assert_eq!((pd.proto, pd.hlen(), pd.dport), (17, 48, 53));
        assert!(pd.badopts);
        // AH: length in 4-byte units minus 2.
        let mut p = vec![PROTO_UDP, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
        p.extend_from_slice(&UDP);
        let pd = parse_pd6(&ip6(PROTO_AH, &p)).unwrap();
        assert_eq!((pd.proto, pd.hlen()), (17, 52));
    }

    #[test]
    fn routing_type_0_hopopts_not_first_and_too_many_headers_are_ip_option_drops() {
        let rh0 = [PROTO_UDP, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_pd6(&ip6(PROTO_ROUTING, &[&rh0[..], &UDP].concat())).err(), Some(Reason::IpOption));
        // type 2 is walked over
        let rh2 = [PROTO_UDP, 0, 2, 0, 0, 0, 0, 0];
        assert!(parse_pd6(&ip6(PROTO_ROUTING, &[&rh2[..], &UDP].concat())).is_ok());
        // dstopts then hop-by-hop
        let d = [PROTO_HOPOPTS, 0, 1, 4, 0, 0, 0, 0];
        let h = [PROTO_UDP, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(parse_pd6(&ip6(PROTO_DSTOPTS, &[&d[..], &h, &UDP].concat())).err(), Some(Reason::IpOption));
        // 21 destination options headers
        let mut p = vec![];
        for _ in 0..MAX_EXT_HEADERS + 1 {
            p.extend_from_slice(&[PROTO_DSTOPTS, 0, 1, 4, 0, 0, 0, 0]);
        }
        let n = p.len();
        p[n - 8] = PROTO_UDP;
        p.extend_from_slice(&UDP);
        assert_eq!(parse_pd6(&ip6(PROTO_DSTOPTS, &p)).err(), Some(Reason::IpOption));
    }

    #[test]
    fn lengths_past_the_packet_jumbograms_and_bad_ndp_hop_limits_are_dropped() {
        // payload length past the buffer
        let mut p = ip6(PROTO_UDP, &UDP);
        p[5] += 1;
        assert_eq!(parse_pd6(&p).err(), Some(Reason::Short));
        // an options header longer than the packet
        let h = [PROTO_UDP, 3, 1, 4, 0, 0, 0, 0];
        assert_eq!(parse_pd6(&ip6(PROTO_HOPOPTS, &[&h[..], &UDP].concat())).err(), Some(Reason::Short));
        // a jumbogram (payload length 0, jumbo option): pf filters none
        let mut p = ip6(PROTO_HOPOPTS, &[PROTO_UDP, 0, option_type::JUMBO, 4, 0, 1, 0, 0]);
        p[4] = 0;
        p[5] = 0;
        assert_eq!(parse_pd6(&p).err(), Some(Reason::IpOption));
        // a jumbo option with a payload length: ip-option
        let p = ip6(PROTO_HOPOPTS, &[PROTO_UDP, 0, option_type::JUMBO, 4, 0, 1, 0, 0]);
        assert_eq!(parse_pd6(&p).err(), Some(Reason::IpOption));
        // NS with hop limit 64
        let mut ns = vec![t6::NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(parse_pd6(&ip6(PROTO_ICMPV6, &ns)).err(), Some(Reason::Normalize));
        let mut p = ip6(PROTO_ICMPV6, &ns);
        p[7] = 255;
        let pd = parse_pd6(&p).unwrap();
        assert_eq!((pd.icmp_type, pd.sport, pd.dport), (t6::NEIGHBOR_SOLICIT, (0x2001_0db8u32 ^ 9) as u16, 135));
        // truncated NS
        p.truncate(p.len() - 1);
        p[5] -= 1;
        assert_eq!(parse_pd6(&p).err(), Some(Reason::Short));
    }

    #[test]
    fn fragments_are_marked_and_atomic_ones_are_not() {
        // first fragment (offset 0, M set): a fragment, ports not read
        let f = [PROTO_UDP, 0, 0, 1, 0, 0, 0, 7];
        let pd = parse_pd6(&ip6(PROTO_FRAGMENT, &[&f[..], &UDP].concat())).unwrap();
        assert!(pd.frag);
        assert_eq!(pd.sport, 0);
        // later fragment: stops at the fragment header
        let f = [PROTO_UDP, 0, 0, 0x10, 0, 0, 0, 7];
        let pd = parse_pd6(&ip6(PROTO_FRAGMENT, &[&f[..], &UDP].concat())).unwrap();
        assert!(pd.frag);
        assert_eq!(pd.proto, PROTO_FRAGMENT);
        // atomic fragment (offset 0, M clear): the datagram itself
        let f = [PROTO_UDP, 0, 0, 0, 0, 0, 0, 7];
        let pd = parse_pd6(&ip6(PROTO_FRAGMENT, &[&f[..], &UDP].concat())).unwrap();
        assert!(!pd.frag);
        assert_eq!((pd.proto, pd.dport), (PROTO_UDP, 53));
        // two fragment headers
        let f2 = [PROTO_FRAGMENT, 0, 0, 0, 0, 0, 0, 7];
        let p = ip6(PROTO_FRAGMENT, &[&f2[..], &f2, &UDP].concat());
        assert_eq!(parse_pd6(&p).err(), Some(Reason::Fragment));
    }

    proptest::proptest! {
        /// pf_normalize_tcp's RFC 1624 updates on an IPv6 segment leave
        /// the checksum (IPv6 pseudo-header) what a full re-sum gives, for
        /// any addresses, flags, reserved bits, urgent pointer and data.
        #[test]
        fn normalized_ipv6_segments_keep_a_valid_checksum(
            src in proptest::prelude::any::<u128>(), dst in proptest::prelude::any::<u128>(),
            flags in proptest::prelude::any::<u8>(), x2 in 0u8..16, urp in proptest::prelude::any::<u16>(),
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let (s, d) = (std::net::Ipv6Addr::from(src), std::net::Ipv6Addr::from(dst));
            let mut seg = vec![0x9c, 0x40, 0, 22, 0, 0, 3, 0xe9, 0, 0, 0x13, 0x89, 0x50 | x2, flags, 0x20, 0, 0, 0];
            seg.extend_from_slice(&urp.to_be_bytes());
            seg.extend_from_slice(&data);
            TcpPacket::new_unchecked(&mut seg[..]).fill_checksum_v6(s, d);
            let mut p = ip6(PROTO_TCP, &seg);
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(&d.octets());
            let before = p.clone();
            if normalize_tcp(&mut p[40..]).is_some() {
                let t = TcpPacket::new_checked(&p[40..]).unwrap();
                proptest::prop_assert!(t.verify_checksum_v6(s, d));
                proptest::prop_assert_eq!(t.reserved(), 0);
            } else {
                proptest::prop_assert_eq!(p, before);
            }
        }
    }

    /// Every one-byte corruption of valid packets parses or is refused,
    /// never panics, and a parse never points past the packet.
    #[test]
    fn corrupted_packets_never_panic() {
        let mut tcp = vec![0x9c, 0x40, 0, 22, 0, 0, 3, 0xe9, 0, 0, 0x13, 0x89, 0x50, TH_SYN, 0x20, 0, 0, 0, 0, 0];
        tcp.extend_from_slice(b"data");
        let base = [
            ip6(PROTO_UDP, &UDP),
            ip6(PROTO_TCP, &tcp),
            ip6(PROTO_DSTOPTS, &[&[PROTO_UDP, 0, 1, 4, 0, 0, 0, 0][..], &UDP].concat()),
            ip6(PROTO_FRAGMENT, &[&[PROTO_TCP, 0, 0, 1, 0, 0, 0, 7][..], &tcp].concat()),
        ];
        for p in &base {
            for i in 0..p.len() {
                for v in [0u8, 1, 4, 6, 17, 43, 44, 51, 58, 60, 0x80, 0xff] {
                    let mut q = p.clone();
                    q[i] = v;
                    if let Ok(pd) = parse_pd6(&q) {
                        assert!(pd.hlen() <= q.len() && pd.tot_len() <= q.len(), "{q:?}");
                    }
                    q.truncate(q.len() - 3);
                    let _ = parse_pd6(&q);
                }
            }
        }
    }
}
