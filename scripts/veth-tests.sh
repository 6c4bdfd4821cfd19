#!/usr/bin/env bash
# xdptcp over a veth pair, against the kernel's own TCP as the peer
# (Python sockets, curl, ping, tcpdump). Needs root. Every run uses its own
# uniquely named namespaces, removes them on exit (even on failure), and
# bounds each step in time. Ends with "veth summary: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "veth tests need root (CAP_NET_ADMIN, CAP_BPF)" >&2; exit 1; }

BIN=${XDPTCP_BIN:-target/release/xdptcp}
NAME="xv$$$RANDOM"
SNS="$NAME-s"; PNS="$NAME-p"; SDEV="${NAME}s0"; PDEV="${NAME}p0"
WORK=$(mktemp -d)
HUGEPAGES_OLD=""
cleanup_extra() {
    # The hugepages test reserved some: give back the old reservation.
    if [ -n "$HUGEPAGES_OLD" ]; then sysctl -qw vm.nr_hugepages="$HUGEPAGES_OLD"; fi
}
# VETH_ONLY=regex runs only the checks whose names match.
LABEL=veth; CHECK_TAIL=5; ONLY=${VETH_ONLY:-}
. scripts/harness.sh

peer() { timeout 180 ip netns exec "$PNS" "$@"; }

queues=${VETH_QUEUES:-2}
scripts/netns.sh up --name "$NAME" --queues "$queues" > /dev/null || { echo "netns setup failed"; exit 1; }

# --- echo server, with a capture --------------------------------------
start_server --port 7 --app echo --pcap "$WORK/cap.pcap" --control "$WORK/ctl.sock" || { result start-echo 1; exit 1; }
check "ping gets replies" peer ping -c 3 -i 0.2 -W 2 198.18.0.1
check "echo 1 MiB verified by hash" peer python3 tests/veth/peer.py echo 1048576
check "200 concurrent connections verified" peer python3 tests/veth/peer.py concurrent 200 20000
check "5000 concurrent connections" peer bash -c "ulimit -n 20000 && python3 tests/veth/peer.py many 5000 100"
check "echo replies went straight into TX frames (send_with)" bash -c "'$BIN' stats --json --control '$WORK/ctl.sock' | python3 -c \"import json, sys; t = json.load(sys.stdin)['total']; d, b = t['send_with_direct_bytes'], t['send_with_buffered_bytes']; print('send_with direct', d, 'buffered', b); assert d > 1048576 and d + b >= 2 * 1048576, t\""
ss_shows_connection() {
    peer python3 -c "import socket, time; s = socket.create_connection(('198.18.0.1', 7)); time.sleep(3)" &
    local holder=$!
    sleep 1
    "$BIN" ss -i --control "$WORK/ctl.sock" > "$WORK/ss.txt"
    wait "$holder"
    cat "$WORK/ss.txt"
    grep -q "^ESTAB .* 198.18.0.1:7 .*198.18.0.2:" "$WORK/ss.txt" && grep -q "cwnd:" "$WORK/ss.txt"
}
check "xdptcp ss -i lists an open connection" ss_shows_connection
check "xdptcp stats --json counts opens, segments and XDP redirects; UMEM frames add up" bash -c "'$BIN' stats --json --control '$WORK/ctl.sock' | python3 -c \"import json, sys; d = json.load(sys.stdin); t = d['total']; assert t['passive_opens'] >= 5000 and t['segments_in'] > 0 and d['xdp']['redirected'] > 0 and len(d['per_queue']) >= 1, d; assert t['umem_frames_ok'] is True and t['umem_frames_total'] > 0, t; print('passive_opens', t['passive_opens'], 'redirected', d['xdp']['redirected'], 'umem frames add up', t['umem_frames_total'])\""
check "half-close works" peer python3 tests/veth/peer.py half-close
check "closed port is refused" peer python3 tests/veth/peer.py refused 9
check "after a peer RST mid-transfer a new connection works" peer python3 tests/veth/peer.py rst-then-new
# 5 % loss each way on the peer's veth (no netem here: nftables).
peer nft -f - <<NFT
table netdev xvloss {
    chain in { type filter hook ingress device "$PDEV" priority 0; numgen random mod 100 < 5 drop; }
    chain out { type filter hook egress device "$PDEV" priority 0; numgen random mod 100 < 5 drop; }
}
NFT
check "echo 2 MiB intact under 5 % loss both ways" peer python3 tests/veth/peer.py echo 2097152
peer nft delete table netdev xvloss
check "SIGINT: exit 0 and XDP detached" stop_server
pcap_text() { for f in "$WORK"/cap*.pcap; do tcpdump -nn -r "$f" 2>/dev/null; done; }
check "--pcap parses in tcpdump and shows the handshake" bash -c "$(declare -f pcap_text); WORK='$WORK'; pcap_text | grep -q 'Flags \[S\]' && pcap_text | grep -q 'Flags \[S\.\]'"

