//! `af-to` (NAT64): `pass in inet6 … af-to inet from POOL [to POOL]`
//! translates an IPv6 connection into an IPv4 one (pf.c
//! pf_get_transaddr_af, pf_translate_af; RFC 6052 for the addresses,
//! RFC 7915 for the headers), and the packets of its state both ways;
//! `pass in inet … af-to inet6 from POOL [to POOL]` (NAT46) an IPv4
//! connection into an IPv6 one the same way (`transaddr_af6`: the
//! IPv6 destination the IPv4 one embedded under the `to` pool's prefix).
//! Below, "client" and "server" are NAT64's; NAT46's state is the mirror
//! image (its own key IPv4, its translated key IPv6).
//!
//! * The state: its own key is the IPv6 packet's (inbound), its
//!   translated key the IPv4 one as the IPv4 side's replies carry it
//!   inbound, so the state is found on either family's interface
//!   (floating). `sflags::AFTO` marks it. A packet of it that arrives on
//!   the interface of its family (IPv6 from the client, IPv4 from the
//!   server) is translated into the other family and handed back with
//!   `RouteDecision::AfTo`: the stack routes it in the other family's
//!   table, where pf out finds the same state and lets it go unchanged
//!   (pf_route after PF_AFRT, then pf_test(PF_OUT) on it). Each packet is
//!   tracked as from its sender whichever family it is in
//!   (PF_REVERSED_KEY).
//! * Addresses: the IPv4 source from the `from` pool (pf_get_sport over
//!   it, ports random as nat-to's); the IPv4 destination from the `to`
//!   pool, else extracted from the IPv6 destination under the prefix of
//!   the rule's destination (RFC 6052 §2.2; a prefix shorter than 32
//!   counts as /96, as pf).
//! * Headers (RFC 7915 §5.1 and §4.1): hop limit ↔ TTL, traffic class ↔
//!   TOS, DF set, a random identification, IPv4 options dropped; TCP and
//!   UDP checksums moved from one pseudo-header to the other (RFC 1624;
//!   a UDP datagram without a checksum gets one in IPv6); ICMPv6 echo ↔
//!   ICMP echo with the checksum summed again.
//!
//! * ICMP errors from the IPv4 side about the client's packets become
//!   ICMPv6 errors to the client (RFC 7915 §4.2, `error_to6`: packet too
//!   big from fragmentation needed, with the MTU 20 more).
//!
//! * ICMPv6 errors from the IPv6 side about the server's packets become
//!   ICMP errors to the server (RFC 7915 §5.2, `error_to4`: packet too
//!   big as fragmentation needed with the MTU 20 less).
//!
//! * NAT46's errors the same two ways with the roles swapped: an ICMPv6
//!   error about the client's translated packet to the IPv4 client
//!   (`error_to4`), an ICMP error about the server's translated packet to
//!   the IPv6 server (`error_to6`, from the client's translated address).
//!
//! * `sticky-address` works on the `from` pool as pf_map_addr's
//!   (`sticky_key4` / `sticky_key6`), and on the `to` pool, whose nodes pf
//!   keys by the translated source (pf_map_addr after pf_get_sport): the
//!   destination is then chosen for each source pf_get_sport tries
//!   (`StickyTo`), so its in-use check sees the final tuple.
//!
//! Not built: other ICMP and
//! ICMPv6 messages (dropped as `translate`,
//! as RFC 7915 drops most), fragments (not translated: pf makes no state
//! for them).

use std::net::{Ipv4Addr, Ipv6Addr};

use softnet_core::filter::RouteDecision;
use softnet_wire::icmpv6::{msg_type as t6, Icmpv6Packet};
use softnet_wire::ipv4;
use softnet_wire::ipv6::{Ipv6Packet, Ipv6Repr};

use super::nat::Endpoints;
use super::nat6::Endpoints6;
use super::*;
use crate::lb::SportResult;
use crate::srcnode::{SN_NAT, SN_RDR};
use crate::xlhold::{Holds, PoolHold};

/// The ICMP protocol number and echo types on each side.
const ICMP_ECHO: u8 = icmpv4::msg_type::ECHO_REQUEST;
const ICMP_ECHOREPLY: u8 = icmpv4::msg_type::ECHO_REPLY;

/// Whether the rule translates to another family.
#[inline]
pub(super) fn is_afto(r: &CRule) -> bool {
    r.rule.translation.af_to.is_some()
}

/// The IPv4 protocol of an IPv6 packet's (ICMPv6 becomes ICMP).
fn proto4(proto: u8) -> u8 {
    if proto == PROTO_ICMPV6 {
        PROTO_ICMP
    } else {
        proto
    }
}

