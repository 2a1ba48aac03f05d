//! The worker's side of the socket layer (`crate::sock`): segments and
//! datagrams for the router that match a PCB are delivered to it
//! (tcp_input's and udp_input's PCB part) instead of the closed-port RST
//! or port unreachable; what the engine emits leaves through `ip_output` /
//! `ip6_output` (so pf out sees it); the application's queued work and the
//! connections' timers run here, on the worker's clock.

use super::*;
use crate::sock::tcp::{mss_for, Claim, ConnInner, TcpConn};
use crate::sock::udp::{take_record, UdpPcb, REC_HDR};
use crate::sock::{tcp_now, Pending, SockEnv};
use softnet_tcp::Verdict;
use softnet_wire::ipv6::{Ipv6Repr, HEADER_LEN as IPV6_HEADER};
use std::net::{IpAddr, SocketAddr};

/// Pending sockets and due timers handled per round, at most.
const SOCK_BUDGET: usize = 256;

/// The longest TCP super-segment (IP packet, header included) a
/// connection to `dst` may send now: what the route's interface takes
/// whole (`Interface::tso_max`), 0 for none (or no route: `ip_output` /
/// `ip6_output` count that). IPv6 by `ip6_output`'s own route choice
/// (`route6`: a link-local peer on its `scope`), one of ours (lo0) none.
/// One route lookup per `tcp_emit`, not per segment.
fn tso_limit(cx: &Ctx, dst: IpAddr, scope: Option<IfIndex>) -> u32 {
    let ifp = match dst {
        IpAddr::V4(d) => {
            let Some(r) = cx.rt.lookup(d) else { return 0 };
            if r.flags.intersects(RouteFlags::REJECT | RouteFlags::BLACKHOLE | RouteFlags::LOCAL) {
                return 0;
            }
            match cx.ifs.get_weak(r.ifp) {
                Some(i) => i,
                None => return 0,
            }
        }
        IpAddr::V6(d) => match super::ip6_output::route6(cx, d, scope) {
            Some((i, _, _)) if !i.is_loopback() => i,
            _ => return 0,
        },
    };
    ifp.tso_max().min(u16::MAX as u32)
}

