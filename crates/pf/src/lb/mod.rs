//! Address pools at run time, as pf_lb.c: `pf_map_addr` picks a
//! translation (or route) address from a pool, `pf_get_sport` a source
//! port no state uses, `pf_get_transaddr` the whole translation of a new
//! connection. IPv4 (the data path is IPv4; IPv6 pools come with IPv6).
//!
//! A pool's addresses are "blocks" (a network and its mask): one for a
//! plain address or network, a table's entries (not negated, in order),
//! or an interface's addresses for `(if)`, read when a connection is
//! translated, so `(if)` follows address changes and a table its updates.
//! `round-robin` and `random` over blocks walk them as `pfr_pool_get`
//! does: every address of a network block in turn, skipping addresses a
//! more specific entry covers.
//!
//! `sticky-address` is source tracking's: `map_addr` takes the address a
//! source node remembers (`sticky`) and hands back the one it chose for a
//! new node; the source-node table itself is not here.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use siphasher::sip::SipHasher24;
use std::collections::HashMap;
use std::hash::Hasher;

use std::net::IpAddr;
use std::sync::Arc;

use softnet_core::iface::IfAddr;

use crate::model::{Addr, HashKey, IfAddrModifier, Pool, PoolType};
use crate::table::Table;

/// The ports pf_get_sport picks from when a rule names none.
pub use crate::model::{NAT_PORT_HIGH, NAT_PORT_LOW};

/// The addresses of a pool with several: a table's entries or an
/// interface's addresses.
pub trait AddrBlocks {
    /// How many entries (pf's `pfrkt_cnt`): `random` and `source-hash`
    /// pick an index below it.
    fn count(&self) -> usize;
    /// The `idx`-th usable block (negated entries are not): network and
    /// mask.
    fn block(&self, idx: usize) -> Option<(u32, u32)>;
    /// When the most specific entry holding `a` is another one than block
    /// `idx` (a nested block), that entry's network and mask.
    fn nested(&self, a: u32, idx: usize) -> Option<(u32, u32)>;
}

/// A list of blocks (an interface's addresses, a test's pool).
pub struct BlockList<'a>(pub &'a [(u32, u32)]);

impl AddrBlocks for BlockList<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn block(&self, idx: usize) -> Option<(u32, u32)> {
        self.0.get(idx).copied()
    }
    fn nested(&self, a: u32, idx: usize) -> Option<(u32, u32)> {
        let own = self.0.get(idx)?.1;
        self.0
            .iter()
            .enumerate()
            .filter(|&(i, &(n, m))| i != idx && a & m == n && m.count_ones() > own.count_ones())
            .map(|(_, &b)| b)
            .max_by_key(|b| b.1.count_ones())
    }
}

/// Where a pool's addresses come from when a connection is mapped.
pub enum PoolAddrs<'a> {
    /// One address or network (`raddr`, `rmask`).
    Single { addr: u32, mask: u32 },
    /// A table, or an interface's addresses.
    Blocks(&'a dyn AddrBlocks),
}

/// pf's `rpool->tblidx` and `rpool->counter`: where round-robin (and the
/// port search's walk over addresses) stands. Shared by the workers; a
/// race between two of them can hand out the same address twice, as
/// round-robin under pf's lock never would, which only weakens the
/// spreading.
#[derive(Debug, Default)]
pub struct PoolCursor(AtomicU64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// The block index (-1: none yet).
    pub tblidx: i32,
    /// The last address handed out, 0 for none.
    pub counter: u32,
}

impl PoolCursor {
    pub fn new() -> PoolCursor {
        let c = PoolCursor::default();
        c.store(Cursor { tblidx: -1, counter: 0 });
        c
    }
    pub fn load(&self) -> Cursor {
        let v = self.0.load(Ordering::Relaxed);
        Cursor { tblidx: (v >> 32) as u32 as i32, counter: v as u32 }
    }
    pub fn store(&self, c: Cursor) {
        self.0.store((c.tblidx as u32 as u64) << 32 | c.counter as u64, Ordering::Relaxed);
    }
}

