"""`softnet pfctl` against a running router: ruleset checks, failed loads,
tables, killing states, disable/enable, each seen in the traffic.

    A 10.0.1.2 -- r0 [softnet + pf] r1 -- B 10.0.2.2 (echo servers)

1. `pfctl -nvf good` exits 0 and prints the normalized rules; `-nvf bad`
   and `-nf bad` exit 1 with `FILE:LINE: message` for the right lines.
2. `pfctl -f bad` exits 1 with the same messages and changes nothing: -sr
   is byte-for-byte the same, ssh still passes and port 80 stays blocked.
3. Table <bad> (`block in log quick from <bad>`): -T add 10.0.1.2 blocks
   new connections and pings from A (but not the established, stateful
   exchange: states come before rules), -T show / -T test / -sT show it,
   -T delete lets A in again (-T test then exits 2, as OpenBSD's pfctl).
   `table <bad> persist file "F"` is loaded from F (and re-read by -f); a
   missing F fails the load (and -nf) and changes nothing.
4. `pfctl -k 10.0.1.2` kills A's states: the held exchange dies (no rule
   lets a mid-stream packet create a state), B's state count drops.
5. `pfctl -d`: -si says Disabled, TCP 80 and UDP 9998 (blocked by rules)
   pass; `-d` again fails; `pfctl -e` blocks them again.
6. -st, -sm, -sa print pfctl's sections; -F all leaves no rules and no
   states (everything passes) until -f.
7. The verbose views with real traffic through labelled rules: -sl splits
   each label's packets and bytes into in and out (in + out = the -sr -v
   totals); -sr -vv numbers the rules (@N) and counts table addresses;
   -ss -vv gives every state a unique id and the -si -v host id as its
   creator; -si -v shows Hostid, Checksum (same rules, same sum; labels
   change it) and the verbose sections.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, wait_until  # noqa: E402
from lib_pf import A_IP, B_IP, DEFAULT_DENY, PfLab  # noqa: E402

# Two mistakes on known lines: a port on ICMP (line 4), a misspelled keyword (line 6).
BAD = """\
a_if = "r0"
block log all
pass out
pass in on $a_if proto icmp to port 22
pass proto icmp
pass in on $a_if prot tcp to port ssh
"""
BAD_LINES = {4, 6}


def errors_of(text, path):
    """{line: message} for `PATH:LINE: message` lines."""
    out = {}
    for l in text.splitlines():
        m = re.match(rf"^{re.escape(path)}:(\d+): (.+)$", l)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out


def run_test():
    with Topo("pfc") as t:
        t.step("topology A -- softnet -- B; default-deny pf.conf from the config")
        lab = PfLab(t)
        bad = lab.file("bad.conf", BAD)
        good = lab.file("good.conf", DEFAULT_DENY)

        # ---- 1. offline checks ---------------------------------------------------
        t.step("1. pfctl -nvf good.conf: exit 0, normalized rules")
        p = lab.pfctl("-nvf", good)
        for want in ("block drop log all", "pass in on r0 proto tcp from any to any port = 22 flags S/SA",
                     "block drop in log quick from <bad> to any"):
            check(want in p.stdout.splitlines(), f"-nvf: no line {want!r} in:\n{p.stdout}")
        p = lab.pfctl("-nf", good)
        check(p.stdout == "" and p.stderr == "", f"-nf good printed {p.stdout!r} {p.stderr!r}")

        t.step("1. pfctl -nvf / -nf bad.conf: exit 1, FILE:LINE: message")
        for args in (("-nvf", bad), ("-nf", bad)):
            p = lab.pfctl(*args, check_rc=False)
            errs = errors_of(p.stderr, bad)
            check(p.returncode == 1, f"pfctl {' '.join(args)}: exit {p.returncode}")
            check(set(errs) & BAD_LINES and set(errs) <= BAD_LINES,
                  f"pfctl {' '.join(args)}: errors on lines {sorted(errs)}, want {sorted(BAD_LINES)}:\n{p.stderr}")
            check(not re.search(r"^pass in on r0 proto icmp", p.stdout, re.M), f"bad rule printed:\n{p.stdout}")
        log("  " + p.stderr.strip().replace("\n", "\n  "))

        # ---- 2. a failed load changes nothing ---------------------------------------
        t.step("2. pfctl -f bad.conf: exit 1, -sr unchanged, old rules in force")
        rules0 = lab.rules()
        p = lab.pfctl("-f", bad, check_rc=False)
        check(p.returncode == 1 and errors_of(p.stderr, bad), f"pfctl -f bad: exit {p.returncode}: {p.stderr!r}")
        check(lab.rules() == rules0, f"-sr changed after a failed load:\n{lab.rules()}")
        lab.expect_tcp(22, "ok", "ssh after failed load")
        lab.expect_tcp(80, "timeout", "port 80 after failed load")
        check(lab.info()["status"] == "Enabled", "pf not enabled after a failed load")

        # ---- 3. tables ---------------------------------------------------------------
        t.step("3. table <bad>: -T add A blocks A's new connections and pings, not its established one")
        h = lab.hold(22, secs=120, gap=0.2, tmo=3.0)
        h.wait_more(3)
        check(lab.pfctl("-t", "bad", "-T", "show").stdout.strip() == "", "table <bad> not empty at start")
        check("bad" in lab.pfctl("-sT").stdout.split(), f"-sT: {lab.pfctl('-sT').stdout!r}")
        p = lab.pfctl("-t", "bad", "-T", "add", A_IP)
        check("1/1 addresses added." in p.stderr, f"-T add: {p.stderr!r}")
        shown = lab.pfctl("-t", "bad", "-T", "show").stdout.split()
        check(shown == [A_IP], f"-T show: {shown}")
        p = lab.pfctl("-t", "bad", "-T", "test", A_IP)
        check("1/1 addresses match." in p.stderr, f"-T test: {p.stderr!r}")
        quick = "block drop in log quick from <bad> to any"
        base = lab.rule_v(quick)["packets"]
        lab.expect_tcp(22, "timeout", "ssh from a <bad> address")
        p = t.ns_run(lab.net.a, f"ping -n -c 2 -i 0.3 -W 1 {B_IP}", check_rc=False)
        check(p.returncode != 0 and "0 received" in p.stdout, f"ping from a <bad> address passed:\n{p.stdout}")
        check(lab.rule_v(quick)["packets"] >= base + 3, f"<bad> rule counted {lab.rule_v(quick)} (base {base})")
        lab.wait_pflog(rf"block in on r0: {re.escape(A_IP)}\.\d+ > {re.escape(B_IP)}\.22: Flags \[S\]")
        h.wait_more(3)
        log(f"  held exchange alive ({h.count()} echoes): its state is matched before the rules")

        t.step("3. -T delete A: A gets in again; -T test no longer matches")
        p = lab.pfctl("-t", "bad", "-T", "delete", A_IP)
        check("1/1 addresses deleted." in p.stderr, f"-T delete: {p.stderr!r}")
        p = lab.pfctl("-t", "bad", "-T", "test", A_IP, check_rc=False)
        check("0/1 addresses match." in p.stderr, f"-T test after delete: {p.stderr!r}")
        # As OpenBSD's pfctl: exit 2 unless every address matches (scripts test it).
        check(p.returncode == 2, f"-T test with no match: exit {p.returncode}, want 2")
        lab.expect_tcp(22, "ok", "ssh after -T delete")
        lab.ping("-c 2 -i 0.3 -W 2")
        lab.pfctl("-t", "bad", "-T", "add", "192.0.2.0/24", "10.9.9.9")
        check(sorted(lab.pfctl("-t", "bad", "-T", "show").stdout.split()) == ["10.9.9.9", "192.0.2.0/24"],
              lab.pfctl("-t", "bad", "-T", "show").stdout)
        lab.pfctl("-t", "bad", "-T", "flush")
        check(lab.pfctl("-t", "bad", "-T", "show").stdout.strip() == "", "-T flush left entries")

        t.step("3. table <bad> from a file: loaded with the ruleset, re-read on reload; a missing file fails the load")
        blk = lab.file("blocklist.txt", f"# hosts not welcome\n{A_IP}\n192.0.2.0/24 # documentation net\n")
        from_file = lab.file("pf-file.conf", DEFAULT_DENY.replace("table <bad> persist",
                                                                  f'table <bad> persist file "{blk}"'))
        lab.pfctl("-f", from_file)
        shown = sorted(lab.pfctl("-t", "bad", "-T", "show").stdout.split())
        check(shown == sorted([A_IP, "192.0.2.0/24"]), f"-T show after loading a table file: {shown}")
        lab.expect_tcp(22, "timeout", "ssh with A in the table file")
        lab.file("blocklist.txt", "192.0.2.0/24\n")
        lab.pfctl("-f", from_file)
        shown = lab.pfctl("-t", "bad", "-T", "show").stdout.split()
        check(shown == ["192.0.2.0/24"], f"-T show after the file changed and -f: {shown}")
        lab.expect_tcp(22, "ok", "ssh with A gone from the table file")
        rules_before = lab.rules()
        missing = lab.file("pf-missing.conf", DEFAULT_DENY.replace("table <bad> persist",
                                                                   'table <bad> persist file "/nonexistent/sne2e-bl"'))
        p = lab.pfctl("-nf", missing, check_rc=False)
        check(p.returncode == 1 and "cannot load" in p.stderr, f"-nf with a missing table file: {p.returncode} {p.stderr!r}")
        p = lab.pfctl("-nvf", from_file)
        check(f'file "{blk}"' in p.stdout, f"-nvf of a table file:\n{p.stdout}")
        p = lab.pfctl("-f", missing, check_rc=False)
        check(p.returncode == 1 and errors_of(p.stderr, missing), f"-f with a missing table file: {p.returncode} {p.stderr!r}")
        check(lab.pfctl("-t", "bad", "-T", "show").stdout.split() == ["192.0.2.0/24"] and lab.rules() == rules_before,
              "a failed load (missing table file) changed the table or the rules")
        log(f"  {p.stderr.strip()}")

        t.step("3. pfctl -f with `table <bad> persist` (no address list) keeps addresses added at run time")
        lab.pfctl("-t", "bad", "-T", "add", "198.51.100.7")
        lab.pfctl("-f", lab.conf)
        kept = lab.pfctl("-t", "bad", "-T", "show").stdout.split()
        # OpenBSD (pfr_commit_ktable) keeps a table's contents when its
        # definition gives no addresses.
        check("198.51.100.7" in kept, f"-f emptied <bad> (now {kept}); run-time additions must survive")
        lab.pfctl("-t", "bad", "-T", "flush")

        # ---- 4. -k -----------------------------------------------------------------------
        t.step("4. pfctl -k 10.0.1.2 kills A's states: the held exchange dies")
        lp = h.lport
        check(lab.states_matching(rf"{A_IP}:{lp}\b"), f"no state for the held connection: {lab.states()}")
        n0 = len(lab.states())
        p = lab.pfctl("-k", A_IP)
        m = re.search(r"killed (\d+) states", p.stderr)
        check(m and int(m.group(1)) >= 2, f"-k: {p.stderr!r}")
        log(f"  -k: {p.stderr.strip()} ({n0} states before)")
        check(not lab.states_matching(rf"{A_IP}:{lp}\b"), f"held connection's state survived -k: {lab.states()}")
        why = h.wait_fail(timeout=20)
        check(why == "timeout", f"held exchange ended with {why!r}, want a timeout")
        lab.expect_tcp(22, "ok", "ssh after -k")

        t.step("4. pfctl -k 10.0.2.2 (B never opened a connection) kills nothing")
        h2 = lab.hold(22, secs=60, gap=0.2, tmo=3.0)
        h2.wait_more(3)
        p = lab.pfctl("-k", B_IP)
        m = re.search(r"killed (\d+) states", p.stderr)
        # DIOCKILLSTATES matches the state's source only.
        check(m and int(m.group(1)) == 0, f"-k {B_IP} killed states of A's connection: {p.stderr!r}")
        h2.wait_more(3)
        h2.stop()

        # ---- 5. -d / -e ---------------------------------------------------------------------
        t.step("5. pfctl -d: blocked traffic passes")
        p = lab.pfctl("-d")
        check("pf disabled" in p.stderr, f"-d: {p.stderr!r}")
        check(lab.info()["status"] == "Disabled", lab.info()["text"])
        lab.expect_tcp(80, "ok", "port 80 with pf disabled")
        r = None
        for _ in range(3):
            r = lab.udp(9998, tmo=3.0)
            if r["result"] == "echo":
                break
        check(r["result"] == "echo", f"UDP 9998 with pf disabled: {r}")
        p = lab.pfctl("-d", check_rc=False)
        check(p.returncode == 1 and "pf not enabled" in p.stderr, f"-d twice: {p.returncode} {p.stderr!r}")

        t.step("5. pfctl -e: blocked again")
        p = lab.pfctl("-e")
        check("pf enabled" in p.stderr, f"-e: {p.stderr!r}")
        check(lab.info()["status"] == "Enabled", lab.info()["text"])
        lab.expect_tcp(80, "timeout", "port 80 after -e")
        r = lab.udp(9998, tmo=2.0)
        check(r["result"] == "timeout", f"UDP 9998 after -e: {r}")
        lab.expect_tcp(22, "ok", "ssh after -e")
        p = lab.pfctl("-e", check_rc=False)
        check(p.returncode == 1 and "pf already enabled" in p.stderr, f"-e twice: {p.returncode} {p.stderr!r}")
        check(lab.d.alive(), "daemon died")
        wait_until("pflog written", lambda: len(lab.pflog_lines()) > 0, timeout=5)

        # ---- 6. the other views, -F all -----------------------------------------------------
        t.step("6. -st, -sm, -sa show pfctl's sections; -F all clears rules and states")
        st = lab.pfctl("-st").stdout
        check(re.search(r"^tcp\.established\s+86400s$", st, re.M) and re.search(r"^frag\s+60s$", st, re.M), st)
        check(re.search(r"^states\s+hard limit\s+\d+$", lab.pfctl("-sm").stdout, re.M), lab.pfctl("-sm").stdout)
        sa = lab.pfctl("-sa").stdout
        heads = [h for h in ("FILTER RULES:", "STATES:", "INFO:", "TIMEOUTS:", "LIMITS:", "TABLES:") if h in sa]
        check(len(heads) == 6 and sa.index("FILTER RULES:") < sa.index("TABLES:"), f"-sa sections: {heads}")
        check("block drop log all" in sa, "-sa without the rules")
        p = lab.pfctl("-F", "all")
        check(re.search(r"rules cleared", p.stderr) and re.search(r"\d+ states cleared", p.stderr), p.stderr)
        check(lab.rules().strip() == "" and not lab.states(), f"after -F all: {lab.rules()!r} {lab.states()}")
        lab.expect_tcp(80, "ok", "port 80 after -F all (no rules: pass)")
        lab.pfctl("-f", lab.conf)
        lab.expect_tcp(80, "timeout", "port 80 after -f again")

        # ---- 7. verbose views: -sl, -sr -vv, -ss -vv, -si -v -------------------------------
        t.step("7. -si -v: Hostid, Checksum and pfctl's verbose sections")
        si = lab.pfctl("-si", "-v").stdout
        m = re.search(r"^Hostid:   0x([0-9a-f]{8})$", si, re.M)
        check(m, f"-si -v without a Hostid line:\n{si}")
        hostid = m.group(1)
        sum0 = re.search(r"^Checksum: 0x([0-9a-f]{32})$", si, re.M)
        check(sum0, f"-si -v without a Checksum line:\n{si}")
        sections = ["State Table", "Source Tracking Table", "Fragments", "Counters", "Limit Counters"]
        at = [si.find("\n" + h) for h in sections]
        check(all(a >= 0 for a in at) and at == sorted(at), f"-si -v sections {list(zip(sections, at))}:\n{si}")
        check(re.search(r"^  max states per rule\s+\d+", si, re.M), si)
        check("Hostid" not in lab.pfctl("-si").stdout, "-si (no -v) printed the verbose lines")
        lab.pfctl("-f", lab.conf)
        sum1 = re.search(r"^Checksum: 0x([0-9a-f]{32})$", lab.pfctl("-si", "-v").stdout, re.M)
        check(sum1 and sum1.group(1) == sum0.group(1), "the same ruleset loaded again changed the checksum")

        t.step("7. labelled rules and one TCP exchange: -sl splits in and out, totals match -sr -v")
        labelled = lab.file("pf-labels.conf", DEFAULT_DENY
                            .replace("pass out\n", 'pass out label "out"\n')
                            .replace("pass in on $a_if proto tcp to port $tcp_in",
                                     'pass in on $a_if proto tcp to port $tcp_in label "tcp-in"'))
        lab.pfctl("-f", labelled)
        si = lab.pfctl("-si", "-v").stdout
        sum2 = re.search(r"^Checksum: 0x([0-9a-f]{32})$", si, re.M)
        check(sum2 and sum2.group(1) != sum0.group(1), "labels did not change the ruleset checksum")
        lab.expect_tcp(22, "ok", "ssh through the labelled rules")

        def labels():
            out = {}
            for line in lab.pfctl("-sl").stdout.splitlines():
                f = line.split()
                check(len(f) == 9 and all(x.isdigit() for x in f[1:]), f"-sl line {line!r}")
                # The first rule of a label (tcp-in expands to ports 22 and 5201).
                out.setdefault(f[0], [int(x) for x in f[1:]])
            return out

        for _ in range(5):
            sl = labels()
            sr = {r["rule"]: r for r in lab.rules_v()}
            if labels() == sl:
                break
        check(set(sl) == {"out", "tcp-in"}, f"-sl labels: {sorted(sl)}")
        for name, text in (("tcp-in", 'pass in on r0 proto tcp from any to any port = 22 flags S/SA label "tcp-in"'),
                           ("out", 'pass out all flags S/SA label "out"')):
            ev, pk, by, pin, bin_, pout, bout, st = sl[name]
            check(pin > 0 and pout > 0 and bin_ > 0 and bout > 0,
                  f"-sl {name}: no traffic both ways: {sl[name]}")
            check(pk == pin + pout and by == bin_ + bout, f"-sl {name}: totals are not in + out: {sl[name]}")
            check(st >= 1, f"-sl {name}: no state created: {sl[name]}")
            check(text in sr, f"no rule {text!r} in -sr -v: {sorted(sr)}")
            check((sr[text]["evaluations"], sr[text]["packets"], sr[text]["bytes"]) == (ev, pk, by),
                  f"-sr -v {sr[text]} and -sl {name} {sl[name]} disagree")
            log(f"  -sl {name}: {ev} evaluations, in {pin} pkts/{bin_} B, out {pout} pkts/{bout} B, {st} states")

        t.step("7. -sr -vv numbers the rules and counts table addresses; -ss -vv shows ids and creator ids")
        plain = lab.rules().splitlines()
        vv = lab.pfctl("-sr", "-vv").stdout.splitlines()
        heads = [l for l in vv if not l.startswith(" ")]
        check(len(heads) == len(plain), f"-sr -vv has {len(heads)} rules, -sr {len(plain)}")
        for nr, (h, r) in enumerate(zip(heads, plain)):
            want = re.sub(r"<bad>", r"<bad:0>", r)
            check(h == f"@{nr} {want}", f"-sr -vv rule {nr}: {h!r}, want '@{nr} {want}'")
        counters = [l for l in vv if l.startswith("  [ ")]
        check(len(counters) == 2 * len(heads) and all(
            re.match(r"  \[ (Evaluations: \d+ +Packets: \d+ +Bytes: \d+ +States: \d+ *|"
                     r"Inserted: uid 0 pid \d+ State Creations: \d+ *)\]$", l) for l in counters),
            "-sr -vv counter lines:\n" + "\n".join(counters))
        h = lab.hold(22, secs=30, gap=0.2, tmo=3.0)
        h.wait_more(3)
        ss = lab.pfctl("-ss", "-vv").stdout.splitlines()
        firsts = [i for i, l in enumerate(ss) if not l.startswith(" ")]
        check(firsts, "-ss -vv: no states")
        ids = []
        for a, b in zip(firsts, firsts[1:] + [len(ss)]):
            m = [re.match(r"   id: ([0-9a-f]{16}) creatorid: ([0-9a-f]{8})$", l) for l in ss[a + 1:b]]
            m = [x for x in m if x]
            check(len(m) == 1, f"-ss -vv state without one id line: {ss[a:b]}")
            check(m[0].group(2) == hostid, f"creatorid {m[0].group(2)} is not the host id {hostid}")
            ids.append(m[0].group(1))
        check(len(set(ids)) == len(ids), f"-ss -vv: state ids repeat: {ids}")
        check(all("   id: " not in l for l in lab.pfctl("-ss", "-v").stdout.splitlines()), "-ss -v printed ids")
        log(f"  {len(ids)} states, ids {ids[0]}..{ids[-1]}, creatorid {hostid}")
        h.stop()
        lab.pfctl("-f", lab.conf)


if __name__ == "__main__":
    main(run_test)
