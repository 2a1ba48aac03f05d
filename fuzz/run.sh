#!/usr/bin/env bash
# Builds the fuzz targets with plain cargo (the flags cargo-fuzz passes:
# sanitizer coverage, comparison tracing, debug assertions; no nightly or
# cargo-fuzz needed) and runs each for SECONDS (default 20) from its seed
# corpus, the tests' inputs and its regressions. Exit non-zero on the first
# target that crashes; the crashing input is left in fuzz/artifacts/TARGET/.
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]
#   FUZZ_PROFILE=fuzzci bash fuzz/run.sh 15    # CI: a quicker build
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
shift || true
all=(parse_frame parse_ipv6 parse_icmpv6 parse_ndp pf_conf config_toml control datapath)
targets=("${@:-${all[@]}}")
triple=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps the flags off build scripts and proc macros (as cargo-fuzz).
# Not --locked: a dependency main gained resolves here too.
profile=${FUZZ_PROFILE:-release}
cargo build --profile "$profile" --target "$triple" $(printf -- '--bin %s ' "${targets[@]}")
bin=target/$triple/$profile
# Inputs the tests already use, as extra seeds (read only).
extra_for() {
    case "$1" in
        pf_conf) echo ../crates/pf/tests/cases ../tests/pf-regress/cases ;;
        config_toml) echo ../examples ;;
    esac
}
# Runs per target under FUZZ_RUNS=1: about ten seconds each on this
# project's 2-core machine (the data path and control targets build a
# router or a server per input).
runs_for() {
    case "$1" in
        control) echo 2000 ;;
        datapath) echo 1500 ;;
        pf_conf | config_toml) echo 30000 ;;
        *) echo 60000 ;;
    esac
}
for t in "${targets[@]}"; do
    work=$(mktemp -d)
    mkdir -p "artifacts/$t"
    seeds=()
    for d in "corpus/$t" "regressions/$t" $(extra_for "$t"); do
        [ -d "$d" ] && seeds+=("$d")
    done
    # -rss_limit_mb: the data path target builds a router per input.
    # FUZZ_RUNS=1: a fixed number of runs from a fixed seed (CI), so that
    # a run that passed here passes there too; else SECONDS of wall time.
    # -reload=0: no rereading of the corpus directory once a second (what
    # it finds depends on timing); SOFTNET_FUZZ_FRESH_LAB: a new router (daemon)
    # per data path (control) input (a reused one is faster, not repeatable).
    if [ "${FUZZ_RUNS:-0}" = 1 ]; then
        export SOFTNET_FUZZ_FRESH_LAB=1
        budget=(-seed=1 -reload=0 -runs="$(runs_for "$t")")
    else
        budget=(-max_total_time="$secs")
    fi
    # The seeds as one sorted list: libFuzzer reads a directory in readdir
    # order, which differs from one file system to the next, and a run from
    # a fixed seed must start from the same order everywhere (with the
    # targets' fixed random source, fuzz_targets/determinism.rs, the same
    # run then executes the same inputs on every machine).
    list=()
    if [ ${#seeds[@]} -gt 0 ]; then
        find "${seeds[@]}" -type f | LC_ALL=C sort | paste -sd, >"$work.seeds"
        [ -s "$work.seeds" ] && list=(-seed_inputs=@"$work.seeds")
    fi
    echo "=== fuzz: $t ${budget[*]}"
    "$bin/$t" "$work" "${list[@]}" "${budget[@]}" -timeout=10 -rss_limit_mb=4096 \
        -max_len=8192 -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>"artifacts/$t.log" || {
        tail -40 "artifacts/$t.log"
        echo "FAILED: fuzz target $t (input in fuzz/artifacts/$t/)"
        rm -rf "$work" "$work.seeds"
        exit 1
    }
    grep -E "stat::number_of_executed_units|cov:" "artifacts/$t.log" | tail -2
    rm -rf "$work" "$work.seeds"
done
echo "fuzz: ${#targets[@]} targets ran without a crash"
