//! Packet buffers: fixed-size storage from a per-worker pool, allocated at
//! start, with the packet's metadata inline (never in a separate tag).
//!
//! A `PacketBuf` owns its storage, so a buffer can move between workers (an
//! ARP hold queue flushed by another worker); pools accept any buffer of
//! their size and free surplus ones, so the steady state allocates nothing.

use crate::filter::RouteDecision;
use crate::iface::IfIndex;

/// Bytes kept free in front of a received frame so headers can be prepended
/// (a VLAN tag, an ICMP error's new IP header) without moving the payload.
pub const HEADROOM: usize = 128;

/// Default storage per buffer: headroom plus an Ethernet frame of MTU 1500
/// with one 802.1Q tag, rounded up.
pub const DEFAULT_BUF_SIZE: usize = 2048;

/// Checksum facts learned about a packet, so nobody verifies twice.
pub mod csum_flags {
    /// The IPv4 header checksum was verified on input.
    pub const IP_HDR_OK: u8 = 1 << 0;
    /// The transport checksum was verified (or offload vouched for it).
    pub const L4_OK: u8 = 1 << 1;
}

/// Packet flags (OpenBSD's `m_flags`).
pub mod mflags {
    /// Received as a link-level broadcast or multicast (`M_BCAST|M_MCAST`):
    /// never forwarded.
    pub const LINK_BCAST: u8 = 1 << 0;
    /// Made by the packet filter itself (a `block return` RST or ICMP
    /// error; pf's `PF_TAG_GENERATED`): it passes the filter's hooks
    /// untested, and an ICMP error about it is marked the same.
    pub const PF_GENERATED: u8 = 1 << 1;
    /// pf in passed the packet under a `divert-to` or `divert-reply`
    /// rule (pf's `PF_TAG_DIVERTED`): it is delivered locally whatever its
    /// destination (pf_ouraddr), to the connection with its 4-tuple or,
    /// for `divert-to`, to the socket listening on the divert address
    /// (`PacketFilter::divert_to`, in_pcblookup_listen's divert key).
    pub const PF_DIVERTED: u8 = 1 << 2;
    /// pf in left its note on the IPv6 packet in `PacketData::pf_note6`
    /// (cleared with the rest of the metadata when the buffer is reused,
    /// so a note is never older than the packet).
    pub const PF_NOTE6: u8 = 1 << 3;
    /// A TCP super-segment, IPv4 or IPv6 (`Tcb::output_tso`, `crate::gso`): more
    /// payload than one segment, to be cut into segments of
    /// `PacketMeta::pf_frag_max` payload bytes (its MSS: the gso size) by
    /// a device with segmentation offload (`Interface::tso_max`) or by
    /// `gso::segment_tcp`; its TCP checksum is left to whoever cuts it.
    pub const TSO: u8 = 1 << 4;
    /// Bits 5-7: the packet's priority (`PacketMeta::prio`).
    pub(crate) const PRIO_SHIFT: u32 = 5;
    pub(crate) const PRIO_MASK: u8 = 0b111 << PRIO_SHIFT;
}

/// Packet priorities (OpenBSD's `m_pkthdr.pf.prio`), 0 lowest to 7.
pub mod prio {
    /// What a packet has until something sets another (IFQ_DEFPRIO).
    pub const IFQ_DEFPRIO: u8 = 3;
    /// The highest (IFQ_MAXPRIO).
    pub const IFQ_MAXPRIO: u8 = 7;
}

/// Per-packet metadata, carried inline in the buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMeta {
    /// Interface the frame arrived on (an index, never a reference).
    pub rcvif: IfIndex,
    /// Routing table the packet is looked up in.
    pub rtable: u16,
    /// 802.1Q VLAN id the frame carried, 0 if none (0 is no VLAN, only
    /// a priority tag); a u16, not an Option, so `pf_frag_max` fits.
    pub vlan: u16,
    /// Flow hash (from the link or computed), for queue selection. Of a
    /// datagram pf reassembled (`pf_frag_max` not 0): its fragments'
    /// identification, which pf_refragment6 gives the new ones.
    pub flow_hash: u32,
    /// Of an IPv6 datagram pf reassembled (pf_reassemble6's
    /// PACKET_TAG_PF_REASSEMBLED): the largest fragment payload it came
    /// in, so the stack refragments it as pf_refragment6 does after pf
    /// out; of a TCP super-segment (`mflags::TSO`), the MSS it is
    /// cut at; 0 for every other packet. (In what was padding: the
    /// metadata does not grow.)
    pub pf_frag_max: u16,
    /// `csum_flags` bits.
    pub csum: u8,
    /// `mflags` bits.
    pub flags: u8,
    /// pf tag id (0 = none).
    pub pf_tag: u16,
    /// Offset of the network header from the start of `data()`.
    pub l3_off: u16,
    /// pf's handle of the state the packet matched at pf in, for pf out
    /// (OpenBSD's `m_pkthdr.pf.statekey`); opaque to the stack, 0 = none.
    pub pf_link: u64,
    /// pf's routing decision (`route-to`, `reply-to`, `dup-to`), set by the
    /// filter's hook and cleared by the stack when it acts on it.
    pub pf_route: RouteDecision,
}

