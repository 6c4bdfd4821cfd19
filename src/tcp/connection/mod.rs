//! One TCP connection: the transmission control block and its state machine.
//!
//! # Driving a connection
//! Inputs are `handle_*` calls; outputs are `poll_*` calls, made in this order
//! after any batch of inputs:
//! 1. [`Connection::poll_transmit`] until it returns `None`, each call writing
//!    one TCP segment (header and payload, checksummed) into a buffer the
//!    caller owns;
//! 2. [`Connection::poll_timeout`] for the next deadline, to be fed back as
//!    [`Connection::handle_timeout`];
//! 3. [`Connection::poll_event`] until it returns `None`.
//!
//! Inputs only record what must be sent; nothing is emitted until
//! `poll_transmit`. A caller that feeds a whole batch of segments before
//! polling therefore gets one coalesced ACK for the batch.
//!
//! # Receiving without a copy
//! [`Connection::handle_segment`] copies in-order payload into the receive
//! buffer. [`Connection::handle_segment_direct`] instead returns a
//! [`Delivery`] guard with the in-order part of the payload when nothing is
//! buffered ahead of it, so the caller can hand it to the application in
//! place; [`Delivery::complete`] then takes in whatever the application did
//! not consume. The guard holds the connection meanwhile, so nothing else
//! can be done with it before (see `direct.rs`).
//!
//! # Sending without a copy
//! [`Connection::send`] copies the caller's bytes into the send buffer, and
//! `poll_transmit` copies them again into the segment. With
//! [`Connection::transmit_with`] the application writes new data straight
//! into the payload of the segment being built (in the caller's TX frame),
//! when that data is exactly what `poll_transmit` would send next; the
//! send buffer gets one copy, for retransmission. When it declines,
//! [`Connection::send_with`] lets the application write into the send
//! buffer's free space instead. Called during a direct delivery, it
//! acknowledges the data being delivered but offers no new window until
//! `Delivery::complete` (which then sends a window update if the window the
//! peer sees has halved).
//!
//! # Shard-wide limits
//! A connection caps its own buffers (`send_buffer`, `recv_buffer`); limits
//! shared by all connections of a shard (reassembly memory, receive-memory
//! pressure) are the shard's to track. Before it feeds a segment or polls for
//! output, the shard tells the connection what it may still use through
//! [`Connection::set_rx_budget`]; the engine never sees totals, and holding
//! back is graceful: out-of-order data beyond the budget is dropped (the
//! peer retransmits it), and the advertised window stops growing but its
//! right edge is never moved left (RFC 9293 §3.8.6).
//!
//! # Invariants
//! - `snd_una <= snd_nxt <= snd_max`; `tx` holds the bytes from `tx_seq` on.
//! - The receive buffer holds the bytes from `rcv_nxt - rx.len()`; out-of-order
//!   data sits beyond them in the same buffer, tracked by `ooo`.
//! - No input from the peer can make this code panic: it counts and drops.

mod direct;
mod input;
mod output;
mod recent_sacks;
mod recovery;
mod timers;

use std::net::SocketAddrV4;
use std::sync::Arc;

use crate::tcp::assembler::Assembler;
use crate::tcp::congestion::{AnyController, Controller};
use crate::tcp::rack::Rack;
use crate::tcp::ring::RingBuffer;
use crate::tcp::rtt::RttEstimator;
use crate::tcp::scoreboard::Scoreboard;
use crate::tcp::Config;
use crate::time::Instant;
use crate::wire::{SeqNumber, TcpRepr};

pub use direct::{Delivery, Handle};
use recent_sacks::RecentSacks;
pub use timers::Timer;
use timers::Timers;

/// The RFC 9293 §3.3.2 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl State {
    /// Names as `ss -tan` prints them.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECV",
            State::Established => "ESTAB",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        }
    }

    /// RFC 9293: the states after the handshake completed.
    pub fn is_synchronized(self) -> bool {
        !matches!(self, State::Closed | State::Listen | State::SynSent | State::SynReceived)
    }
}

/// Why a connection reached CLOSED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both FINs exchanged and acknowledged (or TIME_WAIT expired).
    Normal,
    /// The peer reset the connection.
    Reset,
    /// The peer refused the connection (RST in reply to our SYN).
    Refused,
    /// Retransmissions, SYN retries, keepalive or zero-window probes, or
    /// an orphan's retries were exhausted, or the user timeout ran out; we
    /// sent a RST (none for an unanswered SYN).
    TimedOut,
    /// The application aborted (or closed with unread data); we sent a RST.
    Aborted,
}

