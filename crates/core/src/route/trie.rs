//! The lookup structure: a poptrie-like multibit trie, stride 8, not
//! leaf-pushed; four levels for IPv4 keys (u32), sixteen for IPv6 (u128).
//! The code is generic over the family (`RouteAddr`) and monomorphized, so
//! the IPv4 lookup is the same machine code as before IPv6 came.
//!
//! Each node has 256 slots. A slot's *leaf* names the best route whose
//! prefix length falls in the node's level range (level 0: /0../8, level 1:
//! /9../16, level 2: /17../24, level 3: /25../32, and so on) and which covers the slot;
//! a slot's *child* is the node one level down. Both are stored compactly:
//! children as a dense vector indexed by the rank of the slot in a child
//! bitmap; leaves run-length encoded, a bitmap marking the slots where a new
//! run of equal values starts. A lookup walks at most four nodes, each step
//! a couple of popcounts, keeping the best leaf seen so far.
//!
//! A leaf is a `u32`: the route's next-hop index (`nexthop.rs`) and its
//! prefix length, not a reference to the route: copying a node copies
//! integers and freeing one touches no reference count, and routes through
//! the same next hop side by side make one run.
//!
//! Nodes are immutable once published. The control thread updates by path
//! copying (`Spare::make_mut`, as `Arc::make_mut`): a node shared with the
//! published snapshot is copied, a node already copied since the last
//! publish is changed in place, so a batch of changes copies each node at
//! most once. The copy goes into the buffers of a node of a snapshot no
//! reader holds any more (`Spare`): a batch of a scattered withdrawal
//! copies a node per route, and the one before it freed as many, so the
//! allocator's slow paths were a third of the sync's CPU (BENCHMARKS §1
//! "Route sync", session 12). A node is recycled only when its `Arc` is
//! unshared, which the `Arc` proves: readers never wait.
//!
//! IPv6 (`RouteAddr::COMPRESS`): paths are compressed. A node that would
//! hold no route and have one child is left out: its parent points past it
//! to the first node below that is not such a node. Each node knows its
//! level and position (the key bits of the levels above it), so a lookup
//! that arrives at a node more than one level down compares the
//! destination with the position once: the skipped levels hold no route,
//! so a mismatch means no deeper match. A /48 alone under its /32 then
//! costs the walk to the /32's node and one step, and a table of /48s in
//! one /32 (2001:db8::/32) starts at level 4. An insert splits a skipping
//! edge with a node where its key leaves it (or where its route lives); a
//! delete that leaves a node without routes and with one child takes it
//! out. IPv4's four levels are walked as they are.

use super::family::RouteAddr;
use std::sync::Arc;

/// A leaf: the next-hop index (`nexthop.rs`) in the high 24 bits, the
/// route's prefix length in the low 8; 0 where no route covers the slot
/// (index 0 is never a route's). The length tells an insert whether a slot
/// holds a more specific route, and a delete which slots held the route
/// it takes out: in the slots a prefix covers at its level, a leaf of the
/// same length can only be that prefix's.
pub(crate) type Leaf = u32;

/// The leaf of next hop `nh` for a route of length `len`.
#[inline]
pub(crate) fn leaf(nh: u32, len: u8) -> Leaf {
    (nh << 8) | len as u32
}

/// The next-hop index of a leaf.
#[inline]
pub(crate) fn leaf_nh(l: Leaf) -> u32 {
    l >> 8
}

/// The prefix length of a leaf.
#[inline]
pub(crate) fn leaf_len(l: Leaf) -> u8 {
    l as u8
}

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

/// A pointer to a child node with the child's level beside it: a lookup
/// knows which byte of the destination picks the child's slot as soon as it
/// has read the pointer, without waiting for the child's own cache line
/// (IPv6's compressed edges make that level vary).
#[derive(Clone, Debug)]
struct Edge<A: RouteAddr> {
    node: Arc<Node<A>>,
    /// Always `node.level` (a node's level never changes).
    level: u8,
}

