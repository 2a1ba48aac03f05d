//! `softnet up` and `softnet check`: the daemon in the foreground.
//!
//! Threads: N workers (the data path) and the control thread, which is the
//! main thread: it accepts control connections (each served on a thread of
//! its own), handles signals (TERM/INT stop, HUP reloads) and runs a 1 s
//! timer (ARP expiry, carrier polling, freeing old route snapshots).

use crate::config::{Addr6, Config, Driver, InterfaceConf, Route6Conf, RouteConf, RouteVia};
use crate::control::{Handler, Server};
use crate::links;
use anyhow::{anyhow, bail, Context};
use softnet_core::iface::IfAddr;
use softnet_core::stack::{RouteTarget, RouteTarget6, Stack, StackConfig};
use softnet_core::time::Clock;
use softnet_core::worker::Worker;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a worker that found nothing to do keeps polling its queues
/// before it sleeps in poll(2): a time, not a count of rounds, because a
/// round's cost differs by a hundredfold between links (a TAP read through
/// io_uring's ring is a look at memory, a `readv` that says EAGAIN a
/// system call), and what the spin buys is latency: a request's answer
/// that comes back within it is read at once, without the wake-up.
const SPIN_TIME: Duration = Duration::from_micros(50);
/// Longest a worker sleeps in poll(2): bounds how late it sees `stop` and
/// frames on links without a descriptor.
const POLL_TIMEOUT_MS: i32 = 10;
const TICK: Duration = Duration::from_secs(1);

pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// `softnet check -c FILE`.
pub fn check(path: &Path) -> i32 {
    match Config::load(path).map_err(anyhow::Error::from).and_then(|c| preflight(&c).map(|_| c)) {
        Ok(_) => {
            println!("configuration OK");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// What `up` refuses beyond what the parser does: in-memory links.
pub(crate) fn preflight(c: &Config) -> anyhow::Result<()> {
    for i in &c.interfaces {
        if i.driver == Driver::Virtual {
            bail!(
                "{} line {}: interface {:?}: driver \"virtual\" exists only in memory, for `softnet demo` and tests; use tap, packet or xdp",
                c.path.display(),
                i.line,
                i.name
            );
        }
    }
    if let Some(pf) = &c.pf {
        // The ruleset is checked offline against the configured interfaces
        // (at start it is loaded against the live ones).
        let text = std::fs::read_to_string(pf).map_err(|e| anyhow!("{}: {e}", pf.display()))?;
        let resolver = crate::pfctl::resolver_from_config(c);
        if let Err(errs) = softnet_pf::load_ruleset(&text, &pf.display().to_string(), &resolver) {
            bail!("{}", errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"));
        }
    }
    if let Some(u) = &c.user {
        crate::privsep::lookup_user(u).map_err(|e| anyhow!("{}: {e}", c.path.display()))?;
    }
    if let Some(g) = &c.control_group {
        crate::privsep::lookup_group(g).map_err(|e| anyhow!("{}: {e}", c.path.display()))?;
    }
    Ok(())
}

/// Log lines on stderr: text, or one JSON object per line (`json`:
/// `log_format = "json"` or `--log-json`) with the time, level, message
/// and fields, for a log collector to read without patterns.
pub(crate) fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::new(level);
    let fmt = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(false);
    let _ = if json {
        fmt.json().flatten_event(true).try_init()
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init()
    };
}

/// `softnet up -c FILE [--log LEVEL] [--log-json]`; returns the exit code.
pub fn up(path: &Path, log: Option<&str>, log_json: bool) -> i32 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    init_logging(log.unwrap_or(&config.log), log_json || config.log_json);
    if let Err(e) = preflight(&config) {
        eprintln!("error: {e}");
        return 1;
    }
    match Daemon::start(config) {
        Ok(d) => {
            d.run();
            0
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// The running daemon.
pub struct Daemon {
    stack: Arc<Stack>,
    config: Config,
    stop: Arc<AtomicBool>,
    server: Server,
    workers: Vec<std::thread::JoinHandle<()>>,
    pf: Arc<crate::pfglue::PfService>,
    /// The interfaces' host twins (`hostif.rs`), mirrored every tick.
    hosts: std::sync::Mutex<crate::hostif::HostTwins>,
    /// The kernel table mirrored (`sync_routes`), if any.
    rtsync: Option<crate::rtsync::RouteSync>,
    /// Where `netstat -s` finds the sync's counters.
    rtsync_stats: Arc<arc_swap::ArcSwapOption<crate::rtsync::SyncStats>>,
    /// The Prometheus endpoint (`metrics = "ADDR:PORT"`).
    metrics: Option<crate::metrics::http::MetricsServer>,
    /// systemd readiness (`$NOTIFY_SOCKET`).
    notify: crate::notify::Notifier,
}

impl Daemon {
    /// Builds everything and starts the workers; nothing is left running if
    /// it fails.
    pub fn start(config: Config) -> anyhow::Result<Daemon> {
        let stack = Stack::new(StackConfig {
            workers: config.workers,
            forwarding: config.forwarding,
            forwarding6: config.forwarding6,
            send_redirects: config.redirects,
            directed_broadcast: config.directed_broadcast,
            icmp_err_rate: config.icmp_errors_per_second,
            icmp_err_burst: config.icmp_errors_per_second,
            bmcast_echo: config.broadcast_echo,
            ..StackConfig::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(Handler::new(stack.clone(), stop.clone()));
        let pf = handler.pf.clone();
        let rtsync_stats = handler.rtsync.clone();
        // The socket first: a second daemon stops here, before it touches
        // the devices of the first.
        let mut server = Server::bind(&config.control, handler)?;
        if let Some(g) = &config.control_group {
            let gid = crate::privsep::lookup_group(g).map_err(|e| anyhow!("control_group: {e}"))?;
            server.allow_group(gid)?;
        }
        let account = config.user.as_deref().map(crate::privsep::lookup_user).transpose().map_err(|e| anyhow!(e))?;
        // The metrics port next, on the OS's stack: one in use stops the
        // start here too.
        let metrics = match config.metrics {
            Some(addr) => {
                let src = crate::metrics::Sources::new(stack.clone(), pf.pf.clone());
                let m = crate::metrics::http::MetricsServer::start(addr, src)
                    .with_context(|| format!("{}: metrics {addr}", config.path.display()))?;
                tracing::info!("metrics: http://{}/metrics", m.local_addr());
                Some(m)
            }
            None => None,
        };
        let notify = crate::notify::Notifier::from_env();
        let hosts = Default::default();
        let mut d = Daemon {
            stack,
            config,
            stop,
            server,
            workers: Vec::new(),
            pf,
            hosts,
            metrics,
            notify,
            rtsync: None,
            rtsync_stats,
        };
        for ic in d.config.interfaces.clone() {
            d.create_interface(&ic)?;
        }
        // After the configured interfaces, which keep indices 1, 2, ... (as
        // OpenBSD attaches its devices before lo0).
        d.create_loopback()?;
        for rc in d.config.routes.clone() {
            d.add_route(&rc).with_context(|| format!("{}: route {}", d.config.path.display(), route_words(&rc)))?;
        }
        for rc in d.config.routes6.clone() {
            d.add_route6(&rc).with_context(|| format!("{}: route {}", d.config.path.display(), route6_words(&rc)))?;
        }
        if let Some(table) = d.config.sync_routes {
            // After the configured routes: they are softnet's own, and a
            // kernel route to the same prefix does not replace them.
            d.rtsync = Some(d.start_rtsync(table)?);
        }
        if let Some(path) = d.config.pf.clone() {
            // After the interfaces: the ruleset may name them.
            d.pf.load_file(&path).map_err(|e| anyhow!("{}", e.trim_end()))?;
            let _ = d.pf.enable();
            tracing::info!("pf: {} loaded, pf enabled", path.display());
        }
        if let Some(path) = d.config.pflog.clone() {
            let queue = Arc::new(softnet_pf::pflog::PflogQueue::new(4096));
            d.pf.pf.set_pflog(Some(queue.clone()));
            let h = crate::pfglue::spawn_pflog_writer(queue, path.clone(), d.stack.clone(), d.stop.clone())
                .with_context(|| format!("pflog {}", path.display()))?;
            d.workers.push(h);
            tracing::info!("pflog: logging to {}", path.display());
        }
        // Everything that needs root is open: devices, the socket, pflog.
        if let Some(a) = &account {
            crate::privsep::drop_to(a).map_err(|e| anyhow!("user {:?}: {e}", a.name))?;
            tracing::info!("running as {} (uid {}, gid {})", a.name, a.uid, a.gid);
        }
        // Sockets not given an owner belong to the process (pf's `user`
        // and `group`), as the user it runs as from now on.
        d.stack.socks.set_default_owner(crate::privsep::process_owner());
        d.spawn_workers()?;
        tracing::info!(
            "softnet up: {} worker(s), {} interface(s), control socket {}",
            d.config.workers,
            d.config.interfaces.len(),
            d.server.path().display()
        );
        Ok(d)
    }

    /// The stack the daemon runs (for a program that embeds it).
    pub fn stack(&self) -> Arc<Stack> {
        self.stack.clone()
    }

    fn spawn_workers(&mut self) -> anyhow::Result<()> {
        // The workers' clock is the stack's: ARP times agree.
        let clock: Arc<dyn Clock> = self.stack.clock.clone();
        let wake = SockWake::new(self.config.workers)?;
        let w2 = wake.clone();
        self.stack.socks.set_waker(Box::new(move |i| w2.wake(i)));
        for i in 0..self.config.workers {
            let w = Worker::new(i, self.stack.clone(), clock.clone());
            let stop = self.stop.clone();
            let wake = wake.clone();
            let h = std::thread::Builder::new()
                .name(format!("softnet-w{i}"))
                .spawn(move || w.run(&stop, poll_idle_woken(Some(wake))))
                .context("cannot start a worker thread")?;
            self.workers.push(h);
        }
        Ok(())
    }

    /// lo0 (softnet_core::loopback), with what the configuration's lo0
    /// entry adds: addresses it does not have yet, groups, an mtu.
    fn create_loopback(&self) -> anyhow::Result<()> {
        let lo = self.stack.create_loopback().map_err(|e| anyhow!("lo0: {e}"))?;
        let Some(ic) = &self.config.loopback else { return Ok(()) };
        for a in ic.addrs.iter().filter(|a| !lo.has_addr(a.addr)) {
            self.stack.add_address(&ic.name, *a).map_err(|e| anyhow!("interface {:?}: address {a}: {e}", ic.name))?;
        }
        for a in ic.addrs6.iter().filter(|a| lo.addr6_state(a.addr).is_none()) {
            let r = self.stack.add_address6(&ic.name, a.addr, a.prefix_len);
            r.map_err(|e| anyhow!("interface {:?}: address {a}: {e}", ic.name))?;
        }
        for g in &ic.groups {
            self.stack.add_group(&ic.name, g).map_err(|e| anyhow!("interface {:?}: {e}", ic.name))?;
        }
        if let Some(mtu) = ic.mtu {
            lo.set_mtu(mtu);
        }
        Ok(())
    }

    /// Opens the link and creates, addresses and brings up one interface.
    fn create_interface(&self, ic: &InterfaceConf) -> anyhow::Result<()> {
        let link = links::open(ic, self.config.workers)?;
        let mac = ic.mac.unwrap_or(link.mac);
        let mtu = ic.mtu.unwrap_or(link.mtu);
        let nq = link.queues.len();
        self.stack.create_interface(&ic.name, mac, mtu, link.queues).map_err(|e| anyhow!("{e}"))?;
        match crate::hostif::open_for(&self.stack, ic, mac, mtu, self.config.workers) {
            Ok(Some(twin)) => self.hosts.lock().expect("hosts").add(twin),
            Ok(None) => {}
            Err(e) => {
                let _ = self.stack.destroy_interface(&ic.name);
                return Err(e);
            }
        }
        for a in &ic.addrs {
            if let Err(e) = self.stack.add_address(&ic.name, *a) {
                let _ = self.stack.destroy_interface(&ic.name);
                bail!("interface {:?}: address {a}: {e}", ic.name);
            }
        }
        for a in &ic.addrs6 {
            // The automatic link-local address, written out in the config.
            let auto = softnet_wire::ipv6::link_local_from_mac(mac);
            if a.addr == auto && a.prefix_len == 64 {
                continue;
            }
            if let Err(e) = self.stack.add_address6(&ic.name, a.addr, a.prefix_len) {
                let _ = self.stack.destroy_interface(&ic.name);
                bail!("interface {:?}: address {a}: {e}", ic.name);
            }
        }
        for g in &ic.groups {
            self.stack.add_group(&ic.name, g).map_err(|e| anyhow!("interface {:?}: {e}", ic.name))?;
        }
        self.stack.set_up(&ic.name, true).map_err(|e| anyhow!("{e}"))?;
        self.stack.set_link_state(&ic.name, links::carrier(ic)).map_err(|e| anyhow!("{e}"))?;
        if let Some(ra) = &ic.ra {
            self.stack.set_router_adv(&ic.name, Some(ra.clone())).map_err(|e| anyhow!("{e}"))?;
        }
        if ic.host.is_some() {
            // The twin's addresses, carrier and MTU at once, not a tick later.
            self.hosts.lock().expect("hosts").sync(&self.stack);
        }
        tracing::info!(
            "{}: {} {} lladdr {mac} mtu {mtu}, {nq} queue(s), {} address(es)",
            ic.name,
            ic.driver.name(),
            ic.device,
            ic.addrs.len() + ic.addrs6.len()
        );
        Ok(())
    }

    /// The route sync of kernel table `table` (rtsync/). The receive
    /// buffer can be made small for tests that overrun it on purpose
    /// (SOFTNET_RTSYNC_RCVBUF, bytes).
    fn start_rtsync(&self, table: u32) -> anyhow::Result<crate::rtsync::RouteSync> {
        let rcvbuf = std::env::var("SOFTNET_RTSYNC_RCVBUF")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(crate::rtsync::DEFAULT_RCVBUF);
        // Kernel interfaces that are softnet's: the devices it attaches to
        // and the interfaces' host twins (a daemon's routes name those).
        let links = self.config.interfaces.iter().flat_map(|i| {
            let host = i.host.clone().map(|h| (h, i.name.clone()));
            std::iter::once((i.device.clone(), i.name.clone())).chain(host)
        });
        let links = links.collect();
        let conf = crate::rtsync::SyncConf { table, rcvbuf };
        let s = crate::rtsync::RouteSync::start(self.stack.clone(), conf, links)
            .with_context(|| format!("sync_routes: kernel table {table}"))?;
        self.rtsync_stats.store(Some(s.stats.clone()));
        Ok(s)
    }

    fn add_route(&self, rc: &RouteConf) -> anyhow::Result<()> {
        self.stack.add_route(rc.rtable, rc.dest, rc.prefix_len, target(&rc.via)).map_err(|e| match &e {
            softnet_core::stack::StackError::Route(r) => anyhow!("{}", r.strerror()),
            _ => anyhow!("{e}"),
        })
    }

    fn add_route6(&self, rc: &Route6Conf) -> anyhow::Result<()> {
        let r = self.stack.add_route6(rc.rtable, rc.dest, rc.prefix_len, rc.scope.as_deref(), &rc.via);
        r.map_err(|e| match &e {
            softnet_core::stack::StackError::Route(r) => anyhow!("{}", r.strerror()),
            _ => anyhow!("{e}"),
        })
    }

    /// Whether a configured IPv6 route is in the table.
    fn has_route6(&self, rc: &Route6Conf) -> bool {
        let scope = rc.scope.as_deref().and_then(|n| self.stack.scope_index(n)).unwrap_or_default();
        self.stack.routes.get_scoped(rc.rtable, rc.dest, rc.prefix_len, scope).is_some()
    }

    /// The control thread's loop, until SIGTERM or SIGINT.
    pub fn run(mut self) {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot handle signals: {e}");
                self.shutdown();
                return;
            }
        };
        // Up, and the signals handled: tell systemd (Type=notify).
        self.notify.ready(&self.status_line());
        let mut next_tick = Instant::now() + TICK;
        'run: loop {
            let wait = next_tick.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
            self.server.accept_for(wait);
            for sig in signals.pending() {
                match sig {
                    SIGHUP => {
                        self.notify.reloading();
                        self.reload();
                        self.notify.ready(&self.status_line());
                    }
                    _ => {
                        tracing::info!("signal {sig}: stopping");
                        break 'run;
                    }
                }
            }
            // Router advertisements answer solicitations within
            // MAX_RA_DELAY_TIME: more often than the tick.
            self.stack.rtadv_timer();
            if Instant::now() >= next_tick {
                self.tick();
                self.notify.watchdog();
                next_tick += TICK;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + TICK;
                }
            }
        }
        self.shutdown();
    }

    /// What `systemctl status` shows while running.
    fn status_line(&self) -> String {
        // The interfaces on devices: lo0 is always there.
        let n = self.stack.ifaces.load().iter().filter(|i| !i.is_loopback()).count();
        format!("up: {} worker(s), {n} interface(s)", self.config.workers)
    }

    fn shutdown(mut self) {
        self.notify.stopping();
        // RFC 4861 §6.2.5: hosts stop using a router that goes away.
        self.stack.rtadv_shutdown();
        drop(self.rtsync.take());
        self.stop.store(true, Ordering::SeqCst);
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        drop(self.metrics.take());
        tracing::info!("softnet stopped");
        // Dropping the server removes the socket.
    }

    /// Once a second: ARP expiry, carrier changes, freeing old snapshots.
    fn tick(&self) {
        // ARP expiry, old route snapshots freed, the filter's housekeeping.
        self.stack.tick();
        for ic in &self.config.interfaces {
            let state = links::carrier(ic);
            // An interface destroyed by ifconfig is simply skipped.
            let _ = self.stack.set_link_state(&ic.name, state);
        }
        self.hosts.lock().expect("hosts").sync(&self.stack);
    }

    /// SIGHUP: re-read the configuration and apply what changed.
    fn reload(&mut self) {
        let new =
            match Config::load(&self.config.path).map_err(anyhow::Error::from).and_then(|c| preflight(&c).map(|_| c)) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("reload: {e}; keeping the running configuration");
                    return;
                }
            };
        tracing::info!("reload: {}", new.path.display());
        let old = std::mem::replace(&mut self.config, new.clone());
        // What cannot change while running.
        if new.workers != old.workers {
            tracing::warn!("reload: workers {} -> {} takes effect at the next restart", old.workers, new.workers);
            self.config.workers = old.workers;
        }
        if new.control != old.control {
            tracing::warn!(
                "reload: control socket {} -> {} takes effect at the next restart",
                old.control.display(),
                new.control.display()
            );
            self.config.control = old.control.clone();
        }
        if new.metrics != old.metrics {
            tracing::warn!("reload: metrics endpoint change takes effect at the next restart");
            self.config.metrics = old.metrics;
        }
        if new.log != old.log || new.log_json != old.log_json {
            tracing::warn!("reload: log level or format change takes effect at the next restart");
        }
        if new.sync_routes != old.sync_routes {
            // The old sync's routes stay until the new one's resync sweeps
            // them (or for good, when the sync is turned off).
            drop(self.rtsync.take());
            match new.sync_routes.map(|t| self.start_rtsync(t)) {
                Some(Ok(s)) => self.rtsync = Some(s),
                Some(Err(e)) => tracing::error!("reload: {e:#}"),
                None => {
                    self.rtsync_stats.store(None);
                    tracing::info!("reload: route sync stopped")
                }
            }
        }
        let mut plan = ReloadPlan::new(&old, &new);
        // Interfaces of the configuration destroyed at run time
        // (`ifconfig IF destroy`) come back.
        for n in &new.interfaces {
            let known = plan.ifaces_added.iter().any(|i| i.name == n.name);
            if !known && self.stack.ifaces.load().by_name(&n.name).is_none() {
                plan.ifaces_added.push(n.clone());
            }
        }
        // Routes first (they may go through interfaces about to go), then
        // interfaces and addresses, then the new routes.
        for rc in &plan.routes_removed {
            match self.stack.routes.get(rc.rtable, rc.dest, rc.prefix_len) {
                Some(_) => match self.stack.delete_route(rc.rtable, rc.dest, rc.prefix_len) {
                    Ok(()) => tracing::info!("reload: route {} removed", route_words(rc)),
                    Err(e) => tracing::warn!("reload: route {}: {e}", route_words(rc)),
                },
                None => tracing::info!("reload: route {} was already gone", route_words(rc)),
            }
        }
        for rc in old.routes6.iter().filter(|r| !new.routes6.contains(r)) {
            let r = self.stack.delete_route6(rc.rtable, rc.dest, rc.prefix_len, rc.scope.as_deref());
            match r {
                Ok(()) => tracing::info!("reload: route {} removed", route6_words(rc)),
                Err(e) => tracing::info!("reload: route {}: {e}", route6_words(rc)),
            }
        }
        for name in &plan.ifaces_removed {
            match self.stack.destroy_interface(name) {
                Ok(()) => tracing::info!("reload: {name} destroyed"),
                Err(e) => tracing::warn!("reload: {name}: {e}"),
            }
        }
        // The twins of destroyed interfaces go now, so that one re-created
        // under the same host name finds the name free.
        self.hosts.lock().expect("hosts").sync(&self.stack);
        for (name, a) in &plan.addrs_removed {
            match self.stack.delete_address(name, a.addr) {
                Ok(()) => tracing::info!("reload: {name}: address {a} removed"),
                Err(e) => tracing::warn!("reload: {name}: {e}"),
            }
        }
        for (name, a) in &plan.addrs6_removed {
            match self.stack.delete_address6(name, a.addr) {
                Ok(()) => tracing::info!("reload: {name}: address {a} removed"),
                Err(e) => tracing::warn!("reload: {name}: {e}"),
            }
        }
        for (name, mtu) in &plan.mtu_changed {
            let device = self.config.interfaces.iter().find(|i| &i.name == name).map(|i| i.device.clone());
            let mtu = match (mtu, device) {
                (Some(m), _) => *m,
                (None, Some(dev)) => match softnet_io::mtu(&dev) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("reload: {name}: mtu of {dev}: {e}");
                        continue;
                    }
                },
                (None, None) => continue,
            };
            if let Some(ifp) = self.stack.ifaces.load().by_name(name) {
                ifp.set_mtu(mtu);
                tracing::info!("reload: {name}: mtu {mtu}");
            }
        }
        // Groups of interfaces kept: the configuration's changes only (a
        // group added at run time with ifconfig stays).
        for n in &new.interfaces {
            let Some(o) = old.interfaces.iter().find(|o| o.name == n.name) else { continue };
            for g in o.groups.iter().filter(|g| !n.groups.contains(g)) {
                match self.stack.del_group(&n.name, g) {
                    Ok(()) => tracing::info!("reload: {}: group {g} removed", n.name),
                    Err(e) => tracing::warn!("reload: {e}"),
                }
            }
            for g in n.groups.iter().filter(|g| !o.groups.contains(g)) {
                match self.stack.add_group(&n.name, g) {
                    Ok(()) => tracing::info!("reload: {}: group {g} added", n.name),
                    Err(e) => tracing::warn!("reload: {e}"),
                }
            }
        }
        for ic in &plan.ifaces_added {
            match self.create_interface(ic) {
                Ok(()) => tracing::info!("reload: {} created", ic.name),
                Err(e) => tracing::error!("reload: {e:#}"),
            }
        }
        for (name, a) in &plan.addrs_added {
            match self.stack.add_address(name, *a) {
                Ok(()) => tracing::info!("reload: {name}: address {a} added"),
                Err(e) => tracing::warn!("reload: {name}: {e}"),
            }
        }
        for (name, a) in &plan.addrs6_added {
            match self.stack.add_address6(name, a.addr, a.prefix_len) {
                Ok(()) => tracing::info!("reload: {name}: address {a} added"),
                Err(e) => tracing::warn!("reload: {name}: {e}"),
            }
        }
        // Router advertisements: changed, new or removed (a final one with
        // router lifetime 0).
        for n in &new.interfaces {
            if self.stack.ifaces.load().by_name(&n.name).is_none() || self.stack.router_adv(&n.name) == n.ra {
                continue;
            }
            match self.stack.set_router_adv(&n.name, n.ra.clone()) {
                Ok(()) if n.ra.is_some() => tracing::info!("reload: {}: router advertisements configured", n.name),
                Ok(()) => tracing::info!("reload: {}: router advertisements stopped", n.name),
                Err(e) => tracing::warn!("reload: {e}"),
            }
        }
        // New routes, and configured routes that went missing (with an
        // interface destroyed and created again, say). Routes added at run
        // time with `route add` are not the configuration's business.
        for rc in &new.routes {
            let known = old.routes.contains(rc);
            if known && self.stack.routes.get(rc.rtable, rc.dest, rc.prefix_len).is_some() {
                continue;
            }
            match self.add_route(rc) {
                Ok(()) => tracing::info!("reload: route {} added", route_words(rc)),
                Err(e) => tracing::warn!("reload: route {}: {e}", route_words(rc)),
            }
        }
        for rc in &new.routes6 {
            if old.routes6.contains(rc) && self.has_route6(rc) {
                continue;
            }
            match self.add_route6(rc) {
                Ok(()) => tracing::info!("reload: route {} added", route6_words(rc)),
                Err(e) => tracing::warn!("reload: route {}: {e}", route6_words(rc)),
            }
        }
        if let Some(path) = &new.pf {
            // pfctl -f semantics: atomic, states kept; a bad ruleset changes nothing.
            match self.pf.load_file(path) {
                Ok(()) => {
                    // A ruleset newly configured is enabled; otherwise pf
                    // stays as pfctl -e/-d left it.
                    if old.pf.is_none() {
                        let _ = self.pf.enable();
                    }
                    tracing::info!("reload: pf: {} loaded", path.display());
                }
                Err(e) => tracing::warn!("reload: pf: {}: ruleset kept", e.trim_end()),
            }
        } else if old.pf.is_some() {
            let _ = self.pf.disable();
            tracing::info!("reload: pf disabled (no pf in the configuration)");
        }
    }
}

