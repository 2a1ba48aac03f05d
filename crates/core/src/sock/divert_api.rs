//! [`DivertSocket`]: a divert(4) socket on a stack (`divsock.rs`), the
//! std-shaped way a program takes the packets pf's `divert-packet port N`
//! diverts and writes them back.

use super::api::wait_counted;
use super::divsock::{packet_ok, DivertPcb};
use super::udp::put_record;
use super::SockError;
use crate::stack::Stack;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

/// A divert(4) socket: bound to a divert port, it receives every packet
/// pf diverts there (`divert-packet port N`) and writes packets back to be
/// re-injected.
pub struct DivertSocket {
    stack: Arc<Stack>,
    pcb: Arc<DivertPcb>,
    read_timeout: Option<Duration>,
    nonblocking: bool,
}

impl DivertSocket {
    /// Binds a divert socket to `port` (1..=65535; each port has one).
    pub fn bind(stack: &Arc<Stack>, port: u16) -> io::Result<DivertSocket> {
        let pcb = stack.socks.divert_bind(port)?;
        Ok(DivertSocket { stack: stack.clone(), pcb, read_timeout: None, nonblocking: false })
    }

    /// The divert port.
    pub fn port(&self) -> u16 {
        self.pcb.port
    }

    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.read_timeout = t;
        Ok(())
    }

    pub fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        self.nonblocking = on;
        Ok(())
    }

    /// The next diverted packet, whole from its IP header, into `buf`
    /// (the rest of a longer one is dropped, as recvfrom(2) does), and
    /// where it was: the address of the interface it came in on, or the
    /// unspecified address for a packet pf out diverted. Write it back
    /// with that address to re-inject it where it was going.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, IpAddr)> {
        let dl = self.read_timeout.map(|t| StdInstant::now() + t);
        let mut i = self.pcb.inner.lock();
        loop {
            if let Some((n, from)) = super::udp::take_record(&mut i.rx, buf) {
                return Ok((n, from.ip()));
            }
            if self.nonblocking {
                return Err(SockError::WouldBlock.into());
            }
            if wait_counted(&self.pcb.cond, &mut i, dl) {
                return Err(io::Error::new(io::ErrorKind::WouldBlock, "recv timed out"));
            }
        }
    }

    /// `recv_from` without the address.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }

    /// divert_output: re-injects `pkt`, a whole IPv4 or IPv6 packet. To
    /// the unspecified address it goes out by its route (its IP header's
    /// checksum filled in, not pf out again); to an address of the
    /// router's it comes in on that address's interface (checksums filled
    /// in, not pf in again). Refused: a packet whose header does not
    /// hold together or does not fit a buffer (EINVAL), an address the
    /// router does not have (EADDRNOTAVAIL). While the packets written
    /// before wait to be sent, it waits (non-blocking: WouldBlock).
    pub fn send_to(&self, pkt: &[u8], addr: IpAddr) -> io::Result<usize> {
        let socks = &self.stack.socks;
        let count_error = || socks.divert.stats.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !packet_ok(pkt) || pkt.len() > crate::worker::LARGE_BUF_SIZE - crate::packet::HEADROOM {
            count_error();
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a whole IP packet"));
        }
        if !addr.is_unspecified() {
            let ifs = self.stack.ifaces.load();
            let known = match addr {
                IpAddr::V4(a) => ifs.owner_of(a).is_some(),
                IpAddr::V6(a) => ifs.owner_of6(a).is_some(),
            };
            if !known {
                count_error();
                return Err(SockError::AddrNotAvailable.into());
            }
        }
        // A full send ring waits for the worker to drain it (sosend's
        // sbwait; OpenBSD sends in the writing thread, so a divert
        // socket's write never fails for want of room), unless
        // non-blocking.
        let mut i = self.pcb.inner.lock();
        while !put_record(&mut i.tx, SocketAddr::new(addr, 0), pkt) {
            socks.kick_divert(&self.pcb);
            if self.nonblocking {
                return Err(SockError::WouldBlock.into());
            }
            wait_counted(&self.pcb.cond, &mut i, None);
        }
        drop(i);
        socks.kick_divert(&self.pcb);
        Ok(pkt.len())
    }
}

impl Drop for DivertSocket {
    fn drop(&mut self) {
        self.stack.socks.divert_unbind(&self.pcb);
    }
}
