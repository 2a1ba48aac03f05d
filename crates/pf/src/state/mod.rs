//! The state table: states in a slab of fixed-size slots, found through a
//! hash index keyed by `StateKey` that workers read without locks.
//!
//! * Slab: one address range reserved for every slot the table may ever
//!   have, made usable `CHUNK` slots at a time on demand and never moved
//!   or freed while the table lives, so a slot index stays valid and
//!   workers reach a slot with one multiply-add from the slab's base,
//!   without any table-wide lock. Each slot holds one
//!   `StateData` (plain `Copy` data, no boxes) behind its own spin lock
//!   (a sequence lock: TCP tracking and state changes take it), plus
//!   atomic copies of what the per-packet path reads and the counters it
//!   bumps, so an established UDP/ICMP packet touches no lock at all.
//! * Index: `BUCKETS` chains threaded through the slots (`Slot::next`),
//!   read without locks: a probe walks the chain comparing atomic key
//!   words and trusts a miss only if the shard's version did not move
//!   meanwhile; writers (insert, remove) take the shard's lock. At most
//!   `PER_KEY` states per key; if-bound ones are found before floating ones.
//! * Reverse links: pf in leaves the inbound state's slot in the packet
//!   (`PacketMeta::pf_link`), and that state keeps the slot of the
//!   outbound state pf out found for it last (`Slot::rev`), so pf out
//!   reads the outbound state without a hash probe, as pf.c's
//!   `pf_find_state` follows `pf.statekey->sk_reverse`. The link is a
//!   hint checked in full (key, liveness, interface, and `Slot::solo`:
//!   the only state on its key, so the one a probe would find).
//! * Key/state split: a state has a wire key and a stack key, equal unless
//!   NAT rewrites the packet. `StateData::key` is the creating packet's
//!   key before translation (the stack key of an outbound state, the wire
//!   key of an inbound one); a translating state (`sflags::NAT`) also has
//!   the translated key, kept with its chain link in a side array
//!   (`NatSlot`, so that a slot stays four cache lines) and indexed too: a
//!   chain link with `NAT_LINK` set reaches a slot by its translated key.

use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;

use crate::addr::{Af, PfAddr};
// std's (and parking_lot's) primitives, loom's under `--cfg loom`.
use crate::sync::{fence, spin_loop, AtomicU32, AtomicU64, AtomicUsize, Mutex, OnceLock, Ordering, UnsafeCell};

/// Index shards (a power of two).
#[cfg(not(loom))]
pub const SHARDS: usize = 64;
/// Slots per slab chunk (the slab is made usable a chunk at a time).
#[cfg(not(any(loom, miri)))]
pub const CHUNK: usize = 4096;
/// Under Miri, which retags every element of a slice it makes a
/// reference to, the side arrays' chunks are small.
#[cfg(all(miri, not(loom)))]
pub const CHUNK: usize = 64;
/// Under loom: one shard and small chunks, so a model's states share
/// one chain and fit in a few slots.
#[cfg(loom)]
pub const SHARDS: usize = 1;
#[cfg(loom)]
pub const CHUNK: usize = 4;
/// Most states per key (if-bound and floating, in and out).
pub const PER_KEY: usize = 2;
/// Most chunks: 4096 × 4096 = 16 M states (4 GiB of address space
/// reserved, memory used only for the chunks made usable).
#[cfg(not(any(loom, miri)))]
const MAX_CHUNKS: usize = 4096;
/// Under Miri the slab is a plain allocation: 1,024 slots.
#[cfg(all(miri, not(loom)))]
const MAX_CHUNKS: usize = 16;
#[cfg(loom)]
const MAX_CHUNKS: usize = 2;
const NONE: u32 = u32::MAX;

/// TCP peer states, as pf's `TCPS_*`.
pub mod tcps {
    pub const CLOSED: u8 = 0;
    pub const LISTEN: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECEIVED: u8 = 3;
    pub const ESTABLISHED: u8 = 4;
    pub const CLOSE_WAIT: u8 = 5;
    pub const FIN_WAIT_1: u8 = 6;
    pub const CLOSING: u8 = 7;
    pub const LAST_ACK: u8 = 8;
    pub const FIN_WAIT_2: u8 = 9;
    pub const TIME_WAIT: u8 = 10;
    /// `synproxy state`: pf answers the client's handshake itself
    /// (pfvar.h PF_TCPS_PROXY_SRC, TCP_NSTATES) ...
    pub const PROXY_SRC: u8 = 11;
    /// ... then opens the connection to the server (PF_TCPS_PROXY_DST).
    pub const PROXY_DST: u8 = 12;
    pub const NAMES: [&str; 11] = [
        "CLOSED",
        "LISTEN",
        "SYN_SENT",
        "SYN_RCVD",
        "ESTABLISHED",
        "CLOSE_WAIT",
        "FIN_WAIT_1",
        "CLOSING",
        "LAST_ACK",
        "FIN_WAIT_2",
        "TIME_WAIT",
    ];
}

