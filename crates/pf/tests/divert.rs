//! pf and the router's own sockets, in memory: `divert-to` hands a
//! connection to a destination that is not the router's to a local
//! listener, which sees the original destination as its local address
//! (pf.c pf_test's PF_TAG_DIVERTED, in_pcblookup_listen's divert key);
//! `user` / `group` match the owner of the socket a packet belongs to
//! (pf_socket_lookup), on the way in and out.
//!
//! ```text
//!  stack A  a0 10.0.0.1/24 ── wire ── r0 10.0.0.2/24  stack R (pf, lo0)
//!                fd00::1/64                fd00::2/64
//!  A: 10.9.0.0/16 via 10.0.0.2, fd09::/32 via fd00::2
//! ```

use softnet_core::iface::IfAddr;
use softnet_core::rng::FixedEntropy;
use softnet_core::sock::api::{DivertSocket, TcpListener, TcpStream, UdpSocket};
use softnet_core::sock::Owner;
use softnet_core::stack::{RouteTarget, RouteTarget6, Stack, StackConfig};
use softnet_core::time::{Clock, Instant, ManualClock};
use softnet_core::vlink;
use softnet_core::worker::Worker;
use softnet_pf::{parse_ruleset, Pf, StaticResolver};
use softnet_tcp::State;
use softnet_wire::ethernet::MacAddr;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

struct Lab {
    clock: Arc<ManualClock>,
    a: Arc<Stack>,
    r: Arc<Stack>,
    wa: Worker,
    wr: Worker,
    pf: Pf,
}

impl Lab {
    fn new(rules: &str) -> Lab {
        let clock = Arc::new(ManualClock::new(Instant::from_secs(100)));
        let dynclock: Arc<dyn Clock> = clock.clone();
        let cfg = StackConfig { pool_size: 1024, ..StackConfig::default() };
        let a = Stack::with_clock_and_entropy(cfg.clone(), dynclock.clone(), Arc::new(FixedEntropy::new(1)));
        let r = Stack::with_clock_and_entropy(cfg, dynclock.clone(), Arc::new(FixedEntropy::new(2)));
        let (pa, pr) = vlink::wire(1, 4096);
        a.create_interface("a0", MacAddr([2, 0, 0, 0, 0, 1]), 1500, pa.link_queues()).unwrap();
        r.create_interface("r0", MacAddr([2, 0, 0, 0, 0, 2]), 1500, pr.link_queues()).unwrap();
        a.add_address("a0", IfAddr::new("10.0.0.1".parse().unwrap(), 24)).unwrap();
        r.add_address("r0", IfAddr::new("10.0.0.2".parse().unwrap(), 24)).unwrap();
        a.set_up("a0", true).unwrap();
        r.set_up("r0", true).unwrap();
        r.create_loopback().unwrap();
        a.add_route(0, "10.9.0.0".parse().unwrap(), 16, RouteTarget::Gateway("10.0.0.2".parse().unwrap())).unwrap();
        a.add_address6("a0", "fd00::1".parse().unwrap(), 64).unwrap();
        r.add_address6("r0", "fd00::2".parse().unwrap(), 64).unwrap();
        let via = RouteTarget6::Gateway("fd00::2".parse().unwrap(), None);
        a.add_route6(0, "fd09::".parse().unwrap(), 32, None, &via).unwrap();
        let resolver = StaticResolver::new().with_interface("r0", &["10.0.0.2/24"]);
        let rs = parse_ruleset(rules, "pf.conf", &resolver).unwrap_or_else(|e| panic!("{e:?}"));
        softnet_pf::check_supported(&rs).unwrap_or_else(|e| panic!("{e:?}"));
        let pf = Pf::new();
        pf.load(&rs, &resolver).unwrap();
        let socks = Arc::downgrade(&r);
        pf.set_socket_lookup(Arc::new(move |tcp, local, remote| {
            socks.upgrade()?.socks.socket_owner(tcp, local, remote).map(|o| (o.uid, o.gid))
        }));
        r.set_filter(Some(Box::new(pf.clone())));
        let wa = Worker::new(0, a.clone(), dynclock.clone());
        let wr = Worker::new(0, r.clone(), dynclock);
        let mut lab = Lab { clock, a, r, wa, wr, pf };
        // DAD: the IPv6 addresses become preferred.
        for _ in 0..4000 {
            lab.step();
        }
        lab
    }

