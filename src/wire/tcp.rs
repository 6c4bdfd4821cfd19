//! TCP header and options (RFC 9293 §3.1, RFC 7323, RFC 2018).
//!
//!
//! Options are parsed per RFC 9293 §3.2: EOL ends the list, NOP pads, known
//! options must have their exact length, unknown ones are skipped by their
//! length, and a length below 2 or past the end makes the segment malformed.

use std::net::Ipv4Addr;

use super::checksum;
use super::{Error, Field, Result};

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A TCP sequence number: arithmetic modulo 2^32, compared within a window of
/// 2^31 (RFC 9293 §3.4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Signed distance from `other` to `self`: positive if `self` is after.
    #[inline]
    pub fn diff(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
    #[inline]
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self > other { self } else { other }
    }
    #[inline]
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self < other { self } else { other }
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

impl Add<usize> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn add(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs as u32))
    }
}

impl AddAssign<usize> for SeqNumber {
    #[inline]
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl Sub<usize> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn sub(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs as u32))
    }
}

impl Sub for SeqNumber {
    type Output = usize;
    /// The distance from `rhs` up to `self`; `self` must not be before `rhs`
    /// (saturates at zero if it is, rather than panicking).
    #[inline]
    fn sub(self, rhs: SeqNumber) -> usize {
        let d = self.diff(rhs);
        if d < 0 { 0 } else { d as usize }
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The TCP flags byte (plus nothing else: the NS bit is obsolete).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);

    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    #[inline]
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }
    pub fn fin(self) -> bool { self.contains(Self::FIN) }
    pub fn syn(self) -> bool { self.contains(Self::SYN) }
    pub fn rst(self) -> bool { self.contains(Self::RST) }
    pub fn psh(self) -> bool { self.contains(Self::PSH) }
    pub fn ack(self) -> bool { self.contains(Self::ACK) }
    pub fn urg(self) -> bool { self.contains(Self::URG) }
    pub fn ece(self) -> bool { self.contains(Self::ECE) }
    pub fn cwr(self) -> bool { self.contains(Self::CWR) }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(TcpFlags, &str); 8] = [
            (TcpFlags::SYN, "S"),
            (TcpFlags::FIN, "F"),
            (TcpFlags::RST, "R"),
            (TcpFlags::PSH, "P"),
            (TcpFlags::ACK, "."),
            (TcpFlags::URG, "U"),
            (TcpFlags::ECE, "E"),
            (TcpFlags::CWR, "W"),
        ];
        for (flag, name) in NAMES {
            if self.contains(flag) {
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

/// The RFC 7323 timestamp option.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TcpTimestamp {
    pub tsval: u32,
    pub tsecr: u32,
}

/// Up to four SACK blocks (RFC 2018 §3), each `[left, right)`.
/// Only three fit beside a timestamp option; `emit` writes as many as fit.
#[derive(Clone, Copy, Default)]
pub struct SackBlocks {
    len: u8,
    blocks: [(SeqNumber, SeqNumber); 4],
}

impl SackBlocks {
    pub const MAX: usize = 4;

    pub const fn new() -> SackBlocks {
        SackBlocks { len: 0, blocks: [(SeqNumber(0), SeqNumber(0)); 4] }
    }
    /// Appends a block; returns false (and drops it) when full.
    pub fn push(&mut self, left: SeqNumber, right: SeqNumber) -> bool {
        if (self.len as usize) < Self::MAX {
            self.blocks[self.len as usize] = (left, right);
            self.len += 1;
            true
        } else {
            false
        }
    }
    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_slice(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.blocks[..self.len as usize]
    }
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len as u8);
    }
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// Equal when the blocks in use are equal; slots past `len` don't count.
impl PartialEq for SackBlocks {
    fn eq(&self, other: &SackBlocks) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SackBlocks {}

impl fmt::Debug for SackBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice().iter()).finish()
    }
}

/// The options we understand. Unknown options are skipped when parsing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamp: Option<TcpTimestamp>,
    pub sack_blocks: SackBlocks,
}

/// A parsed TCP segment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNumber,
    /// Meaningful only when `flags` has ACK; emitted as-is either way.
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    /// The raw (unscaled) window field.
    pub window: u16,
    pub urgent: u16,
    pub options: TcpOptions,
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Sequence space the segment occupies: payload plus one for SYN and for FIN.
    pub fn segment_len(&self) -> usize {
        self.payload.len() + self.flags.syn() as usize + self.flags.fin() as usize
    }
}

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ: Field = 4..8;
    pub const ACK: Field = 8..12;
    pub const OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

pub const HEADER_LEN: usize = 20;
/// The largest header: 40 bytes of options.
pub const MAX_HEADER_LEN: usize = 60;

const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WS: u8 = 3;
const OPT_SACK_PERM: u8 = 4;
const OPT_SACK: u8 = 5;
const OPT_TS: u8 = 8;

