//! The parsed ruleset: what the evaluator compiles and the printer prints.
//!
//! Everything here is already expanded: lists became one rule per
//! combination, macros are gone, interface names in addresses are resolved
//! to addresses (except the dynamic `(if)` form, which the evaluator follows
//! at run time), defaults are filled in (`flags S/SA`, `keep state`, the
//! block policy).

use std::net::IpAddr;

pub use crate::rule_opts::*;

pub use crate::names::Timeout;

/// An address with a prefix length, host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Builds the network, clearing host bits like pfctl's `set_ipmask`.
    pub fn new(addr: IpAddr, prefix: u8) -> IpNet {
        let addr = match addr {
            IpAddr::V4(a) => {
                let p = prefix.min(32) as u32;
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let p = prefix.min(128) as u32;
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        IpNet { addr, prefix }
    }

    pub fn host(addr: IpAddr) -> IpNet {
        IpNet { addr, prefix: max_prefix(addr) }
    }

    pub fn family(&self) -> AddressFamily {
        AddressFamily::of(self.addr)
    }

    pub fn is_host(&self) -> bool {
        self.prefix == max_prefix(self.addr)
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                IpNet::new(a, self.prefix).addr == self.addr
            }
            _ => false,
        }
    }
}

pub fn max_prefix(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    Inet,
    Inet6,
}

impl AddressFamily {
    pub fn of(a: IpAddr) -> AddressFamily {
        match a {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        }
    }
    pub fn keyword(self) -> &'static str {
        match self {
            AddressFamily::Inet => "inet",
            AddressFamily::Inet6 => "inet6",
        }
    }
}

/// Which part of an interface's addresses `(if:modifier)` stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IfAddrModifier {
    /// The interface's own addresses.
    #[default]
    Address,
    /// The networks attached to the interface (`:network`).
    Network,
    /// The IPv4 broadcast addresses (`:broadcast`).
    Broadcast,
    /// The point-to-point peer addresses (`:peer`).
    Peer,
}

/// One side's address in a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addr {
    /// `any` (and `all`).
    Any,
    /// A literal address or network, or one address an interface name,
    /// group or `self` resolved to when the ruleset was parsed.
    Net(IpNet),
    /// `a - b`, inclusive.
    Range(IpAddr, IpAddr),
    /// `<name>`.
    Table(String),
    /// `(if)`, `(if:network)` …: follows the interface's addresses at run time.
    Dynamic {
        ifname: String,
        modifier: IfAddrModifier,
        /// `:0`: only the first address of each family, no aliases.
        no_alias: bool,
        /// `(if)/N`: each address widened to a network of N bits.
        prefix: Option<u8>,
    },
    /// `no-route`: addresses with no route.
    NoRoute,
    /// `urpf-failed`: sources failing the unicast reverse path check.
    UrpfFailed,
    /// `route "label"`: addresses whose route carries the label (pf's
    /// PF_ADDR_RTLABEL). softnet's routes carry no labels, so it matches
    /// no address, as in pf with no route so labelled.
    RouteLabel(String),
}

impl Addr {
    pub fn family(&self) -> Option<AddressFamily> {
        match self {
            Addr::Net(n) => Some(n.family()),
            Addr::Range(a, _) => Some(AddressFamily::of(*a)),
            _ => None,
        }
    }
}

/// Port comparison, as pf's `PF_OP_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortOp {
    /// `= a`
    Eq(u16),
    /// `!= a`
    Ne(u16),
    /// `< a`
    Lt(u16),
    /// `<= a`
    Le(u16),
    /// `> a`
    Gt(u16),
    /// `>= a`
    Ge(u16),
    /// `a:b`, both ends included.
    Range(u16, u16),
    /// `a >< b`, both ends excluded.
    Inside(u16, u16),
    /// `a <> b`: below a or above b.
    Outside(u16, u16),
}

impl PortOp {
    pub fn matches(&self, p: u16) -> bool {
        match *self {
            PortOp::Eq(a) => p == a,
            PortOp::Ne(a) => p != a,
            PortOp::Lt(a) => p < a,
            PortOp::Le(a) => p <= a,
            PortOp::Gt(a) => p > a,
            PortOp::Ge(a) => p >= a,
            PortOp::Range(a, b) => p >= a && p <= b,
            PortOp::Inside(a, b) => p > a && p < b,
            PortOp::Outside(a, b) => p < a || p > b,
        }
    }
}

