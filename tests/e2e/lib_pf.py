"""Helpers for the pf end-to-end tests (not a test itself): a router with
pf between two hosts, socket peers from pf_peer.py, and readers for what
`softnet pfctl` and `tcpdump -r pflog.pcap` print.

    A 10.0.1.2 -- r0 [softnet + pf] r1 -- B 10.0.2.2

B runs echo servers (TCP and UDP, pf_peer.py serve) and an iperf3 server;
A is the client. The ruleset is loaded from the config (`pf = ...`) and
blocked packets are logged to a pcap (`pflog = ...`).
"""

import json
import os
import re
import shutil
import subprocess
import time

from lib_e2e import SCAPY_IMPORT, TestFailure, Topo, check, enable_ipv6, log, run, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "pf_peer.py")
A_IP, B_IP, R_A, R_B = "10.0.1.2", "10.0.2.2", "10.0.1.1", "10.0.2.1"

# The servers in B: "ssh" (22), a port nobody may reach (80), one answered
# with a reset (23), the iperf3 port, and UDP ports (9999: refused by pf
# with an ICMP port unreachable; 9998: blocked silently).
TCP_PORTS = [22, 23, 80, 8080]
UDP_PORTS = [9998, 9999]
IPERF_PORT = 5201

# A default-deny ruleset as an admin would write it for this router: A's
# side (r0) may open ssh and iperf3 to anything behind the router, ICMP
# passes both ways (stateful), everything else is dropped and logged.
DEFAULT_DENY = """\
# softnet e2e: default deny between A's net (r0) and B's net (r1)
a_if = "r0"
b_if = "r1"
tcp_in = "{ ssh 5201 }"

table <bad> persist

set block-policy drop

block log all
pass out
pass in on $a_if proto tcp to port $tcp_in
pass proto icmp

# Tell clients at once instead of letting them time out.
block return-rst in log on $a_if proto tcp to port telnet
block return-icmp in log on $a_if proto udp to port 9999

block in log quick from <bad>
"""


