//! Translation and routing targets: parse.y's `redirspec`, `routespec`,
//! `pool_opts` and `hashkey` read here, and what pfctl does with them on
//! each expansion of a rule (`collapse_redirspec`, `apply_redirspec`, the
//! binat-to checks and its second rule in `expand_rule`): the rules about
//! what a pool may hold, its default type and ports, and every message.

use md5::{Digest, Md5};

use super::addr::port_number;

use super::*;

/// One address of a redirection as written and resolved: an interface name
/// has already become its addresses, each one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RedirHost {
    pub addr: Addr,
    /// Route options' `(if addr)`.
    pub ifname: Option<String>,
}

impl RedirHost {
    /// The host's family, if it has one (`(if)` and tables have none).
    fn af(&self) -> Option<AddressFamily> {
        self.addr.family()
    }
}

/// `port p`, `port p1:p2`, `port p1:*` after the pool's address
/// (parse.y's `portstar`: `range` is PF_OP_RRG, `*` leaves `b` 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RedirPort {
    pub a: u16,
    pub b: u16,
    pub range: bool,
}

/// `pool_opts` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct PoolOpts {
    pub kind: PoolType,
    pub sticky: bool,
    pub static_port: bool,
}

impl PoolOpts {
    /// Adds one option word's meaning, with parse.y's message when it
    /// repeats one.
    pub(super) fn add(&mut self, opt: PoolType) -> Result<(), String> {
        if self.kind != PoolType::None {
            return Err("pool type cannot be redefined".into());
        }
        self.kind = opt;
        Ok(())
    }
    pub(super) fn set_sticky(&mut self) -> Result<(), String> {
        if self.sticky {
            return Err("sticky-address cannot be redefined".into());
        }
        self.sticky = true;
        Ok(())
    }
    pub(super) fn set_static_port(&mut self) -> Result<(), String> {
        if self.static_port {
            return Err("static-port cannot be redefined".into());
        }
        self.static_port = true;
        Ok(())
    }
}

/// A whole `redirpool pool_opts` (or `routespec pool_opts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RedirSpec {
    pub(super) hosts: Vec<RedirHost>,
    pub port: Option<RedirPort>,
    pub opts: PoolOpts,
    /// binat-to rather than nat-to.
    pub binat: bool,
}

/// pfctl's keywords (parse.y's `lookup` table): a word that is one is not
/// a `source-hash` key, nor an anchor's name after `anchor`.
const KEYWORDS: &[&str] = &[
    "af-to",
    "all",
    "allow-opts",
    "anchor",
    "antispoof",
    "any",
    "bandwidth",
    "binat-to",
    "bitmask",
    "block",
    "block-policy",
    "burst",
    "code",
    "debug",
    "default",
    "delay",
    "divert-packet",
    "divert-reply",
    "divert-to",
    "drop",
    "dup-to",
    "file",
    "fingerprints",
    "flags",
    "floating",
    "flows",
    "flush",
    "for",
    "fragment",
    "from",
    "global",
    "group",
    "hostid",
    "icmp-type",
    "icmp6-type",
    "if-bound",
    "in",
    "include",
    "inet",
    "inet6",
    "keep",
    "label",
    "least-states",
    "limit",
    "load",
    "log",
    "loginterface",
    "match",
    "matches",
    "max",
    "max-mss",
    "max-pkt-rate",
    "max-src-conn",
    "max-src-conn-rate",
    "max-src-nodes",
    "max-src-states",
    "min",
    "min-ttl",
    "modulate",
    "nat-to",
    "no",
    "no-df",
    "no-route",
    "no-sync",
    "on",
    "once",
    "optimization",
    "os",
    "out",
    "overload",
    "parent",
    "pass",
    "pflow",
    "port",
    "prio",
    "probability",
    "proto",
    "qlimit",
    "quantum",
    "queue",
    "quick",
    "random",
    "random-id",
    "rdomain",
    "rdr-to",
    "reassemble",
    "received-on",
    "reply-to",
    "return",
    "return-icmp",
    "return-icmp6",
    "return-rst",
    "round-robin",
    "route",
    "route-to",
    "rtable",
    "rule",
    "ruleset-optimization",
    "scrub",
    "set",
    "skip",
    "sloppy",
    "source-hash",
    "source-track",
    "state",
    "state-defaults",
    "state-policy",
    "static-port",
    "sticky-address",
    "syncookies",
    "synproxy",
    "table",
    "tag",
    "tagged",
    "timeout",
    "to",
    "tos",
    "ttl",
    "urpf-failed",
    "user",
    "weight",
];

