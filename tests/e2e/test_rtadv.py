"""Router advertisements (RFC 4861 §6.2, rad(8)): a Linux host autoconfigures
through softnet (RFC 4862 SLAAC).

A's a0 has IPv6 enabled with accept_ra=1 and autoconf=1 (the topology
disables IPv6 in its namespaces); softnet's r0 has 2001:db8:1::1/64 and an
`[interface.ra]` table. (The IPv6 data path is not built yet, so A's router
solicitations do not reach the advertiser here: the in-memory tests answer
them through nd6's input; A autoconfigures from the unsolicited ones.)

1 A captures softnet's advertisements: from r0's link-local address (after
  its DAD) to ff02::1 at 33:33:00:00:00:01, hop limit 255, router lifetime
  1800, source link-layer option r0's MAC, MTU 1400, prefix
  2001:db8:1::/64 with L and A, valid 5400, preferred 2700
2 within 40 s A has an address in 2001:db8:1::/64 made from its MAC and a
  default route via r0's link-local address on a0 (proto ra), and takes
  the MTU 1400
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
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import MAC_A, MAC_R0, Topo, check, log, main, netstat_s_counters, wait_until  # noqa: E402


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
    from scapy.all import (ICMPv6NDOptMTU, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr, ICMPv6ND_RA, IPv6,
                           Ether, rdpcap)

    out = []
    for p in rdpcap(pcap):
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
            "esrc": p[Ether].src, "edst": p[Ether].dst, "src": p[IPv6].src, "dst": p[IPv6].dst,
            "hlim": p[IPv6].hlim, "lifetime": ra.routerlifetime,
            "slla": p[ICMPv6NDOptSrcLLAddr].lladdr if ICMPv6NDOptSrcLLAddr in p else None,
            "mtu": p[ICMPv6NDOptMTU].mtu if ICMPv6NDOptMTU in p else None,
            "prefixes": pis,
        })
    return out


def a_addrs(t, ns):
    j = json.loads(t.ns_run(ns, "ip -6 -j addr show dev a0 scope global").stdout or "[]")
    return [a["local"] for i in j for a in i.get("addr_info", [])]


def a_default(t, ns):
    return t.ns_run(ns, "ip -6 route show default dev a0").stdout.strip()


def run_test():
    with Topo("ra") as t:
        t.step("topology: A -- softnet (packet) -- B; A with IPv6, accept_ra, autoconf; A captures on a0")
        net = t.router_topology("packet")
        a = net.a
        t.ns_run(a, "sysctl -qw net.ipv6.conf.a0.disable_ipv6=0 net.ipv6.conf.a0.forwarding=0 "
                    "net.ipv6.conf.a0.accept_ra=1 net.ipv6.conf.a0.autoconf=1 net.ipv6.conf.a0.accept_ra_mtu=1")
        pcap = os.path.join(t.tmp, "a0.pcap")
        cap = t.ns_spawn(a, f"tcpdump -i a0 -n -U -w {pcap} icmp6")
        time.sleep(1.0)
        base = net.config().replace('addr = ["10.0.1.1/24"]', 'addr = ["10.0.1.1/24", "2001:db8:1::1/64"]', 1)
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

        t.step("3: softnet rad and netstat -s")
        rad = d.out("rad")
        log("  " + rad.replace("\n", "\n  "))
        check(rad.startswith("interface r0 {\n\tdefault router yes\n\thop limit 0\n"), rad)
        check("\trouter lifetime 1800\n" in rad and "\tmtu 1400\n" in rad, rad)
        check("\tauto prefix {\n\t\tvalid lifetime 5400\n\t\tpreferred lifetime 2700\n" in rad, rad)
        check("# r0: advertising 2001:db8:1::/64; " in rad and "interface r1" not in rad, rad)
        sent = netstat_s_counters(d.out("netstat", "-s"))
        check(sent["router advertisements sent"] >= 1, sent)

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
        check(d.out("rad") == "", d.out("rad"))

        t.step("1: what A captured")
        time.sleep(0.5)
        t.kill(cap)
        time.sleep(0.3)
        ras = router_advertisements(pcap)
        for r in ras:
            log(f"  RA {r['src']} -> {r['dst']} lifetime {r['lifetime']} mtu {r['mtu']} {r['prefixes']}")
        check(len(ras) >= 2, f"want the initial advertisements and the final one, got {len(ras)}")
        for r in ras:
            check(ipaddress.IPv6Address(r["src"]) == ll0, f"from {r['src']}, want {ll0}")
            check(r["dst"] == "ff02::1" and r["edst"] == "33:33:00:00:00:01", f"to {r['dst']} / {r['edst']}")
            check(r["esrc"] == MAC_R0 and r["hlim"] == 255 and r["slla"] == MAC_R0, r)
        for r in ras[:-1]:
            check(r["lifetime"] == 1800 and r["mtu"] == 1400, r)
            check(r["prefixes"] == [("2001:db8:1::", 64, 1, 1, 5400, 2700)], r["prefixes"])
        last = ras[-1]
        check(last["lifetime"] == 0 and last["prefixes"] == [] and last["mtu"] is None, f"final: {last}")
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