# --- immediate restart: discard -----------------------------------------
check "immediate restart works" start_server --port 9999 --app discard
check "200 MiB to discard" peer python3 tests/veth/peer.py discard 200
check "SIGINT after discard: exit 0 and XDP detached" stop_server

# --- http ----------------------------------------------------------------
check "restart as an HTTP server" start_server --port 80 --app http
check "curl gets 200" bash -c "timeout 30 ip netns exec '$PNS' curl -sf --max-time 5 http://198.18.0.1/ | grep -q 'hello from xdptcp'"
check "1000 keep-alive requests" peer python3 tests/veth/peer.py keepalive-http 1000
check "SIGINT after http: exit 0 and XDP detached" stop_server

# --- two queues: flows spread and each worker serves its own -------------
if [ "$queues" -ge 2 ]; then
    start_server --port 7 --app echo --queues 2 --xdp-mode native || { result "2 queues in native mode" 1; exit 1; }
    peer python3 tests/veth/peer.py concurrent 64 20000 > /dev/null 2>&1; st=$?
    stop_server > /dev/null
    q0=$(grep -o 'queue 0: ShardStats { frames_in: [0-9]*' "$WORK/server.log" | grep -o '[0-9]*$')
    q1=$(grep -o 'queue 1: ShardStats { frames_in: [0-9]*' "$WORK/server.log" | grep -o '[0-9]*$')
    echo "    frames per queue: q0=${q0:-?} q1=${q1:-?}"
    [ "$st" = 0 ] && [ "${q0:-0}" -gt 0 ] && [ "${q1:-0}" -gt 0 ]; result "2 queues in native mode: flows on both workers" $?
fi

# --- attacks: a spoofed SYN flood, then a flood of malformed frames -------
BENCH=${XDPTCP_BENCH_BIN:-target/release/xdptcp-bench}
SMAC=$(ip netns exec "$SNS" cat "/sys/class/net/$SDEV/address")
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
stat_total() { "$BIN" stats --json --control "$WORK/ctl.sock" | python3 -c "import json, sys; print(json.load(sys.stdin)['total'].get('$1', 0))"; }
syn_flood() {
    start_server --port 7 --app echo --control "$WORK/ctl.sock" || return 1
    local before; before=$(rss_kib)
    # The AF_XDP sender runs at the highest rate the pair takes, from
    # spoofed on-link addresses, while kernel clients keep connecting.
    timeout 60 ip netns exec "$PNS" "$BENCH" frames flood --flood syn --iface "$PDEV" --ip 198.18.0.100/24 \
        --to 198.18.0.1 --to-mac "$SMAC" --port 7 --duration "${FLOOD_SECONDS:-10}" > "$WORK/flood.log" 2>&1 &
    local flooder=$!
    sleep 0.5
    peer python3 tests/veth/peer.py legit "$(( ${FLOOD_SECONDS:-10} - 2 ))" 0.99 8; local legit=$?
    wait "$flooder"; local fst=$?
    local after; after=$(rss_kib)
    local sent valid; sent=$(stat_total syn_cookies_sent); valid=$(stat_total syn_cookies_validated)
    cat "$WORK/flood.log"
    echo "server RSS ${before} KiB -> ${after} KiB; SYN cookies sent $sent, validated $valid"
    stop_server || return 1
    [ "$legit" = 0 ] && [ "$fst" = 0 ] && [ "$sent" -gt 1000 ] && [ "$valid" -gt 0 ] && [ "$after" -lt $(( before + 65536 )) ]
}
check "SYN flood: >= 99 % of legitimate clients served, cookies used, memory flat" syn_flood
junk_flood() {
    start_server --port 7 --app echo --control "$WORK/ctl.sock" || return 1
    timeout 60 ip netns exec "$PNS" "$BENCH" frames flood --flood junk --iface "$PDEV" --ip 198.18.0.100/24 \
        --to 198.18.0.1 --to-mac "$SMAC" --port 7 --duration 5 || { stop_server; return 1; }
    sleep 0.3
    "$BIN" stats --json --control "$WORK/ctl.sock" | python3 -c "
import json, sys
d = json.load(sys.stdin); t = d['total']
print({k: t[k] for k in ('frames_in', 'malformed', 'ip_checksum_errors', 'tcp_checksum_errors', 'ip_fragments', 'segments_in')}, 'xdp passed', d['xdp']['passed'])
# Every kind the stack sees is counted under its own name.
assert min(t['malformed'], t['ip_checksum_errors'], t['tcp_checksum_errors'], t['ip_fragments']) > 1000, t
# The frames too short for an IPv4 header go to the kernel, counted by the XDP program.
assert d['xdp']['passed'] > 1000, d['xdp']
# Every frame the program steered reached the stack or was counted by the
# kernel as dropped before it (fill ring empty, RX ring full).
steered = d['xdp']['redirected']; seen = t['frames_in'] + t['xsk_rx_dropped'] + t['xsk_rx_ring_full']
print('steered', steered, '= stack', t['frames_in'], '+ kernel drops', seen - t['frames_in'])
assert steered == seen, (steered, seen)
" || { stop_server; return 1; }
    peer python3 tests/veth/peer.py echo 1048576 || { stop_server; return 1; }
    stop_server
}
check "malformed-frame flood: every kind counted, no crash, echo still verified" junk_flood