/// UDP and "other" peer states (`PFUDPS_*`, `PFOTHERS_*`).
pub mod udps {
    pub const NO_TRAFFIC: u8 = 0;
    pub const SINGLE: u8 = 1;
    pub const MULTIPLE: u8 = 2;
    pub const NAMES: [&str; 3] = ["NO_TRAFFIC", "SINGLE", "MULTIPLE"];
}

/// `PF_WSCALE_FLAG`: the peer sent a window scale option.
pub const WSCALE_FLAG: u8 = 0x80;
pub const WSCALE_MASK: u8 = 0x0f;

/// Which timeout a state is under (index into `Timeout::ALL` order of
/// `crate::names::Timeout`), plus `PURGE`.
pub type TimeoutId = u8;
/// The state is dead: removed at the next purge, never matched.
pub const TIMEOUT_PURGE: TimeoutId = u8::MAX;

/// The lookup key of a state, as pf's `pf_state_key`: addresses and ports
/// in the order of the packet that created the state for an inbound
/// state (index 0 is the source), reversed for an outbound one; the
/// addresses are pf's 16-byte `pf_addr`s of family `af`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateKey {
    pub addr: [PfAddr; 2],
    pub port: [u16; 2],
    pub proto: u8,
    pub af: Af,
    pub rtable: u16,
}

impl Default for StateKey {
    fn default() -> Self {
        StateKey::empty()
    }
}

impl StateKey {
    pub const fn empty() -> StateKey {
        StateKey { addr: [PfAddr::UNSPECIFIED; 2], port: [0; 2], proto: 0, af: Af::Inet, rtable: 0 }
    }

    /// An IPv4 key.
    pub const fn v4(addr: [Ipv4Addr; 2], port: [u16; 2], proto: u8, rtable: u16) -> StateKey {
        StateKey { addr: [PfAddr::from_v4(addr[0]), PfAddr::from_v4(addr[1])], port, proto, af: Af::Inet, rtable }
    }

    /// The key as two words, as the index compares and hashes it.
    #[inline]
    pub fn words(&self) -> (u64, u64) {
        pack(self)
    }
}

/// In a key's second word: an IPv6 key, whose first word holds its
/// addresses' ids (`v6ids`) instead of the addresses.
pub const KEY_INET6: u64 = 1 << 24;

/// One side of a connection, as pf's `pf_state_peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peer {
    pub seqlo: u32,
    pub seqhi: u32,
    /// Sequence number modulator (`modulate state`).
    pub seqdiff: u32,
    /// Largest window seen (unscaled).
    pub max_win: u16,
    /// `WSCALE_FLAG | shift` once the peer's SYN carried the option.
    pub wscale: u8,
    /// `tcps::*` or `udps::*` (ICMP: 0).
    pub state: u8,
}

/// State flags.
pub mod sflags {
    pub const SLOPPY: u8 = 1 << 0;
    /// `log (all)` on the state's own rule: every packet of the state is
    /// logged under that rule.
    pub const LOG_ALL: u8 = 1 << 1;
    /// The creating rule allowed IP options.
    pub const ALLOW_OPTS: u8 = 1 << 2;
    /// The creating packet matched `match … log (all)` rules: every packet
    /// of the state is logged under each of them (`StateData::log_match`).
    pub const LOG_MATCHES_ALL: u8 = 1 << 3;
    /// The state translates (NAT): besides its key (the creating packet's,
    /// untranslated) it is indexed under its translated key
    /// (`StateTable::nat_key`), as pf's wire and stack keys.
    pub const NAT: u8 = 1 << 4;
    /// The state has a routing option (`StateData::rt`): its packets get
    /// pf_route's decision (`crate::route`).
    pub const ROUTED: u8 = 1 << 5;
    /// The state scrubs its packets (pf_scrub with the values kept in
    /// `StateTable::scrub_of`'s side array).
    pub const SCRUB: u8 = 1 << 6;
    /// `af-to`: its translated key is of the other family
    /// (`crate::eval::afto`); its packets change family.
    pub const AFTO: u8 = 1 << 7;
}

