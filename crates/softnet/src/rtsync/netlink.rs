//! The two rtnetlink sockets of the sync (netlink-sys, messages parsed by
//! netlink-packet-route, nexthop messages by nexthop.rs): one subscribed
//! to the IPv4 and IPv6 route groups and the nexthop group with a large
//! receive buffer, read without blocking; one made for each dump
//! (RTM_GETNEXTHOP, then RTM_GETROUTE, NLM_F_DUMP), so that a dump's
//! replies and the subscription's notifications never mix.

use super::nexthop::{self, NhMessage, NhNetlinkMessage, RTM_DELNEXTHOP, RTM_NEWNEXTHOP, RTNLGRP_NEXTHOP};
use super::translate::{translate_wire, Translated};
use libc::{RTM_DELROUTE, RTM_NEWROUTE};
use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// rtnetlink multicast groups (linux/rtnetlink.h, enum rtnetlink_groups).
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_ROUTE: u32 = 11;

/// Receive buffer asked for by default: 32 MiB holds some 200,000 route
/// notifications, a full table's worth of changes between two reads.
pub const DEFAULT_RCVBUF: usize = 32 << 20;

/// What one datagram carried: route messages translated as they are read
/// (`translate_wire`), so that a notification leaves no parsed message
/// behind.
pub enum Event {
    New(Translated),
    Del(Translated),
    NewNh(NhMessage),
    DelNh(NhMessage),
    /// A message that did not parse: counted.
    Bad(String),
}

/// Sets a socket's receive buffer: SO_RCVBUFFORCE (root may exceed
/// net.core.rmem_max), else SO_RCVBUF. Returns the size the kernel gives.
fn set_rcvbuf(s: &Socket, bytes: usize) -> io::Result<usize> {
    let v = bytes.min(i32::MAX as usize / 2) as libc::c_int;
    let set = |opt| {
        // SAFETY: a plain int option on a socket this function borrows.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SO_RCVBUFFORCE) != 0 && set(libc::SO_RCVBUF) != 0 {
        return Err(io::Error::last_os_error());
    }
    s.get_rx_buf_sz()
}

/// Datagrams read by one recvmmsg(2) ...
const SLOTS: usize = 64;
/// ... into slots of this many bytes: a route notification is a few
/// hundred bytes (rtnetlink sizes each for its route), a multipath one
/// with many hops a few KiB.
const SLOT: usize = 16 << 10;

/// The subscription: route changes of both families as they happen.
pub struct Events {
    sock: Socket,
    buf: Vec<u8>,
    /// The kernel table synced.
    table: u32,
}

impl Events {
    /// Opens and subscribes; `rcvbuf` bytes of receive buffer asked for
    /// (the kernel doubles it for its bookkeeping).
    pub fn open(rcvbuf: usize, table: u32) -> io::Result<(Events, usize)> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(0, 0))?;
        let got = set_rcvbuf(&sock, rcvbuf)?;
        sock.add_membership(RTNLGRP_IPV4_ROUTE)?;
        sock.add_membership(RTNLGRP_IPV6_ROUTE)?;
        // Kernels without nexthop objects (before 5.3) have no such group;
        // they send no routes naming one either.
        if let Err(e) = sock.add_membership(RTNLGRP_NEXTHOP) {
            tracing::debug!("route sync: no nexthop group ({e}): kernel without nexthop objects");
        }
        sock.set_non_blocking(true)?;
        Ok((Events { sock, buf: vec![0; SLOTS * SLOT], table }, got))
    }

    /// Waits up to `timeout` for something to read.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd { fd: self.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one pollfd on the stack, for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    /// Reads the datagrams queued, up to `SLOTS`, with one recvmmsg(2)
    /// into `out` (the kernel sends each route change as a datagram of
    /// its own: a system call a route cost a feed a fifth of the sync's
    /// time, BENCHMARKS §1 "Route sync", session 13). `Ok(false)`: nothing
    /// to read now. `Err` with ENOBUFS: the receive buffer overran and
    /// notifications were lost (the caller resyncs); an overrun after the
    /// first datagram is reported by the next call (the kernel keeps it
    /// in the socket's error), so nothing read is dropped.
    pub fn recv(&mut self, out: &mut Vec<Event>) -> io::Result<bool> {
        // SAFETY: all-zero iovecs and mmsghdrs are valid (null pointers,
        // zero lengths) and are filled in below.
        let mut iov: [libc::iovec; SLOTS] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; SLOTS] = unsafe { std::mem::zeroed() };
        let base = self.buf.as_mut_ptr();
        for (i, (v, m)) in iov.iter_mut().zip(msgs.iter_mut()).enumerate() {
            // SAFETY: slot i lies inside buf, SLOTS * SLOT bytes long.
            v.iov_base = unsafe { base.add(i * SLOT) }.cast();
            v.iov_len = SLOT;
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: each header points at one iovec of a distinct slot of
        // buf; all live across the call; no timeout.
        let n = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                SLOTS as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(false),
                io::ErrorKind::Interrupted => Ok(true),
                _ => Err(e),
            };
        }
        for (i, m) in msgs.iter().enumerate().take(n as usize) {
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                // A change lost as surely as in an overrun: resync (what
                // this call read before it is older than the dump).
                tracing::warn!("route sync: netlink datagram over {SLOT} bytes, truncated");
                out.clear();
                return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
            }
            let len = (m.msg_len as usize).min(SLOT);
            parse(&self.buf[i * SLOT..i * SLOT + len], self.table, out);
        }
        Ok(true)
    }
}

