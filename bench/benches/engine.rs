//! Engine cost per segment, without I/O (issue: ≤ 100 ns per in-order
//! 1448-byte data segment on one core).
//!
//! - `rx_inorder_batch64`: parse (checksum verified) + engine + one coalesced
//!   ACK for a batch of 64 in-order data segments, the application consuming
//!   every payload in place. Each round then moves the batch's sequence
//!   numbers on with an RFC 1624 checksum patch (included in the time; a few
//!   ns per segment).
//! - `tx_batch64`: the send path: queue 64 segments' worth of data, emit the
//!   64 checksummed segments, then process the peer's ACK for them.
//!
//! Run: `cargo bench -p xdptcp-bench --bench engine`. Per-segment cost is
//! the reported time divided by 64.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xdptcp::tcp::Config;
use xdptcp::wire::{TcpPacket, TcpRepr};
use xdptcp_bench::engine::{Pair, RxBatch, CLIENT, SERVER};

const BATCH: usize = 64;

fn config() -> Config {
    // Enough initial window to capture a whole batch without ACKs.
    Config { initial_window: BATCH as u32, ..Config::default() }
}

fn rx_inorder(c: &mut Criterion) {
    let mut pair = Pair::established(config());
    let mut batch = RxBatch::capture(&mut pair, BATCH);
    let mut ack = vec![0u8; 2048];
    let now = pair.now;
    let expected = BATCH * pair.client.mss();
    let server = &mut pair.server;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("rx_inorder_batch64", |b| {
        b.iter(|| {
            let mut consumed = 0usize;
            for frame in &batch.frames {
                let packet = TcpPacket::new_checked(&frame[..]).unwrap();
                let seg = TcpRepr::parse(&packet, *CLIENT.ip(), *SERVER.ip(), true).unwrap();
                let delivery = server.handle_segment_direct(now, &seg);
                let n = delivery.payload().len();
                consumed += n;
                delivery.complete(n);
            }
            let mut acks = 0;
            while server.poll_transmit(now, &mut ack).is_some() {
                acks += 1;
            }
            assert_eq!(acks, 1, "one coalesced ACK per batch");
            assert_eq!(consumed, expected, "every payload delivered in place");
            batch.advance();
            consumed
        })
    });
    group.finish();
}

fn tx(c: &mut Criterion) {
    let mut pair = Pair::established(config());
    let mss = pair.client.mss();
    let data = vec![0xa5u8; mss * BATCH];
    let mut buf = vec![0u8; 2048];
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("tx_batch64", |b| {
        b.iter(|| {
            let now = pair.now;
            let client = &mut pair.client;
            assert_eq!(client.send(&data).unwrap(), data.len());
            let mut segs = 0;
            let mut last = None;
            while let Some(len) = client.poll_transmit(now, &mut buf) {
                segs += 1;
                last = Some(len);
            }
            assert_eq!(segs, BATCH);
            // The peer acknowledges everything at once.
            ack_all(&mut pair) + last.unwrap_or(0)
        })
    });
    group.finish();
}

/// Builds the server's ACK for all the client sent, and feeds it back.
fn ack_all(pair: &mut Pair) -> usize {
    let now = pair.now;
    let una = pair.client.snd_nxt();
    let mut buf = [0u8; 128];
    // The server has not seen the data (the bench skips delivery); forge its
    // cumulative ACK the way the server would write it.
    let repr = TcpRepr {
        src_port: SERVER.port(),
        dst_port: CLIENT.port(),
        seq: pair.server.snd_nxt(),
        ack: una,
        flags: xdptcp::wire::TcpFlags::ACK,
        window: u16::MAX,
        urgent: 0,
        options: xdptcp::wire::TcpOptions::default(),
        payload: &[],
    };
    let len = repr.header_len();
    repr.emit_header(&mut buf[..len]);
    let packet = TcpPacket::new_checked(&buf[..len]).unwrap();
    let seg = TcpRepr::parse(&packet, *SERVER.ip(), *CLIENT.ip(), false).unwrap();
    pair.client.handle_segment(now, &seg);
    len
}

criterion_group!(benches, rx_inorder, tx);
criterion_main!(benches);