blind_attack() {
    start_server --port 7 --app echo --control "$WORK/ctl.sock" || return 1
    peer python3 tests/veth/peer.py blind-victim 62001 6 > "$WORK/victim.log" 2>&1 &
    local victim=$!
    for _ in $(seq 50); do grep -q "under attack" "$WORK/victim.log" && break; sleep 0.1; done
    # RSTs, SYNs and data with guessed numbers, forged from the victim's
    # address and port, at the link's rate. (The victim's port is outside
    # the kernel's ephemeral range, so no earlier test's socket holds it.)
    timeout 60 ip netns exec "$PNS" "$BENCH" frames flood --flood blind --spoof 198.18.0.2:62001 --iface "$PDEV" \
        --ip 198.18.0.100/24 --to 198.18.0.1 --to-mac "$SMAC" --port 7 --duration 4 || { stop_server; return 1; }
    wait "$victim"; local st=$?
    cat "$WORK/victim.log"
    local challenges; challenges=$("$BIN" stats --json --control "$WORK/ctl.sock" | python3 -c "import json, sys; t = json.load(sys.stdin)['total']; print(t['segments_in'], 'segments in,', t['resets_sent'], 'resets sent')")
    echo "    $challenges"
    stop_server || return 1
    [ "$st" = 0 ]
}
check "blind RST/SYN/data injection (RFC 5961) never breaks an established connection" blind_attack

# --- SIGTERM: open connections are closed with a FIN ---------------------
sigterm_fin() {
    start_server --port 7 --app echo || return 1
    peer python3 tests/veth/peer.py expect-fin 10 > "$WORK/fin.log" 2>&1 &
    local holder=$!
    for _ in $(seq 50); do grep -q "waiting for the server's FIN" "$WORK/fin.log" && break; sleep 0.1; done
    kill -TERM "$SERVER_PID"
    wait "$holder"; local st=$?
    cat "$WORK/fin.log"
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    wait "$SERVER_PID"; local sst=$?
    SERVER_PID=""
    echo "server exit status $sst"
    [ "$st" = 0 ] && [ "$sst" = 0 ] && ! ip -n "$SNS" -d link show "$SDEV" | grep -q "prog/xdp"
}
check "SIGTERM: an open connection gets a FIN, exit 0, XDP detached" sigterm_fin

# --- SIGKILL: the program goes with the process (bpf_link) --------------
sigkill_detaches() {
    start_server --port 7 --app echo || return 1
    ip -n "$SNS" -d link show "$SDEV" | grep -q "prog/xdp" || { echo "no program attached while serving"; return 1; }
    kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
    sleep 0.3
    if ip -n "$SNS" -d link show "$SDEV" | grep -q "prog/xdp"; then echo "a program is still attached after SIGKILL"; return 1; fi
    echo "no program attached after SIGKILL"
    start_server --port 7 --app echo || return 1
    peer python3 tests/veth/peer.py echo 65536 || { stop_server; return 1; }
    stop_server
}
check "SIGKILL: no XDP program left attached (bpf_link), and the next start serves" sigkill_detaches

