//! The established IPv4 packet of the common case, decided from its key
//! words alone: the batch's first pass reads them off the headers
//! (`fast_key4`), the state says in one bit whether a packet its way has
//! anything to do but count (`state::FAST_FWD`, `FAST_REV`), and a
//! `nat-to` state's rewrite goes from the packet's words to the state's
//! other key. No packet description is built: what pf_test does for such
//! a packet (pf_test_state's counters and expiry, the rule's counters,
//! pf_translate) needs nothing else.

use super::*;
use crate::state::StateTable;

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
/// only packets `test_established_words` decides: TCP needs its tracking).
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
/// anything else, for the general path (which starts over). `IN`: the
/// hook is the in hook (`cx.dir`, as a constant of the caller's loop).
/// `V6`: an IPv6 datagram `fast_udp6` took (its key words hold address
/// ids); a translating state's packets then take the general path, since
/// an IPv6 state's rewrite words hold ids, not the addresses the packet
/// needs.
#[inline(always)]
pub fn test_established_words<const IN: bool, const V6: bool>(
    cx: &Cx,
    owed: &mut Owed,
    k: (u64, u64),
    len: u16,
    pkt: &mut PacketBuf,
    hint: u32,
) -> Option<Decision> {
    debug_assert_eq!(IN, cx.dir == Direction::In);
    let dir = if IN { Direction::In } else { Direction::Out };
    let key = dir_words(k, dir);
    let mut link = if IN { (hint as u64) << 32 } else { pkt.meta.pf_link };
    // Only a state whose packets take the fast path on this hook.
    let (v, s) = cx.pf.states.probe_fast4::<IN>(cx.link_hint(link), key, cx.kif())?;
    // (IPv6: a translating state's rewrite words hold ids.)
    if V6 && v.nat {
        return None;
    }
    if IN {
        cx.pf.states.prefetch_rev(v.rev);
    }
    // A translating state's rewrite at once: nothing after it can send
    // the packet to the general path, and the target words are not kept
    // in registers (or spilled) across the rest.
    if !V6 && v.nat && !rewrite4(cx, v.idx, v.fwd, pkt, len, key, dir) {
        return None;
    }
    StateTable::touch_slot(s, v.fwd, len as u64, cx.now.as_nanos());
    cx.relink_as(dir, &mut link, v.idx, v.rev);
    pkt.meta.pf_link = link;
    owed.count(cx, v.rule, len);
    Some(Decision::Pass)
}

/// `test_established_words`'s rewrite of a translating state's packet (key
/// words `key` in the hook's direction `dir`, `len` bytes, going the
/// way of the state in slot `idx` if `fwd`) to the state's other key;
/// false when the packet is the general path's (`StateTable::nat_target`).
/// Out of the loop, the keys' read with it: the loop then carries none
/// of their registers, which every packet paid for.
#[inline(never)]
fn rewrite4(cx: &Cx, idx: u32, fwd: bool, pkt: &mut PacketBuf, len: u16, key: (u64, u64), dir: Direction) -> bool {
    let Some(to) = cx.pf.states.nat_target(idx, key, fwd) else { return false };
    nat::translate_words(pkt, len as usize, key, to, dir);
    true
}

/// What the packets `test_established_words` passed owe the counters, added
/// to them in one go (`settle`) when a packet's state has another rule
/// than the packets before it, and at the end of the batch's chunk: pf's
/// searches (pf_find_state's `pf_status.fcounters[FCNT_STATE_SEARCH]`)
/// and the packets and bytes of the states' rule (pf_test's
/// `pf_counters_inc` on `st->rule`), as `count_state_rule` adds them a
/// packet at a time. The same sums, a chunk later at most (no reader
/// waits on a worker's counters), without a rule look-up a packet.
#[derive(Default)]
pub struct Owed {
    /// The rule of the packets counted in `packets` and `bytes`:
    /// ruleset generation << 32 | rule number.
    rule: u64,
    /// (Each found with one search: pf's searches are owed these too.)
    packets: u64,
    bytes: u64,
}

impl Owed {
    /// One packet of `len` bytes passed by a state of rule `rule` (the
    /// slot's rule word: ruleset generation << 32 | rule number), found
    /// with one search.
    #[inline(always)]
    pub(super) fn count(&mut self, cx: &Cx, rule: u64, len: u16) {
        if rule != self.rule {
            self.settle_rule(cx);
            self.rule = rule;
        }
        self.packets += 1;
        self.bytes += len as u64;
    }

    /// Adds what is owed to the counters (the chunk's end).
    #[inline]
    pub(crate) fn settle(&mut self, cx: &Cx) {
        self.settle_rule(cx);
    }

    /// What the packets of one rule owe: the rule's counters and pf's
    /// searches.
    #[inline(never)]
    fn settle_rule(&mut self, cx: &Cx) {
        if self.packets == 0 {
            return;
        }
        cx.counters.searches.add(self.packets);
        let (gen, nr) = ((self.rule >> 32) as u32, self.rule as u32);
        if let Some(c) = cx.rs.state_rule_index(gen, nr).and_then(|i| cx.rules.rule(i)) {
            let d = (cx.dir == Direction::Out) as usize;
            c.packets[d].add(self.packets);
            c.bytes[d].add(self.bytes);
        }
        (self.packets, self.bytes) = (0, 0);
    }
}
