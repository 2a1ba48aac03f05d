//! The shared state of one router: interfaces, route tables, ARP, counters,
//! configuration, and the control-plane operations that change them (each
//! with its route messages). Workers read it; the control thread writes it.

use crate::arp::{ArpConfig, ArpError, ArpStaticKind, ArpTable};
use crate::filter::PacketFilter;
use crate::iface::{Dad6State, If6Addr, IfAddr, IfError, IfIndex, Interface, InterfaceConfig, InterfaceTable};
use crate::link::{LinkQueue, LinkState};
use crate::nd6::dad::{DadAction, DadConfig, DadInput, DadTable};
use crate::nd6::{Nd6Config, Nd6Table, Nd6Timer, NdError};
use crate::packet::{PacketBuf, PacketPool, DEFAULT_BUF_SIZE};
use crate::percpu::PerWorker;
use crate::route::{Route, Route6, RouteError, RouteFlags, RouteOrigin, RouteTables};
use crate::rtmsg::{IfAnnounceWhat, RouteMonitor, RtmAddr, RtmBody, RtmIfAnnounce, RtmIfInfo, RtmIfa, RtmType};
use crate::stats::StackStats;
use crate::time::Clock;
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use softnet_wire::ethernet::MacAddr;
use softnet_wire::ipv6::{link_local_from_mac, Ipv6AddrExt};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

mod hostif;
mod loopback;
mod mbuf;
pub mod mld;
mod route6;
mod rtadv;
pub use route6::RouteTarget6;
pub use rtadv::RaConfigError;

