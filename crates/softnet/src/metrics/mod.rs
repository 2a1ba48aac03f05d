//! Prometheus metrics (config `metrics = "ADDR:PORT"`): the stack's and
//! pf's counters in the standard exposition formats, encoded by the
//! prometheus-client crate.
//!
//! Nothing is counted twice: every value is read at scrape time from the
//! counters `netstat -s`, `netstat -i` and `pfctl -si` print (the
//! per-worker `StackStats` and `IfStats`, summed over the workers as
//! OpenBSD sums its per-CPU counters, and pf's `pf_status`), so a scrape
//! costs the data path nothing. Names follow Prometheus' conventions:
//! `softnet_` first, counters end in `_total` (added by the encoder),
//! units in the name (`_bytes`), one family per meaning with labels
//! (`interface`, `worker`, `family`, `reason`, `type`, `label`,
//! `direction`) where the series of a family add up to something.
//!
//! `http` serves them; `softnet top` reads the same text over the control
//! socket (`Request::Metrics`).

pub mod counters;
pub mod http;
#[cfg(test)]
mod tests;
pub mod text;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use softnet_core::link::LinkState;
use softnet_core::percpu::{Counter, CONTROL_SLOT};
use softnet_core::stack::Stack;
use softnet_core::stats::{StackStats, ICMP_NAMES};
use softnet_pf::eval::{LCNT_NAMES, REASON_NAMES};
use softnet_pf::Pf;
use std::sync::Arc;

/// The prefix of every family.
pub const PREFIX: &str = "softnet";

/// The two text formats a scraper may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (what a plain `curl` gets).
    Prometheus,
    /// OpenMetrics 1.0 text (`Accept: application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Where the values come from: the stack and pf of the running daemon.
#[derive(Clone)]
pub struct Sources {
    pub stack: Arc<Stack>,
    pub pf: Pf,
    /// Workers running (their slots are labelled 0..workers; the control
    /// thread's slot is `worker="control"`).
    pub workers: usize,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sources {{ workers: {} }}", self.workers)
    }
}

/// The exposition of everything, in `format`.
pub fn render(src: &Sources, format: Format) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(src.clone()));
    let mut out = String::with_capacity(64 * 1024);
    let r = match format {
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    // Writing to a String fails only on a bug of the encoder.
    debug_assert!(r.is_ok(), "{r:?}");
    out
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A family of counters or gauges with labels: one sample per label set.
fn family<L: prometheus_client::encoding::EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        let s = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(s)?,
            _ => ConstGauge::new(v as i64).encode(s)?,
        }
    }
    Ok(())
}

/// Worker threads' CPU time in clock ticks, from the kernel's per-thread
/// accounting: (worker, user, system) for each thread named
/// `softnet-wN` (the daemon names them so), by worker number.
fn worker_cpu_ticks() -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return out };
    for t in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        // pid (comm) state ... : comm may hold anything, the fields follow
        // its last parenthesis; utime and stime are fields 14 and 15.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let Some(w) = stat[open + 1..close].strip_prefix("softnet-w") else { continue };
        if w.parse::<usize>().is_err() {
            continue;
        }
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let (Some(u), Some(s)) = (f.get(11).and_then(|v| v.parse().ok()), f.get(12).and_then(|v| v.parse().ok()))
        else {
            continue;
        };
        out.push((w.to_string(), u, s));
    }
    out.sort_by_key(|(w, _, _)| w.parse::<usize>().unwrap_or(usize::MAX));
    out
}

/// USER_HZ, the unit of /proc's CPU times.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// The label of worker slot `w`.
fn worker_label(w: usize) -> String {
    if w == CONTROL_SLOT {
        "control".to_string()
    } else {
        w.to_string()
    }
}

impl Sources {
    /// The stack's workers (`StackConfig::workers`) are the ones labelled.
    pub fn new(stack: Arc<Stack>, pf: Pf) -> Sources {
        let workers = stack.config.workers;
        Sources { stack, pf, workers }
    }

