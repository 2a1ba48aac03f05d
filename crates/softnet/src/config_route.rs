//! The `[[route]]` tables of the configuration: static routes of either
//! family (route(8)'s `add`), each with one target (gateway, interface,
//! reject or blackhole) and an rtable; an IPv6 one when its destination or
//! gateway is IPv6.

use crate::config::{parse_prefix, ConfigError, Ctx, InterfaceConf};
use serde::Deserialize;
use softnet_core::stack::RouteTarget6;
use std::net::{Ipv4Addr, Ipv6Addr};
use toml::Spanned;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    dest: Spanned<String>,
    gateway: Option<Spanned<String>>,
    interface: Option<Spanned<String>>,
    reject: Option<bool>,
    blackhole: Option<bool>,
    rtable: Option<Spanned<i64>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteVia {
    Gateway(Ipv4Addr),
    Interface(String),
    Reject,
    Blackhole,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConf {
    pub rtable: u16,
    pub dest: Ipv4Addr,
    pub prefix_len: u8,
    pub via: RouteVia,
}

/// A static IPv6 route (`[[route]]` with an IPv6 destination or gateway,
/// e.g. `dest = "::/0"`, `gateway = "fe80::1%sn-r0"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route6Conf {
    pub rtable: u16,
    pub dest: Ipv6Addr,
    pub prefix_len: u8,
    /// The interface of a scoped destination (`fe80::%sn-r0/64`).
    pub scope: Option<String>,
    pub via: RouteTarget6,
}

/// Every `[[route]]`, IPv4's and IPv6's, in the order given; a route given
/// twice (same rtable, destination and length, and scope) is an error.
pub(crate) fn routes_conf(
    cx: &Ctx,
    raw: &[Spanned<RawRoute>],
    interfaces: &[InterfaceConf],
) -> Result<(Vec<RouteConf>, Vec<Route6Conf>), ConfigError> {
    let mut routes: Vec<RouteConf> = Vec::new();
    let mut routes6: Vec<Route6Conf> = Vec::new();
    for rr in raw {
        let r = rr.get_ref();
        let v6 = r.dest.get_ref().contains(':')
            || (r.dest.get_ref() == "default" && r.gateway.as_ref().is_some_and(|g| g.get_ref().contains(':')));
        let twice = if v6 {
            let rc = route6_conf(cx, rr, interfaces)?;
            let twice = routes6.iter().any(|x| {
                x.rtable == rc.rtable && x.dest == rc.dest && x.prefix_len == rc.prefix_len && x.scope == rc.scope
            });
            routes6.push(rc);
            twice
        } else {
            let rc = route_conf(cx, rr, interfaces)?;
            let twice =
                routes.iter().any(|x| x.rtable == rc.rtable && x.dest == rc.dest && x.prefix_len == rc.prefix_len);
            routes.push(rc);
            twice
        };
        if twice {
            return cx.err(r.dest.span(), format!("route: {} defined twice", r.dest.get_ref()));
        }
    }
    Ok((routes, routes6))
}

/// A route's `rtable` (0 when not given), 0 to 255.
fn rtable(cx: &Ctx, r: &RawRoute) -> Result<u16, ConfigError> {
    match &r.rtable {
        None => Ok(0),
        Some(t) if (0..=255).contains(t.get_ref()) => Ok(*t.get_ref() as u16),
        Some(t) => cx.err(t.span(), format!("route: rtable {} out of range 0-255", t.get_ref())),
    }
}

/// Exactly one of gateway, interface, reject, blackhole.
fn one_target(cx: &Ctx, rr: &Spanned<RawRoute>) -> Result<(), ConfigError> {
    let r = rr.get_ref();
    let targets = r.gateway.is_some() as u8
        + r.interface.is_some() as u8
        + r.reject.unwrap_or(false) as u8
        + r.blackhole.unwrap_or(false) as u8;
    if targets != 1 {
        return cx.err(rr.span(), "route: give exactly one of gateway, interface, reject = true, blackhole = true");
    }
    Ok(())
}

/// The `interface` target's name, one of the configured interfaces.
fn target_interface(cx: &Ctx, i: &Spanned<String>, interfaces: &[InterfaceConf]) -> Result<String, ConfigError> {
    if !interfaces.iter().any(|x| &x.name == i.get_ref()) {
        return cx.err(i.span(), format!("route: unknown interface {:?}", i.get_ref()));
    }
    Ok(i.get_ref().clone())
}

