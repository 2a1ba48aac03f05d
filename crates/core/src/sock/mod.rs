//! The socket layer: protocol control blocks (PCBs) for TCP and UDP over
//! IPv4 and IPv6 (one code, `SocketAddr` keys), as OpenBSD's in_pcb.c /
//! tcp_usrreq.c / udp_usrreq.c, around the sans-IO engine of
//! `softnet-tcp`.
//!
//! [`Sockets`] lives in the [`Stack`](crate::stack::Stack): the tables
//! (connections by 4-tuple, listeners and UDP sockets by local address),
//! the queue of sockets with output due (the application wrote, closed or
//! read), and the timer heap. Workers deliver segments and datagrams that
//! match a PCB here (`worker/sockio.rs`) instead of answering with a RST
//! or a port unreachable, send what the engine emits through
//! `ip_output` / `ip6_output`, and run the timers on their injected clock.
//! The blocking, std-shaped API on top is in [`api`].
//!
//! Locking: the connection table is one table per worker (FreeBSD's
//! per-CPU PCB groups): a connection is filed in its owner's table, so a
//! worker looks its own connections up in a lock no other worker writes
//! or reads on the data path (the lock's cache line stays in its core);
//! a lookup that misses there tries the other workers' tables (a
//! steering miss, a SYN). A table is read-locked per lookup, never held
//! across a packet's processing. The SYN cache is per worker the same way
//! (`syncache`). Each connection has its own mutex, taken by the worker
//! for input/output/timers and by the application for its calls.
//!
//! Ownership (FreeBSD's RSS, the way the link's flow hash allows it): a
//! connection belongs to one worker, its `owner`, and only that worker
//! sends for it and runs its timers: the application's work is queued on
//! the owner's queue and its timers on the owner's heap, so two workers
//! never take one connection's lock for output. An accepted connection
//! belongs to the worker that completed its handshake (the SYN's and the
//! ACK's flow hash put them there); a connection opened locally is queued
//! by its port until its first segment arrives, and the worker that
//! receives it claims it, and its entry moves to that worker's table.
//! Its port is chosen (`connect_port`) so that the worker that sends
//! its SYN (picked by the port, `conn_slot`) is the one with the fewest
//! connections: on a TAP the kernel's tun driver sends the answers of a
//! flow to the queue the flow was last written from (its automq flow
//! table), on a virtual wire the peer answers on the queue it heard on, so
//! there the connection stays on that worker. Where the kernel spreads by
//! a seeded hash softnet cannot compute (AF_PACKET's PACKET_FANOUT_HASH,
//! a NIC's RSS under AF_XDP) the first answer may reach another worker,
//! which claims the connection. A segment that reaches another worker
//! later (a link with fewer queues than workers) is still processed,
//! under the connection's lock, and counted as a steering miss.

mod acceptq;
pub mod api;
#[cfg(feature = "tokio")]
pub mod async_api;
pub mod divert;
mod divert_api;
pub mod divsock;
pub mod netstat;
pub mod opts;
pub mod pflink;
pub mod syncache;
pub mod tcp;
pub mod udp;
pub mod wake;
mod workq;

use crate::time::Instant;
use crossbeam::utils::CachePadded;
use parking_lot::{Mutex, RwLock};
use softnet_tcp::{Env, IsnGen, Seq};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

pub use divert::Owner;
pub use tcp::{TcpConn, TcpListen};
pub use udp::UdpPcb;

/// The most TCP connections a stack holds by default (FreeBSD's
/// kern.ipc.maxsockets; OpenBSD bounds them by kern.maxfiles and its
/// pools): an idle connection costs ~1 KB without buffers, so this is
/// ~64 MB of them.
pub const DEFAULT_MAX_CONNECTIONS: usize = 65536;

/// The first and last ephemeral ports (OpenBSD's hifirstauto..hilastauto).
pub const EPHEMERAL_FIRST: u16 = 49152;
pub const EPHEMERAL_LAST: u16 = 65535;

