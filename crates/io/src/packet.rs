//! AF_PACKET links on an existing Ethernet device.
//!
//! Each queue is two sockets bound to the device:
//!
//! * RX: `ETH_P_ALL`, `PACKET_IGNORE_OUTGOING` (no copies of frames leaving
//!   the device, ours or the kernel's) and, with more than one queue, all RX
//!   sockets in one `PACKET_FANOUT_HASH` group, so each frame reaches
//!   exactly one queue and a flow always the same one. Promiscuous mode by
//!   `PACKET_ADD_MEMBERSHIP` (dropped with the socket). The ring is one of
//!   two kinds ([`RxRing`]):
//!   - `Frames`: TPACKET_V2, fixed slots of one frame each
//!     (sized for the MTU), each handed to us by its own status word the
//!     moment the kernel has written it, with a wakeup of a poller per
//!     frame (`tpacket_rcv`).
//!   - `Blocks`: TPACKET_V3, blocks of variable-size frames with the
//!     kernel's flow hash (`TP_FT_REQ_FILL_RXHASH`); a block is handed over
//!     only when it is full or `retire_timeout_ms` (at least 1 ms) after its
//!     first frame (`prb_retire_rx_blk_timer_expired`). That timer is the
//!     latency of every frame under light load, and a TCP endpoint's
//!     ACK clock runs on it: bulk TCP sending through this link measured
//!     0.4 Gbit/s with `Blocks` (BENCHMARKS §4 session 11). It stays the
//!     default: a V2 slot holds one frame whatever its size, so a burst of
//!     small frames (a SYN flood, 1,000 TTL-1 packets at MTU 9000)
//!     overflowed 2,048 slots where V3's blocks hold over ten times as
//!     many (e2e test_sock_robust, test_malformed).
//! * TX: protocol 0 (it receives nothing), a TPACKET_V2 `PACKET_TX_RING`,
//!   `PACKET_QDISC_BYPASS`. Each slot carries a `virtio_net_hdr` with no
//!   offload and `hdr_len` = the whole frame, which makes the kernel copy the
//!   frame into one linear skb (without it the skb would point into the ring's
//!   pages as fragments: slower for the receiver, and the slot could be
//!   rewritten while a peer still holds the skb). A batch is one `sendto`.
//!
//! Offloads. This link does not segment in software. At attach it turns off
//! GRO/LRO, TSO, GSO and TX checksum offload on the device (`SIOCETHTOOL`,
//! logged) so the kernel hands over MTU-sized frames. What it cannot turn
//! off from here (e.g. a veth peer in another namespace with TSO on) is
//! handled without silent loss: a frame longer than a pool buffer is counted
//! in `rx_oversize`, a frame cut short by the ring in `rx_truncated`, both
//! dropped; a frame whose TCP/UDP checksum the sender left to offload
//! (`TP_STATUS_CSUMNOTREADY`, CHECKSUM_PARTIAL) gets the checksum computed
//! here (`rx_csum_completed`), so it can be forwarded as is.
//!
//! VLAN tags the driver stripped (`TP_STATUS_VLAN_VALID`) are put back into
//! the frame, so the stack sees the frame as it was on the wire.
//!
//! Limits, on purpose: the offloads turned off are not restored on close;
//! the device MTU is read at open (reopen after changing it); with several
//! queues, frames arriving while the sockets are still joining the fanout
//! group may reach more than one queue (only at attach).

use crate::stats::LinkStats;
use crate::sys::{bump, errno, setsockopt};
use crate::{ethtool, ifinfo, IoError};
use softnet_core::link::LinkQueue;
use softnet_core::packet::{csum_flags, PacketBuf, PacketPool};
use softnet_wire::checksum;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

// <linux/if_packet.h>
const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_RX_RING: i32 = 5;
const PACKET_STATISTICS: i32 = 6;
const PACKET_VERSION: i32 = 10;
const PACKET_TX_RING: i32 = 13;
const PACKET_VNET_HDR: i32 = 15;
const PACKET_FANOUT: i32 = 18;
const PACKET_QDISC_BYPASS: i32 = 20;
const PACKET_IGNORE_OUTGOING: i32 = 23;
const PACKET_MR_PROMISC: u16 = 1;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
const TPACKET_V2: i32 = 1;
const TPACKET_V3: i32 = 2;
const TP_FT_REQ_FILL_RXHASH: u32 = 1;

// Frame and block status bits.
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1 << 0;
const TP_STATUS_LOSING: u32 = 1 << 2;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const TP_STATUS_CSUM_VALID: u32 = 1 << 7;
const TP_STATUS_SEND_REQUEST: u32 = 1 << 0;
const TP_STATUS_SENDING: u32 = 1 << 1;
const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;

