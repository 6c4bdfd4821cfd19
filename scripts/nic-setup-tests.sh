#!/usr/bin/env bash
# scripts/nic-setup.sh on a veth pair in namespaces of its own (removed on
# exit, even on failure): the --dry-run plan (channels, busy-poll knobs, IRQ
# pinning skipped for a device without IRQs, flow rules refused without
# ntuple support) changes nothing; a real run changes what it printed, and
# --undo (dry, then real) restores the values. Needs root. Ends with
# "nic-setup summary: N passed, N failed"; exit 0 only if all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "nic-setup tests need root" >&2; exit 1; }

NAME="xn$$$RANDOM"
NS="$NAME-s"; DEV="${NAME}s0"
WORK=$(mktemp -d)
STATE="$WORK/state"
LABEL=nic-setup
. scripts/harness.sh

in_ns() { timeout 30 ip netns exec "$NS" "$@"; }
setup() { in_ns scripts/nic-setup.sh "$DEV" --state "$STATE" "$@"; }
# The device's settings nic-setup.sh may touch, one line each.
snapshot() {
    in_ns ethtool -l "$DEV" | sed -n '/Current/,$p' | tr -s '\t' ' '
    for f in napi_defer_hard_irqs gro_flush_timeout; do echo "$f $(in_ns cat "/sys/class/net/$DEV/$f")"; done
    in_ns ethtool -k "$DEV" | grep ntuple
}
# Fails with the output shown unless every pattern is in it.
expect() { # file patterns...
    local f=$1 miss=0; shift
    for p in "$@"; do grep -qF -- "$p" "$f" || { echo "    missing: $p"; miss=1; }; done
    [ "$miss" = 0 ] || sed 's/^/    | /' "$f"
    return "$miss"
}

scripts/netns.sh up --name "$NAME" --queues 4 > /dev/null || { echo "netns setup failed"; exit 1; }

snapshot > "$WORK/before"
setup --queues 2 --cores 0,1 --dry-run > "$WORK/plan" 2>&1; st=$?
snapshot > "$WORK/after"
expect "$WORK/plan" \
    "[dry-run] channels (rx/tx): 4/4 → 2/2" \
    "[dry-run] IRQ pinning: skipped: $DEV is a virtual device" \
    "[dry-run] napi_defer_hard_irqs: 0 → 2" \
    "[dry-run] gro_flush_timeout: 0 → 200000" \
    "[dry-run] net.core.busy_poll: skipped: not in this network namespace" \
    "[dry-run] net.core.busy_read: skipped: not in this network namespace" \
    "[dry-run] nothing changed"
ok=$?
diff "$WORK/before" "$WORK/after" || { echo "    the dry run changed the device"; ok=1; }
[ -e "$STATE" ] && { echo "    the dry run wrote a state file"; ok=1; }
[ "$st" = 0 ] && [ "$ok" = 0 ]; result "--dry-run prints channels, busy-poll knobs, IRQ pinning skipped on veth; changes nothing" $?

setup --queues 2 --cores 0,1 --flow-rules 7:1 --dry-run > "$WORK/plan" 2>&1; st=$?
snapshot > "$WORK/after"
expect "$WORK/plan" "cannot do ntuple filters (ntuple-filters: off [fixed]); rules 7:1 not added" && [ "$st" = 1 ] \
    && diff -q "$WORK/before" "$WORK/after" > /dev/null && [ ! -e "$STATE" ]
result "--flow-rules on veth (no ntuple): refused in the plan, exit 1, nothing changed" $?

setup --queues 2 --cores 0,9999 --dry-run > "$WORK/plan" 2>&1; st=$?
expect "$WORK/plan" "core 9999 does not exist" && [ "$st" = 2 ]
result "a core that does not exist is refused" $?

setup --queues 2 --cores 0,1 > "$WORK/run" 2>&1; st=$?
snapshot > "$WORK/set"
expect "$WORK/run" "channels (rx/tx): 4/4 → 2/2" "napi_defer_hard_irqs: 0 → 2" "gro_flush_timeout: 0 → 200000" \
    && expect "$WORK/set" "RX: 2" "TX: 2" "napi_defer_hard_irqs 2" "gro_flush_timeout 200000" && [ "$st" = 0 ] && [ -s "$STATE" ]
result "a real run sets channels 2/2, napi_defer_hard_irqs 2, gro_flush_timeout 200000 and saves the old values" $?

setup --queues 2 --cores 0,1 > "$WORK/again" 2>&1; st=$?
expect "$WORK/again" "run with --undo first" && [ "$st" = 1 ]
result "a second run before --undo is refused (the saved old values stay)" $?

setup --undo --dry-run > "$WORK/undo" 2>&1; st=$?
snapshot > "$WORK/after"
expect "$WORK/undo" "[dry-run] channels (rx/tx): 2/2 → 4/4" "[dry-run] napi_defer_hard_irqs: 2 → 0" "[dry-run] gro_flush_timeout: 200000 → 0" \
    && diff -q "$WORK/set" "$WORK/after" > /dev/null && [ -s "$STATE" ] && [ "$st" = 0 ]
result "--undo --dry-run prints the reverts and changes nothing" $?

setup --undo > "$WORK/undo" 2>&1; st=$?
snapshot > "$WORK/after"
cat "$WORK/undo" | sed 's/^/    /'
diff "$WORK/before" "$WORK/after" && [ "$st" = 0 ] && [ ! -e "$STATE" ]
result "--undo restores channels and both knobs and removes the state file" $?

echo "nic-setup summary: $passed passed, $failed failed"
[ "$failed" = 0 ]
