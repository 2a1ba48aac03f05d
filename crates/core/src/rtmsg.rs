//! Route messages: what `route monitor` shows.
//!
//! Every change of a routing table — a route added, deleted or changed, an
//! address added or removed, an interface announced or gone, a link state
//! change — is announced by exactly one `RouteMessage`, numbered by a
//! sequence that only grows, to every subscriber. The monitor numbers and
//! sends under one lock, so every subscriber sees the same order.

use crate::iface::{if_flags, prefix_mask, IfAddr, IfIndex};
use crate::link::LinkState;
use crate::route::RouteFlags;
use crossbeam::channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// The kind of a route message, as OpenBSD's `RTM_*` types.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
pub enum RtmType {
    Add,
    Delete,
    Change,
    Get,
    NewAddr,
    DelAddr,
    IfInfo,
    IfAnnounce(IfAnnounceWhat),
}

/// What an `RTM_IFANNOUNCE` announces.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
pub enum IfAnnounceWhat {
    Arrival,
    Departure,
}

impl RtmType {
    /// The name and description `route monitor` prints.
    pub fn describe(self) -> &'static str {
        match self {
            RtmType::Add => "RTM_ADD: Add Route",
            RtmType::Delete => "RTM_DELETE: Delete Route",
            RtmType::Change => "RTM_CHANGE: Change Metrics, Flags or Gateway",
            RtmType::Get => "RTM_GET: Report Metrics",
            RtmType::NewAddr => "RTM_NEWADDR: address being added to iface",
            RtmType::DelAddr => "RTM_DELADDR: address being removed from iface",
            RtmType::IfInfo => "RTM_IFINFO: iface status change",
            RtmType::IfAnnounce(_) => "RTM_IFANNOUNCE: iface arrival/departure",
        }
    }
}

/// A route of either family as a message carries it (`RTM_ADD`,
/// `RTM_DELETE`, `RTM_CHANGE`, `RTM_GET`). A scoped IPv6 address
/// (link-local) is scoped to `ifindex`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RtmRoute {
    pub dest: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub flags: RouteFlags,
    pub ifindex: IfIndex,
    pub ifname: Option<String>,
    pub ifa: Option<IpAddr>,
    pub mtu: u32,
    pub priority: u8,
}

/// The address of an `RTM_NEWADDR` / `RTM_DELADDR`: IPv4 (with its
/// broadcast address) or IPv6.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RtmIfa {
    V4(IfAddr),
    V6 { addr: std::net::Ipv6Addr, prefix_len: u8 },
}

impl From<IfAddr> for RtmIfa {
    fn from(a: IfAddr) -> RtmIfa {
        RtmIfa::V4(a)
    }
}

/// An interface address added or removed (`RTM_NEWADDR`, `RTM_DELADDR`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RtmAddr {
    pub ifindex: IfIndex,
    pub ifname: Option<String>,
    pub addr: RtmIfa,
    /// Interface flags (`if_flags`).
    pub if_flags: u32,
    pub metric: u32,
}

/// Interface status (`RTM_IFINFO`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RtmIfInfo {
    pub ifindex: IfIndex,
    pub ifname: Option<String>,
    /// Interface flags (`if_flags`).
    pub if_flags: u32,
    pub link_state: LinkState,
    pub mtu: u32,
}

/// An interface arriving or departing (`RTM_IFANNOUNCE`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RtmIfAnnounce {
    pub ifindex: IfIndex,
    pub ifname: Option<String>,
}

/// What a message is about; which variant goes with which `RtmType` is
/// the caller's business, `Display` prints whatever it gets.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum RtmBody {
    Route(RtmRoute),
    Addr(RtmAddr),
    IfInfo(RtmIfInfo),
    IfAnnounce(RtmIfAnnounce),
}

/// One route message as every subscriber receives it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RouteMessage {
    /// Strictly increasing over all messages of one monitor.
    pub seq: u64,
    pub kind: RtmType,
    pub rtable: u16,
    /// Process that caused the change; 0 for the stack itself.
    pub pid: u32,
    pub errno: i32,
    pub body: RtmBody,
}

