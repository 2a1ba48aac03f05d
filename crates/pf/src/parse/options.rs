//! `set` options and `table` definitions (parse.y's `option` and
//! `tabledef`).

use super::*;

impl Parser<'_> {
    // ----- options -----

    pub(super) fn option(&mut self, c: &mut Cursor) -> PResult<()> {
        let line = c.line();
        let what = c.word()?;
        let mut sets = vec![];
        match what.as_str() {
            "skip" => {
                c.expect_word("on")?;
                let items = c.list(|c| {
                    let line = c.line();
                    let neg = c.eat_punct("!");
                    let name = c.ifname()?;
                    if neg {
                        return Err((line, "skip on ! <interface> is not supported".into()));
                    }
                    Ok(name)
                })?;
                let items = if items.len() == 1 && items[0] == "none" { vec![] } else { items };
                self.rs.options.skip = items.clone();
                sets.push(SetOption::Skip(items));
            }
            "block-policy" => {
                let p = match c.word()?.as_str() {
                    "drop" => BlockPolicy::Drop,
                    "return" => BlockPolicy::Return,
                    _ => return Err((line, "syntax error".into())),
                };
                self.rs.options.block_policy = p;
                sets.push(SetOption::BlockPolicy(p));
            }
            "state-policy" => {
                let p = match c.word()?.as_str() {
                    "if-bound" => StatePolicy::IfBound,
                    "floating" => StatePolicy::Floating,
                    _ => return Err((line, "syntax error".into())),
                };
                self.rs.options.state_policy = p;
                sets.push(SetOption::StatePolicy(p));
            }
            "limit" => {
                let items = c.list(|c| {
                    let line = c.line();
                    let name = c.word()?;
                    let v = c.u32("limit")?;
                    match Limit::by_name(&name) {
                        Some(l) => Ok((l, v)),
                        None => Err((line, format!("unable to set limit {name} {v}"))),
                    }
                })?;
                for (l, v) in items {
                    self.rs.options.set_limit(l, v);
                    sets.push(SetOption::Limit(l, v));
                }
            }
            "timeout" => {
                let items = c.list(|c| {
                    let line = c.line();
                    let name = c.word()?;
                    let v = c.u32("timeout")?;
                    match Timeout::by_name(&name) {
                        Some(t) => Ok((t, v)),
                        None => Err((line, format!("unknown timeout {name}"))),
                    }
                })?;
                for (t, v) in items {
                    self.rs.options.set_timeout(t, v);
                    sets.push(SetOption::Timeout(t, v));
                }
            }
            "loginterface" => {
                let name = c.string()?;
                let v = if name == "none" {
                    None
                } else {
                    if !self.resolver.interface_exists(&name) {
                        return Err((line, format!("unknown interface {name}")));
                    }
                    Some(name)
                };
                self.rs.options.loginterface = v.clone();
                sets.push(SetOption::LogInterface(v));
            }
            "optimization" => {
                let name = c.string()?;
                let o = Optimization::by_name(&name).ok_or((line, format!("unknown optimization {name}")))?;
                self.rs.options.optimization = o;
                for (t, v) in o.timeouts() {
                    self.rs.options.set_timeout(t, v);
                }
                sets.push(SetOption::Optimization(o));
            }
            "ruleset-optimization" => {
                let o = match c.word()?.as_str() {
                    "none" => OptLevel::None,
                    "basic" => OptLevel::Basic,
                    "profile" => OptLevel::Profile,
                    other => return Err((line, format!("unknown ruleset-optimization {other}"))),
                };
                self.rs.options.ruleset_optimization = Some(o);
                sets.push(SetOption::RulesetOptimization(o));
            }
            "hostid" => {
                // parse.y's `number`: a NUMBER, or a STRING strtoul reads
                let w = c.string()?;
                let v = parse_number_or_hex(&w).ok_or((line, format!("{w} is not a number")))?;
                let v =
                    u32::try_from(v).ok().filter(|v| *v != 0).ok_or((line, "hostid must be non-zero".to_string()))?;
                self.rs.options.hostid = Some(v);
                sets.push(SetOption::HostId(v));
            }
            "debug" => {
                // pfctl: `set debug STRING` through string_to_loglevel (a
                // syslog priority name in any case, or "0".."7"); the line
                // prints back as written. An unquoted number is a syntax
                // error in pfctl (a NUMBER token); softnet takes it so that
                // the printed `set debug 3` parses again.
                let w = c.string()?;
                let Some(level) = names::syslog_level_by_name(&w) else {
                    self.error(line, format!("unknown debug level \"{w}\""));
                    return Err((line, format!("error setting debuglevel {w}")));
                };
                self.rs.options.debug = Some(level);
                sets.push(SetOption::Debug(w));
            }
            "reassemble" => {
                let on = match c.word()?.as_str() {
                    "yes" => true,
                    "no" => false,
                    other => return Err((line, format!("invalid value '{other}', expected 'yes' or 'no'"))),
                };
                let no_df = c.eat_word("no-df");
                let r = Reassemble { enabled: on, no_df, line };
                self.rs.options.reassemble = r;
                sets.push(SetOption::Reassemble(r));
            }
            "fingerprints" | "state-defaults" | "keepcounters" | "syncookies" | "require-order" => {
                return Err((line, format!("set {what} not supported yet")));
            }
            _ => return Err((line, "syntax error".into())),
        }
        // pfctl prints (and applies) each option as its grammar action
        // runs, so what came before a syntax error still shows.
        self.rs.header.extend(sets.into_iter().map(HeaderItem::Set));
        if !c.at_end() {
            return c.syntax();
        }
        Ok(())
    }

    // ----- tables -----

    pub(super) fn table(&mut self, c: &mut Cursor) -> PResult<()> {
        let line = c.line();
        c.expect_punct("<")?;
        let name = c.table_name()?;
        c.expect_punct(">")?;
        if name.len() >= 32 {
            return Err((line, "table name too long, max 31 chars".into()));
        }
        let anchor = self.cur_path();
        let mut def = TableDef {
            name: name.clone(),
            anchor,
            persist: false,
            constant: false,
            counters: false,
            init: vec![],
            line,
        };
        while let Some(t) = c.peek() {
            if c.eat_word("persist") {
                def.persist = true;
            } else if c.eat_word("const") {
                def.constant = true;
            } else if c.eat_word("counters") {
                def.counters = true;
            } else if c.eat_word("file") {
                def.init.push(TableInit::File(c.string()?));
            } else if t.is_punct("{") {
                c.next();
                let mut entries = vec![];
                loop {
                    if c.eat_punct("}") {
                        break;
                    }
                    if c.at_end() {
                        return c.syntax();
                    }
                    let line = c.line();
                    let negated = c.eat_punct("!");
                    for h in self.host(c)? {
                        let why = match h.addr {
                            Addr::Net(net) if h.bad_mask.is_none() => {
                                entries.push(TableEntry { negated: negated ^ h.negated, net });
                                continue;
                            }
                            Addr::Net(_) | Addr::Any => "invalid table entry",
                            Addr::Range(..) => "address ranges are not permitted inside tables",
                            Addr::Dynamic { .. } => "dynamic addresses are not permitted inside tables",
                            Addr::Table(_) => "tables cannot contain tables",
                            Addr::NoRoute => "\"no-route\" is not permitted inside tables",
                            Addr::UrpfFailed => "\"urpf-failed\" is not permitted inside tables",
                            Addr::RouteLabel(_) => "unknown address type 4",
                        };
                        return Err((line, why.into()));
                    }
                    c.eat_punct(",");
                }
                def.init.push(TableInit::Entries(entries));
            } else if let Some(w) = t.word() {
                return Err((line, format!("invalid table option '{w}'")));
            } else {
                return c.syntax();
            }
        }
        // process_tabledef reads the files while parsing (pfr_buf_load);
        // their contents are loaded with the ruleset. Through the parse's
        // FileSource, as includes: the daemon sees only what the client
        // sent, never its own file system.
        for i in &def.init {
            if let TableInit::File(f) = i {
                if let Err(msg) = self.files.read(f) {
                    return Err((line, format!("cannot load \"{f}\": {msg}")));
                }
            }
        }
        // Defined again: pfctl defines it again in the same transaction,
        // and the kernel keeps the last definition.
        self.rs.header.push(HeaderItem::Table(self.rs.tables.len()));
        self.rs.tables.push(def);
        Ok(())
    }
}
