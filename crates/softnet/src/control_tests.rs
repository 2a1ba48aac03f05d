//! The control server on a temporary socket, against a stack with virtual
//! links, driven through the real client code (`admin::run`): what each
//! command prints, and that `route monitor` sees one message per change.

use crate::admin::{self, Client};
use crate::control::{Handler, Server};
use crate::proto::{self, Response, PROTOCOL_VERSION};
use softnet_core::iface::IfAddr;
use softnet_core::stack::{Stack, StackConfig};
use softnet_core::vlink::{self, VirtualPort};
use softnet_wire::ethernet::MacAddr;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn temp_socket() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "softnet-ctl-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    // The server creates the directory itself.
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("softnet.sock")
}

struct Fixture {
    stack: Arc<Stack>,
    stop: Arc<AtomicBool>,
    path: PathBuf,
    server: Option<std::thread::JoinHandle<()>>,
    _ports: Vec<VirtualPort>,
}

impl Fixture {
    fn new() -> Fixture {
        Self::build(None)
    }

    /// With `control_group` = `gid`.
    fn with_group(gid: u32) -> Fixture {
        Self::build(Some(gid))
    }

    fn build(group: Option<u32>) -> Fixture {
        let stack = Stack::new(StackConfig { workers: 1, pool_size: 64, ..StackConfig::default() });
        let (r0, a) = vlink::wire(1, 64);
        let (r1, b) = vlink::wire(1, 64);
        stack.create_interface("sn-r0", MacAddr([2, 0, 0, 0, 1, 1]), 1500, r0.link_queues()).unwrap();
        stack.create_interface("sn-r1", MacAddr([2, 0, 0, 0, 2, 1]), 1500, r1.link_queues()).unwrap();
        stack.add_address("sn-r0", IfAddr::new("10.0.1.1".parse().unwrap(), 24)).unwrap();
        stack.add_address("sn-r1", IfAddr::new("10.0.2.1".parse().unwrap(), 24)).unwrap();
        stack.set_up("sn-r0", true).unwrap();
        stack.set_up("sn-r1", true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let path = temp_socket();
        let mut server = Server::bind(&path, Arc::new(Handler::new(stack.clone(), stop.clone()))).unwrap();
        if let Some(g) = group {
            server.allow_group(g).unwrap();
        }
        let server = std::thread::spawn(move || server.run());
        Fixture { stack, stop, path, server: Some(server), _ports: vec![r0, r1, a, b] }
    }

    /// `softnet TOOL LINE` through the client: (exit code, stdout, stderr).
    fn sn(&self, tool: &str, line: &str) -> (i32, String, String) {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = admin::run(tool, &self.path, &args, &mut out, &mut err);
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, tool: &str, line: &str) -> String {
        let (code, out, err) = self.sn(tool, line);
        assert_eq!(code, 0, "softnet {tool} {line}: {err}");
        assert!(err.is_empty(), "softnet {tool} {line}: stderr {err:?}");
        out
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, tool: &str, line: &str) -> String {
        let (code, out, err) = self.sn(tool, line);
        assert_eq!(code, 1, "softnet {tool} {line} should fail: {out}");
        assert!(out.is_empty(), "softnet {tool} {line}: stdout {out:?}");
        err
    }

    /// Stops the server (dropping the fixture); returns the socket's path,
    /// whose directory is gone with it.
    fn stop(self) -> PathBuf {
        self.path.clone()
    }
}

impl Drop for Fixture {
    /// Stops the server and removes the directory it created, also when a
    /// test fails.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.server.take() {
            let joined = h.join();
            if !std::thread::panicking() {
                joined.unwrap();
            }
        }
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A `route monitor` client on its own thread; messages arrive on the
/// channel.
fn monitor(path: &Path) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut c = Client::connect(&path).unwrap();
        let _ = c.monitor(None, || ready_tx.send(()).unwrap(), |m| tx.send(m.to_string()).is_ok());
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).expect("monitor subscribed");
    rx
}

/// The messages of one change: the first within a second, then whatever
/// else comes shortly after.
#[track_caller]
fn messages(rx: &mpsc::Receiver<String>) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(m) = rx.recv_timeout(Duration::from_secs(2)) {
        v.push(m);
        while let Ok(m) = rx.recv_timeout(Duration::from_millis(150)) {
            v.push(m);
        }
    }
    v
}

#[track_caller]
fn one_message(rx: &mpsc::Receiver<String>, kind: &str) -> String {
    let m = messages(rx);
    assert_eq!(m.len(), 1, "one message per change, got {m:#?}");
    assert!(m[0].starts_with(kind), "{}", m[0]);
    m.into_iter().next().unwrap()
}

