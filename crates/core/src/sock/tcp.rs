//! TCP PCBs (OpenBSD's inpcb + tcpcb pair, in_pcblookup, the listen
//! queue of so_qlen/so_q0len): a [`TcpConn`] per connection around the
//! engine's `Tcb`, a [`TcpListen`] per listening socket with its accept
//! queue and backlog, and what happens after the engine ran (timers filed,
//! a handshake done moved to the accept queue, waiters woken, a closed
//! connection taken out of the table).

use super::{ConnKey, SockEnv, Sockets};
use crate::iface::IfIndex;
use parking_lot::{Condvar, Mutex};
use softnet_tcp::{Config, State, Tcb, TcpError};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// One TCP connection.
pub struct TcpConn {
    pub(crate) id: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub(crate) inner: Mutex<ConnInner>,
    /// Readers, writers and connect() wait here.
    pub(crate) cond: Condvar,
    /// In `Sockets::pending`.
    pub(crate) queued: AtomicBool,
    /// The deadline of its current timer heap entry (ns), MAX for none.
    pub(crate) timer_at: AtomicU64,
    /// The listening socket that accepted it, until it is accepted.
    pub(crate) listener: Option<Weak<TcpListen>>,
    /// Whose socket it is (pf's `user`/`group`): the listener's for an
    /// accepted connection, else the stack's default until the API sets it.
    pub owner: super::divert::OwnerCell,
    /// The pf state of the connection, as the filter's handle (`pflink`).
    pub(crate) pf_state: std::sync::atomic::AtomicU32,
    /// The worker that owns it (`NO_OWNER` until one claims it; see the
    /// module `sock`'s Ownership).
    worker: AtomicUsize,
}

/// `ConnInner::tw_seq` of a connection not on a TIME_WAIT queue (a real
/// entry with this number, one in 2^32, is let go of at its 2MSL).
const NO_TW: u32 = u32::MAX;

/// `TcpConn::owner` before a worker claimed the connection.
const NO_OWNER: usize = usize::MAX;

/// What `TcpConn::claim` found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Claim {
    /// The worker owned it already.
    Mine,
    /// The worker owns it from now on (its first segment).
    Claimed,
    /// Another worker owns it: a steering miss.
    Miss,
}

pub(crate) struct ConnInner {
    pub tcb: Tcb,
    /// The application closed it (or dropped its handle): the engine
    /// finishes alone and the PCB goes when it is CLOSED.
    pub detached: bool,
    /// Counted in its listener (embryonic or in the accept queue) until
    /// accepted or gone.
    pub in_listener: bool,
    /// In the connection table.
    pub in_table: bool,
    /// Which worker's table it is filed in (`Sockets::conns`; u32 so that
    /// it and `tw_seq` share 8 bytes).
    pub table: u32,
    /// The interface of a link-local IPv6 peer.
    pub scope: Option<IfIndex>,
    /// Threads blocked on `cond`.
    pub waiters: u32,
    /// Of `waiters`, those in `write` waiting for room: woken only when
    /// the engine says room is due (`Tcb::send_wakeup_due`).
    pub writers: u32,
    /// Counted in `tcps_connects` (it reached a synchronized state).
    pub connected: bool,
    /// Tasks waiting (the async API), woken with `cond`.
    pub tasks: super::wake::TaskWakers,
    /// On its worker's list of connections to wake at the end of the
    /// round (`tcp_after_deferred`).
    pub wake_queued: bool,
    /// Its entry's sequence number on its worker's TIME_WAIT queue
    /// (`Sockets::schedule_tw`), `NO_TW` for none: closing, it lets go
    /// of the entry (`Sockets::tw_forget`).
    pub tw_seq: u32,
    /// On its worker's list of connections whose output waits for the
    /// end of the input batch (`sockio::tcp_emit_deferred`).
    pub emit_queued: bool,
}

