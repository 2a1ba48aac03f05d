//! The link abstraction: how frames get in and out of an interface.
//!
//! An interface has one or more queues; worker `w` uses queue
//! `w % queues`. Implementations: `virtual` (in memory, here) and the OS links
//! of `softnet-io` (TAP, AF_PACKET).

use crate::packet::{PacketBuf, PacketPool};

/// One queue of a link, owned by at most one worker at a time (it sits in a
/// mutex inside the interface; a worker takes it once per batch).
pub trait LinkQueue: Send {
    /// Receives up to `max` frames into buffers from `pool`, appending them
    /// to `out` (whose capacity the caller reserved). Returns how many.
    /// Never blocks.
    fn recv(&mut self, pool: &mut PacketPool, out: &mut Vec<PacketBuf>, max: usize) -> usize;

    /// `recv` for a link whose frames may be longer than `pool`'s buffers
    /// (a TAP with receive offload hands over TCP super-frames of up to
    /// 64 KB): those go into buffers from `large`, whole, as
    /// `mflags::TSO` packets (LRO). A link without it is `recv`.
    fn recv_mixed(
        &mut self,
        pool: &mut PacketPool,
        large: &mut PacketPool,
        out: &mut Vec<PacketBuf>,
        max: usize,
    ) -> usize {
        let _ = large;
        self.recv(pool, out, max)
    }

    /// Transmits and drains `frames`, returning their buffers to `pool`.
    /// Returns how many were accepted by the link; the rest were dropped
    /// (the caller counts them as output errors).
    fn send(&mut self, pool: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize;

    /// `send` for frames some of which may be in `large` buffers (TCP
    /// super-segments, `mflags::TSO`, staged only for a link whose
    /// `tso_max` is not 0): those go back to `large`. A link without
    /// segmentation offload never gets one.
    fn send_mixed(&mut self, pool: &mut PacketPool, large: &mut PacketPool, frames: &mut Vec<PacketBuf>) -> usize {
        let _ = large;
        self.send(pool, frames)
    }

    /// The longest IPv4 packet of a TCP super-segment the link takes and
    /// has cut into segments (segmentation offload: a TAP with the
    /// virtio-net header); 0 (the default) for none.
    fn tso_max(&self) -> u32 {
        0
    }

    /// Frames the link itself lost on receive, which the stack never saw:
    /// `errors` (too long for a buffer, truncated, read errors) and
    /// `dropped` (no buffer, or the kernel's ring overflowed). Added to the
    /// interface's input errors and drops (`netstat -i` Ifail and Idrop).
    fn rx_losses(&self) -> RxLosses {
        RxLosses::default()
    }

    /// A file descriptor that becomes readable when frames wait, so an idle
    /// worker can sleep in poll(2). `None` for in-memory links.
    fn poll_fd(&self) -> Option<i32> {
        None
    }
}

/// Receive losses a link counted on its own (see `LinkQueue::rx_losses`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxLosses {
    pub errors: u64,
    pub dropped: u64,
}

/// Carrier state of a link as the driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Up,
    Down,
    Unknown,
}
