//! Cross-check against an independent parser, `etherparse`: frames we emit
//! parse the same there, and frames it builds parse the same here.

use std::net::Ipv4Addr;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use proptest::prelude::*;
use xdptcp::wire::*;

fn build_ours(src: Ipv4Addr, dst: Ipv4Addr, tcp: &TcpRepr<'_>) -> Vec<u8> {
    let ip = Ipv4Repr { src_addr: src, dst_addr: dst, protocol: IpProtocol::Tcp, payload_len: tcp.buffer_len(), ttl: 64 };
    let mut buf = vec![0u8; 14 + ip.buffer_len()];
    EthernetRepr { src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]), dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]), ethertype: EtherType::Ipv4 }
        .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[14..]));
    tcp.emit(&mut TcpPacket::new_unchecked(&mut buf[34..]), src, dst, true);
    buf
}

fn elements(o: &TcpOptions) -> Vec<TcpOptionElement> {
    let mut v = Vec::new();
    if let Some(m) = o.mss {
        v.push(TcpOptionElement::MaximumSegmentSize(m));
    }
    if o.sack_permitted {
        v.push(TcpOptionElement::SelectiveAcknowledgementPermitted);
    }
    if let Some(ts) = o.timestamp {
        v.push(TcpOptionElement::Timestamp(ts.tsval, ts.tsecr));
    }
    if let Some(ws) = o.window_scale {
        v.push(TcpOptionElement::WindowScale(ws));
    }
    v
}

prop_compose! {
    fn syn_options()(mss in proptest::option::of(any::<u16>()), ws in proptest::option::of(0u8..=14), sack in any::<bool>(), ts in proptest::option::of((any::<u32>(), any::<u32>()))) -> TcpOptions {
        TcpOptions { mss, window_scale: ws, sack_permitted: sack, timestamp: ts.map(|(a, b)| TcpTimestamp { tsval: a, tsecr: b }), sack_blocks: SackBlocks::new() }
    }
}

proptest! {
    #[test]
    fn ours_parse_identically_in_etherparse(
        src in any::<u32>(), dst in any::<u32>(), sp in 1u16.., dp in 1u16..,
        seq in any::<u32>(), ack in any::<u32>(), flags in any::<u8>(), window in any::<u16>(),
        options in syn_options(),
        blocks in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=3),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
        let mut options = options;
        if options.len() + 4 + 8 * blocks.len() <= 40 {
            for &(l, r) in &blocks {
                options.sack_blocks.push(SeqNumber(l), SeqNumber(r));
            }
        }
        let tcp = TcpRepr { src_port: sp, dst_port: dp, seq: SeqNumber(seq), ack: SeqNumber(ack), flags: TcpFlags(flags), window, urgent: 0, options, payload: &payload };
        let frame = build_ours(src, dst, &tcp);
        let sliced = SlicedPacket::from_ethernet(&frame).expect("etherparse accepts our frame");
        let Some(NetSlice::Ipv4(ip)) = &sliced.net else { panic!("not IPv4") };
        let h = ip.header();
        prop_assert_eq!(h.source(), src.octets());
        prop_assert_eq!(h.destination(), dst.octets());
        prop_assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
        let Some(TransportSlice::Tcp(t)) = &sliced.transport else { panic!("not TCP") };
        prop_assert_eq!((t.source_port(), t.destination_port()), (sp, dp));
        prop_assert_eq!((t.sequence_number(), t.acknowledgment_number(), t.window_size()), (seq, ack, window));
        prop_assert_eq!((t.fin(), t.syn(), t.rst(), t.psh(), t.ack(), t.urg(), t.ece(), t.cwr()),
            (tcp.flags.fin(), tcp.flags.syn(), tcp.flags.rst(), tcp.flags.psh(), tcp.flags.ack(), tcp.flags.urg(), tcp.flags.ece(), tcp.flags.cwr()));
        prop_assert_eq!(t.payload(), &payload[..]);
        prop_assert_eq!(t.calc_checksum_ipv4(src.octets(), dst.octets()).unwrap(), t.checksum());
        let mut theirs = TcpOptions::default();
        for e in t.options_iterator() {
            match e.expect("etherparse accepts our options") {
                TcpOptionElement::MaximumSegmentSize(m) => theirs.mss = Some(m),
                TcpOptionElement::WindowScale(w) => theirs.window_scale = Some(w),
                TcpOptionElement::SelectiveAcknowledgementPermitted => theirs.sack_permitted = true,
                TcpOptionElement::Timestamp(a, b) => theirs.timestamp = Some(TcpTimestamp { tsval: a, tsecr: b }),
                TcpOptionElement::SelectiveAcknowledgement(first, rest) => {
                    theirs.sack_blocks.push(SeqNumber(first.0), SeqNumber(first.1));
                    for (l, r) in rest.iter().flatten() {
                        theirs.sack_blocks.push(SeqNumber(*l), SeqNumber(*r));
                    }
                }
                TcpOptionElement::Noop => {}
            }
        }
        prop_assert_eq!(theirs, tcp.options);
    }

    #[test]
    fn etherparse_frames_parse_identically_here(
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sp in 1u16.., dp in 1u16..,
        seq in any::<u32>(), ack in any::<u32>(), window in any::<u16>(), ttl in 1u8..,
        syn in any::<bool>(), fin in any::<bool>(), psh in any::<bool>(),
        options in syn_options(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, ttl).tcp(sp, dp, seq, window).ack(ack);
        if syn { b = b.syn(); }
        if fin { b = b.fin(); }
        if psh { b = b.psh(); }
        let b = b.options(&elements(&options)).expect("options fit");
        let mut frame = Vec::new();
        b.write(&mut frame, &payload).unwrap();

        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        prop_assert_eq!(eth.ethertype(), EtherType::Ipv4);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let ipr = Ipv4Repr::parse(&ip, true).unwrap();
        prop_assert_eq!((ipr.src_addr, ipr.dst_addr, ipr.ttl, ipr.protocol), (Ipv4Addr::from(src), Ipv4Addr::from(dst), ttl, IpProtocol::Tcp));
        let tp = TcpPacket::new_checked(ip.payload()).unwrap();
        let t = TcpRepr::parse(&tp, ipr.src_addr, ipr.dst_addr, true).expect("checksum and options valid");
        prop_assert_eq!((t.src_port, t.dst_port, t.seq.0, t.ack.0, t.window), (sp, dp, seq, ack, window));
        prop_assert_eq!((t.flags.syn(), t.flags.fin(), t.flags.psh(), t.flags.ack()), (syn, fin, psh, true));
        prop_assert_eq!(t.options, options);
        prop_assert_eq!(t.payload, &payload[..]);
    }
}
