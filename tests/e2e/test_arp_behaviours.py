"""The router's ARP behaviours (OpenBSD in_arpinput), end to end.

Frames are crafted with scapy in namespace A and sent on A's veth at the
daemon (packet driver, then tap); the replies (every field), the daemon's log lines
and `softnet arp -an` are checked. R = the router, A1 = 10.0.1.1 (its
address on A's side, r0), A2 = 10.0.2.1 (on B's side, r1).

 1 request for A1: reply, sender learned
 2 request with a multicast sender MAC: answered, entry overwritten, logged
 3 probe (sender IP 0.0.0.0) for A1: R defends with a reply, nothing learned
 4 request with a broadcast sender MAC: no reply, logged
 5 announcement of A1 by another host: R defends, "duplicate IP address", local entry kept
 6 gratuitous reply claiming A1: no reply, same log, local entry kept
 7 request claiming an IP R has as permanent: no reply, logged, unchanged
 8 request claiming A2: no reply, "attempt to overwrite permanent entry", unchanged
 9 request claiming an IP R has as temporary entry on another interface: no reply, logged, unchanged
10 the same for an incomplete entry on another interface: "attempt to add entry", stays incomplete
11 request for an IP published on the receiving interface: reply with the published MAC
12 request for an IP with a static, unpublished entry: no reply
13 request for an IP published on another interface: no reply (and a reply on that interface)
14 request for A2 arriving on A1's interface: no reply
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import (MAC_A, MAC_B, MAC_R0, MAC_R1, Topo, TestFailure, arp_entry, arp_table, check,  # noqa: E402
                     log, main, netstat_s_counters, setns, wait_until)

A1, A2 = "10.0.1.1", "10.0.2.1"
BCAST = "ff:ff:ff:ff:ff:ff"


def fake_mac(n):
    return f"02:00:00:00:{n:02x}:{n:02x}"


class Arp:
    """Sends ARP frames on `iface` (in the namespace this thread is in) and
    watches for the router's replies."""

    def __init__(self, t, d, iface):
        from scapy.config import conf
        import scapy.layers.inet  # noqa: F401 (IP, IPv6 dissected as with scapy.all)
        import scapy.layers.inet6  # noqa: F401 (IP, IPv6 dissected as with scapy.all)
        from scapy.layers.l2 import ARP, Ether
        from scapy.sendrecv import AsyncSniffer, sendp

        conf.verb = 0
        conf.ifaces.reload()  # this namespace's interfaces (a test may run several topologies)
        self.t, self.d, self.iface = t, d, iface
        self.ARP, self.Ether, self.sendp, self.AsyncSniffer = ARP, Ether, sendp, AsyncSniffer
        self.ctl = 200  # control requests: 10.0.1.200.. with fake MACs

    def frame(self, op, hwsrc, psrc, pdst, hwdst="00:00:00:00:00:00", esrc=None, edst=BCAST):
        return self.Ether(src=esrc or hwsrc, dst=edst, type=0x0806) / self.ARP(
            hwtype=1, ptype=0x0800, hwlen=6, plen=4, op=op, hwsrc=hwsrc, psrc=psrc, hwdst=hwdst, pdst=pdst)

    def _sniffer(self):
        ARP = self.ARP
        started, got = [], []
        # `results` is filled only when the sniffer stops: collect as they come.
        sn = self.AsyncSniffer(iface=self.iface, store=False, prn=got.append,
                               lfilter=lambda p: ARP in p and p[ARP].op == 2,
                               started_callback=lambda: started.append(1))
        sn.got = got
        sn.start()
        wait_until("the sniffer to start", lambda: started, timeout=10, interval=0.05)
        time.sleep(0.1)
        return sn

    def _replies_to(self, sn, req):
        ARP = self.ARP
        return [p for p in list(sn.got)
                if p[ARP].hwdst == req[ARP].hwsrc and p[ARP].pdst == req[ARP].psrc]

    def expect_reply(self, req, tries=3, wait=2.0):
        """Sends `req` (again, up to `tries` times) until a reply to it comes;
        returns the reply."""
        sn = self._sniffer()
        try:
            for i in range(tries):
                self.sendp(req, iface=self.iface)
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline:
                    r = self._replies_to(sn, req)
                    if r:
                        return r[0]
                    time.sleep(0.05)
                log(f"  no reply yet (try {i + 1}/{tries})")
        finally:
            sn.stop()
        raise TestFailure(f"no ARP reply to {req.summary()}")

    def expect_no_reply(self, req, log_pattern=None):
        """Sends `req` once; waits for `log_pattern` in the daemon's log (the
        frame was handled), then for the answer to a control request sent
        after it, then a little more: no reply to `req` may have come."""
        start = len(self.d.log_lines())
        sn = self._sniffer()
        try:
            self.sendp(req, iface=self.iface)
            lines = None
            if log_pattern:
                lines = self.d.wait_log(log_pattern, start=start, timeout=10)
            self.ctl += 1
            ctl = self.frame(1, fake_mac(self.ctl), f"10.0.1.{self.ctl}", A1)
            for i in range(3):
                self.sendp(ctl, iface=self.iface)
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline and not self._replies_to(sn, ctl):
                    time.sleep(0.05)
                if self._replies_to(sn, ctl):
                    break
            check(self._replies_to(sn, ctl), "the control request after it got no reply either")
            time.sleep(0.5)
            bad = self._replies_to(sn, req)
            check(not bad, f"unexpected reply to {req.summary()}: {bad[0].show(dump=True) if bad else ''}")
            return lines
        finally:
            sn.stop()


