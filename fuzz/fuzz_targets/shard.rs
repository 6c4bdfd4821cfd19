#![no_main]
//! A whole shard (the `echo` server on port 7) driven by arbitrary events:
//! raw frames, well-formed TCP segments with fuzzed fields and options
//! (checksums correct, so they reach the engine), time steps, and
//! application calls on live connections, including `send_with` and frames
//! handled with TX frames lent (the direct path, as the runtime runs it,
//! with a fuzzed number of free frames whose stale contents are fuzzed
//! too). Checks that nothing panics and that every frame the shard sends,
//! polled or written into a lent frame, is well formed: it parses, its
//! checksums verify, and it comes from our address.
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use xdptcp::apps::Echo;
use xdptcp::stack::{Shard, StackConfig, TxBatch};
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::*;

const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const OUR_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);

#[derive(Arbitrary, Debug)]
struct Segment {
    peer: u8,
    sport: u16,
    to_listener: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    mss: Option<u16>,
    ws: Option<u8>,
    sack_ok: bool,
    ts: Option<(u32, u32)>,
    sack: Vec<(u32, u32)>,
    payload: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Raw(Vec<u8>),
    Segment(Segment),
    Advance(u16),
    Send(u8, Vec<u8>),
    Close(u8),
    /// As `Raw` and `Segment`, with TX frames lent: (free frames, stale byte).
    RawTx(Vec<u8>, u8, u8),
    SegmentTx(Segment, u8, u8),
    /// `Conn::send_with` with frames lent: (conn, bytes, free frames, stale byte).
    SendWith(u8, Vec<u8>, u8, u8),
    Abort(u8),
    Shutdown,
}

fn frame(s: &Segment) -> Vec<u8> {
    let src = Ipv4Addr::new(198, 18, 0, 2 + s.peer % 8);
    let mut sack = SackBlocks::new();
    for &(l, r) in s.sack.iter().take(4) {
        sack.push(SeqNumber(l), SeqNumber(r));
    }
    let options = TcpOptions {
        mss: s.mss,
        window_scale: s.ws,
        sack_permitted: s.sack_ok,
        timestamp: s.ts.map(|(tsval, tsecr)| TcpTimestamp { tsval, tsecr }),
        sack_blocks: sack,
    };
    let payload = &s.payload[..s.payload.len().min(1400)];
    let tcp = TcpRepr {
        src_port: s.sport % 8 + 40000,
        dst_port: if s.to_listener { 7 } else { 9 },
        seq: SeqNumber(s.seq),
        ack: SeqNumber(s.ack),
        flags: TcpFlags(s.flags),
        window: s.window,
        urgent: 0,
        options,
        payload,
    };
    let hl = tcp.header_len();
    let ip = Ipv4Repr { src_addr: src, dst_addr: OUR_IP, protocol: IpProtocol::Tcp, payload_len: hl + payload.len(), ttl: 64 };
    let mut f = vec![0u8; 34 + hl + payload.len()];
    EthernetRepr { src_addr: EthernetAddress([2, 0, 0, 0, 1, s.peer % 8]), dst_addr: OUR_MAC, ethertype: EtherType::Ipv4 }.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
    tcp.emit(&mut TcpPacket::new_unchecked(&mut f[34..]), src, OUR_IP, true);
    f
}

/// Every frame we send must be well formed.
fn check(out: &[u8]) {
    let eth = EthernetFrame::new_checked(out).expect("our Ethernet header");
    assert_eq!(eth.src_addr(), OUR_MAC);
    match eth.ethertype() {
        EtherType::Arp => {
            ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).expect("our ARP")).expect("our ARP parses");
        }
        EtherType::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("our IPv4");
            let repr = Ipv4Repr::parse(&ip, true).expect("our IPv4 header and checksum");
            assert_eq!(repr.src_addr, OUR_IP);
            match repr.protocol {
                IpProtocol::Tcp => {
                    let p = TcpPacket::new_checked(ip.payload()).expect("our TCP");
                    TcpRepr::parse(&p, repr.src_addr, repr.dst_addr, true).expect("our TCP header and checksum");
                }
                IpProtocol::Icmp => {
                    IcmpEchoRepr::parse(&IcmpPacket::new_checked(ip.payload()).expect("our ICMP")).expect("our ICMP parses");
                }
                p => panic!("we sent IP protocol {p:?}"),
            }
        }
        EtherType::Unknown(t) => panic!("we sent ethertype {t:#x}"),
    }
}

