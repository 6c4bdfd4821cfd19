//! Scripted engine tests of `Connection::transmit_with` (the application
//! writes the payload of the segment being built) and the buffered
//! `Connection::send_with`.

mod common;

use common::script::*;
use xdptcp::tcp::RxBudget;
use xdptcp::time::Duration;
use xdptcp::wire::{TcpFlags, TcpPacket, TcpRepr};

const ISS1: u32 = OUR_ISS + 1;
const P1: u32 = PEER_ISN + 1;

fn pattern(at: usize, buf: &mut [u8]) -> usize {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = ((at + k) * 7) as u8;
    }
    buf.len()
}

fn parse(buf: &[u8]) -> (u32, u32, u16, TcpFlags, Vec<u8>) {
    let p = TcpPacket::new_checked(buf).expect("a whole header");
    let r = TcpRepr::parse(&p, *LOCAL.ip(), *REMOTE.ip(), true).expect("a valid checksum");
    (r.seq.0, r.ack.0, r.window, r.flags, r.payload.to_vec())
}

/// The segment carries what `f` wrote, our ACK (a pending delayed ACK is
/// answered by it), and is accounted as sent: in flight, timed, kept in the
/// send buffer and retransmitted from there.
#[test]
fn transmit_with_sends_in_place_and_keeps_a_copy_for_retransmission() {
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1, ISS1).data(&[1; 100]));
    let mut buf = vec![0u8; 1600];
    let now = s.now;
    let (len, n) = s.conn.transmit_with(now, &mut buf, 500, |b| pattern(0, b)).expect("can send at once");
    assert_eq!(n, 500);
    let (seq, ack, _, flags, payload) = parse(&buf[..len]);
    assert_eq!((seq, ack), (ISS1, P1 + 100));
    assert!(flags.contains(TcpFlags::ACK | TcpFlags::PSH));
    let mut want = vec![0; 500];
    pattern(0, &mut want);
    assert_eq!(payload, want);
    assert_eq!((s.conn.send_queue(), s.conn.bytes_in_flight()), (500, 500));
    assert_eq!(s.conn.snd_nxt().0, ISS1 + 500);
    // The delayed ACK rode on it; nothing else is due.
    s.expect_nothing();
    // Lost: the retransmission comes from the send buffer.
    let fired = s.advance(Duration::from_secs(2));
    let rtx = &fired.first().expect("a retransmission").1;
    assert_eq!((rtx.seq, rtx.payload.clone()), (ISS1, want));
    s.inject(Seg::ack(P1 + 100, ISS1 + 500).win(512));
    assert_eq!(s.conn.send_queue(), 0);
}

/// It declines, without calling `f`, whenever the segment would not be the
/// next thing `poll_transmit` sends: data queued ahead, a closed window, a
/// shut write side.
#[test]
fn transmit_with_declines_unless_new_data_is_next() {
    let mut s = Script::established(Script::config());
    let mut buf = vec![0u8; 1600];
    let now = s.now;
    assert_eq!(s.conn.send(&[9; 10]), Ok(10));
    assert!(s.conn.transmit_with(now, &mut buf, 100, |_| panic!("data is queued ahead")).is_none());
    let seg = s.expect();
    assert_eq!(seg.payload, vec![9; 10]);
    s.inject(Seg::ack(P1, ISS1 + 10).win(0));
    assert_eq!(s.conn.send_window(), 0);
    assert!(s.conn.transmit_with(now, &mut buf, 100, |_| panic!("the window is closed")).is_none());
    // The buffered path still takes it, in place.
    assert_eq!(s.conn.send_with(100, |b| pattern(10, b)), Ok(100));
    assert_eq!(s.conn.send_queue(), 100);
    s.inject(Seg::ack(P1, ISS1 + 10).win(512));
    let seg = s.expect();
    let mut want = vec![0; 100];
    pattern(10, &mut want);
    assert_eq!((seg.seq, seg.payload), (ISS1 + 10, want));
    s.inject(Seg::ack(P1, ISS1 + 110).win(512));
    s.conn.close();
    assert!(s.conn.transmit_with(now, &mut buf, 100, |_| panic!("shut down")).is_none());
    assert!(s.conn.send_with(100, |_| panic!("shut down")).is_err());
}

