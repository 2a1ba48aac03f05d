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

mod addr;
mod anchor_stmt;
mod cursor;
mod expand;
mod more_opts;
mod options;
mod pool;
mod queue;
mod rule;
mod state_opts;

use cursor::*;

pub use anchor_stmt::{all_rules, FileSource, FsFiles};
pub use queue::check_queues;

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

/// What pfctl's command line adds to a parse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// `-D name=value`: macros the file cannot redefine (pfctl's
    /// persistent symbols; the file's own definition is still printed).
    pub defines: Vec<(String, String)>,
    /// Queues defined before (a `load anchor` file's rules may assign
    /// packets to the main ruleset's queues: pfctl's queue list is one).
    pub queues: Vec<String>,
}

/// A parse with its errors; `ruleset` holds what was read before and
/// around them (pfctl prints the `set`, macro and table lines as it reads
/// them, so `-nv` shows those even when the file has errors).
#[derive(Debug, Clone)]
pub struct Parsed {
    pub ruleset: Ruleset,
    pub errors: Vec<ParseError>,
    /// Syntax errors pfctl's parser does not report (yacc reports none
    /// until three tokens were read after the last error) but that still
    /// make the file fail.
    pub silent_errors: usize,
}

impl Parsed {
    pub fn failed(&self) -> bool {
        !self.errors.is_empty() || self.silent_errors > 0
    }
}

/// `parse_ruleset` with pfctl's command-line additions, keeping the
/// partial ruleset when there are errors.
pub fn parse_ruleset_with(src: &str, filename: &str, resolver: &dyn IfResolver, opts: &ParseOptions) -> Parsed {
    parse_ruleset_full(src, filename, "", resolver, &FsFiles::default(), opts)
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
    let p = parse_ruleset_full(src, filename, anchor_path, resolver, files, &ParseOptions::default());
    if p.failed() {
        Err(p.errors)
    } else {
        Ok(p.ruleset)
    }
}