/// Source-tracking flags (`StateData::src_flags`): read and written under
/// the state's lock only, so they are not mirrored for the lock-free path
/// (whose flag byte has no room left).
pub mod srcflags {
    /// The state counts on a source-tracking node (`crate::srcnode`) of
    /// its rule and source ...
    pub const SRC_NODE: u8 = 1 << 0;
    /// ... the global one for its source (`source-track global`).
    pub const SRC_GLOBAL: u8 = 1 << 1;
    /// Its TCP handshake completed and counts in the node's connections
    /// (pf's `src.tcp_est`).
    pub const TCP_EST: u8 = 1 << 2;
    /// The state counts on its routing pool's `sticky-address` node.
    pub const SRC_ROUTE: u8 = 1 << 3;
    /// It holds something of its nat-to or rdr-to pool (a `least-states`
    /// count, a `sticky-address` node): `crate::xlhold`, by its id.
    pub const XLATE: u8 = 1 << 4;
    /// Made by a `divert-to` rule: its inbound packets are diverted to
    /// a local socket (`crate::divert`).
    pub const DIVERTED: u8 = 1 << 5;
}

/// Most `match … log (all)` rules a state remembers for its packets' log
/// records; pf keeps every `match` rule in the state's `match_rules`.
pub const LOG_MATCH_MAX: usize = 4;
/// An unused entry of `StateData::log_match`.
pub const NO_RULE: u32 = u32::MAX;

/// Packet direction as states record it (pf's `PF_IN`/`PF_OUT`).
pub const DIR_IN: u8 = 1;
pub const DIR_OUT: u8 = 2;

/// One state. Plain data, fixed size: `size_of::<Slot>() × 1M` fits in
/// 256 MB (a test checks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateData {
    pub key: StateKey,
    /// Interface the state is bound to, by generation (unique for the
    /// interface's life, unlike its index); 0 = floating (`all`).
    pub kif: u32,
    pub direction: u8,
    pub flags: u8,
    /// `srcflags::*`.
    pub src_flags: u8,
    pub timeout: TimeoutId,
    /// The state's own timeouts: index into `StateTable::timeout_sets` (0 = the rule had none).
    pub timeout_set: u16,
    pub src: Peer,
    pub dst: Peer,
    /// Number of the rule that created the state in the ruleset of `ruleset_gen`.
    pub rule_nr: u32,
    pub ruleset_gen: u32,
    /// pf tag id given to the state's packets (0 = none).
    pub tag: u16,
    /// Routing table for the state's packets; -1 = unchanged.
    pub rtable: i16,
    /// pf's `st->rt` (`crate::route::kind_code`: 0 none, else `route-to`,
    /// `reply-to` or `dup-to`); its next hop is in the state's
    /// `StateCold`. Set once, before insert.
    pub rt: u8,
    /// Creation and last activity (nanoseconds of the injected clock).
    pub creation: u64,
    pub expire: u64,
    /// [0]: packets in the state's direction, [1]: the other way.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// pf's state id: unique among this host's states, given at insert.
    pub id: u64,
    /// pf's `creatorid`: the host id (`set hostid`) of the pf that made
    /// the state. Cold: read by `pfctl -ss -vv` only.
    pub creatorid: u32,
    /// Slot in use.
    pub live: bool,
}

impl Default for StateData {
    fn default() -> Self {
        StateData {
            key: StateKey::empty(),
            kif: 0,
            direction: 0,
            flags: 0,
            src_flags: 0,
            timeout: 0,
            timeout_set: 0,
            src: Peer::default(),
            dst: Peer::default(),
            rule_nr: 0,
            ruleset_gen: 0,
            tag: 0,
            rtable: -1,
            rt: 0,
            creation: 0,
            expire: 0,
            packets: [0; 2],
            bytes: [0; 2],
            id: 0,
            creatorid: 0,
            live: false,
        }
    }
}

/// What few states have, kept beside the slab (`StateTable::cold`) so
/// that a slot stays four cache lines with IPv6 keys: made at insert for a
/// state with `sflags::LOG_MATCHES_ALL` or `sflags::ROUTED` (a routing
/// option or `divert-packet`), fixed for its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateCold {
    /// The `match … log (all)` rules the creating packet matched (numbers
    /// in the ruleset of `ruleset_gen`, in the order matched, the first
    /// `LOG_MATCH_MAX` of them; `NO_RULE` after the last): pf.c's
    /// `match_rules` as pf_test walks them to log each packet of the state.
    pub log_match: [u32; LOG_MATCH_MAX],
    /// pf's `st->rt_addr`, the next hop chosen when the state was made
    /// (of the state's family).
    pub rt_addr: std::net::IpAddr,
    /// `route-to (if addr)`: the interface `rt_addr` is on (pf's
    /// `rt_kif`), held weakly; the default (index 0) names none.
    pub rt_if: softnet_core::iface::WeakIf,
    /// The `divert-packet` port of the state's rule (0: none): every
    /// packet of the state goes to that divert socket (`crate::divert`).
    pub divert_port: u16,
}

