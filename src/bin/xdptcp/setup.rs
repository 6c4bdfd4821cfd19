//! Setup errors, and the flag values they come from: what `main` prints
//! after `xdptcp: ` when a command cannot start or stops on an error.

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use xdptcp::host::HostError;
use xdptcp::stack::{ConnectError, StackConfig};
use xdptcp::xdp::{ProgramError, SocketError};

/// Why a command failed; `main` prints it after `xdptcp: `.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("needs CAP_NET_ADMIN and CAP_BPF: run as root")]
    NotRoot,
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error("--zero-copy required needs native XDP mode: {0}")]
    NativeForZeroCopy(ProgramError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("--hugepages on: this kernel has no hugetlb pages")]
    NoHugetlb,
    #[error("--hugepages on: {0}")]
    HugePagesShort(HugePagesShort),
    #[error("{iface} has {available} RX queue(s); --queues {queues} asks for more")]
    TooManyQueues { iface: String, available: u32, queues: u32 },
    #[error("--pcap {}: {source}", path.display())]
    Pcap { path: PathBuf, source: io::Error },
    /// Installing the SIGINT/SIGTERM handlers, or starting a worker thread.
    #[error("{0}")]
    Os(io::Error),
    #[error("no queues")]
    NoQueues,
    #[error("not every connection was echoed intact in time")]
    NotEchoed,
    #[error("interface {0} disappeared")]
    InterfaceGone(String),
    #[error("no xdptcp at {} ({source}); is `xdptcp serve` running with this --control?", path.display())]
    NoServer { path: PathBuf, source: io::Error },
    /// Talking to a running server over its control socket.
    #[error("{0}")]
    Control(io::Error),
}

/// A flag's value that cannot be used (also what clap's value parsers
/// report).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("the frame size is 2048 or 4096")]
    FrameSize,
    #[error("--zero-copy required needs the XDP program in native (driver) mode, \
             but --xdp-mode generic was given: use --xdp-mode native or auto, or --zero-copy preferred or off")]
    ZeroCopyGeneric,
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("--recv-buffer: windows cannot exceed 1 GiB (RFC 7323)")]
    RecvBufferOver1G,
    #[error("--ip {addr}: {source}")]
    Ip { addr: String, source: std::net::AddrParseError },
    #[error("--ip /{len}: {source}")]
    PrefixLen { len: String, source: std::num::ParseIntError },
    #[error("--mtu {0}: at least 576")]
    MtuBelow576(usize),
    #[error("--mtu {mtu} is above {iface}'s MTU of {link}; raise it with `ip link set dev {iface} mtu {mtu}` (and the peer's)")]
    MtuAboveLink { mtu: usize, iface: String, link: usize },
    #[error("{0:?} is not a byte count (e.g. 65536, 256K, 64M, 1G)")]
    NotBytes(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Hugepages too few for the UMEMs under `--hugepages on`, and the
/// reservation that would do.
#[derive(Debug)]
pub struct HugePagesShort {
    pub queues: u32,
    pub umem_mib: u64,
    pub need: u64,
    pub page_kib: u64,
    pub free: u64,
    pub reserve: u64,
}

impl std::fmt::Display for HugePagesShort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let HugePagesShort { queues, umem_mib, need, page_kib, free, reserve } = self;
        write!(f, "{queues} UMEM(s) of {umem_mib} MiB need {need} hugepages of {page_kib} kB, {free} free; reserve them with `sysctl vm.nr_hugepages={reserve}`")
    }
}

/// `ADDR[/LEN]`, /24 when no length is given.
pub fn parse_ip(s: &str) -> Result<(Ipv4Addr, u8), FlagError> {
    let addr = |a: &str| a.parse().map_err(|source| FlagError::Ip { addr: a.into(), source });
    match s.split_once('/') {
        Some((a, l)) => Ok((addr(a)?, l.parse().map_err(|source| FlagError::PrefixLen { len: l.into(), source })?)),
        None => Ok((addr(s)?, 24)),
    }
}

/// The stack configuration for `iface` and `--ip` (and `--gateway`).
pub fn stack_config(iface: &str, ip: &str, gateway: Option<Ipv4Addr>) -> Result<StackConfig, Error> {
    let (ip, prefix) = parse_ip(ip)?;
    Ok(xdptcp::host::stack_config(iface, ip, prefix, gateway)?)
}

