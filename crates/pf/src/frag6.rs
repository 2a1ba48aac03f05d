//! IPv6 fragment reassembly before filtering, as pf_norm.c's
//! `pf_reassemble6` (with `pf_fillup_fragment` and `pf_join_fragment`):
//! fragments are held until their datagram is complete, then the whole
//! datagram is filtered, its fragment header taken out. Datagrams are
//! keyed by source, destination and identification (pf keys IPv6 with
//! protocol 0: only the first fragment's next header counts). A fragment
//! that overlaps one held drops the whole datagram (RFC 5722; pf's
//! `free_fragment` for AF_INET6), as does the 64-fragment entry-point
//! limit; the checks of a fragment alone and of the datagram's end are
//! those of IPv4 (`frag.rs`). The largest fragment payload is kept with
//! the datagram (`fr_maxlen`), and the stack cuts a datagram that pf
//! passes out again into fragments of that size (`PacketMeta::pf_frag_max`,
//! pf_refragment6: `softnet_core::refrag6`).

use std::net::Ipv6Addr;

use parking_lot::Mutex;
use softnet_core::filter::BufferSource;
use softnet_core::packet::PacketBuf;

use crate::frag::{Datagram, Frag, FragCounters, FragDrop, FragResult, QueueKey, Queues, PF_FRAG_STALE};

/// IPV6_MAXPACKET: the largest payload length.
const IPV6_MAXPACKET: usize = 65535;
const IPV6_HDR: usize = 40;
const FRAG_HDR: usize = 8;
const NH_FRAGMENT: u8 = 44;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey6 {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    id: u32,
}

impl QueueKey for FragKey6 {
    type Node = (Ipv6Addr, Ipv6Addr);
    fn node(&self) -> Self::Node {
        (self.src, self.dst)
    }
}

/// Where an IPv6 fragment's fragment header is: the unfragmentable part
/// (hop-by-hop, destination options, routing headers before it, RFC 8200
/// §4.5) and the byte that names the fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragHeader6 {
    /// Offset of the fragment header (the unfragmentable part's length,
    /// pf's `hdrlen`).
    pub hdrlen: usize,
    /// Offset of the next-header byte that says 44 (pf's `extoff`).
    pub extoff: usize,
    /// The fragment header's next header.
    pub next: u8,
    /// Offset of this fragment's payload in the datagram, in octets.
    pub off: usize,
    pub more: bool,
    pub id: u32,
}

/// The fragment header of an IPv6 packet (`d` starts at its header), if
/// it has one before any upper-layer header; `Err` for a chain that runs
/// past the packet.
#[allow(clippy::result_unit_err)] // one failure: the caller drops the packet as bad
pub fn find_frag_header(d: &[u8]) -> Result<Option<FragHeader6>, ()> {
    if d.len() < IPV6_HDR {
        return Err(());
    }
    let (mut nh, mut at, mut extoff) = (d[6], IPV6_HDR, 6);
    loop {
        match nh {
            // Hop-by-hop, routing, destination options.
            0 | 43 | 60 => {
                let h = d.get(at..at + 2).ok_or(())?;
                extoff = at;
                nh = h[0];
                at += (h[1] as usize + 1) * 8;
            }
            NH_FRAGMENT => {
                let h = d.get(at..at + FRAG_HDR).ok_or(())?;
                let offlg = u16::from_be_bytes([h[2], h[3]]);
                return Ok(Some(FragHeader6 {
                    hdrlen: at,
                    extoff,
                    next: h[0],
                    off: (offlg & 0xfff8) as usize,
                    more: offlg & 1 != 0,
                    id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                }));
            }
            _ => return Ok(None),
        }
    }
}

/// A datagram's queue and the largest fragment payload it had
/// (`fr_maxlen`), kept beside pf's common queue.
#[derive(Default)]
struct State6 {
    q: Queues<FragKey6>,
    maxlen: std::collections::HashMap<FragKey6, usize>,
}

#[derive(Default)]
pub struct FragCache6 {
    map: Mutex<State6>,
    pub count: FragCounters,
}

impl FragCache6 {
    pub fn new() -> FragCache6 {
        FragCache6::default()
    }

