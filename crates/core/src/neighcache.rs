//! A worker's private cache of resolved next hops, in front of ARP's
//! table (`arp/`) and the neighbor cache (`nd6/`): a direct-mapped array
//! of (interface, address) → MAC, valid while the table's generation
//! stays and until each slot's deadline, so that a hit costs one load of
//! the table's generation, a hash and a compare, and no lock. Beside it,
//! the frames the table gave up on in bulk (a purged hold queue, already
//! counted) for the worker to give back to its pool.

use crate::iface::IfIndex;
use crate::packet::PacketBuf;
use crate::time::Instant;
use softnet_wire::ethernet::MacAddr;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Slots of the cache (a power of two).
const SLOTS: usize = 64;
/// Bound of the dropped-frame list.
const DROPPED_MAX: usize = 128;

/// A next hop's address: IPv4 or IPv6.
pub trait NextHopAddr: Copy + Eq {
    const UNSPECIFIED: Self;
    /// The slot of the address, from Fibonacci hashing.
    fn slot(self) -> usize;
}

impl NextHopAddr for Ipv4Addr {
    const UNSPECIFIED: Self = Ipv4Addr::UNSPECIFIED;
    #[inline]
    fn slot(self) -> usize {
        (u32::from(self).wrapping_mul(0x9E37_79B1) >> (32 - SLOTS.trailing_zeros())) as usize
    }
}

impl NextHopAddr for Ipv6Addr {
    const UNSPECIFIED: Self = Ipv6Addr::UNSPECIFIED;
    /// The interface identifier half, where neighbors on one link differ.
    #[inline]
    fn slot(self) -> usize {
        let low = u128::from(self) as u64;
        (low.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize
    }
}

#[derive(Copy, Clone)]
struct Slot<A> {
    /// `IfIndex::NONE` marks an empty slot.
    ifindex: IfIndex,
    addr: A,
    mac: MacAddr,
    valid_until: Instant,
}

impl<A: NextHopAddr> Slot<A> {
    const EMPTY: Slot<A> =
        Slot { ifindex: IfIndex::NONE, addr: A::UNSPECIFIED, mac: MacAddr::ZERO, valid_until: Instant::ZERO };
}

/// The cache of one worker for one family (see the module docs).
pub struct NeighCache<A: NextHopAddr> {
    generation: u64,
    slots: [Slot<A>; SLOTS],
    dropped: Vec<PacketBuf>,
}

impl<A: NextHopAddr> Default for NeighCache<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: NextHopAddr> NeighCache<A> {
    pub fn new() -> Self {
        NeighCache { generation: 0, slots: [Slot::EMPTY; SLOTS], dropped: Vec::with_capacity(DROPPED_MAX) }
    }

    /// The MAC of `addr` on `ifindex` if cached under the table's current
    /// `generation` and not past its deadline; a moved generation empties
    /// the cache.
    #[inline]
    pub(crate) fn lookup(&mut self, generation: u64, now: Instant, ifindex: IfIndex, addr: A) -> Option<MacAddr> {
        if self.generation != generation {
            self.slots = [Slot::EMPTY; SLOTS];
            self.generation = generation;
            return None;
        }
        let s = &self.slots[addr.slot()];
        if s.ifindex == ifindex && s.addr == addr && now < s.valid_until {
            Some(s.mac)
        } else {
            None
        }
    }

    #[inline]
    pub(crate) fn insert(&mut self, ifindex: IfIndex, addr: A, mac: MacAddr, valid_until: Instant) {
        self.slots[addr.slot()] = Slot { ifindex, addr, mac, valid_until };
    }

    pub(crate) fn push_dropped(&mut self, p: PacketBuf) {
        if self.dropped.len() < DROPPED_MAX {
            self.dropped.push(p);
        } // else: nobody drains; the buffer is freed here.
    }

    /// Frames the table gave up on in bulk (a purged hold queue), already
    /// counted in its stats: the worker returns them to its pool.
    pub fn drain_dropped(&mut self) -> std::vec::Drain<'_, PacketBuf> {
        self.dropped.drain(..)
    }
}
