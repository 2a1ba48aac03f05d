//! AF_PACKET's shared rings (`Documentation/networking/packet_mmap.rst`,
//! `net/packet/af_packet.c`): the frame header layouts of TPACKET_V2 and
//! V3, the mapping, and how an RX ring of a given memory is cut into V2
//! slots or V3 blocks ([`rx_geometry`]).

use crate::packet::RxRing;
use crate::IoError;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::AtomicU32;

// `struct tpacket_block_desc` / `tpacket_hdr_v1` field offsets.
pub(crate) const BD_BLOCK_STATUS: usize = 8;
pub(crate) const BD_NUM_PKTS: usize = 12;
pub(crate) const BD_OFFSET_TO_FIRST_PKT: usize = 16;
// `struct tpacket3_hdr` field offsets.
pub(crate) const H3_NEXT_OFFSET: usize = 0;
pub(crate) const H3_SNAPLEN: usize = 12;
pub(crate) const H3_LEN: usize = 16;
pub(crate) const H3_STATUS: usize = 20;
pub(crate) const H3_MAC: usize = 24;
pub(crate) const H3_RXHASH: usize = 28;
pub(crate) const H3_VLAN_TCI: usize = 32;
pub(crate) const H3_VLAN_TPID: usize = 36;
// `struct tpacket2_hdr` field offsets; its size, aligned, is where the
// `sockaddr_ll` and then the frame (at `tp_mac`) follow.
pub(crate) const H2_STATUS: usize = 0;
pub(crate) const H2_LEN: usize = 4;
pub(crate) const H2_SNAPLEN: usize = 8;
pub(crate) const H2_MAC: usize = 12;
pub(crate) const H2_VLAN_TCI: usize = 24;
pub(crate) const H2_VLAN_TPID: usize = 26;
/// Where the network header of a frame lands in a V2 RX slot (`netoff` in
/// `tpacket_rcv`: `TPACKET_ALIGN(TPACKET2_HDRLEN + 16)`, TPACKET2_HDRLEN
/// being the header and a `sockaddr_ll`, 52); the frame's Ethernet header
/// sits just before it. A slot holds this plus the MTU and a VLAN tag.
pub(crate) const RX2_NETOFF: usize = 80;
/// `TPACKET_ALIGNMENT`: a V2 slot's size is a multiple of it.
const TPACKET_ALIGNMENT: usize = 16;
const VLAN_HLEN: usize = 4;
/// V2 slots come in blocks of this size (or of the next power of two
/// above one slot, for an MTU near 64 KiB): the kernel allocates a block as
/// 2^order pages (`alloc_pg_vec`), so a power of two wastes only the
/// block's tail after its last whole slot (592 B of 64 KiB at MTU 1500,
/// 1,920 B at 9000).
const RX2_BLOCK: usize = 64 << 10;
/// A V3 ring's nominal frame size: V3 packs frames of any length into its
/// blocks, so this only fixes the kernel's `tp_frame_nr` bookkeeping.
const RX3_FRAME: usize = 2048;

/// Where a frame header's fields lie (TPACKET_V2 or V3).
pub(crate) struct HdrLayout {
    pub(crate) status: usize,
    pub(crate) len: usize,
    pub(crate) snaplen: usize,
    pub(crate) mac: usize,
    pub(crate) vlan_tci: usize,
    /// V3's `tp_vlan_tci` is a u32, V2's a u16.
    pub(crate) tci_u32: bool,
    pub(crate) vlan_tpid: usize,
    pub(crate) rxhash: Option<usize>,
}

pub(crate) const V2: HdrLayout = HdrLayout {
    status: H2_STATUS,
    len: H2_LEN,
    snaplen: H2_SNAPLEN,
    mac: H2_MAC,
    vlan_tci: H2_VLAN_TCI,
    tci_u32: false,
    vlan_tpid: H2_VLAN_TPID,
    rxhash: None,
};

