//! softnet as a library: the daemon (`daemon::Daemon`), its configuration,
//! control socket and admin commands, so that a program can embed the
//! router (`embed`) and use its sockets (`softnet_core::sock::api`).

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
pub mod embed;
pub mod hostif;
pub mod inet6cmd;
pub mod links;
pub mod metrics;
pub mod ndpops;
pub mod notify;
pub mod pfctl;
pub mod pfglue;
pub mod proto;
pub mod rtsync;
pub mod show;
pub mod top;
