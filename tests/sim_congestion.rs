//! Congestion-control traces in the simulated network: slow start grows
//! exponentially, a loss cuts the window by β (½ for NewReno, 0.7 for CUBIC)
//! and it grows back, and two flows sharing a bottleneck converge to a fair share.

mod common;

use common::*;
use xdptcp::sim::link::LinkConfig;
use xdptcp::sim::net::{ConnId, Network};
use xdptcp::tcp::{Algorithm, Config};
use xdptcp::time::{Duration, Instant};

fn bottleneck(mbps: u64, one_way_ms: u64, queue: usize) -> LinkConfig {
    let mut link = LinkConfig::ideal(Duration::from_millis(one_way_ms));
    link.bandwidth_bps = Some(mbps * 1_000_000);
    link.queue_bytes = queue;
    link
}

fn cfg(algorithm: Algorithm) -> Config {
    Config { congestion: algorithm, ..Config::default() }
}

/// (time, cwnd, ssthresh, in_recovery) after every step.
fn trace(net: &mut Network, from: ConnId, to: ConnId, bytes: u64, limit: Duration) -> Vec<(Instant, usize, usize, bool)> {
    let mut flow = Flow::new(from, to, 3, bytes);
    let mut samples = Vec::new();
    net.run_until(limit, |net| {
        flow.pump(net);
        let c = net.conn(from);
        samples.push((net.now(), c.cwnd(), c.ssthresh(), c.in_recovery()));
        flow.done()
    });
    samples
}

#[test]
fn slow_start_is_exponential() {
    for algorithm in [Algorithm::NewReno, Algorithm::Cubic] {
        // Plenty of bandwidth and queue: no loss, so slow start runs freely.
        let link = bottleneck(10_000, 10, usize::MAX);
        let mut net = Network::pair(cfg(algorithm), cfg(algorithm), link.clone(), link, 1);
        let (client, server) = establish(&mut net, 42000);
        let start = net.now();
        let initial = net.conn(client).cwnd();
        let samples = trace(&mut net, client, server, 8 << 20, Duration::from_secs(5));
        // cwnd at the end of each of the first RTTs (20 ms).
        let at = |k: u64| {
            let t = start + Duration::from_millis(20 * k + 19);
            samples.iter().take_while(|s| s.0 <= t).last().map(|s| s.1).unwrap()
        };
        let w: Vec<usize> = (0..5).map(at).collect();
        eprintln!("{algorithm:?}: initial {initial}, per RTT {w:?}");
        for k in 1..5 {
            let ratio = w[k] as f64 / w[k - 1] as f64;
            assert!((1.7..=2.3).contains(&ratio), "{algorithm:?}: RTT {k} grew ×{ratio:.2} ({w:?})");
        }
    }
}

/// Runs a flow into a tail-drop bottleneck; checks the reduction at the
/// first loss and the regrowth after recovery.
fn reduction_at_loss(algorithm: Algorithm, beta: f64) {
    let link = bottleneck(50, 10, 64 * 1024);
    let back = bottleneck(10_000, 10, usize::MAX);
    let mut net = Network::pair(cfg(algorithm), cfg(algorithm), link, back, 2);
    let (client, server) = establish(&mut net, 42001);
    let samples = trace(&mut net, client, server, 32 << 20, Duration::from_secs(120));
    let first = samples.iter().position(|s| s.3).expect("the bottleneck never dropped a segment");
    let before = samples[first - 1].1 as f64;
    let after = samples[first].2 as f64; // ssthresh set at the congestion event
    let ratio = after / before;
    eprintln!("{algorithm:?}: cwnd {before} → ssthresh {after} (×{ratio:.3})");
    assert!((ratio - beta).abs() < 0.08, "{algorithm:?}: reduced ×{ratio:.3}, expected ≈{beta}");
    // Recovery ends, and the window climbs again from its trough.
    let end = samples[first..].iter().position(|s| !s.3).expect("recovery never ended") + first;
    let (trough_at, trough) = samples[end..].iter().enumerate().min_by_key(|(_, s)| s.1).map(|(i, s)| (i + end, s.1)).unwrap();
    let regrown = samples[trough_at..].iter().map(|s| s.1).max().unwrap();
    eprintln!("{algorithm:?}: after recovery, trough {trough}, regrown to {regrown}");
    // The regrowth stops where the bottleneck (BDP + queue ≈ 190 KB) drops
    // again, so how far it climbs depends on how deep the trough was.
    assert!(regrown as f64 > trough as f64 * 1.3, "{algorithm:?}: window did not grow back ({trough} → {regrown})");
    // And the flow keeps the bottleneck busy: 32 MiB at 50 Mbit/s takes ~5.4 s.
    let secs = (samples.last().unwrap().0 - samples[0].0).as_secs_f64();
    let mbps = (32u64 << 20) as f64 * 8.0 / secs / 1e6;
    assert!(mbps > 40.0, "{algorithm:?}: only {mbps:.1} Mbit/s of 50");
}

#[test]
fn newreno_halves_on_loss_and_recovers() {
    reduction_at_loss(Algorithm::NewReno, 0.5);
}

#[test]
fn cubic_reduces_to_0_7_on_loss_and_recovers() {
    reduction_at_loss(Algorithm::Cubic, 0.7);
}

fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let sq: f64 = x.iter().map(|v| v * v).sum();
    sum * sum / (x.len() as f64 * sq)
}

fn fairness(algorithm: Algorithm) {
    let link = bottleneck(20, 10, 100 * 1024);
    let back = bottleneck(10_000, 10, usize::MAX);
    let mut net = Network::pair(cfg(algorithm), cfg(algorithm), link, back, 9);
    let (c1, s1) = establish(&mut net, 43001);
    let (c2, s2) = establish(&mut net, 43002);
    let big = 1 << 40;
    let mut f1 = Flow::new(c1, s1, 11, big);
    let mut f2 = Flow::new(c2, s2, 12, big);
    // Warm up, then measure each flow's share over the second half.
    let warm = Duration::from_secs(30);
    net.run_until(warm, |net| {
        f1.pump(net);
        f2.pump(net);
        false
    });
    let (r1, r2) = (f1.received, f2.received);
    net.run_until(warm, |net| {
        f1.pump(net);
        f2.pump(net);
        false
    });
    let shares = [(f1.received - r1) as f64, (f2.received - r2) as f64];
    let index = jain(&shares);
    let total_mbps = (shares[0] + shares[1]) * 8.0 / 30.0 / 1e6;
    eprintln!("{algorithm:?}: shares {shares:?} bytes, Jain {index:.3}, {total_mbps:.1} Mbit/s of 20");
    assert!(index >= 0.9, "{algorithm:?}: Jain's index {index:.3}");
    assert!(total_mbps > 15.0, "{algorithm:?}: bottleneck underused ({total_mbps:.1} Mbit/s)");
}

#[test]
fn two_flows_share_fairly_newreno() {
    fairness(Algorithm::NewReno);
}

#[test]
fn two_flows_share_fairly_cubic() {
    fairness(Algorithm::Cubic);
}