/// Why a socket call failed (mapped to `std::io::Error` by the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SockError {
    #[error("address already in use")]
    AddrInUse,
    #[error("can't assign requested address")]
    AddrNotAvailable,
    #[error("no route to host")]
    NoRoute,
    #[error("connection refused")]
    Refused,
    #[error("connection reset by peer")]
    Reset,
    #[error("operation timed out")]
    TimedOut,
    #[error("socket is not connected")]
    NotConnected,
    #[error("resource temporarily unavailable")]
    WouldBlock,
    #[error("message too long")]
    MsgSize,
    #[error("no ephemeral port free")]
    NoPorts,
    /// The stack holds its most connections (`set_max_connections`).
    #[error("no buffer space available")]
    NoBufs,
}

/// Counters of the socket layer (summed into `netstat -s`'s tcp and udp
/// sections). Shared atomics: they move per connection event, not per
/// packet, except `rcvpack`/`sndpack`-like ones which the workers count in
/// their own `TransportStats`.
#[derive(Default, Debug)]
pub struct SockStats {
    pub tcp_connattempt: AtomicU64,
    pub tcp_accepts: AtomicU64,
    pub tcp_connects: AtomicU64,
    pub tcp_drops: AtomicU64,
    pub tcp_closed: AtomicU64,
    pub tcp_listendrop: AtomicU64,
    /// Connections not made because the stack held its most
    /// (`Sockets::set_max_connections`): handshakes reset, connects failed.
    pub tcp_connlimit: AtomicU64,
    /// Connections in TIME_WAIT closed before their 2MSL to make room
    /// for a new one at the connection limit (`Sockets::tw_recycle`).
    pub tcp_tw_recycled: AtomicU64,
    pub tcp_rcvdrop: AtomicU64,
    pub udp_fullsock: AtomicU64,
    pub udp_delivered: AtomicU64,
}

/// A timer heap entry: the connection is due at `at` (nanoseconds).
struct Due {
    at: u64,
    conn: Arc<TcpConn>,
}
impl PartialEq for Due {
    fn eq(&self, o: &Due) -> bool {
        self.at == o.at && self.conn.id == o.conn.id
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Due) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    /// Reversed: the earliest on top of std's max-heap.
    fn cmp(&self, o: &Due) -> std::cmp::Ordering {
        o.at.cmp(&self.at).then(o.conn.id.cmp(&self.conn.id))
    }
}

/// A TIME_WAIT queue entry: the connection is due at `at` (ns); `None`
/// once it closed before (`Sockets::tw_forget`).
struct TwEntry {
    at: u64,
    conn: Option<Arc<TcpConn>>,
}

/// One worker's TIME_WAIT queue. Each entry has a sequence number (the
/// front's is `head`, the next one's `head + 1`..., mod 2^32: a queue
/// holds far fewer), which the connection keeps (`ConnInner::tw_seq`, 4
/// bytes beside its table index) so that it finds its entry again in one
/// step when it closes early.
#[derive(Default)]
pub(crate) struct TwQueue {
    q: VecDeque<TwEntry>,
    head: u32,
}

impl TwQueue {
    fn back_at(&self) -> Option<u64> {
        self.q.back().map(|e| e.at)
    }
    fn front_at(&self) -> Option<u64> {
        self.q.front().map(|e| e.at)
    }
    /// Files `e` at the back; its sequence number.
    fn push(&mut self, e: TwEntry) -> u32 {
        self.q.push_back(e);
        self.head.wrapping_add(self.q.len() as u32 - 1)
    }
    fn pop(&mut self) -> Option<TwEntry> {
        let e = self.q.pop_front()?;
        self.head = self.head.wrapping_add(1);
        Some(e)
    }
    /// The entry of sequence number `seq`, if it is still queued (the
    /// caller checks that it is its own).
    fn get_mut(&mut self, seq: u32) -> Option<&mut TwEntry> {
        self.q.get_mut(seq.wrapping_sub(self.head) as usize)
    }
    pub(crate) fn len(&self) -> usize {
        self.q.len()
    }
}

