//! TAP devices through `/dev/net/tun`.
//!
//! Each queue is one non-blocking fd attached with `TUNSETIFF`
//! (`IFF_TAP | IFF_NO_PI`, plus `IFF_MULTI_QUEUE` when the device has or
//! should have several queues; the kernel spreads frames over queues by flow
//! hash). An existing persistent TAP is attached to; a missing one is created
//! (and removed when the last queue closes unless `persist`).
//!
//! Offloads: by default none are negotiated (no `IFF_VNET_HDR`, no
//! `TUNSETOFFLOAD`). The kernel then treats the TAP as a device without
//! TSO/GSO or checksum offload, so it segments and checksums everything
//! before handing it over: each read is one MTU-sized, fully checksummed
//! frame, which is what a router forwards. A frame longer than a pool
//! buffer (the TAP's MTU was raised) is counted in `rx_oversize` and
//! dropped.
//!
//! `TapOptions::offload` (the configuration's `offload = true`) opens the
//! queues with `IFF_VNET_HDR`: every frame read and written carries a
//! virtio-net header (`crate::vnet`). Writes may then be TCP/IPv4
//! super-segments (`mflags::TSO`, up to 64 KB: `LinkQueue::tso_max`) with
//! `VIRTIO_NET_HDR_GSO_TCPV4` and `NEEDS_CSUM`, which the kernel takes as
//! one skb (a local receiver's TCP takes it whole, as a GRO'd packet,
//! without computing a checksum; a forwarding kernel cuts it); the
//! per-skb work of the tun driver and the receiver is paid once per
//! super-segment instead of once per 1,514-byte frame. Reads ask for the
//! same (`TUNSETOFFLOAD` with CSUM, TSO4 and TSO6): the kernel's TCP
//! senders on the TAP's side write their super-frames as they are, with
//! `NEEDS_CSUM`, and a queue reads them whole (the reads' buffers are
//! `TAP_RX_MAX` long). `vnet_rx` checks every header (a bad one is a
//! counted drop, `rx_vnet_bad`), puts a super-frame whole into one of the
//! worker's large buffers as an `mflags::TSO` packet (`rx_gso_frames`; the
//! stack takes it as one LRO'd segment, or cuts it where it leaves), or
//! cuts it in software when no large buffer is left (`rx_gso_cut`), and
//! completes a plain `NEEDS_CSUM` frame's checksum.
//!
//! Batching: the tun driver has no batched read or write for user space
//! (its `sendmsg` batching is vhost-only). Where the kernel has io_uring
//! (`TapOptions::uring`, the default), a queue reads through one
//! multishot read armed in a ring (`crate::uring_rx`: an empty poll is no
//! system call, a batch one `io_uring_enter(2)`, and an idle worker sleeps
//! on the ring's descriptor) and sends a batch of several frames as one
//! `io_uring_enter(2)` (`crate::uring`). Without it (or when the ring
//! fails), reads loop `readv(2)` until EAGAIN or `max`, and writes are one
//! `write(2)` per frame.

use crate::stats::LinkStats;
use crate::sys::{bump, errno, ifreq_ioctl, IfReq};
use crate::uring::UringWriter;
use crate::uring_rx::{Read, UringReader};
use crate::vnet::{VnetHdr, VNET_HDR_LEN};
use crate::{ifinfo, IoError};
use softnet_core::link::LinkQueue;
use softnet_core::packet::{csum_flags, mflags, PacketBuf, PacketPool};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_MULTI_QUEUE: i16 = 0x0100;
const IFF_VNET_HDR: i16 = 0x4000;
const TUNSETOFFLOAD: libc::Ioctl = libc::TUNSETOFFLOAD as libc::Ioctl;
/// `TUNSETOFFLOAD`'s bits (linux/if_tun.h): what the kernel may leave to
/// us in what it sends: the transport checksum (`NEEDS_CSUM`), and TCP
/// segmentation over IPv4 and IPv6 (super-frames of up to 64 KB).
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;
/// The longest frame an offload TAP hands over: its virtio-net header, an
/// Ethernet header and an IP packet of up to 64 KB (a TCP super-frame's
/// IPv6 payload length is at most 65,535 bytes after its 40-byte header).
pub const TAP_RX_MAX: usize = VNET_HDR_LEN + ETH_HLEN + 40 + 65535;
/// The longest IPv4 packet a TCP super-segment written to an offload TAP
/// may be (its IP total length field).
pub const TAP_TSO_MAX: u32 = 65535;
const TUNSETIFF: libc::Ioctl = libc::TUNSETIFF as libc::Ioctl;
const TUNSETPERSIST: libc::Ioctl = libc::TUNSETPERSIST as libc::Ioctl;
/// The tun driver's queue limit (`MAX_TAP_QUEUES`).
pub const MAX_TAP_QUEUES: usize = 256;

