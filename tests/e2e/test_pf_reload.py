"""pf ruleset reloads under load keep states; flushing states ends
connections that no rule may pick up mid-stream.

    A 10.0.1.2 -- r0 [softnet + pf] r1 -- B 10.0.2.2 (echo servers, iperf3 -s)

1. iperf3 A -> B (7 s) and a long-lived TCP echo exchange on port 22 run
   while the ruleset changes twice: `pfctl -f` with a compatible ruleset
   (one more pass rule: TCP 8080, blocked before, passes after), then the
   config's pf.conf is rewritten (also UDP 9998) and the daemon gets SIGHUP.
   iperf3 completes with its bytes and still moves data in its last
   second, the echo exchange never misses, -sr shows each new ruleset and
   -ss keeps the iperf3 and ssh states.
2. `pfctl -Fs` with a ruleset whose TCP pass rules are `flags any`: the
   next mid-stream packet creates a new state and the exchange goes on.
3. Back to the default ruleset (`pass ... flags S/SA keep state` only):
   `pfctl -Fs` ends the established connection (a mid-stream ACK matches
   no pass rule: the exchange times out and pflog shows the blocked
   segment), while a new connection (SYN) still works.
"""

import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, wait_until  # noqa: E402
from lib_pf import A_IP, B_IP, DEFAULT_DENY, IPERF_PORT, PfLab  # noqa: E402

PLUS_8080 = DEFAULT_DENY.replace('tcp_in = "{ ssh 5201 }"', 'tcp_in = "{ ssh 5201 8080 }"')
PLUS_UDP = PLUS_8080 + "pass in on $a_if proto udp to port 9998\n"
# Mid-stream pickup allowed: TCP pass rules match any flags.
FLAGS_ANY = DEFAULT_DENY.replace("pass out\n", "pass out flags any\n").replace(
    "pass in on $a_if proto tcp to port $tcp_in\n", "pass in on $a_if proto tcp to port $tcp_in flags any\n")


def iperf_states(lab):
    return lab.states_matching(rf"{B_IP}:{IPERF_PORT}\b.*ESTABLISHED:ESTABLISHED|"
                               rf"{A_IP}:\d+ -> {B_IP}:{IPERF_PORT}\s+ESTABLISHED:ESTABLISHED")


