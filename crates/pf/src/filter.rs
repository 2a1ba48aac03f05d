//! `Pf`: the packet filter the stack calls (`PacketFilter`) and the
//! control API `softnet pfctl` uses.
//!
//! ```text
//! let pf = Pf::new();                                   // enabled, empty ruleset (pass all)
//! pf.load(&ruleset, &resolver)?;                        // pfctl -f: atomic swap, states kept
//! stack.set_filter(Some(Box::new(pf.clone())));         // the stack's hook
//! pf.set_pflog(Some(queue.clone()));                    // pflog: daemon drains `queue` to a pcap file
//! pf.set_if_lookup(Arc::new(move |name| …));            // (if) addresses of other interfaces
//! pf.set_if_ref_lookup(Arc::new(move |name| …));        // route-to (if addr): the interface
//! pf.set_route_lookup(Arc::new(move |rtable, addr| …));  // no-route, urpf-failed
//! pf.show_states(0, now)                            // pfctl -ss
//! ```

use std::cell::{Cell, UnsafeCell};
use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::addr::PfAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use siphasher::sip::SipHasher13;
use softnet_core::filter::{BufferSource, Decision, Direction, FilterReplies, PacketFilter, Verdict};
use softnet_core::iface::{IfAddr, Interface, WeakIf};
use softnet_core::packet::PacketBuf;
use softnet_core::percpu::{Counter, PerWorker};
use softnet_core::time::Instant;

use crate::batch;
use crate::compile::{compile_tree, tidx, CompileCx, CompileError, CompiledRuleset, TagNames, TimeoutSets};
use crate::eval::{self, Cx, Pd, LCNT_COUNT, REASON_COUNT};
use crate::model::{HeaderItem, Limit, Ruleset, SetOption};
use crate::names::Timeout;
use crate::pflog::PflogQueue;
use crate::resolver::IfResolver;
use crate::state::{StateData, StateTable, HINT_BATCH, TIMEOUT_PURGE};

/// Per-worker pf counters (`pfctl -si`).
#[derive(Default)]
pub struct PfCounters {
    pub reasons: [Counter; REASON_COUNT],
    /// pf's `lcounters` (`pfctl -si -v` "Limit Counters", `LCNT_*`).
    pub lcounters: [Counter; LCNT_COUNT],
    pub searches: Counter,
    /// `set loginterface` packets: [in pass, in block, out pass, out block].
    pub logif_packets: [Counter; 4],
    /// `set loginterface` bytes, passed and blocked: [in, out].
    pub logif_bytes: [Counter; 2],
}

/// Sums of the `set loginterface` counters, in `PfCounters` order:
/// packets (4) then bytes (2).
pub(crate) type LogIfSums = [u64; 6];

/// Finds an interface's current addresses by name (for `(if)` rules).
pub type IfLookup = Arc<dyn Fn(&str) -> Option<Vec<IfAddr>> + Send + Sync>;
/// The same for an interface's IPv6 addresses (`(if)` in IPv6 pools).
pub type IfLookup6 = Arc<dyn Fn(&str) -> Option<Vec<softnet_core::iface::If6Addr>> + Send + Sync>;

/// Finds an interface by name (for `route-to (if addr)`): a weak
/// reference, which fails once that interface is destroyed.
pub type IfRefLookup = Arc<dyn Fn(&str) -> Option<WeakIf> + Send + Sync>;
/// The name of the interface with an index (a packet's receiving
/// interface, for `received-on`); `None` when there is none.
pub type IfNameLookup = Arc<dyn Fn(softnet_core::iface::IfIndex) -> Option<String> + Send + Sync>;

/// Finds the route for an address in a routing table, as `pf_routable`'s
/// `rtalloc`: `None` when the table has no route for it (or no such
/// table), else the interface the route goes out of. Reject and blackhole
/// routes are routes (OpenBSD's `rtalloc` returns them too).
pub type RouteLookup = Arc<dyn Fn(u16, Ipv4Addr) -> Option<WeakIf> + Send + Sync>;

