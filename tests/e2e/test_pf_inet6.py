"""pf on the IPv6 data path with Linux peers (IPv6 on A's and B's veths).

A fd00:1::2 -- r0 fd00:1::1/64 [softnet + pf] r1 fd00:2::1/64 -- B fd00:2::2

1 with `block return all`, `pass inet6 proto icmp6 all` (neighbor
  discovery passes through pf too) and TCP passed in from A's side only:
  ping -6 A <-> B and to the router work; `pfctl -ss` shows the IPv6
  ICMPv6 states
2 TCP A -> B (curl -6 from an http.server on B) works and `pfctl -ss`
  shows its state; TCP B -> A gets pf's RST ("Connection refused" from
  curl, though A listens)
3 a blocked ping (B -> the router's fd00:1::1, echo requests blocked in on
  r1) gets no reply and is counted as blocked
4 a slow transfer A <- B keeps going across a ruleset reload that no
  longer passes new TCP from A (its state survives; a new connection is
  refused)
5 `block in on r0 inet6 proto icmp6` for neighbor discovery too: A's
  solicitations for the router are blocked, so A cannot reach it
"""

import hashlib
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, netstat_s_counters, wait_until  # noqa: E402
from lib_pf import pf6_router  # noqa: E402

RULES = """\
block return all
pass inet6 proto icmp6 all
block in on r1 inet6 proto icmp6 to fd00:1::1 icmp6-type echoreq
pass in on r0 inet6 proto tcp from fd00:1::/64 to port 8080
pass out inet6 proto tcp all keep state
"""

# The same without new TCP from A.
RELOADED = """\
block return all
pass inet6 proto icmp6 all
block in on r1 inet6 proto icmp6 to fd00:1::1 icmp6-type echoreq
pass out inet6 proto tcp all keep state
"""

# Neighbor discovery blocked on A's side.
NO_ICMP6_ON_R0 = """\
pass all
block in on r0 inet6 proto icmp6 all
"""


def ping6(t, ns, dst, check_rc=True):
    return t.ns_run(ns, f"ping -6 -n -c 2 -i 0.3 -W 2 {dst}", check_rc=check_rc)


