//! Printing a ruleset the way OpenBSD's `pfctl -nv` does (and `-sr`), and
//! pfctl's basic ruleset optimization (duplicate removal).

use std::fmt::Write;
use std::net::IpAddr;

use crate::model::*;
use crate::names::{self, IPPROTO_TCP};

/// What `pfctl` was asked to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrintOpts {
    /// 0: rules only (`pfctl -sr`, or what `-n` loads); 1 (`-v`): also the
    /// `set` options and table definitions; 2 (`-vv`): also rule numbers
    /// `@N` and table/interface counters (`<t:*>`, `(em0:*)`).
    pub verbose: u8,
    /// `-o`; `None` means the ruleset's `set ruleset-optimization`, else
    /// basic.
    pub opt_level: Option<OptLevel>,
}

/// The whole ruleset, one line per option, table and rule; inline anchors
/// with their rules in braces, then the rulesets of `load anchor` lines
/// (pfctl_load_ruleset / pfctl_load_anchors with `-v`).
pub fn print_ruleset(rs: &Ruleset, opts: &PrintOpts) -> String {
    let mut out = String::new();
    if opts.verbose >= 1 {
        for h in &rs.header {
            match h {
                HeaderItem::Macro(name, value) => {
                    let _ = writeln!(out, "{name} = {}", quoted(value));
                }
                HeaderItem::Set(s) => {
                    if let Some(l) = format_set_option(s) {
                        out.push_str(&l);
                        out.push('\n');
                    }
                }
                HeaderItem::Table(i) => {
                    out.push_str(&format_table(&rs.tables[*i]));
                    out.push('\n');
                }
            }
        }
    }
    if opts.verbose >= 1 {
        // pfctl prints the queues as it loads them, before the rules.
        for q in &rs.queues {
            out.push_str(&q.format());
            out.push('\n');
        }
    }
    let level = opts.opt_level.or(rs.options.ruleset_optimization).unwrap_or_default();
    print_rules(&mut out, rs, &rs.rules, 0, level, opts.verbose, &mut vec![]);
    for la in &rs.load_anchors {
        out.push_str(&print_ruleset(&la.ruleset, opts));
    }
    out
}

/// One ruleset's rules at `depth` (indented two spaces a level, except at
/// `-vv`, as pfctl's INDENT), inline anchors' bodies after their rule;
/// a body is printed once, after the first rule of an expanded list
/// (pfctl_load_ruleset takes the rules out of the anchor as it goes).
fn print_rules(
    out: &mut String,
    rs: &Ruleset,
    rules: &[Rule],
    depth: usize,
    level: OptLevel,
    verbose: u8,
    printed: &mut Vec<String>,
) {
    for (nr, r) in optimized_rules(rules, level).iter().enumerate() {
        if verbose < 2 {
            out.push_str(&"  ".repeat(depth));
        }
        out.push_str(&format_rule(r, if verbose >= 2 { Some(nr) } else { None }, verbose));
        let body = r.anchor.as_ref().filter(|a| a.inline).and_then(|a| rs.anchor_body(&a.path));
        match body {
            // pfctl_load_ruleset prints the braces of every inline anchor
            // (`r->anchor->match`), an empty body too: without them an
            // unnamed one would not parse back (found by the pf_conf fuzz
            // target).
            Some(b) if !printed.contains(&b.path) => {
                printed.push(b.path.clone());
                out.push_str(" {\n");
                print_rules(out, rs, &b.rules, depth + 1, level, verbose, printed);
                out.push_str(&"  ".repeat(depth));
                out.push_str("}\n");
            }
            _ => out.push('\n'),
        }
    }
}

/// Applies pfctl's ruleset optimization to a ruleset about to be loaded
/// (each inline anchor and `load anchor` ruleset on its own, as
/// pfctl_load_ruleset optimizes each).
pub fn optimize(rs: &mut Ruleset, level: OptLevel) {
    rs.rules = optimized_rules(&rs.rules, level);
    for b in &mut rs.anchors {
        b.rules = optimized_rules(&b.rules, level);
    }
    for la in &mut rs.load_anchors {
        optimize(&mut la.ruleset, level);
    }
}

