//! `netstat -rn` output, after OpenBSD's (sbin/route/show.c, which
//! netstat shares): an `Internet:` and an `Internet6:` section.

use super::family::is_scoped6;
use super::{Route, Route6, RouteFlags};
use crate::iface::{IfIndex, WeakIf};
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Which sections `netstat -rn` prints (`-f inet`, `-f inet6`, or both).
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub enum Families {
    #[default]
    Both,
    Inet,
    Inet6,
}

/// show.c's WID_DST / WID_GW for AF_INET6: a full address plus "/128".
const WID_DST6: usize = 43;
const WID_GW6: usize = 39;

/// An IPv6 address as show.c's routename6 prints it with -n: scoped
/// (link-local) addresses with `%` and their interface.
fn routename6(a: Ipv6Addr, scope: &str) -> String {
    if is_scoped6(a) {
        format!("{a}%{scope}")
    } else {
        a.to_string()
    }
}

/// An IPv6 destination as show.c names it: a host route's address,
/// `default` for ::/0, else `ADDR/LEN`; scoped ones with `%IF`
/// (`fe80::%em0/64`). `scope` is the route's interface name.
pub fn netname6(dest: Ipv6Addr, prefix_len: u8, flags: RouteFlags, scope: &str) -> String {
    if flags.contains(RouteFlags::HOST) {
        routename6(dest, scope)
    } else if prefix_len == 0 && dest.is_unspecified() {
        "default".to_string()
    } else if prefix_len > 16 {
        format!("{}/{prefix_len}", routename6(dest, scope))
    } else {
        // Too short to carry a scope (fe80::/10, ff02::/16).
        format!("{dest}/{prefix_len}")
    }
}

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
/// references held by others (a control request mid-flight, ...; workers
/// see next hops, not routes: `nexthop.rs`).
pub fn format_netstat_rn(routes: &[Arc<Route>], ifname: impl Fn(WeakIf) -> Option<String>, rtable: u16) -> String {
    format_netstat_rn_families(Some(routes), None, ifname, rtable)
}

/// `netstat -rn` with both sections, as OpenBSD: `Internet:` for the IPv4
/// routes given, `Internet6:` for the IPv6 ones. A family given as `None`
/// is not printed (`-f`); the IPv6 section of a table without IPv6
/// routes is left out when both are printed, as show.c prints a family's
/// header with its first route.
pub fn format_netstat_rn_families(
    v4: Option<&[Arc<Route>]>,
    v6: Option<&[Arc<Route6>]>,
    ifname: impl Fn(WeakIf) -> Option<String>,
    rtable: u16,
) -> String {
    let mut out = String::from("Routing tables");
    if rtable != 0 {
        let _ = write!(out, " (rtable {rtable})");
    }
    out.push('\n');
    if let Some(routes) = v4 {
        inet_section(&mut out, routes, &ifname);
    }
    if let Some(routes) = v6.filter(|r| v4.is_none() || !r.is_empty()) {
        inet6_section(&mut out, routes, &ifname);
    }
    out
}

fn iface_name(ifp: WeakIf, ifname: &impl Fn(WeakIf) -> Option<String>) -> Option<String> {
    if ifp.index == IfIndex::NONE {
        None
    } else {
        ifname(ifp)
    }
}

fn mtu_text(mtu: u32) -> String {
    if mtu == 0 {
        "-".to_string()
    } else {
        mtu.to_string()
    }
}

fn inet6_section(out: &mut String, routes: &[Arc<Route6>], ifname: &impl Fn(WeakIf) -> Option<String>) {
    out.push_str("\nInternet6:\n");
    let _ = writeln!(
        out,
        "{:<WID_DST6$} {:<WID_GW6$} {:<6.6} {:>5} {:>5}  {:>4} Iface",
        "Destination", "Gateway", "Flags", "Refs", "Mtu", "Prio"
    );
    for (r, refs) in routes.iter().flat_map(|e| e.hops().iter().map(move |h| (h, Arc::strong_count(e)))) {
        let iface = iface_name(r.ifp, ifname);
        let scope = iface.clone().unwrap_or_else(|| format!("link#{}", r.ifp.index));
        // As OpenBSD: a connected route's gateway is the interface address
        // (rt_ifa_add); a local route shows its link-layer address there,
        // which a route here does not carry: the address it is.
        let gateway = match (r.gateway, r.ifa) {
            (Some(g), _) => routename6(g, &scope),
            (None, Some(a)) => routename6(a, &scope),
            (None, None) => format!("link#{}", r.ifp.index),
        };
        let refs = refs.saturating_sub(2);
        let _ = writeln!(
            out,
            "{:<WID_DST6$} {:<WID_GW6$} {:<6.6} {:>5} {:>5}    {:>2} {}",
            netname6(r.dest, r.prefix_len, r.flags, &scope),
            gateway,
            r.flags.to_string(),
            refs,
            mtu_text(r.mtu),
            r.priority,
            iface.as_deref().unwrap_or("-")
        );
    }
}

fn inet_section(out: &mut String, routes: &[Arc<Route>], ifname: &impl Fn(WeakIf) -> Option<String>) {
    out.push_str("\nInternet:\n");
    let _ = writeln!(
        out,
        "{:<18} {:<18} {:<6.6} {:>5} {:>5}  {:>4} Iface",
        "Destination", "Gateway", "Flags", "Refs", "Mtu", "Prio"
    );
    for (r, refs) in routes.iter().flat_map(|e| e.hops().iter().map(move |h| (h, Arc::strong_count(e)))) {
        let mtu = mtu_text(r.mtu);
        let iface = iface_name(r.ifp, ifname);
        let refs = refs.saturating_sub(2);
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
}
