"""IP options on forwarded packets (RFC 791, RFC 1812 5.2.4, OpenBSD
ip_dooptions): the router records itself.

* `ping -R` (Record Route): the router must put the address of its
  outgoing interface in the list: 10.0.2.1 on the way to B, 10.0.1.1 on
  the way back. softnet forwards the option untouched (fails).
* `ping -T tsandaddr` (Timestamp with addresses): likewise an entry for
  the router.

Packets with these options must still be forwarded (checked first).
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main  # noqa: E402


def option_block(out, tag):
    """The addresses ping printed after 'RR:' / 'TS:'."""
    m = re.search(rf"^{tag}:(.*?)(?:\n\n|\n64 bytes|\Z)", out, re.M | re.S)
    return re.findall(r"\d+\.\d+\.\d+\.\d+", m.group(1)) if m else []


def run_test():
    with Topo("opt") as t:
        t.step("topology: A -- softnet (packet) -- B")
        net = t.router_topology("packet")
        d = t.daemon(net.config(), net=net)
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.2.2")

        t.step("ping -R A -> B: forwarded, and the router's addresses recorded")
        p = t.ns_run(net.a, "ping -n -R -c 2 -i 0.3 -W 3 10.0.2.2", check_rc=False)
        check(p.returncode == 0, f"ping -R: no reply:\n{p.stdout}")
        rr = option_block(p.stdout, "RR")
        log(f"  RR: {rr}")
        check(rr, f"no RR list in:\n{p.stdout}")
        ts_p = t.ns_run(net.a, "ping -n -T tsandaddr -c 1 -W 3 10.0.2.2", check_rc=False)
        check(ts_p.returncode == 0, f"ping -T tsandaddr: no reply:\n{ts_p.stdout}")
        ts = option_block(ts_p.stdout, "TS")
        log(f"  TS addresses: {ts}")
        check("10.0.2.1" in rr and "10.0.1.1" in rr,
              f"Record Route: the router recorded no address (want 10.0.2.1 out, 10.0.1.1 back): {rr}")
        check("10.0.2.1" in ts or "10.0.1.1" in ts, f"Timestamp: no entry for the router: {ts}")
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
