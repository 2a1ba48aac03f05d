//! An HTTP/1.1 file server on softnet's own TCP: it builds the router from
//! the daemon's configuration file and serves a directory on one of the
//! router's addresses, a thread per connection, with the std-shaped
//! blocking sockets of `softnet_core::sock::api`.
//!
//! ```text
//! cargo run --release --example httpd -- -c softnet.toml --listen 10.0.1.1:80 --root DIR
//! ```
//!
//! `--listen` may be given more than once (e.g. `0.0.0.0:80` and `[::]:80`).
//!
//! GET and HEAD of regular files under DIR (no `..`), 404 otherwise; one
//! request per connection (`Connection: close`).

use softnet::embed::Embedded;
use softnet_core::sock::api::{TcpListener, TcpStream};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Args {
    config: PathBuf,
    listen: Vec<SocketAddr>,
    root: PathBuf,
}

fn usage() -> ! {
    eprintln!("usage: httpd -c CONFIG --listen ADDR:PORT --root DIR");
    std::process::exit(2)
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let (mut config, mut listen, mut root) = (None, Vec::new(), None);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => config = it.next().map(PathBuf::from),
            "--listen" => listen.push(it.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())),
            "--root" => root = it.next().map(PathBuf::from),
            _ => usage(),
        }
    }
    match (config, root) {
        (Some(config), Some(root)) if !listen.is_empty() => Args { config, listen, root },
        _ => usage(),
    }
}

/// The request head (up to the blank line), at most 8 KB.
fn read_head(s: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 8192 {
            return Ok(None);
        }
        match s.read(&mut buf)? {
            0 => return Ok(None),
            n => head.extend_from_slice(&buf[..n]),
        }
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split('?').next()?;
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    let p = root.join(rel);
    p.is_file().then_some(p)
}

fn serve(mut s: TcpStream, root: &Path) -> std::io::Result<()> {
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let Some(head) = read_head(&mut s)? else { return Ok(()) };
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
    let file = match method {
        "GET" | "HEAD" => resolve(root, target),
        _ => None,
    };
    let Some(path) = file else {
        let body = b"not found\n";
        write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
        return s.write_all(body);
    };
    let mut f = std::fs::File::open(&path)?;
    let len = f.metadata()?.len();
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )?;
    if method == "HEAD" {
        return Ok(());
    }
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n])?;
    }
}

fn main() {
    let a = args();
    let router = match Embedded::start(&a.config, None) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("httpd: {e:#}");
            std::process::exit(1);
        }
    };
    let root = Arc::new(a.root);
    for addr in a.listen {
        let l = match TcpListener::bind(router.stack(), addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("httpd: {addr}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!("httpd: serving {} on {addr}", root.display());
        let root = root.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let root = root.clone();
                std::thread::spawn(move || {
                    let peer = s.peer_addr().ok();
                    if let Err(e) = serve(s, &root) {
                        eprintln!("httpd: {peer:?}: {e}");
                    }
                });
            }
        });
    }
    router.wait();
}