/// `least-states`: states per translated address of a pool (pf keeps them
/// on the table entries). Touched only when a state is made or removed.
#[derive(Debug, Default)]
pub struct PoolLoads(Mutex<HashMap<u32, u64>>);

impl PoolLoads {
    pub fn get(&self, a: u32) -> u64 {
        self.0.lock().get(&a).copied().unwrap_or(0)
    }
    /// `pfr_states_increase`.
    pub fn increase(&self, a: u32) {
        *self.0.lock().entry(a).or_insert(0) += 1;
    }
    /// `pfr_states_decrease`.
    pub fn decrease(&self, a: u32) {
        let mut m = self.0.lock();
        if let Some(n) = m.get_mut(&a) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&a);
            }
        }
    }
}

/// `pf_poolmask`: the network bits of `raddr`, the host bits of `saddr`.
#[inline]
pub fn poolmask(raddr: u32, rmask: u32, saddr: u32) -> u32 {
    (raddr & rmask) | (saddr & !rmask)
}

/// `pf_match_addr(0, …)`.
#[inline]
fn in_block(raddr: u32, rmask: u32, a: u32) -> bool {
    a & rmask == raddr & rmask
}

/// `pf_hash` for IPv4: SipHash-2-4 of the address under the pool's key.
pub fn pf_hash(a: u32, key: &HashKey) -> u64 {
    let k = key.0;
    let k0 = (k[0] as u64) | (k[1] as u64) << 32;
    let k1 = (k[2] as u64) | (k[3] as u64) << 32;
    let mut h = SipHasher24::new_with_keys(k0, k1);
    // pf hashes the address as it lies in memory (network order)
    h.write(&a.to_be_bytes());
    h.finish()
}

/// `pfr_pool_get`: the address at the cursor in `blocks`, moving to the
/// next block when the cursor's address is not in the current one, and
/// past nested blocks. Returns the block (network, mask) and the address;
/// the cursor is left on it.
pub fn pool_get(blocks: &dyn AddrBlocks, cur: &mut Cursor) -> Option<(u32, u32, u32)> {
    let (mut idx, mut use_counter) = match usize::try_from(cur.tblidx) {
        Ok(i) if i < blocks.count() => (i, true),
        _ => (0, false),
    };
    'next_block: loop {
        let (raddr, rmask) = blocks.block(idx)?;
        let mut addr = if use_counter && cur.counter != 0 {
            if !in_block(raddr, rmask, cur.counter) {
                idx += 1;
                use_counter = false;
                continue 'next_block;
            }
            cur.counter
        } else {
            raddr
        };
        if rmask == u32::MAX {
            *cur = Cursor { tblidx: idx as i32, counter: addr };
            return Some((raddr, rmask, addr));
        }
        loop {
            let Some((_, nmask)) = blocks.nested(addr, idx) else {
                *cur = Cursor { tblidx: idx as i32, counter: addr };
                return Some((raddr, rmask, addr));
            };
            // step past the nested block
            addr = (addr | !nmask).wrapping_add(1);
            if addr == 0 || !in_block(raddr, rmask, addr) {
                idx += 1;
                use_counter = false;
                continue 'next_block;
            }
        }
    }
}

/// What a pool is, for `map_addr`.
pub struct PoolSpec<'a> {
    pub kind: PoolType,
    pub addrs: PoolAddrs<'a>,
    /// A pool that may hold several addresses (pf's `PF_POOL_DYNTYPE` rules
    /// out tables and multi-address `(if)` for the other types).
    pub sticky: bool,
}

