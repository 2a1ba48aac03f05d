//! pf.conf text: parse (never a panic); what parses prints, parses back and
//! prints the same, and loads or is refused. The checks are
//! `crates/softnet/tests/harness/pfconf.rs`, also run by `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

// A fixed random source: a run from a fixed seed repeats itself.
#[path = "determinism.rs"]
mod determinism;

#[path = "../../crates/softnet/tests/harness/pfconf.rs"]
mod pfconf;

fuzz_target!(|data: &[u8]| pfconf::run(data));
