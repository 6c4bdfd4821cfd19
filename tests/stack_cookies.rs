//! SYN-cookie handshakes end to end, between two real shards over simulated
//! links (RFC 4987 §3.6): the server's SYN queue is filled first by a
//! spoofed flood, so the client's SYN is answered with a cookie; the client
//! sends its request on the third ACK; the server then streams more than
//! the client's receive buffer while the client does not read, so the
//! client's window fills and closes, then it reads everything.
//!
//! Every frame is watched on the wire. The cookie-made connection must:
//! - take the data on the third ACK (no client RTO, probe or retransmission);
//! - read the client's windows with the client's own shift (RFC 7323 §2.3),
//!   which differs from the server's (7) for shifts 0, 6 and 8: its send
//!   window equals what the client advertised, and it never sends beyond
//!   the right edge the client offered (RFC 9293 §3.8.6).

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use xdptcp::app::{App, Conn, ConnId};
use xdptcp::sim::link::{Link, LinkConfig};
use xdptcp::stack::{Shard, StackConfig};
use xdptcp::tcp::{Config, ListenerConfig};
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::*;

use common::client::byte;
use common::shards::{self, Parts, ShardPair};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SERVER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const PORT: u16 = 80;
/// Half-open connections the server keeps; the flood fills them all.
const SYN_BACKLOG: usize = 4;
const REQUEST: usize = 300;

/// Streams `total` bytes of the pattern once the whole request arrived.
#[derive(Default)]
struct Server {
    total: usize,
    request: usize,
    sent: usize,
    /// When the request was complete.
    request_at: Option<Instant>,
    now: Instant,
}

impl Server {
    fn pump(&mut self, c: &mut Conn<'_, ()>) {
        while self.request == REQUEST && self.sent < self.total {
            let chunk: Vec<u8> = (self.sent..(self.sent + 16384).min(self.total)).map(byte).collect();
            let w = c.send(&chunk).unwrap_or(0);
            self.sent += w;
            if w < chunk.len() {
                return;
            }
        }
    }
}

impl App for Server {
    type State = ();
    fn on_data(&mut self, c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        self.request += data.len();
        assert!(self.request <= REQUEST);
        if self.request == REQUEST && self.request_at.is_none() {
            self.request_at = Some(self.now);
        }
        self.pump(c);
        data.len()
    }
    fn on_writable(&mut self, c: &mut Conn<'_, ()>) {
        self.pump(c);
    }
}

/// Sends the request when connected; reads only when `reading`.
#[derive(Default)]
struct Client {
    reading: bool,
    connected: Option<ConnId>,
    received: usize,
    corrupt: usize,
}

impl App for Client {
    type State = ();
    fn on_connected(&mut self, c: &mut Conn<'_, ()>) {
        self.connected = Some(c.id());
        assert_eq!(c.send(&[b'r'; REQUEST]), Ok(REQUEST));
    }
    fn on_data(&mut self, _c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        if !self.reading {
            return 0;
        }
        self.corrupt += data.iter().enumerate().filter(|&(k, &b)| b != byte(self.received + k)).count();
        self.received += data.len();
        data.len()
    }
}

/// The TCP segment in a frame between the two hosts, if it is one.
fn tcp_of(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, TcpRepr<'_>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&frame[14..]).ok()?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if ip.protocol() != IpProtocol::Tcp || ![src, dst].contains(&CLIENT_IP) {
        return None;
    }
    let header = usize::from(ip.header_len());
    let total = usize::from(ip.total_len());
    let tcp = TcpPacket::new_checked(&frame[14 + header..14 + total]).ok()?;
    let repr = TcpRepr::parse(&tcp, src, dst, true).ok()?;
    Some((src, dst, repr))
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
    /// The client's window shift (what its SYN announced).
    client_shift: u8,
    /// The right edge the client advertised, furthest so far.
    right_edge: Option<SeqNumber>,
    /// The client's segments after its SYN, in order: (payload length, flags).
    client_segments: Vec<(usize, TcpFlags)>,
    /// Server data segments checked against `right_edge`.
    checked: usize,
}

impl World {
    fn new(client_recv_buffer: usize, total: usize) -> World {
        let mut cfg = StackConfig::new(SERVER_MAC, SERVER_IP, 24);
        cfg.listener = ListenerConfig { syn_backlog: SYN_BACKLOG, ..ListenerConfig::default() };
        let mut server = Shard::new(cfg, [1; 16]);
        server.listen(PORT);
        let mut cfg = StackConfig::new(CLIENT_MAC, CLIENT_IP, 24);
        cfg.tcp = Config { recv_buffer: client_recv_buffer, ..Config::default() };
        let client_shift = cfg.tcp.window_shift();
        let client = Shard::new(cfg, [2; 16]);
        let link = LinkConfig::ideal(Duration::from_millis(1)).with_bandwidth(1_000_000_000, 64 << 20);
        World {
            now: Instant::from_secs(1),
            server,
            client,
            srv: Server { total, ..Server::default() },
            cli: Client::default(),
            to_server: Link::new(link.clone(), 21),
            to_client: Link::new(link, 22),
            buf: vec![0u8; 2048],
            client_shift,
            right_edge: None,
            client_segments: Vec::new(),
            checked: 0,
        }
    }

