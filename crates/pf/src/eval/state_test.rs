//! pf_test_state_*: a packet against the state table (TCP, UDP/other,
//! ICMP), including the inline established path.

use super::*;
use crate::state::{FAST_FWD, FAST_REV};

/// The common case whole and inline in the hook's loop, so that the
/// state's view and the verdict stay in registers (returned through
/// memory from calls they cost a store-forwarding stall per packet): a
/// UDP or other non-TCP, non-ICMP packet `parse_fast` took, whose state
/// the packet's link names (pf out: the reverse link pf in left; pf in:
/// `hint`, the batch's guess) and which changes neither the peer states
/// nor the timeout. For IPv6 only a plain state (no translation, log,
/// scrub, route, tag or rtable). `None`: anything else, for
/// `test_parsed` (which then decides it from the start).
#[inline(always)]
pub fn test_established(cx: &Cx, pd: &Pd, pkt: &mut PacketBuf, hint: u32) -> Option<Decision> {
    if pd.proto == PROTO_TCP || pd.proto == PROTO_ICMP {
        return None;
    }
    if pd.af != Af::Inet {
        return test_established6(cx, pd, pkt, hint);
    }
    let mut link = if cx.dir == Direction::In { (hint as u64) << 32 } else { pkt.meta.pf_link };
    let key = pkt_key_words(pd, cx.dir);
    let v = cx.pf.states.probe_linked(cx.link_hint(link), key, cx.kif())?;
    let fwd = v.direction == dir_code(cx.dir);
    if !other_steady(&v, fwd, pd.proto == PROTO_UDP) {
        return None;
    }
    // The plain state (no translation, logging, scrubbing, routing, tag or
    // rtable; no bad options to judge): the rule's counters and done,
    // without a `Passed` built in memory and read back.
    // A translating state with nothing else to do: the same, plus the
    // rewrite from its keys' words.
    let extra = v.flags & PLAIN_MASK;
    if (extra == 0 || extra == sflags::NAT) && v.tag == 0 && !(fwd && v.rtable >= 0) && !pd.badopts {
        let to = if extra != 0 { nat::view_target(cx.pf.states.keys(v.idx)?, key, fwd, cx.dir)? } else { None };
        cx.counters.searches.inc();
        cx.pf.states.touch(v.idx, fwd, pd.tot_len() as u64, cx.now.as_nanos());
        cx.relink(&mut link, v.idx, v.rev);
        pkt.meta.pf_link = link;
        count_state_rule(cx, v.ruleset_gen, v.rule_nr, pd.tot_len());
        if let Some(to) = to {
            nat::translate(pkt, pd, &to);
        }
        return Some(Decision::Pass);
    }
    // An af-to state's packets change family: `test_parsed`'s way.
    if v.flags & sflags::AFTO != 0 {
        return None;
    }
    // A translating state: the rewrite from its keys' words, no lock.
    let to =
        if v.flags & sflags::NAT != 0 { nat::view_target(cx.pf.states.keys(v.idx)?, key, fwd, cx.dir)? } else { None };
    cx.counters.searches.inc();
    cx.pf.states.touch(v.idx, fwd, pd.tot_len() as u64, cx.now.as_nanos());
    cx.relink(&mut link, v.idx, v.rev);
    pkt.meta.pf_link = link;
    let mut p = view_passed(&v, fwd);
    p.xlate = to;
    Some(state_passed(cx, pd, pkt, &p))
}

/// `test_established` for IPv6: a plain state only (no translation, log,
/// scrub, route, tag or rtable: a state's rewrite words hold address
/// ids, not addresses); anything else `None`, for the IPv6 path. Out of
/// line from IPv4's batch loop; IPv6's has it inline
/// (`test_established6_inline`).
#[inline(never)]
pub fn test_established6(cx: &Cx, pd: &Pd, pkt: &mut PacketBuf, hint: u32) -> Option<Decision> {
    test_established6_inline(cx, pd, pkt, hint)
}

