#!/usr/bin/env python3
"""softnet's TCP against smoltcp's `benchmark` example and the Linux kernel,
side by side in one run (issue 13; BENCHMARKS.md "TCP endpoints").

Five topologies of the same shape, each in namespaces of its own, client
192.168.69.100 (Linux) and server 192.168.69.1, MTU 1500, offloads off on
every device (ethtool -K ... off):

  kernel   tvsk-c  veth tvsk0 ─── veth tvsk1  tvsk-s  (kernel sockets:
                                                  benchmark --kernel)
  softnet  tvsn    TAP tvsn0 ─── softnet, 1 worker (benchmark -c)
  smoltcp  tvsm    TAP tvsm0 ─── smoltcp (its examples/benchmark)
  sn-pkt   tvsp-c  veth tvsp0 ─── veth tvsp1  tvsp-s  softnet, 1 worker,
                                  driver = "packet" (AF_PACKET rings)
  sn-xdp   tvsx-c  veth tvsx0 ─── veth tvsx1  tvsx-s  softnet, 1 worker,
                                  driver = "xdp" (AF_XDP, copy mode)

The last two are the kernel row's veth pair with softnet in the server's
namespace instead of the kernel's sockets: softnet takes the server end
(tvsp1 / tvsx1, no kernel address on it, IPv6 off), the client is the
same Linux client as for the kernel row. smoltcp's example opens only a
TAP, so it stays on one.

The servers are examples/benchmark.rs (on softnet's sockets, or on the
kernel's with --kernel: the same application code) and smoltcp's own
example, whose client is a thread of its own process; ours is
`benchmark --client` (the same loop: 1 GB, 1 MB reads/writes).

Per run, the three in a rotated order:
  bulk: the client reads 1 GB from port 1234 (the server sends) and writes
        1 GB into 1235 (the server receives): Gbit/s from the client's
        clock; CPU seconds per GB of the server ("the stack's process":
        softnet's whole process; smoltcp's main thread, which runs the
        stack and the application, not its client thread; the kernel
        server process, which is charged the softirq work that runs in
        its context only) and of client + server together (the figure
        comparable across the three).
  conn: 10,000 connections (4 client threads), each: connect, read the
        1 KB answer to its end, close (kernel and softnet): conn/s and
        server CPU µs per connection.
  idle: 10,000 idle connections held open: growth of the server's RSS,
        and of the kernel's slab (/proc/meminfo Slab: client sockets for
        softnet; client and server sockets for the kernel), per connection.
Medians over the runs are printed at the end, the raw lines as they come.

usage: bench/tcp_vs.py [-n RUNS] [-b BYTES] [--conns N] [--idle N] [--modes "M ..."]
                      [--pkt-ring frames|blocks[:MIB]]
       (--conns 0 / --idle 0 skip those rows; --pkt-ring sets the sn-pkt
       interface's `rx_ring` and `rx_ring_mib`, else the binary's default)
env:   BENCH_BIN (target/release/examples/benchmark), BENCH_NS (names' prefix, "tvs"),
       BENCH_TAP_OFFLOAD=1 (softnet's TAP with `offload = true`),
       SMOLTCP_BENCH (/work/smoltcp-build/smoltcp/target/release/examples/benchmark)
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.environ.get("BENCH_BIN", os.path.join(ROOT, "target/release/examples/benchmark"))
SMOL = os.environ.get("SMOLTCP_BENCH", "/work/smoltcp-build/smoltcp/target/release/examples/benchmark")
TCK = os.sysconf("SC_CLK_TCK")
SERVER, CLIENT = "192.168.69.1", "192.168.69.100"
# Namespace and device names start with BENCH_NS (default "tvs"), so that
# two runs with different prefixes do not meet (at most 9 characters: a
# device name is at most 15).
P = os.environ.get("BENCH_NS", "tvs")[:9]
NS = {
    "kernel": (f"{P}k-c", f"{P}k-s"),
    "softnet": (f"{P}n", None),
    "smoltcp": (f"{P}m", None),
    "sn-pkt": (f"{P}p-c", f"{P}p-s"),
    "sn-xdp": (f"{P}x-c", f"{P}x-s"),
}
# The veth pair (client end, server end) of each veth topology, and the
# driver softnet takes the server end with (None: the kernel's sockets).
VETH = {"kernel": (f"{P}k0", f"{P}k1", None), "sn-pkt": (f"{P}p0", f"{P}p1", "packet"),
        "sn-xdp": (f"{P}x0", f"{P}x1", "xdp")}
TAP = {"softnet": f"{P}n0", "smoltcp": f"{P}m0"}
SOFTNET = ("softnet", "sn-pkt", "sn-xdp")


def sh(*args, check=True):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def offloads_off(ns, dev):
    subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off",
                    "tx", "off", "rx", "off", "sg", "off"], capture_output=True)


def setup(modes):
    teardown()
    for mode in modes:
        if mode not in VETH:
            continue
        (c, s), (cdev, sdev, driver) = NS[mode], VETH[mode]
        sh("ip", "netns", "add", c)
        sh("ip", "netns", "add", s)
        sh("ip", "-n", c, "link", "add", cdev, "type", "veth", "peer", "name", sdev, "netns", s)
        for ns, dev, a in ((c, cdev, CLIENT), (s, sdev, SERVER)):
            if driver is None or ns == c:
                sh("ip", "-n", ns, "addr", "add", f"{a}/24", "dev", dev)
            else:
                # softnet's end: the kernel of the server namespace keeps
                # out of it (no address, no IPv6 link-local traffic).
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            offloads_off(ns, dev)
    for mode, dev in TAP.items():
        if mode not in modes:
            continue
        ns = NS[mode][0]
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "tuntap", "add", "dev", dev, "mode", "tap")
        sh("ip", "-n", ns, "addr", "add", f"{CLIENT}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        offloads_off(ns, dev)


def teardown():
    for c, s in NS.values():
        for ns in (c, s):
            if ns:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def cpu(pid, tid=None):
    """utime + stime (s) of a process (all threads) or one thread."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TCK


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def slab_kb():
    with open("/proc/meminfo") as f:
        return int(re.search(r"Slab:\s+(\d+)", f.read()).group(1))