/// What the application learns from a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed.
    Connected,
    /// Received data is waiting in the receive buffer.
    Readable,
    /// Send-buffer space freed after a `send` was cut short.
    Writable,
    /// The peer sent FIN: no more data will arrive.
    PeerClosed,
    /// The connection is finished; no further events follow.
    Closed(CloseReason),
}

/// Errors of the application calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the connection is not open for sending")]
    InvalidState,
}

/// Which direction `shutdown` closes. Only the write side sends anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    Write,
}

/// Loss recovery phase (RFC 6675 / RFC 6582 / RFC 6298 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    None,
    /// Fast recovery until `recover` (HighData at entry) is acknowledged.
    Fast,
    /// After a retransmission timeout, until `recover` is acknowledged: the
    /// data deemed lost is resent in slow start.
    Timeout,
}

// Pending event bits.
const EV_CONNECTED: u8 = 1;
const EV_READABLE: u8 = 2;
const EV_WRITABLE: u8 = 4;
const EV_PEER_CLOSED: u8 = 8;
const EV_CLOSED: u8 = 16;

// Flags.
const F_FIN_QUEUED: u32 = 1; // the application shut down the write side
const F_APP_CLOSED: u32 = 2; // close() was called: no reads follow
const F_ACK_NOW: u32 = 4; // an ACK must go out at the next poll_transmit
const F_SEND_RST: u32 = 8; // a RST must go out (abort, give-up)
const F_WANT_WRITABLE: u32 = 16; // a send was cut short
const F_PROBE: u32 = 32; // a zero-window or keepalive probe is due
const F_SACK_OK: u32 = 64; // SACK negotiated
const F_TS_OK: u32 = 128; // timestamps negotiated
const F_WS_OK: u32 = 256; // window scaling negotiated
const F_DIRECT_PENDING: u32 = 512; // a Delivery is pending (handle_segment_direct until Delivery::complete)
const F_TIMED: u32 = 1024; // rtt_seq is being timed (Karn)
const F_FIN_RECEIVED: u32 = 2048; // a FIN was seen at fin_seq, waiting for the data before it
const F_RXT_UNA: u32 = 4096; // the next retransmission goes whatever the pipe (SND.UNA's segment without SACK)
const F_CWND_LIMITED: u32 = 8192; // sending was held back by cwnd since the last ACK
const F_CLOSE_DEFERRED: u32 = 16384; // close() during a delivery: decided when it ends
const F_READING: u32 = 32768; // the application is reading buffered data (begin_read/end_read)
const F_LOSS_PROBE: u32 = 1 << 16; // a tail loss probe is due (RFC 8985 §7.3)
const F_UNDO: u32 = 1 << 17; // this fast recovery's reduction may yet prove spurious
const F_UNDO_STAMPED: u32 = 1 << 18; // undo_stamp holds its first retransmission's time
const F_DSACK: u32 = 1 << 19; // the next ACK reports `dsack` (RFC 2883)
const F_DIRECT_OVER_BUDGET: u32 = 1 << 20; // this direct delivery may be cut back in Delivery::complete: RCV.NXT is not final
const F_WINDOW_HELD: u32 = 1 << 21; // a segment sent during a direct delivery offered no new window
const F_RST_REPLY: u32 = 1 << 22; // a bare RST at `rst_seq` answers an unacceptable ACK in SYN-SENT (RFC 9293 §3.10.7.3)
const F_OOW_ACKED: u32 = 1 << 28; // last_oow_ack holds when an invalid segment was last answered
const F_DATA_SENT: u32 = 1 << 29; // last_send holds when a data segment last left

/// Counters a connection keeps for `ss -i` and stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    pub segs_in: u32,
    pub segs_out: u32,
    pub retransmits: u32,
    /// Retransmission timeouts.
    pub timeouts: u32,
    /// Fast-recovery episodes entered.
    pub recoveries: u32,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub out_of_window: u32,
    pub challenge_acks: u32,
    pub dup_segments: u32,
    /// Out-of-order segments not stored: over the receive buffer, the range
    /// table, or the shard's reassembly or memory budget.
    pub ooo_dropped: u32,
    /// Segments whose advertised window was held below the free receive
    /// buffer by the shard's memory pressure.
    pub window_clamped: u32,
    /// In-order segments whose data was (partly) not stored because the
    /// shard's receive memory was exhausted (Linux's TCPRcvQDrop).
    pub mem_dropped: u32,
    /// Tail loss probes sent (RFC 8985 §7.3).
    pub loss_probes: u32,
    /// Losses a probe repaired (RFC 8985 §7.4), each a congestion response.
    pub probe_recoveries: u32,
    /// Retransmissions RACK found lost (RFC 8985 §6.2).
    pub lost_retransmits: u32,
    /// D-SACKs received (RFC 2883): data the peer got twice.
    pub dsacks: u32,
    /// Reordered duplicate ACKs PAWS let through (RFC 7323 §5.3).
    pub disordered_acks: u32,
    /// Fast recoveries found spurious and undone (RFC 3522, RFC 4015).
    pub undos: u32,
    /// ACKs not sent for out-of-window, PAWS-rejected or TIME_WAIT
    /// arrivals, held back by `Config::invalid_ack_interval`.
    pub invalid_acks_limited: u32,
    /// Out-of-order ranges dropped so that in-order data fitted the
    /// shard's receive memory (Linux's OfoPruned; a SACK renege).
    pub ooo_pruned: u32,
}

