//! pf.conf parser: statements → expanded `Ruleset`.
//!
//! The grammar and the checks follow OpenBSD's pfctl (parse.y): a rule's
//! words come in a fixed order up to `from … to …` and in any order after;
//! lists expand to one rule per combination (interface × proto × icmp-type
//! × source × source port × destination × destination port); interface
//! names and `self` in addresses resolve through an `IfResolver`. Errors are
//! collected, one statement's error does not stop the next statement.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::error::ParseError;
use crate::lexer::{Lexer, Tok, Token};
use crate::model::*;
use crate::names::{self, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use crate::resolver::IfResolver;

#[path = "parse_anchor.rs"]
mod anchor_stmt;
pub use anchor_stmt::{all_rules, FileSource, FsFiles};

/// Parses a whole pf.conf. `filename` is what errors are reported against
/// (pfctl says `stdin` for `-f -`). `include` and `load anchor` files are
/// read from the file system, relative to the working directory as pfctl
/// reads them.
///
/// Translation and routing options (`nat-to`, `rdr-to`, `route-to`, …) parse
/// here so `-n` can print them; `load_ruleset` refuses them.
pub fn parse_ruleset(src: &str, filename: &str, resolver: &dyn IfResolver) -> Result<Ruleset, Vec<ParseError>> {
    parse_ruleset_in(src, filename, "", resolver, &FsFiles::default())
}

/// `parse_ruleset` for the anchor at `anchor_path` ("" the main ruleset:
/// `pfctl -a NAME -f`), reading included files through `files`.
pub fn parse_ruleset_in(
    src: &str,
    filename: &str,
    anchor_path: &str,
    resolver: &dyn IfResolver,
    files: &dyn FileSource,
) -> Result<Ruleset, Vec<ParseError>> {
    let mut p = Parser {
        resolver,
        macros: HashMap::new(),
        rs: Ruleset { filename: filename.to_string(), anchor_path: anchor_path.to_string(), ..Ruleset::default() },
        errors: vec![],
        files,
        file: filename.to_string(),
        includes: vec![],
        bodies: vec![],
        braces: 0,
    };
    p.parse_text(src);
    // `load anchor` files are parsed once the ruleset parsed cleanly, as
    // pfctl_load_anchors does after parse_config.
    if p.errors.is_empty() {
        p.load_anchor_files();
    }
    // Printed rules come after every `set` line, so a floating rule must
    // say so when the final state-policy is if-bound.
    if p.rs.options.state_policy == StatePolicy::IfBound {
        let fix = |r: &mut Rule| r.state_opts.floating = r.keep_state != StateMode::NoState && !r.state_opts.if_bound;
        p.rs.rules.iter_mut().for_each(fix);
        p.rs.anchors.iter_mut().flat_map(|b| b.rules.iter_mut()).for_each(fix);
    }
    if p.errors.is_empty() {
        Ok(p.rs)
    } else {
        Err(p.errors)
    }
}

/// Parses and then refuses what the packet filter cannot do yet: the form
/// to use when a ruleset is to be loaded rather than only printed.
pub fn load_ruleset(src: &str, filename: &str, resolver: &dyn IfResolver) -> Result<Ruleset, Vec<ParseError>> {
    let rs = parse_ruleset(src, filename, resolver)?;
    check_supported(&rs)?;
    Ok(rs)
}

/// Errors for every rule using a feature the evaluator does not have yet.
pub fn check_supported(rs: &Ruleset) -> Result<(), Vec<ParseError>> {
    let mut errs = vec![];
    if !rs.anchor_path.is_empty() && !rs.tables.is_empty() {
        errs.push(ParseError {
            file: rs.filename.clone(),
            line: rs.tables[0].line,
            message: "tables inside anchors not supported yet".into(),
        });
    }
    for la in &rs.load_anchors {
        if let Err(e) = check_supported(&la.ruleset) {
            errs.extend(e);
        }
    }
    for r in anchor_stmt::all_rules(rs) {
        // softnet has a single pflog output, pflog0 (`to pflog0` is parsed
        // as no `to` at all, like pfctl's logif 0).
        if let Some(n) = r.log.and_then(|l| l.to_pflog) {
            errs.push(ParseError {
                file: rs.filename.clone(),
                line: r.line,
                message: format!("log to pflog{n}: no such interface, softnet logs to pflog0 only"),
            });
        }
        let mut refuse = |what: &str| {
            errs.push(ParseError {
                file: rs.filename.clone(),
                line: r.line,
                message: format!("{what} not supported yet"),
            })
        };
        if let Some(t) = &r.translation {
            refuse(t.keyword());
        }
        if let Some(rt) = &r.route {
            refuse(rt.kind.keyword());
        }
        if r.keep_state == StateMode::Synproxy {
            refuse("synproxy state");
        }
        // Source tracking (and what needs it) would otherwise load and
        // protect nothing.
        let o = &r.state_opts;
        let src_track = [
            (o.max_src_conn_rate.is_some(), "max-src-conn-rate"),
            (o.max_src_conn.is_some(), "max-src-conn"),
            (o.max_src_nodes.is_some(), "max-src-nodes"),
            (o.max_src_states.is_some(), "max-src-states"),
            (o.overload.is_some(), "overload"),
            (o.source_track.is_some(), "source-track"),
        ];
        if let Some((_, what)) = src_track.iter().find(|(on, _)| *on) {
            refuse(what);
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

type PResult<T> = Result<T, (usize, String)>;

struct Cursor<'t> {
    toks: &'t [Token],
    pos: usize,
    end_line: usize,
}

impl<'t> Cursor<'t> {
    fn peek(&self) -> Option<&'t Token> {
        self.toks.get(self.pos)
    }
    fn peek_at(&self, n: usize) -> Option<&'t Token> {
        self.toks.get(self.pos + n)
    }
    fn next(&mut self) -> Option<&'t Token> {
        let t = self.toks.get(self.pos);
        if t.is_some() {
            self.pos += 1;
        }
        t
    }
    fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }
    fn line(&self) -> usize {
        self.peek().map(|t| t.line).unwrap_or(self.end_line)
    }
    fn peek_word(&self) -> Option<&'t str> {
        self.peek().and_then(|t| t.word())
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_word(w)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_punct(&mut self, p: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_punct(p)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn syntax<T>(&self) -> PResult<T> {
        Err((self.line(), "syntax error".into()))
    }
    fn expect_punct(&mut self, p: &str) -> PResult<()> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.syntax()
        }
    }
    fn expect_word(&mut self, w: &str) -> PResult<()> {
        if self.eat_word(w) {
            Ok(())
        } else {
            self.syntax()
        }
    }
    /// A word or a quoted string.
    fn string(&mut self) -> PResult<String> {
        match self.peek().and_then(|t| t.string()) {
            Some(s) => {
                self.pos += 1;
                Ok(s.to_string())
            }
            None => self.syntax(),
        }
    }
    fn word(&mut self) -> PResult<String> {
        match self.peek_word() {
            Some(s) => {
                self.pos += 1;
                Ok(s.to_string())
            }
            None => self.syntax(),
        }
    }
    fn number(&mut self) -> PResult<u64> {
        let line = self.line();
        let w = self.word()?;
        parse_number(&w).ok_or((line, "syntax error".into()))
    }
    fn u32(&mut self, what: &str) -> PResult<u32> {
        let line = self.line();
        let n = self.number()?;
        u32::try_from(n).map_err(|_| (line, format!("{what} out of range")))
    }
    /// Parses `{ item [,] item … }` or a single item.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        if self.eat_punct("{") {
            let mut out = vec![];
            loop {
                if self.eat_punct("}") {
                    break;
                }
                if self.at_end() {
                    return self.syntax();
                }
                out.push(item(self)?);
                self.eat_punct(",");
            }
            if out.is_empty() {
                return self.syntax();
            }
            Ok(out)
        } else {
            Ok(vec![item(self)?])
        }
    }
}

