//! The per-shard connection table: connections in a slab, found by 4-tuple
//! through a hash map with a random SipHash key (peers choose tuples, so an
//! unkeyed hash would let them aim collisions at one bucket).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::net::SocketAddrV4;

use slab::Slab;

use crate::app::ConnId;
use crate::tcp::Connection;

/// (local ip, local port, remote ip, remote port).
/// A 4-tuple packed into one integer: local address and port, remote
/// address and port (96 bits). Hashed in one call rather than four, which
/// showed in profiles of the per-segment path.
pub type Tuple = u128;

pub fn tuple(local: SocketAddrV4, remote: SocketAddrV4) -> Tuple {
    (u128::from(u32::from(*local.ip())) << 64)
        | (u128::from(local.port()) << 48)
        | (u128::from(u32::from(*remote.ip())) << 16)
        | u128::from(remote.port())
}

pub struct Entry<S> {
    pub conn: Connection,
    pub state: S,
    /// The deadline this entry has in the timer wheel (ns), or u64::MAX.
    pub scheduled: u64,
    /// In the dirty list: may have segments to send.
    pub dirty: bool,
    /// Created by a listener and still in its SYN queue.
    pub half_open: bool,
    /// The application was told about it (on_accept / on_connected).
    pub announced: bool,
    /// Counted in the TIME_WAIT total.
    pub in_time_wait: bool,
    /// Went through TIME_WAIT uncounted, closing at once (the cap was reached).
    pub tw_skipped: bool,
    /// Opened by a peer (on_accept) rather than by us (on_connected).
    pub passive: bool,
    /// An active open not connected yet: the application knows its id
    /// (from `connect`), so it gets `on_closed` if the attempt fails.
    pub connecting: bool,
}

pub struct ConnTable<S> {
    slab: Slab<Entry<S>>,
    index: HashMap<Tuple, u32, RandomState>,
    /// Entries removed so far: a port search that found nothing can tell
    /// whether anything has been freed since.
    removals: u64,
}

impl<S> Default for ConnTable<S> {
    fn default() -> Self {
        ConnTable { slab: Slab::new(), index: HashMap::with_hasher(RandomState::new()), removals: 0 }
    }
}

impl<S> ConnTable<S> {
    pub fn len(&self) -> usize {
        self.slab.len()
    }
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }
    pub fn lookup(&self, t: &Tuple) -> Option<ConnId> {
        self.index.get(t).map(|&i| ConnId(i))
    }
    pub fn insert(&mut self, entry: Entry<S>) -> ConnId {
        let t = tuple(entry.conn.local(), entry.conn.remote());
        let id = self.slab.insert(entry) as u32;
        self.index.insert(t, id);
        ConnId(id)
    }
    pub fn get(&self, id: ConnId) -> Option<&Entry<S>> {
        self.slab.get(id.0 as usize)
    }
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Entry<S>> {
        self.slab.get_mut(id.0 as usize)
    }
    pub fn removals(&self) -> u64 {
        self.removals
    }
    pub fn remove(&mut self, id: ConnId) -> Option<Entry<S>> {
        let entry = self.slab.try_remove(id.0 as usize)?;
        self.removals += 1;
        let t = tuple(entry.conn.local(), entry.conn.remote());
        if self.index.get(&t) == Some(&id.0) {
            self.index.remove(&t);
        }
        Some(entry)
    }
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Entry<S>)> {
        self.slab.iter().map(|(i, e)| (ConnId(i as u32), e))
    }
}
