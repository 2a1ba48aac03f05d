//! `softnet top [-b] [-d SECONDS] [-n COUNT]`: a live view of the
//! router, in the manner of systat(1)'s ifstat/netstat views and pftop:
//! per-interface and per-worker packet rates and CPU use, the state
//! table, drops by reason, pf's labelled rules (pftop's label view). It reads the daemon's metrics exposition over the control
//! socket (`Request::Metrics`, the very text the metrics endpoint
//! serves, so the two never disagree) every interval and prints the
//! differences per second. `-b` (batch) prints frame after frame for a
//! script or a test instead of redrawing the terminal; `-n` stops after
//! that many frames.

use crate::admin::Client;
use crate::metrics::text::{self, Family};
use crate::proto::{Request, Response};
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// One scrape: every sample by name and labels.
struct Scrape {
    at: Instant,
    values: HashMap<String, f64>,
    fams: Vec<Family>,
}

/// A sample's key: its name and labels as they are written.
fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut k = name.to_string();
    for (n, v) in labels {
        let _ = write!(k, ",{n}={v}");
    }
    k
}

impl Scrape {
    fn new(at: Instant, exposition: &str) -> Result<Scrape, String> {
        let fams = text::parse(exposition)?;
        let mut values = HashMap::new();
        for f in &fams {
            for s in &f.samples {
                let labels: Vec<(&str, &str)> = s.labels.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                values.insert(key(&s.name, &labels), s.value);
            }
        }
        Ok(Scrape { at, values, fams })
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.values.get(&key(name, labels)).copied().unwrap_or(0.0)
    }

    /// The values a label takes in a family, in exposition order.
    fn label_values(&self, family: &str, label: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(f) = text::family(&self.fams, family) {
            for s in &f.samples {
                if let Some(v) = s.label(label) {
                    if !out.iter().any(|o| o == v) {
                        out.push(v.to_string());
                    }
                }
            }
        }
        out
    }
}

/// Rates between two scrapes.
struct Delta<'a> {
    old: &'a Scrape,
    new: &'a Scrape,
    secs: f64,
}

impl Delta<'_> {
    /// Per second; a counter that went back (a destroyed interface made
    /// again) counts from zero.
    fn rate(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (a, b) = (self.old.get(name, labels), self.new.get(name, labels));
        let d = if b >= a { b - a } else { b };
        d / self.secs
    }
}

const WORKER_DROPS: [&str; 5] = ["input_error", "output_error", "filtered", "no_route", "no_buffer"];

