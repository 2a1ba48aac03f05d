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

/// Every `tests/*.rs` is a module here or a `[[test]]` of its own.
#[test]
fn every_test_file_is_built() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let this = include_str!("integration.rs");
    let cargo = include_str!("../Cargo.toml");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        if !file.ends_with(".rs") || file == "integration.rs" {
            continue;
        }
        let module = this.contains(&format!("#[path = \"{file}\"]"));
        let binary = cargo.contains(&format!("path = \"tests/{file}\""));
        assert!(
            module ^ binary,
            "tests/{file}: add it to tests/integration.rs or as a [[test]] in Cargo.toml (exactly one)"
        );
        seen += 1;
    }
    assert!(seen > 14, "tests/ read: {seen} files");
}
