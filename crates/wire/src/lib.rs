//! Packet formats: zero-copy views with checked constructors, plus small
//! owned `Repr`s that parse and emit. No I/O, no allocation.

pub mod ethernet;
