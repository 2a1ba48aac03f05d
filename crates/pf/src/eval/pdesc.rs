//! pf_setup_pdesc and pf_normalize_tcp: the packet description pf
//! evaluates (full parse and the fast parse of the common case), and the
//! state keys it gives.

use super::*;

/// The packet description (pf's `pf_pdesc`).
#[derive(Debug, Clone, Copy)]
pub struct Pd {
    /// pf_addr: read as `af` says (`src4()`/`dst4()` for IPv4).
    pub src: PfAddr,
    pub dst: PfAddr,
    pub af: Af,
    /// The transport protocol (IPv6: the last next header of the chain).
    pub proto: u8,
    /// IPv4 TOS; IPv6 traffic class.
    pub tos: u8,
    /// Where the transport header starts (IPv6: after the extension
    /// headers) and the datagram's length (`hlen()`, `tot_len()`): 16 bits
    /// each, so that a description stays small on the fast path.
    hlen: u16,
    tot_len: u16,
    /// IP options (`pf_walk_header`: padding alone counts, an IGMP
    /// router alert does not).
    pub badopts: bool,
    /// Ports for TCP/UDP; for ICMP the virtual id/type in key order.
    pub sport: u16,
    pub dport: u16,
    pub tcp: TcpSeg,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// A fragment left unreassembled (`set reassemble no`): pf's
    /// PF_VPROTO_FRAGMENT, no transport header looked at.
    pub frag: bool,
}

impl Pd {
    /// The description of an IP header alone: no transport fields yet.
    pub(crate) fn ip(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, tos: u8, hlen: usize, tot_len: usize) -> Pd {
        Pd {
            src: PfAddr::from_v4(src),
            dst: PfAddr::from_v4(dst),
            af: Af::Inet,
            proto,
            tos,
            hlen: hlen as u16,
            tot_len: tot_len as u16,
            badopts: false,
            sport: 0,
            dport: 0,
            tcp: TcpSeg::default(),
            icmp_type: 0,
            icmp_code: 0,
            frag: false,
        }
    }

    #[inline]
    pub fn hlen(&self) -> usize {
        self.hlen as usize
    }

    #[inline]
    pub fn tot_len(&self) -> usize {
        self.tot_len as usize
    }

    /// A TCP segment's header length (what is neither IP header nor
    /// payload; 0 for other packets).
    #[inline]
    pub fn tcp_hlen(&self) -> usize {
        if self.proto == PROTO_TCP && !self.frag {
            self.tot_len().saturating_sub(self.hlen() + self.tcp.len as usize)
        } else {
            0
        }
    }

    /// The source of an IPv4 packet.
    #[inline]
    pub fn src4(&self) -> Ipv4Addr {
        self.src.v4()
    }

    /// The destination of an IPv4 packet.
    #[inline]
    pub fn dst4(&self) -> Ipv4Addr {
        self.dst.v4()
    }
}

/// `pf_icmp_mapping`: (is an error, dir of a query: In for requests, the
/// virtual type that keys the state).
pub(super) fn icmp_mapping(ty: u8) -> (bool, Direction, u8) {
    use icmpv4::msg_type as t;
    match ty {
        t::ECHO_REQUEST => (false, Direction::In, t::ECHO_REQUEST),
        t::ECHO_REPLY => (false, Direction::Out, t::ECHO_REQUEST),
        t::TIMESTAMP => (false, Direction::In, t::TIMESTAMP),
        t::TIMESTAMP_REPLY => (false, Direction::Out, t::TIMESTAMP),
        t::INFO_REQUEST => (false, Direction::In, t::INFO_REQUEST),
        t::INFO_REPLY => (false, Direction::Out, t::INFO_REQUEST),
        t::MASK_REQUEST => (false, Direction::In, t::MASK_REQUEST),
        t::MASK_REPLY => (false, Direction::Out, t::MASK_REQUEST),
        t::ROUTER_SOLICIT => (false, Direction::In, t::ROUTER_SOLICIT),
        t::ROUTER_ADVERT => (false, Direction::Out, t::ROUTER_SOLICIT),
        t::DST_UNREACHABLE | t::SOURCE_QUENCH | t::REDIRECT | t::TIME_EXCEEDED | t::PARAM_PROBLEM => {
            (true, Direction::In, ty)
        }
        _ => (false, Direction::In, ty),
    }
}