/// The fields pf's skip steps cover; rules that differ only in these are
/// in the same "superblock", inside which pfctl may drop duplicates
/// without changing what the ruleset does.
fn superblock_key(r: &Rule) -> Rule {
    let mut k = r.clone();
    k.interface = None;
    k.direction = Direction::Both;
    k.af = None;
    k.proto = None;
    k.src = Endpoint::default();
    k.dst = Endpoint::default();
    k.line = 0;
    k
}

fn optimized_rules(rules: &[Rule], level: OptLevel) -> Vec<Rule> {
    if level == OptLevel::None {
        return rules.to_vec();
    }
    let mut out: Vec<Rule> = Vec::with_capacity(rules.len());
    let mut block_start = 0;
    for r in rules {
        // An anchor rule is never a duplicate and ends a superblock.
        if r.anchor.is_some() {
            out.push(r.clone());
            block_start = out.len();
            continue;
        }
        if let Some(prev) = out.last() {
            if superblock_key(prev) != superblock_key(r) {
                block_start = out.len();
            }
        }
        if out[block_start..].iter().any(|o| o.same_as(r)) {
            continue;
        }
        out.push(r.clone());
    }
    out
}

pub fn format_set_option(s: &SetOption) -> Option<String> {
    Some(match s {
        SetOption::Skip(ifs) if ifs.is_empty() => "set skip on none".to_string(),
        SetOption::Skip(ifs) => format!("set skip on {{ {} }}", ifs.join(" ")),
        SetOption::BlockPolicy(BlockPolicy::Drop) => "set block-policy drop".into(),
        SetOption::BlockPolicy(BlockPolicy::Return) => "set block-policy return".into(),
        SetOption::StatePolicy(StatePolicy::Floating) => "set state-policy floating".into(),
        SetOption::StatePolicy(StatePolicy::IfBound) => "set state-policy if-bound".into(),
        SetOption::Limit(l, v) => format!("set limit {} {}", l.name(), v),
        SetOption::Timeout(t, v) => format!("set timeout {} {}", t.name(), v),
        SetOption::LogInterface(None) => "set loginterface none".into(),
        SetOption::LogInterface(Some(i)) => format!("set loginterface {i}"),
        SetOption::Optimization(o) => format!("set optimization {}", o.name()),
        SetOption::HostId(h) => format!("set hostid 0x{h:08x}"),
        SetOption::Debug(d) => format!("set debug {d}"),
        // pfctl applies it silently
        SetOption::RulesetOptimization(_) => return None,
        SetOption::Reassemble(r) => r.format(),
    })
}

pub fn format_table(t: &TableDef) -> String {
    let mut s = format!("table <{}>", table_name(&t.name));
    if t.constant {
        s.push_str(" const");
    }
    if t.persist {
        s.push_str(" persist");
    }
    if t.counters {
        s.push_str(" counters");
    }
    let mut i = 0;
    while i < t.init.len() {
        match &t.init[i] {
            TableInit::File(f) => {
                let _ = write!(s, " file {}", quoted(f));
                i += 1;
            }
            TableInit::Entries(_) => {
                // consecutive lists print as one
                s.push_str(" {");
                while let Some(TableInit::Entries(es)) = t.init.get(i) {
                    for e in es {
                        s.push_str(if e.negated { " !" } else { " " });
                        s.push_str(&format_addr(&Addr::Net(e.net), 0));
                    }
                    i += 1;
                }
                s.push_str(" }");
            }
        }
    }
    s
}

pub(crate) fn is_any(a: &Addr) -> bool {
    match a {
        Addr::Any => true,
        Addr::Net(n) => n.prefix == 0 && n.addr.is_unspecified(),
        _ => false,
    }
}

fn format_ip(a: IpAddr) -> String {
    a.to_string()
}

/// How many addresses a table or `(if)` holds, for `print_addr` at
/// `-vv` (`<t:N>`, `(if:N)`); `None` prints `:*`, as pfctl does when it
/// has no kernel object to ask (`-nvv`) or the object is not active.
pub type AddrCount<'a> = &'a dyn Fn(&Addr) -> Option<usize>;

