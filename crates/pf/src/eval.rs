//! pf_test: one packet through normalization (fragment reassembly), the
//! state table, and the rules.

use std::net::Ipv4Addr;

use softnet_core::filter::{BufferSource, Decision, Direction, FilterReplies};
use softnet_core::iface::Interface;
use softnet_core::packet::{mflags, PacketBuf};
use softnet_core::time::Instant;
use softnet_wire::checksum;
use softnet_wire::icmpv4::{self, Icmpv4Packet};
use softnet_wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
use softnet_wire::udp::UdpPacket;

use crate::compile::{
    keeps_state, tidx, CRule, CompiledRuleset, EndpointMatch, HOT_DST_SLOW, HOT_IFM, HOT_INET6, HOT_REST, HOT_SRC_SLOW,
    SKIP_AF, SKIP_DIR, SKIP_DST_ADDR, SKIP_DST_PORT, SKIP_IFP, SKIP_PROTO, SKIP_SRC_ADDR, SKIP_SRC_PORT,
};
use crate::filter::PfInner;
use crate::frag::{FragDrop, FragResult};
use crate::model::{Action, BlockAction, Limit, StateMode};
use crate::names::Timeout;
use crate::pflog::{self, LogMeta};
use crate::state::{
    sflags, tcps, udps, Probe, StateData, StateKey, StateView, DIR_IN, DIR_OUT, LOG_MATCH_MAX, NO_RULE,
};
use crate::tcp_track::{self, TcpSeg, Track, TH_ACK, TH_FIN, TH_RST, TH_SYN};

/// pf's `PFRES_*` reasons, the `-si` counters, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    Match = 0,
    BadOffset,
    Fragment,
    Short,
    Normalize,
    Memory,
    BadTimestamp,
    Congestion,
    IpOption,
    ProtoCksum,
    StateMismatch,
    StateInsert,
    StateLimit,
    SrcLimit,
    Synproxy,
    Translate,
    NoRoute,
}

pub const REASON_COUNT: usize = 17;
pub const REASON_NAMES: [&str; REASON_COUNT] = [
    "match",
    "bad-offset",
    "fragment",
    "short",
    "normalize",
    "memory",
    "bad-timestamp",
    "congestion",
    "ip-option",
    "proto-cksum",
    "state-mismatch",
    "state-insert",
    "state-limit",
    "src-limit",
    "synproxy",
    "translate",
    "no-route",
];

/// pf's limit counters (`LCNT_*`, `pfctl -si -v` "Limit Counters").
pub const LCNT_STATES: usize = 0;
pub const LCNT_COUNT: usize = 10;
pub const LCNT_NAMES: [&str; LCNT_COUNT] = [
    "max states per rule",
    "max-src-states",
    "max-src-nodes",
    "max-src-conn",
    "max-src-conn-rate",
    "overload table insertion",
    "overload flush states",
    "synfloods detected",
    "syncookies sent",
    "syncookies validated",
];

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMP: u8 = 1;
const DEFAULT_TTL: u8 = 64;

/// The packet description (pf's `pf_pdesc`).
#[derive(Debug, Clone, Copy)]
pub struct Pd {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub tos: u8,
    pub hlen: usize,
    pub tot_len: usize,
    /// IP options (`pf_walk_header`: padding alone counts, an IGMP
    /// router alert does not).
    pub badopts: bool,
    /// Ports for TCP/UDP; for ICMP the virtual id/type in key order.
    pub sport: u16,
    pub dport: u16,
    pub tcp: TcpSeg,
    pub tcp_hlen: usize,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub icmp_id: u16,
}

impl Pd {
    /// The description of an IP header alone: no transport fields yet.
    fn ip(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, tos: u8, hlen: usize, tot_len: usize) -> Pd {
        Pd {
            src,
            dst,
            proto,
            tos,
            hlen,
            tot_len,
            badopts: false,
            sport: 0,
            dport: 0,
            tcp: TcpSeg::default(),
            tcp_hlen: 0,
            icmp_type: 0,
            icmp_code: 0,
            icmp_id: 0,
        }
    }
}

/// `pf_icmp_mapping`: (is an error, dir of a query: In for requests, the
/// virtual type that keys the state).
fn icmp_mapping(ty: u8) -> (bool, Direction, u8) {
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
    pd.badopts = crate::ipopt::walk_header(ip.options(), pd.proto, ip.ttl(), pd.dst)?;
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
            pd.tcp_hlen = off;
            let flags = t.flags().bits();
            let mut wscale = None;
            if flags & TH_SYN != 0 {
                for o in t.option_iter() {
                    if let Ok(softnet_wire::tcp::TcpOption::WindowScale(s)) = o {
                        wscale = Some(s.min(14));
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
            pd.icmp_id = u16::from_be_bytes([l4[4], l4[5]]);
            let (_, idir, vtype) = icmp_mapping(pd.icmp_type);
            // The key's "ports": id on the requester's side.
            if idir == Direction::In {
                pd.sport = pd.icmp_id;
                pd.dport = vtype as u16;
            } else {
                pd.sport = vtype as u16;
                pd.dport = pd.icmp_id;
            }
        }
        _ => {}
    }
    Ok(pd)
}

#[inline]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

#[inline]
fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

#[inline]
fn be64(d: &[u8], at: usize) -> u64 {
    u64::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3], d[at + 4], d[at + 5], d[at + 6], d[at + 7]])
}

/// Bytes 12..20 of a TCP header as one big-endian word: data offset and
/// `th_x2` (bits 63..56), flags (55..48), window, checksum, urgent
/// pointer (15..0). The bits that show a segment `pf_normalize_tcp`
/// leaves alone whatever its other flags: `th_x2`, SYN, ACK and the
/// urgent pointer; and their values then: ACK set, the rest zero. (With
/// ACK set and SYN clear no flag combination is illegal or rewritten.)
const TCP_PLAIN_MASK: u64 = 0x0f << 56 | ((TH_SYN | TH_ACK) as u64) << 48 | 0xffff;
const TCP_PLAIN: u64 = (TH_ACK as u64) << 48;

/// `parse_pd` for the packets most traffic is made of: a 20-byte IPv4
/// header (no options), not a fragment, UDP, or TCP with ACK and without
/// SYN (no options to look at) that `pf_normalize_tcp` has nothing to do
/// with. `None`: anything else, or anything `parse_pd` would reject; the
/// caller then takes the full path, so both give the same `Pd` for every
/// packet this accepts.
#[inline]
pub fn parse_fast(d: &[u8]) -> Option<Pd> {
    if d.len() < 20 || d[0] != 0x45 {
        return None;
    }
    let tot = be16(d, 2) as usize;
    if tot < 20 || tot > d.len() || be16(d, 6) & 0x3fff != 0 {
        return None;
    }
    let proto = d[9];
    let l4 = &d[20..tot];
    let mut pd = Pd::ip(Ipv4Addr::from(be32(d, 12)), Ipv4Addr::from(be32(d, 16)), proto, d[1], 20, tot);
    match proto {
        PROTO_UDP => {
            if l4.len() < softnet_wire::udp::HEADER_LEN {
                return None;
            }
            let ulen = be16(l4, 4) as usize;
            if ulen > l4.len() || ulen < softnet_wire::udp::HEADER_LEN {
                return None;
            }
        }
        PROTO_TCP => {
            if l4.len() < softnet_wire::tcp::MIN_HEADER_LEN {
                return None;
            }
            let w = be64(l4, 12);
            let off = (w >> 60) as usize * 4;
            // One compare for SYN (options to read), the reserved bits,
            // and the flags and urgent pointer pf_normalize_tcp looks at.
            if off < softnet_wire::tcp::MIN_HEADER_LEN || off > l4.len() || w & TCP_PLAIN_MASK != TCP_PLAIN {
                return None;
            }
            pd.tcp_hlen = off;
            pd.tcp = TcpSeg {
                flags: (w >> 48) as u8,
                seq: be32(l4, 4),
                ack: be32(l4, 8),
                win: (w >> 32) as u16,
                len: (l4.len() - off) as u32,
                wscale: None,
            };
        }
        _ => return None,
    }
    pd.sport = be16(l4, 0);
    pd.dport = be16(l4, 2);
    // pf_setup_pdesc: to port 0 is short; the full path drops it.
    if pd.dport == 0 {
        return None;
    }
    Some(pd)
}

