//! ICMPv6 (OpenBSD's icmp6.c): `icmp6_input` (echo requests answered in
//! place as icmp6_reflect does, neighbor discovery handed to nd6's input
//! and its answers sent, MLD and the rest counted), `icmp6_error` (RFC
//! 4443 §2.4's rules through wire's `icmpv6::error_allowed`, rate limited
//! by the worker's token bucket, the source chosen as icmp6_reflect does).

use super::icmp::TokenBucket;
use super::ip6_output::route6;
use super::*;
use crate::ether::{build_ndp_frame, NdpMsg};
use crate::iface::Dad6State;
use crate::nd6::{Nd6Input, Nd6WorkerCache};
use softnet_wire::icmpv6::{
    self as icmp6w, DstUnreachable as Unreach6, Icmpv6Packet, Icmpv6Repr, ParamProblem, TimeExceeded as TimeEx6,
};
use softnet_wire::ipv6::{Ipv6AddrExt, Ipv6Packet, Ipv6Repr, HEADER_LEN as IPV6_HEADER};
use softnet_wire::WireError;
use std::net::Ipv6Addr;

/// Given-up held packets a worker answers per round at most.
const ND6_UNREACH_PER_ROUND: usize = 16;

/// Hop limit of what the router sends itself (ip6_defhlim; icmp6_reflect
/// uses it for replies and errors).
pub(super) const IP6_DEFHLIM: u8 = 64;

/// Why `icmp6_error` is called (RFC 4443 §3).
#[derive(Copy, Clone, Debug)]
pub(super) enum Icmp6Err {
    Unreach(Unreach6),
    /// The MTU of the next-hop link (§3.2).
    PacketTooBig(u32),
    TimeExceeded,
    ParamProblem(ParamProblem, u32),
}

/// ICMPv6's state on this worker: the error rate limit (its share of
/// `icmp_err_rate` / `icmp_err_burst`, as OpenBSD's icmp6errppslimit has
/// the same default as ICMP's), the neighbor cache in front of the shared
/// table, and scratch for what nd6's input hands back.
pub(super) struct Icmp6State {
    bucket: TokenBucket,
    pub(super) nd_cache: Nd6WorkerCache,
    nd_in: Nd6Input,
}

impl Icmp6State {
    pub(super) fn new(rate: u64, burst: u64) -> Self {
        Icmp6State { bucket: TokenBucket::new(rate, burst), nd_cache: Nd6WorkerCache::new(), nd_in: Nd6Input::new() }
    }
}

