#!/usr/bin/env bash
# Jumbo frames: xdptcp on a veth pair at MTU 9000, where a full frame (9014
# bytes) spans several UMEM frames (multi-buffer AF_XDP, XDP_USE_SG, an
# XDP program built for frags). Against the kernel's TCP as the peer, and
# xdptcp against itself; checks that segments really are jumbo-sized, on
# the wire (a capture on the peer) and in xdptcp's counters. Needs root.
# Uniquely named namespaces, removed on exit (even on failure); every step
# is bounded in time. Ends with "jumbo summary: N passed, N failed".
#
# Usage: scripts/jumbo-tests.sh   (JUMBO_BYTES: the long echoes, 64 MiB)
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "jumbo tests need root (CAP_NET_ADMIN, CAP_BPF)" >&2; exit 1; }

BIN=${XDPTCP_BIN:-target/release/xdptcp}
BYTES=${JUMBO_BYTES:-67108864}
MTU=9000
NAME="xj$$$RANDOM"
SNS="$NAME-s"; PNS="$NAME-p"; SDEV="${NAME}s0"; PDEV="${NAME}p0"
WORK=$(mktemp -d)
LABEL=jumbo
. scripts/harness.sh

peer() { timeout 120 ip netns exec "$PNS" "$@"; }

# An echo server on port 7.
start_echo() { start_server --port 7 --app echo --control "$WORK/ctl.sock" "$@"; }

# One field of `xdptcp stats --json`'s total.
stat() { "$BIN" stats --json --control "$WORK/ctl.sock" | python3 -c "import json, sys; print(json.load(sys.stdin)['total']['$1'])"; }

# Two queues: native mode, which per-queue steering needs (ENVIRONMENT.md).
scripts/netns.sh up --name "$NAME" --queues 2 --mtu $MTU > /dev/null || { echo "netns setup failed"; exit 1; }

topology() {
    ip -n "$SNS" link show "$SDEV" | grep -o "mtu $MTU" || return 1
    ip -n "$PNS" link show "$PDEV" | grep -o "mtu $MTU" || return 1
    # The peer sends full checksums, so no frame is larger than the MTU.
    ip netns exec "$PNS" ethtool -k "$PDEV" | grep "^tx-checksumming: off" || return 1
}
check "both ends at MTU $MTU, peer TX checksum offload off" topology

# --- native mode, two queues: the kernel as the peer ----------------------
started() {
    start_echo --xdp-mode native || return 1
    grep -o "multi-buffer AF_XDP (XDP_USE_SG).*" "$WORK/server.log" && grep -o "XDP program attached.*" "$WORK/server.log"
}
check "serve starts at MTU $MTU in native mode, multi-buffer" started

kernel_echo() {
    peer python3 tests/veth/peer.py echo "$BYTES" || return 1
    local f; for f in xsk_rx_chains xsk_tx_chains xsk_rx_largest_frame xsk_tx_largest_frame xsk_rx_chains_dropped retransmits umem_frames_ok; do
        echo "$f: $(stat $f)"
    done
    [ "$(stat umem_frames_ok)" = True ] && [ "$(stat xsk_rx_chains_dropped)" = 0 ]
}
check "kernel peer: $BYTES-byte echo verified by hash" kernel_echo

# Counted by xdptcp: both ways full 9014-byte frames, as chains of UMEM frames.
jumbo_counters() {
    local rx tx rc tc
    rx=$(stat xsk_rx_largest_frame); tx=$(stat xsk_tx_largest_frame)
    rc=$(stat xsk_rx_chains); tc=$(stat xsk_tx_chains)
    echo "largest frame received $rx B, sent $tx B; chains received $rc, sent $tc"
    # The echo alone takes BYTES / 8948 full segments each way; half of
    # that at least must have come as chains.
    local least=$((BYTES / (MTU - 52) / 2))
    [ "$rx" = $((MTU + 14)) ] && [ "$tx" = $((MTU + 14)) ] && [ "$rc" -gt "$least" ] && [ "$tc" -gt "$least" ]
}
check "xdptcp's counters: $((MTU + 14))-byte frames both ways, as chains" jumbo_counters

# Seen by the peer's kernel: the SYN-ACK offers MSS MTU − 40, and the data
# xdptcp sends comes in frames far above 1514 bytes.
on_the_wire() {
    # -Z root: tcpdump would drop to its own user, who cannot write in $WORK.
    # --immediate-mode -U: packets still in the capture buffer at SIGINT
    # are otherwise lost ("0 packets captured, 479 received by filter").
    ip netns exec "$PNS" timeout 30 tcpdump -Z root --immediate-mode -U -i "$PDEV" -nn -s 200 -w "$WORK/peer.pcap" "src host 198.18.0.1 and tcp" > "$WORK/tcpdump.log" 2>&1 &
    local cap=$!
    for _ in $(seq 50); do grep -q "listening on" "$WORK/tcpdump.log" && break; sleep 0.1; done
    sleep 0.2
    peer python3 tests/veth/peer.py echo 4194304; local st=$?
    sleep 0.5
    kill -INT "$cap"; wait "$cap"
    [ "$st" = 0 ] || return 1
    local synack big all
    synack=$(tcpdump -r "$WORK/peer.pcap" -nn -v 'tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)' 2>/dev/null | grep -o "mss [0-9]*" | head -1)
    big=$(tcpdump -r "$WORK/peer.pcap" -nn "greater $((MTU + 14))" 2>/dev/null | wc -l)
    all=$(tcpdump -r "$WORK/peer.pcap" -nn "greater 1515" 2>/dev/null | wc -l)
    echo "SYN-ACK: $synack; frames over 1514 B: $all, of them $((MTU + 14)) B: $big"
    cat "$WORK/tcpdump.log"
    # 4 MiB take 469 full segments: at least half of them must be full-size frames.
    [ "$synack" = "mss $((MTU - 40))" ] && [ "$big" -gt $((4194304 / (MTU - 52) / 2)) ]
}
check "on the wire: SYN-ACK MSS $((MTU - 40)), data in $((MTU + 14))-byte frames (peer capture)" on_the_wire

