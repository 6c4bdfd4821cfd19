#!/usr/bin/env bash
# Prepares a NIC for `xdptcp serve`: one channel (RX queue) per worker core,
# each queue's IRQ pinned to its worker's core, the kernel's preferred
# busy-poll knobs, and optionally ntuple rules steering our ports to our
# queues. Every change is printed as `old → new`, and the old values go to a
# state file so that --undo puts them back. --dry-run prints the plan and
# changes nothing.
#
# Usage:
#   scripts/nic-setup.sh IFACE --queues N --cores LIST [--flow-rules PORT:QUEUE[,...] [--flow-ip ADDR]]
#                        [--defer-hard-irqs N] [--gro-flush-timeout NS] [--busy-poll USECS]
#                        [--state FILE] [--dry-run]
#   scripts/nic-setup.sh IFACE --undo [--state FILE] [--dry-run]
#
#   --cores LIST          worker cores, one per queue in order: 2,3,4,5 or 2-5
#   --flow-rules P:Q,...  `ethtool -N IFACE flow-type tcp4 [dst-ip ADDR] dst-port P action Q`
#   --defer-hard-irqs N   /sys/class/net/IFACE/napi_defer_hard_irqs (default 2)
#   --gro-flush-timeout NS  /sys/class/net/IFACE/gro_flush_timeout (default 200000)
#   --busy-poll USECS     sysctl net.core.busy_poll and busy_read (default 50);
#                         global settings, absent inside a network namespace
#   --state FILE          default /run/xdptcp-nic-setup/IFACE.state
#
# Exit status: 0 if everything asked for was (or, with --dry-run, could be)
# done, 1 if a step was refused or impossible, 2 on bad arguments.
set -uo pipefail

usage() { sed -n '/^# Usage:/,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 1 ] || usage
IFACE=$1; shift
case "$IFACE" in -*) usage ;; esac
queues=""; cores=""; rules=""; flow_ip=""; defer=2; gro=200000; busy=50
state=""; dry=0; undo=0
while [ $# -gt 0 ]; do
    case "$1" in
        --queues) queues=${2:?}; shift 2 ;;
        --cores) cores=${2:?}; shift 2 ;;
        --flow-rules) rules=${2:?}; shift 2 ;;
        --flow-ip) flow_ip=${2:?}; shift 2 ;;
        --defer-hard-irqs) defer=${2:?}; shift 2 ;;
        --gro-flush-timeout) gro=${2:?}; shift 2 ;;
        --busy-poll) busy=${2:?}; shift 2 ;;
        --state) state=${2:?}; shift 2 ;;
        --dry-run) dry=1; shift ;;
        --undo) undo=1; shift ;;
        -h|--help) usage ;;
        *) echo "unknown argument $1" >&2; usage ;;
    esac
done
state=${state:-/run/xdptcp-nic-setup/$IFACE.state}
SYS=/sys/class/net/$IFACE
[ -d "$SYS" ] || { echo "interface $IFACE not found (in this network namespace)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || [ "$dry" = 1 ] || { echo "needs root (ethtool -L, /proc/irq, sysfs, sysctl)" >&2; exit 1; }

prefix=""; [ "$dry" = 1 ] && prefix="[dry-run] "
say() { echo "${prefix}$*"; }
status=0
fail() { echo "${prefix}FAILED: $*" >&2; status=1; }

# change KIND KEY OLD NEW DESCRIPTION COMMAND...: prints `DESCRIPTION: OLD → NEW`
# and, unless dry, runs COMMAND and records KIND KEY OLD for --undo.
change() {
    local kind=$1 key=$2 old=$3 new=$4 desc=$5; shift 5
    if [ "$old" = "$new" ]; then say "$desc: $old (unchanged)"; return 0; fi
    say "$desc: $old → $new"
    [ "$dry" = 1 ] && return 0
    if "$@"; then
        printf '%s\t%s\t%s\n' "$kind" "$key" "$old" >> "$state"
    else
        fail "$desc: $*"
        return 1
    fi
}
write_file() { echo "$2" > "$1"; }

# `ethtool -l` value of FIELD in the SECTION ("Pre-set maximums" or "Current
# hardware settings"); n/a and missing read as 0.
channel() {
    ethtool -l "$IFACE" 2>/dev/null | awk -v sec="$1" -v f="$2:" '
        /^Pre-set maximums:/ { s = "Pre-set maximums" } /^Current hardware settings:/ { s = "Current hardware settings" }
        s == sec && $1 == f { v = $2 } END { print (v ~ /^[0-9]+$/) ? v : 0 }'
}

# --- undo -------------------------------------------------------------------
if [ "$undo" = 1 ]; then
    [ -f "$state" ] || { echo "no state file $state: nothing to undo" >&2; exit 1; }
    head -n 2 "$state" | grep -q "^iface	$IFACE$" || { echo "$state is not for $IFACE" >&2; exit 1; }
    # Newest first: rules before the ntuple feature, channels last.
    tac "$state" | while IFS=$'\t' read -r kind key old; do
        case "$kind" in
            channels)
                if [ "$key" = combined ]; then
                    say "channels (combined): $(channel "Current hardware settings" Combined) → $old"
                    [ "$dry" = 1 ] || ethtool -L "$IFACE" combined "$old" || fail "ethtool -L $IFACE combined $old"
                else
                    IFS=/ read -r rx tx <<< "$old"
                    say "channels (rx/tx): $(channel "Current hardware settings" RX)/$(channel "Current hardware settings" TX) → $rx/$tx"
                    [ "$dry" = 1 ] || ethtool -L "$IFACE" rx "$rx" tx "$tx" || fail "ethtool -L $IFACE rx $rx tx $tx"
                fi ;;
            irq)
                say "IRQ $key affinity: $(cat "/proc/irq/$key/smp_affinity_list" 2>/dev/null) → $old"
                [ "$dry" = 1 ] || write_file "/proc/irq/$key/smp_affinity_list" "$old" || fail "IRQ $key affinity" ;;
            sysfs)
                say "$(basename "$key"): $(cat "$key") → $old"
                [ "$dry" = 1 ] || write_file "$key" "$old" || fail "$key" ;;
            sysctl)
                say "$key: $(sysctl -n "$key") → $old"
                [ "$dry" = 1 ] || sysctl -qw "$key=$old" || fail "sysctl $key" ;;
            feature)
                say "$key: $(ethtool -k "$IFACE" 2>/dev/null | awk -F': ' '/^ntuple-filters:/ {print $2}') → $old"
                [ "$dry" = 1 ] || ethtool -K "$IFACE" "$key" "$old" || fail "ethtool -K $IFACE $key $old" ;;
            rule)
                say "flow rule $key ($old): delete"
                [ "$dry" = 1 ] || ethtool -N "$IFACE" delete "$key" || fail "ethtool -N $IFACE delete $key" ;;
            iface|'#'*) ;;
            *) fail "unknown state line: $kind $key $old" ;;
        esac
        [ "$status" = 0 ] || exit 1
    done
    status=$?
    if [ "$status" = 0 ] && [ "$dry" = 0 ]; then rm -f "$state"; say "undone; removed $state"; fi
    exit "$status"
