//! `sim::Network` runs real shards: what the simulator adds on top of them
//! (pre-learnt neighbours, the shard's accounting of the tests' calls into
//! a connection, connections kept readable after the shard retired them,
//! events as the engine raises them).

mod common;

use common::*;
use xdptcp::sim::link::LinkConfig;
use xdptcp::sim::net::Network;
use xdptcp::tcp::{CloseReason, Event, State};
use xdptcp::time::Duration;

fn net() -> Network {
    Network::pair(config(), config(), LinkConfig::ideal(Duration::from_millis(1)), LinkConfig::ideal(Duration::from_millis(1)), 3)
}

/// Every frame on the links is the shard's IPv4 (no ARP: the neighbours
/// are known), and the hosts' shards did the work.
#[test]
fn hosts_are_shards_without_arp() {
    let mut net = net();
    let (client, server) = establish(&mut net, 40000);
    bulk(&mut net, client, server, 200_000, Duration::from_secs(30), 1);
    for h in 0..2 {
        let s = net.shard(h).stats();
        assert_eq!((s.arp_requests_answered, s.arp_unresolved_drops), (0, 0), "host {h} {s:?}");
        // Every frame either way was a TCP segment.
        assert_eq!(s.frames_in, s.segments_in, "host {h} {s:?}");
        assert_eq!(s.frames_out, s.segments_out, "host {h} {s:?}");
        assert_eq!(s.frames_in, net.host(h).stats.frames_in);
    }
    assert!(net.shard(0).stats().segments_out > 100 && net.shard(1).stats().segments_in > 100);
    assert_eq!(net.shard(1).stats().passive_opens, 1);
    assert_eq!(net.shard(0).stats().active_opens, 1);
}

/// Data the test has not read yet is held by the shard's receive memory;
/// reading it through `conn_mut` gives the memory back (accounted by the
/// shard, as a read from a callback is).
#[test]
fn reads_through_conn_mut_are_accounted() {
    let mut net = net();
    let (client, server) = establish(&mut net, 40001);
    assert_eq!(net.conn_mut(client).send(&[7u8; 5000]).unwrap(), 5000);
    assert!(net.run_until(Duration::from_secs(5), |n| n.conn(server).recv_queue() == 5000));
    assert_eq!(net.shard(1).stats().recv_buffered, 5000);
    assert_eq!(net.shard(1).recount_buffered().0, 5000);
    {
        let mut c = net.conn_mut(server);
        assert_eq!(c.poll_event(), Some(Event::Connected));
        assert_eq!(c.poll_event(), Some(Event::Readable));
        assert_eq!(c.poll_event(), None);
        c.consume(3000);
    }
    assert_eq!(net.shard(1).stats().recv_buffered, 2000);
    assert_eq!(net.shard(1).recount_buffered().0, 2000);
}

/// Once both ends closed and TIME_WAIT ran out the shards forget the
/// connections (and reuse their ids), but the network still answers for
/// them: state, reason, counters, and the Closed event.
#[test]
fn retired_connections_stay_readable() {
    let mut net = net();
    let (client, server) = establish(&mut net, 40002);
    net.conn_mut(client).send(b"hello").unwrap();
    net.conn_mut(client).close();
    let ok = net.run_until(Duration::from_secs(5), |n| n.conn(server).recv_queue() == 5);
    assert!(ok);
    net.conn_mut(server).consume(5);
    net.conn_mut(server).close();
    let ok = net.run_until(Duration::from_secs(600), |n| n.shard(0).connections().count() == 0 && n.shard(1).connections().count() == 0);
    assert!(ok, "the shards did not retire both connections");
    for id in [client, server] {
        assert_eq!(net.conn(id).state(), State::Closed);
        assert_eq!(net.conn(id).close_reason(), CloseReason::Normal);
        assert!(net.conn(id).stats().segs_out >= 3);
    }
    let mut events = Vec::new();
    while let Some(ev) = net.conn_mut(server).poll_event() {
        events.push(ev);
    }
    assert_eq!(events, vec![Event::Connected, Event::PeerClosed, Event::Closed(CloseReason::Normal)]);
    // A new connection takes a retired one's shard id, not its place here.
    let (again, _) = establish(&mut net, 40003);
    assert_ne!(again, client);
    assert_eq!(net.conn(again).state(), State::Established);
    assert_eq!(net.conn(client).state(), State::Closed);
    assert_eq!(net.conns(0).count(), 2);
}
