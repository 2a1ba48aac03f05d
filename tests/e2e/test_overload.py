"""Overload (issue 15): more traffic than the router forwards, and more new
flows than `set limit states` allows. Memory stays bounded, every drop is
counted where it happens, the control socket answers within a second,
and afterwards the router is idle and whole again.

    A 10.0.1.2 -- r0 [softnet + pf] r1 -- B 10.0.2.2

1. Capacity: UDP floods A -> B as fast as A sends (small datagrams): B's
   receive rate is what the router forwards at saturation.
2. Overload: more senders for a few seconds; the offered rate (A's
   transmit counter) must be at least twice the capacity and three times
   what the router forwards meanwhile (both logged; Python senders with
   UDP GSO on the same shared two cores reach no more: the issue's 10x is
   not reached here, RELIABILITY.md has the figures). Everything A sent is accounted for at the
   router's input: received (`netstat -i` Ipkts) or dropped and counted
   (Idrop: the AF_PACKET ring's drops; the veth's own rx_dropped).
3. A flood of new flows (a new destination port per datagram) past
   `set limit states 1000`: the state count never passes the limit and
   pf counts the refusals (`pfctl -si` memory).
All along, every half second: a new control connection asks for `netstat
-m` (answered within 1 s), and the daemon's RSS is sampled; its
high-water mark must stay within 64 MB of the idle RSS (pools and the
state table are sized at start). At the end: the threads and `netstat -m`
as before (no buffer in use), ping and a new TCP connection through pf.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, wait_until  # noqa: E402
from lib_pf import B_IP, PfLab  # noqa: E402
from lib_churn import (  # noqa: E402
    NETSTAT_M, Control, flood, link_stats, netstat_m, proc_status, settled_threads, timed_call, wait_idle,
    wait_threads,
)

STATE_LIMIT = 1000
RULES = f"""\
set limit states {STATE_LIMIT}
pass flags any
"""
RSS_BOUND_KB = 64 * 1024
# The senders are Python with UDP GSO (64 datagrams a send) on the same
# two cores as the router: four offer a few times what it forwards there.
# SOFTNET_OVERLOAD_FULL=1: more senders for longer (RELIABILITY.md).
FULL = os.environ.get("SOFTNET_OVERLOAD_FULL") == "1"
SENDERS = 8 if FULL else 4
OVERLOAD_SECS = 20 if FULL else 6


def netstat_i(d):
    """{name: (ipkts, ifail, opkts, ofail, idrop)} of the <Link> rows."""
    out = {}
    for line in d.out("netstat", "-i").splitlines():
        f = line.split()
        if len(f) == 9 and f[2] == "<Link>":
            out[f[0].rstrip("*")] = tuple(int(x) for x in f[4:9])
    return out


class Watch(threading.Thread):
    """Samples the control socket's answer time and the daemon's RSS."""

    def __init__(self, d, pid):
        super().__init__(daemon=True)
        self.d, self.pid = d, pid
        self.stop = threading.Event()
        self.latencies, self.rss, self.errors = [], [], []

    def run(self):
        while not self.stop.wait(0.5):
            try:
                t0 = time.monotonic()
                c = Control(self.d.socket, timeout=5)
                _, r = timed_call(c, NETSTAT_M)
                c.close()
                self.latencies.append(time.monotonic() - t0)
                if "text" not in r:
                    self.errors.append(r)
            except Exception as e:  # a timeout or a refused connection is the failure
                self.errors.append(repr(e))
            try:
                self.rss.append(proc_status(self.pid)["rss_kb"])
            except OSError as e:
                self.errors.append(repr(e))


def run_test():
    with Topo("ovl") as t:
        t.step(f"topology A -- softnet + pf (set limit states {STATE_LIMIT}) -- B")
        lab = PfLab(t, rules=RULES)
        d, net = lab.d, lab.net
        pid = d.proc.pid
        lab.ping()
        base = wait_idle(d, netstat_m(d), timeout=20)
        st0 = proc_status(pid)
        threads0 = settled_threads(pid)
        log(f"  idle: RSS {st0['rss_kb']} kB (high-water {st0['hwm_kb']} kB), {threads0} threads, "
            f"{base.total} buffers")
        watch = Watch(d, pid)
        watch.start()

        def rates(secs, senders, what):
            """Floods A -> B from `senders` processes for `secs`; returns
            (offered, forwarded) datagrams a second, and the counters."""
            a_tx0, _ = link_stats(t, net.a, "a0")
            _, b_rx0 = link_stats(t, net.b, "b0")
            ifs0 = netstat_i(d)
            ra0 = int(t.ns_run(net.r, "cat /sys/class/net/ra/statistics/rx_dropped").stdout)
            procs = [flood(t, net.a, B_IP, 9, secs, size=18, gso=True) for _ in range(senders)]
            t0 = time.monotonic()
            for p in procs:
                p.wait(timeout=secs + 30)
            el = time.monotonic() - t0
            time.sleep(1.0)  # the router drains its rings
            a_tx, _ = link_stats(t, net.a, "a0")
            _, b_rx = link_stats(t, net.b, "b0")
            ifs = netstat_i(d)
            ra = int(t.ns_run(net.r, "cat /sys/class/net/ra/statistics/rx_dropped").stdout)
            sent, got = a_tx - a_tx0, b_rx - b_rx0
            ipk = ifs["r0"][0] - ifs0["r0"][0]
            idrop = ifs["r0"][4] - ifs0["r0"][4]
            vdrop = ra - ra0
            log(f"  {what}: {senders} senders, {el:.1f} s: A sent {sent} ({sent / el:.0f}/s), B got {got} "
                f"({got / el:.0f}/s); r0 Ipkts {ipk}, Idrop {idrop}, veth rx_dropped {vdrop}")
            return sent / el, got / el, sent, ipk, idrop, vdrop

        # ---- 1. capacity -------------------------------------------------------------
        t.step("1. capacity: UDP floods A -> B, 64-byte frames, as fast as A sends")
        _, cap, *_ = rates(4, 1, "capacity")
        check(cap > 1000, f"the router forwarded only {cap:.0f} datagrams/s")

        # ---- 2. overload ----------------------------------------------------------------
        t.step("2. overload: more senders; drops counted where they happen")
        offered, fwd, sent, ipk, idrop, vdrop = rates(OVERLOAD_SECS, SENDERS, "overload")
        ratio, ratio_fwd = offered / cap, offered / max(fwd, 1.0)
        log(f"  offered {ratio:.1f}x the capacity measured in 1 ({offered:.0f}/s against {cap:.0f}/s), "
            f"{ratio_fwd:.1f}x what it forwarded meanwhile ({fwd:.0f}/s)")
        check(ratio >= 2.0 and ratio_fwd >= 3.0, f"offered only {ratio:.1f}x the capacity, {ratio_fwd:.1f}x "
                                                 "the forwarded rate: no overload")
        accounted = ipk + idrop + vdrop
        check(abs(sent - accounted) <= max(200, sent // 100),
              f"A sent {sent}, the router's input accounts for {accounted} (Ipkts {ipk} + Idrop {idrop} + "
              f"veth {vdrop})")
        check(idrop + vdrop > 0, "an overload without a counted drop")
        check(d.alive(), "daemon died under overload")

        # ---- 3. states past the limit -----------------------------------------------------
        t.step(f"3. new flows past set limit states {STATE_LIMIT}")
        mem0 = lab.info().get("memory", 0)
        peak = [0]

        def states():
            n = lab.info()["current entries"]
            peak[0] = max(peak[0], n)
            return n

        procs = [flood(t, net.a, B_IP, 10000, 6, size=18, spread=40000) for _ in range(2)]
        t0 = time.monotonic()
        while any(p.poll() is None for p in procs) and time.monotonic() - t0 < 30:
            check(states() <= STATE_LIMIT, f"{peak[0]} states over the limit {STATE_LIMIT}")
            time.sleep(0.3)
        info = lab.info()
        refused = info.get("memory", 0) - mem0
        log(f"  states peaked at {peak[0]} (limit {STATE_LIMIT}); {refused} refused (memory)")
        check(peak[0] >= STATE_LIMIT * 9 // 10, f"the flood made only {peak[0]} states")
        check(refused > 0, f"no state refused past the limit:\n{info['text']}")

        # ---- recovery ----------------------------------------------------------------------
        watch.stop.set()
        watch.join(timeout=10)
        st = proc_status(pid)
        lat = sorted(watch.latencies)
        log(f"  control socket: {len(lat)} answers, median {lat[len(lat) // 2] * 1000:.0f} ms, "
            f"max {lat[-1] * 1000:.0f} ms; RSS {min(watch.rss)}-{max(watch.rss)} kB, high-water {st['hwm_kb']} kB "
            f"(idle {st0['rss_kb']} kB)")
        check(not watch.errors, f"control socket errors under load: {watch.errors[:3]}")
        check(len(lat) >= 10 and lat[-1] < 1.0, f"control socket answer times: {lat[-5:]}")
        check(st["hwm_kb"] - st0["rss_kb"] < RSS_BOUND_KB,
              f"RSS high-water {st['hwm_kb']} kB against {st0['rss_kb']} kB idle")
        t.step("after: pf flushed, the router idle and whole")
        lab.pfctl("-F", "states")
        end = wait_idle(d, base, timeout=30)
        wait_threads(pid, threads0)
        log(f"  netstat -m: {end.in_use} of {end.total} buffers in use, peak {end.peak}, {end.denied} denied")
        lab.ping()
        lab.expect_tcp(22, "ok", "a new connection after the overload")
        log(f"FIGURES capacity={cap:.0f}/s offered={offered:.0f}/s forwarded={fwd:.0f}/s ratio={ratio:.1f} "
            f"ratio_fwd={ratio_fwd:.1f} idrop={idrop} "
            f"veth_drop={vdrop} states_peak={peak[0]} refused={refused} ctl_max_ms={lat[-1] * 1000:.0f} "
            f"rss_idle_kb={st0['rss_kb']} hwm_kb={st['hwm_kb']}")
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
