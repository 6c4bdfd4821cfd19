//! What a test harness needs of a shard beyond the runtime's API: the
//! simulator (`sim::Network`) runs real shards and plays the application
//! on the engine's own calls (`Connection::send`, `recv_slices`, `consume`,
//! `close`, …), as its suites always have.
//!
//! Nothing here bypasses the shard's bookkeeping: a call into a connection
//! from outside ([`Shard::begin_external`] … [`Shard::end_external`]) is
//! accounted as one from a callback is (the budget handed over before, the
//! memory totals and orphan limits applied after, the connection touched so
//! its output is polled and its timer rescheduled).

use std::net::{Ipv4Addr, SocketAddrV4};

use super::memory::RxSnapshot;
use super::table::tuple;
use super::*;
use crate::tcp::ListenerConfig;
use crate::wire::EthernetAddress;

/// A call into one connection made from outside the shard, between
/// [`Shard::begin_external`] and [`Shard::end_external`].
#[must_use = "end the call with Shard::end_external, or the shard's totals go wrong"]
#[derive(Debug)]
pub struct ExternalCall {
    id: ConnId,
    before: RxSnapshot,
}

impl ExternalCall {
    /// The connection called.
    pub fn id(&self) -> ConnId {
        self.id
    }
}

impl<A: App> Shard<A> {
    /// Starts a call into connection `id` (hands it its memory budget and
    /// notes what it holds); `None` if there is no such connection.
    pub fn begin_external(&mut self, id: ConnId) -> Option<ExternalCall> {
        self.begin_call(id).map(|before| ExternalCall { id, before })
    }

    /// The connection of a call begun with [`Shard::begin_external`].
    pub fn external_conn(&mut self, call: &ExternalCall) -> &mut Connection {
        &mut self.table.get_mut(call.id).expect("a connection vanished during an external call").conn
    }

    /// Ends a call: touches the connection (its output is polled by the
    /// next `poll_transmit`, its timer rescheduled) and moves the shard's
    /// totals by what the call changed, applying the orphan limits.
    pub fn end_external(&mut self, call: ExternalCall) {
        self.touch(call.id);
        self.end_call(call.id, call.before);
    }

    /// Listens on `port` with its own backlog settings (`listen` uses
    /// `StackConfig::listener`).
    pub fn listen_with(&mut self, port: u16, config: ListenerConfig) {
        let default = std::mem::replace(&mut self.cfg.listener, config);
        self.listen(port);
        self.cfg.listener = default;
    }

    /// The listener on `port`, if any.
    pub fn listener_on(&self, port: u16) -> Option<&Listener<ConnId>> {
        self.accept.get(port)
    }

    /// Enters a neighbour into the cache, as an ARP reply would (for a
    /// simulated link whose peers are known from the start).
    pub fn learn_neighbor(&mut self, now: Instant, ip: Ipv4Addr, mac: EthernetAddress) {
        let waiting = self.arp.learn(now, ip, mac);
        self.release_waiting(waiting, Some(mac));
    }

    /// Changes `memory_limit` and `reassembly_limit` (see [`StackConfig`])
    /// from the next call on.
    pub fn set_memory_limits(&mut self, memory: usize, reassembly: usize) {
        self.cfg.memory_limit = memory;
        self.cfg.reassembly_limit = reassembly;
    }

    /// The connection with this 4-tuple, if any.
    pub fn lookup(&self, local: SocketAddrV4, remote: SocketAddrV4) -> Option<ConnId> {
        self.table.lookup(&tuple(local, remote))
    }
}
