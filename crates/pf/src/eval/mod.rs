//! pf_test: one packet through normalization (fragment reassembly), the
//! state table, and the rules.

use std::net::Ipv4Addr;

use softnet_core::filter::{BufferSource, Decision, Direction, FilterReplies, RouteDecision};
use softnet_core::iface::Interface;
use softnet_core::packet::{mflags, PacketBuf, PfNote6};
use softnet_core::time::Instant;
use softnet_wire::checksum;
use softnet_wire::icmpv4::{self, Icmpv4Packet};
use softnet_wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use softnet_wire::tcp::{TcpFlags, TcpPacket, TcpRepr};
use softnet_wire::udp::UdpPacket;

use crate::addr::{Af, PfAddr};
use crate::compile::{
    keeps_state, tidx, CRule, CompiledRuleset, EndpointMatch, WorkerRuleCounters, HOT_DST_SLOW, HOT_IFM, HOT_INET,
    HOT_INET6, HOT_REST, HOT_SRC_SLOW, SKIP_AF, SKIP_DIR, SKIP_DST_ADDR, SKIP_DST_PORT, SKIP_IFP, SKIP_PROTO,
    SKIP_SRC_ADDR, SKIP_SRC_PORT,
};
use crate::filter::{PfCounters, PfInner};
use crate::frag::{FragDrop, FragResult};
use crate::model::{Action, BlockAction, Limit, StateMode};
use crate::names::Timeout;
use crate::pflog::{self, LogMeta};
use crate::scrub::ScrubActs;
use crate::state::{
    sflags, srcflags, tcps, udps, Probe, StateData, StateKey, StateView, DIR_IN, DIR_OUT, LOG_MATCH_MAX, NO_RULE,
};
use crate::tcp_track::{self, TcpSeg, Track, TH_ACK, TH_FIN, TH_RST, TH_SYN};

mod afto;
mod fast4;
mod fast6;
mod inet6;
mod nat;
mod nat6;
mod pdesc;
mod pdesc6;
mod reply;
mod rules;
mod state_test;
mod synproxy;

pub use fast4::Owed;
pub use fast4::{is_udp4, test_established_words};
pub use fast6::{fast_udp6, in_words6, noted_words6, Udp6};
use inet6::*;
pub use pdesc::*;
pub use pdesc6::{parse_pd6, walk_header6, Walk6};
use reply::*;
use rules::*;
pub use state_test::*;

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

pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
const DEFAULT_TTL: u8 = 64;

/// Everything one `test` call works with.
pub struct Cx<'a> {
    pub pf: &'a PfInner,
    pub rs: &'a CompiledRuleset,
    pub worker: usize,
    pub now: Instant,
    pub dir: Direction,
    pub ifp: &'a Interface,
    /// This worker's pf counters (`pf.counters.get(worker)`), looked up
    /// once a call, not once a packet.
    pub counters: &'a PfCounters,
    /// This worker's counters of `rs`'s rules (`rs.counters.get(worker)`).
    pub rules: &'a WorkerRuleCounters,
}

