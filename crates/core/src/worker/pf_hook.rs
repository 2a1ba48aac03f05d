//! The glue to the filter's hooks: pf in / pf out over a batch in place
//! (`filter_batch`), what a decision means for the packet (`decided`),
//! pf out for a packet the router sends itself (`local_out_filter`), and
//! the worker's buffer pools as the filter sees them. Both families go
//! through the same hooks; what differs is counted or sent by family.

use super::*;

/// `v` as `n` decisions for a filter call (capacity kept: no allocation
/// once it has held a batch).
pub(super) fn decisions_for(v: &mut Vec<Decision>, n: usize) -> &mut [Decision] {
    v.clear();
    v.resize(n, Decision::Consumed);
    v
}

/// Whether the packet's version nibble says IPv6.
#[inline]
fn is_ip6(p: &PacketBuf) -> bool {
    p.data().first().is_some_and(|&b| b >> 4 == 6)
}

/// The worker's pools as the filter sees them.
struct Pools<'a> {
    small: &'a mut PacketPool,
    large: &'a mut PacketPool,
}

impl BufferSource for Pools<'_> {
    fn alloc(&mut self) -> Option<PacketBuf> {
        self.small.alloc()
    }
    fn alloc_large(&mut self) -> Option<PacketBuf> {
        self.large.alloc()
    }
    fn free(&mut self, p: PacketBuf) {
        if p.capacity() == self.small.buf_size() {
            self.small.free(p)
        } else {
            self.large.free(p)
        }
    }
}

/// The hooks' scratch: the filter's replies (block return) and the
/// decisions of one call (capacity kept between batches).
pub(super) struct HookScratch {
    pub(super) replies: Vec<PacketBuf>,
    pub(super) decisions: Vec<Decision>,
}

impl HookScratch {
    pub(super) fn new() -> Self {
        HookScratch { replies: Vec::with_capacity(16), decisions: Vec::with_capacity(BATCH) }
    }
}

impl WorkerState {
    /// Runs the filter over a batch in place (`decisions` as long as
    /// `pkts`); the replies it asks for are sent (an IPv6 one scoped to
    /// `ifp`, for a link-local destination).
    pub(super) fn filter_batch(
        &mut self,
        cx: &Ctx,
        f: &FilterSlot,
        dir: Direction,
        ifp: &Interface,
        pkts: &mut [Option<PacketBuf>],
        decisions: &mut [Decision],
    ) {
        let mut replies = std::mem::take(&mut self.hook.replies);
        let mut src = Pools { small: &mut self.pool, large: &mut self.large_pool };
        f.0.test_batch(self.id, cx.now, dir, ifp, pkts, decisions, &mut src, &mut replies);
        for r in replies.drain(..) {
            if is_ip6(&r) {
                self.ip6_output(cx, r, Some(ifp.index()));
            } else {
                self.ip_output(cx, r);
            }
        }
        self.hook.replies = replies;
    }

    /// The packet in `slot` if the filter passed it; a blocked one is
    /// counted and freed.
    #[inline]
    pub(super) fn decided(&mut self, cx: &Ctx, slot: &mut Option<PacketBuf>, d: Decision) -> Option<PacketBuf> {
        let p = slot.take()?;
        match d {
            Decision::Pass => Some(p),
            Decision::Drop => {
                if is_ip6(&p) {
                    cx.stats.ip6.filtered.inc();
                } else {
                    cx.stats.ip.filtered.inc();
                }
                self.free(p);
                None
            }
            // Consumed empties its slot; a filter that says so and leaves
            // a buffer gets it freed, not forwarded.
            Decision::Consumed => {
                self.free(p);
                None
            }
        }
    }

    /// pf out on `ifp` for a packet the router originates, as OpenBSD's
    /// ip_output calls pf_test(PF_OUT) before fragmenting; one packet at a
    /// time (a cold path). The filter's own replies (`PF_GENERATED`) never
    /// get here. The packet if the filter passed it.
    #[cold]
    pub(super) fn local_out_filter(
        &mut self,
        cx: &Ctx,
        f: &FilterSlot,
        ifp: &Interface,
        p: PacketBuf,
    ) -> Option<PacketBuf> {
        // A batch of one on the stack: this may run while a received
        // batch holds the worker's queues. What the filter answers with
        // is marked generated, so sending it does not come back here.
        let mut slot = [Some(p)];
        let mut d = [Decision::Consumed];
        self.filter_batch(cx, f, Direction::Out, ifp, &mut slot, &mut d);
        self.decided(cx, &mut slot[0], d[0])
    }

    /// af-to (pf's PF_AFRT after pf in): the packet is in the other
    /// family now and goes on as that family's input path takes a packet
    /// pf in passed (routed in its table, pf out on the way out).
    #[cold]
    pub(super) fn af_to_in(&mut self, cx: &Ctx, ifp: &Arc<Interface>, mut p: PacketBuf) {
        p.meta.pf_route = RouteDecision::None;
        if is_ip6(&p) {
            self.ip6_input_translated(cx, ifp, p);
        } else {
            self.ip_input_filtered(cx, ifp, p, false);
        }
    }
}
