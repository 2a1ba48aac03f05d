//! pf_test_rule / pf_match_rule: the rule walk with skip steps, logging
//! of matches, and state creation.

use super::*;
use crate::anchor::PF_ANCHOR_STACK_MAX;
use crate::compile::AnchorTarget;
use crate::srcnode::SN_ROUTE;
use crate::xlhold::Holds;

/// PF_MISMATCHAW, negated: `rtable` is the table the packet would be
/// routed in so far (a `match ... rtable` before, else its own), the one
/// `no-route` and `urpf-failed` look in.
#[inline]
pub(super) fn endpoint_matches(cx: &Cx, e: &EndpointMatch, af: Af, a: PfAddr, rtable: u16) -> bool {
    use crate::compile::AddrMatch;
    let hit = match e.addr {
        // IPv6 routes are not in pf's route lookup yet: an IPv6 address
        // is neither routable nor not (pf_routable without an answer).
        AddrMatch::NoRoute | AddrMatch::UrpfFailed if af == Af::Inet6 => false,
        AddrMatch::NoRoute => cx.pf.routable(a.v4(), rtable, None) == Some(false),
        AddrMatch::UrpfFailed => cx.pf.routable(a.v4(), rtable, Some(cx.ifp)) == Some(false),
        _ => {
            let lookup = |name: &str| cx.pf.if_addrs(name, cx.ifp);
            e.addr.matches(af, a, &lookup)
        }
    };
    hit != e.negated
}

/// What pf_match_rule gathers on its way through the rulesets
/// (`pf_test_ctx`).
struct Walk<'a> {
    tag: u16,
    rtable: Option<u16>,
    /// pf_rule_to_actions' scrub values of the `match` rules that
    /// matched (the deciding rule's are added after the walk).
    scrub: ScrubActs,
    /// pf_rule_actions' log bits, gathered from the `match` rules passed:
    /// a state logs each of its packets under every `log (all)` one (the
    /// state's match_rules); each `log (matches)` one makes every later
    /// matching rule log the packet once more (pf_log_matches).
    log_match: [u32; LOG_MATCH_MAX],
    log_match_n: usize,
    log_matches: u32,
    /// The last pass/block rule that matched (`ctx->rm`).
    matched: Option<&'a CRule>,
    /// pf_socket_lookup's (uid, gid), once a rule asked (`lookup.done`).
    owner: Option<(u32, u32)>,
    /// The last `match` rules with a nat-to and an rdr-to the packet
    /// matched: their translation holds unless the deciding rule has its
    /// own (pf_match_rule runs pf_get_transaddr on each match rule, and
    /// pf_test_rule on the deciding one).
    nat: Option<&'a CRule>,
    rdr: Option<&'a CRule>,
    /// The anchor rule last stepped into (`ctx->a`, which pf does not
    /// restore when it steps out), and the one `matched` was found under
    /// (`ctx->am`).
    a: Option<u32>,
    am: Option<u32>,
    /// Anchors stepped into (pf's anchor stack).
    depth: usize,
    /// Evaluations are counted per run of consecutive rules: `run..next`
    /// is the run so far (`next`: one past the last rule evaluated).
    run: usize,
    next: usize,
}

/// How a ruleset's walk ended (`enum pf_test_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The end of the ruleset: go on after the anchor rule.
    Ok,
    /// A `quick` rule matched (or a rule inside a `quick` anchor): stop.
    Quick,
    /// Anchors nested deeper than PF_ANCHOR_STACK_MAX: the packet is
    /// dropped.
    Fail,
}

