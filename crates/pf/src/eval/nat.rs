//! Translation in the data path: pf_get_transaddr for a new connection
//! (the pools of the last `nat-to` and `rdr-to` rules that matched),
//! pf_translate on its packets and on the packets of its state, and the
//! translation of ICMP errors about it (pf_test_state_icmp). Every
//! checksum is updated incrementally (RFC 1624).

use softnet_wire::icmpv4::msg_type;

use super::*;
use crate::lb::{self, SportResult};
use crate::srcnode::{SN_NAT, SN_RDR};
use crate::xlhold::{Holds, PoolHold};

/// `static-port` exhausted, a pool with no address: logged at most this
/// often (pf logs each with DPFPRINTF at LOG_NOTICE).
const EXHAUSTED_LOG_NS: u64 = 10_000_000_000;
static LAST_EXHAUSTED_LOG: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The addresses and ports a packet is rewritten to: (src, sport, dst,
/// dport) as on the wire after translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Endpoints {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

impl Endpoints {
    pub fn of(pd: &Pd) -> Endpoints {
        Endpoints { src: pd.src4(), sport: pd.sport, dst: pd.dst4(), dport: pd.dport }
    }

    /// The state key a packet with these endpoints has in direction `dir`
    /// (`pkt_key`'s layout).
    pub fn key(&self, proto: u8, dir: Direction) -> StateKey {
        let (s, d) = if dir == Direction::In { (0, 1) } else { (1, 0) };
        let mut k = StateKey { proto, ..StateKey::empty() };
        k.addr[s] = PfAddr::from_v4(self.src);
        k.addr[d] = PfAddr::from_v4(self.dst);
        k.port[s] = self.sport;
        k.port[d] = self.dport;
        k
    }

    /// The endpoints of a packet in direction `dir` whose key is `k`.
    pub fn from_key(k: &StateKey, dir: Direction) -> Endpoints {
        let (s, d) = if dir == Direction::In { (0, 1) } else { (1, 0) };
        Endpoints { src: k.addr[s].v4(), sport: k.port[s], dst: k.addr[d].v4(), dport: k.port[d] }
    }
}

/// pf_get_transaddr: where a new connection's packet goes after the
/// translation of `nat` (its `nat-to` rule) and `rdr` (its `rdr-to`
/// rule), and what the state to be made holds of their pools
/// (`crate::xlhold`: given back by `release` if no state is made).
/// `Err(Translate)` when a pool has no address or every port is in use
/// (counted by the caller; logged here once per interval), or a
/// `sticky-address` node cannot be had.
pub(super) fn transaddr(
    cx: &Cx,
    pd: &Pd,
    nat: Option<&CRule>,
    rdr: Option<&CRule>,
) -> Result<(Endpoints, Holds), Reason> {
    debug_assert!(pd.af == Af::Inet, "IPv6 packets go to nat6::transaddr6");
    let mut e = Endpoints::of(pd);
    let mut holds: Holds = [None, None];
    let if_addrs = |name: &str| cx.pf.if_addrs(name, cx.ifp);
    if let (Some(r), Some(pool)) = (nat, nat.and_then(|r| r.nat.as_ref())) {
        let icmp_echo = pd.proto == PROTO_ICMP && pd.icmp_type == msg_type::ECHO_REQUEST;
        let states = &cx.pf.states;
        let (proto, dir, dst, dport) = (pd.proto, cx.dir, e.dst, e.dport);
        let mut in_use = |a: u32, p: u16| {
            let k = Endpoints { src: Ipv4Addr::from(a), sport: p, dst, dport }.key(proto, dir);
            states.key_in_use(k.words())
        };
        let sticky = sticky_addr(cx, r, pool, SN_NAT, pd.src4());
        match pool.get_sport(&if_addrs, pd.proto, icmp_echo, u32::from(pd.src4()), pd.sport, sticky, &mut in_use) {
            SportResult::Found { addr, port } => {
                e.src = Ipv4Addr::from(addr);
                e.sport = port;
                holds[0] = hold(cx, r, pool, SN_NAT, pd.src4(), addr, sticky)?;
            }
            SportResult::Exhausted => {
                log_exhausted(cx, pool.proxy_port);
                return Err(Reason::Translate);
            }
        }
    }
    if let (Some(r), Some(pool)) = (rdr, rdr.and_then(|r| r.rdr.as_ref())) {
        let sticky = sticky_addr(cx, r, pool, SN_RDR, e.src);
        let Some(mut a) = pool.map(&if_addrs, u32::from(e.src), sticky) else {
            log_exhausted(cx, pool.proxy_port);
            release(cx, &holds);
            return Err(Reason::Translate);
        };
        match hold(cx, r, pool, SN_RDR, e.src, a, sticky) {
            Ok(h) => holds[1] = h,
            Err(reason) => {
                release(cx, &holds);
                return Err(reason);
            }
        }
        if let (crate::model::PoolType::Bitmask, lb::PoolSource::Single { addr, mask }) = (pool.kind, &pool.source) {
            // pf_get_transaddr: rdr-to bitmask keeps the destination's host bits
            a = lb::poolmask(*addr, *mask, u32::from(e.dst));
        }
        e.dst = Ipv4Addr::from(a);
        if pd.proto == PROTO_TCP || pd.proto == PROTO_UDP {
            e.dport = lb::rdr_port(pool.proxy_port, r.dst_port_lo, e.dport);
        }
    }
    Ok((e, holds))
}

/// pf_map_addr with `sticky-address`: the address `src`'s node of `kind`
/// keeps for the rule, if the pool is sticky and the node is there.
pub(super) fn sticky_addr(cx: &Cx, r: &CRule, pool: &lb::CPool, kind: u8, src: Ipv4Addr) -> Option<u32> {
    let s = r.src_track.as_ref().filter(|_| pool.sticky)?;
    match cx.pf.srcnodes.sticky(s, kind, src.into())? {
        std::net::IpAddr::V4(a) => Some(u32::from(a)),
        std::net::IpAddr::V6(_) => None,
    }
}

/// What the state holds of `r`'s pool that gave `addr` to `src`: the
/// `least-states` count the pool took (not when the address was the
/// sticky node's), and with `sticky-address` the source's node, which
/// keeps `addr` (pf_map_addr's pf_insert_src_node). A node that cannot
/// be had fails the translation (the count goes back). `None`: the state
/// holds nothing of the pool (most pools), and is not in `xlholds`.
pub(super) fn hold(
    cx: &Cx,
    r: &CRule,
    pool: &lb::CPool,
    kind: u8,
    src: Ipv4Addr,
    addr: u32,
    sticky: Option<u32>,
) -> Result<Option<PoolHold>, Reason> {
    let counted = pool.kind == crate::model::PoolType::LeastStates && sticky != Some(addr);
    let mut h = PoolHold {
        gen: cx.rs.nodes[r.node as usize].gen,
        nr: r.local_nr,
        addr: Ipv4Addr::from(addr).into(),
        counted,
        node: None,
    };
    if let Some(s) = r.src_track.as_ref().filter(|_| pool.sticky) {
        let limit = cx.rs.opts.limit(Limit::SrcNodes) as usize;
        let now = cx.now.as_nanos();
        if let Err(e) = cx.pf.srcnodes.acquire_kind(s, kind, src.into(), Some(Ipv4Addr::from(addr).into()), now, limit)
        {
            if let Some(i) = e.lcounter() {
                cx.counters.lcounters[i].inc();
            }
            h.give_back(cx.rs, kind as usize - 1);
            return Err(Reason::Translate);
        }
        h.node = Some(s.key_of(kind, src.into()));
    }
    Ok((h.counted || h.node.is_some()).then_some(h))
}

/// Gives back what `holds` took, for a state that is not made
/// (pf_create_state's `csfailed`): the `least-states` counts, the nodes
/// (a node left with no state goes at the next purge).
pub(super) fn release(cx: &Cx, holds: &Holds) {
    for (which, h) in holds.iter().enumerate() {
        if let Some(h) = h {
            h.give_back(cx.rs, which);
            if let Some(k) = h.node {
                cx.pf.srcnodes.undo_key(k, cx.now.as_nanos());
            }
        }
    }
}

#[cold]
pub(super) fn log_exhausted(cx: &Cx, ports: [u16; 2]) {
    let now = cx.now.as_nanos();
    let last = LAST_EXHAUSTED_LOG.load(std::sync::atomic::Ordering::Relaxed);
    if last == 0 || now >= last.saturating_add(EXHAUSTED_LOG_NS) {
        LAST_EXHAUSTED_LOG.store(now.max(1), std::sync::atomic::Ordering::Relaxed);
        tracing::warn!("pf: NAT proxy port allocation ({}-{}) failed", ports[0], ports[1]);
    }
}

/// A family's endpoints of a packet, read from a state key (`Endpoints`
/// for IPv4, `nat6::Endpoints6` for IPv6): what `state_target` and
/// `view_target` give for either family.
pub(super) trait KeyEndpoints: Sized {
    /// The endpoints of a packet in direction `dir` whose key is `k`.
    fn of_key(k: &StateKey, dir: Direction) -> Self;
}

impl KeyEndpoints for Endpoints {
    #[inline]
    fn of_key(k: &StateKey, dir: Direction) -> Self {
        Endpoints::from_key(k, dir)
    }
}

/// What a translating state does to a packet it matched: `None` when the
/// packet may not use the state (pf_find_state: an inbound packet finds
/// a state by its wire key, an outbound one by its stack key), else the
/// endpoints to rewrite the packet to (`Some(None)`: none to change).
/// `pkt` is the packet's key words; `nat` the state's translated key.
#[inline]
pub(super) fn state_target<E: KeyEndpoints>(
    st: &StateData,
    nat: Option<(u64, u64)>,
    pkt: (u64, u64),
    dir: Direction,
) -> Option<Option<E>> {
    let Some(nat) = nat.filter(|_| st.flags & sflags::NAT != 0) else { return Some(None) };
    let fwd = st.direction == dir_code(dir);
    // The state's own key is the creating packet's, untranslated: its
    // direction's packets carry it; the other way they carry the
    // translated one.
    let target = if pkt == st.key.words() && fwd {
        crate::state::unpack(nat)
    } else if pkt == nat && !fwd {
        st.key
    } else {
        return None;
    };
    Some(Some(E::of_key(&target, dir)))
}

/// `state_target` for the lock-free path: from the words of a state's
/// keys (`StateTable::keys`) and whether the packet goes the state's way.
#[inline]
pub(super) fn view_target<E: KeyEndpoints>(
    keys: crate::state::StateKeys,
    pkt: (u64, u64),
    fwd: bool,
    dir: Direction,
) -> Option<Option<E>> {
    let (own, nat) = keys;
    let Some(nat) = nat else { return Some(None) };
    let target = if pkt == own && fwd {
        nat
    } else if pkt == nat && !fwd {
        own
    } else {
        return None;
    };
    Some(Some(E::of_key(&crate::state::unpack(target), dir)))
}

/// pf_translate: rewrites the packet's addresses and ports (TCP, UDP,
/// the ICMP query id) to `to`, updating the IP, TCP, UDP and ICMP
/// checksums incrementally: RFC 1624 eqn. 3 with every changed word's
/// `~m + m'` summed first, one fold per checksum (the same field value as
/// one `update16` a word: the sums agree modulo 0xffff and are never 0).
pub(super) fn translate(pkt: &mut PacketBuf, pd: &Pd, to: &Endpoints) {
    translate_at(pkt.data_mut(), pd.hlen(), pd.tot_len(), pd.proto, pd.icmp_type, &Endpoints::of(pd), to);
}

/// `translate` for a UDP datagram with a 20-byte header, `tot` bytes
/// long, whose key words (in the hook's direction `dir`) go from `from`
/// to `to`: the fast path's rewrite (`fast4`), without a description.
///
/// Straight from the words: the header's addresses are the first word
/// (pf out's swapped), its ports the second's high half, and a
/// checksum's terms do not depend on which address is which, so the
/// sums are `translate_at`'s (the same bytes; `tests/fast4.rs` compares
/// them with the general path's).
#[inline(always)]
pub(super) fn translate_words(pkt: &mut PacketBuf, tot: usize, from: (u64, u64), to: (u64, u64), dir: Direction) {
    let (oa, na) = (from.0, to.0);
    let (op, np) = ((from.1 >> 32) as u32, (to.1 >> 32) as u32);
    // the same endpoints: nothing to do (as `translate_at`)
    if oa == na && op == np {
        return;
    }
    let Some(d) = pkt.data_mut().get_mut(..tot) else { return };
    // `fast_key4` took the datagram: a 20-byte header, UDP's 8 within `tot`.
    let Some((h, _)) = d.split_first_chunk_mut::<28>() else { return };
    // RFC 1624 eqn. 3 a 32-bit word at a time: 2^16 = 1 (mod 0xffff), so a
    // word's `~m + m'` added whole is its two halves' `delta16`s modulo
    // 0xffff, and the folded field is the same (`adjust` of a sum that is
    // not 0). Unchanged words add 0xffff... (= 0), so no test is needed.
    let da = wide(!oa) + wide(na);
    if oa != na {
        let c = adjust_wide(u16::from_be_bytes([h[10], h[11]]), da);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let addrs = if dir == Direction::In { na } else { na.rotate_left(32) };
        h[12..20].copy_from_slice(&addrs.to_be_bytes());
    }
    let ports = if dir == Direction::In { np } else { np.rotate_left(16) };
    h[20..24].copy_from_slice(&ports.to_be_bytes());
    let old = u16::from_be_bytes([h[26], h[27]]);
    // no checksum (0) stays none
    if old != 0 {
        let c = adjust_wide(old, da + (!op) as u64 + np as u64);
        h[26..28].copy_from_slice(&if c == 0 { 0xffff_u16 } else { c }.to_be_bytes());
    }
}

/// A 64-bit word as the sum of its 32-bit halves (the same modulo 0xffff).
#[inline(always)]
fn wide(w: u64) -> u64 {
    (w >> 32) + (w & 0xffff_ffff)
}

/// `adjust` for a `delta` of 32-bit terms (under 2^36): folded to 32 bits
/// and then to 16 with the end-around carries, as `checksum::fold` would.
#[inline(always)]
fn adjust_wide(csum: u16, delta: u64) -> u16 {
    let s = !csum as u64 + delta;
    debug_assert!(s < 1 << 37);
    let (lo, c) = (s as u32).overflowing_add((s >> 32) as u32);
    let s = lo + c as u32;
    let (lo, c) = (s as u16).overflowing_add((s >> 16) as u16);
    !(lo + c as u16)
}

/// `translate` on the IPv4 datagram `d` (header `hlen` bytes, `tot` in
/// all, transport `proto`, ICMP type `icmp_type`) now at `from`.
fn translate_at(d: &mut [u8], hlen: usize, tot: usize, proto: u8, icmp_type: u8, from: &Endpoints, to: &Endpoints) {
    if *from == *to {
        return;
    }
    let (os, od, ns, nd) = (u32::from(from.src), u32::from(from.dst), u32::from(to.src), u32::from(to.dst));
    let (ds, dd) = (delta32(os, ns), delta32(od, nd));
    if os != ns || od != nd {
        let mut ip = Ipv4Packet::new_unchecked(&mut d[..]);
        let delta = if os != ns { ds } else { 0 } + if od != nd { dd } else { 0 };
        let c = adjust(ip.checksum(), delta);
        ip.set_src(to.src);
        ip.set_dst(to.dst);
        ip.set_checksum(c);
    }
    let l4 = &mut d[hlen..tot];
    let ports = delta16(from.sport, to.sport) + delta16(from.dport, to.dport);
    match proto {
        PROTO_TCP => {
            let mut t = TcpPacket::new_unchecked(l4);
            let c = adjust(t.checksum(), ds + dd + ports);
            t.set_src_port(to.sport);
            t.set_dst_port(to.dport);
            t.set_checksum(c);
        }
        PROTO_UDP => {
            let mut u = UdpPacket::new_unchecked(l4);
            let old = u.checksum();
            u.set_src_port(to.sport);
            u.set_dst_port(to.dport);
            // no checksum (0) stays none
            if old != 0 {
                let c = adjust(old, ds + dd + ports);
                u.set_checksum(if c == 0 { 0xffff } else { c });
            }
        }
        PROTO_ICMP => {
            // a query's id is its "port" on one side (the other is the
            // type, which stays); no pseudo-header
            let (old_id, new_id) = if from.sport != to.sport { (from.sport, to.sport) } else { (from.dport, to.dport) };
            if old_id != new_id && !icmpv4::is_error(icmp_type) {
                let mut p = Icmpv4Packet::new_unchecked(l4);
                let c = checksum::update16(p.checksum(), old_id, new_id);
                p.set_echo_ident(new_id);
                p.set_checksum(c);
            }
        }
        _ => {}
    }
}

/// RFC 1624 eqn. 3's `~m + m'` for a 16-bit word going from `old` to `new`.
#[inline(always)]
fn delta16(old: u16, new: u16) -> u64 {
    !old as u64 + new as u64
}

/// `delta16` for both words of a 32-bit field (at an even offset).
#[inline(always)]
fn delta32(old: u32, new: u32) -> u64 {
    delta16((old >> 16) as u16, (new >> 16) as u16) + delta16(old as u16, new as u16)
}

/// A checksum field after words changed by `delta` (summed `delta16`s,
/// six at most): `HC' = ~(~HC + delta)`, the sum (under 2^20) folded
/// in two fixed steps, as `checksum::fold` would loop (never 0 from a
/// sum that is not).
#[inline(always)]
fn adjust(csum: u16, delta: u64) -> u16 {
    let s = !csum as u64 + delta;
    debug_assert!(s < 1 << 32);
    let s = (s & 0xffff) + (s >> 16);
    !((s & 0xffff) + (s >> 16)) as u16
}

/// A 16-bit word at `off` (even, inside the ICMP message) changed: the
/// ICMP checksum follows.
fn icmp_word(msg: &mut [u8], off: usize, new: u16) {
    let old = u16::from_be_bytes([msg[off], msg[off + 1]]);
    if old == new {
        return;
    }
    msg[off..off + 2].copy_from_slice(&new.to_be_bytes());
    let mut p = Icmpv4Packet::new_unchecked(&mut msg[..]);
    let c = checksum::update16(p.checksum(), old, new);
    p.set_checksum(c);
}

/// Offsets in an ICMP error of the quoted packet's fields pf rewrites.
const Q_IP: usize = icmpv4::HEADER_LEN;
const Q_CKSUM: usize = Q_IP + 10;
const Q_SRC: usize = Q_IP + 12;
const Q_DST: usize = Q_IP + 16;

/// pf_test_state_icmp for an error about a translated connection: the
/// quoted packet (source `qs`, destination `qd` as quoted) goes back to
/// what it was on this side (`to`: its endpoints here), and so does the
/// outer address that names it (the destination when the quoted source
/// changed, the source when the quoted destination did). IP, quoted IP,
/// quoted TCP/UDP (as far as quoted) and ICMP checksums follow.
pub(super) fn translate_icmp_error(pkt: &mut PacketBuf, pd: &Pd, h2: usize, iproto: u8, to: &Endpoints) {
    let d = pkt.data_mut();
    let (osrc, odst) = {
        let ip = Ipv4Packet::new_unchecked(&d[..]);
        (ip.src(), ip.dst())
    };
    let msg = &mut d[pd.hlen()..pd.tot_len()];
    let qip = Ipv4Packet::new_unchecked(&msg[Q_IP..]);
    let (qs, qd) = (qip.src(), qip.dst());
    let l4 = Q_IP + h2;
    let quoted_ports = matches!(iproto, PROTO_TCP | PROTO_UDP) && msg.len() >= l4 + 4;
    let (qsp, qdp) = if quoted_ports { (be16(msg, l4), be16(msg, l4 + 2)) } else { (0, 0) };
    // the quoted packet's IP header: addresses and its own checksum
    let mut qsum = be16(msg, Q_CKSUM);
    for (off, old, new) in [(Q_SRC, qs, to.src), (Q_DST, qd, to.dst)] {
        if old != new {
            qsum = checksum::update32(qsum, u32::from(old), u32::from(new));
            let n = new.octets();
            icmp_word(msg, off, u16::from_be_bytes([n[0], n[1]]));
            icmp_word(msg, off + 2, u16::from_be_bytes([n[2], n[3]]));
        }
    }
    icmp_word(msg, Q_CKSUM, qsum);
    match iproto {
        PROTO_TCP | PROTO_UDP if quoted_ports => {
            // the quoted transport checksum, where quoted (UDP's in the
            // first 8 bytes, TCP's at 16)
            let cks_off = if iproto == PROTO_UDP { l4 + 6 } else { l4 + 16 };
            if msg.len() >= cks_off + 2 {
                let old = be16(msg, cks_off);
                if old != 0 || iproto == PROTO_TCP {
                    let mut c = checksum::update32(old, u32::from(qs), u32::from(to.src));
                    c = checksum::update32(c, u32::from(qd), u32::from(to.dst));
                    c = checksum::update16(c, qsp, to.sport);
                    c = checksum::update16(c, qdp, to.dport);
                    if iproto == PROTO_UDP && c == 0 {
                        c = 0xffff;
                    }
                    icmp_word(msg, cks_off, c);
                }
            }
            icmp_word(msg, l4, to.sport);
            icmp_word(msg, l4 + 2, to.dport);
        }
        PROTO_ICMP if msg.len() >= l4 + icmpv4::HEADER_LEN => {
            // a quoted query: its id is the request's source "port", the
            // reply's destination one (and the quoted ICMP checksum)
            let (_, idir, _) = icmp_mapping(msg[l4]);
            let new_id = if idir == Direction::In { to.sport } else { to.dport };
            let old_id = be16(msg, l4 + 4);
            if old_id != new_id {
                let c = checksum::update16(be16(msg, l4 + 2), old_id, new_id);
                icmp_word(msg, l4 + 4, new_id);
                icmp_word(msg, l4 + 2, c);
            }
        }
        _ => {}
    }
    // the outer header: the error goes to the quoted packet's source and
    // comes from its destination, as they are on this side
    let mut ip = Ipv4Packet::new_unchecked(&mut d[..]);
    if qs != to.src && odst == qs {
        ip.set_dst_incremental(to.src);
    }
    if qd != to.dst && osrc == qd {
        ip.set_src_incremental(to.dst);
    }
}

#[inline]
fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use softnet_wire::ipv4::Ipv4Repr;
    use softnet_wire::tcp::TcpRepr;
    use softnet_wire::udp::UdpRepr;

    fn ip(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, len: usize) -> Ipv4Repr {
        Ipv4Repr { src, dst, protocol, ttl: 64, tos: 0, ident: 1, dont_frag: false, payload_len: len }
    }

    fn packet(proto: u8, e: &Endpoints, payload: &[u8]) -> PacketBuf {
        let mut b;
        match proto {
            PROTO_UDP => {
                let u = UdpRepr { src_port: e.sport, dst_port: e.dport, payload_len: payload.len() };
                let i = ip(e.src, e.dst, IpProtocol::UDP, u.buffer_len());
                b = vec![0u8; i.buffer_len()];
                i.emit(&mut b);
                u.emit_with_payload(&mut b[20..], e.src, e.dst, payload);
            }
            PROTO_TCP => {
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
                let i = ip(e.src, e.dst, IpProtocol::TCP, t.buffer_len());
                b = vec![0u8; i.buffer_len()];
                i.emit(&mut b);
                t.emit_with_payload(&mut b[20..], e.src, e.dst, payload);
            }
            _ => unreachable!(),
        }
        PacketBuf::from_slice(&b)
    }

    fn ends(proto: u8) -> impl Strategy<Value = Endpoints> {
        (any::<u32>(), 1u16.., any::<u32>(), 1u16..).prop_map(move |(s, sp, d, dp)| Endpoints {
            src: Ipv4Addr::from(s),
            sport: if proto == PROTO_UDP || proto == PROTO_TCP { sp } else { 0 },
            dst: Ipv4Addr::from(d),
            dport: dp,
        })
    }

    proptest! {
        /// pf_translate's incremental updates (RFC 1624) give the checksums
        /// a full re-sum gives, for any addresses and ports.
        #[test]
        fn translated_checksums_equal_a_full_resum(
            from in ends(PROTO_UDP), to in ends(PROTO_UDP), tcp in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
            let mut p = packet(proto, &from, &payload);
            let pd = parse_pd(p.data()).unwrap();
            translate(&mut p, &pd, &to);
            let want = packet(proto, &to, &payload);
            prop_assert_eq!(p.data(), want.data());
        }

        /// An echo request's id translated, and the ICMP checksum with it.
        #[test]
        fn translated_echo_ids_keep_the_icmp_checksum(id in any::<u16>(), nid in any::<u16>(), s in any::<u32>(), ns in any::<u32>()) {
            let mk = |src: u32, ident: u16| {
                let r = softnet_wire::icmpv4::Icmpv4Repr::EchoRequest { ident, seq_no: 3, data: b"abc" };
                let i = ip(Ipv4Addr::from(src), Ipv4Addr::new(10, 0, 2, 2), IpProtocol::ICMP, r.buffer_len());
                let mut b = vec![0u8; i.buffer_len()];
                i.emit(&mut b);
                r.emit(&mut b[20..]);
                PacketBuf::from_slice(&b)
            };
            let mut p = mk(s, id);
            let pd = parse_pd(p.data()).unwrap();
            let to = Endpoints { src: Ipv4Addr::from(ns), sport: nid, dst: pd.dst4(), dport: pd.dport };
            translate(&mut p, &pd, &to);
            let want = mk(ns, nid);
            prop_assert_eq!(p.data(), want.data());
        }
    }

    /// The summed update gives the field `checksum::update16` word by
    /// word gives (RFC 1624 eqn. 3 each time), for values at the fold's
    /// edges (0, 0xffff, all ones) and from a fixed-seed generator.
    /// The header's key words of a UDP datagram between `e`'s endpoints
    /// (`fast_key4`'s: the addresses, then the ports in the high half).
    fn header_words(e: &Endpoints) -> (u64, u64) {
        let a = (u32::from(e.src) as u64) << 32 | u32::from(e.dst) as u64;
        (a, ((e.sport as u64) << 16 | e.dport as u64) << 32 | (PROTO_UDP as u64) << 16)
    }

    /// Endpoints that are often the same as `e`'s, in one field or all.
    fn near(e: Endpoints, pick: u8, other: Endpoints) -> Endpoints {
        Endpoints {
            src: if pick & 1 != 0 { other.src } else { e.src },
            sport: if pick & 2 != 0 { other.sport } else { e.sport },
            dst: if pick & 4 != 0 { other.dst } else { e.dst },
            dport: if pick & 8 != 0 { other.dport } else { e.dport },
        }
    }

    proptest! {
        /// The fast path's rewrite from the key words gives the bytes the
        /// general path's `translate_at` gives, in both directions, for any
        /// endpoints (some fields unchanged, or all), with and without a
        /// UDP checksum.
        #[test]
        fn words_rewrite_as_the_general_path(
            from in ends(PROTO_UDP), other in ends(PROTO_UDP), pick in 0u8..16, out in any::<bool>(),
            no_sum in any::<bool>(), payload in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            let to = near(from, pick, other);
            let mut a = packet(PROTO_UDP, &from, &payload);
            if no_sum {
                a.data_mut()[26..28].copy_from_slice(&[0, 0]);
            }
            let mut b = PacketBuf::from_slice(a.data());
            let tot = a.len();
            translate_at(a.data_mut(), 20, tot, PROTO_UDP, 0, &from, &to);
            let dir = if out { Direction::Out } else { Direction::In };
            let (fw, tw) = (header_words(&from), header_words(&to));
            let dw = crate::eval::fast4::dir_words;
            translate_words(&mut b, tot, dw(fw, dir), dw(tw, dir), dir);
            prop_assert_eq!(a.data(), b.data());
        }
    }

    #[test]
    fn one_fold_equals_one_update_a_word() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 5 {
                0 => 0,
                1 => u32::MAX,
                2 => 0xffff,
                _ => (x >> 17) as u32,
            }
        };
        for _ in 0..200_000 {
            let (csum, os, ns, od, nd) = (next() as u16, next(), next(), next(), next());
            let (sp, nsp, dp, ndp) = (next() as u16, next() as u16, next() as u16, next() as u16);
            let mut c = checksum::update32(csum, os, ns);
            c = checksum::update32(c, od, nd);
            c = checksum::update16(c, sp, nsp);
            c = checksum::update16(c, dp, ndp);
            let delta = delta32(os, ns) + delta32(od, nd) + delta16(sp, nsp) + delta16(dp, ndp);
            assert_eq!(adjust(csum, delta), c, "{csum:#x} {os:#x}>{ns:#x} {od:#x}>{nd:#x} {sp}>{nsp} {dp}>{ndp}");
            let ip = checksum::update32(checksum::update32(csum, os, ns), od, nd);
            assert_eq!(adjust(csum, delta32(os, ns) + delta32(od, nd)), ip);
        }
    }
}