/// The subscribers of route messages and the sequence counter.
pub struct RouteMonitor {
    inner: Mutex<MonitorInner>,
}

struct MonitorInner {
    seq: u64,
    /// Tags handed out by `subscribe_others` so far.
    tags: u64,
    subscribers: Vec<Subscriber>,
}

struct Subscriber {
    tx: Sender<RouteMessage>,
    /// Messages emitted under this tag are not sent here: the changes a
    /// subscriber made itself (`subscribe_others`).
    tag: Option<Source>,
}

/// Who emits a message, for a subscriber that does not want its own
/// (`RouteMonitor::subscribe_others`): the route sync writes a
/// 1,000,000-prefix feed into the table and has no use for a copy of each
/// of its messages (BENCHMARKS §1 "Route sync", session 13). Like
/// OpenBSD's SO_USELOOPBACK off on a routing socket: a process does not
/// read back its own writes.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Source(u64);

impl Default for RouteMonitor {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteMonitor {
    pub fn new() -> Self {
        RouteMonitor { inner: Mutex::new(MonitorInner { seq: 0, tags: 0, subscribers: Vec::new() }) }
    }

    /// A new subscriber: it receives every message emitted from now on.
    /// The channel is unbounded so that no subscriber misses a message;
    /// dropping the receiver unsubscribes (noticed at the next emit).
    pub fn subscribe(&self) -> Receiver<RouteMessage> {
        let (tx, rx) = unbounded();
        self.inner.lock().subscribers.push(Subscriber { tx, tag: None });
        rx
    }

    /// A subscriber that receives every message except those emitted under
    /// the `Source` returned (`emit_lazy`, `RouteTables::batch_as`): its
    /// own changes. Every other subscriber still gets them.
    pub fn subscribe_others(&self) -> (Source, Receiver<RouteMessage>) {
        let (tx, rx) = unbounded();
        let mut inner = self.inner.lock();
        inner.tags += 1;
        let tag = Source(inner.tags);
        inner.subscribers.push(Subscriber { tx, tag: Some(tag) });
        (tag, rx)
    }

    /// Numbers the message and sends it to every live subscriber; returns
    /// its sequence number.
    pub fn emit(&self, kind: RtmType, rtable: u16, body: RtmBody) -> u64 {
        self.emit_from(kind, rtable, 0, 0, body)
    }

    /// `emit` on behalf of a process, with an errno (0 for success).
    pub fn emit_from(&self, kind: RtmType, rtable: u16, pid: u32, errno: i32, body: RtmBody) -> u64 {
        self.emit_inner(kind, rtable, pid, errno, None, || body)
    }

    /// `emit` for source `from`: its own subscriber (`subscribe_others`)
    /// is left out, and the body is made only if some subscriber is to
    /// receive it. The message is numbered either way, so every
    /// subscriber's sequence stays one numbering.
    pub fn emit_lazy(&self, kind: RtmType, rtable: u16, from: Option<Source>, body: impl FnOnce() -> RtmBody) -> u64 {
        self.emit_inner(kind, rtable, 0, 0, from, body)
    }

    fn emit_inner(
        &self,
        kind: RtmType,
        rtable: u16,
        pid: u32,
        errno: i32,
        from: Option<Source>,
        body: impl FnOnce() -> RtmBody,
    ) -> u64 {
        let mut inner = self.inner.lock();
        inner.seq += 1;
        let seq = inner.seq;
        let to = |s: &Subscriber| from.is_none() || s.tag != from;
        if !inner.subscribers.iter().any(to) {
            return seq;
        }
        let msg = RouteMessage { seq, kind, rtable, pid, errno, body: body() };
        // A send fails only when the receiver is gone: forget that subscriber.
        inner.subscribers.retain(|s| !to(s) || s.tx.send(msg.clone()).is_ok());
        seq
    }

    /// Sequence number of the last message emitted (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.inner.lock().seq
    }

