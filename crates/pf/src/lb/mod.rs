//! Address pools at run time, as pf_lb.c: `pf_map_addr` picks a
//! translation (or route) address from a pool, `pf_get_sport` a source
//! port no state uses, `pf_get_transaddr` the whole translation of a new
//! connection. Both families: the algorithms are generic over the
//! address as a number (`PoolWord`: a u32 for IPv4, a u128 for IPv6,
//! host order), as pf_lb.c's work on a `pf_addr` of family `af`.
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

use softnet_core::iface::{If6Addr, IfAddr};

use crate::model::{Addr, HashKey, IfAddrModifier, Pool, PoolType};
use crate::table::Table;

/// The ports pf_get_sport picks from when a rule names none.
pub use crate::model::{NAT_PORT_HIGH, NAT_PORT_LOW};

/// An address as pf_lb.c computes with it: the bits of an IPv4 (`u32`)
/// or IPv6 (`u128`) address as a number, so that masks, `PF_AINC` and
/// comparisons are the integer's.
pub trait PoolWord:
    Copy
    + Eq
    + std::hash::Hash
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
    + std::ops::BitAnd<Output = Self>
    + std::ops::BitOr<Output = Self>
    + std::ops::Not<Output = Self>
{
    const ZERO: Self;
    const ONES: Self;
    /// Where the pool's round-robin stands, shared by the workers.
    type Cell: CursorCell<Self>;
    /// `PF_AINC`: the next address (wrapping).
    fn inc(self) -> Self;
    /// Set bits (a mask's prefix length).
    fn ones(self) -> u32;
    /// pf_hash: SipHash-2-4 of the address under the pool's key, and the
    /// address pf reads back from its `hash` words.
    fn hash(self, key: &HashKey) -> (u64, Self);
    /// Random host bits under `host` (pf_map_addr's `arc4random` into the
    /// counter's words the mask does not cover).
    fn random_host(host: Self, rng: &mut dyn FnMut(u32) -> u32) -> Self;
}

impl PoolWord for u32 {
    const ZERO: u32 = 0;
    const ONES: u32 = u32::MAX;
    type Cell = PoolCursor;
    fn inc(self) -> u32 {
        self.wrapping_add(1)
    }
    fn ones(self) -> u32 {
        self.count_ones()
    }
    fn hash(self, key: &HashKey) -> (u64, u32) {
        // the first word is the hash's low 32 bits, stored in host
        // (little-endian) order and read as an address
        let h = pf_hash(self, key);
        (h, (h as u32).swap_bytes())
    }
    fn random_host(host: u32, rng: &mut dyn FnMut(u32) -> u32) -> u32 {
        rng(host.wrapping_add(1))
    }
}

impl PoolWord for u128 {
    const ZERO: u128 = 0;
    const ONES: u128 = u128::MAX;
    type Cell = PoolCursor6;
    fn inc(self) -> u128 {
        self.wrapping_add(1)
    }
    fn ones(self) -> u32 {
        self.count_ones()
    }
    fn hash(self, key: &HashKey) -> (u64, u128) {
        // pf_hash for AF_INET6: the 64-bit hash's halves, then both
        // flipped ("siphash isn't big enough"), each word in host order
        let h = pf_hash_bytes(&self.to_be_bytes(), key);
        let (lo, hi) = (h as u32, (h >> 32) as u32);
        let w = [lo, hi, !hi, !lo].map(|x| x.swap_bytes() as u128);
        (h, w[0] << 96 | w[1] << 64 | w[2] << 32 | w[3])
    }
    fn random_host(host: u128, rng: &mut dyn FnMut(u32) -> u32) -> u128 {
        let mut r = 0u128;
        for _ in 0..8 {
            r = r << 16 | rng(1 << 16) as u128;
        }
        r & host
    }
}

/// The addresses of a pool with several: a table's entries or an
/// interface's addresses.
pub trait AddrBlocks<A = u32> {
    /// How many entries (pf's `pfrkt_cnt`): `random` and `source-hash`
    /// pick an index below it.
    fn count(&self) -> usize;
    /// The `idx`-th usable block (negated entries are not): network and
    /// mask.
    fn block(&self, idx: usize) -> Option<(A, A)>;
    /// When the most specific entry holding `a` is another one than block
    /// `idx` (a nested block), that entry's network and mask.
    fn nested(&self, a: A, idx: usize) -> Option<(A, A)>;
}