/// pf_match_rule over the ruleset `node`: its rules with their skip
/// steps, stepping into anchors as pf_match_rule does (a wildcard anchor
/// evaluates each child anchor in turn; a `quick` anchor rule ends the
/// evaluation after the anchor when the rule that matched last was found
/// under it).
fn match_rules<'a>(cx: &Cx<'a>, pd: &Pd, pkt: &PacketBuf, node: usize, w: &mut Walk<'a>) -> Flow {
    let rs: &'a CompiledRuleset = cx.rs;
    let rules = &rs.rules;
    let hot = &rs.hot;
    let ifname = cx.ifp.name();
    // A fragment (PF_VPROTO_FRAGMENT) has no ports: rules with port
    // ops do not match it.
    let is_tcp_udp = !pd.frag && (pd.proto == PROTO_TCP || pd.proto == PROTO_UDP);
    let counters = rs.counters.get(cx.worker);
    let (src, dst) = (pd.src.0[0], pd.dst.0[0]);
    // pf_match_rule: a `keep state` rule does not match an ICMP reply.
    let reply_no_state = icmp_reply_no_state(pd);
    // The rules of the other family are skipped (pf_match_rule's
    // PF_TEST_ATTRIB on r->af); an IPv6 address is matched with the full
    // rule (the hot copy holds IPv4 networks).
    let (other_af, slow) = if pd.af == Af::Inet6 { (HOT_INET, HOT_SRC_SLOW | HOT_DST_SLOW) } else { (HOT_INET6, 0) };
    let n = &rs.nodes[node];
    let (mut i, end) = (n.start as usize, n.end as usize);
    while i < end {
        if i != w.next {
            counters.evaluated(w.run, w.next);
            w.run = i;
        }
        w.next = i + 1;
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
        if h.flags & other_af != 0 {
            i = h.skip[SKIP_AF] as usize;
            continue;
        }
        if h.proto.is_some_and(|p| p != pd.proto) {
            i = h.skip[SKIP_PROTO] as usize;
            continue;
        }
        let src_ok = if (h.flags | slow) & HOT_SRC_SLOW != 0 {
            endpoint_matches(cx, &rules[i].src, pd.af, pd.src, w.rtable.unwrap_or(pkt.meta.rtable))
        } else {
            src & h.src.1 == h.src.0
        };
        if !src_ok {
            i = h.skip[SKIP_SRC_ADDR] as usize;
            continue;
        }
        let dst_ok = if (h.flags | slow) & HOT_DST_SLOW != 0 {
            endpoint_matches(cx, &rules[i].dst, pd.af, pd.dst, w.rtable.unwrap_or(pkt.meta.rtable))
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
        let r: &'a CRule = &rules[i];
        if reply_no_state && keeps_state(r) && !r.sloppy {
            i += 1;
            continue;
        }
        if h.flags & HOT_REST != 0 {
            // pf_match_rule's PF_VPROTO_FRAGMENT: no TCP flags, ICMP type
            // or code, user or group to match a fragment by.
            if pd.frag
                && ((pd.proto == PROTO_TCP && !r.flags.is_any())
                    || r.icmp.is_some()
                    || r.rule.user.is_some()
                    || r.rule.group.is_some())
            {
                i += 1;
                continue;
            }
            if let Some(im) = r.icmp {
                if (pd.proto != PROTO_ICMP && pd.proto != PROTO_ICMPV6)
                    || im.icmp_type != pd.icmp_type
                    || im.code.is_some_and(|c| c != pd.icmp_code)
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
                if (w.tag == id) == neg {
                    i += 1;
                    continue;
                }
            }
            // `fragment`: PFRULE_FRAGMENT wants a packet left in fragments
            // (`set reassemble no`); with reassembly on, none is.
            if r.rule.fragment && !pd.frag {
                i += 1;
                continue;
            }
            // `prio N`: the packet's priority as it came to this hook
            // (IFQ_DEFPRIO unless pf in's `set prio` gave it another; a
            // `set prio` of this walk applies after it, as pf_test does).
            if r.rule.prio.is_some_and(|p| p != pkt.meta.prio()) {
                i += 1;
                continue;
            }
            // an expired `once` rule (PFRULE_EXPIRED)
            if r.rule.once && r.expired.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                continue;
            }
            // `received-on`: pf_match_rcvif, the interface the packet
            // came in on (this one, inbound); a packet the router made
            // came in on none.
            if let Some(m) = &r.rcv {
                let name = if cx.dir == Direction::In {
                    Some(cx.ifp.name().to_string())
                } else {
                    cx.pf.ifname_lookup.load().as_ref().and_then(|f| f(pkt.meta.rcvif))
                };
                if !name.is_some_and(|n| m.matches(&n)) {
                    i += 1;
                    continue;
                }
            }
            // `probability`: pf_test_rule draws arc4random_uniform(UINT_MAX
            // - 1) + 1 per rule looked at and goes on when `prob` is not
            // above it.
            if let Some(p) = r.rule.probability {
                let x = softnet_core::rng::with(|g| g.uniform(u32::MAX - 1)) + 1;
                if p <= x {
                    i += 1;
                    continue;
                }
            }
            // pf_socket_lookup, once per packet and only for a rule that
            // asks: the owner of the local socket the packet belongs to
            // (uid and gid unknown for a forwarded packet).
            if r.rule.user.is_some() || r.rule.group.is_some() {
                let (uid, gid) = *w.owner.get_or_insert_with(|| crate::divert::socket_owner(cx, pd));
                if r.rule.user.is_some_and(|u| !u.matches(uid)) || r.rule.group.is_some_and(|g| !g.matches(gid)) {
                    i += 1;
                    continue;
                }
            }
            // `max-pkt-rate`: every packet the rule would match counts;
            // over the rate it no longer matches (pf_add_threshold, then
            // pf_check_threshold).
            if let Some(t) = &r.pktrate {
                let mut t = t.lock();
                t.add(cx.now.as_secs());
                if t.exceeded() {
                    i += 1;
                    continue;
                }
            }
        }
        // The rule matches.
        if r.tag != 0 {
            w.tag = r.tag;
        }
        if let Some(target) = r.anchor {
            let flow = step_into_anchor(cx, pd, pkt, r, target, w);
            if flow != Flow::Ok {
                return flow;
            }
            i += 1;
            continue;
        }
        if let Some(t) = r.rtable {
            w.rtable = Some(t);
        }
        if r.action == Action::Match {
            w.scrub.add(&r.scrub);
            if r.nat.is_some() {
                w.nat = Some(r);
            }
            if r.rdr.is_some() {
                w.rdr = Some(r);
            }
            if let Some(c) = counters.rule(i) {
                c.count(cx.dir, pd.tot_len() as u64);
            }
            if let Some(l) = r.log {
                cx.log_under(Some(r.nr), w.a, pflog::PF_MATCH, Reason::Match, pd, pkt.data());
                if l.all && w.log_match_n < LOG_MATCH_MAX {
                    w.log_match[w.log_match_n] = r.nr;
                    w.log_match_n += 1;
                }
                if l.matches {
                    w.log_matches += 1;
                }
            }
            if w.log_matches > 0 {
                log_later_match(cx, r, w.a, w.log_matches, pd, pkt);
            }
            i += 1;
            continue;
        }
        if w.log_matches > 0 {
            log_later_match(cx, r, w.a, w.log_matches, pd, pkt);
        }
        w.matched = Some(r);
        w.am = w.a;
        if r.quick {
            return Flow::Quick;
        }
        i += 1;
    }
    Flow::Ok
}

