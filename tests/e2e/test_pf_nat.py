"""pf translation through softnet, seen from Linux peers.

    A 10.0.1.2 (and 10.0.1.3) -- r0 [softnet + pf] r1 10.0.2.1 -- B 10.0.2.2

1. nat-to (r1:0): A's connections reach B from 10.0.2.1 only (B's sockets
   show the router's address), on source ports in 50001-65535 that do not
   count up; `pfctl -ss` prints the translated state as print_state does.
2. A UDP datagram to a closed port on B: B's port unreachable is
   translated back and A's socket gets ECONNREFUSED. Traceroute through
   the NAT (scapy): TTL 1 gets the router's time exceeded, TTL 2 B's port
   unreachable quoting A's own packet.
3. Two hosts behind the NAT (10.0.1.2 and 10.0.1.3) ping B with the same
   ICMP id: each gets its own replies, with its own id.
4. 100 MB from a file server in B through the NAT (curl), the same
   SHA-256 on both ends; iperf3 TCP and UDP.
5. The NAT states survive a ruleset reload (`pfctl -f`) under iperf3:
   the `-ss` states keep their translated ports, iperf3 keeps moving data
   (every interval after the reload too), a held connection goes on.
6. rdr-to: B reaches A's server through the router's port 2222.
7. binat-to 192.0.2.50 both ways: A's connections come from it, B's
   connections to it reach A (ports kept).
8. Every NAT port in use (a two-port range): the third flow is dropped
   and counted as `translate`, while other traffic works.
9. A pool table emptied at run time: new flows are dropped as
   `translate`, flows made before go on; refilled, new flows work again.
10. `(if)` with no address: nothing to translate to, dropped as
    `translate`.
11. sticky-address on a round-robin nat-to pool of two addresses: each of
    A's connections leaves from one address, A2's from the other, and
    `-sS` shows `SRC nat-to ADDR` for each source.
"""

import hashlib
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Drops, Topo, check, log, main, wait_until  # noqa: E402
from lib_pf import A_IP, B_IP, IPERF_PORT, PEER, PfLab  # noqa: E402

R_B = "10.0.2.1"
A2_IP = "10.0.1.3"
BINAT = "192.0.2.50"

NAT = """\
match out on r1 from 10.0.1.0/24 nat-to (r1:0)
pass
"""

RDR = """\
match out on r1 from 10.0.1.0/24 nat-to (r1:0)
pass
pass in on r1 proto tcp to 10.0.2.1 port 2222 rdr-to 10.0.1.2 port 22
"""

BINAT_RULES = f"""\
pass
pass on r1 from {A_IP} binat-to {BINAT}
"""

EXHAUST = """\
pass
match out on r1 proto udp from 10.0.1.0/24 nat-to (r1:0) port 60000:60001
match out on r1 proto tcp from 10.0.1.0/24 nat-to (r1:0)
"""

POOL = """\
table <pool> { 10.0.2.1 }
pass
match out on r1 from 10.0.1.0/24 nat-to <pool>
"""

NO_ADDR = """\
pass
match out on r1 proto udp from 10.0.1.0/24 nat-to (sn-none)
"""

STICKY = """\
match out on r1 from 10.0.1.0/24 nat-to { 10.0.2.1, 10.0.2.9 } round-robin sticky-address
pass
"""

BIG = 100 << 20
HTTP_PORT = 8000


def big_file(t):
    """A 100 MB file of random bytes in the run's directory, and its SHA-256."""
    path = os.path.join(t.tmp, "big.bin")
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(BIG >> 20):
            b = os.urandom(1 << 20)
            h.update(b)
            f.write(b)
    return path, h.hexdigest()


def peers_in_b(t, lab, port):
    """The remote ends B's kernel sees on TCP port `port`."""
    out = t.ns_run(lab.net.b, f"ss -Htn state established sport = :{port}", check_rc=False).stdout
    return [l.split()[-1] for l in out.splitlines() if l.strip()]


def translate_count(lab):
    return lab.info().get("translate", 0)