/// Parses the headers pf looks at. `Err` carries the drop reason.
///
/// pf.c `pf_setup_pdesc` drops as `short`: a TCP segment whose header
/// (the 20 fixed bytes, or its data offset) does not fit in the IP
/// datagram or whose data offset is below 5, a UDP datagram whose
/// `uh_ulen` is below 8 or past the IP datagram, an ICMP message shorter
/// than 8 bytes, and a TCP or UDP packet to destination port 0 (the
/// source port may be 0).
pub fn parse_pd(data: &[u8]) -> Result<Pd, Reason> {
    let ip = Ipv4Packet::new_checked(data).map_err(|_| Reason::Short)?;
    let hlen = ip.header_len() as usize;
    let tot = (ip.total_len() as usize).min(data.len());
    let mut pd = Pd::ip(ip.src(), ip.dst(), ip.protocol().0, ip.tos(), hlen, tot);
    pd.badopts = crate::ipopt::walk_header(ip.options(), pd.proto, ip.ttl(), pd.dst4())?;
    let l4 = &data[hlen..tot];
    match pd.proto {
        PROTO_TCP => {
            if l4.len() < softnet_wire::tcp::MIN_HEADER_LEN {
                return Err(Reason::Short);
            }
            let off = (l4[12] >> 4) as usize * 4;
            if off < softnet_wire::tcp::MIN_HEADER_LEN || off > l4.len() {
                return Err(Reason::Short);
            }
            let t = TcpPacket::new_checked(l4).map_err(|_| Reason::Short)?;
            pd.sport = t.src_port();
            pd.dport = t.dst_port();
            if pd.dport == 0 {
                return Err(Reason::Short);
            }
            let flags = t.flags().bits();
            let mut wscale = 0;
            if flags & TH_SYN != 0 {
                for o in t.option_iter() {
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
        PROTO_UDP => {
            if l4.len() < softnet_wire::udp::HEADER_LEN {
                return Err(Reason::Short);
            }
            let ulen = u16::from_be_bytes([l4[4], l4[5]]) as usize;
            if ulen > l4.len() || ulen < softnet_wire::udp::HEADER_LEN {
                return Err(Reason::Short);
            }
            pd.sport = u16::from_be_bytes([l4[0], l4[1]]);
            pd.dport = u16::from_be_bytes([l4[2], l4[3]]);
            if pd.dport == 0 {
                return Err(Reason::Short);
            }
        }
        PROTO_ICMP => {
            if l4.len() < icmpv4::HEADER_LEN {
                return Err(Reason::Short);
            }
            pd.icmp_type = l4[0];
            pd.icmp_code = l4[1];
            let icmp_id = u16::from_be_bytes([l4[4], l4[5]]);
            let (_, idir, vtype) = icmp_mapping(pd.icmp_type);
            // The key's "ports": id on the requester's side.
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

/// pf_setup_pdesc for a fragment pf does not reassemble
/// (PF_VPROTO_FRAGMENT): the IP header alone.
pub fn parse_fragment(data: &[u8]) -> Result<Pd, Reason> {
    let ip = Ipv4Packet::new_checked(data).map_err(|_| Reason::Short)?;
    let hlen = ip.header_len() as usize;
    let tot = (ip.total_len() as usize).min(data.len());
    let mut pd = Pd::ip(ip.src(), ip.dst(), ip.protocol().0, ip.tos(), hlen, tot);
    pd.badopts = crate::ipopt::walk_header(ip.options(), pd.proto, ip.ttl(), pd.dst4())?;
    pd.frag = true;
    Ok(pd)
}

#[inline]
pub(super) fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

#[inline]
pub(super) fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

#[inline]
pub(super) fn be64(d: &[u8], at: usize) -> u64 {
    u64::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3], d[at + 4], d[at + 5], d[at + 6], d[at + 7]])
}

/// Bytes 12..20 of a TCP header as one big-endian word: data offset and
/// `th_x2` (bits 63..56), flags (55..48), window, checksum, urgent
/// pointer (15..0). The bits that show a segment `pf_normalize_tcp`
/// leaves alone whatever its other flags: `th_x2`, SYN, ACK and the
/// urgent pointer; and their values then: ACK set, the rest zero. (With
/// ACK set and SYN clear no flag combination is illegal or rewritten.)
pub(super) const TCP_PLAIN_MASK: u64 = 0x0f << 56 | ((TH_SYN | TH_ACK) as u64) << 48 | 0xffff;
pub(super) const TCP_PLAIN: u64 = (TH_ACK as u64) << 48;

/// `parse_pd` for the packets most traffic is made of: a 20-byte IPv4
/// header (no options), not a fragment, UDP, or TCP with ACK and without
/// SYN (no options to look at) that `pf_normalize_tcp` has nothing to do
/// with (IPv6: `parse_fast6`). `None`: anything else, or anything
/// `parse_pd` would reject; the caller then takes the full path, so both
/// give the same `Pd` for every packet this accepts. Inlined into the
/// batch loop: returned through memory a description costs the hook
/// several nanoseconds per packet (hence IPv6 is the caller's second
/// try, not a branch in here: two ways to the result cost IPv4 a copy).
#[inline(always)]
pub fn parse_fast(d: &[u8]) -> Option<Pd> {
    if d.len() < 20 || d[0] != 0x45 {
        return None;
    }
    let tot = be16(d, 2) as usize;
    if tot < 20 || tot > d.len() || be16(d, 6) & 0x3fff != 0 {
        return None;
    }
    let proto = d[9];
    let mut pd = Pd::ip(Ipv4Addr::from(be32(d, 12)), Ipv4Addr::from(be32(d, 16)), proto, d[1], 20, tot);
    if !fast_transport(&mut pd, &d[20..tot]) {
        return None;
    }
    Some(pd)
}

/// What the batch's first pass keeps of an IPv4 packet `parse_fast`
/// takes: its key words as the in hook sees them (`in_key_words`) and
/// its length, read straight off the headers (the addresses are one
/// 64-bit word, the ports one 32-bit word) with `parse_fast`'s checks,
/// so no description is written to memory and read back on the way to
/// the state (`fast4`). `None` for anything `parse_fast` leaves (then
/// IPv6's or the full parse).
///
/// Every packet it takes has 28 bytes at least within its total length
/// (the header and UDP's 8, or TCP's 20: `fast_l4`), so those are read
/// as one array (`FAST4_MIN`), a field without a bounds check of its
/// own; a shorter packet or total length is one `parse_fast` leaves too.
#[inline(always)]
pub fn fast_key4(d: &[u8]) -> Option<((u64, u64), u16)> {
    let h: &[u8; FAST4_MIN] = d.first_chunk()?;
    if h[0] != 0x45 {
        return None;
    }
    let tot = be16(h, 2) as usize;
    if tot < FAST4_MIN || tot > d.len() || be16(h, 6) & 0x3fff != 0 {
        return None;
    }
    let proto = h[9];
    fast_l4(proto, &d[20..tot])?;
    let ports = be32(h, 20) as u64;
    Some(((be64(h, 12), ports << 32 | (proto as u64) << 16), tot as u16))
}

/// The shortest IPv4 packet the fast parses take: a 20-byte header and
/// a UDP header (a TCP segment needs 20 more, `fast_l4`).
const FAST4_MIN: usize = 20 + softnet_wire::udp::HEADER_LEN;

/// `parse_fast` for IPv6 (and `parse_pd6`'s twin the same way): the
/// fixed header straight followed by UDP or TCP (what `walk_header6`
/// would walk in one step), no jumbogram. Out of line, for IPv4's batch
/// loop (`parse_fast6_inline` is IPv6's loop's).
#[inline(never)]
pub fn parse_fast6(d: &[u8]) -> Option<Pd> {
    parse_fast6_inline(d)
}

/// `parse_fast6` inline: in IPv6's instance of the batch loop.
#[inline(always)]
pub fn parse_fast6_inline(d: &[u8]) -> Option<Pd> {
    if d.len() < 40 || d[0] >> 4 != 6 {
        return None;
    }
    let tot = 40 + be16(d, 4) as usize;
    let proto = d[6];
    if tot > d.len() || (proto != PROTO_UDP && proto != PROTO_TCP) {
        return None;
    }
    let mut pd = Pd::ip(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, proto, 0, 40, tot);
    pd.af = Af::Inet6;
    pd.src = PfAddr::from_v6(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&d[8..24]).ok()?));
    pd.dst = PfAddr::from_v6(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&d[24..40]).ok()?));
    // The traffic class without its ECN bits, as parse_pd6.
    pd.tos = (d[0] << 4 | d[1] >> 4) & 0xfc;
    if !fast_transport(&mut pd, &d[40..tot]) {
        return None;
    }
    Some(pd)
}

