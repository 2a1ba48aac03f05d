//! The daemon's side of the control socket: the listener (one thread per
//! connection, one request at a time on each) and the execution of typed
//! requests against the stack, answered with the text the BSD tool prints.

use crate::proto::{
    self, ArpOp, FrameError, IfAction, IfconfigOp, NetstatOp, Request, Response, RouteDest, RouteDest6, RouteGateway,
    RouteGateway6, RouteOp, RouteSpec, RouteSpec6,
};
use crate::show;
use anyhow::{bail, Context};
use softnet_core::iface::{if_flags, Dad6State, IfAddr, Interface};
use softnet_core::link::LinkState;
use softnet_core::route::{Route, RouteAddr, RouteFlags};
use softnet_core::rtmsg::{RouteFlagNames, RouteMessage, RtmBody};
use softnet_core::stack::{RouteTarget, RouteTarget6, Stack, StackError};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a `route monitor` connection checks that its client is still
/// there when no message comes.
const MONITOR_CHECK: Duration = Duration::from_millis(250);

/// Connections served at once; more are answered with an error and
/// closed (each has a thread).
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection may sit without sending a whole request, or
/// without taking the answer, before the daemon closes it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// ifconfig's IFF_SIMPLEX: an Ethernet link does not hear its own frames.
const IFF_SIMPLEX: u32 = 0x800;

/// Executes requests against one stack.
pub struct Handler {
    pub stack: Arc<Stack>,
    /// pf: rules, states, tables; enabled by installing it in the stack.
    pub pf: Arc<crate::pfglue::PfService>,
    /// Set when the daemon stops: monitor streams end.
    pub stop: Arc<AtomicBool>,
    /// The route sync's counters while one runs (`netstat -s`).
    pub rtsync: Arc<arc_swap::ArcSwapOption<crate::rtsync::SyncStats>>,
}

fn text(s: String) -> Response {
    Response::Text(s)
}

/// strerror-like words for a stack error, as the BSD tools print after the
/// object: "File exists", "No such process", ...
fn stack_strerror(e: &StackError) -> String {
    match e {
        StackError::Route(r) => r.strerror().to_string(),
        other => other.to_string(),
    }
}

impl Handler {
    pub fn new(stack: Arc<Stack>, stop: Arc<AtomicBool>) -> Handler {
        let pf = Arc::new(crate::pfglue::PfService::new(stack.clone()));
        Handler { stack, pf, stop, rtsync: Default::default() }
    }

    pub fn execute(&self, req: &Request) -> Response {
        match req {
            Request::Route { rtable, op } => self.route(*rtable, op),
            Request::Arp(op) => self.arp(op),
            Request::Ifconfig(op) => self.ifconfig(op),
            Request::Netstat(op) => self.netstat(*op),
            Request::Pfctl(op) => self.pf.execute(op),
            Request::Ndp(op) => crate::ndpops::execute(&self.stack, op),
            Request::Rad => Response::Text(self.stack.rad_show()),
            Request::Metrics => Response::Text(crate::metrics::render(
                &crate::metrics::Sources::new(self.stack.clone(), self.pf.pf.clone()),
                crate::metrics::Format::Prometheus,
            )),
        }
    }

    // ---- route ----------------------------------------------------------

    fn target(&self, g: &RouteGateway) -> Result<RouteTarget, String> {
        Ok(match g {
            RouteGateway::Addr(a) => RouteTarget::Gateway(*a),
            RouteGateway::Reject => RouteTarget::Reject,
            RouteGateway::Blackhole => RouteTarget::Blackhole,
            RouteGateway::Interface(s) => match s.parse::<Ipv4Addr>() {
                // `-iface 10.0.1.1`: the interface that has this address.
                Ok(a) => {
                    let ifs = self.stack.ifaces.load();
                    let ifp = ifs.owner_of(a).ok_or_else(|| format!("{a}: no interface has this address"))?;
                    RouteTarget::Interface(ifp.name().to_string())
                }
                Err(_) => RouteTarget::Interface(s.clone()),
            },
        })
    }

