//! Source tracking: pf's `pf_src_node` tree (pf.c `pf_insert_src_node`,
//! `pf_src_connlimit`, `pf_src_tree_remove_state`,
//! `pf_purge_expired_src_nodes`; `pfctl -sS` as pfctl's `print_src_node`).
//!
//! A rule with `source-track` (or a `max-src-*` option, which turns it
//! on) gives every state it creates a node for the state's source
//! address: one per rule (`source-track rule`, and every rule with
//! `max-src-nodes`, `max-src-conn` or `max-src-conn-rate`) or one shared
//! by every rule tracking globally. The node counts the states that
//! refer to it (`max-src-states`), the TCP connections among them that
//! completed their handshake (`max-src-conn`) and the rate at which they
//! did (`max-src-conn-rate`); a rule counts its nodes (`max-src-nodes`)
//! and `set limit src-nodes` bounds them all. Once no state refers to a
//! node it expires after `src.track` seconds.
//!
//! The table is sharded by address: the data path takes one shard's lock
//! when a state is created or completes a TCP handshake, never per
//! packet, and never a table-wide lock. Removals happen on the control
//! thread (state purge), which also expires nodes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::state::{srcflags, StateData, DIR_IN};
use crate::table::Table;

/// Shards of the node table (a power of two).
const SHARDS: usize = 16;
/// pf's `PF_THRESHOLD_MULT`: connection rates are counted in thousandths.
const THRESHOLD_MULT: u64 = 1000;
const NS: u64 = 1_000_000_000;

/// The limits counted in pf's `lcounters` that source tracking hits.
pub const LCNT_SRCSTATES: usize = 1;
pub const LCNT_SRCNODES: usize = 2;
pub const LCNT_SRCCONN: usize = 3;
pub const LCNT_SRCCONNRATE: usize = 4;
pub const LCNT_OVERLOAD_TABLE: usize = 5;
pub const LCNT_OVERLOAD_FLUSH: usize = 6;

/// `overload <table> [flush [global]]`.
pub struct Overload {
    pub table: Arc<Table>,
    pub flush: bool,
    pub flush_global: bool,
}

/// What one rule asks of source tracking, compiled. Nodes of the rule
/// hold it, so a node outlives a reload of the ruleset with its rule's
/// limits, as pf keeps a rule referred to by nodes.
pub struct SrcRule {
    /// (ruleset generation, rule number): the rule's identity.
    pub gen: u32,
    pub nr: u32,
    /// The rule tracks its states' sources (`source-track`, `max-src-*`;
    /// pf's PFRULE_SRCTRACK). A rule with only a `sticky-address` pool
    /// has nodes of that pool's kind alone.
    pub track: bool,
    /// `source-track global`: one node per address for every rule
    /// tracking globally.
    pub global: bool,
    pub max_src_nodes: Option<u32>,
    pub max_src_states: Option<u32>,
    pub max_src_conn: Option<u32>,
    /// `max-src-conn-rate N/S`.
    pub max_src_conn_rate: Option<(u32, u32)>,
    pub overload: Option<Overload>,
    /// Nodes of this rule in the table (pf's `rule->src_nodes`).
    pub nodes: AtomicU32,
}

impl SrcRule {
    /// The key of this rule's node of `kind` for `addr` (a `sticky-address`
    /// pool's nodes are always the rule's own).
    pub fn key_of(&self, kind: u8, addr: IpAddr) -> NodeKey {
        let rule = if self.global && kind == SN_NONE { GLOBAL } else { rule_word(self.gen, self.nr) };
        NodeKey { addr, rule, kind }
    }

    /// The key of this rule's source-tracking node for `addr`.
    pub fn key(&self, addr: IpAddr) -> NodeKey {
        self.key_of(SN_NONE, addr)
    }
}

/// pf's `pf_sn_types`: a node tracks a source for the rule's limits
/// (`PF_SN_NONE`), or keeps the address a `sticky-address` pool gave it
/// (`PF_SN_NAT`, `PF_SN_RDR` for the rule's nat-to and rdr-to pools,
/// `PF_SN_ROUTE` for route-to/reply-to/dup-to).
pub const SN_NONE: u8 = 0;
pub const SN_NAT: u8 = 1;
pub const SN_RDR: u8 = 2;
pub const SN_ROUTE: u8 = 3;

