//! Arbitrary bytes as an IPv6 packet, and as an extension header chain
//! behind a fixed header naming the first byte: no input may panic, every
//! header the chain walker yields re-emits identically, error offsets stay
//! inside the packet, and everything beneath (ICMPv6, NDP, MLD, UDP, TCP)
//! is walked as in `parse_frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

// A fixed random source: a run from a fixed seed repeats itself.
#[path = "determinism.rs"]
mod determinism;

#[path = "../../crates/wire/tests/common/walk.rs"]
mod walk;

fuzz_target!(|data: &[u8]| walk::walk6::ip6_and_chain(data));
