"""TCP segmentation offload on a TAP (`offload = true`, issue 13): softnet's
httpd example on a TAP opened with the virtio-net header, its Linux client
in the same namespace on the TAP's kernel side, pf on with state:

C 10.0.9.2 fd09::2 (kernel, TAP tso0) -- [softnet + httpd 10.0.9.1:8080
                                           and [fd09::1]:8080, pf]

1 curl fetches 40 MB: SHA-256 equal; the TAP's kernel side received the
  data in super-frames (its rx bytes per rx packet well above a 1,514-byte
  frame: each write of softnet's was one skb of up to 64 KB); pf kept one
  state for the connection, established both ways, and counted no state
  mismatch (its window covered each super-segment)
2 curl uploads 20 MB (PUT): the stored file's SHA-256 equal (every frame
  softnet read came with a virtio-net header, none refused: netstat -i
  Ifail 0); the client's TCP wrote super-frames to the TAP (softnet asked
  for them, TUNSETOFFLOAD with TSO: the TAP's tx bytes per tx packet well
  above a 1,514-byte frame), which softnet took whole (LRO) and SHA-256
  says were put together right
3 curl fetches 40 MB over IPv6: SHA-256 equal; the TAP's kernel side
  received it in super-frames too (softnet's IPv6 super-segments written
  whole with GSO_TCPV6, past ip6_output's MTU check); pf's IPv6 state
  established both ways, no state mismatch
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, enable_ipv6, log, main, make_file, sha, wait_until  # noqa: E402
from lib_sock import Embedded, example_bin  # noqa: E402

DOWN_MB = 40
UP_MB = 20
# A frame softnet writes without offload is at most 1,514 bytes; with it a
# bulk transfer's writes are super-frames of up to 64 KB (tens of KB on
# average, BENCHMARKS §4 session 14). Twice the largest plain frame leaves
# room for every ACK and short segment of the run.
MIN_AVG_FRAME = 2 * 1514

PF_CONF = """set skip on lo0
block all
pass in on tso0 proto tcp to port 8080 keep state
pass out on tso0 proto icmp
pass on tso0 inet6 proto icmp6
"""


def rx_counts(t, ns, way="rx"):
    """The TAP's kernel side: (packets, bytes) it received ("rx": what
    softnet wrote) or sent ("tx": what softnet read)."""
    j = json.loads(t.ns_run(ns, "ip -s -j link show tso0").stdout)[0]
    return j["stats64"][way]["packets"], j["stats64"][way]["bytes"]


def fetch(t, ns, url, out, max_time=60):
    return t.ns_run(ns, f"curl -sS --max-time {max_time} -o {out} -w %{{http_code}} {url}", check_rc=False,
                    timeout=max_time + 30)


def run_test():
    check(os.path.exists(example_bin("httpd")), f"{example_bin('httpd')} not built (cargo build --release --example httpd)")
    with Topo("tso") as t:
        t.step("topology: C's kernel on TAP tso0 -- softnet (offload = true) with httpd and pf")
        c = t.ns("c")
        t.ns_run(c, "ip tuntap add dev tso0 mode tap")
        t.ns_run(c, "ip addr add 10.0.9.2/24 dev tso0")
        t.ns_run(c, "ip link set tso0 up")
        t.offloads_off(c, "tso0")
        enable_ipv6(t, c, "tso0", "fd09::2/64", "fd09::1")
        www = os.path.join(t.tmp, "www")
        os.makedirs(www)
        big = os.path.join(www, "big.bin")
        want = make_file(big, DOWN_MB)
        up_src = os.path.join(t.tmp, "up-src.bin")
        want_up = make_file(up_src, UP_MB)
        pf = os.path.join(t.tmp, "pf.conf")
        with open(pf, "w") as f:
            f.write(PF_CONF)
        cfg = (f'workers = 1\ncontrol = "@SOCKET@"\nlog = "info"\npf = "{pf}"\n\n'
               '[[interface]]\nname = "tso0"\ndriver = "tap"\ndevice = "tso0"\nmac = "02:00:00:00:09:01"\n'
               'addr = ["10.0.9.1/24", "fd09::1/64"]\noffload = true\n')
        d = Embedded(t, cfg, c, "httpd", ["--root", www, "--listen", "10.0.9.1:8080", "--listen", "[fd09::1]:8080"])
        d.start()
        d.wait_log(r"virtio-net header \(offload\)")
        wait_until("httpd answering", lambda: fetch(t, c, "http://10.0.9.1:8080/none", "/dev/null",
                                                    max_time=3).stdout == "404", timeout=20)

        t.step(f"1: curl fetches {DOWN_MB} MB, SHA-256 checked; super-frames on the TAP; pf's state")
        p0, b0 = rx_counts(t, c)
        got = os.path.join(t.tmp, "got.bin")
        p = fetch(t, c, "http://10.0.9.1:8080/big.bin", got)
        check(p.returncode == 0 and p.stdout == "200", f"curl: rc={p.returncode} {p.stdout} {p.stderr}")
        check(sha(got) == want, "SHA-256 differs")
        os.unlink(got)
        p1, b1 = rx_counts(t, c)
        frames, nbytes = p1 - p0, b1 - b0
        check(nbytes >= DOWN_MB << 20, f"the TAP received {nbytes} bytes")
        avg = nbytes / max(frames, 1)
        log(f"  the TAP's kernel side received {nbytes} bytes in {frames} skbs: {avg:.0f} bytes each")
        check(avg >= MIN_AVG_FRAME, f"{avg:.0f} bytes a frame: no super-frames written")
        states = d.out("pfctl", "-ss")
        log("  " + states.strip().replace("\n", "\n  "))
        check(re.search(r"tcp 10\.0\.9\.1:8080 <- 10\.0\.9\.2:\d+\s+[A-Z_0-9]+:[A-Z_0-9]+", states),
              f"pf's state of the connection: {states}")
        info = d.out("pfctl", "-si")
        m = re.search(r"state-mismatch\s+(\d+)", info)
        check(m is not None and int(m.group(1)) == 0, f"pf state mismatches: {info}")

        t.step(f"2: curl uploads {UP_MB} MB (PUT), SHA-256 of the stored file checked; super-frames read")
        q0, c0 = rx_counts(t, c, "tx")
        p = t.ns_run(c, f"curl -sS -H 'Expect:' --max-time 60 -T {up_src} -w %{{http_code}} "
                        f"http://10.0.9.1:8080/up.bin", check_rc=False, timeout=90)
        check(p.returncode == 0 and p.stdout.endswith("201"), f"curl -T: rc={p.returncode} {p.stdout} {p.stderr}")
        check(sha(os.path.join(www, "up.bin")) == want_up, "SHA-256 of the upload differs")
        q1, c1 = rx_counts(t, c, "tx")
        frames, nbytes = q1 - q0, c1 - c0
        avg = nbytes / max(frames, 1)
        log(f"  the TAP's kernel side sent {nbytes} bytes in {frames} skbs: {avg:.0f} bytes each")
        check(nbytes >= UP_MB << 20, f"the TAP sent {nbytes} bytes")
        check(avg >= MIN_AVG_FRAME, f"{avg:.0f} bytes a frame: the client's TCP wrote no super-frames")
        ni = d.out("netstat", "-i")
        log("  " + ni.strip().replace("\n", "\n  "))
        row = next((ln.split() for ln in ni.splitlines() if ln.startswith("tso0")), None)
        check(row is not None and row[5] == "0", f"netstat -i: input errors on tso0: {ni}")

        t.step(f"3: curl fetches {DOWN_MB} MB over IPv6, SHA-256 checked; super-frames on the TAP; pf's state")
        wait_until("softnet's fd09::1 out of DAD", lambda: "tentative" not in d.out("ifconfig", "tso0"), timeout=15)
        p0, b0 = rx_counts(t, c)
        got = os.path.join(t.tmp, "got6.bin")
        p = fetch(t, c, "-g http://[fd09::1]:8080/big.bin", got)
        check(p.returncode == 0 and p.stdout == "200", f"curl over IPv6: rc={p.returncode} {p.stdout} {p.stderr}")
        check(sha(got) == want, "SHA-256 differs (IPv6)")
        os.unlink(got)
        p1, b1 = rx_counts(t, c)
        frames, nbytes = p1 - p0, b1 - b0
        check(nbytes >= DOWN_MB << 20, f"the TAP received {nbytes} bytes")
        avg = nbytes / max(frames, 1)
        log(f"  IPv6: the TAP's kernel side received {nbytes} bytes in {frames} skbs: {avg:.0f} bytes each")
        check(avg >= MIN_AVG_FRAME, f"{avg:.0f} bytes a frame: no IPv6 super-frames written")
        states = d.out("pfctl", "-ss")
        log("  " + states.strip().replace("\n", "\n  "))
        check(re.search(r"tcp fd09::1\[8080\] <- fd09::2\[\d+\]\s+[A-Z_0-9]+:[A-Z_0-9]+", states),
              f"pf's state of the IPv6 connection: {states}")
        info = d.out("pfctl", "-si")
        m = re.search(r"state-mismatch\s+(\d+)", info)
        check(m is not None and int(m.group(1)) == 0, f"pf state mismatches: {info}")


if __name__ == "__main__":
    main(run_test)
