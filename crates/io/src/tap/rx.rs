//! Reads from a TAP queue: through the ring (`crate::uring_rx`) or
//! `readv(2)`, and with the virtio-net header `vnet_rx`: the header
//! checked, a super-frame whole into a large buffer or cut, a
//! `NEEDS_CSUM` frame's checksum completed.

use super::{TapQueue, ETH_HLEN, TAP_RX_MAX};
use crate::stats::LinkStats;
use crate::sys::{bump, errno};
use crate::uring_rx::{Read, UringReader};
use crate::vnet::{VnetHdr, VNET_HDR_LEN};
use softnet_core::packet::{csum_flags, mflags, PacketBuf, PacketPool};
use std::os::fd::AsRawFd;

impl TapQueue {
    /// `recv` through the ring: each completion's frame copied into a pool
    /// buffer. `None` when the ring failed (dropped, `readv` from now on).
    fn recv_ring(
        &mut self,
        pool: &mut PacketPool,
        mut large: Option<&mut PacketPool>,
        out: &mut Vec<PacketBuf>,
        max: usize,
    ) -> Option<usize> {
        if self.reader.is_none() {
            self.want_ring_reads = false;
            // Once per queue: buffers as long as the pool's, so a frame a
            // pool buffer cannot hold is seen, and counted, as such; with
            // the virtio-net header, as long as a super-frame.
            let size = if self.vnet { TAP_RX_MAX } else { pool.buf_size() };
            match UringReader::new(self.fd.as_raw_fd(), size) {
                Ok(r) => self.reader = Some(r),
                Err(e) => {
                    tracing::warn!("{}: io_uring reads failed to start ({e}): readv(2) until EAGAIN", self.dev);
                    return None;
                }
            }
        }
        let reader = self.reader.as_mut()?;
        let stats = &self.stats;
        let vnet = self.vnet;
        let mut n = 0;
        let r = reader.read_batch(max, |rd| match rd {
            Read::Frame(f) if vnet => n += vnet_rx(stats, pool, large.as_deref_mut(), f, out),
            Read::Frame(f) => {
                let Some(mut p) = pool.alloc() else {
                    bump(&stats.rx_nobuf_drops, 1);
                    return;
                };
                let spare = p.spare_mut();
                if f.len() > spare.len() {
                    bump(&stats.rx_oversize, 1);
                    pool.free(p);
                    return;
                }
                spare[..f.len()].copy_from_slice(f);
                p.set_len(f.len()).expect("read fits the buffer");
                bump(&stats.rx_bytes, f.len() as u64);
                out.push(p);
                n += 1;
            }
            // tun's copy into a buffer shorter than the frame fails and
            // drops the frame (tun_put_user).
            Read::Error(libc::EFAULT) => bump(&stats.rx_oversize, 1),
            Read::Error(_) => bump(&stats.rx_errors, 1),
        });
        bump(&self.stats.rx_frames, n as u64);
        match r {
            Ok(_) => Some(n),
            Err(e) => {
                tracing::warn!("{}: io_uring read failed ({e}): back to readv(2)", self.dev);
                self.reader = None;
                if n > 0 {
                    Some(n)
                } else {
                    None
                }
            }
        }
    }

