//! pf and local sockets: `divert-to` (pf.c's pf_test marks the packet
//! PF_TAG_DIVERTED; the stack delivers it locally, to the connection with
//! its 4-tuple or to the socket listening on the divert address), and
//! `user` / `group` (pf_socket_lookup: the owner of the socket a packet
//! belongs to).
//!
//! A state made by a diverting rule carries `srcflags::DIVERTED`, so
//! that every inbound packet of it is diverted too (pf_test diverts by
//! `st->rule.ptr`), also after a ruleset reload; the divert address,
//! needed only until the handshake is done, is read from the state's rule.
//! `divert-reply` (a socket bound to a foreign address, SO_BINDANY) and
//! `divert-packet` (divert(4) sockets) are refused at load: the socket
//! API has neither.

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
    match d {
        Divert::To { .. } => {
            if r.proto != Some(crate::eval::PROTO_TCP) {
                // A UDP state's packets pass lock-free, without the flag.
                Some("divert-to for protocols other than tcp".into())
            } else if r.keep_state == StateMode::NoState {
                Some("divert-to with no state".into())
            } else {
                None
            }
        }
        Divert::Reply | Divert::Packet { .. } => Some(d.keyword().into()),
    }
}

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
/// `pf_link`). `None` when the state or its rule is gone (a reload
/// between a SYN and the ACK that completes its handshake).
pub(crate) fn divert_to(pf: &crate::filter::PfInner, meta: &PacketMeta) -> Option<SocketAddr> {
    let slot = (meta.pf_link as u32).checked_sub(1)?;
    let st = pf.states.get(slot)?;
    let rs = pf.ruleset.load();
    match rs.state_rule(st.ruleset_gen, st.rule_nr)?.rule.divert {
        Some(Divert::To { addr, port }) => Some(SocketAddr::new(addr, port)),
        _ => None,
    }
}
