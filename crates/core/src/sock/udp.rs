//! UDP PCBs (udp_usrreq.c): a socket bound to a local address, optionally
//! connected to one peer, with fixed receive and send rings of datagram
//! records (allocated at bind, nothing per datagram). A record is a
//! 21-byte header (length, family, address, port) and the payload.

use super::Sockets;
use parking_lot::{Condvar, Mutex};
use softnet_tcp::ring::Ring;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Bytes of a record's header.
pub(crate) const REC_HDR: usize = 21;

/// One UDP socket.
pub struct UdpPcb {
    pub local: SocketAddr,
    pub(crate) inner: Mutex<UdpInner>,
    pub(crate) cond: Condvar,
    pub(crate) queued: AtomicBool,
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
    if ring.free() < REC_HDR + payload.len() {
        return false;
    }
    let mut h = [0u8; REC_HDR];
    h[..2].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => {
            h[2] = 4;
            h[3..7].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            h[2] = 6;
            h[3..19].copy_from_slice(&a.octets());
        }
    }
    h[19..21].copy_from_slice(&addr.port().to_be_bytes());
    ring.enqueue(&h);
    ring.enqueue(payload);
    true
}

/// Takes the next record: its address and payload (into `out`, the rest
/// of a longer datagram discarded as recvfrom does). Returns (length
/// copied, address) or None if the ring is empty.
pub(crate) fn take_record(ring: &mut Ring, out: &mut [u8]) -> Option<(usize, SocketAddr)> {
    if ring.len() < REC_HDR {
        return None;
    }
    let mut h = [0u8; REC_HDR];
    ring.dequeue(&mut h);
    let len = usize::from(u16::from_be_bytes([h[0], h[1]]));
    let ip: IpAddr = if h[2] == 4 {
        Ipv4Addr::new(h[3], h[4], h[5], h[6]).into()
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&h[3..19]);
        Ipv6Addr::from(o).into()
    };
    let port = u16::from_be_bytes([h[19], h[20]]);
    let n = len.min(out.len());
    ring.dequeue(&mut out[..n]);
    ring.consume(len - n);
    Some((n, SocketAddr::new(ip, port)))
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

    /// Queues a datagram on `pcb` (udp_input's sbappendaddr); false when
    /// its receive ring is full (counted).
    pub(crate) fn udp_deliver(&self, pcb: &UdpPcb, from: SocketAddr, payload: &[u8]) -> bool {
        let mut i = pcb.inner.lock();
        if !put_record(&mut i.rx, from, payload) {
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
