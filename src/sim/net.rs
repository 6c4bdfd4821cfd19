//! A network of TCP hosts joined by simulated links, on a virtual clock.
//!
//! Each host is a minimal demultiplexer around the engine: a table of
//! connections keyed by 4-tuple, an optional listener, and the RFC 9293
//! §3.10.7.1 reset for segments that match nothing. Frames on the links are
//! whole Ethernet/IPv4/TCP frames, so any run can be written to a pcap file.
//!
//! [`Network::step`] jumps the clock to the next thing that happens (a frame
//! arriving or a timer firing), delivers every frame due then as one batch,
//! and lets each connection send; runs therefore replay exactly for a seed.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use crate::sim::link::{Link, LinkConfig};
use crate::sim::pcap::PcapSink;
use crate::tcp::isn::IsnGenerator;
use crate::tcp::syncookie::SynCookies;
use crate::tcp::{reset_for, Config, Connection, Listener, ListenerConfig, RxBudget, SendError, State, SynOutcome};
use crate::time::{Duration, Instant};
use crate::wire::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const HEADROOM: usize = ETH_LEN + IP_LEN;
/// Room for one TCP segment at MTU 1500 (60-byte header + 1460 payload).
const MAX_SEGMENT: usize = 1500 - IP_LEN;

/// Identifies a connection: the host and its slot in that host's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    pub host: usize,
    pub slot: usize,
}

type Tuple = (u32, u16, u32, u16);

fn tuple(local: SocketAddrV4, remote: SocketAddrV4) -> Tuple {
    (u32::from(*local.ip()), local.port(), u32::from(*remote.ip()), remote.port())
}

/// A host's receive-memory limits, as a shard's (`stack::StackConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxLimits {
    /// Bytes received and not yet read, in order or not (`memory_limit`).
    pub memory: usize,
    /// Out-of-order bytes held (`reassembly_limit`).
    pub reassembly: usize,
}

/// Per-host counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    pub frames_in: u64,
    pub bad_frames: u64,
    pub resets_sent: u64,
    pub unmatched: u64,
    /// Segments for a connection that look like zero-window or keepalive
    /// probes: no payload, no SYN/FIN/RST, SEG.SEQ = RCV.NXT − 1.
    pub probes_in: u64,
}

struct Slot {
    conn: Box<Connection>,
    /// Created by the listener and not yet ESTABLISHED (counts in its SYN queue).
    half_open: bool,
    /// Reached by the listener's accept queue.
    accepted: bool,
}

/// One simulated host: a MAC, an IPv4 address, connections and a listener.
pub struct Host {
    pub mac: EthernetAddress,
    pub ip: Ipv4Addr,
    config: Arc<Config>,
    isn: IsnGenerator,
    slots: Vec<Slot>,
    table: BTreeMap<Tuple, usize>,
    listeners: BTreeMap<u16, Listener<usize>>,
    /// Replies sent without a connection (cookies, resets): (src, dst, frame).
    stateless: Vec<(Ipv4Addr, Ipv4Addr, Vec<u8>)>,
    pub stats: HostStats,
    /// A shard's receive-memory limits over all this host's connections
    /// (see [`Network::set_rx_memory`]); `None`: none beyond each
    /// connection's own receive buffer.
    rx_memory: Option<RxLimits>,
}