/// The transport checks of the fast parses (`parse_fast`,
/// `parse_fast6`'s and `fast_key4`, so that they take the same packets):
/// a UDP datagram whose length field fits `l4` and covers its header
/// (RFC 768), or a TCP segment whose data offset covers its header and
/// fits `l4`, with the bits `TCP_PLAIN_MASK` looks at as `TCP_PLAIN`; and
/// a destination port other than 0 (pf_setup_pdesc: to port 0 is short;
/// the full path drops it). `Some`: taken, with a TCP segment's bytes
/// 12..20 as one word (0 for UDP). `None`: anything else, for the full
/// parse.
#[inline(always)]
fn fast_l4(proto: u8, l4: &[u8]) -> Option<u64> {
    // UDP's header, TCP's ports and sequence number: what is shorter is
    // neither (read as one array, no bounds check a field).
    let h: &[u8; softnet_wire::udp::HEADER_LEN] = l4.first_chunk()?;
    let w = match proto {
        PROTO_UDP => {
            let ulen = be16(h, 4) as usize;
            if ulen > l4.len() || ulen < softnet_wire::udp::HEADER_LEN {
                return None;
            }
            0
        }
        PROTO_TCP => {
            let t: &[u8; softnet_wire::tcp::MIN_HEADER_LEN] = l4.first_chunk()?;
            let w = be64(t, 12);
            let off = (w >> 60) as usize * 4;
            // One compare for SYN (options to read), the reserved bits,
            // and the flags and urgent pointer pf_normalize_tcp looks at.
            if off < softnet_wire::tcp::MIN_HEADER_LEN || off > l4.len() || w & TCP_PLAIN_MASK != TCP_PLAIN {
                return None;
            }
            w
        }
        _ => return None,
    };
    (be16(h, 2) != 0).then_some(w)
}