fi

# --- setup ------------------------------------------------------------------
[ -n "$queues" ] && [ -n "$cores" ] || usage
[[ "$queues" =~ ^[1-9][0-9]*$ ]] || { echo "--queues: a positive number" >&2; exit 2; }
core_list=()
IFS=, read -ra parts <<< "$cores"
for p in "${parts[@]}"; do
    if [[ "$p" =~ ^([0-9]+)-([0-9]+)$ ]]; then
        for ((c = BASH_REMATCH[1]; c <= BASH_REMATCH[2]; c++)); do core_list+=("$c"); done
    elif [[ "$p" =~ ^[0-9]+$ ]]; then core_list+=("$p")
    else echo "--cores: bad entry '$p' (want e.g. 2,3 or 2-5)" >&2; exit 2; fi
done
[ "${#core_list[@]}" -ge "$queues" ] || { echo "--cores names ${#core_list[@]} core(s) for $queues queues" >&2; exit 2; }
ncpu=$(nproc --all)
for c in "${core_list[@]:0:$queues}"; do [ "$c" -lt "$ncpu" ] || { echo "--cores: core $c does not exist ($ncpu cores)" >&2; exit 2; }; done
if [ -f "$state" ] && [ "$dry" = 0 ]; then
    echo "$state exists: $IFACE was set up before and not undone; run with --undo first" >&2; exit 1
fi
if [ "$dry" = 0 ]; then
    mkdir -p "$(dirname "$state")"
    printf 'iface\t%s\n# nic-setup.sh state, %s: KIND KEY OLD-VALUE, undone newest first\n' "$IFACE" "$(date -u +%FT%TZ)" > "$state"
fi
say "$IFACE ($(ethtool -i "$IFACE" 2>/dev/null | awk '/^driver:/ {print $2}')): $queues queue(s) on core(s) ${core_list[*]:0:$queues}; state in $state"

# Channels first: changing them may re-create the queues' IRQs.
if [ "$(channel "Pre-set maximums" Combined)" -gt 0 ]; then
    max=$(channel "Pre-set maximums" Combined); cur=$(channel "Current hardware settings" Combined)
    if [ "$queues" -gt "$max" ]; then fail "$IFACE has at most $max combined channels, --queues $queues"
    else change channels combined "$cur" "$queues" "channels (combined)" ethtool -L "$IFACE" combined "$queues"; fi
elif [ "$(channel "Pre-set maximums" RX)" -gt 0 ]; then
    # Separate RX and TX channels (veth, some virtual NICs).
    max=$(channel "Pre-set maximums" RX)
    cur="$(channel "Current hardware settings" RX)/$(channel "Current hardware settings" TX)"
    if [ "$queues" -gt "$max" ]; then fail "$IFACE has at most $max RX channels, --queues $queues"
    else change channels rxtx "$cur" "$queues/$queues" "channels (rx/tx)" ethtool -L "$IFACE" rx "$queues" tx "$queues"; fi