/// A pfctl keyword (`KEYWORDS`).
pub(super) fn is_keyword(w: &str) -> bool {
    KEYWORDS.binary_search(&w).is_ok()
}

/// parse.y's `hashkey`: `0x` and 32 hex digits, or any other string whose
/// MD5 digest is the key.
pub(super) fn hash_key(s: &str) -> Result<HashKey, String> {
    if let Some(hex) = s.strip_prefix("0x") {
        if s.len() != 34 {
            return Err("hex key must be 128 bits (32 hex digits) long".into());
        }
        let mut k = [0u32; 4];
        for (i, w) in k.iter_mut().enumerate() {
            // Byte offsets: a non-ASCII character makes the key invalid
            // (pfctl's sscanf stops at it), never a slice inside it.
            *w = hex
                .get(i * 8..i * 8 + 8)
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(|| "invalid hex key".to_string())?;
        }
        return Ok(HashKey(k));
    }
    let d: [u8; 16] = Md5::digest(s.as_bytes()).into();
    // pfctl stores the digest and converts each word to network order:
    // the words read big-endian from the digest's bytes.
    Ok(HashKey(std::array::from_fn(|i| u32::from_be_bytes([d[i * 4], d[i * 4 + 1], d[i * 4 + 2], d[i * 4 + 3]]))))
}

/// `source-hash` without a key: pfctl draws one with arc4random when it
/// parses the rule; this draws it from the thread's random source.
pub(super) fn random_hash_key() -> HashKey {
    HashKey(std::array::from_fn(|_| softnet_core::rng::random_u32()))
}

/// What `collapse_redirspec` leaves: the pool's address (a list became a
/// table) and interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Collapsed {
    pub addr: Addr,
    pub ifname: Option<String>,
}

/// pfctl's `collapse_redirspec` for one expansion of a rule: picks the
/// addresses of the rule's family (choosing the family when the rule has
/// none), turns a list into a constant table (`new_table` makes it and
/// returns its name), and checks what a pool may hold. `af` is the rule's
/// family so far and is set from the pool's when it had none. Errors are
/// pushed as pfctl prints them; `None` then.
pub(super) fn collapse(
    spec: &RedirSpec,
    routing: bool,
    naf: Option<AddressFamily>,
    af: &mut Option<AddressFamily>,
    errors: &mut Vec<String>,
    new_table: &mut dyn FnMut(Vec<IpNet>) -> String,
) -> Option<Collapsed> {
    let what = if routing { "routing" } else { "translation" };
    let mut chosen: Option<AddressFamily> = None;
    let mut picked: Vec<&RedirHost> = vec![];
    for h in &spec.hosts {
        if routing && matches!(h.addr, Addr::Dynamic { modifier, .. } if modifier != IfAddrModifier::Peer) {
            errors.push("route spec requires :peer with dynamic interface addresses".into());
            return None;
        }
        if let Some(naf) = naf {
            // af-to: the pool is of the family translated to, the rule of
            // the other one
            if h.af().is_some_and(|a| a != naf) {
                errors.push(format!("{what} spec contains addresses that don't match target address family"));
                return None;
            }
            if af.is_none() && chosen.is_none() {
                chosen = Some(match naf {
                    AddressFamily::Inet => AddressFamily::Inet6,
                    AddressFamily::Inet6 => AddressFamily::Inet,
                });
            }
        } else {
            if let Some(haf) = h.af() {
                if af.is_some_and(|a| a != haf) {
                    continue;
                }
                if af.is_none() && chosen.is_some_and(|c| c != haf) {
                    errors.push(format!("{what} spec contains addresses with different address families"));
                    return None;
                }
            }
            if af.is_none() && chosen.is_none() {
                chosen = h.af();
            }
        }
        if !picked.is_empty() {
            if spec.opts.kind != PoolType::None && !spec.opts.kind.is_dynamic() {
                errors.push("pool type is not valid for multiple translation or routing addresses".into());
                return None;
            }
            let prev = picked[picked.len() - 1];
            if !matches!(prev.addr, Addr::Net(_)) && !matches!(h.addr, Addr::Net(_)) {
                errors.push("multiple tables or dynamic interfaces not supported for translation or routing".into());
                return None;
            }
        }
        picked.push(h);
    }
    if af.is_none() {
        *af = chosen;
    }
    match picked.as_slice() {
        [] => {
            errors.push(format!("af mismatch in {what} spec"));
            None
        }
        [one] => Some(Collapsed { addr: one.addr.clone(), ifname: one.ifname.clone() }),
        many => {
            // parse.y's redir_host_list takes only addresses, so a list
            // is made of networks here.
            let nets = many
                .iter()
                .filter_map(|h| match h.addr {
                    Addr::Net(n) => Some(n),
                    _ => None,
                })
                .collect();
            Some(Collapsed { addr: Addr::Table(new_table(nets)), ifname: None })
        }
    }
}