/// One side of `from … to …`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: Addr,
    /// `! addr`
    pub negated: bool,
    pub port: Option<PortOp>,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint { addr: Addr::Any, negated: false, port: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Neither `in` nor `out` given: both.
    Both,
    In,
    Out,
}

/// What a `block` rule does with the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockAction {
    Drop,
    /// TCP RST for TCP, ICMP port unreachable otherwise.
    Return,
    /// `return-rst [(ttl N)]`; ttl 0 means the default.
    ReturnRst {
        ttl: u8,
    },
    /// `return-icmp(code[, code6])` / `return-icmp6(code)`: the codes are
    /// under "destination unreachable" (type 3 for IPv4, 1 for IPv6).
    ReturnIcmp {
        code: u8,
        code6: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Pass,
    Block(BlockAction),
    Match,
}

/// `log (…)`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LogOpts {
    /// `all`: log every packet of the state, not only the first.
    pub all: bool,
    /// `matches` (PF_LOG_MATCHES): on a `match` rule, every later rule the
    /// packet matches logs it too.
    pub matches: bool,
    /// `user` (PF_LOG_USER): pf records the uid/pid of the local socket in
    /// the pflog header. softnet forwards only and has no local sockets, so
    /// this is parsed and printed but records nothing extra (the header's
    /// uid/pid stay "unknown").
    pub user: bool,
    /// `to pflogN`, N in 1..=255; `to pflog0` is the default and is stored as
    /// `None`, as pfctl stores logif 0. softnet has only pflog0, so loading a
    /// rule with `Some(_)` is refused.
    pub to_pflog: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InterfaceMatch {
    /// An interface or interface group name (`egress`, `lo`, …).
    pub name: String,
    /// `on ! name`
    pub negated: bool,
}

/// `flags set/mask`: the packet's flags masked by `mask` must equal `set`.
/// Both zero: no check (`flags any`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags {
    pub set: u8,
    pub mask: u8,
}

impl TcpFlags {
    pub fn is_any(&self) -> bool {
        self.set == 0 && self.mask == 0
    }
}

