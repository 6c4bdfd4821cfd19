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
#[derive(Default)]
pub struct Http;

#[derive(Default)]
pub struct HttpState {
    /// Bytes of an incomplete request head seen so far.
    partial: Vec<u8>,
    close_after: bool,
}

pub const HTTP_BODY: &[u8] = b"hello from xdptcp\n";

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

impl App for Http {
    type State = HttpState;
    fn on_data(&mut self, c: &mut Conn<'_, HttpState>, data: &[u8]) -> usize {
        let mut input = data;
        loop {
            let state = c.state();
            let (request, used) = if state.partial.is_empty() {
                match head_end(input) {
                    Some(end) => (input[..end].to_vec(), end),
                    None => {
                        state.partial.extend_from_slice(input);
                        return data.len();
                    }
                }
            } else {
                state.partial.extend_from_slice(input);
                match head_end(&state.partial) {
                    Some(end) => {
                        let used = input.len() - (state.partial.len() - end);
                        let req = state.partial[..end].to_vec();
                        state.partial.clear();
                        (req, used)
                    }
                    None => return data.len(),
                }
            };
            let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
            let close = text.contains("\r\nconnection: close");
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
                HTTP_BODY.len(),
                if close { "close" } else { "keep-alive" }
            );
            let _ = c.send(response.as_bytes());
            let _ = c.send(HTTP_BODY);
            if close {
                c.state().close_after = true;
                c.close();
                return data.len();
            }
            input = &input[used..];
            if input.is_empty() {
                return data.len();
            }
        }
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