def check_reply(arp, r, *, esrc, hwsrc, psrc, hwdst, pdst):
    ARP, Ether = arp.ARP, arp.Ether
    e, a = r[Ether], r[ARP]
    got = dict(edst=e.dst, esrc=e.src, type=e.type, hwtype=a.hwtype, ptype=a.ptype, hwlen=a.hwlen, plen=a.plen,
               op=a.op, hwsrc=a.hwsrc, psrc=a.psrc, hwdst=a.hwdst, pdst=a.pdst)
    want = dict(edst=hwdst, esrc=esrc, type=0x0806, hwtype=1, ptype=0x0800, hwlen=6, plen=4, op=2,
                hwsrc=hwsrc, psrc=psrc, hwdst=hwdst, pdst=pdst)
    diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    check(not diff, f"reply fields (got, want): {diff}")
    log(f"  reply: {r.summary()} -- all fields as expected")


def arp_an(d):
    return d.out("arp", "-an")


def entry(d, host):
    return arp_entry(arp_an(d), host)


def check_entry(d, host, mac, netif, expire, flags=""):
    out = arp_an(d)
    e = arp_entry(out, host)
    check(e is not None, f"arp -an: no entry for {host}:\n{out}")
    check(e["mac"] == mac and e["netif"] == netif and re.fullmatch(expire, e["expire"]) and e["flags"] == flags,
          f"arp -an {host}: got {e['line']!r}, want {mac} {netif} /{expire}/ {flags!r}")
    return e


DYN = r"\d+m\d+s|\d+s"  # a dynamic entry's time left (e.g. 19m59s)


def run_test():
    for driver in ("packet", "tap"):
        run_driver(driver)


def run_driver(driver):
    with Topo(f"arp{driver[0]}") as t:
        t.step(f"topology: A -- softnet ({driver}) -- B")
        net = t.router_topology(driver)
        d = t.daemon(net.config(), net=net)
        root_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            behaviours(t, net, d)
        finally:
            setns(f"/proc/self/fd/{root_ns}")
            os.close(root_ns)


