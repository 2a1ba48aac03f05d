//! pf_test for IPv6 packets: pf_setup_pdesc (`pdesc6`), fragments,
//! pf_test_state_icmp's IPv6 half (queries, NDP, errors quoting a
//! state's packet), and `block return`'s TCP RST and ICMPv6 unreachable
//! (pf_send_tcp, pf_send_icmp with `return-icmp6`).
//!
//! IPv6 fragments: under `set reassemble yes` (the default) they are
//! held and the whole datagram is filtered (pf_normalize_ip6 →
//! pf_reassemble6, `frag6.rs`); the stack cuts it again after pf out
//! (pf_refragment6, `PacketMeta::pf_frag_max`). Under `set reassemble no`
//! a fragment goes to the rules alone, as an IPv4 fragment does.

use std::net::Ipv6Addr;

use softnet_wire::icmpv6::{self, msg_type as t6, Icmpv6Repr};
use softnet_wire::ipv6::{Ipv6Packet, Ipv6Repr};

use super::pdesc6::{icmp6_mapping, nd_key_addrs, new_state_key};
use super::*;

/// The hop limit of what pf sends (IPV6_DEFHLIM).
const IPV6_DEFHLIM: u8 = 64;

/// pf_test for a packet whose header says IPv6 (`slot` holds it).
#[cold]
#[inline(never)]
pub(super) fn test_parsed6(
    cx: &Cx,
    slot: &mut Option<PacketBuf>,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) -> Decision {
    let Some(pkt) = slot.as_mut() else { return Decision::Consumed };
    let mut pd = match parse_pd6(pkt.data()) {
        Ok(pd) => pd,
        Err(r) => {
            cx.count(r);
            log_forced(cx, r, pkt.data());
            return Decision::Drop;
        }
    };
    if pd.frag {
        if !cx.rs.opts.reassemble {
            // PF_VPROTO_FRAGMENT: the rules alone, no state.
            pkt.meta.pf_link = 0;
            let d = test_rule(cx, &pd, pkt, bufs, replies);
            if matches!(d, Decision::Drop) {
                cx.count(Reason::Fragment);
            }
            return d;
        }
        // pf_normalize_ip6: reassemble it (pf_reassemble6).
        match reassemble6(cx, slot, bufs) {
            Some(p) => pd = p,
            None => return if slot.is_some() { Decision::Drop } else { Decision::Consumed },
        }
    }
    let Some(pkt) = slot.as_mut() else { return Decision::Consumed };
    if pd.proto == PROTO_TCP {
        let d = pkt.data_mut();
        match normalize_tcp(&mut d[pd.hlen()..pd.tot_len()]) {
            Some(flags) => pd.tcp.flags = flags,
            None => {
                cx.count(Reason::Normalize);
                return Decision::Drop;
            }
        }
    }
    test_pd(cx, &pd, pkt, 0, bufs, replies)
}

/// pf_reassemble6 for the fragment in `slot`: `Some` with the parse of
/// the whole datagram now in `slot`; `None` with the slot empty when the
/// fragment was kept, or holding what to drop (counted and logged as
/// pf_normalize_ip6's drops are) otherwise.
fn reassemble6(cx: &Cx, slot: &mut Option<PacketBuf>, bufs: &mut dyn BufferSource) -> Option<Pd> {
    let pkt = slot.take()?;
    let drop = |slot: &mut Option<PacketBuf>, p: PacketBuf, r: Reason| {
        cx.count(r);
        log_forced(cx, r, p.data());
        *slot = Some(p);
        None
    };
    let fh = match crate::frag6::find_frag_header(pkt.data()) {
        Ok(Some(fh)) => fh,
        _ => return drop(slot, pkt, Reason::Fragment),
    };
    // `set limit frags` counts both families' fragments, as pf's pool.
    let room = (cx.rs.opts.limit(Limit::Frags) as usize).saturating_sub(cx.pf.frags.len());
    let timeout = cx.rs.opts.timeout(Timeout::Frag);
    match cx.pf.frags6.input(pkt, fh, cx.now.as_nanos(), room, timeout, bufs) {
        FragResult::Kept => None,
        FragResult::Done(p) => match parse_pd6(p.data()) {
            Ok(pd) => {
                *slot = Some(p);
                Some(pd)
            }
            Err(r) => drop(slot, p, r),
        },
        FragResult::Drop(p, why) => {
            let r = match why {
                FragDrop::Bad | FragDrop::Duplicate => Reason::Fragment,
                FragDrop::TooBig => Reason::Short,
                FragDrop::Memory => Reason::Memory,
            };
            drop(slot, p, r)
        }
    }
}

