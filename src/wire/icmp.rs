//! ICMPv4 echo request and reply (RFC 792). Other ICMP messages parse to an
//! error: the stack counts and ignores them.

use super::checksum;
use super::{Error, Field, Result};

mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const SEQ: Field = 6..8;
    pub const DATA: usize = 8;
}

pub const HEADER_LEN: usize = field::DATA;
const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;

#[derive(Debug, Clone)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN { Err(Error) } else { Ok(()) }
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn msg_type(&self) -> u8 {
        self.b()[field::TYPE]
    }
    pub fn code(&self) -> u8 {
        self.b()[field::CODE]
    }
    pub fn checksum(&self) -> u16 {
        u16::from_be_bytes([self.b()[field::CHECKSUM.start], self.b()[field::CHECKSUM.start + 1]])
    }
    pub fn ident(&self) -> u16 {
        u16::from_be_bytes([self.b()[field::IDENT.start], self.b()[field::IDENT.start + 1]])
    }
    pub fn seq_no(&self) -> u16 {
        u16::from_be_bytes([self.b()[field::SEQ.start], self.b()[field::SEQ.start + 1]])
    }
    pub fn data(&self) -> &[u8] {
        &self.b()[field::DATA..]
    }
    /// The checksum covers the whole ICMP message (the buffer).
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(0, self.b())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    pub fn fill_checksum(&mut self) {
        let b = self.buffer.as_mut();
        b[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(b);
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IcmpEchoKind {
    Request,
    Reply,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IcmpEchoRepr<'a> {
    pub kind: IcmpEchoKind,
    pub ident: u16,
    pub seq_no: u16,
    pub data: &'a [u8],
}

impl<'a> IcmpEchoRepr<'a> {
    /// Parses an echo request or reply (code 0) with a valid checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &IcmpPacket<&'a T>) -> Result<IcmpEchoRepr<'a>> {
        packet.check_len()?;
        let kind = match (packet.msg_type(), packet.code()) {
            (ECHO_REQUEST, 0) => IcmpEchoKind::Request,
            (ECHO_REPLY, 0) => IcmpEchoKind::Reply,
            _ => return Err(Error),
        };
        if !packet.verify_checksum() {
            return Err(Error);
        }
        let buffer: &'a T = packet.buffer;
        Ok(IcmpEchoRepr { kind, ident: packet.ident(), seq_no: packet.seq_no(), data: &buffer.as_ref()[field::DATA..] })
    }
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }
    /// Writes the message and its checksum; `packet` must hold `buffer_len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut IcmpPacket<T>) {
        let len = self.buffer_len();
        {
            let b = &mut packet.buffer.as_mut()[..len];
            b[field::TYPE] = match self.kind {
                IcmpEchoKind::Request => ECHO_REQUEST,
                IcmpEchoKind::Reply => ECHO_REPLY,
            };
            b[field::CODE] = 0;
            b[field::IDENT].copy_from_slice(&self.ident.to_be_bytes());
            b[field::SEQ].copy_from_slice(&self.seq_no.to_be_bytes());
            b[field::DATA..].copy_from_slice(self.data);
        }
        let mut p = IcmpPacket::new_unchecked(&mut packet.buffer.as_mut()[..len]);
        p.fill_checksum();
    }
}