/// pf_get_transaddr_af for an IPv6 packet of an `af-to inet` rule (NAT64): the
/// IPv4 endpoints of the connection (the ICMP echo's id as its source
/// "port", the echo type as the other) and what the state holds of the
/// pools. `translate` when a pool has no address, every port is taken,
/// the destination embeds no IPv4 address, or the packet is an ICMPv6
/// message other than an echo request.
pub(super) fn transaddr_af(cx: &Cx, pd: &Pd, r: &CRule) -> Result<(Endpoints, Holds), Reason> {
    if pd.af != Af::Inet6 || (pd.proto == PROTO_ICMPV6 && pd.icmp_type != t6::ECHO_REQUEST) {
        return Err(Reason::Translate);
    }
    let proto = proto4(pd.proto);
    let if_addrs = |name: &str| cx.pf.if_addrs(name, cx.ifp);
    let mut holds: Holds = [None, None];
    // The destination: the `to` pool, else the IPv4 address the IPv6
    // destination embeds. A `to` pool with `sticky-address` keeps a node
    // per translated source (pf_get_transaddr_af's pf_map_addr after
    // pf_get_sport): `StickyTo` picks for each source tried.
    let sticky_to = r.rdr.as_ref().filter(|p| p.sticky && r.src_track.is_some());
    let (dst0, dport) = match r.rdr.as_ref() {
        Some(pool) => {
            let port = if pool.proxy_port[0] != 0 && pd.proto != PROTO_ICMPV6 { pool.proxy_port[0] } else { pd.dport };
            if sticky_to.is_some() {
                (None, port)
            } else {
                let a = pool.map(&if_addrs, pd.src.0[0], None).ok_or(Reason::Translate)?;
                holds[1] = hold(cx, r, pool, a);
                (Some(a), port)
            }
        }
        None => {
            let plen = match &r.rule.dst.addr {
                crate::model::Addr::Net(n) if n.addr.is_ipv6() && n.prefix >= 32 => n.prefix,
                _ => 96,
            };
            let a = softnet_wire::ipv6::nat64_extract(pd.dst.v6(), plen).ok_or(Reason::Translate)?;
            (Some(u32::from(a)), pd.dport)
        }
    };
    let to = StickyTo::new(
        dst0,
        |src: u32| super::nat::sticky_addr(cx, r, sticky_to?, SN_RDR, Ipv4Addr::from(src)),
        || sticky_to?.map(&if_addrs, pd.src.0[0], None),
    );
    let dport = if pd.proto == PROTO_ICMPV6 { ICMP_ECHO as u16 } else { dport };
    // The source: pf_get_sport over the `from` pool, its tuple free as the
    // IPv4 side's replies would carry it.
    let Some(pool) = r.nat.as_ref() else { return Err(Reason::Translate) };
    let states = &cx.pf.states;
    let mut in_use = |a: u32, p: u16| {
        let Some(dst) = to.dst(a).map(Ipv4Addr::from) else { return true };
        let k = Endpoints { src: Ipv4Addr::from(a), sport: p, dst, dport }.key(proto, Direction::Out);
        states.key_in_use(k.words())
    };
    let echo = pd.proto == PROTO_ICMPV6;
    let node = sticky_key4(pd);
    let sticky = super::nat::sticky_addr(cx, r, pool, SN_NAT, node);
    match pool.get_sport(&if_addrs, proto, echo, pd.src.0[0], pd.sport, sticky, &mut in_use) {
        SportResult::Found { addr, port } => {
            let dst = to.dst(addr).ok_or(Reason::Translate).map(Ipv4Addr::from);
            let held = dst.and_then(|d| {
                holds[0] = super::nat::hold(cx, r, pool, SN_NAT, node, addr, sticky)?;
                if let Some(rdr) = sticky_to {
                    let had = super::nat::sticky_addr(cx, r, rdr, SN_RDR, Ipv4Addr::from(addr));
                    holds[1] = super::nat::hold(cx, r, rdr, SN_RDR, Ipv4Addr::from(addr), u32::from(d), had)?;
                }
                Ok(d)
            });
            let dst = match held {
                Ok(d) => d,
                Err(e) => {
                    super::nat::release(cx, &holds);
                    return Err(e);
                }
            };
            Ok((Endpoints { src: Ipv4Addr::from(addr), sport: port, dst, dport }, holds))
        }
        SportResult::Exhausted => {
            super::nat::log_exhausted(cx, pool.proxy_port);
            super::nat::release(cx, &holds);
            Err(Reason::Translate)
        }
    }
}

