//! The admin commands' client side: BSD argument syntax parsed into typed
//! requests (route(8), arp(8), ifconfig(8), netstat(1)), sent to the daemon
//! over the control socket, and the answer printed.
//!
//! Parsing validates everything it can, so that a typo is a usage message
//! here and never a request the daemon has to second-guess.

use crate::config::{parse_mac, DEFAULT_CONTROL};
mod route6;

use crate::proto::{
    self, AddrFamily, ArpLifetime, ArpOp, FrameError, IfAction, IfconfigOp, InetAddr, NetstatOp, Request, Response,
    RouteDest, RouteGateway, RouteOp, RouteSpec, SockProto,
};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The admin tools, as `softnet TOOL ...`.
pub const TOOLS: &[&str] = &["route", "arp", "ndp", "ifconfig", "netstat", "rad"];

const ROUTE_USAGE: &str = "usage: softnet route [-nqv] [-T rtable] command [[modifiers] args]
commands: show [-inet | -inet6]
          add [-net | -host] destination gateway [-reject | -blackhole]
          add [-net | -host] destination -reject | -blackhole | -ifp interface
          add [-net | -host] destination interface -iface
          change (as add)
          delete [-net | -host] destination [gateway]
          get [-net | -host] destination
          monitor
destination: default | a.b.c.d | a.b.c.d/len | a.b.c.d -netmask m.m.m.m
IPv6 (-inet6): default | addr[%if] | addr[%if]/len | addr[%if] -prefixlen len;
          gateway addr or fe80::...%if (a link-local gateway names its interface)";
const ARP_USAGE: &str = "usage: softnet arp [-n] hostname
       softnet arp -a [-n]
       softnet arp -d hostname
       softnet arp -d -a
       softnet arp -s hostname ether_addr [temp | permanent] [pub]";
const IFCONFIG_USAGE: &str = "usage: softnet ifconfig [-a]
       softnet ifconfig interface
       softnet ifconfig interface [inet] address/len [delete | -alias] [up | down]
       softnet ifconfig interface inet6 address[/len] [prefixlen n] [delete | -alias]
       softnet ifconfig interface [inet] address netmask mask
       softnet ifconfig interface up | down | destroy
       softnet ifconfig interface group name | -group name";
const RAD_USAGE: &str = "usage: softnet rad";
const NETSTAT_USAGE: &str = "usage: softnet netstat [-an] [-f inet | inet6] [-p tcp | udp]
       softnet netstat -r [-n] [-f inet | inet6] [-T rtable]
       softnet netstat -s
       softnet netstat -i [-n]";

/// A command line that does not parse: what is wrong and the usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    pub tool: String,
    pub msg: Option<String>,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(m) = &self.msg {
            writeln!(f, "softnet {}: {m}", self.tool)?;
        }
        f.write_str(usage_of(&self.tool))
    }
}

fn usage_of(tool: &str) -> &'static str {
    match tool {
        "route" => ROUTE_USAGE,
        "arp" => ARP_USAGE,
        "ifconfig" => IFCONFIG_USAGE,
        "ndp" => crate::inet6cmd::NDP_USAGE,
        "rad" => RAD_USAGE,
        _ => NETSTAT_USAGE,
    }
}

pub(crate) fn usage<T>(tool: &str, msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError { tool: tool.to_string(), msg: Some(msg.into()) })
}

/// A parsed admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub request: Request,
    /// `route -q`: print nothing on success.
    pub quiet: bool,
}

/// Parses `softnet TOOL ARGS...`.
pub fn parse(tool: &str, args: &[String]) -> Result<Parsed, UsageError> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match tool {
        "route" => parse_route(&args),
        "arp" => parse_arp(&args).map(|r| Parsed { request: r, quiet: false }),
        "ndp" => crate::inet6cmd::parse_ndp(&args).map(|r| Parsed { request: r, quiet: false }),
        "ifconfig" => parse_ifconfig(&args).map(|r| Parsed { request: r, quiet: false }),
        "netstat" => parse_netstat(&args).map(|r| Parsed { request: r, quiet: false }),
        "rad" if args.is_empty() => Ok(Parsed { request: Request::Rad, quiet: false }),
        "rad" => usage("rad", format!("unexpected {}", args[0])),
        _ => usage(tool, format!("unknown command {tool}")),
    }
}

