//! Route sync from netlink (`sync_routes = "main"` or a table number):
//! the routes of one kernel routing table, in the namespace softnet runs
//! in, mirrored into softnet's table 0, so that a routing daemon (BIRD,
//! FRR) that writes the kernel's table routes softnet's traffic, unchanged.
//!
//! The pieces, each a file:
//! * `netlink.rs`: the subscription socket (IPv4 and IPv6 route groups, a
//!   32 MiB receive buffer) and the dumps, with netlink-sys and
//!   netlink-packet-route;
//! * `translate.rs`: a route message into what softnet can hold, or why
//!   not (counted and logged, never fatal);
//! * `nexthop.rs`: nexthop objects (RTM_NEWNEXTHOP, FRR's zebra), cached
//!   by id; routes naming one (RTA_NH_ID) resolve through it, a group as
//!   multipath;
//! * `mirror.rs`: the kernel table as the sync knows it, per family; the
//!   lowest metric in use; mark and sweep;
//! * `apply.rs`: the changed prefixes written into softnet's table, one
//!   batch (one published snapshot) per flush; softnet's own routes left
//!   alone.
//!
//! The thread here: a full resync (mark and sweep against a fresh dump) at
//! start and whenever the subscription overran (ENOBUFS: notifications
//! were lost); otherwise it reads notifications as they come and flushes
//! them in batches (`cadence.rs`: after a quiet gap for a lone change,
//! every `BURST_LINGER`, growing to `BURST_LINGER_MAX`, while a burst
//! lasts), so a burst of 100,000 changes costs a snapshot per batch, not
//! per route. Prefixes whose next hop softnet cannot reach yet are tried
//! again every `RETRY`.

mod apply;
mod cadence;
mod mirror;
mod netlink;
mod nexthop;
mod translate;

pub use apply::SyncStats;
pub use netlink::DEFAULT_RCVBUF;

use apply::{FlushCtx, IfResolver};
use cadence::Cadence;
use mirror::{Mirror, Prefix};
use netlink::{Event, Events};
use nexthop::{NhCache, NhChange};
use softnet_core::iface::WeakIf;
use softnet_core::rtmsg::Source;
use softnet_core::stack::Stack;
use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use translate::{translate, Translated};

/// softnet's table the kernel's routes go to.
const RTABLE: u16 = 0;
/// How often unresolved prefixes are tried again.
const RETRY: Duration = Duration::from_secs(2);
/// A burst of at least this many changes is logged with its rate ...
const LOG_BURST: u64 = 1000;
/// ... once this long has passed without a change.
const BURST_END: Duration = Duration::from_secs(1);

/// What to sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConf {
    /// The kernel table (254: main).
    pub table: u32,
    /// Receive buffer of the subscription, in bytes.
    pub rcvbuf: usize,
}

/// The kernel table a `sync_routes` value names: "main", "default", a
/// name from iproute2's rt_tables, or a number. The local table (255)
/// and 0 are refused.
pub fn parse_table(v: &toml::Value) -> Result<u32, String> {
    let id = match v {
        toml::Value::Integer(n) => u32::try_from(*n).map_err(|_| format!("table {n} out of range 1-4294967295"))?,
        toml::Value::String(s) => match s.as_str() {
            "main" => translate::TABLE_MAIN,
            "default" => 253,
            "local" => 255,
            name => match s.parse::<u32>() {
                Ok(n) => n,
                Err(_) => table_by_name(name).ok_or_else(|| format!("unknown kernel routing table {name:?}"))?,
            },
        },
        other => return Err(format!("expected a table name or number, not {}", other.type_str())),
    };
    match id {
        0 => Err("table 0 is not a routing table".into()),
        255 => Err("the local table holds the kernel's own addresses; sync \"main\" or another table".into()),
        n => Ok(n),
    }
}

