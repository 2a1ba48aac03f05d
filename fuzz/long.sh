#!/usr/bin/env bash
# The long runs (fuzz/RESULTS.md): each TARGET in turn, one process at a
# time at the lowest priority (the machine is shared), until it has made
# EXECUTIONS runs or spent SECONDS, whichever comes first. The corpus a run
# grows is kept in fuzz/long/TARGET/ (not in git) and is where the next
# run goes on from. Needs the release build run.sh makes
# (`bash fuzz/run.sh 1 TARGET...` builds it). A crash stops the target's
# run and leaves its input in fuzz/artifacts/TARGET/; the summary line of
# each run goes to fuzz/long/summary.log.
#
#   bash fuzz/long.sh EXECUTIONS SECONDS TARGET...
#   bash fuzz/long.sh 10000000 3600 parse_frame datapath
set -uo pipefail
cd "$(dirname "$0")"
runs=${1:?executions}
secs=${2:?seconds}
shift 2
triple=$(rustc -vV | sed -n 's/^host: //p')
bin=target/$triple/release
extra_for() {
    case "$1" in
        pf_conf) echo ../crates/pf/tests/cases ../tests/pf-regress/cases ;;
        config_toml) echo ../examples ;;
    esac
}
mkdir -p long
for t in "$@"; do
    mkdir -p "long/$t" "artifacts/$t"
    seeds=()
    for d in "corpus/$t" "regressions/$t" $(extra_for "$t"); do
        [ -d "$d" ] && seeds+=("$d")
    done
    log=long/$t.log
    start=$(date -u +%FT%TZ)
    nice -n 19 "$bin/$t" "long/$t" "${seeds[@]}" -runs="$runs" -max_total_time="$secs" \
        -timeout=10 -rss_limit_mb=4096 -max_len=8192 -artifact_prefix="artifacts/$t/" \
        -print_final_stats=1 2>"$log"
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    echo "$start $t rc=$rc executions=$execs exec/s=$rate $cov load=$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a long/summary.log
done
