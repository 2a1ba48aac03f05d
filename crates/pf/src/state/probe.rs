//! `StateTable`'s lock-free reads on the data path: the probes (by key,
//! by reverse link, the fast paths' views), the batch's chain hints, the
//! reverse links, and the per-packet counters (`touch`).

use super::table::*;
use super::*;

impl StateTable {
    /// Lock-free read of the state for `key` on `ifidx`.
    #[inline]
    pub fn probe(&self, key: (u64, u64), ifidx: u32) -> Probe {
        let Some(idx) = self.find_words(key, ifidx) else { return Probe::Miss };
        match self.read_view(idx, key, ifidx, false) {
            Some(v) => Probe::Hit(v),
            None => Probe::Busy,
        }
    }

    /// The state in slot `link - 1` if it is the one `probe(key, ifidx)`
    /// would find: live, usable on `ifidx`, holding `key`, and the only
    /// state on that key. `None` (take `probe`) otherwise. This follows a
    /// reverse link (pf.c `pf_find_state`, which goes from the packet's
    /// `pf.statekey` to `sk_reverse` instead of searching the tree); the
    /// link is only a hint, so a removed state, a slot reused for another
    /// key or a key that gained a second state all fall back to the
    /// search.
    #[inline(always)]
    pub fn probe_linked(&self, link: u32, key: (u64, u64), ifidx: u32) -> Option<StateView> {
        self.probe_linked_slot(link, key, ifidx).map(|(v, _)| v)
    }

    /// What the IPv4 fast path (`eval::fast4`) reads of the state for
    /// `key` on `ifidx` on the in hook (`IN`) or the out hook: the state
    /// in slot `link - 1` if `probe_linked` would take it, else the one a
    /// search finds (`find_words`, out of line), as `Cx::probe_linked`
    /// goes on to `probe`, only if
    /// its packets on this hook take the fast path (`FAST_IN`,
    /// `FAST_OUT`; those bits also say it is live and not purged, which
    /// is all `usable` adds to its interface test). `None`: no such state,
    /// or one the fast path leaves (off the fast path, or a writer at
    /// work), for the general path. (One read of the slot for both ways,
    /// so that what it found stays in registers, not in a copy returned
    /// through memory.) On the in hook `link` is `lookup_heads`'
    /// unverified hint; a miss there prefetches for pf out as
    /// `verified_hint` does (`hint_missed`).
    #[inline(always)]
    pub fn probe_fast4<const IN: bool>(&self, link: u32, key: (u64, u64), ifidx: u32) -> Option<(FastView, &Slot)> {
        // (link 0: no slot, `u32::MAX`)
        let (mut idx, mut linked) = (link.wrapping_sub(1), true);
        loop {
            match self.read_fast_slot::<IN>(idx, key, ifidx, linked) {
                Some(found) => return found,
                None if linked => (idx, linked) = (self.find_words_cold(key, ifidx, IN)?, false),
                None => return None,
            }
        }
    }

    /// `probe_fast4`'s read of slot `idx`: `None` if it is not the state
    /// for `key` on `ifidx` (with `solo`, alone on its key) as
    /// `read_view_slot` decides (its liveness left to the fast bit),
    /// `Some(None)` if it is but the fast path leaves the packet (or the
    /// read was torn).
    #[inline(always)]
    #[allow(clippy::option_option)]
    fn read_fast_slot<const IN: bool>(
        &self,
        idx: u32,
        key: (u64, u64),
        ifidx: u32,
        solo: bool,
    ) -> Option<Option<(FastView, &Slot)>> {
        let s = self.slot(idx)?;
        let s1 = s.seq.load(Ordering::Acquire);
        let k = s.key_words();
        let bind = s.bind.load(Ordering::Relaxed);
        let rule = s.rule.load(Ordering::Relaxed);
        let extra = s.extra.load(Ordering::Relaxed);
        let rev = if IN { s.rev.load(Ordering::Relaxed) } else { 0 };
        // a translating state found by its translated key (never by a
        // link: `solo` speaks of its own key)
        let by_nat = k != key && !solo && (bind >> 40) as u8 & sflags::NAT != 0 && self.nat_key_is(idx, key);
        fence(Ordering::Acquire);
        if s1 & 1 != 0 || s.seq.load(Ordering::Relaxed) != s1 {
            return Some(None);
        }
        let kif = bind as u32;
        if (k != key && !by_nat) || (kif != 0 && kif != ifidx) || (solo && bind & BIND_SOLO == 0) {
            return None;
        }
        if (extra >> 48) as u8 & if IN { FAST_IN } else { FAST_OUT } == 0 {
            return Some(None);
        }
        let fwd = (bind >> 32) as u8 == if IN { DIR_IN } else { DIR_OUT };
        let nat = (bind >> 40) as u8 & sflags::NAT != 0;
        Some(Some((FastView { idx, fwd, nat, rule, rev }, s)))
    }