/// The transport part of `parse_fast` (both families): whether it takes
/// the packet (`fast_l4`), with its ports and a TCP segment's fields.
#[inline(always)]
fn fast_transport(pd: &mut Pd, l4: &[u8]) -> bool {
    let Some(w) = fast_l4(pd.proto, l4) else { return false };
    if pd.proto == PROTO_TCP {
        pd.tcp = TcpSeg {
            flags: (w >> 48) as u8,
            seq: be32(l4, 4),
            ack: be32(l4, 8),
            win: (w >> 32) as u16,
            // the data after the header and its options (the offset
            // `fast_l4` checked against the length)
            len: (l4.len() - (w >> 60) as usize * 4) as u32,
            wscale: 0,
        };
    }
    pd.sport = be16(l4, 0);
    pd.dport = be16(l4, 2);
    true
}

/// `pkt_key(pd, dir).words()`, without the trip through memory.
#[inline]
pub(super) fn pkt_key_words(pd: &Pd, dir: Direction) -> (u64, u64) {
    if pd.af == Af::Inet6 {
        return pkt_key_words6(pd, dir);
    }
    let (s, d) = (pd.src.0[0] as u64, pd.dst.0[0] as u64);
    let (sp, dp) = (pd.sport as u64, pd.dport as u64);
    let proto = (pd.proto as u64) << 16;
    if dir == Direction::In {
        (s << 32 | d, sp << 48 | dp << 32 | proto)
    } else {
        (d << 32 | s, dp << 48 | sp << 32 | proto)
    }
}

