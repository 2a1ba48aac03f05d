//! pf anchors: names and paths as pfctl and pf_ruleset.c check and
//! resolve them, and which anchors exist in a loaded tree.
//!
//! An anchor is a named ruleset at a path (`relayd/www`). The main ruleset
//! and every loaded anchor are kept as source rules by path
//! ([`AnchorSources`]); each load (`pfctl -f`, `pfctl -a NAME -f`) replaces
//! some of them and the whole tree is compiled and published in one swap
//! (`compile::compile_tree`).
//!
//! Which anchors exist follows pf_ruleset.c: an anchor exists while it has
//! rules, while a rule calls it (`pf_anchor_setup` creates it, refcount),
//! or while an anchor below it exists (`pf_find_or_create_ruleset` creates
//! the parents); otherwise `pf_remove_if_empty_ruleset` removes it. An
//! anchor a rule calls but nobody loaded is empty: evaluating it matches
//! nothing.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Rule, Ruleset};

/// pfvar.h `PF_ANCHOR_NAME_SIZE`: a path component is shorter.
pub const PF_ANCHOR_NAME_SIZE: usize = 64;
/// `PATH_MAX`: a whole path is shorter (`MAXPATHLEN`).
pub const PATH_MAX: usize = 1024;
/// pfctl.h `PFCTL_ANCHOR_STACK_DEPTH`: inline `{ }` anchors nest less deep.
pub const PFCTL_ANCHOR_STACK_DEPTH: usize = 64;
/// pfvar.h `PF_ANCHOR_STACK_MAX`: pf_match_rule steps into at most this
/// many anchors; deeper, the packet is dropped (PF_TEST_FAIL).
pub const PF_ANCHOR_STACK_MAX: usize = 64;

/// parse.y `anchorname`: the checks pfctl makes on a name as written.
/// `parent` is the path of the ruleset being parsed.
pub fn check_name(name: &str, parent: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("anchor name must not be empty".into());
    }
    if parent.len() + 1 + name.len() >= PATH_MAX {
        return Err(format!("anchor name is longer than {}", PATH_MAX - 1));
    }
    if reserved(name) {
        return Err("anchor names beginning with '_' are reserved for internal use".into());
    }
    Ok(())
}

/// A name or path with a component starting with `_` (pfctl's
/// `name[0] == '_' || strstr(name, "/_")`): reserved for unnamed inline
/// anchors.
pub fn reserved(name: &str) -> bool {
    name.starts_with('_') || name.contains("/_")
}

/// pf_anchor_setup: the absolute path an anchor rule in the ruleset at
/// `parent` calls with `name` (`/abs`, `rel`, `../rel`, `…/*`), and
/// whether it is a wildcard. The path's components are then checked as
/// pf_find_or_create_ruleset checks them.
pub fn resolve(parent: &str, name: &str) -> Result<(String, bool), String> {
    let mut path = String::new();
    if name.starts_with('/') {
        // pf_find_or_create_ruleset skips every leading '/' (`//a` is `a`).
        path.push_str(name.trim_start_matches('/'));
    } else {
        path.push_str(parent);
        let mut rest = name;
        while let Some(r) = rest.strip_prefix("../") {
            if path.is_empty() {
                return Err(".. beyond root".into());
            }
            match path.rfind('/') {
                Some(i) => path.truncate(i),
                None => path.clear(),
            }
            rest = r;
        }
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(rest);
    }
    let mut wildcard = false;
    if let Some(p) = path.strip_suffix("/*") {
        path = p.to_string();
        wildcard = true;
    }
    check_path(&path)?;
    Ok((path, wildcard))
}

/// pf_find_or_create_ruleset's checks on an absolute path (leading `/`
/// stripped): every component non-empty and shorter than
/// `PF_ANCHOR_NAME_SIZE`, the whole shorter than `PATH_MAX`.
pub fn check_path(path: &str) -> Result<(), String> {
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        return Err("empty anchor path".into());
    }
    if path.len() >= PATH_MAX - PF_ANCHOR_NAME_SIZE - 1 {
        return Err(format!("anchor path longer than {}", PATH_MAX - PF_ANCHOR_NAME_SIZE - 2));
    }
    for c in path.split('/') {
        if c.is_empty() {
            return Err("empty anchor path component".into());
        }
        if c.len() >= PF_ANCHOR_NAME_SIZE {
            return Err(format!("anchor name \"{c}\" longer than {} characters", PF_ANCHOR_NAME_SIZE - 1));
        }
    }
    Ok(())
}

