//! pf's status as one value, the way OpenBSD's `struct pf_status` (pfvar.h,
//! filled for DIOCGETSTATUS) hands pfctl its numbers: the reason and limit
//! counters, the state, source-node and fragment table counts and their
//! searches/inserts/removals. `pfctl -si` prints them (`show.rs`); the
//! daemon's Prometheus endpoint exports them. Plus what `pfctl -sl` reads
//! rule by rule (DIOCGETRULE): the label counters, summed per label.

use crate::eval::{LCNT_COUNT, REASON_COUNT};
use crate::filter::Pf;
use crate::model::Limit;
use std::sync::atomic::Ordering;

/// A table's size and its counters (pf_status's fcounters / scounters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStatus {
    pub entries: usize,
    pub searches: u64,
    pub inserts: u64,
    pub removals: u64,
}

/// The counters of the rules carrying one label (pfctl -sl's columns).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelStatus {
    pub label: String,
    pub evaluations: u64,
    /// [in, out]
    pub packets: [u64; 2],
    /// [in, out]
    pub bytes: [u64; 2],
    pub states_created: u64,
}

/// pf's status at one moment: every counter summed over the workers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PfStatus {
    pub running: bool,
    pub states: TableStatus,
    /// `set limit states`.
    pub state_limit: u32,
    pub src_nodes: TableStatus,
    pub fragments: TableStatus,
    /// pf_status.counters, indexed as `eval::REASON_NAMES` (PFRES_*).
    pub reasons: [u64; REASON_COUNT],
    /// pf_status.lcounters, indexed as `eval::LCNT_NAMES` (LCNT_*).
    pub lcounters: [u64; LCNT_COUNT],
    /// Rules of the main ruleset (anchors' own rules not counted).
    pub rules: usize,
    /// Label counters, one entry per distinct label, in rule order.
    pub labels: Vec<LabelStatus>,
}

impl Pf {
    /// pf_status as DIOCGETSTATUS fills it, without walking the state
    /// table (the half-open count `pfctl -si` prints is left out: it
    /// needs a walk, too dear for a scrape every few seconds).
    pub fn status(&self) -> PfStatus {
        let inner = &self.inner;
        let rs = inner.ruleset.load();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let sn = &inner.srcnodes;
        // pf counts both families' fragments together (as `-si -v`).
        let (f, f6) = (&inner.frags, &inner.frags6);
        let mut labels: Vec<LabelStatus> = Vec::new();
        let evals = rs.counters.all_evaluations();
        for (nr, r) in rs.rules.iter().enumerate() {
            let Some(label) = &r.rule.label else { continue };
            let i = match labels.iter().position(|l| &l.label == label) {
                Some(i) => i,
                None => {
                    labels.push(LabelStatus { label: label.clone(), ..LabelStatus::default() });
                    labels.len() - 1
                }
            };
            let l = &mut labels[i];
            let [pi, po] = rs.counters.packets(nr);
            let [bi, bo] = rs.counters.bytes(nr);
            l.evaluations += evals[nr];
            l.packets[0] += pi;
            l.packets[1] += po;
            l.bytes[0] += bi;
            l.bytes[1] += bo;
            l.states_created += rs.counters.sum(nr, |c| &c.states_created);
        }
        PfStatus {
            running: self.is_enabled(),
            states: TableStatus {
                entries: inner.states.len(),
                searches: inner.counters.sum(|c| &c.searches),
                inserts: inner.states.inserts.load(Ordering::Relaxed),
                removals: inner.states.removals.load(Ordering::Relaxed),
            },
            state_limit: rs.opts.limit(Limit::States),
            src_nodes: TableStatus {
                entries: sn.len(),
                searches: load(&sn.searches),
                inserts: load(&sn.inserts),
                removals: load(&sn.removals),
            },
            fragments: TableStatus {
                entries: f.len() + f6.len(),
                searches: load(&f.count.searches) + load(&f6.count.searches),
                inserts: load(&f.count.inserts) + load(&f6.count.inserts),
                removals: load(&f.count.removals) + load(&f6.count.removals),
            },
            reasons: std::array::from_fn(|i| inner.counters.sum(|c| &c.reasons[i])),
            lcounters: std::array::from_fn(|i| inner.counters.sum(|c| &c.lcounters[i])),
            rules: rs.rules.len(),
            labels,
        }
    }
}