fn target(v: &RouteVia) -> RouteTarget {
    match v {
        RouteVia::Gateway(g) => RouteTarget::Gateway(*g),
        RouteVia::Interface(i) => RouteTarget::Interface(i.clone()),
        RouteVia::Reject => RouteTarget::Reject,
        RouteVia::Blackhole => RouteTarget::Blackhole,
    }
}

fn route_words(rc: &RouteConf) -> String {
    let dest = if rc.prefix_len == 0 && rc.dest.is_unspecified() {
        "default".to_string()
    } else {
        format!("{}/{}", rc.dest, rc.prefix_len)
    };
    let via = match &rc.via {
        RouteVia::Gateway(g) => format!("gateway {g}"),
        RouteVia::Interface(i) => format!("interface {i}"),
        RouteVia::Reject => "reject".into(),
        RouteVia::Blackhole => "blackhole".into(),
    };
    let table = if rc.rtable != 0 { format!(" (rtable {})", rc.rtable) } else { String::new() };
    format!("{dest} {via}{table}")
}

fn route6_words(rc: &Route6Conf) -> String {
    let scope = rc.scope.as_ref().map(|s| format!("%{s}")).unwrap_or_default();
    let dest = if rc.prefix_len == 0 && rc.dest.is_unspecified() {
        "default".to_string()
    } else {
        format!("{}{scope}/{}", rc.dest, rc.prefix_len)
    };
    let via = match &rc.via {
        RouteTarget6::Gateway(g, Some(s)) => format!("gateway {g}%{s}"),
        RouteTarget6::Gateway(g, None) => format!("gateway {g}"),
        RouteTarget6::Interface(i) => format!("interface {i}"),
        RouteTarget6::Reject => "reject".into(),
        RouteTarget6::Blackhole => "blackhole".into(),
    };
    let table = if rc.rtable != 0 { format!(" (rtable {})", rc.rtable) } else { String::new() };
    format!("{dest} {via}{table}")
}