/// `pfctl -a NAME`: the anchor a command line names (a trailing `/*` or
/// `*` asks for its children, as pfctl's main strips it). `modify`: the
/// command changes the anchor (`-f`, `-F`), which `_` names refuse.
pub fn command_line_anchor(name: &str, modify: bool) -> Result<(String, bool), String> {
    if name.is_empty() {
        return Err("pfctl: anchor name must not be empty".into());
    }
    if modify && reserved(name) {
        return Err("pfctl: anchor names beginning with '_' cannot be modified from the command line".into());
    }
    let (base, recurse) = match name.strip_suffix("/*") {
        Some(b) => (b, true),
        None => match name.strip_suffix('*') {
            Some(b) => (b, true),
            None => (name, false),
        },
    };
    let base = base.trim_start_matches('/');
    if !base.is_empty() {
        check_path(base).map_err(|e| format!("pfctl: anchor \"{name}\": {e}"))?;
    }
    Ok((base.to_string(), recurse))
}

/// The source rules of every loaded ruleset by path ("" = the main one).
pub type AnchorSources = BTreeMap<String, Vec<Rule>>;

/// Every anchor call in `rules` of the ruleset at `parent`, resolved
/// (unresolvable ones are left out: the load refused them).
fn calls<'r>(parent: &'r str, rules: &'r [Rule]) -> impl Iterator<Item = String> + 'r {
    rules.iter().filter_map(move |r| {
        let a = r.anchor.as_ref()?;
        resolve(parent, &a.name).ok().map(|(p, _)| p).or_else(|| Some(a.path.clone()))
    })
}

/// The anchors that exist given the loaded rulesets (pf_ruleset.c): those
/// with rules, those a rule calls, and every parent of either. Sorted by
/// path; the main ruleset ("") is not among them.
pub fn existing(sources: &AnchorSources) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (path, rules) in sources {
        if !path.is_empty() && !rules.is_empty() {
            add_with_parents(&mut out, path);
        }
        for c in calls(path, rules) {
            add_with_parents(&mut out, &c);
        }
    }
    out
}

/// Adds the anchor at `path` and its parents (pf_find_or_create_ruleset
/// makes them all).
pub fn add_with_parents(out: &mut BTreeSet<String>, path: &str) {
    let mut p = path.trim_start_matches('/');
    while !p.is_empty() && out.insert(p.to_string()) {
        match p.rfind('/') {
            Some(i) => p = &p[..i],
            None => break,
        }
    }
}

/// The direct children of `parent` among `anchors`, in pf's order (by
/// path, as the RB tree of `pf_anchor_node` compares them).
pub fn children<'a>(anchors: &'a BTreeSet<String>, parent: &'a str) -> impl Iterator<Item = &'a String> + 'a {
    anchors.iter().filter(move |p| match parent {
        "" => !p.contains('/'),
        _ => p.strip_prefix(parent).and_then(|r| r.strip_prefix('/')).is_some_and(|r| !r.contains('/')),
    })
}

/// `pfctl [-a NAME] -s Anchors [-v]` (pfctl_walk_anchors with
/// pfctl_walk_show): the anchors below `parent`, depth first, two spaces
/// and the path each; names under a `_` parent (or `_` top-level ones)
/// only with `-v`.
pub fn show_anchors(anchors: &BTreeSet<String>, parent: &str, verbose: bool) -> String {
    let mut out = String::new();
    walk(anchors, parent, verbose, &mut out, 0);
    out
}

fn walk(anchors: &BTreeSet<String>, parent: &str, verbose: bool, out: &mut String, depth: usize) {
    if depth > PF_ANCHOR_STACK_MAX {
        return;
    }
    for c in children(anchors, parent) {
        let name = c.rsplit('/').next().unwrap_or(c);
        let shown = if parent.is_empty() { !name.starts_with('_') } else { !parent.starts_with('_') };
        if shown || verbose {
            out.push_str("  ");
            out.push_str(c);
            out.push('\n');
        }
        walk(anchors, c, verbose, out, depth + 1);
    }
}

/// Replaces the rulesets a load brings: `rs` goes to its anchor path
/// (`rs.anchor_path`), and each inline anchor of it with rules to its own
/// path, as pfctl opens a transaction for each (pfctl_load_ruleset: an
/// inline anchor without rules is not part of the load).
/// Returns the paths replaced.
pub fn apply_load(sources: &mut AnchorSources, rs: &Ruleset) -> BTreeSet<String> {
    let mut replaced = BTreeSet::new();
    sources.insert(rs.anchor_path.clone(), rs.rules.clone());
    replaced.insert(rs.anchor_path.clone());
    for b in &rs.anchors {
        if !b.rules.is_empty() {
            sources.insert(b.path.clone(), b.rules.clone());
            replaced.insert(b.path.clone());
        }
    }
    replaced
}