    /// One round of both workers, the control side's timers every 100 ms.
    fn step(&mut self) {
        let before = self.clock.now().as_nanos() / 100_000_000;
        self.wa.poll();
        self.wr.poll();
        self.clock.advance(Duration::from_millis(1));
        if self.clock.now().as_nanos() / 100_000_000 != before {
            self.a.tick();
            self.r.tick();
        }
    }

    /// Rounds until `done` holds (at most 20 s of clock).
    fn until(&mut self, mut done: impl FnMut(&mut Lab) -> bool) -> bool {
        for _ in 0..20_000 {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }
}

/// TCP states in `pfctl -ss` (DAD's neighbor solicitations make ICMPv6 ones).
fn tcp_states(lab: &Lab) -> usize {
    lab.pf.show_states(0, lab.clock.now()).lines().filter(|l| l.contains(" tcp ")).count()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A connects to `to`; the connection's end in R, accepted from `l`.
fn connect_and_accept(lab: &mut Lab, l: &TcpListener, to: SocketAddr) -> (TcpStream, TcpStream) {
    let mut c = TcpStream::start_connect(&lab.a, to).unwrap();
    c.set_nonblocking(true).unwrap();
    let mut got = None;
    let ok = lab.until(|_| {
        if got.is_none() {
            match l.accept() {
                Ok((s, _)) => got = Some(s),
                Err(e) => assert_eq!(e.kind(), ErrorKind::WouldBlock),
            }
        }
        got.is_some() && c.state() == State::Established
    });
    assert!(ok, "no connection: client {:?}", c.state());
    (c, got.unwrap())
}

#[test]
fn divert_to_hands_a_forwarded_connection_to_the_local_listener() {
    let mut lab = Lab::new("pass\npass in on r0 proto tcp to 10.9.9.9 port 80 divert-to 127.0.0.1 port 8080\n");
    let mut l = TcpListener::bind(&lab.r, sa("127.0.0.1:8080")).unwrap();
    l.set_nonblocking(true).unwrap();
    let (mut c, mut s) = connect_and_accept(&mut lab, &l, sa("10.9.9.9:80"));
    // The accepted socket's local address is the original destination.
    assert_eq!(s.local_addr().unwrap(), sa("10.9.9.9:80"));
    assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    s.set_nonblocking(true).unwrap();
    // Data both ways through the diverted connection.
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    let mut n = 0;
    assert!(lab.until(|_| {
        if let Ok(k) = s.read(&mut buf[n..]) {
            n += k;
        }
        n == 18
    }));
    assert_eq!(&buf[..n], b"GET / HTTP/1.0\r\n\r\n");
    s.write_all(b"hello from the proxy").unwrap();
    let mut m = 0;
    assert!(lab.until(|_| {
        if let Ok(k) = c.read(&mut buf[m..]) {
            m += k;
        }
        m == 20
    }));
    assert_eq!(&buf[..m], b"hello from the proxy");
    // One state, for the original 4-tuple, on the way in.
    let states = lab.pf.show_states(0, lab.clock.now());
    assert!(states.contains("10.9.9.9:80 <- 10.0.0.1:"), "{states}");
    assert!(states.contains("ESTABLISHED:ESTABLISHED"), "{states}");
    assert_eq!(tcp_states(&lab), 1, "{states}");
    // Traffic to another port of that address is not diverted: R has no
    // route for it and does not take it; its ICMP unreachable fails A's
    // connect in SYN_SENT (the quoted SYN is in flight).
    let mut other = TcpStream::start_connect(&lab.a, sa("10.9.9.9:81")).unwrap();
    other.set_nonblocking(true).unwrap();
    for _ in 0..300 {
        lab.step();
    }
    assert_eq!(other.state(), State::Closed);
    let err = other.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::HostUnreachable, "an ICMP unreachable, not a RST: {err}");
    assert!(lab.r.socks.tcp_snapshot().iter().all(|p| p.local.port() != 81));
}

#[test]
fn divert_to_needs_a_listener_on_exactly_the_divert_address() {
    let mut lab = Lab::new("pass\npass in on r0 proto tcp to 10.9.9.9 port 80 divert-to 127.0.0.1 port 8080\n");
    // A wildcard listener on the port does not take diverted connections
    // (in_pcblookup_listen's divert key is both keys): the SYN is refused.
    let mut l = TcpListener::bind(&lab.r, sa("0.0.0.0:8080")).unwrap();
    l.set_nonblocking(true).unwrap();
    let mut c = TcpStream::start_connect(&lab.a, sa("10.9.9.9:80")).unwrap();
    c.set_nonblocking(true).unwrap();
    assert!(lab.until(|_| c.state() == State::Closed), "not refused: {:?}", c.state());
    assert!(matches!(l.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock));
}

#[test]
fn user_matches_the_owner_of_the_listening_socket_and_its_connections() {
    let rules = "block return in on r0 proto tcp to port { 81 82 }\n\
                 pass in on r0 proto tcp to port { 81 82 } user 1000\n";
    let mut lab = Lab::new(rules);
    let mut l81 = TcpListener::bind(&lab.r, sa("10.0.0.2:81")).unwrap();
    l81.set_nonblocking(true).unwrap();
    l81.set_owner(Owner { uid: 1000, gid: 100 });
    let mut l82 = TcpListener::bind(&lab.r, sa("10.0.0.2:82")).unwrap();
    l82.set_nonblocking(true).unwrap();
    l82.set_owner(Owner { uid: 2000, gid: 100 });
    // 1000's listener takes connections, 2000's gets them blocked.
    let (_c, s) = connect_and_accept(&mut lab, &l81, sa("10.0.0.2:81"));
    assert_eq!(s.owner(), Owner { uid: 1000, gid: 100 }, "accepted sockets are the listener's");
    let mut c2 = TcpStream::start_connect(&lab.a, sa("10.0.0.2:82")).unwrap();
    c2.set_nonblocking(true).unwrap();
    assert!(lab.until(|_| c2.state() == State::Closed), "not blocked: {:?}", c2.state());
    assert!(matches!(l82.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock));
}

#[test]
fn group_matches_the_owner_of_a_socket_going_out_and_forwarded_traffic_has_none() {
    // R connects out to A: the socket's group decides pf out. `user
    // unknown` is what a packet without a socket has.
    let rules = "pass\nblock return out on r0 proto tcp to port 90 group 50\n\
                 block in on r0 proto tcp to port 91 user unknown\n";
    let mut lab = Lab::new(rules);
    let mut la = TcpListener::bind(&lab.a, sa("10.0.0.1:90")).unwrap();
    la.set_nonblocking(true).unwrap();
    lab.r.socks.set_default_owner(Owner { uid: 7, gid: 50 });
    let mut blocked = TcpStream::start_connect(&lab.r, sa("10.0.0.1:90")).unwrap();
    blocked.set_nonblocking(true).unwrap();
    assert_eq!(blocked.owner(), Owner { uid: 7, gid: 50 }, "the stack's default owner");
    assert!(lab.until(|_| blocked.state() == State::Closed), "not blocked: {:?}", blocked.state());
    // The same connection by a socket of another group passes.
    lab.r.socks.set_default_owner(Owner { uid: 7, gid: 51 });
    let mut ok = TcpStream::start_connect(&lab.r, sa("10.0.0.1:90")).unwrap();
    ok.set_nonblocking(true).unwrap();
    assert!(lab.until(|_| ok.state() == State::Established), "not connected: {:?}", ok.state());
    // No socket on R owns port 91: `user unknown` matches and blocks.
    let mut l91 = TcpListener::bind(&lab.r, sa("10.0.0.2:92")).unwrap();
    l91.set_nonblocking(true).unwrap();
    let mut c91 = TcpStream::start_connect(&lab.a, sa("10.0.0.2:91")).unwrap();
    c91.set_nonblocking(true).unwrap();
    for _ in 0..300 {
        lab.step();
    }
    assert_eq!(c91.state(), State::SynSent, "dropped without an answer");
}

#[test]
fn divert_options_not_built_stay_refused_at_load() {
    let resolver = StaticResolver::new().with_interface("r0", &["10.0.0.2/24"]);
    for (rule, msg) in [
        (
            "pass in proto icmp divert-to 127.0.0.1 port 53\n",
            "divert-to for protocols other than tcp and udp not supported yet",
        ),
        ("pass in divert-to 127.0.0.1 port 53\n", "divert-to for protocols other than tcp and udp not supported yet"),
        ("pass out divert-reply\n", "divert-reply for protocols other than tcp and udp not supported yet"),
        ("pass out proto tcp divert-reply no state\n", "divert-reply with no state not supported yet"),
        (
            "pass in inet af-to inet6 from fd00::1 divert-packet port 700\n",
            "divert-packet with af-to not supported yet",
        ),
    ] {
        let rs = parse_ruleset(rule, "pf.conf", &resolver).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
        let errs = softnet_pf::check_supported(&rs).unwrap_err();
        assert_eq!(errs[0].message, msg, "{rule}");
    }
    for rule in [
        "pass in proto tcp to port 80 divert-to 127.0.0.1 port 8080\n",
        "pass in proto { tcp udp } to port 53 divert-to 127.0.0.1 port 5353\n",
        "pass in proto tcp to port 80 divert-to 127.0.0.1 port 8080 no state\n",
        "pass out proto { tcp udp } divert-reply\n",
        "pass in proto tcp divert-packet port 700\n",
        "pass out divert-packet port 700 no state\n",
    ] {
        let ok = parse_ruleset(rule, "pf.conf", &resolver).unwrap();
        assert!(softnet_pf::check_supported(&ok).is_ok(), "{rule}");
    }
}

/// Rounds until `s` has read `want` bytes.
fn read_n(lab: &mut Lab, s: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut buf = vec![0u8; want];
    let mut n = 0;
    assert!(lab.until(|_| {
        if let Ok(k) = s.read(&mut buf[n..]) {
            n += k;
        }
        n == want
    }));
    buf
}

#[test]
fn a_connection_and_its_state_point_at_each_other() {
    let mut lab = Lab::new("pass\n");
    let mut l = TcpListener::bind(&lab.r, sa("10.0.0.2:81")).unwrap();
    l.set_nonblocking(true).unwrap();
    let (mut c, mut s) = connect_and_accept(&mut lab, &l, sa("10.0.0.2:81"));
    s.set_nonblocking(true).unwrap();
    // An accepted connection has the state its segments matched coming in
    // (pf_inp_link) ...
    let link = s.pf_state_link();
    let st = lab.pf.state_at(link).expect("the link names a live state");
    assert_eq!(st.key.port, [c.local_addr().unwrap().port(), 81]);
    // ... and keeps it while data flows both ways (pf out found it by the
    // link: nothing else to learn).
    c.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut lab, &mut s, 4), b"ping");
    s.write_all(b"pong").unwrap();
    assert_eq!(read_n(&mut lab, &mut c, 4), b"pong");
    assert_eq!(s.pf_state_link(), link);
    // A connection the router opens learns the state pf out made for its
    // SYN (pf_state_key_link_inpcb).
    let mut la = TcpListener::bind(&lab.a, sa("10.0.0.1:90")).unwrap();
    la.set_nonblocking(true).unwrap();
    let mut out = TcpStream::start_connect(&lab.r, sa("10.0.0.1:90")).unwrap();
    out.set_nonblocking(true).unwrap();
    assert!(lab.until(|_| out.state() == State::Established));
    let out_link = out.pf_state_link();
    let st = lab.pf.state_at(out_link).expect("the outbound connection's state");
    // (an outbound state's key is in the reverse order of its packets)
    assert_eq!(st.key.port, [90, out.local_addr().unwrap().port()]);
    assert_ne!(out_link, link);
    // The state dies (pfctl -F states): the next segment out finds no
    // state by the link nor the table (`pass` makes none for a segment
    // without SYN), and the connection drops its end; data still flows.
    assert_eq!(tcp_states(&lab), 2);
    lab.pf.flush_states();
    assert_eq!(tcp_states(&lab), 0);
    s.write_all(b"after").unwrap();
    assert_eq!(read_n(&mut lab, &mut c, 5), b"after");
    assert_eq!(s.pf_state_link(), 0, "the dead state's link is dropped");
    assert!(lab.pf.state_at(link).is_none());
    // A new connection's state may take the old slot: the link is only a
    // hint checked against the key, so the first connection never takes
    // the second's state for its own.
    let (_c2, s2) = connect_and_accept(&mut lab, &l, sa("10.0.0.2:81"));
    assert_ne!(s2.pf_state_link(), 0);
    s.write_all(b"again").unwrap();
    assert_eq!(read_n(&mut lab, &mut c, 5), b"again");
    assert_eq!(s.pf_state_link(), 0);
}