/// A `[[route]]` for IPv4: `dest` "a.b.c.d/len" or "default", and one of
/// gateway (on a connected network, as route(8) wants it), interface,
/// reject, blackhole. The destination is masked to its length.
fn route_conf(cx: &Ctx, rr: &Spanned<RawRoute>, interfaces: &[InterfaceConf]) -> Result<RouteConf, ConfigError> {
    let r = rr.get_ref();
    let (dest, prefix_len) = if r.dest.get_ref() == "default" {
        (Ipv4Addr::UNSPECIFIED, 0)
    } else {
        parse_prefix(r.dest.get_ref()).or_else(|e| cx.err(r.dest.span(), format!("route: {e}")))?
    };
    let rtable = rtable(cx, r)?;
    one_target(cx, rr)?;
    let via = if let Some(g) = &r.gateway {
        let gw: Ipv4Addr =
            g.get_ref().parse().or_else(|_| cx.err(g.span(), format!("route: bad gateway {:?}", g.get_ref())))?;
        // route(8) accepts only a gateway on a connected network.
        if !interfaces.iter().any(|i| i.addrs.iter().any(|a| a.contains(gw))) {
            return cx.err(g.span(), format!("route: gateway {gw} is not on a network of any interface"));
        }
        RouteVia::Gateway(gw)
    } else if let Some(i) = &r.interface {
        RouteVia::Interface(target_interface(cx, i, interfaces)?)
    } else if r.reject == Some(true) {
        RouteVia::Reject
    } else {
        RouteVia::Blackhole
    };
    let dest = Ipv4Addr::from(u32::from(dest) & softnet_core::iface::prefix_mask(prefix_len));
    Ok(RouteConf { rtable, dest, prefix_len, via })
}

/// `ADDR[%IF]`, the interface a configured one.
fn scoped6(s: &str, interfaces: &[InterfaceConf]) -> Result<(Ipv6Addr, Option<String>), String> {
    let (a, scope) = match s.split_once('%') {
        Some((a, i)) if interfaces.iter().any(|x| x.name == i) => (a, Some(i.to_string())),
        Some((_, i)) => return Err(format!("unknown interface {i:?} in {s:?}")),
        None => (s, None),
    };
    let ip: Ipv6Addr = a.parse().map_err(|_| format!("bad IPv6 address {a:?}"))?;
    Ok((ip, scope))
}

/// A `[[route]]` for IPv6: `dest` "ADDR[%IF]/LEN" ("::/0" or "default"
/// with an IPv6 gateway), and one of gateway ("ADDR" or "fe80::1%IF"),
/// interface, reject, blackhole. Whether a gateway is on a connected
/// network is for the stack to say when the route is added.
fn route6_conf(cx: &Ctx, rr: &Spanned<RawRoute>, interfaces: &[InterfaceConf]) -> Result<Route6Conf, ConfigError> {
    let r = rr.get_ref();
    let (dest, prefix_len, scope) = if r.dest.get_ref() == "default" {
        (Ipv6Addr::UNSPECIFIED, 0, None)
    } else {
        let d = r.dest.get_ref();
        let (a, len) = match d.split_once('/') {
            Some((a, l)) => match l.parse::<u8>() {
                Ok(l) if l <= 128 => (a, l),
                _ => return cx.err(r.dest.span(), format!("route: prefix length {l:?} over 128 in {d:?}")),
            },
            None => (d.as_str(), 128),
        };
        let (ip, scope) = scoped6(a, interfaces).or_else(|e| cx.err(r.dest.span(), format!("route: {e}")))?;
        (Ipv6Addr::from(u128::from(ip) & softnet_core::route::prefix_mask6(len)), len, scope)
    };
    let rtable = rtable(cx, r)?;
    one_target(cx, rr)?;
    let via = if let Some(g) = &r.gateway {
        let (gw, gscope) = scoped6(g.get_ref(), interfaces)
            .or_else(|e| cx.err(g.span(), format!("route: bad gateway {:?}: {e}", g.get_ref())))?;
        if softnet_core::route::is_scoped6(gw) && gscope.is_none() {
            return cx.err(g.span(), format!("route: link-local gateway {gw} needs its interface ({gw}%IF)"));
        }
        RouteTarget6::Gateway(gw, gscope)
    } else if let Some(i) = &r.interface {
        RouteTarget6::Interface(target_interface(cx, i, interfaces)?)
    } else if r.reject == Some(true) {
        RouteTarget6::Reject
    } else {
        RouteTarget6::Blackhole
    };
    Ok(Route6Conf { rtable, dest, prefix_len, scope, via })
}