/// `test_established6` inline, for IPv6's instance of the batch loop.
#[inline(always)]
pub fn test_established6_inline(cx: &Cx, pd: &Pd, pkt: &mut PacketBuf, hint: u32) -> Option<Decision> {
    let mut link = if cx.dir == Direction::In { (hint as u64) << 32 } else { pkt.meta.pf_link };
    // The ids pf in noted in the packet (no id work at all); without a
    // note, the linked state's address ids checked against the packet's
    // addresses instead of looked up (two hashed lookups a hook spared).
    let key = match noted_key_words6(pd, cx.dir, pkt) {
        Some(k) => k,
        None => {
            let linked = cx.link_hint(link).checked_sub(1).and_then(|i| cx.pf.states.key_words_of(i));
            linked_key_words6(pd, cx.dir, linked)
        }
    };
    let v = cx.pf.states.probe_linked(cx.link_hint(link), key, cx.kif())?;
    let fwd = v.direction == dir_code(cx.dir);
    // (`fast`: UDP only, as `parse_fast6` takes UDP or TCP.)
    if v.fast & if fwd { FAST_FWD } else { FAST_REV } == 0 || v.flags & sflags::NAT != 0 || pd.badopts {
        return None;
    }
    cx.counters.searches.inc();
    cx.pf.states.touch(v.idx, fwd, pd.tot_len() as u64, cx.now.as_nanos());
    cx.relink(&mut link, v.idx, v.rev);
    pkt.meta.pf_link = link;
    count_state_rule(cx, v.ruleset_gen, v.rule_nr, pd.tot_len());
    Some(Decision::Pass)
}

/// The state flags that take a packet off `test_established`'s shortest
/// path (each asks `state_passed` for work besides counting).
const PLAIN_MASK: u8 = STATE_LOG | sflags::NAT | sflags::SCRUB | sflags::ROUTED | sflags::AFTO;

/// The rule that made a state counts the packet it passed (pf_test's
/// `pf_counters_inc` on the state's rule).
#[inline(always)]
pub(super) fn count_state_rule(cx: &Cx, gen: u32, nr: u32, len: usize) {
    if let Some(c) = cx.rs.state_rule_index(gen, nr).and_then(|i| cx.rules.rule(i)) {
        c.count(cx.dir, len as u64);
    }
}

/// The state bits that have its packets logged.
pub(super) const STATE_LOG: u8 = sflags::LOG_ALL | sflags::LOG_MATCHES_ALL;

pub(super) fn state_pass(st: &StateData, slot: u32, fwd: bool) -> StateVerdict {
    StateVerdict::Pass(Passed {
        rule: Some((st.ruleset_gen, st.rule_nr)),
        log: st.flags & STATE_LOG,
        slot,
        tag: st.tag,
        rtable: if fwd && st.rtable >= 0 { Some(st.rtable as u16) } else { None },
        allow_opts: st.flags & sflags::ALLOW_OPTS != 0,
        xlate: None,
        xlate6: None,
        routed: st.flags & sflags::ROUTED != 0,
        scrub: st.flags & sflags::SCRUB != 0,
    })
}

/// `state_pass` for a packet a translating state rewrites (`to`, or
/// `to6` for an IPv6 packet).
pub(super) fn state_pass_xlate(
    st: &StateData,
    slot: u32,
    fwd: bool,
    (to, to6): (Option<nat::Endpoints>, Option<nat6::Endpoints6>),
) -> StateVerdict {
    let mut v = state_pass(st, slot, fwd);
    if let StateVerdict::Pass(p) = &mut v {
        p.xlate = to;
        p.xlate6 = to6;
    }
    v
}

pub(super) fn view_pass(v: &StateView, fwd: bool) -> StateVerdict {
    StateVerdict::Pass(view_passed(v, fwd))
}

#[inline(always)]
pub(super) fn view_passed(v: &StateView, fwd: bool) -> Passed {
    Passed {
        rule: Some((v.ruleset_gen, v.rule_nr)),
        log: v.flags & STATE_LOG,
        slot: v.idx,
        tag: v.tag,
        rtable: if fwd && v.rtable >= 0 { Some(v.rtable as u16) } else { None },
        allow_opts: v.flags & sflags::ALLOW_OPTS != 0,
        xlate: None,
        xlate6: None,
        routed: v.flags & sflags::ROUTED != 0,
        scrub: v.flags & sflags::SCRUB != 0,
    }
}