// ---- route(8) ---------------------------------------------------------------

fn parse_rtable(tool: &str, s: Option<&&str>) -> Result<u16, UsageError> {
    match s.map(|s| s.parse::<u16>()) {
        Some(Ok(t)) if t <= 255 => Ok(t),
        Some(_) => usage(tool, format!("rtable {}: expected 0 to 255", s.unwrap())),
        None => usage(tool, "-T needs a routing table id"),
    }
}

/// `a.b.c.d`, or a network with fewer octets and a length (`10/8`,
/// `192.0.2/24`), as netstat prints them.
fn parse_net(s: &str) -> Option<(Ipv4Addr, Option<u8>)> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok().filter(|l| *l <= 32)?)),
        None => (s, None),
    };
    let parts: Vec<&str> = a.split('.').collect();
    if parts.is_empty() || parts.len() > 4 || (parts.len() < 4 && len.is_none()) {
        return None;
    }
    let mut o = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        o[i] = p.parse().ok()?;
    }
    Some((Ipv4Addr::from(o), len))
}

fn mask_len(m: Ipv4Addr) -> Option<u8> {
    let v = u32::from(m);
    let len = v.leading_ones();
    (v.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

/// The length `-net a.b.c.d` means without a mask: up to the last
/// non-zero octet, as the classful guess of old route(8) does for the
/// usual cases (10.0.0.0 is /8, 192.168.1.0 is /24).
fn implied_len(a: Ipv4Addr) -> u8 {
    let o = a.octets();
    match o.iter().rposition(|&b| b != 0) {
        None => 0,
        Some(i) => (i as u8 + 1) * 8,
    }
}

fn masked(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let m = if len == 0 { 0 } else { u32::MAX << (32 - len as u32) };
    Ipv4Addr::from(u32::from(a) & m)
}

/// route(8)'s modifiers and words, for either family: `allowed` says
/// which modifiers the command and family take (`-netmask` is IPv4's,
/// `-prefixlen` IPv6's).
#[derive(Default)]
pub(super) struct RouteArgs<'a> {
    pub(super) net: bool,
    pub(super) host: bool,
    pub(super) reject: bool,
    pub(super) blackhole: bool,
    pub(super) iface: bool,
    pub(super) ifp: Option<&'a str>,
    pub(super) netmask: Option<Ipv4Addr>,
    pub(super) prefixlen: Option<u8>,
    pub(super) words: Vec<&'a str>,
}

pub(super) fn route_args<'a>(args: &[&'a str], allowed: &[&str]) -> Result<RouteArgs<'a>, UsageError> {
    let mut r = RouteArgs::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a.starts_with('-') && a.len() > 1 {
            if !allowed.contains(&a) {
                return usage("route", format!("unknown modifier {a}"));
            }
            match a {
                "-net" => r.net = true,
                "-host" => r.host = true,
                "-inet" | "-inet6" | "-static" => {}
                "-reject" => r.reject = true,
                "-blackhole" => r.blackhole = true,
                "-iface" => r.iface = true,
                "-ifp" => {
                    i += 1;
                    r.ifp = Some(args.get(i).copied().ok_or_else(|| UsageError {
                        tool: "route".into(),
                        msg: Some("-ifp needs an interface".into()),
                    })?);
                }
                "-netmask" => {
                    i += 1;
                    let m = args.get(i).and_then(|m| m.parse::<Ipv4Addr>().ok()).filter(|m| mask_len(*m).is_some());
                    r.netmask = Some(m.ok_or_else(|| UsageError {
                        tool: "route".into(),
                        msg: Some("-netmask needs a contiguous mask".into()),
                    })?);
                }
                "-prefixlen" => {
                    i += 1;
                    // route.c's prefixlen(): 0 to 128, else "bad value".
                    match args.get(i).map(|s| (s, s.parse::<u8>())) {
                        Some((_, Ok(l))) if l <= 128 => r.prefixlen = Some(l),
                        Some((s, _)) => return usage("route", format!("{s}: bad value")),
                        None => return usage("route", "-prefixlen needs a length"),
                    }
                }
                _ => unreachable!("every allowed modifier is handled"),
            }
        } else {
            r.words.push(a);
        }
        i += 1;
    }
    if r.net && r.host {
        return usage("route", "-net and -host together");
    }
    Ok(r)
}

