//! The fuzz targets' checks (fuzz/fuzz_targets/ includes these files), run
//! by `cargo test` over the seed corpora and every crash input kept in
//! fuzz/regressions/ (tests/fuzz_cases.rs).

pub mod config;
pub mod control;
pub mod datapath;
pub mod pfconf;
