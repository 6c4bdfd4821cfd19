//! RSS-aware active opens, sans-IO: with the NIC's Toeplitz key and
//! indirection table, a shard takes only source ports whose replies the NIC
//! steers to its own queue (checked here with the bitwise Toeplitz hash,
//! independent of the selector's tables); without them, or when no such
//! port is free, it takes any free port and counts the open as relying on
//! the cross-core hand-off. End to end: two client shards behind a
//! simulated two-queue NIC exchange verified echoes with a server, and no
//! reply needs the hand-off.

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use xdptcp::app::{App, Conn, ConnId};
use xdptcp::rss::{ipv4_tcp_input, toeplitz, RssSelector};
use xdptcp::sim::link::{Link, LinkConfig};
use xdptcp::stack::{ConnectError, Shard, StackConfig, Verdict};
use xdptcp::tcp::CloseReason;
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::*;

use common::client::PatternClient;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SERVER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const PORT: u16 = 7;

/// Microsoft's RSS verification key, the default of many drivers.
const KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb,
    0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// A 128-entry table over two queues, uneven (queue 1 gets 3/8), as an
/// administrator's `ethtool -X weight` would leave it.
fn table() -> Vec<u32> {
    (0..128).map(|i| u32::from(i % 8 < 3)).collect()
}

/// The queue the NIC puts a packet from `src` to `dst` on, bit by bit.
fn nic_queue(table: &[u32], src: SocketAddrV4, dst: SocketAddrV4) -> u32 {
    table[toeplitz(&KEY, &ipv4_tcp_input(src, dst)) as usize % table.len()]
}

#[derive(Default)]
struct Idle;
impl App for Idle {
    type State = ();
}

fn client(rss: Option<RssSelector>, ports: (u16, u16)) -> Shard<Idle> {
    let mut cfg = StackConfig::new(CLIENT_MAC, CLIENT_IP, 24);
    cfg.rss = rss;
    cfg.ephemeral_ports = ports;
    Shard::new(cfg, [2; 16])
}

fn remotes() -> Vec<SocketAddrV4> {
    vec![SocketAddrV4::new(SERVER_IP, 7), SocketAddrV4::new(SERVER_IP, 443), SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 8080)]
}

#[test]
fn every_chosen_port_hashes_back_to_the_opening_queue() {
    let steering = RssSelector::new(&KEY, table(), 0, true).unwrap();
    for queue in 0..2 {
        let mut shard = client(Some(steering.for_queue(queue)), (32768, 60999));
        let mut seen = HashSet::new();
        let opens = 3000;
        for i in 0..opens {
            let remote = remotes()[i % 3];
            let id = shard.connect(Instant::from_secs(1), remote).expect("a steered port");
            let local = shard.connection(id).unwrap().local();
            assert_eq!(nic_queue(&table(), remote, local), queue, "reply {remote} -> {local} must land on queue {queue}");
            assert!(seen.insert((local, remote)), "{local} -> {remote} used twice");
        }
        assert_eq!(shard.stats().active_opens_rss_steered, opens as u64);
        assert_eq!(shard.stats().active_open_handoffs, 0);
        assert_eq!(shard.stats().active_opens, opens as u64);
    }
}

#[test]
fn without_steering_every_open_relies_on_the_handoff() {
    let mut shard = client(None, (32768, 60999));
    for i in 0..500 {
        shard.connect(Instant::from_secs(1), remotes()[i % 3]).unwrap();
    }
    assert_eq!(shard.stats().active_open_handoffs, 500);
    assert_eq!(shard.stats().active_opens_rss_steered, 0);
    let tuples: HashSet<_> = shard.connections().map(|(_, c)| (c.local(), c.remote())).collect();
    assert_eq!(tuples.len(), 500);
    assert!(tuples.iter().all(|(l, _)| (32768..=60999).contains(&l.port())));
}

// ---- RFC 6056 port choice ---------------------------------------------

