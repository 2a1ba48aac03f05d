//! pf's integration tests.
//!
//! One test binary for the integration tests below (each file a module, as
//! it was a binary of its own): a release test binary is a thin-LTO link, and
//! one link instead of one per file is most of the test build's time in CI.
//! The files that stay binaries of their own are `[[test]]` entries in
//! Cargo.toml (a global allocator that counts, a required feature, a
//! profiling harness); `every_test_file_is_built` fails on a file that is
//! in neither place, so that no test file is silently left out.

mod common;

#[path = "afto.rs"]
mod afto;
#[path = "anchor_tables.rs"]
mod anchor_tables;
#[path = "divert.rs"]
mod divert;
#[path = "divert_packet.rs"]
mod divert_packet;
#[path = "eval_anchors.rs"]
mod eval_anchors;
#[path = "eval_filter.rs"]
mod eval_filter;
#[path = "eval_rules.rs"]
mod eval_rules;
#[path = "fast4.rs"]
mod fast4;
#[path = "fast6.rs"]
mod fast6;
#[path = "hostif.rs"]
mod hostif;
#[path = "inet6.rs"]
mod inet6;
#[path = "local_out.rs"]
mod local_out;
#[path = "nat.rs"]
mod nat;
#[path = "nat6.rs"]
mod nat6;
#[path = "nat_pools.rs"]
mod nat_pools;
#[path = "pdesc_norm.rs"]
mod pdesc_norm;
#[path = "pfctl_views.rs"]
mod pfctl_views;
#[path = "reassemble_no.rs"]
mod reassemble_no;
#[path = "regress.rs"]
mod regress;
#[path = "roundtrip.rs"]
mod roundtrip;
#[path = "route.rs"]
mod route;
#[path = "route6.rs"]
mod route6;
#[path = "scrub.rs"]
mod scrub;
#[path = "scrub6.rs"]
mod scrub6;
#[path = "scrub_tcp.rs"]
mod scrub_tcp;
#[path = "set_prio.rs"]
mod set_prio;
#[path = "skip_steps.rs"]
mod skip_steps;
#[path = "srctrack.rs"]
mod srctrack;
#[path = "srctrack6.rs"]
mod srctrack6;
#[path = "state_link.rs"]
mod state_link;
#[path = "synproxy.rs"]
mod synproxy;
#[path = "synproxy6.rs"]
mod synproxy6;

#[path = "../../../tests/rust/every_test_file.rs"]
mod every_test_file;

/// Every `tests/*.rs` is a module here or a `[[test]]` of its own.
#[test]
fn every_test_file_is_built() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    every_test_file::check(dir, include_str!("integration.rs"), include_str!("../Cargo.toml"), 31);
}
