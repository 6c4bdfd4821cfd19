//! Output: control frames (ARP, ICMP echo replies, resets, SYN cookies)
//! and the connections' segments, written into the caller's frames.
//!
//! A control frame is written once, into a slot of a bounded arena
//! ([`Control`]): slots are allocated on first use up to a fixed number
//! and then reused, so after warm-up nothing here allocates. Queued
//! control frames are bounded by `CONTROL_LIMIT` and frames waiting for an
//! ARP resolution hold slots of the same arena; one that finds no slot or
//! no room in the queue is dropped and counted (`control_drops`; a frame
//! waiting for ARP, `arp_unresolved_drops`). `poll_transmit` copies the
//! oldest queued frame into the caller's frame, then the connections'
//! segments are written there in place.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::app::App;
use crate::tcp::State;
use crate::time::Instant;
use crate::wire::{ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, TcpPacket};

use super::{send, Shard, TxBatch, ETH, HEADROOM};

/// Control frames queued to go out, at most.
pub(super) const CONTROL_LIMIT: usize = 1024;
/// Slots in the arena: the queue's, and as many again for frames waiting
/// for ARP.
pub(super) const CONTROL_SLOTS: usize = 2 * CONTROL_LIMIT;

/// A frame held in the arena: which slot, and how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    index: u16,
    len: u16,
}

/// The control arena and its queue.
pub(super) struct Control {
    slots: Vec<Box<[u8]>>,
    free: Vec<u16>,
    queue: VecDeque<Slot>,
    slot_len: usize,
    max_slots: usize,
    max_queued: usize,
}

impl Control {
    /// An arena of up to `max_slots` slots of `slot_len` bytes (a whole
    /// Ethernet frame), of which `max_queued` may be queued.
    pub fn new(slot_len: usize, max_slots: usize, max_queued: usize) -> Self {
        let max_slots = max_slots.min(usize::from(u16::MAX));
        Control { slots: Vec::new(), free: Vec::new(), queue: VecDeque::new(), slot_len: slot_len.min(usize::from(u16::MAX)), max_slots, max_queued }
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Frames queued.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Slots allocated so far (at most `max_slots`).
    #[cfg(test)]
    pub fn allocated(&self) -> usize {
        self.slots.len()
    }

    /// Lets `f` write a frame into a free slot and keeps it (not queued)
    /// if `f` returns a length above 0. None if `f` wrote nothing or no
    /// slot is free (then `f` is not called).
    pub fn hold_with(&mut self, f: impl FnOnce(&mut [u8]) -> usize) -> Option<Slot> {
        let index = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() < self.max_slots => {
                self.slots.push(vec![0u8; self.slot_len].into_boxed_slice());
                self.free.reserve(1);
                (self.slots.len() - 1) as u16
            }
            None => return None,
        };
        let buf = &mut self.slots[usize::from(index)];
        let len = f(buf).min(buf.len());
        if len == 0 {
            self.free.push(index);
            return None;
        }
        Some(Slot { index, len: len as u16 })
    }

    /// Writes a frame with `f` and queues it; one that finds the queue
    /// full (before `f` is called) or no slot free is counted in `drops`.
    pub fn push_with(&mut self, drops: &mut u64, f: impl FnOnce(&mut [u8]) -> usize) {
        if self.queue.len() >= self.max_queued {
            *drops += 1;
            return;
        }
        match self.hold_with(f) {
            Some(slot) => self.queue.push_back(slot),
            None if self.free.is_empty() && self.slots.len() >= self.max_slots => *drops += 1,
            None => {}
        }
    }

    /// Queues a held frame, or frees it and counts it in `drops` when the
    /// queue is full.
    pub fn queue(&mut self, drops: &mut u64, slot: Slot) {
        if self.queue.len() >= self.max_queued {
            *drops += 1;
            self.release(slot);
        } else {
            self.queue.push_back(slot);
        }
    }

    /// The bytes of a held frame.
    pub fn bytes_mut(&mut self, slot: Slot) -> &mut [u8] {
        &mut self.slots[usize::from(slot.index)][..usize::from(slot.len)]
    }

    /// Frees a held frame's slot.
    pub fn release(&mut self, slot: Slot) {
        self.free.push(slot.index);
    }

    /// Copies the oldest queued frame into `buf` (cut to its length) and
    /// frees its slot.
    pub fn pop_into(&mut self, buf: &mut [u8]) -> Option<usize> {
        let slot = self.queue.pop_front()?;
        let n = usize::from(slot.len).min(buf.len());
        buf[..n].copy_from_slice(&self.slots[usize::from(slot.index)][..n]);
        self.release(slot);
        Some(n)
    }
}

