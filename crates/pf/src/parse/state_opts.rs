//! `keep state (…)` options and pfctl's checks on them.

use super::*;

impl Parser<'_> {
    pub(super) fn state_opt(c: &mut Cursor) -> PResult<StateOptItem> {
        let line = c.line();
        let w = c.word()?;
        Ok(match w.as_str() {
            "max" => StateOptItem::Max(c.u32("max")?),
            "no-sync" => StateOptItem::NoSync,
            "source-track" => {
                if c.eat_word("rule") {
                    StateOptItem::SourceTrack(Some(SourceTrack::Rule))
                } else if c.eat_word("global") {
                    StateOptItem::SourceTrack(Some(SourceTrack::Global))
                } else {
                    StateOptItem::SourceTrack(None)
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
                let table = c.table_name()?;
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
    pub(super) fn state_opts(items: Vec<StateOptItem>, line: usize) -> PResult<(StateOpts, Option<bool>)> {
        let mut o = StateOpts::default();
        let mut statelock: Option<bool> = None;
        let mut srctrack: Option<Option<SourceTrack>> = None;
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
                    if srctrack.is_some() {
                        return dup("source-track");
                    }
                    srctrack = Some(s)
                }
                StateOptItem::MaxSrcStates(n) => {
                    if o.max_src_states.is_some() {
                        return dup("max-src-states");
                    }
                    if n == 0 {
                        return Err((line, "'max-src-states' must be > 0".into()));
                    }
                    o.max_src_states = Some(n)
                }
                StateOptItem::MaxSrcNodes(n) => {
                    if o.max_src_nodes.is_some() {
                        return dup("max-src-nodes");
                    }
                    if n == 0 {
                        return Err((line, "'max-src-nodes' must be > 0".into()));
                    }
                    o.max_src_nodes = Some(n)
                }
                StateOptItem::MaxSrcConn(n) => {
                    if o.max_src_conn.is_some() {
                        return dup("max-src-conn");
                    }
                    if n == 0 {
                        return Err((line, "'max-src-conn' must be > 0".into()));
                    }
                    o.max_src_conn = Some(n)
                }
                StateOptItem::MaxSrcConnRate(n, s) => {
                    if o.max_src_conn_rate.is_some() {
                        return dup("max-src-conn-rate");
                    }
                    if n == 0 || s == 0 {
                        return Err((line, "'max-src-conn-rate' values must be > 0".into()));
                    }
                    if n > PF_THRESHOLD_MAX {
                        return Err((line, format!("'max-src-conn-rate' maximum rate must be < {PF_THRESHOLD_MAX}")));
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
        // pfctl's parse.y: max-src-states turns source tracking on,
        // max-src-nodes, max-src-conn and max-src-conn-rate turn on
        // tracking per rule, which an explicit `source-track global`
        // contradicts; a connection rate keeps nodes at least its seconds.
        let per_rule = o.max_src_nodes.is_some() || o.max_src_conn.is_some() || o.max_src_conn_rate.is_some();
        if srctrack == Some(Some(SourceTrack::Global)) {
            for (on, what) in [
                (o.max_src_nodes.is_some(), "max-src-nodes"),
                (o.max_src_conn.is_some(), "max-src-conn"),
                (o.max_src_conn_rate.is_some(), "max-src-conn-rate"),
            ] {
                if on {
                    return Err((line, format!("'{what}' is incompatible with 'source-track global'")));
                }
            }
        }
        if per_rule || srctrack == Some(Some(SourceTrack::Rule)) {
            o.source_track = Some(SourceTrack::Rule);
        } else if srctrack.is_some() || o.max_src_states.is_some() {
            o.source_track = Some(SourceTrack::Global);
        }
        if let (Some(_), Some((_, secs))) = (o.source_track, o.max_src_conn_rate) {
            match o.timeouts.iter_mut().find(|(t, _)| *t == Timeout::SrcTrack) {
                Some((_, v)) if *v < secs => *v = secs,
                Some(_) => {}
                None => o.timeouts.push((Timeout::SrcTrack, secs)),
            }
        }
        o.timeouts.sort();
        if o.overload.is_some() && o.max_src_conn.is_none() && o.max_src_conn_rate.is_none() {
            return Err((line, "'overload' requires 'max-src-conn' or 'max-src-conn-rate'".into()));
        }
        Ok((o, statelock))
    }
}
