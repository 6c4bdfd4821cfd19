//! Randomized: random application calls on both ends under random faults.
//! The engine never panics, never delivers corrupted, reordered or duplicated
//! bytes, and every connection ends CLOSED once both ends have closed.

mod common;

use common::*;
use proptest::prelude::*;
use xdptcp::sim::link::LinkConfig;
use xdptcp::sim::net::{ConnId, Network};
use xdptcp::tcp::{CloseReason, Config, Shutdown, State};
use xdptcp::time::Duration;

#[derive(Debug, Clone)]
enum Op {
    Send { side: usize, len: u16 },
    /// `send_with`: straight into a frame when the data can go at once.
    SendWith { side: usize, len: u16 },
    Read { side: usize, max: u16 },
    Shutdown { side: usize },
    Close { side: usize },
    Abort { side: usize },
    Wait { ms: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 1..20_000u16).prop_map(|(side, len)| Op::Send { side, len }),
        3 => (0..2usize, 1..4_000u16).prop_map(|(side, len)| Op::SendWith { side, len }),
        4 => (0..2usize, 1..30_000u16).prop_map(|(side, max)| Op::Read { side, max }),
        1 => (0..2usize).prop_map(|side| Op::Shutdown { side }),
        1 => (0..2usize).prop_map(|side| Op::Close { side }),
        1 => (0..2usize).prop_map(|side| Op::Abort { side }),
        4 => (1..500u16).prop_map(|ms| Op::Wait { ms }),
    ]
}

struct End {
    id: ConnId,
    seed: u64,
    written: u64,
    read: u64,
}

fn read_some(net: &mut Network, end: &mut End, peer_seed: u64, max: usize) -> Result<(), TestCaseError> {
    let conn = net.conn_mut(end.id);
    let (a, b) = conn.recv_slices();
    let n = (a.len() + b.len()).min(max);
    for (k, &byte) in a.iter().chain(b.iter()).take(n).enumerate() {
        let at = end.read + k as u64;
        prop_assert_eq!(byte, pattern(peer_seed, at), "corrupt, reordered or duplicated byte at offset {}", at);
    }
    end.read += n as u64;
    conn.consume(n);
    Ok(())
}

fn run(seed: u64, link: LinkConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let config = Config { max_retries: 8, ..Config::default() };
    let mut net = Network::pair(config.clone(), config, link.clone(), link, seed);
    let (client, server) = establish(&mut net, 44000);
    let mut ends = [End { id: client, seed: seed ^ 1, written: 0, read: 0 }, End { id: server, seed: seed ^ 2, written: 0, read: 0 }];
    let seeds = [ends[0].seed, ends[1].seed];
    let mut buf = vec![0u8; 20_000];
    for op in ops {
        match op {
            Op::Send { side, len } => {
                let e = &mut ends[side];
                let n = len as usize;
                fill(e.seed, e.written, &mut buf[..n]);
                if let Ok(w) = net.conn_mut(e.id).send(&buf[..n]) {
                    e.written += w as u64;
                }
            }
            Op::SendWith { side, len } => {
                let e = &mut ends[side];
                let (seed, at) = (e.seed, e.written);
                if let Ok((w, _)) = net.send_with(e.id, len as usize, |buf| {
                    fill(seed, at, buf);
                    buf.len()
                }) {
                    e.written += w as u64;
                }
            }
            Op::Read { side, max } => read_some(&mut net, &mut ends[side], seeds[1 - side], max as usize)?,
            Op::Shutdown { side } => net.conn_mut(ends[side].id).shutdown(Shutdown::Write),
            Op::Close { side } => net.conn_mut(ends[side].id).close(),
            Op::Abort { side } => net.conn_mut(ends[side].id).abort(),
            Op::Wait { ms } => {
                net.run_until(Duration::from_millis(ms as u64), |_| false);
            }
        }
        for e in &mut ends {
            while net.conn_mut(e.id).poll_event().is_some() {}
        }
    }
    // Both applications read what is left and close; everything must wind
    // down to CLOSED (TIME_WAIT included) in bounded virtual time.
    let mut closed = [false, false];
    let done = net.run_until(Duration::from_secs(1800), |net| {
        for side in 0..2 {
            let _ = read_some(net, &mut ends[side], seeds[1 - side], usize::MAX);
            if !closed[side] {
                closed[side] = true;
                net.conn_mut(ends[side].id).close();
            }
            while net.conn_mut(ends[side].id).poll_event().is_some() {}
        }
        net.conns(0).chain(net.conns(1)).all(|(_, c)| c.state() == State::Closed)
    });
    let states: Vec<_> = net.conns(0).chain(net.conns(1)).map(|(_, c)| c.state()).collect();
    prop_assert!(done, "connections did not all close: {:?}", states);
    for side in 0..2 {
        prop_assert!(ends[side].read <= ends[1 - side].written, "read more than was written");
    }
    // Never lose a byte: when both ends closed gracefully, everything each
    // wrote was read by the other.
    let reasons = [net.conn(client).close_reason(), net.conn(server).close_reason()];
    if reasons == [CloseReason::Normal, CloseReason::Normal] {
        for side in 0..2 {
            prop_assert_eq!(ends[side].read, ends[1 - side].written, "bytes lost despite a graceful close");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_calls_under_random_faults(
        seed in any::<u64>(),
        loss in 0.0..0.15f64,
        reorder in 0.0..0.2f64,
        dup in 0.0..0.1f64,
        corrupt in 0.0..0.05f64,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let mut link = lossy(2, loss, reorder, dup);
        link.corrupt = corrupt;
        run(seed, link, ops)?;
    }
}