/// `pkt_key(pd, dir).words()`, without the trip through memory.
#[inline]
fn pkt_key_words(pd: &Pd, dir: Direction) -> (u64, u64) {
    let (s, d) = (u32::from(pd.src) as u64, u32::from(pd.dst) as u64);
    let (sp, dp) = (pd.sport as u64, pd.dport as u64);
    let proto = (pd.proto as u64) << 16;
    if dir == Direction::In {
        (s << 32 | d, sp << 48 | dp << 32 | proto)
    } else {
        (d << 32 | s, dp << 48 | sp << 32 | proto)
    }
}

/// The in hook's key words for a packet `parse_fast` took.
#[inline]
pub(crate) fn in_key_words(pd: &Pd) -> (u64, u64) {
    pkt_key_words(pd, Direction::In)
}

#[inline]
fn pkt_key(pd: &Pd, dir: Direction) -> StateKey {
    let (s, d) = if dir == Direction::In { (0, 1) } else { (1, 0) };
    let mut k = StateKey { proto: pd.proto, ..StateKey::empty() };
    k.addr[s] = pd.src;
    k.addr[d] = pd.dst;
    k.port[s] = pd.sport;
    k.port[d] = pd.dport;
    k
}

fn dir_code(dir: Direction) -> u8 {
    match dir {
        Direction::In => DIR_IN,
        Direction::Out => DIR_OUT,
    }
}

/// Everything one `test` call works with.
pub struct Cx<'a> {
    pub pf: &'a PfInner,
    pub rs: &'a CompiledRuleset,
    pub worker: usize,
    pub now: Instant,
    pub dir: Direction,
    pub ifp: &'a Interface,
}

impl Cx<'_> {
    /// What if-bound states record of the packet's interface: its
    /// generation, which (unlike its index, reused by an interface created
    /// later) names this interface only, so a state bound to a destroyed
    /// interface never matches on a new one.
    #[inline]
    fn kif(&self) -> u32 {
        self.ifp.generation()
    }

    fn count(&self, r: Reason) {
        self.pf.counters.get(self.worker).reasons[r as usize].inc();
    }

    fn log(&self, rule: Option<u32>, action: u8, reason: Reason, pd: &Pd, data: &[u8]) {
        if let Some(q) = self.pf.pflog.load().as_ref() {
            let m = LogMeta {
                action,
                reason: reason as u8,
                ifname: self.ifp.name(),
                rulenr: rule,
                dir: if self.dir == Direction::In { pflog::PF_IN } else { pflog::PF_OUT },
                src: pd.src,
                dst: pd.dst,
                sport: if pd.proto == PROTO_ICMP { 0 } else { pd.sport },
                dport: if pd.proto == PROTO_ICMP { 0 } else { pd.dport },
            };
            q.push(&m, data, self.now.as_nanos());
        }
    }

    /// Finds the state for `key` usable on this interface and runs `f` on it
    /// (and its slot index) under its lock. `None` when no state matches.
    #[inline]
    fn with_state<R>(&self, key: (u64, u64), f: impl FnOnce(u32, &mut StateData) -> R) -> Option<R> {
        self.pf.counters.get(self.worker).searches.inc();
        self.pf.states.with_state(key, self.kif(), f)
    }

    /// `with_state`, by the packet's reverse link first; `link` is then
    /// updated as `relink` says.
    #[inline]
    fn with_state_linked<R>(
        &self,
        key: (u64, u64),
        link: &mut u64,
        f: impl FnOnce(u32, &mut StateData) -> R,
    ) -> Option<R> {
        self.pf.counters.get(self.worker).searches.inc();
        let (idx, (rev, r)) =
            self.pf
                .states
                .with_state_linked(self.link_hint(*link), key, self.kif(), |idx, rev, st| (rev, f(idx, st)))?;
        self.relink(link, idx, rev);
        Some(r)
    }

    /// The slot to try first (slot + 1, 0: none), the high half of `link`:
    /// on the out hook the reverse link the in hook left in the packet
    /// (`PacketMeta::pf_link`); on the in hook the batch prefetch's guess.
    #[inline]
    fn link_hint(&self, link: u64) -> u32 {
        (link >> 32) as u32
    }

    /// After the state in slot `idx` (reverse link `rev`) matched: on the
    /// in hook, the packet's link for the out hook (this state and its
    /// reverse link); on the out hook, the inbound state's reverse link is
    /// pointed at this state when it pointed elsewhere (pf.c
    /// `pf_state_key_link_reverse`).
    #[inline]
    fn relink(&self, link: &mut u64, idx: u32, rev: u32) {
        match self.dir {
            Direction::In => *link = (rev as u64) << 32 | (idx as u64 + 1),
            Direction::Out => {
                let (in_slot, hint) = (*link as u32, (*link >> 32) as u32);
                if in_slot != 0 && hint != idx + 1 {
                    self.pf.states.set_rev(in_slot - 1, idx + 1);
                    *link = (idx as u64 + 1) << 32 | in_slot as u64;
                }
            }
        }
    }

    /// The lock-free look at the state for the packet, by the packet's
    /// reverse link first (both counted as a search, as pf_find_state).
    #[inline(always)]
    fn probe_linked(&self, pd: &Pd, link: u64) -> Probe {
        let hint = self.link_hint(link);
        if hint != 0 {
            if let Some(v) = self.pf.states.probe_linked(hint, pkt_key_words(pd, self.dir), self.kif()) {
                self.pf.counters.get(self.worker).searches.inc();
                return Probe::Hit(v);
            }
        }
        self.probe(pd)
    }

    /// The lock-free look at the state for the packet (counted as a
    /// search). The key goes as words built in registers: a `StateKey`
    /// written field by field and read back whole stalls store forwarding.
    #[inline(never)]
    fn probe(&self, pd: &Pd) -> Probe {
        self.pf.counters.get(self.worker).searches.inc();
        self.pf.states.probe(pkt_key_words(pd, self.dir), self.kif())
    }
}

/// What a state that passes a packet gives it.
struct Passed {
    /// (ruleset generation, number) of the rule that made the state.
    rule: Option<(u32, u32)>,
    /// The state's `sflags::LOG_ALL | sflags::LOG_MATCHES_ALL` bits.
    log: u8,
    /// The state's slot (for its `log_match` rules).
    slot: u32,
    tag: u16,
    rtable: Option<u16>,
    allow_opts: bool,
}

/// What the state step decided.
enum StateVerdict {
    /// No state: evaluate the rules.
    NoState,
    Pass(Passed),
    Drop(Option<Reason>),
}