impl Default for StateCold {
    fn default() -> Self {
        StateCold {
            log_match: [NO_RULE; LOG_MATCH_MAX],
            rt_addr: std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            rt_if: softnet_core::iface::WeakIf::default(),
            divert_port: 0,
        }
    }
}

/// Key words as the index compares them (and hashes them): an IPv4
/// key's addresses, ports, protocol and routing table; an IPv6 key has
/// its addresses' ids (`v6ids::lookup`: `NO_ID` when no state holds the
/// address) in the first word and `KEY_INET6` in the second.
#[inline]
fn pack(k: &StateKey) -> (u64, u64) {
    let b = (k.port[0] as u64) << 48 | (k.port[1] as u64) << 32 | (k.proto as u64) << 16 | k.rtable as u64;
    if k.af == Af::Inet6 {
        return pack6(k, b);
    }
    ((k.addr[0].0[0] as u64) << 32 | k.addr[1].0[0] as u64, b)
}

#[cold]
fn pack6(k: &StateKey, b: u64) -> (u64, u64) {
    ((v6ids::lookup(k.addr[0]) as u64) << 32 | v6ids::lookup(k.addr[1]) as u64, b | KEY_INET6)
}

/// The key of index words (`pack`'s inverse).
#[inline]
pub fn unpack(w: (u64, u64)) -> StateKey {
    let (af, addr) = if w.1 & KEY_INET6 != 0 {
        (Af::Inet6, [v6ids::addr_of((w.0 >> 32) as u32), v6ids::addr_of(w.0 as u32)])
    } else {
        (Af::Inet, [PfAddr([(w.0 >> 32) as u32, 0, 0, 0]), PfAddr([w.0 as u32, 0, 0, 0])])
    };
    StateKey { addr, port: [(w.1 >> 48) as u16, (w.1 >> 32) as u16], proto: (w.1 >> 16) as u8, af, rtable: w.1 as u16 }
}

/// The addresses' ids an IPv6 key's words hold (none for IPv4).
#[inline]
pub(super) fn v6_ids(w: (u64, u64)) -> Option<[u32; 2]> {
    (w.1 & KEY_INET6 != 0).then_some([(w.0 >> 32) as u32, w.0 as u32])
}

/// Holds ids for an IPv6 key's addresses (given back by `release_key`).
pub(super) fn hold_key(k: &StateKey) {
    if k.af == Af::Inet6 {
        v6ids::acquire(k.addr[0]);
        v6ids::acquire(k.addr[1]);
    }
}

/// Gives back what `hold_key` took for the key of words `w`.
pub(super) fn release_key(w: (u64, u64)) {
    if let Some(ids) = v6_ids(w) {
        ids.into_iter().for_each(v6ids::release);
    }
}

/// `bind` word: kif | direction << 32 | flags << 40 | timeout << 48 | live << 56.
const BIND_LIVE: u64 = 1 << 56;
/// Set in a slot's `bind` while its state is the only one indexed under
/// its key, so that a usable state found by a link is the one a probe
/// would find. Written under the slot's lock (readers check `seq`); kept
/// across the guard's republishing of `bind`.
const BIND_SOLO: u64 = 1 << 57;

/// The timeout a diverted state (`srcflags::DIVERTED`) mirrors has its top
/// bit set: no timeout the lock-free paths compare with has it, so they
/// leave its packets to the locked path, which marks them diverted (the
/// mirrored flag byte has no room left). `TIMEOUT_PURGE` keeps its value.
#[inline]
fn bind_word(st: &StateData) -> u64 {
    st.kif as u64
        | (st.direction as u64) << 32
        | (st.flags as u64) << 40
        | ((st.timeout | (0x80 * u8::from(st.src_flags & srcflags::DIVERTED != 0))) as u64) << 48
        | if st.live { BIND_LIVE } else { 0 }
}

#[inline]
fn extra_word(st: &StateData) -> u64 {
    st.tag as u64
        | (st.rtable as u16 as u64) << 16
        | (st.src.state as u64) << 32
        | (st.dst.state as u64) << 40
        | (fast_word(st) as u64) << 48
}

