//! divert(4) sockets (OpenBSD's ip_divert.c / ip6_divert.c), the other
//! end of pf's `divert-packet port N`: pf hands each packet a rule (or
//! the state it made) diverts to the socket bound to port N, whole and
//! with its original addresses; the program reading it may change it and
//! writes it back, and the stack re-injects it in the direction it was
//! going.
//!
//! * Reading (divert_packet): the record's address says where the packet
//!   was: for one pf in diverted, the first address of the family on the
//!   interface it came in on; for one pf out diverted, the unspecified
//!   address. No socket on the port: dropped, `noport`; the socket's
//!   receive ring full: dropped, `fullsock`.
//! * Writing (divert_output): the unspecified address sends the packet
//!   out, routed by its destination (ip_output with IP_RAWOUTPUT: the
//!   header as written, its checksum filled in); an address of the
//!   router's re-injects it as received on that address's interface
//!   (ipv4_input / ip6_input, with the IP and transport checksums
//!   computed again, since the program may have changed the packet). The
//!   re-injected packet does not meet the hook it was diverted from again
//!   (divert_output tags it PF_TAG_DIVERTED_PACKET; the first pf_test it
//!   meets passes it unfiltered and clears the tag, as pf.c does to this
//!   day): a packet re-injected inbound skips pf in, one re-injected
//!   outbound pf out; a forwarded one meets pf out as any other, and a
//!   `divert-packet` rule there diverts it again
//!   (crates/pf/tests/divert_packet.rs).
//!
//! Records go through fixed rings allocated at bind, in the format of
//! UDP's (`udp::put_record_to`); a socket's writes are sent by a worker
//! picked by its port, like a UDP socket's (`Sockets::kick_divert`).

use super::udp::{put_record_to, take_record, REC_HDR};
use super::{Pending, SockError, Sockets};
use parking_lot::{Condvar, Mutex, RwLock};
use softnet_tcp::ring::Ring;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Receive and send space of a divert socket (OpenBSD's DIVERT_RECVSPACE
/// and DIVERT_SENDSPACE, 65536 + 100), plus a record header per packet.
pub const DIVERT_SPACE: usize = 65536 + 100 + REC_HDR;

/// divstat: `netstat -s -p divert`'s counters.
#[derive(Default, Debug)]
pub struct DivertStats {
    /// Packets pf diverted (divs_ipackets).
    pub ipackets: AtomicU64,
    /// ... dropped, no socket bound to their port (divs_noport).
    pub noport: AtomicU64,
    /// ... dropped, the socket's receive ring full (divs_fullsock).
    pub fullsock: AtomicU64,
    /// Packets the sockets wrote back (divs_opackets).
    pub opackets: AtomicU64,
    /// ... refused: no interface with the address written, or a packet
    /// that cannot be re-injected (divs_errors).
    pub errors: AtomicU64,
}

/// The divert sockets of a stack, by port, and their counters.
#[derive(Default)]
pub struct DivertTable {
    pub(crate) by_port: RwLock<HashMap<u16, Arc<DivertPcb>>>,
    pub stats: DivertStats,
}

/// One divert socket.
pub struct DivertPcb {
    pub port: u16,
    pub(crate) inner: Mutex<DivertInner>,
    pub(crate) cond: Condvar,
    pub(crate) queued: AtomicBool,
}

pub(crate) struct DivertInner {
    pub rx: Ring,
    pub tx: Ring,
    pub waiters: u32,
}

/// Where a packet written to a divert socket goes (divert_output's
/// `dir`): out by its route, or in on the interface with `IpAddr`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reinject {
    Out,
    In(IpAddr),
}

impl Reinject {
    pub(crate) fn of(addr: IpAddr) -> Reinject {
        if addr.is_unspecified() {
            Reinject::Out
        } else {
            Reinject::In(addr)
        }
    }
}

/// The checks divert_output makes of a packet before it goes anywhere:
/// an IPv4 or IPv6 header whose lengths agree with what was written.
pub(crate) fn packet_ok(pkt: &[u8]) -> bool {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok(ip) = softnet_wire::ipv4::Ipv4Packet::new_checked(pkt) else { return false };
            usize::from(ip.total_len()) == pkt.len()
        }
        Some(6) => {
            let Ok(ip) = softnet_wire::ipv6::Ipv6Packet::new_checked(pkt) else { return false };
            softnet_wire::ipv6::HEADER_LEN + usize::from(ip.payload_len()) == pkt.len()
        }
        _ => false,
    }
}

impl DivertPcb {
    fn new(port: u16) -> Arc<DivertPcb> {
        Arc::new(DivertPcb {
            port,
            inner: Mutex::new(DivertInner { rx: Ring::new(DIVERT_SPACE), tx: Ring::new(DIVERT_SPACE), waiters: 0 }),
            cond: Condvar::new(),
            queued: AtomicBool::new(false),
        })
    }

