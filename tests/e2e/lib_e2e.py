"""Shared helpers for softnet's end-to-end tests (not a test itself).

Network namespaces as peers: `Topo` makes namespaces, veths and TAPs (all
names carry a per-run tag, so two runs never collide) and removes them on
`close()`; `Daemon` starts `softnet up` in a namespace with a temporary
config and control socket, captures its stderr, runs admin commands and
stops it. Every wait is bounded in rounds and seconds.

Usage, as in the tests:

    with Topo("fw") as t:
        net = t.router_topology(driver="packet")
        d = t.daemon(net.config())
        t.step("ping A -> B")
        t.ns_run(net.a, "ping -c 3 -W 2 10.0.2.2")

Environment: SOFTNET_BIN (default target/release/softnet under the repo),
SNE2E_KEEP=1 keeps the temp dir (config, daemon log) for a look afterwards.
"""

import hashlib
import os
import re
import ctypes
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# MACs of the topology (router ports, hosts).
MAC_R0 = "02:00:00:00:01:01"
MAC_R1 = "02:00:00:00:02:01"
MAC_R2 = "02:00:00:00:03:01"
MAC_A = "02:00:00:00:01:02"
MAC_B = "02:00:00:00:02:02"
MAC_C = "02:00:00:00:02:03"
MAC_D = "02:00:00:00:03:02"

OFFLOADS = ["tso", "gso", "gro", "lro", "tx-checksumming", "rx-gro-list", "rx-udp-gro-forwarding"]


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def setns(path):
    """Moves the calling thread into the network namespace at `path`
    (/run/netns/NAME or /proc/self/fd/N). Sockets keep the namespace they
    were made in; threads started afterwards inherit the new one."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {path}: {os.strerror(e)}")
    finally:
        os.close(fd)


class in_netns:
    """with in_netns(name): ... runs the block (this thread) in namespace `name`."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.back = os.open("/proc/self/ns/net", os.O_RDONLY)
        setns(f"/run/netns/{self.name}")
        return self

    def __exit__(self, *exc):
        try:
            setns(f"/proc/self/fd/{self.back}")
        finally:
            os.close(self.back)
        return False


def softnet_bin():
    b = os.environ.get("SOFTNET_BIN") or os.path.join(REPO, "target", "release", "softnet")
    if not os.path.isabs(b):
        b = os.path.join(REPO, b)
    if not os.access(b, os.X_OK):
        raise SystemExit(
            f"softnet binary not found at {b}: build it (cargo build --release --bins) or set SOFTNET_BIN"
        )
    return b


def log(msg):
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class TestFailure(Exception):
    pass


def make_file(path, mb):
    """Writes `mb` MiB of random bytes to `path`; returns their SHA-256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(mb):
            chunk = os.urandom(1 << 20)
            h.update(chunk)
            f.write(chunk)
    return h.hexdigest()


def sha(path):
    """The SHA-256 of the file at `path`, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def require_root():
    if os.geteuid() != 0:
        print("NOT RUN: end-to-end tests need root", flush=True)
        sys.exit(2)


def run(cmd, check_rc=True, timeout=60, input=None):
    """Runs a command (a string is split with shlex); returns CompletedProcess
    with text stdout/stderr."""
    args = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as e:
        raise TestFailure(f"timed out after {timeout}s: {' '.join(args)}\n{e.stdout or ''}{e.stderr or ''}")
    if check_rc and p.returncode != 0:
        raise TestFailure(
            f"exit {p.returncode}: {' '.join(args)}\nstdout: {p.stdout.strip()}\nstderr: {p.stderr.strip()}"
        )
    return p


# What a crafted-packet snippet needs of scapy, imported module by module:
# `from scapy.all import *` loads every layer scapy has (TLS, Kerberos,
# SMB...), 1.6 s of CPU against 0.5 s for these, and several seconds of
# wall time on a loaded machine, once per scapy process.
SCAPY_IMPORT = """\
from scapy.config import conf
from scapy.packet import *
from scapy.compat import raw
from scapy.volatile import *
from scapy.layers.l2 import *
from scapy.layers.inet import *
from scapy.layers.inet6 import *
from scapy.sendrecv import *
from scapy.utils import rdpcap, wrpcap
"""


