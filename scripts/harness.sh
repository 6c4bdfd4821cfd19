#!/usr/bin/env bash
# Sourced by the root test scripts (veth, relay, jumbo, nic-setup): the
# namespaces' cleanup on exit, PASS/FAIL bookkeeping, and starting and
# stopping `xdptcp serve` in the stack namespace.
#
# Before sourcing, set LABEL (the prefix of every result line), NAME (the
# namespaces' name, for `scripts/netns.sh down`) and WORK (a scratch
# directory, removed on exit). The server helpers also need BIN, SNS, SDEV.
# Optional: a function cleanup_extra, run on exit too; CHECK_TAIL (lines of a check's output shown, default 6) and
# ONLY (a regex: `check` runs only the checks whose names match; starting
# and stopping servers between them still happens).

passed=0; failed=0
SERVER_PID=""

harness_cleanup() {
    scripts/netns.sh down --name "$NAME"
    # A script's own undo (e.g. a reservation it made), if it has one.
    if declare -F cleanup_extra > /dev/null; then cleanup_extra; fi
    rm -rf "$WORK"
}
trap harness_cleanup EXIT

result() { # name status
    if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "$LABEL: PASS $1"; else failed=$((failed + 1)); echo "$LABEL: FAIL $1"; fi
}

check() { # name command...
    local name=$1; shift
    if [ -n "${ONLY:-}" ] && ! [[ "$name" =~ $ONLY ]]; then
        case "$1" in start_server|stop_server) "$@" > /dev/null 2>&1 ;; esac
        return 0
    fi
    # In this shell, not a subshell: start/stop_server keep SERVER_PID.
    "$@" > "$WORK/step.out" 2>&1; local st=$?
    sed 's/^/    /' "$WORK/step.out" | tail -n "${CHECK_TAIL:-6}"
    result "$name" "$st"
}

start_server() { # serve args... → 0 once it serves (SERVER_PID set)
    # Not the previous server's "serving": waiting on that would return
    # before this one has its signal handlers (a SIGINT then is ignored, as
    # by any background job, and stop_server would wait in vain).
    rm -f "$WORK/server.log"
    ip netns exec "$SNS" "$BIN" serve --iface "$SDEV" --ip 198.18.0.1/24 "$@" > "$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q "serving" "$WORK/server.log" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    # The verifier's log, if the program was refused, is left out.
    echo "server did not start:"; grep -v '^[0-9]*: \|^;' "$WORK/server.log" | tail -n 20
    return 1
}

stop_server() { # → 0 if it exited 0 and left no XDP program attached
    [ -n "$SERVER_PID" ] || { echo "no server running"; return 1; }
    kill -INT "$SERVER_PID"
    # The worker notices within its longest poll sleep; give it 10 s.
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && { echo "still running 10 s after SIGINT"; kill -KILL "$SERVER_PID"; }
    wait "$SERVER_PID"; local st=$?
    SERVER_PID=""
    if [ "$st" != 0 ]; then echo "exit status $st"; tail -n 20 "$WORK/server.log"; return 1; fi
    if ip -n "$SNS" -d link show "$SDEV" | grep -q "prog/xdp"; then echo "XDP program still attached"; return 1; fi
    return 0
}