    /// `recv`, super-frames into `large` buffers when there is a pool of
    /// them (`vnet_rx`): through the ring, or `readv(2)` until EAGAIN.
    pub(super) fn recv_from(
        &mut self,
        pool: &mut PacketPool,
        mut large: Option<&mut PacketPool>,
        out: &mut Vec<PacketBuf>,
        max: usize,
    ) -> usize {
        // Any frame may be a super-frame: no more reads a round than
        // there are large buffers, so that the rest wait whole for the
        // next round instead of being cut here (while none is left, the
        // reads go on and cut: the queue never stalls).
        let max = match large.as_deref() {
            Some(l) if self.vnet && l.available() > 0 => max.min(l.available()),
            _ => max,
        };
        if self.want_ring_reads || self.reader.is_some() {
            if let Some(n) = self.recv_ring(pool, large.as_deref_mut(), out, max) {
                return n;
            }
        }
        if self.vnet {
            return self.recv_vnet(pool, large, out, max);
        }
        let mut n = 0;

        while n < max {
            let Some(mut p) = pool.alloc() else {
                bump(&self.stats.rx_nobuf, 1);
                break;
            };
            let spare = p.spare_mut();
            let room = spare.len();
            let iov = [
                libc::iovec { iov_base: spare.as_mut_ptr() as *mut libc::c_void, iov_len: room },
                libc::iovec { iov_base: self.overflow.as_mut_ptr() as *mut libc::c_void, iov_len: self.overflow.len() },
            ];
            // SAFETY: both iovecs point at live, writable memory of the given lengths.
            let r = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
            if r < 0 {
                pool.free(p);
                let e = errno();
                if e != libc::EAGAIN && e != libc::EINTR {
                    bump(&self.stats.rx_errors, 1);
                }
                break;
            }
            let len = r as usize;
            if len > room {
                bump(&self.stats.rx_oversize, 1);
                pool.free(p);
                continue;
            }
            p.set_len(len).expect("read fits the buffer");
            bump(&self.stats.rx_bytes, len as u64);
            out.push(p);
            n += 1;
        }
        bump(&self.stats.rx_frames, n as u64);
        n
    }

    /// `recv` by `read(2)` with the virtio-net header: each frame (up to a
    /// super-frame's length) into the queue's own buffer, then into a pool
    /// or large buffer by `vnet_rx`.
    fn recv_vnet(
        &mut self,
        pool: &mut PacketPool,
        mut large: Option<&mut PacketPool>,
        out: &mut Vec<PacketBuf>,
        max: usize,
    ) -> usize {
        let mut n = 0;
        let mut reads = 0;
        while reads < max {
            if pool.available() == 0 {
                bump(&self.stats.rx_nobuf, 1);
                break;
            }
            let buf = &mut self.overflow;
            // SAFETY: reads into our own live buffer of its length.
            let r = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if r < 0 {
                let e = errno();
                if e != libc::EAGAIN && e != libc::EINTR {
                    bump(&self.stats.rx_errors, 1);
                }
                break;
            }
            reads += 1;
            n += vnet_rx(&self.stats, pool, large.as_deref_mut(), &self.overflow[..r as usize], out);
        }
        bump(&self.stats.rx_frames, n as u64);
        n
    }
}

/// A frame read with its virtio-net header at the front of `f` (still in
/// the reader's buffer): the header checked against the frame (a bad one
/// a counted drop), then the frame copied without it into a buffer:
///
/// * a TCP segmentation frame (`GSO_TCPV4`/`GSO_TCPV6`, the kernel's
///   TSO super-frame of up to 64 KB) whole into a buffer from `large`,
///   marked `mflags::TSO` with its gso size in `pf_frag_max` and its
///   transport checksum vouched for (`csum_flags::L4_OK`: the sender on
///   the TAP's side left it to the device, as Linux's receiver of a
///   CHECKSUM_PARTIAL skb trusts it): the stack takes it as one LRO'd
///   segment, and cuts it if it leaves again (`gso::segment_tcp`). Without
///   a large buffer it is cut here into pool buffers, each segment with its
///   checksum (`rx_gso_cut`);
/// * any other frame into a pool buffer, a `NEEDS_CSUM` one with its
///   checksum completed (and `L4_OK`), a `DATA_VALID` one `L4_OK`.
///
/// Appends what it made to `out`; returns how many.
pub fn vnet_rx(
    stats: &LinkStats,
    pool: &mut PacketPool,
    large: Option<&mut PacketPool>,
    f: &[u8],
    out: &mut Vec<PacketBuf>,
) -> usize {
    let frame_len = f.len().saturating_sub(VNET_HDR_LEN);
    let h = match VnetHdr::decode(f).and_then(|h| h.check(frame_len).map(|_| h)) {
        Ok(h) => h,
        Err(e) => return vnet_bad(stats, e),
    };
    let frame = &f[VNET_HDR_LEN..];
    if h.gso() != crate::vnet::GSO_NONE {
        return gso_rx(stats, pool, large, &h, frame, out);
    }
    if frame.len() > pool.buf_size().saturating_sub(softnet_core::packet::HEADROOM) {
        bump(&stats.rx_oversize, 1);
        return 0;
    }
    let Some(mut p) = pool.alloc() else {
        bump(&stats.rx_nobuf_drops, 1);
        return 0;
    };
    if p.set_len(frame.len()).is_err() {
        bump(&stats.rx_oversize, 1);
        pool.free(p);
        return 0;
    }
    p.data_mut().copy_from_slice(frame);
    if h.flags & crate::vnet::F_NEEDS_CSUM != 0 {
        crate::vnet::complete_csum(p.data_mut(), &h);
        bump(&stats.rx_csum_completed, 1);
        p.meta.csum |= csum_flags::L4_OK;
    } else if h.flags & crate::vnet::F_DATA_VALID != 0 {
        p.meta.csum |= csum_flags::L4_OK;
    }
    bump(&stats.rx_bytes, p.len() as u64);
    out.push(p);
    1
}

