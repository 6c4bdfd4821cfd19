//! The per-core shard: everything one worker needs to turn Ethernet frames
//! into TCP connections and back, without I/O and without locks.
//!
//! In: [`Shard::handle_frame`] for each received frame (a batch at a time),
//! [`Shard::handle_timeout`] once per loop iteration. Out:
//! [`Shard::poll_transmit`] until `None`, each call writing one whole
//! Ethernet frame into the caller's buffer. The application is called back
//! from inside `handle_frame` and `handle_timeout`.
//!
//! The shard answers ARP for its address (and keeps a neighbour cache), ICMP
//! echo, checks IPv4 headers, demultiplexes TCP by 4-tuple, runs listeners
//! with their backlogs and SYN cookies, and applies the TIME_WAIT policy
//! (`max_time_wait`, like `tcp_max_tw_buckets`; `tw_reuse`, like
//! `tcp_tw_reuse`). Malformed input is counted, never trusted.
//!
//! Every resource is capped (see [`StackConfig`]): connections
//! (`max_connections`), each connection's buffers (`tcp.send_buffer`,
//! `tcp.recv_buffer`), out-of-order data across the shard
//! (`reassembly_limit`), receive and send memory across the shard
//! (`memory_limit`, like Linux's `tcp_mem`) and orphans (`max_orphans`, like
//! `tcp_max_orphans`). The shard keeps the totals current by the change each
//! call into a connection makes (never by a scan) and passes what is left to
//! the connection as an [`RxBudget`] before feeding it a segment or polling
//! it for output. Hitting a cap degrades, and is counted: a SYN is refused
//! with RST, out-of-order data is dropped (the peer retransmits it), windows
//! stop growing, sends are cut short, and a close beyond the orphan cap, or
//! an orphan holding send data when memory is out, is reset.

pub mod arp;
pub mod batch;
pub mod send;
pub mod table;
pub mod wheel;

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use crate::app::{App, Conn, ConnId};
use crate::rss::RssSelector;
use crate::tcp::isn::IsnGenerator;
use crate::tcp::syncookie::SynCookies;
use crate::tcp::{reset_for, Config, Connection, Event, Handle, Listener, ListenerConfig, RxBudget, State, SynOutcome, SEND_MEMORY_FLOOR};
use crate::time::{Duration, Instant};
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IcmpEchoKind, IcmpEchoRepr, IcmpPacket,
    IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr,
};

use arp::NeighborCache;
pub use batch::TxBatch;
use send::Sender;
use table::{tuple, ConnTable, Entry};
use wheel::TimerWheel;

const ETH: usize = 14;
const IP: usize = 20;
const HEADROOM: usize = ETH + IP;
/// Control frames (ARP, ICMP, resets, cookies) waiting to go out.
const CONTROL_LIMIT: usize = 1024;
const UNSCHEDULED: u64 = u64::MAX;
/// Received data a connection may always hold when send buffers have used
/// up `memory_limit` (Linux's `tcp_rmem[0]`): send data never starves a
/// receive side entirely, which between two stacks both full of send data
/// would stop either from acknowledging the other's. Receive memory alone
/// still never exceeds the limit.
const RECV_MEMORY_FLOOR: usize = 4096;
/// RFC 6056 §3.3.4's table of per-destination-group counters (its
/// TABLE_LENGTH): how many destinations can move their port searches on
/// independently of each other.
const PORT_TABLE: usize = 256;

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

    fn on_link(&self, ip: Ipv4Addr) -> bool {
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
    fn retire(&mut self, c: &crate::tcp::ConnStats) {
        self.retired_retransmits += u64::from(c.retransmits);
        self.retired_timeouts += u64::from(c.timeouts);
        self.retired_recoveries += u64::from(c.recoveries);
        self.retired_loss_probes += u64::from(c.loss_probes);
        self.retired_undos += u64::from(c.undos);
    }
}

/// What became of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handled here (or counted and dropped).
    Done,
    /// A TCP segment matching no connection here, owned by the shard
    /// `core` (see [`Shard::owner`]): the reply to an active open made
    /// there whose port the NIC steers elsewhere. The caller passes it on
    /// to that shard, which handles it as the last hop.
    Forward { core: u16 },
}

/// What a call into a connection may change in the shard's receive totals,
/// read before and after it.
#[derive(Debug, Clone, Copy)]
struct RxSnapshot {
    held: usize,
    ooo: usize,
    /// Bytes in the send buffer.
    sent: usize,
    orphan: bool,
    ooo_dropped: u32,
    window_clamped: u32,
    mem_dropped: u32,
}

impl RxSnapshot {
    fn of(c: &Connection) -> RxSnapshot {
        let s = c.stats();
        RxSnapshot {
            held: c.recv_held(),
            ooo: c.ooo_queue(),
            sent: c.send_queue(),
            orphan: c.is_orphan(),
            ooo_dropped: s.ooo_dropped,
            window_clamped: s.window_clamped,
            mem_dropped: s.mem_dropped,
        }
    }
}

/// The shard's memory totals, from which each connection's budget is cut.
#[derive(Debug, Clone, Copy)]
struct MemoryView {
    limit: usize,
    pressure: usize,
    recv: usize,
    send: usize,
    reassembly: usize,
    mss: usize,
}

impl MemoryView {
    /// What `conn` may still use (see `RxBudget`): what is left of
    /// `memory_limit` after receive and send memory, to receive into or to
    /// queue for sending; but at least `RECV_MEMORY_FLOOR` of received data
    /// held when send memory is what used it up (and, in the engine,
    /// `SEND_MEMORY_FLOOR` of send data).
    fn budget(&self, conn: &Connection) -> RxBudget {
        let held = self.recv + self.send;
        let shared = self.limit.saturating_sub(held);
        let floor = RECV_MEMORY_FLOOR.saturating_sub(conn.recv_held()).min(self.limit.saturating_sub(self.recv));
        let memory = shared.max(floor);
        // Under pressure a window grows by at most 4 MSS, as Linux clamps
        // rcv_ssthresh to 4 * advmss (tcp_adjust_rcv_ssthresh); at the limit
        // (memory == 0) by nothing.
        let window = if held >= self.pressure { memory.min(4 * self.mss) } else { usize::MAX };
        RxBudget { reassembly: self.reassembly, memory, window, send: shared }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("no free source port for that destination")]
    NoPort,
    #[error("the connection table is full")]
    TableFull,
}

