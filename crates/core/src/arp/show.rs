//! `arp -an` as OpenBSD's arp(8) prints the table (usr.sbin/arp/arp.c),
//! and its expiry times, which ndp(8) prints alike.

use super::{ArpEntry, ArpEntryKind};
use crate::iface::IfIndex;
use crate::time::Instant;
use std::fmt::Write as _;

/// Column widths of arp(8).
const W_ADDR: usize = 36;
const W_LL: usize = 17;
const W_IF: usize = 7;

/// OpenBSD arp(8)'s and ndp(8)'s "19m59s".
pub(crate) fn sec2str(total: u64) -> String {
    let (days, hours, mins, secs) = (total / 86400, (total / 3600) % 24, (total / 60) % 60, total % 60);
    let mut s = String::new();
    let mut first = true;
    if days != 0 {
        first = false;
        let _ = write!(s, "{days}d");
    }
    if !first || hours != 0 {
        first = false;
        let _ = write!(s, "{hours}h");
    }
    if !first || mins != 0 {
        let _ = write!(s, "{mins}m");
    }
    let _ = write!(s, "{secs}s");
    s
}

fn trunc(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `arp -an` as OpenBSD prints it: Host, Ethernet Address, Netif, Expire,
/// Flags (`l` local, `p` published).
pub fn format_arp_an(entries: &[ArpEntry], ifname: impl Fn(IfIndex) -> Option<String>, now: Instant) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<W_ADDR$} {:<W_LL$} {:>W_IF$} {:<9} {:>5}",
        "Host", "Ethernet Address", "Netif", "Expire", "Flags"
    );
    for e in entries {
        let host = e.ip.to_string();
        let ll = match e.mac {
            Some(m) => m.to_string(),
            None => "(incomplete)".to_string(),
        };
        let ifn = ifname(e.ifindex).unwrap_or_else(|| "?".to_string());
        let aw = host.len().max(W_ADDR);
        let lw = ll.len().max((W_ADDR + W_LL).saturating_sub(aw));
        let iw = ifn.len().max((W_ADDR + W_LL + W_IF).saturating_sub(aw + lw));
        let expire = match e.kind {
            ArpEntryKind::Permanent | ArpEntryKind::Local => "permanent".to_string(),
            ArpEntryKind::Static => "static".to_string(),
            ArpEntryKind::Dynamic | ArpEntryKind::Incomplete => {
                // An incomplete entry's time is its rejection (if any).
                match e.expire.or(e.rejected_until) {
                    Some(t) if t > now => sec2str((t - now).as_secs()),
                    _ => "expired".to_string(),
                }
            }
        };
        let _ = writeln!(
            o,
            "{:<aw$} {:<lw$} {:>iw$} {:<9} {}{}",
            host,
            ll,
            ifn,
            trunc(&expire, 9),
            if e.kind == ArpEntryKind::Local { "l" } else { "" },
            if e.published { "p" } else { "" },
        );
    }
    o
}
