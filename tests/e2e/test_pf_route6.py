"""pf's routing options to IPv6 next hops end to end (pf.c pf_route6).

    A fd00:1::2 -- r0 [softnet + pf] r1 -- B fd00:2::2
                                     r2 -- D fd00:3::2  (a second next hop)

D runs a raw-socket sniffer on its link (AF_PACKET, IPv6 frames): it
shows what the router sent to D, to which MAC and with which hop limit.
D's kernel does not forward.

1. `route-to fd00:3::2` on A's pings to B: every echo request arrives at
   D (hop limit 63, D's MAC: the router resolved D by neighbor
   discovery), none at B; `-sr` prints the rule; TCP A -> B (not routed)
   still works.
1b. `route-to (r2 D's link-local address)`: the next hop on a named
   interface, resolved by neighbor discovery on that link.
1c. A table of next hops {B, D} round-robin: each new ping flow the next.
2. `reply-to fd00:3::2` on B's pings to A (rule in on r1): A answers, the
   replies leave by r2 to D, B gets none.
3. `dup-to fd00:3::2` on A's pings: A gets every reply from B, and D gets
   a copy of each request and of each reply.
4. Bad input: a next hop that never answers neighbor solicitations
   (fd00:3::99): the routed datagrams are dropped and counted, pings
   between A and B are unharmed; an IPv4 next hop on an `inet6` rule is
   refused at load with pfctl's message and the running ruleset kept.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import MAC_D, Topo, check, enable_ipv6, log, main, netstat_s_counters, wait_until  # noqa: E402
from lib_pf import PfLab, Sniffer  # noqa: E402

A6, B6, D6 = "fd00:1::2", "fd00:2::2", "fd00:3::2"

# Counts the ICMPv6 packets src -> dst of type `typ` that arrive on ifc for
# secs seconds (or until want of them); one JSON line at the start
# ({"ready": 1}) and one at the end ({"seen": [{"hlim", "mac"}...]}).
SNIFF = r"""
import json, socket, sys, time
ifc, src, dst, typ, secs, want = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86dd))
s.bind((ifc, 0))
s.settimeout(0.2)
src_b, dst_b = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
print(json.dumps({"ready": 1}), flush=True)
seen = []
end = time.time() + secs
while time.time() < end and len(seen) < want:
    try:
        f, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    ip = f[14:]
    if len(ip) < 48 or ip[6] != 58 or ip[8:24] != src_b or ip[24:40] != dst_b or ip[40] != typ:
        continue
    seen.append({"hlim": ip[7], "mac": f[0:6].hex(":")})
print(json.dumps({"seen": seen}), flush=True)
"""

ECHO_REQ, ECHO_REP = 128, 129

ROUTE_TO = f"""\
pass
pass in on r0 inet6 proto icmp6 from {A6} to {B6} route-to {D6}
"""

ON_IF = """\
pass
pass in on r0 inet6 proto icmp6 from fd00:1::2 to fd00:2::2 route-to (r2 @LL@)
"""

POOL = """\
table <gw> { fd00:2::2 fd00:3::2 }
pass
pass in on r0 inet6 proto icmp6 from fd00:1::2 to fd00:2::2 icmp6-type echoreq route-to <gw> round-robin
"""

REPLY_TO = f"""\
pass
pass in on r1 inet6 proto icmp6 from {B6} reply-to {D6}
"""

DUP_TO = f"""\
pass
pass in on r0 inet6 proto icmp6 from {A6} dup-to {D6}
"""

NO_ND = """\
pass
pass in on r0 inet6 proto udp from fd00:1::2 to port 7 route-to fd00:3::99
"""

ODROP = "ip6: output packets dropped due to no bufs, etc."
NOROUTE = "ip6: output packets discarded due to no route"
ND_DROPS = ["nd6: packets dropped: neighbor never answered", "nd6: packets dropped: hold queue full"]


def sniff(lab, src, dst, typ, secs=12, want=1000):
    """SNIFF in D's namespace, in the background."""
    return Sniffer(lab, lab.net.d, SNIFF, ["d0", src, dst, typ, secs, want])


def ping6(lab, ns, dst, count=3, src=None, answered=True):
    """The replies to `count` pings; `answered` as test_pf_route.ping's:
    -w (all `count` waited for, up to 5 s more) when replies are expected,
    -W 1 when none is."""
    s = f"-I {src} " if src else ""
    wait = f"-w {int(count * 0.3) + 5}" if answered else "-W 1"
    p = lab.t.ns_run(ns, f"ping -6 -n -c {count} -i 0.3 {wait} {s}{dst}", check_rc=False, timeout=60)
    m = re.search(r"(\d+) received", p.stdout)
    return int(m.group(1)) if m else 0


def counters(lab):
    return netstat_s_counters(lab.d.out("netstat", "-s"))


