//! From a parsed `model::Ruleset` to the immutable `CompiledRuleset` the
//! workers evaluate: rules with their skip steps (computed as pfctl's
//! `calc_skip_steps` does), interface groups expanded, tag names turned
//! into ids, tables attached, and the global options in arrays.
//!
//! A compiled ruleset is published whole (`arc-swap`): a packet sees the
//! old one or the new one, never a mix.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use softnet_core::percpu::{CacheAligned, Counter, MAX_WORKERS};

use crate::anchor::{self, AnchorSources};
use crate::model::{
    Action, Addr, AddressFamily, BlockPolicy, Direction, Endpoint, IcmpMatch, IfAddrModifier, Limit, LogOpts, PortOp,
    Rule, Ruleset, StateMode, StatePolicy, TcpFlags,
};
use crate::names::Timeout;
use crate::resolver::IfResolver;
use crate::table::{Table, TableKey, Tables};

mod counters;
mod rule;
mod skip;
mod tree;

pub use counters::*;
use rule::*;
pub use skip::*;
pub use tree::*;
/// Skip-step fields, in pf's order.
pub const SKIP_IFP: usize = 0;
pub const SKIP_DIR: usize = 1;
pub const SKIP_AF: usize = 2;
pub const SKIP_PROTO: usize = 3;
pub const SKIP_SRC_ADDR: usize = 4;
pub const SKIP_SRC_PORT: usize = 5;
pub const SKIP_DST_ADDR: usize = 6;
pub const SKIP_DST_PORT: usize = 7;
pub const SKIP_COUNT: usize = 8;

pub const TIMEOUT_COUNT: usize = Timeout::ALL.len();

/// Index of a timeout in `Timeout::ALL`.
/// (`Timeout::ALL` lists the variants in declaration order: a test checks.)
#[inline]
pub const fn tidx(t: Timeout) -> usize {
    t as usize
}

/// Index of the inbound half of `RuleStats::packets` and `bytes`.
pub const DIR_IN: usize = 0;
/// Index of the outbound half.
pub const DIR_OUT: usize = 1;

/// An interface spec: the names it stands for (a group expanded at load).
#[derive(Debug, Clone)]
pub struct IfMatch {
    pub name: String,
    pub members: Vec<String>,
    pub negated: bool,
}

impl IfMatch {
    #[inline]
    pub fn matches(&self, ifname: &str) -> bool {
        let inside = self.name == ifname || self.members.iter().any(|m| m == ifname);
        inside != self.negated
    }
}

/// A rule address as evaluated.
#[derive(Debug, Clone)]
pub enum AddrMatch {
    Any,
    Net {
        net: u32,
        mask: u32,
    },
    Range(u32, u32),
    /// An IPv6 network (`net` masked) and an IPv6 range, as integers.
    Net6 {
        net: u128,
        mask: u128,
    },
    Range6(u128, u128),
    Table(Arc<Table>),
    Dynamic {
        ifname: String,
        modifier: IfAddrModifier,
        no_alias: bool,
        prefix: Option<u8>,
    },
    /// `no-route`: an address with no route in the packet's routing table
    /// (evaluated with the route lookup, see `eval::endpoint_matches`).
    NoRoute,
    /// `urpf-failed`: an address whose route does not go out the packet's
    /// interface (strict uRPF).
    UrpfFailed,
    /// Matches nothing (a route label: no route has one).
    Never,
}

#[derive(Debug, Clone)]
pub struct EndpointMatch {
    pub addr: AddrMatch,
    pub negated: bool,
    pub port: Option<PortOp>,
}

