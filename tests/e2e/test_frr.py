#!/usr/bin/env python3
"""FRR end to end: zebra, bgpd and ospfd in softnet's namespace R peer over
the host interface hr1 (r1's twin) with FRR in the peer namespace P (B).

A (10.0.1.2) -- r0 [softnet, sync_routes = "main"] r1 (twin hr1) -- P (10.0.2.2)

* BGP (65001 / 65002) reaches Established and OSPF (hello 1, dead 4) goes
  Full over hr1: the sessions are punted to Linux after pf in, Linux's
  packets leave through pf out; P announces 10.9.0.0/16 by BGP and its
  loopback 10.8.1.1/32 by OSPF.
* zebra installs them with nexthop objects (`nhid N` in `ip route`, its
  default on this kernel): softnet resolves the objects (RTM_NEWNEXTHOP)
  and has 10.9/16 and 10.8.1.1 via 10.0.2.2 on r1, `route get` naming bgp
  and ospf, none counted as not representable; A reaches 10.9.1.1 and
  10.8.1.1 on P through softnet.
* P withdraws 10.9/16: exactly one RTM_DELETE follows the RTM_ADD in
  `route monitor`, the route leaves softnet and A's pings stop.
* FRR restarted in R with `no zebra nexthop kernel enable` (routes with
  their gateways, no objects): zebra's routes leave softnet when it stops,
  and the re-announced 10.9/16 comes back without an object and carries
  traffic again.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Monitor, Topo, check, log, main, wait_until  # noqa: E402
from lib_frr import Frr, require_frr  # noqa: E402

FRR_R = """
hostname r
{zebra}
interface hr1
 ip ospf hello-interval 1
 ip ospf dead-interval 4
!
router bgp 65001
 bgp router-id 10.0.2.1
 no bgp ebgp-requires-policy
 timers bgp 3 9
 neighbor 10.0.2.2 remote-as 65002
 neighbor 10.0.2.2 timers connect 2
!
router ospf
 ospf router-id 10.0.2.1
 network 10.0.2.0/24 area 0
!
"""

FRR_P = """
hostname p
interface b0
 ip ospf hello-interval 1
 ip ospf dead-interval 4
!
router bgp 65002
 bgp router-id 10.0.2.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 timers bgp 3 9
 neighbor 10.0.2.1 remote-as 65001
 neighbor 10.0.2.1 timers connect 2
 address-family ipv4 unicast
  network 10.9.0.0/16
 exit-address-family
!
router ospf
 ospf router-id 10.0.2.2
 network 10.0.2.0/24 area 0
 network 10.8.1.1/32 area 0