def run_test():
    with Topo("nat") as t:
        lab = PfLab(t, rules=NAT, iperf=True)

        # ---- 1. nat-to ------------------------------------------------------------------
        t.step("1. nat-to (r1:0): B sees the router's address, ports random in 50001-65535")
        h = lab.hold(22, secs=120, gap=0.2)
        h.wait_more(3)
        seen = peers_in_b(t, lab, 22)
        check(seen and all(p.startswith(R_B + ":") for p in seen), f"B's peers: {seen}")
        ports = []
        for _ in range(6):
            lab.expect_tcp(22, "ok", "connect through NAT")
        states = lab.states_matching(rf"^all tcp {re.escape(R_B)}:\d+ \({re.escape(A_IP)}:\d+\) -> {re.escape(B_IP)}:22")
        check(len(states) >= 7, "translated states in -ss:\n" + "\n".join(lab.states()))
        for s in states:
            ports.append(int(re.match(rf"all tcp {re.escape(R_B)}:(\d+)", s).group(1)))
        check(all(50001 <= p <= 65535 for p in ports), f"ports {ports}")
        ordered = sorted(ports)
        check(sum(1 for a, b in zip(ordered, ordered[1:]) if b == a + 1) < 3, f"ports count up: {ports}")
        log(f"  e.g. {states[0]}")

        # ---- 2. ICMP errors ---------------------------------------------------------------
        t.step("2. UDP to a closed port on B: A gets connection refused through the NAT")
        r = lab.udp(7777, tmo=3.0)
        check(r["result"] == "refused", f"udp to a closed port: {r}")
        t.step("2. traceroute through the NAT (scapy): the router at TTL 1, B's port unreachable at TTL 2")
        tr = lab.scapy(f"""
out = []
for ttl in (1, 2):
    a = sr1(IP(dst="{B_IP}", ttl=ttl)/UDP(sport=40000 + ttl, dport=33434), timeout=10)
    # scapy decodes the quote as IPerror / UDPerror
    q = a[IPerror] if a is not None and IPerror in a else None
    out.append(None if a is None else [a[IP].src, a[ICMP].type, a[ICMP].code,
              q.src if q is not None else None,
              q[UDPerror].sport if q is not None and UDPerror in q else None])
print(json.dumps(out))
""")
        check(tr[0] and tr[0][0] == "10.0.1.1" and tr[0][1] == 11, f"TTL 1: {tr}")
        check(tr[1] and tr[1][:3] == [B_IP, 3, 3] and tr[1][3] == A_IP and tr[1][4] == 40002, f"TTL 2: {tr}")
        log(f"  hops: {tr}")

        # ---- 3. same ICMP id from two hosts -------------------------------------------------
        t.step("3. two hosts behind the NAT ping B with the same ICMP id")
        t.ns_run(lab.net.a, f"ip addr add {A2_IP}/24 dev a0")
        pong = lab.scapy(f"""
import threading
# Listening before the echo requests go (started_callback), until both
# replies arrived (and 0.5 s more for a third) or 10 s passed.
import time
up, got = threading.Event(), []
s = AsyncSniffer(filter="icmp and icmp[0] == 0", iface="a0", prn=got.append, store=False, started_callback=up.set)
s.start()
up.wait(30)
for src in ("{A_IP}", "{A2_IP}"):
    send(IP(src=src, dst="{B_IP}")/ICMP(id=4242, seq=1)/b"same-id")
end = time.monotonic() + 10
while len(got) < 2 and time.monotonic() < end:
    time.sleep(0.05)
time.sleep(0.5)
s.stop()
print(json.dumps(sorted([p[IP].dst, p[ICMP].id] for p in got)))
""")
        check(pong == [[A_IP, 4242], [A2_IP, 4242]], f"echo replies: {pong}")

        # ---- 4. bulk and iperf3 --------------------------------------------------------
        t.step("4. 100 MB from B's file server through the NAT, SHA-256 compared; iperf3 TCP and UDP")
        path, digest = big_file(t)
        t.ns_spawn(lab.net.b, ["python3", "-m", "http.server", str(HTTP_PORT), "--bind", B_IP,
                               "--directory", t.tmp])
        t.wait_listen(lab.net.b, HTTP_PORT)
        t0 = time.monotonic()
        try:
            p = t.ns_run(lab.net.a, ["sh", "-c", f"curl -sS --max-time 60 http://{B_IP}:{HTTP_PORT}/big.bin | sha256sum"],
                         timeout=70, check_rc=False)
        finally:
            # a failed run keeps its directory: not the 100 MB
            os.unlink(path)
        got = p.stdout.split()[0] if p.stdout.split() else ""
        check(got == digest, f"100 MB through NAT: sha256 {got!r}, want {digest} ({p.stderr[-300:]})")
        log(f"  100 MB in {time.monotonic() - t0:.1f} s, sha256 {digest[:16]}… on both ends")
        drops = Drops(t, lab.d, lab.net.b, [lab.net.a, lab.net.r, lab.net.b])
        for args in ("-t 3", "-u -b 50M -t 3"):
            before = drops.snapshot()
            p = t.ns_run(lab.net.a, f"iperf3 -J -c {B_IP} -p {IPERF_PORT} {args}", timeout=60, check_rc=False)
            check(p.returncode == 0, f"iperf3 {args}: {p.stdout[-500:]} {p.stderr[-500:]}")
            end = json.loads(p.stdout)["end"]
            if "-u" in args:
                # 50 Mbit/s through the NAT: nothing lost on an idle machine;
                # on a loaded one what a starved router or iperf3 drops is
                # counted (lib_e2e.Drops): uncounted losses under 1 %.
                s = end["sum"]
                counted = drops.since(before)
                uncounted = s["lost_packets"] - Drops.lost(counted)
                check(s["packets"] > 1000 and uncounted * 100 < s["packets"],
                      f"iperf3 UDP through NAT: {s['lost_packets']} of {s['packets']} datagrams lost, {uncounted} "
                      f"counted nowhere (1 % allowed); counted drops {counted}")
                log(f"  iperf3 {args}: {s['packets'] - s['lost_packets']}/{s['packets']} datagrams arrived; "
                    f"counted drops {counted}")
            else:
                r = end["sum_received"]
                check(r["bytes"] > 0, f"iperf3 {args}: nothing received: {r}")
                log(f"  iperf3 {args}: {r['bits_per_second'] / 1e6:.0f} Mbit/s received")

        # ---- 5. reload ------------------------------------------------------------------
        t.step("5. the NAT states survive a ruleset reload under iperf3 (translated ports kept)")
        out = os.path.join(t.tmp, "iperf-reload.json")
        with open(out, "w") as f:
            ip = t.ns_spawn(lab.net.a, f"iperf3 -c {B_IP} -p {IPERF_PORT} -t 6 -i 1 -J", stdout=f)
        pat = rf"^all tcp {re.escape(R_B)}:\d+ \({re.escape(A_IP)}:\d+\) -> {re.escape(B_IP)}:{IPERF_PORT} "

        def iperf_states():
            return sorted(" ".join(s.split()[:6]) for s in lab.states_matching(pat))
        wait_until("iperf3's two connections in -ss", lambda: len(iperf_states()) >= 2, timeout=10)
        time.sleep(1.5)
        before = iperf_states()
        h.wait_more(2)
        lab.pfctl("-f", lab.conf)
        reloaded = time.time()
        after = iperf_states()
        check(before == after, f"translated states before the reload {before}, after {after}")
        try:
            ip.wait(timeout=30)
        except Exception:
            check(False, "iperf3 did not finish within 30 s after the reload")
        check(ip.returncode == 0, f"iperf3 across the reload: rc {ip.returncode}")
        with open(out) as f:
            res = json.load(f)
        bps = [i["sum"]["bits_per_second"] for i in res["intervals"]]
        check(len(bps) >= 6 and all(b > 0 for b in bps), f"iperf3 intervals across the reload (bit/s): {bps}")
        log(f"  states kept: {after}; intervals (Mbit/s): {[round(b / 1e6) for b in bps]}"
            f" (reload {reloaded - res['start']['timestamp']['timesecs']:.1f} s in)")
        h.wait_more(3)
        h.stop()

        # ---- 6. rdr-to --------------------------------------------------------------------
        t.step("6. rdr-to: B reaches A's server through the router's port 2222")
        lab.pfctl("-f", lab.file("rdr.conf", RDR))
        t.ns_spawn(lab.net.a, ["python3", PEER, "serve", "22", "", "120"])
        t.wait_listen(lab.net.a, 22)
        r = t.ns_run(lab.net.b, ["python3", PEER, "connect", R_B, "2222", "3"], check_rc=False)
        check('"ok"' in r.stdout, f"B to 10.0.2.1:2222: {r.stdout} {r.stderr}")
        check(lab.states_matching(rf"<- {re.escape(B_IP)}:\d+") , "-ss:\n" + "\n".join(lab.states()))

        # ---- 7. binat-to ---------------------------------------------------------------
        t.step(f"7. binat-to {BINAT} both ways")
        lab.pfctl("-Fs")
        lab.pfctl("-f", lab.file("binat.conf", BINAT_RULES))
        t.ns_run(lab.net.b, f"ip route add {BINAT}/32 via {R_B}")
        h = lab.hold(22, secs=30, gap=0.2)
        h.wait_more(2)
        seen = peers_in_b(t, lab, 22)
        check(seen and all(p == f"{BINAT}:{h.lport}" for p in seen), f"B's peers: {seen} (A's port {h.lport})")
        h.stop()
        r = t.ns_run(lab.net.b, ["python3", PEER, "connect", BINAT, "22", "3"], check_rc=False)
        check('"ok"' in r.stdout, f"B to {BINAT}:22: {r.stdout} {r.stderr}")

        # ---- 8. ports run out -------------------------------------------------------
        t.step("8. every NAT port in use: the third UDP flow is dropped as translate, TCP goes on")
        lab.pfctl("-Fs")
        lab.pfctl("-f", lab.file("exhaust.conf", EXHAUST))
        before = translate_count(lab)
        lab.scapy(f"""
for sport in (41001, 41002, 41003):
    send(IP(dst="{B_IP}")/UDP(sport=sport, dport=9998)/b"x")
print(json.dumps(0))
""")
        wait_until("translate counted", lambda: translate_count(lab) >= before + 1, timeout=5)
        nat_states = lab.states_matching(r"^all udp 10\.0\.2\.1:6000[01] ")
        check(len(nat_states) == 2, "states:\n" + "\n".join(lab.states()))
        lab.expect_tcp(22, "ok", "TCP while the UDP ports are used up")
        log(f"  translate {before} -> {translate_count(lab)}")

        # ---- 9. pool table emptied --------------------------------------------------------
        t.step("9. a pool table emptied at run time")
        lab.pfctl("-Fs")
        lab.pfctl("-f", lab.file("pool.conf", POOL))
        h = lab.hold(22, secs=60, gap=0.2)
        h.wait_more(2)
        lab.pfctl("-t", "pool", "-T", "flush")
        before = translate_count(lab)
        r = lab.connect(22, tmo=2.0)
        check(r["result"] == "timeout", f"a new connection without pool addresses: {r}")
        check(translate_count(lab) > before, f"translate {before} -> {translate_count(lab)}")
        h.wait_more(3)
        lab.pfctl("-t", "pool", "-T", "add", R_B)
        lab.expect_tcp(22, "ok", "with the pool refilled")
        h.stop()

        # ---- 10. (if) without address ---------------------------------------------------
        t.step("10. (if) with no address: nothing to translate to")
        lab.pfctl("-f", lab.file("noaddr.conf", NO_ADDR))
        before = translate_count(lab)
        r = lab.udp(9998, tmo=1.0)
        check(r["result"] == "timeout", f"udp through an address-less nat-to: {r}")
        check(translate_count(lab) > before, f"translate {before} -> {translate_count(lab)}")

        # ---- 11. sticky-address -----------------------------------------------------------
        t.step("11. sticky-address: a round-robin nat-to pool of two keeps each source on one address")
        lab.pfctl("-Fs")
        lab.pfctl("-f", lab.file("sticky.conf", STICKY))
        t.ns_run(lab.net.b, f"ip route add 10.0.2.9/32 via {R_B}")
        for _ in range(4):
            lab.expect_tcp(22, "ok", "A through the sticky pool")
            r = lab.connect(22, src=A2_IP)
            check(r["result"] == "ok", f"A2 through the sticky pool: {r}")

        def used(src):
            pat = rf"^all tcp (10\.0\.2\.[19]):\d+ \({re.escape(src)}:\d+\) -> {re.escape(B_IP)}:22 "
            return {re.match(pat, s).group(1) for s in lab.states_matching(pat)}
        a, a2 = used(A_IP), used(A2_IP)
        check(len(a) == 1 and len(a2) == 1 and a != a2, f"A left from {a}, A2 from {a2}:\n" + "\n".join(lab.states()))
        nodes = lab.pfctl("-sS").stdout
        for src, addr in ((A_IP, a), (A2_IP, a2)):
            check(re.search(rf"^{re.escape(src)} nat-to {re.escape(addr.pop())} \( states \d+,", nodes, re.M),
                  f"-sS:\n{nodes}")
        log(f"  -sS: {nodes.strip()}")


if __name__ == "__main__":
    main(run_test)