/// Tunables of the stack, with OpenBSD's defaults unless said otherwise.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub workers: usize,
    /// net.inet.ip.forwarding
    pub forwarding: bool,
    /// net.inet6.ip6.forwarding
    pub forwarding6: bool,
    /// net.inet.ip.redirect — off by default, a deliberate departure from
    /// OpenBSD: a router in front of hosts should not steer them.
    pub send_redirects: bool,
    /// net.inet.ip.directed-broadcast
    pub directed_broadcast: bool,
    /// net.inet.icmp.errppslimit: ICMP errors per second (all workers).
    pub icmp_err_rate: u32,
    /// ICMP errors that may go out at once. OpenBSD's ppsratecheck allows
    /// the whole second's quota in a burst, so the default equals the rate.
    pub icmp_err_burst: u32,
    /// net.inet.icmp.bmcastecho: answer echo requests sent to broadcast.
    pub bmcast_echo: bool,
    /// TTL of packets the router originates (net.inet.ip.ttl).
    pub default_ttl: u8,
    /// Packet buffers per worker.
    pub pool_size: usize,
    /// Bytes per packet buffer.
    pub buf_size: usize,
    pub arp: ArpConfig,
    pub nd6: Nd6Config,
    pub dad: DadConfig,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            workers: 1,
            forwarding: true,
            forwarding6: true,
            send_redirects: false,
            directed_broadcast: false,
            icmp_err_rate: 100,
            icmp_err_burst: 100,
            bmcast_echo: false,
            default_ttl: 64,
            pool_size: 4096,
            buf_size: DEFAULT_BUF_SIZE,
            arp: ArpConfig::default(),
            nd6: Nd6Config::default(),
            dad: DadConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    If(#[from] IfError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("{0}: address {1} already configured")]
    AddrExists(String, IfAddr),
    #[error("{0}: address {1} not configured")]
    NoSuchAddr(String, Ipv4Addr),
    #[error("{0}: bad address {1}: {2}")]
    BadAddr(String, IfAddr, &'static str),
    #[error("{0}: not in group {1}")]
    NotInGroup(String, String),
    #[error("{0}: address {1} already configured")]
    Addr6Exists(String, If6Addr),
    #[error("{0}: address {1} not configured")]
    NoSuchAddr6(String, Ipv6Addr),
    #[error("{0}: bad address {1}: {2}")]
    BadAddr6(String, If6Addr, &'static str),
    #[error(transparent)]
    RouterAdv(#[from] RaConfigError),
    #[error("{0}: host interface {1}: {2}")]
    Host(String, String, &'static str),
}

/// A filter slot that can be swapped atomically (a reload).
pub struct FilterSlot(pub Box<dyn PacketFilter>);

pub struct Stack {
    pub config: StackConfig,
    pub ifaces: InterfaceTable,
    pub routes: RouteTables,
    pub arp: ArpTable,
    /// The IPv6 neighbor cache.
    pub nd6: Nd6Table,
    /// Duplicate address detection of the interfaces' IPv6 addresses.
    pub dad: Mutex<DadTable>,
    /// Router advertisements of the interfaces configured to send them.
    pub rtadv: Mutex<crate::nd6::rtadv::Advertiser>,
    pub monitor: Arc<RouteMonitor>,
    pub stats: PerWorker<StackStats>,
    pub filter: ArcSwapOption<FilterSlot>,
    /// The socket layer's PCB tables (`crate::sock`).
    pub socks: crate::sock::Sockets,
    /// Fragments of datagrams addressed to the router, being reassembled.
    pub reass: crate::reass::Reassembly,
    /// IPv6 fragments of datagrams addressed to the router.
    pub reass6: crate::reass6::Reassembly6,
    /// The clock the control side uses (workers get theirs in `Worker::new`;
    /// both should be the same clock).
    pub clock: Arc<dyn Clock>,
    /// Where the workers' random generators get their seeds (the OS's
    /// entropy unless a test fixes it).
    pub entropy: Arc<dyn crate::rng::Entropy>,
    /// Serializes control operations (one change at a time).
    control: Mutex<()>,
    /// Buffers for frames the control thread sends (gratuitous ARP, DAD
    /// and neighbor solicitations).
    control_pool: Mutex<PacketPool>,
    /// The workers' shared spill (`packet::Spill`): buffers freed beyond a
    /// pool's limit, and those the control thread lets go.
    pub spill: crate::packet::Spill,
    /// Each worker's pool levels, published once per round (`netstat -m`,
    /// `mbuf.rs`).
    pub buffers: PerWorker<crate::mbuf::PoolGauges>,
    /// The control thread's random generator (DAD delays, ReachableTime).
    rng: Mutex<crate::rng::WorkerRng>,
    /// MLD reports scheduled (`stack/mld.rs`).
    mld: Mutex<mld::MldState>,
    /// When ReachableTime was last drawn.
    reachable_drawn: Mutex<crate::time::Instant>,
}

/// How often ReachableTime is drawn again (ND6_RECALC_REACHTM_INTERVAL).
const RECALC_REACHABLE: Duration = Duration::from_secs(2 * 60 * 60);

impl Stack {
    /// A stack on the monotonic clock.
    pub fn new(config: StackConfig) -> Arc<Stack> {
        Self::with_clock(config, Arc::new(crate::time::MonotonicClock::new()))
    }

    pub fn with_clock(config: StackConfig, clock: Arc<dyn Clock>) -> Arc<Stack> {
        Self::with_clock_and_entropy(config, clock, Arc::new(crate::rng::OsEntropy))
    }

    /// A stack on `clock` whose workers seed their random generators from
    /// `entropy` (a fixed seed makes a test's IP IDs and NAT ports
    /// repeatable).
    pub fn with_clock_and_entropy(
        config: StackConfig,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn crate::rng::Entropy>,
    ) -> Arc<Stack> {
        let monitor = Arc::new(RouteMonitor::new());
        let now = clock.now();
        let mut rng = crate::rng::WorkerRng::from_seed(entropy.seed(crate::percpu::CONTROL_SLOT), now);
        let nd6 = Nd6Table::new(config.nd6.clone(), rng.next_u32());
        let socks = crate::sock::Sockets::new(config.workers, || rng.next_u32());
        Arc::new_cyclic(|me: &std::sync::Weak<Stack>| {
            let routes = RouteTables::new(monitor.clone());
            let me = me.clone();
            // Route messages name interfaces.
            routes.set_ifname_resolver(move |w| {
                me.upgrade().and_then(|s| s.ifaces.load().get_weak(w).map(|i| i.name().to_string()))
            });
            Stack {
                routes,
                clock,
                entropy,
                arp: ArpTable::new(config.arp.clone()),
                nd6,
                dad: Mutex::new(DadTable::new(config.dad.clone())),
                rtadv: Mutex::new(crate::nd6::rtadv::Advertiser::new()),
                rng: Mutex::new(rng),
                mld: Mutex::new(mld::MldState::default()),
                reachable_drawn: Mutex::new(now),
                ifaces: InterfaceTable::new(),
                monitor,
                stats: PerWorker::new(),
                filter: ArcSwapOption::empty(),
                socks,
                reass: crate::reass::Reassembly::new(),
                reass6: crate::reass6::Reassembly6::new(),
                control: Mutex::new(()),
                control_pool: Mutex::new(PacketPool::new(16, DEFAULT_BUF_SIZE)),
                spill: crate::packet::new_spill(config.workers.max(1) * config.pool_size),
                buffers: PerWorker::new(),
                config,
            }
        })
    }

    /// Creates an interface (down, without IPv4 addresses) and announces
    /// it. It gets its IPv6 link-local address, fe80::/64 with the MAC's
    /// modified EUI-64 identifier (RFC 4291 App. A, RFC 4862 §5.3),
    /// tentative until the interface is up and DAD has run.
    pub fn create_interface(
        &self,
        name: &str,
        mac: MacAddr,
        mtu: u32,
        queues: Vec<Box<dyn LinkQueue>>,
    ) -> Result<Arc<Interface>, StackError> {
        let _c = self.control.lock();
        let ifp = self.ifaces.create(InterfaceConfig { name: name.to_string(), mac, mtu, queues })?;
        self.announce(&ifp, IfAnnounceWhat::Arrival);
        self.add_address6_locked(&ifp, If6Addr::new(link_local_from_mac(mac), 64))?;
        Ok(ifp)
    }

    fn find(&self, name: &str) -> Result<Arc<Interface>, StackError> {
        self.ifaces.load().by_name(name).cloned().ok_or_else(|| IfError::NoSuchInterface(name.to_string()).into())
    }

    /// `ifconfig IF up|down`.
    pub fn set_up(&self, name: &str, up: bool) -> Result<(), StackError> {
        let _c = self.control.lock();
        let ifp = self.find(name)?;
        if ifp.is_up() != up {
            ifp.set_up(up);
            self.if_info(&ifp);
            if up {
                for a in ifp.addrs().iter() {
                    self.send_gratuitous(&ifp, a.addr);
                }
                // RFC 4862 §5.4.2: the first solicitations of an interface
                // coming up wait a random time up to
                // MAX_RTR_SOLICITATION_DELAY.
                let now = self.clock.now();
                let max = self.config.dad.max_delay.as_millis().min(u32::MAX as u128) as u32;
                for a in ifp.inet6().addrs.iter().filter(|a| a.state == Dad6State::Tentative) {
                    let delay = Duration::from_millis(self.rng.lock().uniform(max) as u64);
                    self.dad.lock().start(now, ifp.index(), a.addr, delay);
                }
            } else {
                // Tentative addresses stay so; DAD starts over at the next up.
                self.dad.lock().stop_interface(ifp.index());
            }
            if up {
                self.mld_join(&ifp, &ifp.inet6().groups.clone());
            }
            self.rtadv_set_up(&ifp, up);
        }
        Ok(())
    }

    /// `ifconfig IF group NAME` (if_addgroup). Adding a group the
    /// interface is already in is not an error, as in OpenBSD.
    pub fn add_group(&self, name: &str, group: &str) -> Result<(), StackError> {
        let _c = self.control.lock();
        self.find(name)?.add_group(group)?;
        Ok(())
    }

    /// `ifconfig IF -group NAME` (if_delgroup).
    pub fn del_group(&self, name: &str, group: &str) -> Result<(), StackError> {
        let _c = self.control.lock();
        if self.find(name)?.del_group(group) {
            Ok(())
        } else {
            Err(StackError::NotInGroup(name.into(), group.into()))
        }
    }

    /// Records a carrier change reported by the link; one message if it
    /// changed.
    pub fn set_link_state(&self, name: &str, state: LinkState) -> Result<(), StackError> {
        let _c = self.control.lock();
        let ifp = self.find(name)?;
        if ifp.set_link_state(state) {
            self.if_info(&ifp);
        }
        Ok(())
    }

    /// `ifconfig IF inet ADDR/LEN`: the address, its connected route
    /// (`UCn`), its local route (`UHLl`, on this interface), its broadcast
    /// route (`UHb`), the local ARP entry, a route message for each, and a
    /// gratuitous ARP if the interface is up.
    pub fn add_address(&self, name: &str, a: IfAddr) -> Result<(), StackError> {
        let _c = self.control.lock();
        let ifp = self.find(name)?;
        if a.prefix_len > 32 {
            return Err(StackError::BadAddr(name.into(), a, "prefix length over 32"));
        }
        let ip = u32::from(a.addr);
        // 127/8 only on a loopback interface (crate::loopback).
        if a.addr.is_unspecified()
            || a.addr.is_multicast()
            || a.addr.is_broadcast()
            || (a.addr.is_loopback() && !ifp.is_loopback())
        {
            return Err(StackError::BadAddr(name.into(), a, "not a unicast address"));
        }
        if a.prefix_len < 31 && (ip == u32::from(a.network()) || Some(a.addr) == a.broadcast()) {
            return Err(StackError::BadAddr(name.into(), a, "network or broadcast address of its subnet"));
        }
        let ifs = self.ifaces.load();
        if ifs.iter().any(|i| i.has_addr(a.addr)) {
            return Err(StackError::AddrExists(name.into(), a));
        }
        let mut routes_added: Vec<(Ipv4Addr, u8)> = Vec::new();
        let result = (|| -> Result<(), StackError> {
            let weak = ifp.weak();
            if a.prefix_len < 32 {
                self.routes.add(0, Route::connected(weak, a))?;
                routes_added.push((a.network(), a.prefix_len));
            }
            self.routes.add(0, Route::local(weak, a.addr))?;
            routes_added.push((a.addr, 32));
            if let Some(b) = Route::broadcast(weak, a).filter(|_| !ifp.is_loopback()) {
                let dest = b.dest;
                self.routes.add(0, b)?;
                routes_added.push((dest, 32));
            }
            Ok(())
        })();
        if let Err(e) = result {
            for (d, l) in routes_added {
                let _ = self.routes.delete(0, d, l, None);
            }
            return Err(e);
        }
        let mut addrs = ifp.addrs().as_ref().clone();
        addrs.push(a);
        ifp.set_addrs(addrs);
        if !ifp.is_loopback() {
            self.arp.add_local(&ifp, a.addr);
        }
        self.addr_msg(&ifp, a, RtmType::NewAddr);
        if ifp.is_up() && !ifp.is_loopback() {
            self.send_gratuitous(&ifp, a.addr);
        }
        Ok(())
    }

    /// `ifconfig IF inet ADDR delete`: the reverse of `add_address`.
    pub fn delete_address(&self, name: &str, addr: Ipv4Addr) -> Result<(), StackError> {
        let _c = self.control.lock();
        let ifp = self.find(name)?;
        self.delete_address_locked(&ifp, addr)
    }

    fn delete_address_locked(&self, ifp: &Arc<Interface>, addr: Ipv4Addr) -> Result<(), StackError> {
        let addrs = ifp.addrs();
        let Some(a) = addrs.iter().find(|a| a.addr == addr).copied() else {
            return Err(StackError::NoSuchAddr(ifp.name().into(), addr));
        };
        let rest: Vec<IfAddr> = addrs.iter().filter(|x| x.addr != addr).copied().collect();
        drop(addrs);
        ifp.set_addrs(rest);
        self.arp.remove_local(ifp, a.addr);
        if let Some(b) = a.broadcast() {
            let _ = self.routes.delete(0, b, 32, None);
        }
        let _ = self.routes.delete(0, a.addr, 32, None);
        if a.prefix_len < 32 {
            let _ = self.routes.delete(0, a.network(), a.prefix_len, None);
        }
        self.addr_msg(ifp, a, RtmType::DelAddr);
        Ok(())
    }

    /// `ifconfig IF inet6 ADDR/LEN`: the address (tentative; DAD starts
    /// now if the interface is up), its neighbor cache entry (flag `l`)
    /// and the solicited-node group it implies. An address is refused
    /// when it is not unicast, its prefix length is not 1-128 (in6.c:
    /// in6_update_ifa), it is configured already (a link-local one on
    /// this interface, any other on any interface) or a link-local
    /// address's prefix is not 64 (RFC 4291 §2.5.6).
    pub fn add_address6(&self, name: &str, addr: Ipv6Addr, prefix_len: u8) -> Result<(), StackError> {
        let _c = self.control.lock();
        let ifp = self.find(name)?;
        let a = If6Addr::new(addr, prefix_len);
        let bad = |why| Err(StackError::BadAddr6(name.into(), a, why));
        if prefix_len == 0 || prefix_len > 128 {
            return bad("prefix length not 1 to 128");
        }
        // ::1 only on a loopback interface (crate::loopback).
        if addr.is_unspecified()
            || addr.is_multicast()
            || (addr.is_loopback() && !ifp.is_loopback())
            || addr.is_v4_mapped()
        {
            return bad("not a unicast address");
        }
        if addr.is_link_local_unicast() && prefix_len != 64 {
            return bad("a link-local address is a /64");
        }
        let taken = if addr.is_link_local_unicast() {
            ifp.addr6_state(addr).is_some()
        } else {
            self.ifaces.load().owner_of6(addr).is_some()
        };
        if taken {
            return Err(StackError::Addr6Exists(name.into(), a));
        }
        self.add_address6_locked(&ifp, a)
    }

    /// in6_update_ifa + rt_ifa_addlocal: the connected route of the
    /// prefix (`UCn`, one per prefix and interface, link-local ones scoped
    /// to it as `fe80::%IF/64`) and the local route (`UHLl`), each with its
    /// route message, then the address and its RTM_NEWADDR. A route that
    /// cannot be added changes nothing.
    fn add_address6_locked(&self, ifp: &Arc<Interface>, mut a: If6Addr) -> Result<(), StackError> {
        let weak = ifp.weak();
        if ifp.is_loopback() {
            // in6if_do_dad: no DAD on a loopback interface.
            a.state = Dad6State::Preferred;
        }
        let shared_prefix =
            ifp.inet6().addrs.iter().any(|x| x.prefix_len == a.prefix_len && x.network() == a.network());
        let connected = a.prefix_len < 128 && !shared_prefix;
        if connected {
            self.routes.add(0, Route6::connected6(weak, a.addr, a.prefix_len))?;
        }
        if let Err(e) = self.routes.add(0, Route6::local(weak, a.addr)) {
            if connected {
                let _ = self.routes.delete_scoped(0, a.network(), a.prefix_len, None, ifp.index());
            }
            return Err(e.into());
        }
        let before = ifp.inet6().groups.clone();
        let mut addrs = ifp.inet6().addrs.clone();
        addrs.push(a);
        ifp.set_addrs6(addrs);
        let joined: Vec<Ipv6Addr> = ifp.inet6().groups.iter().copied().filter(|g| !before.contains(g)).collect();
        self.mld_join(ifp, &joined);
        self.nd6.add_local(ifp, a.addr);
        self.addr_msg(ifp, RtmIfa::V6 { addr: a.addr, prefix_len: a.prefix_len }, RtmType::NewAddr);
        if ifp.is_up() && a.state == Dad6State::Tentative {
            self.dad.lock().start(self.clock.now(), ifp.index(), a.addr, Duration::ZERO);
        }
        Ok(())
    }

    /// `ifconfig IF inet6 ADDR delete`: the reverse of `add_address6`.
    pub fn delete_address6(&self, name: &str, addr: Ipv6Addr) -> Result<(), StackError> {
        let _c = self.control.lock();
        let ifp = self.find(name)?;
        self.delete_address6_locked(&ifp, addr)
    }

    fn delete_address6_locked(&self, ifp: &Arc<Interface>, addr: Ipv6Addr) -> Result<(), StackError> {
        let inet6 = ifp.inet6();
        let Some(a) = inet6.find(addr).copied() else {
            return Err(StackError::NoSuchAddr6(ifp.name().into(), addr));
        };
        let rest: Vec<If6Addr> = inet6.addrs.iter().filter(|x| x.addr != addr).copied().collect();
        drop(inet6);
        ifp.set_addrs6(rest.clone());
        self.dad.lock().stop(ifp.index(), addr);
        self.nd6.remove_local(ifp, addr);
        let _ = self.routes.delete_scoped(0, addr, 128, None, ifp.index());
        let shared_prefix = rest.iter().any(|x| x.prefix_len == a.prefix_len && x.network() == a.network());
        if a.prefix_len < 128 && !shared_prefix {
            let _ = self.routes.delete_scoped(0, a.network(), a.prefix_len, None, ifp.index());
        }
        self.addr_msg(ifp, RtmIfa::V6 { addr, prefix_len: a.prefix_len }, RtmType::DelAddr);
        Ok(())
    }

    /// Marks an address's DAD state (control thread).
    fn set_dad_state(&self, ifindex: IfIndex, addr: Ipv6Addr, state: Dad6State) -> Option<Arc<Interface>> {
        let ifp = self.ifaces.load().get(ifindex).cloned()?;
        let mut addrs = ifp.inet6().addrs.clone();
        let a = addrs.iter_mut().find(|a| a.addr == addr)?;
        a.state = state;
        ifp.set_addrs6(addrs);
        Some(ifp)
    }

    /// What the data path heard about one of `ifindex`'s tentative
    /// addresses (an `Nd6Input::dad` from `ns_input` / `na_input`): DAD
    /// marks it duplicated at its next timer run. Takes a short lock;
    /// such messages are rare.
    pub fn dad_input(&self, ifindex: IfIndex, addr: Ipv6Addr, what: DadInput) -> bool {
        self.dad.lock().input(ifindex, addr, what)
    }

    /// nd6_dad_timer's results applied: addresses that passed become
    /// preferred, duplicates are marked and logged (nd6_dad_duplicated),
    /// solicitations due are sent (from ::, to the solicited-node group).
    fn dad_timer(&self, now: crate::time::Instant) {
        let mut actions = Vec::new();
        self.dad.lock().timer(now, &mut actions);
        for act in actions {
            match act {
                DadAction::SendNs { ifindex, target } => {
                    if let Some(ifp) = self.ifaces.load().get(ifindex).cloned() {
                        let dst = target.solicited_node();
                        let msg = crate::ether::NdpMsg::Ns { target, slla: None };
                        let mac = softnet_wire::ipv6::multicast_mac(dst);
                        self.send_ndp(&ifp, mac, Ipv6Addr::UNSPECIFIED, dst, msg);
                    }
                }
                DadAction::Done { ifindex, addr } => {
                    let _c = self.control.lock();
                    self.set_dad_state(ifindex, addr, Dad6State::Preferred);
                }
                DadAction::Duplicated { ifindex, addr, ns_in, na_in, ns_out } => {
                    let _c = self.control.lock();
                    if let Some(ifp) = self.set_dad_state(ifindex, addr, Dad6State::Duplicated) {
                        tracing::error!(
                            "{}: DAD detected duplicate IPv6 address {addr}: NS in/out={ns_in}/{ns_out}, NA in={na_in}",
                            ifp.name()
                        );
                        tracing::error!("{}: DAD complete for {addr} - duplicate found", ifp.name());
                        if addr.is_link_local_unicast() {
                            tracing::error!("{}: manual intervention required", ifp.name());
                        }
                        self.stats.get(crate::percpu::CONTROL_SLOT).nd6.dup_addrs.inc();
                    }
                }
            }
        }
    }

    /// nd6_llinfo_timer for the neighbor cache: solicitations and NUD
    /// probes due go out from the control thread (source: the entry's
    /// hint if it is still a usable address of the interface, else the
    /// interface's choice for the target). The held packets of neighbors
    /// given up are returned, counted, for ICMPv6 address unreachable.
    pub fn nd6_timer(&self, now: crate::time::Instant) -> Nd6Timer {
        let mut t = self.nd6.timer(now, &self.stats.get(crate::percpu::CONTROL_SLOT).nd6);
        let ifs = self.ifaces.load();
        for ns in t.solicits.drain(..) {
            let Some(ifp) = ifs.get(ns.ifindex) else { continue };
            let inet6 = ifp.inet6();
            let src = ns
                .src_hint
                .filter(|s| inet6.find(*s).is_some_and(|a| a.is_usable()))
                .or_else(|| inet6.source_for(ns.target));
            drop(inet6);
            let Some(src) = src else { continue };
            let msg = crate::ether::NdpMsg::Ns { target: ns.target, slla: Some(ifp.mac()) };
            self.send_ndp(ifp, ns.dst_mac(), src, ns.dst_ip(), msg);
        }
        t
    }

    /// Sends one NDP message on `ifp` from the control thread.
    fn send_ndp(&self, ifp: &Interface, dst_mac: MacAddr, src: Ipv6Addr, dst: Ipv6Addr, msg: crate::ether::NdpMsg) {
        let mut pool = self.control_pool.lock();
        let Some(mut p) = pool.alloc() else { return };
        if crate::ether::build_ndp_frame(&mut p, ifp.mac(), dst_mac, src, dst, msg).is_err() {
            pool.free(p);
            return;
        }
        let mut frames: Vec<PacketBuf> = vec![p];
        let sent = ifp.queue(crate::percpu::CONTROL_SLOT).lock().send(&mut pool, &mut frames);
        let st = ifp.stats.get(crate::percpu::CONTROL_SLOT);
        if sent == 1 {
            st.opackets.inc();
            self.stats.get(crate::percpu::CONTROL_SLOT).nd6.ns_sent.inc();
        } else {
            st.oerrors.inc();
        }
    }

    /// `ndp -s ADDR MAC [temp] [proxy]` (`scope`: the interface of a
    /// link-local address).
    pub fn ndp_set(
        &self,
        addr: Ipv6Addr,
        scope: Option<&str>,
        mac: MacAddr,
        temp: bool,
        proxy: bool,
    ) -> Result<(), NdError> {
        let _c = self.control.lock();
        let ifs = self.ifaces.load();
        let scope = match scope {
            Some(n) => Some(ifs.by_name(n).map(|i| i.index()).ok_or(NdError::NoRoute(addr))?),
            None => None,
        };
        self.nd6.add_static(self.clock.now(), &ifs, addr, scope, mac, temp, proxy).map(|_| ())
    }

    /// `ndp -an`.
    pub fn ndp_show(&self) -> String {
        let ifs = self.ifaces.load();
        crate::nd6::format_ndp_an(&self.nd6.entries(), |i| ifs.get(i).map(|x| x.name().to_string()), self.clock.now())
    }

    /// `ifconfig IF destroy`: detach (lookups fail from now on), remove the
    /// addresses and every route through the interface (a message each),
    /// forget its ARP entries, announce the departure, then wait for the
    /// last strong reference and free it here.
    pub fn destroy_interface(&self, name: &str) -> Result<(), StackError> {
        let ifp = {
            let _c = self.control.lock();
            // The final router advertisement goes while the interface and
            // its link-local address are still there.
            if let Some(ifp) = self.ifaces.load().by_name(name) {
                self.rtadv_destroy(ifp);
            }
            let ifp = self.ifaces.begin_destroy(name)?;
            for a in ifp.addrs().iter() {
                let _ = self.delete_address_locked(&ifp, a.addr);
            }
            for a in ifp.inet6().addrs.iter() {
                let _ = self.delete_address6_locked(&ifp, a.addr);
            }
            self.routes.delete_for_interface(ifp.weak());
            self.arp.remove_interface(ifp.index());
            self.nd6.remove_interface(ifp.index());
            self.dad.lock().stop_interface(ifp.index());
            self.announce(&ifp, IfAnnounceWhat::Departure);
            ifp
        };
        self.ifaces.finish_destroy(ifp);
        Ok(())
    }

    /// Adds a static route (`route add`).
    pub fn add_route(
        &self,
        rtable: u16,
        dest: Ipv4Addr,
        prefix_len: u8,
        gateway: RouteTarget,
    ) -> Result<(), StackError> {
        let _c = self.control.lock();
        let r = self.make_route(dest, prefix_len, gateway)?;
        self.routes.add(rtable, r)?;
        Ok(())
    }

    /// Changes a route's gateway or flags (`route change`).
    pub fn change_route(
        &self,
        rtable: u16,
        dest: Ipv4Addr,
        prefix_len: u8,
        gateway: RouteTarget,
    ) -> Result<(), StackError> {
        let _c = self.control.lock();
        let r = self.make_route(dest, prefix_len, gateway)?;
        self.routes.change(rtable, r)?;
        Ok(())
    }

    /// Adds many gateway routes, publishing the table once (bulk loads).
    pub fn routes_batch(&self, rtable: u16, routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>) -> Result<(), StackError> {
        let _c = self.control.lock();
        let mut built = Vec::with_capacity(routes.len());
        for (dest, len, gw) in routes {
            built.push(self.make_route(dest, len, RouteTarget::Gateway(gw))?);
        }
        self.routes.batch(rtable, |b| -> Result<(), StackError> {
            for r in built {
                b.add(r)?;
            }
            Ok(())
        })
    }

    pub fn delete_route(&self, rtable: u16, dest: Ipv4Addr, prefix_len: u8) -> Result<(), StackError> {
        let _c = self.control.lock();
        self.routes.delete(rtable, dest, prefix_len, None)?;
        Ok(())
    }

    /// Builds a static route the way route(8) does: a gateway must be on a
    /// connected network (its interface is the one that reaches it).
    fn make_route(&self, dest: Ipv4Addr, prefix_len: u8, target: RouteTarget) -> Result<Route, StackError> {
        if prefix_len > 32 {
            return Err(RouteError::BadPrefix(prefix_len).into());
        }
        let dest = Ipv4Addr::from(u32::from(dest) & crate::iface::prefix_mask(prefix_len));
        let mut flags = RouteFlags::UP | RouteFlags::STATIC;
        if prefix_len == 32 {
            flags |= RouteFlags::HOST;
        }
        let ifs = self.ifaces.load();
        let (gateway, ifp, ifa) = match target {
            RouteTarget::Gateway(gw) => {
                let via = ifs
                    .iter()
                    .find(|i| i.addrs().iter().any(|a| a.contains(gw)))
                    .ok_or(RouteError::NetworkUnreachable)?;
                flags |= RouteFlags::GATEWAY;
                (Some(gw), via.weak(), via.source_for(gw))
            }
            RouteTarget::Interface(ref name) => {
                let via = ifs.by_name(name).ok_or_else(|| IfError::NoSuchInterface(name.clone()))?;
                (None, via.weak(), via.addrs().first().map(|a| a.addr))
            }
            RouteTarget::Reject | RouteTarget::Blackhole => {
                flags |= if matches!(target, RouteTarget::Reject) { RouteFlags::REJECT } else { RouteFlags::BLACKHOLE };
                (None, crate::iface::WeakIf::default(), None)
            }
        };
        Ok(Route {
            dest,
            prefix_len,
            gateway,
            ifp,
            ifa,
            flags,
            mtu: 0,
            priority: 8,
            origin: RouteOrigin::Own,
            mpath: None,
        })
    }

    /// Sends a gratuitous ARP request for `ip` on `ifp` (RFC 5227 §3
    /// announcement) from the control thread.
    fn send_gratuitous(&self, ifp: &Interface, ip: Ipv4Addr) {
        if ifp.is_loopback() {
            return;
        }
        let arp = self.arp.gratuitous(ifp, ip);
        let mut pool = self.control_pool.lock();
        let Some(mut p) = pool.alloc() else { return };
        if crate::ether::build_arp_frame(&mut p, ifp.mac(), MacAddr::BROADCAST, &arp).is_err() {
            pool.free(p);
            return;
        }
        let mut frames: Vec<PacketBuf> = vec![p];
        let sent = ifp.queue(crate::percpu::CONTROL_SLOT).lock().send(&mut pool, &mut frames);
        let st = ifp.stats.get(crate::percpu::CONTROL_SLOT);
        if sent == 1 {
            st.opackets.inc();
        } else {
            st.oerrors.inc();
        }
        self.stats.get(crate::percpu::CONTROL_SLOT).arp.requests_sent.inc();
    }

    /// `arp -s HOST MAC` (static, not published), for setups and tests.
    pub fn arp_add_static(&self, ip: Ipv4Addr, mac: MacAddr) -> Result<(), ArpError> {
        self.arp_set(ip, mac, ArpStaticKind::Static, false)
    }

    /// `arp -s HOST MAC [temp|permanent] [pub]`.
    pub fn arp_set(&self, ip: Ipv4Addr, mac: MacAddr, kind: ArpStaticKind, publish: bool) -> Result<(), ArpError> {
        let _c = self.control.lock();
        let now = self.clock.now();
        self.arp.add_static(now, &self.ifaces.load(), ip, mac, kind, publish).map(|_| ())
    }

    /// `arp -an`.
    pub fn arp_show(&self) -> String {
        let ifs = self.ifaces.load();
        crate::arp::format_arp_an(&self.arp.entries(), |i| ifs.get(i).map(|x| x.name().to_string()), self.clock.now())
    }

    /// The control thread's timer (about once a second): ARP expiry, old
    /// route snapshots freed, the filter's housekeeping.
    pub fn tick(&self) {
        let now = self.clock.now();
        // Held packets given up go back to the workers (the spill).
        for p in self.arp.expire(now, &self.stats.get(crate::percpu::CONTROL_SLOT).arp) {
            self.recycle(p);
        }
        self.dad_timer(now);
        // The held packets of neighbors given up (counted as
        // dropped_no_entry) go to the workers for ICMPv6 address
        // unreachable; what does not fit the queue is freed here.
        let t = self.nd6_timer(now);
        self.nd6.queue_unreachable(t.unreachable.into_iter().map(|(_, _, p)| p));
        for p in self.nd6.take_released() {
            self.recycle(p);
        }
        self.rtadv_timer();
        self.mld_timer();
        {
            let mut drawn = self.reachable_drawn.lock();
            if now >= *drawn + RECALC_REACHABLE {
                *drawn = now;
                self.nd6.set_reachable_random(self.rng.lock().next_u32());
            }
        }
        self.routes.reap();
        let timed_out = self.reass.expire(now) as u64;
        self.stats.get(crate::percpu::CONTROL_SLOT).ip.fragtimeout.add(timed_out);
        if let Some(f) = self.filter.load().as_ref() {
            f.0.tick_recycling(now, &mut SpillSource(&self.spill, self.config.buf_size));
        }
    }

    /// A worker's buffer the control thread is done with, back to the
    /// workers through the spill (other sizes are simply freed).
    pub fn recycle(&self, p: PacketBuf) {
        if p.capacity() == self.config.buf_size {
            let _ = self.spill.push(p);
        }
    }

    /// The interface name for an index, for printing.
    pub fn ifname(&self, idx: IfIndex) -> Option<String> {
        self.ifaces.load().get(idx).map(|i| i.name().to_string())
    }

    /// Installs or removes the packet filter (atomically).
    pub fn set_filter(&self, f: Option<Box<dyn PacketFilter>>) {
        self.filter.store(f.map(|f| Arc::new(FilterSlot(f))));
    }
}

impl Stack {
    fn announce(&self, ifp: &Interface, what: IfAnnounceWhat) {
        let body = RtmBody::IfAnnounce(RtmIfAnnounce { ifindex: ifp.index(), ifname: Some(ifp.name().to_string()) });
        self.monitor.emit(RtmType::IfAnnounce(what), 0, body);
    }

    fn if_info(&self, ifp: &Interface) {
        let body = RtmBody::IfInfo(RtmIfInfo {
            ifindex: ifp.index(),
            ifname: Some(ifp.name().to_string()),
            if_flags: ifp.flags(),
            link_state: ifp.link_state(),
            mtu: ifp.mtu(),
        });
        self.monitor.emit(RtmType::IfInfo, 0, body);
    }

    fn addr_msg(&self, ifp: &Interface, a: impl Into<RtmIfa>, kind: RtmType) {
        let body = RtmBody::Addr(RtmAddr {
            ifindex: ifp.index(),
            ifname: Some(ifp.name().to_string()),
            addr: a.into(),
            if_flags: ifp.flags(),
            metric: 0,
        });
        self.monitor.emit(kind, 0, body);
    }
}

/// Where a static route goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    Gateway(Ipv4Addr),
    Interface(String),
    Reject,
    Blackhole,
}

/// The control thread's side of the workers' spill, for a filter's
/// housekeeping: buffers it frees go back to the workers; it gets none.
struct SpillSource<'a>(&'a crate::packet::Spill, usize);

impl crate::filter::BufferSource for SpillSource<'_> {
    fn alloc(&mut self) -> Option<PacketBuf> {
        None
    }
    fn alloc_large(&mut self) -> Option<PacketBuf> {
        None
    }
    fn free(&mut self, p: PacketBuf) {
        // Only the workers' size: the pools hand out what they hold.
        if p.capacity() == self.1 {
            let _ = self.0.push(p);
        }
    }
}