/// What a connection may still use of its shard's memory, set by the shard
/// before each call from its shard-wide totals
/// ([`Connection::set_rx_budget`]). The default is unlimited: a connection
/// on its own is bounded only by its buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxBudget {
    /// Out-of-order bytes this connection may add to what it holds.
    pub reassembly: usize,
    /// Received bytes, in order or not, this connection may add to what it
    /// holds.
    pub memory: usize,
    /// Bytes this connection may add to its send buffer (a shard counts
    /// send and receive memory together, as Linux's `tcp_mem` does); it
    /// may always fill it to [`SEND_MEMORY_FLOOR`] whatever this says.
    /// What the connection stores either way comes off both `memory` and
    /// `send`.
    pub send: usize,
    /// The largest window to advertise, from RCV.NXT. A window already
    /// advertised beyond it is kept (its right edge never moves left), it
    /// just does not grow.
    pub window: usize,
}

/// What a connection may always hold in its send buffer, whatever the
/// shard's memory budget: Linux's `tcp_wmem[0]` (4 KiB). It keeps every
/// connection able to send, and so to be ACKed and told `Writable`, when
/// memory is exhausted.
pub const SEND_MEMORY_FLOOR: usize = 4096;

impl RxBudget {
    /// No limit.
    pub const UNLIMITED: RxBudget = RxBudget { reassembly: usize::MAX, memory: usize::MAX, window: usize::MAX, send: usize::MAX };
}

impl Default for RxBudget {
    fn default() -> Self {
        RxBudget::UNLIMITED
    }
}

/// A TCP connection (a TCB), RFC 9293 §3.3.1.
pub struct Connection {
    config: Arc<Config>,
    state: State,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    flags: u32,
    events: u8,
    close_reason: CloseReason,
    recovery: Recovery,
    dupacks: u8,
    snd_wscale: u8,
    rcv_wscale: u8,
    retries: u8,
    /// Unanswered keepalive or zero-window probes (Linux icsk_probes_out):
    /// any acceptable ACK resets it.
    probes: u8,
    /// Zero-window probes sent since the window closed (Linux
    /// icsk_backoff): the persist interval's exponent. Answers that keep
    /// the window closed do not reset it; an opening window does.
    persist_backoff: u8,
    challenge_count: u8,

    // Send sequence space (RFC 9293 §3.3.1); SND.MAX is RFC 6675's HighData.
    iss: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    snd_max: SeqNumber,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    recover: SeqNumber,
    rtt_seq: SeqNumber,
    /// SEG.ACK of the unacceptable ACK that SYN-SENT answers with a RST.
    rst_seq: SeqNumber,
    /// Our clock, in ms, when this recovery's first retransmission left
    /// (RFC 3522's RetransmitTS): an ACK echoing an earlier TSval at its
    /// end shows every retransmission was needless.
    undo_stamp: u32,
    /// Sequence number of `tx[0]`.
    tx_seq: SeqNumber,
    snd_wnd: u32,
    max_snd_wnd: u32,
    /// The effective send MSS: the peer's MSS, less our option overhead.
    smss: u16,
    /// The largest segment received so far (Linux's rcv_mss), for delayed ACKs.
    rcv_mss: u16,

    // Receive sequence space.
    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    /// Right edge of the window we last advertised; never moved left.
    rcv_adv: SeqNumber,
    /// RCV.NXT carried by the last ACK we sent (RFC 7323 Last.ACK.sent).
    last_ack_sent: SeqNumber,
    /// Data received twice, for the next ACK's D-SACK block (RFC 2883).
    dsack: (SeqNumber, SeqNumber),
    fin_seq: SeqNumber,
    /// Bytes received since our last ACK.
    unacked_segs: u32,

