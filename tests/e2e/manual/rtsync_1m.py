#!/usr/bin/env python3
"""A 1,000,000-prefix BGP feed from BIRD into softnet's table (issue 14's
figure; manual, minutes long: bench/rtsync_1m.sh runs it).

A (10.0.1.2) -- r0 [softnet, sync_routes = "main"] r1 (twin hr1) -- P (10.0.2.2)

BIRD in P holds N /24s (default 1,000,000, `RTSYNC_1M_N`) in a static
protocol that starts disabled; BIRD in softnet's namespace R peers with it
over hr1 and exports what it learns to the kernel's main table, which
softnet mirrors. Once BGP is Established, `birdc enable feed` in P starts
the feed; the script samples softnet's `route changes made` counter
(netstat -s) and the kernel's prefix count in R (/proc/net/fib_triestat)
every 0.2 s, and prints:

* routes per second into softnet's table, first to last change (and the
  daemon's own "route sync: ... routes/s" log line), and the same for the
  withdrawal of all of them (`birdc disable feed`);
* how long the kernel (BIRD in R) took, the pace softnet follows, and the
  CPU time of softnet's sync thread per route (its capacity: routes per
  CPU second, independent of the kernel's pace);
* UDP packets per second A -> P through softnet (iperf3, 64-byte
  datagrams, unlimited rate) idle and during the feed, and their ratio
  (goal: at least half the idle rate); and the workers' CPU time per
  datagram forwarded, idle and during the feed (threads softnet-wN,
  /proc/PID/task/TID/stat): on a shared machine the rate swings with the
  other load, the CPU a datagram costs much less.
"""

import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lib_e2e import Topo, check, log, main, wait_until  # noqa: E402

N = int(os.environ.get("RTSYNC_1M_N", "1000000"))
UDP_SECS = int(os.environ.get("RTSYNC_1M_UDP_SECS", "6"))

BIRD_R = """
router id 10.0.2.1;
protocol device { scan time 10; }
protocol kernel k4 { ipv4 { export all; import none; }; merge paths off; }
protocol bgp peer_p {
    local 10.0.2.1 as 65001;
    neighbor 10.0.2.2 as 65002;
    connect retry time 2;
    ipv4 { import all; export none; };
}
"""

BIRD_P = """
router id 10.0.2.2;
protocol device { scan time 10; }
protocol static feed {
    disabled yes;
    ipv4;
    include "%s";
}
protocol bgp peer_r {
    local 10.0.2.2 as 65002;
    neighbor 10.0.2.1 as 65001;
    connect retry time 2;
    ipv4 { import none; export where proto = "feed"; };
}
"""


def prefix(i):
    return f"{32 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24"


def birdc(t, ns, sock, cmd):
    return t.ns_run(ns, ["birdc", "-s", sock] + cmd.split(), check_rc=False, timeout=120).stdout


def changes(d):
    m = re.search(r"(\d+) route changes? made", d.out("netstat", "-s"))
    return int(m.group(1)) if m else 0


def kernel_count(t, ns):
    """Prefixes in the kernel's main table (fib_triestat: cheap at 1M)."""
    text = t.ns_run(ns, "cat /proc/net/fib_triestat").stdout
    m = re.search(r"Main:.*?Prefixes:\s+(\d+)", text, re.S)
    return int(m.group(1)) if m else 0


def udp_pps(t, net, secs):
    """iperf3 UDP, 64-byte datagrams at full speed A -> P for secs: the
    datagrams per second P received."""
    out = t.ns_run(net.a, f"iperf3 -c 10.0.2.2 -u -b 0 -l 64 -t {secs} -J", check_rc=False, timeout=secs + 30).stdout
    got, s = received(out)
    return got / s


def thread_cpu(d, match):
    """CPU seconds (user + system) of the daemon's threads whose name
    `match` accepts, summed."""
    base = f"/proc/{d.proc.pid}/task"
    total = 0.0
    for tid in os.listdir(base):
        try:
            if match(open(f"{base}/{tid}/comm").read().strip()):
                f = open(f"{base}/{tid}/stat").read().rsplit(")", 1)[1].split()
                total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return total


def sync_cpu(d):
    """CPU seconds of the daemon's route sync thread."""
    return thread_cpu(d, lambda n: n == "softnet-rtsync")


def worker_cpu(d):
    """CPU seconds of the daemon's workers (softnet-w0, -w1, ...)."""
    return thread_cpu(d, lambda n: re.fullmatch(r"softnet-w\d+", n) is not None)


def received(path_or_text):
    """Datagrams P received in an iperf3 -J report, and the seconds."""
    try:
        s = json.loads(path_or_text)["end"]["sum"]
        return s["packets"] - s["lost_packets"], s["seconds"]
    except (ValueError, KeyError):
        return 0, 1.0


