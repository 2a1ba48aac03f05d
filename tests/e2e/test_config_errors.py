"""Configuration errors and the daemon's lifecycle.

* `softnet check` with bad configs: exit 1, one clear error naming the file
  and line; a good one: "configuration OK", exit 0.
* `softnet up` with a bad config, or one naming a missing device: exit 1
  with the error, no control socket left.
* SIGHUP with a broken config: rejected and logged; addresses and routes
  stay, forwarding goes on.
* SIGHUP with a changed config (an address and a route added, a route
  removed): the difference is applied; a route added with `route add`
  stays.
* A second daemon on the same socket is refused; the first one goes on.
* SIGTERM: exit 0, socket removed. A socket left by a killed daemon is
  taken over by the next one.
"""

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import MAC_R0, Topo, check, log, main, run, wait_until  # noqa: E402

GOOD_IFACES = """
[[interface]]
name = "r0"
driver = "packet"
device = "ra"
addr = ["10.0.1.1/24"]
"""

# (config text, line the error must name, words it must contain)
BAD = [
    ("bogus = 1\n", 1, "unknown field `bogus`"),
    ("workers = 0\n", 1, "workers = 0: expected 1 to"),
    ('workers = 1\nlog = "loud"\n', 2, 'log = "loud": expected error, warn, info, debug or trace'),
    ("workers = [\n", 1, ""),
    ('workers = 1\n\n[[interface]]\nname = "x0"\ndriver = "tun"\n', 5, 'interface "x0": unknown driver "tun"'),
    ('[[interface]]\nname = "x0"\ndriver = "tap"\naddr = ["10.0.0.300/24"]\n', 4, "bad IPv4 address"),
    ('[[interface]]\nname = "x0"\ndriver = "tap"\naddr = ["10.0.0.1"]\n', 4, "needs a prefix length"),
    ('[[interface]]\nname = "x0"\ndriver = "tap"\nmac = "zz:00"\n', 4, "bad MAC address"),
    ('[[interface]]\nname = "x0"\ndriver = "tap"\nmtu = 20\n', 4, "mtu 20 out of range"),
    ('[[interface]]\nname = "this-name-is-too-long"\ndriver = "tap"\n', 2, "is invalid"),
    ('[[interface]]\nname = "x0"\ndriver = "tap"\n[[interface]]\nname = "x0"\ndriver = "tap"\n', 5,
     'interface "x0" defined twice'),
    ('[[interface]]\nname = "a"\ndriver = "tap"\naddr = ["10.0.1.1/24"]\n'
     '[[interface]]\nname = "b"\ndriver = "tap"\naddr = ["10.0.1.1/16"]\n', 8, "already configured on"),
    ('[[interface]]\nname = "a"\ndriver = "tap"\naddr = ["10.0.1.1/24"]\n'
     '[[route]]\ndest = "default"\ngateway = "10.0.2.254"\n', 7, "gateway 10.0.2.254 is not on a network"),
    ('[[route]]\ndest = "10.0.0.0/33"\nreject = true\n', 2, "prefix length 33"),
    ('[[route]]\ndest = "default"\n', 1, "exactly one of"),
    ('[[route]]\ndest = "10.0.0.0/8"\nreject = true\n[[route]]\ndest = "10.1.0.0/8"\nblackhole = true\n', 5,
     "defined twice"),
    ('[[interface]]\nname = "v0"\ndriver = "virtual"\n', 1, 'driver "virtual" exists only in memory'),
]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def frame(body):
    return struct.pack("!I", len(body)) + body


def read_frame(s):
    """One response frame (4-byte length, JSON), or None if the daemon closed."""
    hdr = b""
    while len(hdr) < 4:
        b = s.recv(4 - len(hdr))
        if not b:
            return None
        hdr += b
    n = struct.unpack("!I", hdr)[0]
    body = b""
    while len(body) < n:
        b = s.recv(n - len(body))
        if not b:
            break
        body += b
    return json.loads(body)


def control_abuse(d):
    def conn():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(d.socket)
        return s

    idle = [conn() for _ in range(20)]
    try:
        check(d.admin("netstat", "-rn").returncode == 0, "admin blocked by idle connections")
        s = conn()
        s.sendall(frame(b"hello, daemon"))
        r = read_frame(s)
        check(r is not None and "error" in r.get("response", {}), f"garbage frame: {r}")
        s.sendall(frame(b'{"version": 99, "request": {}}'))
        r = read_frame(s)
        check(r is not None and "99" in json.dumps(r) and "error" in r.get("response", {}), f"wrong version: {r}")
        s.close()
        s = conn()
        s.sendall(b"\xff\xff\xff\xff")
        r = read_frame(s)
        check(r is None or "too long" in json.dumps(r), f"huge length: {r}")
        s.close()
        s = conn()
        s.sendall(b"\x00\x00\x01\x00{")  # a frame cut short, then the client goes
        s.close()
        log("  garbage and wrong version answered with errors; idle connections did not block")
    finally:
        for s in idle:
            s.close()


