//! What the NIC tells of its receive-side scaling, through the ethtool
//! ioctl (SIOCETHTOOL): the hash function, key and indirection table of the
//! default RSS context (ETHTOOL_GRSSH), and which fields it hashes for
//! TCP/IPv4 (ETHTOOL_GRXFH).
//!
//! The replies are parsed by plain functions over bytes ([`parse_rxfh`],
//! [`parse_rxfh_sizes`]), tested without a device; only [`read_rss`] makes
//! the system calls. A device without RSS (veth, most virtual devices)
//! answers EOPNOTSUPP: [`RssError::Unsupported`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::rss::RssSelector;

/// From linux/ethtool.h.
const ETHTOOL_GRSSH: u32 = 0x46;
const ETHTOOL_GRXFH: u32 = 0x29;
const TCP_V4_FLOW: u32 = 0x01;
const RXH_IP_SRC: u64 = 1 << 4;
const RXH_IP_DST: u64 = 1 << 5;
const RXH_L4_B_0_1: u64 = 1 << 6;
const RXH_L4_B_2_3: u64 = 1 << 7;
/// `ETH_RSS_HASH_TOP`: the Toeplitz hash (bit 0 of `hfunc`).
const ETH_RSS_HASH_TOP: u8 = 1 << 0;
const ETH_RSS_HASH_XOR: u8 = 1 << 1;
const ETH_RSS_HASH_CRC32: u8 = 1 << 2;

/// `struct ethtool_rxfh` up to its flexible array: cmd, rss_context,
/// indir_size, key_size (u32 each), hfunc, input_xfrm, two reserved bytes,
/// and a reserved u32.
const RXFH_HEADER: usize = 24;
/// Larger tables or keys than any NIC has are taken for a garbled reply.
const MAX_INDIR: u32 = 1 << 16;
const MAX_KEY: u32 = 1 << 10;

/// The hash function the NIC reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFunction {
    Toeplitz,
    Xor,
    Crc32,
    /// A value this code does not know (or none: 0).
    Unknown(u8),
}

impl HashFunction {
    fn from_hfunc(h: u8) -> HashFunction {
        match h {
            ETH_RSS_HASH_TOP => HashFunction::Toeplitz,
            ETH_RSS_HASH_XOR => HashFunction::Xor,
            ETH_RSS_HASH_CRC32 => HashFunction::Crc32,
            other => HashFunction::Unknown(other),
        }
    }

    pub fn name(&self) -> String {
        match self {
            HashFunction::Toeplitz => "toeplitz".into(),
            HashFunction::Xor => "xor".into(),
            HashFunction::Crc32 => "crc32".into(),
            HashFunction::Unknown(h) => format!("unknown (hfunc {h:#x})"),
        }
    }
}

/// The NIC's steering of received packets to RX queues (default context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssSteering {
    pub func: HashFunction,
    /// A transformation of the input before hashing (`input_xfrm`, e.g.
    /// symmetric xor); 0 when none, or on kernels without the field.
    pub input_xfrm: u8,
    pub key: Vec<u8>,
    /// `indirection[hash % len]` is the RX queue.
    pub indirection: Vec<u32>,
    /// The fields hashed for TCP/IPv4.
    pub tcp4: Tcp4Fields,
}

/// What the NIC hashes for TCP over IPv4 (ETHTOOL_GRXFH, TCP_V4_FLOW).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tcp4Fields {
    /// Both addresses and both ports: the usual default.
    AddressesAndPorts,
    /// Both addresses only: the port of an active open cannot steer.
    Addresses,
    /// Some other set of fields (`RXH_*` bits): not predicted.
    Other(u64),
    /// The device did not answer ETHTOOL_GRXFH.
    Unreported,
}