impl Host {
    fn new(index: usize, ip: Ipv4Addr, config: Arc<Config>, seed: u64) -> Host {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8] = index as u8;
        Host {
            mac: EthernetAddress([0x02, 0, 0, 0, 0, index as u8 + 1]),
            ip,
            config,
            isn: IsnGenerator::new(key),
            slots: Vec::new(),
            table: BTreeMap::new(),
            listeners: BTreeMap::new(),
            stateless: Vec::new(),
            stats: HostStats::default(),
            rx_memory: None,
        }
    }

    /// What a connection may still use of the host's receive memory, as a
    /// shard computes it (`stack::Shard::rx_budget`): the memory left, and
    /// past 3/4 of the limit a window that grows by at most 4 MSS.
    fn rx_budget(&self) -> RxBudget {
        let Some(limits) = self.rx_memory else { return RxBudget::UNLIMITED };
        let held: usize = self.slots.iter().map(|s| s.conn.recv_held()).sum();
        let ooo: usize = self.slots.iter().map(|s| s.conn.ooo_queue()).sum();
        let memory = limits.memory.saturating_sub(held);
        let window = if held >= limits.memory / 4 * 3 { memory.min(4 * usize::from(self.config.mss)) } else { usize::MAX };
        // The simulated host limits receive memory only; send buffers are
        // bounded by each connection's `send_buffer`.
        RxBudget { reassembly: limits.reassembly.saturating_sub(ooo), memory, window, send: usize::MAX }
    }

    fn insert(&mut self, conn: Box<Connection>, half_open: bool) -> usize {
        let key = tuple(conn.local(), conn.remote());
        let slot = self.slots.len();
        self.slots.push(Slot { conn, half_open, accepted: false });
        self.table.insert(key, slot);
        slot
    }

    /// Demultiplexes one TCP segment (RFC 9293 §3.10.7).
    fn handle_segment(&mut self, now: Instant, src: Ipv4Addr, dst: Ipv4Addr, seg: &TcpRepr<'_>) {
        let local = SocketAddrV4::new(dst, seg.dst_port);
        let remote = SocketAddrV4::new(src, seg.src_port);
        let key = tuple(local, remote);
        if let Some(&slot) = self.table.get(&key) {
            let conn = &mut self.slots[slot].conn;
            let f = seg.flags;
            if seg.payload.is_empty() && !(f.syn() || f.fin() || f.rst()) && conn.state().is_synchronized() && seg.seq == conn.rcv_nxt() - 1 {
                self.stats.probes_in += 1;
            }
            // RFC 6191: a new SYN may take over a TIME_WAIT 4-tuple.
            if conn.state() == State::TimeWait && conn.time_wait_accepts_syn(seg) {
                self.table.remove(&key);
            } else if conn.state() != State::Closed {
                self.feed(now, slot, seg);
                return;
            } else {
                self.table.remove(&key);
            }
        }
        if let Some(listener) = self.listeners.get_mut(&seg.dst_port) {
            let f = seg.flags;
            if f.syn() && !f.ack() && !f.rst() {
                let mut out = vec![0u8; HEADROOM + 60];
                match listener.on_syn(now, local, remote, seg, &mut out[HEADROOM..]) {
                    SynOutcome::Accept(conn) => {
                        self.insert(conn, true);
                    }
                    SynOutcome::Cookie(n) => {
                        out.truncate(HEADROOM + n);
                        self.stateless.push((dst, src, out));
                    }
                    SynOutcome::Drop => {}
                }
                return;
            }
            if let Some(conn) = listener.on_cookie_ack(now, local, remote, seg) {
                let slot = self.insert(conn, false);
                if let Some(l) = self.listeners.get_mut(&seg.dst_port) {
                    l.on_established(slot, false);
                }
                self.slots[slot].accepted = true;
                self.feed(now, slot, seg);
                return;
            }
        }
        self.stats.unmatched += 1;
        if let Some(rst) = reset_for(seg) {
            let mut out = vec![0u8; HEADROOM + rst.header_len()];
            rst.emit_header(&mut out[HEADROOM..]);
            TcpPacket::new_unchecked(&mut out[HEADROOM..]).fill_checksum(dst, src);
            self.stats.resets_sent += 1;
            self.stateless.push((dst, src, out));
        }
    }

    fn feed(&mut self, now: Instant, slot: usize, seg: &TcpRepr<'_>) {
        let s = &mut self.slots[slot];
        let was = s.conn.state();
        if was == State::SynReceived && seg.flags.ack() && s.half_open {
            if let Some(l) = self.listeners.get_mut(&s.conn.local().port()) {
                if !l.can_complete() {
                    return; // accept queue full: ignore the ACK, the peer resends
                }
            }
        }
        let budget = self.rx_budget();
        let s = &mut self.slots[slot];
        s.conn.set_rx_budget(budget);
        s.conn.handle_segment(now, seg);
        let state = s.conn.state();
        if s.half_open && state != State::SynReceived {
            s.half_open = false;
            if let Some(l) = self.listeners.get_mut(&s.conn.local().port()) {
                if state == State::Closed {
                    l.on_half_open_closed();
                } else {
                    l.on_established(slot, true);
                    s.accepted = true;
                }
            }
        }
    }
}