    /// `find_words` out of line, for a packet its link did not take to
    /// its state (~2 % of them at 10,000 flows: a key not first in its
    /// bucket, which the batch's hint guesses).
    #[cold]
    #[inline(never)]
    fn find_words_cold(&self, key: (u64, u64), ifidx: u32, inbound: bool) -> Option<u32> {
        if inbound {
            self.hint_missed(key);
        }
        self.find_words(key, ifidx)
    }

    /// `probe_linked` with the slot it read, for `touch_slot`.
    #[inline(always)]
    pub fn probe_linked_slot(&self, link: u32, key: (u64, u64), ifidx: u32) -> Option<(StateView, &Slot)> {
        let idx = link.checked_sub(1)?;
        self.read_view_slot(idx, key, ifidx, true)
    }

    /// A consistent read of slot `idx`'s mirrors, if it holds `key` and is
    /// usable on `ifidx` (and, with `solo`, is alone on its key).
    #[inline(always)]
    pub(super) fn read_view(&self, idx: u32, key: (u64, u64), ifidx: u32, solo: bool) -> Option<StateView> {
        self.read_view_slot(idx, key, ifidx, solo).map(|(v, _)| v)
    }

    /// `read_view` with the slot it read.
    #[inline(always)]
    fn read_view_slot(&self, idx: u32, key: (u64, u64), ifidx: u32, solo: bool) -> Option<(StateView, &Slot)> {
        let s = self.slot(idx)?;
        let s1 = s.seq.load(Ordering::Acquire);
        if s1 & 1 != 0 {
            return None;
        }
        let k = s.key_words();
        let bind = s.bind.load(Ordering::Relaxed);
        let rule = s.rule.load(Ordering::Relaxed);
        let extra = s.extra.load(Ordering::Relaxed);
        let alone = bind & BIND_SOLO != 0;
        let rev = s.rev.load(Ordering::Relaxed);
        // a translating state found by its translated key (never by a
        // link: `solo` speaks of its own key)
        let by_nat = k != key && !solo && (bind >> 40) as u8 & sflags::NAT != 0 && self.nat_key_is(idx, key);
        fence(Ordering::Acquire);
        if s.seq.load(Ordering::Relaxed) != s1
            || (k != key && !by_nat)
            || usable(bind, ifidx).is_none()
            || (solo && !alone)
        {
            return None;
        }
        let v = StateView {
            idx,
            direction: (bind >> 32) as u8,
            flags: (bind >> 40) as u8,
            timeout: (bind >> 48) as u8,
            src_state: (extra >> 32) as u8,
            dst_state: (extra >> 40) as u8,
            rule_nr: rule as u32,
            ruleset_gen: (rule >> 32) as u32,
            tag: extra as u16,
            rtable: (extra >> 16) as u16 as i16,
            rev,
            fast: (extra >> 48) as u8,
        };
        Some((v, s))
    }

    /// For a packet with key words `key` (going the state's way if
    /// `fwd`) that the fast path found a translating state for in slot
    /// `idx`: the words it is rewritten to, as `eval::nat::view_target`
    /// picks them (going the state's way by its own key, its translated
    /// key; coming back by the translated key, its own key). `None`: the
    /// slot's keys are not that (a packet by a key against that key's
    /// way, or the slot reused since the view was read), for the general
    /// path. The state's flag is the view's: only the two keys are read.
    #[inline(always)]
    pub fn nat_target(&self, idx: u32, key: (u64, u64), fwd: bool) -> Option<(u64, u64)> {
        let own = self.slot(idx)?.key_words();
        let n = self.nat_slot(idx)?;
        let nk = (n.k0.load(Ordering::Acquire), n.k1.load(Ordering::Acquire));
        match fwd {
            true if key == own => Some(nk),
            false if key == nk => Some(own),
            _ => None,
        }
    }

    #[inline]
    pub(super) fn nat_key_is(&self, idx: u32, key: (u64, u64)) -> bool {
        self.nat_slot(idx)
            .is_some_and(|n| n.k0.load(Ordering::Acquire) == key.0 && n.k1.load(Ordering::Acquire) == key.1)
    }

    /// Lookup guesses for a batch of in-hook keys (`batch::chunk4_in`,
    /// `chunk6_in`), their memory loads overlapped: every key's bucket
    /// prefetched, then every
    /// chain's first slot, and `hints[i]` is slot + 1 of that first slot
    /// (0: an empty chain, or no key), *not verified*: whether it holds the
    /// key is the first thing the fast path reads of it anyway
    /// (`probe_fast4`, which with `test_established_words` prefetches the
    /// reverse link's slot, `prefetch_rev`, or counts the miss,
    /// `hint_missed`); a packet for the
    /// general path has its hint verified there (`verified_hint`). Reads
    /// only.
    pub fn lookup_heads(&self, keys: &[(u64, u64)], hints: &mut [u32]) {
        let n = keys.len().min(hints.len()).min(HINT_BATCH);
        let (keys, hints) = (&keys[..n], &mut hints[..n]);
        let buckets: &[AtomicU32; BUCKETS] = (&self.buckets[..]).try_into().expect("BUCKETS buckets");
        let slots = self.slab.view();
        let mut bucket = [0u32; HINT_BATCH];
        for (k, b) in keys.iter().zip(bucket.iter_mut()) {
            if k.1 != 0 {
                *b = self.bucket_of(*k) as u32;
                prefetch_line(&buckets[*b as usize & (BUCKETS - 1)]);
            }
        }
        for ((k, b), h) in keys.iter().zip(bucket.iter()).zip(hints.iter_mut()) {
            *h = 0;
            if k.1 != 0 {
                let head = buckets[*b as usize & (BUCKETS - 1)].load(Ordering::Relaxed);
                if let Some(s) = head.checked_sub(1).and_then(|i| slots.get(i)) {
                    prefetch_slot(s);
                    *h = head;
                }
            }
        }
    }

