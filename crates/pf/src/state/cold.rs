//! What few states have, beside the slab (`StateCold` by slot, and the
//! readers of the scrub and routing side arrays), and what a table gives
//! back when it goes (the IPv6 address ids of its states).

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

/// The side arrays' readers: a state's routing option, scrub values and
/// `reassemble tcp` peers.
impl StateTable {
    /// The routing option of the state in slot `idx` (`rt`, its next hop,
    /// `direction`, its `divert-packet` port or 0), if it is live and
    /// still the state of `rule` (ruleset generation, number) that a
    /// packet matched.
    pub fn route_of(&self, idx: u32, rule: (u32, u32)) -> Option<(u8, crate::route::Hop, u8, u16)> {
        let g = self.slot(idx)?.lock();
        let c = self.cold(idx);
        let ifp = (c.rt_if.index != softnet_core::iface::IfIndex::NONE).then_some(c.rt_if);
        let nh = crate::route::Hop { addr: c.rt_addr, ifp };
        (g.live && (g.rt != 0 || c.divert_port != 0) && (g.ruleset_gen, g.rule_nr) == rule).then_some((
            g.rt,
            nh,
            g.direction,
            c.divert_port,
        ))
    }

    /// The scrubbing of the state in slot `idx` if it is still the state
    /// of `rule` (pf_test's pf_scrub with the state's values).
    pub fn scrub_of(&self, idx: u32, rule: (u32, u32)) -> Option<crate::scrub::ScrubActs> {
        let g = self.slot(idx)?.lock();
        if !g.live || g.flags & sflags::SCRUB == 0 || (g.ruleset_gen, g.rule_nr) != rule {
            return None;
        }
        let e = self.scrub.get(idx as usize / CHUNK)?.get()?.get(idx as usize % CHUNK)?;
        Some(crate::scrub::ScrubActs::unpack(e.load(Ordering::Relaxed)))
    }

    /// The scrub values of slot `idx` as inserted, read without the
    /// slot's lock (the caller holds it, or reads a value fixed at insert).
    pub fn scrub_word(&self, idx: u32) -> crate::scrub::ScrubActs {
        let e = self.scrub.get(idx as usize / CHUNK).and_then(|c| c.get()).and_then(|c| c.get(idx as usize % CHUNK));
        crate::scrub::ScrubActs::unpack(e.map_or(0, |e| e.load(Ordering::Relaxed)))
    }

    /// The `reassemble tcp` peers (source, destination) of slot `idx`;
    /// the caller holds the slot's lock. None: the state has none.
    pub fn tcp_scrub_load(&self, idx: u32) -> Option<[crate::tcpnorm::PeerScrub; 2]> {
        let e = self.tcp_scrub.get(idx as usize / CHUNK)?.get()?.get(idx as usize % CHUNK)?;
        let w = |k: usize| std::array::from_fn(|i| e[k * 4 + i].load(Ordering::Relaxed));
        Some([crate::tcpnorm::PeerScrub::unpack(w(0)), crate::tcpnorm::PeerScrub::unpack(w(1))])
    }

    /// Stores what `tcp_scrub_load` gave, changed; the caller holds the
    /// slot's lock.
    pub fn tcp_scrub_store(&self, idx: u32, p: &[crate::tcpnorm::PeerScrub; 2]) {
        let Some(e) =
            self.tcp_scrub.get(idx as usize / CHUNK).and_then(|c| c.get()).and_then(|c| c.get(idx as usize % CHUNK))
        else {
            return;
        };
        for (k, peer) in p.iter().enumerate() {
            for (i, w) in peer.pack().into_iter().enumerate() {
                e[k * 4 + i].store(w, Ordering::Relaxed);
            }
        }
    }
}