/// `StateView::fast` bits: a UDP packet in the state's direction
/// (`FAST_FWD`), or against it (`FAST_REV`), leaves the state as it is
/// (`other_step` changes neither peer nor the timeout: every packet of an
/// established flow) and asks nothing of the verdict but the counters:
/// no log, scrub, route, af-to, tag, divert, and (in the state's
/// direction) no rtable. Only `sflags::NAT` may be set besides: its
/// rewrite comes from the keys. Computed whenever the state is
/// published, so the per-packet path tests one bit instead of working it
/// out from the peers, the timeout and the flags.
pub const FAST_FWD: u8 = 1;
pub const FAST_REV: u8 = 2;
/// The same by hook: a UDP packet on the in hook (`FAST_IN`) or the out
/// hook (`FAST_OUT`) takes the fast path (`FAST_FWD` or `FAST_REV` as the
/// state's direction makes that hook's packets go its way or against
/// it), so that a loop made for one hook tests a constant bit. Like the
/// two above, set only while the state is live and not purged, so a
/// reader that tests one need not test those (`StateTable::probe_fast4`).
pub const FAST_IN: u8 = 4;
pub const FAST_OUT: u8 = 8;

/// The state flags that take a packet off the fast path: each asks the
/// verdict for work besides counting (`sflags::NAT` does not: its rewrite
/// comes from the keys).
const FAST_NOT: u8 = sflags::LOG_ALL | sflags::LOG_MATCHES_ALL | sflags::SCRUB | sflags::ROUTED | sflags::AFTO;

/// `fast_bits` with the hook bits (`FAST_IN`, `FAST_OUT`) beside them.
fn fast_word(st: &StateData) -> u8 {
    let f = fast_bits(st);
    let way = |dir: u8| if st.direction == dir { f & FAST_FWD != 0 } else { f & FAST_REV != 0 };
    f | (FAST_IN * u8::from(way(DIR_IN))) | (FAST_OUT * u8::from(way(DIR_OUT)))
}

fn fast_bits(st: &StateData) -> u8 {
    if !st.live
        || st.timeout == TIMEOUT_PURGE
        || st.key.proto != 17
        || st.flags & FAST_NOT != 0
        || st.tag != 0
        || st.src_flags & srcflags::DIVERTED != 0
    {
        return 0;
    }
    let steady = |s0: u8, d0: u8| {
        let (mut s, mut d) = (s0, d0);
        let t = other_step(true, &mut s, &mut d);
        s == s0 && d == d0 && st.timeout == crate::compile::tidx(t) as u8
    };
    let fwd = steady(st.src.state, st.dst.state) && st.rtable < 0;
    let rev = steady(st.dst.state, st.src.state);
    (FAST_FWD * u8::from(fwd)) | (FAST_REV * u8::from(rev))
}

/// UDP and other protocols' peer states and timeout after a packet from
/// `src` toward `dst` (pf_test_state, the non-TCP, non-ICMP part).
#[inline]
pub fn other_step(udp: bool, src: &mut u8, dst: &mut u8) -> crate::names::Timeout {
    use crate::names::Timeout;
    if *src < udps::SINGLE {
        *src = udps::SINGLE;
    }
    if *dst == udps::SINGLE {
        *dst = udps::MULTIPLE;
    }
    let multiple = *src == udps::MULTIPLE && *dst == udps::MULTIPLE;
    match (udp, multiple) {
        (true, true) => Timeout::UdpMultiple,
        (true, false) => Timeout::UdpSingle,
        (false, true) => Timeout::OtherMultiple,
        (false, false) => Timeout::OtherSingle,
    }
}

/// Whether a state with this `bind` word is live, not purged, and usable
/// on interface `ifidx`: `Some(true)` bound to it, `Some(false)` floating.
#[inline]
fn usable(bind: u64, ifidx: u32) -> Option<bool> {
    if bind & BIND_LIVE == 0 || (bind >> 48) as u8 == TIMEOUT_PURGE {
        return None;
    }
    let kif = bind as u32;
    if kif == 0 {
        Some(false)
    } else if kif == ifidx {
        Some(true)
    } else {
        None
    }
}

mod cold;
#[cfg(all(test, loom))]
mod loom_tests;
mod mem;
mod probe;
mod slot;
mod table;
#[cfg(test)]
mod tests;
pub mod v6ids;

pub use cold::*;
pub use mem::*;
pub use slot::*;
pub use table::*;