/// The rule part of a node's key for a global node.
const GLOBAL: u64 = u64::MAX;

fn rule_word(gen: u32, nr: u32) -> u64 {
    (gen as u64) << 32 | nr as u64
}

/// A node's identity: the source address and its rule (or global).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeKey {
    pub addr: IpAddr,
    rule: u64,
    /// `SN_NONE` or `SN_ROUTE`.
    pub kind: u8,
}

impl NodeKey {
    /// The node a state refers to, if it has one: its source (the key's
    /// first address for an inbound state, the second for an outbound
    /// one) and its rule.
    pub fn of_state(st: &StateData) -> Option<NodeKey> {
        if st.src_flags & srcflags::SRC_NODE == 0 {
            return None;
        }
        let addr = source_of(st);
        let rule =
            if st.src_flags & srcflags::SRC_GLOBAL != 0 { GLOBAL } else { rule_word(st.ruleset_gen, st.rule_nr) };
        Some(NodeKey { addr, rule, kind: SN_NONE })
    }

    /// The `sticky-address` node of the state's routing pool, if it has one.
    pub fn route_of_state(st: &StateData) -> Option<NodeKey> {
        if st.src_flags & srcflags::SRC_ROUTE == 0 {
            return None;
        }
        Some(NodeKey { addr: source_of(st), rule: rule_word(st.ruleset_gen, st.rule_nr), kind: SN_ROUTE })
    }

    /// The `sticky-address` node of kind `kind` that the translation rule
    /// (`gen`, `nr`) keeps for `addr` (`crate::xlhold` remembers it for
    /// the state).
    pub fn of_rule(gen: u32, nr: u32, kind: u8, addr: IpAddr) -> NodeKey {
        NodeKey { addr, rule: rule_word(gen, nr), kind }
    }
}

/// A state's source address (the key's first address for an inbound
/// state, the second for an outbound one), of the key's family.
fn source_of(st: &StateData) -> IpAddr {
    let a = if st.direction == DIR_IN { st.key.addr[0] } else { st.key.addr[1] };
    match st.key.af {
        crate::addr::Af::Inet => IpAddr::V4(a.v4()),
        crate::addr::Af::Inet6 => IpAddr::V6(a.v6()),
    }
}

/// pf's `pf_threshold`: a count in thousandths that decays linearly over
/// `seconds` (`pf_add_threshold`). Also a rule's `max-pkt-rate`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Threshold {
    limit: u64,
    seconds: u64,
    count: u64,
    last: u64,
}

impl Threshold {
    pub(crate) fn new(limit: u32, seconds: u32, now_s: u64) -> Threshold {
        Threshold { limit: limit as u64 * THRESHOLD_MULT, seconds: seconds as u64, count: 0, last: now_s }
    }

    pub(crate) fn add(&mut self, now_s: u64) {
        let diff = now_s.saturating_sub(self.last);
        if diff >= self.seconds {
            self.count = 0;
        } else {
            self.count -= self.count * diff / self.seconds;
        }
        self.count += THRESHOLD_MULT;
        self.last = now_s;
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.count > self.limit
    }
}

struct Node {
    /// The rule of a per-rule node; `None` for a global one.
    rule: Option<Arc<SrcRule>>,
    /// The address a `sticky-address` pool gave the source (pf's `raddr`).
    raddr: Option<IpAddr>,
    states: u32,
    conn: u32,
    conn_rate: Threshold,
    creation: u64,
    /// When the last state referring to it went (ns), and for how long
    /// it stays after that.
    released: Option<(u64, u64)>,
    /// Packets and bytes of the states gone (live states' are added for
    /// display).
    packets: u64,
    bytes: u64,
}

impl Node {
    fn expires_at(&self) -> Option<u64> {
        self.released.map(|(at, after)| at.saturating_add(after))
    }
}