/// A read frame refused for its header: counted, dropped.
fn vnet_bad(stats: &LinkStats, e: impl std::fmt::Debug) -> usize {
    bump(&stats.rx_vnet_bad, 1);
    bump(&stats.rx_errors, 1);
    tracing::debug!("TAP read: bad virtio-net frame ({e:?}): dropped");
    0
}

/// `vnet_rx` of a segmentation frame (its header checked): whole into a
/// large buffer, or cut into pool buffers.
fn gso_rx(
    stats: &LinkStats,
    pool: &mut PacketPool,
    large: Option<&mut PacketPool>,
    h: &VnetHdr,
    frame: &[u8],
    out: &mut Vec<PacketBuf>,
) -> usize {
    use softnet_core::gso::{GsoError, TcpLayout};
    let et = frame.get(12..14).map(|e| u16::from_be_bytes([e[0], e[1]]));
    let want = if h.gso() == crate::vnet::GSO_TCPV4 { 0x0800 } else { 0x86dd };
    if et != Some(want) {
        return vnet_bad(stats, GsoError::NotTcp);
    }
    // The headers must be a TCP packet's that the frame holds (the IP
    // length decides its end: a padded frame's tail is dropped).
    let lay = match TcpLayout::parse(frame, ETH_HLEN) {
        Ok(l) if l.v6 == (want == 0x86dd) => l,
        Ok(_) => return vnet_bad(stats, GsoError::NotTcp),
        Err(e) => return vnet_bad(stats, e),
    };
    if let Some(large) = large {
        if let Some(mut p) = large.alloc() {
            if p.set_len(lay.end).is_ok() {
                p.data_mut().copy_from_slice(&frame[..lay.end]);
                p.meta.flags |= mflags::TSO;
                p.meta.pf_frag_max = h.gso_size;
                p.meta.csum |= csum_flags::L4_OK;
                bump(&stats.rx_gso_frames, 1);
                bump(&stats.rx_bytes, p.len() as u64);
                out.push(p);
                return 1;
            }
            large.free(p);
        }
    }
    let mut n = 0;
    let r = softnet_core::gso::segment_tcp(
        &frame[..lay.end],
        ETH_HLEN,
        h.gso_size as usize,
        || pool.alloc(),
        |s| {
            bump(&stats.rx_bytes, s.len() as u64);
            out.push(s);
            n += 1;
        },
    );
    match r {
        Ok(_) => bump(&stats.rx_gso_cut, 1),
        Err(GsoError::NoBuffer) => bump(&stats.rx_nobuf_drops, 1),
        Err(e) => return n + vnet_bad(stats, e),
    }
    n
}

#[cfg(test)]
mod tests {
    use super::super::test_frames::frame;
    use super::*;
    use crate::vnet::F_NEEDS_CSUM;
    use softnet_core::packet::DEFAULT_BUF_SIZE;

