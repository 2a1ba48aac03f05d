"""Operations: the Prometheus endpoint, `softnet top -b`, systemd readiness
and JSON log lines, with ping and UDP traffic flowing A -> softnet -> B.

* A fake $NOTIFY_SOCKET (a unix datagram socket of the test's) gets
  READY=1 with the daemon's pid once it is up, WATCHDOG=1 every tick
  (WATCHDOG_USEC set), RELOADING=1 then READY=1 around a SIGHUP,
  STOPPING=1 on SIGTERM.
* `curl` of http://127.0.0.1:PORT/metrics in the router's namespace (the
  daemon serves it on the OS's stack) parses with the Python client's
  Prometheus text parser, and the OpenMetrics parser when asked for that;
  `promtool check metrics` finds nothing to say about its names, types
  and help; the interface, worker, IP, pf state and pf label counters move with the
  traffic; after it stops they equal what `netstat -s`, `netstat -i` and
  `pfctl -si` print (the same per-worker counters).
* `softnet top -b -d 1 -n 2` shows non-zero packet rates for r0 and r1
  and a worker forwarding.
* With `log_format = "json"` every log line is a JSON object.
* Bad input: a second daemon asking for the same metrics port stops at
  start with the error and touches nothing; the first one serves on.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, wait_until, netstat_s_counters  # noqa: E402

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families  # noqa: E402

PORT = 9100 + os.getpid() % 500

PF_CONF = """pass all
pass in on r0 proto icmp all label "icmp"
pass in on r0 proto udp all label "udp"
"""

UDP_SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    s.sendto(b"x" * 64, ("10.0.2.2", 9999))
    n += 1
    if n % 50 == 0:
        time.sleep(0.01)
"""


def scrape(t, ns, openmetrics=False):
    hdr = ["-H", "Accept: application/openmetrics-text; version=1.0.0"] if openmetrics else []
    r = t.ns_run(ns, ["curl", "-sS", "--max-time", "10", "-D", "-", *hdr, f"http://127.0.0.1:{PORT}/metrics"])
    # (the output is read in text mode: CRLF arrives as LF)
    head, _, body = r.stdout.partition("\n\n")
    check(head.startswith("HTTP/1.1 200"), f"scrape: {head}")
    return head, body


def samples(body):
    """{(name, frozenset(labels)): value} through the Prometheus parser."""
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def val(m, name, **labels):
    k = (name, frozenset(labels.items()))
    check(k in m, f"no sample {name}{labels}")
    return m[k]


def total(m, name, **labels):
    """Sum of a family's samples that have these labels."""
    want = set(labels.items())
    return sum(v for (n, ls), v in m.items() if n == name and want <= set(ls))


class FakeNotify:
    """A unix datagram socket standing in for systemd's notify socket; a
    thread reads it all the time (as systemd does) into `messages`."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []
        self.seen = 0
        self.done = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.done:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                continue
            except OSError:
                return

    def wait(self, key, timeout=30):
        """The first message after the last one waited for with a line `key`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while self.seen < len(self.messages):
                msg = self.messages[self.seen]
                self.seen += 1
                if any(l == key for l in msg.split("\n")):
                    log(f"  notify: {msg!r}")
                    return msg
            time.sleep(0.1)
        raise AssertionError(f"no {key} on the notify socket within {timeout} s")

    def close(self):
        self.done = True
        self.thread.join(timeout=5)
        self.sock.close()


def verify_unit(t):
    """examples/softnet.service as systemd reads it (binary path swapped for
    the one under test)."""
    if shutil.which("systemd-analyze") is None:
        log("  systemd-analyze not installed: the unit file is not verified")
        return
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "softnet.service")
    with open(src) as f:
        unit = f.read()
    check("Type=notify" in unit, "the unit is not Type=notify")
    path = os.path.join(t.tmp, "softnet.service")
    with open(path, "w") as f:
        f.write(unit.replace("/usr/local/bin/softnet", t.bin))
    r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and not r.stderr.strip(), f"systemd-analyze verify: {r.stdout}{r.stderr}")


