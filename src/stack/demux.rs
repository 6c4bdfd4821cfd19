//! TCP demultiplexing: a segment goes to the connection its 4-tuple names,
//! else to a listener, else to the shard that owns the tuple (a
//! [`Verdict::Forward`] in a multi-core stack, unless this is the last
//! hop), else it is answered with RST (RFC 9293 §3.10.7.1).

use std::net::SocketAddrV4;

use crate::app::{App, ConnId};
use crate::tcp::{reset_for, State};
use crate::wire::{Ipv4Repr, TcpPacket, TcpRepr};

use super::send::Sender;
use super::table::tuple;
use super::{call, Io, Shard, Verdict};

impl<A: App> Shard<A> {
    /// A TCP segment to one of our addresses (`bytes`: the IPv4 payload).
    pub(super) fn handle_tcp<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, ip: &Ipv4Repr, bytes: &[u8], app: &mut A, last_hop: bool) -> Verdict {
        let seg = match TcpPacket::new_checked(bytes) {
            Ok(p) => match TcpRepr::parse(&p, ip.src_addr, ip.dst_addr, true) {
                Ok(s) => s,
                Err(_) => {
                    if p.verify_checksum(ip.src_addr, ip.dst_addr) {
                        self.stats.malformed += 1;
                    } else {
                        self.stats.tcp_checksum_errors += 1;
                    }
                    return Verdict::Done;
                }
            },
            Err(_) => {
                self.stats.malformed += 1;
                return Verdict::Done;
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
                    return Verdict::Done;
                }
            }
        }
        if self.try_accept(io, local, remote, &seg, app) {
            return Verdict::Done;
        }
        self.unmatched(io, local, remote, &seg, last_hop)
    }

    /// No connection and no listener took it: forwarded to the core owning
    /// the tuple, or reset.
    fn unmatched<F>(&mut self, io: &mut Io<'_, F>, local: SocketAddrV4, remote: SocketAddrV4, seg: &TcpRepr<'_>, last_hop: bool) -> Verdict {
        // Not ours here; the core owning the tuple may have it. Every core
        // has the same listeners, so a new SYN is settled here either way.
        let new_syn = seg.flags.syn() && !seg.flags.ack() && !seg.flags.rst();
        if !last_hop && !new_syn && self.cfg.cores.count > 1 {
            let core = self.owner(local, remote);
            if core != self.cfg.cores.index {
                return Verdict::Forward { core };
            }
        }
        // RFC 9293 §3.10.7.1: no connection, no listener (or no room): reset.
        if let Some(rst) = reset_for(seg) {
            self.stats.resets_sent += 1;
            self.push_tcp_control(io.now, local, remote, |b| {
                let n = rst.header_len();
                rst.emit_header(&mut b[..n])
            });
        }
        Verdict::Done
    }

    /// Feeds a segment to a connection; in-order payload goes to the
    /// application in place.
    pub(super) fn deliver<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, id: ConnId, seg: &TcpRepr<'_>, app: &mut A) {
        let Some(e) = self.table.get_mut(id) else { return };
        if e.half_open && e.conn.state() == State::SynReceived && seg.flags.ack() && !self.accept.can_complete(e.conn.local().port()) {
            return; // accept queue full: the peer will resend its ACK
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
}

#[cfg(test)]
mod tests {
    use super::super::{Cores, StackConfig};
    use super::*;
    use crate::time::Instant;
    use crate::wire::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, SeqNumber, TcpFlags, TcpOptions};
    use std::net::Ipv4Addr;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
    const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    struct Nop;
    impl App for Nop {
        type State = ();
    }

    fn frame(src_port: u16, flags: TcpFlags) -> Vec<u8> {
        let seg = TcpRepr { src_port, dst_port: 5000, seq: SeqNumber(1), ack: SeqNumber(1), flags, window: 1000, urgent: 0, options: TcpOptions::default(), payload: &[] };
        let mut tcp = vec![0u8; seg.header_len()];
        seg.emit_header(&mut tcp);
        TcpPacket::new_unchecked(&mut tcp[..]).fill_checksum(PEER, US);
        let mut f = vec![0u8; 34 + tcp.len()];
        EthernetRepr { src_addr: PEER_MAC, dst_addr: MAC, ethertype: EtherType::Ipv4 }.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        Ipv4Repr { src_addr: PEER, dst_addr: US, protocol: IpProtocol::Tcp, payload_len: tcp.len(), ttl: 64 }.emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
        f[34..].copy_from_slice(&tcp);
        f
    }

    #[test]
    fn an_unmatched_segment_goes_to_its_owner_unless_last_hop_then_is_reset() {
        let mut cfg = StackConfig::new(MAC, US, 24);
        cfg.cores = Cores { index: 0, count: 4 };
        let mut shard: Shard<Nop> = Shard::new(cfg, [3; 16]);
        let now = Instant::from_secs(1);
        // A port whose tuple another core owns.
        let port = (1000..2000u16).find(|&p| shard.owner(SocketAddrV4::new(US, 5000), SocketAddrV4::new(PEER, p)) != 0).unwrap();
        let core = shard.owner(SocketAddrV4::new(US, 5000), SocketAddrV4::new(PEER, port));
        let ack = frame(port, TcpFlags::ACK);
        assert_eq!(shard.handle_frame_checked(now, &ack, &mut Nop, false), Verdict::Forward { core });
        assert_eq!((shard.stats().handoffs_out, shard.stats().resets_sent), (1, 0));
        assert!(!shard.wants_transmit());
        assert_eq!(shard.handle_frame_checked(now, &ack, &mut Nop, true), Verdict::Done);
        assert_eq!(shard.stats().resets_sent, 1);
        let mut buf = [0u8; 1514];
        let n = shard.poll_transmit(now, &mut buf).expect("the RST");
        let tcp = TcpPacket::new_checked(&buf[34..n]).unwrap();
        assert!(tcp.flags().rst());
        assert!(tcp.verify_checksum(US, PEER));
        // A new SYN is settled here whatever the hop: nobody listens, RST.
        assert_eq!(shard.handle_frame_checked(now, &frame(port, TcpFlags::SYN), &mut Nop, false), Verdict::Done);
        assert_eq!(shard.stats().resets_sent, 2);
    }
}