    fn read(h: VnetHdr, f: &[u8], stats: &LinkStats, pool: &mut PacketPool) -> Vec<PacketBuf> {
        read_with(h, f, stats, pool, None)
    }

    /// What `vnet_rx` makes of frame `f` read after header `h`.
    fn read_with(
        h: VnetHdr,
        f: &[u8],
        stats: &LinkStats,
        pool: &mut PacketPool,
        large: Option<&mut PacketPool>,
    ) -> Vec<PacketBuf> {
        let mut b = vec![0u8; VNET_HDR_LEN];
        h.encode((&mut b[..]).try_into().unwrap());
        b.extend_from_slice(f);
        let mut out = Vec::new();
        let n = vnet_rx(stats, pool, large, &b, &mut out);
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn reads_take_the_header_off_complete_checksums_cut_trains_and_count_bad_ones() {
        let stats = LinkStats::default();
        let mut pool = PacketPool::new(64, DEFAULT_BUF_SIZE);
        let good = frame(1000);
        // Plain: the frame as it was.
        let out = read(VnetHdr::PLAIN, &good, &stats, &mut pool);
        assert_eq!(out[0].data(), &good[..]);
        // NEEDS_CSUM: the field holds the pseudo-header sum; completed.
        let mut partial = good.clone();
        crate::vnet::partial_tcp4(&mut partial).unwrap();
        let h = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..VnetHdr::PLAIN };
        let out = read(h, &partial, &stats, &mut pool);
        assert_eq!(out[0].data(), &good[..]);
        assert_eq!(stats.snapshot().rx_csum_completed, 1);
        // A train of 1,000 bytes at gso size 300: four segments.
        let h = VnetHdr::tcp4_train(34, 20, 300);
        let out = read(h, &partial, &stats, &mut pool);
        assert_eq!(out.iter().map(|p| p.len() - 54).collect::<Vec<_>>(), [300, 300, 300, 100]);
        let mut payload = Vec::new();
        for p in &out {
            let ip = softnet_wire::ipv4::Ipv4Packet::new_checked(&p.data()[14..]).unwrap();
            let t = softnet_wire::tcp::TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(t.verify_checksum(ip.src(), ip.dst()));
            payload.extend_from_slice(t.payload());
        }
        assert_eq!(payload, good[54..]);
        assert_eq!(stats.snapshot().rx_gso_cut, 1);
        // Bad headers: dropped, counted, their buffers back in the pool.
        let before = pool.available();
        let bad = [
            VnetHdr { gso_type: 9, ..h },
            VnetHdr { gso_size: 0, ..h },
            VnetHdr { hdr_len: 5000, ..h },
            VnetHdr { csum_start: 1100, ..h },
            VnetHdr { csum_offset: 2000, flags: F_NEEDS_CSUM, ..VnetHdr::PLAIN },
            // A TCPV4 train whose frame is not IPv4.
            VnetHdr { gso_type: crate::vnet::GSO_TCPV6, ..h },
        ];
        for b in bad {
            assert!(read(b, &partial, &stats, &mut pool).is_empty(), "{b:?}");
        }
        assert_eq!(stats.snapshot().rx_vnet_bad, bad.len() as u64);
        assert_eq!(pool.available(), before);
        assert_eq!(stats.rx_losses().errors, bad.len() as u64, "netstat -i's Ifail has them");
        // Shorter than the header.
        assert_eq!(vnet_rx(&stats, &mut pool, None, &[0; 4], &mut Vec::new()), 0);
        assert_eq!(stats.snapshot().rx_vnet_bad, bad.len() as u64 + 1);
    }