#[test]
fn route_commands_print_like_route8_and_monitor_sees_each_change_once() {
    let f = Fixture::new();
    let mon = monitor(&f.path);

    assert_eq!(f.ok("route", "add default 10.0.2.254"), "add net default: gateway 10.0.2.254\n");
    let m = one_message(&mon, "RTM_ADD: Add Route");
    assert!(m.contains("name sn-r1"), "{m}");

    assert_eq!(f.ok("route", "add -net 192.0.2.0/24 10.0.2.2"), "add net 192.0.2.0/24: gateway 10.0.2.2\n");
    one_message(&mon, "RTM_ADD");
    assert_eq!(f.ok("route", "add -host 198.51.100.7 10.0.1.2"), "add host 198.51.100.7: gateway 10.0.1.2\n");
    one_message(&mon, "RTM_ADD");

    let e = f.fails("route", "add -net 192.0.2.0/24 10.0.2.2");
    assert_eq!(e, "softnet: route: add net 192.0.2.0/24: gateway 10.0.2.2: File exists\n");
    let e = f.fails("route", "add 203.0.113.0/24 10.9.9.9");
    assert!(e.ends_with(": Network is unreachable\n"), "{e}");
    assert!(messages(&mon).is_empty(), "a failed change announces nothing");

    let get = f.ok("route", "get 192.0.2.1");
    assert!(
        get.starts_with(
            "   route to: 192.0.2.1\ndestination: 192.0.2.0\n       mask: 255.255.255.0\n    gateway: 10.0.2.2\n  interface: sn-r1\n if address: 10.0.2.1\n   priority: 8 (static)\n      flags: <UP,GATEWAY,DONE,STATIC>\n"
        ),
        "{get}"
    );
    let get = f.ok("route", "get 8.8.8.8");
    assert!(get.contains("destination: default\n       mask: default\n    gateway: 10.0.2.254\n"), "{get}");
    let get = f.ok("route", "get 198.51.100.7");
    assert!(get.contains("destination: 198.51.100.7\n    gateway: 10.0.1.2\n"), "host route has no mask: {get}");
    let e = f.fails("route", "get -net 10.99.0.0/16");
    assert!(e.contains("not in table") || e.contains("No such process"), "{e}");

    let show = f.ok("route", "show");
    assert_eq!(show, f.ok("netstat", "-rn"), "route show is netstat -rn");
    let line = show.lines().find(|l| l.starts_with("192.0.2/24")).unwrap_or_else(|| panic!("{show}"));
    assert!(line.contains("10.0.2.2") && line.contains("UGS") && line.ends_with("sn-r1"), "{line}");
    assert!(show.lines().any(|l| l.starts_with("default") && l.contains("10.0.2.254")), "{show}");

    assert_eq!(f.ok("route", "change 192.0.2.0/24 10.0.1.5"), "change net 192.0.2.0/24: gateway 10.0.1.5\n");
    one_message(&mon, "RTM_CHANGE");
    let get = f.ok("route", "get 192.0.2.1");
    assert!(get.contains("    gateway: 10.0.1.5\n  interface: sn-r0\n"), "{get}");

    let e = f.fails("route", "delete 192.0.2.0/24 10.0.2.2");
    assert!(e.ends_with("delete net 192.0.2.0/24: gateway 10.0.2.2: No such process\n"), "wrong gateway: {e}");
    assert_eq!(f.ok("route", "delete 192.0.2.0/24"), "delete net 192.0.2.0/24\n");
    one_message(&mon, "RTM_DELETE");
    let e = f.fails("route", "delete 192.0.2.0/24");
    assert_eq!(e, "softnet: route: delete net 192.0.2.0/24: No such process\n");

    assert_eq!(f.ok("route", "add 192.0.2.0/24 -blackhole"), "add net 192.0.2.0/24\n");
    one_message(&mon, "RTM_ADD");
    let show = f.ok("netstat", "-rn");
    let line = show.lines().find(|l| l.starts_with("192.0.2/24")).unwrap();
    assert!(line.contains('B'), "{line}");
    assert_eq!(f.ok("route", "add 203.0.113.0/24 -ifp sn-r0"), "add net 203.0.113.0/24: gateway sn-r0\n");
    one_message(&mon, "RTM_ADD");

    // Other routing tables.
    assert_eq!(f.ok("route", "-T 5 add 192.0.2.0/24 10.0.2.3"), "add net 192.0.2.0/24: gateway 10.0.2.3\n");
    let m = one_message(&mon, "RTM_ADD");
    assert!(m.contains("table 5"), "{m}");
    assert!(f.ok("netstat", "-rnT5").starts_with("Routing tables (rtable 5)"));
    assert!(f.ok("route", "-T5 get 192.0.2.9").contains("gateway: 10.0.2.3"));

    // -q prints nothing.
    assert_eq!(f.ok("route", "-q -T 5 delete 192.0.2.0/24").len(), 0);
    f.stop();
}