/// Two or more hosts on a shared virtual clock; `links[(a, b)]` carries a→b.
pub struct Network {
    now: Instant,
    hosts: Vec<Host>,
    links: BTreeMap<(usize, usize), Link>,
    pcap: Option<PcapSink<std::io::BufWriter<std::fs::File>>>,
    buf: Vec<u8>,
}

impl Network {
    /// Two hosts, 198.18.0.1 and 198.18.0.2, joined by a link per direction.
    pub fn pair(config_a: Config, config_b: Config, ab: LinkConfig, ba: LinkConfig, seed: u64) -> Network {
        let mut net = Network { now: Instant::ZERO, hosts: Vec::new(), links: BTreeMap::new(), pcap: None, buf: vec![0u8; HEADROOM + MAX_SEGMENT] };
        net.add_host(Ipv4Addr::new(198, 18, 0, 1), config_a, seed);
        net.add_host(Ipv4Addr::new(198, 18, 0, 2), config_b, seed);
        net.add_link(0, 1, ab, seed.wrapping_mul(3).wrapping_add(1));
        net.add_link(1, 0, ba, seed.wrapping_mul(5).wrapping_add(2));
        net
    }

    pub fn add_host(&mut self, ip: Ipv4Addr, config: Config, seed: u64) -> usize {
        let index = self.hosts.len();
        self.hosts.push(Host::new(index, ip, Arc::new(config), seed));
        index
    }

    pub fn add_link(&mut self, from: usize, to: usize, config: LinkConfig, seed: u64) {
        self.links.insert((from, to), Link::new(config, seed));
    }

    /// Limits the receive memory of all of a host's connections together,
    /// as a shard's `memory_limit` and `reassembly_limit` do: before every
    /// segment it feeds and every segment it sends, each connection learns
    /// what it may still use (its `RxBudget`). Windows are clamped from 3/4
    /// of the memory limit on, and data beyond the limits is dropped.
    /// `None` lifts the limits.
    pub fn set_rx_memory(&mut self, host: usize, limits: Option<RxLimits>) {
        self.hosts[host].rx_memory = limits;
    }

    pub fn link_mut(&mut self, from: usize, to: usize) -> &mut Link {
        self.links.get_mut(&(from, to)).expect("no such link")
    }

    pub fn link(&self, from: usize, to: usize) -> &Link {
        &self.links[&(from, to)]
    }

    /// Writes every frame sent from now on to a pcap file (Ethernet link type).
    pub fn capture(&mut self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        self.pcap = Some(PcapSink::create(path)?);
        Ok(())
    }

