//! The fuzz targets' properties as tests: each target's checks run over
//! its seed corpus (fuzz/corpus/TARGET) and over every input a fuzzing run
//! found failing (fuzz/regressions/TARGET, one file per crash, kept after
//! the fix), so that no crash comes back unnoticed.

mod harness;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/KIND/TARGET`, sorted (none if the directory is absent).
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|p| (p.clone(), std::fs::read(&p).expect("read input"))).collect()
}

/// Runs `check` over the target's seeds and regressions; returns how many
/// inputs ran.
fn run_all(target: &str, check: fn(&[u8])) -> usize {
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        for (path, data) in inputs(kind, target) {
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(r.is_ok(), "{}: the check failed on this input", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn pf_conf_inputs_parse_print_and_load() {
    assert!(run_all("pf_conf", harness::pfconf::run) >= 3);
}

#[test]
fn config_inputs_parse_or_name_a_line() {
    assert!(run_all("config_toml", harness::config::run) >= 2);
}

#[test]
fn control_inputs_leave_the_daemon_answering() {
    assert!(run_all("control", harness::control::run) >= 5);
}

#[test]
fn control_inputs_in_a_row_through_one_daemon() {
    // The long fuzz runs' way (`run_reusing`): one daemon for input after
    // input, each meeting what the ones before changed (the seeds destroy
    // interfaces, add routes, load pf rules); twice over.
    let mut n = 0;
    for _ in 0..2 {
        for kind in ["corpus", "regressions"] {
            for (path, data) in inputs(kind, "control") {
                let r = std::panic::catch_unwind(|| harness::control::run_reusing(&data));
                assert!(r.is_ok(), "{}: the check failed on this input in a reused daemon", path.display());
                n += 1;
            }
        }
    }
    assert!(n >= 10 && n as u32 <= harness::control::INPUTS_PER_HANDLER);
}

#[test]
fn control_seeds_are_requests_the_daemon_decodes() {
    // A seed corpus of frames the reader refuses would teach the fuzzer
    // nothing about the requests behind it.
    for (path, data) in inputs("corpus", "control") {
        let r = softnet::proto::read_request(&mut std::io::Cursor::new(&data));
        assert!(r.is_ok(), "{}: {:?}", path.display(), r.err());
    }
}

#[test]
fn datapath_inputs_keep_pools_and_counters_whole() {
    assert!(run_all("datapath", harness::datapath::run) >= 3);
}

#[test]
fn datapath_inputs_in_a_row_through_one_lab() {
    // The fuzz target's way (`run_reusing`): one lab for input after
    // input, each leaving it idle for the next; twice over, so that every
    // input also meets a lab the others used.
    let mut n = 0;
    for _ in 0..2 {
        for kind in ["corpus", "regressions"] {
            for (path, data) in inputs(kind, "datapath") {
                let r = std::panic::catch_unwind(|| harness::datapath::run_reusing(&data));
                assert!(r.is_ok(), "{}: the check failed on this input in a reused lab", path.display());
                n += 1;
            }
        }
    }
    assert!(n >= 6);
}

#[test]
fn datapath_lab_with_no_frames_meets_its_own_checks() {
    harness::datapath::run(&[]);
}
