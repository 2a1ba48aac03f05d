//! Routing tables: longest-prefix match per routing table (rtable id), for
//! IPv4 and IPv6.
//!
//! The control thread owns the authoritative set of routes of each table and
//! family (a `BTreeMap` keyed by network and prefix length) and a trie built
//! from it (`trie.rs`, generic over the family, `family.rs`). After every
//! change — or once after a batch of changes — it publishes the trie as an
//! immutable `RouteSnapshot` with `arc-swap`, one per family, so an IPv4
//! lookup never touches IPv6 routes. Workers load the snapshot once per
//! batch and look up without locks or allocation. Old snapshots are retired
//! to a list and freed on the control thread once no reader holds them,
//! never on a worker (`table.rs`).
//!
//! Every change emits exactly one route message (`rtmsg.rs`).

mod family;
mod mpath;
mod netstat;
mod nexthop;
mod table;
mod trie;

pub use family::{embed_scope6, is_scoped6, prefix_mask6, RouteAddr};
pub use mpath::{mpath_hash, RouteOrigin};
pub use netstat::{format_netstat_rn, format_netstat_rn_families, netname, netname6, Families};
pub use nexthop::{Hop, Nhop};
pub use table::{
    FamilyState, PublishedTable, RouteBatch, RouteSnapshot, RouteSnapshot6, RouteTables, SetOutcome, TableState,
};

use crate::iface::{IfAddr, WeakIf};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::{BitAnd, BitOr, BitOrAssign, Not};
use std::sync::Arc;
use trie::Key;

/// Route flags, with OpenBSD's `RTF_*` bit values.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default)]
pub struct RouteFlags(pub u32);

impl RouteFlags {
    pub const UP: RouteFlags = RouteFlags(0x1);
    pub const GATEWAY: RouteFlags = RouteFlags(0x2);
    pub const HOST: RouteFlags = RouteFlags(0x4);
    pub const REJECT: RouteFlags = RouteFlags(0x8);
    /// Message completed: only in route messages, never in a table.
    pub const DONE: RouteFlags = RouteFlags(0x40);
    pub const CLONING: RouteFlags = RouteFlags(0x100);
    pub const LLINFO: RouteFlags = RouteFlags(0x400);
    pub const STATIC: RouteFlags = RouteFlags(0x800);
    pub const BLACKHOLE: RouteFlags = RouteFlags(0x1000);
    pub const CLONED: RouteFlags = RouteFlags(0x10000);
    /// One of several next hops for the destination (ECMP, `mpath.rs`).
    pub const MPATH: RouteFlags = RouteFlags(0x40000);
    pub const LOCAL: RouteFlags = RouteFlags(0x200000);
    pub const BROADCAST: RouteFlags = RouteFlags(0x400000);
    pub const CONNECTED: RouteFlags = RouteFlags(0x800000);

    pub const fn empty() -> Self {
        RouteFlags(0)
    }
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// All bits of `other` are set.
    pub const fn contains(self, other: RouteFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Any bit of `other` is set.
    pub const fn intersects(self, other: RouteFlags) -> bool {
        self.0 & other.0 != 0
    }
    pub fn insert(&mut self, other: RouteFlags) {
        self.0 |= other.0
    }
    pub fn remove(&mut self, other: RouteFlags) {
        self.0 &= !other.0
    }
}

impl BitOr for RouteFlags {
    type Output = RouteFlags;
    fn bitor(self, o: RouteFlags) -> RouteFlags {
        RouteFlags(self.0 | o.0)
    }
}

impl BitOrAssign for RouteFlags {
    fn bitor_assign(&mut self, o: RouteFlags) {
        self.0 |= o.0
    }
}

impl BitAnd for RouteFlags {
    type Output = RouteFlags;
    fn bitand(self, o: RouteFlags) -> RouteFlags {
        RouteFlags(self.0 & o.0)
    }
}

impl Not for RouteFlags {
    type Output = RouteFlags;
    fn not(self) -> RouteFlags {
        RouteFlags(!self.0)
    }
}

/// Letters in the order of OpenBSD netstat's table.
const FLAG_LETTERS: &[(RouteFlags, char)] = &[
    (RouteFlags::UP, 'U'),
    (RouteFlags::GATEWAY, 'G'),
    (RouteFlags::HOST, 'H'),
    (RouteFlags::REJECT, 'R'),
    (RouteFlags::CLONING, 'C'),
    (RouteFlags::LLINFO, 'L'),
    (RouteFlags::STATIC, 'S'),
    (RouteFlags::BLACKHOLE, 'B'),
    (RouteFlags::CLONED, 'c'),
    (RouteFlags::MPATH, 'P'),
    (RouteFlags::LOCAL, 'l'),
    (RouteFlags::BROADCAST, 'b'),
    (RouteFlags::CONNECTED, 'n'),
];

impl fmt::Display for RouteFlags {
    /// netstat's letters: a connected route is `UCn`, a local one `UHLl`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: String = FLAG_LETTERS.iter().filter(|(b, _)| self.contains(*b)).map(|(_, c)| *c).collect();
        f.pad(&s)
    }
}

