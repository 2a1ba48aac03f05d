//! Shared by `crates/*/tests/integration.rs` (included with `#[path]`): the
//! check that every `tests/*.rs` of a crate is built, either as a module of
//! its one integration binary or as a `[[test]]` of its own, so that no test
//! file is silently left out when autotests is off.

/// `dir`: the crate's tests directory; `integration`: the text of its
/// `tests/integration.rs`; `cargo`: its Cargo.toml; `at_least`: how many
/// files there are at least (a directory read wrong fails).
pub fn check(dir: &str, integration: &str, cargo: &str, at_least: usize) {
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        if !file.ends_with(".rs") || file == "integration.rs" {
            continue;
        }
        let module = integration.contains(&format!("#[path = \"{file}\"]"));
        let binary = cargo.contains(&format!("path = \"tests/{file}\""));
        assert!(
            module ^ binary,
            "{dir}/{file}: add it to tests/integration.rs or as a [[test]] in Cargo.toml (exactly one)"
        );
        seen += 1;
    }
    assert!(seen >= at_least, "{dir}: {seen} test files read");
}