/// A list of blocks (an interface's addresses, a test's pool).
pub struct BlockList<'a, A = u32>(pub &'a [(A, A)]);

impl<A: PoolWord> AddrBlocks<A> for BlockList<'_, A> {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn block(&self, idx: usize) -> Option<(A, A)> {
        self.0.get(idx).copied()
    }
    fn nested(&self, a: A, idx: usize) -> Option<(A, A)> {
        let own = self.0.get(idx)?.1;
        self.0
            .iter()
            .enumerate()
            .filter(|&(i, &(n, m))| i != idx && a & m == n && m.ones() > own.ones())
            .map(|(_, &b)| b)
            .max_by_key(|b| b.1.ones())
    }
}

/// Where a pool's addresses come from when a connection is mapped.
pub enum PoolAddrs<'a, A = u32> {
    /// One address or network (`raddr`, `rmask`).
    Single { addr: A, mask: A },
    /// A table, or an interface's addresses.
    Blocks(&'a dyn AddrBlocks<A>),
}

/// pf's `rpool->tblidx` and `rpool->counter`: where round-robin (and the
/// port search's walk over addresses) stands. Shared by the workers; a
/// race between two of them can hand out the same address twice, as
/// round-robin under pf's lock never would, which only weakens the
/// spreading.
#[derive(Debug, Default)]
pub struct PoolCursor(AtomicU64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor<A = u32> {
    /// The block index (-1: none yet).
    pub tblidx: i32,
    /// The last address handed out, 0 for none.
    pub counter: A,
}

/// A pool's cursor as the workers share it.
pub trait CursorCell<A>: Send + Sync {
    /// A cursor that has handed out nothing yet.
    fn fresh() -> Self;
    fn load(&self) -> Cursor<A>;
    fn store(&self, c: Cursor<A>);
}

impl PoolCursor {
    pub fn new() -> PoolCursor {
        <PoolCursor as CursorCell<u32>>::fresh()
    }
    pub fn load(&self) -> Cursor {
        CursorCell::load(self)
    }
    pub fn store(&self, c: Cursor) {
        CursorCell::store(self, c)
    }
}

impl CursorCell<u32> for PoolCursor {
    fn fresh() -> PoolCursor {
        let c = PoolCursor::default();
        c.store(Cursor { tblidx: -1, counter: 0 });
        c
    }
    fn load(&self) -> Cursor {
        let v = self.0.load(Ordering::Relaxed);
        Cursor { tblidx: (v >> 32) as u32 as i32, counter: v as u32 }
    }
    fn store(&self, c: Cursor) {
        self.0.store((c.tblidx as u32 as u64) << 32 | c.counter as u64, Ordering::Relaxed);
    }
}

/// An IPv6 pool's cursor: 128 bits do not fit an atomic word, so a lock
/// taken once per mapping (a new connection's, never per packet).
#[derive(Debug)]
pub struct PoolCursor6(Mutex<Cursor<u128>>);

impl CursorCell<u128> for PoolCursor6 {
    fn fresh() -> PoolCursor6 {
        PoolCursor6(Mutex::new(Cursor { tblidx: -1, counter: 0 }))
    }
    fn load(&self) -> Cursor<u128> {
        *self.0.lock()
    }
    fn store(&self, c: Cursor<u128>) {
        *self.0.lock() = c;
    }
}

/// `least-states`: states per translated address of a pool (pf keeps them
/// on the table entries). Touched only when a state is made or removed.
#[derive(Debug)]
pub struct PoolLoads<A = u32>(Mutex<HashMap<A, u64>>);

impl<A> Default for PoolLoads<A> {
    fn default() -> Self {
        PoolLoads(Mutex::new(HashMap::new()))
    }
}

impl<A: PoolWord> PoolLoads<A> {
    pub fn get(&self, a: A) -> u64 {
        self.0.lock().get(&a).copied().unwrap_or(0)
    }
    /// `pfr_states_increase`.
    pub fn increase(&self, a: A) {
        *self.0.lock().entry(a).or_insert(0) += 1;
    }
    /// `pfr_states_decrease`.
    pub fn decrease(&self, a: A) {
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
pub fn poolmask<A: PoolWord>(raddr: A, rmask: A, saddr: A) -> A {
    (raddr & rmask) | (saddr & !rmask)
}

/// `pf_match_addr(0, …)`.
#[inline]
fn in_block<A: PoolWord>(raddr: A, rmask: A, a: A) -> bool {
    a & rmask == raddr & rmask
}

/// `pf_hash` for IPv4: SipHash-2-4 of the address under the pool's key.
pub fn pf_hash(a: u32, key: &HashKey) -> u64 {
    // pf hashes the address as it lies in memory (network order)
    pf_hash_bytes(&a.to_be_bytes(), key)
}

/// SipHash-2-4 of an address's bytes (network order) under the pool key.
fn pf_hash_bytes(a: &[u8], key: &HashKey) -> u64 {
    let k = key.0;
    let k0 = (k[0] as u64) | (k[1] as u64) << 32;
    let k1 = (k[2] as u64) | (k[3] as u64) << 32;
    let mut h = SipHasher24::new_with_keys(k0, k1);
    h.write(a);
    h.finish()
}

/// `pfr_pool_get`: the address at the cursor in `blocks`, moving to the
/// next block when the cursor's address is not in the current one, and
/// past nested blocks. Returns the block (network, mask) and the address;
/// the cursor is left on it.
pub fn pool_get<A: PoolWord>(blocks: &dyn AddrBlocks<A>, cur: &mut Cursor<A>) -> Option<(A, A, A)> {
    let (mut idx, mut use_counter) = match usize::try_from(cur.tblidx) {
        Ok(i) if i < blocks.count() => (i, true),
        _ => (0, false),
    };
    'next_block: loop {
        let (raddr, rmask) = blocks.block(idx)?;
        let mut addr = if use_counter && cur.counter != A::ZERO {
            if !in_block(raddr, rmask, cur.counter) {
                idx += 1;
                use_counter = false;
                continue 'next_block;
            }
            cur.counter
        } else {
            raddr
        };
        if rmask == A::ONES {
            *cur = Cursor { tblidx: idx as i32, counter: addr };
            return Some((raddr, rmask, addr));
        }
        loop {
            let Some((_, nmask)) = blocks.nested(addr, idx) else {
                *cur = Cursor { tblidx: idx as i32, counter: addr };
                return Some((raddr, rmask, addr));
            };
            // step past the nested block
            addr = (addr | !nmask).inc();
            if addr == A::ZERO || !in_block(raddr, rmask, addr) {
                idx += 1;
                use_counter = false;
                continue 'next_block;
            }
        }
    }
}

/// What a pool is, for `map_addr`.
pub struct PoolSpec<'a, A = u32> {
    pub kind: PoolType,
    pub addrs: PoolAddrs<'a, A>,
    /// A pool that may hold several addresses (pf's `PF_POOL_DYNTYPE` rules
    /// out tables and multi-address `(if)` for the other types).
    pub sticky: bool,
}

/// `pf_map_addr`: the address `saddr`'s connection is translated
/// to (or routed through). `init` is the port search's start address:
/// when 0 it is set to the first address tried (random and round-robin),
/// so `get_sport` knows when it has been round the pool. `sticky` is the
/// address a source node already maps `saddr` to (source tracking), used
/// when the pool says `sticky-address`. `loads` counts states per address
/// for `least-states`. `None` when the pool has no address to give.
pub fn map_addr<A: PoolWord>(
    pool: &PoolSpec<A>,
    cursor: &A::Cell,
    loads: Option<&PoolLoads<A>>,
    saddr: A,
    init: Option<&mut A>,
    sticky: Option<A>,
    rng: &mut dyn FnMut(u32) -> u32,
) -> Option<A> {
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
            cur = Cursor { tblidx: if cnt == 0 { 0 } else { rng(cnt) as i32 }, counter: A::ZERO };
            let (_, _, a) = pool_get(*b, &mut cur)?;
            a
        }
        (PoolAddrs::Single { addr, mask }, PoolType::Random) => match init {
            Some(init) if *init == A::ZERO => {
                // `pf_rand_addr`: random host bits
                cur.counter = A::random_host(!*mask, rng);
                let a = poolmask(*addr, *mask, cur.counter);
                *init = a;
                a
            }
            _ => {
                cur.counter = cur.counter.inc();
                poolmask(*addr, *mask, cur.counter)
            }
        },
        (addrs, PoolType::SourceHash(key)) => {
            let (h, as_addr) = saddr.hash(&key);
            match addrs {
                PoolAddrs::Blocks(b) => {
                    let cnt = b.count() as u64;
                    cur = Cursor { tblidx: if cnt == 0 { 0 } else { (h % cnt) as i32 }, counter: A::ZERO };
                    let (_, _, a) = pool_get(*b, &mut cur)?;
                    a
                }
                PoolAddrs::Single { addr, mask } => poolmask(*addr, *mask, as_addr),
            }
        }
        (addrs, PoolType::RoundRobin) => {
            let (raddr, rmask) = match addrs {
                PoolAddrs::Blocks(b) => {
                    let got = pool_get(*b, &mut cur).or_else(|| {
                        // the cursor's address left the pool: start over
                        cur = Cursor { tblidx: -1, counter: A::ZERO };
                        pool_get(*b, &mut cur)
                    });
                    let (ra, rm, _) = got?;
                    (ra, rm)
                }
                PoolAddrs::Single { addr, mask } => {
                    if cur.counter == A::ZERO && *mask == A::ONES {
                        // a single host: POOL_NONE
                        return Some(*addr);
                    }
                    // pf counts host bits here; a counter that has grown
                    // into the pool's own network is its end
                    if cur.counter != A::ZERO && in_block(*addr, *mask, cur.counter) {
                        return None;
                    }
                    (*addr, *mask)
                }
            };
            let a = poolmask(raddr, rmask, cur.counter);
            if let Some(init) = init {
                if *init == A::ZERO {
                    *init = cur.counter;
                }
            }
            cur.counter = cur.counter.inc();
            a
        }
        (addrs, PoolType::LeastStates) => {
            let load = |a: A| loads.map_or(0, |l| l.get(a));
            match addrs {
                PoolAddrs::Blocks(b) => {
                    if pool_get(*b, &mut cur).is_none() {
                        cur = Cursor { tblidx: -1, counter: A::ZERO };
                        pool_get(*b, &mut cur)?;
                    }
                }
                PoolAddrs::Single { addr, mask } => {
                    // pf hands out its bare counter here (0.0.0.0 for a
                    // fresh pool); softnet walks the network's addresses
                    if cur.counter == A::ZERO || !in_block(*addr, *mask, cur.counter) {
                        cur.counter = *addr;
                    }
                }
            }
            let first = cur.counter;
            let mut best = cur.counter;
            let mut best_load = load(best);
            let mut states = best_load;
            if let Some(init) = init {
                if *init == A::ZERO {
                    *init = best;
                }
            }
            // once round the pool, looking for the address with the fewest
            // states (pf stops early at one with none)
            let mut steps = 0u64;
            while states > 0 && steps < 1 << 20 {
                steps += 1;
                cur.counter = cur.counter.inc();
                match addrs {
                    PoolAddrs::Blocks(b) => {
                        if pool_get(*b, &mut cur).is_none() {
                            cur = Cursor { tblidx: -1, counter: A::ZERO };
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
pub enum SportResult<A = u32> {
    /// Translate to this address and port.
    Found { addr: A, port: u16 },
    /// Every port of every address the pool could give is in use (or the
    /// pool gave none): pf drops the packet (`translate`).
    Exhausted,
}

/// Most pool addresses `get_sport` tries before it gives up.
pub const MAX_ADDRS_TRIED: usize = 1024;

/// The protocols whose source port (or ICMP query id) NAT changes.
pub fn nat_changes_port(proto: u8) -> bool {
    proto == crate::names::IPPROTO_TCP
        || proto == crate::names::IPPROTO_UDP
        || proto == crate::names::IPPROTO_ICMP
        || proto == crate::names::IPPROTO_ICMPV6
}

/// `pf_get_sport`: the translated source address (from `map_addr`) and a
/// source port in `low..=high` such that `in_use(addr, port)` is false —
/// no state's key has that tuple. A random start, then up, then down
/// from it. `static-port` (`0, 0`) and protocols without ports keep the
/// port; ICMP echo picks a query id in 1..=65535. When an address has no
/// free port, random, round-robin and least-states pools try their next
/// address until they come back to the first.
#[allow(clippy::too_many_arguments)]
pub fn get_sport<A: PoolWord>(
    pool: &PoolSpec<A>,
    cursor: &A::Cell,
    loads: Option<&PoolLoads<A>>,
    proto: u8,
    icmp_echo: bool,
    saddr: A,
    sport: u16,
    range: (u16, u16),
    sticky: Option<A>,
    rng: &mut dyn FnMut(u32) -> u32,
    in_use: &mut dyn FnMut(A, u16) -> bool,
) -> SportResult<A> {
    let mut init = A::ZERO;
    let Some(mut naddr) = map_addr(pool, cursor, loads, saddr, Some(&mut init), sticky, rng) else {
        return SportResult::Exhausted;
    };
    // A least-states pool counted a state on each address it gave (not
    // on a sticky one): the addresses given up on get their counts back
    // once the walk is over (while it goes on, their counts move the
    // pool to its next address, as pf's do).
    let least = pool.kind == PoolType::LeastStates && loads.is_some();
    let mut counted = least && !(pool.sticky && sticky.is_some());
    let mut passed = [A::ZERO; 64];
    let mut n_passed = 0usize;
    let mut pass = |a: A, counted: bool| {
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
    let give_back = |passed: &[A]| {
        if let Some(l) = loads {
            for &a in passed {
                l.decrease(a);
            }
        }
    };
    let res = (|| {
        let (mut low, mut high) = range;
        let mut tried = 1usize;
        if proto == crate::names::IPPROTO_ICMP || proto == crate::names::IPPROTO_ICMPV6 {
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
    /// One IPv6 address or network.
    Single6 { addr: u128, mask: u128 },
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
    /// The cursor and `least-states` counts of the pool's IPv6 addresses
    /// (a table or an `(if)` may give both families).
    pub cursor6: PoolCursor6,
    pub loads6: PoolLoads<u128>,
}

/// An interface's addresses, for `(if)`.
pub type IfAddrs<'a> = &'a dyn Fn(&str) -> Option<Vec<IfAddr>>;
/// An interface's IPv6 addresses, for `(if)` in an IPv6 pool.
pub type IfAddrs6<'a> = &'a dyn Fn(&str) -> Option<Vec<If6Addr>>;

/// Most addresses of an interface a pool reads.
const DYN_MAX: usize = 16;

/// The blocks (address, mask) an `(if)` pool takes from the interface's
/// addresses in order, `block` saying which one an address gives (`None`:
/// none, as a `:broadcast` of an address without one): at most `DYN_MAX`,
/// only the first with `:0` (`no_alias`). The blocks and how many.
fn dyn_blocks<A: Copy + Default, T>(
    addrs: impl IntoIterator<Item = T>,
    no_alias: bool,
    block: impl Fn(T) -> Option<(A, A)>,
) -> ([(A, A); DYN_MAX], usize) {
    let mut blocks = [(A::default(), A::default()); DYN_MAX];
    let mut n = 0;
    for a in addrs {
        if n == DYN_MAX || (no_alias && n == 1) {
            break;
        }
        let Some(b) = block(a) else { continue };
        blocks[n] = b;
        n += 1;
    }
    (blocks, n)
}

impl CPool {
    /// The pool of `p`. `tables` has the ruleset's tables by name.
    pub fn new(p: &Pool, tables: &mut dyn FnMut(&str) -> Option<Arc<Table>>) -> Option<CPool> {
        let source = match &p.addr {
            Addr::Net(n) => match n.addr {
                IpAddr::V4(a) => {
                    let mask = if n.prefix == 0 { 0 } else { u32::MAX << (32 - n.prefix.min(32) as u32) };
                    PoolSource::Single { addr: u32::from(a) & mask, mask }
                }
                IpAddr::V6(a) => {
                    let mask = crate::addr::mask6(n.prefix);
                    PoolSource::Single6 { addr: u128::from(a) & mask, mask }
                }
            },
            Addr::Range(IpAddr::V4(lo), _) => PoolSource::Single { addr: u32::from(*lo), mask: u32::MAX },
            Addr::Range(IpAddr::V6(lo), _) => PoolSource::Single6 { addr: u128::from(*lo), mask: u128::MAX },
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
            cursor6: PoolCursor6::fresh(),
            loads6: PoolLoads::default(),
        })
    }

    /// Whether the pool may give an address of family `v6` (a single
    /// address is of one family; tables and `(if)` are asked then).
    pub fn has_family(&self, v6: bool) -> bool {
        match self.source {
            PoolSource::Single { .. } => !v6,
            PoolSource::Single6 { .. } => v6,
            PoolSource::Table(_) | PoolSource::Dynamic { .. } => true,
        }
    }

    /// Runs `f` with the pool's addresses as they are now.
    fn with_addrs<R>(&self, if_addrs: IfAddrs, f: impl FnOnce(&PoolSpec) -> R) -> R {
        let spec = |addrs| PoolSpec { kind: self.kind, addrs, sticky: self.sticky };
        match &self.source {
            PoolSource::Single { addr, mask } => f(&spec(PoolAddrs::Single { addr: *addr, mask: *mask })),
            PoolSource::Single6 { .. } => f(&spec(PoolAddrs::Blocks(&BlockList(&[])))),
            PoolSource::Table(t) => {
                let view = t.pool_view();
                f(&spec(PoolAddrs::Blocks(&view)))
            }
            PoolSource::Dynamic { ifname, modifier, no_alias } => {
                let (blocks, n) = dyn_blocks(if_addrs(ifname).unwrap_or_default(), *no_alias, |a| match modifier {
                    IfAddrModifier::Address => Some((u32::from(a.addr), u32::MAX)),
                    IfAddrModifier::Network => Some((u32::from(a.network()), a.mask())),
                    IfAddrModifier::Broadcast => a.broadcast().map(|b| (u32::from(b), u32::MAX)),
                    // softnet's interfaces have no point-to-point peers
                    IfAddrModifier::Peer => None,
                });
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

impl CPool {
    /// `with_addrs` for the pool's IPv6 addresses: `(if)` gives the
    /// interface's IPv6 addresses in ascending order (as pf's radix walk
    /// of the dynamic address's table), `:network` without link-local
    /// ones (pfi_instance_add); there is no IPv6 broadcast or peer.
    fn with_addrs6<R>(&self, if_addrs: IfAddrs6, f: impl FnOnce(&PoolSpec<u128>) -> R) -> R {
        let spec = |addrs| PoolSpec { kind: self.kind, addrs, sticky: self.sticky };
        match &self.source {
            PoolSource::Single6 { addr, mask } => f(&spec(PoolAddrs::Single { addr: *addr, mask: *mask })),
            PoolSource::Single { .. } => f(&spec(PoolAddrs::Blocks(&BlockList(&[])))),
            PoolSource::Table(t) => {
                let view = t.pool_view();
                f(&spec(PoolAddrs::Blocks(&view)))
            }
            PoolSource::Dynamic { ifname, modifier, no_alias } => {
                let mut addrs: Vec<If6Addr> = if_addrs(ifname).unwrap_or_default();
                addrs.retain(|a| a.state == softnet_core::iface::Dad6State::Preferred);
                addrs.sort_by_key(|a| u128::from(a.addr));
                let (blocks, n) = dyn_blocks(addrs, *no_alias, |a| match modifier {
                    IfAddrModifier::Address => Some((u128::from(a.addr), u128::MAX)),
                    IfAddrModifier::Network if !is_link_local6(a.addr) => {
                        let m = crate::addr::mask6(a.prefix_len);
                        Some((u128::from(a.addr) & m, m))
                    }
                    _ => None,
                });
                f(&spec(PoolAddrs::Blocks(&BlockList(&blocks[..n]))))
            }
        }
    }

    /// `map` for an IPv6 connection from `saddr`.
    pub fn map6(&self, if_addrs: IfAddrs6, saddr: u128, sticky: Option<u128>) -> Option<u128> {
        let mut rng = softnet_core::rng::uniform;
        self.with_addrs6(if_addrs, |p| map_addr(p, &self.cursor6, Some(&self.loads6), saddr, None, sticky, &mut rng))
    }

    /// `get_sport` for an IPv6 connection from `saddr:sport`.
    #[allow(clippy::too_many_arguments)]
    pub fn get_sport6(
        &self,
        if_addrs: IfAddrs6,
        proto: u8,
        icmp_echo: bool,
        saddr: u128,
        sport: u16,
        sticky: Option<u128>,
        in_use: &mut dyn FnMut(u128, u16) -> bool,
    ) -> SportResult<u128> {
        let mut rng = softnet_core::rng::uniform;
        let range = (self.proxy_port[0], self.proxy_port[1]);
        self.with_addrs6(if_addrs, |p| {
            get_sport(
                p,
                &self.cursor6,
                Some(&self.loads6),
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

/// fe80::/10.
fn is_link_local6(a: std::net::Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests;
