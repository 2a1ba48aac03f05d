"""End-to-end forwarding through softnet with the xdp driver (AF_XDP, copy
mode, on the router's veth ends): the same checks as the packet and tap
tests — ping both ways (small, 1500-byte, fragmented, DF), TTL expired, a
100 MB curl download with its SHA-256 checked, iperf3 TCP/UDP, the admin
views, an interface MTU of 1400. The hosts' veths have TX checksum offload
off (lib_e2e.OFFLOADS), as XDP carries no checksum state."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import forwarding_common  # noqa: E402
import lib_e2e  # noqa: E402

if __name__ == "__main__":
    lib_e2e.main(lambda: forwarding_common.run_test("xdp"))