# The CPU the client runs on (taskset), None: the scheduler's choice.
CLIENT_CPU = None


def run_client(ns, args):
    """Runs `benchmark --client ...` in ns; (stdout fields, client CPU s)."""
    pin = [] if CLIENT_CPU is None else ["taskset", "-c", str(CLIENT_CPU)]
    p = subprocess.Popen(["ip", "netns", "exec", ns] + pin + [BENCH, "--client"] + args + ["--to", SERVER],
                         stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"client {args}: exit {p.returncode}")
    return out.split(), ru.ru_utime + ru.ru_stime


class Server:
    """A benchmark server (softnet or kernel) kept for the whole run."""

    def __init__(self, mode, logdir, pkt_ring=None):
        self.mode = mode
        ns = NS[mode][1] or NS[mode][0]
        if mode in SOFTNET:
            cfg = os.path.join(logdir, f"{mode}.toml")
            if mode == "softnet":
                iface = f'name = "{TAP[mode]}"\ndriver = "tap"\nmac = "02:00:00:00:00:01"\n'
                if os.environ.get("BENCH_TAP_OFFLOAD") == "1":
                    # The TAP with the virtio-net header: TCP super-segments.
                    iface += "offload = true\n"
            else:
                iface = f'name = "{VETH[mode][1]}"\ndriver = "{VETH[mode][2]}"\n'
                if mode == "sn-pkt" and pkt_ring:
                    kind, _, mib = pkt_ring.partition(":")
                    iface += f'rx_ring = "{kind}"\n' + (f"rx_ring_mib = {int(mib)}\n" if mib else "")
            with open(cfg, "w") as f:
                f.write(f'workers = 1\ncontrol = "{logdir}/{mode}.sock"\nlog = "warn"\n\n'
                        f'[[interface]]\n{iface}addr = ["{SERVER}/24"]\n')
            args = [BENCH, "-c", cfg, "--addr", SERVER]
        else:
            args = [BENCH, "--kernel", "--addr", SERVER]
        self.log = open(os.path.join(logdir, f"{mode}.log"), "w+")
        self.p = subprocess.Popen(["ip", "netns", "exec", ns] + args, stdout=self.log, stderr=self.log)
        for _ in range(200):
            self.log.seek(0)
            if f"listening on {SERVER}:1237" in self.log.read():
                if mode == "softnet" and os.environ.get("BENCH_TAP_OFFLOAD") == "1":
                    # The kernel's side of an offload TAP: softnet asked
                    # for TSO (TUNSETOFFLOAD), which needs scatter-gather,
                    # which offloads_off turned off for the plain rows.
                    subprocess.run(["ip", "netns", "exec", NS[mode][0], "ethtool", "-K", TAP[mode], "sg", "on",
                                    "tso", "on", "gso", "on"], capture_output=True)
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        self.log.seek(0)
        raise RuntimeError(f"{mode} server did not start: {self.log.read()}")

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def bulk(mode, server, kind, nbytes):
    """One bulk transfer: (Gbit/s, server CPU s, client CPU s, bytes)."""
    if mode == "smoltcp":
        # smoltcp's example starts its client thread before its sockets
        # listen: a client that lost that race is refused and panics, and
        # the process loops for ever. Such a try is killed and made again.
        for _ in range(5):
            r = smoltcp_bulk(kind)
            if r:
                return r
            time.sleep(1)
        raise RuntimeError(f"smoltcp {kind}: five tries failed")
    c0 = cpu(server.p.pid)
    (done, secs), ccpu = run_client(NS[mode][0], [kind, "--bytes", str(nbytes)])
    scpu = cpu(server.p.pid) - c0
    return int(done) * 8 / float(secs) / 1e9, scpu, ccpu, int(done)


