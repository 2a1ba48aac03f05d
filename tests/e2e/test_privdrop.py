"""A daemon that trusts no caller: with `user = "nobody"` and
`control_group = "nogroup"` softnet opens its devices, control socket and
pflog file as root, then runs as nobody (every uid and gid 65534, no other
group, no capability) and still forwards, filters (a pf reload over the
socket included) and answers. The socket is root:nogroup 0660 and the
pflog file 0600; a member of nogroup gets answers, a caller outside it
does not; a garbage request gets an error and the daemon goes on.
"""

import os
import socket
import stat
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib_e2e import Topo, check, main, run  # noqa: E402

RULES = "pass all\nblock in log quick proto udp to port 9\n"


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def run_test():
    with Topo("pd") as t:
        t.step("topology: A -- softnet (packet, pf, pflog) -- B; user nobody, control_group nogroup")
        net = t.router_topology("packet")
        conf_dir = t.tmp
        pf = os.path.join(conf_dir, "pf-privdrop.conf")
        with open(pf, "w") as f:
            f.write(RULES)
        pflog = os.path.join(conf_dir, "pflog-privdrop.pcap")
        extra = f'user = "nobody"\ncontrol_group = "nogroup"\npf = "{pf}"\npflog = "{pflog}"\n'
        d = t.daemon(net.config(extra=extra), net=net)
        d.wait_log(r"running as nobody \(uid 65534, gid 65534\)")

        t.step("the process: uid and gid 65534 everywhere, only group 65534, no capabilities")
        st = proc_status(d.proc.pid)
        check(st["Uid"].split() == ["65534"] * 4, f"Uid {st['Uid']}")
        check(st["Gid"].split() == ["65534"] * 4, f"Gid {st['Gid']}")
        check(st["Groups"].split() == ["65534"], f"Groups {st['Groups']!r}")
        for cap in ("CapEff", "CapPrm"):
            check(int(st[cap], 16) == 0, f"{cap} {st[cap]}")
        sock = os.stat(d.socket)
        check(stat.S_IMODE(sock.st_mode) == 0o660 and sock.st_gid == 65534, f"socket {oct(sock.st_mode)} gid {sock.st_gid}")
        lg = os.stat(pflog)
        check(stat.S_IMODE(lg.st_mode) == 0o600, f"pflog mode {oct(lg.st_mode)}")

        t.step("it forwards, pf filters, a ruleset reload over the socket works")
        t.ns_run(net.a, "ping -n -c 3 -i 0.2 -W 3 10.0.2.2")
        sr = d.out("pfctl", "-sr")
        check("block drop in log quick proto udp" in sr and "port = 9" in sr, f"rules loaded: {sr}")
        with open(pf, "w") as f:
            f.write("pass all\n")
        d.admin("pfctl", "-f", pf)
        check("block" not in d.out("pfctl", "-sr"), "the reload went in")

        t.step("a nogroup member is answered; a caller outside the group is not")
        for p in (t.tmp, d.dir):  # the test's private directories: traversable
            os.chmod(p, 0o711)
        member = run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", t.bin, "--socket", d.socket, "netstat", "-rn"],
            check_rc=False,
        )
        check(member.returncode == 0 and "Internet:" in member.stdout, f"member refused: {member.stdout} {member.stderr}")
        other = run(
            ["setpriv", "--reuid=65534", "--regid=1", "--clear-groups", t.bin, "--socket", d.socket, "netstat", "-rn"],
            check_rc=False,
        )
        check(other.returncode != 0 and "Internet:" not in other.stdout, f"outsider answered: {other.stdout}")

        t.step("garbage and an oversized length get errors; the daemon goes on")
        s = socket.socket(socket.AF_UNIX)
        s.connect(d.socket)
        s.sendall(struct.pack(">I", 5) + b"xxxxx")
        n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
        check(b"malformed" in s.recv(n, socket.MSG_WAITALL), "garbage answered with an error")
        s.sendall(struct.pack(">I", 0xFFFFFFF0))
        n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
        check(b"too long" in s.recv(n, socket.MSG_WAITALL), "oversized answered with an error")
        s.close()
        check(d.alive(), "daemon alive")
        t.ns_run(net.a, "ping -n -c 2 -i 0.2 -W 3 10.0.2.2")
        check(d.stop() == 0, "daemon did not exit 0")


if __name__ == "__main__":
    main(run_test)
