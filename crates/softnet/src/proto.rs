//! The control protocol between the admin commands and the daemon
//! (DESIGN.md "Control plane").
//!
//! A Unix stream socket carries frames: a `u32` big-endian length, then that
//! many bytes of JSON. The client sends a `RequestFrame`, the daemon answers
//! with one `ResponseFrame`, and the connection may carry further requests,
//! one at a time. `route monitor` is the exception: after `Subscribed` the
//! daemon sends one `Event` per route message until the client goes away.
//!
//! Every frame carries `version`. A daemon and a client of different versions
//! refuse each other with an error that says so, rather than misreading a
//! request. Requests are typed: the client parses the BSD syntax and
//! validates it; the daemon executes and returns text to print.

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Bumped whenever a request or response changes shape (2: pfctl's
/// `verbose` is the `-v` count, not a flag; 3: pfctl's `-a` anchor and the
/// files a ruleset includes).
pub const PROTOCOL_VERSION: u32 = 3;

/// Longest frame either side accepts: room for `netstat -rn` of a few
/// hundred thousand routes, and a bound on what a bad length can allocate.
pub const MAX_FRAME: u32 = 64 << 20;

/// Longest request the daemon reads: a pf.conf with its included files and
/// tables of some hundred thousand addresses. A longer one is answered
/// with an error and the connection closed, before anything is allocated
/// for it.
pub const MAX_REQUEST: u32 = 16 << 20;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    pub version: u32,
    pub request: Request,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ResponseFrame {
    pub version: u32,
    pub response: Response,
}

/// What an admin command asks of the daemon.
///
/// `pfctl` gets its own variant here (`Pfctl(PfctlOp)`) with the daemon's
/// answer in `control.rs`; a request the daemon does not know is answered
/// with an error naming it, so adding one does not need a version bump.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Route {
        rtable: u16,
        op: RouteOp,
    },
    Arp(ArpOp),
    Ifconfig(IfconfigOp),
    Netstat(NetstatOp),
    Pfctl(PfctlOp),
    Ndp(NdpOp),
    /// `softnet rad`: the router advertisement configuration as `rad -nv`
    /// prints it, with what each interface advertises.
    Rad,
    /// The metrics exposition (Prometheus text format), as the metrics
    /// endpoint serves it: what `softnet top` reads.
    Metrics,
}

/// The daemon's answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Success; print this (possibly empty) text on stdout.
    Text(String),
    /// Failure; the client prints `softnet: CMD: MESSAGE` on stderr.
    Error(String),
    /// `route monitor`: subscribed; `Event`s follow.
    Subscribed,
    /// One route message, as `route monitor` prints it.
    Event(String),
}

/// A destination as route(8) takes it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDest {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl RouteDest {
    pub fn is_host(&self) -> bool {
        self.prefix_len == 32
    }
    pub fn is_default(&self) -> bool {
        self.prefix_len == 0 && self.addr.is_unspecified()
    }
}

impl std::fmt::Display for RouteDest {
    /// As route(8) echoes it: `default`, a host's address, or `net/len`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_default() {
            f.write_str("default")
        } else if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix_len)
        }
    }
}

/// Where a route sends packets.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RouteGateway {
    Addr(Ipv4Addr),
    Interface(String),
    Reject,
    Blackhole,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub dest: RouteDest,
    pub gateway: RouteGateway,
}

/// An IPv6 destination as route(8) takes it (`-inet6`): a scoped one
/// (`fe80::%em0/64`) names its interface.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RouteDest6 {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
    pub scope: Option<String>,
}

impl RouteDest6 {
    pub fn is_host(&self) -> bool {
        self.prefix_len == 128
    }
    pub fn is_default(&self) -> bool {
        self.prefix_len == 0 && self.addr.is_unspecified()
    }
}

impl std::fmt::Display for RouteDest6 {
    /// As route(8) echoes it: `default`, a host's address, or `net/len`,
    /// scoped ones with `%IF`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_default() {
            return f.write_str("default");
        }
        write!(f, "{}", self.addr)?;
        if let Some(s) = &self.scope {
            write!(f, "%{s}")?;
        }
        if !self.is_host() {
            write!(f, "/{}", self.prefix_len)?;
        }
        Ok(())
    }
}