def test():
    with Topo("mt") as t:
        t.step("examples/softnet.service: systemd-analyze verify")
        verify_unit(t)
        t.step("topology: A -- softnet (packet, 2 workers, pf) -- B")
        net = t.router_topology("packet")
        pf = os.path.join(t.tmp, "pf.conf")
        with open(pf, "w") as f:
            f.write(PF_CONF)
        extra = f'metrics = "127.0.0.1:{PORT}"\nlog_format = "json"\npf = "{pf}"\n'
        notify = FakeNotify(os.path.join(t.tmp, "notify.sock"))
        os.environ["NOTIFY_SOCKET"] = notify.path
        os.environ["WATCHDOG_USEC"] = "3000000"
        try:
            d = t.daemon(net.config(extra=extra), net=net, wait=False)
        finally:
            del os.environ["NOTIFY_SOCKET"]
            del os.environ["WATCHDOG_USEC"]

        t.step("READY=1 on $NOTIFY_SOCKET with the daemon's pid, and the control socket answers")
        msg = notify.wait("READY=1")
        check(f"MAINPID={d.proc.pid}" in msg, f"MAINPID is not the daemon's ({d.proc.pid}): {msg!r}")
        check("STATUS=up: 2 worker(s), 2 interface(s)" in msg, msg)
        d.wait_ready()
        t.step("WatchdogSec (WATCHDOG_USEC=3000000): WATCHDOG=1 from the control thread's tick")
        notify.wait("WATCHDOG=1", timeout=5)

        t.step("the endpoint answers in the router's namespace; Prometheus and OpenMetrics parsers accept it")
        head, body = scrape(t, net.r)
        check("Content-Type: text/plain; version=0.0.4" in head, head)
        m0 = samples(body)
        check(len(m0) > 200, f"only {len(m0)} samples")
        check(shutil.which("promtool") is not None,
              "promtool not found: needed to lint the exposition (apt-get install --no-install-recommends prometheus)")
        r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
        check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
              f"promtool check metrics: rc {r.returncode}\n{r.stdout}{r.stderr}")
        head, om = scrape(t, net.r, openmetrics=True)
        check("application/openmetrics-text" in head and om.endswith("# EOF\n"), head)
        fams = list(om_families(om))
        kinds = {f.name: f.type for f in fams}
        check(kinds.get("softnet_ip_forwarded_packets") == "counter", f"{kinds.get('softnet_ip_forwarded_packets')}")
        check(kinds.get("softnet_pf_states") == "gauge", f"{kinds.get('softnet_pf_states')}")
        check(kinds.get("softnet_interface_up") == "gauge", "interface_up")
        check(val(m0, "softnet_interface_up", interface="r0") == 1, "r0 up")
        check(val(m0, "softnet_pf_running") == 1 and val(m0, "softnet_pf_rules") == 3, "pf status")
        r = t.ns_run(net.r, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                             f"http://127.0.0.1:{PORT}/nothing"], check_rc=False)
        check(r.stdout == "404", f"/nothing: {r.stdout}")

        t.step("ping (flood-ish) and UDP A -> B; scrapes while they flow")
        # The senders run until killed after the scrapes (60 s at most), and
        # each scrape is taken once the counters moved past the one before
        # (a sleep of 1.5 s, then 0.5 s, was too short when python and ping
        # start slowly on a loaded machine, and an 8-s flow could end first).
        ping = t.ns_spawn(net.a, "ping -n -q -i 0.01 -w 60 10.0.2.2")
        udp = t.ns_spawn(net.a, ["python3", "-c", UDP_SENDER, "60"])
        moving = [
            ("softnet_interface_receive_packets_total", {"interface": "r0"}),
            ("softnet_interface_receive_bytes_total", {"interface": "r0"}),
            ("softnet_interface_transmit_packets_total", {"interface": "r1"}),
            ("softnet_ip_forwarded_packets_total", {}),
            ("softnet_ip_received_packets_total", {}),
            ("softnet_pf_state_searches_total", {}),
            ("softnet_pf_label_packets_total", {"label": "icmp", "direction": "in"}),
            ("softnet_pf_label_packets_total", {"label": "udp", "direction": "in"}),
        ]

        def scrape_past(before, what, more=lambda m: True):
            """The next scrape in which every counter of `moving` is past `before`'s."""
            def past():
                m = samples(scrape(t, net.r)[1])
                return m if all(val(before, n, **ls) < val(m, n, **ls) for n, ls in moving) and more(m) else None
            return wait_until(what, past, timeout=30, interval=0.3)

        m1 = scrape_past(m0, "the counters moving with the traffic")

        t.step("softnet top -b -d 1 -n 2 while traffic flows")
        top = d.out("top", "-b", "-d", "1", "-n", "2", timeout=30)
        log("  " + "\n  ".join(top.splitlines()[:12]))
        frames = [f for f in top.split("softnet top:") if f.strip()]
        check(len(frames) == 2, f"{len(frames)} frames:\n{top}")
        last = frames[-1]
        rows = {l.split()[0]: l.split() for l in last.splitlines() if l.strip()}
        check(float(rows["r0"][1]) > 10, f"r0 IPKTS/s not moving:\n{last}")
        check(float(rows["r1"][2]) > 10, f"r1 OPKTS/s not moving:\n{last}")
        fwd = sum(float(rows[w][3]) for w in ("0", "1") if w in rows)
        check(fwd > 10, f"no worker forwarding:\n{last}")
        cpu = [float(l.split()[7]) for f in frames for l in f.splitlines() if re.match(r"[01] ", l)]
        check(max(cpu) > 0, f"no worker CPU% in either frame:\n{top}")
        check(re.search(r"STATES\s+[1-9]\d* of 100000", last), f"no states in top:\n{last}")
        check(float(rows["udp"][2]) > 10 and float(rows["icmp"][2]) > 0, f"label view:\n{last}")

        wf0 = total(m0, "softnet_worker_forwarded_packets_total", family="inet")
        m2 = scrape_past(m1, "the counters moving on, 500 forwarded by the workers", lambda m: total(
            m, "softnet_worker_forwarded_packets_total", family="inet") - wf0 > 500)
        t.step("the counters moved with the traffic")
        for name, labels in moving:
            a, b, c = val(m0, name, **labels), val(m1, name, **labels), val(m2, name, **labels)
            log(f"  {name}{labels}: {a:.0f} -> {b:.0f} -> {c:.0f}")
            check(a < b < c, f"{name}{labels} did not move: {a} {b} {c}")
        wf2 = total(m2, "softnet_worker_forwarded_packets_total", family="inet")
        check(wf2 - wf0 > 500, f"workers forwarded {wf2 - wf0}")
        check(val(m2, "softnet_pf_states") >= 2, "pf states while traffic flows")
        # (an idle worker sleeps in poll(2) and may have no tick of its own)
        check(total(m2, "softnet_worker_cpu_seconds_total") > 0, "no CPU time for the workers")
        check(val(m2, "softnet_pf_state_inserts_total") > val(m0, "softnet_pf_state_inserts_total"), "inserts")

        t.step("after the traffic: the endpoint says what netstat -s, netstat -i and pfctl -si say")
        t.kill(ping)
        t.kill(udp)
        time.sleep(1)
        _, b3 = scrape(t, net.r)
        ns = netstat_s_counters(d.out("netstat", "-s"))
        si = d.out("pfctl", "-si")
        _, b4 = scrape(t, net.r)
        m3, m4 = samples(b3), samples(b4)
        for metric, key in [
            ("softnet_ip_forwarded_packets_total", "ip: packets forwarded"),
            ("softnet_ip_received_packets_total", "ip: total packets received"),
            ("softnet_ip_filtered_packets_total", "ip: packets blocked by the packet filter"),
        ]:
            check(m3[(metric, frozenset())] <= ns[key] <= m4[(metric, frozenset())],
                  f"{metric} {m3[(metric, frozenset())]}..{m4[(metric, frozenset())]} vs netstat {ns[key]}")
        nsi = d.out("netstat", "-i")
        link = {l.split()[0]: l.split() for l in nsi.splitlines() if "<Link>" in l}
        for ifn in ("r0", "r1"):
            ipk = int(link[ifn][4])
            a, b = val(m3, "softnet_interface_receive_packets_total", interface=ifn), \
                val(m4, "softnet_interface_receive_packets_total", interface=ifn)
            check(a <= ipk <= b, f"{ifn}: Ipkts {ipk} vs metrics {a}..{b}")
        inserts = int(re.search(r"inserts\s+(\d+)", si).group(1))
        check(val(m3, "softnet_pf_state_inserts_total") <= inserts <= val(m4, "softnet_pf_state_inserts_total"),
              f"pfctl -si inserts {inserts}")

        t.step("a second daemon on the same metrics port stops at start, the first serves on")
        d2 = t.daemon(net.config(extra=f'metrics = "127.0.0.1:{PORT}"\n').replace('device = "ra"', 'device = "nope0"'),
                      ns=net.r, name="second", wait=False)
        d2.proc.wait(timeout=20)
        check(d2.proc.returncode == 1, f"second daemon exited {d2.proc.returncode}")
        check(re.search(rf"metrics 127\.0\.0\.1:{PORT}: .*[Aa]ddress (already )?in use", d2.log_text()),
              d2.log_text())
        check(not os.path.exists(d2.socket), "the second daemon left its control socket")
        scrape(t, net.r)
        check(d.alive(), "first daemon died")

        t.step("SIGHUP: RELOADING=1 then READY=1")
        d.signal(signal.SIGHUP)
        notify.wait("RELOADING=1")
        notify.wait("READY=1")

        t.step("log_format = \"json\": every log line is one JSON object with time, level and message")
        lines = [l for l in d.log_lines() if l.strip()]
        check(len(lines) >= 3, f"{len(lines)} log lines")
        for l in lines:
            try:
                o = json.loads(l)
            except ValueError:
                raise AssertionError(f"not JSON: {l!r}")
            check({"timestamp", "level", "message"} <= set(o), f"fields of {l!r}")
        check(any("softnet up:" in json.loads(l)["message"] for l in lines), "no 'softnet up' line")

        t.step("SIGTERM: STOPPING=1, exit 0, the port closed")
        d.signal(signal.SIGTERM)
        notify.wait("STOPPING=1")
        check(d.stop() == 0, "exit code")
        r = t.ns_run(net.r, ["curl", "-s", "--max-time", "3", f"http://127.0.0.1:{PORT}/metrics"], check_rc=False)
        check(r.returncode != 0, "the endpoint still answers after the daemon stopped")
        notify.close()


if __name__ == "__main__":
    main(test)