    /// The worker slots that are written: the workers' and the control
    /// thread's.
    fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.workers.min(CONTROL_SLOT)).chain(std::iter::once(CONTROL_SLOT))
    }

    fn sum(&self, f: impl Fn(&StackStats) -> &Counter) -> u64 {
        self.stack.stats.sum(f)
    }

    fn encode_protocols(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        for table in counters::ALL {
            for s in *table {
                counter(e, s.name, s.help, self.sum(s.get))?;
            }
        }
        let st = &self.stack.stats;
        for (name, help, out) in [
            ("icmp_received_messages", "ICMP messages received by type (input histogram)", false),
            ("icmp_sent_messages", "ICMP messages sent by type (output histogram)", true),
        ] {
            let samples = ICMP_NAMES.iter().enumerate().map(|(t, n)| {
                let v = st.sum(|s| if out { &s.icmp.outhist[t] } else { &s.icmp.inhist[t] });
                let n = if n.starts_with('#') { t.to_string() } else { n.to_string() };
                ([("type", n)], v)
            });
            family(e, name, help, MetricType::Counter, samples)?;
        }
        for (name, help, out) in [
            ("icmp6_received_messages", "ICMPv6 messages received by type (input histogram)", false),
            ("icmp6_sent_messages", "ICMPv6 messages sent by type (output histogram)", true),
        ] {
            // The types netstat names always, the others once seen.
            let samples = (0..softnet_core::stats6::ICMP6_TYPES).filter_map(|t| {
                let v = st.sum(|s| if out { &s.icmp6.outhist[t] } else { &s.icmp6.inhist[t] });
                let n = softnet_core::stats6::icmp6_name(t);
                (n.is_some() || v != 0).then(|| ([("type", n.map(str::to_string).unwrap_or_else(|| t.to_string()))], v))
            });
            family(e, name, help, MetricType::Counter, samples.collect::<Vec<_>>())?;
        }
        Ok(())
    }

    /// netstat -i's counters, and each interface's flags and MTU.
    fn encode_interfaces(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let ifs = self.stack.ifaces.load();
        let rows: Vec<(String, softnet_core::iface::IfStatsTotal, bool, bool, u32)> = ifs
            .iter()
            .map(|i| (i.name().to_string(), i.stats_total(), i.is_up(), i.link_state() == LinkState::Up, i.mtu()))
            .collect();
        type Get = fn(&softnet_core::iface::IfStatsTotal) -> u64;
        let cols: [(&str, &str, Get); 7] = [
            ("interface_receive_packets", "Packets received on the interface (netstat -i Ipkts)", |s| s.ipackets),
            ("interface_receive_bytes", "Bytes received on the interface", |s| s.ibytes),
            ("interface_receive_errors", "Input errors on the interface (netstat -i Ifail)", |s| s.ierrors),
            ("interface_receive_drops", "Input packets dropped on the interface (netstat -i Idrop)", |s| s.idrops),
            ("interface_transmit_packets", "Packets sent on the interface (netstat -i Opkts)", |s| s.opackets),
            ("interface_transmit_bytes", "Bytes sent on the interface", |s| s.obytes),
            ("interface_transmit_errors", "Output errors on the interface (netstat -i Ofail)", |s| s.oerrors),
        ];
        for (name, help, get) in cols {
            let samples = rows.iter().map(|r| ([("interface", r.0.clone())], get(&r.1)));
            family(e, name, help, MetricType::Counter, samples)?;
        }
        let up = rows.iter().map(|r| ([("interface", r.0.clone())], r.2 as u64));
        family(e, "interface_up", "1 if the interface is administratively up (ifconfig up)", MetricType::Gauge, up)?;
        let link = rows.iter().map(|r| ([("interface", r.0.clone())], r.3 as u64));
        family(e, "interface_link_up", "1 if the interface's link (carrier) is up", MetricType::Gauge, link)?;
        let mtu = rows.iter().map(|r| ([("interface", r.0.clone())], r.4 as u64));
        family(e, "interface_mtu_bytes", "The interface's MTU", MetricType::Gauge, mtu)?;
        Ok(())
    }

    /// Each worker's own slot of the counters: what it received, sent,
    /// forwarded, delivered and dropped.
    fn encode_workers(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let ifs = self.stack.ifaces.load();
        let st = &self.stack.stats;
        let per_if = |w: usize, f: fn(&softnet_core::iface::IfStats) -> &Counter| -> u64 {
            ifs.iter().map(|i| f(i.stats.get(w)).get()).sum()
        };
        let slots: Vec<usize> = self.slots().collect();
        let rx = slots.iter().map(|&w| ([("worker", worker_label(w))], per_if(w, |s| &s.ipackets)));
        family(e, "worker_receive_packets", "Packets received by the worker, all interfaces", MetricType::Counter, rx)?;
        let tx = slots.iter().map(|&w| ([("worker", worker_label(w))], per_if(w, |s| &s.opackets)));
        family(e, "worker_transmit_packets", "Packets sent by the worker, all interfaces", MetricType::Counter, tx)?;
        let by_family = |f4: fn(&StackStats) -> &Counter, f6: fn(&StackStats) -> &Counter| {
            let mut v = Vec::with_capacity(slots.len() * 2);
            for &w in &slots {
                let s = st.get(w);
                v.push(([("worker", worker_label(w)), ("family", "inet".to_string())], f4(s).get()));
                v.push(([("worker", worker_label(w)), ("family", "inet6".to_string())], f6(s).get()));
            }
            v
        };
        let fwd = by_family(|s| &s.ip.forward, |s| &s.ip6.forward);
        family(e, "worker_forwarded_packets", "Packets forwarded by the worker", MetricType::Counter, fwd)?;
        let local = by_family(|s| &s.ip.delivered, |s| &s.ip6.delivered);
        family(
            e,
            "worker_delivered_packets",
            "Packets for the router delivered by the worker",
            MetricType::Counter,
            local,
        )?;
        // Drops by where they happen; each is a counter named above too.
        let mut drops = Vec::with_capacity(slots.len() * 5);
        for &w in &slots {
            let x = st.get(w);
            for (r, v) in [
                ("input_error", per_if(w, |s| &s.ierrors)),
                ("output_error", per_if(w, |s| &s.oerrors)),
                ("filtered", x.ip.filtered.get() + x.ip6.filtered.get()),
                ("no_route", x.ip.noroute.get() + x.ip6.noroute.get()),
                ("no_buffer", x.ether.nobufs.get() + x.ip.odropped.get() + x.ip6.odropped.get()),
            ] {
                drops.push(([("worker", worker_label(w)), ("reason", r.to_string())], v));
            }
        }
        family(e, "worker_dropped_packets", "Packets the worker dropped, by reason", MetricType::Counter, drops)?;
        let cpu = worker_cpu_ticks();
        let hz = clock_ticks_per_second();
        let mut samples = Vec::with_capacity(cpu.len() * 2);
        for (w, user, system) in cpu {
            samples.push(([("worker", w.clone()), ("mode", "user".to_string())], user as f64 / hz));
            samples.push(([("worker", w), ("mode", "system".to_string())], system as f64 / hz));
        }
        let mut m = e.encode_descriptor(
            "worker_cpu_seconds",
            "CPU time of the worker's thread (/proc/self/task/TID/stat)",
            None,
            MetricType::Counter,
        )?;
        for (labels, v) in samples {
            ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
        }
        gauge(e, "workers", "Worker threads running the data path", self.workers as i64)
    }

    /// Routes per table and family: the published snapshots' sizes, as
    /// the workers see them (`netstat -rn` lists the same routes).
    fn encode_routes(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let r = &self.stack.routes;
        let mut samples = Vec::new();
        for t in r.table_ids() {
            let v4 = r.snapshot(t).map(|s| s.len()).unwrap_or(0) as u64;
            let v6 = r.snapshot6(t).map(|s| s.len()).unwrap_or(0) as u64;
            samples.push(([("rtable", t.to_string()), ("family", "inet".to_string())], v4));
            samples.push(([("rtable", t.to_string()), ("family", "inet6".to_string())], v6));
        }
        family(e, "routes", "Routes in the forwarding table", MetricType::Gauge, samples)
    }

    /// pf_status (pfctl -si) and the label counters (pfctl -sl).
    fn encode_pf(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = self.pf.status();
        gauge(e, "pf_running", "1 if pf is enabled (pfctl -e)", s.running as i64)?;
        gauge(e, "pf_rules", "Rules in pf's main ruleset", s.rules as i64)?;
        gauge(e, "pf_state_limit", "pf's state limit (set limit states)", s.state_limit as i64)?;
        for (t, what, ts) in [
            ("states", "state table", &s.states),
            ("src_nodes", "source tracking table", &s.src_nodes),
            ("fragments", "fragment cache", &s.fragments),
        ] {
            gauge(e, &format!("pf_{t}"), &format!("Current entries of pf's {what}"), ts.entries as i64)?;
            let t1 = t.trim_end_matches('s');
            counter(e, &format!("pf_{t1}_searches"), &format!("Searches of pf's {what}"), ts.searches)?;
            counter(e, &format!("pf_{t1}_inserts"), &format!("Inserts into pf's {what}"), ts.inserts)?;
            counter(e, &format!("pf_{t1}_removals"), &format!("Removals from pf's {what}"), ts.removals)?;
        }
        let reasons = REASON_NAMES.iter().zip(s.reasons).map(|(n, v)| ([("reason", n.to_string())], v));
        family(e, "pf_reasons", "pf's counters by reason (pfctl -si Counters)", MetricType::Counter, reasons)?;
        let limits = LCNT_NAMES.iter().zip(s.lcounters).map(|(n, v)| ([("limit", n.to_string())], v));
        family(e, "pf_limits", "pf's limit counters (pfctl -si -v Limit Counters)", MetricType::Counter, limits)?;
        let l = &s.labels;
        let evals = l.iter().map(|x| ([("label", x.label.clone())], x.evaluations));
        family(e, "pf_label_evaluations", "Evaluations of the rules with this label", MetricType::Counter, evals)?;
        let dir = |f: fn(&softnet_pf::status::LabelStatus) -> [u64; 2]| {
            l.iter()
                .flat_map(move |x| {
                    let v = f(x);
                    [
                        ([("label", x.label.clone()), ("direction", "in".to_string())], v[0]),
                        ([("label", x.label.clone()), ("direction", "out".to_string())], v[1]),
                    ]
                })
                .collect::<Vec<_>>()
        };
        family(
            e,
            "pf_label_packets",
            "Packets passed by the rules with this label",
            MetricType::Counter,
            dir(|x| x.packets),
        )?;
        family(
            e,
            "pf_label_bytes",
            "Bytes passed by the rules with this label",
            MetricType::Counter,
            dir(|x| x.bytes),
        )?;
        let created = l.iter().map(|x| ([("label", x.label.clone())], x.states_created));
        family(
            e,
            "pf_label_states_created",
            "States created by the rules with this label",
            MetricType::Counter,
            created,
        )
    }
}

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        // The `_info` convention: a gauge of 1 whose labels are the point.
        let info = [([("version", env!("CARGO_PKG_VERSION").to_string())], 1)];
        family(&mut e, "build_info", "softnet's version", MetricType::Gauge, info)?;
        self.encode_interfaces(&mut e)?;
        self.encode_workers(&mut e)?;
        self.encode_routes(&mut e)?;
        self.encode_protocols(&mut e)?;
        self.encode_pf(&mut e)
    }
}
