//! The async socket API (cargo feature `tokio`): [`TcpListener`],
//! [`TcpStream`] (tokio's `AsyncRead` / `AsyncWrite`) and [`UdpSocket`],
//! shaped like `tokio::net`, the way tokio-smoltcp wraps smoltcp. Each
//! wraps its blocking twin in [`super::api`] (same PCB, same close on
//! drop); where the blocking call would wait on the PCB's condition
//! variable, the async one leaves the task's waker beside it
//! ([`super::wake::TaskWakers`], under the PCB's lock) and returns
//! `Pending`; the worker wakes it where it signals blocked threads. No
//! reactor of tokio's is used: any executor runs these futures.

use super::api::{self, tcp_err};
use super::SockError;
use crate::stack::Stack;
use softnet_tcp::{State, TcpError};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connected TCP socket for async code.
pub struct TcpStream {
    s: api::TcpStream,
}

impl TcpStream {
    /// Opens a connection to `addr` and resolves when the handshake is
    /// done (ECONNREFUSED, ETIMEDOUT as the blocking `connect`). Bound it
    /// with `tokio::time::timeout` where needed.
    pub async fn connect(stack: &Arc<Stack>, addr: SocketAddr) -> io::Result<TcpStream> {
        Self::established(api::TcpStream::start_connect(stack, addr)?).await
    }

    /// `connect` from `local` (its port 0: an ephemeral one), which may be
    /// an address the stack does not have (SO_BINDANY, as the blocking
    /// `TcpStream::connect_from`: pf's `divert-reply` hands such a
    /// connection its replies).
    pub async fn connect_from(stack: &Arc<Stack>, local: SocketAddr, addr: SocketAddr) -> io::Result<TcpStream> {
        Self::established(api::TcpStream::start_connect_from(stack, local, addr)?).await
    }

    /// Resolves when the handshake `s` started is done.
    async fn established(s: api::TcpStream) -> io::Result<TcpStream> {
        poll_fn(|cx| {
            let mut i = s.conn.inner.lock();
            let st = i.tcb.state();
            if st.synchronized() {
                return Poll::Ready(Ok(()));
            }
            if st == State::Closed {
                return Poll::Ready(Err(tcp_err(i.tcb.error().unwrap_or(TcpError::Refused))));
            }
            i.tasks.register_write(cx.waker());
            Poll::Pending
        })
        .await?;
        Ok(TcpStream { s })
    }

