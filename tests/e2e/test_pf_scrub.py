"""pf scrubbing through softnet (pf_norm.c pf_scrub, pf_normalize_mss),
seen in B with scapy.

    A 10.0.1.2 -- r0 [softnet + pf] r1 10.0.2.1 -- B 10.0.2.2

`match in on r0 … scrub (…)` / `set tos` rules by destination port, then
`pass`. Crafted with scapy in A, sniffed in B (IP and UDP/TCP checksums
summed again in B):

1. no-df: a datagram with DF arrives without it.
2. min-ttl 100: a datagram sent with TTL 5 arrives with 99 (raised at pf
   in, then one hop).
3. max-mss 1000: a SYN with MSS 1460 arrives with 1000.
4. random-id: eight datagrams sent with IP id 1234 arrive with eight
   other ids.
5. set tos 0x10: a datagram with TOS 0x01 (ECN bits) arrives with 0x11.
6. A port no rule scrubs: DF, TOS and id arrive as sent (TTL 4).
7. `set reassemble yes no-df` loads, and fragments with DF then pass
   (reassembled, DF cleared): B answers a fragmented echo request.
8. `set reassemble no` with `block in proto icmp fragment`: a ping that
   fits one frame is answered, `ping -s 4000` (fragments) is not and
   counts as `fragment`.
9. `match in on r0 proto tcp to port 22 scrub (reassemble tcp)`: a TCP
   echo exchange from A works; sniffed in A and B, every timestamp A sent
   arrives in B moved by one nonzero offset (pf_normalize_tcp_stateful's
   modulation), B's echoes of them arrive in A as A sent them, and B's
   checksums sum right.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import SCAPY_IMPORT, Topo, check, log, main, wait_until  # noqa: E402
from lib_pf import A_IP, B_IP, PfLab  # noqa: E402

RULES = """\
match in on r0 proto udp to port 7001 scrub (no-df)
match in on r0 proto udp to port 7002 scrub (min-ttl 100)
match in on r0 proto tcp to port 7003 scrub (max-mss 1000)
match in on r0 proto udp to port 7004 scrub (random-id)
match in on r0 proto udp to port 7005 set tos 0x10
pass
"""

# Sniffs in B until the SENT datagrams arrived (and 0.5 s more, for one
# that should not be there), at most argv[3] seconds: not for a fixed
# window from its start, which the sender's start-up (scapy: seconds on a
# loaded machine) could outlast.
SENT = 13
SNIFF = """\
import json, sys, time
""" + SCAPY_IMPORT + f"""\
conf.verb = 0
ready = sys.argv[1]
want = {SENT}
""" + """\
def ok_ip(p):
    q = IP(raw(p[IP])); c = q.chksum; del q.chksum
    return IP(raw(q)).chksum == c
def ok_l4(p):
    l4 = p[IP].payload
    q = IP(raw(p[IP])); c = q[IP].payload.chksum; del q[IP].payload.chksum
    return IP(raw(q))[IP].payload.chksum == c
def mss(p):
    if TCP not in p:
        return None
    return dict((k, v) for k, v in p[TCP].options if k == 'MSS').get('MSS')
got = []
s = AsyncSniffer(iface='b0', filter='dst host %s and (udp or tcp) and dst portrange 7001-7006' % sys.argv[2],
                 prn=got.append, store=False, started_callback=lambda: open(ready, 'w').close())
s.start()
deadline = time.monotonic() + float(sys.argv[3])
while len(got) < want and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.5)
s.stop()
print(json.dumps([{'dport': p[IP].payload.dport, 'df': bool(p[IP].flags.DF), 'ttl': p[IP].ttl, 'tos': p[IP].tos,
                   'id': p[IP].id, 'mss': mss(p), 'ip_ok': ok_ip(p), 'l4_ok': ok_l4(p)}
                  for p in got if IP in p]))
"""

SEND = f"""\
import time
send(IP(dst='{B_IP}', flags='DF', id=1111) / UDP(sport=40001, dport=7001) / b'no-df')
send(IP(dst='{B_IP}', ttl=5) / UDP(sport=40002, dport=7002) / b'min-ttl')
send(IP(dst='{B_IP}') / TCP(sport=40003, dport=7003, flags='S', seq=1000, options=[('MSS', 1460), ('NOP', None),
     ('WScale', 7)]))
for i in range(8):
    send(IP(dst='{B_IP}', id=1234) / UDP(sport=40004, dport=7004) / b'random-id')
    time.sleep(0.05)
