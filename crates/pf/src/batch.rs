//! pf over a batch in place, the body of `PacketFilter::test_batch`:
//! each chunk's packets parsed once, the in hook's state lookups of the
//! whole chunk started together (`StateTable::lookup_heads`), then each
//! packet decided, an established one inline in the loop.
//!
//! The loop has two forms, each with one loop per hook (the direction a
//! constant: `chunk4_in`/`chunk4_out`, `chunk6_in`/`chunk6_out`). IPv4's
//! (`chunk4`, every batch that starts with an IPv4 packet) reads an IPv4
//! packet of the common case straight to its key words and length
//! (`eval::fast_key4`) and decides a UDP packet of a state on the fast
//! path from those alone (`eval::test_established_words`); what it does not
//! decide is parsed again out of the loop (`decide_again`). Every IPv4
//! instruction count depends on its shape (BENCHMARKS §2). IPv6's
//! (`run6`, a batch that starts with an IPv6 packet) reads an IPv6 UDP
//! datagram of the common case straight to its key words and length the
//! same way (`eval::fast_udp6`; the addresses' ids through the chunk's
//! memo on the in hook, from pf in's note on the out hook) and decides
//! it from them (`eval::test_established_words::<_, true>`, the state
//! read as IPv4's is, a translating one refused); other packets are parsed into
//! their description, with IPv6's fast parse and established path
//! inline. Either decides every packet of either family the same way;
//! only what is inline differs.

use std::mem::MaybeUninit;

use softnet_core::filter::{BufferSource, Decision, Direction, FilterReplies};
use softnet_core::packet::{mflags, PacketBuf};

use crate::eval::{self, Cx, Pd};
use crate::filter::PfInner;
use crate::state::{HINT_BATCH, KEY_INET6};

/// The loop's IPv6 instance, for a batch that starts with an IPv6 packet.
/// (Not named `test_batch*`: callgrind's `--toggle-collect='*test_batch*'`
/// would stop counting inside it.)
#[inline(never)]
pub(crate) fn run6(
    cx: &Cx,
    logif: bool,
    pkts: &mut [Option<PacketBuf>],
    decisions: &mut [Decision],
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) {
    for (pkts, decisions) in pkts.chunks_mut(HINT_BATCH).zip(decisions.chunks_mut(HINT_BATCH)) {
        chunk6(cx, logif, pkts, decisions, bufs, replies);
    }
}

/// One chunk of an IPv4 batch (at most `HINT_BATCH` packets), in the
/// loop made for the hook's direction (`chunk4_in`, `chunk4_out`: each
/// with its direction a constant, so neither carries the other's code).
#[inline(always)]
pub(crate) fn chunk4(
    cx: &Cx,
    logif: bool,
    pkts: &mut [Option<PacketBuf>],
    decisions: &mut [Decision],
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) {
    if cx.dir == Direction::In {
        chunk4_in(cx, logif, pkts, decisions, bufs, replies)
    } else {
        chunk4_out(cx, logif, pkts, decisions, bufs, replies)
    }
}