    /// Subscribers still registered (dead ones go at the next emit).
    pub fn subscriber_count(&self) -> usize {
        self.inner.lock().subscribers.len()
    }
}

/// Route flag names as `route monitor` prints them, in bit order.
const ROUTE_FLAG_NAMES: &[(RouteFlags, &str)] = &[
    (RouteFlags::UP, "UP"),
    (RouteFlags::GATEWAY, "GATEWAY"),
    (RouteFlags::HOST, "HOST"),
    (RouteFlags::REJECT, "REJECT"),
    (RouteFlags::DONE, "DONE"),
    (RouteFlags::CLONING, "CLONING"),
    (RouteFlags::LLINFO, "LLINFO"),
    (RouteFlags::STATIC, "STATIC"),
    (RouteFlags::BLACKHOLE, "BLACKHOLE"),
    (RouteFlags::CLONED, "CLONED"),
    (RouteFlags::MPATH, "MPATH"),
    (RouteFlags::LOCAL, "LOCAL"),
    (RouteFlags::BROADCAST, "BROADCAST"),
    (RouteFlags::CONNECTED, "CONNECTED"),
];

const IF_FLAG_NAMES: &[(u32, &str)] = &[
    (if_flags::UP, "UP"),
    (if_flags::BROADCAST, "BROADCAST"),
    (if_flags::RUNNING, "RUNNING"),
    (if_flags::MULTICAST, "MULTICAST"),
];

/// `<A,B,C>` as route(8)'s bprintf, or nothing for no bits.
fn bit_names(f: &mut fmt::Formatter<'_>, names: impl Iterator<Item = &'static str>) -> fmt::Result {
    let mut first = true;
    for n in names {
        f.write_str(if first { "<" } else { "," })?;
        f.write_str(n)?;
        first = false;
    }
    if !first {
        f.write_str(">")?;
    }
    Ok(())
}

/// The route flag names of `flags`, e.g. `<UP,GATEWAY,DONE,STATIC>`.
pub struct RouteFlagNames(pub RouteFlags);

impl fmt::Display for RouteFlagNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        bit_names(f, ROUTE_FLAG_NAMES.iter().filter(|(b, _)| self.0.contains(*b)).map(|(_, n)| *n))
    }
}

struct IfFlagNames(u32);

impl fmt::Display for IfFlagNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        bit_names(f, IF_FLAG_NAMES.iter().filter(|(b, _)| self.0 & b != 0).map(|(_, n)| *n))
    }
}

fn ifname_or_link(name: &Option<String>, index: IfIndex) -> String {
    name.clone().unwrap_or_else(|| format!("link#{index}"))
}

/// An address as route(8)'s routename prints it with -n: a scoped IPv6
/// address (link-local) with `%` and the interface it is scoped to, as
/// getnameinfo writes the KAME scope id.
fn routename(a: IpAddr, ifname: &Option<String>, index: IfIndex) -> String {
    match a {
        IpAddr::V6(v6) if crate::route::is_scoped6(v6) => format!("{v6}%{}", ifname_or_link(ifname, index)),
        _ => a.to_string(),
    }
}

/// A netmask of the family of `like`, as route(8) prints a netmask
/// sockaddr (pmsg_addrs gives it the family of the destination).
fn netmask_of(like: IpAddr, len: u8) -> String {
    match like {
        IpAddr::V4(_) => Ipv4Addr::from(prefix_mask(len)).to_string(),
        IpAddr::V6(_) => std::net::Ipv6Addr::from(crate::route::prefix_mask6(len)).to_string(),
    }
}

fn link_state_name(s: LinkState) -> &'static str {
    match s {
        LinkState::Up => "active",
        LinkState::Down => "no carrier",
        LinkState::Unknown => "unknown",
    }
}

