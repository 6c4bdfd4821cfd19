//! 16 MiB in each direction across the whole fault matrix:
//! loss {0, 1, 5, 10, 20 %} × reordering {0, 10 %} × duplication {0, 5 %},
//! every byte verified and each cell bounded in virtual time. Faults apply to
//! both directions of the link. One test per loss rate, so cells run in parallel.

mod common;

use common::*;
use xdptcp::sim::net::Network;
use xdptcp::time::Duration;

const MIB: u64 = 1 << 20;

fn cell(loss: f64, reorder: f64, dup: f64, seed: u64) {
    for server_sends in [false, true] {
        let link = lossy(1, loss, reorder, dup);
        let mut net = Network::pair(config(), config(), link.clone(), link, seed);
        let (client, server) = establish(&mut net, 40000);
        let (from, to) = if server_sends { (server, client) } else { (client, server) };
        // Bounded virtual time: generous for 20 % loss each way, where RTOs dominate.
        let limit = Duration::from_secs(if loss >= 0.2 { 3000 } else { 600 });
        let out = bulk(&mut net, from, to, 16 * MIB, limit, seed ^ server_sends as u64);
        eprintln!(
            "loss {:>4.0}% reorder {:>3.0}% dup {:>2.0}% {}: {:>8.1} s virtual, {:>8.2} Mbit/s, {} retransmits",
            loss * 100.0,
            reorder * 100.0,
            dup * 100.0,
            if server_sends { "server→client" } else { "client→server" },
            out.secs,
            out.goodput_mbps,
            out.retransmits
        );
    }
}

fn row(loss: f64) {
    let mut seed = (loss * 1000.0) as u64 * 17 + 1;
    for reorder in [0.0, 0.10] {
        for dup in [0.0, 0.05] {
            cell(loss, reorder, dup, seed);
            seed += 1;
        }
    }
}

#[test]
fn matrix_loss_0() {
    row(0.0);
}

#[test]
fn matrix_loss_1() {
    row(0.01);
}

#[test]
fn matrix_loss_5() {
    row(0.05);
}

#[test]
fn matrix_loss_10() {
    row(0.10);
}

#[test]
fn matrix_loss_20() {
    row(0.20);
}
