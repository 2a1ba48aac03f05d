//! The state table's lock-free parts under loom: every interleaving (up to
//! a preemption bound) and every value the C11 memory model lets a load
//! see, which x86's strong ordering never shows. The code checked is the
//! production code (`crate::sync` swaps in loom's primitives); under
//! `--cfg loom` the index is one chain (`BUCKETS`, `SHARDS`) and the slab
//! a few slots (`CHUNK`, `MAX_CHUNKS`). Run: crates/pf/LOOM.md.

use super::*;
use loom::sync::Arc;
use loom::thread;

fn key(p: u16) -> StateKey {
    StateKey::v4([Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)], [p, 22], 17, 0)
}

/// A state whose rule number, tag and timeout all say `mark`: a view
/// that mixes two of them is torn.
fn state(p: u16, mark: u8) -> StateData {
    StateData {
        key: key(p),
        direction: DIR_IN,
        rule_nr: mark as u32,
        tag: mark as u16,
        timeout: mark,
        src: Peer { state: mark, ..Default::default() },
        ..Default::default()
    }
}

/// Preemptions explored per execution: 2 finds the orderings below in
/// seconds; `LOOM_MAX_PREEMPTIONS` overrides it for a longer run.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

/// Every field of a view comes from one state version.
fn assert_whole(v: &StateView) {
    let mark = v.timeout;
    assert_eq!((v.tag as u8, v.src_state), (mark, mark), "torn view: {v:?}");
}

/// A writer changes a state under its lock while a reader probes it
/// without one: the reader sees the state before or after, never a mix
/// (the slot's sequence lock: `Slot::lock` / `SlotGuard::drop` against
/// `StateTable::read_view`).
#[test]
fn loom_seqlock_reader_never_sees_a_torn_state() {
    model(|| {
        let t = Arc::new(StateTable::new(8));
        t.insert(state(1, 1)).unwrap();
        let w = {
            let t = t.clone();
            thread::spawn(move || {
                t.with_state(key(1).words(), 0, |_, st| {
                    st.tag = 2;
                    st.timeout = 2;
                    st.src.state = 2;
                })
                .expect("state there");
            })
        };
        match t.probe(key(1).words(), 0) {
            Probe::Hit(v) => assert_whole(&v),
            Probe::Busy => {}
            Probe::Miss => panic!("a live state missed"),
        }
        w.join().unwrap();
        let Probe::Hit(v) = t.probe(key(1).words(), 0) else { panic!("state gone") };
        assert_eq!(v.timeout, 2);
        assert_whole(&v);
    });
}

/// A state inserted while a reader probes its key: the reader misses it
/// or sees all of it (the slot is filled under its lock before the
/// bucket's release store publishes it).
#[test]
fn loom_insert_publishes_the_whole_state() {
    model(|| {
        let t = Arc::new(StateTable::new(8));
        let w = {
            let t = t.clone();
            thread::spawn(move || t.insert(state(1, 3)).unwrap())
        };
        match t.probe(key(1).words(), 0) {
            Probe::Hit(v) => {
                assert_eq!(v.timeout, 3);
                assert_whole(&v);
            }
            Probe::Busy | Probe::Miss => {}
        }
        let idx = w.join().unwrap();
        assert_eq!(t.find(&key(1), 0), Some(idx));
    });
}

/// A state removed and its slot reused at once for another key, while a
/// reader probes the old key: the reader gets the old state or nothing,
/// never the new state under the old key (the shard version and the
/// slot's key check), and the new key is found after.
#[test]
fn loom_a_reused_slot_never_answers_for_its_old_key() {
    model(|| {
        let t = Arc::new(StateTable::new(8));
        let a = t.insert(state(1, 1)).unwrap();
        let w = {
            let t = t.clone();
            thread::spawn(move || {
                assert!(t.remove(a));
                let b = t.insert(state(2, 2)).unwrap();
                assert_eq!(b, a, "the freed slot is reused");
            })
        };
        match t.probe(key(1).words(), 0) {
            Probe::Hit(v) => {
                assert_eq!(v.timeout, 1, "old key answered by the new state: {v:?}");
                assert_whole(&v);
            }
            Probe::Busy | Probe::Miss => {}
        }
        w.join().unwrap();
        assert!(matches!(t.probe(key(1).words(), 0), Probe::Miss));
        let Probe::Hit(v) = t.probe(key(2).words(), 0) else { panic!("new state missed") };
        assert_whole(&v);
    });
}

