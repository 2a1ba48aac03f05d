"""Programs that embed softnet (examples/*.rs) run in place of `softnet up`:
same configuration, same control socket, so the `Daemon` helpers (admin
commands, log, stop) work on them."""

import os
import subprocess

from lib_e2e import Daemon, log


def example_bin(name):
    """target/release/examples/NAME, beside SOFTNET_BIN when it is set."""
    env = os.environ.get(f"{name.upper()}_BIN")
    if env:
        return env
    sn = os.environ.get("SOFTNET_BIN")
    if sn:
        cand = os.path.join(os.path.dirname(os.path.abspath(sn)), "examples", name)
        if os.path.exists(cand):
            return cand
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, "target", "release", "examples", name)


class Embedded(Daemon):
    """An example program started with `-c CONFIG` plus `args`."""

    def __init__(self, topo, config, ns, example, args):
        super().__init__(topo, config, ns, name=example)
        self.example, self.args = example, list(args)
        topo.daemons.append(self)

    def start(self, wait=True):
        self._logf = open(self.logfile, "ab")
        args = ["ip", "netns", "exec", self.ns, example_bin(self.example), "-c", self.cfg] + self.args
        log(f"start {self.example}: {' '.join(args)}")
        self.proc = subprocess.Popen(args, stdout=self._logf, stderr=self._logf, stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