/// During a direct delivery (`on_data`), a segment sent in place ACKs the
/// data being delivered and keeps the advertised edge where it was; when
/// the delivery might be cut back for lack of receive memory, it declines.
#[test]
fn transmit_with_during_a_direct_delivery() {
    let mut s = Script::established(Script::config());
    let mut buf = vec![0u8; 1600];
    s.inject(Seg::ack(P1, ISS1).data(&[1; 10]));
    s.conn.consume(10);
    let seg = s.advance(Duration::from_millis(50)).pop().expect("the delayed ACK").1;
    let edge = seg.ack + (u32::from(seg.window) << 7);
    // More than an MSS: enough that a window update would move the edge.
    let data = Seg::ack(P1 + 10, ISS1).data(&[2; 3000]);
    let repr = data.repr();
    let mut bytes = vec![0u8; repr.header_len() + 3000];
    repr.emit(&mut TcpPacket::new_unchecked(&mut bytes[..]), *REMOTE.ip(), *LOCAL.ip(), true);
    let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
    let parsed = TcpRepr::parse(&packet, *REMOTE.ip(), *LOCAL.ip(), true).unwrap();
    let now = s.now;
    let mut delivery = s.conn.handle_segment_direct(now, &parsed);
    assert_eq!(delivery.payload().len(), 3000);
    let (len, n) = delivery.handle().transmit_with(now, &mut buf, 1000, |b| pattern(0, b)).unwrap();
    assert_eq!(n, 1000);
    let (_, ack, window, _, _) = parse(&buf[..len]);
    assert_eq!(ack, P1 + 3010);
    // The same edge, as far as the scaled field shows it.
    let now_edge = ack + (u32::from(window) << 7);
    assert!(now_edge.abs_diff(edge) < 128, "no new window during the delivery: {now_edge} vs {edge}");
    delivery.complete(400);
    assert_eq!(s.conn.recv_queue(), 2600);

    // Receive memory for only part of the next delivery: RCV.NXT may step
    // back in complete_direct, so nothing may acknowledge it yet.
    s.conn.consume(2600);
    s.drain();
    s.conn.set_rx_budget(RxBudget { memory: 300, ..RxBudget::UNLIMITED });
    let data = Seg::ack(P1 + 3010, ISS1 + 1000).data(&[3; 1000]);
    let repr = data.repr();
    let mut bytes = vec![0u8; repr.header_len() + 1000];
    repr.emit(&mut TcpPacket::new_unchecked(&mut bytes[..]), *REMOTE.ip(), *LOCAL.ip(), true);
    let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
    let parsed = TcpRepr::parse(&packet, *REMOTE.ip(), *LOCAL.ip(), true).unwrap();
    let mut delivery = s.conn.handle_segment_direct(now, &parsed);
    assert_eq!(delivery.payload().len(), 1000);
    assert!(!delivery.can_transmit_with(100));
    assert!(delivery.handle().transmit_with(now, &mut buf, 100, |_| panic!("the delivery may be cut back")).is_none());
    delivery.complete(0);
    assert_eq!(s.conn.rcv_nxt().0, P1 + 3310, "cut back to the budget");
    assert!(s.conn.can_transmit_with(100));
}

/// An echo answering every segment in place never grows the window in
/// those answers; once the peer's view of the window has halved, a window
/// update follows the delivery, so the window never closes (nor stalls
/// the peer) however long the stream.
#[test]
fn direct_answers_do_not_let_the_window_close() {
    let config = xdptcp::tcp::Config { recv_buffer: 64 << 10, ..Script::config() };
    let mut s = Script::established(config);
    let mut buf = vec![0u8; 1600];
    let (mut seq, mut ours) = (P1, ISS1);
    let (mut updates, mut lowest) = (0, usize::MAX);
    for _ in 0..500 {
        let data = Seg::ack(seq, ours).data(&[2; 1000]).win(512);
        let repr = data.repr();
        let mut bytes = vec![0u8; repr.header_len() + 1000];
        repr.emit(&mut TcpPacket::new_unchecked(&mut bytes[..]), *REMOTE.ip(), *LOCAL.ip(), true);
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        let parsed = TcpRepr::parse(&packet, *REMOTE.ip(), *LOCAL.ip(), true).unwrap();
        let now = s.now;
        let mut delivery = s.conn.handle_segment_direct(now, &parsed);
        let echo = delivery.payload().to_vec();
        let (_, n) = delivery.handle().transmit_with(now, &mut buf, 1000, |b| {
            b.copy_from_slice(&echo[..b.len()]);
            b.len()
        }).expect("the echo goes at once");
        assert_eq!(n, 1000);
        lowest = lowest.min(delivery.recv_window());
        delivery.complete(echo.len());
        for seg in s.drain() {
            assert!(seg.payload.is_empty(), "only window updates are left to send");
            updates += 1;
        }
        seq += 1000;
        ours += 1000;
    }
    assert!(lowest >= 24 << 10, "the window shrank to {lowest}");
    // About one update per half window consumed (500 kB / 32 KiB), not one per segment.
    assert!((10..=40).contains(&updates), "{updates} window updates");
}
