//! The application interface: callbacks per connection, and the `Conn`
//! handle they receive.
//!
//! A worker calls these from its run-to-completion loop, on the core that
//! owns the connection: no locks, no allocation on the way. `on_data` sees
//! the payload in place, in the frame that carried it; whatever it does not
//! consume stays buffered and is offered again with the next data.

use crate::tcp::{CloseReason, Connection, Handle, SendError, Shutdown, State};

/// How `Conn::send_with` reaches the TX frames the runtime lent the
/// shard (the shard's `Sender` over its `TxBatch<F>`).
///
/// The one trait object on the send path, and only here, at the
/// application boundary: `App` is not generic over the runtime's frame
/// type (its callbacks take a `Conn<'_, State>`), so `Conn` cannot name
/// the shard's `TxBatch<F>`; this erases `F` for the callback. Everything
/// below it (the shard, the batch, the engine) is generic and static.
pub(crate) trait LentFrames {
    /// `Conn::send_with` for `conn`: `f` writes into a TX frame after the
    /// headers when the data can go at once, else into the send buffer.
    /// `f` is called at most once (later calls return 0).
    fn send_with(&mut self, conn: &mut Handle<'_>, max_len: usize, f: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<usize, SendError>;
}

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
    /// The connection is gone; its state is handed back. Also called for an
    /// active open that never connected (`CloseReason::Refused` for a RST
    /// in reply to the SYN, `TimedOut` when the SYN retries ran out,
    /// `Aborted` or `Normal` when the application gave up first), so every
    /// id `Shard::connect` returned ends here exactly once.
    fn on_closed(&mut self, _id: ConnId, _state: Self::State, _reason: CloseReason) {}
}

/// A connection as the application sees it during a callback.
pub struct Conn<'a, S> {
    id: ConnId,
    conn: Handle<'a>,
    state: &'a mut S,
    /// The shard's lent TX frames; none for a connection on its own.
    tx: Option<&'a mut dyn LentFrames>,
}

impl<'a, S> Conn<'a, S> {
    /// A connection on its own: `send_with` writes into the send buffer.
    pub fn new(id: ConnId, conn: &'a mut Connection, state: &'a mut S) -> Self {
        Conn { id, conn: Handle::new(conn), state, tx: None }
    }
    /// A connection whose `send_with` may write straight into TX frames
    /// (the shard makes these, in `Shard::call`).
    pub(crate) fn with_frames(id: ConnId, conn: Handle<'a>, state: &'a mut S, tx: &'a mut dyn LentFrames) -> Self {
        Conn { id, conn, state, tx: Some(tx) }
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
    /// Sends what `f` writes in place, one copy fewer than `send`: `f` gets
    /// a buffer of at most `max_len` bytes, writes into it, and returns how
    /// many bytes it wrote; `send_with` returns the same (0 if `f` got no
    /// room).
    ///
    /// When the connection can send new data at once (nothing unsent ahead,
    /// room in the peer's window and the congestion window, the link
    /// address known, a TX frame free), the buffer lies in the TX frame
    /// right after the Ethernet, IPv4 and TCP headers, and the segment
    /// leaves with at most one MSS; the send buffer keeps a copy for
    /// retransmission. Otherwise the buffer is free space in the send
    /// buffer (one contiguous piece, so possibly shorter than `max_len`),
    /// sent later as `send`'s data is. Call again for more; a short buffer
    /// because the send buffer is full is followed by `on_writable`.
    pub fn send_with(&mut self, max_len: usize, f: impl FnOnce(&mut [u8]) -> usize) -> Result<usize, SendError> {
        match self.tx.as_deref_mut() {
            Some(tx) => {
                let mut f = Some(f);
                tx.send_with(&mut self.conn, max_len, &mut |buf| f.take().map_or(0, |f| f(buf)))
            }
            None => self.conn.send_with(max_len, f),
        }
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
        &self.conn
    }
}
