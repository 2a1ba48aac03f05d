//! Translation of IPv6 packets (`nat-to`, `rdr-to`, `binat-to` on
//! `inet6` rules): pf_get_transaddr over IPv6 pools, pf_translate with
//! the checksums that cover IPv6's pseudo-header (TCP, UDP and ICMPv6;
//! IPv6 has no header checksum), ICMPv6 echo ids, and ICMPv6 errors
//! about a translated connection turned back (pf_test_state_icmp).
//!
//! IPv4's translation (`nat.rs`) keeps its own `Endpoints` so that its
//! established path moves 12 bytes, not 36; this is its IPv6 sibling.
//!
//! Where softnet differs from pf: neighbor discovery, router discovery
//! and MLD messages (ICMPv6 types 130-137, 143) are never translated
//! (pf rewrites their addresses like any ICMPv6 message's; they are
//! link-scoped and never forwarded, and their states are keyed by the
//! target, not the addresses a translation would change).

use std::net::{IpAddr, Ipv6Addr};

use softnet_wire::icmpv6::{self, msg_type as t6, Icmpv6Packet};
use softnet_wire::ipv6::Ipv6Packet;

use super::*;
use crate::lb::SportResult;
use crate::srcnode::{SN_NAT, SN_RDR};
use crate::xlhold::{Holds, PoolHold};

/// The addresses and ports an IPv6 packet is rewritten to (`nat::Endpoints`
/// for IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Endpoints6 {
    pub src: Ipv6Addr,
    pub sport: u16,
    pub dst: Ipv6Addr,
    pub dport: u16,
}

impl Endpoints6 {
    pub fn of(pd: &Pd) -> Endpoints6 {
        Endpoints6 { src: pd.src.v6(), sport: pd.sport, dst: pd.dst.v6(), dport: pd.dport }
    }

    /// The state key a packet with these endpoints has in direction `dir`.
    pub fn key(&self, proto: u8, dir: Direction) -> StateKey {
        let (s, d) = if dir == Direction::In { (0, 1) } else { (1, 0) };
        let mut k = StateKey { proto, af: Af::Inet6, ..StateKey::empty() };
        k.addr[s] = PfAddr::from_v6(self.src);
        k.addr[d] = PfAddr::from_v6(self.dst);
        k.port[s] = self.sport;
        k.port[d] = self.dport;
        k
    }

    /// The endpoints of a packet in direction `dir` whose key is `k`.
    pub fn from_key(k: &StateKey, dir: Direction) -> Endpoints6 {
        let (s, d) = if dir == Direction::In { (0, 1) } else { (1, 0) };
        Endpoints6 { src: k.addr[s].v6(), sport: k.port[s], dst: k.addr[d].v6(), dport: k.port[d] }
    }
}

impl super::nat::KeyEndpoints for Endpoints6 {
    #[inline]
    fn of_key(k: &StateKey, dir: Direction) -> Self {
        Endpoints6::from_key(k, dir)
    }
}

/// Whether pf translates this packet at all (see the module's note on
/// NDP and MLD).
#[inline]
pub(super) fn translatable(pd: &Pd) -> bool {
    pd.af != Af::Inet6 || pd.proto != PROTO_ICMPV6 || !matches!(pd.icmp_type, 130..=137 | 143)
}

