#!/usr/bin/env python3
"""Bulk TCP of several builds of examples/benchmark (and smoltcp's example
as the yardstick), interleaved (BENCHMARKS.md §4, issue 13): bench/tcp_vs.py's
softnet bulk row (1 GB or `-b` bytes through one softnet worker on a
single-queue TAP, the Linux client `benchmark --client reader|writer`) for
each server in turn, rotated each round, every server in a namespace of its
own (PREFIX0, PREFIX1, ...: `--ns`, default "bab") so that it meets no
other run of tcp_vs.py.

usage: bench/bulk_ab.py SERVER... [-n ROUNDS] [-b BYTES] [--dirs "reader writer"] [--client-cpu same|other]
  SERVER: NAME=BIN[,VAR=VALUE...] (a softnet benchmark binary, VAR=VALUE put
          in its environment), or `smoltcp` (SMOLTCP_BENCH's example, its
          own client thread).
The client is the first softnet server's binary for all of them, so only the
server differs. `--client-cpu` pins each softnet server's worker thread to
CPU 0 and the Linux client to CPU 0 (`same`) or CPU 1 (`other`): the two
regimes a sending softnet alternates between when the scheduler places the
client (BENCHMARKS.md §4, session 13); smoltcp is left unpinned. Prints one line per run and, at the end, per server and
direction the medians and ranges of Gbit/s, server CPU s/GB (utime + stime
of its process; smoltcp: its main thread) and client + server CPU s/GB.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tcp_vs  # noqa: E402


def setup(names):
    teardown(names)
    for ns in names:
        tcp_vs.sh("ip", "netns", "add", ns)
        tcp_vs.sh("ip", "-n", ns, "link", "set", "lo", "up")
        tcp_vs.sh("ip", "-n", ns, "tuntap", "add", "dev", f"{ns}t", "mode", "tap")
        tcp_vs.sh("ip", "-n", ns, "addr", "add", f"{tcp_vs.CLIENT}/24", "dev", f"{ns}t")
        tcp_vs.sh("ip", "-n", ns, "link", "set", f"{ns}t", "up")
        tcp_vs.offloads_off(ns, f"{ns}t")


def teardown(names):
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def use(ns):
    """Points tcp_vs's softnet and smoltcp rows at namespace `ns`."""
    tcp_vs.NS["softnet"] = (ns, None)
    tcp_vs.NS["smoltcp"] = (ns, None)
    tcp_vs.TAP["softnet"] = f"{ns}t"
    tcp_vs.TAP["smoltcp"] = f"{ns}t"


def pin_worker(pid):
    """Pins the softnet worker threads of the process behind `ip netns exec`
    (pid) to CPU 0."""
    for p in [pid] + [int(c) for c in tcp_vs.sh("pgrep", "-P", str(pid), check=False).split()]:
        for tid in os.listdir(f"/proc/{p}/task"):
            with open(f"/proc/{p}/task/{tid}/comm") as f:
                if f.read().startswith("softnet-w"):
                    os.sched_setaffinity(int(tid), {0})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("servers", nargs="+")
    ap.add_argument("-n", type=int, default=5, help="rounds (each runs every server once)")
    ap.add_argument("-b", type=int, default=300_000_000, help="bytes per transfer (smoltcp: always 1e9)")
    ap.add_argument("--dirs", default="reader writer")
    ap.add_argument("--ns", default="bab")
    ap.add_argument("--client-cpu", choices=("same", "other"), default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bulk_ab: needs root (namespaces, TAP)")
    specs = []
    for s in args.servers:
        if s == "smoltcp":
            specs.append(("smoltcp", None, {}))
            continue
        name, _, rest = s.partition("=")
        binary, *env = rest.split(",")
        specs.append((name, os.path.abspath(binary), dict(e.split("=", 1) for e in env)))
    clients = [b for _, b, _ in specs if b]
    if not clients:
        sys.exit("bulk_ab: at least one softnet server (its binary is the client)")
    names = [f"{args.ns}{i}" for i in range(len(specs))]
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} load {os.getloadavg()} nproc {os.cpu_count()}", flush=True)
    for (name, b, env), ns in zip(specs, names):
        print(f"# {name}: {b or tcp_vs.SMOL} {env or ''} in {ns}", flush=True)
    logdir = tempfile.mkdtemp(prefix="bulk_ab.")
    servers = {}
    res = {}
    saved = dict(os.environ)
    try:
        setup(names)
        for (name, b, env), ns in zip(specs, names):
            if b is None:
                continue
            use(ns)
            tcp_vs.BENCH = b
            os.environ.clear()
            os.environ.update(saved, **env)
            d = os.path.join(logdir, name)
            os.mkdir(d)
            servers[name] = tcp_vs.Server("softnet", d)
        os.environ.clear()
        os.environ.update(saved)
        tcp_vs.BENCH = clients[0]
        if args.client_cpu:
            for s in servers.values():
                pin_worker(s.p.pid)
        cpu = {"same": 0, "other": 1}.get(args.client_cpu)
        order = list(zip(specs, names))
        for r in range(args.n):
            k = r % len(order)
            for (name, b, _), ns in order[k:] + order[:k]:
                use(ns)
                mode = "smoltcp" if b is None else "softnet"
                tcp_vs.CLIENT_CPU = cpu if b else None
                for kind in args.dirs.split():
                    g, scpu, ccpu, nb = tcp_vs.bulk(mode, servers.get(name), kind, args.b)
                    gb = nb / 1e9
                    row = (g, scpu / gb, (scpu + ccpu) / gb)
                    res.setdefault((name, kind), []).append(row)
                    print(f"run {r} {name:10} {kind}: {g:.3f} Gbit/s, server {row[1]:.3f} CPU s/GB, "
                          f"client+server {row[2]:.3f} CPU s/GB, load {os.getloadavg()[0]:.1f}", flush=True)
        print(f"# medians (ranges) of {args.n} runs; load at the end {os.getloadavg()}")
        for kind in args.dirs.split():
            for name, _, _ in specs:
                cols = list(zip(*res[(name, kind)]))
                print(f"{name:10} {kind:6} " + "  ".join(
                    f"{statistics.median(c):.3f} ({min(c):.2f}-{max(c):.2f})" for c in cols), flush=True)
    finally:
        for s in servers.values():
            s.stop()
        teardown(names)


if __name__ == "__main__":
    main()
