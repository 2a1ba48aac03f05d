//! Addresses and ports: hosts, interface addresses, tables, port
//! operators (parse.y's `host`, `ipspec`, `port_item`).

use super::*;

impl Parser<'_> {
    // ----- addresses -----

    /// One `[!] host` element; may resolve to several addresses.
    pub(super) fn xhost(&mut self, c: &mut Cursor) -> PResult<Vec<HostItem>> {
        let line = c.line();
        let neg = c.eat_punct("!");
        let mut hs = self.host(c)?;
        for h in &mut hs {
            // `!0/0` (any address with a zero mask) prints as `! any`, as
            // pfctl's print_addr prints it, which the grammar refuses: it
            // matches nothing, and is refused here so that what loads
            // prints back (found by the long pf_conf fuzz run).
            if neg && crate::print::is_any(&h.addr) {
                return Err((line, "negated address matches nothing: ! any".into()));
            }
            h.negated ^= neg;
        }
        Ok(hs)
    }

    /// `any | xhost | { xhost … }`
    pub(super) fn ipspec(&mut self, c: &mut Cursor) -> PResult<Vec<HostItem>> {
        if c.eat_word("any") {
            return Ok(vec![HostItem::new(Addr::Any)]);
        }
        if c.peek().is_some_and(|t| t.is_punct("{")) {
            let lists = c.list(|c| self.xhost(c))?;
            return Ok(lists.into_iter().flatten().collect());
        }
        self.xhost(c)
    }

    pub(super) fn host(&mut self, c: &mut Cursor) -> PResult<Vec<HostItem>> {
        let line = c.line();
        let one = |addr| Ok(vec![HostItem::new(addr)]);
        if c.eat_punct("<") {
            let name = c.table_name()?;
            c.expect_punct(">")?;
            if name.len() >= 32 {
                return Err((line, format!("table name '{name}' too long")));
            }
            return one(Addr::Table(name));
        }
        if c.eat_punct("(") {
            let spec = c.string()?;
            c.expect_punct(")")?;
            let (ifname, modifier, no_alias) = dynaddr(&spec).map_err(|m| (line, m))?;
            // `(if)/N`
            let prefix = if c.eat_punct("/") {
                let n = c.number()?;
                if n > 128 {
                    return Err((line, "bit number too big".into()));
                }
                Some(n as u8)
            } else {
                None
            };
            return one(Addr::Dynamic { ifname, modifier, no_alias, prefix });
        }
        if c.eat_word("no-route") {
            return one(Addr::NoRoute);
        }
        if c.eat_word("urpf-failed") {
            return one(Addr::UrpfFailed);
        }
        if c.eat_word("route") {
            let label = c.string()?;
            if label.len() >= 32 {
                return Err((line, "route label too long, max 31 chars".into()));
            }
            return one(Addr::RouteLabel(label));
        }
        let name = c.string()?;
        if matches!(name.as_str(), "any" | "all") {
            return Err((line, "syntax error".into()));
        }
        // address range: a - b
        if c.peek().is_some_and(|t| t.is_word("-")) {
            c.next();
            let hi = c.string()?;
            return match (name.parse::<IpAddr>(), hi.parse::<IpAddr>()) {
                (Ok(a), Ok(b)) if a.is_ipv4() == b.is_ipv4() => one(Addr::Range(a, b)),
                _ => Err((line, "invalid address range".into())),
            };
        }
        let mask = if c.eat_punct("/") { Some(c.number()?) } else { None };
        match mask {
            // host(): strtonum(mask, 0, 128)
            Some(m) if m > 128 => {
                self.note(format!("netmask is too large: /{m}"));
                Err((line, "could not parse host specification".into()))
            }
            _ => self.host_or_error(&name, mask.map(|m| m as u8), line),
        }
    }

    /// pfctl's `host()` and its caller's error: the addresses, or the notes
    /// (`no IP address found for …`) and "could not parse host
    /// specification".
    pub(super) fn host_or_error(&mut self, name: &str, mask: Option<u8>, line: usize) -> PResult<Vec<HostItem>> {
        let text = match mask {
            Some(m) => format!("{name}/{m}"),
            None => name.to_string(),
        };
        match self.resolve_host(name, mask) {
            Ok(hosts) if !hosts.is_empty() => return Ok(hosts),
            Ok(_) => {}
            Err(notes) => {
                for n in notes {
                    self.note(n);
                }
            }
        }
        self.note(format!("no IP address found for {text}"));
        Err((line, "could not parse host specification".into()))
    }

    /// A message pfctl prints without a place, before the error it leads to.
    pub(super) fn note(&mut self, msg: String) {
        self.error(0, msg);
    }

    /// pfctl's `host()`: an interface or group (with modifiers) or `self`
    /// (host_if), a literal address (host_ip), or a host name (host_dns,
    /// answered by the resolver). Empty when none of them fits; `Err` with
    /// the notes host_if printed on its way.
    pub(super) fn resolve_host(&mut self, name: &str, mask: Option<u8>) -> Result<Vec<HostItem>, Vec<String>> {
        let hosts = |nets: Vec<IpNet>| nets.into_iter().map(|n| HostItem::new(Addr::Net(n))).collect::<Vec<_>>();
        let mut notes = vec![];
        // host_if
        if let Some(r) = split_if_modifiers(name) {
            match r {
                Err((_, m)) => notes.push(m),
                Ok((ifname, modifier, no_alias)) => {
                    if mask.is_some() && matches!(modifier, IfAddrModifier::Network | IfAddrModifier::Broadcast) {
                        notes.push("network or broadcast lookup, but extra netmask given".into());
                    } else if ifname == "self" || self.resolver.exists(&ifname) {
                        let mut nets = self.if_lookup(&ifname, modifier, no_alias);
                        if let Some(m) = mask {
                            nets = nets.into_iter().map(|n| IpNet::new(n.addr, m.min(max_prefix(n.addr)))).collect();
                        }
                        if !nets.is_empty() {
                            return Ok(hosts(nets));
                        }
                    }
                }
            }
        }
        // host_ip: a numeric address; an IPv6 one may name its scope
        // (`fe80::1%em0`, which getaddrinfo takes for an existing interface)
        let (literal, scope) = match name.split_once('%') {
            Some((a, ifname)) if a.parse::<std::net::Ipv6Addr>().is_ok() && self.resolver.interface_exists(ifname) => {
                (a, Some(ifname.to_string()))
            }
            Some(_) => ("", None),
            None => (name, None),
        };
        if let Ok(a) = literal.parse::<IpAddr>() {
            let p = mask.unwrap_or(max_prefix(a));
            let mut h = HostItem::new(Addr::Net(IpNet::new(a, p.min(max_prefix(a)))));
            if a.is_ipv4() && p > 32 {
                h.bad_mask = Some(p);
            }
            h.scope = scope;
            return Ok(vec![h]);
        }
        // "10/8", "192.168/16": inet_net_pton's short forms need a mask
        if let (Some(m), Some(a)) = (mask, short_v4(name)) {
            let mut h = HostItem::new(Addr::Net(IpNet::new(IpAddr::V4(a), m.min(32))));
            if m > 32 {
                h.bad_mask = Some(m);
            }
            return Ok(vec![h]);
        }
        // host_dns
        let found = self.resolver.host_addresses(name);
        if !found.is_empty() {
            return Ok(hosts(
                found.into_iter().map(|a| IpNet::new(a, mask.unwrap_or(max_prefix(a)).min(max_prefix(a)))).collect(),
            ));
        }
        if notes.is_empty() {
            Ok(vec![])
        } else {
            Err(notes)
        }
    }

    /// pfctl's `ifa_lookup`: the addresses of an interface, group or `self`.
    pub(super) fn if_lookup(&self, name: &str, modifier: IfAddrModifier, no_alias: bool) -> Vec<IpNet> {
        let ifs = if name == "self" { self.resolver.interfaces() } else { self.resolver.expand(name) };
        let mut out = vec![];
        for ifname in ifs {
            let (mut got4, mut got6) = (false, false);
            for a in self.resolver.addresses(&ifname) {
                let net = match modifier {
                    IfAddrModifier::Broadcast => match a.broadcast() {
                        Some(b) if !self.resolver.is_loopback(&ifname) && a.peer.is_none() => IpNet::host(b),
                        _ => continue,
                    },
                    IfAddrModifier::Peer => match a.peer {
                        Some(p) => IpNet::host(p),
                        None => continue,
                    },
                    IfAddrModifier::Network => {
                        if a.is_scoped() {
                            continue;
                        }
                        a.network()
                    }
                    IfAddrModifier::Address => IpNet::host(a.addr),
                };
                let v4 = a.addr.is_ipv4();
                if no_alias && ((v4 && got4) || (!v4 && got6)) {
                    continue;
                }
                if v4 {
                    got4 = true;
                } else {
                    got6 = true;
                }
                out.push(net);
            }
        }
        out
    }

    // ----- ports -----

    pub(super) fn port_value(c: &mut Cursor) -> PResult<u16> {
        let line = c.line();
        let w = c.string()?;
        port_number(&w).map_err(|m| (line, m))
    }

    pub(super) fn port_item(c: &mut Cursor) -> PResult<PortOp> {
        let line = c.line();
        let unary = ["=", "!=", "<", "<=", ">", ">="].into_iter().find(|p| c.peek().is_some_and(|t| t.is_punct(p)));
        if let Some(op) = unary {
            c.next();
            let v = Self::port_value(c)?;
            return Ok(match op {
                "=" => PortOp::Eq(v),
                "!=" => PortOp::Ne(v),
                "<" => PortOp::Lt(v),
                "<=" => PortOp::Le(v),
                ">" => PortOp::Gt(v),
                _ => PortOp::Ge(v),
            });
        }
        let w = c.string()?;
        if let Some((a, b)) = w.split_once(':') {
            let a = port_number(a).map_err(|m| (line, m))?;
            let b = port_number(b).map_err(|m| (line, m))?;
            return Ok(PortOp::Range(a, b));
        }
        let a = port_number(&w).map_err(|m| (line, m))?;
        if c.eat_punct("><") {
            return Ok(PortOp::Inside(a, Self::port_value(c)?));
        }
        if c.eat_punct("<>") {
            return Ok(PortOp::Outside(a, Self::port_value(c)?));
        }
        Ok(PortOp::Eq(a))
    }

    /// `[ipspec] [port portspec]`
    pub(super) fn ipportspec(&mut self, c: &mut Cursor) -> PResult<(Vec<HostItem>, Vec<Option<PortOp>>)> {
        let hosts =
            if c.peek().is_some_and(|t| t.is_word("port")) { vec![HostItem::new(Addr::Any)] } else { self.ipspec(c)? };
        let ports =
            if c.eat_word("port") { c.list(Self::port_item)?.into_iter().map(Some).collect() } else { vec![None] };
        Ok((hosts, ports))
    }
}