def wait_until(what, fn, timeout=20.0, interval=0.2):
    """Calls fn until it returns a truthy value (returned), at most `timeout`
    seconds; raises TestFailure naming `what` otherwise. The first calls
    come quickly (10 ms apart, the gap doubling up to `interval`): most
    conditions hold within milliseconds, and a wait that sleeps a whole
    `interval` first costs that much each time (test_churn waits 200 times
    for a reload's log line)."""
    deadline = time.monotonic() + timeout
    last = None
    gap = min(0.01, interval)
    rounds = int(timeout / interval) + 2 + 8  # + the short gaps before `interval`
    for _ in range(rounds):
        try:
            v = fn()
            if v:
                return v
            last = v
        except TestFailure as e:
            last = e
        now = time.monotonic()
        if now >= deadline:
            break
        time.sleep(min(gap, deadline - now))
        gap = min(gap * 2, interval)
    raise TestFailure(f"timed out waiting for {what} (last: {last})")


class Net:
    """What router_topology built: namespace and interface names."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def config(self, routes="", workers=2, log="info", mtu_a=None, mtu_b=None, extra="", iface_extra=""):
        """A daemon config for this topology (socket filled in by Daemon);
        `iface_extra`: lines added to every [[interface]]."""
        ifs = [
            ("r0", self.dev_r0, MAC_R0, "10.0.1.1/24", mtu_a),
            ("r1", self.dev_r1, MAC_R1, "10.0.2.1/24", mtu_b),
        ]
        if getattr(self, "dev_r2", None):
            ifs.append(("r2", self.dev_r2, MAC_R2, "10.0.3.1/24", None))
        s = f'workers = {workers}\ncontrol = "@SOCKET@"\nlog = "{log}"\n{extra}\n'
        for name, dev, mac, addr, mtu in ifs:
            s += (
                f'\n[[interface]]\nname = "{name}"\ndriver = "{self.driver}"\ndevice = "{dev}"\n'
                f'mac = "{mac}"\naddr = ["{addr}"]\n{iface_extra}'
            )
            if mtu:
                s += f"mtu = {mtu}\n"
        return s + routes


class Topo:
    """Namespaces, links and processes of one test; removes all of it on close."""

    def __init__(self, tag):
        require_root()
        self.tag = f"sne2e-{tag}{os.getpid() % 100000}"
        self.namespaces = []
        self.procs = []
        self.daemons = []
        self.tmp = tempfile.mkdtemp(prefix=f"{self.tag}-")
        self.bin = softnet_bin()
        self.failed = False
        # The namespace this test started in (tests may setns() away).
        self.home_ns = os.open("/proc/self/ns/net", os.O_RDONLY)

    # ---- context -----------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is not None:
            self.failed = True
            print(f"\nFAILED: {et.__name__}: {ev}", flush=True)
            for d in self.daemons:
                d.print_tail()
        self.close()
        return False

    def step(self, msg):
        log(msg)

    def close(self):
        try:
            setns(f"/proc/self/fd/{self.home_ns}")
        except OSError as e:
            log(f"cannot return to the first namespace: {e}")
        for p in reversed(self.procs):
            self._kill(p)
        for d in self.daemons:
            d.stop(quiet=True)
        for ns in reversed(self.namespaces):
            # Anything still running inside (a forgotten child) goes first.
            pids = run(["ip", "netns", "pids", ns], check_rc=False).stdout.split()
            for pid in pids:
                if pid == str(os.getpid()):
                    continue
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", ns], check_rc=False)
        os.close(self.home_ns)
        if os.environ.get("SNE2E_KEEP") == "1" or self.failed:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    @staticmethod
    def _kill(p):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass

    # ---- namespaces and links ----------------------------------------------

    def ns(self, short):
        name = f"{self.tag}-{short}"
        if os.path.exists(f"/run/netns/{name}"):
            # A leftover of an earlier run that was killed before its
            # clean-up, whose pid this one has again (pid_max can be
            # 32,768): no live test owns it (the tag holds a live pid).
            log(f"removing a leftover namespace {name}")
            for pid in run(["ip", "netns", "pids", name], check_rc=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", name], check_rc=False)
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.ns_run(name, "ip link set lo up")
        self.ns_run(name, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
        return name

    def ns_run(self, ns, cmd, check_rc=True, timeout=60, input=None):
        args = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        return run(["ip", "netns", "exec", ns] + args, check_rc=check_rc, timeout=timeout, input=input)

    def ns_spawn(self, ns, cmd, stdout=None, stderr=None):
        """A background process in `ns`, killed at close (or by kill())."""
        args = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns] + args,
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        self.procs.append(p)
        return p

    def capture(self, ns, ifc, pcap, expr, opts=("-U",)):
        """tcpdump -i IFC -n OPTS -w PCAP EXPR in `ns`, in the background;
        returned once tcpdump says "listening on" (its capture is open: it
        sees every frame from then on; a fixed sleep after the start may
        be too short on a loaded machine)."""
        errpath = pcap + ".stderr"
        with open(errpath, "w") as err:
            p = self.ns_spawn(ns, ["tcpdump", "-i", ifc, "-n", *opts, "-w", pcap, *shlex.split(expr)], stderr=err)

        def listening():
            with open(errpath, errors="replace") as f:
                text = f.read()
            if p.poll() is not None:
                raise TestFailure(f"tcpdump exited with {p.returncode}: {text}")
            return "listening on" in text
        wait_until(f"tcpdump on {ifc} in {ns}", listening, timeout=30, interval=0.1)
        return p

    def wait_listen(self, ns, port, proto="t", timeout=20):
        """Waits until something listens on `port` in `ns` (ss -ltn / -lun)."""
        def listening():
            out = self.ns_run(ns, f"ss -Hnl{proto}", check_rc=False).stdout
            return re.search(rf":{port}\b", out)
        wait_until(f"port {port} listening in {ns}", listening, timeout=timeout)

    def kill(self, p):
        self._kill(p)

    def veth(self, ns1, if1, mac1, ns2, if2, mac2):
        run(
            ["ip", "-n", ns1, "link", "add", if1, "address", mac1, "type", "veth",
             "peer", "name", if2, "address", mac2, "netns", ns2]
        )
        for ns, ifc in ((ns1, if1), (ns2, if2)):
            self.offloads_off(ns, ifc)
            self.ns_run(ns, f"ip link set {ifc} up")

    def offloads_off(self, ns, ifc):
        # Without ethtool the peers keep TSO/GSO and send frames larger than
        # the MTU, which the router drops (Ifail): TCP crawls and tests fail
        # far from the cause. Say so here instead.
        if shutil.which("ethtool") is None:
            raise TestFailure("ethtool not found: needed to turn the veths' offloads off (apt-get install ethtool)")
        for f in OFFLOADS:
            self.ns_run(ns, f"ethtool -K {ifc} {f} off", check_rc=False)

    def host(self, ns, ifc, addr, gw=None):
        self.ns_run(ns, f"ip addr add {addr} dev {ifc}")
        self.ns_run(ns, f"ip link set {ifc} up")
        if gw:
            self.ns_run(ns, f"ip route add default via {gw}")

    def router_port(self, nsr, driver, port, veth_end):
        """Makes the router's end of a wire. packet: the veth end itself, no
        address, and an nftables ingress drop after the packet taps so that
        the kernel does no IP work on it. tap: a TAP `port` whose kernel side
        is wired to the veth end with nftables netdev fwd both ways.
        xdp: the veth end itself (XDP takes the frames from the kernel).
        Returns the device the daemon attaches to."""
        if driver == "xdp":
            return veth_end
        if driver == "packet":
            self.ns_run(
                nsr, "nft -f -",
                input=(f"table netdev sne2e_drop_{veth_end} {{\n"
                       f"  chain in {{ type filter hook ingress device \"{veth_end}\" priority 0; drop; }}\n}}\n"),
            )
            return veth_end
        self.ns_run(nsr, f"ip tuntap add dev {port} mode tap multi_queue")
        self.ns_run(nsr, f"ip link set {port} up")
        self.ns_run(
            nsr, "nft -f -",
            input=(f"table netdev sne2e_wire_{port} {{\n"
                   f"  chain w_in {{ type filter hook ingress device \"{veth_end}\" priority 0; fwd to \"{port}\"; }}\n"
                   f"  chain t_in {{ type filter hook ingress device \"{port}\" priority 0; fwd to \"{veth_end}\"; }}\n"
                   f"}}\n"),
        )
        return port

    def router_topology(self, driver="packet", third=False, host_c=False):
        """A (10.0.1.2) -- r0 [R: 10.0.1.1 | 10.0.2.1] r1 -- B (10.0.2.2);
        with host_c, C (10.0.2.3) shares B's side through a bridge in ns `sw`;
        with third, D (10.0.3.2) on a third router port r2 (10.0.3.1)."""
        check(driver in ("packet", "tap", "xdp"), driver)
        a, r, b = self.ns("a"), self.ns("r"), self.ns("b")
        net = Net(driver=driver, a=a, r=r, b=b, c=None, d=None, dev_r2=None)
        # Router-side veth ends: used directly (packet) or wired to TAPs (tap).
        self.veth(a, "a0", MAC_A, r, "ra", "02:00:00:00:01:fd")
        if host_c:
            # B and C behind a switch (a bridge in its own namespace).
            sw = self.ns("sw")
            c = self.ns("c")
            net.c = c
            self.ns_run(sw, "ip link add br0 type bridge stp_state 0 forward_delay 0")
            self.ns_run(sw, "ip link set br0 up")
            self.veth(r, "rb", "02:00:00:00:02:fd", sw, "s0", "02:00:00:00:02:f0")
            self.veth(b, "b0", MAC_B, sw, "s1", "02:00:00:00:02:f1")
            self.veth(c, "c0", MAC_C, sw, "s2", "02:00:00:00:02:f2")
            for p in ("s0", "s1", "s2"):
                self.ns_run(sw, f"ip link set {p} master br0")
            self.host(c, "c0", "10.0.2.3/24", "10.0.2.1")
        else:
            self.veth(b, "b0", MAC_B, r, "rb", "02:00:00:00:02:fd")
        self.host(a, "a0", "10.0.1.2/24", "10.0.1.1")
        self.host(b, "b0", "10.0.2.2/24", "10.0.2.1")
        net.dev_r0 = self.router_port(r, driver, "t0", "ra")
        net.dev_r1 = self.router_port(r, driver, "t1", "rb")
        if third:
            d = self.ns("d")
            net.d = d
            self.veth(d, "d0", MAC_D, r, "rd", "02:00:00:00:03:fd")
            self.host(d, "d0", "10.0.3.2/24", "10.0.3.1")
            net.dev_r2 = self.router_port(r, driver, "t2", "rd")
        return net

    # ---- daemon -------------------------------------------------------------

    def daemon(self, config, ns=None, net=None, name="softnet", wait=True, log_level=None):
        d = Daemon(self, config, ns or (net.r if net else None), name=name, log_level=log_level)
        self.daemons.append(d)
        d.start(wait=wait)
        return d


class Daemon:
    def __init__(self, topo, config, ns, name="softnet", log_level=None):
        self.topo = topo
        self.ns = ns
        self.dir = tempfile.mkdtemp(prefix=f"{name}-", dir=topo.tmp)
        self.socket = os.path.join(self.dir, "softnet.sock")
        self.cfg = os.path.join(self.dir, "softnet.toml")
        self.logfile = os.path.join(self.dir, "softnet.log")
        self.log_level = log_level
        self.write_config(config)
        self.proc = None
        self._logf = None

    def write_config(self, config):
        with open(self.cfg + ".new", "w") as f:
            f.write(config.replace("@SOCKET@", self.socket))
        os.replace(self.cfg + ".new", self.cfg)

    def start(self, wait=True):
        self._logf = open(self.logfile, "ab")
        args = [self.topo.bin, "up", "-c", self.cfg]
        if self.log_level:
            args += ["--log", self.log_level]
        if self.ns:
            args = ["ip", "netns", "exec", self.ns] + args
        log(f"start daemon: {' '.join(args)}")
        # ip netns exec execs the command: the pid is the daemon's.
        self.proc = subprocess.Popen(args, stdout=self._logf, stderr=self._logf, stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=30):
        def ready():
            if self.proc.poll() is not None:
                raise TestFailure(f"daemon exited with {self.proc.returncode}:\n{self.log_text()}")
            return self.admin("ifconfig", check_rc=False).returncode == 0

        wait_until("the daemon's control socket", ready, timeout=timeout, interval=0.2)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def admin(self, *args, check_rc=True, timeout=30):
        if len(args) == 1 and isinstance(args[0], str) and " " in args[0]:
            args = shlex.split(args[0])
        return run([self.topo.bin, "--socket", self.socket] + list(args), check_rc=check_rc, timeout=timeout)

    def out(self, *args, **kw):
        return self.admin(*args, **kw).stdout

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, quiet=False, timeout=15):
        """SIGTERM, wait; SIGKILL if it does not go. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if not quiet:
                log("stop daemon (SIGTERM)")
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log("daemon did not stop on SIGTERM: SIGKILL")
                self.proc.kill()
                self.proc.wait(timeout=10)
                if not quiet:
                    raise TestFailure("daemon did not stop within 15 s of SIGTERM")
        if self._logf:
            self._logf.close()
            self._logf = None
        return self.proc.returncode

    def log_text(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_lines(self):
        return self.log_text().splitlines()

    def wait_log(self, pattern, start=0, timeout=10):
        """Waits for a log line matching regex `pattern` among lines[start:]."""
        rx = re.compile(pattern)

        def found():
            return [l for l in self.log_lines()[start:] if rx.search(l)]

        return wait_until(f"log line /{pattern}/", found, timeout=timeout)

    def print_tail(self, n=60):
        lines = self.log_lines()
        print(f"---- daemon log ({self.logfile}), last {min(n, len(lines))} of {len(lines)} lines ----")
        for l in lines[-n:]:
            print("  " + l)
        print("---- end of daemon log ----", flush=True)


# ---- parsing what the admin commands print ----------------------------------


def enable_ipv6(t, ns, ifc, addr, gw):
    """IPv6 on a peer's interface (the topologies turn it off): `addr`
    without DAD, no router advertisements taken, default route via `gw`."""
    t.ns_run(ns, "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0")
    t.ns_run(ns, f"sysctl -qw net.ipv6.conf.{ifc}.disable_ipv6=0 net.ipv6.conf.{ifc}.accept_ra=0")
    t.ns_run(ns, f"ip -6 addr add {addr} dev {ifc} nodad")
    t.ns_run(ns, f"ip -6 route add default via {gw} dev {ifc}")


def _stat_key(k):
    """A counter's description without the plural (netstat prints "1 packet",
    "2 packets", "1 ARP reply", "2 ARP replies")."""
    words = []
    for w in k.lower().split():
        if w.endswith("ies"):
            w = w[:-3] + "y"
        elif w.endswith("s") and len(w) > 2:
            w = w[:-1]
        words.append(w)
    return " ".join(words)


class Counters(dict):
    """netstat -s counters: c["ip: packets forwarded"] (section: description,
    plural or not) or c["packets forwarded"] (the first section that has it)."""

    def __getitem__(self, k):
        for key in (k, _stat_key(k)):
            if dict.__contains__(self, key):
                return dict.__getitem__(self, key)
        raise TestFailure(f"netstat -s has no counter {k!r} ({_stat_key(k)!r})")

    def get(self, k, default=None):
        try:
            return self[k]
        except TestFailure:
            return default


def netstat_s_counters(text):
    out = Counters()
    section = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            section = line.strip().rstrip(":")
            continue
        m = re.match(r"\s*(\d+)\s+(.*)$", line)
        if m:
            n, desc = int(m.group(1)), m.group(2).strip()
            dict.__setitem__(out, _stat_key(f"{section}: {desc}"), n)
            dict.setdefault(out, _stat_key(desc), n)
    return out


def arp_table(text):
    """arp -an: list of dicts with host, mac, netif, expire, flags."""
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("Host"):
            continue
        parts = line.split()
        row = {"host": parts[0], "mac": parts[1] if len(parts) > 1 else "",
               "netif": parts[2] if len(parts) > 2 else "",
               "expire": parts[3] if len(parts) > 3 else "",
               "flags": parts[4] if len(parts) > 4 else "", "line": line}
        rows.append(row)
    return rows


def arp_entry(text, host):
    for r in arp_table(text):
        if r["host"] == host:
            return r
    return None


def _terminated(signum, frame):
    # Back to the default: a second SIGTERM during the clean-up ends it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise TestFailure("terminated by SIGTERM (tests/run.sh's timeout?)")


def main(fn):
    """Runs a test function; exit 0/1 with a last line saying which.
    SIGTERM (run.sh's `timeout 600`) raises in the test, so that its Topo
    still stops its daemons and traffic and removes its namespaces: by
    default Python dies at once and leaves them running (a flood of
    test_churn's runs 300 s) under the tests that come after."""
    name = os.path.basename(sys.argv[0])
    t0 = time.monotonic()
    signal.signal(signal.SIGTERM, _terminated)
    try:
        fn()
    except SystemExit:
        raise
    except BaseException:
        # The Topo context already printed the daemon's log tail.
        traceback.print_exc()
        print(f"FAIL {name} ({time.monotonic() - t0:.0f} s)", flush=True)
        sys.exit(1)
    print(f"PASS {name} ({time.monotonic() - t0:.0f} s)", flush=True)
    sys.exit(0)


class Monitor:
    """`softnet route monitor` in the background, its output in a file."""

    def __init__(self, topo, daemon, args=()):
        self.path = os.path.join(daemon.dir, f"monitor-{len(topo.procs)}.txt")
        self.f = open(self.path, "wb")
        self.proc = subprocess.Popen(
            [topo.bin, "--socket", daemon.socket, "route", *args, "monitor"],
            stdout=self.f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        topo.procs.append(self.proc)

    def text(self):
        with open(self.path, errors="replace") as f:
            return f.read()

    def messages(self):
        """[{type, seq, dst, ifname, what, text}] in order of arrival."""
        out = []
        for block in re.split(r"\n\s*\n", self.text()):
            block = block.strip("\n")
            m = re.match(r"(RTM_[A-Z]+):", block)
            if not m:
                continue
            seq = re.search(r"\bseq (\d+)", block)
            msg = {"type": m.group(1), "seq": int(seq.group(1)) if seq else None, "text": block,
                   "dst": None, "gateway": None}
            lines = block.splitlines()
            for i, l in enumerate(lines):
                sm = re.match(r"sockaddrs: <([A-Z,]+)>", l)
                if sm and i + 1 < len(lines):
                    names, vals = sm.group(1).split(","), lines[i + 1].split()
                    for n, v in zip(names, vals):
                        msg[n.lower()] = v
            nm = re.search(r"\bname (\S+?),", block)
            msg["ifname"] = nm.group(1) if nm else None
            wm = re.search(r"what: (\w+)", block)
            msg["what"] = wm.group(1) if wm else None
            out.append(msg)
        return out

    def wait_subscribed(self, daemon, tries=20):
        """Adds probe routes 198.51.100.K/32 (blackhole, K new each time)
        until one shows up in this monitor (from then on it sees every
        change); every probe is deleted again. Returns the sequence number
        of the probe seen."""
        for _ in range(tries):
            daemon.probes = getattr(daemon, "probes", 0) + 1
            dst = f"198.51.{100 + daemon.probes // 250}.{daemon.probes % 250 + 1}"
            daemon.admin("route", "add", f"{dst}/32", "-blackhole")
            try:
                m = wait_until("the monitor's first message", lambda: [
                    m for m in self.messages() if m["type"] == "RTM_ADD" and m["dst"] == dst], timeout=1.5)
                return m[0]["seq"]
            except TestFailure:
                check(self.proc.poll() is None, f"route monitor exited:\n{self.text()}")
            finally:
                daemon.admin("route", "delete", f"{dst}/32", check_rc=False)
        raise TestFailure("route monitor never showed a route added")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.f.close()


def nft_counters(topo, ns, table):
    """{counter-rule comment: packets} from `nft list table inet TABLE`."""
    out = topo.ns_run(ns, f"nft list table inet {table}").stdout
    res = {}
    for m in re.finditer(r'counter packets (\d+) bytes \d+\s+comment "([^"]+)"', out):
        res[m.group(2)] = int(m.group(1))
    return res


class Drops:
    """The counters of every place a datagram crossing the router can be
    dropped and counted: the router's interfaces (`netstat -i`'s Ifail,
    Idrop (the kernel's ring full included) and Ofail), the receiver's UDP
    (`nstat`: UdpRcvbufErrors, UdpInErrors: its socket buffer full while
    the receiving program waited for a CPU) and every Linux interface's
    drop counters in `namespaces`. `since(before)` gives what moved.

    A loss check on a shared, loaded machine compares the datagrams lost
    with these: a router starved of CPU for a second drops, and counts it;
    what no counter explains is the router's fault. (A netdev ingress
    `drop` rule, as router_port puts on the packet driver's veth ends,
    moves none of these.)"""

    SYS = ("cd /sys/class/net && for d in *; do for f in $d/statistics/*dropped $d/statistics/*fifo_errors "
           "$d/statistics/rx_missed_errors $d/statistics/rx_over_errors; do echo $f $(cat $f); done; done")

    def __init__(self, topo, daemon, receiver, namespaces):
        self.t, self.d, self.receiver, self.namespaces = topo, daemon, receiver, list(namespaces)

    def snapshot(self):
        out = {}
        for line in self.d.out("netstat", "-i").splitlines()[1:]:
            f = line.split()
            if len(f) >= 9 and f[2] == "<Link>":
                # Name Mtu Network Address Ipkts Ifail Opkts Ofail Idrop
                out[f"router {f[0]} Ifail"] = int(f[5])
                out[f"router {f[0]} Ofail"] = int(f[7])
                out[f"router {f[0]} Idrop"] = int(f[8])
        nstat = self.t.ns_run(self.receiver, "nstat -az UdpRcvbufErrors UdpInErrors").stdout
        for m in re.finditer(r"^(Udp\w+)\s+(\d+)", nstat, re.M):
            out[f"{self.receiver} {m.group(1)}"] = int(m.group(2))
        for ns in self.namespaces:
            for line in self.t.ns_run(ns, ["sh", "-c", self.SYS]).stdout.splitlines():
                f = line.split()
                if len(f) == 2 and f[1].isdigit():
                    out[f"{ns} {f[0]}"] = int(f[1])
        return out

    def since(self, before):
        """{counter: increase} of the counters that moved since `before`."""
        now = self.snapshot()
        return {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}

    @staticmethod
    def lost(since):
        """The datagrams `since` counts as dropped (UdpInErrors counts
        UdpRcvbufErrors' drops too: those are left out)."""
        return sum(v for k, v in since.items() if not k.endswith("UdpRcvbufErrors"))