/// One compiled rule.
pub struct CRule {
    /// Index in the tree's flat `rules` (counters, states' rule).
    pub nr: u32,
    /// Number within its own ruleset (what pfctl shows as `@N`, pflog's
    /// rule number).
    pub local_nr: u32,
    /// The ruleset (`CompiledRuleset::nodes` index) the rule is in.
    pub node: u32,
    /// `anchor …`: the ruleset it calls.
    pub anchor: Option<AnchorTarget>,
    pub rule: Rule,
    pub action: Action,
    /// `None`: both directions.
    pub dir: Option<softnet_core::filter::Direction>,
    pub quick: bool,
    pub log: Option<LogOpts>,
    pub ifm: Option<IfMatch>,
    /// `received-on`: the interface the packet came in on.
    pub rcv: Option<IfMatch>,
    /// Only IPv4 (`None` or `inet`) rules can match: `inet6` ones never do.
    pub inet6_only: bool,
    pub proto: Option<u8>,
    pub src: EndpointMatch,
    pub dst: EndpointMatch,
    pub flags: TcpFlags,
    pub icmp: Option<IcmpMatch>,
    pub tos: Option<u8>,
    pub allow_opts: bool,
    /// `scrub (…)` and `set tos` (pf_rule_to_actions' scrub part).
    pub scrub: crate::scrub::ScrubActs,
    pub tag: u16,
    pub tagged: Option<(u16, bool)>,
    pub rtable: Option<u16>,
    pub keep_state: StateMode,
    pub if_bound: bool,
    pub sloppy: bool,
    pub max_states: Option<u32>,
    /// Index into `TimeoutSets` (0: the rule sets none).
    pub timeout_set: u16,
    pub label: Option<String>,
    /// `route-to`, `reply-to`, `dup-to` of a `pass` rule (pfctl allows them
    /// on no other rule).
    pub route: Option<crate::route::CRoute>,
    pub skip: [u32; SKIP_COUNT],
    /// States this rule created that are still in the table.
    pub states_cur: std::sync::atomic::AtomicU64,
    /// `once`: set by the first packet the rule decides (pf's
    /// PFRULE_EXPIRED); the rule walk then passes it by.
    pub expired: std::sync::atomic::AtomicBool,
    /// `max-pkt-rate`: the packets the rule matched, decaying (shared by
    /// the workers: only rules that say it take the lock).
    pub(crate) pktrate: Option<parking_lot::Mutex<crate::srcnode::Threshold>>,
    /// Source tracking (`source-track`, `max-src-*`, `overload`): what
    /// the rule's states' nodes count and limit (`crate::srcnode`).
    pub src_track: Option<Arc<crate::srcnode::SrcRule>>,
    /// `nat-to` and `rdr-to` pools at run time (pf_lb.c).
    pub nat: Option<crate::lb::CPool>,
    pub rdr: Option<crate::lb::CPool>,
    /// The first destination port of the rule (rdr-to maps a port range
    /// from it).
    pub dst_port_lo: u16,
}

/// Where an anchor rule steps into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorTarget {
    /// Index into `CompiledRuleset::nodes`.
    pub node: u32,
    /// Evaluate every child of `node` in turn instead of `node`.
    pub wildcard: bool,
}

/// One ruleset of the tree: the main one (`nodes[0]`) or an anchor, its
/// rules the range `start..end` of the tree's flat arrays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CNode {
    /// "" for the main ruleset.
    pub path: String,
    /// The ruleset's identity: the tree generation it was loaded in, kept
    /// by later loads that leave it alone (states name their rule by this
    /// and the rule's number in the ruleset).
    pub gen: u32,
    pub start: u32,
    pub end: u32,
    /// The anchors directly below, in pf's order (by path).
    pub children: Vec<u32>,
}

/// Global options in the form the data path reads.
#[derive(Debug, Clone)]
pub struct GlobalOpts {
    pub block_policy: BlockPolicy,
    pub state_policy: StatePolicy,
    pub timeouts: [u32; TIMEOUT_COUNT],
    pub limits: [u32; Limit::ALL.len()],
    pub skip: Vec<String>,
    /// `set debug`: a syslog level.
    pub debug: u8,
    pub hostid: u32,
    /// `set loginterface`: the interface whose traffic `pfctl -si` shows.
    pub loginterface: Option<String>,
    /// `set reassemble yes no-df`: fragments with DF have it cleared
    /// and are reassembled (pf_status.reass's PF_REASS_NODF).
    pub reassemble_no_df: bool,
    /// `set reassemble no`: fragments go to the rules as they are.
    pub reassemble: bool,
}

impl GlobalOpts {
    pub fn timeout(&self, t: Timeout) -> u32 {
        self.timeouts[tidx(t)]
    }
    pub fn limit(&self, l: Limit) -> u32 {
        self.limits[Limit::ALL.iter().position(|x| *x == l).expect("listed")]
    }
}

impl Default for GlobalOpts {
    fn default() -> Self {
        GlobalOpts::from_options(&crate::model::Options::default(), &[])
    }
}

