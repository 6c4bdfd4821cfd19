#!/usr/bin/env bash
# Soak: xdptcp serve (echo) under mixed load from kernel clients for a long
# stretch, through the impairment relay with 2 % loss each way:
#   crr  (xdptcp-bench crr, 4 connections in flight),
#   rr   (xdptcp-bench rr, 16 connections),
#   stream (16 MiB echoes, each verified by hash, one after another).
# Every 10 s it samples the server's RSS, its UMEM frames and connections.
# Passes when: every load run reports 0 errors and every echo verifies;
# memory and held frames do not grow; after the load stops, no connection
# is left in a non-terminal state, every TX frame is back, and the server
# exits 0. Needs root; own namespaces, removed on exit; bounded in time.
#
# Usage: scripts/soak.sh [--minutes M] [--out FILE.json]   (default 30)
# Ends with "soak summary: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the soak needs root" >&2; exit 1; }

minutes=30; out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "usage: $0 [--minutes M] [--out FILE.json]" >&2; exit 2 ;;
    esac
done

BIN=${XDPTCP_BIN:-target/release/xdptcp}
BENCH=${XDPTCP_BENCH_BIN:-target/release/xdptcp-bench}
NAME="xk$(printf %05d $(( $$ % 100000 )))$(printf %04d $(( RANDOM % 10000 )))"
SNS="$NAME-s"; PNS="$NAME-p"; RNS="$NAME-r"; SDEV="${NAME}s0"
WORK=$(mktemp -d)
cleanup() {
    scripts/netns.sh down --name "$NAME"
    rm -rf "$WORK"
}
trap cleanup EXIT

scripts/netns.sh up --name "$NAME" --relay > /dev/null || { echo "netns setup failed"; exit 1; }
ip netns exec "$PNS" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65535"
timeout $(( minutes * 60 + 600 )) ip netns exec "$RNS" "$BENCH" relay --a "${NAME}ra" --b "${NAME}rb" --loss 2 --seed 7 > "$WORK/relay.log" 2>&1 &
RELAY_PID=$!
CTL="$WORK/ctl.sock"
ip netns exec "$SNS" "$BIN" serve --iface "$SDEV" --ip 198.18.0.1/24 --port 7 --app echo --control "$CTL" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do grep -q serving "$WORK/server.log" && break; sleep 0.1; done
grep -q serving "$WORK/server.log" || { echo "server did not start"; cat "$WORK/server.log"; exit 1; }

end=$(( SECONDS + minutes * 60 ))
echo "== soak: ${minutes} min of crr + rr + stream against xdptcp serve (echo), 2 % loss each way"

# Each load runs in a loop of bounded runs until the end; every run's
# errors are logged.
load_loop() { # name command...
    local name=$1; shift
    local n=0
    while [ $SECONDS -lt $(( end - 5 )) ]; do
        local left=$(( end - SECONDS - 2 )); [ "$left" -gt 60 ] && left=60; [ "$left" -lt 3 ] && break
        n=$((n + 1))
        # shellcheck disable=SC2068
        timeout $(( left + 120 )) ip netns exec "$PNS" $@ --duration "$left" >> "$WORK/$name.log" 2>&1 || echo "RUN FAILED: $name run $n exit $?" >> "$WORK/$name.log"
    done
}
stream_loop() {
    local n=0
    while [ $SECONDS -lt $(( end - 10 )) ]; do
        n=$((n + 1))
        timeout 300 ip netns exec "$PNS" python3 tests/veth/peer.py echo 16777216 >> "$WORK/stream.log" 2>&1 || echo "RUN FAILED: stream run $n" >> "$WORK/stream.log"
    done
}
load_loop crr "$BENCH" crr --stack kernel --server 198.18.0.1:7 --conns 4 --warmup 0 &
L1=$!
load_loop rr "$BENCH" rr --stack kernel --server 198.18.0.1:7 --conns 16 --warmup 0 &
L2=$!
stream_loop &
L3=$!

sample() {
    local rss; rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null)
    "$BIN" stats --json --control "$CTL" 2>/dev/null | python3 -c "
import json, sys, time
t = json.load(sys.stdin)['total']
print(json.dumps({'t': $SECONDS, 'rss_kib': int('${rss:-0}'), 'connections': t['connections'], 'time_wait': t['time_wait'],
                  'frames_free': t['umem_frames_free'], 'frames_tx': t['umem_frames_tx_in_flight'], 'frames_total': t['umem_frames_total'],
                  'passive_opens': t['passive_opens'], 'segments_in': t['segments_in'], 'retransmits': t['retransmits']}))" >> "$WORK/samples.jsonl"
}
while [ $SECONDS -lt $end ]; do
    sample
    sleep 10
