//! IPv6 addresses of live states by a 32-bit id, so that an IPv6 key
//! packs into the same two index words as an IPv4 key (its addresses'
//! ids where an IPv4 key has the addresses, and `KEY_INET6` beside the
//! protocol). The index, its lock-free probes and the slot mirrors are
//! then the same for both families, and the IPv4 path does not change.
//!
//! pf compares whole `pf_state_key`s (two 16-byte `pf_addr`s); here the
//! ids stand for the addresses exactly: an address has one id while any
//! state's key holds it (counted), and an id freed when its last state
//! goes is handed out again only after `REUSE_DELAY` other ids were
//! freed, so a packet that read an id just before its address went does
//! not meet a new address under it. A packet whose address has no id has
//! no state (`NO_ID` in its words matches none).
//!
//! The table is shared by every `StateTable` of the process (ids are only
//! names), sharded by address; a packet's lookup takes one shard lock
//! per address, a state's insert and removal one per address too.

use std::collections::{HashMap, VecDeque};
use std::sync::LazyLock;

use parking_lot::Mutex;

use crate::addr::PfAddr;

/// No address has this id: words with it match no state.
pub const NO_ID: u32 = 0;
const SHARDS: usize = 64;
/// Freed ids wait behind this many others before reuse.
const REUSE_DELAY: usize = 4096;

/// A multiply-xorshift hash of an address: the map is keyed by addresses
/// only, and SipHash would cost an IPv6 packet more than its lookup.
#[derive(Default, Clone, Copy)]
struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u128(&mut self, a: u128) {
        let x = (a as u64 ^ (a >> 64) as u64 ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}

/// Address → (id, states' keys holding it).
type IdShard = Mutex<HashMap<u128, (u32, u32), std::hash::BuildHasherDefault<AddrHasher>>>;

struct Ids {
    shards: Box<[IdShard]>,
    /// id → address (index 0 unused).
    by_id: Mutex<Vec<u128>>,
    free: Mutex<VecDeque<u32>>,
}

static IDS: LazyLock<Ids> = LazyLock::new(|| Ids {
    shards: (0..SHARDS).map(|_| Mutex::new(HashMap::default())).collect(),
    by_id: Mutex::new(vec![0]),
    free: Mutex::new(VecDeque::new()),
});

#[inline]
fn shard(a: u128) -> usize {
    let x = (a as u64) ^ (a >> 64) as u64;
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % SHARDS
}

/// The id of `a` while a state holds it, else `NO_ID`.
#[inline]
pub fn lookup(a: PfAddr) -> u32 {
    let a = a.u128();
    IDS.shards[shard(a)].lock().get(&a).map_or(NO_ID, |e| e.0)
}

/// `a`'s id, given one if it has none, counted as held once more.
pub fn acquire(a: PfAddr) -> u32 {
    let a = a.u128();
    let mut m = IDS.shards[shard(a)].lock();
    if let Some(e) = m.get_mut(&a) {
        e.1 += 1;
        return e.0;
    }
    let reused = {
        let mut f = IDS.free.lock();
        if f.len() > REUSE_DELAY {
            f.pop_front()
        } else {
            None
        }
    };
    let mut by_id = IDS.by_id.lock();
    let id = match reused {
        Some(id) => {
            by_id[id as usize] = a;
            id
        }
        None => {
            by_id.push(a);
            (by_id.len() - 1) as u32
        }
    };
    m.insert(a, (id, 1));
    id
}

/// One hold of `id` given back; the last one frees it.
pub fn release(id: u32) {
    if id == NO_ID {
        return;
    }
    let Some(a) = IDS.by_id.lock().get(id as usize).copied() else { return };
    let mut m = IDS.shards[shard(a)].lock();
    let Some(e) = m.get_mut(&a) else { return };
    if e.0 != id {
        return;
    }
    e.1 -= 1;
    if e.1 == 0 {
        m.remove(&a);
        drop(m);
        IDS.free.lock().push_back(id);
    }
}

/// The address `id` stands for (`UNSPECIFIED` for `NO_ID` or a freed id
/// never reused).
pub fn addr_of(id: u32) -> PfAddr {
    let a = IDS.by_id.lock().get(id as usize).copied().unwrap_or(0);
    PfAddr([(a >> 96) as u32, (a >> 64) as u32, (a >> 32) as u32, a as u32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_keeps_its_id_while_held_and_loses_it_after() {
        let a = PfAddr::from_v6("2001:db8:ffff::77".parse().unwrap());
        assert_eq!(lookup(a), NO_ID);
        let id = acquire(a);
        assert_ne!(id, NO_ID);
        assert_eq!(acquire(a), id);
        assert_eq!(lookup(a), id);
        assert_eq!(addr_of(id), a);
        release(id);
        assert_eq!(lookup(a), id);
        release(id);
        assert_eq!(lookup(a), NO_ID);
        // A freed id is not handed out again at once.
        let b = PfAddr::from_v6("2001:db8:ffff::78".parse().unwrap());
        let id2 = acquire(b);
        assert_ne!(id2, id);
        release(id2);
    }
}
