//! Property tests of the wire layer: Repr → emit → parse → the same Repr,
//! and no parser panics on arbitrary bytes.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use xdptcp::wire::*;

fn ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn mac() -> impl Strategy<Value = EthernetAddress> {
    any::<[u8; 6]>().prop_map(EthernetAddress)
}

prop_compose! {
    fn tcp_options()(
        mss in proptest::option::of(any::<u16>()),
        ws in proptest::option::of(0u8..=14),
        sack_permitted in any::<bool>(),
        ts in proptest::option::of((any::<u32>(), any::<u32>())),
        blocks in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=4),
    ) -> TcpOptions {
        let mut o = TcpOptions {
            mss,
            window_scale: ws,
            sack_permitted,
            timestamp: ts.map(|(tsval, tsecr)| TcpTimestamp { tsval, tsecr }),
            sack_blocks: SackBlocks::new(),
        };
        // Only as many blocks as fit beside the other options round-trip.
        let base = o.len();
        let room = (40usize.saturating_sub(base + 4)) / 8;
        for &(l, r) in blocks.iter().take(room) {
            o.sack_blocks.push(SeqNumber(l), SeqNumber(r));
        }
        o
    }
}

proptest! {
    #[test]
    fn tcp_round_trip(
        src in ip(), dst in ip(),
        sp in 1u16.., dp in 1u16..,
        seq in any::<u32>(), ack in any::<u32>(), flags in any::<u8>(),
        window in any::<u16>(), urgent in any::<u16>(),
        options in tcp_options(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let repr = TcpRepr { src_port: sp, dst_port: dp, seq: SeqNumber(seq), ack: SeqNumber(ack), flags: TcpFlags(flags), window, urgent, options, payload: &payload };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), src, dst, true);
        let packet = TcpPacket::new_checked(&buf[..]).unwrap();
        prop_assert!(packet.verify_checksum(src, dst));
        let parsed = TcpRepr::parse(&packet, src, dst, true).unwrap();
        prop_assert_eq!(parsed, repr);
    }

    #[test]
    fn ipv4_round_trip(src in ip(), dst in ip(), proto in any::<u8>(), ttl in any::<u8>(), len in 0usize..200) {
        let repr = Ipv4Repr { src_addr: src, dst_addr: dst, protocol: IpProtocol::from(proto), payload_len: len, ttl };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&packet, true).unwrap(), repr);
    }

    #[test]
    fn ethernet_and_arp_round_trip(a in mac(), b in mac(), c in mac(), ip1 in ip(), ip2 in ip(), op in any::<u16>(), et in any::<u16>()) {
        let eth = EthernetRepr { src_addr: a, dst_addr: b, ethertype: EtherType::from(et) };
        let mut buf = [0u8; 14 + 28];
        eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&frame).unwrap(), eth);
        let arp = ArpRepr { operation: ArpOperation::from(op), source_hardware_addr: a, source_protocol_addr: ip1, target_hardware_addr: c, target_protocol_addr: ip2 };
        arp.emit(&mut ArpPacket::new_unchecked(&mut buf[14..]));
        prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[14..]).unwrap()).unwrap(), arp);
    }

    #[test]
    fn icmp_echo_round_trip(request in any::<bool>(), ident in any::<u16>(), seq_no in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..100)) {
        let repr = IcmpEchoRepr { kind: if request { IcmpEchoKind::Request } else { IcmpEchoKind::Reply }, ident, seq_no, data: &data };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut IcmpPacket::new_unchecked(&mut buf[..]));
        let packet = IcmpPacket::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(IcmpEchoRepr::parse(&packet).unwrap(), repr);
    }

    /// The contract of `wire`: arbitrary bytes never make a parser panic.
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), src in ip(), dst in ip()) {
        if let Ok(f) = EthernetFrame::new_checked(&bytes[..]) {
            let _ = EthernetRepr::parse(&f);
            let _ = f.payload();
        }
        if let Ok(p) = ArpPacket::new_checked(&bytes[..]) {
            let _ = ArpRepr::parse(&p);
        }
        if let Ok(p) = Ipv4Packet::new_checked(&bytes[..]) {
            let _ = Ipv4Repr::parse(&p, true);
            let _ = (p.payload(), p.verify_checksum(), p.is_fragment());
        }
        if let Ok(p) = IcmpPacket::new_checked(&bytes[..]) {
            let _ = IcmpEchoRepr::parse(&p);
        }
        if let Ok(p) = TcpPacket::new_checked(&bytes[..]) {
            let _ = TcpRepr::parse(&p, src, dst, false);
            let _ = (p.options(), p.payload());
        }
        let _ = TcpOptions::parse(&bytes);
    }
}

