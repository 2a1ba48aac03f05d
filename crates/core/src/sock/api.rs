//! The blocking socket API, shaped like `std::net`: [`TcpListener`],
//! [`TcpStream`] (`Read`/`Write`, timeouts, `shutdown`, `set_nodelay`,
//! `set_nopush`, non-blocking mode), [`UdpSocket`] and [`DivertSocket`]
//! (divert(4), pf's `divert-packet`), each on a [`Stack`] whose workers
//! run the protocol. A call queues its work for a worker
//! (`Sockets::kick_*`) and, blocking, waits on the PCB's condition variable,
//! which the worker signals after input, output and timers.

pub use super::divert_api::DivertSocket;
use super::tcp::{mss_for, TcpConn, TcpListen};
use super::udp::{put_record, take_record_to, UdpPcb, REC_HDR};
use super::{tcp_now, Owner, SockEnv, SockError};
use crate::route::RouteFlags;
use crate::stack::Stack;
use parking_lot::{Condvar, MutexGuard};
use softnet_tcp::{Config, State, Tcb, TcpError};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

impl From<SockError> for io::Error {
    fn from(e: SockError) -> io::Error {
        use io::ErrorKind as K;
        let k = match e {
            SockError::AddrInUse => K::AddrInUse,
            SockError::AddrNotAvailable | SockError::NoPorts => K::AddrNotAvailable,
            SockError::NoRoute => K::HostUnreachable,
            SockError::Refused => K::ConnectionRefused,
            SockError::Reset => K::ConnectionReset,
            SockError::TimedOut => K::TimedOut,
            SockError::NotConnected => K::NotConnected,
            SockError::WouldBlock => K::WouldBlock,
            SockError::MsgSize => K::InvalidInput,
            SockError::NoBufs => K::OutOfMemory,
        };
        // A non-blocking socket's "try again" is on the data path (every
        // read and write that finds the ring empty or full): the bare kind
        // allocates nothing, where a boxed message would allocate a call.
        if k == K::WouldBlock {
            return io::Error::from(k);
        }
        io::Error::new(k, e)
    }
}

pub(super) fn tcp_err(e: TcpError) -> io::Error {
    match e {
        TcpError::Refused => SockError::Refused.into(),
        TcpError::Reset => SockError::Reset.into(),
        TcpError::TimedOut => SockError::TimedOut.into(),
        TcpError::WouldBlock => SockError::WouldBlock.into(),
        TcpError::NotConnected => io::Error::new(io::ErrorKind::BrokenPipe, "broken pipe"),
        TcpError::HostUnreachable => SockError::NoRoute.into(),
    }
}

/// The source address and path MTU for `dst` (in_pcbselsrc: the address
/// of the outgoing interface in the route's subnet). None without a
/// usable route.
pub fn source_for(stack: &Stack, dst: IpAddr) -> Option<(IpAddr, u32)> {
    let ifs = stack.ifaces.load();
    match dst {
        IpAddr::V4(d) => {
            let rt = stack.routes.snapshot(0)?;
            let r = rt.lookup(d)?;
            if r.flags.intersects(RouteFlags::REJECT | RouteFlags::BLACKHOLE | RouteFlags::LOCAL) {
                return None;
            }
            let ifp = ifs.get_weak(r.ifp)?;
            let mtu = if r.mtu != 0 { r.mtu.min(ifp.mtu()) } else { ifp.mtu() };
            Some((ifp.source_for(r.gateway.unwrap_or(d))?.into(), mtu))
        }
        IpAddr::V6(d) => {
            let rt = stack.routes.snapshot6(0)?;
            let r = rt.lookup(d)?;
            if r.flags.intersects(RouteFlags::REJECT | RouteFlags::BLACKHOLE | RouteFlags::LOCAL) {
                return None;
            }
            let ifp = ifs.get_weak(r.ifp)?;
            let mtu = if r.mtu != 0 { r.mtu.min(ifp.mtu()) } else { ifp.mtu() };
            Some((ifp.source6_for(d)?.into(), mtu))
        }
    }
}

