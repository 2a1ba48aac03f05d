//! IPv6 input (OpenBSD's ip6_input.c): `ip6_input` (the fixed header's
//! checks, padding trimmed, addresses that may not come from the wire, the
//! extension header chain walked with wire's `ExtHeaders`, hop-by-hop
//! options by their action bits, routing header type 0 refused), the choice
//! between ours and `ip6_forward`, and local delivery (`ip6_local`:
//! destination options, routing headers with segments left, fragments,
//! the upper layer).
//!
//! pf: as on the IPv4 path, with a filter installed the packets that pass
//! `ip6_input`'s checks wait in `ip6q` and pf in takes the batch's IPv6
//! packets together (`ip6_input_batch`); each one it passes goes on to
//! `ip6_input_filtered`. Without a filter they wait in `ip6q` too, for the
//! batch's route lookups made together (`ip6_input_unfiltered`). Neighbor
//! discovery goes through pf too (pf keys NS/NA by their target; a ruleset
//! that blocks icmp6 blocks NDP, as on OpenBSD). pf out is
//! `ip6_forward`'s (`forward6_batch`) and `ip6_output`'s.

use super::*;
use crate::iface::Dad6State;
use softnet_wire::icmpv6::{self as icmp6w, ParamProblem};
use softnet_wire::ipv6::{Ipv6AddrExt, Ipv6Packet, HEADER_LEN as IPV6_HEADER, NEXT_HEADER_OFFSET};
use softnet_wire::ipv6ext::{
    is_ext_header, option_type, options, ExtError, ExtErrorKind, HeaderChain, UnknownOptionAction,
};
use std::net::Ipv6Addr;

/// What an options header (hop-by-hop or destination options) asks for.
enum OptVerdict {
    Ok,
    /// An unknown option with action 01 (or 11 to multicast).
    Drop,
    /// Parameter problem: code and pointer (RFC 8200 §4.2).
    Icmp(ParamProblem, u32),
}

/// Whether `a` is an IPv4-mapped address (::ffff:0:0/96), which OpenBSD's
/// ip6_input refuses from the wire (RFC 4038 §4.2).
#[inline]
fn is_v4_mapped(a: Ipv6Addr) -> bool {
    let s = a.segments();
    s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0xffff
}

/// The options of the hop-by-hop or destination options header at `off`
/// (already checked for length by the chain walk) judged as
/// ip6_process_hopopts / ip6_unknown_opt: Pad1, PadN and, in hop-by-hop,
/// router alert are known; a jumbo payload option is refused (no
/// jumbograms: RFC 2675 says a payload length other than 0 with it is a
/// parameter problem pointing at the option, and we take none); the rest
/// by their two high bits.
fn judge_options(pkt: &[u8], off: usize, hop_by_hop: bool, dst_mcast: bool) -> OptVerdict {
    let len = (pkt[off + 1] as usize + 1) * 8;
    for o in options(&pkt[off + 2..off + len], off + 2) {
        let Ok(o) = o else { return OptVerdict::Drop };
        if o.is_padding() || (hop_by_hop && o.kind == option_type::ROUTER_ALERT) {
            continue;
        }
        if hop_by_hop && o.kind == option_type::JUMBO {
            return OptVerdict::Icmp(ParamProblem::ErroneousHeader, o.offset as u32);
        }
        match o.unknown_action() {
            UnknownOptionAction::Skip => {}
            UnknownOptionAction::Discard => return OptVerdict::Drop,
            UnknownOptionAction::DiscardSendIcmp => {
                return OptVerdict::Icmp(ParamProblem::UnrecognizedOption, o.offset as u32)
            }
            UnknownOptionAction::DiscardSendIcmpUnlessMulticast => {
                if dst_mcast {
                    return OptVerdict::Drop;
                }
                return OptVerdict::Icmp(ParamProblem::UnrecognizedOption, o.offset as u32);
            }
        }
    }
    OptVerdict::Ok
}

