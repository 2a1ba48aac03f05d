#!/usr/bin/env python3
"""Route sync with nexthop objects (`ip nexthop`, RTA_NH_ID: what FRR's
zebra installs), without a routing daemon.

A (10.0.1.2) -- r0 [softnet] r1 -- B (10.0.2.2), r2 -- D (10.0.3.2); the
packet driver on rb (r1) and rd (r2) in R, `sync_routes = "main"`.

* a nexthop object and a route naming it, both there before the daemon
  starts: in softnet at once (the dump at start reads nexthops first);
* `ip route add 10.9.0.0/16 nhid 5` (5: via B): via 10.0.2.2 on r1, A
  reaches 10.9.1.1 on B;
* `ip nexthop replace id 5` (now via D): the kernel sends no route
  message of its own in every mode, softnet moves the route anyway (one
  RTM_CHANGE) and A's pings reach D;
* a group of two objects: one multipath route (`P`), flows reach B and D;
  a member deleted: the group's route keeps the other next hop;
* a blackhole object: a `B` route;
* `ip nexthop del id 5`: the kernel deletes 10.9/16 without a route
  message; softnet's copy goes with one RTM_DELETE and traffic stops;
* nothing counted as not representable.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Monitor, Topo, check, log, main, wait_until  # noqa: E402


def rows(text, dest):
    return [l.split() for l in text.splitlines() if l.split() and l.split()[0] == dest]


def icmp_in_echos(t, ns):
    text = t.ns_run(ns, "cat /proc/net/snmp").stdout
    hdr, val = [l.split() for l in text.splitlines() if l.startswith("Icmp:")][:2]
    return int(val[hdr.index("InEchos")])


def run_test():
    with Topo("rtnh") as t:
        net = t.router_topology(driver="packet", third=True)
        r, a, b, d_ns = net.r, net.a, net.b, net.d
        t.step("a nexthop object and a route naming it before the daemon starts")
        t.ns_run(r, "ip nexthop add id 4 via 10.0.2.2 dev rb onlink")
        t.ns_run(r, "ip route add 10.6.0.0/16 nhid 4")
        d = t.daemon(net.config(extra='sync_routes = "main"\n'), net=net)

        def synced(dest):
            return rows(d.out("netstat", "-rn", "-f", "inet"), dest)

        got = synced("10.6/16")
        check(got and got[0][1] == "10.0.2.2" and got[0][-1] == "r1", f"10.6/16 at start: {got}")
        mon = Monitor(t, d)
        seq0 = mon.wait_subscribed(d)

        t.step("a route via object 5 (B): in softnet, A reaches 10.9.1.1 on B")
        t.ns_run(b, "ip addr add 10.9.1.1/32 dev lo")
        t.ns_run(d_ns, "ip addr add 10.9.1.1/32 dev lo")
        t.ns_run(r, "ip nexthop add id 5 via 10.0.2.2 dev rb onlink")
        t.ns_run(r, "ip nexthop add id 6 via 10.0.3.2 dev rd onlink")
        t.ns_run(r, "ip route add 10.9.0.0/16 nhid 5 proto bgp")
        r9 = wait_until("10.9/16 in softnet", lambda: synced("10.9/16"), timeout=10)[0]
        check(r9[1] == "10.0.2.2" and r9[2] == "UG" and r9[-1] == "r1", f"10.9/16: {r9}")
        before = icmp_in_echos(t, b)
        check(t.ns_run(a, "ping -c 2 -i 0.2 -W 1 10.9.1.1", check_rc=False).returncode == 0, "10.9.1.1 via B")
        check(icmp_in_echos(t, b) - before >= 2, "the pings did not reach B")

        t.step("the object replaced (via D): the route follows, A's pings reach D")
        t.ns_run(r, "ip nexthop replace id 5 via 10.0.3.2 dev rd onlink")
        wait_until("10.9/16 via D", lambda: synced("10.9/16")[0][1] == "10.0.3.2", timeout=10)
        before = icmp_in_echos(t, d_ns)
        check(t.ns_run(a, "ping -c 2 -i 0.2 -W 1 10.9.1.1", check_rc=False).returncode == 0, "10.9.1.1 via D")
        check(icmp_in_echos(t, d_ns) - before >= 2, "the pings did not reach D")

        t.step("a group of two objects: one multipath route, flows reach B and D")
        for ns in (b, d_ns):
            t.ns_run(ns, "ip route add local 10.8.0.0/16 dev lo")
        t.ns_run(r, "ip nexthop add id 8 via 10.0.2.2 dev rb onlink")
        t.ns_run(r, "ip nexthop add id 7 group 6/8")
        t.ns_run(r, "ip route add 10.8.0.0/16 nhid 7")
        wait_until("10.8/16 two lines", lambda: len(synced("10.8/16")) == 2, timeout=10)
        hops = synced("10.8/16")
        check({h[1] for h in hops} == {"10.0.2.2", "10.0.3.2"} and all("P" in h[2] for h in hops), f"10.8/16: {hops}")
        before = {ns: icmp_in_echos(t, ns) for ns in (b, d_ns)}
        for i in range(24):
            check(t.ns_run(a, f"ping -c 1 -W 1 10.8.{i}.{i + 1}", check_rc=False).returncode == 0, f"10.8.{i}.{i + 1}")
        got = {ns: icmp_in_echos(t, ns) - before[ns] for ns in (b, d_ns)}
        log(f"  group: B got {got[b]}, D got {got[d_ns]} of 24 flows")
        check(got[b] > 0 and got[d_ns] > 0, f"flows not spread over the group: {got}")
        t.step("a member deleted: the group's route keeps the other")
        t.ns_run(r, "ip nexthop del id 8")
        wait_until("10.8/16 one line via D", lambda: [h[1] for h in synced("10.8/16")] == ["10.0.3.2"], timeout=10)

        t.step("a blackhole object")
        t.ns_run(r, "ip nexthop add id 9 blackhole")
        t.ns_run(r, "ip route add 10.51.0.0/16 nhid 9")
        bh = wait_until("10.51/16", lambda: synced("10.51/16"), timeout=10)[0]
        check("B" in bh[2], f"blackhole object: {bh}")

        t.step("object 5 deleted: the kernel drops 10.9/16 silently, softnet with one RTM_DELETE")
        t.ns_run(r, "ip nexthop del id 5")
        check("10.9.0.0" not in t.ns_run(r, "ip route show").stdout, "the kernel kept 10.9/16")
        wait_until("10.9/16 gone", lambda: not synced("10.9/16"), timeout=10)
        check(t.ns_run(a, "ping -c 1 -W 1 10.9.1.1", check_rc=False).returncode != 0, "10.9.1.1 still reachable")
        wait_until("RTM_DELETE 10.9.0.0", lambda: [
            m for m in mon.messages() if m["seq"] > seq0 and m["dst"] == "10.9.0.0" and m["type"] == "RTM_DELETE"],
            timeout=5)
        kinds = [m["type"] for m in mon.messages() if m["seq"] > seq0 and m["dst"] == "10.9.0.0"]
        check(kinds == ["RTM_ADD", "RTM_CHANGE", "RTM_DELETE"], f"monitor for 10.9.0.0: {kinds}")
        st = d.out("netstat", "-s")
        log("  " + " / ".join(l.strip() for l in st.split("route sync:")[-1].strip().splitlines()))
        check(re.search(r"\b0 kernel routes? not representable", st), st)
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
