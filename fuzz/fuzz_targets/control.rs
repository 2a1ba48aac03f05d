//! Bytes from a control socket client through the daemon's
//! `serve_connection`: no panic, well-formed answers, requests that round
//! trip, and a daemon that still answers after
//! (`crates/softnet/tests/harness/control.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

// A fixed random source: a run from a fixed seed repeats itself.
#[path = "determinism.rs"]
mod determinism;

#[path = "../../crates/softnet/tests/harness/control.rs"]
mod control;

// The long runs reuse a daemon for `INPUTS_PER_HANDLER` inputs;
// SOFTNET_FUZZ_FRESH_LAB=1 (run.sh's fixed-seed runs) makes one per input.
static FRESH: LazyLock<bool> = LazyLock::new(|| std::env::var_os("SOFTNET_FUZZ_FRESH_LAB").is_some_and(|v| v == "1"));

fuzz_target!(|data: &[u8]| if *FRESH { control::run(data) } else { control::run_reusing(data) });
