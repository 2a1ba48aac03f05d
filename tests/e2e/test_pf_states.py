"""pf state details seen from the hosts: ICMP errors riding on states,
state limits, block-policy return, a bad pf.conf on SIGHUP, rule flushes.

    A 10.0.1.2 -- r0 [softnet + pf] r1 -- B 10.0.2.2 (echo servers)

1. No rule passes ICMP: a UDP flow A -> B:7777 (nobody listens; allowed,
   keep state) gets B's port unreachable back through the state (ECONNREFUSED
   in A), while an unsolicited ping B -> A is blocked and logged.
2. `keep state (max 2)` on ssh: two held connections, the third SYN is
   dropped and counted as -si state-limit; `set limit states 4` (whole
   table): the third connection is dropped and counted as memory (as
   OpenBSD: the state pool's hard limit); after -Fs connections work again.
3. `set block-policy return` with `block log all`: TCP gets a reset, UDP a
   port unreachable (ECONNREFUSED at once for both).
4. SIGHUP with a syntax error in pf.conf keeps the running ruleset (-sr
   unchanged, the daemon logs FILE:LINE); `pfctl -F rules` leaves an empty
   ruleset (everything passes: pf's default is pass), `pfctl -f` restores it.
5. pf out filters what the router sends itself (OpenBSD's ip_output runs
   pf_test(PF_OUT)): with `block out log on r0` and a stateless pass in, A's
   ping to the router gets no echo reply and pflog shows the reply blocked
   out on r0; with a stateful pass in the reply goes out through the state.
6. `match in on r0 log (all)` before an unlogged `pass in on r0` for ssh:
   every packet of the connection's state on r0, both ways, is in pflog
   under the match rule's number with its action (as pf_test logs a
   state's packets for each `log (all)` rule in its match_rules), none
   under the pass rule; the state r1's `pass out` made logs nothing.
"""

import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, wait_until  # noqa: E402
from lib_pf import A_IP, B_IP, R_A, PfLab  # noqa: E402

NO_ICMP = """\
a_if = "r0"
block log all
pass out
pass in on $a_if proto tcp to port ssh
pass in on $a_if proto udp to port 7777
"""

MAX2 = """\
a_if = "r0"
block log all
pass out
pass in on $a_if proto tcp to port ssh keep state (max 2)
pass proto icmp
"""

LIMIT4 = """\
set limit states 4
a_if = "r0"
block log all
pass out
pass in on $a_if proto tcp to port ssh
"""

OWN_OUT_NO_STATE = """\
pass in all no state
block out log on r0 all
"""

OWN_OUT_STATE = """\
pass in all
block out log on r0 all
"""

MATCH_LOG_ALL = """\
a_if = "r0"
block all
pass out
match in log (all) on $a_if proto tcp to port ssh
pass in on $a_if proto tcp to port ssh
"""

RETURN = """\
set block-policy return
a_if = "r0"
block log all
pass out
pass in on $a_if proto tcp to port ssh
pass proto icmp
"""