def ensure_tools():
    """tcpdump and iperf3 (CI installs them; apt-get them if missing)."""
    missing = [p for p in ("tcpdump", "iperf3") if shutil.which(p) is None]
    if missing and shutil.which("apt-get"):
        log(f"installing {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    for p in ("tcpdump", "iperf3"):
        check(shutil.which(p), f"{p} is needed (apt-get install {p})")


class Hold:
    """A long-lived TCP echo exchange from A (pf_peer.py hold) in the
    background; its JSON lines in a file."""

    def __init__(self, lab, port, secs=60, gap=0.2, tmo=3.0, src=None):
        self.lab = lab
        self.path = os.path.join(lab.t.tmp, f"hold-{port}-{time.monotonic_ns()}.out")
        self.f = open(self.path, "w")
        self.proc = lab.t.ns_spawn(lab.net.a, ["python3", PEER, "hold", B_IP, str(port), str(secs), str(gap), str(tmo)]
                                   + ([src] if src else []), stdout=self.f)
        self.lport = wait_until(f"hold connection to port {port}", lambda: self.first("connected"), timeout=10)

    def events(self):
        with open(self.path) as f:
            return [json.loads(l) for l in f if l.strip().startswith("{")]

    def first(self, key):
        for e in self.events():
            if key in e:
                return e[key]
        if self.proc.poll() is not None and key == "connected":
            raise TestFailure(f"hold exited without connecting: {self.events()}")
        return None

    def count(self):
        n = 0
        for e in self.events():
            n = e.get("ok", n)
        return n

    def failed(self):
        return self.first("fail")

    def wait_more(self, k=3, timeout=15):
        """Waits for k more echo exchanges (the connection is alive)."""
        base = self.count()

        def more():
            if self.failed():
                raise TestFailure(f"hold connection failed: {self.events()[-3:]}")
            return self.count() >= base + k
        wait_until(f"{k} more echo exchanges on the held connection", more, timeout=timeout)

    def wait_fail(self, timeout=20):
        return wait_until("the held connection to fail", self.failed, timeout=timeout)

    def stop(self):
        self.lab.t.kill(self.proc)
        self.f.close()


class PfLab:
    """The topology, the daemon with pf and pflog, the servers in B."""

    def __init__(self, t: Topo, rules=DEFAULT_DENY, iperf=False, third=False):
        ensure_tools()
        self.t = t
        # third: host D (10.0.3.2) on a third router port r2 (10.0.3.1).
        self.net = t.router_topology("packet", third=third)
        self.conf = os.path.join(t.tmp, "pf.conf")
        self.pflog = os.path.join(t.tmp, "pflog.pcap")
        self.write_rules(rules)
        extra = f'pf = "{self.conf}"\npflog = "{self.pflog}"\n'
        self.d = t.daemon(self.net.config(extra=extra), net=self.net)
        self.d.wait_log(r"pf: .* loaded, pf enabled", timeout=10)
        ports = ",".join(map(str, TCP_PORTS))
        uports = ",".join(map(str, UDP_PORTS))
        t.ns_spawn(self.net.b, ["python3", PEER, "serve", ports, uports, "580"])
        for p in TCP_PORTS:
            t.wait_listen(self.net.b, p)
        for p in UDP_PORTS:
            # (lib_e2e's wait_listen asks `ss -un`, which lists connected UDP sockets only.)
            wait_until(f"UDP port {p} bound in B", lambda: re.search(
                rf":{p}\b", t.ns_run(self.net.b, "ss -Hnlu", check_rc=False).stdout), timeout=20)
        if iperf:
            t.ns_spawn(self.net.b, f"iperf3 -s -p {IPERF_PORT}")
            t.wait_listen(self.net.b, IPERF_PORT)

    def write_rules(self, text, path=None):
        with open(path or self.conf, "w") as f:
            f.write(text)
        return path or self.conf

    def file(self, name, text):
        p = os.path.join(self.t.tmp, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    # ---- pfctl ---------------------------------------------------------------

    def pfctl(self, *args, check_rc=True):
        if len(args) == 1 and " " in args[0]:
            args = args[0].split()
        return self.d.admin("pfctl", *args, check_rc=check_rc)

    def rules(self):
        return self.pfctl("-sr").stdout

    def load(self, rules):
        """Loads `rules` with `pfctl -f` (which must take them) and flushes
        the states, so that the next packets meet the new rules."""
        p = self.pfctl("-f", self.write_rules(rules, os.path.join(self.t.tmp, f"pf-{time.monotonic_ns()}.conf")),
                       check_rc=False)
        check(p.returncode == 0, f"pfctl -f: {p.stderr}")
        self.pfctl("-F", "states")

    def rules_v(self):
        """-sr -v: [{rule, evaluations, packets, bytes, states}] in order."""
        out = []
        for line in self.pfctl("-sr", "-v").stdout.splitlines():
            m = re.match(r"\s+\[ Evaluations: (\d+)\s+Packets: (\d+)\s+Bytes: (\d+)\s+States: (\d+)\s*\]", line)
            if m and out:
                out[-1].update(evaluations=int(m.group(1)), packets=int(m.group(2)), bytes=int(m.group(3)),
                               states=int(m.group(4)))
            elif line and not line.startswith(" "):
                out.append({"rule": line})
        return out

    def rule_v(self, text):
        """The -sr -v entry of the rule whose text is exactly `text`."""
        rs = self.rules_v()
        for r in rs:
            if r["rule"] == text:
                return r
        raise TestFailure(f"no rule {text!r} in -sr -v: {[r['rule'] for r in rs]}")

    def states(self):
        return [l for l in self.pfctl("-ss").stdout.splitlines() if l.strip()]

    def states_matching(self, pattern):
        return [l for l in self.states() if re.search(pattern, l)]

    def info(self):
        """-si: {"status": ..., "current entries": n, "match": n, ...}."""
        text = self.pfctl("-si").stdout
        res = {"text": text}
        m = re.search(r"Status: (\w+)", text)
        res["status"] = m.group(1) if m else None
        for line in text.splitlines():
            m = re.match(r"\s+([a-z-]+(?: [a-z-]+)?)\s+(\d+)", line)
            if m:
                res[m.group(1)] = int(m.group(2))
        return res

    # ---- traffic from A ---------------------------------------------------------

    def _peer(self, *args, timeout=30):
        p = self.t.ns_run(self.net.a, ["python3", PEER] + [str(a) for a in args], timeout=timeout, check_rc=False)
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        if not lines:
            raise TestFailure(f"pf_peer {args}: no answer (exit {p.returncode}): {p.stderr.strip()}")
        return json.loads(lines[-1])

    def connect(self, port, tmo=2.0, host=B_IP, src=None):
        """TCP connect + echo from A (from address `src`): ok, refused, timeout..."""
        return self._peer("connect", host, port, tmo, *([src] if src else []))

    def udp(self, port, tmo=2.0, host=B_IP, size=4):
        return self._peer("udp", host, port, tmo, size)

    def expect_tcp(self, port, want, what, tmo=2.0):
        """One connection whose result must be `want`. Not retried: a lost
        SYN is TCP's to retransmit (within the 5 s an `ok` is given), and a
        first failure is the test's to report, not to hide."""
        r = self.connect(port, tmo=tmo if want != "ok" else 5.0)
        if r["result"] != want:
            raise TestFailure(f"{what}: TCP to {B_IP}:{port} gave {r}, want {want}")
        log(f"  {what}: TCP {port} -> {r['result']} ({r['secs']} s)")
        return r

    def ping(self, args="-c 3 -i 0.3 -W 2", dst=B_IP, tries=3):
        out = ""
        for i in range(tries):
            p = self.t.ns_run(self.net.a, f"ping -n {args} {dst}", check_rc=False, timeout=60)
            out = p.stdout + p.stderr
            if p.returncode == 0:
                return out
            log(f"  ping {args} {dst}: no reply (try {i + 1}/{tries})")
        raise TestFailure(f"ping {args} {dst} got no reply:\n{out}")

    def hold(self, port=22, **kw):
        return Hold(self, port, **kw)

    def scapy(self, code, timeout=60):
        """Runs `code` with scapy imported in namespace A (crafted packets
        the socket peers cannot send); returns the JSON value its last
        `print(json.dumps(...))` line gives (None if it prints none)."""
        prog = "import json\n" + SCAPY_IMPORT + "conf.verb = 0\n" + code
        p = self.t.ns_run(self.net.a, ["python3", "-c", prog], timeout=timeout, check_rc=False)
        if p.returncode != 0:
            raise TestFailure(f"scapy in A: exit {p.returncode}: {p.stderr.strip()[-2000:]}")
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        return json.loads(lines[-1]) if lines else None

    # ---- pflog --------------------------------------------------------------------

    def pflog_lines(self, expr=""):
        """tcpdump -n -e -r pflog.pcap [expr]: the decoded lines."""
        if not os.path.exists(self.pflog):
            return []
        p = run(["tcpdump", "-n", "-e", "-r", self.pflog] + (expr.split() if expr else []), check_rc=False, timeout=30)
        if p.returncode != 0 and "truncated" not in p.stderr:
            raise TestFailure(f"tcpdump -r {self.pflog}: exit {p.returncode}: {p.stderr.strip()}")
        return p.stdout.splitlines()

    def wait_pflog(self, pattern, timeout=10):
        rx = re.compile(pattern)
        return wait_until(f"pflog line /{pattern}/", lambda: [l for l in self.pflog_lines() if rx.search(l)],
                          timeout=timeout, interval=0.3)


class Sniffer:
    """Runs `script` (a python program that prints {"ready": 1} when it
    listens, then {"seen": [...]} at its end) in namespace `ns` with
    `args`, in the background."""

    def __init__(self, lab, ns, script, args):
        self.path = os.path.join(lab.t.tmp, f"sniff-{time.monotonic_ns()}.out")
        self.f = open(self.path, "w")
        self.proc = lab.t.ns_spawn(ns, ["python3", "-c", script] + [str(a) for a in args], stdout=self.f)
        wait_until("the sniffer", lambda: self.lines(), timeout=10)

    def lines(self):
        with open(self.path) as f:
            return [json.loads(l) for l in f if l.strip().startswith("{")]

    def result(self, timeout=30):
        """What the sniffer saw (waits for it to end)."""
        self.proc.wait(timeout=timeout)
        self.f.close()
        for l in self.lines():
            if "seen" in l:
                return l["seen"]
        raise AssertionError(f"sniffer gave no result: {self.lines()}")


def pf6_router(t: Topo, rules):
    """A -- softnet + pf -- B, dual stack: the peers' IPv6 on (A
    fd00:1::2, B fd00:2::2, each routed via the router), the router's
    fd00:1::1 / fd00:2::1 beside its IPv4 addresses, `rules` loaded from a
    file. Returns (net, daemon) once the router's addresses left DAD."""
    net = t.router_topology("packet")
    enable_ipv6(t, net.a, "a0", "fd00:1::2/64", "fd00:1::1")
    enable_ipv6(t, net.b, "b0", "fd00:2::2/64", "fd00:2::1")
    conf = os.path.join(t.tmp, "pf.conf")
    with open(conf, "w") as f:
        f.write(rules)
    cfg = net.config(extra=f'pf = "{conf}"\n')
    cfg = cfg.replace('addr = ["10.0.1.1/24"]', 'addr = ["10.0.1.1/24", "fd00:1::1/64"]', 1)
    cfg = cfg.replace('addr = ["10.0.2.1/24"]', 'addr = ["10.0.2.1/24", "fd00:2::1/64"]', 1)
    d = t.daemon(cfg, net=net)
    d.wait_log(r"pf: .* loaded, pf enabled", timeout=10)
    wait_until("the router's IPv6 addresses out of DAD",
               lambda: "tentative" not in d.out("ifconfig", "r0") + d.out("ifconfig", "r1"), timeout=15)
    return net, d
