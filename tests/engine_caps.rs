//! Scripted engine tests of the shard's budgets (`RxBudget`): what a
//! connection does when the shard says its reassembly memory, receive memory,
//! window growth or send memory is used up. Dropping is graceful (the peer retransmits
//! what was not acknowledged); the advertised right edge never moves left
//! (RFC 9293 §3.8.6).

mod common;

use common::script::*;
use xdptcp::tcp::{Config, RxBudget, State};
use xdptcp::wire::{SeqNumber, TcpFlags};

const ISS1: u32 = OUR_ISS + 1;
const P1: u32 = PEER_ISN + 1;

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn sack_of(seg: &Seg) -> Vec<(u32, u32)> {
    seg.options.sack_blocks.as_slice().iter().map(|&(l, r): &(SeqNumber, SeqNumber)| (l.0, r.0)).collect()
}

#[test]
fn out_of_order_data_beyond_the_reassembly_budget_is_dropped_not_sacked() {
    let mut s = Script::established(Script::config());
    s.conn.set_rx_budget(RxBudget { reassembly: 1000, ..RxBudget::UNLIMITED });
    s.inject(Seg::ack(P1 + 1000, ISS1).data(&bytes(500, 1)));
    assert_eq!(s.conn.ooo_queue(), 500);
    assert_eq!(sack_of(&s.expect()), vec![(P1 + 1000, P1 + 1500)]);

    // 600 new bytes do not fit the 500 left: dropped, and the ACK (a
    // duplicate, so the peer recovers fast) SACKs only what was kept.
    s.inject(Seg::ack(P1 + 2000, ISS1).data(&bytes(600, 2)));
    assert_eq!(s.conn.ooo_queue(), 500);
    assert_eq!(s.conn.stats().ooo_dropped, 1);
    let ack = s.expect();
    assert_eq!(ack.ack, P1);
    assert_eq!(sack_of(&ack), vec![(P1 + 1000, P1 + 1500)]);

    // A retransmission of what is already held adds nothing: kept.
    s.inject(Seg::ack(P1 + 1000, ISS1).data(&bytes(500, 1)));
    assert_eq!(s.conn.stats().ooo_dropped, 1);
    s.drain();

    // In-order data never needs reassembly budget, and it joins the range.
    s.conn.set_rx_budget(RxBudget { reassembly: 0, ..RxBudget::UNLIMITED });
    s.inject(Seg::ack(P1, ISS1).data(&bytes(1000, 3)));
    assert_eq!(s.conn.ooo_queue(), 0);
    assert_eq!(s.conn.rcv_nxt(), SeqNumber(P1 + 1500));
    let data = s.read_all();
    assert_eq!(data.len(), 1500);
    assert_eq!(&data[..1000], &bytes(1000, 3)[..]);
    assert_eq!(&data[1000..], &bytes(500, 1)[..]);
}

#[test]
fn out_of_order_data_beyond_the_memory_budget_is_dropped() {
    let mut s = Script::established(Script::config());
    s.conn.set_rx_budget(RxBudget { memory: 400, ..RxBudget::UNLIMITED });
    s.inject(Seg::ack(P1 + 1000, ISS1).data(&bytes(500, 1)));
    assert_eq!(s.conn.ooo_queue(), 0);
    assert_eq!(s.conn.stats().ooo_dropped, 1);
    assert!(sack_of(&s.expect()).is_empty());
}

#[test]
fn in_order_data_beyond_the_memory_budget_is_not_acknowledged() {
    // A direct delivery the application leaves unread, with a FIN: only
    // what fits the budget is kept; RCV.NXT stops there and the FIN waits.
    let mut s = Script::established(Script::config());
    s.conn.set_rx_budget(RxBudget { memory: 100, ..RxBudget::UNLIMITED });
    let payload = bytes(300, 1);
    s.inject(Seg::ack(P1, ISS1).data(&payload).fin());
    assert_eq!(s.conn.recv_queue(), 100);
    assert_eq!(s.conn.rcv_nxt(), SeqNumber(P1 + 100));
    assert_eq!(s.conn.state(), State::Established, "the FIN lies beyond what was kept");
    assert_eq!(s.conn.stats().mem_dropped, 1);
    let ack = s.expect();
    assert_eq!(ack.ack, P1 + 100, "an immediate ACK of what was kept");

    // Buffered in-order data (the queue is not empty): cut to the budget too.
    s.conn.set_rx_budget(RxBudget { memory: 50, ..RxBudget::UNLIMITED });
    s.inject(Seg::ack(P1 + 100, ISS1).data(&payload[100..]).fin());
    assert_eq!(s.conn.rcv_nxt(), SeqNumber(P1 + 150));
    assert_eq!(s.conn.stats().mem_dropped, 2);
    assert_eq!(s.conn.state(), State::Established);
    s.drain();

    // Memory again: the retransmission completes the stream and the FIN.
    s.conn.set_rx_budget(RxBudget::UNLIMITED);
    s.inject(Seg::ack(P1 + 150, ISS1).data(&payload[150..]).fin());
    assert_eq!(s.conn.state(), State::CloseWait);
    assert_eq!(s.read_all(), payload);
    assert_eq!(s.expect().ack, P1 + 301);
}