/// One frame of the view.
fn frame(d: &Delta) -> String {
    let n = d.new;
    let mut o = String::new();
    let pf = if n.get("softnet_pf_running", &[]) > 0.0 { "enabled" } else { "disabled" };
    let _ = writeln!(
        o,
        "softnet top: {} workers, pf {pf}, {} states, {} rules, interval {:.1} s",
        n.get("softnet_workers", &[]),
        n.get("softnet_pf_states", &[]),
        n.get("softnet_pf_rules", &[]),
        d.secs
    );
    let _ = writeln!(
        o,
        "\n{:<15} {:>10} {:>10} {:>12} {:>12} {:>8} {:>8} {:>8}",
        "INTERFACE", "IPKTS/s", "OPKTS/s", "IBYTES/s", "OBYTES/s", "IERRS/s", "OERRS/s", "IDROPS/s"
    );
    for ifn in n.label_values("softnet_interface_receive_packets_total", "interface") {
        let l = [("interface", ifn.as_str())];
        let r = |what: &str| d.rate(&format!("softnet_interface_{what}_total"), &l);
        let name = if n.get("softnet_interface_up", &l) > 0.0 { ifn.clone() } else { format!("{ifn}*") };
        let _ = writeln!(
            o,
            "{:<15} {:>10.1} {:>10.1} {:>12.1} {:>12.1} {:>8.1} {:>8.1} {:>8.1}",
            name,
            r("receive_packets"),
            r("transmit_packets"),
            r("receive_bytes"),
            r("transmit_bytes"),
            r("receive_errors"),
            r("transmit_errors"),
            r("receive_drops")
        );
    }
    let _ = writeln!(
        o,
        "\n{:<15} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6}",
        "WORKER", "RX/s", "TX/s", "FWD/s", "FWD6/s", "LOCAL/s", "DROPS/s", "CPU%"
    );
    for w in n.label_values("softnet_worker_receive_packets_total", "worker") {
        let l = [("worker", w.as_str())];
        let fam = |f: &'static str| [("worker", w.as_str()), ("family", f)];
        let drops: f64 = WORKER_DROPS
            .iter()
            .map(|r| d.rate("softnet_worker_dropped_packets_total", &[("worker", w.as_str()), ("reason", r)]))
            .sum();
        let local = d.rate("softnet_worker_delivered_packets_total", &fam("inet"))
            + d.rate("softnet_worker_delivered_packets_total", &fam("inet6"));
        let cpu: f64 = ["user", "system"]
            .iter()
            .map(|m| d.rate("softnet_worker_cpu_seconds_total", &[("worker", w.as_str()), ("mode", m)]))
            .sum();
        let _ = writeln!(
            o,
            "{:<15} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>6.1}",
            w,
            d.rate("softnet_worker_receive_packets_total", &l),
            d.rate("softnet_worker_transmit_packets_total", &l),
            d.rate("softnet_worker_forwarded_packets_total", &fam("inet")),
            d.rate("softnet_worker_forwarded_packets_total", &fam("inet6")),
            local,
            drops,
            cpu * 100.0
        );
    }
    let _ = write!(o, "\nDROPS/s");
    for r in WORKER_DROPS {
        let v: f64 = n
            .label_values("softnet_worker_dropped_packets_total", "worker")
            .iter()
            .map(|w| d.rate("softnet_worker_dropped_packets_total", &[("worker", w.as_str()), ("reason", r)]))
            .sum();
        let _ = write!(o, "  {r} {v:.1}");
    }
    let _ = writeln!(
        o,
        "\nSTATES  {} of {}  searches/s {:.1}  inserts/s {:.1}  removals/s {:.1}",
        n.get("softnet_pf_states", &[]),
        n.get("softnet_pf_state_limit", &[]),
        d.rate("softnet_pf_state_searches_total", &[]),
        d.rate("softnet_pf_state_inserts_total", &[]),
        d.rate("softnet_pf_state_removals_total", &[])
    );
    // pf's reason counters that moved (pftop's and pfctl -si's names).
    let _ = write!(o, "PF/s   ");
    let mut any = false;
    for r in n.label_values("softnet_pf_reasons_total", "reason") {
        let v = d.rate("softnet_pf_reasons_total", &[("reason", r.as_str())]);
        if v > 0.0 {
            let _ = write!(o, " {r} {v:.1}");
            any = true;
        }
    }
    if !any {
        o.push_str(" (no pf counter moved)");
    }
    o.push('\n');
    // pftop's label view: the rules with a label, their traffic.
    let labels = n.label_values("softnet_pf_label_evaluations_total", "label");
    if !labels.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<23} {:>10} {:>10} {:>10} {:>12} {:>12} {:>8}",
            "LABEL", "EVALS/s", "IPKTS/s", "OPKTS/s", "IBYTES/s", "OBYTES/s", "STATES/s"
        );
        for l in labels {
            let one = |f: &str| d.rate(f, &[("label", l.as_str())]);
            let dir = |f: &str, dir: &str| d.rate(f, &[("label", l.as_str()), ("direction", dir)]);
            let _ = writeln!(
                o,
                "{:<23} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>12.1} {:>8.1}",
                l,
                one("softnet_pf_label_evaluations_total"),
                dir("softnet_pf_label_packets_total", "in"),
                dir("softnet_pf_label_packets_total", "out"),
                dir("softnet_pf_label_bytes_total", "in"),
                dir("softnet_pf_label_bytes_total", "out"),
                one("softnet_pf_label_states_created_total")
            );
        }
    }
    o
}

