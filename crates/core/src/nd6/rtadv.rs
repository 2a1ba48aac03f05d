//! Router advertisements, the router side of RFC 4861 §6.2 (the model is
//! OpenBSD's rad(8): its rad.conf(5) settings, its prefix discovery from
//! the interface's addresses, its leaving packet), as data and timers
//! without packet I/O. The stack's timer runs [`Advertiser::timer`] and
//! sends what it returns from the control thread.
//!
//! * Unsolicited advertisements go to all-nodes at intervals drawn
//!   uniformly from [MinRtrAdvInterval, MaxRtrAdvInterval] (§6.2.4); the
//!   first MAX_INITIAL_RTR_ADVERTISEMENTS of an interface that becomes an
//!   advertising one (or whose advertisement changes) are at most
//!   MAX_INITIAL_RTR_ADVERT_INTERVAL apart. rad sends its first one within
//!   a second of starting; so do we.
//! * A router solicitation (§6.2.6) is answered after a random delay of
//!   up to MAX_RA_DELAY_TIME. As rad does (and RFC 7772 recommends), the
//!   answer goes unicast to a soliciting host that gave its link-layer
//!   address, else to all-nodes; multicast advertisements are at least
//!   MIN_DELAY_BETWEEN_RAS apart, and a multicast answer due after the
//!   next unsolicited one is that one. Unicast answers pending on one
//!   interface are bounded ([`MAX_PENDING_UNICAST`]): a solicitation flood
//!   costs a bounded number of advertisements per delay window.
//! * An interface that stops advertising (its `ra` configuration removed,
//!   or the interface destroyed) sends a final advertisement with router
//!   lifetime 0 (§6.2.5; rad's build_leaving_packet: no prefixes).
//! * Nothing is sent before the interface's link-local address has passed
//!   DAD (§6.2.8: the source is that address); the owner says which
//!   interfaces are ready.

use crate::iface::{Dad6State, If6Addr, IfIndex};
use crate::rng::WorkerRng;
use crate::time::Instant;
use softnet_wire::ethernet::MacAddr;
use softnet_wire::ipv6::Ipv6AddrExt;
use softnet_wire::ndp::{NdpOption, NdpRepr, PrefixInfo, RouterPreference};
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

/// RFC 4861 §10 router constants.
pub const MAX_INITIAL_RTR_ADVERT_INTERVAL: Duration = Duration::from_secs(16);
pub const MAX_INITIAL_RTR_ADVERTISEMENTS: u32 = 3;
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
pub const MAX_RA_DELAY_TIME: Duration = Duration::from_millis(500);
/// Unicast answers waiting on one interface; more solicitations in the
/// same window get the multicast answer instead.
pub const MAX_PENDING_UNICAST: usize = 8;
/// rad.h's MAX_RTR_ADV_INTERVAL and MIN_RTR_ADV_INTERVAL.
pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(600);
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(200);
/// Largest router advertisement built (IPv6 payload): the IPv6 minimum
/// MTU, so it is never too big for a link.
pub const MAX_RA_LEN: usize = 1280 - 40;

/// A prefix's options (rad.conf's `prefix { … }`), with rad.conf(5)'s
/// defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixConf {
    /// Seconds (vltime); 0xffffffff: infinite.
    pub valid_lifetime: u32,
    /// Seconds (pltime); not above the valid lifetime.
    pub preferred_lifetime: u32,
    /// L flag.
    pub on_link: bool,
    /// A flag: hosts may form addresses from it (SLAAC).
    pub autonomous: bool,
}

impl Default for PrefixConf {
    fn default() -> Self {
        PrefixConf { valid_lifetime: 5400, preferred_lifetime: 2700, on_link: true, autonomous: true }
    }
}

/// One prefix an interface advertises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaPrefix {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    pub conf: PrefixConf,
}

/// DNS options (RFC 8106; rad.conf's `dns { … }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConf {
    /// Seconds.
    pub lifetime: u32,
    pub nameservers: Vec<Ipv6Addr>,
    /// Search domains, dotted ("example.org").
    pub search: Vec<String>,
}

impl Default for DnsConf {
    fn default() -> Self {
        DnsConf { lifetime: 1800, nameservers: Vec::new(), search: Vec::new() }
    }
}

