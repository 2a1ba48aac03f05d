"""Interface groups: `softnet ifconfig IF group NAME` and pf rules on them.

    A 10.0.1.2 -- r0 [softnet + pf] r1 -- B 10.0.2.2 (echo servers)

The ruleset passes everything but TCP to port 22 coming in on the group
`lan`, which at first has no member:

1. TCP to B:22 and B:80 work; `ifconfig r0` shows no groups; `pfctl -sr`
   keeps the group's name in the rule, as pfctl.
2. `ifconfig r0 group lan`: ifconfig shows `groups: lan`; the running
   ruleset follows at once: a new connection to B:22 times out while B:80
   still works, and a connection to B:22 held open since step 1 goes on
   (the ruleset was compiled again, states kept).
3. `ifconfig r0 -group lan`: B:22 works again; a bad group name (ending
   in a digit) is refused with ifconfig's message and changes nothing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main  # noqa: E402
from lib_pf import PfLab  # noqa: E402

RULES = "pass all\nblock in quick on lan proto tcp to port 22\n"


def run_test():
    with Topo("pfg") as t:
        t.step("topology A -- softnet -- B; pf.conf with a rule on the empty group lan")
        lab = PfLab(t, rules=RULES)
        d = lab.d

        t.step("1. no member yet: TCP 22 and 80 pass; the rule keeps the group's name")
        lab.expect_tcp(22, "ok", "no member")
        lab.expect_tcp(80, "ok", "no member")
        check("groups:" not in d.out("ifconfig", "r0"), "r0 has groups already")
        rules = lab.rules()
        check("block drop in quick on lan proto tcp from any to any port = 22" in rules, f"-sr:\n{rules}")
        held = lab.hold(22)
        held.wait_more(3)

        t.step("2. ifconfig r0 group lan: r0 in the group, new TCP 22 blocked, the held one goes on")
        check(d.out("ifconfig", "r0", "group", "lan") == "", "ifconfig group printed something")
        ifc = d.out("ifconfig", "r0")
        check("\tgroups: lan\n" in ifc, f"ifconfig r0:\n{ifc}")
        lab.expect_tcp(22, "timeout", "r0 in lan")
        lab.expect_tcp(80, "ok", "r0 in lan")
        held.wait_more(3)
        check(not held.failed(), f"held ssh exchange failed: {held.events()[-3:]}")
        held.stop()
        log(f"  held ssh exchange: {held.count()} echoes, none missed")

        t.step("3. ifconfig r0 -group lan: TCP 22 passes again; a bad group name is refused")
        check(d.out("ifconfig", "r0", "-group", "lan") == "", "ifconfig -group printed something")
        check("groups:" not in d.out("ifconfig", "r0"), "r0 still in a group")
        lab.expect_tcp(22, "ok", "r0 out of lan")
        p = d.admin("ifconfig", "r0", "group", "lan0", check_rc=False)
        check(p.returncode == 1 and "group names may not end in a digit" in p.stderr, f"lan0: {p.stderr!r}")
        check("groups:" not in d.out("ifconfig", "r0"), "a refused group changed r0")


if __name__ == "__main__":
    main(run_test)