/// pfctl's `print_addr`.
pub fn format_addr(a: &Addr, verbose: u8) -> String {
    format_addr_with(a, verbose, &|_| None)
}

/// `print_addr` with the counts of a loaded ruleset (`pfctl -sr -vv`).
pub fn format_addr_with(a: &Addr, verbose: u8, count: AddrCount) -> String {
    let counted = |s: &mut String| match count(a) {
        Some(n) if n > 0 => {
            let _ = write!(s, ":{n}");
        }
        // pfi_dynaddr's count of 0 prints as `*` too; a table's 0 is a count.
        Some(0) if matches!(a, Addr::Table(_)) => s.push_str(":0"),
        _ => s.push_str(":*"),
    };
    match a {
        Addr::Any => "any".into(),
        Addr::Net(_) if is_any(a) => "any".into(),
        Addr::Net(n) => {
            if n.is_host() {
                format_ip(n.addr)
            } else {
                format!("{}/{}", format_ip(n.addr), n.prefix)
            }
        }
        Addr::Range(lo, hi) => format!("{} - {}", format_ip(*lo), format_ip(*hi)),
        Addr::Table(t) => {
            if verbose >= 2 {
                let mut s = format!("<{}", table_name(t));
                counted(&mut s);
                s.push('>');
                s
            } else {
                format!("<{}>", table_name(t))
            }
        }
        Addr::Dynamic { ifname, modifier, no_alias, prefix } => {
            let mut s = format!("({ifname}");
            s.push_str(match modifier {
                IfAddrModifier::Address => "",
                IfAddrModifier::Network => ":network",
                IfAddrModifier::Broadcast => ":broadcast",
                IfAddrModifier::Peer => ":peer",
            });
            if *no_alias {
                s.push_str(":0");
            }
            if verbose >= 2 {
                counted(&mut s);
            }
            s.push(')');
            // print_addr: the mask when shorter than the host's
            if let Some(p) = prefix {
                let _ = write!(s, "/{p}");
            }
            s
        }
        Addr::NoRoute => "no-route".into(),
        Addr::UrpfFailed => "urpf-failed".into(),
        Addr::RouteLabel(l) => format!("route {}", quoted(l)),
    }
}

fn format_port(p: &PortOp) -> String {
    match *p {
        PortOp::Eq(a) => format!(" port = {a}"),
        PortOp::Ne(a) => format!(" port != {a}"),
        PortOp::Lt(a) => format!(" port < {a}"),
        PortOp::Le(a) => format!(" port <= {a}"),
        PortOp::Gt(a) => format!(" port > {a}"),
        PortOp::Ge(a) => format!(" port >= {a}"),
        PortOp::Range(a, b) => format!(" port {a}:{b}"),
        PortOp::Inside(a, b) => format!(" port {a} >< {b}"),
        PortOp::Outside(a, b) => format!(" port {a} <> {b}"),
    }
}

fn format_endpoint(s: &mut String, e: &Endpoint, verbose: u8, count: AddrCount) {
    if e.negated {
        s.push_str("! ");
    }
    s.push_str(&format_addr_with(&e.addr, verbose, count));
    if let Some(p) = &e.port {
        s.push_str(&format_port(p));
    }
}

fn icmp_code_text(ty: u8, code: u8, v6: bool) -> String {
    names::icmp_code_name(ty, code, v6).map(str::to_string).unwrap_or_else(|| code.to_string())
}