/// Whether `ip` is an address of the stack (or unspecified).
fn bindable(stack: &Stack, ip: IpAddr) -> bool {
    if ip.is_unspecified() {
        return true;
    }
    let ifs = stack.ifaces.load();
    match ip {
        IpAddr::V4(a) => ifs.owner_of(a).is_some(),
        IpAddr::V6(a) => ifs.owner_of6(a).is_some(),
    }
}

fn deadline(t: Option<Duration>) -> Option<StdInstant> {
    t.map(|d| StdInstant::now() + d)
}

/// A PCB's state under its lock, which counts the threads waiting on the
/// PCB's condition variable (the worker signals only when there are some).
pub(super) trait Waiters {
    fn waiters(&mut self) -> &mut u32;
}

impl Waiters for super::tcp::ConnInner {
    fn waiters(&mut self) -> &mut u32 {
        &mut self.waiters
    }
}

impl Waiters for super::udp::UdpInner {
    fn waiters(&mut self) -> &mut u32 {
        &mut self.waiters
    }
}

impl Waiters for super::divsock::DivertInner {
    fn waiters(&mut self) -> &mut u32 {
        &mut self.waiters
    }
}

/// Waits on `cond`, counted among the PCB's waiters, until signalled or
/// until `dl`; true when `dl` passed.
pub(super) fn wait_counted<T: Waiters>(cond: &Condvar, g: &mut MutexGuard<'_, T>, dl: Option<StdInstant>) -> bool {
    *g.waiters() += 1;
    let timed_out = match dl {
        Some(d) => cond.wait_until(g, d).timed_out(),
        None => {
            cond.wait(g);
            false
        }
    };
    *g.waiters() -= 1;
    timed_out
}

/// A connected TCP socket.
pub struct TcpStream {
    pub(super) stack: Arc<Stack>,
    pub(super) conn: Arc<TcpConn>,
    /// SO_LINGER and the timeouts (`opts.rs`; an accepted stream's are
    /// its listener's).
    pub(super) opts: super::opts::StreamOpts,
    nonblocking: bool,
    /// shutdown(Read) was called (std's `shutdown` takes `&self`).
    pub(super) read_shut: std::sync::atomic::AtomicBool,
}

impl TcpStream {
    /// Opens a connection to `addr` (tcp_usrreq PRU_CONNECT: a source
    /// address from the route, a random ephemeral port, the SYN) and waits
    /// for the handshake.
    pub fn connect(stack: &Arc<Stack>, addr: SocketAddr) -> io::Result<TcpStream> {
        Self::connect_opt(stack, addr, None)
    }

    /// `connect` that gives up after `timeout`.
    pub fn connect_timeout(stack: &Arc<Stack>, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        Self::connect_opt(stack, addr, Some(timeout))
    }

    /// `connect` from `local` (SO_BINDANY, `start_connect_from`).
    pub fn connect_from(stack: &Arc<Stack>, local: SocketAddr, addr: SocketAddr) -> io::Result<TcpStream> {
        Self::wait_connected(Self::start_connect_from(stack, local, addr)?, None)
    }

    fn connect_opt(stack: &Arc<Stack>, addr: SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
        Self::wait_connected(Self::start_connect(stack, addr)?, timeout)
    }

    fn wait_connected(s: TcpStream, timeout: Option<Duration>) -> io::Result<TcpStream> {
        let dl = deadline(timeout);
        let mut i = s.conn.inner.lock();
        loop {
            let st = i.tcb.state();
            if st.synchronized() {
                break;
            }
            if st == State::Closed {
                return Err(tcp_err(i.tcb.error().unwrap_or(TcpError::Refused)));
            }
            if wait_counted(&s.conn.cond, &mut i, dl) {
                return Err(SockError::TimedOut.into());
            }
        }
        drop(i);
        Ok(s)
    }

    /// The SYN queued, not waited for: the stream is in SYN_SENT (a
    /// non-blocking connect; `state` tells when it is established).
    pub fn start_connect(stack: &Arc<Stack>, addr: SocketAddr) -> io::Result<TcpStream> {
        let (src, _) = source_for(stack, addr.ip()).ok_or(SockError::NoRoute)?;
        Self::start_connect_from(stack, SocketAddr::new(src, 0), addr)
    }

