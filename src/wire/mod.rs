//! Wire formats: zero-copy packet views and plain `Repr` structs.
//!
//! Every format has two halves, after smoltcp:
//! - a view, `XxxPacket<T: AsRef<[u8]>>`, that reads and writes fields in place;
//! - a `XxxRepr`, a plain struct that is parsed from a view and emitted into one.
//!
//! # Contract
//! No input, however malformed, can make a parser in this module panic, read
//! out of bounds, or loop. Untrusted bytes enter only through
//! `XxxPacket::new_checked`, which validates every length the accessors rely
//! on; once `check_len()` has returned `Ok`, no accessor can panic.
//! `XxxPacket::new_unchecked` is for buffers we built ourselves.
//! `XxxRepr::parse` validates the semantics (checksums, option lists) on top.
//!
//! This is enforced by cargo-fuzz targets over every parser (`fuzz/`), a
//! property round trip (`Repr` → emit → parse → same `Repr`) and a
//! cross-check against the independent `etherparse` parser (`tests/wire_*`).

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use icmp::{IcmpEchoKind, IcmpEchoRepr, IcmpPacket};
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use std::net::Ipv4Addr;
pub use tcp::{SackBlocks, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr, TcpTimestamp};

/// The one error of the wire layer: the bytes are not a valid packet.
///
/// Callers count these; they never need to know more than "malformed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error;

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("malformed packet")
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

/// A byte range inside a header.
pub(crate) type Field = core::ops::Range<usize>;

/// Whether an Ethernet frame carries a pure ACK: IPv4/TCP with the ACK
/// flag, no payload and none of SYN, FIN, RST: the ACKs and window updates
/// whose loss the simulator and the impairment relay inject. Anything
/// unparseable is not one; no input makes it panic.
pub fn is_pure_ack(frame: &[u8]) -> bool {
    const ETH: usize = 14;
    if frame.len() < ETH + 20 || frame[12..14] != [0x08, 0x00] {
        return false;
    }
    let ip = &frame[ETH..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || ip[9] != 6 || ihl < 20 || total < ihl + 20 || total > ip.len() {
        return false;
    }
    let tcp = &ip[ihl..total];
    let doff = usize::from(tcp[12] >> 4) * 4;
    let flags = tcp[13];
    // FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10.
    doff >= 20 && tcp.len() == doff && flags & 0x10 != 0 && flags & 0x07 == 0
}