impl fmt::Debug for RouteFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RouteFlags({:#x} {})", self.0, self)
    }
}

/// Route priorities as OpenBSD assigns them (lower wins in OpenBSD's
/// multipath; here one route per prefix, the priority is informational).
pub mod prio {
    pub const LOCAL: u8 = 1;
    pub const CONNECTED: u8 = 4;
    pub const STATIC: u8 = 8;
}

/// One route of either family (`Route` is IPv4's, `Route6` IPv6's). Tables
/// hand out `Arc<Route<A>>`; a route is never changed in place (a change
/// replaces it).
///
/// An IPv6 route to or via a scoped address (link-local, `fe80::1%em0`)
/// keeps the plain address; its scope is `ifp`, and the table's key embeds
/// it (`family.rs`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Route<A: RouteAddr = Ipv4Addr> {
    pub dest: A,
    pub prefix_len: u8,
    /// Next hop; `None` for directly reachable destinations. The table keeps
    /// `RouteFlags::GATEWAY` set exactly when this is `Some`.
    pub gateway: Option<A>,
    pub ifp: WeakIf,
    /// Source address to use.
    pub ifa: Option<A>,
    pub flags: RouteFlags,
    /// 0 = the interface's.
    pub mtu: u32,
    pub priority: u8,
    /// Who made the route: softnet itself, or a kernel routing table it
    /// mirrors (`sync_routes`), with the kernel's protocol.
    pub origin: RouteOrigin,
    /// A multipath route's next hops (`RouteFlags::MPATH`), each a whole
    /// route to the same destination; the route's own gateway and interface
    /// are the first one's. `None` for a route with one next hop.
    pub mpath: Option<Arc<[Route<A>]>>,
}

/// An IPv6 route.
pub type Route6 = Route<Ipv6Addr>;

impl<A: RouteAddr> Route<A> {
    /// A static route via `gateway`; `add` finds the interface (and source
    /// address) from the connected route that reaches the gateway. A scoped
    /// (link-local) gateway needs its interface set in `ifp` first.
    pub fn via(dest: A, prefix_len: u8, gateway: A) -> Route<A> {
        Route {
            dest,
            prefix_len,
            gateway: Some(gateway),
            ifp: WeakIf::default(),
            ifa: None,
            flags: RouteFlags::UP | RouteFlags::GATEWAY | RouteFlags::STATIC,
            mtu: 0,
            priority: prio::STATIC,
            origin: RouteOrigin::Own,
            mpath: None,
        }
    }

    /// The local host route of an interface address (`UHLl`), attached to
    /// the interface that owns the address.
    pub fn local(ifp: WeakIf, addr: A) -> Route<A> {
        Route {
            dest: addr,
            prefix_len: A::MAX_LEN,
            gateway: None,
            ifp,
            ifa: Some(addr),
            flags: RouteFlags::UP | RouteFlags::HOST | RouteFlags::LLINFO | RouteFlags::LOCAL,
            mtu: 0,
            priority: prio::LOCAL,
            origin: RouteOrigin::Own,
            mpath: None,
        }
    }

    /// The table key: the network with its scope embedded, and the length.
    fn key(&self) -> Key<A> {
        (A::key_bits(self.dest, self.prefix_len, self.ifp.index), self.prefix_len)
    }

