"""IPv6 routes through the daemon and the admin commands (issue 12; no
IPv6 data path yet, so no traffic):

    A -- r0 [softnet] r1 -- B

* static IPv6 [[route]]s from the config (reject, interface) are in the
  table at start; `netstat -rn -f inet6` prints OpenBSD's Internet6
  section, `-f inet` leaves it out, plain `-rn` has both;
* `route add -inet6 NET -prefixlen 48 ::1 -blackhole`, `route get -inet6`,
  `route delete -inet6`, each seen once in `route monitor` with IPv6
  addresses and an IPv6 netmask;
* route(8)'s errors: a gateway on no connected network (Network is
  unreachable), a link-local gateway without its %interface (Invalid
  argument), a bad prefix length (usage), a route that is not there;
* SIGHUP with a changed [[route]] list removes and adds IPv6 routes.
"""

import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Monitor, Topo, check, log, main, wait_until  # noqa: E402

ROUTES = """
[[route]]
dest = "2001:db8:66::/48"
reject = true

[[route]]
dest = "2001:db8:77::/48"
interface = "r1"
"""

ROUTES_RELOADED = """
[[route]]
dest = "2001:db8:77::/48"
interface = "r1"

[[route]]
dest = "2001:db8:55::/48"
blackhole = true
"""


def row(table, dest):
    """The netstat row of `dest`: (gateway, flags, iface) or None."""
    m = re.search(rf"^{re.escape(dest)}\s+(\S+)\s+(\S+)\s+\d+\s+\S+\s+\d+\s+(\S+)$", table, re.M)
    return m.groups() if m else None


def find(msgs, typ, **kw):
    return [m for m in msgs if m["type"] == typ and all(m.get(k) == v for k, v in kw.items())]


def run_test():
    with Topo("r6") as t:
        t.step("topology and a daemon with two static IPv6 routes")
        net = t.router_topology("packet")
        d = t.daemon(net.config(routes=ROUTES), net=net)

        t.step("netstat -rn -f inet6: the Internet6 section as OpenBSD's")
        n6 = d.out("netstat", "-rn", "-f", "inet6")
        log(n6.rstrip())
        check(n6.startswith("Routing tables\n\nInternet6:\nDestination"), f"no Internet6 header:\n{n6}")
        check(re.search(r"^Destination {33}Gateway {33}Flags   Refs   Mtu  Prio Iface$", n6, re.M),
              f"Internet6 columns not as show.c's (43 and 39 wide):\n{n6}")
        check("Internet:" not in n6, f"-f inet6 printed the IPv4 section:\n{n6}")
        check(row(n6, "2001:db8:66::/48") == ("link#0", "URS", "-"), f"reject route: {row(n6, '2001:db8:66::/48')}")
        r = row(n6, "2001:db8:77::/48")
        check(r and r[1] == "US" and r[2] == "r1", f"interface route: {r}")
        n4 = d.out("netstat", "-rn", "-f", "inet")
        check("Internet:" in n4 and "Internet6" not in n4, f"-f inet:\n{n4}")
        both = d.out("netstat", "-rn")
        check("\n\nInternet:\n" in both and "\n\nInternet6:\n" in both, f"-rn lacks a section:\n{both}")

        t.step("route monitor; route add -inet6 ... -prefixlen 48 ::1 -blackhole")
        mon = Monitor(t, d)
        mon.wait_subscribed(d)
        out = d.out("route", "add", "-inet6", "2001:db8:88::", "-prefixlen", "48", "::1", "-blackhole")
        check(out == "add net 2001:db8:88::/48\n", f"route add echo: {out!r}")
        got = wait_until("RTM_ADD 2001:db8:88::", lambda: find(mon.messages(), "RTM_ADD", dst="2001:db8:88::"),
                         timeout=5)
        check(got[0].get("netmask") == "ffff:ffff:ffff::", f"netmask in the message: {got[0]['text']}")
        check("BLACKHOLE" in got[0]["text"], f"flags in the message: {got[0]['text']}")
        check(row(d.out("netstat", "-rn", "-f", "inet6"), "2001:db8:88::/48")[1] == "USB", "blackhole flags")

        t.step("route get -inet6: the interface route of the configuration")
        g = d.out("route", "get", "-inet6", "2001:db8:77::1")
        log(g.rstrip())
        for want in ("destination: 2001:db8:77::", "mask: ffff:ffff:ffff::", "interface: r1", "<UP,DONE,STATIC>"):
            check(want in g, f"route get lacks {want!r}:\n{g}")

        t.step("route(8)'s errors")
        p = d.admin("route", "add", "-inet6", "2001:db8:99::/48", "2001:db8:ffff::1", check_rc=False)
        check(p.returncode == 1 and "gateway 2001:db8:ffff::1: Network is unreachable" in p.stderr, p.stderr)
        p = d.admin("route", "add", "-inet6", "default", "fe80::1", check_rc=False)
        check(p.returncode == 1 and "Invalid argument" in p.stderr, f"unscoped link-local gateway: {p.stderr}")
        p = d.admin("route", "add", "-inet6", "2001:db8::/129", "::1", check_rc=False)
        check(p.returncode != 0 and "129: bad value" in p.stderr, f"bad prefix length: {p.stderr}")
        p = d.admin("route", "delete", "-inet6", "2001:db8:44::/48", check_rc=False)
        check(p.returncode == 1 and "No such process" in p.stderr, f"missing route: {p.stderr}")
        p = d.admin("route", "get", "-inet6", "2001:db8:1234::1", check_rc=False)
        check(p.returncode == 1 and "get host 2001:db8:1234::1: No such process" in p.stderr, p.stderr)

        t.step("route delete -inet6: one RTM_DELETE")
        check(d.out("route", "delete", "-inet6", "2001:db8:88::/48") == "delete net 2001:db8:88::/48\n", "echo")
        wait_until("RTM_DELETE 2001:db8:88::", lambda: find(mon.messages(), "RTM_DELETE", dst="2001:db8:88::"),
                   timeout=5)
        check(len(find(mon.messages(), "RTM_ADD", dst="2001:db8:88::")) == 1, "RTM_ADD seen more than once")
        check(row(d.out("netstat", "-rn", "-f", "inet6"), "2001:db8:88::/48") is None, "route still shown")

        t.step("SIGHUP with a changed route list: 2001:db8:66::/48 goes, 2001:db8:55::/48 comes")
        d.write_config(net.config(routes=ROUTES_RELOADED))
        d.signal(signal.SIGHUP)
        wait_until("the reloaded routes", lambda: (
            (lambda n: row(n, "2001:db8:55::/48") and row(n, "2001:db8:66::/48") is None)(
                d.out("netstat", "-rn", "-f", "inet6"))), timeout=10)
        wait_until("RTM_DELETE 2001:db8:66::", lambda: find(mon.messages(), "RTM_DELETE", dst="2001:db8:66::"),
                   timeout=5)
        n6 = d.out("netstat", "-rn", "-f", "inet6")
        check(row(n6, "2001:db8:77::/48")[2] == "r1", f"the kept route:\n{n6}")
        check(d.alive(), "daemon died")


if __name__ == "__main__":
    main(run_test)