/// `pf_map_addr` (IPv4): the address `saddr`'s connection is translated
/// to (or routed through). `init` is the port search's start address:
/// when 0 it is set to the first address tried (random and round-robin),
/// so `get_sport` knows when it has been round the pool. `sticky` is the
/// address a source node already maps `saddr` to (source tracking), used
/// when the pool says `sticky-address`. `loads` counts states per address
/// for `least-states`. `None` when the pool has no address to give.
pub fn map_addr(
    pool: &PoolSpec,
    cursor: &PoolCursor,
    loads: Option<&PoolLoads>,
    saddr: u32,
    init: Option<&mut u32>,
    sticky: Option<u32>,
    rng: &mut dyn FnMut(u32) -> u32,
) -> Option<u32> {
    if pool.sticky && pool.kind != PoolType::None {
        if let Some(a) = sticky {
            return Some(a);
        }
    }
    let mut cur = cursor.load();
    let out = match (&pool.addrs, pool.kind) {
        (PoolAddrs::Blocks(b), PoolType::None | PoolType::Bitmask) => {
            // a single-address `(if:0)` (pfctl allows no other): its first
            let (a, m) = b.block(0)?;
            if pool.kind == PoolType::None {
                a
            } else {
                poolmask(a, m, saddr)
            }
        }
        (PoolAddrs::Single { addr, .. }, PoolType::None) => *addr,
        (PoolAddrs::Single { addr, mask }, PoolType::Bitmask) => poolmask(*addr, *mask, saddr),
        (PoolAddrs::Blocks(b), PoolType::Random) => {
            let cnt = b.count() as u32;
            cur = Cursor { tblidx: if cnt == 0 { 0 } else { rng(cnt) as i32 }, counter: 0 };
            let (_, _, a) = pool_get(*b, &mut cur)?;
            a
        }
        (PoolAddrs::Single { addr, mask }, PoolType::Random) => match init {
            Some(init) if *init == 0 => {
                // `pf_rand_addr`: random host bits
                let host = !*mask;
                cur.counter = rng(host.wrapping_add(1));
                let a = poolmask(*addr, *mask, cur.counter);
                *init = a;
                a
            }
            _ => {
                cur.counter = cur.counter.wrapping_add(1);
                poolmask(*addr, *mask, cur.counter)
            }
        },
        (addrs, PoolType::SourceHash(key)) => {
            let h = pf_hash(saddr, &key);
            match addrs {
                PoolAddrs::Blocks(b) => {
                    let cnt = b.count() as u64;
                    cur = Cursor { tblidx: if cnt == 0 { 0 } else { (h % cnt) as i32 }, counter: 0 };
                    let (_, _, a) = pool_get(*b, &mut cur)?;
                    a
                }
                // pf_hash's first word is the hash's low 32 bits, stored
                // in host (little-endian) order and read as an address
                PoolAddrs::Single { addr, mask } => poolmask(*addr, *mask, (h as u32).swap_bytes()),
            }
        }
        (addrs, PoolType::RoundRobin) => {
            let (raddr, rmask) = match addrs {
                PoolAddrs::Blocks(b) => {
                    let got = pool_get(*b, &mut cur).or_else(|| {
                        // the cursor's address left the pool: start over
                        cur = Cursor { tblidx: -1, counter: 0 };
                        pool_get(*b, &mut cur)
                    });
                    let (ra, rm, _) = got?;
                    (ra, rm)
                }
                PoolAddrs::Single { addr, mask } => {
                    if cur.counter == 0 && *mask == u32::MAX {
                        // a single host: POOL_NONE
                        return Some(*addr);
                    }
                    // pf counts host bits here; a counter that has grown
                    // into the pool's own network is its end
                    if cur.counter != 0 && in_block(*addr, *mask, cur.counter) {
                        return None;
                    }
                    (*addr, *mask)
                }
            };
            let a = poolmask(raddr, rmask, cur.counter);
            if let Some(init) = init {
                if *init == 0 {
                    *init = cur.counter;
                }
            }
            cur.counter = cur.counter.wrapping_add(1);
            a
        }
        (addrs, PoolType::LeastStates) => {
            let load = |a: u32| loads.map_or(0, |l| l.get(a));
            match addrs {
                PoolAddrs::Blocks(b) => {
                    if pool_get(*b, &mut cur).is_none() {
                        cur = Cursor { tblidx: -1, counter: 0 };
                        pool_get(*b, &mut cur)?;
                    }
                }
                PoolAddrs::Single { addr, mask } => {
                    // pf hands out its bare counter here (0.0.0.0 for a
                    // fresh pool); softnet walks the network's addresses
                    if cur.counter == 0 || !in_block(*addr, *mask, cur.counter) {
                        cur.counter = *addr;
                    }
                }
            }
            let first = cur.counter;
            let mut best = cur.counter;
            let mut best_load = load(best);
            let mut states = best_load;
            if let Some(init) = init {
                if *init == 0 {
                    *init = best;
                }
            }
            // once round the pool, looking for the address with the fewest
            // states (pf stops early at one with none)
            let mut steps = 0u64;
            while states > 0 && steps < 1 << 20 {
                steps += 1;
                cur.counter = cur.counter.wrapping_add(1);
                match addrs {
                    PoolAddrs::Blocks(b) => {
                        if pool_get(*b, &mut cur).is_none() {
                            cur = Cursor { tblidx: -1, counter: 0 };
                            pool_get(*b, &mut cur)?;
                        }
                    }
                    PoolAddrs::Single { addr, mask } => {
                        if !in_block(*addr, *mask, cur.counter) {
                            cur.counter = *addr & *mask;
                        }
                    }
                }
                if cur.counter == first {
                    break;
                }
                let l = load(cur.counter);
                if l < best_load {
                    best = cur.counter;
                    best_load = l;
                    states = l;
                }
            }
            cur.counter = best;
            if let Some(l) = loads {
                l.increase(best);
            }
            best
        }
    };
    cursor.store(cur);
    Some(out)
}

