//! The host twins on the data path (`crate::hostif`, VPP linux-cp's punt
//! and transmit): `punt` hands a packet for the router that the stack does
//! not consume to the twin of the interface it came in on; `host_poll`
//! reads what the host sends out of each twin, answers its ARP requests
//! from the stack's table, runs pf out over its IP packets on the paired
//! interface and sends them as the host built them.

use super::*;
use crate::arp::ArpQuery;
use crate::ether::{build_ndp_frame, NdpMsg};
use crate::hostif::HostPort;
use crate::nd6::Nd6Query;
use softnet_wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use softnet_wire::ipv6::Ipv6Packet;
use softnet_wire::ndp::{NaFlags, NdpRepr};
use std::net::Ipv6Addr;
use std::time::Duration;

/// Questions of the host waiting for the stack's resolution, at most.
const QUERIES_MAX: usize = 32;
/// How long such a question is kept (the host asks again after a second).
const QUERY_WAIT: Duration = Duration::from_secs(3);

/// What the host asked: the address it wants resolved and its own
/// address it asked from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Asked {
    Arp { target: Ipv4Addr, asker_ip: Ipv4Addr },
    Nd { target: Ipv6Addr, asker_ip: Ipv6Addr },
}

/// A question of the host the neighbor tables could not answer at once.
#[derive(Copy, Clone, Debug)]
struct HostQuery {
    ifindex: IfIndex,
    asked: Asked,
    /// The host's MAC (the twin's).
    asker_mac: MacAddr,
    until: Instant,
}

/// The worker's host-side state: frames to punt per interface, the host's
/// IP packets of a batch waiting for pf out with their Ethernet headers,
/// and the host's pending questions (all capacity reserved at start).
pub(super) struct HostGlue {
    tx: Vec<Vec<PacketBuf>>,
    tx_pending: Vec<IfIndex>,
    rx: Vec<PacketBuf>,
    q: Vec<Option<PacketBuf>>,
    hdrs: Vec<[u8; HEADER_LEN]>,
    queries: Vec<HostQuery>,
    /// A large (reassembled) frame is sent alone, from its own pool.
    one: Vec<PacketBuf>,
}

impl HostGlue {
    pub(super) fn new() -> Self {
        HostGlue {
            tx: Vec::new(),
            tx_pending: Vec::with_capacity(16),
            rx: Vec::with_capacity(BATCH),
            q: Vec::with_capacity(BATCH),
            hdrs: Vec::with_capacity(BATCH),
            queries: Vec::with_capacity(QUERIES_MAX),
            one: Vec::with_capacity(1),
        }
    }
}

/// The Ethernet destination a punted packet carries: the interface's own
/// MAC for unicast (the twin has it too), the group's for multicast.
#[inline]
fn punt_dst_mac(ifp: &Interface, ip: &[u8]) -> Option<(MacAddr, EtherType)> {
    match ip.first()? >> 4 {
        4 if ip.len() >= IPV4_MIN_HEADER => {
            let dst = Ipv4Packet::new_unchecked(ip).dst();
            let mac = if dst.is_multicast() {
                ipv4::multicast_mac(dst)
            } else if dst.is_broadcast() || ifp.is_subnet_broadcast(dst) {
                MacAddr::BROADCAST
            } else {
                ifp.mac()
            };
            Some((mac, EtherType::IPV4))
        }
        6 if ip.len() >= softnet_wire::ipv6::HEADER_LEN => {
            let dst = softnet_wire::ipv6::Ipv6Packet::new_unchecked(ip).dst();
            let mac = if dst.is_multicast() { softnet_wire::ipv6::multicast_mac(dst) } else { ifp.mac() };
            Some((mac, EtherType::IPV6))
        }
        _ => None,
    }
}