/// The packet in `slot`, in place: `fast` is what `parse_fast` made of
/// it; `hint` is a guess at its state on the in hook, slot + 1 of a state
/// that held the packet's key when the batch was prefetched (0: none),
/// verified in full before use as a reverse link is
/// (`StateTable::probe_linked`). A fragment kept for reassembly leaves
/// the slot empty (`Consumed`); the fragment completing a datagram leaves
/// the whole datagram there.
#[inline]
pub fn test_parsed(
    cx: &Cx,
    fast: Option<&Pd>,
    slot: &mut Option<PacketBuf>,
    hint: u32,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) -> Decision {
    let Some(pkt) = slot.as_mut() else { return Decision::Consumed };
    // The common case (no options, not a fragment, UDP or non-SYN TCP)
    // parsed in a few loads; anything else takes the full parse.
    if let Some(pd) = fast {
        return test_pd(cx, pd, pkt, hint, bufs, replies);
    }
    // Normalization: reassemble fragments first.
    let is_frag = {
        let ip = Ipv4Packet::new_unchecked(pkt.data());
        pkt.len() >= 20 && ip.is_fragment()
    };
    if is_frag {
        let limit = cx.rs.opts.limit(Limit::Frags) as usize;
        let frag = slot.take().expect("checked above");
        match cx.pf.frags.input(frag, cx.now.as_nanos(), limit, bufs) {
            FragResult::Kept => return Decision::Consumed,
            FragResult::Done(p) => *slot = Some(p),
            FragResult::Drop(p, why) => {
                let reason = match why {
                    FragDrop::Bad | FragDrop::Duplicate => Reason::Fragment,
                    FragDrop::TooBig => Reason::Short,
                    FragDrop::Memory => Reason::Memory,
                };
                cx.count(reason);
                log_forced(cx, reason, p.data());
                *slot = Some(p);
                return Decision::Drop;
            }
        }
    }
    let pkt = slot.as_mut().expect("put back above");
    let mut pd = match parse_pd(pkt.data()) {
        Ok(pd) => pd,
        Err(r) => {
            cx.count(r);
            log_forced(cx, r, pkt.data());
            return Decision::Drop;
        }
    };
    // pf_test runs pf_normalize_tcp on every TCP segment, scrub rule or
    // not, before the state lookup; `parse_fast` only takes segments it
    // would leave alone. Its drops are counted, not logged: the reason
    // is pf_normalize_tcp's own and pf_test does not force a log record.
    if pd.proto == PROTO_TCP {
        let d = pkt.data_mut();
        match normalize_tcp(&mut d[pd.hlen..pd.tot_len]) {
            Some(flags) => pd.tcp.flags = flags,
            None => {
                cx.count(Reason::Normalize);
                return Decision::Drop;
            }
        }
    }
    test_pd(cx, &pd, pkt, 0, bufs, replies)
}

