"""`ifconfig IF destroy` under load with the tap driver (multi-queue TAPs),
and the interface brought back by SIGHUP.

    A -- r0 [softnet, tap] r1 -- B;  r2 -- D

iperf3 runs A -> B (TCP, 2 streams) and a UDP flood runs D -> B while r1
is destroyed: the command returns, the daemon stays up, A and D still
reach each other and the router; after SIGHUP r1 is back (its TAP
reopened) and A -> B works again. Repeated a few times.
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, TestFailure, check, log, main, wait_until  # noqa: E402

ROUNDS = 3


def ping_ok(t, ns, dst, tries=3):
    for i in range(tries):
        if t.ns_run(ns, f"ping -n -c 2 -i 0.3 -W 3 {dst}", check_rc=False).returncode == 0:
            return
        log(f"  {dst}: no reply yet (try {i + 1}/{tries})")
    raise TestFailure(f"{dst} unreachable from {ns}")


def ipkts(d, name):
    m = re.search(rf"^{name}\s+\d+\s+<Link>\s+\S+\s+(\d+)", d.out("netstat", "-i"), re.M)
    return int(m.group(1)) if m else 0


def run_test():
    with Topo("dt") as t:
        t.step("topology: A -- softnet (tap, multi-queue) -- B; D on a third port")
        net = t.router_topology("tap", third=True)
        d = t.daemon(net.config(), net=net)
        queues = [l for l in d.log_lines() if "TAP attached" in l]
        log("  " + queues[0].split("INFO ")[-1] if queues else "  (no TAP attach line)")
        ping_ok(t, net.a, "10.0.2.2")
        ping_ok(t, net.d, "10.0.2.2")
        for rnd in range(1, ROUNDS + 1):
            t.step(f"round {rnd}/{ROUNDS}: iperf3 A -> B and a UDP flood D -> B, then ifconfig r1 destroy")
            # Fresh servers each round (a server cut off from its client stays
            # busy), one per client (a server takes one test at a time).
            servers = [t.ns_spawn(net.b, f"iperf3 -s -B 10.0.2.2 -p {port}") for port in (5201, 5202)]
            t.wait_listen(net.b, 5201)
            t.wait_listen(net.b, 5202)
            client = t.ns_spawn(net.a, "timeout 60 iperf3 -c 10.0.2.2 -p 5201 -t 15 -P 2")
            flood = t.ns_spawn(net.d, "timeout 60 iperf3 -c 10.0.2.2 -p 5202 -u -b 100M -t 15")
            a0, d0 = ipkts(d, "r0"), ipkts(d, "r2")
            wait_until("TCP from A and UDP from D through the router",
                       lambda: ipkts(d, "r0") > a0 + 2000 and ipkts(d, "r2") > d0 + 2000, timeout=20)
            t0 = time.monotonic()
            p = d.admin("ifconfig", "r1", "destroy", check_rc=False, timeout=60)
            check(p.returncode == 0, f"ifconfig r1 destroy: exit {p.returncode}: {p.stderr}")
            log(f"  destroy returned in {time.monotonic() - t0:.1f} s")
            check(d.alive(), "daemon died")
            check("r1:" not in d.out("ifconfig"), "r1 still listed")
            ping_ok(t, net.a, "10.0.1.1")
            ping_ok(t, net.a, "10.0.3.2")
            ping_ok(t, net.d, "10.0.1.2")
            for p in [client, flood] + servers:
                t.kill(p)
            start = len(d.log_lines())
            d.signal(signal.SIGHUP)
            d.wait_log(r"reload: r1 created", start=start, timeout=15)
            ping_ok(t, net.a, "10.0.2.2")
            ping_ok(t, net.d, "10.0.2.2")
        check(d.alive(), "daemon died")
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