impl TcpConn {
    pub(crate) fn new(
        socks: &Sockets,
        local: SocketAddr,
        remote: SocketAddr,
        tcb: Tcb,
        listener: Option<Weak<TcpListen>>,
        scope: Option<IfIndex>,
    ) -> Arc<TcpConn> {
        Arc::new(TcpConn {
            id: socks.next_id(),
            local,
            remote,
            inner: Mutex::new(ConnInner {
                tcb,
                detached: false,
                in_listener: listener.is_some(),
                in_table: false,
                table: 0,
                scope,
                waiters: 0,
                writers: 0,
                connected: false,
                tasks: Default::default(),
                wake_queued: false,
                tw_seq: NO_TW,
                emit_queued: false,
            }),
            cond: Condvar::new(),
            queued: AtomicBool::new(false),
            timer_at: AtomicU64::new(u64::MAX),
            owner: super::divert::OwnerCell::new(match listener.as_ref().and_then(Weak::upgrade) {
                Some(l) => l.owner.get(),
                None => socks.default_owner(),
            }),
            listener,
            pf_state: std::sync::atomic::AtomicU32::new(0),
            worker: AtomicUsize::new(NO_OWNER),
        })
    }

    /// The worker that owns it, if one does.
    #[inline]
    pub(crate) fn worker(&self) -> Option<usize> {
        let w = self.worker.load(Ordering::Relaxed);
        (w != NO_OWNER).then_some(w)
    }

    /// Worker `id` received a segment of it: the first to do so owns it.
    #[inline]
    pub(crate) fn claim(&self, id: usize) -> Claim {
        match self.worker.load(Ordering::Relaxed) {
            w if w == id => Claim::Mine,
            NO_OWNER => match self.worker.compare_exchange(NO_OWNER, id, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => Claim::Claimed,
                Err(w) if w == id => Claim::Mine,
                Err(_) => Claim::Miss,
            },
            _ => Claim::Miss,
        }
    }

    /// Makes worker `id` its owner from the start (a passive open: the
    /// worker completing the handshake).
    fn set_worker(&self, id: usize) {
        self.worker.store(id, Ordering::Relaxed);
    }

    pub(crate) fn key(&self) -> ConnKey {
        (self.local, self.remote)
    }

    /// The engine's state (netstat).
    pub fn state(&self) -> State {
        self.inner.lock().tcb.state()
    }
}

/// A listening socket.
pub struct TcpListen {
    pub local: SocketAddr,
    pub(crate) backlog: usize,
    pub(crate) q: Mutex<ListenQueue>,
    pub(crate) cond: Condvar,
    /// The TCP settings of the connections it makes (`opts.rs`): swapped
    /// whole when the application sets an option on the listener.
    pub(crate) cfg: arc_swap::ArcSwap<Config>,
    /// The socket options `accept` gives the streams it returns.
    pub(crate) opts: Mutex<super::opts::StreamOpts>,
    /// Connections accept() took from `q` in one batch and has not
    /// returned yet (`acceptq.rs`): only application threads lock it.
    pub(crate) handed: Mutex<VecDeque<Arc<TcpConn>>>,
    /// Their number, which the workers read for the backlog.
    pub(crate) handed_len: AtomicUsize,
    /// Whose socket it is; connections it accepts get the same.
    pub owner: super::divert::OwnerCell,
}

pub(crate) struct ListenQueue {
    /// Handshakes done, waiting for accept() (so_q).
    pub ready: VecDeque<Arc<TcpConn>>,
    /// Handshakes in progress (so_q0).
    pub embryonic: usize,
    /// The listening socket was closed.
    pub closed: bool,
    /// A task waiting in accept (the async API), woken with `cond`.
    pub task: Option<std::task::Waker>,
    /// Connections were queued and accept() is not woken yet: a worker
    /// wakes it once at the end of its round (`wake_accept`), however
    /// many handshakes the round completed.
    pub wake_due: bool,
}

impl TcpListen {
    pub(crate) fn new(local: SocketAddr, backlog: usize, cfg: Arc<Config>) -> Arc<TcpListen> {
        Arc::new(TcpListen {
            local,
            backlog: backlog.max(1),
            q: Mutex::new(ListenQueue {
                ready: VecDeque::new(),
                embryonic: 0,
                closed: false,
                task: None,
                wake_due: false,
            }),
            cond: Condvar::new(),
            cfg: arc_swap::ArcSwap::new(cfg),
            opts: Mutex::new(Default::default()),
            handed: Mutex::new(VecDeque::new()),
            handed_len: AtomicUsize::new(0),
            owner: super::divert::OwnerCell::default(),
        })
    }