/// The key words of an ICMPv6 query or reply for the state lookup, with
/// pf_state_key_addr_setup's NDP targets; with `multi`, the reply's
/// source side as the all-nodes group its request went to (`None` for
/// NDP, which has no such second lookup).
fn query_key(cx: &Cx, pd: &Pd, data: &[u8], multi: bool) -> Option<(u64, u64)> {
    let mut k = pkt_key(pd, cx.dir);
    let (si, di) = if cx.dir == Direction::In { (0, 1) } else { (1, 0) };
    if let Some((s, d)) = nd_key_addrs(pd, data) {
        if multi {
            return None;
        }
        k.addr[si] = s;
        k.addr[di] = d;
    } else if multi {
        k.addr[si] = PfAddr::from_v6(softnet_wire::ipv6::ALL_NODES);
    }
    Some(k.words())
}

/// pf_test_state_icmp for ICMPv6.
pub(super) fn test_state_icmp6(cx: &Cx, pd: &Pd, pkt: &mut PacketBuf, link: &mut u64) -> StateVerdict {
    let (is_error, icmp_dir, _, _) = icmp6_mapping(pd.icmp_type);
    let dirc = dir_code(cx.dir);
    if !is_error {
        // A query or reply: its own state. A reply that finds none may
        // answer a request sent to the all-nodes group.
        let mut af = afto::AfRewrite::Keep;
        let mut lookup = |key: (u64, u64), link: &mut u64| {
            cx.with_state_linked(key, link, |slot, st| {
                // A translating state: by the wire key inbound, the stack
                // key outbound, and the echo rewritten as its state says.
                let (to, fwd) = if st.flags & sflags::AFTO != 0 {
                    let Some((fwd, rw)) = afto::state_rewrite(st, cx.pf.states.nat_key(slot), key, cx.dir) else {
                        return StateVerdict::NoState;
                    };
                    af = rw;
                    (None, fwd)
                } else {
                    let Some(to) = nat::state_target::<nat6::Endpoints6>(st, cx.pf.states.nat_key(slot), key, cx.dir)
                    else {
                        return StateVerdict::NoState;
                    };
                    (to, st.direction == dirc)
                };
                let flow = if fwd { Direction::In } else { Direction::Out };
                if st.flags & sflags::SLOPPY == 0 && flow != icmp_dir {
                    return StateVerdict::Drop(Some(Reason::StateMismatch));
                }
                set_timeout(st, cx.now, Timeout::IcmpError);
                account(st, fwd, pd.tot_len());
                state_pass_xlate(st, slot, fwd, (None, to))
            })
        };
        let data = pkt.data();
        let found = query_key(cx, pd, data, false).and_then(|k| lookup(k, link));
        let found = match found {
            Some(v) => Some(v),
            None if icmp_dir == Direction::Out => query_key(cx, pd, data, true).and_then(|k| lookup(k, link)),
            None => None,
        };
        let v = found.unwrap_or(StateVerdict::NoState);
        return afto_pass(pkt, pd, &af, v);
    }
    error_state(cx, pd, pkt)
}

