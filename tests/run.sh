#!/usr/bin/env bash
# The test command: unit, property and in-memory topology tests, then the
# root-only tests and the end-to-end tests with Linux network namespaces
# (as root; without root the script says what did not run and fails).
set -euo pipefail
cd "$(dirname "$0")/.."

# Lints first, so that they fail fast: formatting, then clippy with every
# warning an error, with every feature, over the workspace and the fuzz
# workspace (its own, fuzz/Cargo.toml; checked in the main target dir so
# that it reuses the dependencies' check results). An allowed lint says
# why where it is allowed (never clippy::all).
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --all --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
CARGO_TARGET_DIR=$PWD/target cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings

# Everything is built once, in the `ci` profile (Cargo.toml: release code
# without the whole-program link, in target/ci/), and the end-to-end tests
# run that build's binaries (SOFTNET_BIN; the examples beside it).
cargo build --profile ci --bins --examples
# The test binaries' list is kept: the root-only tests below run from it.
mkdir -p target/ci
cargo test --workspace --profile ci --no-run --message-format=json-render-diagnostics >target/ci/test-bins.json
cargo test --workspace --profile ci
# The async socket API (feature tokio) on tokio's runtime.
cargo test --profile ci -p softnet-core --features tokio --test async_api
export SOFTNET_BIN=$PWD/target/ci/softnet

# The README's first command, as a smoke test: the demo must run and report.
out=$("$SOFTNET_BIN" demo --flood 20000)
for want in "is-at 02:00:00:00:01:01" "icmp_seq=5" "time exceeded" "packets/s forwarded" "UHLl" "Output histogram"; do
    grep -q "$want" <<<"$out" || { echo "demo output lacks: $want"; echo "$out"; exit 1; }
done
echo "demo: ok"

# Every fuzz target for a short while, a fixed number of runs from a fixed
# seed (fuzz/README.md): a crash fails the run and leaves its input in
# fuzz/artifacts/. A step that overruns its
# 15 minutes (the build, on a loaded machine) is reported, not failed.
rc=0
FUZZ_RUNS=1 FUZZ_PROFILE=fuzzci timeout 900 bash fuzz/run.sh || rc=$?
if [ "$rc" -eq 124 ]; then
    echo "tests/run.sh: the fuzz step did NOT finish within 15 minutes (not a crash; see above)"
elif [ "$rc" -ne 0 ]; then
    exit "$rc"
fi

if [ "$(id -u)" -ne 0 ]; then
    # Nothing passes without having run: the root-only tests did not.
    echo "tests/run.sh: not root: the root-only tests (cargo test -p softnet-io -- --ignored) and the end-to-end tests (tests/e2e) did NOT run; run as root"
    exit 2
fi
# The tests that need root (namespaces, TAP, AF_PACKET, AF_XDP) are
# #[ignore = "needs root"]; the other ignored tests are measurements. They
# run from the workspace's test binaries (tests/test_bins.py says why).
python3 tests/test_bins.py target/ci/test-bins.json softnet-io all -- --ignored --skip bench_
python3 tests/test_bins.py target/ci/test-bins.json softnet lib -- --ignored needs_root_
shopt -s nullglob
fail=0
for t in tests/e2e/test_*.sh tests/e2e/test_*.py; do
    echo "=== e2e: $t"
    case "$t" in
        *.sh) timeout -k 30 600 bash "$t" || { echo "FAILED: $t"; fail=1; } ;;
        *.py) timeout -k 30 600 python3 "$t" || { echo "FAILED: $t"; fail=1; } ;;
    esac
done
exit $fail