def run_test():
    with Topo("cfg") as t:
        tmp = t.tmp
        t.step(f"softnet check: {len(BAD)} bad configurations, each: exit 1, file and line named")
        for i, (text, line, words) in enumerate(BAD):
            path = os.path.join(tmp, f"bad{i}.toml")
            write(path, text)
            p = run([t.bin, "check", "-c", path], check_rc=False)
            err = p.stderr.strip()
            check(p.returncode == 1, f"check {text!r}: exit {p.returncode}, want 1 ({err})")
            check(err.startswith(f"error: {path} line {line}: ") and words in err and "\n" not in err,
                  f"check {text!r}: got {err!r}, want one line 'error: {path} line {line}: ...{words}...'")
            check(p.stdout == "", f"check {text!r} printed on stdout: {p.stdout!r}")
        log(f"  e.g. {err}")
        p = run([t.bin, "check", "-c", os.path.join(tmp, "missing.toml")], check_rc=False)
        check(p.returncode == 1 and "cannot read: No such file or directory" in p.stderr, f"missing file: {p.stderr!r}")

        t.step("topology: A -- softnet (packet) -- B, and D on a third port (not in the config at first)")
        net = t.router_topology("packet", third=True)
        with_r2 = net.config()
        good = with_r2[:with_r2.index('\n[[interface]]\nname = "r2"')] + "\n"
        check('"r2"' not in good and '"r1"' in good, "config without r2")
        path = os.path.join(tmp, "good.toml")
        write(path, good.replace("@SOCKET@", os.path.join(tmp, "unused.sock")))
        p = run([t.bin, "check", "-c", path], check_rc=False)
        check(p.returncode == 0 and p.stdout.strip() == "configuration OK", f"good config: {p.returncode} {p.stdout!r} {p.stderr!r}")
        # The same with the xdp driver: accepted too (check opens nothing).
        write(path, good.replace("@SOCKET@", os.path.join(tmp, "unused.sock")).replace('driver = "packet"', 'driver = "xdp"'))
        p = run([t.bin, "check", "-c", path], check_rc=False)
        check(p.returncode == 0 and p.stdout.strip() == "configuration OK", f"xdp config: {p.returncode} {p.stdout!r} {p.stderr!r}")

        t.step("softnet up with a bad config: exit 1 with the error")
        sock = os.path.join(tmp, "bad.sock")
        write(path, f'control = "{sock}"\nworkers = 0\n')
        p = t.ns_run(net.r, [t.bin, "up", "-c", path], check_rc=False, timeout=30)
        check(p.returncode == 1 and f"{path} line 2: workers = 0" in p.stderr, f"up: {p.returncode} {p.stderr!r}")
        check(not os.path.exists(sock), "socket created by a daemon that did not start")

        t.step("softnet up with a device that does not exist: exit 1, the interface named, no socket left")
        write(path, f'control = "{sock}"\n[[interface]]\nname = "r9"\ndriver = "packet"\ndevice = "nosuch9"\n'
                    'addr = ["10.0.9.1/24"]\n')
        p = t.ns_run(net.r, [t.bin, "up", "-c", path], check_rc=False, timeout=30)
        check(p.returncode == 1 and "r9" in p.stderr and "nosuch9" in p.stderr, f"up: {p.returncode} {p.stderr!r}")
        log(f"  {p.stderr.strip().splitlines()[-1]}")
        check(not os.path.exists(sock), "control socket left behind by a failed start")

        t.step("start the daemon with the good config")
        d = t.daemon(good, net=net)
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.2.2")
        t.ns_run(net.b, "ip addr add 10.7.0.1/32 dev lo")
        t.ns_run(net.b, "ip addr add 10.8.0.1/32 dev lo")
        d.admin("route", "add", "-net", "10.8.0.0/16", "10.0.2.2")
        routes0 = d.out("netstat", "-rn")
        # IPv6 addresses are `tentative` until DAD has run (a second or two).
        wait_until("DAD done", lambda: "tentative" not in d.out("ifconfig"), timeout=10)
        ifc0 = d.out("ifconfig")

        t.step("control socket: mode 0600; admin commands via --socket and $SOFTNET_SOCKET; usage errors")
        mode = os.stat(d.socket).st_mode & 0o777
        check(mode == 0o600, f"control socket mode {mode:o}, want 600")
        env = dict(os.environ, SOFTNET_SOCKET=d.socket)
        p = subprocess.run([t.bin, "netstat", "-rn"], capture_output=True, text=True, env=env, timeout=30)
        check(p.returncode == 0 and p.stdout == routes0, f"SOFTNET_SOCKET: {p.returncode} {p.stderr!r}")
        nosock = os.path.join(tmp, "nobody.sock")
        p = run([t.bin, "--socket", nosock, "route", "show"], check_rc=False)
        check(p.returncode == 1 and f"cannot connect to {nosock}" in p.stderr, f"no daemon: {p.returncode} {p.stderr!r}")
        for args, words in ((["route", "add"], "destination required"), (["route", "frobnicate"], "unknown command"),
                            (["arp", "-s", "10.0.1.9"], "-s needs a hostname and an ether_addr"),
                            (["netstat", "-ra"], "-a goes with the sockets view"),
                            (["ifconfig", "r0", "inet", "10.0.1.300/24"], "")):
            p = d.admin(*args, check_rc=False)
            check(p.returncode == 1 and words in p.stderr and "usage" in p.stderr,
                  f"softnet {' '.join(args)}: {p.returncode} {p.stderr!r}")
        p = d.admin("route", "add", "-net", "10.8.0.0/16", "10.0.2.2", check_rc=False)
        check(p.returncode == 1 and "File exists" in p.stderr, f"duplicate route add: {p.stderr!r}")
        p = d.admin("route", "add", "-net", "10.9.0.0/16", "192.0.2.1", check_rc=False)
        check(p.returncode == 1, f"route via an unreachable gateway accepted: {p.stdout!r}")
        log(f"  {p.stderr.strip()}")
        check(d.out("netstat", "-rn") == routes0, "failed commands changed the routes")

        t.step("control socket abuse: garbage, a wrong version, a huge length, idle connections")
        control_abuse(d)
        check(d.alive() and d.out("netstat", "-rn") == routes0, "daemon hurt by control socket abuse")

        t.step("a second daemon on the same socket is refused; the first goes on")
        p = t.ns_run(net.r, [t.bin, "up", "-c", d.cfg], check_rc=False, timeout=30)
        check(p.returncode == 1 and "already running" in p.stderr, f"second daemon: {p.returncode} {p.stderr!r}")
        check(d.alive() and os.path.exists(d.socket), "first daemon hurt by the second")
        check(d.out("netstat", "-rn") == routes0, "routes changed by the second daemon")
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.2.2")

        t.step("SIGHUP with a broken config: rejected, logged, running config kept")
        broken = good.replace('addr = ["10.0.2.1/24"]', 'addr = ["10.0.2.1/24"]\nmtu = "big"')
        d.write_config(broken)
        start = len(d.log_lines())
        d.signal(signal.SIGHUP)
        lines = d.wait_log(r"reload: .*keeping the running configuration", start=start, timeout=15)
        log(f"  {lines[0]}")
        check(re.search(rf"{re.escape(d.cfg)} line \d+", lines[0]), f"reload error does not name the line: {lines[0]}")
        time.sleep(0.5)
        check(d.alive(), "daemon died on a broken reload")
        check(d.out("netstat", "-rn") == routes0, f"routes changed:\n{routes0}\n->\n{d.out('netstat', '-rn')}")
        check(d.out("ifconfig") == ifc0, "interfaces changed")
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.2.2")
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.8.0.1")

        t.step("SIGHUP with a changed config: address 10.0.5.1/24 and route 10.7.0.0/16 added")
        changed = good.replace('addr = ["10.0.2.1/24"]', 'addr = ["10.0.2.1/24", "10.0.5.1/24"]')
        changed += '\n[[route]]\ndest = "10.7.0.0/16"\ngateway = "10.0.2.2"\n'
        d.write_config(changed)
        start = len(d.log_lines())
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload: route 10\.7\.0\.0/16 gateway 10\.0\.2\.2 added", start=start, timeout=15)
        d.wait_log(r"reload: r1: address 10\.0\.5\.1/24 added", start=start, timeout=5)
        check("inet 10.0.5.1 netmask 0xffffff00" in d.out("ifconfig", "r1"), "new address not on r1")
        rn = d.out("netstat", "-rn")
        check(re.search(r"^10\.7/16\s+10\.0\.2\.2\s+UGS\s", rn, re.M), f"no 10.7/16 route:\n{rn}")
        check(re.search(r"^10\.8/16\s+10\.0\.2\.2\s+UGS\s", rn, re.M), f"route added at run time gone:\n{rn}")
        check(re.search(r"^10\.0\.5/24\s+link#\d+\s+UCn\s", rn, re.M), f"no connected route for 10.0.5/24:\n{rn}")
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.5.1")
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.7.0.1")
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.8.0.1")

        t.step("SIGHUP with the route and the address removed again: both go, route add'ed one stays")
        d.write_config(good)
        start = len(d.log_lines())
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload: route 10\.7\.0\.0/16 gateway 10\.0\.2\.2 removed", start=start, timeout=15)
        d.wait_log(r"reload: r1: address 10\.0\.5\.1/24 removed", start=start, timeout=5)
        rn = d.out("netstat", "-rn")
        check("10.7/16" not in rn and "10.0.5" not in rn, f"removed route/address still there:\n{rn}")
        check(re.search(r"^10\.8/16\s+10\.0\.2\.2\s+UGS\s", rn, re.M), f"route added at run time gone:\n{rn}")
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.8.0.1")
        errors = [l for l in d.log_lines() if " ERROR " in l and "keeping the running configuration" not in l]
        check(not errors, "errors logged:\n" + "\n".join(errors))

        t.step("SIGHUP with an interface added (r2): created, D reachable")
        d.write_config(with_r2)
        start = len(d.log_lines())
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload: r2 created", start=start, timeout=15)
        check("inet 10.0.3.1 netmask" in d.out("ifconfig", "r2"), "r2 not configured")
        for i in range(3):
            if t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.3.2", check_rc=False).returncode == 0:
                break
        else:
            check(False, "D unreachable after r2 was added by a reload")
        t.step("SIGHUP with the interface removed again: destroyed, D unreachable, the rest forwards")
        d.write_config(good)
        start = len(d.log_lines())
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload: r2 destroyed", start=start, timeout=15)
        check("r2:" not in d.out("ifconfig"), "r2 still listed")
        p = t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 1 10.0.3.2", check_rc=False)
        check(p.returncode != 0, "D still reachable")
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.2.2")
        check(re.search(r"^10\.8/16\s+10\.0\.2\.2\s+UGS\s", d.out("netstat", "-rn"), re.M), "route add'ed route gone")

        t.step("SIGHUP with r0's MAC changed: r0 recreated, A learns the new MAC (gratuitous ARP), forwards")
        time.sleep(1.2)  # past Linux's neighbour locktime (1 s): an announcement may override A's entry
        d.write_config(good.replace(MAC_R0, "02:00:00:00:01:99"))
        start = len(d.log_lines())
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload: r0 created", start=start, timeout=15)
        check("lladdr 02:00:00:00:01:99" in d.out("ifconfig", "r0"), "r0 MAC not changed")
        wait_until("A's neighbour entry for 10.0.1.1 to show the new MAC", lambda: "02:00:00:00:01:99" in t.ns_run(
            net.a, "ip neigh show 10.0.1.1").stdout, timeout=10, interval=0.3)
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.2.2")
        d.write_config(good)
        start = len(d.log_lines())
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload: r0 created", start=start, timeout=15)

        t.step("SIGTERM: exit 0, 'softnet stopped' logged, socket removed")
        check(d.stop() == 0, "exit code not 0")
        check(not os.path.exists(d.socket), "socket left behind")
        check(any("softnet stopped" in l for l in d.log_lines()[-3:]), "no 'softnet stopped' at the end of the log")

        t.step("a daemon killed with SIGKILL leaves its socket; the next start takes it over")
        d2 = t.daemon(good, net=net)
        d2.proc.send_signal(signal.SIGKILL)
        d2.proc.wait(timeout=10)
        check(os.path.exists(d2.socket), "no stale socket after SIGKILL (nothing to test)")
        d2.start()
        d2.wait_log(r"removing stale control socket", timeout=5)
        wait_until("forwarding after restart", lambda: t.ns_run(
            net.a, "ping -n -c 1 -W 2 10.0.2.2", check_rc=False).returncode == 0, timeout=20, interval=0.5)
        check(d2.stop() == 0, "exit code not 0")
        check(not os.path.exists(d2.socket), "socket left behind")

        t.step("SIGINT stops it too")
        d3 = t.daemon(good, net=net)
        d3.signal(signal.SIGINT)
        try:
            d3.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            check(False, "daemon ignores SIGINT")
        check(d3.proc.returncode == 0 and not os.path.exists(d3.socket), f"SIGINT: exit {d3.proc.returncode}")


if __name__ == "__main__":
    main(run_test)