pub(super) fn account(st: &mut StateData, fwd: bool, bytes: usize) {
    let i = if fwd { 0 } else { 1 };
    st.packets[i] += 1;
    st.bytes[i] += bytes as u64;
}

pub(super) fn set_timeout(st: &mut StateData, now: Instant, t: Timeout) {
    st.expire = now.as_nanos();
    st.timeout = tidx(t) as u8;
}

pub(super) enum TcpOutcome {
    Pass(StateVerdict, Option<(u32, u32)>),
    /// A state whose handshake `synproxy state` proxies.
    Proxy(synproxy::ProxyStep),
    Drop(Option<Reason>, Option<TcpReply>),
    Reuse,
    /// A translating state this packet may not use (wrong key for its
    /// direction): as no state.
    NotFound,
}

pub(super) struct TcpReply {
    seq: u32,
    ack: u32,
    flags: u8,
}

pub(super) fn test_state_tcp(
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
    // pf_src_connlimit's flush of the source's other states, done once
    // this state's lock is released: (the state, its source, global).
    let mut flush: Option<(StateData, std::net::IpAddr, bool)> = None;
    let mut af = afto::AfRewrite::Keep;
    let mut diverted = false;
    let out = cx.with_state_linked(key, link, |slot, st| {
        diverted = st.src_flags & srcflags::DIVERTED != 0;
        let (to, fwd) = if st.flags & sflags::AFTO != 0 {
            let Some((fwd, rw)) = afto::state_rewrite(st, pf.states.nat_key(slot), key, cx.dir) else {
                return TcpOutcome::NotFound;
            };
            af = rw;
            ((None, None), fwd)
        } else {
            let Some(to) = nat6::targets(st, pf.states.nat_key(slot), key, cx.dir, pd.af) else {
                return TcpOutcome::NotFound;
            };
            (to, st.direction == dirc)
        };
        let (src, dst) = if fwd { (st.src, st.dst) } else { (st.dst, st.src) };
        // The handshake completes when this packet leaves both peers
        // established: the source node counts the connection.
        let completes = |st: &StateData| {
            st.src_flags & (srcflags::SRC_NODE | srcflags::TCP_EST) == srcflags::SRC_NODE
                && !(src.state == tcps::ESTABLISHED && dst.state == tcps::ESTABLISHED)
                && st.src.state == tcps::ESTABLISHED
                && st.dst.state == tcps::ESTABLISHED
        };
        let connlimit = |st: &mut StateData, flush: &mut Option<(StateData, std::net::IpAddr, bool)>| {
            st.src_flags |= srcflags::TCP_EST;
            let c = pf.srcnodes.connlimit(st, now.as_nanos(), |a, g| *flush = Some((*st, a, g)));
            for i in c.lcounters() {
                pf.counters.get(cx.worker).lcounters[i].inc();
            }
            if c.bad {
                // pf_src_connlimit kills this state.
                st.timeout = crate::state::TIMEOUT_PURGE;
            }
            c.bad
        };
        if synproxy::proxying(st) {
            // pf_synproxy, before anything else looks at the segment.
            let stack = pf.states.nat_key(slot).filter(|_| st.flags & sflags::NAT != 0);
            let (wire, stack) = (st.key, stack.map_or(st.key, crate::state::unpack));
            let limit = |st: &mut StateData| st.src_flags & srcflags::SRC_NODE != 0 && connlimit(st, &mut flush);
            let step = synproxy::step(st, fwd, pd, &wire, &stack, softnet_core::rng::random_u32, limit);
            if step != synproxy::ProxyStep::Drop {
                st.expire = now.as_nanos();
            }
            return TcpOutcome::Proxy(step);
        }
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
            if completes(st) && connlimit(st, &mut flush) {
                return TcpOutcome::Drop(Some(Reason::SrcLimit), None);
            }
            account(st, fwd, pd.tot_len());
            return TcpOutcome::Pass(state_pass_xlate(st, slot, fwd, to), None);
        }
        let (track, t) = if st.flags & sflags::SCRUB != 0
            && pf.states.scrub_word(slot).flags & crate::scrub::scrubflags::SCRUB_TCP != 0
        {
            track_normalized(cx, pd, pkt.data_mut(), slot, st, fwd, src.seqlo == 0)
        } else {
            tcp_track::track_full(st, fwd, &seg, || pf.iss(pd, now))
        };
        match track {
            Track::Pass { rewrite } => {
                if let Some(t) = t {
                    set_timeout(st, now, t);
                }
                if completes(st) && connlimit(st, &mut flush) {
                    return TcpOutcome::Drop(Some(Reason::SrcLimit), None);
                }
                account(st, fwd, pd.tot_len());
                TcpOutcome::Pass(state_pass_xlate(st, slot, fwd, to), rewrite)
            }
            Track::DropTs => TcpOutcome::Drop(Some(Reason::BadTimestamp), None),
            Track::Drop { rst } => {
                TcpOutcome::Drop(Some(Reason::StateMismatch), rst.map(|seq| TcpReply { seq, ack: 0, flags: TH_RST }))
            }
        }
    });
    if let Some((st, src, global)) = flush {
        pf.flush_source(&st, src, global);
    }
    match out {
        None | Some(TcpOutcome::Reuse) | Some(TcpOutcome::NotFound) => StateVerdict::NoState,
        Some(TcpOutcome::Proxy(step)) => match step {
            synproxy::ProxyStep::Consume(sends) => {
                synproxy::send(&sends, bufs, replies);
                StateVerdict::Synproxy
            }
            synproxy::ProxyStep::Drop => StateVerdict::Drop(Some(Reason::Synproxy)),
            synproxy::ProxyStep::SrcLimit => StateVerdict::Drop(Some(Reason::SrcLimit)),
        },
        Some(TcpOutcome::Pass(v, rewrite)) => {
            if let Some((seq, ack)) = rewrite {
                patch_seq_ack(pkt, pd.hlen(), seq, ack);
            }
            // A diverted connection's packets coming in (pf_test's
            // PF_TAG_DIVERTED by the state's rule).
            if diverted && cx.dir == Direction::In {
                pkt.meta.flags |= mflags::PF_DIVERTED;
            }
            afto_pass(pkt, pd, &af, v)
        }
        Some(TcpOutcome::Drop(reason, reply)) => {
            if let Some(r) = reply {
                let p = if pd.af == Af::Inet6 {
                    build_tcp6(bufs, pd.dst.v6(), pd.src.v6(), pd.dport, pd.sport, r.seq, r.ack, r.flags, DEFAULT_TTL)
                } else {
                    build_tcp(bufs, pd.dst4(), pd.src4(), pd.dport, pd.sport, r.seq, r.ack, r.flags, 0, DEFAULT_TTL)
                };
                if let Some(p) = p {
                    replies.push(p);
                }
            }
            StateVerdict::Drop(reason)
        }
    }
}

