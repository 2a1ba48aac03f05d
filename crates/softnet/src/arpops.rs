//! The ARP side of the admin commands (`arp -an`, `-s`, `-d`, `-da`) and
//! the daemon's ARP expiry, over the stack's ARP table.

use crate::proto::{ArpOp, Response};
use softnet_core::stack::Stack;
use softnet_core::time::Instant;

pub fn execute(stack: &Stack, op: &ArpOp) -> Response {
    let _ = (stack, op);
    Response::Error("arp: not wired yet".into())
}

/// Drops expired entries (the daemon's 1 s timer).
pub fn expire(stack: &Stack, now: Instant) {
    let _ = (stack, now);
}
