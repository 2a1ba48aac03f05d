//! IPv6 reassembly for datagrams addressed to the router itself (RFC 8200
//! §4.5): `ping -6 -s 4000` to one of its addresses. Forwarded fragments
//! are never reassembled (an IPv6 router forwards them as they are).
//!
//! The slow path, as `reass.rs` for IPv4: one mutex-protected table shared
//! by the workers, bounded in datagrams, entries dropped after
//! `REASS_TIMEOUT` (checked at each fragment). An overlapping fragment
//! drops the whole datagram and the fragments that come after it (RFC
//! 5722 §3). The unfragmentable part is the first fragment's.

use crate::reass::{MAX_DATAGRAMS, REASS_TIMEOUT};
use crate::time::Instant;
use parking_lot::Mutex;
use softnet_wire::ipv6::HEADER_LEN;
use softnet_wire::ipv6ext::{FragmentRepr, FRAGMENT_HEADER_LEN};
use std::collections::HashMap;
use std::net::Ipv6Addr;

#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
struct Key {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ident: u32,
}

struct Partial {
    /// The first fragment's unfragmentable part, its next header field
    /// naming what the fragment header named.
    header: Option<Vec<u8>>,
    /// (offset, fragment data) pieces, unordered.
    pieces: Vec<(usize, Vec<u8>)>,
    /// Length of the fragmentable part, known from the last fragment.
    total: Option<usize>,
    /// Overlap seen: the datagram is refused; later fragments of it too,
    /// until the entry expires (RFC 5722 §3).
    refused: bool,
    expires: Instant,
}

/// What became of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Reass6Result {
    Held,
    /// Complete: the unfragmentable part (payload length not yet set) and
    /// the fragmentable part, to be put in one buffer.
    Complete {
        header: Vec<u8>,
        payload: Vec<u8>,
    },
    /// Overlapping fragments (RFC 5722): the whole datagram is dropped.
    Overlap,
    /// Dropped: the table is full, or the lengths disagree.
    Dropped,
}

#[derive(Default)]
pub struct Reassembly6 {
    table: Mutex<HashMap<Key, Partial>>,
}

impl Reassembly6 {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one fragment: `pkt` the whole IPv6 packet, its fragment header
    /// `frag` at `frag_at`, `nh_at` the next header field that names the
    /// fragment header (6, or the first byte of the header before it).
    pub fn add(&self, now: Instant, pkt: &[u8], frag_at: usize, nh_at: usize, frag: FragmentRepr) -> Reass6Result {
        let ip = softnet_wire::ipv6::Ipv6Packet::new_unchecked(pkt);
        let key = Key { src: ip.src(), dst: ip.dst(), ident: frag.ident };
        let data = &pkt[frag_at + FRAGMENT_HEADER_LEN..];
        let off = frag.frag_offset as usize;
        let end = off + data.len();
        let mut t = self.table.lock();
        t.retain(|_, e| e.expires > now);
        if !t.contains_key(&key) && t.len() >= MAX_DATAGRAMS {
            return Reass6Result::Dropped;
        }
        let e = t.entry(key).or_insert_with(|| Partial {
            header: None,
            pieces: Vec::new(),
            total: None,
            refused: false,
            expires: now + REASS_TIMEOUT,
        });
        if e.refused {
            return Reass6Result::Overlap;
        }
        if e.pieces.iter().any(|(o, d)| off < o + d.len() && *o < end) {
            e.refused = true;
            e.pieces = Vec::new();
            e.header = None;
            return Reass6Result::Overlap;
        }
        let unfrag_ext = frag_at - HEADER_LEN;
        let bad = (!frag.more_frags && e.total.is_some_and(|t| t != end))
            || e.total.is_some_and(|t| end > t)
            || unfrag_ext + end > u16::MAX as usize;
        if bad {
            t.remove(&key);
            return Reass6Result::Dropped;
        }
        if !frag.more_frags {
            e.total = Some(end);
        }
        if off == 0 {
            let mut h = pkt[..frag_at].to_vec();
            h[nh_at] = frag.next_header.0;
            e.header = Some(h);
        }
        e.pieces.push((off, data.to_vec()));
        let (Some(total), Some(_)) = (e.total, e.header.as_ref()) else { return Reass6Result::Held };
        if e.pieces.iter().map(|(_, d)| d.len()).sum::<usize>() != total {
            return Reass6Result::Held;
        }
        let mut e = t.remove(&key).expect("present");
        e.pieces.sort_by_key(|(o, _)| *o);
        let mut payload = Vec::with_capacity(total);
        for (_, d) in e.pieces {
            payload.extend_from_slice(&d);
        }
        Reass6Result::Complete { header: e.header.take().unwrap_or_default(), payload }
    }

    /// Partial datagrams held.
    pub fn pending(&self) -> usize {
        self.table.lock().len()
    }
}