def run_test():
    with Topo("pfl") as t:
        t.step("topology A -- softnet -- B; default-deny pf.conf from the config; iperf3 -s and echo servers in B")
        lab = PfLab(t, iperf=True)
        check(lab.expect_tcp(8080, "timeout", "8080 before reload"), "")

        # ---- 1. reloads under load ---------------------------------------------
        # 10 s: the reloads and their checks below must fall inside the
        # transfer; they took 4 s of the 7 it had at load 15.
        t.step("1. held ssh exchange + iperf3 A -> B for 10 s")
        h = lab.hold(22, secs=150, gap=0.2, tmo=3.0)
        h.wait_more(3)
        ip_out = os.path.join(t.tmp, "iperf3.json")
        ipf = open(ip_out, "w")
        iperf = t.ns_spawn(lab.net.a, f"iperf3 -c {B_IP} -p {IPERF_PORT} -t 10 -b 300M -J --connect-timeout 5000",
                           stdout=ipf)
        n_iperf = wait_until("iperf3's states (control and data connections)",
                             lambda: len(iperf_states(lab)) >= 4 and len(iperf_states(lab)), timeout=10)
        log(f"  {n_iperf} iperf3 states ESTABLISHED:ESTABLISHED")
        time.sleep(1.0)

        t.step("1. pfctl -f: a compatible ruleset with TCP 8080 added")
        rules0 = lab.rules()
        f1 = lab.file("pf-8080.conf", PLUS_8080)
        p = lab.pfctl("-f", f1)
        check(p.returncode == 0, f"pfctl -f: {p.stderr}")
        rules1 = lab.rules()
        check("pass in on r0 proto tcp from any to any port = 8080 flags S/SA" in rules1.splitlines() and rules1 != rules0,
              f"-sr after pfctl -f:\n{rules1}")
        check(len(iperf_states(lab)) >= 4, f"iperf3 states gone after pfctl -f: {lab.states()}")
        h.wait_more(3)
        time.sleep(1.0)

        t.step("1. pf.conf rewritten (UDP 9998 too) and SIGHUP")
        lab.write_rules(PLUS_UDP)
        nlog = len(lab.d.log_lines())
        lab.d.signal(signal.SIGHUP)
        lab.d.wait_log(r"reload: pf: .* loaded", start=nlog, timeout=10)
        rules2 = lab.rules()
        check("pass in on r0 proto udp from any to any port = 9998" in rules2.splitlines(), f"-sr after SIGHUP:\n{rules2}")
        check(lab.info()["status"] == "Enabled", "pf not enabled after SIGHUP")
        check(len(iperf_states(lab)) >= 4, f"iperf3 states gone after SIGHUP: {lab.states()}")
        h.wait_more(3)

        t.step("1. iperf3 completes with its bytes; the held exchange never missed")
        try:
            iperf.wait(timeout=40)
        except Exception:
            raise AssertionError(f"iperf3 did not finish within 40 s; states: {lab.states()}")
        ipf.close()
        with open(ip_out) as f:
            text = f.read()
        check(iperf.returncode == 0, f"iperf3 exit {iperf.returncode}:\n{text[-2000:]}")
        res = json.loads(text)
        check("error" not in res, f"iperf3 error: {res.get('error')}")
        recv = res["end"]["sum_received"]["bytes"]
        secs = res["end"]["sum_received"]["seconds"]
        ivals = [iv["sum"]["bytes"] for iv in res["intervals"]]
        log(f"  iperf3: {recv} bytes received in {secs:.1f} s ({recv * 8 / max(secs, 0.1) / 1e6:.0f} Mbit/s); "
            f"per interval MB: {[round(b / 1e6, 1) for b in ivals]}")
        check(recv > 5_000_000, f"iperf3 received only {recv} bytes")
        check(ivals and ivals[-1] > 0, f"iperf3 moved nothing in its last interval: {ivals}")
        h.wait_more(3)
        check(not h.failed(), f"held exchange failed: {h.events()[-3:]}")
        log(f"  held exchange: {h.count()} echoes, none missed")

        t.step("1. the new rules are in force: TCP 8080 and UDP 9998 pass now")
        lab.expect_tcp(8080, "ok", "8080 after reload")
        r = None
        for _ in range(3):
            r = lab.udp(9998, tmo=3.0)
            if r["result"] == "echo":
                break
        check(r["result"] == "echo", f"UDP 9998 after reload: {r}")

        # ---- 2. -Fs with flags any: picked up mid-stream ---------------------------
        t.step("2. ruleset with `flags any`; pfctl -Fs: the exchange goes on (new state from a mid-stream packet)")
        lab.pfctl("-f", lab.file("pf-any.conf", FLAGS_ANY))
        check("pass in on r0 proto tcp from any to any port = 22 flags any" in lab.rules().splitlines(), lab.rules())
        p = lab.pfctl("-Fs")
        m = re.search(r"(\d+) states cleared", p.stderr)
        check(m and int(m.group(1)) >= 2, f"pfctl -Fs said: {p.stdout!r} {p.stderr!r}")
        log(f"  -Fs: {p.stderr.strip()}")
        h.wait_more(5, timeout=20)
        lp = h.lport
        st = wait_until("a state picked up mid-stream for the held connection",
                        lambda: lab.states_matching(rf"{A_IP}:{lp}\b"), timeout=5)
        log(f"  {st}")

        # ---- 3. -Fs with S/SA rules only: the connection dies ----------------------
        t.step("3. back to the default ruleset (flags S/SA only); pfctl -Fs ends the connection")
        lab.pfctl("-f", lab.conf)
        h.wait_more(3)
        npf = len(lab.pflog_lines())
        p = lab.pfctl("-Fs")
        log(f"  -Fs: {p.stderr.strip()}")
        why = h.wait_fail(timeout=20)
        check(why == "timeout", f"held exchange ended with {why!r}, want a timeout")
        log(f"  held exchange failed ({why}) after {h.count()} echoes")
        lines = lab.wait_pflog(rf"block in on r0: {re.escape(A_IP)}\.{lp} > {re.escape(B_IP)}\.22: Flags \[[^S\]]*\]")
        check(len(lab.pflog_lines()) > npf, "nothing new in pflog")
        log(f"  pflog: {lines[0]}")
        check(not lab.states_matching(rf"{A_IP}:{lp}\b"), f"a state for the dead connection: {lab.states()}")
        t.step("3. a new connection to port 22 still works")
        lab.expect_tcp(22, "ok", "ssh after -Fs")
        check(lab.d.alive(), "daemon died")


if __name__ == "__main__":
    main(run_test)
