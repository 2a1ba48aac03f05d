//! The daemon's TOML configuration (DESIGN.md "Control plane"): parsed,
//! then validated with errors that name the file and line.

use serde::Deserialize;
use softnet_core::iface::IfAddr;
use softnet_core::loopback::LO0;
use softnet_wire::ethernet::MacAddr;
use softnet_wire::ipv6::Ipv6AddrExt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use toml::Spanned;

pub use crate::config_route::{Route6Conf, RouteConf, RouteVia};

pub const DEFAULT_CONTROL: &str = "/run/softnet/softnet.sock";

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    workers: Option<Spanned<i64>>,
    forwarding: Option<bool>,
    forwarding6: Option<bool>,
    redirects: Option<bool>,
    directed_broadcast: Option<bool>,
    icmp_errors_per_second: Option<Spanned<i64>>,
    broadcast_echo: Option<bool>,
    control: Option<String>,
    pf: Option<Spanned<String>>,
    pflog: Option<Spanned<String>>,
    log: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    control_group: Option<Spanned<String>>,
    sync_routes: Option<Spanned<toml::Value>>,
    log_format: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
    #[serde(default)]
    interface: Vec<Spanned<RawInterface>>,
    #[serde(default)]
    route: Vec<Spanned<crate::config_route::RawRoute>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Spanned<String>,
    driver: Spanned<String>,
    device: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
    #[serde(default)]
    addr: Vec<Spanned<String>>,
    mtu: Option<Spanned<i64>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    ra: Option<crate::config_ra::RawRa>,
    host: Option<Spanned<String>>,
    xdp_mode: Option<Spanned<String>>,
    rx_ring: Option<Spanned<String>>,
    rx_ring_mib: Option<Spanned<i64>>,
    offload: Option<Spanned<bool>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Tap,
    Packet,
    Xdp,
    Virtual,
    /// lo0, which the stack makes itself (softnet_core::loopback): its
    /// `[[interface]]` entry only adds addresses, groups or an mtu.
    Loopback,
}

impl Driver {
    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Tap => "tap",
            Driver::Packet => "packet",
            Driver::Xdp => "xdp",
            Driver::Virtual => "virtual",
            Driver::Loopback => "loopback",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceConf {
    pub name: String,
    pub driver: Driver,
    pub device: String,
    pub mac: Option<MacAddr>,
    pub addrs: Vec<IfAddr>,
    /// IPv6 addresses (besides the link-local one every interface gets).
    pub addrs6: Vec<Addr6>,
    pub mtu: Option<u32>,
    /// Interface groups (`ifconfig IF group NAME`), e.g. for `pass on lan`.
    pub groups: Vec<String>,
    /// Router advertisements sent on it (`[interface.ra]`, rad.conf's
    /// interface block; `config_ra.rs`).
    pub ra: Option<softnet_core::nd6::rtadv::RaConfig>,
    /// The host's twin of the interface (`host = "NAME"`, a Linux TAP of
    /// that name in softnet's namespace; `hostif.rs`).
    pub host: Option<String>,
    /// `xdp_mode = "generic"` (driver "xdp" only): the XDP program attached
    /// in generic (SKB) mode. The default, "native", tries the driver's
    /// mode first and falls back to generic when the driver refuses.
    pub xdp_generic: bool,
    /// `rx_ring`, `rx_ring_mib` (driver "packet" only; `config_ring.rs`).
    pub rx_ring: crate::config_ring::RxRingConf,
    /// `offload = true` (driver "tap" only): the TAP opened with the
    /// virtio-net header, TCP sent in super-segments the kernel cuts
    /// (segmentation offload; softnet_io::tap). Off by default.
    pub offload: bool,
    /// Line of the `[[interface]]` entry, for errors found after parsing.
    pub line: usize,
}

/// An IPv6 address of an interface as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addr6 {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
}

