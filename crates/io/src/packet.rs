//! AF_PACKET links on an existing Ethernet device.
//!
//! Each queue is two sockets bound to the device:
//!
//! * RX: `ETH_P_ALL`, `PACKET_IGNORE_OUTGOING` (no copies of frames leaving
//!   the device, ours or the kernel's) and, with more than one queue, all RX
//!   sockets in one `PACKET_FANOUT_HASH` group, so each frame reaches
//!   exactly one queue and a flow always the same one. Promiscuous mode by
//!   `PACKET_ADD_MEMBERSHIP` (dropped with the socket). The ring is one of
//!   two kinds ([`RxRing`]), of `rx_ring_bytes` per queue (`rx_ring`,
//!   `rx_ring_mib` in the configuration):
//!   - `Frames` (16 MiB): TPACKET_V2, fixed slots of one
//!     frame each, sized for the MTU (1,584 B at 1500, 9,088 B at 9000:
//!     `packet_ring::rx_geometry`), each handed to us by its own status
//!     word the moment the kernel has written it, with a wakeup of a
//!     poller per frame (`tpacket_rcv`). A slot holds one frame whatever
//!     its size, so the ring is deep: 10,496 slots at MTU 1500, 1,792 at
//!     9000, enough for a 20,000-SYN flood over two queues (e2e
//!     test_sock_robust) and 1,000 TTL-1 packets at MTU 9000 on one
//!     (test_malformed); 2,048 slots overflowed in both (session 11).
//!   - `Blocks` (the default, 4 MiB): TPACKET_V3, blocks of variable-size frames with
//!     the kernel's flow hash (`TP_FT_REQ_FILL_RXHASH`), about 160 B a
//!     small frame; a block is handed over only when it is full or
//!     `retire_timeout_ms` (at least 1 ms) after its first frame
//!     (`prb_retire_rx_blk_timer_expired`). That timer is the latency of
//!     every frame under light load, and a TCP endpoint's ACK clock runs
//!     on it: bulk TCP sending through this link measured 0.4-0.7 Gbit/s
//!     with `Blocks` (BENCHMARKS §4 sessions 11 and 12). It stays the
//!     default all the same: with `Frames`, e2e test_overload's router,
//!     its workers held to 5 % of a CPU, answered no ping for 8 s after
//!     its flood of new flows (session 12's CI), where `Blocks` answered
//!     at once. Session 13 did not see that again in 36 runs with
//!     `Frames` (BENCHMARKS §4, v2ring); it found and fixed a `Frames`
//!     drop count left in the kernel (`recv_frames`), which failed the
//!     same test's accounting once; session 14 found and fixed the same
//!     in `Blocks` (`recv`), which failed session 13's CI. Session 14 also
//!     found the 8 s of deafness: the test flushed pf's states while the
//!     starved router was still reading the flood of new flows from its
//!     ring, which took the states again up to the limit, so the ping's
//!     was refused; a deeper ring holds more of the flood (the test now
//!     waits for the input to settle). The ring kind was not the cause.
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

pub use crate::l4csum::complete_l4_checksum;
use crate::packet_ring::*;
use crate::stats::LinkStats;
use crate::sys::{bump, errno, setsockopt};
use crate::{ethtool, ifinfo, IoError};
use softnet_core::link::LinkQueue;
use softnet_core::packet::{csum_flags, PacketBuf, PacketPool};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
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

impl RxRing {
    /// The RX ring memory per queue when none is asked for (bytes).
    pub fn default_bytes(self) -> usize {
        match self {
            RxRing::Frames => RX_FRAMES_DEFAULT_BYTES,
            RxRing::Blocks => RX_BLOCKS_DEFAULT_BYTES,
        }
    }
}

/// A `Blocks` ring's memory by default: 16 blocks of 256 KiB, about 26,000
/// 64-byte frames or 2,600 of 1,514 bytes.
pub const RX_BLOCKS_DEFAULT_BYTES: usize = 4 << 20;
/// A `Frames` ring's memory by default: 10,496 slots at MTU 1500
/// (1,584 B each), 1,792 at MTU 9000 (9,088 B).
pub const RX_FRAMES_DEFAULT_BYTES: usize = 16 << 20;