/// pf_norm.c `pf_normalize_tcp` on a TCP segment (header checked by
/// `parse_pd`): `None` drops it (SYN with RST; neither SYN, ACK nor RST;
/// FIN, PUSH or URG without ACK). Otherwise FIN is cleared on a SYN, the
/// reserved bits (`th_x2`) are cleared, and so is the urgent pointer when
/// URG is not set, each with an RFC 1624 update of the checksum; the
/// flags after that are returned.
fn normalize_tcp(seg: &mut [u8]) -> Option<u8> {
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

/// States, then rules, for a parsed packet.
#[inline]
fn test_pd(
    cx: &Cx,
    pd: &Pd,
    pkt: &mut PacketBuf,
    hint: u32,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) -> Decision {
    // The link between this packet's inbound and outbound states: set at
    // pf in, followed (and repaired) at pf out. On the in hook it starts
    // as the batch prefetch's guess (high half), replaced by what matched.
    let inbound = cx.dir == Direction::In;
    let mut link = if inbound { (hint as u64) << 32 } else { pkt.meta.pf_link };
    let sv = match pd.proto {
        PROTO_TCP => test_state_tcp(cx, pd, pkt, &mut link, bufs, replies),
        PROTO_ICMP => test_state_icmp(cx, pd, pkt.data(), &mut link),
        _ => test_state_other(cx, pd, &mut link),
    };
    if inbound && link as u32 == 0 {
        // No inbound state matched: nothing for pf out to follow.
        link = 0;
    }
    pkt.meta.pf_link = link;
    match sv {
        StateVerdict::Pass(p) => state_passed(cx, pd, pkt, &p),
        StateVerdict::Drop(reason) => {
            if let Some(r) = reason {
                cx.count(r);
            }
            Decision::Drop
        }
        StateVerdict::NoState => test_rule(cx, pd, pkt, bufs, replies),
    }
}

/// A packet its state passes: the state's rule counts it (while that
/// rule's ruleset is loaded), IP options are refused unless the rule
/// allowed them, the state's tag and routing table go with the packet,
/// `log (all)` logs it.
#[inline(always)]
fn state_passed(cx: &Cx, pd: &Pd, pkt: &mut PacketBuf, p: &Passed) -> Decision {
    let Passed { rule, log, slot, tag, rtable, allow_opts } = *p;
    if let Some((gen, nr)) = rule {
        if gen == cx.rs.gen {
            if let Some(c) = cx.rs.counters.get(cx.worker).rule(nr as usize) {
                c.count(cx.dir, pd.tot_len as u64);
            }
        }
    }
    if pd.badopts && !allow_opts {
        cx.count(Reason::IpOption);
        // PF_LOG_FORCE: logged whether or not the state logs.
        log_state_packet(cx, rule, log, true, slot, Reason::IpOption, pd, pkt);
        return Decision::Drop;
    }
    if tag != 0 {
        pkt.meta.pf_tag = tag;
    }
    if let Some(t) = rtable {
        pkt.meta.rtable = t;
    }
    if log != 0 {
        log_state_packet(cx, rule, log, false, slot, Reason::Match, pd, pkt);
    }
    Decision::Pass
}

/// The common case whole and inline in the hook's loop, so that the
/// state's view and the verdict stay in registers (returned through
/// memory from calls they cost a store-forwarding stall per packet): a
/// UDP or other non-TCP, non-ICMP packet `parse_fast` took, whose state
/// the packet's link names (pf out: the reverse link pf in left; pf in:
/// `hint`, the batch's guess) and which changes neither the peer states
/// nor the timeout. `None`: anything else, for `test_parsed` (which then
/// decides it from the start).
#[inline(always)]
pub fn test_established(cx: &Cx, pd: &Pd, pkt: &mut PacketBuf, hint: u32) -> Option<Decision> {
    if pd.proto == PROTO_TCP || pd.proto == PROTO_ICMP {
        return None;
    }
    let mut link = if cx.dir == Direction::In { (hint as u64) << 32 } else { pkt.meta.pf_link };
    let v = cx.pf.states.probe_linked(cx.link_hint(link), pkt_key_words(pd, cx.dir), cx.kif())?;
    let fwd = v.direction == dir_code(cx.dir);
    if !other_steady(&v, fwd, pd.proto == PROTO_UDP) {
        return None;
    }
    cx.pf.counters.get(cx.worker).searches.inc();
    cx.pf.states.touch(v.idx, fwd, pd.tot_len as u64, cx.now.as_nanos());
    cx.relink(&mut link, v.idx, v.rev);
    pkt.meta.pf_link = link;
    Some(state_passed(cx, pd, pkt, &view_passed(&v, fwd)))
}

/// The state bits that have its packets logged.
const STATE_LOG: u8 = sflags::LOG_ALL | sflags::LOG_MATCHES_ALL;

fn state_pass(st: &StateData, slot: u32, fwd: bool) -> StateVerdict {
    StateVerdict::Pass(Passed {
        rule: Some((st.ruleset_gen, st.rule_nr)),
        log: st.flags & STATE_LOG,
        slot,
        tag: st.tag,
        rtable: if fwd && st.rtable >= 0 { Some(st.rtable as u16) } else { None },
        allow_opts: st.flags & sflags::ALLOW_OPTS != 0,
    })
}

fn view_pass(v: &StateView, fwd: bool) -> StateVerdict {
    StateVerdict::Pass(view_passed(v, fwd))
}

#[inline(always)]
fn view_passed(v: &StateView, fwd: bool) -> Passed {
    Passed {
        rule: Some((v.ruleset_gen, v.rule_nr)),
        log: v.flags & STATE_LOG,
        slot: v.idx,
        tag: v.tag,
        rtable: if fwd && v.rtable >= 0 { Some(v.rtable as u16) } else { None },
        allow_opts: v.flags & sflags::ALLOW_OPTS != 0,
    }
}

fn account(st: &mut StateData, fwd: bool, bytes: usize) {
    let i = if fwd { 0 } else { 1 };
    st.packets[i] += 1;
    st.bytes[i] += bytes as u64;
}

fn set_timeout(st: &mut StateData, now: Instant, t: Timeout) {
    st.expire = now.as_nanos();
    st.timeout = tidx(t) as u8;
}

enum TcpOutcome {
    Pass(StateVerdict, Option<(u32, u32)>),
    Drop(Option<Reason>, Option<TcpReply>),
    Reuse,
}

struct TcpReply {
    seq: u32,
    ack: u32,
    flags: u8,
}

fn test_state_tcp(
    cx: &Cx,
    pd: &Pd,
    pkt: &mut PacketBuf,
    link: &mut u64,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) -> StateVerdict {
    let key = pkt_key_words(pd, cx.dir);
    let dirc = dir_code(cx.dir);
    let seg = pd.tcp;
    let pf = cx.pf;
    let now = cx.now;
    let out = cx.with_state_linked(key, link, |slot, st| {
        let fwd = st.direction == dirc;
        let (src, dst) = if fwd { (st.src, st.dst) } else { (st.dst, st.src) };
        if seg.flags & (TH_SYN | TH_ACK) == TH_SYN {
            if dst.state >= tcps::FIN_WAIT_2 && src.state >= tcps::FIN_WAIT_2 {
                // State reuse: the old connection is over, a new one starts.
                st.timeout = crate::state::TIMEOUT_PURGE;
                return TcpOutcome::Reuse;
            } else if dst.state >= tcps::ESTABLISHED && src.state >= tcps::ESTABLISHED {
                // SYN on an established connection (a rebooted peer):
                // answer with a challenge ACK on behalf of the destination.
                return TcpOutcome::Drop(None, Some(TcpReply { seq: dst.seqlo, ack: src.seqlo, flags: TH_ACK }));
            }
        }
        if tcp_track::is_sloppy(st) {
            let t = tcp_track::track_sloppy(st, fwd, &seg);
            set_timeout(st, now, t);
            account(st, fwd, pd.tot_len);
            return TcpOutcome::Pass(state_pass(st, slot, fwd), None);
        }
        let (track, t) = tcp_track::track_full(st, fwd, &seg, || pf.iss(pd, now));
        match track {
            Track::Pass { rewrite } => {
                if let Some(t) = t {
                    set_timeout(st, now, t);
                }
                account(st, fwd, pd.tot_len);
                TcpOutcome::Pass(state_pass(st, slot, fwd), rewrite)
            }
            Track::Drop { rst } => {
                TcpOutcome::Drop(Some(Reason::StateMismatch), rst.map(|seq| TcpReply { seq, ack: 0, flags: TH_RST }))
            }
        }
    });
    match out {
        None | Some(TcpOutcome::Reuse) => StateVerdict::NoState,
        Some(TcpOutcome::Pass(v, rewrite)) => {
            if let Some((seq, ack)) = rewrite {
                patch_seq_ack(pkt, pd.hlen, seq, ack);
            }
            v
        }
        Some(TcpOutcome::Drop(reason, reply)) => {
            if let Some(r) = reply {
                if let Some(p) =
                    build_tcp(bufs, pd.dst, pd.src, pd.dport, pd.sport, r.seq, r.ack, r.flags, 0, DEFAULT_TTL)
                {
                    replies.push(p);
                }
            }
            StateVerdict::Drop(reason)
        }
    }
}

/// Rewrites a TCP segment's sequence and acknowledgment numbers with
/// incremental checksum updates (RFC 1624).
fn patch_seq_ack(pkt: &mut PacketBuf, hlen: usize, seq: u32, ack: u32) {
    let d = &mut pkt.data_mut()[hlen..];
    let mut t = TcpPacket::new_unchecked(d);
    let mut c = t.checksum();
    c = checksum::update32(c, t.seq_number(), seq);
    c = checksum::update32(c, t.ack_number(), ack);
    t.set_seq_number(seq);
    t.set_ack_number(ack);
    t.set_checksum(c);
}

/// UDP and other protocols' peer states and timeout after a packet from
/// `src` toward `dst` (pf_test_state, the non-TCP, non-ICMP part).
#[inline]
fn other_step(udp: bool, src: &mut u8, dst: &mut u8) -> Timeout {
    if *src < udps::SINGLE {
        *src = udps::SINGLE;
    }
    if *dst == udps::SINGLE {
        *dst = udps::MULTIPLE;
    }
    let multiple = *src == udps::MULTIPLE && *dst == udps::MULTIPLE;
    match (udp, multiple) {
        (true, true) => Timeout::UdpMultiple,
        (true, false) => Timeout::UdpSingle,
        (false, true) => Timeout::OtherMultiple,
        (false, false) => Timeout::OtherSingle,
    }
}

/// Whether a packet (`fwd`: in the state's direction) leaves the state
/// the view shows as it is: peer states and timeout unchanged by
/// `other_step`, as for every packet of an established flow, so only the
/// counters and the activity time move (`StateTable::touch`, no lock).
#[inline(always)]
fn other_steady(v: &StateView, fwd: bool, udp: bool) -> bool {
    let (s0, d0) = if fwd { (v.src_state, v.dst_state) } else { (v.dst_state, v.src_state) };
    let (mut s, mut d) = (s0, d0);
    let t = other_step(udp, &mut s, &mut d);
    s == s0 && d == d0 && v.timeout == tidx(t) as u8
}

fn test_state_other(cx: &Cx, pd: &Pd, link: &mut u64) -> StateVerdict {
    let key = pkt_key_words(pd, cx.dir);
    let dirc = dir_code(cx.dir);
    let udp = pd.proto == PROTO_UDP;
    // Fast path: the packet changes neither the peer states nor the
    // timeout (every packet of an established flow), so only the counters
    // and the activity time move, without the state's lock.
    match cx.probe_linked(pd, *link) {
        Probe::Miss => return StateVerdict::NoState,
        Probe::Hit(v) => {
            let fwd = v.direction == dirc;
            if other_steady(&v, fwd, udp) {
                cx.pf.states.touch(v.idx, fwd, pd.tot_len as u64, cx.now.as_nanos());
                cx.relink(link, v.idx, v.rev);
                return view_pass(&v, fwd);
            }
        }
        Probe::Busy => {}
    }
    cx.with_state_linked(key, link, |slot, st| {
        let fwd = st.direction == dirc;
        let (src, dst) = if fwd { (&mut st.src, &mut st.dst) } else { (&mut st.dst, &mut st.src) };
        let t = other_step(udp, &mut src.state, &mut dst.state);
        set_timeout(st, cx.now, t);
        account(st, fwd, pd.tot_len);
        state_pass(st, slot, fwd)
    })
    .unwrap_or(StateVerdict::NoState)
}

fn test_state_icmp(cx: &Cx, pd: &Pd, data: &[u8], link: &mut u64) -> StateVerdict {
    let (is_error, icmp_dir, _) = icmp_mapping(pd.icmp_type);
    let dirc = dir_code(cx.dir);
    if !is_error {
        let key = pkt_key_words(pd, cx.dir);
        match cx.probe_linked(pd, *link) {
            Probe::Miss => return StateVerdict::NoState,
            Probe::Hit(v) if v.timeout == tidx(Timeout::IcmpError) as u8 => {
                let fwd = v.direction == dirc;
                let flow = if fwd { Direction::In } else { Direction::Out };
                if flow != icmp_dir {
                    return StateVerdict::Drop(Some(Reason::StateMismatch));
                }
                cx.pf.states.touch(v.idx, fwd, pd.tot_len as u64, cx.now.as_nanos());
                cx.relink(link, v.idx, v.rev);
                return view_pass(&v, fwd);
            }
            _ => {}
        }
        return cx
            .with_state_linked(key, link, |slot, st| {
                let fwd = st.direction == dirc;
                // A request must flow in the state's direction, a reply against it.
                let flow = if fwd { Direction::In } else { Direction::Out };
                if flow != icmp_dir {
                    return StateVerdict::Drop(Some(Reason::StateMismatch));
                }
                set_timeout(st, cx.now, Timeout::IcmpError);
                account(st, fwd, pd.tot_len);
                state_pass(st, slot, fwd)
            })
            .unwrap_or(StateVerdict::NoState);
    }
    // An error: find the state of the packet it quotes.
    let inner = &data[pd.hlen + icmpv4::HEADER_LEN..pd.tot_len];
    // The quote is truncated: check only what is read.
    if inner.len() < softnet_wire::ipv4::MIN_HEADER_LEN || inner[0] >> 4 != 4 {
        return StateVerdict::Drop(Some(Reason::Short));
    }
    let ip2 = Ipv4Packet::new_unchecked(inner);
    let h2 = ip2.header_len() as usize;
    if h2 < softnet_wire::ipv4::MIN_HEADER_LEN || h2 > inner.len() {
        return StateVerdict::Drop(Some(Reason::Short));
    }
    if ip2.frag_offset() != 0 {
        return StateVerdict::Drop(Some(Reason::Fragment));
    }
    let (isrc, idst, iproto) = (ip2.src(), ip2.dst(), ip2.protocol().0);
    if pd.dst != isrc {
        return StateVerdict::Drop(Some(Reason::StateMismatch));
    }
    let l4 = &inner[h2..];
    // The quoted packet went the other way: its source sits at index 1
    // for an inbound error.
    let (s, d) = if cx.dir == Direction::In { (1, 0) } else { (0, 1) };
    let mut key = StateKey { proto: iproto, ..StateKey::empty() };
    key.addr[s] = isrc;
    key.addr[d] = idst;
    match iproto {
        PROTO_TCP | PROTO_UDP => {
            if l4.len() < 8 {
                return StateVerdict::Drop(Some(Reason::Short));
            }
            key.port[s] = u16::from_be_bytes([l4[0], l4[1]]);
            key.port[d] = u16::from_be_bytes([l4[2], l4[3]]);
        }
        PROTO_ICMP => {
            if l4.len() < icmpv4::HEADER_LEN {
                return StateVerdict::Drop(Some(Reason::Short));
            }
            let (ierr, idir, vtype) = icmp_mapping(l4[0]);
            if ierr {
                return StateVerdict::Drop(Some(Reason::StateMismatch));
            }
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            let (ps, pdp) = if idir == Direction::In { (id, vtype as u16) } else { (vtype as u16, id) };
            key.port[s] = ps;
            key.port[d] = pdp;
        }
        _ => {}
    }
    let quoted_seq = if iproto == PROTO_TCP { u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]) } else { 0 };
    cx.with_state(key.words(), |slot, st| {
        if iproto == PROTO_TCP && !tcp_track::is_sloppy(st) {
            // The quoted packet is from the state's src when this error
            // flows against the state's direction.
            let quoted_fwd = st.direction != dirc;
            if !tcp_track::quoted_seq_ok(st, quoted_fwd, quoted_seq) {
                return StateVerdict::Drop(Some(Reason::StateMismatch));
            }
        }
        let fwd = st.direction == dirc;
        account(st, fwd, pd.tot_len);
        state_pass(st, slot, fwd)
    })
    .unwrap_or(StateVerdict::NoState)
}

