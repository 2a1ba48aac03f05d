//! Fragment reassembly before filtering, as pf does by default
//! (pf_norm.c `pf_reassemble`, `pf_fillup_fragment`, `pf_join_fragment`):
//! fragments are held until their datagram is complete, then the whole
//! datagram is filtered. A fragment overlapping held ones is trimmed at
//! its head, and the held fragments it overlaps are trimmed at theirs or,
//! when it covers them whole, dropped (IPv4 keeps the newest data, as pf
//! does). A fragment wholly inside one already held is dropped. More than
//! `PF_FRAG_ENTRY_LIMIT` (64) fragments in one 4096-octet stretch of a
//! datagram (`PF_FRAG_ENTRY_POINTS`, 16 of them) drops the datagram.
//! A fragment with DF set is refused (pf_normalize_ip). Incomplete
//! datagrams expire after the `frag` timeout, or sooner when `PF_FRAG_STALE`
//! newer datagrams per second of it came between the same hosts
//! (pf_find_fragment); at the `frags` limit the least recently used ones
//! make room (pf_flush_fragments).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use softnet_core::filter::BufferSource;
use softnet_core::packet::PacketBuf;
use softnet_wire::ipv4::Ipv4Packet;

const IP_MAXPACKET: usize = 65535;
/// pfvar.h: the queue of one datagram is indexed by 16 entry points,
/// each covering 4096 octets of the payload ...
pub const PF_FRAG_ENTRY_POINTS: usize = 16;
/// ... and each may hold at most this many fragments.
pub const PF_FRAG_ENTRY_LIMIT: u8 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    proto: u8,
}

/// One held fragment (`pf_frent`): payload octets `off..off + len` of
/// the datagram, found at `start` in `pkt` (past its IP header and past
/// whatever a later fragment's overlap trimmed off its head).
pub(crate) struct Frag {
    pub(crate) off: usize,
    pub(crate) len: usize,
    pub(crate) more: bool,
    pub(crate) start: usize,
    pub(crate) pkt: PacketBuf,
}

impl Frag {
    pub(crate) fn end(&self) -> usize {
        self.off + self.len
    }
}

/// `pf_frent_index`.
fn entry_index(off: usize) -> usize {
    off / (0x10000 / PF_FRAG_ENTRY_POINTS)
}

/// One datagram's queue (`pf_fragment`), sorted by offset, never
/// overlapping.
pub(crate) struct Datagram {
    pub(crate) frags: Vec<Frag>,
    /// Fragments per entry point (`fr_entries`).
    entries: [u8; PF_FRAG_ENTRY_POINTS],
    pub(crate) created: u64,
    /// Generation among its node's datagrams (`fr_gen`).
    gen: u32,
    /// Last fragment seen (pf keeps its queue of datagrams in this order).
    pub(crate) used: u64,
}

impl Datagram {
    /// A complete datagram that cannot be joined (too big, or `big` too
    /// small): `big` and every fragment but the first go back to `bufs`;
    /// the first is the one the caller drops and counts.
    pub(crate) fn give_up(self, big: PacketBuf, bufs: &mut dyn BufferSource) -> PacketBuf {
        let mut frags = self.frags.into_iter();
        let keep = frags.next().expect("complete").pkt;
        for f in frags {
            bufs.free(f.pkt);
        }
        bufs.free(big);
        keep
    }

    /// A queue holding its first fragment.
    pub(crate) fn new(first: Frag, now_ns: u64) -> Datagram {
        let mut d = Datagram {
            frags: Vec::with_capacity(4),
            entries: [0; PF_FRAG_ENTRY_POINTS],
            created: now_ns,
            gen: 0,
            used: now_ns,
        };
        let _ = d.insert(0, first);
        d
    }

    /// `pf_frent_insert`: refused when its entry point is full.
    pub(crate) fn insert(&mut self, pos: usize, f: Frag) -> Result<(), Frag> {
        let i = entry_index(f.off);
        if self.entries[i] >= PF_FRAG_ENTRY_LIMIT {
            return Err(f);
        }
        self.entries[i] += 1;
        self.frags.insert(pos, f);
        Ok(())
    }

    /// `pf_frent_remove`.
    pub(crate) fn remove(&mut self, pos: usize) -> Frag {
        let f = self.frags.remove(pos);
        self.entries[entry_index(f.off)] -= 1;
        f
    }