#[test]
fn user_matches_the_owner_of_a_udp_socket_as_it_changes() {
    let rules = "block in on r0 proto udp to port 53\npass in on r0 proto udp to port 53 user 1000 keep state\n";
    let mut lab = Lab::new(rules);
    let mut srv = softnet_core::sock::api::UdpSocket::bind(&lab.r, sa("10.0.0.2:53")).unwrap();
    srv.set_nonblocking(true).unwrap();
    srv.set_owner(Owner { uid: 1000, gid: 1 });
    let cli = softnet_core::sock::api::UdpSocket::bind(&lab.a, sa("10.0.0.1:5000")).unwrap();
    let mut buf = [0u8; 16];
    cli.send_to(b"one", sa("10.0.0.2:53")).unwrap();
    let mut got = None;
    assert!(lab.until(|_| {
        got = srv.recv_from(&mut buf).ok();
        got.is_some()
    }));
    assert_eq!(got.unwrap(), (3, sa("10.0.0.1:5000")));
    // Another owner: a datagram from another port (no state) is blocked.
    srv.set_owner(Owner { uid: 2000, gid: 1 });
    let cli2 = softnet_core::sock::api::UdpSocket::bind(&lab.a, sa("10.0.0.1:5001")).unwrap();
    cli2.send_to(b"two", sa("10.0.0.2:53")).unwrap();
    for _ in 0..200 {
        lab.step();
    }
    assert!(srv.recv_from(&mut buf).is_err(), "blocked by pf: the socket is not 1000's now");
}

