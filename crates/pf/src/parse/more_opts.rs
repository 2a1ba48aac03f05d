//! The filter options of parse.y's `filter_opt` besides matching on
//! addresses, flags and state: `user`, `group`, `prio`, `probability`,
//! `once`, `received-on`, `divert-*`, `queue`, `set (…)`, `fragment`,
//! `scrub (…)`, `max-pkt-rate`, and the `tos` values of `map_tos`. Each
//! keeps pfctl's checks and messages.

use super::*;

/// What a rule says about diverting, before the rule's address family is
/// known (`divert-to` may name a host with several addresses).
#[derive(Debug, Clone)]
pub(super) enum DivertSpec {
    To { addrs: Vec<IpAddr>, port: u16 },
    Reply,
    Packet { port: u16 },
}

/// IFQ_MAXPRIO
const MAX_PRIO: u64 = 7;

/// parse.y's `map_tos`: DiffServ code points and the old TOS names (case
/// does not matter).
fn tos_by_name(s: &str) -> Option<u8> {
    const TOS: &[(&str, u8)] = &[
        ("af11", 0x28),
        ("af12", 0x30),
        ("af13", 0x38),
        ("af21", 0x48),
        ("af22", 0x50),
        ("af23", 0x58),
        ("af31", 0x68),
        ("af32", 0x70),
        ("af33", 0x78),
        ("af41", 0x88),
        ("af42", 0x90),
        ("af43", 0x98),
        ("critical", 0xa0),
        ("cs0", 0x00),
        ("cs1", 0x20),
        ("cs2", 0x40),
        ("cs3", 0x60),
        ("cs4", 0x80),
        ("cs5", 0xa0),
        ("cs6", 0xc0),
        ("cs7", 0xe0),
        ("ef", 0xb8),
        ("inetcontrol", 0xc0),
        ("lowdelay", 0x10),
        ("netcontrol", 0xe0),
        ("reliability", 0x04),
        ("throughput", 0x08),
    ];
    TOS.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)).map(|&(_, v)| v)
}

