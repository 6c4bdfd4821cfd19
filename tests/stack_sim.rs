//! The per-core shard, end to end over simulated links: ARP resolution,
//! ICMP echo, listeners, echo of verified data, refused ports, many
//! connections, TIME_WAIT policy, and counting of malformed frames.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use xdptcp::app::{App, Conn};
use xdptcp::sim::link::{Link, LinkConfig};
use xdptcp::stack::{Shard, StackConfig};
use xdptcp::tcp::CloseReason;
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::*;

use common::client::PatternClient;
use common::shards::{self, Parts, ShardPair};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SERVER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const PORT: u16 = 7;

/// Sends back everything; closes after the peer's FIN.
#[derive(Default)]
struct Echo {
    accepted: usize,
}

impl App for Echo {
    type State = ();
    fn on_accept(&mut self, _c: &mut Conn<'_, ()>) {
        self.accepted += 1;
    }
    fn on_data(&mut self, c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        c.send(data).unwrap_or(0)
    }
    fn on_writable(&mut self, _c: &mut Conn<'_, ()>) {}
    fn on_peer_closed(&mut self, c: &mut Conn<'_, ()>) {
        c.close();
    }
}

struct World {
    now: Instant,
    server: Shard<Echo>,
    client: Shard<PatternClient>,
    echo: Echo,
    app: PatternClient,
    to_server: Link,
    to_client: Link,
    buf: Vec<u8>,
}

impl World {
    fn new(link: LinkConfig) -> World {
        let mut server = Shard::new(StackConfig::new(SERVER_MAC, SERVER_IP, 24), [1; 16]);
        server.listen(PORT);
        server.announce();
        let client = Shard::new(StackConfig::new(CLIENT_MAC, CLIENT_IP, 24), [2; 16]);
        World {
            now: Instant::from_secs(1),
            server,
            client,
            echo: Echo::default(),
            app: PatternClient::default(),
            to_server: Link::new(link.clone(), 11),
            to_client: Link::new(link, 12),
            buf: vec![0u8; 2048],
        }
    }

    /// Runs until `done` or `limit` of virtual time.
    fn run(&mut self, limit: Duration, done: impl FnMut(&World) -> bool) -> bool {
        shards::run(self, limit, done)
    }
}

impl ShardPair for World {
    type S = Echo;
    type C = PatternClient;
    const CLOCK_TO_DEADLINE: bool = false;
    fn parts(&mut self) -> Parts<'_, Echo, PatternClient> {
        Parts { now: &mut self.now, server: &mut self.server, srv: &mut self.echo, client: &mut self.client, cli: &mut self.app, to_server: &mut self.to_server, to_client: &mut self.to_client, buf: &mut self.buf }
    }
    fn view(&self) -> (&Shard<Echo>, &Shard<PatternClient>, &Link, &Link) {
        (&self.server, &self.client, &self.to_server, &self.to_client)
    }
}

#[test]
fn echo_one_mib_with_arp_resolution() {
    let mut w = World::new(LinkConfig::ideal(Duration::from_micros(50)));
    w.app.total = 1 << 20;
    let id = w.client.connect(w.now, SocketAddrV4::new(SERVER_IP, PORT)).unwrap();
    assert!(w.run(Duration::from_secs(30), |w| !w.app.closed.is_empty()), "echo did not finish");
    assert_eq!(w.app.received.get(&id), Some(&(1 << 20)));
    assert_eq!(w.app.corrupt, 0);
    assert_eq!(w.app.closed, vec![(id, CloseReason::Normal)]);
    assert_eq!(w.echo.accepted, 1);
    assert!(w.server.stats().arp_requests_answered >= 1, "the client had to resolve the server");
    assert_eq!(w.server.stats().tcp_checksum_errors, 0);
}

#[test]
fn echo_under_loss_reordering_and_duplication() {
    let link = LinkConfig::ideal(Duration::from_micros(200)).with_loss(0.05).with_reorder(0.05, Duration::from_micros(300)).with_duplicate(0.05);
    let mut w = World::new(link);
    w.app.total = 256 << 10;
    for _ in 0..10 {
        w.client.connect(w.now, SocketAddrV4::new(SERVER_IP, PORT)).unwrap();
    }
    let done = w.run(Duration::from_secs(600), |w| w.app.closed.len() == 10);
    if !done {
        for (id, c) in w.client.connections() {
            eprintln!("client {id:?} {:?} sendq {} recvq {} una {} nxt {} wnd {} rcv {} got {:?} sent {:?} timeout {:?} now {:?}", c.state(), c.send_queue(), c.recv_queue(), c.snd_una(), c.snd_nxt(), c.send_window(), c.rcv_nxt(), w.app.received.get(&id), w.app.sent.get(&id), c.poll_timeout(), w.now);
        }
        for (id, c) in w.server.connections() {
            eprintln!("server {id:?} {:?} sendq {} recvq {} una {} nxt {} wnd {} rcv {} timeout {:?}", c.state(), c.send_queue(), c.recv_queue(), c.snd_una(), c.snd_nxt(), c.send_window(), c.rcv_nxt(), c.poll_timeout());
        }
    }
    assert!(done, "closed {} of 10", w.app.closed.len());
    assert_eq!(w.app.corrupt, 0);
    assert!(w.app.received.values().all(|&n| n == 256 << 10));
    assert!(w.app.closed.iter().all(|&(_, r)| r == CloseReason::Normal), "{:?}", w.app.closed);
}