    /// `start_connect` from `local`, bound with SO_BINDANY: any address,
    /// the stack's or not (port 0: an ephemeral one). A foreign address's
    /// segments go out from it, and its peer's reach the connection when
    /// pf diverts them: `pass out … divert-reply` makes the state that
    /// does (a transparent proxy's connection to the server in the
    /// client's name).
    pub fn start_connect_from(stack: &Arc<Stack>, local: SocketAddr, addr: SocketAddr) -> io::Result<TcpStream> {
        let socks = &stack.socks;
        if local.is_ipv4() != addr.is_ipv4() || local.ip().is_unspecified() {
            return Err(SockError::AddrNotAvailable.into());
        }
        let (_, mtu) = source_for(stack, addr.ip()).ok_or(SockError::NoRoute)?;
        let port = match local.port() {
            0 => socks.connect_port(local.ip(), addr).ok_or(SockError::NoPorts)?,
            p => p,
        };
        let local = SocketAddr::new(local.ip(), port);
        let base = socks.tcp_config.read().clone();
        let mss = mss_for(mtu, addr.is_ipv6());
        let cfg = if mss < base.mss { Arc::new(Config { mss, ..(*base).clone() }) } else { base };
        let now = tcp_now(stack.clock.now());
        let mut env = SockEnv { now, isn: &socks.isn, local, remote: addr };
        let tcb = Tcb::connect(cfg, &mut env, port, addr.port());
        let conn = TcpConn::new(socks, local, addr, tcb, None, None);
        socks.tcp_insert(&conn)?;
        socks.stats.tcp_connattempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        socks.kick_tcp(&conn);
        Ok(TcpStream::from_conn(stack.clone(), conn))
    }

