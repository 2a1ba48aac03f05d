"""IPv6 addresses on softnet's interfaces and duplicate address detection
(RFC 4862) as a Linux peer sees it, and ndp(8) on the neighbor cache.

(softnet sends DAD's solicitations from its control thread; this test
does not make the peer claim softnet's address, so a duplicate is
covered only by the in-memory tests.)

1 r0 configured with fd00:1::1/64: `ifconfig r0` shows its link-local
  address (EUI-64 of the MAC, `%r0`, `scopeid 0x1`) and fd00:1::1, both
  `tentative` at first, then in use within a few seconds; r1 has only its
  link-local address; `netstat -rn -f inet6` has each address's local
  route (UHLl) and each prefix's connected route (UCn, fe80::%IF/64)
2 A captures one DAD solicitation per address: Ethernet 33:33:ff:xx:xx:xx
  from r0's MAC, IPv6 from :: to the target's solicited-node group, hop
  limit 255, ICMPv6 NS for the target, no source link-layer option
3 `ifconfig r0 inet6 fd00:1::5/64` at run time: tentative, one more
  solicitation, then in use; `... delete` removes it; bad and duplicate
  addresses are refused with the stack's message
4 `ndp -an` lists the router's addresses (permanent R l); `ndp -s ... proxy`,
  `ndp -n`, `ndp -d`, `ndp -c` and their errors as ndp(8)
"""

import ipaddress
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import MAC_R0, MAC_R1, Topo, check, log, main, wait_until  # noqa: E402


