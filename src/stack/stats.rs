//! The shard's counters.

/// Counters, as `netstat -s` would show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub frames_in: u64,
    pub frames_out: u64,
    pub malformed: u64,
    pub not_ours: u64,
    pub ip_fragments: u64,
    pub ip_checksum_errors: u64,
    pub tcp_checksum_errors: u64,
    pub arp_requests_answered: u64,
    pub arp_unresolved_drops: u64,
    pub icmp_echo_replies: u64,
    pub segments_in: u64,
    pub segments_out: u64,
    pub resets_sent: u64,
    pub passive_opens: u64,
    pub active_opens: u64,
    pub refused_full: u64,
    /// Out-of-order segments not stored: over the shard's reassembly or
    /// memory limit (or a connection's own buffer or range table).
    pub ooo_dropped: u64,
    /// Segments sent with a window held back by receive-memory pressure.
    pub window_clamped: u64,
    /// In-order segments not (wholly) stored: receive memory was exhausted.
    pub mem_dropped: u64,
    /// Now, not a count: bytes held in receive buffers (unread in-order
    /// data plus out-of-order data), at most `memory_limit`.
    pub recv_buffered: u64,
    /// Now, not a count: out-of-order bytes held, at most `reassembly_limit`.
    pub ooo_buffered: u64,
    /// Now, not a count: bytes held in send buffers (written by
    /// applications and not yet acknowledged). With `recv_buffered`, what
    /// `memory_limit` bounds.
    pub send_buffered: u64,
    /// Now, not a count: orphans held (see `StackConfig::max_orphans`).
    pub orphans: u64,
    /// Closes reset rather than orphaned: `max_orphans` were held.
    pub orphans_reset: u64,
    /// Orphans reset because memory ran out while they held send data
    /// (Linux's TCPAbortOnMemory).
    pub orphans_reset_memory: u64,
    pub time_wait_overflow: u64,
    pub time_wait_reused: u64,
    pub control_drops: u64,
    /// Segments that matched no connection here and were handed to the next core.
    pub handoffs_out: u64,
    /// Segments handed to us by another core.
    pub handoffs_in: u64,
    /// Active opens from a source port whose replies the NIC steers to
    /// this shard's queue (see `StackConfig::rss`).
    pub active_opens_rss_steered: u64,
    /// Active opens whose replies may land on another queue and then rely
    /// on the cross-core hand-off: no steering known, or no free port
    /// steered here (never with `StackConfig::single_queue`).
    pub active_open_handoffs: u64,
    /// Loss recovery of the connections already retired (the live ones'
    /// counters are added when stats are read): retransmitted segments,
    /// retransmission timeouts, fast recoveries, tail loss probes, and
    /// recoveries undone as spurious.
    pub retired_retransmits: u64,
    pub retired_timeouts: u64,
    pub retired_recoveries: u64,
    pub retired_loss_probes: u64,
    pub retired_undos: u64,
    /// Bytes applications wrote with `Conn::send_with` straight into TX
    /// frames (sent at once), and into send buffers (sent later).
    pub send_with_direct_bytes: u64,
    pub send_with_buffered_bytes: u64,
}

impl ShardStats {
    /// Adds a retired connection's loss-recovery counters.
    pub(super) fn retire(&mut self, c: &crate::tcp::ConnStats) {
        self.retired_retransmits += u64::from(c.retransmits);
        self.retired_timeouts += u64::from(c.timeouts);
        self.retired_recoveries += u64::from(c.recoveries);
        self.retired_loss_probes += u64::from(c.loss_probes);
        self.retired_undos += u64::from(c.undos);
    }
}
