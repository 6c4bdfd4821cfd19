//! SYN-SENT (RFC 9293 §3.10.7.3): an unacceptable ACK is answered with
//! `<SEQ=SEG.ACK><CTL=RST>` and dropped. Scripted on the engine, then end to
//! end: a restarted client that reuses a 4-tuple the server still holds
//! clears the server's half-open connection that way (the server's RFC 5961
//! challenge ACK draws our RST) and connects on its first SYN retry.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use common::script::*;
use common::shards::{self, Parts, ShardPair};
use xdptcp::app::{App, Conn, ConnId};
use xdptcp::sim::link::{Link, LinkConfig};
use xdptcp::stack::{Shard, StackConfig};
use xdptcp::tcp::{CloseReason, Event, State};
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::{EthernetAddress, TcpFlags};

const ISS1: u32 = OUR_ISS + 1;

#[test]
fn unacceptable_ack_in_syn_sent_gets_rst_at_seg_ack() {
    let mut s = Script::active(Script::config());
    let syn = s.expect();
    assert_eq!(syn.flags, TcpFlags::SYN);
    // An ACK of something we never sent (beyond SND.NXT), as a server's
    // challenge ACK for a stale connection on this 4-tuple is.
    s.inject(Seg::ack(777_000, 123_456));
    let rst = s.expect();
    assert_eq!(rst.flags, TcpFlags::RST, "RFC 9293 §3.10.7.3: <SEQ=SEG.ACK><CTL=RST>");
    assert_eq!(rst.seq, 123_456);
    assert!(rst.payload.is_empty());
    s.expect_nothing();
    // The segment is dropped: the attempt goes on.
    assert_eq!(s.conn.state(), State::SynSent);
    assert!(s.events().is_empty());

    // SEG.ACK =< ISS is unacceptable too (ISS itself, and older).
    for ack in [OUR_ISS, OUR_ISS - 1000] {
        s.inject(Seg::ack(777_000, ack));
        let rst = s.expect();
        assert_eq!((rst.flags, rst.seq), (TcpFlags::RST, ack));
        assert_eq!(s.conn.state(), State::SynSent);
    }
    // A SYN-ACK whose ACK is unacceptable gets the same, and is not taken.
    s.inject(Seg::syn(PEER_ISN).acking(ISS1 + 5));
    let rst = s.expect();
    assert_eq!((rst.flags, rst.seq), (TcpFlags::RST, ISS1 + 5));
    assert_eq!(s.conn.state(), State::SynSent);
    // A RST with an unacceptable ACK is dropped silently (never a RST for a RST).
    s.inject(Seg::new(TcpFlags::RST, 0).acking(ISS1 + 5));
    s.expect_nothing();
    assert_eq!(s.conn.state(), State::SynSent);

    // The SYN retry still goes out at the RTO, and a proper SYN-ACK completes.
    let retry = s.advance(Duration::from_millis(1_100));
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!((retry[0].1.flags, retry[0].1.seq), (TcpFlags::SYN, OUR_ISS));
    s.inject(Seg::syn(PEER_ISN).acking(ISS1).mss(1460));
    assert_eq!(s.conn.state(), State::Established);
    let ack = s.expect();
    assert_eq!((ack.flags, ack.seq, ack.ack), (TcpFlags::ACK, ISS1, PEER_ISN + 1));
    assert_eq!(s.events(), vec![Event::Connected]);
}

// ---- end to end: a client restarted while the server holds its 4-tuple ----

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SERVER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const PORT: u16 = 80;
const CLIENT_PORT: u16 = 40_000;

#[derive(Default)]
struct Server {
    accepted: usize,
    closed: Vec<CloseReason>,
}

impl App for Server {
    type State = ();
    fn on_accept(&mut self, _c: &mut Conn<'_, ()>) {
        self.accepted += 1;
    }
    fn on_closed(&mut self, _id: ConnId, _s: (), reason: CloseReason) {
        self.closed.push(reason);
    }
}

#[derive(Default)]
struct Client {
    connected: Vec<(ConnId, Instant)>,
    closed: Vec<(ConnId, CloseReason)>,
    now: Instant,
}

impl App for Client {
    type State = ();
    fn on_connected(&mut self, c: &mut Conn<'_, ()>) {
        self.connected.push((c.id(), self.now));
    }
    fn on_closed(&mut self, id: ConnId, _s: (), reason: CloseReason) {
        self.closed.push((id, reason));
    }
}