/// Where an IPv6 route sends packets. A gateway may be scoped
/// (`fe80::1%em0`); a link-local one must be.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RouteGateway6 {
    Addr(Ipv6Addr, Option<String>),
    Interface(String),
    Reject,
    Blackhole,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec6 {
    pub dest: RouteDest6,
    pub gateway: RouteGateway6,
}

/// Which address families a table view shows (`-inet`, `-inet6`,
/// netstat's `-f`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AddrFamily {
    #[default]
    All,
    Inet,
    Inet6,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RouteOp {
    /// `route show` (the table as `netstat -rn` prints it).
    Show {
        af: AddrFamily,
    },
    Add(RouteSpec),
    Change(RouteSpec),
    /// With a gateway, only a route to that gateway is deleted.
    Delete {
        dest: RouteDest,
        gateway: Option<Ipv4Addr>,
    },
    /// A host: longest-prefix match; a network (`-net`): that exact route.
    Get {
        dest: RouteDest,
        exact: bool,
    },
    /// `route add -inet6`.
    Add6(RouteSpec6),
    /// `route change -inet6`.
    Change6(RouteSpec6),
    /// `route delete -inet6`; with a gateway, only a route to it.
    Delete6 {
        dest: RouteDest6,
        gateway: Option<Ipv6Addr>,
    },
    /// `route get -inet6`, as `Get`.
    Get6 {
        dest: RouteDest6,
        exact: bool,
    },
    /// Streams route messages. `table`: only route changes of that table
    /// (`route -T N monitor`); `None`: every table. Interface and address
    /// messages always pass.
    Monitor {
        table: Option<u16>,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArpOp {
    /// `arp -an` (all) or `arp -n HOST`.
    Show {
        host: Option<Ipv4Addr>,
    },
    /// `arp -s HOST MAC [temp|permanent] [pub]`.
    Set {
        host: Ipv4Addr,
        mac: [u8; 6],
        lifetime: ArpLifetime,
        publish: bool,
    },
    Delete {
        host: Ipv4Addr,
    },
    DeleteAll,
}

/// What `arp -s` makes: `temp` expires, the default (static) does not,
/// `permanent` does not and the wire cannot overwrite it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArpLifetime {
    Temp,
    Static,
    Permanent,
}

/// An IPv6 neighbor as ndp(8) names it: `fe80::1%em0` carries the
/// interface of a link-local address.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NdpHost {
    pub addr: Ipv6Addr,
    pub scope: Option<String>,
}