/// The source ports of the first `n` opens to `remote`.
fn ports_to(shard: &mut Shard<Idle>, remote: SocketAddrV4, n: usize) -> Vec<u16> {
    (0..n).map(|_| {
        let id = shard.connect(Instant::from_secs(1), remote).expect("a free port");
        shard.connection(id).unwrap().local().port()
    }).collect()
}

/// RFC 6056 §3.3.4 (algorithm 4): each destination gets its own keyed
/// offset into the range, so an off-path attacker who sees the ports used
/// towards one destination learns nothing of those towards another, and
/// ports are not handed out in order from the range's start.
#[test]
fn ephemeral_ports_are_keyed_per_destination() {
    let dests: Vec<SocketAddrV4> = (0..16u8).map(|k| SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, k), 443)).collect();
    let mut shard = client(None, (32768, 60999));
    let firsts: Vec<u16> = dests.iter().map(|&d| ports_to(&mut shard, d, 1)[0]).collect();
    let distinct: HashSet<_> = firsts.iter().collect();
    assert!(distinct.len() >= 15, "first ports per destination: {firsts:?}");
    assert!(!firsts.windows(2).all(|w| w[1] == w[0] + 1), "ports in order: {firsts:?}");
    assert!(firsts.iter().filter(|&&p| p < 32768 + 16).count() <= 1, "ports from the range's start: {firsts:?}");
    // The same destination's port also depends on its port, and on the key.
    let other_port = ports_to(&mut client(None, (32768, 60999)), SocketAddrV4::new(*dests[0].ip(), 80), 1)[0];
    assert_ne!(other_port, firsts[0]);
    let mut rekeyed: Shard<Idle> = {
        let mut cfg = StackConfig::new(CLIENT_MAC, CLIENT_IP, 24);
        cfg.ephemeral_ports = (32768, 60999);
        Shard::new(cfg, [9; 16])
    };
    let rekeyed: Vec<u16> = dests.iter().map(|&d| ports_to(&mut rekeyed, d, 1)[0]).collect();
    assert!(rekeyed.iter().zip(&firsts).filter(|(a, b)| a == b).count() <= 1, "{rekeyed:?} vs {firsts:?}");
}

/// Consecutive opens to one destination never repeat a port while it is in
/// use, interleaved with opens elsewhere, until the range is used up.
#[test]
fn consecutive_opens_get_distinct_ports_until_the_range_is_used_up() {
    let range = (50000u16, 50999u16);
    let a = SocketAddrV4::new(SERVER_IP, 7);
    let b = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 8080);
    let mut shard = client(None, range);
    let mut to_a = HashSet::new();
    for _ in 0..1000 {
        assert!(to_a.insert(ports_to(&mut shard, a, 1)[0]), "a port reused towards {a}");
        ports_to(&mut shard, b, 1);
    }
    assert_eq!(to_a.len(), 1000, "every port of the range, once");
    assert_eq!(shard.connect(Instant::from_secs(1), a), Err(ConnectError::NoPort));
    // The other destination has used up its own ports too: a 4-tuple, not a
    // port, must be unique.
    assert_eq!(shard.connect(Instant::from_secs(1), b), Err(ConnectError::NoPort));
}

/// Within the RSS-aware choice: keyed per destination too, and every port
/// still steers the reply to this queue.
#[test]
fn keyed_ports_still_land_on_this_queue() {
    let steering = RssSelector::new(&KEY, table(), 1, true).unwrap();
    let dests: Vec<SocketAddrV4> = (0..16u8).map(|k| SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, k), 443)).collect();
    let mut shard = client(Some(steering), (32768, 60999));
    let mut firsts = Vec::new();
    for &d in &dests {
        let ports = ports_to(&mut shard, d, 50);
        firsts.push(ports[0]);
        assert_eq!(ports.iter().collect::<HashSet<_>>().len(), 50);
        for p in ports {
            assert_eq!(nic_queue(&table(), d, SocketAddrV4::new(CLIENT_IP, p)), 1, "{d} <- {p}");
        }
    }
    assert!(firsts.iter().collect::<HashSet<_>>().len() >= 15, "{firsts:?}");
    assert!(!firsts.windows(2).all(|w| w[1] > w[0]), "one sequence for every destination: {firsts:?}");
    assert_eq!(shard.stats().active_opens_rss_steered, 16 * 50);
    assert_eq!(shard.stats().active_open_handoffs, 0);
}