// `struct tpacket_block_desc` / `tpacket_hdr_v1` field offsets.
const BD_BLOCK_STATUS: usize = 8;
const BD_NUM_PKTS: usize = 12;
const BD_OFFSET_TO_FIRST_PKT: usize = 16;
// `struct tpacket3_hdr` field offsets.
const H3_NEXT_OFFSET: usize = 0;
const H3_SNAPLEN: usize = 12;
const H3_LEN: usize = 16;
const H3_STATUS: usize = 20;
const H3_MAC: usize = 24;
const H3_RXHASH: usize = 28;
const H3_VLAN_TCI: usize = 32;
const H3_VLAN_TPID: usize = 36;
// `struct tpacket2_hdr` field offsets; its size, aligned, is where the
// `sockaddr_ll` and then the frame (at `tp_mac`) follow.
const H2_STATUS: usize = 0;
const H2_LEN: usize = 4;
const H2_SNAPLEN: usize = 8;
const H2_MAC: usize = 12;
const H2_VLAN_TCI: usize = 24;
const H2_VLAN_TPID: usize = 26;
/// Where the network header of a frame lands in a V2 RX slot (`netoff` in
/// `tpacket_rcv`: `TPACKET_ALIGN(TPACKET2_HDRLEN + 16)`, TPACKET2_HDRLEN
/// being the header and a `sockaddr_ll`, 52); the frame's Ethernet header
/// sits just before it. A slot holds this plus the MTU and a VLAN tag.
const RX2_NETOFF: usize = 80;
/// Where a TX frame (here: its virtio-net header) starts in a TPACKET_V2
/// slot: `TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)`.
const TX_DATA_OFF: usize = 32;
/// `struct virtio_net_hdr`.
const VNET_HDR_LEN: usize = 10;
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_ALL: u16 = 0x0003;

/// How a queue transmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// TPACKET_V2 `PACKET_TX_RING`, one `sendto` per batch (the default:
    /// measured faster, see the crate README numbers).
    Ring,
    /// `sendmmsg(2)` of the batch straight from the pool buffers.
    Sendmmsg,
}

/// How a queue receives: the kind of RX ring (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxRing {
    /// TPACKET_V2: one slot per frame, ours as soon as it is written.
    Frames,
    /// TPACKET_V3: blocks, ours when full or after `retire_timeout_ms`.
    Blocks,
}

/// Where a frame header's fields lie (TPACKET_V2 or V3).
struct HdrLayout {
    status: usize,
    len: usize,
    snaplen: usize,
    mac: usize,
    vlan_tci: usize,
    /// V3's `tp_vlan_tci` is a u32, V2's a u16.
    tci_u32: bool,
    vlan_tpid: usize,
    rxhash: Option<usize>,
}

const V2: HdrLayout = HdrLayout {
    status: H2_STATUS,
    len: H2_LEN,
    snaplen: H2_SNAPLEN,
    mac: H2_MAC,
    vlan_tci: H2_VLAN_TCI,
    tci_u32: false,
    vlan_tpid: H2_VLAN_TPID,
    rxhash: None,
};

const V3: HdrLayout = HdrLayout {
    status: H3_STATUS,
    len: H3_LEN,
    snaplen: H3_SNAPLEN,
    mac: H3_MAC,
    vlan_tci: H3_VLAN_TCI,
    tci_u32: true,
    vlan_tpid: H3_VLAN_TPID,
    rxhash: Some(H3_RXHASH),
};

/// Ring sizes and attach choices for [`open_packet`].
/// The fewest slots a V2 (`Frames`) RX ring gets, whatever the MTU.
const RX_MIN_SLOTS: usize = 2048;

#[derive(Debug, Clone)]
pub struct PacketOptions {
    pub rx_ring: RxRing,
    /// RX ring block size (page multiple). With `Blocks`, a block must hold
    /// the largest frame to be *counted* as oversize rather than truncated:
    /// 64 KiB+. With `Frames` the ring has `rx_block_size * rx_block_count`
    /// bytes of slots, each the MTU's frame rounded up to a power of two
    /// (2 KiB at 1500), so the same memory either way, but never fewer
    /// than 2,048 slots (more blocks for a jumbo MTU).
    pub rx_block_size: usize,
    pub rx_block_count: usize,
    /// `Blocks` only: how long the kernel lets a partly filled block wait
    /// before handing it over (ms, at least 1): the latency floor under
    /// light load.
    pub retire_timeout_ms: u32,
    pub tx_mode: TxMode,
    /// TX ring slots per queue.
    pub tx_frames: usize,
    pub promisc: bool,
    /// Turn off GRO/LRO/TSO/GSO/TX checksum offload on the device (logged).
    pub disable_offloads: bool,
    pub qdisc_bypass: bool,
    /// Join this fanout group id instead of getting a unique one.
    pub fanout_group: Option<u16>,
}

impl Default for PacketOptions {
    fn default() -> Self {
        PacketOptions {
            rx_ring: RxRing::Blocks,
            rx_block_size: 256 << 10,
            rx_block_count: 16,
            retire_timeout_ms: 1,
            tx_mode: TxMode::Ring,
            tx_frames: 512,
            promisc: true,
            disable_offloads: true,
            qdisc_bypass: true,
            fanout_group: None,
        }
    }
}