    /// Fragments held.
    pub fn len(&self) -> usize {
        self.count.held()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn drop_datagram(&self, st: &mut State6, k: &FragKey6, bufs: &mut dyn BufferSource) {
        st.maxlen.remove(k);
        if let Some(d) = st.q.remove(k) {
            self.count.release(bufs, d.frags);
        }
    }

    /// Takes one fragment (`pkt.data()` starts at its IPv6 header; `fh`
    /// is its fragment header). `room` is what `set limit frags` leaves
    /// after IPv4's fragments; `timeout_s` the `frag` timeout, which also
    /// bounds a datagram's age in generations (`PF_FRAG_STALE`).
    pub fn input(
        &self,
        pkt: PacketBuf,
        fh: FragHeader6,
        now_ns: u64,
        room: usize,
        timeout_s: u32,
        bufs: &mut dyn BufferSource,
    ) -> FragResult {
        let d = pkt.data();
        let total = (IPV6_HDR + u16::from_be_bytes([d[4], d[5]]) as usize).min(d.len());
        let start = fh.hdrlen + FRAG_HDR;
        let len = total.saturating_sub(start);
        if len == 0 || (fh.more && !len.is_multiple_of(8)) || fh.off + len > IPV6_MAXPACKET {
            return FragResult::Drop(pkt, FragDrop::Bad);
        }
        let key = FragKey6 { src: ip6_addr(d, 8), dst: ip6_addr(d, 24), id: fh.id };
        let new = Frag { off: fh.off, len, more: fh.more, start, pkt };
        let mut st = self.map.lock();
        if self.len() >= room {
            self.flush_lru(&mut st, bufs);
            if self.len() >= room {
                return FragResult::Drop(new.pkt, FragDrop::Memory);
            }
        }
        self.count.searched();
        if st.q.is_stale(&key, timeout_s.saturating_mul(PF_FRAG_STALE)) {
            self.drop_datagram(&mut st, &key, bufs);
        }
        let Some(dg) = st.q.dgrams.get_mut(&key) else {
            st.q.insert(key, Datagram::new(new, now_ns));
            st.maxlen.insert(key, len);
            self.count.queued();
            return FragResult::Kept;
        };
        dg.used = now_ns;
        // Against the datagram's end as known so far (pf_fillup_fragment).
        let last = dg.frags.last().expect("a queue is never empty");
        let (known, end) = (last.end(), new.end());
        let bad_end = (end < known && !new.more)
            || (!last.more && (end > known || (end == known && new.more)))
            || (last.more && end == known && !new.more);
        if bad_end {
            return FragResult::Drop(new.pkt, FragDrop::Bad);
        }
        // RFC 5722: any overlap drops the datagram, the newcomer with it.
        let pos = dg.frags.partition_point(|f| f.off <= new.off);
        let overlaps =
            (pos > 0 && dg.frags[pos - 1].end() > new.off) || dg.frags.get(pos).is_some_and(|f| new.end() > f.off);
        if overlaps {
            self.drop_datagram(&mut st, &key, bufs);
            return FragResult::Drop(new.pkt, FragDrop::Bad);
        }
        if let Err(new) = dg.insert(pos, new) {
            self.drop_datagram(&mut st, &key, bufs);
            return FragResult::Drop(new.pkt, FragDrop::Bad);
        }
        self.count.queued();
        let m = st.maxlen.entry(key).or_insert(0);
        *m = (*m).max(len);
        let maxlen = *m;
        if !st.q.dgrams.get(&key).is_some_and(|d| d.complete()) {
            return FragResult::Kept;
        }
        let Some(big) = bufs.alloc_large() else { return FragResult::Kept };
        let dg = st.q.remove(&key).expect("present");
        st.maxlen.remove(&key);
        drop(st);
        self.join(dg, maxlen, big, bufs)
    }

    /// pf_join_fragment and the rest of pf_reassemble6: the first
    /// fragment's unfragmentable part, every payload in order, the
    /// fragment header gone (its next header written where it was named),
    /// the payload length set; the identification and the largest
    /// fragment payload go in the metadata for pf_refragment6.
    fn join(&self, d: Datagram, maxlen: usize, mut big: PacketBuf, bufs: &mut dyn BufferSource) -> FragResult {
        let total = d.frags.last().expect("complete").end();
        let n = d.frags.len();
        let first = &d.frags[0].pkt;
        let fh = find_frag_header(first.data()).ok().flatten().expect("a held fragment has its header");
        let hdrlen = fh.hdrlen;
        let plen = hdrlen - IPV6_HDR + total;
        self.count.taken(n);
        if plen > IPV6_MAXPACKET || big.rewind(hdrlen + total).is_err() {
            let why = if plen > IPV6_MAXPACKET { FragDrop::TooBig } else { FragDrop::Memory };
            return FragResult::Drop(d.give_up(big, bufs), why);
        }
        big.meta = first.meta;
        big.meta.pf_frag_max = maxlen.min(u16::MAX as usize) as u16;
        big.meta.flow_hash = fh.id;
        {
            let b = big.data_mut();
            b[..hdrlen].copy_from_slice(&first.data()[..hdrlen]);
            b[fh.extoff] = fh.next;
            b[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
        }
        for f in &d.frags {
            big.data_mut()[hdrlen + f.off..hdrlen + f.end()].copy_from_slice(&f.pkt.data()[f.start..f.start + f.len]);
        }
        for f in d.frags {
            bufs.free(f.pkt);
        }
        FragResult::Done(big)
    }

    /// pf_flush_fragments: whole datagrams, least recently used first,
    /// until at most 90% of the fragments held are left.
    fn flush_lru(&self, st: &mut State6, bufs: &mut dyn BufferSource) {
        let goal = self.len() * 9 / 10;
        let mut lru: Vec<(u64, FragKey6)> = st.q.dgrams.iter().map(|(k, d)| (d.used, *k)).collect();
        lru.sort_unstable_by_key(|(used, _)| *used);
        for (_, k) in lru {
            if self.len() <= goal {
                break;
            }
            self.drop_datagram(st, &k, bufs);
        }
    }

    /// Drops datagrams older than `timeout_ns`, their buffers to `bufs`
    /// (as `FragCache::expire`); returns fragments freed.
    pub fn expire(&self, now_ns: u64, timeout_ns: u64, bufs: &mut dyn BufferSource) -> usize {
        let mut st = self.map.lock();
        let dead: Vec<FragKey6> =
            st.q.dgrams
                .iter()
                .filter(|(_, d)| now_ns.saturating_sub(d.created) >= timeout_ns)
                .map(|(k, _)| *k)
                .collect();
        let mut n = 0;
        for k in dead {
            st.maxlen.remove(&k);
            let d = st.q.remove(&k).expect("listed");
            n += d.frags.len();
            self.count.release(bufs, d.frags);
        }
        n
    }

    /// Drops everything held (freed, not pooled, as `FragCache::flush`).
    pub fn flush(&self) -> usize {
        self.expire(u64::MAX, 0, &mut crate::frag::NoPool)
    }
}

fn ip6_addr(d: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&d[at..at + 16]);
    Ipv6Addr::from(a)
}

#[cfg(test)]
mod tests;
