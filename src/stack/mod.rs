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
//!
//! # Rooms
//! Each part of the shard has its own file, owning its state where it has
//! any: `config` and `stats`; `ipv4` (Ethernet, ARP and IPv4 on receive)
//! and `icmp` (echo); `demux` (a segment to its connection, listener,
//! owning core, or a RST; returns a [`Verdict`]); `accept` (listeners, SYN
//! queue, cookies); `calls` (calls into a connection and the callbacks
//! they lead to; the one place a callback's `Conn` is made); `memory` (the
//! receive and send budget, orphan checks); `time_wait`; `ports` (active
//! opens); `transmit` (control frames in a bounded arena, and output into
//! the caller's frames); `send` (`Conn::send_with`'s direct path into lent
//! TX frames); `arp`, `table`, `wheel`, `batch`.

mod accept;
pub mod arp;
pub mod batch;
mod calls;
mod config;
mod demux;
mod icmp;
pub mod inspect;
mod ipv4;
mod memory;
mod ports;
pub mod send;
mod stats;
pub mod table;
mod time_wait;
mod transmit;
pub mod wheel;

use std::net::SocketAddrV4;
use std::sync::Arc;

use crate::app::{App, ConnId};
use crate::tcp::isn::IsnGenerator;
use crate::tcp::{Config, Connection, Listener, State};
use crate::time::Instant;

use accept::Accept;
use arp::NeighborCache;
pub use batch::TxBatch;
use calls::{call, no_frames, Io};
pub use config::{Cores, StackConfig};
use memory::RxSnapshot;
use ports::Ports;
pub use stats::ShardStats;
use table::{ConnTable, Entry};
use time_wait::TimeWait;
use transmit::{Control, Slot, CONTROL_LIMIT, CONTROL_SLOTS};
use wheel::TimerWheel;

const ETH: usize = 14;
const IP: usize = 20;
const HEADROOM: usize = ETH + IP;
const UNSCHEDULED: u64 = u64::MAX;
/// Received data a connection may always hold when send buffers have used
/// up `memory_limit` (Linux's `tcp_rmem[0]`): send data never starves a
/// receive side entirely, which between two stacks both full of send data
/// would stop either from acknowledging the other's. Receive memory alone
/// still never exceeds the limit.
const RECV_MEMORY_FLOOR: usize = 4096;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("no free source port for that destination")]
    NoPort,
    #[error("the connection table is full")]
    TableFull,
}

/// One core's stack: see the module docs.
pub struct Shard<A: App> {
    cfg: StackConfig,
    tcp: Arc<Config>,
    isn: IsnGenerator,
    cookie_key: [u8; 16],
    table: ConnTable<A::State>,
    accept: Accept,
    arp: NeighborCache<Slot>,
    wheel: TimerWheel,
    dirty: Vec<ConnId>,
    closed: Vec<ConnId>,
    control: Control,
    expired: Vec<u32>,
    scratch: Vec<u8>,
    time_wait: TimeWait,
    ports: Ports,
    stats: ShardStats,
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
            ports: Ports::new(),
            control: Control::new(cfg.mtu + ETH, CONTROL_SLOTS, CONTROL_LIMIT),
            time_wait: TimeWait::new(cfg.max_time_wait),
            cfg,
            tcp,
            isn: IsnGenerator::new(secret),
            cookie_key,
            table: ConnTable::default(),
            accept: Accept::default(),
            wheel: TimerWheel::new(),
            dirty: Vec::new(),
            closed: Vec::new(),
            // Timers due in one call: grows past this only at a peak.
            expired: Vec::with_capacity(64),
            scratch: Vec::new(),
            stats: ShardStats::default(),
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
        self.accept.iter()
    }
    pub fn time_wait_count(&self) -> usize {
        self.time_wait.held()
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
        self.accept.clear();
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
        let verdict = self.handle_ethernet(&mut Io { now, tx }, frame, app, last_hop);
        if let Verdict::Forward { .. } = verdict {
            self.stats.handoffs_out += 1;
        }
        verdict
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

    /// Removes a connection without telling the application (TIME_WAIT
    /// reuse or overflow: it was already told it closed).
    fn drop_conn(&mut self, id: ConnId) {
        if let Some(e) = self.table.remove(id) {
            Self::unaccount(&mut self.stats, &e.conn);
            if e.in_time_wait {
                self.time_wait.leave();
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
            self.stats.arp_unresolved_drops += work.dropped.len() as u64;
            for slot in work.dropped {
                self.control.release(slot);
            }
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
    pub(super) fn retire(&mut self, id: ConnId, app: &mut A) {
        let Some(e) = self.table.remove(id) else { return };
        let reason = e.conn.close_reason();
        Self::unaccount(&mut self.stats, &e.conn);
        if e.in_time_wait {
            self.time_wait.leave();
        }
        self.stats.retire(e.conn.stats());
        if e.announced || e.connecting {
            app.on_closed(id, e.state, reason);
        }
    }
}

fn new_entry<S: Default>(conn: Connection, passive: bool) -> Entry<S> {
    Entry { conn, state: S::default(), scheduled: UNSCHEDULED, dirty: false, half_open: false, announced: false, in_time_wait: false, tw_skipped: false, passive, connecting: !passive }
}