/// pf_get_transaddr_af for an IPv4 packet of an `af-to inet6` rule
/// (NAT46): the IPv6 source from the `from` pool (pf_get_sport over its
/// IPv6 addresses), the destination the IPv4 one embedded under the `to`
/// pool's address and prefix, or without a `to` under the `from` pool's
/// (RFC 6052; a prefix longer than 96 counts as /96, as pf). `translate`
/// as `transaddr_af`.
pub(super) fn transaddr_af6(cx: &Cx, pd: &Pd, r: &CRule) -> Result<(Endpoints6, Holds), Reason> {
    if pd.af != Af::Inet || (pd.proto == PROTO_ICMP && pd.icmp_type != ICMP_ECHO) {
        return Err(Reason::Translate);
    }
    let proto = if pd.proto == PROTO_ICMP { PROTO_ICMPV6 } else { pd.proto };
    let echo = pd.proto == PROTO_ICMP;
    let if_addrs = |name: &str| cx.pf.if_addrs6(name, cx.ifp);
    let Some(npool) = r.nat.as_ref() else { return Err(Reason::Translate) };
    let prefix_of = |pool: &crate::lb::CPool, a: u128| {
        let plen = match pool.source {
            crate::lb::PoolSource::Single6 { mask, .. } => (mask.count_ones() as u8).min(96),
            _ => 96,
        };
        (Ipv6Addr::from(a), plen)
    };
    let mut holds: Holds = [None, None];
    // The destination's prefix: the `to` pool's, else the `from` pool's
    // (its first address: pf_map_addr's before the port search). A `to`
    // pool with `sticky-address` keeps a node per translated source, as
    // `transaddr_af`'s.
    let sticky_to = r.rdr.as_ref().filter(|p| p.sticky && r.src_track.is_some());
    let (pool_to, dport) = match r.rdr.as_ref() {
        Some(pool) => {
            let port = if pool.proxy_port[0] != 0 && !echo { pool.proxy_port[0] } else { pd.dport };
            if sticky_to.is_some() {
                (None, port)
            } else {
                let a = pool.map6(&if_addrs, pd.src.0[0] as u128, None).ok_or(Reason::Translate)?;
                holds[1] = hold6(cx, r, pool, a);
                (Some(a), port)
            }
        }
        None => {
            let a = match npool.source {
                crate::lb::PoolSource::Single6 { addr, .. } => addr,
                _ => npool.map6(&if_addrs, pd.src.0[0] as u128, None).ok_or(Reason::Translate)?,
            };
            (Some(a), pd.dport)
        }
    };
    let to = StickyTo::new(
        pool_to,
        |src: u128| super::nat6::sticky_addr6(cx, r, sticky_to?, SN_RDR, Ipv6Addr::from(src)),
        || sticky_to?.map6(&if_addrs, pd.src.0[0] as u128, None),
    );
    // The address a pool gave, as the destination's prefix.
    let embed = |a: u128| {
        let (p, l) = prefix_of(r.rdr.as_ref().unwrap_or(npool), a);
        softnet_wire::ipv6::nat64_embed(p, l, pd.dst4())
    };
    let dport = if echo { t6::ECHO_REQUEST as u16 } else { dport };
    let states = &cx.pf.states;
    let mut in_use = |a: u128, p: u16| {
        let Some(dst) = to.dst(a).and_then(embed) else { return true };
        let k = Endpoints6 { src: Ipv6Addr::from(a), sport: p, dst, dport }.key(proto, Direction::Out);
        states.key_in_use(k.words())
    };
    let node = sticky_key6(pd);
    let sticky = super::nat6::sticky_addr6(cx, r, npool, SN_NAT, node);
    match npool.get_sport6(&if_addrs, proto, echo, pd.src.0[0] as u128, pd.sport, sticky, &mut in_use) {
        SportResult::Found { addr, port } => {
            let picked = to.dst(addr);
            let held = picked.and_then(|a| Some((a, embed(a)?))).ok_or(Reason::Translate).and_then(|(a, d)| {
                holds[0] = super::nat6::hold6(cx, r, npool, SN_NAT, node, addr, sticky)?;
                if let Some(rdr) = sticky_to {
                    let src = Ipv6Addr::from(addr);
                    let had = super::nat6::sticky_addr6(cx, r, rdr, SN_RDR, src);
                    holds[1] = super::nat6::hold6(cx, r, rdr, SN_RDR, src, a, had)?;
                }
                Ok(d)
            });
            let dst = match held {
                Ok(d) => d,
                Err(e) => {
                    super::nat::release(cx, &holds);
                    return Err(e);
                }
            };
            Ok((Endpoints6 { src: Ipv6Addr::from(addr), sport: port, dst, dport }, holds))
        }
        SportResult::Exhausted => {
            super::nat::log_exhausted(cx, npool.proxy_port);
            super::nat::release(cx, &holds);
            Err(Reason::Translate)
        }
    }
}

/// The destination an af-to connection gets from its translated source
/// `src`: the one chosen before the source (`fixed`: no `to` pool, or one
/// without `sticky-address`), else the address the `to` pool's node for
/// `src` keeps (`node`), else the pool's pick (`fresh`), made once and
/// kept for every source without a node. The last answer is cached:
/// pf_get_sport tries one address's ports in a row.
struct StickyTo<A, N, P> {
    fixed: Option<A>,
    node: N,
    fresh: P,
    picked: std::cell::Cell<Option<Option<A>>>,
    last: std::cell::Cell<Option<(A, Option<A>)>>,
}

impl<A: Copy + PartialEq, N: Fn(A) -> Option<A>, P: Fn() -> Option<A>> StickyTo<A, N, P> {
    fn new(fixed: Option<A>, node: N, fresh: P) -> Self {
        StickyTo { fixed, node, fresh, picked: Default::default(), last: Default::default() }
    }

    fn dst(&self, src: A) -> Option<A> {
        if self.fixed.is_some() {
            return self.fixed;
        }
        if let Some((_, d)) = self.last.get().filter(|(s, _)| *s == src) {
            return d;
        }
        let d = (self.node)(src).or_else(|| {
            let p = self.picked.get().unwrap_or_else(|| (self.fresh)());
            self.picked.set(Some(p));
            p
        });
        self.last.set(Some((src, d)));
        d
    }
}

/// The source address a NAT64 state's `sticky-address` node of the
/// `from` pool is keyed by: pf_get_sport's pf_map_addr runs in the new
/// family (`pd->naf`) on the packet's own source, so pf_map_addr_sticky
/// and pf_insert_src_node take its first 32 bits as an IPv4 address
/// (every client in one /32 shares the node; `-sS` shows it so).
fn sticky_key4(pd: &Pd) -> Ipv4Addr {
    Ipv4Addr::from(pd.src.0[0])
}

/// `sticky_key4` for NAT46: the IPv4 source as the first 32 bits of an
/// IPv6 address, the rest zero (pf_pdesc's `nsaddr` copied in the
/// packet's family into a zeroed address, read in the new one).
fn sticky_key6(pd: &Pd) -> Ipv6Addr {
    Ipv6Addr::from((pd.src.0[0] as u128) << 96)
}

/// `hold` for an IPv6 pool address.
fn hold6(cx: &Cx, r: &CRule, pool: &crate::lb::CPool, addr: u128) -> Option<PoolHold> {
    (pool.kind == crate::model::PoolType::LeastStates).then(|| PoolHold {
        gen: cx.rs.nodes[r.node as usize].gen,
        nr: r.local_nr,
        addr: Ipv6Addr::from(addr).into(),
        counted: true,
        node: None,
    })
}