#[test]
fn group_matches_the_owner_of_a_udp_socket_sending() {
    // pf out runs while the worker holds the socket sending the datagram.
    let mut lab = Lab::new("pass\nblock out on r0 proto udp from port 54 group 3000\n");
    let mut cli = softnet_core::sock::api::UdpSocket::bind(&lab.a, sa("10.0.0.1:5000")).unwrap();
    cli.set_nonblocking(true).unwrap();
    let src = softnet_core::sock::api::UdpSocket::bind(&lab.r, sa("10.0.0.2:54")).unwrap();
    src.set_owner(Owner { uid: 1, gid: 3000 });
    src.send_to(b"blocked", sa("10.0.0.1:5000")).unwrap();
    for _ in 0..200 {
        lab.step();
    }
    let mut buf = [0u8; 16];
    assert!(cli.recv_from(&mut buf).is_err(), "blocked by pf out: group 3000's socket");
    src.set_owner(Owner { uid: 1, gid: 3001 });
    src.send_to(b"passed", sa("10.0.0.1:5000")).unwrap();
    let mut got = None;
    assert!(lab.until(|_| {
        got = cli.recv_from(&mut buf).ok();
        got.is_some()
    }));
    assert_eq!(got.unwrap(), (6, sa("10.0.0.2:54")));
}

