//! Rule counters: per worker, per rule, in and out (pf's `packets[2]`,
//! `bytes[2]`, evaluations, states), summed by the views.

use super::*;

/// A rule's packet counters as one worker keeps them. Packets and bytes
/// are split by the packet's direction, as pf's `packets[2]`/`bytes[2]`
/// (`[DIR_IN]`, `[DIR_OUT]`, pf_counters_inc's `pd->dir == PF_OUT`).
#[derive(Default)]
pub struct RuleStats {
    pub packets: [Counter; 2],
    pub bytes: [Counter; 2],
    pub states_created: Counter,
}

impl RuleStats {
    /// Counts one packet of `len` bytes going `dir`.
    #[inline]
    pub fn count(&self, dir: softnet_core::filter::Direction, len: u64) {
        let d = (dir == softnet_core::filter::Direction::Out) as usize;
        self.packets[d].inc();
        self.bytes[d].add(len);
    }
}

/// One worker's rule counters: contiguous arrays indexed by rule number,
/// allocated with the ruleset.
///
/// Evaluations are kept as a difference array: a packet that evaluates
/// the consecutive rules `a..b` adds 1 at `a` and subtracts 1 at `b`
/// (wrapping), so a run of rules costs two writes however long it is; a
/// rule's count is the prefix sum up to it.
pub struct WorkerRuleCounters {
    evals: Box<[Counter]>,
    stats: Box<[RuleStats]>,
}

/// Per-rule counters of a ruleset, one `WorkerRuleCounters` per worker
/// (each cache-line aligned, written only by its worker).
pub struct RuleCounters {
    workers: Box<[CacheAligned<WorkerRuleCounters>]>,
}

impl RuleCounters {
    pub fn new(rules: usize) -> RuleCounters {
        RuleCounters {
            workers: (0..MAX_WORKERS)
                .map(|_| {
                    CacheAligned(WorkerRuleCounters {
                        evals: (0..=rules).map(|_| Counter::default()).collect(),
                        stats: (0..rules).map(|_| RuleStats::default()).collect(),
                    })
                })
                .collect(),
        }
    }

    /// Takes over `old`'s counts for the rules `(old index, new index)`
    /// (a ruleset a load left alone): into worker 0's counters, while no
    /// worker uses these yet.
    pub fn carry(&self, old: &RuleCounters, pairs: &[(usize, usize)]) {
        if pairs.is_empty() {
            return;
        }
        let w = &self.workers[0].0;
        let evals = old.all_evaluations();
        let mut vals = vec![0u64; w.stats.len()];
        for &(o, n) in pairs {
            vals[n] = evals.get(o).copied().unwrap_or(0);
            let s = &w.stats[n];
            let [pi, po] = old.packets(o);
            let [bi, bo] = old.bytes(o);
            s.packets[DIR_IN].add(pi);
            s.packets[DIR_OUT].add(po);
            s.bytes[DIR_IN].add(bi);
            s.bytes[DIR_OUT].add(bo);
            s.states_created.add(old.sum(o, |c| &c.states_created));
        }
        // Evaluations are a difference array: rule i's count is the sum
        // of entries 0..=i.
        let mut prev = 0u64;
        for (i, v) in vals.iter().enumerate() {
            w.evals[i].add(v.wrapping_sub(prev));
            prev = *v;
        }
        w.evals[vals.len()].add(0u64.wrapping_sub(prev));
    }

    /// Worker `w`'s counters (`w` wraps at `MAX_WORKERS`, as `PerWorker`).
    #[inline]
    pub fn get(&self, w: usize) -> &WorkerRuleCounters {
        &self.workers[w % MAX_WORKERS].0
    }

    /// Evaluations of rule `nr`, all workers.
    pub fn evaluations(&self, nr: usize) -> u64 {
        self.workers
            .iter()
            .map(|c| c.0.evals.iter().take(nr + 1).fold(0u64, |a, x| a.wrapping_add(x.get())))
            .fold(0u64, |a, x| a.wrapping_add(x))
    }

    /// Evaluations of every rule, all workers (one pass).
    pub fn all_evaluations(&self) -> Vec<u64> {
        let n = self.workers.first().map(|c| c.0.stats.len()).unwrap_or(0);
        let mut diff = vec![0u64; n];
        for c in self.workers.iter() {
            for (d, x) in diff.iter_mut().zip(c.0.evals.iter()) {
                *d = d.wrapping_add(x.get());
            }
        }
        let mut acc = 0u64;
        diff.iter()
            .map(|d| {
                acc = acc.wrapping_add(*d);
                acc
            })
            .collect()
    }

    /// A counter of rule `nr`, summed over workers.
    pub fn sum(&self, nr: usize, f: impl Fn(&RuleStats) -> &Counter) -> u64 {
        self.workers.iter().filter_map(|c| c.0.stats.get(nr)).fold(0u64, |a, s| a.wrapping_add(f(s).get()))
    }

    /// Rule `nr`'s packets, [in, out], all workers.
    pub fn packets(&self, nr: usize) -> [u64; 2] {
        [self.sum(nr, |c| &c.packets[DIR_IN]), self.sum(nr, |c| &c.packets[DIR_OUT])]
    }

    /// Rule `nr`'s bytes, [in, out], all workers.
    pub fn bytes(&self, nr: usize) -> [u64; 2] {
        [self.sum(nr, |c| &c.bytes[DIR_IN]), self.sum(nr, |c| &c.bytes[DIR_OUT])]
    }
}

impl WorkerRuleCounters {
    /// Counts one evaluation of each rule in `a..b`.
    #[inline]
    pub fn evaluated(&self, a: usize, b: usize) {
        if a < b {
            self.evals[a].add(1);
            self.evals[b].add(u64::MAX);
        }
    }

    /// Rule `nr`'s packet counters.
    #[inline]
    pub fn rule(&self, nr: usize) -> Option<&RuleStats> {
        self.stats.get(nr)
    }
}