/// The `least-states` count a pool took on `addr`.
fn hold(cx: &Cx, r: &CRule, pool: &crate::lb::CPool, addr: u32) -> Option<PoolHold> {
    (pool.kind == crate::model::PoolType::LeastStates).then(|| PoolHold {
        gen: cx.rs.nodes[r.node as usize].gen,
        nr: r.local_nr,
        addr: Ipv4Addr::from(addr).into(),
        counted: true,
        node: None,
    })
}

/// The translated key an af-to state is indexed under: the IPv4 key of
/// the server's replies as they come in.
pub(super) fn nat_key(e: &Endpoints, proto: u8) -> StateKey {
    e.key(proto4(proto), Direction::Out)
}

/// `nat_key` for NAT46: the IPv6 key of the server's replies.
pub(super) fn nat_key6(e: &Endpoints6, proto: u8) -> StateKey {
    e.key(if proto == PROTO_ICMP { PROTO_ICMPV6 } else { proto }, Direction::Out)
}

/// What a packet of an af-to state becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfRewrite {
    /// Nothing: the packet is already in the family it leaves in (pf out).
    Keep,
    /// An IPv6 packet from the client into IPv4.
    To4(Endpoints),
    /// An IPv4 packet from the server into IPv6.
    To6(Endpoints6),
}

/// How a packet with key words `pkt` in direction `dir` uses the af-to
/// state `st` (translated key `nat`): whether it comes from the state's
/// source (the client), and its rewrite. `None`: not this state's.
pub(super) fn state_rewrite(
    st: &StateData,
    nat: Option<(u64, u64)>,
    pkt: (u64, u64),
    dir: Direction,
) -> Option<(bool, AfRewrite)> {
    let nat = nat?;
    let inbound = st.direction == dir_code(dir);
    // into the family of the key the packet does not have
    let into = |k: &StateKey| {
        if k.af == Af::Inet {
            AfRewrite::To4(Endpoints::from_key(k, Direction::Out))
        } else {
            AfRewrite::To6(Endpoints6::from_key(k, Direction::Out))
        }
    };
    if pkt == st.key.words() {
        let rw = if inbound { into(&crate::state::unpack(nat)) } else { AfRewrite::Keep };
        Some((inbound, rw))
    } else if pkt == nat {
        let rw = if inbound { into(&st.key) } else { AfRewrite::Keep };
        Some((!inbound, rw))
    } else {
        None
    }
}

/// pf_translate_af on the packet `pd` describes, then PF_AFRT: the stack
/// routes it in its new family. `false`: it could not be translated
/// (counted as `translate` by the caller).
pub(super) fn apply(pkt: &mut PacketBuf, pd: &Pd, rw: &AfRewrite) -> bool {
    let done = match rw {
        AfRewrite::Keep => return true,
        AfRewrite::To4(e) => to4(pkt, pd, e),
        AfRewrite::To6(e) => to6(pkt, pd, e),
    };
    if done {
        pkt.meta.pf_route = RouteDecision::AfTo;
    }
    done
}