/// `chunk4` on the in hook.
#[inline(always)]
fn chunk4_in(
    cx: &Cx,
    logif: bool,
    pkts: &mut [Option<PacketBuf>],
    decisions: &mut [Decision],
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) {
    // Each packet parsed once: an IPv4 packet of the common case to its
    // key words and length (`eval::fast_key4`), an IPv6 one to its
    // description; then the lookups of the whole chunk start together
    // (and the states pf out will follow).
    let n = pkts.len();
    // (0, 0): no key (a packet `fast_key4` does not take). `lens[i]` not
    // 0: packet i is one the fast path may take (UDP, and no `set
    // loginterface` count), its length.
    let mut keys = [(0u64, 0u64); HINT_BATCH];
    let mut lens = [0u16; HINT_BATCH];
    let mut hints = [0u32; HINT_BATCH];
    // Only the entries of packets without IPv4 key words are written and
    // read: a batch does not pay for 64 descriptions.
    let mut pds = [const { MaybeUninit::<Option<Pd>>::uninit() }; HINT_BATCH];
    for (i, p) in pkts.iter_mut().enumerate() {
        let d = p.as_ref().map(|p| p.data());
        if let Some((k, len)) = d.and_then(eval::fast_key4) {
            keys[i] = k;
            if eval::is_udp4(k) && !logif {
                lens[i] = len;
            }
        } else {
            let pd = d.filter(|d| d.first().is_some_and(|b| b >> 4 == 6)).and_then(eval::parse_fast6);
            if let Some(pd) = &pd {
                keys[i] = eval::in_key_words(pd, p);
            }
            pds[i].write(pd);
        }
    }
    // The hints are the chains' first slots, unverified: the fast path
    // reads that slot first anyway; the general path takes a hint
    // verified (`verified_hint`).
    cx.pf.states.lookup_heads(&keys[..n], &mut hints[..n]);
    let verified = |i: usize| if keys[i].1 != 0 { cx.pf.states.verified_hint(keys[i], hints[i]) } else { 0 };
    // The fast path's counts, added to the counters once for the chunk.
    let mut owed = eval::Owed::default();
    for (i, (slot, d)) in pkts.iter_mut().zip(decisions.iter_mut()).enumerate() {
        let k = keys[i];
        *d = match slot {
            None => Decision::Consumed,
            Some(p) if p.meta.flags & mflags::PF_GENERATED != 0 => Decision::Pass,
            Some(p) if lens[i] != 0 => {
                match eval::test_established_words::<true, false>(cx, &mut owed, k, lens[i], p, hints[i]) {
                    Some(d) => d,
                    None => decide_again::<false>(cx, logif, slot, verified(i), bufs, replies),
                }
            }
            // SAFETY: written in the first pass for every packet without
            // IPv4 key words.
            Some(p) if k.1 == 0 || k.1 & KEY_INET6 != 0 => {
                let pd = unsafe { pds[i].assume_init_ref().as_ref() };
                let hint = verified(i);
                match pd.filter(|pd| pd.proto == eval::PROTO_UDP && !logif) {
                    Some(pd) => match eval::test_established6(cx, pd, p, hint) {
                        Some(d) => d,
                        None => decide_other(cx, logif, slot, Some(pd), hint, bufs, replies),
                    },
                    None => decide_other(cx, logif, slot, pd, hint, bufs, replies),
                }
            }
            Some(_) => decide_again::<false>(cx, logif, slot, verified(i), bufs, replies),
        };
    }
    owed.settle(cx);
}

/// `chunk4` on the out hook: one pass, each packet parsed and decided in
/// turn (pf out starts no lookups together: its states come by the
/// packets' links), so no key is kept for a second pass.
#[inline(always)]
fn chunk4_out(
    cx: &Cx,
    logif: bool,
    pkts: &mut [Option<PacketBuf>],
    decisions: &mut [Decision],
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) {
    // The fast path's counts, added to the counters once for the chunk.
    let mut owed = eval::Owed::default();
    for (slot, d) in pkts.iter_mut().zip(decisions.iter_mut()) {
        *d = match slot {
            None => Decision::Consumed,
            Some(p) if p.meta.flags & mflags::PF_GENERATED != 0 => Decision::Pass,
            Some(p) => match eval::fast_key4(p.data()) {
                Some((k, len)) if eval::is_udp4(k) && !logif => {
                    match eval::test_established_words::<false, false>(cx, &mut owed, k, len, p, 0) {
                        Some(d) => d,
                        None => decide_again::<false>(cx, logif, slot, 0, bufs, replies),
                    }
                }
                Some(_) => decide_again::<false>(cx, logif, slot, 0, bufs, replies),
                None => decide_unkeyed_out(cx, logif, slot, bufs, replies),
            },
        };
    }
    owed.settle(cx);
}

/// `chunk4_out` for a packet `eval::fast_key4` does not take: an IPv6
/// packet to IPv6's fast parse (and its established path for UDP),
/// anything else to the full parse, as `chunk4_in` decides them.
#[inline(never)]
fn decide_unkeyed_out(
    cx: &Cx,
    logif: bool,
    slot: &mut Option<PacketBuf>,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) -> Decision {
    let pd =
        slot.as_ref().map(|p| p.data()).filter(|d| d.first().is_some_and(|b| b >> 4 == 6)).and_then(eval::parse_fast6);
    if let (Some(pd), Some(p)) = (pd.as_ref().filter(|pd| pd.proto == eval::PROTO_UDP && !logif), slot.as_mut()) {
        if let Some(d) = eval::test_established6(cx, pd, p, 0) {
            return d;
        }
    }
    decide::<false>(cx, logif, slot, pd.as_ref(), 0, bufs, replies)
}

/// `decide` for a packet a batch loop's key parse took but did not
/// decide, parsed again into its description, out of the loop: IPv4
/// (`V6` false) that `eval::fast_key4` took (TCP, a state off the fast
/// path, `set loginterface`), or an IPv6 datagram `eval::fast_udp6` took
/// (a state off the fast path or none, `set loginterface`).
#[inline(never)]
fn decide_again<const V6: bool>(
    cx: &Cx,
    logif: bool,
    slot: &mut Option<PacketBuf>,
    hint: u32,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) -> Decision {
    let parse = if V6 { eval::parse_fast6 } else { eval::parse_fast };
    let pd = slot.as_ref().and_then(|p| parse(p.data()));
    decide::<false>(cx, logif, slot, pd.as_ref(), hint, bufs, replies)
}

