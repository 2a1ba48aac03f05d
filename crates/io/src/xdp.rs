//! AF_XDP links on an existing Ethernet device, in copy mode.
//!
//! No libbpf and no BPF object file: everything is raw `bpf(2)` and socket
//! calls.
//!
//! * The XDP program is five hand-assembled instructions:
//!   `bpf_redirect_map(&xskmap, ctx->rx_queue_index, XDP_PASS)`, i.e. every
//!   frame of an RX queue that has a socket in the XSKMAP goes to that
//!   socket; frames of other queues (and everything when the lookup fails)
//!   go on to the kernel stack.
//! * It is attached with `BPF_LINK_CREATE` (native mode, falling back to
//!   generic/SKB mode with a log line when the driver refuses). The link fd
//!   is owned by the queues: when the last queue is dropped (or the process
//!   dies) the program is detached.
//! * Per queue: one AF_XDP socket bound to `(ifindex, queue)` with
//!   `XDP_COPY | XDP_USE_NEED_WAKEUP`, its own UMEM of `frames` × 2048-byte
//!   chunks. Half the chunks circulate through the fill/RX rings, the other
//!   half through a TX free list and the TX/completion rings.
//!
//! Unlike AF_PACKET, which gets copies, XDP takes the frames: the kernel's
//! own stack no longer sees what arrives on a queue that has a socket (all
//! of them, normally), which is what a router wants. Reopening right after
//! a close (SIGHUP reload) waits up to a second for the kernel to release
//! the queue and the old program (EBUSY), then reports it.
//!
//! Offloads are turned off at attach as for AF_PACKET (`ethtool`). XDP hands
//! over no checksum state: a frame a local sender left CHECKSUM_PARTIAL
//! (e.g. a veth peer with TX checksum offload on) arrives with its checksum
//! unfinished; turn TX checksum offload off on such peers. Frames longer
//! than a pool buffer are counted in `rx_oversize` and dropped; frames that
//! do not fit the device (or are shorter than an Ethernet header) in
//! `tx_oversize`; a full TX side in `tx_busy`; the kernel's own drops
//! (`XDP_STATISTICS`: RX ring full, no fill buffer, frame too long for a
//! chunk) in `rx_kernel_drops`.

use crate::stats::LinkStats;
use crate::sys::{bump, errno, setsockopt};
use crate::{ethtool, ifinfo, IoError};
use softnet_core::link::LinkQueue;
use softnet_core::packet::{PacketBuf, PacketPool};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

// <linux/bpf.h>
const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_PROG_LOAD: i32 = 5;
const BPF_LINK_CREATE: i32 = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;
// <linux/if_link.h>
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

// <linux/if_xdp.h>
const AF_XDP: i32 = 44;
const SOL_XDP: i32 = 283;
const XDP_MMAP_OFFSETS: i32 = 1;
const XDP_RX_RING: i32 = 2;
const XDP_TX_RING: i32 = 3;
const XDP_UMEM_REG: i32 = 4;
const XDP_UMEM_FILL_RING: i32 = 5;
const XDP_UMEM_COMPLETION_RING: i32 = 6;
const XDP_STATISTICS: i32 = 7;
const XDP_COPY: u16 = 1 << 1;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_RING_NEED_WAKEUP: u32 = 1 << 0;
const XDP_PGOFF_RX_RING: i64 = 0;
const XDP_PGOFF_TX_RING: i64 = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: i64 = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: i64 = 0x1_8000_0000;

// <linux/ethtool.h>
const SIOCETHTOOL: libc::Ioctl = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// UMEM chunk size.
pub const FRAME_SIZE: usize = 2048;
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;

