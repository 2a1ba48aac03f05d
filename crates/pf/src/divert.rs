//! pf and local sockets: `divert-to` (pf.c's pf_test marks the packet
//! PF_TAG_DIVERTED; the stack delivers it locally, to the connection with
//! its 4-tuple or to the socket listening on the divert address), and
//! `user` / `group` (pf_socket_lookup: the owner of the socket a packet
//! belongs to).
//!
//! A state made by a diverting rule carries `srcflags::DIVERTED`, so
//! that every inbound packet of it is diverted too (pf_test diverts by
//! `st->rule.ptr`), also after a ruleset reload; the divert address,
//! needed only until the handshake is done (TCP) or for each datagram
//! (UDP: udp_input's in_pcblookup_listen), is read from the state's rule.
//! Such a state's mirrored timeout has its top bit set (`state::bind_word`),
//! so no lock-free path passes its packets: the locked one marks them.
//!
//! A rule without state diverts each packet it passes; the packet names
//! that rule in the high half of its link (`rule_link`, the low half, the
//! inbound state, being 0), where `divert_to` finds the address.
//!
//! `divert-packet port N` (divert(4) sockets, pf_test's divert_packet)
//! hands the packet to the stack's divert socket on port N instead of on
//! its way, in either direction: the rule's passing packets, and every
//! packet of a state it made, both ways (pf_test diverts by
//! `st->rule.ptr`), also after a reload. Such a state keeps the port
//! (`StateCold::divert_port`) and is `sflags::ROUTED`, so every path that
//! passes its packets asks `packet_port`; the decision goes to the stack
//! as `RouteDecision::DivertPacket` (`softnet_core::sock::divsock`).

use crate::eval::{Cx, Pd};
use crate::model::{Rule, StateMode};
use crate::rule_opts::{Divert, ID_UNKNOWN};
use softnet_core::filter::Direction;
use softnet_core::packet::PacketMeta;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// pf_socket_lookup's question to the stack: the (uid, gid) owning the TCP
/// (`true`) or UDP socket with this local and remote address, `None`
/// when no socket has them.
pub type SocketLookup = Arc<dyn Fn(bool, SocketAddr, SocketAddr) -> Option<(u32, u32)> + Send + Sync>;

/// Whether a rule's passing packets are diverted to a local socket
/// (`divert-to`; `divert-reply` would be too).
#[inline]
pub(crate) fn diverts(r: &Rule) -> bool {
    matches!(r.divert, Some(Divert::To { .. } | Divert::Reply))
}

/// Why a rule's divert option cannot be loaded yet, if it cannot.
pub(crate) fn unsupported(r: &Rule) -> Option<String> {
    let d = r.divert.as_ref()?;
    let sockets = matches!(r.proto, Some(crate::eval::PROTO_TCP | crate::eval::PROTO_UDP));
    match d {
        // Only TCP and UDP sockets take diverted packets: another
        // protocol's would reach the router's own ICMP or be refused.
        Divert::To { .. } | Divert::Reply if !sockets => {
            Some(format!("{} for protocols other than tcp and udp", d.keyword()))
        }
        // A `pass out … divert-reply` rule's replies come in; without a
        // state nothing diverts them (pf_test marks them by the state's
        // rule).
        Divert::Reply if r.keep_state == StateMode::NoState => Some("divert-reply with no state".into()),
        Divert::To { .. } | Divert::Reply => None,
        // The packet changes family before pf_test would divert it.
        Divert::Packet { .. } if r.translation.af_to.is_some() => Some("divert-packet with af-to".into()),
        Divert::Packet { .. } => None,
    }
}

/// The divert port of a `divert-packet` rule.
#[inline]
pub(crate) fn packet_port(r: &Rule) -> Option<u16> {
    match r.divert {
        Some(Divert::Packet { port }) => Some(port),
        _ => None,
    }
}

/// The high half of an inbound packet's link that names the `divert-to`
/// rule (flat index `nr`) that passed it without a state, in ruleset
/// generation `gen`: (gen's low 12 bits, nr + 1), 0 when `nr` does not
/// fit (the packet then finds no divert address and is refused).
#[cold]
pub(crate) fn rule_link(gen: u32, nr: u32) -> u64 {
    if nr >= RULE_LINK_MAX {
        return 0;
    }
    ((((gen & 0xfff) << 20) | (nr + 1)) as u64) << 32
}

/// Rules `rule_link` can name (20 bits of the flat index, 0 none).
const RULE_LINK_MAX: u32 = (1 << 20) - 1;

/// pf_socket_lookup: (uid, gid) of the socket the TCP or UDP packet
/// belongs to, the stack's end being the destination of a packet coming
/// in and the source of one going out; (`ID_UNKNOWN`, `ID_UNKNOWN`) when
/// there is none (a forwarded packet) or no lookup is installed.
pub(crate) fn socket_owner(cx: &Cx, pd: &Pd) -> (u32, u32) {
    const UNKNOWN: (u32, u32) = (ID_UNKNOWN, ID_UNKNOWN);
    let tcp = match pd.proto {
        crate::eval::PROTO_TCP => true,
        crate::eval::PROTO_UDP => false,
        _ => return UNKNOWN,
    };
    let Some(f) = cx.pf.socket_lookup.load_full() else { return UNKNOWN };
    let (src, dst): (IpAddr, IpAddr) = match pd.af {
        crate::addr::Af::Inet => (pd.src4().into(), pd.dst4().into()),
        crate::addr::Af::Inet6 => (pd.src.v6().into(), pd.dst.v6().into()),
    };
    let (s, d) = (SocketAddr::new(src, pd.sport), SocketAddr::new(dst, pd.dport));
    let (local, remote) = if cx.dir == Direction::In { (d, s) } else { (s, d) };
    f(tcp, local, remote).unwrap_or(UNKNOWN)
}

/// The divert address of a packet pf in diverted: the `divert-to` of the
/// rule that made the inbound state it matched (the low half of
/// `pf_link`), or of the rule that passed it without a state (the high
/// half, `rule_link`). `None` for `divert-reply`, or when the state or
/// its rule is gone (a reload between a SYN and the ACK that completes its
/// handshake, or between pf in and the delivery).
pub(crate) fn divert_to(pf: &crate::filter::PfInner, meta: &PacketMeta) -> Option<SocketAddr> {
    let rs = pf.ruleset.load();
    let rule = match (meta.pf_link as u32).checked_sub(1) {
        Some(slot) => {
            let st = pf.states.get(slot)?;
            &rs.state_rule(st.ruleset_gen, st.rule_nr)?.rule
        }
        None => {
            let w = (meta.pf_link >> 32) as u32;
            let nr = (w & RULE_LINK_MAX).checked_sub(1)?;
            if w >> 20 != rs.gen & 0xfff {
                return None;
            }
            &rs.rules.get(nr as usize)?.rule
        }
    };
    match rule.divert {
        Some(Divert::To { addr, port }) => Some(SocketAddr::new(addr, port)),
        _ => None,
    }
}
