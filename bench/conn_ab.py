#!/usr/bin/env python3
"""Connections per second of two builds of examples/benchmark, A and B,
interleaved (BENCHMARKS.md §4, issue 13): bench/tcp_vs.py's connection
row (connect, read the 1 KB answer, close; 4 client threads; softnet with
1 worker on a single-queue TAP) for each binary in turn, in namespaces of
its own (cab-a, cab-b) so that it meets no other run of tcp_vs.py. The
client is A's binary for both, so only the server differs.

usage: bench/conn_ab.py A_BIN B_BIN [-n ROUNDS] [--conns N]
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


def setup():
    teardown()
    for ns in NAMES.values():
        tcp_vs.sh("ip", "netns", "add", ns)
        tcp_vs.sh("ip", "-n", ns, "link", "set", "lo", "up")
        tcp_vs.sh("ip", "-n", ns, "tuntap", "add", "dev", "tvsn0", "mode", "tap")
        tcp_vs.sh("ip", "-n", ns, "addr", "add", f"{tcp_vs.CLIENT}/24", "dev", "tvsn0")
        tcp_vs.sh("ip", "-n", ns, "link", "set", "tvsn0", "up")
        tcp_vs.offloads_off(ns, "tvsn0")


def teardown():
    for ns in NAMES.values():
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("-n", type=int, default=5, help="rounds (each runs A and B once)")
    ap.add_argument("--conns", type=int, default=10_000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("conn_ab: needs root (namespaces, TAP)")
    bins = {"a": os.path.abspath(args.a), "b": os.path.abspath(args.b)}
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} load {os.getloadavg()} nproc {os.cpu_count()}", flush=True)
    logdir = tempfile.mkdtemp(prefix="conn_ab.")
    servers = {}
    res = {"a": [], "b": []}
    try:
        setup()
        for k in ("a", "b"):
            tcp_vs.NS["softnet"] = (NAMES[k], None)
            tcp_vs.BENCH = bins[k]
            d = os.path.join(logdir, k)
            os.mkdir(d)
            servers[k] = tcp_vs.Server("softnet", d)
        # The client is A's binary for both.
        tcp_vs.BENCH = bins["a"]
        for r in range(args.n):
            for k in ("a", "b") if r % 2 == 0 else ("b", "a"):
                tcp_vs.NS["softnet"] = (NAMES[k], None)
                cps, us = tcp_vs.conns("softnet", servers[k], args.conns)
                res[k].append((cps, us))
                print(f"run {r} {k}: {cps:.0f} conn/s, server {us:.1f} CPU µs/conn, load {os.getloadavg()[0]:.1f}",
                      flush=True)
        print(f"# medians of {args.n} runs; load at the end {os.getloadavg()}")
        for k in ("a", "b"):
            cps, us = zip(*res[k])
            print(f"{k} {bins[k]}: {statistics.median(cps):.0f} conn/s, {statistics.median(us):.1f} CPU µs/conn "
                  f"(range {min(us):.1f}-{max(us):.1f})")
    finally:
        for s in servers.values():
            s.stop()
        teardown()


if __name__ == "__main__":
    main()