fn parse_number(w: &str) -> Option<u64> {
    if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    w.parse().ok()
}

fn parse_number_or_hex(w: &str) -> Option<u64> {
    if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        parse_number(w)
    }
}

const RESERVED: &[&str] = &[
    "pass",
    "block",
    "match",
    "set",
    "table",
    "antispoof",
    "in",
    "out",
    "on",
    "from",
    "to",
    "all",
    "any",
    "proto",
    "inet",
    "inet6",
    "quick",
    "log",
    "port",
    "flags",
    "label",
    "tag",
    "tagged",
    "keep",
    "modulate",
    "synproxy",
    "state",
    "no",
    "self",
    "rtable",
    "tos",
    "return",
    "drop",
    "anchor",
    "include",
];

/// One source or destination choice before expansion.
#[derive(Debug, Clone)]
struct HostItem {
    addr: Addr,
    negated: bool,
}

#[derive(Debug, Clone)]
enum StateOptItem {
    Max(u32),
    NoSync,
    SourceTrack(SourceTrack),
    MaxSrcStates(u32),
    MaxSrcNodes(u32),
    MaxSrcConn(u32),
    MaxSrcConnRate(u32, u32),
    Overload(Overload),
    IfBound,
    Floating,
    Sloppy,
    Pflow,
    Timeout(Timeout, u32),
}

/// A rule as written, lists not yet expanded.
#[derive(Debug, Clone)]
struct RuleSpec {
    action: Action,
    direction: Direction,
    log: Option<LogOpts>,
    quick: bool,
    interfaces: Vec<Option<InterfaceMatch>>,
    af: Option<AddressFamily>,
    protos: Vec<Option<u8>>,
    src_hosts: Vec<HostItem>,
    src_ports: Vec<Option<PortOp>>,
    dst_hosts: Vec<HostItem>,
    dst_ports: Vec<Option<PortOp>>,
    flags: Option<TcpFlags>,
    icmp: Vec<Option<(u8, IcmpMatch)>>,
    tos: Option<u8>,
    allow_opts: bool,
    label: Option<String>,
    tag: Option<String>,
    tagged: Option<TagMatch>,
    rtable: Option<u32>,
    keep_state: Option<StateMode>,
    state_opts: StateOpts,
    /// `if-bound` / `floating` given in the rule (else `set state-policy`).
    statelock: Option<bool>,
    translation: Option<Translation>,
    route: Option<Route>,
    anchor: Option<AnchorCall>,
}

impl RuleSpec {
    fn new(action: Action) -> RuleSpec {
        RuleSpec {
            action,
            direction: Direction::Both,
            log: None,
            quick: false,
            interfaces: vec![None],
            af: None,
            protos: vec![None],
            src_hosts: vec![HostItem { addr: Addr::Any, negated: false }],
            src_ports: vec![None],
            dst_hosts: vec![HostItem { addr: Addr::Any, negated: false }],
            dst_ports: vec![None],
            flags: None,
            icmp: vec![None],
            tos: None,
            allow_opts: false,
            label: None,
            tag: None,
            tagged: None,
            rtable: None,
            keep_state: None,
            state_opts: StateOpts::default(),
            statelock: None,
            translation: None,
            route: None,
            anchor: None,
        }
    }
}

struct Parser<'r> {
    resolver: &'r dyn IfResolver,
    macros: HashMap<String, String>,
    rs: Ruleset,
    errors: Vec<ParseError>,
    /// Where `include` and `load anchor` files come from.
    files: &'r dyn FileSource,
    /// The file being read (errors name it).
    file: String,
    /// The files being included, outermost first (a loop is an error).
    includes: Vec<String>,
    /// The inline anchor bodies being read, outermost first.
    bodies: Vec<anchor_stmt::Body>,
    /// Inline anchors met so far (pfctl's `pf->bn`: unnamed ones are `_N`).
    braces: usize,
}

impl<'r> Parser<'r> {
    fn error(&mut self, line: usize, msg: impl Into<String>) {
        self.errors.push(ParseError { file: self.file.clone(), line, message: msg.into() });
    }

    /// Every statement of `src` (the file, or an included one).
    fn parse_text(&mut self, src: &str) {
        let mut lexer = Lexer::new(src);
        while let Some(st) = lexer.statement(&self.macros) {
            if !st.errors.is_empty() {
                for (line, msg) in st.errors {
                    self.error(line, msg);
                }
                // pfctl's lexer turns a bad macro into an error token, which the
                // grammar then rejects.
                self.error(st.end_line, "syntax error");
                continue;
            }
            let mut c = Cursor { toks: &st.tokens, pos: 0, end_line: st.end_line };
            if let Err(e) = self.statement(&mut c) {
                self.error(e.0, e.1);
            }
        }
    }