impl<A: RouteAddr> Edge<A> {
    fn new(node: Arc<Node<A>>) -> Self {
        Edge { level: node.level, node }
    }
}

/// The fields in the order a lookup reads them (`repr(C)`): every step
/// reads `some_bits`, `child_bits` and `children` (bytes 0..96, two
/// lines), a node reached over a skipping edge `pos` right after them,
/// and only the last node the run bits and `leaves`. (Rust's own order
/// put `pos` and the run bits between `some_bits` and `children`: a step
/// read bytes 0..152, three lines.)
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Node<A: RouteAddr> {
    /// Bit s set where slot s has a route: a lookup reads `leaves` only
    /// once, at the deepest level that has one, sparing a cache miss per
    /// level on the way down.
    some_bits: [u64; 4],
    child_bits: Bits,
    children: Vec<Edge<A>>,
    /// The key bits of the levels above this node (its position), and
    /// (below) its level: what a lookup checks after a skipping edge.
    pos: A::Bits,
    /// Bit s set where slot s starts a new run of equal leaves; bit 0 always.
    run_bits: Bits,
    leaves: Vec<Leaf>,
    level: u8,
}

impl<A: RouteAddr> Clone for Node<A> {
    fn clone(&self) -> Self {
        Node {
            child_bits: self.child_bits,
            children: self.children.clone(),
            run_bits: self.run_bits,
            some_bits: self.some_bits,
            leaves: self.leaves.clone(),
            level: self.level,
            pos: self.pos,
        }
    }

    /// A copy into `self`'s vectors, which keep their allocations (a spare
    /// node's, `Spare`).
    fn clone_from(&mut self, src: &Self) {
        self.child_bits = src.child_bits;
        self.children.clone_from(&src.children);
        self.run_bits = src.run_bits;
        self.some_bits = src.some_bits;
        self.leaves.clone_from(&src.leaves);
        self.level = src.level;
        self.pos = src.pos;
    }
}

/// Spare nodes kept at most (per family of a table): about what a batch
/// of a scattered withdrawal of a full BGP table copies. Past it, nodes
/// are freed.
const SPARE_MAX: usize = 4096;

/// The nodes of retired snapshots that nobody else holds, kept for the
/// copies of the next batch: the path copy of a node writes into a spare
/// node's allocation (and its vectors') instead of allocating, and
/// retiring a snapshot frees none of it. The control thread's alone.
pub(crate) struct Spare<A: RouteAddr> {
    nodes: Vec<Arc<Node<A>>>,
}

impl<A: RouteAddr> Default for Spare<A> {
    fn default() -> Self {
        Spare { nodes: Vec::new() }
    }
}

impl<A: RouteAddr> Spare<A> {
    /// `n` to change: itself if nobody else holds it (copied since the
    /// last publish), else a copy put in its place, in a spare node if
    /// there is one. `Arc::make_mut` without the allocation.
    pub(crate) fn make_mut<'a>(&mut self, n: &'a mut Arc<Node<A>>) -> &'a mut Node<A> {
        if Arc::get_mut(n).is_none() {
            let copy = match self.nodes.pop() {
                Some(mut spare) => {
                    Arc::get_mut(&mut spare).expect("spare nodes are unshared").clone_from(n);
                    spare
                }
                None => Arc::new((**n).clone()),
            };
            *n = copy;
        }
        Arc::get_mut(n).expect("unshared: just copied")
    }

    /// Takes back the subtree of a retired snapshot's `root`: each node
    /// that only its parent here holds (no reader, no newer trie can reach
    /// it) becomes spare, its children taken back first; a node still
    /// shared (with the working trie, or a snapshot a reader holds) just
    /// loses this reference.
    pub(crate) fn recycle(&mut self, mut n: Arc<Node<A>>) {
        let Some(node) = Arc::get_mut(&mut n) else { return };
        for e in node.children.drain(..) {
            self.recycle(e.node);
        }
        if self.nodes.len() < SPARE_MAX {
            self.nodes.push(n);
        }
    }

    /// Spare nodes held (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }
}