/// pf_get_transaddr for an IPv6 packet: `nat::transaddr`'s work over
/// the pools' IPv6 addresses, `sticky-address` nodes keyed by the IPv6
/// source.
pub(super) fn transaddr6(
    cx: &Cx,
    pd: &Pd,
    nat: Option<&CRule>,
    rdr: Option<&CRule>,
) -> Result<(Endpoints6, Holds), Reason> {
    let mut e = Endpoints6::of(pd);
    let mut holds: Holds = [None, None];
    let if_addrs = |name: &str| cx.pf.if_addrs6(name, cx.ifp);
    if let (Some(r), Some(pool)) = (nat, nat.and_then(|r| r.nat.as_ref())) {
        let icmp_echo = pd.proto == PROTO_ICMPV6 && pd.icmp_type == t6::ECHO_REQUEST;
        let states = &cx.pf.states;
        let (proto, dir, dst, dport) = (pd.proto, cx.dir, e.dst, e.dport);
        let mut in_use = |a: u128, p: u16| {
            let k = Endpoints6 { src: Ipv6Addr::from(a), sport: p, dst, dport }.key(proto, dir);
            states.key_in_use(k.words())
        };
        let src = e.src;
        let sticky = sticky_addr6(cx, r, pool, SN_NAT, src);
        match pool.get_sport6(&if_addrs, pd.proto, icmp_echo, u128::from(src), pd.sport, sticky, &mut in_use) {
            SportResult::Found { addr, port } => {
                e.src = Ipv6Addr::from(addr);
                e.sport = port;
                holds[0] = hold6(cx, r, pool, SN_NAT, src, addr, sticky)?;
            }
            SportResult::Exhausted => {
                super::nat::log_exhausted(cx, pool.proxy_port);
                return Err(Reason::Translate);
            }
        }
    }
    if let (Some(r), Some(pool)) = (rdr, rdr.and_then(|r| r.rdr.as_ref())) {
        let sticky = sticky_addr6(cx, r, pool, SN_RDR, e.src);
        let Some(mut a) = pool.map6(&if_addrs, u128::from(e.src), sticky) else {
            super::nat::log_exhausted(cx, pool.proxy_port);
            super::nat::release(cx, &holds);
            return Err(Reason::Translate);
        };
        match hold6(cx, r, pool, SN_RDR, e.src, a, sticky) {
            Ok(h) => holds[1] = h,
            Err(reason) => {
                super::nat::release(cx, &holds);
                return Err(reason);
            }
        }
        if let (crate::model::PoolType::Bitmask, crate::lb::PoolSource::Single6 { addr, mask }) =
            (pool.kind, &pool.source)
        {
            // pf_get_transaddr: rdr-to bitmask keeps the destination's host bits
            a = crate::lb::poolmask(*addr, *mask, u128::from(e.dst));
        }
        e.dst = Ipv6Addr::from(a);
        if pd.proto == PROTO_TCP || pd.proto == PROTO_UDP {
            e.dport = crate::lb::rdr_port(pool.proxy_port, r.dst_port_lo, e.dport);
        }
    }
    Ok((e, holds))
}

/// `nat::sticky_addr` for an IPv6 source.
fn sticky_addr6(cx: &Cx, r: &CRule, pool: &crate::lb::CPool, kind: u8, src: Ipv6Addr) -> Option<u128> {
    let s = r.src_track.as_ref().filter(|_| pool.sticky)?;
    match cx.pf.srcnodes.sticky(s, kind, IpAddr::V6(src))? {
        IpAddr::V6(a) => Some(u128::from(a)),
        IpAddr::V4(_) => None,
    }
}

/// `nat::hold` for an IPv6 source `src` that `r`'s pool gave `addr`.
fn hold6(
    cx: &Cx,
    r: &CRule,
    pool: &crate::lb::CPool,
    kind: u8,
    src: Ipv6Addr,
    addr: u128,
    sticky: Option<u128>,
) -> Result<Option<PoolHold>, Reason> {
    let counted = pool.kind == crate::model::PoolType::LeastStates && sticky != Some(addr);
    let mut h = PoolHold {
        gen: cx.rs.nodes[r.node as usize].gen,
        nr: r.local_nr,
        addr: IpAddr::V6(Ipv6Addr::from(addr)),
        counted,
        node: None,
    };
    if let Some(s) = r.src_track.as_ref().filter(|_| pool.sticky) {
        let limit = cx.rs.opts.limit(Limit::SrcNodes) as usize;
        let now = cx.now.as_nanos();
        if let Err(e) = cx.pf.srcnodes.acquire_kind(s, kind, IpAddr::V6(src), Some(h.addr), now, limit) {
            if let Some(i) = e.lcounter() {
                cx.pf.counters.get(cx.worker).lcounters[i].inc();
            }
            h.give_back(cx.rs, kind as usize - 1);
            return Err(Reason::Translate);
        }
        h.node = Some(s.key_of(kind, IpAddr::V6(src)));
    }
    Ok((h.counted || h.node.is_some()).then_some(h))
}

