//! From a parsed `model::Ruleset` to the immutable `CompiledRuleset` the
//! workers evaluate: rules with their skip steps (computed as pfctl's
//! `calc_skip_steps` does), interface groups expanded, tag names turned
//! into ids, tables attached, and the global options in arrays.
//!
//! A compiled ruleset is published whole (`arc-swap`): a packet sees the
//! old one or the new one, never a mix.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
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
use crate::table::Table;

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

/// A rule's packet counters as one worker keeps them. Packets and bytes
/// are split by the packet's direction, as pf's `packets[2]`/`bytes[2]`
/// (`[DIR_IN]`, `[DIR_OUT]`, pf_counters_inc's `pd->dir == PF_OUT`).
#[derive(Default)]
pub struct RuleStats {
    pub packets: [Counter; 2],
    pub bytes: [Counter; 2],
    pub states_created: Counter,
}

impl RuleStats {
    /// Counts one packet of `len` bytes going `dir`.
    #[inline]
    pub fn count(&self, dir: softnet_core::filter::Direction, len: u64) {
        let d = (dir == softnet_core::filter::Direction::Out) as usize;
        self.packets[d].inc();
        self.bytes[d].add(len);
    }
}

/// One worker's rule counters: contiguous arrays indexed by rule number,
/// allocated with the ruleset.
///
/// Evaluations are kept as a difference array: a packet that evaluates
/// the consecutive rules `a..b` adds 1 at `a` and subtracts 1 at `b`
/// (wrapping), so a run of rules costs two writes however long it is; a
/// rule's count is the prefix sum up to it.
pub struct WorkerRuleCounters {
    evals: Box<[Counter]>,
    stats: Box<[RuleStats]>,
}

/// Per-rule counters of a ruleset, one `WorkerRuleCounters` per worker
/// (each cache-line aligned, written only by its worker).
pub struct RuleCounters {
    workers: Box<[CacheAligned<WorkerRuleCounters>]>,
}

impl RuleCounters {
    pub fn new(rules: usize) -> RuleCounters {
        RuleCounters {
            workers: (0..MAX_WORKERS)
                .map(|_| {
                    CacheAligned(WorkerRuleCounters {
                        evals: (0..=rules).map(|_| Counter::default()).collect(),
                        stats: (0..rules).map(|_| RuleStats::default()).collect(),
                    })
                })
                .collect(),
        }
    }

    /// Takes over `old`'s counts for the rules `(old index, new index)`
    /// (a ruleset a load left alone): into worker 0's counters, while no
    /// worker uses these yet.
    pub fn carry(&self, old: &RuleCounters, pairs: &[(usize, usize)]) {
        if pairs.is_empty() {
            return;
        }
        let w = &self.workers[0].0;
        let evals = old.all_evaluations();
        let mut vals = vec![0u64; w.stats.len()];
        for &(o, n) in pairs {
            vals[n] = evals.get(o).copied().unwrap_or(0);
            let s = &w.stats[n];
            let [pi, po] = old.packets(o);
            let [bi, bo] = old.bytes(o);
            s.packets[DIR_IN].add(pi);
            s.packets[DIR_OUT].add(po);
            s.bytes[DIR_IN].add(bi);
            s.bytes[DIR_OUT].add(bo);
            s.states_created.add(old.sum(o, |c| &c.states_created));
        }
        // Evaluations are a difference array: rule i's count is the sum
        // of entries 0..=i.
        let mut prev = 0u64;
        for (i, v) in vals.iter().enumerate() {
            w.evals[i].add(v.wrapping_sub(prev));
            prev = *v;
        }
        w.evals[vals.len()].add(0u64.wrapping_sub(prev));
    }

    /// Worker `w`'s counters (`w` wraps at `MAX_WORKERS`, as `PerWorker`).
    #[inline]
    pub fn get(&self, w: usize) -> &WorkerRuleCounters {
        &self.workers[w % MAX_WORKERS].0
    }

    /// Evaluations of rule `nr`, all workers.
    pub fn evaluations(&self, nr: usize) -> u64 {
        self.workers
            .iter()
            .map(|c| c.0.evals.iter().take(nr + 1).fold(0u64, |a, x| a.wrapping_add(x.get())))
            .fold(0u64, |a, x| a.wrapping_add(x))
    }