impl<A: RouteAddr> Default for Node<A> {
    /// The root.
    fn default() -> Self {
        Node::at(0, A::ZERO_BITS)
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
pub(crate) fn level_min(level: u8) -> u8 {
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
    /// An empty node at `level`, position `pos`.
    fn at(level: u8, pos: A::Bits) -> Self {
        let mut run_bits = Bits::default();
        run_bits.set(0);
        Node {
            child_bits: Bits::default(),
            children: Vec::new(),
            run_bits,
            some_bits: [0; 4],
            leaves: vec![0],
            level,
            pos,
        }
    }

    /// No route and exactly one child: a node path compression leaves out.
    fn is_passthrough(&self) -> bool {
        self.children.len() == 1 && self.leaves.len() == 1 && self.leaves[0] == 0
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.leaves.len() == 1 && self.leaves[0] == 0
    }

    #[inline]
    fn leaf(&self, s: usize) -> Leaf {
        self.leaves[self.run_bits.rank_through(s) - 1]
    }

    #[inline]
    fn child(&self, s: usize) -> Option<&Edge<A>> {
        if self.child_bits.test(s) {
            Some(&self.children[self.child_bits.rank_below(s)])
        } else {
            None
        }
    }

    /// Rewrites the leaves of slots `lo..=hi`: `f(old)` gives the new value,
    /// or `None` to keep the old one. Runs are re-encoded.
    fn rewrite_leaves(&mut self, lo: usize, hi: usize, f: impl Fn(Leaf) -> Option<Leaf>) {
        if lo == hi {
            // One slot (a /8, /16, /24, /32 ... prefix): most routes.
            if let Some(v) = f(self.leaf(lo)) {
                self.rewrite_slot(lo, v);
            }
            return;
        }
        self.rewrite_range(lo, hi, f);
    }

    /// `rewrite_leaves` of one slot `s` to `v`: only the run boundaries at
    /// `s` and `s + 1` can change, so the runs there are spliced in place
    /// (a withdrawn /24 costs a few moves, not a pass over 256 slots).
    fn rewrite_slot(&mut self, s: usize, v: Leaf) {
        if self.leaf(s) == v {
            return;
        }
        let has_next = s + 1 < SLOTS;
        // A run starts at s (bit 0 is always set) / at s + 1, before and after.
        let old_s = self.run_bits.test(s);
        let old_n = has_next && self.run_bits.test(s + 1);
        let new_s = s == 0 || self.leaf(s - 1) != v;
        let next = if has_next { self.leaf(s + 1) } else { 0 };
        let new_n = has_next && next != v;
        // The entries of the runs starting at s and s + 1, old and new.
        let k = self.run_bits.rank_below(s);
        let seg = [new_s.then_some(v), new_n.then_some(next)];
        self.leaves.splice(k..k + usize::from(old_s) + usize::from(old_n), seg.into_iter().flatten());
        for (slot, on) in [(s, new_s), (s + 1, new_n)] {
            if slot < SLOTS {
                let bit = 1u64 << (slot & 63);
                if on {
                    self.run_bits.words[slot >> 6] |= bit;
                } else {
                    self.run_bits.words[slot >> 6] &= !bit;
                }
            }
        }
        self.run_bits.recount();
        let bit = 1u64 << (s & 63);
        if v != 0 {
            self.some_bits[s >> 6] |= bit;
        } else {
            self.some_bits[s >> 6] &= !bit;
        }
    }

    /// `rewrite_leaves` of a range of slots: every run re-encoded.
    fn rewrite_range(&mut self, lo: usize, hi: usize, f: impl Fn(Leaf) -> Option<Leaf>) {
        let mut vals = [0 as Leaf; SLOTS];
        let mut run = 0usize;
        for (s, v) in vals.iter_mut().enumerate() {
            if s > 0 && self.run_bits.test(s) {
                run += 1;
            }
            let cur = self.leaves[run];
            *v = if (lo..=hi).contains(&s) { f(cur).unwrap_or(cur) } else { cur };
        }
        let mut bits = Bits::default();
        let mut some = [0u64; 4];
        self.leaves.clear();
        for s in 0..SLOTS {
            if vals[s] != 0 {
                some[s >> 6] |= 1u64 << (s & 63);
            }
            if s == 0 || vals[s] != vals[s - 1] {
                bits.words[s >> 6] |= 1u64 << (s & 63);
                self.leaves.push(vals[s]);
            }
        }
        bits.recount();
        self.run_bits = bits;
        self.some_bits = some;
    }

    /// Number of nodes in this subtree (for tests and statistics).
    pub(crate) fn node_count(&self) -> usize {
        1 + self.children.iter().map(|c| c.node.node_count()).sum::<usize>()
    }
}

/// Longest-prefix match from `root`: at most `A::LEVELS` nodes, no
/// allocation; the leaf found (never 0). `dst` is a key (scope embedded).
#[inline]
pub(crate) fn lookup<A: RouteAddr>(root: &Node<A>, dst: A::Bits) -> Option<Leaf> {
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
                    // A skipping edge: the levels between hold no route.
                    if c.level != level + 1 && A::mask_bits(dst, c.level * 8) != c.node.pos {
                        break;
                    }
                    level = c.level;
                } else {
                    level += 1;
                }
                node = &c.node;
            }
            _ => break,
        }
    }
    best.map(|(n, s)| n.leaf(s))
}