impl fmt::Display for RouteMessage {
    /// Close to OpenBSD `route monitor`: the header line, the flags, and the
    /// socket addresses present. The byte length is left out: there is no
    /// wire message whose length would mean anything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.kind.describe())?;
        match &self.body {
            RtmBody::Route(r) => {
                writeln!(
                    f,
                    "priority {}, table {}, if# {}, name {}, pid: {}, seq {}, errno {}",
                    r.priority,
                    self.rtable,
                    r.ifindex,
                    ifname_or_link(&r.ifname, r.ifindex),
                    self.pid,
                    self.seq,
                    self.errno
                )?;
                writeln!(f, "flags:{}", RouteFlagNames(r.flags))?;
                writeln!(f, "use:        0   mtu: {:>8}    expire:        0", r.mtu)?;
                writeln!(f, "locks:  inits: ")?;
                // Addresses in RTA_* bit order: DST, GATEWAY, NETMASK, IFP, IFA.
                let name = |a: IpAddr| routename(a, &r.ifname, r.ifindex);
                let mut names = vec!["DST"];
                let mut addrs = vec![name(r.dest)];
                if let Some(g) = r.gateway {
                    names.push("GATEWAY");
                    addrs.push(name(g));
                }
                if !r.flags.contains(RouteFlags::HOST) {
                    names.push("NETMASK");
                    addrs.push(netmask_of(r.dest, r.prefix_len));
                }
                if r.ifindex != IfIndex::NONE {
                    names.push("IFP");
                    addrs.push(ifname_or_link(&r.ifname, r.ifindex));
                }
                if let Some(a) = r.ifa {
                    names.push("IFA");
                    addrs.push(name(a));
                }
                write!(f, "sockaddrs: <{}>\n {}", names.join(","), addrs.join(" "))
            }
            RtmBody::Addr(a) => {
                writeln!(
                    f,
                    "table {}, if# {}, name {}, seq {}, metric {}, flags:{}",
                    self.rtable,
                    a.ifindex,
                    ifname_or_link(&a.ifname, a.ifindex),
                    self.seq,
                    a.metric,
                    IfFlagNames(a.if_flags)
                )?;
                let mut names = vec!["NETMASK", "IFP", "IFA"];
                let (mask, ifa, brd) = match a.addr {
                    RtmIfa::V4(v4) => (Ipv4Addr::from(v4.mask()).to_string(), v4.addr.to_string(), v4.broadcast()),
                    RtmIfa::V6 { addr, prefix_len } => (
                        netmask_of(IpAddr::V6(addr), prefix_len),
                        routename(IpAddr::V6(addr), &a.ifname, a.ifindex),
                        None,
                    ),
                };
                let mut addrs = vec![mask, ifname_or_link(&a.ifname, a.ifindex), ifa];
                if let Some(b) = brd {
                    names.push("BRD");
                    addrs.push(b.to_string());
                }
                write!(f, "sockaddrs: <{}>\n {}", names.join(","), addrs.join(" "))
            }
            RtmBody::IfInfo(i) => write!(
                f,
                "if# {}, name {}, seq {}, link: {}, mtu: {}, flags:{}",
                i.ifindex,
                ifname_or_link(&i.ifname, i.ifindex),
                self.seq,
                link_state_name(i.link_state),
                i.mtu,
                IfFlagNames(i.if_flags)
            ),
            RtmBody::IfAnnounce(i) => {
                let what = match self.kind {
                    RtmType::IfAnnounce(IfAnnounceWhat::Arrival) => "arrival",
                    RtmType::IfAnnounce(IfAnnounceWhat::Departure) => "departure",
                    _ => "?",
                };
                write!(
                    f,
                    "if# {}, name {}, seq {}, what: {}",
                    i.ifindex,
                    ifname_or_link(&i.ifname, i.ifindex),
                    self.seq,
                    what
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_body() -> RtmBody {
        RtmBody::Route(RtmRoute {
            dest: Ipv4Addr::new(10, 0, 1, 0).into(),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 0, 2, 254).into()),
            flags: RouteFlags::UP | RouteFlags::GATEWAY | RouteFlags::DONE | RouteFlags::STATIC,
            ifindex: IfIndex(2),
            ifname: Some("sn-r1".into()),
            ifa: Some(Ipv4Addr::new(10, 0, 2, 1).into()),
            mtu: 0,
            priority: 8,
        })
    }

    #[test]
    fn every_subscriber_gets_each_message_once_in_sequence() {
        let m = RouteMonitor::new();
        let a = m.subscribe();
        let b = m.subscribe();
        let s1 = m.emit(RtmType::Add, 0, route_body());
        let s2 = m.emit(RtmType::Delete, 0, route_body());
        assert!(s2 > s1);
        for rx in [&a, &b] {
            let got: Vec<_> = rx.try_iter().collect();
            assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![s1, s2]);
            assert_eq!(got[0].kind, RtmType::Add);
        }
    }