/// A table's number from iproute2's rt_tables files.
fn table_by_name(name: &str) -> Option<u32> {
    let mut files = vec!["/etc/iproute2/rt_tables".to_string(), "/usr/share/iproute2/rt_tables".to_string()];
    for d in ["/etc/iproute2/rt_tables.d", "/usr/share/iproute2/rt_tables.d"] {
        if let Ok(rd) = std::fs::read_dir(d) {
            files.extend(rd.flatten().map(|e| e.path().display().to_string()).filter(|p| p.ends_with(".conf")));
        }
    }
    files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).find_map(|text| {
        text.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            let (id, n) = (w.next()?, w.next()?);
            (n == name && !id.starts_with('#')).then(|| id.parse().ok()).flatten()
        })
    })
}

/// The sync thread's nice value (the workers run at 0).
const SYNC_NICE: libc::c_int = 5;

/// The calling thread (the sync) yields the CPU to the workers when they
/// share one: SCHED_BATCH (its wake-ups on netlink do not preempt a
/// running worker) at nice `SYNC_NICE` (its weight a third of a
/// worker's). It needs a few per cent of a core in a feed (BENCHMARKS §1
/// "Route sync"), so it keeps up; should it fall behind, the socket
/// overruns and the resync brings the table back. Neither call needs a
/// privilege (both only lower the thread's claim); a refusal (a seccomp
/// sandbox) is logged at debug, not fatal.
fn below_the_workers() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; param is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        tracing::debug!("route sync: SCHED_BATCH: {}", io::Error::last_os_error());
    }
    // SAFETY: gettid has no preconditions; setpriority on our own thread.
    let tid = unsafe { libc::gettid() } as libc::id_t;
    // SAFETY: PRIO_PROCESS with a thread id sets that thread's nice value.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, SYNC_NICE) } != 0 {
        tracing::debug!("route sync: nice {SYNC_NICE}: {}", io::Error::last_os_error());
    }
}

/// The running sync.
pub struct RouteSync {
    handle: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    pub stats: Arc<SyncStats>,
}

impl RouteSync {
    /// Subscribes, takes the first full resync (so the kernel's routes are
    /// in softnet's table when this returns) and starts the thread.
    /// `links` maps kernel interface names to softnet interface names (the
    /// devices softnet's interfaces attach to).
    pub fn start(stack: Arc<Stack>, conf: SyncConf, links: Vec<(String, String)>) -> io::Result<RouteSync> {
        let (events, got) = Events::open(conf.rcvbuf, conf.table)?;
        let stats = Arc::new(SyncStats::default());
        let mut s = Syncer {
            stack,
            conf: conf.clone(),
            events,
            v4: Mirror::default(),
            v6: Mirror::default(),
            nh: NhCache::default(),
            unres4: BTreeSet::new(),
            unres6: BTreeSet::new(),
            stats: stats.clone(),
            links,
            evbuf: Vec::new(),
            warned: 0,
            monitor: None,
        };
        // Subscribed before the first resync: nothing softnet does after
        // it goes unheard. The sync's own changes are not sent back to it.
        s.monitor = Some(s.stack.monitor.subscribe_others());
        s.resync()?;
        tracing::info!("route sync: kernel table {}, receive buffer {got} bytes", conf.table);
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let handle = std::thread::Builder::new().name("softnet-rtsync".into()).spawn(move || {
            below_the_workers();
            s.run(&st)
        })?;
        Ok(RouteSync { handle: Some(handle), stop, stats })
    }
}

impl Drop for RouteSync {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Syncer {
    stack: Arc<Stack>,
    conf: SyncConf,
    events: Events,
    v4: Mirror<Ipv4Addr>,
    v6: Mirror<Ipv6Addr>,
    /// The kernel's nexthop objects, by id.
    nh: NhCache,
    unres4: BTreeSet<Prefix<Ipv4Addr>>,
    unres6: BTreeSet<Prefix<Ipv6Addr>>,
    stats: Arc<SyncStats>,
    links: Vec<(String, String)>,
    evbuf: Vec<Event>,
    /// Unsupported messages logged at warn so far (then debug).
    warned: u32,
    /// softnet's own route messages (`watch_softnet`), those of the sync's
    /// own changes left out (its `Source`).
    monitor: Option<(Source, crossbeam::channel::Receiver<softnet_core::rtmsg::RouteMessage>)>,
}

/// Kernel interface index to softnet interface, looked up once per flush.
/// The cache is a short list searched in order: a feed names one or a
/// few kernel interfaces (the host twins softnet's namespace has), and
/// each announced route asks it for its next hop's (a SipHash'd
/// `HashMap` cost more than the search).
struct Links<'a> {
    stack: &'a Stack,
    links: &'a [(String, String)],
    cache: Vec<(u32, Option<WeakIf>)>,
}