impl GlobalOpts {
    fn from_options(o: &crate::model::Options, skip: &[String]) -> GlobalOpts {
        GlobalOpts {
            block_policy: o.block_policy,
            state_policy: o.state_policy,
            timeouts: std::array::from_fn(|i| o.timeout(Timeout::ALL[i])),
            limits: std::array::from_fn(|i| o.limit(Limit::ALL[i])),
            skip: skip.to_vec(),
            debug: o.debug.unwrap_or(crate::names::LOG_ERR),
            hostid: o.hostid.unwrap_or(0),
            loginterface: o.loginterface.clone(),
            reassemble_no_df: o.reassemble.no_df,
            reassemble: o.reassemble.enabled,
        }
    }
}

/// Per-rule timeout overrides, interned: states refer to a set by index so
/// they can outlive the ruleset that made them. Index 0 is "none".
#[derive(Default)]
pub struct TimeoutSets {
    sets: Mutex<Vec<[u32; TIMEOUT_COUNT]>>,
}

impl TimeoutSets {
    pub fn new() -> TimeoutSets {
        TimeoutSets { sets: Mutex::new(vec![[0; TIMEOUT_COUNT]]) }
    }
    /// The index of `set` (0 if all zero), adding it if new.
    pub fn intern(&self, set: [u32; TIMEOUT_COUNT]) -> u16 {
        if set.iter().all(|v| *v == 0) {
            return 0;
        }
        let mut g = self.sets.lock();
        if let Some(i) = g.iter().position(|s| *s == set) {
            return i as u16;
        }
        if g.len() >= u16::MAX as usize {
            return 0;
        }
        g.push(set);
        (g.len() - 1) as u16
    }
    pub fn get(&self, i: u16) -> [u32; TIMEOUT_COUNT] {
        self.sets.lock().get(i as usize).copied().unwrap_or([0; TIMEOUT_COUNT])
    }
    pub fn all(&self) -> Vec<[u32; TIMEOUT_COUNT]> {
        self.sets.lock().clone()
    }
}

/// pf tag names ↔ ids, stable across ruleset loads.
#[derive(Default)]
pub struct TagNames {
    names: Mutex<HashMap<String, u16>>,
}

impl TagNames {
    pub fn id(&self, name: &str) -> u16 {
        let mut g = self.names.lock();
        let n = g.len() as u16 + 1;
        *g.entry(name.to_string()).or_insert(n)
    }
    pub fn name(&self, id: u16) -> Option<String> {
        self.names.lock().iter().find(|(_, v)| **v == id).map(|(k, _)| k.clone())
    }
}

pub struct CompiledRuleset {
    /// Generation (1 for the first load; 0 is the empty default ruleset).
    pub gen: u32,
    /// The main ruleset as loaded (options, tables, its rules).
    pub source: Ruleset,
    /// Every loaded ruleset's rules by path ("" is the main one's), as
    /// they were loaded: what a later load of one of them starts from.
    pub sources: AnchorSources,
    /// The main ruleset (`nodes[0]`) and every anchor that exists.
    pub nodes: Vec<CNode>,
    /// `CNode::gen` → index in `nodes`.
    pub by_gen: HashMap<u32, u32>,
    /// The rules of every node, node after node (`CNode::start..end`).
    pub rules: Vec<CRule>,
    /// `rules`' hot fields, same order.
    pub hot: Vec<HotRule>,
    /// Per-worker counters of `rules`, by rule number.
    pub counters: RuleCounters,
    pub opts: GlobalOpts,
    /// Every table, each in its anchor's namespace (the main ruleset's
    /// under ""); those an anchor's rules name without defining them are
    /// there too, not active, with their root.
    pub tables: Tables,
}

impl CompiledRuleset {
    /// No rules: everything passes (without state, as pf's default rule).
    pub fn empty() -> CompiledRuleset {
        CompiledRuleset {
            gen: 0,
            source: Ruleset::default(),
            sources: AnchorSources::new(),
            nodes: vec![CNode { path: String::new(), gen: 0, start: 0, end: 0, children: vec![] }],
            by_gen: HashMap::new(),
            rules: vec![],
            hot: vec![],
            counters: RuleCounters::new(0),
            opts: GlobalOpts::default(),
            tables: HashMap::new(),
        }
    }

    pub fn is_skipped(&self, ifname: &str) -> bool {
        !self.opts.skip.is_empty() && self.opts.skip.iter().any(|s| s == ifname)
    }

