//! The SYN cache (OpenBSD tcp_input.c syn_cache_*): a SYN to a listener
//! costs a small entry (the peer's SYN header, our ISS and timestamp
//! offset), not a connection with its buffers; the SYN,ACK is built from
//! the entry and sent again on a backoff; the ACK that completes the
//! handshake makes the connection (`syn_cache_get`). When the cache is
//! full, SYN cookies (RFC 4987 §3.6) take over: the ISS encodes a keyed
//! hash of the 4-tuple, a 64 s time slot and the MSS, nothing is kept, and
//! a valid ACK makes the connection (without window scaling, SACK and
//! timestamps, which a cookie cannot carry).
//!
//! One cache per worker (FreeBSD's syncache has a lock per bucket; the
//! workers here own disjoint flows): a SYN is filed in the cache of the
//! worker it reached, whose lock no other worker takes unless a segment
//! of that handshake reaches it (the link moved the flow: the ACK, a RST,
//! looked up in the other caches after its own). That worker also
//! retransmits its entries' SYN,ACKs. The limit is OpenBSD's for the
//! whole stack, divided among the workers (rounded up); the cookie key is
//! the stack's, so any worker checks any cookie.

use super::{ConnKey, Sockets};
use core::hash::Hasher;
use crossbeam::utils::CachePadded;
use parking_lot::Mutex;
use siphasher::sip::SipHasher24;
use softnet_tcp::{Config, Seq};
use softnet_wire::tcp::{TcpFlags, TcpRepr, MAX_WINDOW_SCALE};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// OpenBSD's tcp_syn_cache_limit.
pub const DEFAULT_LIMIT: usize = 10255;
/// SYN,ACK retransmissions before an entry is dropped (the first after
/// 1 s, doubling).
const MAX_REXMT: u8 = 4;
/// The MSS values a cookie can carry (3 bits).
const COOKIE_MSS: [u16; 8] = [216, 536, 1024, 1220, 1360, 1440, 1452, 1460];
/// A cookie's time slot: 64 s; one slot back is still accepted.
const COOKIE_SLOT_SECS: u64 = 64;

/// One half-open connection.
pub(crate) struct SynEntry {
    /// The peer's SYN (its options and sequence number).
    pub syn: TcpRepr,
    pub iss: Seq,
    pub ts_offset: u32,
    /// The listener's settings.
    pub cfg: Arc<Config>,
    /// Our MSS for the interface the SYN came in on.
    pub mss: u16,
    pub rexmt_at: u64,
    pub rexmits: u8,
}

/// `netstat -s`'s syncache counters (tcpstat's sc_*).
#[derive(Default, Debug)]
pub struct SynCacheStats {
    pub added: AtomicU64,
    pub completed: AtomicU64,
    pub timed_out: AtomicU64,
    pub reset: AtomicU64,
    pub dupsyn: AtomicU64,
    pub overflow: AtomicU64,
    pub cookies_sent: AtomicU64,
    pub cookies_ok: AtomicU64,
    pub cookies_bad: AtomicU64,
}

/// One worker's half-open connections.
pub(crate) struct WorkerCache {
    pub(crate) entries: Mutex<HashMap<ConnKey, SynEntry>>,
    /// The earliest retransmission due (ns), MAX for none.
    next_due: AtomicU64,
}

pub struct SynCache {
    /// Per worker (indexed by `Sockets::slot`).
    pub(crate) caches: Box<[CachePadded<WorkerCache>]>,
    /// Each worker's share of the stack's limit.
    limit: AtomicUsize,
    k0: u64,
    k1: u64,
    pub stats: SynCacheStats,
}

/// The half-open connection a valid ACK completes.
pub(crate) struct Completed {
    /// The listener's settings when the SYN,ACK was sent (none for a
    /// cookie): what it offered the peer.
    pub cfg: Option<Arc<Config>>,
    pub syn: TcpRepr,
    pub iss: Seq,
    pub ts_offset: Option<u32>,
    pub mss: u16,
}

