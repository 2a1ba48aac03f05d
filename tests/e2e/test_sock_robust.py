"""softnet's own TCP and UDP under load and bad input (issue 13), with
examples/echo.rs (TCP and UDP echo on the router's address, 2 workers) and
Linux peers running tests/e2e/sock_peer.py.

A 10.0.1.2 (+10.0.1.3) -- r0 10.0.1.1 [softnet + echo :7] r1 10.0.2.1 -- B 10.0.2.2

1 UDP echo: 200 datagrams of 1..1400 bytes, every one echoed intact
2 1,000 concurrent connections from A, each echoing 1 KB of its own;
  afterwards no connection is left (netstat) and the echo's threads are
  back to their idle count; every segment was processed by its
  connection's owner worker (netstat -s)
3 32 MB echoed both ways at once (SHA-256 of each direction)
4 closing under load: 200 streaming connections, half aborted mid-stream
  (RST), half closed cleanly: nothing stuck, threads back to idle
5 a peer that never reads: its connection stalls with a full Send-Q while
  others are served; once it closes, it is gone
6 bad input on an established connection (scapy): blind in-window RST and
  SYN answered with challenge ACKs (RFC 5961) and the connection lives,
  out-of-window data ACKed and dropped, a malformed option and a bad
  checksum dropped without a RST, 1,000 one-byte out-of-order segments
  (bounded queue); a SYN with data acknowledged without its data, a SYN
  with a bad checksum or a malformed option unanswered; each counted in
  `netstat -s -p tcp`
7 a SYN flood of 20,000 spoofed SYNs (from 10.0.1.3, whose answers A
  drops): the SYN cache fills, SYN cookies take over (counted), a real
  client still connects and echoes, the process's memory stays bounded

Needs `cargo build --release --example echo` (ECHO_BIN) and scapy.
"""

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import MAC_A, MAC_B, Net, Topo, check, log, main, wait_until  # noqa: E402
from lib_sock import Embedded, example_bin  # noqa: E402
from lib_churn import settled_threads  # noqa: E402

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sock_peer.py")
HOST, PORT = "10.0.1.1", 7


