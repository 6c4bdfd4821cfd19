//! One simulated host: a real [`Shard`], the application the simulator
//! plays on it, and the connections the tests refer to.
//!
//! The application ([`SimApp`]) reads nothing itself (`on_data` returns 0,
//! so received data stays in the connection's buffer) and only records what
//! the shard tells it: accepts and events. Tests play the application on
//! the engine's own calls through [`ConnMut`], which the shard accounts as
//! any call into a connection (`Shard::begin_external`).
//!
//! A shard forgets a connection once it is CLOSED and retired (or, in
//! TIME_WAIT, taken over by a new SYN), and reuses its id. Tests ask about
//! connections after that (why they closed, their counters), so each
//! connection the host has seen keeps a handle: the shard's id while the
//! connection lives, and a copy of its last state (its "tomb") once it has
//! reached TIME_WAIT or CLOSED, which answers for it once it is gone.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::{Deref, DerefMut};

use crate::app::{self, App, Conn};
use crate::stack::inspect::ExternalCall;
use crate::stack::Shard;
use crate::tcp::{Connection, Event, State};
use crate::time::Instant;
use crate::wire::{EthernetAddress, SeqNumber};

const EV_CONNECTED: u8 = 1;
const EV_READABLE: u8 = 2;
const EV_WRITABLE: u8 = 4;
const EV_PEER_CLOSED: u8 = 8;
const EV_CLOSED: u8 = 16;

/// Counts of what the host received, taken as frames arrive (a tap before
/// the shard); the shard's own counters are in `Shard::stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Frames delivered to the host.
    pub frames_in: u64,
    /// Segments for a connection that look like zero-window or keepalive
    /// probes: no payload, no SYN/FIN/RST, SEG.SEQ = RCV.NXT − 1.
    pub probes_in: u64,
}

/// The application the simulator runs on every shard: it records accepts
/// and events, and leaves received data buffered for the test to read.
#[derive(Debug, Default)]
pub struct SimApp {
    /// (connection, event bit) in callback order, since the last sync.
    events: Vec<(app::ConnId, u8)>,
    /// Connections passed to `on_accept` since the last sync.
    accepted: Vec<app::ConnId>,
}

impl App for SimApp {
    type State = ();
    fn on_accept(&mut self, c: &mut Conn<'_, ()>) {
        self.accepted.push(c.id());
        self.events.push((c.id(), EV_CONNECTED));
    }
    fn on_connected(&mut self, c: &mut Conn<'_, ()>) {
        self.events.push((c.id(), EV_CONNECTED));
    }
    fn on_data(&mut self, c: &mut Conn<'_, ()>, _data: &[u8]) -> usize {
        self.events.push((c.id(), EV_READABLE));
        0
    }
    fn on_writable(&mut self, c: &mut Conn<'_, ()>) {
        self.events.push((c.id(), EV_WRITABLE));
    }
    fn on_peer_closed(&mut self, c: &mut Conn<'_, ()>) {
        self.events.push((c.id(), EV_PEER_CLOSED));
    }
    // A close is read from the connection's state (`Host::sync`): the shard
    // reports TIME_WAIT as closed, the engine's event comes at CLOSED.
}

/// A connection as the simulator knows it.
struct Handle {
    id: app::ConnId,
    /// With the ISS, tells this connection from a later one given its id.
    local: SocketAddrV4,
    remote: SocketAddrV4,
    iss: SeqNumber,
    /// Events not yet polled (the engine's bits, `Connection::poll_event`).
    events: u8,
    closed_seen: bool,
    /// The last state seen in TIME_WAIT or CLOSED.
    tomb: Option<Box<Connection>>,
    /// The shard no longer has it: `tomb` answers for it.
    gone: bool,
}

impl Handle {
    fn is(&self, c: &Connection) -> bool {
        c.local() == self.local && c.remote() == self.remote && c.iss() == self.iss
    }
}

