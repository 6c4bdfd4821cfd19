#!/usr/bin/env bash
# xdptcp's test command (what CI runs): installs what it needs, then runs
#   1. a short fuzz smoke over every wire parser (FUZZ_SECONDS each, default 10);
#   2. every cargo test of the workspace, the full simulated-network matrix included;
#   3. as root: the AF_XDP datapath over a veth pair against the kernel's TCP
#      (scripts/veth-tests.sh, in its own namespaces), the same through the
#      impairment relay (scripts/relay-tests.sh), then the benchmark matrix
#      in its short form (scripts/bench.sh --quick).
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

# Build: clang for the XDP program, and what xsk-rs's C dependencies need.
# Tests: tcpdump, and for the veth tests iproute2, ethtool, nftables, ping, curl.
deps_apt clang libelf-dev zlib1g-dev m4 make pkg-config tcpdump iproute2 ethtool nftables iputils-ping curl

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

if [ "$(id -u)" = 0 ]; then
    echo "== veth tests (AF_XDP against the kernel's TCP)"
    cargo build --release --workspace --bins 2>&1 | tail -n 1
    bash scripts/veth-tests.sh 2>&1 | tee -a "$log" || status=1
    echo "== through the impairment relay (scripts/relay-tests.sh)"
    RELAY_BYTES=${RELAY_BYTES:-4194304} bash scripts/relay-tests.sh 2>&1 | tee -a "$log" || status=1
    # The benchmark matrix, short: fails on crashes or errors, never on timing.
    echo "== bench smoke (scripts/bench.sh --quick)"
    if timeout 600 bash scripts/bench.sh --quick 2>&1 | tee "$log.bench"; then
        echo "bench summary: 1 passed, 0 failed" | tee -a "$log"
    else
        echo "bench summary: 0 passed, 1 failed" | tee -a "$log"
        status=1
    fi
    rm -f "$log.bench"
else
    echo "== veth tests NOT run: they need root (CI runs them as root)"
fi
# One closing line over every test binary: "summary: N passed, N failed".
awk '/^(test result:|veth summary:|relay summary:|bench summary:)/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
