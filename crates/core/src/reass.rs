//! IPv4 reassembly for datagrams addressed to the router itself (RFC 791
//! §3.2, RFC 815): `ping -s 4000` to one of its addresses. Forwarded
//! fragments are never reassembled here (pf does that when it filters).
//!
//! This is the slow path: a mutex-protected table shared by the workers
//! (fragments of one datagram may arrive on different queues), bounded in
//! datagrams and bytes, entries dropped after `REASS_TIMEOUT`. Overlapping
//! fragments drop the whole datagram (RFC 5722's rule, applied to IPv4 as
//! OpenBSD's pf does).

use crate::time::Instant;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// How long a partial datagram is kept (OpenBSD IPFRAGTTL: 60 half-seconds).
pub const REASS_TIMEOUT: Duration = Duration::from_secs(30);
/// Partial datagrams kept at once.
pub const MAX_DATAGRAMS: usize = 64;
/// Largest IPv4 datagram.
const MAX_DATAGRAM: usize = 65_535;

#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
struct Key {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    proto: u8,
}

struct Partial {
    /// The first fragment's header (with its options), once seen.
    header: Option<Vec<u8>>,
    /// (offset, payload) pieces, unordered.
    pieces: Vec<(usize, Vec<u8>)>,
    /// Payload length, known from the last fragment.
    total: Option<usize>,
    expires: Instant,
}

/// What became of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum ReassResult {
    /// Kept; more fragments are needed.
    Held,
    /// The datagram is complete: header (IHL as the first fragment's) and
    /// payload, to be put in one buffer.
    Complete { header: Vec<u8>, payload: Vec<u8> },
    /// Dropped (overlap, too long, table full, inconsistent lengths);
    /// the datagram's other fragments are dropped too.
    Dropped,
}

#[derive(Default)]
pub struct Reassembly {
    table: Mutex<HashMap<Key, Partial>>,
}

impl Reassembly {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one fragment: `ip` is the whole IPv4 packet (header checked).
    pub fn add(&self, now: Instant, ip: &[u8]) -> ReassResult {
        let p = softnet_wire::ipv4::Ipv4Packet::new_unchecked(ip);
        let hlen = p.header_len() as usize;
        let key = Key { src: p.src(), dst: p.dst(), ident: p.ident(), proto: p.protocol().0 };
        let off = p.frag_offset() as usize;
        let more = p.more_frags();
        let payload = p.payload();
        let mut t = self.table.lock();
        t.retain(|_, e| e.expires > now);
        if !t.contains_key(&key) && t.len() >= MAX_DATAGRAMS {
            return ReassResult::Dropped;
        }
        let e = t.entry(key).or_insert_with(|| Partial {
            header: None,
            pieces: Vec::new(),
            total: None,
            expires: now + REASS_TIMEOUT,
        });
        let end = off + payload.len();
        let bad = end > MAX_DATAGRAM - hlen
            || (more && !payload.len().is_multiple_of(8))
            || (!more && e.total.is_some_and(|t| t != end))
            || e.total.is_some_and(|t| end > t)
            || e.pieces.iter().any(|(o, d)| off < o + d.len() && *o < end);
        if bad {
            t.remove(&key);
            return ReassResult::Dropped;
        }
        if !more {
            e.total = Some(end);
        }
        if off == 0 {
            e.header = Some(ip[..hlen].to_vec());
        }
        e.pieces.push((off, payload.to_vec()));
        let (Some(total), Some(_)) = (e.total, e.header.as_ref()) else { return ReassResult::Held };
        if e.pieces.iter().map(|(_, d)| d.len()).sum::<usize>() != total {
            return ReassResult::Held;
        }
        let mut e = t.remove(&key).expect("present");
        e.pieces.sort_by_key(|(o, _)| *o);
        let mut payload = Vec::with_capacity(total);
        for (_, d) in e.pieces {
            payload.extend_from_slice(&d);
        }
        ReassResult::Complete { header: e.header.take().unwrap_or_default(), payload }
    }

    /// Partial datagrams held.
    pub fn pending(&self) -> usize {
        self.table.lock().len()
    }

    /// Drops expired partial datagrams; returns how many (control timer).
    pub fn expire(&self, now: Instant) -> usize {
        let mut t = self.table.lock();
        let before = t.len();
        t.retain(|_, e| e.expires > now);
        before - t.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softnet_wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};

    fn frag(ident: u16, off: usize, more: bool, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 20 + data.len()];
        Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 1, 2),
            dst: Ipv4Addr::new(10, 0, 1, 1),
            protocol: IpProtocol::ICMP,
            ttl: 64,
            tos: 0,
            ident,
            dont_frag: false,
            payload_len: data.len(),
        }
        .emit(&mut b[..20]);
        b[20..].copy_from_slice(data);
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_flags_frag(false, more, off as u16);
        p.fill_checksum();
        b
    }

    #[test]
    fn out_of_order_fragments_make_one_datagram() {
        let r = Reassembly::new();
        let t = Instant::from_secs(10);
        let data: Vec<u8> = (0..40u8).collect();
        assert_eq!(r.add(t, &frag(1, 32, false, &data[32..])), ReassResult::Held);
        assert_eq!(r.add(t, &frag(1, 16, true, &data[16..32])), ReassResult::Held);
        match r.add(t, &frag(1, 0, true, &data[..16])) {
            ReassResult::Complete { header, payload } => {
                assert_eq!(payload, data);
                assert_eq!(header.len(), 20);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn overlap_drops_the_datagram_and_timeout_forgets_it() {
        let r = Reassembly::new();
        let t = Instant::from_secs(10);
        assert_eq!(r.add(t, &frag(2, 0, true, &[0; 16])), ReassResult::Held);
        assert_eq!(r.add(t, &frag(2, 8, true, &[0; 16])), ReassResult::Dropped);
        assert_eq!(r.pending(), 0);
        assert_eq!(r.add(t, &frag(3, 0, true, &[0; 16])), ReassResult::Held);
        assert_eq!(r.expire(t + REASS_TIMEOUT), 1);
        // A non-final fragment whose length is not a multiple of 8.
        assert_eq!(r.add(t, &frag(4, 0, true, &[0; 10])), ReassResult::Dropped);
    }
}