    /// Connections queued for accept.
    pub fn queued(&self) -> usize {
        self.q.lock().ready.len() + self.handed_count()
    }

    /// Wakes the threads and the task waiting in accept.
    pub(crate) fn wake_accept(&self) {
        let task = {
            let mut q = self.q.lock();
            q.wake_due = false;
            q.task.take()
        };
        if let Some(t) = task {
            t.wake();
        }
        self.cond.notify_all();
    }

    /// The accept queue is at its limit (or the socket closed).
    pub(crate) fn queue_full(&self) -> bool {
        let q = self.q.lock();
        q.closed || q.ready.len() + q.embryonic + self.handed_count() >= self.backlog
    }
}

/// The MSS for an interface MTU (the IP and TCP fixed headers off).
pub fn mss_for(mtu: u32, v6: bool) -> u16 {
    let hdr = if v6 { 60 } else { 40 };
    mtu.saturating_sub(hdr).clamp(216, 65535 - 60) as u16
}

impl Sockets {
    /// in_pcblookup: the connection with this 4-tuple, in any worker's
    /// table (the application, ICMP errors, pf's socket lookups).
    #[inline]
    pub(crate) fn tcp_lookup(&self, local: SocketAddr, remote: SocketAddr) -> Option<Arc<TcpConn>> {
        self.tcp_lookup_from(0, local, remote)
    }

    /// in_pcblookup from worker `id`: its own table first, where the
    /// connections its link steers to it are; then the others'.
    #[inline]
    pub(crate) fn tcp_lookup_from(&self, id: usize, local: SocketAddr, remote: SocketAddr) -> Option<Arc<TcpConn>> {
        let key = (local, remote);
        let me = self.slot(id);
        if let Some(c) = self.conns[me].read().get(&key) {
            return Some(c.clone());
        }
        if self.conns.len() == 1 {
            return None;
        }
        self.conns.iter().enumerate().filter(|(i, _)| *i != me).find_map(|(_, t)| t.read().get(&key).cloned())
    }

    /// Files `conn` in worker table `slot` (it is in none; its place
    /// under the connection limit is taken).
    fn tcp_file(&self, conn: &Arc<TcpConn>, inner: &mut ConnInner, slot: usize) {
        inner.in_table = true;
        inner.table = slot as u32;
        self.conns[slot].write().insert(conn.key(), conn.clone());
        self.add_count();
    }

    /// Moves `conn`'s entry to the table of worker `id`, which claimed it
    /// (an active open whose first answer its link steered there). Filed
    /// in the new table before it leaves the old, so a lookup always finds
    /// it.
    pub(crate) fn tcp_rehome(&self, conn: &Arc<TcpConn>, inner: &mut ConnInner, id: usize) {
        let to = self.slot(id);
        if !inner.in_table || inner.table as usize == to {
            return;
        }
        self.conns[to].write().insert(conn.key(), conn.clone());
        self.conns[inner.table as usize].write().remove(&conn.key());
        inner.table = to as u32;
    }

