//! `softnet pfctl`: pfctl(8)'s command line. The `-n` forms parse (and with
//! `-v` print) a ruleset here, offline; everything else goes to the daemon.
//!
//! Options are read the way pfctl's getopt reads them: letters may be
//! grouped (`-nvf pf.conf`, `-sr`, `-vsr`) and an option's argument may be
//! attached or follow.

use crate::admin::Client;
use crate::config::Config;
use crate::proto::{PfFlush, PfInterface, PfShow, PfTableCmd, PfctlOp, Request, Response};
use softnet_pf::model::OptLevel;
use softnet_pf::print::{print_ruleset, PrintOpts};
use softnet_pf::resolver::StaticResolver;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub const USAGE: &str =
    "usage: softnet pfctl [-deOnqv] [-a anchor] [-c config] [-D macro=value] [-F modifier] [-f file]
              [-K host] [-k host] [-o level] [-s modifier] [-T command [address ...]] [-t table]
  -a ANCHOR      -f, -F rules|Tables|all, -sr, -sA, -sT, -T act on this anchor (ANCHOR/*: and below)
  -f FILE|-      load the ruleset (with -n: parse and check only)
  -s r|s|S|i|l|t|m|T|A|a  show rules, states, source-tracking nodes, info, labels,
                 timeouts, memory limits, tables, anchors, all
                 (-v: counters, -vv: rule numbers, state ids; see pfctl(8))
  -F rules|states|Sources|Tables|all  flush
  -k HOST [-k HOST]  kill states from HOST [to HOST]
  -K HOST [-K HOST]  kill source-tracking nodes of HOST [redirected to HOST]
  -t TABLE -T add|delete|show|test|flush|replace [ADDRESS ...]
  -e | -d        enable | disable
  -o none|basic|profile  ruleset optimization
  -c FILE        with -n: resolve interfaces from this softnet.toml
  -D MACRO=VALUE define a macro; the file's own definition does not override it
  -O             with -n: only the options (set ...) of the file
  -q             only print errors and warnings
  -v             verbose (twice: more verbose)";

/// What the command line asked for.
#[derive(Debug, Default, PartialEq)]
pub struct PfctlArgs {
    pub noaction: bool,
    pub verbose: u8,
    pub file: Option<String>,
    pub show: Option<PfShow>,
    pub flush: Option<PfFlush>,
    pub kill: Vec<std::net::IpAddr>,
    /// `-K`: source-tracking nodes to kill.
    pub kill_src: Vec<Ipv4Addr>,
    pub table: Option<String>,
    pub table_cmd: Option<PfTableCmd>,
    pub table_args: Vec<String>,
    pub enable: bool,
    pub disable: bool,
    pub opt_level: Option<String>,
    pub config: Option<PathBuf>,
    /// `-a NAME`.
    pub anchor: Option<String>,
    /// `-D name=value`, in command-line order.
    pub defines: Vec<(String, String)>,
    /// `-O`: load only the options.
    pub options_only: bool,
    pub quiet: bool,
}

fn bad(msg: impl Into<String>) -> String {
    format!("softnet pfctl: {}\n{USAGE}", msg.into())
}

/// Parses pfctl's options (getopt "a:c:D:deF:f:K:k:nOo:qs:T:t:v").
pub fn parse_args(args: &[String]) -> Result<PfctlArgs, String> {
    let mut a = PfctlArgs::default();
    let mut i = 0;
    let mut operands: Vec<String> = Vec::new();
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            operands.extend(args[i..].iter().cloned());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            operands.push(arg.clone());
            continue;
        }
        let letters: Vec<char> = arg[1..].chars().collect();
        let mut k = 0;
        while k < letters.len() {
            let c = letters[k];
            k += 1;
            let takes_arg = "acDFfKkostT".contains(c);
            let optarg = if takes_arg {
                if k < letters.len() {
                    let v: String = letters[k..].iter().collect();
                    k = letters.len();
                    Some(v)
                } else if i < args.len() {
                    i += 1;
                    Some(args[i - 1].clone())
                } else {
                    return Err(bad(format!("option requires an argument -- {c}")));
                }
            } else {
                None
            };
            match (c, optarg) {
                ('n', _) => a.noaction = true,
                ('v', _) => a.verbose = a.verbose.saturating_add(1),
                ('e', _) => a.enable = true,
                ('d', _) => a.disable = true,
                ('f', Some(f)) => a.file = Some(f),
                ('a', Some(n)) => a.anchor = Some(n),
                ('c', Some(f)) => a.config = Some(PathBuf::from(f)),
                // pfctl_cmdline_symset: the name is what comes before the
                // last '='.
                ('D', Some(d)) => match d.rsplit_once('=') {
                    Some((n, v)) => a.defines.push((n.to_string(), v.to_string())),
                    None => return Err(bad(format!("could not parse macro definition {d}"))),
                },
                ('O', _) => a.options_only = true,
                ('q', _) => a.quiet = true,
                ('o', Some(o)) => {
                    if !["none", "basic", "profile"].contains(&o.as_str()) {
                        return Err(bad(format!("unknown optimization level {o:?}")));
                    }
                    a.opt_level = Some(o)
                }
                ('s', Some(m)) => {
                    a.show = Some(match m.as_str() {
                        "r" | "rules" => PfShow::Rules,
                        "s" | "states" => PfShow::States,
                        "S" | "Sources" => PfShow::SrcNodes,
                        "i" | "info" => PfShow::Info,
                        "l" | "labels" => PfShow::Labels,
                        "t" | "timeouts" => PfShow::Timeouts,
                        "m" | "memory" => PfShow::Memory,
                        "T" | "Tables" => PfShow::Tables,
                        "A" | "Anchors" => PfShow::Anchors,
                        "I" | "Interfaces" => PfShow::Interfaces,
                        "a" | "all" => PfShow::All,
                        _ => return Err(bad(format!("unknown show modifier '{m}'"))),
                    })
                }
                ('F', Some(m)) => {
                    a.flush = Some(match m.as_str() {
                        "r" | "rules" => PfFlush::Rules,
                        "s" | "states" => PfFlush::States,
                        "a" | "all" => PfFlush::All,
                        "S" | "Sources" => PfFlush::Sources,
                        "T" | "Tables" => PfFlush::Tables,
                        _ => return Err(bad(format!("unknown flush modifier '{m}'"))),
                    })
                }
                ('k', Some(h)) => {
                    if a.kill.len() == 2 {
                        return Err(bad("can only specify -k twice"));
                    }
                    a.kill.push(h.parse().map_err(|_| bad(format!("bad host {h:?} (an IPv4 or IPv6 address)")))?)
                }
                ('K', Some(h)) => {
                    if a.kill_src.len() == 2 {
                        return Err(bad("can only specify -K twice"));
                    }
                    a.kill_src.push(h.parse().map_err(|_| bad(format!("bad host {h:?} (an IPv4 address)")))?)
                }
                ('t', Some(t)) => a.table = Some(t),
                ('T', Some(cmd)) => {
                    a.table_cmd = Some(match cmd.as_str() {
                        "add" => PfTableCmd::Add,
                        "delete" => PfTableCmd::Delete,
                        "show" => PfTableCmd::Show,
                        "test" => PfTableCmd::Test,
                        "flush" => PfTableCmd::Flush,
                        "replace" => PfTableCmd::Replace,
                        _ => return Err(bad(format!("unknown table command {cmd:?}"))),
                    })
                }
                (c, _) => return Err(bad(format!("unknown option -- {c}"))),
            }
        }
    }
    if a.table_cmd.is_some() {
        if a.table.is_none() {
            return Err(bad("-T needs -t TABLE"));
        }
        a.table_args = operands;
    } else if !operands.is_empty() {
        return Err(bad(format!("unexpected argument {:?}", operands[0])));
    } else if a.table.is_some() {
        return Err(bad("-t needs -T COMMAND"));
    }
    if a.enable && a.disable {
        return Err(bad("-e and -d together"));
    }
    let actions = a.file.is_some() as u8
        + a.show.is_some() as u8
        + a.flush.is_some() as u8
        + !a.kill.is_empty() as u8
        + !a.kill_src.is_empty() as u8
        + a.table_cmd.is_some() as u8;
    if actions == 0 && !a.enable && !a.disable {
        return Err(bad("nothing to do"));
    }
    if a.noaction && a.file.is_none() {
        return Err(bad("-n needs -f FILE"));
    }
    if a.options_only && !a.noaction {
        return Err(bad("-O without -n not supported yet"));
    }
    if !a.defines.is_empty() && a.file.is_none() {
        return Err(bad("-D needs -f FILE"));
    }
    if !a.defines.is_empty() && !a.noaction {
        return Err(bad("-D without -n not supported yet"));
    }
    if let Some(name) = &a.anchor {
        // pfctl's main: what -a applies to, and which names it refuses.
        let applies = a.file.is_some() || a.show.is_some() || a.flush.is_some() || a.table_cmd.is_some();
        if !applies && !name.is_empty() {
            return Err(bad("anchors apply to -f, -F, -s, and -T only"));
        }
        let modify = (a.file.is_some() && !a.noaction) || a.flush.is_some();
        softnet_pf::anchor::command_line_anchor(name, modify)?;
    }
    Ok(a)
}

/// A resolver built from the daemon's answer to `PfctlOp::Interfaces`.
fn resolver_from(ifs: &[PfInterface]) -> StaticResolver {
    let mut r = StaticResolver::new();
    for i in ifs {
        let addrs: Vec<&str> = i.addrs.iter().map(String::as_str).collect();
        r = r.with_interface(&i.name, &addrs);
        for g in &i.groups {
            r = if g == "egress" { r.with_egress(&i.name) } else { r.with_group(&i.name, g) };
        }
    }
    r
}

/// A resolver built from a softnet.toml: lo0 as the stack makes it (with
/// what the configuration adds to it), the interfaces, their addresses,
/// and the egress group (interfaces that reach a configured default
/// gateway).
pub fn resolver_from_config(c: &Config) -> StaticResolver {
    use softnet_core::loopback::{LO0, LO_ADDR, LO_ADDR6, LO_GROUP, LO_LINK_LOCAL};
    // In OpenBSD's order (getifaddrs on lo0): ::1 and fe80::1 from
    // in6_ifattach, then netstart's 127.0.0.1.
    let mut lo_addrs = vec![
        format!("{}/{}", LO_ADDR6.0, LO_ADDR6.1),
        format!("{}/{}", LO_LINK_LOCAL.0, LO_LINK_LOCAL.1),
        format!("{}/{}", LO_ADDR.0, LO_ADDR.1),
    ];
    let mut lo_groups = vec![LO_GROUP.to_string()];
    if let Some(lo) = &c.loopback {
        let more = lo
            .addrs
            .iter()
            .map(|a| format!("{}/{}", a.addr, a.prefix_len))
            .chain(lo.addrs6.iter().map(|a| a.to_string()));
        for a in more {
            if !lo_addrs.contains(&a) {
                lo_addrs.push(a);
            }
        }
        lo_groups.extend(lo.groups.iter().cloned());
    }
    let lo = PfInterface { name: LO0.to_string(), addrs: lo_addrs, groups: lo_groups };
    let gw: Option<Ipv4Addr> = c.routes.iter().find(|r| r.prefix_len == 0).and_then(|r| match r.via {
        crate::config::RouteVia::Gateway(g) => Some(g),
        _ => None,
    });
    let ifs: Vec<PfInterface> = c
        .interfaces
        .iter()
        .map(|i| PfInterface {
            name: i.name.clone(),
            addrs: i
                .addrs
                .iter()
                .map(|a| format!("{}/{}", a.addr, a.prefix_len))
                .chain(i.addrs6.iter().map(|a| a.to_string()))
                .collect(),
            groups: if gw.is_some_and(|g| i.addrs.iter().any(|a| a.contains(g))) {
                vec!["egress".into()]
            } else {
                vec![]
            },
        })
        .collect();
    resolver_from(&[vec![lo], ifs].concat())
}

fn read_ruleset(file: &str) -> Result<(String, String), String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| format!("stdin: {e}"))?;
        Ok(("stdin".to_string(), s))
    } else {
        let s = std::fs::read_to_string(file).map_err(|e| format!("{file}: {}", crate::admin::strerror(&e)))?;
        Ok((file.to_string(), s))
    }
}

fn opt_level(s: &Option<String>) -> Option<OptLevel> {
    match s.as_deref() {
        Some("none") => Some(OptLevel::None),
        Some("basic") => Some(OptLevel::Basic),
        Some("profile") => Some(OptLevel::Profile),
        _ => None,
    }
}

/// `pfctl -nf FILE [-v]`: parse offline with interfaces from `-c CONFIG`,
/// else from the running daemon, else none known.
fn check_offline(a: &PfctlArgs, socket: &Path, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let file = a.file.as_deref().unwrap_or("-");
    let (name, text) = match read_ruleset(file) {
        Ok(x) => x,
        Err(e) => {
            let _ = writeln!(err, "softnet pfctl: {e}");
            return 1;
        }
    };
    let resolver = if let Some(cfg) = &a.config {
        match Config::load(cfg) {
            Ok(c) => resolver_from_config(&c),
            Err(e) => {
                let _ = writeln!(err, "softnet pfctl: {e}");
                return 1;
            }
        }
    } else {
        let from_daemon =
            Client::connect(socket).ok().and_then(|mut c| match c.call(&Request::Pfctl(PfctlOp::Interfaces)).ok()? {
                Response::Text(json) => serde_json::from_str::<Vec<PfInterface>>(&json).ok(),
                _ => None,
            });
        resolver_from(&from_daemon.unwrap_or_default())
    };
    let anchor = match &a.anchor {
        Some(n) => match softnet_pf::anchor::command_line_anchor(n, false) {
            Ok((p, _)) => p,
            Err(e) => {
                let _ = writeln!(err, "{e}");
                return 1;
            }
        },
        None => String::new(),
    };
    let files = softnet_pf::parse::FsFiles::default();
    let popts = softnet_pf::ParseOptions { defines: a.defines.clone(), ..Default::default() };
    let parsed = softnet_pf::parse::parse_ruleset_full(&text, &name, &anchor, &resolver, &files, &popts);
    let opts = PrintOpts { verbose: a.verbose, opt_level: opt_level(&a.opt_level) };
    // pfctl writes its messages to stderr as it meets them and the ruleset
    // to (buffered) stdout: the errors come first.
    if parsed.failed() {
        for e in &parsed.errors {
            let _ = writeln!(err, "{e}");
        }
        // What pfctl printed while reading: macros, options, tables.
        if a.verbose > 0 {
            let mut head = parsed.ruleset;
            head.rules.clear();
            head.queues.clear();
            head.anchors.clear();
            head.load_anchors.clear();
            let _ = out.write_all(print_ruleset(&head, &opts).as_bytes());
        }
        return 1;
    }
    let mut rs = parsed.ruleset;
    if a.verbose > 0 {
        note_load_anchors(&rs, err);
    }
    // Table files are read as a load reads them (printed as `file "…"`).
    if let Err(e) = crate::pfglue::load_table_files(&mut rs.clone()) {
        let _ = err.write_all(e.as_bytes());
        return 1;
    }
    if let Err(e) = softnet_pf::parse::check_queues(&rs) {
        let _ = writeln!(err, "pfctl: {e}");
        return 1;
    }
    if a.options_only {
        // -O: only the options are loaded (and printed).
        rs.rules.clear();
        rs.queues.clear();
        rs.anchors.clear();
        rs.load_anchors.clear();
    }
    if a.verbose > 0 {
        let _ = out.write_all(print_ruleset(&rs, &opts).as_bytes());
    }
    0
}

/// pfctl_load_anchors' note on stderr for each `load anchor` (at `-v`).
fn note_load_anchors(rs: &softnet_pf::Ruleset, err: &mut dyn Write) {
    for la in &rs.load_anchors {
        let _ = writeln!(err, "\nLoading anchor {} from {}", la.path, la.file);
        note_load_anchors(&la.ruleset, err);
    }
}

/// Reads the files a ruleset includes (`include`, `load anchor`) the way
/// the daemon's parse will ask for them, so that they travel with the
/// text: the daemon may not see the client's files.
struct Recorder {
    fs: softnet_pf::parse::FsFiles,
    seen: std::cell::RefCell<Vec<(String, Result<String, String>)>>,
}

impl softnet_pf::parse::FileSource for Recorder {
    fn read(&self, path: &str) -> Result<String, String> {
        let r = self.fs.read(path);
        let mut seen = self.seen.borrow_mut();
        if !seen.iter().any(|(p, _)| p == path) {
            seen.push((path.to_string(), r.clone()));
        }
        r
    }
}

/// The files `text` names, read here (parsed with the daemon's interfaces
/// so that the parse goes as far as the daemon's will).
fn included_files(socket: &Path, filename: &str, text: &str, anchor: &str) -> Vec<(String, Result<String, String>)> {
    if !text.contains("include") && !text.contains("load") {
        return vec![];
    }
    let from_daemon =
        Client::connect(socket).ok().and_then(|mut c| match c.call(&Request::Pfctl(PfctlOp::Interfaces)).ok()? {
            Response::Text(json) => serde_json::from_str::<Vec<PfInterface>>(&json).ok(),
            _ => None,
        });
    let resolver = resolver_from(&from_daemon.unwrap_or_default());
    let rec = Recorder { fs: softnet_pf::parse::FsFiles::default(), seen: Default::default() };
    let _ = softnet_pf::parse::parse_ruleset_in(text, filename, anchor, &resolver, &rec);
    rec.seen.into_inner()
}

/// Runs `softnet pfctl ARGS`; returns the exit code.
pub fn run(socket: &Path, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(u) => {
            let _ = writeln!(err, "{u}");
            return 1;
        }
    };
    if a.noaction {
        return check_offline(&a, socket, out, err);
    }
    let mut ops: Vec<PfctlOp> = Vec::new();
    let anchor = a.anchor.clone().filter(|n| !n.is_empty());
    if let Some(f) = a.flush {
        match (&anchor, f) {
            // pfctl: -F rules (and the rules part of -F all) of the anchor;
            // states are not per anchor.
            (Some(n), PfFlush::Rules) => ops.push(PfctlOp::FlushAnchor { anchor: n.clone() }),
            // -a NAME -F all: the anchor's rules, then its tables.
            (Some(n), PfFlush::All) => {
                ops.push(PfctlOp::FlushAnchor { anchor: n.clone() });
                ops.push(PfctlOp::FlushTables { anchor: Some(n.clone()) });
            }
            (_, PfFlush::Tables) => ops.push(PfctlOp::FlushTables { anchor: anchor.clone() }),
            _ => ops.push(PfctlOp::Flush(f)),
        }
    }
    if let Some(file) = &a.file {
        match read_ruleset(file) {
            Ok((filename, text)) => {
                let path = anchor
                    .as_deref()
                    .and_then(|n| softnet_pf::anchor::command_line_anchor(n, true).ok())
                    .map(|(p, _)| p)
                    .unwrap_or_default();
                let files = included_files(socket, &filename, &text, &path);
                ops.push(PfctlOp::Load {
                    filename,
                    text,
                    opt_level: a.opt_level.clone(),
                    anchor: anchor.clone(),
                    files,
                })
            }
            Err(e) => {
                let _ = writeln!(err, "softnet pfctl: {e}");
                return 1;
            }
        }
    }
    if a.enable {
        ops.push(PfctlOp::Enable);
    }
    if a.disable {
        ops.push(PfctlOp::Disable);
    }
    if !a.kill.is_empty() {
        ops.push(PfctlOp::Kill { src: a.kill[0], dst: a.kill.get(1).copied() });
    }
    if !a.kill_src.is_empty() {
        ops.push(PfctlOp::KillSrcNodes { src: a.kill_src[0], dst: a.kill_src.get(1).copied() });
    }
    if let (Some(name), Some(cmd)) = (&a.table, a.table_cmd) {
        ops.push(PfctlOp::Table {
            name: name.clone(),
            cmd,
            addrs: a.table_args.clone(),
            verbose: a.verbose.min(2),
            anchor: anchor.clone(),
        });
    }
    if let Some(what) = a.show {
        // pfctl knows two levels: PF_OPT_VERBOSE, then PF_OPT_VERBOSE2.
        ops.push(PfctlOp::Show { what, verbose: a.verbose.min(2), anchor: anchor.clone() });
    }
    let mut client = match Client::connect(socket) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "softnet: {e}");
            return 1;
        }
    };
    let mut code = 0;
    for op in ops {
        let is_test = matches!(op, PfctlOp::Table { cmd: PfTableCmd::Test, .. });
        match client.call(&Request::Pfctl(op)) {
            // pfctl prints results on stdout and notes ("pf enabled",
            // "2 addresses added.") on stderr; the daemon marks the latter
            // with a leading NOTE_MARK.
            Ok(Response::Text(t)) => {
                if let Some(note) = t.strip_prefix(NOTE_MARK) {
                    if is_test && !all_match(note) {
                        // pfctl -T test exits 2 unless every address matches.
                        code = 2;
                    }
                    // -q: pfctl's PF_OPT_QUIET keeps its notes to itself
                    if !a.quiet {
                        let _ = err.write_all(note.as_bytes());
                    }
                } else {
                    let _ = out.write_all(t.as_bytes());
                }
            }
            Ok(Response::Error(e)) => {
                let _ = write!(err, "{e}");
                if !e.ends_with('\n') {
                    let _ = writeln!(err);
                }
                return 1;
            }
            Ok(other) => {
                let _ = writeln!(err, "softnet pfctl: unexpected answer {other:?}");
                return 1;
            }
            Err(e) => {
                let _ = writeln!(err, "softnet pfctl: {e}");
                return 1;
            }
        }
    }
    code
}

/// Whether a `-T test` note ("N/M addresses match.") says all M matched.
fn all_match(note: &str) -> bool {
    let counts = note.split_whitespace().next().and_then(|nm| nm.split_once('/'));
    match counts.map(|(n, m)| (n.parse::<usize>(), m.parse::<usize>())) {
        Some((Ok(n), Ok(m))) => n >= m,
        _ => true,
    }
}

/// Marks a daemon answer that pfctl prints on stderr.
pub const NOTE_MARK: &str = "\u{1}note\u{1}";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn grouped_letters_and_attached_arguments() {
        let a = parse_args(&args("-nvf pf.conf")).unwrap();
        assert!(a.noaction);
        assert_eq!(a.verbose, 1);
        assert_eq!(a.file.as_deref(), Some("pf.conf"));
        assert_eq!(parse_args(&args("-sr -v")).unwrap().show, Some(PfShow::Rules));
        assert_eq!(parse_args(&args("-vsr")).unwrap().verbose, 1);
        assert_eq!(parse_args(&args("-sr -vv")).unwrap().verbose, 2);
        assert_eq!(parse_args(&args("-v -ss -v")).unwrap().verbose, 2);
        assert_eq!(parse_args(&args("-sl")).unwrap().show, Some(PfShow::Labels));
        assert_eq!(parse_args(&args("-s labels")).unwrap().show, Some(PfShow::Labels));
        assert_eq!(parse_args(&args("-s states")).unwrap().show, Some(PfShow::States));
        assert_eq!(parse_args(&args("-Fs")).unwrap().flush, Some(PfFlush::States));
        assert_eq!(parse_args(&args("-o none -nvf -")).unwrap().opt_level.as_deref(), Some("none"));
        let d = parse_args(&args("-Dext=em0 -D a=b=c -O -q -nvf -")).unwrap();
        assert_eq!(d.defines, [("ext".to_string(), "em0".to_string()), ("a=b".to_string(), "c".to_string())]);
        assert!(d.options_only && d.quiet);
        let k = parse_args(&args("-k 10.0.1.2 -k 10.0.2.2")).unwrap();
        assert_eq!(k.kill, vec![Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 2, 2)]);
        assert_eq!(parse_args(&args("-sS")).unwrap().show, Some(PfShow::SrcNodes));
        assert_eq!(parse_args(&args("-FS")).unwrap().flush, Some(PfFlush::Sources));
        assert_eq!(parse_args(&args("-s Sources -v")).unwrap().show, Some(PfShow::SrcNodes));
        let k = parse_args(&args("-K 10.0.1.2 -K10.0.2.2")).unwrap();
        assert_eq!(k.kill_src, vec![Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 2, 2)]);
        assert!(parse_args(&args("-K 10.0.1.2 -K 10.0.2.2 -K 10.0.3.2"))
            .unwrap_err()
            .contains("can only specify -K twice"));
        let t = parse_args(&args("-t bad -T add 10.0.0.0/8 !10.1.0.0/16")).unwrap();
        assert_eq!(t.table_cmd, Some(PfTableCmd::Add));
        assert_eq!(t.table_args, vec!["10.0.0.0/8", "!10.1.0.0/16"]);
        let a = parse_args(&args("-a relayd/* -sA")).unwrap();
        assert_eq!((a.anchor.as_deref(), a.show), (Some("relayd/*"), Some(PfShow::Anchors)));
        assert_eq!(parse_args(&args("-a _1 -sr")).unwrap().anchor.as_deref(), Some("_1"));
        // Tables of an anchor.
        let t = parse_args(&args("-a relayd/web -t hosts -T show")).unwrap();
        assert_eq!((t.anchor.as_deref(), t.table.as_deref()), (Some("relayd/web"), Some("hosts")));
        assert_eq!(parse_args(&args("-a relayd/web -F Tables")).unwrap().flush, Some(PfFlush::Tables));
        assert_eq!(parse_args(&args("-FT")).unwrap().flush, Some(PfFlush::Tables));
    }

    #[test]
    fn table_test_counts_decide_the_exit_code() {
        assert!(all_match("2/2 addresses match.\n"));
        assert!(!all_match("1/2 addresses match.\n"));
        assert!(!all_match("0/1 addresses match.\n"));
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for bad in [
            "",
            "-x",
            "-s",
            "-sz",
            "-F bogus",
            "-k notanip",
            "-T add 1.2.3.4",
            "-t t",
            "-e -d",
            "-n",
            "stray",
            "-o fast -sr",
            "-D novalue -nvf -",
            "-O -f pf.conf",
            "-Dx=y -sr",
            "-a foo -e",
            "-a _1 -F rules",
            "-a _x/y -f pf.conf",
            "-a a//b -sr",
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn offline_check_prints_normalized_rules_and_reports_errors() {
        let dir = std::env::temp_dir().join(format!("sn-pfctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pf.conf");
        std::fs::write(&f, "ext = \"sn0\"\nblock\npass in on $ext proto tcp to port ssh\n").unwrap();
        let cfg = dir.join("softnet.toml");
        std::fs::write(&cfg, "[[interface]]\nname = \"sn0\"\ndriver = \"tap\"\naddr = [\"10.0.1.1/24\"]\n").unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let argv = vec!["-c".into(), cfg.display().to_string(), "-nvf".into(), f.display().to_string()];
        let code = run(Path::new("/nonexistent.sock"), &argv, &mut out, &mut err);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("block drop all"), "{out}");
        assert!(out.contains("pass in on sn0 proto tcp from any to any port = 22 flags S/SA"), "{out}");
        std::fs::write(&f, "pass in proto icmp to port 22\n").unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let argv = vec!["-nf".into(), f.display().to_string()];
        assert_eq!(run(Path::new("/nonexistent.sock"), &argv, &mut out, &mut err), 1);
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains("pf.conf:1: "), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
