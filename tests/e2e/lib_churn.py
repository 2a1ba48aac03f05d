"""Helpers for the churn and overload tests (not a test itself): a client
of the control protocol that keeps one connection and can pipeline
requests, the daemon's threads and memory from /proc, `netstat -m`'s
view parsed, and bounded traffic sources.

The control protocol (crates/softnet/src/proto.rs): a u32 big-endian
length, then JSON {"version": V, "request": ...}; one JSON response
frame per request, in order.
"""

import json
import os
import re
import socket
import struct
import time

from lib_e2e import TestFailure, check, wait_until

PROTOCOL_VERSION = 3


class Control:
    """One connection to the daemon's control socket."""

    def __init__(self, path, timeout=30.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def close(self):
        self.s.close()

    def _frame(self, request):
        body = json.dumps({"version": PROTOCOL_VERSION, "request": request}).encode()
        return struct.pack(">I", len(body)) + body

    def _read(self, n):
        while len(self.buf) < n:
            b = self.s.recv(1 << 20)
            if not b:
                raise TestFailure("control socket closed by the daemon")
            self.buf += b
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self):
        (n,) = struct.unpack(">I", self._read(4))
        return json.loads(self._read(n))["response"]

    def call(self, request):
        """One request, its response ({"text": ...} or {"error": ...})."""
        self.s.sendall(self._frame(request))
        return self.response()

    def text(self, request):
        r = self.call(request)
        check("text" in r, f"{request}: {r}")
        return r["text"]

    def pipeline(self, requests, window=256):
        """Sends requests keeping at most `window` unanswered; returns
        the number of error responses and the first of them."""
        errors, first = 0, None
        sent = answered = 0
        pending = b""
        n = len(requests)
        while answered < n:
            while sent < n and sent - answered < window:
                pending += self._frame(requests[sent])
                sent += 1
            if pending:
                self.s.sendall(pending)
                pending = b""
            r = self.response()
            answered += 1
            if "text" not in r:
                errors += 1
                first = first or r
        return errors, first


def route_add(dst, gw):
    return {"route": {"rtable": 0, "op": {"add": {"dest": {"addr": dst, "prefix_len": 32},
                                                  "gateway": {"addr": gw}}}}}


def route_delete(dst):
    return {"route": {"rtable": 0, "op": {"delete": {"dest": {"addr": dst, "prefix_len": 32}, "gateway": None}}}}


NETSTAT_M = {"netstat": "buffers"}


def host_route(i):
    """The i-th /32 of the churned routes: 172.16.0.0/12, never used by traffic."""
    return f"172.{16 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"


class BufView:
    """`netstat -m` parsed."""

    def __init__(self, text):
        self.text = text
        m = re.match(r"(\d+) packet buffers in use of (\d+)", text)
        check(m, f"netstat -m: {text}")
        self.in_use, self.total = int(m.group(1)), int(m.group(2))
        m = re.search(r"^(\d+) interfaces listed, (\d+) allocated$", text, re.M)
        self.if_listed, self.if_allocated = int(m.group(1)), int(m.group(2))
        self.if_refs = {g[0]: int(g[1]) for g in re.findall(r"^  (\S+) index \d+ generation \d+ refs (\d+)$", text, re.M)}
        self.routes = {int(t): (int(a), int(b)) for t, a, b in
                       re.findall(r"^table (\d+): (\d+) inet routes, (\d+) inet6 routes$", text, re.M)}
        self.retired = int(re.search(r"^(\d+) route snapshots retired", text, re.M).group(1))
        self.denied = int(re.search(r"^(\d+) requests for buffers denied", text, re.M).group(1))
        self.peak = 0
        for line in text.splitlines():
            f = line.split()
            if len(f) == 7 and f[0].isdigit() and f[1] == str(2048):
                self.peak += int(f[5])

    def idle_like(self, base):
        """What differs from the idle view `base` (empty when nothing)."""
        diffs = []
        if self.in_use != 0:
            diffs.append(f"{self.in_use} packet buffers in use")
        if self.total != base.total:
            diffs.append(f"buffers {self.total} != {base.total}")
        if self.if_listed != self.if_allocated:
            diffs.append(f"{self.if_allocated} interfaces allocated, {self.if_listed} listed")
        if self.if_refs != base.if_refs:
            diffs.append(f"interface refs {self.if_refs} != {base.if_refs}")
        if self.routes != base.routes:
            diffs.append(f"routes {self.routes} != {base.routes}")
        if self.retired:
            diffs.append(f"{self.retired} retired route snapshots held")
        return diffs


def netstat_m(d):
    return BufView(d.out("netstat", "-m"))


def wait_idle(d, base, timeout=30):
    """Waits until netstat -m is back to the idle view `base`; returns it."""
    last = [None]

    def idle():
        v = netstat_m(d)
        last[0] = v
        return v if not v.idle_like(base) else None

    try:
        return wait_until("netstat -m back to its idle values", idle, timeout=timeout, interval=0.5)
    except TestFailure:
        raise TestFailure(f"not idle: {last[0].idle_like(base)}\n{last[0].text}")


