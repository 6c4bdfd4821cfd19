//! Receiving without a copy: a segment's in-order payload handed to the
//! application in place, in the frame that carried it.
//!
//! [`Connection::handle_segment_direct`] returns a [`Delivery`]: a guard
//! that holds the connection (mutably borrowed) together with the payload
//! until [`Delivery::complete`] says how much of it the application
//! consumed; the rest is copied into the receive buffer then. While a
//! delivery is pending the connection can only be reached through the
//! guard, and the guard offers only what an application may do from its
//! `on_data` callback ([`Handle`]: send, close, read the state), so
//! feeding the connection another segment, polling it for output, or
//! completing a delivery twice does not compile. Dropping the guard
//! without `complete` completes it as if nothing was consumed (all of the
//! payload is buffered), so no data is lost either way.
//!
//! Completing twice:
//! ```compile_fail,E0382
//! # fn f(conn: &mut xdptcp::tcp::Connection, now: xdptcp::time::Instant, seg: &xdptcp::wire::TcpRepr<'_>) {
//! let delivery = conn.handle_segment_direct(now, seg);
//! delivery.complete(0);
//! delivery.complete(0); // error[E0382]: use of moved value
//! # }
//! ```
//!
//! Feeding the connection another segment while a delivery is pending:
//! ```compile_fail,E0499
//! # fn f(conn: &mut xdptcp::tcp::Connection, now: xdptcp::time::Instant, seg: &xdptcp::wire::TcpRepr<'_>) {
//! let delivery = conn.handle_segment_direct(now, seg);
//! conn.handle_segment(now, seg); // error[E0499]: `*conn` is already borrowed
//! delivery.complete(delivery.payload().len());
//! # }
//! ```
//!
//! Polling for output during the delivery, even through the guard:
//! ```compile_fail,E0596
//! # fn f(conn: &mut xdptcp::tcp::Connection, now: xdptcp::time::Instant, seg: &xdptcp::wire::TcpRepr<'_>) {
//! let mut delivery = conn.handle_segment_direct(now, seg);
//! let mut buf = [0u8; 1500];
//! delivery.handle().poll_transmit(now, &mut buf); // error[E0599]: cannot borrow data in a `&` reference as mutable
//! delivery.complete(0);
//! # }
//! ```
//!
//! The same, used as intended:
//! ```
//! # fn f(conn: &mut xdptcp::tcp::Connection, now: xdptcp::time::Instant, seg: &xdptcp::wire::TcpRepr<'_>) {
//! let mut delivery = conn.handle_segment_direct(now, seg);
//! let payload = delivery.payload();
//! let _ = delivery.handle().send(payload); // an echo
//! delivery.complete(payload.len());
//! conn.handle_segment(now, seg);
//! # }
//! ```

use std::ops::Deref;

use super::*;

impl Connection {
    /// Processes one arriving segment, copying its in-order payload into the
    /// receive buffer.
    pub fn handle_segment(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        self.handle_segment_direct(now, seg).complete(0);
    }

    /// Processes one arriving segment. The in-order payload that the
    /// application may read in place (empty if none) is in the returned
    /// [`Delivery`], which must be completed with how much of it was
    /// consumed before the connection can be used again.
    pub fn handle_segment_direct<'c, 'p>(&'c mut self, now: Instant, seg: &TcpRepr<'p>) -> Delivery<'c, 'p> {
        self.flags &= !(F_DIRECT_PENDING | F_DIRECT_OVER_BUDGET);
        self.stats.segs_in = self.stats.segs_in.wrapping_add(1);
        let payload = match self.state {
            State::Closed | State::Listen => &[],
            State::SynSent => {
                self.handle_syn_sent(now, seg);
                &[]
            }
            _ => self.handle_synchronizing(now, seg),
        };
        Delivery { conn: self, payload, consumed: 0 }
    }

