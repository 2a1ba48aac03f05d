//! Arbitrary bytes as an ICMPv6 message (checksum fixed first so the
//! parsers run): no input may panic and every Repr that parses survives
//! emit → parse; errors' quoted packets are walked as IPv6.
#![no_main]

use libfuzzer_sys::fuzz_target;

// A fixed random source: a run from a fixed seed repeats itself.
#[path = "determinism.rs"]
mod determinism;

#[path = "../../crates/wire/tests/common/walk.rs"]
mod walk;

fuzz_target!(|data: &[u8]| walk::walk6::icmp6_fixed(data));
