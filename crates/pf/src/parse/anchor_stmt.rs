//! parse.y's `anchorrule`, `loadrule` and `include`: anchor rules with the
//! filter parameters a rule takes, inline `{ … }` bodies (nested, unnamed
//! ones named `_N` as pfctl's `pf->bn`), `load anchor NAME from FILE`, and
//! `include FILE` (read relative to the working directory, as pfctl's
//! pushfile opens it; a file including itself, directly or not, is an
//! error rather than pfctl's descent into "Too many open files").

use std::path::{Path, PathBuf};

use super::{Cursor, PResult, Parser, RuleSpec};
use crate::anchor::{self, PFCTL_ANCHOR_STACK_DEPTH};
use crate::lexer::{Tok, Token};
use crate::model::{Action, AnchorBody, AnchorCall, LoadAnchor, Ruleset, StateMode};

/// Where `include` and `load anchor` files come from.
pub trait FileSource {
    /// The text of `path` as the ruleset names it, or why it cannot be
    /// read (as strerror says it).
    fn read(&self, path: &str) -> Result<String, String>;
}

/// Files from the file system; relative names are taken from `cwd` (the
/// daemon reads them for a `softnet pfctl` that ran there), else from the
/// process's working directory.
#[derive(Debug, Clone, Default)]
pub struct FsFiles {
    pub cwd: Option<PathBuf>,
}

impl FileSource for FsFiles {
    fn read(&self, path: &str) -> Result<String, String> {
        let p = match &self.cwd {
            Some(d) if Path::new(path).is_relative() => d.join(path),
            _ => PathBuf::from(path),
        };
        if p.is_dir() {
            return Err("Is a directory".into());
        }
        std::fs::read_to_string(&p).map_err(|e| strerror(&e))
    }
}

/// An I/O error as strerror(3) words it (no "(os error N)").
pub fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// An inline anchor body being read.
pub(super) struct Body {
    pub path: String,
    pub rules: Vec<crate::model::Rule>,
}

/// The index of an inline body's `{` in `toks` (at brace depth 0, the
/// lexer puts a newline right after it), or `toks.len()`.
fn body_brace(toks: &[Token], from: usize) -> usize {
    let mut depth = 0usize;
    for i in from..toks.len() {
        let t = &toks[i];
        if t.is_punct("{") {
            if depth == 0 && toks.get(i + 1).is_some_and(|n| n.tok == Tok::Newline) {
                return i;
            }
            depth += 1;
        } else if t.is_punct("}") {
            depth = depth.saturating_sub(1);
        }
    }
    toks.len()
}

