//! The client side of the IPv6 admin words: `ifconfig IF inet6 ...`
//! (ifconfig(8)'s inet6 address forms) and ndp(8)'s command line, parsed
//! into typed requests with usage errors for what does not parse.

use crate::admin::{usage, UsageError};
use crate::config::parse_mac;
use crate::proto::{IfAction, Inet6Addr, NdpHost, NdpOp, Request};
use std::net::Ipv6Addr;

pub const NDP_USAGE: &str = "usage: softnet ndp [-acn] [-d hostname] [-s nodename ether_addr [temp] [proxy]]
       [hostname]
hostname: an IPv6 address; a link-local one as fe80::1%interface";

/// `ADDR` or `ADDR%IF`.
pub fn parse_host6(tool: &str, s: &str) -> Result<NdpHost, UsageError> {
    let (a, scope) = match s.split_once('%') {
        Some((a, i)) if !i.is_empty() => (a, Some(i.to_string())),
        Some(_) => return usage(tool, format!("{s}: empty scope")),
        None => (s, None),
    };
    let addr = a.parse::<Ipv6Addr>().or_else(|_| usage(tool, format!("{s}: not an IPv6 address")))?;
    Ok(NdpHost { addr, scope })
}

/// `inet6 ADDR[/LEN] [prefixlen N] [alias] [delete | -alias]` starting at
/// `args[i]` (the word `inet6`): the action and the index of its last
/// word. The prefix length defaults to 64, as ifconfig's; a scope
/// (`fe80::1%em0`) must name the interface itself.
pub fn parse_ifconfig_inet6(name: &str, args: &[&str], i: usize) -> Result<(IfAction, usize), UsageError> {
    let u = |m: String| usage::<(IfAction, usize)>("ifconfig", m);
    let mut j = i + 1;
    let Some(a) = args.get(j) else {
        return u("inet6 needs an address".into());
    };
    let (host, mut len) = match a.split_once('/') {
        Some((h, l)) => match l.parse::<u8>() {
            Ok(l) if l <= 128 => (h, Some(l)),
            _ => return u(format!("{a}: bad prefix length")),
        },
        None => (*a, None),
    };
    let host = parse_host6("ifconfig", host)?;
    if host.scope.as_deref().is_some_and(|s| s != name) {
        return u(format!("{a}: scope is not {name}"));
    }
    let mut delete = false;
    while let Some(m) = args.get(j + 1) {
        match *m {
            "prefixlen" => {
                let Some(v) = args.get(j + 2) else {
                    return u("prefixlen needs a value".into());
                };
                match (v.parse::<u8>().ok().filter(|l| *l <= 128), len) {
                    (Some(l), None) => len = Some(l),
                    (Some(_), Some(_)) => return u(format!("{a}: a prefix length and prefixlen together")),
                    (None, _) => return u(format!("bad prefixlen {v}")),
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
    let action = if delete {
        IfAction::DeleteAddr6(host.addr)
    } else {
        IfAction::AddAddr6(Inet6Addr { addr: host.addr, prefix_len: len.unwrap_or(64) })
    };
    Ok((action, j))
}

/// ndp(8)'s options as its getopt takes them (the ones softnet has:
/// `-a`, `-c`, `-d HOST`, `-n`, `-s`).
pub fn parse_ndp(args: &[&str]) -> Result<Request, UsageError> {
    let mut mode: Option<char> = None;
    let mut darg: Option<&str> = None;
    let mut i = 0;
    let set_mode = |mode: &mut Option<char>, c: char| match mode {
        Some(m) => usage("ndp", format!("-{c} with -{m}")),
        None => {
            *mode = Some(c);
            Ok(())
        }
    };
    while i < args.len() && args[i].starts_with('-') && args[i].len() > 1 {
        let a = args[i];
        for (k, c) in a[1..].char_indices() {
            match c {
                'a' | 'c' | 's' => set_mode(&mut mode, c)?,
                'n' => {}
                'd' => {
                    set_mode(&mut mode, c)?;
                    let rest = &a[1 + k + 1..];
                    darg = Some(if !rest.is_empty() {
                        rest
                    } else {
                        i += 1;
                        args.get(i)
                            .copied()
                            .ok_or_else(|| UsageError { tool: "ndp".into(), msg: Some("-d needs a hostname".into()) })?
                    });
                    break;
                }
                _ => return usage("ndp", format!("unknown option -{c}")),
            }
        }
        i += 1;
    }
    let rest = &args[i..];
    let op = match mode {
        Some('a') | Some('c') => {
            if let Some(x) = rest.first() {
                return usage("ndp", format!("unexpected {x}"));
            }
            if mode == Some('a') {
                NdpOp::Show { host: None }
            } else {
                NdpOp::Clear
            }
        }
        Some('d') => {
            if let Some(x) = rest.first() {
                return usage("ndp", format!("unexpected {x}"));
            }
            NdpOp::Delete { host: parse_host6("ndp", darg.expect("-d has its argument"))? }
        }
        Some('s') => {
            let [host, mac, mods @ ..] = rest else {
                return usage("ndp", "-s needs a nodename and an ether_addr");
            };
            let host = parse_host6("ndp", host)?;
            let mac = parse_mac(mac).or_else(|_| usage("ndp", format!("invalid Ethernet address '{mac}'")))?.0;
            let (mut temp, mut proxy) = (false, false);
            for m in mods {
                match *m {
                    "temp" if !temp => temp = true,
                    "proxy" if !proxy => proxy = true,
                    _ => return usage("ndp", format!("-s: unexpected {m}")),
                }
            }
            NdpOp::Set { host, mac, temp, proxy }
        }
        _ => match rest {
            [h] => NdpOp::Show { host: Some(parse_host6("ndp", h)?) },
            _ => return usage("ndp", "a hostname or -a is required"),
        },
    };
    Ok(Request::Ndp(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Request, UsageError> {
        let args: Vec<&str> = line.split_whitespace().collect();
        parse_ndp(&args)
    }
    fn host(s: &str) -> NdpHost {
        parse_host6("ndp", s).unwrap()
    }

    #[test]
    fn ndp_forms() {
        assert_eq!(p("-an").unwrap(), Request::Ndp(NdpOp::Show { host: None }));
        assert_eq!(p("-a -n").unwrap(), Request::Ndp(NdpOp::Show { host: None }));
        assert_eq!(p("-n fd00:1::2").unwrap(), Request::Ndp(NdpOp::Show { host: Some(host("fd00:1::2")) }));
        assert_eq!(p("-c").unwrap(), Request::Ndp(NdpOp::Clear));
        assert_eq!(p("-d fd00:1::2").unwrap(), Request::Ndp(NdpOp::Delete { host: host("fd00:1::2") }));
        assert_eq!(p("-dfe80::2%sn0").unwrap(), Request::Ndp(NdpOp::Delete { host: host("fe80::2%sn0") }));
        assert_eq!(p("-nd fd00:1::2").unwrap(), Request::Ndp(NdpOp::Delete { host: host("fd00:1::2") }));
        assert_eq!(
            p("-s fd00:1::9 02:00:00:00:01:09").unwrap(),
            Request::Ndp(NdpOp::Set { host: host("fd00:1::9"), mac: [2, 0, 0, 0, 1, 9], temp: false, proxy: false })
        );
        assert_eq!(
            p("-s fe80::9%sn0 2:0:0:0:1:9 temp proxy").unwrap(),
            Request::Ndp(NdpOp::Set { host: host("fe80::9%sn0"), mac: [2, 0, 0, 0, 1, 9], temp: true, proxy: true })
        );
        assert_eq!(host("fe80::9%sn0").scope.as_deref(), Some("sn0"));
        assert_eq!(host("fe80::9%sn0").to_string(), "fe80::9%sn0");
    }

    #[test]
    fn bad_ndp_lines_are_usage_errors() {
        for line in [
            "",
            "-a fd00::1",
            "-a -c",
            "-s fd00::1",
            "-s fd00::1 zz:00:00:00:00:01",
            "-s fd00::1 02:00:00:00:00:01 forever",
            "-d",
            "-d fd00::1 extra",
            "-x",
            "10.0.0.1",
            "fe80::1%",
            "a b",
        ] {
            let e = p(line).expect_err(line);
            assert!(e.to_string().contains("usage: softnet ndp"), "{line}: {e}");
        }
        let e = p("-s fd00::1 zz").unwrap_err().to_string();
        assert!(e.starts_with("softnet ndp: invalid Ethernet address 'zz'"), "{e}");
    }

    #[test]
    fn ifconfig_inet6_forms() {
        let w = |line: &str| -> Result<(IfAction, usize), UsageError> {
            let args: Vec<&str> = line.split_whitespace().collect();
            parse_ifconfig_inet6("sn0", &args, 1)
        };
        let add = |a: &str, l| IfAction::AddAddr6(Inet6Addr { addr: a.parse().unwrap(), prefix_len: l });
        assert_eq!(w("sn0 inet6 fd00:1::1/48").unwrap(), (add("fd00:1::1", 48), 2));
        assert_eq!(w("sn0 inet6 fd00:1::1").unwrap(), (add("fd00:1::1", 64), 2), "prefixlen 64 by default");
        assert_eq!(w("sn0 inet6 fd00:1::1 prefixlen 56 alias up").unwrap(), (add("fd00:1::1", 56), 5));
        assert_eq!(w("sn0 inet6 fe80::5%sn0").unwrap(), (add("fe80::5", 64), 2));
        let del = IfAction::DeleteAddr6("fd00:1::1".parse().unwrap());
        assert_eq!(w("sn0 inet6 fd00:1::1/64 delete").unwrap(), (del.clone(), 3));
        assert_eq!(w("sn0 inet6 fd00:1::1 -alias").unwrap(), (del, 3));
        for bad in [
            "sn0 inet6",
            "sn0 inet6 10.0.0.1/24",
            "sn0 inet6 fd00::1/129",
            "sn0 inet6 fd00::1/64 prefixlen 64",
            "sn0 inet6 fd00::1 prefixlen",
            "sn0 inet6 fe80::1%sn1",
        ] {
            let e = w(bad).expect_err(bad);
            assert!(e.to_string().contains("usage: softnet ifconfig"), "{bad}: {e}");
        }
    }
}