/// A state's rewrite of a packet of family `af`: the IPv4 or the IPv6
/// endpoints (`None` when the packet may not use the state).
#[inline]
pub(super) fn targets(
    st: &StateData,
    nat: Option<(u64, u64)>,
    pkt: (u64, u64),
    dir: Direction,
    af: Af,
) -> Option<(Option<super::nat::Endpoints>, Option<Endpoints6>)> {
    if af == Af::Inet6 {
        super::nat::state_target(st, nat, pkt, dir).map(|t| (None, t))
    } else {
        super::nat::state_target(st, nat, pkt, dir).map(|t| (t, None))
    }
}

/// A new connection's translation, either family (pf_get_transaddr's
/// result as `create_state` keys and applies it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Xlate {
    V4(super::nat::Endpoints),
    V6(Endpoints6),
    /// af-to: an IPv6 connection's IPv4 endpoints (`afto`).
    Af4(super::nat::Endpoints),
    /// af-to inet6: an IPv4 connection's IPv6 endpoints.
    Af6(Endpoints6),
}

impl Xlate {
    /// The translated state key.
    pub fn key(&self, proto: u8, dir: Direction) -> StateKey {
        match self {
            Xlate::V4(e) => e.key(proto, dir),
            Xlate::V6(e) => e.key(proto, dir),
            Xlate::Af4(e) => super::afto::nat_key(e, proto),
            Xlate::Af6(e) => super::afto::nat_key6(e, proto),
        }
    }

    /// pf_translate of the packet that made the state.
    pub fn apply(&self, pkt: &mut PacketBuf, pd: &Pd) {
        match self {
            Xlate::V4(e) => super::nat::translate(pkt, pd, e),
            Xlate::V6(e) => translate6(pkt, pd, e),
            Xlate::Af4(e) => {
                super::afto::apply(pkt, pd, &super::afto::AfRewrite::To4(*e));
            }
            Xlate::Af6(e) => {
                super::afto::apply(pkt, pd, &super::afto::AfRewrite::To6(*e));
            }
        }
    }
}

/// pf_get_transaddr for a packet of either family.
pub(super) fn transaddr_any(
    cx: &Cx,
    pd: &Pd,
    nat: Option<&CRule>,
    rdr: Option<&CRule>,
) -> Result<(Xlate, Holds), Reason> {
    if pd.af == Af::Inet6 {
        transaddr6(cx, pd, nat, rdr).map(|(e, h)| (Xlate::V6(e), h))
    } else {
        super::nat::transaddr(cx, pd, nat, rdr).map(|(e, h)| (Xlate::V4(e), h))
    }
}

/// pf_translate for IPv6: the addresses, then the transport checksum
/// (whose pseudo-header holds them) and ports, or ICMPv6's checksum and
/// an echo's id, each updated incrementally (RFC 1624).
pub(super) fn translate6(pkt: &mut PacketBuf, pd: &Pd, to: &Endpoints6) {
    let from = Endpoints6::of(pd);
    if from == *to {
        return;
    }
    let d = pkt.data_mut();
    {
        let mut ip = Ipv6Packet::new_unchecked(&mut d[..]);
        ip.set_src(to.src);
        ip.set_dst(to.dst);
    }
    let l4 = &mut d[pd.hlen()..pd.tot_len()];
    let addrs = |c: u16| checksum::update128(checksum::update128(c, from.src, to.src), from.dst, to.dst);
    match pd.proto {
        PROTO_TCP => {
            let mut t = TcpPacket::new_unchecked(l4);
            let mut c = addrs(t.checksum());
            c = checksum::update16(c, from.sport, to.sport);
            c = checksum::update16(c, from.dport, to.dport);
            t.set_src_port(to.sport);
            t.set_dst_port(to.dport);
            t.set_checksum(c);
        }
        PROTO_UDP => {
            // IPv6 UDP always has a checksum (RFC 8200 §8.1)
            let mut u = UdpPacket::new_unchecked(l4);
            let mut c = addrs(u.checksum());
            c = checksum::update16(c, from.sport, to.sport);
            c = checksum::update16(c, from.dport, to.dport);
            u.set_src_port(to.sport);
            u.set_dst_port(to.dport);
            u.set_checksum(if c == 0 { 0xffff } else { c });
        }
        PROTO_ICMPV6 => {
            let mut p = Icmpv6Packet::new_unchecked(l4);
            let mut c = addrs(p.checksum());
            // an echo's id is its "port" on one side (the type is the other)
            let (old_id, new_id) = if from.sport != to.sport { (from.sport, to.sport) } else { (from.dport, to.dport) };
            if old_id != new_id && matches!(pd.icmp_type, t6::ECHO_REQUEST | t6::ECHO_REPLY) {
                c = checksum::update16(c, old_id, new_id);
                p.set_echo_ident(new_id);
            }
            p.set_checksum(c);
        }
        _ => {}
    }
}