/// `pf_get_sport`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SportResult {
    /// Translate to this address and port.
    Found { addr: u32, port: u16 },
    /// Every port of every address the pool could give is in use (or the
    /// pool gave none): pf drops the packet (`translate`).
    Exhausted,
}

/// Most pool addresses `get_sport` tries before it gives up.
pub const MAX_ADDRS_TRIED: usize = 1024;

/// The protocols whose source port (or ICMP query id) NAT changes.
pub fn nat_changes_port(proto: u8) -> bool {
    proto == crate::names::IPPROTO_TCP || proto == crate::names::IPPROTO_UDP || proto == crate::names::IPPROTO_ICMP
}

/// `pf_get_sport`: the translated source address (from `map_addr`) and a
/// source port in `low..=high` such that `in_use(addr, port)` is false —
/// no state's key has that tuple. A random start, then up, then down
/// from it. `static-port` (`0, 0`) and protocols without ports keep the
/// port; ICMP echo picks a query id in 1..=65535. When an address has no
/// free port, random, round-robin and least-states pools try their next
/// address until they come back to the first.
#[allow(clippy::too_many_arguments)]
pub fn get_sport(
    pool: &PoolSpec,
    cursor: &PoolCursor,
    loads: Option<&PoolLoads>,
    proto: u8,
    icmp_echo: bool,
    saddr: u32,
    sport: u16,
    range: (u16, u16),
    sticky: Option<u32>,
    rng: &mut dyn FnMut(u32) -> u32,
    in_use: &mut dyn FnMut(u32, u16) -> bool,
) -> SportResult {
    let mut init = 0u32;
    let Some(mut naddr) = map_addr(pool, cursor, loads, saddr, Some(&mut init), sticky, rng) else {
        return SportResult::Exhausted;
    };
    // A least-states pool counted a state on each address it gave (not
    // on a sticky one): the addresses given up on get their counts back
    // once the walk is over (while it goes on, their counts move the
    // pool to its next address, as pf's do).
    let least = pool.kind == PoolType::LeastStates && loads.is_some();
    let mut counted = least && !(pool.sticky && sticky.is_some());
    let mut passed = [0u32; 64];
    let mut n_passed = 0usize;
    let mut pass = |a: u32, counted: bool| {
        if !counted {
            return;
        }
        if n_passed < passed.len() {
            passed[n_passed] = a;
            n_passed += 1;
        } else if let Some(l) = loads {
            l.decrease(a);
        }
    };
    let give_back = |passed: &[u32]| {
        if let Some(l) = loads {
            for &a in passed {
                l.decrease(a);
            }
        }
    };
    let res = (|| {
        let (mut low, mut high) = range;
        let mut tried = 1usize;
        if proto == crate::names::IPPROTO_ICMP {
            if !icmp_echo {
                // pf leaves other ICMP alone
                return SportResult::Found { addr: naddr, port: sport };
            }
            (low, high) = (1, 65535);
        }
        loop {
            if !nat_changes_port(proto) || (low == 0 && high == 0) {
                if !in_use(naddr, sport) {
                    return SportResult::Found { addr: naddr, port: sport };
                }
            } else if low == high {
                if !in_use(naddr, low) {
                    return SportResult::Found { addr: naddr, port: low };
                }
            } else {
                if low > high {
                    std::mem::swap(&mut low, &mut high);
                }
                let cut = rng(1 + high as u32 - low as u32) + low as u32;
                for p in cut..=high as u32 {
                    if !in_use(naddr, p as u16) {
                        return SportResult::Found { addr: naddr, port: p as u16 };
                    }
                }
                for p in (low as u32..cut).rev() {
                    if !in_use(naddr, p as u16) {
                        return SportResult::Found { addr: naddr, port: p as u16 };
                    }
                }
            }
            pass(naddr, counted);
            match pool.kind {
                PoolType::Random | PoolType::RoundRobin | PoolType::LeastStates => {
                    // another address; sticky no longer applies
                    let Some(a) = map_addr(pool, cursor, loads, saddr, Some(&mut init), None, rng) else {
                        return SportResult::Exhausted;
                    };
                    counted = least;
                    // pf goes on until it is back at the first address; a
                    // network pool's round-robin counter may never come back
                    // to it, so the walk is also bounded
                    tried += 1;
                    if a == init || a == naddr || tried > MAX_ADDRS_TRIED {
                        pass(a, counted);
                        return SportResult::Exhausted;
                    }
                    naddr = a;
                }
                _ => return SportResult::Exhausted,
            }
        }
    })();
    give_back(&passed[..n_passed]);
    res
}