pub struct PfInner {
    pub(crate) enabled: AtomicBool,
    /// Clock time (ns) when pf was last enabled or disabled.
    pub(crate) since: AtomicU64,
    pub(crate) ruleset: ArcSwap<CompiledRuleset>,
    pub(crate) states: StateTable,
    pub(crate) tags: TagNames,
    pub(crate) timeout_sets: TimeoutSets,
    pub(crate) counters: PerWorker<PfCounters>,
    /// pf's `hostid`: random at start, or the last `set hostid`; new
    /// states take it as their creator id.
    pub(crate) hostid: AtomicU32,
    pub(crate) frags: crate::frag::FragCache,
    /// IPv6 fragments being reassembled (pf_reassemble6, `frag6.rs`).
    pub(crate) frags6: crate::frag6::FragCache6,
    /// Source-tracking nodes (`crate::srcnode`).
    pub(crate) srcnodes: crate::srcnode::SrcNodes,
    /// What translating states hold of their pools (`crate::xlhold`).
    pub(crate) xlholds: crate::xlhold::XlHolds,
    pub(crate) pflog: ArcSwapOption<PflogQueue>,
    pub(crate) if_lookup: ArcSwapOption<IfLookup>,
    pub(crate) if_lookup6: ArcSwapOption<IfLookup6>,
    pub(crate) if_ref_lookup: ArcSwapOption<IfRefLookup>,
    pub(crate) ifname_lookup: ArcSwapOption<IfNameLookup>,
    pub(crate) route_lookup: ArcSwapOption<RouteLookup>,
    /// pf_socket_lookup's way to the stack's sockets (`crate::divert`).
    pub(crate) socket_lookup: ArcSwapOption<crate::divert::SocketLookup>,
    /// Names of interfaces states are bound to (generation → name).
    ifnames: Mutex<HashMap<u32, String>>,
    gen: AtomicU32,
    iss_key: (u64, u64),
    /// Latest time seen by `tick`.
    last_now: AtomicU64,
    /// Serializes loads and flushes.
    pub(crate) load_lock: Mutex<()>,
    /// The interface `set loginterface` named last and the counters'
    /// sums when it was named: `-si` shows what came since.
    logif: Mutex<(Option<String>, LogIfSums)>,
    /// Tables created by `-T add` that no ruleset defines.
    pub(crate) extra: Mutex<crate::table::Tables>,
    /// This filter's identity for the workers' ruleset caches.
    id: u64,
    /// Moves (after the store) each time `ruleset` is replaced.
    rs_seq: AtomicU64,
    /// Replaced rulesets, freed by `tick` on the control thread once no
    /// worker's cache holds them.
    retired: Mutex<Vec<Arc<CompiledRuleset>>>,
}

/// A worker thread's handle on the ruleset in use: `ArcSwap::load` costs
/// a SeqCst store and a locked compare-exchange per call (a fifth of an
/// established packet's time); this costs a load of `rs_seq` and two
/// thread-local flag writes.
struct RulesetCache {
    pf: Cell<u64>,
    seq: Cell<u64>,
    /// A `RsRef` from this cache is alive: `rs` must not be replaced.
    busy: Cell<bool>,
    rs: UnsafeCell<Option<Arc<CompiledRuleset>>>,
}

thread_local! {
    static RS_CACHE: RulesetCache = const {
        RulesetCache { pf: Cell::new(0), seq: Cell::new(0), busy: Cell::new(false), rs: UnsafeCell::new(None) }
    };
}

static NEXT_PF_ID: AtomicU64 = AtomicU64::new(1);

/// The ruleset for one packet: this thread's cached one, or (re-entered,
/// or while the thread exits) a plain `ArcSwap` guard.
pub(crate) enum RsRef<'a> {
    Cached(&'a CompiledRuleset),
    Loaded(arc_swap::Guard<Arc<CompiledRuleset>>),
}

impl std::ops::Deref for RsRef<'_> {
    type Target = CompiledRuleset;
    fn deref(&self) -> &CompiledRuleset {
        match self {
            RsRef::Cached(rs) => rs,
            RsRef::Loaded(g) => g,
        }
    }
}

impl Drop for RsRef<'_> {
    fn drop(&mut self) {
        if let RsRef::Cached(_) = self {
            let _ = RS_CACHE.try_with(|c| c.busy.set(false));
        }
    }
}

impl PfInner {
    /// Replaces the ruleset; the old one is retired (freed later by `tick`).
    /// After a compile: the tables `-T add` made are in the tree now, and
    /// those it left out (no longer active) are gone.
    fn drop_extra_tables(&self, compiled: &CompiledRuleset) {
        self.extra.lock().retain(|k, t| t.is_active() && !compiled.tables.contains_key(k));
    }

    fn publish(&self, rs: CompiledRuleset) {
        let old = self.ruleset.swap(Arc::new(rs));
        self.rs_seq.fetch_add(1, Ordering::Release);
        self.retired.lock().push(old);
    }

    /// The ruleset in use, from this thread's cache when it is current.
    #[inline]
    pub(crate) fn ruleset_ref(&self) -> RsRef<'_> {
        let seq = self.rs_seq.load(Ordering::Acquire);
        let cached = RS_CACHE.try_with(|c| {
            if c.busy.get() {
                return None;
            }
            // SAFETY: `rs` is only touched here, on its own thread, and
            // never while a reference handed out from it is alive (`busy`).
            let slot = unsafe { &mut *c.rs.get() };
            if c.pf.get() != self.id || c.seq.get() != seq || slot.is_none() {
                // The old handle is dropped here; the retired list keeps
                // the ruleset itself until `tick` frees it.
                *slot = Some(self.ruleset.load_full());
                c.pf.set(self.id);
                c.seq.set(seq);
            }
            c.busy.set(true);
            slot.as_ref().map(Arc::as_ptr)
        });
        match cached {
            // SAFETY: the Arc in the cache is not replaced or dropped while
            // `busy` is set, which lasts until this `RsRef` is dropped.
            Ok(Some(p)) => RsRef::Cached(unsafe { &*p }),
            _ => RsRef::Loaded(self.ruleset.load()),
        }
    }
}

