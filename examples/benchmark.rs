//! The two ends of smoltcp's `benchmark` example on softnet's own TCP, so
//! that the two stacks can be compared with the same client on the same
//! link: port 1234 sends to whoever connects as fast as it can (the
//! client reads: smoltcp's `reader` mode), port 1235 sinks what it is sent
//! (the client writes: `writer` mode). Two more for bench/tcp_vs.sh:
//! port 1236 answers each connection with 1 KB and closes it (connections
//! per second; TCP_NOPUSH on softnet, TCP_CORK on Linux, so the answer
//! and the FIN leave in one segment on both; BENCH_PUSH=1 in the server's
//! environment leaves it off), port 1237 accepts and holds connections idle (memory per
//! idle connection). BENCH_SNDBUF / BENCH_RCVBUF set the listeners' send and
//! receive buffers (bytes). The router comes from the daemon's configuration
//! file, as `softnet up -c` builds it.
//!
//! ```text
//! cargo run --release --example benchmark -- -c softnet.toml --addr 10.0.1.1
//! ```
//!
//! The same servers on the Linux kernel's sockets (the same application
//! code, for a side-by-side figure):
//!
//! ```text
//! benchmark --kernel --addr 10.0.1.1
//! ```
//!
//! and the client (kernel sockets), as smoltcp's example runs it in a
//! thread: `--client reader|writer --to ADDR [--bytes N]` moves N bytes
//! (default 1 GB, smoltcp's AMOUNT); `--client conn --to ADDR [--conns N]
//! [--threads T]` makes N connections, each reading the 1 KB to the end;
//! `--client idle --to ADDR --conns N` opens N connections and holds them
//! until its standard input closes. Each prints one line of figures.
//!
//! On each connection's end the servers print the bytes moved and the rate.

use softnet::embed::Embedded;
use softnet_core::sock::api;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

fn usage() -> ! {
    eprintln!(
        "usage: benchmark -c CONFIG --addr ADDR\n       benchmark --kernel --addr ADDR\n       \
         benchmark --client reader|writer|conn|idle --to ADDR [--bytes N] [--conns N] [--threads T]"
    );
    std::process::exit(2)
}

fn report(what: &str, peer: Option<SocketAddr>, bytes: u64, t0: Instant) {
    let s = t0.elapsed().as_secs_f64();
    let mbit = bytes as f64 * 8.0 / s.max(1e-9) / 1e6;
    eprintln!("benchmark: {what} {peer:?}: {bytes} bytes in {s:.3} s = {mbit:.1} Mbit/s");
}