#[test]
fn ifconfig_lists_changes_and_destroys_interfaces() {
    let f = Fixture::new();
    let all = f.ok("ifconfig", "");
    assert!(
        all.starts_with(
            "sn-r0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500\n\tlladdr 02:00:00:00:01:01\n\tindex 1 priority 0 llprio 3\n"
        ),
        "{all}"
    );
    assert!(all.contains("\tinet 10.0.1.1 netmask 0xffffff00 broadcast 10.0.1.255\n"), "{all}");
    assert!(all.contains("sn-r1: flags=8843"), "{all}");
    assert_eq!(f.ok("ifconfig", "-a"), all);
    let one = f.ok("ifconfig", "sn-r1");
    assert!(one.starts_with("sn-r1: ") && !one.contains("sn-r0"), "{one}");

    let mon = monitor(&f.path);
    assert_eq!(f.ok("ifconfig", "sn-r0 inet 10.0.9.1/24"), "");
    let m = messages(&mon);
    assert!(m.iter().any(|m| m.starts_with("RTM_NEWADDR")), "{m:#?}");
    assert!(f.ok("ifconfig", "sn-r0").contains("\tinet 10.0.9.1 netmask 0xffffff00 broadcast 10.0.9.255\n"));
    assert!(f.ok("netstat", "-rn").lines().any(|l| l.starts_with("10.0.9/24")));
    let e = f.fails("ifconfig", "sn-r1 inet 10.0.9.1/24");
    assert!(e.starts_with("softnet: ifconfig: ") && e.contains("10.0.9.1"), "{e}");
    assert!(messages(&mon).is_empty());

    assert_eq!(f.ok("ifconfig", "sn-r0 inet 10.0.9.1 delete"), "");
    let m = messages(&mon);
    assert!(m.iter().any(|m| m.starts_with("RTM_DELADDR")), "{m:#?}");
    assert!(!f.ok("ifconfig", "sn-r0").contains("10.0.9.1"));
    assert!(!f.ok("netstat", "-rn").contains("10.0.9"));
    f.fails("ifconfig", "sn-r0 inet 10.0.9.1 delete");

    f.ok("ifconfig", "sn-r0 down");
    let m = one_message(&mon, "RTM_IFINFO");
    assert!(m.contains("name sn-r0"), "{m}");
    assert!(f.ok("ifconfig", "sn-r0").starts_with("sn-r0: flags=8802<BROADCAST,SIMPLEX,MULTICAST> mtu 1500\n"));
    assert!(f.ok("netstat", "-i").lines().any(|l| l.starts_with("sn-r0*")), "netstat -i marks a down interface");
    f.ok("ifconfig", "sn-r0 down");
    assert!(messages(&mon).is_empty(), "no change, no message");
    f.ok("ifconfig", "sn-r0 up");
    one_message(&mon, "RTM_IFINFO");

    f.ok("route", "add 192.0.2.0/24 10.0.2.2");
    one_message(&mon, "RTM_ADD");
    assert_eq!(f.ok("ifconfig", "sn-r1 destroy"), "");
    let m = messages(&mon);
    assert!(m.iter().any(|m| m.starts_with("RTM_IFANNOUNCE") && m.contains("departure")), "{m:#?}");
    assert!(m.iter().any(|m| m.starts_with("RTM_DELETE") && m.contains("192.0.2.0")), "{m:#?}");
    assert!(!f.ok("ifconfig", "").contains("sn-r1"));
    assert!(!f.ok("netstat", "-rn").contains("10.0.2"), "routes through sn-r1 went with it");
    assert_eq!(f.fails("ifconfig", "sn-r1"), "softnet: ifconfig: sn-r1: no such interface\n");
    assert!(f.fails("ifconfig", "sn-r1 up").contains("sn-r1"));
    assert!(f.stack.ifaces.load().by_name("sn-r1").is_none());
    f.stop();
}

#[test]
fn arp_and_netstat_commands() {
    let f = Fixture::new();
    assert_eq!(f.ok("arp", "-s 10.0.1.9 02:00:00:00:01:09"), "");
    let an = f.ok("arp", "-an");
    assert!(an.starts_with("Host"), "{an}");
    let line = an.lines().find(|l| l.starts_with("10.0.1.9 ")).unwrap_or_else(|| panic!("{an}"));
    assert!(line.contains("02:00:00:00:01:09") && line.contains("sn-r0") && line.contains("static"), "{line}");
    assert!(an.lines().any(|l| l.starts_with("10.0.1.1 ")), "local addresses are listed: {an}");
    f.ok("arp", "-s 10.0.1.10 02:00:00:00:01:0a permanent");
    assert!(f.ok("arp", "-n 10.0.1.10").contains("permanent"));
    let one = f.ok("arp", "-n 10.0.1.9");
    assert!(one.contains("02:00:00:00:01:09"), "{one}");

    f.ok("arp", "-s 10.0.2.9 02:00:00:00:02:09 temp pub");
    let e = f.fails("arp", "-s 10.7.7.7 02:00:00:00:02:09");
    assert!(e.starts_with("softnet: arp: "), "{e}");

    assert_eq!(f.ok("arp", "-d 10.0.1.9"), "10.0.1.9 (10.0.1.9) deleted\n");
    assert!(!f.ok("arp", "-an").contains("10.0.1.9 "));
    let e = f.fails("arp", "-d 10.0.1.9");
    assert!(e.starts_with("softnet: arp: ") && e.contains("10.0.1.9"), "{e}");
    let out = f.ok("arp", "-da");
    assert!(out.contains("10.0.2.9 (10.0.2.9) deleted"), "{out}");
    assert!(!f.ok("arp", "-an").contains("10.0.2.9 "));

    let s = f.ok("netstat", "-s");
    assert!(s.starts_with("ip:\n"), "{s}");
    let i = f.ok("netstat", "-i");
    assert!(i.starts_with("Name") && i.lines().any(|l| l.starts_with("sn-r0 ") && l.contains("<Link>")), "{i}");
    assert!(i.lines().any(|l| l.starts_with("sn-r1 ") && l.contains("10.0.2.1")), "{i}");
    f.stop();
}