/// PF_MISMATCHAW, negated: `rtable` is the table the packet would be
/// routed in so far (a `match ... rtable` before, else its own), the one
/// `no-route` and `urpf-failed` look in.
#[inline]
fn endpoint_matches(cx: &Cx, e: &EndpointMatch, a: Ipv4Addr, rtable: u16) -> bool {
    use crate::compile::AddrMatch;
    let hit = match e.addr {
        AddrMatch::NoRoute => cx.pf.routable(a, rtable, None) == Some(false),
        AddrMatch::UrpfFailed => cx.pf.routable(a, rtable, Some(cx.ifp)) == Some(false),
        _ => {
            let lookup = |name: &str| cx.pf.if_addrs(name, cx.ifp);
            e.addr.matches(a, &lookup)
        }
    };
    hit != e.negated
}

/// pf_match_rule + the tail of pf_test_rule.
fn test_rule(
    cx: &Cx,
    pd: &Pd,
    pkt: &mut PacketBuf,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) -> Decision {
    let rules = &cx.rs.rules;
    let ifname = cx.ifp.name();
    let mut tag = pkt.meta.pf_tag;
    let mut rtable: Option<u16> = None;
    // pf_rule_actions' log bits, gathered from the `match` rules passed:
    // a state logs each of its packets under every `log (all)` one (the
    // state's match_rules); each `log (matches)` one makes every later
    // matching rule log the packet once more (pf_log_matches).
    let mut log_match = [NO_RULE; LOG_MATCH_MAX];
    let mut log_match_n = 0usize;
    let mut log_matches = 0u32;
    let mut matched: Option<&CRule> = None;
    let n = rules.len();
    let mut i = 0usize;
    let w = cx.worker;
    let is_tcp_udp = pd.proto == PROTO_TCP || pd.proto == PROTO_UDP;
    let counters = cx.rs.counters.get(w);
    let hot = &cx.rs.hot[..n];
    let (src, dst) = (u32::from(pd.src), u32::from(pd.dst));
    // Evaluations are counted per run of consecutive rules: `run..next`
    // is the run so far (`next`: one past the last rule evaluated).
    let mut run = 0usize;
    let mut next = 0usize;
    while i < n {
        if i != next {
            counters.evaluated(run, next);
            run = i;
        }
        next = i + 1;
        let h = &hot[i];
        if h.flags != 0 {
            let r = &rules[i];
            if h.flags & HOT_IFM != 0 && !r.ifm.as_ref().is_some_and(|m| m.matches(ifname)) {
                i = h.skip[SKIP_IFP] as usize;
                continue;
            }
        }
        if h.dir.is_some_and(|d| d != cx.dir) {
            i = h.skip[SKIP_DIR] as usize;
            continue;
        }
        if h.flags & HOT_INET6 != 0 {
            i = h.skip[SKIP_AF] as usize;
            continue;
        }
        if h.proto.is_some_and(|p| p != pd.proto) {
            i = h.skip[SKIP_PROTO] as usize;
            continue;
        }
        let src_ok = if h.flags & HOT_SRC_SLOW != 0 {
            endpoint_matches(cx, &rules[i].src, pd.src, rtable.unwrap_or(pkt.meta.rtable))
        } else {
            src & h.src.1 == h.src.0
        };
        if !src_ok {
            i = h.skip[SKIP_SRC_ADDR] as usize;
            continue;
        }
        let dst_ok = if h.flags & HOT_DST_SLOW != 0 {
            endpoint_matches(cx, &rules[i].dst, pd.dst, rtable.unwrap_or(pkt.meta.rtable))
        } else {
            dst & h.dst.1 == h.dst.0
        };
        if !dst_ok {
            i = h.skip[SKIP_DST_ADDR] as usize;
            continue;
        }
        if is_tcp_udp {
            if h.src_port.is_some_and(|op| !op.matches(pd.sport)) {
                i = h.skip[SKIP_SRC_PORT] as usize;
                continue;
            }
            if h.dst_port.is_some_and(|op| !op.matches(pd.dport)) {
                i = h.skip[SKIP_DST_PORT] as usize;
                continue;
            }
        } else if h.src_port.is_some() || h.dst_port.is_some() {
            i += 1;
            continue;
        }
        let r = &rules[i];
        if h.flags & HOT_REST != 0 {
            if let Some(im) = r.icmp {
                if pd.proto != PROTO_ICMP || im.icmp_type != pd.icmp_type || im.code.is_some_and(|c| c != pd.icmp_code)
                {
                    i += 1;
                    continue;
                }
            }
            if r.tos.is_some_and(|t| t != pd.tos) {
                i += 1;
                continue;
            }
            if pd.proto == PROTO_TCP && !r.flags.is_any() && (pd.tcp.flags & r.flags.mask) != r.flags.set {
                i += 1;
                continue;
            }
            if let Some((id, neg)) = r.tagged {
                if (tag == id) == neg {
                    i += 1;
                    continue;
                }
            }
        }
        // The rule matches.
        if r.tag != 0 {
            tag = r.tag;
        }
        if let Some(t) = r.rtable {
            rtable = Some(t);
        }
        if r.action == Action::Match {
            if let Some(c) = counters.rule(i) {
                c.count(cx.dir, pd.tot_len as u64);
            }
            if let Some(l) = r.log {
                cx.log(Some(r.nr), pflog::PF_MATCH, Reason::Match, pd, pkt.data());
                if l.all && log_match_n < LOG_MATCH_MAX {
                    log_match[log_match_n] = r.nr;
                    log_match_n += 1;
                }
                if l.matches {
                    log_matches += 1;
                }
            }
            if log_matches > 0 {
                log_later_match(cx, r, log_matches, pd, pkt);
            }
            i += 1;
            continue;
        }
        if log_matches > 0 {
            log_later_match(cx, r, log_matches, pd, pkt);
        }
        matched = Some(r);
        if r.quick {
            break;
        }
        i += 1;
    }
    counters.evaluated(run, next);
    let Some(r) = matched else {
        // pf's default rule: pass, no state. pf_test_rule still runs
        // pf_log_matches on it (rule number -1).
        if log_matches > 0 {
            log_default_rule_matches(cx, log_matches, pd, pkt);
        }
        if pd.badopts {
            cx.count(Reason::IpOption);
            // PF_LOG_FORCE, under the default rule: a drop (pflog_packet).
            cx.log(None, pflog::PF_DROP, Reason::IpOption, pd, pkt.data());
            return Decision::Drop;
        }
        if tag != 0 {
            pkt.meta.pf_tag = tag;
        }
        if let Some(t) = rtable {
            pkt.meta.rtable = t;
        }
        return Decision::Pass;
    };
    cx.count(Reason::Match);
    if let Some(c) = counters.rule(r.nr as usize) {
        c.count(cx.dir, pd.tot_len as u64);
    }
    count_tables(cx, r, pd);
    let logged = r.log.is_some();
    // pf_test_rule logs the rule that decided (under its own action)
    // before anything can still drop the packet, then runs
    // pf_log_matches on it once more: with `log (matches)` the deciding
    // rule is logged twice per such `match` rule, once in the walk and
    // once here.
    if logged {
        cx.log(Some(r.nr), log_action(r), Reason::Match, pd, pkt.data());
    }
    if log_matches > 0 {
        log_later_match(cx, r, log_matches, pd, pkt);
    }
    match r.action {
        Action::Block(how) => {
            send_return(cx, r, how, pd, pkt, bufs, replies);
            Decision::Drop
        }
        Action::Pass | Action::Match => {
            if pd.badopts && !r.allow_opts {
                cx.count(Reason::IpOption);
                // PF_LOG_FORCE: logged with or without `log` on the rule,
                // under the rule's own action as pflog_packet writes it
                // (only the default rule's records say block).
                cx.log(Some(r.nr), log_action(r), Reason::IpOption, pd, pkt.data());
                return Decision::Drop;
            }
            if keeps_state(r) {
                // A state that cannot be made drops the packet without a
                // log record of its own (pf: counted, not logged).
                if let Err(reason) = create_state(cx, r, pd, pkt, tag, rtable, log_match) {
                    cx.count(reason);
                    return Decision::Drop;
                }
            }
            if tag != 0 {
                pkt.meta.pf_tag = tag;
            }
            if let Some(t) = rtable {
                pkt.meta.rtable = t;
            }
            Decision::Pass
        }
    }
}