#[test]
fn falls_back_to_any_free_port_when_no_steered_one_is_left() {
    let remote = SocketAddrV4::new(SERVER_IP, 7);
    let range = (40000u16, 40063u16);
    let steered: HashSet<u16> = (range.0..=range.1).filter(|&p| nic_queue(&table(), remote, SocketAddrV4::new(CLIENT_IP, p)) == 1).collect();
    assert!(!steered.is_empty() && steered.len() < 64, "the range mixes queues");
    let mut shard = client(Some(RssSelector::new(&KEY, table(), 1, true).unwrap()), range);
    let mut used = Vec::new();
    for _ in 0..64 {
        let id = shard.connect(Instant::from_secs(1), remote).expect("a free port");
        used.push(shard.connection(id).unwrap().local().port());
    }
    // The steered ports go first, then the rest; each port once.
    let (first, rest) = used.split_at(steered.len());
    assert_eq!(first.iter().copied().collect::<HashSet<_>>(), steered);
    assert!(rest.iter().all(|p| !steered.contains(p)));
    assert_eq!(used.iter().collect::<HashSet<_>>().len(), 64);
    assert_eq!(shard.stats().active_opens_rss_steered, steered.len() as u64);
    assert_eq!(shard.stats().active_open_handoffs, 64 - steered.len() as u64);
    assert_eq!(shard.connect(Instant::from_secs(1), remote), Err(ConnectError::NoPort));
}

#[test]
fn a_single_queue_stack_counts_no_open_as_a_handoff() {
    let mut cfg = StackConfig::new(CLIENT_MAC, CLIENT_IP, 24);
    cfg.single_queue = true;
    let mut shard: Shard<Idle> = Shard::new(cfg, [2; 16]);
    for i in 0..20 {
        shard.connect(Instant::from_secs(1), remotes()[i % 3]).unwrap();
    }
    shard.connect_from(Instant::from_secs(1), 50000, remotes()[0]).unwrap();
    let s = shard.stats();
    assert_eq!((s.active_opens, s.active_opens_rss_steered, s.active_open_handoffs), (21, 0, 0));
}

#[test]
fn a_queue_outside_the_table_or_an_address_only_hash_cannot_steer_by_port() {
    let remote = SocketAddrV4::new(SERVER_IP, 7);
    // Queue 2 is not in the table: nothing lands there.
    let mut shard = client(Some(RssSelector::new(&KEY, table(), 2, true).unwrap()), (32768, 60999));
    for _ in 0..10 {
        shard.connect(Instant::from_secs(1), remote).unwrap();
    }
    assert_eq!(shard.stats().active_open_handoffs, 10);
    // Addresses only: every port of a destination lands on the same queue.
    let q = table()[toeplitz(&KEY, &ipv4_tcp_input(remote, SocketAddrV4::new(CLIENT_IP, 0))[..8]) as usize % 128];
    let here = RssSelector::new(&KEY, table(), q, false).unwrap();
    let mut shard = client(Some(here.clone()), (32768, 60999));
    let mut other = client(Some(here.for_queue(1 - q)), (32768, 60999));
    for _ in 0..10 {
        shard.connect(Instant::from_secs(1), remote).unwrap();
        other.connect(Instant::from_secs(1), remote).unwrap();
    }
    assert_eq!((shard.stats().active_opens_rss_steered, shard.stats().active_open_handoffs), (10, 0));
    assert_eq!((other.stats().active_opens_rss_steered, other.stats().active_open_handoffs), (0, 10));
}

