"""BIRD over a host interface: softnet runs in namespace R with `host =
"hr0"` on r0; BIRD (bird2) in R peers over hr0 with BIRD in A. BGP: the
session (TCP 179 to the router's address, punted to Linux after pf in;
Linux's segments out through pf out) reaches Established and the prefix
A announces (10.9.0.0/16) is in R's BIRD table. OSPF: BIRD in R joins
224.0.0.5 on hr0, softnet reads that from /proc/net/igmp and punts A's
hellos (multicast) to hr0; R's hellos and the exchange go out through r0;
the adjacency becomes Full and A's stub network is learned.
"""

import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, TestFailure, check, log, main, wait_until  # noqa: E402

BIRD_R = """
router id 10.0.1.1;
protocol device { scan time 2; }
protocol bgp peer_a {
    local 10.0.1.1 as 65001;
    neighbor 10.0.1.2 as 65002;
    connect retry time 2;
    ipv4 { import all; export none; };
}
protocol ospf v2 area0 {
    ipv4 { import all; export none; };
    area 0 {
        interface "hr0" { hello 1; dead 4; type broadcast; };
    };
}
"""

BIRD_A = """
router id 10.0.1.2;
protocol device { scan time 2; }
protocol static announced {
    ipv4;
    route 10.9.0.0/16 blackhole;
}
protocol bgp peer_r {
    local 10.0.1.2 as 65002;
    neighbor 10.0.1.1 as 65001;
    connect retry time 2;
    ipv4 { import all; export where proto = "announced"; };
}
protocol ospf v2 area0 {
    ipv4 { import all; export none; };
    area 0 {
        interface "a0" { hello 1; dead 4; type broadcast; };
        interface "a1" { stub yes; };
    };
}
"""


def birdc(t, ns, sock, cmd):
    return t.ns_run(ns, ["birdc", "-s", sock] + cmd.split(), check_rc=False).stdout


def run_test():
    if shutil.which("bird") is None or shutil.which("birdc") is None:
        raise TestFailure("bird2 not installed (apt-get install bird2)")
    with Topo("bgp") as t:
        t.step("topology: A (BIRD) -- r0 [softnet, host twin hr0] r1 -- B; BIRD in R over hr0")
        net = t.router_topology("packet")
        cfg = net.config().replace('name = "r0"\n', 'name = "r0"\nhost = "hr0"\n', 1)
        d = t.daemon(cfg, net=net)
        wait_until("hr0 addressed", lambda: "10.0.1.1/24" in t.ns_run(net.r, "ip -o -4 addr show dev hr0").stdout)
        # A stub network on A for OSPF to carry.
        t.ns_run(net.a, "ip link add a1 type veth peer name a1p")
        t.ns_run(net.a, "ip addr add 10.8.1.1/24 dev a1")
        t.ns_run(net.a, "ip link set a1p up")
        t.ns_run(net.a, "ip link set a1 up")
        socks = {}
        for ns, name, conf in ((net.r, "r", BIRD_R), (net.a, "a", BIRD_A)):
            path = os.path.join(t.tmp, f"bird-{name}.conf")
            with open(path, "w") as f:
                f.write(conf)
            sock = os.path.join(t.tmp, f"bird-{name}.ctl")
            socks[name] = sock
            logf = open(os.path.join(t.tmp, f"bird-{name}.log"), "w")
            t.ns_spawn(ns, ["bird", "-f", "-c", path, "-s", sock], stdout=logf, stderr=logf)
        wait_until("BIRD in R answers", lambda: "BIRD" in birdc(t, net.r, socks["r"], "show status"), timeout=15)
        wait_until("BIRD in A answers", lambda: "BIRD" in birdc(t, net.a, socks["a"], "show status"), timeout=15)

        t.step("BGP R <-> A over hr0 reaches Established; A's 10.9.0.0/16 learned in R")

        def established():
            r = birdc(t, net.r, socks["r"], "show protocols peer_a")
            a = birdc(t, net.a, socks["a"], "show protocols peer_r")
            check("Established" in r and "Established" in a, f"R: {r.strip()[-120:]!r} A: {a.strip()[-120:]!r}")
            return True

        wait_until("BGP Established on both sides", established, timeout=60, interval=1)
        wait_until(
            "10.9.0.0/16 from A in R's BIRD",
            lambda: re.search(r"10\.9\.0\.0/16\s+\S+\s+\[peer_a", birdc(t, net.r, socks["r"], "show route protocol peer_a")),
            timeout=20,
        )
        log("  " + birdc(t, net.r, socks["r"], "show route protocol peer_a").strip().replace("\n", "\n  "))
        ss = t.ns_run(net.r, "ss -Htn state established").stdout
        check(re.search(r"10\.0\.1\.1(%hr0)?:(179\s+10\.0\.1\.2:\d+|\d+\s+10\.0\.1\.2:179)", ss), f"no BGP TCP in R: {ss}")

        t.step("OSPF over hr0: the host's 224.0.0.5 membership punts A's hellos; the adjacency goes Full")
        def joined():
            igmp = t.ns_run(net.r, "cat /proc/net/igmp").stdout
            check(re.search(r"hr0[^\n]*\n(\t[^\n]*\n)*\t+050000E0", igmp), f"hr0 not in 224.0.0.5:\n{igmp}")
            return True

        wait_until("R's BIRD joined 224.0.0.5 on hr0", joined, timeout=10)

        def full():
            r = birdc(t, net.r, socks["r"], "show ospf neighbors")
            check(re.search(r"10\.0\.1\.2\s+\d+\s+Full", r), f"R's OSPF neighbors: {r.strip()[-200:]!r}")
            return True

        wait_until("OSPF neighbor Full in R", full, timeout=60, interval=1)
        wait_until(
            "A's stub 10.8.1.0/24 by OSPF in R",
            lambda: "10.8.1.0/24" in birdc(t, net.r, socks["r"], "show route protocol area0"),
            timeout=30,
        )

        t.step("the daemon stops cleanly with BIRD running")
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