    /// in_pcblookup_listen: a listener on the exact address, else on the
    /// family's unspecified address.
    pub(crate) fn tcp_listener(&self, local: SocketAddr) -> Option<Arc<TcpListen>> {
        let l = self.listeners.read();
        if let Some(x) = l.get(&local) {
            return Some(x.clone());
        }
        let any = match local {
            SocketAddr::V4(a) => SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), a.port()),
            SocketAddr::V6(a) => SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), a.port()),
        };
        l.get(&any).cloned()
    }

    /// syn_cache_get's second half: the connection for a completed
    /// handshake (the backlog allowing), made by replaying the SYN and our
    /// SYN,ACK through a LISTEN TCB so that the engine is in SYN_RECEIVED
    /// with the ISS, options and timestamp offset the peer saw; the caller
    /// then hands it the ACK.
    pub(crate) fn tcp_passive_open(
        &self,
        listener: &Arc<TcpListen>,
        (local, remote): ConnKey,
        done: super::syncache::Completed,
        scope: Option<IfIndex>,
        now: softnet_tcp::Instant,
        worker: usize,
    ) -> Option<Arc<TcpConn>> {
        {
            let full =
                |q: &ListenQueue| q.closed || q.ready.len() + q.embryonic + listener.handed_count() >= listener.backlog;
            let mut q = listener.q.lock();
            if full(&q) {
                self.stats.tcp_listendrop.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            if !self.conn_try_reserve() {
                // At the connection limit: a TIME_WAIT recycled
                // (`conn_reserve`) without the listener's lock held, then
                // the backlog checked again.
                drop(q);
                if !self.conn_reserve(worker) {
                    return None;
                }
                q = listener.q.lock();
                if full(&q) {
                    drop(q);
                    self.conn_release();
                    self.stats.tcp_listendrop.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
            q.embryonic += 1;
        }
        let cfg = super::opts::passive_config(listener.config(), done.cfg.as_ref());
        let cfg = if done.mss < cfg.mss { Arc::new(Config { mss: done.mss, ..(*cfg).clone() }) } else { cfg };
        let mut env = super::ReplayEnv {
            env: SockEnv { now, isn: &self.isn, local, remote },
            iss: done.iss,
            ts_offset: done.ts_offset,
        };
        let mut tcb = Tcb::listen(cfg, &mut env, local.port());
        tcb.input(&mut env, &done.syn, &[]);
        // The SYN,ACK the cache sent, written again and thrown away.
        let mut scratch = [0u8; softnet_wire::tcp::MAX_HEADER_LEN];
        let _ = tcb.output(&mut env, &mut scratch);
        let conn = TcpConn::new(self, local, remote, tcb, Some(Arc::downgrade(listener)), scope);
        conn.set_worker(worker);
        self.tcp_file(&conn, &mut conn.inner.lock(), self.slot(worker));
        Some(conn)
    }

    /// An active open's connection into the table of the worker that
    /// sends its SYN (`conn_slot`); an error if the 4-tuple is taken or
    /// the stack holds its most connections.
    pub(crate) fn tcp_insert(&self, conn: &Arc<TcpConn>) -> Result<(), super::SockError> {
        if self.tcp_lookup(conn.local, conn.remote).is_some() {
            return Err(super::SockError::AddrInUse);
        }
        let slot = self.conn_slot(conn);
        if !self.conn_reserve(slot) {
            return Err(super::SockError::NoBufs);
        }
        let mut inner = conn.inner.lock();
        {
            let mut t = self.conns[slot].write();
            // Checked again under the lock its twin would be filed under.
            if t.contains_key(&conn.key()) {
                drop(t);
                self.conn_release();
                return Err(super::SockError::AddrInUse);
            }
            t.insert(conn.key(), conn.clone());
        }
        inner.in_table = true;
        inner.table = slot as u32;
        self.add_count();
        Ok(())
    }

    /// What follows any engine call on `conn` (worker or application):
    /// its timer filed, a finished handshake moved to its listener's
    /// accept queue, waiters woken, and a CLOSED connection out of the
    /// table (and out of its listener's count).
    pub(crate) fn tcp_after(&self, conn: &Arc<TcpConn>, inner: &mut ConnInner) {
        let mut accept = None;
        if self.tcp_after_deferred(conn, inner, &mut accept) {
            Self::tcp_wake(conn, inner);
        }
        if let Some(l) = accept {
            l.wake_accept();
        }
    }

    /// Wakes the threads and tasks waiting on `conn`.
    pub(crate) fn tcp_wake(conn: &TcpConn, inner: &mut ConnInner) {
        if inner.waiters > 0 {
            conn.cond.notify_all();
        }
        inner.tasks.wake();
    }

    /// `tcp_after` without the wake-ups: true when threads or tasks wait
    /// on the connection for something that is there (a writer only when
    /// the send buffer has room to its low-water mark, or `send` would
    /// fail), and in `accept` the listener whose accept() is to be woken
    /// (a connection joined its queue, and no wake-up of it is due yet).
    /// A worker wakes them once at the end of its round, not once per
    /// segment or per handshake: a blocked reader woken for each arriving
    /// segment cost a futex wake and a context switch per 1,460 bytes,
    /// and the accept thread woken in the middle of a round takes the CPU
    /// from the worker before the round's frames are out.
    pub(crate) fn tcp_after_deferred(
        &self,
        conn: &Arc<TcpConn>,
        inner: &mut ConnInner,
        accept: &mut Option<Arc<TcpListen>>,
    ) -> bool {
        let state = inner.tcb.state();
        if !inner.connected && state.synchronized() {
            inner.connected = true;
            self.stats.tcp_connects.fetch_add(1, Ordering::Relaxed);
        }
        if inner.in_listener && (state.synchronized() || state == State::Closed) {
            inner.in_listener = false;
            if let Some(l) = conn.listener.as_ref().and_then(Weak::upgrade) {
                let mut q = l.q.lock();
                q.embryonic = q.embryonic.saturating_sub(1);
                if state.synchronized() && !q.closed {
                    q.ready.push_back(conn.clone());
                    self.stats.tcp_accepts.fetch_add(1, Ordering::Relaxed);
                    if !q.wake_due {
                        q.wake_due = true;
                        drop(q);
                        *accept = Some(l);
                    }
                } else if state.synchronized() {
                    // Its listener is gone: nobody will accept it.
                    inner.tcb.abort();
                    inner.detached = true;
                }
            } else if state.synchronized() {
                inner.tcb.abort();
                inner.detached = true;
            }
        }
        if inner.tcb.is_closed() && inner.in_table {
            inner.in_table = false;
            if self.conns[inner.table as usize].write().remove(&conn.key()).is_some() {
                self.sub_count();
                self.conn_release();
            }
            let seq = std::mem::replace(&mut inner.tw_seq, NO_TW);
            if seq != NO_TW {
                self.tw_forget(conn, seq);
            }
            self.conn_totals.add(inner.tcb.stats());
            self.stats.tcp_closed.fetch_add(1, Ordering::Relaxed);
            if inner.tcb.error().is_some_and(|e| matches!(e, TcpError::Reset | TcpError::TimedOut)) {
                self.stats.tcp_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
        match inner.tcb.state() {
            State::TimeWait => {
                if let Some(seq) = self.schedule_tw(conn, inner.tcb.poll_at()) {
                    inner.tw_seq = seq;
                }
            }
            _ => self.schedule(conn, inner.tcb.poll_at()),
        }
        let writable = inner.tcb.send_wakeup_due();
        inner.waiters > inner.writers || (inner.writers > 0 && writable) || inner.tasks.due(writable)
    }

    /// Takes a listener out of the table; connections waiting in its
    /// queue are reset (soclose of a listening socket).
    pub(crate) fn tcp_unlisten(&self, l: &Arc<TcpListen>) {
        if self.listeners.write().remove(&l.local).is_some() {
            self.sub_count();
        }
        let (ready, task): (Vec<_>, _) = {
            let mut q = l.q.lock();
            q.closed = true;
            (q.ready.drain(..).chain(l.take_handed()).collect(), q.task.take())
        };
        if let Some(t) = task {
            t.wake();
        }
        for c in ready {
            let mut inner = c.inner.lock();
            inner.tcb.abort();
            inner.detached = true;
            drop(inner);
            self.kick_tcp(&c);
        }
        l.cond.notify_all();
    }

    /// Every TCP PCB for `netstat -an`: listeners, then connections.
    pub fn tcp_snapshot(&self) -> Vec<TcpPcbInfo> {
        let mut v: Vec<TcpPcbInfo> = self
            .listeners
            .read()
            .values()
            .map(|l| TcpPcbInfo { local: l.local, remote: None, state: State::Listen, recv_q: 0, send_q: 0 })
            .collect();
        let conns: Vec<Arc<TcpConn>> =
            self.conns.iter().flat_map(|t| t.read().values().cloned().collect::<Vec<_>>()).collect();
        for c in conns {
            let i = c.inner.lock();
            v.push(TcpPcbInfo {
                local: c.local,
                remote: Some(c.remote),
                state: i.tcb.state(),
                recv_q: i.tcb.recv_queue(),
                send_q: i.tcb.send_queue(),
            });
        }
        v
    }
}

/// One line of `netstat -an`'s TCP part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPcbInfo {
    pub local: SocketAddr,
    pub remote: Option<SocketAddr>,
    pub state: State,
    pub recv_q: usize,
    pub send_q: usize,
}