/// How to open a TAP.
#[derive(Debug, Clone)]
pub struct TapOptions {
    /// Make a TAP that this call creates persistent (it outlives the fds).
    pub persist: bool,
    /// Set the device administratively up after attaching (logged when it
    /// changes anything): a down TAP drops what is written to it.
    pub bring_up: bool,
    /// Read and write through io_uring where the kernel has it (reads
    /// need Linux 6.7's multishot read): [`TapQueue::ring_reads`] and
    /// [`TapQueue::batch_writes`]. Off: `readv(2)` and `write(2)`.
    pub uring: bool,
    /// Open with `IFF_VNET_HDR` and write TCP super-segments whole
    /// (segmentation offload; see the module's text). Off by default.
    pub offload: bool,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions { persist: false, bring_up: true, uring: true, offload: false }
    }
}

/// One queue of a TAP device.
pub struct TapQueue {
    fd: OwnedFd,
    dev: String,
    queue: usize,
    stats: Arc<LinkStats>,
    /// Catches the tail of a frame longer than the pool buffer, so such a
    /// frame is counted as oversize rather than silently truncated.
    overflow: Box<[u8]>,
    /// Batched writes (`batch_writes`), and their results, reused.
    uring: Option<UringWriter>,
    results: Vec<Option<i32>>,
    /// Reads through a ring (`ring_reads`): asked for, and the reader once
    /// the first `recv` knows the pool's buffer size.
    want_ring_reads: bool,
    reader: Option<UringReader>,
    /// Opened with `IFF_VNET_HDR`: a virtio-net header before every frame.
    vnet: bool,
}

/// Opens `queues` queues of TAP `dev`, boxed for the stack. See
/// [`TapQueue::open_all`] for the typed version (with counters).
pub fn open_tap(dev: &str, queues: usize, opts: &TapOptions) -> Result<Vec<Box<dyn LinkQueue>>, IoError> {
    Ok(TapQueue::open_all(dev, queues, opts)?.into_iter().map(|q| Box::new(q) as Box<dyn LinkQueue>).collect())
}

fn open_one(dev: &str, flags: i16) -> Result<OwnedFd, IoError> {
    let fd = open_flags(dev, flags)?;
    if flags & IFF_VNET_HDR != 0 {
        // The kernel may hand over TCP super-frames and leave checksums to
        // us (`vnet_rx`): its TCP senders on the TAP's side write 64 KB
        // at a time, and the tun driver's per-frame work is paid once per
        // super-frame.
        let f = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        // SAFETY: ioctl with an integer argument on our tun fd.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, f) } < 0 {
            return Err(IoError::last(dev, "TUNSETOFFLOAD"));
        }
    }
    Ok(fd)
}

fn open_flags(dev: &str, flags: i16) -> Result<OwnedFd, IoError> {
    let mut ifr = IfReq::new(dev)?;
    // SAFETY: open(2) on a NUL-terminated path; the fd is owned at once.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(IoError::last(dev, "open /dev/net/tun"));
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    ifr.set_short(flags);
    ifreq_ioctl(&fd, TUNSETIFF, &mut ifr, dev, "TUNSETIFF")?;
    Ok(fd)
}