    // Timestamps (RFC 7323).
    ts_recent: u32,
    ts_offset: u32,
    ts_recent_age: Instant,
    rtt_sent_at: Instant,
    last_rx: Instant,
    /// When the send side last made progress, for the user timeout: new
    /// data acknowledged, a flight started, or the first zero-window probe
    /// (Linux's retrans_stamp and icsk_probes_tstamp).
    progress_at: Instant,
    challenge_window: Instant,
    /// When a segment carrying data (or FIN) last left (Linux's lsndtime):
    /// the idle time before the next one, for RFC 5681 §4.1 and RFC 9438 §5.8.
    last_send: Instant,
    /// When an invalid segment was last answered with an ACK
    /// (`Config::invalid_ack_interval`, Linux's last_oow_ack_time).
    last_oow_ack: Instant,

    tx: RingBuffer,
    rx: RingBuffer,
    ooo: Assembler,
    /// What is left of the shard's budget (`RxBudget`, saturated to u32:
    /// u32::MAX means at least 4 GiB, more than any one call can use).
    budget_reassembly: u32,
    budget_memory: u32,
    budget_window: u32,
    budget_send: u32,
    /// The out-of-order ranges most recently reported first, for the SACK
    /// blocks of our ACKs (RFC 2018 §4).
    recent_sacks: RecentSacks,
    /// Every range in flight: SACKed, lost, resent, and when last sent.
    sacks: Scoreboard,
    rack: Rack,
    rtt: RttEstimator,
    cc: AnyController,
    timers: Timers,
    stats: ConnStats,
}

impl Connection {
    fn new(config: Arc<Config>, local: SocketAddrV4, remote: SocketAddrV4, iss: SeqNumber, ts_offset: u32, now: Instant) -> Self {
        let rtt = RttEstimator::new(config.initial_rto, config.min_rto, config.max_rto);
        let cc = AnyController::new(config.congestion, usize::from(config.mss), config.initial_window);
        Connection {
            tx: RingBuffer::new(config.send_buffer),
            rx: RingBuffer::new(config.recv_buffer),
            config,
            state: State::Closed,
            local,
            remote,
            flags: 0,
            events: 0,
            close_reason: CloseReason::Normal,
            recovery: Recovery::None,
            dupacks: 0,
            snd_wscale: 0,
            rcv_wscale: 0,
            retries: 0,
            probes: 0,
            persist_backoff: 0,
            challenge_count: 0,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wl1: SeqNumber(0),
            snd_wl2: iss,
            recover: iss,
            rtt_seq: iss,
            rst_seq: iss,
            undo_stamp: 0,
            tx_seq: iss + 1,
            snd_wnd: 0,
            max_snd_wnd: 0,
            smss: 536,
            rcv_mss: 536,
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rcv_adv: SeqNumber(0),
            last_ack_sent: SeqNumber(0),
            dsack: (SeqNumber(0), SeqNumber(0)),
            fin_seq: SeqNumber(0),
            unacked_segs: 0,
            ts_recent: 0,
            ts_offset,
            ts_recent_age: now,
            rtt_sent_at: now,
            last_rx: now,
            progress_at: now,
            challenge_window: now,
            last_send: now,
            last_oow_ack: now,
            ooo: Assembler::new(),
            budget_reassembly: u32::MAX,
            budget_memory: u32::MAX,
            budget_window: u32::MAX,
            budget_send: u32::MAX,
            recent_sacks: RecentSacks::EMPTY,
            sacks: Scoreboard::new(),
            rack: Rack::new(iss),
            rtt,
            cc,
            timers: Timers::default(),
            stats: ConnStats::default(),
        }
    }

    /// Active open (RFC 9293 §3.10.1): the SYN goes out at the next `poll_transmit`.
    ///
    /// `iss` comes from [`crate::tcp::isn::IsnGenerator`]; `ts_offset` from its
    /// `ts_offset`, so timestamps don't reveal uptime.
    pub fn connect(config: Arc<Config>, local: SocketAddrV4, remote: SocketAddrV4, iss: SeqNumber, ts_offset: u32, now: Instant) -> Self {
        let mut conn = Connection::new(config, local, remote, iss, ts_offset, now);
        conn.state = State::SynSent;
        conn.rcv_wscale = if conn.config.window_scaling { conn.config.window_shift() } else { 0 };
        conn.timers.set(Timer::Retransmit, now + conn.rtt.rto());
        conn
    }