#[test]
fn divert_to_over_ipv6() {
    let mut lab = Lab::new("pass\npass in on r0 inet6 proto tcp to fd09::9 port 80 divert-to ::1 port 8080\n");
    let mut l = TcpListener::bind(&lab.r, sa("[::1]:8080")).unwrap();
    l.set_nonblocking(true).unwrap();
    let (mut c, mut s) = connect_and_accept(&mut lab, &l, sa("[fd09::9]:80"));
    assert_eq!(s.local_addr().unwrap(), sa("[fd09::9]:80"));
    assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    s.set_nonblocking(true).unwrap();
    c.write_all(b"over six").unwrap();
    assert_eq!(read_n(&mut lab, &mut s, 8), b"over six");
    s.write_all(b"back").unwrap();
    assert_eq!(read_n(&mut lab, &mut c, 4), b"back");
    let states = lab.pf.show_states(0, lab.clock.now());
    assert!(states.contains("fd09::9[80] <- fd00::1["), "{states}");
}

fn nonblocking(mut u: UdpSocket) -> UdpSocket {
    u.set_nonblocking(true).unwrap();
    u
}

/// A non-blocking UDP socket of `stack` bound to `addr`.
fn udp(stack: &Arc<Stack>, addr: &str) -> UdpSocket {
    nonblocking(UdpSocket::bind(stack, sa(addr)).unwrap())
}

