//! A network of xdptcp hosts joined by simulated links, on a virtual clock.
//!
//! Each host is a real [`Shard`] (the per-core stack production runs), with
//! its neighbours' MACs entered from the start (no ARP on the links) and a
//! recording application ([`SimApp`]); tests play the application on the
//! engine's calls through [`Network::conn_mut`]. Frames on the links are
//! the shard's whole Ethernet frames, so any run can be written to a pcap
//! file.
//!
//! [`Network::step`] jumps the clock to the next thing that happens (a frame
//! arriving or a shard's timer falling due), delivers every frame due then,
//! runs the shards' timers, and sends what they have; runs therefore replay
//! exactly for a seed.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::sim::host::{ConnMut, Host, SimApp};
use crate::sim::link::{Link, LinkConfig};
use crate::capture::PcapSink;
use crate::stack::{Shard, StackConfig, TxBatch};
use crate::tcp::{Config, Connection, Listener, ListenerConfig, SendError, SEND_MEMORY_FLOOR};
use crate::time::{Duration, Instant};
use crate::wire::{EtherType, EthernetAddress, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};

const ETH_LEN: usize = 14;
/// A UMEM frame: room for one Ethernet frame at MTU 1500.
const FRAME: usize = 2048;
/// How long a neighbour entry lives: longer than any simulated run, so the
/// pre-learnt MACs never expire and no ARP frame goes on a link.
const NEIGHBOR_TIMEOUT: Duration = Duration::from_secs(100_000_000);

/// Identifies a connection: the host, and the connection's place among
/// every connection that host has had (a shard reuses its own ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    pub host: usize,
    pub slot: usize,
}