/// pf_tcp_track_full of a `scrub (reassemble tcp)` state (in slot
/// `slot`, locked) on the IPv4 packet `ip`: the sender's peer starts at
/// its first packet (`first`, pf_normalize_tcp_init), and the segment is
/// normalized where pf does (pf_normalize_tcp_stateful).
fn track_normalized(
    cx: &Cx,
    pd: &Pd,
    ip: &mut [u8],
    slot: u32,
    st: &mut StateData,
    fwd: bool,
    first: bool,
) -> (Track, Option<Timeout>) {
    let pf = cx.pf;
    let now = cx.now.as_nanos();
    let mut peers = pf.states.tcp_scrub_load(slot).unwrap_or_default();
    let (si, di) = if fwd { (0, 1) } else { (1, 0) };
    if first && !peers[si].live() {
        peers[si] = crate::tcpnorm::init(ip, pd.hlen(), now, softnet_core::rng::random_u32);
    }
    let (created, fudge) = (st.creation, super::rules::ts_fudge(cx, st));
    let out = tcp_track::track_full_norm(
        st,
        fwd,
        &pd.tcp,
        || pf.iss(pd, cx.now),
        |src_state, dst_state| {
            let ncx = crate::tcpnorm::Ctx { src_state, dst_state, payload: pd.tcp.len, now, created, ts_fudge: fudge };
            let [mut s, mut d] = [peers[si], peers[di]];
            let r = crate::tcpnorm::stateful(ip, pd.hlen(), &mut s, &mut d, &ncx);
            peers[si] = s;
            peers[di] = d;
            r.is_err()
        },
    );
    pf.states.tcp_scrub_store(slot, &peers);
    out
}