    /// A SYN flood from spoofed addresses that never answer: it fills the
    /// server's SYN queue (their SYN-ACKs wait on ARP that nobody answers).
    fn flood(&mut self) {
        for k in 0..SYN_BACKLOG as u8 {
            let src = Ipv4Addr::new(198, 18, 0, 100 + k);
            let tcp = TcpRepr {
                src_port: 1000 + u16::from(k),
                dst_port: PORT,
                seq: SeqNumber(77 + u32::from(k)),
                ack: SeqNumber(0),
                flags: TcpFlags::SYN,
                window: 65535,
                urgent: 0,
                options: TcpOptions { mss: Some(1460), ..TcpOptions::default() },
                payload: &[],
            };
            let ip = Ipv4Repr { src_addr: src, dst_addr: SERVER_IP, protocol: IpProtocol::Tcp, payload_len: tcp.buffer_len(), ttl: 64 };
            let mut f = vec![0u8; 34 + tcp.buffer_len()];
            EthernetRepr { src_addr: EthernetAddress([2, 0, 0, 0, 9, k]), dst_addr: SERVER_MAC, ethertype: EtherType::Ipv4 }.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
            ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
            tcp.emit(&mut TcpPacket::new_unchecked(&mut f[34..]), src, SERVER_IP, true);
            self.server.handle_frame(self.now, &f, &mut self.srv);
        }
        let l = self.server.listeners().next().unwrap();
        assert_eq!(l.syn_queue_len(), SYN_BACKLOG, "the flood fills the SYN queue");
        assert_eq!(l.stats().cookies_sent, 0);
    }

    /// The client's frame, on its way: the right edge it offers (RFC 7323
    /// §2.3: SEG.WND << the client's shift, from SEG.ACK).
    fn watch_client(&mut self, frame: &[u8]) {
        let Some((src, _, seg)) = tcp_of(frame) else { return };
        assert_eq!(src, CLIENT_IP);
        if seg.flags.syn() {
            assert_eq!(seg.options.window_scale, Some(self.client_shift), "the client announces its shift");
            return;
        }
        self.client_segments.push((seg.payload.len(), seg.flags));
        if seg.flags.ack() && !seg.flags.rst() {
            let edge = seg.ack + (usize::from(seg.window) << self.client_shift);
            self.right_edge = Some(self.right_edge.map_or(edge, |e| if edge > e { edge } else { e }));
        }
    }

    /// The server's frame, on its way: data never beyond the client's window.
    fn watch_server(&mut self, frame: &[u8]) {
        let Some((src, dst, seg)) = tcp_of(frame) else { return };
        assert_eq!((src, dst), (SERVER_IP, CLIENT_IP));
        if seg.payload.is_empty() {
            return;
        }
        let edge = self.right_edge.expect("data before the client's first ACK");
        let end = seg.seq + seg.payload.len();
        assert!(
            end <= edge,
            "the server sent up to {} beyond the right edge the client offered ({} bytes too far; client shift {})",
            end.0,
            end - edge,
            self.client_shift
        );
        self.checked += 1;
    }

    /// After the server took a client segment: its send window is the
    /// client's, read with the client's shift.
    fn check_server_window(&self, frame: &[u8]) {
        let Some((_, _, seg)) = tcp_of(frame) else { return };
        if seg.flags.syn() || seg.flags.rst() || !seg.flags.ack() {
            return;
        }
        let (_, conn) = self.server.connections().find(|(_, c)| c.remote().ip() == &CLIENT_IP).expect("the cookie connection exists");
        assert_eq!(
            conn.send_window(),
            usize::from(seg.window) << self.client_shift,
            "the server's send window after a client segment with window field {} (client shift {}, server reads it with {:?})",
            seg.window,
            self.client_shift,
            conn.window_scales()
        );
    }

    fn run(&mut self, limit: Duration, done: impl FnMut(&World) -> bool) -> bool {
        shards::run(self, limit, done)
    }
}