fn wscale_for(rx_buffer: usize) -> u8 {
    let mut s = 0;
    while s < MAX_WINDOW_SCALE && (rx_buffer >> s) > 0xffff {
        s += 1;
    }
    s
}

impl SynCache {
    pub(crate) fn new(workers: usize, mut key: impl FnMut() -> u32) -> SynCache {
        let mut w = || u64::from(key()) << 32 | u64::from(key());
        let workers = workers.max(1);
        SynCache {
            caches: (0..workers)
                .map(|_| {
                    CachePadded::new(WorkerCache {
                        entries: Mutex::new(HashMap::new()),
                        next_due: AtomicU64::new(u64::MAX),
                    })
                })
                .collect(),
            limit: AtomicUsize::new(DEFAULT_LIMIT.div_ceil(workers)),
            k0: w(),
            k1: w(),
            stats: SynCacheStats::default(),
        }
    }

    /// net.inet.tcp.syncachelimit, for the whole stack (each worker's
    /// cache holds its share, rounded up); 0 sends only cookies.
    pub fn set_limit(&self, n: usize) {
        self.limit.store(n.div_ceil(self.caches.len()), Ordering::Relaxed);
    }

    /// Half-open connections in every worker's cache.
    pub fn len(&self) -> usize {
        self.caches.iter().map(|c| c.entries.lock().len()).sum()
    }