def smoltcp_bulk(kind):
    """One run of smoltcp's example, or None when it hung or failed."""
    p = subprocess.Popen(["ip", "netns", "exec", NS["smoltcp"][0], SMOL, "--tap", TAP["smoltcp"], kind],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    main = [0.0]
    stop = threading.Event()

    def sample():
        # The main thread (the stack and the application); the client
        # is a thread of its own. Sampled until the process is gone.
        while not stop.is_set():
            try:
                main[0] = cpu(p.pid, p.pid)
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    watchdog = threading.Timer(120, p.kill)
    watchdog.start()
    out = p.stdout.read()
    watchdog.cancel()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    t.join()
    m = re.search(r"throughput: ([\d.]+) Gbps", out)
    if p.returncode != 0 or not m:
        print(f"# smoltcp {kind}: exit {p.returncode}, no figure: tried again", flush=True)
        return None
    total = ru.ru_utime + ru.ru_stime
    # smoltcp's AMOUNT is 1e9 bytes.
    return float(m.group(1)), main[0], total - main[0], 1e9


def conns(mode, server, n):
    c0 = cpu(server.p.pid)
    (ok, secs), ccpu = run_client(NS[mode][0], ["conn", "--conns", str(n), "--threads", "4"])
    scpu = cpu(server.p.pid) - c0
    if int(ok) < n * 0.99:
        raise RuntimeError(f"{mode}: only {ok} of {n} connections got their 1 KB")
    return int(ok) / float(secs), scpu / int(ok) * 1e6


def idle(mode, server, n):
    r0, s0 = rss_kb(server.p.pid), slab_kb()
    p = subprocess.Popen(["ip", "netns", "exec", NS[mode][0], BENCH, "--client", "idle", "--conns", str(n),
                          "--to", SERVER], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if not line or int(line[0]) != n:
        p.kill()
        raise RuntimeError(f"{mode}: idle client: {line}")
    time.sleep(1.0)
    r1, s1 = rss_kb(server.p.pid), slab_kb()
    p.stdin.close()
    p.wait(30)
    time.sleep(1.0)
    return (r1 - r0) * 1024 / n, (s1 - s0) * 1024 / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3, help="runs")
    ap.add_argument("-b", type=int, default=1_000_000_000, help="bytes per bulk transfer")
    ap.add_argument("--conns", type=int, default=10_000)
    ap.add_argument("--idle", type=int, default=10_000)
    ap.add_argument("--modes", default="kernel softnet smoltcp sn-pkt sn-xdp",
                    help="of kernel softnet smoltcp sn-pkt sn-xdp")
    ap.add_argument("--pkt-ring", default=None, metavar="frames|blocks[:MIB]",
                    help="the sn-pkt interface's RX ring (rx_ring, rx_ring_mib); default: the binary's")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("tcp_vs: needs root (namespaces, TAP)")
    modes = a.modes.split()
    if not modes or any(m not in NS for m in modes):
        sys.exit(f"tcp_vs: --modes takes {' '.join(NS)}")
    for b in [BENCH] + ([SMOL] if "smoltcp" in modes else []):
        if not os.path.exists(b):
            sys.exit(f"tcp_vs: {b} not built")
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} load {os.getloadavg()} nproc {os.cpu_count()}"
          + (f" sn-pkt rx ring {a.pkt_ring}" if a.pkt_ring and "sn-pkt" in modes else ""))
    logdir = tempfile.mkdtemp(prefix="tcp_vs.")
    res = {}
    servers = {}
    try:
        setup(modes)
        for m in modes:
            if m != "smoltcp":
                servers[m] = Server(m, logdir, a.pkt_ring)
        for r in range(a.n):
            order = modes[r % len(modes):] + modes[:r % len(modes)]
            for m in order:
                for kind in ("reader", "writer"):
                    g, scpu, ccpu, nb = bulk(m, servers.get(m), kind, a.b)
                    gb = nb / 1e9
                    row = (g, scpu / gb, (scpu + ccpu) / gb)
                    res.setdefault((m, kind), []).append(row)
                    print(f"run {r} {m:8} {kind}: {g:.3f} Gbit/s, server {row[1]:.3f} CPU s/GB, "
                          f"client+server {row[2]:.3f} CPU s/GB", flush=True)
                if m == "smoltcp" or a.conns == 0:
                    continue
                cps, us = conns(m, servers[m], a.conns)
                res.setdefault((m, "conn"), []).append((cps, us))
                print(f"run {r} {m:8} conn: {cps:.0f} conn/s, server {us:.1f} CPU µs/conn", flush=True)
                if r == 0 and a.idle > 0:
                    rss, slab = idle(m, servers[m], a.idle)
                    res[(m, "idle")] = [(rss, slab)]
                    print(f"run {r} {m:8} idle: server RSS +{rss:.0f} B/conn, kernel slab +{slab:.0f} B/conn",
                          flush=True)
        print(f"# medians of {a.n} runs; load at the end {os.getloadavg()}")
        for (m, kind), rows in sorted(res.items()):
            cols = list(zip(*rows))
            print(f"{m:8} {kind:6} " + "  ".join(f"{statistics.median(c):.3f}" for c in cols))
    finally:
        for s in servers.values():
            s.stop()
        teardown()


if __name__ == "__main__":
    main()
