//! `Conn::send_with` on a shard: the application's bytes written straight
//! into a TX frame, after the Ethernet, IPv4 and TCP headers.
//!
//! During a receive batch the runtime lends the shard its free TX frames
//! (a [`TxBatch`]); the shard lends every `Conn` it hands to a callback a
//! `Sender` over them. When the connection can send new data at once
//! (see `Connection::transmit_with`) and the next hop's MAC is known, the
//! application writes into a frame, the engine writes the TCP header and
//! accounts the segment as `poll_transmit` would, and the sender wraps it
//! in IPv4 and Ethernet: the frame is filled in the batch before the
//! callback returns, and the runtime submits it with the others.
//! The one copy made is frame → send buffer, kept for retransmission.
//! Otherwise (no frames lent, as in `handle_timeout` or the simulator's
//! plain `handle_frame`, which lend an empty batch; none free, window or congestion window closed,
//! data queued ahead, ARP unresolved) the application writes into the send
//! buffer's free space instead, and `poll_transmit` sends it later.
//!
//! Ordering: a direct segment carries the connection's next sequence
//! number and only goes when nothing of the connection waits to be sent, so
//! it cannot overtake that connection's own data; control frames and other
//! connections' segments still queued may leave after it, which TCP does
//! not mind.

use std::net::Ipv4Addr;

use crate::app::LentFrames;
use crate::tcp::{Handle, SendError};
use crate::time::Instant;
use crate::wire::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr};

use super::arp::NeighborCache;
use super::transmit::Slot;
use super::{ShardStats, StackConfig, TxBatch, ETH, HEADROOM};

/// The shard's side of one callback's `Conn::send_with`: the TX frames
/// lent for this call (an empty batch outside a receive batch) and what
/// writing into one needs.
pub(super) struct Sender<'a, F> {
    pub cfg: &'a StackConfig,
    pub arp: &'a NeighborCache<Slot>,
    pub stats: &'a mut ShardStats,
    pub now: Instant,
    pub frames: &'a mut TxBatch<F>,
}

impl<'a, F> Sender<'a, F> {
    pub fn new(cfg: &'a StackConfig, arp: &'a NeighborCache<Slot>, stats: &'a mut ShardStats, io: &'a mut super::calls::Io<'_, F>) -> Self {
        Sender { cfg, arp, stats, now: io.now, frames: &mut *io.tx }
    }
}

impl<F: AsMut<[u8]>> LentFrames for Sender<'_, F> {
    fn send_with(&mut self, conn: &mut Handle<'_>, max_len: usize, f: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<usize, SendError> {
        if let Some(n) = direct(self.now, self.frames, self.cfg, self.arp, conn, max_len, f) {
            if n > 0 {
                self.stats.segments_out += 1;
                self.stats.frames_out += 1;
                self.stats.send_with_direct_bytes += n as u64;
            }
            return Ok(n);
        }
        let n = conn.send_with(max_len, f)?;
        self.stats.send_with_buffered_bytes += n as u64;
        Ok(n)
    }
}

/// The direct path: `Some(bytes written)` if `f` was called (0: it wrote
/// nothing and no frame was filled), `None` if the data must be buffered.
fn direct<F: AsMut<[u8]>>(
    now: Instant,
    frames: &mut TxBatch<F>,
    cfg: &StackConfig,
    arp: &NeighborCache<Slot>,
    conn: &mut Handle<'_>,
    max_len: usize,
    f: &mut dyn FnMut(&mut [u8]) -> usize,
) -> Option<usize> {
    if frames.free_len() == 0 || !conn.can_transmit_with(max_len) {
        return None;
    }
    let (src, dst) = (*conn.local().ip(), *conn.remote().ip());
    let hop = next_hop(cfg, dst)?;
    let mac = arp.lookup(now, hop)?;
    let room = cfg.mtu + ETH;
    let mut written = None;
    frames.fill(|frame| {
        let end = room.min(frame.len());
        if end <= HEADROOM {
            return 0;
        }
        match conn.transmit_with(now, &mut frame[HEADROOM..end], max_len, &mut *f) {
            Some((len, n)) => {
                written = Some(n);
                if n == 0 {
                    return 0;
                }
                wrap(cfg, frame, len, src, dst, mac);
                HEADROOM + len
            }
            None => 0,
        }
    });
    written
}

/// Where a frame for `dst` goes: `dst` itself on our subnet, else the gateway.
pub(super) fn next_hop(cfg: &StackConfig, dst: Ipv4Addr) -> Option<Ipv4Addr> {
    if cfg.on_link(dst) { Some(dst) } else { cfg.gateway }
}

/// Puts the IPv4 and Ethernet headers in front of a TCP segment of
/// `tcp_len` bytes at `buf[HEADROOM..]`.
pub(super) fn wrap(cfg: &StackConfig, buf: &mut [u8], tcp_len: usize, src: Ipv4Addr, dst: Ipv4Addr, mac: EthernetAddress) {
    Ipv4Repr { src_addr: src, dst_addr: dst, protocol: IpProtocol::Tcp, payload_len: tcp_len, ttl: 64 }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[ETH..]));
    EthernetRepr { src_addr: cfg.mac, dst_addr: mac, ethertype: EtherType::Ipv4 }.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
}