/// The extension header chain of an IPv6 packet (`data` at least the
/// fixed header).
#[inline]
fn header_chain(data: &[u8]) -> Result<HeaderChain, ExtError> {
    let nh = Ipv6Packet::new_unchecked(data).next_header();
    if is_ext_header(nh) {
        return Ipv6Packet::new_unchecked(data).ext_headers().walk();
    }
    // No extension header (the common case): the chain is the fixed
    // header alone.
    Ok(HeaderChain {
        upper: nh,
        upper_offset: IPV6_HEADER,
        nh_offset: NEXT_HEADER_OFFSET,
        fragment: None,
        routing: None,
        bad_routing: None,
        hop_by_hop: false,
        count: 0,
    })
}

impl WorkerState {
    /// ip6_input: the checks every IPv6 packet passes, then ours or
    /// forward. `link_mcast`: the frame came to a link-layer multicast or
    /// broadcast address.
    pub(super) fn ip6_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, mut p: PacketBuf, link_mcast: bool) {
        let s = &cx.stats.ip6;
        s.total.inc();
        let data = p.data();
        if data.len() < IPV6_HEADER {
            s.toosmall.inc();
            return self.drop_in(ifp, p);
        }
        let ip = Ipv6Packet::new_unchecked(data);
        if ip.version() != 6 {
            s.badvers.inc();
            return self.drop_in(ifp, p);
        }
        // A payload length of 0 would be a jumbogram (RFC 2675), which we
        // do not take: its hop-by-hop option is refused below.
        let total = ip.total_len();
        if total > data.len() {
            s.tooshort.inc();
            return self.drop_in(ifp, p);
        }
        let (src, dst) = (ip.src(), ip.dst());
        // Trim Ethernet padding.
        let _ = p.set_len(total);
        // Addresses no packet from the wire may carry (ip6_input's
        // "reject packets with bad source or destination").
        // ::1 and interface-local multicast only on a loopback interface.
        let on_wire = !ifp.is_loopback();
        if src.is_multicast()
            || dst.is_unspecified()
            || (on_wire && (src.is_loopback() || dst.is_loopback()))
            || is_v4_mapped(src)
            || is_v4_mapped(dst)
            || (on_wire && dst.is_multicast() && dst.octets()[1] & 0x0f == 1)
        {
            s.badscope.inc();
            return self.drop_in(ifp, p);
        }
        let walked = header_chain(p.data());
        let chain = match walked {
            Ok(c) => c,
            Err(e) => {
                match e.param_problem() {
                    Some((code, pointer)) => {
                        s.badoptions.inc();
                        self.icmp6_error(cx, ifp, &p, link_mcast, Icmp6Err::ParamProblem(code, pointer));
                    }
                    None if e.kind == ExtErrorKind::TooManyHeaders => s.toomanyhdr.inc(),
                    None => s.tooshort.inc(),
                }
                return self.drop_in(ifp, p);
            }
        };
        if let Some(pointer) = chain.bad_routing {
            // RFC 5095 (ip6_check_rh0hdr): type 0, or two routing headers.
            s.badoptions.inc();
            let pp = Icmp6Err::ParamProblem(ParamProblem::ErroneousHeader, pointer as u32);
            self.icmp6_error(cx, ifp, &p, link_mcast, pp);
            return self.drop_in(ifp, p);
        }
        if chain.hop_by_hop {
            match judge_options(p.data(), IPV6_HEADER, true, dst.is_multicast()) {
                OptVerdict::Ok => {}
                OptVerdict::Drop => {
                    s.badoptions.inc();
                    return self.drop_in(ifp, p);
                }
                OptVerdict::Icmp(code, pointer) => {
                    s.badoptions.inc();
                    self.icmp6_error(cx, ifp, &p, link_mcast, Icmp6Err::ParamProblem(code, pointer));
                    return self.drop_in(ifp, p);
                }
            }
        }
        if src.is_unspecified() && (chain.upper != IpProtocol::ICMPV6 || chain.is_later_fragment()) {
            // Only DAD's solicitations and MLD reports come from :: (RFC
            // 4862 §5.4.2, RFC 3810 §5.2.13); those are ICMPv6.
            s.badscope.inc();
            return self.drop_in(ifp, p);
        }
        if chain.fragment.is_some() {
            s.fragments.inc();
        }
        // The rest waits for the batch (`ip6_input_batch`): pf in takes
        // the batch's IPv6 packets together; without a filter the batch's
        // route lookups are made one after another before any packet goes
        // on.
        if link_mcast {
            p.meta.flags |= mflags::LINK_BCAST;
        }
        self.ip6q.push(Some(p));
    }

    /// The rest of IPv6 input for the batch `ip6_input` left in `ip6q`:
    /// pf in over the whole batch, then ours or forward per packet (the
    /// chain walked again: pf may have rewritten the packet), then pf out
    /// over the forwarded ones (`forward6_batch`). Without a filter,
    /// `ip6_input_unfiltered`.
    pub(super) fn ip6_input_batch(&mut self, cx: &Ctx, ifp: &Arc<Interface>) {
        if self.ip6q.is_empty() {
            return;
        }
        let Some(f) = cx.filter else { return self.ip6_input_unfiltered(cx, ifp) };
        let mut q = std::mem::take(&mut self.ip6q);
        let mut decisions = std::mem::take(&mut self.hook.decisions);
        let all = decisions_for(&mut decisions, q.len());
        self.filter_batch(cx, f, Direction::In, ifp, &mut q, all);
        for (slot, &d) in q.iter_mut().zip(decisions.iter()) {
            let Some(p) = self.decided(cx, slot, d) else { continue };
            if p.meta.pf_route != RouteDecision::None && lro::is_super(&p) {
                // pf's routing takes segments (`lro`).
                self.lro_each(cx, p, |w, s| w.ip6_input_passed(cx, ifp, s));
                continue;
            }
            self.ip6_input_passed(cx, ifp, p);
        }
        q.clear();
        self.ip6q = q;
        self.hook.decisions = decisions;
        self.forward6_batch(cx);
        // af-to's packets now IPv4 (an empty queue returns at once)
        self.forward_batch(cx);
    }

    /// The batch `ip6_input` left in `ip6q` when no filter is installed:
    /// the route lookups of all its packets first, one after another,
    /// then ours or forward per packet with its lookup. The lookups do
    /// not depend on each other, so the CPU overlaps their walks down the
    /// trie (a /48 under a /12 is four nodes, each waiting for its
    /// parent's loads); made per packet, each walk's latency was the
    /// packet's, in the middle of its other work (BENCHMARKS.md §1, IPv6
    /// forwarding against IPv4, session 15). A packet whose route goes
    /// through a gateway is forwarded as `ip6_input_routed` would; the
    /// others have their chain walked again, as after pf in.
    fn ip6_input_unfiltered(&mut self, cx: &Ctx, ifp: &Arc<Interface>) {
        let mut q = std::mem::take(&mut self.ip6q);
        for batch in q.chunks_mut(BATCH) {
            let mut routes: [Option<&Nhop<Ipv6Addr>>; BATCH] = [None; BATCH];
            for (r, p) in routes.iter_mut().zip(batch.iter()) {
                if let Some(p) = p {
                    *r = dst_route(cx, p);
                }
            }
            for (slot, route) in batch.iter_mut().zip(routes) {
                let Some(p) = slot.take() else { continue };
                let link_mcast = p.meta.flags & mflags::LINK_BCAST != 0;
                if via_gateway(route) {
                    // Forwarded (`ip6_input_routed`'s fast path): the
                    // chain `ip6_input` checked is not read again.
                    self.ip6_forward_checked(cx, ifp, p, route, link_mcast);
                    continue;
                }
                match header_chain(p.data()) {
                    Ok(chain) => self.ip6_input_routed(cx, ifp, p, &chain, link_mcast, route),
                    Err(_) => {
                        cx.stats.ip6.tooshort.inc();
                        self.free(p);
                    }
                }
            }
        }
        q.clear();
        self.ip6q = q;
    }

    /// A packet pf in passed: af-to, route-to, reply-to, dup-to
    /// (pf_route6 after pf in), then the rest of ip6_input.
    fn ip6_input_passed(&mut self, cx: &Ctx, ifp: &Arc<Interface>, p: PacketBuf) {
        let Some(p) = self.pf_route6_in(cx, ifp, p) else { return };
        let link_mcast = p.meta.flags & mflags::LINK_BCAST != 0;
        self.ip6_input_again(cx, ifp, p, link_mcast);
    }

    /// An IPv4 packet pf in turned into IPv6 (af-to): ip6_input after
    /// the filter, its header chain read again.
    pub(super) fn ip6_input_translated(&mut self, cx: &Ctx, ifp: &Arc<Interface>, p: PacketBuf) {
        self.ip6_input_again(cx, ifp, p, false);
    }

    /// ip6_input after the filter for a packet it may have rewritten: its
    /// header chain read again.
    fn ip6_input_again(&mut self, cx: &Ctx, ifp: &Arc<Interface>, p: PacketBuf, link_mcast: bool) {
        match header_chain(p.data()) {
            Ok(chain) => self.ip6_input_filtered(cx, ifp, p, &chain, link_mcast),
            Err(_) => {
                cx.stats.ip6.tooshort.inc();
                self.free(p);
            }
        }
    }

    /// ip6_input after the filter (see the module docs): a group we joined
    /// or an address of ours that DAD passed is ours; an address of ours
    /// still tentative takes only NS and NA; anything else is forwarded.
    fn ip6_input_filtered(
        &mut self,
        cx: &Ctx,
        ifp: &Arc<Interface>,
        p: PacketBuf,
        chain: &HeaderChain,
        link_mcast: bool,
    ) {
        let route = dst_route(cx, &p);
        self.ip6_input_routed(cx, ifp, p, chain, link_mcast, route)
    }

    /// `ip6_input_filtered` with the packet's `dst_route` made.
    fn ip6_input_routed(
        &mut self,
        cx: &Ctx,
        ifp: &Arc<Interface>,
        p: PacketBuf,
        chain: &HeaderChain,
        link_mcast: bool,
        route: Option<&Nhop<Ipv6Addr>>,
    ) {
        let s = &cx.stats.ip6;
        if p.meta.flags & mflags::PF_DIVERTED != 0 {
            // pf's divert-to / divert-reply: ours (ip6_input's pf_ouraddr).
            return self.ip6_local(cx, ifp, p, chain, link_mcast, false);
        }
        let dst = Ipv6Packet::new_unchecked(p.data()).dst();
        if dst.is_multicast() {
            if !ifp.is_joined6(dst) && !ifp.host().is_some_and(|h| h.is_joined6(dst)) {
                s.notmember.inc();
                return self.free(p);
            }
            return self.ip6_local(cx, ifp, p, chain, link_mcast, false);
        }
        if dst.is_link_local_unicast() {
            // Ours only on the link it came from; another link's scope is
            // never forwarded (ip6_forward answers beyond scope).
            match ifp.addr6_state(dst) {
                Some(Dad6State::Preferred) => return self.ip6_local(cx, ifp, p, chain, link_mcast, false),
                Some(_) => return self.ip6_local(cx, ifp, p, chain, link_mcast, true),
                None => {}
            }
            return self.ip6_forward_checked(cx, ifp, p, None, link_mcast);
        }
        if !via_gateway(route) {
            match ifp.addr6_state(dst) {
                Some(Dad6State::Preferred) => return self.ip6_local(cx, ifp, p, chain, link_mcast, false),
                Some(_) => return self.ip6_local(cx, ifp, p, chain, link_mcast, true),
                None => {}
            }
            // An address of another interface of ours: its local route
            // (rt_ifa_addlocal) names that interface.
            let owner = route.filter(|r| r.flags.contains(RouteFlags::LOCAL)).and_then(|r| cx.ifs.get_weak(r.ifp));
            match owner.and_then(|o| o.addr6_state(dst)) {
                Some(Dad6State::Preferred) => return self.ip6_local(cx, ifp, p, chain, link_mcast, false),
                Some(_) => {
                    s.tentative.inc();
                    return self.free(p);
                }
                None => {}
            }
        }
        self.ip6_forward_checked(cx, ifp, p, route, link_mcast)
    }

    /// Forwarding, unless it is off or the packet came as link-layer
    /// multicast.
    fn ip6_forward_checked(
        &mut self,
        cx: &Ctx,
        ifp: &Arc<Interface>,
        p: PacketBuf,
        route: Option<&Nhop<Ipv6Addr>>,
        link_mcast: bool,
    ) {
        let s = &cx.stats.ip6;
        if link_mcast || !cx.stack.config.forwarding6 {
            // Never forward what came as link-layer multicast (RFC 4861's
            // multicast-to-unicast tricks), nor anything when forwarding
            // is off (a host).
            s.cantforward.inc();
            return self.free(p);
        }
        if lro::is_super(&p) {
            // Forwarded as the segments it stands for (`lro`).
            return self.lro_each(cx, p, |w, s| w.ip6_forward(cx, ifp, s, route));
        }
        self.ip6_forward(cx, ifp, p, route);
    }

    /// ip6_local: the rest of the chain for a packet that is ours, then
    /// the upper layer. `tentative`: sent to an address of ours that DAD
    /// has not passed (only NS and NA are taken, RFC 4862 §5.4).
    fn ip6_local(
        &mut self,
        cx: &Ctx,
        ifp: &Arc<Interface>,
        p: PacketBuf,
        chain: &HeaderChain,
        link_mcast: bool,
        tentative: bool,
    ) {
        let s = &cx.stats.ip6;
        if chain.is_fragment() {
            // RFC 8200 §4.5 (atomic fragments, RFC 6946, are whole packets
            // and go on as they are).
            let Some(whole) = self.reassemble6(cx, p, chain) else { return };
            let walked = Ipv6Packet::new_unchecked(whole.data()).ext_headers().walk();
            let Ok(chain) = walked.map_err(|_| s.fragdropped.inc()) else { return self.free(whole) };
            return self.ip6_local(cx, ifp, whole, &chain, link_mcast, tentative);
        }
        let dst_mcast = Ipv6Packet::new_unchecked(p.data()).dst().is_multicast();
        if chain.count > chain.hop_by_hop as usize {
            // Destination options (dest6_input) and routing headers
            // (route6_input) are the destination's to process.
            let mut verdict = OptVerdict::Ok;
            {
                let ip = Ipv6Packet::new_unchecked(p.data());
                for h in ip.ext_headers().flatten() {
                    if h.kind == IpProtocol::IPV6_OPTS {
                        verdict = judge_options(p.data(), h.offset, false, dst_mcast);
                    } else if let Some(rh) = h.routing() {
                        if rh.segments_left() != 0 {
                            // RFC 8200 §4.4: an unrecognized routing type
                            // with segments left.
                            let at = (h.offset + softnet_wire::ipv6ext::ROUTING_TYPE_OFFSET) as u32;
                            verdict = OptVerdict::Icmp(ParamProblem::ErroneousHeader, at);
                        }
                    }
                    if !matches!(verdict, OptVerdict::Ok) {
                        break;
                    }
                }
            }
            match verdict {
                OptVerdict::Ok => {}
                OptVerdict::Drop => {
                    s.badoptions.inc();
                    return self.drop_in(ifp, p);
                }
                OptVerdict::Icmp(code, pointer) => {
                    s.badoptions.inc();
                    self.icmp6_error(cx, ifp, &p, link_mcast, Icmp6Err::ParamProblem(code, pointer));
                    return self.drop_in(ifp, p);
                }
            }
        }
        if tentative && !is_nd_for_dad(p.data(), chain) {
            s.tentative.inc();
            return self.free(p);
        }
        s.delivered.inc();
        match chain.upper {
            IpProtocol::ICMPV6 => self.icmp6_input(cx, ifp, p, chain.upper_offset, link_mcast),
            IpProtocol::UDP => self.udp6_input(cx, ifp, p, chain.upper_offset, link_mcast),
            IpProtocol::TCP => self.tcp6_input(cx, p, chain.upper_offset, link_mcast),
            IpProtocol::IPV6_NONXT => self.free(p),
            _ => {
                // The host twin's (OSPFv3, VRRP...), if any; else RFC 8200
                // §4: an unrecognized next header is a parameter problem
                // code 1 pointing at the field that named it.
                let Some(p) = self.punt(cx, p) else { return };
                s.noproto.inc();
                let pp = Icmp6Err::ParamProblem(ParamProblem::UnrecognizedNextHeader, chain.nh_offset as u32);
                self.icmp6_error(cx, ifp, &p, link_mcast, pp);
                self.free(p)
            }
        }
    }
}