/// A connection's 4-tuple key: (local, remote).
pub type ConnKey = (SocketAddr, SocketAddr);

/// One worker's connections by 4-tuple (see Locking above).
pub(crate) type ConnTable = CachePadded<RwLock<HashMap<ConnKey, Arc<TcpConn>>>>;

/// The PCB tables of one stack.
pub struct Sockets {
    /// The connection tables, one per worker (indexed by `slot`).
    pub(crate) conns: Box<[ConnTable]>,
    /// Listening sockets by local address (the unspecified address of
    /// either family listens on every address of that family).
    pub(crate) listeners: RwLock<HashMap<SocketAddr, Arc<TcpListen>>>,
    pub(crate) udp: RwLock<HashMap<SocketAddr, Arc<UdpPcb>>>,
    /// Sockets the application acted on: output may be due.
    /// One queue per worker (see Ownership above).
    pub(crate) pending: Box<[workq::WorkQueue<Pending>]>,
    /// One timer heap per worker.
    timers: Box<[Mutex<BinaryHeap<Due>>]>,
    /// One queue per worker of the connections in TIME_WAIT, in the order
    /// of their deadlines (FreeBSD's 2MSL list, tcp_tw_2msl_scan): each
    /// waits the same 2MSL, so a connection entering it goes to the back
    /// and the due ones leave from the front, where the heap took two
    /// sift-downs through every connection of the last minute
    /// (`schedule_tw`). A connection that leaves TIME_WAIT early (a SYN
    /// reopening its 4-tuple, `tw_recycle`) leaves its entry at once, so
    /// that the queue does not keep it alive for the rest of its 2MSL
    /// (`tw_forget`).
    timewait: Box<[Mutex<TwQueue>]>,
    pub(crate) isn: IsnGen,
    /// Half-open connections and SYN cookies.
    pub syncache: syncache::SynCache,
    next_id: AtomicU64,
    /// PCBs of any kind, so that a stack with none skips the lookups.
    count: AtomicUsize,
    /// TCP connections in the tables, and their limit.
    conns_open: AtomicUsize,
    max_conns: AtomicUsize,
    /// Wakes sleeping workers when the application queued work
    /// (the daemon sets one that writes an eventfd the workers poll).
    /// (Called with the worker's queue index: only the worker the work
    /// was queued for is woken.)
    waker: arc_swap::ArcSwapOption<Box<dyn Fn(usize) + Send + Sync>>,
    pub stats: SockStats,
    /// The counters of connections gone (`netstat -s`).
    pub conn_totals: netstat::ConnTotals,
    /// The default TCP settings for new sockets.
    pub tcp_config: RwLock<Arc<softnet_tcp::Config>>,
    /// The owner of sockets not given one (`divert.rs`).
    pub(crate) default_owner: divert::OwnerCell,
    /// divert(4) sockets, pf's `divert-packet` (`divsock.rs`).
    pub(crate) divert: divsock::DivertTable,
}

/// Work the application left for a worker.
pub(crate) enum Pending {
    Tcp(Arc<TcpConn>),
    Udp(Arc<UdpPcb>),
    Divert(Arc<divsock::DivertPcb>),
}

impl Sockets {
    /// Empty tables for `workers` workers; `key` draws the ISN key (RFC
    /// 6528's secret).
    pub fn new(workers: usize, mut key: impl FnMut() -> u32) -> Sockets {
        let workers = workers.max(1);
        Sockets {
            syncache: syncache::SynCache::new(workers, &mut key),
            conns: (0..workers).map(|_| CachePadded::new(RwLock::new(HashMap::new()))).collect(),
            listeners: RwLock::new(HashMap::new()),
            udp: RwLock::new(HashMap::new()),
            pending: (0..workers).map(|_| workq::WorkQueue::new()).collect(),
            timers: (0..workers).map(|_| Mutex::new(BinaryHeap::new())).collect(),
            timewait: (0..workers).map(|_| Mutex::new(TwQueue::default())).collect(),
            isn: IsnGen::new(&mut key),
            next_id: AtomicU64::new(1),
            count: AtomicUsize::new(0),
            conns_open: AtomicUsize::new(0),
            max_conns: AtomicUsize::new(DEFAULT_MAX_CONNECTIONS),
            waker: arc_swap::ArcSwapOption::empty(),
            stats: SockStats::default(),
            conn_totals: netstat::ConnTotals::default(),
            tcp_config: RwLock::new(Arc::new(softnet_tcp::Config::default())),
            default_owner: divert::OwnerCell::default(),
            divert: divsock::DivertTable::default(),
        }
    }

