"""Router advertisements (RFC 4861 §6.2, rad(8)): a Linux host autoconfigures
through softnet (RFC 4862 SLAAC).

A's a0 has IPv6 enabled with accept_ra=1 and autoconf=1 (the topology
disables IPv6 in its namespaces); softnet's r0 has 2001:db8:1::1/64 and an
`[interface.ra]` table.

1 A captures softnet's advertisements: from r0's link-local address (after
  its DAD) to ff02::1 at 33:33:00:00:00:01, hop limit 255, router lifetime
  1800, source link-layer option r0's MAC, MTU 1400, prefix
  2001:db8:1::/64 with L and A, valid 5400, preferred 2700
2 within 40 s A has an address in 2001:db8:1::/64 made from its MAC and a
  default route via r0's link-local address on a0 (proto ra), and takes
  the MTU 1400
2b a0 down and up: A's router solicitation (from its link-local address,
  with its link-layer address) is answered unicast to it within a second,
  and A autoconfigures again
2c B autoconfigures from r1's advertisements (rad's defaults, `ra = {}`)
  and A pings B's SLAAC address through softnet
3 `softnet rad` prints the configuration as rad -nv, with what r0
  advertises; `netstat -s` counts the advertisements sent
4 SIGHUP with a bad `ra` (router lifetime 100): refused, logged, still
  advertising
5 SIGHUP without the `ra` table: a final advertisement with router lifetime
  0, and A drops its default route through softnet
"""

import ipaddress
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import MAC_A, MAC_B, MAC_R0, MAC_R1, Topo, check, log, main, netstat_s_counters, wait_until  # noqa: E402