/// An IPv6 packet into IPv4 (RFC 7915 §5.1): its extension headers and
/// IPv6 header give way to a 20-byte IPv4 header in front of the
/// transport header.
pub(super) fn to4(pkt: &mut PacketBuf, pd: &Pd, e: &Endpoints) -> bool {
    let (l4off, tot) = (pd.hlen(), pd.tot_len());
    if l4off < ipv4::MIN_HEADER_LEN || tot > pkt.len() {
        return false;
    }
    let l4len = tot - l4off;
    let (tc, hlim, osrc, odst) = {
        let ip = Ipv6Packet::new_unchecked(pkt.data());
        (ip.traffic_class(), ip.hop_limit(), ip.src(), ip.dst())
    };
    let from = nat6::Endpoints6::of(pd);
    let proto = proto4(pd.proto);
    {
        let l4 = &mut pkt.data_mut()[l4off..tot];
        match pd.proto {
            PROTO_TCP | PROTO_UDP => {
                let ph6 = checksum::pseudo_header_v6(osrc, odst, pd.proto, l4len as u32);
                let ph4 = checksum::pseudo_header_v4(e.src, e.dst, pd.proto, l4len as u16);
                let at = if pd.proto == PROTO_TCP { 16 } else { 6 };
                let mut c = be16(l4, at);
                c = checksum::update16(c, checksum::fold(ph6), checksum::fold(ph4));
                c = checksum::update16(c, from.sport, e.sport);
                c = checksum::update16(c, from.dport, e.dport);
                if pd.proto == PROTO_UDP && c == 0 {
                    c = 0xffff;
                }
                l4[0..2].copy_from_slice(&e.sport.to_be_bytes());
                l4[2..4].copy_from_slice(&e.dport.to_be_bytes());
                l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
            PROTO_ICMPV6 => {
                // an echo: type and id, and ICMP's checksum (no
                // pseudo-header) summed again
                let ty = if pd.icmp_type == t6::ECHO_REQUEST { ICMP_ECHO } else { ICMP_ECHOREPLY };
                let id = if ty == ICMP_ECHO { e.sport } else { e.dport };
                let mut p = Icmpv4Packet::new_unchecked(&mut l4[..]);
                p.set_msg_type(ty);
                p.set_code(0);
                p.set_echo_ident(id);
                p.fill_checksum();
            }
            _ => {}
        }
    }
    let start = l4off - ipv4::MIN_HEADER_LEN;
    if pkt.pull_front(start).is_err() || pkt.set_len(ipv4::MIN_HEADER_LEN + l4len).is_err() {
        return false;
    }
    let ir = Ipv4Repr {
        src: e.src,
        dst: e.dst,
        protocol: IpProtocol(proto),
        ttl: hlim,
        tos: tc,
        ident: softnet_core::rng::random_u16(),
        dont_frag: true,
        payload_len: l4len,
    };
    ir.emit(&mut pkt.data_mut()[..ipv4::MIN_HEADER_LEN]);
    true
}

/// An IPv4 packet into IPv6 (RFC 7915 §4.1): its header (options
/// dropped) gives way to a 40-byte IPv6 header.
pub(super) fn to6(pkt: &mut PacketBuf, pd: &Pd, e: &Endpoints6) -> bool {
    let (hlen, tot) = (pd.hlen(), pd.tot_len());
    if tot > pkt.len() {
        return false;
    }
    let l4len = tot - hlen;
    let (tos, ttl, osrc, odst) = {
        let ip = Ipv4Packet::new_unchecked(pkt.data());
        (ip.tos(), ip.ttl(), ip.src(), ip.dst())
    };
    let from = Endpoints::of(pd);
    let next = if pd.proto == PROTO_ICMP { PROTO_ICMPV6 } else { pd.proto };
    {
        let l4 = &mut pkt.data_mut()[hlen..tot];
        match pd.proto {
            PROTO_TCP | PROTO_UDP => {
                let at = if pd.proto == PROTO_TCP { 16 } else { 6 };
                l4[0..2].copy_from_slice(&e.sport.to_be_bytes());
                l4[2..4].copy_from_slice(&e.dport.to_be_bytes());
                let old = be16(l4, at);
                let c = if pd.proto == PROTO_UDP && old == 0 {
                    // IPv6 UDP must have one (RFC 7915 §4.5): summed whole
                    let mut u = UdpPacket::new_unchecked(&mut l4[..]);
                    u.fill_checksum_v6(e.src, e.dst);
                    u.checksum()
                } else {
                    let ph4 = checksum::pseudo_header_v4(osrc, odst, pd.proto, l4len as u16);
                    let ph6 = checksum::pseudo_header_v6(e.src, e.dst, pd.proto, l4len as u32);
                    let mut c = checksum::update16(old, checksum::fold(ph4), checksum::fold(ph6));
                    c = checksum::update16(c, from.sport, e.sport);
                    c = checksum::update16(c, from.dport, e.dport);
                    if pd.proto == PROTO_UDP && c == 0 {
                        0xffff
                    } else {
                        c
                    }
                };
                l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
            PROTO_ICMP => {
                let ty = if pd.icmp_type == ICMP_ECHO { t6::ECHO_REQUEST } else { t6::ECHO_REPLY };
                let id = if ty == t6::ECHO_REQUEST { e.sport } else { e.dport };
                let mut p = Icmpv6Packet::new_unchecked(&mut l4[..]);
                p.set_msg_type(ty);
                p.set_code(0);
                p.set_echo_ident(id);
                p.fill_checksum(e.src, e.dst);
            }
            _ => {}
        }
    }
    // the IPv6 header ends where the transport header starts
    let six = softnet_wire::ipv6::HEADER_LEN;
    let moved = if hlen >= six { pkt.pull_front(hlen - six) } else { pkt.push_front(six - hlen) };
    if moved.is_err() || pkt.set_len(six + l4len).is_err() {
        return false;
    }
    let ir = Ipv6Repr {
        src: e.src,
        dst: e.dst,
        next_header: IpProtocol(next),
        hop_limit: ttl,
        traffic_class: tos,
        flow_label: 0,
        payload_len: l4len,
    };
    ir.emit(&mut pkt.data_mut()[..six]);
    true
}

/// RFC 7915 §4.2: an ICMP error from the IPv4 side about a packet of an
/// af-to state turned into an ICMPv6 error to the IPv6 end: `back` is
/// the quoted packet as the IPv6 end sent it (NAT64: the client's, from
/// the state's own key; NAT46: the server's, from its translated key).
/// Destination unreachable (host and
/// network ones as no route, port unreachable, the administrative ones
/// as prohibited), fragmentation needed as packet too big (the MTU 20
/// more, at least 1280), protocol unreachable as a parameter problem
/// pointing at the next header, time exceeded as it is; the quoted
/// packet back to what the IPv6 end sent (its TCP/UDP checksum moved to
/// the IPv6 pseudo-header, an echo's type and id). The error's source:
/// NAT64 (`embed`), the IPv4 sender embedded under the state's /96
/// prefix; NAT46, the address the server knows the client by (pf's
/// state key address: the IPv4 side has no prefix to embed under).
/// `false`: an error RFC 7915 drops (parameter problems, source quench,
/// the rest).
pub(super) fn error_to6(pkt: &mut PacketBuf, pd: &Pd, back: Endpoints6, embed: bool) -> bool {
    use softnet_wire::icmpv4::DstUnreachable as U;
    let (hlen, tot) = (pd.hlen(), pd.tot_len());
    let d = pkt.data();
    let err_src = Ipv4Packet::new_unchecked(d).src();
    let msg = &d[hlen..tot];
    let (ty, code) = (msg[0], msg[1]);
    let (ty6, code6, word) = match (ty, code) {
        (3, c) if c == U::PortUnreachable as u8 => (t6::DST_UNREACHABLE, 4, 0),
        (3, c) if c == U::ProtoUnreachable as u8 => (t6::PARAM_PROBLEM, 1, 6),
        (3, c) if c == U::FragRequired as u8 => {
            let mtu = (be16(msg, 6) as u32 + 20).max(softnet_wire::ipv6::MIN_MTU as u32);
            (t6::PACKET_TOO_BIG, 0, mtu)
        }
        (3, 0 | 1 | 5 | 6 | 7 | 8 | 11 | 12) => (t6::DST_UNREACHABLE, 0, 0),
        (3, 9 | 10 | 13) => (t6::DST_UNREACHABLE, 1, 0),
        (11, c) => (t6::TIME_EXCEEDED, c, 0),
        _ => return false,
    };
    let src6 = if embed {
        let Some(a) = softnet_wire::ipv6::nat64_embed(back.dst, 96, err_src) else { return false };
        a
    } else {
        back.dst
    };
    // The quote: its IPv4 header, then as much of its transport as came.
    let q = &msg[icmpv4::HEADER_LEN..];
    let qip = Ipv4Packet::new_unchecked(q);
    let qh = qip.header_len() as usize;
    let (qproto, qlen) = (qip.protocol().0, (qip.total_len() as usize).saturating_sub(qh));
    let ql4 = &q[qh.min(q.len())..];
    const ICMP6: usize = softnet_wire::icmpv6::HEADER_LEN;
    const SIX: usize = softnet_wire::ipv6::HEADER_LEN;
    let room = softnet_wire::icmpv6::MAX_ERROR_QUOTE - SIX;
    let n = ql4.len().min(room);
    let mut buf = [0u8; softnet_wire::ipv6::MIN_MTU];
    let msg_len = ICMP6 + SIX + n;
    {
        let body = &mut buf[SIX..SIX + msg_len];
        body[0] = ty6;
        body[1] = code6;
        body[4..8].copy_from_slice(&word.to_be_bytes());
        let next = if qproto == PROTO_ICMP { PROTO_ICMPV6 } else { qproto };
        let inner = Ipv6Repr {
            src: back.src,
            dst: back.dst,
            next_header: IpProtocol(next),
            hop_limit: qip.ttl(),
            traffic_class: qip.tos(),
            flow_label: 0,
            payload_len: qlen,
        };
        inner.emit(&mut body[ICMP6..ICMP6 + SIX]);
        let l4 = &mut body[ICMP6 + SIX..];
        l4.copy_from_slice(&ql4[..n]);
        let (qs, qd) = (qip.src(), qip.dst());
        match qproto {
            PROTO_TCP | PROTO_UDP if n >= 8 => quote_ports(l4, qproto, back.sport, back.dport, || {
                let ph4 = checksum::pseudo_header_v4(qs, qd, qproto, qlen as u16);
                let ph6 = checksum::pseudo_header_v6(back.src, back.dst, qproto, qlen as u32);
                (checksum::fold(ph4), checksum::fold(ph6))
            }),
            // the client's echo request as it sent it
            PROTO_ICMP if n >= 8 && l4[0] == ICMP_ECHO => quote_echo(l4, t6::ECHO_REQUEST, back.sport),
            // NAT46: the server's echo reply as it sent it
            PROTO_ICMP if n >= 8 && l4[0] == ICMP_ECHOREPLY => quote_echo(l4, t6::ECHO_REPLY, back.dport),
            _ => {}
        }
    }
    let outer = Ipv6Repr {
        src: src6,
        dst: back.src,
        next_header: IpProtocol(PROTO_ICMPV6),
        hop_limit: Ipv4Packet::new_unchecked(d).ttl(),
        traffic_class: 0,
        flow_label: 0,
        payload_len: msg_len,
    };
    outer.emit(&mut buf[..SIX]);
    Icmpv6Packet::new_unchecked(&mut buf[SIX..SIX + msg_len]).fill_checksum(src6, back.src);
    let len = SIX + msg_len;
    // the message is built whole: it takes the buffer from the old start
    if pkt.set_len(len).is_err() {
        return false;
    }
    pkt.data_mut().copy_from_slice(&buf[..len]);
    pkt.meta.pf_route = RouteDecision::AfTo;
    true
}

/// RFC 7915 §5.2: an ICMPv6 error from the IPv6 side about a packet the
/// IPv4 end sent (`back`, as it sent it: NAT64 the server's, from the
/// state's translated key; NAT46 the client's, from its own key)
/// turned into an ICMP error to it: destination unreachable
/// (no route, beyond scope and address unreachable as host unreachable,
/// administratively prohibited as host prohibited, port unreachable),
/// packet too big as fragmentation needed (the MTU 20 less), time
/// exceeded as it is, an unrecognized next header as protocol
/// unreachable; the quote turned back into what the IPv4 end sent (at
/// `q4` in it, its transport header of protocol `iproto`), the error
/// from the address it knows its peer by. `false`: an error RFC 7915
/// drops.
pub(super) fn error_to4(pkt: &mut PacketBuf, pd: &Pd, q4: usize, iproto: u8, back: Endpoints) -> bool {
    use softnet_wire::icmpv4::DstUnreachable as U;
    let (hlen, tot) = (pd.hlen(), pd.tot_len());
    let d = pkt.data();
    let msg = &d[hlen..tot];
    let (ty, code) = (msg[0], msg[1]);
    let (ty4, code4, mtu) = match (ty, code) {
        (t6::DST_UNREACHABLE, 0 | 2 | 3) => (3, U::HostUnreachable as u8, 0),
        (t6::DST_UNREACHABLE, 1) => (3, U::HostProhibited as u8, 0),
        (t6::DST_UNREACHABLE, 4) => (3, U::PortUnreachable as u8, 0),
        (t6::PACKET_TOO_BIG, _) => {
            let mtu6 = u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]);
            (3, U::FragRequired as u8, mtu6.saturating_sub(20).min(u16::MAX as u32) as u16)
        }
        (t6::TIME_EXCEEDED, c) => (11, c, 0),
        (t6::PARAM_PROBLEM, 1) => (3, U::ProtoUnreachable as u8, 0),
        _ => return false,
    };
    let q = &msg[softnet_wire::icmpv6::HEADER_LEN..];
    let qip = Ipv6Packet::new_unchecked(q);
    let ql4 = &q[q4.min(q.len())..];
    let qlen = (qip.payload_len() as usize + softnet_wire::ipv6::HEADER_LEN).saturating_sub(q4);
    const ICMP: usize = icmpv4::HEADER_LEN;
    const FOUR: usize = ipv4::MIN_HEADER_LEN;
    // RFC 1812 §4.3.2.3: the error at most 576 bytes
    const MAX: usize = 576;
    let n = ql4.len().min(MAX - FOUR - ICMP - FOUR);
    let mut buf = [0u8; MAX];
    let msg_len = ICMP + FOUR + n;
    {
        let body = &mut buf[FOUR..FOUR + msg_len];
        body[0] = ty4;
        body[1] = code4;
        body[6..8].copy_from_slice(&mtu.to_be_bytes());
        let proto = proto4(iproto);
        let inner = Ipv4Repr {
            src: back.src,
            dst: back.dst,
            protocol: IpProtocol(proto),
            ttl: qip.hop_limit(),
            tos: qip.traffic_class(),
            ident: 0,
            dont_frag: true,
            payload_len: qlen,
        };
        inner.emit(&mut body[ICMP..ICMP + FOUR]);
        let l4 = &mut body[ICMP + FOUR..];
        l4.copy_from_slice(&ql4[..n]);
        let (qs, qd) = (qip.src(), qip.dst());
        match iproto {
            PROTO_TCP | PROTO_UDP if n >= 8 => quote_ports(l4, iproto, back.sport, back.dport, || {
                let ph6 = checksum::pseudo_header_v6(qs, qd, iproto, qlen as u32);
                let ph4 = checksum::pseudo_header_v4(back.src, back.dst, iproto, qlen as u16);
                (checksum::fold(ph6), checksum::fold(ph4))
            }),
            // the server's echo reply as it sent it
            PROTO_ICMPV6 if n >= 8 && l4[0] == t6::ECHO_REPLY => quote_echo(l4, ICMP_ECHOREPLY, back.dport),
            // NAT46: the client's echo request as it sent it
            PROTO_ICMPV6 if n >= 8 && l4[0] == t6::ECHO_REQUEST => quote_echo(l4, ICMP_ECHO, back.sport),
            _ => {}
        }
        Icmpv4Packet::new_unchecked(&mut body[..]).fill_checksum();
    }
    let outer = Ipv4Repr {
        src: back.dst,
        dst: back.src,
        protocol: IpProtocol(PROTO_ICMP),
        ttl: Ipv6Packet::new_unchecked(d).hop_limit(),
        tos: 0,
        ident: softnet_core::rng::random_u16(),
        dont_frag: false,
        payload_len: msg_len,
    };
    outer.emit(&mut buf[..FOUR]);
    let len = FOUR + msg_len;
    if pkt.set_len(len).is_err() {
        return false;
    }
    pkt.data_mut().copy_from_slice(&buf[..len]);
    pkt.meta.pf_route = RouteDecision::AfTo;
    true
}

