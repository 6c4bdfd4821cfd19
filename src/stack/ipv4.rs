//! Link and network layers on receive: Ethernet demultiplexing, ARP
//! (answered for our addresses, learned from, RFC 826), IPv4 header
//! checks, and the hand-off to ICMP and TCP. A frame that is not ours or
//! is malformed is counted and dropped, never trusted.

use crate::app::App;
use crate::time::Instant;
use crate::wire::{ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr};

use super::icmp::{self, Icmp};
use super::{Io, Shard, ShardStats, StackConfig, Verdict, ETH};

/// Checks an IPv4 packet: whole, unfragmented, a valid header checksum,
/// to one of our addresses. Returns the header and the payload (bounded
/// by the total length), or counts why not in `stats`.
pub(super) fn check<'a>(cfg: &StackConfig, stats: &mut ShardStats, bytes: &'a [u8]) -> Option<(Ipv4Repr, &'a [u8])> {
    let Ok(packet) = Ipv4Packet::new_checked(bytes) else {
        stats.malformed += 1;
        return None;
    };
    if packet.is_fragment() {
        stats.ip_fragments += 1;
        return None;
    }
    let repr = match Ipv4Repr::parse(&packet, true) {
        Ok(r) => r,
        Err(_) => {
            if packet.version() == 4 && !packet.verify_checksum() {
                stats.ip_checksum_errors += 1;
            } else {
                stats.malformed += 1;
            }
            return None;
        }
    };
    if !cfg.owns(repr.dst_addr) {
        stats.not_ours += 1;
        return None;
    }
    let payload = &bytes[usize::from(packet.header_len())..usize::from(packet.total_len())];
    Some((repr, payload))
}

impl<A: App> Shard<A> {
    pub(super) fn handle_ethernet<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, frame: &[u8], app: &mut A, last_hop: bool) -> Verdict {
        self.stats.frames_in += 1;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.stats.malformed += 1;
            return Verdict::Done;
        };
        let dst = eth.dst_addr();
        if dst != self.cfg.mac && !dst.is_broadcast() {
            self.stats.not_ours += 1;
            return Verdict::Done;
        }
        match eth.ethertype() {
            EtherType::Arp => self.handle_arp(io.now, &frame[ETH..]),
            EtherType::Ipv4 => return self.handle_ipv4(io, eth.src_addr(), &frame[ETH..], app, last_hop),
            EtherType::Unknown(_) => self.stats.not_ours += 1,
        }
        Verdict::Done
    }

    fn handle_arp(&mut self, now: Instant, bytes: &[u8]) {
        let Ok(repr) = ArpPacket::new_checked(bytes).and_then(|p| ArpRepr::parse(&p)) else {
            self.stats.malformed += 1;
            return;
        };
        let for_us = self.cfg.owns(repr.target_protocol_addr);
        // RFC 826: merge the sender into the cache if we know it or it asks us.
        let sender = repr.source_protocol_addr;
        if (for_us || self.arp.knows(sender)) && self.cfg.on_link(sender) && repr.source_hardware_addr.is_unicast() {
            let waiting = self.arp.learn(now, sender, repr.source_hardware_addr);
            self.release_waiting(waiting, Some(repr.source_hardware_addr));
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

    fn handle_ipv4<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, src_mac: EthernetAddress, bytes: &[u8], app: &mut A, last_hop: bool) -> Verdict {
        let Some((repr, payload)) = check(&self.cfg, &mut self.stats, bytes) else { return Verdict::Done };
        // A neighbour that talks to us is alive: learn it if unknown, and
        // keep its entry from expiring while it talks from the same MAC (as
        // Linux confirms neighbours from upper-layer progress), so a busy
        // connection does not stall on a new ARP round every minute. A
        // different MAC is left to ARP to settle.
        if self.cfg.on_link(repr.src_addr) && src_mac.is_unicast() {
            match self.arp.lookup(io.now, repr.src_addr) {
                None => {
                    let waiting = self.arp.learn(io.now, repr.src_addr, src_mac);
                    self.release_waiting(waiting, None);
                }
                Some(mac) if mac == src_mac => self.arp.confirm(io.now, repr.src_addr),
                Some(_) => {}
            }
        }
        match repr.protocol {
            IpProtocol::Icmp => self.handle_icmp(src_mac, &repr, payload),
            IpProtocol::Tcp => return self.handle_tcp(io, &repr, payload, app, last_hop),
            _ => self.stats.not_ours += 1,
        }
        Verdict::Done
    }

    fn handle_icmp(&mut self, src_mac: EthernetAddress, ip: &Ipv4Repr, bytes: &[u8]) {
        match icmp::parse(bytes) {
            Icmp::Echo(request) => {
                let mac = self.cfg.mac;
                self.stats.icmp_echo_replies += 1;
                self.control.push_with(&mut self.stats.control_drops, |frame| icmp::write_reply(frame, mac, src_mac, ip, &request));
            }
            Icmp::Ignore => {}
            Icmp::Malformed => self.stats.malformed += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn packet(dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let repr = Ipv4Repr { src_addr: Ipv4Addr::new(10, 0, 0, 2), dst_addr: dst, protocol: IpProtocol::Tcp, payload_len: payload.len(), ttl: 64 };
        let mut b = vec![0u8; 20 + payload.len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut b[..]));
        b[20..].copy_from_slice(payload);
        b
    }

    #[test]
    fn a_good_header_gives_the_payload_bounded_by_the_total_length() {
        let cfg = StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, 1]), US, 24);
        let mut stats = ShardStats::default();
        let mut b = packet(US, b"abc");
        b.extend_from_slice(b"padding");
        let (repr, payload) = check(&cfg, &mut stats, &b).expect("ours");
        assert_eq!((repr.dst_addr, payload), (US, &b"abc"[..]));
        assert_eq!(stats, ShardStats::default());
    }

    #[test]
    fn each_reason_to_drop_is_counted() {
        let cfg = StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, 1]), US, 24);
        let mut stats = ShardStats::default();
        assert!(check(&cfg, &mut stats, &[0x45, 0]).is_none());
        assert_eq!(stats.malformed, 1);
        assert!(check(&cfg, &mut stats, &packet(Ipv4Addr::new(10, 0, 0, 9), b"x")).is_none());
        assert_eq!(stats.not_ours, 1);
        let mut bad = packet(US, b"x");
        bad[10] ^= 0xff;
        assert!(check(&cfg, &mut stats, &bad).is_none());
        assert_eq!(stats.ip_checksum_errors, 1);
        let mut frag = packet(US, b"x");
        frag[6] = 0x20; // more fragments
        assert!(check(&cfg, &mut stats, &frag).is_none());
        assert_eq!(stats.ip_fragments, 1);
    }
}
