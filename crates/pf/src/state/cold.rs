//! What few states have, beside the slab (`StateCold` by slot), and what
//! a table gives back when it goes (the IPv6 address ids of its states).

use super::*;
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;

/// A state's `StateCold` by slot: the `log (all)` match rules, the next
/// hop's address (an IPv4 one in the first word, or an IPv6 one in two
/// words with `rt_inet6` set) and interface (index, generation). Written
/// before the state is published, read without a lock after.
#[derive(Default)]
pub struct ColdSlot {
    log: [AtomicU32; LOG_MATCH_MAX],
    rt_addr: AtomicU32,
    rt_inet6: AtomicBool,
    rt_addr6: [AtomicU64; 2],
    rt_if: AtomicU64,
    divert_port: AtomicU32,
}

/// The `ColdSlot`s of one slab chunk, made with the chunk's first state
/// that has one.
pub(super) type ColdChunk = OnceLock<Box<[ColdSlot]>>;

impl StateTable {
    /// Slot `idx`'s `StateCold` (before the state is published).
    pub(super) fn set_cold(&self, idx: u32, cold: &StateCold) {
        let chunk = self.cold[idx as usize / CHUNK].get_or_init(|| (0..CHUNK).map(|_| ColdSlot::default()).collect());
        let e = &chunk[idx as usize % CHUNK];
        for (a, v) in e.log.iter().zip(cold.log_match) {
            a.store(v, Ordering::Relaxed);
        }
        match cold.rt_addr {
            IpAddr::V4(a) => {
                e.rt_addr.store(u32::from(a), Ordering::Relaxed);
                e.rt_inet6.store(false, Ordering::Relaxed);
            }
            IpAddr::V6(a) => {
                let w = u128::from(a);
                e.rt_addr6[0].store((w >> 64) as u64, Ordering::Relaxed);
                e.rt_addr6[1].store(w as u64, Ordering::Relaxed);
                e.rt_inet6.store(true, Ordering::Relaxed);
            }
        }
        e.rt_if.store(cold.rt_if.index.0 as u64 | (cold.rt_if.generation as u64) << 32, Ordering::Relaxed);
        e.divert_port.store(u32::from(cold.divert_port), Ordering::Relaxed);
    }

    /// The `StateCold` of slot `idx` (the default for a state without one).
    pub fn cold(&self, idx: u32) -> StateCold {
        let Some(e) = self.cold.get(idx as usize / CHUNK).and_then(|c| c.get()).map(|c| &c[idx as usize % CHUNK])
        else {
            return StateCold::default();
        };
        let w = e.rt_if.load(Ordering::Acquire);
        StateCold {
            log_match: std::array::from_fn(|i| e.log[i].load(Ordering::Acquire)),
            rt_addr: if e.rt_inet6.load(Ordering::Acquire) {
                let hi = e.rt_addr6[0].load(Ordering::Acquire) as u128;
                IpAddr::V6(std::net::Ipv6Addr::from(hi << 64 | e.rt_addr6[1].load(Ordering::Acquire) as u128))
            } else {
                IpAddr::V4(Ipv4Addr::from(e.rt_addr.load(Ordering::Acquire)))
            },
            rt_if: softnet_core::iface::WeakIf {
                index: softnet_core::iface::IfIndex(w as u32),
                generation: (w >> 32) as u32,
            },
            divert_port: e.divert_port.load(Ordering::Acquire) as u16,
        }
    }
}

/// The IPv6 address ids the live states hold go back with the table.
impl Drop for StateTable {
    fn drop(&mut self) {
        for idx in 0..self.high_water() {
            let Some(s) = self.slot(idx) else { continue };
            if s.bind.load(Ordering::Relaxed) & BIND_LIVE == 0 {
                continue;
            }
            release_key(s.key_words());
            if let Some(nk) = self.nat_key(idx) {
                release_key(nk);
            }
        }
    }
}