/// pfctl's `print_pool`: the address, the ports as the pool's role
/// reads them, the pool type and options.
pub fn format_pool(p: &Pool, role: PoolRole, verbose: u8, count: AddrCount) -> String {
    let mut s = match &p.ifname {
        // a route's `addr@if` (also written `(if addr)`, as pfctl before
        // 7.0 took it)
        Some(ifname) => format!("{}@{ifname}", format_addr_with(&p.addr, verbose, count)),
        None => format_addr_with(&p.addr, verbose, count),
    };
    let [p1, p2] = p.proxy_port;
    match role {
        PoolRole::Nat => {
            if [p1, p2] != [NAT_PORT_LOW, NAT_PORT_HIGH] && [p1, p2] != [0, 0] {
                if p1 == p2 {
                    let _ = write!(s, " port {p1}");
                } else {
                    let _ = write!(s, " port {p1}:{p2}");
                }
            }
        }
        PoolRole::Rdr => {
            if p1 != 0 {
                let _ = write!(s, " port {p1}");
                if p2 != 0 && p2 != p1 {
                    let _ = write!(s, ":{p2}");
                }
            }
        }
        PoolRole::Route => {}
    }
    match p.kind {
        PoolType::None => {}
        PoolType::SourceHash(HashKey(k)) => {
            let _ = write!(s, " source-hash 0x{:08x}{:08x}{:08x}{:08x}", k[0], k[1], k[2], k[3]);
        }
        t => {
            s.push(' ');
            s.push_str(t.keyword());
        }
    }
    if p.sticky {
        s.push_str(" sticky-address");
    }
    if role == PoolRole::Nat && p.static_port() {
        s.push_str(" static-port");
    }
    s
}

/// pfctl prints a table's name bare; one that would not read back as one
/// word (a blank, punctuation, a backslash: `<"a b">`) is quoted.
fn table_name(s: &str) -> std::borrow::Cow<'_, str> {
    let bare = !s.is_empty() && !s.starts_with('$') && !s.contains('\\') && s.chars().all(crate::lexer::word_char);
    if bare {
        s.into()
    } else {
        quoted(s).into()
    }
}

/// pfctl prints tag names bare; one with blanks or punctuation would not
/// parse again, so those are quoted.
fn quote_if_needed(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "_-.:".contains(c)) {
        s.to_string()
    } else {
        quoted(s)
    }
}

