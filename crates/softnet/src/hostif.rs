//! Host interfaces in the daemon (`host = "NAME"` on an `[[interface]]`,
//! softnet_core::hostif for the data path): the TAP twin is created with
//! the interface (softnet_io::hostif) and kept a mirror of it once a tick:
//! its carrier follows the interface's state (up and not without carrier),
//! its MTU the interface's, its addresses the interface's IPv4 addresses
//! and usable IPv6 addresses (through rtnetlink, without DAD: the stack
//! ran it), and the groups the host joined on it (/proc/net/igmp and
//! igmp6, what routing daemons' sockets joined) go to the stack, which
//! punts what is sent to them.

use crate::config::InterfaceConf;
use anyhow::{anyhow, Context};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use softnet_core::iface::IfAddr;
use softnet_core::link::{LinkQueue, LinkState};
use softnet_core::stack::Stack;
use softnet_io::TapCarrier;
use softnet_wire::ethernet::MacAddr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One twin as the daemon keeps it.
pub struct Twin {
    ifname: String,
    host: String,
    /// The twin's index in the host's namespace.
    index: u32,
    carrier: TapCarrier,
    carrier_on: Option<bool>,
    mtu: u32,
    /// Addresses given to the twin so far.
    v4: Vec<IfAddr>,
    v6: Vec<(Ipv6Addr, u8)>,
}

/// Creates the twin of interface `ic` (which the stack has just created
/// with `mac` and `mtu`) and attaches it, one queue per worker.
fn open(stack: &Stack, ic: &InterfaceConf, host: &str, mac: MacAddr, mtu: u32, workers: usize) -> anyhow::Result<Twin> {
    let ctx = |e: softnet_io::IoError| anyhow!("interface {:?}: host interface: {e}", ic.name);
    let tap = softnet_io::open_host_tap(host, workers.max(1), mac.0, mtu).map_err(ctx)?;
    let index = softnet_io::ifindex(host).map_err(ctx)?;
    let queues: Vec<Box<dyn LinkQueue>> = tap.queues.into_iter().map(|q| Box::new(q) as Box<dyn LinkQueue>).collect();
    stack.attach_host(&ic.name, host, queues).map_err(|e| anyhow!("{e}"))?;
    Ok(Twin {
        ifname: ic.name.clone(),
        host: host.to_string(),
        index,
        carrier: tap.carrier,
        carrier_on: Some(false),
        mtu,
        v4: Vec::new(),
        v6: Vec::new(),
    })
}

/// All twins of the daemon and the netlink socket that addresses them.
#[derive(Default)]
pub struct HostTwins {
    twins: Vec<Twin>,
    nl: Option<Netlink>,
}

impl HostTwins {
    pub fn add(&mut self, t: Twin) {
        self.twins.push(t);
    }

    /// Brings every twin in line with its interface; forgets (and so
    /// removes) the twins of interfaces that are gone.
    pub fn sync(&mut self, stack: &Stack) {
        let ifs = stack.ifaces.load();
        self.twins.retain(|t| ifs.by_name(&t.ifname).and_then(|i| i.host()).is_some_and(|h| h.name() == t.host));
        if self.twins.is_empty() {
            return;
        }
        let groups = read_groups();
        for t in &mut self.twins {
            let Some(ifp) = ifs.by_name(&t.ifname) else { continue };
            let on = ifp.is_up() && ifp.link_state() != LinkState::Down;
            if t.carrier_on != Some(on) {
                match t.carrier.set(on) {
                    Ok(()) => t.carrier_on = Some(on),
                    Err(e) => tracing::warn!("{}: {e}", t.host),
                }
            }
            if ifp.mtu() != t.mtu {
                match softnet_io::ifinfo::set_mtu(&t.host, ifp.mtu()) {
                    Ok(()) => t.mtu = ifp.mtu(),
                    Err(e) => tracing::warn!("{}: {e}", t.host),
                }
            }
            let want4: Vec<IfAddr> = ifp.addrs().iter().copied().collect();
            let want6: Vec<(Ipv6Addr, u8)> =
                ifp.inet6().addrs.iter().filter(|a| a.is_usable()).map(|a| (a.addr, a.prefix_len)).collect();
            if want4 != t.v4 || want6 != t.v6 {
                if self.nl.is_none() {
                    match Netlink::open() {
                        Ok(n) => self.nl = Some(n),
                        Err(e) => {
                            tracing::warn!("{}: cannot open rtnetlink: {e}", t.host);
                            continue;
                        }
                    }
                }
                let nl = self.nl.as_mut().expect("opened above");
                mirror_addresses(nl, t, &want4, &want6);
            }
            let (g4, g6) = groups.get(&t.host).cloned().unwrap_or_default();
            if ifp.host().is_some_and(|h| h.set_groups(g4.clone(), g6.clone())) {
                tracing::info!("{}: host joined {} IPv4 and {} IPv6 group(s)", t.host, g4.len(), g6.len());
            }
        }
    }
}