/// What a reload changes: the difference of two configurations.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    pub routes_removed: Vec<RouteConf>,
    /// Interfaces gone from the configuration, or whose link changed (they
    /// are destroyed and created again).
    pub ifaces_removed: Vec<String>,
    pub ifaces_added: Vec<InterfaceConf>,
    pub addrs_removed: Vec<(String, IfAddr)>,
    pub addrs_added: Vec<(String, IfAddr)>,
    pub addrs6_removed: Vec<(String, Addr6)>,
    pub addrs6_added: Vec<(String, Addr6)>,
    /// New MTU per interface; `None`: the `mtu` line went away, back to
    /// the device's MTU (what a restart would give).
    pub mtu_changed: Vec<(String, Option<u32>)>,
}

/// Whether two entries name the same link (the rest can change in place).
fn same_link(a: &InterfaceConf, b: &InterfaceConf) -> bool {
    a.driver == b.driver
        && a.device == b.device
        && a.mac == b.mac
        && a.host == b.host
        && a.xdp_generic == b.xdp_generic
        && a.rx_ring == b.rx_ring
        && a.offload == b.offload
}

impl ReloadPlan {
    pub fn new(old: &Config, new: &Config) -> ReloadPlan {
        let mut p = ReloadPlan {
            routes_removed: old.routes.iter().filter(|r| !new.routes.contains(r)).cloned().collect(),
            ..ReloadPlan::default()
        };
        for o in &old.interfaces {
            match new.interfaces.iter().find(|n| n.name == o.name) {
                None => p.ifaces_removed.push(o.name.clone()),
                Some(n) if !same_link(o, n) => {
                    p.ifaces_removed.push(o.name.clone());
                    p.ifaces_added.push(n.clone());
                }
                Some(n) => {
                    for a in o.addrs.iter().filter(|a| !n.addrs.contains(a)) {
                        p.addrs_removed.push((o.name.clone(), *a));
                    }
                    for a in n.addrs.iter().filter(|a| !o.addrs.contains(a)) {
                        p.addrs_added.push((n.name.clone(), *a));
                    }
                    for a in o.addrs6.iter().filter(|a| !n.addrs6.contains(a)) {
                        p.addrs6_removed.push((o.name.clone(), *a));
                    }
                    for a in n.addrs6.iter().filter(|a| !o.addrs6.contains(a)) {
                        p.addrs6_added.push((n.name.clone(), *a));
                    }
                    if n.mtu != o.mtu {
                        p.mtu_changed.push((n.name.clone(), n.mtu));
                    }
                }
            }
        }
        for n in &new.interfaces {
            if !old.interfaces.iter().any(|o| o.name == n.name) {
                p.ifaces_added.push(n.clone());
            }
        }
        p
    }
}