def proc_status(pid):
    """{'threads': n, 'rss_kb': n, 'hwm_kb': n} of a process."""
    with open(f"/proc/{pid}/status") as f:
        st = f.read()
    g = lambda k: int(re.search(rf"^{k}:\s+(\d+)", st, re.M).group(1))  # noqa: E731
    return {"threads": len(os.listdir(f"/proc/{pid}/task")), "rss_kb": g("VmRSS"), "hwm_kb": g("VmHWM")}


def settled_threads(pid, secs=1.5):
    """The daemon's thread count with no control client: the fewest seen
    over `secs` (a connection's thread may still be ending)."""
    n, end = proc_status(pid)["threads"], time.monotonic() + secs
    while time.monotonic() < end:
        time.sleep(0.1)
        n = min(n, proc_status(pid)["threads"])
    return n


def wait_threads(pid, want, timeout=10):
    """Waits until the daemon has `want` threads (a control connection's
    thread ends shortly after its client)."""
    return wait_until(f"{want} threads in the daemon", lambda: proc_status(pid)["threads"] == want
                      or None, timeout=timeout, interval=0.2)


# A bounded UDP flood from a namespace: datagrams of SIZE bytes to
# HOST:PORT (or to ports PORT..PORT+SPREAD-1, a new flow each) for SECS
# seconds at most, RATE datagrams a second (0: as fast as it can). With
# GSO, each send is 64 datagrams the kernel cuts (UDP_SEGMENT, RFC-less
# Linux GSO): a sender far cheaper per datagram than the router, so that
# one shared machine can overload it. Prints {"sent": n}.
FLOOD = r"""
import json, socket, sys, time
host, port, size, secs, rate, spread, gso = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "1"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
b = b"x" * size
if gso:
    s.setsockopt(socket.SOL_UDP, 103, size)  # UDP_SEGMENT
    b = b * 64
per = 64 if gso else 1
n = 0
t0 = time.monotonic()
end = t0 + secs
while True:
    now = time.monotonic()
    if now >= end:
        break
    for _ in range(64):
        try:
            s.sendto(b, (host, port + (n % spread)))
        except OSError:
            pass
        n += per
    if rate:
        ahead = n / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
print(json.dumps({"sent": n}), flush=True)
"""


def flood(t, ns, host, port, secs, size=64, rate=0, spread=1, gso=False, stdout=None, nice=0):
    """FLOOD in `ns`; `nice`: its nice value (negative: ahead of the
    machine's other work, so that what it offers depends less on it)."""
    prio = ["nice", "-n", str(nice)] if nice else []
    return t.ns_spawn(ns, prio + ["python3", "-c", FLOOD, host, str(port), str(size), str(secs), str(rate),
                                  str(spread), "1" if gso else "0"], stdout=stdout)


def link_stats(t, ns, ifc):
    """(tx_packets, rx_packets) of a Linux interface in a namespace."""
    out = t.ns_run(ns, f"cat /sys/class/net/{ifc}/statistics/tx_packets /sys/class/net/{ifc}/statistics/rx_packets")
    tx, rx = out.stdout.split()
    return int(tx), int(rx)


class IperfLog:
    """iperf3 in text mode with --forceflush: its per-second lines read as
    they come, to check that a long transfer keeps moving."""

    LINE = re.compile(r"^\[\s*\d+\]\s+([\d.]+)-([\d.]+)\s+sec\s+([\d.]+)\s+(\w?)Bytes")

    def __init__(self, path):
        self.path = path

    def intervals(self):
        """[(end_second, bytes)] of the per-second lines so far."""
        mult = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}
        out = []
        try:
            with open(self.path) as f:
                for line in f:
                    m = self.LINE.match(line)
                    if m and float(m.group(2)) - float(m.group(1)) <= 1.5:
                        out.append((float(m.group(2)), float(m.group(3)) * mult[m.group(4)]))
        except FileNotFoundError:
            pass
        return out

    def text(self):
        with open(self.path, errors="replace") as f:
            return f.read()

    def wait_moving(self, what, k=2, timeout=15):
        """Waits for k more intervals that each moved data."""
        base = len(self.intervals())

        def more():
            iv = self.intervals()[base:]
            return len([b for _, b in iv if b > 0]) >= k

        wait_until(f"iperf3 moving data after {what}", more, timeout=timeout)

    def stalls(self):
        """Intervals that moved nothing (the first two seconds aside)."""
        return [(s, b) for s, b in self.intervals() if b == 0 and s > 2]


def timed_call(ctl, request):
    """(seconds, response) of one request on an open connection."""
    t0 = time.monotonic()
    r = ctl.call(request)
    return time.monotonic() - t0, r