/// The IPv4 lookup, the generic one spelled out for u32 keys: compiled on
/// its own, LLVM keeps the branches of the pre-IPv6 code (the generic
/// instance turned the best-route tracking into conditional moves, which
/// made the leaf load wait for every level's bitmap: +2 ns of ~14 on a hot
/// lookup).
#[inline]
pub(crate) fn lookup4(root: &Node<std::net::Ipv4Addr>, dst: u32) -> Option<Leaf> {
    let mut node = root;
    let mut best: Option<(&Node<std::net::Ipv4Addr>, usize)> = None;
    let mut level = 0u8;
    loop {
        let s = ((dst >> (24 - 8 * level as u32)) & 0xff) as usize;
        if node.some_bits[s >> 6] & (1u64 << (s & 63)) != 0 {
            best = Some((node, s));
        }
        match node.child(s) {
            Some(c) if level + 1 < 4 => {
                node = &c.node;
                level += 1;
            }
            _ => break,
        }
    }
    best.map(|(n, s)| n.leaf(s))
}

/// The IPv6 lookup, the generic one spelled out for u128 keys: slots are
/// the destination's bytes (no 128-bit shifts), and a node reached over a
/// skipping edge is checked against its position.
#[inline]
pub(crate) fn lookup6(root: &Node<std::net::Ipv6Addr>, dst: u128) -> Option<Leaf> {
    let bytes = dst.to_be_bytes();
    let mut node = root;
    let mut best: Option<(&Node<std::net::Ipv6Addr>, usize)> = None;
    let mut level = 0usize;
    let mut s;
    loop {
        s = bytes[level] as usize;
        if node.some_bits[s >> 6] & (1u64 << (s & 63)) != 0 {
            best = Some((node, s));
        }
        match node.child(s) {
            Some(c) if level + 1 < 16 => {
                // The next level is this one plus one unless the edge
                // skips: a predicted branch, so the next slot does not wait
                // for the edge's load (written as `>`, not `!=`, so that
                // LLVM cannot take the loaded level for `level + 1`).
                if c.level as usize > level + 1 {
                    if dst & super::family::prefix_mask6(c.level * 8) != c.node.pos {
                        break;
                    }
                    level = c.level as usize;
                } else {
                    level += 1;
                }
                node = &c.node;
            }
            _ => break,
        }
    }
    // Mostly the last node holds the route: a branch on it lets the leaf
    // load start without waiting for `best`, which LLVM keeps in
    // conditional moves that depend on every level's bitmap.
    if node.some_bits[s >> 6] & (1u64 << (s & 63)) != 0 {
        return Some(node.leaf(s));
    }
    best.map(|(n, s)| n.leaf(s))
}