    /// The rules being added to: the innermost inline anchor's, else the
    /// ruleset's.
    fn dest(&mut self) -> &mut Vec<Rule> {
        match self.bodies.last_mut() {
            Some(b) => &mut b.rules,
            None => &mut self.rs.rules,
        }
    }

    fn statement(&mut self, c: &mut Cursor) -> PResult<()> {
        if !self.bodies.is_empty() {
            // parse.y `pfa_anchorlist`: rules, anchors, tables, includes.
            return match c.peek_word() {
                Some("pass" | "block" | "match") => self.rule(c),
                Some("anchor") => self.anchor_rule(c),
                Some("include") => self.include(c),
                Some("table") => Err((c.line(), "tables inside anchors not supported yet".into())),
                _ => c.syntax(),
            };
        }
        if c.peek_at(1).is_some_and(|t| t.is_punct("=")) {
            return self.macro_def(c);
        }
        let line = c.line();
        let Some(w) = c.peek_word() else {
            return c.syntax();
        };
        match w {
            "anchor" => self.anchor_rule(c),
            "load" => self.load_anchor(c),
            "include" => self.include(c),
            "set" => {
                c.next();
                self.option(c)
            }
            "table" => {
                c.next();
                self.table(c)
            }
            "pass" | "block" | "match" => self.rule(c),
            "antispoof" => {
                c.next();
                self.antispoof(c)
            }
            "queue" => Err((line, format!("{w} not supported yet"))),
            _ => c.syntax(),
        }
    }

    fn macro_def(&mut self, c: &mut Cursor) -> PResult<()> {
        let line = c.line();
        let name = c.word()?;
        c.expect_punct("=")?;
        if RESERVED.contains(&name.as_str()) {
            return Err((line, format!("macro name cannot be a reserved word: {name}")));
        }
        if !name.chars().all(|ch| ch.is_alphanumeric() || ch == '_') {
            return Err((line, format!("invalid macro name '{name}'")));
        }
        let mut parts = vec![];
        while let Some(t) = c.next() {
            match &t.tok {
                Tok::Word(s) | Tok::Quoted(s) => parts.push(s.clone()),
                Tok::Punct(p) => parts.push(p.to_string()),
                Tok::Newline => {}
            }
        }
        if parts.is_empty() {
            return c.syntax();
        }
        let value = parts.join(" ");
        self.rs.macros.retain(|(n, _)| *n != name);
        self.rs.macros.push((name.clone(), value.clone()));
        self.rs.header.push(HeaderItem::Macro(name.clone(), value.clone()));
        self.macros.insert(name, value);
        Ok(())
    }

    // ----- options -----