impl PacketMeta {
    /// The packet's priority, 0..=7: pf's `set prio` sets it, `prio N`
    /// rules match it, and the transmit staging sends higher priorities
    /// first (priq). Three bits of `flags`, so the metadata does not grow;
    /// they hold the priority XOR IFQ_DEFPRIO, so zeroed metadata (every
    /// new or received packet) has the default.
    #[inline]
    pub fn prio(&self) -> u8 {
        ((self.flags & mflags::PRIO_MASK) >> mflags::PRIO_SHIFT) ^ prio::IFQ_DEFPRIO
    }

    /// Sets the priority (values over IFQ_MAXPRIO are cut to three bits;
    /// pf refuses them at load).
    #[inline]
    pub fn set_prio(&mut self, p: u8) {
        let bits = ((p ^ prio::IFQ_DEFPRIO) << mflags::PRIO_SHIFT) & mflags::PRIO_MASK;
        self.flags = (self.flags & !mflags::PRIO_MASK) | bits;
    }
}

/// One packet: a handle (one pointer) on its buffer, as an mbuf pointer
/// is. The packet moves between functions, queues and the filter by that
/// pointer: the storage, the window of it that holds the frame and the
/// metadata (`PacketData`, reached through `Deref`) stay where they are.
pub struct PacketBuf(Box<PacketData>);

/// What a `PacketBuf` points at: storage, the window of it that holds
/// the frame, and metadata.
///
/// Two cache lines, in this order (`repr(C)`, 64-byte aligned): the
/// storage's place and the frame's window with pf's IPv6 note, then the
/// metadata with the IPv6 next hop. Every packet reads both lines (its
/// bytes through the first, its metadata in the second), so pf's note on
/// an IPv6 packet, written by pf in and read by pf out, costs no line of
/// its own (in 136 bytes wherever the allocator put them, as until
/// session 12, the note was mostly on a third line: BENCHMARKS §2,
/// session 13 pf6c). A test keeps it at 128 bytes.
#[repr(C, align(64))]
pub struct PacketData {
    storage: Box<[u8]>,
    /// The frame's start and length in `storage` (u32: a buffer is far
    /// smaller than 4 GiB, `with_capacity` checks it).
    head: u32,
    len: u32,
    /// pf's note on an IPv6 packet from pf in to pf out, valid while
    /// `mflags::PF_NOTE6` is set in `meta`; opaque to the stack and, like
    /// `pf_hop6`, never copied with `meta`.
    pub pf_note6: PfNote6,
    pub meta: PacketMeta,
    /// The IPv6 next hop of a `RouteDecision::To6` / `Dup6` in `meta`
    /// (pf's `st->rt_addr`), beside the metadata rather than in it: only
    /// read when the decision says so, never copied with `meta`.
    pub pf_hop6: std::net::Ipv6Addr,
}

/// What pf in learnt of an IPv6 packet that pf out can use again: the
/// packet's source and destination as pf in saw them (the header's 16
/// bytes each, so that pf out compares them with the header's as they
/// are) and the ids pf's state keys give them (pf's `state::v6ids`,
/// opaque here). pf out uses the ids only for a packet whose addresses
/// are still these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PfNote6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ids: u64,
}

impl std::ops::Deref for PacketBuf {
    type Target = PacketData;
    #[inline(always)]
    fn deref(&self) -> &PacketData {
        &self.0
    }
}

impl std::ops::DerefMut for PacketBuf {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut PacketData {
        &mut self.0
    }
}

impl PacketBuf {
    /// A new buffer with `size` bytes of storage. Only pools and tests call
    /// this: it allocates.
    pub fn with_capacity(size: usize) -> Self {
        assert!(size > HEADROOM, "buffer smaller than its headroom");
        assert!(u32::try_from(size).is_ok(), "buffer of 4 GiB or more");
        PacketBuf(Box::new(PacketData {
            storage: vec![0u8; size].into_boxed_slice(),
            head: HEADROOM as u32,
            len: 0,
            pf_note6: PfNote6::default(),
            meta: PacketMeta::default(),
            pf_hop6: std::net::Ipv6Addr::UNSPECIFIED,
        }))
    }

