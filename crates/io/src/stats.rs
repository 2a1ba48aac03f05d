//! Per-queue counters of an OS link.
//!
//! Each queue owns one `LinkStats` (cache-line aligned); only the worker
//! holding the queue writes it, with plain relaxed load + store (no locked
//! instruction on the data path). Anyone may read a [`LinkCounters`]
//! snapshot through the `Arc` the queue hands out.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
#[repr(align(64))]
pub struct LinkStats {
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Frames longer than a pool buffer (e.g. GRO/GSO super-frames): dropped.
    pub rx_oversize: AtomicU64,
    /// Frames the kernel cut short in the ring (snaplen < len): dropped.
    pub rx_truncated: AtomicU64,
    /// Receives cut short because the pool had no buffer, the frame left
    /// where it was (the AF_PACKET or AF_XDP ring, the TAP's queue) for the
    /// next batch: a stall, not a loss, so not an input drop.
    pub rx_nobuf: AtomicU64,
    /// Frames already read (the TAP's io_uring reader) and dropped for
    /// want of a pool buffer: input drops.
    pub rx_nobuf_drops: AtomicU64,
    /// Frames the kernel dropped before we saw them (ring full).
    pub rx_kernel_drops: AtomicU64,
    /// CHECKSUM_PARTIAL frames whose TCP/UDP checksum we filled in.
    pub rx_csum_completed: AtomicU64,
    /// CHECKSUM_PARTIAL frames we could not complete (not IPv4/IPv6 TCP/UDP):
    /// delivered as they are.
    pub rx_csum_partial: AtomicU64,
    /// Read errors other than "nothing to read".
    pub rx_errors: AtomicU64,
    /// Frames whose virtio-net header was bad (`vnet::VnetError`: an
    /// unknown gso_type, gso_size 0, hdr_len or checksum offsets outside
    /// the frame), or a segmentation frame that could not be cut: dropped,
    /// and counted in `rx_errors` too (netstat -i's Ifail).
    pub rx_vnet_bad: AtomicU64,
    /// Segmentation frames read and cut into segments in software.
    pub rx_gso_cut: AtomicU64,
    /// Segmentation frames read and handed to the stack whole (LRO: TCP
    /// super-frames in large buffers, counted in `rx_frames` too).
    pub rx_gso_frames: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Frames too long for the link (TX ring slot or device): dropped.
    pub tx_oversize: AtomicU64,
    /// Frames dropped because the TX ring (or device queue) was full.
    pub tx_busy: AtomicU64,
    /// Failed writes/sends and frames the kernel rejected.
    pub tx_errors: AtomicU64,
    /// TCP super-frames written whole (counted in `tx_frames` too), for
    /// the device to cut (segmentation offload).
    pub tx_gso_frames: AtomicU64,
}

/// A plain copy of a queue's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub rx_oversize: u64,
    pub rx_truncated: u64,
    pub rx_nobuf: u64,
    pub rx_nobuf_drops: u64,
    pub rx_kernel_drops: u64,
    pub rx_csum_completed: u64,
    pub rx_csum_partial: u64,
    pub rx_errors: u64,
    pub rx_vnet_bad: u64,
    pub rx_gso_cut: u64,
    pub rx_gso_frames: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub tx_oversize: u64,
    pub tx_busy: u64,
    pub tx_errors: u64,
    pub tx_gso_frames: u64,
}

impl LinkStats {
    /// What the stack counts as input errors (frames received but unusable)
    /// and input drops (frames lost for want of room), for `netstat -i`.
    pub fn rx_losses(&self) -> softnet_core::link::RxLosses {
        let c = self.snapshot();
        softnet_core::link::RxLosses {
            errors: c.rx_oversize + c.rx_truncated + c.rx_errors,
            dropped: c.rx_nobuf_drops + c.rx_kernel_drops,
        }
    }

    pub fn snapshot(&self) -> LinkCounters {
        LinkCounters {
            rx_frames: self.rx_frames.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            rx_oversize: self.rx_oversize.load(Relaxed),
            rx_truncated: self.rx_truncated.load(Relaxed),
            rx_nobuf: self.rx_nobuf.load(Relaxed),
            rx_nobuf_drops: self.rx_nobuf_drops.load(Relaxed),
            rx_kernel_drops: self.rx_kernel_drops.load(Relaxed),
            rx_csum_completed: self.rx_csum_completed.load(Relaxed),
            rx_csum_partial: self.rx_csum_partial.load(Relaxed),
            rx_errors: self.rx_errors.load(Relaxed),
            rx_vnet_bad: self.rx_vnet_bad.load(Relaxed),
            rx_gso_cut: self.rx_gso_cut.load(Relaxed),
            rx_gso_frames: self.rx_gso_frames.load(Relaxed),
            tx_frames: self.tx_frames.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            tx_oversize: self.tx_oversize.load(Relaxed),
            tx_busy: self.tx_busy.load(Relaxed),
            tx_errors: self.tx_errors.load(Relaxed),
            tx_gso_frames: self.tx_gso_frames.load(Relaxed),
        }
    }
}

impl std::ops::AddAssign for LinkCounters {
    fn add_assign(&mut self, o: Self) {
        self.rx_frames += o.rx_frames;
        self.rx_bytes += o.rx_bytes;
        self.rx_oversize += o.rx_oversize;
        self.rx_truncated += o.rx_truncated;
        self.rx_nobuf += o.rx_nobuf;
        self.rx_nobuf_drops += o.rx_nobuf_drops;
        self.rx_kernel_drops += o.rx_kernel_drops;
        self.rx_csum_completed += o.rx_csum_completed;
        self.rx_csum_partial += o.rx_csum_partial;
        self.rx_errors += o.rx_errors;
        self.rx_vnet_bad += o.rx_vnet_bad;
        self.rx_gso_cut += o.rx_gso_cut;
        self.rx_gso_frames += o.rx_gso_frames;
        self.tx_frames += o.tx_frames;
        self.tx_bytes += o.tx_bytes;
        self.tx_oversize += o.tx_oversize;
        self.tx_busy += o.tx_busy;
        self.tx_errors += o.tx_errors;
        self.tx_gso_frames += o.tx_gso_frames;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receive stalled for want of a buffer leaves its frame to be read
    /// later: not an input drop. A frame read and then dropped for want of
    /// a buffer, or dropped by the kernel, is.
    #[test]
    fn a_stall_for_a_buffer_is_not_an_input_drop() {
        let s = LinkStats::default();
        s.rx_nobuf.store(5, Relaxed);
        s.rx_nobuf_drops.store(2, Relaxed);
        s.rx_kernel_drops.store(3, Relaxed);
        s.rx_oversize.store(1, Relaxed);
        s.rx_truncated.store(1, Relaxed);
        let l = s.rx_losses();
        assert_eq!((l.errors, l.dropped), (2, 5));
        let mut sum = s.snapshot();
        sum += s.snapshot();
        assert_eq!((sum.rx_nobuf, sum.rx_nobuf_drops), (10, 4));
    }
}