/// pfctl's `DYNIF_MULTIADDR`: an `(if)` without `:0` may stand for several
/// addresses.
pub(super) fn dynif_multiaddr(a: &Addr) -> bool {
    matches!(a, Addr::Dynamic { no_alias: false, .. })
}

/// pfctl's `apply_redirspec`: the ports and the pool type, with their
/// checks. `dst_port` is the rule's destination port (rdr-to `port p:*`
/// maps its range).
pub(super) fn apply(
    c: Collapsed,
    spec: &RedirSpec,
    role: PoolRole,
    dst_port: Option<PortOp>,
    errors: &mut Vec<String>,
) -> Option<Pool> {
    let (a, b, range) = spec.port.map_or((0, 0, false), |p| (p.a, p.b, p.range));
    let mut proxy_port = [a, 0];
    // pfctl passes 2 for a route pool where it means "is rdr": route pools
    // take the rdr branch (their grammar has no port).
    match role {
        PoolRole::Rdr | PoolRole::Route => {
            if b == 0 && range {
                // `p1:*`: as wide as the rule's destination port range
                let (lo, hi) = match dst_port {
                    Some(PortOp::Range(lo, hi) | PortOp::Inside(lo, hi) | PortOp::Outside(lo, hi)) => (lo, hi),
                    _ => (0, 0),
                };
                // pfctl computes this in C and lets it wrap; a range that
                // ends before it starts (a reversed destination range, or
                // one past 65535) maps nothing and would print as a range
                // pfctl refuses: refused here with that range's message.
                match hi.checked_sub(lo).and_then(|w| a.checked_add(w)) {
                    Some(end) => proxy_port[1] = end,
                    None => {
                        errors.push("invalid rdr-to port range".into());
                        return None;
                    }
                }
            } else {
                if range && a > b {
                    errors.push("invalid rdr-to port range".into());
                    return None;
                }
                proxy_port[1] = b;
            }
        }
        PoolRole::Nat => {
            proxy_port[1] = b;
            if proxy_port == [0, 0] {
                proxy_port = [NAT_PORT_LOW, NAT_PORT_HIGH];
            } else if proxy_port[1] == 0 {
                proxy_port[1] = proxy_port[0];
            }
        }
    }
    let mut kind = spec.opts.kind;
    if kind == PoolType::None && (matches!(c.addr, Addr::Table(_)) || dynif_multiaddr(&c.addr)) {
        kind = PoolType::RoundRobin;
    }
    if !kind.is_dynamic() {
        if spec.hosts.iter().any(|h| matches!(h.addr, Addr::Table(_))) {
            errors.push("tables are not supported by pool type".into());
            return None;
        }
        if let Some(Addr::Dynamic { ifname, .. }) = spec.hosts.iter().map(|h| &h.addr).find(|a| dynif_multiaddr(a)) {
            errors.push(format!("interface ({ifname}) is not supported by pool type"));
            return None;
        }
    }
    if spec.opts.static_port {
        if role != PoolRole::Nat {
            errors.push("the 'static-port' option is only valid with nat rules".into());
            return None;
        }
        if proxy_port[0] != NAT_PORT_LOW && proxy_port[1] != NAT_PORT_HIGH {
            errors.push("the 'static-port' option can't be used when specifying a port range".into());
            return None;
        }
        proxy_port = [0, 0];
    }
    Some(Pool { addr: c.addr, ifname: c.ifname, proxy_port, kind, sticky: spec.opts.sticky })
}