impl<A: App> Shard<A> {
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
        if let Some(n) = self.control.pop_into(buf) {
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
            e.conn.set_rx_budget(view.budget(e.conn.recv_held()));
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
            let hop = send::next_hop(&self.cfg, *remote.ip());
            let mac = hop.and_then(|h| self.arp.lookup(now, h));
            send::wrap(&self.cfg, buf, len, *local.ip(), *remote.ip(), mac.unwrap_or(EthernetAddress([0; 6])));
            match (hop, mac) {
                (_, Some(_)) => {
                    self.stats.frames_out += 1;
                    return Some(HEADROOM + len);
                }
                (Some(hop), None) => {
                    if self.wait_for_arp(now, hop, &buf[..HEADROOM + len]) {
                        return self.poll_transmit(now, buf);
                    }
                }
                (None, None) => self.stats.arp_unresolved_drops += 1,
            }
        }
        None
    }

    /// Keeps a frame until `hop` is resolved (a copy in the arena); true
    /// if it is the first for `hop`, whose ARP request is then queued.
    fn wait_for_arp(&mut self, now: Instant, hop: Ipv4Addr, frame: &[u8]) -> bool {
        let Some(slot) = self.control.hold_with(|b| {
            let n = frame.len().min(b.len());
            b[..n].copy_from_slice(&frame[..n]);
            n
        }) else {
            self.stats.arp_unresolved_drops += 1;
            return false;
        };
        let (fresh, dropped) = self.arp.queue(now, hop, slot);
        if let Some(old) = dropped {
            self.control.release(old);
            self.stats.arp_unresolved_drops += 1;
        }
        if fresh {
            self.request_arp(hop);
        }
        fresh
    }

    /// Frames that waited for a neighbour now resolved go out.
    pub(super) fn release_waiting(&mut self, waiting: impl IntoIterator<Item = Slot>, mac: Option<EthernetAddress>) {
        for slot in waiting {
            if let Some(mac) = mac {
                self.control.bytes_mut(slot)[0..6].copy_from_slice(&mac.0);
            }
            self.control.queue(&mut self.stats.control_drops, slot);
        }
    }

    /// A TCP segment without a connection (a RST, a SYN-ACK with a
    /// cookie), `segment` bytes from `write` into a frame's TCP part:
    /// checksummed, wrapped and queued when the peer's MAC is known (it
    /// just sent to us, so normally it is).
    pub(super) fn push_tcp_control(&mut self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4, write: impl FnOnce(&mut [u8]) -> usize) {
        let Some(hop) = send::next_hop(&self.cfg, *remote.ip()) else { return };
        let Some(mac) = self.arp.lookup(now, hop) else { return };
        let cfg = &self.cfg;
        self.control.push_with(&mut self.stats.control_drops, |frame| {
            let len = write(&mut frame[HEADROOM..]);
            if len == 0 {
                return 0;
            }
            TcpPacket::new_unchecked(&mut frame[HEADROOM..HEADROOM + len]).fill_checksum(*local.ip(), *remote.ip());
            send::wrap(cfg, frame, len, *local.ip(), *remote.ip(), mac);
            HEADROOM + len
        });
    }

    pub(super) fn push_arp(&mut self, dst: EthernetAddress, arp: &ArpRepr) {
        let mac = self.cfg.mac;
        self.control.push_with(&mut self.stats.control_drops, |frame| {
            let len = ETH + arp.buffer_len();
            EthernetRepr { src_addr: mac, dst_addr: dst, ethertype: EtherType::Arp }.emit(&mut EthernetFrame::new_unchecked(&mut frame[..len]));
            arp.emit(&mut ArpPacket::new_unchecked(&mut frame[ETH..len]));
            len
        });
    }

    pub(super) fn request_arp(&mut self, ip: Ipv4Addr) {
        let req = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: self.cfg.mac,
            source_protocol_addr: self.cfg.ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ip,
        };
        self.push_arp(EthernetAddress::BROADCAST, &req);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(tag: u8, len: usize) -> impl FnOnce(&mut [u8]) -> usize {
        move |b| {
            b[..len].fill(tag);
            len
        }
    }

    #[test]
    fn frames_go_out_in_order_and_slots_are_reused_without_growing() {
        let mut c = Control::new(64, 4, 4);
        let mut drops = 0;
        let mut buf = [0u8; 64];
        for round in 0..100u8 {
            c.push_with(&mut drops, write(round, 10));
            c.push_with(&mut drops, write(round.wrapping_add(1), 20));
            assert_eq!(c.pop_into(&mut buf), Some(10));
            assert_eq!(buf[0], round);
            assert_eq!(c.pop_into(&mut buf), Some(20));
            assert_eq!(buf[..20], [round.wrapping_add(1); 20]);
        }
        assert_eq!(c.allocated(), 2, "after warm-up the same slots serve");
        assert_eq!(drops, 0);
        assert!(c.is_empty() && c.pop_into(&mut buf).is_none());
    }

    #[test]
    fn a_full_queue_or_arena_drops_and_counts() {
        let mut c = Control::new(64, 3, 2);
        let mut drops = 0;
        c.push_with(&mut drops, write(1, 8));
        c.push_with(&mut drops, write(2, 8));
        c.push_with(&mut drops, |_| unreachable!("the queue is full: not written"));
        assert_eq!((c.queued(), drops), (2, 1));
        // Held frames (waiting for ARP) take the last slot...
        let held = c.hold_with(write(3, 8)).expect("a slot is left");
        assert!(c.hold_with(|_| unreachable!("no slot")).is_none());
        // ...and queueing one into a full queue frees it.
        c.queue(&mut drops, held);
        assert_eq!(drops, 2);
        assert!(c.hold_with(write(4, 8)).is_some(), "its slot was freed");
        assert_eq!(c.allocated(), 3);
        // Nothing written: the slot stays free, nothing is counted.
        let mut c = Control::new(64, 1, 1);
        c.push_with(&mut drops, |_| 0);
        assert_eq!((c.queued(), drops), (0, 2));
        assert!(c.hold_with(write(5, 1)).is_some());
    }
}