impl RssSteering {
    /// Whether a plain Toeplitz hash over the packet's fields predicts the
    /// queue: the function is Toeplitz, nothing transforms the input, and
    /// there is a key and a table.
    pub fn predictable(&self) -> bool {
        self.func == HashFunction::Toeplitz && self.input_xfrm == 0 && !self.key.is_empty() && !self.indirection.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RssError {
    #[error("the device does not report RSS ({0})")]
    Unsupported(io::Error),
    #[error("interface name {0:?} is too long")]
    Name(String),
    #[error("reading RSS through the ethtool ioctl failed: {0}")]
    Io(io::Error),
    #[error("the ethtool RSS reply is malformed: {0}")]
    Malformed(&'static str),
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A GRSSH request asking for `indir_size` table entries and `key_size`
/// key bytes (0 and 0: only the sizes).
pub fn rxfh_request(indir_size: u32, key_size: u32) -> Vec<u8> {
    let mut b = vec![0u8; RXFH_HEADER + 4 * indir_size as usize + key_size as usize];
    b[0..4].copy_from_slice(&ETHTOOL_GRSSH.to_ne_bytes());
    b[8..12].copy_from_slice(&indir_size.to_ne_bytes());
    b[12..16].copy_from_slice(&key_size.to_ne_bytes());
    b
}

/// The sizes from a GRSSH reply: (indirection entries, key bytes).
pub fn parse_rxfh_sizes(b: &[u8]) -> Result<(u32, u32), RssError> {
    let (Some(indir), Some(key)) = (u32_at(b, 8), u32_at(b, 12)) else { return Err(RssError::Malformed("short header")) };
    if indir > MAX_INDIR || key > MAX_KEY {
        return Err(RssError::Malformed("implausible table or key size"));
    }
    Ok((indir, key))
}

/// A full GRSSH reply: header, `indir_size` u32 entries, `key_size` bytes.
pub fn parse_rxfh(b: &[u8]) -> Result<RssSteering, RssError> {
    let (indir, key) = parse_rxfh_sizes(b)?;
    let (indir, key) = (indir as usize, key as usize);
    if b.len() < RXFH_HEADER + 4 * indir + key {
        return Err(RssError::Malformed("shorter than its sizes"));
    }
    let indirection = (0..indir).filter_map(|i| u32_at(b, RXFH_HEADER + 4 * i)).collect();
    let at = RXFH_HEADER + 4 * indir;
    Ok(RssSteering { func: HashFunction::from_hfunc(b[16]), input_xfrm: b[17], key: b[at..at + key].to_vec(), indirection, tcp4: Tcp4Fields::Unreported })
}

/// The fields of a GRXFH answer (its `data`) for TCP_V4_FLOW.
pub fn parse_rxfh_fields(data: u64) -> Tcp4Fields {
    let ips = RXH_IP_SRC | RXH_IP_DST;
    let ports = RXH_L4_B_0_1 | RXH_L4_B_2_3;
    match data {
        d if d == ips | ports => Tcp4Fields::AddressesAndPorts,
        d if d == ips => Tcp4Fields::Addresses,
        d => Tcp4Fields::Other(d),
    }
}

/// `struct ifreq` with the `ifr_data` member of its union (40 bytes on
/// 64-bit Linux).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 24 - std::mem::size_of::<usize>()],
}

/// The ethtool ioctl with `buf` as the command; errors as the kernel's.
fn ethtool(sock: &OwnedFd, iface: &str, buf: &mut [u8]) -> io::Result<()> {
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], data: buf.as_mut_ptr().cast(), _pad: [0; 24 - std::mem::size_of::<usize>()] };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name (checked
    // shorter than IFNAMSIZ by the caller) whose data pointer is `buf`,
    // alive and exclusively borrowed for the call; the kernel writes at
    // most the sizes the command in `buf` announces, which the callers
    // sized `buf` for.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req as *mut IfReq) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EOPNOTSUPP)
}

/// Reads `iface`'s RSS steering (in the calling thread's network
/// namespace). Needs no privilege beyond seeing the device.
pub fn read_rss(iface: &str) -> Result<RssSteering, RssError> {
    if iface.len() >= libc::IFNAMSIZ || iface.as_bytes().contains(&0) {
        return Err(RssError::Name(iface.into()));
    }
    // SAFETY: socket() takes no pointers; a non-negative result is a new
    // descriptor that nothing else owns, handed to OwnedFd at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(RssError::Io(io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by socket() and is owned by no one else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let classify = |e: io::Error| if unsupported(&e) { RssError::Unsupported(e) } else { RssError::Io(e) };
    let mut sizes = rxfh_request(0, 0);
    ethtool(&sock, iface, &mut sizes).map_err(classify)?;
    let (indir, key) = parse_rxfh_sizes(&sizes)?;
    let mut full = rxfh_request(indir, key);
    ethtool(&sock, iface, &mut full).map_err(classify)?;
    let mut steering = parse_rxfh(&full)?;
    // `struct ethtool_rxnfc` as GRXFH has always used it: cmd, flow_type,
    // data (the kernel copies no more for this command).
    let mut rxnfc = [0u8; 16];
    rxnfc[0..4].copy_from_slice(&ETHTOOL_GRXFH.to_ne_bytes());
    rxnfc[4..8].copy_from_slice(&TCP_V4_FLOW.to_ne_bytes());
    if ethtool(&sock, iface, &mut rxnfc).is_ok() {
        let data = u64::from_ne_bytes(rxnfc[8..16].try_into().expect("8 bytes"));
        steering.tcp4 = parse_rxfh_fields(data);
    }
    Ok(steering)
}

/// The NIC's receive steering of `iface`, read once: a selector for queue
/// 0 (`for_queue` gives the others) when the device reports a Toeplitz hash
/// that a plain hash over the packet predicts, and a line for the log
/// saying what active opens will do.
pub fn rss_steering(iface: &str) -> (Option<RssSelector>, String) {
    let handoff = "active opens rely on the cross-core hand-off";
    let s = match read_rss(iface) {
        Ok(s) => s,
        Err(RssError::Unsupported(e)) => {
            let why = if e.raw_os_error() == Some(libc::EOPNOTSUPP) { "EOPNOTSUPP".to_string() } else { e.to_string() };
            return (None, format!("RSS: not reported by {iface} ({why}); {handoff}"));
        }
        Err(e) => return (None, format!("RSS: cannot read the steering of {iface}: {e}; {handoff}")),
    };
    if !s.predictable() {
        let xfrm = if s.input_xfrm != 0 { format!(", input transformed ({:#x})", s.input_xfrm) } else { String::new() };
        return (
            None,
            format!(
                "RSS: {iface} hashes with {}{xfrm}, key {} B, {}-entry table: not predictable; {handoff}",
                s.func.name(),
                s.key.len(),
                s.indirection.len()
            ),
        );
    }
    let (ports, fields) = match s.tcp4 {
        Tcp4Fields::AddressesAndPorts => (true, ""),
        Tcp4Fields::Unreported => (true, " (TCP/IPv4 hash fields not reported; ports assumed hashed)"),
        Tcp4Fields::Addresses => (false, " over addresses only (ports cannot steer)"),
        Tcp4Fields::Other(bits) => {
            return (None, format!("RSS: {iface} hashes TCP/IPv4 over fields {bits:#x}, not addresses and ports; {handoff}"));
        }
    };
    let line = format!("RSS: toeplitz key {} B, {}-entry table{fields}; active opens choose ports for their queue", s.key.len(), s.indirection.len());
    (RssSelector::new(&s.key, s.indirection, 0, ports), line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GRSSH reply as the kernel writes it.
    fn reply(hfunc: u8, xfrm: u8, table: &[u32], key: &[u8]) -> Vec<u8> {
        let mut b = rxfh_request(table.len() as u32, key.len() as u32);
        b[16] = hfunc;
        b[17] = xfrm;
        for (i, q) in table.iter().enumerate() {
            b[RXFH_HEADER + 4 * i..RXFH_HEADER + 4 * i + 4].copy_from_slice(&q.to_ne_bytes());
        }
        let at = RXFH_HEADER + 4 * table.len();
        b[at..].copy_from_slice(key);
        b
    }

    #[test]
    fn request_layout() {
        let r = rxfh_request(128, 40);
        assert_eq!(r.len(), 24 + 512 + 40);
        assert_eq!(u32_at(&r, 0), Some(0x46));
        assert_eq!(parse_rxfh_sizes(&r).unwrap(), (128, 40));
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    #[test]
    fn parses_a_toeplitz_reply() {
        let b = reply(1, 0, &[0, 1, 1, 0], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let s = parse_rxfh(&b).unwrap();
        assert_eq!(s.func, HashFunction::Toeplitz);
        assert_eq!(s.indirection, vec![0, 1, 1, 0]);
        assert_eq!(s.key, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(s.predictable());
    }

    #[test]
    fn other_functions_and_transforms_are_not_predictable() {
        assert_eq!(parse_rxfh(&reply(2, 0, &[0], &[1])).unwrap().func, HashFunction::Xor);
        assert_eq!(parse_rxfh(&reply(4, 0, &[0], &[1])).unwrap().func, HashFunction::Crc32);
        assert_eq!(parse_rxfh(&reply(0, 0, &[0], &[1])).unwrap().func, HashFunction::Unknown(0));
        assert!(!parse_rxfh(&reply(2, 0, &[0], &[1])).unwrap().predictable());
        // Symmetric-xor input transformation (RXH_XFRM_SYM_XOR).
        assert!(!parse_rxfh(&reply(1, 1, &[0], &[1])).unwrap().predictable());
        // No table or no key: nothing to predict with.
        assert!(!parse_rxfh(&reply(1, 0, &[], &[1])).unwrap().predictable());
        assert!(!parse_rxfh(&reply(1, 0, &[0], &[])).unwrap().predictable());
    }

    #[test]
    fn truncated_and_implausible_replies_are_errors() {
        let b = reply(1, 0, &[0, 1], &[1, 2, 3, 4]);
        for n in 0..b.len() {
            assert!(parse_rxfh(&b[..n]).is_err(), "{n} bytes");
        }
        assert!(parse_rxfh_sizes(&rxfh_request(0, 0)[..10]).is_err());
        let mut huge = rxfh_request(0, 0);
        huge[8..12].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse_rxfh(&huge).is_err());
    }

    /// The real ioctl, unprivileged: loopback has no RSS, a missing device
    /// is not "unsupported", and a bad name never reaches the kernel.
    #[test]
    fn ioctl_on_loopback_and_missing_devices() {
        assert!(matches!(read_rss("lo"), Err(RssError::Unsupported(_))));
        match read_rss("xdptcp-nonexist") {
            Err(RssError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENODEV)),
            other => panic!("expected ENODEV, got {other:?}"),
        }
        assert!(matches!(read_rss("a-name-longer-than-ifnamsiz"), Err(RssError::Name(_))));
    }

    #[test]
    fn hashed_fields() {
        assert_eq!(parse_rxfh_fields(RXH_IP_SRC | RXH_IP_DST | RXH_L4_B_0_1 | RXH_L4_B_2_3), Tcp4Fields::AddressesAndPorts);
        assert_eq!(parse_rxfh_fields(RXH_IP_SRC | RXH_IP_DST), Tcp4Fields::Addresses);
        // Other fields in the hash (here the VLAN tag) defeat the prediction.
        assert_eq!(parse_rxfh_fields(RXH_IP_SRC | RXH_IP_DST | (1 << 2)), Tcp4Fields::Other(0x34));
        assert_eq!(parse_rxfh_fields(RXH_IP_SRC | RXH_L4_B_0_1), Tcp4Fields::Other(0x50));
        assert_eq!(parse_rxfh_fields(0), Tcp4Fields::Other(0));
    }
}
