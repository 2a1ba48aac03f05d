//! ICMP (OpenBSD's ip_icmp.c): `icmp_input` (echo requests answered in
//! place as icmp_reflect does, everything else counted), `icmp_error`
//! (RFC 1122 / RFC 1812 errors about a packet, rate limited by the
//! worker's own token bucket). ICMPv6 is its sibling, icmp6.rs.

use super::*;
use softnet_wire::icmpv4::{Icmpv4Packet, HEADER_LEN as ICMP_HEADER_LEN};

/// RFC 1812 §4.3.2.3: an ICMP error quotes as much of the original as fits
/// in 576 bytes.
const ICMP_ERROR_MAX: usize = 576;
/// TTL of ICMP errors and replies the router reflects (OpenBSD icmp_reflect
/// uses MAXTTL).
const ICMP_REFLECT_TTL: u8 = 255;

/// Why `icmp_error` is called: type, code and the extra field.
#[derive(Copy, Clone, Debug)]
pub(super) enum IcmpErr {
    Unreach(DstUnreachable, u16),
    TimeExceeded,
    ParamProblem(u8),
    Redirect(Ipv4Addr),
}

/// Token bucket for ICMP errors, refilled from the batch clock.
pub(super) struct TokenBucket {
    /// Tokens times 1e9, so that refills need no division.
    tokens_ns: u64,
    capacity_ns: u64,
    rate: u64,
    last: Instant,
}

impl TokenBucket {
    const ONE: u64 = 1_000_000_000;
    pub(super) fn new(rate: u64, burst: u64) -> Self {
        let capacity_ns = burst.max(1) * Self::ONE;
        TokenBucket { tokens_ns: capacity_ns, capacity_ns, rate, last: Instant::ZERO }
    }
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.as_nanos().saturating_sub(self.last.as_nanos());
        self.last = now;
        self.tokens_ns = self.tokens_ns.saturating_add(elapsed.saturating_mul(self.rate)).min(self.capacity_ns);
        if self.tokens_ns >= Self::ONE {
            self.tokens_ns -= Self::ONE;
            true
        } else {
            false
        }
    }
}

/// ICMP's state on this worker: the error rate limit (its share of
/// `icmp_err_rate` / `icmp_err_burst`).
pub(super) struct IcmpState {
    bucket: TokenBucket,
}

impl IcmpState {
    pub(super) fn new(rate: u64, burst: u64) -> Self {
        IcmpState { bucket: TokenBucket::new(rate, burst) }
    }
}