/// Whether a copy still shows what `c` shows: a connection in TIME_WAIT or
/// CLOSED changes only in its counters and its buffers (read by the test).
fn same_view(copy: &Connection, c: &Connection) -> bool {
    copy.state() == c.state() && copy.stats() == c.stats() && copy.recv_queue() == c.recv_queue() && copy.send_queue() == c.send_queue() && copy.ooo_queue() == c.ooo_queue()
}

/// One simulated host: a MAC, an IPv4 address, and a shard.
pub struct Host {
    pub mac: EthernetAddress,
    pub ip: Ipv4Addr,
    pub stats: HostStats,
    pub(super) shard: Shard<SimApp>,
    pub(super) app: SimApp,
    handles: Vec<Handle>,
    /// Shard id → handle, for the connections the shard still has.
    live: HashMap<u32, usize>,
    accept_queues: BTreeMap<u16, VecDeque<usize>>,
    /// Opens the shard had counted at the last sync.
    opens: u64,
    /// `Shard::poll_timeout` as of the last call into the shard (computed
    /// when first asked: the timer wheel's scan is not cheap).
    next_timeout: Cell<Option<Option<Instant>>>,
}

impl Host {
    pub(super) fn new(mac: EthernetAddress, ip: Ipv4Addr, shard: Shard<SimApp>) -> Host {
        Host {
            mac,
            ip,
            stats: HostStats::default(),
            shard,
            app: SimApp::default(),
            handles: Vec::new(),
            live: HashMap::new(),
            accept_queues: BTreeMap::new(),
            opens: 0,
            next_timeout: Cell::new(None),
        }
    }

    /// The host's shard (its counters, connections and listeners).
    pub fn shard(&self) -> &Shard<SimApp> {
        &self.shard
    }

    /// Catches up with the shard after a call into it: new connections get
    /// handles, recorded events and accepts go to theirs, connections in
    /// TIME_WAIT or CLOSED leave a copy, vanished ones are marked gone.
    pub(super) fn sync(&mut self) {
        let s = self.shard.stats();
        let opens = s.passive_opens + s.active_opens;
        if opens != self.opens {
            self.opens = opens;
            self.register_new();
        }
        for (id, bit) in std::mem::take(&mut self.app.events) {
            if let Some(&h) = self.live.get(&id.0) {
                self.handles[h].events |= bit;
            }
        }
        for id in std::mem::take(&mut self.app.accepted) {
            if let Some(&h) = self.live.get(&id.0) {
                let port = self.handles[h].local.port();
                self.accept_queues.entry(port).or_default().push_back(h);
            }
        }
        let shard = &self.shard;
        let handles = &mut self.handles;
        self.live.retain(|&raw, &mut h| {
            let handle = &mut handles[h];
            let Some(c) = shard.connection(app::ConnId(raw)).filter(|c| handle.is(c)) else {
                handle.gone = true;
                return false;
            };
            if c.state() == State::Closed && !handle.closed_seen {
                handle.closed_seen = true;
                handle.events |= EV_CLOSED;
            }
            if matches!(c.state(), State::TimeWait | State::Closed) {
                let stale = handle.tomb.as_ref().is_none_or(|t| !same_view(t, c));
                if stale {
                    handle.tomb = Some(Box::new(c.clone()));
                }
            }
            true
        });
    }

    /// Gives every connection the shard has and the host does not know a
    /// handle, in the shard's table order.
    fn register_new(&mut self) {
        let mut fresh = Vec::new();
        for (id, c) in self.shard.connections() {
            let known = self.live.get(&id.0).is_some_and(|&h| self.handles[h].is(c));
            if !known {
                fresh.push((id, c.local(), c.remote(), c.iss()));
            }
        }
        for (id, local, remote, iss) in fresh {
            if let Some(old) = self.live.insert(id.0, self.handles.len()) {
                self.handles[old].gone = true;
            }
            self.handles.push(Handle { id, local, remote, iss, events: 0, closed_seen: false, tomb: None, gone: false });
        }
    }