impl WorkerState {
    /// Hands `p`, an IP packet for the router that the stack does not
    /// consume, to the host twin of the interface it arrived on, with its
    /// Ethernet header as it came (a reassembled datagram gets one with
    /// the interface's MAC as its source). Gives it back when that
    /// interface has no twin.
    pub(super) fn punt(&mut self, cx: &Ctx, p: PacketBuf) -> Option<PacketBuf> {
        if p.meta.flags & mflags::PF_DIVERTED != 0 {
            // pf diverted it to the stack's sockets, not the host's: the
            // closed-port answer follows (tcp_input's dropwithreset).
            return Some(p);
        }
        let Some(ifp) = cx.ifs.get(p.meta.rcvif) else { return Some(p) };
        let Some(host) = ifp.host() else { return Some(p) };
        if lro::is_super(&p) {
            // The twin takes the segments it stands for (`lro`).
            self.lro_each(cx, p, |w, s| {
                if let Some(s) = w.punt(cx, s) {
                    w.free(s);
                }
            });
            return None;
        }
        let hs = host.stats.get(self.id);
        let Some((dst, ethertype)) = punt_dst_mac(ifp, p.data()) else {
            hs.punt_errors.inc();
            self.free(p);
            return None;
        };
        let mut p = p;
        let reassembled = p.capacity() != self.pool.buf_size();
        if p.push_front(HEADER_LEN).is_err() {
            hs.punt_errors.inc();
            self.free(p);
            return None;
        }
        {
            let b = p.data_mut();
            b[0..6].copy_from_slice(&dst.0);
            if reassembled {
                b[6..12].copy_from_slice(&ifp.mac().0);
            }
            b[12..14].copy_from_slice(&ethertype.0.to_be_bytes());
        }
        hs.punted.inc();
        self.stage_host(cx, ifp.index(), p);
        None
    }

    fn stage_host(&mut self, cx: &Ctx, ifindex: IfIndex, p: PacketBuf) {
        let i = ifindex.as_usize();
        if i >= self.host.tx.len() {
            // A new interface index: grows once, not per packet.
            self.host.tx.resize_with(i + 1, || Vec::with_capacity(BATCH));
        }
        if self.host.tx[i].is_empty() {
            self.host.tx_pending.push(ifindex);
        }
        self.host.tx[i].push(p);
        if self.host.tx[i].len() >= STAGE_MAX {
            self.flush_host_one(cx, ifindex);
        }
    }

    /// Writes what was punted during the round to the twins.
    pub(super) fn flush_host(&mut self, cx: &Ctx) {
        while let Some(idx) = self.host.tx_pending.pop() {
            self.flush_host_one(cx, idx);
        }
    }

    fn flush_host_one(&mut self, cx: &Ctx, idx: IfIndex) {
        let mut frames = std::mem::take(&mut self.host.tx[idx.as_usize()]);
        self.host.tx_pending.retain(|i| *i != idx);
        let host = cx.ifs.get(idx).and_then(|i| i.host());
        let Some(host) = host else {
            for p in frames.drain(..) {
                self.free(p);
            }
            self.host.tx[idx.as_usize()] = frames;
            return;
        };
        let hs = host.stats.get(self.id);
        let small = self.pool.buf_size();
        let mut q = host.queue(self.id).lock();
        // Large frames (reassembled datagrams) go one at a time, each
        // back to its own pool.
        let mut i = 0;
        while i < frames.len() {
            if frames[i].capacity() != small {
                self.host.one.push(frames.remove(i));
                let sent = q.send(&mut self.large_pool, &mut self.host.one);
                hs.punt_errors.add(1 - sent as u64);
            } else {
                i += 1;
            }
        }
        let n = frames.len();
        let sent = q.send(&mut self.pool, &mut frames);
        hs.punt_errors.add((n - sent) as u64);
        drop(q);
        self.host.tx[idx.as_usize()] = frames;
    }

    /// Reads what the host sent out of each twin and handles it
    /// (`host_input`). Returns the frames read.
    pub(super) fn host_poll(&mut self, cx: &Ctx) -> usize {
        let mut total = 0;
        for ifp in cx.ifs.iter() {
            let Some(host) = ifp.host() else { continue };
            let n = {
                let Some(mut q) = host.queue(self.id).try_lock() else { continue };
                q.recv(&mut self.pool, &mut self.host.rx, BATCH)
            };
            if n == 0 {
                continue;
            }
            total += n;
            host.stats.get(self.id).from_host.add(n as u64);
            let mut rx = std::mem::take(&mut self.host.rx);
            for p in rx.drain(..) {
                self.host_input(cx, ifp, host, p);
            }
            self.host.rx = rx;
            self.host_out_batch(cx, ifp, host);
        }
        if !self.host.queries.is_empty() {
            self.host_queries(cx);
        }
        total
    }