impl Parser<'_> {
    /// The path of the ruleset being read (an inline anchor's, else the
    /// one loaded).
    pub(super) fn cur_path(&self) -> String {
        self.bodies.last().map(|b| b.path.clone()).unwrap_or_else(|| self.rs.anchor_path.clone())
    }

    /// parse.y `anchorname`: a string, or nothing when a keyword (or no
    /// word) follows `anchor`; an unquoted number is not a name.
    fn anchor_name(&self, c: &mut Cursor) -> PResult<Option<String>> {
        let line = c.line();
        let name = match c.peek().map(|t| &t.tok) {
            Some(Tok::Quoted(s)) => s.clone(),
            Some(Tok::Word(w)) if w.bytes().all(|b| b.is_ascii_digit()) => return c.syntax(),
            Some(Tok::Word(w)) if !super::pool::is_keyword(w) => w.clone(),
            _ => return Ok(None),
        };
        c.next();
        anchor::check_name(&name, &self.cur_path()).map_err(|m| (line, m))?;
        Ok(Some(name))
    }

    /// `anchor [name] [in|out] [quick] [on …] [af] [proto …] [from … to …]
    /// [filter options] [{ … }]`.
    pub(super) fn anchor_rule(&mut self, c: &mut Cursor) -> PResult<()> {
        c.expect_word("anchor")?;
        let brace = body_brace(c.toks, c.pos);
        let mut h = Cursor { toks: &c.toks[..brace], pos: c.pos, end_line: c.end_line };
        let name = self.anchor_name(&mut h)?;
        let inline = brace < c.toks.len();
        let parent = self.cur_path();
        let mut spec = RuleSpec::new(Action::Pass);
        if h.eat_word("in") {
            spec.direction = crate::model::Direction::In;
        } else if h.eat_word("out") {
            spec.direction = crate::model::Direction::Out;
        }
        spec.quick = h.eat_word("quick");
        self.rule_match(&mut h, &mut spec)?;
        // What parse.y's anchorrule action checks, at the rule's end.
        let end = c.end_line;
        let call = if inline {
            if name.as_deref().is_some_and(|n| n.contains('/')) {
                return Err((end, "anchor paths containing '/' cannot be used for inline anchors.".into()));
            }
            self.braces += 1;
            let last = name.clone().unwrap_or_else(|| format!("_{}", self.braces));
            let path = if parent.is_empty() { last.clone() } else { format!("{parent}/{last}") };
            AnchorCall { name: last, path, wildcard: false, inline: true }
        } else {
            let Some(name) = name else {
                return Err((end, "anchors without explicit rules must specify a name".into()));
            };
            if name.len() > 1 && name.ends_with('/') {
                return Err((end, format!("anchorrule: bad anchor name {name}")));
            }
            // An invalid path parses (pfctl -n does not ask the kernel);
            // loading refuses it (compile::compile_tree).
            let (path, wildcard) = anchor::resolve(&parent, &name).unwrap_or_else(|_| (name.clone(), false));
            AnchorCall { name, path, wildcard, inline: false }
        };
        if spec.keep_state.is_some() {
            return Err((end, "cannot specify state handling on anchors".into()));
        }
        if spec.route.is_some() {
            return Err((end, "cannot specify route handling on anchors".into()));
        }
        // expand_rule is given no translation for an anchor rule.
        spec.nat = None;
        spec.rdr = None;
        spec.af_to = None;
        spec.keep_state = Some(StateMode::NoState);
        if inline {
            self.anchor_body(c, brace, &call)?;
        }
        spec.anchor = Some(call);
        self.expand(spec, c.end_line);
        Ok(())
    }

    /// parse.y `pfa_anchor`: the statements of an inline anchor, each up
    /// to a newline at its own level, into the anchor at `call.path`.
    fn anchor_body(&mut self, c: &mut Cursor, brace: usize, call: &AnchorCall) -> PResult<()> {
        let toks = c.toks;
        let line = toks[brace].line;
        if self.bodies.len() + 1 >= PFCTL_ANCHOR_STACK_DEPTH {
            return Err((line, "pfa_anchor: anchors too deep".into()));
        }
        if !toks.last().is_some_and(|t| t.is_punct("}")) {
            return c.syntax();
        }
        if self.rs.anchor_body(&call.path).is_some_and(|b| !b.rules.is_empty()) {
            return Err((c.end_line, format!("inline anchor '{}' already exists", call.name)));
        }
        self.bodies.push(Body { path: call.path.clone(), rules: vec![] });
        let inner = &toks[brace + 2..toks.len() - 1];
        let mut start = 0;
        let mut depth = 0usize;
        for (i, t) in inner.iter().enumerate() {
            if t.is_punct("{") {
                depth += 1;
            } else if t.is_punct("}") {
                depth = depth.saturating_sub(1);
            }
            let end = t.tok == Tok::Newline && depth == 0;
            if end || i + 1 == inner.len() {
                let stop = if end { i } else { i + 1 };
                if stop > start {
                    let end_line = if end { t.line } else { toks[toks.len() - 1].line };
                    let mut sub = Cursor { toks: &inner[start..stop], pos: 0, end_line };
                    if let Err(e) = self.statement(&mut sub) {
                        self.error(e.0, e.1);
                    }
                }
                start = i + 1;
            }
        }
        let body = self.bodies.pop().expect("pushed above");
        self.rs.anchors.retain(|b| b.path != body.path);
        self.rs.anchors.push(AnchorBody { path: body.path, rules: body.rules });
        Ok(())
    }

    /// `load anchor NAME from FILE`: the file is read and parsed for the
    /// anchor once this ruleset parsed (`load_anchor_files`).
    pub(super) fn load_anchor(&mut self, c: &mut Cursor) -> PResult<()> {
        let line = c.line();
        c.expect_word("load")?;
        c.expect_word("anchor")?;
        let Some(name) = self.anchor_name(c)? else {
            return Err((line, "anchor name is missing".into()));
        };
        c.expect_word("from")?;
        let file = c.string()?;
        if !c.at_end() {
            return c.syntax();
        }
        let base = &self.rs.anchor_path;
        let path = if base.is_empty() { name.trim_start_matches('/').to_string() } else { format!("{base}/{name}") };
        self.rs.load_anchors.push(LoadAnchor { path, file, line, ruleset: Box::default() });
        Ok(())
    }

    /// pfctl_load_anchors: each `load anchor` file parsed for its anchor
    /// (its own `load anchor` lines too).
    pub(super) fn load_anchor_files(&mut self) {
        let mut loads = std::mem::take(&mut self.rs.load_anchors);
        for la in &mut loads {
            let text = match self.files.read(&la.file) {
                Ok(t) => t,
                Err(why) => {
                    let msg = format!("load anchor {}: cannot open \"{}\": {why}", la.path, la.file);
                    self.error(la.line, msg);
                    continue;
                }
            };
            let mut queues = self.known_queues.clone();
            queues.extend(self.rs.queues.iter().map(|q| q.name.clone()));
            let opts = super::ParseOptions { queues, ..super::ParseOptions::default() };
            let p = super::parse_ruleset_full(&text, &la.file, &la.path, self.resolver, self.files, &opts);
            if p.failed() {
                self.errors.extend(p.errors);
            } else {
                *la.ruleset = p.ruleset;
            }
        }
        self.rs.load_anchors = loads;
    }

    /// `include FILE`: the file's statements, here.
    pub(super) fn include(&mut self, c: &mut Cursor) -> PResult<()> {
        let line = c.line();
        c.expect_word("include")?;
        let file = c.string()?;
        if !c.at_end() {
            return c.syntax();
        }
        let failed = |why: String| Err((line, format!("failed to include file {file}: {why}")));
        if file == self.rs.filename || self.includes.contains(&file) {
            let mut chain: Vec<&str> =
                std::iter::once(self.rs.filename.as_str()).chain(self.includes.iter().map(String::as_str)).collect();
            chain.push(&file);
            return failed(format!("include loop ({})", chain.join(" -> ")));
        }
        if self.includes.len() >= PFCTL_ANCHOR_STACK_DEPTH {
            return failed("includes nested too deep".into());
        }
        let text = match self.files.read(&file) {
            Ok(t) => t,
            Err(why) => return failed(why),
        };
        let outer = std::mem::replace(&mut self.file, file.clone());
        self.includes.push(file);
        self.parse_text(&text);
        self.includes.pop();
        self.file = outer;
        Ok(())
    }
}

/// The rules of `rs` and of its inline anchors, for a loop over all.
pub fn all_rules(rs: &Ruleset) -> impl Iterator<Item = &crate::model::Rule> {
    rs.rules.iter().chain(rs.anchors.iter().flat_map(|b| b.rules.iter()))
}