# --- preferred busy polling on the AF_XDP sockets ------------------------
busy_poll_echo() {
    start_server --port 7 --app echo --busy-poll 50 || return 1
    grep -q "preferred busy polling on" "$WORK/server.log" || { echo "busy polling not reported"; cat "$WORK/server.log"; stop_server; return 1; }
    peer python3 tests/veth/peer.py echo 1048576 || { stop_server; return 1; }
    stop_server
}
check "--busy-poll: options set, 1 MiB echo verified" busy_poll_echo

# --- zero-copy: veth has none -------------------------------------------
has_prog() { ip -n "$SNS" -d link show "$SDEV" | grep -q "prog/xdp"; }
zero_copy_required() {
    timeout 20 ip netns exec "$SNS" "$BIN" serve --iface "$SDEV" --ip 198.18.0.1/24 --port 7 --app echo \
        --zero-copy required --control "$WORK/zc.sock" > "$WORK/zc.log" 2>&1; local st=$?
    tail -n 2 "$WORK/zc.log"
    echo "exit status $st"
    [ "$st" != 0 ] && [ "$st" != 124 ] || return 1
    grep -q "refused an AF_XDP zero-copy bind: EOPNOTSUPP: driver has no AF_XDP zero-copy support (Operation not supported (os error 95))" "$WORK/zc.log" || return 1
    grep -q "ethtool -i $SDEV" "$WORK/zc.log" || return 1
    if has_prog; then echo "an XDP program is left attached"; return 1; fi
    # Generic XDP cannot do zero-copy: refused before anything is attached.
    timeout 20 ip netns exec "$SNS" "$BIN" serve --iface "$SDEV" --ip 198.18.0.1/24 --port 7 --app echo \
        --zero-copy required --xdp-mode generic --control "$WORK/zc.sock" > "$WORK/zc.log" 2>&1; st=$?
    tail -n 1 "$WORK/zc.log"
    [ "$st" != 0 ] && [ "$st" != 124 ] && grep -q "needs the XDP program in native (driver) mode" "$WORK/zc.log" \
        && ! grep -q "XDP program attached" "$WORK/zc.log" && ! has_prog
}
check "--zero-copy required on veth: exits 1 naming the reason and what to check, no XDP program left" zero_copy_required
zero_copy_preferred() {
    start_server --port 7 --app echo --control "$WORK/ctl.sock" || return 1
    grep "zero-copy bind refused" "$WORK/server.log" | head -1
    grep -q "zero-copy bind refused: EOPNOTSUPP: driver has no AF_XDP zero-copy support (Operation not supported (os error 95)); falling back to copy mode" "$WORK/server.log" \
        && grep -q "AF_XDP socket bound in copy mode" "$WORK/server.log" || { stop_server; return 1; }
    "$BIN" stats --json --control "$WORK/ctl.sock" | python3 -c "
import json, sys
d = json.load(sys.stdin)
for q in d['per_queue']:
    assert q['bind_mode'] == 'copy' and q['zero_copy_sockets'] == 0, q
    assert q['zero_copy_refused'] == 'EOPNOTSUPP: driver has no AF_XDP zero-copy support', q
assert d['total']['bind_mode'] == 'copy', d['total']
print('stats --json: bind_mode', d['total']['bind_mode'], 'on', len(d['per_queue']), 'queue(s);', d['total']['zero_copy_refused'])
" || { stop_server; return 1; }
    "$BIN" stats --control "$WORK/ctl.sock" | grep -q 'bind_mode: "copy"' || { echo "text stats lack the bind mode"; stop_server; return 1; }
    peer python3 tests/veth/peer.py echo 65536 || { stop_server; return 1; }
    stop_server
}
check "--zero-copy preferred (default) on veth: serves in copy mode, the warning names the reason, stats say copy" zero_copy_preferred