impl<'a> Cx<'a> {
    /// The context of one hook call (or one batch) by `worker`.
    pub fn new(
        pf: &'a PfInner,
        rs: &'a CompiledRuleset,
        worker: usize,
        now: Instant,
        dir: Direction,
        ifp: &'a Interface,
    ) -> Cx<'a> {
        Cx { pf, rs, worker, now, dir, ifp, counters: pf.counters.get(worker), rules: rs.counters.get(worker) }
    }
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
        self.counters.reasons[r as usize].inc();
    }

    /// A pflog record for the packet under the rule at `rule` (its index
    /// in the ruleset tree; `None`: pf's default rule), for a rule inside
    /// an anchor under the first anchor rule that calls it.
    fn log(&self, rule: Option<u32>, action: u8, reason: Reason, pd: &Pd, data: &[u8]) {
        self.log_under(rule, None, action, reason, pd, data)
    }

    /// `log` for a rule found under the anchor rule `anchor` (tree
    /// indices): as pflog_packet, the anchor rule's number, the rule's
    /// own as the subrule, the anchor's name as the ruleset.
    fn log_under(&self, rule: Option<u32>, anchor: Option<u32>, action: u8, reason: Reason, pd: &Pd, data: &[u8]) {
        if let Some(q) = self.pf.pflog.load().as_ref() {
            let (rulenr, subrulenr, ruleset) = match rule.and_then(|i| self.rs.rules.get(i as usize)) {
                Some(r) if r.node != 0 => {
                    let node = &self.rs.nodes[r.node as usize];
                    let caller = anchor
                        .and_then(|a| self.rs.rules.get(a as usize))
                        .or_else(|| self.rs.caller_of(r.node as usize))
                        .map(|c| c.local_nr);
                    (caller, Some(r.local_nr), node.path.rsplit('/').next().unwrap_or_default())
                }
                Some(r) => (Some(r.local_nr), None, ""),
                None => (rule, None, ""),
            };
            let m = LogMeta {
                action,
                reason: reason as u8,
                ifname: self.ifp.name(),
                rulenr,
                subrulenr,
                ruleset,
                dir: if self.dir == Direction::In { pflog::PF_IN } else { pflog::PF_OUT },
                af: pd.af,
                src: pd.src,
                dst: pd.dst,
                sport: if pd.proto == PROTO_ICMP || pd.proto == PROTO_ICMPV6 { 0 } else { pd.sport },
                dport: if pd.proto == PROTO_ICMP || pd.proto == PROTO_ICMPV6 { 0 } else { pd.dport },
            };
            q.push(&m, data, self.now.as_nanos());
        }
    }

    /// Finds the state for `key` usable on this interface and runs `f` on it
    /// (and its slot index) under its lock. `None` when no state matches.
    #[inline]
    fn with_state<R>(&self, key: (u64, u64), f: impl FnOnce(u32, &mut StateData) -> R) -> Option<R> {
        self.counters.searches.inc();
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
        self.counters.searches.inc();
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
        self.relink_as(self.dir, link, idx, rev)
    }

    /// `relink` on the hook of direction `dir` (the caller's constant, so
    /// that a loop made for one direction leaves the other's code out).
    #[inline(always)]
    fn relink_as(&self, dir: Direction, link: &mut u64, idx: u32, rev: u32) {
        match dir {
            Direction::In => *link = (rev as u64) << 32 | (idx as u64 + 1),
            Direction::Out => {
                let (in_slot, hint) = (*link as u32, (*link >> 32) as u32);
                if hint != idx + 1 {
                    if in_slot != 0 {
                        self.pf.states.set_rev(in_slot - 1, idx + 1);
                    }
                    // (For the router's own packets, the state found is
                    // their connection's from now on: `sock::pflink`.)
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
                self.counters.searches.inc();
                return Probe::Hit(v);
            }
        }
        self.probe(pd)
    }

    /// `probe_linked` by key words already made: an IPv6 packet's words
    /// cost two address-id lookups (`state::v6ids`) each time they are
    /// made.
    #[cold]
    fn probe_linked_words(&self, key: (u64, u64), link: u64) -> Probe {
        self.counters.searches.inc();
        let hint = self.link_hint(link);
        if hint != 0 {
            if let Some(v) = self.pf.states.probe_linked(hint, key, self.kif()) {
                return Probe::Hit(v);
            }
        }
        self.pf.states.probe(key, self.kif())
    }

    /// The lock-free look at the state for the packet (counted as a
    /// search). The key goes as words built in registers: a `StateKey`
    /// written field by field and read back whole stalls store forwarding.
    #[inline(never)]
    fn probe(&self, pd: &Pd) -> Probe {
        self.counters.searches.inc();
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
    /// A translating state's rewrite of the packet.
    xlate: Option<nat::Endpoints>,
    /// The same for an IPv6 packet.
    xlate6: Option<nat6::Endpoints6>,
    /// The state has a routing option (`sflags::ROUTED`).
    routed: bool,
    /// The state scrubs its packets (`sflags::SCRUB`).
    scrub: bool,
}

/// What the state step decided.
enum StateVerdict {
    /// No state: evaluate the rules.
    NoState,
    Pass(Passed),
    Drop(Option<Reason>),
    /// pf's PF_SYNPROXY_DROP: `synproxy state` took the segment (and
    /// sent what it answers); it goes no further.
    Synproxy,
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
    // (An IPv6 packet the fast parse took, whose state was not plain:
    // the IPv6 path from its start.)
    if let Some(pd) = fast.filter(|pd| pd.af == Af::Inet) {
        return test_pd(cx, pd, pkt, hint, bufs, replies);
    }
    // IPv6: its own pf_setup_pdesc and normalization.
    if pkt.data().first().is_some_and(|b| b >> 4 == 6) {
        return test_parsed6(cx, slot, bufs, replies);
    }
    // Normalization: reassemble fragments first.
    let is_frag = {
        let ip = Ipv4Packet::new_unchecked(pkt.data());
        pkt.len() >= 20 && ip.is_fragment()
    };
    if is_frag {
        if cx.rs.opts.reassemble_no_df {
            crate::scrub::clear_df(pkt.data_mut());
        }
        if !cx.rs.opts.reassemble {
            return test_fragment(cx, pkt, bufs, replies);
        }
        let limit = cx.rs.opts.limit(Limit::Frags) as usize;
        let frag = slot.take().expect("checked above");
        let timeout = cx.rs.opts.timeout(Timeout::Frag);
        match cx.pf.frags.input(frag, cx.now.as_nanos(), limit, timeout, bufs) {
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
        match normalize_tcp(&mut d[pd.hlen()..pd.tot_len()]) {
            Some(flags) => pd.tcp.flags = flags,
            None => {
                cx.count(Reason::Normalize);
                return Decision::Drop;
            }
        }
    }
    test_pd(cx, &pd, pkt, 0, bufs, replies)
}

/// pf_test's PF_VPROTO_FRAGMENT under `set reassemble no`: a fragment
/// with DF is refused (pf_normalize_ip), any other goes to the rules
/// alone, without a state lookup and never making a state; a drop is
/// counted as `fragment` too.
#[cold]
fn test_fragment(cx: &Cx, pkt: &mut PacketBuf, bufs: &mut dyn BufferSource, replies: &mut FilterReplies) -> Decision {
    pkt.meta.pf_link = 0;
    if Ipv4Packet::new_unchecked(pkt.data()).dont_frag() {
        cx.count(Reason::Fragment);
        log_forced(cx, Reason::Fragment, pkt.data());
        return Decision::Drop;
    }
    let pd = match parse_fragment(pkt.data()) {
        Ok(pd) => pd,
        Err(r) => {
            cx.count(r);
            log_forced(cx, r, pkt.data());
            return Decision::Drop;
        }
    };
    let d = test_rule(cx, &pd, pkt, bufs, replies);
    if matches!(d, Decision::Drop) {
        cx.count(Reason::Fragment);
    }
    d
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
        PROTO_ICMP if pd.af == Af::Inet => test_state_icmp(cx, pd, pkt, &mut link),
        PROTO_ICMPV6 if pd.af == Af::Inet6 => test_state_icmp6(cx, pd, pkt, &mut link),
        _ => test_state_other(cx, pd, pkt, &mut link),
    };
    if inbound && link as u32 == 0 {
        // No inbound state matched: nothing for pf out to follow.
        link = 0;
    } else if !inbound && matches!(sv, StateVerdict::NoState) {
        // No outbound state: the hint named none (the rules may make one).
        link &= u32::MAX as u64;
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
        StateVerdict::Synproxy => {
            cx.count(Reason::Synproxy);
            Decision::Consumed
        }
    }
}

/// A packet its state passes: the state's rule counts it (while that
/// rule's ruleset is loaded), IP options are refused unless the rule
/// allowed them, the state's tag and routing table go with the packet,
/// `log (all)` logs it.
#[inline(always)]
fn state_passed(cx: &Cx, pd: &Pd, pkt: &mut PacketBuf, p: &Passed) -> Decision {
    let Passed { rule, log, slot, tag, rtable, allow_opts, xlate, xlate6, routed, scrub } = *p;
    if let Some((gen, nr)) = rule {
        state_test::count_state_rule(cx, gen, nr, pd.tot_len());
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
    if let Some(to) = xlate {
        nat::translate(pkt, pd, &to);
    }
    if let Some(to) = xlate6 {
        nat6::translate6(pkt, pd, &to);
    }
    if scrub {
        scrub_state_packet(cx, rule, slot, pd, pkt);
    }
    if routed {
        route_state_packet(cx, rule, slot, pkt);
    }
    Decision::Pass
}

/// pf_test's pf_scrub (and pf_normalize_mss) with the values of the
/// state that passed the packet.
#[cold]
fn scrub_state_packet(cx: &Cx, rule: Option<(u32, u32)>, slot: u32, pd: &Pd, pkt: &mut PacketBuf) {
    let Some(rule) = rule else { return };
    if let Some(a) = cx.pf.states.scrub_of(slot, rule) {
        scrub_packet(pkt, pd, &a);
    }
}

/// pf_scrub and pf_normalize_mss on a passed packet, with the scrub
/// values `a` of its rules or its state (nothing when there are none),
/// and pf_test's `set prio`: the packet's priority for the stack's
/// transmit (and later `prio` rules).
#[inline]
fn scrub_packet(pkt: &mut PacketBuf, pd: &Pd, a: &ScrubActs) {
    if a.any() {
        let bare_ack = pd.proto == PROTO_TCP && pd.tcp.flags & TH_ACK != 0 && pd.tcp.len == 0;
        if let Some(p) = a.prio_for(bare_ack, pd.tos) {
            pkt.meta.set_prio(p);
        }
        if a.edits() {
            if pd.af == Af::Inet {
                crate::scrub::apply(pkt.data_mut(), pd.hlen(), pd.tot_len(), a, softnet_core::rng::random_u16);
            } else {
                let tcp = pd.proto == PROTO_TCP && !pd.frag;
                crate::scrub::apply6(pkt.data_mut(), pd.hlen(), pd.tot_len(), tcp, a);
            }
        }
    }
}

/// pf_test's `if (st && st->rt) pf_route(...)` for a packet its state
/// passed: the decision pf_route makes, for the stack to carry out; or,
/// before it, divert_packet for a state of a `divert-packet` rule
/// (`crate::divert`), which takes the packet whatever its route.
#[cold]
fn route_state_packet(cx: &Cx, rule: Option<(u32, u32)>, slot: u32, pkt: &mut PacketBuf) {
    let Some(rule) = rule else { return };
    if let Some((rt, addr, state_dir, divert_port)) = cx.pf.states.route_of(slot, rule) {
        if divert_port != 0 {
            pkt.meta.pf_route = RouteDecision::DivertPacket(divert_port);
        } else if let Some(kind) = crate::route::kind_of(rt) {
            crate::route::apply(pkt, crate::route::decision(kind, state_dir, dir_code(cx.dir)), addr);
        }
    }
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
            match pd.af {
                Af::Inet => t.match_and_count(cx.worker, addr.v4(), out, op, pd.tot_len() as u64),
                Af::Inet6 => t.match_and_count6(cx.worker, addr.v6(), out, op, pd.tot_len() as u64),
            };
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
            // The batch's key words and length (`fast_key4`) are the fast
            // description's, for the same packets; pf out's are its key.
            let words = parse_fast(p).map(|pd| (pkt_key_words(&pd, Direction::In), pd.tot_len() as u16));
            assert_eq!(fast_key4(p), words, "{p:?}");
            if let Some(pd) = parse_fast(p) {
                let out = fast4::dir_words(pkt_key_words(&pd, Direction::In), Direction::Out);
                assert_eq!(out, pkt_key_words(&pd, Direction::Out), "{p:?}");
                assert_eq!(is_udp4(pkt_key_words(&pd, Direction::In)), pd.proto == PROTO_UDP);
            }
            if let Some(fast) = parse_fast(p) {
                accepted += 1;
                let full = parse_pd(p).unwrap_or_else(|r| panic!("{p:?}: fast accepted, full says {r:?}"));
                assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{p:?}");
                let ip = Ipv4Packet::new_unchecked(&p[..]);
                assert!(!ip.is_fragment());
                // What the fast path takes, pf_normalize_tcp leaves alone.
                if fast.proto == PROTO_TCP {
                    let mut q = p.clone();
                    assert_eq!(normalize_tcp(&mut q[20..fast.tot_len()]), Some(fast.tcp.flags), "{p:?}");
                    assert_eq!(&q, p);
                }
            }
        }
        assert!(accepted > 100, "{accepted}");
    }

    /// The IPv6 key words built straight from a description are the
    /// words of its key (`StateKey::words`), both ways, ids held or not.
    #[test]
    fn ipv6_key_words_are_the_keys_words() {
        let mut pd = Pd::ip(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, PROTO_UDP, 0, 40, 60);
        pd.af = Af::Inet6;
        pd.src = PfAddr::from_v6("2001:db8:fffd::1".parse().unwrap());
        pd.dst = PfAddr::from_v6("2001:db8:fffd::2".parse().unwrap());
        (pd.sport, pd.dport) = (5000, 53);
        for dir in [Direction::In, Direction::Out] {
            assert_eq!(pkt_key_words(&pd, dir), pkt_key(&pd, dir).words());
        }
        let ids = [crate::state::v6ids::acquire(pd.src), crate::state::v6ids::acquire(pd.dst)];
        for dir in [Direction::In, Direction::Out] {
            assert_eq!(pkt_key_words(&pd, dir), pkt_key(&pd, dir).words());
            assert_ne!(pkt_key_words(&pd, dir).0 as u32, 0);
        }
        ids.into_iter().for_each(crate::state::v6ids::release);
    }

    /// pf in's note on an IPv6 packet (`in_key_words`) gives both hooks
    /// the words a lookup gives (`pkt_key_words`), for the packet's own
    /// addresses only; without ids for both addresses there is no note.
    #[test]
    fn the_ipv6_note_gives_a_lookups_key_words_for_its_own_addresses_only() {
        use crate::state::v6ids;
        let frame = |src: &str, dst: &str| {
            let mut p = vec![0x60, 0, 0, 0, 0, 10, PROTO_UDP, 64];
            p.extend_from_slice(&src.parse::<std::net::Ipv6Addr>().unwrap().octets());
            p.extend_from_slice(&dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
            p.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 10, 0, 0, 0x61, 0x62]);
            PacketBuf::from_slice(&p)
        };
        let (a, b, c) = ("2001:db8:fffc::1", "2001:db8:fffc::2", "2001:db8:fffc::3");
        let mut pkt = Some(frame(a, b));
        let pd = parse_fast6(pkt.as_ref().unwrap().data()).unwrap();
        // No ids yet: the words say no state, and nothing is noted.
        let _ = in_key_words(&pd, &mut pkt);
        let p = pkt.as_ref().unwrap();
        assert_eq!(p.meta.flags & mflags::PF_NOTE6, 0);
        assert_eq!(noted_key_words6(&pd, Direction::In, p), None);
        let ids = [v6ids::acquire(pd.src), v6ids::acquire(pd.dst)];
        assert_eq!(in_key_words(&pd, &mut pkt), pkt_key_words(&pd, Direction::In));
        let p = pkt.as_ref().unwrap();
        assert_ne!(p.meta.flags & mflags::PF_NOTE6, 0);
        for dir in [Direction::In, Direction::Out] {
            assert_eq!(noted_key_words6(&pd, dir, p), Some(pkt_key_words(&pd, dir)), "{dir:?}");
        }
        // Another packet's addresses (either one, or both swapped: a
        // reply built in the buffer) do not take the note's ids.
        let note = (p.meta.flags, p.pf_note6);
        for (s, d) in [(c, b), (a, c), (b, a)] {
            let mut q = frame(s, d);
            (q.meta.flags, q.pf_note6) = note;
            let qd = parse_fast6(q.data()).unwrap();
            for dir in [Direction::In, Direction::Out] {
                assert_eq!(noted_key_words6(&qd, dir, &q), None, "{s} -> {d}");
            }
        }
        // A packet pf in finds no ids for loses the note it carried.
        let mut q = Some(frame(a, c));
        let (qm, qn) = note;
        (q.as_mut().unwrap().meta.flags, q.as_mut().unwrap().pf_note6) = (qm, qn);
        let qd = parse_fast6(q.as_ref().unwrap().data()).unwrap();
        let _ = in_key_words(&qd, &mut q);
        assert_eq!(q.as_ref().unwrap().meta.flags & mflags::PF_NOTE6, 0);
        ids.into_iter().for_each(v6ids::release);
    }

    /// `fast_parse_agrees_with_the_full_parse` for IPv6: what the fast
    /// parse takes (no extension header, UDP or plain TCP), `parse_pd6`
    /// takes and describes the same way; and it takes nothing with an
    /// extension header, a jumbogram's zero length or a short payload.
    #[test]
    fn fast_parse6_agrees_with_the_full_parse() {
        let ip6 = |nh: u8, l4: &[u8]| {
            let mut p = vec![0x6a, 0xb1, 0x23, 0x45, 0, 0, nh, 64];
            p[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
            p.extend_from_slice(&"2001:db8:1::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
            p.extend_from_slice(&"2001:db8:2::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
            p.extend_from_slice(l4);
            p
        };
        let udp = [0x13, 0x88, 0, 53, 0, 10, 0, 0, 0x61, 0x62];
        let mut tcp = vec![0x9c, 0x40, 0, 22, 0, 0, 3, 0xe9, 0, 0, 0x13, 0x89, 0x50, TH_ACK, 0x20, 0, 0, 0, 0, 0];
        tcp.extend_from_slice(b"data");
        let packets = [ip6(PROTO_UDP, &udp), ip6(PROTO_TCP, &tcp)];
        let mut all = packets.to_vec();
        for p in &packets {
            for i in 0..p.len() {
                for v in [0u8, 1, 2, 0x0f, 0x10, 0x11, 0x20, 0x3a, 0x40, 0x50, 0x60, 0x80, 0xff] {
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
            if let Some(fast) = parse_fast6(p) {
                accepted += 1;
                assert_eq!(fast.af, Af::Inet6);
                assert_eq!(p[6], fast.proto, "no extension header: {p:?}");
                let full = parse_pd6(p).unwrap_or_else(|r| panic!("{p:?}: fast accepted, full says {r:?}"));
                assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{p:?}");
                if fast.proto == PROTO_TCP {
                    let mut q = p.clone();
                    assert_eq!(normalize_tcp(&mut q[40..fast.tot_len()]), Some(fast.tcp.flags), "{p:?}");
                    assert_eq!(&q, p);
                }
            }
        }
        assert!(accepted > 100, "{accepted}");
        // a hop-by-hop header first, a zero payload length: not taken
        let mut hbh = ip6(0, &[PROTO_UDP, 0, 1, 4, 0, 0, 0, 0]);
        hbh.extend_from_slice(&udp);
        assert!(parse_fast6(&hbh).is_none());
        let mut jumbo = packets[0].clone();
        jumbo[4..6].copy_from_slice(&[0, 0]);
        assert!(parse_fast6(&jumbo).is_none());
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

    /// The batch hook keeps a description per packet of the batch: past
    /// 64 bytes the established path measurably slows down.
    #[test]
    fn a_packet_description_fits_in_a_cache_line() {
        assert!(std::mem::size_of::<Option<Pd>>() <= 64, "{}", std::mem::size_of::<Option<Pd>>());
    }

    #[test]
    fn rst_answers_an_ack_with_its_ack_number_and_a_syn_with_seq_plus_one() {
        let syn = TcpSeg { flags: TH_SYN, seq: 1000, ack: 0, win: 0, len: 0, wscale: 0 };
        assert_eq!(rst_numbers(&syn), (0, 1001, TH_RST | TH_ACK));
        let data = TcpSeg { flags: TH_ACK, seq: 5000, ack: 7777, win: 0, len: 100, wscale: 0 };
        assert_eq!(rst_numbers(&data), (7777, 5100, TH_RST | TH_ACK));
        let fin = TcpSeg { flags: TH_FIN | TH_ACK, seq: 5000, ack: 7777, win: 0, len: 10, wscale: 0 };
        assert_eq!(rst_numbers(&fin), (7777, 5011, TH_RST | TH_ACK));
    }
}
