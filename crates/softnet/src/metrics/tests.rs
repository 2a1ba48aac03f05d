//! The exposition: every family there with a conventional name and type,
//! values read from the per-worker counters, and the HTTP side.

use super::counters::{self, Stat};
use super::text::{self, Family};
use super::*;
use softnet_core::iface::IfAddr;
use softnet_core::stack::StackConfig;
use softnet_core::vlink::{self, VirtualPort};
use softnet_wire::ethernet::MacAddr;
use std::io::{Read, Write};

fn sources() -> (Sources, Vec<VirtualPort>) {
    let stack = Stack::new(StackConfig { workers: 2, pool_size: 64, ..StackConfig::default() });
    let (r0, a) = vlink::wire(2, 64);
    stack.create_interface("sn-r0", MacAddr([2, 0, 0, 0, 1, 1]), 1500, r0.link_queues()).unwrap();
    stack.add_address("sn-r0", IfAddr::new("10.0.1.1".parse().unwrap(), 24)).unwrap();
    stack.set_up("sn-r0", true).unwrap();
    let pf = Pf::new();
    let res = softnet_pf::StaticResolver::default();
    let rs =
        softnet_pf::parse_ruleset("pass in label \"in \\\"quoted\\\"\"\npass out label \"out\"\n", "pf.conf", &res)
            .unwrap();
    pf.load(&rs, &res).unwrap();
    (Sources::new(stack, pf), vec![r0, a])
}

fn parsed(src: &Sources) -> Vec<Family> {
    let t = render(src, Format::Prometheus);
    text::parse(&t).unwrap_or_else(|e| panic!("{e}\n{t}"))
}

fn value(fams: &[Family], name: &str, labels: &[(&str, &str)]) -> f64 {
    let f = text::family(fams, name).unwrap_or_else(|| panic!("no family {name}"));
    f.samples
        .iter()
        .find(|s| labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .unwrap_or_else(|| panic!("{name}{labels:?} not in {:?}", f.samples))
        .value
}

/// Families other than the protocol tables' rows, with their types.
const OTHER_FAMILIES: &[(&str, &str)] = &[
    ("softnet_build_info", "gauge"),
    ("softnet_interface_receive_packets_total", "counter"),
    ("softnet_interface_receive_bytes_total", "counter"),
    ("softnet_interface_receive_errors_total", "counter"),
    ("softnet_interface_receive_drops_total", "counter"),
    ("softnet_interface_transmit_packets_total", "counter"),
    ("softnet_interface_transmit_bytes_total", "counter"),
    ("softnet_interface_transmit_errors_total", "counter"),
    ("softnet_interface_up", "gauge"),
    ("softnet_interface_link_up", "gauge"),
    ("softnet_interface_mtu_bytes", "gauge"),
    ("softnet_worker_receive_packets_total", "counter"),
    ("softnet_worker_transmit_packets_total", "counter"),
    ("softnet_worker_forwarded_packets_total", "counter"),
    ("softnet_worker_delivered_packets_total", "counter"),
    ("softnet_worker_dropped_packets_total", "counter"),
    ("softnet_worker_cpu_seconds_total", "counter"),
    ("softnet_workers", "gauge"),
    ("softnet_routes", "gauge"),
    ("softnet_icmp_received_messages_total", "counter"),
    ("softnet_icmp_sent_messages_total", "counter"),
    ("softnet_icmp6_received_messages_total", "counter"),
    ("softnet_icmp6_sent_messages_total", "counter"),
    ("softnet_pf_running", "gauge"),
    ("softnet_pf_rules", "gauge"),
    ("softnet_pf_state_limit", "gauge"),
    ("softnet_pf_states", "gauge"),
    ("softnet_pf_state_searches_total", "counter"),
    ("softnet_pf_state_inserts_total", "counter"),
    ("softnet_pf_state_removals_total", "counter"),
    ("softnet_pf_src_nodes", "gauge"),
    ("softnet_pf_src_node_searches_total", "counter"),
    ("softnet_pf_src_node_inserts_total", "counter"),
    ("softnet_pf_src_node_removals_total", "counter"),
    ("softnet_pf_fragments", "gauge"),
    ("softnet_pf_fragment_searches_total", "counter"),
    ("softnet_pf_fragment_inserts_total", "counter"),
    ("softnet_pf_fragment_removals_total", "counter"),
    ("softnet_pf_reasons_total", "counter"),
    ("softnet_pf_limits_total", "counter"),
    ("softnet_pf_label_evaluations_total", "counter"),
    ("softnet_pf_label_packets_total", "counter"),
    ("softnet_pf_label_bytes_total", "counter"),
    ("softnet_pf_label_states_created_total", "counter"),
];

#[test]
fn every_family_is_there_with_its_type_and_help() {
    let (src, _ports) = sources();
    let fams = parsed(&src);
    let mut want: Vec<(String, &str)> = OTHER_FAMILIES.iter().map(|(n, k)| (n.to_string(), *k)).collect();
    for t in counters::ALL {
        want.extend(t.iter().map(|s| (format!("softnet_{}_total", s.name), "counter")));
    }
    for (name, kind) in &want {
        let f = text::family(&fams, name).unwrap_or_else(|| panic!("family {name} missing"));
        assert_eq!(&f.kind, kind, "{name}");
        assert!(!f.help.is_empty(), "{name} has no help");
        // Worker CPU time needs worker threads, which only the daemon has.
        assert!(!f.samples.is_empty() || name == "softnet_worker_cpu_seconds_total", "{name} has no samples");
    }
    assert_eq!(fams.len(), want.len(), "a family not in the lists above");
}

/// A thread named as a worker burns CPU: its time shows, user and system.
#[test]
fn worker_cpu_time_comes_from_the_threads_own_accounting() {
    let (src, _ports) = sources();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let burner = std::thread::Builder::new()
        .name("softnet-w7".into())
        .spawn(move || {
            let mut x = 0u64;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                std::hint::black_box(x);
            }
        })
        .unwrap();
    let cpu = |f: &[Family]| {
        text::family(f, "softnet_worker_cpu_seconds_total")
            .unwrap()
            .samples
            .iter()
            .filter(|s| s.label("worker") == Some("7"))
            .map(|s| s.value)
            .sum::<f64>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = 0.0;
    while seen < 0.05 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        seen = cpu(&parsed(&src));
    }
    let f = parsed(&src);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    burner.join().unwrap();
    assert!(seen >= 0.05, "worker 7's CPU time: {seen}");
    let fam = text::family(&f, "softnet_worker_cpu_seconds_total").unwrap();
    assert!(fam.samples.iter().any(|s| s.label("worker") == Some("7") && s.label("mode") == Some("system")));
    assert!(fam.samples.iter().all(|s| s.label("worker") != Some("control")), "only worker threads");
    // Gone with its thread.
    let after = parsed(&src);
    assert_eq!(cpu(&after), 0.0);
}

