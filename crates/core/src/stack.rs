//! The shared state of one router: interfaces, route tables, ARP, counters,
//! configuration, and the control-plane operations that change them (each
//! with its route messages). Workers read it; the control thread writes it.

use crate::arp::{ArpConfig, ArpError, ArpStaticKind, ArpTable};
use crate::filter::PacketFilter;
use crate::iface::{IfAddr, IfError, IfIndex, Interface, InterfaceConfig, InterfaceTable};
use crate::link::{LinkQueue, LinkState};
use crate::packet::{PacketBuf, PacketPool, DEFAULT_BUF_SIZE};
use crate::percpu::PerWorker;
use crate::route::{Route, RouteError, RouteFlags, RouteTables};
use crate::rtmsg::{IfAnnounceWhat, RouteMonitor, RtmAddr, RtmBody, RtmIfAnnounce, RtmIfInfo, RtmType};
use crate::stats::StackStats;
use crate::time::Clock;
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use softnet_wire::ethernet::MacAddr;
use std::net::Ipv4Addr;
use std::sync::Arc;

mod route6;
pub use route6::RouteTarget6;

/// Tunables of the stack, with OpenBSD's defaults unless said otherwise.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub workers: usize,
    /// net.inet.ip.forwarding
    pub forwarding: bool,
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
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            workers: 1,
            forwarding: true,
            send_redirects: false,
            directed_broadcast: false,
            icmp_err_rate: 100,
            icmp_err_burst: 100,
            bmcast_echo: false,
            default_ttl: 64,
            pool_size: 4096,
            buf_size: DEFAULT_BUF_SIZE,
            arp: ArpConfig::default(),
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
}

/// A filter slot that can be swapped atomically (a reload).
pub struct FilterSlot(pub Box<dyn PacketFilter>);

pub struct Stack {
    pub config: StackConfig,
    pub ifaces: InterfaceTable,
    pub routes: RouteTables,
    pub arp: ArpTable,
    pub monitor: Arc<RouteMonitor>,
    pub stats: PerWorker<StackStats>,
    pub filter: ArcSwapOption<FilterSlot>,
    /// Fragments of datagrams addressed to the router, being reassembled.
    pub reass: crate::reass::Reassembly,
    /// The clock the control side uses (workers get theirs in `Worker::new`;
    /// both should be the same clock).
    pub clock: Arc<dyn Clock>,
    /// Where the workers' random generators get their seeds (the OS's
    /// entropy unless a test fixes it).
    pub entropy: Arc<dyn crate::rng::Entropy>,
    /// Serializes control operations (one change at a time).
    control: Mutex<()>,
    /// Buffers for frames the control thread sends (gratuitous ARP).
    control_pool: Mutex<PacketPool>,
}

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
                ifaces: InterfaceTable::new(),
                monitor,
                stats: PerWorker::new(),
                filter: ArcSwapOption::empty(),
                reass: crate::reass::Reassembly::new(),
                control: Mutex::new(()),
                control_pool: Mutex::new(PacketPool::new(16, DEFAULT_BUF_SIZE)),
                config,
            }
        })
    }

    /// Creates an interface (down, without addresses) and announces it.
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
            }
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
        if a.addr.is_unspecified() || a.addr.is_multicast() || a.addr.is_broadcast() || a.addr.is_loopback() {
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
            if let Some(b) = Route::broadcast(weak, a) {
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
        self.arp.add_local(&ifp, a.addr);
        self.addr_msg(&ifp, a, RtmType::NewAddr);
        if ifp.is_up() {
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

    /// `ifconfig IF destroy`: detach (lookups fail from now on), remove the
    /// addresses and every route through the interface (a message each),
    /// forget its ARP entries, announce the departure, then wait for the
    /// last strong reference and free it here.
    pub fn destroy_interface(&self, name: &str) -> Result<(), StackError> {
        let ifp = {
            let _c = self.control.lock();
            let ifp = self.ifaces.begin_destroy(name)?;
            for a in ifp.addrs().iter() {
                let _ = self.delete_address_locked(&ifp, a.addr);
            }
            self.routes.delete_for_interface(ifp.weak());
            self.arp.remove_interface(ifp.index());
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
        Ok(Route { dest, prefix_len, gateway, ifp, ifa, flags, mtu: 0, priority: 8 })
    }

    /// Sends a gratuitous ARP request for `ip` on `ifp` (RFC 5227 §3
    /// announcement) from the control thread.
    fn send_gratuitous(&self, ifp: &Interface, ip: Ipv4Addr) {
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
        let freed = self.arp.expire(now, &self.stats.get(crate::percpu::CONTROL_SLOT).arp);
        drop(freed);
        self.routes.reap();
        let timed_out = self.reass.expire(now) as u64;
        self.stats.get(crate::percpu::CONTROL_SLOT).ip.fragtimeout.add(timed_out);
        if let Some(f) = self.filter.load().as_ref() {
            f.0.tick(now);
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

    fn addr_msg(&self, ifp: &Interface, a: IfAddr, kind: RtmType) {
        let body = RtmBody::Addr(RtmAddr {
            ifindex: ifp.index(),
            ifname: Some(ifp.name().to_string()),
            addr: a,
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