def run_test():
    with Topo("route6") as t:
        lab = PfLab(t, rules=ROUTE_TO, third=True)
        net = lab.net
        t.step("IPv6 on A, B, D and the router's three ports")
        enable_ipv6(t, net.a, "a0", f"{A6}/64", "fd00:1::1")
        enable_ipv6(t, net.b, "b0", f"{B6}/64", "fd00:2::1")
        enable_ipv6(t, net.d, "d0", f"{D6}/64", "fd00:3::1")
        for i in range(3):
            lab.d.admin("ifconfig", f"r{i}", "inet6", f"fd00:{i + 1}::1/64")
        wait_until("the router's IPv6 addresses out of DAD",
                   lambda: all("tentative" not in lab.d.out("ifconfig", f"r{i}") for i in range(3)), timeout=15)
        wait_until("D's link-local address", lambda: "fe80" in t.ns_run(net.d, "ip -6 addr show dev d0").stdout,
                   timeout=10)
        d_ll = re.search(r"inet6 (fe80::[0-9a-f:]+)/64", t.ns_run(net.d, "ip -6 addr show dev d0").stdout).group(1)
        check(ping6(lab, net.d, "fd00:3::1", 1) == 1, "D reaches the router")
        check(ping6(lab, net.b, "fd00:2::1", 1) == 1, "B reaches the router")
        mac_d = MAC_D.lower()

        t.step("1. route-to: A's pings to B go to D, resolved by neighbor discovery")
        sn = sniff(lab, A6, B6, ECHO_REQ, want=3)
        got = ping6(lab, net.a, B6, 3, answered=False)
        seen = sn.result()
        check(got == 0, f"B answered {got} routed pings")
        check(len(seen) == 3 and all(s["hlim"] == 63 and s["mac"] == mac_d for s in seen), f"D saw {seen}")
        sr = lab.rules()
        check(f"pass in on r0 inet6 proto ipv6-icmp from {A6} to {B6} route-to {D6}" in sr, sr)
        st = lab.states_matching(r"ipv6-icmp fd00:2::2\[\d+\] <- fd00:1::2")
        check(st, f"no state: {lab.states()}")
        log(f"  D got {len(seen)} echo requests, hop limit {seen[0]['hlim']}, to {seen[0]['mac']}")
        t.ns_spawn(net.b, "python3 -m http.server 8090 --bind fd00:2::2")
        t.wait_listen(net.b, 8090)
        p = t.ns_run(net.a, "curl -6 -sS --max-time 10 -o /dev/null -w %{http_code} http://[fd00:2::2]:8090/",
                     check_rc=False)
        check(p.stdout == "200", f"TCP A -> B, not routed: {p.stdout} {p.stderr}")

        t.step(f"1b. route-to (r2 {d_ll}): a link-local next hop on a named interface")
        lab.load(ON_IF.replace("@LL@", d_ll))
        sn = sniff(lab, A6, B6, ECHO_REQ, want=2)
        got = ping6(lab, net.a, B6, 2, answered=False)
        seen = sn.result()
        check(got == 0 and len(seen) == 2 and all(s["mac"] == mac_d for s in seen), f"B answered {got}, D saw {seen}")

        t.step("1c. a table of IPv6 next hops, round-robin: each new state the next one")
        lab.load(POOL)
        sn = sniff(lab, A6, B6, ECHO_REQ, want=1, secs=10)
        got = [ping6(lab, net.a, B6, 1, answered=want) for want in (True, False, True)]
        seen = sn.result()
        check(got == [1, 0, 1], f"replies per ping flow: {got}")
        check(len(seen) == 1, f"D saw {seen}")
        log("  flows 1 and 3 went to B, flow 2 to D")

        t.step("2. reply-to: A's replies to B's pings leave by r2 to D")
        lab.load(REPLY_TO)
        sn = sniff(lab, A6, B6, ECHO_REP, want=3)
        got = ping6(lab, net.b, A6, 3, answered=False)
        seen = sn.result()
        check(got == 0, f"B got {got} replies")
        check(len(seen) == 3 and all(s["hlim"] == 63 for s in seen), f"D saw {seen}")
        log(f"  D got {len(seen)} echo replies from A to B")

        t.step("3. dup-to: copies at D, the originals answered by B")
        lab.load(DUP_TO)
        req = sniff(lab, A6, B6, ECHO_REQ, want=3, secs=10)
        rep = sniff(lab, B6, A6, ECHO_REP, want=3, secs=10)
        got = ping6(lab, net.a, B6, 3)
        sreq, srep = req.result(), rep.result()
        check(got == 3, f"A got {got} of 3 replies")
        check(len(sreq) == 3 and all(s["hlim"] == 63 for s in sreq), f"requests at D: {sreq}")
        check(len(srep) == 3, f"replies at D: {srep}")
        log(f"  D got {len(sreq)} request copies and {len(srep)} reply copies")

        t.step("4a. a next hop that never answers neighbor solicitations: counted drops, pings fine")
        lab.load(NO_ND)
        c0 = counters(lab)
        code = ("import socket, time\ns = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
                f"for i in range(8):\n    s.sendto(b'route-to', ('{B6}', 7))\n    time.sleep(0.5)\n")
        t.ns_run(net.a, ["python3", "-c", code], timeout=60)
        check(ping6(lab, net.a, B6, 3) == 3, "pings A -> B")

        def dropped():
            c = counters(lab)
            n = sum(c.get(k, 0) - c0.get(k, 0) for k in [ODROP, NOROUTE] + ND_DROPS)
            return n if n >= 7 else None
        n = wait_until("the routed UDP datagrams dropped", dropped, timeout=20)
        log(f"  {n} datagrams for fd00:3::99 dropped and counted")

        t.step("4b. an IPv4 next hop on an inet6 rule is refused at load, the ruleset kept")
        before = lab.rules()
        bad = lab.write_rules("pass in on r0 inet6 route-to 10.0.3.2\n", os.path.join(t.tmp, "bad.conf"))
        p = lab.pfctl("-f", bad, check_rc=False)
        check(p.returncode != 0 and "bad.conf:1: af mismatch in routing spec" in p.stderr, f"{p.returncode} {p.stderr}")
        check(lab.rules() == before, "rules unchanged")
        check(ping6(lab, net.a, B6, 1) == 1, "pings A -> B")
        check(lab.d.alive(), "the daemon runs")


if __name__ == "__main__":
    main(run_test)