    /// The cache of worker slot `me`, then the others'.
    fn mine_first(&self, me: usize) -> impl Iterator<Item = &WorkerCache> {
        let n = self.caches.len();
        (0..n).map(move |i| &*self.caches[(me + i) % n])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn cookie_hash(&self, key: ConnKey, irs: u32, slot: u64) -> u32 {
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        for a in [key.0, key.1] {
            match a {
                SocketAddr::V4(a) => h.write(&a.ip().octets()),
                SocketAddr::V6(a) => h.write(&a.ip().octets()),
            }
            h.write(&a.port().to_be_bytes());
        }
        h.write(&irs.to_be_bytes());
        h.write(&slot.to_be_bytes());
        h.finish() as u32
    }

    /// The ISS of a SYN cookie: 24 bits of keyed hash, 5 of time slot, 3
    /// of MSS index.
    fn cookie(&self, key: ConnKey, irs: u32, now_secs: u64, mss: u16) -> (Seq, u16) {
        let idx = COOKIE_MSS.iter().rposition(|&m| m <= mss).unwrap_or(0);
        let slot = now_secs / COOKIE_SLOT_SECS;
        let h = self.cookie_hash(key, irs, slot);
        (Seq((h & 0xffff_ff00) | ((slot as u32 & 0x1f) << 3) | idx as u32), COOKIE_MSS[idx])
    }

    /// The MSS a valid cookie carries.
    fn check_cookie(&self, key: ConnKey, irs: u32, iss: u32, now_secs: u64) -> Option<u16> {
        let now_slot = now_secs / COOKIE_SLOT_SECS;
        for slot in [now_slot, now_slot.wrapping_sub(1)] {
            if (iss >> 3) & 0x1f != slot as u32 & 0x1f {
                continue;
            }
            if self.cookie_hash(key, irs, slot) & 0xffff_ff00 == iss & 0xffff_ff00 {
                return Some(COOKIE_MSS[(iss & 7) as usize]);
            }
        }
        None
    }
}

/// The SYN,ACK for a cache entry or a cookie (what tcp_output would send
/// from SYN_RECEIVED with the same settings).
pub(crate) fn syn_ack(cfg: &Config, syn: &TcpRepr, iss: Seq, mss: u16, ts: Option<u32>, cookie: bool) -> TcpRepr {
    TcpRepr {
        src_port: syn.dst_port,
        dst_port: syn.src_port,
        seq: iss.0,
        ack: syn.seq.wrapping_add(1),
        flags: TcpFlags::SYN | TcpFlags::ACK,
        window: cfg.rx_buffer.min(0xffff) as u16,
        max_seg_size: Some(mss),
        window_scale: (!cookie && cfg.window_scaling && syn.window_scale.is_some()).then(|| wscale_for(cfg.rx_buffer)),
        sack_permitted: !cookie && cfg.sack && syn.sack_permitted,
        sack_ranges: [None; 3],
        timestamp: match (cookie, ts, syn.timestamp) {
            (false, Some(tsval), Some((peer, _))) if cfg.timestamps => Some((tsval, peer)),
            _ => None,
        },
        payload_len: 0,
    }
}

impl Sockets {
    /// syn_cache_add: a SYN for a listener. Returns the SYN,ACK to send:
    /// from a new (or the same, for a repeated SYN) cache entry, or a
    /// cookie when the cache is full.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn syn_cache_add(
        &self,
        worker: usize,
        cfg: &Arc<Config>,
        key: ConnKey,
        syn: &TcpRepr,
        mss: u16,
        now: softnet_tcp::Instant,
    ) -> TcpRepr {
        let sc = &self.syncache;
        let wc = &sc.caches[self.slot(worker)];
        let mut t = wc.entries.lock();
        let ts_now = now.as_millis() as u32;
        if let Some(e) = t.get_mut(&key) {
            if e.syn.seq == syn.seq {
                // A retransmitted SYN: the same SYN,ACK again.
                sc.stats.dupsyn.fetch_add(1, Ordering::Relaxed);
                return syn_ack(&e.cfg, &e.syn, e.iss, e.mss, Some(ts_now.wrapping_add(e.ts_offset)), false);
            }
        }
        if t.len() >= sc.limit.load(Ordering::Relaxed) && !t.contains_key(&key) {
            drop(t);
            sc.stats.overflow.fetch_add(1, Ordering::Relaxed);
            sc.stats.cookies_sent.fetch_add(1, Ordering::Relaxed);
            let peer_mss = syn.max_seg_size.unwrap_or(536).min(mss);
            let (iss, cmss) = sc.cookie(key, syn.seq, now.as_millis() / 1000, peer_mss);
            return syn_ack(cfg, syn, iss, cmss, None, true);
        }
        let mut env = super::SockEnv { now, isn: &self.isn, local: key.0, remote: key.1 };
        let iss = softnet_tcp::Env::isn(&mut env, key.0.port(), key.1.port());
        let ts_offset = crate::rng::random_u32();
        let rexmt_at = now.as_nanos() + 1_000_000_000;
        t.insert(key, SynEntry { syn: *syn, iss, ts_offset, cfg: cfg.clone(), mss, rexmt_at, rexmits: 0 });
        sc.stats.added.fetch_add(1, Ordering::Relaxed);
        wc.next_due.fetch_min(rexmt_at, Ordering::Relaxed);
        syn_ack(cfg, syn, iss, mss, Some(ts_now.wrapping_add(ts_offset)), false)
    }

