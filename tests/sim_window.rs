//! Windows under pressure between two xdptcp stacks in the simulator: a
//! slow reader behind a lossy ACK path. Every byte is verified.

mod common;

use common::*;
use xdptcp::sim::link::LinkConfig;
use xdptcp::sim::net::Network;
use xdptcp::tcp::{Config, Shutdown};
use xdptcp::time::Duration;

#[test]
fn slow_reader_behind_a_lossy_ack_path_completes() {
    // RFC 1122 §4.2.3.4 / RFC 9293 §3.8.6.2.1. The reader takes 1000 bytes
    // every 20 ms from a 16 KiB buffer, so its window edge often leaves the
    // sender a sliver smaller than an MSS, with nothing in flight; 30 % of
    // its ACKs (window updates among them) are lost. Without a timer for a
    // window too small to use, one lost update stalls the transfer for good.
    const TOTAL: u64 = 256 * 1024;
    for seed in 1..=8u64 {
        let reader = Config { recv_buffer: 16 * 1024, ..Config::default() };
        let data = LinkConfig::ideal(Duration::from_millis(5));
        let acks = LinkConfig::ideal(Duration::from_millis(5)).with_loss(0.3);
        let mut net = Network::pair(Config::default(), reader, data, acks, seed);
        let (client, server) = establish(&mut net, 41000);
        let start = net.now();
        let (mut sent, mut received, mut mismatch) = (0u64, 0u64, None);
        let mut buf = vec![0u8; 16 * 1024];
        let mut stalled = false;
        while received < TOTAL && net.now() - start < Duration::from_secs(600) {
            while sent < TOTAL {
                let n = (TOTAL - sent).min(buf.len() as u64) as usize;
                fill(seed, sent, &mut buf[..n]);
                let w = net.conn_mut(client).send(&buf[..n]).unwrap();
                sent += w as u64;
                if w < n {
                    break;
                }
            }
            if sent == TOTAL {
                net.conn_mut(client).shutdown(Shutdown::Write);
            }
            // 20 ms pass (or less, if nothing at all is left to happen
            // before the reader reads again).
            net.run_until(Duration::from_millis(20), |_| false);
            let mut chunk = [0u8; 1000];
            let n = net.conn_mut(server).recv(&mut chunk);
            for (k, &b) in chunk[..n].iter().enumerate() {
                if mismatch.is_none() && b != pattern(seed, received + k as u64) {
                    mismatch = Some(received + k as u64);
                }
            }
            received += n as u64;
            net.flush();
            if n == 0 && net.next_event().is_none() {
                stalled = true;
                break;
            }
        }
        let done = received == TOTAL && !stalled;
        let c = net.conn(client);
        assert!(
            done,
            "seed {seed}: stalled at {received} of {TOTAL} bytes after {:?}: sender {:?}, {} unacknowledged, {} in flight, peer window {}",
            net.now() - start,
            c.state(),
            c.send_queue(),
            c.bytes_in_flight(),
            c.send_window()
        );
        assert_eq!(mismatch, None, "seed {seed}: first corrupted byte");
        eprintln!("seed {seed}: {TOTAL} bytes in {:?}, {} retransmissions", net.now() - start, c.stats().retransmits);
    }
}