    /// The rule a state names (`StateData::ruleset_gen`, `rule_nr`: its
    /// ruleset's identity and its number there), while that ruleset is
    /// loaded.
    /// The main ruleset's rules (every established packet of a state they
    /// made asks) inline; an anchor's through the generation map.
    #[inline(always)]
    pub fn state_rule(&self, gen: u32, nr: u32) -> Option<&CRule> {
        let main = &self.nodes[0];
        if gen == main.gen {
            // The main ruleset is node 0 and starts the flat array.
            return if nr < main.end { self.rules.get(nr as usize) } else { None };
        }
        self.anchor_state_rule(gen, nr)
    }

    /// `state_rule`'s rule as its index in the flat `rules` (`CRule::nr`,
    /// which is that index), without reading the rule: what the data path
    /// counts a state's packets under (`RuleCounters`).
    #[inline(always)]
    pub fn state_rule_index(&self, gen: u32, nr: u32) -> Option<usize> {
        let main = &self.nodes[0];
        if gen == main.gen {
            return (nr < main.end).then_some(nr as usize);
        }
        self.anchor_state_rule(gen, nr).map(|r| r.nr as usize)
    }

    #[cold]
    #[inline(never)]
    fn anchor_state_rule(&self, gen: u32, nr: u32) -> Option<&CRule> {
        let node = &self.nodes[*self.by_gen.get(&gen)? as usize];
        if nr < node.end - node.start {
            self.rules.get((node.start + nr) as usize)
        } else {
            None
        }
    }

    /// The node of the anchor at `path` ("" the main ruleset).
    pub fn node(&self, path: &str) -> Option<&CNode> {
        self.nodes.iter().find(|n| n.path == path)
    }

    /// The compiled rules of `node`.
    pub fn node_rules(&self, node: &CNode) -> &[CRule] {
        &self.rules[node.start as usize..node.end as usize]
    }

    /// The first rule that steps into `node` (directly or as a child of a
    /// wildcard): the anchor rule pflog names for the node's rules.
    pub fn caller_of(&self, node: usize) -> Option<&CRule> {
        let parent = self.nodes.iter().position(|n| n.children.contains(&(node as u32)));
        self.rules.iter().find(|r| match r.anchor {
            Some(t) if t.wildcard => Some(t.node as usize) == parent,
            Some(t) => t.node as usize == node,
            None => false,
        })
    }

    /// Every anchor that exists (the nodes but the main one).
    pub fn anchor_paths(&self) -> std::collections::BTreeSet<String> {
        self.nodes.iter().skip(1).map(|n| n.path.clone()).collect()
    }
}

/// Errors a ruleset can fail to load with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("{file}:{line}: table <{name}> is not defined")]
    UnknownTable { file: String, line: usize, name: String },
    #[error("{file}:{line}: {what} not supported")]
    Unsupported { file: String, line: usize, what: String },
    /// An anchor rule calls a path pf cannot create (pf_anchor_setup
    /// fails: DIOCADDRULE's EINVAL).
    #[error("{file}:{line}: anchor \"{name}\": {why}")]
    Anchor { file: String, line: usize, name: String, why: String },
    /// More anchors than `set limit anchors` (pf_anchor_pl is full).
    #[error("{file}: {count} anchors: over the limit of {limit} (set limit anchors): Cannot allocate memory")]
    TooManyAnchors { file: String, count: usize, limit: u32 },
    /// Over `set limit tables` or `set limit table-entries` (pf's pools
    /// are full: ENOMEM, as pfctl reports it).
    #[error("{file}:{line}: cannot define table {name}: Cannot allocate memory")]
    TableMemory { file: String, line: usize, name: String },
}

/// What compiling needs from the world besides the ruleset.
pub struct CompileCx<'a> {
    pub resolver: &'a dyn IfResolver,
    pub tags: &'a TagNames,
    pub timeout_sets: &'a TimeoutSets,
    /// Tables that already exist (persistent ones and those of the running
    /// ruleset): kept when the new ruleset defines or uses the same name.
    pub existing_tables: &'a Tables,
    pub gen: u32,
}

/// A table definition a load brings, with the file it was read from.
#[derive(Debug, Clone, Copy)]
pub struct TableDefIn<'a> {
    pub file: &'a str,
    pub def: &'a crate::model::TableDef,
}