/// An mmap'ed ring, unmapped on drop.
struct Ring {
    base: *mut u8,
    len: usize,
}

impl Ring {
    fn map(fd: &OwnedFd, len: usize, dev: &str) -> Result<Ring, IoError> {
        // SAFETY: maps the socket's ring; checked for MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(IoError::last(dev, "mmap packet ring"));
        }
        Ok(Ring { base: p as *mut u8, len })
    }

    /// The status word at `off`, shared with the kernel.
    #[inline]
    fn status(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off + 4 <= self.len);
        // SAFETY: in bounds, 4-aligned (ring headers are 16-aligned), and the
        // kernel only accesses it as a u32.
        unsafe { &*(self.base.add(off) as *const AtomicU32) }
    }

    #[inline]
    fn u32_at(&self, off: usize) -> u32 {
        debug_assert!(off + 4 <= self.len);
        // SAFETY: in bounds; the owner of the slot (us, by its status) reads it.
        unsafe { std::ptr::read_volatile(self.base.add(off) as *const u32) }
    }

    #[inline]
    fn u16_at(&self, off: usize) -> u16 {
        debug_assert!(off + 2 <= self.len);
        // SAFETY: as u32_at.
        unsafe { std::ptr::read_volatile(self.base.add(off) as *const u16) }
    }

    /// The bytes `off..off+len` (clamped to the ring by the caller).
    #[inline]
    fn bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(off + len <= self.len, "frame outside the ring");
        // SAFETY: in bounds; we own this slot/block until we hand it back.
        unsafe { std::slice::from_raw_parts(self.base.add(off), len) }
    }

    #[inline]
    #[allow(clippy::mut_from_ref)]
    fn bytes_mut(&self, off: usize, len: usize) -> &mut [u8] {
        assert!(off + len <= self.len, "slot outside the ring");
        // SAFETY: in bounds; a TX slot with status AVAILABLE is ours alone.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(off), len) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// One queue of an AF_PACKET link.
pub struct PacketQueue {
    dev: String,
    queue: usize,
    // Rings before fds: unmapped before the sockets close.
    rx_ring: Ring,
    /// `None` in `TxMode::Sendmmsg`.
    tx_ring: Option<Ring>,
    rx_fd: OwnedFd,
    tx_fd: OwnedFd,
    rx_mode: RxRing,
    block_size: usize,
    block_count: usize,
    /// `Frames`: slot size and count; the slot to read next is `block`.
    rx_frame_size: usize,
    rx_frame_count: usize,
    /// Block (or, with `Frames`, slot) being read, and where in a block.
    block: usize,
    in_block: bool,
    pkts_left: u32,
    pkt_off: usize,
    tx_frame_size: usize,
    tx_frame_count: usize,
    tx_head: usize,
    /// Frames handed to the ring that the kernel has not taken yet (it ran
    /// out of socket buffer): kicked again on the next send or recv.
    tx_pending: bool,
    /// Longest frame the device takes (MTU + Ethernet header).
    tx_max_frame: usize,
    /// Scratch for `TxMode::Sendmmsg` (capacity `MMSG_BATCH`, reused).
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    stats: Arc<LinkStats>,
}

const MMSG_BATCH: usize = 64;

// SAFETY: the rings are owned by this queue alone (shared only with the
// kernel) and a queue is used by one worker at a time.
unsafe impl Send for PacketQueue {}

/// Opens `queues` AF_PACKET queues on `dev`, boxed for the stack. See
/// [`PacketQueue::open_all`] for the typed version (with counters).
pub fn open_packet(dev: &str, queues: usize, opts: &PacketOptions) -> Result<Vec<Box<dyn LinkQueue>>, IoError> {
    Ok(PacketQueue::open_all(dev, queues, opts)?.into_iter().map(|q| Box::new(q) as Box<dyn LinkQueue>).collect())
}

fn packet_socket(dev: &str) -> Result<OwnedFd, IoError> {
    // Protocol 0: no frames are queued to it before the ring exists and
    // bind() names the protocol.
    // SAFETY: plain socket(2); owned at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(IoError::last(dev, "socket(AF_PACKET)"));
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind_dev(fd: &OwnedFd, ifindex: u32, protocol: u16, dev: &str) -> Result<(), IoError> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll of the size passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(IoError::last(dev, "bind(AF_PACKET)"));
    }
    Ok(())
}

#[repr(C)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

#[repr(C)]
struct PacketMreq {
    ifindex: i32,
    kind: u16,
    alen: u16,
    address: [u8; 8],
}

#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as usize
}

