//! pf_refragment6 (with ip6_fragment): a datagram pf reassembled
//! (`PacketMeta::pf_frag_max` not 0, crates/pf/src/frag6.rs) leaves cut
//! into fragments again after pf out, each with the datagram's
//! unfragmentable part, a fragment header with the original
//! identification and at most the largest original fragment's payload,
//! so what went through the router keeps the sizes its source chose.

const IPV6_HDR: usize = 40;
const FRAG_HDR: usize = 8;
const NH_FRAGMENT: u8 = 44;

use crate::packet::PacketBuf;

/// pf_refragment6 (ip6_fragment) one fragment at a time: cuts a datagram
/// pf reassembled into fragments with its unfragmentable part, a
/// fragment header with `id`, and at most `maxlen` octets of payload (a
/// multiple of 8 but for the last). No allocation: the caller gives each
/// fragment's buffer.
pub struct Refrag6 {
    hdrlen: usize,
    extoff: usize,
    chunk_max: usize,
    id: u32,
    pos: usize,
}

impl Refrag6 {
    /// `None` when `d` cannot be cut so (`maxlen` under 8, a bad chain,
    /// nothing past the unfragmentable part).
    pub fn new(d: &[u8], id: u32, maxlen: usize) -> Option<Refrag6> {
        let (hdrlen, extoff) = unfragmentable(d)?;
        let chunk_max = maxlen & !7;
        if chunk_max == 0 || d.len() <= hdrlen {
            return None;
        }
        Some(Refrag6 { hdrlen, extoff, chunk_max, id, pos: 0 })
    }

    /// Whether fragments are left to cut from `d` (the same datagram).
    pub fn more(&self, d: &[u8]) -> bool {
        self.hdrlen + self.pos < d.len()
    }

    /// Writes the next fragment of `d` into `f`; false if `f` is too small.
    pub fn next_into(&mut self, d: &[u8], f: &mut PacketBuf) -> bool {
        let (hdrlen, extoff) = (self.hdrlen, self.extoff);
        let payload = &d[hdrlen..];
        let pos = self.pos;
        let chunk = self.chunk_max.min(payload.len() - pos);
        let last = pos + chunk == payload.len();
        let len = hdrlen + FRAG_HDR + chunk;
        if f.rewind(len).is_err() {
            return false;
        }
        let b = f.data_mut();
        b[..hdrlen].copy_from_slice(&d[..hdrlen]);
        b[extoff] = NH_FRAGMENT;
        b[4..6].copy_from_slice(&((len - IPV6_HDR) as u16).to_be_bytes());
        let offlg = (pos as u16) | u16::from(!last);
        b[hdrlen] = d[extoff];
        b[hdrlen + 1] = 0;
        b[hdrlen + 2..hdrlen + 4].copy_from_slice(&offlg.to_be_bytes());
        b[hdrlen + 4..hdrlen + 8].copy_from_slice(&self.id.to_be_bytes());
        b[hdrlen + FRAG_HDR..].copy_from_slice(&payload[pos..pos + chunk]);
        self.pos += chunk;
        true
    }
}

/// Every fragment of `d` at once (tests and tools): `None` as
/// `Refrag6::new`, else how many `alloc` gave buffers for.
pub fn refragment6(
    d: &[u8],
    id: u32,
    maxlen: usize,
    mut alloc: impl FnMut() -> Option<PacketBuf>,
    mut out: impl FnMut(PacketBuf),
) -> Option<usize> {
    let mut cut = Refrag6::new(d, id, maxlen)?;
    let mut n = 0;
    while cut.more(d) {
        let Some(mut f) = alloc() else { break };
        if !cut.next_into(d, &mut f) {
            break;
        }
        out(f);
        n += 1;
    }
    Some(n)
}

/// The unfragmentable part of a whole datagram (RFC 8200 §4.5: the
/// header, hop-by-hop options, and destination options followed by a
/// routing header, with the routing header) and the offset of the byte
/// naming what follows it.
pub fn unfragmentable(d: &[u8]) -> Option<(usize, usize)> {
    if d.len() < IPV6_HDR {
        return None;
    }
    let (mut nh, mut at, mut extoff) = (d[6], IPV6_HDR, 6);
    let mut end = (at, extoff);
    loop {
        match nh {
            0 | 43 | 60 => {
                let h = d.get(at..at + 2)?;
                let next_at = at + (h[1] as usize + 1) * 8;
                let is_routing = nh == 43;
                let is_hbh = nh == 0;
                extoff = at;
                nh = h[0];
                at = next_at;
                if is_routing || is_hbh {
                    end = (at, extoff);
                }
                if at > d.len() {
                    return None;
                }
            }
            _ => return Some(end),
        }
    }
}

/// The largest fragment `refragment6` makes of `d` with `maxlen`: what
/// must fit the outgoing link's MTU (`None`: not cut so).
pub fn refragment_size(d: &[u8], maxlen: usize) -> Option<usize> {
    let (hdrlen, _) = unfragmentable(d)?;
    let payload = d.len().checked_sub(hdrlen)?;
    Some(hdrlen + FRAG_HDR + payload.min(maxlen & !7))
}
