"""IPv6 through softnet with Linux peers (IPv6 enabled on A's and B's veths).

A fd00:1::2 -- r0 fd00:1::1/64 [softnet] r1 fd00:2::1/64 (MTU 1400) -- B fd00:2::2

1 ping -6 A -> the router's global address on each side and its link-local
  address on A's link; B -> its side; A <-> B through the router; a
  4,000-byte ping to the router (reassembled, its reply fragmented)
2 hop limit 1: ping prints "Time exceeded" from the router
3 a 1,452-byte ping (1,500 bytes on the wire) towards r1's 1,400 MTU:
  "Packet too big: mtu=1400", nothing fragmented
4 TCP across: B fetches 20 MB with curl -6 from an http.server on A,
  SHA-256 checked: A's full-sized segments meet r1's 1,400 MTU, the
  router answers packet too big, and the transfer goes on over the
  smaller path MTU
5 bad input from A with scapy (routing header type 0, an unknown next
  header to the router, a truncated destination options header, a hop-by-
  hop option with action 10): the parameter problems A gets back (code and
  pointer) and `netstat -s`'s ip6 counters; the router still forwards
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import (MAC_A, MAC_R0, MAC_R1, Topo, check, enable_ipv6, in_netns, log, main,  # noqa: E402
                     make_file, netstat_s_counters, sha, wait_until)

FILE_MB = 20


def link_local(mac):
    b = bytes(int(x, 16) for x in mac.split(":"))
    iid = bytes([b[0] ^ 2, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    import ipaddress
    return ipaddress.IPv6Address(bytes.fromhex("fe80000000000000") + iid)


def ping6(t, ns, dst, extra="", check_rc=True):
    return t.ns_run(ns, f"ping -6 -n -c 2 -i 0.3 -W 3 {extra} {dst}", check_rc=check_rc)


def run_test():
    with Topo("ip6") as t:
        t.step("topology: A -- softnet (packet) -- B, IPv6 on the peers, r1's MTU 1400")
        net = t.router_topology("packet")
        enable_ipv6(t, net.a, "a0", "fd00:1::2/64", "fd00:1::1")
        enable_ipv6(t, net.b, "b0", "fd00:2::2/64", "fd00:2::1")
        cfg = net.config(mtu_b=1400)
        cfg = cfg.replace('addr = ["10.0.1.1/24"]', 'addr = ["10.0.1.1/24", "fd00:1::1/64"]', 1)
        cfg = cfg.replace('addr = ["10.0.2.1/24"]', 'addr = ["10.0.2.1/24", "fd00:2::1/64"]', 1)
        d = t.daemon(cfg, net=net)
        wait_until("the router's IPv6 addresses out of DAD",
                   lambda: "tentative" not in d.out("ifconfig", "r0") + d.out("ifconfig", "r1"), timeout=15)

        t.step("1: ping -6 the router (global, link-local) and through it")
        ll0 = link_local(MAC_R0)
        ping6(t, net.a, "fd00:1::1")
        ping6(t, net.a, f"{ll0}%a0")
        ping6(t, net.a, "fd00:2::1")
        ping6(t, net.b, "fd00:2::1")
        ping6(t, net.b, f"{link_local(MAC_R1)}%b0")
        ping6(t, net.a, "fd00:2::2")
        ping6(t, net.b, "fd00:1::2")
        # 4,000 bytes to the router: reassembled, the reply fragmented.
        ping6(t, net.a, "fd00:1::1", extra="-s 4000")
        c = netstat_s_counters(d.out("netstat", "-s"))
        check(c["ip6: packets forwarded"] >= 4, f"forwarded {c['ip6: packets forwarded']}")
        check(c["icmp6: message responses generated"] >= 12, "echo replies")
        check(c["ip6: packets reassembled ok"] == 2, f"reassembled {c['ip6: packets reassembled ok']}")
        check(c["ip6: output datagrams fragmented"] == 2, "the two big replies")

        t.step("2: hop limit 1 -> Time exceeded from the router")
        p = ping6(t, net.a, "fd00:2::2", extra="-t 1", check_rc=False)
        log("  " + p.stdout.strip().replace("\n", "\n  "))
        check("Time exceeded" in p.stdout and "fd00:1::1" in p.stdout, p.stdout)

        t.step("3: 1,452-byte ping towards the 1,400 MTU -> Packet too big: mtu=1400")
        before = netstat_s_counters(d.out("netstat", "-s"))
        p = t.ns_run(net.a, "ping -6 -n -c 1 -W 3 -M do -s 1452 fd00:2::2", check_rc=False)
        log("  " + p.stdout.strip().replace("\n", "\n  "))
        check("Packet too big: mtu=1400" in p.stdout, p.stdout + p.stderr)
        after = netstat_s_counters(d.out("netstat", "-s"))
        check(after["ip6: packets too big for the outgoing link"] > before["ip6: packets too big for the outgoing link"],
              "counted")
        check(after["ip6: output datagrams fragmented"] == before["ip6: output datagrams fragmented"],
              "a router never fragments what it forwards")

        t.step(f"4: curl -6 {FILE_MB} MB from A to B across the router (path MTU 1400), SHA-256 checked")
        www = os.path.join(t.tmp, "www")
        os.makedirs(www)
        big = os.path.join(www, "big.bin")
        want = make_file(big, FILE_MB)
        t.ns_spawn(net.a, f"python3 -m http.server 8080 --bind fd00:1::2 --directory {www}")
        wait_until("http.server on A", lambda: t.ns_run(
            net.a, "curl -s -o /dev/null -w %{http_code} http://[fd00:1::2]:8080/", check_rc=False).stdout == "200",
            timeout=20)
        got = os.path.join(t.tmp, "got.bin")
        p = t.ns_run(net.b, f"curl -6 -sS --max-time 120 -o {got} http://[fd00:1::2]:8080/big.bin", check_rc=False,
                     timeout=150)
        check(p.returncode == 0, f"curl failed: {p.stderr}")
        check(sha(got) == want, "SHA-256 differs")

        t.step("5: bad input with scapy: RH0, unknown next header, truncated chain, HBH action 10")
        from scapy.config import conf
        import scapy.layers.inet  # noqa: F401 (IP, IPv6 dissected as with scapy.all)
        from scapy.layers.inet6 import (HBHOptUnknown, ICMPv6EchoRequest, ICMPv6ParamProblem, IPv6, IPv6ExtHdrHopByHop,
                                        IPv6ExtHdrRouting)
        from scapy.layers.l2 import Ether
        from scapy.packet import Raw
        from scapy.sendrecv import sendp, srp1
        conf.verb = 0
        before = netstat_s_counters(d.out("netstat", "-s"))
        cases = [
            ("RH0", IPv6(src="fd00:1::2", dst="fd00:2::2") / IPv6ExtHdrRouting(type=0, addresses=["fd00:2::2"],
                                                                                 segleft=1) / ICMPv6EchoRequest(),
             (0, 42)),
            ("unknown next header", IPv6(src="fd00:1::2", dst="fd00:1::1", nh=200) / Raw(b"x" * 16), (1, 6)),
            ("HBH option 10xxxxxx", IPv6(src="fd00:1::2", dst="fd00:2::2") /
             IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x9E, optdata=b"\0\0\0\0")]) / ICMPv6EchoRequest(),
             (2, 42)),
        ]
        with in_netns(net.a):
            for what, pkt, (code, ptr) in cases:
                r = srp1(Ether(dst=MAC_R0, src=MAC_A) / pkt, iface="a0", timeout=3)
                check(r is not None and ICMPv6ParamProblem in r, f"{what}: no parameter problem ({r!r})")
                pp = r[ICMPv6ParamProblem]
                log(f"  {what}: parameter problem code {pp.code} pointer {pp.ptr} from {r[IPv6].src}")
                check((pp.code, pp.ptr) == (code, ptr), f"{what}: code/pointer {(pp.code, pp.ptr)} != {(code, ptr)}")
                time.sleep(0.05)
            # A destination options header that runs past the packet: dropped.
            trunc = IPv6(src="fd00:1::2", dst="fd00:1::1", nh=60, plen=4) / Raw(b"\x11\x03\x01\x00")
            sendp(Ether(dst=MAC_R0, src=MAC_A) / trunc, iface="a0")
        time.sleep(0.3)
        after = netstat_s_counters(d.out("netstat", "-s"))
        check(after["ip6: with bad options"] >= before["ip6: with bad options"] + 2, "bad options counted")
        check(after["ip6: packets for unknown/unsupported protocol"] > before["ip6: packets for unknown/unsupported protocol"],
              "unknown next header counted")
        check(after["ip6: with data size < data length"] > before["ip6: with data size < data length"],
              "truncated chain counted")
        ping6(t, net.a, "fd00:2::2")
        log("  " + d.out("netstat", "-s").split("ip6:")[1].split("nd6:")[0].replace("\n", "\n  "))
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
