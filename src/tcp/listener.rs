//! Passive opens: the SYN queue, the accept queue and SYN cookies.
//!
//! A listener decides what happens to a SYN for its port; the stack owns the
//! connections themselves. Half-open connections (SYN-RECEIVED) count against
//! the SYN queue; connections whose handshake completed wait in the accept
//! queue until the application takes them. When the SYN queue is full, the
//! listener answers with a SYN cookie (RFC 4987 §3.6) and keeps no state; the
//! final ACK rebuilds the connection.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::sync::Arc;

use crate::tcp::connection::Connection;
use crate::tcp::isn::IsnGenerator;
use crate::tcp::syncookie::{self, SynCookies};
use crate::tcp::Config;
use crate::time::{Duration, Instant};
use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr, TcpTimestamp};

/// How long after the last cookie it sent a listener still takes ACKs as
/// cookies (Linux's `TCP_SYNCOOKIE_VALID`, checked by
/// tcp_synq_no_recent_overflow): 2 minutes.
pub const SYNCOOKIE_VALID: Duration = Duration::from_secs(120);

/// When SYN cookies are used (Linux's `tcp_syncookies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynCookieMode {
    /// Never: a SYN that finds the SYN queue full is dropped.
    Off,
    /// When the SYN queue is full (Linux's default, 1).
    #[default]
    WhenFull,
    /// For every SYN (Linux's 2; useful for testing).
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Half-open connections kept (`tcp_max_syn_backlog`).
    pub syn_backlog: usize,
    /// Established connections not yet accepted (`listen()`'s backlog, capped by `somaxconn`).
    pub accept_backlog: usize,
    pub syn_cookies: SynCookieMode,
    /// `tcp_abort_on_overflow`: answer a handshake-completing ACK that finds
    /// the accept queue full with RST instead of ignoring it.
    pub abort_on_overflow: bool,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig { syn_backlog: 1024, accept_backlog: 4096, syn_cookies: SynCookieMode::WhenFull, abort_on_overflow: false }
    }
}

/// Counters, as in `netstat -s`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    pub syns: u64,
    pub syn_queue_overflows: u64,
    pub accept_queue_overflows: u64,
    pub cookies_sent: u64,
    pub cookies_validated: u64,
    pub cookies_failed: u64,
}

/// What to do with a SYN.
pub enum SynOutcome {
    /// Keep this half-open connection; its SYN-ACK goes out on `poll_transmit`.
    Accept(Box<Connection>),
    /// A stateless SYN-ACK carrying a cookie was written: send these bytes.
    Cookie(usize),
    /// Dropped (queue full and cookies off).
    Drop,
}

/// A listening endpoint. `K` identifies connections in the accept queue.
pub struct Listener<K> {
    local: SocketAddrV4,
    config: ListenerConfig,
    tcp: Arc<Config>,
    isn: IsnGenerator,
    cookies: SynCookies,
    half_open: usize,
    accept_queue: VecDeque<K>,
    stats: ListenerStats,
    /// When this listener last sent a cookie (Linux's last_overflow stamp).
    last_cookie: Option<Instant>,
}