pub struct Shard<A: App> {
    cfg: StackConfig,
    tcp: Arc<Config>,
    isn: IsnGenerator,
    cookie_key: [u8; 16],
    table: ConnTable<A::State>,
    listeners: HashMap<u16, Listener<ConnId>>,
    arp: NeighborCache,
    wheel: TimerWheel,
    dirty: Vec<ConnId>,
    closed: Vec<ConnId>,
    control: VecDeque<Vec<u8>>,
    expired: Vec<u32>,
    scratch: Vec<u8>,
    time_wait: usize,
    /// RFC 6056 algorithm 4's counters (`table[]`), indexed by the keyed
    /// hash G of the destination: where its next port search starts,
    /// after its keyed offset F.
    port_table: [u32; PORT_TABLE],
    /// Which of our addresses active opens use now (see `connect`).
    next_addr: u32,
    /// A destination for which no steered port was free, and the table's
    /// removal count then: until a connection leaves the table none can be
    /// (short of a TIME_WAIT becoming reusable), so opens to it skip the
    /// steered search, which would scan the whole range each time.
    rss_exhausted: Option<(SocketAddrV4, u64)>,
    stats: ShardStats,
    /// During `handle_frame_checked`: whether every other core has seen the frame.
    last_hop: bool,
    verdict: Verdict,
}

impl<A: App> Shard<A> {
    /// `secret` keys ISNs and SYN cookies: shards of one stack share it, so
    /// a cookie issued by one core validates on another.
    pub fn new(cfg: StackConfig, secret: [u8; 16]) -> Self {
        let tcp = Arc::new(cfg.tcp.clone());
        let mut cookie_key = secret;
        cookie_key[0] ^= 0xc0;
        Shard {
            arp: NeighborCache::new(cfg.neighbor_timeout, cfg.arp_retry, cfg.arp_tries),
            port_table: [0; PORT_TABLE],
            next_addr: 0,
            rss_exhausted: None,
            cfg,
            tcp,
            isn: IsnGenerator::new(secret),
            cookie_key,
            table: ConnTable::default(),
            listeners: HashMap::new(),
            wheel: TimerWheel::new(),
            dirty: Vec::new(),
            closed: Vec::new(),
            control: VecDeque::new(),
            expired: Vec::new(),
            scratch: Vec::new(),
            time_wait: 0,
            stats: ShardStats::default(),
            last_hop: true,
            verdict: Verdict::Done,
        }
    }