/// What one interface advertises (rad.conf's `interface` block), with
/// rad.conf(5)'s defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaConfig {
    /// `default router yes|no`: no sends router lifetime 0.
    pub default_router: bool,
    /// Seconds (AdvDefaultLifetime): 0, or MaxRtrAdvInterval to 9000.
    pub router_lifetime: u16,
    pub preference: RouterPreference,
    /// Cur hop limit for hosts; 0: unspecified.
    pub hop_limit: u8,
    /// M flag (`managed address configuration`).
    pub managed: bool,
    /// O flag (`other configuration`).
    pub other: bool,
    /// Milliseconds; 0: unspecified.
    pub reachable_time: u32,
    /// Milliseconds; 0: unspecified.
    pub retrans_timer: u32,
    /// The MTU option's value; 0: no MTU option.
    pub mtu: u32,
    /// Whether the source link-layer address option is sent.
    pub source_lladdr: bool,
    /// MinRtrAdvInterval and MaxRtrAdvInterval (rad: 200 and 600 s, not
    /// settable there).
    pub min_interval: Duration,
    pub max_interval: Duration,
    /// Prefixes from the interface's addresses with these options (rad's
    /// `auto prefix`); `None`: `no auto prefix`.
    pub auto_prefix: Option<PrefixConf>,
    /// Prefixes named in the configuration.
    pub prefixes: Vec<RaPrefix>,
    pub dns: DnsConf,
}

impl Default for RaConfig {
    fn default() -> Self {
        RaConfig {
            default_router: true,
            router_lifetime: 1800,
            preference: RouterPreference::Medium,
            hop_limit: 0,
            managed: false,
            other: false,
            reachable_time: 0,
            retrans_timer: 0,
            mtu: 0,
            source_lladdr: true,
            min_interval: DEFAULT_MIN_INTERVAL,
            max_interval: DEFAULT_MAX_INTERVAL,
            auto_prefix: Some(PrefixConf::default()),
            prefixes: Vec::new(),
            dns: DnsConf::default(),
        }
    }
}

/// RFC 1035 name encoding of search domains, zero padded to 8 bytes
/// (RFC 8106 §5.2). `None` when a label is empty or over 63 bytes or a
/// name over 255.
pub fn encode_search(domains: &[String]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for d in domains {
        let d = d.strip_suffix('.').unwrap_or(d);
        if d.is_empty() || d.len() > 253 {
            return None;
        }
        for label in d.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
    }
    out.resize(out.len().div_ceil(8) * 8, 0);
    Some(out)
}

impl RaConfig {
    /// RFC 4861 §6.2.1's ranges and what makes an advertisement hosts
    /// ignore; the message says what is wrong in rad.conf's words.
    pub fn check(&self) -> Result<(), String> {
        let max = self.max_interval.as_secs();
        let min = self.min_interval.as_secs();
        if !(4..=1800).contains(&max) || self.max_interval.subsec_nanos() != 0 {
            return Err(format!("max interval {max} out of range 4-1800 seconds"));
        }
        if min < 3 || min * 4 > max * 3 || self.min_interval.subsec_nanos() != 0 {
            return Err(format!("min interval {min} out of range 3-{} seconds (0.75 x max interval)", max * 3 / 4));
        }
        let lt = self.router_lifetime as u64;
        if lt != 0 && !(max..=9000).contains(&lt) {
            return Err(format!("router lifetime {lt} out of range: 0 or {max}-9000 seconds (max interval to 9000)"));
        }
        if self.reachable_time > 3_600_000 {
            return Err(format!("reachable time {} over 3600000 milliseconds", self.reachable_time));
        }
        if self.mtu != 0 && self.mtu < 1280 {
            return Err(format!("mtu {} below the IPv6 minimum 1280", self.mtu));
        }
        let prefixes = self.auto_prefix.iter().chain(self.prefixes.iter().map(|p| &p.conf));
        for p in prefixes {
            if p.preferred_lifetime > p.valid_lifetime {
                return Err(format!(
                    "preferred lifetime {} above valid lifetime {}",
                    p.preferred_lifetime, p.valid_lifetime
                ));
            }
        }
        for p in &self.prefixes {
            if p.prefix_len > 128 || p.prefix.is_multicast() || p.prefix.is_link_local_unicast() {
                return Err(format!("prefix {}/{} is not a unicast prefix", p.prefix, p.prefix_len));
            }
        }
        if encode_search(&self.dns.search).is_none() {
            return Err("dns search: a domain has an empty label or one over 63 bytes".into());
        }
        // The largest advertisement: header, source link-layer address,
        // MTU, every configured prefix, DNS; auto prefixes are bounded
        // when the message is built.
        let len = 16 + 8 + 8 + 32 * self.prefixes.len() + self.dns_len();
        if len > MAX_RA_LEN {
            return Err(format!("advertisement of {len} bytes over {MAX_RA_LEN}: fewer prefixes or DNS entries"));
        }
        Ok(())
    }