impl WorkerState {
    /// icmp6_input: the message at `off` of an IPv6 packet that is ours.
    pub(super) fn icmp6_input(
        &mut self,
        cx: &Ctx,
        ifp: &Arc<Interface>,
        mut p: PacketBuf,
        off: usize,
        link_mcast: bool,
    ) {
        let c = &cx.stats.icmp6;
        let ip = Ipv6Packet::new_unchecked(p.data());
        let (src, dst, hlim) = (ip.src(), ip.dst(), ip.hop_limit());
        let Ok(msg) = Icmpv6Packet::new_checked(&p.data()[off..]) else {
            c.tooshort.inc();
            return self.free(p);
        };
        c.inhist[msg.msg_type() as usize].inc();
        let repr = match Icmpv6Repr::parse(src, dst, &msg) {
            Ok(r) => r,
            Err(WireError::BadChecksum) => {
                c.checksum.inc();
                return self.free(p);
            }
            Err(_) => {
                // A malformed NDP or MLD message (bad code, short body, bad
                // option lengths).
                c.badlen.inc();
                if (icmp6w::msg_type::ROUTER_SOLICIT..=icmp6w::msg_type::REDIRECT).contains(&msg.msg_type()) {
                    cx.stats.nd6.invalid.inc();
                }
                return self.free(p);
            }
        };
        match repr {
            Icmpv6Repr::EchoRequest { .. } => {}
            Icmpv6Repr::Ndp(ndp) => {
                let fwd = cx.stack.config.forwarding6;
                let nd_in = &mut self.icmp6.nd_in;
                let ok = cx.stack.nd6.input(cx.now, ifp, src, dst, hlim, &ndp, fwd, &cx.stats.nd6, nd_in).is_ok();
                self.free(p);
                if ok {
                    self.nd6_input_results(cx);
                }
                return;
            }
            Icmpv6Repr::Mld(m) => {
                c.mld.inc();
                // A query from a link-local source with hop limit 1 (RFC
                // 3810 §5.1.14) goes to the control thread's listener.
                if let softnet_wire::mld::MldRepr::Query { group, .. } = m {
                    if src.is_link_local_unicast() && hlim == 1 {
                        let q = crate::nd6::MldQueryHeard {
                            ifindex: ifp.index(),
                            group,
                            max_resp_ms: m.max_resp_delay_ms().unwrap_or(0),
                            v1: matches!(m, softnet_wire::mld::MldRepr::Query { v2: None, .. }),
                        };
                        cx.stack.nd6.queue_query(q);
                    }
                }
                // The host's too: it reports the groups it joined.
                let Some(p) = self.punt(cx, p) else { return };
                return self.free(p);
            }
            Icmpv6Repr::Other { msg_type, .. } if icmp6w::is_error(msg_type) || msg_type < 130 => {
                c.badcode.inc();
                return self.free(p);
            }
            // Errors and replies addressed to the router: the host
            // twin's, if the interface has one; else nobody listens (a
            // filter matches errors to its states before this).
            _ => {
                let Some(p) = self.punt(cx, p) else { return };
                return self.free(p);
            }
        }
        // An echo request: icmp6_reflect in place.
        if src.is_unspecified() {
            return self.free(p);
        }
        let reply_src = if dst.is_multicast() || link_mcast {
            match ifp.source6_for(src) {
                Some(a) => a,
                None => return self.free(p),
            }
        } else {
            dst
        };
        let icmp_len = p.len() - off;
        if off > IPV6_HEADER {
            // The reply carries none of the request's extension headers.
            p.data_mut().copy_within(off.., IPV6_HEADER);
            let _ = p.set_len(IPV6_HEADER + icmp_len);
        }
        {
            let mut ip = Ipv6Packet::new_unchecked(p.data_mut());
            ip.set_next_header(IpProtocol::ICMPV6);
            ip.set_payload_len(icmp_len as u16);
            ip.set_hop_limit(IP6_DEFHLIM);
            ip.set_src(reply_src);
            ip.set_dst(src);
            let mut m = Icmpv6Packet::new_unchecked(ip.payload_mut());
            m.set_msg_type(icmp6w::msg_type::ECHO_REPLY);
            m.fill_checksum(reply_src, src);
        }
        // icmp6_reflect: a new packet now; only the routing table and pf's
        // generated mark stay.
        p.meta =
            PacketMeta { rtable: p.meta.rtable, flags: p.meta.flags & mflags::PF_GENERATED, ..PacketMeta::default() };
        c.outhist[icmp6w::msg_type::ECHO_REPLY as usize].inc();
        c.reflect.inc();
        self.ip6_output(cx, p, Some(ifp.index()));
    }

    /// What nd6's input asked for: an advertisement to send, held frames
    /// released, a message about a tentative address for DAD.
    fn nd6_input_results(&mut self, cx: &Ctx) {
        if let Some(na) = self.icmp6.nd_in.advert.take() {
            if let Some(ifp) = cx.ifs.get(na.ifindex) {
                self.send_na(cx, ifp, &na);
            }
        }
        let mut flushed = std::mem::take(&mut self.icmp6.nd_in.flushed);
        for (ifindex, mac, mut frame) in flushed.drain(..) {
            set_dst(&mut frame, mac);
            self.stage(cx, ifindex, frame);
        }
        self.icmp6.nd_in.flushed = flushed;
        if let Some((ifindex, addr, what)) = self.icmp6.nd_in.dad.take() {
            cx.stack.dad_input(ifindex, addr, what);
        }
    }