/// parse.y's `dynaddr`: `(if[:modifier…])`, checked as pfctl does.
fn dynaddr(spec: &str) -> Result<(String, IfAddrModifier, bool), String> {
    if !spec.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("invalid interface name '{spec}'"));
    }
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default().to_string();
    // Printed bare, `(NAME…)`, it must read back as the same word.
    if name.contains('\\') || !name.chars().all(crate::lexer::word_char) {
        return Err(format!("invalid interface name '{spec}'"));
    }
    let mut modifier = IfAddrModifier::Address;
    let mut no_alias = false;
    let mut modes = 0;
    for m in parts {
        match m {
            "network" => modifier = IfAddrModifier::Network,
            "broadcast" => modifier = IfAddrModifier::Broadcast,
            "peer" => modifier = IfAddrModifier::Peer,
            "0" => {
                no_alias = true;
                continue;
            }
            _ => return Err(format!("interface {spec} has bad modifier")),
        }
        modes += 1;
    }
    if modes > 1 {
        return Err("illegal combination of interface modifiers".into());
    }
    Ok((name, modifier, no_alias))
}

/// Splits `em0:network:0` into the name and its modifiers. `None` if the
/// text has no interface-like form (e.g. an IPv6 address); `Some(Err)` for a
/// bad combination.
#[allow(clippy::type_complexity)]
pub(super) fn split_if_modifiers(s: &str) -> Option<Result<(String, IfAddrModifier, bool), (usize, String)>> {
    let mut parts = s.split(':');
    let name = parts.next()?;
    if name.is_empty() || name.parse::<IpAddr>().is_ok() || s.parse::<IpAddr>().is_ok() {
        return None;
    }
    if !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let mut modifier = IfAddrModifier::Address;
    let mut no_alias = false;
    for m in parts {
        let new = match m {
            "network" => IfAddrModifier::Network,
            "broadcast" => IfAddrModifier::Broadcast,
            "peer" => IfAddrModifier::Peer,
            "0" => {
                no_alias = true;
                continue;
            }
            _ => return None,
        };
        if modifier != IfAddrModifier::Address {
            return Some(Err((0, "illegal combination of interface modifiers".into())));
        }
        modifier = new;
    }
    Some(Ok((name.to_string(), modifier, no_alias)))
}

pub(super) fn short_v4(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut o = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        o[i] = p.parse().ok()?;
    }
    Some(Ipv4Addr::from(o))
}

/// parse.y's atoul: strtoul with base 0 (`0x` hex, a leading `0` octal)
/// over the whole word.
pub(super) fn atoul(w: &str) -> Option<u64> {
    if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    if w.len() > 1 && w.starts_with('0') {
        return u64::from_str_radix(&w[1..], 8).ok();
    }
    parse_number(w)
}

/// parse.y's getservice: a number (atoul), else a service name.
pub(super) fn port_number(w: &str) -> Result<u16, String> {
    match atoul(w) {
        Some(n) if n > 65535 => Err(format!("illegal port value {n}")),
        Some(n) => Ok(n as u16),
        None => names::service_by_name(w).ok_or_else(|| format!("unknown port {w}")),
    }
}