    /// Passive open from a SYN that a listener accepted (RFC 9293 §3.10.7.2):
    /// the connection starts in SYN-RECEIVED and the SYN-ACK goes out at the
    /// next `poll_transmit`.
    pub fn accept(config: Arc<Config>, local: SocketAddrV4, remote: SocketAddrV4, syn: &TcpRepr<'_>, iss: SeqNumber, ts_offset: u32, now: Instant) -> Self {
        let mut conn = Connection::new(config, local, remote, iss, ts_offset, now);
        conn.state = State::SynReceived;
        conn.take_syn_options(syn, now);
        conn.irs = syn.seq;
        conn.rcv_nxt = syn.seq + 1;
        conn.rcv_adv = conn.rcv_nxt;
        conn.snd_wnd = u32::from(syn.window); // a SYN's window is never scaled (RFC 7323 §2.2)
        conn.max_snd_wnd = conn.snd_wnd;
        conn.snd_wl1 = syn.seq;
        conn.timers.set(Timer::Retransmit, now + conn.rtt.rto());
        conn.stats.segs_in = 1;
        conn
    }

    /// A connection rebuilt from a valid SYN cookie (the final ACK of a
    /// handshake whose SYN we did not keep): it starts ESTABLISHED.
    /// `mss`, `wscale` and `sack` are what the peer's SYN carried, as the
    /// cookie kept them: `wscale` is the PEER's shift, which its windows are
    /// read with (RFC 7323 §2.3); ours is the one the SYN-ACK announced.
    #[allow(clippy::too_many_arguments)]
    pub fn from_cookie(
        config: Arc<Config>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        ack: &TcpRepr<'_>,
        mss: u16,
        wscale: Option<u8>,
        sack: bool,
        ts_offset: u32,
        now: Instant,
    ) -> Self {
        let iss = ack.ack - 1;
        let mut conn = Connection::new(config, local, remote, iss, ts_offset, now);
        let syn = TcpRepr {
            options: crate::wire::TcpOptions {
                mss: Some(mss),
                window_scale: wscale,
                sack_permitted: sack,
                timestamp: ack.options.timestamp,
                ..Default::default()
            },
            ..*ack
        };
        conn.take_syn_options(&syn, now);
        conn.irs = ack.seq - 1;
        conn.rcv_nxt = ack.seq;
        // The stateless SYN-ACK advertised this window: data on (or right
        // after) the final ACK is within it (RFC 9293 §3.10.7.4).
        conn.rcv_adv = conn.rcv_nxt + usize::from(crate::tcp::syncookie::syn_ack_window(&conn.config));
        conn.snd_una = iss + 1;
        conn.snd_nxt = iss + 1;
        conn.snd_max = iss + 1;
        conn.recover = conn.snd_una;
        conn.snd_wl1 = ack.seq;
        conn.snd_wl2 = ack.ack;
        conn.snd_wnd = u32::from(ack.window) << conn.snd_wscale;
        conn.max_snd_wnd = conn.snd_wnd;
        conn.state = State::Established;
        conn.events |= EV_CONNECTED;
        conn.arm_keepalive(now);
        conn
    }

