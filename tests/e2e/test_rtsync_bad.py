#!/usr/bin/env python3
"""Route sync, issue 14's bad inputs (the ones no other test covers: a host
interface name that exists is test_hostif.py's, a metrics port in use is
test_metrics.py's).

A (10.0.1.2) -- r0 [softnet] r1 -- B (10.0.2.2), r2 -- D (10.0.3.2).

* `sync_routes` naming a table that does not exist (no such name in
  rt_tables): `softnet up` exits 1 with the config line, no socket left;
* a table number the kernel has no routes in yet (1234): the daemon
  starts with nothing synced; routes added to 1234 arrive, routes of main
  do not;
* kernel routes softnet cannot represent (type of service, throw, an IPv4
  route via an IPv6 next hop, an IPv4 route naming a nexthop object with
  an IPv6 gateway): each counted under `netstat -s`, logged with its
  reason, the daemon running and the rest of the table synced;
* a daemon flooding route changes: 20,000 `ip route replace` of one
  prefix alternating between B and D, with 10,000 other prefixes added
  and deleted, while A pings B: the control socket answers within a
  second throughout, forwarding goes on, softnet ends with the kernel's
  last word (the prefix via the last gateway, the others gone), and the
  flapping prefix costs far fewer route messages than changes (changes
  to one prefix within a batch are one message).
"""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Monitor, Topo, check, log, main, wait_until  # noqa: E402

TABLE = 1234


def rows(text, dest):
    return [l.split() for l in text.splitlines() if l.split() and l.split()[0] == dest]


def unsupported(d):
    m = re.search(r"(\d+) kernel routes? not representable", d.out("netstat", "-s"))
    check(m, "no `not representable` line in netstat -s")
    return int(m.group(1))


