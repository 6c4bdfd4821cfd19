//! The servers `xdptcp serve --app` runs: echo, discard, source (sends
//! without end, for download benchmarks) and a minimal HTTP/1.1 responder
//! with keep-alive.

use crate::app::{App, Conn};

/// Sends back what it receives; closes after the peer's FIN once
/// everything has been echoed.
#[derive(Default)]
pub struct Echo;

#[derive(Default)]
pub struct EchoState {
    peer_closed: bool,
}

impl App for Echo {
    type State = EchoState;
    fn on_data(&mut self, c: &mut Conn<'_, EchoState>, data: &[u8]) -> usize {
        // Copied from the received frame straight into TX frames while the
        // connection can send at once, else into the send buffer. Whatever
        // does not fit stays unread and is offered again when space frees
        // (backpressure, no copy of our own).
        let mut done = 0;
        while done < data.len() {
            let rest = &data[done..];
            let n = c
                .send_with(rest.len(), |buf| {
                    let n = buf.len();
                    buf.copy_from_slice(&rest[..n]);
                    n
                })
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            done += n;
        }
        done
    }
    fn on_writable(&mut self, c: &mut Conn<'_, EchoState>) {
        if c.state().peer_closed && c.tcp().recv_queue() == 0 {
            c.close();
        }
    }
    fn on_peer_closed(&mut self, c: &mut Conn<'_, EchoState>) {
        c.state().peer_closed = true;
        if c.tcp().recv_queue() == 0 {
            c.close();
        }
    }
}

/// Reads and drops everything; closes after the peer's FIN.
#[derive(Default)]
pub struct Discard;

impl App for Discard {
    type State = ();
    fn on_data(&mut self, _c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        data.len()
    }
    fn on_peer_closed(&mut self, c: &mut Conn<'_, ()>) {
        c.close();
    }
}

/// Sends a stream of bytes without end, as fast as the peer takes them
/// (chargen without the characters); whatever arrives is dropped. Closes
/// after the peer's FIN.
#[derive(Default)]
pub struct Source;

const SOURCE_CHUNK: [u8; 16384] = [b'x'; 16384];

impl Source {
    fn fill(c: &mut Conn<'_, ()>) {
        while matches!(c.send(&SOURCE_CHUNK), Ok(n) if n == SOURCE_CHUNK.len()) {}
    }
}

impl App for Source {
    type State = ();
    fn on_accept(&mut self, c: &mut Conn<'_, ()>) {
        Self::fill(c);
    }
    fn on_writable(&mut self, c: &mut Conn<'_, ()>) {
        Self::fill(c);
    }
    fn on_peer_closed(&mut self, c: &mut Conn<'_, ()>) {
        c.close();
    }
}

/// Answers every HTTP/1.1 request with 200 and a short body. Keep-alive
/// unless the request says `Connection: close`.
///
/// Parses in place and answers from constants: no allocation per request.
/// A request head not complete yet is left unread in the connection's
/// receive buffer, which offers it again with what arrives next; a head
/// longer than [`HTTP_MAX_HEAD`] closes the connection.
#[derive(Default)]
pub struct Http;

#[derive(Default)]
pub struct HttpState {
    close_after: bool,
}

pub const HTTP_BODY: &[u8] = b"hello from xdptcp\n";

/// The longest request head taken; a longer one closes the connection
/// (it would otherwise sit in the receive buffer for ever).
pub const HTTP_MAX_HEAD: usize = 64 * 1024;

/// The whole answer, head and body, for a keep-alive request and for one
/// that asked to close.
const HTTP_KEEP_ALIVE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 18\r\nConnection: keep-alive\r\n\r\nhello from xdptcp\n";
const HTTP_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 18\r\nConnection: close\r\n\r\nhello from xdptcp\n";

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Whether a header line of `head` says `Connection: close` (any case).
fn asks_to_close(head: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\r\nconnection: close";
    head.windows(NEEDLE.len()).any(|w| w.eq_ignore_ascii_case(NEEDLE))
}

impl App for Http {
    type State = HttpState;
    fn on_data(&mut self, c: &mut Conn<'_, HttpState>, data: &[u8]) -> usize {
        if c.state().close_after {
            return data.len();
        }
        let mut used = 0;
        while let Some(end) = head_end(&data[used..]) {
            let close = asks_to_close(&data[used..used + end]);
            used += end;
            let _ = c.send(if close { HTTP_CLOSE } else { HTTP_KEEP_ALIVE });
            if close {
                c.state().close_after = true;
                c.close();
                return data.len();
            }
        }
        if data.len() - used > HTTP_MAX_HEAD {
            c.state().close_after = true;
            c.close();
            return data.len();
        }
        // An incomplete head stays unread, offered again with more.
        used
    }
    fn on_peer_closed(&mut self, c: &mut Conn<'_, HttpState>) {
        c.close();
    }
}

/// A client that sends `bytes` of a known pattern on each connection, checks
/// the echo byte for byte, then closes. `done` counts finished connections.
pub struct EchoClient {
    pub bytes: usize,
    pub finished: usize,
    pub verified: usize,
    pub failed: usize,
    /// Raised once `target` connections have finished.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    pub target: usize,
}

#[derive(Default)]
pub struct EchoClientState {
    sent: usize,
    received: usize,
    corrupt: bool,
}

/// Byte `i` of the client's stream.
pub fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 11)) as u8
}

impl EchoClient {
    pub fn new(bytes: usize, target: usize, stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>) -> Self {
        EchoClient { bytes, finished: 0, verified: 0, failed: 0, stop, target }
    }

