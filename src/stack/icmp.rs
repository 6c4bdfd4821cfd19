//! ICMP: echo requests to our addresses are answered (RFC 792); nothing
//! else is sent or acted on.

use crate::wire::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IcmpEchoKind, IcmpEchoRepr, IcmpPacket, IpProtocol, Ipv4Packet, Ipv4Repr};

use super::{ETH, HEADROOM};

/// What an ICMP message calls for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Icmp<'a> {
    /// An echo request: answer it.
    Echo(IcmpEchoRepr<'a>),
    /// Anything else well formed: nothing to do.
    Ignore,
    /// Truncated, a bad checksum, an unknown code.
    Malformed,
}

/// Reads an ICMP message (the IPv4 payload).
pub(super) fn parse(bytes: &[u8]) -> Icmp<'_> {
    match IcmpPacket::new_checked(bytes).and_then(|p| IcmpEchoRepr::parse(&p)) {
        Ok(echo) if echo.kind == IcmpEchoKind::Request => Icmp::Echo(echo),
        Ok(_) => Icmp::Ignore,
        Err(_) => Icmp::Malformed,
    }
}

/// Writes the whole Ethernet frame answering `request` (received in `ip`
/// from `to`) into `frame`; returns its length, or 0 when it does not fit.
pub(super) fn write_reply(frame: &mut [u8], our_mac: EthernetAddress, to: EthernetAddress, ip: &Ipv4Repr, request: &IcmpEchoRepr<'_>) -> usize {
    let reply = IcmpEchoRepr { kind: IcmpEchoKind::Reply, ..*request };
    let len = HEADROOM + reply.buffer_len();
    if len > frame.len() {
        return 0;
    }
    let ipr = Ipv4Repr { src_addr: ip.dst_addr, dst_addr: ip.src_addr, protocol: IpProtocol::Icmp, payload_len: reply.buffer_len(), ttl: 64 };
    reply.emit(&mut IcmpPacket::new_unchecked(&mut frame[HEADROOM..len]));
    ipr.emit(&mut Ipv4Packet::new_unchecked(&mut frame[ETH..len]));
    EthernetRepr { src_addr: our_mac, dst_addr: to, ethertype: EtherType::Ipv4 }.emit(&mut EthernetFrame::new_unchecked(&mut frame[..len]));
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    fn request(data: &[u8]) -> Vec<u8> {
        let echo = IcmpEchoRepr { kind: IcmpEchoKind::Request, ident: 7, seq_no: 9, data };
        let mut b = vec![0u8; echo.buffer_len()];
        echo.emit(&mut IcmpPacket::new_unchecked(&mut b[..]));
        b
    }

    #[test]
    fn an_echo_request_is_answered_with_its_data_to_its_sender() {
        let bytes = request(b"ping!");
        let Icmp::Echo(req) = parse(&bytes) else { panic!("not an echo request") };
        let ip = Ipv4Repr { src_addr: Ipv4Addr::new(10, 0, 0, 2), dst_addr: Ipv4Addr::new(10, 0, 0, 1), protocol: IpProtocol::Icmp, payload_len: bytes.len(), ttl: 64 };
        let mut frame = [0u8; 128];
        let n = write_reply(&mut frame, US, PEER, &ip, &req);
        assert_eq!(n, HEADROOM + bytes.len());
        let eth = EthernetFrame::new_checked(&frame[..n]).unwrap();
        assert_eq!((eth.dst_addr(), eth.src_addr()), (PEER, US));
        let ipp = Ipv4Packet::new_checked(&frame[ETH..n]).unwrap();
        let back = Ipv4Repr::parse(&ipp, true).unwrap();
        assert_eq!((back.src_addr, back.dst_addr), (ip.dst_addr, ip.src_addr));
        let reply = IcmpEchoRepr::parse(&IcmpPacket::new_checked(ipp.payload()).unwrap()).unwrap();
        assert_eq!((reply.kind, reply.ident, reply.seq_no, reply.data), (IcmpEchoKind::Reply, 7, 9, &b"ping!"[..]));
        // Too big for the frame: nothing written.
        assert_eq!(write_reply(&mut frame[..40], US, PEER, &ip, &req), 0);
    }

    #[test]
    fn replies_are_ignored_and_garbage_is_malformed() {
        let mut bytes = request(b"x");
        assert!(matches!(parse(&bytes), Icmp::Echo(_)));
        bytes[2] ^= 0xff; // the checksum
        assert_eq!(parse(&bytes), Icmp::Malformed);
        assert_eq!(parse(&[8, 0]), Icmp::Malformed);
        let echo = IcmpEchoRepr { kind: IcmpEchoKind::Reply, ident: 1, seq_no: 1, data: b"" };
        let mut b = vec![0u8; echo.buffer_len()];
        echo.emit(&mut IcmpPacket::new_unchecked(&mut b[..]));
        assert_eq!(parse(&b), Icmp::Ignore);
    }
}
