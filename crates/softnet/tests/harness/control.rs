//! The control socket as the daemon serves it: arbitrary bytes from a
//! client (any number of frames, truncated, oversized, of another version,
//! well-formed requests of every kind) go through `serve_connection` over
//! a socket pair, against an in-memory stack with pf. Whatever came:
//!
//! * nothing panics, and every answer the daemon sends is a well-formed
//!   response frame;
//! * every request that decodes encodes back to the same request;
//! * afterwards the daemon still answers a good request on a new
//!   connection.

use softnet::control::{serve_connection, Handler};
use softnet::proto::{self, FrameError, NetstatOp, Request, Response};
use softnet_core::iface::IfAddr;
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::topo::{R0_IP, R0_MAC, R1_IP, R1_MAC};
use softnet_core::vlink;
use std::io::{Cursor, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub fn handler() -> Arc<Handler> {
    let stack = Stack::new(StackConfig { workers: 1, pool_size: 16, ..StackConfig::default() });
    for (name, mac, ip) in [("r0", R0_MAC, R0_IP), ("r1", R1_MAC, R1_IP)] {
        let (port, _peer) = vlink::wire(1, 16);
        stack.create_interface(name, mac, 1500, port.link_queues()).expect("interface");
        stack.add_address(name, IfAddr::new(ip, 24)).expect("address");
        stack.set_up(name, true).expect("up");
    }
    // Stopped: a `route monitor` answers `Subscribed` and ends at once.
    Arc::new(Handler::new(stack, Arc::new(AtomicBool::new(true))))
}

/// Sends `bytes` on one connection, closes the client's writing side and
/// returns the responses read until the daemon closed.
pub fn converse(h: &Arc<Handler>, bytes: &[u8]) -> Vec<Response> {
    let (mut client, server) = UnixStream::pair().expect("socketpair");
    let h2 = h.clone();
    let t = std::thread::spawn(move || serve_connection(&h2, server));
    // The daemon may close before reading everything (an oversized frame
    // ends the connection): a failed write is the client's problem.
    let _ = client.write_all(bytes);
    let _ = client.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    loop {
        match proto::read_response(&mut client) {
            Ok(r) => out.push(r),
            Err(FrameError::Closed) => break,
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the daemon sent a bad frame: {e}"),
        }
    }
    t.join().expect("the connection thread panicked");
    out
}

/// One fuzz input against a new daemon (the tests, CI's fixed-seed run,
/// a crash input replayed on its own).
pub fn run(data: &[u8]) {
    check(&handler(), data);
}

/// Inputs one daemon serves in a row in the long fuzz runs
/// (`run_reusing`). Building it (stack, interfaces, pf) lit some ten
/// thousand coverage counters per input, which libFuzzer then walked as
/// the input's features: most of an input's time.
pub const INPUTS_PER_HANDLER: u32 = 200;

/// One fuzz input against the daemon the previous inputs talked to (a new
/// one every `INPUTS_PER_HANDLER`): what they changed (routes, addresses,
/// pf rules, interfaces destroyed) stays, so a crash may need the history
/// of the run; `run` replays an input alone.
pub fn run_reusing(data: &[u8]) {
    thread_local!(static H: std::cell::RefCell<(Option<Arc<Handler>>, u32)> = const { std::cell::RefCell::new((None, 0)) });
    let h = H.with_borrow_mut(|(h, used)| {
        if *used >= INPUTS_PER_HANDLER {
            *h = None;
        }
        if h.is_none() {
            *used = 0;
        }
        *used += 1;
        h.get_or_insert_with(handler).clone()
    });
    check(&h, data);
}

fn check(h: &Arc<Handler>, data: &[u8]) {
    // Every request in the input decodes the way the daemon's reader
    // decodes it, and encodes back to itself.
    let mut c = Cursor::new(data);
    while let Ok(req) = proto::read_request(&mut c) {
        let mut buf = Vec::new();
        proto::write_request(&mut buf, &req).expect("a decoded request encodes");
        let back = proto::read_request(&mut Cursor::new(buf)).expect("an encoded request decodes");
        assert_eq!(back, req);
    }
    converse(h, data);
    let after = converse(h, &frame(&Request::Netstat(NetstatOp::Interfaces)));
    assert!(matches!(after.as_slice(), [Response::Text(_)]), "the daemon still answers: {after:?}");
}

/// One request as a client frames it.
pub fn frame(req: &Request) -> Vec<u8> {
    let mut b = Vec::new();
    proto::write_request(&mut b, req).expect("encode");
    b
}