    /// No holes: the fragments cover `0..end` of the last one, which has
    /// no more-fragments flag (pf counts `fr_holes` as it goes; the queue
    /// is at most 16 * 64 long).
    pub(crate) fn complete(&self) -> bool {
        let mut at = 0;
        for f in &self.frags {
            if f.off != at {
                return false;
            }
            at = f.end();
        }
        self.frags.last().is_some_and(|f| !f.more)
    }
}

/// Why a fragment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragDrop {
    /// `pf_fillup_fragment`'s bad fragments (`fragment`): with DF set
    /// (pf_normalize_ip), empty, not a
    /// multiple of 8 octets with more to come, past 65535 octets, in
    /// conflict with the datagram's end, or over the entry-point limit
    /// (which drops the held fragments too).
    Bad,
    /// Wholly inside a fragment already held: dropped as pf's
    /// `drop_fragment` does (pf sets no reason; softnet counts it as
    /// `fragment`).
    Duplicate,
    /// The datagram joined is longer than 65535 octets (`short`).
    TooBig,
    /// The frags limit even after pf_flush_fragments, or no large buffer
    /// (`memory`).
    Memory,
}

pub enum FragResult {
    /// Held until the datagram is complete.
    Kept,
    /// The reassembled datagram (in a large buffer).
    Done(PacketBuf),
    Drop(PacketBuf, FragDrop),
}

/// pf_norm.c's `pf_frnode`: the datagrams of one (source, destination,
/// protocol), counted, and the generation the next one gets.
#[derive(Default, Clone, Copy)]
struct FragNode {
    gen: u32,
    datagrams: u32,
}

/// A datagram's key and the key of its node (`pf_frnode`: the hosts and
/// protocol, IPv4 or IPv6).
pub(crate) trait QueueKey: Copy + Eq + std::hash::Hash {
    type Node: Copy + Eq + std::hash::Hash;
    fn node(&self) -> Self::Node;
}

impl QueueKey for FragKey {
    type Node = (Ipv4Addr, Ipv4Addr, u8);
    fn node(&self) -> Self::Node {
        (self.src, self.dst, self.proto)
    }
}

/// The datagrams being reassembled and their nodes; every datagram goes
/// in and out through `insert`/`remove`, which keep the nodes' counts.
pub(crate) struct Queues<K: QueueKey> {
    pub(crate) dgrams: HashMap<K, Datagram>,
    nodes: HashMap<K::Node, FragNode>,
}

impl<K: QueueKey> Default for Queues<K> {
    fn default() -> Self {
        Queues { dgrams: HashMap::new(), nodes: HashMap::new() }
    }
}

impl<K: QueueKey> Queues<K> {
    fn node_key(k: &K) -> K::Node {
        k.node()
    }

    pub(crate) fn insert(&mut self, k: K, mut d: Datagram) {
        let n = self.nodes.entry(Self::node_key(&k)).or_default();
        d.gen = n.gen;
        n.gen = n.gen.wrapping_add(1);
        n.datagrams += 1;
        self.dgrams.insert(k, d);
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<Datagram> {
        let d = self.dgrams.remove(k)?;
        let nk = Self::node_key(k);
        if let Some(n) = self.nodes.get_mut(&nk) {
            n.datagrams -= 1;
            if n.datagrams == 0 {
                self.nodes.remove(&nk);
            }
        }
        Some(d)
    }

    /// pf_find_fragment's staleness (RFC 4963): a datagram `stale` or
    /// more generations older than its node's newest is dropped when it
    /// is looked up.
    pub(crate) fn is_stale(&self, k: &K, stale: u32) -> bool {
        match (self.dgrams.get(k), self.nodes.get(&Self::node_key(k))) {
            (Some(d), Some(n)) => n.gen.wrapping_sub(d.gen) >= stale,
            _ => false,
        }
    }
}

/// pfvar.h `PF_FRAG_STALE`: the `frag` timeout counts in multiples of
/// this many datagrams per (source, destination, protocol).
pub const PF_FRAG_STALE: u32 = 200;

/// What each family's fragment cache counts: the fragments it holds
/// (against `set limit frags`) and pf's `ncounters` (`pfctl -si -v`
/// "Fragments"): lookups of a fragment's datagram, fragments queued,
/// fragments taken off a queue (reassembled, trimmed away, expired or
/// flushed). Written under the cache's lock.
#[derive(Default)]
pub struct FragCounters {
    held: AtomicUsize,
    pub searches: AtomicU64,
    pub inserts: AtomicU64,
    pub removals: AtomicU64,
}

impl FragCounters {
    /// Fragments held.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub(crate) fn searched(&self) {
        self.searches.fetch_add(1, Ordering::Relaxed);
    }

