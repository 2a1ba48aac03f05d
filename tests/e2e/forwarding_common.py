"""The forwarding end-to-end test, for one driver (packet, tap or xdp); run
by test_forwarding_packet.py, test_forwarding_tap.py and
test_forwarding_xdp.py.

A (10.0.1.2) -- [r0 10.0.1.1 | softnet | 10.0.2.1 r1] -- B (10.0.2.2)
"""

import hashlib
import json
import os
import re
import time

from lib_e2e import (MAC_R0, MAC_R1, Drops, Topo, TestFailure, check, log, netstat_s_counters, wait_until)

FILE_MB = 100

# Run in A: a UDP datagram to a closed port of the router must come back as
# ECONNREFUSED (ICMP port unreachable), a TCP connect must be refused (RST).
PROBE_CLOSED_PORTS = r"""
import socket, sys
res = []
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(2)
u.connect(("10.0.1.1", 9))
for i in range(3):
    try:
        u.send(b"x")
        u.recv(100)
    except ConnectionRefusedError:
        res.append("udp refused")
        break
    except socket.timeout:
        pass
for i in range(3):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect(("10.0.1.1", 9))
    except ConnectionRefusedError:
        res.append("tcp refused")
        break
    except OSError as e:
        res.append("tcp " + str(e))
    finally:
        s.close()
print(", ".join(res))
"""


def ping(t, ns, args, dst, tries=3):
    """ping that a real user would retry: up to `tries` runs until one gets
    a reply. Returns the last output."""
    out = ""
    for i in range(tries):
        p = t.ns_run(ns, f"ping -n {args} {dst}", check_rc=False, timeout=60)
        out = p.stdout + p.stderr
        if p.returncode == 0:
            return out
        log(f"  ping {args} {dst}: no reply (try {i + 1}/{tries})")
    raise TestFailure(f"ping {args} {dst} from {ns} got no reply:\n{out}")


def ping_expect(t, ns, args, dst, pattern, tries=3, before=None):
    """ping whose output must show `pattern` (an ICMP error), retried
    (`before` runs before each try)."""
    out = ""
    for i in range(tries):
        if before:
            before()
        p = t.ns_run(ns, f"ping -n {args} {dst}", check_rc=False, timeout=60)
        out = p.stdout + p.stderr
        if re.search(pattern, out):
            return out
        log(f"  ping {args} {dst}: no /{pattern}/ yet (try {i + 1}/{tries})")
    raise TestFailure(f"ping {args} {dst}: expected /{pattern}/ in:\n{out}")


def counters(d):
    return netstat_s_counters(d.out("netstat", "-s"))


def check_admin_views(t, d, mtu_b=1500):
    t.step("ifconfig shows both interfaces up, with MAC, MTU and address")
    ifc = d.out("ifconfig")
    for name, mac, addr, mtu in (("r0", MAC_R0, "10.0.1.1", 1500), ("r1", MAC_R1, "10.0.2.1", mtu_b)):
        m = re.search(rf"^{name}: flags=[0-9a-f]+<([A-Z,]+)> mtu (\d+)\n((?:\t.*\n)*)", ifc, re.M)
        check(m, f"ifconfig: no {name} block in:\n{ifc}")
        flags, body = m.group(1).split(","), m.group(3)
        check("UP" in flags and "RUNNING" in flags, f"{name} not UP,RUNNING: {flags}")
        check(int(m.group(2)) == mtu, f"{name}: mtu {m.group(2)}, want {mtu}")
        check(f"lladdr {mac}" in body, f"{name}: no lladdr {mac} in:\n{body}")
        check(f"inet {addr} netmask 0xffffff00" in body, f"{name}: no inet {addr} in:\n{body}")
        check("status: active" in body, f"{name}: not active:\n{body}")
    one = d.out("ifconfig", "r1")
    check(one.startswith("r1: ") and "r0:" not in one, f"ifconfig r1 shows more or less:\n{one}")
    p = d.admin("ifconfig", "nosuch0", check_rc=False)
    check(p.returncode == 1 and "nosuch0" in p.stderr, f"ifconfig nosuch0: {p.returncode} {p.stderr!r}")

    t.step("netstat -rn: connected, local and broadcast routes")
    rn = d.out("netstat", "-rn")
    for pat in (r"^10\.0\.1/24\s+link#\d+\s+UCn\s.*\br0$", r"^10\.0\.1\.1\s+10\.0\.1\.1\s+UHLl\s.*\br0$",
                r"^10\.0\.2/24\s+link#\d+\s+UCn\s.*\br1$", r"^10\.0\.2\.1\s+10\.0\.2\.1\s+UHLl\s.*\br1$",
                r"^10\.0\.2\.255\s+10\.0\.2\.1\s+UHb\s.*\br1$"):
        check(re.search(pat, rn, re.M), f"netstat -rn: no line /{pat}/ in:\n{rn}")
    check(re.search(r"^Destination\s+Gateway\s+Flags\s+Refs\s+Mtu\s+Prio\s+Iface", rn, re.M), rn)

    t.step("netstat -i: packets counted in and out on both interfaces")
    ni = d.out("netstat", "-i")
    for name, mac in (("r0", MAC_R0), ("r1", MAC_R1)):
        m = re.search(rf"^{name}\s+(\d+)\s+<Link>\s+{mac}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", ni, re.M)
        check(m, f"netstat -i: no <Link> line for {name}:\n{ni}")
        check(int(m.group(1)) == (1500 if name == "r0" else mtu_b), f"netstat -i mtu of {name}: {m.group(1)}")
        check(int(m.group(2)) > 0 and int(m.group(4)) > 0, f"netstat -i {name}: Ipkts/Opkts not counted:\n{ni}")
        check(re.search(rf"^{name}\s+\d+\s+10\.0\.\d/24\s+10\.0\.\d\.1\s", ni, re.M), f"netstat -i: no address line for {name}:\n{ni}")


