"""pf anchors and includes on a running router.

    A 10.0.1.2 -- r0 [softnet + pf] r1 -- B 10.0.2.2 (echo servers)

The ruleset (from the config) calls `anchor "relayd/*"`, `anchor
"ftp-proxy/*"` and `anchor "web" in on r0`, and includes a file with a
blocklist (`block in quick ... port 80` for A) and a pass for UDP 9998.

1. The include is in force: UDP 9998 passes, TCP 80 and 8080 do not;
   `-s Anchors` lists ftp-proxy, relayd and web (called, nothing loaded).
2. Under a held ssh exchange, `pfctl -a relayd/web -f -` loads
   `pass in quick ... port { 80 8080 }`: 8080 opens at once, 80 stays
   blocked (the blocklist's quick rule comes before the anchor); the held
   exchange never misses; `-a relayd/web -sr` shows the rules, `-a relayd
   -sA` the child.
3. With a held exchange on 8080, `pfctl -a relayd/web -F rules`: new
   connections to 8080 are blocked again, the held one goes on (states
   are kept); the empty anchor is gone from `-sA`.
4. `pfctl -a web -f` opens 8080 through the named anchor (its rule says
   `in on r0`); a main ruleset reload (`pfctl -f`) keeps it, as pf keeps
   anchors loaded on their own.
5. Bad input changes nothing (main -sr, `-a web -sr` byte for byte, 8080
   still open), each with a clear error: an include loop, a missing
   include file, `-a _x -f`, an invalid anchor path in a rule, inline
   anchors nested too deep, a syntax error in an anchor's file; `-a nothere
   -sr` says the anchor does not exist.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, run  # noqa: E402
from lib_pf import PfLab  # noqa: E402

MAIN = """\
a_if = "r0"
block log all
pass out
pass in on $a_if proto tcp to port ssh
pass proto icmp
include "{blocklist}"
anchor "relayd/*"
anchor "ftp-proxy/*"
anchor "web" in on $a_if
"""

BLOCKLIST = """\
# blocklist: A may not reach B's port 80, whatever the anchors say
block in quick on $a_if proto tcp from 10.0.1.2 to any port 80
pass in on $a_if proto udp to port 9998
"""

RELAYD_WEB = "pass in quick on r0 proto tcp to port { 80 8080 }\n"
WEB = "pass quick proto tcp to port 8080\n"


def run_test():
    with Topo("pfa") as t:
        blocklist = os.path.join(t.tmp, "blocklist.conf")
        with open(blocklist, "w") as f:
            f.write(BLOCKLIST)
        main_text = MAIN.format(blocklist=blocklist)
        t.step("topology A -- softnet -- B; pf.conf with anchors and an included blocklist")
        lab = PfLab(t, rules=main_text)

        def pfctl_stdin(text, *args, check_rc=True):
            return run([t.bin, "--socket", lab.d.socket, "pfctl"] + list(args), input=text, check_rc=check_rc)

        # ---- 1. ---------------------------------------------------------------------
        t.step("1. the include is in force; -s Anchors lists the anchors the rules call")
        r = lab.udp(9998, tmo=3.0)
        check(r["result"] == "echo", f"UDP 9998 (passed by the included file): {r}")
        lab.expect_tcp(80, "timeout", "80 before any anchor")
        lab.expect_tcp(8080, "timeout", "8080 before any anchor")
        anchors = lab.pfctl("-sA").stdout
        check(anchors == "  ftp-proxy\n  relayd\n  web\n", f"-sA:\n{anchors}")
        sr = lab.rules()
        for want in ('anchor "relayd/*" all', 'anchor "ftp-proxy/*" all', 'anchor "web" in on r0 all',
                     "block drop in quick on r0 inet proto tcp from 10.0.1.2 to any port = 80"):
            check(want in sr.splitlines(), f"-sr has no {want!r}:\n{sr}")

        # ---- 2. ---------------------------------------------------------------------
        t.step("2. pfctl -a relayd/web -f - under a held ssh exchange: 8080 opens, 80 stays blocked")
        h = lab.hold(22, secs=120, gap=0.2, tmo=3.0)
        h.wait_more(3)
        p = pfctl_stdin(RELAYD_WEB, "-a", "relayd/web", "-f", "-")
        check(p.returncode == 0, f"-a relayd/web -f -: {p.stderr}")
        lab.expect_tcp(8080, "ok", "8080 through relayd/web")
        lab.expect_tcp(80, "timeout", "80: the blocklist's quick rule comes first")
        h.wait_more(3)
        check(not h.failed(), f"held ssh exchange failed during the anchor load: {h.events()[-3:]}")
        sr = lab.pfctl("-a", "relayd/web", "-sr").stdout
        check(sr == "pass in quick on r0 proto tcp from any to any port = 80 flags S/SA\n"
                    "pass in quick on r0 proto tcp from any to any port = 8080 flags S/SA\n",
              f"-a relayd/web -sr:\n{sr}")
        check(lab.pfctl("-a", "relayd", "-sA").stdout == "  relayd/web\n", "-a relayd -sA")
        check("relayd/web" in lab.pfctl("-sA").stdout, "-sA after the load")

        # ---- 3. ---------------------------------------------------------------------
        t.step("3. pfctl -a relayd/web -F rules: 8080 closes for new connections, the held one goes on")
        h8080 = lab.hold(8080, secs=120, gap=0.2, tmo=3.0)
        h8080.wait_more(3)
        p = lab.pfctl("-a", "relayd/web", "-F", "rules")
        check(p.returncode == 0, f"-F rules: {p.stderr}")
        lab.expect_tcp(8080, "timeout", "8080 after the flush")
        h8080.wait_more(3)
        check(not h8080.failed(), f"held 8080 exchange died with the flush: {h8080.events()[-3:]}")
        h8080.stop()
        anchors = lab.pfctl("-sA").stdout
        check(anchors == "  ftp-proxy\n  relayd\n  web\n", f"-sA after the flush:\n{anchors}")

        # ---- 4. ---------------------------------------------------------------------
        t.step("4. pfctl -a web -f: 8080 through the named anchor; a main reload keeps it")
        web = lab.file("web.conf", WEB)
        lab.pfctl("-a", "web", "-f", web)
        lab.expect_tcp(8080, "ok", "8080 through web")
        main_file = lab.file("main.conf", main_text)
        lab.pfctl("-f", main_file)
        lab.expect_tcp(8080, "ok", "8080 after a main reload")
        check(lab.pfctl("-a", "web", "-sr").stdout == "pass quick proto tcp from any to any port = 8080 flags S/SA\n",
              "-a web -sr after the main reload")

        # ---- 5. ---------------------------------------------------------------------
        t.step("5. bad input: clear errors, nothing changes")
        before = (lab.rules(), lab.pfctl("-a", "web", "-sr").stdout, lab.pfctl("-sA").stdout)
        loop = os.path.join(t.tmp, "loop.conf")
        with open(loop, "w") as f:
            f.write(f'pass\ninclude "{loop}"\n')
        deep = "".join("  " * i + "anchor {\n" for i in range(70)) + "pass\n" + "}\n" * 70
        cases = [
            (("-f", loop), None, f"failed to include file {loop}: include loop"),
            (("-f", lab.file("missing.conf", 'include "/nonexistent/pf.conf"\npass\n')), None,
             "failed to include file /nonexistent/pf.conf: No such file or directory"),
            (("-a", "_x", "-f", web), None, "anchor names beginning with '_' cannot be modified"),
            (("-a", "web", "-f", "-"), 'anchor "a//b"\npass\n', 'anchor "a//b": empty anchor path component'),
            (("-f", "-"), deep, "pfa_anchor: anchors too deep"),
            (("-a", "web", "-f", "-"), "pass quick proto tcp to port 8080 bogus\n", "stdin:1: syntax error"),
            (("-a", "nothere", "-sr"), None, "Anchor does not exist"),
        ]
        for args, text, want in cases:
            if text is None:
                p = lab.pfctl(*args, check_rc=False)
            else:
                p = pfctl_stdin(text, *args, check_rc=False)
            log(f"  pfctl {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()[:160]}")
            check(p.returncode != 0, f"pfctl {args} succeeded: {p.stdout}")
            check(want in p.stderr, f"pfctl {args}: no {want!r} in {p.stderr!r}")
            after = (lab.rules(), lab.pfctl("-a", "web", "-sr").stdout, lab.pfctl("-sA").stdout)
            check(after == before, f"pfctl {args} changed the rules:\n{before}\n->\n{after}")
        lab.expect_tcp(8080, "ok", "8080 after the bad loads")
        h.wait_more(3)
        check(not h.failed(), f"held ssh exchange failed: {h.events()[-3:]}")
        h.stop()
        log(f"  held ssh exchange: {h.count()} echoes, none missed")


if __name__ == "__main__":
    main(run_test)
