//! The stack's integration tests.
//!
//! One test binary for the integration tests below (each file a module, as
//! it was a binary of its own): a release test binary is a thin-LTO link, and
//! one link instead of one per file is most of the test build's time in CI.
//! The files that stay binaries of their own are `[[test]]` entries in
//! Cargo.toml (a global allocator that counts, a required feature, a
//! profiling harness); `every_test_file_is_built` fails on a file that is
//! in neither place, so that no test file is silently left out.

mod common;

#[path = "destroy.rs"]
mod destroy;
#[path = "forwarding.rs"]
mod forwarding;
#[path = "hostif.rs"]
mod hostif;
#[path = "hostif6.rs"]
mod hostif6;
#[path = "inet6.rs"]
mod inet6;
#[path = "ip6.rs"]
mod ip6;
#[path = "loopback.rs"]
mod loopback;
#[path = "mld.rs"]
mod mld;
#[path = "pf_route.rs"]
mod pf_route;
#[path = "pf_route6.rs"]
mod pf_route6;
#[path = "priq.rs"]
mod priq;
#[path = "rtadv.rs"]
mod rtadv;
#[path = "sock.rs"]
mod sock;
#[path = "sock_conn.rs"]
mod sock_conn;
#[path = "sock_scale.rs"]
mod sock_scale;
#[path = "tcp_tso.rs"]
mod tcp_tso;

#[path = "../../../tests/rust/every_test_file.rs"]
mod every_test_file;

/// Every `tests/*.rs` is a module here or a `[[test]]` of its own.
#[test]
fn every_test_file_is_built() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    every_test_file::check(dir, include_str!("integration.rs"), include_str!("../Cargo.toml"), 18);
}
