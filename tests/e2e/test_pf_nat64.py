"""pf's af-to (NAT64): an IPv6-only host reaches an IPv4 server.

A fd00:1::2 (no IPv4) -- r0 fd00:1::1/64 [softnet + pf] r1 10.0.2.1 -- B 10.0.2.2

`pass in on r0 inet6 from fd00:1::/64 to 64:ff9b::/96 af-to inet from (r1)`:
A reaches B as 64:ff9b::a00:202 (RFC 6052's well-known prefix).

1 ping -6 64:ff9b::a00:202 from A: ICMPv6 echo <-> ICMP echo through pf
2 curl -6 from A fetches a 20 MB file from B's IPv4 http.server: the
  SHA-256 matches, B saw only the router's 10.0.2.1, `pfctl -ss` shows
  the state with both families' addresses
3 UDP: a datagram from A reaches B's socket from 10.0.2.1 and B's answer
  comes back to A from 64:ff9b::a00:202
4 without the af-to rule (reload), A reaches nothing of B's
"""

import hashlib
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, wait_until  # noqa: E402

B6 = "64:ff9b::a00:202"

RULES = """\
pass
pass in on r0 inet6 from fd00:1::/64 to 64:ff9b::/96 af-to inet from (r1)
"""

NO_AFTO = """\
pass
"""

UDP_ECHO = """\
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.2.2", 5353))
data, peer = s.recvfrom(2048)
sys.stdout.write(f"{peer[0]} {data.decode()}\\n")
sys.stdout.flush()
s.sendto(b"pong:" + data, peer)
"""

UDP_ASK = """\
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"hello", ("%s", 5353))
data, peer = s.recvfrom(2048)
print(peer[0], data.decode())
""" % B6


def run_test():
    with Topo("n64") as t:
        t.step("topology: A IPv6-only -- softnet + pf (af-to) -- B IPv4-only")
        net = t.router_topology("packet")
        # A: no IPv4 at all, IPv6 with the router as its way to 64:ff9b::/96
        t.ns_run(net.a, "ip -4 addr flush dev a0")
        t.ns_run(net.a, "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0")
        t.ns_run(net.a, "sysctl -qw net.ipv6.conf.a0.disable_ipv6=0 net.ipv6.conf.a0.accept_ra=0")
        t.ns_run(net.a, "ip -6 addr add fd00:1::2/64 dev a0 nodad")
        t.ns_run(net.a, "ip -6 route add 64:ff9b::/96 via fd00:1::1 dev a0")
        conf = os.path.join(t.tmp, "pf.conf")
        with open(conf, "w") as f:
            f.write(RULES)
        cfg = net.config(extra=f'pf = "{conf}"\n')
        cfg = cfg.replace('addr = ["10.0.1.1/24"]', 'addr = ["10.0.1.1/24", "fd00:1::1/64"]', 1)
        d = t.daemon(cfg, net=net)
        d.wait_log(r"pf: .* loaded, pf enabled", timeout=10)
        wait_until("the router's IPv6 address out of DAD", lambda: "tentative" not in d.out("ifconfig", "r0"),
                   timeout=15)

        def pfctl(*args):
            return d.admin("pfctl", *args).stdout

        t.step("1: ping -6 64:ff9b::a00:202 from A (echo translated both ways)")
        p = t.ns_run(net.a, f"ping -6 -n -c 3 -i 0.3 -W 2 {B6}", check_rc=False)
        log("  " + (p.stdout.strip().splitlines() or [""])[-2])
        check(p.returncode == 0 and re.search(rf"from {B6}: icmp_seq=\d+", p.stdout), f"ping:\n{p.stdout}{p.stderr}")

        t.step("2: curl -6 from A fetches 20 MB from B's IPv4 server; B sees 10.0.2.1")
        www = os.path.join(t.tmp, "www")
        os.makedirs(www)
        data = os.urandom(20 << 20)
        with open(os.path.join(www, "big.bin"), "wb") as f:
            f.write(data)
        srv_log = os.path.join(t.tmp, "http.log")
        with open(srv_log, "w") as err:
            t.ns_spawn(net.b, f"python3 -m http.server 8080 --bind 10.0.2.2 --directory {www}", stderr=err)
        t.wait_listen(net.b, 8080)
        got = os.path.join(t.tmp, "got.bin")
        p = t.ns_run(net.a, f"curl -6 -g -sS --max-time 60 -o {got} -w %{{http_code}} http://[{B6}]:8080/big.bin",
                     check_rc=False, timeout=70)
        check(p.returncode == 0 and p.stdout == "200", f"curl: rc {p.returncode} {p.stdout} {p.stderr}")
        with open(got, "rb") as f:
            check(hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest(), "SHA-256 differs")
        log("  20 MB, SHA-256 matches")
        wait_until("B's log line", lambda: "GET /big.bin" in open(srv_log).read(), timeout=5)
        peers = re.findall(r"^(\S+) - - .*GET /big.bin", open(srv_log).read(), re.M)
        check(peers == ["10.0.2.1"], f"B saw {peers}")
        ss = pfctl("-ss")
        st = [l for l in ss.splitlines() if "tcp" in l and "fd00:1::2" in l and "10.0.2.1" in l]
        check(st, f"no af-to state:\n{ss}")
        log(f"  {st[0]}")

        t.step("3: UDP both ways through the translation")
        out = os.path.join(t.tmp, "udp.out")
        with open(out, "w") as o:
            t.ns_spawn(net.b, ["python3", "-c", UDP_ECHO], stdout=o)
        t.wait_listen(net.b, 5353, proto="u")
        p = t.ns_run(net.a, ["python3", "-c", UDP_ASK], check_rc=False, timeout=15)
        check(p.returncode == 0 and p.stdout.strip() == f"{B6} pong:hello", f"A got: {p.stdout} {p.stderr}")
        wait_until("B's socket line", lambda: open(out).read().strip(), timeout=5)
        check(open(out).read().strip() == "10.0.2.1 hello", f"B got: {open(out).read()}")
        log(f"  A got {p.stdout.strip()!r}, B got {open(out).read().strip()!r}")

        t.step("4: without the af-to rule A reaches nothing of B")
        with open(conf, "w") as f:
            f.write(NO_AFTO)
        d.admin("pfctl", "-f", conf)
        d.admin("pfctl", "-F", "states")
        p = t.ns_run(net.a, f"curl -6 -g -sS --max-time 3 -o /dev/null http://[{B6}]:8080/", check_rc=False)
        check(p.returncode != 0, f"reached B without af-to: {p.stdout}")


if __name__ == "__main__":
    main(run_test)