/// A worker's idle strategy: spin a little, then sleep in poll(2) on the
/// descriptors of the queues this worker reads, with a short timeout.
/// Allocates once, not per idle round.
pub fn poll_idle() -> impl FnMut(&Stack, usize, u32) {
    poll_idle_woken(None)
}

/// One eventfd per worker that an application's socket call writes to
/// wake the worker its work was queued for (the connection's owner, see
/// softnet_core::sock), while it sleeps in poll(2) (only while it sleeps:
/// no system call per write on a busy stack). One per worker, not one
/// shared: a worker that drained a shared one could leave the owner
/// asleep until its poll timeout.
pub struct SockWake {
    fds: Vec<i32>,
    sleepers: Vec<std::sync::atomic::AtomicUsize>,
}

impl SockWake {
    fn new(workers: usize) -> anyhow::Result<Arc<SockWake>> {
        let mut w = SockWake { fds: Vec::new(), sleepers: Vec::new() };
        for _ in 0..workers.max(1) {
            // SAFETY: eventfd(2) with valid flags; the result is checked.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if fd < 0 {
                bail!("eventfd: {}", std::io::Error::last_os_error());
            }
            w.fds.push(fd);
            w.sleepers.push(std::sync::atomic::AtomicUsize::new(0));
        }
        Ok(Arc::new(w))
    }

    fn wake(&self, i: usize) {
        let i = i % self.fds.len();
        if self.sleepers[i].load(Ordering::SeqCst) > 0 {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
            unsafe { libc::write(self.fds[i], (&one as *const u64).cast(), 8) };
        }
    }

    fn drain(&self, i: usize) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from our non-blocking eventfd.
        unsafe { libc::read(self.fds[i], (&mut v as *mut u64).cast(), 8) };
    }
}