/// Two workers insert the same key, interface and direction at once:
/// one wins, the other gets `Conflict` (pf_state_key_attach), and the
/// table holds one state.
#[test]
fn loom_racing_inserts_of_one_key_keep_one_state() {
    model(|| {
        let t = Arc::new(StateTable::new(8));
        let w = {
            let t = t.clone();
            thread::spawn(move || t.insert(state(1, 1)))
        };
        let mine = t.insert(state(1, 2));
        let theirs = w.join().unwrap();
        let won = match (mine, theirs) {
            (Ok(i), Err(InsertError::Conflict)) | (Err(InsertError::Conflict), Ok(i)) => i,
            other => panic!("both or neither inserted: {other:?}"),
        };
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup_all(&key(1)), vec![won]);
    });
}

/// An insert past `set limit states` is refused without the count ever
/// passing the limit: a reader of `len` (`pfctl -si`) during it sees the
/// limit, never one more (the count used to go up and then back down).
#[test]
fn loom_the_count_never_passes_the_limit() {
    model(|| {
        let t = Arc::new(StateTable::new(1));
        t.insert(state(1, 1)).unwrap();
        let w = {
            let t = t.clone();
            thread::spawn(move || t.insert(state(2, 2)))
        };
        assert_eq!(t.len(), 1, "the count passed the limit");
        assert_eq!(w.join().unwrap(), Err(InsertError::Limit));
        assert_eq!(t.len(), 1);
    });
}

/// A worker counts packets of one direction without the lock while
/// another changes the state under it: no count is lost (the guard
/// writes back only what it changed).
#[test]
fn loom_lock_free_counts_survive_a_locked_update() {
    model(|| {
        let t = Arc::new(StateTable::new(8));
        let a = t.insert(state(1, 1)).unwrap();
        let w = {
            let t = t.clone();
            thread::spawn(move || {
                t.touch(a, true, 100, 0);
                t.touch(a, true, 100, 0);
            })
        };
        t.with_state(key(1).words(), 0, |_, st| st.dst.state = 1).expect("state there");
        w.join().unwrap();
        let st = t.get(a).expect("live");
        assert_eq!((st.packets[0], st.bytes[0]), (2, 200));
    });
}

/// A worker's lock-free counts of one direction fold into the totals
/// (under loom a `recent` word holds one packet, so the second packet
/// folds) while a locked writer counts the other direction: every
/// packet and byte of both is there after.
#[test]
fn loom_a_fold_beside_a_locked_count_loses_nothing() {
    model(|| {
        let t = Arc::new(StateTable::new(8));
        let a = t.insert(state(1, 1)).unwrap();
        let w = {
            let t = t.clone();
            thread::spawn(move || {
                t.touch(a, true, 100, 0);
                t.touch(a, true, 100, 0);
            })
        };
        t.with_state(key(1).words(), 0, |_, st| {
            st.packets[1] += 1;
            st.bytes[1] += 40;
        })
        .expect("state there");
        w.join().unwrap();
        let st = t.get(a).expect("live");
        assert_eq!((st.packets, st.bytes), ([2, 1], [200, 40]));
    });
}

/// A translating state (two index entries, the second in a side array
/// made on first use) inserted and then removed while a reader probes
/// its translated key: the reader sees the whole state or nothing, and
/// after the removal neither key finds it.
#[test]
fn loom_a_translated_key_comes_and_goes_whole() {
    model(|| {
        let t = Arc::new(StateTable::new(8));
        let w = {
            let t = t.clone();
            thread::spawn(move || {
                let i = t.insert_nat(state(1, 3), Some(key(9))).unwrap();
                assert!(t.remove(i));
            })
        };
        match t.probe(key(9).words(), 0) {
            Probe::Hit(v) => {
                assert_eq!(v.timeout, 3);
                assert_whole(&v);
            }
            Probe::Busy | Probe::Miss => {}
        }
        w.join().unwrap();
        assert!(matches!(t.probe(key(9).words(), 0), Probe::Miss));
        assert!(matches!(t.probe(key(1).words(), 0), Probe::Miss));
        assert!(t.is_empty());
    });
}