done
wait $L1 $L2 $L3
# Quiet: every connection should finish its close (LAST_ACK retransmits
# through the loss) well within this.
sleep 15
sample
"$BIN" ss --control "$CTL" > "$WORK/ss.txt" 2>&1
kill -INT "$SERVER_PID"; wait "$SERVER_PID"; server_status=$?
kill -INT "$RELAY_PID"; wait "$RELAY_PID"

passed=0; failed=0
verdict() { if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "soak: PASS $1"; else failed=$((failed + 1)); echo "soak: FAIL $1"; fi; }

for l in crr rr; do grep -E "^$l " "$WORK/$l.log" | tail -2 | cut -c1-200; done
echo "stream: $(grep -c 'verified by hash' "$WORK/stream.log") echoes of 16 MiB verified"
cat "$WORK/relay.log" | grep "^relay "
errs=$(cat "$WORK/crr.log" "$WORK/rr.log" | grep -oE "errors [0-9]+" | awk '{s += $2} END {print s + 0}')
runs=$(cat "$WORK/crr.log" "$WORK/rr.log" | grep -cE "errors [0-9]+")
fails=$(cat "$WORK/crr.log" "$WORK/rr.log" "$WORK/stream.log" | grep -c "RUN FAILED")
streams=$(grep -c 'verified by hash' "$WORK/stream.log")
echo "load runs: $runs, errors counted: $errs, failed runs: $fails, stream echoes: $streams"
cat "$WORK/crr.log" "$WORK/rr.log" "$WORK/stream.log" | grep -B3 "RUN FAILED" | cut -c1-300 | head -20
[ "$errs" = 0 ] && [ "$fails" = 0 ] && [ "$runs" -ge 2 ] && [ "$streams" -ge 1 ]; verdict "every load run finished with 0 errors, every echo verified" $?

python3 - "$WORK/samples.jsonl" "$WORK/ss.txt" "$minutes" "${out:-}" > "$WORK/verdict.txt" 2>&1 <<'PY'

import json, sys
samples = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ss = open(sys.argv[2]).read().splitlines()
minutes, out = sys.argv[3], sys.argv[4]
during, final = samples[:-1], samples[-1]
# Memory grows while the allocator warms up (buffers of connections that
# come and go); it must then stop: the last third's peak may not exceed the
# middle third's by more than 5 % + 4 MiB.
third = max(len(during) // 3, 1)
middle, last = during[third:2 * third] or during[:1], during[2 * third:] or during[-1:]
rss1 = max(s["rss_kib"] for s in middle); rss2 = max(s["rss_kib"] for s in last)
tx_max = max(s["frames_tx"] for s in during)
print(f"samples {len(samples)}; RSS at start {samples[0]['rss_kib']} KiB, peak in the middle third {rss1} KiB, in the last third {rss2} KiB; "
      f"connections max {max(s['connections'] for s in during)}; TX frames in flight max {tx_max} of {final['frames_total']}")
print(f"after the load: connections {final['connections']} (time_wait {final['time_wait']}), "
      f"TX frames in flight {final['frames_tx']}, free {final['frames_free']} (at start {samples[0]['frames_free']})")
stuck = [l for l in ss if l and not l.startswith(("State", "TIME-WAIT", "TIME_WAIT"))]
ok = True
def check(name, cond):
    global ok
    print(("soak: PASS " if cond else "soak: FAIL ") + name)
    ok &= cond
check("server memory stops growing (last third's peak within 5 % + 4 MiB of the middle third's)", rss2 <= rss1 * 1.05 + 4096)
check("held frames do not grow: every TX frame back, free frames as at start", final["frames_tx"] == 0 and final["frames_free"] == samples[0]["frames_free"])
check("no connection stuck in a non-terminal state after the load", final["connections"] - final["time_wait"] == 0 and not stuck)
if out:
    json.dump({"minutes": float(minutes), "samples": samples, "rss_kib_middle_third_max": rss1, "rss_kib_last_third_max": rss2,
               "final": final}, open(out, "w"), indent=1)
sys.exit(0 if ok else 1)
PY
cat "$WORK/verdict.txt"
grep -q "^soak: FAIL no connection stuck" "$WORK/verdict.txt" && { echo "left open:"; "$BIN" ss -i --control "$CTL" 2>/dev/null; cat "$WORK/ss.txt"; }
passed=$(( passed + $(grep -c "^soak: PASS" "$WORK/verdict.txt") ))
failed=$(( failed + $(grep -c "^soak: FAIL" "$WORK/verdict.txt") ))
# A crash of the checker itself is a failure too.
grep -q "^soak: " "$WORK/verdict.txt" || failed=$((failed + 1))
[ "$server_status" = 0 ]; verdict "server exit 0 after SIGINT" $?
echo "soak summary: $passed passed, $failed failed"
[ "$failed" = 0 ]
