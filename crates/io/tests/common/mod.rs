//! Test support: network namespaces that clean up after themselves, a
//! bounded receive loop, and hand-built frames.
#![allow(dead_code)]

use softnet_core::link::LinkQueue;
use softnet_core::packet::{PacketBuf, PacketPool};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The root-only tests are `#[ignore = "needs root"]` (tests/run.sh runs
/// them with `--ignored` as root); run without root they fail loudly
/// instead of passing without having run.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(root, "this test needs root (network namespaces): run it as root");
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace `snio-<tag>-<pid>-<n>`, deleted (with every device in
/// it) when dropped, also when the test panics.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("snio-{tag}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    /// `ip -n NS args...`, panicking on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        sh("ip", &a);
    }

    pub fn exec(&self, args: &[&str]) {
        let mut a = vec!["netns", "exec", &self.name];
        a.extend_from_slice(args);
        sh("ip", &a);
    }

    /// Runs `f` on a thread that has entered this namespace: devices are
    /// looked up and sockets/fds created there. The results may be used from
    /// any thread afterwards.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).expect("open netns");
                // SAFETY: setns on a netns fd affects only this thread.
                let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A veth pair `a` (in `na`) -- `b` (in `nb`), created in `na` and moved.
pub fn veth_pair(na: &Netns, a: &str, nb: &Netns, b: &str) {
    na.ip(&["link", "add", a, "type", "veth", "peer", "name", b, "netns", &nb.name]);
    na.ip(&["link", "set", a, "up"]);
    nb.ip(&["link", "set", b, "up"]);
}

pub fn sh(cmd: &str, args: &[&str]) {
    let o = Command::new(cmd).args(args).output().expect("spawn");
    assert!(o.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Receives from `q` until `each` returns true for a frame or `timeout`
/// passes (sleeping in poll(2) between batches). Returns whether `each` did.
pub fn recv_until(
    q: &mut dyn LinkQueue,
    pool: &mut PacketPool,
    timeout: Duration,
    mut each: impl FnMut(&PacketBuf) -> bool,
) -> bool {
    let end = Instant::now() + timeout;
    let mut batch = Vec::with_capacity(64);
    let mut done = false;
    while !done && Instant::now() < end {
        let n = q.recv(pool, &mut batch, 64);
        for p in batch.drain(..) {
            done |= each(&p);
            pool.free(p);
        }
        if n == 0 {
            poll_in(q, 10);
        }
    }
    done
}

/// Sleeps until `q` has something to read or `ms` pass.
pub fn poll_in(q: &dyn LinkQueue, ms: i32) {
    if let Some(fd) = q.poll_fd() {
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    } else {
        std::thread::sleep(Duration::from_millis(ms as u64));
    }
}

// ---- frames, by hand ----

pub const BROADCAST: [u8; 6] = [0xff; 6];

pub fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s >> 16) + (s & 0xffff);
    }
    !(s as u16)
}

pub fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn arp_request(src_mac: [u8; 6], src_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&src_mac);
    a.extend_from_slice(&src_ip);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target_ip);
    ether(BROADCAST, src_mac, 0x0806, &a)
}

pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn icmp_echo(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let c = csum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// UDP with checksum 0 (none), carrying `payload`.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

pub fn ethertype(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[12], f[13]])
}

/// A UDP frame (`to` from `from`) 10.NET.FLOW -> 10.NET.0.2 of flow
/// `flow`, carrying `mark` then `seq`: the frames a test sends and
/// recognizes among the others on the link (`marked_seq`).
pub fn marked_frame(to: [u8; 6], from: [u8; 6], net: u8, mark: &[u8; 4], flow: u16, seq: u32) -> Vec<u8> {
    let mut payload = mark.to_vec();
    payload.extend_from_slice(&seq.to_be_bytes());
    let src = [10, net, (flow >> 8) as u8, flow as u8];
    ether(to, from, 0x0800, &ipv4(src, [10, net, 0, 2], 17, &udp(10000 + flow, 9, &payload)))
}

/// The sequence number of a `marked_frame` carrying `mark`, if `f` is one.
pub fn marked_seq(f: &[u8], mark: &[u8; 4]) -> Option<u32> {
    let p = 14 + 20 + 8;
    (f.len() >= p + 8 && ethertype(f) == 0x0800 && &f[p..p + 4] == mark)
        .then(|| u32::from_be_bytes([f[p + 4], f[p + 5], f[p + 6], f[p + 7]]))
}

/// Sends `frames` on `q` 32 at a time; how many it took.
pub fn send_all(q: &mut dyn LinkQueue, pool: &mut PacketPool, frames: &[Vec<u8>]) -> usize {
    let mut sent = 0;
    for chunk in frames.chunks(32) {
        let mut batch: Vec<PacketBuf> = chunk.iter().map(|f| PacketBuf::from_slice(f)).collect();
        sent += q.send(pool, &mut batch);
        assert!(batch.is_empty(), "send drains the batch");
    }
    sent
}
