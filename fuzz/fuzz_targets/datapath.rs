//! Arbitrary frames into an in-memory router with pf and states: no panic,
//! every frame counted once, every buffer back in a pool once the timers
//! ran out (`crates/softnet/tests/harness/datapath.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/softnet/tests/harness/datapath.rs"]
mod datapath;

fuzz_target!(|data: &[u8]| datapath::run(data));
