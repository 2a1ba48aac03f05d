#!/usr/bin/env bash
# Where the router CPU's time goes, kernel router vs softnet, in the same run:
# for each mode, 64-byte UDP over 1000 flows through ../shared/bench's
# topology, with
#   * the forwarded rate and router ns/packet (udp_pps.sh),
#   * function-call IPIs per second received by each CPU (/proc/interrupts
#     "CAL"): CPU 0 receives the IPIs the router CPU sends to hand frames to
#     host B's backlog (RPS), CPU 1 those the generator sends to the router,
#   * the share of the router CPU's samples spent sending IPIs
#     (perf: time under x2apic_send_IPI, children included),
#     if perf is installed.
# Root. Usage: bash bench/ipi.sh [-t SECS] [-m "kernel user tap xdp"]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
harness=${BENCH_HARNESS:-$repo/../shared/bench}
secs=5 modes="kernel user tap"
while getopts "t:m:" o; do
    case $o in
    t) secs=$OPTARG ;;
    m) modes=$OPTARG ;;
    *) exit 2 ;;
    esac
done
. "$here/lib.sh"

cal() { awk '/^ *CAL:/ { print $2, $3 }' /proc/interrupts; }

pid=""
breakdown=$(mktemp)
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    bash "$harness/topo.sh" down >/dev/null 2>&1 || true
}
trap cleanup EXIT

printf '%-8s %9s %8s %12s %12s %9s %10s %12s\n' mode pps ns/pkt "IPI/s cpu0" "IPI/s cpu1" "pkt/IPI" "IPI-send%" "IPI ns/pkt"
for mode in $modes; do
    bash "$harness/topo.sh" down >/dev/null 2>&1 || true
    if [ "$mode" = kernel ]; then
        OFFLOADS=off bash "$harness/topo.sh" up kernel >/dev/null
        pid=""
    else
        bash "$harness/topo.sh" up "$(topo_of "$mode")" >/dev/null
        mkdir -p /run/sn-bench
        ip netns exec sn-r taskset -c 1 "$bin" up -c "$here/softnet-$mode.toml" 2>/run/sn-bench/softnet.log &
        pid=$!
        sleep 2
        kill -0 "$pid" || { cat /run/sn-bench/softnet.log; exit 1; }
        napi_to_router_cpu "$mode"
    fi
    out=$(mktemp) perfdata=$(mktemp)
    (
        sleep 2
        read -r a0 b0 < <(cal)
        if command -v perf >/dev/null; then
            perf record -q -C 1 -g -o "$perfdata" -- sleep "$((secs - 2))" >/dev/null 2>&1 || true
        else
            sleep "$((secs - 2))"
        fi
        read -r a1 b1 < <(cal)
        echo "$(( (a1 - a0) / (secs - 2) )) $(( (b1 - b0) / (secs - 2) ))" >"$out"
    ) &
    sampler=$!
    line=$(bash "$harness/udp_pps.sh" -t "$secs" -f 1000 ${pid:+-p "$pid"})
    wait "$sampler"
    read -r ipi0 ipi1 <"$out"
    pps=$(sed -n 's/.*pps=\([0-9]*\) sent.*/\1/p' <<<"$line")
    ns=$(sed -n 's/.*ns_per_pkt=\([0-9]*\).*/\1/p' <<<"$line")
    share="n/a"
    if [ -s "$perfdata" ]; then
        share=$(perf report -i "$perfdata" --children --sort sym --stdio -g none 2>/dev/null |
            awk '/x2apic_send_IPI/ && !done { gsub("%", "", $1); print $1; done = 1 }' || true)
        share=${share:-0}
    fi
    if [ -s "$perfdata" ]; then
        # Inclusive shares of the router CPU's samples, for the breakdown.
        perf report -i "$perfdata" --children --sort sym --stdio -g none 2>/dev/null |
            awk -v m="$mode" '
                $NF ~ /^(x2apic_send_IPI|packet_sendmsg|tpacket_rcv|tun_get_user|tun_do_read|xsk_sendmsg|veth_poll|__netif_receive_skb_core[.a-z0-9]*|ip_forward|nft_do_chain|handle_softirqs|entry_SYSCALL_64_after_hwframe)$/ {
                    printf "%s %s %s\n", m, $NF, $1 }' >>"$breakdown" || true
        perf report -i "$perfdata" --sort dso --stdio -g none 2>/dev/null |
            awk -v m="$mode" '$NF == "softnet" { printf "%s softnet-user-space %s\n", m, $1 }' >>"$breakdown" || true
    fi
    ppi="n/a"
    [ "${ipi0:-0}" -gt 0 ] && ppi=$((pps / ipi0))
    ipins="n/a"
    [ "$share" != n/a ] && ipins=$(awk -v s="$share" -v n="$ns" 'BEGIN { printf "%d", s * n / 100 }')
    printf '%-8s %9s %8s %12s %12s %9s %10s %12s\n' "$mode" "$pps" "$ns" "$ipi0" "$ipi1" "$ppi" "$share" "$ipins"
    rm -f "$out" "$perfdata"
    if [ -n "$pid" ]; then
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
done
echo
echo "inclusive share of the router CPU's samples (perf -C 1, children included):"
sort -k1,1 -s "$breakdown" | awk '{ printf "  %-8s %-36s %s\n", $1, $2, $3 }'
rm -f "$breakdown"