def behaviours(t, net, d):
    t.step("ping A -> B (R learns A on r0 and B on r1)")
    t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.2.2")
    wait_until("B in R's ARP table", lambda: entry(d, "10.0.2.2"), timeout=10)
    check_entry(d, A1, MAC_R0, "r0", "permanent", "l")
    check_entry(d, A2, MAC_R1, "r1", "permanent", "l")
    check_entry(d, "10.0.2.2", MAC_B, "r1", DYN)
    check_entry(d, "10.0.1.2", MAC_A, "r0", DYN)

    setns(f"/run/netns/{net.a}")
    arp = Arp(t, d, "a0")

    t.step("(1) request for A1: reply with every field right; the sender is learned")
    m1 = fake_mac(0x51)
    req = arp.frame(1, m1, "10.0.1.51", A1)
    r = arp.expect_reply(req)
    check_reply(arp, r, esrc=MAC_R0, hwsrc=MAC_R0, psrc=A1, hwdst=m1, pdst="10.0.1.51")
    check_entry(d, "10.0.1.51", m1, "r0", DYN)

    t.step("(2) request with a multicast sender MAC: answered, entry overwritten and logged")
    mc = "01:00:5e:00:00:42"
    start = len(d.log_lines())
    req = arp.frame(1, mc, "10.0.1.51", A1, esrc=m1)
    r = arp.expect_reply(req)
    check_reply(arp, r, esrc=MAC_R0, hwsrc=MAC_R0, psrc=A1, hwdst=mc, pdst="10.0.1.51")
    d.wait_log(r"INFO .*arp info overwritten for 10\.0\.1\.51 by 01:00:5e:00:00:42 on r0", start=start)
    check_entry(d, "10.0.1.51", mc, "r0", DYN)

    t.step("(3) probe (sender IP 0.0.0.0) for A1: R defends with a reply, learns nothing")
    m3 = fake_mac(0x53)
    before = arp_an(d)
    req = arp.frame(1, m3, "0.0.0.0", A1)
    r = arp.expect_reply(req)
    check_reply(arp, r, esrc=MAC_R0, hwsrc=MAC_R0, psrc=A1, hwdst=m3, pdst="0.0.0.0")
    after = arp_an(d)
    check(m3 not in after and "0.0.0.0" not in after, f"probe learned something:\n{after}")
    check(len(after.splitlines()) == len(before.splitlines()), f"arp table changed:\n{before}\n->\n{after}")

    t.step("(4) request with the broadcast sender MAC: no reply, logged")
    req = arp.frame(1, BCAST, "10.0.1.54", A1, esrc=fake_mac(0x54))
    arp.expect_no_reply(req, r"WARN .*arp: ether address is broadcast for IP address 10\.0\.1\.54!")
    check(entry(d, "10.0.1.54") is None, "10.0.1.54 learned from a broadcast sender")

    t.step("(5) announcement of A1 by another host: R defends, logs the duplicate, keeps its entry")
    c0 = netstat_s_counters(d.out("netstat", "-s"))
    m5 = fake_mac(0x55)
    start = len(d.log_lines())
    req = arp.frame(1, m5, A1, A1)
    r = arp.expect_reply(req)
    check_reply(arp, r, esrc=MAC_R0, hwsrc=MAC_R0, psrc=A1, hwdst=m5, pdst=A1)
    d.wait_log(rf"WARN .*duplicate IP address 10\.0\.1\.1 sent from ethernet address {m5}", start=start)
    check_entry(d, A1, MAC_R0, "r0", "permanent", "l")
    c1 = netstat_s_counters(d.out("netstat", "-s"))
    check(c1["arp: Duplicate IPs seen"] > c0["arp: Duplicate IPs seen"], "duplicate IP not counted")

    t.step("(6) gratuitous reply claiming A1: no reply, logged, local entry kept")
    m6 = fake_mac(0x56)
    req = arp.frame(2, m6, A1, A1, hwdst=BCAST)
    arp.expect_no_reply(req, rf"WARN .*duplicate IP address 10\.0\.1\.1 sent from ethernet address {m6}")
    check_entry(d, A1, MAC_R0, "r0", "permanent", "l")

    t.step("(7) request claiming an IP R has as a permanent entry: no reply, logged, unchanged")
    perm = "02:00:00:00:77:77"
    d.admin("arp", "-s", "10.0.1.77", perm, "permanent")
    check_entry(d, "10.0.1.77", perm, "r0", "permanent")
    m7 = fake_mac(0x57)
    req = arp.frame(1, m7, "10.0.1.77", A1)
    arp.expect_no_reply(req, rf"WARN .*arp: attempt to overwrite permanent entry for 10\.0\.1\.77 by {m7} on r0")
    check_entry(d, "10.0.1.77", perm, "r0", "permanent")

    t.step("(8) request claiming A2 (on r0): no reply, logged as overwriting a permanent entry, unchanged")
    m8 = fake_mac(0x58)
    req = arp.frame(1, m8, A2, A1)
    arp.expect_no_reply(req, rf"WARN .*arp: attempt to overwrite permanent entry for 10\.0\.2\.1 by {m8} on r0")
    check_entry(d, A2, MAC_R1, "r1", "permanent", "l")

    t.step("(9) request claiming B (a temporary entry on r1) arriving on r0: no reply, logged, unchanged")
    m9 = fake_mac(0x59)
    req = arp.frame(1, m9, "10.0.2.2", A1)
    arp.expect_no_reply(req, rf"WARN .*arp: attempt to overwrite entry for 10\.0\.2\.2 on r1 by {m9} on r0")
    check_entry(d, "10.0.2.2", MAC_B, "r1", DYN)

    t.step("(10) an incomplete entry on r1 (ping an absent host on B's side), claimed on r0")
    for i in range(3):
        t.ns_run(net.a, "ping -n -c 1 -W 1 10.0.2.99", check_rc=False)
        e = entry(d, "10.0.2.99")
        if e and e["mac"] == "(incomplete)":
            break
    e = entry(d, "10.0.2.99")
    check(e and e["mac"] == "(incomplete)" and e["netif"] == "r1", f"no incomplete entry for 10.0.2.99: {e}")
    m10 = fake_mac(0x5a)
    req = arp.frame(1, m10, "10.0.2.99", A1)
    arp.expect_no_reply(req, rf"WARN .*arp: attempt to add entry for 10\.0\.2\.99 on r1 by {m10} on r0")
    e = entry(d, "10.0.2.99")
    check(e and e["mac"] == "(incomplete)" and e["netif"] == "r1", f"10.0.2.99 changed: {e}")

    t.step("(11) request for an IP published on r0 (arp -s IP MAC pub): reply with the published MAC")
    pubmac = "02:00:00:00:88:88"
    d.admin("arp", "-s", "10.0.1.88", pubmac, "pub")
    check_entry(d, "10.0.1.88", pubmac, "r0", "static", "p")
    m11 = fake_mac(0x5b)
    req = arp.frame(1, m11, "10.0.1.61", "10.0.1.88")
    r = arp.expect_reply(req)
    check_reply(arp, r, esrc=MAC_R0, hwsrc=pubmac, psrc="10.0.1.88", hwdst=m11, pdst="10.0.1.61")
    check(entry(d, "10.0.1.61") is None, "sender of a request not for R was learned (RFC 826: only when targeted)")

    t.step("(12) request for an IP with a static, unpublished entry: no reply")
    d.admin("arp", "-s", "10.0.1.89", "02:00:00:00:89:89")
    check_entry(d, "10.0.1.89", "02:00:00:00:89:89", "r0", "static")
    req = arp.frame(1, fake_mac(0x5c), "10.0.1.62", "10.0.1.89")
    arp.expect_no_reply(req)

    t.step("(13) request for an IP published on r1, arriving on r0: no reply")
    pub2 = "02:00:00:00:90:90"
    d.admin("arp", "-s", "10.0.2.90", pub2, "pub")
    check_entry(d, "10.0.2.90", pub2, "r1", "static", "p")
    req = arp.frame(1, fake_mac(0x5d), "10.0.1.63", "10.0.2.90")
    arp.expect_no_reply(req)
    t.step("(13) ... and the same request on r1 (from B's side) is answered")
    setns(f"/run/netns/{net.b}")
    arp_b = Arp(t, d, "b0")
    m13 = fake_mac(0x6d)
    req = arp_b.frame(1, m13, "10.0.2.63", "10.0.2.90")
    r = arp_b.expect_reply(req)
    check_reply(arp_b, r, esrc=MAC_R1, hwsrc=pub2, psrc="10.0.2.90", hwdst=m13, pdst="10.0.2.63")
    setns(f"/run/netns/{net.a}")

    t.step("(14) request for A2 arriving on r0: no reply")
    req = arp.frame(1, fake_mac(0x5e), "10.0.1.64", A2)
    arp.expect_no_reply(req)

    t.step("forwarding still works; arp -an lists what the steps left")
    t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.2.2")
    log("\n" + arp_an(d))
    check(d.alive(), "daemon died")

    t.step("arp -n HOST, arp -d HOST, arp -s errors, arp -d -a")
    one = d.out("arp", "-n", "10.0.1.88")
    check(one.startswith("Host") and len(one.splitlines()) == 2 and "10.0.1.88" in one, f"arp -n 10.0.1.88:\n{one}")
    check(d.out("arp", "-d", "10.0.1.51").strip() == "10.0.1.51 (10.0.1.51) deleted", "arp -d 10.0.1.51")
    check(entry(d, "10.0.1.51") is None, "10.0.1.51 still there after arp -d")
    p = d.admin("arp", "-d", "10.0.1.51", check_rc=False)
    check(p.returncode == 1 and "cannot locate 10.0.1.51" in p.stderr, f"second arp -d: {p.stderr!r}")
    p = d.admin("arp", "-s", A1, "02:00:00:00:99:99", check_rc=False)
    check(p.returncode == 1 and "local address" in p.stderr, f"arp -s of the router's own address: {p.stderr!r}")
    p = d.admin("arp", "-s", "192.0.2.1", "02:00:00:00:99:99", check_rc=False)
    check(p.returncode == 1 and "no route to host" in p.stderr, f"arp -s off-net: {p.stderr!r}")
    p = d.admin("arp", "-s", "10.0.1.99", "02:00:00:00:99", check_rc=False)
    check(p.returncode == 1 and "usage" in p.stderr, f"arp -s with a bad MAC: {p.stderr!r}")
    d.admin("arp", "-d", A1)  # the router's own: spared silently, as arp(8)
    check_entry(d, A1, MAC_R0, "r0", "permanent", "l")
    out = d.out("arp", "-d", "-a")
    check("10.0.1.77 (10.0.1.77) deleted" in out and "10.0.2.2 (10.0.2.2) deleted" in out, f"arp -d -a:\n{out}")
    rows = [r for r in arp_table(arp_an(d)) if r["flags"] != "l"]
    check(not rows, f"arp -d -a left entries: {[r['line'] for r in rows]}")
    check_entry(d, A1, MAC_R0, "r0", "permanent", "l")
    check_entry(d, A2, MAC_R1, "r1", "permanent", "l")
    t.step("after arp -d -a the router resolves B again: ping A -> B")
    for i in range(3):
        if t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.2.2", check_rc=False).returncode == 0:
            break
    else:
        raise TestFailure("A -> B fails after arp -d -a")
    check_entry(d, "10.0.2.2", MAC_B, "r1", DYN)


if __name__ == "__main__":
    main(run_test)