/// Puts leaf `l` (of a route `key/len`) into the trie, replacing in each
/// slot it covers a route of its level that is no more specific (an equal
/// key is the route it replaces).
pub(crate) fn insert<A: RouteAddr>(root: &mut Arc<Node<A>>, spare: &mut Spare<A>, key: A::Bits, len: u8, l: Leaf) {
    insert_at(spare.make_mut(root), spare, 0, key, len, l);
}

fn insert_at<A: RouteAddr>(node: &mut Node<A>, spare: &mut Spare<A>, level: u8, key: A::Bits, len: u8, h: Leaf) {
    let target = level_of(len);
    if level == target {
        let (lo, hi) = slot_range::<A>(key, len);
        // An empty slot's leaf (0) has length 0: never more specific.
        node.rewrite_leaves(lo, hi, |old| (leaf_len(old) <= len).then_some(h));
        return;
    }
    let s = A::slot(key, level);
    let i = node.child_bits.rank_below(s);
    if !node.child_bits.test(s) {
        // A new branch: compressed, it starts right where the route lives.
        let at = if A::COMPRESS { target } else { level + 1 };
        node.children.insert(i, Edge::new(Arc::new(Node::at(at, A::mask_bits(key, at * 8)))));
        node.child_bits.set(s);
    } else if A::COMPRESS {
        let (c_level, c_pos) = (node.children[i].level, node.children[i].node.pos);
        // Where the key leaves the skipping edge, or where the route lives
        // if that is above the child: a node goes in there.
        let split = (level + 1..c_level).find(|&l| l == target || A::slot(key, l) != A::slot(c_pos, l));
        if let Some(m) = split {
            let mut mid = Node::at(m, A::mask_bits(key, m * 8));
            mid.child_bits.set(A::slot(c_pos, m));
            mid.children.push(node.children[i].clone());
            node.children[i] = Edge::new(Arc::new(mid));
        }
    }
    let child = spare.make_mut(&mut node.children[i].node);
    let l = child.level;
    insert_at(child, spare, l, key, len, h);
}

/// Takes the route `key/len` out of the trie: the slots that held it get
/// `replacement`, the leaf of the next best route of the same level
/// covering its block (0 for none); nodes left empty are pruned.
pub(crate) fn remove<A: RouteAddr>(
    root: &mut Arc<Node<A>>,
    spare: &mut Spare<A>,
    key: A::Bits,
    len: u8,
    replacement: Leaf,
) {
    remove_at(spare.make_mut(root), spare, 0, key, len, replacement);
}