impl<K> Listener<K> {
    pub fn new(local: SocketAddrV4, config: ListenerConfig, tcp: Arc<Config>, isn: IsnGenerator, cookies: SynCookies) -> Self {
        Listener { local, config, tcp, isn, cookies, half_open: 0, accept_queue: VecDeque::new(), stats: ListenerStats::default(), last_cookie: None }
    }

    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }
    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }
    pub fn tcp_config(&self) -> &Arc<Config> {
        &self.tcp
    }
    pub fn stats(&self) -> &ListenerStats {
        &self.stats
    }
    /// Half-open connections (the SYN queue's length).
    pub fn syn_queue_len(&self) -> usize {
        self.half_open
    }
    pub fn accept_queue_len(&self) -> usize {
        self.accept_queue.len()
    }

    /// A SYN arrived for this listener from `remote` (RFC 9293 §3.10.7.2).
    /// `local` is the address it was sent to. `out` receives a cookie SYN-ACK.
    pub fn on_syn(&mut self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4, syn: &TcpRepr<'_>, out: &mut [u8]) -> SynOutcome {
        self.stats.syns += 1;
        let full = self.half_open >= self.config.syn_backlog;
        let use_cookie = match self.config.syn_cookies {
            SynCookieMode::Always => true,
            SynCookieMode::WhenFull => full,
            SynCookieMode::Off => false,
        };
        if use_cookie {
            if full {
                self.stats.syn_queue_overflows += 1;
            }
            return match self.write_cookie_syn_ack(now, local, remote, syn, out) {
                Some(n) => {
                    self.stats.cookies_sent += 1;
                    self.last_cookie = Some(now);
                    SynOutcome::Cookie(n)
                }
                None => SynOutcome::Drop,
            };
        }
        if full || self.accept_queue.len() >= self.config.accept_backlog {
            self.stats.syn_queue_overflows += 1;
            return SynOutcome::Drop;
        }
        self.half_open += 1;
        let iss = self.isn.isn(now, local, remote);
        let ts_offset = self.isn.ts_offset(local, remote);
        SynOutcome::Accept(Box::new(Connection::accept(self.tcp.clone(), local, remote, syn, iss, ts_offset, now)))
    }

    /// Writes a stateless SYN-ACK whose ISS is a cookie. The peer's window
    /// scale and SACK-permitted survive only when the peer uses timestamps,
    /// encoded in our TSval (as Linux does); otherwise they are not offered.
    fn write_cookie_syn_ack(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4, syn: &TcpRepr<'_>, out: &mut [u8]) -> Option<usize> {
        let peer_mss = syn.options.mss.unwrap_or(536);
        let (cookie, mss) = self.cookies.encode(now, local, remote, syn.seq, peer_mss);
        let mut options = TcpOptions { mss: Some(mss.min(self.tcp.mss)), ..TcpOptions::default() };
        if let (true, Some(ts)) = (self.tcp.timestamps, syn.options.timestamp) {
            // RFC 7323 §2.3: the cookie keeps the PEER's shift, which applies to
            // the windows it sends (as Linux's cookie_init_timestamp); the
            // SYN-ACK announces ours.
            let peer_ws = syn.options.window_scale.filter(|_| self.tcp.window_scaling);
            let sack = self.tcp.sack && syn.options.sack_permitted;
            let tsnow = self.isn.ts_offset(local, remote).wrapping_add(now.as_millis() as u32);
            options.timestamp = Some(TcpTimestamp { tsval: self.cookies.encode_ts(tsnow, peer_ws, sack), tsecr: ts.tsval });
            options.window_scale = peer_ws.map(|_| self.tcp.window_shift());
            options.sack_permitted = sack;
        }
        let repr = TcpRepr {
            src_port: local.port(),
            dst_port: remote.port(),
            seq: cookie,
            ack: syn.seq + 1,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: syncookie::syn_ack_window(&self.tcp),
            urgent: 0,
            options,
            payload: &[],
        };
        let len = repr.header_len();
        if out.len() < len {
            return None;
        }
        repr.emit_header(&mut out[..len]);
        TcpPacket::new_unchecked(&mut out[..len]).fill_checksum(*local.ip(), *remote.ip());
        Some(len)
    }

    /// An ACK matched no connection: if it completes a cookie handshake,
    /// rebuild the connection (ESTABLISHED). The caller then feeds the same
    /// segment to it so that any data it carries is taken.
    ///
    /// As Linux (tcp_synq_no_recent_overflow), an ACK is checked as a cookie
    /// only within [`SYNCOOKIE_VALID`] of the last cookie this listener
    /// sent: a listener that is not under a SYN flood answers stray ACKs
    /// with RST rather than giving a blind attacker a cookie to guess. That
    /// is not counted as a failed cookie.
    pub fn on_cookie_ack(&mut self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4, ack: &TcpRepr<'_>) -> Option<Box<Connection>> {
        let f = ack.flags;
        if !f.ack() || f.syn() || f.rst() || self.config.syn_cookies == SynCookieMode::Off {
            return None;
        }
        if self.last_cookie.is_none_or(|sent| now - sent > SYNCOOKIE_VALID) {
            return None;
        }
        let Some(mss) = self.cookies.decode(now, local, remote, ack.seq - 1, ack.ack - 1) else {
            self.stats.cookies_failed += 1;
            return None;
        };
        if self.accept_queue.len() >= self.config.accept_backlog {
            self.stats.accept_queue_overflows += 1;
            return None;
        }
        let (wscale, sack) = match (self.tcp.timestamps, ack.options.timestamp) {
            (true, Some(ts)) => self.cookies.decode_ts(ts.tsecr),
            _ => (None, false),
        };
        self.stats.cookies_validated += 1;
        let ts_offset = self.isn.ts_offset(local, remote);
        Some(Box::new(Connection::from_cookie(self.tcp.clone(), local, remote, ack, mss, wscale, sack, ts_offset, now)))
    }

    /// May a half-open connection complete its handshake now? When the
    /// accept queue is full the final ACK is ignored (the peer will resend
    /// it), or answered with RST under `abort_on_overflow`.
    pub fn can_complete(&mut self) -> bool {
        let ok = self.accept_queue.len() < self.config.accept_backlog;
        if !ok {
            self.stats.accept_queue_overflows += 1;
        }
        ok
    }

    /// A half-open connection finished its handshake: it moves from the SYN
    /// queue to the accept queue.
    pub fn on_established(&mut self, key: K, was_half_open: bool) {
        if was_half_open {
            self.half_open = self.half_open.saturating_sub(1);
        }
        self.accept_queue.push_back(key);
    }

    /// A half-open connection died (reset, timed out).
    pub fn on_half_open_closed(&mut self) {
        self.half_open = self.half_open.saturating_sub(1);
    }

    /// The next established connection for the application.
    pub fn accept(&mut self) -> Option<K> {
        self.accept_queue.pop_front()
    }
}

/// RFC 9293 §3.10.7.1: the reset for a segment that matches no connection
/// (or reaches a closed port). Never answers a RST.
pub fn reset_for(seg: &TcpRepr<'_>) -> Option<TcpRepr<'static>> {
    if seg.flags.rst() {
        return None;
    }
    let (seq, ack, flags) = if seg.flags.ack() {
        (seg.ack, SeqNumber(0), TcpFlags::RST)
    } else {
        (SeqNumber(0), seg.seq + seg.segment_len(), TcpFlags::RST | TcpFlags::ACK)
    };
    Some(TcpRepr {
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        seq,
        ack,
        flags,
        window: 0,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    })
}