    /// The length of the next packet written, if there is one.
    pub(crate) fn output_len(&self) -> Option<usize> {
        let i = self.inner.lock();
        let mut h = [0u8; 2];
        (i.tx.len() >= REC_HDR && i.tx.peek(0, &mut h) == 2).then(|| usize::from(u16::from_be_bytes(h)))
    }

    /// The next packet written and where it goes, into `out` (the rest
    /// of a packet longer than `out` is dropped).
    pub(crate) fn take_output(&self, out: &mut [u8]) -> Option<(usize, Reinject)> {
        let mut i = self.inner.lock();
        let r = take_record(&mut i.tx, out).map(|(n, a)| (n, Reinject::of(a.ip())));
        if r.is_some() && i.waiters > 0 {
            self.cond.notify_all();
        }
        r
    }
}

impl Sockets {
    /// in_pcbbind for a divert socket: port `port` (1..=65535), which no
    /// other divert socket has.
    pub(crate) fn divert_bind(&self, port: u16) -> Result<Arc<DivertPcb>, SockError> {
        if port == 0 {
            return Err(SockError::AddrNotAvailable);
        }
        let mut t = self.divert.by_port.write();
        if t.contains_key(&port) {
            return Err(SockError::AddrInUse);
        }
        let pcb = DivertPcb::new(port);
        t.insert(port, pcb.clone());
        Ok(pcb)
    }

    pub(crate) fn divert_unbind(&self, pcb: &Arc<DivertPcb>) {
        let mut t = self.divert.by_port.write();
        if t.get(&pcb.port).is_some_and(|p| Arc::ptr_eq(p, pcb)) {
            t.remove(&pcb.port);
        }
    }

    /// divert_packet: queues `pkt` (a whole IP packet) on the socket bound
    /// to `port`, with `addr` (the receiving interface's address, or the
    /// unspecified one for a packet going out). False when it was dropped
    /// (counted: no socket, or its ring full).
    pub(crate) fn divert_deliver(&self, port: u16, addr: IpAddr, pkt: &[u8]) -> bool {
        let s = &self.divert.stats;
        s.ipackets.fetch_add(1, Ordering::Relaxed);
        let Some(pcb) = self.divert.by_port.read().get(&port).cloned() else {
            s.noport.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let mut i = pcb.inner.lock();
        let none = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0);
        if !put_record_to(&mut i.rx, SocketAddr::new(addr, 0), none, pkt) {
            s.fullsock.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if i.waiters > 0 {
            pcb.cond.notify_all();
        }
        true
    }

    /// Queues `pcb` for the worker that sends its writes.
    pub(crate) fn kick_divert(&self, pcb: &Arc<DivertPcb>) {
        if !pcb.queued.swap(true, Ordering::AcqRel) {
            let slot = self.slot(usize::from(pcb.port));
            self.pending[slot].push(Pending::Divert(pcb.clone()));
            self.wake(slot);
        }
    }

    /// The divert sockets' counters (`netstat -s -p divert`).
    pub fn divert_stats(&self) -> &DivertStats {
        &self.divert.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_takes_one_socket_and_is_free_again_after_unbind() {
        let s = Sockets::new(1, || 7);
        let a = s.divert_bind(700).unwrap();
        assert_eq!(s.divert_bind(700).err(), Some(SockError::AddrInUse));
        assert_eq!(s.divert_bind(0).err(), Some(SockError::AddrNotAvailable));
        s.divert_unbind(&a);
        assert!(s.divert_bind(700).is_ok());
    }

    #[test]
    fn delivery_without_a_socket_or_room_is_counted() {
        let s = Sockets::new(1, || 7);
        let pkt = [0x45u8; 1000];
        assert!(!s.divert_deliver(9, Ipv4Addr::UNSPECIFIED.into(), &pkt));
        let _p = s.divert_bind(9).unwrap();
        let mut n = 0;
        while s.divert_deliver(9, Ipv4Addr::UNSPECIFIED.into(), &pkt) {
            n += 1;
        }
        assert_eq!(n, DIVERT_SPACE / (REC_HDR + pkt.len()));
        let st = s.divert_stats();
        assert_eq!(st.ipackets.load(Ordering::Relaxed), n as u64 + 2);
        assert_eq!(st.noport.load(Ordering::Relaxed), 1);
        assert_eq!(st.fullsock.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn only_consistent_ip_headers_may_be_written() {
        let mut v4 = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        v4.extend_from_slice(&[0; 8]);
        assert!(packet_ok(&v4));
        assert!(!packet_ok(&v4[..27]));
        assert!(!packet_ok(&[0x45]));
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        v6.extend_from_slice(&[0; 40]);
        assert!(packet_ok(&v6));
        v6.push(0);
        assert!(!packet_ok(&v6));
        assert!(!packet_ok(&[0x50; 40]));
    }
}
