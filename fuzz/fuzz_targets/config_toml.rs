//! The daemon's TOML configuration: a configuration or an error naming a
//! line, never a panic (`crates/softnet/tests/harness/config.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

// A fixed random source: a run from a fixed seed repeats itself.
#[path = "determinism.rs"]
mod determinism;

#[path = "../../crates/softnet/tests/harness/config.rs"]
mod config;

fuzz_target!(|data: &[u8]| config::run(data));