    /// An Ethernet + IPv6 + TCP frame, `len` payload bytes (its checksum
    /// field left 0: a super-frame's is the device's).
    fn frame6(len: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 20 + len];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((20 + len) as u16).to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        f[22 + 15] = 1;
        f[38 + 15] = 2;
        f[54 + 12] = 0x50;
        f[54 + 13] = 0x18;
        for (i, b) in f[74..].iter_mut().enumerate() {
            *b = (i * 3) as u8;
        }
        f
    }

    #[test]
    fn super_frames_go_whole_into_large_buffers_or_are_cut_when_none_is_left() {
        let stats = LinkStats::default();
        let mut pool = PacketPool::new(64, DEFAULT_BUF_SIZE);
        let mut large = PacketPool::new(1, 65535 + 256);
        // IPv4: 40,000 bytes at gso size 1448, and 10 bytes of padding
        // after the IP packet (dropped).
        let mut f4 = frame(40_000);
        crate::vnet::partial_tcp4(&mut f4).unwrap();
        let mut padded = f4.clone();
        padded.extend_from_slice(&[0xee; 10]);
        let h4 = VnetHdr::tcp4_train(34, 20, 1448);
        let out = read_with(h4, &padded, &stats, &mut pool, Some(&mut large));
        assert_eq!(out.len(), 1);
        let p = &out[0];
        assert_eq!(p.data(), &f4[..], "the frame whole, without its header and padding");
        assert_ne!(p.meta.flags & mflags::TSO, 0);
        assert_eq!(p.meta.pf_frag_max, 1448);
        assert_ne!(p.meta.csum & csum_flags::L4_OK, 0, "its checksum is the device's");
        assert_eq!(stats.snapshot().rx_gso_frames, 1);
        // The one large buffer is taken: the next train is cut.
        let out2 = read_with(h4, &f4, &stats, &mut pool, Some(&mut large));
        assert_eq!(out2.len(), 40_000usize.div_ceil(1448));
        assert!(out2.iter().all(|p| p.meta.flags & mflags::TSO == 0 && p.len() <= 14 + 40 + 1448));
        assert_eq!(stats.snapshot().rx_gso_cut, 1);
        for p in out2 {
            pool.free(p);
        }
        for p in out {
            large.free(p);
        }
        // IPv6, with the ECN bit, the largest payload there is.
        let f6 = frame6(65535 - 20);
        let h6 =
            VnetHdr { gso_type: crate::vnet::GSO_TCPV6 | crate::vnet::GSO_ECN, ..VnetHdr::tcp4_train(54, 20, 1440) };
        let out = read_with(h6, &f6, &stats, &mut pool, Some(&mut large));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data(), &f6[..]);
        assert_eq!(out[0].meta.pf_frag_max, 1440);
        assert_eq!(stats.snapshot().rx_gso_frames, 2);
        for p in out {
            large.free(p);
        }
        // Bad super-frames: counted, dropped, no buffer kept.
        let (free, free_large) = (pool.available(), large.available());
        let bad_before = stats.snapshot().rx_vnet_bad;
        let mut short = f4.clone();
        short.truncate(30_000); // the IP length says more than the frame has
        let mut big = f4.clone();
        big[16..18].copy_from_slice(&0u16.to_be_bytes()); // BIG TCP's length 0: past 64 KB
        let mut v6as4 = f6.clone();
        v6as4.truncate(2000);
        let cases: [(VnetHdr, &[u8]); 8] = [
            (VnetHdr { gso_size: 0, ..h4 }, &f4),
            (VnetHdr { gso_size: 1, ..h4 }, &f4),
            (VnetHdr { hdr_len: 50_000, ..h4 }, &f4),
            (VnetHdr { hdr_len: 20, ..h4 }, &f4),
            (h4, &short),
            (h4, &big),
            (h4, &v6as4),
            (VnetHdr { gso_type: crate::vnet::GSO_TCPV6, ..h4 }, &f4),
        ];
        for (h, f) in cases {
            assert!(read_with(h, f, &stats, &mut pool, Some(&mut large)).is_empty(), "{h:?}");
        }
        assert_eq!(stats.snapshot().rx_vnet_bad, bad_before + cases.len() as u64);
        assert_eq!((pool.available(), large.available()), (free, free_large));
        // A plain frame longer than a pool buffer: oversize.
        let over = stats.snapshot().rx_oversize;
        assert!(read_with(VnetHdr::PLAIN, &frame(3000), &stats, &mut pool, Some(&mut large)).is_empty());
        assert_eq!(stats.snapshot().rx_oversize, over + 1);
    }
}
