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
//! GET and HEAD of regular files under DIR (no `..`), 404 otherwise; PUT
//! with a `Content-Length` stores the body as a file under DIR (an upload,
//! answered `201 Created` with the bytes stored); one request per
//! connection (`Connection: close`).

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

/// The request head (up to the blank line), at most 8 KB, and the bytes
/// of the body read with it.
fn read_head(s: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = head.split_off(end + 4);
            return Ok(Some((String::from_utf8_lossy(&head).into_owned(), body)));
        }
        if head.len() > 8192 {
            return Ok(None);
        }
        match s.read(&mut buf)? {
            0 => return Ok(None),
            n => head.extend_from_slice(&buf[..n]),
        }
    }
}

/// A target for PUT: a plain name under the root (no directories).
fn put_target(root: &Path, target: &str) -> Option<PathBuf> {
    let name = target.split('?').next()?.trim_start_matches('/');
    let ok = !name.is_empty() && !name.contains('/') && name != "..";
    ok.then(|| root.join(name))
}

/// PUT: `len` bytes of body (`first` already read) into `path`.
fn upload(s: &mut TcpStream, path: &Path, len: u64, first: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let mut got = first.len() as u64;
    f.write_all(first)?;
    let mut buf = vec![0u8; 256 * 1024];
    while got < len {
        let want = (len - got).min(buf.len() as u64) as usize;
        let n = s.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "upload cut short"));
        }
        f.write_all(&buf[..n])?;
        got += n as u64;
    }
    let body = format!("{got}\n");
    write!(s, "HTTP/1.1 201 Created\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
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

/// The read timeout and TCP_NOPUSH are the listener's, which each
/// accepted stream inherits (as BSD's accept does).
fn serve(mut s: TcpStream, root: &Path) -> std::io::Result<()> {
    let Some((head, first)) = read_head(&mut s)? else { return Ok(()) };
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<u64>().ok())?
    });
    if method == "PUT" {
        if let (Some(path), Some(len)) = (put_target(root, target), length) {
            if first.len() as u64 <= len {
                return upload(&mut s, &path, len, &first);
            }
        }
        return write!(s, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
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
        // One response, then close (`Connection: close`): with TCP_NOPUSH
        // the header joins the body's first segment and the last partial
        // segment leaves with the FIN (nginx's tcp_nopush), a frame less
        // for each. Set on the listener, every connection it accepts has
        // it and the read timeout from its handshake on.
        if let Err(e) = l.set_nopush(true).and_then(|_| l.set_read_timeout(Some(std::time::Duration::from_secs(30)))) {
            eprintln!("httpd: {addr}: {e}");
            std::process::exit(1);
        }
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
