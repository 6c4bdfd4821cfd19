#!/usr/bin/env bash
# xdptcp's test command (what CI runs): installs what it needs, then runs
#   1. a short fuzz smoke over every wire parser (FUZZ_SECONDS each, default 10);
#   2. every cargo test of the workspace, the full simulated-network matrix included.
# Usage: scripts/test.sh [--no-fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

fuzz=1
for arg in "$@"; do
    case "$arg" in
        --no-fuzz) fuzz=0 ;;
        *) echo "usage: $0 [--no-fuzz]" >&2; exit 2 ;;
    esac
done

deps_apt tcpdump

if [ "$fuzz" = 1 ] && [ -d fuzz ]; then
    deps_cargo_fuzz
    secs=${FUZZ_SECONDS:-10}
    for target in $(cd fuzz && cargo +nightly fuzz list); do
        echo "== fuzz smoke: $target (${secs}s)"
        (cd fuzz && cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -print_final_stats=0 2>&1 | tail -n 2)
    done
fi

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets 2>&1 | tee "$log" || status=$?
# One closing line over every test binary: "summary: N passed, N failed".
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