/// pf_match_rule's anchor step (pf_anchor_stack_push / _pop): the
/// ruleset the anchor rule `r` calls, or each child of it for a
/// wildcard, with `r` as the anchor rule the rules inside are found
/// under (`ctx->a`, restored when the step ends); after each, a `quick`
/// anchor rule stops the evaluation when the last rule that matched was
/// found right under it (`*ctx->am == r`).
#[inline(never)]
fn step_into_anchor<'a>(
    cx: &Cx<'a>,
    pd: &Pd,
    pkt: &PacketBuf,
    r: &'a CRule,
    target: AnchorTarget,
    w: &mut Walk<'a>,
) -> Flow {
    if w.depth >= PF_ANCHOR_STACK_MAX {
        return Flow::Fail;
    }
    w.depth += 1;
    let outer = w.a;
    let step = |w: &mut Walk<'a>, node: usize| {
        w.a = Some(r.nr);
        let flow = match_rules(cx, pd, pkt, node, w);
        if flow != Flow::Ok {
            return flow;
        }
        w.a = outer;
        if r.quick && w.am == Some(r.nr) {
            Flow::Quick
        } else {
            Flow::Ok
        }
    };
    let node = target.node as usize;
    let mut flow = Flow::Ok;
    if target.wildcard {
        for &child in &cx.rs.nodes[node].children {
            flow = step(w, child as usize);
            if flow != Flow::Ok {
                break;
            }
        }
    } else {
        flow = step(w, node);
    }
    w.depth -= 1;
    flow
}