    pub fn config(&self) -> &StackConfig {
        &self.cfg
    }
    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }
    pub fn connections(&self) -> impl Iterator<Item = (ConnId, &Connection)> {
        self.table.iter().map(|(id, e)| (id, &e.conn))
    }
    pub fn connection(&self, id: ConnId) -> Option<&Connection> {
        self.table.get(id).map(|e| &e.conn)
    }
    pub fn listeners(&self) -> impl Iterator<Item = &Listener<ConnId>> {
        self.listeners.values()
    }
    pub fn time_wait_count(&self) -> usize {
        self.time_wait
    }

    /// Accepts connections on `port`.
    pub fn listen(&mut self, port: u16) {
        let listener = Listener::new(
            SocketAddrV4::new(self.cfg.ip, port),
            self.cfg.listener,
            self.tcp.clone(),
            self.isn.clone(),
            SynCookies::new(self.cookie_key),
        );
        self.listeners.insert(port, listener);
    }

    /// Runs `f` on a connection, as the application sees it.
    pub fn with_conn<R>(&mut self, id: ConnId, f: impl FnOnce(&mut Conn<'_, A::State>) -> R) -> Option<R> {
        self.with_conn_tx(Instant::ZERO, id, &mut no_frames(), f)
    }

    /// [`Shard::with_conn`] with free TX frames lent: `Conn::send_with`
    /// in `f` may write straight into them (see [`send`]); the runtime
    /// submits the frames filled.
    pub fn with_conn_tx<F: AsMut<[u8]>, R>(&mut self, now: Instant, id: ConnId, tx: &mut TxBatch<F>, f: impl FnOnce(&mut Conn<'_, A::State>) -> R) -> Option<R> {
        let before = self.begin_call(id)?;
        let e = self.table.get_mut(id)?;
        let r = call(Sender::new(&self.cfg, &self.arp, &mut self.stats, &mut Io { now, tx }), id, Handle::new(&mut e.conn), &mut e.state, f);
        self.touch(id);
        self.end_call(id, before);
        Some(r)
    }

    /// Offers a connection's buffered received data to the application
    /// again, for an application that left data unread (`on_data` returned
    /// less than it was given) and is ready for it now. Reading frees receive
    /// memory and reopens the window.
    pub fn resume_reading(&mut self, now: Instant, id: ConnId, app: &mut A) {
        let Some(before) = self.begin_call(id) else { return };
        let io = &mut Io { now, tx: &mut no_frames() };
        self.offer_buffered(io, id, app);
        self.after_io(io, id, app);
        self.end_call(id, before);
    }

    // ---- receive memory ----------------------------------------------

    /// The totals connection budgets are cut from (`MemoryView::budget`).
    fn memory_view(&self) -> MemoryView {
        MemoryView {
            limit: self.cfg.memory_limit,
            pressure: self.cfg.memory_pressure(),
            recv: self.stats.recv_buffered as usize,
            send: self.stats.send_buffered as usize,
            reassembly: self.cfg.reassembly_limit.saturating_sub(self.stats.ooo_buffered as usize),
            mss: usize::from(self.tcp.mss),
        }
    }

    /// Receive and send memory together have reached `memory_limit`
    /// (Linux's `tcp_mem[2]`, as `tcp_out_of_memory` checks it), to within
    /// `SEND_MEMORY_FLOOR`: Linux counts that memory in 4 KiB pages.
    fn out_of_memory(&self) -> bool {
        (self.stats.recv_buffered + self.stats.send_buffered) as usize + SEND_MEMORY_FLOOR > self.cfg.memory_limit
    }

    /// Before a call into a connection: hands it its budget and notes what
    /// the call may change, for `end_call`.
    fn begin_call(&mut self, id: ConnId) -> Option<RxSnapshot> {
        let view = self.memory_view();
        let e = self.table.get_mut(id)?;
        e.conn.set_rx_budget(view.budget(&e.conn));
        Some(RxSnapshot::of(&e.conn))
    }

    /// After a call into a connection: moves the totals and counters by
    /// what it changed (O(1), whatever the number of connections), and
    /// applies the orphan limits (`Shard::check_orphan`).
    fn end_call(&mut self, id: ConnId, before: RxSnapshot) {
        let Some(e) = self.table.get(id) else {
            debug_assert!(false, "a connection vanished during a call");
            return;
        };
        let after = RxSnapshot::of(&e.conn);
        self.account(before, after);
        if after.orphan && !before.orphan {
            self.check_orphan(id, true, after);
        }
    }

    /// Moves the totals and counters from one snapshot of a connection to a later one.
    fn account(&mut self, before: RxSnapshot, after: RxSnapshot) {
        let s = &mut self.stats;
        s.recv_buffered = (s.recv_buffered + after.held as u64) - before.held as u64;
        s.ooo_buffered = (s.ooo_buffered + after.ooo as u64) - before.ooo as u64;
        s.send_buffered = (s.send_buffered + after.sent as u64) - before.sent as u64;
        s.orphans = (s.orphans + u64::from(after.orphan)) - u64::from(before.orphan);
        s.ooo_dropped += u64::from(after.ooo_dropped.wrapping_sub(before.ooo_dropped));
        s.window_clamped += u64::from(after.window_clamped.wrapping_sub(before.window_clamped));
        s.mem_dropped += u64::from(after.mem_dropped.wrapping_sub(before.mem_dropped));
    }

    /// An orphan after a call into it (`now` counted in the totals):
    /// reset it instead, as Linux's `tcp_check_oom` does, when it has just
    /// been orphaned beyond `max_orphans` (`tcp_too_many_orphans`, at
    /// close), or when memory is out and it holds more send data than any
    /// connection may always hold (`tcp_out_of_memory`: at close, and
    /// whenever one of its timers fires, as `tcp_out_of_resources` checks
    /// at the retransmission and probe timers: an orphan whose peer keeps
    /// acknowledging drains on). Only orphans are reset for memory:
    /// connections an application holds are cut short in what they may
    /// queue, never reset.
    fn check_orphan(&mut self, id: ConnId, just_orphaned: bool, now: RxSnapshot) {
        let too_many = just_orphaned && self.stats.orphans > self.cfg.max_orphans as u64;
        let oom = !too_many && now.sent > SEND_MEMORY_FLOOR && self.out_of_memory();
        if !too_many && !oom {
            return;
        }
        let Some(e) = self.table.get_mut(id) else { return };
        e.conn.abort();
        let after = RxSnapshot::of(&e.conn);
        if too_many {
            self.stats.orphans_reset += 1;
        } else {
            self.stats.orphans_reset_memory += 1;
        }
        self.account(now, after);
        self.touch(id);
    }

    /// A connection leaves the table: what it held leaves the totals.
    fn unaccount(stats: &mut ShardStats, conn: &Connection) {
        stats.recv_buffered -= conn.recv_held() as u64;
        stats.ooo_buffered -= conn.ooo_queue() as u64;
        stats.send_buffered -= conn.send_queue() as u64;
        stats.orphans -= u64::from(conn.is_orphan());
    }

    /// The receive bytes held, summed over every connection: (all, out of
    /// order). What `stats().recv_buffered` and `ooo_buffered` track without
    /// a scan; O(connections), for tests and audits.
    pub fn recount_buffered(&self) -> (u64, u64) {
        self.table.iter().fold((0, 0), |(h, o), (_, e)| (h + e.conn.recv_held() as u64, o + e.conn.ooo_queue() as u64))
    }

    /// Send-buffer bytes and orphans, summed over every connection: what
    /// `stats().send_buffered` and `orphans` track without a scan;
    /// O(connections), for tests and audits.
    pub fn recount_send(&self) -> (u64, u64) {
        self.table.iter().fold((0, 0), |(b, o), (_, e)| (b + e.conn.send_queue() as u64, o + u64::from(e.conn.is_orphan())))
    }

    /// Connections not finished yet: anything but TIME_WAIT and CLOSED.
    pub fn open_connections(&self) -> usize {
        self.table.iter().filter(|(_, e)| !matches!(e.conn.state(), State::TimeWait | State::Closed)).count()
    }

    /// Starts a shutdown: stops listening (new SYNs get a RST, as to a
    /// closed listening socket) and closes every connection gracefully (a
    /// FIN, or a RST where received data was left unread, or where the
    /// close would exceed `max_orphans` or memory is out).
    pub fn close_all(&mut self) {
        self.listeners.clear();
        let ids: Vec<ConnId> = self.table.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.with_conn(id, |c| c.close());
        }
    }

    /// Resets every connection not finished yet (the end of a shutdown).
    pub fn abort_all(&mut self) {
        let ids: Vec<ConnId> = self.table.iter().filter(|(_, e)| !matches!(e.conn.state(), State::TimeWait | State::Closed)).map(|(id, _)| id).collect();
        for id in ids {
            self.with_conn(id, |c| c.abort());
        }
    }

    /// Queues a gratuitous ARP announcing our address (at start).
    /// (one per address, for the first 64 of them).
    pub fn announce(&mut self) {
        for k in 0..self.cfg.addresses.clamp(1, 64) {
            let ip = self.cfg.address(k);
            let arp = ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: self.cfg.mac,
                source_protocol_addr: ip,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: ip,
            };
            self.push_arp(EthernetAddress::BROADCAST, &arp);
        }
    }

    /// Active open to `remote` from a free ephemeral port of one of our
    /// addresses, chosen as RFC 6056 §3.3.4 recommends (keyed per
    /// destination): the ports of the current address are used up before the
    /// next address is taken. With the NIC's steering known
    /// (`StackConfig::rss`), only ports whose replies land on this shard's
    /// queue are taken; if none is free, any free port is (and its replies
    /// rely on the hand-off between cores).
    pub fn connect(&mut self, now: Instant, remote: SocketAddrV4) -> Result<ConnId, ConnectError> {
        if let Some(rss) = self.cfg.rss.clone() {
            let known_full = self.rss_exhausted == Some((remote, self.table.removals()));
            if rss.reachable() && !known_full {
                match self.open_any_port(now, remote, Some(&rss)) {
                    Err(ConnectError::NoPort) => self.rss_exhausted = Some((remote, self.table.removals())),
                    Ok(id) => {
                        self.stats.active_opens_rss_steered += 1;
                        return Ok(id);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let id = self.open_any_port(now, remote, None)?;
        if !self.cfg.single_queue {
            self.stats.active_open_handoffs += 1;
        }
        Ok(id)
    }

    /// Tries the ephemeral ports of every address once, the current
    /// address first, each in the order RFC 6056 §3.3.4 (algorithm 4,
    /// "double-hash port selection") gives: from the destination's keyed
    /// offset F, plus a counter from a table indexed by a second keyed hash
    /// G, which every try moves on. So the ports towards one destination
    /// reveal nothing of those towards another, and successive opens to one
    /// destination continue where the last search stopped. With `rss`,
    /// only ports whose replies land on this queue are taken (checked before
    /// the table: two look-ups a port).
    fn open_any_port(&mut self, now: Instant, remote: SocketAddrV4, rss: Option<&RssSelector>) -> Result<ConnId, ConnectError> {
        let (lo, hi) = self.cfg.ephemeral_ports;
        let span = u32::from(hi.saturating_sub(lo)) + 1;
        let addresses = self.cfg.addresses.max(1);
        for _ in 0..addresses {
            let addr = self.cfg.address(self.next_addr);
            let (offset, slot) = self.isn.port_hashes(addr, remote, PORT_TABLE);
            // The reply hash's share fixed by the destination and our address.
            let prefix = rss.map(|r| r.reply_prefix(remote, addr));
            for _ in 0..span {
                let k = self.port_table[slot];
                self.port_table[slot] = k.wrapping_add(1);
                let port = lo + (offset.wrapping_add(k) % span) as u16;
                if let (Some(rss), Some(p)) = (rss, prefix) {
                    if !rss.lands_here(p, port) {
                        continue;
                    }
                } else if self.cfg.cores.count > 1 && self.owner(SocketAddrV4::new(addr, port), remote) != self.cfg.cores.index {
                    // Replies may land on any queue: take a port whose
                    // tuple this shard owns, so the hand-off finds it.
                    continue;
                }
                match self.connect_local(now, SocketAddrV4::new(addr, port), remote) {
                    Ok(id) => return Ok(id),
                    Err(ConnectError::TableFull) => return Err(ConnectError::TableFull),
                    Err(_) => {}
                }
            }
            // Every port of this address is taken towards `remote`: the next.
            self.next_addr = (self.next_addr + 1) % addresses;
        }
        Err(ConnectError::NoPort)
    }

    /// Active open from a chosen source port (counted as steered when the
    /// NIC's steering is known and sends its replies here).
    pub fn connect_from(&mut self, now: Instant, port: u16, remote: SocketAddrV4) -> Result<ConnId, ConnectError> {
        let id = self.connect_local(now, SocketAddrV4::new(self.cfg.ip, port), remote)?;
        let steered = self.cfg.rss.as_ref().is_some_and(|r| r.lands_here(r.reply_prefix(remote, self.cfg.ip), port));
        if steered {
            self.stats.active_opens_rss_steered += 1;
        } else if !self.cfg.single_queue {
            self.stats.active_open_handoffs += 1;
        }
        Ok(id)
    }

    fn connect_local(&mut self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> Result<ConnId, ConnectError> {
        if let Some(old) = self.table.lookup(&tuple(local, remote)) {
            if !self.can_reuse_time_wait(now, old) {
                return Err(ConnectError::NoPort);
            }
            self.stats.time_wait_reused += 1;
            self.drop_conn(old);
        }
        if self.table.len() >= self.cfg.max_connections {
            return Err(ConnectError::TableFull);
        }
        let iss = self.isn.isn(now, local, remote);
        let conn = Connection::connect(self.tcp.clone(), local, remote, iss, self.isn.ts_offset(local, remote), now);
        self.stats.active_opens += 1;
        let id = self.table.insert(new_entry(conn, false));
        self.touch(id);
        Ok(id)
    }

    /// `tcp_tw_reuse`: TIME_WAIT for over a second, protected by timestamps
    /// (PAWS rejects the old incarnation's segments).
    fn can_reuse_time_wait(&self, now: Instant, id: ConnId) -> bool {
        let Some(e) = self.table.get(id) else { return true };
        if e.conn.state() == State::Closed {
            // Free unless the application is still owed its `on_closed`
            // (the next `handle_timeout` gives it, and frees the tuple).
            return !(e.announced || e.connecting);
        }
        if !self.cfg.tw_reuse || e.conn.state() != State::TimeWait || !e.conn.timestamps_enabled() {
            return false;
        }
        let entered = e.conn.timer(crate::tcp::Timer::Close).map(|end| end - 2 * self.tcp.msl);
        entered.is_some_and(|t| now - t >= Duration::from_secs(1))
    }

    // ---- receive ----------------------------------------------------

    /// Processes one received Ethernet frame (single-core use: a segment
    /// matching nothing is answered with RST here).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8], app: &mut A) {
        let _ = self.handle_frame_checked(now, frame, app, true);
    }

    /// Processes one frame in a multi-core stack. Unless `last_hop`, a TCP
    /// segment that matches no connection and no listener is not reset but
    /// returned as `Verdict::Forward` to the core that owns its tuple.
    pub fn handle_frame_checked(&mut self, now: Instant, frame: &[u8], app: &mut A, last_hop: bool) -> Verdict {
        self.handle_frame_tx(now, frame, app, last_hop, &mut no_frames())
    }

    /// [`Shard::handle_frame_checked`] with free TX frames lent: during
    /// the callbacks, `Conn::send_with` may write straight into them (see
    /// [`send`]); the runtime submits the frames filled.
    pub fn handle_frame_tx<F: AsMut<[u8]>>(&mut self, now: Instant, frame: &[u8], app: &mut A, last_hop: bool, tx: &mut TxBatch<F>) -> Verdict {
        self.last_hop = last_hop;
        self.verdict = Verdict::Done;
        self.handle_ethernet(&mut Io { now, tx }, frame, app);
        if let Verdict::Forward { .. } = self.verdict {
            self.stats.handoffs_out += 1;
        }
        self.verdict
    }

    /// The shard that owns a 4-tuple nobody has yet: a keyed hash of it
    /// (shards share the key), so every shard names the same owner and a
    /// peer cannot aim at one. Active opens that cannot rely on the NIC's
    /// steering take ports they own by this, so misdirected replies reach
    /// them in one hop.
    pub fn owner(&self, local: SocketAddrV4, remote: SocketAddrV4) -> u16 {
        let count = self.cfg.cores.count.max(1);
        (self.isn.owner_hash(local, remote) % u32::from(count)) as u16
    }

    /// Counts a frame another core handed to us.
    pub fn count_handoff_in(&mut self) {
        self.stats.handoffs_in += 1;
    }

    fn handle_ethernet<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, frame: &[u8], app: &mut A) {
        let now = io.now;
        self.stats.frames_in += 1;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.stats.malformed += 1;
            return;
        };
        let dst = eth.dst_addr();
        if dst != self.cfg.mac && !dst.is_broadcast() {
            self.stats.not_ours += 1;
            return;
        }
        match eth.ethertype() {
            EtherType::Arp => self.handle_arp(now, eth.src_addr(), &frame[ETH..]),
            EtherType::Ipv4 => self.handle_ipv4(io, eth.src_addr(), &frame[ETH..], app),
            EtherType::Unknown(_) => self.stats.not_ours += 1,
        }
    }

    fn handle_arp(&mut self, now: Instant, _src_mac: EthernetAddress, bytes: &[u8]) {
        let Ok(repr) = ArpPacket::new_checked(bytes).and_then(|p| ArpRepr::parse(&p)) else {
            self.stats.malformed += 1;
            return;
        };
        let for_us = self.cfg.owns(repr.target_protocol_addr);
        // RFC 826: merge the sender into the cache if we know it or it asks us.
        let sender = repr.source_protocol_addr;
        if (for_us || self.arp.knows(sender)) && self.cfg.on_link(sender) && repr.source_hardware_addr.is_unicast() {
            let waiting = self.arp.learn(now, sender, repr.source_hardware_addr);
            for mut frame in waiting {
                frame[0..6].copy_from_slice(&repr.source_hardware_addr.0);
                self.push_control(frame);
            }
        }
        if for_us && repr.operation == ArpOperation::Request {
            self.stats.arp_requests_answered += 1;
            let reply = ArpRepr {
                operation: ArpOperation::Reply,
                source_hardware_addr: self.cfg.mac,
                source_protocol_addr: repr.target_protocol_addr,
                target_hardware_addr: repr.source_hardware_addr,
                target_protocol_addr: sender,
            };
            self.push_arp(repr.source_hardware_addr, &reply);
        }
    }

    fn handle_ipv4<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, src_mac: EthernetAddress, bytes: &[u8], app: &mut A) {
        let now = io.now;
        let Ok(packet) = Ipv4Packet::new_checked(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        if packet.is_fragment() {
            self.stats.ip_fragments += 1;
            return;
        }
        let repr = match Ipv4Repr::parse(&packet, true) {
            Ok(r) => r,
            Err(_) => {
                if packet.version() == 4 && !packet.verify_checksum() {
                    self.stats.ip_checksum_errors += 1;
                } else {
                    self.stats.malformed += 1;
                }
                return;
            }
        };
        if !self.cfg.owns(repr.dst_addr) {
            self.stats.not_ours += 1;
            return;
        }
        // A neighbour that talks to us is alive: learn it if unknown, and
        // keep its entry from expiring while it talks from the same MAC (as
        // Linux confirms neighbours from upper-layer progress), so a busy
        // connection does not stall on a new ARP round every minute. A
        // different MAC is left to ARP to settle.
        if self.cfg.on_link(repr.src_addr) && src_mac.is_unicast() {
            match self.arp.lookup(now, repr.src_addr) {
                None => {
                    let waiting = self.arp.learn(now, repr.src_addr, src_mac);
                    for frame in waiting {
                        self.push_control(frame);
                    }
                }
                Some(mac) if mac == src_mac => self.arp.confirm(now, repr.src_addr),
                Some(_) => {}
            }
        }
        let payload = packet.payload();
        match repr.protocol {
            IpProtocol::Icmp => self.handle_icmp(src_mac, &repr, payload),
            IpProtocol::Tcp => self.handle_tcp(io, &repr, payload, app),
            _ => self.stats.not_ours += 1,
        }
    }

    fn handle_icmp(&mut self, src_mac: EthernetAddress, ip: &Ipv4Repr, bytes: &[u8]) {
        let Ok(echo) = IcmpPacket::new_checked(bytes).and_then(|p| IcmpEchoRepr::parse(&p)) else {
            self.stats.malformed += 1;
            return;
        };
        if echo.kind != IcmpEchoKind::Request {
            return;
        }
        let reply = IcmpEchoRepr { kind: IcmpEchoKind::Reply, ..echo };
        let ipr = Ipv4Repr { src_addr: ip.dst_addr, dst_addr: ip.src_addr, protocol: IpProtocol::Icmp, payload_len: reply.buffer_len(), ttl: 64 };
        let mut frame = vec![0u8; HEADROOM + reply.buffer_len()];
        reply.emit(&mut IcmpPacket::new_unchecked(&mut frame[HEADROOM..]));
        ipr.emit(&mut Ipv4Packet::new_unchecked(&mut frame[ETH..]));
        EthernetRepr { src_addr: self.cfg.mac, dst_addr: src_mac, ethertype: EtherType::Ipv4 }.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
        self.stats.icmp_echo_replies += 1;
        self.push_control(frame);
    }

    fn handle_tcp<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, ip: &Ipv4Repr, bytes: &[u8], app: &mut A) {
        let seg = match TcpPacket::new_checked(bytes) {
            Ok(p) => match TcpRepr::parse(&p, ip.src_addr, ip.dst_addr, true) {
                Ok(s) => s,
                Err(_) => {
                    if p.verify_checksum(ip.src_addr, ip.dst_addr) {
                        self.stats.malformed += 1;
                    } else {
                        self.stats.tcp_checksum_errors += 1;
                    }
                    return;
                }
            },
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        self.stats.segments_in += 1;
        let local = SocketAddrV4::new(ip.dst_addr, seg.dst_port);
        let remote = SocketAddrV4::new(ip.src_addr, seg.src_port);
        if let Some(id) = self.table.lookup(&tuple(local, remote)) {
            let e = self.table.get(id).expect("indexed entry exists");
            match e.conn.state() {
                // RFC 6191: a new SYN may take over a TIME_WAIT 4-tuple.
                State::TimeWait if e.conn.time_wait_accepts_syn(&seg) => self.drop_conn(id),
                // Not retired yet (that waits for `handle_timeout`): the
                // application may still be owed its `on_closed`.
                State::Closed => self.retire(id, app),
                _ => {
                    self.deliver(io, id, &seg, app);
                    return;
                }
            }
        }
        self.handle_unmatched(io, local, remote, &seg, app);
    }

    fn handle_unmatched<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, local: SocketAddrV4, remote: SocketAddrV4, seg: &TcpRepr<'_>, app: &mut A) {
        let now = io.now;
        let full = self.table.len() >= self.cfg.max_connections;
        let new_syn = seg.flags.syn() && !seg.flags.ack() && !seg.flags.rst();
        if let Some(listener) = self.listeners.get_mut(&seg.dst_port) {
            let f = seg.flags;
            if f.syn() && !f.ack() && !f.rst() {
                if full {
                    self.stats.refused_full += 1;
                } else {
                    let mut out = vec![0u8; HEADROOM + 60];
                    match listener.on_syn(now, local, remote, seg, &mut out[HEADROOM..]) {
                        SynOutcome::Accept(conn) => {
                            self.stats.passive_opens += 1;
                            let mut entry = new_entry(*conn, true);
                            entry.half_open = true;
                            let id = self.table.insert(entry);
                            self.touch(id);
                        }
                        SynOutcome::Cookie(n) => {
                            out.truncate(HEADROOM + n);
                            self.push_tcp_control(now, out, local, remote);
                        }
                        SynOutcome::Drop => {}
                    }
                    return;
                }
            } else if !full {
                if let Some(conn) = listener.on_cookie_ack(now, local, remote, seg) {
                    self.stats.passive_opens += 1;
                    let id = self.table.insert(new_entry(*conn, true));
                    // `on_accept` may send (or close): accounted as any call.
                    if let Some(before) = self.begin_call(id) {
                        self.after_io(io, id, app);
                        self.end_call(id, before);
                    }
                    self.deliver(io, id, seg, app);
                    return;
                }
            }
        }
        // Not ours here; the core owning the tuple may have it. Every core
        // has the same listeners, so a new SYN is settled here either way.
        if !self.last_hop && !new_syn && self.cfg.cores.count > 1 {
            let core = self.owner(local, remote);
            if core != self.cfg.cores.index {
                self.verdict = Verdict::Forward { core };
                return;
            }
        }
        // RFC 9293 §3.10.7.1: no connection, no listener (or no room): reset.
        if let Some(rst) = reset_for(seg) {
            let mut out = vec![0u8; HEADROOM + rst.header_len()];
            rst.emit_header(&mut out[HEADROOM..]);
            self.stats.resets_sent += 1;
            self.push_tcp_control(now, out, local, remote);
        }
    }

    /// Feeds a segment to a connection; in-order payload goes to the
    /// application in place.
    fn deliver<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, id: ConnId, seg: &TcpRepr<'_>, app: &mut A) {
        let Some(e) = self.table.get_mut(id) else { return };
        if e.half_open && e.conn.state() == State::SynReceived && seg.flags.ack() {
            let port = e.conn.local().port();
            if let Some(l) = self.listeners.get_mut(&port) {
                if !l.can_complete() {
                    return; // accept queue full: the peer will resend its ACK
                }
            }
        }
        let Some(before) = self.begin_call(id) else { return };
        let Some(e) = self.table.get_mut(id) else { return };
        let mut delivery = e.conn.handle_segment_direct(io.now, seg);
        let direct = delivery.payload();
        // A connection's first data can ride on the handshake's last ACK:
        // announce it before handing over data.
        if !direct.is_empty() && (e.announced || !delivery.state().is_synchronized()) {
            let n = call(Sender::new(&self.cfg, &self.arp, &mut self.stats, io), id, delivery.handle(), &mut e.state, |c| app.on_data(c, direct));
            delivery.complete(n);
        } else {
            delivery.complete(0);
        }
        self.after_io(io, id, app);
        self.end_call(id, before);
    }

    /// Runs the application callbacks for a connection's events and keeps
    /// its bookkeeping (dirty list, timer, TIME_WAIT count) current.
    fn after_io<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, id: ConnId, app: &mut A) {
        loop {
            let Some(e) = self.table.get_mut(id) else { return };
            let Some(ev) = e.conn.poll_event() else { break };
            match ev {
                Event::Connected => {
                    if e.half_open {
                        e.half_open = false;
                        if let Some(l) = self.listeners.get_mut(&e.conn.local().port()) {
                            l.on_established(id, true);
                            let _ = l.accept();
                        }
                    }
                    e.announced = true;
                    e.connecting = false;
                    let passive = e.passive;
                    call(Sender::new(&self.cfg, &self.arp, &mut self.stats, io), id, Handle::new(&mut e.conn), &mut e.state, |c| {
                        if passive {
                            app.on_accept(c);
                        } else {
                            app.on_connected(c);
                        }
                    });
                    // Data that arrived with the handshake waits in the buffer.
                    self.offer_buffered(io, id, app);
                }
                Event::Readable => self.offer_buffered(io, id, app),
                Event::Writable => {
                    // Data the application left unread for lack of send space
                    // (an echo) is offered again now that there is space;
                    // then `on_writable`, which so sees the receive queue as
                    // it is (an echo whose peer has closed closes there once
                    // it has read everything).
                    self.offer_buffered(io, id, app);
                    if let Some(e) = self.table.get_mut(id) {
                        call(Sender::new(&self.cfg, &self.arp, &mut self.stats, io), id, Handle::new(&mut e.conn), &mut e.state, |c| app.on_writable(c));
                    }
                }
                Event::PeerClosed => {
                    // Anything still buffered comes before the FIN.
                    self.offer_buffered(io, id, app);
                    if let Some(e) = self.table.get_mut(id) {
                        call(Sender::new(&self.cfg, &self.arp, &mut self.stats, io), id, Handle::new(&mut e.conn), &mut e.state, |c| app.on_peer_closed(c));
                    }
                }
                Event::Closed(_) => {
                    if e.half_open {
                        e.half_open = false;
                        if let Some(l) = self.listeners.get_mut(&e.conn.local().port()) {
                            l.on_half_open_closed();
                        }
                    }
                }
            }
        }
        self.touch(id);
        self.account_time_wait(io.now, id, app);
    }

    /// Offers buffered received data to the application (copied out of the
    /// ring into scratch, so the callback may use the connection freely).
    fn offer_buffered<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, id: ConnId, app: &mut A) {
        let Some(e) = self.table.get_mut(id) else { return };
        if !e.announced {
            return;
        }
        loop {
            let (a, b) = e.conn.recv_slices();
            if a.is_empty() {
                return;
            }
            self.scratch.clear();
            self.scratch.extend_from_slice(a);
            self.scratch.extend_from_slice(b);
            e.conn.begin_read();
            let scratch = &self.scratch;
            let n = call(Sender::new(&self.cfg, &self.arp, &mut self.stats, io), id, Handle::new(&mut e.conn), &mut e.state, |c| app.on_data(c, scratch)).min(scratch.len());
            e.conn.end_read(n);
            if n == 0 {
                return;
            }
        }
    }

    /// TIME_WAIT bookkeeping. For the application a connection in TIME_WAIT
    /// is finished (as a closed socket is in Linux): it gets `on_closed` now.
    fn account_time_wait(&mut self, now: Instant, id: ConnId, app: &mut A) {
        let Some(e) = self.table.get_mut(id) else { return };
        let tw = e.conn.state() == State::TimeWait;
        if tw && e.announced {
            e.announced = false;
            app.on_closed(id, std::mem::take(&mut e.state), crate::tcp::CloseReason::Normal);
        }
        if tw && !e.in_time_wait && !e.tw_skipped {
            if self.time_wait >= self.cfg.max_time_wait {
                // tcp_max_tw_buckets: skip TIME_WAIT rather than hold more,
                // but only after our ACK of the peer's FIN has gone out (else
                // the peer sits in LAST_ACK resending its FIN).
                self.stats.time_wait_overflow += 1;
                e.tw_skipped = true;
                e.conn.end_time_wait(now);
                self.touch(id);
                return;
            }
            e.in_time_wait = true;
            self.time_wait += 1;
        } else if !tw && e.in_time_wait {
            e.in_time_wait = false;
            self.time_wait -= 1;
        }
    }

    /// Marks a connection as possibly having output, and (re)schedules its timer.
    fn touch(&mut self, id: ConnId) {
        let Some(e) = self.table.get_mut(id) else { return };
        if !e.dirty {
            e.dirty = true;
            self.dirty.push(id);
        }
        if let Some(at) = e.conn.poll_timeout() {
            if at.as_nanos() < e.scheduled {
                e.scheduled = at.as_nanos();
                self.wheel.schedule(id.0, at);
            }
        }
    }

    /// Removes a connection without telling the application (TIME_WAIT
    /// reuse or overflow: it was already told it closed).
    fn drop_conn(&mut self, id: ConnId) {
        if let Some(e) = self.table.remove(id) {
            Self::unaccount(&mut self.stats, &e.conn);
            if e.in_time_wait {
                self.time_wait -= 1;
            }
            self.stats.retire(e.conn.stats());
        }
    }

    // ---- timers -----------------------------------------------------

    /// The next instant `handle_timeout` has work, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let wheel = self.wheel.next_deadline();
        let arp = self.arp.next_deadline();
        let now_work = (!self.closed.is_empty()).then_some(Instant::ZERO);
        [wheel, arp, now_work].into_iter().flatten().min()
    }

    /// Fires due connection timers, retries ARP, and retires closed
    /// connections (calling `on_closed`).
    pub fn handle_timeout(&mut self, now: Instant, app: &mut A) {
        let mut expired = std::mem::take(&mut self.expired);
        self.wheel.expire(now, &mut expired);
        for raw in expired.drain(..) {
            let id = ConnId(raw);
            let Some(before) = self.begin_call(id) else { continue };
            let Some(e) = self.table.get_mut(id) else { continue };
            e.scheduled = UNSCHEDULED;
            let due = e.conn.poll_timeout().is_some_and(|t| t <= now);
            if due {
                e.conn.handle_timeout(now);
            }
            self.after_io(&mut Io { now, tx: &mut no_frames() }, id, app);
            self.end_call(id, before);
            // An orphan's timer: reset it if memory is out (see `check_orphan`).
            if let Some(e) = self.table.get(id).filter(|e| due && e.conn.is_orphan()) {
                let snapshot = RxSnapshot::of(&e.conn);
                self.check_orphan(id, false, snapshot);
            }
        }
        self.expired = expired;

        if self.arp.due(now) {
            let work = self.arp.tick(now);
            self.stats.arp_unresolved_drops += work.dropped as u64;
            for ip in work.requests {
                self.request_arp(ip);
            }
        }

        for id in std::mem::take(&mut self.closed) {
            if self.table.get(id).is_some_and(|e| e.conn.is_closed()) {
                self.retire(id, app);
            }
        }
    }

    /// Removes a CLOSED connection, calling `on_closed` if the application
    /// is owed it: a connection it was told about, or an active open that
    /// never connected (refused, timed out, aborted), whose id it has.
    fn retire(&mut self, id: ConnId, app: &mut A) {
        let Some(e) = self.table.remove(id) else { return };
        let reason = e.conn.close_reason();
        Self::unaccount(&mut self.stats, &e.conn);
        if e.in_time_wait {
            self.time_wait -= 1;
        }
        self.stats.retire(e.conn.stats());
        if e.announced || e.connecting {
            app.on_closed(id, e.state, reason);
        }
    }

    // ---- transmit ---------------------------------------------------

    /// Whether `poll_transmit` may have a frame: control frames are queued or
    /// a connection was touched. Cheap, for a busy loop that would otherwise
    /// take a TX frame just to hand it back.
    pub fn wants_transmit(&self) -> bool {
        !self.control.is_empty() || !self.dirty.is_empty()
    }

    /// Fills free frames of `tx` with what there is to send (control
    /// frames first, then the connections' segments), until nothing is
    /// left or no frame is free; returns how many it filled.
    pub fn poll_transmit_into<F: AsMut<[u8]>>(&mut self, now: Instant, tx: &mut TxBatch<F>) -> usize {
        let mut filled = 0;
        loop {
            let mut more = false;
            let lent = tx.fill(|buf| match self.poll_transmit(now, buf) {
                Some(n) => {
                    more = true;
                    n
                }
                None => 0,
            });
            if !lent || !more {
                return filled;
            }
            filled += 1;
        }
    }

    /// Writes the next frame to send into `buf` (at least MTU + 14 bytes).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if let Some(frame) = self.control.pop_front() {
            let n = frame.len().min(buf.len());
            buf[..n].copy_from_slice(&frame[..n]);
            self.stats.frames_out += 1;
            return Some(n);
        }
        let room = (self.cfg.mtu + ETH).min(buf.len());
        // Sending changes no buffered totals, only the window advertised.
        let view = self.memory_view();
        while let Some(&id) = self.dirty.last() {
            let Some(e) = self.table.get_mut(id) else {
                self.dirty.pop();
                continue;
            };
            e.conn.set_rx_budget(view.budget(&e.conn));
            let clamped = e.conn.stats().window_clamped;
            let sent = e.conn.poll_transmit(now, &mut buf[HEADROOM..room]);
            self.stats.window_clamped += u64::from(e.conn.stats().window_clamped.wrapping_sub(clamped));
            let Some(len) = sent else {
                e.dirty = false;
                self.dirty.pop();
                if e.conn.state() == State::Closed {
                    self.closed.push(id);
                }
                self.touch_timer_only(id);
                continue;
            };
            let (local, remote) = (e.conn.local(), e.conn.remote());
            self.stats.segments_out += 1;
            let hop = self.next_hop(*remote.ip());
            let mac = hop.and_then(|h| self.arp.lookup(now, h));
            self.wrap(buf, len, *local.ip(), *remote.ip(), mac.unwrap_or(EthernetAddress([0; 6])));
            match (hop, mac) {
                (_, Some(_)) => {
                    self.stats.frames_out += 1;
                    return Some(HEADROOM + len);
                }
                (Some(hop), None) => {
                    let (fresh, dropped) = self.arp.queue(now, hop, buf[..HEADROOM + len].to_vec());
                    self.stats.arp_unresolved_drops += dropped as u64;
                    if fresh {
                        self.request_arp(hop);
                        return self.poll_transmit(now, buf);
                    }
                }
                (None, None) => self.stats.arp_unresolved_drops += 1,
            }
        }
        None
    }

    /// After output, a connection's timer may have moved earlier (a new RTO).
    fn touch_timer_only(&mut self, id: ConnId) {
        let Some(e) = self.table.get_mut(id) else { return };
        if let Some(at) = e.conn.poll_timeout() {
            if at.as_nanos() < e.scheduled {
                e.scheduled = at.as_nanos();
                self.wheel.schedule(id.0, at);
            }
        }
    }

    fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        send::next_hop(&self.cfg, dst)
    }

    fn wrap(&self, buf: &mut [u8], tcp_len: usize, src: Ipv4Addr, dst: Ipv4Addr, mac: EthernetAddress) {
        send::wrap(&self.cfg, buf, tcp_len, src, dst, mac);
    }

    fn push_control(&mut self, frame: Vec<u8>) {
        if self.control.len() >= CONTROL_LIMIT {
            self.stats.control_drops += 1;
            return;
        }
        self.control.push_back(frame);
    }

    /// A TCP segment written at `frame[HEADROOM..]` without a connection:
    /// checksum it, wrap it, and send it (or wait for ARP).
    fn push_tcp_control(&mut self, now: Instant, mut frame: Vec<u8>, local: SocketAddrV4, remote: SocketAddrV4) {
        let len = frame.len() - HEADROOM;
        TcpPacket::new_unchecked(&mut frame[HEADROOM..]).fill_checksum(*local.ip(), *remote.ip());
        let Some(hop) = self.next_hop(*remote.ip()) else { return };
        // The peer just sent to us, so its MAC is normally known.
        let mac = self.arp.lookup(now, hop);
        self.wrap(&mut frame, len, *local.ip(), *remote.ip(), mac.unwrap_or(EthernetAddress::BROADCAST));
        if mac.is_some() {
            self.push_control(frame);
        }
    }

    fn push_arp(&mut self, dst: EthernetAddress, arp: &ArpRepr) {
        let mut frame = vec![0u8; ETH + arp.buffer_len()];
        EthernetRepr { src_addr: self.cfg.mac, dst_addr: dst, ethertype: EtherType::Arp }.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
        arp.emit(&mut ArpPacket::new_unchecked(&mut frame[ETH..]));
        self.push_control(frame);
    }

    fn request_arp(&mut self, ip: Ipv4Addr) {
        let req = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: self.cfg.mac,
            source_protocol_addr: self.cfg.ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ip,
        };
        self.push_arp(EthernetAddress::BROADCAST, &req);
    }
}

/// What a call that may reach the application carries down: the time,
/// and the TX frames the runtime lent for it (an empty batch when none
/// were: `Conn::send_with` then writes into the send buffer).
struct Io<'t, F> {
    now: Instant,
    tx: &'t mut TxBatch<F>,
}

/// No TX frames (for the calls made without a batch); allocates nothing.
fn no_frames() -> TxBatch<Vec<u8>> {
    TxBatch::default()
}

/// The one place a `Conn` is made for an application callback: the
/// connection as the application may use it, its state, and the shard's
/// `Sender` over the lent frames for `Conn::send_with`.
fn call<S, F: AsMut<[u8]>, R>(mut out: Sender<'_, F>, id: ConnId, conn: Handle<'_>, state: &mut S, f: impl FnOnce(&mut Conn<'_, S>) -> R) -> R {
    f(&mut Conn::with_frames(id, conn, state, &mut out))
}

fn new_entry<S: Default>(conn: Connection, passive: bool) -> Entry<S> {
    Entry { conn, state: S::default(), scheduled: UNSCHEDULED, dirty: false, half_open: false, announced: false, in_time_wait: false, tw_skipped: false, passive, connecting: !passive }
}
