//! Arbitrary frames into an in-memory router with pf and states: no panic,
//! every frame counted once, every buffer back in a pool once the timers
//! ran out (`crates/softnet/tests/harness/datapath.rs`). One lab serves
//! many inputs in a row (`run_reusing`); `SOFTNET_FUZZ_FRESH_LAB=1` builds
//! one per input instead (slower; no history between inputs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

// A fixed random source: a run from a fixed seed repeats itself.
#[path = "determinism.rs"]
mod determinism;

#[path = "../../crates/softnet/tests/harness/datapath.rs"]
mod datapath;

static FRESH: LazyLock<bool> = LazyLock::new(|| std::env::var_os("SOFTNET_FUZZ_FRESH_LAB").is_some_and(|v| v == "1"));

fuzz_target!(|data: &[u8]| if *FRESH { datapath::run(data) } else { datapath::run_reusing(data) });