#[test]
fn connect_from_counts_whether_the_port_was_steered() {
    let remote = SocketAddrV4::new(SERVER_IP, 7);
    let mut shard = client(Some(RssSelector::new(&KEY, table(), 0, true).unwrap()), (32768, 60999));
    let (mut steered, mut not) = (0, 0);
    for port in 50000..50100u16 {
        shard.connect_from(Instant::from_secs(1), port, remote).unwrap();
        if nic_queue(&table(), remote, SocketAddrV4::new(CLIENT_IP, port)) == 0 {
            steered += 1;
        } else {
            not += 1;
        }
    }
    assert!(steered > 0 && not > 0);
    assert_eq!((shard.stats().active_opens_rss_steered, shard.stats().active_open_handoffs), (steered, not));
}

// ---- end to end: two client queues behind a simulated NIC -------------

#[derive(Default)]
struct Echo;
impl App for Echo {
    type State = ();
    fn on_data(&mut self, c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        c.send(data).unwrap_or(0)
    }
    fn on_peer_closed(&mut self, c: &mut Conn<'_, ()>) {
        c.close();
    }
    fn on_closed(&mut self, _: ConnId, _: (), reason: CloseReason) {
        assert_eq!(reason, CloseReason::Normal);
    }
}

/// The queue the NIC steers a frame to: TCP/IPv4 by the RSS hash, anything
/// else (ARP) to every queue, as broadcasts reach every shard's cache here.
fn steer(frame: &[u8], table: &[u32]) -> Option<u32> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some(nic_queue(table, SocketAddrV4::new(ip.src_addr(), tcp.src_port()), SocketAddrV4::new(ip.dst_addr(), tcp.dst_port())))
}