    /// Takes in the part of a direct payload the application did not
    /// consume: it is copied into the receive buffer (it always fits: it
    /// was inside the window we advertised).
    fn finish_direct(&mut self, unconsumed: &[u8]) {
        if self.flags & F_DIRECT_PENDING == 0 {
            return;
        }
        self.flags &= !(F_DIRECT_PENDING | F_DIRECT_OVER_BUDGET);
        let mut unconsumed = unconsumed;
        let room = self.budget_memory as usize;
        if unconsumed.len() > room {
            // The shard's receive memory is exhausted: keep what fits and
            // un-receive the tail. Nothing acknowledged it yet (the ACK goes
            // out at the next poll_transmit), so RCV.NXT steps back and the
            // peer retransmits it, as for any segment dropped before it was
            // acknowledged (Linux drops in this case too, TCPRcvQDrop).
            let dropped = unconsumed.len() - room;
            unconsumed = &unconsumed[..room];
            self.rcv_nxt = self.rcv_nxt - dropped;
            self.stats.mem_dropped = self.stats.mem_dropped.wrapping_add(1);
            self.flags |= F_ACK_NOW;
        }
        if !unconsumed.is_empty() {
            let n = self.rx.push(unconsumed);
            debug_assert_eq!(n, unconsumed.len(), "direct payload exceeded the window");
            self.spend_budget(n, false);
            self.events |= EV_READABLE;
        }
        // A FIN left for us by `handle_segment_direct` (a no-op otherwise).
        if self.state != State::Closed {
            self.maybe_take_fin(self.last_rx);
        }
        self.window_update_after_held();
        if self.flags & F_CLOSE_DEFERRED != 0 {
            self.flags &= !F_CLOSE_DEFERRED;
            self.close();
        }
    }
}

/// A direct delivery in progress (see the [module docs](self)): the
/// connection, held until [`Delivery::complete`], and the in-order payload
/// in place. Reads of the connection go through `Deref`; what an
/// application may change during the delivery goes through
/// [`Delivery::handle`].
#[must_use = "complete the delivery with how much of the payload was consumed (dropping it buffers all of it)"]
pub struct Delivery<'c, 'p> {
    conn: &'c mut Connection,
    payload: &'p [u8],
    consumed: usize,
}

impl<'c, 'p> Delivery<'c, 'p> {
    /// The in-order payload, in the received frame (empty if none).
    pub fn payload(&self) -> &'p [u8] {
        self.payload
    }

    /// The connection as an application callback may use it meanwhile.
    pub fn handle(&mut self) -> Handle<'_> {
        Handle(self.conn)
    }

    /// Ends the delivery: the application consumed the first `consumed`
    /// bytes of the payload (more than its length counts as all of it); the
    /// rest is copied into the receive buffer.
    pub fn complete(mut self, consumed: usize) {
        self.consumed = consumed;
    }
}

impl Deref for Delivery<'_, '_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Delivery<'_, '_> {
    fn drop(&mut self) {
        let rest = &self.payload[self.consumed.min(self.payload.len())..];
        self.conn.finish_direct(rest);
    }
}

/// A connection as an application may change it from a callback: queue
/// or write data, shut down, close, abort. Everything else it may read
/// (through `Deref`). Feeding segments, timers and polling for output are
/// the shard's, and not here: that is what lets a [`Delivery`] hand one
/// out.
pub struct Handle<'c>(&'c mut Connection);

impl<'c> Handle<'c> {
    /// A connection outside any delivery.
    pub fn new(conn: &'c mut Connection) -> Self {
        Handle(conn)
    }
    /// [`Connection::send`].
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        self.0.send(data)
    }
    /// [`Connection::send_with`].
    pub fn send_with(&mut self, max_len: usize, f: impl FnOnce(&mut [u8]) -> usize) -> Result<usize, SendError> {
        self.0.send_with(max_len, f)
    }
    /// [`Connection::transmit_with`].
    pub fn transmit_with(&mut self, now: Instant, buf: &mut [u8], max_len: usize, f: impl FnOnce(&mut [u8]) -> usize) -> Option<(usize, usize)> {
        self.0.transmit_with(now, buf, max_len, f)
    }
    /// [`Connection::shutdown`].
    pub fn shutdown(&mut self, how: Shutdown) {
        self.0.shutdown(how)
    }
    /// [`Connection::close`]: during a delivery, FIN or RST is decided when
    /// it completes (by whether data was left unread).
    pub fn close(&mut self) {
        self.0.close()
    }
    /// [`Connection::abort`].
    pub fn abort(&mut self) {
        self.0.abort()
    }
    /// A shorter-lived handle to the same connection.
    pub fn reborrow(&mut self) -> Handle<'_> {
        Handle(self.0)
    }
}

impl Deref for Handle<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.0
    }
}