/// An ICMPv6 error: the state of the packet it quotes, which went the
/// other way (pf_test_state_icmp's second half).
fn error_state(cx: &Cx, pd: &Pd, pkt: &mut PacketBuf) -> StateVerdict {
    let data = pkt.data();
    let dirc = dir_code(cx.dir);
    let inner = &data[(pd.hlen() + icmpv6::HEADER_LEN).min(pd.tot_len())..pd.tot_len()];
    if Ipv6Packet::new_quoted(inner).is_err() {
        return StateVerdict::Drop(Some(Reason::Short));
    }
    let w = match walk_header6(inner) {
        Ok((w, _)) => w,
        Err(r) => return StateVerdict::Drop(Some(r)),
    };
    let ip2 = Ipv6Packet::new_unchecked(inner);
    let (isrc, idst) = (PfAddr::from_v6(ip2.src()), PfAddr::from_v6(ip2.dst()));
    if pd.dst != isrc {
        return StateVerdict::Drop(Some(Reason::StateMismatch));
    }
    let l4 = inner.get(w.off..).unwrap_or_default();
    let (s, d) = if cx.dir == Direction::In { (1, 0) } else { (0, 1) };
    let mut key = StateKey { proto: w.proto, af: Af::Inet6, ..StateKey::empty() };
    key.addr[s] = isrc;
    key.addr[d] = idst;
    let mut inner_icmp_dir = None;
    match w.proto {
        PROTO_TCP | PROTO_UDP => {
            // Only the first 8 bytes of the quoted header are there.
            if l4.len() < 8 {
                return StateVerdict::Drop(Some(Reason::Short));
            }
            key.port[s] = be16(l4, 0);
            key.port[d] = be16(l4, 2);
        }
        PROTO_ICMPV6 => {
            if l4.len() < icmpv6::HEADER_LEN {
                return StateVerdict::Drop(Some(Reason::Short));
            }
            let (ierr, idir, vtype, nd) = icmp6_mapping(l4[0]);
            if ierr {
                return StateVerdict::Drop(Some(Reason::StateMismatch));
            }
            let id = match l4[0] {
                t6::ECHO_REQUEST | t6::ECHO_REPLY => be16(l4, 4),
                _ if nd || matches!(l4[0], t6::MLD_QUERY | t6::MLD_REPORT) => {
                    let Some(a) = l4.get(8..24) else { return StateVerdict::Drop(Some(Reason::Short)) };
                    (be32(a, 0) ^ be32(a, 4) ^ be32(a, 8) ^ be32(a, 12)) as u16
                }
                _ => 0,
            };
            let (ps, pdp) = if idir == Direction::In { (id, vtype as u16) } else { (vtype as u16, id) };
            key.port[s] = ps;
            key.port[d] = pdp;
            if nd {
                let target = PfAddr::from_v6(Ipv6Addr::from(<[u8; 16]>::try_from(&l4[8..24]).expect("16 bytes")));
                if l4[0] == t6::NEIGHBOR_SOLICIT {
                    key.addr[d] = target;
                } else {
                    key.addr[s] = target;
                    if ip2.dst().is_multicast() {
                        key.addr[d] = PfAddr::UNSPECIFIED;
                    }
                }
            }
            inner_icmp_dir = Some(idir);
        }
        _ => {}
    }
    let quoted_seq = if w.proto == PROTO_TCP { be32(l4, 4) } else { 0 };
    let kw = key.words();
    let mut back = None;
    let mut af_nat = None;
    let v = cx
        .with_state(kw, |slot, st| {
            // A translating state: the error travels as its direction's
            // packets do, and its quote goes back to what it is on this side
            // (`to` is the quote's key side seen as a packet of this
            // direction; the quote itself went the other way).
            if st.flags & sflags::AFTO != 0 {
                // af-to: an error translated from the IPv4 side (`afto::
                // error_to6`) leaves by pf out as it is.
                if st.direction != dirc && kw == st.key.words() {
                    account(st, false, pd.tot_len());
                    return state_pass(st, slot, false);
                }
                // One from the IPv6 side about the server's packet goes to
                // the server as ICMP (`afto::error_to4`).
                let nat = cx.pf.states.nat_key(slot);
                if st.direction != dirc || kw != st.key.words() || nat.is_none() {
                    return StateVerdict::Drop(Some(Reason::Translate));
                }
                af_nat = nat;
                account(st, true, pd.tot_len());
                return state_pass(st, slot, true);
            }
            let Some(to) = nat::state_target::<nat6::Endpoints6>(st, cx.pf.states.nat_key(slot), kw, cx.dir) else {
                return StateVerdict::NoState;
            };
            back = to.map(|t| nat6::Endpoints6 { src: t.dst, sport: t.dport, dst: t.src, dport: t.sport });
            let fwd = st.direction == dirc;
            if let Some(idir) = inner_icmp_dir {
                // pf_icmp_state_lookup with `inner`: the quoted query flowed
                // against this error's direction.
                let flow = if fwd { Direction::Out } else { Direction::In };
                if st.flags & sflags::SLOPPY == 0 && flow != idir {
                    return StateVerdict::Drop(Some(Reason::StateMismatch));
                }
            }
            if w.proto == PROTO_TCP && !tcp_track::is_sloppy(st) {
                let quoted_fwd = st.direction != dirc;
                if !tcp_track::quoted_seq_ok(st, quoted_fwd, quoted_seq) {
                    return StateVerdict::Drop(Some(Reason::StateMismatch));
                }
            }
            account(st, fwd, pd.tot_len());
            state_pass(st, slot, fwd)
        })
        .unwrap_or(StateVerdict::NoState);
    if let (StateVerdict::Pass(_), Some(to)) = (&v, back) {
        nat6::translate_icmp6_error(pkt, pd, w.off, w.proto, &to);
    }
    if let (StateVerdict::Pass(_), Some(nat)) = (&v, af_nat) {
        if !afto::error_to4(pkt, pd, w.off, w.proto, nat) {
            return StateVerdict::Drop(Some(Reason::Translate));
        }
    }
    v
}