/// Rounds until `u` has a datagram: (length, source, destination).
fn recv_udp(lab: &mut Lab, u: &UdpSocket, buf: &mut [u8]) -> (usize, SocketAddr, SocketAddr) {
    let mut got = None;
    assert!(lab.until(|_| {
        got = u.recv_from_to(buf).ok();
        got.is_some()
    }));
    got.unwrap()
}

#[test]
fn udp_divert_to_hands_datagrams_to_the_socket_on_the_divert_address() {
    let mut lab = Lab::new("pass\npass in on r0 proto udp to 10.9.9.9 port 53 divert-to 127.0.0.1 port 5353\n");
    let srv = udp(&lab.r, "127.0.0.1:5353");
    let cli = udp(&lab.a, "10.0.0.1:5000");
    let mut buf = [0u8; 64];
    // The first datagram makes the state, the others pass on it (the
    // locked path: a diverted state stays off the lock-free one).
    for q in [&b"query one"[..], b"query two", b"query three"] {
        cli.send_to(q, sa("10.9.9.9:53")).unwrap();
        let (n, from, to) = recv_udp(&mut lab, &srv, &mut buf);
        assert_eq!((&buf[..n], from, to), (q, sa("10.0.0.1:5000"), sa("10.9.9.9:53")));
    }
    let states = lab.pf.show_states(0, lab.clock.now());
    assert!(states.contains("udp 10.9.9.9:53 <- 10.0.0.1:5000"), "{states}");
    // The answer in the original destination's name: a socket bound to
    // it (SO_BINDANY) and connected to the client; it passes on the state
    // and takes the client's next datagrams (in_pcbhashlookup first).
    let ans = nonblocking(UdpSocket::bind_any(&lab.r, sa("10.9.9.9:53")).unwrap());
    ans.connect(sa("10.0.0.1:5000")).unwrap();
    ans.send(b"answer").unwrap();
    let (n, from, _) = recv_udp(&mut lab, &cli, &mut buf);
    assert_eq!((&buf[..n], from), (&b"answer"[..], sa("10.9.9.9:53")));
    cli.send_to(b"again", sa("10.9.9.9:53")).unwrap();
    let (n, from, _) = recv_udp(&mut lab, &ans, &mut buf);
    assert_eq!((&buf[..n], from), (&b"again"[..], sa("10.0.0.1:5000")));
    assert!(srv.recv_from(&mut buf).is_err());
    // Not to the divert address's wildcard: a datagram to another port of
    // that address is not diverted, and R has no route for it.
    drop(srv);
    let wild = udp(&lab.r, "0.0.0.0:5353");
    let other = udp(&lab.a, "10.0.0.1:5001");
    other.send_to(b"lost", sa("10.9.9.9:53")).unwrap();
    for _ in 0..200 {
        lab.step();
    }
    assert!(wild.recv_from(&mut buf).is_err(), "a wildcard socket takes no diverted datagram");
}