#[test]
fn names_follow_the_prometheus_conventions() {
    let (src, _ports) = sources();
    for f in parsed(&src) {
        assert!(f.name.starts_with("softnet_"), "{}", f.name);
        assert!(text::valid_metric_name(&f.name), "{}", f.name);
        assert_eq!(f.name, f.name.to_ascii_lowercase(), "snake case: {}", f.name);
        assert!(!f.name.contains("__"), "{}", f.name);
        // Counters and only counters end in _total; a unit, when there is
        // one, comes before it and is a base unit.
        assert_eq!(f.kind == "counter", f.name.ends_with("_total"), "{}", f.name);
        for bad in ["_kilobytes", "_milliseconds", "_bits", "_count_total", "_sum"] {
            assert!(!f.name.contains(bad), "{}", f.name);
        }
        for s in &f.samples {
            // Counts are whole; only CPU seconds have fractions.
            let whole = s.value.fract() == 0.0 || f.name.ends_with("_seconds_total");
            assert!(s.value >= 0.0 && whole, "{} {}", s.name, s.value);
            for (k, _) in &s.labels {
                assert!(text::valid_label_name(k) && k.chars().all(|c| !c.is_ascii_uppercase()), "{k}");
            }
        }
    }
}

#[test]
fn openmetrics_is_served_on_request_and_ends_with_eof() {
    let (src, _ports) = sources();
    let t = render(&src, Format::OpenMetrics);
    assert!(t.ends_with("# EOF\n"), "{t}");
    assert!(t.contains("# TYPE softnet_ip_forwarded_packets counter\nsoftnet_ip_forwarded_packets_total"), "{t}");
    // OpenMetrics types the family without the sample's _total.
    assert!(!t.contains("# TYPE softnet_ip_forwarded_packets_total counter\n"));
    let p = render(&src, Format::Prometheus);
    assert!(p.contains("# TYPE softnet_ip_forwarded_packets_total counter\nsoftnet_ip_forwarded_packets_total 0\n"));
}