/// pf_test's log records for a packet of a state (`pd.pflog |= st->log`):
/// under the state's rule (as a pass) when the record is forced or that
/// rule says `log (all)`, then under each `match … log (all)` rule the
/// state's creating packet matched, latest first as pf walks the state's
/// `match_rules`, all with the packet's reason. The `match` rules are read
/// from the state in `slot`, if it is still the state the packet matched
/// (live, same rule); a state removed meanwhile has no records for them.
#[cold]
#[allow(clippy::too_many_arguments)]
fn log_state_packet(
    cx: &Cx,
    rule: Option<(u32, u32)>,
    log: u8,
    forced: bool,
    slot: u32,
    reason: Reason,
    pd: &Pd,
    pkt: &PacketBuf,
) {
    if forced || log & sflags::LOG_ALL != 0 {
        cx.log(rule.map(|r| r.1), pflog::PF_PASS, reason, pd, pkt.data());
    }
    if log & sflags::LOG_MATCHES_ALL == 0 {
        return;
    }
    let Some(st) = cx.pf.states.get(slot) else { return };
    if Some((st.ruleset_gen, st.rule_nr)) != rule {
        return;
    }
    for &nr in st.log_match.iter().rev().filter(|&&nr| nr != NO_RULE) {
        cx.log(Some(nr), pflog::PF_MATCH, reason, pd, pkt.data());
    }
}

/// pf_log_matches: after a `match ... log (matches)` rule, every rule the
/// packet goes on to match logs it, once per such `match` rule, under its
/// own number and action (the deciding rule again after the walk); a rule
/// with `log (matches)` itself was logged already.
#[cold]
fn log_later_match(cx: &Cx, r: &CRule, times: u32, pd: &Pd, pkt: &PacketBuf) {
    if r.log.is_some_and(|l| l.matches) {
        return;
    }
    for _ in 0..times {
        cx.log(Some(r.nr), log_action(r), Reason::Match, pd, pkt.data());
    }
}

/// pf_log_matches on pf's default rule (number -1, pass) when no rule
/// decided.
#[cold]
fn log_default_rule_matches(cx: &Cx, times: u32, pd: &Pd, pkt: &PacketBuf) {
    for _ in 0..times {
        cx.log(None, pflog::PF_PASS, Reason::Match, pd, pkt.data());
    }
}

/// pf_test's PF_LOG_FORCE for a packet dropped before any rule or state
/// saw it: malformed (pf_setup_pdesc) or refused by fragment reassembly
/// (pf_normalize_ip). Logged under pf's default rule (-1) as a block,
/// with the addresses when the IPv4 header holds them and no ports, as
/// pf's `pf_pdesc` has them at that point; nothing without pflog.
#[cold]
fn log_forced(cx: &Cx, reason: Reason, data: &[u8]) {
    let (src, dst, proto) = match Ipv4Packet::new_checked(data) {
        Ok(ip) => (ip.src(), ip.dst(), ip.protocol().0),
        Err(_) => (Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, 0),
    };
    let pd = Pd::ip(src, dst, proto, 0, 0, data.len());
    cx.log(None, pflog::PF_DROP, reason, &pd, data);
}

/// The action a pflog header carries for a rule (pflog_packet: the
/// rule's own action).
fn log_action(r: &CRule) -> u8 {
    match r.action {
        Action::Match => pflog::PF_MATCH,
        Action::Pass => pflog::PF_PASS,
        Action::Block(_) => pflog::PF_DROP,
    }
}

