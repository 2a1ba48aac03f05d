#!/usr/bin/env python3
"""Run test binaries that `cargo test --workspace --no-run
--message-format=json` built, picked by package and target kind, with the
arguments given after `--` (as `cargo test -p PKG` would run them).

    test_bins.py ARTIFACTS.json PACKAGE KIND [-- TEST-ARGS...]

KIND is `lib` (the crate's unit tests) or `tests` (its integration tests,
tests/*.rs) or `all`. Each binary runs in its package's directory, as
cargo runs it. Why: `cargo test -p PKG` resolves features for PKG alone,
so it compiles PKG and the dependencies whose features differ again (the
root-only tests cost minutes of CI that way); the workspace's build has
every test binary already. Exits non-zero when a binary fails or when no
binary matched (nothing reports "ok" without having run).
"""

import json
import os
import subprocess
import sys


def package_name(package_id):
    """The package's name in a package id spec: "path+file:///…/crates/io#softnet-io@0.1.0",
    or "path+file:///…/crates/softnet#0.1.0" when the name is the
    directory's (or the older "NAME VERSION (SOURCE)")."""
    if "#" not in package_id:
        return package_id.split(" ", 1)[0]
    url, frag = package_id.rsplit("#", 1)
    if "@" in frag:
        return frag.split("@", 1)[0]
    return url.rstrip("/").rsplit("/", 1)[-1]


def main(argv):
    if len(argv) < 4:
        sys.exit(__doc__)
    artifacts, package, kind = argv[1], argv[2], argv[3]
    rest = argv[4:]
    if rest and rest[0] == "--":
        rest = rest[1:]
    if kind not in ("lib", "tests", "all"):
        sys.exit(f"test_bins.py: kind must be lib, tests or all, not {kind!r}")
    bins = []
    with open(artifacts) as f:
        for line in f:
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if m.get("reason") != "compiler-artifact" or not m.get("executable"):
                continue
            if not m.get("profile", {}).get("test"):
                continue
            target = m["target"]
            pkg_dir = os.path.dirname(m["manifest_path"])
            if package_name(m.get("package_id", "")) != package:
                continue
            is_lib = "lib" in target["kind"] or "rlib" in target["kind"]
            is_test = target["kind"] == ["test"]
            if kind == "lib" and not is_lib or kind == "tests" and not is_test:
                continue
            bins.append((pkg_dir, m["executable"]))
    if not bins:
        sys.exit(f"test_bins.py: no {kind} test binary of {package} in {artifacts}")
    failed = []
    for pkg_dir, exe in bins:
        print(f"     Running {os.path.relpath(exe)} {' '.join(rest)}", flush=True)
        if subprocess.call([exe] + rest, cwd=pkg_dir) != 0:
            failed.append(exe)
    if failed:
        sys.exit(f"test_bins.py: failed: {' '.join(failed)}")


if __name__ == "__main__":
    main(sys.argv)