fn route_dest(r: &RouteArgs, word: &str) -> Result<RouteDest, UsageError> {
    if word == "default" {
        if r.host || r.netmask.is_some() {
            return usage("route", "default is a network");
        }
        return Ok(RouteDest { addr: Ipv4Addr::UNSPECIFIED, prefix_len: 0 });
    }
    let Some((addr, len)) = parse_net(word) else {
        return usage("route", format!("bad destination {word:?}"));
    };
    let len = match (len, r.netmask) {
        (Some(_), Some(_)) => return usage("route", "a prefix length and -netmask together"),
        (Some(l), None) => l,
        (None, Some(m)) => mask_len(m).expect("checked contiguous"),
        (None, None) if r.net => implied_len(addr),
        (None, None) => 32,
    };
    if r.host && len != 32 {
        return usage("route", format!("-host {word}: a host route is /32"));
    }
    Ok(RouteDest { addr: masked(addr, len), prefix_len: len })
}

const ADD_MODIFIERS: &[&str] =
    &["-net", "-host", "-inet", "-static", "-reject", "-blackhole", "-iface", "-ifp", "-netmask"];
const DEST_MODIFIERS: &[&str] = &["-net", "-host", "-inet", "-netmask"];

fn route_spec(args: &[&str]) -> Result<RouteSpec, UsageError> {
    let r = route_args(args, ADD_MODIFIERS)?;
    if r.reject && r.blackhole {
        return usage("route", "-reject and -blackhole together");
    }
    let (dest, gw) = match r.words.as_slice() {
        [d] => (*d, None),
        [d, g] => (*d, Some(*g)),
        [d, g, m] if r.netmask.is_none() => {
            // Old syntax: `route add -net 10.0.0.0 10.0.0.1 255.0.0.0`.
            let Some(mask) = m.parse::<Ipv4Addr>().ok().filter(|m| mask_len(*m).is_some()) else {
                return usage("route", format!("bad netmask {m:?}"));
            };
            let r2 = RouteArgs { netmask: Some(mask), words: vec![], ..r };
            let dest = route_dest(&r2, d)?;
            return finish_spec(&r2, dest, Some(*g));
        }
        [] => return usage("route", "destination required"),
        _ => return usage("route", format!("too many arguments: {}", r.words.join(" "))),
    };
    let d = route_dest(&r, dest)?;
    finish_spec(&r, d, gw)
}

fn finish_spec(r: &RouteArgs, dest: RouteDest, gw: Option<&str>) -> Result<RouteSpec, UsageError> {
    let gateway = if r.reject {
        RouteGateway::Reject
    } else if r.blackhole {
        RouteGateway::Blackhole
    } else if let Some(ifp) = r.ifp {
        if gw.is_some() {
            return usage("route", "-ifp and a gateway together (give one)");
        }
        check_ifname("route", ifp)?;
        RouteGateway::Interface(ifp.to_string())
    } else if r.iface {
        let Some(g) = gw else {
            return usage("route", "-iface needs an interface name or address");
        };
        if g.parse::<Ipv4Addr>().is_err() {
            check_ifname("route", g)?;
        }
        RouteGateway::Interface(g.to_string())
    } else {
        let Some(g) = gw else {
            return usage("route", "gateway required");
        };
        match g.parse::<Ipv4Addr>() {
            Ok(a) => RouteGateway::Addr(a),
            Err(_) => return usage("route", format!("bad gateway {g:?}")),
        }
    };
    // With -reject/-blackhole a gateway (often 127.0.0.1) may be given and
    // means nothing: such routes go nowhere.
    if matches!(gateway, RouteGateway::Reject | RouteGateway::Blackhole) {
        if let Some(g) = gw {
            if g.parse::<Ipv4Addr>().is_err() {
                return usage("route", format!("bad gateway {g:?}"));
            }
        }
    }
    Ok(RouteSpec { dest, gateway })
}