    /// "add net 192.0.2.0/24: gateway 10.0.2.2", as route(8) echoes.
    fn route_echo(cmd: &str, dest: &RouteDest, gw: Option<String>) -> String {
        let kind = if dest.is_host() { "host" } else { "net" };
        match gw {
            Some(g) => format!("{cmd} {kind} {dest}: gateway {g}"),
            None => format!("{cmd} {kind} {dest}"),
        }
    }

    fn gateway_words(g: &RouteGateway) -> Option<String> {
        match g {
            RouteGateway::Addr(a) => Some(a.to_string()),
            RouteGateway::Interface(i) => Some(i.clone()),
            RouteGateway::Reject | RouteGateway::Blackhole => None,
        }
    }

    fn route_change(&self, rtable: u16, cmd: &str, spec: &RouteSpec) -> Response {
        let echo = Self::route_echo(cmd, &spec.dest, Self::gateway_words(&spec.gateway));
        let target = match self.target(&spec.gateway) {
            Ok(t) => t,
            Err(e) => return Response::Error(format!("{echo}: {e}")),
        };
        let d = spec.dest;
        let r = if cmd == "add" {
            self.stack.add_route(rtable, d.addr, d.prefix_len, target)
        } else {
            self.stack.change_route(rtable, d.addr, d.prefix_len, target)
        };
        match r {
            Ok(()) => text(format!("{echo}\n")),
            Err(e) => Response::Error(format!("{echo}: {}", stack_strerror(&e))),
        }
    }

    fn route(&self, rtable: u16, op: &RouteOp) -> Response {
        match op {
            RouteOp::Show { af } => text(show::netstat_rn(&self.stack, rtable, *af)),
            RouteOp::Add6(spec) => self.route_change6(rtable, "add", spec),
            RouteOp::Change6(spec) => self.route_change6(rtable, "change", spec),
            RouteOp::Delete6 { dest, gateway } => self.route_delete6(rtable, dest, *gateway),
            RouteOp::Get6 { dest, exact } => self.route_get6(rtable, dest, *exact),
            RouteOp::Add(spec) => self.route_change(rtable, "add", spec),
            RouteOp::Change(spec) => self.route_change(rtable, "change", spec),
            RouteOp::Delete { dest, gateway } => {
                let echo = Self::route_echo("delete", dest, gateway.map(|g| g.to_string()));
                let not_found = softnet_core::route::RouteError::NotInTable.strerror();
                if let Some(g) = gateway {
                    match self.stack.routes.get(rtable, dest.addr, dest.prefix_len) {
                        Some(r) if r.gateway == Some(*g) => {}
                        _ => return Response::Error(format!("{echo}: {not_found}")),
                    }
                }
                match self.stack.delete_route(rtable, dest.addr, dest.prefix_len) {
                    Ok(()) => text(format!("{echo}\n")),
                    Err(e) => Response::Error(format!("{echo}: {}", stack_strerror(&e))),
                }
            }
            RouteOp::Get { dest, exact } => {
                let r = if *exact {
                    self.stack.routes.get(rtable, dest.addr, dest.prefix_len)
                } else {
                    self.stack.routes.lookup(rtable, dest.addr)
                };
                match r {
                    Some(r) => text(self.format_route_get(&dest.addr.to_string(), &r)),
                    None => Response::Error(format!(
                        "get {} {dest}: {}",
                        if dest.is_host() { "host" } else { "net" },
                        softnet_core::route::RouteError::NotInTable.strerror()
                    )),
                }
            }
            // The connection loop streams monitors; a monitor that reaches
            // here came through a path that cannot stream.
            RouteOp::Monitor { .. } => Response::Error("monitor: needs its own connection".into()),
        }
    }