/// Why a state could not have its node (`src-limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrcFail {
    /// The rule's `max-src-states` (`LCNT_SRCSTATES`).
    MaxStates,
    /// The rule's `max-src-nodes` (`LCNT_SRCNODES`).
    MaxNodes,
    /// `set limit src-nodes` (pf's pool is exhausted: no limit counter).
    Limit,
}

impl SrcFail {
    /// The `lcounters` entry pf counts, if any.
    pub fn lcounter(self) -> Option<usize> {
        match self {
            SrcFail::MaxStates => Some(LCNT_SRCSTATES),
            SrcFail::MaxNodes => Some(LCNT_SRCNODES),
            SrcFail::Limit => None,
        }
    }
}

/// What `pf_src_connlimit` decided about a connection that completed its
/// handshake.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConnLimit {
    /// `LCNT_*` entries to count, as bits (`1 << LCNT_*`): nothing is
    /// allocated on the data path.
    pub lcounters: u16,
    /// Over a limit: the state is killed and the packet dropped.
    pub bad: bool,
}

impl ConnLimit {
    /// The `LCNT_*` entries to count.
    pub fn lcounters(&self) -> impl Iterator<Item = usize> + '_ {
        (0..16).filter(|i| self.lcounters & 1 << i != 0)
    }

    fn count(&mut self, lcnt: usize) {
        self.lcounters |= 1 << lcnt;
    }
}

/// One node as `pfctl -sS` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub addr: IpAddr,
    /// The kind (`SN_*`) and, for a sticky pool's node, its address.
    pub kind: u8,
    pub raddr: Option<IpAddr>,
    pub states: u32,
    pub conn: u32,
    /// The connection rate's count in thousandths, and its seconds.
    pub rate: (u64, u64),
    pub creation: u64,
    /// Remaining time once no state refers to it (ns).
    pub expires_at: Option<u64>,
    pub packets: u64,
    pub bytes: u64,
    /// The rule's number for a per-rule node.
    pub rule: Option<u32>,
}

#[derive(Default)]
pub struct SrcNodes {
    shards: [Mutex<HashMap<NodeKey, Node>>; SHARDS],
    count: AtomicUsize,
    /// pf's `scounters` (`pfctl -si -v` "Source Tracking Table"):
    /// searches, inserts, removals.
    pub searches: AtomicU64,
    pub inserts: AtomicU64,
    pub removals: AtomicU64,
    /// `overload` insertions for the control thread (`take_overloads`):
    /// a table update waits for the table's readers, which a worker must
    /// not do.
    overloads: Mutex<Vec<(Arc<Table>, IpAddr)>>,
}

impl SrcNodes {
    pub fn new() -> SrcNodes {
        SrcNodes::default()
    }

    fn shard(&self, k: &NodeKey) -> &Mutex<HashMap<NodeKey, Node>> {
        let a = match k.addr {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(a) => {
                let w = u128::from(a);
                (w ^ w >> 32 ^ w >> 64 ^ w >> 96) as u32
            }
        };
        &self.shards[((a ^ a >> 16 ^ k.rule as u32) as usize) % SHARDS]
    }

    /// Nodes in the table.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// pf_insert_src_node, then the node's count of states (pf_create_state):
    /// finds or creates `addr`'s node for `rule` and counts one more state
    /// on it. `limit` is `set limit src-nodes`.
    pub fn acquire(&self, rule: &Arc<SrcRule>, addr: IpAddr, now: u64, limit: usize) -> Result<(), SrcFail> {
        self.acquire_kind(rule, SN_NONE, addr, None, now, limit)
    }