/// Adds and removes the twin's addresses so that they are `want4` and
/// `want6` (failures logged: the next tick tries again).
fn mirror_addresses(nl: &mut Netlink, t: &mut Twin, want4: &[IfAddr], want6: &[(Ipv6Addr, u8)]) {
    let mut ok = true;
    for a in t.v4.iter().filter(|a| !want4.contains(a)) {
        ok &= nl
            .address(false, t.index, IpAddr::V4(a.addr), a.prefix_len, a.broadcast())
            .map_err(|e| log(t, "delete", a, e))
            .is_ok();
    }
    for a in want4.iter().filter(|a| !t.v4.contains(a)) {
        ok &= nl
            .address(true, t.index, IpAddr::V4(a.addr), a.prefix_len, a.broadcast())
            .map_err(|e| log(t, "add", a, e))
            .is_ok();
    }
    for (a, l) in t.v6.iter().filter(|a| !want6.contains(a)) {
        ok &= nl.address(false, t.index, IpAddr::V6(*a), *l, None).map_err(|e| log(t, "delete", a, e)).is_ok();
    }
    for (a, l) in want6.iter().filter(|a| !t.v6.contains(a)) {
        ok &= nl.address(true, t.index, IpAddr::V6(*a), *l, None).map_err(|e| log(t, "add", a, e)).is_ok();
    }
    if ok {
        tracing::info!("{}: addresses of {} mirrored ({} IPv4, {} IPv6)", t.host, t.ifname, want4.len(), want6.len());
    }
    t.v4 = want4.to_vec();
    t.v6 = want6.to_vec();
}

fn log(t: &Twin, what: &str, a: &dyn std::fmt::Display, e: std::io::Error) {
    tracing::warn!("{}: cannot {what} address {a}: {e}", t.host);
}

/// A blocking rtnetlink socket for address changes.
struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    fn open() -> std::io::Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { sock, seq: 0, buf: vec![0; 8192] })
    }

    /// RTM_NEWADDR / RTM_DELADDR for `ip`/`len` on device `index`; IPv6
    /// ones with IFA_F_NODAD. An address already there (add) or already
    /// gone (delete) is not an error.
    fn address(&mut self, add: bool, index: u32, ip: IpAddr, len: u8, brd: Option<Ipv4Addr>) -> std::io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.prefix_len = len;
        m.header.index = index;
        match ip {
            IpAddr::V4(a) => {
                m.header.family = AddressFamily::Inet;
                m.header.scope = AddressScope::Universe;
                m.attributes.push(AddressAttribute::Local(ip));
                m.attributes.push(AddressAttribute::Address(ip));
                if let Some(b) = brd.filter(|_| add) {
                    m.attributes.push(AddressAttribute::Broadcast(b));
                }
                let _ = a;
            }
            IpAddr::V6(a) => {
                m.header.family = AddressFamily::Inet6;
                m.header.scope = if a.is_unicast_link_local() { AddressScope::Link } else { AddressScope::Universe };
                m.attributes.push(AddressAttribute::Address(ip));
                if add {
                    m.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
                }
            }
        }
        let mut hdr = NetlinkHeader::default();
        self.seq = self.seq.wrapping_add(1);
        hdr.sequence_number = self.seq;
        hdr.flags = NLM_F_REQUEST | NLM_F_ACK | if add { NLM_F_CREATE | NLM_F_REPLACE } else { 0 };
        let payload = if add { RouteNetlinkMessage::NewAddress(m) } else { RouteNetlinkMessage::DelAddress(m) };
        let mut msg = NetlinkMessage::new(hdr, NetlinkPayload::from(payload));
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        self.sock.send(&out, 0)?;
        // The answer to this request (other messages are skipped).
        for _ in 0..16 {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let Ok(r) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n]) else { break };
                let len = r.header.length as usize;
                if r.header.sequence_number == self.seq {
                    if let NetlinkPayload::Error(e) = r.payload {
                        let code = e.raw_code();
                        if code == 0 || (add && code == -libc::EEXIST) || (!add && code == -libc::EADDRNOTAVAIL) {
                            return Ok(());
                        }
                        return Err(std::io::Error::from_raw_os_error(-code));
                    }
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
        Err(std::io::Error::other("no answer from rtnetlink"))
    }
}

