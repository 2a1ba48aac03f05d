//! Arbitrary bytes as an NDP message (first byte picks RS/RA/NS/NA/redirect,
//! checksum fixed) and as a bare options area: no panic, option errors at
//! offsets inside the area, every option re-emits to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

// A fixed random source: a run from a fixed seed repeats itself.
#[path = "determinism.rs"]
mod determinism;

#[path = "../../crates/wire/tests/common/walk.rs"]
mod walk;

fuzz_target!(|data: &[u8]| walk::walk6::ndp_fixed(data));