    /// Records the peer's SYN options and settles ours (RFC 9293 §3.7.1,
    /// RFC 7323 §2.2 and §3.2, RFC 2018 §2).
    fn take_syn_options(&mut self, syn: &TcpRepr<'_>, now: Instant) {
        let opts = &syn.options;
        let peer_mss = opts.mss.unwrap_or(536); // RFC 9293 §3.7.1 default
        let mut smss = peer_mss.min(self.config.mss).max(64);
        if self.config.window_scaling {
            if let Some(ws) = opts.window_scale {
                self.flags |= F_WS_OK;
                self.snd_wscale = ws.min(14);
                self.rcv_wscale = self.config.window_shift();
            } else {
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        } else {
            self.rcv_wscale = 0;
        }
        if self.config.sack && opts.sack_permitted {
            self.flags |= F_SACK_OK;
        }
        if let (true, Some(ts)) = (self.config.timestamps, opts.timestamp) {
            self.flags |= F_TS_OK;
            self.ts_recent = ts.tsval;
            self.ts_recent_age = now;
            smss = smss.saturating_sub(12); // RFC 7323 §2.2 timestamps in every segment
        }
        self.smss = smss;
        self.cc.set_mss(usize::from(smss));
    }

    // ---- accessors -------------------------------------------------------

    pub fn state(&self) -> State {
        self.state
    }
    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }
    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }
    /// Bytes written by the application and not yet acknowledged (ss's Send-Q).
    pub fn send_queue(&self) -> usize {
        self.tx.len()
    }
    /// Bytes received in order and not yet read (ss's Recv-Q).
    pub fn recv_queue(&self) -> usize {
        self.rx.len()
    }
    /// Out-of-order bytes held for reassembly.
    pub fn ooo_queue(&self) -> usize {
        self.ooo.total_bytes()
    }
    /// Bytes the receive side holds: unread in-order data plus out-of-order
    /// data (what a shard's receive-memory budget counts).
    pub fn recv_held(&self) -> usize {
        self.rx.len() + self.ooo.total_bytes()
    }
    /// The window we advertised last, from RCV.NXT (0 once it is used up).
    pub fn recv_window(&self) -> usize {
        self.rcv_adv - self.rcv_nxt
    }
    /// Free space in the send buffer, as far as the shard's memory budget
    /// allows (see [`RxBudget::send`]).
    pub fn send_capacity(&self) -> usize {
        if self.can_send() { self.send_room() } else { 0 }
    }

    /// What a send may queue now: the send buffer's free space, within the
    /// send budget, but always up to [`SEND_MEMORY_FLOOR`] held.
    pub(super) fn send_room(&self) -> usize {
        let floor = SEND_MEMORY_FLOOR.saturating_sub(self.tx.len());
        (self.budget_send as usize).max(floor).min(self.tx.free())
    }
    pub fn cwnd(&self) -> usize {
        self.cc.window()
    }
    pub fn ssthresh(&self) -> usize {
        self.cc.ssthresh()
    }
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }
    pub fn mss(&self) -> usize {
        usize::from(self.smss)
    }
    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }
    pub fn in_recovery(&self) -> bool {
        self.recovery != Recovery::None
    }
    pub fn sack_enabled(&self) -> bool {
        self.flags & F_SACK_OK != 0
    }
    pub fn timestamps_enabled(&self) -> bool {
        self.flags & F_TS_OK != 0
    }
    /// The peer's window scale and ours, if scaling was negotiated.
    pub fn window_scales(&self) -> Option<(u8, u8)> {
        (self.flags & F_WS_OK != 0).then_some((self.snd_wscale, self.rcv_wscale))
    }
    /// The send window the peer last advertised, in bytes.
    pub fn send_window(&self) -> usize {
        self.snd_wnd as usize
    }
    /// Bytes sent and not yet cumulatively acknowledged.
    pub fn bytes_in_flight(&self) -> usize {
        self.snd_max - self.snd_una
    }
    /// Why the connection closed; meaningful once the state is CLOSED.
    pub fn close_reason(&self) -> CloseReason {
        self.close_reason
    }
    /// True once the connection is CLOSED and has nothing left to send.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed && self.flags & F_SEND_RST == 0
    }
    /// The receive sequence number expected next (exposed for tests and `ss`).
    pub fn rcv_nxt(&self) -> SeqNumber {
        self.rcv_nxt
    }
    pub fn snd_una(&self) -> SeqNumber {
        self.snd_una
    }
    pub fn snd_nxt(&self) -> SeqNumber {
        self.snd_nxt
    }
    pub fn iss(&self) -> SeqNumber {
        self.iss
    }
    /// An orphan (Linux's term): the application closed the connection,
    /// which is still finishing (FIN_WAIT_1, FIN_WAIT_2, CLOSING, LAST_ACK,
    /// or SYN-RECEIVED with its FIN queued); TIME_WAIT and CLOSED are not.
    pub fn is_orphan(&self) -> bool {
        self.flags & F_APP_CLOSED != 0 && !matches!(self.state, State::Closed | State::TimeWait)
    }
    /// RFC 7323 TS.Recent, used by RFC 6191 TIME_WAIT reuse.
    pub fn ts_recent(&self) -> Option<u32> {
        (self.flags & F_TS_OK != 0).then_some(self.ts_recent)
    }

    // ---- application calls ---------------------------------------------

    fn can_send(&self) -> bool {
        matches!(self.state, State::SynSent | State::SynReceived | State::Established | State::CloseWait)
            && self.flags & F_FIN_QUEUED == 0
    }

    /// Queues data for sending (copying it); returns how much fit.
    ///
    /// Data written before the handshake completes goes out after it.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        if !self.can_send() {
            return Err(SendError::InvalidState);
        }
        let room = self.send_room();
        let n = self.tx.push(&data[..data.len().min(room)]);
        self.spend_budget(n, false);
        if n < data.len() {
            self.flags |= F_WANT_WRITABLE;
        }
        Ok(n)
    }

    /// Lets `f` write up to `max_len` bytes in place into the send buffer's
    /// free space (one contiguous piece: less when the buffer wraps or is
    /// nearly full) and queues what it says it wrote; returns how much.
    /// As `send` without the caller's own buffer: one copy fewer. When the
    /// buffer had less room than `max_len`, `Event::Writable` follows once
    /// space frees. See also [`Connection::transmit_with`], which writes
    /// into the outgoing segment when the data can go at once.
    pub fn send_with(&mut self, max_len: usize, f: impl FnOnce(&mut [u8]) -> usize) -> Result<usize, SendError> {
        if !self.can_send() {
            return Err(SendError::InvalidState);
        }
        let room = self.send_room();
        if room < max_len {
            self.flags |= F_WANT_WRITABLE;
        }
        let n = self.tx.push_with(max_len.min(room), f);
        self.spend_budget(n, false);
        Ok(n)
    }

    /// Received bytes in order, as up to two slices (the buffer wraps).
    pub fn recv_slices(&self) -> (&[u8], &[u8]) {
        self.rx.as_slices()
    }

    /// Marks `n` received bytes as read, opening the window.
    pub fn consume(&mut self, n: usize) -> usize {
        let n = self.rx.consume(n);
        if self.rx.is_empty() && self.ooo.is_empty() {
            self.rx.release();
        }
        self.maybe_window_update();
        n
    }

    /// Starts a read of the buffered data through a callback that may call
    /// `close()`; `end_read` consumes what was read and settles that close
    /// (FIN if nothing is left unread, RST otherwise).
    pub fn begin_read(&mut self) {
        self.flags |= F_READING;
    }

    pub fn end_read(&mut self, consumed: usize) {
        self.flags &= !F_READING;
        self.consume(consumed);
        if self.flags & F_CLOSE_DEFERRED != 0 {
            self.flags &= !F_CLOSE_DEFERRED;
            self.close();
        }
    }

    /// Copies received bytes into `buf` and consumes them.
    pub fn recv(&mut self, buf: &mut [u8]) -> usize {
        let (a, b) = self.rx.as_slices();
        let n1 = a.len().min(buf.len());
        buf[..n1].copy_from_slice(&a[..n1]);
        let n2 = b.len().min(buf.len() - n1);
        buf[n1..n1 + n2].copy_from_slice(&b[..n2]);
        self.consume(n1 + n2)
    }

    /// Closes the write side: a FIN follows the queued data (RFC 9293 §3.10.4).
    pub fn shutdown(&mut self, _how: Shutdown) {
        match self.state {
            State::SynSent => {
                // Nothing was sent beyond our SYN: just give up the attempt.
                self.enter_closed(CloseReason::Normal);
            }
            // RFC 9293 §3.10.4: in SYN-RECEIVED the FIN waits for ESTABLISHED.
            State::SynReceived => self.flags |= F_FIN_QUEUED,
            State::Established => {
                self.flags |= F_FIN_QUEUED;
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.flags |= F_FIN_QUEUED;
                self.state = State::LastAck;
            }
            _ => {}
        }
    }

    /// Closes the connection: no more sends or reads.
    ///
    /// With unread data still buffered, this aborts with a RST instead of a
    /// FIN, so the peer learns its data was not consumed (RFC 2525 §2.17,
    /// RFC 9293 §3.10.4's "reset" option, as Linux does).
    pub fn close(&mut self) {
        if self.flags & (F_DIRECT_PENDING | F_READING) != 0 {
            // Called from inside a direct delivery: whether data is left
            // unread is known only once the application says how much of it
            // it consumed (in `Delivery::complete`).
            self.flags |= F_CLOSE_DEFERRED;
            return;
        }
        if !self.rx.is_empty() {
            self.abort();
            return;
        }
        self.flags |= F_APP_CLOSED;
        self.shutdown(Shutdown::Write);
        if self.state == State::FinWait2 {
            self.timers.set(Timer::Close, self.last_rx + self.config.fin_timeout);
        }
    }

    /// Aborts with a RST (SO_LINGER with a zero timeout): queued data is
    /// discarded and the connection is CLOSED at once.
    pub fn abort(&mut self) {
        if !matches!(self.state, State::Closed | State::Listen | State::SynSent | State::TimeWait) {
            self.flags |= F_SEND_RST;
        }
        self.enter_closed(CloseReason::Aborted);
    }

    /// Sets what the receive side may still use (see [`RxBudget`]); it holds
    /// until set again, and shrinks as the connection stores data. A shard
    /// sets it before feeding a segment and before polling for output.
    pub fn set_rx_budget(&mut self, budget: RxBudget) {
        let narrow = |v: usize| v.min(u32::MAX as usize) as u32;
        self.budget_reassembly = narrow(budget.reassembly);
        self.budget_memory = narrow(budget.memory);
        self.budget_window = narrow(budget.window);
        self.budget_send = narrow(budget.send);
    }

    /// Takes `n` newly held bytes (received, or queued to send) off the
    /// memory and send budgets (and off the reassembly budget when they are
    /// out of order).
    fn spend_budget(&mut self, n: usize, out_of_order: bool) {
        let n = n.min(u32::MAX as usize) as u32;
        if self.budget_memory != u32::MAX {
            self.budget_memory = self.budget_memory.saturating_sub(n);
        }
        if self.budget_send != u32::MAX {
            self.budget_send = self.budget_send.saturating_sub(n);
        }
        if out_of_order && self.budget_reassembly != u32::MAX {
            self.budget_reassembly = self.budget_reassembly.saturating_sub(n);
        }
    }

    /// Overrides the stack's user timeout for this connection (RFC 5482,
    /// Linux's `TCP_USER_TIMEOUT` socket option; see
    /// [`Config::user_timeout`]).
    pub fn set_user_timeout(&mut self, timeout: Option<crate::time::Duration>) {
        if self.config.user_timeout != timeout {
            let mut config = (*self.config).clone();
            config.user_timeout = timeout;
            self.config = Arc::new(config);
        }
        // A timer already running is brought forward to the new deadline.
        if let (Some(deadline), true) = (self.user_deadline(), self.state.is_synchronized()) {
            for timer in [Timer::Retransmit, Timer::Persist] {
                let counts = timer == Timer::Retransmit || self.persist_backoff > 0;
                if counts && self.timers.get(timer).is_some_and(|at| at > deadline) {
                    self.timers.set(timer, deadline);
                }
            }
        }
    }

    /// Overrides the stack's keepalive setting for this connection.
    pub fn set_keepalive(&mut self, now: Instant, keepalive: Option<crate::tcp::config::Keepalive>) {
        if self.config.keepalive != keepalive {
            let mut config = (*self.config).clone();
            config.keepalive = keepalive;
            self.config = Arc::new(config);
        }
        self.arm_keepalive(now);
    }

    // ---- events ---------------------------------------------------------

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        let take = |events: &mut u8, bit: u8| {
            let set = *events & bit != 0;
            *events &= !bit;
            set
        };
        if take(&mut self.events, EV_CONNECTED) {
            return Some(Event::Connected);
        }
        if take(&mut self.events, EV_READABLE)
            && !self.rx.is_empty() {
                return Some(Event::Readable);
            }
        if take(&mut self.events, EV_WRITABLE) {
            return Some(Event::Writable);
        }
        if take(&mut self.events, EV_PEER_CLOSED) {
            return Some(Event::PeerClosed);
        }
        if take(&mut self.events, EV_CLOSED) {
            return Some(Event::Closed(self.close_reason));
        }
        None
    }

    fn enter_closed(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.close_reason = reason;
        self.events |= EV_CLOSED;
        self.timers.clear_all();
        self.tx = RingBuffer::new(0);
        // After a graceful close, data received before the FIN stays
        // readable until the application consumes it; a reset or abort
        // discards it.
        if reason != CloseReason::Normal {
            self.rx = RingBuffer::new(0);
        }
        self.ooo.clear();
        self.ooo.shrink();
        self.sacks.clear();
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.timers.clear_all();
        self.timers.set(Timer::Close, now + 2 * self.config.msl);
        // TIME_WAIT keeps only sequence state, plus any received data the
        // application has not read yet (it stays readable).
        self.tx = RingBuffer::new(0);
        self.rx.release();
        self.sacks.clear();
    }

    /// Cuts TIME_WAIT short: the connection closes at the next timer pass
    /// at or after `now`, once anything pending (the ACK of the peer's FIN)
    /// has been sent. For a stack holding too many TIME_WAIT connections
    /// (Linux's `tcp_max_tw_buckets`).
    pub fn end_time_wait(&mut self, now: Instant) {
        if self.state == State::TimeWait {
            self.timers.set(Timer::Close, now);
        }
    }

    /// RFC 6191 with RFC 9293 §3.6.1: may a new SYN reuse this TIME_WAIT
    /// connection's 4-tuple? With timestamps, its TSval must be newer than
    /// TS.Recent; without, its sequence number must be beyond RCV.NXT.
    pub fn time_wait_accepts_syn(&self, syn: &TcpRepr<'_>) -> bool {
        if self.state != State::TimeWait || !syn.flags.syn() || syn.flags.ack() {
            return false;
        }
        match (self.flags & F_TS_OK != 0, syn.options.timestamp) {
            (true, Some(ts)) => (ts.tsval.wrapping_sub(self.ts_recent) as i32) > 0,
            _ => syn.seq > self.rcv_nxt,
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn connection_state_is_small() {
        let size = core::mem::size_of::<Connection>();
        println!("size_of::<Connection>() = {size}");
        // 648 with RACK-TLP's state and the shard's receive budget; then
        // the user timeout's progress stamp, the persist backoff, the
        // idle and invalid-ACK clocks, the send budget and the SYN-SENT
        // reset's sequence number and two counters, paid back by u32
        // offsets in the buffers and a smaller CUBIC state: no larger than
        // before, for the million-connection hold row of scripts/bench.sh.
        assert!(size <= 648, "Connection grew to {size} bytes");
    }
}
