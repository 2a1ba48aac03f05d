//! A connection's PCB and its pf state point at each other, as OpenBSD's
//! inp_pf_sk / sk_inp (pf_inp_link, pf_state_key_link_inpcb,
//! pf_inp_unlink): an established local connection's segments reach pf
//! out with the handle of their state, which pf tries before its hash
//! table (`StateTable::probe_linked`), so the state is not looked up
//! again.
//!
//! The handle is the filter's `PacketMeta::pf_link` word (opaque to the
//! stack; pf's: slot + 1 of a state, 0 none): pf in leaves the state it
//! matched in the low half of a packet's link, pf out takes a hint in the
//! high half and leaves there the state it found (0: none). The PCB keeps
//! the last one: learned from the segments coming in (pf_inp_link) and
//! from what pf out found for the segments going out
//! (pf_state_key_link_inpcb). Neither side holds the other alive: a
//! handle is only a hint, checked by pf in full (the key, liveness and
//! interface of the state in that slot, the generation a state's key
//! stands for), so a state that died or whose slot another state took
//! costs one failed check and the hash probe, after which the PCB learns
//! the new state or none (pf out found none: the link is dropped). The
//! PCB's end dies with the PCB.

use super::tcp::TcpConn;
use std::sync::atomic::Ordering;

impl TcpConn {
    /// pf_inp_link: the inbound state pf in matched for a segment of
    /// this connection (`meta.pf_link`'s low half), if it matched one.
    #[inline]
    pub(crate) fn pf_link_in(&self, link: u64) {
        let s = link as u32;
        if s != 0 && self.pf_state.load(Ordering::Relaxed) != s {
            self.pf_state.store(s, Ordering::Relaxed);
        }
    }

    /// The link a segment of this connection carries to pf out: the
    /// connection's state as the hint (high half), no inbound state.
    #[inline]
    pub(crate) fn pf_link_out(&self) -> u64 {
        (self.pf_state.load(Ordering::Relaxed) as u64) << 32
    }

    /// What pf out found for a segment of this connection (the high half
    /// of `link`; 0: no state, and the connection's link is dropped).
    #[inline]
    pub(crate) fn pf_link_learn(&self, link: u64) {
        let s = (link >> 32) as u32;
        if self.pf_state.load(Ordering::Relaxed) != s {
            self.pf_state.store(s, Ordering::Relaxed);
        }
    }

    /// The filter's handle on this connection's state (0: none known).
    pub fn pf_state_link(&self) -> u32 {
        self.pf_state.load(Ordering::Relaxed)
    }
}