    /// syn_cache_get: the ACK `seg` for no connection. The half-open
    /// connection it completes (from the cache, or from a valid cookie),
    /// or None (the caller answers with a RST).
    pub(crate) fn syn_cache_get(
        &self,
        worker: usize,
        key: ConnKey,
        seg: &TcpRepr,
        now: softnet_tcp::Instant,
    ) -> Option<Completed> {
        let sc = &self.syncache;
        let iss = seg.ack.wrapping_sub(1);
        for wc in sc.mine_first(self.slot(worker)) {
            let mut t = wc.entries.lock();
            if let Some(e) = t.get(&key) {
                if e.iss.0 != iss || seg.seq != e.syn.seq.wrapping_add(1) {
                    return None;
                }
                let e = t.remove(&key).expect("present");
                sc.stats.completed.fetch_add(1, Ordering::Relaxed);
                return Some(Completed {
                    cfg: Some(e.cfg),
                    syn: e.syn,
                    iss: e.iss,
                    ts_offset: Some(e.ts_offset),
                    mss: e.mss,
                });
            }
        }
        if sc.stats.cookies_sent.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let irs = seg.seq.wrapping_sub(1);
        match sc.check_cookie(key, irs, iss, now.as_millis() / 1000) {
            Some(mss) => {
                sc.stats.cookies_ok.fetch_add(1, Ordering::Relaxed);
                let syn = TcpRepr {
                    src_port: key.1.port(),
                    dst_port: key.0.port(),
                    seq: irs,
                    ack: 0,
                    flags: TcpFlags::SYN,
                    window: seg.window,
                    max_seg_size: Some(mss),
                    window_scale: None,
                    sack_permitted: false,
                    sack_ranges: [None; 3],
                    timestamp: None,
                    payload_len: 0,
                };
                Some(Completed { cfg: None, syn, iss: Seq(iss), ts_offset: None, mss })
            }
            None => {
                sc.stats.cookies_bad.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// A RST for a half-open connection: its entry goes (syn_cache_reset),
    /// when its sequence number is the one expected.
    pub(crate) fn syn_cache_reset(&self, worker: usize, key: ConnKey, seg: &TcpRepr) -> bool {
        for wc in self.syncache.mine_first(self.slot(worker)) {
            let mut t = wc.entries.lock();
            match t.get(&key) {
                Some(e) if seg.seq == e.syn.seq.wrapping_add(1) => {
                    t.remove(&key);
                    self.syncache.stats.reset.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Some(_) => return false,
                None => {}
            }
        }
        false
    }

    /// syn_cache_timer for worker `worker`'s cache: the SYN,ACKs to send
    /// again now (into `out`), and entries past their last retransmission
    /// dropped.
    pub(crate) fn syn_cache_due(&self, worker: usize, now: softnet_tcp::Instant, out: &mut Vec<(ConnKey, TcpRepr)>) {
        let sc = &self.syncache;
        let wc = &sc.caches[self.slot(worker)];
        let ns = now.as_nanos();
        if wc.next_due.load(Ordering::Relaxed) > ns {
            return;
        }
        let Some(mut t) = wc.entries.try_lock() else { return };
        let mut next = u64::MAX;
        let ts_now = now.as_millis() as u32;
        t.retain(|k, e| {
            if e.rexmt_at <= ns {
                if e.rexmits >= MAX_REXMT {
                    sc.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                e.rexmits += 1;
                e.rexmt_at = ns + (1_000_000_000u64 << e.rexmits);
                out.push((*k, syn_ack(&e.cfg, &e.syn, e.iss, e.mss, Some(ts_now.wrapping_add(e.ts_offset)), false)));
            }
            next = next.min(e.rexmt_at);
            true
        });
        wc.next_due.store(next, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_carry_the_mss_and_expire_after_two_slots() {
        let mut n = 0u32;
        let sc = SynCache::new(1, || {
            n += 7;
            n
        });
        let key: ConnKey = ("10.0.0.2:80".parse().unwrap(), "10.0.0.1:40000".parse().unwrap());
        let (iss, mss) = sc.cookie(key, 1000, 6400, 1400);
        assert_eq!(mss, 1360);
        assert_eq!(sc.check_cookie(key, 1000, iss.0, 6400), Some(1360));
        assert_eq!(sc.check_cookie(key, 1000, iss.0, 6400 + 64), Some(1360), "one slot later");
        assert_eq!(sc.check_cookie(key, 1000, iss.0, 6400 + 128), None, "two slots later");
        assert_eq!(sc.check_cookie(key, 1001, iss.0, 6400), None, "another peer ISN");
        let other: ConnKey = (key.0, "10.0.0.1:40001".parse().unwrap());
        assert_eq!(sc.check_cookie(other, 1000, iss.0, 6400), None, "another port");
        assert_eq!(sc.check_cookie(key, 1000, iss.0 ^ 0x100, 6400), None, "a forged hash bit");
    }
}