/// Returns true when `node` is left empty.
fn remove_at<A: RouteAddr>(
    node: &mut Node<A>,
    spare: &mut Spare<A>,
    level: u8,
    key: A::Bits,
    len: u8,
    replacement: Leaf,
) -> bool {
    if level == level_of(len) {
        let (lo, hi) = slot_range::<A>(key, len);
        // In the block of `key/len` at its level, a non-empty leaf of
        // length `len` can only be this route's.
        node.rewrite_leaves(lo, hi, |old| (old != 0 && leaf_len(old) == len).then_some(replacement));
    } else {
        let s = A::slot(key, level);
        if node.child_bits.test(s) {
            let i = node.child_bits.rank_below(s);
            let c = &node.children[i];
            // Past a skipping edge only if the route can be below it.
            if c.level > level_of(len) || A::mask_bits(key, c.level * 8) != c.node.pos {
                return node.is_empty();
            }
            let child = spare.make_mut(&mut node.children[i].node);
            let l = child.level;
            if remove_at(child, spare, l, key, len, replacement) {
                spare.recycle(node.children.remove(i).node);
                node.child_bits.clear(s);
            } else if A::COMPRESS && node.children[i].node.is_passthrough() {
                // Left with no route and one child: point past it.
                let grandchild = node.children[i].node.children[0].clone();
                spare.recycle(std::mem::replace(&mut node.children[i], grandchild).node);
            }
        }
    }
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

    /// The one-slot splice against the full re-encoding: the same runs,
    /// the same values, the same route bits, over a fixed-seed random
    /// sequence of one-slot and range rewrites (values from a small set, so
    /// runs merge and split).
    #[test]
    fn one_slot_rewrite_matches_the_full_reencoding() {
        use std::net::Ipv4Addr;
        let routes: Vec<Leaf> = (1..5u32).map(|i| leaf(i, 16)).collect();
        let encoding = |n: &Node<Ipv4Addr>| (n.run_bits.words, n.run_bits.before, n.some_bits, n.leaves.clone());
        let (mut fast, mut full) = (Node::<Ipv4Addr>::default(), Node::<Ipv4Addr>::default());
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m) as usize
        };
        for _ in 0..20_000 {
            let v = match rnd(5) {
                4 => 0,
                i => routes[i],
            };
            // Mostly slots near the ends and next to each other.
            let s = match rnd(4) {
                0 => rnd(3),
                1 => 255 - rnd(3),
                _ => 100 + rnd(8),
            };
            if rnd(6) == 0 {
                // A range write brings runs longer than one slot.
                let hi = (s + rnd(40)).min(255);
                fast.rewrite_leaves(s, hi, |_| Some(v));
                full.rewrite_range(s, hi, |_| Some(v));
            } else {
                fast.rewrite_leaves(s, s, |_| Some(v));
                full.rewrite_range(s, s, |_| Some(v));
            }
            assert_eq!(encoding(&fast), encoding(&full), "slot {s}");
            // Runs are maximal: no two neighbours hold the same leaf.
            assert!(fast.leaves.windows(2).all(|w| w[0] != w[1]));
        }
    }

    /// Spare nodes are the retired trie's nodes nobody else holds: the
    /// ones still shared with the working trie stay where they are, and
    /// copies made from spares leave held tries as they were.
    #[test]
    fn spare_nodes_come_only_from_unshared_retired_nodes() {
        use std::net::Ipv4Addr;
        let net = |b: u32| 0x0a00_0100 | (b << 16); // 10.b.1.0
        let mut spare = Spare::<Ipv4Addr>::default();
        let mut root = Arc::new(Node::default());
        for b in 0..4 {
            insert(&mut root, &mut spare, net(b), 24, leaf(1, 24));
        }
        let published = root.clone();
        // Copies root, 10/8 and 10.0/16; 10.0/16 is left empty and taken
        // out, and its copy, only the working trie's, is spare at once.
        remove(&mut root, &mut spare, net(0), 24, 0);
        assert_eq!(spare.len(), 1);
        assert_eq!(root.node_count(), 5);
        // The snapshot retired: its root, 10/8 and 10.0/16 were its own;
        // 10.1-10.3/16 are still the working trie's.
        spare.recycle(published);
        assert_eq!(spare.len(), 4);
        for b in 1..4 {
            assert_eq!(lookup4(&root, net(b) + 7), Some(leaf(1, 24)), "shared node kept");
        }
        let held = root.clone();
        remove(&mut root, &mut spare, net(1), 24, 0);
        assert_eq!(spare.len(), 2, "three copies from spares, the emptied one back");
        assert_eq!(lookup4(&root, net(1) + 7), None);
        assert_eq!(lookup4(&held, net(1) + 7), Some(leaf(1, 24)), "the held trie unchanged");
        assert_eq!(lookup4(&root, net(2) + 7), Some(leaf(1, 24)));
        assert_eq!((held.node_count(), root.node_count()), (5, 4));
    }

    #[test]
    fn a_leaf_packs_the_next_hop_and_the_length() {
        let l = leaf(0x00ab_cdef, 128);
        assert_eq!((leaf_nh(l), leaf_len(l)), (0x00ab_cdef, 128));
        assert_eq!(leaf(0, 0), 0, "no route");
        assert_ne!(leaf(1, 0), 0, "a default route is a route");
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