#[test]
fn socket_is_private_single_and_versioned() {
    let f = Fixture::new();
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A second server on the same socket is refused.
    let h2 = Arc::new(Handler::new(f.stack.clone(), Arc::new(AtomicBool::new(false))));
    let e = Server::bind(&f.path, h2.clone()).err().expect("second daemon refused").to_string();
    assert_eq!(e, format!("softnet already running on {}", f.path.display()));

    // A client of another protocol version gets a clear error.
    let mut s = UnixStream::connect(&f.path).unwrap();
    let body = br#"{"version":99,"request":{"netstat":"stats"}}"#;
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(body).unwrap();
    match proto::read_response(&mut s).unwrap() {
        Response::Error(e) => assert!(e.contains("version mismatch") && e.contains("99"), "{e}"),
        other => panic!("{other:?}"),
    }

    // Several requests, one at a time, on one connection.
    let mut c = Client::connect(&f.path).unwrap();
    for _ in 0..3 {
        let r = c.call(&proto::Request::Netstat(proto::NetstatOp::Interfaces)).unwrap();
        assert!(matches!(r, Response::Text(t) if t.contains("sn-r0")));
    }
    // An oversize length ends the connection with an error, not a crash.
    let mut s = UnixStream::connect(&f.path).unwrap();
    s.write_all(&(proto::MAX_FRAME + 1).to_be_bytes()).unwrap();
    assert!(matches!(proto::read_response(&mut s), Ok(Response::Error(e)) if e.contains("too long")));
    const { assert!(PROTOCOL_VERSION >= 1) };

    let path = f.stop();
    assert!(!path.exists(), "socket removed at stop");

    // A stale socket file (a daemon that died) is replaced.
    let dir = path.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    assert!(path.exists());
    let s = Server::bind(&path, h2).expect("stale socket replaced");
    drop(s);
    assert!(!path.exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn ifconfig_shows_the_host_twin_and_its_counters() {
    let f = Fixture::new();
    let (near, _far) = vlink::wire(1, 8);
    f.stack.attach_host("sn-r0", "hsn0", near.link_queues()).unwrap();
    let out = f.ok("ifconfig", "sn-r0");
    assert!(
        out.contains("\thost: hsn0 punted 0 errors 0 from host 0 sent 0 filtered 0 dropped 0 arp 0 nd 0\n"),
        "{out}"
    );
    assert!(!f.ok("ifconfig", "sn-r1").contains("host:"));
}

#[test]
fn ifconfig_groups_are_shown_and_name_interfaces_for_pf() {
    let f = Fixture::new();
    assert_eq!(f.ok("ifconfig", "sn-r1 group lan"), "");
    assert_eq!(f.ok("ifconfig", "sn-r1 group lan"), "", "adding a group twice is not an error");
    assert!(f.ok("ifconfig", "sn-r1").contains("\tindex 2 priority 0 llprio 3\n\tgroups: lan\n"));
    assert!(!f.ok("ifconfig", "sn-r0").contains("groups:"));
    assert!(f.fails("ifconfig", "sn-r0 -group lan").contains("sn-r0: not in group lan"));
    // egress: the interfaces of the default route
    f.ok("route", "add default 10.0.1.254");
    assert!(f.ok("ifconfig", "sn-r0").contains("\tgroups: egress\n"));

    // pf resolves groups through the daemon (`lan:network`); `on lan` and
    // `on egress` stay group names in the rule, as pfctl keeps them.
    let dir = std::env::temp_dir().join(format!("sn-groups-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("pf.conf");
    std::fs::write(&conf, "pass in on lan from lan:network\npass out on egress\n").unwrap();
    let pfctl = |args: &str| {
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crate::pfctl::run(&f.path, &args, &mut out, &mut err);
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    };
    let (code, out, err) = pfctl(&format!("-nvf {}", conf.display()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "pass in on lan inet from 10.0.2.0/24 to any flags S/SA\npass out on egress all flags S/SA\n");
    // leaving the group: the name no longer stands for the interface
    assert_eq!(f.ok("ifconfig", "sn-r1 -group lan"), "");
    let (code, _, err) = pfctl(&format!("-nf {}", conf.display()));
    assert_eq!(code, 1);
    assert!(err.contains("pf.conf:1: ") && err.contains("lan"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    f.stop();
}

#[test]
fn ifconfig_inet6_and_ndp_commands() {
    let f = Fixture::new();
    let ll0 = "\tinet6 fe80::ff:fe00:101%sn-r0 prefixlen 64";
    let r0 = f.ok("ifconfig", "sn-r0");
    assert!(r0.contains(&format!("{ll0} tentative scopeid 0x1\n")), "{r0}");
    assert!(r0.find("\tinet 10.0.1.1").unwrap() < r0.find("\tinet6").unwrap(), "inet before inet6: {r0}");
    assert_eq!(f.ok("ifconfig", "sn-r0 inet6 fd00:1::1/64"), "");
    assert_eq!(f.ok("ifconfig", "sn-r0 inet6 fd00:1::2 prefixlen 80"), "");
    assert!(f.ok("ifconfig", "sn-r0").contains("\tinet6 fd00:1::1 prefixlen 64 tentative\n"));
    let e = f.fails("ifconfig", "sn-r1 inet6 fd00:1::1/64");
    assert_eq!(e, "softnet: ifconfig: sn-r1: address fd00:1::1/64 already configured\n");
    let e = f.fails("ifconfig", "sn-r0 inet6 ff02::1/64");
    assert_eq!(e, "softnet: ifconfig: sn-r0: bad address ff02::1/64: not a unicast address\n");
    let e = f.fails("ifconfig", "sn-r0 inet6 fd00::1/129");
    assert!(e.starts_with("softnet ifconfig: fd00::1/129: bad prefix length\nusage:"), "{e}");
    // DAD runs on the stack's timer: after a second or two every address
    // is in use.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while f.ok("ifconfig", "sn-r0").contains("tentative") {
        assert!(std::time::Instant::now() < deadline, "DAD never finished");
        f.stack.tick();
        std::thread::sleep(Duration::from_millis(100));
    }
    let r0 = f.ok("ifconfig", "sn-r0");
    assert!(
        r0.contains(&format!("{ll0} scopeid 0x1\n\tinet6 fd00:1::1 prefixlen 64\n\tinet6 fd00:1::2 prefixlen 80\n")),
        "{r0}"
    );
    assert_eq!(f.ok("ifconfig", "sn-r0 inet6 fd00:1::2 delete"), "");
    assert!(!f.ok("ifconfig", "sn-r0").contains("fd00:1::2"));
    f.fails("ifconfig", "sn-r0 inet6 fd00:1::2 delete");

    // ndp(8)
    let an = f.ok("ndp", "-an");
    assert!(
        an.starts_with("Neighbor                             Linklayer Address   Netif Expire    S Flags\n"),
        "{an}"
    );
    let row = |n: &str, ll: &str, rest: &str| format!("{n:<36} {ll:<17} {:>7} {rest}\n", "sn-r0");
    assert!(an.contains(&row("fe80::ff:fe00:101%sn-r0", "02:00:00:00:01:01", "permanent R l")), "{an}");
    assert!(an.contains("fd00:1::1 "), "{an}");
    assert_eq!(f.ok("ndp", "-s fd00:1::9 02:00:00:00:01:09 proxy"), "");
    let line = f.ok("ndp", "-n fd00:1::9");
    assert!(line.ends_with(&row("fd00:1::9", "02:00:00:00:01:09", "permanent R p")), "{line}");
    assert_eq!(f.fails("ndp", "-s 2001:db8::9 02:00:00:00:01:09"), "softnet: ndp: RTM_GET(2001:db8::9) failed\n");
    assert_eq!(f.fails("ndp", "-n fd00:1::77"), "softnet: ndp: fd00:1::77 (fd00:1::77) -- no entry\n");
    assert_eq!(f.ok("ndp", "-d fd00:1::9"), "fd00:1::9 (fd00:1::9) deleted\n");
    assert_eq!(f.fails("ndp", "-d fd00:1::9"), "softnet: ndp: delete: cannot delete non-NDP entry\n");
    assert_eq!(f.ok("ndp", "-d fe80::ff:fe00:101%sn-r0"), "", "a local entry is spared");
    assert!(f.fails("ndp", "-d fe80::1%nope").contains("nope"));
    // ndp -c: the learned entries go, the others stay.
    let ifp = f.stack.ifaces.load().by_name("sn-r0").cloned().unwrap();
    let mut out = softnet_core::nd6::Nd6Input::new();
    let stats = softnet_core::nd6::Nd6Stats::default();
    let now = f.stack.clock.now();
    let mac = Some(MacAddr([2, 0, 0, 0, 1, 2]));
    f.stack.nd6.cache_lladdr(
        now,
        &ifp,
        "fd00:1::2".parse().unwrap(),
        mac,
        softnet_core::nd6::NdMsg::Ns,
        &stats,
        &mut out,
    );
    f.stack.nd6.cache_lladdr(
        now,
        &ifp,
        "fe80::2".parse().unwrap(),
        mac,
        softnet_core::nd6::NdMsg::Ns,
        &stats,
        &mut out,
    );
    let an = f.ok("ndp", "-an");
    let stale = row("fe80::2%sn-r0", "02:00:00:00:01:02", "23h59m59s S ");
    let stale2 = row("fe80::2%sn-r0", "02:00:00:00:01:02", "23h59m58s S ");
    assert!(an.contains(&stale) || an.contains(&stale2), "{an}");
    assert_eq!(f.ok("ndp", "-c"), "fd00:1::2 (fd00:1::2) deleted\nfe80::2%sn-r0 (fe80::2%sn-r0) deleted\n");
    assert!(!f.ok("ndp", "-an").contains("fd00:1::2 "));
    assert!(f.ok("ndp", "-an").contains("fd00:1::1 "));
    f.stop();
}

#[test]
fn route_inet6_commands_and_the_internet6_section_of_netstat() {
    let f = Fixture::new();
    let r0 = f.stack.ifaces.load().by_name("sn-r0").unwrap().weak();
    // An IPv6 address on sn-r0 brings its connected route; every
    // interface has its link-local prefix.
    assert_eq!(f.ok("ifconfig", "sn-r0 inet6 2001:db8:1::1/64"), "");
    assert_eq!(
        f.ok("route", "add -inet6 2001:db8:9:: -prefixlen 48 2001:db8:1::fe"),
        "add net 2001:db8:9::/48: gateway 2001:db8:1::fe\n"
    );
    assert_eq!(f.ok("route", "add default -inet6 fe80::fe%sn-r0"), "add net default: gateway fe80::fe%sn-r0\n");
    let e = f.fails("route", "add -inet6 2001:db8:a::/48 2001:db8:77::1");
    assert!(e.contains("add net 2001:db8:a::/48: gateway 2001:db8:77::1: Network is unreachable"), "{e}");
    let e = f.fails("route", "change -inet6 default fe80::fe");
    assert!(e.contains("change net default: gateway fe80::fe: Invalid argument"), "{e}");
    assert_eq!(f.ok("ifconfig", "sn-r1 inet6 fe80::ff:fe00:201 delete"), "");
    let e = f.fails("route", "add -inet6 2001:db8:b::/48 fe80::fe%sn-r1");
    assert!(e.contains("Network is unreachable"), "no link-local prefix on sn-r1: {e}");
    let get = f.ok("route", "get -inet6 2001:db8:9::5");
    for want in [
        "   route to: 2001:db8:9::5\n",
        "destination: 2001:db8:9::\n",
        "       mask: ffff:ffff:ffff::\n",
        "    gateway: 2001:db8:1::fe\n",
        "  interface: sn-r0\n",
        "      flags: <UP,GATEWAY,DONE,STATIC>\n",
    ] {
        assert!(get.contains(want), "{want:?} in {get}");
    }
    assert!(f.ok("route", "get fe80::99%sn-r0").contains("destination: fe80::%sn-r0\n"));
    let n6 = f.ok("netstat", "-rn -f inet6");
    assert!(n6.starts_with("Routing tables\n\nInternet6:\nDestination "), "{n6}");
    assert!(
        n6.contains(&format!("\n{:<43} {:<39} UGS        0     -     8 sn-r0\n", "default", "fe80::fe%sn-r0")),
        "{n6}"
    );
    assert!(n6.contains("\nfe80::%sn-r0/64 "), "{n6}");
    assert!(!n6.contains("Internet:"), "{n6}");
    let n4 = f.ok("netstat", "-rn -f inet");
    assert!(n4.contains("Internet:") && !n4.contains("Internet6"), "{n4}");
    let both = f.ok("netstat", "-rn");
    assert!(both.contains("\n\nInternet:\n") && both.contains("\n\nInternet6:\n"), "{both}");
    assert_eq!(f.ok("route", "show -inet6"), n6);
    assert_eq!(f.ok("route", "delete -inet6 2001:db8:9::/48"), "delete net 2001:db8:9::/48\n");
    let e = f.fails("route", "delete -inet6 2001:db8:9::/48");
    assert!(e.contains("delete net 2001:db8:9::/48: No such process"), "{e}");
    assert_eq!(f.ok("route", "delete -inet6 fe80::%sn-r0/64"), "delete net fe80::%sn-r0/64\n");
    assert!(f.stack.routes.get_scoped(0, "fe80::".parse::<std::net::Ipv6Addr>().unwrap(), 64, r0.index).is_none());
}

/// One request frame as a client sends it.
fn request_frame(req: &proto::Request) -> Vec<u8> {
    let mut b = Vec::new();
    proto::write_request(&mut b, req).unwrap();
    b
}

/// The daemon answers `netstat -i` on a new connection.
fn still_answers(f: &Fixture) {
    let mut c = Client::connect(&f.path).unwrap();
    let r = c.call(&proto::Request::Netstat(proto::NetstatOp::Interfaces)).unwrap();
    assert!(matches!(r, Response::Text(t) if t.contains("sn-r0")));
}

#[test]
fn malformed_truncated_and_oversized_requests_get_errors_and_never_stop_the_daemon() {
    let f = Fixture::new();
    // Garbage in a whole frame: an error, and the connection goes on.
    let mut s = UnixStream::connect(&f.path).unwrap();
    for body in [&b"not json"[..], b"{\"version\":3}", b"{\"version\":3,\"request\":{\"route\":7}}", b"\xff\xfe"] {
        s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        s.write_all(body).unwrap();
        match proto::read_response(&mut s).unwrap() {
            Response::Error(e) => assert!(e.starts_with("unsupported request (malformed message"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
    s.write_all(&request_frame(&proto::Request::Netstat(proto::NetstatOp::Interfaces))).unwrap();
    assert!(matches!(proto::read_response(&mut s).unwrap(), Response::Text(_)));
    drop(s);
    // Truncated: a length and part of the body, or part of the length.
    for cut in [2usize, 4, 10] {
        let mut s = UnixStream::connect(&f.path).unwrap();
        let frame = request_frame(&proto::Request::Netstat(proto::NetstatOp::Stats));
        s.write_all(&frame[..cut]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(proto::read_response(&mut s).is_err(), "a truncated request gets no answer");
    }
    // A request longer than MAX_REQUEST: an error before the body is read,
    // then the connection closes.
    let mut s = UnixStream::connect(&f.path).unwrap();
    s.write_all(&(proto::MAX_REQUEST + 1).to_be_bytes()).unwrap();
    match proto::read_response(&mut s).unwrap() {
        Response::Error(e) => assert_eq!(e, format!("message too long ({} bytes)", proto::MAX_REQUEST + 1)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(proto::read_response(&mut s), Err(proto::FrameError::Closed)));
    // A length that promises the most and sends nothing costs nothing.
    let mut s = UnixStream::connect(&f.path).unwrap();
    s.write_all(&proto::MAX_REQUEST.to_be_bytes()).unwrap();
    drop(s);
    still_answers(&f);
    f.stop();
}

#[test]
fn connections_past_the_limit_are_refused_with_an_error() {
    let f = Fixture::new();
    let mut held = Vec::new();
    for _ in 0..crate::control::MAX_CONNECTIONS {
        let mut c = Client::connect(&f.path).unwrap();
        // Served: the connection thread is running.
        assert!(matches!(c.call(&proto::Request::Netstat(proto::NetstatOp::Stats)).unwrap(), Response::Text(_)));
        held.push(c);
    }
    let mut s = UnixStream::connect(&f.path).unwrap();
    match proto::read_response(&mut s).unwrap() {
        Response::Error(e) => assert_eq!(e, "too many control connections (at most 64)"),
        other => panic!("{other:?}"),
    }
    drop(held);
    // The slots come back as the connections end.
    let t0 = std::time::Instant::now();
    loop {
        let mut c = Client::connect(&f.path).unwrap();
        match c.call(&proto::Request::Netstat(proto::NetstatOp::Interfaces)) {
            Ok(Response::Text(_)) => break,
            _ if t0.elapsed() < Duration::from_secs(5) => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("slots not given back: {other:?}"),
        }
    }
    f.stop();
}

/// Connects to `path` as uid/gid 65534 (nobody) in a child process and
/// returns what it printed: the daemon's answer to `netstat -i`.
fn call_as_nobody(path: &Path) -> String {
    use std::os::unix::process::CommandExt;
    let frame = request_frame(&proto::Request::Netstat(proto::NetstatOp::Interfaces));
    // A refused caller may find the connection closed before its request
    // is all written (the daemon answers and closes without reading it):
    // the answer is still there to read.
    let script = "import socket,sys,struct\n\
        s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n\
        try: s.sendall(bytes.fromhex(sys.argv[2]))\n\
        except (BrokenPipeError, ConnectionResetError): pass\n\
        n=struct.unpack('>I', s.recv(4, socket.MSG_WAITALL))[0]; print(s.recv(n, socket.MSG_WAITALL).decode())";
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let out = std::process::Command::new("python3")
        .args(["-c", script, path.to_str().unwrap(), &hex])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("python3 as nobody");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "needs root"]
fn needs_root_callers_neither_root_nor_in_the_control_group_are_refused_by_their_credentials() {
    let f = Fixture::new();
    // The file mode is the first fence; opened wide here, the socket's
    // credentials check (SO_PEERCRED) is what stops the caller.
    let dir = f.path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = call_as_nobody(&f.path);
    assert!(out.contains("permission denied: uid 65534 is not root"), "{out}");
    still_answers(&f);
    f.stop();

    // With `control_group` = nobody's group, the same caller is let in.
    let f = Fixture::with_group(65534);
    let dir = f.path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let out = call_as_nobody(&f.path);
    assert!(out.contains("\"text\"") && out.contains("sn-r0"), "{out}");
    f.stop();
}

#[test]
fn a_ruleset_load_reads_no_file_of_the_daemons_only_what_the_client_sent() {
    let f = Fixture::new();
    // A file the daemon could read, named by a table, but not sent.
    let secret = std::env::temp_dir().join(format!("softnet-secret-{}", std::process::id()));
    std::fs::write(&secret, "10.9.9.9\nroot:x:0:0\n").unwrap();
    let text = format!("table <t> file \"{}\"\npass in from <t>\n", secret.display());
    let load = |files: Vec<(String, Result<String, String>)>| {
        let mut c = Client::connect(&f.path).unwrap();
        c.call(&proto::Request::Pfctl(proto::PfctlOp::Load {
            filename: "pf.conf".into(),
            text: text.clone(),
            opt_level: None,
            anchor: None,
            files,
        }))
        .unwrap()
    };
    match load(vec![]) {
        Response::Error(e) => {
            assert!(e.contains("No such file or directory") && !e.contains("root:x"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let sent = vec![(secret.display().to_string(), Ok("10.1.1.1 10.2.0.0/16\n".to_string()))];
    assert!(matches!(load(sent), Response::Text(_)));
    let pfctl = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crate::pfctl::run(&f.path, &args, &mut out, &mut err);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        pfctl(&["-t", "t", "-T", "show"]),
        "   10.1.1.1\n   10.2.0.0/16\n",
        "the client's file, not the daemon's"
    );
    // `softnet pfctl -f` reads the table's file itself and sends it.
    let conf = secret.with_extension("conf");
    std::fs::write(&secret, "10.9.9.9\n").unwrap();
    std::fs::write(&conf, &text).unwrap();
    pfctl(&["-f", conf.to_str().unwrap()]);
    assert_eq!(pfctl(&["-t", "t", "-T", "show"]), "   10.9.9.9\n");
    std::fs::remove_file(&secret).unwrap();
    std::fs::remove_file(&conf).unwrap();
    f.stop();
}

/// lo0 (softnet_core::loopback) as ifconfig and pfctl show it: OpenBSD's
/// flags, no lladdr, group lo, its three addresses; `pfctl -sI` lists it
/// with its group; pf rules name it, its network and its addresses.
#[test]
fn lo0_in_ifconfig_pfctl_si_and_rules() {
    let f = Fixture::new();
    f.stack.create_loopback().unwrap();
    assert_eq!(
        f.ok("ifconfig", "lo0"),
        "lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> mtu 32768\n\tindex 3 priority 0 llprio 3\n\tgroups: lo\n\
         \tinet 127.0.0.1 netmask 0xff000000\n\tinet6 ::1 prefixlen 128\n\tinet6 fe80::1%lo0 prefixlen 64 scopeid 0x3\n"
    );
    let pfctl = |args: &str| {
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crate::pfctl::run(&f.path, &args, &mut out, &mut err);
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    };
    let (code, out, err) = pfctl("-sI");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "all\nlo\nlo0\nsn-r\nsn-r0\nsn-r1\n");
    let dir = std::env::temp_dir().join(format!("sn-lo0-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("pf.conf");
    std::fs::write(&conf, "set skip on lo\npass in on lo0 from lo0:network to (lo0)\nblock in on ! lo0 from lo0/8\n")
        .unwrap();
    let (code, out, err) = pfctl(&format!("-nvf {}", conf.display()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "set skip on { lo }\n\
         pass in on lo0 inet6 from ::1 to (lo0) flags S/SA\n\
         pass in on lo0 inet from 127.0.0.0/8 to (lo0) flags S/SA\n\
         block drop in on ! lo0 inet6 from ::/8 to any\n\
         block drop in on ! lo0 inet6 from fe00::/8 to any\n\
         block drop in on ! lo0 inet from 127.0.0.0/8 to any\n"
    );
    // Loaded, `-sI -v` marks the skipped names.
    let (code, _, err) = pfctl(&format!("-f {}", conf.display()));
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = pfctl("-sI -v");
    assert!(out.contains("lo (skip)\nlo0 (skip)\n") && out.contains("sn-r0\n"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
    f.stop();
}

/// The `Metrics` request answers the exposition the metrics endpoint
/// serves (what `softnet top` reads): it parses, and names the interfaces.
#[test]
fn the_metrics_request_answers_the_exposition() {
    let f = Fixture::new();
    f.stack.stats.get(0).ip.forward.add(9);
    let mut c = Client::connect(&f.path).unwrap();
    let Response::Text(t) = c.call(&proto::Request::Metrics).unwrap() else { panic!("not text") };
    let fams = crate::metrics::text::parse(&t).unwrap();
    let fwd = crate::metrics::text::family(&fams, "softnet_ip_forwarded_packets_total").unwrap();
    assert_eq!(fwd.samples[0].value, 9.0);
    let rx = crate::metrics::text::family(&fams, "softnet_interface_receive_packets_total").unwrap();
    let names: Vec<&str> = rx.samples.iter().filter_map(|s| s.label("interface")).collect();
    assert_eq!(names, ["sn-r0", "sn-r1"]);
    f.stop();
}

/// Parses `N WHAT` at the start of a netstat -m line that has `WHAT`.
fn m_count(m: &str, what: &str) -> usize {
    let line = m.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no {what:?} in\n{m}"));
    line.split_whitespace().next().unwrap().parse().unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn netstat_m_shows_pools_interfaces_and_routes_back_at_idle() {
    let f = Fixture::new();
    let m = f.ok("netstat", "-m");
    assert!(m.contains("\n0       (not started)\n"), "a worker that never ran:\n{m}");
    let mut w = softnet_core::worker::Worker::new(0, f.stack.clone(), f.stack.clock.clone());
    w.poll();
    let m = f.ok("netstat", "-m");
    assert!(m.starts_with("0 packet buffers in use of 64\n"), "{m}");
    assert!(
        m.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["0", "2048", "64", "64", "0", "0", "0"]),
        "{m}"
    );
    let listed = m_count(&m, "interfaces listed");
    let line = m.lines().find(|l| l.contains("interfaces listed")).unwrap();
    assert!(line.ends_with(&format!(", {listed} allocated")), "{line}");
    assert!(m.lines().any(|l| l.starts_with("  sn-r1 index ") && l.contains(" refs ")), "{m}");
    let routes = |m: &str| m_count(&m.replace("table 0: ", ""), "inet routes");
    let before = routes(&m);
    f.ok("route", "add 192.0.2.0/24 10.0.2.2");
    assert_eq!(routes(&f.ok("netstat", "-m")), before + 1);
    f.ok("route", "delete 192.0.2.0/24");
    let m = f.ok("netstat", "-m");
    assert_eq!(routes(&m), before);
    assert_eq!(m_count(&m, "route snapshots retired"), 0, "{m}");
    f.ok("ifconfig", "sn-r1 destroy");
    w.poll();
    let m = f.ok("netstat", "-m");
    let line = m.lines().find(|l| l.contains("interfaces listed")).unwrap();
    assert_eq!(line, format!("{} interfaces listed, {} allocated", listed - 1, listed - 1), "destroyed and freed");
    assert!(!m.contains("sn-r1"), "{m}");
    assert!(m.starts_with("0 packet buffers in use of 64\n"), "{m}");
    drop(w);
    f.stop();
}
