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
//! own address, or with `--transparent` from the client's (a socket bound
//! to a foreign address, SO_BINDANY), whose replies pf hands back to the
//! proxy with `divert-reply`:
//!
//! ```text
//! pass out on sn-r1 proto tcp to port 80 divert-reply
//! ```
//!
//! One thread per direction; each end's EOF is passed on as a FIN
//! (shutdown), and both connections close when both directions are done.
//! `--log` prints a line per connection.
//!
//! `--udp-echo ADDR:PORT` also answers the datagrams pf diverts to that
//! address (`pass in … proto udp … divert-to ADDR port PORT`) with their
//! own payload, in the name of their original destination (read beside
//! each datagram, IP_RECVDSTADDR; sent from a socket bound to it).
//!
//! `--divert-packet PORT` also takes the packets pf diverts to that port
//! (`pass … divert-packet port PORT`, a divert(4) socket) and writes each
//! back unchanged, to be re-injected where it was going: the place where
//! a packet inspector would look at them. With `--log` it prints the
//! first packet it saw, with its original addresses.

use softnet::embed::Embedded;
use softnet_core::sock::api::{DivertSocket, TcpListener, TcpStream, UdpSocket};
use softnet_core::stack::Stack;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

struct Args {
    config: PathBuf,
    listen: SocketAddr,
    log: bool,
    transparent: bool,
    udp_echo: Option<SocketAddr>,
    divert_packet: Option<u16>,
}

fn usage() -> ! {
    eprintln!(
        "usage: proxy -c CONFIG --listen ADDR:PORT [--transparent] [--udp-echo ADDR:PORT] [--divert-packet PORT] [--log]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let (mut config, mut listen, mut log, mut transparent, mut udp_echo) = (None, None, false, false, None);
    let mut divert_packet = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => config = it.next().map(PathBuf::from),
            "--listen" => listen = Some(it.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())),
            "--log" => log = true,
            "--transparent" => transparent = true,
            "--udp-echo" => udp_echo = Some(it.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())),
            "--divert-packet" => {
                divert_packet = Some(it.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()))
            }
            _ => usage(),
        }
    }
    match (config, listen) {
        (Some(config), Some(listen)) => Args { config, listen, log, transparent, udp_echo, divert_packet },
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
/// address; relay it there, from the client's address if `transparent`.
fn relay(stack: &Arc<Stack>, client: TcpStream, log: bool, transparent: bool) -> std::io::Result<()> {
    let (peer, dest) = (client.peer_addr()?, client.local_addr()?);
    let upstream = match transparent {
        true => TcpStream::connect_from(stack, SocketAddr::new(peer.ip(), 0), dest)?,
        false => TcpStream::connect_timeout(stack, dest, Duration::from_secs(10))?,
    };
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

/// Answers each datagram diverted to `u` with its payload, from its
/// original destination (one socket bound to each such address, kept).
fn udp_echo(stack: &Arc<Stack>, u: UdpSocket, log: bool) {
    let mut from_dest: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok((n, peer, dest)) = u.recv_from_to(&mut buf) else { continue };
        let s = match from_dest.entry(dest) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => match UdpSocket::bind_any(stack, dest) {
                Ok(s) => e.insert(s),
                Err(err) => {
                    eprintln!("proxy: udp {dest}: {err}");
                    continue;
                }
            },
        };
        let sent = s.send_to(&buf[..n], peer);
        if log {
            eprintln!("proxy: udp {peer} -> {dest}: {n} bytes echoed ({sent:?})");
        }
    }
}

/// Writes every packet pf diverts to `d` back where it was going.
fn reinject(d: DivertSocket, log: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = log;
    loop {
        let Ok((n, addr)) = d.recv_from(&mut buf) else { continue };
        if first && n >= 20 && buf[0] >> 4 == 4 {
            let ip = |at: usize| std::net::Ipv4Addr::new(buf[at], buf[at + 1], buf[at + 2], buf[at + 3]);
            eprintln!("proxy: divert-packet port {}: first packet {} -> {} at {addr}", d.port(), ip(12), ip(16));
            first = false;
        }
        if let Err(e) = d.send_to(&buf[..n], addr) {
            eprintln!("proxy: divert-packet port {}: {e}", d.port());
        }
    }
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
    if let Some(addr) = a.udp_echo {
        let u = match UdpSocket::bind(router.stack(), addr) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("proxy: udp {addr}: {e}");
                std::process::exit(1);
            }
        };
        let (stack, log) = (router.stack().clone(), a.log);
        std::thread::spawn(move || udp_echo(&stack, u, log));
    }
    if let Some(port) = a.divert_packet {
        let d = match DivertSocket::bind(router.stack(), port) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("proxy: divert-packet port {port}: {e}");
                std::process::exit(1);
            }
        };
        let log = a.log;
        std::thread::spawn(move || reinject(d, log));
    }
    eprintln!("proxy: relaying connections diverted to {}", a.listen);
    let stack = router.stack().clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let (stack, log, transparent) = (stack.clone(), a.log, a.transparent);
            std::thread::spawn(move || {
                let peer = s.peer_addr().ok();
                if let Err(e) = relay(&stack, s, log, transparent) {
                    eprintln!("proxy: {peer:?}: {e}");
                }
            });
        }
    });
    router.wait();
}