impl PfInner {
    /// The ruleset a hook call on `ifp` evaluates: `None` while pf is
    /// disabled or `set skip` names the interface (everything passes).
    #[inline]
    fn active_ruleset(&self, ifp: &Interface) -> Option<RsRef<'_>> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let rs = self.ruleset_ref();
        (!rs.is_skipped(ifp.name())).then_some(rs)
    }

    /// RFC 6528 initial sequence number for `modulate state`: a keyed hash
    /// of the connection plus a 4 µs clock.
    pub(crate) fn iss(&self, pd: &Pd, now: Instant) -> u32 {
        use std::hash::Hasher;
        let mut h = SipHasher13::new_with_keys(self.iss_key.0, self.iss_key.1);
        h.write(&pd.src.octets());
        h.write(&pd.dst.octets());
        h.write_u8(pd.af as u8);
        h.write_u16(pd.sport);
        h.write_u16(pd.dport);
        (h.finish() as u32).wrapping_add((now.as_nanos() / 4000) as u32)
    }

    /// Remembers the name of an interface states are bound to, by the
    /// generation the states record (`StateData::kif`).
    pub(crate) fn note_ifname(&self, ifp: &Interface) {
        self.ifnames.lock().entry(ifp.generation()).or_insert_with(|| ifp.name().to_string());
    }

    /// Addresses of interface `name`: the packet's own interface directly,
    /// others through the lookup the daemon installed.
    /// The interface called `name` (`ifp` itself when it is).
    pub(crate) fn if_ref(&self, name: &str, ifp: &Interface) -> Option<WeakIf> {
        if ifp.name() == name {
            return Some(ifp.weak());
        }
        let l = self.if_ref_lookup.load();
        l.as_ref().and_then(|f| f(name))
    }

    pub(crate) fn if_addrs(&self, name: &str, ifp: &Interface) -> Option<Vec<IfAddr>> {
        if ifp.name() == name {
            return Some(ifp.addrs().to_vec());
        }
        let l = self.if_lookup.load();
        l.as_ref().and_then(|f| f(name))
    }

    /// `if_addrs` for IPv6 addresses.
    pub(crate) fn if_addrs6(&self, name: &str, ifp: &Interface) -> Option<Vec<softnet_core::iface::If6Addr>> {
        if ifp.name() == name {
            return Some(ifp.inet6().addrs.clone());
        }
        let l = self.if_lookup6.load();
        l.as_ref().and_then(|f| f(name))
    }

    /// `pf_routable`: whether `addr` has a route in `rtable`; with `kif`,
    /// whether that route goes out `kif` (strict uRPF: the route back to
    /// the source leaves by the interface the packet came in on). `None`
    /// without a route lookup installed: nothing to tell.
    pub(crate) fn routable(&self, addr: Ipv4Addr, rtable: u16, kif: Option<&Interface>) -> Option<bool> {
        let l = self.route_lookup.load();
        let f = l.as_ref()?;
        let Some(out) = f(rtable, addr) else { return Some(false) };
        Some(kif.is_none_or(|ifp| out == ifp.weak()))
    }

    /// When a state expires (ns), as `pf_state_expires`, adaptive
    /// timeouts included. 0: already.
    pub(crate) fn expires_at(&self, st: &StateData, rs: &CompiledRuleset) -> u64 {
        if st.timeout == TIMEOUT_PURGE {
            return 0;
        }
        let t = st.timeout as usize;
        let set = if st.timeout_set != 0 { Some(self.timeout_sets.get(st.timeout_set)) } else { None };
        let pick = |i: usize| set.map(|s| s[i]).filter(|v| *v != 0).unwrap_or(rs.opts.timeouts[i]);
        let mut timeout = pick(t) as u64;
        let start_rule = set.map(|s| s[tidx(Timeout::AdaptiveStart)]).unwrap_or(0);
        let (start, end, states) = if start_rule != 0 {
            let states =
                rs.state_rule(st.ruleset_gen, st.rule_nr).map(|r| r.states_cur.load(Ordering::Relaxed)).unwrap_or(0);
            // The rule's own end, 0 included (no adaptation), as pf_state_expires.
            (start_rule as u64, set.map(|s| s[tidx(Timeout::AdaptiveEnd)]).unwrap_or(0) as u64, states)
        } else {
            (
                rs.opts.timeout(Timeout::AdaptiveStart) as u64,
                rs.opts.timeout(Timeout::AdaptiveEnd) as u64,
                self.states.len() as u64,
            )
        };
        if end != 0 && states > start && start < end {
            if states >= end {
                return 0;
            }
            timeout = timeout * (end - states) / (end - start);
        }
        st.expire + timeout * 1_000_000_000
    }

    pub(crate) fn logif_sums(&self) -> LogIfSums {
        let c = &self.counters;
        let p = |i: usize| c.sum(|x| &x.logif_packets[i]);
        let b = |i: usize| c.sum(|x| &x.logif_bytes[i]);
        [p(0), p(1), p(2), p(3), b(0), b(1)]
    }

    /// `set loginterface` counters since the interface was named (`None`
    /// without one).
    pub(crate) fn logif_counters(&self) -> Option<(String, LogIfSums)> {
        let g = self.logif.lock();
        let name = g.0.clone()?;
        let now = self.logif_sums();
        Some((name, std::array::from_fn(|i| now[i].wrapping_sub(g.1[i]))))
    }

    fn state_removed(&self, idx: u32, st: &StateData, rs: &CompiledRuleset) {
        if let Some(r) = rs.state_rule(st.ruleset_gen, st.rule_nr) {
            let _ = r.states_cur.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
            if let (Some(rt), true) = (&r.route, st.rt != 0) {
                rt.released(self.states.cold(idx).rt_addr);
            }
        }
        use crate::state::srcflags::{SRC_NODE, SRC_ROUTE, XLATE};
        if st.src_flags & (SRC_NODE | SRC_ROUTE | XLATE) != 0 {
            // pf_src_tree_remove_state: the node stays the state's rule's
            // `src.track`, else the ruleset's.
            let i = tidx(Timeout::SrcTrack);
            let own = if st.timeout_set != 0 { self.timeout_sets.get(st.timeout_set)[i] } else { 0 };
            let secs = if own != 0 { own } else { rs.opts.timeouts[i] };
            let now = self.last_now.load(Ordering::Relaxed);
            self.srcnodes.state_removed(st, now, secs as u64 * 1_000_000_000);
            // pf_postprocess_addr: the nat-to/rdr-to pools' holds too.
            if st.src_flags & XLATE != 0 {
                for (which, h) in self.xlholds.take(st.id).into_iter().flat_map(|h| h.into_iter().enumerate()) {
                    if let Some(h) = h {
                        h.give_back(rs, which);
                        if let Some(k) = h.node {
                            self.srcnodes.release(k, st, now, secs as u64 * 1_000_000_000);
                        }
                    }
                }
            }
        }
    }

    /// pf_src_connlimit's `flush`: ends the states from `src` (of the
    /// state's rule, or of every rule with `global`), as pf does by
    /// setting their timeout to PFTM_PURGE; the purge removes them.
    pub(crate) fn flush_source(&self, st: &StateData, src: std::net::IpAddr, global: bool) -> usize {
        self.states.update_if(
            |o| {
                let from = if o.direction == crate::state::DIR_IN { o.key.addr[0] } else { o.key.addr[1] };
                let from = match o.key.af {
                    crate::addr::Af::Inet => std::net::IpAddr::V4(from.v4()),
                    crate::addr::Af::Inet6 => std::net::IpAddr::V6(from.v6()),
                };
                from == src && (global || (o.ruleset_gen, o.rule_nr) == (st.ruleset_gen, st.rule_nr))
            },
            |o| o.timeout = TIMEOUT_PURGE,
        )
    }
}