/// A string as a token that reads back as itself (parse.y's `yylex`, see
/// `lexer::Raw::quoted`): in double quotes, where a quote, a blank or a tab
/// after a run of backslashes (and a quote after none) takes one backslash
/// more. pfctl prints the string between quotes as it is; that reads back
/// the same for every string without a quote or a backslash in it. One
/// that ends in a backslash cannot be written in quotes (the backslash
/// would take the closing quote); it comes only from a word (`a\\`), and
/// is printed as one, its backslashes doubled.
pub(crate) fn quoted(s: &str) -> String {
    // A word may begin with a character that cannot go on one (the
    // lexer's `word_start`, e.g. a control character): the long pf_conf
    // fuzz run's `label ^Za\\\\`.
    let mut cs = s.chars();
    if s.ends_with('\\') && cs.next().is_some_and(crate::lexer::word_start) && cs.all(crate::lexer::word_char) {
        return s.replace('\\', "\\\\");
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut run = 0;
    for c in s.chars() {
        if c == '\\' {
            run += 1;
        } else {
            if c == '"' || (run > 0 && (c == ' ' || c == '\t')) {
                out.push('\\');
            }
            run = 0;
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// pfctl's `print_rule`: one rule, no newline.
pub fn format_rule(r: &Rule, nr: Option<usize>, verbose: u8) -> String {
    format_rule_with(r, nr, verbose, &|_| None)
}

/// `print_rule` for a loaded rule: at `-vv` tables and `(if)` addresses
/// show how many addresses they hold (`count`).
pub fn format_rule_with(r: &Rule, nr: Option<usize>, verbose: u8, count: AddrCount) -> String {
    let mut s = String::new();
    if let Some(n) = nr {
        let _ = write!(s, "@{n} ");
    }
    match (&r.anchor, r.action) {
        // print_rule: an unnamed inline anchor (`_N`) is a bare `anchor`.
        (Some(a), _) if a.is_unnamed() => s.push_str("anchor"),
        (Some(a), _) => {
            let _ = write!(s, "anchor {}", quoted(&a.name));
        }
        (None, action) => format_action(&mut s, r, action),
    }
    format_rule_rest(s, r, verbose, count)
}

fn format_action(s: &mut String, r: &Rule, action: Action) {
    match action {
        Action::Pass => s.push_str("pass"),
        Action::Match => s.push_str("match"),
        Action::Block(b) => {
            s.push_str("block");
            match b {
                BlockAction::Drop => s.push_str(" drop"),
                BlockAction::Return => s.push_str(" return"),
                BlockAction::ReturnRst { ttl: 0 } => s.push_str(" return-rst"),
                BlockAction::ReturnRst { ttl } => {
                    let _ = write!(s, " return-rst(ttl {ttl})");
                }
                BlockAction::ReturnIcmp { code, code6 } => {
                    let c4 = icmp_code_text(names::ICMP_UNREACH, code, false);
                    let c6 = icmp_code_text(names::ICMP6_DST_UNREACH, code6, true);
                    match r.af {
                        Some(AddressFamily::Inet) => {
                            let _ = write!(s, " return-icmp({c4})");
                        }
                        Some(AddressFamily::Inet6) => {
                            let _ = write!(s, " return-icmp6({c6})");
                        }
                        None => {
                            let _ = write!(s, " return-icmp({c4}, {c6})");
                        }
                    }
                }
            }
        }
    }
}

fn format_rule_rest(mut s: String, r: &Rule, verbose: u8, count: AddrCount) -> String {
    match r.direction {
        Direction::In => s.push_str(" in"),
        Direction::Out => s.push_str(" out"),
        Direction::Both => {}
    }
    if let Some(l) = &r.log {
        s.push_str(" log");
        let mut parts = vec![];
        if l.all {
            parts.push("all".to_string());
        }
        if l.matches {
            parts.push("matches".into());
        }
        if l.user {
            parts.push("user".into());
        }
        if let Some(n) = l.to_pflog {
            parts.push(format!("to pflog{n}"));
        }
        if !parts.is_empty() {
            let _ = write!(s, " ({})", parts.join(", "));
        }
    }
    if r.quick {
        s.push_str(" quick");
    }
    if let Some(i) = &r.interface {
        if i.negated {
            let _ = write!(s, " on ! {}", i.name);
        } else {
            let _ = write!(s, " on {}", i.name);
        }
    }
    if let Some(af) = r.af {
        s.push(' ');
        s.push_str(af.keyword());
    }
    if let Some(p) = r.proto {
        match names::proto_name(p) {
            Some(n) => {
                let _ = write!(s, " proto {n}");
            }
            None => {
                let _ = write!(s, " proto {p}");
            }
        }
    }
    let all = is_any(&r.src.addr)
        && is_any(&r.dst.addr)
        && !r.src.negated
        && !r.dst.negated
        && r.src.port.is_none()
        && r.dst.port.is_none();
    if all {
        s.push_str(" all");
    } else {
        s.push_str(" from ");
        format_endpoint(&mut s, &r.src, verbose, count);
        s.push_str(" to ");
        format_endpoint(&mut s, &r.dst, verbose, count);
    }
    if let Some(rcv) = &r.received_on {
        let _ = write!(s, " {}received-on {}", if rcv.negated { "!" } else { "" }, rcv.name);
    }
    if let Some(u) = &r.user {
        s.push_str(&u.format("user"));
    }
    if let Some(g) = &r.group {
        s.push_str(&g.format("group"));
    }
    if !r.flags.is_any() {
        let _ = write!(s, " flags {}/{}", names::format_tcp_flags(r.flags.set), names::format_tcp_flags(r.flags.mask));
    } else if matches!(r.action, Action::Pass | Action::Match)
        && (r.proto.is_none() || r.proto == Some(IPPROTO_TCP))
        && !r.fragment
        && r.keep_state != StateMode::NoState
        && r.anchor.is_none()
    {
        s.push_str(" flags any");
    }
    if let Some(icmp) = &r.icmp {
        let v6 = r.af == Some(AddressFamily::Inet6);
        s.push_str(if v6 { " icmp6-type" } else { " icmp-type" });
        match names::icmp_type_name(icmp.icmp_type, v6) {
            Some(n) => {
                let _ = write!(s, " {n}");
            }
            None => {
                let _ = write!(s, " {}", icmp.icmp_type);
            }
        }
        if let Some(c) = icmp.code {
            let _ = write!(s, " code {}", icmp_code_text(icmp.icmp_type, c, v6));
        }
    }
    if let Some(t) = r.tos {
        let _ = write!(s, " tos 0x{t:02x}");
    }
    if let Some(p) = r.prio {
        let _ = write!(s, " prio {p}");
    }
    if let Some((n, sec)) = r.max_pkt_rate {
        let _ = write!(s, " max-pkt-rate {n}/{sec}");
    }
    if r.set.any() {
        s.push_str(&r.set.format());
    }
    let o = &r.state_opts;
    let ropts = o.any();
    match r.keep_state {
        StateMode::NoState if r.action == Action::Pass && r.anchor.is_none() => s.push_str(" no state"),
        StateMode::Keep if ropts => s.push_str(" keep state"),
        StateMode::Modulate => s.push_str(" modulate state"),
        StateMode::Synproxy => s.push_str(" synproxy state"),
        _ => {}
    }
    if let Some(p) = r.probability {
        s.push_str(&format_probability(p));
    }
    if ropts {
        let mut parts: Vec<String> = vec![];
        if let Some(m) = o.max {
            parts.push(format!("max {m}"));
        }
        if o.no_sync {
            parts.push("no-sync".into());
        }
        if let Some(st) = o.source_track {
            parts.push(match st {
                SourceTrack::Rule => "source-track rule".into(),
                SourceTrack::Global => "source-track global".into(),
            });
        }
        if let Some(m) = o.max_src_states {
            parts.push(format!("max-src-states {m}"));
        }
        if let Some(m) = o.max_src_conn {
            parts.push(format!("max-src-conn {m}"));
        }
        if let Some((n, sec)) = o.max_src_conn_rate {
            parts.push(format!("max-src-conn-rate {n}/{sec}"));
        }
        if let Some(m) = o.max_src_nodes {
            parts.push(format!("max-src-nodes {m}"));
        }
        if let Some(ov) = &o.overload {
            let mut t = format!("overload <{}>", table_name(&ov.table));
            if ov.flush {
                t.push_str(" flush");
            }
            if ov.flush_global {
                t.push_str(" global");
            }
            parts.push(t);
        }
        if o.if_bound {
            parts.push("if-bound".into());
        }
        if o.floating {
            parts.push("floating".into());
        }
        if o.sloppy {
            parts.push("sloppy".into());
        }
        if o.pflow {
            parts.push("pflow".into());
        }
        for (t, v) in &o.timeouts {
            parts.push(format!("{} {v}", t.name()));
        }
        let _ = write!(s, " ({})", parts.join(", "));
    }
    if r.fragment {
        s.push_str(" fragment");
    }
    if r.scrub.any() {
        s.push_str(&r.scrub.format());
    }
    if r.allow_opts {
        s.push_str(" allow-opts");
    }
    if let Some(l) = &r.label {
        let _ = write!(s, " label {}", quoted(l));
    }
    if r.once {
        s.push_str(" once");
    }
    if let Some(t) = &r.tag {
        let _ = write!(s, " tag {}", quote_if_needed(t));
    }
    if let Some(t) = &r.tagged {
        if t.negated {
            s.push_str(" !");
        }
        let _ = write!(s, " tagged {}", quote_if_needed(&t.name));
    }
    if let Some(t) = r.rtable {
        let _ = write!(s, " rtable {t}");
    }
    if let Some(d) = &r.divert {
        s.push_str(&d.format());
    }
    let t = &r.translation;
    if let (Some(af), Some(nat)) = (t.af_to, &t.nat) {
        let _ = write!(s, " af-to {} from {}", af.keyword(), format_pool(nat, PoolRole::Nat, verbose, count));
        if let Some(rdr) = &t.rdr {
            let _ = write!(s, " to {}", format_pool(rdr, PoolRole::Rdr, verbose, count));
        }
    } else {
        // Current pfctl prints only one of the two (`else if`); a rule
        // may carry both, and both are printed so that it parses back.
        if let Some(nat) = &t.nat {
            let _ = write!(s, " nat-to {}", format_pool(nat, PoolRole::Nat, verbose, count));
        }
        if let Some(rdr) = &t.rdr {
            let _ = write!(s, " rdr-to {}", format_pool(rdr, PoolRole::Rdr, verbose, count));
        }
    }
    if let Some(rt) = &r.route {
        let _ = write!(s, " {} {}", rt.kind.keyword(), format_pool(&rt.pool, PoolRole::Route, verbose, count));
    }
    s
}