impl PacketQueue {
    /// Opens `queues` queues on `dev` (which must exist and be Ethernet).
    /// With more than one, their RX sockets form one fanout group.
    pub fn open_all(dev: &str, queues: usize, opts: &PacketOptions) -> Result<Vec<PacketQueue>, IoError> {
        if queues == 0 || queues > 1024 {
            return Err(IoError::invalid(dev, format!("queue count {queues} not in 1..=1024")));
        }
        let page = page_size();
        if opts.rx_block_size == 0 || !opts.rx_block_size.is_multiple_of(page) || opts.rx_block_count == 0 {
            return Err(IoError::invalid(dev, format!("RX block size must be a multiple of {page} and blocks > 0")));
        }
        let ifindex = ifinfo::ifindex(dev)?;
        ifinfo::mac_address(dev)?; // Ethernet only
        let mtu = ifinfo::mtu(dev)? as usize;
        if opts.disable_offloads {
            ethtool::disable_offloads(dev)?;
        }
        let mut out = Vec::with_capacity(queues);
        let mut group: Option<u32> = opts.fanout_group.map(u32::from);
        for queue in 0..queues {
            let q = PacketQueue::open_one(dev, queue, ifindex, mtu, opts)?;
            if queues > 1 || opts.fanout_group.is_some() {
                group = Some(q.join_fanout(group)?);
            }
            out.push(q);
        }
        tracing::info!(
            "{dev}: AF_PACKET attached, {queues} queue(s){}, RX {}, TX {}; no software segmentation: oversized frames are counted and dropped",
            group.map(|g| format!(", fanout hash group {g}")).unwrap_or_default(),
            match opts.rx_ring {
                RxRing::Frames => format!("TPACKET_V2 {} slots of {} B", out[0].rx_frame_count, out[0].rx_frame_size),
                RxRing::Blocks => format!("TPACKET_V3 {}x{} KiB", opts.rx_block_count, opts.rx_block_size >> 10),
            },
            match opts.tx_mode {
                TxMode::Ring => format!("ring {} slots", out[0].tx_frame_count),
                TxMode::Sendmmsg => "sendmmsg".to_string(),
            },
        );
        Ok(out)
    }