!
"""


def rows(text, dest):
    return [l.split() for l in text.splitlines() if l.split() and l.split()[0] == dest]


def ping(t, ns, addr, count=3):
    return t.ns_run(ns, f"ping -c {count} -i 0.2 -W 1 {addr}", check_rc=False).returncode == 0


def run_test():
    require_frr()
    with Topo("frr") as t:
        t.step("A -- r0 [softnet] r1 (twin hr1) -- P; FRR in R over hr1 and in P; sync_routes = main")
        net = t.router_topology("packet")
        cfg = net.config(extra='sync_routes = "main"\n').replace('name = "r1"\n', 'name = "r1"\nhost = "hr1"\n', 1)
        d = t.daemon(cfg, net=net)
        wait_until("hr1 addressed", lambda: "10.0.2.1/24" in t.ns_run(net.r, "ip -o -4 addr show dev hr1").stdout)
        for a in ("10.9.1.1/32", "10.8.1.1/32"):
            t.ns_run(net.b, f"ip addr add {a} dev lo")
        mon = Monitor(t, d)
        seq0 = mon.wait_subscribed(d)
        p = Frr(t, net.b, "p", FRR_P)
        r = Frr(t, net.r, "r", FRR_R.format(zebra=""))
        p.start()
        r.start()

        def synced(dest):
            return rows(d.out("netstat", "-rn", "-f", "inet"), dest)

        def up():
            bgp = r.vtysh("show ip bgp neighbors 10.0.2.2")
            ospf = r.vtysh("show ip ospf neighbor")
            check("BGP state = Established" in bgp, f"BGP: {bgp[:300]!r}")
            check(re.search(r"10\.0\.2\.2\s+\d+\s+Full", ospf), f"OSPF: {ospf!r}")
            return True

        t.step("BGP Established and OSPF Full over hr1")
        wait_until("BGP Established and OSPF Full in R", up, timeout=60, interval=1)

        t.step("zebra's routes use nexthop objects; softnet resolves them")
        k9 = wait_until("10.9/16 in R's kernel", lambda: t.ns_run(net.r, "ip route show 10.9.0.0/16").stdout.strip(),
                        timeout=30)
        k8 = wait_until("10.8.1.1 in R's kernel", lambda: t.ns_run(net.r, "ip route show 10.8.1.1").stdout.strip(),
                        timeout=30)
        log(f"  kernel: {k9} / {k8}")
        check("nhid" in k9 and "proto bgp" in k9, f"zebra's BGP route without a nexthop object: {k9}")
        check("nhid" in k8 and "proto ospf" in k8, f"zebra's OSPF route without a nexthop object: {k8}")
        log("  " + t.ns_run(net.r, "ip nexthop show").stdout.strip().replace("\n", "\n  "))
        r9 = wait_until("10.9/16 in softnet", lambda: synced("10.9/16"), timeout=15)[0]
        check(r9[1] == "10.0.2.2" and r9[2] == "UG" and r9[-1] == "r1", f"10.9/16: {r9}")
        r8 = wait_until("10.8.1.1 in softnet", lambda: synced("10.8.1.1"), timeout=15)[0]
        check(r8[1] == "10.0.2.2" and r8[2] == "UGH" and r8[-1] == "r1", f"10.8.1.1: {r8}")
        check("(bgp)" in d.out("route", "get", "10.9.0.0/16"), "route get does not name bgp")
        check("(ospf)" in d.out("route", "get", "10.8.1.1"), "route get does not name ospf")
        st = d.out("netstat", "-s")
        check(re.search(r"\b0 kernel routes? not representable", st), st)

        t.step("A reaches 10.9.1.1 (BGP) and 10.8.1.1 (OSPF) on P through softnet")
        check(ping(t, net.a, "10.9.1.1"), "10.9.1.1 unreachable")
        check(ping(t, net.a, "10.8.1.1"), "10.8.1.1 unreachable")

        t.step("P withdraws 10.9/16: one RTM_DELETE, the route goes, traffic stops")
        p.configure("router bgp 65002", "address-family ipv4 unicast", "no network 10.9.0.0/16")
        wait_until("10.9/16 gone from softnet", lambda: not synced("10.9/16"), timeout=30)
        check(not ping(t, net.a, "10.9.1.1", count=1), "10.9.1.1 still reachable")
        wait_until("the monitor has the deletion", lambda: [
            m for m in mon.messages() if m["seq"] > seq0 and m["dst"] == "10.9.0.0" and m["type"] == "RTM_DELETE"],
            timeout=5)
        kinds = [m["type"] for m in mon.messages() if m["seq"] > seq0 and m["dst"] == "10.9.0.0"]
        check(kinds == ["RTM_ADD", "RTM_DELETE"], f"monitor for 10.9.0.0: {kinds}")
        check(ping(t, net.a, "10.8.1.1", count=1), "the OSPF route went with the BGP one")

        t.step("FRR in R without nexthop objects: stopped, its routes go; restarted, 10.9/16 comes back")
        r.stop()
        wait_until("zebra's routes gone from softnet", lambda: not synced("10.8.1.1"), timeout=20)
        r.write(FRR_R.format(zebra="no zebra nexthop kernel enable\n!"))
        p.configure("router bgp 65002", "address-family ipv4 unicast", "network 10.9.0.0/16")
        r.start()
        wait_until("BGP Established and OSPF Full in R again", up, timeout=60, interval=1)
        k9 = wait_until("10.9/16 in R's kernel", lambda: t.ns_run(net.r, "ip route show 10.9.0.0/16").stdout.strip(),
                        timeout=30)
        log(f"  kernel: {k9}")
        check("nhid" not in k9 and "via 10.0.2.2" in k9, f"zebra still uses nexthop objects: {k9}")
        r9 = wait_until("10.9/16 in softnet", lambda: synced("10.9/16"), timeout=15)[0]
        check(r9[1] == "10.0.2.2" and r9[-1] == "r1", f"10.9/16: {r9}")
        wait_until("10.8.1.1 in softnet", lambda: synced("10.8.1.1"), timeout=15)
        check(ping(t, net.a, "10.9.1.1"), "10.9.1.1 unreachable without nexthop objects")
        st = d.out("netstat", "-s")
        log("  " + " / ".join(l.strip() for l in st.split("route sync:")[-1].strip().splitlines()))
        check(re.search(r"\b0 kernel routes? not representable", st), st)
        r.stop()
        p.stop()
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