/// The parse all the entry points share.
pub fn parse_ruleset_full(
    src: &str,
    filename: &str,
    anchor_path: &str,
    resolver: &dyn IfResolver,
    files: &dyn FileSource,
    opts: &ParseOptions,
) -> Parsed {
    let mut p = Parser {
        resolver,
        macros: opts.defines.iter().cloned().collect(),
        defined: opts.defines.iter().map(|(n, _)| n.clone()).collect(),
        known_queues: opts.queues.clone(),
        silent_errors: 0,
        rs: Ruleset { filename: filename.to_string(), anchor_path: anchor_path.to_string(), ..Ruleset::default() },
        errors: vec![],
        files,
        file: filename.to_string(),
        includes: vec![],
        bodies: vec![],
        braces: 0,
        auto_tables: 0,
    };
    p.parse_text(src);
    // `load anchor` files are parsed once the ruleset parsed cleanly, as
    // pfctl_load_anchors does after parse_config.
    if p.errors.is_empty() && p.silent_errors == 0 {
        p.load_anchor_files();
    }
    // Printed rules come after every `set` line, so a floating rule must
    // say so when the final state-policy is if-bound.
    if p.rs.options.state_policy == StatePolicy::IfBound {
        let fix = |r: &mut Rule| r.state_opts.floating = r.keep_state != StateMode::NoState && !r.state_opts.if_bound;
        p.rs.rules.iter_mut().for_each(fix);
        p.rs.anchors.iter_mut().flat_map(|b| b.rules.iter_mut()).for_each(fix);
    }
    Parsed { ruleset: p.rs, errors: p.errors, silent_errors: p.silent_errors }
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
        // Options the data path does not act on yet: loading them would
        // promise what does not happen.
        let more = [(r.set.queue.is_some(), "queue"), (r.set.delay.is_some(), "set delay")];
        for (_, what) in more.iter().filter(|(on, _)| *on) {
            refuse(what);
        }
        if let Some(what) = crate::divert::unsupported(r) {
            refuse(&what);
        }
    }
    if let Some(q) = rs.queues.first() {
        errs.push(ParseError { file: rs.filename.clone(), line: q.line, message: "queue not supported yet".into() });
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

type PResult<T> = Result<T, (usize, String)>;

/// pfvar.h `PF_THRESHOLD_MAX`: 0xffffffff / `PF_THRESHOLD_MULT` (1000).
const PF_THRESHOLD_MAX: u32 = u32::MAX / 1000;

/// One source or destination choice before expansion.
#[derive(Debug, Clone)]
struct HostItem {
    addr: Addr,
    negated: bool,
    /// An IPv4 address given a netmask over 32 bits: pfctl takes it and
    /// refuses the rule per combination (check_netmask).
    bad_mask: Option<u8>,
    /// `fe80::1%em0`: the interface of a scoped address (its ifindex in
    /// pfctl), which the rule's interface must be.
    scope: Option<String>,
}

impl HostItem {
    fn new(addr: Addr) -> HostItem {
        HostItem { addr, negated: false, bad_mask: None, scope: None }
    }
}

#[derive(Debug, Clone)]
enum StateOptItem {
    Max(u32),
    NoSync,
    /// `None`: `source-track` alone (global, but not said so).
    SourceTrack(Option<SourceTrack>),
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
    /// nat-to / binat-to (or af-to's `from`), rdr-to (af-to's `to`), as
    /// written: pools are made per expansion.
    nat: Option<pool::RedirSpec>,
    rdr: Option<pool::RedirSpec>,
    af_to: Option<AddressFamily>,
    route: Option<(RouteKind, pool::RedirSpec)>,
    anchor: Option<AnchorCall>,
    received_on: Option<ReceivedOn>,
    /// `user`/`group` lists (each expands the rule, as the lists above).
    users: Vec<IdOp>,
    groups: Vec<IdOp>,
    prio: Option<u8>,
    max_pkt_rate: Option<(u32, u32)>,
    set: SetActions,
    probability: Option<u32>,
    fragment: bool,
    scrub: Scrub,
    once: bool,
    divert_spec: Option<more_opts::DivertSpec>,
    /// The divert once the rule's address family is known.
    divert: Option<Divert>,
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
            src_hosts: vec![HostItem::new(Addr::Any)],
            src_ports: vec![None],
            dst_hosts: vec![HostItem::new(Addr::Any)],
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
            nat: None,
            rdr: None,
            af_to: None,
            route: None,
            anchor: None,
            received_on: None,
            users: vec![],
            groups: vec![],
            prio: None,
            max_pkt_rate: None,
            set: SetActions::default(),
            probability: None,
            fragment: false,
            scrub: Scrub::default(),
            once: false,
            divert_spec: None,
            divert: None,
        }
    }
}

struct Parser<'r> {
    resolver: &'r dyn IfResolver,
    macros: HashMap<String, String>,
    /// Macros from the command line (`-D`), which the file cannot change.
    defined: Vec<String>,
    /// Syntax errors yacc's recovery kept quiet (see `parse_text`).
    silent_errors: usize,
    /// Queues defined outside this file (`ParseOptions::queues`).
    known_queues: Vec<String>,
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
    /// Tables made of pool lists so far (`<__automatic_N>`).
    auto_tables: usize,
}

impl<'r> Parser<'r> {
    fn error(&mut self, line: usize, msg: impl Into<String>) {
        self.errors.push(ParseError { file: self.file.clone(), line, message: msg.into() });
    }

