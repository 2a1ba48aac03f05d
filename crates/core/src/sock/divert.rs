//! What pf asks of the socket layer: a socket's owner for `user` and
//! `group` (pf.c's pf_socket_lookup), and the listening socket a
//! `divert-to` names (in_pcblookup_listen's divert key).
//!
//! Every PCB has an [`Owner`]: the socket API sets it (`set_owner`), and
//! a socket that was never given one has the stack's default, which the
//! program embedding the stack sets to its effective uid and gid
//! ([`Sockets::set_default_owner`]; core makes no OS calls). A connection
//! a listener accepted has the listener's owner, as a socket accept(2)
//! returns has the listening socket's credentials in OpenBSD.

use super::tcp::TcpListen;
use super::Sockets;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A socket's owner (so_euid / so_egid).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    /// No owner known (pf's `unknown`, -1): what pf compares `user` and
    /// `group` with when no socket owns the packet.
    pub const UNKNOWN: Owner = Owner { uid: u32::MAX, gid: u32::MAX };

    fn pack(self) -> u64 {
        (self.uid as u64) << 32 | self.gid as u64
    }

    fn unpack(w: u64) -> Owner {
        Owner { uid: (w >> 32) as u32, gid: w as u32 }
    }
}

/// A PCB's owner, changed by the application while workers read it.
#[derive(Debug)]
pub struct OwnerCell(AtomicU64);

impl OwnerCell {
    pub(crate) fn new(o: Owner) -> OwnerCell {
        OwnerCell(AtomicU64::new(o.pack()))
    }

    pub fn get(&self) -> Owner {
        Owner::unpack(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, o: Owner) {
        self.0.store(o.pack(), Ordering::Relaxed)
    }
}

impl Default for OwnerCell {
    fn default() -> Self {
        OwnerCell::new(Owner::UNKNOWN)
    }
}

impl Sockets {
    /// The owner of sockets not given one (the embedding program's
    /// effective uid and gid; `Owner::UNKNOWN` until it sets one).
    pub fn set_default_owner(&self, o: Owner) {
        self.default_owner.set(o)
    }

    pub fn default_owner(&self) -> Owner {
        self.default_owner.get()
    }

    /// pf_socket_lookup: the owner of the socket a TCP (`tcp`) or UDP
    /// packet belongs to, `local` being the stack's end (the destination
    /// of a packet coming in, the source of one going out): the
    /// connection with this 4-tuple, else (TCP) the listener on `local`
    /// (in_pcblookup_listen), else (UDP) the socket bound to it. `None`:
    /// no socket, pf's `unknown`.
    pub fn socket_owner(&self, tcp: bool, local: SocketAddr, remote: SocketAddr) -> Option<Owner> {
        if self.is_empty() {
            return None;
        }
        if tcp {
            if let Some(c) = self.tcp_lookup(local, remote) {
                return Some(c.owner.get());
            }
            return self.tcp_listener(local).map(|l| l.owner.get());
        }
        self.udp_owner(local, remote)
    }

    /// udp's part of `socket_owner`: the socket bound to `local` (or its
    /// family's wildcard), unless it is connected to another peer. Never
    /// waits for the socket's lock: pf out runs while the worker sending
    /// the socket's datagrams holds it (`udp_emit`), and then the
    /// datagram is that socket's whatever its peer.
    fn udp_owner(&self, local: SocketAddr, remote: SocketAddr) -> Option<Owner> {
        let any = SocketAddr::new(
            match local {
                SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
            },
            local.port(),
        );
        let pcb = {
            let t = self.udp.read();
            t.get(&local).or_else(|| t.get(&any))?.clone()
        };
        let connected = pcb.inner.try_lock().map(|i| i.connected);
        match connected {
            Some(Some(peer)) if peer != remote => None,
            _ => Some(pcb.owner.get()),
        }
    }

    /// in_pcblookup_listen for a packet pf diverted to `to`: a listener
    /// bound to exactly that address (the divert key stands for both the
    /// address and the wildcard, so a socket listening on every address
    /// does not take diverted connections).
    pub(crate) fn tcp_divert_listener(&self, to: SocketAddr) -> Option<Arc<TcpListen>> {
        self.listeners.read().get(&to).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_cell_keeps_uid_and_gid_apart() {
        let c = OwnerCell::new(Owner { uid: 1000, gid: 50 });
        assert_eq!(c.get(), Owner { uid: 1000, gid: 50 });
        c.set(Owner { uid: 0, gid: u32::MAX - 1 });
        assert_eq!(c.get(), Owner { uid: 0, gid: u32::MAX - 1 });
        assert_eq!(OwnerCell::default().get(), Owner::UNKNOWN);
    }
}
