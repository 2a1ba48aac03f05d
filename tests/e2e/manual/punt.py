#!/usr/bin/env python3
"""Punt path figures (issue 14; manual: bench/punt.sh runs it): traffic to
the router's own address that softnet hands to Linux through the host
interface, against the kernel receiving the same traffic itself.

softnet: A (10.0.1.2) -- r0 [softnet, host = "hr0"] -- (Linux on hr0, 10.0.1.1)
kernel:  A' (10.0.1.2) -- k0 (Linux, 10.0.1.1 on the veth itself)

In each, a UDP echo server in the router's namespace bound to 10.0.1.1
(Linux's socket; softnet has no socket on that port, so it punts after
pf in); a third row is softnet forwarding the same traffic to an echo
server on B (10.0.2.2), which separates the punt path's cost from the
attach driver's (AF_PACKET's TPACKET_V3 blocks add their retire timeout
to a lone packet's latency both ways; PUNT_DRIVER=tap attaches through
TAPs instead). From A:
* latency: PUNT_RTTS request/response round trips of 64-byte datagrams,
  one at a time: median, 99th percentile;
* rate: iperf3 UDP (64-byte datagrams, unlimited rate) for PUNT_SECS to
  an iperf3 server in the router's namespace on 10.0.1.1: datagrams per
  second received.
The two setups run alternately PUNT_REPS times; medians are printed.
"""

import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lib_e2e import MAC_A, Topo, log, main, wait_until  # noqa: E402

RTTS = int(os.environ.get("PUNT_RTTS", "2000"))
SECS = int(os.environ.get("PUNT_SECS", "5"))
REPS = int(os.environ.get("PUNT_REPS", "3"))
DRIVER = os.environ.get("PUNT_DRIVER", "packet")

ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 7777))
while True:
    b, a = s.recvfrom(2048)
    s.sendto(b, a)
"""

CLIENT = """
import socket, time, json, sys
n, dst = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
s.connect((dst, 7777))
msg = b"x" * 64
for _ in range(50):
    s.send(msg)
    try:
        s.recv(2048)
    except socket.timeout:
        pass
rtts, lost = [], 0
for _ in range(n):
    t0 = time.perf_counter_ns()
    s.send(msg)
    try:
        s.recv(2048)
        rtts.append((time.perf_counter_ns() - t0) / 1000)
    except socket.timeout:
        lost += 1
rtts.sort()
print(json.dumps({"median": rtts[len(rtts) // 2], "p99": rtts[int(len(rtts) * 0.99)], "lost": lost}))
"""


def measure(t, a, dst, label):
    out = t.ns_run(a, ["python3", "-c", CLIENT, str(RTTS), dst], timeout=RTTS + 60).stdout
    lat = json.loads(out)
    out = t.ns_run(a, f"iperf3 -c {dst} -u -b 0 -l 64 -t {SECS} -J", check_rc=False, timeout=SECS + 30).stdout
    s = json.loads(out)["end"]["sum"]
    pps = (s["packets"] - s["lost_packets"]) / s["seconds"]
    log(f"  {label}: RTT median {lat['median']:.0f} us, p99 {lat['p99']:.0f} us ({lat['lost']} lost); "
        f"{pps:,.0f} datagrams/s received of {s['packets'] / s['seconds']:,.0f}/s sent")
    return lat["median"], lat["p99"], pps


def servers(t, ns, addr):
    """The UDP echo server and an iperf3 server on `addr` in `ns`, listening."""
    t.ns_spawn(ns, ["python3", "-c", ECHO, addr])
    t.ns_spawn(ns, f"iperf3 -s -B {addr}")
    t.wait_listen(ns, 5201)
    t.wait_listen(ns, 7777, proto="u")


def softnet_with_twin(t, driver):
    """softnet on router_topology(driver) with r0's twin hr0 addressed and
    the servers on 10.0.1.1 in its namespace (Linux's, reached by punt).
    Returns (net, daemon)."""
    net = t.router_topology(driver)
    cfg = net.config().replace('name = "r0"\n', 'name = "r0"\nhost = "hr0"\n', 1)
    d = t.daemon(cfg, net=net)
    wait_until("hr0 addressed", lambda: "10.0.1.1/24" in t.ns_run(net.r, "ip -o -4 addr show dev hr0").stdout)
    servers(t, net.r, "10.0.1.1")
    return net, d


def run_test():
    with Topo("punt") as t:
        t.step(f"softnet ({DRIVER} driver): A -- r0 (twin hr0); kernel: A' -- k0")
        net, d = softnet_with_twin(t, DRIVER)
        ka, kr = t.ns("ka"), t.ns("kr")
        t.veth(ka, "a0", MAC_A, kr, "k0", "02:00:00:00:01:01")
        t.host(ka, "a0", "10.0.1.2/24")
        t.host(kr, "k0", "10.0.1.1/24")
        servers(t, kr, "10.0.1.1")
        servers(t, net.b, "10.0.2.2")
        res = {"softnet": [], "forward": [], "kernel": []}
        for i in range(REPS):
            log(f"round {i + 1} of {REPS} (load {open('/proc/loadavg').read().split()[0]})")
            res["softnet"].append(measure(t, net.a, "10.0.1.1", "softnet punt   "))
            res["forward"].append(measure(t, net.a, "10.0.2.2", "softnet forward"))
            res["kernel"].append(measure(t, ka, "10.0.1.1", "kernel         "))
        med = {k: [statistics.median(x[j] for x in v) for j in range(3)] for k, v in res.items()}
        log("medians:")
        for k, (m, p, r) in med.items():
            log(f"  {k:8}: RTT median {m:.0f} us, p99 {p:.0f} us, {r:,.0f} datagrams/s")
        log(f"  softnet punt over the kernel: {med['softnet'][0] - med['kernel'][0]:+.0f} us RTT, "
            f"{med['softnet'][2] / max(med['kernel'][2], 1):.2f} of its rate; over softnet's forwarding to B: "
            f"{med['softnet'][0] - med['forward'][0]:+.0f} us RTT, {med['softnet'][2] / max(med['forward'][2], 1):.2f} of its rate")
        for l in d.out("ifconfig", "r0").splitlines():
            if l.strip().startswith("host:"):
                log("  ifconfig r0: " + l.strip())
        d.stop()


if __name__ == "__main__":
    main(run_test)
