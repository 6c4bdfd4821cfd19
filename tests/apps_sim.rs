//! The bundled applications (`xdptcp::apps`) on a shard, over a simulated
//! link: behaviour `xdptcp serve` users rely on.

use std::net::{Ipv4Addr, SocketAddrV4};

use xdptcp::app::{App, Conn, ConnId};
use xdptcp::apps::Echo;
use xdptcp::sim::link::{Link, LinkConfig};
use xdptcp::stack::{Shard, StackConfig};
use xdptcp::tcp::CloseReason;
use xdptcp::time::{Duration, Instant};
use xdptcp::wire::EthernetAddress;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// Sends `total` bytes, half-closes, and reads the echo to the end.
struct HalfCloser {
    total: usize,
    sent: usize,
    received: usize,
    corrupt: bool,
    peer_closed: bool,
    closed: Option<CloseReason>,
}

fn byte(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 9)) as u8
}

impl HalfCloser {
    fn pump(&mut self, c: &mut Conn<'_, ()>) {
        while self.sent < self.total {
            let chunk: Vec<u8> = (self.sent..(self.sent + 4096).min(self.total)).map(byte).collect();
            let n = c.send(&chunk).unwrap_or(0);
            self.sent += n;
            if n < chunk.len() {
                return;
            }
        }
        c.shutdown();
    }
}

impl App for HalfCloser {
    type State = ();
    fn on_connected(&mut self, c: &mut Conn<'_, ()>) {
        self.pump(c);
    }
    fn on_writable(&mut self, c: &mut Conn<'_, ()>) {
        if self.sent < self.total {
            self.pump(c);
        }
    }
    fn on_data(&mut self, _c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        for (k, &b) in data.iter().enumerate() {
            self.corrupt |= b != byte(self.received + k);
        }
        self.received += data.len();
        data.len()
    }
    fn on_peer_closed(&mut self, c: &mut Conn<'_, ()>) {
        self.peer_closed = true;
        c.close();
    }
    fn on_closed(&mut self, _id: ConnId, _s: (), reason: CloseReason) {
        self.closed = Some(reason);
    }
}

/// The echo server's FIN arrives while echoed data still waits for send
/// space (its send buffer is small, the peer's window is not): the echo must
/// still send everything and then close, never sit in CLOSE_WAIT.
#[test]
fn echo_closes_after_a_fin_that_arrives_under_backpressure() {
    for (seed, loss) in [(1u64, 0.0), (2, 0.02), (3, 0.02), (4, 0.05)] {
        let mut cfg = StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, 1]), SERVER, 24);
        cfg.tcp.send_buffer = 16 << 10;
        let mut server: Shard<Echo> = Shard::new(cfg, [1; 16]);
        server.listen(7);
        server.announce();
        let mut client: Shard<HalfCloser> = Shard::new(StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, 2]), CLIENT, 24), [2; 16]);
        let mut echo = Echo;
        let mut app = HalfCloser { total: 2 << 20, sent: 0, received: 0, corrupt: false, peer_closed: false, closed: None };
        let link = LinkConfig::ideal(Duration::from_micros(300)).with_loss(loss);
        let (mut to_server, mut to_client) = (Link::new(link.clone(), seed), Link::new(link, seed + 100));
        let mut now = Instant::from_secs(1);
        let end = now + Duration::from_secs(300);
        let mut buf = vec![0u8; 2048];
        client.connect(now, SocketAddrV4::new(SERVER, 7)).unwrap();
        while now < end && !(app.closed.is_some() && server.connections().count() == 0) {
            while let Some(n) = server.poll_transmit(now, &mut buf) {
                to_client.send(now, buf[..n].to_vec());
            }
            while let Some(n) = client.poll_transmit(now, &mut buf) {
                to_server.send(now, buf[..n].to_vec());
            }
            let next = [to_server.next_delivery(), to_client.next_delivery(), server.poll_timeout(), client.poll_timeout()].into_iter().flatten().min();
            let Some(next) = next else { break };
            now = now.max(next);
            while let Some(f) = to_server.recv(now) {
                server.handle_frame(now, &f, &mut echo);
            }
            while let Some(f) = to_client.recv(now) {
                client.handle_frame(now, &f, &mut app);
            }
            server.handle_timeout(now, &mut echo);
            client.handle_timeout(now, &mut app);
        }
        let left: Vec<_> = server.connections().map(|(_, c)| (c.state(), c.send_queue(), c.recv_queue())).collect();
        assert!(left.is_empty(), "loss {loss}: server connections left {left:?}");
        assert_eq!(app.received, 2 << 20, "loss {loss}");
        assert!(!app.corrupt && app.peer_closed, "loss {loss}");
        assert_eq!(app.closed, Some(CloseReason::Normal), "loss {loss}");
    }
}