/// The binat-to checks of pfctl's `expand_rule` on one expansion: the
/// source and the nat pool must be single addresses of the same size.
/// `af` is the rule's family before the expansion (pfctl's mask test
/// reads it). Returns the errors.
pub(super) fn binat_errors(src: &Endpoint, nat: &Addr, af: Option<AddressFamily>, direction: Direction) -> Vec<String> {
    let mut e = vec![];
    if let Addr::Table(t) = &src.addr {
        e.push(format!("invalid use of table <{t}> as the source address of a binat-to rule"));
    } else if let Addr::Dynamic { ifname, no_alias: false, .. } = &src.addr {
        e.push(format!("invalid use of interface ({ifname}) as the source address of a binat-to rule"));
    } else if !matches!(src.addr, Addr::Net(_) | Addr::Any | Addr::Dynamic { .. })
        || !matches!(nat, Addr::Net(_) | Addr::Any | Addr::Dynamic { .. })
    {
        e.push("binat-to requires a specified source and redirect address".into());
    }
    if dynif_multiaddr(&src.addr) || dynif_multiaddr(nat) {
        e.push("dynamic interfaces must be used with :0 in a binat-to rule".into());
    }
    // pfctl tests the masks of the addresses as stored: `any`, tables and
    // the like have none (a dynamic address's mask is all ones).
    let mask_zero = |a: &Addr| match a {
        Addr::Net(n) => n.prefix == 0,
        Addr::Dynamic { .. } => false,
        _ => true,
    };
    // pfctl tests them only when the family was decided before the
    // expansion (PF_AZERO with af 0 is false): `from any … binat-to`
    // without one passes there, and its inbound half prints `rdr-to any`,
    // which no pfctl parses back (the redirection of `any` would keep
    // every address as it is). softnet refuses a source of `any` whatever
    // the family, with the message pfctl gives when it knows the family.
    if (af.is_some() && (mask_zero(&src.addr) || mask_zero(nat))) || matches!(src.addr, Addr::Any) {
        e.push("source and redir addresess must have a matching network mask in binat-rule".into());
    }
    if matches!(nat, Addr::Table(_)) {
        e.push("tables cannot be used as the redirect address of a binat-to rule".into());
    }
    if direction != Direction::Both {
        e.push("binat-to cannot be specified with a direction".into());
    }
    e
}

