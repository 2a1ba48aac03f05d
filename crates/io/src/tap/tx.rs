//! Writes to a TAP queue: one `write(2)` a frame or a batch through the
//! ring (`crate::uring`), and with the virtio-net header `vnet_tx`: the
//! plain header, or a TCP super-segment's (GSO + `NEEDS_CSUM`).

use super::TapQueue;
use crate::sys::{bump, errno};
use crate::vnet::{VnetHdr, VNET_HDR_LEN};
use softnet_core::packet::{mflags, PacketBuf, PacketPool};
use std::os::fd::AsRawFd;

impl TapQueue {
    /// Counts one write's result (`r`: bytes or -1 with `e` the errno) of
    /// a frame of `len` bytes; returns whether it was sent whole.
    #[inline]
    fn account(&self, r: isize, e: i32, len: usize) -> bool {
        if r == len as isize {
            return true;
        }
        if r < 0 && e == libc::EAGAIN {
            bump(&self.stats.tx_busy, 1);
        } else if r < 0 && e == libc::EINVAL && len > 65535 {
            bump(&self.stats.tx_oversize, 1);
        } else {
            bump(&self.stats.tx_errors, 1);
        }
        false
    }

    fn write_one(&self, d: &[u8]) -> bool {
        // SAFETY: d is a live byte slice.
        let r = unsafe { libc::write(self.fd.as_raw_fd(), d.as_ptr() as *const libc::c_void, d.len()) };
        self.account(r, if r < 0 { errno() } else { 0 }, d.len())
    }

    /// `send` through the ring: every frame's write in one submission
    /// (`ENTRIES` at a time); what the ring could not do is written with
    /// `write(2)` and the ring given up.
    fn send_batched(&mut self, frames: &[PacketBuf]) -> (usize, u64) {
        let mut results = std::mem::take(&mut self.results);
        results.clear();
        results.resize(frames.len(), None);
        let fd = self.fd.as_raw_fd();
        let uring = self.uring.as_mut().expect("batched sends have a ring");
        if let Err(e) = uring.write_batch(fd, |i| frames[i].data(), &mut results) {
            tracing::warn!("{}: io_uring write failed ({}): back to one write(2) per frame", self.dev, e.0);
            self.uring = None;
        }
        let (mut sent, mut bytes) = (0, 0u64);
        for (p, r) in frames.iter().zip(&results) {
            let d = p.data();
            let ok = match *r {
                Some(r) if r >= 0 => self.account(r as isize, 0, d.len()),
                Some(r) => self.account(-1, -r, d.len()),
                None => self.write_one(d),
            };
            if ok {
                sent += 1;
                bytes += d.len() as u64;
            }
        }
        self.results = results;
        (sent, bytes)
    }

    /// `send` on a queue without the virtio-net header: a batch through
    /// the ring, else one `write(2)` a frame.
    pub(super) fn send_plain(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        let mut sent = 0;
        let mut bytes = 0;
        if frames.len() >= 2 && self.uring.is_some() {
            (sent, bytes) = self.send_batched(frames);
            for p in frames.drain(..) {
                pool.free(p);
            }
        } else {
            for p in frames.drain(..) {
                let d = p.data();
                if self.write_one(d) {
                    sent += 1;
                    bytes += d.len() as u64;
                }
                pool.free(p);
            }
        }
        bump(&self.stats.tx_frames, sent as u64);
        bump(&self.stats.tx_bytes, bytes);
        sent
    }

    /// `send` on a queue with the virtio-net header: each frame gets its
    /// header in its headroom (`vnet_tx`; a frame without room for it is
    /// written with the header in an iovec of its own), then the batch goes
    /// out as without it. Large buffers go back to `large` (or are freed).
    pub(super) fn send_vnet(
        &mut self,
        pool: &mut PacketPool,
        mut large: Option<&mut PacketPool>,
        frames: &mut Vec<PacketBuf>,
    ) -> usize {
        let (mut sent, mut bytes) = (0usize, 0u64);
        let mut gso = 0u64;
        // Frames without headroom are written alone, the others batched.
        let mut i = 0;
        while i < frames.len() {
            match vnet_tx(&mut frames[i]) {
                Some(is_gso) => {
                    gso += is_gso as u64;
                    i += 1;
                }
                None => {
                    let p = frames.remove(i);
                    let mut h = [0u8; VNET_HDR_LEN];
                    VnetHdr::PLAIN.encode(&mut h);
                    if self.writev_one(&h, p.data()) {
                        sent += 1;
                        bytes += p.len() as u64;
                    }
                    give_back(pool, large.as_deref_mut(), p);
                }
            }
        }
        let n = frames.len();
        if n >= 2 && self.uring.is_some() {
            let (s, b) = self.send_batched(frames);
            sent += s;
            bytes += b - (s * VNET_HDR_LEN) as u64;
        } else {
            for p in frames.iter() {
                if self.write_one(p.data()) {
                    sent += 1;
                    bytes += (p.len() - VNET_HDR_LEN) as u64;
                }
            }
        }
        for p in frames.drain(..) {
            give_back(pool, large.as_deref_mut(), p);
        }
        bump(&self.stats.tx_frames, sent as u64);
        bump(&self.stats.tx_bytes, bytes);
        // Super-frames handed over (a failed one is in tx_errors too).
        bump(&self.stats.tx_gso_frames, gso);
        sent
    }