#[test]
fn two_hundred_concurrent_connections() {
    let mut w = World::new(LinkConfig::ideal(Duration::from_micros(50)));
    w.app.total = 10_000;
    for _ in 0..200 {
        w.client.connect(w.now, SocketAddrV4::new(SERVER_IP, PORT)).unwrap();
    }
    assert!(w.run(Duration::from_secs(120), |w| w.app.closed.len() == 200));
    assert_eq!(w.app.corrupt, 0);
    assert_eq!(w.echo.accepted, 200);
    // The active closers hold TIME_WAIT; the server side is gone.
    assert_eq!(w.client.time_wait_count(), 200);
    // Once the last ACKs land, nothing is left on the server.
    w.run(Duration::from_secs(1), |_| false);
    assert_eq!(w.server.connections().count(), 0);
}

#[test]
fn closed_port_is_refused_with_rst() {
    let mut w = World::new(LinkConfig::ideal(Duration::from_micros(50)));
    let id = w.client.connect(w.now, SocketAddrV4::new(SERVER_IP, 9)).unwrap();
    assert!(w.run(Duration::from_secs(5), |w| !w.app.closed.is_empty() || w.client.connection(id).is_none()));
    assert!(w.server.stats().resets_sent >= 1);
    assert!(w.client.connection(id).is_none(), "the refused connection is gone");
    // The application learns why its connect failed.
    assert_eq!(w.app.closed, vec![(id, CloseReason::Refused)]);
    assert_eq!(w.app.connected, 0);
}

#[test]
fn ping_gets_an_echo_reply() {
    let mut w = World::new(LinkConfig::ideal(Duration::from_micros(50)));
    let echo = IcmpEchoRepr { kind: IcmpEchoKind::Request, ident: 9, seq_no: 3, data: b"hello" };
    let ip = Ipv4Repr { src_addr: CLIENT_IP, dst_addr: SERVER_IP, protocol: IpProtocol::Icmp, payload_len: echo.buffer_len(), ttl: 64 };
    let mut frame = vec![0u8; 34 + echo.buffer_len()];
    EthernetRepr { src_addr: CLIENT_MAC, dst_addr: SERVER_MAC, ethertype: EtherType::Ipv4 }.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..]));
    echo.emit(&mut IcmpPacket::new_unchecked(&mut frame[34..]));
    let mut out = vec![0u8; 2048];
    while w.server.poll_transmit(w.now, &mut out).is_some() {} // the gratuitous ARP
    w.server.handle_frame(w.now, &frame, &mut w.echo);
    let n = w.server.poll_transmit(w.now, &mut out).expect("a reply");
    let eth = EthernetFrame::new_checked(&out[..n]).unwrap();
    assert_eq!(eth.dst_addr(), CLIENT_MAC);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(Ipv4Repr::parse(&ip, true).unwrap().dst_addr, CLIENT_IP);
    let reply = IcmpEchoRepr::parse(&IcmpPacket::new_checked(ip.payload()).unwrap()).unwrap();
    assert_eq!((reply.kind, reply.ident, reply.seq_no, reply.data), (IcmpEchoKind::Reply, 9, 3, &b"hello"[..]));
}

#[test]
fn malformed_frames_are_counted_not_trusted() {
    let mut w = World::new(LinkConfig::ideal(Duration::from_micros(50)));
    let good = {
        let tcp = TcpRepr { src_port: 1000, dst_port: PORT, seq: SeqNumber(1), ack: SeqNumber(0), flags: TcpFlags::SYN, window: 1000, urgent: 0, options: TcpOptions::default(), payload: &[] };
        let ip = Ipv4Repr { src_addr: CLIENT_IP, dst_addr: SERVER_IP, protocol: IpProtocol::Tcp, payload_len: tcp.buffer_len(), ttl: 64 };
        let mut f = vec![0u8; 34 + tcp.buffer_len()];
        EthernetRepr { src_addr: CLIENT_MAC, dst_addr: SERVER_MAC, ethertype: EtherType::Ipv4 }.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
        tcp.emit(&mut TcpPacket::new_unchecked(&mut f[34..]), CLIENT_IP, SERVER_IP, true);
        f
    };
    let mut bad_tcp = good.clone();
    bad_tcp[40] ^= 1; // sequence number: TCP checksum now wrong
    let mut bad_ip = good.clone();
    bad_ip[22] ^= 1; // TTL: IP header checksum now wrong
    let mut frag = good.clone();
    let mut p = Ipv4Packet::new_unchecked(&mut frag[14..]);
    p.set_flags_frag(false, true, 0);
    p.fill_checksum();
    for f in [&good[..5], &bad_tcp[..], &bad_ip[..], &frag[..], &good[..30], &[][..]] {
        w.server.handle_frame(w.now, f, &mut w.echo);
    }
    let s = *w.server.stats();
    assert_eq!(s.tcp_checksum_errors, 1);
    assert_eq!(s.ip_checksum_errors, 1);
    assert_eq!(s.ip_fragments, 1);
    assert_eq!(s.malformed, 3);
    assert_eq!(s.segments_in, 0, "nothing reached TCP");
}