    fn option(&mut self, c: &mut Cursor) -> PResult<()> {
        let line = c.line();
        let what = c.word()?;
        let mut sets = vec![];
        match what.as_str() {
            "skip" => {
                c.expect_word("on")?;
                let items = c.list(|c| {
                    let line = c.line();
                    let neg = c.eat_punct("!");
                    let name = c.string()?;
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
                let w = c.word()?;
                let v = parse_number_or_hex(&w)
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|v| *v != 0)
                    .ok_or((line, "illegal hostid value".to_string()))?;
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
            "reassemble" | "fingerprints" | "state-defaults" | "keepcounters" | "syncookies" | "require-order" => {
                return Err((line, format!("set {what} not supported yet")));
            }
            _ => return Err((line, "syntax error".into())),
        }
        if !c.at_end() {
            return c.syntax();
        }
        self.rs.header.extend(sets.into_iter().map(HeaderItem::Set));
        Ok(())
    }

    // ----- tables -----

    fn table(&mut self, c: &mut Cursor) -> PResult<()> {
        let line = c.line();
        c.expect_punct("<")?;
        let name = c.string()?;
        c.expect_punct(">")?;
        if name.len() >= 32 {
            return Err((line, format!("table name too long: {name}")));
        }
        let mut def =
            TableDef { name: name.clone(), persist: false, constant: false, counters: false, init: vec![], line };
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
                        match h.addr {
                            Addr::Net(net) => entries.push(TableEntry { negated: negated ^ h.negated, net }),
                            _ => return Err((line, "invalid table entry".into())),
                        }
                    }
                    c.eat_punct(",");
                }
                def.init.push(TableInit::Entries(entries));
            } else {
                return c.syntax();
            }
        }
        if self.rs.tables.iter().any(|t| t.name == name) {
            return Err((line, format!("table <{name}> redefined")));
        }
        self.rs.header.push(HeaderItem::Table(self.rs.tables.len()));
        self.rs.tables.push(def);
        Ok(())
    }

    // ----- addresses -----

    /// One `[!] host` element; may resolve to several addresses.
    fn xhost(&mut self, c: &mut Cursor) -> PResult<Vec<HostItem>> {
        let neg = c.eat_punct("!");
        let mut hs = self.host(c)?;
        for h in &mut hs {
            h.negated ^= neg;
        }
        Ok(hs)
    }

    /// `any | xhost | { xhost … }`
    fn ipspec(&mut self, c: &mut Cursor) -> PResult<Vec<HostItem>> {
        if c.eat_word("any") {
            return Ok(vec![HostItem { addr: Addr::Any, negated: false }]);
        }
        if c.peek().is_some_and(|t| t.is_punct("{")) {
            let lists = c.list(|c| self.xhost(c))?;
            return Ok(lists.into_iter().flatten().collect());
        }
        self.xhost(c)
    }

    fn host(&mut self, c: &mut Cursor) -> PResult<Vec<HostItem>> {
        let line = c.line();
        let one = |addr| Ok(vec![HostItem { addr, negated: false }]);
        if c.eat_punct("<") {
            let name = c.string()?;
            c.expect_punct(">")?;
            if name.len() >= 32 {
                return Err((line, format!("table name too long: {name}")));
            }
            return one(Addr::Table(name));
        }
        if c.eat_punct("(") {
            let spec = c.string()?;
            c.expect_punct(")")?;
            let (ifname, modifier, no_alias) = split_if_modifiers(&spec).ok_or((line, "syntax error".into()))??;
            return one(Addr::Dynamic { ifname, modifier, no_alias });
        }
        if c.eat_word("no-route") {
            return one(Addr::NoRoute);
        }
        if c.eat_word("urpf-failed") {
            return one(Addr::UrpfFailed);
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
                _ => Err((line, format!("invalid address range {name} - {hi}"))),
            };
        }
        let mask = if c.eat_punct("/") {
            let l = c.line();
            let n = c.number()?;
            if n > 128 {
                return Err((l, format!("invalid netmask '/{n}'")));
            }
            Some(n as u8)
        } else {
            None
        };
        self.resolve_host(&name, mask, line)
    }

    /// pfctl's `host()`: an interface (with modifiers) or `self`, a literal
    /// address, or nothing (no DNS here).
    fn resolve_host(&mut self, name: &str, mask: Option<u8>, line: usize) -> PResult<Vec<HostItem>> {
        let hosts =
            |nets: Vec<IpNet>| nets.into_iter().map(|n| HostItem { addr: Addr::Net(n), negated: false }).collect();
        if let Some(r) = split_if_modifiers(name) {
            let (ifname, modifier, no_alias) = r.map_err(|m| (line, m.1))?;
            if ifname == "self" || self.resolver.exists(&ifname) {
                if mask.is_some() && matches!(modifier, IfAddrModifier::Network | IfAddrModifier::Broadcast) {
                    return Err((line, "network or broadcast lookup, but extra netmask given".into()));
                }
                let mut nets = self.if_lookup(&ifname, modifier, no_alias);
                if let Some(m) = mask {
                    nets = nets.into_iter().map(|n| IpNet::new(n.addr, m.min(max_prefix(n.addr)))).collect();
                }
                if nets.is_empty() {
                    return Err((line, format!("no IP address found for {name}")));
                }
                return Ok(hosts(nets));
            }
            if name.contains(':') && modifier != IfAddrModifier::Address || no_alias {
                return Err((line, format!("unknown interface {ifname}")));
            }
        }
        if let Ok(a) = name.parse::<IpAddr>() {
            let p = mask.unwrap_or(max_prefix(a));
            if a.is_ipv4() && p > 32 {
                return Err((line, format!("netmask {p} invalid for IPv4 address")));
            }
            return Ok(hosts(vec![IpNet::new(a, p)]));
        }
        // "10/8", "192.168/16": inet_net_pton's short forms need a mask
        if let (Some(m), Some(a)) = (mask, short_v4(name)) {
            if m > 32 {
                return Err((line, format!("netmask {m} invalid for IPv4 address")));
            }
            return Ok(hosts(vec![IpNet::new(IpAddr::V4(a), m)]));
        }
        Err((line, format!("no IP address found for {name}")))
    }

    /// pfctl's `ifa_lookup`: the addresses of an interface, group or `self`.
    fn if_lookup(&self, name: &str, modifier: IfAddrModifier, no_alias: bool) -> Vec<IpNet> {
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

    fn port_value(c: &mut Cursor) -> PResult<u16> {
        let line = c.line();
        let w = c.string()?;
        port_number(&w).map_err(|m| (line, m))
    }

    fn port_item(c: &mut Cursor) -> PResult<PortOp> {
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
    fn ipportspec(&mut self, c: &mut Cursor) -> PResult<(Vec<HostItem>, Vec<Option<PortOp>>)> {
        let hosts = if c.peek().is_some_and(|t| t.is_word("port")) {
            vec![HostItem { addr: Addr::Any, negated: false }]
        } else {
            self.ipspec(c)?
        };
        let ports =
            if c.eat_word("port") { c.list(Self::port_item)?.into_iter().map(Some).collect() } else { vec![None] };
        Ok((hosts, ports))
    }

    // ----- rules -----

    fn rule(&mut self, c: &mut Cursor) -> PResult<()> {
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
        self.expand(spec, c.end_line);
        Ok(())
    }

    /// A rule's words after `in|out`, `log` and `quick`: `on`, the
    /// address family, `proto`, `from … to …` and the filter options
    /// (shared by `pass`/`block`/`match` and `anchor` rules).
    fn rule_match(&mut self, c: &mut Cursor, spec: &mut RuleSpec) -> PResult<()> {
        if c.eat_word("on") {
            spec.interfaces = c.list(|c| {
                let negated = c.eat_punct("!");
                let name = c.string()?;
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
        // pfctl: flags on a rule whose protocol list names no tcp.
        let has_flags = spec.flags.is_some_and(|f| f.set != 0 || f.mask != 0);
        let any_proto = spec.protos.iter().any(|p| p.is_none());
        if has_flags && !any_proto && !spec.protos.contains(&Some(IPPROTO_TCP)) {
            return Err((c.end_line, "flags only apply to tcp".into()));
        }
        Ok(())
    }

    fn block_spec(&mut self, c: &mut Cursor) -> PResult<BlockAction> {
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

    fn icmp_return_code(c: &mut Cursor, v6: bool) -> PResult<u8> {
        let line = c.line();
        let w = c.string()?;
        let ty = if v6 { names::ICMP6_DST_UNREACH } else { names::ICMP_UNREACH };
        match parse_number(&w) {
            Some(n) if n > 255 => Err((line, format!("illegal icmp-code {n}"))),
            Some(n) => Ok(n as u8),
            None => names::icmp_code_by_name(ty, &w, v6).ok_or((line, format!("unknown icmp-code {w}"))),
        }
    }

    fn log_opts(c: &mut Cursor) -> PResult<LogOpts> {
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

    fn filter_opts(&mut self, c: &mut Cursor, spec: &mut RuleSpec) -> PResult<()> {
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
                c.expect_word("tagged")?;
                once(spec.tagged.is_some(), line, "tagged")?;
                spec.tagged = Some(TagMatch { name: c.string()?, negated: true });
                continue;
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
                    once(spec.tos.is_some(), line, "tos")?;
                    let w = c.string()?;
                    let v = match w.as_str() {
                        "lowdelay" => Some(0x10),
                        "throughput" => Some(0x08),
                        "reliability" => Some(0x04),
                        _ => parse_number_or_hex(&w),
                    };
                    match v {
                        Some(v) if v > 0 && v <= 255 => spec.tos = Some(v as u8),
                        _ => return Err((line, format!("illegal tos value {w}"))),
                    }
                }
                "allow-opts" => spec.allow_opts = true,
                "label" => {
                    once(spec.label.is_some(), line, "label")?;
                    let l = c.string()?;
                    if l.len() >= 64 {
                        return Err((line, "rule label too long (max 63 chars)".into()));
                    }
                    spec.label = Some(l);
                }
                "tag" => {
                    once(spec.tag.is_some(), line, "tag")?;
                    spec.tag = Some(c.string()?);
                }
                "tagged" => {
                    once(spec.tagged.is_some(), line, "tagged")?;
                    spec.tagged = Some(TagMatch { name: c.string()?, negated: false });
                }
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
                "nat-to" | "rdr-to" | "binat-to" => {
                    once(spec.translation.is_some(), line, "translation")?;
                    let r = Self::redir_spec(c)?;
                    spec.translation = Some(match w.as_str() {
                        "nat-to" => Translation::NatTo(r),
                        "rdr-to" => Translation::RdrTo(r),
                        _ => Translation::BinatTo(r),
                    });
                }
                "af-to" => {
                    once(spec.translation.is_some(), line, "translation")?;
                    let af = match c.word()?.as_str() {
                        "inet" => AddressFamily::Inet,
                        "inet6" => AddressFamily::Inet6,
                        _ => return Err((line, "syntax error".into())),
                    };
                    c.expect_word("from")?;
                    let from = Self::redir_spec(c)?;
                    let to = if c.eat_word("to") { Some(Self::redir_spec(c)?) } else { None };
                    spec.translation = Some(Translation::AfTo { af, from, to });
                }
                "route-to" | "reply-to" | "dup-to" => {
                    once(spec.route.is_some(), line, "route")?;
                    let kind = match w.as_str() {
                        "route-to" => RouteKind::RouteTo,
                        "reply-to" => RouteKind::ReplyTo,
                        _ => RouteKind::DupTo,
                    };
                    spec.route = Some(Route { kind, spec: Self::redir_spec(c)? });
                }
                "divert-to" | "divert-reply" | "divert-packet" | "queue" | "set" | "prio" | "once" | "probability"
                | "user" | "group" | "fragment" | "scrub" | "received-on" | "max-pkt-rate" | "os" => {
                    return Err((line, format!("{w} not supported yet")));
                }
                _ => return Err((line, "syntax error".into())),
            }
        }
        Ok(())
    }

    fn flag_word(c: &mut Cursor) -> PResult<u8> {
        let line = c.line();
        let w = c.word()?;
        names::parse_tcp_flags(&w).ok_or((line, format!("bad flags {w}")))
    }

    fn icmp_item(c: &mut Cursor, v6: bool) -> PResult<IcmpMatch> {
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

    fn state_opt(c: &mut Cursor) -> PResult<StateOptItem> {
        let line = c.line();
        let w = c.word()?;
        Ok(match w.as_str() {
            "max" => StateOptItem::Max(c.u32("max")?),
            "no-sync" => StateOptItem::NoSync,
            "source-track" => {
                if c.eat_word("rule") {
                    StateOptItem::SourceTrack(SourceTrack::Rule)
                } else {
                    c.eat_word("global");
                    StateOptItem::SourceTrack(SourceTrack::Global)
                }
            }
            "max-src-states" => StateOptItem::MaxSrcStates(c.u32("max-src-states")?),
            "max-src-nodes" => StateOptItem::MaxSrcNodes(c.u32("max-src-nodes")?),
            "max-src-conn" => StateOptItem::MaxSrcConn(c.u32("max-src-conn")?),
            "max-src-conn-rate" => {
                let n = c.u32("max-src-conn-rate")?;
                c.expect_punct("/")?;
                StateOptItem::MaxSrcConnRate(n, c.u32("max-src-conn-rate")?)
            }
            "overload" => {
                c.expect_punct("<")?;
                let table = c.string()?;
                c.expect_punct(">")?;
                let flush = c.eat_word("flush");
                let flush_global = flush && c.eat_word("global");
                StateOptItem::Overload(Overload { table, flush, flush_global })
            }
            "if-bound" => StateOptItem::IfBound,
            "floating" => StateOptItem::Floating,
            "sloppy" => StateOptItem::Sloppy,
            "pflow" => StateOptItem::Pflow,
            name => {
                let t = Timeout::by_name(name).ok_or((line, format!("illegal timeout name {name}")))?;
                if !t.allowed_per_rule() {
                    return Err((line, format!("illegal state timeout {name}")));
                }
                StateOptItem::Timeout(t, c.u32("timeout")?)
            }
        })
    }

    /// Folds the state options; the second value is an explicit
    /// `if-bound` (true) or `floating` (false).
    fn state_opts(items: Vec<StateOptItem>, line: usize) -> PResult<(StateOpts, Option<bool>)> {
        let mut o = StateOpts::default();
        let mut statelock: Option<bool> = None;
        let dup = |what: &str| Err((line, format!("state option '{what}' multiple definitions")));
        for it in items {
            match it {
                StateOptItem::Max(n) => {
                    if o.max.is_some() {
                        return dup("max");
                    }
                    o.max = Some(n)
                }
                StateOptItem::NoSync => o.no_sync = true,
                StateOptItem::SourceTrack(s) => {
                    if o.source_track.is_some() {
                        return dup("source-track");
                    }
                    o.source_track = Some(s)
                }
                StateOptItem::MaxSrcStates(n) => {
                    if o.max_src_states.is_some() {
                        return dup("max-src-states");
                    }
                    o.max_src_states = Some(n)
                }
                StateOptItem::MaxSrcNodes(n) => {
                    if o.max_src_nodes.is_some() {
                        return dup("max-src-nodes");
                    }
                    o.max_src_nodes = Some(n)
                }
                StateOptItem::MaxSrcConn(n) => {
                    if o.max_src_conn.is_some() {
                        return dup("max-src-conn");
                    }
                    o.max_src_conn = Some(n)
                }
                StateOptItem::MaxSrcConnRate(n, s) => {
                    if o.max_src_conn_rate.is_some() {
                        return dup("max-src-conn-rate");
                    }
                    o.max_src_conn_rate = Some((n, s))
                }
                StateOptItem::Overload(ov) => {
                    if o.overload.is_some() {
                        return dup("overload");
                    }
                    o.overload = Some(ov)
                }
                StateOptItem::IfBound | StateOptItem::Floating => {
                    if statelock.is_some() {
                        return dup("if-bound");
                    }
                    statelock = Some(matches!(it, StateOptItem::IfBound));
                }
                StateOptItem::Sloppy => o.sloppy = true,
                StateOptItem::Pflow => o.pflow = true,
                StateOptItem::Timeout(t, v) => {
                    if o.timeouts.iter().any(|(k, _)| *k == t) {
                        return dup(t.name());
                    }
                    o.timeouts.push((t, v));
                }
            }
        }
        // pfctl: a rule limited to `max` states adapts its states' timeouts
        // to its own count, from 60% to 120% of the limit, unless it says
        // otherwise (u_int32 arithmetic, as pfctl's).
        let adaptive = o.timeouts.iter().any(|(k, _)| matches!(k, Timeout::AdaptiveStart | Timeout::AdaptiveEnd));
        if let (false, Some(max)) = (adaptive, o.max) {
            for (t, v) in [
                (Timeout::AdaptiveStart, (max / 10).wrapping_mul(6)),
                (Timeout::AdaptiveEnd, (max / 10).wrapping_mul(12)),
            ] {
                if v != 0 {
                    o.timeouts.push((t, v));
                }
            }
        }
        o.timeouts.sort();
        // max-src-* limits need per-source tracking; pfctl turns it on
        if o.max_src_conn.is_some() || o.max_src_conn_rate.is_some() {
            o.source_track = Some(SourceTrack::Rule);
        }
        if o.max_src_nodes.is_some() && o.source_track == Some(SourceTrack::Global) {
            return Err((line, "'max-src-nodes' is incompatible with 'source-track global'".into()));
        }
        if (o.max_src_states.is_some() || o.max_src_nodes.is_some()) && o.source_track.is_none() {
            o.source_track = Some(SourceTrack::Global);
        }
        if o.overload.is_some() && o.max_src_conn.is_none() && o.max_src_conn_rate.is_none() {
            return Err((line, "overload requires max-src-conn or max-src-conn-rate".into()));
        }
        Ok((o, statelock))
    }

    fn redir_spec(c: &mut Cursor) -> PResult<RedirSpec> {
        let mut targets = vec![];
        let target = |c: &mut Cursor| -> PResult<String> {
            if c.eat_punct("(") {
                let s = c.string()?;
                c.expect_punct(")")?;
                Ok(format!("({s})"))
            } else if c.eat_punct("<") {
                let s = c.string()?;
                c.expect_punct(">")?;
                Ok(format!("<{s}>"))
            } else {
                let s = c.string()?;
                if c.eat_punct("/") {
                    Ok(format!("{s}/{}", c.number()?))
                } else {
                    Ok(s)
                }
            }
        };
        targets.extend(c.list(target)?);
        let port = if c.eat_word("port") { Some(c.string()?) } else { None };
        let mut pool_opts = vec![];
        while let Some(w) = c.peek_word() {
            match w {
                "bitmask" | "random" | "round-robin" | "least-states" | "sticky-address" | "static-port" => {
                    pool_opts.push(w.to_string());
                    c.next();
                }
                "source-hash" => {
                    c.next();
                    match c.peek_word() {
                        Some(k) if k.starts_with("0x") => {
                            pool_opts.push(format!("source-hash {k}"));
                            c.next();
                        }
                        _ => pool_opts.push("source-hash".into()),
                    }
                }
                _ => break,
            }
        }
        Ok(RedirSpec { targets, port, pool_opts })
    }

    // ----- antispoof -----

    fn antispoof(&mut self, c: &mut Cursor) -> PResult<()> {
        let mut log = None;
        let mut quick = false;
        for _ in 0..2 {
            if log.is_none() && c.eat_word("log") {
                log = Some(Self::log_opts(c)?);
            } else if !quick && c.eat_word("quick") {
                quick = true;
            }
        }
        c.expect_word("for")?;
        let ifs = c.list(|c| {
            let line = c.line();
            if c.eat_punct("(") {
                let n = c.string()?;
                c.expect_punct(")")?;
                Ok((n, true, line))
            } else {
                Ok((c.string()?, false, line))
            }
        })?;
        let af = if c.eat_word("inet") {
            Some(AddressFamily::Inet)
        } else if c.eat_word("inet6") {
            Some(AddressFamily::Inet6)
        } else {
            None
        };
        let mut label = None;
        let mut rtable = None;
        while !c.at_end() {
            let line = c.line();
            if c.eat_word("label") {
                label = Some(c.string()?);
            } else if c.eat_word("rtable") {
                let n = c.number()?;
                if n > 255 {
                    return Err((line, "invalid rtable id".into()));
                }
                rtable = Some(n as u32);
            } else {
                return c.syntax();
            }
        }
        for (name, dynamic, line) in ifs {
            if !dynamic && !self.resolver.exists(&name) {
                return Err((line, format!("unknown interface {name}")));
            }
            let base = || {
                let mut s = RuleSpec::new(Action::Block(BlockAction::Drop));
                s.direction = Direction::In;
                s.log = log;
                s.quick = quick;
                s.af = af;
                s.label = label.clone();
                s.rtable = rtable;
                s
            };
            let hosts = |addrs: Vec<Addr>| addrs.into_iter().map(|addr| HostItem { addr, negated: false }).collect();
            let mut r1 = base();
            r1.interfaces = vec![Some(InterfaceMatch { name: name.clone(), negated: true })];
            let (nets, own) = if dynamic {
                let d = |modifier| Addr::Dynamic { ifname: name.clone(), modifier, no_alias: false };
                (vec![d(IfAddrModifier::Network)], vec![d(IfAddrModifier::Address)])
            } else {
                let f = |m| self.if_lookup(&name, m, false).into_iter().map(Addr::Net).collect::<Vec<_>>();
                (f(IfAddrModifier::Network), f(IfAddrModifier::Address))
            };
            if !nets.is_empty() {
                r1.src_hosts = hosts(nets);
                self.expand_quiet(r1, c.end_line);
            }
            let loopback = !dynamic && self.resolver.interface_exists(&name) && self.resolver.is_loopback(&name);
            if !loopback && !own.is_empty() {
                let mut r2 = base();
                r2.src_hosts = hosts(own);
                self.expand_quiet(r2, c.end_line);
            }
        }
        Ok(())
    }

    /// Expansion for generated rules: combinations of the wrong family are
    /// simply dropped.
    fn expand_quiet(&mut self, spec: RuleSpec, line: usize) {
        self.expand_inner(spec, line, false);
    }

    fn expand(&mut self, spec: RuleSpec, line: usize) {
        self.expand_inner(spec, line, true);
    }

    // ----- expansion -----

    fn expand_inner(&mut self, spec: RuleSpec, line: usize, complain_if_empty: bool) {
        let mut added = 0;
        let mut failed = false;
        let keep_state =
            spec.keep_state.unwrap_or(if spec.action == Action::Pass { StateMode::Keep } else { StateMode::NoState });
        let mut state_opts = spec.state_opts.clone();
        let statelock = spec.statelock;
        if keep_state != StateMode::NoState {
            let policy_if_bound = self.rs.options.state_policy == StatePolicy::IfBound;
            state_opts.if_bound = statelock.unwrap_or(policy_if_bound);
        }
        // pfctl: 'flags S/SA' by default on stateful pass rules
        let default_flags = if spec.flags.is_none() && spec.action == Action::Pass && keep_state != StateMode::NoState {
            TcpFlags { set: 0x02, mask: 0x12 }
        } else {
            spec.flags.unwrap_or_default()
        };
        for ifm in &spec.interfaces {
            for proto in &spec.protos {
                for icmp in &spec.icmp {
                    for src in &spec.src_hosts {
                        for sport in &spec.src_ports {
                            for dst in &spec.dst_hosts {
                                for dport in &spec.dst_ports {
                                    let (sa, da) = (src.addr.family(), dst.addr.family());
                                    if let (Some(a), Some(b)) = (sa, da) {
                                        if a != b {
                                            continue;
                                        }
                                    }
                                    if let Some(af) = spec.af {
                                        if sa.is_some_and(|a| a != af) || da.is_some_and(|a| a != af) {
                                            continue;
                                        }
                                    }
                                    let af = spec.af.or(sa).or(da);
                                    let is_tcp = proto.is_none() || *proto == Some(IPPROTO_TCP);
                                    let mut ks = keep_state;
                                    if matches!(ks, StateMode::Modulate | StateMode::Synproxy) && !is_tcp {
                                        ks = StateMode::Keep;
                                    }
                                    let mut r = Rule {
                                        action: spec.action,
                                        direction: spec.direction,
                                        log: spec.log,
                                        quick: spec.quick,
                                        interface: ifm.clone(),
                                        af,
                                        proto: *proto,
                                        src: Endpoint { addr: src.addr.clone(), negated: src.negated, port: *sport },
                                        dst: Endpoint { addr: dst.addr.clone(), negated: dst.negated, port: *dport },
                                        flags: if is_tcp { default_flags } else { TcpFlags::default() },
                                        icmp: icmp.map(|(_, m)| m),
                                        tos: spec.tos,
                                        allow_opts: spec.allow_opts,
                                        label: None,
                                        tag: spec.tag.clone(),
                                        tagged: spec.tagged.clone(),
                                        rtable: spec.rtable,
                                        keep_state: ks,
                                        state_opts: state_opts.clone(),
                                        translation: spec.translation.clone(),
                                        route: spec.route.clone(),
                                        anchor: None,
                                        line,
                                    };
                                    let mut problems = vec![];
                                    if let Some((p, _)) = icmp {
                                        if r.proto != Some(*p) {
                                            problems.push("icmp-type mismatch".to_string());
                                        }
                                    }
                                    r.anchor = spec.anchor.clone();
                                    if let Some(l) = &spec.label {
                                        let nr = self.dest().len();
                                        let l = expand_label(l, &r, nr);
                                        if l.len() >= 64 {
                                            problems.push("rule label too long (max 63 chars)".into());
                                        }
                                        r.label = Some(l);
                                    }
                                    problems.extend(rule_consistent(&r));
                                    if problems.is_empty() {
                                        self.dest().push(r);
                                        added += 1;
                                    } else {
                                        failed = true;
                                        for p in problems {
                                            self.error(line, p);
                                        }
                                        self.error(line, "skipping rule due to errors");
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if added == 0 && !failed && complain_if_empty {
            self.error(line, "rule expands to no valid combination");
        }
    }
}

/// pfctl's `rule_consistent`.
fn rule_consistent(r: &Rule) -> Vec<String> {
    let mut p = vec![];
    let proto = r.proto.unwrap_or(0);
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP && (r.src.port.is_some() || r.dst.port.is_some()) {
        p.push("port only applies to tcp/udp".into());
    }
    if proto != IPPROTO_ICMP && proto != IPPROTO_ICMPV6 && r.icmp.is_some() {
        p.push("icmp-type/code only applies to icmp".into());
    }
    if r.af.is_none() && r.icmp.is_some() {
        p.push("must indicate address family with icmp-type/code".into());
    }
    if (proto == IPPROTO_ICMP && r.af == Some(AddressFamily::Inet6))
        || (proto == IPPROTO_ICMPV6 && r.af == Some(AddressFamily::Inet))
    {
        p.push(format!("proto {} doesn't match address family", if proto == IPPROTO_ICMP { "icmp" } else { "icmp6" }));
    }
    if matches!(r.action, Action::Block(BlockAction::ReturnRst { .. })) && proto != IPPROTO_TCP {
        p.push("return-rst can only be applied to TCP rules".into());
    }
    if r.allow_opts && !matches!(r.action, Action::Pass | Action::Match) {
        p.push("allow-opts can only be specified for pass or match rules".into());
    }
    if r.action != Action::Pass && r.keep_state != StateMode::NoState {
        p.push("keep state is great, but only for pass rules".into());
    }
    if matches!(r.keep_state, StateMode::Synproxy | StateMode::Modulate) && r.state_opts.sloppy {
        p.push("sloppy state matching cannot be used with synproxy state or modulate state".into());
    }
    if matches!(r.translation, Some(Translation::NatTo(_) | Translation::RdrTo(_)))
        && r.action != Action::Match
        && r.keep_state == StateMode::NoState
    {
        p.push("nat-to and rdr-to require keep state".into());
    }
    p
}

/// Splits `em0:network:0` into the name and its modifiers. `None` if the
/// text has no interface-like form (e.g. an IPv6 address); `Some(Err)` for a
/// bad combination.
#[allow(clippy::type_complexity)]
fn split_if_modifiers(s: &str) -> Option<Result<(String, IfAddrModifier, bool), (usize, String)>> {
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

fn short_v4(s: &str) -> Option<Ipv4Addr> {
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

fn port_number(w: &str) -> Result<u16, String> {
    match parse_number(w) {
        Some(n) if n > 65535 => Err(format!("illegal port value {n}")),
        Some(n) => Ok(n as u16),
        None => names::service_by_name(w).ok_or_else(|| format!("unknown port {w}")),
    }
}

fn label_addr(e: &Endpoint) -> String {
    let a = match &e.addr {
        Addr::Any => "any".to_string(),
        a => crate::print::format_addr(a, 0),
    };
    if e.negated {
        format!("!{a}")
    } else {
        a
    }
}

fn label_port(p: &Option<PortOp>) -> String {
    match p {
        None => String::new(),
        Some(PortOp::Eq(a)) => a.to_string(),
        Some(PortOp::Ne(a)) => format!("!={a}"),
        Some(PortOp::Lt(a)) => format!("<{a}"),
        Some(PortOp::Le(a)) => format!("<={a}"),
        Some(PortOp::Gt(a)) => format!(">{a}"),
        Some(PortOp::Ge(a)) => format!(">={a}"),
        Some(PortOp::Range(a, b)) => format!("{a}:{b}"),
        Some(PortOp::Inside(a, b)) => format!("{a}><{b}"),
        Some(PortOp::Outside(a, b)) => format!("{a}<>{b}"),
    }
}

/// Label macros, expanded per rule: `$if $srcaddr $dstaddr $srcport
/// $dstport $proto $nr`.
fn expand_label(l: &str, r: &Rule, nr: usize) -> String {
    let proto = match r.proto {
        None => String::new(),
        Some(p) => names::proto_name(p).map(str::to_string).unwrap_or_else(|| p.to_string()),
    };
    let iface = r.interface.as_ref().map(|i| i.name.clone()).unwrap_or_else(|| "any".into());
    // longest names first so $srcaddr is not read as $src…
    let subs = [
        ("$srcaddr", label_addr(&r.src)),
        ("$dstaddr", label_addr(&r.dst)),
        ("$srcport", label_port(&r.src.port)),
        ("$dstport", label_port(&r.dst.port)),
        ("$proto", proto),
        ("$if", iface),
        ("$nr", nr.to_string()),
    ];
    let mut out = String::new();
    let mut rest = l;
    'outer: while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        for (k, v) in &subs {
            if rest.starts_with(k) {
                out.push_str(v);
                rest = &rest[k.len()..];
                continue 'outer;
            }
        }
        out.push('$');
        rest = &rest[1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::StaticResolver;

    fn parse(src: &str) -> Ruleset {
        parse_ruleset(src, "t", &StaticResolver::example()).unwrap()
    }

    #[test]
    fn model_of_a_stateful_tcp_rule() {
        let rs = parse("pass in log quick on em0 proto tcp from 10.0.0.0/8 port > 1023 to ! 192.0.2.1 port 22\n");
        let r = &rs.rules[0];
        assert_eq!(r.action, Action::Pass);
        assert_eq!(r.direction, Direction::In);
        assert!(r.quick && r.log.is_some());
        assert_eq!(r.interface, Some(InterfaceMatch { name: "em0".into(), negated: false }));
        assert_eq!(r.af, Some(AddressFamily::Inet));
        assert_eq!(r.proto, Some(IPPROTO_TCP));
        assert_eq!(r.src.addr, Addr::Net(IpNet::new("10.0.0.0".parse().unwrap(), 8)));
        assert_eq!(r.src.port, Some(PortOp::Gt(1023)));
        assert!(r.dst.negated);
        assert_eq!(r.dst.port, Some(PortOp::Eq(22)));
        assert_eq!(r.flags, TcpFlags { set: 0x02, mask: 0x12 });
        assert_eq!(r.keep_state, StateMode::Keep);
        assert_eq!(r.line, 1);
    }

    #[test]
    fn options_are_effective_values() {
        let rs = parse("set limit states 5\nset timeout { tcp.first 7 }\nset optimization aggressive\nset block-policy return\nblock all\n");
        assert_eq!(rs.options.limit(Limit::States), 5);
        assert_eq!(rs.options.limit(Limit::Frags), 65536);
        // set optimization came later and overrides tcp.first
        assert_eq!(rs.options.timeout(Timeout::TcpFirst), 30);
        assert_eq!(rs.options.timeout(Timeout::UdpFirst), 60);
        assert_eq!(rs.rules[0].action, Action::Block(BlockAction::Return));
    }

    #[test]
    fn macros_are_kept_for_printing() {
        let rs = parse("a = \"em0\"\nb = $a \"em1\"\npass on { $b }\n");
        assert_eq!(rs.macros, vec![("a".into(), "em0".into()), ("b".into(), "em0 em1".into())]);
        assert_eq!(rs.rules.len(), 2);
    }

    #[test]
    fn errors_are_all_collected_with_lines() {
        let e = parse_ruleset("pass in proto frob\npass\npass to port 1\n", "pf.conf", &StaticResolver::example())
            .unwrap_err();
        let msgs: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "pf.conf:1: unknown protocol frob",
                "pf.conf:3: port only applies to tcp/udp",
                "pf.conf:3: skipping rule due to errors",
            ]
        );
    }

    #[test]
    fn load_refuses_translation_but_parse_accepts_it() {
        let src = "match out on egress nat-to (egress)\n";
        let r = StaticResolver::example();
        assert!(parse_ruleset(src, "f", &r).is_ok());
        let e = load_ruleset(src, "f", &r).unwrap_err();
        assert_eq!(e[0].to_string(), "f:1: nat-to not supported yet");
        // Source tracking parses (pfctl -nf prints it) but does not load.
        let src =
            "pass in proto tcp to port 22 keep state (max-src-conn 10, max-src-conn-rate 5/30, overload <bf> flush)\n\
                   pass in proto tcp keep state (source-track rule)\npass in proto tcp keep state (max 5, no-sync)\n";
        assert!(parse_ruleset(src, "f", &r).is_ok());
        let e: Vec<String> = load_ruleset(src, "f", &r).unwrap_err().iter().map(|e| e.to_string()).collect();
        assert_eq!(e, ["f:1: max-src-conn-rate not supported yet", "f:2: source-track not supported yet"]);
    }

    #[test]
    fn port_ops_match() {
        assert!(PortOp::Range(10, 20).matches(20));
        assert!(!PortOp::Inside(10, 20).matches(10));
        assert!(PortOp::Outside(10, 20).matches(21));
        assert!(!PortOp::Outside(10, 20).matches(15));
    }
}
