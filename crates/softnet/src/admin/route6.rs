//! route(8)'s IPv6 arguments (`-inet6`): destinations `ADDR[%IF][/LEN]` or
//! with `-prefixlen N`, `default`, gateways with their KAME scope
//! (`fe80::1%em0`).

use super::{check_ifname, delete_words, route_args, usage, RouteArgs, UsageError};
use crate::proto::{RouteDest6, RouteGateway6, RouteOp, RouteSpec6};
use std::net::Ipv6Addr;

/// Whether route(8) arguments are IPv6 ones: `-inet6`, or an address
/// with a colon.
pub(super) fn is_inet6(rest: &[&str]) -> bool {
    rest.iter().any(|a| *a == "-inet6" || (!a.starts_with('-') && a.contains(':')))
}

const ADD6: &[&str] = &["-net", "-host", "-inet6", "-static", "-reject", "-blackhole", "-iface", "-ifp", "-prefixlen"];
const DEST6: &[&str] = &["-net", "-host", "-inet6", "-prefixlen"];

/// route(8)'s arguments for an IPv6 route: IPv4's `-inet` and
/// `-netmask` refused by name.
fn args6<'a>(args: &[&'a str], allowed: &[&str]) -> Result<RouteArgs<'a>, UsageError> {
    if let Some(a) = args.iter().find(|a| **a == "-inet" || **a == "-netmask") {
        return usage("route", format!("{a} with an IPv6 route"));
    }
    route_args(args, allowed)
}

/// `ADDR` or `ADDR%IF`.
fn scoped(word: &str) -> Result<(Ipv6Addr, Option<String>), UsageError> {
    let (a, scope) = match word.split_once('%') {
        Some((a, s)) => {
            check_ifname("route", s)?;
            (a, Some(s.to_string()))
        }
        None => (word, None),
    };
    let addr = a.parse::<Ipv6Addr>().or_else(|_| usage("route", format!("{word}: bad value")))?;
    Ok((addr, scope))
}

fn dest6(r: &RouteArgs, word: &str) -> Result<RouteDest6, UsageError> {
    if word == "default" {
        if r.host || r.prefixlen.is_some() {
            return usage("route", "default is a network");
        }
        return Ok(RouteDest6 { addr: Ipv6Addr::UNSPECIFIED, prefix_len: 0, scope: None });
    }
    let (a, len) = match word.split_once('/') {
        Some((a, l)) => match l.parse::<u8>() {
            Ok(l) if l <= 128 => (a, Some(l)),
            _ => return usage("route", format!("{l}: bad value")),
        },
        None => (word, None),
    };
    let (addr, scope) = scoped(a)?;
    let len = match (len, r.prefixlen) {
        (Some(_), Some(_)) => return usage("route", "a prefix length and -prefixlen together"),
        (Some(l), None) | (None, Some(l)) => l,
        // KAME's route(8): -net without a length is a /64.
        (None, None) if r.net => 64,
        (None, None) => 128,
    };
    if r.host && len != 128 {
        return usage("route", format!("-host {word}: a host route is /128"));
    }
    let addr = Ipv6Addr::from(u128::from(addr) & softnet_core::route::prefix_mask6(len));
    Ok(RouteDest6 { addr, prefix_len: len, scope })
}

fn spec6(rest: &[&str]) -> Result<RouteSpec6, UsageError> {
    let r = args6(rest, ADD6)?;
    if r.reject && r.blackhole {
        return usage("route", "-reject and -blackhole together");
    }
    let (d, gw) = match r.words.as_slice() {
        [d] => (*d, None),
        [d, g] => (*d, Some(*g)),
        [] => return usage("route", "destination required"),
        _ => return usage("route", format!("too many arguments: {}", r.words.join(" "))),
    };
    let dest = dest6(&r, d)?;
    let gateway = if r.reject || r.blackhole {
        // A gateway (often ::1) may be given and means nothing.
        if let Some(g) = gw {
            scoped(g)?;
        }
        if r.reject {
            RouteGateway6::Reject
        } else {
            RouteGateway6::Blackhole
        }
    } else if let Some(ifp) = r.ifp {
        if gw.is_some() {
            return usage("route", "-ifp and a gateway together (give one)");
        }
        check_ifname("route", ifp)?;
        RouteGateway6::Interface(ifp.to_string())
    } else if r.iface {
        let Some(g) = gw else { return usage("route", "-iface needs an interface name") };
        check_ifname("route", g)?;
        RouteGateway6::Interface(g.to_string())
    } else {
        let Some(g) = gw else { return usage("route", "gateway required") };
        let (a, scope) = scoped(g)?;
        RouteGateway6::Addr(a, scope)
    };
    Ok(RouteSpec6 { dest, gateway })
}

