//! softnet's daemon and admin commands as a library: the binary
//! (`main.rs`) parses the command line and calls in here; the fuzz targets
//! (fuzz/) reach the configuration parser and the control server the same
//! way.

pub mod admin;
pub mod arpops;
pub mod bench;
pub mod bench6;
pub mod config;
pub mod config_ra;
pub mod control;
#[cfg(test)]
mod control_tests;
pub mod daemon;
pub mod demo;
pub mod inet6cmd;
pub mod links;
pub mod ndpops;
pub mod pfctl;
pub mod pfglue;
pub mod privsep;
pub mod proto;
pub mod show;