/// The route `ip6_input_routed` goes by: the destination's in table 0,
/// for a packet that is not diverted to us and whose destination is
/// neither multicast nor link-local (those are decided without one).
#[inline]
fn dst_route<'a>(cx: &Ctx<'a>, p: &PacketBuf) -> Option<&'a Nhop<Ipv6Addr>> {
    if p.meta.flags & mflags::PF_DIVERTED != 0 {
        return None;
    }
    let dst = Ipv6Packet::new_unchecked(p.data()).dst();
    if dst.is_multicast() || dst.is_link_local_unicast() {
        return None;
    }
    cx.rt6.and_then(|t| t.lookup(dst)).map(|r| r.next_hop())
}

/// The fast path of `ip6_input_routed`: a destination whose route goes
/// through a gateway is not one of ours (every address of ours has its
/// local route, UHLl), so it is forwarded without asking the interfaces.
#[inline]
fn via_gateway(route: Option<&Nhop<Ipv6Addr>>) -> bool {
    route.is_some_and(|r| r.flags.contains(RouteFlags::GATEWAY) && !r.flags.contains(RouteFlags::LOCAL))
}

/// A neighbor solicitation or advertisement: what a tentative address
/// takes (RFC 4862 §5.4.3, §5.4.4).
fn is_nd_for_dad(pkt: &[u8], chain: &HeaderChain) -> bool {
    chain.upper == IpProtocol::ICMPV6
        && pkt
            .get(chain.upper_offset)
            .is_some_and(|&t| t == icmp6w::msg_type::NEIGHBOR_SOLICIT || t == icmp6w::msg_type::NEIGHBOR_ADVERT)
}