    /// `route get` as OpenBSD prints it, for either family; scoped IPv6
    /// addresses with `%IF`.
    fn format_route_get<A: RouteAddr>(&self, asked: &str, r: &Route<A>) -> String {
        let mut o = String::new();
        let ifs = self.stack.ifaces.load();
        let ifp = ifs.get_weak(r.ifp);
        let scope = ifp.as_ref().map(|i| i.name().to_string()).unwrap_or_else(|| format!("link#{}", r.ifp.index));
        let name = |a: A| match a.into() {
            IpAddr::V6(v6) if softnet_core::route::is_scoped6(v6) => format!("{v6}%{scope}"),
            other => other.to_string(),
        };
        let _ = writeln!(o, "   route to: {asked}");
        let is_default = r.prefix_len == 0 && r.dest == A::from_bits(A::mask_bits(r.dest.to_bits(), 0));
        let _ = writeln!(o, "destination: {}", if is_default { "default".to_string() } else { name(r.dest) });
        if !r.flags.contains(RouteFlags::HOST) {
            let mask = A::netmask(r.prefix_len);
            let _ = writeln!(o, "       mask: {}", if is_default { "default".to_string() } else { mask.to_string() });
        }
        let gw = match (r.gateway, ifp.as_ref()) {
            (Some(g), _) => Some(name(g)),
            (None, Some(i)) => Some(i.name().to_string()),
            (None, None) => None,
        };
        if let Some(g) = gw {
            let _ = writeln!(o, "    gateway: {g}");
        }
        if let Some(i) = ifp {
            let _ = writeln!(o, "  interface: {}", i.name());
        }
        if let Some(a) = r.ifa {
            let _ = writeln!(o, " if address: {}", name(a));
        }
        // A route mirrored from the kernel names the kernel's protocol.
        let prio = match (r.origin.proto_name(), r.priority) {
            (Some(p), _) => format!(" ({p})"),
            (None, softnet_core::route::prio::LOCAL) => " (local)".into(),
            (None, softnet_core::route::prio::CONNECTED) => " (connected)".into(),
            (None, softnet_core::route::prio::STATIC) => " (static)".into(),
            _ => String::new(),
        };
        let _ = writeln!(o, "   priority: {}{prio}", r.priority);
        let _ = writeln!(o, "      flags: {}", RouteFlagNames(r.flags | RouteFlags::DONE));
        let _ = writeln!(o, "     use       mtu    expire");
        let _ = writeln!(o, "{:>8} {:>9} {:>9}", 0, r.mtu, 0);
        o
    }

    // ---- route -inet6 ---------------------------------------------------

    fn target6(g: &RouteGateway6) -> RouteTarget6 {
        match g {
            RouteGateway6::Addr(a, scope) => RouteTarget6::Gateway(*a, scope.clone()),
            RouteGateway6::Interface(i) => RouteTarget6::Interface(i.clone()),
            RouteGateway6::Reject => RouteTarget6::Reject,
            RouteGateway6::Blackhole => RouteTarget6::Blackhole,
        }
    }

    /// "add net 2001:db8::/32: gateway fe80::1%em0", as route(8) echoes.
    fn route_echo6(cmd: &str, dest: &RouteDest6, gw: Option<String>) -> String {
        let kind = if dest.is_host() { "host" } else { "net" };
        match gw {
            Some(g) => format!("{cmd} {kind} {dest}: gateway {g}"),
            None => format!("{cmd} {kind} {dest}"),
        }
    }

    fn route_change6(&self, rtable: u16, cmd: &str, spec: &RouteSpec6) -> Response {
        let gw = match &spec.gateway {
            RouteGateway6::Addr(a, Some(s)) => Some(format!("{a}%{s}")),
            RouteGateway6::Addr(a, None) => Some(a.to_string()),
            RouteGateway6::Interface(i) => Some(i.clone()),
            RouteGateway6::Reject | RouteGateway6::Blackhole => None,
        };
        let echo = Self::route_echo6(cmd, &spec.dest, gw);
        let d = &spec.dest;
        let target = Self::target6(&spec.gateway);
        let r = if cmd == "add" {
            self.stack.add_route6(rtable, d.addr, d.prefix_len, d.scope.as_deref(), &target)
        } else {
            self.stack.change_route6(rtable, d.addr, d.prefix_len, d.scope.as_deref(), &target)
        };
        match r {
            Ok(()) => text(format!("{echo}\n")),
            Err(e) => Response::Error(format!("{echo}: {}", stack_strerror(&e))),
        }
    }