/// Interface groups as the running rules expanded them: what a flush,
/// which compiles the rules left again without asking the stack, uses.
struct KnownGroups(HashMap<String, Vec<String>>);

impl KnownGroups {
    fn of(rs: &CompiledRuleset) -> KnownGroups {
        KnownGroups(
            rs.rules.iter().filter_map(|r| r.ifm.as_ref()).map(|m| (m.name.clone(), m.members.clone())).collect(),
        )
    }
}

impl IfResolver for KnownGroups {
    fn interfaces(&self) -> Vec<String> {
        vec![]
    }
    fn addresses(&self, _ifname: &str) -> Vec<crate::resolver::IfAddr> {
        vec![]
    }
    fn is_loopback(&self, _ifname: &str) -> bool {
        false
    }
    fn group_members(&self, group: &str) -> Vec<String> {
        self.0.get(group).cloned().unwrap_or_default()
    }
}

/// The packet filter. Cheap to clone (a handle): give one clone to the
/// stack and keep another for control.
#[derive(Clone)]
pub struct Pf {
    pub(crate) inner: Arc<PfInner>,
}

impl Default for Pf {
    fn default() -> Self {
        Pf::new()
    }
}

/// A random nonzero host id, as pf draws one (arc4random) when none is set.
fn random_hostid() -> u32 {
    loop {
        let v = softnet_core::rng::random_u32();
        if v != 0 {
            return v;
        }
    }
}