def link_local(mac):
    b = bytes(int(x, 16) for x in mac.split(":"))
    iid = bytes([b[0] ^ 2, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    return ipaddress.IPv6Address(bytes.fromhex("fe80000000000000") + iid)


def slaac(prefix, mac):
    iid = link_local(mac).packed[8:]
    return ipaddress.IPv6Address(ipaddress.IPv6Network(prefix).network_address.packed[:8] + iid)


RA_TABLE = """
[interface.ra]
mtu = 1400
"""


def router_advertisements(pcap):
    """The RAs in the capture, and the RSs as {"rs": True, "src", "time"}."""
    import scapy.layers.inet  # noqa: F401 (IP, IPv6 dissected as with scapy.all)
    from scapy.layers.inet6 import (ICMPv6NDOptMTU, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr, ICMPv6ND_RA, ICMPv6ND_RS,
                                    IPv6)
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap

    out = []
    for p in rdpcap(pcap):
        if ICMPv6ND_RS in p:
            out.append({"rs": True, "src": p[IPv6].src, "time": float(p.time)})
            continue
        if ICMPv6ND_RA not in p:
            continue
        ra = p[ICMPv6ND_RA]
        pis = []
        pi = p.getlayer(ICMPv6NDOptPrefixInfo)
        k = 1
        while pi is not None:
            pis.append((pi.prefix, pi.prefixlen, pi.L, pi.A, pi.validlifetime, pi.preferredlifetime))
            k += 1
            pi = p.getlayer(ICMPv6NDOptPrefixInfo, k)
        out.append({
            "rs": False, "time": float(p.time),
            "esrc": p[Ether].src, "edst": p[Ether].dst, "src": p[IPv6].src, "dst": p[IPv6].dst,
            "hlim": p[IPv6].hlim, "lifetime": ra.routerlifetime,
            "slla": p[ICMPv6NDOptSrcLLAddr].lladdr if ICMPv6NDOptSrcLLAddr in p else None,
            "mtu": p[ICMPv6NDOptMTU].mtu if ICMPv6NDOptMTU in p else None,
            "prefixes": pis,
        })
    return out


def a_addrs(t, ns, dev="a0"):
    j = json.loads(t.ns_run(ns, f"ip -6 -j addr show dev {dev} scope global -tentative").stdout or "[]")
    return [a["local"] for i in j for a in i.get("addr_info", []) if "local" in a]


def a_default(t, ns, dev="a0"):
    return t.ns_run(ns, f"ip -6 route show default dev {dev}").stdout.strip()


def run_test():
    with Topo("ra") as t:
        t.step("topology: A -- softnet (packet) -- B; A with IPv6, accept_ra, autoconf; A captures on a0")
        net = t.router_topology("packet")
        a = net.a
        t.ns_run(a, "sysctl -qw net.ipv6.conf.a0.disable_ipv6=0 net.ipv6.conf.a0.forwarding=0 "
                    "net.ipv6.conf.a0.accept_ra=1 net.ipv6.conf.a0.autoconf=1 net.ipv6.conf.a0.accept_ra_mtu=1")
        pcap = os.path.join(t.tmp, "a0.pcap")
        cap = t.capture(a, "a0", pcap, "icmp6", opts=("-U", "--immediate-mode"))
        b = net.b
        t.ns_run(b, "sysctl -qw net.ipv6.conf.b0.disable_ipv6=0 net.ipv6.conf.b0.forwarding=0 "
                    "net.ipv6.conf.b0.accept_ra=1 net.ipv6.conf.b0.autoconf=1")
        base = net.config().replace('addr = ["10.0.1.1/24"]', 'addr = ["10.0.1.1/24", "2001:db8:1::1/64"]', 1)
        # r1 advertises 2001:db8:2::/64 with rad's defaults (the last entry).
        base = base.replace('addr = ["10.0.2.1/24"]', 'addr = ["10.0.2.1/24", "2001:db8:2::1/64"]\nra = {}', 1)
        # The `ra` table belongs to r0: right after r0's entry.
        cut = base.index("\n[[interface]]", base.index('name = "r0"'))
        cfg = base[:cut] + RA_TABLE + base[cut:]
        d = t.daemon(cfg, net=net)
        ll0 = link_local(MAC_R0)
        want_addr = slaac("2001:db8:1::/64", MAC_A)

        t.step("2: A autoconfigures an address and a default route via r0's link-local address")
        t0 = time.monotonic()
        # The first advertisement within a second of r0's DAD, the next
        # ones at most 16 s apart; then A's own DAD.
        wait_until("A's SLAAC address", lambda: str(want_addr) in a_addrs(t, a), timeout=40)
        wait_until("A's default route through softnet", lambda: f"via {ll0} " in a_default(t, a) + " ", timeout=10)
        log(f"  A: {a_addrs(t, a)} after {time.monotonic() - t0:.1f} s; default: {a_default(t, a)}")
        check("proto ra" in a_default(t, a), a_default(t, a))
        mtu = t.ns_run(a, "cat /proc/sys/net/ipv6/conf/a0/mtu").stdout.strip()
        check(mtu == "1400", f"a0's IPv6 MTU {mtu}, want 1400 from the MTU option")

        t.step("2c: B autoconfigures on r1's side; A pings B's address through softnet")
        want_b = slaac("2001:db8:2::/64", MAC_B)
        wait_until("B's SLAAC address", lambda: str(want_b) in a_addrs(t, b, "b0"), timeout=40)
        wait_until("B's default route", lambda: f"via {link_local(MAC_R1)} " in a_default(t, b, "b0") + " ",
                   timeout=10)
        ping = t.ns_run(a, f"ping -6 -c 3 -i 0.2 -W 2 {want_b}", check_rc=False)
        check(ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout + ping.stderr)

        t.step("2b: a0 down and up: A solicits, softnet answers unicast, A autoconfigures again")
        t_toggle = time.time()
        t.ns_run(a, "ip link set a0 down")
        t.ns_run(a, "ip link set a0 up")
        wait_until("A's SLAAC address again", lambda: str(want_addr) in a_addrs(t, a), timeout=20)
        wait_until("A's default route again", lambda: f"via {ll0} " in a_default(t, a) + " ", timeout=10)

        t.step("3: softnet rad and netstat -s")
        rad = d.out("rad")
        log("  " + rad.replace("\n", "\n  "))
        check(rad.startswith("interface r0 {\n\tdefault router yes\n\thop limit 0\n"), rad)
        check("\trouter lifetime 1800\n" in rad and "\tmtu 1400\n" in rad, rad)
        check("\tauto prefix {\n\t\tvalid lifetime 5400\n\t\tpreferred lifetime 2700\n" in rad, rad)
        check("# r0: advertising 2001:db8:1::/64; " in rad and "# r1: advertising 2001:db8:2::/64; " in rad, rad)
        check(" 0 solicitations heard" not in rad, rad)
        text = d.out("netstat", "-s")
        sent = netstat_s_counters(text)
        check(sent["router advertisements sent"] >= 2, sent)
        check(sent["router solicitations received"] >= 1, sent)
        # icmp6's histograms: "\t\trouter advertisement: N" (output) and
        # "\t\trouter solicitation: N" (input).
        out_hist = re.search(r"Output packet histogram:\n(?:\t\t.*\n)*?\t\trouter advertisement: (\d+)", text)
        in_hist = re.search(r"Input packet histogram:\n(?:\t\t.*\n)*?\t\trouter solicitation: (\d+)", text)
        check(out_hist and int(out_hist.group(1)) == sent["router advertisements sent"], text)
        check(in_hist and int(in_hist.group(1)) == sent["router solicitations received"], text)

        t.step("4: SIGHUP with a bad ra table: refused, still advertising")
        n = len(d.log_lines())
        d.write_config(cfg.replace("mtu = 1400\n", "mtu = 1400\nrouter_lifetime = 100\n"))
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload: .*router lifetime 100 out of range", start=n)
        check("\trouter lifetime 1800\n" in d.out("rad"), d.out("rad"))

        t.step("5: SIGHUP without the ra table: a final advertisement, A drops the default route")
        n = len(d.log_lines())
        d.write_config(base)
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload: r0: router advertisements stopped", start=n)
        wait_until("A's default route gone", lambda: a_default(t, a) == "", timeout=10)
        check("interface r0" not in d.out("rad") and "interface r1 {" in d.out("rad"), d.out("rad"))

        t.step("1: what A captured")
        time.sleep(1.5)
        t.kill(cap)
        time.sleep(0.3)
        msgs = router_advertisements(pcap)
        for r in msgs:
            if r["rs"]:
                log(f"  {r['time']:.3f} RS from {r['src']}")
            else:
                log(f"  {r['time']:.3f} RA {r['src']} -> {r['dst']} lifetime {r['lifetime']} mtu {r['mtu']} "
                    f"{r['prefixes']}")
        ras = [r for r in msgs if not r["rs"]]
        check(len(ras) >= 3, f"want the initial advertisements, an answer and the final one, got {len(ras)}")
        lla = str(link_local(MAC_A))
        for r in ras:
            check(ipaddress.IPv6Address(r["src"]) == ll0, f"from {r['src']}, want {ll0}")
            check(r["esrc"] == MAC_R0 and r["hlim"] == 255 and r["slla"] == MAC_R0, r)
            to_all = r["dst"] == "ff02::1" and r["edst"] == "33:33:00:00:00:01"
            to_a = r["dst"] == lla and r["edst"] == MAC_A
            check(to_all or to_a, f"to {r['dst']} / {r['edst']}")
        # Each solicitation from A's link-local address after a0 came up
        # again (the ones before softnet started went unanswered) is
        # answered unicast within MAX_RA_DELAY_TIME (and the control loop's
        # 200 ms).
        rss = [r for r in msgs if r["rs"] and r["src"] == lla and r["time"] >= t_toggle]
        check(rss, "A sent no router solicitation from its link-local address after a0 came up")
        for rs in rss:
            ans = [r for r in ras if r["dst"] == lla and 0 <= r["time"] - rs["time"] <= 1.0]
            check(ans, f"no unicast answer within 1 s to the RS at {rs['time']:.3f}")
        for r in ras[:-1]:
            check(r["lifetime"] == 1800 and r["mtu"] == 1400, r)
            check(r["prefixes"] == [("2001:db8:1::", 64, 1, 1, 5400, 2700)], r["prefixes"])
        last = ras[-1]
        check(last["lifetime"] == 0 and last["prefixes"] == [] and last["mtu"] is None, f"final: {last}")
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
