//! The accept queue handed to the application in batches.
//!
//! A worker appends the connections whose handshake completed to the
//! listener's queue (`ListenQueue::ready`, so_q) under its lock and wakes
//! accept() once at the end of its round. accept() does not take them one
//! lock at a time: the first accept() that finds the queue non-empty
//! moves all of it, under that one lock, to the application's side
//! (`TcpListen::handed`), and the accept() calls after it take from there
//! without the lock the workers write, until it is empty. One lock and
//! one wake-up serve every connection a round completed.
//!
//! The connections handed over still count against the backlog (so_qlen
//! counts a connection until accept() returns it), through an atomic the
//! workers read; a listener closed with connections on either side
//! resets them all (soclose of a listening socket).

use super::tcp::{ListenQueue, TcpConn, TcpListen};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl TcpListen {
    /// The next connection already handed to the application, if any
    /// (no lock the workers take).
    pub(crate) fn accept_handed(&self) -> Option<Arc<TcpConn>> {
        let c = self.handed.lock().pop_front()?;
        self.handed_len.fetch_sub(1, Ordering::Relaxed);
        Some(c)
    }

    /// With the listen queue locked: the next connection, the whole queue
    /// handed to the application's side first when that side is empty.
    pub(crate) fn accept_batch(&self, q: &mut ListenQueue) -> Option<Arc<TcpConn>> {
        let mut h = self.handed.lock();
        if h.is_empty() && !q.ready.is_empty() {
            // Swapped, not copied: the two deques' buffers alternate, so
            // a steady accept loop allocates nothing.
            std::mem::swap(&mut *h, &mut q.ready);
            self.handed_len.fetch_add(h.len(), Ordering::Relaxed);
        }
        let c = h.pop_front()?;
        self.handed_len.fetch_sub(1, Ordering::Relaxed);
        Some(c)
    }

    /// Connections handed over and not accepted yet (part of so_qlen).
    #[inline]
    pub(crate) fn handed_count(&self) -> usize {
        self.handed_len.load(Ordering::Relaxed)
    }

    /// Takes every connection handed over and not accepted (the listener
    /// is closing).
    pub(crate) fn take_handed(&self) -> VecDeque<Arc<TcpConn>> {
        let v = std::mem::take(&mut *self.handed.lock());
        self.handed_len.fetch_sub(v.len(), Ordering::Relaxed);
        v
    }
}

impl super::api::TcpListener {
    /// Connections whose handshake is done and that accept() has not
    /// returned yet (so_qlen; netstat's Recv-Q of a listening socket).
    pub fn queued(&self) -> usize {
        self.l.queued()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sock::{SockEnv, Sockets};
    use softnet_tcp::{Config, Tcb};
    use std::net::SocketAddr;

    #[test]
    fn the_first_accept_hands_the_whole_queue_over_and_the_rest_need_no_queue_lock() {
        let socks = Sockets::new(1, || 7);
        let local: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let l = TcpListen::new(local, 8, Arc::new(Config::default()));
        for port in 1..=3 {
            let remote = SocketAddr::new("10.0.0.1".parse().unwrap(), port);
            let now = softnet_tcp::Instant::from_nanos(1);
            let mut env = SockEnv { now, isn: &socks.isn, local, remote };
            let tcb = Tcb::connect(Arc::new(Config::default()), &mut env, 80, port);
            l.q.lock().ready.push_back(TcpConn::new(&socks, local, remote, tcb, None, None));
        }
        let mut q = l.q.lock();
        assert_eq!(l.accept_batch(&mut q).map(|c| c.remote.port()), Some(1));
        assert!(q.ready.is_empty(), "all of it handed over");
        assert_eq!((l.handed_count(), q.ready.len()), (2, 0));
        // The listen queue stays locked (a worker appending to it): the
        // rest are taken without it.
        assert_eq!(l.accept_handed().map(|c| c.remote.port()), Some(2));
        assert_eq!(l.accept_handed().map(|c| c.remote.port()), Some(3));
        assert!(l.accept_handed().is_none());
        assert!(l.accept_batch(&mut q).is_none());
        assert_eq!(l.handed_count(), 0);
    }
}
