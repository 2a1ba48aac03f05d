//! Parse an Ethernet frame and every layer beneath it; no input may panic,
//! and every parsed Repr must survive emit → parse unchanged. The walk lives
//! beside the crate's tests so `cargo test` runs it too.
#![no_main]

use libfuzzer_sys::fuzz_target;

// A fixed random source: a run from a fixed seed repeats itself.
#[path = "determinism.rs"]
mod determinism;

#[path = "../../crates/wire/tests/common/walk.rs"]
mod walk;

fuzz_target!(|data: &[u8]| walk::frame(data));
