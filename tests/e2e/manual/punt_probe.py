#!/usr/bin/env python3
"""Where the punt path's time goes (issue 14; manual, BENCHMARKS §1 "Punt
path", session 9): punt.py's softnet setup with the TAP driver (A -- r0
[softnet, host = "hr0"] -- Linux on hr0), and per round:
* RTT of 2,000 one-at-a-time 64-byte UDP request/responses to Linux's echo
  server on 10.0.1.1, with the workers' voluntary (slept in poll(2)) and
  involuntary (preempted) context switches, and with `perf stat` (if
  perf is installed) the workers' readv/write/poll calls;
* iperf3 UDP (64-byte datagrams, unlimited) for PROBE_SECS: datagrams/s
  received, the workers' user and system CPU per received datagram, their
  context switches, and where the rest were dropped (t0's TX drops: the
  TAP ring full, the worker not reading fast enough; UdpRcvbufErrors: the
  iperf3 server not reading its socket fast enough).
  SOFTNET_BIN=... PROBE_REPS=3 python3 tests/e2e/manual/punt_probe.py
"""

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, log, main  # noqa: E402
import punt  # noqa: E402

SECS = int(os.environ.get("PROBE_SECS", "3"))
REPS = int(os.environ.get("PROBE_REPS", "3"))
PERF = shutil.which("perf")


def workers(pid):
    """{tid: (utime ticks, stime ticks, voluntary switches, involuntary switches)} of the workers."""
    r = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            if "-w" not in open(f"/proc/{pid}/task/{t}/comm").read():
                continue
            x = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
            d = dict(l.split(":\t") for l in open(f"/proc/{pid}/task/{t}/status").read().splitlines() if "ctxt" in l)
            r[t] = (int(x[11]), int(x[12]), int(d["voluntary_ctxt_switches"]), int(d["nonvoluntary_ctxt_switches"]))
        except OSError:
            pass
    return r


def delta(a, b):
    """Summed over the workers: user ticks, system ticks, voluntary, involuntary."""
    return [sum(b[t][i] - a.get(t, (0, 0, 0, 0))[i] for t in b) for i in range(4)]


def punted(d):
    for l in d.out("ifconfig", "r0").splitlines():
        if l.strip().startswith("host:"):
            return int(l.split("punted")[1].split()[0])
    return 0


def rcvbuf_errors(t, ns):
    return int(t.ns_run(ns, "nstat -az UdpRcvbufErrors").stdout.split("UdpRcvbufErrors")[1].split()[0])


def run_test():
    with Topo("puntp") as t:
        net, d = punt.softnet_with_twin(t, "tap")
        pid = d.proc.pid
        hz = os.sysconf("SC_CLK_TCK")
        for i in range(REPS):
            log(f"round {i + 1} of {REPS} (load {open('/proc/loadavg').read().split()[0]})")
            stat = None
            if PERF:
                ev = "syscalls:sys_enter_readv,syscalls:sys_enter_write,syscalls:sys_enter_poll,syscalls:sys_enter_io_uring_enter"
                stat = subprocess.Popen([PERF, "stat", "-x", ",", "-e", ev, "-p", str(pid), "-o", "/tmp/punt_probe.stat"])
                time.sleep(0.5)
            w0 = workers(pid)
            out = t.ns_run(net.a, ["python3", "-c", punt.CLIENT, "2000", "10.0.1.1"], timeout=300).stdout
            dw = delta(w0, workers(pid))
            lat = json.loads(out)
            calls = ""
            if stat:
                stat.send_signal(2)
                stat.wait()
                c = {l.split(",")[2].split("sys_enter_")[1]: int(l.split(",")[0])
                     for l in open("/tmp/punt_probe.stat") if "sys_enter" in l and l.split(",")[0].isdigit()}
                calls = ", per RTT: " + ", ".join(f"{k} {v / 2050:.1f}" for k, v in sorted(c.items()))
            log(f"  RTT median {lat['median']:.1f} us p99 {lat['p99']:.0f} us; worker switches per RTT: "
                f"{dw[2] / 2050:.2f} slept, {dw[3] / 2050:.2f} preempted{calls}")
            p0, e0 = punted(d), rcvbuf_errors(t, net.r)
            w0 = workers(pid)
            out = t.ns_run(net.a, f"iperf3 -c 10.0.1.1 -u -b 0 -l 64 -t {SECS} -J", check_rc=False,
                           timeout=SECS + 30).stdout
            dw = delta(w0, workers(pid))
            pn, en = punted(d) - p0, rcvbuf_errors(t, net.r) - e0
            s = json.loads(out)["end"]["sum"]
            recv = s["packets"] - s["lost_packets"]
            log(f"  iperf3: {recv / s['seconds']:,.0f}/s received of {s['packets'] / s['seconds']:,.0f}/s sent; "
                f"{pn / s['packets']:.2f} of those sent punted (the rest dropped at t0's ring), "
                f"{en / max(pn, 1):.2f} of the punted dropped at the server's socket (UdpRcvbufErrors); "
                f"workers {dw[0] * 1e6 / hz / max(pn, 1):.2f} us user + {dw[1] * 1e6 / hz / max(pn, 1):.2f} us system "
                f"per punted datagram, {dw[2] / max(pn, 1):.3f} slept + {dw[3] / max(pn, 1):.3f} preempted per punted datagram")
        for l in d.out("ifconfig", "r0").splitlines():
            if l.strip().startswith("host:"):
                log("  ifconfig r0: " + l.strip())
        d.stop()


if __name__ == "__main__":
    main(run_test)