impl TapQueue {
    /// Opens up to `queues` queues of TAP `dev` (created if missing). If the
    /// device exists without `multi_queue` and more than one queue was asked
    /// for, opens one and says so in the log: the length of the result is
    /// the real queue count.
    pub fn open_all(dev: &str, queues: usize, opts: &TapOptions) -> Result<Vec<TapQueue>, IoError> {
        if queues == 0 || queues > MAX_TAP_QUEUES {
            return Err(IoError::invalid(dev, format!("TAP queue count {queues} not in 1..={MAX_TAP_QUEUES}")));
        }
        let existed = ifinfo::exists(dev);
        let base = IFF_TAP | IFF_NO_PI | if opts.offload { IFF_VNET_HDR } else { 0 };
        let mut mq = queues > 1;
        let first = match open_one(dev, if mq { base | IFF_MULTI_QUEUE } else { base }) {
            Ok(fd) => fd,
            // An existing device whose multi_queue flag differs from the
            // request answers EINVAL: try the other way round.
            Err(e) if existed && e.raw_os_error() == Some(libc::EINVAL) => {
                match open_one(dev, if mq { base } else { base | IFF_MULTI_QUEUE }) {
                    Ok(fd) => {
                        if mq {
                            tracing::info!(
                                "{dev}: TAP exists without multi_queue; using 1 queue instead of {queues} (recreate it with multi_queue for more)"
                            );
                        }
                        mq = !mq;
                        fd
                    }
                    Err(_) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let count = if mq { queues } else { 1 };
        if !existed && opts.persist {
            // SAFETY: ioctl with an integer argument on our tun fd.
            if unsafe { libc::ioctl(first.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
                return Err(IoError::last(dev, "TUNSETPERSIST"));
            }
        }
        let mut fds = vec![first];
        for _ in 1..count {
            fds.push(open_one(dev, base | IFF_MULTI_QUEUE)?);
        }
        if opts.bring_up && ifinfo::set_admin_up(dev, true)? {
            tracing::info!("{dev}: set TAP up");
        }
        let mut queues: Vec<TapQueue> = fds
            .into_iter()
            .enumerate()
            .map(|(queue, fd)| TapQueue {
                fd,
                dev: dev.to_string(),
                queue,
                stats: Arc::new(LinkStats::default()),
                overflow: vec![0u8; 65536.max(TAP_RX_MAX)].into_boxed_slice(),
                uring: None,
                results: Vec::new(),
                want_ring_reads: false,
                reader: None,
                vnet: opts.offload,
            })
            .collect();
        let mut rings = opts.uring;
        if opts.uring {
            for q in queues.iter_mut() {
                // Every queue tries (no short circuit): each has its rings.
                rings &= q.batch_writes() & q.ring_reads();
            }
        }
        tracing::info!(
            "{dev}: TAP attached, {count} queue(s){}, {}; {}",
            if existed { "" } else { ", created" },
            if rings { "reads and writes through io_uring" } else { "readv(2) and write(2)" },
            match opts.offload {
                false => "no offloads negotiated: the kernel hands over MTU-sized, checksummed frames",
                true => "virtio-net header (offload): TCP super-segments written whole and read whole",
            }
        );
        Ok(queues)
    }

    /// This queue's counters.
    pub fn stats(&self) -> Arc<LinkStats> {
        self.stats.clone()
    }

    pub fn device(&self) -> &str {
        &self.dev
    }

    /// A handle on the device that sets its carrier (`TUNSETCARRIER`)
    /// while the queues belong to the stack: a duplicate of this queue's
    /// descriptor, so the device lives as long as the handle too.
    pub fn carrier_handle(&self) -> Result<TapCarrier, IoError> {
        let fd = self.fd.try_clone().map_err(|e| IoError::Os { dev: self.dev.clone(), call: "dup", source: e })?;
        Ok(TapCarrier { fd, dev: self.dev.clone() })
    }

    pub fn queue_index(&self) -> usize {
        self.queue
    }

    /// Sends batches of two or more frames through io_uring, one
    /// `io_uring_enter(2)` a batch (`crate::uring`). Returns whether it
    /// could (a kernel without io_uring, or with it disabled, keeps
    /// `write(2)`, logged).
    pub fn batch_writes(&mut self) -> bool {
        match UringWriter::new() {
            Ok(w) => {
                self.uring = Some(w);
                self.results = Vec::with_capacity(256);
                true
            }
            Err(e) => {
                tracing::info!("{}: io_uring not available ({e}): one write(2) per frame", self.dev);
                false
            }
        }
    }

    /// Whether sends go through io_uring.
    pub fn writes_batched(&self) -> bool {
        self.uring.is_some()
    }

    /// Reads through a multishot read armed in a ring (`crate::uring_rx`)
    /// from the first `recv` on, and lets an idle worker sleep on the
    /// ring's descriptor. Returns whether the kernel can (io_uring with
    /// multishot reads, Linux 6.7); if not, or if the ring fails later,
    /// `readv(2)` stays (logged).
    pub fn ring_reads(&mut self) -> bool {
        // A probe now (the ring for reads is made at the first `recv`,
        // sized by the pool's buffers).
        match UringReader::new(self.fd.as_raw_fd(), 64) {
            Ok(_) => {
                self.want_ring_reads = true;
                true
            }
            Err(e) => {
                tracing::info!("{}: io_uring reads not available ({e}): readv(2) until EAGAIN", self.dev);
                false
            }
        }
    }

    /// Whether receives go through io_uring (after the first `recv`).
    pub fn reads_through_ring(&self) -> bool {
        self.reader.is_some()
    }

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
}

impl TapQueue {
    /// `send` on a queue with the virtio-net header: each frame gets its
    /// header in its headroom (`vnet_tx`; a frame without room for it is
    /// written with the header in an iovec of its own), then the batch goes
    /// out as without it. Large buffers go back to `large` (or are freed).
    fn send_vnet(
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

/// Puts the virtio-net header in front of a frame to write: a TCP/IPv4
/// super-segment (`mflags::TSO` with more payload than its MSS in
/// `pf_frag_max`) gets `GSO_TCPV4` + `NEEDS_CSUM` and its checksum field
/// the pseudo-header sum (`vnet::partial_tcp4`), any other frame the
/// plain header. Returns whether it is a super-frame, or None when the
/// frame has no headroom for the header (left as it was).
pub fn vnet_tx(p: &mut PacketBuf) -> Option<bool> {
    let mut h = VnetHdr::PLAIN;
    let gso = p.meta.pf_frag_max as usize;
    if p.meta.flags & mflags::TSO != 0 && gso != 0 {
        if let Some((iph, tcph)) = crate::vnet::partial_tcp4(p.data_mut()) {
            if p.len() - (ETH_HLEN + iph + tcph) > gso {
                h = VnetHdr::tcp4_train(ETH_HLEN + iph, tcph, gso as u16);
            } else {
                // It fits one segment after all (a copy the stack made):
                // the device completes its checksum.
                h = VnetHdr {
                    flags: crate::vnet::F_NEEDS_CSUM,
                    csum_start: (ETH_HLEN + iph) as u16,
                    csum_offset: 16,
                    ..h
                };
            }
        }
    }
    p.push_front(VNET_HDR_LEN).ok()?;
    let b: &mut [u8; VNET_HDR_LEN] = (&mut p.data_mut()[..VNET_HDR_LEN]).try_into().expect("pushed");
    h.encode(b);
    Some(h.gso_type != crate::vnet::GSO_NONE)
}

const ETH_HLEN: usize = 14;

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

impl TapQueue {
    /// `recv`, super-frames into `large` buffers when there is a pool of
    /// them (`vnet_rx`): through the ring, or `readv(2)` until EAGAIN.
    fn recv_from(
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

/// Sets a TAP's carrier from outside its queues (see
/// [`TapQueue::carrier_handle`]).
pub struct TapCarrier {
    fd: OwnedFd,
    dev: String,
}

impl TapCarrier {
    /// Carrier on or off (the kernel's operstate follows: a TAP without
    /// carrier is `NO-CARRIER`, its routes `linkdown`, its addresses kept).
    pub fn set(&self, on: bool) -> Result<(), IoError> {
        let v: libc::c_int = on as libc::c_int;
        // SAFETY: ioctl on our tun fd with a pointer to a live int.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TUNSETCARRIER, &v as *const libc::c_int) } < 0 {
            return Err(IoError::last(&self.dev, "TUNSETCARRIER"));
        }
        Ok(())
    }

    pub fn device(&self) -> &str {
        &self.dev
    }
}

impl LinkQueue for TapQueue {
    fn rx_losses(&self) -> softnet_core::link::RxLosses {
        self.stats.rx_losses()
    }

    fn recv(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.recv_from(pool, None, out, max)
    }

    fn recv_mixed(
        &mut self,
        pool: &mut PacketPool,
        large: &mut PacketPool,
        out: &mut Vec<PacketBuf>,
        max: usize,
    ) -> usize {
        self.recv_from(pool, Some(large), out, max)
    }

    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        if self.vnet {
            return self.send_vnet(pool, None, frames);
        }
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

    fn send_mixed(&mut self, pool: &mut PacketPool, large: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        if self.vnet {
            return self.send_vnet(pool, Some(large), frames);
        }
        self.send(pool, frames)
    }

    fn tso_max(&self) -> u32 {
        if self.vnet {
            TAP_TSO_MAX
        } else {
            0
        }
    }

    fn poll_fd(&self) -> Option<i32> {
        // With reads in a ring, the TAP's data is the ring's to read: the
        // ring's descriptor is readable once a read completed.
        Some(self.reader.as_ref().map_or(self.fd.as_raw_fd(), |r| r.ring_fd()))
    }
}

#[cfg(test)]
mod vnet_tests {
    use super::*;
    use crate::vnet::{F_NEEDS_CSUM, GSO_TCPV4};
    use softnet_core::packet::DEFAULT_BUF_SIZE;

    /// An Ethernet + IPv4 + TCP frame, `len` payload bytes, its TCP
    /// checksum correct.
    fn frame(len: usize) -> Vec<u8> {
        let (s, d) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut f = vec![0u8; 14 + 40 + len];
        f[12] = 0x08;
        softnet_wire::ipv4::Ipv4Repr {
            src: s,
            dst: d,
            protocol: softnet_wire::ipv4::IpProtocol::TCP,
            ttl: 64,
            tos: 0,
            ident: 1,
            dont_frag: true,
            payload_len: 20 + len,
        }
        .emit(&mut f[14..34]);
        f[34..36].copy_from_slice(&80u16.to_be_bytes());
        f[46] = 0x50;
        f[47] = 0x18;
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = i as u8;
        }
        softnet_wire::tcp::TcpPacket::new_unchecked(&mut f[34..]).fill_checksum(s, d);
        f
    }

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
}