fn create_state(
    cx: &Cx,
    r: &CRule,
    pd: &Pd,
    pkt: &mut PacketBuf,
    tag: u16,
    rtable: Option<u16>,
    log_match: [u32; LOG_MATCH_MAX],
) -> Result<(), Reason> {
    if let Some(max) = r.max_states {
        if r.states_cur.load(std::sync::atomic::Ordering::Relaxed) >= max as u64 {
            cx.pf.counters.get(cx.worker).lcounters[LCNT_STATES].inc();
            return Err(Reason::StateLimit);
        }
    }
    let now = cx.now.as_nanos();
    let mut st = StateData {
        key: pkt_key(pd, cx.dir),
        kif: if r.if_bound { cx.kif() } else { 0 },
        direction: dir_code(cx.dir),
        flags: (if r.sloppy { sflags::SLOPPY } else { 0 })
            | (if r.log.is_some_and(|l| l.all) { sflags::LOG_ALL } else { 0 })
            | (if log_match[0] != NO_RULE { sflags::LOG_MATCHES_ALL } else { 0 })
            | (if r.allow_opts { sflags::ALLOW_OPTS } else { 0 }),
        timeout_set: r.timeout_set,
        rule_nr: r.nr,
        ruleset_gen: cx.rs.gen,
        log_match,
        tag,
        rtable: rtable.map(|t| t as i16).unwrap_or(-1),
        creation: now,
        expire: now,
        packets: [1, 0],
        bytes: [pd.tot_len as u64, 0],
        creatorid: cx.pf.hostid.load(std::sync::atomic::Ordering::Relaxed),
        ..StateData::default()
    };
    let mut rewrite = None;
    match pd.proto {
        PROTO_TCP => {
            let iss = (r.keep_state == StateMode::Modulate).then(|| cx.pf.iss(pd, cx.now));
            rewrite = tcp_track::init_state(&mut st, &pd.tcp, iss);
            st.timeout = tidx(Timeout::TcpFirst) as u8;
        }
        PROTO_UDP => {
            st.src.state = udps::SINGLE;
            st.dst.state = udps::NO_TRAFFIC;
            st.timeout = tidx(Timeout::UdpFirst) as u8;
        }
        PROTO_ICMP => {
            st.timeout = tidx(Timeout::IcmpFirst) as u8;
        }
        _ => {
            st.src.state = udps::SINGLE;
            st.dst.state = udps::NO_TRAFFIC;
            st.timeout = tidx(Timeout::OtherFirst) as u8;
        }
    }
    match cx.pf.states.insert(st) {
        Ok(idx) => {
            // Link the packet's inbound state to the new outbound one, or
            // leave the new inbound state in the packet for pf out.
            let mut link = if cx.dir == Direction::In { 0 } else { pkt.meta.pf_link };
            cx.relink(&mut link, idx, 0);
            pkt.meta.pf_link = link;
            r.states_cur.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(c) = cx.rs.counters.get(cx.worker).rule(r.nr as usize) {
                c.states_created.inc();
            }
            if r.if_bound {
                cx.pf.note_ifname(cx.ifp);
            }
            if let Some(seq) = rewrite {
                let ack = pd.tcp.ack;
                patch_seq_ack(pkt, pd.hlen, seq, ack);
            }
            Ok(())
        }
        Err(crate::state::InsertError::Limit) => Err(Reason::Memory),
        Err(crate::state::InsertError::Conflict) => Err(Reason::StateInsert),
    }
}

/// `block return…`: a RST for TCP, an ICMP unreachable otherwise.
fn send_return(
    cx: &Cx,
    r: &CRule,
    how: BlockAction,
    pd: &Pd,
    pkt: &PacketBuf,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) {
    let data = pkt.data();
    let (rst, icmp_code, ttl) = match how {
        BlockAction::Drop => return,
        BlockAction::Return => (pd.proto == PROTO_TCP, icmpv4::DstUnreachable::PortUnreachable as u8, 0),
        BlockAction::ReturnRst { ttl } => (true, 0, ttl),
        BlockAction::ReturnIcmp { code, .. } => (false, code, 0),
    };
    let _ = r;
    if rst {
        if pd.proto != PROTO_TCP || pd.tcp.flags & TH_RST != 0 {
            return;
        }
        let l4 = &data[pd.hlen..pd.tot_len];
        if !TcpPacket::new_unchecked(l4).verify_checksum(pd.src, pd.dst) {
            cx.count(Reason::ProtoCksum);
            return;
        }
        let s = pd.tcp;
        let (seq, ack, flags) = rst_numbers(&s);
        let ttl = if ttl == 0 { DEFAULT_TTL } else { ttl };
        if let Some(p) = build_tcp(bufs, pd.dst, pd.src, pd.dport, pd.sport, seq, ack, flags, 0, ttl) {
            replies.push(p);
        }
        return;
    }
    // ICMP errors are not sent about ICMP errors, non-first fragments
    // (never seen here: reassembled), or broadcast/multicast.
    if pd.proto == PROTO_ICMP && icmpv4::is_error(pd.icmp_type) {
        return;
    }
    if pd.dst.is_broadcast() || pd.dst.is_multicast() || pd.src.is_broadcast() || pd.src.is_multicast() {
        return;
    }
    let l4 = &data[pd.hlen..pd.tot_len];
    let ck_ok = match pd.proto {
        PROTO_TCP => TcpPacket::new_unchecked(l4).verify_checksum(pd.src, pd.dst),
        PROTO_UDP => {
            let u = UdpPacket::new_unchecked(l4);
            u.checksum() == 0 || u.verify_checksum(pd.src, pd.dst)
        }
        _ => true,
    };
    if !ck_ok {
        cx.count(Reason::ProtoCksum);
        return;
    }
    let src = cx.ifp.source_for(pd.src).unwrap_or(pd.dst);
    if let Some(p) = build_icmp_unreach(bufs, src, pd.src, icmp_code, &data[..pd.tot_len], pd.hlen) {
        replies.push(p);
    }
}

/// Sequence numbers of a RST answering segment `s`: with an ACK the RST
/// takes its sequence number from the ACK field (RFC 9293 3.10.7.1);
/// otherwise it has sequence 0 and acknowledges everything the segment
/// occupied. pf sets ACK on both.
pub fn rst_numbers(s: &TcpSeg) -> (u32, u32, u8) {
    let mut ack = s.seq.wrapping_add(s.len);
    if s.flags & TH_SYN != 0 {
        ack = ack.wrapping_add(1);
    }
    if s.flags & TH_FIN != 0 {
        ack = ack.wrapping_add(1);
    }
    let seq = if s.flags & TH_ACK != 0 { s.ack } else { 0 };
    (seq, ack, TH_RST | TH_ACK)
}

/// An IPv4 + TCP segment without payload (pf_send_tcp).
#[allow(clippy::too_many_arguments)]
pub fn build_tcp(
    bufs: &mut dyn BufferSource,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    ttl: u8,
) -> Option<PacketBuf> {
    let mut p = bufs.alloc()?;
    let tr = TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq,
        ack,
        flags: TcpFlags::from_bits(flags),
        window: win,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    };
    let ir = Ipv4Repr {
        src,
        dst,
        protocol: IpProtocol::TCP,
        ttl,
        tos: 0,
        ident: (seq ^ ack) as u16,
        dont_frag: false,
        payload_len: tr.buffer_len(),
    };
    if p.rewind(ir.buffer_len()).is_err() {
        bufs.free(p);
        return None;
    }
    let d = p.data_mut();
    ir.emit(&mut d[..20]);
    tr.emit_with_payload(&mut d[20..], src, dst, &[]);
    // pf_send_tcp: PF_TAG_GENERATED, so pf out lets it by untested.
    p.meta.flags |= mflags::PF_GENERATED;
    Some(p)
}