else
    say "channels: ethtool -l $IFACE reports none; skipped"
fi

# IRQs: by the names drivers give them in /proc/interrupts: IFACE-TxRx-Q
# (ixgbe, i40e, ice as DRIVER-IFACE-TxRx-Q), IFACE-Q, IFACE-rx-Q/-tx-Q,
# and virtio-net's virtioN-input.Q / virtioN-output.Q.
irqs_of_queue() { # queue → "IRQ NAME" lines
    local q=$1 virtio=""
    [ -e "$SYS/device" ] && virtio=$(basename "$(readlink -f "$SYS/device")")
    [[ "$virtio" == virtio* ]] || virtio="-"
    awk -v ifc="$IFACE" -v q="$q" -v vio="$virtio" '
        $1 ~ /^[0-9]+:$/ {
            name = $NF; irq = substr($1, 1, length($1) - 1)
            if (name ~ ("(^|-)" ifc "-((TxRx|txrx|rx|tx|combined|fp)-)?" q "$") ||
                name == vio "-input." q || name == vio "-output." q)
                print irq, name
        }' /proc/interrupts
}
if [ ! -e "$SYS/device" ]; then
    say "IRQ pinning: skipped: $IFACE is a virtual device (no $SYS/device) and has no IRQs"
else
    pgrep -x irqbalance > /dev/null && say "note: irqbalance is running and may move these IRQs again; stop it, or ban them with IRQBALANCE_BANNED_CPULIST"
    for ((q = 0; q < queues; q++)); do
        found=0
        while read -r irq name; do
            [ -n "$irq" ] || continue
            found=1
            change irq "$irq" "$(cat "/proc/irq/$irq/smp_affinity_list")" "${core_list[$q]}" "IRQ $irq ($name) affinity, queue $q" \
                write_file "/proc/irq/$irq/smp_affinity_list" "${core_list[$q]}"
        done <<< "$(irqs_of_queue "$q")"
        [ "$found" = 1 ] || say "IRQ pinning, queue $q: skipped: no IRQ named after $IFACE queue $q in /proc/interrupts (mlx5 names them mlx5_compN@pci:...; pin those by hand)"
    done
fi

# Preferred busy polling: with SO_PREFER_BUSY_POLL on the sockets, the
# device defers its interrupts while the application polls.
for knob in "napi_defer_hard_irqs $defer" "gro_flush_timeout $gro"; do
    read -r f v <<< "$knob"
    if [ -w "$SYS/$f" ]; then change sysfs "$SYS/$f" "$(cat "$SYS/$f")" "$v" "$f" write_file "$SYS/$f" "$v"
    else say "$f: skipped: $SYS/$f not writable on this kernel"; fi
done
for k in net.core.busy_poll net.core.busy_read; do
    f=/proc/sys/${k//.//}
    if [ -e "$f" ]; then change sysctl "$k" "$(cat "$f")" "$busy" "$k" sysctl -qw "$k=$busy"
    else say "$k: skipped: not in this network namespace (a global setting: run from the initial namespace)"; fi
done

# ntuple rules: our ports to our queues.
if [ -n "$rules" ]; then
    nt=$(ethtool -k "$IFACE" 2>/dev/null | awk -F': ' '/^ntuple-filters:/ {print $2}')
    if [[ "$nt" == *fixed* ]] && [[ "$nt" != on* ]]; then
        fail "flow rules: $IFACE cannot do ntuple filters (ntuple-filters: $nt); rules $rules not added"
    else
        [[ "$nt" == on* ]] || change feature ntuple off on "ntuple-filters" ethtool -K "$IFACE" ntuple on
        IFS=, read -ra rl <<< "$rules"
        for r in "${rl[@]}"; do
            [[ "$r" =~ ^([0-9]+):([0-9]+)$ ]] || { fail "--flow-rules: bad rule '$r' (want PORT:QUEUE)"; continue; }
            port=${BASH_REMATCH[1]}; rq=${BASH_REMATCH[2]}
            [ "$rq" -lt "$queues" ] || { fail "--flow-rules $r: queue $rq is not one of the $queues served"; continue; }
            spec=(flow-type tcp4 ${flow_ip:+dst-ip "$flow_ip"} dst-port "$port" action "$rq")
            say "flow rule: ethtool -N $IFACE ${spec[*]}: none → added"
            [ "$dry" = 1 ] && continue
            if out=$(ethtool -N "$IFACE" "${spec[@]}" 2>&1); then
                id=$(grep -o 'ID [0-9]*' <<< "$out" | grep -o '[0-9]*$')
                if [ -n "$id" ]; then printf 'rule\t%s\t%s\n' "$id" "${spec[*]}" >> "$state"; say "  rule id $id"
                else fail "flow rule added but its id is unknown ($out); delete it by hand (ethtool -n $IFACE)"; fi
            else fail "ethtool -N $IFACE ${spec[*]}: $out"; fi
        done
    fi
fi

if [ "$dry" = 1 ]; then say "nothing changed"; else say "done; undo with: $0 $IFACE --undo --state $state"; fi
exit "$status"
