#!/usr/bin/env python3
"""Connections per second of two builds of examples/benchmark, A and B,
interleaved (BENCHMARKS.md §4, issue 13): bench/tcp_vs.py's connection
row (connect, read the 1 KB answer, close; 4 client threads; softnet with
1 worker on a single-queue TAP) for each binary in turn, in namespaces of
its own (cab-a, cab-b) so that it meets no other run of tcp_vs.py. The
client is A's binary for both, so only the server differs.

With --kernel, the kernel's row runs in the same rounds: A's binary
with --kernel (the same application code on the kernel's sockets, TCP_CORK
for the answer and its FIN) in a namespace of its own across a veth pair
(cab-kc, client; cab-ks, server; offloads off), the client the same; the
kernel's CPU column is a lower bound (a veth's receive runs in the
sender's context, the client's), as in tcp_vs.py.

usage: bench/conn_ab.py A_BIN B_BIN [-n ROUNDS] [--conns N] [--kernel]
prints one line per run and, at the end, the medians of conn/s and of
the server's CPU µs per connection (utime + stime of its process).
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

NAMES = {"a": "cab-a", "b": "cab-b"}
# The kernel's row: client and server namespaces, the veth's two ends.
KERNEL = ("cab-kc", "cab-ks")
KVETH = ("cabk0", "cabk1")


def setup(kernel):
    teardown()
    if kernel:
        (c, s), (cdev, sdev) = KERNEL, KVETH
        for ns in KERNEL:
            tcp_vs.sh("ip", "netns", "add", ns)
            tcp_vs.sh("ip", "-n", ns, "link", "set", "lo", "up")
        tcp_vs.sh("ip", "-n", c, "link", "add", cdev, "type", "veth", "peer", "name", sdev, "netns", s)
        for ns, dev, a in ((c, cdev, tcp_vs.CLIENT), (s, sdev, tcp_vs.SERVER)):
            tcp_vs.sh("ip", "-n", ns, "addr", "add", f"{a}/24", "dev", dev)
            tcp_vs.sh("ip", "-n", ns, "link", "set", dev, "up")
            tcp_vs.offloads_off(ns, dev)
    for ns in NAMES.values():
        tcp_vs.sh("ip", "netns", "add", ns)
        tcp_vs.sh("ip", "-n", ns, "link", "set", "lo", "up")
        tcp_vs.sh("ip", "-n", ns, "tuntap", "add", "dev", "tvsn0", "mode", "tap")
        tcp_vs.sh("ip", "-n", ns, "addr", "add", f"{tcp_vs.CLIENT}/24", "dev", "tvsn0")
        tcp_vs.sh("ip", "-n", ns, "link", "set", "tvsn0", "up")
        tcp_vs.offloads_off(ns, "tvsn0")


def teardown():
    for ns in list(NAMES.values()) + list(KERNEL):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("-n", type=int, default=5, help="rounds (each runs A and B once)")
    ap.add_argument("--conns", type=int, default=10_000)
    ap.add_argument("--kernel", action="store_true", help="the kernel's row in the same rounds")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("conn_ab: needs root (namespaces, TAP)")
    bins = {"a": os.path.abspath(args.a), "b": os.path.abspath(args.b)}
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} load {os.getloadavg()} nproc {os.cpu_count()}", flush=True)
    logdir = tempfile.mkdtemp(prefix="conn_ab.")
    servers = {}
    keys = ("a", "b", "kernel") if args.kernel else ("a", "b")
    if args.kernel:
        bins["kernel"] = bins["a"] + " --kernel"
    res = {k: [] for k in keys}
    try:
        setup(args.kernel)
        for k in ("a", "b"):
            tcp_vs.NS["softnet"] = (NAMES[k], None)
            tcp_vs.BENCH = bins[k]
            d = os.path.join(logdir, k)
            os.mkdir(d)
            servers[k] = tcp_vs.Server("softnet", d)
        # The client is A's binary for all.
        tcp_vs.BENCH = bins["a"]
        if args.kernel:
            tcp_vs.NS["kernel"] = KERNEL
            servers["kernel"] = tcp_vs.Server("kernel", logdir)
        for r in range(args.n):
            # Each round in another order (rotated), so that no server
            # always runs first.
            for k in keys[r % len(keys):] + keys[:r % len(keys)]:
                mode = "kernel" if k == "kernel" else "softnet"
                if k != "kernel":
                    tcp_vs.NS["softnet"] = (NAMES[k], None)
                cps, us = tcp_vs.conns(mode, servers[k], args.conns)
                res[k].append((cps, us))
                print(f"run {r} {k}: {cps:.0f} conn/s, server {us:.1f} CPU µs/conn, load {os.getloadavg()[0]:.1f}",
                      flush=True)
        print(f"# medians of {args.n} runs; load at the end {os.getloadavg()}")
        for k in keys:
            cps, us = zip(*res[k])
            print(f"{k} {bins[k]}: {statistics.median(cps):.0f} conn/s, {statistics.median(us):.1f} CPU µs/conn "
                  f"(range {min(us):.1f}-{max(us):.1f})")
    finally:
        for s in servers.values():
            s.stop()
        teardown()


if __name__ == "__main__":
    main()
