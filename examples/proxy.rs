//! A transparent TCP proxy fed by pf's `divert-to`: it builds the router
//! from the daemon's configuration file (whose pf.conf diverts the
//! connections to proxy), listens on the divert address, and relays each
//! connection it accepts to the connection's original destination, which
//! the accepted socket has as its local address (as a proxy on OpenBSD
//! reads it with getsockname(2)).
//!
//! ```text
//! cargo run --release --example proxy -- -c softnet.toml --listen 127.0.0.1:8080
//! ```
//!
//! with, in the configuration's pf.conf:
//!
//! ```text
//! pass in on sn-r0 proto tcp to port 80 divert-to 127.0.0.1 port 8080
//! ```
//!
//! The relay to the destination is a new connection from the router's
//! own address. One thread per direction; each end's EOF is passed on as
//! a FIN (shutdown), and both connections close when both directions are
//! done. `--log` prints a line per connection.

use softnet::embed::Embedded;
use softnet_core::sock::api::{TcpListener, TcpStream};
use softnet_core::stack::Stack;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

struct Args {
    config: PathBuf,
    listen: SocketAddr,
    log: bool,
}

fn usage() -> ! {
    eprintln!("usage: proxy -c CONFIG --listen ADDR:PORT [--log]");
    std::process::exit(2)
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let (mut config, mut listen, mut log) = (None, None, false);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => config = it.next().map(PathBuf::from),
            "--listen" => listen = Some(it.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())),
            "--log" => log = true,
            _ => usage(),
        }
    }
    match (config, listen) {
        (Some(config), Some(listen)) => Args { config, listen, log },
        _ => usage(),
    }
}

/// Copies `from` to `to` until `from`'s end of stream, then sends `to` a
/// FIN. Returns the bytes copied.
fn pipe(from: &TcpStream, to: &TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    let (mut r, mut w) = (from, to);
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
    let _ = to.shutdown(Shutdown::Write);
    Ok(n)
}

/// One diverted connection: its original destination is its local
/// address; relay it there.
fn relay(stack: &Arc<Stack>, client: TcpStream, log: bool) -> std::io::Result<()> {
    let (peer, dest) = (client.peer_addr()?, client.local_addr()?);
    let upstream = TcpStream::connect_timeout(stack, dest, Duration::from_secs(10))?;
    let (up, down) = std::thread::scope(|s| {
        let t = s.spawn(|| pipe(&client, &upstream));
        let down = pipe(&upstream, &client);
        (t.join().expect("relay thread"), down)
    });
    if log {
        eprintln!(
            "proxy: {peer} -> {dest} via {}: {} bytes up, {} down",
            upstream.local_addr()?,
            up.as_ref().map_or(0, |n| *n),
            down.as_ref().map_or(0, |n| *n)
        );
    }
    up.and(down).map(|_| ())
}

fn main() {
    let a = args();
    let router = match Embedded::start(&a.config, None) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("proxy: {e:#}");
            std::process::exit(1);
        }
    };
    let l = match TcpListener::bind(router.stack(), a.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("proxy: {}: {e}", a.listen);
            std::process::exit(1);
        }
    };
    eprintln!("proxy: relaying connections diverted to {}", a.listen);
    let stack = router.stack().clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let (stack, log) = (stack.clone(), a.log);
            std::thread::spawn(move || {
                let peer = s.peer_addr().ok();
                if let Err(e) = relay(&stack, s, log) {
                    eprintln!("proxy: {peer:?}: {e}");
                }
            });
        }
    });
    router.wait();
}