#[test]
fn values_are_the_per_worker_counters_summed() {
    let (src, _ports) = sources();
    // The address's gratuitous ARP went out already.
    let arp_before = value(&parsed(&src), "softnet_arp_requests_sent_total", &[]);
    let st = &src.stack.stats;
    st.get(0).ip.forward.add(5);
    st.get(1).ip.forward.add(7);
    st.get(1).ip6.forward.add(2);
    st.get(CONTROL_SLOT).arp.requests_sent.add(3);
    st.get(0).icmp.inhist[8].add(4);
    st.get(1).ip.filtered.add(1);
    let ifs = src.stack.ifaces.load();
    let ifp = ifs.by_name("sn-r0").unwrap();
    ifp.stats.get(1).ipackets.add(11);
    ifp.stats.get(1).obytes.add(1500);
    let f = parsed(&src);
    assert_eq!(value(&f, "softnet_ip_forwarded_packets_total", &[]), 12.0);
    assert_eq!(value(&f, "softnet_ip6_forwarded_packets_total", &[]), 2.0);
    assert_eq!(value(&f, "softnet_arp_requests_sent_total", &[]), arp_before + 3.0);
    assert_eq!(value(&f, "softnet_icmp_received_messages_total", &[("type", "echo")]), 4.0);
    let w = "softnet_worker_forwarded_packets_total";
    assert_eq!(value(&f, w, &[("worker", "0"), ("family", "inet")]), 5.0);
    assert_eq!(value(&f, w, &[("worker", "1"), ("family", "inet")]), 7.0);
    assert_eq!(value(&f, w, &[("worker", "1"), ("family", "inet6")]), 2.0);
    assert_eq!(value(&f, w, &[("worker", "control"), ("family", "inet")]), 0.0);
    assert_eq!(value(&f, "softnet_worker_receive_packets_total", &[("worker", "1")]), 11.0);
    assert_eq!(value(&f, "softnet_worker_dropped_packets_total", &[("worker", "1"), ("reason", "filtered")]), 1.0);
    assert_eq!(value(&f, "softnet_interface_receive_packets_total", &[("interface", "sn-r0")]), 11.0);
    assert_eq!(value(&f, "softnet_interface_transmit_bytes_total", &[("interface", "sn-r0")]), 1500.0);
    assert_eq!(value(&f, "softnet_interface_up", &[("interface", "sn-r0")]), 1.0);
    assert_eq!(value(&f, "softnet_interface_mtu_bytes", &[("interface", "sn-r0")]), 1500.0);
    assert_eq!(value(&f, "softnet_workers", &[]), 2.0);
    // 10.0.1.0/24 (connected), 10.0.1.1 (local), 10.0.1.255 (broadcast),
    // then one more.
    assert_eq!(value(&f, "softnet_routes", &[("rtable", "0"), ("family", "inet")]), 3.0);
    src.stack.add_route(0, "192.0.2.0".parse().unwrap(), 24, softnet_core::stack::RouteTarget::Blackhole).unwrap();
    assert_eq!(value(&parsed(&src), "softnet_routes", &[("rtable", "0"), ("family", "inet")]), 4.0);
    // pf: two rules, their labels (a quote survives the escaping).
    assert_eq!(value(&f, "softnet_pf_rules", &[]), 2.0);
    assert_eq!(value(&f, "softnet_pf_running", &[]), 1.0);
    assert_eq!(value(&f, "softnet_pf_label_packets_total", &[("label", "in \"quoted\""), ("direction", "in")]), 0.0);
    assert_eq!(value(&f, "softnet_pf_reasons_total", &[("reason", "state-mismatch")]), 0.0);
    let reasons = text::family(&f, "softnet_pf_reasons_total").unwrap();
    assert_eq!(reasons.samples.len(), softnet_pf::eval::REASON_COUNT);
}