/// `icmp-type T [code C]` / `icmp6-type …`; the family is the rule's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    pub icmp_type: u8,
    pub code: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateMode {
    NoState,
    Keep,
    Modulate,
    Synproxy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceTrack {
    Global,
    Rule,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Overload {
    pub table: String,
    pub flush: bool,
    pub flush_global: bool,
}

/// The options in `keep state (…)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StateOpts {
    /// `max N`: most states this rule may create.
    pub max: Option<u32>,
    pub no_sync: bool,
    pub source_track: Option<SourceTrack>,
    pub max_src_states: Option<u32>,
    pub max_src_nodes: Option<u32>,
    pub max_src_conn: Option<u32>,
    /// `max-src-conn-rate N/S`
    pub max_src_conn_rate: Option<(u32, u32)>,
    pub overload: Option<Overload>,
    /// States are bound to the interface (`if-bound`, or `set state-policy
    /// if-bound` without `floating`).
    pub if_bound: bool,
    /// Floating although the ruleset's final `set state-policy` is
    /// if-bound (a rule before that line, or one saying `floating`). pfctl
    /// does not print it; softnet's `-nv` does, so the printed ruleset,
    /// where every `set` line comes first, means the same when parsed again
    /// (`-sr`, with no `set` lines, leaves it out as pfctl does).
    pub floating: bool,
    pub sloppy: bool,
    pub pflow: bool,
    /// Per-rule timeouts, in `Timeout` order.
    pub timeouts: Vec<(Timeout, u32)>,
}

impl StateOpts {
    /// Whether pfctl prints the parenthesised options at all.
    pub fn any(&self) -> bool {
        self.max.is_some()
            || self.no_sync
            || self.source_track.is_some()
            || self.max_src_states.is_some()
            || self.max_src_nodes.is_some()
            || self.if_bound
            || self.floating
            || self.sloppy
            || self.pflow
            || !self.timeouts.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TagMatch {
    pub name: String,
    pub negated: bool,
}

/// pf's `PF_NAT_PROXY_PORT_LOW` / `_HIGH`: the source ports `nat-to` picks
/// from when the rule names none.
pub const NAT_PORT_LOW: u16 = 50001;
pub const NAT_PORT_HIGH: u16 = 65535;

/// How an address pool picks an address (pf's `PF_POOL_*` types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PoolType {
    /// No type given: a single address (or the network's own address).
    #[default]
    None,
    /// `bitmask`: the network bits of the pool, the host bits of the packet.
    Bitmask,
    /// `random`: any address of the pool.
    Random,
    /// `source-hash [key]`: an address chosen by a keyed hash of the source.
    SourceHash(HashKey),
    /// `round-robin`: each address in turn.
    RoundRobin,
    /// `least-states`: the address with the fewest states.
    LeastStates,
}

impl PoolType {
    /// pf's `PF_POOL_DYNTYPE`: the types that can walk several addresses
    /// (a table, a list, an interface with aliases).
    pub fn is_dynamic(self) -> bool {
        matches!(self, PoolType::RoundRobin | PoolType::LeastStates)
    }
    pub fn keyword(self) -> &'static str {
        match self {
            PoolType::None => "",
            PoolType::Bitmask => "bitmask",
            PoolType::Random => "random",
            PoolType::SourceHash(_) => "source-hash",
            PoolType::RoundRobin => "round-robin",
            PoolType::LeastStates => "least-states",
        }
    }
}

/// `pf_poolhashkey`: the 128-bit key of `source-hash`, as four 32-bit words
/// (printed `0x%08x%08x%08x%08x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HashKey(pub [u32; 4]);

/// Which part of a rule a pool belongs to (pfctl's `PF_POOL_NAT`,
/// `PF_POOL_RDR`, `PF_POOL_ROUTE`): their ports mean different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolRole {
    Nat,
    Rdr,
    Route,
}

/// An address pool: pf's `struct pf_pool`, as pfctl's `collapse_redirspec`
/// and `apply_redirspec` leave it. A list of addresses has become a
/// constant table (`<__automatic_N>`) by then, as pfctl makes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pool {
    /// One address or network, a range, a `<table>`, or `(if)` with its
    /// modifiers (followed at run time).
    pub addr: Addr,
    /// Route options only: `(if addr)`, the interface the address is
    /// reached through.
    pub ifname: Option<String>,
    /// pf's `proxy_port[2]`. nat-to: the source ports to pick from
    /// (`NAT_PORT_LOW..=NAT_PORT_HIGH` unless given; `0, 0` is
    /// `static-port`). rdr-to: `0, 0` keeps the port, `p, 0` sets it, `p1,
    /// p2` maps the rule's destination port range onto `p1..=p2`.
    pub proxy_port: [u16; 2],
    pub kind: PoolType,
    /// `sticky-address` (PF_POOL_STICKYADDR): a source keeps the address it
    /// was given while it has a source node (source tracking keeps them).
    pub sticky: bool,
}

impl Pool {
    /// A pool of one address with no options (what a bare `nat-to ADDR`
    /// gives).
    pub fn single(addr: Addr, role: PoolRole) -> Pool {
        let proxy_port = if role == PoolRole::Nat { [NAT_PORT_LOW, NAT_PORT_HIGH] } else { [0, 0] };
        Pool { addr, ifname: None, proxy_port, kind: PoolType::None, sticky: false }
    }

    /// `static-port` on a nat-to pool: the source port is kept.
    pub fn static_port(&self) -> bool {
        self.proxy_port == [0, 0]
    }
}

/// Address translation on a rule (pf's `nat`, `rdr` pools and `naf`).
/// `binat-to` is no translation of its own: pfctl expands it into a
/// `nat-to … static-port` rule and an `rdr-to` rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Translation {
    /// `nat-to`, or af-to's `from` pool.
    pub nat: Option<Pool>,
    /// `rdr-to`, or af-to's `to` pool.
    pub rdr: Option<Pool>,
    /// `af-to inet|inet6`: the family the packet is translated to.
    pub af_to: Option<AddressFamily>,
}