/// A view of one TCP segment: the buffer holds exactly header and payload.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], f: Field) -> u16 {
    u16::from_be_bytes([b[f.start], b[f.start + 1]])
}

fn be32(b: &[u8], f: Field) -> u32 {
    u32::from_be_bytes([b[f.start], b[f.start + 1], b[f.start + 2], b[f.start + 3]])
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        let hl = self.header_len() as usize;
        if hl < HEADER_LEN || hl > len {
            return Err(Error);
        }
        Ok(())
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn src_port(&self) -> u16 {
        be16(self.b(), field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.b(), field::DST_PORT)
    }
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(be32(self.b(), field::SEQ))
    }
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(be32(self.b(), field::ACK))
    }
    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> u8 {
        (self.b()[field::OFFSET] >> 4) * 4
    }
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.b()[field::FLAGS])
    }
    pub fn window_len(&self) -> u16 {
        be16(self.b(), field::WINDOW)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.b(), field::CHECKSUM)
    }
    pub fn urgent_at(&self) -> u16 {
        be16(self.b(), field::URGENT)
    }
    pub fn options(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.header_len() as usize]
    }
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len() as usize..]
    }
    /// True if the checksum over the pseudo-header and the whole buffer holds.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.b();
        let acc = checksum::pseudo_header(src, dst, 6, b.len());
        checksum::fold(checksum::sum(acc, b)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    pub fn set_src_port(&mut self, v: u16) {
        self.bm()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_dst_port(&mut self, v: u16) {
        self.bm()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_seq_number(&mut self, v: SeqNumber) {
        self.bm()[field::SEQ].copy_from_slice(&v.0.to_be_bytes());
    }
    pub fn set_ack_number(&mut self, v: SeqNumber) {
        self.bm()[field::ACK].copy_from_slice(&v.0.to_be_bytes());
    }
    pub fn set_header_len(&mut self, len: u8) {
        self.bm()[field::OFFSET] = (len / 4) << 4;
    }
    pub fn set_flags(&mut self, f: TcpFlags) {
        self.bm()[field::FLAGS] = f.0;
    }
    pub fn set_window_len(&mut self, v: u16) {
        self.bm()[field::WINDOW].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_checksum(&mut self, v: u16) {
        self.bm()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_urgent_at(&mut self, v: u16) {
        self.bm()[field::URGENT].copy_from_slice(&v.to_be_bytes());
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len() as usize;
        &mut self.bm()[hl..]
    }
    /// Computes the checksum over the pseudo-header and the whole buffer.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let acc = checksum::pseudo_header(src, dst, 6, b.len());
        let c = !checksum::fold(checksum::sum(acc, b));
        self.set_checksum(c);
    }
}

impl TcpOptions {
    /// Parses an option list (RFC 9293 §3.2).
    pub fn parse(mut data: &[u8]) -> Result<TcpOptions> {
        // Fast path: NOP, NOP, timestamps (RFC 7323 Appendix A), which is
        // what every data segment from Linux carries.
        if let [OPT_NOP, OPT_NOP, OPT_TS, 10, a0, a1, a2, a3, b0, b1, b2, b3] = *data {
            return Ok(TcpOptions {
                timestamp: Some(TcpTimestamp { tsval: u32::from_be_bytes([a0, a1, a2, a3]), tsecr: u32::from_be_bytes([b0, b1, b2, b3]) }),
                ..TcpOptions::default()
            });
        }
        let mut opts = TcpOptions::default();
        while let Some(&kind) = data.first() {
            match kind {
                OPT_EOL => break,
                OPT_NOP => {
                    data = &data[1..];
                    continue;
                }
                _ => {}
            }
            let len = *data.get(1).ok_or(Error)? as usize;
            if len < 2 || len > data.len() {
                return Err(Error);
            }
            let body = &data[2..len];
            match (kind, len) {
                (OPT_MSS, 4) => opts.mss = Some(u16::from_be_bytes([body[0], body[1]])),
                // RFC 7323 §2.3: a shift above 14 is treated as 14.
                (OPT_WS, 3) => opts.window_scale = Some(body[0].min(14)),
                (OPT_SACK_PERM, 2) => opts.sack_permitted = true,
                (OPT_SACK, _) if (len - 2) % 8 == 0 && len > 2 => {
                    opts.sack_blocks.clear();
                    for b in body.chunks_exact(8) {
                        let l = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                        let r = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                        opts.sack_blocks.push(SeqNumber(l), SeqNumber(r));
                    }
                }
                (OPT_TS, 10) => {
                    opts.timestamp = Some(TcpTimestamp {
                        tsval: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                        tsecr: u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                    })
                }
                (OPT_MSS | OPT_WS | OPT_SACK_PERM | OPT_SACK | OPT_TS, _) => return Err(Error),
                _ => {} // unknown: skipped by its length
            }
            data = &data[len..];
        }
        Ok(opts)
    }

    /// Bytes of the options other than SACK blocks, as `emit` writes them.
    fn base_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        n += match (self.sack_permitted, self.timestamp.is_some()) {
            (true, true) | (false, true) => 12,
            (true, false) => 4,
            (false, false) => 0,
        };
        if self.window_scale.is_some() {
            n += 4;
        }
        n
    }

    /// SACK blocks that fit beside the other options in 40 bytes (three
    /// beside timestamps, four without).
    fn sack_room(&self) -> usize {
        (40usize.saturating_sub(self.base_len() + 4) / 8).min(self.sack_blocks.len())
    }

    /// Length of the option list as emitted, padded to 4 bytes.
    pub fn len(&self) -> usize {
        let blocks = self.sack_room();
        self.base_len() + if blocks > 0 { 4 + 8 * blocks } else { 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the options in Linux's order with NOP padding; `buf` must hold
    /// `self.len()` bytes.
    fn emit(&self, buf: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8], at: &mut usize| {
            buf[*at..*at + bytes.len()].copy_from_slice(bytes);
            *at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            put(&[OPT_MSS, 4, m[0], m[1]], &mut at);
        }
        match (self.sack_permitted, self.timestamp) {
            (true, Some(ts)) => {
                put(&[OPT_SACK_PERM, 2, OPT_TS, 10], &mut at);
                put(&ts.tsval.to_be_bytes(), &mut at);
                put(&ts.tsecr.to_be_bytes(), &mut at);
            }
            (true, None) => put(&[OPT_NOP, OPT_NOP, OPT_SACK_PERM, 2], &mut at),
            (false, Some(ts)) => {
                put(&[OPT_NOP, OPT_NOP, OPT_TS, 10], &mut at);
                put(&ts.tsval.to_be_bytes(), &mut at);
                put(&ts.tsecr.to_be_bytes(), &mut at);
            }
            (false, None) => {}
        }
        if let Some(ws) = self.window_scale {
            put(&[OPT_NOP, OPT_WS, 3, ws], &mut at);
        }
        let blocks = self.sack_room();
        if blocks > 0 {
            put(&[OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * blocks as u8], &mut at);
            for &(l, r) in &self.sack_blocks.as_slice()[..blocks] {
                put(&l.0.to_be_bytes(), &mut at);
                put(&r.0.to_be_bytes(), &mut at);
            }
        }
    }
}

impl<'a> TcpRepr<'a> {
    /// Parses a segment, verifying its checksum when asked. The packet must
    /// hold exactly one segment (the IP payload).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &TcpPacket<&'a T>, src: Ipv4Addr, dst: Ipv4Addr, verify_checksum: bool) -> Result<TcpRepr<'a>> {
        packet.check_len()?;
        // Port 0 is reserved and never valid on the wire.
        if packet.src_port() == 0 || packet.dst_port() == 0 {
            return Err(Error);
        }
        if verify_checksum && !packet.verify_checksum(src, dst) {
            return Err(Error);
        }
        let buffer: &'a T = packet.buffer;
        let bytes: &'a [u8] = buffer.as_ref();
        let hl = packet.header_len() as usize;
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: packet.seq_number(),
            ack: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window_len(),
            urgent: packet.urgent_at(),
            options: TcpOptions::parse(&bytes[HEADER_LEN..hl])?,
            payload: &bytes[hl..],
        })
    }

    /// Header length with options, padded to 4 bytes (at most 60).
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the header and options only (checksum 0); returns the header
    /// length. The caller appends the payload and then calls
    /// `TcpPacket::fill_checksum` over header and payload. `buf` must hold
    /// `header_len()` bytes.
    pub fn emit_header(&self, buf: &mut [u8]) -> usize {
        let hl = self.header_len();
        let mut p = TcpPacket::new_unchecked(&mut buf[..hl]);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq);
        p.set_ack_number(self.ack);
        p.set_header_len(hl as u8);
        p.set_flags(self.flags);
        p.set_window_len(self.window);
        p.set_checksum(0);
        p.set_urgent_at(self.urgent);
        self.options.emit(&mut buf[HEADER_LEN..hl]);
        hl
    }

    /// Writes header, options and payload into `packet` (which must hold
    /// `buffer_len()` bytes; only that many are written and checksummed).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>, src: Ipv4Addr, dst: Ipv4Addr, fill_checksum: bool) {
        let buf = packet.bm();
        let hl = self.emit_header(buf);
        let total = hl + self.payload.len();
        buf[hl..total].copy_from_slice(self.payload);
        if fill_checksum {
            TcpPacket::new_unchecked(&mut buf[..total]).fill_checksum(src, dst);
        }
    }
}
