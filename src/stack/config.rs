//! The shard's configuration: its addresses, caps and place among the
//! stack's shards.

use std::net::Ipv4Addr;

use crate::rss::RssSelector;
use crate::tcp::{Config, ListenerConfig};
use crate::time::Duration;
use crate::wire::EthernetAddress;

#[derive(Clone, Debug)]
pub struct StackConfig {
    pub mac: EthernetAddress,
    pub ip: Ipv4Addr,
    /// How many consecutive addresses, from `ip` up, the stack owns: a
    /// client opening more than 64k connections to one server port spreads
    /// them over several source addresses. 1 for a server.
    pub addresses: u32,
    pub prefix_len: u8,
    /// Next hop for destinations off our subnet.
    pub gateway: Option<Ipv4Addr>,
    pub mtu: usize,
    pub tcp: Config,
    pub listener: ListenerConfig,
    /// Connections per shard, TIME_WAIT included; SYNs beyond it are
    /// refused with RST (counted as `refused_full`), active opens fail.
    pub max_connections: usize,
    /// Out-of-order bytes held for reassembly by all connections of the
    /// shard together. An out-of-order segment that would exceed it is
    /// dropped (counted as `ooo_dropped`) and not SACKed, so the peer
    /// retransmits it; in-order data never counts against it. 64 MiB.
    pub reassembly_limit: usize,
    /// Bytes held in receive buffers (unread in-order data plus out-of-order
    /// data) and send buffers (written, not yet acknowledged) by all
    /// connections of the shard together, like Linux's `tcp_mem`. From 3/4
    /// of it (the pressure mark, Linux's `tcp_mem[1]`) windows grow by at
    /// most 4 MSS (counted as `window_clamped`; an edge already advertised
    /// is never moved left, RFC 9293 §3.8.6); at the limit they grow no
    /// more, data that would exceed it is dropped (`mem_dropped`,
    /// `ooo_dropped`) rather than stored, sends are cut short, and orphans
    /// holding send data are reset (`orphans_reset_memory`). Each connection
    /// may still hold 4 KiB to send (Linux's `tcp_wmem[0]`) and, when send
    /// data used the memory up, 4 KiB received (`tcp_rmem[0]`), so that
    /// every connection keeps moving; receive memory alone never exceeds
    /// the limit. 1 GiB.
    pub memory_limit: usize,
    /// TIME_WAIT connections kept (Linux's `tcp_max_tw_buckets`); beyond it a
    /// closing connection skips TIME_WAIT and is counted.
    pub max_time_wait: usize,
    /// Orphans kept (Linux's `tcp_max_orphans`): connections the
    /// application closed that are still finishing (FIN_WAIT_1, FIN_WAIT_2,
    /// CLOSING, LAST_ACK; TIME_WAIT has its own cap). A close that would
    /// exceed it resets the connection instead (counted as `orphans_reset`).
    /// 65536.
    pub max_orphans: usize,
    /// Linux's `tcp_tw_reuse`: an active open may take over a 4-tuple in
    /// TIME_WAIT for more than a second when timestamps protect it.
    pub tw_reuse: bool,
    /// Source ports for active opens (`ip_local_port_range`), chosen as
    /// RFC 6056 §3.3.4 (algorithm 4) recommends: in an order keyed per
    /// destination, not one after another from the start of the range.
    pub ephemeral_ports: (u16, u16),
    /// The NIC's receive steering as this shard's queue sees it, when the
    /// device reports it: active opens then take a source port whose
    /// replies the NIC sends to this queue. `None`: any free port, and the
    /// replies find this core through the cross-core hand-off.
    pub rss: Option<RssSelector>,
    /// The stack has this one queue and core: every reply lands here, so
    /// no active open relies on the hand-off (none is counted as one).
    pub single_queue: bool,
    /// Which of the stack's shards this is, and how many there are: a
    /// segment that matches nothing here goes to the shard that owns its
    /// 4-tuple by a keyed hash ([`Shard::owner`]), and active opens whose
    /// replies the NIC may steer elsewhere take only ports this shard owns.
    pub cores: Cores,
    pub neighbor_timeout: Duration,
    pub arp_retry: Duration,
    pub arp_tries: u32,
}

impl StackConfig {
    pub fn new(mac: EthernetAddress, ip: Ipv4Addr, prefix_len: u8) -> Self {
        StackConfig {
            mac,
            ip,
            addresses: 1,
            prefix_len,
            gateway: None,
            mtu: 1500,
            tcp: Config::for_mtu(1500),
            listener: ListenerConfig::default(),
            max_connections: 1 << 21,
            reassembly_limit: 64 << 20,
            memory_limit: 1 << 30,
            max_time_wait: 262_144,
            max_orphans: 65_536,
            tw_reuse: false,
            ephemeral_ports: (32768, 60999),
            rss: None,
            single_queue: false,
            cores: Cores::default(),
            neighbor_timeout: Duration::from_secs(60),
            arp_retry: Duration::from_secs(1),
            arp_tries: 3,
        }
    }

    /// Receive memory from which windows are clamped: 3/4 of `memory_limit`.
    pub fn memory_pressure(&self) -> usize {
        self.memory_limit / 4 * 3
    }

    /// One of our addresses.
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip).wrapping_sub(u32::from(self.ip)) < self.addresses.max(1)
    }

    /// Our `k`-th address.
    pub fn address(&self, k: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ip).wrapping_add(k))
    }

    /// On our subnet (reached without the gateway).
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix_len.min(32))) };
        u32::from(ip) & mask == u32::from(self.ip) & mask
    }
}

/// A shard's place among the stack's shards (one per queue and core).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cores {
    /// This shard, from 0.
    pub index: u16,
    /// Shards in the stack, at least 1.
    pub count: u16,
}

impl Default for Cores {
    fn default() -> Self {
        Cores { index: 0, count: 1 }
    }
}