impl WorkerState {
    /// tcp_input after the checksum: the segment in `p.data()[off..end]`
    /// to a connection, or a SYN to a listener. Returns the packet when no
    /// PCB takes it (the caller answers with a RST).
    pub(super) fn tcp_sock_input(
        &mut self,
        cx: &Ctx,
        p: PacketBuf,
        (off, end): (usize, usize),
        src: IpAddr,
        dst: IpAddr,
    ) -> Option<PacketBuf> {
        let socks = &cx.stack.socks;
        if socks.is_empty() {
            return Some(p);
        }
        let seg = &p.data()[off..end];
        let tcp = TcpPacket::new_unchecked(seg);
        let local = SocketAddr::new(dst, tcp.dst_port());
        let remote = SocketAddr::new(src, tcp.src_port());
        let Ok(repr) = TcpRepr::parse(&tcp) else {
            // A malformed option (a length that overruns the header or
            // does not fit the kind) on a segment for one of our PCBs:
            // dropped and counted, never acted on nor answered with a RST.
            if socks.tcp_lookup_from(self.id, local, remote).is_some() || socks.tcp_listener(local).is_some() {
                cx.stats.transport.tcp_rcvbadopt.inc();
                self.free(p);
                return None;
            }
            return Some(p);
        };
        let payload = tcp.payload();
        let now = tcp_now(cx.now);
        let rcvif = p.meta.rcvif;
        // A SYN to a TIME_WAIT connection (Verdict::Reopen) goes round
        // again to the listener.
        for _ in 0..2 {
            let conn = match self.tcp_pcb(socks, local, remote) {
                Some(c) => c,
                None => {
                    let f = repr.flags;
                    let l = match p.meta.flags & mflags::PF_DIVERTED {
                        0 => socks.tcp_listener(local),
                        _ => self.divert_listener(cx, &p),
                    };
                    let Some(l) = l else { return Some(p) };
                    let key = (local, remote);
                    let scope = link_scope(src).then_some(rcvif);
                    if f.contains(TcpFlags::RST) {
                        socks.syn_cache_reset(self.id, key, &repr);
                        self.free(p);
                        return None;
                    }
                    if f.contains(TcpFlags::SYN) && !f.contains(TcpFlags::ACK) {
                        if l.queue_full() {
                            // tcp_input: so_qlen over so_qlimit drops the SYN.
                            socks.stats.tcp_listendrop.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            self.free(p);
                            return None;
                        }
                        // syn_cache_add: the SYN,ACK from the cache (or a cookie).
                        let mtu = cx.ifs.get(rcvif).map_or(1500, |i| i.mtu());
                        let cfg = l.config();
                        let mss = mss_for(mtu, src.is_ipv6()).min(cfg.mss);
                        let synack = socks.syn_cache_add(self.id, &cfg, key, &repr, mss, now);
                        self.free(p);
                        self.send_seg(cx, local.ip(), remote.ip(), &synack, scope);
                        return None;
                    }
                    if f.contains(TcpFlags::SYN) || !f.contains(TcpFlags::ACK) {
                        return Some(p);
                    }
                    // syn_cache_get: the ACK completing a handshake.
                    let Some(done) = socks.syn_cache_get(self.id, key, &repr, now) else { return Some(p) };
                    // A full accept queue resets it (syn_cache_get's
                    // resetandabort), counted as listendrop.
                    // The worker completing the handshake owns it (claimed
                    // below, before the ACK is processed).
                    let Some(c) = socks.tcp_passive_open(&l, key, done, scope, now, self.id) else {
                        return Some(p);
                    };
                    c
                }
            };
            // pf_inp_link: the state pf in matched is the connection's.
            conn.pf_link_in(p.meta.pf_link);
            let claim = conn.claim(self.id);
            let mut inner = conn.inner.lock();
            match claim {
                Claim::Mine => {}
                // Its entry to this worker's table (an active open whose
                // answer the link steered here).
                Claim::Claimed => socks.tcp_rehome(&conn, &mut inner, self.id),
                Claim::Miss => cx.stats.transport.tcp_steermiss.inc(),
            }
            let mut env = SockEnv { now, isn: &socks.isn, local, remote };
            let v = inner.tcb.input(&mut env, &repr, payload);
            count_verdict(&cx.stats.transport, v, payload.len());
            if v == Verdict::Accepted && deferrable(&repr, payload.len(), &inner.tcb) {
                if !inner.emit_queued {
                    inner.emit_queued = true;
                    self.sock_emit.push(conn.clone());
                }
            } else {
                self.tcp_emit(cx, &conn, &mut inner, now);
            }
            self.tcp_after(socks, &conn, &mut inner);
            if v != Verdict::Reopen {
                break;
            }
        }
        self.free(p);
        None
    }

    /// in_pcblookup behind a one-entry cache (the BSDs' last-PCB hint,
    /// tcp_input's `tcp_last_inpcb`): a bulk transfer's segments all go
    /// to one connection, and the table's keyed hash of two socket
    /// addresses cost more than the rest of the lookup. The cached
    /// connection is the table's while it is `in_table` (a removed one
    /// never goes back; a new one with the same 4-tuple is another PCB).
    fn tcp_pcb(&mut self, socks: &crate::sock::Sockets, local: SocketAddr, remote: SocketAddr) -> Option<Arc<TcpConn>> {
        if let Some((key, last)) = &self.tcp_last {
            if *key == (local, remote) {
                if let Some(c) = last.upgrade().filter(|c| c.inner.lock().in_table) {
                    return Some(c);
                }
            }
        }
        let c = socks.tcp_lookup_from(self.id, local, remote)?;
        self.tcp_last = Some(((local, remote), Arc::downgrade(&c)));
        Some(c)
    }

