//! The ruleset tree: the main ruleset and every anchor compiled into
//! flat arrays with per-ruleset skip steps, kept rulesets carried over.

use super::*;

/// Compiles a ruleset and the inline anchors it brings; anchors it only
/// calls are empty. Its tables are defined (made, or reused from
/// `existing_tables` and refilled from the definition).
pub fn compile(rs: &Ruleset, cx: &CompileCx) -> Result<CompiledRuleset, CompileError> {
    let mut sources = AnchorSources::new();
    anchor::apply_load(&mut sources, rs);
    let defs: Vec<TableDefIn> = rs.tables.iter().map(|def| TableDefIn { file: &rs.filename, def }).collect();
    compile_tree(rs, &sources, &defs, None, cx)
}

/// The running tree and the rulesets a load replaces: every other ruleset
/// keeps its identity, its rules' counters, state counts and
/// source-tracking nodes, as pf leaves the rulesets a load does not touch
/// alone.
pub struct Prev<'a> {
    pub tree: &'a CompiledRuleset,
    pub replaced: &'a std::collections::BTreeSet<String>,
}

/// Compiles the whole tree: `main` (options) and every ruleset of
/// `sources` by path (the main one's rules at ""). `defs`: the table
/// definitions the load brings, each filling its table in its anchor's
/// namespace (none when only rules change, as `-a NAME -F rules`).
///
/// Tables that exist stay when they are persistent, or active in a
/// ruleset the load leaves alone, or named by a rule (pf destroys a
/// table once neither a rule nor `persist` keeps it; softnet keeps the
/// main ruleset's defined tables until the next main load, as before).
pub fn compile_tree(
    main: &Ruleset,
    sources: &AnchorSources,
    defs: &[TableDefIn],
    prev: Option<&Prev>,
    cx: &CompileCx,
) -> Result<CompiledRuleset, CompileError> {
    // What can fail is checked before any table changes: a ruleset with an
    // error loads nothing, running tables included.
    for (path, rules) in sources {
        for r in rules {
            if let Some(a) = &r.anchor {
                if let Err(why) = anchor::resolve(path, &a.name) {
                    return Err(CompileError::Anchor {
                        file: main.filename.clone(),
                        line: r.line,
                        name: a.name.clone(),
                        why,
                    });
                }
            }
        }
    }
    let replaced = |anchor: &str| prev.is_none_or(|p| p.replaced.contains(anchor));
    let mut tables: Tables = cx
        .existing_tables
        .iter()
        .filter(|(k, t)| t.is_persist() || (t.is_active() && !replaced(&k.anchor)))
        .map(|(k, t)| (k.clone(), t.clone()))
        .collect();
    // An anchor exists while it has tables (pf_remove_if_empty_ruleset
    // keeps a ruleset with `tables > 0`).
    let mut existing = anchor::existing(sources);
    let table_anchors = tables.keys().map(|k| k.anchor.as_str()).chain(defs.iter().map(|d| d.def.anchor.as_str()));
    for a in table_anchors.filter(|a| !a.is_empty()) {
        anchor::add_with_parents(&mut existing, a);
    }
    let limit = main.options.limit(Limit::Anchors);
    if existing.len() > limit as usize {
        return Err(CompileError::TooManyAnchors { file: main.filename.clone(), count: existing.len(), limit });
    }
    if !defs.is_empty() {
        check_table_limits(&main.options, defs, &tables, cx)?;
    }
    for d in defs {
        let td = d.def;
        let key = TableKey::new(&td.anchor, &td.name);
        let t = match tables.get(&key).or_else(|| cx.existing_tables.get(&key)) {
            Some(t) => t.clone(),
            None => {
                let mut t = Table::in_anchor(&td.anchor, &td.name, true);
                t.constant = td.constant;
                t.counters = td.counters;
                Arc::new(t)
            }
        };
        // pfr_commit_ktable: active, with the definition's flags.
        t.set_active(true);
        t.set_persist(td.persist);
        // As pfr_commit_ktable: a definition without any address list
        // (`table <bad> persist`) keeps what the running table holds, so
        // addresses added with `pfctl -T add` survive a reload.
        if !td.init.is_empty() {
            let entries: Vec<_> = td.entries().cloned().collect();
            t.replace(&entries);
        }
        if !td.anchor.is_empty() {
            // pfr_ina_define finds or makes the root table.
            t.set_root(Some(root_table(&mut tables, cx.existing_tables, &td.name)));
        }
        tables.insert(key, t);
    }
    // The nodes: the main ruleset, then every anchor in path order.
    let paths: Vec<&str> = std::iter::once("").chain(existing.iter().map(String::as_str)).collect();
    let index: HashMap<&str, u32> = paths.iter().enumerate().map(|(i, p)| (*p, i as u32)).collect();
    let empty: Vec<Rule> = vec![];
    let total: usize = paths.iter().map(|p| sources.get(*p).map_or(0, Vec::len)).sum();
    let mut rules = Vec::with_capacity(total);
    let mut nodes = Vec::with_capacity(paths.len());
    // (old index, new index) of the rules of rulesets the load leaves alone.
    let mut carried: Vec<(usize, usize)> = vec![];
    for (ni, path) in paths.iter().enumerate() {
        let start = rules.len();
        let src = sources.get(*path).unwrap_or(&empty);
        let kept = prev.and_then(|p| {
            let n = p.tree.node(path)?;
            let same = !p.replaced.contains(*path) && p.tree.sources.get(*path).unwrap_or(&empty) == src;
            same.then_some((p.tree, n))
        });
        let node_gen = kept.map_or_else(new_node_gen, |(_, n)| n.gen);
        for (local, r) in src.iter().enumerate() {
            let target = match &r.anchor {
                Some(a) => {
                    let (p, wildcard) = anchor::resolve(path, &a.name).expect("checked above");
                    Some(AnchorTarget { node: index[p.as_str()], wildcard })
                }
                None => None,
            };
            let id = (node_gen, local as u32);
            let mut c = compile_rule(r, path, &main.filename, rules.len(), id, &mut tables, cx)?;
            c.local_nr = local as u32;
            c.node = ni as u32;
            c.anchor = target;
            if let Some((old, n)) = kept {
                let o = &old.rules[n.start as usize + local];
                c.src_track = o.src_track.clone();
                c.states_cur.store(
                    o.states_cur.load(std::sync::atomic::Ordering::Relaxed),
                    std::sync::atomic::Ordering::Relaxed,
                );
                carried.push((o.nr as usize, c.nr as usize));
            }
            rules.push(c);
        }
        calc_skip_steps(&mut rules[start..]);
        for r in &mut rules[start..] {
            for s in &mut r.skip {
                *s += start as u32;
            }
        }
        let children = anchor::children(&existing, path).map(|c| index[c.as_str()]).collect();
        nodes.push(CNode {
            path: path.to_string(),
            gen: node_gen,
            start: start as u32,
            end: rules.len() as u32,
            children,
        });
    }
    let mut skip = vec![];
    for s in &main.options.skip {
        skip.push(s.clone());
        skip.extend(cx.resolver.group_members(s));
    }
    let counters = RuleCounters::new(rules.len());
    if let Some(p) = prev {
        counters.carry(&p.tree.counters, &carried);
    }
    let by_gen = nodes.iter().enumerate().map(|(i, n)| (n.gen, i as u32)).collect();
    let hot = rules.iter().map(HotRule::of).collect();
    let mut source = main.clone();
    source.rules = sources.get("").cloned().unwrap_or_default();
    let mut kept = sources.clone();
    anchor::prune(&mut kept);
    Ok(CompiledRuleset {
        gen: cx.gen,
        source,
        sources: kept,
        nodes,
        by_gen,
        rules,
        hot,
        counters,
        opts: GlobalOpts::from_options(&main.options, &skip),
        tables,
    })
}

/// The anchor calls of a ruleset about to be loaded (its own rules, its
/// inline anchors', its `load anchor` rulesets') as pf_anchor_setup takes
/// them, errors named after the file they are in.
pub fn check_anchor_calls(rs: &Ruleset) -> Result<(), CompileError> {
    let own = std::iter::once((rs.anchor_path.as_str(), &rs.rules));
    for (path, rules) in own.chain(rs.anchors.iter().map(|b| (b.path.as_str(), &b.rules))) {
        for r in rules {
            if let Some(a) = &r.anchor {
                if let Err(why) = anchor::resolve(path, &a.name) {
                    let (file, line, name) = (rs.filename.clone(), r.line, a.name.clone());
                    return Err(CompileError::Anchor { file, line, name, why });
                }
            }
        }
    }
    rs.load_anchors.iter().try_for_each(|la| check_anchor_calls(&la.ruleset))
}

/// A ruleset identity no other ruleset (of any tree, any `Pf`) has had;
/// never 0 (the empty ruleset's).
pub(super) fn new_node_gen() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    loop {
        let g = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if g != 0 {
            return g;
        }
    }
}