#[test]
fn malformed_inputs_are_errors() {
    // IPv4: IHL below 5, total length below the header, beyond the buffer.
    let mut ip = [0u8; 40];
    ip[0] = 0x44;
    assert!(Ipv4Packet::new_checked(&ip[..]).is_err());
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&10u16.to_be_bytes());
    assert!(Ipv4Packet::new_checked(&ip[..]).is_err());
    ip[2..4].copy_from_slice(&41u16.to_be_bytes());
    assert!(Ipv4Packet::new_checked(&ip[..]).is_err());
    // A fragment parses as a view but not as a Repr: the stack counts and drops it.
    let repr = Ipv4Repr { src_addr: Ipv4Addr::new(1, 2, 3, 4), dst_addr: Ipv4Addr::new(5, 6, 7, 8), protocol: IpProtocol::Tcp, payload_len: 20, ttl: 64 };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut ip[..]));
    let mut p = Ipv4Packet::new_unchecked(&mut ip[..]);
    p.set_flags_frag(false, true, 0);
    p.fill_checksum();
    let p = Ipv4Packet::new_checked(&ip[..]).unwrap();
    assert!(p.is_fragment());
    assert!(Ipv4Repr::parse(&p, true).is_err());
    // IPv4 options are skipped: the payload starts after them.
    let mut opt = [0u8; 24 + 4];
    opt[0] = 0x46;
    opt[2..4].copy_from_slice(&28u16.to_be_bytes());
    opt[24..].copy_from_slice(b"data");
    let mut p = Ipv4Packet::new_unchecked(&mut opt[..]);
    p.fill_checksum();
    let p = Ipv4Packet::new_checked(&opt[..]).unwrap();
    assert_eq!(p.payload(), b"data");
    assert_eq!(Ipv4Repr::parse(&p, true).unwrap().payload_len, 4);

    // TCP: data offset below 5 or beyond the buffer; bad option lengths.
    let mut tcp = [0u8; 24];
    tcp[0..2].copy_from_slice(&1u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&2u16.to_be_bytes());
    tcp[12] = 4 << 4;
    assert!(TcpPacket::new_checked(&tcp[..]).is_err());
    tcp[12] = 7 << 4;
    assert!(TcpPacket::new_checked(&tcp[..]).is_err());
    for opts in [&[2u8, 0][..], &[2, 1], &[2, 5, 0, 0], &[8, 10, 0], &[5, 3, 0, 0], &[3, 2], &[200, 8, 1]] {
        assert!(TcpOptions::parse(opts).is_err(), "{opts:?}");
    }
    // Unknown options are skipped by length; EOL ends the list.
    let o = TcpOptions::parse(&[30, 4, 9, 9, 2, 4, 5, 180, 0, 2, 1]).unwrap();
    assert_eq!(o.mss, Some(1460));
    // Window scale above 14 is clamped (RFC 7323 §2.3).
    assert_eq!(TcpOptions::parse(&[3, 3, 20]).unwrap().window_scale, Some(14));
    // Port zero is never valid.
    let mut z = [0u8; 20];
    z[12] = 5 << 4;
    assert!(TcpRepr::parse(&TcpPacket::new_checked(&z[..]).unwrap(), Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, false).is_err());
    // ARP that is not Ethernet/IPv4.
    let mut arp = [0u8; 28];
    arp[1] = 6;
    assert!(ArpRepr::parse(&ArpPacket::new_checked(&arp[..]).unwrap()).is_err());
    // ICMP with a bad checksum, or not an echo.
    let mut icmp = [8u8, 0, 0, 0, 0, 1, 0, 1];
    assert!(IcmpEchoRepr::parse(&IcmpPacket::new_checked(&icmp[..]).unwrap()).is_err());
    icmp[0] = 3;
    IcmpPacket::new_unchecked(&mut icmp[..]).fill_checksum();
    assert!(IcmpEchoRepr::parse(&IcmpPacket::new_checked(&icmp[..]).unwrap()).is_err());
}

#[test]
fn a_linux_syn_parses() {
    // A SYN as Linux sends it: MSS 1460, SACK-permitted, timestamps, NOP, WS 7.
    let src = Ipv4Addr::new(198, 18, 0, 2);
    let dst = Ipv4Addr::new(198, 18, 0, 1);
    let mut seg: Vec<u8> = vec![
        0x9c, 0x40, 0x13, 0x89, // ports 40000 → 5001
        0x12, 0x34, 0x56, 0x78, // seq
        0, 0, 0, 0, // ack
        0xa0, 0x02, 0xfa, 0xf0, // offset 10, SYN, window 64240
        0, 0, 0, 0, // checksum, urgent
        2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 100, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    TcpPacket::new_unchecked(&mut seg[..]).fill_checksum(src, dst);
    let p = TcpPacket::new_checked(&seg[..]).unwrap();
    let r = TcpRepr::parse(&p, src, dst, true).unwrap();
    assert_eq!((r.src_port, r.dst_port, r.seq, r.window), (40000, 5001, SeqNumber(0x1234_5678), 64240));
    assert_eq!(r.flags, TcpFlags::SYN);
    assert_eq!(r.options.mss, Some(1460));
    assert!(r.options.sack_permitted);
    assert_eq!(r.options.timestamp, Some(TcpTimestamp { tsval: 100, tsecr: 0 }));
    assert_eq!(r.options.window_scale, Some(7));
    // Our emit of the same Repr is byte-identical (same option order as Linux).
    let mut again = vec![0u8; r.buffer_len()];
    r.emit(&mut TcpPacket::new_unchecked(&mut again[..]), src, dst, true);
    assert_eq!(again, seg);
}

#[test]
fn sack_blocks_compare_by_the_blocks_in_use() {
    let mut a = SackBlocks::new();
    a.push(SeqNumber(1), SeqNumber(2));
    a.push(SeqNumber(3), SeqNumber(4));
    a.truncate(1);
    let mut b = SackBlocks::new();
    b.push(SeqNumber(1), SeqNumber(2));
    assert_eq!(a, b);
    // A second SACK option replaces the first; the leftovers must not matter.
    let twice = TcpOptions::parse(&[5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 5, 10, 0, 0, 0, 9, 0, 0, 0, 10]).unwrap();
    let mut want = SackBlocks::new();
    want.push(SeqNumber(9), SeqNumber(10));
    assert_eq!(twice.sack_blocks, want);
}