def run_test(driver):
    with Topo(f"f{driver[0]}") as t:
        t.step(f"topology: A -- softnet ({driver}) -- B")
        net = t.router_topology(driver)
        d = t.daemon(net.config(), net=net)

        t.step("first ping A -> B answered at once (held while ARP resolves, not dropped)")
        p = t.ns_run(net.a, "ping -n -c 1 -W 5 10.0.2.2", check_rc=False)
        check(p.returncode == 0, f"the first packet to B was lost (ARP hold queue?):\n{p.stdout}")
        t.step("ping A -> B and B -> A")
        ping(t, net.a, "-c 3 -i 0.3 -W 3", "10.0.2.2")
        ping(t, net.b, "-c 3 -i 0.3 -W 3", "10.0.1.2")
        t.step("ping the router's own addresses (A -> 10.0.1.1, A -> 10.0.2.1)")
        ping(t, net.a, "-c 2 -i 0.3 -W 3", "10.0.1.1")
        ping(t, net.a, "-c 2 -i 0.3 -W 3", "10.0.2.1")

        t.step("ping -s 1472 (a full 1500-byte packet) and -M do -s 1472 (DF set)")
        ping(t, net.a, "-c 3 -i 0.3 -W 3 -s 1472", "10.0.2.2")
        ping(t, net.a, "-c 3 -i 0.3 -W 3 -M do -s 1472", "10.0.2.2")
        ping(t, net.b, "-c 3 -i 0.3 -W 3 -M do -s 1472", "10.0.1.2")
        t.step("ping -s 4000 (fragments forwarded, reassembled by the host)")
        ping(t, net.a, "-c 3 -i 0.3 -W 3 -s 4000", "10.0.2.2")
        ping(t, net.b, "-c 3 -i 0.3 -W 3 -s 4000", "10.0.1.2")

        t.step("ping -s 4000 to the router itself: reassembled, answered (the reply fragmented)")
        c0 = counters(d)
        p = None
        for _ in range(3):
            p = t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 2 -s 4000 10.0.1.1", check_rc=False)
            if p.returncode == 0:
                break
        c1 = counters(d)
        check(p.returncode == 0, f"ping -s 4000 to the router: no reply:\n{p.stdout}")
        check(c1["ip: fragments received"] >= c0["ip: fragments received"] + 6, "fragments received not counted")
        check(c1["ip: packets reassembled ok"] >= c0["ip: packets reassembled ok"] + 2, "reassembled datagrams not counted")
        check(c1["ip: output datagrams fragmented"] >= c0["ip: output datagrams fragmented"] + 2, "replies not fragmented")
        log(f"  answered: {c1['ip: packets reassembled ok'] - c0['ip: packets reassembled ok']} datagrams reassembled")
        t.step("ping -b 10.0.1.255: broadcast echo ignored (broadcast_echo off) and counted")
        t.ns_run(net.a, "sysctl -qw net.ipv4.icmp_echo_ignore_broadcasts=0")
        p = t.ns_run(net.a, "ping -n -b -c 2 -i 0.3 -W 1 10.0.1.255", check_rc=False)
        check("from 10.0.1.1" not in p.stdout, f"the router answered a broadcast echo:\n{p.stdout}")
        c2 = counters(d)
        check(c2["icmp: broadcast/multicast echo requests ignored"] >= c1["icmp: broadcast/multicast echo requests ignored"] + 2,
              "ignored broadcast echoes not counted")
        t.step("UDP to a closed port of the router: port unreachable; TCP: reset")
        p = t.ns_run(net.a, ["python3", "-c", PROBE_CLOSED_PORTS], check_rc=False, timeout=30)
        check(p.returncode == 0 and "udp refused" in p.stdout and "tcp refused" in p.stdout,
              f"closed ports: {p.stdout} {p.stderr}")
        c3 = counters(d)
        check(c3["udp: dropped due to no socket"] > c2["udp: dropped due to no socket"], "udp no socket not counted")
        check(c3["tcp: resets sent"] > c2["tcp: resets sent"], "tcp resets not counted")

        t.step("ping -t 1: Time to live exceeded from 10.0.1.1")
        c0 = counters(d)
        ping_expect(t, net.a, "-c 1 -W 3 -t 1", "10.0.2.2", r"From 10\.0\.1\.1.*Time to live exceeded")
        ping_expect(t, net.b, "-c 1 -W 3 -t 1", "10.0.1.2", r"From 10\.0\.2\.1.*Time to live exceeded")
        t.step("ping -t 2 reaches B (the router takes exactly one off the TTL)")
        ping(t, net.a, "-c 2 -i 0.3 -W 3 -t 2", "10.0.2.2")
        c1 = counters(d)
        check(c1["ip: packets with ttl exceeded"] > c0["ip: packets with ttl exceeded"],
              f"ttl exceeded not counted: {c0['ip: packets with ttl exceeded']} -> {c1['ip: packets with ttl exceeded']}")
        check(c1["icmp: calls to icmp_error"] > c0["icmp: calls to icmp_error"], "icmp_error calls not counted")

        t.step(f"curl: {FILE_MB} MB from an http.server on B, SHA-256 checked")
        www = os.path.join(t.tmp, "www")
        os.makedirs(www)
        h = hashlib.sha256()
        with open(os.path.join(www, "big.bin"), "wb") as f:
            for _ in range(FILE_MB):
                chunk = os.urandom(1 << 20)
                h.update(chunk)
                f.write(chunk)
        want = h.hexdigest()
        http_log = open(os.path.join(t.tmp, "http.log"), "wb")
        t.ns_spawn(net.b, f"python3 -m http.server 8080 --bind 10.0.2.2 --directory {www}",
                   stdout=http_log, stderr=http_log)
        wait_until("http.server on B", lambda: t.ns_run(
            net.b, "curl -s -o /dev/null -w %{http_code} http://10.0.2.2:8080/", check_rc=False).stdout == "200",
            timeout=20, interval=0.3)
        got_path = os.path.join(t.tmp, "got.bin")
        # One transfer: a failure is the router's, reported, not retried.
        p = t.ns_run(net.a, f"curl -sS --max-time 240 -o {got_path} http://10.0.2.2:8080/big.bin",
                     check_rc=False, timeout=260)
        check(p.returncode == 0, f"curl failed (exit {p.returncode}): {p.stderr}")
        h2 = hashlib.sha256()
        with open(got_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h2.update(chunk)
        check(os.path.getsize(got_path) == FILE_MB << 20, f"got {os.path.getsize(got_path)} bytes")
        check(h2.hexdigest() == want, f"SHA-256 differs: {h2.hexdigest()} != {want}")
        os.unlink(got_path)
        log(f"  {FILE_MB} MB, sha256 {want[:16]}... matches")

        t.step("iperf3 TCP A -> B (-t 3) and UDP (-u -b 50M -t 3)")
        t.ns_spawn(net.b, "iperf3 -s -B 10.0.2.2 -p 5201")
        t.wait_listen(net.b, 5201)
        res = iperf(t, net.a, "-c 10.0.2.2 -p 5201 -t 3")
        rx = res["end"]["sum_received"]["bytes"]
        check(rx > 0, f"iperf3 TCP received nothing: {res['end']}")
        log(f"  TCP: {rx} bytes, {res['end']['sum_received']['bits_per_second'] / 1e6:.0f} Mbit/s")
        res = iperf(t, net.a, "-c 10.0.2.2 -p 5201 -t 3 -R")
        rx = res["end"]["sum_received"]["bytes"]
        check(rx > 0, f"iperf3 TCP -R received nothing: {res['end']}")
        log(f"  TCP B -> A: {rx} bytes")
        drops = Drops(t, d, net.b, [net.a, net.r, net.b])
        before = drops.snapshot()
        res = iperf(t, net.a, "-c 10.0.2.2 -p 5201 -u -b 50M -t 3")
        s = res["end"]["sum"]
        # 50 Mbit/s is far below what the router forwards: on an idle
        # machine nothing is lost. On a loaded one the router or B's iperf3
        # may wait for a CPU for a second, and a ring or socket buffer
        # overflows (1.5 % seen at load 16, every datagram counted): what
        # is lost must be counted where it was dropped; uncounted losses
        # (the router's) stay under 1 %.
        counted = drops.since(before)
        uncounted = s["lost_packets"] - Drops.lost(counted)
        check(s["packets"] > 1000 and uncounted * 100 < s["packets"],
              f"iperf3 UDP at 50 Mbit/s: {s['lost_packets']} of {s['packets']} datagrams lost, {uncounted} of them "
              f"counted nowhere (1 % allowed): {s}; counted drops {counted}")
        log(f"  UDP: {s['packets'] - s['lost_packets']}/{s['packets']} datagrams arrived; counted drops {counted}")

        t.step("netstat -s counts forwarded packets")
        c = counters(d)
        check(c["ip: packets forwarded"] > 10000, f"packets forwarded: {c['ip: packets forwarded']}")
        check(c["ip: total packets received"] >= c["ip: packets forwarded"], "total < forwarded")
        check(c["ip: packets for this host"] >= 4, f"packets for this host: {c['ip: packets for this host']}")
        check_admin_views(t, d)

        t.step("restart with mtu = 1400 on r1 (B's side)")
        check(d.stop() == 0, "daemon did not exit 0 on SIGTERM")
        check(not os.path.exists(d.socket), "control socket left behind")
        d = t.daemon(net.config(mtu_b=1400), net=net)
        # A's kernel must not have learned a path MTU already.
        def flush():
            t.ns_run(net.a, "ip route flush cache", check_rc=False)

        flush()
        t.step("ping -M dont -s 1472: the router fragments to 1400")
        c0 = counters(d)
        ping(t, net.a, "-c 3 -i 0.3 -W 3 -M dont -s 1472", "10.0.2.2")
        c1 = counters(d)
        check(c1["ip: output datagrams fragmented"] > c0["ip: output datagrams fragmented"],
              f"nothing fragmented: {c1['ip: output datagrams fragmented']}")
        check(c1["ip: fragments created"] >= 2 * (c1["ip: output datagrams fragmented"] - c0["ip: output datagrams fragmented"]),
              "fragments created")
        t.step("ping -M do -s 1472: Frag needed and DF set (mtu = 1400) from 10.0.1.1")
        out = ping_expect(t, net.a, "-c 2 -i 0.5 -W 3 -M do -s 1472", "10.0.2.2",
                          r"From 10\.0\.1\.1 .*Frag needed and DF set \(mtu = 1400\)", before=flush)
        log("  " + " / ".join(l for l in out.splitlines() if "1400" in l)[:200])
        t.step("A's kernel learned the path MTU (ip route get shows mtu 1400)")
        rg = t.ns_run(net.a, "ip route get 10.0.2.2").stdout
        check("mtu 1400" in rg, f"no mtu 1400 in A's route cache: {rg}")
        c2 = counters(d)
        check(c2["ip: datagrams that can't be fragmented"] > c1["ip: datagrams that can't be fragmented"],
              "can't fragment not counted")
        t.step("ping -M do -s 1372 (exactly 1400) still passes")
        ping(t, net.a, "-c 3 -i 0.3 -W 3 -M do -s 1372", "10.0.2.2")
        check_admin_views(t, d, mtu_b=1400)

        t.step("SIGTERM: exit 0, socket removed")
        check(d.stop() == 0, "daemon did not exit 0 on SIGTERM")
        check(not os.path.exists(d.socket), "control socket left behind")


def iperf(t, ns, args):
    """One iperf3 run (-J): its results, or a failure. A transfer that
    fails is reported, not retried; only a server still busy with the
    previous run (iperf3 serves one test at a time) is waited for."""
    for _ in range(5):
        p = t.ns_run(ns, f"iperf3 -J {args}", check_rc=False, timeout=90)
        try:
            res = json.loads(p.stdout)
        except ValueError:
            res = {"error": p.stdout + p.stderr}
        if p.returncode == 0 and "error" not in res:
            return res
        err = res.get("error", p.stderr)
        if "server is busy" not in err:
            raise TestFailure(f"iperf3 {args} failed: {err}")
        log(f"  iperf3 {args}: {err}; waiting for the server")
        time.sleep(1)
    raise TestFailure(f"iperf3 {args}: the server stayed busy")