class CpuLimit:
    """A CPU bandwidth limit for some threads of a process: a cgroup of
    its own with `cpu.max` (cgroup v2; the threads in a threaded child
    of a domain holding the whole process) or `cpu.cfs_quota_us` (v1's
    cpu controller, which takes single threads in `tasks`). `quota_us` of
    CPU time every `period_us` for all the threads together, e.g. 10,000
    of 100,000: a tenth of one core. A context manager: on exit the
    threads go back to the root and the cgroups are removed (enter it
    before the Topo that starts the daemon, so the daemon is gone first).
    `self.kind` is None when the machine has no cpu controller to use
    (then `limit` raises TestFailure with `self.why`)."""

    def __init__(self, name, quota_us, period_us=100_000):
        self.name, self.quota, self.period = name, quota_us, period_us
        self.kind, self.root, self.why = None, None, ""
        self.dirs = []  # made here, removed on exit (innermost first)
        self.tids = []
        mounts = []
        with open("/proc/mounts") as f:
            for line in f:
                dev, path, fstype, opts = line.split()[:4]
                mounts.append((path, fstype, opts.split(",")))
        v1 = [p for p, fs, o in mounts if fs == "cgroup" and "cpu" in o]
        v2 = [p for p, fs, _ in mounts if fs == "cgroup2"]
        if v1:
            self.kind, self.root = "v1", v1[0]
        elif v2 and "cpu" in self._read(v2[0], "cgroup.controllers").split():
            self.kind, self.root = "v2", v2[0]
        else:
            self.why = "no cgroup cpu controller (neither v1's cpu hierarchy nor cpu in cgroup v2's controllers)"

    @staticmethod
    def _read(d, f):
        try:
            with open(os.path.join(d, f)) as fh:
                return fh.read()
        except OSError:
            return ""

    @staticmethod
    def _write(d, f, value):
        with open(os.path.join(d, f), "w") as fh:
            fh.write(str(value))

    def _mkdir(self, d):
        os.mkdir(d)
        self.dirs.append(d)
        return d

    def limit(self, pid, tids):
        """Puts the threads `tids` of process `pid` under the limit."""
        check(self.kind is not None, self.why)
        top = self._mkdir(os.path.join(self.root, self.name))
        if self.kind == "v1":
            self._write(top, "cpu.cfs_period_us", self.period)
            self._write(top, "cpu.cfs_quota_us", self.quota)
            self.group = top
            for tid in tids:
                self._write(top, "tasks", tid)
        else:
            # The cpu controller is a threaded one: the process in the
            # domain `top`, the limited threads in its threaded child.
            if "cpu" not in self._read(self.root, "cgroup.subtree_control").split():
                self._write(self.root, "cgroup.subtree_control", "+cpu")
            self._write(top, "cgroup.subtree_control", "+cpu")
            self.group = self._mkdir(os.path.join(top, "limited"))
            self._write(self.group, "cgroup.type", "threaded")
            self._write(top, "cgroup.procs", pid)
            self._write(self.group, "cpu.max", f"{self.quota} {self.period}")
            for tid in tids:
                self._write(self.group, "cgroup.threads", tid)
        self.tids = list(tids)
        members = self._read(self.group, "tasks" if self.kind == "v1" else "cgroup.threads").split()
        check(sorted(members) == sorted(map(str, tids)), f"cgroup {self.group} holds {members}, not {tids}")

    def throttled(self):
        """(periods throttled, throttled seconds) of the limited group
        (cpu.stat: v1's nr_throttled/throttled_time ns, v2's
        nr_throttled/throttled_usec)."""
        st = dict(line.split() for line in self._read(self.group, "cpu.stat").splitlines() if line.strip())
        secs = int(st.get("throttled_usec", 0)) / 1e6 if self.kind == "v2" else int(st.get("throttled_time", 0)) / 1e9
        return int(st.get("nr_throttled", 0)), secs

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for d in reversed(self.dirs):
            # Whatever is still in it (the test failed before its daemon
            # stopped) goes back to the root first.
            procs = "tasks" if self.kind == "v1" else "cgroup.procs"
            for _ in range(50):
                left = self._read(d, procs).split()
                for p in left:
                    try:
                        self._write(self.root, procs, p)
                    except OSError:
                        pass
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                print(f"cannot remove cgroup {d}", flush=True)
        return False


def thread_ids(pid, prefix):
    """The ids of the threads of `pid` whose name starts with `prefix`."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().startswith(prefix):
                    out.append(int(tid))
        except OSError:
            pass
    return sorted(out)


def thread_cpu(pid, tids):
    """CPU seconds (user + system) the threads `tids` of `pid` used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for tid in tids:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            # After the comm's closing parenthesis: state is field 3, utime 14, stime 15.
            rest = f.read().rsplit(")", 1)[1].split()
        total += int(rest[11]) + int(rest[12])
    return total / tick
