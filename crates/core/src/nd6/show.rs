//! `ndp -an` as OpenBSD's ndp(8) prints it (usr.sbin/ndp/ndp.c `dump`).

use super::{NdEntry, NdEntryKind};
use crate::arp::sec2str;
use crate::iface::IfIndex;
use crate::time::Instant;
use softnet_wire::ipv6::Ipv6AddrExt;
use std::fmt::Write as _;

/// Column widths of ndp(8).
const W_ADDR: usize = 36;
const W_LL: usize = 17;
const W_IF: usize = 7;

/// How ndp(8) names a neighbor: a link-local address with its scope
/// (`fe80::1%em0`, getnameinfo's form).
pub fn neighbor_name(e: &NdEntry, ifname: &str) -> String {
    if e.addr.is_link_local_unicast() {
        format!("{}%{ifname}", e.addr)
    } else {
        e.addr.to_string()
    }
}

/// `ndp -an`: Neighbor, Linklayer Address, Netif, Expire, S(tate), Flags
/// (`l` local, `R` router, `p` proxy), then the solicitations sent in the
/// current round when there are any.
pub fn format_ndp_an(entries: &[NdEntry], ifname: impl Fn(IfIndex) -> Option<String>, now: Instant) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<W_ADDR$} {:<W_LL$} {:>W_IF$} {:<9} {:1} {:>5}",
        "Neighbor", "Linklayer Address", "Netif", "Expire", "S", "Flags"
    );
    for e in entries {
        let ifn = ifname(e.ifindex).unwrap_or_else(|| "?".to_string());
        let host = neighbor_name(e, &ifn);
        let ll = match e.mac {
            Some(m) => m.to_string(),
            None => "(incomplete)".to_string(),
        };
        let aw = host.len().max(W_ADDR);
        let lw = ll.len().max((W_ADDR + W_LL).saturating_sub(aw));
        let iw = ifn.len().max((W_ADDR + W_LL + W_IF).saturating_sub(aw + lw));
        let expire = match e.expire {
            None => "permanent".to_string(),
            Some(t) if t > now => sec2str((t - now).as_secs()),
            Some(_) => "expired".to_string(),
        };
        let expire: String = expire.chars().take(9).collect();
        let _ = write!(
            o,
            "{host:<aw$} {ll:<lw$} {ifn:>iw$} {expire:<9} {} {}{}{}",
            e.state.letter(),
            if e.kind == NdEntryKind::Local { "l" } else { "" },
            if e.router { "R" } else { "" },
            if e.proxy { "p" } else { "" },
        );
        if e.asked > 0 {
            let _ = write!(o, " {}", e.asked);
        }
        o.push('\n');
    }
    o
}