impl std::fmt::Display for Addr6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Parses "x:y::z/len" as `ifconfig inet6` takes it: a length of 1 to
/// 128 (the stack's checks, in6_update_ifa's), a unicast address, a
/// link-local one only as a /64.
pub fn parse_prefix6(s: &str) -> Result<Addr6, String> {
    let Some((a, l)) = s.split_once('/') else {
        return Err(format!("address {s:?} needs a prefix length (fd00:1::1/64)"));
    };
    let addr: Ipv6Addr = a.parse().map_err(|_| format!("bad IPv6 address {a:?}"))?;
    let prefix_len = l.parse::<u8>().map_err(|_| format!("bad prefix length in {s:?}"))?;
    if prefix_len == 0 || prefix_len > 128 {
        return Err(format!("prefix length {prefix_len} not 1 to 128 in {s:?}"));
    }
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() || addr.is_v4_mapped() {
        return Err(format!("{addr} is not a unicast address"));
    }
    if addr.is_link_local_unicast() && prefix_len != 64 {
        return Err(format!("link-local address {addr} needs prefix length 64"));
    }
    Ok(Addr6 { addr, prefix_len })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub path: PathBuf,
    pub workers: usize,
    /// IP tunables (OpenBSD sysctl names in comments): net.inet.ip.forwarding
    pub forwarding: bool,
    /// net.inet6.ip6.forwarding (`forwarding6`)
    pub forwarding6: bool,
    /// net.inet.ip.redirect (off by default, unlike OpenBSD)
    pub redirects: bool,
    /// net.inet.ip.directed-broadcast
    pub directed_broadcast: bool,
    /// net.inet.icmp.errppslimit
    pub icmp_errors_per_second: u32,
    /// net.inet.icmp.bmcastecho
    pub broadcast_echo: bool,
    pub control: PathBuf,
    pub pf: Option<PathBuf>,
    /// pcap file (DLT_PFLOG) for packets of rules with `log`.
    pub pflog: Option<PathBuf>,
    pub log: String,
    /// `user`: the daemon drops to this user once its devices are open.
    pub user: Option<String>,
    /// `control_group`: members of this group may use the control socket
    /// (root and the daemon's own user always may).
    pub control_group: Option<String>,
    /// Log lines as JSON objects (`log_format = "json"`), else text.
    pub log_json: bool,
    /// Where the Prometheus endpoint listens (`metrics = "ADDR:PORT"`).
    pub metrics: Option<std::net::SocketAddr>,
    pub interfaces: Vec<InterfaceConf>,
    /// The `[[interface]]` entry named lo0, if any: more for the loopback
    /// interface the stack always has (driver `loopback`).
    pub loopback: Option<InterfaceConf>,
    pub routes: Vec<RouteConf>,
    pub routes6: Vec<Route6Conf>,
    /// The kernel routing table mirrored into table 0 (`sync_routes`,
    /// rtsync/), if any.
    pub sync_routes: Option<u32>,
}

/// A configuration error: where and what.
#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    /// 0 when the error is about the whole file (it cannot be read).
    pub line: usize,
    pub msg: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.msg)
        } else {
            write!(f, "{} line {}: {}", self.file, self.line, self.msg)
        }
    }
}

impl std::error::Error for ConfigError {}

pub(crate) struct Ctx<'a> {
    file: String,
    src: &'a str,
}

impl Ctx<'_> {
    pub(crate) fn error(&self, span: std::ops::Range<usize>, msg: impl Into<String>) -> ConfigError {
        ConfigError { file: self.file.clone(), line: self.line_of(span.start), msg: msg.into() }
    }
    /// The line of byte `offset`; an offset inside a character (the last
    /// byte of a file ending in one, say) counts as that character's line.
    fn line_of(&self, offset: usize) -> usize {
        self.src.as_bytes()[..offset.min(self.src.len())].iter().filter(|&&b| b == b'\n').count() + 1
    }
    pub(crate) fn err<T>(&self, span: std::ops::Range<usize>, msg: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError { file: self.file.clone(), line: self.line_of(span.start), msg: msg.into() })
    }
}

/// Parses "a.b.c.d/len" (a missing length means /32).
pub fn parse_prefix(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().map_err(|_| format!("bad prefix length in {s:?}"))?),
        None => (s, 32),
    };
    let ip: Ipv4Addr = a.parse().map_err(|_| format!("bad IPv4 address {a:?}"))?;
    if l > 32 {
        return Err(format!("prefix length {l} over 32 in {s:?}"));
    }
    Ok((ip, l))
}