    /// The interface index of a destination's scope; unknown names are
    /// index 0 (no route is scoped there).
    fn scope_index(&self, dest: &RouteDest6) -> softnet_core::iface::IfIndex {
        dest.scope.as_deref().and_then(|n| self.stack.scope_index(n)).unwrap_or_default()
    }

    fn route_delete6(&self, rtable: u16, dest: &RouteDest6, gateway: Option<Ipv6Addr>) -> Response {
        let echo = Self::route_echo6("delete", dest, gateway.map(|g| g.to_string()));
        let not_found = softnet_core::route::RouteError::NotInTable.strerror();
        if let Some(g) = gateway {
            match self.stack.routes.get_scoped(rtable, dest.addr, dest.prefix_len, self.scope_index(dest)) {
                Some(r) if r.gateway == Some(g) => {}
                _ => return Response::Error(format!("{echo}: {not_found}")),
            }
        }
        match self.stack.delete_route6(rtable, dest.addr, dest.prefix_len, dest.scope.as_deref()) {
            Ok(()) => text(format!("{echo}\n")),
            Err(e) => Response::Error(format!("{echo}: {}", stack_strerror(&e))),
        }
    }

    fn route_get6(&self, rtable: u16, dest: &RouteDest6, exact: bool) -> Response {
        let scope = self.scope_index(dest);
        let r = if exact {
            self.stack.routes.get_scoped(rtable, dest.addr, dest.prefix_len, scope)
        } else {
            self.stack.routes.lookup_scoped(rtable, dest.addr, scope)
        };
        let asked = match &dest.scope {
            Some(s) => format!("{}%{s}", dest.addr),
            None => dest.addr.to_string(),
        };
        match r {
            Some(r) => text(self.format_route_get(&asked, &r)),
            None => Response::Error(format!(
                "get {} {dest}: {}",
                if dest.is_host() { "host" } else { "net" },
                softnet_core::route::RouteError::NotInTable.strerror()
            )),
        }
    }

    // ---- arp ------------------------------------------------------------

    fn arp(&self, op: &ArpOp) -> Response {
        crate::arpops::execute(&self.stack, op)
    }

    // ---- ifconfig -------------------------------------------------------

    fn ifconfig(&self, op: &IfconfigOp) -> Response {
        match op {
            IfconfigOp::Show { name: None } => {
                let egress = crate::pfglue::egress_interfaces(&self.stack);
                text(self.stack.ifaces.load().iter().map(|i| format_ifconfig(i, &egress)).collect::<Vec<_>>().concat())
            }
            IfconfigOp::Show { name: Some(n) } => match self.stack.ifaces.load().by_name(n) {
                Some(i) => text(format_ifconfig(i, &crate::pfglue::egress_interfaces(&self.stack))),
                None => Response::Error(format!("{n}: no such interface")),
            },
            IfconfigOp::Change { name, actions } => {
                for a in actions {
                    let r = match a {
                        IfAction::AddAddr(a) => self.stack.add_address(name, IfAddr::new(a.addr, a.prefix_len)),
                        IfAction::DeleteAddr(a) => self.stack.delete_address(name, *a),
                        IfAction::AddAddr6(a) => self.stack.add_address6(name, a.addr, a.prefix_len),
                        IfAction::DeleteAddr6(a) => self.stack.delete_address6(name, *a),
                        IfAction::Up => self.stack.set_up(name, true),
                        IfAction::Down => self.stack.set_up(name, false),
                        IfAction::Destroy => self.stack.destroy_interface(name),
                        IfAction::AddGroup(g) => self.stack.add_group(name, g),
                        IfAction::DelGroup(g) => self.stack.del_group(name, g),
                    };
                    if let Err(e) = r {
                        return Response::Error(e.to_string());
                    }
                }
                if actions.iter().any(|a| matches!(a, IfAction::AddGroup(_) | IfAction::DelGroup(_))) {
                    if let Err(e) = self.pf.groups_changed() {
                        return Response::Error(format!("pf: ruleset kept: {e}"));
                    }
                }
                text(String::new())
            }
        }
    }

    // ---- netstat --------------------------------------------------------