fn if_indextoname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer is IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    Some(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

impl IfResolver for Links<'_> {
    fn resolve(&mut self, k: u32) -> Option<WeakIf> {
        if let Some(&(_, w)) = self.cache.iter().find(|(i, _)| *i == k) {
            return w;
        }
        let w = if_indextoname(k).and_then(|kname| {
            let name = self.links.iter().find(|(dev, _)| *dev == kname).map_or(kname.as_str(), |(_, n)| n.as_str());
            self.stack.ifaces.load().by_name(name).map(|i| i.weak())
        });
        self.cache.push((k, w));
        w
    }
}

impl Syncer {
    fn unsupported(&mut self, why: &str) {
        self.stats.unsupported.fetch_add(1, Ordering::Relaxed);
        if self.warned < 20 {
            self.warned += 1;
            tracing::warn!("route sync: kernel route not representable in softnet ({why}): skipped");
        } else {
            tracing::debug!("route sync: kernel route not representable in softnet ({why}): skipped");
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::New(t) => {
                if let Err(why) = enter_route(t, true, &mut self.v4, &mut self.v6) {
                    self.unsupported(&why);
                }
            }
            // What was never installed needs no withdrawal.
            Event::Del(t) => {
                let _ = enter_route(t, false, &mut self.v4, &mut self.v6);
            }
            Event::NewNh(m) => {
                let new = !self.nh.contains(m.id);
                let c = self.nh.insert(m);
                self.nexthops_changed(c);
                // A route heard before its object (between the two dumps
                // of a resync) waits among the unresolved: try it now.
                if new {
                    self.retry_unresolved();
                }
            }
            Event::DelNh(m) => {
                let c = self.nh.remove(m.id);
                self.nexthops_changed(c);
            }
            Event::Bad(why) => self.unsupported(&why),
        }
    }

    /// Routes naming changed objects are flushed again; routes naming
    /// deleted ones are gone (the kernel deleted them without a message).
    fn nexthops_changed(&mut self, c: NhChange) {
        self.v4.touch_objects(&c.changed);
        self.v6.touch_objects(&c.changed);
        self.v4.remove_objects(&c.deleted);
        self.v6.remove_objects(&c.deleted);
    }

    fn pending(&self) -> usize {
        self.v4.pending() + self.v6.pending()
    }

    /// Writes the pending changes into softnet's table; returns the route
    /// messages caused.
    fn flush(&mut self) -> u64 {
        let mut links = Links { stack: &self.stack, links: &self.links, cache: Vec::new() };
        let routes = &self.stack.routes;
        let source = self.monitor.as_ref().map(|m| m.0);
        let mut ctx = FlushCtx { ifs: &mut links, nh: &self.nh, stats: &self.stats, source };
        apply::flush(routes, RTABLE, &mut self.v4, &mut ctx, &mut self.unres4)
            + apply::flush(routes, RTABLE, &mut self.v6, &mut ctx, &mut self.unres6)
    }