impl WorkerState {
    pub(super) fn icmp_input(&mut self, cx: &Ctx, ifp: &Arc<Interface>, mut p: PacketBuf, bcast: bool) {
        let ics = &cx.stats.icmp;
        let ip = Ipv4Packet::new_unchecked(p.data());
        let hlen = ip.header_len() as usize;
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
            ics.tooshort.inc();
            return self.free(p);
        };
        if !icmp.verify_checksum() {
            ics.checksum.inc();
            return self.free(p);
        }
        let msg_type = icmp.msg_type();
        if let Some(c) = ics.inhist.get(msg_type as usize) {
            c.inc();
        }
        if msg_type != icmpv4::msg_type::ECHO_REQUEST {
            // Errors about a socket's packets go to it (`sockio`); the
            // rest addressed to the router: the host's, if the interface
            // has a twin; else nobody listens.
            if msg_type == icmpv4::msg_type::DST_UNREACHABLE {
                self.icmp_sock_notify(cx, icmp.code(), icmp.next_hop_mtu(), icmp.data());
            }
            let Some(p) = self.punt(cx, p) else { return };
            return self.free(p);
        }
        if bcast && !cx.stack.config.bmcast_echo {
            ics.bmcastecho.inc();
            return self.free(p);
        }
        // Reflect in place (icmp_reflect): strip options, swap addresses,
        // echo request → reply with an incremental checksum update.
        if hlen > IPV4_MIN_HEADER {
            let shift = hlen - IPV4_MIN_HEADER;
            p.data_mut().copy_within(0..IPV4_MIN_HEADER, shift);
            let _ = p.pull_front(shift);
            let len = p.len() as u16;
            let mut ip = Ipv4Packet::new_unchecked(p.data_mut());
            ip.set_header_len(IPV4_MIN_HEADER as u8);
            ip.set_total_len(len);
        }
        let (orig_src, orig_dst) = {
            let ip = Ipv4Packet::new_unchecked(p.data());
            (ip.src(), ip.dst())
        };
        let reply_src = if bcast { ifp.source_for(orig_src).unwrap_or(orig_dst) } else { orig_dst };
        Icmpv4Packet::new_unchecked(Ipv4Packet::new_unchecked(p.data_mut()).payload_mut()).make_echo_reply();
        let id = self.next_ip_id();
        {
            let mut ip = Ipv4Packet::new_unchecked(p.data_mut());
            ip.set_src(reply_src);
            ip.set_dst(orig_src);
            ip.set_ttl(ICMP_REFLECT_TTL);
            ip.set_ident(id);
            ip.set_flags_frag(false, false, 0);
            ip.fill_checksum();
        }
        // icmp_reflect (m_resethdr): a new packet now; only its routing
        // table and pf's generated mark stay (not pf's link to the
        // request's state, nor the request's link-level broadcast).
        p.meta =
            PacketMeta { rtable: p.meta.rtable, flags: p.meta.flags & mflags::PF_GENERATED, ..PacketMeta::default() };
        ics.outhist[icmpv4::msg_type::ECHO_REPLY as usize].inc();
        ics.reflect.inc();
        self.ip_output(cx, p);
    }

    /// Sends an ICMP error about `orig` (an IPv4 packet at `data()`), unless
    /// RFC 1122 §3.2.2 / RFC 1812 §4.3.2.7 forbid it: never about an ICMP
    /// error, a broadcast or multicast, a non-first fragment, or a source
    /// that is not a unicast host. Rate limited. `orig` stays the caller's.
    pub(super) fn icmp_error(
        &mut self,
        cx: &Ctx,
        rcvif: Option<&Interface>,
        orig: &PacketBuf,
        link_bcast: bool,
        why: IcmpErr,
    ) {
        let ics = &cx.stats.icmp;
        ics.error.inc();
        let o = orig.data();
        let oip = Ipv4Packet::new_unchecked(o);
        let (osrc, odst) = (oip.src(), oip.dst());
        if oip.frag_offset() != 0 || link_bcast || odst.is_multicast() || odst.is_broadcast() {
            ics.bmcast.inc();
            return;
        }
        if osrc.is_unspecified() || osrc.is_multicast() || osrc.is_broadcast() || osrc.is_loopback() {
            ics.bmcast.inc();
            return;
        }
        if let Some(r) = cx.rt.lookup(odst) {
            if r.flags.contains(RouteFlags::BROADCAST) {
                ics.bmcast.inc();
                return;
            }
        }
        if oip.protocol() == IpProtocol::ICMP && !matches!(why, IcmpErr::Redirect(_)) {
            match oip.payload().first() {
                Some(&t) if icmpv4::is_error(t) => {
                    ics.oldicmp.inc();
                    return;
                }
                None => {
                    ics.oldshort.inc();
                    return;
                }
                _ => {}
            }
        }
        if !self.icmp.bucket.take(cx.now) {
            ics.toofreq.inc();
            return;
        }
        let Some(mut e) = self.pool.alloc() else {
            cx.stats.ip.odropped.inc();
            return;
        };
        let quote = &o[..o.len().min(ICMP_ERROR_MAX - IPV4_MIN_HEADER - ICMP_HEADER_LEN)];
        let (repr, msg_type) = match why {
            IcmpErr::Unreach(code, mtu) => {
                (Icmpv4Repr::DstUnreachable { code, next_hop_mtu: mtu, data: quote }, icmpv4::msg_type::DST_UNREACHABLE)
            }
            IcmpErr::TimeExceeded => (
                Icmpv4Repr::TimeExceeded { code: TimeExceeded::TtlExpired, data: quote },
                icmpv4::msg_type::TIME_EXCEEDED,
            ),
            IcmpErr::ParamProblem(pointer) => {
                (Icmpv4Repr::ParamProblem { pointer, data: quote }, icmpv4::msg_type::PARAM_PROBLEM)
            }
            IcmpErr::Redirect(gateway) => (
                Icmpv4Repr::Redirect { code: icmpv4::Redirect::Host, gateway, data: quote },
                icmpv4::msg_type::REDIRECT,
            ),
        };
        // icmp_reflect: answer from the address the packet was sent to if
        // it is ours, else from the receiving interface.
        let src = match cx.rt.lookup(odst) {
            Some(r) if r.flags.contains(RouteFlags::LOCAL) => Some(odst),
            _ => rcvif.and_then(|i| i.source_for(osrc)),
        };
        let src = src.or_else(|| cx.rt.lookup(osrc).and_then(|r| r.ifa));
        let Some(src) = src else {
            cx.stats.ip.noroute.inc();
            return self.free(e);
        };
        let icmp_len = repr.buffer_len();
        let ip_repr = Ipv4Repr {
            src,
            dst: osrc,
            protocol: IpProtocol::ICMP,
            ttl: ICMP_REFLECT_TTL,
            tos: 0,
            ident: self.next_ip_id(),
            dont_frag: false,
            payload_len: icmp_len,
        };
        if e.rewind(IPV4_MIN_HEADER + icmp_len).is_err() {
            return self.free(e);
        }
        let buf = e.data_mut();
        ip_repr.emit(&mut buf[..IPV4_MIN_HEADER]);
        repr.emit(&mut buf[IPV4_MIN_HEADER..]);
        // icmp_do_error: an error about a packet pf made is pf's too.
        e.meta.flags |= orig.meta.flags & mflags::PF_GENERATED;
        if let Some(c) = ics.outhist.get(msg_type as usize) {
            c.inc();
        }
        self.ip_output(cx, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::new(10, 2);
        let t0 = Instant::from_secs(1);
        b.last = t0;
        assert!(b.take(t0));
        assert!(b.take(t0));
        assert!(!b.take(t0));
        // 10 per second: one token per 100 ms.
        assert!(b.take(t0 + std::time::Duration::from_millis(100)));
        assert!(!b.take(t0 + std::time::Duration::from_millis(150)));
    }
}
