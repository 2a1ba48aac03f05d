//! A worker's private cache of resolved IPv6 next hops in front of the
//! neighbor cache (see the module docs of [`super`]).

use crate::iface::IfIndex;
use crate::packet::PacketBuf;
use crate::time::Instant;
use softnet_wire::ethernet::MacAddr;
use std::net::Ipv6Addr;

/// Slots of the per-worker cache (a power of two).
const CACHE_SLOTS: usize = 64;
/// Bound of the cache's dropped-frame list.
const CACHE_DROPPED_MAX: usize = 128;

#[derive(Copy, Clone)]
struct CacheSlot {
    /// `IfIndex::NONE` marks an empty slot.
    ifindex: IfIndex,
    addr: Ipv6Addr,
    mac: MacAddr,
    valid_until: Instant,
}

const EMPTY_SLOT: CacheSlot =
    CacheSlot { ifindex: IfIndex::NONE, addr: Ipv6Addr::UNSPECIFIED, mac: MacAddr::ZERO, valid_until: Instant::ZERO };

/// A worker's direct-mapped cache of (interface, address) → MAC, valid
/// while the table's generation stays and until each slot's deadline.
pub struct Nd6WorkerCache {
    generation: u64,
    slots: [CacheSlot; CACHE_SLOTS],
    dropped: Vec<PacketBuf>,
}

impl Default for Nd6WorkerCache {
    fn default() -> Self {
        Self::new()
    }
}

impl Nd6WorkerCache {
    pub fn new() -> Self {
        Nd6WorkerCache {
            generation: 0,
            slots: [EMPTY_SLOT; CACHE_SLOTS],
            dropped: Vec::with_capacity(CACHE_DROPPED_MAX),
        }
    }

    #[inline]
    fn slot_of(addr: Ipv6Addr) -> usize {
        // Fibonacci hashing of the interface identifier half, where
        // neighbors on one link differ.
        let low = u128::from(addr) as u64;
        (low.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - CACHE_SLOTS.trailing_zeros())) as usize
    }

    #[inline]
    pub(super) fn lookup(
        &mut self,
        generation: u64,
        now: Instant,
        ifindex: IfIndex,
        addr: Ipv6Addr,
    ) -> Option<MacAddr> {
        if self.generation != generation {
            self.slots = [EMPTY_SLOT; CACHE_SLOTS];
            self.generation = generation;
            return None;
        }
        let s = &self.slots[Self::slot_of(addr)];
        if s.ifindex == ifindex && s.addr == addr && now < s.valid_until {
            Some(s.mac)
        } else {
            None
        }
    }

    #[inline]
    pub(super) fn insert(&mut self, ifindex: IfIndex, addr: Ipv6Addr, mac: MacAddr, valid_until: Instant) {
        self.slots[Self::slot_of(addr)] = CacheSlot { ifindex, addr, mac, valid_until };
    }

    pub(super) fn push_dropped(&mut self, p: PacketBuf) {
        if self.dropped.len() < CACHE_DROPPED_MAX {
            self.dropped.push(p);
        } // else: nobody drains; the buffer is freed here.
    }

    /// Frames the neighbor cache gave up on in bulk (a purged hold
    /// queue), already counted in `Nd6Stats`: the worker returns them to
    /// its pool.
    pub fn drain_dropped(&mut self) -> std::vec::Drain<'_, PacketBuf> {
        self.dropped.drain(..)
    }
}