pub fn parse_mac(s: &str) -> Result<MacAddr, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("bad MAC address {s:?} (expected six hex bytes: 02:00:00:00:01:01)"));
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC address {s:?}"))?;
    }
    Ok(MacAddr(m))
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            msg: format!("cannot read: {}", crate::admin::strerror(&e)),
        })?;
        Self::parse(&src, path)
    }

    pub fn parse(src: &str, path: &Path) -> Result<Config, ConfigError> {
        let cx = Ctx { file: path.display().to_string(), src };
        let raw: RawConfig = toml::from_str(src).map_err(|e| {
            // An error at the end of the file (an unclosed array, say) is
            // on its last line, not on the empty one after the final newline.
            let end = src.trim_end().len();
            let line = e.span().map(|s| cx.line_of(s.start.min(end.saturating_sub(1)))).unwrap_or(0);
            let msg = e.message().trim().replace('\n', ", ");
            ConfigError { file: cx.file.clone(), line, msg }
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let workers = match &raw.workers {
            None => 1,
            Some(w) if (1..=softnet_core::percpu::MAX_WORKERS as i64 - 1).contains(w.get_ref()) => {
                *w.get_ref() as usize
            }
            Some(w) => {
                return cx.err(
                    w.span(),
                    format!("workers = {}: expected 1 to {}", w.get_ref(), softnet_core::percpu::MAX_WORKERS - 1),
                )
            }
        };
        let icmp_errors_per_second = match &raw.icmp_errors_per_second {
            None => 100,
            Some(v) if (0..=1_000_000).contains(v.get_ref()) => *v.get_ref() as u32,
            Some(v) => {
                return cx.err(v.span(), format!("icmp_errors_per_second = {}: expected 0 to 1000000", v.get_ref()))
            }
        };
        let log = match &raw.log {
            None => "info".to_string(),
            Some(l) if ["error", "warn", "info", "debug", "trace"].contains(&l.get_ref().as_str()) => {
                l.get_ref().clone()
            }
            Some(l) => {
                return cx.err(l.span(), format!("log = {:?}: expected error, warn, info, debug or trace", l.get_ref()))
            }
        };
        // Looked up in the password and group databases at start.
        let account = |v: &Option<Spanned<String>>, what: &str| -> Result<Option<String>, ConfigError> {
            match v {
                None => Ok(None),
                Some(n) if valid_account_name(n.get_ref()) => Ok(Some(n.get_ref().clone())),
                Some(n) => cx.err(n.span(), format!("{what} = {:?}: not a valid name", n.get_ref())),
            }
        };
        let user = account(&raw.user, "user")?;
        let control_group = account(&raw.control_group, "control_group")?;
        let sync_routes = match &raw.sync_routes {
            None => None,
            Some(v) => Some(
                crate::rtsync::parse_table(v.get_ref()).or_else(|e| cx.err(v.span(), format!("sync_routes: {e}")))?,
            ),
        };
        let log_json = match &raw.log_format {
            None => false,
            Some(f) if f.get_ref() == "text" => false,
            Some(f) if f.get_ref() == "json" => true,
            Some(f) => return cx.err(f.span(), format!("log_format = {:?}: expected text or json", f.get_ref())),
        };
        let metrics = match &raw.metrics {
            None => None,
            Some(m) => match m.get_ref().parse::<std::net::SocketAddr>() {
                Ok(a) if a.port() != 0 => Some(a),
                Ok(_) => return cx.err(m.span(), format!("metrics = {:?}: port 0", m.get_ref())),
                Err(_) => {
                    return cx.err(
                        m.span(),
                        format!("metrics = {:?}: expected ADDR:PORT (127.0.0.1:9100, [::1]:9100)", m.get_ref()),
                    )
                }
            },
        };
        let mut interfaces: Vec<InterfaceConf> = Vec::new();
        let mut loopback: Option<InterfaceConf> = None;
        for ri in &raw.interface {
            let i = ri.get_ref();
            let name = i.name.get_ref().clone();
            if name.is_empty() || name.len() > 15 || name.contains('/') || name.chars().any(char::is_whitespace) {
                return cx.err(
                    i.name.span(),
                    format!("interface name {name:?} is invalid (1-15 characters, no '/' or spaces)"),
                );
            }
            if interfaces.iter().chain(&loopback).any(|x| x.name == name) {
                return cx.err(i.name.span(), format!("interface {name:?} defined twice"));
            }
            let driver = match i.driver.get_ref().as_str() {
                "tap" => Driver::Tap,
                "packet" => Driver::Packet,
                "virtual" => Driver::Virtual,
                "xdp" => Driver::Xdp,
                "loopback" if name == LO0 => Driver::Loopback,
                "loopback" => {
                    return cx.err(i.driver.span(), format!("interface {name:?}: driver \"loopback\" is lo0's alone"))
                }
                other => {
                    return cx.err(
                        i.driver.span(),
                        format!("interface {name:?}: unknown driver {other:?} (expected tap, packet, xdp or virtual)"),
                    )
                }
            };
            // lo0 is the stack's own; "virtual" is taken for it too, as
            // in-memory configurations (pfctl -c) name it so.
            let driver = match (name == LO0, driver) {
                (true, Driver::Loopback | Driver::Virtual) => Driver::Loopback,
                (true, _) => {
                    return cx.err(
                        i.driver.span(),
                        "interface \"lo0\" is the loopback interface: driver = \"loopback\"".to_string(),
                    )
                }
                (false, d) => d,
            };
            if driver == Driver::Loopback && (i.device.is_some() || i.mac.is_some() || i.ra.is_some()) {
                return cx.err(ri.span(), "interface \"lo0\": a loopback interface has no device, mac or ra");
            }
            let device = i.device.as_ref().map(|d| d.get_ref().clone()).unwrap_or_else(|| name.clone());
            if let Some(other) = interfaces.iter().find(|x| x.host.as_deref() == Some(device.as_str())) {
                let span = i.device.as_ref().map(|d| d.span()).unwrap_or(i.name.span());
                return cx.err(
                    span,
                    format!("interface {name:?}: device {device:?} is the host interface of {:?}", other.name),
                );
            }
            let mac = match &i.mac {
                None => None,
                Some(m) => {
                    Some(parse_mac(m.get_ref()).or_else(|e| cx.err(m.span(), format!("interface {name:?}: {e}")))?)
                }
            };
            let mut addrs = Vec::new();
            let mut addrs6: Vec<Addr6> = Vec::new();
            for a in &i.addr {
                if a.get_ref().contains(':') {
                    let a6 = match a.get_ref().split_once('/') {
                        // ::1 belongs to a loopback interface.
                        Some(("::1", "128")) if driver == Driver::Loopback => {
                            Addr6 { addr: Ipv6Addr::LOCALHOST, prefix_len: 128 }
                        }
                        _ => parse_prefix6(a.get_ref())
                            .or_else(|e| cx.err(a.span(), format!("interface {name:?}: {e}")))?,
                    };
                    // A link-local address is unique on its link only.
                    let other = if a6.addr.is_link_local_unicast() {
                        None
                    } else {
                        interfaces.iter().find(|x| x.addrs6.iter().any(|b| b.addr == a6.addr)).map(|x| x.name.clone())
                    };
                    let other = other.or_else(|| addrs6.iter().any(|b| b.addr == a6.addr).then(|| name.clone()));
                    if let Some(other) = other {
                        return cx.err(
                            a.span(),
                            format!("interface {name:?}: address {} already configured on {other:?}", a6.addr),
                        );
                    }
                    addrs6.push(a6);
                    continue;
                }
                let (ip, len) =
                    parse_prefix(a.get_ref()).or_else(|e| cx.err(a.span(), format!("interface {name:?}: {e}")))?;
                if !a.get_ref().contains('/') {
                    return cx.err(
                        a.span(),
                        format!("interface {name:?}: address {:?} needs a prefix length (10.0.1.1/24)", a.get_ref()),
                    );
                }
                addrs.push(IfAddr::new(ip, len));
            }
            let mtu = match &i.mtu {
                None => None,
                Some(m) if (68..=9000).contains(m.get_ref()) => Some(*m.get_ref() as u32),
                Some(m) => {
                    return cx.err(m.span(), format!("interface {name:?}: mtu {} out of range 68-9000", m.get_ref()))
                }
            };
            for a in &addrs {
                let taken =
                    interfaces.iter().find(|x| x.addrs.iter().any(|b| b.addr == a.addr)).map(|x| x.name.clone());
                let taken =
                    taken.or_else(|| (addrs.iter().filter(|b| b.addr == a.addr).count() > 1).then(|| name.clone()));
                if let Some(other) = taken {
                    let span = i
                        .addr
                        .iter()
                        .find(|s| s.get_ref().starts_with(&format!("{}/", a.addr)))
                        .map(|s| s.span())
                        .unwrap_or(ri.span());
                    return cx
                        .err(span, format!("interface {name:?}: address {} already configured on {other:?}", a.addr));
                }
            }
            let mut groups: Vec<String> = Vec::new();
            for g in &i.groups {
                softnet_core::iface::check_group_name(g.get_ref())
                    .or_else(|e| cx.err(g.span(), format!("interface {name:?}: group {e}")))?;
                if !groups.contains(g.get_ref()) {
                    groups.push(g.get_ref().clone());
                }
            }
            let line = cx.line_of(ri.span().start);
            let ra = match &i.ra {
                None => None,
                Some(r) => Some(crate::config_ra::ra_conf(&cx, &name, mtu, r, ri.span())?),
            };
            let host = match &i.host {
                None => None,
                Some(h) => {
                    let hn = h.get_ref();
                    if hn.is_empty() || hn.len() > 15 || hn.contains('/') || hn.chars().any(char::is_whitespace) {
                        return cx.err(
                            h.span(),
                            format!("interface {name:?}: host interface name {hn:?} is invalid (1-15 characters, no '/' or spaces)"),
                        );
                    }
                    let clash = interfaces
                        .iter()
                        .find(|x| x.host.as_deref() == Some(hn) || x.device == *hn)
                        .map(|x| x.name.clone())
                        .or_else(|| (device == *hn).then(|| name.clone()));
                    if let Some(other) = clash {
                        return cx.err(
                            h.span(),
                            format!(
                                "interface {name:?}: host interface {hn:?} is a device of interface {other:?} already"
                            ),
                        );
                    }
                    Some(hn.clone())
                }
            };
            let xdp_generic = match &i.xdp_mode {
                None => false,
                Some(m) if driver != Driver::Xdp => {
                    return cx.err(m.span(), format!("interface {name:?}: xdp_mode is for driver \"xdp\" only"))
                }
                Some(m) => match m.get_ref().as_str() {
                    "native" => false,
                    "generic" => true,
                    other => {
                        return cx.err(
                            m.span(),
                            format!("interface {name:?}: xdp_mode = {other:?}: expected native or generic"),
                        )
                    }
                },
            };
            let rx_ring = crate::config_ring::rx_ring_conf(&cx, &name, driver, &i.rx_ring, &i.rx_ring_mib)?;
            let offload = match &i.offload {
                None => false,
                Some(o) if driver != Driver::Tap => {
                    return cx.err(o.span(), format!("interface {name:?}: offload is for driver \"tap\" only"))
                }
                Some(o) => *o.get_ref(),
            };
            let ic = InterfaceConf {
                name,
                driver,
                device,
                mac,
                addrs,
                addrs6,
                mtu,
                groups,
                ra,
                host,
                xdp_generic,
                rx_ring,
                offload,
                line,
            };
            if driver == Driver::Loopback {
                loopback = Some(ic);
            } else {
                interfaces.push(ic);
            }
        }
        let (routes, routes6) = crate::config_route::routes_conf(&cx, &raw.route, &interfaces)?;
        Ok(Config {
            path: path.to_path_buf(),
            workers,
            forwarding: raw.forwarding.unwrap_or(true),
            forwarding6: raw.forwarding6.unwrap_or(true),
            redirects: raw.redirects.unwrap_or(false),
            directed_broadcast: raw.directed_broadcast.unwrap_or(false),
            icmp_errors_per_second,
            broadcast_echo: raw.broadcast_echo.unwrap_or(false),
            control: raw.control.map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL)),
            pf: raw.pf.map(|p| base.join(p.get_ref())),
            pflog: raw.pflog.map(|p| base.join(p.get_ref())),
            log,
            user,
            control_group,
            log_json,
            metrics,
            interfaces,
            loopback,
            routes,
            routes6,
            sync_routes,
        })
    }
}

