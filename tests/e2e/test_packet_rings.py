"""AF_PACKET's RX ring from the configuration (`rx_ring`, `rx_ring_mib` in
an `[[interface]]` with driver "packet"): the ring the daemon attaches is
the one asked for (its log line), traffic crosses it, and its size is what
holds a burst while the daemon cannot read (SIGSTOP): 2,000 UDP frames
from A to B through the router, one worker (one queue an interface).

  frames, 1 MiB:  656 slots of 1,584 B: the ring fills, the rest is
                  dropped by the kernel and counted (netstat -i Idrop)
  frames, 4 MiB:  2,624 slots: every frame of the burst is forwarded
  blocks, 4 MiB:  V3 blocks, about 160 B a small frame: all forwarded

And a bad value, a size out of range or the keys on another driver are
refused by `softnet check` with their line."""

import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, in_netns, log, main, run, wait_until  # noqa: E402

BURST = 2000
B = "10.0.2.2"


def if_counters(d, name):
    """(Ipkts, Idrop) of interface `name` from `netstat -in`."""
    out = d.out("netstat", "-in")
    lines = out.splitlines()
    head = lines[0].split()
    for l in lines[1:]:
        f = l.split()
        if f and f[0] == name:
            row = dict(zip(head, f))
            return int(row["Ipkts"]), int(row.get("Idrop", row.get("Idrops", "0")))
    check(False, f"netstat -in has no {name}:\n{out}")


def burst_through(t, net, d):
    """Sends BURST datagrams from A to B while the daemon is stopped; (frames
    r0 received, frames it dropped) over the burst."""
    t.ns_run(net.a, f"ping -n -c 2 -i 0.3 -W 3 {B}")
    ip0, dr0 = if_counters(d, "r0")
    with in_netns(net.a):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    d.signal(signal.SIGSTOP)
    try:
        for i in range(BURST):
            s.sendto(i.to_bytes(4, "big"), (B, 9))
    finally:
        s.close()
        time.sleep(0.2)
        d.signal(signal.SIGCONT)
    # A ping after the burst carries the kernel's "frames lost" mark
    # (TP_STATUS_LOSING): the drops are collected then.
    wait_until("the router answering again",
               lambda: t.ns_run(net.a, f"ping -n -c 1 -W 1 {B}", check_rc=False).returncode == 0, timeout=20)
    time.sleep(0.5)
    ip1, dr1 = if_counters(d, "r0")
    return ip1 - ip0, dr1 - dr0


def ring_line(d):
    lines = [l for l in d.log_lines() if "AF_PACKET attached" in l and "ra:" in l]
    check(lines, "no AF_PACKET attach line for ra:\n" + "\n".join(d.log_lines()[-30:]))
    return lines[-1]


def run_test():
    with Topo("pr") as t:
        t.step("topology: A -- softnet (packet, 1 worker) -- B")
        net = t.router_topology("packet")
        cases = (
            ('rx_ring = "frames"\nrx_ring_mib = 1\n', r"TPACKET_V2 656 slots of 1584 B \(1024 KiB\)", False),
            ('rx_ring = "frames"\nrx_ring_mib = 4\n', r"TPACKET_V2 2624 slots of 1584 B \(4096 KiB\)", True),
            ('rx_ring = "blocks"\nrx_ring_mib = 4\n', r"TPACKET_V3 16x256 KiB \(4096 KiB\)", True),
        )
        for extra, line, holds in cases:
            t.step(f"{extra.strip().replace(chr(10), ', ')}: a burst of {BURST} while the daemon is stopped")
            d = t.daemon(net.config(workers=1, iface_extra=extra), net=net)
            got = ring_line(d)
            check(re.search(line, got), f"attach line {got!r} does not match /{line}/")
            rx, dropped = burst_through(t, net, d)
            log(f"  r0: {rx} frames received, {dropped} dropped by the kernel (ring full)")
            if holds:
                check(rx >= BURST and dropped == 0, f"the ring held the burst: {rx} received, {dropped} dropped")
            else:
                check(600 <= rx < BURST - 600, f"656 slots: {rx} of {BURST} received")
                check(dropped >= BURST - rx - 50, f"the rest counted as dropped: {dropped} (received {rx})")
            d.stop()

        t.step("bad values, a size out of range, the keys on another driver: softnet check refuses them")
        path = os.path.join(t.tmp, "bad.toml")
        for extra, driver, msg in (
            ('rx_ring = "v2"\n', "packet", 'rx_ring = "v2": expected frames or blocks'),
            ("rx_ring_mib = 0\n", "packet", "rx_ring_mib 0 out of range 1-256 (MiB per queue)"),
            ("rx_ring_mib = 300\n", "packet", "rx_ring_mib 300 out of range 1-256"),
            ('rx_ring = "frames"\n', "xdp", 'rx_ring is for driver "packet" only'),
        ):
            cfg = net.config(iface_extra=extra).replace('driver = "packet"', f'driver = "{driver}"')
            with open(path, "w") as f:
                f.write(cfg.replace("@SOCKET@", os.path.join(t.tmp, "s")))
            p = run([t.bin, "check", "-c", path], check_rc=False)
            check(p.returncode == 1 and msg in p.stderr, f"{extra.strip()} ({driver}): {p.stderr}")
            check(re.search(r"line \d+: interface \"r0\"", p.stderr) is not None, p.stderr)


if __name__ == "__main__":
    main(run_test)
