#!/usr/bin/env bash
# Issue 14's punt path figures: UDP to the router's own address handed to
# Linux through the host interface (softnet, `host = "hr0"`) against the
# kernel receiving it itself; RTT (one request at a time) and rate (iperf3
# UDP, 64-byte datagrams), alternating rounds. Root; needs iperf3.
#   bash bench/punt.sh   (PUNT_DRIVER=tap|packet, PUNT_REPS, PUNT_SECS, PUNT_RTTS)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export SOFTNET_BIN=${SOFTNET_BIN:-$repo/target/release/softnet}
[ -x "$SOFTNET_BIN" ] || cargo build --release --bins --manifest-path "$repo/Cargo.toml"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$repo/tests/e2e/manual/punt.py"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