/// A user or group name as useradd(8) takes it: 1-32 of letters, digits,
/// `_`, `.`, `-`, not starting with `-`.
fn valid_account_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && !n.starts_with('-')
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use softnet_core::stack::RouteTarget6;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("softnet.toml"))
    }

    const GOOD: &str = r#"
workers = 2
control = "/tmp/sn.sock"
metrics = "127.0.0.1:9100"
log_format = "json"
redirects = true
icmp_errors_per_second = 50
log = "debug"

[[interface]]
name = "sn-r0"
driver = "tap"
mac = "02:00:00:00:01:01"
addr = ["10.0.1.1/24"]
mtu = 1500
host = "hsn0"

[[interface]]
name = "sn-r1"
driver = "packet"
device = "veth1"
addr = ["10.0.2.1/24", "10.0.3.1/24"]

[[route]]
dest = "default"
gateway = "10.0.2.254"

[[route]]
dest = "192.0.2.0/24"
blackhole = true

[[route]]
dest = "default"
gateway = "fe80::1%sn-r0"

[[route]]
dest = "2001:db8:7::9/48"
gateway = "2001:db8:1::fe"
rtable = 3

[[route]]
dest = "fe80::%sn-r1/64"
interface = "sn-r1"
"#;

    #[test]
    fn an_error_at_the_end_of_a_file_ending_in_a_multibyte_character_names_its_line() {
        // Found by the config_toml fuzz target: a panic slicing the text
        // inside 'ܬ' (fuzz/regressions/config_toml/).
        let e = parse("'\u{072c} ").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        let e = parse("workers = 1\nx = '\u{072c}").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn user_and_control_group_are_names_or_errors_with_lines() {
        let c = parse("user = \"_softnet\"\ncontrol_group = \"wheel\"\n").unwrap();
        assert_eq!((c.user.as_deref(), c.control_group.as_deref()), (Some("_softnet"), Some("wheel")));
        let c = parse("workers = 1\n").unwrap();
        assert_eq!((c.user, c.control_group), (None, None));
        let e = parse("workers = 1\nuser = \"-x\"\n").unwrap_err();
        assert_eq!(e.to_string(), "softnet.toml line 2: user = \"-x\": not a valid name");
        let e = parse("control_group = \"a b\"\n").unwrap_err();
        assert_eq!(e.to_string(), "softnet.toml line 1: control_group = \"a b\": not a valid name");
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.interfaces[0].host.as_deref(), Some("hsn0"));
        assert_eq!(c.interfaces[1].host, None);
        assert_eq!(c.workers, 2);
        assert!(c.redirects && c.forwarding && !c.directed_broadcast);
        assert_eq!(c.icmp_errors_per_second, 50);
        assert_eq!(c.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        assert!(c.log_json);
        let plain = parse("workers = 1\n").unwrap();
        assert_eq!((plain.metrics, plain.log_json), (None, false));
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(c.interfaces[0].device, "sn-r0", "device defaults to the name");
        assert_eq!(c.interfaces[1].addrs.len(), 2);
        assert_eq!(c.routes[0].prefix_len, 0);
        assert_eq!(c.routes[1].via, RouteVia::Blackhole);
        assert_eq!(c.routes.len(), 2);
        let v6: Vec<_> =
            c.routes6.iter().map(|r| (r.rtable, r.dest.to_string(), r.prefix_len, r.scope.clone())).collect();
        assert_eq!(
            v6,
            [
                (0, "::".to_string(), 0, None),
                (3, "2001:db8:7::".to_string(), 48, None),
                (0, "fe80::".to_string(), 64, Some("sn-r1".to_string()))
            ]
        );
        assert_eq!(c.routes6[0].via, RouteTarget6::Gateway("fe80::1".parse().unwrap(), Some("sn-r0".into())));
        assert_eq!(c.routes6[2].via, RouteTarget6::Interface("sn-r1".into()));
    }

    #[test]
    fn lo0_is_the_loopback_and_takes_more_addresses_only() {
        let c = parse("[[interface]]\nname = \"lo0\"\ndriver = \"loopback\"\naddr = [\"127.0.0.1/8\", \"::1/128\", \"fd00::1/128\"]\ngroups = [\"lan\"]\n").unwrap();
        assert!(c.interfaces.is_empty());
        let lo = c.loopback.unwrap();
        assert_eq!(
            (lo.driver, lo.addrs.len(), lo.addrs6.len(), lo.groups),
            (Driver::Loopback, 1, 2, vec!["lan".to_string()])
        );
        // The regress suite's in-memory configuration names it "virtual".
        assert!(parse("[[interface]]\nname = \"lo0\"\ndriver = \"virtual\"\n").unwrap().loopback.is_some());
        for (src, msg) in [
            ("[[interface]]\nname = \"lo0\"\ndriver = \"tap\"\n", "line 3: interface \"lo0\" is the loopback interface: driver = \"loopback\""),
            ("[[interface]]\nname = \"lo1\"\ndriver = \"loopback\"\n", "line 3: interface \"lo1\": driver \"loopback\" is lo0's alone"),
            ("[[interface]]\nname = \"lo0\"\ndriver = \"loopback\"\nmac = \"02:00:00:00:00:01\"\n", "a loopback interface has no device, mac or ra"),
            ("[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"::1/128\"]\n", "::1 is not a unicast address"),
            ("[[interface]]\nname = \"lo0\"\ndriver = \"loopback\"\n[[interface]]\nname = \"lo0\"\ndriver = \"loopback\"\n", "defined twice"),
        ] {
            let e = parse(src).unwrap_err().to_string();
            assert!(e.contains(msg), "{src}: {e}");
        }
    }

    #[test]
    fn unknown_driver_names_the_line() {
        let src = "workers = 1\n\n[[interface]]\nname = \"sn-r0\"\ndriver = \"tun\"\n";
        let e = parse(src).unwrap_err().to_string();
        assert_eq!(
            e,
            "softnet.toml line 5: interface \"sn-r0\": unknown driver \"tun\" (expected tap, packet, xdp or virtual)"
        );
    }

    #[test]
    fn interface_groups_are_read_and_checked() {
        let c = parse("[[interface]]\nname = \"a\"\ndriver = \"tap\"\ngroups = [\"lan\", \"dmz\", \"lan\"]\n").unwrap();
        assert_eq!(c.interfaces[0].groups, ["lan", "dmz"]);
        for (g, msg) in [("lan0", "group names may not end in a digit"), ("egress", "kept by the stack")] {
            let e = parse(&format!("[[interface]]\nname = \"a\"\ndriver = \"tap\"\ngroups = [\"{g}\"]\n")).unwrap_err();
            let e = e.to_string();
            assert!(e.contains("line 4: interface \"a\": group ") && e.contains(msg), "{e}");
        }
    }

    #[test]
    fn both_families_of_addresses_parse_and_link_local_ones_may_repeat_across_interfaces() {
        let src = "[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"10.0.1.1/24\", \"fd00:1::1/64\", \"fe80::1/64\"]\n\
                   [[interface]]\nname = \"b\"\ndriver = \"tap\"\naddr = [\"fe80::1/64\", \"2001:db8::1/48\"]\n";
        let c = parse(src).unwrap();
        assert_eq!(c.interfaces[0].addrs, vec![IfAddr::new(Ipv4Addr::new(10, 0, 1, 1), 24)]);
        let six: Vec<String> = c.interfaces[0].addrs6.iter().map(|a| a.to_string()).collect();
        assert_eq!(six, ["fd00:1::1/64", "fe80::1/64"]);
        assert_eq!(c.interfaces[1].addrs6.len(), 2);
        assert!(c.interfaces[1].addrs.is_empty());
    }

    #[test]
    fn offload_is_a_tap_key_and_a_bool() {
        let c = parse("[[interface]]\nname = \"t\"\ndriver = \"tap\"\n").unwrap();
        assert!(!c.interfaces[0].offload, "off by default");
        let c = parse("[[interface]]\nname = \"t\"\ndriver = \"tap\"\noffload = true\n").unwrap();
        assert!(c.interfaces[0].offload);
        let c = parse("[[interface]]\nname = \"t\"\ndriver = \"tap\"\noffload = false\n").unwrap();
        assert!(!c.interfaces[0].offload);
        let e = parse("[[interface]]\nname = \"t\"\ndriver = \"tap\"\noffload = \"tso\"\n").unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("bool"), "{e}");
        let e = parse("[[interface]]\nname = \"t\"\ndriver = \"tap\"\noffload = 1\n").unwrap_err().to_string();
        assert!(e.contains("line 4"), "{e}");
        let e = parse("[[interface]]\nname = \"p\"\ndriver = \"packet\"\noffload = true\n").unwrap_err().to_string();
        assert!(e.contains("line 4: interface \"p\": offload is for driver \"tap\" only"), "{e}");
    }

    #[test]
    fn xdp_is_accepted() {
        let c = parse("[[interface]]\nname = \"x\"\ndriver = \"xdp\"\ndevice = \"veth0\"\n").unwrap();
        assert_eq!(c.interfaces[0].driver, Driver::Xdp);
        assert_eq!(c.interfaces[0].driver.name(), "xdp");
        assert_eq!(c.interfaces[0].device, "veth0");
        assert!(!c.interfaces[0].xdp_generic, "native (with its fallback) by default");
        let c = parse("[[interface]]\nname = \"x\"\ndriver = \"xdp\"\nxdp_mode = \"generic\"\n").unwrap();
        assert!(c.interfaces[0].xdp_generic);
        let c = parse("[[interface]]\nname = \"x\"\ndriver = \"xdp\"\nxdp_mode = \"native\"\n").unwrap();
        assert!(!c.interfaces[0].xdp_generic);
        let e = parse("[[interface]]\nname = \"x\"\ndriver = \"xdp\"\nxdp_mode = \"skb\"\n").unwrap_err().to_string();
        assert!(e.contains("line 4: interface \"x\": xdp_mode = \"skb\": expected native or generic"), "{e}");
        let e = parse("[[interface]]\nname = \"p\"\ndriver = \"packet\"\nxdp_mode = \"generic\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4: interface \"p\": xdp_mode is for driver \"xdp\" only"), "{e}");
    }

    #[test]
    fn bad_values_are_errors_with_lines() {
        let cases = [
            ("workers = 0\n", "line 1: workers = 0"),
            ("bogus = 1\n", "line 1: unknown field `bogus`"),
            ("[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"10.0.0.300/24\"]\n", "line 4: interface \"a\": bad IPv4 address"),
            ("[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"10.0.0.1\"]\n", "needs a prefix length"),
            ("[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"fd00::1\"]\n", "line 4: interface \"a\": address \"fd00::1\" needs a prefix length (fd00:1::1/64)"),
            ("[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"fd00::g/64\"]\n", "line 4: interface \"a\": bad IPv6 address \"fd00::g\""),
            ("[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"fd00::1/129\"]\n", "prefix length 129 not 1 to 128"),
            ("[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"fd00::1/0\"]\n", "prefix length 0 not 1 to 128"),
            ("[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"ff02::1/64\"]\n", "ff02::1 is not a unicast address"),
            ("[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"fe80::1/48\"]\n", "link-local address fe80::1 needs prefix length 64"),
            (
                "[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"fd00:1::1/64\"]\n[[interface]]\nname = \"b\"\ndriver = \"tap\"\naddr = [\"10.0.2.1/24\", \"fd00:1::1/48\"]\n",
                "line 8: interface \"b\": address fd00:1::1 already configured on \"a\"",
            ),
            (
                "[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"fe80::1/64\", \"fe80::1/64\"]\n",
                "line 4: interface \"a\": address fe80::1 already configured on \"a\"",
            ),
            ("[[interface]]\nname = \"a\"\ndriver = \"tap\"\nmac = \"zz\"\n", "line 4: interface \"a\": bad MAC"),
            ("[[interface]]\nname = \"a\"\ndriver = \"tap\"\nhost = \"h/0\"\n", "line 4: interface \"a\": host interface name \"h/0\" is invalid"),
            ("[[interface]]\nname = \"a\"\ndriver = \"tap\"\nhost = \"a\"\n", "line 4: interface \"a\": host interface \"a\" is a device of interface \"a\" already"),
            (
                "[[interface]]\nname = \"a\"\ndriver = \"tap\"\nhost = \"ha\"\n[[interface]]\nname = \"b\"\ndriver = \"tap\"\nhost = \"ha\"\n",
                "line 8: interface \"b\": host interface \"ha\" is a device of interface \"a\" already",
            ),
            (
                "[[interface]]\nname = \"a\"\ndriver = \"tap\"\nhost = \"hb\"\n[[interface]]\nname = \"b\"\ndriver = \"tap\"\ndevice = \"hb\"\n",
                "line 8: interface \"b\": device \"hb\" is the host interface of \"a\"",
            ),
            ("[[route]]\ndest = \"10.0.0.0/33\"\ngateway = \"1.2.3.4\"\n", "line 2: route: prefix length 33"),
            ("[[route]]\ndest = \"default\"\n", "exactly one of"),
            ("[[route]]\ndest = \"2001:db8::/129\"\nreject = true\n", "line 2: route: prefix length \"129\" over 128"),
            ("[[route]]\ndest = \"::/0\"\ngateway = \"fe80::1\"\n", "line 3: route: link-local gateway fe80::1 needs its interface"),
            ("[[route]]\ndest = \"::/0\"\ngateway = \"fe80::1%nope\"\n", "unknown interface \"nope\""),
            ("[[route]]\ndest = \"2001:db8::/32\"\ngateway = \"10.0.0.1\"\n", "bad gateway \"10.0.0.1\""),
            (
                "[[route]]\ndest = \"2001:db8::/32\"\nreject = true\n[[route]]\ndest = \"2001:db8::/32\"\nblackhole = true\n",
                "line 5: route: 2001:db8::/32 defined twice",
            ),
            ("workers = [\n", "line 1"),
            ("metrics = \"localhost\"\n", "line 1: metrics = \"localhost\": expected ADDR:PORT"),
            ("metrics = \"10.0.0.1:0\"\n", "line 1: metrics = \"10.0.0.1:0\": port 0"),
            ("\nlog_format = \"xml\"\n", "line 2: log_format = \"xml\": expected text or json"),
            (
                "[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"10.0.1.1/24\"]\n[[interface]]\nname = \"b\"\ndriver = \"tap\"\naddr = [\"10.0.1.1/16\"]\n",
                "line 8: interface \"b\": address 10.0.1.1 already configured on \"a\"",
            ),
            (
                "[[interface]]\nname = \"a\"\ndriver = \"tap\"\naddr = [\"10.0.1.1/24\"]\n[[route]]\ndest = \"default\"\ngateway = \"10.0.2.254\"\n",
                "line 7: route: gateway 10.0.2.254 is not on a network of any interface",
            ),
            (
                "[[route]]\ndest = \"10.0.0.0/8\"\nreject = true\n[[route]]\ndest = \"10.1.0.0/8\"\nblackhole = true\n",
                "line 5: route: 10.1.0.0/8 defined twice",
            ),
        ];
        for (src, want) in cases {
            let e = parse(src).unwrap_err().to_string();
            assert!(e.contains(want), "{src:?}: got {e:?}, want {want:?}");
        }
    }
}