/// The quoted TCP or UDP header `l4` (of protocol `proto`, its first 8
/// bytes at least) turned back into what its sender sent (RFC 7915 §4.2,
/// §5.2: the invoking packet in the error is translated too): the ports
/// `sport`, `dport`, and, where the quote holds it, the checksum moved
/// (RFC 1624) from the old ports and from the folded pseudo-header sum
/// `sums().0` to `sums().1`: the quote is too short to sum again.
fn quote_ports(l4: &mut [u8], proto: u8, sport: u16, dport: u16, sums: impl FnOnce() -> (u16, u16)) {
    let (osp, odp) = (be16(l4, 0), be16(l4, 2));
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    let at = if proto == PROTO_TCP { 16 } else { 6 };
    if l4.len() >= at + 2 {
        let (from, to) = sums();
        let mut c = checksum::update16(be16(l4, at), from, to);
        c = checksum::update16(c, osp, sport);
        c = checksum::update16(c, odp, dport);
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// The quoted echo request or reply `l4` as its sender sent it: type `ty`
/// and identifier `id` (its checksum covered more than is quoted; left as
/// it is).
fn quote_echo(l4: &mut [u8], ty: u8, id: u16) {
    l4[0] = ty;
    l4[4..6].copy_from_slice(&id.to_be_bytes());
}

#[inline]
fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use softnet_wire::icmpv4::Icmpv4Repr;
    use softnet_wire::icmpv6::Icmpv6Repr;
    use softnet_wire::tcp::TcpRepr;
    use softnet_wire::udp::UdpRepr;
    use std::net::Ipv6Addr;

    const C6: &str = "2001:db8:1::2";
    const S6: &str = "64:ff9b::a00:202";
    const N4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
    const S4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

    fn a6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn tcp_repr(sport: u16, dport: u16, len: usize) -> TcpRepr {
        TcpRepr {
            src_port: sport,
            dst_port: dport,
            seq: 7,
            ack: 9,
            flags: TcpFlags::ACK,
            window: 100,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload_len: len,
        }
    }

    fn v6(proto: IpProtocol, hlim: u8, l4: impl Fn(&mut [u8], Ipv6Addr, Ipv6Addr), len: usize) -> PacketBuf {
        let (s, d) = (a6(C6), a6(S6));
        let ir = Ipv6Repr {
            src: s,
            dst: d,
            next_header: proto,
            hop_limit: hlim,
            traffic_class: 0x20,
            flow_label: 5,
            payload_len: len,
        };
        let mut b = vec![0u8; ir.buffer_len()];
        ir.emit(&mut b[..40]);
        l4(&mut b[40..], s, d);
        PacketBuf::from_slice(&b)
    }

    fn v4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, l4: impl Fn(&mut [u8]), len: usize) -> Vec<u8> {
        let ir =
            Ipv4Repr { src, dst, protocol: proto, ttl: 63, tos: 0x20, ident: 1, dont_frag: true, payload_len: len };
        let mut b = vec![0u8; ir.buffer_len()];
        ir.emit(&mut b[..20]);
        l4(&mut b[20..]);
        b
    }

    #[test]
    fn tcp_and_udp_move_between_the_pseudo_headers() {
        for tcp in [true, false] {
            let payload = b"0123456789abc";
            let (proto, len) =
                if tcp { (IpProtocol::TCP, 20 + payload.len()) } else { (IpProtocol::UDP, 8 + payload.len()) };
            let mut p = v6(
                proto,
                64,
                |b, s, d| {
                    if tcp {
                        tcp_repr(40000, 80, payload.len()).emit_with_payload_v6(b, s, d, payload)
                    } else {
                        UdpRepr { src_port: 40000, dst_port: 80, payload_len: payload.len() }
                            .emit_with_payload_v6(b, s, d, payload)
                    }
                },
                len,
            );
            let pd = parse_pd6(p.data()).unwrap();
            let e = Endpoints { src: N4, sport: 61000, dst: S4, dport: 80 };
            assert!(to4(&mut p, &pd, &e));
            let want = v4(
                N4,
                S4,
                proto,
                |b| {
                    if tcp {
                        tcp_repr(61000, 80, payload.len()).emit_with_payload(b, N4, S4, payload)
                    } else {
                        UdpRepr { src_port: 61000, dst_port: 80, payload_len: payload.len() }
                            .emit_with_payload(b, N4, S4, payload)
                    }
                },
                len,
            );
            // everything but the random identification (and so the header checksum)
            let got = p.data();
            assert_eq!(got.len(), want.len());
            assert_eq!(
                (&got[..4], &got[6..8], got[9], &got[12..]),
                (&want[..4], &want[6..8], want[9], &want[12..]),
                "tcp {tcp}"
            );
            assert_eq!(got[8], 64, "the TTL is the hop limit");
            assert!(Ipv4Packet::new_checked(got).unwrap().verify_checksum());
            // and back, as the server's answer would come
            let back = v4(
                S4,
                N4,
                proto,
                |b| {
                    if tcp {
                        tcp_repr(80, 61000, payload.len()).emit_with_payload(b, S4, N4, payload)
                    } else {
                        UdpRepr { src_port: 80, dst_port: 61000, payload_len: payload.len() }
                            .emit_with_payload(b, S4, N4, payload)
                    }
                },
                len,
            );
            let mut q = PacketBuf::from_slice(&back);
            let pd = parse_pd(q.data()).unwrap();
            let e6 = Endpoints6 { src: a6(S6), sport: 80, dst: a6(C6), dport: 40000 };
            assert!(to6(&mut q, &pd, &e6));
            let ip = Ipv6Packet::new_checked(q.data()).unwrap();
            assert_eq!((ip.src(), ip.dst(), ip.hop_limit(), ip.traffic_class()), (a6(S6), a6(C6), 63, 0x20));
            let l4 = &q.data()[40..];
            let ok = if tcp {
                TcpPacket::new_checked(l4).unwrap().verify_checksum_v6(a6(S6), a6(C6))
            } else {
                UdpPacket::new_checked(l4).unwrap().verify_checksum_v6(a6(S6), a6(C6))
            };
            assert!(ok, "transport checksum over the IPv6 pseudo-header");
            assert_eq!(&l4[0..4], &[0, 80, 0x9c, 0x40]);
        }
    }

    #[test]
    fn echo_requests_and_replies_change_family_with_their_ids() {
        let data = b"ping!";
        let r = Icmpv6Repr::EchoRequest { ident: 77, seq_no: 3, data };
        let mut p = v6(IpProtocol::ICMPV6, 64, |b, s, d| r.emit(s, d, b), r.buffer_len());
        let pd = parse_pd6(p.data()).unwrap();
        let e = Endpoints { src: N4, sport: 1234, dst: S4, dport: 8 };
        assert!(to4(&mut p, &pd, &e));
        let ip = Ipv4Packet::new_checked(p.data()).unwrap();
        assert_eq!((ip.protocol(), ip.src(), ip.dst(), ip.dont_frag()), (IpProtocol::ICMP, N4, S4, true));
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(Icmpv4Repr::parse(&icmp).unwrap(), Icmpv4Repr::EchoRequest { ident: 1234, seq_no: 3, data });
        // the reply
        let rep = Icmpv4Repr::EchoReply { ident: 1234, seq_no: 3, data };
        let b = v4(S4, N4, IpProtocol::ICMP, |b| rep.emit(b), rep.buffer_len());
        let mut q = PacketBuf::from_slice(&b);
        let pd = parse_pd(q.data()).unwrap();
        let e6 = Endpoints6 { src: a6(S6), sport: 128, dst: a6(C6), dport: 77 };
        assert!(to6(&mut q, &pd, &e6));
        let ip = Ipv6Packet::new_checked(q.data()).unwrap();
        assert_eq!(ip.next_header(), IpProtocol::ICMPV6);
        let icmp = Icmpv6Packet::new_checked(&q.data()[40..]).unwrap();
        assert!(icmp.verify_checksum(a6(S6), a6(C6)));
        assert_eq!((icmp.msg_type(), icmp.echo_ident(), icmp.echo_seq_no()), (t6::ECHO_REPLY, 77, 3));
    }
}
