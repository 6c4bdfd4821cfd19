//! What `xdptcp ss` and `xdptcp stats` print: the workers' answers
//! formatted as tables or JSON, totals over the queues included.

use xdptcp::runtime::{ConnInfo, WorkerStats};
use xdptcp::xdp::{SteerProgram, XdpMode, COUNTER_NAMES};

pub fn format_ss(per_worker: &[Vec<ConnInfo>], info: bool) -> String {
    let mut out = format!("{:<11} {:>8} {:>8} {:<22} {:<22}\n", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port");
    for c in per_worker.iter().flatten() {
        out.push_str(&format!("{:<11} {:>8} {:>8} {:<22} {:<22}\n", c.state, c.recv_q, c.send_q, c.local.to_string(), c.remote.to_string()));
        if info {
            let rtt = c.srtt_us.map(|u| format!("{:.3}", u as f64 / 1000.0)).unwrap_or_else(|| "-".into());
            out.push_str(&format!("\t cwnd:{} rtt:{}ms rto:{}ms mss:{} retrans:{}\n", c.cwnd, rtt, c.rto_ms, c.mss, c.retransmits));
        }
    }
    out
}

/// One queue's row: the shard's counters, the socket's and UMEM's, and
/// loss recovery and memory (several `json!` objects: one of everything
/// exceeds the macro's recursion limit).
fn stats_row(w: &WorkerStats) -> serde_json::Value {
    let s = &w.shard;
    let mut row = serde_json::json!({
        "queue": w.queue,
        "connections": w.connections,
        "time_wait": w.time_wait,
        "frames_in": s.frames_in, "frames_out": s.frames_out,
        "segments_in": s.segments_in, "segments_out": s.segments_out,
        "retransmits": w.retransmits,
        "tcp_checksum_errors": s.tcp_checksum_errors, "ip_checksum_errors": s.ip_checksum_errors,
        "malformed": s.malformed, "ip_fragments": s.ip_fragments, "not_ours": s.not_ours,
        "resets_sent": s.resets_sent, "passive_opens": s.passive_opens, "active_opens": s.active_opens,
        // Active opens from a port whose replies the NIC steers to this queue, and the rest.
        "active_opens_rss_steered": s.active_opens_rss_steered, "active_open_handoffs": s.active_open_handoffs,
        "control_drops": s.control_drops, "arp_unresolved_drops": s.arp_unresolved_drops,
        "refused_full": s.refused_full,
        "ooo_dropped": s.ooo_dropped, "window_clamped": s.window_clamped, "mem_dropped": s.mem_dropped,
        // Now, not counts: receive bytes held (in order unread + out of order), and the out-of-order part.
        "recv_buffered_bytes": s.recv_buffered, "ooo_buffered_bytes": s.ooo_buffered,
        "time_wait_overflow": s.time_wait_overflow, "time_wait_reused": s.time_wait_reused,
        "syn_cookies_sent": w.syn_cookies_sent, "syn_cookies_validated": w.syn_cookies_validated,
        "misdirected_handoffs": s.handoffs_out, "handoffs_received": s.handoffs_in, "handoff_drops": w.handoff_drops,
        "zero_copy_sockets": u64::from(w.zero_copy),
        // How the socket is bound (read back from the kernel), and why
        // not zero-copy if the driver refused it.
        "bind_mode": if w.zero_copy { "zero-copy" } else { "copy" },
        "zero_copy_refused": w.umem.zero_copy_refused.map(xdptcp::xdp::bind::zero_copy_refusal),
        "umem_bytes": w.umem.bytes, "umem_frame_size": w.umem.frame_size, "umem_huge_pages": w.umem.huge_pages,
        "arp_requests_answered": s.arp_requests_answered, "icmp_echo_replies": s.icmp_echo_replies,
        "xsk_rx_frames": w.xsk.rx_frames, "xsk_tx_frames": w.xsk.tx_frames, "xsk_tx_no_frame": w.xsk.tx_no_frame,
        // Multi-buffer: packets in several UMEM frames; the largest frames (bytes, max over queues in the total).
        "xsk_rx_chains": w.xsk.rx_chains, "xsk_tx_chains": w.xsk.tx_chains, "xsk_rx_chains_dropped": w.xsk.rx_chains_dropped,
        "xsk_rx_largest_frame": w.xsk.rx_largest, "xsk_tx_largest_frame": w.xsk.tx_largest,
        // Counted by the kernel on the socket: frames dropped before the stack saw them.
        "xsk_rx_dropped": w.kernel.rx_dropped, "xsk_rx_ring_full": w.kernel.rx_ring_full,
        "xsk_rx_fill_ring_empty": w.kernel.rx_fill_ring_empty, "xsk_rx_invalid_descs": w.kernel.rx_invalid_descs,
        "xsk_tx_invalid_descs": w.kernel.tx_invalid_descs, "xsk_tx_ring_empty": w.kernel.tx_ring_empty,
    });
    let f = &w.frames;
    let umem = serde_json::json!({
        // Where the UMEM frames are: fill + rx + tx + completion + free + held = total
        // (umem_frames_ok). fill: posted for receiving, not yet on the RX ring;
        // rx: received, on the RX ring; tx: queued or being sent; completion: sent,
        // on the completion ring; held: lent to the worker (its TX batch; the stack copies what it receives).
        "umem_frames_fill": f.fill, "umem_frames_rx": f.rx,
        "umem_frames_tx": f.tx, "umem_frames_completion": f.completion,
        "umem_frames_free": f.free, "umem_frames_held": f.held, "umem_frames_total": f.total,
        "umem_frames_ok": f.ok(),
        // Older names: tx + completion, and fill + rx.
        "umem_frames_tx_in_flight": f.tx_in_flight(),
        "umem_frames_fill_or_rx": f.fill + f.rx,
    });
    if let (Some(r), serde_json::Value::Object(u)) = (row.as_object_mut(), umem) {
        r.extend(u);
    }
    // Loss recovery, over live and retired connections (a second
    // object: one json! of everything exceeds the macro's recursion limit).
    let recovery = serde_json::json!({
        "timeouts": w.timeouts, "fast_recoveries": w.recoveries,
        "loss_probes": w.loss_probes, "recoveries_undone": w.undos,
        // Conn::send_with: bytes written straight into TX frames, and into send buffers.
        "send_with_direct_bytes": s.send_with_direct_bytes, "send_with_buffered_bytes": s.send_with_buffered_bytes,
    });
    if let (Some(row), Some(extra)) = (row.as_object_mut(), recovery.as_object()) {
        row.extend(extra.clone());
    }
    let memory = serde_json::json!({
        // Now, not counts: bytes in send buffers (with recv_buffered_bytes, what
        // --memory-limit bounds), and orphans (closed, still finishing).
        "send_buffered_bytes": s.send_buffered, "orphans": s.orphans,
        // Closes reset beyond --max-orphans, and orphans reset when memory ran out.
        "orphans_reset": s.orphans_reset, "orphans_reset_memory": s.orphans_reset_memory,
    });
    if let (Some(row), Some(extra)) = (row.as_object_mut(), memory.as_object()) {
        row.extend(extra.clone());
    }
    row
}

/// The rows summed over the queues (see `same_or_mixed` for what does
/// not add up).
fn total_of(per: &[serde_json::Value]) -> serde_json::Map<String, serde_json::Value> {
    let mut total = serde_json::Map::new();
    for r in per {
        for (k, v) in r.as_object().into_iter().flatten() {
            if k == "queue" {
                continue;
            }
            // Flags hold for the total if they hold for every queue; modes,
            // reasons and sizes are the queues' common value or "mixed"; the
            // largest frames are the largest of any queue; counters add up.
            let before = total.get(k).and_then(|t| t.as_u64()).unwrap_or(0);
            let sum = match v {
                serde_json::Value::Bool(b) => serde_json::json!(*b && total.get(k).and_then(|t| t.as_bool()).unwrap_or(true)),
                serde_json::Value::String(_) | serde_json::Value::Null => same_or_mixed(total.get(k), v),
                _ if k == "umem_frame_size" => same_or_mixed(total.get(k), v),
                _ if k.ends_with("_largest_frame") => serde_json::json!(before.max(v.as_u64().unwrap_or(0))),
                _ => serde_json::json!(before + v.as_u64().unwrap_or(0)),
            };
            total.insert(k.clone(), sum);
        }
    }
    total
}

pub fn format_stats(workers: &[WorkerStats], program: &SteerProgram, json: bool) -> String {
    let xdp = program.counters();
    let per: Vec<_> = workers.iter().map(stats_row).collect();
    let total = total_of(&per);
    let xdp_json: serde_json::Map<_, _> = COUNTER_NAMES.iter().zip(xdp).map(|(n, v)| (n.to_string(), serde_json::json!(v))).collect();
    let mode = match program.mode() {
        XdpMode::Native => "native",
        XdpMode::Generic => "generic",
        XdpMode::Auto => "auto",
    };
    let doc = serde_json::json!({ "per_queue": per, "total": total, "xdp": xdp_json, "xdp_mode": mode });
    if json {
        return format!("{doc}\n");
    }
    let mut out = String::new();
    for (name, obj) in std::iter::once(("total".to_string(), serde_json::Value::Object(total))).chain(per.iter().map(|r| (format!("queue {}", r["queue"]), r.clone()))) {
        out.push_str(&format!("{name}:\n"));
        for (k, v) in obj.as_object().into_iter().flatten() {
            if k != "queue" {
                out.push_str(&format!("    {k}: {v}\n"));
            }
        }
    }
    out.push_str(&format!("xdp ({mode} mode):\n"));
    for (n, v) in COUNTER_NAMES.iter().zip(xdp) {
        out.push_str(&format!("    {n}: {v}\n"));
    }
    out
}

/// The total of a value that does not add up: the queues' common value, or
/// "mixed" where they differ.
fn same_or_mixed(total: Option<&serde_json::Value>, v: &serde_json::Value) -> serde_json::Value {
    match total {
        Some(t) if t != v => serde_json::json!("mixed"),
        _ => v.clone(),
    }
}