    /// `hint` (from `lookup_heads`) if its slot holds in-hook key `k`, else
    /// 0: for the general path, which takes a hint as a state it may
    /// lock. Prefetches the slot pf out will read (`prefetch_rev`) or
    /// counts the miss (`hint_missed`).
    #[inline]
    pub fn verified_hint(&self, k: (u64, u64), hint: u32) -> u32 {
        match hint.checked_sub(1).and_then(|i| self.slot(i)) {
            Some(s) if s.key_words() == k => {
                self.prefetch_rev(s.rev.load(Ordering::Relaxed));
                hint
            }
            _ => {
                self.hint_missed(k);
                0
            }
        }
    }

    /// For an in-hook packet whose state is in a slot of reverse link
    /// `rev`: the slot `rev` names (the state pf out will read, after the
    /// whole batch went through pf in and routing) into L2.
    #[inline(always)]
    pub fn prefetch_rev(&self, rev: u32) {
        if let Some(i) = rev.checked_sub(1) {
            // Not checked against the usable slots: a prefetch of any
            // address is only a hint, and a link names a slot handed out.
            self.slab.prefetch_l2(i);
        }
    }

    /// For an in-hook packet whose key `k` is not at its chain's head:
    /// pf out will search too, with the reversed key (no NAT: the
    /// outbound key of a forwarded packet is its inbound key reversed), so
    /// its bucket into L2.
    #[cold]
    #[inline(never)]
    pub fn hint_missed(&self, k: (u64, u64)) {
        prefetch_line_l2(&self.buckets[self.bucket_of(reversed(k))]);
    }

    /// Slot `idx`'s reverse link (`Slot::rev`).
    #[inline]
    pub fn rev(&self, idx: u32) -> u32 {
        self.slot(idx).map_or(0, |s| s.rev.load(Ordering::Relaxed))
    }

    /// Points slot `idx`'s reverse link at slot `to_link - 1` (written only
    /// when it changes, so a stable flow leaves the line clean).
    #[inline]
    pub fn set_rev(&self, idx: u32, to_link: u32) {
        if let Some(s) = self.slot(idx) {
            if s.rev.load(Ordering::Relaxed) != to_link {
                s.rev.store(to_link, Ordering::Relaxed);
            }
        }
    }

    /// Lock-free per-packet update after a `Hit`: counters of direction
    /// `fwd` and the last-activity time, written only when it moved by a
    /// second or more (pf keeps it in seconds) so workers hitting the same
    /// state do not trade its cache line for nothing. The counters are
    /// plain load + store (no locked RMW): exact while one worker carries
    /// a direction of a flow.
    #[inline]
    pub fn touch(&self, idx: u32, fwd: bool, bytes: u64, now: u64) {
        if let Some(s) = self.slot(idx) {
            Self::touch_slot(s, fwd, bytes, now);
        }
    }

    /// `touch` of the slot a `probe_linked_slot` read (not looked up again).
    #[inline(always)]
    pub fn touch_slot(s: &Slot, fwd: bool, bytes: u64, now: u64) {
        let i = if fwd { 0 } else { 1 };
        // A full word's packets carry out of the top: fold it.
        match s.recent[i].load(Ordering::Relaxed).checked_add(RECENT_ONE | bytes as u32) {
            Some(w) if bytes <= RECENT_MAX_BYTES => s.recent[i].store(w, Ordering::Relaxed),
            _ => fold_count(s, i, bytes),
        }
        let e = s.expire.load(Ordering::Relaxed);
        if now >= e.saturating_add(1_000_000_000) {
            s.expire.store(now, Ordering::Relaxed);
        }
    }
}

/// `touch`'s count of a packet whose direction `i`'s `recent` word is
/// full: the word and the packet go into the totals under the slot's
/// lock (one packet in 255 at most).
#[cold]
#[inline(never)]
fn fold_count(s: &Slot, i: usize, bytes: u64) {
    let mut g = s.lock();
    g.fold_recent(i);
    g.packets[i] = g.packets[i].wrapping_add(1);
    g.bytes[i] = g.bytes[i].wrapping_add(bytes);
}
