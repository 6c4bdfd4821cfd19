//! Calls into a connection on the application's behalf, and the
//! callbacks they lead to: the one place a callback's `Conn` is made
//! ([`call`]), what a call carries down ([`Io`]: the time and the TX frames
//! lent), events turned into callbacks (`after_io`), buffered data offered
//! again, and the dirty list and timers kept current (`touch`).

use crate::app::{App, Conn, ConnId};
use crate::tcp::{Event, Handle};
use crate::time::Instant;

use super::send::Sender;
use super::{Shard, TxBatch};

/// What a call that may reach the application carries down: the time,
/// and the TX frames the runtime lent for it (an empty batch when none
/// were: `Conn::send_with` then writes into the send buffer).
pub(super) struct Io<'t, F> {
    pub now: Instant,
    pub tx: &'t mut TxBatch<F>,
}

/// No TX frames (for the calls made without a batch); allocates nothing.
pub(super) fn no_frames() -> TxBatch<Vec<u8>> {
    TxBatch::default()
}

/// The one place a `Conn` is made for an application callback: the
/// connection as the application may use it, its state, and the shard's
/// `Sender` over the lent frames for `Conn::send_with`.
pub(super) fn call<S, F: AsMut<[u8]>, R>(mut out: Sender<'_, F>, id: ConnId, conn: Handle<'_>, state: &mut S, f: impl FnOnce(&mut Conn<'_, S>) -> R) -> R {
    f(&mut Conn::with_frames(id, conn, state, &mut out))
}

impl<A: App> Shard<A> {
    /// Runs `f` on a connection, as the application sees it.
    pub fn with_conn<R>(&mut self, id: ConnId, f: impl FnOnce(&mut Conn<'_, A::State>) -> R) -> Option<R> {
        self.with_conn_tx(Instant::ZERO, id, &mut no_frames(), f)
    }

    /// [`Shard::with_conn`] with free TX frames lent: `Conn::send_with`
    /// in `f` may write straight into them (see [`send`]); the runtime
    /// submits the frames filled.
    pub fn with_conn_tx<F: AsMut<[u8]>, R>(&mut self, now: Instant, id: ConnId, tx: &mut TxBatch<F>, f: impl FnOnce(&mut Conn<'_, A::State>) -> R) -> Option<R> {
        let before = self.begin_call(id)?;
        let e = self.table.get_mut(id)?;
        let r = call(Sender::new(&self.cfg, &self.arp, &mut self.stats, &mut Io { now, tx }), id, Handle::new(&mut e.conn), &mut e.state, f);
        self.touch(id);
        self.end_call(id, before);
        Some(r)
    }

    /// Offers a connection's buffered received data to the application
    /// again, for an application that left data unread (`on_data` returned
    /// less than it was given) and is ready for it now. Reading frees receive
    /// memory and reopens the window.
    pub fn resume_reading(&mut self, now: Instant, id: ConnId, app: &mut A) {
        let Some(before) = self.begin_call(id) else { return };
        let io = &mut Io { now, tx: &mut no_frames() };
        self.offer_buffered(io, id, app);
        self.after_io(io, id, app);
        self.end_call(id, before);
    }

    /// Runs the application callbacks for a connection's events and keeps
    /// its bookkeeping (dirty list, timer, TIME_WAIT count) current.
    pub(super) fn after_io<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, id: ConnId, app: &mut A) {
        loop {
            let Some(e) = self.table.get_mut(id) else { return };
            let Some(ev) = e.conn.poll_event() else { break };
            match ev {
                Event::Connected => {
                    if e.half_open {
                        e.half_open = false;
                        self.accept.established(e.conn.local().port(), id);
                    }
                    e.announced = true;
                    e.connecting = false;
                    let passive = e.passive;
                    call(Sender::new(&self.cfg, &self.arp, &mut self.stats, io), id, Handle::new(&mut e.conn), &mut e.state, |c| {
                        if passive {
                            app.on_accept(c);
                        } else {
                            app.on_connected(c);
                        }
                    });
                    // Data that arrived with the handshake waits in the buffer.
                    self.offer_buffered(io, id, app);
                }
                Event::Readable => self.offer_buffered(io, id, app),
                Event::Writable => {
                    // Data the application left unread for lack of send space
                    // (an echo) is offered again now that there is space;
                    // then `on_writable`, which so sees the receive queue as
                    // it is (an echo whose peer has closed closes there once
                    // it has read everything).
                    self.offer_buffered(io, id, app);
                    if let Some(e) = self.table.get_mut(id) {
                        call(Sender::new(&self.cfg, &self.arp, &mut self.stats, io), id, Handle::new(&mut e.conn), &mut e.state, |c| app.on_writable(c));
                    }
                }
                Event::PeerClosed => {
                    // Anything still buffered comes before the FIN.
                    self.offer_buffered(io, id, app);
                    if let Some(e) = self.table.get_mut(id) {
                        call(Sender::new(&self.cfg, &self.arp, &mut self.stats, io), id, Handle::new(&mut e.conn), &mut e.state, |c| app.on_peer_closed(c));
                    }
                }
                Event::Closed(_) => {
                    if e.half_open {
                        e.half_open = false;
                        self.accept.half_open_closed(e.conn.local().port());
                    }
                }
            }
        }
        self.touch(id);
        self.account_time_wait(io.now, id, app);
    }

    /// Offers buffered received data to the application (copied out of the
    /// ring into scratch, so the callback may use the connection freely).
    pub(super) fn offer_buffered<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, id: ConnId, app: &mut A) {
        let Some(e) = self.table.get_mut(id) else { return };
        if !e.announced {
            return;
        }
        loop {
            let (a, b) = e.conn.recv_slices();
            if a.is_empty() {
                return;
            }
            self.scratch.clear();
            self.scratch.extend_from_slice(a);
            self.scratch.extend_from_slice(b);
            e.conn.begin_read();
            let scratch = &self.scratch;
            let n = call(Sender::new(&self.cfg, &self.arp, &mut self.stats, io), id, Handle::new(&mut e.conn), &mut e.state, |c| app.on_data(c, scratch)).min(scratch.len());
            e.conn.end_read(n);
            if n == 0 {
                return;
            }
        }
    }

    /// Marks a connection as possibly having output, and (re)schedules its timer.
    pub(super) fn touch(&mut self, id: ConnId) {
        let Some(e) = self.table.get_mut(id) else { return };
        if !e.dirty {
            e.dirty = true;
            self.dirty.push(id);
        }
        if let Some(at) = e.conn.poll_timeout() {
            if at.as_nanos() < e.scheduled {
                e.scheduled = at.as_nanos();
                self.wheel.schedule(id.0, at);
            }
        }
    }

    /// After output, a connection's timer may have moved earlier (a new RTO).
    pub(super) fn touch_timer_only(&mut self, id: ConnId) {
        let Some(e) = self.table.get_mut(id) else { return };
        if let Some(at) = e.conn.poll_timeout() {
            if at.as_nanos() < e.scheduled {
                e.scheduled = at.as_nanos();
                self.wheel.schedule(id.0, at);
            }
        }
    }
}
