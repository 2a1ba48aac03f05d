"""Host interfaces (`host = "hr0"` on r0, VPP linux-cp's model): softnet
creates a TAP hr0 in its namespace with r0's MAC, address, MTU and
carrier. A TCP listener in the router namespace (Linux's own stack) is
reached from A through softnet via hr0 (an ssh-like exchange), a UDP one
too, and over IPv6 once hr0 has r0's IPv6 addresses (after softnet's
DAD); softnet still answers A's pings itself; Linux pings A over IPv4 and
IPv6 through hr0 (ARP and NDP answered from softnet's tables); r0
down/up takes hr0's carrier away and back; an address added to r0 with ifconfig
appears on hr0 and goes with its deletion; pf: a port blocked in on r0
never reaches the listener, and `block out on r0` stops what Linux sends.
A SIGHUP that changes the twin's name re-creates the interface with the
new twin; `ifconfig r0 destroy` takes the twin away; the twins go with the
daemon. Bad input: a host interface named like an existing device is
refused at start with the device named.
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import MAC_R0, Topo, TestFailure, check, log, main, run, wait_until  # noqa: E402

SERVER = r"""
import socket, sys
# Dual-stack: IPv4 peers show as ::ffff:a.b.c.d.
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1]))); s.listen(8)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
u.bind(("::", int(sys.argv[1])))
u.setblocking(False)
import select
while True:
    r, _, _ = select.select([s, u], [], [])
    if u in r:
        data, peer = u.recvfrom(2048)
        u.sendto(b"udp:" + data.upper(), peer)
    if s in r:
        c, peer = s.accept()
        c.settimeout(10)
        line = c.recv(1024)
        c.sendall(b"SSH-2.0-softnet-hostif " + line.upper() + b" from " + peer[0].encode())
        c.close()
"""

CLIENT = r"""
import socket, sys
host, port, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
if what == "tcp":
    c = socket.create_connection((host, port), timeout=5)
    c.sendall(b"hello")
    print(c.recv(1024).decode())
else:
    u = socket.socket(fam, socket.SOCK_DGRAM); u.settimeout(3)
    u.sendto(b"ping", (host, port))
    print(u.recvfrom(1024)[0].decode())
