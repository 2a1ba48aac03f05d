"""FRR (Debian's `frr` package) in a test namespace: zebra and the routing
daemons asked for, each in the foreground under the test's Topo (killed at
close), with their own config, pid files, zserv socket and vty sockets in
a directory of the test's own, so that several instances (one per
namespace, parallel test runs) never share a path and the system's frr
service is never involved. The daemons run as Debian's `frr` user (root
is not in `frrvty`, which FRR requires of the vty socket's owner)."""

import os
import pwd
import shutil

from lib_e2e import TestFailure, check, wait_until

FRR_LIB = "/usr/lib/frr"


def require_frr():
    for d in ("zebra", "bgpd", "ospfd"):
        if not os.access(os.path.join(FRR_LIB, d), os.X_OK):
            raise TestFailure(f"FRR not installed ({FRR_LIB}/{d} missing: apt-get install frr)")
    if shutil.which("vtysh") is None:
        raise TestFailure("vtysh not found (apt-get install frr)")


class Frr:
    """One FRR instance in namespace `ns`: `daemons` (zebra first) with the
    integrated config text `conf`."""

    def __init__(self, t, ns, name, conf, daemons=("zebra", "bgpd", "ospfd")):
        self.t, self.ns, self.name = t, ns, name
        self.dir = os.path.join(t.tmp, f"frr-{name}")
        os.makedirs(self.dir, exist_ok=True)
        # The test's directory is private to root; FRR's user must reach its own.
        os.chmod(t.tmp, 0o711)
        pw = pwd.getpwnam("frr")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.conf_path = os.path.join(self.dir, "frr.conf")
        self.procs = {}
        self.daemons = daemons
        self.write(conf)

    def write(self, conf):
        with open(self.conf_path, "w") as f:
            f.write(conf)
        os.chmod(self.conf_path, 0o644)

    def start(self):
        for d in self.daemons:
            logf = open(os.path.join(self.dir, f"{d}.out"), "w")
            cmd = [os.path.join(FRR_LIB, d), "-f", self.conf_path, "-i", os.path.join(self.dir, f"{d}.pid"),
                   "-z", os.path.join(self.dir, "zserv.api"), "--vty_socket", self.dir, "-P", "0",
                   "--log", f"file:{os.path.join(self.dir, d + '.log')}"]
            self.procs[d] = self.t.ns_spawn(self.ns, cmd, stdout=logf, stderr=logf)
            if d == "zebra":
                wait_until(f"zebra of {self.name} up", lambda: os.path.exists(os.path.join(self.dir, "zserv.api")),
                           timeout=15)
        for d in self.daemons:
            wait_until(f"{d} of {self.name} answers", lambda d=d: os.path.exists(os.path.join(self.dir, f"{d}.vty")),
                       timeout=15)
            check(self.procs[d].poll() is None, f"{d} of {self.name} exited: {self.log(d)[-600:]}")

    def stop(self):
        """Stops the daemons (SIGTERM: zebra removes its routes from the kernel)."""
        for d in reversed(self.daemons):
            p = self.procs.pop(d, None)
            if p is not None:
                self.t.kill(p)
        for f in os.listdir(self.dir):
            if f.endswith((".vty", ".api", ".pid")):
                try:
                    os.unlink(os.path.join(self.dir, f))
                except OSError:
                    pass

    def vtysh(self, *cmds):
        args = ["vtysh", "--vty_socket", self.dir]
        for c in cmds:
            args += ["-c", c]
        return self.t.ns_run(self.ns, args, check_rc=False, timeout=30).stdout

    def configure(self, *lines):
        return self.vtysh("configure terminal", *lines)

    def log(self, d):
        parts = []
        for f in (f"{d}.log", f"{d}.out"):
            try:
                with open(os.path.join(self.dir, f), errors="replace") as fh:
                    parts.append(fh.read())
            except OSError:
                pass
        return "\n".join(parts)