    /// A blocking stream made async (the same connection). Its drop no
    /// longer waits for a linger (soclose does not for a non-blocking
    /// socket).
    pub fn from_std(mut s: api::TcpStream) -> TcpStream {
        let _ = s.set_nonblocking(true);
        TcpStream { s }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.s.local_addr()
    }
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.s.peer_addr()
    }
    /// The connection's TCP state.
    pub fn state(&self) -> State {
        self.s.state()
    }
    /// TCP_NODELAY: Nagle off.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.s.set_nodelay(on)
    }
    /// TCP_NOPUSH (`api::TcpStream::set_nopush`).
    pub fn set_nopush(&self, on: bool) -> io::Result<()> {
        self.s.set_nopush(on)
    }
    /// SO_KEEPALIVE (`api::TcpStream::set_keepalive`).
    pub fn set_keepalive(&self, k: Option<softnet_tcp::Keepalive>) -> io::Result<()> {
        self.s.set_keepalive(k)
    }
    /// SO_LINGER: a zero linger resets the connection at drop; another
    /// closes it in the background (an async stream's drop never waits).
    pub fn set_linger(&mut self, linger: Option<std::time::Duration>) -> io::Result<()> {
        self.s.set_linger(linger)
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let s = &self.s;
        if s.read_shut.load(std::sync::atomic::Ordering::Relaxed) || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut i = s.conn.inner.lock();
        match i.tcb.recv(buf.initialize_unfilled()) {
            Ok(n) => {
                drop(i);
                if n > 0 {
                    buf.advance(n);
                    // The window opened: an update may be due.
                    s.stack.socks.kick_tcp(&s.conn);
                }
                Poll::Ready(Ok(()))
            }
            Err(TcpError::WouldBlock) => {
                i.tasks.register_read(cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(tcp_err(e))),
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let s = &self.s;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut i = s.conn.inner.lock();
        match i.tcb.send(buf) {
            Ok(n) => {
                drop(i);
                s.stack.socks.kick_tcp(&s.conn);
                Poll::Ready(Ok(n))
            }
            Err(TcpError::WouldBlock) => {
                i.tasks.register_write(cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(tcp_err(e))),
        }
    }

    /// Segments leave as the worker sends them: nothing is held back here.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// shutdown(SHUT_WR): a FIN after the queued data.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.s.shutdown(std::net::Shutdown::Write))
    }
}

/// A listening TCP socket for async code.
pub struct TcpListener {
    l: api::TcpListener,
}

impl TcpListener {
    /// bind + listen, as the blocking `TcpListener::bind`.
    pub fn bind(stack: &Arc<Stack>, addr: SocketAddr) -> io::Result<TcpListener> {
        Ok(TcpListener { l: api::TcpListener::bind(stack, addr)? })
    }

    pub fn bind_with_backlog(stack: &Arc<Stack>, addr: SocketAddr, backlog: usize) -> io::Result<TcpListener> {
        Ok(TcpListener { l: api::TcpListener::bind_with_backlog(stack, addr, backlog)? })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.l.local_addr()
    }

    /// TCP_NODELAY for the connections it accepts from now on (the
    /// blocking `TcpListener`'s, `opts.rs`).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.l.set_nodelay(on)
    }
    /// TCP_NOPUSH for the connections it accepts from now on.
    pub fn set_nopush(&self, on: bool) -> io::Result<()> {
        self.l.set_nopush(on)
    }
    /// SO_KEEPALIVE for the connections it accepts from now on.
    pub fn set_keepalive(&self, k: Option<softnet_tcp::Keepalive>) -> io::Result<()> {
        self.l.set_keepalive(k)
    }
    /// SO_RCVBUF for the connections it accepts from now on.
    pub fn set_recv_buffer_size(&self, n: usize) -> io::Result<()> {
        self.l.set_recv_buffer_size(n)
    }
    /// SO_SNDBUF for the connections it accepts from now on.
    pub fn set_send_buffer_size(&self, n: usize) -> io::Result<()> {
        self.l.set_send_buffer_size(n)
    }
    /// SO_LINGER for the connections it accepts from now on (only a zero
    /// linger acts on an async stream).
    pub fn set_linger(&self, linger: Option<std::time::Duration>) -> io::Result<()> {
        self.l.set_linger(linger)
    }

    /// The next connection whose handshake is done.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// accept's poll: ready with a connection, or the task's waker left
    /// in the listen queue.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let l = &self.l.l;
        let mut q: Option<parking_lot::MutexGuard<'_, _>> = None;
        let handed = match l.accept_handed() {
            Some(c) => Some(c),
            None => l.accept_batch(q.insert(l.q.lock())),
        };
        if let Some(c) = handed {
            drop(q);
            let peer = c.remote;
            let mut s = api::TcpStream::from_conn(self.l.stack.clone(), c);
            // sonewconn: the listener's socket options; non-blocking, so
            // that a linger never blocks the executor in drop (soclose
            // does not wait for a non-blocking socket).
            s.opts = *self.l.l.opts.lock();
            s.set_nonblocking(true)?;
            return Poll::Ready(Ok((TcpStream { s }, peer)));
        }
        let q = q.as_mut().expect("locked when nothing was handed over");
        match &q.task {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => q.task = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// A UDP socket for async code.
pub struct UdpSocket {
    u: api::UdpSocket,
}

impl UdpSocket {
    /// Binds to `addr`, as the blocking `UdpSocket::bind`.
    pub fn bind(stack: &Arc<Stack>, addr: SocketAddr) -> io::Result<UdpSocket> {
        Ok(UdpSocket { u: api::UdpSocket::bind(stack, addr)? })
    }

    /// `bind` with SO_BINDANY, as the blocking `UdpSocket::bind_any`:
    /// `addr` may be an address the stack does not have.
    pub fn bind_any(stack: &Arc<Stack>, addr: SocketAddr) -> io::Result<UdpSocket> {
        Ok(UdpSocket { u: api::UdpSocket::bind_any(stack, addr)? })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.u.local_addr()
    }
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.u.peer_addr()
    }
    /// Only datagrams from `addr` are received; `send` goes there.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.u.connect(addr)
    }
    /// SO_BROADCAST.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.u.set_broadcast(on)
    }

    /// Queues one datagram to `addr`; waits while the send ring is full
    /// (where the blocking call fails with ENOBUFS).
    pub async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        poll_fn(|cx| self.poll_send_to(cx, buf, addr)).await
    }

    pub fn poll_send_to(&self, cx: &mut Context<'_>, buf: &[u8], addr: SocketAddr) -> Poll<io::Result<usize>> {
        let pcb = &self.u.pcb;
        let mut i = pcb.inner.lock();
        if let Err(e) = self.u.check_send(&i, buf.len(), addr) {
            return Poll::Ready(Err(e));
        }
        if !super::udp::put_record(&mut i.tx, addr, buf) {
            // The worker wakes the task when it has drained the ring.
            i.tasks.register_write(cx.waker());
            drop(i);
            self.u.stack.socks.kick_udp(pcb);
            return Poll::Pending;
        }
        drop(i);
        self.u.stack.socks.kick_udp(pcb);
        Poll::Ready(Ok(buf.len()))
    }

    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let peer = self.peer_addr()?;
        self.send_to(buf, peer).await
    }

    /// The next datagram and its sender (the rest of a longer datagram
    /// discarded, as recvfrom); an ICMP error on a connected socket ends
    /// it with that error.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }

    pub fn poll_recv_from(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<(usize, SocketAddr)>> {
        self.poll_recv_from_to(cx, buf).map_ok(|(n, from, _)| (n, from))
    }

    /// `recv_from` with the datagram's destination (IP_RECVDSTADDR, as
    /// the blocking `UdpSocket::recv_from_to`): for a datagram pf diverted
    /// to the socket, the address it was sent to.
    pub async fn recv_from_to(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, SocketAddr)> {
        poll_fn(|cx| self.poll_recv_from_to(cx, buf)).await
    }

    pub fn poll_recv_from_to(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr, SocketAddr)>> {
        let mut i = self.u.pcb.inner.lock();
        if let Some(e) = i.error.take() {
            return Poll::Ready(Err(e.into()));
        }
        if let Some(r) = super::udp::take_record_to(&mut i.rx, buf) {
            return Poll::Ready(Ok(r));
        }
        if i.closed {
            return Poll::Ready(Err(SockError::NotConnected.into()));
        }
        i.tasks.register_read(cx.waker());
        Poll::Pending
    }

    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).await.map(|(n, _)| n)
    }
}
