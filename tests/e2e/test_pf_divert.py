"""pf's divert-to with a transparent proxy on softnet's own TCP
(examples/proxy.rs: the router built from the daemon's configuration,
relaying each diverted connection to its original destination).

A 10.0.1.2 -- r0 10.0.1.1 [softnet + pf + proxy on 127.0.0.1:8080] r1 10.0.2.1 -- B 10.0.2.2

pf.conf: pass; pass in on r0 proto tcp to port 80 divert-to 127.0.0.1 port 8080;
         pass in on r0 proto udp to port 7 divert-to 127.0.0.1 port 7007 (the
         proxy's --udp-echo)

1 curl on A fetches http://10.0.2.2/ (5 MB, SHA-256 equal): B's server saw
  the request come from the router (10.0.2.1), not from A; the proxy
  logged A's connection to 10.0.2.2:80 (the accepted socket's local
  address is the original destination)
2 while a connection through the proxy is held open, `pfctl -ss` shows its
  two states: A's diverted one (10.0.2.2:80 <- 10.0.1.2) and the relay's
  (10.0.2.1 -> 10.0.2.2:80), both ESTABLISHED
3 port 8000 on B is not diverted: B sees A's own address
4 UDP divert-to: A's datagrams to 10.0.2.2:7 reach the proxy's echo socket
  on 127.0.0.1:7007, which answers from 10.0.2.2:7 (their original
  destination, a socket bound to it); A sees the answers come from there
5 divert-packet: `pass in on r0 proto tcp to port 8000 divert-packet port
  700` hands the packets of A's fetch from B:8000 to the proxy's divert
  socket (--divert-packet 700), which writes each back: the SHA-256 is
  equal, B sees A's own address, the proxy logged the first packet with
  its original addresses, `netstat -s` counts the packets both ways. With
  the rule naming a port no socket has, the fetch fails and `netstat -s`
  counts the drops ("dropped due to no socket"); a ruleset with
  divert-packet and af-to is refused and changes nothing
6 divert-reply: the proxy restarted with --transparent connects to B from
  A's address; `pass out on r1 proto tcp to port 80 divert-reply` hands
  B's replies to it: the fetch's SHA-256 is equal, B's log shows A's
  address, and `pfctl -ss` the relay's state from A's address

Needs the example built: `cargo build --release --example proxy`
(PROXY_BIN, default target/release/examples/proxy).
"""

import hashlib
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import check, log, main, netstat_s_counters, sha, wait_until  # noqa: E402
from lib_sock import Embedded, example_bin  # noqa: E402

RULES = ("pass\npass in on r0 proto tcp to port 80 divert-to 127.0.0.1 port 8080\n"
         "pass in on r0 proto udp to port 7 divert-to 127.0.0.1 port 7007\n")
UDP_CLIENT = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.1.2", 5007))
s.settimeout(3)
for i in range(3):
    msg = b"datagram %d" % i
    for _ in range(5):
        s.sendto(msg, ("10.0.2.2", 7))
        try:
            data, src = s.recvfrom(100)
            break
        except socket.timeout:
            continue
    else:
        raise SystemExit("no answer")
    assert data == msg, data
    print("%s:%d %s" % (src[0], src[1], data.decode()))
