//! The established IPv4 packet of the common case, decided from its key
//! words alone: the batch's first pass reads them off the headers
//! (`fast_key4`), the state says in one bit whether a packet its way has
//! anything to do but count (`state::FAST_FWD`, `FAST_REV`), and a
//! `nat-to` state's rewrite goes from the packet's words to the state's
//! other key. No packet description is built: what pf_test does for such
//! a packet (pf_test_state's counters and expiry, the rule's counters,
//! pf_translate) needs nothing else.

use super::*;
use crate::state::{StateTable, FAST_FWD, FAST_REV};

/// The key words of a packet whose in hook's words are `k`, as the hook
/// of direction `dir` looks it up (`pkt_key_words`): pf out's have the
/// two sides swapped.
#[inline(always)]
pub(crate) fn dir_words(k: (u64, u64), dir: Direction) -> (u64, u64) {
    if dir == Direction::In {
        k
    } else {
        (k.0.rotate_left(32), (((k.1 >> 32) as u32).rotate_left(16) as u64) << 32 | (k.1 & 0xffff_ffff))
    }
}

/// Whether in-hook key words from `fast_key4` are a UDP datagram's (the
/// only packets `test_established4` decides: TCP needs its tracking).
#[inline(always)]
pub fn is_udp4(k: (u64, u64)) -> bool {
    // the protocol byte and `KEY_INET6` (never set by `fast_key4`)
    k.1 >> 16 & 0x1ff == PROTO_UDP as u64
}

/// A UDP datagram `fast_key4` took (in-hook key words `k`, `len` bytes)
/// whose state has it on the fast path its way: counted, translated if
/// the state translates, passed. The state is the one the packet's link
/// names (pf out: the reverse link pf in left; pf in: `hint`, the batch's
/// guess) or, when the link names none that fits (~2 % of packets at
/// 10,000 flows), the one a search finds, as `Cx::probe_linked` goes on
/// to `probe`: such a packet is not parsed and decided again from the
/// start (BENCHMARKS §2, session 14 pf4d). `None`:
/// anything else, for the general path (which starts over).
#[inline(always)]
pub fn test_established4(cx: &Cx, k: (u64, u64), len: u16, pkt: &mut PacketBuf, hint: u32) -> Option<Decision> {
    let key = dir_words(k, cx.dir);
    let mut link = if cx.dir == Direction::In { (hint as u64) << 32 } else { pkt.meta.pf_link };
    let (v, s) = cx.pf.states.probe_linked_or_search(cx.link_hint(link), key, cx.kif())?;
    let fwd = v.direction == dir_code(cx.dir);
    if v.fast & if fwd { FAST_FWD } else { FAST_REV } == 0 {
        return None;
    }
    let to =
        if v.flags & sflags::NAT != 0 { nat::view_target_words(cx.pf.states.keys(v.idx)?, key, fwd)? } else { None };
    cx.counters.searches.inc();
    StateTable::touch_slot(s, fwd, len as u64, cx.now.as_nanos());
    cx.relink(&mut link, v.idx, v.rev);
    pkt.meta.pf_link = link;
    count_state_rule(cx, v.ruleset_gen, v.rule_nr, len as usize);
    if let Some(to) = to {
        nat::translate_words(pkt, len as usize, key, to, cx.dir);
    }
    Some(Decision::Pass)
}