struct World {
    now: Instant,
    server: Shard<Server>,
    client: Shard<Client>,
    srv: Server,
    cli: Client,
    to_server: Link,
    to_client: Link,
    buf: Vec<u8>,
}

impl World {
    fn new() -> World {
        let mut server = Shard::new(StackConfig::new(SERVER_MAC, SERVER_IP, 24), [1; 16]);
        server.listen(PORT);
        let link = LinkConfig::ideal(Duration::from_micros(100));
        World {
            now: Instant::from_secs(1),
            server,
            client: Self::client_shard([2; 16]),
            srv: Server::default(),
            cli: Client::default(),
            to_server: Link::new(link.clone(), 1),
            to_client: Link::new(link, 2),
            buf: vec![0u8; 2048],
        }
    }

    fn client_shard(secret: [u8; 16]) -> Shard<Client> {
        Shard::new(StackConfig::new(CLIENT_MAC, CLIENT_IP, 24), secret)
    }

    fn run(&mut self, limit: Duration, done: impl FnMut(&World) -> bool) -> bool {
        shards::run(self, limit, done)
    }
}

impl ShardPair for World {
    type S = Server;
    type C = Client;
    fn parts(&mut self) -> Parts<'_, Server, Client> {
        Parts { now: &mut self.now, server: &mut self.server, srv: &mut self.srv, client: &mut self.client, cli: &mut self.cli, to_server: &mut self.to_server, to_client: &mut self.to_client, buf: &mut self.buf }
    }
    fn view(&self) -> (&Shard<Server>, &Shard<Client>, &Link, &Link) {
        (&self.server, &self.client, &self.to_server, &self.to_client)
    }
    fn tick(&mut self, now: Instant) {
        self.cli.now = now;
    }
}

#[test]
fn restarted_client_clears_the_stale_connection_and_connects_on_its_first_syn_retry() {
    let mut w = World::new();
    let remote = SocketAddrV4::new(SERVER_IP, PORT);
    let first = w.client.connect_from(w.now, CLIENT_PORT, remote).unwrap();
    assert!(w.run(Duration::from_secs(2), |w| w.cli.connected.len() == 1 && w.srv.accepted == 1));
    assert_eq!(w.cli.connected[0].0, first);

    // The client host restarts: a new stack (new secret, so new ISNs and
    // timestamp offsets) with no memory of the connection, which the
    // server still holds ESTABLISHED. It opens the same 4-tuple.
    w.run(Duration::from_millis(500), |_| false);
    w.client = World::client_shard([3; 16]);
    w.cli = Client { now: w.now, ..Client::default() };
    let started = w.now;
    let id = w.client.connect_from(w.now, CLIENT_PORT, remote).unwrap();

    // The SYN draws the server's challenge ACK, which our SYN-SENT answers
    // with <SEQ=SEG.ACK><CTL=RST>: that clears the stale connection, and
    // the first SYN retry (one initial RTO later) connects.
    let ok = w.run(Duration::from_secs(30), |w| !w.cli.connected.is_empty() || !w.cli.closed.is_empty());
    assert!(ok && w.cli.closed.is_empty(), "the reconnect failed: {:?}, server {:?}", w.cli.closed, w.server.stats());
    let (cid, at) = w.cli.connected[0];
    assert_eq!(cid, id);
    assert!(at - started < Duration::from_millis(1_500), "connected {:?} after the first SYN, not on its first retry", at - started);
    let c = w.client.connection(id).expect("open");
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.stats().timeouts, 1, "exactly one SYN retry");
    assert_eq!(w.srv.closed, vec![CloseReason::Reset], "the stale connection was reset by our RST");
    assert!(w.run(Duration::from_millis(10), |w| w.srv.accepted == 2), "the server never accepted the new connection");
    assert_eq!(w.server.connections().count(), 1);
}

#[test]
fn a_connect_never_answered_ends_in_on_closed_timed_out() {
    let mut w = World::new();
    // Nobody has this address: ARP goes unanswered, every SYN is lost.
    let id = w.client.connect(w.now, SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 99), PORT)).unwrap();
    assert!(w.run(Duration::from_secs(300), |w| !w.cli.closed.is_empty()), "no on_closed for a failed connect");
    assert_eq!(w.cli.closed, vec![(id, CloseReason::TimedOut)]);
    assert!(w.cli.connected.is_empty());
    assert!(w.client.connection(id).is_none());
}