/// Rewrites a TCP segment's sequence and acknowledgment numbers with
/// incremental checksum updates (RFC 1624).
pub(super) fn patch_seq_ack(pkt: &mut PacketBuf, hlen: usize, seq: u32, ack: u32) {
    let d = &mut pkt.data_mut()[hlen..];
    let mut t = TcpPacket::new_unchecked(d);
    let mut c = t.checksum();
    c = checksum::update32(c, t.seq_number(), seq);
    c = checksum::update32(c, t.ack_number(), ack);
    t.set_seq_number(seq);
    t.set_ack_number(ack);
    t.set_checksum(c);
}

pub(super) use crate::state::other_step;

/// Whether a packet (`fwd`: in the state's direction) leaves the state
/// the view shows as it is: peer states and timeout unchanged by
/// `other_step`, as for every packet of an established flow, so only the
/// counters and the activity time move (`StateTable::touch`, no lock).
#[inline(always)]
pub(super) fn other_steady(v: &StateView, fwd: bool, udp: bool) -> bool {
    let (s0, d0) = if fwd { (v.src_state, v.dst_state) } else { (v.dst_state, v.src_state) };
    let (mut s, mut d) = (s0, d0);
    let t = other_step(udp, &mut s, &mut d);
    s == s0 && d == d0 && v.timeout == tidx(t) as u8
}

pub(super) fn test_state_other(cx: &Cx, pd: &Pd, pkt: &mut PacketBuf, link: &mut u64) -> StateVerdict {
    let key = pkt_key_words(pd, cx.dir);
    let dirc = dir_code(cx.dir);
    let udp = pd.proto == PROTO_UDP;
    // Fast path: the packet changes neither the peer states nor the
    // timeout (every packet of an established flow), so only the counters
    // and the activity time move, without the state's lock.
    let probe = if pd.af == Af::Inet6 { cx.probe_linked_words(key, *link) } else { cx.probe_linked(pd, *link) };
    match probe {
        Probe::Miss => return StateVerdict::NoState,
        Probe::Hit(v) => {
            let fwd = v.direction == dirc;
            if v.flags & sflags::AFTO == 0 && other_steady(&v, fwd, udp) {
                let mut p = view_passed(&v, fwd);
                if v.flags & sflags::NAT != 0 {
                    let Some(keys) = cx.pf.states.keys(v.idx) else { return StateVerdict::NoState };
                    let found = if pd.af == Af::Inet6 {
                        nat::view_target(keys, key, fwd, cx.dir).map(|t| p.xlate6 = t)
                    } else {
                        nat::view_target(keys, key, fwd, cx.dir).map(|t| p.xlate = t)
                    };
                    if found.is_none() {
                        return StateVerdict::NoState;
                    }
                }
                cx.pf.states.touch(v.idx, fwd, pd.tot_len() as u64, cx.now.as_nanos());
                cx.relink(link, v.idx, v.rev);
                return StateVerdict::Pass(p);
            }
        }
        Probe::Busy => {}
    }
    let mut af = afto::AfRewrite::Keep;
    let mut diverted = false;
    let v = cx
        .with_state_linked(key, link, |slot, st| {
            diverted = st.src_flags & srcflags::DIVERTED != 0;
            let (to, fwd) = if st.flags & sflags::AFTO != 0 {
                let Some((fwd, rw)) = afto::state_rewrite(st, cx.pf.states.nat_key(slot), key, cx.dir) else {
                    return StateVerdict::NoState;
                };
                af = rw;
                ((None, None), fwd)
            } else {
                let Some(to) = nat6::targets(st, cx.pf.states.nat_key(slot), key, cx.dir, pd.af) else {
                    return StateVerdict::NoState;
                };
                (to, st.direction == dirc)
            };
            let (src, dst) = if fwd { (&mut st.src, &mut st.dst) } else { (&mut st.dst, &mut st.src) };
            let t = other_step(udp, &mut src.state, &mut dst.state);
            set_timeout(st, cx.now, t);
            account(st, fwd, pd.tot_len());
            state_pass_xlate(st, slot, fwd, to)
        })
        .unwrap_or(StateVerdict::NoState);
    // A diverted UDP state's datagrams coming in (its mirrored timeout
    // kept them off the lock-free paths above).
    if diverted && cx.dir == Direction::In && matches!(v, StateVerdict::Pass(_)) {
        pkt.meta.flags |= mflags::PF_DIVERTED;
    }
    afto_pass(pkt, pd, &af, v)
}

