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
7. `scrub (reassemble tcp)` is refused at load with the ruleset kept;
   `set reassemble yes no-df` loads, and fragments with DF then pass
   (reassembled, DF cleared): B answers a fragmented echo request.
8. `set reassemble no` with `block in proto icmp fragment`: a ping that
   fits one frame is answered, `ping -s 4000` (fragments) is not and
   counts as `fragment`.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, wait_until  # noqa: E402
from lib_pf import B_IP, PfLab  # noqa: E402

RULES = """\
match in on r0 proto udp to port 7001 scrub (no-df)
match in on r0 proto udp to port 7002 scrub (min-ttl 100)
match in on r0 proto tcp to port 7003 scrub (max-mss 1000)
match in on r0 proto udp to port 7004 scrub (random-id)
match in on r0 proto udp to port 7005 set tos 0x10
pass
"""

SNIFF = """\
import json, sys
from scapy.all import *
conf.verb = 0
ready = sys.argv[1]
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
got = sniff(iface='b0', filter='dst host %s and (udp or tcp) and dst portrange 7001-7006' % sys.argv[2],
            timeout=float(sys.argv[3]), started_callback=lambda: open(ready, 'w').close())
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
"""


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
        sn = t.ns_spawn(lab.net.b, ["python3", "-c", SNIFF, ready, B_IP, "12"], stdout=out)
        wait_until("the sniffer in B", lambda: os.path.exists(ready), timeout=20)
        lab.scapy(SEND)
        sn.wait(timeout=30)
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

        t.step("7. scrub (reassemble tcp) refused, the ruleset kept; set reassemble yes no-df takes DF fragments")
        bad = os.path.join(t.tmp, "bad.conf")
        lab.write_rules("pass all scrub (reassemble tcp)\n", bad)
        r = lab.pfctl("-f", bad, check_rc=False)
        check(r.returncode != 0 and "scrub (reassemble tcp) not supported yet" in r.stderr,
              f"pfctl -f: rc {r.returncode}: {r.stderr}")
        check(lab.rules() == rules, f"the ruleset changed:\n{lab.rules()}")
        echo = ("import time\n"
                "icmp = raw(ICMP(type=8, id=0x5157, seq=1) / Raw(b'Q' * 24))\n"
                "frags = [IP(dst='" + B_IP + "', id=0x5157, proto=1, frag=a // 8, flags=(1 if b < 32 else 0) | 2)"
                " / Raw(icmp[a:b]) for a, b in [(0, 16), (16, 32)]]\n"
                "s = AsyncSniffer(lfilter=lambda p: ICMP in p and p[ICMP].type == 0 and p[ICMP].id == 0x5157,"
                " count=1)\n"
                "s.start(); time.sleep(0.5); send(frags); s.join(timeout=4)\n"
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


if __name__ == "__main__":
    main(run_test)