/// TX frames lent to the shard: `budget` of them, holding stale bytes as a
/// UMEM frame does.
fn lent(budget: u8, stale: u8) -> TxBatch<Vec<u8>> {
    let mut batch = TxBatch::with_capacity(8);
    for _ in 0..budget % 8 {
        batch.lend(vec![stale; 2048]);
    }
    batch
}

/// Every frame the shard filled is checked.
fn check_filled(batch: &mut TxBatch<Vec<u8>>) {
    for (frame, n) in batch.drain_filled() {
        assert!(n <= frame.len(), "wrote {n} bytes into a {}-byte frame", frame.len());
        check(&frame[..n]);
    }
}

fn nth(shard: &Shard<Echo>, k: u8) -> Option<xdptcp::app::ConnId> {
    let n = shard.connections().count();
    (n > 0).then(|| shard.connections().map(|(id, _)| id).nth(usize::from(k) % n)).flatten()
}

fuzz_target!(|ops: Vec<Op>| {
    let mut shard: Shard<Echo> = Shard::new(StackConfig::new(OUR_MAC, OUR_IP, 24), [7; 16]);
    shard.listen(7);
    let mut app = Echo;
    let mut now = Instant::from_secs(1);
    let mut buf = vec![0u8; 1514];
    for op in ops.into_iter().take(256) {
        match op {
            Op::Raw(bytes) => shard.handle_frame(now, &bytes, &mut app),
            Op::Segment(s) => shard.handle_frame(now, &frame(&s), &mut app),
            Op::Advance(ms) => {
                now = now + Duration::from_millis(u64::from(ms));
                shard.handle_timeout(now, &mut app);
            }
            Op::Send(k, data) => {
                if let Some(id) = nth(&shard, k) {
                    shard.with_conn(id, |c| {
                        let _ = c.send(&data);
                    });
                }
            }
            Op::Close(k) => {
                if let Some(id) = nth(&shard, k) {
                    shard.with_conn(id, |c| c.close());
                }
            }
            Op::Abort(k) => {
                if let Some(id) = nth(&shard, k) {
                    shard.with_conn(id, |c| c.abort());
                }
            }
            Op::Shutdown => shard.close_all(),
            Op::RawTx(bytes, budget, stale) => {
                let mut tx = lent(budget, stale);
                shard.handle_frame_tx(now, &bytes, &mut app, true, &mut tx);
                check_filled(&mut tx);
                shard.poll_transmit_into(now, &mut tx);
                check_filled(&mut tx);
            }
            Op::SegmentTx(seg, budget, stale) => {
                let mut tx = lent(budget, stale);
                shard.handle_frame_tx(now, &frame(&seg), &mut app, true, &mut tx);
                check_filled(&mut tx);
            }
            Op::SendWith(k, data, budget, stale) => {
                if let Some(id) = nth(&shard, k) {
                    let mut tx = lent(budget, stale);
                    shard.with_conn_tx(now, id, &mut tx, |c| {
                        let _ = c.send_with(data.len(), |buf| {
                            let n = data.len().min(buf.len());
                            buf[..n].copy_from_slice(&data[..n]);
                            n
                        });
                    });
                    check_filled(&mut tx);
                }
            }
        }
        while let Some(n) = shard.poll_transmit(now, &mut buf) {
            check(&buf[..n]);
        }
        assert!(shard.open_connections() <= shard.connections().count());
    }
});
