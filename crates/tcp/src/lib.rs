//! The TCP protocol engine, sans-IO: no threads, no sockets, no clock of
//! its own. A [`Tcb`] is one connection; the socket layer (PCB tables in
//! the workers) feeds it segments with [`Tcb::input`], takes segments from
//! [`Tcb::output`], runs [`Tcb::on_timer`] at [`Tcb::poll_at`], and the
//! application calls [`Tcb::send`], [`Tcb::recv`], [`Tcb::shutdown`],
//! [`Tcb::close`], [`Tcb::abort`]. Time, random numbers and ISNs come from
//! an [`Env`] the caller passes in, so tests are deterministic.
//!
//! Buffers are fixed-size rings allocated when the TCB is created; the
//! out-of-order queue and the SACK scoreboard have fixed capacities too,
//! so the steady state allocates nothing.

#![forbid(unsafe_code)]

pub mod assembler;
pub mod cc;
pub mod conn;
pub mod isn;
pub mod reset;
pub mod ring;
pub mod rtt;
pub mod sack;
pub mod seq;
pub mod time;

pub use cc::{Cc, CcAlgorithm, CongestionControl};
pub use conn::output::segment_buffer_len;
pub use conn::{Config, ConnStats, Drop, Keepalive, State, Tcb, TcpError, Verdict, STRETCH_ACK_DIV};
pub use isn::IsnGen;
pub use reset::reset_reply;
pub use seq::Seq;
pub use time::{Env, Instant};
