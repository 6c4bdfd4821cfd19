//! Throughput versus loss, kept as a snapshot: a regression test for the
//! whole engine (recovery, congestion control, timers). The simulation is
//! deterministic, so any change in behaviour changes the table.
//! Regenerate deliberately with `UPDATE_SNAPSHOTS=1 cargo test --test sim_snapshot`.

mod common;

use common::*;
use xdptcp::sim::link::LinkConfig;
use xdptcp::sim::net::Network;
use xdptcp::tcp::Algorithm;
use xdptcp::time::Duration;

fn table(algorithm: Algorithm) -> String {
    let mut out = format!("# {algorithm:?}: 8 MiB over 100 Mbit/s, 10 ms RTT, 256 KiB queue; loss both ways\n");
    out.push_str("# loss%   goodput_Mbit/s   virtual_s   retransmits   random_drops   queue_drops\n");
    for loss in [0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.10] {
        let mut link = LinkConfig::ideal(Duration::from_millis(5));
        link.bandwidth_bps = Some(100_000_000);
        link.queue_bytes = 256 * 1024;
        link.loss = loss;
        let mut cfg = config();
        cfg.congestion = algorithm;
        let mut net = Network::pair(cfg.clone(), cfg, link.clone(), link, 42);
        let (client, server) = establish(&mut net, 41000);
        let o = bulk(&mut net, client, server, 8 << 20, Duration::from_secs(600), 7);
        let (ab, ba) = (net.link(0, 1).stats(), net.link(1, 0).stats());
        out.push_str(&format!(
            "{:>6.1} {:>16.2} {:>11.3} {:>13} {:>14} {:>13}\n",
            loss * 100.0,
            o.goodput_mbps,
            o.secs,
            o.retransmits,
            ab.lost + ba.lost,
            ab.queue_dropped + ba.queue_dropped
        ));
    }
    out
}

#[test]
fn throughput_vs_loss_snapshot() {
    let got = format!("{}\n{}", table(Algorithm::Cubic), table(Algorithm::NewReno));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/throughput_vs_loss.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path).expect("snapshot missing: run with UPDATE_SNAPSHOTS=1 once");
    assert_eq!(got, want, "throughput-vs-loss table changed; if intended, regenerate with UPDATE_SNAPSHOTS=1");
}