/// An ICMP destination unreachable quoting the offending packet's header
/// and the first 8 bytes of its payload.
fn build_icmp_unreach(
    bufs: &mut dyn BufferSource,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    code: u8,
    orig: &[u8],
    orig_hlen: usize,
) -> Option<PacketBuf> {
    let quote = &orig[..(orig_hlen + 8).min(orig.len())];
    let icmp_len = icmpv4::HEADER_LEN + quote.len();
    let mut p = bufs.alloc()?;
    let ir = Ipv4Repr {
        src,
        dst,
        protocol: IpProtocol::ICMP,
        ttl: DEFAULT_TTL,
        tos: 0,
        ident: u16::from_be_bytes([orig[4], orig[5]]).rotate_left(3),
        dont_frag: false,
        payload_len: icmp_len,
    };
    if p.rewind(ir.buffer_len()).is_err() {
        bufs.free(p);
        return None;
    }
    let d = p.data_mut();
    ir.emit(&mut d[..20]);
    let mut ic = Icmpv4Packet::new_unchecked(&mut d[20..20 + icmp_len]);
    ic.set_msg_type(icmpv4::msg_type::DST_UNREACHABLE);
    ic.set_code(code);
    ic.set_rest_of_header([0; 4]);
    ic.data_mut()[..quote.len()].copy_from_slice(quote);
    ic.fill_checksum();
    // pf_send_icmp: PF_TAG_GENERATED, as for the RST.
    p.meta.flags |= mflags::PF_GENERATED;
    Some(p)
}

/// pfr_update_stats: the tables in the deciding rule's addresses count the
/// packet against the entry holding the address (`pfctl -T show -v`): Block
/// or Pass, or XPass when the rule passed on a table miss (a negated table
/// or a negated entry), and the table's no-match count otherwise.
fn count_tables(cx: &Cx, r: &crate::compile::CRule, pd: &Pd) {
    let out = cx.dir == Direction::Out;
    let blocked = matches!(r.action, Action::Block(_));
    for (ep, addr) in [(&r.src, pd.src), (&r.dst, pd.dst)] {
        if let crate::compile::AddrMatch::Table(t) = &ep.addr {
            let op = if blocked {
                crate::table::TableOp::Block
            } else if ep.negated {
                crate::table::TableOp::XPass
            } else {
                crate::table::TableOp::Pass
            };
            t.match_and_count(cx.worker, addr, out, op, pd.tot_len as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every packet the fast parse accepts, the full parse accepts too and
    /// describes the same way: valid packets and every one-byte corruption
    /// of them (lengths, offsets, flags, version).
    #[test]
    fn fast_parse_agrees_with_the_full_parse() {
        let mut packets = vec![];
        let ip = |proto: u8, l4: &[u8]| {
            let mut p = vec![0x45, 0, 0, 0, 0, 7, 0, 0, 64, proto, 0, 0, 10, 0, 1, 2, 10, 0, 2, 2];
            let tot = (20 + l4.len()) as u16;
            p[2..4].copy_from_slice(&tot.to_be_bytes());
            p.extend_from_slice(l4);
            p
        };
        let udp = [0x13, 0x88, 0, 53, 0, 10, 0, 0, 0x61, 0x62];
        packets.push(ip(PROTO_UDP, &udp));
        let mut tcp = vec![0x9c, 0x40, 0, 22, 0, 0, 3, 0xe9, 0, 0, 0x13, 0x89, 0x50, TH_ACK, 0x20, 0, 0, 0, 0, 0];
        tcp.extend_from_slice(b"data");
        packets.push(ip(PROTO_TCP, &tcp));
        let mut tcp_opts = tcp.clone();
        tcp_opts[12] = 0x60;
        tcp_opts.splice(20..20, [1, 1, 1, 0]);
        packets.push(ip(PROTO_TCP, &tcp_opts));
        let mut all = packets.clone();
        for p in &packets {
            for i in 0..p.len() {
                for v in [0u8, 1, 2, 0x0f, 0x10, 0x20, 0x40, 0x45, 0x46, 0x50, 0x80, 0xff] {
                    let mut q = p.clone();
                    q[i] = v;
                    all.push(q.clone());
                    q.truncate(q.len() - 3);
                    all.push(q);
                }
            }
        }
        let mut accepted = 0;
        for p in &all {
            if let Some(fast) = parse_fast(p) {
                accepted += 1;
                let full = parse_pd(p).unwrap_or_else(|r| panic!("{p:?}: fast accepted, full says {r:?}"));
                assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{p:?}");
                let ip = Ipv4Packet::new_unchecked(&p[..]);
                assert!(!ip.is_fragment());
                // What the fast path takes, pf_normalize_tcp leaves alone.
                if fast.proto == PROTO_TCP {
                    let mut q = p.clone();
                    assert_eq!(normalize_tcp(&mut q[20..fast.tot_len]), Some(fast.tcp.flags), "{p:?}");
                    assert_eq!(&q, p);
                }
            }
        }
        assert!(accepted > 100, "{accepted}");
    }

    /// Every flag combination and reserved nibble, with and without an
    /// urgent pointer, against pf_normalize_tcp's rules written out; the
    /// checksum stays valid whatever is rewritten.
    #[test]
    fn normalize_tcp_drops_and_rewrites_as_pf_normalize_tcp() {
        const FIN: u8 = 0x01;
        const SYN: u8 = 0x02;
        const RST: u8 = 0x04;
        const PSH: u8 = 0x08;
        const ACK: u8 = 0x10;
        const URG: u8 = 0x20;
        let (src, dst) = (Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 2, 2));
        for flags in 0..=255u8 {
            for x2 in [0u8, 1, 0x0e, 0x0f] {
                for urp in [0u16, 7] {
                    let mut seg = vec![0x9c, 0x40, 0, 22, 0, 0, 3, 0xe9, 0, 0, 0x13, 0x89, 0x50 | x2, flags];
                    seg.extend_from_slice(&[0x20, 0, 0, 0]);
                    seg.extend_from_slice(&urp.to_be_bytes());
                    seg.extend_from_slice(b"data");
                    TcpPacket::new_unchecked(&mut seg[..]).fill_checksum(src, dst);
                    let before = seg.clone();
                    let got = normalize_tcp(&mut seg);
                    // FIN is cleared on a SYN before the ACK-only flags are
                    // checked: SYN+FIN passes as a SYN.
                    let want = if flags & SYN != 0 { flags & !FIN } else { flags };
                    let illegal = (flags & SYN != 0 && flags & RST != 0)
                        || (flags & SYN == 0 && flags & (ACK | RST) == 0)
                        || (want & ACK == 0 && want & (FIN | PSH | URG) != 0);
                    if illegal {
                        assert_eq!(got, None, "{flags:#x}");
                        assert_eq!(seg, before);
                        continue;
                    }
                    assert_eq!(got, Some(want), "{flags:#x}");
                    let t = TcpPacket::new_checked(&seg[..]).unwrap();
                    assert_eq!(t.flags().bits(), want);
                    assert_eq!((t.header_len(), t.reserved()), (20, 0));
                    assert_eq!(t.urgent(), if want & URG != 0 { urp } else { 0 }, "{flags:#x}");
                    assert!(t.verify_checksum(src, dst), "{flags:#x} {x2:#x} {urp}");
                    // Nothing else moves.
                    assert_eq!(seg[..12], before[..12]);
                    assert_eq!(seg[14..16], before[14..16]);
                    assert_eq!(seg[20..], before[20..]);
                }
            }
        }
    }

    #[test]
    fn rst_answers_an_ack_with_its_ack_number_and_a_syn_with_seq_plus_one() {
        let syn = TcpSeg { flags: TH_SYN, seq: 1000, ack: 0, win: 0, len: 0, wscale: None };
        assert_eq!(rst_numbers(&syn), (0, 1001, TH_RST | TH_ACK));
        let data = TcpSeg { flags: TH_ACK, seq: 5000, ack: 7777, win: 0, len: 100, wscale: None };
        assert_eq!(rst_numbers(&data), (7777, 5100, TH_RST | TH_ACK));
        let fin = TcpSeg { flags: TH_FIN | TH_ACK, seq: 5000, ack: 7777, win: 0, len: 10, wscale: None };
        assert_eq!(rst_numbers(&fin), (7777, 5011, TH_RST | TH_ACK));
    }
}