/// Sets the MTU the stack sends with to `mtu` (from `--mtu`) when given:
/// at least 576 (IPv4's minimum datagram size every host takes) and at
/// most the interface's, which `stack_config` read. The advertised MSS
/// follows it (MTU − 40), and so does the largest segment sent.
pub fn apply_mtu(cfg: &mut StackConfig, iface: &str, mtu: Option<usize>) -> Result<(), FlagError> {
    let Some(mtu) = mtu else { return Ok(()) };
    if mtu < 576 {
        return Err(FlagError::MtuBelow576(mtu));
    }
    if mtu > cfg.mtu {
        return Err(FlagError::MtuAboveLink { mtu, iface: iface.into(), link: cfg.mtu });
    }
    cfg.mtu = mtu;
    cfg.tcp.mss = xdptcp::tcp::Config::mss_for_mtu(mtu);
    Ok(())
}

/// A byte count: digits with an optional binary suffix, K, M or G (KiB,
/// MiB, GiB): `65536`, `256K`, `64M`, `1G`.
pub fn parse_bytes(s: &str) -> Result<usize, FlagError> {
    let t = s.trim();
    let (digits, shift) = match t.as_bytes().last().map(|b| b.to_ascii_uppercase()) {
        Some(b'K') => (&t[..t.len() - 1], 10),
        Some(b'M') => (&t[..t.len() - 1], 20),
        Some(b'G') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: usize = digits.parse().map_err(|_| FlagError::NotBytes(s.into()))?;
    n.checked_mul(1 << shift).ok_or_else(|| FlagError::TooLarge(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_flag_sets_the_mss_within_the_interface_mtu() {
        let mac = xdptcp::wire::EthernetAddress([2, 0, 0, 0, 0, 1]);
        let mut cfg = StackConfig::new(mac, Ipv4Addr::new(10, 0, 0, 1), 24);
        cfg.mtu = 9000;
        cfg.tcp = xdptcp::tcp::Config::for_mtu(9000);
        cfg.tcp.send_buffer = 12345;
        apply_mtu(&mut cfg, "x", None).unwrap();
        assert_eq!((cfg.mtu, cfg.tcp.mss), (9000, 8960));
        apply_mtu(&mut cfg, "x", Some(4000)).unwrap();
        assert_eq!((cfg.mtu, cfg.tcp.mss, cfg.tcp.send_buffer), (4000, 3960, 12345));
        let e = apply_mtu(&mut cfg, "x", Some(9000)).unwrap_err();
        assert_eq!(e, FlagError::MtuAboveLink { mtu: 9000, iface: "x".into(), link: 4000 });
        assert_eq!(e.to_string(), "--mtu 9000 is above x's MTU of 4000; raise it with `ip link set dev x mtu 9000` (and the peer's)");
        assert_eq!(apply_mtu(&mut cfg, "x", Some(500)).unwrap_err().to_string(), "--mtu 500: at least 576");
        assert_eq!(cfg.mtu, 4000);
    }

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("256K"), Ok(256 << 10));
        assert_eq!(parse_bytes("64m"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert!(parse_bytes("").is_err());
        assert_eq!(parse_bytes("12Q").unwrap_err().to_string(), "\"12Q\" is not a byte count (e.g. 65536, 256K, 64M, 1G)");
        assert!(parse_bytes("-1").is_err());
        assert_eq!(parse_bytes("99999999999999999999G").unwrap_err(), FlagError::NotBytes("99999999999999999999G".into()));
        assert_eq!(parse_bytes(&format!("{}G", usize::MAX >> 20)).unwrap_err(), FlagError::TooLarge(format!("{}G", usize::MAX >> 20)));
    }

    #[test]
    fn addresses_with_and_without_a_prefix() {
        assert_eq!(parse_ip("10.0.0.1"), Ok((Ipv4Addr::new(10, 0, 0, 1), 24)));
        assert_eq!(parse_ip("10.0.0.1/16"), Ok((Ipv4Addr::new(10, 0, 0, 1), 16)));
        assert_eq!(parse_ip("10.0.0/8").unwrap_err().to_string(), "--ip 10.0.0: invalid IPv4 address syntax");
        assert!(parse_ip("10.0.0.1/x").unwrap_err().to_string().starts_with("--ip /x: "));
    }
}