/// `route delete`'s words after the modifiers, either family: the
/// destination and an optional gateway.
fn delete_words<'a>(words: &[&'a str]) -> Result<(&'a str, Option<&'a str>), UsageError> {
    match words {
        [d] => Ok((d, None)),
        [d, g] => Ok((d, Some(g))),
        [] => usage("route", "destination required"),
        _ => usage("route", format!("too many arguments: {}", words.join(" "))),
    }
}

fn parse_route(args: &[&str]) -> Result<Parsed, UsageError> {
    let mut quiet = false;
    let mut rtable = 0u16;
    let mut rtable_given = false;
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        let a = args[i];
        rtable_given |= a.starts_with("-T");
        if a == "-T" {
            i += 1;
            rtable = parse_rtable("route", args.get(i))?;
        } else if let Some(t) = a.strip_prefix("-T") {
            rtable = parse_rtable("route", Some(&t))?;
        } else {
            for c in a[1..].chars() {
                match c {
                    'n' | 'v' => {}
                    'q' => quiet = true,
                    _ => return usage("route", format!("unknown option -{c}")),
                }
            }
            if a.len() == 1 {
                return usage("route", "unknown option -");
            }
        }
        i += 1;
    }
    let Some(cmd) = args.get(i) else {
        return usage("route", "command required");
    };
    let rest = &args[i + 1..];
    let op = match *cmd {
        "show" => {
            let mut af = AddrFamily::All;
            for a in rest {
                af = match *a {
                    "-inet" => AddrFamily::Inet,
                    "-inet6" => AddrFamily::Inet6,
                    _ => return usage("route", format!("show: unexpected {a}")),
                };
            }
            RouteOp::Show { af }
        }
        "add" | "change" | "delete" | "del" | "get" if route6::is_inet6(rest) => route6::parse(cmd, rest)?,
        "add" => RouteOp::Add(route_spec(rest)?),
        "change" => RouteOp::Change(route_spec(rest)?),
        "delete" | "del" => {
            let r = route_args(rest, DEST_MODIFIERS)?;
            let (d, g) = delete_words(&r.words)?;
            let dest = route_dest(&r, d)?;
            let gateway = match g {
                None => None,
                Some(g) => Some(g.parse::<Ipv4Addr>().or_else(|_| usage("route", format!("bad gateway {g:?}")))?),
            };
            RouteOp::Delete { dest, gateway }
        }
        "get" => {
            let r = route_args(rest, DEST_MODIFIERS)?;
            let [d] = r.words.as_slice() else {
                return usage("route", "get takes one destination");
            };
            let exact = r.net || r.netmask.is_some() || d.contains('/') || *d == "default";
            RouteOp::Get { dest: route_dest(&r, d)?, exact }
        }
        "monitor" => {
            if let Some(a) = rest.iter().find(|a| **a != "-inet") {
                return usage("route", format!("monitor: unexpected {a}"));
            }
            RouteOp::Monitor { table: rtable_given.then_some(rtable) }
        }
        other => return usage("route", format!("unknown command {other}")),
    };
    Ok(Parsed { request: Request::Route { rtable, op }, quiet })
}

// ---- arp(8) -----------------------------------------------------------------

fn parse_host(tool: &str, s: &str) -> Result<Ipv4Addr, UsageError> {
    s.parse::<Ipv4Addr>().or_else(|_| usage(tool, format!("{s}: not an IPv4 address")))
}

