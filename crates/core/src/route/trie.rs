//! The lookup structure: a poptrie-like multibit trie, stride 8, not
//! leaf-pushed; four levels for IPv4 keys (u32), sixteen for IPv6 (u128).
//! The code is generic over the family (`RouteAddr`) and monomorphized, so
//! the IPv4 lookup is the same machine code as before IPv6 came.
//!
//! Each node has 256 slots. A slot's *leaf* holds the best route whose
//! prefix length falls in the node's level range (level 0: /0../8, level 1:
//! /9../16, level 2: /17../24, level 3: /25../32, and so on) and which covers the slot;
//! a slot's *child* is the node one level down. Both are stored compactly:
//! children as a dense vector indexed by the rank of the slot in a child
//! bitmap; leaves run-length encoded, a bitmap marking the slots where a new
//! run of equal values starts. A lookup walks at most four nodes, each step
//! a couple of popcounts, keeping the best leaf seen so far.
//!
//! Nodes are immutable once published. The control thread updates by path
//! copying with `Arc::make_mut`: a node shared with the published snapshot
//! is copied, a node already copied since the last publish is changed in
//! place, so a batch of changes copies each node at most once.
//!
//! IPv6 (`RouteAddr::COMPRESS`): a node that holds no route and has one
//! child starts a *chain*; it keeps a reference to the first node below
//! the run that is not such a node, and the key bits leading there. A
//! lookup reaching the head of a chain compares the destination with those
//! bits once and jumps: the run holds no route, so a mismatch means no
//! deeper match. A /48 alone in its /32 costs a walk to level 3 and one
//! jump instead of six levels. Every change recomputes the chains of the
//! nodes on its path, bottom-up.

use super::family::RouteAddr;
use super::Route;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The table's hold on a route. The trie may repeat a route in several
/// leaves and snapshots; they all share this one handle, so the table owns
/// exactly one strong reference of the `Arc<Route>` inside (see `Refs` in
/// netstat).
pub(crate) type Held<A> = Arc<Arc<Route<A>>>;

/// Key of the authoritative map: (network address, prefix length), the
/// address with its scope embedded (`family.rs`). Its order is the order
/// `netstat -rn` prints.
pub(crate) type Key<A> = (<A as RouteAddr>::Bits, u8);

const SLOTS: usize = 256;

/// A 256-bit bitmap with the popcount of the words before each word, so a
/// rank is one popcount.
#[derive(Clone, Copy, Default, Debug)]
struct Bits {
    words: [u64; 4],
    before: [u16; 4],
}

