"""pf source tracking with Linux peers.

    A 10.0.1.2 (and A2 10.0.1.3, a second address of A's) -- r0 [softnet + pf] r1 -- B 10.0.2.2

1. `max-src-states 3` on ssh: three held connections from A pass, A's
   fourth SYN is dropped (-si src-limit +1, -si -v max-src-states +1),
   while A2 still connects; `pfctl -sS` prints both nodes as pfctl's
   print_src_node does (states, connections, rate), `-sS -v` their age.
2. `pfctl -K 10.0.1.2`: "killed 1 src nodes from 1 sources and 0
   destinations"; the node is gone from -sS, A's held connections go on
   (their states live without it), and A connects again.
3. `max-src-conn-rate 5/30, overload <bad> flush` on port 80: A holds one
   connection to B:80, A2 another; A then opens connections as fast as it
   can: past the rate its state is killed, A lands in <bad> (-T show), its
   held connection to port 80 ends (flush: the rule's states from A), A2's
   goes on, A's ssh connections (another rule) go on, and a new
   connection from A is blocked by `block in quick from <bad>`; -si -v
   counts max-src-conn-rate, overload table insertion and flush. (The
   states `pass out` made on r1 for A's connections are another rule's:
   `flush` without `global` leaves them, as pf does.)
4. Bad input: a ruleset with `overload` but neither max-src-conn nor
   max-src-conn-rate is refused with pfctl's message, the running one
   stays (-sr unchanged).
5. `pfctl -F Sources` clears every node; with `set limit src-nodes 1`, A's
   connection takes the one node and A2's SYN is dropped (-si src-limit).
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, wait_until  # noqa: E402
from lib_pf import A_IP, PfLab  # noqa: E402

A2_IP = "10.0.1.3"

RULES = """\
a_if = "r0"
table <bad> persist
set timeout src.track 60
block log all
pass out
block in quick on $a_if from <bad>
pass in on $a_if proto tcp to port ssh keep state (max-src-states 3)
pass in on $a_if proto tcp to port 80 keep state (max-src-conn-rate 5/30, overload <bad> flush)
pass proto icmp
"""

BAD = """\
block all
pass in proto tcp to port 80 keep state (max-src-states 10, overload <bad> flush)
"""


def node_lines(lab, verbose=False):
    return [l for l in lab.pfctl("-sS", *(["-v"] if verbose else [])).stdout.splitlines() if l.strip()]


def limit_counter(lab, name):
    text = lab.pfctl("-si", "-v").stdout
    m = re.search(rf"^  {re.escape(name)}\s+(\d+)", text, re.M)
    check(m, f"-si -v has no {name!r}:\n{text}")
    return int(m.group(1))


def run_test():
    with Topo("pfst") as t:
        t.step("topology A (+ A2) -- softnet -- B; source-tracking pf.conf from the config")
        lab = PfLab(t, rules=RULES)
        t.ns_run(lab.net.a, f"ip addr add {A2_IP}/24 dev a0")
        rules = lab.rules()
        log("  pfctl -sr:\n    " + rules.strip().replace("\n", "\n    "))
        check("keep state (source-track global, max-src-states 3)" in rules, f"-sr:\n{rules}")
        check("keep state (source-track rule, max-src-conn-rate 5/30, overload <bad> flush, src.track 30)" in rules,
              f"-sr:\n{rules}")

        # ---- 1. max-src-states ------------------------------------------------
        t.step("1. max-src-states 3: three connections from A pass, the fourth is dropped (src-limit); A2 connects")
        holds = [lab.hold(22, secs=300, gap=0.5) for _ in range(3)]
        si0 = lab.info()
        r = lab.connect(22, tmo=2.0)
        check(r["result"] == "timeout", f"A's fourth ssh connection: {r}, want timeout")
        si = lab.info()
        check(si["src-limit"] > si0["src-limit"], f"-si src-limit {si0['src-limit']} -> {si['src-limit']}")
        check(limit_counter(lab, "max-src-states") >= 1, "-si -v max-src-states not counted")
        a2 = lab.hold(22, secs=300, gap=0.5, src=A2_IP)
        nodes = node_lines(lab)
        log("  pfctl -sS:\n    " + "\n    ".join(nodes))
        check(f"{A_IP} ( states 3, connections 3, rate 1.0/0s )" in nodes, f"-sS:\n{nodes}")
        check(f"{A2_IP} ( states 1, connections 1, rate 1.0/0s )" in nodes, f"-sS:\n{nodes}")
        v = node_lines(lab, verbose=True)
        check(any(re.match(r"   age \d\d:\d\d:\d\d, \d+ pkts, \d+ bytes$", l) for l in v), f"-sS -v:\n{v}")

        # ---- 2. -K ------------------------------------------------------------
        t.step("2. pfctl -K A: the node goes, A's connections go on, A connects again")
        p = lab.pfctl("-K", A_IP)
        check("killed 1 src nodes from 1 sources and 0 destinations" in p.stderr + p.stdout,
              f"-K: {p.stdout!r} {p.stderr!r}")
        check(not any(l.startswith(A_IP + " ") for l in node_lines(lab)), f"-sS after -K:\n{node_lines(lab)}")
        for h in holds:
            h.wait_more(2)
        lab.expect_tcp(22, "ok", "A's ssh after -K")

        # ---- 3. max-src-conn-rate with overload flush ---------------------------
        t.step("3. max-src-conn-rate 5/30, overload <bad> flush: A floods port 80 and lands in <bad>")
        a80 = lab.hold(80, secs=300, gap=0.5)
        a2_80 = lab.hold(80, secs=300, gap=0.5, src=A2_IP)
        a80.wait_more(2)
        results = [lab.connect(80, tmo=1.0)["result"] for _ in range(8)]
        log(f"  A's connections to port 80: {results}")
        wait_until("A in <bad>", lambda: A_IP in lab.pfctl("-t", "bad", "-T", "show").stdout, timeout=5)
        a80.wait_fail()
        a2_80.wait_more(3)
        a2.wait_more(2)
        holds[0].wait_more(2)
        r = lab.connect(80, tmo=2.0)
        check(r["result"] == "timeout", f"A's connection after the overload: {r}, want timeout")
        r = lab.connect(22, tmo=2.0, src=A2_IP)
        check(r["result"] == "ok", f"A2's new connection: {r}, want ok")
        for c in ("max-src-conn-rate", "overload table insertion", "overload flush states"):
            n = limit_counter(lab, c)
            check(n >= 1, f"-si -v {c} {n}, want >= 1")
        log("  " + ", ".join(f"{c} {limit_counter(lab, c)}" for c in (
            "max-src-conn-rate", "overload table insertion", "overload flush states")))
        # The rule's (inbound, on r0) states from A are gone; the outbound
        # ones `pass out` made on r1 are another rule's, which `flush`
        # without `global` leaves, as pf does.
        check(not lab.states_matching(rf"10\.0\.2\.2:80 <- {re.escape(A_IP)}:"),
              f"A's inbound port 80 states after the flush: {lab.states()}")
        check(lab.states_matching(rf"10\.0\.2\.2:80 <- {re.escape(A2_IP)}:"), f"A2's port 80 state: {lab.states()}")

        # ---- 4. bad input -------------------------------------------------------
        t.step("4. overload without max-src-conn(-rate): refused with pfctl's message, the running ruleset stays")
        before = lab.rules()
        path = lab.file("bad.conf", BAD)
        p = lab.pfctl("-f", path, check_rc=False)
        check(p.returncode != 0, "the bad ruleset loaded")
        check("'overload' requires 'max-src-conn' or 'max-src-conn-rate'" in p.stderr + p.stdout,
              f"pfctl -f: {p.stdout!r} {p.stderr!r}")
        check(lab.rules() == before, "the running ruleset changed")
        a2_80.wait_more(2)

        # ---- 5. set limit src-nodes -------------------------------------------
        t.step("5. -F Sources clears the nodes; with set limit src-nodes 1 a second source is refused (src-limit)")
        for h in holds + [a2, a2_80]:
            h.stop()
        p = lab.pfctl("-F", "Sources")
        check("source tracking entries cleared" in p.stderr + p.stdout, f"-F Sources: {p.stdout!r} {p.stderr!r}")
        check(node_lines(lab) == [], f"-sS after -F Sources:\n{node_lines(lab)}")
        lab.pfctl("-t", "bad", "-T", "flush")
        lab.write_rules("set limit src-nodes 1\n" + RULES)
        lab.pfctl("-f", lab.conf)
        lab.expect_tcp(22, "ok", "A's ssh, the one node")
        si0 = lab.info()
        r = lab.connect(22, tmo=2.0, src=A2_IP)
        check(r["result"] == "timeout", f"A2's connection past the src-nodes limit: {r}, want timeout")
        si = lab.info()
        check(si["src-limit"] > si0["src-limit"], f"-si src-limit {si0['src-limit']} -> {si['src-limit']}")
        nodes = node_lines(lab)
        check(len(nodes) == 1 and nodes[0].startswith(A_IP + " "), f"-sS: {nodes}")
        check(lab.d.alive(), "daemon died")


if __name__ == "__main__":
    main(run_test)