def link_local(mac):
    b = bytes(int(x, 16) for x in mac.split(":"))
    iid = bytes([b[0] ^ 2, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    return ipaddress.IPv6Address(bytes.fromhex("fe80000000000000") + iid)


def solicited_node(a):
    return ipaddress.IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + a.packed[13:])


def inet6_lines(d, ifname):
    return [l.strip() for l in d.out("ifconfig", ifname).splitlines() if l.strip().startswith("inet6 ")]


def dad_solicitations(pcap):
    import scapy.layers.inet  # noqa: F401 (IP, IPv6 dissected as with scapy.all)
    from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap

    out = []
    for p in rdpcap(pcap):
        if ICMPv6ND_NS in p:
            ns = p[ICMPv6ND_NS]
            out.append({
                "esrc": p[Ether].src, "edst": p[Ether].dst, "src": p[IPv6].src, "dst": p[IPv6].dst,
                "hlim": p[IPv6].hlim, "tgt": ns.tgt, "opts": bytes(ns.payload),
            })
    return out


def run_test():
    with Topo("d6") as t:
        t.step("topology: A -- softnet (packet) -- B; r0 with fd00:1::1/64; A captures on a0")
        net = t.router_topology("packet")
        pcap = os.path.join(t.tmp, "a0.pcap")
        cap = t.capture(net.a, "a0", pcap, "icmp6")
        cfg = net.config().replace('addr = ["10.0.1.1/24"]', 'addr = ["10.0.1.1/24", "fd00:1::1/64"]', 1)
        d = t.daemon(cfg, net=net)
        ll0, ll1 = link_local(MAC_R0), link_local(MAC_R1)

        t.step("1: ifconfig shows the addresses tentative, then in use")
        lines = inet6_lines(d, "r0")
        log(f"  r0 at start: {lines}")
        check(any(l.startswith(f"inet6 {ll0}%r0 prefixlen 64") and l.endswith("scopeid 0x1") for l in lines), lines)
        check(any(l.startswith("inet6 fd00:1::1 prefixlen 64") for l in lines), lines)
        wait_until("r0's addresses out of DAD", lambda: not any("tentative" in l for l in inet6_lines(d, "r0")),
                   timeout=10)
        want = [f"inet6 {ll0}%r0 prefixlen 64 scopeid 0x1", "inet6 fd00:1::1 prefixlen 64"]
        check(inet6_lines(d, "r0") == want, f"{inet6_lines(d, 'r0')} != {want}")
        wait_until("r1's link-local out of DAD",
                   lambda: inet6_lines(d, "r1") == [f"inet6 {ll1}%r1 prefixlen 64 scopeid 0x2"], timeout=10)

        t.step("1: netstat -rn -f inet6: each address's local route and its prefix's connected route")
        n6 = d.out("netstat", "-rn", "-f", "inet6")
        log("  " + n6.replace("\n", "\n  "))
        rows = {l.split()[0]: l.split() for l in n6.splitlines() if l and l[0] in "0123456789abcdef"}
        check(rows.get("fd00:1::/64", [None, None, ""])[2] == "UCn" and rows["fd00:1::/64"][-1] == "r0", rows)
        check("UHLl" in rows.get("fd00:1::1", []) and rows["fd00:1::1"][-1] == "r0", rows)
        check(rows.get("fe80::%r0/64", [None, None, ""])[2] == "UCn", rows)
        check(rows.get("fe80::%r1/64", [None, None, ""])[2] == "UCn", rows)
        check("UHLl" in rows.get(f"{ll0}%r0", []), rows)

        t.step("3: ifconfig r0 inet6 fd00:1::5/64 at run time; refusals")
        check(d.out("ifconfig", "r0", "inet6", "fd00:1::5/64") == "", "ifconfig printed something")
        check("inet6 fd00:1::5 prefixlen 64 tentative" in inet6_lines(d, "r0"), inet6_lines(d, "r0"))
        wait_until("fd00:1::5 in use", lambda: "inet6 fd00:1::5 prefixlen 64" in inet6_lines(d, "r0"), timeout=10)
        r = d.admin("ifconfig", "r1", "inet6", "fd00:1::5/64", check_rc=False)
        check(r.returncode == 1 and "address fd00:1::5/64 already configured" in r.stderr, r.stderr)
        r = d.admin("ifconfig", "r0", "inet6", "ff02::1/64", check_rc=False)
        check(r.returncode == 1 and "not a unicast address" in r.stderr, r.stderr)
        r = d.admin("ifconfig", "r0", "inet6", "fe80::9/48", check_rc=False)
        check(r.returncode == 1 and "a link-local address is a /64" in r.stderr, r.stderr)

        t.step("2: A saw one DAD solicitation per address")
        time.sleep(0.5)
        t.kill(cap)
        time.sleep(0.3)
        sols = [s for s in dad_solicitations(pcap) if s["src"] == "::"]
        for s in sols:
            log(f"  NS {s['src']} -> {s['dst']} for {s['tgt']} (eth {s['esrc']} -> {s['edst']}, hlim {s['hlim']})")
        for target in (ll0, ipaddress.IPv6Address("fd00:1::1"), ipaddress.IPv6Address("fd00:1::5")):
            got = [s for s in sols if ipaddress.IPv6Address(s["tgt"]) == target]
            check(len(got) == 1, f"want one DAD solicitation for {target}, got {got}")
            s = got[0]
            sn = solicited_node(target)
            want_edst = "33:33:" + ":".join(f"{b:02x}" for b in sn.packed[12:])
            check(ipaddress.IPv6Address(s["dst"]) == sn, f"to {s['dst']}, want {sn}")
            check(s["edst"] == want_edst and s["esrc"] == MAC_R0, f"ethernet {s['esrc']} -> {s['edst']}")
            check(s["hlim"] == 255, f"hop limit {s['hlim']}")
            check(s["opts"] == b"", f"a DAD solicitation carries no option: {s['opts']!r}")

        t.step("4: ndp -an, -s, -n, -d, -c")
        an = d.out("ndp", "-an")
        log("  " + an.replace("\n", "\n  "))
        rows = an.splitlines()
        check(rows[0].split() == ["Neighbor", "Linklayer", "Address", "Netif", "Expire", "S", "Flags"], rows[0])
        mine = {l.split()[0]: l.split()[1:] for l in rows[1:]}
        check(mine.get(f"{ll0}%r0") == [MAC_R0, "r0", "permanent", "R", "l"], mine)
        check(mine.get("fd00:1::1") == [MAC_R0, "r0", "permanent", "R", "l"], mine)
        check(mine.get(f"{ll1}%r1") == [MAC_R1, "r1", "permanent", "R", "l"], mine)
        check(d.out("ndp", "-s", "fd00:1::9", "02:00:00:00:01:09", "proxy") == "", "ndp -s printed something")
        one = d.out("ndp", "-n", "fd00:1::9").splitlines()
        check(len(one) == 2 and one[1].split() == ["fd00:1::9", "02:00:00:00:01:09", "r0", "permanent", "R", "p"], one)
        r = d.admin("ndp", "-s", "2001:db8::9", "02:00:00:00:01:09", check_rc=False)
        check(r.returncode == 1 and r.stderr.strip() == "softnet: ndp: RTM_GET(2001:db8::9) failed", r.stderr)
        r = d.admin("ndp", "-s", "fd00:1::9", "zz", check_rc=False)
        check(r.returncode == 1 and "invalid Ethernet address 'zz'" in r.stderr, r.stderr)
        check(d.out("ndp", "-d", "fd00:1::9") == "fd00:1::9 (fd00:1::9) deleted\n", "ndp -d")
        r = d.admin("ndp", "-d", "fd00:1::9", check_rc=False)
        check(r.returncode == 1 and "delete: cannot delete non-NDP entry" in r.stderr, r.stderr)
        check(d.out("ndp", "-d", f"{ll0}%r0") == "", "a local entry is spared silently")
        check(d.out("ndp", "-c") == "", "nothing learned to clear")
        check(f"{ll0}%r0" in d.out("ndp", "-an"), "ndp -c kept the local entries")

        t.step("3: ifconfig r0 inet6 fd00:1::5 delete")
        check(d.out("ifconfig", "r0", "inet6", "fd00:1::5", "delete") == "", "delete printed something")
        check(not any("fd00:1::5" in l for l in inet6_lines(d, "r0")), inet6_lines(d, "r0"))
        check("fd00:1::5 " not in d.out("ndp", "-an"), "its local entry went with it")
        check("fd00:1::5 " not in d.out("netstat", "-rn", "-f", "inet6"), "its local route went with it")
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