type Groups = std::collections::HashMap<String, (Vec<Ipv4Addr>, Vec<Ipv6Addr>)>;

/// The multicast groups every device of this namespace joined, from
/// /proc/net/igmp and /proc/net/igmp6 (empty if they cannot be read).
fn read_groups() -> Groups {
    let mut g = Groups::new();
    if let Ok(s) = std::fs::read_to_string("/proc/net/igmp") {
        for (dev, a) in parse_igmp(&s) {
            g.entry(dev).or_default().0.push(a);
        }
    }
    if let Ok(s) = std::fs::read_to_string("/proc/net/igmp6") {
        for (dev, a) in parse_igmp6(&s) {
            g.entry(dev).or_default().1.push(a);
        }
    }
    g
}

/// /proc/net/igmp: a device line (`IDX\tDEV : COUNT QUERIER`) followed by
/// its groups (`\t\t\tHEX USERS TIMER REPORTER`), the group the address's
/// bytes as a native-endian word in hex.
fn parse_igmp(s: &str) -> Vec<(String, Ipv4Addr)> {
    let mut out = Vec::new();
    let mut dev: Option<String> = None;
    for line in s.lines().skip(1) {
        if !line.starts_with('\t') {
            dev = line.split_whitespace().nth(1).map(|d| d.trim_end_matches(':').to_string());
            continue;
        }
        let (Some(d), Some(hex)) = (&dev, line.split_whitespace().next()) else { continue };
        if let Ok(v) = u32::from_str_radix(hex, 16) {
            out.push((d.clone(), Ipv4Addr::from(v.to_ne_bytes())));
        }
    }
    out
}

/// /proc/net/igmp6: `IDX DEV GROUP(32 hex) USERS FLAGS TIMER` per line.
fn parse_igmp6(s: &str) -> Vec<(String, Ipv6Addr)> {
    let mut out = Vec::new();
    for line in s.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f[2].len() != 32 {
            continue;
        }
        if let Ok(v) = u128::from_str_radix(f[2], 16) {
            out.push((f[1].to_string(), Ipv6Addr::from(v)));
        }
    }
    out
}

/// The daemon's handle for opening twins (`Daemon::create_interface`).
pub fn open_for(
    stack: &Stack,
    ic: &InterfaceConf,
    mac: MacAddr,
    mtu: u32,
    workers: usize,
) -> anyhow::Result<Option<Twin>> {
    match &ic.host {
        None => Ok(None),
        Some(h) => open(stack, ic, h, mac, mtu, workers).with_context(|| format!("interface {:?}", ic.name)).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn igmp_membership_is_read_per_device() {
        let s = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
                 1\tlo        :     1      V3\n\
                 \t\t\t\t010000E0     1 0:00000000\t\t0\n\
                 7\thr0       :     2      V3\n\
                 \t\t\t\t050000E0     1 0:00000000\t\t1\n\
                 \t\t\t\t010000E0     1 0:00000000\t\t0\n";
        let g = parse_igmp(s);
        let host_order = cfg!(target_endian = "little");
        assert!(host_order, "the test's words are little-endian");
        assert_eq!(
            g,
            vec![
                ("lo".to_string(), Ipv4Addr::new(224, 0, 0, 1)),
                ("hr0".to_string(), Ipv4Addr::new(224, 0, 0, 5)),
                ("hr0".to_string(), Ipv4Addr::new(224, 0, 0, 1)),
            ]
        );
    }

    #[test]
    fn igmp6_membership_is_read_per_device() {
        let s = "1    lo              ff020000000000000000000000000001     1 0000000C 0\n\
                 7    hr0             ff020000000000000000000000000005     1 00000004 0\n\
                 bad line\n";
        assert_eq!(
            parse_igmp6(s),
            vec![("lo".to_string(), "ff02::1".parse().unwrap()), ("hr0".to_string(), "ff02::5".parse().unwrap())]
        );
    }
}
