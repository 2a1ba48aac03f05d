//! Fragment reassembly before filtering, as pf does by default
//! (`pf_normalize_ip` / `pf_reassemble`): fragments are held until their
//! datagram is complete, then the whole datagram is filtered. Fragments
//! that overlap one already held are dropped (pf trims partial IPv4
//! overlaps; softnet drops the newcomer instead, which never yields a
//! datagram pf would not also have refused to build from conflicting
//! data). Incomplete datagrams expire after the `frag` timeout.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use softnet_core::filter::BufferSource;
use softnet_core::packet::PacketBuf;
use softnet_wire::ipv4::{Ipv4Packet, MIN_HEADER_LEN};

const IP_MAXPACKET: usize = 65535;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    proto: u8,
}

struct Frag {
    off: usize,
    len: usize,
    more: bool,
    pkt: PacketBuf,
}

struct Datagram {
    frags: Vec<Frag>,
    /// Total payload length, known once the last fragment arrived.
    total: Option<usize>,
    created: u64,
}

/// Why a fragment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragDrop {
    /// Offset plus length beyond 65535, or a non-last fragment whose
    /// length is not a multiple of 8 (`bad-offset` / `normalize`).
    BadOffset,
    Normalize,
    /// Overlaps a fragment already held (`fragment`).
    Overlap,
    /// The frags limit or no large buffer (`memory`).
    Memory,
}

pub enum FragResult {
    /// Held until the datagram is complete.
    Kept,
    /// The reassembled datagram (in a large buffer).
    Done(PacketBuf),
    Drop(PacketBuf, FragDrop),
}

#[derive(Default)]
pub struct FragCache {
    map: Mutex<HashMap<FragKey, Datagram>>,
    held: std::sync::atomic::AtomicUsize,
    /// pf's `ncounters` (`pfctl -si -v` "Fragments"): lookups of a
    /// fragment's datagram, fragments queued, fragments taken off a queue
    /// (reassembled, expired or flushed). Written under `map`'s lock.
    pub searches: AtomicU64,
    pub inserts: AtomicU64,
    pub removals: AtomicU64,
}

impl FragCache {
    pub fn new() -> FragCache {
        FragCache::default()
    }

    /// Fragments held.
    pub fn len(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes one fragment (`pkt.data()` starts at its IPv4 header).
    pub fn input(&self, pkt: PacketBuf, now_ns: u64, limit: usize, bufs: &mut dyn BufferSource) -> FragResult {
        let (key, off, len, more, hlen) = {
            let ip = Ipv4Packet::new_unchecked(pkt.data());
            let hlen = ip.header_len() as usize;
            let tot = (ip.total_len() as usize).min(pkt.len());
            (
                FragKey { src: ip.src(), dst: ip.dst(), id: ip.ident(), proto: ip.protocol().0 },
                ip.frag_offset() as usize,
                tot.saturating_sub(hlen),
                ip.more_frags(),
                hlen,
            )
        };
        let _ = hlen;
        if off + len > IP_MAXPACKET - MIN_HEADER_LEN {
            return FragResult::Drop(pkt, FragDrop::BadOffset);
        }
        if more && (len == 0 || len % 8 != 0) {
            return FragResult::Drop(pkt, FragDrop::Normalize);
        }
        if self.len() >= limit {
            return FragResult::Drop(pkt, FragDrop::Memory);
        }
        let mut map = self.map.lock();
        self.searches.fetch_add(1, Ordering::Relaxed);
        let d = map.entry(key).or_insert_with(|| Datagram { frags: Vec::new(), total: None, created: now_ns });
        if d.frags.iter().any(|f| off < f.off + f.len && f.off < off + len) {
            return FragResult::Drop(pkt, FragDrop::Overlap);
        }
        if !more {
            if d.total.is_some() || d.frags.iter().any(|f| f.off + f.len > off + len) {
                return FragResult::Drop(pkt, FragDrop::Overlap);
            }
            d.total = Some(off + len);
        } else if d.total.is_some_and(|t| off + len > t) {
            return FragResult::Drop(pkt, FragDrop::Overlap);
        }
        let pos = d.frags.partition_point(|f| f.off < off);
        d.frags.insert(pos, Frag { off, len, more, pkt });
        self.held.fetch_add(1, Ordering::Relaxed);
        self.inserts.fetch_add(1, Ordering::Relaxed);
        // Complete when the fragments cover 0..total without holes.
        let Some(total) = d.total else { return FragResult::Kept };
        let mut at = 0;
        for f in &d.frags {
            if f.off != at {
                return FragResult::Kept;
            }
            at += f.len;
        }
        if at != total {
            return FragResult::Kept;
        }
        let Some(mut big) = bufs.alloc_large() else {
            return FragResult::Kept;
        };
        let d = map.remove(&key).expect("present");
        drop(map);
        self.held.fetch_sub(d.frags.len(), Ordering::Relaxed);
        self.removals.fetch_add(d.frags.len() as u64, Ordering::Relaxed);
        let first = &d.frags[0].pkt;
        let fhlen = Ipv4Packet::new_unchecked(first.data()).header_len() as usize;
        if big.rewind(fhlen + total).is_err() {
            for f in d.frags {
                bufs.free(f.pkt);
            }
            return FragResult::Drop(big, FragDrop::Memory);
        }
        big.meta = first.meta;
        big.data_mut()[..fhlen].copy_from_slice(&first.data()[..fhlen]);
        for f in &d.frags {
            let h = Ipv4Packet::new_unchecked(f.pkt.data()).header_len() as usize;
            big.data_mut()[fhlen + f.off..fhlen + f.off + f.len].copy_from_slice(&f.pkt.data()[h..h + f.len]);
            debug_assert!(f.more || f.off + f.len == total);
        }
        for f in d.frags {
            bufs.free(f.pkt);
        }
        {
            let mut ip = Ipv4Packet::new_unchecked(big.data_mut());
            let df = ip.dont_frag();
            ip.set_total_len((fhlen + total) as u16);
            ip.set_flags_frag(df, false, 0);
            ip.fill_checksum();
        }
        FragResult::Done(big)
    }

    /// Drops datagrams older than `timeout_ns`; returns fragments freed.
    pub fn expire(&self, now_ns: u64, timeout_ns: u64) -> usize {
        let mut map = self.map.lock();
        let mut n = 0;
        map.retain(|_, d| {
            let keep = now_ns.saturating_sub(d.created) < timeout_ns;
            if !keep {
                n += d.frags.len();
            }
            keep
        });
        self.held.fetch_sub(n, Ordering::Relaxed);
        self.removals.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Drops everything held.
    pub fn flush(&self) -> usize {
        self.expire(u64::MAX, 0)
    }
}