impl Pf {
    /// A filter that is enabled with an empty ruleset (everything passes,
    /// as pf's default rule).
    pub fn new() -> Pf {
        let s = crate::state::random_seed();
        let inner = PfInner {
            enabled: AtomicBool::new(true),
            since: AtomicU64::new(0),
            ruleset: ArcSwap::from_pointee(CompiledRuleset::empty()),
            states: StateTable::new(Limit::States.default_value() as usize),
            tags: TagNames::default(),
            timeout_sets: TimeoutSets::new(),
            counters: PerWorker::new(),
            hostid: AtomicU32::new(random_hostid()),
            frags: crate::frag::FragCache::new(),
            frags6: crate::frag6::FragCache6::new(),
            srcnodes: crate::srcnode::SrcNodes::new(),
            xlholds: Default::default(),
            pflog: ArcSwapOption::empty(),
            if_lookup: ArcSwapOption::empty(),
            if_lookup6: ArcSwapOption::empty(),
            if_ref_lookup: ArcSwapOption::empty(),
            ifname_lookup: ArcSwapOption::empty(),
            socket_lookup: ArcSwapOption::empty(),
            route_lookup: ArcSwapOption::empty(),
            ifnames: Mutex::new(HashMap::new()),
            gen: AtomicU32::new(0),
            iss_key: (s, s.rotate_left(29) ^ 0x6a09_e667_f3bc_c908),
            last_now: AtomicU64::new(0),
            load_lock: Mutex::new(()),
            logif: Mutex::new((None, [0; 6])),
            extra: Mutex::new(HashMap::new()),
            id: NEXT_PF_ID.fetch_add(1, Ordering::Relaxed),
            rs_seq: AtomicU64::new(0),
            retired: Mutex::new(Vec::new()),
        };
        // pf_attach: state ids start at the time shifted left 32 bits (so
        // they do not repeat across boots); the low half is random, so the
        // ids of the states to come cannot be guessed from the boot time.
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        inner.states.set_next_id((secs << 32 | softnet_core::rng::random_u32() as u64).max(1));
        Pf { inner: Arc::new(inner) }
    }

    /// pf's host id (`pfctl -si -v` "Hostid", states' creator id).
    pub fn hostid(&self) -> u32 {
        self.inner.hostid.load(Ordering::Relaxed)
    }

    /// The id the next state gets (ids then count up by one per state).
    pub fn set_next_state_id(&self, id: u64) {
        self.inner.states.set_next_id(id);
    }

    /// `pfctl -f`: compiles and publishes `rs` atomically, with the inline
    /// anchors it brings and the anchors its `load anchor` lines loaded.
    /// Anchors loaded before (`pfctl -a NAME -f`) stay, as in pf. States
    /// are kept; on error nothing changes.
    pub fn load(&self, rs: &Ruleset, resolver: &dyn IfResolver) -> Result<(), CompileError> {
        crate::compile::check_anchor_calls(rs)?;
        let _g = self.inner.load_lock.lock();
        let cur = self.inner.ruleset.load_full();
        let mut sources = cur.sources.clone();
        let replaced = crate::anchor::apply_load_all(&mut sources, rs);
        let gen = self.inner.gen.load(Ordering::Relaxed) + 1;
        let defs = crate::compile::table_defs(rs);
        let mut compiled = self.compile_with(rs, &sources, &replaced, &defs, resolver, gen, &cur)?;
        // As pfctl, which sets the status interface only when the ruleset
        // says `set loginterface`: otherwise the current one stays.
        let names_logif = rs.header.iter().any(|h| matches!(h, HeaderItem::Set(SetOption::LogInterface(_))));
        if !names_logif {
            compiled.opts.loginterface = cur.opts.loginterface.clone();
        }
        // DIOCSETHOSTID: only when the ruleset says `set hostid`; 0 draws
        // a new random one.
        if let Some(h) = rs.options.hostid {
            self.inner.hostid.store(if h == 0 { random_hostid() } else { h }, Ordering::Relaxed);
        }
        self.inner.drop_extra_tables(&compiled);
        self.inner.gen.store(gen, Ordering::Relaxed);
        self.inner.states.set_limit(compiled.opts.limit(Limit::States) as usize);
        {
            let mut l = self.inner.logif.lock();
            if l.0 != compiled.opts.loginterface {
                *l = (compiled.opts.loginterface.clone(), self.inner.logif_sums());
            }
        }
        self.inner.publish(compiled);
        Ok(())
    }

    /// `pfctl -a NAME -f`: the rules of the anchor `rs.anchor_path` (and
    /// its inline and `load anchor` anchors) replaced, every other ruleset
    /// and the options as they are; one swap, states kept.
    pub fn load_anchor(&self, rs: &Ruleset, resolver: &dyn IfResolver) -> Result<(), CompileError> {
        crate::compile::check_anchor_calls(rs)?;
        let _g = self.inner.load_lock.lock();
        let cur = self.inner.ruleset.load_full();
        let mut sources = cur.sources.clone();
        let replaced = crate::anchor::apply_load_all(&mut sources, rs);
        let defs = crate::compile::table_defs(rs);
        self.replace_tree(&cur, &sources, &replaced, &defs, resolver)
    }

    /// `pfctl -a NAME -F rules`: the anchor's rules removed (the anchor
    /// stays while a rule calls it or an anchor below it exists). Returns
    /// how many rules it had.
    pub fn flush_anchor(&self, path: &str) -> Result<usize, CompileError> {
        let _g = self.inner.load_lock.lock();
        let cur = self.inner.ruleset.load_full();
        let mut sources = cur.sources.clone();
        let n = sources.insert(path.to_string(), vec![]).map_or(0, |r| r.len());
        let replaced = std::iter::once(path.to_string()).collect();
        self.replace_tree(&cur, &sources, &replaced, &[], &KnownGroups::of(&cur))?;
        Ok(n)
    }

