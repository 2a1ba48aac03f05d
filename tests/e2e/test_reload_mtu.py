"""SIGHUP and interface MTUs: the running MTU follows the config file.

* start with r1 at the device's MTU (1500), reload with `mtu = 1400`:
  ifconfig shows 1400 and A's `ping -M do -s 1472` gets "Frag needed and
  DF set (mtu = 1400)" from the router;
* reload with the `mtu` line removed again: r1 must go back to the
  device's MTU (1500), as a restart with that file would give, and the
  same ping passes.
"""

import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main  # noqa: E402


def mtu_of(d, name):
    m = re.search(rf"^{name}: flags=\S+ mtu (\d+)", d.out("ifconfig", name), re.M)
    check(m, f"no mtu in ifconfig {name}")
    return int(m.group(1))


def reload(d, config, pattern):
    d.write_config(config)
    start = len(d.log_lines())
    d.signal(signal.SIGHUP)
    return d.wait_log(pattern, start=start, timeout=15)


def run_test():
    with Topo("mtu") as t:
        t.step("topology: A -- softnet (packet) -- B, r1 at the device MTU")
        net = t.router_topology("packet")
        d = t.daemon(net.config(), net=net)
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 -M do -s 1472 10.0.2.2")
        check(mtu_of(d, "r1") == 1500, "r1 does not start at 1500")

        t.step("SIGHUP with mtu = 1400 on r1")
        reload(d, net.config(mtu_b=1400), r"reload: r1: mtu 1400")
        check(mtu_of(d, "r1") == 1400, f"r1 mtu {mtu_of(d, 'r1')} after reload, want 1400")
        out = ""
        for _ in range(3):
            t.ns_run(net.a, "ip route flush cache", check_rc=False)
            p = t.ns_run(net.a, "ping -n -c 1 -W 3 -M do -s 1472 10.0.2.2", check_rc=False)
            out = p.stdout + p.stderr
            if "Frag needed and DF set (mtu = 1400)" in out:
                break
        check("Frag needed and DF set (mtu = 1400)" in out, f"no need-frag from the router:\n{out}")

        t.step("SIGHUP with the mtu line removed: r1 back to the device's 1500")
        lines = reload(d, net.config(), r"reload: /")
        log(f"  {lines[0]}")
        got = mtu_of(d, "r1")
        check(got == 1500, f"r1 keeps mtu {got} after the `mtu` line was removed from the config "
                           "(a restart would give 1500): reload ignores an mtu that went back to the default")
        t.ns_run(net.a, "ip route flush cache", check_rc=False)
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 -M do -s 1472 10.0.2.2")
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