    pub(super) fn from_conn(stack: Arc<Stack>, conn: Arc<TcpConn>) -> TcpStream {
        TcpStream { stack, conn, opts: Default::default(), nonblocking: false, read_shut: Default::default() }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.local)
    }
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.remote)
    }
    /// The socket's owner, which pf's `user` and `group` match.
    pub fn owner(&self) -> Owner {
        self.conn.owner.get()
    }
    /// Sets the socket's owner (the uid and gid pf's `user`/`group` see).
    pub fn set_owner(&self, o: Owner) {
        self.conn.owner.set(o)
    }
    /// The packet filter's handle on the connection's state (0: none):
    /// its segments take it to pf out (`sock::pflink`).
    pub fn pf_state_link(&self) -> u32 {
        self.conn.pf_state_link()
    }
    /// The connection's TCP state.
    pub fn state(&self) -> State {
        self.conn.state()
    }
    /// The send MSS in use (getsockopt TCP_MAXSEG): payload bytes per
    /// segment, lowered by path MTU discovery.
    pub fn mss(&self) -> usize {
        self.conn.inner.lock().tcb.mss()
    }
    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.opts.read_timeout = t;
        Ok(())
    }
    pub fn set_write_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.opts.write_timeout = t;
        Ok(())
    }
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.opts.read_timeout)
    }
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.opts.write_timeout)
    }
    pub fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        self.nonblocking = on;
        Ok(())
    }
    /// TCP_NODELAY: Nagle off.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.conn.inner.lock().tcb.set_nodelay(on);
        self.stack.socks.kick_tcp(&self.conn);
        Ok(())
    }

    /// TCP_NOPUSH (the BSDs' option; Linux's TCP_CORK): while on, data
    /// less than a full segment waits for more, or for the FIN, which
    /// leaves with it: a response written and then closed is one segment
    /// (and one frame) instead of two. Turning it off sends what is held.
    pub fn set_nopush(&self, on: bool) -> io::Result<()> {
        self.conn.inner.lock().tcb.set_nopush(on);
        if !on {
            self.stack.socks.kick_tcp(&self.conn);
        }
        Ok(())
    }

    /// shutdown(2): `Write` sends a FIN after the queued data; `Read`
    /// makes reads return end of stream.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.read_shut.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            let mut i = self.conn.inner.lock();
            if i.tcb.state() == State::Closed {
                return Err(SockError::NotConnected.into());
            }
            i.tcb.shutdown();
            drop(i);
            self.stack.socks.kick_tcp(&self.conn);
        }
        Ok(())
    }

    /// Waits on the connection; true when `dl` passed.
    fn wait(&self, i: &mut MutexGuard<'_, super::tcp::ConnInner>, dl: Option<StdInstant>) -> bool {
        wait_counted(&self.conn.cond, i, dl)
    }

    fn do_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read_shut.load(std::sync::atomic::Ordering::Relaxed) || buf.is_empty() {
            return Ok(0);
        }
        let dl = deadline(self.opts.read_timeout);
        let mut i = self.conn.inner.lock();
        loop {
            match i.tcb.recv(buf) {
                Ok(n) => {
                    drop(i);
                    if n > 0 {
                        // The window opened: an update may be due.
                        self.stack.socks.kick_tcp(&self.conn);
                    }
                    return Ok(n);
                }
                Err(TcpError::WouldBlock) if !self.nonblocking => {
                    if self.wait(&mut i, dl) {
                        return Err(io::Error::new(io::ErrorKind::WouldBlock, "read timed out"));
                    }
                }
                Err(e) => return Err(tcp_err(e)),
            }
        }
    }

    fn do_write(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let dl = deadline(self.opts.write_timeout);
        let mut i = self.conn.inner.lock();
        loop {
            match i.tcb.send(buf) {
                Ok(n) => {
                    drop(i);
                    self.stack.socks.kick_tcp(&self.conn);
                    return Ok(n);
                }
                Err(TcpError::WouldBlock) if !self.nonblocking => {
                    i.writers += 1;
                    let timed_out = self.wait(&mut i, dl);
                    i.writers -= 1;
                    if timed_out {
                        return Err(io::Error::new(io::ErrorKind::WouldBlock, "write timed out"));
                    }
                }
                Err(e) => return Err(tcp_err(e)),
            }
        }
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.do_read(buf)
    }
}
impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.do_read(buf)
    }
}
impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.do_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.do_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TcpStream {
    /// close(2): the engine closes (FIN after the data, or RST when unread
    /// data is left, as BSD does) and finishes without the application.
    /// SO_LINGER (soclose, tcp_disconnect): a zero linger resets the
    /// connection; another waits up to its time, on a blocking stream,
    /// until the connection is disconnected (the FIN acknowledged:
    /// FIN_WAIT_2, TIME_WAIT or gone), and leaves the rest to the worker.
    fn drop(&mut self) {
        let socks = &self.stack.socks;
        let mut i = self.conn.inner.lock();
        if self.opts.linger == Some(Duration::ZERO) {
            i.tcb.abort();
        } else {
            let now = tcp_now(self.stack.clock.now());
            let mut env = SockEnv { now, isn: &socks.isn, local: self.conn.local, remote: self.conn.remote };
            i.tcb.close(&mut env);
        }
        i.detached = true;
        socks.tcp_after(&self.conn, &mut i);
        drop(i);
        socks.kick_tcp(&self.conn);
        if let Some(t) = self.opts.linger.filter(|t| !t.is_zero() && !self.nonblocking) {
            let dl = Some(StdInstant::now() + t);
            let mut i = self.conn.inner.lock();
            while !matches!(i.tcb.state(), State::FinWait2 | State::TimeWait | State::Closed) {
                if wait_counted(&self.conn.cond, &mut i, dl) {
                    break;
                }
            }
        }
    }
}

/// A listening TCP socket.
pub struct TcpListener {
    pub(super) stack: Arc<Stack>,
    pub(super) l: Arc<TcpListen>,
    nonblocking: bool,
}

/// The listen backlog `bind` uses (OpenBSD's somaxconn is 128; a server
/// on softnet expects more).
pub const DEFAULT_BACKLOG: usize = 1024;

