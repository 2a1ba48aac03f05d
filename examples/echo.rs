//! TCP and UDP echo (RFC 862) on softnet's own stack: the router built
//! from the daemon's configuration file, a TCP listener and a UDP socket
//! on `ADDR:PORT`, with the std-shaped blocking sockets of
//! `softnet_core::sock::api`. A thread per TCP connection writes back
//! what it reads until the peer's end of stream, then closes; the UDP
//! socket sends each datagram back to its sender.
//!
//! ```text
//! cargo run --release --example echo -- -c softnet.toml --addr 10.0.1.1 --port 7
//! ```
//!
//! The end-to-end robustness tests (tests/e2e/test_sock_robust.py) use it
//! for many concurrent connections, closing under load and UDP echo.

use softnet::embed::Embedded;
use softnet_core::sock::api::{TcpListener, TcpStream, UdpSocket};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

fn usage() -> ! {
    eprintln!("usage: echo -c CONFIG --addr ADDR [--port PORT]");
    std::process::exit(2)
}

/// Echoes until end of stream (or an error: a reset, a read timeout).
fn echo(mut s: TcpStream) -> std::io::Result<u64> {
    s.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let r = s.read(&mut buf)?;
        if r == 0 {
            return Ok(n);
        }
        s.write_all(&buf[..r])?;
        n += r as u64;
    }
}

fn main() {
    let mut it = std::env::args().skip(1);
    let (mut config, mut addr, mut port) = (None, None, 7u16);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => config = it.next().map(PathBuf::from),
            "--addr" => addr = it.next().and_then(|s| s.parse::<IpAddr>().ok()),
            "--port" => port = it.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    let (Some(config), Some(addr)) = (config, addr) else { usage() };
    let router = Embedded::start(&config, None).unwrap_or_else(|e| {
        eprintln!("echo: {e:#}");
        std::process::exit(1)
    });
    let at = SocketAddr::new(addr, port);
    let l = TcpListener::bind(router.stack(), at).unwrap_or_else(|e| {
        eprintln!("echo: tcp {at}: {e}");
        std::process::exit(1)
    });
    let u = UdpSocket::bind(router.stack(), at).unwrap_or_else(|e| {
        eprintln!("echo: udp {at}: {e}");
        std::process::exit(1)
    });
    eprintln!("echo: listening on tcp and udp {at}");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            // A small stack: a thousand connections are a thousand threads.
            let spawned = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || {
                let peer = s.peer_addr().ok();
                if let Err(e) = echo(s) {
                    eprintln!("echo: {peer:?}: {e}");
                }
            });
            if let Err(e) = spawned {
                eprintln!("echo: no thread for a connection: {e}");
            }
        }
    });
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            match u.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if let Err(e) = u.send_to(&buf[..n], from) {
                        eprintln!("echo: udp to {from}: {e}");
                    }
                }
                Err(e) => eprintln!("echo: udp: {e}"),
            }
        }
    });
    router.wait();
}