/// Runs `conns` echoes of `bytes` from each of two client shards (queues 0
/// and 1, one address) to one server; returns the frames handed between
/// the client shards and the shards' counters.
fn two_queue_echo(steered: bool, conns: usize, bytes: usize) -> (u64, Vec<xdptcp::stack::ShardStats>) {
    let table = table();
    let mut server: Shard<Echo> = Shard::new(StackConfig::new(SERVER_MAC, SERVER_IP, 24), [1; 16]);
    server.listen(PORT);
    let mut clients: Vec<Shard<PatternClient>> = (0..2)
        .map(|q| {
            let mut cfg = StackConfig::new(CLIENT_MAC, CLIENT_IP, 24);
            cfg.rss = steered.then(|| RssSelector::new(&KEY, table.clone(), q, true).unwrap());
            // Disjoint port ranges, as one stack's shards must not collide.
            cfg.ephemeral_ports = if q == 0 { (32768, 46883) } else { (46884, 60999) };
            cfg.cores = xdptcp::stack::Cores { index: q as u16, count: 2 };
            Shard::new(cfg, [2; 16])
        })
        .collect();
    let mut apps: Vec<PatternClient> = (0..2).map(|_| PatternClient::new(bytes)).collect();
    let mut echo = Echo;
    let mut now = Instant::from_secs(1);
    for c in clients.iter_mut() {
        for _ in 0..conns {
            c.connect(now, SocketAddrV4::new(SERVER_IP, PORT)).unwrap();
        }
    }
    let mut up = Link::new(LinkConfig::ideal(Duration::from_micros(20)), 1);
    let mut down = Link::new(LinkConfig::ideal(Duration::from_micros(20)), 2);
    let mut buf = vec![0u8; 2048];
    let mut handed = 0u64;
    let end = now + Duration::from_secs(30);
    while apps.iter().map(|a| a.verified).sum::<usize>() < 2 * conns && now < end {
        for c in clients.iter_mut() {
            while let Some(n) = c.poll_transmit(now, &mut buf) {
                up.send(now, buf[..n].to_vec());
            }
        }
        while let Some(n) = server.poll_transmit(now, &mut buf) {
            down.send(now, buf[..n].to_vec());
        }
        let next = [up.next_delivery(), down.next_delivery(), server.poll_timeout(), clients[0].poll_timeout(), clients[1].poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .expect("work left");
        now = now.max(next);
        while let Some(f) = up.recv(now) {
            server.handle_frame(now, &f, &mut echo);
        }
        while let Some(f) = down.recv(now) {
            match steer(&f, &table) {
                None => {
                    for (c, a) in clients.iter_mut().zip(apps.iter_mut()) {
                        c.handle_frame(now, &f, a);
                    }
                }
                Some(q) => {
                    let (q, other) = (q as usize, 1 - q as usize);
                    if let Verdict::Forward { core } = clients[q].handle_frame_checked(now, &f, &mut apps[q], false) {
                        assert_eq!(usize::from(core), other, "the owner by tuple hash");
                        // The runtime's hand-off: the other core looks, last.
                        handed += 1;
                        clients[other].count_handoff_in();
                        clients[other].handle_frame_checked(now, &f, &mut apps[other], true);
                    }
                }
            }
        }
        server.handle_timeout(now, &mut echo);
        for (c, a) in clients.iter_mut().zip(apps.iter_mut()) {
            c.handle_timeout(now, a);
        }
    }
    for a in &apps {
        assert_eq!(a.verified, conns, "every echo verified");
        assert_eq!(a.corrupt, 0);
        assert!(a.closed.iter().all(|&(_, r)| r == CloseReason::Normal), "{:?}", a.closed);
    }
    (handed, clients.iter().map(|c| *c.stats()).collect())
}

#[test]
fn steered_opens_need_no_handoff_end_to_end() {
    let (handed, stats) = two_queue_echo(true, 40, 64 << 10);
    assert_eq!(handed, 0, "every reply landed on its opening queue");
    for s in &stats {
        assert_eq!((s.active_opens_rss_steered, s.active_open_handoffs), (40, 0));
        assert_eq!((s.handoffs_out, s.handoffs_in), (0, 0));
    }
}

#[test]
fn unsteered_opens_are_rescued_by_the_handoff() {
    let (handed, stats) = two_queue_echo(false, 40, 64 << 10);
    assert!(handed > 0, "some replies landed on the other queue");
    for s in &stats {
        assert_eq!((s.active_opens_rss_steered, s.active_open_handoffs), (0, 40));
    }
    assert_eq!(stats.iter().map(|s| s.handoffs_out).sum::<u64>(), handed);
}

#[test]
fn a_freed_steered_port_is_found_again_after_exhaustion() {
    let remote = SocketAddrV4::new(SERVER_IP, 7);
    let range = (40000u16, 40063u16);
    let steered: Vec<u16> = (range.0..=range.1).filter(|&p| nic_queue(&table(), remote, SocketAddrV4::new(CLIENT_IP, p)) == 0).collect();
    let mut shard = client(Some(RssSelector::new(&KEY, table(), 0, true).unwrap()), range);
    let now = Instant::from_secs(1);
    let mut ids = Vec::new();
    for _ in 0..steered.len() + 3 {
        ids.push(shard.connect(now, remote).unwrap());
    }
    // Steered ports used up: the last three opens fell back.
    assert_eq!((shard.stats().active_opens_rss_steered, shard.stats().active_open_handoffs), (steered.len() as u64, 3));
    // One steered connection is reset and leaves the table...
    let freed = shard.connection(ids[0]).unwrap().local().port();
    assert!(steered.contains(&freed));
    shard.with_conn(ids[0], |c| c.abort());
    let mut buf = vec![0u8; 2048];
    while shard.poll_transmit(now, &mut buf).is_some() {}
    shard.handle_timeout(now, &mut Idle);
    assert!(shard.connection(ids[0]).is_none(), "the reset connection is gone");
    // ...and the next open finds its port again, steered.
    let id = shard.connect(now, remote).unwrap();
    assert_eq!(shard.connection(id).unwrap().local().port(), freed);
    assert_eq!(shard.stats().active_opens_rss_steered, steered.len() as u64 + 1);
}