def peer(t, ns, *args, timeout=120):
    p = t.ns_run(ns, ["python3", PEER] + [str(a) for a in args], check_rc=False, timeout=timeout)
    check(p.returncode == 0, f"sock_peer {args}: rc={p.returncode}\n{p.stdout}\n{p.stderr}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    log(f"  {args[0]}: {r}")
    return r


def threads(d):
    return len(os.listdir(f"/proc/{d.proc.pid}/task"))


def rss_kb(d):
    with open(f"/proc/{d.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def conn_rows(d):
    """netstat -an -p tcp rows other than listeners."""
    out = d.out("netstat", "-an", "-p", "tcp")
    return [l.split() for l in out.splitlines() if l.startswith("tcp") and not l.rstrip().endswith("LISTEN")]


def singular(text):
    """A netstat line's text with plural "s" endings off (netstat writes
    "1 packet" but "2 packets")."""
    return re.sub(r"s\b", "", text)


class TcpStat(dict):
    def get(self, text, default=0):
        return super().get(singular(text), default)


# The SYN cache when full: crates/core/src/sock/syncache.rs's DEFAULT_LIMIT
# (10,255, OpenBSD's tcp_syn_cache_limit) shared by the echo's 2 workers,
# each holding its share rounded up: 2 x 5,128.
FULL_CACHE = 2 * -(-10255 // 2)


def tcpstat(d):
    """`netstat -s -p tcp` as {line text without the number: number}."""
    out = d.out("netstat", "-s", "-p", "tcp")
    check(out.startswith("tcp:\n"), f"netstat -s -p tcp:\n{out}")
    st = TcpStat()
    for line in out.splitlines()[1:]:
        n, _, text = line.strip().partition(" ")
        st[singular(text)] = int(n)
    return st


def settled(d, idle_threads):
    """No connection left but TIME_WAIT, and the echo's threads idle."""
    rows = conn_rows(d)
    busy = [r for r in rows if r[-1] != "TIME_WAIT"]
    return not busy and threads(d) == idle_threads, (busy[:5], threads(d))


def run_test():
    check(os.path.exists(example_bin("echo")), f"{example_bin('echo')} not built (cargo build --release --example echo)")
    with Topo("sockr") as t:
        t.step("topology: A -- softnet (packet, 2 workers) with the echo example -- B")
        a, r, b = t.ns("a"), t.ns("r"), t.ns("b")
        t.veth(a, "a0", MAC_A, r, "ra", "02:00:00:00:01:fd")
        t.veth(b, "b0", MAC_B, r, "rb", "02:00:00:00:02:fd")
        t.host(a, "a0", "10.0.1.2/24", "10.0.1.1")
        t.ns_run(a, "ip addr add 10.0.1.3/24 dev a0")
        t.host(b, "b0", "10.0.2.2/24", "10.0.2.1")
        net = Net(driver="packet", a=a, r=r, b=b, c=None, d=None, dev_r2=None)
        net.dev_r0 = t.router_port(r, "packet", "t0", "ra")
        net.dev_r1 = t.router_port(r, "packet", "t1", "rb")
        d = Embedded(t, net.config(workers=2), net.r, "echo", ["--addr", "0.0.0.0", "--port", str(PORT)])
        d.start()
        wait_until("A reaching the router", lambda: t.ns_run(a, f"ping -c 1 -W 1 {HOST}", check_rc=False)
                   .returncode == 0, timeout=20)
        t.ns_run(a, f"tc qdisc replace dev a0 root pfifo limit 100000", check_rc=False)
        # The fewest threads over a second: the readiness probe's control
        # connection has a thread that ends shortly after it (a count taken
        # while it lingers would be one too many for every later check).
        idle = settled_threads(d.proc.pid, secs=1.0)
        log(f"  echo process: {idle} threads idle, RSS {rss_kb(d)} kB")

        t.step("1: UDP echo, 200 datagrams")
        u = peer(t, a, "udp", HOST, PORT, 200)
        check(u["echoed"] == 200 and u["bad"] == 0, f"UDP echo: {u}")

        t.step("2: 1,000 concurrent connections")
        c = peer(t, a, "concurrent", HOST, PORT, 1000, timeout=120)
        check(c["ok"] == 1000 and c["failed"] == 0 and c["unfinished"] == 0, f"1,000 concurrent: {c}")
        wait_until("no connection left, threads idle", lambda: settled(d, idle)[0], timeout=30)
        st = tcpstat(d)
        check(st.get("connection accepts", 0) >= 1000, f"accepts counted: {st}")
        # The kernel's fanout hash keeps a flow on one worker, which owns
        # the connection: no segment was processed anywhere else.
        miss = st.get("packets processed off their connection's worker", -1)
        check(miss == 0, f"segments off their connection's worker: {miss}")

        t.step("3: 32 MB echoed both ways (SHA-256)")
        bk = peer(t, a, "bulk", HOST, PORT, 32, timeout=180)
        check(bk["equal"] and bk["got"] == bk["sent"], f"bulk echo: {bk}")

        t.step("4: closing under load: 200 streaming connections, half aborted")
        ch = peer(t, a, "churn", HOST, PORT, 200, timeout=120)
        check(ch["aborted"] == 100 and ch["clean"] == 100, f"churn: {ch}")
        wait_until("nothing stuck after the churn", lambda: settled(d, idle)[0], timeout=30)
        tw = [r for r in conn_rows(d) if r[-1] == "TIME_WAIT"]
        check(len(tw) <= 200, f"TIME_WAIT bounded by the connections made: {len(tw)}")

        t.step("5: a peer that never reads")
        hp = subprocess.Popen(["ip", "netns", "exec", a, "python3", PEER, "hold", HOST, str(PORT), "64"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        t.procs.append(hp)
        h = json.loads(hp.stdout.readline())
        log(f"  hold: {h}")
        check(h["stalled"], f"the never-reading peer's writes stalled: {h}")
        rows = [r for r in conn_rows(d) if r[-1] == "ESTABLISHED"]
        check(len(rows) == 1 and int(rows[0][2]) > 0, f"the stalled connection with a Send-Q: {rows}")
        c = peer(t, a, "concurrent", HOST, PORT, 50)
        check(c["ok"] == 50, f"others served meanwhile: {c}")
        hp.stdin.write("\n")
        hp.stdin.flush()
        check(hp.wait(timeout=20) == 0, "hold peer exit")
        wait_until("the stalled connection gone", lambda: settled(d, idle)[0], timeout=30)

        t.step("6: blind RST/SYN, out-of-window, malformed segments (scapy)")
        before = tcpstat(d)
        bl = peer(t, a, "blind", "a0", HOST, PORT, timeout=180)
        for k in ("rst_in_window", "syn_in_window", "out_of_window"):
            check(bl[k]["challenge_ack"] and bl[k]["rst_from_router"] == 0 and bl[k]["echo_after"], f"{k}: {bl[k]}")
        for k in ("bad_option", "bad_checksum", "ooo_flood"):
            check(bl[k]["rst_from_router"] == 0 and bl[k]["echo_after"], f"{k}: {bl[k]}")
        check(bl["syn_with_data"]["synack"] and bl["syn_with_data"]["ack_is_isn_plus_1"], f"SYN with data: {bl}")
        check(bl["syn_bad_checksum"]["answers"] == 0 and bl["syn_bad_option"]["answers"] == 0, f"bad SYNs: {bl}")
        st = tcpstat(d)

        def moved(text, at_least=1):
            got = st.get(text, 0) - before.get(text, 0)
            check(got >= at_least, f"netstat -s -p tcp '{text}' moved by {got}, want >= {at_least}:\n{st}")

        moved("challenge ACKs sent", 2)
        moved("for a RST in the window")
        moved("for a SYN on a synchronized connection")
        moved("discarded for bad checksums", 2)
        moved("discarded for bad options", 2)
        moved("out-of-order packets dropped (queue full)", 100)
        wait_until("the blind test's connection gone", lambda: settled(d, idle)[0], timeout=30)

        t.step("7: SYN flood of 20,000 while a real client connects")
        t.ns_run(a, "nft -f -", input=("table inet sne2e_flood {\n  chain in { type filter hook input priority 0;"
                                        " ip daddr 10.0.1.3 tcp sport 7 drop; }\n}\n"))
        rss0 = rss_kb(d)
        before = tcpstat(d)

        def grew(st, key):
            return st.get(key, 0) - before.get(key, 0)

        def r0_idrop():
            # netstat -i: Name Mtu Network Address Ipkts Ifail Opkts Ofail Idrop
            rows = [l.split() for l in d.out("netstat", "-i").splitlines() if "<Link>" in l]
            return int([r for r in rows if r[0] == "r0"][0][8])

        # The 20,000 SYNs go in 0.1 s; a router that waits for a CPU then (a
        # loaded machine) drops part of them in its ring, counted as r0's
        # Idrop (seen: 5,725 at load 17, 10,278 at load 8): one worker's
        # half of the cache may stay unfilled, or too few SYNs are left for
        # cookies, and the real client's SYNs on an unfilled worker are
        # cached, not answered with cookies. Then, and only when the ring
        # counted drops (a shortfall without them fails below as before),
        # 20,000 more SYNs from the next 20,000 source ports go, until the
        # cache is full (FULL_CACHE added, as every run without drops shows)
        # with 5,000 cookies sent, at most 3 floods in all.
        for rounds in range(1, 4):
            idrop0 = r0_idrop()
            fl = peer(t, a, "flood", "a0", "10.0.1.3", HOST, PORT, 20000, (rounds - 1) * 20000, timeout=180)
            check(fl["sent"] == 20000, f"flood: {fl}")
            st = tcpstat(d)
            dropped = r0_idrop() - idrop0
            if grew(st, "SYN cache entries added") >= FULL_CACHE and grew(st, "cookies sent") >= 5000:
                break
            log(f"  after flood {rounds}: {grew(st, 'SYN cache entries added')} added, "
                f"{grew(st, 'cookies sent')} cookies; {dropped} SYNs dropped in r0's ring (Idrop)")
            if dropped == 0:
                break
        c = peer(t, a, "concurrent", HOST, PORT, 20)
        check(c["ok"] == 20, f"a real client during the flood: {c}")
        st = tcpstat(d)
        added = grew(st, "SYN cache entries added")
        overflow = grew(st, "not added, the cache full (a cookie sent)")
        cookies = grew(st, "cookies sent")
        got_cookies = st.get("cookies received", 0) - before.get("cookies received", 0)
        log(f"  syncache added {added}, overflow {overflow}, cookies sent {cookies}, received {got_cookies}")
        check(added >= 10000 and cookies >= 5000 and overflow == cookies, f"the cache filled, cookies took over:\n{st}")
        check(got_cookies >= 20, f"the real client's connections completed by cookies:\n{st}")
        rss1 = rss_kb(d)
        log(f"  RSS {rss0} -> {rss1} kB")
        check(rss1 - rss0 < 64 * 1024, f"memory bounded under the flood: {rss0} -> {rss1} kB")
        check(d.alive(), "the echo example still runs")
        log("pass")


if __name__ == "__main__":
    main(run_test)