send(IP(dst='{B_IP}', tos=0x01) / UDP(sport=40005, dport=7005) / b'tos')
send(IP(dst='{B_IP}', flags='DF', ttl=5, tos=0x01, id=4321) / UDP(sport=40006, dport=7006) / b'plain')
"""  # SENT datagrams


# What one end of the connection sends and receives on port 22: from
# when it says it listens (file argv[2]) until the test says the exchange
# is over (file argv[3]; then 0.5 s more for the segments in flight), at
# most argv[4] seconds.
TS_SNIFF = """\
import json, os, sys, time
""" + SCAPY_IMPORT + """\
conf.verb = 0
def ok_l4(p):
    q = IP(raw(p[IP])); c = q[TCP].chksum; del q[TCP].chksum
    return IP(raw(q))[TCP].chksum == c
def ts(p):
    return dict((k, v) for k, v in p[TCP].options if k == 'Timestamp').get('Timestamp')
got = []
s = AsyncSniffer(iface=sys.argv[1], filter='tcp port 22', prn=got.append, store=False,
                 started_callback=lambda: open(sys.argv[2], 'w').close())
s.start()
deadline = time.monotonic() + float(sys.argv[4])
while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.5)
s.stop()
print(json.dumps([{'src': p[IP].src, 'seq': p[TCP].seq, 'flags': str(p[TCP].flags), 'ts': ts(p), 'l4_ok': ok_l4(p)}
                  for p in got if TCP in p]))
"""


def check_modulated(a_seen, b_seen):
    """Timestamps A sent, as B saw them: one nonzero offset; what B echoes
    arrives in A as A's own values."""
    sent = {(p["seq"], p["flags"]): p["ts"] for p in a_seen if p["src"] == A_IP and p["ts"]}
    arrived = [(p, sent.get((p["seq"], p["flags"]))) for p in b_seen if p["src"] == A_IP and p["ts"]]
    pairs = [(b["ts"][0], a[0]) for b, a in arrived if a]
    check(len(pairs) >= 3, f"too few of A's timestamped segments matched in B: A {a_seen} B {b_seen}")
    offs = {(b - a) % 2**32 for b, a in pairs}
    check(len(offs) == 1 and 0 not in offs, f"A's timestamps not moved by one offset in B: {pairs}")
    for p in b_seen:
        check(p["l4_ok"], f"bad TCP checksum at B: {p}")
    a_vals = {v[0] for v in sent.values()}
    echoes = [p["ts"][1] for p in a_seen if p["src"] == B_IP and p["ts"] and p["ts"][1]]
    check(echoes and all(e in a_vals for e in echoes), f"B's echoes in A {echoes} are not A's values {a_vals}")
    return offs.pop(), len(pairs), len(echoes)


