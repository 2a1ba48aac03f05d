"""Tables defined inside anchors on a running router (relayd and
ftp-proxy keep their tables in their anchors).

    A 10.0.1.2 -- r0 [softnet + pf] r1 -- B 10.0.2.2 (echo servers)

The main ruleset defines `table <hosts> persist` (empty) and calls
`anchor "relayd/*"`.

1. `pfctl -a relayd/web -f -` with `table <hosts> { A }`, a quick block
   of <hosts> to 8080 and a pass to 8080: pfctl warns of the namespace
   collision with the main <hosts>; A's 8080 is blocked (the anchor's
   <hosts>); `-a relayd/web -sT` lists hosts, `-sT` lists the main one,
   `-a relayd/web -t hosts -T show` shows A, the main one is empty.
2. `-a relayd/web -t hosts -T delete A` opens 8080, `-T add A` closes it
   again, `-T test A` exits 0; a table of an anchor that has none says
   "Table does not exist." and exits 1.
3. `-a relayd/web -F Tables`: "1 tables deleted."; the anchor's rule
   reads the main <hosts> again (empty: 8080 opens); `-t hosts -T add A`
   on the main table closes it (the anchor's lookup goes to its root).
4. `-a relayd/other -t t -T add A` makes a table in a new anchor (pfctl's
   "1 table created."), which `-sA` lists; `-a relayd/web -F all` flushes
   its rules and tables: relayd/web is gone from `-sA`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, run  # noqa: E402
from lib_pf import A_IP, PfLab  # noqa: E402

MAIN = """\
a_if = "r0"
table <hosts> persist
block log all
pass out
pass in on $a_if proto tcp to port ssh
pass proto icmp
anchor "relayd/*"
"""

WEB = """\
table <hosts> { 10.0.1.2 }
block in quick on r0 proto tcp from <hosts> to port 8080
pass in quick on r0 proto tcp to port 8080
"""


def run_test():
    with Topo("pfat") as t:
        t.step("topology A -- softnet -- B; main ruleset with <hosts> and anchor \"relayd/*\"")
        lab = PfLab(t, rules=MAIN)

        def pfctl_stdin(text, *args, check_rc=True):
            return run([t.bin, "--socket", lab.d.socket, "pfctl"] + list(args), input=text, check_rc=check_rc)

        # ---- 1. ---------------------------------------------------------------------
        t.step("1. pfctl -a relayd/web -f - with its own <hosts>: A's 8080 blocked by the anchor's table")
        p = pfctl_stdin(WEB, "-a", "relayd/web", "-f", "-")
        check(p.returncode == 0, f"-a relayd/web -f -: {p.stderr}")
        check("pfctl: warning: namespace collision with <hosts> global table." in p.stderr,
              f"no namespace warning: {p.stderr!r}")
        lab.expect_tcp(8080, "timeout", "8080 from A (in relayd/web's <hosts>)")
        lab.expect_tcp(22, "ok", "ssh")
        sT = lab.pfctl("-a", "relayd/web", "-sT").stdout
        check(sT == "hosts\n", f"-a relayd/web -sT: {sT!r}")
        check(lab.pfctl("-sT").stdout == "hosts\n", "-sT: the main <hosts>")
        shown = lab.pfctl("-a", "relayd/web", "-t", "hosts", "-T", "show").stdout.split()
        check(shown == [A_IP], f"-a relayd/web -t hosts -T show: {shown}")
        check(lab.pfctl("-t", "hosts", "-T", "show").stdout.strip() == "", "the main <hosts> is empty")

        # ---- 2. ---------------------------------------------------------------------
        t.step("2. -a relayd/web -t hosts -T delete / add / test")
        p = lab.pfctl("-a", "relayd/web", "-t", "hosts", "-T", "delete", A_IP)
        check("1/1 addresses deleted." in p.stderr, f"-T delete: {p.stderr!r}")
        lab.expect_tcp(8080, "ok", "8080 after -T delete")
        p = lab.pfctl("-a", "relayd/web", "-t", "hosts", "-T", "add", A_IP)
        check("1/1 addresses added." in p.stderr and "created" not in p.stderr, f"-T add: {p.stderr!r}")
        lab.expect_tcp(8080, "timeout", "8080 after -T add")
        p = lab.pfctl("-a", "relayd/web", "-t", "hosts", "-T", "test", A_IP, check_rc=False)
        check(p.returncode == 0 and "1/1 addresses match." in p.stderr, f"-T test: {p.returncode} {p.stderr!r}")
        p = lab.pfctl("-a", "relayd/nothere", "-t", "hosts", "-T", "show", check_rc=False)
        check(p.returncode == 1 and "pfctl: Table does not exist." in p.stderr, f"no such table: {p.stderr!r}")

        # ---- 3. ---------------------------------------------------------------------
        t.step("3. -a relayd/web -F Tables: the anchor's rule reads the main <hosts> again")
        p = lab.pfctl("-a", "relayd/web", "-F", "Tables")
        check("1 tables deleted." in p.stderr, f"-F Tables: {p.stderr!r}")
        check(lab.pfctl("-a", "relayd/web", "-sT").stdout == "", "-a relayd/web -sT after -F Tables")
        lab.expect_tcp(8080, "ok", "8080: the main <hosts> is empty")
        lab.pfctl("-t", "hosts", "-T", "add", A_IP)
        lab.expect_tcp(8080, "timeout", "8080 after adding A to the main <hosts>")
        lab.pfctl("-t", "hosts", "-T", "flush")
        lab.expect_tcp(8080, "ok", "8080 after flushing the main <hosts>")

        # ---- 4. ---------------------------------------------------------------------
        t.step("4. a table made in a new anchor makes the anchor; -a relayd/web -F all removes that one")
        p = lab.pfctl("-a", "relayd/other", "-t", "t", "-T", "add", A_IP)
        check("1 table created." in p.stderr and "1/1 addresses added." in p.stderr, f"-T add: {p.stderr!r}")
        anchors = lab.pfctl("-sA").stdout
        check(anchors == "  relayd\n  relayd/other\n  relayd/web\n", f"-sA:\n{anchors}")
        p = lab.pfctl("-a", "relayd/web", "-F", "all")
        log(f"  -a relayd/web -F all: {p.stderr.strip()}")
        anchors = lab.pfctl("-sA").stdout
        check(anchors == "  relayd\n  relayd/other\n", f"-sA after -F all:\n{anchors}")
        lab.expect_tcp(8080, "timeout", "8080 without relayd/web's pass")


if __name__ == "__main__":
    main(run_test)
