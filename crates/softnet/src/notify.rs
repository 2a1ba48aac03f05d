//! Readiness for systemd's `Type=notify` (sd_notify(3)): state lines sent
//! as one datagram to the unix socket named by `$NOTIFY_SOCKET` (a path,
//! or `@name` in the abstract namespace). Without the variable (not
//! started by systemd) nothing is sent. `READY=1` once the daemon is up,
//! `RELOADING=1` and `READY=1` around a SIGHUP reload, `STOPPING=1` when
//! it stops; `STATUS=` says what it is doing in `systemctl status`. With
//! `WatchdogSec=` (systemd sets `$WATCHDOG_USEC` and `$WATCHDOG_PID`) the
//! control thread's 1 s tick sends `WATCHDOG=1`: a control thread that
//! hangs gets the service restarted.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where the notifications go, if anywhere.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// `$WATCHDOG_USEC` when `$WATCHDOG_PID` is ours (or unset).
    watchdog: Option<std::time::Duration>,
}

/// sd_watchdog_enabled(3): the interval, if the watchdog is for this
/// process.
fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<std::time::Duration> {
    let usec: u64 = usec?.parse().ok().filter(|&u| u > 0)?;
    match pid {
        Some(p) if p.parse::<u32>().ok() != Some(me) => None,
        _ => Some(std::time::Duration::from_micros(usec)),
    }
}

/// The socket address `$NOTIFY_SOCKET` names.
fn address(name: &str) -> std::io::Result<SocketAddr> {
    match name.strip_prefix('@') {
        Some(abs) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abs.as_bytes())
        }
        None if name.starts_with('/') => SocketAddr::from_pathname(name),
        None => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "neither a path nor @name")),
    }
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a variable that names no usable socket is
    /// logged and ignored (the daemon runs, systemd will time it out).
    pub fn from_env() -> Notifier {
        let mut n = match std::env::var("NOTIFY_SOCKET") {
            Ok(name) if !name.is_empty() => match Notifier::to(&name) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("NOTIFY_SOCKET={name}: {e}; no readiness notification");
                    return Notifier { target: None, watchdog: None };
                }
            },
            _ => return Notifier { target: None, watchdog: None },
        };
        let (usec, pid) = (std::env::var("WATCHDOG_USEC").ok(), std::env::var("WATCHDOG_PID").ok());
        n.watchdog = watchdog_from(usec.as_deref(), pid.as_deref(), std::process::id());
        if let Some(w) = n.watchdog {
            if w < std::time::Duration::from_secs(2) {
                tracing::warn!("WatchdogSec={w:?} is shorter than twice the 1 s tick that feeds it");
            }
        }
        n
    }

    /// Notifications to the socket `name` (a path or `@abstract`).
    pub fn to(name: &str) -> std::io::Result<Notifier> {
        let addr = address(name)?;
        let sock = UnixDatagram::unbound()?;
        // A manager that does not read (a full queue) costs a logged
        // EAGAIN, never a blocked control thread.
        sock.set_nonblocking(true)?;
        Ok(Notifier { target: Some((sock, addr)), watchdog: None })
    }

    /// Sends newline-separated `KEY=VALUE` lines; a failure is logged
    /// (the manager may be gone) and otherwise ignored.
    pub fn send(&self, state: &str) {
        let Some((sock, addr)) = &self.target else { return };
        if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
            tracing::warn!("sd_notify {:?}: {e}", state.lines().next().unwrap_or(""));
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}\nMAINPID={}", std::process::id()));
    }

    /// RELOADING=1 with the CLOCK_MONOTONIC time systemd's
    /// `Type=notify-reload` wants beside it.
    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// WATCHDOG=1, when systemd watches (called every tick).
    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send("WATCHDOG=1");
        }
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

/// CLOCK_MONOTONIC in microseconds.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv(s: &UnixDatagram) -> String {
        let mut b = [0u8; 512];
        let n = s.recv(&mut b).unwrap();
        String::from_utf8(b[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_reloading_and_stopping_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("softnet-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::to(path.to_str().unwrap()).unwrap();
        n.ready("up: 2 workers");
        let m = recv(&server);
        assert!(m.starts_with("READY=1\nSTATUS=up: 2 workers\nMAINPID="), "{m}");
        n.reloading();
        let m = recv(&server);
        assert!(m.starts_with("RELOADING=1\n") && m.contains("\nMONOTONIC_USEC="), "{m}");
        n.stopping();
        assert_eq!(recv(&server), "STOPPING=1\nSTATUS=stopping");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_abstract_socket_is_named_with_an_at_sign() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("softnet-notify-test-{}", std::process::id());
        let server = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Notifier::to(&format!("@{name}")).unwrap().ready("up");
        assert!(recv(&server).starts_with("READY=1\n"));
    }

    #[test]
    fn a_relative_name_is_refused_and_no_socket_sends_nothing() {
        assert!(Notifier::to("relative/notify.sock").is_err());
        Notifier { target: None, watchdog: None }.ready("up");
    }

    #[test]
    fn the_watchdog_is_ours_only_with_our_pid_or_none() {
        let s = |u| Some(Duration::from_micros(u));
        assert_eq!(watchdog_from(Some("30000000"), None, 7), s(30_000_000));
        assert_eq!(watchdog_from(Some("30000000"), Some("7"), 7), s(30_000_000));
        assert_eq!(watchdog_from(Some("30000000"), Some("8"), 7), None, "another process's watchdog");
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_from(None, Some("7"), 7), None);
    }
}