def feed(t, d, net, socks, verb, want, label):
    """Enables or disables the feed; samples softnet's changes and the
    kernel's prefixes until softnet has made `want` more changes. Returns
    (softnet's first, last change; the kernel's first, last change), in
    seconds from the birdc command."""
    c0, k0, cpu0 = changes(d), kernel_count(t, net.r), sync_cpu(d)
    samples = []
    t0 = time.monotonic()
    birdc(t, net.b, socks["p"], f"{verb} feed")
    first = last = kfirst = klast = None
    while time.monotonic() - t0 < 900:
        now = time.monotonic() - t0
        c = changes(d) - c0
        k = abs(kernel_count(t, net.r) - k0)
        samples.append((now, c, k))
        if c > 0 and first is None:
            first = now
        if k > 0 and kfirst is None:
            kfirst = now
        if k >= want and klast is None:
            klast = now
        if c >= want:
            last = now
            break
        time.sleep(0.2)
    check(last is not None, f"{label}: softnet made {samples[-1][1]} of {want} changes in 900 s")
    cpu = sync_cpu(d) - cpu0
    log(f"{label}: the sync thread used {cpu:.2f} CPU s: {want / max(cpu, 1e-3):,.0f} routes per CPU second")
    log(f"{label}: samples (s, softnet changes, kernel prefixes changed):")
    for s in samples[:: max(1, len(samples) // 15)] + [samples[-1]]:
        log(f"  {s[0]:6.1f} s  {s[1]:>8}  {s[2]:>8}")
    return first, last, kfirst, klast


def run_test():
    with Topo("rt1m") as t:
        net = t.router_topology("packet")
        cfg = net.config(extra='sync_routes = "main"\n').replace('name = "r1"\n', 'name = "r1"\nhost = "hr1"\n', 1)
        d = t.daemon(cfg, net=net)
        wait_until("hr1 addressed", lambda: "10.0.2.1/24" in t.ns_run(net.r, "ip -o -4 addr show dev hr1").stdout)
        routes = os.path.join(t.tmp, "feed.conf")
        with open(routes, "w") as f:
            for i in range(N):
                f.write(f"route {prefix(i)} blackhole;\n")
        socks = {}
        for ns, name, conf in ((net.r, "r", BIRD_R), (net.b, "p", BIRD_P % routes)):
            path = os.path.join(t.tmp, f"bird-{name}.conf")
            with open(path, "w") as f:
                f.write(conf)
            socks[name] = os.path.join(t.tmp, f"bird-{name}.ctl")
            logf = open(os.path.join(t.tmp, f"bird-{name}.log"), "w")
            t.ns_spawn(ns, ["bird", "-f", "-c", path, "-s", socks[name]], stdout=logf, stderr=logf)
        wait_until("BGP Established", lambda: "Established" in birdc(t, net.r, socks["r"], "show protocols peer_p"),
                   timeout=120, interval=1)
        t.ns_spawn(net.b, "iperf3 -s")
        t.wait_listen(net.b, 5201)
        # The workers' CPU per forwarded datagram, idle and during the feed:
        # the rate swings with what else the shared cores run, the cost of
        # a datagram much less.
        w0 = worker_cpu(d)
        idle = udp_pps(t, net, UDP_SECS)
        idle_cost = (worker_cpu(d) - w0) / max(idle * UDP_SECS, 1) * 1e6
        log(f"idle forwarding: {idle:,.0f} UDP datagrams/s A -> P, workers' CPU {idle_cost:.2f} us per datagram")

        # The feed with the UDP load running alongside (from the enable on).
        w0 = worker_cpu(d)
        udp = t.ns_spawn(net.a, f"iperf3 -c 10.0.2.2 -u -b 0 -l 64 -t {UDP_SECS} -J",
                         stdout=open(os.path.join(t.tmp, "udp-feed.json"), "w"))
        # The workers' CPU read as the UDP run ends, not when the feed does.
        w1 = []
        waiter = threading.Thread(target=lambda: (udp.wait(timeout=UDP_SECS + 60), w1.append(worker_cpu(d))))
        waiter.start()
        first, last, kfirst, klast = feed(t, d, net, socks, "enable", N, f"{N:,} prefixes announced")
        waiter.join(timeout=UDP_SECS + 90)
        # (A feed shorter than the UDP run leaves part of the run idle.)
        got, secs = received(open(os.path.join(t.tmp, "udp-feed.json")).read())
        during = got / secs
        during_cost = ((w1[0] if w1 else worker_cpu(d)) - w0) / max(got, 1) * 1e6
        rate_in = N / max(last - first, 1e-3)
        log(f"announce: softnet {first:.1f}..{last:.1f} s ({rate_in:,.0f} routes/s); kernel {kfirst:.1f}..{klast:.1f} s "
            f"({N / max(klast - kfirst, 1e-3):,.0f} routes/s); softnet done {last - klast:.1f} s after the kernel")
        log(f"forwarding during the feed: {during:,.0f} datagrams/s ({during / max(idle, 1):.2f} of idle), "
            f"workers' CPU {during_cost:.2f} us per datagram ({idle_cost / max(during_cost, 1e-9):.2f} of idle's "
            f"datagrams per CPU second)")
        time.sleep(1.5)
        first, last, kfirst, klast = feed(t, d, net, socks, "disable", N, f"{N:,} prefixes withdrawn")
        rate_out = N / max(last - first, 1e-3)
        log(f"withdraw: softnet {first:.1f}..{last:.1f} s ({rate_out:,.0f} routes/s); kernel {kfirst:.1f}..{klast:.1f} s "
            f"({N / max(klast - kfirst, 1e-3):,.0f} routes/s); softnet done {last - klast:.1f} s after the kernel")
        time.sleep(1.5)
        for l in d.log_lines():
            if "route sync:" in l and ("change(s) in" in l or "overrun" in l or "resync" in l):
                log("daemon: " + l.split("route sync:")[-1].strip())
        st = d.out("netstat", "-s")
        log("netstat -s: " + " / ".join(l.strip() for l in st.split("route sync:")[-1].strip().splitlines()))
        m = re.search(r"VmHWM:\s+(\d+) kB", open(f"/proc/{d.proc.pid}/status").read())
        log(f"softnet's peak RSS: {int(m.group(1)) / 1024:.0f} MiB" if m else "no VmHWM")
        check(d.alive(), "daemon died")
        d.stop()


if __name__ == "__main__":
    main(run_test)
