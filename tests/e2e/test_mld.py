"""MLD as a Linux peer sees it (RFC 3810): the router reports the groups it
joins and answers queries.

A fd00:1::2 -- r0 fd00:1::1/64 [softnet] r1 -- B

1 at start A captures MLDv2 reports from r0's MAC to ff02::16 (33:33:00:00:00:16),
  hop limit 1, a hop-by-hop router alert, CHANGE_TO_EXCLUDE records for
  all-routers (ff02::2) and the solicited-node groups of r0's addresses,
  never all-nodes (ff02::1)
2 `ifconfig r0 inet6 fd00:1::5/64`: a report for ff02::1:ff00:5 follows
3 a general MLDv2 query from A (scapy: link-local source, hop limit 1,
  router alert, maximum response delay 1 s) is answered within the
  delay (and the stack's one-second timer) with MODE_IS_EXCLUDE records
  of every group, from r0's link-local address
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import MAC_R0, Topo, check, log, main, wait_until  # noqa: E402

CHANGE_TO_EXCLUDE, MODE_IS_EXCLUDE = 4, 2

QUERY = """\
import sys
from scapy.config import conf
import scapy.layers.inet  # noqa: F401 (IP, IPv6 dissected as with scapy.all)
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop, RouterAlert, ICMPv6MLQuery2
from scapy.layers.l2 import Ether
from scapy.sendrecv import sendp
conf.verb = 0
src = sys.argv[1]
q = (Ether(src=sys.argv[2], dst="33:33:00:00:00:01") / IPv6(src=src, dst="ff02::1", hlim=1)
     / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / ICMPv6MLQuery2(mrd=1000))
sendp(q, iface="a0")
"""


def reports(pcap):
    """Every MLDv2 report in the capture: (eth src, eth dst, ip src, ip dst,
    hop limit, router alert?, [(record type, group)])."""
    import scapy.layers.inet  # noqa: F401 (IP, IPv6 dissected as with scapy.all)
    from scapy.layers.inet6 import ICMPv6MLReport2, IPv6, IPv6ExtHdrHopByHop
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap

    out = []
    for p in rdpcap(pcap):
        if ICMPv6MLReport2 not in p:
            continue
        recs = []
        for r in p[ICMPv6MLReport2].records:
            # scapy chains a report's records as payloads of the first
            while r is not None and hasattr(r, "rtype"):
                recs.append((r.rtype, r.dst))
                r = r.payload if len(r.payload) else None
        ra = IPv6ExtHdrHopByHop in p and any(o.otype == 5 for o in p[IPv6ExtHdrHopByHop].options)
        out.append((p[Ether].src, p[Ether].dst, p[IPv6].src, p[IPv6].dst, p[IPv6].hlim, ra, recs))
    return out


def run_test():
    with Topo("mld") as t:
        t.step("topology: A -- softnet (packet) -- B; r0 with fd00:1::1/64; A captures on a0")
        net = t.router_topology("packet")
        t.ns_run(net.a, "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.a0.disable_ipv6=0")
        pcap = os.path.join(t.tmp, "a0.pcap")
        t.capture(net.a, "a0", pcap, f"ip6 and ether src {MAC_R0}")
        cfg = net.config().replace('addr = ["10.0.1.1/24"]', 'addr = ["10.0.1.1/24", "fd00:1::1/64"]', 1)
        d = t.daemon(cfg, net=net)

        def groups(kind, since=0):
            return {g for r in reports(pcap)[since:] for (k, g) in r[6] if k == kind}

        t.step("1: the joins reported: ff02::2 and the solicited-node groups, never ff02::1")
        want = {"ff02::2", "ff02::1:ff00:1"}
        wait_until("reports of the joined groups", lambda: want <= groups(CHANGE_TO_EXCLUDE), timeout=10)
        reps = reports(pcap)
        for r in reps:
            log(f"  {r}")
            check(r[1] == "33:33:00:00:00:16" and r[3] == "ff02::16" and r[4] == 1 and r[5], f"report shape: {r}")
        check("ff02::1" not in groups(CHANGE_TO_EXCLUDE), "all-nodes reported")

        t.step("2: an address added at run time: its solicited-node group reported")
        n = len(reports(pcap))
        d.out("ifconfig", "r0", "inet6", "fd00:1::5/64")
        wait_until("a report for ff02::1:ff00:5",
                   lambda: "ff02::1:ff00:5" in groups(CHANGE_TO_EXCLUDE, n), timeout=10)

        t.step("3: a general MLDv2 query from A answered with every group")
        wait_until("r0's link-local address in use", lambda: "tentative" not in d.out("ifconfig", "r0"), timeout=15)
        a_ll = [x for x in " ".join(t.ns_run(net.a, "ip -6 -o addr show dev a0 scope link").stdout.split()).split()
                if x.startswith("fe80::")]
        check(a_ll, "A has no link-local address")
        a_mac = t.ns_run(net.a, "cat /sys/class/net/a0/address").stdout.strip()
        prog = os.path.join(t.tmp, "query.py")
        with open(prog, "w") as f:
            f.write(QUERY)
        n = len(reports(pcap))
        t.ns_run(net.a, f"python3 {prog} {a_ll[0].split('/')[0]} {a_mac}")
        want = {"ff02::2", "ff02::1:ff00:1", "ff02::1:ff00:5"}
        wait_until("a current state report", lambda: want <= groups(MODE_IS_EXCLUDE, n), timeout=5)
        ans = [r for r in reports(pcap)[n:] if any(k == MODE_IS_EXCLUDE for k, _ in r[6])]
        log(f"  {ans[0]}")
        check(ans[0][2].startswith("fe80::"), f"the answer's source: {ans[0]}")


if __name__ == "__main__":
    main(run_test)
