#!/usr/bin/env bash
# The standard test topology: two network namespaces joined by a veth pair.
#
#   stack ns  <NAME>-s : veth <NAME>s0, no kernel address (xdptcp owns 198.18.0.1)
#   peer ns   <NAME>-p : veth <NAME>p0, 198.18.0.2/24, tx checksum offload off
#
# With --relay, the pair is cut in two by a third namespace for the
# impairment relay (`xdptcp-bench relay --a <NAME>ra --b <NAME>rb`), which
# forwards every frame between its two interfaces; one queue throughout:
#
#   <NAME>s0 ── <NAME>ra  [relay ns <NAME>-r]  <NAME>rb ── <NAME>p0
#
# `down` kills whatever still runs in the namespaces, then removes them.
# Usage: scripts/netns.sh up|down [--name NAME] [--queues N] [--mtu M] [--relay]
# NAME defaults to "xt$$"-style unique names when not given; it is printed.
set -euo pipefail

cmd=${1:-}; shift || true
name="xt$RANDOM"; queues=1; mtu=1500; relay=0
while [ $# -gt 0 ]; do
    case "$1" in
        --name) name=$2; shift 2 ;;
        --queues) queues=$2; shift 2 ;;
        --mtu) mtu=$2; shift 2 ;;
        --relay) relay=1; shift ;;
        *) echo "usage: $0 up|down [--name NAME] [--queues N] [--mtu M] [--relay]" >&2; exit 2 ;;
    esac
done
sns="$name-s"; pns="$name-p"; rns="$name-r"; sdev="${name}s0"; pdev="${name}p0"; rdev_a="${name}ra"; rdev_b="${name}rb"

case "$cmd" in
    up)
        ip netns add "$sns"
        ip netns add "$pns"
        if [ "$relay" = 1 ]; then
            # The relay serves queue 0 of its interfaces, so one queue each.
            ip netns add "$rns"
            ip link add "$sdev" type veth peer name "$rdev_a"
            ip link add "$rdev_b" type veth peer name "$pdev"
            ip link set "$rdev_a" netns "$rns"
            ip link set "$rdev_b" netns "$rns"
            ip -n "$rns" link set lo up
            for d in "$rdev_a" "$rdev_b"; do
                ip -n "$rns" link set "$d" mtu "$mtu" up
            done
        else
            ip link add "$sdev" numrxqueues "$queues" numtxqueues "$queues" type veth \
                peer name "$pdev" numrxqueues "$queues" numtxqueues "$queues"
        fi
        ip link set "$sdev" netns "$sns"
        ip link set "$pdev" netns "$pns"
        ip -n "$sns" link set lo up
        ip -n "$pns" link set lo up
        ip -n "$sns" link set "$sdev" mtu "$mtu" up
        ip -n "$pns" link set "$pdev" mtu "$mtu" up
        ip -n "$pns" addr add 198.18.0.2/24 dev "$pdev"
        # The peer kernel must send full checksums and MTU-sized frames
        # (see shared/ENVIRONMENT.md): turn off its TX checksum offload.
        ip netns exec "$pns" ethtool -K "$pdev" tx off >/dev/null
        echo -n "NAME=$name STACK_NS=$sns PEER_NS=$pns STACK_DEV=$sdev PEER_DEV=$pdev STACK_IP=198.18.0.1 PEER_IP=198.18.0.2"
        if [ "$relay" = 1 ]; then echo " RELAY_NS=$rns RELAY_A=$rdev_a RELAY_B=$rdev_b"; else echo; fi
        ;;
    down)
        # Every process left in the namespaces goes with them.
        for ns in "$sns" "$pns" "$rns"; do
            ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        done
        ip netns del "$sns" 2>/dev/null || true
        ip netns del "$pns" 2>/dev/null || true
        ip netns del "$rns" 2>/dev/null || true
        ;;
    *)
        echo "usage: $0 up|down [--name NAME] [--queues N] [--mtu M]" >&2
        exit 2
        ;;
esac