impl Bits {
    #[inline]
    fn test(&self, s: usize) -> bool {
        self.words[s >> 6] & (1u64 << (s & 63)) != 0
    }
    /// Set bits strictly below `s`.
    #[inline]
    fn rank_below(&self, s: usize) -> usize {
        let w = s >> 6;
        let below = (1u64 << (s & 63)) - 1;
        self.before[w] as usize + (self.words[w] & below).count_ones() as usize
    }
    /// Set bits at or below `s`.
    #[inline]
    fn rank_through(&self, s: usize) -> usize {
        let w = s >> 6;
        let through = u64::MAX >> (63 - (s & 63));
        self.before[w] as usize + (self.words[w] & through).count_ones() as usize
    }
    fn set(&mut self, s: usize) {
        self.words[s >> 6] |= 1u64 << (s & 63);
        self.recount();
    }
    fn clear(&mut self, s: usize) {
        self.words[s >> 6] &= !(1u64 << (s & 63));
        self.recount();
    }
    fn recount(&mut self) {
        let mut n = 0u16;
        for w in 0..4 {
            self.before[w] = n;
            n += self.words[w].count_ones() as u16;
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Node<A: RouteAddr> {
    child_bits: Bits,
    children: Vec<Arc<Node<A>>>,
    /// Bit s set where slot s starts a new run of equal leaves; bit 0 always.
    run_bits: Bits,
    /// Bit s set where slot s has a route: a lookup reads `leaves` only
    /// once, at the deepest level that has one, sparing a cache miss per
    /// level on the way down.
    some_bits: [u64; 4],
    leaves: Vec<Option<Held<A>>>,
    /// Set when this node holds no route and has exactly one child (and
    /// the family compresses paths): where a lookup jumps to.
    chain: Option<Chain<A>>,
}

/// A run of nodes without routes and with one child each, seen from its
/// first node (at level L): the run ends at `end`, at level L + `skip`,
/// whose position is `prefix` (the key bits of the levels above it).
#[derive(Clone, Debug)]
struct Chain<A: RouteAddr> {
    end: Arc<Node<A>>,
    skip: u8,
    prefix: A::Bits,
}

impl<A: RouteAddr> Default for Node<A> {
    fn default() -> Self {
        let mut run_bits = Bits::default();
        run_bits.set(0);
        Node {
            child_bits: Bits::default(),
            children: Vec::new(),
            run_bits,
            some_bits: [0; 4],
            leaves: vec![None],
            chain: None,
        }
    }
}

fn same<A: RouteAddr>(a: Option<&Held<A>>, b: Option<&Held<A>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

/// Level a prefix length belongs to.
#[inline]
pub(crate) fn level_of(len: u8) -> u8 {
    if len == 0 {
        0
    } else {
        (len - 1) / 8
    }
}

/// Shortest prefix length stored at `level`.
fn level_min(level: u8) -> u8 {
    if level == 0 {
        0
    } else {
        level * 8 + 1
    }
}

/// Slots a prefix covers in the node of its level.
fn slot_range<A: RouteAddr>(key: A::Bits, len: u8) -> (usize, usize) {
    let level = level_of(len);
    let within = len - level * 8; // 0..=8
    let lo = A::slot(key, level);
    (lo, lo + (1usize << (8 - within)) - 1)
}

impl<A: RouteAddr> Node<A> {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.leaves.len() == 1 && self.leaves[0].is_none()
    }

    #[inline]
    fn leaf(&self, s: usize) -> Option<&Held<A>> {
        self.leaves[self.run_bits.rank_through(s) - 1].as_ref()
    }

    #[inline]
    fn child(&self, s: usize) -> Option<&Node<A>> {
        if self.child_bits.test(s) {
            Some(&self.children[self.child_bits.rank_below(s)])
        } else {
            None
        }
    }

    fn child_mut_or_create(&mut self, s: usize) -> &mut Node<A> {
        let i = self.child_bits.rank_below(s);
        if !self.child_bits.test(s) {
            self.children.insert(i, Arc::new(Node::default()));
            self.child_bits.set(s);
        }
        Arc::make_mut(&mut self.children[i])
    }

    /// Rewrites the leaves of slots `lo..=hi`: `f(old)` gives the new value,
    /// or `None` to keep the old one. Runs are re-encoded; only run heads
    /// are cloned, so this costs no reference-count traffic per slot.
    fn rewrite_leaves<'a>(
        &mut self,
        lo: usize,
        hi: usize,
        f: impl Fn(Option<&Held<A>>) -> Option<Option<&'a Held<A>>>,
    ) {
        let old = std::mem::take(&mut self.leaves);
        let mut vals: [Option<&Held<A>>; SLOTS] = [None; SLOTS];
        let mut run = 0usize;
        for (s, v) in vals.iter_mut().enumerate() {
            if s > 0 && self.run_bits.test(s) {
                run += 1;
            }
            let cur = old[run].as_ref();
            *v = if (lo..=hi).contains(&s) { f(cur).unwrap_or(cur) } else { cur };
        }
        let mut bits = Bits::default();
        let mut some = [0u64; 4];
        let mut leaves = Vec::with_capacity(old.len() + 2);
        for s in 0..SLOTS {
            if vals[s].is_some() {
                some[s >> 6] |= 1u64 << (s & 63);
            }
            if s == 0 || !same(vals[s], vals[s - 1]) {
                bits.words[s >> 6] |= 1u64 << (s & 63);
                leaves.push(vals[s].cloned());
            }
        }
        bits.recount();
        self.run_bits = bits;
        self.some_bits = some;
        self.leaves = leaves;
    }

    /// Recomputes this node's chain (it sits at `level`, `pos` the key bits
    /// of the levels above it); its child's chain is already up to date.
    fn recompute_chain(&mut self, level: u8, pos: A::Bits) {
        self.chain = None;
        if !A::COMPRESS || level == 0 || self.children.len() != 1 || self.leaves.len() != 1 || self.leaves[0].is_some()
        {
            return;
        }
        let s = (0..4)
            .find_map(|w| {
                (self.child_bits.words[w] != 0).then(|| w * 64 + self.child_bits.words[w].trailing_zeros() as usize)
            })
            .expect("one child");
        let child = &self.children[0];
        self.chain = Some(match &child.chain {
            Some(c) => Chain { end: c.end.clone(), skip: c.skip + 1, prefix: c.prefix },
            None => Chain { end: child.clone(), skip: 1, prefix: A::with_slot(pos, level, s) },
        });
    }

    /// Number of nodes in this subtree (for tests and statistics).
    pub(crate) fn node_count(&self) -> usize {
        1 + self.children.iter().map(|c| c.node_count()).sum::<usize>()
    }
}

/// Longest-prefix match from `root`: at most `A::LEVELS` nodes, no
/// allocation. `dst` is a key (scope embedded).
#[inline]
pub(crate) fn lookup<A: RouteAddr>(root: &Node<A>, dst: A::Bits) -> Option<&Arc<Route<A>>> {
    let mut node = root;
    let mut best: Option<(&Node<A>, usize)> = None;
    let mut level = 0u8;
    loop {
        let s = A::slot(dst, level);
        if node.some_bits[s >> 6] & (1u64 << (s & 63)) != 0 {
            best = Some((node, s));
        }
        match node.child(s) {
            Some(c) if level + 1 < A::LEVELS => {
                if A::COMPRESS {
                    if let Some(ch) = &c.chain {
                        let to = level + 1 + ch.skip;
                        if A::mask_bits(dst, to * 8) != ch.prefix {
                            break;
                        }
                        node = &ch.end;
                        level = to;
                        continue;
                    }
                }
                node = c;
                level += 1;
            }
            _ => break,
        }
    }
    best.and_then(|(n, s)| n.leaf(s)).map(|h| &**h)
}

/// Puts `h` (for `key/len`) into the trie, replacing in each slot it covers
/// a route of its level that is no more specific (an equal key is the
/// route it replaces).
pub(crate) fn insert<A: RouteAddr>(root: &mut Arc<Node<A>>, key: A::Bits, len: u8, h: &Held<A>) {
    insert_at(Arc::make_mut(root), 0, key, len, h);
}

fn insert_at<A: RouteAddr>(node: &mut Node<A>, level: u8, key: A::Bits, len: u8, h: &Held<A>) {
    // Let go of the chain first: its reference to a node below would make
    // `make_mut` copy that node although nothing else holds it.
    node.chain = None;
    if level == level_of(len) {
        let (lo, hi) = slot_range::<A>(key, len);
        node.rewrite_leaves(lo, hi, |old| match old {
            Some(o) if o.prefix_len > len => None,
            _ => Some(Some(h)),
        });
    } else {
        insert_at(node.child_mut_or_create(A::slot(key, level)), level + 1, key, len, h);
    }
    node.recompute_chain(level, A::mask_bits(key, level * 8));
}

/// Takes `gone` (for `key/len`, already removed from `map`) out of the
/// trie: the slots that held it get the next best route of the same level
/// from `map`; nodes left empty are pruned.
pub(crate) fn remove<A: RouteAddr>(
    root: &mut Arc<Node<A>>,
    map: &BTreeMap<Key<A>, Held<A>>,
    key: A::Bits,
    len: u8,
    gone: &Held<A>,
) {
    let level = level_of(len);
    // Every slot that held `gone` is inside its block, so one shorter prefix
    // of the same level covering the block replaces it everywhere.
    let replacement = (level_min(level)..len).rev().find_map(|l| map.get(&(A::mask_bits(key, l), l)));
    remove_at(Arc::make_mut(root), 0, key, len, gone, replacement);
}

/// Returns true when `node` is left empty.
fn remove_at<A: RouteAddr>(
    node: &mut Node<A>,
    level: u8,
    key: A::Bits,
    len: u8,
    gone: &Held<A>,
    replacement: Option<&Held<A>>,
) -> bool {
    node.chain = None;
    if level == level_of(len) {
        let (lo, hi) = slot_range::<A>(key, len);
        node.rewrite_leaves(lo, hi, |old| if same(old, Some(gone)) { Some(replacement) } else { None });
    } else {
        let s = A::slot(key, level);
        if node.child_bits.test(s) {
            let i = node.child_bits.rank_below(s);
            let child = Arc::make_mut(&mut node.children[i]);
            if remove_at(child, level + 1, key, len, gone, replacement) {
                node.children.remove(i);
                node.child_bits.clear(s);
            }
        }
    }
    node.recompute_chain(level, A::mask_bits(key, level * 8));
    node.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_rank_counts_across_words() {
        let mut b = Bits::default();
        for s in [0, 63, 64, 200, 255] {
            b.set(s);
        }
        assert_eq!(b.rank_below(0), 0);
        assert_eq!(b.rank_through(0), 1);
        assert_eq!(b.rank_below(64), 2);
        assert_eq!(b.rank_through(64), 3);
        assert_eq!(b.rank_through(255), 5);
        b.clear(63);
        assert_eq!(b.rank_through(255), 4);
        assert!(!b.test(63) && b.test(64));
    }

    #[test]
    fn slot_range_of_each_level() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        assert_eq!(slot_range::<Ipv4Addr>(0, 0), (0, 255));
        assert_eq!(slot_range::<Ipv4Addr>(0x0a00_0000, 8), (10, 10));
        assert_eq!(slot_range::<Ipv4Addr>(0x0a80_0000, 9), (128, 255));
        assert_eq!(slot_range::<Ipv4Addr>(0x0a00_0100, 24), (1, 1));
        assert_eq!(slot_range::<Ipv4Addr>(0x0a00_01f0, 28), (0xf0, 0xff));
        assert_eq!(slot_range::<Ipv4Addr>(0x0a00_0107, 32), (7, 7));
        let k = u128::from("2001:db8:0:f0::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(slot_range::<Ipv6Addr>(k, 60), (0xf0, 0xff));
        assert_eq!(slot_range::<Ipv6Addr>(k, 64), (0xf0, 0xf0));
        assert_eq!(slot_range::<Ipv6Addr>(0, 0), (0, 255));
    }
}
