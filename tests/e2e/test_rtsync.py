#!/usr/bin/env python3
"""Route sync from netlink (`sync_routes = "main"`): the kernel's main table
in softnet's namespace mirrored into softnet's table.

A (10.0.1.2) -- r0 [softnet] r1 -- B (10.0.2.2), r2 -- D (10.0.3.2), the
packet driver on the veth ends ra/rb/rd in the router's namespace R. Routes
are added there with `ip route ... dev rb onlink` (the veth ends carry no
address): rb is r1's device, rd r2's.

* a route present before the daemon starts is in softnet's table at once
  (the resync at start);
* `ip route add/replace/del` each appear in `netstat -rn` and once in
  `route monitor` (RTM_ADD / RTM_CHANGE / RTM_DELETE), and A's pings go
  where the kernel's route says (B, then D, then nowhere);
* ECMP: a two-nexthop route is one `P` route with a line per next hop, and
  A's flows to 32 addresses reach both B and D;
* blackhole / unreachable / prohibit as `B` / `R`; an IPv6 blackhole, and
  an IPv6 route via a link-local gateway scoped to the kernel's interface;
* softnet's own static route (config) is neither replaced by a kernel
  route to its prefix nor removed by that route's withdrawal; deleted with
  `route delete`, the kernel's route for the prefix takes its place;
* 100,000 routes added with `ip -batch` all arrive (each once in the
  monitor) while A pings B, and all go again when deleted; the figures
  the daemon logs are printed;
* a tiny receive buffer (SOFTNET_RTSYNC_RCVBUF) overrun on purpose by
  40,000 changes (eight writers): softnet resyncs to exactly the kernel's table.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from lib_e2e import Monitor, Topo, check, log, main, wait_until  # noqa: E402

STATIC = '\n[[route]]\ndest = "10.77.0.0/16"\ngateway = "10.0.3.2"\n'


def netstat(d, fam="inet"):
    return d.out("netstat", "-rn", "-f", fam)


def rows(text, dest):
    """netstat -rn lines of destination `dest`, split into columns."""
    return [l.split() for l in text.splitlines() if l.split() and l.split()[0] == dest]


def pings(t, ns, addr, count=2):
    return t.ns_run(ns, f"ping -c {count} -i 0.2 -W 1 {addr}", check_rc=False)


def monitor_for(mon, dst, since):
    return [m for m in mon.messages() if m["seq"] and m["seq"] > since and m["dst"] == dst]


def icmp_in_echos(t, ns):
    text = t.ns_run(ns, "cat /proc/net/snmp").stdout
    hdr, val = [l.split() for l in text.splitlines() if l.startswith("Icmp:")][:2]
    return int(val[hdr.index("InEchos")])


def kernel_prefixes(t, ns, prefix_re):
    out = t.ns_run(ns, "ip -4 route show table main", timeout=120).stdout
    return {l.split()[0] for l in out.splitlines() if re.match(prefix_re, l)}


def netstat_prefixes(d, prefix_re):
    out = netstat(d)
    res = set()
    for l in out.splitlines():
        w = l.split()
        if w and re.match(prefix_re, w[0]):
            if "/" not in w[0]:
                res.add(w[0])  # a host route
                continue
            # netname trims octets: 11.0.5/24 -> 11.0.5.0/24
            net, ln = w[0].split("/")
            parts = net.split(".") + ["0"] * (4 - len(net.split(".")))
            res.add(".".join(parts) + "/" + ln)
    return res


def batch_file(t, path, verb, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(f"route {verb} 11.{i >> 16}.{(i >> 8) & 255}.{i & 255}/32 via 10.0.2.2 dev rb onlink\n")
    return path


def test():
    with Topo("rtsync") as t:
        net = t.router_topology(driver="packet", third=True)
        r, a, b, d_ns = net.r, net.a, net.b, net.d
        t.step("a kernel route before the daemon starts")
        t.ns_run(r, "ip route add 10.6.0.0/16 via 10.0.2.2 dev rb onlink")
        cfg = net.config(extra='sync_routes = "main"\n', routes=STATIC)
        d = t.daemon(cfg, net=net)
        out = netstat(d)
        got = rows(out, "10.6/16")
        check(got and got[0][1] == "10.0.2.2" and got[0][-1] == "r1" and "G" in got[0][2], f"10.6/16 not synced at start:\n{out}")
        check(d.out("route", "get", "10.6.0.0/16").find("(boot)") >= 0, "route get names the kernel protocol")

        mon = Monitor(t, d)
        seq0 = mon.wait_subscribed(d)

        t.step("ip route add: netstat, one RTM_ADD, A reaches 10.9.1.1 on B")
        t.ns_run(b, "ip addr add 10.9.1.1/32 dev lo")
        t.ns_run(r, "ip route add 10.9.0.0/16 via 10.0.2.2 dev rb onlink proto static")
        wait_until("10.9/16 in netstat", lambda: rows(netstat(d), "10.9/16"), timeout=10)
        got = rows(netstat(d), "10.9/16")[0]
        check(got[1] == "10.0.2.2" and got[2] == "UGS" and got[-1] == "r1", f"10.9/16: {got}")
        check(pings(t, a, "10.9.1.1").returncode == 0, "A cannot reach 10.9.1.1 through the synced route")
        wait_until("RTM_ADD 10.9.0.0", lambda: monitor_for(mon, "10.9.0.0", seq0), timeout=5)

        t.step("ip route replace: one RTM_CHANGE, traffic moves to D")
        t.ns_run(b, "ip addr del 10.9.1.1/32 dev lo")
        t.ns_run(d_ns, "ip addr add 10.9.1.1/32 dev lo")
        t.ns_run(r, "ip route replace 10.9.0.0/16 via 10.0.3.2 dev rd onlink proto static")
        wait_until("10.9/16 via D", lambda: rows(netstat(d), "10.9/16")[0][1] == "10.0.3.2", timeout=10)
        check(pings(t, a, "10.9.1.1").returncode == 0, "A cannot reach 10.9.1.1 on D after the replace")

        t.step("ip route del: one RTM_DELETE, traffic stops")
        t.ns_run(r, "ip route del 10.9.0.0/16")
        wait_until("10.9/16 gone", lambda: not rows(netstat(d), "10.9/16"), timeout=10)
        check(pings(t, a, "10.9.1.1", count=1).returncode != 0, "10.9.1.1 still answers without a route")
        time.sleep(0.5)
        kinds = [m["type"] for m in monitor_for(mon, "10.9.0.0", seq0)]
        check(kinds == ["RTM_ADD", "RTM_CHANGE", "RTM_DELETE"], f"monitor for 10.9.0.0: {kinds}")

        t.step("ECMP: one multipath route, flows reach both B and D")
        for ns in (b, d_ns):
            t.ns_run(ns, "ip route add local 10.8.0.0/16 dev lo")
        t.ns_run(r, "ip route add 10.8.0.0/16 nexthop via 10.0.2.2 dev rb onlink nexthop via 10.0.3.2 dev rd onlink")
        wait_until("10.8/16 two lines", lambda: len(rows(netstat(d), "10.8/16")) == 2, timeout=10)
        hops = rows(netstat(d), "10.8/16")
        check({h[1] for h in hops} == {"10.0.2.2", "10.0.3.2"} and all("P" in h[2] for h in hops), f"10.8/16: {hops}")
        check(len(monitor_for(mon, "10.8.0.0", seq0)) == 1, "one message for the multipath route")
        before = {ns: icmp_in_echos(t, ns) for ns in (b, d_ns)}
        for i in range(32):
            p = t.ns_run(a, f"ping -c 1 -W 1 10.8.{i}.{i + 1}", check_rc=False)
            check(p.returncode == 0, f"10.8.{i}.{i + 1} did not answer")
        got = {ns: icmp_in_echos(t, ns) - before[ns] for ns in (b, d_ns)}
        log(f"ECMP: B got {got[b]}, D got {got[d_ns]} of 32 flows")
        check(got[b] > 0 and got[d_ns] > 0 and got[b] + got[d_ns] == 32, f"flows not spread: {got}")

        t.step("blackhole / unreachable / prohibit, IPv6")
        t.ns_run(r, "ip route add blackhole 10.51.0.0/16")
        t.ns_run(r, "ip route add unreachable 10.52.0.0/16")
        t.ns_run(r, "ip route add prohibit 10.53.0.0/16")
        t.ns_run(r, "ip -6 route add blackhole 2001:db8:66::/48")
        wait_until("discard routes", lambda: rows(netstat(d), "10.53/16"), timeout=10)
        out = netstat(d)
        check("B" in rows(out, "10.51/16")[0][2], f"blackhole: {rows(out, '10.51/16')}")
        check("R" in rows(out, "10.52/16")[0][2] and "R" in rows(out, "10.53/16")[0][2], out)
        p = pings(t, a, "10.52.1.1", count=1)
        check(p.returncode != 0 and "Unreachable" in p.stdout, f"unreachable route: {p.stdout}")
        check(pings(t, a, "10.51.1.1", count=1).returncode != 0, "blackhole answered")
        out6 = wait_until("IPv6 blackhole", lambda: rows(netstat(d, "inet6"), "2001:db8:66::/48"), timeout=10)
        check("B" in out6[0][2], f"v6 blackhole: {out6}")
        # A route via a link-local gateway takes the kernel's interface
        # (rb: softnet's r1) as its scope.
        t.ns_run(r, "sysctl -qw net.ipv6.conf.rb.disable_ipv6=0")
        t.ns_run(r, "ip -6 route add 2001:db8:9::/48 via fe80::2 dev rb proto bgp")
        out6 = wait_until("IPv6 route", lambda: rows(netstat(d, "inet6"), "2001:db8:9::/48"), timeout=10)
        check(out6[0][1] == "fe80::2%r1" and out6[0][2] == "UG" and out6[0][-1] == "r1", f"v6 route: {out6}")
        check("(bgp)" in d.out("route", "get", "-inet6", "2001:db8:9::/48"), "route get -inet6 names bgp")
        t.ns_run(r, "ip -6 route del 2001:db8:9::/48")
        wait_until("IPv6 route gone", lambda: not rows(netstat(d, "inet6"), "2001:db8:9::/48"), timeout=10)

        t.step("softnet's own static route is neither replaced nor removed")
        seq1 = mon.messages()[-1]["seq"]
        t.ns_run(r, "ip route add 10.77.0.0/16 via 10.0.2.2 dev rb onlink")
        time.sleep(0.5)
        t.ns_run(r, "ip route del 10.77.0.0/16")
        time.sleep(0.5)
        got = rows(netstat(d), "10.77/16")
        check(got and got[0][1] == "10.0.3.2" and got[0][2] == "UGS", f"static route changed: {got}")
        check(not monitor_for(mon, "10.77.0.0", seq1), "messages for softnet's static route")
        check(re.search(r"[1-9]\d* kernel routes? shadowed", d.out("netstat", "-s")), "shadowed not counted")
        t.step("... but once softnet's route is deleted, the kernel's comes in")
        t.ns_run(r, "ip route add 10.77.0.0/16 via 10.0.2.2 dev rb onlink")
        d.admin("route", "delete", "10.77.0.0/16")
        wait_until("the kernel's 10.77/16", lambda: [x for x in rows(netstat(d), "10.77/16") if x[1] == "10.0.2.2"],
                   timeout=10)
        t.ns_run(r, "ip route del 10.77.0.0/16")
        wait_until("10.77/16 gone", lambda: not rows(netstat(d), "10.77/16"), timeout=10)

        t.step("100,000 routes with ip -batch, while A pings B")
        n = 100_000
        seq2 = mon.messages()[-1]["seq"]
        pinger = t.ns_spawn(a, "ping -i 0.01 -c 600 -W 1 10.0.2.2", stdout=open(os.path.join(t.tmp, "ping.txt"), "w"))
        t0 = time.monotonic()
        t.ns_run(r, ["ip", "-batch", batch_file(t, os.path.join(t.tmp, "add.txt"), "add", n)], timeout=300)
        t_kernel = time.monotonic() - t0
        want = kernel_prefixes(t, r, r"11\.")
        check(len(want) == n, f"kernel has {len(want)} routes")

        def all_in():
            return len(re.findall(r"^11\.", netstat(d), re.M)) >= n

        wait_until("100,000 routes in softnet", all_in, timeout=180, interval=1)
        t_all = time.monotonic() - t0
        got = netstat_prefixes(d, r"11\.")
        check(got == want, f"softnet's 11/8 routes differ from the kernel's: {len(got)} vs {len(want)}")
        log(f"100,000 routes: kernel took {t_kernel:.1f} s, in softnet after {t_all:.1f} s")
        for l in d.log_lines():
            if "route sync:" in l and "batch" in l:
                log("daemon: " + l.split("route sync:")[-1].strip())
        wait_until("100,000 RTM_ADD", lambda: sum(
            1 for m in mon.messages() if m["seq"] > seq2 and m["type"] == "RTM_ADD" and m["dst"].startswith("11.")) == n,
            timeout=120, interval=2)
        adds = [m["dst"] for m in mon.messages() if m["seq"] > seq2 and m["type"] == "RTM_ADD"]
        check(len(adds) == len(set(adds)), "a route announced twice")

        t.step("... and all deleted again")
        t.ns_run(r, ["ip", "-batch", batch_file(t, os.path.join(t.tmp, "del.txt"), "del", n)], timeout=300)
        wait_until("11/8 routes gone", lambda: not re.search(r"^11\.", netstat(d), re.M), timeout=180, interval=1)
        pinger.wait(timeout=60)
        ptxt = open(os.path.join(t.tmp, "ping.txt")).read()
        m = re.search(r"(\d+) packets transmitted, (\d+) received", ptxt)
        log(f"A -> B during the burst: {m.group(0) if m else ptxt[-200:]}")
        check(m and int(m.group(2)) >= int(m.group(1)) * 0.9, f"forwarding suffered during the burst: {ptxt[-300:]}")
        st = d.out("netstat", "-s")
        log("netstat -s: " + " / ".join(l.strip() for l in st.split("route sync:")[-1].strip().splitlines()))
        mon.stop()
        d.stop()

        t.step("a tiny receive buffer overrun on purpose: resync to the kernel's exact table")
        os.environ["SOFTNET_RTSYNC_RCVBUF"] = "4096"
        try:
            d2 = t.daemon(cfg, net=net, name="softnet-small")
        finally:
            del os.environ["SOFTNET_RTSYNC_RCVBUF"]
        n2 = 40_000
        # Eight writers at once: faster than one reader with 4 KB to spare
        # (four were not always, once the sync read between flushes of
        # half a second during a burst).
        batch_file(t, os.path.join(t.tmp, "add2.txt"), "add", n2)
        lines = open(os.path.join(t.tmp, "add2.txt")).read().splitlines()
        writers = []
        for k in range(8):
            path = os.path.join(t.tmp, f"add2-{k}.txt")
            with open(path, "w") as f:
                f.write("\n".join(lines[k::8]) + "\n")
            writers.append(t.ns_spawn(r, ["ip", "-batch", path]))
        for w in writers:
            check(w.wait(timeout=300) == 0, "ip -batch failed")
        # Some withdrawn again, so that lost deletions matter too.
        with open(os.path.join(t.tmp, "del2.txt"), "w") as f:
            for i in range(0, n2, 3):
                f.write(f"route del 11.{i >> 16}.{(i >> 8) & 255}.{i & 255}/32\n")
        t.ns_run(r, ["ip", "-batch", os.path.join(t.tmp, "del2.txt")], timeout=300)
        want = {p for p in kernel_prefixes(t, r, r"11\.")}

        def converged():
            return netstat_prefixes(d2, r"11\.") == want

        wait_until("softnet's table equal to the kernel's", converged, timeout=120, interval=1)
        st = d2.out("netstat", "-s")
        m = re.search(r"(\d+) receive buffer overruns?", st)
        check(m and int(m.group(1)) >= 1, f"no overrun counted:\n{st}")
        check(re.search(r"([2-9]|\d\d+) full resyncs", st), f"no resync after the overrun:\n{st}")
        log(f"overrun: {m.group(0)}, {len(want)} routes equal to the kernel's")
        check(d2.alive(), "daemon died")


if __name__ == "__main__":
    main(test)