/// `route add|change|delete|get -inet6 ...`.
pub(super) fn parse(cmd: &str, rest: &[&str]) -> Result<RouteOp, UsageError> {
    Ok(match cmd {
        "add" => RouteOp::Add6(spec6(rest)?),
        "change" => RouteOp::Change6(spec6(rest)?),
        "delete" | "del" => {
            let r = args6(rest, DEST6)?;
            let (d, g) = delete_words(&r.words)?;
            let dest = dest6(&r, d)?;
            let gateway = match g {
                None => None,
                Some(g) => Some(scoped(g)?.0),
            };
            RouteOp::Delete6 { dest, gateway }
        }
        "get" => {
            let r = args6(rest, DEST6)?;
            let [d] = r.words.as_slice() else {
                return usage("route", "get takes one destination");
            };
            let exact = r.net || r.prefixlen.is_some() || d.contains('/') || *d == "default";
            RouteOp::Get6 { dest: dest6(&r, d)?, exact }
        }
        other => return usage("route", format!("{other}: not with -inet6")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<RouteOp, UsageError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(is_inet6(&words[1..]), "{line}");
        parse(words[0], &words[1..])
    }

    fn d6(a: &str, l: u8, scope: Option<&str>) -> RouteDest6 {
        RouteDest6 { addr: a.parse().unwrap(), prefix_len: l, scope: scope.map(String::from) }
    }

    fn gw(a: &str, scope: Option<&str>) -> RouteGateway6 {
        RouteGateway6::Addr(a.parse().unwrap(), scope.map(String::from))
    }

    #[test]
    fn route_add_inet6_forms_of_route8() {
        let net = d6("2001:db8::", 32, None);
        let want = RouteOp::Add6(RouteSpec6 { dest: net.clone(), gateway: gw("2001:db8:1::fe", None) });
        for line in [
            "add -inet6 2001:db8::/32 2001:db8:1::fe",
            "add -inet6 2001:db8:: -prefixlen 32 2001:db8:1::fe",
            "add 2001:db8::/32 2001:db8:1::fe",
            "add -inet6 -net 2001:db8:0:0:ffff:: -prefixlen 32 2001:db8:1::fe",
        ] {
            assert_eq!(p(line).unwrap(), want, "{line}");
        }
        assert_eq!(
            p("add default -inet6 fe80::1%sn-r0").unwrap(),
            RouteOp::Add6(RouteSpec6 { dest: d6("::", 0, None), gateway: gw("fe80::1", Some("sn-r0")) })
        );
        assert_eq!(
            p("add -inet6 2001:db8::5 2001:db8:1::fe").unwrap(),
            RouteOp::Add6(RouteSpec6 { dest: d6("2001:db8::5", 128, None), gateway: gw("2001:db8:1::fe", None) })
        );
        assert_eq!(
            p("add -inet6 -net 2001:db8:1:2:: 2001:db8:1::fe").unwrap(),
            RouteOp::Add6(RouteSpec6 { dest: d6("2001:db8:1:2::", 64, None), gateway: gw("2001:db8:1::fe", None) })
        );
        assert_eq!(
            p("change -inet6 fe80::%sn-r1/64 -iface sn-r1").unwrap(),
            RouteOp::Change6(RouteSpec6 {
                dest: d6("fe80::", 64, Some("sn-r1")),
                gateway: RouteGateway6::Interface("sn-r1".into())
            })
        );
        assert_eq!(
            p("add -inet6 ::/96 ::1 -reject").unwrap(),
            RouteOp::Add6(RouteSpec6 { dest: d6("::", 96, None), gateway: RouteGateway6::Reject })
        );
    }

    #[test]
    fn route_delete_and_get_inet6() {
        assert_eq!(
            p("delete -inet6 2001:db8::/32 fe80::1%sn-r0").unwrap(),
            RouteOp::Delete6 { dest: d6("2001:db8::", 32, None), gateway: Some("fe80::1".parse().unwrap()) }
        );
        assert_eq!(
            p("get -inet6 2001:db8::1").unwrap(),
            RouteOp::Get6 { dest: d6("2001:db8::1", 128, None), exact: false }
        );
        assert_eq!(p("get -inet6 default").unwrap(), RouteOp::Get6 { dest: d6("::", 0, None), exact: true });
        assert_eq!(
            p("get fe80::1%sn-r0").unwrap(),
            RouteOp::Get6 { dest: d6("fe80::1", 128, Some("sn-r0")), exact: false }
        );
    }

    #[test]
    fn bad_inet6_arguments_are_usage_errors() {
        let msg = |line: &str| p(line).unwrap_err().msg.unwrap();
        assert_eq!(msg("add -inet6 2001:db8::/129 ::1"), "129: bad value");
        assert_eq!(msg("add -inet6 2001:db8:: -prefixlen 200 ::1"), "200: bad value");
        assert_eq!(msg("add -inet6 2001:db8::/32 -prefixlen 32 ::1"), "a prefix length and -prefixlen together");
        assert_eq!(msg("add -inet6 2001:db8::/32 10.0.0.1"), "10.0.0.1: bad value");
        assert_eq!(msg("add -inet6 2001:zz::/32 ::1"), "2001:zz::: bad value");
        assert_eq!(msg("add -inet6 2001:db8::/32"), "gateway required");
        assert_eq!(msg("add -inet6 -host 2001:db8::/64 ::1"), "-host 2001:db8::/64: a host route is /128");
        assert_eq!(msg("add -inet6 2001:db8::/32 -netmask 255.0.0.0 ::1"), "-netmask with an IPv6 route");
        assert_eq!(msg("add -inet6 default -prefixlen 0 fe80::1%em0"), "default is a network");
        assert!(msg("add -inet6 default fe80::1%bad/name").contains("not an interface name"));
        assert_eq!(msg("monitor -inet6"), "monitor: not with -inet6");
    }
}