    fn netstat(&self, op: NetstatOp) -> Response {
        text(match op {
            NetstatOp::Routes { rtable, af } => show::netstat_rn(&self.stack, rtable, af),
            NetstatOp::Stats => {
                let mut o = softnet_core::stats::format_netstat_s_with(&self.stack.stats, Some(&self.stack.socks));
                if let Some(s) = self.rtsync.load_full() {
                    o.push_str(&s.format());
                }
                o
            }
            NetstatOp::ProtoStats { proto } => {
                use softnet_core::sock::netstat::{format_tcp_s, format_udp_s};
                let mut o = String::new();
                let (st, so) = (&self.stack.stats, Some(&self.stack.socks));
                match proto {
                    crate::proto::SockProto::Tcp => format_tcp_s(&mut o, st, so),
                    crate::proto::SockProto::Udp => format_udp_s(&mut o, st, so),
                }
                o
            }
            NetstatOp::Interfaces => show::netstat_i(&self.stack),
            NetstatOp::Buffers => self.stack.buffer_view().format(),
            NetstatOp::Sockets { all, af, proto } => {
                use crate::proto::{AddrFamily, SockProto};
                self.stack.socks.netstat(softnet_core::sock::netstat::Filter {
                    all,
                    inet: af != AddrFamily::Inet6,
                    inet6: af != AddrFamily::Inet,
                    tcp: proto != Some(SockProto::Udp),
                    udp: proto != Some(SockProto::Tcp),
                })
            }
        })
    }
}

/// One interface as OpenBSD's ifconfig prints it; `egress` names the
/// interfaces of the default route (the `egress` group).
pub fn format_ifconfig(ifp: &Interface, egress: &[String]) -> String {
    // lo0 has no link layer: not SIMPLEX, no lladdr (if_loop.c).
    let flags = if ifp.is_loopback() { ifp.flags() } else { ifp.flags() | IFF_SIMPLEX };
    let names: Vec<&str> = [
        (if_flags::UP, "UP"),
        (if_flags::BROADCAST, "BROADCAST"),
        (if_flags::LOOPBACK, "LOOPBACK"),
        (if_flags::RUNNING, "RUNNING"),
        (IFF_SIMPLEX, "SIMPLEX"),
        (if_flags::MULTICAST, "MULTICAST"),
    ]
    .iter()
    .filter(|(b, _)| flags & b != 0)
    .map(|(_, n)| *n)
    .collect();
    let mut o = String::new();
    let _ = writeln!(o, "{}: flags={:x}<{}> mtu {}", ifp.name(), flags, names.join(","), ifp.mtu());
    if !ifp.is_loopback() {
        let _ = writeln!(o, "\tlladdr {}", ifp.mac());
    }
    let _ = writeln!(o, "\tindex {} priority 0 llprio 3", ifp.index());
    // ifconfig lists the groups but `all`, which every interface is in.
    let mut groups = ifp.groups();
    if egress.iter().any(|e| e == ifp.name()) {
        groups.push("egress".into());
    }
    if !groups.is_empty() {
        let _ = writeln!(o, "\tgroups: {}", groups.join(" "));
    }
    match ifp.link_state() {
        LinkState::Up => {
            let _ = writeln!(o, "\tstatus: active");
        }
        LinkState::Down => {
            let _ = writeln!(o, "\tstatus: no carrier");
        }
        LinkState::Unknown => {}
    }
    if let Some(h) = ifp.host() {
        // softnet's own line: the interface's twin in the host
        // (`host = "NAME"`) and what went each way.
        let t = h.stats_total();
        let _ = writeln!(
            o,
            "\thost: {} punted {} errors {} from host {} sent {} filtered {} dropped {} arp {} nd {}",
            h.name(),
            t.punted,
            t.punt_errors,
            t.from_host,
            t.transmitted,
            t.filtered,
            t.dropped,
            t.arp_answered,
            t.nd_answered
        );
    }
    for a in ifp.addrs().iter() {
        let _ = write!(o, "\tinet {} netmask {:#010x}", a.addr, a.mask());
        if let Some(b) = a.broadcast().filter(|_| !ifp.is_loopback()) {
            let _ = write!(o, " broadcast {b}");
        }
        o.push('\n');
    }
    // in6_alias: a link-local address with its scope, then its flags.
    for a in ifp.inet6().addrs.iter() {
        if a.is_link_local() {
            let _ = write!(o, "\tinet6 {}%{} prefixlen {}", a.addr, ifp.name(), a.prefix_len);
        } else {
            let _ = write!(o, "\tinet6 {} prefixlen {}", a.addr, a.prefix_len);
        }
        match a.state {
            Dad6State::Tentative => o.push_str(" tentative"),
            Dad6State::Duplicated => o.push_str(" duplicated"),
            Dad6State::Preferred => {}
        }
        if a.is_link_local() {
            let _ = write!(o, " scopeid {:#x}", ifp.index().0);
        }
        o.push('\n');
    }
    o
}