/// A connected stream of either stack.
trait Stream: Read + Write + Send + 'static {
    fn peer(&self) -> Option<SocketAddr>;
    fn nodelay(&self);
    /// Partial segments held until the close (TCP_NOPUSH / TCP_CORK).
    fn nopush(&self);
}
impl Stream for api::TcpStream {
    fn peer(&self) -> Option<SocketAddr> {
        self.peer_addr().ok()
    }
    fn nodelay(&self) {
        let _ = self.set_nodelay(true);
    }
    fn nopush(&self) {
        let _ = self.set_nopush(true);
    }
}
impl Stream for std::net::TcpStream {
    fn peer(&self) -> Option<SocketAddr> {
        self.peer_addr().ok()
    }
    fn nodelay(&self) {
        let _ = self.set_nodelay(true);
    }
    fn nopush(&self) {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt on our own socket with a valid int option.
        unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}

/// Port 1234: write until the peer goes away.
fn source(mut s: impl Stream) {
    let peer = s.peer();
    s.nodelay();
    let buf = vec![0x5au8; 64 * 1024];
    let (t0, mut n) = (Instant::now(), 0u64);
    while let Ok(w) = s.write(&buf) {
        n += w as u64;
    }
    report("sent", peer, n, t0);
}

/// Port 1235: read until end of stream.
fn sink(mut s: impl Stream) {
    let peer = s.peer();
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

/// The response of port 1236.
const RESPONSE: [u8; 1024] = [b'x'; 1024];

/// Serves `accept` on a thread: each connection to its own thread
/// (`Spawn`), answered with 1 KB and closed in turn (`Respond`), or held
/// (`Hold`).
#[derive(Clone, Copy)]
enum Serve {
    Spawn(fn(Box<dyn StreamBox>)),
    Respond,
    Hold,
}

/// `Stream` as a trait object for the spawned servers.
trait StreamBox: Read + Write + Send {
    fn peer(&self) -> Option<SocketAddr>;
    fn nodelay(&self);
    fn nopush(&self);
}
impl<S: Stream> StreamBox for S {
    fn peer(&self) -> Option<SocketAddr> {
        Stream::peer(self)
    }
    fn nodelay(&self) {
        Stream::nodelay(self)
    }
    fn nopush(&self) {
        Stream::nopush(self)
    }
}
impl Stream for Box<dyn StreamBox> {
    fn peer(&self) -> Option<SocketAddr> {
        (**self).peer()
    }
    fn nodelay(&self) {
        (**self).nodelay()
    }
    fn nopush(&self) {
        (**self).nopush()
    }
}

fn serve<S: Stream>(accept: impl Fn() -> io::Result<S> + Send + 'static, how: Serve) {
    std::thread::spawn(move || {
        let mut held = Vec::new();
        loop {
            let Ok(s) = accept() else { continue };
            match how {
                Serve::Spawn(f) => {
                    std::thread::spawn(move || f(Box::new(s)));
                }
                Serve::Respond => {
                    let mut s = s;
                    if std::env::var_os("BENCH_PUSH").is_none() {
                        s.nopush();
                    }
                    let _ = s.write_all(&RESPONSE);
                    // close(): FIN after the data (with it under nopush).
                }
                Serve::Hold => held.push(s),
            }
        }
    });
}

const PORTS: [(u16, Serve); 4] =
    [(1234, Serve::Spawn(source)), (1235, Serve::Spawn(sink)), (1236, Serve::Respond), (1237, Serve::Hold)];

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("benchmark: {what}: {e}");
    std::process::exit(1)
}

/// The client's figures on stdout: `bytes seconds` or `conns seconds`.
fn client(kind: &str, to: IpAddr, bytes: u64, conns: usize, threads: usize) {
    use std::net::TcpStream;
    let t0 = Instant::now();
    match kind {
        "reader" | "writer" => {
            let port = if kind == "reader" { 1234 } else { 1235 };
            let mut s = TcpStream::connect((to, port)).unwrap_or_else(|e| die("connect", e));
            let mut buf = vec![0u8; 1_000_000];
            let mut done = 0u64;
            while done < bytes {
                let n = buf.len().min((bytes - done) as usize);
                let r = if kind == "reader" { s.read(&mut buf[..n]) } else { s.write(&buf[..n]) };
                match r {
                    Ok(0) => break,
                    Ok(k) => done += k as u64,
                    Err(e) => die(kind, e),
                }
            }
            if kind == "writer" {
                // Until the sink has read it all and closed.
                let _ = s.shutdown(Shutdown::Write);
                let _ = s.read(&mut buf);
            }
            println!("{done} {:.6}", t0.elapsed().as_secs_f64());
        }
        "conn" => {
            let each = conns.div_ceil(threads.max(1));
            let hs: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 2048];
                        let mut ok = 0usize;
                        for _ in 0..each {
                            let Ok(mut s) = TcpStream::connect((to, 1236)) else { continue };
                            let mut got = 0;
                            while let Ok(n) = s.read(&mut buf) {
                                if n == 0 {
                                    break;
                                }
                                got += n;
                            }
                            if got == RESPONSE.len() {
                                ok += 1;
                            }
                        }
                        ok
                    })
                })
                .collect();
            let ok: usize = hs.into_iter().map(|h| h.join().unwrap_or(0)).sum();
            println!("{ok} {:.6}", t0.elapsed().as_secs_f64());
        }
        "idle" => {
            let mut v = Vec::with_capacity(conns);
            for _ in 0..conns {
                match TcpStream::connect((to, 1237)) {
                    Ok(s) => v.push(s),
                    Err(e) => die("connect", e),
                }
            }
            println!("{} {:.6}", v.len(), t0.elapsed().as_secs_f64());
            let _ = io::stdout().flush();
            let _ = io::stdin().read_to_end(&mut Vec::new());
        }
        _ => usage(),
    }
}

fn main() {
    let mut it = std::env::args().skip(1);
    let (mut config, mut addr, mut kernel, mut kind, mut to) = (None, None, false, None, None);
    let (mut bytes, mut conns, mut threads) = (1_000_000_000u64, 10_000usize, 4usize);
    let num = |v: Option<String>| v.and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| usage());
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => config = it.next().map(PathBuf::from),
            "--addr" => addr = it.next().and_then(|s| s.parse::<IpAddr>().ok()),
            "--kernel" => kernel = true,
            "--client" => kind = it.next(),
            "--to" => to = it.next().and_then(|s| s.parse::<IpAddr>().ok()),
            "--bytes" => bytes = num(it.next()),
            "--conns" => conns = num(it.next()) as usize,
            "--threads" => threads = num(it.next()) as usize,
            _ => usage(),
        }
    }
    if let Some(kind) = kind {
        let Some(to) = to else { usage() };
        return client(&kind, to, bytes, conns, threads);
    }
    let Some(addr) = addr else { usage() };
    if kernel {
        for (port, how) in PORTS {
            let l = std::net::TcpListener::bind((addr, port)).unwrap_or_else(|e| die(&format!("{addr}:{port}"), e));
            eprintln!("benchmark: listening on {addr}:{port} (kernel)");
            serve(move || l.accept().map(|(s, _)| s), how);
        }
        loop {
            std::thread::park();
        }
    }
    let Some(config) = config else { usage() };
    let router = Embedded::start(&config, None).unwrap_or_else(|e| die("start", format!("{e:#}")));
    for (port, how) in PORTS {
        let l = api::TcpListener::bind(router.stack(), SocketAddr::new(addr, port))
            .unwrap_or_else(|e| die(&format!("{addr}:{port}"), e));
        if let Some(n) = std::env::var("BENCH_SNDBUF").ok().and_then(|v| v.parse().ok()) {
            l.set_send_buffer_size(n).unwrap_or_else(|e| die("SO_SNDBUF", e));
        }
        if let Some(n) = std::env::var("BENCH_RCVBUF").ok().and_then(|v| v.parse().ok()) {
            l.set_recv_buffer_size(n).unwrap_or_else(|e| die("SO_RCVBUF", e));
        }
        eprintln!("benchmark: listening on {addr}:{port}");
        serve(move || l.accept().map(|(s, _)| s), how);
    }
    router.wait();
}