    /// The output of the connections whose segments arrived in this
    /// round's input batches and could wait: one pass per connection, so a
    /// sender answers a batch of ACKs with the new data they all let out,
    /// and a receiver answers a batch of in-order data with one ACK (as
    /// LRO/GRO receivers do) instead of one every second segment, each a
    /// frame and, on a TAP, a write(2) in which the Linux peer processes
    /// it. The engine bounds the stretch (`Tcb::ack_may_wait`: at most a
    /// quarter of the offered window unacknowledged; an ACK per batch
    /// with no bound made the bulk bimodal on a TAP with 64 KiB windows,
    /// BENCHMARKS §4 session 9).
    pub(super) fn tcp_emit_deferred(&mut self, cx: &Ctx) {
        if self.sock_emit.is_empty() {
            return;
        }
        let now = tcp_now(cx.now);
        let mut conns = std::mem::take(&mut self.sock_emit);
        for c in conns.drain(..) {
            let mut inner = c.inner.lock();
            inner.emit_queued = false;
            self.tcp_emit(cx, &c, &mut inner, now);
            self.tcp_after(&cx.stack.socks, &c, &mut inner);
        }
        self.sock_emit = conns;
    }

    /// `Sockets::tcp_after`, the wake-up deferred to the end of the round
    /// (`sock_wake_all`): one per connection per round.
    fn tcp_after(&mut self, socks: &crate::sock::Sockets, conn: &Arc<TcpConn>, inner: &mut ConnInner) {
        let mut accept = None;
        if socks.tcp_after_deferred(conn, inner, &mut accept) && !inner.wake_queued {
            inner.wake_queued = true;
            self.sock_wake.push(conn.clone());
        }
        // At most one entry per listener a round (`ListenQueue::wake_due`).
        if let Some(l) = accept {
            self.accept_wake.push(l);
        }
    }

    /// Wakes the threads and tasks of the connections that had news this
    /// round (after the round's frames went out).
    pub(super) fn sock_wake_all(&mut self) {
        for c in self.sock_wake.drain(..) {
            let mut inner = c.inner.lock();
            inner.wake_queued = false;
            crate::sock::Sockets::tcp_wake(&c, &mut inner);
        }
        for l in self.accept_wake.drain(..) {
            l.wake_accept();
        }
    }

    /// Writes every segment the connection has to send and sends each
    /// through ip_output / ip6_output. Toward an interface with
    /// segmentation offload (`Interface::tso_max`), new data goes out in
    /// super-segments of up to 64 KB (`Tcb::output_tso`, in the worker's
    /// large buffers while it has some; `mflags::TSO`, cut at the MSS by
    /// the device, or by `ip_output` / `ip6_output` on any other way out),
    /// for IPv4 and IPv6 connections alike.
    pub(super) fn tcp_emit(&mut self, cx: &Ctx, conn: &TcpConn, inner: &mut ConnInner, now: softnet_tcp::Instant) {
        let socks = &cx.stack.socks;
        let mut env = SockEnv { now, isn: &socks.isn, local: conn.local, remote: conn.remote };
        let iph = if conn.local.is_ipv6() { IPV6_HEADER } else { IPV4_MIN_HEADER };
        let mut tso = match inner.tcb.tso_due() {
            true => tso_limit(cx, conn.remote.ip(), inner.scope),
            false => 0,
        };
        loop {
            let large = if tso != 0 && inner.tcb.tso_due() { self.large_pool.alloc() } else { None };
            let Some(mut r) = large.or_else(|| self.pool.alloc()) else {
                cx.stats.ip.odropped.inc();
                // The engine's retransmission timer sends it again.
                break;
            };
            let room = r.capacity() - crate::packet::HEADROOM;
            if r.rewind(room).is_err() {
                self.free(r);
                break;
            }
            // The payload a large buffer holds under 64 KB of IP packet.
            let limit = match r.capacity() == self.pool.buf_size() {
                true => 0,
                false => (tso as usize).min(room - HEADER_LEN) - iph - softnet_wire::tcp::MAX_HEADER_LEN,
            };
            let Some(repr) = inner.tcb.output_tso(&mut env, &mut r.data_mut()[iph..], limit) else {
                self.free(r);
                break;
            };
            let seglen = repr.buffer_len();
            if r.set_len(iph + seglen).is_err() {
                self.free(r);
                break;
            }
            if repr.payload_len > inner.tcb.mss() {
                r.meta.flags |= mflags::TSO;
                r.meta.pf_frag_max = inner.tcb.mss() as u16;
            } else if limit != 0 {
                // The window let out one segment only: no more large
                // buffers for this pass.
                tso = 0;
            }
            // pf out tries the connection's state first, without a hash
            // probe; what it found instead is the connection's from now on.
            r.meta.pf_link = conn.pf_link_out();
            self.pf_out_link = super::NO_PF_LINK;
            self.send_l4(cx, r, conn.local.ip(), conn.remote.ip(), IpProtocol::TCP, seglen, inner.scope);
            if self.pf_out_link != super::NO_PF_LINK {
                conn.pf_link_learn(self.pf_out_link);
            }
        }
    }

