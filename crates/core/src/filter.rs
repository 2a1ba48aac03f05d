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

/// What the filter decided about a packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Dropped; the filter has counted it (and logged it if asked).
    Drop,
}

/// Packets the filter wants sent in answer (a TCP RST, an ICMP error for
/// `block return`): complete IPv4 packets, routed by the stack like any
/// packet the router originates.
pub type FilterReplies = Vec<PacketBuf>;

/// Where the filter gets buffers for replies; the worker's pool.
pub trait BufferSource {
    fn alloc(&mut self) -> Option<PacketBuf>;
}

/// A packet filter. Called once per packet per hook, on the worker's thread;
/// it must not block and should not allocate in the steady state.
pub trait PacketFilter: Send + Sync {
    /// `pkt.data()` starts at the IPv4 header; `worker` is the calling
    /// worker's id (for per-worker counters); `now` is the batch's time.
    fn test(
        &self,
        worker: usize,
        now: Instant,
        dir: Direction,
        ifp: &Interface,
        pkt: &mut PacketBuf,
        bufs: &mut dyn BufferSource,
        replies: &mut FilterReplies,
    ) -> Verdict;
}