impl Translation {
    pub fn is_empty(&self) -> bool {
        self.nat.is_none() && self.rdr.is_none() && self.af_to.is_none()
    }

    /// The keyword of the first translation the rule has (for messages).
    pub fn keyword(&self) -> Option<&'static str> {
        if self.af_to.is_some() {
            Some("af-to")
        } else if self.nat.is_some() {
            Some("nat-to")
        } else if self.rdr.is_some() {
            Some("rdr-to")
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    RouteTo,
    ReplyTo,
    DupTo,
}

impl RouteKind {
    pub fn keyword(self) -> &'static str {
        match self {
            RouteKind::RouteTo => "route-to",
            RouteKind::ReplyTo => "reply-to",
            RouteKind::DupTo => "dup-to",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub kind: RouteKind,
    pub pool: Pool,
}

/// One filter rule after expansion.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub action: Action,
    pub direction: Direction,
    pub log: Option<LogOpts>,
    pub quick: bool,
    pub interface: Option<InterfaceMatch>,
    pub af: Option<AddressFamily>,
    pub proto: Option<u8>,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub flags: TcpFlags,
    pub icmp: Option<IcmpMatch>,
    pub tos: Option<u8>,
    pub allow_opts: bool,
    pub label: Option<String>,
    pub tag: Option<String>,
    pub tagged: Option<TagMatch>,
    pub rtable: Option<u32>,
    pub keep_state: StateMode,
    pub state_opts: StateOpts,
    /// nat-to, rdr-to (binat-to expanded into both), af-to.
    pub translation: Translation,
    pub route: Option<Route>,
    /// `anchor …`: the rule calls another ruleset instead of deciding.
    pub anchor: Option<AnchorCall>,
    /// `[!] received-on IF`.
    pub received_on: Option<ReceivedOn>,
    /// `user`, `group`: one comparison each after expansion.
    pub user: Option<IdOp>,
    pub group: Option<IdOp>,
    /// `prio N`: the packet's priority to match.
    pub prio: Option<u8>,
    /// `max-pkt-rate N/S`.
    pub max_pkt_rate: Option<(u32, u32)>,
    /// `set (prio, queue, tos, delay)`.
    pub set: SetActions,
    /// `probability`, as pf's fraction of 2^32.
    pub probability: Option<u32>,
    /// `fragment`: the rule matches fragments.
    pub fragment: bool,
    pub scrub: Scrub,
    /// `once`: the rule is removed after its first match.
    pub once: bool,
    pub divert: Option<Divert>,
    /// Line in the source the rule ended on (for load-time errors).
    pub line: usize,
}

impl Rule {
    /// Rules equal in everything the packet filter looks at (the source
    /// line is not).
    pub fn same_as(&self, o: &Rule) -> bool {
        let mut a = self.clone();
        a.line = o.line;
        a == *o
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableInit {
    Entries(Vec<TableEntry>),
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    pub negated: bool,
    pub net: IpNet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    pub name: String,
    /// The anchor the table is defined in ("" for the main ruleset): its
    /// namespace, as pfctl_define_table passes `pf->anchor->path`.
    pub anchor: String,
    pub persist: bool,
    pub constant: bool,
    pub counters: bool,
    pub init: Vec<TableInit>,
    pub line: usize,
}

impl TableDef {
    /// All literal entries (file contents are loaded by the caller).
    pub fn entries(&self) -> impl Iterator<Item = &TableEntry> {
        self.init.iter().flat_map(|i| match i {
            TableInit::Entries(e) => e.iter(),
            TableInit::File(_) => [].iter(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    States,
    SrcNodes,
    Frags,
    Tables,
    TableEntries,
    /// Packets held by `set delay` (pf's pktdelay pool). softnet has no
    /// delay queue: the limit is kept and shown, as pfctl does.
    PktDelayPkts,
    /// Anchors that may exist at once (pf_anchor_pl's hard limit): a
    /// load that would make more fails.
    Anchors,
}

impl Limit {
    /// In pfctl's `pf_limits` order (`pfctl -sm`).
    pub const ALL: [Limit; 7] = [
        Limit::States,
        Limit::SrcNodes,
        Limit::Frags,
        Limit::Tables,
        Limit::TableEntries,
        Limit::PktDelayPkts,
        Limit::Anchors,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Limit::States => "states",
            Limit::SrcNodes => "src-nodes",
            Limit::Frags => "frags",
            Limit::Tables => "tables",
            Limit::TableEntries => "table-entries",
            Limit::PktDelayPkts => "pktdelay-pkts",
            Limit::Anchors => "anchors",
        }
    }
    pub fn by_name(s: &str) -> Option<Limit> {
        Limit::ALL.iter().copied().find(|l| l.name() == s)
    }
    pub fn default_value(self) -> u32 {
        match self {
            Limit::States => 100000,
            Limit::SrcNodes => 10000,
            Limit::Frags => 65536,
            Limit::Tables => 1000,
            Limit::TableEntries => 200000,
            // PF_PKTDELAY_MAXPKTS, PF_ANCHOR_HIWAT
            Limit::PktDelayPkts => 10000,
            Limit::Anchors => 512,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BlockPolicy {
    #[default]
    Drop,
    Return,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StatePolicy {
    #[default]
    Floating,
    IfBound,
}

/// `set optimization`: a set of TCP timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Optimization {
    #[default]
    Normal,
    HighLatency,
    Satellite,
    Aggressive,
    Conservative,
}

impl Optimization {
    pub fn name(self) -> &'static str {
        match self {
            Optimization::Normal => "normal",
            Optimization::HighLatency => "high-latency",
            Optimization::Satellite => "satellite",
            Optimization::Aggressive => "aggressive",
            Optimization::Conservative => "conservative",
        }
    }
    pub fn by_name(s: &str) -> Option<Optimization> {
        Some(match s {
            "normal" | "default" => Optimization::Normal,
            "high-latency" => Optimization::HighLatency,
            "satellite" => Optimization::Satellite,
            "aggressive" => Optimization::Aggressive,
            "conservative" => Optimization::Conservative,
            _ => return None,
        })
    }
    /// The TCP timeouts this optimization sets (pfctl's hints).
    pub fn timeouts(self) -> [(Timeout, u32); 7] {
        use Timeout::*;
        let v: [u32; 7] = match self {
            Optimization::Normal => [120, 30, 86400, 900, 45, 90, 30],
            Optimization::HighLatency | Optimization::Satellite => [180, 35, 86400, 905, 50, 95, 60],
            Optimization::Conservative => [3600, 900, 432000, 3600, 600, 270, 60],
            Optimization::Aggressive => [30, 5, 18000, 60, 30, 30, 10],
        };
        let t = [TcpFirst, TcpOpening, TcpEstablished, TcpClosing, TcpFinWait, TcpClosed, TcpTsDiff];
        std::array::from_fn(|i| (t[i], v[i]))
    }
}

/// `pfctl -o`: what the ruleset optimizer does before loading or printing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OptLevel {
    None,
    #[default]
    Basic,
    Profile,
}

impl OptLevel {
    pub fn name(self) -> &'static str {
        match self {
            OptLevel::None => "none",
            OptLevel::Basic => "basic",
            OptLevel::Profile => "profile",
        }
    }
}

/// The effective global options after all `set` lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// Interfaces (or groups) pf does not filter on.
    pub skip: Vec<String>,
    pub block_policy: BlockPolicy,
    pub state_policy: StatePolicy,
    /// Limits set explicitly; others are `Limit::default_value`.
    pub limits: Vec<(Limit, u32)>,
    /// Timeouts set explicitly (including by `set optimization`).
    pub timeouts: Vec<(Timeout, u32)>,
    pub loginterface: Option<String>,
    pub optimization: Optimization,
    pub ruleset_optimization: Option<OptLevel>,
    pub hostid: Option<u32>,
    /// `set debug`: a syslog level (0..=7).
    pub debug: Option<u8>,
    pub reassemble: Reassemble,
}

impl Options {
    pub fn limit(&self, l: Limit) -> u32 {
        self.limits.iter().rev().find(|(k, _)| *k == l).map(|&(_, v)| v).unwrap_or(l.default_value())
    }
    pub fn timeout(&self, t: Timeout) -> u32 {
        self.timeouts.iter().rev().find(|(k, _)| *k == t).map(|&(_, v)| v).unwrap_or(t.default_secs())
    }
    pub(crate) fn set_timeout(&mut self, t: Timeout, v: u32) {
        self.timeouts.retain(|(k, _)| *k != t);
        self.timeouts.push((t, v));
    }
    pub(crate) fn set_limit(&mut self, l: Limit, v: u32) {
        self.limits.retain(|(k, _)| *k != l);
        self.limits.push((l, v));
    }
}

/// One `set` line as written (for printing, in source order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOption {
    Skip(Vec<String>),
    BlockPolicy(BlockPolicy),
    StatePolicy(StatePolicy),
    Limit(Limit, u32),
    Timeout(Timeout, u32),
    LogInterface(Option<String>),
    Optimization(Optimization),
    RulesetOptimization(OptLevel),
    HostId(u32),
    /// `set debug` as written (pfctl prints it back unchanged).
    Debug(String),
    Reassemble(Reassemble),
}

/// What `pfctl -nv` prints before the rules, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderItem {
    /// A macro definition: name and value (pfctl's varset prints
    /// `name = "value"`).
    Macro(String, String),
    Set(SetOption),
    /// Index into `Ruleset::tables`.
    Table(usize),
}

/// What an `anchor` rule calls (pf.conf(5) ANCHORS; pfctl's
/// `pf_anchor_setup`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnchorCall {
    /// What pfctl prints after `anchor` (`pfctl_load_rule`'s name): the
    /// name as written for an anchor without braces (`"/1/2/3"`,
    /// `"ftp-proxy/*"`), the last path component for an inline one, and
    /// `_N` (printed as a bare `anchor`) for an unnamed inline one.
    pub name: String,
    /// The anchor's absolute path, without a leading `/` or a trailing
    /// `/*`.
    pub path: String,
    /// `…/*`: every child of `path` is evaluated, not `path` itself.
    pub wildcard: bool,
    /// Written with a `{ … }` body; its rules are `Ruleset::anchors`
    /// under `path` and load with the ruleset.
    pub inline: bool,
}

impl AnchorCall {
    /// An unnamed inline anchor (`anchor { … }`) has a reserved `_N` name.
    pub fn is_unnamed(&self) -> bool {
        self.name.rsplit('/').next().is_some_and(|n| n.starts_with('_'))
    }
}

/// The rules of one inline anchor (`anchor "name" { … }`), by path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnchorBody {
    /// Absolute path (`foo/bar`).
    pub path: String,
    pub rules: Vec<Rule>,
}

/// `load anchor NAME from FILE`: loaded with (and after) the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadAnchor {
    /// Absolute path of the anchor.
    pub path: String,
    pub file: String,
    pub line: usize,
    /// The file, parsed for the anchor.
    pub ruleset: Box<Ruleset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// The file name errors are reported against.
    pub filename: String,
    /// The anchor this ruleset is for (`pfctl -a`); empty: the main one.
    pub anchor_path: String,
    /// Inline anchors' rules, in the order their `{` were read; nested ones
    /// too (each rule's `AnchorCall::path` finds its body).
    pub anchors: Vec<AnchorBody>,
    /// `load anchor` lines, in order.
    pub load_anchors: Vec<LoadAnchor>,
    pub options: Options,
    pub tables: Vec<TableDef>,
    pub rules: Vec<Rule>,
    /// Macros as defined, in order (for printing and debugging).
    pub macros: Vec<(String, String)>,
    /// Macro definitions, `set` lines and table definitions in source order.
    pub header: Vec<HeaderItem>,
    /// `queue` definitions, in the order pfctl loads (and prints) them.
    pub queues: Vec<QueueDef>,
}

impl Ruleset {
    pub fn table(&self, name: &str) -> Option<&TableDef> {
        // a table defined twice is its last definition (pfr_ina_define
        // replaces the shadow table)
        self.tables.iter().rev().find(|t| t.name == name && t.anchor == self.anchor_path)
    }

    /// The rules of the inline anchor at `path`.
    pub fn anchor_body(&self, path: &str) -> Option<&AnchorBody> {
        self.anchors.iter().find(|b| b.path == path)
    }
}
