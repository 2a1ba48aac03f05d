//! The two ends of smoltcp's `benchmark` example on softnet's own TCP, so
//! that the two stacks can be compared with the same client on the same
//! link: port 1234 sends to whoever connects as fast as it can (the
//! client reads: smoltcp's `reader` mode), port 1235 sinks what it is sent
//! (the client writes: `writer` mode). The router comes from the daemon's
//! configuration file, as `softnet up -c` builds it.
//!
//! ```text
//! cargo run --release --example benchmark -- -c softnet.toml --addr 10.0.1.1
//! ```
//!
//! On each connection's end it prints the bytes moved and the rate.

use softnet::embed::Embedded;
use softnet_core::sock::api::{TcpListener, TcpStream};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

fn usage() -> ! {
    eprintln!("usage: benchmark -c CONFIG --addr ADDR");
    std::process::exit(2)
}

fn report(what: &str, peer: Option<SocketAddr>, bytes: u64, t0: Instant) {
    let s = t0.elapsed().as_secs_f64();
    let mbit = bytes as f64 * 8.0 / s.max(1e-9) / 1e6;
    eprintln!("benchmark: {what} {peer:?}: {bytes} bytes in {s:.3} s = {mbit:.1} Mbit/s");
}

/// Port 1234: write until the peer goes away.
fn source(mut s: TcpStream) {
    let peer = s.peer_addr().ok();
    let _ = s.set_nodelay(true);
    let buf = vec![0x5au8; 64 * 1024];
    let (t0, mut n) = (Instant::now(), 0u64);
    while let Ok(w) = s.write(&buf) {
        n += w as u64;
    }
    report("sent", peer, n, t0);
}

/// Port 1235: read until end of stream.
fn sink(mut s: TcpStream) {
    let peer = s.peer_addr().ok();
    let mut buf = vec![0u8; 64 * 1024];
    let (t0, mut n) = (Instant::now(), 0u64);
    while let Ok(r) = s.read(&mut buf) {
        if r == 0 {
            break;
        }
        n += r as u64;
    }
    report("received", peer, n, t0);
}

fn main() {
    let mut it = std::env::args().skip(1);
    let (mut config, mut addr) = (None, None);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => config = it.next().map(PathBuf::from),
            "--addr" => addr = it.next().and_then(|s| s.parse::<IpAddr>().ok()),
            _ => usage(),
        }
    }
    let (Some(config), Some(addr)) = (config, addr) else { usage() };
    let router = Embedded::start(&config, None).unwrap_or_else(|e| {
        eprintln!("benchmark: {e:#}");
        std::process::exit(1)
    });
    for (port, serve) in [(1234u16, source as fn(TcpStream)), (1235, sink)] {
        let l = TcpListener::bind(router.stack(), SocketAddr::new(addr, port)).unwrap_or_else(|e| {
            eprintln!("benchmark: {addr}:{port}: {e}");
            std::process::exit(1)
        });
        eprintln!("benchmark: listening on {addr}:{port}");
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || serve(s));
            }
        });
    }
    router.wait();
}