/// rdr-to's destination port (pf_get_transaddr): `proxy_port` `p1, p2`
/// maps the rule's destination range starting at `dst_lo` onto
/// `p1..=p2`; `p, 0` sets `p`; `0, 0` keeps `dport`.
pub fn rdr_port(proxy_port: [u16; 2], dst_lo: u16, dport: u16) -> u16 {
    let [p1, p2] = proxy_port;
    if p2 != 0 {
        let mut div = p2.wrapping_sub(p1).wrapping_add(1) as u32;
        if div == 0 {
            div = 1;
        }
        // pf computes in int: a port below the range's start goes negative
        let off = (dport as i32 - dst_lo as i32).rem_euclid(65536) as u32;
        let mut n = (off % div) + p1 as u32;
        if n > 65535 {
            n -= 65535;
        }
        n as u16
    } else if p1 != 0 {
        p1
    } else {
        dport
    }
}

/// Where a compiled pool's addresses come from.
pub enum PoolSource {
    /// One address or network.
    Single { addr: u32, mask: u32 },
    /// A table, read at each mapping (its current entries).
    Table(Arc<Table>),
    /// `(if)`: the interface's addresses at each mapping, so a changed or
    /// removed address is followed at once.
    Dynamic { ifname: String, modifier: IfAddrModifier, no_alias: bool },
}

/// A rule's pool as the data path uses it (pf's kernel `struct pf_pool`):
/// its addresses, type, ports, and the round-robin cursor and
/// least-states counts that live with the rule.
pub struct CPool {
    pub source: PoolSource,
    pub kind: PoolType,
    pub sticky: bool,
    pub proxy_port: [u16; 2],
    pub cursor: PoolCursor,
    pub loads: PoolLoads,
}

/// An interface's addresses, for `(if)`.
pub type IfAddrs<'a> = &'a dyn Fn(&str) -> Option<Vec<IfAddr>>;

/// Most addresses of an interface a pool reads.
const DYN_MAX: usize = 16;