/// pf_match_rule's "don't create states on replies": a `keep state`
/// rule (not sloppy) does not match an ICMP or ICMPv6 reply (an echo
/// reply, an MLD report…); an ICMPv6 neighbor advertisement is the
/// exception.
#[inline]
pub(super) fn icmp_reply_no_state(pd: &Pd) -> bool {
    if pd.frag {
        return false;
    }
    match (pd.proto, pd.af) {
        (PROTO_ICMP, Af::Inet) => {
            let (err, dir, _) = icmp_mapping(pd.icmp_type);
            !err && dir != Direction::In
        }
        (PROTO_ICMPV6, Af::Inet6) => {
            let (err, dir, _, _) = icmp6_mapping(pd.icmp_type);
            !err && dir != Direction::In && pd.icmp_type != t6::NEIGHBOR_ADVERT
        }
        _ => false,
    }
}

/// An ICMP or ICMPv6 error (pf_icmp_mapping's `state_icmp`): pf makes
/// no state for it, whatever the rule says.
pub(super) fn icmp_error(pd: &Pd) -> bool {
    match (pd.proto, pd.af) {
        _ if pd.frag => false,
        (PROTO_ICMP, Af::Inet) => icmp_mapping(pd.icmp_type).0,
        (PROTO_ICMPV6, Af::Inet6) => icmp6_mapping(pd.icmp_type).0,
        _ => false,
    }
}

/// The state key of a new IPv6 state (NDP keyed by its target).
pub(super) fn state_key6(pd: &Pd, data: &[u8], dir: Direction) -> StateKey {
    new_state_key(pd, data, dir)
}

/// `block return…` for an IPv6 packet: pf_test_rule sends a RST for TCP
/// (`return`, `return-rst`), else `return-icmp6`'s unreachable (port
/// unreachable for `return`), never about an ICMPv6 error or redirect,
/// and not when the packet's transport checksum is wrong (`proto-cksum`).
pub(super) fn send_return6(
    cx: &Cx,
    how: BlockAction,
    pd: &Pd,
    pkt: &PacketBuf,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) {
    let data = pkt.data();
    let (src, dst) = (pd.src.v6(), pd.dst.v6());
    let l4 = &data[pd.hlen()..pd.tot_len()];
    let port_unr = icmpv6::DstUnreachable::PortUnreachable as u8;
    let (rst, code, hlim) = match how {
        BlockAction::Drop => return,
        BlockAction::Return => (pd.proto == PROTO_TCP, port_unr, 0),
        BlockAction::ReturnRst { ttl } => (true, 0, ttl),
        BlockAction::ReturnIcmp { code6, .. } => (false, code6, 0),
    };
    if rst {
        if pd.proto != PROTO_TCP || pd.tcp.flags & TH_RST != 0 {
            return;
        }
        if !TcpPacket::new_unchecked(l4).verify_checksum_v6(src, dst) {
            cx.count(Reason::ProtoCksum);
            return;
        }
        let (seq, ack, flags) = rst_numbers(&pd.tcp);
        let hlim = if hlim == 0 { IPV6_DEFHLIM } else { hlim };
        if let Some(p) = build_tcp6(bufs, dst, src, pd.dport, pd.sport, seq, ack, flags, hlim) {
            replies.push(p);
        }
        return;
    }
    if pd.proto == PROTO_ICMPV6 && (pd.icmp_type < t6::ECHO_REQUEST || pd.icmp_type == t6::REDIRECT) {
        return;
    }
    // icmp6_error: never about a multicast destination (RFC 4443 §2.4
    // (e)), nor to an unspecified or multicast source.
    if dst.is_multicast() || src.is_multicast() || src.is_unspecified() {
        return;
    }
    let ck_ok = match pd.proto {
        PROTO_TCP => TcpPacket::new_unchecked(l4).verify_checksum_v6(src, dst),
        PROTO_UDP => UdpPacket::new_unchecked(l4).verify_checksum_v6(src, dst),
        _ => true,
    };
    if !ck_ok {
        cx.count(Reason::ProtoCksum);
        return;
    }
    // The router's own IPv6 address on the interface would be the source
    // (icmp6_reflect); interfaces have none yet, so the error comes from
    // the address the packet was sent to, as the IPv4 path does without
    // an interface address.
    if let Some(p) = build_icmp6_unreach(bufs, dst, src, code, &data[..pd.tot_len()]) {
        replies.push(p);
    }
}

