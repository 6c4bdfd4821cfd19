//! Receive-side scaling as a NIC does it: the Toeplitz hash, and the choice
//! of an active open's source port whose replies the NIC steers to the
//! opening core. Pure: no I/O, no clock, no `unsafe`.
//!
//! A NIC hashes each received TCP/IPv4 packet over the byte string
//! source address, destination address, source port, destination port (of
//! the packet as received, network byte order: Microsoft's RSS
//! specification, "RSS Hashing Functions") with a secret key, and takes the
//! RX queue from an indirection table: `indirection[hash % len]` (tables
//! are powers of two in practice, where that is the hash's low bits).
//!
//! The Toeplitz hash is linear over GF(2): the hash of `a ^ b` is the hash
//! of `a` xor the hash of `b` (inputs of equal length). So the hash of a
//! reply (remote address, local address, remote port, local port) splits
//! into a part fixed by the destination and a part of the local port alone,
//! and a source port can be tried with two table look-ups
//! ([`RssSelector::lands_here`]).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

/// Bytes hashed for TCP over IPv4: two addresses and two ports.
pub const IPV4_TCP_INPUT: usize = 12;
/// Bytes hashed for IPv4 without ports.
pub const IPV4_INPUT: usize = 8;

/// The 32 key bits starting at bit `i` (counted from the most significant
/// bit of `key[0]`); bits past the key's end read as zero, as the
/// specification's key register shifts zeros in.
fn window(key: &[u8], i: usize) -> u32 {
    let (byte, shift) = (i / 8, i % 8);
    let mut w = 0u64;
    for k in 0..5 {
        w = (w << 8) | u64::from(key.get(byte + k).copied().unwrap_or(0));
    }
    // `w` holds 40 bits; the window is the 32 of them from bit `shift` down.
    ((w >> (8 - shift)) & 0xffff_ffff) as u32
}

/// The Toeplitz hash of `input` under `key`, bit by bit, as the
/// specification's pseudocode states it: for every set input bit, from the
/// left, xor in the key's 32 bits at that position.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut hash = 0;
    for (n, byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window(key, n * 8 + bit);
            }
        }
    }
    hash
}

/// The bytes a NIC hashes for a TCP/IPv4 packet from `src` to `dst`.
pub fn ipv4_tcp_input(src: SocketAddrV4, dst: SocketAddrV4) -> [u8; IPV4_TCP_INPUT] {
    let mut b = [0u8; IPV4_TCP_INPUT];
    b[0..4].copy_from_slice(&src.ip().octets());
    b[4..8].copy_from_slice(&dst.ip().octets());
    b[8..10].copy_from_slice(&src.port().to_be_bytes());
    b[10..12].copy_from_slice(&dst.port().to_be_bytes());
    b
}

/// The Toeplitz hash with one look-up table per input byte: the hash of a
/// 12-byte input is 12 look-ups and xors (linearity: each byte's share is
/// independent of the others).
pub struct Toeplitz {
    key: Vec<u8>,
    /// `tables[n][v]`: the hash of an input that is zero but for byte `n`,
    /// which is `v`.
    tables: Box<[[u32; 256]; IPV4_TCP_INPUT]>,
}

impl Toeplitz {
    /// Tables for `key`, of any length (NICs report 40 bytes, some 52).
    pub fn new(key: &[u8]) -> Toeplitz {
        let mut tables = Box::new([[0u32; 256]; IPV4_TCP_INPUT]);
        for (n, table) in tables.iter_mut().enumerate() {
            for v in 1..256usize {
                // Built from the value without its lowest set bit, plus
                // that bit's own share (input bit 7 - tz of byte n).
                let low = v.trailing_zeros() as usize;
                table[v] = table[v & (v - 1)] ^ window(key, n * 8 + 7 - low);
            }
        }
        Toeplitz { key: key.to_vec(), tables }
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The hash of `input` (at most [`IPV4_TCP_INPUT`] bytes; longer inputs
    /// take the bitwise path).
    pub fn hash(&self, input: &[u8]) -> u32 {
        if input.len() > IPV4_TCP_INPUT {
            return toeplitz(&self.key, input);
        }
        input.iter().zip(self.tables.iter()).fold(0, |h, (&b, t)| h ^ t[usize::from(b)])
    }

    /// The hash of a TCP/IPv4 packet from `src` to `dst`.
    pub fn ipv4_tcp(&self, src: SocketAddrV4, dst: SocketAddrV4) -> u32 {
        self.hash(&ipv4_tcp_input(src, dst))
    }
}

impl fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Toeplitz {{ key: {} bytes }}", self.key.len())
    }
}

