//! The packet filter hook. `core` knows nothing of pf internals: it calls
//! this trait at the pf points of the data path (in on the receiving
//! interface, out on the sending one, for forwarded packets and for those
//! the router sends itself) and `softnet-pf` implements it.

use crate::iface::{Interface, WeakIf};
use crate::packet::{PacketBuf, PacketData, PacketMeta};
use crate::time::Instant;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    In,
    Out,
}

/// Where the filter wants a packet it passed sent, other than where the
/// routing table would send it: pf's `route-to`, `reply-to` and `dup-to`
/// (pf.c `pf_route`). The filter leaves it in `PacketMeta::pf_route`; the
/// stack acts on it right after the hook and clears it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum RouteDecision {
    /// Routed by its destination, as usual.
    #[default]
    None,
    /// Send the packet to this next hop instead. After pf in the stack
    /// decrements the TTL (time exceeded when it runs out), runs pf out on
    /// the next hop's interface and sends it there; after pf out it sends
    /// it there without another pf out. No route to the next hop, or its
    /// interface down or gone: host unreachable and an `ip.noroute` drop.
    To(NextHop),
    /// Send a copy to this next hop (no pf out on the copy, never an ICMP
    /// error about it); the packet itself goes its way.
    Dup(NextHop),
    /// `To` for an IPv6 packet: its next hop's address is the buffer's
    /// `PacketData::pf_hop6` (16 bytes do not fit in the metadata beside
    /// the interface: `PacketMeta` stays 48 bytes), on the interface
    /// given or else reached by the IPv6 route to it (pf.c `pf_route6`).
    To6(Option<WeakIf>),
    /// `Dup` for an IPv6 packet; the address as for `To6`.
    Dup6(Option<WeakIf>),
    /// pf in translated the packet into the other family (`af-to`, pf's
    /// PF_AFRT): the stack routes it in that family's table from there,
    /// as its input path does after pf in (pf out on the way out).
    AfTo,
    /// `divert-packet port N` (pf_test's divert_packet / divert6_packet):
    /// the packet goes to the divert(4) socket bound to this port instead
    /// of on its way; with no socket there it is dropped and counted
    /// (`divert.noport`). What the socket's program writes back is
    /// re-injected in the same direction (`crate::sock::divsock`).
    DivertPacket(u16),
}

/// A `RouteDecision`'s next hop: an address, reached by the route to it
/// (OpenBSD since 6.9: `rtalloc_mpath(rt_addr)`), or on a named interface
/// (`route-to (if addr)`, pf's `rt_kif`: the address is taken to be on
/// that interface's link, no route lookup).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub addr: Ipv4Addr,
    pub ifp: Option<WeakIf>,
}

impl NextHop {
    /// `addr`, reached by the route to it.
    pub fn routed(addr: Ipv4Addr) -> NextHop {
        NextHop { addr, ifp: None }
    }
    /// `addr` on the link of `ifp`.
    pub fn on(ifp: WeakIf, addr: Ipv4Addr) -> NextHop {
        NextHop { addr, ifp: Some(ifp) }
    }
}

impl PacketData {
    /// Leaves a routing decision to an IPv6 next hop `addr` (on `ifp`, or
    /// by the route to it) in the packet: `To6`, or `Dup6` when `dup`.
    pub fn set_route6(&mut self, dup: bool, addr: Ipv6Addr, ifp: Option<WeakIf>) {
        self.pf_hop6 = addr;
        self.meta.pf_route = if dup { RouteDecision::Dup6(ifp) } else { RouteDecision::To6(ifp) };
    }
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

/// What the filter decided about a packet it was handed in place
/// (`test_batch`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go on with the packet in the slot (possibly another buffer than the
    /// one given: a datagram reassembled from fragments).
    Pass,
    /// Blocked; the filter has counted it. The stack frees the buffer.
    Drop,
    /// The filter took the packet (a fragment waiting for the rest of
    /// its datagram); the slot is empty.
    Consumed,
}

/// Packets the filter wants sent in answer (a TCP RST, an ICMP error for
/// `block return`): complete IPv4 packets, routed by the stack like any
/// packet the router originates. The filter marks them
/// `mflags::PF_GENERATED`, and the stack then sends them without calling
/// the filter's out hook (pf's `PF_TAG_GENERATED`).
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
    /// `pkt.data()` starts at the IP header, IPv4 (validated: version,
    /// lengths, header checksum) or IPv6 (the version nibble tells; the
    /// filter checks the rest); `worker` is the calling worker's id (for
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

    /// pf's `divert-to` for a packet pf in marked `mflags::PF_DIVERTED`
    /// that no connection takes: the address of the listening socket it
    /// goes to (in_pcblookup_listen's divert key: that exact address, no
    /// wildcard). `None` for `divert-reply` (only a connection takes its
    /// packets) or when the diverting rule is gone. Called only for such
    /// packets (a SYN and the ACK completing its handshake).
    fn divert_to(&self, _meta: &PacketMeta) -> Option<SocketAddr> {
        None
    }

    /// Housekeeping from the control thread about once a second: expire
    /// states and fragments.
    fn tick(&self, _now: Instant) {}

    /// `tick`, with the buffers it lets go handed to `bufs` (back to the
    /// workers' pools; `bufs` allocates nothing). The stack calls this one.
    fn tick_recycling(&self, now: Instant, _bufs: &mut dyn BufferSource) {
        self.tick(now)
    }

    /// The hook over a batch of packets that all go through `dir` of `ifp`
    /// (the `In` hook over one received batch, the `Out` hook over the
    /// batch's forwarded packets leaving by one interface), in order, in
    /// place: `decisions[i]` is set for `pkts[i]` (`Consumed` empties the
    /// slot; a `Pass` may leave another buffer in it, as `test` may
    /// return). One call per batch lets a filter check its configuration
    /// once and overlap the memory loads of the batch's state lookups
    /// (VPP-style) instead of stalling one packet at a time, and no
    /// packet is moved in and out of the call. The default calls `test`
    /// per packet.
    #[allow(clippy::too_many_arguments)]
    fn test_batch(
        &self,
        worker: usize,
        now: Instant,
        dir: Direction,
        ifp: &Interface,
        pkts: &mut [Option<PacketBuf>],
        decisions: &mut [Decision],
        bufs: &mut dyn BufferSource,
        replies: &mut FilterReplies,
    ) {
        for (slot, d) in pkts.iter_mut().zip(decisions.iter_mut()) {
            let Some(p) = slot.take() else {
                *d = Decision::Consumed;
                continue;
            };
            *d = match self.test(worker, now, dir, ifp, p, bufs, replies) {
                Verdict::Pass(p) => {
                    *slot = Some(p);
                    Decision::Pass
                }
                Verdict::Drop(p) => {
                    *slot = Some(p);
                    Decision::Drop
                }
                Verdict::Consumed => Decision::Consumed,
            };
        }
    }
}
