//! Passive opens: the listeners, each with its SYN queue, accept queue and
//! SYN cookies (`tcp::Listener`), and the shard's side of a new
//! connection: a SYN accepted into the table as half-open, a cookie
//! SYN-ACK sent without state, a cookie ACK turned into a connection.

use std::collections::HashMap;
use std::net::SocketAddrV4;

use crate::app::{App, ConnId};
use crate::tcp::{Connection, Listener, SynOutcome};
use crate::time::Instant;
use crate::wire::TcpRepr;

use super::{new_entry, Io, Shard};

/// A SYN-ACK with options fits in this.
const SYN_ACK_ROOM: usize = 60;

/// The listeners, by port.
#[derive(Default)]
pub(super) struct Accept {
    listeners: HashMap<u16, Listener<ConnId>>,
}

impl Accept {
    pub fn insert(&mut self, port: u16, listener: Listener<ConnId>) {
        self.listeners.insert(port, listener);
    }

    /// Stops listening everywhere (new SYNs are reset).
    pub fn clear(&mut self) {
        self.listeners.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = &Listener<ConnId>> {
        self.listeners.values()
    }

    pub fn listens(&self, port: u16) -> bool {
        self.listeners.contains_key(&port)
    }

    /// A SYN to `local`: None when nobody listens there; else what the
    /// listener made of it (a cookie SYN-ACK's TCP bytes are in `out`).
    pub fn syn(&mut self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4, seg: &TcpRepr<'_>, out: &mut [u8]) -> Option<SynOutcome> {
        Some(self.listeners.get_mut(&local.port())?.on_syn(now, local, remote, seg, out))
    }

    /// An ACK to a listening port carrying a valid cookie: the connection.
    pub fn cookie_ack(&mut self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4, seg: &TcpRepr<'_>) -> Option<Box<Connection>> {
        self.listeners.get_mut(&local.port())?.on_cookie_ack(now, local, remote, seg)
    }

    /// Whether a half-open connection to `port` may complete (room in the
    /// accept queue; true when nobody listens there any more).
    pub fn can_complete(&mut self, port: u16) -> bool {
        self.listeners.get_mut(&port).is_none_or(|l| l.can_complete())
    }

    /// A half-open connection to `port` completed: it leaves the SYN
    /// queue, through the accept queue, to the application.
    pub fn established(&mut self, port: u16, id: ConnId) {
        if let Some(l) = self.listeners.get_mut(&port) {
            l.on_established(id, true);
            let _ = l.accept();
        }
    }

    /// A half-open connection to `port` closed before completing.
    pub fn half_open_closed(&mut self, port: u16) {
        if let Some(l) = self.listeners.get_mut(&port) {
            l.on_half_open_closed();
        }
    }
}

impl<A: App> Shard<A> {
    /// Accepts connections on `port`.
    pub fn listen(&mut self, port: u16) {
        let listener = Listener::new(
            SocketAddrV4::new(self.cfg.ip, port),
            self.cfg.listener,
            self.tcp.clone(),
            self.isn.clone(),
            crate::tcp::syncookie::SynCookies::new(self.cookie_key),
        );
        self.accept.insert(port, listener);
    }

    /// A segment that matched no connection, to a port we listen on: true
    /// if the listener settled it (a SYN taken, cookied, dropped or refused
    /// for lack of room; a cookie ACK turned into a connection).
    pub(super) fn try_accept<F: AsMut<[u8]>>(&mut self, io: &mut Io<'_, F>, local: SocketAddrV4, remote: SocketAddrV4, seg: &TcpRepr<'_>, app: &mut A) -> bool {
        if !self.accept.listens(local.port()) {
            return false;
        }
        let full = self.table.len() >= self.cfg.max_connections;
        let f = seg.flags;
        if f.syn() && !f.ack() && !f.rst() {
            if full {
                self.stats.refused_full += 1;
                return false;
            }
            let mut out = [0u8; SYN_ACK_ROOM];
            match self.accept.syn(io.now, local, remote, seg, &mut out) {
                Some(SynOutcome::Accept(conn)) => {
                    self.stats.passive_opens += 1;
                    let mut entry = new_entry(*conn, true);
                    entry.half_open = true;
                    let id = self.table.insert(entry);
                    self.touch(id);
                }
                Some(SynOutcome::Cookie(n)) => self.push_tcp_control(io.now, local, remote, |b| {
                    b[..n].copy_from_slice(&out[..n]);
                    n
                }),
                Some(SynOutcome::Drop) | None => {}
            }
            return true;
        }
        if full {
            return false;
        }
        let Some(conn) = self.accept.cookie_ack(io.now, local, remote, seg) else { return false };
        self.stats.passive_opens += 1;
        let id = self.table.insert(new_entry(*conn, true));
        // `on_accept` may send (or close): accounted as any call.
        if let Some(before) = self.begin_call(id) {
            self.after_io(io, id, app);
            self.end_call(id, before);
        }
        self.deliver(io, id, seg, app);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::isn::IsnGenerator;
    use crate::tcp::syncookie::SynCookies;
    use crate::tcp::{Config, ListenerConfig, SynCookieMode};
    use crate::wire::{SeqNumber, TcpFlags, TcpOptions};
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80);
    const REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000);

    fn accept(cookies: SynCookieMode) -> Accept {
        let mut a = Accept::default();
        let cfg = ListenerConfig { syn_cookies: cookies, ..ListenerConfig::default() };
        a.insert(80, Listener::new(LOCAL, cfg, Arc::new(Config::default()), IsnGenerator::new([1; 16]), SynCookies::new([2; 16])));
        a
    }

    fn syn() -> TcpRepr<'static> {
        TcpRepr {
            src_port: REMOTE.port(),
            dst_port: LOCAL.port(),
            seq: SeqNumber(1000),
            ack: SeqNumber(0),
            flags: TcpFlags::SYN,
            window: 65535,
            urgent: 0,
            options: TcpOptions { mss: Some(1460), ..TcpOptions::default() },
            payload: &[],
        }
    }

    #[test]
    fn a_syn_to_a_listener_is_taken_and_elsewhere_is_not_ours() {
        let mut a = accept(SynCookieMode::WhenFull);
        let mut out = [0u8; SYN_ACK_ROOM];
        assert!(matches!(a.syn(Instant::from_secs(1), LOCAL, REMOTE, &syn(), &mut out), Some(SynOutcome::Accept(_))));
        let elsewhere = SocketAddrV4::new(*LOCAL.ip(), 81);
        assert!(a.syn(Instant::from_secs(1), elsewhere, REMOTE, &syn(), &mut out).is_none());
        assert!(a.can_complete(80) && a.can_complete(81));
        a.clear();
        assert!(!a.listens(80));
    }

    #[test]
    fn with_cookies_always_a_syn_gets_a_stateless_syn_ack() {
        let mut a = accept(SynCookieMode::Always);
        let mut out = [0u8; SYN_ACK_ROOM];
        let Some(SynOutcome::Cookie(n)) = a.syn(Instant::from_secs(1), LOCAL, REMOTE, &syn(), &mut out) else { panic!("no cookie") };
        let p = crate::wire::TcpPacket::new_checked(&out[..n]).expect("a whole header");
        assert!(p.flags().syn() && p.flags().ack());
        assert_eq!(p.ack_number(), SeqNumber(1001));
    }
}