    /// Every statement of `src` (the file, or an included one).
    fn parse_text(&mut self, src: &str) {
        let mut lexer = Lexer::new(src);
        // byacc's error recovery: after an error it reports no syntax error
        // until it has shifted three tokens: the failed line's newline, then
        // one per blank line and per token. `quiet` counts what is left.
        let mut quiet = 0usize;
        let mut prev_end = 0;
        while let Some(st) = lexer.statement(&self.macros) {
            let first = st.tokens.first().map_or(st.end_line, |t| t.line);
            quiet = quiet.saturating_sub(first.saturating_sub(prev_end + 1));
            prev_end = st.end_line;
            if !st.errors.is_empty() {
                for (line, msg) in st.errors {
                    self.error(line, msg);
                }
                // pfctl's lexer turns a bad macro into an error token, which the
                // grammar then rejects.
                self.error(st.end_line, "syntax error");
                quiet = 2;
                continue;
            }
            let mut c = Cursor { toks: &st.tokens, pos: 0, end_line: st.end_line };
            match self.statement(&mut c) {
                Ok(()) => quiet = 0,
                Err(e) => {
                    if e.1 == "syntax error" && c.pos < quiet {
                        self.silent_errors += 1;
                    } else {
                        self.error(e.0, e.1);
                    }
                    quiet = 2;
                }
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
                Some("table") => {
                    c.next();
                    self.table(c)
                }
                _ => c.syntax(),
            };
        }
        if c.peek_at(1).is_some_and(|t| t.is_punct("=")) {
            return self.macro_def(c);
        }
        let Some(w) = c.peek_word() else {
            return c.syntax();
        };
        match w {
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
            "anchor" => self.anchor_rule(c),
            "load" => self.load_anchor(c),
            "include" => self.include(c),
            "queue" => {
                c.next();
                self.queue(c)
            }
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
        // The value prints as `name = "value"` (`print::quoted`), where a
        // backslash at the end would take the closing quote; only a value
        // that is one word can print as a word instead.
        if value.ends_with('\\') && !value.chars().all(crate::lexer::word_char) {
            return Err((line, format!("invalid macro value for {name}: a backslash at its end")));
        }
        self.rs.macros.retain(|(n, _)| *n != name);
        self.rs.macros.push((name.clone(), value.clone()));
        self.rs.header.push(HeaderItem::Macro(name.clone(), value.clone()));
        // symset: a persistent (command-line) symbol stays.
        if !self.defined.contains(&name) {
            self.macros.insert(name, value);
        }
        Ok(())
    }
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
                // pfctl says so whenever no rule came of the line
                "pf.conf:3: rule expands to no valid combination",
            ]
        );
    }

    #[test]
    fn af_to_loads_with_sticky_address_on_either_pool() {
        let r = StaticResolver::example();
        assert!(load_ruleset("match out on egress nat-to (egress)\n", "f", &r).is_ok());
        let src = "pass in inet af-to inet6 from 2001:db8::1 to 2001:db8::2\n";
        assert!(load_ruleset(src, "f", &r).is_ok());
        let nat64 = "pass in inet6 from any to 64:ff9b::/96 af-to inet from 192.0.2.1\n";
        assert!(load_ruleset(nat64, "f", &r).is_ok());
        let sticky = "pass in inet6 from any to 64:ff9b::/96 af-to inet from 192.0.2.0/28 round-robin sticky-address\n";
        assert!(load_ruleset(sticky, "f", &r).is_ok());
        let to = "pass in inet6 from any to 64:ff9b::/96 af-to inet from 192.0.2.1 to 198.51.100.0/28 random sticky-address\n";
        assert!(load_ruleset(to, "f", &r).is_ok());
        // sticky-address and least-states on nat-to/rdr-to pools load.
        let src = "match out on em0 nat-to { 192.0.2.1, 192.0.2.2 } sticky-address\n\
                   pass in on em0 rdr-to { 10.0.0.1, 10.0.0.2 } least-states sticky-address\n";
        assert!(load_ruleset(src, "f", &r).is_ok());
        // Source tracking loads.
        let src =
            "pass in proto tcp to port 22 keep state (max-src-conn 10, max-src-conn-rate 5/30, overload <bf> flush)\n\
                   pass in proto tcp keep state (source-track rule)\npass in proto tcp keep state (max 5, no-sync)\n";
        assert!(load_ruleset(src, "f", &r).is_ok());
    }

    /// pfctl's parse.y: which options turn tracking on, per rule or
    /// global, what contradicts `source-track global`, the bad values, and
    /// the src.track timeout a connection rate raises.
    #[test]
    fn source_tracking_options_as_pfctl_folds_them() {
        let r = StaticResolver::example();
        let opts = |o: &str| {
            let rs = parse_ruleset(&format!("pass in proto tcp keep state ({o})\n"), "f", &r)
                .map_err(|e| e[0].to_string())?;
            Ok::<_, String>(rs.rules[0].state_opts.clone())
        };
        let track = |o: &str| opts(o).unwrap().source_track;
        assert_eq!(track("source-track"), Some(SourceTrack::Global));
        assert_eq!(track("max-src-states 3"), Some(SourceTrack::Global));
        assert_eq!(track("source-track, max-src-nodes 10"), Some(SourceTrack::Rule));
        assert_eq!(track("max-src-conn 10"), Some(SourceTrack::Rule));
        assert_eq!(track("source-track rule, max-src-states 3"), Some(SourceTrack::Rule));
        assert_eq!(track("max 10"), None);
        for (o, e) in [
            (
                "source-track global, max-src-nodes 10",
                "f:1: 'max-src-nodes' is incompatible with 'source-track global'",
            ),
            ("source-track global, max-src-conn 10", "f:1: 'max-src-conn' is incompatible with 'source-track global'"),
            (
                "source-track global, max-src-conn-rate 1/2",
                "f:1: 'max-src-conn-rate' is incompatible with 'source-track global'",
            ),
            ("max-src-states 0", "f:1: 'max-src-states' must be > 0"),
            ("max-src-conn-rate 0/5", "f:1: 'max-src-conn-rate' values must be > 0"),
            ("max-src-conn-rate 4294968/5", "f:1: 'max-src-conn-rate' maximum rate must be < 4294967"),
            ("overload <bad> flush", "f:1: 'overload' requires 'max-src-conn' or 'max-src-conn-rate'"),
            ("source-track, source-track rule", "f:1: state option 'source-track' multiple definitions"),
        ] {
            assert_eq!(opts(o).unwrap_err(), e, "{o}");
        }
        let o = opts("max-src-conn-rate 3/99").unwrap();
        assert_eq!(o.timeouts, [(Timeout::SrcTrack, 99)]);
        let o = opts("max-src-conn-rate 3/99, src.track 200").unwrap();
        assert_eq!(o.timeouts, [(Timeout::SrcTrack, 200)]);
    }

    #[test]
    fn a_table_defined_twice_is_its_last_definition() {
        let rs = parse("table <t> { 10.0.0.1 }\ntable <t> persist { 10.0.0.2 }\n");
        let t = rs.table("t").unwrap();
        assert!(t.persist);
        assert_eq!(t.entries().map(|e| e.net.addr.to_string()).collect::<Vec<_>>(), ["10.0.0.2"]);
    }

    #[test]
    fn command_line_macros_win_over_the_files_and_errors_keep_the_header() {
        let opts = ParseOptions { defines: vec![("ext".into(), "em1".into())], ..ParseOptions::default() };
        let p = parse_ruleset_with(
            "ext = \"em0\"\nset limit states 10\npass on $ext\npass bogus\n",
            "f",
            &StaticResolver::example(),
            &opts,
        );
        assert_eq!(p.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(), ["f:4: syntax error"]);
        // the file's definition is still what -nv prints
        assert_eq!(p.ruleset.header[0], HeaderItem::Macro("ext".into(), "em0".into()));
        assert_eq!(p.ruleset.rules[0].interface.as_ref().unwrap().name, "em1");
        assert_eq!(p.ruleset.options.limit(Limit::States), 10);
    }

    #[test]
    fn port_ops_match() {
        assert!(PortOp::Range(10, 20).matches(20));
        assert!(!PortOp::Inside(10, 20).matches(10));
        assert!(PortOp::Outside(10, 20).matches(21));
        assert!(!PortOp::Outside(10, 20).matches(15));
    }
}