#[test]
fn divert_to_without_state_diverts_every_packet_by_its_rule() {
    let rules = "pass in on r0 proto tcp to 10.9.9.9 port 80 divert-to 127.0.0.1 port 8080 no state\n\
                 pass in on r0 proto udp to 10.9.9.9 port 53 divert-to 127.0.0.1 port 5353 no state\n\
                 pass out on r0 proto { tcp udp } from 10.9.9.9 no state\n";
    let mut lab = Lab::new(rules);
    let mut l = TcpListener::bind(&lab.r, sa("127.0.0.1:8080")).unwrap();
    l.set_nonblocking(true).unwrap();
    let (mut c, mut s) = connect_and_accept(&mut lab, &l, sa("10.9.9.9:80"));
    assert_eq!(s.local_addr().unwrap(), sa("10.9.9.9:80"));
    s.set_nonblocking(true).unwrap();
    c.write_all(b"stateless").unwrap();
    assert_eq!(read_n(&mut lab, &mut s, 9), b"stateless");
    s.write_all(b"back").unwrap();
    assert_eq!(read_n(&mut lab, &mut c, 4), b"back");
    let srv = udp(&lab.r, "127.0.0.1:5353");
    let cli = udp(&lab.a, "10.0.0.1:5000");
    let mut buf = [0u8; 16];
    cli.send_to(b"dgram", sa("10.9.9.9:53")).unwrap();
    let (n, from, to) = recv_udp(&mut lab, &srv, &mut buf);
    assert_eq!((&buf[..n], from, to), (&b"dgram"[..], sa("10.0.0.1:5000"), sa("10.9.9.9:53")));
    let states = lab.pf.show_states(0, lab.clock.now());
    assert!(!states.contains(" tcp ") && !states.contains(" udp "), "no state made: {states}");
}

/// Divert-reply's lab: R opens a connection and sends datagrams to A in
/// the name of 10.9.9.9, an address A routes through R and R does not
/// have.
const REPLY_RULES: &str = "pass\npass out on r0 proto { tcp udp } to 10.0.0.1 port { 80 53 } divert-reply\n";

#[test]
fn divert_reply_gives_a_socket_bound_to_a_foreign_address_its_replies() {
    let mut lab = Lab::new(REPLY_RULES);
    let mut l = TcpListener::bind(&lab.a, sa("10.0.0.1:80")).unwrap();
    l.set_nonblocking(true).unwrap();
    let mut c = TcpStream::start_connect_from(&lab.r, sa("10.9.9.9:0"), sa("10.0.0.1:80")).unwrap();
    c.set_nonblocking(true).unwrap();
    let mut got = None;
    assert!(lab.until(|_| {
        if got.is_none() {
            got = l.accept().ok();
        }
        got.is_some() && c.state() == State::Established
    }));
    let (mut s, peer) = got.unwrap();
    // A sees the foreign address as its peer.
    assert_eq!(peer, c.local_addr().unwrap());
    assert_eq!(peer.ip(), "10.9.9.9".parse::<std::net::IpAddr>().unwrap());
    s.set_nonblocking(true).unwrap();
    c.write_all(b"in your name").unwrap();
    assert_eq!(read_n(&mut lab, &mut s, 12), b"in your name");
    s.write_all(b"reply").unwrap();
    assert_eq!(read_n(&mut lab, &mut c, 5), b"reply");
    let states = lab.pf.show_states(0, lab.clock.now());
    assert!(states.contains(&format!("10.9.9.9:{} -> 10.0.0.1:80", peer.port())), "{states}");
    // UDP: a socket bound to the foreign address and connected.
    let srv = udp(&lab.a, "10.0.0.1:53");
    let u = nonblocking(UdpSocket::bind_any(&lab.r, sa("10.9.9.9:7000")).unwrap());
    u.connect(sa("10.0.0.1:53")).unwrap();
    u.send(b"ask").unwrap();
    let mut buf = [0u8; 16];
    let (n, from, _) = recv_udp(&mut lab, &srv, &mut buf);
    assert_eq!((&buf[..n], from), (&b"ask"[..], sa("10.9.9.9:7000")));
    srv.send_to(b"told", from).unwrap();
    let (n, from, to) = recv_udp(&mut lab, &u, &mut buf);
    assert_eq!((&buf[..n], from, to), (&b"told"[..], sa("10.0.0.1:53"), sa("10.9.9.9:7000")));
}