    /// A buffer holding a copy of `frame` (tests and tools; allocates).
    pub fn from_slice(frame: &[u8]) -> Self {
        let mut p = PacketBuf::with_capacity((HEADROOM + frame.len()).max(DEFAULT_BUF_SIZE));
        p.set_len(frame.len()).expect("sized to fit");
        p.data_mut().copy_from_slice(frame);
        p
    }
}

impl PacketData {
    /// Empties the buffer and its metadata for reuse.
    pub fn reset(&mut self) {
        self.head = HEADROOM as u32;
        self.len = 0;
        self.meta = PacketMeta::default();
    }

    #[inline]
    fn window(&self) -> std::ops::Range<usize> {
        self.head as usize..self.head as usize + self.len as usize
    }

    pub fn data(&self) -> &[u8] {
        &self.storage[self.window()]
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let w = self.window();
        &mut self.storage[w]
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size of the storage behind this buffer.
    pub fn capacity(&self) -> usize {
        self.storage.len()
    }

    /// Largest frame this buffer can hold from its current start.
    pub fn max_len(&self) -> usize {
        self.storage.len() - self.head as usize
    }

    pub fn headroom(&self) -> usize {
        self.head as usize
    }

    /// Sets the frame length (grow or shrink at the tail). Growing exposes
    /// whatever bytes the storage held; callers fill them.
    pub fn set_len(&mut self, len: usize) -> Result<(), BufferTooSmall> {
        if len > self.max_len() {
            return Err(BufferTooSmall);
        }
        // Within the storage, which `with_capacity` keeps under 4 GiB.
        self.len = len as u32;
        Ok(())
    }

    /// Storage from the current start to the end of the buffer, for a
    /// receive path that learns the length after writing.
    pub fn spare_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.head as usize..]
    }

    /// Removes `n` bytes from the front (header stripped).
    pub fn pull_front(&mut self, n: usize) -> Result<(), BufferTooSmall> {
        if n > self.len as usize {
            return Err(BufferTooSmall);
        }
        self.head += n as u32;
        self.len -= n as u32;
        Ok(())
    }

    /// Adds `n` bytes at the front (header prepended); the caller fills them.
    pub fn push_front(&mut self, n: usize) -> Result<(), BufferTooSmall> {
        if n > self.head as usize {
            return Err(BufferTooSmall);
        }
        self.head -= n as u32;
        self.len += n as u32;
        Ok(())
    }

    /// Moves the start of the frame to `HEADROOM` with `len` bytes, for
    /// building a new packet in this buffer.
    pub fn rewind(&mut self, len: usize) -> Result<(), BufferTooSmall> {
        self.head = HEADROOM as u32;
        self.set_len(len)
    }
}

impl core::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PacketBuf").field("len", &self.len).field("meta", &self.meta).finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("packet buffer too small")]
pub struct BufferTooSmall;

/// Buffers that left the pool they came from and found no room in the one
/// they were freed into (a packet allocated on one worker and freed on
/// another: pf's reassembly, a hold queue flushed by another worker's
/// ARP reply) or that the control thread let go (ARP and ND holds that
/// timed out). Shared by a stack's workers: a pool that runs empty takes
/// from it, so no worker's pool shrinks for good.
pub type Spill = std::sync::Arc<crossbeam::queue::ArrayQueue<PacketBuf>>;

/// A spill with room for `cap` buffers.
pub fn new_spill(cap: usize) -> Spill {
    std::sync::Arc::new(crossbeam::queue::ArrayQueue::new(cap.max(1)))
}

/// A worker's free list of buffers. Not shared: each worker owns one.
pub struct PacketPool {
    free: Vec<PacketBuf>,
    buf_size: usize,
    limit: usize,
    /// Where buffers go when this pool is full, and come from when empty.
    spill: Option<Spill>,
    /// Times `alloc` found the pool empty.
    pub exhausted: u64,
    /// The fewest buffers the free list held since the pool was made
    /// (`limit - low` is the peak in use, netstat -m's "peak").
    low: usize,
}

impl PacketPool {
    /// A pool holding `count` buffers of `buf_size` bytes, all allocated now.
    pub fn new(count: usize, buf_size: usize) -> Self {
        let mut free = Vec::with_capacity(count);
        for _ in 0..count {
            free.push(PacketBuf::with_capacity(buf_size));
        }
        PacketPool { free, buf_size, limit: count, spill: None, exhausted: 0, low: count }
    }