impl ShardPair for World {
    type S = Server;
    type C = Client;
    const CLOCK_TO_DEADLINE: bool = false;
    fn parts(&mut self) -> Parts<'_, Server, Client> {
        Parts { now: &mut self.now, server: &mut self.server, srv: &mut self.srv, client: &mut self.client, cli: &mut self.cli, to_server: &mut self.to_server, to_client: &mut self.to_client, buf: &mut self.buf }
    }
    fn view(&self) -> (&Shard<Server>, &Shard<Client>, &Link, &Link) {
        (&self.server, &self.client, &self.to_server, &self.to_client)
    }
    fn sent(&mut self, from_server: bool, frame: &[u8]) {
        if from_server {
            self.watch_server(frame);
        } else {
            self.watch_client(frame);
        }
    }
    fn server_received(&mut self, frame: &[u8]) {
        self.check_server_window(frame);
    }
    fn tick(&mut self, now: Instant) {
        self.srv.now = now;
    }
}

/// One cookie handshake and transfer with a client whose receive buffer
/// makes it announce `shift`.
fn cookie_transfer(client_recv_buffer: usize, shift: u8) {
    // More than the client's buffer: its window fills and closes.
    let total = client_recv_buffer + (256 << 10);
    let mut w = World::new(client_recv_buffer, total);
    assert_eq!(w.client_shift, shift);
    w.server.announce();
    w.flood();
    let start = w.now;
    w.client.connect(w.now, SocketAddrV4::new(SERVER_IP, PORT)).unwrap();
    assert!(w.run(Duration::from_secs(5), |w| w.srv.request_at.is_some()), "the request never arrived");
    let l = w.server.listeners().next().unwrap();
    assert_eq!((l.stats().cookies_sent, l.stats().cookies_validated), (1, 1), "the handshake went through a cookie");
    assert_eq!(l.syn_queue_len(), SYN_BACKLOG, "the flood still holds the SYN queue");
    // The request rode on the third ACK, and arrived with it: one RTT
    // (2 ms) for SYN / SYN-ACK, half of one for the third ACK, plus ARP.
    assert!(w.client_segments[0].0 > 0, "data on the third ACK: {:?}", w.client_segments[0]);
    let took = w.srv.request_at.unwrap() - start;
    assert!(took < Duration::from_millis(10), "the request took {took:?}: it was dropped and resent");

    // The client does not read: the server fills its window (to less than
    // a segment: sender SWS avoidance keeps the last sliver), then stops.
    let id = w.cli.connected.unwrap();
    let mss = w.client.connection(id).unwrap().mss();
    assert!(
        w.run(Duration::from_secs(10), |w| w.client.connection(id).unwrap().recv_queue() + mss > client_recv_buffer),
        "the client's buffer never filled: holds {} of {}",
        w.client.connection(id).unwrap().recv_queue(),
        client_recv_buffer
    );
    w.run(Duration::from_millis(50), |_| false);
    assert!(w.client.connection(id).unwrap().recv_window() < mss, "the client's window closed");
    let (_, sconn) = w.server.connections().find(|(_, c)| c.remote().ip() == &CLIENT_IP).unwrap();
    assert!(sconn.send_queue() > 0, "the server still has data to send");
    assert_eq!(sconn.bytes_in_flight(), 0, "and nothing beyond the client's window");

    // The client reads: the window reopens and the rest arrives.
    w.cli.reading = true;
    w.client.resume_reading(w.now, id, &mut w.cli);
    assert!(w.run(Duration::from_secs(30), |w| w.cli.received == total), "received {} of {total}", w.cli.received);
    assert_eq!(w.cli.corrupt, 0);
    assert!(w.checked > total / 1448 / 2, "server segments checked: {}", w.checked);

    let c = w.client.connection(id).unwrap().stats();
    assert_eq!((c.retransmits, c.timeouts, c.loss_probes), (0, 0, 0), "the client never resent anything");
    let (_, sconn) = w.server.connections().find(|(_, c)| c.remote().ip() == &CLIENT_IP).unwrap();
    let s = sconn.stats();
    assert_eq!((s.retransmits, s.timeouts), (0, 0), "the server never resent anything");
    assert_eq!(s.out_of_window, 0);
    assert_eq!(w.client.connection(id).unwrap().stats().out_of_window, 0, "the client got nothing beyond its window");
}

#[test]
fn cookie_handshake_with_peer_window_scale_0() {
    cookie_transfer(65_535, 0);
}

/// macOS's shift: read with ours (7), its windows look twice as large.
#[test]
fn cookie_handshake_with_peer_window_scale_6() {
    cookie_transfer(2 << 20, 6);
}

/// Our own shift: the data on the third ACK is the point here.
#[test]
fn cookie_handshake_with_peer_window_scale_7() {
    cookie_transfer(4 << 20, 7);
}

/// Read with ours (7), its windows look half as large.
#[test]
fn cookie_handshake_with_peer_window_scale_8() {
    cookie_transfer(8 << 20, 8);
}