impl CPool {
    /// The pool of `p` (IPv4; `None` for an IPv6 pool). `tables` has the
    /// ruleset's tables by name.
    pub fn new(p: &Pool, tables: &mut dyn FnMut(&str) -> Option<Arc<Table>>) -> Option<CPool> {
        let source = match &p.addr {
            Addr::Net(n) => match n.addr {
                IpAddr::V4(a) => {
                    let mask = if n.prefix == 0 { 0 } else { u32::MAX << (32 - n.prefix.min(32) as u32) };
                    PoolSource::Single { addr: u32::from(a) & mask, mask }
                }
                IpAddr::V6(_) => return None,
            },
            Addr::Range(IpAddr::V4(lo), _) => PoolSource::Single { addr: u32::from(*lo), mask: u32::MAX },
            Addr::Table(t) => PoolSource::Table(tables(t)?),
            Addr::Dynamic { ifname, modifier, no_alias, prefix: None } => {
                PoolSource::Dynamic { ifname: ifname.clone(), modifier: *modifier, no_alias: *no_alias }
            }
            _ => return None,
        };
        Some(CPool {
            source,
            kind: p.kind,
            sticky: p.sticky,
            proxy_port: p.proxy_port,
            cursor: PoolCursor::new(),
            loads: PoolLoads::default(),
        })
    }

    /// Runs `f` with the pool's addresses as they are now.
    fn with_addrs<R>(&self, if_addrs: IfAddrs, f: impl FnOnce(&PoolSpec) -> R) -> R {
        let spec = |addrs| PoolSpec { kind: self.kind, addrs, sticky: self.sticky };
        match &self.source {
            PoolSource::Single { addr, mask } => f(&spec(PoolAddrs::Single { addr: *addr, mask: *mask })),
            PoolSource::Table(t) => {
                let view = t.pool_view();
                f(&spec(PoolAddrs::Blocks(&view)))
            }
            PoolSource::Dynamic { ifname, modifier, no_alias } => {
                let mut blocks = [(0u32, 0u32); DYN_MAX];
                let mut n = 0;
                for a in if_addrs(ifname).unwrap_or_default() {
                    if n == DYN_MAX || (*no_alias && n == 1) {
                        break;
                    }
                    let b = match modifier {
                        IfAddrModifier::Address => (u32::from(a.addr), u32::MAX),
                        IfAddrModifier::Network => (u32::from(a.network()), a.mask()),
                        IfAddrModifier::Broadcast => match a.broadcast() {
                            Some(b) => (u32::from(b), u32::MAX),
                            None => continue,
                        },
                        // softnet's interfaces have no point-to-point peers
                        IfAddrModifier::Peer => continue,
                    };
                    blocks[n] = b;
                    n += 1;
                }
                f(&spec(PoolAddrs::Blocks(&BlockList(&blocks[..n]))))
            }
        }
    }

    /// `pf_map_addr` on this pool (see `map_addr`); drawing from the
    /// worker's random source.
    pub fn map(&self, if_addrs: IfAddrs, saddr: u32, sticky: Option<u32>) -> Option<u32> {
        let mut rng = softnet_core::rng::uniform;
        self.with_addrs(if_addrs, |p| map_addr(p, &self.cursor, Some(&self.loads), saddr, None, sticky, &mut rng))
    }

    /// `pf_get_sport` on this pool (see `get_sport`): the source address
    /// and port for a connection from `saddr:sport`.
    #[allow(clippy::too_many_arguments)]
    pub fn get_sport(
        &self,
        if_addrs: IfAddrs,
        proto: u8,
        icmp_echo: bool,
        saddr: u32,
        sport: u16,
        sticky: Option<u32>,
        in_use: &mut dyn FnMut(u32, u16) -> bool,
    ) -> SportResult {
        let mut rng = softnet_core::rng::uniform;
        let range = (self.proxy_port[0], self.proxy_port[1]);
        self.with_addrs(if_addrs, |p| {
            get_sport(
                p,
                &self.cursor,
                Some(&self.loads),
                proto,
                icmp_echo,
                saddr,
                sport,
                range,
                sticky,
                &mut rng,
                in_use,
            )
        })
    }
}

#[cfg(test)]
mod tests;