impl Parser<'_> {
    /// parse.y's `redirpool pool_opts` (`routespec pool_opts` when
    /// `routing`): an address or `{ list }` (an interface name stands for
    /// its addresses; a list takes only addresses), `port p[:p2|:*]`, and
    /// the pool options. Route options also take `(if addr)`.
    pub(super) fn redir_spec(&mut self, c: &mut Cursor, routing: bool) -> PResult<RedirSpec> {
        let mut hosts = vec![];
        if c.eat_punct("{") {
            loop {
                if c.eat_punct("}") {
                    break;
                }
                if c.at_end() {
                    return c.syntax();
                }
                let line = c.line();
                let hs = self.redir_host(c, routing)?;
                if hs.iter().any(|h| !matches!(h.addr, Addr::Net(_))) {
                    return Err((line, "only addresses can be listed for redirection pools ".into()));
                }
                hosts.extend(hs);
                c.eat_punct(",");
            }
            if hosts.is_empty() {
                return c.syntax();
            }
        } else {
            hosts = self.redir_host(c, routing)?;
        }
        let port = if !routing && c.eat_word("port") { Some(Self::redir_port(c)?) } else { None };
        let mut opts = PoolOpts::default();
        while let Some(w) = c.peek_word() {
            let line = c.line();
            let r = match w {
                "bitmask" => opts.add(PoolType::Bitmask),
                "random" => opts.add(PoolType::Random),
                "round-robin" => opts.add(PoolType::RoundRobin),
                "least-states" => opts.add(PoolType::LeastStates),
                "static-port" => opts.set_static_port(),
                "sticky-address" => opts.set_sticky(),
                "source-hash" => {
                    c.next();
                    // `hashkey`: any string that is not a keyword
                    let key = match c.peek() {
                        Some(t) if t.word().is_some_and(|w| !is_keyword(w)) || matches!(t.tok, Tok::Quoted(_)) => {
                            let s = c.string()?;
                            hash_key(&s).map_err(|m| (line, m))?
                        }
                        _ => random_hash_key(),
                    };
                    opts.add(PoolType::SourceHash(key)).map_err(|m| (line, m))?;
                    continue;
                }
                _ => break,
            };
            r.map_err(|m| (line, m))?;
            c.next();
        }
        Ok(RedirSpec { hosts, port, opts, binat: false })
    }

    /// One pool address: pfctl's `host` (no `!`, no `no-route`), or a route
    /// option's `(if addr)`.
    fn redir_host(&mut self, c: &mut Cursor, routing: bool) -> PResult<Vec<RedirHost>> {
        let line = c.line();
        if c.peek().is_some_and(|t| t.is_word("no-route") || t.is_word("urpf-failed")) {
            return c.syntax();
        }
        if routing
            && c.peek().is_some_and(|t| t.is_punct("("))
            && c.peek_at(1).is_some_and(|t| t.string().is_some())
            && c.peek_at(2).is_some_and(|t| !t.is_punct(")"))
        {
            c.next();
            let ifname = c.string()?;
            if !self.resolver.exists(&ifname) {
                return Err((line, format!("routeto: unknown interface {ifname}")));
            }
            let hs = self.host(c)?;
            c.expect_punct(")")?;
            return Ok(hs.into_iter().map(|h| RedirHost { addr: h.addr, ifname: Some(ifname.clone()) }).collect());
        }
        // `addr@if` (pfctl's host()): the interface a route goes out on
        if let Some((a, ifname)) = c.peek().and_then(|t| t.word()).and_then(|w| w.split_once('@')) {
            if !routing {
                return Err((line, "@if not permitted for translation".into()));
            }
            if !self.resolver.exists(ifname) {
                return Err((line, format!("routeto: unknown interface {ifname}")));
            }
            let (a, ifname) = (a.to_string(), ifname.to_string());
            c.next();
            let mask = if c.eat_punct("/") { Some(c.number()?.min(255) as u8) } else { None };
            let hs = self.host_or_error(&a, mask, line)?;
            return Ok(hs.into_iter().map(|h| RedirHost { addr: h.addr, ifname: Some(ifname.clone()) }).collect());
        }
        Ok(self.host(c)?.into_iter().map(|h| RedirHost { addr: h.addr, ifname: None }).collect())
    }

    /// parse.y's `portstar`: `p`, `p1:p2` or `p1:*`.
    fn redir_port(c: &mut Cursor) -> PResult<RedirPort> {
        let line = c.line();
        let w = c.string()?;
        let port = |s: &str| port_number(s).map_err(|m| (line, m));
        Ok(match w.split_once(':') {
            Some((a, "*")) => RedirPort { a: port(a)?, b: 0, range: true },
            Some((a, b)) => RedirPort { a: port(a)?, b: port(b)?, range: true },
            None => RedirPort { a: port(&w)?, b: 0, range: false },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_keys_are_md5_digests_printed_in_byte_order() {
        // pf36.ok: source-hash foobarlicious
        let HashKey(k) = hash_key("foobarlicious").unwrap();
        assert_eq!(format!("{:08x}{:08x}{:08x}{:08x}", k[0], k[1], k[2], k[3]), "4da8e393fd22f577426cfdf7fe52d3b0");
    }

    #[test]
    fn keywords_are_sorted_for_the_search() {
        assert!(KEYWORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_keyword("tag") && is_keyword("af-to") && !is_keyword("foobarlicious"));
    }

    #[test]
    fn hex_keys_need_32_digits() {
        assert_eq!(
            hash_key("0x0123456789ABCDEF0123456789abcdef").unwrap(),
            HashKey([0x01234567, 0x89abcdef, 0x01234567, 0x89abcdef])
        );
        assert_eq!(hash_key("0x0123").unwrap_err(), "hex key must be 128 bits (32 hex digits) long");
        assert_eq!(hash_key("0x0123456789ABCDEF0123456789abcdeg").unwrap_err(), "invalid hex key");
        // 34 bytes with a two-byte character across a word's edge (the
        // long pf_conf fuzz run's panic, fuzz/regressions/pf_conf).
        assert_eq!(hash_key("0x0123456\u{27e}9abcdef0123456789abcdef").unwrap_err(), "invalid hex key");
    }
}