#[test]
fn data_consumed_in_place_needs_no_memory() {
    let mut s = Script::established(Script::config());
    s.conn.set_rx_budget(RxBudget { memory: 0, reassembly: 0, window: 0, ..RxBudget::UNLIMITED });
    let seg = Seg::ack(P1, ISS1).data(b"read at once").fin();
    let delivery = s.conn.handle_segment_direct(s.now, &seg.repr());
    let direct = delivery.payload();
    assert_eq!(direct, b"read at once");
    delivery.complete(direct.len());
    assert_eq!(s.conn.state(), State::CloseWait, "the FIN is taken once the delivery is settled");
    assert_eq!(s.conn.stats().mem_dropped, 0);
    assert_eq!(s.expect().ack, P1 + 13);
}

#[test]
fn a_clamped_window_stops_growing_but_never_retracts() {
    // 65535 bytes: no window scaling, so the fields read as bytes.
    let mut s = Script::established(Config { recv_buffer: 65_535, ..Config::default() });
    s.inject(Seg::ack(P1, ISS1).data(&bytes(1000, 1)));
    assert_eq!(s.drain().last().map(|a| a.window), None, "delayed");
    assert_eq!(s.read_all().len(), 1000);
    s.inject(Seg::ack(P1 + 1000, ISS1).data(&bytes(1000, 2)));
    let ack = s.expect(); // the second segment is acknowledged at once
    let edge = ack.ack + u32::from(ack.window);
    assert!(edge >= P1 + 65_535);
    assert_eq!(s.read_all().len(), 1000);

    // Pressure: growth capped at 4000 bytes, below what is promised. The
    // edge stays (RFC 9293 §3.8.6: no shrinking) and the clamp is counted.
    s.conn.set_rx_budget(RxBudget { window: 4000, ..RxBudget::UNLIMITED });
    let mss = s.conn.mss() as u32;
    let mut at = P1 + 2000;
    for k in 0..4 {
        s.inject(Seg::ack(at, ISS1).data(&bytes(mss as usize, k)));
        at += mss;
    }
    let acks = s.drain();
    assert!(!acks.is_empty());
    for a in &acks {
        assert_eq!(a.ack + u32::from(a.window), edge, "the right edge neither grows nor retracts");
    }
    assert!(s.conn.stats().window_clamped > 0);

    // No window budget at all: the peer may still fill what was promised.
    s.conn.set_rx_budget(RxBudget { window: 0, ..RxBudget::UNLIMITED });
    s.read_all();
    while at < edge {
        let n = (edge - at).min(mss);
        s.inject(Seg::ack(at, ISS1).data(&bytes(n as usize, 9)));
        at += n;
        s.read_all();
    }
    let last = s.drain().pop().expect("an ACK of the last segment");
    assert_eq!((last.ack, last.window), (edge, 0), "used up, nothing new offered");

    // The pressure is gone: the next window update reopens the window to
    // the free buffer.
    s.conn.set_rx_budget(RxBudget::UNLIMITED);
    s.conn.consume(0);
    let a = s.expect();
    assert!(!a.has(TcpFlags::RST));
    assert_eq!((a.ack, a.window), (edge, 65_535));
}

#[test]
fn a_syn_ack_under_pressure_offers_only_the_clamped_window() {
    let mut s = Script::passive(Script::config(), Script::linux_syn());
    s.conn.set_rx_budget(RxBudget { window: 5840, ..RxBudget::UNLIMITED });
    let synack = s.expect();
    assert!(synack.has(TcpFlags::SYN));
    assert_eq!(synack.window, 5840);
    assert_eq!(s.conn.stats().window_clamped, 1);
    assert_eq!(s.conn.recv_window(), 5840);
}