    /// Evaluations of every rule, all workers (one pass).
    pub fn all_evaluations(&self) -> Vec<u64> {
        let n = self.workers.first().map(|c| c.0.stats.len()).unwrap_or(0);
        let mut diff = vec![0u64; n];
        for c in self.workers.iter() {
            for (d, x) in diff.iter_mut().zip(c.0.evals.iter()) {
                *d = d.wrapping_add(x.get());
            }
        }
        let mut acc = 0u64;
        diff.iter()
            .map(|d| {
                acc = acc.wrapping_add(*d);
                acc
            })
            .collect()
    }

    /// A counter of rule `nr`, summed over workers.
    pub fn sum(&self, nr: usize, f: impl Fn(&RuleStats) -> &Counter) -> u64 {
        self.workers.iter().filter_map(|c| c.0.stats.get(nr)).fold(0u64, |a, s| a.wrapping_add(f(s).get()))
    }

    /// Rule `nr`'s packets, [in, out], all workers.
    pub fn packets(&self, nr: usize) -> [u64; 2] {
        [self.sum(nr, |c| &c.packets[DIR_IN]), self.sum(nr, |c| &c.packets[DIR_OUT])]
    }

    /// Rule `nr`'s bytes, [in, out], all workers.
    pub fn bytes(&self, nr: usize) -> [u64; 2] {
        [self.sum(nr, |c| &c.bytes[DIR_IN]), self.sum(nr, |c| &c.bytes[DIR_OUT])]
    }
}

impl WorkerRuleCounters {
    /// Counts one evaluation of each rule in `a..b`.
    #[inline]
    pub fn evaluated(&self, a: usize, b: usize) {
        if a < b {
            self.evals[a].add(1);
            self.evals[b].add(u64::MAX);
        }
    }

    /// Rule `nr`'s packet counters.
    #[inline]
    pub fn rule(&self, nr: usize) -> Option<&RuleStats> {
        self.stats.get(nr)
    }
}

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
    /// IPv6: never matches an IPv4 packet.
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

/// `HotRule::flags`: the rule has an interface to match.
pub const HOT_IFM: u8 = 1;
/// `inet6` rule: never matches IPv4.
pub const HOT_INET6: u8 = 2;
/// The source address is not a plain (non-negated) `any` or network:
/// match it with the full `CRule`.
pub const HOT_SRC_SLOW: u8 = 4;
pub const HOT_DST_SLOW: u8 = 8;
/// ICMP type, TOS, TCP flags, `tagged`, `user` or `group` to check in the
/// full `CRule`.
pub const HOT_REST: u8 = 16;

/// The fields the rule walk reads for every rule, packed so that walking
/// N rules reads N small consecutive records instead of N big `CRule`s.
#[derive(Debug, Clone, Copy)]
pub struct HotRule {
    pub skip: [u32; SKIP_COUNT],
    /// (network, mask) for a fast address: `any` is (0, 0).
    pub src: (u32, u32),
    pub dst: (u32, u32),
    pub src_port: Option<PortOp>,
    pub dst_port: Option<PortOp>,
    pub proto: Option<u8>,
    pub dir: Option<softnet_core::filter::Direction>,
    pub flags: u8,
}

