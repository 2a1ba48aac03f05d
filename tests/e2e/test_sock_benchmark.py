"""examples/benchmark.rs (the two ends of smoltcp's `benchmark` example on
softnet's TCP) with a Linux client in A:

A 10.0.1.2 -- r0 10.0.1.1 [softnet + benchmark :1234 :1235] r1 -- B

1 A reads (at least) 200 MB from port 1234 (the source) and closes: the example
  reports what it sent, at least what A read
2 A writes 200 MB into port 1235 (the sink) and closes: the example
  reports exactly 200 MB received
Both rates are logged (this is a functional test; figures for the issue's
comparison come from a quiet machine).
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, log, main, wait_until  # noqa: E402
from lib_sock import Embedded, example_bin  # noqa: E402

MB = 200

READER = """
import socket, sys, time
s = socket.create_connection(("10.0.1.1", 1234), timeout=30)
want, got, t0 = int(sys.argv[1]), 0, time.monotonic()
while got < want:
    b = s.recv(1 << 20)
    if not b:
        break
    got += len(b)
s.close()
print(got, f"{got * 8 / (time.monotonic() - t0) / 1e6:.1f}")
"""

WRITER = """
import socket, sys, time
s = socket.create_connection(("10.0.1.1", 1235), timeout=30)
n, chunk, t0 = int(sys.argv[1]), b"x" * (1 << 20), time.monotonic()
for _ in range(n >> 20):
    s.sendall(chunk)
s.shutdown(socket.SHUT_WR)
s.recv(1)
s.close()
print(n, f"{n * 8 / (time.monotonic() - t0) / 1e6:.1f}")
"""


def run_test():
    check(os.path.exists(example_bin("benchmark")),
          f"{example_bin('benchmark')} not built (cargo build --release --example benchmark)")
    with Topo("sockb") as t:
        net = t.router_topology("packet")
        d = Embedded(t, net.config(), net.r, "benchmark", ["--addr", "10.0.1.1"])
        d.start()
        d.wait_log(r"listening on 10\.0\.1\.1:1235")
        n = MB << 20

        t.step(f"1: A reads {MB} MB from port 1234")
        p = t.ns_run(net.a, ["python3", "-c", READER, str(n)], timeout=300)
        got, rate = p.stdout.split()
        check(int(got) >= n, f"read {got}")
        log(f"  A read {got} bytes at {rate} Mbit/s")
        line = d.wait_log(r"benchmark: sent .* bytes", timeout=20)[-1]
        sent = int(re.search(r"sent .*: (\d+) bytes", line).group(1))
        check(sent >= n, f"the source reports {sent}")

        t.step(f"2: A writes {MB} MB into port 1235")
        p = t.ns_run(net.a, ["python3", "-c", WRITER, str(n)], timeout=300)
        log(f"  A wrote {p.stdout.split()[0]} bytes at {p.stdout.split()[1]} Mbit/s")
        line = d.wait_log(r"benchmark: received .* bytes", timeout=20)[-1]
        log("  " + line)
        check(re.search(rf"received .*: {n} bytes", line), line)
        time.sleep(0.1)


if __name__ == "__main__":
    main(run_test)