fn parse_arp(args: &[&str]) -> Result<Request, UsageError> {
    let (mut a, mut d, mut s) = (false, false, false);
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') && args[i].len() > 1 {
        for c in args[i][1..].chars() {
            match c {
                'a' => a = true,
                'd' => d = true,
                's' => s = true,
                'n' | 'v' => {}
                _ => return usage("arp", format!("unknown option -{c}")),
            }
        }
        i += 1;
    }
    let rest = &args[i..];
    if let Some(x) = rest.iter().find(|x| x.starts_with('-')) {
        return usage("arp", format!("options go before arguments: {x}"));
    }
    match (a, d, s) {
        (true, _, true) | (_, true, true) => usage("arp", "-s with -a or -d"),
        (false, false, true) => {
            let [host, mac, mods @ ..] = rest else {
                return usage("arp", "-s needs a hostname and an ether_addr");
            };
            let host = parse_host("arp", host)?;
            let mac = parse_mac(mac).or_else(|e| usage("arp", e))?.0;
            let (mut lifetime, mut publish, mut seen_life) = (ArpLifetime::Static, false, false);
            for m in mods {
                match *m {
                    "temp" | "permanent" if !seen_life => {
                        lifetime = if *m == "permanent" { ArpLifetime::Permanent } else { ArpLifetime::Temp };
                        seen_life = true;
                    }
                    "pub" if !publish => publish = true,
                    _ => return usage("arp", format!("-s: unexpected {m}")),
                }
            }
            Ok(Request::Arp(ArpOp::Set { host, mac, lifetime, publish }))
        }
        (true, true, false) => match rest {
            [] => Ok(Request::Arp(ArpOp::DeleteAll)),
            _ => usage("arp", "-d -a takes no hostname"),
        },
        (false, true, false) => match rest {
            [h] => Ok(Request::Arp(ArpOp::Delete { host: parse_host("arp", h)? })),
            _ => usage("arp", "-d needs one hostname (or -a)"),
        },
        (true, false, false) => match rest {
            [] => Ok(Request::Arp(ArpOp::Show { host: None })),
            _ => usage("arp", "-a takes no hostname"),
        },
        (false, false, false) => match rest {
            [h] => Ok(Request::Arp(ArpOp::Show { host: Some(parse_host("arp", h)?) })),
            _ => usage("arp", "a hostname or -a is required"),
        },
    }
}

// ---- ifconfig(8) ------------------------------------------------------------

fn check_ifname(tool: &str, name: &str) -> Result<(), UsageError> {
    if name.is_empty()
        || name.len() > 15
        || name.starts_with('-')
        || name.contains('/')
        || name.chars().any(char::is_whitespace)
    {
        return usage(tool, format!("{name:?}: not an interface name"));
    }
    Ok(())
}

