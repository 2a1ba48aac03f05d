//! Bytes from a control socket client through the daemon's
//! `serve_connection`: no panic, well-formed answers, requests that round
//! trip, and a daemon that still answers after
//! (`crates/softnet/tests/harness/control.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

// A fixed random source: a run from a fixed seed repeats itself.
#[path = "determinism.rs"]
mod determinism;

#[path = "../../crates/softnet/tests/harness/control.rs"]
mod control;

fuzz_target!(|data: &[u8]| control::run(data));