    /// nd6_na_output: from the interface's source for the destination,
    /// hop limit 255, the target link-layer option.
    fn send_na(&mut self, cx: &Ctx, ifp: &Arc<Interface>, na: &crate::nd6::NaReply) {
        let Some(src) = ifp.source6_for(na.dst) else { return };
        let Some(mut q) = self.pool.alloc() else {
            cx.stats.ip6.odropped.inc();
            return;
        };
        let dst_mac = na.dst_mac.unwrap_or(MacAddr::BROADCAST);
        let msg = NdpMsg::Na { target: na.target, flags: na.flags, tlla: na.tlla };
        if build_ndp_frame(&mut q, ifp.mac(), dst_mac, src, na.dst, msg).is_err() {
            return self.free(q);
        }
        let Some(q) = self.nd_out_filter(cx, ifp, q) else { return };
        cx.stats.nd6.na_sent.inc();
        cx.stats.icmp6.outhist[icmp6w::msg_type::NEIGHBOR_ADVERT as usize].inc();
        if na.dst_mac.is_some() {
            return self.stage(cx, ifp.index(), q);
        }
        // The solicitation carried no link-layer address: resolve.
        self.resolve_out6(cx, ifp, na.dst, src, q);
    }

    /// nd6_ns_output for a solicitation the neighbor cache asked for.
    pub(super) fn send_ns(&mut self, cx: &Ctx, ifp: &Arc<Interface>, req: &crate::nd6::NsRequest) {
        let src = req
            .src_hint
            .filter(|h| ifp.addr6_state(*h) == Some(Dad6State::Preferred))
            .or_else(|| ifp.source6_for(req.target));
        let Some(src) = src else { return };
        let Some(mut q) = self.pool.alloc() else {
            cx.stats.ip6.odropped.inc();
            return;
        };
        let msg = NdpMsg::Ns { target: req.target, slla: Some(ifp.mac()) };
        if build_ndp_frame(&mut q, ifp.mac(), req.dst_mac(), src, req.dst_ip(), msg).is_err() {
            return self.free(q);
        }
        let Some(q) = self.nd_out_filter(cx, ifp, q) else { return };
        cx.stats.nd6.ns_sent.inc();
        cx.stats.icmp6.outhist[icmp6w::msg_type::NEIGHBOR_SOLICIT as usize].inc();
        self.stage(cx, ifp.index(), q);
    }

    /// pf out on `ifp` for a neighbor discovery frame built whole
    /// (nd6_na_output and nd6_ns_output go through ip6_output, so through
    /// pf_test): the filter sees the IPv6 packet, the Ethernet header is
    /// put back on what it passes.
    fn nd_out_filter(&mut self, cx: &Ctx, ifp: &Arc<Interface>, mut q: PacketBuf) -> Option<PacketBuf> {
        let Some(f) = cx.filter else { return Some(q) };
        let mut eth = [0u8; HEADER_LEN];
        eth.copy_from_slice(&q.data()[..HEADER_LEN]);
        let _ = q.pull_front(HEADER_LEN);
        let q = self.local_out_filter(cx, f, ifp, q)?;
        let mut q = self.pf_route6(cx, None, q)?;
        if q.push_front(HEADER_LEN).is_err() {
            cx.stats.ip6.odropped.inc();
            self.free(q);
            return None;
        }
        q.data_mut()[..HEADER_LEN].copy_from_slice(&eth);
        Some(q)
    }

    /// Frames the neighbor cache gave up on during the batch, back to the
    /// pool.
    pub(super) fn nd6_housekeeping(&mut self, cx: &Ctx) {
        // Held packets whose neighbor never answered (RFC 4861 §7.2.2,
        // nd6_llinfo_timer's icmp6_error2): address unreachable to their
        // source, a few a round.
        for _ in 0..ND6_UNREACH_PER_ROUND {
            let Some(p) = cx.stack.nd6.take_unreachable() else { break };
            self.nd6_unreachable(cx, p);
        }
        for p in self.icmp6.nd_cache.drain_dropped() {
            cx.stats.ip6.odropped.inc();
            if p.capacity() == self.pool.buf_size() {
                self.pool.free(p)
            } else {
                self.large_pool.free(p)
            }
        }
    }

