//! `netstat -rn` output, after OpenBSD's.

use super::{Route, RouteFlags};
use crate::iface::{IfIndex, WeakIf};
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// A destination as netstat names it: `default`, a host route's full
/// address, else the network with as many octets as the prefix reaches
/// (`10/8`, `10.0.1/24`, `10.0.1.128/25`).
pub fn netname(dest: Ipv4Addr, prefix_len: u8, flags: RouteFlags) -> String {
    let o = dest.octets();
    if flags.contains(RouteFlags::HOST) {
        dest.to_string()
    } else if u32::from(dest) == 0 && prefix_len == 0 {
        "default".to_string()
    } else if prefix_len <= 8 {
        format!("{}/{}", o[0], prefix_len)
    } else if prefix_len <= 16 {
        format!("{}.{}/{}", o[0], o[1], prefix_len)
    } else if prefix_len <= 24 {
        format!("{}.{}.{}/{}", o[0], o[1], o[2], prefix_len)
    } else {
        format!("{dest}/{prefix_len}")
    }
}

fn gateway_name(r: &Route) -> String {
    match (r.gateway, r.ifa) {
        (Some(g), _) => g.to_string(),
        // Connected routes name the link; OpenBSD shows a MAC address for
        // local routes, which a route here does not carry: the address it is.
        (None, Some(a)) if !r.flags.contains(RouteFlags::CONNECTED) => a.to_string(),
        _ => format!("link#{}", r.ifp.index),
    }
}

/// The routing table as OpenBSD's `netstat -rn` prints it, routes in the
/// order given (`RouteTables::routes` gives netstat's order).
///
/// Columns differ from OpenBSD's in one way: there is no `Use` column.
/// Counting packets per route would put a shared write on every forwarded
/// packet, so routes carry no use counter. `Refs` is the number of strong
/// references to the route beyond the table's own and the one in `routes`:
/// references held by others (workers mid-batch, pending transmissions, ...).
pub fn format_netstat_rn(routes: &[Arc<Route>], ifname: impl Fn(WeakIf) -> Option<String>, rtable: u16) -> String {
    let mut out = String::from("Routing tables");
    if rtable != 0 {
        let _ = write!(out, " (rtable {rtable})");
    }
    out.push_str("\n\nInternet:\n");
    let _ = writeln!(
        out,
        "{:<18} {:<18} {:<6.6} {:>5} {:>5}  {:>4} Iface",
        "Destination", "Gateway", "Flags", "Refs", "Mtu", "Prio"
    );
    for r in routes {
        let mtu = if r.mtu == 0 { "-".to_string() } else { r.mtu.to_string() };
        let iface = if r.ifp.index == IfIndex::NONE { None } else { ifname(r.ifp) };
        let refs = Arc::strong_count(r).saturating_sub(2);
        let _ = writeln!(
            out,
            "{:<18} {:<18} {:<6.6} {:>5} {:>5}    {:>2} {}",
            netname(r.dest, r.prefix_len, r.flags),
            gateway_name(r),
            r.flags.to_string(),
            refs,
            mtu,
            r.priority,
            iface.as_deref().unwrap_or("-")
        );
    }
    out
}