/// A host's receive-memory limits, as a shard's (`stack::StackConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxLimits {
    /// Bytes received and not yet read, in order or not (`memory_limit`,
    /// see `Network::set_rx_memory`).
    pub memory: usize,
    /// Out-of-order bytes held (`reassembly_limit`).
    pub reassembly: usize,
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
        let mut net = Network { now: Instant::ZERO, hosts: Vec::new(), links: BTreeMap::new(), pcap: None, buf: vec![0u8; FRAME] };
        net.add_host(Ipv4Addr::new(198, 18, 0, 1), config_a, seed);
        net.add_host(Ipv4Addr::new(198, 18, 0, 2), config_b, seed);
        net.add_link(0, 1, ab, seed.wrapping_mul(3).wrapping_add(1));
        net.add_link(1, 0, ba, seed.wrapping_mul(5).wrapping_add(2));
        net
    }

    /// A host on 198.18.0.0/24 running a shard with TCP `config`; `seed`
    /// (and the host's index) key its ISNs and SYN cookies.
    pub fn add_host(&mut self, ip: Ipv4Addr, config: Config, seed: u64) -> usize {
        let index = self.hosts.len();
        let mut secret = [0u8; 16];
        secret[..8].copy_from_slice(&seed.to_le_bytes());
        secret[8] = index as u8;
        let mac = EthernetAddress([0x02, 0, 0, 0, 0, index as u8 + 1]);
        let mut cfg = StackConfig::new(mac, ip, 24);
        cfg.tcp = config;
        cfg.single_queue = true;
        cfg.neighbor_timeout = NEIGHBOR_TIMEOUT;
        self.hosts.push(Host::new(mac, ip, Shard::new(cfg, secret)));
        index
    }

    /// A link carrying `from`'s frames to `to`; `from` knows `to`'s MAC.
    pub fn add_link(&mut self, from: usize, to: usize, config: LinkConfig, seed: u64) {
        let (ip, mac) = (self.hosts[to].ip, self.hosts[to].mac);
        self.hosts[from].shard.learn_neighbor(self.now, ip, mac);
        self.hosts[from].timers_changed();
        self.links.insert((from, to), Link::new(config, seed));
    }

    /// Limits the receive memory of a host's connections together, with a
    /// shard's `memory_limit` and `reassembly_limit`: before every segment
    /// it feeds and every segment it sends, each connection learns what it
    /// may still use (its `RxBudget`); windows are clamped from 3/4 of the
    /// memory limit on, and data beyond the limits is dropped. A shard
    /// counts send buffers in `memory_limit` too, so a host's own sending
    /// would use up memory meant for receiving (and reset its orphans): the
    /// limit is raised by one connection's whole send buffer and the send
    /// floor every connection may hold (`SEND_MEMORY_FLOOR`), for hosts with
    /// one connection, as the property tests have. `None` restores a
    /// shard's defaults.
    pub fn set_rx_memory(&mut self, host: usize, limits: Option<RxLimits>) {
        let shard = &mut self.hosts[host].shard;
        let default = StackConfig::new(EthernetAddress([0; 6]), Ipv4Addr::UNSPECIFIED, 24);
        let send = shard.config().tcp.send_buffer + SEND_MEMORY_FLOOR;
        let (memory, reassembly) = limits.map_or((default.memory_limit, default.reassembly_limit), |l| (l.memory + send, l.reassembly));
        shard.set_memory_limits(memory, reassembly);
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
    /// A host's shard (its counters, connections and listeners).
    pub fn shard(&self, host: usize) -> &Shard<SimApp> {
        self.hosts[host].shard()
    }
    pub fn addr(&self, host: usize, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(self.hosts[host].ip, port)
    }

    pub fn listen(&mut self, host: usize, port: u16, config: ListenerConfig) {
        self.hosts[host].shard.listen_with(port, config);
    }

    pub fn has_listener(&self, host: usize, port: u16) -> bool {
        self.hosts[host].shard.listener_on(port).is_some()
    }

    pub fn listener(&self, host: usize, port: u16) -> &Listener<crate::app::ConnId> {
        self.hosts[host].shard.listener_on(port).expect("no listener on that port")
    }

    /// Active open from `host:port` to `remote` (`Shard::connect_from`).
    /// Panics if the shard refuses it (the 4-tuple in use, the table full).
    pub fn connect(&mut self, host: usize, port: u16, remote: SocketAddrV4) -> ConnId {
        let h = &mut self.hosts[host];
        let id = h.shard.connect_from(self.now, port, remote).expect("the shard refused the active open");
        h.timers_changed();
        h.sync();
        ConnId { host, slot: h.slot_of(id).expect("a new connection has a handle") }
    }

    /// The next connection the listener on `port` completed.
    pub fn accept(&mut self, host: usize, port: u16) -> Option<ConnId> {
        let slot = self.hosts[host].accept(port)?;
        Some(ConnId { host, slot })
    }

    /// A connection; once the shard has let it go, its last state.
    pub fn conn(&self, id: ConnId) -> &Connection {
        self.hosts[id.host].conn(id.slot)
    }
    /// A connection, to call the engine directly (accounted by its shard).
    pub fn conn_mut(&mut self, id: ConnId) -> ConnMut<'_> {
        self.hosts[id.host].conn_mut(id.slot)
    }
    /// Every connection a host has had, in the order they appeared.
    pub fn conns(&self, host: usize) -> impl Iterator<Item = (ConnId, &Connection)> {
        let h = &self.hosts[host];
        (0..h.slots()).map(move |slot| (ConnId { host, slot }, h.conn(slot)))
    }

    /// The application's `Conn::send_with` on the shard, with TX frames
    /// lent (`Shard::with_conn_tx`): when the connection can send new data
    /// at once, `f` writes straight into the frame, which goes on the link
    /// now; otherwise into the send buffer's free space. Returns how many
    /// bytes `f` wrote and whether they went out at once.
    pub fn send_with(&mut self, id: ConnId, max_len: usize, f: impl FnOnce(&mut [u8]) -> usize) -> Result<(usize, bool), SendError> {
        let now = self.now;
        let host = &mut self.hosts[id.host];
        let Some(shard_id) = host.live_id(id.slot) else {
            return host.conn_mut(id.slot).send_with(max_len, f).map(|n| (n, false));
        };
        // As many frames as a runtime's batch lends: the direct path may fill several.
        let mut tx: TxBatch<Vec<u8>> = TxBatch::with_capacity(crate::sim::tx::MAX_LENT);
        for _ in 0..crate::sim::tx::MAX_LENT {
            tx.lend(vec![0u8; FRAME]);
        }
        let result = host.shard.with_conn_tx(now, shard_id, &mut tx, |c| c.send_with(max_len, f)).expect("a live handle's connection");
        host.timers_changed();
        host.sync();
        let mut direct = false;
        for (mut frame, n) in tx.drain_filled() {
            frame.truncate(n);
            direct = true;
            self.transmit(id.host, frame);
        }
        result.map(|n| (n, direct))
    }

    /// Lets every shard send, putting its frames on the links.
    pub fn flush(&mut self) {
        let now = self.now;
        for h in 0..self.hosts.len() {
            // Nothing queued, no connection touched: `poll_transmit` would
            // return `None` and change nothing.
            if !self.hosts[h].shard.wants_transmit() {
                continue;
            }
            while let Some(n) = self.hosts[h].shard.poll_transmit(now, &mut self.buf) {
                let frame = self.buf[..n].to_vec();
                self.transmit(h, frame);
            }
            self.hosts[h].timers_changed();
            self.hosts[h].sync();
        }
    }

    /// Puts a frame on the link to the host its destination MAC names (on
    /// every link out of `from` if broadcast).
    fn transmit(&mut self, from: usize, frame: Vec<u8>) {
        if let Some(pcap) = &mut self.pcap {
            let _ = pcap.write(self.now, &frame);
        }
        let Some(dst) = frame.get(..6).map(|m| EthernetAddress([m[0], m[1], m[2], m[3], m[4], m[5]])) else { return };
        if dst.is_broadcast() {
            for ((_, to), link) in self.links.range_mut((from, 0)..=(from, usize::MAX)) {
                if *to != from {
                    link.send(self.now, frame.clone());
                }
            }
            return;
        }
        let Some(to) = self.hosts.iter().position(|h| h.mac == dst) else { return };
        if let Some(link) = self.links.get_mut(&(from, to)) {
            link.send(self.now, frame);
        }
    }

    /// The next instant something happens, if anything is pending: a frame
    /// arriving, or a shard having timer work (`Shard::poll_timeout`).
    pub fn next_event(&self) -> Option<Instant> {
        let links = self.links.values().filter_map(|l| l.next_delivery());
        let timers = self.hosts.iter().filter_map(|h| h.poll_timeout());
        links.chain(timers).min()
    }

    /// Sends what is ready, then advances to the next event and processes it:
    /// every frame due is delivered, every shard's due timers fire. Returns
    /// false when nothing is left to happen.
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
            if h.poll_timeout().is_some_and(|t| t <= now) {
                h.shard.handle_timeout(now, &mut h.app);
                h.timers_changed();
                h.sync();
            }
        }
        self.flush();
        true
    }

    fn deliver(&mut self, to: usize, frame: &[u8]) {
        let now = self.now;
        let host = &mut self.hosts[to];
        host.stats.frames_in += 1;
        if is_probe(&host.shard, frame) {
            host.stats.probes_in += 1;
        }
        host.shard.handle_frame(now, frame, &mut host.app);
        host.timers_changed();
        host.sync();
    }

    /// Processes everything that happens up to and including `until`: every
    /// frame due is delivered and every timer due fires, in steps, and what
    /// they make the shards send goes on the links. Then the clock stands at
    /// `until` (if it was earlier), so an application can act at a time of
    /// its own choosing, between events. Returns the number of steps taken.
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

/// Whether `frame` is a segment for one of `shard`'s synchronized
/// connections that looks like a zero-window or keepalive probe: no
/// payload, no SYN/FIN/RST, SEG.SEQ = RCV.NXT − 1 (read before the shard
/// sees it).
fn is_probe(shard: &Shard<SimApp>, frame: &[u8]) -> bool {
    let Some((src, dst, tcp)) = parse_tcp_frame(frame) else { return false };
    let Ok(seg) = TcpPacket::new_checked(tcp).and_then(|p| TcpRepr::parse(&p, src, dst, true)) else { return false };
    let f = seg.flags;
    if !seg.payload.is_empty() || f.syn() || f.fin() || f.rst() {
        return false;
    }
    let local = SocketAddrV4::new(dst, seg.dst_port);
    let remote = SocketAddrV4::new(src, seg.src_port);
    let Some(c) = shard.lookup(local, remote).and_then(|id| shard.connection(id)) else { return false };
    c.state().is_synchronized() && seg.seq == c.rcv_nxt() - 1
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