    fn dns_len(&self) -> usize {
        let rdnss = if self.dns.nameservers.is_empty() { 0 } else { 8 + 16 * self.dns.nameservers.len() };
        let dnssl = match encode_search(&self.dns.search) {
            Some(v) if !v.is_empty() => 8 + v.len(),
            _ => 0,
        };
        rdnss + dnssl
    }

    /// The prefixes advertised on an interface with `addrs`: the
    /// configured ones, then (rad's get_interface_prefixes) the prefix of
    /// every address that is not link-local, not a /128 and not a
    /// duplicate, each once.
    pub fn advertised_prefixes(&self, addrs: &[If6Addr]) -> Vec<RaPrefix> {
        let mut out: Vec<RaPrefix> = self.prefixes.clone();
        if let Some(conf) = self.auto_prefix {
            for a in addrs {
                if a.is_link_local() || a.prefix_len >= 128 || a.state == Dad6State::Duplicated {
                    continue;
                }
                let prefix = a.network();
                if out.iter().any(|p| p.prefix == prefix && p.prefix_len == a.prefix_len) {
                    continue;
                }
                out.push(RaPrefix { prefix, prefix_len: a.prefix_len, conf });
            }
        }
        out
    }

    /// Writes the advertisement's options into `buf` (cleared first):
    /// source link-layer address, MTU, prefixes, RDNSS, DNSSL, as rad
    /// orders them. Prefixes that would make it longer than
    /// [`MAX_RA_LEN`] are left out (and logged).
    pub fn build_options(&self, mac: MacAddr, prefixes: &[RaPrefix], buf: &mut Vec<u8>) {
        buf.clear();
        let push = |o: NdpOption<'_>, buf: &mut Vec<u8>| {
            let at = buf.len();
            buf.resize(at + o.buffer_len(), 0);
            o.emit(&mut buf[at..]);
        };
        if self.source_lladdr {
            push(NdpOption::SourceLinkAddr(mac), buf);
        }
        if self.mtu != 0 {
            push(NdpOption::Mtu(self.mtu), buf);
        }
        let room = MAX_RA_LEN - 16 - self.dns_len();
        for p in prefixes {
            if buf.len() + 32 > room {
                tracing::warn!("router advertisement full: prefix {}/{} left out", p.prefix, p.prefix_len);
                continue;
            }
            push(
                NdpOption::PrefixInfo(PrefixInfo {
                    prefix_len: p.prefix_len,
                    on_link: p.conf.on_link,
                    autonomous: p.conf.autonomous,
                    valid_lifetime: p.conf.valid_lifetime,
                    preferred_lifetime: p.conf.preferred_lifetime,
                    prefix: p.prefix.mask(p.prefix_len),
                }),
                buf,
            );
        }
        if !self.dns.nameservers.is_empty() {
            let servers: Vec<u8> = self.dns.nameservers.iter().flat_map(|a| a.octets()).collect();
            push(NdpOption::Rdnss { lifetime: self.dns.lifetime, servers: &servers }, buf);
        }
        if let Some(domains) = encode_search(&self.dns.search).filter(|d| !d.is_empty()) {
            push(NdpOption::Dnssl { lifetime: self.dns.lifetime, domains: &domains }, buf);
        }
    }

    /// The advertisement's header fields around `options`; `leaving`: the
    /// final one (§6.2.5), router lifetime 0 and nothing else set, as
    /// rad's build_leaving_packet.
    pub fn repr<'a>(&self, leaving: bool, options: &'a [u8]) -> NdpRepr<'a> {
        if leaving {
            return NdpRepr::RouterAdvert {
                hop_limit: 0,
                managed: false,
                other: false,
                preference: RouterPreference::Medium,
                router_lifetime: 0,
                reachable_time: 0,
                retrans_timer: 0,
                options,
            };
        }
        NdpRepr::RouterAdvert {
            hop_limit: self.hop_limit,
            managed: self.managed,
            other: self.other,
            // RFC 4191 §2.2: the preference is medium when the lifetime is 0.
            preference: if self.default_router { self.preference } else { RouterPreference::Medium },
            router_lifetime: if self.default_router { self.router_lifetime } else { 0 },
            reachable_time: self.reachable_time,
            retrans_timer: self.retrans_timer,
            options,
        }
    }
}

