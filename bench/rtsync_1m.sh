#!/usr/bin/env bash
# Issue 14's figure: a 1,000,000-prefix BGP feed from BIRD into softnet's
# table (routes per second) and forwarding during it against idle. Root;
# needs bird2 and iperf3; takes minutes and a few GiB of memory.
#   bash bench/rtsync_1m.sh            (RTSYNC_1M_N=100000 for a shorter run)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export SOFTNET_BIN=${SOFTNET_BIN:-$repo/target/release/softnet}
[ -x "$SOFTNET_BIN" ] || cargo build --release --bins --manifest-path "$repo/Cargo.toml"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$repo/tests/e2e/manual/rtsync_1m.py"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