    /// The running tree compiled again as it is (the caller holds the
    /// load lock): after a table command made or removed tables.
    pub(crate) fn recompile(&self) -> Result<(), CompileError> {
        let cur = self.inner.ruleset.load_full();
        let groups = KnownGroups::of(&cur);
        self.replace_tree(&cur, &cur.sources, &Default::default(), &[], &groups)
    }

    /// A new tree from `sources` with the running main ruleset's options,
    /// and its tables with `defs` defined.
    fn replace_tree(
        &self,
        cur: &CompiledRuleset,
        sources: &crate::anchor::AnchorSources,
        replaced: &std::collections::BTreeSet<String>,
        defs: &[crate::compile::TableDefIn],
        resolver: &dyn IfResolver,
    ) -> Result<(), CompileError> {
        let gen = self.inner.gen.load(Ordering::Relaxed) + 1;
        let mut compiled = self.compile_with(&cur.source, sources, replaced, defs, resolver, gen, cur)?;
        compiled.opts = cur.opts.clone();
        self.inner.drop_extra_tables(&compiled);
        self.inner.gen.store(gen, Ordering::Relaxed);
        self.inner.publish(compiled);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn compile_with(
        &self,
        main: &Ruleset,
        sources: &crate::anchor::AnchorSources,
        replaced: &std::collections::BTreeSet<String>,
        defs: &[crate::compile::TableDefIn],
        resolver: &dyn IfResolver,
        gen: u32,
        cur: &CompiledRuleset,
    ) -> Result<CompiledRuleset, CompileError> {
        let mut existing = self.inner.extra.lock().clone();
        existing.extend(cur.tables.iter().map(|(k, v)| (k.clone(), v.clone())));
        compile_tree(
            main,
            sources,
            defs,
            Some(&crate::compile::Prev { tree: cur, replaced }),
            &CompileCx {
                resolver,
                tags: &self.inner.tags,
                timeout_sets: &self.inner.timeout_sets,
                existing_tables: &existing,
                gen,
            },
        )
    }

    /// The ruleset in use.
    pub fn ruleset(&self) -> Arc<CompiledRuleset> {
        self.inner.ruleset.load_full()
    }

    /// `pfctl -e`. `Err` with pfctl's message when already enabled.
    pub fn enable(&self, now: Instant) -> Result<&'static str, &'static str> {
        if self.inner.enabled.swap(true, Ordering::AcqRel) {
            return Err("pfctl: pf already enabled");
        }
        self.inner.since.store(now.as_nanos(), Ordering::Relaxed);
        Ok("pf enabled")
    }

    /// `pfctl -d`: everything passes until enabled again.
    pub fn disable(&self, now: Instant) -> Result<&'static str, &'static str> {
        if !self.inner.enabled.swap(false, Ordering::AcqRel) {
            return Err("pfctl: pf not enabled");
        }
        self.inner.since.store(now.as_nanos(), Ordering::Relaxed);
        Ok("pf disabled")
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Acquire)
    }

    /// `pfctl -F rules`: an empty main ruleset (options and anchors
    /// kept), states kept. Returns the number of rules flushed.
    pub fn flush_rules(&self) -> usize {
        self.flush_anchor("").unwrap_or(0)
    }

    /// `pfctl -F states`: returns how many were removed.
    pub fn flush_states(&self) -> usize {
        let rs = self.inner.ruleset.load_full();
        self.inner.states.remove_if(|idx, st| {
            self.inner.state_removed(idx, st, &rs);
            true
        })
    }

    /// `pfctl -F all`: rules, states, source nodes, tables (non-persistent
    /// contents) and fragments.
    pub fn flush_all(&self) -> (usize, usize) {
        let s = self.flush_states();
        self.flush_src_nodes();
        let r = self.flush_rules();
        // `-F all` flushes tables too, persistent ones included.
        for t in self.inner.ruleset.load().tables.values() {
            t.flush();
        }
        self.inner.frags.flush();
        self.inner.frags6.flush();
        (r, s)
    }

    /// `pfctl -k host [-k dst]`: kills states originating from `src` (to
    /// `dst`, if given), as DIOCKILLSTATES matches the wire key's source
    /// side for the state's direction; returns how many.
    pub fn kill_states(&self, src: Ipv4Addr, dst: Option<Ipv4Addr>) -> usize {
        self.kill_states_ip(src.into(), dst.map(Into::into))
    }

    /// `kill_states` for hosts of either family: a state of the other
    /// family than `src` is never killed (a `dst` of another family than
    /// `src` kills nothing).
    pub fn kill_states_ip(&self, src: std::net::IpAddr, dst: Option<std::net::IpAddr>) -> usize {
        let rs = self.inner.ruleset.load_full();
        let af = crate::model::AddressFamily::of(src);
        if dst.is_some_and(|d| crate::model::AddressFamily::of(d) != af) {
            return 0;
        }
        let (src, dst) = (PfAddr::from_ip(src), dst.map(PfAddr::from_ip));
        self.inner.states.remove_if(|idx, st| {
            let hit = |s: usize, d: usize| {
                st.key.af == af && st.key.addr[s] == src && dst.is_none_or(|x| st.key.addr[d] == x)
            };
            // The key's source side is index 0 for inbound states, 1 for outbound.
            let (s, d) = if st.direction == crate::state::DIR_IN { (0, 1) } else { (1, 0) };
            let kill = hit(s, d);
            if kill {
                self.inner.state_removed(idx, st, &rs);
            }
            kill
        })
    }