    pub fn now(&self) -> Instant {
        self.now
    }
    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index]
    }
    pub fn addr(&self, host: usize, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(self.hosts[host].ip, port)
    }

    pub fn listen(&mut self, host: usize, port: u16, config: ListenerConfig) {
        let h = &mut self.hosts[host];
        let mut key = [7u8; 16];
        key[0] = host as u8;
        let listener = Listener::new(SocketAddrV4::new(h.ip, port), config, h.config.clone(), h.isn.clone(), SynCookies::new(key));
        h.listeners.insert(port, listener);
    }

    pub fn has_listener(&self, host: usize, port: u16) -> bool {
        self.hosts[host].listeners.contains_key(&port)
    }

    pub fn listener(&self, host: usize, port: u16) -> &Listener<usize> {
        &self.hosts[host].listeners[&port]
    }

    /// Active open from `host:port` to `remote`.
    pub fn connect(&mut self, host: usize, port: u16, remote: SocketAddrV4) -> ConnId {
        let now = self.now;
        let h = &mut self.hosts[host];
        let local = SocketAddrV4::new(h.ip, port);
        let iss = h.isn.isn(now, local, remote);
        let ts = h.isn.ts_offset(local, remote);
        let conn = Connection::connect(h.config.clone(), local, remote, iss, ts, now);
        let slot = h.insert(Box::new(conn), false);
        ConnId { host, slot }
    }

    /// The next connection the listener on `port` completed.
    pub fn accept(&mut self, host: usize, port: u16) -> Option<ConnId> {
        let slot = self.hosts[host].listeners.get_mut(&port)?.accept()?;
        Some(ConnId { host, slot })
    }

    pub fn conn(&self, id: ConnId) -> &Connection {
        &self.hosts[id.host].slots[id.slot].conn
    }
    pub fn conn_mut(&mut self, id: ConnId) -> &mut Connection {
        &mut self.hosts[id.host].slots[id.slot].conn
    }
    /// Every connection of a host, in creation order.
    pub fn conns(&self, host: usize) -> impl Iterator<Item = (ConnId, &Connection)> {
        self.hosts[host].slots.iter().enumerate().map(move |(slot, s)| (ConnId { host, slot }, &*s.conn))
    }

    /// The application's `send_with` as a shard runs it (`stack::send`):
    /// when the connection can send new data at once, `f` writes straight
    /// into the segment being built, which goes on the link now; otherwise
    /// into the send buffer's free space. Returns how many bytes `f` wrote
    /// and whether they went out at once.
    pub fn send_with(&mut self, id: ConnId, max_len: usize, f: impl FnOnce(&mut [u8]) -> usize) -> Result<(usize, bool), SendError> {
        let now = self.now;
        let mut f = Some(f);
        let mut write = |buf: &mut [u8]| f.take().map_or(0, |f| f(buf));
        let budget = self.hosts[id.host].rx_budget();
        let conn = &mut self.hosts[id.host].slots[id.slot].conn;
        conn.set_rx_budget(budget);
        if let Some((len, n)) = conn.transmit_with(now, &mut self.buf[HEADROOM..], max_len, &mut write) {
            if n > 0 {
                let (src, dst) = (*conn.local().ip(), *conn.remote().ip());
                let mut frame = self.buf[..HEADROOM + len].to_vec();
                self.wrap(id.host, &mut frame, len, src, dst);
                self.transmit(id.host, dst, frame);
            }
            return Ok((n, true));
        }
        Ok((conn.send_with(max_len, &mut write)?, false))
    }

    /// Lets every connection send, putting its frames on the links.
    pub fn flush(&mut self) {
        let now = self.now;
        for h in 0..self.hosts.len() {
            let stateless = std::mem::take(&mut self.hosts[h].stateless);
            for (src, dst, mut frame) in stateless {
                let len = frame.len() - HEADROOM;
                self.wrap(h, &mut frame, len, src, dst);
                self.transmit(h, dst, frame);
            }
            for slot in 0..self.hosts[h].slots.len() {
                loop {
                    let budget = self.hosts[h].rx_budget();
                    let conn = &mut self.hosts[h].slots[slot].conn;
                    conn.set_rx_budget(budget);
                    let Some(len) = conn.poll_transmit(now, &mut self.buf[HEADROOM..]) else { break };
                    let (src, dst) = (*conn.local().ip(), *conn.remote().ip());
                    let mut frame = self.buf[..HEADROOM + len].to_vec();
                    self.wrap(h, &mut frame, len, src, dst);
                    self.transmit(h, dst, frame);
                }
            }
        }
    }

    fn wrap(&self, host: usize, frame: &mut [u8], tcp_len: usize, src: Ipv4Addr, dst: Ipv4Addr) {
        let ip = Ipv4Repr { src_addr: src, dst_addr: dst, protocol: IpProtocol::Tcp, payload_len: tcp_len, ttl: 64 };
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..]));
        let dst_mac = self.hosts.iter().find(|h| h.ip == dst).map(|h| h.mac).unwrap_or(EthernetAddress::BROADCAST);
        let eth = EthernetRepr { src_addr: self.hosts[host].mac, dst_addr: dst_mac, ethertype: EtherType::Ipv4 };
        eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    }

    fn transmit(&mut self, from: usize, dst: Ipv4Addr, frame: Vec<u8>) {
        if let Some(pcap) = &mut self.pcap {
            let _ = pcap.write(self.now, &frame);
        }
        let Some(to) = self.hosts.iter().position(|h| h.ip == dst) else { return };
        if let Some(link) = self.links.get_mut(&(from, to)) {
            link.send(self.now, frame);
        }
    }

    /// The next instant something happens, if anything is pending.
    pub fn next_event(&self) -> Option<Instant> {
        let links = self.links.values().filter_map(|l| l.next_delivery());
        let timers = self.hosts.iter().flat_map(|h| h.slots.iter().filter_map(|s| s.conn.poll_timeout()));
        links.chain(timers).min()
    }

    /// Sends what is ready, then advances to the next event and processes it:
    /// every frame due is delivered (one batch per host), every timer due
    /// fires. Returns false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(at) = self.next_event() else { return false };
        if at > self.now {
            self.now = at;
        }
        let now = self.now;
        let keys: Vec<(usize, usize)> = self.links.keys().copied().collect();
        for (from, to) in keys {
            while let Some(frame) = self.links.get_mut(&(from, to)).and_then(|l| l.recv(now)) {
                self.deliver(to, &frame);
            }
        }
        for h in &mut self.hosts {
            for s in &mut h.slots {
                if s.conn.poll_timeout().is_some_and(|t| t <= now) {
                    s.conn.handle_timeout(now);
                    if s.half_open && s.conn.state() == State::Closed {
                        s.half_open = false;
                        if let Some(l) = h.listeners.get_mut(&s.conn.local().port()) {
                            l.on_half_open_closed();
                        }
                    }
                }
            }
        }
        self.flush();
        true
    }

    fn deliver(&mut self, to: usize, frame: &[u8]) {
        let host = &mut self.hosts[to];
        host.stats.frames_in += 1;
        let Some((src, dst, tcp)) = parse_tcp_frame(frame) else {
            host.stats.bad_frames += 1;
            return;
        };
        if dst != host.ip {
            host.stats.bad_frames += 1;
            return;
        }
        let Ok(packet) = TcpPacket::new_checked(tcp) else {
            host.stats.bad_frames += 1;
            return;
        };
        let Ok(seg) = TcpRepr::parse(&packet, src, dst, true) else {
            host.stats.bad_frames += 1;
            return;
        };
        host.handle_segment(self.now, src, dst, &seg);
    }

    /// Processes everything that happens up to and including `until`: every
    /// frame due is delivered and every timer due fires, in steps, and what
    /// they make the connections send goes on the links. Then the clock
    /// stands at `until` (if it was earlier), so an application can act at
    /// a time of its own choosing, between events. Returns the number of
    /// steps taken.
    ///
    /// Panics if more than a million steps happen without the clock moving:
    /// something is rescheduled for a time already due, again and again.
    pub fn advance_to(&mut self, until: Instant) -> usize {
        let mut steps = 0;
        let mut same_instant = 0u32;
        loop {
            self.flush();
            match self.next_event() {
                Some(at) if at <= until => {
                    let before = self.now;
                    self.step();
                    steps += 1;
                    same_instant = if self.now == before { same_instant + 1 } else { 0 };
                    assert!(same_instant < 1_000_000, "livelock: events keep falling due at {:?}", self.now);
                }
                _ => break,
            }
        }
        if until > self.now {
            self.now = until;
        }
        steps
    }

    /// Steps until `done` holds or `limit` of virtual time passes; returns
    /// whether `done` held. `each` runs after every step (the application).
    pub fn run_until(&mut self, limit: Duration, mut each: impl FnMut(&mut Network) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            if each(self) {
                return true;
            }
            if !self.step() || self.now > deadline {
                return each(self);
            }
        }
    }
}

/// Ethernet → IPv4 → TCP bytes, checking the IP header; `None` if not TCP/IPv4.
pub fn parse_tcp_frame(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, &[u8])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let payload = &frame[ETH_LEN..];
    let ip = Ipv4Packet::new_checked(payload).ok()?;
    let repr = Ipv4Repr::parse(&ip, true).ok()?;
    if repr.protocol != IpProtocol::Tcp {
        return None;
    }
    let hl = ip.header_len() as usize;
    let tcp = payload.get(hl..hl + repr.payload_len)?;
    Some((repr.src_addr, repr.dst_addr, tcp))
}