    /// `new`, sharing `spill` with the other pools of the stack.
    pub fn with_spill(count: usize, buf_size: usize, spill: Spill) -> Self {
        PacketPool { spill: Some(spill), ..Self::new(count, buf_size) }
    }

    /// A clean buffer, or `None` when the pool is empty (a counted drop for
    /// the caller; never an allocation on the data path).
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        match self.free.pop().or_else(|| self.spill.as_ref()?.pop()) {
            Some(mut p) => {
                // One compare a buffer: the low-water mark netstat -m shows.
                self.low = self.low.min(self.free.len());
                p.reset();
                Some(p)
            }
            None => {
                self.exhausted += 1;
                None
            }
        }
    }

    /// Returns a buffer. Buffers of another size are freed; beyond the
    /// pool's limit (migrated from another worker) they go to the spill.
    #[inline]
    pub fn free(&mut self, p: PacketBuf) {
        if p.capacity() != self.buf_size {
            return;
        }
        if self.free.len() < self.limit {
            self.free.push(p);
        } else if let Some(s) = &self.spill {
            let _ = s.push(p);
        }
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Buffers the pool was made with (its free list's limit).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The fewest free buffers since the pool was made.
    pub fn low_water(&self) -> usize {
        self.low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_stays_48_bytes() {
        assert_eq!(std::mem::size_of::<PacketMeta>(), 48);
    }

    /// Two cache lines: the frame's window and pf's IPv6 note in the
    /// first, the metadata in the second (see `PacketData`).
    #[test]
    fn a_buffers_data_is_two_cache_lines_with_the_note_beside_the_window() {
        use std::mem::{align_of, offset_of, size_of};
        assert_eq!((size_of::<PacketData>(), align_of::<PacketData>()), (128, 64));
        assert!(offset_of!(PacketData, pf_note6) + size_of::<PfNote6>() <= 64);
        assert!(offset_of!(PacketData, len) < 64 && offset_of!(PacketData, meta) >= 64);
        let p = PacketBuf::with_capacity(DEFAULT_BUF_SIZE);
        assert_eq!(&*p as *const PacketData as usize % 64, 0);
    }

    #[test]
    fn pool_recycles_buffers_and_counts_exhaustion() {
        let mut pool = PacketPool::new(2, DEFAULT_BUF_SIZE);
        let a = pool.alloc().unwrap();
        let b = pool.alloc().unwrap();
        assert!(pool.alloc().is_none());
        assert_eq!(pool.exhausted, 1);
        pool.free(a);
        pool.free(b);
        assert_eq!(pool.available(), 2);
        pool.free(PacketBuf::with_capacity(DEFAULT_BUF_SIZE));
        assert_eq!(pool.available(), 2, "surplus buffers are freed, not hoarded");
        assert_eq!((pool.limit(), pool.low_water()), (2, 0), "the low-water mark stays at the peak");
    }

    #[test]
    fn a_buffer_freed_on_another_workers_full_pool_returns_through_the_spill() {
        // Found by the datapath fuzz target: a fragment allocated on worker
        // 0 and freed by worker 1 (whose pool was full) was dropped, and
        // worker 0's pool stayed one short for good.
        let spill = new_spill(4);
        let mut w0 = PacketPool::with_spill(2, DEFAULT_BUF_SIZE, spill.clone());
        let mut w1 = PacketPool::with_spill(2, DEFAULT_BUF_SIZE, spill.clone());
        let a = w0.alloc().unwrap();
        w1.free(a);
        assert_eq!((w0.available(), w1.available(), spill.len()), (1, 2, 1));
        let _b = w0.alloc().unwrap();
        let _c = w0.alloc().expect("the empty pool takes from the spill");
        assert_eq!(spill.len(), 0);
        assert!(w0.alloc().is_none());
        w1.free(PacketBuf::with_capacity(DEFAULT_BUF_SIZE * 2));
        assert_eq!(spill.len(), 0, "buffers of another size are not kept");
    }

    #[test]
    fn push_and_pull_front_move_the_window() {
        let mut p = PacketBuf::from_slice(&[1, 2, 3, 4]);
        p.pull_front(2).unwrap();
        assert_eq!(p.data(), &[3, 4]);
        p.push_front(1).unwrap();
        assert_eq!(p.data(), &[2, 3, 4]);
        assert!(p.pull_front(10).is_err());
        assert!(p.push_front(HEADROOM + 10).is_err());
    }
}