def run_test():
    with Topo("pfstate") as t:
        t.step("topology A -- softnet -- B; a ruleset with no ICMP rule")
        lab = PfLab(t, rules=NO_ICMP)

        # ---- 1. ICMP errors through states -------------------------------------
        t.step("1. UDP A -> B:7777 (closed): B's port unreachable comes back through the UDP state")
        r = None
        for _ in range(3):
            r = lab.udp(7777, tmo=3.0)
            if r["result"] == "refused":
                break
        check(r["result"] == "refused", f"UDP to a closed port on B: {r}, want refused (ICMP error via the state)")
        st = lab.states_matching(rf"^all udp {B_IP}:7777 <- {A_IP}:\d+ ")
        check(st, f"no UDP state: {lab.states()}")
        log(f"  {r}; {st[0]}")
        t.step("1. unsolicited ping B -> A is blocked and logged")
        p = t.ns_run(lab.net.b, f"ping -n -c 2 -i 0.3 -W 1 {A_IP}", check_rc=False)
        check(p.returncode != 0 and "0 received" in p.stdout, f"ping B -> A passed:\n{p.stdout}")
        lab.wait_pflog(rf"block in on r1: {re.escape(B_IP)} > {re.escape(A_IP)}: ICMP echo request")
        check(not lab.states_matching(r"^all icmp "), f"an ICMP state: {lab.states()}")

        # ---- 2. limits --------------------------------------------------------------
        t.step("2. keep state (max 2): a third ssh connection is dropped (state-limit)")
        lab.pfctl("-f", lab.file("max2.conf", MAX2))
        base = lab.info()["state-limit"]
        holds = [lab.hold(22, secs=60), lab.hold(22, secs=60)]
        for h in holds:
            h.wait_more(2)
        lab.expect_tcp(22, "timeout", "third ssh with max 2")
        sl = lab.info()["state-limit"]
        check(sl > base, f"-si state-limit {base} -> {sl}")
        rule = lab.rule_v("pass in on r0 proto tcp from any to any port = 22 flags S/SA keep state (max 2)")
        check(rule["states"] == 2, f"max-2 rule holds {rule['states']} states")
        for h in holds:
            h.wait_more(2)
            h.stop()
        log(f"  state-limit {base} -> {sl}; rule {rule}")

        t.step("2. set limit states 4: the third connection (5th and 6th state) is dropped (memory)")
        lab.pfctl("-Fs")
        lab.pfctl("-f", lab.file("limit4.conf", LIMIT4))
        check(re.search(r"^states\s+hard limit\s+4$", lab.pfctl("-sm").stdout, re.M), lab.pfctl("-sm").stdout)
        base = lab.info()["memory"]
        holds = [lab.hold(22, secs=60), lab.hold(22, secs=60)]
        for h in holds:
            h.wait_more(2)
        lab.expect_tcp(22, "timeout", "third ssh with 4 states at most")
        si = lab.info()
        check(si["memory"] > base and si["current entries"] <= 4, f"-si after the limit: {si['text']}")
        for h in holds:
            h.stop()
        lab.pfctl("-Fs")
        lab.expect_tcp(22, "ok", "ssh after -Fs (room again)")

        # ---- 3. block-policy return ---------------------------------------------------
        t.step("3. set block-policy return: TCP reset and ICMP port unreachable for blocked traffic")
        lab.pfctl("-f", lab.file("return.conf", RETURN))
        check("block return log all" in lab.rules().splitlines(), lab.rules())
        r = lab.expect_tcp(80, "refused", "TCP 80 with block-policy return", tmo=5.0)
        check(r["secs"] < 1.5, f"refused after {r['secs']} s")
        r = None
        for _ in range(3):
            r = lab.udp(9998, tmo=3.0)
            if r["result"] == "refused":
                break
        check(r["result"] == "refused" and r["secs"] < 1.5, f"UDP 9998 with block-policy return: {r}")

        # ---- 4. SIGHUP with a bad pf.conf, -F rules -------------------------------------
        t.step("4. SIGHUP with a syntax error in pf.conf: the running ruleset stays")
        rules0 = lab.rules()
        lab.write_rules(RETURN + "pass in on $a_if prot tcp to port 8080\n")
        n = len(lab.d.log_lines())
        lab.d.signal(signal.SIGHUP)
        line = lab.d.wait_log(rf"{re.escape(lab.conf)}:7: ", start=n, timeout=10)
        log(f"  daemon: {line[0].split('Z', 1)[-1].strip()}")
        check(lab.rules() == rules0, f"-sr changed after a bad SIGHUP:\n{lab.rules()}")
        check(lab.d.alive(), "daemon died on SIGHUP with a bad pf.conf")
        lab.expect_tcp(80, "refused", "TCP 80 after the bad SIGHUP", tmo=5.0)
        lab.expect_tcp(22, "ok", "ssh after the bad SIGHUP")

        t.step("4. pfctl -F rules: empty ruleset, everything passes; pfctl -f restores")
        p = lab.pfctl("-F", "rules")
        check(re.search(r"rules cleared", p.stderr), f"-F rules: {p.stderr!r}")
        check(lab.rules().strip() == "", f"-sr after -F rules:\n{lab.rules()}")
        lab.expect_tcp(80, "ok", "TCP 80 with no rules")
        lab.pfctl("-f", lab.file("return2.conf", RETURN))
        lab.expect_tcp(80, "refused", "TCP 80 after -f", tmo=5.0)
        wait_until("the daemon alive", lab.d.alive, timeout=1)

        # ---- 5. the router's own packets through pf out ---------------------------------
        t.step("5. block out on r0, stateless pass in: the router's echo reply to A is blocked and logged")
        lab.pfctl("-Fs")
        lab.pfctl("-f", lab.file("own-out-nostate.conf", OWN_OUT_NO_STATE))
        p = t.ns_run(lab.net.a, f"ping -n -c 2 -i 0.3 -W 1 {R_A}", check_rc=False)
        check(p.returncode != 0 and "0 received" in p.stdout, f"the router's echo reply passed block out:\n{p.stdout}")
        lab.wait_pflog(rf"block out on r0: {re.escape(R_A)} > {re.escape(A_IP)}: ICMP echo reply")
        t.step("5. with a stateful pass in the echo reply goes out through the request's state")
        lab.pfctl("-f", lab.file("own-out-state.conf", OWN_OUT_STATE))
        out = lab.ping("-c 2 -i 0.3 -W 2", dst=R_A)
        log(f"  {out.strip().splitlines()[-2]}")

        # ---- 6. match log (all) ----------------------------------------------------------
        t.step("6. match in on r0 log (all): each packet of the ssh state on r0 logged under the match rule")
        lab.pfctl("-Fs")
        lab.pfctl("-f", lab.file("match-log-all.conf", MATCH_LOG_ALL))
        rules = lab.rules().splitlines()
        check(rules[2] == "match in log (all) on r0 proto tcp from any to any port = 22"
              and rules[3].startswith("pass in on r0 proto tcp"), f"-sr:\n{lab.rules()}")
        n0 = len(lab.pflog_lines())
        h = lab.hold(22, secs=60, gap=0.2)
        h.wait_more(5)
        lp = h.lport
        fwd, rev = f"{A_IP}.{lp} > {B_IP}.22:", f"{B_IP}.22 > {A_IP}.{lp}:"
        # Requests and their ACKs in on r0; the echoes out on r0, through the same state.
        wait_until("pflog records of the connection both ways", lambda: (
            len([l for l in lab.pflog_lines()[n0:] if fwd in l]) >= 6
            and len([l for l in lab.pflog_lines()[n0:] if rev in l]) >= 5), timeout=10, interval=0.3)
        h.stop()
        new = [l for l in lab.pflog_lines()[n0:] if fwd in l or rev in l]
        # Action PF_MATCH (12): tcpdump's table knows no "match" and prints unkn(12).
        bad = [l for l in new if not re.search(r" rule 2/0\(match\): (?:match|unkn\(12\)) (in|out) on r0: ", l)]
        check(not bad, "records not under the match rule (or not on r0):\n" + "\n".join(bad))
        ins = [l for l in new if fwd in l and " in on r0: " in l]
        outs = [l for l in new if rev in l and " out on r0: " in l]
        check(ins and outs, "pflog lacks one direction:\n" + "\n".join(new))
        log(f"  {len(new)} records, e.g.\n    {ins[0]}\n    {outs[0]}")


if __name__ == "__main__":
    main(run_test)