    /// After a call into the shard that may have changed its timers.
    pub(super) fn timers_changed(&mut self) {
        self.next_timeout.set(None);
    }

    /// When the shard next has timer work (`Shard::poll_timeout`).
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if let Some(t) = self.next_timeout.get() {
            return t;
        }
        let t = self.shard.poll_timeout();
        self.next_timeout.set(Some(t));
        t
    }

    /// The handle of shard connection `id` (after a sync).
    pub(super) fn slot_of(&self, id: app::ConnId) -> Option<usize> {
        self.live.get(&id.0).copied()
    }

    /// The next connection accepted on `port`.
    pub(super) fn accept(&mut self, port: u16) -> Option<usize> {
        self.accept_queues.get_mut(&port)?.pop_front()
    }

    pub(super) fn slots(&self) -> usize {
        self.handles.len()
    }

    /// The shard's id for a connection still there.
    pub(super) fn live_id(&self, slot: usize) -> Option<app::ConnId> {
        let h = &self.handles[slot];
        (!h.gone).then_some(h.id)
    }

    pub(super) fn conn(&self, slot: usize) -> &Connection {
        let h = &self.handles[slot];
        if h.gone {
            return h.tomb.as_deref().expect("a connection left the shard before TIME_WAIT or CLOSED");
        }
        self.shard.connection(h.id).expect("a live handle's connection")
    }

    pub(super) fn conn_mut(&mut self, slot: usize) -> ConnMut<'_> {
        let call = match self.handles[slot].gone {
            true => None,
            false => Some(self.shard.begin_external(self.handles[slot].id).expect("a live handle's connection")),
        };
        let timeout = self.conn(slot).poll_timeout();
        ConnMut { host: self, slot, call, timeout }
    }
}

/// A connection borrowed from the simulator to call the engine directly:
/// dereferences to the [`Connection`], and on drop ends the shard's
/// accounting of the call (`Shard::end_external`). [`ConnMut::poll_event`]
/// returns the connection's events as the engine raised them (the shard
/// has consumed the engine's own queue to call the application).
pub struct ConnMut<'a> {
    host: &'a mut Host,
    slot: usize,
    /// `None` for a connection the shard no longer has (its last state).
    call: Option<ExternalCall>,
    /// The connection's deadline before the call: the shard schedules a
    /// timer after it only if the deadline moved (`Shard::touch`).
    timeout: Option<Instant>,
}

impl ConnMut<'_> {
    /// The next event, in the engine's order (`Connection::poll_event`):
    /// Readable only while data is buffered.
    pub fn poll_event(&mut self) -> Option<Event> {
        let readable = self.recv_queue() > 0;
        let reason = self.close_reason();
        let events = &mut self.host.handles[self.slot].events;
        let mut take = |bit: u8| {
            let set = *events & bit != 0;
            *events &= !bit;
            set
        };
        if take(EV_CONNECTED) {
            return Some(Event::Connected);
        }
        if take(EV_READABLE) && readable {
            return Some(Event::Readable);
        }
        if take(EV_WRITABLE) {
            return Some(Event::Writable);
        }
        if take(EV_PEER_CLOSED) {
            return Some(Event::PeerClosed);
        }
        if take(EV_CLOSED) {
            return Some(Event::Closed(reason));
        }
        None
    }
}

impl Deref for ConnMut<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.host.conn(self.slot)
    }
}

impl DerefMut for ConnMut<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        match &self.call {
            Some(call) => self.host.shard.external_conn(call),
            None => self.host.handles[self.slot].tomb.as_deref_mut().expect("a gone connection's last state"),
        }
    }
}

impl Drop for ConnMut<'_> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            let id = call.id();
            self.host.shard.end_external(call);
            if self.host.shard.connection(id).map(|c| c.poll_timeout()) != Some(self.timeout) {
                self.host.timers_changed();
            }
            self.host.sync();
        }
    }
}