/// pf_test_state_icmp for an ICMPv6 error about a translated connection:
/// the quoted packet (at `msg[8..]`, its transport header at `q4` within
/// the quote) goes back to what it is on this side (`to`), and the outer
/// address that names it with it. The quoted transport checksum follows
/// incrementally (the quote may be cut short); the error's own checksum
/// is summed again over the rewritten message.
pub(super) fn translate_icmp6_error(pkt: &mut PacketBuf, pd: &Pd, q4: usize, iproto: u8, to: &Endpoints6) {
    let d = pkt.data_mut();
    let (osrc, odst) = {
        let ip = Ipv6Packet::new_unchecked(&d[..]);
        (ip.src(), ip.dst())
    };
    let (hlen, tot) = (pd.hlen(), pd.tot_len());
    let msg = &mut d[hlen..tot];
    let q = icmpv6::HEADER_LEN;
    let (qs, qd) = {
        let qip = Ipv6Packet::new_unchecked(&msg[q..]);
        (qip.src(), qip.dst())
    };
    {
        let mut qip = Ipv6Packet::new_unchecked(&mut msg[q..]);
        qip.set_src(to.src);
        qip.set_dst(to.dst);
    }
    let l4 = q + q4;
    let ports = |msg: &[u8]| (be16(msg, l4), be16(msg, l4 + 2));
    match iproto {
        PROTO_TCP | PROTO_UDP if msg.len() >= l4 + 4 => {
            let (qsp, qdp) = ports(msg);
            let cks_off = if iproto == PROTO_UDP { l4 + 6 } else { l4 + 16 };
            if msg.len() >= cks_off + 2 {
                let mut c = be16(msg, cks_off);
                c = checksum::update128(c, qs, to.src);
                c = checksum::update128(c, qd, to.dst);
                c = checksum::update16(c, qsp, to.sport);
                c = checksum::update16(c, qdp, to.dport);
                if iproto == PROTO_UDP && c == 0 {
                    c = 0xffff;
                }
                msg[cks_off..cks_off + 2].copy_from_slice(&c.to_be_bytes());
            }
            msg[l4..l4 + 2].copy_from_slice(&to.sport.to_be_bytes());
            msg[l4 + 2..l4 + 4].copy_from_slice(&to.dport.to_be_bytes());
        }
        PROTO_ICMPV6 if msg.len() >= l4 + icmpv6::HEADER_LEN => {
            // a quoted echo: its id is the request's source "port", the
            // reply's destination one; its checksum covers the addresses
            let ty = msg[l4];
            let mut c = be16(msg, l4 + 2);
            c = checksum::update128(c, qs, to.src);
            c = checksum::update128(c, qd, to.dst);
            if matches!(ty, t6::ECHO_REQUEST | t6::ECHO_REPLY) {
                let new_id = if ty == t6::ECHO_REQUEST { to.sport } else { to.dport };
                let old_id = be16(msg, l4 + 4);
                c = checksum::update16(c, old_id, new_id);
                msg[l4 + 4..l4 + 6].copy_from_slice(&new_id.to_be_bytes());
            }
            msg[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
    // the outer header: the error goes to the quoted packet's source and
    // comes from its destination, as they are on this side
    let mut ip = Ipv6Packet::new_unchecked(&mut d[..]);
    let (mut nsrc, mut ndst) = (osrc, odst);
    if qs != to.src && odst == qs {
        ndst = to.src;
        ip.set_dst(ndst);
    }
    if qd != to.dst && osrc == qd {
        nsrc = to.dst;
        ip.set_src(nsrc);
    }
    Icmpv6Packet::new_unchecked(&mut d[hlen..tot]).fill_checksum(nsrc, ndst);
}

#[inline]
fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use softnet_wire::ipv6::Ipv6Repr;
    use softnet_wire::tcp::TcpRepr;
    use softnet_wire::udp::UdpRepr;

    fn packet(proto: u8, e: &Endpoints6, payload: &[u8]) -> PacketBuf {
        let (next_header, l4len) = match proto {
            PROTO_UDP => (IpProtocol::UDP, 8 + payload.len()),
            _ => (IpProtocol::TCP, 20 + payload.len()),
        };
        let ir = Ipv6Repr {
            src: e.src,
            dst: e.dst,
            next_header,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            payload_len: l4len,
        };
        let mut b = vec![0u8; ir.buffer_len()];
        ir.emit(&mut b[..40]);
        if proto == PROTO_UDP {
            let u = UdpRepr { src_port: e.sport, dst_port: e.dport, payload_len: payload.len() };
            u.emit_with_payload_v6(&mut b[40..], e.src, e.dst, payload);
        } else {
            let t = TcpRepr {
                src_port: e.sport,
                dst_port: e.dport,
                seq: 7,
                ack: 9,
                flags: TcpFlags::ACK,
                window: 100,
                max_seg_size: None,
                window_scale: None,
                sack_permitted: false,
                sack_ranges: [None; 3],
                timestamp: None,
                payload_len: payload.len(),
            };
            t.emit_with_payload_v6(&mut b[40..], e.src, e.dst, payload);
        }
        PacketBuf::from_slice(&b)
    }

    fn ends() -> impl Strategy<Value = Endpoints6> {
        (any::<u128>(), 1u16.., any::<u128>(), 1u16..).prop_map(|(s, sp, d, dp)| Endpoints6 {
            src: Ipv6Addr::from(s),
            sport: sp,
            dst: Ipv6Addr::from(d),
            dport: dp,
        })
    }

    fn echo(src: Ipv6Addr, dst: Ipv6Addr, ident: u16) -> PacketBuf {
        let r = softnet_wire::icmpv6::Icmpv6Repr::EchoRequest { ident, seq_no: 3, data: b"abc" };
        let ir = Ipv6Repr {
            src,
            dst,
            next_header: IpProtocol::ICMPV6,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            payload_len: r.buffer_len(),
        };
        let mut b = vec![0u8; ir.buffer_len()];
        ir.emit(&mut b[..40]);
        r.emit(src, dst, &mut b[40..]);
        PacketBuf::from_slice(&b)
    }

    proptest! {
        /// pf_translate's incremental updates over IPv6's pseudo-header
        /// give what a full re-sum gives, for any addresses and ports.
        #[test]
        fn translated_checksums_equal_a_full_resum(
            from in ends(), to in ends(), tcp in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
            let mut p = packet(proto, &from, &payload);
            let pd = parse_pd6(p.data()).unwrap();
            translate6(&mut p, &pd, &to);
            let want = packet(proto, &to, &payload);
            prop_assert_eq!(p.data(), want.data());
        }

        /// An echo request's source and id translated, and the ICMPv6
        /// checksum (pseudo-header included) with them.
        #[test]
        fn translated_echo_keeps_the_icmp6_checksum(id in any::<u16>(), nid in any::<u16>(), s in any::<u128>(), ns in any::<u128>()) {
            let dst: Ipv6Addr = "2001:db8:2::2".parse().unwrap();
            let mut p = echo(Ipv6Addr::from(s), dst, id);
            let pd = parse_pd6(p.data()).unwrap();
            let to = Endpoints6 { src: Ipv6Addr::from(ns), sport: nid, dst, dport: pd.dport };
            translate6(&mut p, &pd, &to);
            let want = echo(Ipv6Addr::from(ns), dst, nid);
            prop_assert_eq!(p.data(), want.data());
        }
    }

    #[test]
    fn ndp_and_mld_are_not_translated() {
        let mut pd = Pd::ip(std::net::Ipv4Addr::UNSPECIFIED, std::net::Ipv4Addr::UNSPECIFIED, PROTO_ICMPV6, 0, 40, 64);
        pd.af = Af::Inet6;
        for (ty, want) in [(128, true), (129, true), (1, true), (130, false), (135, false), (136, false), (143, false)]
        {
            pd.icmp_type = ty;
            assert_eq!(translatable(&pd), want, "{ty}");
        }
    }
}