    fn open_one(
        dev: &str,
        queue: usize,
        ifindex: u32,
        mtu: usize,
        opts: &PacketOptions,
    ) -> Result<PacketQueue, IoError> {
        // RX: ring first, then bind, so every frame lands in the ring.
        let rx_fd = packet_socket(dev)?;
        let rx_frame_size = match opts.rx_ring {
            RxRing::Frames => (RX2_NETOFF + mtu + VLAN_HLEN).next_power_of_two().max(2048),
            RxRing::Blocks => 2048,
        };
        if rx_frame_size > opts.rx_block_size {
            return Err(IoError::invalid(
                dev,
                format!("RX block size {} is smaller than a frame slot ({rx_frame_size})", opts.rx_block_size),
            ));
        }
        // A V2 ring has a slot a frame, whatever its length, where V3
        // packs frames into blocks: with a jumbo MTU's 16 KiB slots the
        // same memory held 256 frames and a burst of small ones
        // overflowed it. Frames get at least RX_MIN_SLOTS slots.
        let block_count = match opts.rx_ring {
            RxRing::Frames => opts.rx_block_count.max((RX_MIN_SLOTS * rx_frame_size).div_ceil(opts.rx_block_size)),
            RxRing::Blocks => opts.rx_block_count,
        };
        let frame_nr = (opts.rx_block_size / rx_frame_size * block_count) as u32;
        if opts.rx_ring == RxRing::Frames {
            setsockopt(&rx_fd, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V2, dev, "PACKET_VERSION")?;
            let req = TpacketReq {
                block_size: opts.rx_block_size as u32,
                block_nr: block_count as u32,
                frame_size: rx_frame_size as u32,
                frame_nr,
            };
            setsockopt(&rx_fd, libc::SOL_PACKET, PACKET_RX_RING, &req, dev, "PACKET_RX_RING")?;
        } else {
            setsockopt(&rx_fd, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V3, dev, "PACKET_VERSION")?;
            let req = TpacketReq3 {
                block_size: opts.rx_block_size as u32,
                block_nr: opts.rx_block_count as u32,
                frame_size: rx_frame_size as u32,
                frame_nr,
                retire_blk_tov: opts.retire_timeout_ms.max(1),
                sizeof_priv: 0,
                feature_req_word: TP_FT_REQ_FILL_RXHASH,
            };
            setsockopt(&rx_fd, libc::SOL_PACKET, PACKET_RX_RING, &req, dev, "PACKET_RX_RING")?;
        }
        let rx_ring = Ring::map(&rx_fd, opts.rx_block_size * block_count, dev)?;
        let rx_slots = (rx_frame_size, frame_nr as usize);
        bind_dev(&rx_fd, ifindex, ETH_P_ALL, dev)?;
        setsockopt(&rx_fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32, dev, "PACKET_IGNORE_OUTGOING")?;
        if opts.promisc {
            let mr = PacketMreq { ifindex: ifindex as i32, kind: PACKET_MR_PROMISC, alen: 0, address: [0; 8] };
            setsockopt(&rx_fd, libc::SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, dev, "PACKET_ADD_MEMBERSHIP")?;
        }

        // TX: its own socket, protocol 0 so it never receives.
        let tx_fd = packet_socket(dev)?;
        if opts.qdisc_bypass {
            setsockopt(&tx_fd, libc::SOL_PACKET, PACKET_QDISC_BYPASS, &1i32, dev, "PACKET_QDISC_BYPASS")?;
        }
        let tx_max_frame = mtu + ETH_HLEN + VLAN_HLEN;
        if opts.tx_mode == TxMode::Sendmmsg {
            bind_dev(&tx_fd, ifindex, 0, dev)?;
            return Ok(PacketQueue::new(dev, queue, opts, rx_ring, rx_slots, None, rx_fd, tx_fd, 0, 0, tx_max_frame));
        }
        setsockopt(&tx_fd, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V2, dev, "PACKET_VERSION")?;
        setsockopt(&tx_fd, libc::SOL_PACKET, PACKET_VNET_HDR, &1i32, dev, "PACKET_VNET_HDR")?;
        let tx_frame_size = (TX_DATA_OFF + VNET_HDR_LEN + tx_max_frame).next_power_of_two().max(2048);
        let page = page_size();
        let tx_block_size = tx_frame_size.max(page).div_ceil(page) * page;
        let per_block = tx_block_size / tx_frame_size;
        let tx_blocks = opts.tx_frames.max(1).div_ceil(per_block);
        let treq = TpacketReq {
            block_size: tx_block_size as u32,
            block_nr: tx_blocks as u32,
            frame_size: tx_frame_size as u32,
            frame_nr: (per_block * tx_blocks) as u32,
        };
        setsockopt(&tx_fd, libc::SOL_PACKET, PACKET_TX_RING, &treq, dev, "PACKET_TX_RING")?;
        let tx_ring = Ring::map(&tx_fd, tx_block_size * tx_blocks, dev)?;
        bind_dev(&tx_fd, ifindex, 0, dev)?;
        let frames = per_block * tx_blocks;
        Ok(PacketQueue::new(
            dev,
            queue,
            opts,
            rx_ring,
            rx_slots,
            Some(tx_ring),
            rx_fd,
            tx_fd,
            tx_frame_size,
            frames,
            tx_max_frame,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        dev: &str,
        queue: usize,
        opts: &PacketOptions,
        rx_ring: Ring,
        (rx_frame_size, rx_frame_count): (usize, usize),
        tx_ring: Option<Ring>,
        rx_fd: OwnedFd,
        tx_fd: OwnedFd,
        tx_frame_size: usize,
        tx_frame_count: usize,
        tx_max_frame: usize,
    ) -> PacketQueue {
        PacketQueue {
            dev: dev.to_string(),
            queue,
            rx_ring,
            tx_ring,
            rx_fd,
            tx_fd,
            rx_mode: opts.rx_ring,
            block_size: opts.rx_block_size,
            block_count: opts.rx_block_count,
            rx_frame_size,
            rx_frame_count,
            block: 0,
            in_block: false,
            pkts_left: 0,
            pkt_off: 0,
            tx_frame_size,
            tx_frame_count,
            tx_head: 0,
            tx_pending: false,
            tx_max_frame,
            iov: Vec::with_capacity(MMSG_BATCH),
            msgs: Vec::with_capacity(MMSG_BATCH),
            stats: Arc::new(LinkStats::default()),
        }
    }

    /// Joins fanout group `group`, or a fresh unique one; returns its id.
    fn join_fanout(&self, group: Option<u32>) -> Result<u32, IoError> {
        let arg = match group {
            Some(g) => g | (PACKET_FANOUT_HASH << 16),
            None => (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16,
        };
        setsockopt(&self.rx_fd, libc::SOL_PACKET, PACKET_FANOUT, &arg, &self.dev, "PACKET_FANOUT")?;
        if let Some(g) = group {
            return Ok(g);
        }
        let mut v: u32 = 0;
        let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
        // SAFETY: v and len are valid for the kernel to write.
        let r = unsafe {
            libc::getsockopt(
                self.rx_fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_FANOUT,
                &mut v as *mut u32 as *mut libc::c_void,
                &mut len,
            )
        };
        if r < 0 {
            return Err(IoError::last(&self.dev, "getsockopt(PACKET_FANOUT)"));
        }
        Ok(v & 0xffff)
    }

    pub fn stats(&self) -> Arc<LinkStats> {
        self.stats.clone()
    }

    pub fn device(&self) -> &str {
        &self.dev
    }

    pub fn queue_index(&self) -> usize {
        self.queue
    }

    /// Adds the kernel's count of frames it dropped for a full ring (the
    /// kernel resets it on read).
    fn collect_kernel_drops(&self) {
        let mut st = TpacketStatsV3::default();
        let mut len = std::mem::size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: st and len are valid for the kernel to write.
        let r = unsafe {
            libc::getsockopt(
                self.rx_fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                &mut st as *mut TpacketStatsV3 as *mut libc::c_void,
                &mut len,
            )
        };
        if r == 0 {
            bump(&self.stats.rx_kernel_drops, st.drops as u64);
        }
    }

    /// Copies the frame whose header (of layout `l`) is at `h` into `p`;
    /// false if it was dropped (and counted).
    fn take_frame(&self, l: &HdrLayout, h: usize, p: &mut PacketBuf) -> bool {
        let r = &self.rx_ring;
        let snaplen = r.u32_at(h + l.snaplen) as usize;
        let len = r.u32_at(h + l.len) as usize;
        let status = r.u32_at(h + l.status);
        let mac = r.u16_at(h + l.mac) as usize;
        let vlan = status & TP_STATUS_VLAN_VALID != 0;
        let extra = if vlan { VLAN_HLEN } else { 0 };
        if len + extra > p.max_len() {
            bump(&self.stats.rx_oversize, 1);
            return false;
        }
        if snaplen < len || snaplen < ETH_HLEN {
            bump(&self.stats.rx_truncated, 1);
            return false;
        }
        let src = r.bytes(h + mac, len);
        p.set_len(len + extra).expect("checked against max_len");
        let d = p.data_mut();
        if vlan {
            let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 { r.u16_at(h + l.vlan_tpid) } else { 0x8100 };
            let tci = if l.tci_u32 { r.u32_at(h + l.vlan_tci) as u16 } else { r.u16_at(h + l.vlan_tci) };
            d[..12].copy_from_slice(&src[..12]);
            d[12..14].copy_from_slice(&tpid.to_be_bytes());
            d[14..16].copy_from_slice(&tci.to_be_bytes());
            d[16..].copy_from_slice(&src[12..]);
        } else {
            d.copy_from_slice(src);
        }
        p.meta.flow_hash = l.rxhash.map_or(0, |o| r.u32_at(h + o));
        if status & TP_STATUS_CSUMNOTREADY != 0 {
            if complete_l4_checksum(p.data_mut()) {
                bump(&self.stats.rx_csum_completed, 1);
                p.meta.csum |= csum_flags::L4_OK;
            } else {
                bump(&self.stats.rx_csum_partial, 1);
            }
        } else if status & TP_STATUS_CSUM_VALID != 0 {
            p.meta.csum |= csum_flags::L4_OK;
        }
        true
    }

    /// Asks the kernel to send every slot marked SEND_REQUEST.
    fn kick(&mut self) {
        // SAFETY: a zero-length sendto on our own socket; no buffers passed.
        let r = unsafe {
            libc::sendto(self.tx_fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
        };
        if r < 0 {
            let e = errno();
            // Out of socket buffer: the frames stay queued in the ring.
            self.tx_pending = true;
            if e != libc::EAGAIN && e != libc::ENOBUFS && e != libc::EINTR {
                bump(&self.stats.tx_errors, 1);
            }
        } else {
            self.tx_pending = false;
        }
    }

    fn tx_slot(&self, i: usize) -> usize {
        i * self.tx_frame_size
    }
}

impl LinkQueue for PacketQueue {
    fn rx_losses(&self) -> softnet_core::link::RxLosses {
        self.stats.rx_losses()
    }

    fn recv(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        if self.tx_pending {
            self.kick();
        }
        if self.rx_mode == RxRing::Frames {
            return self.recv_frames(pool, out, max);
        }
        let mut n = 0;
        let mut bytes = 0u64;
        'blocks: while n < max {
            let b = self.block * self.block_size;
            if !self.in_block {
                let st = self.rx_ring.status(b + BD_BLOCK_STATUS).load(Ordering::Acquire);
                if st & TP_STATUS_USER == 0 {
                    break;
                }
                if st & TP_STATUS_LOSING != 0 {
                    self.collect_kernel_drops();
                }
                self.in_block = true;
                self.pkts_left = self.rx_ring.u32_at(b + BD_NUM_PKTS);
                self.pkt_off = self.rx_ring.u32_at(b + BD_OFFSET_TO_FIRST_PKT) as usize;
            }
            while self.pkts_left > 0 {
                if n == max {
                    break 'blocks;
                }
                let Some(mut p) = pool.alloc() else {
                    // Leave the frame in the ring for the next batch.
                    bump(&self.stats.rx_nobuf, 1);
                    break 'blocks;
                };
                let h = b + self.pkt_off;
                if self.take_frame(&V3, h, &mut p) {
                    bytes += p.len() as u64;
                    out.push(p);
                    n += 1;
                } else {
                    pool.free(p);
                }
                self.pkts_left -= 1;
                self.pkt_off += self.rx_ring.u32_at(h + H3_NEXT_OFFSET) as usize;
            }
            // Whole block consumed: hand it back.
            self.rx_ring.status(b + BD_BLOCK_STATUS).store(TP_STATUS_KERNEL, Ordering::Release);
            self.in_block = false;
            self.block = (self.block + 1) % self.block_count;
        }
        bump(&self.stats.rx_frames, n as u64);
        bump(&self.stats.rx_bytes, bytes);
        n
    }

    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        if self.tx_ring.is_some() {
            self.send_ring(pool, frames)
        } else {
            self.send_mmsg(pool, frames)
        }
    }

    fn poll_fd(&self) -> Option<i32> {
        Some(self.rx_fd.as_raw_fd())
    }
}

impl PacketQueue {
    /// `recv` from a TPACKET_V2 ring: slot after slot while the kernel has
    /// handed them over (`TP_STATUS_USER`), each given back at once.
    fn recv_frames(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let mut n = 0;
        let mut bytes = 0u64;
        while n < max {
            let per_block = self.block_size / self.rx_frame_size;
            let h = self.block / per_block * self.block_size + self.block % per_block * self.rx_frame_size;
            let st = self.rx_ring.status(h + H2_STATUS).load(Ordering::Acquire);
            if st & TP_STATUS_USER == 0 {
                break;
            }
            if st & TP_STATUS_LOSING != 0 {
                self.collect_kernel_drops();
            }
            let Some(mut p) = pool.alloc() else {
                // Leave the frame in the ring for the next batch.
                bump(&self.stats.rx_nobuf, 1);
                break;
            };
            if self.take_frame(&V2, h, &mut p) {
                bytes += p.len() as u64;
                out.push(p);
                n += 1;
            } else {
                pool.free(p);
            }
            self.rx_ring.status(h + H2_STATUS).store(TP_STATUS_KERNEL, Ordering::Release);
            self.block = (self.block + 1) % self.rx_frame_count;
        }
        bump(&self.stats.rx_frames, n as u64);
        bump(&self.stats.rx_bytes, bytes);
        n
    }

    /// Whether `d` fits the device (MTU + header, + a tag if it has one).
    fn fits(&self, d: &[u8]) -> bool {
        let tagged = d.len() >= ETH_HLEN && matches!(u16::from_be_bytes([d[12], d[13]]), 0x8100 | 0x88a8);
        let limit = if tagged { self.tx_max_frame } else { self.tx_max_frame - VLAN_HLEN };
        d.len() <= limit && d.len() >= ETH_HLEN
    }

    fn send_ring(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
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
            let slot = self.tx_slot(self.tx_head);
            let ring = self.tx_ring.as_ref().expect("ring mode");
            let mut st = ring.status(slot).load(Ordering::Acquire);
            if st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 && !kicked_for_room {
                // Ring full: push out what is queued, then look again once.
                self.kick();
                kicked_for_room = true;
                st = self.tx_ring.as_ref().expect("ring mode").status(slot).load(Ordering::Acquire);
            }
            if st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 {
                bump(&self.stats.tx_busy, 1);
                pool.free(p);
                continue;
            }
            if st & TP_STATUS_WRONG_FORMAT != 0 {
                bump(&self.stats.tx_errors, 1);
            }
            let ring = self.tx_ring.as_ref().expect("ring mode");
            let data = ring.bytes_mut(slot + TX_DATA_OFF, VNET_HDR_LEN + d.len());
            // virtio_net_hdr: no checksum or GSO request; hdr_len = the whole
            // frame, so the kernel copies it into one linear skb.
            data[..VNET_HDR_LEN].fill(0);
            data[2..4].copy_from_slice(&(d.len() as u16).to_le_bytes());
            data[VNET_HDR_LEN..].copy_from_slice(d);
            // tpacket2_hdr.tp_len (offset 4), then hand the slot over.
            let tp_len = ring.bytes_mut(slot + 4, 4);
            tp_len.copy_from_slice(&((VNET_HDR_LEN + d.len()) as u32).to_ne_bytes());
            ring.status(slot).store(TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.tx_head = (self.tx_head + 1) % self.tx_frame_count;
            bytes += d.len() as u64;
            queued += 1;
            pool.free(p);
        }
        if queued > 0 || self.tx_pending {
            self.kick();
        }
        bump(&self.stats.tx_frames, queued as u64);
        bump(&self.stats.tx_bytes, bytes);
        queued
    }

    fn send_mmsg(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        let mut sent_total = 0usize;
        let mut bytes = 0u64;
        let mut start = 0;
        while start < frames.len() {
            let end = (start + MMSG_BATCH).min(frames.len());
            self.iov.clear();
            for p in &frames[start..end] {
                let d = p.data();
                if !self.fits(d) {
                    bump(&self.stats.tx_oversize, 1);
                    continue;
                }
                bytes += d.len() as u64;
                self.iov.push(libc::iovec { iov_base: d.as_ptr() as *mut libc::c_void, iov_len: d.len() });
            }
            self.msgs.clear();
            for v in &self.iov {
                // SAFETY: msghdr is plain data; all-zero is valid.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = v as *const libc::iovec as *mut libc::iovec;
                h.msg_hdr.msg_iovlen = 1;
                self.msgs.push(h);
            }
            let cnt = self.msgs.len();
            let mut off = 0;
            while off < cnt {
                // SAFETY: msgs[off..cnt] are valid mmsghdrs whose iovecs point
                // into buffers that live in `frames` until after this call.
                let r = unsafe {
                    libc::sendmmsg(
                        self.tx_fd.as_raw_fd(),
                        self.msgs.as_mut_ptr().add(off),
                        (cnt - off) as u32,
                        libc::MSG_DONTWAIT,
                    )
                };
                if r > 0 {
                    off += r as usize;
                    sent_total += r as usize;
                    continue;
                }
                let e = errno();
                if e == libc::EAGAIN || e == libc::ENOBUFS {
                    bump(&self.stats.tx_busy, (cnt - off) as u64);
                    for v in &self.iov[off..cnt] {
                        bytes -= v.iov_len as u64;
                    }
                    break;
                }
                bump(&self.stats.tx_errors, 1);
                bytes -= self.iov[off].iov_len as u64;
                off += 1;
            }
            start = end;
        }
        for p in frames.drain(..) {
            pool.free(p);
        }
        bump(&self.stats.tx_frames, sent_total as u64);
        bump(&self.stats.tx_bytes, bytes);
        sent_total
    }
}

/// Fills in the TCP/UDP checksum of a CHECKSUM_PARTIAL frame (IPv4 or IPv6
/// without extension headers, behind any number of VLAN tags). False if the
/// frame is not one of those or is malformed; nothing is changed then.
pub fn complete_l4_checksum(f: &mut [u8]) -> bool {
    let be16 = |f: &[u8], o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
    if f.len() < ETH_HLEN {
        return false;
    }
    let mut off = 12;
    let mut et = be16(f, off);
    while et == 0x8100 || et == 0x88a8 {
        off += VLAN_HLEN;
        if f.len() < off + 2 {
            return false;
        }
        et = be16(f, off);
    }
    let l3 = off + 2;
    let (proto, l4, end, pseudo) = match et {
        0x0800 => {
            if f.len() < l3 + 20 {
                return false;
            }
            let ihl = (f[l3] & 0x0f) as usize * 4;
            let total = be16(f, l3 + 2) as usize;
            let frag = be16(f, l3 + 6) & 0x3fff;
            if f[l3] >> 4 != 4 || ihl < 20 || total < ihl || l3 + total > f.len() || frag != 0 {
                return false;
            }
            let proto = f[l3 + 9];
            let src = std::net::Ipv4Addr::new(f[l3 + 12], f[l3 + 13], f[l3 + 14], f[l3 + 15]);
            let dst = std::net::Ipv4Addr::new(f[l3 + 16], f[l3 + 17], f[l3 + 18], f[l3 + 19]);
            let pseudo = checksum::pseudo_header_v4(src, dst, proto, (total - ihl) as u16);
            (proto, l3 + ihl, l3 + total, pseudo)
        }
        0x86dd => {
            if f.len() < l3 + 40 {
                return false;
            }
            let plen = be16(f, l3 + 4) as usize;
            if l3 + 40 + plen > f.len() {
                return false;
            }
            let proto = f[l3 + 6];
            let pseudo = checksum::combine(checksum::sum(&f[l3 + 8..l3 + 40]), plen as u32 + proto as u32);
            (proto, l3 + 40, l3 + 40 + plen, pseudo)
        }
        _ => return false,
    };
    let field = match proto {
        6 => 16,
        17 => 6,
        _ => return false,
    };
    if l4 + field + 2 > end {
        return false;
    }
    f[l4 + field..l4 + field + 2].fill(0);
    let mut c = checksum::finish(checksum::combine(pseudo, checksum::sum(&f[l4..end])));
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    f[l4 + field..l4 + field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + UDP 10.0.0.1:1000 -> 10.0.0.2:2000, payload "abc",
    /// checksum field holding only the pseudo-header sum (as CHECKSUM_PARTIAL).
    fn partial_udp() -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let ip = [0x45, 0, 0, 31, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 11, 0, 0, b'a', b'b', b'c']);
        let ps = checksum::pseudo_header_v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 17, 11);
        f[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&(ps as u16).to_be_bytes());
        f.extend_from_slice(&[0; 7]); // Ethernet padding, not summed
        f
    }

    #[test]
    fn completes_partial_udp_checksum() {
        let mut f = partial_udp();
        assert!(complete_l4_checksum(&mut f));
        // Verify: pseudo + segment sums to 0xffff.
        let ps = checksum::pseudo_header_v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 17, 11);
        assert_eq!(checksum::finish(checksum::combine(ps, checksum::sum(&f[34..45]))), 0);
    }

    #[test]
    fn completes_behind_vlan_tag_and_ignores_other_protocols() {
        let plain = partial_udp();
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&plain[12..]);
        let mut expect = plain.clone();
        assert!(complete_l4_checksum(&mut expect));
        assert!(complete_l4_checksum(&mut tagged));
        assert_eq!(&tagged[18 + 20 + 6..18 + 20 + 8], &expect[14 + 20 + 6..14 + 20 + 8]);
        let mut arp = vec![0u8; 60];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(!complete_l4_checksum(&mut arp));
        let mut short = partial_udp();
        short[16..18].copy_from_slice(&500u16.to_be_bytes()); // total length past the frame
        assert!(!complete_l4_checksum(&mut short));
    }
}
