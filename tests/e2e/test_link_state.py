"""Carrier changes of a packet-driver device reach the daemon (1 s poll):
B's veth goes down -> r1 shows "status: no carrier" and one RTM_IFINFO;
up again -> "status: active", one more RTM_IFINFO, and A -> B forwards
again. Nothing is logged per packet sent while the carrier is down.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Monitor, Topo, TestFailure, check, log, main, wait_until  # noqa: E402


def status(d, name):
    for line in d.out("ifconfig", name).splitlines():
        if line.strip().startswith("status:"):
            return line.split(":", 1)[1].strip()
    return None


def infos(mon):
    return [m for m in mon.messages() if m["type"] == "RTM_IFINFO" and m["ifname"] == "r1"]


def run_test():
    with Topo("ls") as t:
        t.step("topology: A -- softnet (packet) -- B; route monitor in the background")
        net = t.router_topology("packet")
        d = t.daemon(net.config(), net=net)
        mon = Monitor(t, d)
        t.ns_run(net.a, "ping -n -c 2 -i 0.3 -W 3 10.0.2.2")
        check(status(d, "r1") == "active", f"r1 status {status(d, 'r1')!r}")
        mon.wait_subscribed(d)
        n0 = len(infos(mon))

        t.step("B's veth down: r1 no carrier within a few seconds, one RTM_IFINFO")
        t.ns_run(net.b, "ip link set b0 down")
        wait_until("r1: status: no carrier", lambda: status(d, "r1") == "no carrier", timeout=10)
        wait_until("RTM_IFINFO no carrier", lambda: len(infos(mon)) > n0, timeout=5)
        lines0 = len(d.log_lines())
        p = t.ns_run(net.a, "ping -n -c 50 -i 0.02 -W 1 10.0.2.2", check_rc=False)
        check(" 0 received" in p.stdout, f"B answered with its link down?\n{p.stdout}")
        new = d.log_lines()[lines0:]
        check(len(new) < 10, f"{len(new)} log lines for 50 packets to a link without carrier:\n" + "\n".join(new[:20]))
        time.sleep(1.5)
        got = infos(mon)[n0:]
        check(len(got) == 1 and "link: no carrier" in got[0]["text"], f"want one 'no carrier' IFINFO: {got}")

        t.step("B's veth up: r1 active again, one more RTM_IFINFO, A -> B forwards")
        t.ns_run(net.b, "ip link set b0 up")
        # Linux drops B's routes through b0 while it is down.
        t.ns_run(net.b, "ip route replace default via 10.0.2.1")
        wait_until("r1: status: active", lambda: status(d, "r1") == "active", timeout=10)
        for i in range(3):
            if t.ns_run(net.a, "ping -n -c 3 -i 0.3 -W 3 10.0.2.2", check_rc=False).returncode == 0:
                break
            log(f"  no reply from B yet (try {i + 1}/3)")
        else:
            raise TestFailure("A -> B does not forward after the carrier came back")
        time.sleep(1.5)
        got = infos(mon)[n0:]
        check(len(got) == 2 and "link: active" in got[1]["text"], f"want 'no carrier' then 'active': {got}")
        mon.stop()
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
