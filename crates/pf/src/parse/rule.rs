//! Filter rules: action, block/return, log, the filter options after
//! `from … to …` (parse.y's `pfrule`, `filter_opts`).

use super::*;

impl Parser<'_> {
    // ----- rules -----

    pub(super) fn rule(&mut self, c: &mut Cursor) -> PResult<()> {
        let action = match c.word()?.as_str() {
            "pass" => Action::Pass,
            "match" => Action::Match,
            _ => Action::Block(self.block_spec(c)?),
        };
        let mut spec = RuleSpec::new(action);
        if c.eat_word("in") {
            spec.direction = Direction::In;
        } else if c.eat_word("out") {
            spec.direction = Direction::Out;
        }
        // log and quick, either order
        for _ in 0..2 {
            if c.peek_word() == Some("log") && spec.log.is_none() {
                c.next();
                spec.log = Some(Self::log_opts(c)?);
            } else if !spec.quick && c.eat_word("quick") {
                spec.quick = true;
            }
        }
        self.rule_match(c, &mut spec)?;
        if let Some(d) = &spec.divert_spec {
            // decide_address_family, then expand_divertspec
            let af = spec
                .af
                .or_else(|| super::expand::decide_af(&spec.src_hosts))
                .or_else(|| super::expand::decide_af(&spec.dst_hosts));
            let (divert, af) = more_opts::expand_divert(d, spec.direction, af).map_err(|m| (c.end_line, m))?;
            spec.divert = Some(divert);
            spec.af = spec.af.or(af);
        }
        self.expand(spec, c.end_line);
        Ok(())
    }

    /// A rule's words after `in|out`, `log` and `quick`: `on`, the
    /// address family, `proto`, `from … to …` and the filter options
    /// (shared by `pass`/`block`/`match` and `anchor` rules).
    pub(super) fn rule_match(&mut self, c: &mut Cursor, spec: &mut RuleSpec) -> PResult<()> {
        if c.eat_word("on") {
            spec.interfaces = c.list(|c| {
                let negated = c.eat_punct("!");
                let name = c.ifname()?;
                Ok(Some(InterfaceMatch { name, negated }))
            })?;
        }
        if c.eat_word("inet") {
            spec.af = Some(AddressFamily::Inet);
        } else if c.eat_word("inet6") {
            spec.af = Some(AddressFamily::Inet6);
        }
        if c.eat_word("proto") {
            spec.protos = c.list(|c| {
                let line = c.line();
                let w = c.string()?;
                let p = match parse_number(&w) {
                    Some(n) if n > 255 => return Err((line, "protocol outside range".into())),
                    Some(n) => n as u8,
                    None => names::proto_by_name(&w).ok_or((line, format!("unknown protocol {w}")))?,
                };
                if p == 0 {
                    return Err((line, "proto 0 cannot be used".into()));
                }
                Ok(Some(p))
            })?;
        }
        if c.eat_word("all") {
        } else {
            if c.eat_word("from") {
                let (h, p) = self.ipportspec(c)?;
                spec.src_hosts = h;
                spec.src_ports = p;
            }
            if c.eat_word("to") {
                let (h, p) = self.ipportspec(c)?;
                spec.dst_hosts = h;
                spec.dst_ports = p;
            }
        }
        self.filter_opts(c, spec)?;
        // parse.y's filteropts_to_rule
        if spec.once && (!matches!(spec.action, Action::Pass | Action::Block(_)) || spec.anchor.is_some()) {
            return Err((c.end_line, "'once' only applies to pass/block rules".into()));
        }
        if let Some(f) = spec.flags {
            if f.set & f.mask != f.set {
                return Err((c.end_line, "flags always false".into()));
            }
        }
        // pfctl: flags on a rule whose protocol list names no tcp.
        let has_flags = spec.flags.is_some_and(|f| f.set != 0 || f.mask != 0);
        let any_proto = spec.protos.iter().any(|p| p.is_none());
        if has_flags && !any_proto && !spec.protos.contains(&Some(IPPROTO_TCP)) {
            return Err((c.end_line, "flags only apply to tcp".into()));
        }
        Ok(())
    }

    pub(super) fn block_spec(&mut self, c: &mut Cursor) -> PResult<BlockAction> {
        let line = c.line();
        let default_icmp =
            BlockAction::ReturnIcmp { code: names::ICMP_UNREACH_PORT, code6: names::ICMP6_DST_UNREACH_NOPORT };
        Ok(match c.peek_word() {
            Some("drop") => {
                c.next();
                BlockAction::Drop
            }
            Some("return") => {
                c.next();
                BlockAction::Return
            }
            Some("return-rst") => {
                c.next();
                let mut ttl = 0;
                if c.eat_punct("(") {
                    c.expect_word("ttl")?;
                    let n = c.number()?;
                    if n > 255 {
                        return Err((line, "illegal ttl value".into()));
                    }
                    ttl = n as u8;
                    c.expect_punct(")")?;
                }
                BlockAction::ReturnRst { ttl }
            }
            Some("return-icmp") => {
                c.next();
                let BlockAction::ReturnIcmp { mut code, mut code6 } = default_icmp else { unreachable!() };
                if c.eat_punct("(") {
                    code = Self::icmp_return_code(c, false)?;
                    if c.eat_punct(",") {
                        code6 = Self::icmp_return_code(c, true)?;
                    }
                    c.expect_punct(")")?;
                }
                BlockAction::ReturnIcmp { code, code6 }
            }
            Some("return-icmp6") => {
                c.next();
                let BlockAction::ReturnIcmp { code, mut code6 } = default_icmp else { unreachable!() };
                if c.eat_punct("(") {
                    code6 = Self::icmp_return_code(c, true)?;
                    c.expect_punct(")")?;
                }
                BlockAction::ReturnIcmp { code, code6 }
            }
            _ => match self.rs.options.block_policy {
                BlockPolicy::Drop => BlockAction::Drop,
                BlockPolicy::Return => BlockAction::Return,
            },
        })
    }

    pub(super) fn icmp_return_code(c: &mut Cursor, v6: bool) -> PResult<u8> {
        let line = c.line();
        let w = c.string()?;
        let ty = if v6 { names::ICMP6_DST_UNREACH } else { names::ICMP_UNREACH };
        match parse_number(&w) {
            Some(n) if n > 255 => Err((line, format!("illegal icmp-code {n}"))),
            Some(n) => Ok(n as u8),
            None => names::icmp_code_by_name(ty, &w, v6).ok_or((line, format!("unknown icmp-code {w}"))),
        }
    }

    pub(super) fn log_opts(c: &mut Cursor) -> PResult<LogOpts> {
        let mut l = LogOpts::default();
        if c.eat_punct("(") {
            loop {
                let line = c.line();
                match c.word()?.as_str() {
                    "all" => l.all = true,
                    "matches" => l.matches = true,
                    "user" => l.user = true,
                    "to" => {
                        // pfctl: `pflog` followed by 0..255; `to pflog0` is
                        // the default and is kept as no interface at all, so
                        // it prints (and compares) like plain `log`.
                        let w = c.word()?;
                        let Some(num) = w.strip_prefix("pflog") else {
                            return Err((line, format!("{w}: should be a pflog interface")));
                        };
                        let n = match parse_number(num) {
                            Some(n) if n <= 255 => n as u32,
                            Some(_) => return Err((line, format!("{w}: too large"))),
                            None => return Err((line, format!("{w}: invalid"))),
                        };
                        l.to_pflog = (n != 0).then_some(n);
                    }
                    _ => return Err((line, "syntax error".into())),
                }
                if c.eat_punct(")") {
                    break;
                }
                c.eat_punct(",");
            }
        }
        Ok(l)
    }

    pub(super) fn filter_opts(&mut self, c: &mut Cursor, spec: &mut RuleSpec) -> PResult<()> {
        let once = |set: bool, line: usize, what: &str| -> PResult<()> {
            if set {
                Err((line, format!("{what} cannot be redefined")))
            } else {
                Ok(())
            }
        };
        while !c.at_end() {
            let line = c.line();
            if c.eat_punct("!") {
                // `! tagged NAME`, `! received-on IF`
                if c.eat_word("tagged") {
                    spec.tagged = Some(TagMatch { name: Self::tag_name(c)?, negated: true });
                    continue;
                }
                if c.eat_word("received-on") && self.more_filter_opt(c, spec, "received-on", line, true)? {
                    continue;
                }
                return c.syntax();
            }
            let w = c.word()?;
            match w.as_str() {
                "flags" => {
                    once(spec.flags.is_some(), line, "flags")?;
                    spec.flags = Some(if c.eat_word("any") {
                        TcpFlags::default()
                    } else {
                        let set = if c.peek().is_some_and(|t| t.is_punct("/")) { 0 } else { Self::flag_word(c)? };
                        c.expect_punct("/")?;
                        let mask = Self::flag_word(c)?;
                        TcpFlags { set, mask }
                    });
                }
                "icmp-type" | "icmp6-type" => {
                    once(spec.icmp.iter().any(|i| i.is_some()), line, "icmp-type")?;
                    let v6 = w == "icmp6-type";
                    let proto = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
                    spec.icmp = c.list(|c| Ok(Some((proto, Self::icmp_item(c, v6)?))))?;
                }
                "tos" => {
                    let v = Self::tos_value(c)?;
                    once(spec.tos.is_some(), line, "tos")?;
                    // pf matches on a non-zero tos only
                    spec.tos = (v != 0).then_some(v);
                }
                "allow-opts" => spec.allow_opts = true,
                "label" => {
                    let l = Self::string_token(c)?;
                    once(spec.label.is_some(), line, "label")?;
                    if l.len() >= 64 {
                        return Err((line, "rule label too long (max 63 chars)".into()));
                    }
                    spec.label = Some(l);
                }
                // pfctl: a later tag or tagged replaces an earlier one.
                "tag" => spec.tag = Some(Self::tag_name(c)?),
                "tagged" => spec.tagged = Some(TagMatch { name: Self::tag_name(c)?, negated: false }),
                "rtable" => {
                    once(spec.rtable.is_some(), line, "rtable")?;
                    let n = c.number()?;
                    if n > 255 {
                        return Err((line, "invalid rtable id".into()));
                    }
                    spec.rtable = Some(n as u32);
                }
                "no" => {
                    c.expect_word("state")?;
                    once(spec.keep_state.is_some(), line, "state")?;
                    spec.keep_state = Some(StateMode::NoState);
                }
                "keep" | "modulate" | "synproxy" => {
                    c.expect_word("state")?;
                    once(spec.keep_state.is_some(), line, "state")?;
                    spec.keep_state = Some(match w.as_str() {
                        "keep" => StateMode::Keep,
                        "modulate" => StateMode::Modulate,
                        _ => StateMode::Synproxy,
                    });
                    if c.eat_punct("(") {
                        let mut items = vec![];
                        loop {
                            items.push(Self::state_opt(c)?);
                            if c.eat_punct(")") {
                                break;
                            }
                            c.eat_punct(",");
                        }
                        let (opts, statelock) = Self::state_opts(items, line)?;
                        spec.state_opts = opts;
                        spec.statelock = statelock;
                    }
                }
                "nat-to" | "binat-to" => {
                    if spec.nat.is_some() {
                        return Err((line, "cannot respecify nat-to/binat-to".into()));
                    }
                    let mut r = self.redir_spec(c, false)?;
                    if w == "binat-to" {
                        r.binat = true;
                        r.opts.static_port = true;
                    }
                    spec.nat = Some(r);
                }
                "rdr-to" => {
                    if spec.rdr.is_some() {
                        return Err((line, "cannot respecify rdr-to".into()));
                    }
                    spec.rdr = Some(self.redir_spec(c, false)?);
                }
                "af-to" => {
                    if spec.nat.is_some() {
                        return Err((line, "cannot respecify af-to".into()));
                    }
                    let af = match c.peek_word() {
                        Some("inet") => AddressFamily::Inet,
                        Some("inet6") => AddressFamily::Inet6,
                        _ => return Err((line, "no target address family specified".into())),
                    };
                    c.next();
                    c.expect_word("from")?;
                    spec.nat = Some(self.redir_spec(c, false)?);
                    if c.eat_word("to") {
                        spec.rdr = Some(self.redir_spec(c, false)?);
                    }
                    spec.af_to = Some(af);
                }
                "route-to" | "reply-to" | "dup-to" => {
                    if spec.route.is_some() {
                        return Err((line, "cannot respecify route-to/reply-to/dup-to".into()));
                    }
                    let kind = match w.as_str() {
                        "route-to" => RouteKind::RouteTo,
                        "reply-to" => RouteKind::ReplyTo,
                        _ => RouteKind::DupTo,
                    };
                    spec.route = Some((kind, self.redir_spec(c, true)?));
                }
                "os" => return Err((line, format!("{w} not supported yet"))),
                other if self.more_filter_opt(c, spec, other, line, false)? => {}
                // the word is where the grammar failed
                _ => {
                    c.pos -= 1;
                    return c.syntax();
                }
            }
        }
        Ok(())
    }

    /// A `tag`/`tagged` name: a STRING of at most 63 characters
    /// (PF_TAG_NAME_SIZE).
    fn tag_name(c: &mut Cursor) -> PResult<String> {
        let line = c.line();
        let t = Self::string_token(c)?;
        if t.len() >= 64 {
            return Err((line, "tag too long, max 63 chars".into()));
        }
        Ok(t)
    }

    pub(super) fn flag_word(c: &mut Cursor) -> PResult<u8> {
        let line = c.line();
        let w = c.word()?;
        names::parse_tcp_flags(&w).ok_or((line, format!("bad flags {w}")))
    }

    pub(super) fn icmp_item(c: &mut Cursor, v6: bool) -> PResult<IcmpMatch> {
        let line = c.line();
        let w = c.string()?;
        let icmp_type = match parse_number(&w) {
            Some(n) if n > 255 => return Err((line, format!("illegal icmp-type {n}"))),
            Some(n) => n as u8,
            None => names::icmp_type_by_name(&w, v6).ok_or((line, format!("unknown icmp-type {w}")))?,
        };
        let code = if c.eat_word("code") {
            let line = c.line();
            let w = c.string()?;
            Some(match parse_number(&w) {
                Some(n) if n > 255 => return Err((line, format!("illegal icmp-code {n}"))),
                Some(n) => n as u8,
                None => names::icmp_code_by_name(icmp_type, &w, v6).ok_or((line, format!("unknown icmp-code {w}")))?,
            })
        } else {
            None
        };
        Ok(IcmpMatch { icmp_type, code })
    }
}