/// `pkt_key_words` of an IPv6 packet: its addresses' ids (`v6ids`) where
/// an IPv4 key has the addresses, and `KEY_INET6` (`StateKey::words`).
#[inline(never)]
fn pkt_key_words6(pd: &Pd, dir: Direction) -> (u64, u64) {
    pkt_key_words6_memo(pd, dir, &mut crate::state::v6ids::Memo::default())
}

/// `pkt_key_words6` with the ids looked up through a batch's `memo`.
#[inline(always)]
fn pkt_key_words6_memo(pd: &Pd, dir: Direction, memo: &mut crate::state::v6ids::Memo) -> (u64, u64) {
    use crate::state::KEY_INET6;
    let (s, d) = (memo.lookup(0, pd.src) as u64, memo.lookup(1, pd.dst) as u64);
    let (sp, dp) = (pd.sport as u64, pd.dport as u64);
    let proto = (pd.proto as u64) << 16 | KEY_INET6;
    if dir == Direction::In {
        (s << 32 | d, sp << 48 | dp << 32 | proto)
    } else {
        (d << 32 | s, dp << 48 | sp << 32 | proto)
    }
}

/// `pkt_key_words` of an IPv6 packet whose link names a state (`linked`:
/// that state's key words): the state's address ids are taken when the id
/// mirror says they name the packet's addresses (`v6ids::names`, a
/// seqlocked read each), else looked up as `pkt_key_words6` does. Either
/// way the words are the packet's own: an address has one id while any
/// state holds it.
#[inline(always)]
pub(super) fn linked_key_words6(pd: &Pd, dir: Direction, linked: Option<(u64, u64)>) -> (u64, u64) {
    use crate::state::{v6ids, KEY_INET6};
    let (hi, lo) = if dir == Direction::In { (pd.src, pd.dst) } else { (pd.dst, pd.src) };
    let k0 = match linked {
        Some((k0, _)) if v6ids::names((k0 >> 32) as u32, hi) && v6ids::names(k0 as u32, lo) => k0,
        _ => return pkt_key_words6(pd, dir),
    };
    let (sp, dp) = (pd.sport as u64, pd.dport as u64);
    let proto = (pd.proto as u64) << 16 | KEY_INET6;
    if dir == Direction::In {
        (k0, sp << 48 | dp << 32 | proto)
    } else {
        (k0, dp << 48 | sp << 32 | proto)
    }
}

/// The in hook's key words for a packet `parse_fast` took (`pkt`: the
/// packet, for an IPv6 one's note: `in_key_words6`).
#[inline]
pub(crate) fn in_key_words(pd: &Pd, pkt: &mut Option<PacketBuf>) -> (u64, u64) {
    if pd.af == Af::Inet6 {
        return in_key_words6(pd, pkt);
    }
    pkt_key_words(pd, Direction::In)
}

/// `in_key_words` of an IPv6 packet: its addresses' ids are looked up
/// (`v6ids`) once for the packet, and when both have one they are noted
/// in it with the addresses (`PacketData::pf_note6`, `mflags::PF_NOTE6`),
/// so that the state tests of pf in and of pf out take them from there
/// (`noted_key_words6`) instead of checking or looking them up again.
#[inline(never)]
fn in_key_words6(pd: &Pd, pkt: &mut Option<PacketBuf>) -> (u64, u64) {
    in_key_words6_memo(pd, pkt, &mut crate::state::v6ids::Memo::default())
}

/// `in_key_words6` with the ids looked up through a batch's `memo`
/// (IPv6's batch loop, `batch::chunk6`: a chunk's packets share one
/// memo).
#[inline(always)]
pub(crate) fn in_key_words6_memo(
    pd: &Pd,
    pkt: &mut Option<PacketBuf>,
    memo: &mut crate::state::v6ids::Memo,
) -> (u64, u64) {
    let k = pkt_key_words6_memo(pd, Direction::In, memo);
    if let Some(p) = pkt {
        let ids = k.0;
        if ids >> 32 != crate::state::v6ids::NO_ID as u64 && ids as u32 != crate::state::v6ids::NO_ID {
            p.pf_note6 = PfNote6 { src: pd.src.octets(), dst: pd.dst.octets(), ids };
            p.meta.flags |= mflags::PF_NOTE6;
        } else {
            p.meta.flags &= !mflags::PF_NOTE6;
        }
    }
    k
}