    /// `acquire` for a node of `kind`; a sticky pool's node keeps `raddr`.
    pub fn acquire_kind(
        &self,
        rule: &Arc<SrcRule>,
        kind: u8,
        addr: IpAddr,
        raddr: Option<IpAddr>,
        now: u64,
        limit: usize,
    ) -> Result<(), SrcFail> {
        let k = rule.key_of(kind, addr);
        let mut g = self.shard(&k).lock();
        self.searches.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = g.get_mut(&k) {
            if rule.max_src_states.is_some_and(|m| n.states >= m) {
                return Err(SrcFail::MaxStates);
            }
            n.states += 1;
            n.released = None;
            if raddr.is_some() {
                n.raddr = raddr;
            }
            return Ok(());
        }
        if rule.max_src_nodes.is_some_and(|m| rule.nodes.load(Ordering::Relaxed) >= m) {
            return Err(SrcFail::MaxNodes);
        }
        // Up only below the limit: `pfctl -si`'s src-nodes never reads
        // past it (pf_src_tree_pl's hard limit).
        if self.count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).is_err() {
            return Err(SrcFail::Limit);
        }
        let (n, s) = rule.max_src_conn_rate.unwrap_or((0, 0));
        g.insert(
            k,
            Node {
                rule: (!rule.global || kind != SN_NONE).then(|| rule.clone()),
                raddr,
                states: 1,
                conn: 0,
                conn_rate: Threshold::new(n, s, now / NS),
                creation: now,
                released: None,
                packets: 0,
                bytes: 0,
            },
        );
        if !rule.global || kind != SN_NONE {
            rule.nodes.fetch_add(1, Ordering::Relaxed);
        }
        self.inserts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// pf_map_addr with `sticky-address`: the address the source's node
    /// of `kind` keeps for `rule`, if it has one.
    pub fn sticky(&self, rule: &SrcRule, kind: u8, addr: IpAddr) -> Option<IpAddr> {
        let k = rule.key_of(kind, addr);
        self.searches.fetch_add(1, Ordering::Relaxed);
        self.shard(&k).lock().get(&k).and_then(|n| n.raddr)
    }

    /// Undoes `acquire` for a state that could not be inserted after all
    /// (pf_create_state's `csfailed`): a node left with no state goes at
    /// the next purge.
    pub fn undo(&self, rule: &SrcRule, addr: IpAddr, now: u64) {
        self.undo_kind(rule, SN_NONE, addr, now)
    }

    /// `undo` for a node of `kind`.
    pub fn undo_kind(&self, rule: &SrcRule, kind: u8, addr: IpAddr, now: u64) {
        self.undo_key(rule.key_of(kind, addr), now)
    }

    /// `undo` for the node `k`.
    pub fn undo_key(&self, k: NodeKey, now: u64) {
        let mut g = self.shard(&k).lock();
        if let Some(n) = g.get_mut(&k) {
            n.states = n.states.saturating_sub(1);
            if n.states == 0 {
                n.released = Some((now, 0));
            }
        }
    }

