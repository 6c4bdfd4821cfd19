#!/usr/bin/env bash
# xdptcp's test command (what CI runs): installs what it needs, then runs
#   1. a fuzz smoke of every target (the wire parsers, the engine, a whole
#      shard), FUZZ_SECONDS each (default 60), two at a time;
#   2. every cargo test of the workspace, the full simulated-network matrix included;
#   3. as root: the AF_XDP datapath over a veth pair against the kernel's TCP
#      (scripts/veth-tests.sh, in its own namespaces), the same through the
#      impairment relay (scripts/relay-tests.sh), jumbo frames at MTU 9000
#      (scripts/jumbo-tests.sh), a 2-minute soak
#      (scripts/soak.sh), then the benchmark matrix in its short form
#      (scripts/bench.sh --quick).
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
    secs=${FUZZ_SECONDS:-60}
    targets=$(cd fuzz && cargo +nightly fuzz list)
    echo "== fuzz smoke: every target for ${secs}s, two at a time: $(echo $targets)"
    (cd fuzz && cargo +nightly fuzz build 2>&1 | tail -n 1)
    fuzz_one() { # target → 0 unless libFuzzer found a crash
        (cd fuzz && cargo +nightly fuzz run "$1" -- -max_total_time="$secs" -print_final_stats=0 > "$fuzzlog.$1" 2>&1)
        local st=$?
        echo "   $1: $(tail -n 1 "$fuzzlog.$1")"
        [ "$st" = 0 ] || { echo "fuzz target $1 FAILED:"; tail -n 30 "$fuzzlog.$1"; }
        return "$st"
    }
    fuzzlog=$(mktemp)
    fuzz_failed=0
    set -- $targets
    while [ $# -gt 0 ]; do
        fuzz_one "$1" & a=$!
        b=""
        if [ $# -gt 1 ]; then fuzz_one "$2" & b=$!; fi
        wait "$a" || fuzz_failed=1
        if [ -n "$b" ]; then wait "$b" || fuzz_failed=1; shift; fi
        shift
    done
    rm -f "$fuzzlog"*
    [ "$fuzz_failed" = 0 ] || { echo "fuzz smoke found a crash"; exit 1; }
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
    RELAY_BYTES=${RELAY_BYTES:-16777216} bash scripts/relay-tests.sh 2>&1 | tee -a "$log" || status=1
    echo "== jumbo frames, MTU 9000 (scripts/jumbo-tests.sh)"
    bash scripts/jumbo-tests.sh 2>&1 | tee -a "$log" || status=1
    echo "== soak, short (scripts/soak.sh --minutes 2)"
    bash scripts/soak.sh --minutes 2 2>&1 | tee -a "$log" || status=1
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
awk '/^(test result:|veth summary:|relay summary:|jumbo summary:|soak summary:|bench summary:)/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
