//! The metrics endpoint: a small HTTP/1.1 server on the OS's own TCP
//! stack (not softnet's), one thread, one request per connection
//! (`Connection: close`). `GET /metrics` answers the exposition, in
//! OpenMetrics when the scraper's `Accept` asks for it, else in the
//! Prometheus text format; `/` a line pointing there; anything else 404,
//! other methods 405. A client that has not sent its whole request head
//! within `READ_TIMEOUT` (however it trickles) gets 408 and is dropped; a
//! head over `MAX_HEAD` bytes gets 431.

use super::{render, Format, Sources};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest a client may take to send its whole request head.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a refused request's leftovers are read and dropped.
const LINGER: Duration = Duration::from_secs(1);
/// Largest request head read.
const MAX_HEAD: usize = 8192;
/// How often the accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The listening endpoint; its thread stops with the daemon's stop flag.
pub struct MetricsServer {
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl MetricsServer {
    /// Binds `addr` now (an address in use is an error here, before the
    /// daemon goes on) and serves from a thread of its own until dropped.
    pub fn start(addr: SocketAddr, src: Sources) -> std::io::Result<MetricsServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let flag = stop.clone();
        let thread =
            std::thread::Builder::new().name("softnet-metrics".into()).spawn(move || serve(listener, &src, &flag))?;
        Ok(MetricsServer { addr, thread: Some(thread), stop })
    }

    /// The address bound (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: TcpListener, src: &Sources, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, peer)) => {
                if let Err(e) = answer(s, src) {
                    tracing::debug!("metrics: {peer}: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(STOP_POLL),
            Err(e) => {
                tracing::warn!("metrics: accept: {e}");
                std::thread::sleep(STOP_POLL);
            }
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Asked {
    Metrics(Format),
    Index,
    NotFound,
    BadMethod,
    Malformed,
    TooLarge,
    TimedOut,
}

/// Reads the request head: up to the empty line, at most `MAX_HEAD` bytes,
/// within `READ_TIMEOUT` in all.
fn read_head(s: &mut TcpStream) -> std::io::Result<Result<String, Asked>> {
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(Err(Asked::TimedOut));
        }
        s.set_read_timeout(Some(left))?;
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Ok(Err(Asked::TimedOut))
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(Err(Asked::Malformed));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(String::from_utf8(buf).map_err(|_| Asked::Malformed));
        }
        if buf.len() > MAX_HEAD {
            return Ok(Err(Asked::TooLarge));
        }
    }
}

/// Parses a request head (request line and headers).
pub(crate) fn parse_head(head: &str) -> Asked {
    let mut lines = head.split("\r\n");
    let mut words = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) = (words.next(), words.next(), words.next(), words.next())
    else {
        return Asked::Malformed;
    };
    if !version.starts_with("HTTP/1.") {
        return Asked::Malformed;
    }
    if method != "GET" {
        return Asked::BadMethod;
    }
    let path = target.split('?').next().unwrap_or("");
    let openmetrics = lines.any(|l| {
        l.split_once(':')
            .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text"))
    });
    match path {
        "/metrics" if openmetrics => Asked::Metrics(Format::OpenMetrics),
        "/metrics" => Asked::Metrics(Format::Prometheus),
        "/" => Asked::Index,
        _ => Asked::NotFound,
    }
}

fn answer(mut s: TcpStream, src: &Sources) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_write_timeout(Some(READ_TIMEOUT))?;
    let asked = match read_head(&mut s)? {
        Ok(head) => parse_head(&head),
        Err(a) => a,
    };
    let (status, ctype, body) = match &asked {
        Asked::Metrics(f) => ("200 OK", f.content_type(), render(src, *f)),
        Asked::Index => ("200 OK", "text/plain; charset=utf-8", "softnet metrics: see /metrics\n".to_string()),
        Asked::NotFound => ("404 Not Found", "text/plain; charset=utf-8", "not found: try /metrics\n".to_string()),
        Asked::BadMethod => ("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET\n".to_string()),
        Asked::Malformed => ("400 Bad Request", "text/plain; charset=utf-8", "bad request\n".to_string()),
        Asked::TimedOut => ("408 Request Timeout", "text/plain; charset=utf-8", "request head too slow\n".to_string()),
        Asked::TooLarge => {
            ("431 Request Header Fields Too Large", "text/plain; charset=utf-8", "request head too large\n".to_string())
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.flush()?;
    if matches!(asked, Asked::Malformed | Asked::TooLarge | Asked::TimedOut) {
        // A lingering close: what the client still sends is read and
        // dropped (bounded), so that closing with unread bytes does not
        // reset the connection before it has read the answer.
        s.shutdown(std::net::Shutdown::Write)?;
        s.set_read_timeout(Some(LINGER))?;
        let until = std::time::Instant::now() + LINGER;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 && std::time::Instant::now() < until {
            match s.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    }
    Ok(())
}
