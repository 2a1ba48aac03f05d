#!/usr/bin/env bash
# softnet's TCP against smoltcp's benchmark example and the Linux kernel
# (issue 13), side by side in one run: see bench/tcp_vs.py for what runs.
#   cargo build --release --example benchmark
#   (smoltcp, outside the repo) git clone https://github.com/smoltcp-rs/smoltcp
#     /work/smoltcp-build/smoltcp && cargo build --release --example benchmark
#   sudo bash bench/tcp_vs.sh [-n RUNS] [-b BYTES] [--conns N] [--idle N] [--modes "M ..."]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/tcp_vs.py "$@"
