"""softnet's own TCP with Linux peers: examples/httpd.rs (the router built
from the daemon's configuration, serving a directory with the socket API)
on the router's address, fetched with curl from a namespace.

A 10.0.1.2 -- W -- r0 10.0.1.1 [softnet + httpd :8080] r1 10.0.2.1 -- B 10.0.2.2

W is a namespace between A and the router: a bridge, or for step 4 a
user-space netem (impair.py: this machine's kernel has no sch_netem).

1 the embedded router answers its control socket (`ifconfig`) and a port
  nobody listens on is refused (curl: connection refused, the closed-port
  RST)
2 curl fetches 100 MB from A: SHA-256 equal; a missing file is a 404;
  curl uploads 100 MB (PUT) and the file stored has the same SHA-256
3 the same over IPv6 (fd00:1::1), 20 MB
4 netem on A's wire, both ways (1 % loss, 1 % reordering, 1 %
  duplication each way, 10 ms delay a round trip: 5 ms each way, what
  `tc netem delay 10ms` on the peer's veth adds; impair.py in W, this
  machine's kernel has no sch_netem): 100 MB intact, the retransmissions
  and recoveries it took logged (`netstat -s -p tcp`)
5 B and A fetch at the same time; afterwards `softnet netstat -an -p tcp`
  (OpenBSD's format) shows the two listeners (tcp, tcp6) and TIME_WAIT
  connections only

Needs the example built: `cargo build --release --example httpd`
(HTTPD_BIN, default target/release/examples/httpd).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import MAC_A, MAC_B, Net, Topo, check, log, main, make_file, sha, wait_until  # noqa: E402
from lib_sock import Embedded, example_bin  # noqa: E402

BIG_MB = 100
# Under netem TCP moves ~1 MB/s (1 % loss and 1 % reordering at a 10-ms
# round trip: Mathis' bound): 100 MB takes ~70-95 s of CI's time. Issue 13
# asks for "the same transfers" under netem, so 100 MB it stays (25 MB,
# tried in session 14, would prove the same recoveries in a quarter of the
# time: ~250 each of losses, duplicates and reorderings against the >100
# the check wants; the words decide).
NETEM_MB = 100


def fetch(t, ns, url, out, max_time=240, extra=""):
    p = t.ns_run(ns, f"curl -sS {extra} --max-time {max_time} -o {out} -w %{{http_code}} {url}", check_rc=False,
                 timeout=max_time + 30)
    return p


def run_test():
    check(os.path.exists(example_bin("httpd")), f"{example_bin('httpd')} not built (cargo build --release --example httpd)")
    with Topo("sock") as t:
        t.step("topology: A -- W (bridge) -- softnet (packet) with httpd -- B; IPv6 on A")
        a, w, r, b = t.ns("a"), t.ns("w"), t.ns("r"), t.ns("b")
        t.veth(a, "a0", MAC_A, w, "w0", "02:00:00:00:0f:01")
        t.veth(w, "w1", "02:00:00:00:0f:02", r, "ra", "02:00:00:00:01:fd")
        t.veth(b, "b0", MAC_B, r, "rb", "02:00:00:00:02:fd")
        t.ns_run(w, "ip link add br0 type bridge stp_state 0 forward_delay 0")
        t.ns_run(w, "ip link set br0 up")
        for p in ("w0", "w1"):
            t.ns_run(w, f"ip link set {p} master br0")
        t.host(a, "a0", "10.0.1.2/24", "10.0.1.1")
        t.host(b, "b0", "10.0.2.2/24", "10.0.2.1")
        net = Net(driver="packet", a=a, r=r, b=b, c=None, d=None, dev_r2=None)
        net.dev_r0 = t.router_port(r, "packet", "t0", "ra")
        net.dev_r1 = t.router_port(r, "packet", "t1", "rb")
        t.ns_run(net.a, "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0")
        t.ns_run(net.a, "sysctl -qw net.ipv6.conf.a0.disable_ipv6=0 net.ipv6.conf.a0.accept_ra=0")
        t.ns_run(net.a, "ip -6 addr add fd00:1::2/64 dev a0 nodad")
        www = os.path.join(t.tmp, "www")
        os.makedirs(www)
        big = os.path.join(www, "big.bin")
        want = make_file(big, BIG_MB)
        cfg = net.config()
        cfg = cfg.replace('addr = ["10.0.1.1/24"]', 'addr = ["10.0.1.1/24", "fd00:1::1/64"]', 1)
        d = Embedded(t, cfg, net.r, "httpd", ["--root", www, "--listen", "0.0.0.0:8080", "--listen", "[::]:8080"])
        d.start()

        t.step("1: the control socket answers; a closed port is refused")
        check("r0" in d.out("ifconfig"), "ifconfig through the embedded router's control socket")
        wait_until("httpd answering", lambda: fetch(t, net.a, "http://10.0.1.1:8080/none", "/dev/null",
                                                     max_time=3).stdout == "404", timeout=20)
        p = fetch(t, net.a, "http://10.0.1.1:8081/", "/dev/null", max_time=5)
        check(p.returncode == 7, f"closed port: rc={p.returncode} {p.stderr}")

        t.step(f"2: curl fetches {BIG_MB} MB, SHA-256 checked")
        got = os.path.join(t.tmp, "got.bin")
        p = fetch(t, net.a, "http://10.0.1.1:8080/big.bin", got)
        check(p.returncode == 0 and p.stdout == "200", f"curl: rc={p.returncode} {p.stdout} {p.stderr}")
        check(sha(got) == want, "SHA-256 differs")
        os.unlink(got)

        t.step(f"2b: curl uploads {BIG_MB} MB (PUT), SHA-256 of the stored file checked")
        p = t.ns_run(net.a, f"curl -sS -H 'Expect:' --max-time 240 -T {big} -w %{{http_code}} "
                            f"http://10.0.1.1:8080/up.bin", check_rc=False, timeout=270)
        check(p.returncode == 0 and p.stdout.endswith("201"), f"curl -T: rc={p.returncode} {p.stdout} {p.stderr}")
        check(p.stdout.split()[0] == str(BIG_MB << 20), f"bytes stored: {p.stdout}")
        up = os.path.join(www, "up.bin")
        check(sha(up) == want, "SHA-256 of the upload differs")
        os.unlink(up)

        t.step("3: over IPv6, 20 MB")
        wait_until("fd00:1::1 out of DAD", lambda: "tentative" not in d.out("ifconfig", "r0"), timeout=15)
        small = os.path.join(www, "small.bin")
        want_small = make_file(small, 20)
        wait_until("httpd on [::]", lambda: fetch(t, net.a, "http://[fd00:1::1]:8080/none", "/dev/null",
                                                   max_time=3).stdout == "404", timeout=20)
        p = fetch(t, net.a, "http://[fd00:1::1]:8080/small.bin", got)
        check(p.returncode == 0 and p.stdout == "200", f"curl -6: rc={p.returncode} {p.stdout} {p.stderr}")
        check(sha(got) == want_small, "SHA-256 differs over IPv6")
        os.unlink(got)

        t.step(f"4: netem 1% loss, 1% reorder, 1% duplicate, 10 ms delay a round trip on A's wire: {NETEM_MB} MB intact")
        mid = os.path.join(www, "netem.bin")
        want_mid = make_file(mid, NETEM_MB)
        for p in ("w0", "w1"):
            t.ns_run(w, f"ip link set {p} nomaster")
            t.ns_run(w, f"ip link set {p} promisc on")
        impair = os.path.join(os.path.dirname(os.path.abspath(__file__)), "impair.py")
        stats = os.path.join(t.tmp, "impair.txt")
        with open(stats, "w") as sf:
            ip = t.ns_spawn(w, f"python3 {impair} w0 w1 --loss 1 --dup 1 --reorder 1 --delay-ms 5 --seed 7",
                            stdout=sf)
        wait_until("A reaching the router through the impaired wire",
                   lambda: t.ns_run(a, "ping -c 1 -W 1 10.0.1.1", check_rc=False).returncode == 0, timeout=20)
        p = fetch(t, net.a, "http://10.0.1.1:8080/netem.bin", got, max_time=400)
        check(p.returncode == 0 and p.stdout == "200", f"curl under netem: rc={p.returncode} {p.stdout} {p.stderr}")
        check(sha(got) == want_mid, "SHA-256 differs under netem")
        os.unlink(got)
        t.kill(ip)
        with open(stats) as sf:
            counts = dict(kv.split("=") for kv in sf.read().split())
        log(f"  impair.py: {counts}")
        tcp_s = d.out("netstat", "-s", "-p", "tcp")
        log("  " + "\n  ".join(l.strip() for l in tcp_s.splitlines()
                                if "retransmit" in l or "recovery" in l or "duplicate" in l))
        check(int(counts["lost"]) > 100 and int(counts["dup"]) > 100 and int(counts["reordered"]) > 100,
              f"the wire did impair: {counts}")
        for p in ("w0", "w1"):
            t.ns_run(w, f"ip link set {p} master br0")

        t.step("5: A and B fetch at once; then only TIME_WAIT is left")
        import subprocess
        outs = [os.path.join(t.tmp, f"par{i}.bin") for i in range(2)]
        procs = [subprocess.Popen(["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "200", "-o", o,
                                   f"http://10.0.1.1:8080/{'small.bin'}"])
                 for ns, o in ((net.a, outs[0]), (net.b, outs[1]))]
        for p in procs:
            check(p.wait(timeout=230) == 0, "parallel curl")
        for o in outs:
            check(sha(o) == want_small, "SHA-256 differs (parallel)")
        ns_out = d.out("netstat", "-an", "-p", "tcp")
        log("  " + ns_out.strip().replace("\n", "\n  "))
        lines = ns_out.splitlines()
        check(lines[0] == "Active Internet connections (including servers)", ns_out)
        check(lines[1].split() == ["Proto", "Recv-Q", "Send-Q", "Local", "Address", "Foreign", "Address",
                                   "TCP-State"], ns_out)
        check(any(l.split()[3:] == ["*.8080", "*.*", "LISTEN"] and l.startswith("tcp ") for l in lines), ns_out)
        check(any(l.split()[3:] == ["*.8080", "*.*", "LISTEN"] and l.startswith("tcp6 ") for l in lines), ns_out)
        rows = [l.split() for l in lines if l.startswith("tcp")]
        states = {r[-1] for r in rows}
        check(states <= {"LISTEN", "TIME_WAIT"}, f"only listeners and TIME_WAIT left: {states}")
        check(any(r[-1] == "TIME_WAIT" and r[3] == "10.0.1.1.8080" and r[4].startswith("10.0.2.2.") for r in rows),
              "B's connection in TIME_WAIT on the server side (it closed first)")
        check(d.out("netstat", "-n") == "" or "LISTEN" not in d.out("netstat", "-n"), "without -a no listeners")
        log("pass")


if __name__ == "__main__":
    main(run_test)