    /// ICMPv6 destination unreachable, address unreachable (code 3),
    /// about a packet held for a neighbor that never resolved (a frame:
    /// its Ethernet header goes first), from its receiving interface's
    /// side as icmp6_error does; one without a receiving interface is
    /// dropped unanswered.
    fn nd6_unreachable(&mut self, cx: &Ctx, mut p: PacketBuf) {
        let rcvif = cx.ifs.get(p.meta.rcvif).cloned();
        if let (Some(rcvif), Ok(())) = (rcvif, p.pull_front(HEADER_LEN)) {
            self.icmp6_error(cx, &rcvif, &p, false, Icmp6Err::Unreach(Unreach6::AddrUnreachable));
        }
        self.free(p);
    }

    /// icmp6_error: an error about `orig` (an IPv6 packet at `data()`,
    /// received on `rcvif`), unless RFC 4443 §2.4 (e) forbids it or the
    /// rate limit (§2.4 (f)) says no. `orig` stays the caller's.
    pub(super) fn icmp6_error(
        &mut self,
        cx: &Ctx,
        rcvif: &Arc<Interface>,
        orig: &PacketBuf,
        link_mcast: bool,
        why: Icmp6Err,
    ) {
        let c = &cx.stats.icmp6;
        c.error.inc();
        let o = orig.data();
        let quote = icmp6w::error_quote(o);
        let repr = match why {
            Icmp6Err::Unreach(code) => Icmpv6Repr::DstUnreachable { code, data: quote },
            Icmp6Err::PacketTooBig(mtu) => Icmpv6Repr::PacketTooBig { mtu, data: quote },
            Icmp6Err::TimeExceeded => Icmpv6Repr::TimeExceeded { code: TimeEx6::HopLimitExceeded, data: quote },
            Icmp6Err::ParamProblem(code, pointer) => Icmpv6Repr::ParamProblem { code, pointer, data: quote },
        };
        if !icmp6w::error_allowed(o, link_mcast, &repr) {
            let dst = Ipv6Packet::new_unchecked(o).dst();
            if dst.is_multicast() || link_mcast {
                c.bmcast.inc();
            } else {
                c.canterror.inc();
            }
            return;
        }
        if !self.icmp6.bucket.take(cx.now) {
            c.toofreq.inc();
            return;
        }
        let oip = Ipv6Packet::new_unchecked(o);
        let (osrc, odst) = (oip.src(), oip.dst());
        let Some(src) = error_source6(cx, rcvif, osrc, odst) else {
            cx.stats.ip6.noroute.inc();
            return;
        };
        let Some(mut e) = self.pool.alloc() else {
            cx.stats.ip6.odropped.inc();
            return;
        };
        let icmp_len = repr.buffer_len();
        let ip = Ipv6Repr {
            src,
            dst: osrc,
            next_header: IpProtocol::ICMPV6,
            hop_limit: IP6_DEFHLIM,
            traffic_class: 0,
            flow_label: 0,
            payload_len: icmp_len,
        };
        if e.rewind(IPV6_HEADER + icmp_len).is_err() {
            return self.free(e);
        }
        let buf = e.data_mut();
        ip.emit(&mut buf[..IPV6_HEADER]);
        repr.emit(src, osrc, &mut buf[IPV6_HEADER..]);
        e.meta.flags |= orig.meta.flags & mflags::PF_GENERATED;
        c.outhist[repr.msg_type() as usize].inc();
        self.ip6_output(cx, e, Some(rcvif.index()));
    }
}

/// icmp6_reflect's source: the invoking packet's destination when it is a
/// (usable) unicast address of ours, else the address the outgoing
/// interface would use towards the invoking packet's source (the
/// receiving interface for a link-local source).
fn error_source6(cx: &Ctx, rcvif: &Arc<Interface>, osrc: Ipv6Addr, odst: Ipv6Addr) -> Option<Ipv6Addr> {
    if !odst.is_multicast() {
        let ours = if odst.is_link_local_unicast() {
            rcvif.addr6_state(odst)
        } else {
            cx.ifs.owner_of6(odst).and_then(|i| i.addr6_state(odst))
        };
        if ours == Some(Dad6State::Preferred) {
            return Some(odst);
        }
    }
    if osrc.is_link_local_unicast() {
        return rcvif.source6_for(osrc);
    }
    match route6(cx, osrc, Some(rcvif.index())) {
        Some((out, _, _)) => out.source6_for(osrc),
        None => rcvif.source6_for(osrc),
    }
}