    /// Whether any PCB exists (the workers' fast check before a lookup).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 0
    }

    /// Whether the application left work for the workers (an idle worker
    /// about to sleep checks it).
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|q| !q.is_empty())
    }

    /// Whether worker `id` has application work queued.
    pub fn has_pending_for(&self, id: usize) -> bool {
        !self.pending[self.slot(id)].is_empty()
    }

    /// The queue and timer heap of worker `id`.
    #[inline]
    pub(crate) fn slot(&self, id: usize) -> usize {
        id % self.pending.len()
    }

    /// The worker that sends for `conn` and runs its timers: its owner,
    /// or, until it has one, a worker picked by its local port.
    #[inline]
    pub(crate) fn conn_slot(&self, conn: &TcpConn) -> usize {
        match conn.worker() {
            Some(w) => self.slot(w),
            None => self.slot(usize::from(conn.local.port())),
        }
    }

    pub(crate) fn add_count(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn sub_count(&self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sets the function that wakes idle workers.
    /// `f(i)` wakes worker `i` (of the workers this stack was made for;
    /// worker ids beyond share queues modulo their number).
    pub fn set_waker(&self, f: Box<dyn Fn(usize) + Send + Sync>) {
        self.waker.store(Some(Arc::new(f)));
    }

    pub(crate) fn wake(&self, slot: usize) {
        if let Some(w) = self.waker.load().as_ref() {
            w(slot);
        }
    }

    /// Queues `conn` for a worker's attention (output, close).
    pub(crate) fn kick_tcp(&self, conn: &Arc<TcpConn>) {
        if !conn.queued.swap(true, Ordering::AcqRel) {
            let slot = self.conn_slot(conn);
            self.pending[slot].push(Pending::Tcp(conn.clone()));
            self.wake(slot);
        }
    }

    pub(crate) fn kick_udp(&self, pcb: &Arc<UdpPcb>) {
        if !pcb.queued.swap(true, Ordering::AcqRel) {
            let slot = self.slot(usize::from(pcb.local.port()));
            self.pending[slot].push(Pending::Udp(pcb.clone()));
            self.wake(slot);
        }
    }

    /// Files `conn` on the timer heap at `at` unless an earlier entry is
    /// already there (a later deadline is found when the earlier entry
    /// fires and the connection is filed again).
    pub(crate) fn schedule(&self, conn: &Arc<TcpConn>, at: Option<softnet_tcp::Instant>) {
        let Some(at) = at else { return };
        self.schedule_ns(conn, at.as_nanos());
    }

    fn schedule_ns(&self, conn: &Arc<TcpConn>, at: u64) {
        let cur = conn.timer_at.load(Ordering::Acquire);
        if at < cur {
            conn.timer_at.store(at, Ordering::Release);
            self.timers[self.conn_slot(conn)].lock().push(Due { at, conn: conn.clone() });
        }
    }

    /// Files a connection in TIME_WAIT (its deadline `at`, 2MSL away) at
    /// the back of its owner's TIME_WAIT queue, which stays in deadline
    /// order: a deadline earlier than the back's goes on the heap. Its
    /// heap entry, earlier (a retransmission timer it had), is superseded
    /// (`timer_at` is the queue's deadline now) and dropped when it comes
    /// up, without running the connection: one timer run per connection
    /// at the end of TIME_WAIT, not one more when its last
    /// retransmission timer would have fired. The entry's sequence number
    /// when it was filed on the queue now.
    pub(crate) fn schedule_tw(&self, conn: &Arc<TcpConn>, at: Option<softnet_tcp::Instant>) -> Option<u32> {
        let at = at?.as_nanos();
        if conn.timer_at.load(Ordering::Acquire) == at {
            return None;
        }
        let mut q = self.timewait[self.conn_slot(conn)].lock();
        if q.back_at().is_some_and(|b| b > at) {
            drop(q);
            self.schedule_ns(conn, at);
            return None;
        }
        conn.timer_at.store(at, Ordering::Release);
        Some(q.push(TwEntry { at, conn: Some(conn.clone()) }))
    }

    /// A connection filed on a TIME_WAIT queue closed before its 2MSL
    /// (a SYN reopened its 4-tuple, RFC 6191): its entry, found by its
    /// sequence number `seq`, lets go of it, so that it
    /// is freed now and not 2MSL after it entered TIME_WAIT. Without it,
    /// a server that closes first and whose clients reuse their ports
    /// kept every connection of the last 2MSL in memory (its heap grew by
    /// a page, one `mprotect`, every ~5 connections at any rate, and by
    /// rate x 2MSL x ~0.8 KB in all) where the table holds at most one
    /// per 4-tuple. An entry on the heap instead (a deadline earlier than
    /// the queue's back) is superseded and dropped when it comes up.
    pub(crate) fn tw_forget(&self, conn: &Arc<TcpConn>, seq: u32) {
        // Its entry already left the queue (due, recycled).
        if conn.timer_at.swap(u64::MAX, Ordering::AcqRel) == u64::MAX {
            return;
        }
        let mut q = self.timewait[self.conn_slot(conn)].lock();
        if let Some(e) = q.get_mut(seq).filter(|e| e.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn))) {
            e.conn = None;
        }
    }

    /// Moves the connections of worker `id` due by `now` into `out` (a
    /// worker's scratch). A connection whose owner changed since its entry
    /// was filed is filed again on its owner's heap.
    pub(crate) fn due(&self, id: usize, now: Instant, out: &mut Vec<Arc<TcpConn>>, max: usize) {
        let now = now.as_nanos();
        let me = self.slot(id);
        let mut moved: Vec<Due> = Vec::new();
        let Some(mut h) = self.timers[me].try_lock() else { return };
        while out.len() < max {
            match h.peek() {
                Some(d) if d.at <= now => {}
                _ => break,
            }
            let d = h.pop().expect("peeked");
            // Only the connection's current entry counts; an entry
            // superseded by an earlier one is dropped.
            if d.conn.timer_at.compare_exchange(d.at, u64::MAX, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                if self.conn_slot(&d.conn) == me {
                    out.push(d.conn);
                } else {
                    moved.push(d);
                }
            }
        }
        drop(h);
        if let Some(mut q) = self.timewait[me].try_lock() {
            while out.len() < max && q.front_at().is_some_and(|at| at <= now) {
                let d = q.pop().expect("front");
                // (closed early: nothing to run)
                let Some(conn) = d.conn else { continue };
                if conn.timer_at.compare_exchange(d.at, u64::MAX, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    if self.conn_slot(&conn) == me {
                        out.push(conn);
                    } else {
                        moved.push(Due { at: d.at, conn });
                    }
                }
            }
        }
        // Rare (an owner claimed after the entry was filed): the vector
        // stays empty, and allocates nothing, on the common path.
        for d in moved {
            self.schedule_ns(&d.conn, d.at);
        }
    }

    /// Picks a random free ephemeral port for `local`'s address towards
    /// `remote` (RFC 6056 §3.3.1, algorithm 1: a random start, then the
    /// next free one).
    pub(crate) fn ephemeral_port(
        &self,
        local_ip: std::net::IpAddr,
        remote: Option<SocketAddr>,
        udp: bool,
    ) -> Option<u16> {
        self.ephemeral_port_on(local_ip, remote, udp, None)
    }

    /// `ephemeral_port` for a connection that worker `want` is to own: the
    /// same random start, then the next free port whose `slot` is that
    /// worker's (FreeBSD's in_pcbconnect with RSS: the port is chosen for
    /// the CPU; the random start keeps RFC 6056's unpredictability, less
    /// log2(workers) bits). Falls back to any free port.
    fn ephemeral_port_on(
        &self,
        local_ip: std::net::IpAddr,
        remote: Option<SocketAddr>,
        udp: bool,
        want: Option<usize>,
    ) -> Option<u16> {
        let n = u32::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
        let start = crate::rng::uniform(n);
        let free = |port: u16| {
            let local = SocketAddr::new(local_ip, port);
            if udp {
                !self.udp.read().contains_key(&local)
            } else {
                !self.listeners.read().contains_key(&local)
                    && remote.is_none_or(|r| self.tcp_lookup(local, r).is_none())
            }
        };
        if let Some(w) = want {
            for i in 0..n {
                let port = EPHEMERAL_FIRST + ((start + i) % n) as u16;
                if self.slot(usize::from(port)) == w && free(port) {
                    return Some(port);
                }
            }
        }
        (0..n).map(|i| EPHEMERAL_FIRST + ((start + i) % n) as u16).find(|&p| free(p))
    }

    /// The port of a new active open towards `remote` from `local_ip`:
    /// one that puts it on the worker with the fewest connections
    /// (`ephemeral_port_on`).
    pub(crate) fn connect_port(&self, local_ip: std::net::IpAddr, remote: SocketAddr) -> Option<u16> {
        let want = (0..self.conns.len()).min_by_key(|&w| self.conns[w].read().len());
        self.ephemeral_port_on(local_ip, Some(remote), false, want)
    }

    /// Entries on worker `id`'s timer heap and on its TIME_WAIT queue
    /// (tests: where a connection's timers are filed).
    #[doc(hidden)]
    pub fn timer_entries(&self, id: usize) -> (usize, usize) {
        let me = self.slot(id);
        (self.timers[me].lock().len(), self.timewait[me].lock().len())
    }

    /// TCP connections in the tables (every state but LISTEN and CLOSED,
    /// TIME_WAIT included).
    pub fn tcp_count(&self) -> usize {
        self.conns_open.load(Ordering::Relaxed)
    }

    /// The connections in each worker's table (which worker owns how many).
    pub fn tcp_count_per_worker(&self) -> Vec<usize> {
        self.conns.iter().map(|t| t.read().len()).collect()
    }

    /// The most TCP connections the stack holds at once, TIME_WAIT
    /// included. At the limit the oldest connection in TIME_WAIT makes
    /// room for the new one (`tw_recycle`); with none, a completing
    /// handshake is reset (as syn_cache_get does when sonewconn fails)
    /// and `connect` fails with ENOBUFS, each counted in
    /// `tcp_connlimit`. Lowering it closes nothing: above the limit
    /// nothing is recycled, new connections are refused until enough
    /// close.
    pub fn set_max_connections(&self, n: usize) {
        self.max_conns.store(n, Ordering::Relaxed);
    }

    pub fn max_connections(&self) -> usize {
        self.max_conns.load(Ordering::Relaxed)
    }

    /// Takes a place for one more connection, under the limit.
    #[inline]
    pub(crate) fn conn_try_reserve(&self) -> bool {
        let max = self.max_conns.load(Ordering::Relaxed);
        self.conns_open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1)).is_ok()
    }

    /// Takes a place for one more connection for worker `id`: at the
    /// limit the oldest TIME_WAIT gives up its place (`tw_recycle`, worker
    /// `id`'s queue first); with none to give, the refusal is counted.
    pub(crate) fn conn_reserve(&self, id: usize) -> bool {
        loop {
            if self.conn_try_reserve() {
                return true;
            }
            // At the limit, not above it (a lowered limit closes nothing):
            // one recycled makes one place, unless another thread took it
            // first, and then the next one is recycled.
            let full = self.conns_open.load(Ordering::Relaxed) == self.max_conns.load(Ordering::Relaxed);
            if !full || !self.tw_recycle(id) {
                self.stats.tcp_connlimit.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
    }

    /// FreeBSD's tcp_tw_2msl_scan(reuse): closes the oldest connection in
    /// TIME_WAIT, the front of worker `id`'s 2MSL queue (of another
    /// worker's when that one is empty), before its 2MSL, so that a new
    /// connection takes its place at the connection limit. Without it a
    /// busy server that closes first, reached from more addresses than
    /// a 4-tuple's reuse (RFC 6191) covers, fills the limit with
    /// TIME_WAIT and refuses every new handshake for up to 2MSL. Nothing
    /// is sent; the peer has acknowledged our FIN and sent its own (what
    /// TIME_WAIT guards against, an old duplicate of this 4-tuple, is no
    /// likelier now than when a SYN reopens it). Counted in
    /// `tcp_tw_recycled`. False when no worker has a connection in
    /// TIME_WAIT on its queue.
    ///
    /// Not on the data path: only a connection refused otherwise pays for
    /// it. The queue's lock is not held while the connection's is taken
    /// (a worker files a connection on the queue under the connection's).
    pub(crate) fn tw_recycle(&self, id: usize) -> bool {
        let n = self.timewait.len();
        let me = self.slot(id);
        for slot in (0..n).map(|i| (me + i) % n) {
            loop {
                let Some(d) = self.timewait[slot].lock().pop() else { break };
                // Only the connection's current entry counts (as in `due`);
                // one superseded or closed early is dropped, as it would be
                // at its time.
                let Some(conn) = d.conn else { continue };
                if conn.timer_at.compare_exchange(d.at, u64::MAX, Ordering::AcqRel, Ordering::Acquire).is_err() {
                    continue;
                }
                let mut inner = conn.inner.lock();
                // Left TIME_WAIT since it was filed (a SYN reopened it: it
                // is CLOSED and out of the table already).
                if !inner.tcb.end_time_wait() {
                    continue;
                }
                self.stats.tcp_tw_recycled.fetch_add(1, Ordering::Relaxed);
                // Out of the table, its place given back, counted closed.
                self.tcp_after(&conn, &mut inner);
                return true;
            }
        }
        false
    }

    pub(crate) fn conn_release(&self) {
        self.conns_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The engine's world for one call: the time, the thread's random
/// generator, and RFC 6528 ISNs over this connection's addresses.
pub(crate) struct SockEnv<'a> {
    pub now: softnet_tcp::Instant,
    pub isn: &'a IsnGen,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl Env for SockEnv<'_> {
    fn now(&self) -> softnet_tcp::Instant {
        self.now
    }
    fn random_u32(&mut self) -> u32 {
        crate::rng::random_u32()
    }
    fn isn(&mut self, local_port: u16, remote_port: u16) -> Seq {
        let l = SocketAddr::new(self.local.ip(), local_port);
        let r = SocketAddr::new(self.remote.ip(), remote_port);
        self.isn.isn(l, r, self.now)
    }
}

/// The engine's world while a connection is made from a SYN cache entry
/// or cookie: the ISS and timestamp offset already sent in the SYN,ACK.
pub(crate) struct ReplayEnv<'a> {
    pub env: SockEnv<'a>,
    pub iss: Seq,
    pub ts_offset: Option<u32>,
}

impl Env for ReplayEnv<'_> {
    fn now(&self) -> softnet_tcp::Instant {
        self.env.now
    }
    fn random_u32(&mut self) -> u32 {
        self.ts_offset.take().unwrap_or_else(crate::rng::random_u32)
    }
    fn isn(&mut self, _: u16, _: u16) -> Seq {
        self.iss
    }
}

/// The stack's `Instant` as the engine's.
#[inline]
pub(crate) fn tcp_now(now: Instant) -> softnet_tcp::Instant {
    softnet_tcp::Instant::from_nanos(now.as_nanos())
}