    /// Sends one header-only segment built outside a connection (the SYN
    /// cache's SYN,ACKs).
    fn send_seg(&mut self, cx: &Ctx, src: IpAddr, dst: IpAddr, seg: &TcpRepr, scope: Option<IfIndex>) {
        let Some(mut r) = self.pool.alloc() else {
            cx.stats.ip.odropped.inc();
            return;
        };
        let iph = if src.is_ipv6() { IPV6_HEADER } else { IPV4_MIN_HEADER };
        let len = seg.buffer_len();
        if r.rewind(iph + len).is_err() {
            return self.free(r);
        }
        seg.emit(&mut r.data_mut()[iph..]);
        self.send_l4(cx, r, src, dst, IpProtocol::TCP, len, scope);
    }

    /// Puts the IP header in front of the transport header and payload at
    /// `p[iph..]`, fills the transport checksum, and sends it.
    #[allow(clippy::too_many_arguments)]
    fn send_l4(
        &mut self,
        cx: &Ctx,
        mut r: PacketBuf,
        src: IpAddr,
        dst: IpAddr,
        proto: IpProtocol,
        len: usize,
        scope: Option<IfIndex>,
    ) {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let ip = Ipv4Repr {
                    src: s,
                    dst: d,
                    protocol: proto,
                    ttl: cx.stack.config.default_ttl,
                    tos: 0,
                    ident: self.next_ip_id(),
                    dont_frag: proto == IpProtocol::TCP,
                    payload_len: len,
                };
                let tso = r.meta.flags & mflags::TSO != 0;
                let b = r.data_mut();
                ip.emit(&mut b[..IPV4_MIN_HEADER]);
                let l4 = &mut b[IPV4_MIN_HEADER..IPV4_MIN_HEADER + len];
                if tso {
                    // Whoever cuts the super-segment computes the
                    // checksums (the device: NEEDS_CSUM; `gso_out`: each
                    // segment's); pf out's fixups on it are overwritten.
                } else if proto == IpProtocol::TCP {
                    TcpPacket::new_unchecked(l4).fill_checksum(s, d);
                } else {
                    softnet_wire::udp::UdpPacket::new_unchecked(l4).fill_checksum(s, d);
                }
                self.ip_output(cx, r);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let ip = Ipv6Repr {
                    src: s,
                    dst: d,
                    next_header: proto,
                    hop_limit: super::icmp6::IP6_DEFHLIM,
                    traffic_class: 0,
                    flow_label: 0,
                    payload_len: len,
                };
                let tso = r.meta.flags & mflags::TSO != 0;
                let b = r.data_mut();
                ip.emit(&mut b[..IPV6_HEADER]);
                let l4 = &mut b[IPV6_HEADER..IPV6_HEADER + len];
                if tso {
                    // As IPv4's: the checksums are whoever cuts it.
                } else if proto == IpProtocol::TCP {
                    TcpPacket::new_unchecked(l4).fill_checksum_v6(s, d);
                } else {
                    softnet_wire::udp::UdpPacket::new_unchecked(l4).fill_checksum_v6(s, d);
                }
                self.ip6_output(cx, r, scope);
            }
            _ => self.free(r),
        }
    }

    /// udp_input's PCB part: the datagram (UDP header at `off`, `ulen`
    /// bytes) to the socket bound to its destination. Returns the packet
    /// when no socket takes it (port unreachable follows).
    pub(super) fn udp_sock_input(
        &mut self,
        cx: &Ctx,
        p: PacketBuf,
        (off, ulen): (usize, usize),
        src: IpAddr,
        dst: IpAddr,
    ) -> Option<PacketBuf> {
        let socks = &cx.stack.socks;
        if socks.is_empty() {
            return Some(p);
        }
        let udp = softnet_wire::udp::UdpPacket::new_unchecked(&p.data()[off..off + ulen]);
        let local = SocketAddr::new(dst, udp.dst_port());
        let remote = SocketAddr::new(src, udp.src_port());
        let pcb = match p.meta.flags & mflags::PF_DIVERTED {
            0 => socks.udp_lookup(local, remote),
            _ => self.divert_udp(cx, &p, local, remote),
        };
        let Some(pcb) = pcb else { return Some(p) };
        // A full receive ring drops the datagram (counted in udp_fullsock).
        socks.udp_deliver(&pcb, remote, local, udp.payload());
        self.free(p);
        None
    }

    /// Sends the datagrams queued on a UDP socket.
    fn udp_emit(&mut self, cx: &Ctx, pcb: &UdpPcb) {
        let mut i = pcb.inner.lock();
        while i.tx.len() >= REC_HDR {
            let Some(mut r) = self.pool.alloc() else {
                cx.stats.ip.odropped.inc();
                return;
            };
            let room = r.capacity() - crate::packet::HEADROOM;
            if r.rewind(room).is_err() {
                return self.free(r);
            }
            let dst_is_v6 = pcb.local.is_ipv6();
            let iph = if dst_is_v6 { IPV6_HEADER } else { IPV4_MIN_HEADER };
            let hdr = iph + softnet_wire::udp::HEADER_LEN;
            let Some((n, to)) = take_record(&mut i.tx, &mut r.data_mut()[hdr..]) else {
                return self.free(r);
            };
            let src = match pcb.local.ip() {
                a if !a.is_unspecified() => Some(a),
                _ => crate::sock::api::source_for(cx.stack, to.ip()).map(|(a, _)| a),
            };
            let Some(src) = src else {
                cx.stats.ip.noroute.inc();
                self.free(r);
                continue;
            };
            let ulen = softnet_wire::udp::HEADER_LEN + n;
            {
                let b = &mut r.data_mut()[iph..iph + ulen];
                let mut u = softnet_wire::udp::UdpPacket::new_unchecked(b);
                u.set_src_port(pcb.local.port());
                u.set_dst_port(to.port());
                u.set_len(ulen as u16);
            }
            if r.set_len(iph + ulen).is_err() {
                self.free(r);
                continue;
            }
            cx.stats.transport.udp_opackets.inc();
            self.send_l4(cx, r, src, to.ip(), IpProtocol::UDP, ulen, None);
        }
        if i.waiters > 0 {
            pcb.cond.notify_all();
        }
        i.tasks.wake();
    }

    /// An ICMP destination unreachable about one of our packets (`quote`:
    /// its IP header and at least 8 bytes after it), to the socket that
    /// sent it (in_pcbnotify): "fragmentation needed" lowers a TCP
    /// connection's MSS to the next-hop MTU (tcp_mtudisc, RFC 1191 §6.5);
    /// port and protocol unreachable are ECONNREFUSED, network, host and
    /// administratively prohibited EHOSTUNREACH (icmp_err_convert).
    pub(super) fn icmp_sock_notify(&mut self, cx: &Ctx, code: u8, mtu: u16, quote: &[u8]) {
        if cx.stack.socks.is_empty() {
            return;
        }
        // The quote is truncated: only its header and 8 bytes are there.
        if quote.len() < IPV4_MIN_HEADER || quote[0] >> 4 != 4 {
            return;
        }
        let ip = Ipv4Packet::new_unchecked(quote);
        let hl = ip.header_len() as usize;
        let Some(l4) = quote.get(hl..hl + 8) else { return };
        use DstUnreachable as U;
        let what = match code {
            c if c == U::FragRequired as u8 && mtu >= 68 => SockNotify::Mtu(u32::from(mtu)),
            c if c == U::PortUnreachable as u8 || c == U::ProtoUnreachable as u8 => SockNotify::Refused,
            c if c == U::NetUnreachable as u8 || c == U::HostUnreachable as u8 || c == U::CommProhibited as u8 => {
                SockNotify::HostUnreach
            }
            _ => return,
        };
        self.sock_notify(cx, ip.protocol(), (ip.src().into(), ip.dst().into()), l4, what);
    }

    /// The same for ICMPv6 (icmp6_notify / in6_pcbnotify): "packet too
    /// big" lowers the MSS (RFC 8201 §4), port unreachable is
    /// ECONNREFUSED, no route / prohibited / beyond scope / address
    /// unreachable EHOSTUNREACH (icmp6_errmap).
    pub(super) fn icmp6_sock_notify(&mut self, cx: &Ctx, repr: &softnet_wire::icmpv6::Icmpv6Repr) {
        use softnet_wire::icmpv6::{DstUnreachable as U6, Icmpv6Repr as R};
        if cx.stack.socks.is_empty() {
            return;
        }
        let (what, quote) = match *repr {
            R::PacketTooBig { mtu, data } => (SockNotify::Mtu(mtu.max(1280)), data),
            R::DstUnreachable { code: U6::PortUnreachable, data } => (SockNotify::Refused, data),
            R::DstUnreachable { data, .. } => (SockNotify::HostUnreach, data),
            _ => return,
        };
        // The quote is truncated (its payload length is the original's):
        // the fixed header and 8 bytes after it are what is read. Only a
        // transport header right after the fixed header is looked at (our
        // sockets send no extension headers).
        let Some(l4) = quote.get(IPV6_HEADER..IPV6_HEADER + 8) else { return };
        if quote[0] >> 4 != 6 {
            return;
        }
        let ip = softnet_wire::ipv6::Ipv6Packet::new_unchecked(quote);
        self.sock_notify(cx, ip.next_header(), (ip.src().into(), ip.dst().into()), l4, what);
    }

    /// in_pcbnotify for either family: `l4` is the quoted transport
    /// header's first 8 bytes (ports, and TCP's sequence number).
    fn sock_notify(&mut self, cx: &Ctx, proto: IpProtocol, (src, dst): (IpAddr, IpAddr), l4: &[u8], what: SockNotify) {
        let socks = &cx.stack.socks;
        let sport = u16::from_be_bytes([l4[0], l4[1]]);
        let dport = u16::from_be_bytes([l4[2], l4[3]]);
        let local = SocketAddr::new(src, sport);
        let remote = SocketAddr::new(dst, dport);
        match proto {
            IpProtocol::TCP => {
                let Some(c) = socks.tcp_lookup(local, remote) else { return };
                let seq = softnet_tcp::Seq(u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]));
                let mut i = c.inner.lock();
                // tcp_ctlinput: only about a segment in flight.
                if !i.tcb.quotes_unacked(seq) {
                    cx.stats.transport.tcp_icmpbadseq.inc();
                    return;
                }
                match what {
                    SockNotify::Mtu(mtu) => {
                        let hdr = if local.is_ipv6() { 60 } else { 40 };
                        i.tcb.lower_mss(mtu.saturating_sub(hdr).min(65535) as u16);
                        drop(i);
                        socks.kick_tcp(&c);
                    }
                    SockNotify::Refused | SockNotify::HostUnreach => {
                        let err = match what {
                            SockNotify::Refused => softnet_tcp::TcpError::Refused,
                            _ => softnet_tcp::TcpError::HostUnreachable,
                        };
                        if i.tcb.icmp_unreachable(err) {
                            socks.tcp_after(&c, &mut i);
                        }
                    }
                }
            }
            IpProtocol::UDP => {
                let err = match what {
                    SockNotify::Refused => crate::sock::SockError::Refused,
                    SockNotify::HostUnreach => crate::sock::SockError::NoRoute,
                    SockNotify::Mtu(_) => return,
                };
                let Some(pcb) = socks.udp.read().get(&local).cloned() else { return };
                let mut i = pcb.inner.lock();
                // udp_notify: only a connected socket hears of it.
                if i.connected == Some(remote) {
                    i.error = Some(err);
                    if i.waiters > 0 {
                        pcb.cond.notify_all();
                    }
                    i.tasks.wake();
                }
            }
            _ => {}
        }
    }

    /// The application's queued work, then the timers that are due.
    /// Returns how many sockets it handled (a busy worker does not sleep).
    pub(super) fn sock_poll(&mut self, cx: &Ctx) -> usize {
        let socks = &cx.stack.socks;
        let me = socks.slot(self.id);
        if socks.is_empty() && socks.pending[me].is_empty() {
            return 0;
        }
        let now = tcp_now(cx.now);
        let mut n = 0;
        while n < SOCK_BUDGET {
            let Some(job) = socks.pending[me].pop() else { break };
            n += 1;
            match job {
                Pending::Tcp(c) => {
                    c.queued.store(false, std::sync::atomic::Ordering::Release);
                    if socks.conn_slot(&c) != me {
                        // Claimed by another worker since it was queued.
                        socks.kick_tcp(&c);
                        continue;
                    }
                    let mut inner = c.inner.lock();
                    self.tcp_emit(cx, &c, &mut inner, now);
                    self.tcp_after(socks, &c, &mut inner);
                }
                Pending::Udp(u) => {
                    u.queued.store(false, std::sync::atomic::Ordering::Release);
                    self.udp_emit(cx, &u);
                }
                Pending::Divert(d) => {
                    d.queued.store(false, std::sync::atomic::Ordering::Release);
                    self.divert_emit(cx, &d);
                }
            }
        }
        let mut synacks = std::mem::take(&mut self.sock_synacks);
        socks.syn_cache_due(self.id, now, &mut synacks);
        for ((local, remote), seg) in synacks.drain(..) {
            n += 1;
            self.send_seg(cx, local.ip(), remote.ip(), &seg, None);
        }
        self.sock_synacks = synacks;
        let mut due = std::mem::take(&mut self.sock_due);
        socks.due(self.id, cx.now, &mut due, SOCK_BUDGET);
        for c in due.drain(..) {
            n += 1;
            let mut inner = c.inner.lock();
            if inner.tcb.poll_at().is_some_and(|t| t <= now) {
                let mut env = SockEnv { now, isn: &socks.isn, local: c.local, remote: c.remote };
                inner.tcb.on_timer(&mut env);
            }
            self.tcp_emit(cx, &c, &mut inner, now);
            self.tcp_after(socks, &c, &mut inner);
        }
        self.sock_due = due;
        n
    }
}

