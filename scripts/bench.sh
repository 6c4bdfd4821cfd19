#!/usr/bin/env bash
# The README's main command: xdptcp against the kernel's TCP, side by side,
# in one run on one veth pair.
#
#   1. installs what it needs (Debian packages, idempotently);
#   2. builds xdptcp and xdptcp-bench in release mode;
#   3. sets up the veth topology in uniquely named namespaces (removed on exit);
#   4. runs the matrix, server pinned to core 0 and client to core 1:
#        pairs     kernel↔kernel, kernel client → xdptcp server, xdptcp↔xdptcp
#        workloads stream (1 conn; also at MTU 9000, jumbo frames), rr 64 B
#                  on 1 and 16 conns, crr, hold
#   5. prints the comparison table, writes the JSON and an SVG picture.
#
# Usage: scripts/bench.sh [--quick] [--out FILE.json]
#   --quick   short runs (what CI runs, about a minute): fails on crashes or
#             errors, never on timing. Writes bench/results/quick.json.
#   default   full runs (about 6 minutes). Writes bench/results/latest.json
#             and a dated copy, plus latest.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench.sh needs root (network namespaces, XDP)" >&2; exit 1; }
source scripts/deps.sh

quick=0
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; shift ;;
        --out) out=$2; shift 2 ;;
        *) echo "usage: $0 [--quick] [--out FILE.json]" >&2; exit 2 ;;
    esac
done

deps_apt clang libelf-dev zlib1g-dev m4 make pkg-config iproute2 ethtool procps
echo "== building (release)"
cargo build --release --workspace --bins 2>&1 | tail -n 1
X=target/release/xdptcp
B=target/release/xdptcp-bench

if [ "$quick" = 1 ]; then
    WARM=0.5; DUR=2; HOLD_K=2000; HOLD_X=20000; HOLD_TIME=1
    out=${out:-bench/results/quick.json}
else
    WARM=2; DUR=10; HOLD_K=9000; HOLD_X=1000000; HOLD_TIME=5
    out=${out:-bench/results/latest.json}
fi
mkdir -p "$(dirname "$out")"

NAME="xb$$$RANDOM"
SNS="$NAME-s"; PNS="$NAME-p"; SDEV="${NAME}s0"; PDEV="${NAME}p0"
WORK=$(mktemp -d)
cleanup() {
    scripts/netns.sh down --name "$NAME"
    rm -rf "$WORK"
}
trap cleanup EXIT
scripts/netns.sh up --name "$NAME" --queues 1 >/dev/null
# The kernel server's own address on the stack side; xdptcp owns .1 there.
ip -n "$SNS" addr add 198.18.0.11/24 dev "$SDEV"
# Both clients open connections as fast as they can: every port, and
# tcp_tw_reuse for ports in TIME_WAIT (xdptcp's client does the same).
ip netns exec "$PNS" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65535"
KSERVER=198.18.0.11
XSERVER=198.18.0.1
# XDP mode for xdptcp's sides. On veth, AF_XDP runs in copy mode either way,
# and generic mode measured faster than native here (rr p50 4.9 vs 5.9 µs,
# crr 73k vs 67k/s, stream equal): native veth XDP copies every frame into
# a page-pool buffer first. XDP_MODE=native scripts/bench.sh to compare.
XDP_MODE=${XDP_MODE:-generic}
# xdptcp's client: 16 addresses from .100, for more than 64k connections.
XCLIENT=(--iface "$PDEV" --ip 198.18.0.100/24 --addresses 16 --xdp-mode "$XDP_MODE")
SERVER_CORE=0; CLIENT_CORE=1

machine="$(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r), veth MTU 1500 (9000 in the jumbo row)"
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf '{"date": "%s", "machine": "%s", "quick": %s, "runs": []}\n' "$date" "$machine" "$([ $quick = 1 ] && echo true || echo false)" > "$out"
echo "== $date  $machine"

errors=0
SPID=""
start_server() { # kernel|xdptcp APP PORT
    if [ "$1" = kernel ]; then
        ip netns exec "$SNS" "$B" server --listen "$KSERVER:$3" --app "$2" --cores $SERVER_CORE > "$WORK/server.log" 2>&1 &
    else
        ip netns exec "$SNS" "$X" serve --iface "$SDEV" --ip "$XSERVER/24" --port "$3" --app "$2" \
            --xdp-mode "$XDP_MODE" --cores $SERVER_CORE --control "$WORK/ctl.sock" > "$WORK/server.log" 2>&1 &
    fi
    SPID=$!
    sleep 0.7
    kill -0 "$SPID" 2>/dev/null || { echo "server ($1 $2) did not start:"; cat "$WORK/server.log"; exit 1; }
}

stop_server() {
    if ! kill -0 "$SPID" 2>/dev/null; then
        echo "!! the server died during the run:"; tail -5 "$WORK/server.log"; errors=$((errors + 1)); return
    fi
    kill -INT "$SPID"
    local st=0
    timeout 10 tail --pid="$SPID" -f /dev/null || { kill -KILL "$SPID"; st=1; }
    wait "$SPID" 2>/dev/null || st=$?
    if [ "$st" != 0 ]; then
        echo "!! the server exited with status $st:"; tail -5 "$WORK/server.log"; errors=$((errors + 1))
    fi
}

