#!/usr/bin/env bash
# The test command: unit, property and in-memory topology tests, then the
# end-to-end tests with Linux network namespaces (root only; skipped with a
# message otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins
cargo test --workspace --release

# The README's first command, as a smoke test: the demo must run and report.
out=$(target/release/softnet demo --flood 20000)
for want in "is-at 02:00:00:00:01:01" "icmp_seq=5" "time exceeded" "packets/s forwarded" "UHLl" "Output histogram"; do
    grep -q "$want" <<<"$out" || { echo "demo output lacks: $want"; echo "$out"; exit 1; }
done
echo "demo: ok"

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: not root: end-to-end tests (tests/e2e) skipped"
    exit 0
fi
shopt -s nullglob
fail=0
for t in tests/e2e/test_*.sh tests/e2e/test_*.py; do
    echo "=== e2e: $t"
    case "$t" in
        *.sh) timeout 600 bash "$t" || { echo "FAILED: $t"; fail=1; } ;;
        *.py) timeout 600 python3 "$t" || { echo "FAILED: $t"; fail=1; } ;;
    esac
done
exit $fail