fn parse_ifconfig(args: &[&str]) -> Result<Request, UsageError> {
    let u = |m: String| usage::<Request>("ifconfig", m);
    match args {
        [] | ["-a"] => return Ok(Request::Ifconfig(IfconfigOp::Show { name: None })),
        [name] => {
            check_ifname("ifconfig", name)?;
            return Ok(Request::Ifconfig(IfconfigOp::Show { name: Some(name.to_string()) }));
        }
        _ => {}
    }
    let name = args[0];
    check_ifname("ifconfig", name)?;
    let mut actions = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let w = args[i];
        match w {
            "up" => actions.push(IfAction::Up),
            "down" => actions.push(IfAction::Down),
            "group" | "-group" => {
                let Some(g) = args.get(i + 1) else {
                    return u(format!("{w} needs a group name"));
                };
                if let Err(e) = softnet_core::iface::check_group_name(g) {
                    return u(e.to_string());
                }
                actions.push(if w == "group" {
                    IfAction::AddGroup(g.to_string())
                } else {
                    IfAction::DelGroup(g.to_string())
                });
                i += 1;
            }
            "destroy" => {
                if i + 1 != args.len() || !actions.is_empty() {
                    return u("destroy goes alone".into());
                }
                actions.push(IfAction::Destroy);
            }
            "inet6" => {
                let (action, last) = crate::inet6cmd::parse_ifconfig_inet6(name, args, i)?;
                actions.push(action);
                i = last;
            }
            _ => {
                // [inet] ADDR[/LEN] [netmask M | prefixlen N] [alias] [delete | -alias]
                let mut j = i;
                if w == "inet" {
                    j += 1;
                }
                let Some(a) = args.get(j) else {
                    return u("inet needs an address".into());
                };
                let Some((addr, mut len)) = parse_net(a).filter(|(_, l)| l.is_some() || a.split('.').count() == 4)
                else {
                    return u(format!("{a}: not an address or unknown argument"));
                };
                let mut delete = false;
                while let Some(m) = args.get(j + 1) {
                    match *m {
                        "netmask" | "prefixlen" => {
                            let Some(v) = args.get(j + 2) else {
                                return u(format!("{m} needs a value"));
                            };
                            let l = if *m == "netmask" {
                                v.parse::<Ipv4Addr>().ok().and_then(mask_len)
                            } else {
                                v.parse::<u8>().ok().filter(|l| *l <= 32)
                            };
                            match (l, len) {
                                (Some(l), None) => len = Some(l),
                                (Some(_), Some(_)) => return u(format!("{a}: a prefix length and {m} together")),
                                (None, _) => return u(format!("bad {m} {v}")),
                            }
                            j += 2;
                        }
                        "alias" => j += 1,
                        "delete" | "-alias" => {
                            delete = true;
                            j += 1;
                        }
                        _ => break,
                    }
                }
                if delete {
                    actions.push(IfAction::DeleteAddr(addr));
                } else {
                    let Some(len) = len else {
                        return u(format!("{a}: give a prefix length (10.0.1.1/24) or a netmask"));
                    };
                    actions.push(IfAction::AddAddr(InetAddr { addr, prefix_len: len }));
                }
                i = j;
            }
        }
        i += 1;
    }
    Ok(Request::Ifconfig(IfconfigOp::Change { name: name.to_string(), actions }))
}

// ---- netstat(1) -------------------------------------------------------------

fn parse_netstat(args: &[&str]) -> Result<Request, UsageError> {
    let (mut r, mut s, mut i_, mut all) = (false, false, false, false);
    let mut af = AddrFamily::All;
    let mut proto = None;
    let mut rtable = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if !a.starts_with('-') || a.len() < 2 {
            return usage("netstat", format!("unexpected argument {a}"));
        }
        if a == "-T" {
            i += 1;
            rtable = Some(parse_rtable("netstat", args.get(i))?);
        } else if a == "-p" {
            i += 1;
            proto = match args.get(i) {
                Some(&"tcp") => Some(SockProto::Tcp),
                Some(&"udp") => Some(SockProto::Udp),
                Some(p) => return usage("netstat", format!("{p}: unknown protocol")),
                None => return usage("netstat", "-p needs a protocol"),
            };
        } else if a == "-f" {
            i += 1;
            af = match args.get(i) {
                Some(&"inet") => AddrFamily::Inet,
                Some(&"inet6") => AddrFamily::Inet6,
                Some(f) => return usage("netstat", format!("{f}: unknown address family")),
                None => return usage("netstat", "-f needs an address family"),
            };
        } else {
            for (k, c) in a[1..].char_indices() {
                match c {
                    'r' => r = true,
                    's' => s = true,
                    'i' => i_ = true,
                    'a' => all = true,
                    'n' => {}
                    'T' => {
                        // `-rnT1`
                        let t = &a[1 + k + 1..];
                        rtable = Some(if t.is_empty() {
                            i += 1;
                            parse_rtable("netstat", args.get(i))?
                        } else {
                            parse_rtable("netstat", Some(&t))?
                        });
                        break;
                    }
                    _ => return usage("netstat", format!("unknown option -{c}")),
                }
            }
        }
        i += 1;
    }
    let op = match (r, s, i_) {
        (true, false, false) => NetstatOp::Routes { rtable: rtable.unwrap_or(0), af },
        (false, true, false) => NetstatOp::Stats,
        (false, false, true) => NetstatOp::Interfaces,
        (false, false, false) => NetstatOp::Sockets { all, af, proto },
        _ => return usage("netstat", "-r, -s and -i are exclusive"),
    };
    if rtable.is_some() && !r {
        return usage("netstat", "-T goes with -r");
    }
    if (all || proto.is_some()) && (r || s || i_) {
        return usage("netstat", "-a and -p go with the sockets view");
    }
    Ok(Request::Netstat(op))
}