    /// `pfctl -K host [-K host2]`: DIOCKILLSRCNODES, the nodes of source
    /// `src` whose sticky address is `dst` (without `dst`, those with
    /// none, as pf's zero address and full mask match). Their states live
    /// on without them. Returns how many were killed.
    pub fn kill_src_nodes(&self, src: Ipv4Addr, dst: Option<Ipv4Addr>) -> usize {
        use crate::srcnode::NodeKey;
        use crate::state::srcflags;
        let keys = self.inner.srcnodes.kill(src.into(), dst.map(Into::into));
        if !keys.is_empty() {
            self.inner.xlholds.detach(|k| keys.contains(k));
            // pf_state_rm_src_node on every state of the nodes.
            self.inner.states.update_if(
                |st| [NodeKey::of_state(st), NodeKey::route_of_state(st)].iter().flatten().any(|k| keys.contains(k)),
                |st| {
                    if NodeKey::of_state(st).is_some_and(|k| keys.contains(&k)) {
                        st.src_flags &= !(srcflags::SRC_NODE | srcflags::SRC_GLOBAL);
                    }
                    if NodeKey::route_of_state(st).is_some_and(|k| keys.contains(&k)) {
                        st.src_flags &= !srcflags::SRC_ROUTE;
                    }
                },
            );
        }
        keys.len()
    }

    /// `pfctl -F Sources`: DIOCCLRSRCNODES, every node goes and the
    /// states live on without them. Returns how many nodes there were.
    pub fn flush_src_nodes(&self) -> usize {
        let n = self.inner.srcnodes.clear();
        self.inner.xlholds.detach(|_| true);
        self.inner.states.update_if(
            |st| st.src_flags & (crate::state::srcflags::SRC_NODE | crate::state::srcflags::SRC_ROUTE) != 0,
            |st| {
                use crate::state::srcflags;
                st.src_flags &= !(srcflags::SRC_NODE | srcflags::SRC_GLOBAL | srcflags::SRC_ROUTE)
            },
        );
        n
    }

    /// Number of source-tracking nodes.
    pub fn src_node_count(&self) -> usize {
        self.inner.srcnodes.len()
    }

    /// Number of states.
    pub fn state_count(&self) -> usize {
        self.inner.states.len()
    }

    /// The live state a link handle names (slot + 1, as a connection of
    /// the stack keeps it: `softnet_core::sock::pflink`), if any.
    pub fn state_at(&self, link: u32) -> Option<crate::state::StateData> {
        self.inner.states.get(link.checked_sub(1)?).filter(|s| s.live)
    }

    /// Installs (or removes) the pflog queue.
    pub fn set_pflog(&self, q: Option<Arc<PflogQueue>>) {
        self.inner.pflog.store(q);
    }

    /// Installs the lookup `(if)` rules use for interfaces other than the
    /// packet's own.
    pub fn set_if_lookup(&self, f: IfLookup) {
        self.inner.if_lookup.store(Some(Arc::new(f)));
    }

    /// `set_if_lookup` for IPv6 addresses.
    pub fn set_if_lookup6(&self, f: IfLookup6) {
        self.inner.if_lookup6.store(Some(Arc::new(f)));
    }

    /// Installs the interface lookup `route-to (if addr)` needs; until one
    /// is installed such a rule makes no state (no-route) except for the
    /// packet's own interface.
    pub fn set_if_ref_lookup(&self, f: IfRefLookup) {
        self.inner.if_ref_lookup.store(Some(Arc::new(f)));
    }

    /// Installs the index-to-name lookup `received-on` needs for packets
    /// going out (the receiving interface is then another one); without
    /// it, such a rule sees only packets coming in.
    pub fn set_ifname_lookup(&self, f: IfNameLookup) {
        self.inner.ifname_lookup.store(Some(Arc::new(f)));
    }

    /// Installs the route lookup `no-route` and `urpf-failed` need; until
    /// one is installed they match nothing.
    pub fn set_route_lookup(&self, f: RouteLookup) {
        self.inner.route_lookup.store(Some(Arc::new(f)));
    }

    /// Installs the socket lookup `user` and `group` need (pf_socket_lookup);
    /// until one is installed no packet has a socket (uid and gid unknown).
    pub fn set_socket_lookup(&self, f: crate::divert::SocketLookup) {
        self.inner.socket_lookup.store(Some(Arc::new(f)));
    }

    /// Removes expired states (all of them, not incrementally) and expired
    /// fragments; returns the number of states removed.
    pub fn expire_states(&self, now: Instant) -> usize {
        let rs = self.inner.ruleset.load_full();
        let n = now.as_nanos();
        let inner = &self.inner;
        inner.states.remove_if(|idx, st| {
            let dead = inner.expires_at(st, &rs) <= n;
            if dead {
                inner.state_removed(idx, st, &rs);
            }
            dead
        })
    }