/// pf_test_rule: the walk from the main ruleset, then what the rule that
/// matched last (or pf's default rule) decides.
pub(super) fn test_rule(
    cx: &Cx,
    pd: &Pd,
    pkt: &mut PacketBuf,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) -> Decision {
    let counters = cx.rs.counters.get(cx.worker);
    let mut w = Walk {
        tag: pkt.meta.pf_tag,
        rtable: None,
        scrub: ScrubActs::default(),
        log_match: [NO_RULE; LOG_MATCH_MAX],
        log_match_n: 0,
        log_matches: 0,
        matched: None,
        owner: None,
        nat: None,
        rdr: None,
        a: None,
        am: None,
        depth: 0,
        run: 0,
        next: 0,
    };
    let flow = match_rules(cx, pd, pkt, 0, &mut w);
    counters.evaluated(w.run, w.next);
    if flow == Flow::Fail {
        // pf_test_rule's PF_TEST_FAIL: dropped with the reason it had.
        cx.count(Reason::Match);
        return Decision::Drop;
    }
    let Walk { tag, rtable, scrub, log_match, log_matches, matched, am, nat, rdr, .. } = w;
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
        if !pd.frag && (nat.is_some() || rdr.is_some()) && !icmp_error(pd) && nat6::translatable(pd) {
            // A translation from a `match` rule makes a state even under
            // the default rule (pf_test_rule: `nr != NULL`); softnet names
            // the translating rule as the state's.
            let xl = match nat6::transaddr_any(cx, pd, nat, rdr) {
                Ok(e) => e,
                Err(reason) => {
                    cx.count(reason);
                    return Decision::Drop;
                }
            };
            let owner = nat.or(rdr).expect("one of them");
            if let Err(reason) = create_state(cx, owner, pd, pkt, tag, rtable, scrub, log_match, Some(xl)).map(|_| ()) {
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
        scrub_packet(pkt, pd, &scrub);
        return Decision::Pass;
    };
    // pf_test_rule: pf_rule_to_actions for the deciding rule too.
    let mut scrub = scrub;
    scrub.add(&r.scrub);
    cx.count(Reason::Match);
    // `once`: the first packet the rule decides expires it (pf_test_rule's
    // compare-and-swap picks one winner; a packet that met it in the same
    // moment is still decided by it).
    if r.rule.once {
        r.expired.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(c) = counters.rule(r.nr as usize) {
        c.count(cx.dir, pd.tot_len() as u64);
    }
    // pf_counters_inc: the anchor rule the deciding rule was found under
    // counts the packet too.
    if let Some(c) = am.and_then(|a| counters.rule(a as usize)) {
        c.count(cx.dir, pd.tot_len() as u64);
    }
    count_tables(cx, r, pd);
    let logged = r.log.is_some();
    // pf_test_rule logs the rule that decided (under its own action)
    // before anything can still drop the packet, then runs
    // pf_log_matches on it once more: with `log (matches)` the deciding
    // rule is logged twice per such `match` rule, once in the walk and
    // once here.
    if logged {
        cx.log_under(Some(r.nr), am, log_action(r), Reason::Match, pd, pkt.data());
    }
    if log_matches > 0 {
        log_later_match(cx, r, am, log_matches, pd, pkt);
    }
    match r.action {
        Action::Block(how) => {
            // No RST or ICMP error answers a fragment.
            if !pd.frag && pd.af == Af::Inet6 {
                send_return6(cx, how, pd, pkt, bufs, replies);
            } else if !pd.frag {
                send_return(cx, r, how, pd, pkt, bufs, replies);
            }
            Decision::Drop
        }
        Action::Pass | Action::Match => {
            if pd.badopts && !r.allow_opts {
                cx.count(Reason::IpOption);
                // PF_LOG_FORCE: logged with or without `log` on the rule,
                // under the rule's own action as pflog_packet writes it
                // (only the default rule's records say block).
                cx.log_under(Some(r.nr), am, log_action(r), Reason::IpOption, pd, pkt.data());
                return Decision::Drop;
            }
            let nat = if r.nat.is_some() { Some(r) } else { nat };
            let rdr = if r.rdr.is_some() { Some(r) } else { rdr };
            // A fragment is neither translated nor tracked (pf_test_rule
            // makes no state for PF_VPROTO_FRAGMENT, and translates only
            // through one).
            // An ICMP error makes no state (pf's `state_icmp`).
            let stateless = pd.frag || icmp_error(pd);
            let xl = if afto::is_afto(r) {
                // af-to: the rule's own pools, never a match rule's; what
                // cannot be translated is dropped (`translate`).
                let xl = if stateless {
                    Err(Reason::Translate)
                } else if pd.af == Af::Inet {
                    afto::transaddr_af6(cx, pd, r).map(|(e, h)| (nat6::Xlate::Af6(e), h))
                } else {
                    afto::transaddr_af(cx, pd, r).map(|(e, h)| (nat6::Xlate::Af4(e), h))
                };
                match xl {
                    Ok(x) => Some(x),
                    Err(reason) => {
                        cx.count(reason);
                        return Decision::Drop;
                    }
                }
            } else if !stateless && (nat.is_some() || rdr.is_some()) && nat6::translatable(pd) {
                match nat6::transaddr_any(cx, pd, nat, rdr) {
                    Ok(e) => Some(e),
                    Err(reason) => {
                        cx.count(reason);
                        return Decision::Drop;
                    }
                }
            } else {
                None
            };
            // A translated packet always gets a state (pf_test_rule: `nr`).
            if !stateless && (keeps_state(r) || xl.is_some()) {
                // A state that cannot be made drops the packet without a
                // log record of its own (pf: counted, not logged).
                match create_state(cx, r, pd, pkt, tag, rtable, scrub, log_match, xl) {
                    Err(reason) => {
                        cx.count(reason);
                        return Decision::Drop;
                    }
                    // PF_SYNPROXY_DROP: pf answers the SYN itself.
                    Ok(Some(synack)) => {
                        synproxy::send(&[Some(synack), None], bufs, replies);
                        cx.count(Reason::Synproxy);
                        return Decision::Consumed;
                    }
                    Ok(None) => {}
                }
            }
            if tag != 0 {
                pkt.meta.pf_tag = tag;
            }
            if let Some(t) = rtable {
                pkt.meta.rtable = t;
            }
            // pf_test's PF_TAG_DIVERTED (`crate::divert`); without an
            // inbound state the packet names the rule, for its address.
            if cx.dir == Direction::In && crate::divert::diverts(&r.rule) {
                pkt.meta.flags |= mflags::PF_DIVERTED;
                if pkt.meta.pf_link as u32 == 0 {
                    pkt.meta.pf_link = crate::divert::rule_link(cx.rs.gen, r.nr);
                }
            }
            // `pd` no longer describes a packet af-to translated.
            if pkt.meta.pf_route != RouteDecision::AfTo {
                scrub_packet(pkt, pd, &scrub);
            }
            // pf_test's divert_packet for the rule's packet (a state's
            // next ones: `route_state_packet`); it wins over a route.
            if let Some(port) = crate::divert::packet_port(&r.rule) {
                pkt.meta.pf_route = RouteDecision::DivertPacket(port);
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
pub(super) fn log_state_packet(
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
        let nr = rule.and_then(|(gen, nr)| cx.rs.state_rule(gen, nr)).map(|r| r.nr);
        cx.log(nr, pflog::PF_PASS, reason, pd, pkt.data());
    }
    if log & sflags::LOG_MATCHES_ALL == 0 {
        return;
    }
    let Some(st) = cx.pf.states.get(slot) else { return };
    if Some((st.ruleset_gen, st.rule_nr)) != rule {
        return;
    }
    for &nr in cx.pf.states.cold(slot).log_match.iter().rev().filter(|&&nr| nr != NO_RULE) {
        cx.log(Some(nr), pflog::PF_MATCH, reason, pd, pkt.data());
    }
}

/// pf_log_matches: after a `match ... log (matches)` rule, every rule the
/// packet goes on to match logs it, once per such `match` rule, under its
/// own number and action (the deciding rule again after the walk); a rule
/// with `log (matches)` itself was logged already.
#[cold]
pub(super) fn log_later_match(cx: &Cx, r: &CRule, anchor: Option<u32>, times: u32, pd: &Pd, pkt: &PacketBuf) {
    if r.log.is_some_and(|l| l.matches) {
        return;
    }
    for _ in 0..times {
        cx.log_under(Some(r.nr), anchor, log_action(r), Reason::Match, pd, pkt.data());
    }
}

/// pf_log_matches on pf's default rule (number -1, pass) when no rule
/// decided.
#[cold]
pub(super) fn log_default_rule_matches(cx: &Cx, times: u32, pd: &Pd, pkt: &PacketBuf) {
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
pub(super) fn log_forced(cx: &Cx, reason: Reason, data: &[u8]) {
    if data.first().is_some_and(|b| b >> 4 == 6) {
        return log_forced6(cx, reason, data);
    }
    let (src, dst, proto) = match Ipv4Packet::new_checked(data) {
        Ok(ip) => (ip.src(), ip.dst(), ip.protocol().0),
        Err(_) => (Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, 0),
    };
    let pd = Pd::ip(src, dst, proto, 0, 0, data.len());
    cx.log(None, pflog::PF_DROP, reason, &pd, data);
}

/// `log_forced` of an IPv6 packet: its addresses and next header as far
/// as they are there.
#[cold]
fn log_forced6(cx: &Cx, reason: Reason, data: &[u8]) {
    let mut pd = Pd::ip(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, 0, 0, 0, data.len());
    pd.af = Af::Inet6;
    if let Ok(ip) = softnet_wire::ipv6::Ipv6Packet::new_quoted(data) {
        (pd.src, pd.dst, pd.proto) = (PfAddr::from_v6(ip.src()), PfAddr::from_v6(ip.dst()), ip.next_header().0);
    }
    cx.log(None, pflog::PF_DROP, reason, &pd, data);
}

/// The action a pflog header carries for a rule (pflog_packet: the
/// rule's own action).
pub(super) fn log_action(r: &CRule) -> u8 {
    match r.action {
        Action::Match => pflog::PF_MATCH,
        Action::Pass => pflog::PF_PASS,
        Action::Block(_) => pflog::PF_DROP,
    }
}

/// pf_create_state: a state for the packet (keyed as it came, and also
/// under `xlate`'s key when it is translated), and the packet rewritten
/// to `xlate`.
#[allow(clippy::too_many_arguments)]
pub(super) fn create_state(
    cx: &Cx,
    r: &CRule,
    pd: &Pd,
    pkt: &mut PacketBuf,
    tag: u16,
    rtable: Option<u16>,
    scrub: ScrubActs,
    log_match: [u32; LOG_MATCH_MAX],
    xlate: Option<(nat6::Xlate, Holds)>,
) -> Result<Option<synproxy::ProxySend>, Reason> {
    let holds = xlate.map_or([None, None], |x| x.1);
    let xlate = xlate.map(|x| x.0);
    let mut proxy = None;
    let made = create_state_holding(cx, r, pd, pkt, tag, rtable, scrub, log_match, xlate, &holds, &mut proxy);
    match made {
        Ok(idx) if holds.iter().any(Option::is_some) => {
            // The holds go with the state, by its id; a state ended in the
            // meantime (its end found none) gives them back here.
            match cx.pf.states.get(idx).map(|d| d.id) {
                Some(id) => {
                    cx.pf.xlholds.put(id, holds);
                    if cx.pf.states.get(idx).map(|d| d.id) != Some(id) {
                        if let Some(h) = cx.pf.xlholds.take(id) {
                            nat::release(cx, &h);
                        }
                    }
                }
                None => nat::release(cx, &holds),
            }
            Ok(proxy)
        }
        Ok(_) => Ok(proxy),
        Err(e) => {
            nat::release(cx, &holds);
            Err(e)
        }
    }
}

/// `create_state` for a packet whose translation holds `holds`: the new
/// state's slot.
#[allow(clippy::too_many_arguments)]
fn create_state_holding(
    cx: &Cx,
    r: &CRule,
    pd: &Pd,
    pkt: &mut PacketBuf,
    tag: u16,
    rtable: Option<u16>,
    scrub: ScrubActs,
    log_match: [u32; LOG_MATCH_MAX],
    xlate: Option<nat6::Xlate>,
    holds: &Holds,
    proxy: &mut Option<synproxy::ProxySend>,
) -> Result<u32, Reason> {
    let now = cx.now.as_nanos();
    // pf_test_rule: the source's node first (pf_insert_src_node), then
    // the rule's `max`.
    let limit = cx.rs.opts.limit(Limit::SrcNodes) as usize;
    let tracked = r.src_track.as_ref().filter(|s| s.track);
    let src_ip = match pd.af {
        Af::Inet => std::net::IpAddr::V4(pd.src4()),
        Af::Inet6 => std::net::IpAddr::V6(pd.src.v6()),
    };
    if let Some(src) = tracked {
        if let Err(e) = cx.pf.srcnodes.acquire(src, src_ip, now, limit) {
            if let Some(i) = e.lcounter() {
                cx.counters.lcounters[i].inc();
            }
            return Err(Reason::SrcLimit);
        }
    }
    let undo_src = || {
        if let Some(src) = tracked {
            cx.pf.srcnodes.undo(src, src_ip, now);
        }
    };
    if let Some(max) = r.max_states {
        if r.states_cur.load(std::sync::atomic::Ordering::Relaxed) >= max as u64 {
            cx.counters.lcounters[LCNT_STATES].inc();
            undo_src();
            return Err(Reason::StateLimit);
        }
    }
    let mut st = StateData {
        key: if pd.af == Af::Inet6 { state_key6(pd, pkt.data(), cx.dir) } else { pkt_key(pd, cx.dir) },
        kif: if r.if_bound { cx.kif() } else { 0 },
        direction: dir_code(cx.dir),
        flags: (if r.sloppy { sflags::SLOPPY } else { 0 })
            | (if r.log.is_some_and(|l| l.all) { sflags::LOG_ALL } else { 0 })
            | (if log_match[0] != NO_RULE { sflags::LOG_MATCHES_ALL } else { 0 })
            | (if r.allow_opts { sflags::ALLOW_OPTS } else { 0 }),
        src_flags: match tracked {
            Some(s) if s.global => srcflags::SRC_NODE | srcflags::SRC_GLOBAL,
            Some(_) => srcflags::SRC_NODE,
            None => 0,
        },
        timeout_set: r.timeout_set,
        rule_nr: r.local_nr,
        ruleset_gen: cx.rs.nodes[r.node as usize].gen,
        tag,
        rtable: rtable.map(|t| t as i16).unwrap_or(-1),
        creation: now,
        expire: now,
        packets: [1, 0],
        bytes: [pd.tot_len() as u64, 0],
        creatorid: cx.pf.hostid.load(std::sync::atomic::Ordering::Relaxed),
        ..StateData::default()
    };
    if holds.iter().any(Option::is_some) {
        st.src_flags |= srcflags::XLATE;
    }
    if crate::divert::diverts(&r.rule) {
        st.src_flags |= srcflags::DIVERTED;
    }
    // divert-packet: every packet of the state goes to the divert socket
    // (`route_state_packet` reads the port from the cold part).
    let divert_port = crate::divert::packet_port(&r.rule).unwrap_or(0);
    if divert_port != 0 {
        st.flags |= sflags::ROUTED;
    }
    if let Some(nat6::Xlate::Af4(_) | nat6::Xlate::Af6(_)) = xlate {
        // found on the IPv4 side's interfaces too
        st.flags |= sflags::AFTO;
        st.kif = 0;
    }
    let mut cold = crate::state::StateCold { log_match, divert_port, ..Default::default() };
    // pf_set_rt_ifp: the state's rule's route pool gives the next hop, or
    // the state is not made (PFRES_NOROUTE).
    // With `sticky-address` (pf_map_addr), the address the source's node
    // keeps, else the pool's pick, which the node then keeps; a node that
    // cannot be had makes pf_map_addr fail, so no-route too.
    let sticky = r.src_track.as_ref().filter(|_| r.rule.route.as_ref().is_some_and(|rt| rt.pool.sticky));
    let undo_sticky = || {
        if let Some(src) = sticky {
            cx.pf.srcnodes.undo_kind(src, SN_ROUTE, src_ip, now);
        }
    };
    let route = match &r.route {
        Some(rt) => {
            let lookup = |name: &str| cx.pf.if_addrs(name, cx.ifp);
            let lookup6 = |name: &str| cx.pf.if_addrs6(name, cx.ifp);
            let if_ref = |name: &str| cx.pf.if_ref(name, cx.ifp);
            // A kept next hop of the source's family (pf_map_addr's
            // sticky lookup is per family).
            let kept = sticky
                .and_then(|s| cx.pf.srcnodes.sticky(s, SN_ROUTE, src_ip))
                .filter(|a| a.is_ipv6() == src_ip.is_ipv6())
                .and_then(|a| rt.hop_to(a, &if_ref));
            let Some(nh) = kept.or_else(|| rt.next_hop(&lookup, &lookup6, &if_ref, src_ip)) else {
                undo_src();
                return Err(Reason::NoRoute);
            };
            if let Some(src) = sticky {
                if cx.pf.srcnodes.acquire_kind(src, SN_ROUTE, src_ip, Some(nh.addr), now, limit).is_err() {
                    undo_src();
                    return Err(Reason::NoRoute);
                }
                st.src_flags |= srcflags::SRC_ROUTE;
            }
            st.rt = crate::route::kind_code(Some(rt.kind));
            cold.rt_addr = nh.addr;
            cold.rt_if = nh.ifp.unwrap_or_default();
            st.flags |= sflags::ROUTED;
            Some((rt.kind, nh))
        }
        None => None,
    };
    let mut rewrite = None;
    match pd.proto {
        PROTO_TCP => {
            let iss = (r.keep_state == StateMode::Modulate).then(|| cx.pf.iss(pd, cx.now));
            rewrite = tcp_track::init_state(&mut st, &pd.tcp, iss);
            st.timeout = tidx(Timeout::TcpFirst) as u8;
            // pf_create_state: an inbound SYN of a `synproxy state` rule
            // is answered by pf, with its own initial sequence number.
            let syn = pd.tcp.flags & (TH_SYN | TH_ACK) == TH_SYN;
            if r.keep_state == StateMode::Synproxy && syn && cx.dir == Direction::In {
                let mss = synproxy::syn_mss(pkt.data(), pd, cx.ifp.mtu());
                *proxy = Some(synproxy::start(&mut st, pd, mss, softnet_core::rng::random_u32()));
            }
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
    // `scrub (reassemble tcp)`: the creating packet's normalization;
    // pf_create_state fails the state (`bad-timestamp`) if it refuses.
    let peers = if pd.proto == PROTO_TCP && scrub.flags & crate::scrub::scrubflags::SCRUB_TCP != 0 {
        let fudge = ts_fudge(cx, &st);
        match crate::tcpnorm::on_create(
            pkt.data_mut(),
            pd.hlen(),
            &st,
            pd.tcp.len,
            fudge,
            softnet_core::rng::random_u32,
        ) {
            Ok(p) => Some(p),
            Err(_) => {
                undo_src();
                undo_sticky();
                if let (Some(rt), Some((_, nh))) = (&r.route, route) {
                    rt.released(nh.addr);
                }
                return Err(Reason::BadTimestamp);
            }
        }
    } else {
        None
    };
    match cx.pf.states.insert_scrubbed_tcp(st, xlate.map(|e| e.key(pd.proto, cx.dir)), scrub, peers, cold) {
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
            if proxy.is_some() {
                // The SYN goes no further: nothing to rewrite or route.
                return Ok(idx);
            }
            if let Some(seq) = rewrite {
                let ack = pd.tcp.ack;
                patch_seq_ack(pkt, pd.hlen(), seq, ack);
            }
            if let Some(to) = xlate {
                to.apply(pkt, pd);
            }
            if let Some((kind, nh)) = route {
                // The creating packet goes the state's way.
                let d = dir_code(cx.dir);
                crate::route::apply(pkt, crate::route::decision(kind, d, d), nh);
            }
            Ok(idx)
        }
        Err(e) => {
            undo_src();
            undo_sticky();
            if let (Some(rt), Some((_, nh))) = (&r.route, route) {
                rt.released(nh.addr);
            }
            Err(match e {
                crate::state::InsertError::Limit => Reason::Memory,
                crate::state::InsertError::Conflict => Reason::StateInsert,
            })
        }
    }
}

/// `tcp.tsdiff` of the state `st`: its rule's own, else the ruleset's
/// (pf_normalize_tcp_stateful's `ts_fudge`).
pub(super) fn ts_fudge(cx: &Cx, st: &StateData) -> u32 {
    let i = tidx(Timeout::TcpTsDiff);
    let own = if st.timeout_set != 0 { cx.pf.timeout_sets.get(st.timeout_set)[i] } else { 0 };
    if own != 0 {
        own
    } else {
        cx.rs.opts.timeouts[i]
    }
}