"""


def with_host(config, name="r0", host="hr0"):
    return config.replace(f'name = "{name}"\n', f'name = "{name}"\nhost = "{host}"\n', 1)


def link(t, ns, dev):
    return t.ns_run(ns, f"ip -o link show {dev}").stdout


def addrs(t, ns, dev):
    return t.ns_run(ns, f"ip -o -4 addr show dev {dev}").stdout


def client(t, net, what, port=2222, check_rc=True, host="10.0.1.1"):
    return t.ns_run(net.a, ["python3", "-c", CLIENT, host, str(port), what], check_rc=check_rc, timeout=20)


def run_test():
    with Topo("hif") as t:
        t.step("topology: A -- r0 [softnet, host twin hr0] r1 -- B; a TCP+UDP server in the router namespace")
        net = t.router_topology("packet")
        pf = os.path.join(t.tmp, "pf.conf")
        with open(pf, "w") as f:
            f.write("pass all\n")
        cfg = with_host(net.config(extra=f'pf = "{pf}"')).replace('addr = ["10.0.1.1/24"]', 'addr = ["10.0.1.1/24", "fd00:1::1/64"]', 1)
        # IPv6 on A's side (the topology turns it off everywhere).
        t.ns_run(net.a, "sysctl -qw net.ipv6.conf.a0.disable_ipv6=0")
        t.ns_run(net.a, "ip -6 addr add fd00:1::2/64 dev a0 nodad")
        d = t.daemon(cfg, net=net)
        wait_until("hr0 has 10.0.1.1/24", lambda: "10.0.1.1/24" in addrs(t, net.r, "hr0"), timeout=10)
        l = link(t, net.r, "hr0")
        check(MAC_R0 in l, f"hr0 does not carry r0's MAC:\n{l}")
        check("mtu 1500" in l and ",UP" in l and "LOWER_UP" in l, f"hr0 not up with carrier and mtu 1500:\n{l}")
        t.ns_spawn(net.r, ["python3", "-c", SERVER, "2222"])
        t.wait_listen(net.r, 2222)

        t.step("A -> 10.0.1.1:2222 over TCP reaches the listener in Linux; UDP too; ping still softnet's")
        out = client(t, net, "tcp").stdout
        check("SSH-2.0-softnet-hostif HELLO from ::ffff:10.0.1.2" in out, f"TCP through the host interface: {out!r}")
        out = client(t, net, "udp").stdout
        check("udp:PING" in out, f"UDP through the host interface: {out!r}")
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.1.1")
        # A TCP port nobody listens on: Linux's RST, not softnet's.
        p = client(t, net, "tcp", port=2223, check_rc=False)
        check("ConnectionRefused" in p.stderr, f"closed port: {p.stderr[-300:]}")

        t.step("Linux pings A through hr0 (its ARP answered from softnet's table)")
        t.ns_run(net.r, "ping -n -c 2 -i 0.3 -W 3 10.0.1.2")
        neigh = t.ns_run(net.r, "ip neigh show dev hr0").stdout
        check(re.search(r"10\.0\.1\.2 lladdr 02:00:00:00:01:02", neigh, re.I), f"hr0's neighbor table: {neigh}")

        t.step("IPv6: hr0 gets r0's addresses once DAD passed; TCP over IPv6 to the listener; Linux pings A (NDP from softnet)")
        v6 = lambda: t.ns_run(net.r, "ip -o -6 addr show dev hr0").stdout
        wait_until("fd00:1::1 and r0's link-local on hr0", lambda: "fd00:1::1/64" in v6() and "fe80::ff:fe00:101/64" in v6(), timeout=10)
        out = client(t, net, "tcp", host="fd00:1::1").stdout
        check("HELLO from fd00:1::2" in out, f"TCP over IPv6 through the host interface: {out!r}")
        t.ns_run(net.r, "ping -6 -n -c 2 -i 0.3 -W 3 fd00:1::2")
        neigh = t.ns_run(net.r, "ip -6 neigh show dev hr0").stdout
        check(re.search(r"fd00:1::2 lladdr 02:00:00:00:01:02", neigh, re.I), f"hr0's IPv6 neighbors: {neigh}")

        m = re.search(r"host: hr0 punted (\d+) errors (\d+) from host (\d+) sent (\d+) filtered \d+ dropped \d+ arp (\d+) nd (\d+)",
                      d.out("ifconfig", "r0"))
        check(m, f"ifconfig r0 has no host line:\n{d.out('ifconfig', 'r0')}")
        punted, errors, from_host, sent, arp, nd = map(int, m.groups())
        check(punted >= 10 and errors == 0 and from_host >= sent >= 10 and arp >= 1 and nd >= 1,
              f"host counters do not add up: {m.group(0)}")

        t.step("r0 down: hr0 loses its carrier; up: back, and TCP works again")
        d.admin("ifconfig", "r0", "down")
        wait_until("hr0 NO-CARRIER", lambda: "NO-CARRIER" in link(t, net.r, "hr0"), timeout=5)
        d.admin("ifconfig", "r0", "up")
        wait_until("hr0 LOWER_UP", lambda: "LOWER_UP" in link(t, net.r, "hr0"), timeout=5)
        check("10.0.1.1/24" in addrs(t, net.r, "hr0"), "hr0 lost its address over the carrier change")
        out = client(t, net, "tcp").stdout
        check("HELLO" in out, f"TCP after r0 down/up: {out!r}")

        t.step("ifconfig r0 inet 10.0.5.1/24 appears on hr0; delete takes it away")
        d.admin("ifconfig", "r0", "inet", "10.0.5.1/24")
        wait_until("10.0.5.1 on hr0", lambda: "10.0.5.1/24" in addrs(t, net.r, "hr0"), timeout=5)
        out = t.ns_run(net.a, ["python3", "-c", CLIENT, "10.0.5.1", "2222", "tcp"], timeout=20).stdout
        check("HELLO" in out, f"TCP to the second address: {out!r}")
        d.admin("ifconfig", "r0", "inet", "10.0.5.1", "delete")
        wait_until("10.0.5.1 gone from hr0", lambda: "10.0.5.1" not in addrs(t, net.r, "hr0"), timeout=5)

        t.step("pf: block in to port 2222 on r0 keeps A out; block out on r0 stops Linux's packets")
        with open(pf, "w") as f:
            f.write("pass all\nblock in quick on r0 proto tcp to port 2222\n")
        d.admin("pfctl", "-f", pf)
        p = client(t, net, "tcp", check_rc=False)
        check(p.returncode != 0 and "HELLO" not in p.stdout, f"blocked port answered: {p.stdout!r} {p.stderr[-200:]}")
        with open(pf, "w") as f:
            f.write("pass all\nblock out quick on r0 proto icmp\n")
        d.admin("pfctl", "-f", pf)
        p = t.ns_run(net.r, "ping -n -c 2 -i 0.3 -W 2 10.0.1.2", check_rc=False)
        check(p.returncode != 0, f"Linux's ping went out through block out on r0:\n{p.stdout}")
        with open(pf, "w") as f:
            f.write("pass all\n")
        d.admin("pfctl", "-f", pf)
        t.ns_run(net.r, "ping -n -c 2 -i 0.3 -W 3 10.0.1.2")

        t.step("SIGHUP with host = \"hr9\": r0 re-created, hr0 gone, hr9 its twin; ifconfig r0 destroy takes hr9 away")
        d.write_config(cfg.replace('host = "hr0"', 'host = "hr9"'))
        d.signal(signal.SIGHUP)
        wait_until("hr9 addressed", lambda: t.ns_run(net.r, "ip -o -4 addr show dev hr9", check_rc=False).stdout.count("10.0.1.1/24") == 1, timeout=10)
        check(t.ns_run(net.r, "ip link show hr0", check_rc=False).returncode != 0, "hr0 outlived its interface")
        wait_until("TCP through hr9", lambda: "HELLO" in client(t, net, "tcp", check_rc=False).stdout, timeout=10)
        d.admin("ifconfig", "r0", "destroy")
        wait_until("hr9 gone", lambda: t.ns_run(net.r, "ip link show hr9", check_rc=False).returncode != 0, timeout=5)

        t.step("stop: the twins go with the daemon")
        check(d.stop() == 0, "daemon did not exit 0")
        p = t.ns_run(net.r, "ip -o link show type tun", check_rc=False)
        check("hr" not in p.stdout, f"a twin outlived the daemon:\n{p.stdout}")

        t.step("bad input: a host interface named like an existing device is refused at start")
        bad = t.daemon(with_host(net.config(), host="lo"), net=net, name="bad", wait=False)
        deadline = time.monotonic() + 15
        while bad.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        check(not bad.alive(), "a daemon with host = \"lo\" kept running")
        text = bad.log_text()
        check("lo: a device of that name exists already" in text, f"the error does not name the device:\n{text[-800:]}")
        check("LOOPBACK" in link(t, net.r, "lo"), "lo was touched")


if __name__ == "__main__":
    main(run_test)
