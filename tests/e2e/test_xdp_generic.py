"""`xdp_mode = "generic"` on the xdp driver: the router's veth ends carry
softnet's program in generic (SKB) mode (`ip link` shows `xdpgeneric`,
where the default attaches it in the veth driver's own mode, `xdp`), and
A and B reach each other through it (ping both ways, full-size and
fragmented). A bad value is refused by `softnet check` with its line."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, main, run  # noqa: E402


def xdp_attach_mode(t, ns, dev):
    out = t.ns_run(ns, f"ip link show dev {dev}").stdout
    m = re.search(r"\b(xdpgeneric|xdpdrv|xdpoffload|xdp)\b", out)
    return m.group(1) if m else None


def run_test():
    with Topo("xg") as t:
        t.step("topology: A -- softnet (xdp, xdp_mode = generic) -- B")
        net = t.router_topology("xdp")
        d = t.daemon(net.config(iface_extra='xdp_mode = "generic"\n'), net=net)
        for dev in (net.dev_r0, net.dev_r1):
            mode = xdp_attach_mode(t, net.r, dev)
            check(mode == "xdpgeneric", f"{dev}: attached as {mode!r}, not generic")
        t.step("ping A -> B and B -> A (small, 1500-byte, fragmented) through it")
        t.ns_run(net.a, "ping -n -c 3 -i 0.3 -W 3 10.0.2.2")
        t.ns_run(net.b, "ping -n -c 3 -i 0.3 -W 3 10.0.1.2")
        t.ns_run(net.a, "ping -n -c 3 -i 0.3 -W 3 -M do -s 1472 10.0.2.2")
        t.ns_run(net.a, "ping -n -c 3 -i 0.3 -W 3 -s 4000 10.0.2.2")
        d.stop()

        t.step("xdp_mode = \"skb\" is refused by softnet check, with its line")
        path = os.path.join(t.tmp, "bad.toml")
        with open(path, "w") as f:
            f.write(net.config(iface_extra='xdp_mode = "skb"\n').replace("@SOCKET@", os.path.join(t.tmp, "s")))
        p = run([t.bin, "check", "-c", path], check_rc=False)
        check(p.returncode == 1 and 'xdp_mode = "skb": expected native or generic' in p.stderr, p.stderr)
        check(re.search(r"line \d+: interface \"r0\"", p.stderr) is not None, p.stderr)


if __name__ == "__main__":
    main(run_test)
