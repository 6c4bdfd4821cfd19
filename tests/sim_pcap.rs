//! Any simulated run can be written as a pcap file (Ethernet link type) that
//! standard tools read: here tcpdump decodes the handshake, data and close.

mod common;

use common::*;
use xdptcp::sim::link::LinkConfig;
use xdptcp::sim::net::Network;
use xdptcp::time::Duration;

#[test]
fn simulated_run_opens_in_tcpdump() {
    let path = std::env::temp_dir().join(format!("xdptcp-sim-{}.pcap", std::process::id()));
    let link = LinkConfig::ideal(Duration::from_millis(1));
    let mut net = Network::pair(config(), config(), link.clone(), link, 5);
    net.capture(&path).unwrap();
    let (client, server) = establish(&mut net, 45000);
    bulk(&mut net, client, server, 100_000, Duration::from_secs(10), 1);
    drop(net); // flushes the capture

    // Our own reader first: every frame is there, in time order.
    let bytes = std::fs::read(&path).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
    assert_eq!(reader.header().datalink, pcap_file::DataLink::ETHERNET);
    let mut frames = 0;
    let mut last = Duration::ZERO;
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap();
        assert!(p.timestamp >= last);
        last = p.timestamp;
        frames += 1;
    }
    assert!(frames > 70, "only {frames} frames captured");

    // Then tcpdump, a reader we did not write (scripts/test.sh installs it).
    let out = std::process::Command::new("tcpdump")
        .args(["-nn", "-vv", "-r"])
        .arg(&path)
        .output()
        .expect("tcpdump not found: install it (scripts/test.sh does)");
    std::fs::remove_file(&path).ok();
    assert!(out.status.success(), "tcpdump failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // With -vv each frame is two lines (IP, then TCP); keep the TCP ones.
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" > ")).collect();
    assert_eq!(lines.len(), frames, "tcpdump decoded every frame");
    assert_eq!(text.matches("cksum").count(), frames, "tcpdump checked every TCP checksum");
    assert!(!text.contains("incorrect"), "tcpdump found a bad checksum");
    assert!(lines[0].contains("198.18.0.1.45000 > 198.18.0.2.5001: Flags [S]"), "{}", lines[0]);
    assert!(lines[1].contains("198.18.0.2.5001 > 198.18.0.1.45000: Flags [S.]"), "{}", lines[1]);
    assert!(lines[0].contains("mss 1460") && lines[0].contains("sackOK") && lines[0].contains("wscale"), "{}", lines[0]);
    assert!(text.contains("Flags [F.]") || text.contains("Flags [FP.]"), "the close is in the capture");
}