/// The table definitions of a ruleset about to be loaded: its own and its
/// inline anchors' (each in its anchor's namespace), then those of the
/// rulesets its `load anchor` lines read, in pfctl's order.
pub fn table_defs(rs: &Ruleset) -> Vec<TableDefIn<'_>> {
    let mut v: Vec<TableDefIn> = rs.tables.iter().map(|def| TableDefIn { file: &rs.filename, def }).collect();
    for la in &rs.load_anchors {
        v.extend(table_defs(&la.ruleset));
    }
    v
}

/// Whether a rule keeps state.
pub fn keeps_state(r: &CRule) -> bool {
    r.action == Action::Pass && r.keep_state != StateMode::NoState
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::StaticResolver;

    #[test]
    fn timeout_index_is_the_position_in_all() {
        for (i, t) in Timeout::ALL.iter().enumerate() {
            assert_eq!(tidx(*t), i, "{t:?}");
        }
    }

    fn compile_text(text: &str) -> CompiledRuleset {
        let res = StaticResolver::example();
        let rs = crate::parse::parse_ruleset(text, "t", &res).unwrap();
        let tags = TagNames::default();
        let ts = TimeoutSets::new();
        let ex = HashMap::new();
        compile(&rs, &CompileCx { resolver: &res, tags: &tags, timeout_sets: &ts, existing_tables: &ex, gen: 1 })
            .unwrap()
    }

    #[test]
    fn skip_steps_jump_over_runs_that_share_a_field() {
        let c = compile_text(
            "block in proto tcp from 10.0.0.1 to any port 22\n\
             block in proto tcp from 10.0.0.1 to any port 23\n\
             block in proto udp from 10.0.0.2 to any port 53\n\
             pass out proto udp from 10.0.0.2 to any\n",
        );
        let s: Vec<[u32; SKIP_COUNT]> = c.rules.iter().map(|r| r.skip).collect();
        // ifp: all "any"; dir: in,in,in,out; proto: tcp,tcp,udp,udp
        assert_eq!(s[0][SKIP_IFP], 4);
        assert_eq!(s[0][SKIP_DIR], 3);
        assert_eq!(s[3][SKIP_DIR], 4);
        assert_eq!(s[0][SKIP_PROTO], 2);
        assert_eq!(s[1][SKIP_PROTO], 2);
        assert_eq!(s[2][SKIP_PROTO], 4);
        assert_eq!(s[0][SKIP_SRC_ADDR], 2);
        assert_eq!(s[2][SKIP_SRC_ADDR], 4);
        assert_eq!(s[0][SKIP_DST_PORT], 1);
        assert_eq!(s[1][SKIP_DST_PORT], 2);
        assert_eq!(s[2][SKIP_DST_PORT], 3);
        assert_eq!(s[3][SKIP_DST_PORT], 4);
        assert_eq!(s[0][SKIP_AF], 4);
    }

    /// The data path counts a state's packets under `state_rule_index`,
    /// which does not read the rule: it must name the rule `state_rule`
    /// finds (its `nr`, the flat index) for every ruleset of the tree, and
    /// nothing for a rule number past a ruleset's end or an unknown
    /// generation.
    #[test]
    fn state_rule_index_names_the_rule_state_rule_finds() {
        let mut c = compile_text(
            "pass in proto tcp
             anchor \"a\" {\n pass in proto udp\n block out\n pass out proto icmp\n}
             pass out all
             anchor \"b\" {\n pass all\n}
",
        );
        // Anchors loaded later keep their own generations.
        for (i, n) in c.nodes.iter_mut().enumerate().skip(1) {
            n.gen = 10 + i as u32;
        }
        c.by_gen = c.nodes.iter().enumerate().map(|(i, n)| (n.gen, i as u32)).collect();
        assert!(c.nodes.len() >= 3, "{:?}", c.nodes);
        for (i, r) in c.rules.iter().enumerate() {
            assert_eq!(r.nr as usize, i);
        }
        let gens: Vec<u32> = c.nodes.iter().map(|n| n.gen).chain([0, 99]).collect();
        for gen in gens {
            for nr in 0..c.rules.len() as u32 + 3 {
                let want = c.state_rule(gen, nr).map(|r| r.nr as usize);
                assert_eq!(c.state_rule_index(gen, nr), want, "gen {gen} nr {nr}");
            }
        }
    }
}
