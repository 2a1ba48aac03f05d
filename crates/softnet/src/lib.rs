//! softnet's daemon and admin commands as a library: the binary
//! (`main.rs`) parses the command line and calls in here; the fuzz targets
//! (fuzz/) reach the configuration parser and the control server the same
//! way; a program embeds the router (`embed`) and uses its sockets
//! (`softnet_core::sock::api`).
//!
//! Unsafe code is denied but in the modules that call the OS where no safe
//! wrapper exists: `privsep` (SO_PEERCRED, getpwnam_r, set*id), `control`
//! and `daemon` (poll, MSG_PEEK), `bench` (CPU affinity, thread clocks),
//! `metrics` (the clock tick), `notify` (the monotonic clock) and `rtsync`
//! (the netlink socket).

#![deny(unsafe_code)]

pub mod admin;
pub mod arpops;
#[allow(unsafe_code)]
pub mod bench;
pub mod bench6;
#[cfg(test)]
mod bench_profile;
pub mod config;
pub mod config_ra;
pub mod config_ring;
pub mod config_route;
#[allow(unsafe_code)]
pub mod control;
#[cfg(test)]
mod control_tests;
#[allow(unsafe_code)]
pub mod daemon;
pub mod demo;
pub mod embed;
pub mod hostif;
pub mod inet6cmd;
pub mod links;
#[allow(unsafe_code)]
pub mod metrics;
pub mod ndpops;
#[allow(unsafe_code)]
pub mod notify;
pub mod pfctl;
pub mod pfglue;
#[allow(unsafe_code)]
pub mod privsep;
pub mod proto;
#[allow(unsafe_code)]
pub mod rtsync;
pub mod show;
pub mod top;
