#!/usr/bin/env bash
# xdptcp through the impairment relay (xdptcp-bench relay), against the
# kernel's TCP: a bad network between the stack and its peer, where no byte
# may be lost. Needs root. Own uniquely named namespaces (stack, relay,
# peer), removed on exit even on failure; every step bounded in time.
# Ends with "relay summary: N passed, N failed".
#
# RELAY_BYTES (default 64 MiB) per echo; RELAY_IMPAIR overrides the
# impairments (default: 5 ± 2 ms delay, 10 % loss, 10 % reordering, 5 %
# duplication, 1 % corruption, each direction).
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "relay tests need root (CAP_NET_ADMIN, CAP_BPF)" >&2; exit 1; }

BIN=${XDPTCP_BIN:-target/release/xdptcp}
BENCH=${XDPTCP_BENCH_BIN:-target/release/xdptcp-bench}
BYTES=${RELAY_BYTES:-67108864}
IMPAIR=${RELAY_IMPAIR:---delay-ms 5 --jitter-ms 2 --loss 10 --reorder 10 --duplicate 5 --corrupt 1}
# Interface names stay within 15 characters: NAME is 11.
NAME="xr$(printf %05d $(( $$ % 100000 )))$(printf %04d $(( RANDOM % 10000 )))"
SNS="$NAME-s"; PNS="$NAME-p"; RNS="$NAME-r"; SDEV="${NAME}s0"
WORK=$(mktemp -d)
LABEL=relay; CHECK_TAIL=8
. scripts/harness.sh

scripts/netns.sh up --name "$NAME" --relay > /dev/null || { echo "netns setup failed"; exit 1; }

# The relay runs for the whole file; SIGINT makes it print its counters.
# shellcheck disable=SC2086
timeout 1800 ip netns exec "$RNS" "$BENCH" relay --a "${NAME}ra" --b "${NAME}rb" $IMPAIR > "$WORK/relay.log" 2>&1 &
RELAY_PID=$!
sleep 1

server_echo() {
    ip netns exec "$SNS" "$BIN" serve --iface "$SDEV" --ip 198.18.0.1/24 --port 7 --app echo --control "$WORK/ctl.sock" > "$WORK/server.log" 2>&1 &
    local server=$!
    for _ in $(seq 100); do grep -q serving "$WORK/server.log" 2>/dev/null && break; sleep 0.1; done
    local start=$SECONDS
    timeout 900 ip netns exec "$PNS" python3 tests/veth/peer.py echo "$BYTES"; local st=$?
    echo "    $(( SECONDS - start )) s"
    # Corrupted frames reached the stack and were caught by its checksums.
    "$BIN" stats --json --control "$WORK/ctl.sock" | python3 -c "
import json, sys
t = json.load(sys.stdin)['total']
print('    stack: segments_in', t['segments_in'], 'tcp_checksum_errors', t['tcp_checksum_errors'], 'ip_checksum_errors', t['ip_checksum_errors'])
assert t['tcp_checksum_errors'] + t['ip_checksum_errors'] > 0, 'no corrupted frame was caught'
" || st=1
    kill -INT "$server"; wait "$server" || st=1
    return "$st"
}
check "xdptcp server: $(( BYTES >> 20 )) MiB echo intact through loss, reordering, duplication, corruption and delay" server_echo

client_echo() {
    ip netns exec "$PNS" python3 tests/veth/kernel_echo.py 198.18.0.2 7000 > "$WORK/kernel_echo.log" 2>&1 &
    local kernel=$!
    sleep 0.5
    local start=$SECONDS
    timeout 960 ip netns exec "$SNS" "$BIN" connect --iface "$SDEV" --ip 198.18.0.1/24 --remote 198.18.0.2:7000 \
        --bytes "$BYTES" --conns 1 --timeout 900; local st=$?
    echo "    $(( SECONDS - start )) s"
    kill "$kernel" 2>/dev/null
    return "$st"
}
check "xdptcp client: $(( BYTES >> 20 )) MiB echoed intact by a kernel server through the same network" client_echo

relay_counted() {
    kill -INT "$RELAY_PID"; wait "$RELAY_PID"; local st=$?
    cat "$WORK/relay.log"
    [ "$st" = 0 ] || return 1
    # Each direction really was impaired.
    python3 - "$WORK/relay.log" <<'PY'
import re, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("relay ") and " in " in l]
assert len(lines) == 2, lines
for l in lines:
    c = dict((k, int(v)) for k, v in re.findall(r"(\w+) (\d+)", l.split(":", 1)[1]))
    for k in ("lost", "duplicated", "corrupted", "reordered"):
        assert c[k] > 0, (k, l)
    assert c["in"] + c["duplicated"] == c["out"] + c["lost"] + c["queue_drops"] + c["in_flight"], l
PY
}
check "the relay impaired both directions and accounted for every frame" relay_counted

# A slow kernel reader behind a relay that loses only pure ACKs (30 %):
# the reader stops for 10 s, its window closes, and the window updates
# that reopen it may be lost. The sender must probe its way back
# (RFC 1122 §4.2.2.17, §4.2.3.4) and the transfer complete.
PAUSE_BYTES=${RELAY_PAUSE_BYTES:-16777216}
paused_reader() {
    # The first relay is done by now (relay_counted), unless ONLY skipped it.
    kill -INT "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null
    timeout 600 ip netns exec "$RNS" "$BENCH" relay --a "${NAME}ra" --b "${NAME}rb" --delay-ms 1 --ack-loss 30 > "$WORK/relay-acks.log" 2>&1 &
    local relay=$!
    sleep 1
    ip netns exec "$PNS" python3 tests/veth/kernel_echo.py 198.18.0.2 7001 --rcvbuf 65536 --pause-after 1048576 --pause 10 > "$WORK/kernel_pause.log" 2>&1 &
    local kernel=$!
    sleep 0.5
    local start=$SECONDS st=0
    timeout 300 ip netns exec "$SNS" "$BIN" connect --iface "$SDEV" --ip 198.18.0.1/24 --remote 198.18.0.2:7001 \
        --bytes "$PAUSE_BYTES" --conns 1 --timeout 240 || st=1
    local took=$(( SECONDS - start ))
    echo "    $took s"
    kill "$kernel" 2>/dev/null; wait "$kernel" 2>/dev/null
    cat "$WORK/kernel_pause.log"
    grep -q "^resumed" "$WORK/kernel_pause.log" || { echo "    the reader never paused and resumed"; st=1; }
    [ "$took" -ge 10 ] || { echo "    finished in $took s: the pause did not hold the transfer"; st=1; }
    kill -INT "$relay"; wait "$relay" || st=1
    cat "$WORK/relay-acks.log"
    python3 - "$WORK/relay-acks.log" <<'PY' || st=1
import re, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("relay ") and " in " in l]
assert len(lines) == 2, lines
for l in lines:
    c = dict((k, int(v)) for k, v in re.findall(r"(\w+) (\d+)", l.split(":", 1)[1]))
    assert c["acks_lost"] > 0 and c["acks_lost"] == c["lost"], ("only pure ACKs were lost", l)
    assert c["in"] + c["duplicated"] == c["out"] + c["lost"] + c["queue_drops"] + c["in_flight"], l
PY
    return "$st"
}
check "xdptcp client: $(( PAUSE_BYTES >> 20 )) MiB echoed by a kernel reader that stops for 10 s, through 30 % loss of pure ACKs" paused_reader

echo "relay summary: $passed passed, $failed failed"
[ "$failed" = 0 ]
