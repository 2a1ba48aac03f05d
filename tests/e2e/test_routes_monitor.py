"""Routes changed while traffic flows, `route monitor`, and `ifconfig IF
destroy` under load.

    A 10.0.1.2 -- r0 [softnet] r1 -- switch -- B 10.0.2.2, C 10.0.2.3
                          r2 -- D 10.0.3.2

B and C both own 10.9.9.9 (on lo). A pings 10.9.9.9 all along; nftables
counters in B and C show who gets the echo requests:

* route add -net 10.9.9.0/24 10.0.2.2        -> B
* route add -host 10.9.9.9 10.0.2.3          -> C (longest prefix)
* route change -host 10.9.9.9 10.0.2.2 / back to 10.0.2.3 -> B, then C
* route delete -host 10.9.9.9                -> B
* route delete -net 10.9.9.0/24              -> nobody (no route counted)
* ifconfig r2 inet 10.0.4.1/24 (and delete)  -> address and route messages
* ifconfig r2 down / up                      -> D unreachable / reachable

Each of these appears exactly once in `softnet route monitor` (two of them
running in the background, one with -T 0; both see the same sequence). Then `ifconfig r1 destroy` while iperf3 runs A -> B: the
command returns, the daemon stays up, A still reaches the router and D, the
monitor shows one departure. SIGHUP brings r1 back (it is in the config).
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import (Monitor, Topo, TestFailure, check, log, main, netstat_s_counters,  # noqa: E402
                     nft_counters, wait_until)

TARGET = "10.9.9.9"
BULK = 300


def counts(t, net):
    return {"B": nft_counters(t, net.b, "sne2e_cnt").get("echo", 0),
            "C": nft_counters(t, net.c, "sne2e_cnt").get("echo", 0)}


def goes_to(t, net, who, what):
    """Waits until echo requests reach `who` (B, C or None), then checks for
    a second that they reach only `who`."""
    if who:
        base = counts(t, net)
        wait_until(f"echo requests to reach {who} after {what}",
                   lambda: counts(t, net)[who] >= base[who] + 3, timeout=20, interval=0.2)
    else:
        time.sleep(1.0)
    c0 = counts(t, net)
    time.sleep(1.5)
    c1 = counts(t, net)
    for h in ("B", "C"):
        if h == who:
            check(c1[h] > c0[h], f"after {what}: {h} stopped getting echo requests ({c0} -> {c1})")
        else:
            check(c1[h] == c0[h], f"after {what}: {h} still gets echo requests ({c0} -> {c1})")
    log(f"  {what}: echo requests go to {who or 'nobody'} ({c0} -> {c1})")


def find(msgs, typ, **kw):
    return [m for m in msgs if m["type"] == typ and all(m.get(k) == v for k, v in kw.items())]


def run_test():
    with Topo("rm") as t:
        t.step("topology: A -- softnet (packet) -- switch(B, C); D on a third port")
        net = t.router_topology("packet", third=True, host_c=True)
        for ns in (net.b, net.c):
            t.ns_run(ns, f"ip addr add {TARGET}/32 dev lo")
            t.ns_run(ns, "nft -f -", input=(
                "table inet sne2e_cnt {\n chain in { type filter hook input priority 0;\n"
                f'  ip daddr {TARGET} icmp type echo-request counter comment "echo"\n }}\n}}\n'))
        d = t.daemon(net.config(), net=net)

        t.step("all hosts reachable through the router")
        for ns, dst in ((net.a, "10.0.2.2"), (net.a, "10.0.2.3"), (net.a, "10.0.3.2"), (net.d, "10.0.2.2")):
            t.ns_run(ns, f"ping -n -c 2 -i 0.3 -W 3 {dst}")

        n_threads = len(os.listdir(f"/proc/{d.proc.pid}/task"))
        t.step("route monitor in the background; wait until it is subscribed")
        mon = Monitor(t, d)
        mon0 = Monitor(t, d, args=("-T", "0"))  # a second subscriber, filtered on table 0
        probe = None
        for k in range(1, 21):
            d.admin("route", "add", f"198.51.100.{k}/32", "-blackhole")
            try:
                wait_until("the monitors' first message",
                           lambda: all(find(m.messages(), "RTM_ADD", dst=f"198.51.100.{k}") for m in (mon, mon0)),
                           timeout=1.5)
                probe = k
                break
            except TestFailure:
                check(mon.proc.poll() is None, f"route monitor exited:\n{mon.text()}")
                check(mon0.proc.poll() is None, f"route -T 0 monitor exited:\n{mon0.text()}")
            finally:
                d.admin("route", "delete", f"198.51.100.{k}/32")
        check(probe, "route monitor never showed a route added")
        seq0 = find(mon.messages(), "RTM_ADD", dst=f"198.51.100.{probe}")[0]["seq"]
        log(f"  subscribed (probe route 198.51.100.{probe}, seq {seq0})")
        d.probes = 100  # Monitor.wait_subscribed's probes from here on: other addresses

        t.step(f"A pings {TARGET} in the background (every 0.1 s)")
        # 3,000 (300 s, killed at the end): the 900 it had ran out after
        # 90 s, and the test took 45 s at load 16 (29 s in CI).
        t.ns_spawn(net.a, f"ping -n -i 0.1 -c 3000 -W 1 {TARGET}")
        goes_to(t, net, None, "no route yet")

        changes = [
            ("route add -net 10.9.9.0/24 10.0.2.2", "B", ("RTM_ADD", "10.9.9.0", "10.0.2.2")),
            ("route add -host 10.9.9.9 10.0.2.3", "C", ("RTM_ADD", "10.9.9.9", "10.0.2.3")),
            ("route change -host 10.9.9.9 10.0.2.2", "B", ("RTM_CHANGE", "10.9.9.9", "10.0.2.2")),
            ("route change -host 10.9.9.9 10.0.2.3", "C", ("RTM_CHANGE", "10.9.9.9", "10.0.2.3")),
            ("route delete -host 10.9.9.9", "B", ("RTM_DELETE", "10.9.9.9", None)),
            ("route delete -net 10.9.9.0/24", None, ("RTM_DELETE", "10.9.9.0", None)),
        ]
        expected = []
        for cmd, who, msg in changes:
            t.step(f"{cmd}: traffic goes to {who or 'nobody'}")
            out = d.out(*cmd.split())
            log(f"  softnet {cmd}: {out.strip()}")
            expected.append(msg)
            goes_to(t, net, who, cmd)
            typ, dst, gw = msg
            wait_until(f"{typ} {dst} in the monitor", lambda: find(mon.messages(), typ, dst=dst), timeout=5)
        c = netstat_s_counters(d.out("netstat", "-s"))
        check(c["ip: output packets discarded due to no route"] > 0, "no-route drops not counted")

        t.step("route get / show agree: no 10.9.9.9 route left")
        p = d.admin("route", "get", TARGET, check_rc=False)
        check(p.returncode == 1 and "No such process" in p.stderr, f"route get {TARGET}: {p.returncode} {p.stderr!r}")

        t.step("route add default 10.0.2.2: A reaches 10.55.0.1 (on B) through it")
        t.ns_run(net.b, "ip addr add 10.55.0.1/32 dev lo")
        d.admin("route", "add", "default", "10.0.2.2")
        check(re.search(r"^default\s+10\.0\.2\.2\s+UGS\s", d.out("netstat", "-rn"), re.M), "no default route shown")
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.55.0.1")
        t.step("route add 10.66.0.0/16 -reject: the router answers unreachable")
        d.admin("route", "add", "10.66.0.0/16", "-reject")
        p = t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 2 10.66.0.1", check_rc=False)
        check(p.returncode != 0 and re.search(r"From 10\.0\.1\.1 .*Unreachable", p.stdout),
              f"reject route: no unreachable from the router:\n{p.stdout}")
        log("  " + [l for l in p.stdout.splitlines() if "From 10.0.1.1" in l][0])
        t.step("route add 10.77.0.0/16 -blackhole: silently dropped and counted")
        d.admin("route", "add", "10.77.0.0/16", "-blackhole")
        c0 = netstat_s_counters(d.out("netstat", "-s"))
        p = t.ns_run(net.a, "ping -n -c 3 -i 0.3 -W 1 10.77.0.1", check_rc=False)
        check(p.returncode != 0 and "From " not in p.stdout, f"blackhole route answered:\n{p.stdout}")
        c1 = netstat_s_counters(d.out("netstat", "-s"))
        check(c1["ip: packets discarded by blackhole routes"] >= c0["ip: packets discarded by blackhole routes"] + 3,
              "blackholed packets not counted")
        rn = d.out("netstat", "-rn")
        check(re.search(r"^10\.66/16\s+\S+\s+\S*R\S*\s", rn, re.M) and re.search(r"^10\.77/16\s+\S+\s+\S*B\S*\s", rn, re.M),
              f"reject/blackhole flags (R, B) not shown:\n{rn}")
        for dst in ("default", "10.66.0.0/16", "10.77.0.0/16"):
            d.admin("route", "delete", dst)

        t.step("ifconfig r2 inet 10.0.4.1/24, then delete it")
        d.admin("ifconfig", "r2", "inet", "10.0.4.1/24")
        check("inet 10.0.4.1 netmask 0xffffff00" in d.out("ifconfig", "r2"), "address not shown")
        wait_until("RTM_NEWADDR", lambda: find(mon.messages(), "RTM_NEWADDR", ifa="10.0.4.1"), timeout=5)
        d.admin("ifconfig", "r2", "inet", "10.0.4.1/24", "delete")
        check("10.0.4.1" not in d.out("ifconfig", "r2"), "address still shown")
        wait_until("RTM_DELADDR", lambda: find(mon.messages(), "RTM_DELADDR", ifa="10.0.4.1"), timeout=5)

        t.step("every change appeared exactly once in the monitor, in order")
        time.sleep(1)
        msgs = [m for m in mon.messages() if m["seq"] is not None and m["seq"] >= seq0]
        seqs = [m["seq"] for m in msgs]
        check(seqs == sorted(set(seqs)), f"monitor sequence numbers not increasing/unique: {seqs}")
        order = []
        for typ, dst, gw in expected:
            got = find(msgs, typ, dst=dst)
            if typ == "RTM_CHANGE":
                got = [m for m in got if m.get("gateway") == gw]
            check(len(got) == 1, f"{typ} {dst} {gw or ''}: {len(got)} messages, want 1:\n"
                  + "\n\n".join(m["text"] for m in got))
            if gw:
                check(got[0].get("gateway") == gw, f"{typ} {dst}: gateway {got[0].get('gateway')}, want {gw}")
            order.append(got[0]["seq"])
        check(order == sorted(order), f"messages out of order: {order}")
        for typ in ("RTM_NEWADDR", "RTM_DELADDR"):
            got = find(msgs, typ, ifa="10.0.4.1")
            check(len(got) == 1, f"{typ} 10.0.4.1: {len(got)} messages, want 1")
        for typ in ("RTM_ADD", "RTM_DELETE"):
            got = find(msgs, typ, dst="10.0.4.0")
            check(len(got) == 1, f"{typ} 10.0.4.0 (connected route): {len(got)} messages, want 1")
        got = find(msgs, "RTM_DELETE", dst=f"198.51.100.{probe}")
        check(len(got) == 1, f"RTM_DELETE of the probe: {len(got)} messages")
        log(f"  {len(msgs)} messages since the probe, seq {seqs[0]}..{seqs[-1]}")
        seq00 = find(mon0.messages(), "RTM_ADD", dst=f"198.51.100.{probe}")[0]["seq"]
        seqs0 = [m["seq"] for m in mon0.messages() if m["seq"] is not None and m["seq"] >= seq00]
        check(seq00 == seq0 and seqs0 == seqs, f"the two monitors disagree: {seqs} vs {seqs0}")

        t.step(f"{BULK} routes added and deleted in a burst: {2 * BULK} messages, each exactly once, in both monitors")
        last = max(m["seq"] for m in mon.messages() if m["seq"] is not None)
        for i in range(BULK):
            d.admin("route", "-q", "add", f"10.200.{i // 250}.{i % 250 + 1}/32", "10.0.2.2")
        for i in range(BULK):
            d.admin("route", "-q", "delete", f"10.200.{i // 250}.{i % 250 + 1}/32")

        def bulk(m):
            return [x for x in m.messages() if x["seq"] is not None and x["seq"] > last
                    and (x.get("dst") or "").startswith("10.200.")]

        wait_until(f"{2 * BULK} messages in the monitors",
                   lambda: len(bulk(mon)) >= 2 * BULK and len(bulk(mon0)) >= 2 * BULK, timeout=20)
        time.sleep(0.5)
        for m in (mon, mon0):
            b = bulk(m)
            keys = [(x["type"], x["dst"]) for x in b]
            check(len(b) == 2 * BULK and len(set(keys)) == 2 * BULK,
                  f"{len(b)} bulk messages ({len(set(keys))} distinct), want {2 * BULK}")
            check([x["seq"] for x in b] == sorted(x["seq"] for x in b), "bulk messages out of order")
        check("10.200." not in d.out("netstat", "-rn"), "bulk routes left")

        t.step("ifconfig r2 down: D unreachable, one RTM_IFINFO; up: reachable again, one more")
        n_info = len(find(mon.messages(), "RTM_IFINFO", ifname="r2"))
        d.admin("ifconfig", "r2", "down")
        check(d.out("netstat", "-i").count("r2*") >= 1, "netstat -i does not mark r2 down (r2*)")
        check("UP" not in d.out("ifconfig", "r2").split(">")[0].split("<")[1].split(","), "ifconfig r2 still UP")
        p = t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 1 10.0.3.2", check_rc=False)
        check(p.returncode != 0, "D still reachable with r2 down")
        wait_until("RTM_IFINFO for r2 down",
                   lambda: len(find(mon.messages(), "RTM_IFINFO", ifname="r2")) > n_info, timeout=5)
        d.admin("ifconfig", "r2", "up")
        for i in range(3):
            if t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.3.2", check_rc=False).returncode == 0:
                break
        else:
            raise TestFailure("D unreachable after ifconfig r2 up")
        time.sleep(1.5)  # a second carrier poll must not add messages
        infos = find(mon.messages(), "RTM_IFINFO", ifname="r2")[n_info:]
        check(len(infos) == 2, f"ifconfig r2 down/up: {len(infos)} RTM_IFINFO messages, want 2:\n"
              + "\n\n".join(m["text"] for m in infos))

        t.step("ifconfig r1 destroy while iperf3 runs A -> B")
        t.ns_spawn(net.b, "iperf3 -s -B 10.0.2.2 -p 5201")
        t.wait_listen(net.b, 5201)
        ilog = open(os.path.join(t.tmp, "iperf-client.txt"), "wb")
        client = t.ns_spawn(net.a, "timeout 60 iperf3 -c 10.0.2.2 -p 5201 -t 15 -P 2", stdout=ilog, stderr=ilog)
        fwd0 = netstat_s_counters(d.out("netstat", "-s"))["ip: packets forwarded"]
        wait_until("iperf3 traffic through the router",
                   lambda: netstat_s_counters(d.out("netstat", "-s"))["ip: packets forwarded"] > fwd0 + 2000,
                   timeout=20)
        t0 = time.monotonic()
        p = d.admin("ifconfig", "r1", "destroy", check_rc=False, timeout=60)
        check(p.returncode == 0, f"ifconfig r1 destroy: exit {p.returncode}: {p.stderr}")
        log(f"  ifconfig r1 destroy returned in {time.monotonic() - t0:.1f} s")
        check(d.alive(), "daemon died on destroy")

        t.step("the rest keeps forwarding: A -> R, A -> D, D -> A")
        for ns, dst in ((net.a, "10.0.1.1"), (net.a, "10.0.3.2"), (net.d, "10.0.1.2"), (net.d, "10.0.3.1")):
            t.ns_run(ns, f"ping -n -c 2 -i 0.3 -W 3 {dst}")
        ifc = d.out("ifconfig")
        check("r1:" not in ifc and "r0:" in ifc and "r2:" in ifc, f"ifconfig after destroy:\n{ifc}")
        rn = d.out("netstat", "-rn")
        check(" r1\n" not in rn and "10.0.2" not in rn, f"routes of r1 left:\n{rn}")
        p = d.admin("ifconfig", "r1", check_rc=False)
        check(p.returncode == 1 and "no such interface" in p.stderr, f"ifconfig r1: {p.stderr!r}")
        wait_until("RTM_IFANNOUNCE departure of r1",
                   lambda: find(mon.messages(), "RTM_IFANNOUNCE", ifname="r1", what="departure"), timeout=5)
        time.sleep(0.5)
        msgs = mon.messages()
        check(len(find(msgs, "RTM_IFANNOUNCE", ifname="r1", what="departure")) == 1, "departure not exactly once")
        check(len(find(msgs, "RTM_DELADDR", ifa="10.0.2.1")) == 1, "r1's address removal not exactly once")
        check(len(find(msgs, "RTM_DELETE", dst="10.0.2.0")) == 1, "r1's connected route removal not exactly once")
        t.kill(client)
        ilog.close()

        t.step("SIGHUP: r1 (in the config) comes back; A -> B works again")
        start = len(d.log_lines())
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload: r1 created", start=start, timeout=15)
        wait_until("r1 in ifconfig", lambda: "r1:" in d.out("ifconfig"), timeout=10)
        for i in range(3):
            if t.ns_run(net.a, "ping -n -c 3 -i 0.3 -W 3 10.0.2.2", check_rc=False).returncode == 0:
                break
            log(f"  no reply from B yet (try {i + 1}/3)")
        else:
            raise TestFailure("A -> B does not work after r1 came back")
        wait_until("RTM_IFANNOUNCE arrival of r1",
                   lambda: find(mon.messages(), "RTM_IFANNOUNCE", ifname="r1", what="arrival"), timeout=5)
        check(d.alive(), "daemon died")
        t.step("monitors that go away leave no thread behind")
        mon.stop()
        mon0.stop()
        threads = lambda: len(os.listdir(f"/proc/{d.proc.pid}/task"))  # noqa: E731
        base = wait_until("monitor threads to end", lambda: threads() if threads() <= n_threads else 0, timeout=10)
        extra = [Monitor(t, d) for _ in range(5)]
        for m in extra:
            m.wait_subscribed(d)
        check(threads() >= base + 5, f"threads {threads()} with 5 monitors, {base} before")
        for m in extra:
            m.stop()
        wait_until("the 5 monitor threads to end", lambda: threads() <= base, timeout=10)
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