    fn forget(&self, n: &Node) {
        if let Some(r) = &n.rule {
            let _ = r.nodes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.removals.fetch_add(1, Ordering::Relaxed);
    }

    /// pf_src_connlimit: the state's TCP connection completed its
    /// handshake. Counts it on the node (and in its rate); over
    /// `max-src-conn` or `max-src-conn-rate` the state is to be killed,
    /// and with `overload` the source goes into the table (queued for the
    /// control thread) and, with `flush`, `flush` is called with the
    /// source and whether every rule's states go (`flush global`) to end
    /// the source's other states.
    pub fn connlimit(&self, st: &StateData, now: u64, flush: impl FnOnce(IpAddr, bool)) -> ConnLimit {
        let mut out = ConnLimit::default();
        let Some(k) = NodeKey::of_state(st) else { return out };
        let rule = {
            let mut g = self.shard(&k).lock();
            let Some(n) = g.get_mut(&k) else { return out };
            n.conn += 1;
            n.conn_rate.add(now / NS);
            let Some(rule) = n.rule.clone() else { return out };
            if rule.max_src_conn.is_some_and(|m| m < n.conn) {
                out.count(LCNT_SRCCONN);
                out.bad = true;
            }
            if rule.max_src_conn_rate.is_some() && n.conn_rate.exceeded() {
                out.count(LCNT_SRCCONNRATE);
                out.bad = true;
            }
            rule
        };
        if !out.bad {
            return out;
        }
        if let Some(o) = &rule.overload {
            out.count(LCNT_OVERLOAD_TABLE);
            self.overloads.lock().push((o.table.clone(), k.addr));
            if o.flush {
                out.count(LCNT_OVERLOAD_FLUSH);
                flush(k.addr, o.flush_global);
            }
        }
        out
    }

    /// Overload insertions waiting for the control thread.
    pub fn take_overloads(&self) -> Vec<(Arc<Table>, IpAddr)> {
        std::mem::take(&mut *self.overloads.lock())
    }

    /// pf_src_tree_remove_state: a state referring to a node is gone; the
    /// node stays `timeout_ns` after its last state.
    pub fn state_removed(&self, st: &StateData, now: u64, timeout_ns: u64) {
        for k in [NodeKey::of_state(st), NodeKey::route_of_state(st)].into_iter().flatten() {
            self.release(k, st, now, timeout_ns);
        }
    }

    /// `state_removed` for one node `k` the state referred to.
    pub fn release(&self, k: NodeKey, st: &StateData, now: u64, timeout_ns: u64) {
        let mut g = self.shard(&k).lock();
        let Some(n) = g.get_mut(&k) else { return };
        if k.kind == SN_NONE && st.src_flags & srcflags::TCP_EST != 0 {
            n.conn = n.conn.saturating_sub(1);
        }
        n.packets += st.packets[0] + st.packets[1];
        n.bytes += st.bytes[0] + st.bytes[1];
        n.states = n.states.saturating_sub(1);
        if n.states == 0 {
            n.released = Some((now, timeout_ns));
        }
    }

    /// pf_purge_expired_src_nodes: removes the nodes no state refers to
    /// whose time is up; returns how many.
    pub fn purge(&self, now: u64) -> usize {
        let mut removed = 0;
        for s in &self.shards {
            let mut g = s.lock();
            g.retain(|_, n| {
                let keep = n.states > 0 || n.expires_at().is_none_or(|t| t > now);
                if !keep {
                    self.forget(n);
                    removed += 1;
                }
                keep
            });
        }
        removed
    }

    /// DIOCKILLSRCNODES (`pfctl -K host [-K host2]`): removes the nodes
    /// of `addr` whose sticky address is `raddr` (with no `-K host2`, pf
    /// matches the nodes that have none); the states referring to them
    /// live on without them (the caller detaches them). Returns the keys
    /// removed.
    pub fn kill(&self, addr: IpAddr, raddr: Option<IpAddr>) -> Vec<NodeKey> {
        let mut keys = vec![];
        for s in &self.shards {
            let mut g = s.lock();
            g.retain(|k, n| {
                let hit = k.addr == addr && n.raddr == raddr.filter(|a| !a.is_unspecified());
                if hit {
                    self.forget(n);
                    keys.push(*k);
                }
                !hit
            });
        }
        keys
    }

    /// DIOCCLRSRCNODES (`pfctl -F Sources`): removes every node; returns
    /// how many.
    pub fn clear(&self) -> usize {
        let mut n = 0;
        for s in &self.shards {
            let mut g = s.lock();
            for (_, node) in g.drain() {
                self.forget(&node);
                n += 1;
            }
        }
        n
    }

    /// Every node (`pfctl -sS`), sorted by address then rule; `live` adds
    /// the packets and bytes of the live states referring to each.
    pub fn snapshot(&self, live: &HashMap<NodeKey, (u64, u64)>) -> Vec<NodeView> {
        let mut v: Vec<(NodeKey, NodeView)> = vec![];
        for s in &self.shards {
            for (k, n) in s.lock().iter() {
                let (p, b) = live.get(k).copied().unwrap_or((0, 0));
                v.push((
                    *k,
                    NodeView {
                        addr: k.addr,
                        kind: k.kind,
                        raddr: n.raddr,
                        states: n.states,
                        conn: n.conn,
                        rate: (n.conn_rate.count, n.conn_rate.seconds),
                        creation: n.creation,
                        expires_at: if n.states == 0 { n.expires_at() } else { None },
                        packets: n.packets + p,
                        bytes: n.bytes + b,
                        rule: n.rule.as_ref().map(|r| r.nr),
                    },
                ));
            }
        }
        v.sort_by_key(|(k, _)| (k.addr, k.rule, k.kind));
        v.into_iter().map(|(_, n)| n).collect()
    }
}

/// `HH:MM:SS` of a number of seconds, as print_src_node's `%.2u`.
fn hms(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// pfctl's `print_src_node`: one node, with `-v` a second line.
pub fn print_node(n: &NodeView, now: u64, verbose: u8) -> String {
    let raddr = match (n.raddr, n.kind) {
        (Some(a), SN_NAT) => format!(" nat-to {a}"),
        (Some(a), SN_RDR) => format!(" rdr-to {a}"),
        (Some(a), SN_ROUTE) => format!(" route-to {a}"),
        (Some(a), kind) => format!(" ??? ({kind}) {a}"),
        _ => String::new(),
    };
    let mut s = format!(
        "{}{raddr} ( states {}, connections {}, rate {}.{}/{}s )\n",
        n.addr,
        n.states,
        n.conn,
        n.rate.0 / 1000,
        (n.rate.0 % 1000) / 100,
        n.rate.1
    );
    if verbose > 0 {
        s += &format!("   age {}", hms(now.saturating_sub(n.creation) / NS));
        if n.states == 0 {
            let left = n.expires_at.map_or(0, |t| t.saturating_sub(now) / NS);
            s += &format!(", expires in {}", hms(left));
        }
        s += &format!(", {} pkts, {} bytes", n.packets, n.bytes);
        if let Some(nr) = n.rule {
            s += &format!(", rule {nr}");
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{tcps, StateKey, DIR_OUT};
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 3));
    const S: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));
    const SEC: u64 = NS;