/// `apply_load` for `rs` and, after it, every ruleset its `load anchor`
/// lines loaded (pfctl_load_anchors, in the same transaction).
pub fn apply_load_all(sources: &mut AnchorSources, rs: &Ruleset) -> BTreeSet<String> {
    let mut replaced = apply_load(sources, rs);
    for la in &rs.load_anchors {
        replaced.extend(apply_load_all(sources, &la.ruleset));
    }
    replaced
}

/// Drops empty anchors nothing keeps (pf_remove_if_empty_ruleset).
pub fn prune(sources: &mut AnchorSources) {
    let live = existing(sources);
    sources.retain(|p, rules| p.is_empty() || !rules.is_empty() || live.contains(p));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_as_pf_anchor_setup() {
        assert_eq!(resolve("", "a/b").unwrap(), ("a/b".into(), false));
        assert_eq!(resolve("foo", "bar").unwrap(), ("foo/bar".into(), false));
        // Every leading '/' goes (found by the pf_conf fuzz target: `//2/13`
        // inside an anchor was kept as "/2/13", a node that did not exist,
        // and the load panicked).
        assert_eq!(resolve("foo/bar", "//2/13").unwrap(), ("2/13".into(), false));
        assert_eq!(resolve("foo/bar", "/1/2/3").unwrap(), ("1/2/3".into(), false));
        assert_eq!(resolve("foo/bar", "../x").unwrap(), ("foo/x".into(), false));
        assert_eq!(resolve("", "ftp-proxy/*").unwrap(), ("ftp-proxy".into(), true));
        assert_eq!(resolve("", "../x").unwrap_err(), ".. beyond root");
        assert!(resolve("", "a//b").is_err());
        assert!(resolve("", &"x".repeat(64)).is_err());
        assert!(resolve("", &"x".repeat(63)).is_ok());
    }

    #[test]
    fn names_are_checked_as_pfctl_does() {
        assert_eq!(check_name("", "").unwrap_err(), "anchor name must not be empty");
        assert!(check_name("_x", "").unwrap_err().contains("reserved"));
        assert!(check_name("a/_x", "").unwrap_err().contains("reserved"));
        assert!(check_name("relayd/*", "").is_ok());
        assert_eq!(command_line_anchor("ftp-proxy/*", false).unwrap(), ("ftp-proxy".into(), true));
        assert!(command_line_anchor("_1", true).is_err());
        assert!(command_line_anchor("_1", false).is_ok());
        assert!(command_line_anchor("a//b", true).is_err());
    }

    fn rule_calling(name: &str) -> Rule {
        let rs = crate::parse::parse_ruleset(
            &format!("anchor \"{name}\"\n"),
            "t",
            &crate::resolver::StaticResolver::example(),
        )
        .unwrap();
        rs.rules[0].clone()
    }

    #[test]
    fn existing_anchors_are_called_loaded_or_parents() {
        let mut s = AnchorSources::new();
        s.insert(String::new(), vec![rule_calling("relayd/*"), rule_calling("a/b")]);
        s.insert("ftp-proxy/1".into(), vec![rule_calling("/x")]);
        s.insert("empty".into(), vec![]);
        let e: Vec<_> = existing(&s).into_iter().collect();
        assert_eq!(e, ["a", "a/b", "ftp-proxy", "ftp-proxy/1", "relayd", "x"]);
        prune(&mut s);
        assert!(!s.contains_key("empty"));
        let shown = show_anchors(&existing(&s), "", false);
        assert_eq!(shown, "  a\n  a/b\n  ftp-proxy\n  ftp-proxy/1\n  relayd\n  x\n");
        assert_eq!(show_anchors(&existing(&s), "ftp-proxy", false), "  ftp-proxy/1\n");
    }

    #[test]
    fn anchors_list_depth_first_in_path_order() {
        let set: BTreeSet<String> = ["a", "a-c", "a/b", "_1", "_1/x"].iter().map(|s| s.to_string()).collect();
        assert_eq!(show_anchors(&set, "", false), "  a\n  a/b\n  a-c\n");
        assert_eq!(show_anchors(&set, "", true), "  _1\n  _1/x\n  a\n  a/b\n  a-c\n");
    }
}

#[cfg(test)]
mod print_tests {
    use crate::print::{print_ruleset, PrintOpts};

    #[test]
    fn an_inline_body_prints_once_after_the_first_rule_of_a_list() {
        let rs = crate::parse::parse_ruleset(
            "anchor \"a\" proto { tcp udp } {\n pass\n}\n",
            "t",
            &crate::resolver::StaticResolver::example(),
        )
        .unwrap();
        let out = print_ruleset(&rs, &PrintOpts { verbose: 1, opt_level: Some(crate::model::OptLevel::None) });
        assert_eq!(out, "anchor \"a\" proto tcp all {\n  pass all flags S/SA\n}\nanchor \"a\" proto udp all\n");
    }
}