def run_test():
    with Topo("pfs") as t:
        t.step("topology A -- softnet -- B; match … scrub rules by port, then pass")
        lab = PfLab(t, rules=RULES)
        rules = lab.rules()
        log("  pfctl -sr:\n    " + rules.strip().replace("\n", "\n    "))
        for want in ("match in on r0 proto udp from any to any port = 7001 scrub (no-df)",
                     "match in on r0 proto tcp from any to any port = 7003 scrub (max-mss 1000)",
                     "match in on r0 proto udp from any to any port = 7005 set (tos 0x10)"):
            check(want in rules.splitlines(), f"-sr has no line {want!r}:\n{rules}")

        t.step("1-6. scapy in A sends, scapy in B sniffs what arrives")
        ready = os.path.join(t.tmp, "sniff.ready")
        out = open(os.path.join(t.tmp, "sniff.json"), "w+")
        sn = t.ns_spawn(lab.net.b, ["python3", "-c", SNIFF, ready, B_IP, "60"], stdout=out)
        wait_until("the sniffer in B", lambda: os.path.exists(ready), timeout=60)
        lab.scapy(SEND)
        sn.wait(timeout=90)
        out.seek(0)
        got = json.loads(out.read().strip().splitlines()[-1])
        by = {}
        for p in got:
            by.setdefault(p["dport"], []).append(p)
        log(f"  arrived: { {k: len(v) for k, v in sorted(by.items())} }")
        for p in got:
            check(p["ip_ok"] and p["l4_ok"], f"bad checksum at B: {p}")
        for port in range(7001, 7007):
            check(by.get(port), f"nothing arrived for port {port}: {got}")

        p = by[7001][0]
        check(not p["df"], f"no-df: DF still set: {p}")
        log(f"  1. no-df: {p}")
        p = by[7002][0]
        check(p["ttl"] == 99, f"min-ttl 100: TTL {p['ttl']}, want 99 (100 less the router's hop): {p}")
        log(f"  2. min-ttl: {p}")
        p = by[7003][0]
        check(p["mss"] == 1000, f"max-mss 1000: MSS {p['mss']}: {p}")
        log(f"  3. max-mss: {p}")
        ids = [p["id"] for p in by[7004]]
        check(len(ids) == 8 and 1234 not in ids and len(set(ids)) >= 7, f"random-id: ids {ids}")
        log(f"  4. random-id: {ids}")
        p = by[7005][0]
        check(p["tos"] == 0x11, f"set tos 0x10: TOS {p['tos']:#x}, want 0x11 (ECN kept): {p}")
        log(f"  5. set tos: {p}")
        p = by[7006][0]
        check(p["df"] and p["tos"] == 0x01 and p["id"] == 4321 and p["ttl"] == 4, f"unscrubbed port changed: {p}")
        log(f"  6. untouched: {p}")

        t.step("7. set reassemble yes no-df takes DF fragments")
        echo = ("import threading\nup = threading.Event()\n"
                "icmp = raw(ICMP(type=8, id=0x5157, seq=1) / Raw(b'Q' * 24))\n"
                "frags = [IP(dst='" + B_IP + "', id=0x5157, proto=1, frag=a // 8, flags=(1 if b < 32 else 0) | 2)"
                " / Raw(icmp[a:b]) for a, b in [(0, 16), (16, 32)]]\n"
                "s = AsyncSniffer(lfilter=lambda p: ICMP in p and p[ICMP].type == 0 and p[ICMP].id == 0x5157,"
                " count=1, started_callback=up.set)\n"
                "s.start(); up.wait(30); send(frags); s.join(timeout=4)\n"
                "if s.running:\n"
                "    s.stop()\n"
                "print(json.dumps(len(s.results or [])))\n")
        check(lab.scapy(echo) == 0, "DF fragments answered without set reassemble no-df")
        nodf = os.path.join(t.tmp, "nodf.conf")
        lab.write_rules("set reassemble yes no-df\n" + RULES, nodf)
        lab.pfctl("-f", nodf)
        check(lab.scapy(echo) == 1, "DF fragments not answered with set reassemble yes no-df")
        log("  DF fragments: dropped, then reassembled under no-df")

        t.step("8. set reassemble no: fragments meet the rules alone; a fragment rule blocks them")
        nore = os.path.join(t.tmp, "nore.conf")
        lab.write_rules("set reassemble no\npass\nblock in on r0 proto icmp fragment\n", nore)
        lab.pfctl("-f", nore)
        lab.ping("-c 2 -i 0.3 -W 2")
        si0 = lab.info()
        p = t.ns_run(lab.net.a, f"ping -n -c 2 -i 0.3 -W 2 -s 4000 {B_IP}", check_rc=False, timeout=30)
        check(p.returncode != 0 and " 0 received" in p.stdout, f"ping -s 4000 answered:\n{p.stdout}")
        si = lab.info()
        # Three fragments per request.
        check(si["fragment"] >= si0["fragment"] + 6, f"-si fragment {si0['fragment']} -> {si['fragment']}, want +6")
        log(f"  -si fragment {si0['fragment']} -> {si['fragment']}")

        t.step("9. scrub (reassemble tcp): a TCP echo works, its timestamps modulated between A and B")
        tcpn = os.path.join(t.tmp, "tcpnorm.conf")
        lab.write_rules("match in on r0 proto tcp to port 22 scrub (reassemble tcp)\n" + RULES, tcpn)
        lab.pfctl("-f", tcpn)
        check("match in on r0 proto tcp from any to any port = 22 scrub (reassemble tcp)" in lab.rules().splitlines(),
              f"-sr:\n{lab.rules()}")
        seen = {}
        procs = []
        done = os.path.join(t.tmp, "ts.done")
        for side, ns, ifname in (("a", lab.net.a, "a0"), ("b", lab.net.b, "b0")):
            ready = os.path.join(t.tmp, f"ts-{side}.ready")
            out = open(os.path.join(t.tmp, f"ts-{side}.json"), "w+")
            procs.append((side, out, t.ns_spawn(ns, ["python3", "-c", TS_SNIFF, ifname, ready, done, "90"],
                                                stdout=out)))
        for side, _, _ in procs:
            wait_until(f"the sniffer in {side}", lambda: os.path.exists(os.path.join(t.tmp, f"ts-{side}.ready")),
                       timeout=60)
        lab.expect_tcp(22, "ok", "reassemble tcp")
        open(done, "w").close()
        for side, out, p in procs:
            p.wait(timeout=30)
            out.seek(0)
            seen[side] = json.loads(out.read().strip().splitlines()[-1])
        off, n, m = check_modulated(seen["a"], seen["b"])
        log(f"  {n} of A's timestamps arrived moved by {off:#x}; {m} echoes from B restored in A")


if __name__ == "__main__":
    main(run_test)