    /// What softnet did to its own table that may let a kernel route in:
    /// an interface that arrived or an address added (routes through it
    /// were removed when it went, next hops may be reachable now) brings
    /// every prefix of the mirror into the next flush; a route deleted
    /// (softnet's own that shadowed a kernel route, say) brings its prefix.
    /// The sync's own messages do not come by here (`subscribe_others`):
    /// re-flushing them would change nothing, and a feed's withdrawal
    /// would pay a message and a mirror search per route for it.
    fn watch_softnet(&mut self) {
        use softnet_core::rtmsg::{IfAnnounceWhat, RtmBody, RtmType};
        let Some((_, rx)) = &self.monitor else { return };
        let mut all = false;
        let mut deleted = Vec::new();
        for m in rx.try_iter() {
            match (m.kind, &m.body) {
                (RtmType::NewAddr | RtmType::IfAnnounce(IfAnnounceWhat::Arrival), _) => all = true,
                (RtmType::Delete, RtmBody::Route(r)) if m.rtable == RTABLE => deleted.push((r.dest, r.prefix_len)),
                _ => {}
            }
        }
        if all {
            let p4: Vec<_> = self.v4.prefixes().copied().collect();
            let p6: Vec<_> = self.v6.prefixes().copied().collect();
            p4.into_iter().for_each(|p| self.v4.touch(p));
            p6.into_iter().for_each(|p| self.v6.touch(p));
            return;
        }
        for (dest, len) in deleted {
            match dest {
                std::net::IpAddr::V4(a) if self.v4.best(&(a, len)).is_some() => self.v4.touch((a, len)),
                std::net::IpAddr::V6(a) if self.v6.best(&(a, len)).is_some() => self.v6.touch((a, len)),
                _ => {}
            }
        }
    }

    /// The prefixes softnet could not install are tried again.
    fn retry_unresolved(&mut self) {
        for p in std::mem::take(&mut self.unres4) {
            self.v4.touch(p);
        }
        for p in std::mem::take(&mut self.unres6) {
            self.v6.touch(p);
        }
    }

    /// Mark and sweep against a fresh dump, then the table swept of kernel
    /// routes the kernel no longer has.
    fn resync(&mut self) -> io::Result<()> {
        let t0 = Instant::now();
        self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
        let (nhs, dump) = netlink::dump(self.conf.rcvbuf)?;
        let mut fresh = NhCache::default();
        for m in nhs {
            fresh.insert(m);
        }
        let c = self.nh.replace_all(fresh);
        self.v4.begin_resync();
        self.v6.begin_resync();
        // Routes whose object changed while messages were lost: the route
        // messages in the dump may be equal to the mirror's.
        self.v4.touch_objects(&c.changed);
        self.v6.touch_objects(&c.changed);
        for m in dump {
            self.handle(Event::New(translate(&m, self.conf.table)));
        }
        let swept = self.v4.end_resync() + self.v6.end_resync();
        self.retry_unresolved();
        let mut n = self.flush();
        let source = self.monitor.as_ref().map(|m| m.0);
        n += apply::sweep_table(&self.stack.routes, RTABLE, &self.v4, &self.stats, source);
        n += apply::sweep_table(&self.stack.routes, RTABLE, &self.v6, &self.stats, source);
        tracing::info!(
            "route sync: resync of kernel table {}: {} IPv4 and {} IPv6 prefixes, {} nexthop objects, {swept} gone, {n} change(s) in softnet, {} unresolved, {:.0} ms",
            self.conf.table,
            self.v4.len(),
            self.v6.len(),
            self.nh.len(),
            self.unres4.len() + self.unres6.len(),
            t0.elapsed().as_secs_f64() * 1e3
        );
        Ok(())
    }