/// A router solicitation heard by the data path (nd6's input dispatch),
/// queued for the control thread.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RsHeard {
    pub ifindex: IfIndex,
    /// The soliciting host; :: for one without an address yet.
    pub src: Ipv6Addr,
    /// Its source link-layer address option.
    pub slla: Option<MacAddr>,
}

/// Where an advertisement goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RaDest {
    /// ff02::1 at 33:33:00:00:00:01.
    AllNodes,
    /// A soliciting host at the MAC it gave.
    Unicast(Ipv6Addr, MacAddr),
}

/// An advertisement the owner must send now on `ifindex`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaSend {
    pub ifindex: IfIndex,
    pub dest: RaDest,
    /// The interface's configuration (for a final one: the last it had).
    pub config: Arc<RaConfig>,
    /// The final advertisement (router lifetime 0).
    pub leaving: bool,
}

#[derive(Debug)]
struct AdvIface {
    ifindex: IfIndex,
    config: Arc<RaConfig>,
    up: bool,
    /// Initial advertisements still to send at the short interval.
    initial_left: u32,
    /// When the next multicast advertisement goes (unsolicited, or a
    /// multicast answer moved forward).
    next_multicast: Instant,
    /// Unicast answers due: (when, host, MAC).
    unicast: Vec<(Instant, Ipv6Addr, MacAddr)>,
    last_multicast: Option<Instant>,
    /// Advertisements sent and solicitations heard, for the status view.
    sent: u64,
    solicited: u64,
}

/// What `softnet rad` shows of one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvStatus {
    pub ifindex: IfIndex,
    pub config: Arc<RaConfig>,
    pub up: bool,
    pub sent: u64,
    pub solicited: u64,
    pub next: Option<Instant>,
}

/// The advertising interfaces (see the module docs).
#[derive(Debug, Default)]
pub struct Advertiser {
    ifaces: Vec<AdvIface>,
}

fn jitter(rng: &mut WorkerRng, max: Duration) -> Duration {
    let ms = max.as_millis().min(u32::MAX as u128) as u32;
    Duration::from_millis(rng.uniform(ms.saturating_add(1)) as u64)
}

impl AdvIface {
    /// §6.2.4: the next unsolicited advertisement after one sent at `now`.
    fn reschedule(&mut self, now: Instant, rng: &mut WorkerRng) {
        let (min, max) = (self.config.min_interval, self.config.max_interval);
        let span = (max - min).as_millis().min(u32::MAX as u128) as u32;
        let mut d = min + Duration::from_millis(rng.uniform(span.saturating_add(1)) as u64);
        if self.initial_left > 0 {
            self.initial_left -= 1;
            d = d.min(MAX_INITIAL_RTR_ADVERT_INTERVAL);
        }
        self.next_multicast = now + d;
    }

    /// Becomes an advertising interface (again): the initial
    /// advertisements, the first within a second (rad's update_iface).
    fn start(&mut self, now: Instant, rng: &mut WorkerRng) {
        self.initial_left = MAX_INITIAL_RTR_ADVERTISEMENTS;
        self.next_multicast = now + jitter(rng, Duration::from_secs(1));
        self.unicast.clear();
    }
}

impl Advertiser {
    pub fn new() -> Self {
        Advertiser::default()
    }

    fn find(&mut self, ifindex: IfIndex) -> Option<&mut AdvIface> {
        self.ifaces.iter_mut().find(|i| i.ifindex == ifindex)
    }

    /// The configuration `ifindex` advertises with.
    pub fn config(&self, ifindex: IfIndex) -> Option<Arc<RaConfig>> {
        self.ifaces.iter().find(|i| i.ifindex == ifindex).map(|i| i.config.clone())
    }

    /// Sets (or with `None` removes) the advertisement configuration of
    /// `ifindex`, whose interface is `up`. A new or changed one starts
    /// the initial advertisements again (§6.2.4); a removed one returns
    /// its final advertisement (§6.2.5) if the interface is up.
    pub fn configure(
        &mut self,
        now: Instant,
        ifindex: IfIndex,
        config: Option<RaConfig>,
        up: bool,
        rng: &mut WorkerRng,
    ) -> Option<RaSend> {
        let Some(config) = config else {
            return self.remove(ifindex);
        };
        if let Some(i) = self.find(ifindex) {
            if *i.config == config {
                return None;
            }
            i.config = Arc::new(config);
            i.up = up;
            i.start(now, rng);
            return None;
        }
        let mut i = AdvIface {
            ifindex,
            config: Arc::new(config),
            up,
            initial_left: 0,
            next_multicast: now,
            unicast: Vec::new(),
            last_multicast: None,
            sent: 0,
            solicited: 0,
        };
        i.start(now, rng);
        self.ifaces.push(i);
        None
    }