    fn pump(&mut self, c: &mut Conn<'_, EchoClientState>) {
        let mut chunk = [0u8; 4096];
        loop {
            let sent = c.state().sent;
            if sent >= self.bytes {
                return;
            }
            let n = (self.bytes - sent).min(chunk.len());
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern(sent + k);
            }
            let w = c.send(&chunk[..n]).unwrap_or(0);
            c.state().sent += w;
            if w < n {
                return;
            }
        }
    }
}

impl App for EchoClient {
    type State = EchoClientState;
    fn on_connected(&mut self, c: &mut Conn<'_, EchoClientState>) {
        self.pump(c);
    }
    fn on_writable(&mut self, c: &mut Conn<'_, EchoClientState>) {
        self.pump(c);
    }
    fn on_data(&mut self, c: &mut Conn<'_, EchoClientState>, data: &[u8]) -> usize {
        let st = c.state();
        for (k, &b) in data.iter().enumerate() {
            if b != pattern(st.received + k) {
                st.corrupt = true;
            }
        }
        st.received += data.len();
        if st.received >= self.bytes {
            c.close();
        }
        data.len()
    }
    fn on_closed(&mut self, _id: crate::app::ConnId, state: EchoClientState, _reason: crate::tcp::CloseReason) {
        self.finished += 1;
        if state.received == self.bytes && !state.corrupt {
            self.verified += 1;
        } else {
            self.failed += 1;
        }
        if self.finished >= self.target {
            if let Some(stop) = &self.stop {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ConnId;
    use crate::stack::{Shard, StackConfig};
    use crate::time::{Duration, Instant};
    use crate::wire::EthernetAddress;
    use std::net::{Ipv4Addr, SocketAddrV4};

    /// A client that keeps what it receives and notes the server's FIN.
    #[derive(Default)]
    struct Probe {
        got: Vec<u8>,
        peer_closed: bool,
    }

    impl App for Probe {
        type State = ();
        fn on_data(&mut self, _c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
            self.got.extend_from_slice(data);
            data.len()
        }
        fn on_peer_closed(&mut self, c: &mut Conn<'_, ()>) {
            self.peer_closed = true;
            c.close();
        }
    }

    struct Pair {
        now: Instant,
        client: Shard<Probe>,
        probe: Probe,
        server: Shard<Http>,
        id: ConnId,
        buf: Vec<u8>,
    }

    impl Pair {
        fn new() -> Pair {
            let sip = Ipv4Addr::new(198, 18, 0, 1);
            let mut client = Shard::new(StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, 1]), Ipv4Addr::new(198, 18, 0, 100), 24), [1; 16]);
            let mut server = Shard::new(StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, 2]), sip, 24), [2; 16]);
            server.listen(80);
            let now = Instant::from_secs(1);
            let id = client.connect(now, SocketAddrV4::new(sip, 80)).unwrap();
            let mut p = Pair { now, client, probe: Probe::default(), server, id, buf: vec![0; 2048] };
            p.settle();
            p
        }

        /// Sends `bytes` as one segment and lets both sides answer.
        fn send(&mut self, bytes: &[u8]) {
            assert_eq!(self.client.with_conn(self.id, |c| c.send(bytes)), Some(Ok(bytes.len())));
            self.settle();
        }

        fn settle(&mut self) {
            for _ in 0..10 {
                self.now += Duration::from_millis(1);
                self.client.handle_timeout(self.now, &mut self.probe);
                while let Some(n) = self.client.poll_transmit(self.now, &mut self.buf) {
                    self.server.handle_frame(self.now, &self.buf[..n], &mut Http);
                }
                self.server.handle_timeout(self.now, &mut Http);
                while let Some(n) = self.server.poll_transmit(self.now, &mut self.buf) {
                    self.client.handle_frame(self.now, &self.buf[..n], &mut self.probe);
                }
            }
        }
    }

    #[test]
    fn the_answers_say_what_they_carry() {
        for r in [HTTP_KEEP_ALIVE, HTTP_CLOSE] {
            let head = &r[..head_end(r).unwrap()];
            assert_eq!(&r[head.len()..], HTTP_BODY);
            let len = format!("\r\nContent-Length: {}\r\n", HTTP_BODY.len());
            assert!(head.windows(len.len()).any(|w| w == len.as_bytes()));
        }
        assert!(asks_to_close(b"GET / HTTP/1.1\r\nHost: a\r\nCONNECTION: Close\r\n\r\n"));
        assert!(!asks_to_close(b"GET /connection: close HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!asks_to_close(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn split_and_pipelined_requests_are_answered_in_order() {
        let mut p = Pair::new();
        p.send(b"GET / HTTP/1.1\r\nHost: a\r");
        assert!(p.probe.got.is_empty(), "no answer to half a head");
        p.send(b"\n\r\n");
        assert_eq!(p.probe.got, HTTP_KEEP_ALIVE);
        p.send(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HT");
        assert_eq!(p.probe.got, [HTTP_KEEP_ALIVE; 3].concat());
        p.send(b"TP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n");
        assert_eq!(p.probe.got, [HTTP_KEEP_ALIVE, HTTP_KEEP_ALIVE, HTTP_KEEP_ALIVE, HTTP_CLOSE].concat());
        assert!(p.probe.peer_closed, "closed after `Connection: close`");
    }

    #[test]
    fn an_endless_head_closes_the_connection() {
        let mut p = Pair::new();
        let line = [b'x'; 1000];
        for _ in 0..(HTTP_MAX_HEAD / line.len() + 2) {
            if p.probe.peer_closed {
                break;
            }
            p.send(&line);
        }
        assert!(p.probe.peer_closed);
        assert!(p.probe.got.is_empty());
    }
}
