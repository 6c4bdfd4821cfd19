//! The application interface: callbacks per connection, and the `Conn`
//! handle they receive.
//!
//! A worker calls these from its run-to-completion loop, on the core that
//! owns the connection: no locks, no allocation on the way. `on_data` sees
//! the payload in place, in the frame that carried it; whatever it does not
//! consume stays buffered and is offered again with the next data.

use crate::tcp::{CloseReason, Connection, SendError, Shutdown, State};

/// Identifies a connection within its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// What a server or client built on xdptcp implements. Every method has a
/// default so an application implements only what it needs.
pub trait App {
    /// Per-connection application state, created when a connection appears.
    type State: Default;

    /// A passive open completed (the connection left the accept queue).
    fn on_accept(&mut self, _conn: &mut Conn<'_, Self::State>) {}
    /// An active open completed.
    fn on_connected(&mut self, _conn: &mut Conn<'_, Self::State>) {}
    /// In-order payload, in place. Returns how many bytes were consumed;
    /// the rest is kept and offered again (with anything newer) later.
    fn on_data(&mut self, _conn: &mut Conn<'_, Self::State>, data: &[u8]) -> usize {
        data.len()
    }
    /// Send-buffer space freed after a `send` was cut short.
    fn on_writable(&mut self, _conn: &mut Conn<'_, Self::State>) {}
    /// The peer sent FIN: no more data will come.
    fn on_peer_closed(&mut self, _conn: &mut Conn<'_, Self::State>) {}
    /// The connection is gone; its state is handed back.
    fn on_closed(&mut self, _id: ConnId, _state: Self::State, _reason: CloseReason) {}
}

/// A connection as the application sees it during a callback.
pub struct Conn<'a, S> {
    id: ConnId,
    conn: &'a mut Connection,
    state: &'a mut S,
}

impl<'a, S> Conn<'a, S> {
    pub fn new(id: ConnId, conn: &'a mut Connection, state: &'a mut S) -> Self {
        Conn { id, conn, state }
    }
    pub fn id(&self) -> ConnId {
        self.id
    }
    /// The application's per-connection state.
    pub fn state(&mut self) -> &mut S {
        self.state
    }
    pub fn tcp_state(&self) -> State {
        self.conn.state()
    }
    pub fn local(&self) -> std::net::SocketAddrV4 {
        self.conn.local()
    }
    pub fn remote(&self) -> std::net::SocketAddrV4 {
        self.conn.remote()
    }
    /// Queues a copy of `data`; returns how much fit in the send buffer.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        self.conn.send(data)
    }
    /// Space left in the send buffer.
    pub fn send_capacity(&self) -> usize {
        self.conn.send_capacity()
    }
    pub fn shutdown(&mut self) {
        self.conn.shutdown(Shutdown::Write)
    }
    /// Graceful close (RST instead if received data is left unread).
    pub fn close(&mut self) {
        self.conn.close()
    }
    /// Reset at once (SO_LINGER with zero linger).
    pub fn abort(&mut self) {
        self.conn.abort()
    }
    /// The engine underneath, for statistics.
    pub fn tcp(&self) -> &Connection {
        self.conn
    }
}