/// Ring sizes and attach choices for [`open_packet`].
#[derive(Debug, Clone)]
pub struct PacketOptions {
    pub rx_ring: RxRing,
    /// RX ring memory per queue (bytes, rounded down to whole blocks):
    /// `Frames` cuts it into slots of one frame each, sized for the
    /// device's MTU (`packet_ring::rx_geometry`), `Blocks` into blocks of
    /// `rx_block_size`.
    pub rx_ring_bytes: usize,
    /// `Blocks` only: the block size (page multiple). A block must hold the
    /// largest frame to be *counted* as oversize rather than truncated:
    /// 64 KiB+.
    pub rx_block_size: usize,
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
            rx_ring_bytes: RxRing::Blocks.default_bytes(),
            rx_block_size: 256 << 10,
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
    /// The RX ring's blocks (and with `Frames` its slots: the slot to
    /// read next is `block`).
    rx: RxGeometry,
    /// Block (or, with `Frames`, slot) being read, and where in a block.
    block: usize,
    /// The ring was seen full since the kernel's drop count was last read,
    /// so drops may wait there that no frame or block will report
    /// (`recv`, `recv_frames`).
    rx_full_seen: bool,
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

impl PacketQueue {
    /// Opens `queues` queues on `dev` (which must exist and be Ethernet).
    /// With more than one, their RX sockets form one fanout group.
    pub fn open_all(dev: &str, queues: usize, opts: &PacketOptions) -> Result<Vec<PacketQueue>, IoError> {
        if queues == 0 || queues > 1024 {
            return Err(IoError::invalid(dev, format!("queue count {queues} not in 1..=1024")));
        }
        let ifindex = ifinfo::ifindex(dev)?;
        ifinfo::mac_address(dev)?; // Ethernet only
        let mtu = ifinfo::mtu(dev)? as usize;
        let rx = rx_geometry(opts.rx_ring, opts.rx_ring_bytes, opts.rx_block_size, mtu, page_size())
            .map_err(|e| IoError::invalid(dev, e))?;
        if opts.disable_offloads {
            ethtool::disable_offloads(dev)?;
        }
        let mut out = Vec::with_capacity(queues);
        let mut group: Option<u32> = opts.fanout_group.map(u32::from);
        for queue in 0..queues {
            let q = PacketQueue::open_one(dev, queue, ifindex, mtu, rx, opts)?;
            if queues > 1 || opts.fanout_group.is_some() {
                group = Some(q.join_fanout(group)?);
            }
            out.push(q);
        }
        tracing::info!(
            "{dev}: AF_PACKET attached, {queues} queue(s){}, RX {}, TX {}; no software segmentation: oversized frames are counted and dropped",
            group.map(|g| format!(", fanout hash group {g}")).unwrap_or_default(),
            match opts.rx_ring {
                RxRing::Frames =>
                    format!("TPACKET_V2 {} slots of {} B ({} KiB)", rx.frame_count, rx.frame_size, rx.bytes() >> 10),
                RxRing::Blocks =>
                    format!("TPACKET_V3 {}x{} KiB ({} KiB)", rx.block_count, rx.block_size >> 10, rx.bytes() >> 10),
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
        rx: RxGeometry,
        opts: &PacketOptions,
    ) -> Result<PacketQueue, IoError> {
        // RX: ring first, then bind, so every frame lands in the ring.
        let rx_fd = packet_socket(dev)?;
        if opts.rx_ring == RxRing::Frames {
            setsockopt(&rx_fd, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V2, dev, "PACKET_VERSION")?;
            let req = TpacketReq {
                block_size: rx.block_size as u32,
                block_nr: rx.block_count as u32,
                frame_size: rx.frame_size as u32,
                frame_nr: rx.frame_count as u32,
            };
            setsockopt(&rx_fd, libc::SOL_PACKET, PACKET_RX_RING, &req, dev, "PACKET_RX_RING")?;
        } else {
            setsockopt(&rx_fd, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V3, dev, "PACKET_VERSION")?;
            let req = TpacketReq3 {
                block_size: rx.block_size as u32,
                block_nr: rx.block_count as u32,
                frame_size: rx.frame_size as u32,
                frame_nr: rx.frame_count as u32,
                retire_blk_tov: opts.retire_timeout_ms.max(1),
                sizeof_priv: 0,
                feature_req_word: TP_FT_REQ_FILL_RXHASH,
            };
            setsockopt(&rx_fd, libc::SOL_PACKET, PACKET_RX_RING, &req, dev, "PACKET_RX_RING")?;
        }
        let rx_ring = Ring::map(&rx_fd, rx.bytes(), dev)?;
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
            return Ok(PacketQueue::new(dev, queue, opts, rx_ring, rx, None, rx_fd, tx_fd, 0, 0, tx_max_frame));
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
            rx,
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
        rx: RxGeometry,
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
            rx,
            block: 0,
            rx_full_seen: false,
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
        // The kernel's drop count (`PACKET_STATISTICS`, cleared on read) is
        // read when a block says `TP_STATUS_LOSING` (set when the kernel
        // closes a block while its count is not zero), and when the ring
        // runs dry after it was seen full: the frames dropped while every
        // block was ours (`prb_freeze_queue`) are said by no block if none
        // is closed after them, as on a queue whose traffic stopped then
        // (e2e test_overload: the fanout queue its closing ping missed
        // kept 1 % of a flood in the kernel). Full: our block and the one
        // before it (the last we gave back) are both the user's, so the
        // kernel went round the whole ring and waits for ours.
        let prev = (self.block + self.rx.block_count - 1) % self.rx.block_count;
        let user = |i: usize| {
            self.rx_ring.status(i * self.rx.block_size + BD_BLOCK_STATUS).load(Ordering::Acquire) & TP_STATUS_USER != 0
        };
        if user(self.block) && user(prev) {
            self.rx_full_seen = true;
        }
        let mut n = 0;
        let mut bytes = 0u64;
        let mut dry = false;
        'blocks: while n < max {
            let b = self.block * self.rx.block_size;
            if !self.in_block {
                let st = self.rx_ring.status(b + BD_BLOCK_STATUS).load(Ordering::Acquire);
                if st & TP_STATUS_USER == 0 {
                    dry = true;
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
            self.block = (self.block + 1) % self.rx.block_count;
        }
        if dry && self.rx_full_seen {
            self.collect_kernel_drops();
            self.rx_full_seen = false;
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
    ///
    /// The kernel's count of the frames it dropped for a full ring
    /// (`PACKET_STATISTICS`, cleared on read) is read at most once a call:
    /// after a batch in which a frame said `TP_STATUS_LOSING` (the kernel
    /// sets it on the frames it writes while its count is not zero), and
    /// when the ring runs dry after it was seen full. The second is what
    /// makes the count whole: the frames dropped after the last frame the
    /// kernel wrote are said by no frame, and on a queue that receives
    /// nothing more they stayed in the kernel (e2e test_overload's drop
    /// accounting, the queue its closing ping did not reach).
    fn recv_frames(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let mut n = 0;
        let mut bytes = 0u64;
        let mut losing = false;
        let mut dry = false;
        let per_block = self.rx.block_size / self.rx.frame_size;
        let slot = |i: usize| i / per_block * self.rx.block_size + i % per_block * self.rx.frame_size;
        // Full: our slot and the one before it (the last we gave back) are
        // both the user's, so the kernel wrote a whole lap and waits for our
        // slot, dropping what comes meanwhile.
        let prev = (self.block + self.rx.frame_count - 1) % self.rx.frame_count;
        if self.rx_ring.status(slot(self.block) + H2_STATUS).load(Ordering::Acquire) & TP_STATUS_USER != 0
            && self.rx_ring.status(slot(prev) + H2_STATUS).load(Ordering::Acquire) & TP_STATUS_USER != 0
        {
            self.rx_full_seen = true;
        }
        while n < max {
            let h = slot(self.block);
            let st = self.rx_ring.status(h + H2_STATUS).load(Ordering::Acquire);
            if st & TP_STATUS_USER == 0 {
                dry = true;
                break;
            }
            losing |= st & TP_STATUS_LOSING != 0;
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
            self.block = (self.block + 1) % self.rx.frame_count;
        }
        if losing || (dry && self.rx_full_seen) {
            self.collect_kernel_drops();
        }
        if dry {
            self.rx_full_seen = false;
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