impl Drop for SockWake {
    fn drop(&mut self) {
        for &fd in &self.fds {
            // SAFETY: our descriptors, each closed once.
            unsafe { libc::close(fd) };
        }
    }
}

/// `poll_idle` that also wakes on `wake` (the socket layer's eventfd).
pub fn poll_idle_woken(wake: Option<Arc<SockWake>>) -> impl FnMut(&Stack, usize, u32) {
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(64);
    let mut idle_since = Instant::now();
    move |stack: &Stack, id: usize, rounds: u32| {
        if rounds == 1 {
            idle_since = Instant::now();
        }
        if idle_since.elapsed() < SPIN_TIME {
            std::hint::spin_loop();
            return;
        }
        // Held across poll(2) so that no descriptor is closed under it (a
        // destroy waits at most one timeout for this snapshot).
        let ifs = stack.ifaces.load_full();
        fds.clear();
        let slot = wake.as_ref().map_or(0, |w| id % w.fds.len());
        if let Some(w) = &wake {
            fds.push(libc::pollfd { fd: w.fds[slot], events: libc::POLLIN, revents: 0 });
            w.sleepers[slot].fetch_add(1, Ordering::SeqCst);
            if stack.socks.has_pending_for(id) {
                w.sleepers[slot].fetch_sub(1, Ordering::SeqCst);
                return;
            }
        }
        for ifp in ifs.iter() {
            let Some(q) = ifp.queue(id).try_lock() else { continue };
            if let Some(fd) = q.poll_fd() {
                if fds.len() < fds.capacity() {
                    fds.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
                }
            }
            drop(q);
            // What the host sends out of the interface's twin wakes it too.
            let Some(q) = ifp.host().and_then(|h| h.queue(id).try_lock()) else { continue };
            if let Some(fd) = q.poll_fd() {
                if fds.len() < fds.capacity() {
                    fds.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
                }
            }
        }
        if fds.is_empty() {
            std::thread::sleep(Duration::from_micros(200));
            return;
        }
        // SAFETY: `fds` is a valid array of pollfd of that length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, POLL_TIMEOUT_MS) };
        if let Some(w) = &wake {
            w.sleepers[slot].fetch_sub(1, Ordering::SeqCst);
            if fds[0].revents != 0 {
                w.drain(slot);
            }
        }
        drop(ifs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(src: &str) -> Config {
        Config::parse(src, Path::new("softnet.toml")).unwrap()
    }

    const BASE: &str = r#"
workers = 2
[[interface]]
name = "a"
driver = "tap"
addr = ["10.0.1.1/24"]
[[interface]]
name = "b"
driver = "packet"
addr = ["10.0.2.1/24"]
[[route]]
dest = "default"
gateway = "10.0.2.254"
[[route]]
dest = "192.0.2.0/24"
blackhole = true
"#;

    #[test]
    fn reload_plan_is_the_difference() {
        let old = cfg(BASE);
        assert_eq!(ReloadPlan::new(&old, &old), ReloadPlan::default(), "same config, nothing to do");
        let new = cfg(&BASE
            .replace("addr = [\"10.0.1.1/24\"]", "addr = [\"10.0.1.1/24\", \"10.0.9.1/24\"]\nmtu = 1400")
            .replace(
                "[[interface]]\nname = \"b\"\ndriver = \"packet\"",
                "[[interface]]\nname = \"b\"\ndriver = \"tap\"",
            )
            .replace("dest = \"192.0.2.0/24\"\nblackhole = true", "dest = \"198.51.100.0/24\"\nreject = true"));
        let p = ReloadPlan::new(&old, &new);
        assert_eq!(p.routes_removed.len(), 1);
        assert_eq!(p.routes_removed[0].via, RouteVia::Blackhole);
        assert_eq!(p.ifaces_removed, vec!["b".to_string()], "a changed driver recreates the interface");
        assert_eq!(p.ifaces_added.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(p.addrs_added, vec![("a".to_string(), IfAddr::new("10.0.9.1".parse().unwrap(), 24))]);
        assert!(p.addrs_removed.is_empty());
        assert!(p.addrs6_added.is_empty() && p.addrs6_removed.is_empty());
        assert_eq!(p.mtu_changed, vec![("a".to_string(), Some(1400))]);
    }

    #[test]
    fn reload_plan_adds_and_removes_ipv6_addresses() {
        let old = cfg(&BASE.replace("addr = [\"10.0.1.1/24\"]", "addr = [\"10.0.1.1/24\", \"fd00:1::1/64\"]"));
        let new = cfg(&BASE.replace("addr = [\"10.0.1.1/24\"]", "addr = [\"10.0.1.1/24\", \"fd00:9::1/64\"]"));
        let p = ReloadPlan::new(&old, &new);
        let a6 = |s: &str| Addr6 { addr: s.parse().unwrap(), prefix_len: 64 };
        assert_eq!(p.addrs6_removed, vec![("a".to_string(), a6("fd00:1::1"))]);
        assert_eq!(p.addrs6_added, vec![("a".to_string(), a6("fd00:9::1"))]);
        assert!(p.addrs_added.is_empty() && p.addrs_removed.is_empty());
    }

    #[test]
    fn virtual_driver_is_refused_with_its_line() {
        let c = cfg("workers = 1\n\n[[interface]]\nname = \"v0\"\ndriver = \"virtual\"\n");
        let e = preflight(&c).unwrap_err().to_string();
        assert!(e.starts_with("softnet.toml line "), "{e}");
        assert!(e.contains("driver \"virtual\" exists only in memory"), "{e}");
    }
}
