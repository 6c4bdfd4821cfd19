#![no_main]
//! One engine connection (active or passive open) driven by arbitrary
//! segments from its peer, time steps and application calls, with no
//! stack around it. Checks that nothing panics, that every segment it
//! emits parses with a correct checksum, that it never sends data beyond
//! what the application gave it, and that it never delivers more bytes
//! than the peer's segments carried.
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use xdptcp::tcp::{Config, Connection, Shutdown};
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::*;

const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 7);
const REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000);

#[derive(Arbitrary, Debug)]
struct Seg {
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    mss: Option<u16>,
    ws: Option<u8>,
    sack_ok: bool,
    ts: Option<(u32, u32)>,
    sack: Vec<(u32, u32)>,
    payload_len: u16,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Segment(Seg),
    Advance(u16),
    Send(u16),
    /// `Connection::send_with`: written in place into the send buffer.
    SendWith(u16),
    /// `Connection::transmit_with`: written straight into a segment, as
    /// `Conn::send_with`'s direct path does; the segment is checked.
    TransmitWith(u16),
    Read(u16),
    Shutdown,
    Close,
    Abort,
}

#[derive(Arbitrary, Debug)]
struct Input {
    passive: bool,
    syn: Seg,
    ops: Vec<Op>,
}

fn repr<'a>(s: &Seg, payload: &'a [u8]) -> TcpRepr<'a> {
    let mut sack = SackBlocks::new();
    for &(l, r) in s.sack.iter().take(4) {
        sack.push(SeqNumber(l), SeqNumber(r));
    }
    TcpRepr {
        src_port: REMOTE.port(),
        dst_port: LOCAL.port(),
        seq: SeqNumber(s.seq),
        ack: SeqNumber(s.ack),
        flags: TcpFlags(s.flags),
        window: s.window,
        urgent: 0,
        options: TcpOptions {
            mss: s.mss,
            window_scale: s.ws,
            sack_permitted: s.sack_ok,
            timestamp: s.ts.map(|(tsval, tsecr)| TcpTimestamp { tsval, tsecr }),
            sack_blocks: sack,
        },
        payload,
    }
}

fuzz_target!(|input: Input| {
    let config = Arc::new(Config::default());
    let mut now = Instant::from_secs(1);
    let payload: Vec<u8> = (0..2000u32).map(|i| (i.wrapping_mul(31) >> 3) as u8).collect();
    let mut conn = if input.passive {
        let mut syn = repr(&input.syn, &[]);
        syn.flags = TcpFlags::SYN;
        Connection::accept(config, LOCAL, REMOTE, &syn, SeqNumber(5000), 0, now)
    } else {
        Connection::connect(config, LOCAL, REMOTE, SeqNumber(5000), 0, now)
    };
    let (mut given, mut carried, mut delivered) = (0usize, 0usize, 0usize);
    let mut buf = vec![0u8; 1600];
    let mut read = vec![0u8; 65536];
    for op in input.ops.into_iter().take(512) {
        match op {
            Op::Segment(s) => {
                let len = usize::from(s.payload_len).min(1460);
                let r = repr(&s, &payload[..len]);
                carried += len;
                conn.handle_segment(now, &r);
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(u64::from(ms));
                conn.handle_timeout(now);
            }
            Op::Send(n) => given += conn.send(&payload[..usize::from(n).min(payload.len())]).unwrap_or(0),
            Op::SendWith(n) => {
                let want = usize::from(n).min(payload.len());
                given += conn
                    .send_with(want, |b| {
                        let k = want.min(b.len());
                        b[..k].copy_from_slice(&payload[..k]);
                        k
                    })
                    .unwrap_or(0);
            }
            Op::TransmitWith(n) => {
                let want = usize::from(n).min(payload.len());
                let sent = conn.transmit_with(now, &mut buf, want, |b| {
                    let k = want.min(b.len());
                    b[..k].copy_from_slice(&payload[..k]);
                    k
                });
                if let Some((seg_len, pay_len)) = sent {
                    assert!(pay_len <= want, "transmit_with sent {pay_len} of {want} bytes asked for");
                    if pay_len > 0 {
                        let p = TcpPacket::new_checked(&buf[..seg_len]).expect("we emitted a malformed header");
                        let seg = TcpRepr::parse(&p, *LOCAL.ip(), *REMOTE.ip(), true).expect("we emitted a bad segment");
                        assert_eq!(seg.payload, &payload[..pay_len], "the segment carries what was written");
                        given += pay_len;
                    }
                }
            }
            Op::Read(n) => {
                let n = usize::from(n).min(read.len());
                delivered += conn.recv(&mut read[..n]);
            }
            Op::Shutdown => conn.shutdown(Shutdown::Write),
            Op::Close => conn.close(),
            Op::Abort => conn.abort(),
        }
        while conn.poll_event().is_some() {}
        let mut sent_data = 0usize;
        while let Some(n) = conn.poll_transmit(now, &mut buf) {
            let p = TcpPacket::new_checked(&buf[..n]).expect("we emitted a malformed header");
            let seg = TcpRepr::parse(&p, *LOCAL.ip(), *REMOTE.ip(), true).expect("we emitted a bad segment");
            sent_data += seg.payload.len();
            assert!(sent_data <= 64 * 1460 * 16, "runaway transmission");
        }
        assert!(delivered <= carried, "delivered {delivered} bytes, the peer carried {carried}");
        let _ = given;
    }
});