run() { # SERVER(kernel|xdptcp) CLIENT(kernel|xdp) APP PORT WORKLOAD ARGS...
    local server=$1 client=$2 app=$3 port=$4 workload=$5; shift 5
    start_server "$server" "$app" "$port"
    local target=$KSERVER extra=()
    [ "$server" = xdptcp ] && target=$XSERVER
    [ "$client" = xdp ] && extra=("${XCLIENT[@]}")
    local st=0
    timeout 300 ip netns exec "$PNS" "$B" "$workload" --stack "$client" --server "$target:$port" \
        --cores $CLIENT_CORE --server-pid "$SPID" --server-stack "$server" --json "$out" --quiet \
        "${extra[@]}" "$@" || st=$?
    [ "$st" = 0 ] || { echo "!! client exited with status $st"; errors=$((errors + 1)); }
    stop_server
}

pairs() { # APP PORT WORKLOAD ARGS... : the three pairs
    run kernel kernel "$@"
    run xdptcp kernel "$@"
    run xdptcp xdp "$@"
}

offloads() { # on|off: the kernel's segmentation offloads on both veths
    ip netns exec "$SNS" ethtool -K "$SDEV" tso "$1" gso "$1" gro "$1" >/dev/null
    ip netns exec "$PNS" ethtool -K "$PDEV" tso "$1" gso "$1" gro "$1" >/dev/null
}

T=(--warmup "$WARM" --duration "$DUR")
echo "== stream, 1 connection (offloads off: TSO/GSO/GRO off, peer TX checksum off)"
offloads off
pairs discard 9 stream --conns 1 "${T[@]}" --label "offloads off"
echo "== stream, kernel with default offloads (peer TX checksum and TSO on)"
offloads on
ip netns exec "$PNS" ethtool -K "$PDEV" tx on >/dev/null
run kernel kernel discard 9 stream --conns 1 "${T[@]}" --label "kernel default offloads"
ip netns exec "$PNS" ethtool -K "$PDEV" tx off >/dev/null
# Jumbo frames: both veths at MTU 9000, where xdptcp's frames span chains of
# UMEM frames (multi-buffer AF_XDP) and both stacks send 8948-byte segments.
link_mtu() { # MTU: both ends of the pair
    ip -n "$SNS" link set "$SDEV" mtu "$1"
    ip -n "$PNS" link set "$PDEV" mtu "$1"
}
echo "== stream, 1 connection, MTU 9000 (jumbo frames; offloads off, peer TX checksum off)"
link_mtu 9000
offloads off
pairs discard 9 stream --conns 1 "${T[@]}" --label "MTU 9000, offloads off"
offloads on
link_mtu 1500
echo "== rr, 64 B, 1 connection"
pairs echo 7 rr --conns 1 --msg-bytes 64 "${T[@]}"
echo "== rr, 64 B, 16 connections"
pairs echo 7 rr --conns 16 --msg-bytes 64 "${T[@]}"
echo "== crr, 64 B, 1 connection at a time"
pairs echo 7 crr --conns 1 --msg-bytes 64 "${T[@]}"
echo "== hold, $HOLD_K connections (a kernel process may hold at most 20,000 descriptors here)"
pairs echo 7 hold --conns "$HOLD_K" --warmup 60 --duration "$HOLD_TIME"
echo "== hold, $HOLD_X connections held by xdptcp serve"
run xdptcp xdp echo 7 hold --conns "$HOLD_X" --concurrency 4096 --warmup 120 --duration "$HOLD_TIME"

echo "== raw AF_XDP frame rate on this pair (the I/O limit): txonly → rxdrop"
SMAC=$(ip netns exec "$SNS" cat "/sys/class/net/$SDEV/address")
for size in 64 1514; do
    ip netns exec "$SNS" "$B" frames rx --iface "$SDEV" --ip "$XSERVER/24" --xdp-mode "$XDP_MODE" --core $SERVER_CORE \
        --duration "$DUR" --size "$size" --json "$out" > "$WORK/rx.log" 2>&1 &
    rx=$!
    sleep 0.7
    timeout 120 ip netns exec "$PNS" "$B" frames tx --iface "$PDEV" --ip 198.18.0.100/24 --xdp-mode "$XDP_MODE" \
        --core $CLIENT_CORE --to "$XSERVER" --to-mac "$SMAC" --size "$size" --duration "$(awk "BEGIN { print $DUR + 1 }")" || errors=$((errors + 1))
    wait "$rx" || errors=$((errors + 1))
    cat "$WORK/rx.log"
done

echo "== raw AF_XDP round trip on this pair (no TCP): ping → reflector"
ip netns exec "$SNS" "$B" frames reflect --iface "$SDEV" --ip "$XSERVER/24" --xdp-mode "$XDP_MODE" --core $SERVER_CORE \
    --duration "$(awk "BEGIN { print $DUR + 2 }")" > "$WORK/reflect.log" 2>&1 &
rx=$!
sleep 0.7
timeout 120 ip netns exec "$PNS" "$B" frames ping --iface "$PDEV" --ip 198.18.0.100/24 --xdp-mode "$XDP_MODE" \
    --core $CLIENT_CORE --to "$XSERVER" --to-mac "$SMAC" --duration "$DUR" --json "$out" || errors=$((errors + 1))
wait "$rx" || errors=$((errors + 1))

echo
"$B" report "$out" --svg "${out%.json}.svg"
if [ "$quick" = 0 ]; then
    cp "$out" "bench/results/$(date -u +%Y-%m-%d).json"
fi
errs=$(python3 -c 'import json,sys; print(sum(int(r.get("errors") or 0) for r in json.load(open(sys.argv[1]))["runs"]))' "$out")
echo "results: $out, ${out%.json}.svg; runs with crashes: $errors; errors counted by the runs: $errs"
[ "$errors" = 0 ] && [ "$errs" = 0 ]
