//! UDP PCBs (udp_usrreq.c): a socket bound to a local address, optionally
//! connected to one peer, with fixed receive and send rings of datagram
//! records (allocated at bind, nothing per datagram). A record is a
//! 39-byte header (length, family, address and port of the peer and of
//! the destination) and the payload.

use super::Sockets;
use parking_lot::{Condvar, Mutex};
use softnet_tcp::ring::Ring;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Bytes of a record's header: length (2), family (1), then the peer's
/// address (16) and port (2), then the datagram's destination, address
/// (16) and port (2) (IP_RECVDSTADDR: for a datagram pf diverted, the
/// original destination; unspecified in send records).
pub(crate) const REC_HDR: usize = 39;

/// One UDP socket.
pub struct UdpPcb {
    pub local: SocketAddr,
    pub(crate) inner: Mutex<UdpInner>,
    pub(crate) cond: Condvar,
    pub(crate) queued: AtomicBool,
    /// Whose socket it is (pf's `user`/`group`).
    pub owner: super::divert::OwnerCell,
}

pub(crate) struct UdpInner {
    pub rx: Ring,
    pub tx: Ring,
    pub connected: Option<SocketAddr>,
    pub broadcast: bool,
    pub waiters: u32,
    pub closed: bool,
    /// An ICMP error for a connected socket, reported by the next receive
    /// (so_error).
    pub error: Option<super::SockError>,
    /// Tasks waiting (the async API), woken with `cond`.
    pub tasks: super::wake::TaskWakers,
}

pub(crate) fn put_record(ring: &mut Ring, addr: SocketAddr, payload: &[u8]) -> bool {
    let none = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0);
    put_record_to(ring, addr, none, payload)
}

/// `put_record` for a received datagram: `to` is its destination.
pub(crate) fn put_record_to(ring: &mut Ring, addr: SocketAddr, to: SocketAddr, payload: &[u8]) -> bool {
    if ring.free() < REC_HDR + payload.len() {
        return false;
    }
    let mut h = [0u8; REC_HDR];
    h[..2].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[2] = if addr.is_ipv4() { 4 } else { 6 };
    for (at, a) in [(3, addr), (21, to)] {
        match a.ip() {
            IpAddr::V4(a) => h[at..at + 4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => h[at..at + 16].copy_from_slice(&a.octets()),
        }
        h[at + 16..at + 18].copy_from_slice(&a.port().to_be_bytes());
    }
    ring.enqueue(&h);
    ring.enqueue(payload);
    true
}

/// Takes the next record: its address and payload (into `out`, the rest
/// of a longer datagram discarded as recvfrom does). Returns (length
/// copied, address) or None if the ring is empty.
pub(crate) fn take_record(ring: &mut Ring, out: &mut [u8]) -> Option<(usize, SocketAddr)> {
    take_record_to(ring, out).map(|(n, from, _)| (n, from))
}

/// `take_record` with the datagram's destination (`put_record_to`).
pub(crate) fn take_record_to(ring: &mut Ring, out: &mut [u8]) -> Option<(usize, SocketAddr, SocketAddr)> {
    if ring.len() < REC_HDR {
        return None;
    }
    let mut h = [0u8; REC_HDR];
    ring.dequeue(&mut h);
    let len = usize::from(u16::from_be_bytes([h[0], h[1]]));
    let v4 = h[2] == 4;
    let addr = |at: usize| {
        let ip: IpAddr = if v4 {
            Ipv4Addr::new(h[at], h[at + 1], h[at + 2], h[at + 3]).into()
        } else {
            let mut o = [0u8; 16];
            o.copy_from_slice(&h[at..at + 16]);
            Ipv6Addr::from(o).into()
        };
        SocketAddr::new(ip, u16::from_be_bytes([h[at + 16], h[at + 17]]))
    };
    let n = len.min(out.len());
    ring.dequeue(&mut out[..n]);
    ring.consume(len - n);
    Some((n, addr(3), addr(21)))
}

impl UdpPcb {
    pub(crate) fn new(local: SocketAddr, rx: usize, tx: usize) -> Arc<UdpPcb> {
        Arc::new(UdpPcb {
            local,
            inner: Mutex::new(UdpInner {
                rx: Ring::new(rx),
                tx: Ring::new(tx),
                connected: None,
                broadcast: false,
                waiters: 0,
                closed: false,
                error: None,
                tasks: Default::default(),
            }),
            cond: Condvar::new(),
            queued: AtomicBool::new(false),
            owner: super::divert::OwnerCell::default(),
        })
    }
}

impl Sockets {
    /// in_pcblookup for UDP: the socket bound to the exact address, else
    /// to the family's unspecified address; a connected socket takes only
    /// its peer's datagrams.
    pub(crate) fn udp_lookup(&self, local: SocketAddr, remote: SocketAddr) -> Option<Arc<UdpPcb>> {
        let t = self.udp.read();
        let any = match local {
            SocketAddr::V4(a) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), a.port()),
            SocketAddr::V6(a) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), a.port()),
        };
        let pcb = t.get(&local).or_else(|| t.get(&any))?.clone();
        drop(t);
        let connected = pcb.inner.lock().connected;
        match connected {
            Some(peer) if peer != remote => None,
            _ => Some(pcb),
        }
    }

    /// Queues a datagram from `from` to `to` on `pcb` (udp_input's
    /// sbappendaddr); false when its receive ring is full (counted).
    pub(crate) fn udp_deliver(&self, pcb: &UdpPcb, from: SocketAddr, to: SocketAddr, payload: &[u8]) -> bool {
        let mut i = pcb.inner.lock();
        if !put_record_to(&mut i.rx, from, to, payload) {
            self.stats.udp_fullsock.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.stats.udp_delivered.fetch_add(1, Ordering::Relaxed);
        if i.waiters > 0 {
            pcb.cond.notify_all();
        }
        i.tasks.wake();
        true
    }

    /// udp_input for a datagram pf diverted: the socket bound to exactly
    /// its destination `local` (a foreign address, SO_BINDANY) and
    /// connected to its source (in_pcbhashlookup), else, for `divert-to`,
    /// the unconnected one bound to exactly the divert address `to`
    /// (in_pcblookup_listen with pf's divert key, which for `divert-reply`
    /// finds none); never a wildcard.
    pub(crate) fn udp_divert_lookup(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        to: Option<SocketAddr>,
    ) -> Option<Arc<UdpPcb>> {
        let connected = |pcb: &Arc<UdpPcb>| pcb.inner.lock().connected;
        let exact = self.udp.read().get(&local).cloned().filter(|p| connected(p) == Some(remote));
        exact.or_else(|| self.udp.read().get(&to?).cloned().filter(|p| connected(p).is_none()))
    }

    /// Every UDP PCB for `netstat -an`: (local, connected peer, Recv-Q).
    pub fn udp_snapshot(&self) -> Vec<(SocketAddr, Option<SocketAddr>, usize)> {
        self.udp
            .read()
            .values()
            .map(|p| {
                let i = p.inner.lock();
                (p.local, i.connected, i.rx.len())
            })
            .collect()
    }
}
