//! Engine configuration. Defaults follow Linux where the issue is silent.

use crate::tcp::congestion::Algorithm;
use crate::time::Duration;

/// Keepalive parameters (RFC 1122 §4.2.3.6). Linux's defaults: 7200 s, 75 s, 9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe (`tcp_keepalive_time`).
    pub time: Duration,
    /// Time between unanswered probes (`tcp_keepalive_intvl`).
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped (`tcp_keepalive_probes`).
    pub probes: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive { time: Duration::from_secs(7200), interval: Duration::from_secs(75), probes: 9 }
    }
}

/// Per-stack TCP settings, shared by every connection of a shard.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our MSS, announced in SYNs. Derived from the MTU: MTU − 40 (1460 at 1500).
    pub mss: u16,
    /// Hard cap on bytes queued for sending (written but not yet acknowledged).
    pub send_buffer: usize,
    /// Hard cap on bytes received but not yet read, out-of-order data included.
    /// The advertised window is the free part of it.
    pub recv_buffer: usize,
    /// RFC 7323 window scaling.
    pub window_scaling: bool,
    /// RFC 7323 timestamps (and PAWS).
    pub timestamps: bool,
    /// RFC 2018 selective acknowledgements.
    pub sack: bool,
    /// Congestion control algorithm; CUBIC by default, as in Linux.
    pub congestion: Algorithm,
    /// Initial window in segments (RFC 6928: 10).
    pub initial_window: u32,
    /// RFC 6298 initial RTO (1 s).
    pub initial_rto: Duration,
    /// Lower bound on the RTO; 200 ms as in Linux (`TCP_RTO_MIN`).
    pub min_rto: Duration,
    /// Upper bound on the RTO; 120 s as in Linux (`TCP_RTO_MAX`).
    pub max_rto: Duration,
    /// Consecutive retransmission timeouts, or zero-window probes left
    /// unanswered, before giving up with a RST (`tcp_retries2`, 15).
    pub max_retries: u32,
    /// SYN retransmissions for active opens (`tcp_syn_retries`, 6).
    pub syn_retries: u32,
    /// SYN-ACK retransmissions for passive opens (`tcp_synack_retries`, 5).
    pub synack_retries: u32,
    /// Delayed-ACK timer (RFC 5681 §4.2); 40 ms as Linux's minimum delack.
    pub delayed_ack: Duration,
    /// Nagle's algorithm (RFC 896). Off by default, like TCP_NODELAY servers.
    pub nagle: bool,
    /// Keepalive, off by default (RFC 1122 §4.2.3.6).
    pub keepalive: Option<Keepalive>,
    /// Maximum segment lifetime; TIME_WAIT lasts 2×MSL (60 s by default, as Linux).
    pub msl: Duration,
    /// FIN_WAIT_2 timeout for connections the application has closed
    /// (`tcp_fin_timeout`, 60 s).
    pub fin_timeout: Duration,
    /// Retries left to an orphan, a connection the application has closed
    /// (Linux `tcp_orphan_retries`): it gives up with a RST after this many
    /// retransmission timeouts in a row (at most `max_retries`), or this
    /// many zero-window probes, answered or not. 8 by default, what Linux's
    /// default of 0 means for a peer still answering: with a 200 ms RTO,
    /// about 100 s. A peer holding the window of an orphan at 0 cannot pin
    /// it (and its send buffer) for ever.
    pub orphan_retries: u32,
    /// RFC 5482's user timeout (Linux `TCP_USER_TIMEOUT`): once synchronized,
    /// a connection gives up with a RST when data it sent stays
    /// unacknowledged, or a zero window is probed without opening, for
    /// longer than this. It replaces `max_retries` (an orphan still gets at
    /// most `orphan_retries`); `None` (the default) leaves the retry counts
    /// alone. Per connection: [`crate::tcp::Connection::set_user_timeout`].
    pub user_timeout: Option<Duration>,
    /// RFC 5961 §7: at most this many challenge ACKs per connection per second.
    pub challenge_ack_limit: u32,
    /// RFC 8985 RACK-TLP for connections that negotiated SACK: losses are
    /// detected by time (RACK, which also finds lost retransmissions), and a
    /// tail loss probe goes out two round trips after the ACKs stop, before
    /// the RTO. On by default, as in Linux. Off: RFC 6675's DupThresh rule
    /// alone, and the RTO for tail losses.
    pub rack_tlp: bool,
    /// RFC 8985 §7.2 WCDelAckT: how long a peer may delay an ACK. A loss
    /// probe for a single segment in flight waits this long beyond 2·SRTT
    /// (but never past the RTO); 200 ms, as RFC 8985 recommends.
    pub tlp_delayed_ack: Duration,
    /// RFC 5681 §4.1 restart window: a sender idle for longer than the RTO
    /// comes back with its window halved per RTO of idleness, down to
    /// min(initial window, cwnd), as Linux's `tcp_slow_start_after_idle`
    /// (on by default there too).
    pub slow_start_after_idle: bool,
    /// At most one ACK per this interval answers segments that are out of
    /// window, fail PAWS or arrive in TIME_WAIT, unless they carry data
    /// (Linux's `tcp_invalid_ratelimit`, 500 ms): two endpoints that each
    /// find the other's segments unacceptable would otherwise ACK each other
    /// at line rate.
    pub invalid_ack_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mss: 1460,
            send_buffer: 4 << 20,
            recv_buffer: 4 << 20,
            window_scaling: true,
            timestamps: true,
            sack: true,
            congestion: Algorithm::Cubic,
            initial_window: 10,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            max_retries: 15,
            syn_retries: 6,
            synack_retries: 5,
            delayed_ack: Duration::from_millis(40),
            nagle: false,
            keepalive: None,
            msl: Duration::from_secs(30),
            fin_timeout: Duration::from_secs(60),
            orphan_retries: 8,
            user_timeout: None,
            challenge_ack_limit: 10,
            rack_tlp: true,
            tlp_delayed_ack: Duration::from_millis(200),
            slow_start_after_idle: true,
            invalid_ack_interval: Duration::from_millis(500),
        }
    }
}

impl Config {
    /// A configuration whose MSS fits an IPv4 MTU (20-byte IP + 20-byte TCP headers).
    pub fn for_mtu(mtu: usize) -> Self {
        Config { mss: Self::mss_for_mtu(mtu), ..Config::default() }
    }

    pub fn mss_for_mtu(mtu: usize) -> u16 {
        mtu.saturating_sub(40).clamp(88, u16::MAX as usize) as u16
    }

    /// The window-scale shift we announce: the smallest that lets the receive
    /// buffer be advertised whole (RFC 7323 §2.3, at most 14).
    pub fn window_shift(&self) -> u8 {
        let mut shift = 0u8;
        while shift < 14 && (self.recv_buffer >> shift) > u16::MAX as usize {
            shift += 1;
        }
        shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mss_follows_the_mtu() {
        assert_eq!(Config::for_mtu(1500).mss, 1460);
        assert_eq!(Config::for_mtu(9000).mss, 8960);
        assert_eq!(Config::default().mss, 1460);
    }

    #[test]
    fn window_shift_covers_the_receive_buffer() {
        let c = Config::default();
        assert_eq!(c.window_shift(), 7); // 4 MiB >> 7 = 32 KiB ≤ 65535
        assert_eq!(Config { recv_buffer: 65_535, ..Config::default() }.window_shift(), 0);
        assert_eq!(Config { recv_buffer: 1 << 30, ..Config::default() }.window_shift(), 14);
    }
}