pub(crate) const V3: HdrLayout = HdrLayout {
    status: H3_STATUS,
    len: H3_LEN,
    snaplen: H3_SNAPLEN,
    mac: H3_MAC,
    vlan_tci: H3_VLAN_TCI,
    tci_u32: true,
    vlan_tpid: H3_VLAN_TPID,
    rxhash: Some(H3_RXHASH),
};

/// An mmap'ed ring, unmapped on drop.
pub(crate) struct Ring {
    base: *mut u8,
    len: usize,
}

impl Ring {
    pub(crate) fn map(fd: &OwnedFd, len: usize, dev: &str) -> Result<Ring, IoError> {
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
    pub(crate) fn status(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off + 4 <= self.len);
        // SAFETY: in bounds, 4-aligned (ring headers are 16-aligned), and the
        // kernel only accesses it as a u32.
        unsafe { &*(self.base.add(off) as *const AtomicU32) }
    }

    #[inline]
    pub(crate) fn u32_at(&self, off: usize) -> u32 {
        debug_assert!(off + 4 <= self.len);
        // SAFETY: in bounds; the owner of the slot (us, by its status) reads it.
        unsafe { std::ptr::read_volatile(self.base.add(off) as *const u32) }
    }

    #[inline]
    pub(crate) fn u16_at(&self, off: usize) -> u16 {
        debug_assert!(off + 2 <= self.len);
        // SAFETY: as u32_at.
        unsafe { std::ptr::read_volatile(self.base.add(off) as *const u16) }
    }

    /// The bytes `off..off+len` (clamped to the ring by the caller).
    #[inline]
    pub(crate) fn bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(off + len <= self.len, "frame outside the ring");
        // SAFETY: in bounds; we own this slot/block until we hand it back.
        unsafe { std::slice::from_raw_parts(self.base.add(off), len) }
    }

    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn bytes_mut(&self, off: usize, len: usize) -> &mut [u8] {
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

#[repr(C)]
pub(crate) struct TpacketReq {
    pub(crate) block_size: u32,
    pub(crate) block_nr: u32,
    pub(crate) frame_size: u32,
    pub(crate) frame_nr: u32,
}

#[repr(C)]
pub(crate) struct TpacketReq3 {
    pub(crate) block_size: u32,
    pub(crate) block_nr: u32,
    pub(crate) frame_size: u32,
    pub(crate) frame_nr: u32,
    pub(crate) retire_blk_tov: u32,
    pub(crate) sizeof_priv: u32,
    pub(crate) feature_req_word: u32,
}

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as usize
}

/// How one queue's RX ring is cut: `block_count` blocks of `block_size`
/// bytes; for `Frames` (V2) `frame_count` slots of `frame_size` bytes, each
/// holding one frame (`RX2_NETOFF` + the MTU + a VLAN tag, 16-aligned);
/// for `Blocks` (V3) the frames are packed, each taking its length plus a
/// 96-byte header, 16-aligned (160 B for a 64-byte SYN, 1,600 B for 1,514).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RxGeometry {
    pub(crate) block_size: usize,
    pub(crate) block_count: usize,
    pub(crate) frame_size: usize,
    pub(crate) frame_count: usize,
}

impl RxGeometry {
    /// The ring's memory (what the kernel allocates and we map).
    pub(crate) fn bytes(&self) -> usize {
        self.block_size * self.block_count
    }
}