/// What an ICMP error tells a socket.
#[derive(Clone, Copy)]
enum SockNotify {
    /// The path MTU (needfrag, packet too big).
    Mtu(u32),
    /// ECONNREFUSED.
    Refused,
    /// EHOSTUNREACH.
    HostUnreach,
}

/// The engine's drops in `netstat -s -p tcp` (tcp_input's tcpstat
/// increments at the same places).
fn count_verdict(ts: &crate::stats::TransportStats, v: Verdict, len: usize) {
    use softnet_tcp::Drop as D;
    let Verdict::Dropped(d) = v else { return };
    match d {
        D::OutOfWindow => {
            ts.tcp_rcvpackafterwin.inc();
            ts.tcp_rcvbyteafterwin.add(len as u64);
        }
        D::Paws => ts.tcp_pawsdrop.inc(),
        D::RstChallenged => ts.tcp_badrst.inc(),
        D::SynChallenged => ts.tcp_badsyn.inc(),
        D::AckTooNew => ts.tcp_rcvacktoomuch.inc(),
        D::DataAfterClose => ts.tcp_rcvafterclose.inc(),
        D::Closed | D::NotSyn | D::BadAck | D::AckTooOld | D::NoAck => {}
    }
}

/// A segment whose answer can wait for the end of the input batch
/// (`WorkerState::tcp_emit_deferred`) on an established connection that
/// has no hole to report: a pure ACK, or in-order data whose ACK the
/// engine lets wait (`Tcb::ack_may_wait`).
fn deferrable(seg: &TcpRepr, len: usize, tcb: &softnet_tcp::Tcb) -> bool {
    seg.flags.contains(TcpFlags::ACK)
        && !seg.flags.intersects(TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST)
        && tcb.state() == softnet_tcp::State::Established
        && !tcb.reassembling()
        && (len == 0 || tcb.ack_may_wait())
}

/// A link-local IPv6 peer: its packets leave by the interface it is on.
fn link_scope(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(a) if a.is_unicast_link_local())
}