/// `decide` for the IPv4 loop's other packets (IPv6, and IPv4 that takes
/// the full parse), out of the loop.
#[inline(never)]
fn decide_other(
    cx: &Cx,
    logif: bool,
    slot: &mut Option<PacketBuf>,
    pd: Option<&Pd>,
    hint: u32,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) -> Decision {
    decide::<false>(cx, logif, slot, pd, hint, bufs, replies)
}

/// One chunk of an IPv6 batch (at most `HINT_BATCH` packets), in the
/// loop made for the hook's direction (`chunk6_in`, `chunk6_out`), as
/// IPv4's (`chunk4`).
#[inline(always)]
fn chunk6(
    cx: &Cx,
    logif: bool,
    pkts: &mut [Option<PacketBuf>],
    decisions: &mut [Decision],
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) {
    if cx.dir == Direction::In {
        chunk6_in(cx, logif, pkts, decisions, bufs, replies)
    } else {
        chunk6_out(cx, logif, pkts, decisions, bufs, replies)
    }
}

/// `chunk6` on the in hook.
#[inline(always)]
fn chunk6_in(
    cx: &Cx,
    logif: bool,
    pkts: &mut [Option<PacketBuf>],
    decisions: &mut [Decision],
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) {
    // Each packet parsed once: an IPv6 UDP datagram of the common case
    // straight to its key words and length (`eval::fast_udp6`, the ids
    // through the chunk's memo), anything else to its description; then
    // the lookups of the whole chunk start together.
    let n = pkts.len();
    // (0, 0): no key; `lens[i]` not 0: packet i has key words from
    // `fast_udp6` (its length, at least 48).
    let mut keys = [(0u64, 0u64); HINT_BATCH];
    let mut lens = [0u16; HINT_BATCH];
    let mut hints = [0u32; HINT_BATCH];
    // Only the entries of packets without those key words are written and
    // read: a batch does not pay for 64 descriptions.
    let mut pds = [const { MaybeUninit::<Option<Pd>>::uninit() }; HINT_BATCH];
    // Packets that share an address look it up once (`v6ids::Memo`).
    let mut memo = crate::state::v6ids::Memo::default();
    for (i, p) in pkts.iter_mut().enumerate() {
        if let Some(pkt) = p.as_mut() {
            if let Some(u) = eval::fast_udp6(pkt.data()) {
                (keys[i], lens[i]) = (eval::in_words6(&u, pkt, &mut memo), u.len);
                continue;
            }
        }
        // Each written in its own branch: a value from either of two
        // calls would be copied in.
        let pd = match p.as_ref().map(|p| p.data()) {
            Some(d) if d.first().is_some_and(|b| b >> 4 == 6) => pds[i].write(eval::parse_fast6_inline(d)),
            d => pds[i].write(d.and_then(eval::parse_fast)),
        };
        match pd {
            Some(pd) if pd.af == crate::addr::Af::Inet6 => keys[i] = eval::in_key_words6_memo(pd, p, &mut memo),
            Some(pd) => keys[i] = eval::in_key_words(pd, p),
            None => {}
        }
    }
    // The hints are the chains' first slots, unverified (IPv4's way:
    // `lookup_heads`): the fast path reads that slot first anyway
    // (`StateTable::probe_fast4`, which prefetches for pf out as
    // `verified_hint` does); the general path takes a hint verified.
    cx.pf.states.lookup_heads(&keys[..n], &mut hints[..n]);
    let verified = |i: usize| if keys[i].1 != 0 { cx.pf.states.verified_hint(keys[i], hints[i]) } else { 0 };
    // The fast path's counts, added to the counters once for the chunk.
    let mut owed = eval::Owed::default();
    for (i, (slot, d)) in pkts.iter_mut().zip(decisions.iter_mut()).enumerate() {
        *d = match slot {
            None => Decision::Consumed,
            Some(p) if p.meta.flags & mflags::PF_GENERATED != 0 => Decision::Pass,
            Some(p) if lens[i] != 0 && !logif => {
                match eval::test_established_words::<true, true>(cx, &mut owed, keys[i], lens[i], p, hints[i]) {
                    Some(d) => d,
                    None => decide_again::<true>(cx, logif, slot, verified(i), bufs, replies),
                }
            }
            Some(_) if lens[i] != 0 => decide_again::<true>(cx, logif, slot, verified(i), bufs, replies),
            // SAFETY: written in the first pass for every packet without
            // key words from `fast_udp6`.
            Some(_) => {
                let pd = unsafe { pds[i].assume_init_ref().as_ref() };
                decide::<true>(cx, logif, slot, pd, verified(i), bufs, replies)
            }
        };
    }
    owed.settle(cx);
}

