//! A client app for shard-level tests: sends `total` bytes of a known
//! pattern on every connection it opens, checks every byte that comes
//! back, and closes once all of it has.

use std::collections::HashMap;

use xdptcp::app::{App, Conn, ConnId};
use xdptcp::tcp::CloseReason;

/// Byte `i` of the stream every connection sends.
pub fn byte(i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 8)) as u8
}

#[derive(Default)]
pub struct PatternClient {
    pub total: usize,
    pub connected: usize,
    /// Connections that got all `total` bytes back intact so far.
    pub verified: usize,
    /// Bytes that came back different from what was sent.
    pub corrupt: usize,
    pub closed: Vec<(ConnId, CloseReason)>,
    pub sent: HashMap<ConnId, usize>,
    pub received: HashMap<ConnId, usize>,
}

impl PatternClient {
    pub fn new(total: usize) -> Self {
        PatternClient { total, ..Default::default() }
    }

    fn pump(&mut self, c: &mut Conn<'_, ()>) {
        let sent = self.sent.entry(c.id()).or_default();
        while *sent < self.total {
            let chunk: Vec<u8> = (*sent..(*sent + 4096).min(self.total)).map(byte).collect();
            let w = c.send(&chunk).unwrap_or(0);
            *sent += w;
            if w < chunk.len() {
                return;
            }
        }
    }
}

impl App for PatternClient {
    type State = ();
    fn on_connected(&mut self, c: &mut Conn<'_, ()>) {
        self.connected += 1;
        // Ids are reused once a connection is gone: start its counts afresh.
        self.sent.insert(c.id(), 0);
        self.received.insert(c.id(), 0);
        self.pump(c);
    }
    fn on_writable(&mut self, c: &mut Conn<'_, ()>) {
        self.pump(c);
    }
    fn on_data(&mut self, c: &mut Conn<'_, ()>, data: &[u8]) -> usize {
        let got = self.received.entry(c.id()).or_default();
        self.corrupt += data.iter().enumerate().filter(|&(k, &b)| b != byte(*got + k)).count();
        *got += data.len();
        if *got == self.total {
            self.verified += 1;
            c.close();
        }
        data.len()
    }
    fn on_closed(&mut self, id: ConnId, _s: (), reason: CloseReason) {
        self.closed.push((id, reason));
    }
}