ping_jumbo() { peer ping -c 3 -i 0.2 -W 2 -s 8972 -M do 198.18.0.1; }
check "ping of 9000-byte packets, don't fragment (ICMP chains both ways)" ping_jumbo

# --- xdptcp against xdptcp -------------------------------------------------
xdptcp_client() {
    timeout 120 ip netns exec "$PNS" "$BIN" connect --iface "$PDEV" --ip 198.18.0.100/24 --remote 198.18.0.1:7 \
        --bytes "$BYTES" --xdp-mode native --timeout 100 > "$WORK/client.log" 2>&1
    local st=$?
    grep -E "largest frame|connections echoed" "$WORK/client.log"
    [ "$st" = 0 ] && grep -q "largest frame received $((MTU + 14)) B, sent $((MTU + 14)) B" "$WORK/client.log"
}
check "xdptcp↔xdptcp: $BYTES-byte echo verified, $((MTU + 14))-byte frames both ways" xdptcp_client
check "serve exits cleanly, program detached" stop_server

# --- the MSS follows --mtu ---------------------------------------------------
mtu_flag() {
    start_echo --xdp-mode native --mtu 1500 || return 1
    peer python3 tests/veth/peer.py echo 8388608 || { stop_server; return 1; }
    local tx; tx=$(stat xsk_tx_largest_frame)
    echo "--mtu 1500 on an MTU $MTU link: largest frame sent $tx B"
    stop_server || return 1
    [ "$tx" -le 1514 ] && [ "$tx" -gt 1000 ]
}
check "--mtu 1500 on the jumbo link: MSS 1460, frames of at most 1514 B, echo verified" mtu_flag

# --- generic (SKB) mode --------------------------------------------------------
generic() {
    # Generic mode puts every frame on queue 0 (ENVIRONMENT.md): serve that one.
    start_echo --xdp-mode generic --queues 1 || return 1
    peer python3 tests/veth/peer.py echo 16777216 || { stop_server; return 1; }
    local rx; rx=$(stat xsk_rx_largest_frame)
    echo "generic mode: largest frame received $rx B"
    stop_server || return 1
    [ "$rx" = $((MTU + 14)) ]
}
check "generic mode: 16 MiB echo verified with $((MTU + 14))-byte frames" generic

# --- the longest chain --------------------------------------------------------
# Above MTU 1778 the UMEM frames are 4096 bytes (3840 of packet data), and
# a chain is at most 17 frames (the kernel's MAX_SKB_FRAGS): MTU 65266 is
# the largest served, its frames (65280 bytes) exactly 17 frames long; one
# byte more is refused at start.
LONGEST=$((17 * 3840 - 14))
link_mtu() {
    ip -n "$SNS" link set "$SDEV" mtu "$1" && ip -n "$PNS" link set "$PDEV" mtu "$1"
}
longest_chain() {
    link_mtu $LONGEST || return 1
    start_echo --xdp-mode native || return 1
    peer ping -c 3 -i 0.2 -W 2 -s $((LONGEST - 28)) -M do 198.18.0.1 | tail -2
    peer python3 tests/veth/peer.py echo 8388608 || { stop_server; return 1; }
    local rx tx; rx=$(stat xsk_rx_largest_frame); tx=$(stat xsk_tx_largest_frame)
    echo "largest frame received $rx B, sent $tx B"
    stop_server || return 1
    [ "$rx" = $((LONGEST + 14)) ] && [ "$tx" = $((LONGEST + 14)) ]
}
check "MTU $LONGEST: $((LONGEST + 14))-byte frames in 17-frame chains both ways, 8 MiB echo verified" longest_chain
too_long() {
    link_mtu $((LONGEST + 1)) || return 1
    ! timeout 20 ip netns exec "$SNS" "$BIN" serve --iface "$SDEV" --ip 198.18.0.1/24 --port 7 --app echo \
        --xdp-mode native --control "$WORK/ctl2.sock" > "$WORK/refused.log" 2>&1 || return 1
    grep -o "MTU $((LONGEST + 1)) needs more than 17 frames.*" "$WORK/refused.log"
}
check "MTU $((LONGEST + 1)) (18-frame chains) is refused at start, with the reason" too_long

echo "jumbo summary: $passed passed, $failed failed"
[ "$failed" = 0 ]