impl WorkerState {
    /// A fragment for the router itself: kept until its datagram is whole
    /// (then returned in one large buffer), or dropped and counted (an
    /// overlap drops the whole datagram, RFC 5722).
    fn reassemble6(&mut self, cx: &Ctx, p: PacketBuf, chain: &HeaderChain) -> Option<PacketBuf> {
        let s = &cx.stats.ip6;
        let (frag_at, frag) = chain.fragment.expect("a fragment");
        // The next header field that names the fragment header.
        let mut nh_at = NEXT_HEADER_OFFSET;
        for h in Ipv6Packet::new_unchecked(p.data()).ext_headers().flatten() {
            if h.offset == frag_at {
                break;
            }
            nh_at = h.offset;
        }
        let result = cx.stack.reass6.add(cx.now, p.data(), frag_at, nh_at, frag);
        let meta = p.meta;
        self.free(p);
        let (header, payload) = match result {
            crate::reass6::Reass6Result::Held => return None,
            crate::reass6::Reass6Result::Overlap => {
                s.fragoverlap.inc();
                s.fragdropped.inc();
                return None;
            }
            crate::reass6::Reass6Result::Dropped => {
                s.fragdropped.inc();
                return None;
            }
            crate::reass6::Reass6Result::Complete { header, payload } => (header, payload),
        };
        let Some(mut whole) = self.large_pool.alloc() else {
            s.fragdropped.inc();
            return None;
        };
        let len = header.len() + payload.len();
        if whole.set_len(len).is_err() {
            s.fragdropped.inc();
            self.free(whole);
            return None;
        }
        whole.data_mut()[..header.len()].copy_from_slice(&header);
        whole.data_mut()[header.len()..].copy_from_slice(&payload);
        whole.meta = meta;
        Ipv6Packet::new_unchecked(whole.data_mut()).set_payload_len((len - IPV6_HEADER) as u16);
        s.reassembled.inc();
        Some(whole)
    }
}