/// Cuts an RX ring of `ring_bytes` (rounded down to whole blocks, at least
/// one for V2) for a device of `mtu`; `v3_block` is the V3 block size.
pub(crate) fn rx_geometry(
    kind: RxRing,
    ring_bytes: usize,
    v3_block: usize,
    mtu: usize,
    page: usize,
) -> Result<RxGeometry, String> {
    match kind {
        RxRing::Frames => {
            let slot = (RX2_NETOFF + mtu + VLAN_HLEN).next_multiple_of(TPACKET_ALIGNMENT);
            let block = RX2_BLOCK.max(slot.next_power_of_two()).max(page);
            let count = (ring_bytes / block).max(1);
            Ok(RxGeometry {
                block_size: block,
                block_count: count,
                frame_size: slot,
                frame_count: block / slot * count,
            })
        }
        RxRing::Blocks => {
            if v3_block < RX3_FRAME || !v3_block.is_multiple_of(page) {
                return Err(format!("RX block size {v3_block} is not a multiple of the page size {page}"));
            }
            let count = ring_bytes / v3_block;
            if count < 2 {
                return Err(format!("an RX ring of {ring_bytes} B holds fewer than two blocks of {v3_block} B"));
            }
            Ok(RxGeometry {
                block_size: v3_block,
                block_count: count,
                frame_size: RX3_FRAME,
                frame_count: v3_block / RX3_FRAME * count,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn frames_are_slots_sized_for_the_mtu_in_power_of_two_blocks() {
        // MTU 1500: 80 + 1500 + 4 = 1,584 B slots, 41 in a 64 KiB block.
        let g = rx_geometry(RxRing::Frames, 16 * MIB, 256 << 10, 1500, 4096).unwrap();
        assert_eq!(g, RxGeometry { block_size: 64 << 10, block_count: 256, frame_size: 1584, frame_count: 41 * 256 });
        assert_eq!(g.bytes(), 16 * MIB);
        // MTU 9000: 9,088 B slots (not 16 KiB), 7 a block.
        let g = rx_geometry(RxRing::Frames, 16 * MIB, 256 << 10, 9000, 4096).unwrap();
        assert_eq!((g.frame_size, g.frame_count), (9088, 7 * 256));
        // A slot larger than 64 KiB gets a block of its own power of two.
        let g = rx_geometry(RxRing::Frames, MIB, 256 << 10, 65535, 4096).unwrap();
        assert_eq!((g.block_size, g.block_count, g.frame_count), (128 << 10, 8, 8));
        // Less memory than a block: one block.
        let g = rx_geometry(RxRing::Frames, 4096, 256 << 10, 1500, 4096).unwrap();
        assert_eq!((g.block_count, g.frame_count), (1, 41));
        // Every slot is 16-aligned and the blocks hold whole slots.
        for mtu in [68, 576, 1500, 1501, 4000, 9000, 16000] {
            let g = rx_geometry(RxRing::Frames, 4 * MIB, 256 << 10, mtu, 4096).unwrap();
            assert_eq!(g.frame_size % TPACKET_ALIGNMENT, 0, "{mtu}");
            assert!(g.frame_size >= RX2_NETOFF + mtu, "{mtu}");
            assert!(g.block_size.is_power_of_two() && g.block_size / g.frame_size >= 1, "{mtu}");
            assert_eq!(g.frame_count, g.block_size / g.frame_size * g.block_count, "{mtu}");
        }
    }

    #[test]
    fn blocks_are_whole_blocks_of_the_memory() {
        let g = rx_geometry(RxRing::Blocks, 4 * MIB, 256 << 10, 1500, 4096).unwrap();
        assert_eq!(g, RxGeometry { block_size: 256 << 10, block_count: 16, frame_size: 2048, frame_count: 2048 });
        let g = rx_geometry(RxRing::Blocks, 4 * MIB + 1000, 256 << 10, 9000, 4096).unwrap();
        assert_eq!(g.block_count, 16, "rounded down to whole blocks");
        let e = rx_geometry(RxRing::Blocks, 300 << 10, 256 << 10, 1500, 4096).unwrap_err();
        assert!(e.contains("fewer than two blocks"), "{e}");
        let e = rx_geometry(RxRing::Blocks, 4 * MIB, 5000, 1500, 4096).unwrap_err();
        assert!(e.contains("not a multiple of the page size"), "{e}");
    }
}