/// The send budget: what a shard's memory leaves for this connection's send
/// buffer. Sends beyond it are cut short (and `Writable` follows once ACKs
/// free space), but a connection may always queue SEND_MEMORY_FLOOR bytes
/// (Linux's tcp_wmem[0]), so it never stops for good; what it queues comes
/// off both budgets.
#[test]
fn sends_are_cut_to_the_send_budget_but_never_below_the_floor() {
    use xdptcp::tcp::{Event, SEND_MEMORY_FLOOR};
    let mut s = Script::established(Script::config());
    s.conn.set_rx_budget(RxBudget { send: 10_000, ..RxBudget::UNLIMITED });
    assert_eq!(s.conn.send_capacity(), 10_000);
    assert_eq!(s.conn.send(&bytes(6_000, 1)).unwrap(), 6_000);
    assert_eq!(s.conn.send(&bytes(6_000, 2)).unwrap(), 4_000, "cut to the budget");
    assert_eq!(s.conn.send_capacity(), 0);
    assert_eq!(s.conn.send(&bytes(10, 3)).unwrap(), 0);
    assert_eq!(s.conn.send_queue(), 10_000);
    // Memory is out: an empty send buffer may still take the floor.
    let mut e = Script::established(Script::config());
    e.conn.set_rx_budget(RxBudget { send: 0, memory: 0, ..RxBudget::UNLIMITED });
    assert_eq!(e.conn.send_capacity(), SEND_MEMORY_FLOOR);
    assert_eq!(e.conn.send(&bytes(10_000, 4)).unwrap(), SEND_MEMORY_FLOOR);
    assert_eq!(e.conn.send(&bytes(10, 5)).unwrap(), 0);
    let n = e.conn.send_with(100, |buf| buf.len()).unwrap();
    assert_eq!(n, 0, "send_with is cut the same way");
    // Its ACK frees the floor again, and the application hears of it.
    let out = e.drain();
    let sent: usize = out.iter().map(|seg| seg.payload.len()).sum();
    assert_eq!(sent, SEND_MEMORY_FLOOR);
    e.inject(Seg::ack(P1, ISS1 + SEND_MEMORY_FLOOR as u32));
    assert_eq!(e.conn.send_queue(), 0);
    assert!(e.events().contains(&Event::Writable));
    assert_eq!(e.conn.send_capacity(), SEND_MEMORY_FLOOR);
    // Received data comes off the send budget too (one shared pool).
    let mut r = Script::established(Script::config());
    r.conn.set_rx_budget(RxBudget { send: 5_000, memory: 5_000, ..RxBudget::UNLIMITED });
    r.inject(Seg::ack(P1, ISS1).data(&bytes(3_000, 6)));
    assert_eq!(r.conn.recv_queue(), 3_000);
    assert_eq!(r.conn.send_capacity(), SEND_MEMORY_FLOOR, "5000 - 3000 left, below the floor");
}

#[test]
fn in_order_data_displaces_out_of_order_data_when_memory_runs_out() {
    // Linux's tcp_prune_ofo_queue: when receive memory runs out, data
    // held out of order (highest first) gives way to the in-order data the
    // application is waiting for; the receiver reneges on its SACKs
    // (RFC 2018 §8), and the sender resends what it forgot.
    let mut s = Script::established(Script::config());
    s.inject(Seg::ack(P1 + 1000, ISS1).data(&bytes(500, 1)));
    s.inject(Seg::ack(P1 + 2000, ISS1).data(&bytes(500, 2)));
    s.drain();
    assert_eq!(s.conn.ooo_queue(), 1000);
    // The shard has 200 bytes left: the 700 in-order bytes need 500 more.
    s.conn.set_rx_budget(RxBudget { memory: 200, ..RxBudget::UNLIMITED });
    s.inject(Seg::ack(P1, ISS1).data(&bytes(700, 3)));
    assert_eq!(s.conn.rcv_nxt(), SeqNumber(P1 + 700), "the in-order data was taken");
    assert_eq!(s.conn.stats().mem_dropped, 0);
    assert_eq!(s.conn.stats().ooo_pruned, 1);
    assert_eq!(s.conn.ooo_queue(), 500, "only the highest range went");
    let ack = s.drain().pop().expect("an ACK");
    assert_eq!(ack.ack, P1 + 700);
    assert_eq!(sack_of(&ack), vec![(P1 + 1000, P1 + 1500)]);
    assert_eq!(s.read_all(), bytes(700, 3));
}

#[test]
fn in_order_data_displaces_an_out_of_order_range_it_overlaps() {
    // The whole budget is one out-of-order range that starts inside the
    // in-order segment: it goes, and as much of the segment as fits in the
    // memory it freed is taken.
    let mut s = Script::established(Script::config());
    s.conn.set_rx_budget(RxBudget { memory: 1024, ..RxBudget::UNLIMITED });
    s.inject(Seg::ack(P1 + 424, ISS1).data(&bytes(1024, 1)));
    s.drain();
    assert_eq!(s.conn.ooo_queue(), 1024);
    s.conn.set_rx_budget(RxBudget { memory: 0, ..RxBudget::UNLIMITED });
    let seg = bytes(1448, 4);
    s.inject(Seg::ack(P1, ISS1).data(&seg));
    assert_eq!(s.conn.rcv_nxt(), SeqNumber(P1 + 1024), "what fits the freed memory was taken");
    assert_eq!(s.conn.ooo_queue(), 0);
    assert_eq!(s.read_all(), seg[..1024].to_vec());
}
