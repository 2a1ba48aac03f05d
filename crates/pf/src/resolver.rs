//! Interface and address lookups the parser needs, answered offline.
//!
//! pfctl asks the kernel (getifaddrs) when it turns `self`, `em0`,
//! `em0:network` or a group name into addresses. softnet's parser asks an
//! `IfResolver` instead, which the daemon builds from its configuration and
//! tests build by hand.

use std::net::IpAddr;

use crate::model::IpNet;

/// One address configured on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// The far end of a point-to-point link, if the interface is one.
    pub peer: Option<IpAddr>,
}

impl IfAddr {
    pub fn new(addr: IpAddr, prefix_len: u8) -> IfAddr {
        IfAddr { addr, prefix_len, peer: None }
    }

    pub fn network(&self) -> IpNet {
        IpNet::new(self.addr, self.prefix_len)
    }

    /// The IPv4 directed broadcast address, if the prefix has one.
    pub fn broadcast(&self) -> Option<IpAddr> {
        match self.addr {
            IpAddr::V4(a) if self.prefix_len < 31 => {
                let host_mask = u32::MAX >> self.prefix_len;
                Some(IpAddr::V4((u32::from(a) | host_mask).into()))
            }
            _ => None,
        }
    }

    /// IPv6 link-local addresses carry a scope; pfctl leaves them out of
    /// `:network` lookups.
    pub fn is_scoped(&self) -> bool {
        match self.addr {
            IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
            IpAddr::V4(_) => false,
        }
    }
}

/// Answers the parser's questions about interfaces.
pub trait IfResolver {
    /// All interface names, in a stable order (the order `self` expands in).
    fn interfaces(&self) -> Vec<String>;

    /// The addresses configured on one interface; empty if it has none or
    /// does not exist.
    fn addresses(&self, ifname: &str) -> Vec<IfAddr>;

    fn is_loopback(&self, ifname: &str) -> bool;

    /// Members of an interface group (`egress`, `lo`, `em`, user groups).
    fn group_members(&self, group: &str) -> Vec<String>;

    fn interface_exists(&self, ifname: &str) -> bool {
        self.interfaces().iter().any(|i| i == ifname)
    }

    /// A name names an interface or a non-empty group.
    fn exists(&self, name: &str) -> bool {
        self.interface_exists(name) || !self.group_members(name).is_empty()
    }

    /// The addresses of a host name, as pfctl's host_dns gets them from
    /// getaddrinfo. softnet answers only the names of OpenBSD's default
    /// /etc/hosts, so that a ruleset never depends on DNS or on the host
    /// it is loaded on: `localhost` is 127.0.0.1, then ::1.
    fn host_addresses(&self, name: &str) -> Vec<IpAddr> {
        match name {
            "localhost" => vec![IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)],
            _ => vec![],
        }
    }

    /// The interfaces a name stands for: itself, or a group's members.
    fn expand(&self, name: &str) -> Vec<String> {
        if self.interface_exists(name) {
            vec![name.to_string()]
        } else {
            self.group_members(name)
        }
    }
}

/// An interface as the in-memory resolver knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub name: String,
    pub addrs: Vec<IfAddr>,
    /// Extra groups; the driver group (name without the unit number),
    /// `all` (every interface, as OpenBSD's IFG_ALL) and `egress` (from
    /// `StaticResolver::egress`) are implied.
    pub groups: Vec<String>,
    pub loopback: bool,
}

/// A resolver over a fixed list of interfaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticResolver {
    pub interfaces: Vec<InterfaceInfo>,
    /// Interfaces the default route points out of: the `egress` group.
    pub egress: Vec<String>,
}

impl StaticResolver {
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// Adds an interface with addresses written as `"10.0.0.1/24"`.
    ///
    /// Panics on a malformed address: this is for tests and fixed configs.
    pub fn with_interface(mut self, name: &str, addrs: &[&str]) -> StaticResolver {
        let addrs = addrs
            .iter()
            .map(|s| {
                let (a, p) = s.split_once('/').unwrap_or((s, ""));
                let addr: IpAddr = a.parse().expect("interface address");
                let prefix = if p.is_empty() { crate::model::max_prefix(addr) } else { p.parse().expect("prefix") };
                IfAddr::new(addr, prefix)
            })
            .collect();
        let loopback = name.starts_with("lo") && driver_group(name) == "lo";
        self.interfaces.push(InterfaceInfo { name: name.to_string(), addrs, groups: vec![], loopback });
        self
    }

    pub fn with_group(mut self, ifname: &str, group: &str) -> StaticResolver {
        if let Some(i) = self.interfaces.iter_mut().find(|i| i.name == ifname) {
            i.groups.push(group.to_string());
        }
        self
    }

    pub fn with_peer(mut self, ifname: &str, peer: IpAddr) -> StaticResolver {
        if let Some(i) = self.interfaces.iter_mut().find(|i| i.name == ifname) {
            for a in i.addrs.iter_mut().filter(|a| a.addr.is_ipv4() == peer.is_ipv4()) {
                a.peer = Some(peer);
            }
        }
        self
    }

    pub fn with_egress(mut self, ifname: &str) -> StaticResolver {
        self.egress.push(ifname.to_string());
        self
    }

    /// The resolver the test cases use: lo0, em0 (egress), em1, and a
    /// point-to-point tun0.
    pub fn example() -> StaticResolver {
        StaticResolver::new()
            .with_interface("lo0", &["127.0.0.1/8", "::1/128", "fe80::1/64"])
            .with_interface("em0", &["192.0.2.10/24", "2001:db8::10/64"])
            .with_interface("em1", &["10.0.0.1/24", "10.0.1.1/24"])
            .with_interface("tun0", &["198.51.100.1/32"])
            .with_peer("tun0", "198.51.100.2".parse().unwrap())
            .with_group("em1", "lan")
            .with_egress("em0")
    }
}

/// OpenBSD puts every interface in the group named after its driver.
fn driver_group(name: &str) -> &str {
    name.trim_end_matches(|c: char| c.is_ascii_digit())
}

impl IfResolver for StaticResolver {
    fn interfaces(&self) -> Vec<String> {
        self.interfaces.iter().map(|i| i.name.clone()).collect()
    }

    fn addresses(&self, ifname: &str) -> Vec<IfAddr> {
        self.interfaces.iter().find(|i| i.name == ifname).map(|i| i.addrs.clone()).unwrap_or_default()
    }

    fn is_loopback(&self, ifname: &str) -> bool {
        self.interfaces.iter().any(|i| i.name == ifname && i.loopback)
    }

    fn group_members(&self, group: &str) -> Vec<String> {
        self.interfaces
            .iter()
            .filter(|i| {
                group == "all"
                    || (driver_group(&i.name) == group && driver_group(&i.name) != i.name)
                    || i.groups.iter().any(|g| g == group)
                    || (group == "egress" && self.egress.contains(&i.name))
            })
            .map(|i| i.name.clone())
            .collect()
    }
}