    pub(crate) fn inner_ifnames(&self) -> HashMap<u32, String> {
        self.inner.ifnames.lock().clone()
    }

    pub fn pflog_queue(&self) -> Option<Arc<PflogQueue>> {
        self.inner.pflog.load_full()
    }

    /// A counter from `-si` by name (for tests and monitoring).
    pub fn counter(&self, name: &str) -> Option<u64> {
        let i = crate::eval::REASON_NAMES.iter().position(|n| *n == name)?;
        Some(self.inner.counters.sum(|c| &c.reasons[i]))
    }
}

impl PacketFilter for Pf {
    fn divert_to(&self, meta: &softnet_core::packet::PacketMeta) -> Option<std::net::SocketAddr> {
        crate::divert::divert_to(&self.inner, meta)
    }

    fn test(
        &self,
        worker: usize,
        now: Instant,
        dir: Direction,
        ifp: &Interface,
        pkt: PacketBuf,
        bufs: &mut dyn BufferSource,
        replies: &mut FilterReplies,
    ) -> Verdict {
        // One packet alone (the stack calls `test_batch`): no lookup hint.
        let inner = &*self.inner;
        let Some(rs) = inner.active_ruleset(ifp) else { return Verdict::Pass(pkt) };
        let cx = Cx::new(inner, &rs, worker, now, dir, ifp);
        let logif = rs.opts.loginterface.as_deref() == Some(ifp.name());
        let pd = eval::parse_fast(pkt.data()).or_else(|| eval::parse_fast6(pkt.data()));
        let mut slot = Some(pkt);
        match (batch::decide::<false>(&cx, logif, &mut slot, pd.as_ref(), 0, bufs, replies), slot) {
            (Decision::Pass, Some(p)) => Verdict::Pass(p),
            (Decision::Drop, Some(p)) => Verdict::Drop(p),
            _ => Verdict::Consumed,
        }
    }

    fn test_batch(
        &self,
        worker: usize,
        now: Instant,
        dir: Direction,
        ifp: &Interface,
        pkts: &mut [Option<PacketBuf>],
        decisions: &mut [Decision],
        bufs: &mut dyn BufferSource,
        replies: &mut FilterReplies,
    ) {
        let inner = &*self.inner;
        // The ruleset, `set skip` and `set loginterface` once per batch.
        let Some(rs) = inner.active_ruleset(ifp) else {
            for (p, d) in pkts.iter().zip(decisions.iter_mut()) {
                *d = if p.is_some() { Decision::Pass } else { Decision::Consumed };
            }
            return;
        };
        let cx = Cx::new(inner, &rs, worker, now, dir, ifp);
        let logif = rs.opts.loginterface.as_deref() == Some(ifp.name());
        // A batch that starts with an IPv6 packet goes through the loop's
        // IPv6 instance (`batch::run6`); IPv4's stays as it was.
        if pkts.first().and_then(|p| p.as_ref()).is_some_and(|p| p.data().first().is_some_and(|b| b >> 4 == 6)) {
            return batch::run6(&cx, logif, pkts, decisions, bufs, replies);
        }
        for (pkts, decisions) in pkts.chunks_mut(HINT_BATCH).zip(decisions.chunks_mut(HINT_BATCH)) {
            batch::chunk4(&cx, logif, pkts, decisions, bufs, replies);
        }
    }

    fn tick(&self, now: Instant) {
        self.tick_recycling(now, &mut crate::frag::NoPool)
    }

    fn tick_recycling(&self, now: Instant, bufs: &mut dyn BufferSource) {
        let inner = &*self.inner;
        inner.last_now.store(now.as_nanos(), Ordering::Relaxed);
        let rs = inner.ruleset.load_full();
        let interval = rs.opts.timeout(Timeout::Interval).max(1);
        let hw = inner.states.high_water();
        let budget = hw.div_ceil(interval).max(1024);
        let n = now.as_nanos();
        inner.states.purge_some(budget, |idx, st| {
            let dead = inner.expires_at(st, &rs) <= n;
            if dead {
                inner.state_removed(idx, st, &rs);
            }
            dead
        });
        inner.frags.expire(n, rs.opts.timeout(Timeout::Frag) as u64 * 1_000_000_000, bufs);
        inner.frags6.expire(n, rs.opts.timeout(Timeout::Frag) as u64 * 1_000_000_000, bufs);
        inner.srcnodes.purge(n);
        // `overload` insertions the workers queued (a table update waits
        // for the table's readers: done here, on the control thread).
        for (t, a) in inner.srcnodes.take_overloads() {
            let e = crate::model::TableEntry {
                net: crate::model::IpNet { addr: a, prefix: if a.is_ipv4() { 32 } else { 128 } },
                negated: false,
            };
            t.add(&[e]);
        }
        // Old rulesets no worker holds any more are freed here, not on a worker.
        inner.retired.lock().retain(|r| Arc::strong_count(r) > 1);
    }
}