    /// One fragment queued.
    pub(crate) fn queued(&self) {
        self.held.fetch_add(1, Ordering::Relaxed);
        self.inserts.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` fragments taken off their queues (their buffers freed or reused
    /// by the caller).
    pub(crate) fn taken(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
        self.removals.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Frees fragments taken off a queue into `bufs`.
    pub(crate) fn release(&self, bufs: &mut dyn BufferSource, frags: impl IntoIterator<Item = Frag>) {
        let mut n = 0;
        for f in frags {
            bufs.free(f.pkt);
            n += 1;
        }
        self.taken(n);
    }
}

#[derive(Default)]
pub struct FragCache {
    map: Mutex<Queues<FragKey>>,
    pub count: FragCounters,
}

impl FragCache {
    pub fn new() -> FragCache {
        FragCache::default()
    }

    /// Fragments held.
    pub fn len(&self) -> usize {
        self.count.held()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes one fragment (`pkt.data()` starts at its IPv4 header).
    /// `limit` is `set limit frags`; `timeout_s` the `frag` timeout, which
    /// also bounds a datagram's age in generations (`PF_FRAG_STALE`).
    pub fn input(
        &self,
        pkt: PacketBuf,
        now_ns: u64,
        limit: usize,
        timeout_s: u32,
        bufs: &mut dyn BufferSource,
    ) -> FragResult {
        let (key, off, len, more, hlen, df) = {
            let ip = Ipv4Packet::new_unchecked(pkt.data());
            let hlen = ip.header_len() as usize;
            let tot = (ip.total_len() as usize).min(pkt.len());
            (
                FragKey { src: ip.src(), dst: ip.dst(), id: ip.ident(), proto: ip.protocol().0 },
                ip.frag_offset() as usize,
                tot.saturating_sub(hlen),
                ip.more_frags(),
                hlen,
                ip.dont_frag(),
            )
        };
        // pf_normalize_ip: a fragment with IP_DF does not enter the cache
        // (`set reassemble yes no-df` cleared it before: `scrub::clear_df`);
        // then pf_fillup_fragment's checks of the fragment alone.
        if df || len == 0 || (more && len % 8 != 0) || off + len > IP_MAXPACKET {
            return FragResult::Drop(pkt, FragDrop::Bad);
        }
        let mut new = Frag { off, len, more, start: hlen, pkt };
        let mut map = self.map.lock();
        // pf_create_fragment: at the frags limit, pf_flush_fragments
        // frees the least recently used datagrams down to 90% first.
        if self.len() >= limit {
            self.flush_lru(&mut map, bufs);
            if self.len() >= limit {
                return FragResult::Drop(new.pkt, FragDrop::Memory);
            }
        }
        self.count.searched();
        if map.is_stale(&key, timeout_s.saturating_mul(PF_FRAG_STALE)) {
            let d = map.remove(&key).expect("present");
            self.count.release(bufs, d.frags);
        }
        if let Some(d) = map.dgrams.get_mut(&key) {
            d.used = now_ns;
        }
        let Some(d) = map.dgrams.get_mut(&key) else {
            map.insert(key, Datagram::new(new, now_ns));
            self.count.queued();
            return FragResult::Kept;
        };
        // Against the datagram's end as known so far.
        let last = d.frags.last().expect("a queue is never empty");
        let total = last.end();
        let end = new.end();
        if end < total && !new.more {
            return FragResult::Drop(new.pkt, FragDrop::Bad);
        }
        if !last.more {
            if end > total || (end == total && new.more) {
                return FragResult::Drop(new.pkt, FragDrop::Bad);
            }
        } else if end == total && !new.more {
            return FragResult::Drop(new.pkt, FragDrop::Bad);
        }
        // The neighbours: `pos` is where the new one goes, after every
        // fragment starting at or before it (pf_frent_previous).
        let pos = d.frags.partition_point(|f| f.off <= new.off);
        if pos > 0 {
            let prev_end = d.frags[pos - 1].end();
            if prev_end > new.off {
                let precut = prev_end - new.off;
                if precut >= new.len {
                    return FragResult::Drop(new.pkt, FragDrop::Duplicate);
                }
                new.start += precut;
                new.off += precut;
                new.len -= precut;
            }
        }
        let mut freed = Vec::new();
        while pos < d.frags.len() && new.end() > d.frags[pos].off {
            let aftercut = new.end() - d.frags[pos].off;
            if aftercut < d.frags[pos].len {
                // Trimmed at its head; it may move to the next entry point.
                let mut a = d.remove(pos);
                a.start += aftercut;
                a.off += aftercut;
                a.len -= aftercut;
                if let Err(a) = d.insert(pos, a) {
                    freed.push(a);
                    let d = map.remove(&key).expect("present");
                    drop(map);
                    self.count.release(bufs, freed.into_iter().chain(d.frags));
                    return FragResult::Drop(new.pkt, FragDrop::Bad);
                }
                break;
            }
            freed.push(d.remove(pos));
        }
        if let Err(new) = d.insert(pos, new) {
            // The queue would grow too long: no way to recover, the whole
            // datagram goes (pf's free_fragment).
            let d = map.remove(&key).expect("present");
            drop(map);
            self.count.release(bufs, freed.into_iter().chain(d.frags));
            return FragResult::Drop(new.pkt, FragDrop::Bad);
        }
        self.count.queued();
        let complete = d.complete();
        if !complete {
            drop(map);
            self.count.release(bufs, freed);
            return FragResult::Kept;
        }
        let Some(big) = bufs.alloc_large() else {
            drop(map);
            self.count.release(bufs, freed);
            return FragResult::Kept;
        };
        let d = map.remove(&key).expect("present");
        drop(map);
        self.count.release(bufs, freed);
        self.join(d, big, bufs)
    }

    /// `pf_join_fragment` and the rest of `pf_reassemble`: the first
    /// fragment's header, every payload in order, the length and offset
    /// fields rewritten.
    fn join(&self, d: Datagram, mut big: PacketBuf, bufs: &mut dyn BufferSource) -> FragResult {
        let total = d.frags.last().expect("complete").end();
        let n = d.frags.len();
        let first = &d.frags[0].pkt;
        let fhlen = Ipv4Packet::new_unchecked(first.data()).header_len() as usize;
        if fhlen + total > IP_MAXPACKET || big.rewind(fhlen + total).is_err() {
            let why = if fhlen + total > IP_MAXPACKET { FragDrop::TooBig } else { FragDrop::Memory };
            self.count.taken(n);
            return FragResult::Drop(d.give_up(big, bufs), why);
        }
        big.meta = first.meta;
        big.data_mut()[..fhlen].copy_from_slice(&first.data()[..fhlen]);
        for f in &d.frags {
            big.data_mut()[fhlen + f.off..fhlen + f.end()].copy_from_slice(&f.pkt.data()[f.start..f.start + f.len]);
        }
        self.count.taken(n);
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

    /// pf_flush_fragments: frees whole datagrams, least recently used
    /// first, until at most 90% of the fragments held are left.
    fn flush_lru(&self, map: &mut Queues<FragKey>, bufs: &mut dyn BufferSource) {
        let goal = self.len() * 9 / 10;
        let mut lru: Vec<(u64, FragKey)> = map.dgrams.iter().map(|(k, d)| (d.used, *k)).collect();
        lru.sort_unstable_by_key(|(used, _)| *used);
        for (_, k) in lru {
            if self.len() <= goal {
                break;
            }
            let d = map.remove(&k).expect("listed");
            self.count.release(bufs, d.frags);
        }
    }

    /// Drops datagrams older than `timeout_ns`, their buffers to `bufs`;
    /// returns fragments freed.
    pub fn expire(&self, now_ns: u64, timeout_ns: u64, bufs: &mut dyn BufferSource) -> usize {
        let mut map = self.map.lock();
        let dead: Vec<FragKey> = map
            .dgrams
            .iter()
            .filter(|(_, d)| now_ns.saturating_sub(d.created) >= timeout_ns)
            .map(|(k, _)| *k)
            .collect();
        let mut n = 0;
        for k in dead {
            let d = map.remove(&k).expect("listed");
            n += d.frags.len();
            for f in d.frags {
                bufs.free(f.pkt);
            }
        }
        self.count.taken(n);
        n
    }

    /// Drops everything held (the buffers are freed, not pooled: a flush
    /// is rare and comes from the control thread).
    pub fn flush(&self) -> usize {
        self.expire(u64::MAX, 0, &mut NoPool)
    }
}

/// Frees what it is given; allocates nothing (for `flush`, and a tick
/// with nowhere to return buffers).
pub(crate) struct NoPool;

impl BufferSource for NoPool {
    fn alloc(&mut self) -> Option<PacketBuf> {
        None
    }
    fn alloc_large(&mut self) -> Option<PacketBuf> {
        None
    }
    fn free(&mut self, _p: PacketBuf) {}
}

/// Buffers from the heap for the fragment caches' tests (both
/// families), counting what comes back.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestBufs {
    pub(crate) freed: usize,
}

#[cfg(test)]
impl BufferSource for TestBufs {
    fn alloc(&mut self) -> Option<PacketBuf> {
        Some(PacketBuf::from_slice(&[0; 2048]))
    }
    fn alloc_large(&mut self) -> Option<PacketBuf> {
        Some(PacketBuf::from_slice(&vec![0; IP_MAXPACKET + 64]))
    }
    fn free(&mut self, _: PacketBuf) {
        self.freed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Bufs = TestBufs;

    /// A fragment of datagram `id` (proto 17): payload octets at `off`,
    /// each octet's value given by `fill`.
    fn frag(id: u16, off: usize, data: &[u8], more: bool) -> PacketBuf {
        let mut b = vec![0u8; 20 + data.len()];
        b[20..].copy_from_slice(data);
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_header_len(20);
        p.set_total_len((20 + data.len()) as u16);
        p.set_ident(id);
        p.set_flags_frag(false, more, off as u16);
        p.set_ttl(64);
        p.set_protocol(softnet_wire::ipv4::IpProtocol(17));
        p.set_src(Ipv4Addr::new(10, 0, 1, 2));
        p.set_dst(Ipv4Addr::new(10, 0, 2, 2));
        p.fill_checksum();
        PacketBuf::from_slice(&b)
    }

    fn input(c: &FragCache, b: &mut Bufs, p: PacketBuf) -> FragResult {
        c.input(p, 0, 5000, 60, b)
    }

    fn payload(r: FragResult) -> Vec<u8> {
        match r {
            FragResult::Done(p) => {
                let ip = Ipv4Packet::new_unchecked(p.data());
                assert_eq!(ip.total_len() as usize, p.len());
                assert!(!ip.more_frags() && ip.frag_offset() == 0);
                assert!(ip.verify_checksum());
                p.data()[20..].to_vec()
            }
            FragResult::Kept => panic!("kept"),
            FragResult::Drop(_, why) => panic!("dropped {why:?}"),
        }
    }

    fn is_kept(r: FragResult) -> bool {
        matches!(r, FragResult::Kept)
    }

    fn dropped(r: FragResult) -> Option<FragDrop> {
        match r {
            FragResult::Drop(_, why) => Some(why),
            _ => None,
        }
    }

    #[test]
    fn in_order_and_out_of_order_fragments_are_joined() {
        let c = FragCache::new();
        let mut b = Bufs::default();
        assert!(is_kept(input(&c, &mut b, frag(1, 16, &[2; 8], false))));
        assert!(is_kept(input(&c, &mut b, frag(1, 0, &[0; 8], true))));
        let got = payload(input(&c, &mut b, frag(1, 8, &[1; 8], true)));
        assert_eq!(got, [[0u8; 8], [1; 8], [2; 8]].concat());
        assert!(c.is_empty());
        assert_eq!(b.freed, 3);
    }

    #[test]
    fn a_fragment_overlapping_the_previous_one_is_trimmed_at_its_head() {
        let c = FragCache::new();
        let mut b = Bufs::default();
        assert!(is_kept(input(&c, &mut b, frag(1, 0, &[1; 16], true))));
        // 8..24 overlaps 8..16 of the held one: the held data wins there.
        assert!(is_kept(input(&c, &mut b, frag(1, 8, &[2; 16], true))));
        let got = payload(input(&c, &mut b, frag(1, 24, &[3; 8], false)));
        assert_eq!(got, [&[1u8; 16][..], &[2; 8], &[3; 8]].concat());
    }

    #[test]
    fn a_fragment_overlapping_the_next_ones_drops_those_it_covers_and_trims_the_rest() {
        let c = FragCache::new();
        let mut b = Bufs::default();
        // Held: 8..16 and 16..40 (last).
        assert!(is_kept(input(&c, &mut b, frag(1, 8, &[1; 8], true))));
        assert!(is_kept(input(&c, &mut b, frag(1, 16, &[2; 24], false))));
        // 0..24 covers 8..16 whole (dropped) and trims 16..40 to 24..40.
        let got = payload(input(&c, &mut b, frag(1, 0, &[9; 24], true)));
        assert_eq!(got, [&[9u8; 24][..], &[2; 16]].concat());
        assert_eq!(b.freed, 3);
    }

    #[test]
    fn a_covering_fragment_completes_the_datagram_with_its_own_data() {
        let c = FragCache::new();
        let mut b = Bufs::default();
        assert!(is_kept(input(&c, &mut b, frag(1, 8, &[1; 8], true))));
        assert!(is_kept(input(&c, &mut b, frag(1, 24, &[2; 16], false))));
        assert_eq!(c.len(), 2);
        // 0..32: covers 8..16 whole (dropped), trims 24..40 to 32..40.
        let got = payload(input(&c, &mut b, frag(1, 0, &[9; 32], true)));
        assert_eq!(got, [&[9u8; 32][..], &[2; 8]].concat());
        assert!(c.is_empty());
        assert_eq!(c.count.inserts.load(Ordering::Relaxed), 3);
        assert_eq!(c.count.removals.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_duplicate_is_dropped_and_the_datagram_still_completes() {
        let c = FragCache::new();
        let mut b = Bufs::default();
        assert!(is_kept(input(&c, &mut b, frag(1, 0, &[1; 16], true))));
        assert_eq!(dropped(input(&c, &mut b, frag(1, 8, &[7; 8], true))), Some(FragDrop::Duplicate));
        assert_eq!(dropped(input(&c, &mut b, frag(1, 0, &[7; 16], true))), Some(FragDrop::Duplicate));
        let got = payload(input(&c, &mut b, frag(1, 16, &[2; 4], false)));
        assert_eq!(got, [&[1u8; 16][..], &[2; 4]].concat());
    }

    #[test]
    fn fragments_in_conflict_with_the_end_are_bad() {
        let c = FragCache::new();
        let mut b = Bufs::default();
        assert!(is_kept(input(&c, &mut b, frag(1, 16, &[1; 8], false))));
        // Past the end, or ending at the end with more to come, or a
        // second last fragment ending before it.
        assert_eq!(dropped(input(&c, &mut b, frag(1, 24, &[1; 8], true))), Some(FragDrop::Bad));
        assert_eq!(dropped(input(&c, &mut b, frag(1, 8, &[1; 16], true))), Some(FragDrop::Bad));
        assert_eq!(dropped(input(&c, &mut b, frag(1, 0, &[1; 8], false))), Some(FragDrop::Bad));
        // With DF (pf_normalize_ip).
        let mut df = frag(3, 0, &[1; 8], true);
        {
            let mut ip = Ipv4Packet::new_unchecked(df.data_mut());
            ip.set_flags_frag(true, true, 0);
            ip.fill_checksum();
        }
        assert_eq!(dropped(input(&c, &mut b, df)), Some(FragDrop::Bad));
        // Alone: empty, unaligned with more to come, past 65535.
        assert_eq!(dropped(input(&c, &mut b, frag(2, 0, &[], true))), Some(FragDrop::Bad));
        assert_eq!(dropped(input(&c, &mut b, frag(2, 0, &[1; 12], true))), Some(FragDrop::Bad));
        assert_eq!(dropped(input(&c, &mut b, frag(2, 65528, &[1; 16], false))), Some(FragDrop::Bad));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn sixty_five_fragments_in_one_entry_point_drop_the_datagram() {
        let c = FragCache::new();
        let mut b = Bufs::default();
        // 64 fragments of 8 octets fill entry point 0 (octets 0..4096).
        for i in 0..64 {
            assert!(is_kept(input(&c, &mut b, frag(1, i * 8, &[1; 8], true))), "{i}");
        }
        assert_eq!(c.len(), 64);
        assert_eq!(dropped(input(&c, &mut b, frag(1, 64 * 8, &[1; 8], false))), Some(FragDrop::Bad));
        // Every held fragment went with it.
        assert!(c.is_empty());
        assert_eq!(b.freed, 64);
        assert_eq!(c.count.removals.load(Ordering::Relaxed), 64);
        // A datagram of 65 fragments spread over two entry points passes,
        // as pf's per-entry-point limit allows.
        for i in 0..64 {
            assert!(is_kept(input(&c, &mut b, frag(2, i * 64, &[i as u8; 64], true))));
        }
        let got = payload(input(&c, &mut b, frag(2, 64 * 64, &[64; 8], false)));
        assert_eq!(got.len(), 64 * 64 + 8);
    }

    #[test]
    fn a_datagram_200_generations_old_per_second_of_timeout_is_stale() {
        let c = FragCache::new();
        let mut b = Bufs::default();
        let input = |c: &FragCache, b: &mut Bufs, p| c.input(p, 0, 5000, 1, b);
        assert!(is_kept(input(&c, &mut b, frag(1, 0, &[1; 8], true))));
        // 198 newer datagrams between the same hosts (the next one would
        // be generation 199): datagram 1 lives.
        for id in 2..200 {
            assert!(is_kept(input(&c, &mut b, frag(id, 8, &[1; 8], false))));
        }
        assert!(is_kept(input(&c, &mut b, frag(1, 16, &[1; 8], true))));
        assert_eq!(c.count.removals.load(Ordering::Relaxed), 0);
        // One more: the next generation is 200 past datagram 1's, which
        // goes at its next fragment; that one starts a datagram of its own.
        assert!(is_kept(input(&c, &mut b, frag(200, 8, &[1; 8], false))));
        assert!(is_kept(input(&c, &mut b, frag(1, 8, &[1; 8], true))));
        assert_eq!(c.count.removals.load(Ordering::Relaxed), 2);
        assert_eq!(c.len(), 199 + 1);
        // Other hosts' datagrams have generations of their own.
        c.flush();
        assert!(c.map.lock().nodes.is_empty());
    }

    #[test]
    fn lone_fragments_expire() {
        let c = FragCache::new();
        let mut b = Bufs::default();
        assert!(is_kept(c.input(frag(1, 8, &[1; 8], false), 0, 100, 60, &mut b)));
        assert_eq!(c.expire(30_000_000_000, 60_000_000_000, &mut b), 0);
        assert_eq!(b.freed, 0);
        assert_eq!(c.expire(61_000_000_000, 60_000_000_000, &mut b), 1);
        assert_eq!(b.freed, 1, "the expired fragment's buffer is handed back, not dropped");
        assert!(c.is_empty());
    }

    #[test]
    fn at_the_limit_the_least_recently_used_datagrams_make_room() {
        let c = FragCache::new();
        let mut b = Bufs::default();
        // Ten datagrams of two fragments each fill a limit of 20; datagram
        // 0 is used again last.
        for id in 0..10u16 {
            assert!(is_kept(c.input(frag(id, 0, &[1; 8], true), id as u64, 20, 60, &mut b)));
            assert!(is_kept(c.input(frag(id, 16, &[1; 8], true), id as u64, 20, 60, &mut b)));
        }
        assert!(is_kept(c.input(frag(0, 32, &[1; 8], true), 50, 21, 60, &mut b)));
        assert_eq!(c.len(), 21);
        // Full: datagrams 1 and 2 (least recently used) go, down to 90%.
        assert!(is_kept(c.input(frag(20, 0, &[1; 8], true), 60, 21, 60, &mut b)));
        assert_eq!(c.len(), 17 + 1);
        assert_eq!(b.freed, 4);
        assert_eq!(c.count.removals.load(Ordering::Relaxed), 4);
        // Datagram 0 is still there and completes.
        assert!(is_kept(c.input(frag(0, 8, &[1; 8], true), 61, 21, 60, &mut b)));
        assert!(is_kept(c.input(frag(0, 24, &[1; 8], true), 61, 21, 60, &mut b)));
        assert!(matches!(c.input(frag(0, 40, &[1; 8], false), 61, 21, 60, &mut b), FragResult::Done(_)));
        // Datagram 1 is gone: its last fragment starts a new one.
        assert!(is_kept(c.input(frag(1, 8, &[1; 8], false), 62, 21, 60, &mut b)));
        // A limit of 0 holds nothing.
        let c = FragCache::new();
        assert_eq!(dropped(c.input(frag(1, 8, &[1; 8], false), 0, 0, 60, &mut b)), Some(FragDrop::Memory));
    }
}