    /// One frame after a header of its own, by writev(2).
    fn writev_one(&self, h: &[u8], d: &[u8]) -> bool {
        let iov = [
            libc::iovec { iov_base: h.as_ptr() as *mut libc::c_void, iov_len: h.len() },
            libc::iovec { iov_base: d.as_ptr() as *mut libc::c_void, iov_len: d.len() },
        ];
        // SAFETY: both iovecs point at live memory of the given lengths.
        let r = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        self.account(r, if r < 0 { errno() } else { 0 }, h.len() + d.len())
    }
}

/// A buffer back to the pool it came from: `large` for one of another size
/// than `pool`'s, when there is one.
fn give_back(pool: &mut PacketPool, large: Option<&mut PacketPool>, p: PacketBuf) {
    match large {
        Some(l) if p.capacity() != pool.buf_size() => l.free(p),
        _ => pool.free(p),
    }
}

/// Puts the virtio-net header in front of a frame to write: a TCP
/// super-segment (`mflags::TSO` with more payload than its MSS in
/// `pf_frag_max`) gets `GSO_TCPV4` or `GSO_TCPV6` + `NEEDS_CSUM` and its
/// checksum field the pseudo-header sum (`vnet::tcp_tx_header`), any other
/// frame the plain header. Returns whether it is a super-frame, or None
/// when the frame has no headroom for the header (left as it was).
pub fn vnet_tx(p: &mut PacketBuf) -> Option<bool> {
    let mut h = VnetHdr::PLAIN;
    let gso = p.meta.pf_frag_max as usize;
    if p.meta.flags & mflags::TSO != 0 && gso != 0 {
        // One that fits one segment after all (a copy the stack made):
        // the device completes its checksum.
        h = crate::vnet::tcp_tx_header(p.data_mut(), gso).unwrap_or(h);
    }
    p.push_front(VNET_HDR_LEN).ok()?;
    let b: &mut [u8; VNET_HDR_LEN] = (&mut p.data_mut()[..VNET_HDR_LEN]).try_into().expect("pushed");
    h.encode(b);
    Some(h.gso_type != crate::vnet::GSO_NONE)
}

#[cfg(test)]
mod tests {
    use super::super::test_frames::frame;
    use super::*;
    use crate::vnet::GSO_TCPV4;

    #[test]
    fn writes_get_the_plain_header_or_a_tcp4_train_one() {
        let good = frame(3000);
        let mut p = PacketBuf::from_slice(&good);
        assert_eq!(vnet_tx(&mut p), Some(false));
        assert_eq!(&p.data()[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
        assert_eq!(&p.data()[VNET_HDR_LEN..], &good[..]);
        let mut p = PacketBuf::from_slice(&good);
        p.meta.flags |= mflags::TSO;
        p.meta.pf_frag_max = 1448;
        assert_eq!(vnet_tx(&mut p), Some(true));
        let h = VnetHdr::decode(p.data()).unwrap();
        assert_eq!(h, VnetHdr::tcp4_train(34, 20, 1448));
        assert_eq!(h.gso_type, GSO_TCPV4);
        // The checksum field is the pseudo-header sum: completing it gives
        // the full checksum back.
        let mut f = p.data()[VNET_HDR_LEN..].to_vec();
        crate::vnet::complete_csum(&mut f, &h);
        assert_eq!(f, good);
        // No headroom: left alone, for writev.
        let mut p = PacketBuf::from_slice(&good);
        let room = p.headroom();
        p.push_front(room).unwrap();
        assert_eq!(vnet_tx(&mut p), None);
    }

    #[test]
    fn an_ipv6_super_segment_gets_a_tcp6_train_header() {
        let good = crate::vnet::tests::tcp6_frame(20_000);
        let mut p = PacketBuf::from_slice(&good);
        p.meta.flags |= mflags::TSO;
        p.meta.pf_frag_max = 1428;
        assert_eq!(vnet_tx(&mut p), Some(true));
        let h = VnetHdr::decode(p.data()).unwrap();
        assert_eq!(h, VnetHdr::tcp6_train(54, 20, 1428));
        assert_eq!(h.gso_type, crate::vnet::GSO_TCPV6);
        let mut f = p.data()[VNET_HDR_LEN..].to_vec();
        crate::vnet::complete_csum(&mut f, &h);
        assert_eq!(f, good);
        // Plain IPv6 (no TSO flag): the plain header, the frame untouched.
        let mut p = PacketBuf::from_slice(&good);
        assert_eq!(vnet_tx(&mut p), Some(false));
        assert_eq!(&p.data()[VNET_HDR_LEN..], &good[..]);
    }
}