impl TcpListener {
    /// bind + listen on `addr` (an address of the stack, or unspecified
    /// for all of its family; port 0 picks an ephemeral one).
    pub fn bind(stack: &Arc<Stack>, addr: SocketAddr) -> io::Result<TcpListener> {
        Self::bind_with_backlog(stack, addr, DEFAULT_BACKLOG)
    }

    pub fn bind_with_backlog(stack: &Arc<Stack>, addr: SocketAddr, backlog: usize) -> io::Result<TcpListener> {
        let socks = &stack.socks;
        if !bindable(stack, addr.ip()) {
            return Err(SockError::AddrNotAvailable.into());
        }
        let mut addr = addr;
        if addr.port() == 0 {
            addr.set_port(socks.ephemeral_port(addr.ip(), None, false).ok_or(SockError::NoPorts)?);
        }
        let cfg = socks.tcp_config.read().clone();
        let l = TcpListen::new(addr, backlog, cfg);
        l.owner.set(socks.default_owner());
        {
            let mut t = socks.listeners.write();
            if t.contains_key(&addr) {
                return Err(SockError::AddrInUse.into());
            }
            t.insert(addr, l.clone());
        }
        socks.add_count();
        Ok(TcpListener { stack: stack.clone(), l, nonblocking: false })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.l.local)
    }

    /// The socket's owner; connections it accepts get the same.
    pub fn owner(&self) -> Owner {
        self.l.owner.get()
    }
    /// Sets the owner pf's `user`/`group` match for this listener and the
    /// connections it accepts from now on.
    pub fn set_owner(&self, o: Owner) {
        self.l.owner.set(o)
    }

    pub fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        self.nonblocking = on;
        Ok(())
    }

    /// The next connection whose handshake is done.
    /// The connections a worker round completed are handed over in one
    /// batch (`acceptq.rs`): the accept() calls after the first take them
    /// without the listen queue's lock.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let c = match self.l.accept_handed() {
            Some(c) => c,
            None => {
                let mut q = self.l.q.lock();
                loop {
                    if let Some(c) = self.l.accept_batch(&mut q) {
                        break c;
                    }
                    if self.nonblocking {
                        return Err(SockError::WouldBlock.into());
                    }
                    self.l.cond.wait(&mut q);
                }
            }
        };
        let peer = c.remote;
        // sonewconn: the listener's socket options.
        let mut s = TcpStream::from_conn(self.stack.clone(), c);
        s.opts = *self.l.opts.lock();
        Ok((s, peer))
    }

    /// accept() forever, as std's `incoming`.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        std::iter::from_fn(move || Some(self.accept().map(|(s, _)| s)))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.stack.socks.tcp_unlisten(&self.l);
    }
}

/// Receive and send rings of a UDP socket (OpenBSD's udp_recvspace is
/// 41,600 and udp_sendspace 9,216; larger here for bursts).
const UDP_RX: usize = 256 * 1024;
const UDP_TX: usize = 64 * 1024;

/// A UDP socket.
pub struct UdpSocket {
    pub(super) stack: Arc<Stack>,
    pub(super) pcb: Arc<UdpPcb>,
    read_timeout: Option<Duration>,
    nonblocking: bool,
}

impl UdpSocket {
    /// Binds to `addr` (an address of the stack or unspecified; port 0 for
    /// an ephemeral one).
    pub fn bind(stack: &Arc<Stack>, addr: SocketAddr) -> io::Result<UdpSocket> {
        if !bindable(stack, addr.ip()) {
            return Err(SockError::AddrNotAvailable.into());
        }
        Self::bind_any(stack, addr)
    }