# --- UMEM on hugepages, and 4096-byte frames -----------------------------
hugepages_echo() {
    # Two queues × 4096 frames × 2048 B = 2 × 8 MiB = 8 pages of 2 MiB.
    local frames=4096 need=8 size_kb=8192
    HUGEPAGES_OLD=$(cat /proc/sys/vm/nr_hugepages)
    sysctl -qw vm.nr_hugepages=$(( $(awk '/^HugePages_Total/ {print $2}' /proc/meminfo) + need ))
    grep -E "^HugePages_(Total|Free)" /proc/meminfo | tr '\n' ' '; echo
    start_server --port 7 --app echo --frames $frames --hugepages on --control "$WORK/ctl.sock" || return 1
    grep -o "UMEM on hugepages.*" "$WORK/server.log" | head -1
    # The UMEM mappings: 8 MiB each, on 2048 kB pages, all of it hugetlb.
    python3 - "$SERVER_PID" "$size_kb" <<'PY' || { stop_server; return 1; }
import re, sys
pid, size = sys.argv[1], int(sys.argv[2])
maps, cur = [], None
for line in open(f"/proc/{pid}/smaps"):
    if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
        cur = {"range": line.split()[0]}; maps.append(cur)
    elif cur is not None and line.split(":")[0] in ("Size", "KernelPageSize", "Private_Hugetlb", "Shared_Hugetlb"):
        cur[line.split(":")[0]] = int(line.split()[1])
umem = [m for m in maps if m.get("Size") == size and m.get("KernelPageSize") == 2048]
for m in umem:
    print(m)
huge = [m for m in umem if m["Private_Hugetlb"] + m["Shared_Hugetlb"] == size and m["Private_Hugetlb"] > 0]
assert len(huge) == 2, f"expected the 2 queues' UMEMs on hugepages, found {len(huge)}"
PY
    "$BIN" stats --json --control "$WORK/ctl.sock" | python3 -c "
import json, sys; t = json.load(sys.stdin)['total']
assert t['umem_huge_pages'] is True and t['umem_bytes'] == 2 * $size_kb * 1024, t
print('stats: umem_huge_pages', t['umem_huge_pages'], 'umem_bytes', t['umem_bytes'])" || { stop_server; return 1; }
    peer python3 tests/veth/peer.py echo 1048576 || { stop_server; return 1; }
    stop_server || return 1
    sysctl -qw vm.nr_hugepages="$HUGEPAGES_OLD"
    HUGEPAGES_OLD=""
}
check "--hugepages on: each UMEM sits on 2 MiB hugepages (smaps), 1 MiB echo verified" hugepages_echo
frame_size_4096() {
    start_server --port 7 --app echo --frame-size 4096 --frames 2048 --hugepages off --control "$WORK/ctl.sock" || return 1
    grep -q "2048 frames of 4096 B on normal pages" "$WORK/server.log" || { echo "no 4096-byte frames in the log"; stop_server; return 1; }
    "$BIN" stats --json --control "$WORK/ctl.sock" | python3 -c "
import json, sys; t = json.load(sys.stdin)['total']
assert t['umem_frame_size'] == 4096 and t['umem_huge_pages'] is False, t" || { stop_server; return 1; }
    peer python3 tests/veth/peer.py echo 1048576 || { stop_server; return 1; }
    stop_server
}
check "--frame-size 4096: 1 MiB echo verified" frame_size_4096

# --- scripts/nic-setup.sh, in namespaces of its own -----------------------
check "nic-setup.sh on veth: the dry-run plan changes nothing, a real run and --undo restore the knobs" timeout 120 bash scripts/nic-setup-tests.sh

# --- xdptcp as the client, against a kernel echo server -----------------
# On the multi-queue pair, replies land on either queue; the worker of the
# other queue hands them to the opening core.
ip netns exec "$PNS" python3 tests/veth/kernel_echo.py 198.18.0.2 7000 > "$WORK/kernel_echo.log" 2>&1 &
sleep 0.5
client_echo() {
    timeout 90 ip netns exec "$SNS" "$BIN" connect --iface "$SDEV" --ip 198.18.0.1/24 --remote 198.18.0.2:7000 --bytes 1048576 --conns 16 > "$WORK/client.log" 2>&1
    local st=$?
    grep -E "connections echoed|handoffs_in" -o "$WORK/client.log" | head -3
    grep -oE "handoffs_in: [0-9]+" "$WORK/client.log"
    grep -oE "RSS: .*|active_open_handoffs: [0-9]+" "$WORK/client.log"
    [ "$st" = 0 ] || return 1
    # veth reports no RSS steering: every open relies on the hand-off.
    grep -q "RSS: not reported by $SDEV (EOPNOTSUPP)" "$WORK/client.log" || return 1
    grep -q "active_open_handoffs: 16," "$WORK/client.log" || return 1
    if [ "$queues" -ge 2 ]; then
        # 16 flows over 2 queues: replies on the other queue were handed over.
        [ "$(grep -oE 'handoffs_in: [0-9]+' "$WORK/client.log" | grep -oE '[0-9]+$')" -gt 0 ]
    fi
}
check "xdptcp as the client: 16 × 1 MiB echoed by a kernel server (cross-core hand-off)" client_echo

echo "veth summary: $passed passed, $failed failed"
[ "$failed" = 0 ]