/// `chunk6` on the out hook: one pass, each packet parsed and decided in
/// turn (pf out starts no lookups together: its states come by the
/// packets' links), an IPv6 UDP datagram of the common case from pf in's
/// note (`eval::noted_words6`), so no key is kept for a second pass.
#[inline(always)]
fn chunk6_out(
    cx: &Cx,
    logif: bool,
    pkts: &mut [Option<PacketBuf>],
    decisions: &mut [Decision],
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) {
    // The fast path's counts, added to the counters once for the chunk.
    let mut owed = eval::Owed::default();
    for (slot, d) in pkts.iter_mut().zip(decisions.iter_mut()) {
        *d = match slot {
            None => Decision::Consumed,
            Some(p) if p.meta.flags & mflags::PF_GENERATED != 0 => Decision::Pass,
            Some(p) => match eval::fast_udp6(p.data()).and_then(|u| Some((eval::noted_words6(&u, p)?, u.len))) {
                Some((k, len)) if !logif => {
                    match eval::test_established_words::<false, true>(cx, &mut owed, k, len, p, 0) {
                        Some(d) => d,
                        None => decide_again::<true>(cx, logif, slot, 0, bufs, replies),
                    }
                }
                Some(_) => decide_again::<true>(cx, logif, slot, 0, bufs, replies),
                None => decide_unnoted_out6(cx, logif, slot, bufs, replies),
            },
        };
    }
    owed.settle(cx);
}

/// `chunk6_out` for a packet without key words from pf in's note (not a
/// UDP datagram `eval::fast_udp6` takes, or its addresses not the noted
/// ones): parsed into its description and decided, IPv6's established
/// path inline, as `chunk6_in` decides its other packets.
#[inline(never)]
fn decide_unnoted_out6(
    cx: &Cx,
    logif: bool,
    slot: &mut Option<PacketBuf>,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) -> Decision {
    let pd = match slot.as_ref().map(|p| p.data()) {
        Some(d) if d.first().is_some_and(|b| b >> 4 == 6) => eval::parse_fast6(d),
        d => d.and_then(eval::parse_fast),
    };
    decide::<true>(cx, logif, slot, pd.as_ref(), 0, bufs, replies)
}

/// One packet of a hook call, in place: what pf itself sent passes
/// untouched (pf_test and `PF_TAG_GENERATED`); the `set loginterface`
/// interface's packets are counted; an established packet is decided
/// right here (`eval::test_established`, inline in the hook's loop; in
/// the IPv6 instance IPv6's too, `eval::test_established6_inline`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn decide<const V6: bool>(
    cx: &Cx,
    logif: bool,
    slot: &mut Option<PacketBuf>,
    pd: Option<&Pd>,
    hint: u32,
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) -> Decision {
    match slot {
        None => return Decision::Consumed,
        Some(p) if p.meta.flags & mflags::PF_GENERATED != 0 => return Decision::Pass,
        Some(_) => {}
    }
    if logif {
        return count_logif(cx.pf, cx.worker, cx.dir, slot, |slot| {
            eval::test_parsed(cx, pd, slot, hint, bufs, replies)
        });
    }
    if let (Some(pd), Some(p)) = (pd, slot.as_mut()) {
        let d = if V6 && pd.af == crate::addr::Af::Inet6 {
            eval::test_established6_inline(cx, pd, p, hint)
        } else {
            eval::test_established(cx, pd, p, hint)
        };
        if let Some(d) = d {
            return d;
        }
    }
    eval::test_parsed(cx, pd, slot, hint, bufs, replies)
}

/// pf_counters_inc's per-interface counts, for the `set loginterface`
/// interface only: packets by direction and verdict, bytes (IP total
/// length) by direction. A fragment kept for reassembly counts as passed.
#[cold]
fn count_logif(
    inner: &PfInner,
    worker: usize,
    dir: Direction,
    slot: &mut Option<PacketBuf>,
    f: impl FnOnce(&mut Option<PacketBuf>) -> Decision,
) -> Decision {
    let len = slot.as_ref().map_or(0, |p| {
        let d = p.data();
        match d.first().map(|b| b >> 4) {
            // IPv6: the fixed header and its payload length
            Some(6) if d.len() >= 6 => 40 + u16::from_be_bytes([d[4], d[5]]) as u64,
            _ if d.len() >= 4 => u16::from_be_bytes([d[2], d[3]]) as u64,
            _ => d.len() as u64,
        }
    });
    let v = f(slot);
    let out = (dir == Direction::Out) as usize;
    let blocked = (v == Decision::Drop) as usize;
    let c = inner.counters.get(worker);
    c.logif_packets[out * 2 + blocked].inc();
    c.logif_bytes[out].add(len);
    v
}