    fn rule(nr: u32) -> SrcRule {
        SrcRule {
            gen: 1,
            nr,
            track: true,
            global: false,
            max_src_nodes: None,
            max_src_states: None,
            max_src_conn: None,
            max_src_conn_rate: None,
            overload: None,
            nodes: AtomicU32::new(0),
        }
    }

    /// An inbound TCP state of `r` from `src`.
    fn state(r: &SrcRule, src: IpAddr, sport: u16) -> StateData {
        let mut st = StateData {
            key: StateKey {
                addr: [src.into(), S.into()],
                port: [sport, 80],
                proto: 6,
                af: crate::addr::Af::Inet,
                rtable: 0,
            },
            direction: DIR_IN,
            rule_nr: r.nr,
            ruleset_gen: r.gen,
            src_flags: srcflags::SRC_NODE | if r.global { srcflags::SRC_GLOBAL } else { 0 },
            ..StateData::default()
        };
        st.src.state = tcps::ESTABLISHED;
        st.dst.state = tcps::ESTABLISHED;
        st
    }

    #[test]
    fn a_node_counts_its_states_and_expires_src_track_after_the_last() {
        let t = SrcNodes::new();
        let r = Arc::new(rule(3));
        t.acquire(&r, A, 0, 100).unwrap();
        t.acquire(&r, A, 0, 100).unwrap();
        t.acquire(&r, B, 0, 100).unwrap();
        assert_eq!((t.len(), r.nodes.load(Ordering::Relaxed)), (2, 2));
        let v = t.snapshot(&HashMap::new());
        assert_eq!((v[0].addr, v[0].states, v[0].rule), (A, 2, Some(3)));
        // Both of A's states go at 10 s; its node stays src.track (30 s).
        let mut st = state(&r, A, 1000);
        st.packets = [3, 2];
        st.bytes = [300, 200];
        t.state_removed(&st, 10 * SEC, 30 * SEC);
        t.state_removed(&state(&r, A, 1001), 10 * SEC, 30 * SEC);
        assert_eq!(t.purge(39 * SEC), 0);
        let v = t.snapshot(&HashMap::new());
        assert_eq!((v[0].states, v[0].expires_at, v[0].packets, v[0].bytes), (0, Some(40 * SEC), 5, 500));
        assert_eq!(
            print_node(&v[0], 39 * SEC, 1),
            "10.0.1.2 ( states 0, connections 0, rate 0.0/0s )\n   age 00:00:39, expires in 00:00:01, 5 pkts, 500 bytes, rule 3\n"
        );
        assert_eq!(t.purge(40 * SEC), 1);
        assert_eq!((t.len(), r.nodes.load(Ordering::Relaxed)), (1, 1));
        assert_eq!(t.removals.load(Ordering::Relaxed), 1);
        // A new state before expiry keeps the node.
        t.state_removed(&state(&r, B, 1), 50 * SEC, 30 * SEC);
        t.acquire(&r, B, 60 * SEC, 100).unwrap();
        assert_eq!(t.purge(100 * SEC), 0);
    }