#[test]
fn time_wait_overflow_and_reuse() {
    let mut w = World::new(LinkConfig::ideal(Duration::from_micros(50)));
    w.app.total = 10;
    let mut cfg = StackConfig::new(CLIENT_MAC, CLIENT_IP, 24);
    cfg.max_time_wait = 5;
    cfg.tw_reuse = true;
    cfg.ephemeral_ports = (40000, 40009);
    w.client = Shard::new(cfg, [2; 16]);
    for _ in 0..10 {
        w.client.connect(w.now, SocketAddrV4::new(SERVER_IP, PORT)).unwrap();
    }
    assert!(w.run(Duration::from_secs(30), |w| w.app.closed.len() == 10));
    // tcp_max_tw_buckets: only five kept, five skipped TIME_WAIT.
    assert_eq!(w.client.time_wait_count(), 5);
    assert_eq!(w.client.stats().time_wait_overflow, 5);
    // The five that skipped TIME_WAIT still sent their last ACK: the server
    // closed every connection at once, none waits in LAST_ACK for a FIN
    // retransmission to be reset.
    w.run(Duration::from_millis(20), |_| false);
    let left: Vec<_> = w.server.connections().map(|(_, c)| c.state()).collect();
    assert!(left.is_empty(), "server connections left: {left:?}");
    assert_eq!(w.server.stats().resets_sent + w.client.stats().resets_sent, 0);
    // Every port of the range is now used once; five sit in TIME_WAIT. After
    // a second, tcp_tw_reuse lets new connections take those tuples over.
    w.run(Duration::from_secs(2), |_| false);
    let before = w.app.closed.len();
    for _ in 0..10 {
        w.client.connect(w.now, SocketAddrV4::new(SERVER_IP, PORT)).expect("a port, reusing TIME_WAIT");
    }
    assert_eq!(w.client.stats().time_wait_reused, 5, "{:?}", w.client.stats());
    let done = w.run(Duration::from_secs(30), |w| w.app.closed.len() == before + 10);
    if !done {
        for (id, c) in w.client.connections() {
            eprintln!("client {id:?} {:?} {} → {} reason {:?}", c.state(), c.local(), c.remote(), c.close_reason());
        }
        for (id, c) in w.server.connections() {
            eprintln!("server {id:?} {:?} {} → {}", c.state(), c.local(), c.remote());
        }
        eprintln!("{:?}\n{:?}", w.client.stats(), w.server.stats());
    }
    assert!(done, "closed {} of 10 new", w.app.closed.len() - before);
    assert_eq!(w.app.corrupt, 0);
}

/// A shard shutting down (SIGTERM): `close_all` sends every connection a
/// FIN and stops listening, so new SYNs are refused; `abort_all` then resets
/// what the peers left open.
#[test]
fn shutdown_closes_with_fin_then_resets_the_rest() {
    let mut w = World::new(LinkConfig::ideal(Duration::from_micros(50)));
    w.app.total = 0; // connections stay idle and open
    for _ in 0..3 {
        w.client.connect(w.now, SocketAddrV4::new(SERVER_IP, PORT)).unwrap();
    }
    assert!(w.run(Duration::from_secs(5), |w| w.app.connected == 3));
    assert_eq!(w.server.open_connections(), 3);

    w.server.close_all();
    w.run(Duration::from_millis(20), |_| false);
    let states: Vec<_> = w.client.connections().map(|(_, c)| c.state().name()).collect();
    assert_eq!(states, vec!["CLOSE-WAIT"; 3], "every client got the server's FIN");
    // The client never closes its side: the server waits in FIN-WAIT-2.
    assert_eq!(w.server.open_connections(), 3);

    // No more listening: a new connection is refused with a RST.
    let resets = w.server.stats().resets_sent;
    let id = w.client.connect(w.now, SocketAddrV4::new(SERVER_IP, PORT)).unwrap();
    assert!(w.run(Duration::from_secs(1), |w| w.client.connection(id).is_none_or(|c| c.is_closed())));
    assert_eq!(w.server.stats().resets_sent, resets + 1);
    assert_eq!(w.app.connected, 3, "the refused connection never connected");

    w.server.abort_all();
    assert!(w.run(Duration::from_secs(1), |w| w.app.closed.iter().filter(|(_, r)| *r == CloseReason::Reset).count() == 3));
    assert_eq!(w.server.open_connections(), 0);
}
