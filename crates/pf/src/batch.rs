//! pf over a batch in place, the body of `PacketFilter::test_batch`:
//! each chunk's packets parsed once, the in hook's state lookups of the
//! whole chunk started together (`StateTable::lookup_hints`), then each
//! packet decided (`decide`), an established one inline in the loop.
//!
//! The loop is one code in two instances: IPv4's (`V6 = false`, every
//! batch that starts with an IPv4 packet), whose shape every IPv4
//! instruction count depends on (BENCHMARKS §2: whatever grew it cost
//! IPv4 more than it saved), and IPv6's (`run6`), where IPv6's
//! fast parse and established path are inline in the loop too. Either
//! decides every packet of either family the same way; only what is
//! inline differs.

use std::mem::MaybeUninit;

use softnet_core::filter::{BufferSource, Decision, Direction, FilterReplies};
use softnet_core::packet::{mflags, PacketBuf};

use crate::eval::{self, Cx, Pd};
use crate::filter::PfInner;
use crate::state::HINT_BATCH;

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
        chunk::<true>(cx, logif, pkts, decisions, bufs, replies);
    }
}

/// One chunk of a batch (at most `HINT_BATCH` packets).
#[inline(always)]
pub(crate) fn chunk<const V6: bool>(
    cx: &Cx,
    logif: bool,
    pkts: &mut [Option<PacketBuf>],
    decisions: &mut [Decision],
    bufs: &mut dyn BufferSource,
    replies: &mut FilterReplies,
) {
    // Each packet parsed once; on the in hook the lookups of the whole
    // chunk start together (and the states pf out will follow).
    let n = pkts.len();
    // Only the first `n` entries are written and read: a small batch does
    // not pay for clearing 64 descriptions.
    let mut pds = [const { MaybeUninit::<Option<Pd>>::uninit() }; HINT_BATCH];
    let mut hints = [0u32; HINT_BATCH];
    for (pd, p) in pds.iter_mut().zip(pkts.iter()) {
        // Each written in its own branch: a value from either of two calls
        // would be copied in (IPv4 would pay for it).
        match p.as_ref().map(|p| p.data()) {
            Some(d) if d.first().is_some_and(|b| b >> 4 == 6) => {
                pd.write(if V6 { eval::parse_fast6_inline(d) } else { eval::parse_fast6(d) })
            }
            p => pd.write(p.and_then(eval::parse_fast)),
        };
    }
    // SAFETY: entries 0..n were written just above.
    let pd_at = |i: usize| unsafe { pds[i].assume_init_ref().as_ref() };
    if cx.dir == Direction::In {
        let mut keys = [None; HINT_BATCH];
        for (i, (k, p)) in keys[..n].iter_mut().zip(pkts.iter_mut()).enumerate() {
            *k = pd_at(i).map(|pd| eval::in_key_words(pd, p));
        }
        cx.pf.states.lookup_hints(&keys[..n], &mut hints);
    }
    for (i, (slot, d)) in pkts.iter_mut().zip(decisions.iter_mut()).enumerate() {
        *d = decide::<V6>(cx, logif, slot, pd_at(i), hints[i], bufs, replies);
    }
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