// ---- the client -------------------------------------------------------------

/// The socket the admin commands use: `--socket`, else `$SOFTNET_SOCKET`,
/// else the default.
pub fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("SOFTNET_SOCKET").filter(|s| !s.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL))
}

/// An I/O error as the C library words it ("No such file or directory"),
/// without Rust's " (os error 2)".
pub fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {err}")]
    Connect { path: String, err: String },
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("daemon closed the connection")]
    Closed,
    #[error("unexpected answer from the daemon: {0:?}")]
    Unexpected(Response),
}

/// A connection to the daemon.
pub struct Client {
    stream: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)
            .map_err(|e| ClientError::Connect { path: path.display().to_string(), err: strerror(&e) })?;
        Ok(Client { stream })
    }

    /// Sends one request and waits for its answer.
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        proto::write_request(&mut self.stream, req)?;
        match proto::read_response(&mut self.stream) {
            Err(FrameError::Closed) => Err(ClientError::Closed),
            r => Ok(r?),
        }
    }

    /// `route monitor`: subscribes, calls `subscribed` once the daemon has,
    /// then `event` for every message until it returns false or the daemon
    /// goes away.
    pub fn monitor(
        &mut self,
        table: Option<u16>,
        subscribed: impl FnOnce(),
        mut event: impl FnMut(&str) -> bool,
    ) -> Result<(), ClientError> {
        match self.call(&Request::Route { rtable: table.unwrap_or(0), op: RouteOp::Monitor { table } })? {
            Response::Subscribed => subscribed(),
            Response::Error(e) => return Err(ClientError::Unexpected(Response::Error(e))),
            other => return Err(ClientError::Unexpected(other)),
        }
        loop {
            match proto::read_response(&mut self.stream) {
                Ok(Response::Event(text)) => {
                    if !event(&text) {
                        return Ok(());
                    }
                }
                Ok(other) => return Err(ClientError::Unexpected(other)),
                Err(FrameError::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Runs `softnet TOOL ARGS...` against the daemon at `socket`, printing to
/// `out` and `err`; returns the exit code.
pub fn run(tool: &str, socket: &Path, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let parsed = match parse(tool, args) {
        Ok(p) => p,
        Err(u) => {
            let _ = writeln!(err, "{u}");
            return 1;
        }
    };
    let mut client = match Client::connect(socket) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "softnet: {e}");
            return 1;
        }
    };
    if let Request::Route { op: RouteOp::Monitor { table }, .. } = parsed.request {
        let r = client.monitor(table, || (), |text| writeln!(out, "{text}\n").and_then(|_| out.flush()).is_ok());
        return match r {
            Ok(()) => 0,
            Err(ClientError::Unexpected(Response::Error(m))) => {
                let _ = writeln!(err, "softnet: {tool}: {m}");
                1
            }
            Err(e) => {
                let _ = writeln!(err, "softnet: {tool}: {e}");
                1
            }
        };
    }
    match client.call(&parsed.request) {
        Ok(Response::Text(t)) => {
            if !parsed.quiet {
                let _ = out.write_all(t.as_bytes());
                let _ = out.flush();
            }
            0
        }
        Ok(Response::Error(m)) => {
            let _ = writeln!(err, "softnet: {tool}: {m}");
            1
        }
        Ok(other) => {
            let _ = writeln!(err, "softnet: {tool}: {}", ClientError::Unexpected(other));
            1
        }
        Err(e) => {
            let _ = writeln!(err, "softnet: {tool}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests;