    /// One frame from the host: ARP is answered here, IP waits for pf out
    /// (`host_out_batch`), anything else goes out as it is.
    fn host_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, host: &HostPort, mut p: PacketBuf) {
        let hs = host.stats.get(self.id);
        let Ok(frame) = EthernetFrame::new_checked(p.data()) else {
            hs.dropped.inc();
            return self.free(p);
        };
        if !ifp.is_up() {
            hs.dropped.inc();
            return self.free(p);
        }
        let ethertype = frame.ethertype();
        match ethertype {
            EtherType::ARP => self.host_arp(cx, ifp, host, p),
            EtherType::IPV4 | EtherType::IPV6 => {
                if ethertype == EtherType::IPV6 {
                    // Its neighbor discovery is answered here or dropped.
                    p = match self.host_nd(cx, ifp, host, p) {
                        Some(p) => p,
                        None => return,
                    };
                }
                let min = if ethertype == EtherType::IPV4 { IPV4_MIN_HEADER } else { softnet_wire::ipv6::HEADER_LEN };
                if p.len() < HEADER_LEN + min {
                    hs.dropped.inc();
                    return self.free(p);
                }
                if cx.filter.is_none() {
                    hs.transmitted.inc();
                    return self.stage(cx, ifp.index(), p);
                }
                let mut hdr = [0u8; HEADER_LEN];
                hdr.copy_from_slice(&p.data()[..HEADER_LEN]);
                let _ = p.pull_front(HEADER_LEN);
                p.meta.rcvif = IfIndex::NONE;
                self.host.hdrs.push(hdr);
                self.host.q.push(Some(p));
            }
            _ => {
                hs.transmitted.inc();
                self.stage(cx, ifp.index(), p);
            }
        }
    }

    /// pf_refragment6 for the host's datagram pf reassembled: each
    /// fragment gets the host's Ethernet header and goes out on `ifp`.
    fn host_refragment6(&mut self, cx: &Ctx, ifp: &Arc<Interface>, hdr: &[u8], p: PacketBuf) {
        let s = &cx.stats.ip6;
        let mut meta = p.meta;
        meta.pf_frag_max = 0;
        meta.flow_hash = 0;
        let Some(mut cut) = crate::refrag6::Refrag6::new(p.data(), p.meta.flow_hash, p.meta.pf_frag_max as usize)
        else {
            s.cantfrag.inc();
            return self.free(p);
        };
        while cut.more(p.data()) {
            let Some(mut f) = self.pool.alloc() else {
                s.odropped.inc();
                break;
            };
            if !cut.next_into(p.data(), &mut f) || f.push_front(HEADER_LEN).is_err() {
                s.odropped.inc();
                self.free(f);
                break;
            }
            f.data_mut()[..HEADER_LEN].copy_from_slice(hdr);
            f.meta = meta;
            s.ofragments.inc();
            self.stage(cx, ifp.index(), f);
        }
        self.free(p);
    }

    /// pf out on `ifp` over the host's IP packets of the batch; what
    /// passes gets its Ethernet header back and goes out. A datagram pf
    /// reassembled is fragmented for the link as ip_output would.
    fn host_out_batch(&mut self, cx: &Ctx, ifp: &Arc<Interface>, host: &HostPort) {
        if self.host.q.is_empty() {
            return;
        }
        let Some(f) = cx.filter else { return };
        let mut q = std::mem::take(&mut self.host.q);
        let mut hdrs = std::mem::take(&mut self.host.hdrs);
        let mut decisions = std::mem::take(&mut self.hook.decisions);
        let all = decisions_for(&mut decisions, q.len());
        self.filter_batch(cx, f, Direction::Out, ifp, &mut q, all);
        let hs = host.stats.get(self.id);
        for ((slot, &d), hdr) in q.iter_mut().zip(decisions.iter()).zip(hdrs.iter()) {
            let was = slot.is_some();
            let Some(mut p) = self.decided(cx, slot, d) else {
                if was && d == Decision::Drop {
                    hs.filtered.inc();
                }
                continue;
            };
            let v4 = p.data().first().is_some_and(|b| b >> 4 == 4);
            if p.meta.pf_route != RouteDecision::None {
                // route-to / reply-to / dup-to on the host's packet: pf
                // picks the next hop.
                p = if v4 {
                    match self.pf_route_out(cx, None, p) {
                        Some(p) => p,
                        None => continue,
                    }
                } else {
                    match self.pf_route6(cx, None, p) {
                        Some(p) => p,
                        None => continue,
                    }
                };
            }
            if !v4 && p.meta.pf_frag_max != 0 {
                // pf out reassembled the host's fragments: cut again as
                // the host sent them (pf_refragment6).
                hs.transmitted.inc();
                self.host_refragment6(cx, ifp, hdr, p);
                continue;
            }
            let mtu = ifp.mtu() as usize;
            if p.len() > mtu {
                if !v4 {
                    hs.dropped.inc();
                    self.free(p);
                    continue;
                }
                let dst = Ipv4Packet::new_unchecked(p.data()).dst();
                let next_hop = cx.rt.lookup(dst).and_then(|r| r.gateway).unwrap_or(dst);
                hs.transmitted.inc();
                self.fragment(cx, ifp, next_hop, p, mtu, None);
                continue;
            }
            if p.capacity() != self.pool.buf_size() {
                // Reassembled by pf but fits: into a normal buffer.
                let Some(mut n) = self.pool.alloc() else {
                    hs.dropped.inc();
                    self.free(p);
                    continue;
                };
                if n.set_len(p.len()).is_err() {
                    hs.dropped.inc();
                    self.free(n);
                    self.free(p);
                    continue;
                }
                n.data_mut().copy_from_slice(p.data());
                n.meta = p.meta;
                self.free(p);
                p = n;
            }
            if p.push_front(HEADER_LEN).is_err() {
                hs.dropped.inc();
                self.free(p);
                continue;
            }
            p.data_mut()[..HEADER_LEN].copy_from_slice(hdr);
            hs.transmitted.inc();
            self.stage(cx, ifp.index(), p);
        }
        q.clear();
        hdrs.clear();
        self.host.q = q;
        self.host.hdrs = hdrs;
        self.hook.decisions = decisions;
    }

    /// The host's ARP: a request is answered from the stack's table (the
    /// neighbor resolved first if need be); the rest (its gratuitous
    /// announcements, replies) stays off the wire: ARP is the stack's.
    fn host_arp(&mut self, cx: &Ctx, ifp: &Arc<Interface>, host: &HostPort, p: PacketBuf) {
        let hs = host.stats.get(self.id);
        let repr =
            ArpPacket::new_checked(EthernetFrame::new_unchecked(p.data()).payload()).and_then(|a| ArpRepr::parse(&a));
        let req = match repr {
            Ok(r) if r.operation == softnet_wire::arp::ArpOperation::Request && r.sender_ip != r.target_ip => r,
            _ => {
                hs.dropped.inc();
                return self.free(p);
            }
        };
        match cx.stack.arp.query(cx.now, ifp, req.target_ip) {
            ArpQuery::Known(mac) => {
                self.free(p);
                self.answer_host_arp(cx, ifp, req.target_ip, mac, req.sender_hw, req.sender_ip);
            }
            ArpQuery::Pending(request) => {
                self.free(p);
                if let Some(r) = request {
                    self.send_arp_request(cx, ifp, &r.repr);
                }
                let asked = Asked::Arp { target: req.target_ip, asker_ip: req.sender_ip };
                self.keep_query(cx, ifp, asked, req.sender_hw);
            }
            ArpQuery::Unknown => {
                hs.dropped.inc();
                self.free(p);
            }
        }
    }

    /// An ARP reply to the host: `target` is at `mac`.
    fn answer_host_arp(
        &mut self,
        cx: &Ctx,
        ifp: &Arc<Interface>,
        target: Ipv4Addr,
        mac: MacAddr,
        asker_mac: MacAddr,
        asker_ip: Ipv4Addr,
    ) {
        let Some(host) = ifp.host() else { return };
        let Some(mut r) = self.pool.alloc() else {
            host.stats.get(self.id).dropped.inc();
            return;
        };
        let reply = ArpRepr {
            operation: softnet_wire::arp::ArpOperation::Reply,
            sender_hw: mac,
            sender_ip: target,
            target_hw: asker_mac,
            target_ip: asker_ip,
        };
        if build_arp_frame(&mut r, mac, asker_mac, &reply).is_err() {
            return self.free(r);
        }
        host.stats.get(self.id).arp_answered.inc();
        self.stage_host(cx, ifp.index(), r);
    }

    /// Keeps a question of the host until the neighbor resolves (one per
    /// address; at most `QUERIES_MAX`, the host asks again anyway).
    fn keep_query(&mut self, cx: &Ctx, ifp: &Interface, asked: Asked, asker_mac: MacAddr) {
        let q = HostQuery { ifindex: ifp.index(), asked, asker_mac, until: cx.now + QUERY_WAIT };
        let dup = self.host.queries.iter().any(|x| x.ifindex == q.ifindex && x.asked == q.asked);
        if !dup && self.host.queries.len() < QUERIES_MAX {
            self.host.queries.push(q);
        }
    }

    /// The host's questions still open: answered once the tables resolved
    /// the neighbor, forgotten after `QUERY_WAIT` (the host asks again).
    fn host_queries(&mut self, cx: &Ctx) {
        let mut i = 0;
        while i < self.host.queries.len() {
            let q = self.host.queries[i];
            let Some(ifp) = cx.ifs.get(q.ifindex).cloned() else {
                self.host.queries.swap_remove(i);
                continue;
            };
            let answered = match q.asked {
                Asked::Arp { target, asker_ip } => match cx.stack.arp.resolved_on(cx.now, q.ifindex, target) {
                    Some(mac) => {
                        self.answer_host_arp(cx, &ifp, target, mac, q.asker_mac, asker_ip);
                        true
                    }
                    None => false,
                },
                Asked::Nd { target, asker_ip } => match cx.stack.nd6.resolved_on(q.ifindex, target) {
                    Some((mac, router)) => {
                        self.answer_host_ns(cx, &ifp, target, mac, router, q.asker_mac, asker_ip);
                        true
                    }
                    None => false,
                },
            };
            if answered || cx.now >= q.until {
                self.host.queries.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// The host's IPv6 frame: back if it goes on to the wire; its
    /// neighbor discovery does not (the stack's own): a solicitation is
    /// answered from the neighbor cache (resolving first if need be),
    /// the rest (router solicitations, advertisements, redirects, DAD)
    /// dropped.
    fn host_nd(&mut self, cx: &Ctx, ifp: &Arc<Interface>, host: &HostPort, p: PacketBuf) -> Option<PacketBuf> {
        let hs = host.stats.get(self.id);
        let Ok(ip) = Ipv6Packet::new_checked(&p.data()[HEADER_LEN..]) else {
            hs.dropped.inc();
            self.free(p);
            return None;
        };
        if ip.next_header() != IpProtocol::ICMPV6 {
            return Some(p);
        }
        let t = ip.payload().first().copied().unwrap_or(0);
        let nd = softnet_wire::icmpv6::msg_type::ROUTER_SOLICIT..=softnet_wire::icmpv6::msg_type::REDIRECT;
        if !nd.contains(&t) {
            return Some(p);
        }
        let (src, dst) = (ip.src(), ip.dst());
        let target = Icmpv6Packet::new_checked(ip.payload())
            .ok()
            .and_then(|m| match Icmpv6Repr::parse(src, dst, &m) {
                Ok(Icmpv6Repr::Ndp(NdpRepr::NeighborSolicit { target, .. })) => Some(target),
                _ => None,
            })
            .filter(|_| !src.is_unspecified());
        let asker_mac = EthernetFrame::new_unchecked(p.data()).src();
        self.free(p);
        let Some(target) = target else {
            hs.dropped.inc();
            return None;
        };
        match cx.stack.nd6.query(cx.now, ifp, target, src) {
            Nd6Query::Known(mac, router) => self.answer_host_ns(cx, ifp, target, mac, router, asker_mac, src),
            Nd6Query::Pending(solicit) => {
                if let Some(req) = solicit {
                    self.send_ns(cx, ifp, &req);
                }
                self.keep_query(cx, ifp, Asked::Nd { target, asker_ip: src }, asker_mac);
            }
            Nd6Query::Unknown => hs.dropped.inc(),
        }
        None
    }

    /// A neighbor advertisement to the host: `target` is at `mac`
    /// (solicited, override; router as the cache knows it), from the
    /// target's address, hop limit 255.
    #[allow(clippy::too_many_arguments)]
    fn answer_host_ns(
        &mut self,
        cx: &Ctx,
        ifp: &Arc<Interface>,
        target: Ipv6Addr,
        mac: MacAddr,
        router: bool,
        asker_mac: MacAddr,
        asker_ip: Ipv6Addr,
    ) {
        let Some(host) = ifp.host() else { return };
        let Some(mut r) = self.pool.alloc() else {
            host.stats.get(self.id).dropped.inc();
            return;
        };
        let flags = NaFlags { router, solicited: true, override_: true };
        let msg = NdpMsg::Na { target, flags, tlla: mac };
        if build_ndp_frame(&mut r, mac, asker_mac, target, asker_ip, msg).is_err() {
            return self.free(r);
        }
        host.stats.get(self.id).nd_answered.inc();
        self.stage_host(cx, ifp.index(), r);
    }
}
