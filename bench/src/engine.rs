//! A pair of engine connections in memory, for per-segment cost measurements.
//!
//! `Pair::established` runs a real handshake between two `Connection`s.
//! `RxBatch` holds a batch of wire-format data segments for the receiver and
//! advances their sequence numbers in place between rounds, patching the
//! checksum incrementally (RFC 1624), so every round is fresh in-order data.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use xdptcp::tcp::{Config, Connection, State};
use xdptcp::time::Instant;
use xdptcp::wire::checksum;
use xdptcp::wire::{SeqNumber, TcpPacket, TcpRepr};

pub const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40000);
pub const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 5001);

/// Moves every pending segment from `from` to `to`.
pub fn pump(now: Instant, from: &mut Connection, to: &mut Connection, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while let Some(len) = from.poll_transmit(now, buf) {
        let packet = TcpPacket::new_checked(&buf[..len]).expect("valid segment");
        let repr = TcpRepr::parse(&packet, *from.local().ip(), *to.local().ip(), true).expect("valid segment");
        to.handle_segment(now, &repr);
        n += 1;
    }
    n
}

/// Two connected engines: `client` (active) and `server` (passive).
pub struct Pair {
    pub client: Connection,
    pub server: Connection,
    pub now: Instant,
}

impl Pair {
    pub fn established(config: Config) -> Pair {
        let config = Arc::new(config);
        let now = Instant::from_secs(1);
        let mut buf = vec![0u8; 2048];
        let mut client = Connection::connect(config.clone(), CLIENT, SERVER, SeqNumber(1000), 0, now);
        let n = client.poll_transmit(now, &mut buf).expect("SYN");
        let packet = TcpPacket::new_checked(&buf[..n]).expect("SYN");
        let syn = TcpRepr::parse(&packet, *CLIENT.ip(), *SERVER.ip(), true).expect("SYN");
        let mut server = Connection::accept(config, SERVER, CLIENT, &syn, SeqNumber(9000), 0, now);
        pump(now, &mut server, &mut client, &mut buf);
        pump(now, &mut client, &mut server, &mut buf);
        assert_eq!(client.state(), State::Established);
        assert_eq!(server.state(), State::Established);
        // One byte each way so both sides learn the other's scaled window
        // (a SYN's window is unscaled, RFC 7323 §2.2).
        let mut now = now;
        for _ in 0..2 {
            client.send(b"x").expect("open");
            server.send(b"y").expect("open");
            pump(now, &mut client, &mut server, &mut buf);
            pump(now, &mut server, &mut client, &mut buf);
            now += xdptcp::time::Duration::from_millis(50);
            client.handle_timeout(now);
            server.handle_timeout(now);
            pump(now, &mut client, &mut server, &mut buf);
            pump(now, &mut server, &mut client, &mut buf);
        }
        let mut sink = [0u8; 16];
        client.recv(&mut sink);
        server.recv(&mut sink);
        assert!(client.send_window() > 1 << 20, "scaled window learned");
        Pair { client, server, now }
    }
}

/// A batch of in-order data segments from `CLIENT` to `SERVER`, as bytes.
pub struct RxBatch {
    pub frames: Vec<Vec<u8>>,
    stride: u32,
}

impl RxBatch {
    /// Captures `count` full-sized segments the client really sends.
    pub fn capture(pair: &mut Pair, count: usize) -> RxBatch {
        let mss = pair.client.mss();
        let data = vec![0x5au8; mss * count];
        let mut sent = 0;
        let mut frames = Vec::with_capacity(count);
        let mut buf = vec![0u8; 2048];
        while frames.len() < count {
            if sent < data.len() {
                sent += pair.client.send(&data[sent..]).expect("open");
            }
            match pair.client.poll_transmit(pair.now, &mut buf) {
                Some(len) => frames.push(buf[..len].to_vec()),
                None => panic!("client stopped sending after {} segments: raise the initial window", frames.len()),
            }
        }
        RxBatch { frames, stride: (mss * count) as u32 }
    }

    /// Moves every segment one batch further along the sequence space.
    pub fn advance(&mut self) {
        for frame in &mut self.frames {
            let mut p = TcpPacket::new_unchecked(&mut frame[..]);
            let old = p.seq_number();
            let new = old + self.stride as usize;
            let csum = p.checksum();
            let csum = checksum::update_u32(csum, old.0, new.0);
            p.set_seq_number(new);
            p.set_checksum(csum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advanced_batches_stay_valid_in_order_data() {
        let mut pair = Pair::established(Config { initial_window: 8, ..Config::default() });
        let mut batch = RxBatch::capture(&mut pair, 8);
        for round in 0..3 {
            for frame in &batch.frames {
                let packet = TcpPacket::new_checked(&frame[..]).unwrap();
                assert!(packet.verify_checksum(*CLIENT.ip(), *SERVER.ip()), "round {round}: RFC 1624 patch broke the checksum");
                let seg = TcpRepr::parse(&packet, *CLIENT.ip(), *SERVER.ip(), true).unwrap();
                assert_eq!(seg.seq, pair.server.rcv_nxt(), "round {round}: not in order");
                let delivery = pair.server.handle_segment_direct(pair.now, &seg);
                let n = delivery.payload().len();
                assert_eq!(n, seg.payload.len());
                delivery.complete(n);
            }
            batch.advance();
        }
    }
}
