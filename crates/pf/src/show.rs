//! The `pfctl -s…` views, in OpenBSD pfctl's formats (pfctl.c's
//! pfctl_show_*, pfctl_parser.c's print_status and print_rule,
//! pf_print_state.c's print_state), at the `-v` counts pfctl knows: 0, 1
//! (`PF_OPT_VERBOSE`) and 2 (`PF_OPT_VERBOSE2`).
//!
//! Where the text still differs from OpenBSD's pfctl, and why:
//! * `-sr -v`: `Inserted: uid 0 pid N` names the daemon, which loads the
//!   rules on `softnet pfctl -f`'s behalf; pf records the uid and pid of
//!   the pfctl process that issued DIOCADDRULE.
//! * `-si -v`: no "Adaptive Syncookies Watermarks" section (softnet has no
//!   syncookies) and the syncookie "Limit Counters" stay 0; the Checksum hashes
//!   pf_hash_rule's fields rebuilt from our rules (see `chksum`), so it
//!   is not promised to equal an OpenBSD kernel's for the same pf.conf;
//!   the IPv6 column of the interface stats is 0 (IPv4 only).
//! * `-ss -vv`: every state's creator id is this host's (no pfsync); no
//!   `(rdomain)` prefixes or ` {gateway}` (no rdomains in state keys, no
//!   route-to).
//! * `-sS -v`: a node of a rule tracking globally prints no `rule N`
//!   (pf.c keys every node by its rule since pf_sn_types; softnet keeps
//!   one node per source for `source-track global`, as pf.conf(5) says);
//!   ` route-to ADDR` for a sticky route pool's node, no ` nat-to`/
//!   ` rdr-to` (sticky-address on those pools is refused at load).
//! * `-sr -v`: an anchor rule counts the packets decided under it, not
//!   the later packets of the states made there (pf also counts those,
//!   through the state's `anchor`); a state does not remember its anchor
//!   rule.
//! * pflog records of a state's packets under a rule inside an anchor
//!   name the first anchor rule that calls the anchor (pf keeps the one
//!   the creating packet went through, `st->anchor`).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use softnet_core::time::Instant;

use crate::compile::TIMEOUT_COUNT;
use crate::eval::{LCNT_COUNT, LCNT_NAMES};
use crate::eval::{REASON_COUNT, REASON_NAMES};
use crate::filter::Pf;
use crate::model::{Addr, IfAddrModifier, Limit};
use crate::names::{self, Timeout};
use crate::state::{tcps, udps, StateData, DIR_OUT, WSCALE_MASK};

/// pfctl's timeout order for `-st` (its `pf_timeouts` table).
const SHOW_TIMEOUTS: [Timeout; TIMEOUT_COUNT] = [
    Timeout::TcpFirst,
    Timeout::TcpOpening,
    Timeout::TcpEstablished,
    Timeout::TcpClosing,
    Timeout::TcpFinWait,
    Timeout::TcpClosed,
    Timeout::TcpTsDiff,
    Timeout::UdpFirst,
    Timeout::UdpSingle,
    Timeout::UdpMultiple,
    Timeout::IcmpFirst,
    Timeout::IcmpError,
    Timeout::OtherFirst,
    Timeout::OtherSingle,
    Timeout::OtherMultiple,
    Timeout::Frag,
    Timeout::Interval,
    Timeout::AdaptiveStart,
    Timeout::AdaptiveEnd,
    Timeout::SrcTrack,
];

/// The state's peers in print_state's order: the initiator's first for
/// an outbound state, the other way round for an inbound one (pfctl
/// prints `dst:src` for those).
fn peers(st: &StateData) -> (&crate::state::Peer, &crate::state::Peer) {
    if st.direction == DIR_OUT {
        (&st.src, &st.dst)
    } else {
        (&st.dst, &st.src)
    }
}

fn hms(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
}