impl HotRule {
    fn of(r: &CRule) -> HotRule {
        let fast = |e: &EndpointMatch| match e.addr {
            _ if e.negated => None,
            AddrMatch::Any => Some((0, 0)),
            AddrMatch::Net { net, mask } => Some((net, mask)),
            _ => None,
        };
        let mut flags = 0;
        if r.ifm.is_some() {
            flags |= HOT_IFM;
        }
        if r.inet6_only {
            flags |= HOT_INET6;
        }
        let src = fast(&r.src).unwrap_or_else(|| {
            flags |= HOT_SRC_SLOW;
            (0, 0)
        });
        let dst = fast(&r.dst).unwrap_or_else(|| {
            flags |= HOT_DST_SLOW;
            (0, 0)
        });
        if r.icmp.is_some()
            || r.tos.is_some()
            || !r.flags.is_any()
            || r.tagged.is_some()
            || r.rule.user.is_some()
            || r.rule.group.is_some()
            || r.rule.fragment
            || r.rule.probability.is_some()
            || r.rcv.is_some()
            || r.rule.once
            || r.pktrate.is_some()
            || r.rule.prio.is_some()
        {
            flags |= HOT_REST;
        }
        HotRule {
            skip: r.skip,
            src,
            dst,
            src_port: r.src.port,
            dst_port: r.dst.port,
            proto: r.proto,
            dir: r.dir,
            flags,
        }
    }
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
    pub tables: HashMap<String, Arc<Table>>,
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
    #[inline]
    pub fn state_rule(&self, gen: u32, nr: u32) -> Option<&CRule> {
        let main = &self.nodes[0];
        let node = if gen == main.gen { main } else { &self.nodes[*self.by_gen.get(&gen)? as usize] };
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
    pub existing_tables: &'a HashMap<String, Arc<Table>>,
    pub gen: u32,
}

fn v4net(a: IpAddr, prefix: u8) -> AddrMatch {
    match a {
        IpAddr::V4(a) => {
            let mask = softnet_core::iface::prefix_mask(prefix);
            AddrMatch::Net { net: u32::from(a) & mask, mask }
        }
        IpAddr::V6(_) => AddrMatch::Never,
    }
}

fn endpoint(
    e: &Endpoint,
    tables: &mut HashMap<String, Arc<Table>>,
    existing: &HashMap<String, Arc<Table>>,
) -> Result<EndpointMatch, CompileError> {
    let addr = match &e.addr {
        Addr::Any => AddrMatch::Any,
        Addr::Net(n) => v4net(n.addr, n.prefix),
        Addr::Range(a, b) => match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => AddrMatch::Range(u32::from(*a), u32::from(*b)),
            _ => AddrMatch::Never,
        },
        Addr::Table(name) => {
            // pfctl creates a table a rule names without defining it.
            let t = tables
                .entry(name.clone())
                .or_insert_with(|| existing.get(name).cloned().unwrap_or_else(|| Arc::new(Table::new(name))))
                .clone();
            AddrMatch::Table(t)
        }
        Addr::Dynamic { ifname, modifier, no_alias, prefix } => {
            AddrMatch::Dynamic { ifname: ifname.clone(), modifier: *modifier, no_alias: *no_alias, prefix: *prefix }
        }
        Addr::NoRoute => AddrMatch::NoRoute,
        Addr::UrpfFailed => AddrMatch::UrpfFailed,
        // No route of softnet's carries a label.
        Addr::RouteLabel(_) => AddrMatch::Never,
    };
    Ok(EndpointMatch { addr, negated: e.negated, port: e.port })
}

/// Compiles a ruleset and the inline anchors it brings; anchors it only
/// calls are empty. Tables are created (or reused from `existing_tables`,
/// refilled from the definition).
pub fn compile(rs: &Ruleset, cx: &CompileCx) -> Result<CompiledRuleset, CompileError> {
    let mut sources = AnchorSources::new();
    anchor::apply_load(&mut sources, rs);
    compile_tree(rs, &sources, true, None, cx)
}

/// The running tree and the rulesets a load replaces: every other ruleset
/// keeps its identity, its rules' counters, state counts and
/// source-tracking nodes, as pf leaves the rulesets a load does not touch
/// alone.
pub struct Prev<'a> {
    pub tree: &'a CompiledRuleset,
    pub replaced: &'a std::collections::BTreeSet<String>,
}