    /// The interface stops advertising (configuration removed, interface
    /// destroyed): its final advertisement if it was up.
    pub fn remove(&mut self, ifindex: IfIndex) -> Option<RaSend> {
        let at = self.ifaces.iter().position(|i| i.ifindex == ifindex)?;
        let i = self.ifaces.remove(at);
        i.up.then_some(RaSend { ifindex, dest: RaDest::AllNodes, config: i.config, leaving: true })
    }

    /// The interface went up or down. Down: nothing is sent; up: it
    /// becomes an advertising interface again.
    pub fn set_up(&mut self, now: Instant, ifindex: IfIndex, up: bool, rng: &mut WorkerRng) {
        if let Some(i) = self.find(ifindex) {
            if i.up != up {
                i.up = up;
                if up {
                    i.start(now, rng);
                }
            }
        }
    }

    /// §6.2.6: a router solicitation on an advertising interface
    /// schedules an answer (see the module docs). False when the
    /// interface does not advertise.
    pub fn rs_input(&mut self, now: Instant, rs: RsHeard, rng: &mut WorkerRng) -> bool {
        let Some(i) = self.find(rs.ifindex) else { return false };
        i.solicited += 1;
        if !i.up {
            return true;
        }
        let at = now + jitter(rng, MAX_RA_DELAY_TIME);
        if let (Some(mac), false) = (rs.slla, rs.src.is_unspecified()) {
            if i.unicast.iter().any(|u| u.1 == rs.src) {
                return true; // one answer for several solicitations
            }
            if i.unicast.len() < MAX_PENDING_UNICAST {
                i.unicast.push((at, rs.src, mac));
                return true;
            }
        }
        // Multicast: not before MIN_DELAY_BETWEEN_RAS after the last one,
        // and never later than the one already scheduled.
        let at = match i.last_multicast {
            Some(last) if now < last + MIN_DELAY_BETWEEN_RAS => last + MIN_DELAY_BETWEEN_RAS + (at - now),
            _ => at,
        };
        if at < i.next_multicast {
            i.next_multicast = at;
        }
        true
    }

    /// When [`timer`](Self::timer) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.ifaces
            .iter()
            .filter(|i| i.up)
            .flat_map(|i| std::iter::once(i.next_multicast).chain(i.unicast.iter().map(|u| u.0)))
            .min()
    }

    /// The advertisements due at `now`, appended to `out`. `ready(ifindex)`
    /// says whether the interface's link-local address has passed DAD;
    /// until it has, what is due waits (and is not counted as sent).
    pub fn timer(&mut self, now: Instant, ready: impl Fn(IfIndex) -> bool, rng: &mut WorkerRng, out: &mut Vec<RaSend>) {
        for i in self.ifaces.iter_mut().filter(|i| i.up) {
            if !ready(i.ifindex) {
                continue;
            }
            let config = &i.config;
            i.unicast.retain(|&(at, ip, mac)| {
                if at > now {
                    return true;
                }
                out.push(RaSend {
                    ifindex: i.ifindex,
                    dest: RaDest::Unicast(ip, mac),
                    config: config.clone(),
                    leaving: false,
                });
                false
            });
            if i.next_multicast <= now {
                out.push(RaSend { ifindex: i.ifindex, dest: RaDest::AllNodes, config: config.clone(), leaving: false });
                i.last_multicast = Some(now);
                i.reschedule(now, rng);
            }
        }
    }

    /// Counts an advertisement the owner sent on `ifindex`.
    pub fn count_sent(&mut self, ifindex: IfIndex) {
        if let Some(i) = self.find(ifindex) {
            i.sent += 1;
        }
    }

    /// Every advertising interface, for the status view.
    pub fn status(&self) -> Vec<AdvStatus> {
        self.ifaces
            .iter()
            .map(|i| AdvStatus {
                ifindex: i.ifindex,
                config: i.config.clone(),
                up: i.up,
                sent: i.sent,
                solicited: i.solicited,
                next: i.up.then(|| i.unicast.iter().map(|u| u.0).fold(i.next_multicast, Instant::min)),
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "rtadv_tests.rs"]
mod tests;
