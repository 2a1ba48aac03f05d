//! The packet filter hook. `core` knows nothing of pf internals: it calls
//! this trait at the pf points of the data path (in on the receiving
//! interface, out on the sending one) and `softnet-pf` implements it.

use crate::iface::Interface;
use crate::packet::PacketBuf;
use crate::time::Instant;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    In,
    Out,
}

/// What the filter decided about a packet it was given.
#[derive(Debug)]
pub enum Verdict {
    /// Go on with this packet (possibly another buffer than the one given:
    /// a datagram reassembled from fragments).
    Pass(PacketBuf),
    /// Blocked; the filter has counted it (and logged it if asked). The
    /// stack frees the buffer.
    Drop(PacketBuf),
    /// The filter kept the packet (a fragment waiting for the rest of its
    /// datagram); nothing more to do.
    Consumed,
}

/// Packets the filter wants sent in answer (a TCP RST, an ICMP error for
/// `block return`): complete IPv4 packets, routed by the stack like any
/// packet the router originates.
pub type FilterReplies = Vec<PacketBuf>;

/// Where the filter gets and returns buffers: the calling worker's pools.
pub trait BufferSource {
    /// A normal buffer (room for one frame).
    fn alloc(&mut self) -> Option<PacketBuf>;
    /// A buffer for a whole IPv4 datagram (64 KiB), for reassembly.
    fn alloc_large(&mut self) -> Option<PacketBuf>;
    /// Returns a buffer (either size).
    fn free(&mut self, p: PacketBuf);
}

/// A packet filter. Called once per packet per hook, on the worker's thread;
/// it must not block and should not allocate in the steady state.
pub trait PacketFilter: Send + Sync {
    /// `pkt.data()` starts at the IPv4 header (validated: version, lengths,
    /// header checksum); `worker` is the calling worker's id (for
    /// per-worker counters); `now` is the batch's time.
    #[allow(clippy::too_many_arguments)]
    fn test(
        &self,
        worker: usize,
        now: Instant,
        dir: Direction,
        ifp: &Interface,
        pkt: PacketBuf,
        bufs: &mut dyn BufferSource,
        replies: &mut FilterReplies,
    ) -> Verdict;

    /// Housekeeping from the control thread about once a second: expire
    /// states and fragments.
    fn tick(&self, _now: Instant) {}

    /// How many `prefetch` rounds the stack should run over a received
    /// batch before processing it (0: none).
    fn prefetch_rounds(&self) -> u32 {
        0
    }

    /// A hint before a batch is processed: `ip` is what follows the
    /// Ethernet header of one received frame (not validated; it may not
    /// even be IPv4) that will go through the `In` hook of `ifp`. The
    /// stack calls round 0 for every frame of the batch, then round 1,
    /// and so on, so each round's memory loads overlap over the batch
    /// instead of stalling one packet at a time. Must only read, and must
    /// not fail on any input.
    fn prefetch(&self, _ifp: &Interface, _ip: &[u8], _round: u32) {}
}