    #[test]
    fn max_src_states_refuses_the_next_state_of_the_source_only() {
        let t = SrcNodes::new();
        let r = Arc::new(SrcRule { max_src_states: Some(2), ..rule(0) });
        t.acquire(&r, A, 0, 100).unwrap();
        t.acquire(&r, A, 0, 100).unwrap();
        assert_eq!(t.acquire(&r, A, 0, 100), Err(SrcFail::MaxStates));
        t.acquire(&r, B, 0, 100).unwrap();
        t.state_removed(&state(&r, A, 1), 0, 0);
        t.acquire(&r, A, 0, 100).unwrap();
    }

    #[test]
    fn max_src_nodes_and_the_src_nodes_limit_refuse_new_sources() {
        let t = SrcNodes::new();
        let r = Arc::new(SrcRule { max_src_nodes: Some(1), ..rule(0) });
        t.acquire(&r, A, 0, 100).unwrap();
        assert_eq!(t.acquire(&r, B, 0, 100), Err(SrcFail::MaxNodes));
        t.acquire(&r, A, 0, 100).unwrap();
        let r2 = Arc::new(rule(1));
        assert_eq!(t.acquire(&r2, B, 0, 1), Err(SrcFail::Limit));
        assert_eq!(SrcFail::Limit.lcounter(), None);
        t.acquire(&r2, B, 0, 2).unwrap();
        assert_eq!(t.len(), 2);
        // A failed state insert gives the fresh node back.
        t.undo(&r2, B, 5);
        assert_eq!(t.purge(5), 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn global_nodes_are_shared_by_the_rules_tracking_globally() {
        let t = SrcNodes::new();
        let g1 = Arc::new(SrcRule { global: true, max_src_states: Some(3), ..rule(0) });
        let g2 = Arc::new(SrcRule { global: true, max_src_states: Some(2), ..rule(1) });
        t.acquire(&g1, A, 0, 100).unwrap();
        t.acquire(&g2, A, 0, 100).unwrap();
        // Both count toward each rule's own limit.
        assert_eq!(t.acquire(&g2, A, 0, 100), Err(SrcFail::MaxStates));
        t.acquire(&g1, A, 0, 100).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.snapshot(&HashMap::new())[0].rule, None);
        // The state's own flags find the shared node.
        t.state_removed(&state(&g2, A, 1), 0, 0);
        assert_eq!(t.snapshot(&HashMap::new())[0].states, 2);
    }

    #[test]
    fn max_src_conn_counts_completed_handshakes_and_overloads() {
        let t = SrcNodes::new();
        let table = Arc::new(Table::new("bad"));
        let r = Arc::new(SrcRule {
            max_src_conn: Some(2),
            overload: Some(Overload { table: table.clone(), flush: true, flush_global: false }),
            ..rule(0)
        });
        let mut flushed = vec![];
        for i in 0..2 {
            t.acquire(&r, A, 0, 100).unwrap();
            let out = t.connlimit(&state(&r, A, i), 0, |a, g| flushed.push((a, g)));
            assert!(!out.bad);
        }
        t.acquire(&r, A, 0, 100).unwrap();
        let out = t.connlimit(&state(&r, A, 2), 0, |a, g| flushed.push((a, g)));
        assert!(out.bad);
        assert_eq!(out.lcounters().collect::<Vec<_>>(), [LCNT_SRCCONN, LCNT_OVERLOAD_TABLE, LCNT_OVERLOAD_FLUSH]);
        assert_eq!(flushed, [(A, false)]);
        let o = t.take_overloads();
        assert_eq!(o.len(), 1);
        assert!(Arc::ptr_eq(&o[0].0, &table) && o[0].1 == A);
        // A closed connection counts no more.
        let mut st = state(&r, A, 0);
        st.src_flags |= srcflags::TCP_EST;
        t.state_removed(&st, 0, 0);
        assert_eq!(t.snapshot(&HashMap::new())[0].conn, 2);
    }

    #[test]
    fn max_src_conn_rate_decays_over_its_seconds() {
        let t = SrcNodes::new();
        let r = Arc::new(SrcRule { max_src_conn_rate: Some((3, 10)), ..rule(0) });
        let conn = |at: u64| {
            t.acquire(&r, A, at, 100).unwrap();
            t.connlimit(&state(&r, A, 1), at, |_, _| {}).bad
        };
        // 3 in 10 s are allowed, a 4th in the same second is over.
        assert!(!conn(0) && !conn(0) && !conn(0));
        assert!(conn(0));
        let v = t.snapshot(&HashMap::new());
        assert_eq!(print_node(&v[0], 0, 0), "10.0.1.2 ( states 4, connections 4, rate 4.0/10s )\n");
        // Half the window later the count has decayed by half (4 -> 2) + 1.
        assert!(!conn(5 * SEC));
        assert_eq!(t.snapshot(&HashMap::new())[0].rate, (3000, 10));
        // A whole window later it starts over.
        assert!(!conn(20 * SEC));
        assert_eq!(t.snapshot(&HashMap::new())[0].rate.0, 1000);
    }

    #[test]
    fn an_outbound_state_tracks_its_second_address_and_kill_removes_nodes() {
        let t = SrcNodes::new();
        let r = Arc::new(rule(0));
        t.acquire(&r, A, 0, 100).unwrap();
        let mut st = state(&r, S, 1);
        st.direction = DIR_OUT;
        st.key.addr = [S.into(), A.into()];
        assert_eq!(NodeKey::of_state(&st), Some(r.key(A)));
        let mut none = st;
        none.src_flags = 0;
        assert_eq!(NodeKey::of_state(&none), None);
        assert_eq!(t.kill(B, None), vec![]);
        assert_eq!(t.kill(A, None), vec![r.key(A)]);
        assert!(t.is_empty());
        assert_eq!(r.nodes.load(Ordering::Relaxed), 0);
        // The state's removal later finds no node and changes nothing.
        t.state_removed(&st, 0, 0);
        assert!(t.is_empty());
    }

    #[test]
    fn a_sticky_node_keeps_the_address_its_pool_gave_the_source() {
        let t = SrcNodes::new();
        // A rule with a sticky route pool and no source tracking.
        let r = Arc::new(SrcRule { track: false, ..rule(2) });
        let hop = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3));
        assert_eq!(t.sticky(&r, SN_ROUTE, A), None);
        t.acquire_kind(&r, SN_ROUTE, A, Some(hop), 0, 100).unwrap();
        assert_eq!(t.sticky(&r, SN_ROUTE, A), Some(hop));
        assert_eq!(t.sticky(&r, SN_ROUTE, B), None);
        assert_eq!(t.sticky(&r, SN_NONE, A), None, "no source-tracking node");
        t.acquire_kind(&r, SN_ROUTE, A, Some(hop), 0, 100).unwrap();
        let v = t.snapshot(&HashMap::new());
        assert_eq!(print_node(&v[0], 0, 0), "10.0.1.2 route-to 10.0.2.3 ( states 2, connections 0, rate 0.0/0s )\n");
        // The state's flag finds the node.
        let mut st = state(&r, A, 1);
        st.src_flags = srcflags::SRC_ROUTE;
        assert_eq!(NodeKey::route_of_state(&st), Some(r.key_of(SN_ROUTE, A)));
        assert_eq!(NodeKey::of_state(&st), None);
        t.state_removed(&st, 0, 0);
        assert_eq!(t.snapshot(&HashMap::new())[0].states, 1);
        // -K A alone matches nodes without a sticky address; -K A -K hop this one.
        assert_eq!(t.kill(A, None), vec![]);
        assert_eq!(t.kill(A, Some(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)))), vec![]);
        assert_eq!(t.kill(A, Some(hop)), vec![r.key_of(SN_ROUTE, A)]);
        assert!(t.is_empty());
    }
}