def run_test():
    with Topo("rtbad") as t:
        net = t.router_topology(driver="packet", third=True)
        r, a = net.r, net.a

        t.step("sync_routes naming a table that does not exist: exit 1 with the line")
        bad = net.config(extra='sync_routes = "nosuch-table"\n')
        path = os.path.join(t.tmp, "bad.toml")
        sock = os.path.join(t.tmp, "bad.sock")
        with open(path, "w") as f:
            f.write(bad.replace("@SOCKET@", sock))
        p = t.ns_run(r, [t.bin, "up", "-c", path], check_rc=False, timeout=30)
        line = 1 + bad.splitlines().index('sync_routes = "nosuch-table"')
        want = f'{path} line {line}: sync_routes: unknown kernel routing table "nosuch-table"'
        check(p.returncode == 1 and want in p.stderr, f"up: {p.returncode} {p.stderr!r}")
        check(not os.path.exists(sock), "socket left by a daemon that did not start")

        t.step(f"table {TABLE}, empty at start: nothing synced; its routes arrive, main's do not")
        d = t.daemon(net.config(extra=f"sync_routes = {TABLE}\n"), net=net)

        def synced(dest):
            return rows(d.out("netstat", "-rn", "-f", "inet"), dest)

        st = d.out("netstat", "-s")
        check(re.search(r"\b0 route changes made", st), f"routes synced from an empty table:\n{st}")
        t.ns_run(r, f"ip route add 10.60.0.0/16 via 10.0.2.2 dev rb onlink table {TABLE}")
        t.ns_run(r, "ip route add 10.61.0.0/16 via 10.0.2.2 dev rb onlink")
        wait_until("10.60/16 from table 1234", lambda: synced("10.60/16"), timeout=10)
        time.sleep(0.5)
        check(not synced("10.61/16"), "a route of main synced with sync_routes = 1234")

        t.step("routes softnet cannot represent: counted, logged, not fatal")
        n0 = unsupported(d)
        t.ns_run(r, "sysctl -qw net.ipv6.conf.rb.disable_ipv6=0")
        bad_routes = [
            f"ip route add 10.62.0.0/16 tos 0x10 via 10.0.2.2 dev rb onlink table {TABLE}",
            f"ip route add throw 10.63.0.0/16 table {TABLE}",
            f"ip route add 10.64.0.0/16 via inet6 fe80::2 dev rb table {TABLE}",
        ]
        for c in bad_routes:
            t.ns_run(r, c)
        # A nexthop object with an IPv6 gateway named by an IPv4 route.
        t.ns_run(r, "ip nexthop add id 66 via fe80::2 dev rb")
        t.ns_run(r, f"ip route add 10.66.0.0/16 nhid 66 table {TABLE}")
        t.ns_run(r, f"ip route add 10.65.0.0/16 via 10.0.2.2 dev rb onlink table {TABLE}")
        wait_until("a good route after the bad ones", lambda: synced("10.65/16"), timeout=10)
        wait_until("four bad routes counted", lambda: unsupported(d) >= n0 + 4, timeout=10)
        for dest in ("10.62/16", "10.63/16", "10.64/16", "10.66/16"):
            check(not synced(dest), f"{dest} installed")
        text = d.log_text()
        for why in ("type-of-service", "Throw", "RTA_VIA", "of another family"):
            check(re.search(rf"not representable in softnet \([^)]*{why}", text), f"no log line naming {why}")
        check(d.alive(), "daemon died on unrepresentable routes")
        log(f"  {unsupported(d) - n0} not representable")

        t.step("a flood: 20,000 replaces of one prefix and 10,000 adds/deletes while A pings B")
        mon = Monitor(t, d)
        seq0 = mon.wait_subscribed(d)
        n_flap, n_other = 20_000, 10_000
        path = os.path.join(t.tmp, "flood.txt")
        with open(path, "w") as f:
            for i in range(n_flap):
                gw, dev = ("10.0.2.2", "rb") if i % 2 else ("10.0.3.2", "rd")
                f.write(f"route replace 10.70.0.0/16 via {gw} dev {dev} onlink table {TABLE}\n")
                if i % 2 == 0:
                    j = i // 2
                    f.write(f"route add 12.{j >> 8}.{j & 255}.0/24 via 10.0.2.2 dev rb onlink table {TABLE}\n")
            for j in range(n_other):
                f.write(f"route del 12.{j >> 8}.{j & 255}.0/24 table {TABLE}\n")
            f.write(f"route replace 10.70.0.0/16 via 10.0.3.2 dev rd onlink table {TABLE}\n")
        pinger = t.ns_spawn(a, "ping -i 0.02 -c 200 -W 1 10.0.2.2", stdout=open(os.path.join(t.tmp, "ping.txt"), "w"))
        slowest = [0.0]
        stop = threading.Event()

        def probe():
            while not stop.is_set():
                t0 = time.monotonic()
                d.admin("route", "get", "10.0.2.2", check_rc=False, timeout=10)
                slowest[0] = max(slowest[0], time.monotonic() - t0)
                time.sleep(0.05)

        th = threading.Thread(target=probe)
        th.start()
        try:
            t0 = time.monotonic()
            t.ns_run(r, ["ip", "-batch", path], timeout=300)
            log(f"  the kernel took {time.monotonic() - t0:.1f} s for {n_flap + 2 * n_other + 1} changes")
            wait_until("10.70/16 via D in the end", lambda: [x[1] for x in synced("10.70/16")] == ["10.0.3.2"],
                       timeout=60)
            wait_until("the 12/8 routes gone", lambda: not re.search(r"^12\.", d.out("netstat", "-rn"), re.M),
                       timeout=60)
        finally:
            stop.set()
            th.join(timeout=20)
        pinger.wait(timeout=60)
        ptxt = open(os.path.join(t.tmp, "ping.txt")).read()
        pm = re.search(r"(\d+) packets transmitted, (\d+) received", ptxt)
        log(f"  control socket: slowest answer {slowest[0] * 1e3:.0f} ms; A -> B: {pm.group(0) if pm else '?'}")
        check(slowest[0] < 1.0, f"the control socket took {slowest[0]:.2f} s during the flood")
        check(pm and int(pm.group(2)) >= int(pm.group(1)) * 0.9, f"forwarding suffered: {ptxt[-300:]}")
        msgs = [m for m in mon.messages() if m["seq"] > seq0 and m["dst"] == "10.70.0.0"]
        log(f"  10.70/16: {n_flap + 1} kernel changes, {len(msgs)} route messages in softnet")
        check(0 < len(msgs) < (n_flap + 1) // 10, f"{len(msgs)} messages for {n_flap + 1} changes")
        check(d.alive(), "daemon died in the flood")
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