impl Pf {
    /// `pfctl -sr`, `-sr -v`, `-sr -vv` (`verbose` is the `-v` count):
    /// pfctl_show_rules with print_rule and pfctl_print_rule_counters.
    /// At `-v` each rule is followed by its counters (packets and bytes
    /// summed over both directions, as pfctl prints them; `-sl` splits
    /// them); at `-vv` each rule starts with `@N` and tables and `(if)`
    /// addresses show how many addresses they hold.
    pub fn show_rules(&self, verbose: u8) -> String {
        self.show_anchor_rules("", false, false, verbose).unwrap_or_default()
    }

    /// `pfctl [-a PATH] -sr`: the rules of the ruleset at `path` ("" the
    /// main one). An anchor rule is followed by its anchor's rules in
    /// braces when the anchor is an unnamed inline one, or with
    /// `recurse` (`-a 'PATH*'`), where a wildcard anchor (and `path` with
    /// `wildcard`, `-a 'PATH/*'`) lists each child as `anchor "name" all
    /// { … }` (pfctl_show_rules). `Err`: no such anchor.
    pub fn show_anchor_rules(&self, path: &str, recurse: bool, wildcard: bool, verbose: u8) -> Result<String, String> {
        let rs = self.inner.ruleset.load();
        let node = rs.node(path).ok_or_else(|| "pfctl: Anchor does not exist".to_string())?;
        let mut out = String::new();
        let evals = if verbose > 0 { rs.counters.all_evaluations() } else { vec![] };
        let idx = rs.nodes.iter().position(|n| n.path == node.path).unwrap_or(0);
        self.show_node(&rs, idx, 0, wildcard, recurse, &evals, verbose, &mut out);
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn show_node(
        &self,
        rs: &crate::compile::CompiledRuleset,
        node: usize,
        depth: usize,
        wildcard: bool,
        recurse: bool,
        evals: &[u64],
        verbose: u8,
        out: &mut String,
    ) {
        if depth > crate::anchor::PF_ANCHOR_STACK_MAX {
            return;
        }
        let count = |a: &Addr| self.addr_count(rs, &rs.nodes[node].path, a);
        let indent = if verbose == 0 { "  ".repeat(depth) } else { String::new() };
        let n = &rs.nodes[node];
        for r in rs.node_rules(n) {
            // pfctl prints what the kernel keeps: if-bound or not. Without
            // the `set` lines of -nv, a rule printed with no statelock
            // parses back floating, so -sr needs no `(floating)`.
            let mut rule = r.rule.clone();
            rule.state_opts.floating = false;
            out.push_str(&indent);
            let nr = (verbose >= 2).then_some(r.local_nr as usize);
            out.push_str(&crate::print::format_rule_with(&rule, nr, verbose, &count));
            // print_rule's mark of a `once` rule that matched (pf purges
            // it from the ruleset later; softnet keeps it until a reload)
            if r.expired.load(std::sync::atomic::Ordering::Relaxed) {
                out.push_str(" # expired");
            }
            let into = r.anchor.filter(|_| r.rule.anchor.as_ref().is_some_and(|a| a.is_unnamed()) || recurse);
            if let Some(t) = into {
                out.push_str(" {\n");
                self.rule_counters(rs, r, evals, verbose, out);
                self.show_node(rs, t.node as usize, depth + 1, t.wildcard, recurse, evals, verbose, out);
                out.push_str(&indent);
                out.push_str("}\n");
            } else {
                out.push('\n');
                self.rule_counters(rs, r, evals, verbose, out);
            }
        }
        if wildcard && recurse {
            for &c in &n.children {
                let name = rs.nodes[c as usize].path.rsplit('/').next().unwrap_or_default().to_string();
                let _ = writeln!(out, "{indent}anchor \"{name}\" all {{");
                self.show_node(rs, c as usize, depth + 1, false, recurse, evals, verbose, out);
                let _ = writeln!(out, "{indent}}}");
            }
        }
    }

    /// pfctl_print_rule_counters at `-v`.
    fn rule_counters(
        &self,
        rs: &crate::compile::CompiledRuleset,
        r: &crate::compile::CRule,
        evals: &[u64],
        verbose: u8,
        out: &mut String,
    ) {
        if verbose == 0 {
            return;
        }
        let nr = r.nr as usize;
        let ev = evals[nr];
        let [pi, po] = rs.counters.packets(nr);
        let [bi, bo] = rs.counters.bytes(nr);
        let (pk, by) = (pi.wrapping_add(po), bi.wrapping_add(bo));
        let st = r.states_cur.load(Ordering::Relaxed);
        let _ = writeln!(out, "  [ Evaluations: {ev:<8}  Packets: {pk:<8}  Bytes: {by:<10}  States: {st:<6}]");
        let created = rs.counters.sum(nr, |c| &c.states_created);
        // pf records the loading process's uid and pid (cuid, cpid); the
        // rules are loaded by this daemon (root) on `softnet pfctl -f`'s
        // behalf, so it names itself.
        let _ = writeln!(out, "  [ Inserted: uid 0 pid {} State Creations: {created:<6}]", std::process::id());
    }

    /// `pfctl [-a PATH] -s Anchors [-v]`: the anchors below `path`.
    pub fn show_anchors(&self, path: &str, verbose: u8) -> Result<String, String> {
        let rs = self.inner.ruleset.load();
        if rs.node(path).is_none() {
            return Err("pfctl: Anchor does not exist".into());
        }
        Ok(crate::anchor::show_anchors(&rs.anchor_paths(), path, verbose > 0))
    }

    /// How many addresses a table or `(if)` address of the loaded ruleset
    /// holds (pfctl's `tblcnt` / `dyncnt` at `-vv`); `None`: unknown.
    /// A table is the one the rule's anchor resolves (pf_tbladdr_copyout:
    /// its root when not active; unknown when neither is).
    fn addr_count(&self, rs: &crate::compile::CompiledRuleset, path: &str, a: &Addr) -> Option<usize> {
        match a {
            Addr::Table(t) => {
                let key = crate::table::TableKey::new(path, t);
                let t = rs.tables.get(&key).cloned().or_else(|| self.inner.extra.lock().get(&key).cloned())?;
                t.resolved_len()
            }
            Addr::Dynamic { ifname, modifier, no_alias, .. } => {
                let l = self.inner.if_lookup.load();
                let addrs = l.as_ref().and_then(|f| f(ifname))?;
                // No point-to-point interfaces: `:peer` has no address.
                let n = if *modifier == IfAddrModifier::Peer { 0 } else { addrs.len() };
                Some(if *no_alias { n.min(1) } else { n })
            }
            _ => None,
        }
    }

    /// `pfctl -sl`: per labelled rule, `label evaluations packets bytes
    /// in-packets in-bytes out-packets out-bytes state-creations`
    /// (pfctl_show_rules' PFCTL_SHOW_LABELS).
    pub fn show_labels(&self) -> String {
        let rs = self.inner.ruleset.load();
        let mut out = String::new();
        let evals = rs.counters.all_evaluations();
        for (nr, r) in rs.rules.iter().enumerate() {
            let Some(label) = &r.rule.label else { continue };
            let [pi, po] = rs.counters.packets(nr);
            let [bi, bo] = rs.counters.bytes(nr);
            let created = rs.counters.sum(nr, |c| &c.states_created);
            let _ = writeln!(
                out,
                "{label} {} {} {} {pi} {bi} {po} {bo} {created}",
                evals[nr],
                pi.wrapping_add(po),
                bi.wrapping_add(bo)
            );
        }
        out
    }

    /// print_state's first line. `nat`: a translating state's translated
    /// key; pf prints the wire key's side and, where the stack key
    /// differs, the stack side in parentheses (`10.0.2.1:61234
    /// (10.0.1.2:43110) -> 10.0.2.2:80`).
    fn state_line(&self, st: &StateData, nat: Option<crate::state::StateKey>, ifname: &str) -> String {
        let proto = names::proto_name(st.key.proto).map(|s| s.to_string()).unwrap_or_else(|| st.key.proto.to_string());
        // The state's own key is the stack key of an outbound state and
        // the wire key of an inbound one.
        let (wire, stack) = match nat {
            Some(n) if st.direction == DIR_OUT => (n, st.key),
            Some(n) => (st.key, n),
            None => (st.key, st.key),
        };
        // print_host: the key's address and port, the port only when not
        // zero. An ICMP query's key holds the id on the requester's side
        // and the query type (8 for echo) on the other, as pf keys it.
        let one = |k: &crate::state::StateKey, i: usize| {
            let port = k.port[i];
            let a = k.addr[i].to_ip(k.af);
            match (port, k.af) {
                (0, _) => a.to_string(),
                (_, crate::addr::Af::Inet) => format!("{a}:{port}"),
                // print_host: an IPv6 address's port in brackets.
                (_, crate::addr::Af::Inet6) => format!("{a}[{port}]"),
            }
        };
        // af-to: the stack key is the other family's, its sides the other
        // way round, and the state is printed as going out (print_state's
        // `afto`).
        let afto = st.flags & crate::state::sflags::AFTO != 0;
        let host = |i: usize| {
            let j = if afto { 1 - i } else { i };
            if afto || wire.addr[i] != stack.addr[j] || wire.port[i] != stack.port[j] {
                format!("{} ({})", one(&wire, i), one(&stack, j))
            } else {
                one(&wire, i)
            }
        };
        let arrow = if st.direction == DIR_OUT || afto { "->" } else { "<-" };
        let (src, dst) = peers(st);
        let states = match st.key.proto {
            6 if src.state <= tcps::TIME_WAIT && dst.state <= tcps::TIME_WAIT => {
                format!("{}:{}", tcps::NAMES[src.state as usize], tcps::NAMES[dst.state as usize])
            }
            // print_state names a proxied handshake from either peer.
            6 if src.state == tcps::PROXY_SRC || dst.state == tcps::PROXY_SRC => "PROXY:SRC".to_string(),
            6 if src.state == tcps::PROXY_DST || dst.state == tcps::PROXY_DST => "PROXY:DST".to_string(),
            6 => format!("<BAD STATE LEVELS {}:{}>", src.state, dst.state),
            1 => format!("{}:{}", src.state, dst.state),
            _ if src.state <= udps::MULTIPLE && dst.state <= udps::MULTIPLE => {
                format!("{}:{}", udps::NAMES[src.state as usize], udps::NAMES[dst.state as usize])
            }
            _ => format!("{}:{}", src.state, dst.state),
        };
        format!("{} {} {} {} {}       {}", ifname, proto, host(1), arrow, host(0), states)
    }

    /// `pfctl -ss [-v[v]]`. `now` is the clock's current time (for ages).
    pub fn show_states(&self, verbose: u8, now: Instant) -> String {
        let rs = self.inner.ruleset.load_full();
        let names = self.ifnames_snapshot();
        let mut out = String::new();
        for (idx, st) in self.inner.states.snapshot() {
            let ifname = if st.kif == 0 {
                "all".to_string()
            } else {
                names.get(&st.kif).cloned().unwrap_or_else(|| format!("if{}", st.kif))
            };
            let nat = self.inner.states.nat_key(idx).map(crate::state::unpack);
            out.push_str(&self.state_line(&st, nat, &ifname));
            out.push('\n');
            if verbose > 0 {
                let (src, dst) = peers(&st);
                if st.key.proto == 6 {
                    let seq = |p: &crate::state::Peer| {
                        if p.seqdiff != 0 {
                            format!("[{} + {}](+{})", p.seqlo, p.seqhi.wrapping_sub(p.seqlo), p.seqdiff)
                        } else {
                            format!("[{} + {}]", p.seqlo, p.seqhi.wrapping_sub(p.seqlo))
                        }
                    };
                    let both = src.wscale != 0 && dst.wscale != 0;
                    let ws = |p: &crate::state::Peer| {
                        if both {
                            format!(" wscale {}", p.wscale & WSCALE_MASK)
                        } else {
                            String::new()
                        }
                    };
                    let _ = writeln!(out, "   {}{}  {}{}", seq(src), ws(src), seq(dst), ws(dst));
                }
                let age = now.as_nanos().saturating_sub(st.creation) / 1_000_000_000;
                let exp = self.inner.expires_at(&st, &rs).saturating_sub(now.as_nanos()) / 1_000_000_000;
                let _ = write!(
                    out,
                    "   age {}, expires in {}, {}:{} pkts, {}:{} bytes",
                    hms(age),
                    hms(exp),
                    st.packets[0],
                    st.packets[1],
                    st.bytes[0],
                    st.bytes[1]
                );
                // The rule's number in its own ruleset (pf_state_export's
                // `rule.ptr->nr`).
                let _ = write!(out, ", rule {}", st.rule_nr);
                if st.flags & crate::state::sflags::SLOPPY != 0 {
                    out.push_str(", sloppy");
                }
                if st.flags & crate::state::sflags::SCRUB != 0 {
                    // print_state's PFSTATE_NODF, _SETTOS, _RANDOMID, _SCRUB_TCP.
                    use crate::scrub::scrubflags as f;
                    let a = self.inner.states.scrub_word(idx);
                    if a.flags & f::NODF != 0 {
                        out.push_str(", no-df");
                    }
                    if a.flags & f::SETTOS != 0 {
                        let _ = write!(out, ", set-tos 0x{:02x}", a.set_tos);
                    }
                    if a.flags & f::RANDOMID != 0 {
                        out.push_str(", random-id");
                    }
                    if a.flags & f::SCRUB_TCP != 0 {
                        out.push_str(", reassemble-tcp");
                    }
                }
                // print_state's PFSYNC_FLAG_SRCNODE: the state counts on a
                // source node.
                if st.src_flags & crate::state::srcflags::SRC_NODE != 0 {
                    out.push_str(", source-track");
                }
                out.push('\n');
            }
            if verbose >= 2 {
                // print_state at PF_OPT_VERBOSE2. (pf prints no tag,
                // rtable or route-to/reply-to/dup-to next hop here or
                // anywhere in print_state.)
                let _ = writeln!(out, "   id: {:016x} creatorid: {:08x}", st.id, st.creatorid);
            }
        }
        out
    }

    /// `pfctl -sS [-v]`: pfctl_show_src_nodes, print_src_node for each.
    pub fn show_src_nodes(&self, verbose: u8, now: Instant) -> String {
        // The packets and bytes of the live states count on their nodes
        // (pf counts every packet on the node; the gone states' are kept
        // in the node).
        let mut live = std::collections::HashMap::new();
        if verbose > 0 {
            for (_, st) in self.inner.states.snapshot() {
                let xl = (st.src_flags & crate::state::srcflags::XLATE != 0).then(|| self.inner.xlholds.nodes(st.id));
                for k in crate::srcnode::NodeKey::of_state(&st).into_iter().chain(xl.into_iter().flatten()) {
                    let e = live.entry(k).or_insert((0, 0));
                    e.0 += st.packets[0] + st.packets[1];
                    e.1 += st.bytes[0] + st.bytes[1];
                }
            }
        }
        let nodes = self.inner.srcnodes.snapshot(&live);
        nodes.iter().map(|n| crate::srcnode::print_node(n, now.as_nanos(), verbose)).collect()
    }

    fn ifnames_snapshot(&self) -> std::collections::HashMap<u32, String> {
        self.inner_ifnames()
    }

    /// `pfctl -si [-v]`: print_status. `now` is the clock's current time.
    pub fn show_info(&self, verbose: u8, now: Instant) -> String {
        let inner = &self.inner;
        let rs = inner.ruleset.load();
        let running = if self.is_enabled() { "Enabled" } else { "Disabled" };
        let runtime = now.as_nanos().saturating_sub(inner.since.load(Ordering::Relaxed)) / 1_000_000_000;
        let status = if runtime > 0 {
            let (d, h, m, s) = (runtime / 86400, runtime % 86400 / 3600, runtime % 3600 / 60, runtime % 60);
            format!("Status: {running} for {d} days {h:02}:{m:02}:{s:02}")
        } else {
            format!("Status: {running}")
        };
        let mut out = String::new();
        let _ = writeln!(out, "{:<44}{:>15}\n", status, format!("Debug: {}", names::syslog_level_name(rs.opts.debug)));
        if verbose > 0 {
            let _ = writeln!(out, "Hostid:   0x{:08x}", self.hostid());
            let sum: String = crate::chksum::ruleset_checksum(&rs).iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(out, "Checksum: 0x{sum}\n");
        }
        let rate = |v: u64| {
            if runtime > 0 {
                format!("{:>14.1}/s", v as f64 / runtime as f64)
            } else {
                format!("{:>14}", "")
            }
        };
        // print_status's two line shapes: a count with its rate per
        // second, and a current number of entries.
        let counter = |out: &mut String, name: &str, v: u64| {
            let _ = writeln!(out, "  {:<25} {:>14} {}", name, v, rate(v));
        };
        let entries = |out: &mut String, name: &str, n: usize| {
            let _ = writeln!(out, "  {:<25} {:>14} {:>14}", name, n, "");
        };
        if let Some((name, c)) = inner.logif_counters() {
            // pfctl's print_status; IPv6 is never counted here.
            let _ = writeln!(out, "Interface Stats for {:<16} {:>5} {:>16}", name, "IPv4", "IPv6");
            let _ = writeln!(out, "  {:<25} {:>14} {:>16}", "Bytes In", c[4], 0);
            let _ = writeln!(out, "  {:<25} {:>14} {:>16}", "Bytes Out", c[5], 0);
            out.push_str("  Packets In\n");
            let _ = writeln!(out, "    {:<23} {:>14} {:>16}", "Passed", c[0], 0);
            let _ = writeln!(out, "    {:<23} {:>14} {:>16}", "Blocked", c[1], 0);
            out.push_str("  Packets Out\n");
            let _ = writeln!(out, "    {:<23} {:>14} {:>16}", "Passed", c[2], 0);
            let _ = writeln!(out, "    {:<23} {:>14} {:>16}\n", "Blocked", c[3], 0);
        }
        let _ = writeln!(out, "{:<27} {:>14} {:>16}", "State Table", "Total", "Rate");
        entries(&mut out, "current entries", inner.states.len());
        // pf_status.states_halfopen: TCP states whose initiator is past
        // CLOSED but not yet ESTABLISHED (pf_set_protostate).
        let halfopen = inner
            .states
            .count_if(|st| st.key.proto == 6 && st.src.state != tcps::CLOSED && st.src.state < tcps::ESTABLISHED);
        entries(&mut out, "half-open tcp", halfopen);
        let searches = inner.counters.sum(|c| &c.searches);
        let inserts = inner.states.inserts.load(Ordering::Relaxed);
        let removals = inner.states.removals.load(Ordering::Relaxed);
        for (n, v) in [("searches", searches), ("inserts", inserts), ("removals", removals)] {
            counter(&mut out, n, v);
        }
        if verbose > 0 {
            let sn = &inner.srcnodes;
            out.push_str("Source Tracking Table\n");
            entries(&mut out, "current entries", sn.len());
            for (n, c) in [("searches", &sn.searches), ("inserts", &sn.inserts), ("removals", &sn.removals)] {
                counter(&mut out, n, c.load(Ordering::Relaxed));
            }
            // pf counts both families' fragments together.
            let (f, f6) = (&inner.frags, &inner.frags6);
            out.push_str("Fragments\n");
            entries(&mut out, "current entries", f.len() + f6.len());
            for (n, c, c6) in [
                ("searches", &f.count.searches, &f6.count.searches),
                ("inserts", &f.count.inserts, &f6.count.inserts),
                ("removals", &f.count.removals, &f6.count.removals),
            ] {
                let v = c.load(Ordering::Relaxed) + c6.load(Ordering::Relaxed);
                counter(&mut out, n, v);
            }
        }
        out.push_str("Counters\n");
        for (i, name) in REASON_NAMES.iter().enumerate().take(REASON_COUNT) {
            let v = inner.counters.sum(|c| &c.reasons[i]);
            counter(&mut out, name, v);
        }
        if verbose > 0 {
            // Syncookies are a feature softnet does not have: their
            // counters stay 0.
            out.push_str("Limit Counters\n");
            for (i, name) in LCNT_NAMES.iter().enumerate().take(LCNT_COUNT) {
                let v = inner.counters.sum(|c| &c.lcounters[i]);
                counter(&mut out, name, v);
            }
            // pfctl ends with "Adaptive Syncookies Watermarks" (start and
            // end, in states). softnet has no syncookies (`set syncookies`
            // is refused), so there are no watermarks to show and the
            // section is left out.
        }
        out
    }

    /// `pfctl -st`.
    /// `pfctl -sI [-v]` (pfctl_show_ifaces): one name a line, in the
    /// order of pf's interface tree (by name); `-v` marks those under
    /// `set skip on` with ` (skip)`.
    pub fn show_interfaces(&self, names: &[String], verbose: bool) -> String {
        let rs = self.inner.ruleset.load();
        let mut sorted: Vec<&String> = names.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut out = String::new();
        for n in sorted {
            let skip = if verbose && rs.is_skipped(n) { " (skip)" } else { "" };
            let _ = writeln!(out, "{n}{skip}");
        }
        out
    }

    pub fn show_timeouts(&self) -> String {
        let rs = self.inner.ruleset.load();
        let mut out = String::new();
        for t in SHOW_TIMEOUTS {
            let v = rs.opts.timeout(t);
            let unit = if matches!(t, Timeout::AdaptiveStart | Timeout::AdaptiveEnd) { " states" } else { "s" };
            let _ = writeln!(out, "{:<20} {:>10}{}", t.name(), v, unit);
        }
        out
    }

    /// `pfctl -sm`.
    pub fn show_memory(&self) -> String {
        let rs = self.inner.ruleset.load();
        let mut out = String::new();
        for l in Limit::ALL {
            match rs.opts.limit(l) {
                u32::MAX => {
                    let _ = writeln!(out, "{:<13} unlimited", l.name());
                }
                v => {
                    let _ = writeln!(out, "{:<13} hard limit {:>8}", l.name(), v);
                }
            }
        }
        out
    }

    /// `pfctl -sT`.
    /// `[-a ANCHOR] -sT`: the active tables of the anchor's namespace.
    pub fn show_tables(&self, anchor: &str) -> String {
        self.table_names(anchor).into_iter().map(|n| n + "\n").collect()
    }

    /// `pfctl -sa [-v[v]]`: everything, in pfctl's order. As
    /// pfctl_print_title, a blank line before every title but the first;
    /// STATES, LABEL COUNTERS and TABLES have a title only when there is
    /// something to show.
    pub fn show_all(&self, verbose: u8, now: Instant) -> String {
        let mut out = String::new();
        out.push_str("FILTER RULES:\n");
        out.push_str(&self.show_rules(verbose));
        let states = self.show_states(verbose, now);
        if !states.is_empty() {
            out.push_str("\nSTATES:\n");
            out.push_str(&states);
        }
        let nodes = self.show_src_nodes(verbose, now);
        if !nodes.is_empty() {
            out.push_str("\nSOURCE TRACKING NODES:\n");
            out.push_str(&nodes);
        }
        out.push_str("\nINFO:\n");
        out.push_str(&self.show_info(verbose, now));
        let labels = self.show_labels();
        if !labels.is_empty() {
            out.push_str("\nLABEL COUNTERS:\n");
            out.push_str(&labels);
        }
        out.push_str("\nTIMEOUTS:\n");
        out.push_str(&self.show_timeouts());
        out.push_str("\nLIMITS:\n");
        out.push_str(&self.show_memory());
        let tables = self.show_tables("");
        if !tables.is_empty() {
            out.push_str("\nTABLES:\n");
            out.push_str(&tables);
        }
        out
    }
}