impl Parser<'_> {
    /// parse.y's `tos`: a name, `0x` hex, or a number, 0..255.
    pub(super) fn tos_value(c: &mut Cursor) -> PResult<u8> {
        let line = c.line();
        let t = c.peek().ok_or((line, "syntax error".to_string()))?;
        let w = c.string()?;
        let v = if t.is_number() {
            parse_number(&w).filter(|v| *v <= 255).ok_or((line, format!("illegal tos value {w}")))?
        } else if let Some(v) = tos_by_name(&w) {
            v as u64
        } else if let Some(h) = w.strip_prefix("0x") {
            u64::from_str_radix(h, 16).ok().filter(|v| *v <= 255).ok_or((line, format!("illegal tos value {w}")))?
        } else {
            return Err((line, format!("illegal tos value {w}")));
        };
        Ok(v as u8)
    }

    /// A NUMBER token (pfctl's lexer), else a syntax error.
    fn number_token(c: &mut Cursor) -> PResult<i64> {
        let line = c.line();
        match c.peek() {
            Some(t) if t.is_number() => {
                let w = c.word()?;
                w.parse::<i64>().map_err(|_| (line, format!("\"{w}\" invalid number: too large")))
            }
            _ => c.syntax(),
        }
    }

    /// A STRING token: a word that is not a NUMBER, or a quoted string.
    pub(super) fn string_token(c: &mut Cursor) -> PResult<String> {
        match c.peek() {
            Some(t) if t.is_number() => c.syntax(),
            _ => c.string(),
        }
    }

    /// One `user`/`group` item: `name`, `N`, `unknown`, `op id`, `a >< b`.
    fn id_item(c: &mut Cursor, user: bool) -> PResult<IdOp> {
        let what = if user { "user" } else { "group" };
        let id = |c: &mut Cursor| -> PResult<u32> {
            let line = c.line();
            if c.peek().is_some_and(|t| t.is_number()) {
                let n = Self::number_token(c)?;
                if n < 0 || n >= ID_UNKNOWN as i64 {
                    return Err((line, format!("illegal {} value {n}", if user { "uid" } else { "gid" })));
                }
                return Ok(n as u32);
            }
            let w = c.string()?;
            if w == "unknown" {
                return Ok(ID_UNKNOWN);
            }
            let found = if user { names::uid_by_name(&w) } else { names::gid_by_name(&w) };
            found.ok_or((line, format!("unknown {what} {w}")))
        };
        let line = c.line();
        let unknown_needs_eq = || (line, format!("{what} unknown requires operator = or !="));
        let unary = ["=", "!=", "<", "<=", ">", ">="].into_iter().find(|p| c.peek().is_some_and(|t| t.is_punct(p)));
        if let Some(op) = unary {
            c.next();
            let v = id(c)?;
            if v == ID_UNKNOWN && op != "=" && op != "!=" {
                return Err(unknown_needs_eq());
            }
            return Ok(match op {
                "=" => IdOp::Eq(v),
                "!=" => IdOp::Ne(v),
                "<" => IdOp::Lt(v),
                "<=" => IdOp::Le(v),
                ">" => IdOp::Gt(v),
                _ => IdOp::Ge(v),
            });
        }
        let a = id(c)?;
        for (p, inside) in [("><", true), ("<>", false)] {
            if c.eat_punct(p) {
                let b = id(c)?;
                if a == ID_UNKNOWN || b == ID_UNKNOWN {
                    return Err(unknown_needs_eq());
                }
                return Ok(if inside { IdOp::Inside(a, b) } else { IdOp::Outside(a, b) });
            }
        }
        Ok(IdOp::Eq(a))
    }

    /// `portplain`: a port number or service name, no range.
    fn plain_port(c: &mut Cursor) -> PResult<u16> {
        let line = c.line();
        let w = c.string()?;
        if w.contains(':') {
            return Err((line, format!("port is invalid: {w}")));
        }
        super::addr::port_number(&w).map_err(|m| (line, m))
    }

    /// `qname`: `q`, `(q)`, `(q, pq)`; each must be defined already.
    fn queue_name(&mut self, c: &mut Cursor) -> PResult<QueueAssign> {
        let line = c.line();
        let defined = |p: &Self, n: &str| -> PResult<()> {
            if p.rs.queues.iter().any(|q| q.name == n) || p.known_queues.iter().any(|q| q == n) {
                Ok(())
            } else {
                Err((line, format!("queue {n} is not defined")))
            }
        };
        if c.eat_punct("(") {
            let name = Self::string_token(c)?;
            defined(self, &name)?;
            let prio_name = if c.eat_punct(")") {
                None
            } else {
                c.eat_punct(",");
                let p = Self::string_token(c)?;
                c.expect_punct(")")?;
                defined(self, &p)?;
                Some(p)
            };
            return Ok(QueueAssign { name, prio_name });
        }
        let name = Self::string_token(c)?;
        defined(self, &name)?;
        Ok(QueueAssign { name, prio_name: None })
    }

    /// `prio N` or `prio (a, b)` of `set`.
    fn set_prio(c: &mut Cursor) -> PResult<(u8, u8)> {
        let line = c.line();
        let bad = || (line, format!("prio must be 0 - {MAX_PRIO}"));
        if c.eat_punct("(") {
            let a = Self::number_token(c)?;
            c.eat_punct(",");
            let b = Self::number_token(c)?;
            c.expect_punct(")")?;
            if !(0..=MAX_PRIO as i64).contains(&a) || !(0..=MAX_PRIO as i64).contains(&b) {
                return Err(bad());
            }
            return Ok((a as u8, b as u8));
        }
        let n = Self::number_token(c)?;
        if !(0..=MAX_PRIO as i64).contains(&n) {
            return Err(bad());
        }
        Ok((n as u8, n as u8))
    }

    /// One `filter_set` item: prio, queue, tos, delay.
    fn filter_set(&mut self, c: &mut Cursor, spec: &mut RuleSpec) -> PResult<()> {
        let line = c.line();
        match c.word()?.as_str() {
            "prio" => {
                let p = Self::set_prio(c)?;
                if spec.set.prio.is_some() {
                    return Err((line, "prio cannot be redefined".into()));
                }
                spec.set.prio = Some(p);
            }
            "queue" => {
                let q = self.queue_name(c)?;
                if spec.set.queue.is_some() {
                    return Err((line, "queue cannot be redefined".into()));
                }
                spec.set.queue = Some(q);
            }
            "tos" => {
                let t = Self::tos_value(c)?;
                if spec.set.tos.is_some() {
                    return Err((line, "tos cannot be respecified".into()));
                }
                spec.set.tos = Some(t);
            }
            "delay" => {
                let n = Self::number_token(c)?;
                if spec.set.delay.is_some() {
                    return Err((line, "delay cannot be respecified".into()));
                }
                if !(0..=0xffff).contains(&n) {
                    return Err((line, format!("illegal delay value {n} (0-65535)")));
                }
                spec.set.delay = Some(n as u16);
            }
            _ => return Err((line, "syntax error".into())),
        }
        Ok(())
    }

    /// `scrub (…)`: its options, separated by blanks or commas.
    fn scrub_opts(c: &mut Cursor) -> PResult<Scrub> {
        c.expect_punct("(")?;
        let mut s = Scrub::default();
        let (mut min_ttl, mut max_mss) = (false, false);
        loop {
            let line = c.line();
            match c.word()?.as_str() {
                "no-df" => {
                    if s.no_df {
                        return Err((line, "no-df cannot be respecified".into()));
                    }
                    s.no_df = true;
                }
                "min-ttl" => {
                    let n = Self::number_token(c)?;
                    if min_ttl {
                        return Err((line, "min-ttl cannot be respecified".into()));
                    }
                    if !(0..=255).contains(&n) {
                        return Err((line, format!("illegal min-ttl value {n}")));
                    }
                    min_ttl = true;
                    s.min_ttl = (n != 0).then_some(n as u8);
                }
                "max-mss" => {
                    let n = Self::number_token(c)?;
                    if max_mss {
                        return Err((line, "max-mss cannot be respecified".into()));
                    }
                    if !(0..=65535).contains(&n) {
                        return Err((line, format!("illegal max-mss value {n}")));
                    }
                    max_mss = true;
                    s.max_mss = (n != 0).then_some(n as u16);
                }
                "reassemble" => {
                    let w = Self::string_token(c)?;
                    if !w.eq_ignore_ascii_case("tcp") {
                        return Err((line, format!("scrub reassemble supports only tcp, not '{w}'")));
                    }
                    if s.reassemble_tcp {
                        return Err((line, "reassemble tcp cannot be respecified".into()));
                    }
                    s.reassemble_tcp = true;
                }
                "random-id" => {
                    if s.random_id {
                        return Err((line, "random-id cannot be respecified".into()));
                    }
                    s.random_id = true;
                }
                _ => return Err((line, "syntax error".into())),
            }
            if c.eat_punct(")") {
                return Ok(s);
            }
            c.eat_punct(",");
        }
    }

    /// parse.y's `probability`: `0.5`, `50%`, or a NUMBER.
    fn probability(c: &mut Cursor) -> PResult<u32> {
        let line = c.line();
        let w = c.string()?;
        let (num, pct) = match w.strip_suffix('%') {
            Some(n) => (n, true),
            None => (w.as_str(), false),
        };
        let mut p: f64 = num.parse().map_err(|_| (line, format!("invalid probability: {w}")))?;
        if pct {
            p *= 0.01;
        }
        probability_from(p).ok_or((line, format!("invalid probability: {}%", p * 100.0)))
    }

    /// The filter options this module knows; `Ok(false)` if `w` is none of
    /// them. `negated`: a `!` came before (only `received-on` takes one
    /// here).
    pub(super) fn more_filter_opt(
        &mut self,
        c: &mut Cursor,
        spec: &mut RuleSpec,
        w: &str,
        line: usize,
        negated: bool,
    ) -> PResult<bool> {
        match w {
            "user" | "group" => {
                let user = w == "user";
                let mut items = c.list(|c| Self::id_item(c, user))?;
                // parse.y puts a later `user` clause's list in front.
                let list = if user { &mut spec.users } else { &mut spec.groups };
                items.append(list);
                *list = items;
            }
            "prio" => {
                let n = Self::number_token(c)?;
                if spec.prio.is_some() {
                    return Err((line, "prio cannot be redefined".into()));
                }
                if !(0..=MAX_PRIO as i64).contains(&n) {
                    return Err((line, format!("prio must be 0 - {MAX_PRIO}")));
                }
                spec.prio = Some(n as u8);
            }
            "probability" => spec.probability = Some(Self::probability(c)?),
            "once" => spec.once = true,
            "fragment" => spec.fragment = true,
            "received-on" => {
                if spec.received_on.is_some() {
                    return Err((line, "cannot respecify received-on".into()));
                }
                let name = Self::string_token(c)?;
                spec.received_on = Some(ReceivedOn { name, negated });
            }
            "divert-to" | "divert-reply" | "divert-packet" => {
                if spec.divert_spec.is_some() {
                    return Err((line, "more than one divert option".into()));
                }
                spec.divert_spec = Some(match w {
                    "divert-to" => {
                        let host = c.string()?;
                        let addrs = self.divert_host(&host);
                        if addrs.is_empty() {
                            return Err((line, format!("could not parse divert address: {host}")));
                        }
                        c.expect_word("port")?;
                        let port = Self::plain_port(c)?;
                        if port == 0 {
                            return Err((line, "invalid divert port: 0".into()));
                        }
                        DivertSpec::To { addrs, port }
                    }
                    "divert-reply" => DivertSpec::Reply,
                    _ => {
                        c.expect_word("port")?;
                        let port = Self::plain_port(c)?;
                        if port == 0 {
                            return Err((line, "invalid divert port: 0".into()));
                        }
                        // With IP reassembly on, pfctl also reassembles TCP.
                        if self.rs.options.reassemble.enabled {
                            spec.scrub.reassemble_tcp = true;
                        }
                        DivertSpec::Packet { port }
                    }
                });
            }
            "queue" => {
                let q = self.queue_name(c)?;
                if spec.set.queue.is_some() {
                    return Err((line, "queue cannot be redefined".into()));
                }
                spec.set.queue = Some(q);
            }
            "set" => {
                if c.eat_punct("(") {
                    loop {
                        self.filter_set(c, spec)?;
                        if c.eat_punct(")") {
                            break;
                        }
                        c.eat_punct(",");
                    }
                } else {
                    self.filter_set(c, spec)?;
                }
            }
            "scrub" => {
                let s = Self::scrub_opts(c)?;
                spec.scrub.no_df = s.no_df;
                spec.scrub.min_ttl = s.min_ttl;
                spec.scrub.random_id = s.random_id;
                spec.scrub.max_mss = s.max_mss;
                spec.scrub.reassemble_tcp |= s.reassemble_tcp;
            }
            "max-pkt-rate" => {
                let n = Self::number_token(c)?;
                c.expect_punct("/")?;
                let s = Self::number_token(c)?;
                if !(0..=u32::MAX as i64).contains(&n) || !(0..=u32::MAX as i64).contains(&s) {
                    return Err((line, "only positive values permitted".into()));
                }
                if spec.max_pkt_rate.is_some() {
                    return Err((line, "cannot respecify max-pkt-rate".into()));
                }
                spec.max_pkt_rate = Some((n as u32, s as u32));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A divert-to host as pfctl's `host()` finds it: an address, an
    /// interface's addresses, or a host name.
    fn divert_host(&self, s: &str) -> Vec<IpAddr> {
        if let Ok(a) = s.parse::<IpAddr>() {
            return vec![a];
        }
        if self.resolver.exists(s) {
            return self.if_lookup(s, IfAddrModifier::Address, false).into_iter().map(|n| n.addr).collect();
        }
        self.resolver.host_addresses(s)
    }
}

/// parse.y's `expand_divertspec`, run with the rule's address family:
/// the divert for the rule, its address family, or the error.
pub(super) fn expand_divert(
    d: &DivertSpec,
    direction: Direction,
    af: Option<AddressFamily>,
) -> Result<(Divert, Option<AddressFamily>), String> {
    match d {
        DivertSpec::To { addrs, port } => {
            if direction == Direction::Out {
                return Err("divert-to used with outgoing rule".into());
            }
            let pick = match af {
                Some(af) => addrs.iter().find(|a| AddressFamily::of(**a) == af),
                None => addrs.first(),
            };
            let Some(addr) = pick else {
                return Err("divert-to address family mismatch".into());
            };
            Ok((Divert::To { addr: *addr, port: *port }, Some(AddressFamily::of(*addr))))
        }
        DivertSpec::Reply => {
            if direction == Direction::In {
                return Err("divert-reply used with incoming rule".into());
            }
            Ok((Divert::Reply, af))
        }
        DivertSpec::Packet { port } => Ok((Divert::Packet { port: *port }, af)),
    }
}