impl Events {
    /// Reads and drops everything queued; returns how many datagrams.
    /// After an overrun this comes before the dump: the kernel reports
    /// the next overrun only once the queue has been emptied (netlink's
    /// congested bit), and what is queued is older than the dump anyway.
    pub fn discard(&mut self) -> usize {
        let mut n = 0;
        let mut buf = Vec::with_capacity(SLOT);
        loop {
            buf.clear();
            match self.sock.recv(&mut buf, 0) {
                Ok(_) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(_) => return n,
            }
        }
    }
}

/// Splits a datagram into its messages; route messages of kernel table
/// `table` translated.
pub(super) fn parse(mut b: &[u8], table: u32, out: &mut Vec<Event>) {
    while b.len() >= 16 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < 16 || len > b.len() {
            out.push(Event::Bad(format!("netlink message length {len} of {} bytes", b.len())));
            return;
        }
        let kind = NetlinkBuffer::new(&b[..len]).message_type();
        if kind == RTM_NEWNEXTHOP || kind == RTM_DELNEXTHOP {
            match NetlinkMessage::<NhNetlinkMessage>::deserialize(&b[..len]) {
                Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(NhNetlinkMessage::New(m)), .. }) => {
                    out.push(Event::NewNh(m))
                }
                Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(NhNetlinkMessage::Del(m)), .. }) => {
                    out.push(Event::DelNh(m))
                }
                Ok(_) => {}
                Err(e) => out.push(Event::Bad(format!("nexthop message: {e}"))),
            }
        } else if kind == RTM_NEWROUTE || kind == RTM_DELROUTE {
            // A withdrawal needs the prefix and metric, not the hops.
            let new = kind == RTM_NEWROUTE;
            let payload = NetlinkBuffer::new(&b[..len]).payload();
            match translate_wire(payload, table, new) {
                Ok(t) if new => out.push(Event::New(t)),
                Ok(t) => out.push(Event::Del(t)),
                Err(e) => out.push(Event::Bad(format!("route message: {e}"))),
            }
        }
        b = b.get((len + 3) & !3usize..).unwrap_or(&[]);
    }
}

/// The kernel's nexthop objects and routes (both families, every table),
/// each dumped on a socket of its own, nexthops first so that every
/// route's object is known. A dump the kernel marks interrupted (the
/// table changed under it, NLM_F_DUMP_INTR) is taken again, up to a few
/// times.
pub fn dump(rcvbuf: usize) -> io::Result<(Vec<NhMessage>, Vec<RouteMessage>)> {
    for _ in 0..5 {
        let (nhs, i1) = dump_nexthops(rcvbuf)?;
        let (routes, i2) = dump_routes(rcvbuf)?;
        if !i1 && !i2 {
            return Ok((nhs, routes));
        }
    }
    Err(io::Error::other("route dump interrupted five times in a row"))
}

/// The nexthop objects. A kernel without them (before 5.3) answers the
/// request with an error: none.
fn dump_nexthops(rcvbuf: usize) -> io::Result<(Vec<NhMessage>, bool)> {
    let wire = nexthop::dump_request(1);
    match dump_once(rcvbuf, &wire, |b| match NetlinkMessage::<NhNetlinkMessage>::deserialize(b) {
        Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(NhNetlinkMessage::New(m)), .. }) => Ok(Some(m)),
        Ok(_) => Ok(None),
        Err(e) => Err(io::Error::other(format!("nexthop dump: {e}"))),
    }) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => Ok((Vec::new(), false)),
        r => r,
    }
}

fn dump_routes(rcvbuf: usize) -> io::Result<(Vec<RouteMessage>, bool)> {
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(RouteMessage::default()));
    req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.header.sequence_number = 1;
    req.finalize();
    let mut wire = vec![0u8; req.buffer_len()];
    req.serialize(&mut wire);
    dump_once(rcvbuf, &wire, |b| match NetlinkMessage::<RouteNetlinkMessage>::deserialize(b) {
        Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)), .. }) => {
            Ok(Some(r))
        }
        Ok(_) => Ok(None),
        Err(e) => Err(io::Error::other(format!("route dump: {e}"))),
    })
}

/// Sends a dump request and reads the replies up to NLMSG_DONE; `item`
/// reads one message of the dump (header included).
fn dump_once<T>(
    rcvbuf: usize,
    wire: &[u8],
    mut item: impl FnMut(&[u8]) -> io::Result<Option<T>>,
) -> io::Result<(Vec<T>, bool)> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind(&SocketAddr::new(0, 0))?;
    let _ = set_rcvbuf(&sock, rcvbuf);
    sock.send_to(wire, &SocketAddr::new(0, 0), 0)?;
    let mut routes = Vec::new();
    let mut interrupted = false;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    loop {
        buf.clear();
        sock.recv(&mut buf, 0)?;
        let mut b = &buf[..];
        while b.len() >= 16 {
            let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            if len < 16 || len > b.len() {
                return Err(io::Error::other(format!("bad netlink message length {len} in a dump")));
            }
            let nb = NetlinkBuffer::new(&b[..len]);
            interrupted |= nb.flags() & NLM_F_DUMP_INTR != 0;
            match nb.message_type() {
                netlink_packet_core::NLMSG_DONE => return Ok((routes, interrupted)),
                netlink_packet_core::NLMSG_ERROR => {
                    let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&b[..len])
                        .map_err(|e| io::Error::other(format!("dump: {e}")))?;
                    let code = match m.payload {
                        NetlinkPayload::Error(e) => e.code.map_or(0, |c| -c.get()),
                        _ => 0,
                    };
                    return Err(io::Error::from_raw_os_error(code));
                }
                _ => {
                    if let Some(r) = item(&b[..len])? {
                        routes.push(r);
                    }
                }
            }
            b = b.get((len + 3) & !3usize..).unwrap_or(&[]);
        }
    }
}
