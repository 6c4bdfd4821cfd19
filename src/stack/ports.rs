//! Active opens: source ports chosen as RFC 6056 §3.3.4 (algorithm 4)
//! recommends, over the stack's addresses, steered to this shard's queue
//! where the NIC's steering is known (else to ports this shard owns).

use std::net::SocketAddrV4;

use crate::app::{App, ConnId};
use crate::rss::RssSelector;
use crate::tcp::Connection;
use crate::time::Instant;

use super::table::tuple;
use super::{new_entry, ConnectError, Shard};

/// RFC 6056 §3.3.4's table of per-destination-group counters (its
/// TABLE_LENGTH): how many destinations can move their port searches on
/// independently of each other.
pub(super) const PORT_TABLE: usize = 256;

/// The port search's state.
pub(super) struct Ports {
    /// RFC 6056 algorithm 4's counters (`table[]`), indexed by the keyed
    /// hash G of the destination: where its next port search starts,
    /// after its keyed offset F.
    counters: [u32; PORT_TABLE],
    /// Which of our addresses active opens use now (see `connect`).
    pub next_addr: u32,
    /// A destination for which no steered port was free, and the table's
    /// removal count then: until a connection leaves the table none can be
    /// (short of a TIME_WAIT becoming reusable), so opens to it skip the
    /// steered search, which would scan the whole range each time.
    pub rss_exhausted: Option<(SocketAddrV4, u64)>,
}

impl Ports {
    pub fn new() -> Self {
        Ports { counters: [0; PORT_TABLE], next_addr: 0, rss_exhausted: None }
    }

    /// The next port to try in `lo .. lo + span` for a destination with
    /// keyed offset `offset` and counter `slot`: every call moves that
    /// counter on, so `span` calls try every port once.
    pub fn next(&mut self, lo: u16, span: u32, offset: u32, slot: usize) -> u16 {
        let k = self.counters[slot];
        self.counters[slot] = k.wrapping_add(1);
        lo + (offset.wrapping_add(k) % span) as u16
    }
}

impl<A: App> Shard<A> {

    /// Active open to `remote` from a free ephemeral port of one of our
    /// addresses, chosen as RFC 6056 §3.3.4 recommends (keyed per
    /// destination): the ports of the current address are used up before the
    /// next address is taken. With the NIC's steering known
    /// (`StackConfig::rss`), only ports whose replies land on this shard's
    /// queue are taken; if none is free, any free port is (and its replies
    /// rely on the hand-off between cores).
    pub fn connect(&mut self, now: Instant, remote: SocketAddrV4) -> Result<ConnId, ConnectError> {
        if let Some(rss) = self.cfg.rss.clone() {
            let known_full = self.ports.rss_exhausted == Some((remote, self.table.removals()));
            if rss.reachable() && !known_full {
                match self.open_any_port(now, remote, Some(&rss)) {
                    Err(ConnectError::NoPort) => self.ports.rss_exhausted = Some((remote, self.table.removals())),
                    Ok(id) => {
                        self.stats.active_opens_rss_steered += 1;
                        return Ok(id);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let id = self.open_any_port(now, remote, None)?;
        if !self.cfg.single_queue {
            self.stats.active_open_handoffs += 1;
        }
        Ok(id)
    }

    /// Tries the ephemeral ports of every address once, the current
    /// address first, each in the order RFC 6056 §3.3.4 (algorithm 4,
    /// "double-hash port selection") gives: from the destination's keyed
    /// offset F, plus a counter from a table indexed by a second keyed hash
    /// G, which every try moves on. So the ports towards one destination
    /// reveal nothing of those towards another, and successive opens to one
    /// destination continue where the last search stopped. With `rss`,
    /// only ports whose replies land on this queue are taken (checked before
    /// the table: two look-ups a port).
    fn open_any_port(&mut self, now: Instant, remote: SocketAddrV4, rss: Option<&RssSelector>) -> Result<ConnId, ConnectError> {
        let (lo, hi) = self.cfg.ephemeral_ports;
        let span = u32::from(hi.saturating_sub(lo)) + 1;
        let addresses = self.cfg.addresses.max(1);
        for _ in 0..addresses {
            let addr = self.cfg.address(self.ports.next_addr);
            let (offset, slot) = self.isn.port_hashes(addr, remote, PORT_TABLE);
            // The reply hash's share fixed by the destination and our address.
            let prefix = rss.map(|r| r.reply_prefix(remote, addr));
            for _ in 0..span {
                let port = self.ports.next(lo, span, offset, slot);
                if let (Some(rss), Some(p)) = (rss, prefix) {
                    if !rss.lands_here(p, port) {
                        continue;
                    }
                } else if self.cfg.cores.count > 1 && self.owner(SocketAddrV4::new(addr, port), remote) != self.cfg.cores.index {
                    // Replies may land on any queue: take a port whose
                    // tuple this shard owns, so the hand-off finds it.
                    continue;
                }
                match self.connect_local(now, SocketAddrV4::new(addr, port), remote) {
                    Ok(id) => return Ok(id),
                    Err(ConnectError::TableFull) => return Err(ConnectError::TableFull),
                    Err(_) => {}
                }
            }
            // Every port of this address is taken towards `remote`: the next.
            self.ports.next_addr = (self.ports.next_addr + 1) % addresses;
        }
        Err(ConnectError::NoPort)
    }

    /// Active open from a chosen source port (counted as steered when the
    /// NIC's steering is known and sends its replies here).
    pub fn connect_from(&mut self, now: Instant, port: u16, remote: SocketAddrV4) -> Result<ConnId, ConnectError> {
        let id = self.connect_local(now, SocketAddrV4::new(self.cfg.ip, port), remote)?;
        let steered = self.cfg.rss.as_ref().is_some_and(|r| r.lands_here(r.reply_prefix(remote, self.cfg.ip), port));
        if steered {
            self.stats.active_opens_rss_steered += 1;
        } else if !self.cfg.single_queue {
            self.stats.active_open_handoffs += 1;
        }
        Ok(id)
    }

    pub(super) fn connect_local(&mut self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> Result<ConnId, ConnectError> {
        if let Some(old) = self.table.lookup(&tuple(local, remote)) {
            if !self.can_reuse_time_wait(now, old) {
                return Err(ConnectError::NoPort);
            }
            self.stats.time_wait_reused += 1;
            self.drop_conn(old);
        }
        if self.table.len() >= self.cfg.max_connections {
            return Err(ConnectError::TableFull);
        }
        let iss = self.isn.isn(now, local, remote);
        let conn = Connection::connect(self.tcp.clone(), local, remote, iss, self.isn.ts_offset(local, remote), now);
        self.stats.active_opens += 1;
        let id = self.table.insert(new_entry(conn, false));
        self.touch(id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_tries_every_port_once_and_the_next_continues_where_it_stopped() {
        let mut p = Ports::new();
        let (lo, span) = (40_000u16, 100u32);
        let mut seen: Vec<u16> = (0..span).map(|_| p.next(lo, span, 77, 3)).collect();
        assert_eq!(seen[0], lo + 77, "from the keyed offset");
        let next = p.next(lo, span, 77, 3);
        assert_eq!(next, seen[0], "the counter wrapped the range");
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), span as usize);
        assert!(seen.iter().all(|&q| (lo..lo + span as u16).contains(&q)));
        // Another destination group has its own counter.
        assert_eq!(p.next(lo, span, 5, 4), lo + 5);
    }
}