    fn run(mut self, stop: &AtomicBool) {
        let mut need_resync = false;
        let mut cadence = Cadence::default();
        let mut last_retry = Instant::now();
        let mut burst: Option<Burst> = None;
        while !stop.load(Ordering::Relaxed) {
            if need_resync {
                self.events.discard();
                match self.resync() {
                    Ok(()) => need_resync = false,
                    Err(e) => {
                        tracing::warn!("route sync: resync failed: {e}; trying again");
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                }
            }
            let mut quiet = !self.events.wait(cadence.wait(Instant::now(), self.pending()));
            while !quiet {
                match self.events.recv(&mut self.evbuf) {
                    Ok(true) => {
                        let mut evs = std::mem::take(&mut self.evbuf);
                        for ev in evs.drain(..) {
                            self.handle(ev);
                        }
                        self.evbuf = evs;
                    }
                    // Nothing more now: a batch under way waits for more
                    // as the cadence says before it is flushed.
                    Ok(false) => {
                        let pending = self.pending();
                        quiet = pending == 0 || !self.events.wait(cadence.wait(Instant::now(), pending));
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        self.stats.overruns.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("route sync: receive buffer overrun, route changes lost: resync");
                        need_resync = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("route sync: netlink: {e}");
                        break;
                    }
                }
                let now = Instant::now();
                if self.pending() > 0 {
                    cadence.pending(now);
                }
                if cadence.due(now, self.pending(), false) {
                    break;
                }
            }
            self.watch_softnet();
            if last_retry.elapsed() >= RETRY && !(self.unres4.is_empty() && self.unres6.is_empty()) {
                last_retry = Instant::now();
                self.retry_unresolved();
            }
            let now = Instant::now();
            let pending = self.pending();
            if pending > 0 {
                cadence.pending(now);
            }
            if cadence.due(now, pending, quiet) {
                let started = cadence.first().unwrap_or(now);
                let n = self.flush();
                cadence.flushed(Instant::now(), pending);
                if n > 0 {
                    let b = burst.get_or_insert(Burst { start: started, end: started, changes: 0, batches: 0 });
                    b.end = Instant::now();
                    b.changes += n;
                    b.batches += 1;
                }
            }
            if self.pending() == 0 && burst.as_ref().is_some_and(|b| b.end.elapsed() >= BURST_END) {
                let b = burst.take().expect("checked");
                let secs = (b.end - b.start).as_secs_f64().max(1e-6);
                if b.changes >= LOG_BURST {
                    tracing::info!(
                        "route sync: {} change(s) in {} batch(es), {:.0} ms, {:.0} routes/s",
                        b.changes,
                        b.batches,
                        secs * 1e3,
                        b.changes as f64 / secs
                    );
                } else {
                    tracing::debug!("route sync: {} change(s) in {} batch(es)", b.changes, b.batches);
                }
            }
        }
    }
}

/// A translated route message into the mirrors: entered (`new`,
/// RTM_NEWROUTE) or withdrawn. Err: not representable.
fn enter_route(t: Translated, new: bool, v4: &mut Mirror<Ipv4Addr>, v6: &mut Mirror<Ipv6Addr>) -> Result<(), String> {
    match (t, new) {
        (Translated::V4(r), true) => v4.new_route(r),
        (Translated::V6(r), true) => v6.new_route(r),
        (Translated::V4(r), false) => v4.del_route(r.dest, r.prefix_len, r.metric),
        (Translated::V6(r), false) => v6.del_route(r.dest, r.prefix_len, r.metric),
        (Translated::Skip, _) => {}
        (Translated::Unsupported(why), _) => return Err(why),
    }
    Ok(())
}

/// Changes flushed without a second's pause between them: from the first
/// change heard to the last flush.
struct Burst {
    start: Instant,
    end: Instant,
    changes: u64,
    batches: u64,
}

/// 0..n in a fixed pseudo-random order (xorshift Fisher–Yates): the
/// scattered withdrawals of the sync's measurements (`apply`, `mirror`).
#[cfg(test)]
fn scattered_order(n: u32) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

/// CPU time of the calling thread: the sync's measurements (`apply`,
/// here).
#[cfg(test)]
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec for the kernel to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One route change as the kernel sends it to the sync: a datagram
    /// holding one RTM_NEWROUTE or RTM_DELROUTE of table main with what
    /// fib_dump_info puts in (table, destination, metric, gateway,
    /// interface), for 10.0.2.2 on kernel interface 42; protocol bird.
    fn route_datagram(dest: Ipv4Addr, len: u8, new: bool) -> Vec<u8> {
        use netlink_packet_core::NetlinkMessage;
        use netlink_packet_route::route::{RouteAttribute, RouteProtocol, RouteScope, RouteType};
        use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
        let mut m = netlink_packet_route::route::RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = len;
        m.header.table = 254;
        m.header.protocol = RouteProtocol::Bird;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes = vec![
            RouteAttribute::Table(254),
            RouteAttribute::Destination(dest.into()),
            RouteAttribute::Priority(32),
            RouteAttribute::Gateway(Ipv4Addr::new(10, 0, 2, 2).into()),
            RouteAttribute::Oif(42),
        ];
        let inner = if new { RouteNetlinkMessage::NewRoute(m) } else { RouteNetlinkMessage::DelRoute(m) };
        let mut nl = NetlinkMessage::from(inner);
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.serialize(&mut buf);
        buf
    }