/// `pkt_key_words` of an IPv6 packet from the ids pf in noted in it
/// (`in_key_words6`), when the packet's addresses are still the ones the
/// note names; `None` without a note or for other addresses. The ids are
/// exact: pf in looked them up for these addresses, and an id freed since
/// is not handed to another address before `v6ids::REUSE_DELAY` others
/// (the same guarantee a lookup has between its read and its use).
#[inline(always)]
pub(super) fn noted_key_words6(pd: &Pd, dir: Direction, pkt: &PacketBuf) -> Option<(u64, u64)> {
    use crate::state::KEY_INET6;
    let n = &pkt.pf_note6;
    if pkt.meta.flags & mflags::PF_NOTE6 == 0 || n.src != pd.src.octets() || n.dst != pd.dst.octets() {
        return None;
    }
    let (sp, dp) = (pd.sport as u64, pd.dport as u64);
    let proto = (pd.proto as u64) << 16 | KEY_INET6;
    // The note holds the in hook's first word (source id, destination
    // id); pf out's has the two halves the other way round.
    Some(if dir == Direction::In {
        (n.ids, sp << 48 | dp << 32 | proto)
    } else {
        (n.ids.rotate_left(32), dp << 48 | sp << 32 | proto)
    })
}

#[inline]
pub(super) fn pkt_key(pd: &Pd, dir: Direction) -> StateKey {
    let (s, d) = if dir == Direction::In { (0, 1) } else { (1, 0) };
    let mut k = StateKey { proto: pd.proto, af: pd.af, ..StateKey::empty() };
    k.addr[s] = pd.src;
    k.addr[d] = pd.dst;
    k.port[s] = pd.sport;
    k.port[d] = pd.dport;
    k
}

pub(super) fn dir_code(dir: Direction) -> u8 {
    match dir {
        Direction::In => DIR_IN,
        Direction::Out => DIR_OUT,
    }
}

/// pf_norm.c `pf_normalize_tcp` on a TCP segment (header checked by
/// `parse_pd`): `None` drops it (SYN with RST; neither SYN, ACK nor RST;
/// FIN, PUSH or URG without ACK). Otherwise FIN is cleared on a SYN, the
/// reserved bits (`th_x2`) are cleared, and so is the urgent pointer when
/// URG is not set, each with an RFC 1624 update of the checksum; the
/// flags after that are returned.
pub(super) fn normalize_tcp(seg: &mut [u8]) -> Option<u8> {
    const TH_PUSH: u8 = TcpFlags::PSH.bits();
    const TH_URG: u8 = TcpFlags::URG.bits();
    let mut t = TcpPacket::new_unchecked(seg);
    let old_flags = t.flags().bits();
    let mut flags = old_flags;
    if flags & TH_SYN != 0 {
        if flags & TH_RST != 0 {
            return None;
        }
        flags &= !TH_FIN;
    } else if flags & (TH_ACK | TH_RST) == 0 {
        return None;
    }
    if flags & TH_ACK == 0 && flags & (TH_FIN | TH_PUSH | TH_URG) != 0 {
        return None;
    }
    let old_sum = t.checksum();
    let mut sum = old_sum;
    let x2 = t.reserved();
    if flags != old_flags || x2 != 0 {
        let hlen = t.header_len();
        // Data offset, th_x2 and flags are one 16-bit word of the sum.
        let word = |x2: u8, f: u8| u16::from_be_bytes([(hlen / 4) << 4 | x2, f]);
        sum = checksum::update16(sum, word(x2, old_flags), word(0, flags));
        t.set_header_len(hlen);
        t.set_flags(TcpFlags::from_bits(flags));
    }
    let urp = t.urgent();
    if flags & TH_URG == 0 && urp != 0 {
        sum = checksum::update16(sum, urp, 0);
        t.set_urgent(0);
    }
    if sum != old_sum {
        t.set_checksum(sum);
    }
    Some(flags)
}