/// pf_send_tcp for IPv6: a TCP segment without payload.
#[allow(clippy::too_many_arguments)]
pub fn build_tcp6(
    bufs: &mut dyn BufferSource,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    hlim: u8,
) -> Option<PacketBuf> {
    build_tcp6_opts(bufs, src, dst, &Seg6 { sport, dport, seq, ack, flags, win: 0 }, hlim, None)
}

/// The TCP fields of a segment pf sends over IPv6.
pub(super) struct Seg6 {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
}

/// `build_tcp6` with a window and an MSS option (pf_send_tcp's `win`,
/// `mss`: the SYN proxy's segments).
pub(super) fn build_tcp6_opts(
    bufs: &mut dyn BufferSource,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    s: &Seg6,
    hlim: u8,
    mss: Option<u16>,
) -> Option<PacketBuf> {
    let tr = TcpRepr {
        src_port: s.sport,
        dst_port: s.dport,
        seq: s.seq,
        ack: s.ack,
        flags: TcpFlags::from_bits(s.flags),
        window: s.win,
        max_seg_size: mss,
        window_scale: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload_len: 0,
    };
    let ir = Ipv6Repr {
        src,
        dst,
        next_header: IpProtocol::TCP,
        hop_limit: hlim,
        traffic_class: 0,
        flow_label: 0,
        payload_len: tr.buffer_len(),
    };
    let mut p = bufs.alloc()?;
    if p.rewind(ir.buffer_len()).is_err() {
        bufs.free(p);
        return None;
    }
    let d = p.data_mut();
    let h = ir.header_len();
    ir.emit(&mut d[..h]);
    tr.emit_with_payload_v6(&mut d[h..], src, dst, &[]);
    p.meta.flags |= mflags::PF_GENERATED;
    Some(p)
}

/// pf_send_icmp for IPv6 (icmp6_error): a destination unreachable with
/// code `code`, quoting as much of `orig` as fits in the minimum MTU.
pub fn build_icmp6_unreach(
    bufs: &mut dyn BufferSource,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    code: u8,
    orig: &[u8],
) -> Option<PacketBuf> {
    let code = icmpv6::DstUnreachable::from_code(code)?;
    let er = Icmpv6Repr::DstUnreachable { code, data: icmpv6::error_quote(orig) };
    let ir = Ipv6Repr {
        src,
        dst,
        next_header: IpProtocol::ICMPV6,
        hop_limit: IPV6_DEFHLIM,
        traffic_class: 0,
        flow_label: 0,
        payload_len: er.buffer_len(),
    };
    let mut p = bufs.alloc()?;
    if p.rewind(ir.buffer_len()).is_err() {
        bufs.free(p);
        return None;
    }
    let d = p.data_mut();
    let h = ir.header_len();
    ir.emit(&mut d[..h]);
    er.emit(src, dst, &mut d[h..]);
    p.meta.flags |= mflags::PF_GENERATED;
    Some(p)
}