    /// `bind` with SO_BINDANY: `addr` may be any address, the stack's or
    /// not. Datagrams go out from it; those to it reach the socket when pf
    /// diverts them (`divert-to`, or `divert-reply` on a state its own
    /// datagrams made), since the stack does not take a foreign address
    /// otherwise.
    pub fn bind_any(stack: &Arc<Stack>, addr: SocketAddr) -> io::Result<UdpSocket> {
        let socks = &stack.socks;
        let mut addr = addr;
        if addr.port() == 0 {
            addr.set_port(socks.ephemeral_port(addr.ip(), None, true).ok_or(SockError::NoPorts)?);
        }
        let pcb = UdpPcb::new(addr, UDP_RX, UDP_TX);
        pcb.owner.set(stack.socks.default_owner());
        {
            let mut t = socks.udp.write();
            if t.contains_key(&addr) {
                return Err(SockError::AddrInUse.into());
            }
            t.insert(addr, pcb.clone());
        }
        socks.add_count();
        Ok(UdpSocket { stack: stack.clone(), pcb, read_timeout: None, nonblocking: false })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.pcb.local)
    }
    /// The socket's owner, which pf's `user` and `group` match.
    pub fn owner(&self) -> Owner {
        self.pcb.owner.get()
    }
    /// Sets the socket's owner (the uid and gid pf's `user`/`group` see).
    pub fn set_owner(&self, o: Owner) {
        self.pcb.owner.set(o)
    }
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.pcb.inner.lock().connected.ok_or_else(|| SockError::NotConnected.into())
    }
    /// Only datagrams from `addr` are received; `send` goes there.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.pcb.inner.lock().connected = Some(addr);
        Ok(())
    }
    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.read_timeout = t;
        Ok(())
    }
    pub fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        self.nonblocking = on;
        Ok(())
    }
    /// SO_BROADCAST: without it a datagram to a broadcast address is
    /// refused (EACCES, as udp_output).
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.pcb.inner.lock().broadcast = on;
        Ok(())
    }

    /// The largest payload one packet buffer carries.
    fn max_payload(&self) -> usize {
        self.stack.config.buf_size - crate::packet::HEADROOM - 40 - 8
    }

    /// What udp_output refuses before queueing: too long, the other
    /// family, broadcast without SO_BROADCAST.
    pub(super) fn check_send(&self, i: &super::udp::UdpInner, len: usize, addr: SocketAddr) -> io::Result<()> {
        if len > self.max_payload() {
            return Err(SockError::MsgSize.into());
        }
        if addr.is_ipv4() != self.pcb.local.is_ipv4() {
            return Err(SockError::AddrNotAvailable.into());
        }
        if let IpAddr::V4(a) = addr.ip() {
            let bcast =
                a == Ipv4Addr::BROADCAST || self.stack.ifaces.load().iter().any(|ifp| ifp.is_subnet_broadcast(a));
            if bcast && !i.broadcast {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, "broadcast without SO_BROADCAST"));
            }
        }
        Ok(())
    }

    pub fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        let mut i = self.pcb.inner.lock();
        self.check_send(&i, buf.len(), addr)?;
        if i.tx.free() < REC_HDR + buf.len() {
            // The send ring is full: as a full interface queue, dropped
            // (ENOBUFS in BSD).
            drop(i);
            self.stack.socks.kick_udp(&self.pcb);
            return Err(io::Error::other("no buffer space available"));
        }
        put_record(&mut i.tx, addr, buf);
        drop(i);
        self.stack.socks.kick_udp(&self.pcb);
        Ok(buf.len())
    }

    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let peer = self.peer_addr()?;
        self.send_to(buf, peer)
    }

    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.recv_from_to(buf).map(|(n, from, _)| (n, from))
    }

    /// `recv_from` with the datagram's destination (IP_RECVDSTADDR): for a
    /// datagram pf diverted to the socket, the address it was sent to.
    pub fn recv_from_to(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, SocketAddr)> {
        let dl = deadline(self.read_timeout);
        let mut i = self.pcb.inner.lock();
        loop {
            if let Some(e) = i.error.take() {
                return Err(e.into());
            }
            if let Some(r) = take_record_to(&mut i.rx, buf) {
                return Ok(r);
            }
            if self.nonblocking {
                return Err(SockError::WouldBlock.into());
            }
            if wait_counted(&self.pcb.cond, &mut i, dl) {
                return Err(io::Error::new(io::ErrorKind::WouldBlock, "recv timed out"));
            }
        }
    }

    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let socks = &self.stack.socks;
        if socks.udp.write().remove(&self.pcb.local).is_some() {
            socks.sub_count();
        }
        self.pcb.inner.lock().closed = true;
    }
}