def run_test():
    with Topo("pf6") as t:
        t.step("topology: A -- softnet + pf -- B, IPv6 on the peers")
        net, d = pf6_router(t, RULES)
        conf = os.path.join(t.tmp, "pf.conf")

        def pfctl(*args):
            return d.admin("pfctl", *args).stdout

        def states(pattern):
            return [l for l in pfctl("-ss").splitlines() if re.search(pattern, l)]

        t.step("1: ping -6 through pf (NDP passed by the icmp6 rule); ICMPv6 states")
        ping6(t, net.a, "fd00:1::1")
        ping6(t, net.a, "fd00:2::2")
        ping6(t, net.b, "fd00:1::2")
        ss = pfctl("-ss")
        log("  " + ss.strip().replace("\n", "\n  "))
        check(states(r"^all ipv6-icmp fd00:2::2.* <- fd00:1::2"), f"no A -> B ICMPv6 state:\n{ss}")
        check(states(r"^all ipv6-icmp fd00:1::2.* <- fd00:2::2"), f"no B -> A ICMPv6 state:\n{ss}")

        t.step("2: TCP A -> B passes with a state; TCP B -> A gets pf's RST")
        www = os.path.join(t.tmp, "www")
        os.makedirs(www)
        big = os.path.join(www, "big.bin")
        data = os.urandom(3 << 20)
        with open(big, "wb") as f:
            f.write(data)
        t.ns_spawn(net.b, f"python3 -m http.server 8080 --bind fd00:2::2 --directory {www}")
        t.ns_spawn(net.a, f"python3 -m http.server 8080 --bind fd00:1::2 --directory {www}")
        t.wait_listen(net.b, 8080)
        t.wait_listen(net.a, 8080)
        p = t.ns_run(net.a, "curl -6 -sS --max-time 10 -o /dev/null -w %{http_code} http://[fd00:2::2]:8080/",
                     check_rc=False)
        check(p.stdout == "200", f"A -> B: {p.stdout} {p.stderr}")
        st = states(r"^all tcp fd00:2::2\[8080\] <- fd00:1::2\[\d+\]")
        check(st, f"no TCP state: {pfctl('-ss')}")
        log(f"  {st[0]}")
        # tcpdump in B sees the RST (pf's, from A's address: A listens).
        cap, cap_err = os.path.join(t.tmp, "rst.txt"), os.path.join(t.tmp, "rst.err")
        with open(cap, "w") as out, open(cap_err, "w") as err:
            td = t.ns_spawn(net.b, "tcpdump -l -n -i b0 ip6 and tcp port 8080", stdout=out, stderr=err)
        wait_until("tcpdump in B", lambda: "listening on" in open(cap_err).read(), timeout=10)
        p = t.ns_run(net.b, "curl -6 -v --max-time 10 -o /dev/null http://[fd00:1::2]:8080/", check_rc=False)
        refused = [l for l in p.stderr.splitlines() if "Connection refused" in l]
        log(f"  B -> A: {refused}")
        check(p.returncode == 7 and refused, f"B -> A: rc {p.returncode} {p.stderr}")
        wait_until("the RST seen in B",
                   lambda: re.search(r"fd00:1::2\.8080 > fd00:2::2\.\d+: Flags \[R", open(cap).read()), timeout=5)
        t.kill(td)

        t.step("3: ping B -> the router's fd00:1::1 is blocked: no reply, counted")
        before = netstat_s_counters(d.out("netstat", "-s"))["ip6: packets blocked by the packet filter"]
        p = ping6(t, net.b, "fd00:1::1", check_rc=False)
        check(p.returncode != 0 and "0 received" in p.stdout, f"blocked ping answered:\n{p.stdout}")
        after = netstat_s_counters(d.out("netstat", "-s"))["ip6: packets blocked by the packet filter"]
        check(after >= before + 2, f"blocked {before} -> {after}")
        ping6(t, net.b, "fd00:2::1")

        t.step("4: a slow transfer A <- B survives a reload that passes no new TCP from A")
        got = os.path.join(t.tmp, "got.bin")
        res = {}

        def fetch():
            res["p"] = t.ns_run(net.a, f"curl -6 -sS --limit-rate 600k --max-time 60 -o {got} "
                                "http://[fd00:2::2]:8080/big.bin", check_rc=False, timeout=70)

        th = threading.Thread(target=fetch)
        th.start()
        wait_until("the transfer's state", lambda: states(r"^all tcp fd00:2::2\[8080\] <- .* ESTABLISHED"),
                   timeout=10)
        time.sleep(1)
        with open(conf, "w") as f:
            f.write(RELOADED)
        d.admin("pfctl", "-f", conf)
        check("pass in on r0" not in pfctl("-sr"), "reloaded")
        p = t.ns_run(net.a, "curl -6 -sS --max-time 10 -o /dev/null http://[fd00:2::2]:8080/", check_rc=False)
        check(p.returncode == 7, f"a new connection: {p.returncode} {p.stderr}")
        th.join(timeout=80)
        p = res.get("p")
        check(p is not None and p.returncode == 0, f"transfer across the reload: {p and p.stderr}")
        with open(got, "rb") as f:
            check(hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest(), "SHA-256 differs")

        t.step("5: icmp6 blocked in on r0: A's neighbor discovery is blocked too")
        with open(conf, "w") as f:
            f.write(NO_ICMP6_ON_R0)
        d.admin("pfctl", "-f", conf)
        # The NS state step 1 made (keyed by the target) would pass A's
        # solicitations still.
        d.admin("pfctl", "-F", "states")
        t.ns_run(net.a, "ip -6 neigh flush dev a0")
        p = t.ns_run(net.a, "ping -6 -n -c 2 -i 0.3 -W 1 fd00:1::1", check_rc=False)
        check(p.returncode != 0, f"ping with icmp6 blocked:\n{p.stdout}")
        n = t.ns_run(net.a, "ip -6 neigh show fd00:1::1", check_rc=False).stdout
        check("lladdr" not in n or "FAILED" in n or "INCOMPLETE" in n, f"A resolved the router: {n}")


if __name__ == "__main__":
    main(run_test)