/// Each table row reads a counter of its own that `netstat -s` prints,
/// and each section has as many rows as netstat has lines: a counter
/// added to netstat without its metric fails here.
#[test]
fn the_tables_cover_netstat_s_counter_for_counter() {
    let (src, _ports) = sources();
    let st = &src.stack.stats;
    let sections: [(&str, &[Stat]); 8] = [
        ("ip", counters::IP),
        ("icmp", counters::ICMP),
        ("udp+tcp", counters::TRANSPORT),
        ("ether", counters::ETHER),
        ("arp", counters::ARP),
        ("ip6", counters::IP6),
        ("icmp6", counters::ICMP6),
        ("nd6", counters::ND6),
    ];
    let ns = softnet_core::stats::format_netstat_s(st);
    let mut lines_of = std::collections::HashMap::<&str, usize>::new();
    let mut cur = "";
    for l in ns.lines() {
        if !l.starts_with('\t') {
            cur = match l.trim_end_matches(':') {
                "udp" | "tcp" => "udp+tcp",
                s => sections.iter().find(|(n, _)| *n == s).map(|(n, _)| *n).unwrap_or(""),
            };
        } else if !l.starts_with("\t\t") && !l.ends_with(':') {
            *lines_of.entry(cur).or_default() += 1;
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (sec, rows) in sections {
        assert_eq!(lines_of.get(sec).copied().unwrap_or(0), rows.len(), "section {sec}: netstat lines vs metric rows");
        for s in rows {
            let c = (s.get)(st.get(0));
            assert!(seen.insert(c as *const Counter), "{} reads a counter another row reads", s.name);
            let before = softnet_core::stats::format_netstat_s(st);
            c.add(1_000_003);
            let after = softnet_core::stats::format_netstat_s(st);
            c.add(0u64.wrapping_sub(1_000_003));
            assert_ne!(before, after, "{} is not a netstat -s counter", s.name);
        }
    }
}

#[test]
fn request_heads_are_read_strictly() {
    use http::{parse_head, Asked};
    assert_eq!(parse_head("GET /metrics HTTP/1.1\r\nHost: x"), Asked::Metrics(Format::Prometheus));
    assert_eq!(
        parse_head("GET /metrics?x=1 HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5"),
        Asked::Metrics(Format::OpenMetrics)
    );
    assert_eq!(parse_head("GET / HTTP/1.0"), Asked::Index);
    assert_eq!(parse_head("GET /other HTTP/1.1"), Asked::NotFound);
    assert_eq!(parse_head("POST /metrics HTTP/1.1"), Asked::BadMethod);
    for bad in ["", "GET", "GET /metrics", "GET /metrics SPDY/3", "GET  /metrics HTTP/1.1", "GET /metrics HTTP/1.1 x"] {
        assert_eq!(parse_head(bad), Asked::Malformed, "{bad:?}");
    }
}

fn get(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(req).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_server_answers_scrapes_and_refuses_a_port_in_use() {
    let (src, _ports) = sources();
    let srv = http::MetricsServer::start("127.0.0.1:0".parse().unwrap(), src.clone()).unwrap();
    let addr = srv.local_addr();
    let r = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
    text::parse(body).unwrap();
    let r = get(addr, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n");
    assert!(r.contains("Content-Type: application/openmetrics-text") && r.ends_with("# EOF\n"));
    assert!(get(addr, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(get(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    assert!(get(addr, b"garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    assert!(get(addr, &huge).starts_with("HTTP/1.1 431 "));
    // A client that connects and says nothing, and one that trickles its
    // head a byte at a time, get 408 after the read timeout in all; the
    // others are served after them.
    let t0 = std::time::Instant::now();
    let mut idle = std::net::TcpStream::connect(addr).unwrap();
    let trickle = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        // A byte every 100 ms, until the answer starts (then only read).
        s.set_read_timeout(Some(std::time::Duration::from_millis(100))).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        for b in b"GET /metrics HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            s.write_all(&[*b]).unwrap();
            if let Ok(n) = s.read(&mut buf) {
                out.extend_from_slice(&buf[..n]);
                break;
            }
        }
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let _ = s.read_to_end(&mut out);
        String::from_utf8(out).unwrap()
    });
    assert!(get(addr, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
    let mut out = String::new();
    idle.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert!(trickle.join().unwrap().starts_with("HTTP/1.1 408 "));
    assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{:?}", t0.elapsed());
    // The same port again: an error, the first server unharmed.
    let e = http::MetricsServer::start(addr, src.clone()).err().unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    assert!(get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
    drop(srv);
    assert!(std::net::TcpStream::connect(addr).is_err(), "closed with the server");
}