#[test]
fn without_divert_reply_the_replies_to_a_foreign_address_are_not_taken() {
    let mut lab = Lab::new("pass\n");
    let mut l = TcpListener::bind(&lab.a, sa("10.0.0.1:80")).unwrap();
    l.set_nonblocking(true).unwrap();
    let c = TcpStream::start_connect_from(&lab.r, sa("10.9.9.9:0"), sa("10.0.0.1:80")).unwrap();
    for _ in 0..500 {
        lab.step();
    }
    // A answered the SYN, but R forwards (here: cannot route) the SYN,ACK
    // to 10.9.9.9 instead of taking it.
    assert_eq!(c.state(), State::SynSent);
    assert!(l.accept().is_err());
    // A foreign bind is refused without SO_BINDANY, and the families must agree.
    assert!(UdpSocket::bind(&lab.r, sa("10.9.9.9:7000")).is_err());
    assert!(TcpStream::start_connect_from(&lab.r, sa("[fd09::9]:0"), sa("10.0.0.1:80")).is_err());
}

/// Rounds until the divert socket `d` has a packet: (packet, address).
fn recv_diverted(lab: &mut Lab, d: &DivertSocket) -> (Vec<u8>, std::net::IpAddr) {
    let mut buf = [0u8; 2048];
    let mut got = None;
    assert!(lab.until(|_| {
        got = d.recv_from(&mut buf).ok();
        got.is_some()
    }));
    let (n, a) = got.unwrap();
    (buf[..n].to_vec(), a)
}

/// `divert-packet` over IPv6 (divert6_packet / divert6_output): a
/// datagram to the router's own socket goes through the divert socket on
/// its way in (with an address of r0), the answer on its way out (with
/// the unspecified address); each written back reaches its socket.
#[test]
fn divert_packet_over_ipv6_both_ways() {
    let mut lab = Lab::new("pass\npass in on r0 inet6 proto udp to port 9 divert-packet port 700\n");
    let mut d = DivertSocket::bind(&lab.r, 700).unwrap();
    d.set_nonblocking(true).unwrap();
    let srv = udp(&lab.r, "[fd00::2]:9");
    let cli = udp(&lab.a, "[fd00::1]:5000");
    cli.send_to(b"six in", sa("[fd00::2]:9")).unwrap();
    let (p, at) = recv_diverted(&mut lab, &d);
    assert_eq!(p[0] >> 4, 6);
    let std::net::IpAddr::V6(a6) = at else { panic!("{at}") };
    assert!(lab.r.ifaces.load().owner_of6(a6).is_some_and(|i| i.name() == "r0"), "{at}");
    let mut buf = [0u8; 64];
    assert!(srv.recv_from(&mut buf).is_err(), "nothing before the program writes it back");
    d.send_to(&p, at).unwrap();
    let (n, from, to) = recv_udp(&mut lab, &srv, &mut buf);
    assert_eq!((&buf[..n], from, to), (&b"six in"[..], sa("[fd00::1]:5000"), sa("[fd00::2]:9")));
    // The answer leaves by r0 on the state: diverted by pf out.
    srv.send_to(b"six out", from).unwrap();
    let (p, at) = recv_diverted(&mut lab, &d);
    assert_eq!(at, "::".parse::<std::net::IpAddr>().unwrap());
    d.send_to(&p, at).unwrap();
    let (n, from, _) = recv_udp(&mut lab, &cli, &mut buf);
    assert_eq!((&buf[..n], from), (&b"six out"[..], sa("[fd00::2]:9")));
}
