"""Overload (issue 15): ten times the traffic the router can forward,
and more new flows than `set limit states` allows. Memory stays bounded,
every drop is counted where it happens, the control socket answers
within a second, and afterwards the router is idle and whole again.

    A 10.0.1.2 -- r0 [softnet + pf] r1 -- B 10.0.2.2

The senders share the machine's cores with the router, so the router is
made small against them: its two worker threads (softnet-w0/w1, all
that forwards) get a fortieth of one core between them, a cgroup of
their own with a CPU bandwidth limit (v2 `cpu.max` 2500 100000, or v1's
`cpu.cfs_quota_us`; the CPU the workers used is logged and checked). The
rest of the daemon (the control thread, pflog) is not limited, as on a
router whose control plane has a core of its own.

1. Capacity under that limit: a UDP flood A -> B (small datagrams, UDP
   GSO) from one sender, far past saturation: B's receive rate over the
   flood's steady middle is what the limited router forwards.
2. Overload: three senders; A's transmit rate over the same kind of
   window must be at least ten times the capacity and ten times what
   the router forwards meanwhile. Everything A sent is accounted for at
   the router's input once its rings have drained: received (`netstat
   -i` Ipkts) or dropped and counted (Idrop: the AF_PACKET ring's drops;
   the veth's own rx_dropped).
3. A flood of new flows (a new destination port per datagram) past
   `set limit states 1000`: the state count never passes the limit and
   pf counts the refusals (`pfctl -si` memory).
All along, every half second: a new control connection asks for `netstat
-m` (answered within 1 s), and the daemon's RSS is sampled; its
high-water mark must stay within 64 MB of the idle RSS (pools and the
state table are sized at start). At the end: the threads and `netstat -m`
as before (no buffer in use), ping and a new TCP connection through pf.
Needs a cgroup cpu controller (v1 or v2) as root.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import TestFailure, Topo, check, log, main, wait_until  # noqa: E402
from lib_pf import B_IP, PfLab  # noqa: E402
from lib_churn import (  # noqa: E402
    NETSTAT_M, Control, CpuLimit, flood, link_stats, netstat_m, proc_status, settled_threads, thread_cpu, thread_ids,
    timed_call, wait_idle, wait_threads,
)

STATE_LIMIT = 1000
RULES = f"""\
set limit states {STATE_LIMIT}
pass flags any
"""
RSS_BOUND_KB = 64 * 1024
# The workers' share: 2.5 ms of CPU every 100 ms for both, a fortieth of
# a core. A tenth left the senders, on the same two loaded cores, only 11x
# its capacity; a twentieth 115-131x in CI's runs but 22-34x here at load
# 11-12 (the senders get less of the machine, the limited router the
# same): too little margin over OVERLOAD_X on a loaded host. A fortieth
# halves the capacity, doubling the ratio at any load.
CPU_QUOTA_US, CPU_PERIOD_US = 2_500, 100_000
# What the issue asks: ten times what the router can forward.
OVERLOAD_X = 10.0
# The senders are Python with UDP GSO (64 datagrams a send): one offers
# a few 100,000 datagrams a second here, more than ten times the limited
# router; three offer what the two cores can send (more only take the
# control thread's CPU). SOFTNET_OVERLOAD_FULL=1: 30 s instead of 6.
FULL = os.environ.get("SOFTNET_OVERLOAD_FULL") == "1"
CAP_SENDERS, CAP_SECS = 1, 5
SENDERS = 3
OVERLOAD_SECS = 30 if FULL else 6
# The senders run at nice -10: ahead of whatever else the machine runs
# (builds), so that what they offer depends less on it; the router's
# threads keep their nice value (0) and their limit.
SENDER_NICE = -10
# Rates are taken over the flood's middle: from WARM s after the senders
# start to TAIL s before they stop.
WARM, TAIL = 1.5, 0.5


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
    limit = CpuLimit(f"softnet-e2e-ovl{os.getpid()}", CPU_QUOTA_US, CPU_PERIOD_US)
    # The limit's exit (the cgroups removed) after the Topo's (the daemon stopped).
    with limit, Topo("ovl") as t:
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
        workers = thread_ids(pid, "softnet-w")
        check(len(workers) == 2, f"worker threads {workers}, want 2 (workers = 2)")
        limit.limit(pid, workers)
        log(f"  workers {workers} limited to {CPU_QUOTA_US} us of CPU every {CPU_PERIOD_US} us "
            f"(cgroup {limit.kind}: {limit.group})")
        watch = Watch(d, pid)
        watch.start()

        def input_counters():
            """(A's tx, B's rx, r0's Ipkts, r0's Idrop, the veth ra's rx_dropped)."""
            a_tx, _ = link_stats(t, net.a, "a0")
            _, b_rx = link_stats(t, net.b, "b0")
            r0 = netstat_i(d)["r0"]
            ra = int(t.ns_run(net.r, "cat /sys/class/net/ra/statistics/rx_dropped").stdout)
            return a_tx, b_rx, r0[0], r0[4], ra

        def settled():
            """A wait_until condition: the input counters once they have
            stayed the same for a whole second (the limited workers run
            2.5 ms in every 100: reads a few ms apart can agree while the
            rings still drain; wait_until's first polls come 10 ms apart)."""
            last = [None, 0.0]

            def cond():
                c, now = input_counters(), time.monotonic()
                if c != last[0]:
                    last[0], last[1] = c, now
                    return None
                return c if now - last[1] >= 1.0 else None
            return cond

        def rates(secs, senders, what):
            """Floods A -> B from `senders` processes for `secs`; returns
            the offered and forwarded datagrams a second over the flood's
            middle, and the input counters' differences once the router
            has drained its rings."""
            c0 = input_counters()
            procs = [flood(t, net.a, B_IP, 9, secs, size=18, gso=True, nice=SENDER_NICE) for _ in range(senders)]
            time.sleep(WARM)
            w0 = (*link_stats(t, net.a, "a0"), link_stats(t, net.b, "b0")[1], thread_cpu(pid, workers),
                  time.monotonic())
            time.sleep(secs - WARM - TAIL)
            w1 = (*link_stats(t, net.a, "a0"), link_stats(t, net.b, "b0")[1], thread_cpu(pid, workers),
                  time.monotonic())
            for p in procs:
                p.wait(timeout=secs + 30)
            el = w1[4] - w0[4]
            offered, fwd, cpu = (w1[0] - w0[0]) / el, (w1[2] - w0[2]) / el, (w1[3] - w0[3]) / el
            # The limited router drains its rings for a few seconds after
            # the senders stop; a ping from A then closes the ring's last
            # block (the kernel reports a ring's drops with a block).
            drained = settled()
            wait_until("the router's input counters settled", drained, timeout=40, interval=1.0)
            t.ns_run(net.a, f"ping -c 1 -W 2 {B_IP}", check_rc=False)
            c1 = wait_until("the router's input counters settled", drained, timeout=20, interval=1.0)
            sent, got, ipk, idrop, vdrop = (x1 - x0 for x0, x1 in zip(c0, c1))
            log(f"  {what}: {senders} senders for {secs} s; over {el:.1f} s of it A sent {offered:.0f}/s, "
                f"B got {fwd:.0f}/s, the workers used {cpu:.3f} s of CPU a second; in all A sent {sent}, "
                f"B got {got}; r0 Ipkts {ipk}, Idrop {idrop}, veth rx_dropped {vdrop}")
            return offered, fwd, cpu, sent, ipk, idrop, vdrop

        # ---- 1. capacity -------------------------------------------------------------
        t.step(f"1. capacity of the limited router: UDP floods A -> B, 64-byte frames, {CAP_SENDERS} senders")
        _, cap, cap_cpu, *_ = rates(CAP_SECS, CAP_SENDERS, "capacity")
        check(cap > 1000, f"the router forwarded only {cap:.0f} datagrams/s")
        # The limit holds: the workers used no more than their share.
        share = CPU_QUOTA_US / CPU_PERIOD_US
        # 1.5x the share, plus two clock ticks (the resolution of the
        # threads' CPU times in /proc) over the 3-s window: 0.025 s a second
        # is only 7-8 ticks there.
        slack = 2 / os.sysconf("SC_CLK_TCK") / (CAP_SECS - WARM - TAIL)
        check(cap_cpu <= share * 1.5 + slack,
              f"the workers used {cap_cpu:.3f} s of CPU a second, over the limit {share} (+{slack:.3f})")
        nthr, thr_secs = limit.throttled()
        log(f"  the workers' cgroup was throttled in {nthr} periods ({thr_secs:.1f} s in all)")
        check(nthr > 0, "the workers' cgroup was never throttled: the limit did not bind")

        # ---- 2. overload ----------------------------------------------------------------
        t.step("2. overload: more senders; drops counted where they happen")
        offered, fwd, cpu, sent, ipk, idrop, vdrop = rates(OVERLOAD_SECS, SENDERS, "overload")
        ratio, ratio_fwd = offered / cap, offered / max(fwd, 1.0)
        log(f"  offered {ratio:.1f}x the capacity measured in 1 ({offered:.0f}/s against {cap:.0f}/s), "
            f"{ratio_fwd:.1f}x what it forwarded meanwhile ({fwd:.0f}/s)")
        check(ratio >= OVERLOAD_X and ratio_fwd >= OVERLOAD_X,
              f"offered only {ratio:.1f}x the capacity, {ratio_fwd:.1f}x the forwarded rate: "
              f"want {OVERLOAD_X:.0f}x both")
        # Exact in runs here since session 14 (the V3 ring's last drops were
        # left in the kernel before: 1 % short, session 13's CI); 0.01 %
        # leaves room for a frame of the namespace's own.
        accounted = ipk + idrop + vdrop
        check(abs(sent - accounted) <= max(20, sent // 10000),
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
        # The limited router reads the flood's last frames from its rings
        # for seconds after the senders stop (two rings of ~26,000 small
        # frames at ~13,000 a second), and each new flow among them takes a
        # state again: flushed before that, the table was full again when
        # the ping came and its state was refused (pf's memory counter;
        # session 14's CI, and session 12's "deaf for 8 s" with the deeper
        # V2 ring). So the states are flushed once the input has settled.
        wait_until("the router's input settled after the flood of new flows", settled(), timeout=60, interval=0.5)
        lab.pfctl("-F", "states")
        end = wait_idle(d, base, timeout=30)
        wait_threads(pid, threads0)
        log(f"  netstat -m: {end.in_use} of {end.total} buffers in use, peak {end.peak}, {end.denied} denied")
        try:
            lab.ping()
        except TestFailure:
            # What the router says then (a state table full again, frames
            # still being read, drops) is the clue.
            for cmd in (("pfctl", "-si"), ("netstat", "-i"), ("netstat", "-s")):
                log(f"  after the failed ping, {' '.join(cmd)}:\n{d.out(*cmd)}")
            raise
        lab.expect_tcp(22, "ok", "a new connection after the overload")
        log(f"FIGURES cpu_limit={CPU_QUOTA_US}/{CPU_PERIOD_US} capacity={cap:.0f}/s "
            f"workers_cpu={cap_cpu:.3f} throttled={nthr} offered={offered:.0f}/s forwarded={fwd:.0f}/s "
            f"ratio={ratio:.1f} ratio_fwd={ratio_fwd:.1f} idrop={idrop} "
            f"veth_drop={vdrop} states_peak={peak[0]} refused={refused} ctl_max_ms={lat[-1] * 1000:.0f} "
            f"rss_idle_kb={st0['rss_kb']} hwm_kb={st['hwm_kb']}")
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
