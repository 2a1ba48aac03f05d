#!/usr/bin/env python3
"""A BGP-learned route end to end: host interfaces and the route sync.

A (10.0.1.2) -- r0 [softnet] r1 (host twin hr1) -- B (10.0.2.2). BIRD in
B announces 10.9.0.0/16 over BGP; BIRD in softnet's namespace R peers with
it over hr1 (the session punted to Linux, test_hostif_bgp.py) and exports
what it learns to the kernel's main table; softnet (`sync_routes =
"main"`) mirrors it: 10.9/16 via 10.0.2.2 on r1 (the kernel's route names
hr1, which is r1's twin), `route get` says bird, one RTM_ADD, and A reaches
10.9.1.1 on B through softnet. B withdraws it (`birdc disable`): one
RTM_DELETE, the route leaves softnet and A's pings stop. hr1's own
connected route in the kernel never reaches softnet's table.
"""

import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Monitor, Topo, TestFailure, check, log, main, wait_until  # noqa: E402

BIRD_R = """
router id 10.0.2.1;
protocol device { scan time 2; }
protocol kernel k4 { ipv4 { export all; import none; }; }
protocol bgp peer_b {
    local 10.0.2.1 as 65001;
    neighbor 10.0.2.2 as 65002;
    connect retry time 2;
    ipv4 { import all; export none; };
}
"""

BIRD_B = """
router id 10.0.2.2;
protocol device { scan time 2; }
protocol static announced {
    ipv4;
    route 10.9.0.0/16 blackhole;
}
protocol bgp peer_r {
    local 10.0.2.2 as 65002;
    neighbor 10.0.2.1 as 65001;
    connect retry time 2;
    ipv4 { import all; export where proto = "announced"; };
}
"""


def birdc(t, ns, sock, cmd):
    return t.ns_run(ns, ["birdc", "-s", sock] + cmd.split(), check_rc=False).stdout


def rows(text, dest):
    return [l.split() for l in text.splitlines() if l.split() and l.split()[0] == dest]


def run_test():
    if shutil.which("bird") is None or shutil.which("birdc") is None:
        raise TestFailure("bird2 not installed (apt-get install bird2)")
    with Topo("rtbgp") as t:
        t.step("A -- r0 [softnet] r1 (twin hr1) -- B; BIRD in R and in B; sync_routes = main")
        net = t.router_topology("packet")
        cfg = net.config(extra='sync_routes = "main"\n').replace('name = "r1"\n', 'name = "r1"\nhost = "hr1"\n', 1)
        d = t.daemon(cfg, net=net)
        wait_until("hr1 addressed", lambda: "10.0.2.1/24" in t.ns_run(net.r, "ip -o -4 addr show dev hr1").stdout)
        t.ns_run(net.b, "ip addr add 10.9.1.1/32 dev lo")
        mon = Monitor(t, d)
        seq0 = mon.wait_subscribed(d)
        socks = {}
        for ns, name, conf in ((net.r, "r", BIRD_R), (net.b, "b", BIRD_B)):
            path = os.path.join(t.tmp, f"bird-{name}.conf")
            with open(path, "w") as f:
                f.write(conf)
            sock = os.path.join(t.tmp, f"bird-{name}.ctl")
            socks[name] = sock
            logf = open(os.path.join(t.tmp, f"bird-{name}.log"), "w")
            t.ns_spawn(ns, ["bird", "-f", "-c", path, "-s", sock], stdout=logf, stderr=logf)

        t.step("BGP Established; 10.9.0.0/16 in the kernel and in softnet")

        def established():
            r = birdc(t, net.r, socks["r"], "show protocols peer_b")
            check("Established" in r, f"R: {r.strip()[-120:]!r}")
            return True

        wait_until("BGP Established", established, timeout=60, interval=1)
        wait_until("10.9/16 in R's kernel", lambda: "proto bird" in t.ns_run(net.r, "ip route show 10.9.0.0/16").stdout,
                   timeout=20)
        log("  kernel: " + t.ns_run(net.r, "ip route show 10.9.0.0/16").stdout.strip())

        def synced():
            return rows(d.out("netstat", "-rn", "-f", "inet"), "10.9/16")

        r9 = wait_until("10.9/16 in softnet", synced, timeout=10)[0]
        check(r9[1] == "10.0.2.2" and r9[2] == "UG" and r9[-1] == "r1", f"10.9/16: {r9}")
        check("(bird)" in d.out("route", "get", "10.9.0.0/16"), "route get does not name bird")
        conn = rows(d.out("netstat", "-rn", "-f", "inet"), "10.0.2/24")
        check(len(conn) == 1 and conn[0][2] == "UCn", f"hr1's kernel route reached softnet's table: {conn}")

        t.step("A reaches 10.9.1.1 on B along the BGP route")
        check(t.ns_run(net.a, "ping -c 3 -i 0.2 -W 1 10.9.1.1", check_rc=False).returncode == 0, "10.9.1.1 unreachable")

        t.step("B withdraws: one RTM_DELETE, the route goes, traffic stops")
        birdc(t, net.b, socks["b"], "disable announced")
        wait_until("10.9/16 gone from softnet", lambda: not synced(), timeout=30)
        check(t.ns_run(net.a, "ping -c 1 -W 1 10.9.1.1", check_rc=False).returncode != 0, "10.9.1.1 still reachable")
        kinds = [m["type"] for m in mon.messages() if m["seq"] > seq0 and m["dst"] == "10.9.0.0"]
        check(kinds == ["RTM_ADD", "RTM_DELETE"], f"monitor for 10.9.0.0: {kinds}")
        st = d.out("netstat", "-s")
        log("  " + " / ".join(l.strip() for l in st.split("route sync:")[-1].strip().splitlines()))
        check(re.search(r"\b0 kernel routes? not representable", st), st)
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