/// Ring sizes and attach choices for [`open_xdp`].
#[derive(Debug, Clone)]
pub struct XdpOptions {
    /// UMEM chunks per queue (power of two, at least 2): half for RX (the
    /// fill ring), half for TX. Memory per queue: `frames` × 2 KiB.
    pub frames: usize,
    /// Turn off GRO/LRO/TSO/GSO/TX checksum offload on the device (logged).
    pub disable_offloads: bool,
    /// Attach in generic (SKB) mode without trying native mode first.
    pub force_skb_mode: bool,
}

impl Default for XdpOptions {
    fn default() -> Self {
        XdpOptions { frames: 4096, disable_offloads: true, force_skb_mode: false }
    }
}

fn fd_from(r: i64) -> OwnedFd {
    // SAFETY: the caller checked `r` is a fresh descriptor we own.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

/// `union bpf_attr`, zero-filled; 128 bytes covers every command used here.
#[repr(C, align(8))]
struct BpfAttr([u8; 128]);

impl BpfAttr {
    fn new() -> Self {
        BpfAttr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

fn bpf(cmd: i32, attr: &mut BpfAttr) -> i64 {
    // SAFETY: attr is a zero-filled bpf_attr of the size passed; the
    // pointers in it point to live buffers of the caller.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut BpfAttr, std::mem::size_of::<BpfAttr>() as u32) }
}

/// One `struct bpf_insn`.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (dst & 0xf) | (src << 4);
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// The redirect program for XSKMAP `map_fd`.
fn program(map_fd: i32) -> Vec<[u8; 8]> {
    vec![
        // r2 = *(u32 *)(r1 + 16): xdp_md.rx_queue_index
        insn(0x61, 2, 1, 16, 0),
        // r1 = map (ld_imm64, two slots)
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        // r3 = XDP_PASS (what to do when the queue has no socket)
        insn(0xb7, 3, 0, 0, XDP_PASS),
        // call bpf_redirect_map
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // exit
        insn(0x95, 0, 0, 0, 0),
    ]
}

fn create_xskmap(dev: &str, entries: u32) -> Result<OwnedFd, IoError> {
    let mut a = BpfAttr::new();
    a.u32(0, BPF_MAP_TYPE_XSKMAP).u32(4, 4).u32(8, 4).u32(12, entries);
    a.0[28..35].copy_from_slice(b"snxskmp"); // map_name (offset 28)
    let r = bpf(BPF_MAP_CREATE, &mut a);
    if r < 0 {
        return Err(IoError::last(dev, "bpf(BPF_MAP_CREATE XSKMAP)"));
    }
    Ok(fd_from(r))
}

fn map_update(dev: &str, map: &OwnedFd, key: u32, value: u32) -> Result<(), IoError> {
    let mut a = BpfAttr::new();
    a.u32(0, map.as_raw_fd() as u32).u64(8, &key as *const u32 as u64).u64(16, &value as *const u32 as u64).u64(24, 0); // BPF_ANY
    if bpf(BPF_MAP_UPDATE_ELEM, &mut a) < 0 {
        return Err(IoError::last(dev, "bpf(BPF_MAP_UPDATE_ELEM XSKMAP)"));
    }
    Ok(())
}

fn load_program(dev: &str, map: &OwnedFd) -> Result<OwnedFd, IoError> {
    load_insns(dev, &program(map.as_raw_fd()))
}

fn load_insns(dev: &str, insns: &[[u8; 8]]) -> Result<OwnedFd, IoError> {
    let license = b"GPL\0";
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut a = BpfAttr::new();
        a.u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64);
        if let Some(buf) = log {
            a.u32(24, 1).u32(28, buf.len() as u32).u64(32, buf.as_mut_ptr() as u64);
        }
        a.0[48..57].copy_from_slice(b"softnet_x"); // prog_name
        a.u32(68, BPF_XDP); // expected_attach_type
        bpf(BPF_PROG_LOAD, &mut a)
    };
    let r = attempt(None);
    if r >= 0 {
        return Ok(fd_from(r));
    }
    let first = std::io::Error::last_os_error();
    // Again with the verifier's log, to say why.
    let mut log = vec![0u8; 64 << 10];
    let r = attempt(Some(&mut log));
    if r >= 0 {
        return Ok(fd_from(r));
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    Err(IoError::invalid(
        dev,
        format!(
            "bpf(BPF_PROG_LOAD XDP): {first}; verifier log: {}",
            if text.trim().is_empty() { "(empty)" } else { text.trim() }
        ),
    ))
}

fn link_create(prog: &OwnedFd, ifindex: u32, flags: u32) -> i64 {
    let mut a = BpfAttr::new();
    a.u32(0, prog.as_raw_fd() as u32).u32(4, ifindex).u32(8, BPF_XDP).u32(12, flags);
    bpf(BPF_LINK_CREATE, &mut a)
}

/// The attached program: closing `link` detaches it.
struct Attached {
    link: OwnedFd,
    _prog: OwnedFd,
    _map: OwnedFd,
    mode: &'static str,
}

/// `link_create`, retried for up to a second while the device still has
/// the program of a link being closed (EBUSY right after a reopen).
fn link_create_retry(prog: &OwnedFd, ifindex: u32, flags: u32) -> Result<OwnedFd, std::io::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let r = link_create(prog, ifindex, flags);
        if r >= 0 {
            return Ok(fd_from(r));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) || std::time::Instant::now() >= deadline {
            return Err(err);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn attach(dev: &str, prog: OwnedFd, map: OwnedFd, ifindex: u32, force_skb: bool) -> Result<Attached, IoError> {
    let os = |source: std::io::Error| IoError::Os { dev: dev.to_string(), call: "bpf(BPF_LINK_CREATE XDP)", source };
    let mut mode = "generic";
    let link = if force_skb {
        link_create_retry(&prog, ifindex, XDP_FLAGS_SKB_MODE).map_err(os)?
    } else {
        match link_create_retry(&prog, ifindex, XDP_FLAGS_DRV_MODE) {
            Ok(l) => {
                mode = "native";
                l
            }
            // Another program holds the device: no point in another mode.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EEXIST)) => return Err(os(e)),
            Err(e) => {
                tracing::info!("{dev}: native XDP refused ({e}); attaching in generic (SKB) mode");
                link_create_retry(&prog, ifindex, XDP_FLAGS_SKB_MODE).map_err(os)?
            }
        }
    };
    Ok(Attached { link, _prog: prog, _map: map, mode })
}

/// How many AF_XDP queues `dev` can take: a socket binds to a queue id that
/// must exist both ways, so the smaller of its RX and TX queue counts
/// (`ETHTOOL_GCHANNELS`: rx/tx or combined channels), or 1 when the driver
/// does not say.
pub fn queue_count(dev: &str) -> Result<usize, IoError> {
    let s = crate::sys::ctl_socket(dev)?;
    // struct ethtool_channels: cmd, max_rx, max_tx, max_other, max_combined,
    // rx_count, tx_count, other_count, combined_count.
    let mut ch = [0u32; 9];
    ch[0] = ETHTOOL_GCHANNELS;
    let mut ifr = crate::sys::IfReq::new(dev)?;
    ifr.set_ptr(ch.as_mut_ptr());
    match crate::sys::ifreq_ioctl(&s, SIOCETHTOOL, &mut ifr, dev, "SIOCETHTOOL ETHTOOL_GCHANNELS") {
        Ok(()) => {
            let rx = ch[5].max(ch[8]) as usize;
            let tx = ch[6].max(ch[8]) as usize;
            let n = if tx == 0 { rx } else { rx.min(tx) };
            Ok(n.max(1))
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)) => Ok(1),
        Err(e) => Err(e),
    }
}

/// `struct xdp_ring_offset`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

/// `struct xdp_umem_reg`.
#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

/// `struct sockaddr_xdp`.
#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// `struct xdp_statistics` (the fields up to `tx_ring_empty_descs`). A frame
/// dropped for want of a fill buffer counts in both `rx_dropped` and
/// `rx_fill_ring_empty_descs`: only `rx_dropped + rx_ring_full` are drops.
#[repr(C)]
#[derive(Default)]
struct XdpStatistics {
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty_descs: u64,
    tx_ring_empty_descs: u64,
}

/// An anonymous or socket mapping, unmapped on drop.
struct Mapping {
    base: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(fd: Option<&OwnedFd>, len: usize, pgoff: i64, dev: &str, call: &'static str) -> Result<Mapping, IoError> {
        let (flags, raw) = match fd {
            Some(f) => (libc::MAP_SHARED | libc::MAP_POPULATE, f.as_raw_fd()),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE, -1),
        };
        // SAFETY: a fresh mapping; checked for MAP_FAILED below.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, raw, pgoff as libc::off_t)
        };
        if p == libc::MAP_FAILED {
            return Err(IoError::last(dev, call));
        }
        Ok(Mapping { base: p as *mut u8, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// One of the four rings of an AF_XDP socket: producer and consumer indices
/// (free-running u32) and `size` entries of `T`.
struct XRing<T> {
    _map: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut T,
    mask: u32,
}

impl<T: Copy> XRing<T> {
    fn map(
        fd: &OwnedFd,
        off: &RingOffset,
        size: u32,
        pgoff: i64,
        dev: &str,
        call: &'static str,
    ) -> Result<Self, IoError> {
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mapping::new(Some(fd), len, pgoff, dev, call)?;
        // SAFETY: the kernel's offsets lie inside the mapping it sized.
        unsafe {
            Ok(XRing {
                producer: map.base.add(off.producer as usize) as *const AtomicU32,
                consumer: map.base.add(off.consumer as usize) as *const AtomicU32,
                flags: map.base.add(off.flags as usize) as *const AtomicU32,
                desc: map.base.add(off.desc as usize) as *mut T,
                mask: size - 1,
                _map: map,
            })
        }
    }
    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping, 4-aligned.
        unsafe { &*self.producer }
    }
    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as producer.
        unsafe { &*self.consumer }
    }
    #[inline]
    fn needs_wakeup(&self) -> bool {
        // SAFETY: as producer.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }
    #[inline]
    fn get(&self, idx: u32) -> T {
        // SAFETY: masked index within the ring; the entry is ours by the
        // producer/consumer protocol.
        unsafe { std::ptr::read_volatile(self.desc.add((idx & self.mask) as usize)) }
    }
    #[inline]
    fn set(&self, idx: u32, v: T) {
        // SAFETY: as get.
        unsafe { std::ptr::write_volatile(self.desc.add((idx & self.mask) as usize), v) }
    }
}

/// `struct xdp_desc`.
#[repr(C)]
#[derive(Clone, Copy)]
struct XdpDesc {
    addr: u64,
    len: u32,
    options: u32,
}

/// One queue of an AF_XDP link.
pub struct XdpQueue {
    dev: String,
    queue: usize,
    // Rings before the socket, the socket before the UMEM, the UMEM before
    // the program (shared by all queues; detached when the last one goes).
    rx: XRing<XdpDesc>,
    tx: XRing<XdpDesc>,
    fill: XRing<u64>,
    comp: XRing<u64>,
    fd: OwnedFd,
    umem: Mapping,
    /// TX chunks not in flight.
    tx_free: Vec<u64>,
    /// Descriptors posted to the TX ring (cached producer).
    tx_prod: u32,
    /// Frames in the TX ring the kernel has not taken yet: kicked again on
    /// the next send or recv.
    tx_pending: bool,
    /// Longest frame the device takes (MTU + Ethernet header + a tag).
    tx_max_frame: usize,
    stats: Arc<LinkStats>,
    attached: Arc<Attached>,
}

// SAFETY: the rings and UMEM are owned by this queue alone (shared only with
// the kernel) and a queue is used by one worker at a time.
unsafe impl Send for XdpQueue {}

/// Opens up to `queues` AF_XDP queues on `dev`, boxed for the stack. See
/// [`XdpQueue::open_all`] for the typed version (with counters).
pub fn open_xdp(dev: &str, queues: usize, opts: &XdpOptions) -> Result<Vec<Box<dyn LinkQueue>>, IoError> {
    Ok(XdpQueue::open_all(dev, queues, opts)?.into_iter().map(|q| Box::new(q) as Box<dyn LinkQueue>).collect())
}

impl XdpQueue {
    /// Opens `queues` queues on `dev` (which must exist and be Ethernet), or
    /// as many as the device has RX queues if fewer (logged), attaches the
    /// redirect program and returns them.
    pub fn open_all(dev: &str, queues: usize, opts: &XdpOptions) -> Result<Vec<XdpQueue>, IoError> {
        if queues == 0 || queues > 1024 {
            return Err(IoError::invalid(dev, format!("queue count {queues} not in 1..=1024")));
        }
        if opts.frames < 2 || !opts.frames.is_power_of_two() || opts.frames > 1 << 20 {
            return Err(IoError::invalid(
                dev,
                format!("XDP frames per queue {} must be a power of two in 2..=1048576", opts.frames),
            ));
        }
        let ifindex = ifinfo::ifindex(dev)?;
        ifinfo::mac_address(dev)?; // Ethernet only
        let mtu = ifinfo::mtu(dev)? as usize;
        let have = queue_count(dev)?;
        let n = queues.min(have);
        if n < queues {
            tracing::info!("{dev}: device has {have} queue(s); using {n} AF_XDP queue(s) instead of {queues}");
        }
        if opts.disable_offloads {
            ethtool::disable_offloads(dev)?;
        }
        let map = create_xskmap(dev, n as u32)?;
        let prog = load_program(dev, &map)?;
        let mut socks = Vec::with_capacity(n);
        for queue in 0..n {
            let (fd, rest) = open_socket(dev, ifindex, queue as u32, opts.frames)?;
            map_update(dev, &map, queue as u32, fd.as_raw_fd() as u32)?;
            socks.push((fd, rest));
        }
        let attached = Arc::new(attach(dev, prog, map, ifindex, opts.force_skb_mode)?);
        tracing::info!(
            "{dev}: AF_XDP attached ({} XDP, copy mode), {n} queue(s), {} x {FRAME_SIZE} B UMEM per queue",
            attached.mode,
            opts.frames
        );
        let half = opts.frames / 2;
        Ok(socks
            .into_iter()
            .enumerate()
            .map(|(queue, (fd, s))| XdpQueue {
                dev: dev.to_string(),
                queue,
                rx: s.rx,
                tx: s.tx,
                fill: s.fill,
                comp: s.comp,
                fd,
                umem: s.umem,
                tx_free: (half..opts.frames).map(|i| (i * FRAME_SIZE) as u64).collect(),
                tx_prod: 0,
                tx_pending: false,
                tx_max_frame: mtu + ETH_HLEN + VLAN_HLEN,
                stats: Arc::new(LinkStats::default()),
                attached: attached.clone(),
            })
            .collect())
    }

    /// This queue's counters, readable from any thread.
    pub fn stats(&self) -> Arc<LinkStats> {
        self.stats.clone()
    }

    pub fn device(&self) -> &str {
        &self.dev
    }

    pub fn queue(&self) -> usize {
        self.queue
    }

    /// Whether the program was attached in native (driver) mode.
    pub fn native(&self) -> bool {
        self.attached.mode == "native"
    }

    /// The BPF link's fd (for tests and diagnostics).
    pub fn link_fd(&self) -> i32 {
        self.attached.link.as_raw_fd()
    }

    fn kernel_stats(&self) -> Option<XdpStatistics> {
        let mut s = XdpStatistics::default();
        let mut len = std::mem::size_of::<XdpStatistics>() as libc::socklen_t;
        // SAFETY: s is a writable buffer of `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_XDP,
                XDP_STATISTICS,
                &mut s as *mut XdpStatistics as *mut libc::c_void,
                &mut len,
            )
        };
        (r == 0).then_some(s)
    }

    /// Whether `d` fits the device (MTU + header, + a tag if it has one).
    fn fits(&self, d: &[u8]) -> bool {
        let tagged = d.len() >= ETH_HLEN && matches!(u16::from_be_bytes([d[12], d[13]]), 0x8100 | 0x88a8);
        let limit = if tagged { self.tx_max_frame } else { self.tx_max_frame - VLAN_HLEN };
        d.len() <= limit && d.len() >= ETH_HLEN && d.len() <= FRAME_SIZE
    }

    /// Moves completed TX chunks back to the free list.
    fn reclaim(&mut self) {
        let prod = self.comp.producer().load(Ordering::Acquire);
        let mut cons = self.comp.consumer().load(Ordering::Relaxed);
        if prod == cons {
            return;
        }
        while cons != prod {
            self.tx_free.push(self.comp.get(cons));
            cons = cons.wrapping_add(1);
        }
        self.comp.consumer().store(cons, Ordering::Release);
    }

    /// Makes the kernel transmit what is in the TX ring (copy mode sends
    /// only from `sendto`, at most a few dozen frames per call).
    fn kick_tx(&mut self) {
        for _ in 0..64 {
            let before = self.tx.consumer().load(Ordering::Acquire);
            if before == self.tx_prod {
                self.tx_pending = false;
                return;
            }
            // SAFETY: a zero-length sendto on our own socket.
            let r = unsafe {
                libc::sendto(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
            };
            if r < 0 {
                let e = errno();
                if !matches!(e, libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR) {
                    bump(&self.stats.tx_errors, 1);
                    break;
                }
                if self.tx.consumer().load(Ordering::Acquire) == before {
                    break; // no progress: try again later
                }
            }
        }
        self.tx_pending = self.tx.consumer().load(Ordering::Acquire) != self.tx_prod;
    }

    fn kick_rx(&self) {
        // SAFETY: a zero-length recvfrom on our own socket.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }
}

/// What `open_socket` builds besides the socket.
struct SockParts {
    rx: XRing<XdpDesc>,
    tx: XRing<XdpDesc>,
    fill: XRing<u64>,
    comp: XRing<u64>,
    umem: Mapping,
}

fn open_socket(dev: &str, ifindex: u32, queue: u32, frames: usize) -> Result<(OwnedFd, SockParts), IoError> {
    // SAFETY: plain socket(2); owned at once.
    let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(IoError::last(dev, "socket(AF_XDP)"));
    }
    let fd = fd_from(raw as i64);
    let umem = Mapping::new(None, frames * FRAME_SIZE, 0, dev, "mmap UMEM")?;
    let reg = UmemReg {
        addr: umem.base as u64,
        len: (frames * FRAME_SIZE) as u64,
        chunk_size: FRAME_SIZE as u32,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    setsockopt(&fd, SOL_XDP, XDP_UMEM_REG, &reg, dev, "XDP_UMEM_REG")?;
    let half = (frames / 2) as u32;
    setsockopt(&fd, SOL_XDP, XDP_UMEM_FILL_RING, &half, dev, "XDP_UMEM_FILL_RING")?;
    setsockopt(&fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &half, dev, "XDP_UMEM_COMPLETION_RING")?;
    setsockopt(&fd, SOL_XDP, XDP_RX_RING, &half, dev, "XDP_RX_RING")?;
    setsockopt(&fd, SOL_XDP, XDP_TX_RING, &half, dev, "XDP_TX_RING")?;
    let mut off = MmapOffsets::default();
    let mut len = std::mem::size_of::<MmapOffsets>() as libc::socklen_t;
    // SAFETY: off is a writable buffer of `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            XDP_MMAP_OFFSETS,
            &mut off as *mut MmapOffsets as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(IoError::last(dev, "XDP_MMAP_OFFSETS"));
    }
    let rx = XRing::map(&fd, &off.rx, half, XDP_PGOFF_RX_RING, dev, "mmap XDP RX ring")?;
    let tx = XRing::map(&fd, &off.tx, half, XDP_PGOFF_TX_RING, dev, "mmap XDP TX ring")?;
    let fill = XRing::map(&fd, &off.fr, half, XDP_UMEM_PGOFF_FILL_RING, dev, "mmap XDP fill ring")?;
    let comp = XRing::map(&fd, &off.cr, half, XDP_UMEM_PGOFF_COMPLETION_RING, dev, "mmap XDP completion ring")?;
    // Post the RX half of the UMEM to the fill ring.
    for i in 0..half {
        fill.set(i, i as u64 * FRAME_SIZE as u64);
    }
    fill.producer().store(half, Ordering::Release);
    let sa = SockaddrXdp {
        family: AF_XDP as u16,
        flags: XDP_COPY | XDP_USE_NEED_WAKEUP,
        ifindex,
        queue_id: queue,
        shared_umem_fd: 0,
    };
    // A queue a closed socket was bound to is released by deferred kernel
    // work: EBUSY right after a close (e.g. a reopen) clears within
    // milliseconds, so retry for up to a second before reporting it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        // SAFETY: sa is a valid sockaddr_xdp of the size passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const SockaddrXdp as *const libc::sockaddr,
                std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) || std::time::Instant::now() >= deadline {
            let call = if err.raw_os_error() == Some(libc::EBUSY) {
                "bind(AF_XDP) (queue taken by another AF_XDP socket?)"
            } else {
                "bind(AF_XDP)"
            };
            return Err(IoError::Os { dev: dev.to_string(), call, source: err });
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok((fd, SockParts { rx, tx, fill, comp, umem }))
}

impl LinkQueue for XdpQueue {
    fn rx_losses(&self) -> softnet_core::link::RxLosses {
        if let Some(k) = self.kernel_stats() {
            // An absolute value from the kernel: a store, not an add.
            self.stats.rx_kernel_drops.store(k.rx_dropped + k.rx_ring_full, Ordering::Relaxed);
        }
        self.stats.rx_losses()
    }

    fn recv(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        if self.tx_pending {
            self.kick_tx();
        }
        let prod = self.rx.producer().load(Ordering::Acquire);
        let mut cons = self.rx.consumer().load(Ordering::Relaxed);
        let mut fill_prod = self.fill.producer().load(Ordering::Relaxed);
        let mut n = 0;
        let mut bytes = 0u64;
        while cons != prod && n < max {
            let Some(mut p) = pool.alloc() else {
                // Leave the frame in the ring for the next batch.
                bump(&self.stats.rx_nobuf, 1);
                break;
            };
            let d = self.rx.get(cons);
            let len = d.len as usize;
            let chunk = d.addr & !(FRAME_SIZE as u64 - 1);
            if len > p.max_len() || (d.addr - chunk) as usize + len > FRAME_SIZE {
                bump(&self.stats.rx_oversize, 1);
                pool.free(p);
            } else if len < ETH_HLEN {
                bump(&self.stats.rx_truncated, 1);
                pool.free(p);
            } else {
                // SAFETY: addr..addr+len lies in the UMEM (checked against
                // the chunk above; chunks lie inside the mapping), and this
                // chunk is ours until it goes back to the fill ring.
                debug_assert!(d.addr as usize + len <= self.umem.len);
                let src = unsafe { std::slice::from_raw_parts(self.umem.base.add(d.addr as usize), len) };
                p.set_len(len).expect("checked against max_len");
                p.data_mut().copy_from_slice(src);
                bytes += len as u64;
                out.push(p);
                n += 1;
            }
            // The chunk goes straight back to the kernel.
            self.fill.set(fill_prod, chunk);
            fill_prod = fill_prod.wrapping_add(1);
            cons = cons.wrapping_add(1);
        }
        self.rx.consumer().store(cons, Ordering::Release);
        self.fill.producer().store(fill_prod, Ordering::Release);
        if self.fill.needs_wakeup() {
            self.kick_rx();
        }
        bump(&self.stats.rx_frames, n as u64);
        bump(&self.stats.rx_bytes, bytes);
        n
    }

    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        self.reclaim();
        let mut queued = 0usize;
        let mut bytes = 0u64;
        let mut kicked_for_room = false;
        for p in frames.drain(..) {
            let d = p.data();
            if !self.fits(d) {
                bump(&self.stats.tx_oversize, 1);
                pool.free(p);
                continue;
            }
            if self.tx_free.is_empty() && !kicked_for_room {
                // Out of chunks: push out what is queued, collect what the
                // kernel finished with, then look again once.
                self.tx.producer().store(self.tx_prod, Ordering::Release);
                self.kick_tx();
                self.reclaim();
                kicked_for_room = true;
            }
            let Some(addr) = self.tx_free.pop() else {
                bump(&self.stats.tx_busy, 1);
                pool.free(p);
                continue;
            };
            // SAFETY: a free TX chunk is ours alone; len <= FRAME_SIZE.
            let dst = unsafe { std::slice::from_raw_parts_mut(self.umem.base.add(addr as usize), d.len()) };
            dst.copy_from_slice(d);
            // The TX ring has as many slots as there are TX chunks, so a
            // free chunk means a free slot.
            self.tx.set(self.tx_prod, XdpDesc { addr, len: d.len() as u32, options: 0 });
            self.tx_prod = self.tx_prod.wrapping_add(1);
            bytes += d.len() as u64;
            queued += 1;
            pool.free(p);
        }
        if queued > 0 || self.tx_pending {
            self.tx.producer().store(self.tx_prod, Ordering::Release);
            self.kick_tx();
        }
        bump(&self.stats.tx_frames, queued as u64);
        bump(&self.stats.tx_bytes, bytes);
        queued
    }

    fn poll_fd(&self) -> Option<i32> {
        Some(self.fd.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encoding() {
        let p = program(7);
        assert_eq!(p.len(), 6);
        assert_eq!(p[0], [0x61, 0x12, 16, 0, 0, 0, 0, 0]);
        assert_eq!(p[1], [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(p[2], [0; 8]);
        assert_eq!(p[3], [0xb7, 0x03, 0, 0, 2, 0, 0, 0]);
        assert_eq!(p[4], [0x85, 0, 0, 0, 51, 0, 0, 0]);
        assert_eq!(p[5], [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    #[ignore = "needs root"]
    fn a_rejected_program_reports_the_verifier_log() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root (bpf): run it as root");
        // r0 = 2 without an exit: the verifier refuses to fall off the end.
        let e = load_insns("test0", &[insn(0xb7, 0, 0, 0, 2)]).unwrap_err().to_string();
        assert!(e.starts_with("test0: bpf(BPF_PROG_LOAD XDP): "), "{e}");
        assert!(e.contains("verifier log: ") && !e.contains("(empty)"), "{e}");
        eprintln!("{e}");
    }

    #[test]
    fn struct_sizes_match_the_uapi() {
        assert_eq!(std::mem::size_of::<MmapOffsets>(), 128);
        assert_eq!(std::mem::size_of::<UmemReg>(), 32);
        assert_eq!(std::mem::size_of::<SockaddrXdp>(), 16);
        assert_eq!(std::mem::size_of::<XdpDesc>(), 16);
    }
}
