//! The sender's SACK scoreboard (RFC 2018) and RFC 6675's loss recovery
//! helpers: IsLost, SetPipe, NextSeg rules 1 and 3 (rule 2, new data, is
//! the connection's). Bounded: a fixed number of blocks, allocated at the
//! first SACK block (a connection without loss never does).

use crate::Seq;

/// RFC 6675 DupThresh.
pub const DUP_THRESH: usize = 3;

pub struct Scoreboard {
    /// SACKed ranges above SND.UNA, sorted, disjoint.
    blocks: Vec<(Seq, Seq)>,
    max: usize,
}

impl Scoreboard {
    pub fn new(max_blocks: usize) -> Scoreboard {
        Scoreboard { blocks: Vec::new(), max: max_blocks.max(1) }
    }
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
    pub fn clear(&mut self) {
        self.blocks.clear();
    }
    pub fn blocks(&self) -> &[(Seq, Seq)] {
        &self.blocks
    }

    /// Drops what SND.UNA now covers and records the ACK's blocks that lie
    /// within (SND.UNA, SND.MAX]; returns whether anything new was SACKed.
    pub fn update(&mut self, una: Seq, snd_max: Seq, ranges: &[Option<(u32, u32)>; 3]) -> bool {
        self.blocks.retain(|b| b.1.gt(una));
        for b in self.blocks.iter_mut() {
            b.0 = b.0.max(una);
        }
        let before = self.sacked_above(una);
        for &(l, r) in ranges.iter().flatten() {
            let (l, r) = (Seq(l), Seq(r));
            if !l.lt(r) || l.lt(una) || r.gt(snd_max) {
                continue;
            }
            self.insert(l, r);
        }
        self.sacked_above(una) > before
    }

    fn insert(&mut self, s: Seq, e: Seq) {
        let lo = self.blocks.iter().position(|b| b.1.ge(s)).unwrap_or(self.blocks.len());
        let hi = self.blocks.iter().rposition(|b| b.0.le(e)).map_or(0, |i| i + 1);
        if lo >= hi {
            if self.blocks.len() < self.max {
                if self.blocks.capacity() == 0 {
                    self.blocks.reserve_exact(self.max);
                }
                self.blocks.insert(lo, (s, e));
            }
        } else {
            let ns = self.blocks[lo].0.min(s);
            let ne = self.blocks[hi - 1].1.max(e);
            self.blocks[lo] = (ns, ne);
            self.blocks.drain(lo + 1..hi);
        }
    }

    /// SACKed bytes at or above `seq`.
    pub fn sacked_above(&self, seq: Seq) -> usize {
        self.blocks.iter().map(|b| b.1.since(b.0.max(seq))).sum()
    }

    /// RFC 6675 IsLost: more than (DupThresh - 1) * SMSS bytes SACKed above.
    pub fn is_lost(&self, seq: Seq, smss: usize) -> bool {
        self.sacked_above(seq) > (DUP_THRESH - 1) * smss
    }

    pub fn is_sacked(&self, seq: Seq) -> bool {
        self.blocks.iter().any(|b| seq.in_range(b.0, b.1))
    }

    /// The un-SACKed ranges in [una, high_data).
    fn holes(&self, una: Seq, high_data: Seq) -> impl Iterator<Item = (Seq, Seq)> + '_ {
        let mut at = una;
        self.blocks.iter().map(Some).chain(core::iter::once(None)).filter_map(move |b| {
            let end = b.map_or(high_data, |b| b.0.min(high_data));
            let hole = (at.lt(end)).then_some((at, end));
            if let Some(b) = b {
                at = at.max(b.1);
            }
            hole
        })
    }

    /// RFC 6675 SetPipe: un-SACKed bytes not deemed lost, plus bytes
    /// retransmitted (below HighRxt).
    pub fn pipe(&self, una: Seq, high_data: Seq, high_rxt: Seq, smss: usize) -> usize {
        let mut pipe = 0;
        for (s, e) in self.holes(una, high_data) {
            let rxt = high_rxt.min(e).since(s);
            if !self.is_lost(s, smss) {
                pipe += e.since(s);
            }
            pipe += rxt;
        }
        pipe
    }

    /// RFC 6675 NextSeg rule 1 (a lost, un-SACKed range at or above
    /// HighRxt) or, with `rule3`, rule 3 (any un-SACKed range above it).
    pub fn next_seg(&self, una: Seq, high_data: Seq, high_rxt: Seq, smss: usize, rule3: bool) -> Option<(Seq, usize)> {
        for (s, e) in self.holes(una, high_data) {
            let s = s.max(high_rxt);
            if !s.lt(e) {
                continue;
            }
            if rule3 || self.is_lost(s, smss) {
                return Some((s, e.since(s).min(smss)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(v: &[(u32, u32)]) -> [Option<(u32, u32)>; 3] {
        let mut b = [None; 3];
        for (i, x) in v.iter().enumerate() {
            b[i] = Some(*x);
        }
        b
    }

    #[test]
    fn scoreboard_loss_pipe_and_nextseg() {
        // 10 segments of 100 bytes from 1000; 1000..1100 lost, rest SACKed up to 1500.
        let mut sb = Scoreboard::new(8);
        let (una, max) = (Seq(1000), Seq(2000));
        assert!(sb.update(una, max, &blocks(&[(1100, 1200)])));
        assert!(!sb.is_lost(una, 100), "one SACKed segment is not enough");
        assert!(sb.update(una, max, &blocks(&[(1200, 1400), (5000, 6000)])));
        assert_eq!(sb.blocks(), &[(Seq(1100), Seq(1400))], "a block past SND.MAX is ignored");
        assert!(sb.is_lost(una, 100), "300 bytes above > 2*SMSS");
        // Pipe: hole 1000..1100 lost (0) + hole 1400..2000 not lost (600).
        assert_eq!(sb.pipe(una, max, una, 100), 600);
        assert_eq!(sb.next_seg(una, max, una, 100, false), Some((Seq(1000), 100)));
        // After retransmitting it, HighRxt = 1100: it counts once more.
        assert_eq!(sb.pipe(una, max, Seq(1100), 100), 700);
        assert_eq!(sb.next_seg(una, max, Seq(1100), 100, false), None);
        assert_eq!(sb.next_seg(una, max, Seq(1100), 100, true), Some((Seq(1400), 100)));
        // A cumulative ACK past the block empties it.
        sb.update(Seq(1500), max, &[None; 3]);
        assert!(sb.is_empty());
    }

    #[test]
    fn bounded_blocks() {
        let mut sb = Scoreboard::new(4);
        for i in 0..100u32 {
            sb.update(Seq(0), Seq(100_000), &blocks(&[(10 + 20 * i, 20 + 20 * i)]));
        }
        assert_eq!(sb.blocks().len(), 4);
    }
}