/// Whether the route message goes to a monitor filtering on `table`: route
/// changes of that table (or of all), and every interface and address
/// message.
fn monitor_wants(m: &RouteMessage, table: Option<u16>) -> bool {
    !matches!(m.body, RtmBody::Route(_)) || table.is_none_or(|t| m.rtable == t)
}

/// True if the peer has closed its end (EOF is readable).
fn peer_closed(s: &UnixStream) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: a valid fd and a one-byte buffer; MSG_PEEK leaves the data.
    let n = unsafe { libc::recv(s.as_raw_fd(), b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n == 0 {
        return true;
    }
    n < 0 && !matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR))
}

fn stream_monitor(h: &Handler, mut s: UnixStream, table: Option<u16>) {
    let rx = h.stack.monitor.subscribe();
    if proto::write_response(&mut s, Response::Subscribed).is_err() {
        return;
    }
    loop {
        if h.stop.load(Ordering::Relaxed) {
            return;
        }
        match rx.recv_timeout(MONITOR_CHECK) {
            Ok(m) => {
                if monitor_wants(&m, table) && proto::write_response(&mut s, Response::Event(m.to_string())).is_err() {
                    return;
                }
            }
            Err(crossbeam::channel::RecvTimeoutError::Timeout) => {
                if peer_closed(&s) {
                    return;
                }
            }
            Err(crossbeam::channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Serves one connection: requests one at a time until the client closes.
pub fn serve_connection(h: &Handler, mut s: UnixStream) {
    loop {
        let req = match proto::read_request(&mut s) {
            Ok(r) => r,
            Err(FrameError::Closed) => return,
            Err(e @ FrameError::Malformed(_)) => {
                // The frame was whole: the stream is still in step.
                let msg = format!("unsupported request ({e}); is the daemon older than this client?");
                if proto::write_response(&mut s, Response::Error(msg)).is_err() {
                    return;
                }
                continue;
            }
            Err(e @ (FrameError::Version { .. } | FrameError::TooLong(_))) => {
                let _ = proto::write_response(&mut s, Response::Error(e.to_string()));
                return;
            }
            // Truncated, stalled past IDLE_TIMEOUT, or gone.
            Err(e) => {
                tracing::debug!("control connection: {e}");
                return;
            }
        };
        tracing::debug!("control request: {req:?}");
        if let Request::Route { op: RouteOp::Monitor { table }, .. } = req {
            return stream_monitor(h, s, table);
        }
        let resp = h.execute(&req);
        if let Response::Error(e) = &resp {
            tracing::info!("control: {req:?}: {e}");
        }
        if proto::write_response(&mut s, resp).is_err() {
            return;
        }
    }
}

/// The listening control socket. Dropping it removes the socket file (if it
/// is still the one it created).
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    ino: (u64, u64),
    handler: Arc<Handler>,
    /// `control_group`: its members may connect besides root.
    group: Option<u32>,
    /// Connections being served.
    conns: Arc<std::sync::atomic::AtomicUsize>,
}

/// Ends a connection with one error answer (the caller was refused).
fn refuse(mut s: UnixStream, why: String) {
    tracing::warn!("control: {why}");
    let _ = s.set_nonblocking(false);
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = proto::write_response(&mut s, Response::Error(why));
}

impl Server {
    /// Binds `path` (creating its directory), mode 0600. Refuses if a daemon
    /// answers there; removes a stale socket file.
    pub fn bind(path: &Path, handler: Arc<Handler>) -> anyhow::Result<Server> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        if let Ok(md) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !md.file_type().is_socket() {
                bail!("{} exists and is not a socket", path.display());
            }
            if UnixStream::connect(path).is_ok() {
                bail!("softnet already running on {}", path.display());
            }
            tracing::info!("removing stale control socket {}", path.display());
            std::fs::remove_file(path).with_context(|| format!("cannot remove stale socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let md = std::fs::metadata(path)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            ino: (md.dev(), md.ino()),
            handler,
            group: None,
            conns: Default::default(),
        })
    }

    /// `control_group`: the socket becomes root:GROUP mode 0660 and the
    /// group's members may send requests (checked per connection with
    /// SO_PEERCRED; root and the daemon's own user always may).
    pub fn allow_group(&mut self, gid: u32) -> anyhow::Result<()> {
        std::os::unix::fs::chown(&self.path, None, Some(gid))
            .with_context(|| format!("cannot chown {}", self.path.display()))?;
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("cannot chmod {}", self.path.display()))?;
        self.group = Some(gid);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` for connections and starts a thread for each.
    pub fn accept_for(&self, timeout: Duration) {
        let mut pfd = libc::pollfd { fd: self.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
        if n <= 0 {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    // The caller first: the socket's mode is one fence, its
                    // credentials the other.
                    let access = crate::privsep::Access::current(self.group);
                    match crate::privsep::peer_cred(&s) {
                        Ok(c) => {
                            if let Err(why) = access.check(&c) {
                                refuse(s, format!("{why} (pid {})", c.pid));
                                continue;
                            }
                        }
                        Err(e) => {
                            refuse(s, format!("cannot tell who is calling: {e}"));
                            continue;
                        }
                    }
                    if self.conns.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                        refuse(s, format!("too many control connections (at most {MAX_CONNECTIONS})"));
                        continue;
                    }
                    if s.set_nonblocking(false).is_err()
                        || s.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
                        || s.set_write_timeout(Some(IDLE_TIMEOUT)).is_err()
                    {
                        continue;
                    }
                    let h = self.handler.clone();
                    let conns = self.conns.clone();
                    conns.fetch_add(1, Ordering::Relaxed);
                    let r = std::thread::Builder::new().name("softnet-ctl".into()).spawn(move || {
                        serve_connection(&h, s);
                        conns.fetch_sub(1, Ordering::Relaxed);
                    });
                    if let Err(e) = r {
                        self.conns.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!("control: cannot start a connection thread: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("control: accept: {e}");
                    return;
                }
            }
        }
    }

    /// Serves until the handler's stop flag is set (the daemon runs its own
    /// loop, with signals and the timer).
    #[cfg(test)]
    pub fn run(&self) {
        while !self.handler.stop.load(Ordering::Relaxed) {
            self.accept_for(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let ours = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()) == self.ino).unwrap_or(false);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softnet_core::iface::IfIndex;
    use softnet_core::rtmsg::{RtmIfAnnounce, RtmRoute, RtmType};

    fn msg(rtable: u16, route: bool) -> RouteMessage {
        let body = if route {
            RtmBody::Route(RtmRoute {
                dest: Ipv4Addr::new(192, 0, 2, 0).into(),
                prefix_len: 24,
                gateway: None,
                flags: RouteFlags::UP,
                ifindex: IfIndex(1),
                ifname: None,
                ifa: None,
                mtu: 0,
                priority: 8,
            })
        } else {
            RtmBody::IfAnnounce(RtmIfAnnounce { ifindex: IfIndex(1), ifname: None })
        };
        RouteMessage { seq: 1, kind: RtmType::Add, rtable, pid: 0, errno: 0, body }
    }

    #[test]
    fn monitor_with_a_table_sees_that_tables_routes_and_every_interface_message() {
        assert!(monitor_wants(&msg(5, true), None));
        assert!(monitor_wants(&msg(5, true), Some(5)));
        assert!(!monitor_wants(&msg(0, true), Some(5)));
        assert!(monitor_wants(&msg(0, false), Some(5)));
    }
}