/// A packet an af-to state passed, translated into the other family
/// (`afto::apply`); one that cannot be is dropped as `translate`.
#[cold]
pub(super) fn afto_pass(pkt: &mut PacketBuf, pd: &Pd, af: &afto::AfRewrite, v: StateVerdict) -> StateVerdict {
    match v {
        StateVerdict::Pass(_) if *af != afto::AfRewrite::Keep && !afto::apply(pkt, pd, af) => {
            StateVerdict::Drop(Some(Reason::Translate))
        }
        v => v,
    }
}

pub(super) fn test_state_icmp(cx: &Cx, pd: &Pd, pkt: &mut PacketBuf, link: &mut u64) -> StateVerdict {
    let data = pkt.data();
    let (is_error, icmp_dir, _) = icmp_mapping(pd.icmp_type);
    let dirc = dir_code(cx.dir);
    if !is_error {
        let key = pkt_key_words(pd, cx.dir);
        match cx.probe_linked(pd, *link) {
            Probe::Miss => return StateVerdict::NoState,
            Probe::Hit(v) if v.timeout == tidx(Timeout::IcmpError) as u8 && v.flags & sflags::NAT == 0 => {
                let fwd = v.direction == dirc;
                let flow = if fwd { Direction::In } else { Direction::Out };
                if flow != icmp_dir {
                    return StateVerdict::Drop(Some(Reason::StateMismatch));
                }
                cx.pf.states.touch(v.idx, fwd, pd.tot_len() as u64, cx.now.as_nanos());
                cx.relink(link, v.idx, v.rev);
                return view_pass(&v, fwd);
            }
            _ => {}
        }
        let mut af = afto::AfRewrite::Keep;
        let v = cx
            .with_state_linked(key, link, |slot, st| {
                let (to, fwd) = if st.flags & sflags::AFTO != 0 {
                    let Some((fwd, rw)) = afto::state_rewrite(st, cx.pf.states.nat_key(slot), key, cx.dir) else {
                        return StateVerdict::NoState;
                    };
                    af = rw;
                    (None, fwd)
                } else {
                    let Some(to) = nat::state_target(st, cx.pf.states.nat_key(slot), key, cx.dir) else {
                        return StateVerdict::NoState;
                    };
                    (to, st.direction == dirc)
                };
                // A request must flow in the state's direction, a reply against it.
                let flow = if fwd { Direction::In } else { Direction::Out };
                if flow != icmp_dir {
                    return StateVerdict::Drop(Some(Reason::StateMismatch));
                }
                set_timeout(st, cx.now, Timeout::IcmpError);
                account(st, fwd, pd.tot_len());
                state_pass_xlate(st, slot, fwd, (to, None))
            })
            .unwrap_or(StateVerdict::NoState);
        return afto_pass(pkt, pd, &af, v);
    }
    // An error: find the state of the packet it quotes.
    let inner = &data[pd.hlen() + icmpv4::HEADER_LEN..pd.tot_len()];
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
    if pd.dst4() != isrc {
        return StateVerdict::Drop(Some(Reason::StateMismatch));
    }
    let l4 = &inner[h2..];
    // The quoted packet went the other way: its source sits at index 1
    // for an inbound error.
    let (s, d) = if cx.dir == Direction::In { (1, 0) } else { (0, 1) };
    let mut key = StateKey { proto: iproto, ..StateKey::empty() };
    key.addr[s] = PfAddr::from_v4(isrc);
    key.addr[d] = PfAddr::from_v4(idst);
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
    let kw = key.words();
    let mut back = None;
    let mut af_back = None;
    let v = cx
        .with_state(kw, |slot, st| {
            // A translating state: the error travels as the packets of its
            // direction do (inbound by the wire key), and its quote goes back
            // to what it is on this side.
            if st.flags & sflags::AFTO != 0 {
                // af-to: an error from the IPv4 side about the IPv6 end's
                // translated packet goes to it as ICMPv6 (RFC 7915 §4.2):
                // NAT64's client, NAT46's server; anything else about such
                // a state is dropped.
                let nat = cx.pf.states.nat_key(slot);
                let nat46 = st.key.af == Af::Inet;
                // The IPv4 side's key: NAT64's translated, NAT46's own.
                let four = if nat46 { Some(st.key.words()) } else { nat };
                if st.direction != dirc && four == Some(kw) {
                    // one `afto::error_to4` made, leaving as it is
                    account(st, !nat46, pd.tot_len());
                    return state_pass(st, slot, !nat46);
                }
                let (Some(natw), true) = (nat, st.direction == dirc && four == Some(kw)) else {
                    return StateVerdict::Drop(Some(Reason::Translate));
                };
                // The quoted packet: NAT64's from the state's source (the
                // client), NAT46's from the server.
                let quoted_fwd = !nat46;
                if iproto == PROTO_TCP
                    && !tcp_track::is_sloppy(st)
                    && !tcp_track::quoted_seq_ok(st, quoted_fwd, quoted_seq)
                {
                    return StateVerdict::Drop(Some(Reason::StateMismatch));
                }
                let six = if nat46 { crate::state::unpack(natw) } else { st.key };
                af_back = Some((nat6::Endpoints6::from_key(&six, Direction::In), !nat46));
                account(st, nat46, pd.tot_len());
                return state_pass(st, slot, nat46);
            }
            let Some(to) = nat::state_target::<nat::Endpoints>(st, cx.pf.states.nat_key(slot), kw, cx.dir) else {
                return StateVerdict::NoState;
            };
            if let Some(to) = to {
                // `to` is the quote's key side seen as an inbound/outbound packet
                // of this direction; the quote itself went the other way.
                let (qs, qd) = (to.dst, to.src);
                let (qsp, qdp) = (to.dport, to.sport);
                back = Some(nat::Endpoints { src: qs, sport: qsp, dst: qd, dport: qdp });
            }
            if iproto == PROTO_TCP && !tcp_track::is_sloppy(st) {
                // The quoted packet is from the state's src when this error
                // flows against the state's direction.
                let quoted_fwd = st.direction != dirc;
                if !tcp_track::quoted_seq_ok(st, quoted_fwd, quoted_seq) {
                    return StateVerdict::Drop(Some(Reason::StateMismatch));
                }
            }
            let fwd = st.direction == dirc;
            account(st, fwd, pd.tot_len());
            state_pass(st, slot, fwd)
        })
        .unwrap_or(StateVerdict::NoState);
    if let (StateVerdict::Pass(_), Some(to)) = (&v, back) {
        nat::translate_icmp_error(pkt, pd, h2, iproto, &to);
    }
    if let (StateVerdict::Pass(_), Some((back, embed))) = (&v, af_back) {
        if !afto::error_to6(pkt, pd, back, embed) {
            return StateVerdict::Drop(Some(Reason::Translate));
        }
    }
    v
}
