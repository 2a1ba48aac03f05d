//! TCP super-segments received whole (LRO): a link with receive offload
//! (a TAP with the virtio-net header) hands over its kernel's TSO
//! super-frames as one packet each, `mflags::TSO` with the gso size in
//! `pf_frag_max` and the transport checksum vouched for. IP input and pf
//! in take it whole; a local connection takes it as one segment (one
//! sequence check, one copy into the receive ring, one ACK decision). Any
//! other way it could go (forwarding, pf's route-to / af-to / divert, the
//! host twin) takes plain segments: it is cut here first (`gso.rs`, each
//! segment a whole packet with its checksums), as Linux's GRO'd packets
//! are resegmented before they are forwarded.

use super::*;

impl WorkerState {
    /// Cuts the received super-segment `p` (its IP header at the start,
    /// `mflags::TSO`) into segments of its gso size, each with `p`'s
    /// metadata but neither `TSO` nor the gso size. Returns them in the
    /// worker's scratch vector, which `lro_each` gives back with
    /// `lro_done`. What travels beside the metadata goes with each segment
    /// too: pf's IPv6 next hop (`pf_hop6`: a route-to decided on the whole
    /// frame) and its note (`pf_note6`). A cut that runs out of buffers keeps
    /// what it made (the sender retransmits the rest), counted in
    /// `ip.odropped`.
    fn lro_cut(&mut self, cx: &Ctx, p: PacketBuf) -> Vec<PacketBuf> {
        let mut meta = p.meta;
        let (hop6, note6) = (p.pf_hop6, p.pf_note6);
        meta.flags &= !mflags::TSO;
        let mss = std::mem::take(&mut meta.pf_frag_max) as usize;
        let mut segs = std::mem::take(&mut self.lro_scratch);
        let pool = &mut self.pool;
        let r = crate::gso::segment_tcp(p.data(), 0, mss, || pool.alloc(), |s| segs.push(s));
        self.free(p);
        if r.is_err() {
            cx.stats.ip.odropped.inc();
        }
        for s in segs.iter_mut() {
            s.meta = meta;
            s.pf_hop6 = hop6;
            s.pf_note6 = note6;
        }
        segs
    }

    /// The scratch vector `lro_cut` lent, empty again.
    fn lro_done(&mut self, segs: Vec<PacketBuf>) {
        debug_assert!(segs.is_empty());
        self.lro_scratch = segs;
    }

    /// Cuts the received super-segment `p` (`lro_cut`) and hands each
    /// segment, in order, to `each`.
    pub(super) fn lro_each(&mut self, cx: &Ctx, p: PacketBuf, mut each: impl FnMut(&mut Self, PacketBuf)) {
        let mut segs = self.lro_cut(cx, p);
        for s in segs.drain(..) {
            each(self, s);
        }
        self.lro_done(segs);
    }
}

/// Whether `p` is a super-segment a link handed over whole.
#[inline]
pub(super) fn is_super(p: &PacketBuf) -> bool {
    p.meta.flags & mflags::TSO != 0
}
