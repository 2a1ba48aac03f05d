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
//!
//! Here: opening (`TUNSETIFF`, `TUNSETOFFLOAD`, persist, carrier) and the
//! queue as a `LinkQueue`; `rx` the reads, `tx` the writes.

mod rx;
mod tx;

pub use rx::vnet_rx;
pub use tx::vnet_tx;

use crate::stats::LinkStats;
use crate::sys::{ifreq_ioctl, IfReq};
use crate::uring::UringWriter;
use crate::uring_rx::UringReader;
use crate::vnet::VNET_HDR_LEN;
use crate::{ifinfo, IoError};
use softnet_core::link::LinkQueue;
use softnet_core::packet::{PacketBuf, PacketPool};
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
const ETH_HLEN: usize = 14;

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
        match self.vnet {
            true => self.send_vnet(pool, None, frames),
            false => self.send_plain(pool, frames),
        }
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
pub(crate) mod test_frames {
    /// An Ethernet + IPv4 + TCP frame, `len` payload bytes, its TCP
    /// checksum correct.
    pub fn frame(len: usize) -> Vec<u8> {
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
}
