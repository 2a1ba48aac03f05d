"""`synproxy state` on a running router (pf.c's pf_synproxy).

    A 10.0.1.2 -- r0 [softnet + pf] r1 -- B 10.0.2.2 (an HTTP server on 8000)

The ruleset is default deny with `pass in on r0 proto tcp to port 8000
synproxy state`.

1. curl from A fetches a 20 MB file from B's HTTP server through the proxy
   (SHA-256 compared); B's kernel saw the connection from A; pf counted
   `synproxy` segments (-si); the state's line in -ss is no longer a
   proxy state.
2. A client that never completes the handshake: scapy in A sends a SYN to
   B:8000 from port 41234 and never answers (A's kernel resets pf's
   SYN|ACK; pf drops the RST). A gets pf's SYN|ACK (from B's address,
   acking the SYN, with the SYN's MSS); -ss shows one state, PROXY:SRC;
   a capture on B's interface shows nothing from port 41234, and B's
   kernel has no connection from it.
3. A flood of 200 SYNs from scapy: none reaches B, pf holds 200 half-open
   states, and a real client still gets through.
"""

import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main  # noqa: E402
from lib_pf import A_IP, B_IP, PfLab  # noqa: E402

HTTP_PORT = 8000
SIZE = 20 << 20

RULES = f"""\
a_if = "r0"
block log all
pass out
pass proto icmp
pass in on $a_if proto tcp to port ssh
pass in on $a_if proto tcp to port {HTTP_PORT} synproxy state
"""


def big_file(t):
    path = os.path.join(t.tmp, "blob.bin")
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(SIZE >> 20):
            b = os.urandom(1 << 20)
            h.update(b)
            f.write(b)
    return h.hexdigest()


def captured(t, ns, pcap):
    p = t.ns_run(ns, f"tcpdump -n -r {pcap}", check_rc=False)
    return [l for l in p.stdout.splitlines() if l.strip()]


def run_test():
    with Topo("pfsp") as t:
        t.step("topology A -- softnet -- B; pass in ... port 8000 synproxy state")
        lab = PfLab(t, rules=RULES)
        digest = big_file(t)
        t.ns_spawn(lab.net.b, ["python3", "-m", "http.server", str(HTTP_PORT), "--bind", B_IP, "--directory", t.tmp])
        t.wait_listen(lab.net.b, HTTP_PORT)
        sr = lab.rules()
        want = f"pass in on r0 proto tcp from any to any port = {HTTP_PORT} flags S/SA synproxy state"
        check(want in sr.splitlines(), f"-sr:\n{sr}")

        # ---- 1. ---------------------------------------------------------------------
        t.step("1. curl through the proxy: 20 MB, SHA-256 compared")
        before = lab.info().get("synproxy", 0)
        t0 = time.monotonic()
        p = t.ns_run(lab.net.a, ["sh", "-c", f"curl -sS --max-time 60 http://{B_IP}:{HTTP_PORT}/blob.bin | sha256sum"],
                     timeout=70, check_rc=False)
        got = p.stdout.split()[0] if p.stdout.split() else ""
        check(got == digest, f"curl through synproxy: sha256 {got!r}, want {digest} ({p.stderr[-300:]})")
        log(f"  20 MB in {time.monotonic() - t0:.1f} s, sha256 {digest[:16]}…")
        after = lab.info().get("synproxy", 0)
        # The SYN, the client's ACK, the server's SYN|ACK: three at least.
        check(after - before >= 3, f"synproxy counter {before} -> {after}")
        st = lab.states_matching(rf"{B_IP}:{HTTP_PORT} <- {A_IP}:")
        check(st and all("PROXY" not in s for s in st), f"-ss after the transfer: {st}")
        log(f"  -ss: {st}")

        # ---- 2. ---------------------------------------------------------------------
        t.step("2. a SYN never followed by an ACK: pf answers, B never sees it")
        pcap = os.path.join(t.tmp, "b0.pcap")
        dump = t.capture(lab.net.b, "b0", pcap, "tcp port 41234")
        ans = lab.scapy(f"""
# (A's kernel resets pf's SYN|ACK, which it did not ask for: pf drops
# the RST as not the ACK it waits for, and the state stays half open.)
r = sr1(IP(dst="{B_IP}")/TCP(sport=41234, dport={HTTP_PORT}, flags="S", seq=5000,
        options=[("MSS", 1400)]), timeout=4)
out = None
if r is not None and TCP in r:
    out = [r[IP].src, r[TCP].sport, str(r[TCP].flags), r[TCP].ack, dict(r[TCP].options).get("MSS")]
print(json.dumps(out))
""")
        check(ans is not None and ans[0] == B_IP and ans[1] == HTTP_PORT and ans[2] == "SA" and ans[3] == 5001
              and ans[4] == 1400, f"pf's SYN|ACK: {ans}")
        st = lab.states_matching(r":41234")
        check(len(st) == 1 and st[0].rstrip().endswith("PROXY:SRC"), f"-ss for port 41234: {st}")
        time.sleep(2.0)
        dump.terminate()
        dump.wait(timeout=10)
        seen = captured(t, lab.net.b, pcap)
        check(seen == [], f"B saw the half-open client: {seen}")
        conns = t.ns_run(lab.net.b, "ss -Htan", check_rc=False).stdout
        check(":41234" not in conns, f"B's sockets: {conns}")

        # ---- 3. ---------------------------------------------------------------------
        t.step("3. 200 SYNs from random ports: none reaches B")
        pcap2 = os.path.join(t.tmp, "b0-flood.pcap")
        dump = t.capture(lab.net.b, "b0", pcap2, f"'tcp dst port {HTTP_PORT} and tcp[tcpflags] & tcp-syn != 0'")
        lab.scapy(f"""
send([IP(dst="{B_IP}")/TCP(sport=20000 + i, dport={HTTP_PORT}, flags="S", seq=i) for i in range(200)])
print(json.dumps(1))
""")
        time.sleep(2.0)
        dump.terminate()
        dump.wait(timeout=10)
        seen = captured(t, lab.net.b, pcap2)
        check(seen == [], f"SYNs reached B: {seen[:5]}")
        proxied = lab.states_matching("PROXY:SRC")
        check(len(proxied) >= 200, f"{len(proxied)} PROXY:SRC states after the flood")
        log(f"  {len(proxied)} half-open states held by pf, none at B")
        # The server still works for a real client.
        lab.expect_tcp(22, "ok", "ssh after the flood")
        p = t.ns_run(lab.net.a, ["sh", "-c", f"curl -sS --max-time 20 http://{B_IP}:{HTTP_PORT}/ | head -c 100"],
                     timeout=30, check_rc=False)
        check("Directory listing" in p.stdout or "<!DOCTYPE" in p.stdout, f"curl after the flood: {p.stdout!r}")


if __name__ == "__main__":
    main(run_test)