fn scrape(c: &mut Client) -> Result<Scrape, String> {
    match c.call(&Request::Metrics).map_err(|e| e.to_string())? {
        Response::Text(t) => Scrape::new(Instant::now(), &t),
        Response::Error(e) => Err(e),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// Runs the view; returns the exit code.
pub fn run(socket: &Path, batch: bool, delay: f64, count: Option<u64>) -> i32 {
    if !(delay.is_finite() && delay >= 0.1) {
        eprintln!("softnet: top: -d {delay}: the interval is at least 0.1 s");
        return 1;
    }
    let mut client = match Client::connect(socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("softnet: top: {e}");
            return 1;
        }
    };
    let mut old = match scrape(&mut client) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("softnet: top: {e}");
            return 1;
        }
    };
    let mut shown = 0u64;
    while count.is_none_or(|c| shown < c) {
        std::thread::sleep(Duration::from_secs_f64(delay));
        let new = match scrape(&mut client) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("softnet: top: {e}");
                return 1;
            }
        };
        let d = Delta { old: &old, new: &new, secs: new.at.duration_since(old.at).as_secs_f64().max(1e-3) };
        let f = frame(&d);
        if batch {
            // Frames one after the other, a blank line between.
            println!("{f}");
        } else {
            // Home and clear, then the frame: a redraw as systat does.
            print!("\x1b[H\x1b[2J{f}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
        shown += 1;
        old = new;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{render, Format, Sources};
    use softnet_core::stack::{Stack, StackConfig};
    use softnet_core::vlink;
    use softnet_wire::ethernet::MacAddr;

    #[test]
    fn a_frame_shows_rates_per_interface_and_worker() {
        let stack = Stack::new(StackConfig { workers: 2, pool_size: 64, ..StackConfig::default() });
        let (r0, _a) = vlink::wire(2, 64);
        stack.create_interface("sn-r0", MacAddr([2, 0, 0, 0, 1, 1]), 1500, r0.link_queues()).unwrap();
        let src = Sources::new(stack.clone(), softnet_pf::Pf::new());
        let t0 = Instant::now();
        let old = Scrape::new(t0, &render(&src, Format::Prometheus)).unwrap();
        let ifs = stack.ifaces.load();
        let ifp = ifs.by_name("sn-r0").unwrap();
        ifp.stats.get(1).ipackets.add(200);
        ifp.stats.get(1).ibytes.add(20_000);
        stack.stats.get(1).ip.forward.add(200);
        stack.stats.get(0).ip.filtered.add(4);
        let new = Scrape::new(t0 + Duration::from_secs(2), &render(&src, Format::Prometheus)).unwrap();
        let f = frame(&Delta { old: &old, new: &new, secs: 2.0 });
        let line = |start: &str| f.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("{start}: {f}"));
        let i: Vec<&str> = line("sn-r0").split_whitespace().collect();
        // Down (no `ifconfig up`): the name has netstat's star.
        assert_eq!(i, ["sn-r0*", "100.0", "0.0", "10000.0", "0.0", "0.0", "0.0", "0.0"], "{f}");
        let w1: Vec<&str> = line("1 ").split_whitespace().collect();
        assert_eq!(w1, ["1", "100.0", "0.0", "100.0", "0.0", "0.0", "0.0", "0.0"], "{f}");
        let w0: Vec<&str> = line("0 ").split_whitespace().collect();
        assert_eq!(w0[6], "2.0", "{f}");
        assert!(line("control").starts_with("control"));
        assert!(line("DROPS/s").contains("filtered 2.0"), "{f}");
        assert!(line("softnet top:").contains("2 workers, pf enabled, 0 states"), "{f}");
        assert!(line("PF/s").contains("(no pf counter moved)"), "{f}");
        assert!(!f.contains("LABEL"), "no labelled rules, no label view: {f}");
    }
}