/// What a shard knows of the NIC's steering: the Toeplitz key, the
/// indirection table, its own RX queue, and whether TCP/IPv4 is hashed
/// over the ports too (the usual default) or over the addresses only.
/// Cheap to clone: the tables are shared.
#[derive(Clone)]
pub struct RssSelector {
    hash: Arc<Toeplitz>,
    indirection: Arc<[u32]>,
    queue: u32,
    ports: bool,
    /// Whether `queue` appears in the table at all (else no port helps).
    reachable: bool,
}

/// The part of a reply's hash that does not depend on the local port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyPrefix(u32);

impl RssSelector {
    /// `None` for an empty indirection table (nothing to steer by).
    pub fn new(key: &[u8], indirection: Vec<u32>, queue: u32, ports: bool) -> Option<RssSelector> {
        if indirection.is_empty() {
            return None;
        }
        let indirection: Arc<[u32]> = indirection.into();
        let reachable = indirection.contains(&queue);
        Some(RssSelector { hash: Arc::new(Toeplitz::new(key)), indirection, queue, ports, reachable })
    }

    /// The same steering, seen from another queue (shares the tables).
    pub fn for_queue(&self, queue: u32) -> RssSelector {
        RssSelector { queue, reachable: self.indirection.contains(&queue), ..self.clone() }
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }
    pub fn indirection(&self) -> &[u32] {
        &self.indirection
    }
    pub fn key(&self) -> &[u8] {
        self.hash.key()
    }
    /// Whether the NIC hashes TCP ports (else only addresses).
    pub fn hashes_ports(&self) -> bool {
        self.ports
    }
    /// Whether any packet can land on this queue.
    pub fn reachable(&self) -> bool {
        self.reachable
    }

    /// The NIC's hash of a received TCP/IPv4 packet from `src` to `dst`.
    pub fn rx_hash(&self, src: SocketAddrV4, dst: SocketAddrV4) -> u32 {
        if self.ports {
            self.hash.ipv4_tcp(src, dst)
        } else {
            self.hash.hash(&ipv4_tcp_input(src, dst)[..IPV4_INPUT])
        }
    }

    /// The RX queue a packet from `src` to `dst` lands on.
    pub fn rx_queue(&self, src: SocketAddrV4, dst: SocketAddrV4) -> u32 {
        self.queue_of(self.rx_hash(src, dst))
    }

    fn queue_of(&self, hash: u32) -> u32 {
        self.indirection[hash as usize % self.indirection.len()]
    }

    /// The share of a reply's hash (from `remote` to `local_ip`:port) that
    /// every local port has in common.
    pub fn reply_prefix(&self, remote: SocketAddrV4, local_ip: Ipv4Addr) -> ReplyPrefix {
        let b = ipv4_tcp_input(remote, SocketAddrV4::new(local_ip, 0));
        let n = if self.ports { IPV4_TCP_INPUT } else { IPV4_INPUT };
        ReplyPrefix(self.hash.hash(&b[..n]))
    }

    /// Whether replies to an open from `local_port` (with the destination
    /// and local address of `prefix`) land on this queue: two look-ups.
    pub fn lands_here(&self, prefix: ReplyPrefix, local_port: u16) -> bool {
        if !self.reachable {
            return false;
        }
        let [hi, lo] = local_port.to_be_bytes();
        let port = if self.ports { self.hash.tables[10][usize::from(hi)] ^ self.hash.tables[11][usize::from(lo)] } else { 0 };
        self.queue_of(prefix.0 ^ port) == self.queue
    }
}

impl fmt::Debug for RssSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RssSelector {{ queue: {}, key: {} bytes, indirection: {} entries, ports: {} }}",
            self.queue,
            self.hash.key().len(),
            self.indirection.len(),
            self.ports
        )
    }
}

#[cfg(test)]
mod tests;