    #[test]
    fn a_source_does_not_hear_its_own_messages_and_everyone_else_does() {
        let m = RouteMonitor::new();
        let all = m.subscribe();
        let (me, mine) = m.subscribe_others();
        let (other, theirs) = m.subscribe_others();
        assert_ne!(me, other);
        let s1 = m.emit_lazy(RtmType::Add, 0, Some(me), route_body);
        let s2 = m.emit(RtmType::Delete, 0, route_body());
        let s3 = m.emit_lazy(RtmType::Delete, 0, Some(other), route_body);
        let seqs = |rx: &Receiver<RouteMessage>| rx.try_iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&all), vec![s1, s2, s3]);
        assert_eq!(seqs(&mine), vec![s2, s3], "its own RTM_ADD left out");
        assert_eq!(seqs(&theirs), vec![s1, s2]);
        // With nobody else listening the body is not even made, but the
        // message is numbered: the next one anybody sees says so.
        drop(all);
        drop(theirs);
        m.emit(RtmType::Add, 0, route_body());
        let s5 = m.emit_lazy(RtmType::Add, 0, Some(me), || panic!("made a body nobody receives"));
        assert_eq!(m.subscriber_count(), 1);
        let s6 = m.emit(RtmType::Add, 0, route_body());
        assert_eq!(seqs(&mine), vec![s5 - 1, s6]);
        assert_eq!(s6, s5 + 1);
    }

    #[test]
    fn dropped_subscriber_is_forgotten_at_next_emit() {
        let m = RouteMonitor::new();
        let a = m.subscribe();
        drop(m.subscribe());
        assert_eq!(m.subscriber_count(), 2);
        m.emit(RtmType::Add, 0, route_body());
        assert_eq!(m.subscriber_count(), 1);
        assert_eq!(a.try_iter().count(), 1);
        assert_eq!(m.last_seq(), 1);
    }

    #[test]
    fn route_message_prints_like_route_monitor() {
        let m = RouteMonitor::new();
        let rx = m.subscribe();
        m.emit(RtmType::Add, 0, route_body());
        let text = rx.recv().unwrap().to_string();
        assert!(
            text.starts_with("RTM_ADD: Add Route: priority 8, table 0, if# 2, name sn-r1, pid: 0, seq 1, errno 0\n"),
            "{text}"
        );
        assert!(text.contains("\nflags:<UP,GATEWAY,DONE,STATIC>\n"), "{text}");
        assert!(text.contains("\nlocks:  inits: \n"), "{text}");
        assert!(
            text.ends_with(
                "sockaddrs: <DST,GATEWAY,NETMASK,IFP,IFA>\n 10.0.1.0 10.0.2.254 255.255.255.0 sn-r1 10.0.2.1"
            ),
            "{text}"
        );
    }

    #[test]
    fn ipv6_route_message_prints_v6_netmask_and_scoped_addresses() {
        let m = RouteMonitor::new();
        let rx = m.subscribe();
        let v6 = |s: &str| -> IpAddr { s.parse().unwrap() };
        m.emit(
            RtmType::Add,
            0,
            RtmBody::Route(RtmRoute {
                dest: v6("2001:db8::"),
                prefix_len: 32,
                gateway: Some(v6("fe80::1")),
                flags: RouteFlags::UP | RouteFlags::GATEWAY | RouteFlags::DONE | RouteFlags::STATIC,
                ifindex: IfIndex(1),
                ifname: Some("em0".into()),
                ifa: Some(v6("fe80::2")),
                mtu: 0,
                priority: 8,
            }),
        );
        m.emit(
            RtmType::Delete,
            0,
            RtmBody::Route(RtmRoute {
                dest: v6("2001:db8::1"),
                prefix_len: 128,
                gateway: None,
                flags: RouteFlags::UP | RouteFlags::HOST | RouteFlags::LLINFO | RouteFlags::LOCAL | RouteFlags::DONE,
                ifindex: IfIndex(2),
                ifname: None,
                ifa: Some(v6("2001:db8::1")),
                mtu: 0,
                priority: 1,
            }),
        );
        let t: Vec<String> = rx.try_iter().map(|m| m.to_string()).collect();
        assert!(t[0].starts_with("RTM_ADD: Add Route: priority 8, table 0, if# 1, name em0, pid: 0, seq 1, errno 0\n"));
        assert!(
            t[0].ends_with(
                "sockaddrs: <DST,GATEWAY,NETMASK,IFP,IFA>\n 2001:db8:: fe80::1%em0 ffff:ffff:: em0 fe80::2%em0"
            ),
            "{}",
            t[0]
        );
        assert!(t[1].contains("flags:<UP,HOST,DONE,LLINFO,LOCAL>"), "{}", t[1]);
        assert!(t[1].ends_with("sockaddrs: <DST,IFP,IFA>\n 2001:db8::1 link#2 2001:db8::1"), "{}", t[1]);
    }

    #[test]
    fn interface_messages_print_their_kind() {
        let m = RouteMonitor::new();
        let rx = m.subscribe();
        m.emit(
            RtmType::IfAnnounce(IfAnnounceWhat::Departure),
            0,
            RtmBody::IfAnnounce(RtmIfAnnounce { ifindex: IfIndex(3), ifname: Some("sn-x".into()) }),
        );
        m.emit(
            RtmType::IfInfo,
            0,
            RtmBody::IfInfo(RtmIfInfo {
                ifindex: IfIndex(3),
                ifname: None,
                if_flags: if_flags::UP | if_flags::RUNNING,
                link_state: LinkState::Up,
                mtu: 1500,
            }),
        );
        m.emit(
            RtmType::NewAddr,
            0,
            RtmBody::Addr(RtmAddr {
                ifindex: IfIndex(3),
                ifname: Some("sn-x".into()),
                addr: IfAddr::new(Ipv4Addr::new(10, 0, 1, 1), 24).into(),
                if_flags: if_flags::UP,
                metric: 0,
            }),
        );
        m.emit(
            RtmType::NewAddr,
            0,
            RtmBody::Addr(RtmAddr {
                ifindex: IfIndex(3),
                ifname: Some("sn-x".into()),
                addr: RtmIfa::V6 { addr: "fe80::1".parse().unwrap(), prefix_len: 64 },
                if_flags: if_flags::UP,
                metric: 0,
            }),
        );
        let t: Vec<String> = rx.try_iter().map(|m| m.to_string()).collect();
        assert_eq!(t[0], "RTM_IFANNOUNCE: iface arrival/departure: if# 3, name sn-x, seq 1, what: departure");
        assert_eq!(
            t[1],
            "RTM_IFINFO: iface status change: if# 3, name link#3, seq 2, link: active, mtu: 1500, flags:<UP,RUNNING>"
        );
        assert!(
            t[2].starts_with("RTM_NEWADDR: address being added to iface: table 0, if# 3, name sn-x, seq 3"),
            "{}",
            t[2]
        );
        assert!(
            t[2].ends_with("sockaddrs: <NETMASK,IFP,IFA,BRD>\n 255.255.255.0 sn-x 10.0.1.1 10.0.1.255"),
            "{}",
            t[2]
        );
        assert!(t[3].ends_with("sockaddrs: <NETMASK,IFP,IFA>\n ffff:ffff:ffff:ffff:: sn-x fe80::1%sn-x"), "{}", t[3]);
    }
}