"""


# A connection to B:80 that fetches a byte and is held open.
HELD_CONNECTION = ("import socket,time\n"
                   "s=socket.create_connection(('10.0.2.2',80),timeout=10)\n"
                   "s.sendall(b'GET /f.bin HTTP/1.1\\r\\nHost: b\\r\\n\\r\\n')\n"
                   "s.recv(1)\n"
                   "time.sleep(30)\n")
DIVERT_PACKET = "pass in on r0 proto tcp to port 8000 divert-packet port {port}\n"


def load_rules(t, name, text):
    """A pf.conf `name` with `text` in the run's directory; its path."""
    path = os.path.join(t.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def divert_stats(d):
    """`netstat -s`'s divert section."""
    c = netstat_s_counters(d.out("netstat", "-s"))
    return {k: c[f"divert: {k}"] for k in ("total packets received", "dropped due to no socket",
                                           "dropped due to full socket buffers", "packets output", "errors")}


def run_test():
    check(os.path.exists(example_bin("proxy")), f"{example_bin('proxy')} not built (cargo build --release --example proxy)")
    from lib_e2e import Topo
    with Topo("divert") as t:
        t.step("topology: A -- softnet (pf divert-to, proxy example) -- B with two HTTP servers")
        net = t.router_topology("packet")
        www = os.path.join(t.tmp, "www")
        os.makedirs(www)
        data = os.urandom(5 << 20)
        with open(os.path.join(www, "f.bin"), "wb") as f:
            f.write(data)
        want = hashlib.sha256(data).hexdigest()
        logs = {}
        for port in (80, 8000):
            logs[port] = os.path.join(t.tmp, f"http{port}.log")
            lf = open(logs[port], "w")
            t.ns_spawn(net.b, f"python3 -u -m http.server {port} --bind 10.0.2.2 --directory {www}",
                       stdout=lf, stderr=lf)
            t.wait_listen(net.b, port)
        conf = os.path.join(t.tmp, "pf.conf")
        with open(conf, "w") as f:
            f.write(RULES)
        args = ["--listen", "127.0.0.1:8080", "--udp-echo", "127.0.0.1:7007", "--divert-packet", "700", "--log"]
        d = Embedded(t, net.config(extra=f'pf = "{conf}"\n'), net.r, "proxy", args)
        d.start()
        d.wait_log(r"pf: .* loaded, pf enabled", timeout=10)

        t.step("1: curl A -> B:80 goes through the proxy, SHA-256 checked")
        got = os.path.join(t.tmp, "got.bin")
        p = t.ns_run(net.a, f"curl -sS --max-time 60 -o {got} -w %{{http_code}} http://10.0.2.2/f.bin",
                     check_rc=False, timeout=90)
        check(p.returncode == 0 and p.stdout == "200", f"curl: rc={p.returncode} {p.stdout} {p.stderr}")
        check(sha(got) == want, "SHA-256 differs")
        wait_until("B's log line", lambda: "f.bin" in open(logs[80]).read(), timeout=5)
        b_log = open(logs[80]).read()
        log("  B (port 80): " + b_log.strip().splitlines()[-1])
        check(re.search(r"^10\.0\.2\.1 .*GET /f\.bin", b_log, re.M), f"B saw the router's relay: {b_log}")
        check("10.0.1.2" not in b_log, f"B never saw A itself: {b_log}")
        line = d.wait_log(r"proxy: 10\.0\.1\.2:\d+ -> 10\.0\.2\.2:80 via 10\.0\.2\.1:\d+: \d+ bytes up, \d+ down",
                          timeout=10)[-1]
        log("  " + line)
        down = int(re.search(r"(\d+) down", line).group(1))
        check(len(data) < down < len(data) + 1024, f"the proxy relayed the file and B's headers: {down}")

        t.step("2: a held connection's two states in pfctl -ss")
        s = t.ns_spawn(net.a, ["python3", "-c", HELD_CONNECTION])
        states = ""

        def both_states():
            nonlocal states
            states = d.out("pfctl", "-ss")
            return (re.search(r"tcp 10\.0\.2\.2:80 <- 10\.0\.1\.2:\d+\s+ESTABLISHED:ESTABLISHED", states)
                    and re.search(r"tcp 10\.0\.2\.1:\d+ -> 10\.0\.2\.2:80\s+ESTABLISHED:ESTABLISHED", states))
        wait_until("both states established", both_states, timeout=15)
        log("  " + states.strip().replace("\n", "\n  "))
        t.kill(s)

        t.step("3: port 8000 is not diverted: B sees A")
        p = t.ns_run(net.a, "curl -sS --max-time 20 -o /dev/null -w %{http_code} http://10.0.2.2:8000/f.bin",
                     check_rc=False, timeout=40)
        check(p.stdout == "200", f"curl :8000: {p.returncode} {p.stdout} {p.stderr}")
        wait_until("B's :8000 log line", lambda: "f.bin" in open(logs[8000]).read(), timeout=5)
        check(re.search(r"^10\.0\.1\.2 .*GET /f\.bin", open(logs[8000]).read(), re.M), "B saw A directly")

        t.step("4: UDP to 10.0.2.2:7 is diverted and answered in B's name")
        p = t.ns_run(net.a, ["python3", "-c", UDP_CLIENT], check_rc=False, timeout=40)
        check(p.returncode == 0, f"udp client: {p.returncode} {p.stdout} {p.stderr}")
        log("  " + p.stdout.strip().replace("\n", "\n  "))
        check(p.stdout.count("10.0.2.2:7 datagram") == 3, f"answers from the original destination: {p.stdout}")
        d.wait_log(r"proxy: udp 10\.0\.1\.2:5007 -> 10\.0\.2\.2:7: 10 bytes echoed", timeout=5)
        states = d.out("pfctl", "-ss")
        check(re.search(r"udp 10\.0\.2\.2:7 <- 10\.0\.1\.2:5007", states), f"the diverted UDP state: {states}")

        t.step("5: divert-packet: the packets of a fetch through the proxy's divert socket")
        p = d.admin("pfctl", "-f", load_rules(t, "dp700.conf", RULES + DIVERT_PACKET.format(port=700)), check_rc=False)
        check(p.returncode == 0, f"divert-packet loads: {p.stderr}")
        n_before = open(logs[8000]).read().count("GET /f.bin")
        p = t.ns_run(net.a, f"curl -sS --max-time 60 -o {got} -w %{{http_code}} http://10.0.2.2:8000/f.bin",
                     check_rc=False, timeout=90)
        check(p.stdout == "200" and sha(got) == want, f"diverted fetch: {p.returncode} {p.stderr}")
        wait_until("B's next :8000 line", lambda: open(logs[8000]).read().count("GET /f.bin") > n_before, timeout=5)
        check(open(logs[8000]).read().strip().splitlines()[-1].startswith("10.0.1.2 "), "B saw A's own address")
        line = d.wait_log(r"proxy: divert-packet port 700: first packet 10\.0\.1\.2 -> 10\.0\.2\.2 at 10\.0\.1\.1",
                          timeout=5)[-1]
        log("  " + line)
        div = {}

        def all_written_back():
            nonlocal div
            div = divert_stats(d)
            return div["packets output"] == (div["total packets received"] - div["dropped due to no socket"]
                                             - div["dropped due to full socket buffers"])
        # A's segments in on r0 and B's leaving by r0, each written back
        # unless the proxy's receive ring was full (TCP sent it again).
        wait_until("every diverted packet written back", all_written_back, timeout=5)
        log(f"  netstat -s divert: {div}")
        check(div["total packets received"] > len(data) // 1500 and div["dropped due to no socket"] == 0,
              f"divert counters: {div}")

        t.step("5b: no socket on the port: dropped and counted; af-to with divert-packet refused")
        p = d.admin("pfctl", "-f", load_rules(t, "dp701.conf", RULES + DIVERT_PACKET.format(port=701)), check_rc=False)
        check(p.returncode == 0, f"port 701 loads: {p.stderr}")
        p = t.ns_run(net.a, "curl -sS --max-time 3 -o /dev/null http://10.0.2.2:8000/f.bin",
                     check_rc=False, timeout=20)
        check(p.returncode != 0, "no socket on port 701: the fetch fails")
        check(divert_stats(d)["dropped due to no socket"] > 0, f"drops counted: {divert_stats(d)}")
        bad = load_rules(t, "bad.conf", "pass\npass in on r0 inet af-to inet6 from fd00::1 divert-packet port 700\n")
        p = d.admin("pfctl", "-f", bad, check_rc=False)
        check(p.returncode != 0 and "divert-packet with af-to not supported yet" in p.stderr, f"refused: {p.stderr}")
        rules_now = d.out("pfctl", "-sr")
        check("divert-packet port 701" in rules_now, f"the loaded ruleset stays: {rules_now}")
        n_before = open(logs[80]).read().count("GET /f.bin")
        p = t.ns_run(net.a, f"curl -sS --max-time 60 -o {got} -w %{{http_code}} http://10.0.2.2/f.bin",
                     check_rc=False, timeout=90)
        check(p.stdout == "200" and sha(got) == want, f"still diverted: {p.returncode} {p.stderr}")
        wait_until("B's next log line", lambda: open(logs[80]).read().count("GET /f.bin") > n_before, timeout=5)
        check(open(logs[80]).read().strip().splitlines()[-1].startswith("10.0.2.1 "), "through the proxy")

        t.step("6: divert-reply: a transparent relay from A's address")
        d.stop()
        with open(conf, "w") as f:
            f.write(RULES + "pass out on r1 proto tcp to port 80 divert-reply\n")
        d = Embedded(t, net.config(extra=f'pf = "{conf}"\n'), net.r, "proxy",
                     ["--listen", "127.0.0.1:8080", "--transparent", "--log"])
        d.start()
        d.wait_log(r"pf: .* loaded, pf enabled", timeout=10)
        n_before = open(logs[80]).read().count("GET /f.bin")
        p = t.ns_run(net.a, f"curl -sS --max-time 60 -o {got} -w %{{http_code}} http://10.0.2.2/f.bin",
                     check_rc=False, timeout=90)
        check(p.stdout == "200" and sha(got) == want, f"transparent fetch: {p.returncode} {p.stderr}")
        wait_until("B's next log line", lambda: open(logs[80]).read().count("GET /f.bin") > n_before, timeout=5)
        last = open(logs[80]).read().strip().splitlines()[-1]
        log("  B (port 80): " + last)
        check(last.startswith("10.0.1.2 "), f"B saw A's address: {last}")
        line = d.wait_log(r"proxy: 10\.0\.1\.2:\d+ -> 10\.0\.2\.2:80 via 10\.0\.1\.2:\d+: \d+ bytes up", timeout=10)[-1]
        log("  " + line)
        s = t.ns_spawn(net.a, ["python3", "-c", HELD_CONNECTION])

        def relay_state():
            nonlocal states
            states = d.out("pfctl", "-ss")
            return re.search(r"tcp 10\.0\.1\.2:\d+ -> 10\.0\.2\.2:80\s+ESTABLISHED:ESTABLISHED", states)
        wait_until("the relay's state from A's address", relay_state, timeout=15)
        log("  " + states.strip().replace("\n", "\n  "))
        t.kill(s)
        log("pass")


if __name__ == "__main__":
    main(run_test)
