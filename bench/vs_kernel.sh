#!/usr/bin/env bash
# softnet against the Linux kernel router (with and without nftables) in the
# same run, with ../shared/bench. Root. Usage:
#   bash bench/vs_kernel.sh [-t SECS] [-n REPS] [-m "user tap xdp"]
# Prints the kernel table, then one softnet row per attach mode.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
harness=${BENCH_HARNESS:-$repo/../shared/bench}
secs=5 reps=3 modes="user"
while getopts "t:n:m:" o; do
    case $o in
    t) secs=$OPTARG ;;
    n) reps=$OPTARG ;;
    m) modes=$OPTARG ;;
    *) exit 2 ;;
    esac
done
. "$here/lib.sh"

echo "== kernel router (offloads off, as the user-space rows), no rules / nft 1 / nft 100"
bash "$harness/bench.sh" -t "$secs" -n "$reps" -c "off 1 100" -o off

for mode in $modes; do
    echo "== softnet ($mode)"
    bash "$harness/topo.sh" up "$(topo_of "$mode")"
    mkdir -p /run/sn-bench
    ip netns exec sn-r taskset -c 1 "$bin" up -c "$here/softnet-$mode.toml" 2>/run/sn-bench/softnet.log &
    pid=$!
    trap 'kill $pid 2>/dev/null || true; bash "$harness/topo.sh" down || true' EXIT
    sleep 2
    kill -0 $pid || { cat /run/sn-bench/softnet.log; exit 1; }
    napi_to_router_cpu "$mode"
    bash "$harness/bench.sh" -a -p $pid -l "softnet ($mode)" -t "$secs" -n "$reps" || true
    ip netns exec sn-r "$bin" --socket /run/sn-bench/softnet.sock netstat -i || true
    kill $pid; wait $pid 2>/dev/null || true
    trap - EXIT
    bash "$harness/topo.sh" down
done