    /// Whether `ip` falls in this route's prefix (scope not considered).
    pub fn contains(&self, ip: A) -> bool {
        A::mask_bits(ip.to_bits(), self.prefix_len) == A::mask_bits(self.dest.to_bits(), self.prefix_len)
    }
}

impl Route<Ipv6Addr> {
    /// The connected route of an IPv6 interface address `addr/prefix_len`
    /// (`UCn`): the prefix, reached directly on `ifp`, its source `addr`.
    /// As OpenBSD, the link-local prefix of each interface is a route of its
    /// own (`fe80::%em0/64`).
    pub fn connected6(ifp: WeakIf, addr: Ipv6Addr, prefix_len: u8) -> Route6 {
        Route {
            dest: Ipv6Addr::from(u128::from(addr) & prefix_mask6(prefix_len.min(128))),
            prefix_len,
            gateway: None,
            ifp,
            ifa: Some(addr),
            flags: RouteFlags::UP | RouteFlags::CLONING | RouteFlags::CONNECTED,
            mtu: 0,
            priority: prio::CONNECTED,
            origin: RouteOrigin::Own,
            mpath: None,
        }
    }
}

impl Route<Ipv4Addr> {
    /// The connected route of an interface address (`UCn`).
    pub fn connected(ifp: WeakIf, a: IfAddr) -> Route {
        Route {
            dest: a.network(),
            prefix_len: a.prefix_len,
            gateway: None,
            ifp,
            ifa: Some(a.addr),
            flags: RouteFlags::UP | RouteFlags::CLONING | RouteFlags::CONNECTED,
            mtu: 0,
            priority: prio::CONNECTED,
            origin: RouteOrigin::Own,
            mpath: None,
        }
    }

    /// The directed-broadcast host route of an interface address (`UHb`).
    pub fn broadcast(ifp: WeakIf, a: IfAddr) -> Option<Route> {
        Some(Route {
            dest: a.broadcast()?,
            prefix_len: 32,
            gateway: None,
            ifp,
            ifa: Some(a.addr),
            flags: RouteFlags::UP | RouteFlags::HOST | RouteFlags::BROADCAST,
            mtu: 0,
            priority: prio::LOCAL,
            origin: RouteOrigin::Own,
            mpath: None,
        })
    }
}

/// Errors of route changes, worded as route(8) reports them.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum RouteError {
    /// EEXIST.
    #[error("route already exists")]
    Exists,
    /// ESRCH.
    #[error("not in table")]
    NotInTable,
    /// ENETUNREACH: no directly connected route reaches the gateway.
    #[error("network unreachable")]
    NetworkUnreachable,
    /// EINVAL.
    #[error("bad prefix length /{0} (0-32)")]
    BadPrefix(u8),
    /// EINVAL.
    #[error("bad prefix length /{0} (0-128)")]
    BadPrefix6(u8),
    /// EINVAL: a link-local destination or gateway without its interface
    /// (`fe80::1%em0`), or a gateway scoped to another interface than the
    /// route's.
    #[error("scope (%interface) needed for a link-local address")]
    NoScope,
    /// ENOBUFS: every next-hop index of the table is taken.
    #[error("no space for another next hop")]
    NoNextHop,
}

impl RouteError {
    /// The errno a BSD routing socket would report.
    pub fn errno(&self) -> i32 {
        match self {
            RouteError::Exists => 17,
            RouteError::NotInTable => 3,
            RouteError::NetworkUnreachable => 51,
            RouteError::BadPrefix(_) | RouteError::BadPrefix6(_) | RouteError::NoScope => 22,
            RouteError::NoNextHop => 55,
        }
    }
    /// strerror of `errno()`, as route(8) prints after the route.
    pub fn strerror(&self) -> &'static str {
        match self {
            RouteError::Exists => "File exists",
            RouteError::NotInTable => "No such process",
            RouteError::NetworkUnreachable => "Network is unreachable",
            RouteError::BadPrefix(_) | RouteError::BadPrefix6(_) | RouteError::NoScope => "Invalid argument",
            RouteError::NoNextHop => "No buffer space available",
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests6;