impl std::fmt::Display for NdpHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.scope {
            Some(s) => write!(f, "{}%{s}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NdpOp {
    /// `ndp -an` (all) or `ndp -n HOST`.
    Show { host: Option<NdpHost> },
    /// `ndp -s HOST MAC [temp] [proxy]`.
    Set { host: NdpHost, mac: [u8; 6], temp: bool, proxy: bool },
    /// `ndp -d HOST`.
    Delete { host: NdpHost },
    /// `ndp -c`: every learned entry.
    Clear,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inet6Addr {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct InetAddr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

/// One change `ifconfig IF ...` asks for; several run in order.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IfAction {
    AddAddr(InetAddr),
    DeleteAddr(Ipv4Addr),
    /// `inet6 ADDR/LEN`
    AddAddr6(Inet6Addr),
    /// `inet6 ADDR delete`
    DeleteAddr6(Ipv6Addr),
    Up,
    Down,
    Destroy,
    /// `group NAME`
    AddGroup(String),
    /// `-group NAME`
    DelGroup(String),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IfconfigOp {
    /// `ifconfig [-a]` (all) or `ifconfig IF`.
    Show {
        name: Option<String>,
    },
    Change {
        name: String,
        actions: Vec<IfAction>,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NetstatOp {
    Routes {
        rtable: u16,
        #[serde(default)]
        af: AddrFamily,
    },
    Stats,
    /// `netstat -s -p tcp|udp`: one protocol's section.
    ProtoStats {
        proto: SockProto,
    },
    Interfaces,
    /// `-m`: packet buffers per worker pool, the spill, held packets, and
    /// the references on interfaces and route snapshots (OpenBSD's mbuf
    /// view).
    Buffers,
    /// The sockets (netstat's default form): `-a` adds listening and
    /// unconnected ones; `-p` one protocol.
    Sockets {
        all: bool,
        #[serde(default)]
        af: AddrFamily,
        #[serde(default)]
        proto: Option<SockProto>,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SockProto {
    Tcp,
    Udp,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("message too long ({0} bytes)")]
    TooLong(u64),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("protocol version mismatch: daemon speaks version {daemon}, client version {client}; use the same softnet binary for both")]
    Version { daemon: u32, client: u32 },
    #[error("connection closed")]
    Closed,
}

/// Writes one frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let body = serde_json::to_vec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() as u64 > MAX_FRAME as u64 {
        return Err(FrameError::TooLong(body.len() as u64));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame's bytes; `Closed` if the peer closed before a frame began.
pub fn read_frame_bytes<R: Read>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    read_frame_max(r, MAX_FRAME)
}

/// `read_frame_bytes` with frames longer than `max` refused. The body's
/// buffer grows with what arrives, so a length that lies costs nothing.
fn read_frame_max<R: Read>(r: &mut R, max: u32) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(len);
    if len > max {
        return Err(FrameError::TooLong(len as u64));
    }
    let mut body = Vec::with_capacity((len as usize).min(64 << 10));
    r.take(len as u64).read_to_end(&mut body)?;
    if body.len() < len as usize {
        return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(body)
}

/// The version field of a frame, read before the rest so that a frame of
/// another version is reported as such, not as malformed.
fn frame_version(body: &[u8]) -> Result<u32, FrameError> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    serde_json::from_slice::<Versioned>(body).map(|v| v.version).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Daemon side: reads a request; a client of another version is an error.
pub fn read_request<R: Read>(r: &mut R) -> Result<Request, FrameError> {
    let body = read_frame_max(r, MAX_REQUEST)?;
    let client = frame_version(&body)?;
    if client != PROTOCOL_VERSION {
        return Err(FrameError::Version { daemon: PROTOCOL_VERSION, client });
    }
    let f: RequestFrame = serde_json::from_slice(&body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(f.request)
}

/// Client side: reads a response; a daemon of another version is an error.
pub fn read_response<R: Read>(r: &mut R) -> Result<Response, FrameError> {
    let body = read_frame_bytes(r)?;
    let daemon = frame_version(&body)?;
    if daemon != PROTOCOL_VERSION {
        return Err(FrameError::Version { daemon, client: PROTOCOL_VERSION });
    }
    let f: ResponseFrame = serde_json::from_slice(&body).map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(f.response)
}

pub fn write_request<W: Write>(w: &mut W, request: &Request) -> Result<(), FrameError> {
    write_frame(w, &RequestFrame { version: PROTOCOL_VERSION, request: request.clone() })
}

pub fn write_response<W: Write>(w: &mut W, response: Response) -> Result<(), FrameError> {
    write_frame(w, &ResponseFrame { version: PROTOCOL_VERSION, response })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn requests() -> Vec<Request> {
        let d = RouteDest { addr: Ipv4Addr::new(192, 0, 2, 0), prefix_len: 24 };
        vec![
            Request::Route { rtable: 0, op: RouteOp::Show { af: AddrFamily::All } },
            Request::Route {
                rtable: 0,
                op: RouteOp::Add6(RouteSpec6 {
                    dest: RouteDest6 { addr: "2001:db8::".parse().unwrap(), prefix_len: 32, scope: None },
                    gateway: RouteGateway6::Addr("fe80::1".parse().unwrap(), Some("sn-r0".into())),
                }),
            },
            Request::Route {
                rtable: 3,
                op: RouteOp::Add(RouteSpec { dest: d, gateway: RouteGateway::Addr(Ipv4Addr::new(10, 0, 2, 2)) }),
            },
            Request::Route {
                rtable: 0,
                op: RouteOp::Change(RouteSpec { dest: d, gateway: RouteGateway::Interface("sn-r0".into()) }),
            },
            Request::Route { rtable: 0, op: RouteOp::Delete { dest: d, gateway: None } },
            Request::Route { rtable: 0, op: RouteOp::Get { dest: d, exact: true } },
            Request::Route { rtable: 0, op: RouteOp::Monitor { table: Some(2) } },
            Request::Arp(ArpOp::Set {
                host: Ipv4Addr::new(10, 0, 1, 9),
                mac: [2, 0, 0, 0, 0, 9],
                lifetime: ArpLifetime::Temp,
                publish: true,
            }),
            Request::Arp(ArpOp::DeleteAll),
            Request::Ifconfig(IfconfigOp::Change {
                name: "sn-r0".into(),
                actions: vec![
                    IfAction::AddAddr(InetAddr { addr: Ipv4Addr::new(10, 0, 9, 1), prefix_len: 24 }),
                    IfAction::Up,
                ],
            }),
            Request::Netstat(NetstatOp::Routes { rtable: 0, af: AddrFamily::Inet6 }),
            Request::Netstat(NetstatOp::Buffers),
            Request::Ifconfig(IfconfigOp::Change {
                name: "sn-r0".into(),
                actions: vec![
                    IfAction::AddAddr6(Inet6Addr { addr: "fd00:1::1".parse().unwrap(), prefix_len: 64 }),
                    IfAction::DeleteAddr6("fe80::1".parse().unwrap()),
                ],
            }),
            Request::Ndp(NdpOp::Set {
                host: NdpHost { addr: "fe80::9".parse().unwrap(), scope: Some("sn-r0".into()) },
                mac: [2, 0, 0, 0, 0, 9],
                temp: false,
                proxy: true,
            }),
            Request::Ndp(NdpOp::Clear),
            Request::Metrics,
        ]
    }

    #[test]
    fn requests_and_responses_round_trip() {
        for req in requests() {
            let mut buf = Vec::new();
            write_request(&mut buf, &req).unwrap();
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            assert_eq!(len, buf.len() - 4, "length prefix counts the body");
            assert_eq!(read_request(&mut Cursor::new(buf)).unwrap(), req);
        }
        for resp in [
            Response::Text("a\nb\n".into()),
            Response::Error("x".into()),
            Response::Subscribed,
            Response::Event("e".into()),
        ] {
            let mut buf = Vec::new();
            write_response(&mut buf, resp.clone()).unwrap();
            assert_eq!(read_response(&mut Cursor::new(buf)).unwrap(), resp);
        }
    }

    #[test]
    fn several_frames_follow_each_other_on_one_stream() {
        let mut buf = Vec::new();
        for r in requests() {
            write_request(&mut buf, &r).unwrap();
        }
        let mut c = Cursor::new(buf);
        for r in requests() {
            assert_eq!(read_request(&mut c).unwrap(), r);
        }
        assert!(matches!(read_request(&mut c), Err(FrameError::Closed)));
    }

    #[test]
    fn oversize_length_is_rejected_without_reading_the_body() {
        let mut buf = (MAX_FRAME + 1).to_be_bytes().to_vec();
        buf.extend_from_slice(b"{}");
        let e = read_request(&mut Cursor::new(buf)).unwrap_err();
        assert!(matches!(e, FrameError::TooLong(n) if n == MAX_FRAME as u64 + 1), "{e}");
        let buf = u32::MAX.to_be_bytes().to_vec();
        assert!(matches!(read_response(&mut Cursor::new(buf)), Err(FrameError::TooLong(_))));
    }

    #[test]
    fn version_mismatch_is_reported_both_ways() {
        let body = br#"{"version":99,"request":{"netstat":"stats"}}"#;
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(body);
        let e = read_request(&mut Cursor::new(buf)).unwrap_err();
        assert!(matches!(e, FrameError::Version { daemon: PROTOCOL_VERSION, client: 99 }), "{e}");
        assert!(e.to_string().contains("protocol version mismatch"), "{e}");

        let body = br#"{"version":7,"response":"subscribed"}"#;
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(body);
        let e = read_response(&mut Cursor::new(buf)).unwrap_err();
        assert!(matches!(e, FrameError::Version { daemon: 7, client: PROTOCOL_VERSION }), "{e}");
    }

    #[test]
    fn truncated_or_garbled_frames_are_errors() {
        let mut buf = Vec::new();
        write_request(&mut buf, &Request::Netstat(NetstatOp::Stats)).unwrap();
        buf.truncate(buf.len() - 2);
        assert!(matches!(read_request(&mut Cursor::new(buf)), Err(FrameError::Io(_))));
        let body = b"not json";
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(body);
        assert!(matches!(read_request(&mut Cursor::new(buf)), Err(FrameError::Malformed(_))));
        // A request this daemon does not know (say, a newer client's pfctl).
        let body = br#"{"version":3,"request":{"pfctl":{"show":"rules"}}}"#;
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(body);
        assert!(matches!(read_request(&mut Cursor::new(buf)), Err(FrameError::Malformed(_))));
    }
}

/// `softnet pfctl`: what the daemon does for it (the `-n` forms run in the
/// client and never reach the daemon).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PfctlOp {
    /// `-f FILE`: the file's text travels (the daemon may not see the
    /// client's files); loaded atomically, states kept.
    Load {
        filename: String,
        text: String,
        opt_level: Option<String>,
        /// `-a NAME`: the anchor loaded (None: the main ruleset).
        #[serde(default)]
        anchor: Option<String>,
        /// The `include` and `load anchor` files the ruleset names, as the
        /// client read them (text, or why it could not).
        #[serde(default)]
        files: Vec<(String, Result<String, String>)>,
    },
    /// `-s WHAT`; `verbose` is how many `-v` were given (pfctl's
    /// `PF_OPT_VERBOSE` at 1, `PF_OPT_VERBOSE2` at 2 and more).
    Show {
        what: PfShow,
        verbose: u8,
        /// `-a NAME` (`NAME/*`: with the anchors below).
        #[serde(default)]
        anchor: Option<String>,
    },
    Flush(PfFlush),
    /// `-a NAME -F rules`.
    FlushAnchor {
        anchor: String,
    },
    /// `[-a NAME] -F Tables` (and the tables part of `-a NAME -F all`).
    FlushTables {
        #[serde(default)]
        anchor: Option<String>,
    },
    /// `-k SRC [-k DST]` (IPv4 or IPv6 hosts).
    Kill {
        src: IpAddr,
        dst: Option<IpAddr>,
    },
    /// `-K SRC [-K DST]`: source-tracking nodes of SRC (redirected to DST).
    KillSrcNodes {
        src: Ipv4Addr,
        dst: Option<Ipv4Addr>,
    },
    /// `[-a NAME] -t TABLE -T CMD [ADDRESS ...]`.
    Table {
        name: String,
        cmd: PfTableCmd,
        addrs: Vec<String>,
        verbose: u8,
        /// The anchor whose table it is (none: the main ruleset's).
        #[serde(default)]
        anchor: Option<String>,
    },
    Enable,
    Disable,
    /// The daemon's interfaces, addresses and groups as JSON, so that
    /// `pfctl -nf` resolves `self` and interface names like the daemon.
    Interfaces,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PfShow {
    Rules,
    States,
    /// `-sS`: source-tracking nodes.
    SrcNodes,
    Info,
    Timeouts,
    Memory,
    Tables,
    /// `-sl`: label counters.
    Labels,
    /// `-sA`: anchors.
    Anchors,
    /// `-sI`: interfaces and interface groups.
    Interfaces,
    All,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PfFlush {
    Rules,
    States,
    /// `-F Sources`: source-tracking nodes.
    Sources,
    /// `-F Tables`: the tables (pfctl_clear_tables).
    Tables,
    All,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PfTableCmd {
    Add,
    Delete,
    Show,
    Test,
    Flush,
    Replace,
}

/// One interface as `PfctlOp::Interfaces` describes it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PfInterface {
    pub name: String,
    /// "a.b.c.d/len"
    pub addrs: Vec<String>,
    pub groups: Vec<String>,
}
