#!/usr/bin/env python3
"""Sending over IPv6 on an offload TAP, A/B (issue 13, session 16 tso6).

The httpd example with `offload = true` on TAP tso6b0, its Linux client
(curl) in the same namespace on the TAP's kernel side, no pf. Each round
starts each binary in turn (interleaved: A, B, A, B, ...) and fetches
`--mb` MB `--fetches` times over IPv6 (and over IPv4 with `--inet`),
measuring per binary and family:

* Gbit/s: bytes over curl's wall time (`%{time_total}`);
* server CPU s/GB: the httpd process's utime + stime (/proc/PID/stat)
  over the fetches, per GB sent;
* bytes per skb the TAP's kernel side received (1,514 at most without
  super-frames; tens of KB with them).

The server is pinned to CPU 1 and curl to CPU 0 (the client on the other
core, as BENCHMARKS §4 session 14's first rows). Timings on a loaded
machine: read the load average printed with each round.

    python3 bench/tso6_ab.py main=/work/main/target/release/examples/httpd \\
        tso6=target/release/examples/httpd -n 3 --mb 200 --fetches 3 --inet
"""

import argparse
import os
import stat
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from lib_e2e import Topo, check, enable_ipv6, log, make_file, wait_until  # noqa: E402
from lib_sock import Embedded  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def tap_rx(t, ns):
    import json
    j = json.loads(t.ns_run(ns, "ip -s -j link show tso6b0").stdout)[0]
    return j["stats64"]["rx"]["packets"], j["stats64"]["rx"]["bytes"]


def one(t, name, binary, mb, fetches, families):
    """One run of `binary`: a fresh namespace and TAP, httpd, the fetches.
    Returns {family: (gbit/s, server s/GB, bytes/skb)}."""
    c = t.ns(f"c{name}")
    t.ns_run(c, "ip tuntap add dev tso6b0 mode tap")
    t.ns_run(c, "ip addr add 10.0.19.2/24 dev tso6b0")
    t.ns_run(c, "ip link set tso6b0 up")
    t.offloads_off(c, "tso6b0")
    enable_ipv6(t, c, "tso6b0", "fd19::2/64", "fd19::1")
    www = os.path.join(t.tmp, "www")
    wrap = os.path.join(t.tmp, f"httpd-{name}")
    with open(wrap, "w") as f:
        f.write(f"#!/bin/sh\nexec taskset -c 1 {binary} \"$@\"\n")
    os.chmod(wrap, os.stat(wrap).st_mode | stat.S_IEXEC)
    os.environ["HTTPD_BIN"] = wrap
    cfg = ('workers = 1\ncontrol = "@SOCKET@"\nlog = "info"\n\n'
           '[[interface]]\nname = "tso6b0"\ndriver = "tap"\ndevice = "tso6b0"\nmac = "02:00:00:00:19:01"\n'
           'addr = ["10.0.19.1/24", "fd19::1/64"]\noffload = true\n')
    d = Embedded(t, cfg, c, "httpd", ["--root", www, "--listen", "10.0.19.1:8080", "--listen", "[fd19::1]:8080"])
    d.start()
    wait_until("fd19::1 out of DAD", lambda: "tentative" not in d.out("ifconfig", "tso6b0"), timeout=15)
    res = {}
    for fam in families:
        url = "-g http://[fd19::1]:8080/big.bin" if fam == "inet6" else "http://10.0.19.1:8080/big.bin"
        curl = f"taskset -c 0 curl -sS --max-time 120 -o /dev/null -w '%{{http_code}} %{{time_total}}\\n' {url}"
        # One fetch to warm up (the connection's window, the page cache).
        t.ns_run(c, curl, timeout=150)
        p0, b0 = tap_rx(t, c)
        s0 = cpu_s(d.proc.pid)
        wall = 0.0
        for _ in range(fetches):
            out = t.ns_run(c, curl, timeout=150).stdout.split()
            check(out[0] == "200", f"curl: {out}")
            wall += float(out[1])
        s1 = cpu_s(d.proc.pid)
        p1, b1 = tap_rx(t, c)
        gb = fetches * mb * (1 << 20) / 1e9
        res[fam] = (gb * 8 / wall, (s1 - s0) / gb, (b1 - b0) / max(p1 - p0, 1))
    d.stop()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bins", nargs="+", help="NAME=PATH of an httpd example binary")
    ap.add_argument("-n", type=int, default=3, help="rounds")
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--fetches", type=int, default=3)
    ap.add_argument("--inet", action="store_true", help="IPv4 fetches too")
    a = ap.parse_args()
    bins = [b.split("=", 1) for b in a.bins]
    fams = ["inet6"] + (["inet"] if a.inet else [])
    rows = []
    with Topo("tso6ab") as t:
        www = os.path.join(t.tmp, "www")
        os.makedirs(www)
        make_file(os.path.join(www, "big.bin"), a.mb)
        for r in range(a.n):
            for i, (name, path) in enumerate(bins):
                load = os.getloadavg()[0]
                res = one(t, f"{r}{i}", os.path.abspath(path), a.mb, a.fetches, fams)
                for fam, (g, s, skb) in res.items():
                    line = f"round {r} {name:8} {fam:5} {g:6.2f} Gbit/s  server {s:5.2f} s/GB  {skb:7.0f} B/skb  load {load:.1f}"
                    log(line)
                    rows.append((name, fam, g, s, skb))
    print("\nmedians (min-max):")
    for name, _ in bins:
        for fam in fams:
            v = [x for x in rows if x[0] == name and x[1] == fam]
            for k, label in ((2, "Gbit/s"), (3, "server s/GB"), (4, "B/skb")):
                xs = sorted(x[k] for x in v)
                print(f"  {name:8} {fam:5} {label:12} {xs[len(xs) // 2]:8.2f} ({xs[0]:.2f}-{xs[-1]:.2f})")


if __name__ == "__main__":
    main()