/// Compiles the whole tree: `main` (options, tables) and every ruleset of
/// `sources` by path (the main one's rules at ""). `define_tables`: the
/// main ruleset's table definitions fill their tables (a main ruleset
/// load); otherwise the tables are left as they are (an anchor load).
pub fn compile_tree(
    main: &Ruleset,
    sources: &AnchorSources,
    define_tables: bool,
    prev: Option<&Prev>,
    cx: &CompileCx,
) -> Result<CompiledRuleset, CompileError> {
    // What can fail is checked before any table changes: a ruleset with an
    // error loads nothing, running tables included.
    for (path, rules) in sources {
        if let Some(r) = rules.iter().find(|r| r.translation.af_to.is_some()) {
            let what = "af-to".to_string();
            return Err(CompileError::Unsupported { file: main.filename.clone(), line: r.line, what });
        }
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
    let existing = anchor::existing(sources);
    let limit = main.options.limit(Limit::Anchors);
    if existing.len() > limit as usize {
        return Err(CompileError::TooManyAnchors { file: main.filename.clone(), count: existing.len(), limit });
    }
    if define_tables {
        check_table_limits(main, cx)?;
    }
    let mut tables: HashMap<String, Arc<Table>> = HashMap::new();
    for td in &main.tables {
        let t = match cx.existing_tables.get(&td.name) {
            Some(t) => t.clone(),
            None => {
                let mut t = Table::new(&td.name);
                t.persist = td.persist;
                t.constant = td.constant;
                t.counters = td.counters;
                Arc::new(t)
            }
        };
        // As pfr_commit_ktable: a definition without any address list
        // (`table <bad> persist`) keeps what the running table holds, so
        // addresses added with `pfctl -T add` survive a reload.
        if define_tables && !td.init.is_empty() {
            let entries: Vec<_> = td.entries().cloned().collect();
            t.replace(&entries);
        }
        tables.insert(td.name.clone(), t);
    }
    // Persistent tables of the running ruleset stay.
    for (n, t) in cx.existing_tables {
        if t.persist && !tables.contains_key(n) {
            tables.insert(n.clone(), t.clone());
        }
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
            let mut c = compile_rule(r, &main.filename, rules.len(), (node_gen, local as u32), &mut tables, cx)?;
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
fn new_node_gen() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    loop {
        let g = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if g != 0 {
            return g;
        }
    }
}

/// One rule, numbered `nr` in the tree's flat arrays; `id` is what its
/// states will name it by (its ruleset's generation, its number there).
fn compile_rule(
    r: &Rule,
    filename: &str,
    nr: usize,
    id: (u32, u32),
    tables: &mut HashMap<String, Arc<Table>>,
    cx: &CompileCx,
) -> Result<CRule, CompileError> {
    let ifm = r.interface.as_ref().map(|i| IfMatch {
        name: i.name.clone(),
        members: cx.resolver.group_members(&i.name),
        negated: i.negated,
    });
    // `received-on`: an interface or group, as `on`
    let rcv = r.received_on.as_ref().map(|i| IfMatch {
        name: i.name.clone(),
        members: cx.resolver.group_members(&i.name),
        negated: i.negated,
    });
    let mut tset = [0u32; TIMEOUT_COUNT];
    for (t, v) in &r.state_opts.timeouts {
        tset[tidx(*t)] = *v;
    }
    let src = endpoint(&r.src, tables, cx.existing_tables)?;
    let dst = endpoint(&r.dst, tables, cx.existing_tables)?;
    let mut pool = |p: &Option<crate::model::Pool>| {
        p.as_ref().and_then(|p| {
            crate::lb::CPool::new(p, &mut |name| {
                // pfctl creates a table a pool names without defining it
                Some(
                    tables
                        .entry(name.to_string())
                        .or_insert_with(|| {
                            cx.existing_tables.get(name).cloned().unwrap_or_else(|| Arc::new(Table::new(name)))
                        })
                        .clone(),
                )
            })
        })
    };
    let (nat, rdr) = (pool(&r.translation.nat), pool(&r.translation.rdr));
    let dst_port_lo = match r.dst.port {
        Some(PortOp::Eq(a) | PortOp::Range(a, _) | PortOp::Inside(a, _) | PortOp::Outside(a, _)) => a,
        _ => 0,
    };
    let route = match (&r.route, r.action) {
        (Some(rt), Action::Pass) => {
            if let Addr::Table(name) = &rt.pool.addr {
                // pfctl creates a table a rule names without defining it.
                tables.entry(name.clone()).or_insert_with(|| {
                    cx.existing_tables.get(name).cloned().unwrap_or_else(|| Arc::new(Table::new(name)))
                });
            }
            let find = |name: &str| tables.get(name).cloned();
            Some(crate::route::CRoute::compile(rt, &find).map_err(|e| CompileError::Unsupported {
                file: filename.to_string(),
                line: r.line,
                what: e.0,
            })?)
        }
        _ => None,
    };
    let o = &r.state_opts;
    // A rule has nodes when it tracks sources, or when its routing,
    // nat-to or rdr-to pool is sticky (pf_map_addr keeps the address in
    // a node of its own).
    let sticky_route = r.route.as_ref().is_some_and(|rt| rt.pool.sticky);
    let sticky_xlate = [&r.translation.nat, &r.translation.rdr].into_iter().flatten().any(|p| p.sticky);
    let tracking = o.source_track.or((sticky_route || sticky_xlate).then_some(crate::model::SourceTrack::Rule));
    let src_track = tracking.map(|track| {
        // The overload table, created as a rule's table is if the
        // ruleset does not define it.
        let overload = o.overload.as_ref().map(|ov| crate::srcnode::Overload {
            table: tables
                .entry(ov.table.clone())
                .or_insert_with(|| {
                    cx.existing_tables.get(&ov.table).cloned().unwrap_or_else(|| Arc::new(Table::new(&ov.table)))
                })
                .clone(),
            flush: ov.flush,
            flush_global: ov.flush_global,
        });
        Arc::new(crate::srcnode::SrcRule {
            gen: id.0,
            nr: id.1,
            track: o.source_track.is_some(),
            global: track == crate::model::SourceTrack::Global,
            max_src_nodes: o.max_src_nodes,
            max_src_states: o.max_src_states,
            max_src_conn: o.max_src_conn,
            max_src_conn_rate: o.max_src_conn_rate,
            overload,
            nodes: Default::default(),
        })
    });
    Ok(CRule {
        nr: nr as u32,
        local_nr: 0,
        node: 0,
        anchor: None,
        rule: r.clone(),
        action: r.action,
        dir: match r.direction {
            Direction::Both => None,
            Direction::In => Some(softnet_core::filter::Direction::In),
            Direction::Out => Some(softnet_core::filter::Direction::Out),
        },
        quick: r.quick,
        log: r.log,
        ifm,
        rcv,
        inet6_only: r.af == Some(AddressFamily::Inet6),
        proto: r.proto,
        src,
        dst,
        flags: r.flags,
        icmp: r.icmp,
        tos: r.tos,
        allow_opts: r.allow_opts,
        scrub: crate::scrub::ScrubActs::of_rule(&r.scrub, r.set.tos),
        tag: r.tag.as_deref().map(|t| cx.tags.id(t)).unwrap_or(0),
        tagged: r.tagged.as_ref().map(|t| (cx.tags.id(&t.name), t.negated)),
        rtable: r.rtable.map(|t| t as u16),
        keep_state: r.keep_state,
        if_bound: r.state_opts.if_bound,
        sloppy: r.state_opts.sloppy,
        max_states: r.state_opts.max,
        timeout_set: cx.timeout_sets.intern(tset),
        label: r.label.clone(),
        route,
        skip: [0; SKIP_COUNT],
        states_cur: Default::default(),
        expired: Default::default(),
        pktrate: r
            .max_pkt_rate
            .filter(|(n, _)| *n > 0)
            .map(|(n, s)| parking_lot::Mutex::new(crate::srcnode::Threshold::new(n, s, 0))),
        src_track,
        nat,
        rdr,
        dst_port_lo,
    })
}

/// `set limit tables` and `set limit table-entries` over the tables the
/// ruleset would leave: persistent ones kept from the running ruleset and
/// the ones it defines (refilled, or kept as they are without an address
/// list). pf's pools refuse the table that goes over.
fn check_table_limits(rs: &Ruleset, cx: &CompileCx) -> Result<(), CompileError> {
    let max_tables = rs.options.limit(Limit::Tables) as usize;
    let max_entries = rs.options.limit(Limit::TableEntries) as usize;
    let defined: std::collections::HashSet<&str> = rs.tables.iter().map(|t| t.name.as_str()).collect();
    let (mut tables, mut entries) = cx
        .existing_tables
        .iter()
        .filter(|(n, t)| t.persist && !defined.contains(n.as_str()))
        .fold((0, 0), |(k, e), (_, t)| (k + 1, e + t.len()));
    for td in &rs.tables {
        tables += 1;
        entries += if td.init.is_empty() {
            cx.existing_tables.get(&td.name).map_or(0, |t| t.len())
        } else {
            crate::table::count_distinct(&td.entries().cloned().collect::<Vec<_>>())
        };
        if tables > max_tables || entries > max_entries {
            return Err(CompileError::TableMemory { file: rs.filename.clone(), line: td.line, name: td.name.clone() });
        }
    }
    Ok(())
}

fn same_field(a: &CRule, b: &CRule, f: usize) -> bool {
    match f {
        SKIP_IFP => match (&a.ifm, &b.ifm) {
            (None, None) => true,
            (Some(x), Some(y)) => x.name == y.name && x.negated == y.negated,
            _ => false,
        },
        SKIP_DIR => a.dir == b.dir,
        SKIP_AF => a.rule.af == b.rule.af,
        SKIP_PROTO => a.proto == b.proto,
        SKIP_SRC_ADDR => a.rule.src.addr == b.rule.src.addr && a.rule.src.negated == b.rule.src.negated,
        SKIP_SRC_PORT => a.rule.src.port == b.rule.src.port,
        SKIP_DST_ADDR => a.rule.dst.addr == b.rule.dst.addr && a.rule.dst.negated == b.rule.dst.negated,
        SKIP_DST_PORT => a.rule.dst.port == b.rule.dst.port,
        _ => unreachable!(),
    }
}

/// pfctl's `calc_skip_steps`: for each field, every rule of a run of
/// consecutive rules equal in that field skips to the first rule after
/// the run (the rule count when the run reaches the end).
pub fn calc_skip_steps(rules: &mut [CRule]) {
    let n = rules.len();
    for f in 0..SKIP_COUNT {
        let mut head = 0;
        for cur in 1..=n {
            if cur == n || !same_field(&rules[head], &rules[cur], f) {
                for r in &mut rules[head..cur] {
                    r.skip[f] = cur as u32;
                }
                head = cur;
            }
        }
    }
}

impl AddrMatch {
    /// Whether `a` matches (before the rule's negation). `ifp` is the
    /// packet's interface, used for `(if)` when it names that interface;
    /// `lookup_if` finds other interfaces' addresses.
    #[inline]
    pub fn matches(&self, a: Ipv4Addr, dyn_addrs: &dyn Fn(&str) -> Option<Vec<softnet_core::iface::IfAddr>>) -> bool {
        let x = u32::from(a);
        match self {
            AddrMatch::Any => true,
            AddrMatch::Net { net, mask } => x & mask == *net,
            AddrMatch::Range(lo, hi) => x >= *lo && x <= *hi,
            AddrMatch::Table(t) => t.contains(a),
            AddrMatch::Dynamic { ifname, modifier, no_alias, prefix } => {
                let Some(addrs) = dyn_addrs(ifname) else { return false };
                let n = if *no_alias { addrs.len().min(1) } else { addrs.len() };
                // pfi_instance_add: an explicit `/N` widens each address
                // (the network modifier's own mask otherwise).
                let widened = |ia: &softnet_core::iface::IfAddr, p: u8| {
                    softnet_core::iface::IfAddr::new(ia.addr, p.min(32)).contains(a)
                };
                addrs[..n].iter().any(|ia| match (modifier, prefix) {
                    (IfAddrModifier::Address | IfAddrModifier::Network, Some(p)) => widened(ia, *p),
                    (IfAddrModifier::Address, None) => ia.addr == a,
                    (IfAddrModifier::Network, None) => ia.contains(a),
                    (IfAddrModifier::Broadcast, _) => ia.broadcast() == Some(a),
                    (IfAddrModifier::Peer, _) => false,
                })
            }
            // These need the route table: the rule walk asks it
            // (`eval::endpoint_matches`); without it they match nothing.
            AddrMatch::NoRoute | AddrMatch::UrpfFailed | AddrMatch::Never => false,
        }
    }
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
}
