"""pf's IPv6 fragment handling end to end (pf_norm.c: pf_reassemble6 before
the rules, pf_refragment6 on the way out), with Linux peers.

A fd00:1::2 -- r0 fd00:1::1/64 [softnet + pf] r1 fd00:2::1/64 -- B fd00:2::2

1 `ping -6 -s 3000` A -> B and back through pf (`block all`, ICMPv6
  passed): every echo request and reply crosses in three fragments, pf
  reassembles each datagram to filter it and the router cuts it again into
  fragments of the size they came in: B reassembles the requests (its
  Ip6ReasmOKs counts them), A the replies; `pfctl -si -v` counts the
  fragments pf held; `ping -6 -s 3000` to the router itself is answered
2 overlapping fragments crafted with scapy (RFC 5722): the datagram is
  dropped, counted as `fragment`, and nothing of it reaches B; the same
  datagram cut without an overlap reaches B whole
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, wait_until  # noqa: E402
from lib_pf import pf6_router  # noqa: E402

RULES = """\
block all
pass inet6 proto icmp6 all
"""

SCAPY = """\
import sys
from scapy.compat import raw
from scapy.config import conf
import scapy.layers.inet  # noqa: F401 (IP, IPv6 dissected as with scapy.all)
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, ICMPv6EchoRequest
from scapy.sendrecv import send
conf.verb = 0
ident, overlap = int(sys.argv[1]), sys.argv[2] == "1"
ip = IPv6(src="fd00:1::2", dst="fd00:2::2")
# The echo request with its checksum (over the pseudo-header), then cut.
icmp = raw(ip / ICMPv6EchoRequest(id=0x77, seq=ident & 0xffff, data=bytes(range(200))))[40:]
cut = 96 if overlap else 104
send(ip / IPv6ExtHdrFragment(nh=58, id=ident, offset=0, m=1) / icmp[:104])
send(ip / IPv6ExtHdrFragment(nh=58, id=ident, offset=cut // 8, m=0) / icmp[cut:])
"""


def snmp6(t, ns, name):
    for line in t.ns_run(ns, "cat /proc/net/snmp6").stdout.splitlines():
        k, _, v = line.partition(" ")
        if k == name:
            return int(v.strip())
    raise AssertionError(f"{name} not in /proc/net/snmp6")


def run_test():
    with Topo("pffrag6") as t:
        t.step("topology: A -- softnet + pf -- B, IPv6 on the peers")
        net, d = pf6_router(t, RULES)

        def pfctl(*args):
            return d.admin("pfctl", *args).stdout

        def counter(name):
            m = re.search(rf"^  {name}\s+(\d+)", pfctl("-si"), re.M)
            return int(m.group(1)) if m else 0

        def frag_inserts():
            text = pfctl("-si", "-v")
            m = re.search(r"^Fragments\n(?:.*\n)*?  inserts\s+(\d+)", text, re.M)
            check(m, f"no Fragments section in -si -v:\n{text}")
            return int(m.group(1))

        t.step("1: ping -6 -s 3000 A <-> B through pf: reassembled, filtered, refragmented")
        t.ns_run(net.a, "ping -6 -n -c 1 -W 2 fd00:2::2")  # neighbors resolved first
        ok_b, reqds_b = snmp6(t, net.b, "Ip6ReasmOKs"), snmp6(t, net.b, "Ip6ReasmReqds")
        ok_a = snmp6(t, net.a, "Ip6ReasmOKs")
        ins = frag_inserts()
        p = t.ns_run(net.a, "ping -6 -n -c 3 -i 0.3 -W 3 -s 3000 fd00:2::2", check_rc=False)
        log("  " + p.stdout.strip().splitlines()[-2])
        check(p.returncode == 0 and " 0% packet loss" in p.stdout, f"ping -s 3000:\n{p.stdout}{p.stderr}")
        ok_b2, reqds_b2, ok_a2 = snmp6(t, net.b, "Ip6ReasmOKs"), snmp6(t, net.b, "Ip6ReasmReqds"), \
            snmp6(t, net.a, "Ip6ReasmOKs")
        log(f"  B reassembled {ok_b2 - ok_b} datagrams of {reqds_b2 - reqds_b} fragments; A {ok_a2 - ok_a}")
        check(ok_b2 - ok_b >= 3 and reqds_b2 - reqds_b >= 9, "B did not get the requests in fragments")
        check(ok_a2 - ok_a >= 3, "A did not get the replies in fragments")
        ins2 = frag_inserts()
        log(f"  pf held {ins2 - ins} fragments")
        check(ins2 - ins >= 18, f"pf's fragment inserts {ins} -> {ins2}")
        ss = pfctl("-ss")
        check(re.search(r"ipv6-icmp fd00:2::2.* <- fd00:1::2", ss), f"no ICMPv6 state:\n{ss}")
        p = t.ns_run(net.a, "ping -6 -n -c 2 -i 0.3 -W 3 -s 3000 fd00:1::1", check_rc=False)
        check(p.returncode == 0, f"ping -s 3000 to the router:\n{p.stdout}{p.stderr}")

        t.step("2: overlapping fragments (scapy): the datagram dropped and counted; whole without overlap")
        prog = os.path.join(t.tmp, "frag6.py")
        with open(prog, "w") as f:
            f.write(SCAPY)
        before, reqds = counter("fragment"), snmp6(t, net.b, "Ip6ReasmReqds")
        t.ns_run(net.a, f"python3 {prog} 4660 1")
        wait_until("pf's fragment counter", lambda: counter("fragment") >= before + 1, timeout=5)
        check(snmp6(t, net.b, "Ip6ReasmReqds") == reqds, "a fragment of the overlapping datagram reached B")
        log(f"  fragment counter {before} -> {counter('fragment')}; nothing at B")
        ok = snmp6(t, net.b, "Ip6ReasmOKs")
        t.ns_run(net.a, f"python3 {prog} 4661 0")
        wait_until("B reassembles the datagram cut without overlap",
                   lambda: snmp6(t, net.b, "Ip6ReasmOKs") >= ok + 1, timeout=5)


if __name__ == "__main__":
    main(run_test)