    /// BENCHMARKS.md's figure in memory: the sync thread's whole path for
    /// the feed of bench/rtsync_1m.sh (/24s from 32.0.0.0 on) from the
    /// kernel's datagrams on: each change parsed (`netlink::parse`),
    /// translated and entered in the mirror (`enter_route`, as `handle`),
    /// flushed every N pending prefixes into softnet's table with the
    /// sync subscribed to the monitor as in the daemon; announced in
    /// order, withdrawn in a scattered order (BIRD's hash order). The
    /// recvmmsg(2) is left out. Prints the thread's CPU per route and the
    /// flushes' share of it. The feed's withdrawals came in batches of
    /// 6,000-7,000 (1,000,000 in 139-168 batches, BENCHMARKS §1 session 13).
    /// `RTSYNC_1M_N=1000000 RTSYNC_BATCHES=6600 cargo test --release -p softnet rtsync_feed -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement"]
    fn rtsync_feed_from_the_datagrams_by_batch_size() {
        use softnet_core::iface::{IfAddr, IfIndex, WeakIf};
        use softnet_core::route::{Route, RouteTables};
        use softnet_core::rtmsg::RouteMonitor;
        let n: u32 = std::env::var("RTSYNC_1M_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        let batches: Vec<usize> = std::env::var("RTSYNC_BATCHES")
            .ok()
            .map(|v| v.split(',').filter_map(|b| b.parse().ok()).collect())
            .unwrap_or_else(|| vec![6_600, 25_000]);
        let prefix = |i: u32| Ipv4Addr::from(0x2000_0000 + (i << 8));
        let datagrams = |order: &mut dyn Iterator<Item = u32>, new: bool| -> Vec<Vec<u8>> {
            order.map(|i| route_datagram(prefix(i), 24, new)).collect()
        };
        let adds = datagrams(&mut (0..n), true);
        let dels = datagrams(&mut scattered_order(n).into_iter(), false);
        let ifw = WeakIf { index: IfIndex(2), generation: 1 };
        for batch in batches {
            let monitor = Arc::new(RouteMonitor::new());
            let t = RouteTables::new(monitor.clone());
            t.add(0, Route::connected(ifw, IfAddr::new(Ipv4Addr::new(10, 0, 2, 1), 24))).unwrap();
            let (me, _own) = monitor.subscribe_others();
            let stats = SyncStats::default();
            let nh = NhCache::default();
            let (mut v4, mut v6) = (Mirror::default(), Mirror::default());
            let (mut unres4, mut evs) = (BTreeSet::new(), Vec::new());
            let mut resolver = |k: u32| (k == 42).then_some(ifw);
            let mut run = |wire: &[Vec<u8>], v4: &mut Mirror<Ipv4Addr>, v6: &mut Mirror<Ipv6Addr>| {
                let (c0, mut in_flush) = (thread_cpu(), Duration::ZERO);
                let b0 = stats.batches.load(Ordering::Relaxed);
                let mut flush = |v4: &mut Mirror<Ipv4Addr>| {
                    let f0 = thread_cpu();
                    let ctx = &mut FlushCtx { ifs: &mut resolver, nh: &nh, stats: &stats, source: Some(me) };
                    apply::flush(&t, RTABLE, v4, ctx, &mut unres4);
                    in_flush += thread_cpu() - f0;
                };
                for d in wire {
                    netlink::parse(d, 254, &mut evs);
                    for ev in evs.drain(..) {
                        match ev {
                            Event::New(t) => enter_route(t, true, v4, v6).unwrap(),
                            Event::Del(t) => enter_route(t, false, v4, v6).unwrap(),
                            _ => panic!("only routes here"),
                        }
                    }
                    if v4.pending() >= batch {
                        flush(v4);
                    }
                }
                flush(v4);
                (thread_cpu() - c0, in_flush, stats.batches.load(Ordering::Relaxed) - b0)
            };
            let (add, add_flush, add_batches) = run(&adds, &mut v4, &mut v6);
            assert_eq!(t.routes_of::<Ipv4Addr>(0).len(), n as usize + 1);
            let (del, del_flush, del_batches) = run(&dels, &mut v4, &mut v6);
            assert_eq!(t.routes_of::<Ipv4Addr>(0).len(), 1, "the connected route stays");
            assert_eq!(stats.changes.load(Ordering::Relaxed), 2 * u64::from(n));
            for (what, cpu, fl, b) in
                [("add in order", add, add_flush, add_batches), ("withdraw scattered", del, del_flush, del_batches)]
            {
                println!(
                    "batch {batch:>6}: {what:<18} {:>6.0} ms CPU ({:>8.0} routes/s; flushes {:>5.0} ms = {:>4.1} %), {b} batches",
                    cpu.as_secs_f64() * 1e3,
                    f64::from(n) / cpu.as_secs_f64(),
                    fl.as_secs_f64() * 1e3,
                    fl.as_secs_f64() / cpu.as_secs_f64() * 100.0,
                );
            }
        }
    }

    /// Issue 14's "forwarding keeps running while the prefixes arrive and
    /// while they are withdrawn", in memory, with a core for each side as
    /// a router with a control-plane core has: one worker forwards
    /// `softnet bench`'s 64-byte UDP (10,000 flows over 100,000 static
    /// /24s, generated in the worker, counted at r1) on the last CPU while
    /// this thread, on CPU 0, applies the feed of
    /// `rtsync_feed_from_the_datagrams_by_batch_size` (1,000,000 /24s from
    /// the kernel's datagrams, then their scattered withdrawal, flushed in
    /// batches of 25,000) to the same stack's tables. Prints the rate
    /// during each phase against idle before and after (the goal:
    /// at least half). What it leaves out is the daemons' CPU: BIRD and
    /// the kernel's side of the feed have a core of their own here.
    /// `RTSYNC_1M_N=1000000 cargo test --release -p softnet forwarding_during_a_feed -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement"]
    fn forwarding_during_a_feed_from_the_datagrams() {
        use softnet_core::time::{Clock, MonotonicClock};
        use softnet_core::worker::Worker;
        let n: u32 = std::env::var("RTSYNC_1M_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        let batch = 25_000;
        let case = crate::bench::BenchCase { workers: 1, routes: 100_000, flows: 10_000 };
        let (stack, counters) = crate::bench::build(case).unwrap();
        let ifw = stack.ifaces.load().by_name("r1").unwrap().weak();
        let prefix = |i: u32| Ipv4Addr::from(0x2000_0000 + (i << 8));
        let adds: Vec<Vec<u8>> = (0..n).map(|i| route_datagram(prefix(i), 24, true)).collect();
        let dels: Vec<Vec<u8>> = scattered_order(n).into_iter().map(|i| route_datagram(prefix(i), 24, false)).collect();
        let ncpu = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
        assert!(ncpu >= 2, "needs a core for the worker and one for the feed");
        crate::bench::pin(0);
        let stop = Arc::new(AtomicBool::new(false));
        let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
        let worker = {
            let (w, stop) = (Worker::new(0, stack.clone(), clock), stop.clone());
            std::thread::spawn(move || {
                crate::bench::pin(ncpu - 1);
                w.run(&stop, |_, _, _| std::hint::spin_loop())
            })
        };
        let sent = || counters.iter().map(|c| c.0.get()).sum::<u64>();
        let rate = |f: &mut dyn FnMut()| {
            let (c0, t0) = (sent(), Instant::now());
            f();
            (sent() - c0) as f64 / t0.elapsed().as_secs_f64()
        };
        let idle = |secs: f64| rate(&mut || std::thread::sleep(Duration::from_secs_f64(secs)));
        std::thread::sleep(Duration::from_millis(300));
        let (me, _own) = stack.routes.monitor().subscribe_others();
        let stats = SyncStats::default();
        let nh = NhCache::default();
        let (mut v4, mut v6) = (Mirror::default(), Mirror::default());
        let (mut unres4, mut evs) = (BTreeSet::new(), Vec::new());
        let mut resolver = |k: u32| (k == 42).then_some(ifw);
        let mut feed = |wire: &[Vec<u8>]| {
            let c0 = thread_cpu();
            for d in wire {
                netlink::parse(d, 254, &mut evs);
                for ev in evs.drain(..) {
                    match ev {
                        Event::New(t) => enter_route(t, true, &mut v4, &mut v6).unwrap(),
                        Event::Del(t) => enter_route(t, false, &mut v4, &mut v6).unwrap(),
                        _ => panic!("only routes here"),
                    }
                }
                if v4.pending() >= batch {
                    let ctx = &mut FlushCtx { ifs: &mut resolver, nh: &nh, stats: &stats, source: Some(me) };
                    apply::flush(&stack.routes, RTABLE, &mut v4, ctx, &mut unres4);
                }
            }
            let ctx = &mut FlushCtx { ifs: &mut resolver, nh: &nh, stats: &stats, source: Some(me) };
            apply::flush(&stack.routes, RTABLE, &mut v4, ctx, &mut unres4);
            thread_cpu() - c0
        };
        let before = idle(2.0);
        let mut add_cpu = Duration::ZERO;
        let during_add = rate(&mut || add_cpu = feed(&adds));
        let routes = stack.routes.routes_of::<Ipv4Addr>(RTABLE).len();
        let between = idle(2.0);
        let mut del_cpu = Duration::ZERO;
        let during_del = rate(&mut || del_cpu = feed(&dels));
        let left = stack.routes.routes_of::<Ipv4Addr>(RTABLE).len();
        let after = idle(2.0);
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        assert!(routes >= n as usize + case.routes, "{routes} routes after the announce");
        assert!(left < routes - n as usize + 1, "{left} routes after the withdrawal");
        let base = (before + after) / 2.0;
        println!("idle forwarding: {before:.0} / {between:.0} / {after:.0} pps (before, between, after)");
        for (what, during, cpu) in [("announce", during_add, add_cpu), ("withdraw", during_del, del_cpu)] {
            println!(
                "{what} {n}: the sync {:.2} s CPU ({:.0} routes/s); forwarding {during:.0} pps = {:.2} of idle",
                cpu.as_secs_f64(),
                f64::from(n) / cpu.as_secs_f64(),
                during / base
            );
        }
    }

    #[test]
    fn table_names_and_numbers() {
        let s = |x: &str| toml::Value::String(x.into());
        assert_eq!(parse_table(&s("main")), Ok(254));
        assert_eq!(parse_table(&toml::Value::Integer(100)), Ok(100));
        assert_eq!(parse_table(&s("100")), Ok(100));
        assert!(parse_table(&s("local")).unwrap_err().contains("local table"));
        assert!(parse_table(&toml::Value::Integer(0)).is_err());
        assert!(parse_table(&toml::Value::Integer(-3)).unwrap_err().contains("out of range"));
        assert!(parse_table(&s("no-such-table")).unwrap_err().contains("unknown kernel routing table"));
        assert!(parse_table(&toml::Value::Boolean(true)).is_err());
    }

    #[test]
    fn a_bad_sync_routes_is_a_config_error_with_its_line() {
        use crate::config::Config;
        use std::path::Path;
        let parse = |s: &str| Config::parse(s, Path::new("softnet.toml"));
        assert_eq!(parse("workers = 1\nsync_routes = \"main\"\n").unwrap().sync_routes, Some(254));
        assert_eq!(parse("sync_routes = 1000\n").unwrap().sync_routes, Some(1000));
        assert_eq!(parse("workers = 1\n").unwrap().sync_routes, None);
        let e = parse("workers = 1\nsync_routes = \"nosuch\"\n").unwrap_err().to_string();
        assert_eq!(e, "softnet.toml line 2: sync_routes: unknown kernel routing table \"nosuch\"");
        let e = parse("sync_routes = 255\n").unwrap_err().to_string();
        assert!(e.starts_with("softnet.toml line 1: sync_routes: the local table"), "{e}");
    }
}
