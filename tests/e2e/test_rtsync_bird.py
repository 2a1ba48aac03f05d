#!/usr/bin/env python3
"""BIRD (Debian's bird2) in softnet's namespace exporting static routes to
the kernel's main table; softnet (`sync_routes = "main"`) takes them over
and forwards along them.

A (10.0.1.2) -- r0 [softnet] r1 -- B (10.0.2.2), r2 -- D (10.0.3.2); BIRD
runs in the router's namespace R with a kernel protocol exporting
everything and static routes via B (`10.0.2.2%rb onlink`: the veth end rb
is r1's device and carries no address), a blackhole and an unreachable.

* BIRD's routes appear in `netstat -rn` (`UG`, `B`, `R`; `route get` says
  `bird`), and A reaches 10.9.1.1 on B along the BGP-less static route;
* a static route BIRD exports for a prefix softnet has a static route of
  its own for does not replace softnet's;
* `birdc configure` without 10.9.0.0/16: one RTM_DELETE, traffic stops;
* BIRD stopped (it withdraws its routes): every BIRD route leaves softnet,
  softnet's own static route stays; BIRD started again: they are back.
"""

import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from lib_e2e import Monitor, Topo, check, log, main, wait_until  # noqa: E402

STATIC = '\n[[route]]\ndest = "10.77.0.0/16"\ngateway = "10.0.3.2"\n'


def bird_conf(t, with_9=True):
    routes = [
        "route 10.10.0.0/16 blackhole;",
        "route 10.12.0.0/16 unreachable;",
        "route 10.77.0.0/16 via 10.0.2.2%rb onlink;",
        "route 10.13.0.0/16 via 10.0.2.2%rb onlink;",
    ]
    if with_9:
        routes.append("route 10.9.0.0/16 via 10.0.2.2%rb onlink;")
    return f"""
router id 10.0.2.1;
log "{t.tmp}/bird.log" all;
protocol device {{ scan time 1; }}
protocol kernel k4 {{ ipv4 {{ export all; import none; }}; }}
protocol static s4 {{
  ipv4;
  {chr(10).join(routes)}
}}
"""


def rows(text, dest):
    return [l.split() for l in text.splitlines() if l.split() and l.split()[0] == dest]


def test():
    if shutil.which("bird") is None:
        print("NOT RUN: bird (Debian bird2) is not installed", flush=True)
        sys.exit(2)
    with Topo("rtbird") as t:
        net = t.router_topology(driver="packet", third=True)
        r, a, b = net.r, net.a, net.b
        t.ns_run(b, "ip addr add 10.9.1.1/32 dev lo")
        t.ns_run(b, "ip addr add 10.13.1.1/32 dev lo")
        d = t.daemon(net.config(extra='sync_routes = "main"\n', routes=STATIC), net=net)
        mon = Monitor(t, d)
        seq0 = mon.wait_subscribed(d)
        conf = os.path.join(t.tmp, "bird.conf")
        sock = os.path.join(t.tmp, "bird.ctl")

        def start_bird():
            with open(conf, "w") as f:
                f.write(bird_conf(t))
            return t.ns_spawn(r, ["bird", "-f", "-c", conf, "-s", sock, "-P", os.path.join(t.tmp, "bird.pid")])

        def netstat():
            return d.out("netstat", "-rn", "-f", "inet")

        t.step("BIRD exports its static routes to the kernel; softnet syncs them")
        bird = start_bird()
        wait_until("BIRD's routes in softnet", lambda: rows(netstat(), "10.9/16") and rows(netstat(), "10.12/16"),
                   timeout=30)
        out = netstat()
        r9 = rows(out, "10.9/16")[0]
        check(r9[1] == "10.0.2.2" and r9[2] == "UG" and r9[-1] == "r1", f"10.9/16: {r9}")
        check("B" in rows(out, "10.10/16")[0][2], f"10.10/16: {rows(out, '10.10/16')}")
        check("R" in rows(out, "10.12/16")[0][2], f"10.12/16: {rows(out, '10.12/16')}")
        check("(bird)" in d.out("route", "get", "10.9.0.0/16"), "route get does not name bird")
        kern = t.ns_run(r, "ip route show 10.9.0.0/16").stdout
        check("proto bird" in kern, f"kernel: {kern}")

        t.step("traffic along BIRD's route")
        check(t.ns_run(a, "ping -c 2 -i 0.2 -W 1 10.9.1.1", check_rc=False).returncode == 0, "10.9.1.1 unreachable")
        check(t.ns_run(a, "ping -c 2 -i 0.2 -W 1 10.13.1.1", check_rc=False).returncode == 0, "10.13.1.1 unreachable")

        t.step("softnet's own static route stays itself")
        r77 = rows(netstat(), "10.77/16")
        check(r77 and r77[0][1] == "10.0.3.2" and r77[0][2] == "UGS", f"10.77/16: {r77}")
        check("proto bird" in t.ns_run(r, "ip route show 10.77.0.0/16").stdout, "BIRD did not export 10.77/16")

        t.step("birdc configure without 10.9.0.0/16: one RTM_DELETE, traffic stops")
        with open(conf, "w") as f:
            f.write(bird_conf(t, with_9=False))
        t.ns_run(r, ["birdc", "-s", sock, "configure"])
        wait_until("10.9/16 gone", lambda: not rows(netstat(), "10.9/16"), timeout=20)
        check(t.ns_run(a, "ping -c 1 -W 1 10.9.1.1", check_rc=False).returncode != 0, "10.9.1.1 still reachable")
        time.sleep(0.5)
        kinds = [m["type"] for m in mon.messages() if m["seq"] > seq0 and m["dst"] == "10.9.0.0"]
        check(kinds == ["RTM_ADD", "RTM_DELETE"], f"monitor for 10.9.0.0: {kinds}")

        t.step("BIRD stopped: its routes leave softnet, softnet's static route stays")
        t.kill(bird)
        wait_until("BIRD's routes gone", lambda: not rows(netstat(), "10.13/16") and not rows(netstat(), "10.10/16"),
                   timeout=20)
        r77 = rows(netstat(), "10.77/16")
        check(r77 and r77[0][1] == "10.0.3.2" and r77[0][2] == "UGS", f"10.77/16 after BIRD stopped: {r77}")
        check(not [m for m in mon.messages() if m["seq"] > seq0 and m["dst"] == "10.77.0.0"],
              "messages for softnet's static route")

        t.step("BIRD started again: the routes are back")
        bird = start_bird()
        wait_until("BIRD's routes back", lambda: rows(netstat(), "10.9/16") and rows(netstat(), "10.13/16"), timeout=30)
        check(t.ns_run(a, "ping -c 2 -i 0.2 -W 1 10.9.1.1", check_rc=False).returncode == 0, "10.9.1.1 unreachable")
        log("netstat -s: " + " / ".join(l.strip() for l in d.out("netstat", "-s").split("route sync:")[-1].strip().splitlines()))
        t.kill(bird)


if __name__ == "__main__":
    main(test)
