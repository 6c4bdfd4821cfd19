//! What the binaries read off the host: an interface's MAC, MTU and RX queue
//! count from sysfs, a random key, and whether we run as root.

use std::net::Ipv4Addr;

use crate::rss::RssSelector;
use crate::stack::StackConfig;
use crate::wire::EthernetAddress;
use crate::xdp::{read_rss, RssError, Tcp4Fields};

/// A file of `/sys/class/net/IFACE/`, trimmed.
pub fn read_sys(iface: &str, file: &str) -> Result<String, String> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/{file}"))
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("interface {iface} not found ({e})"))
}

/// The interface's RX queue count.
pub fn rx_queue_count(iface: &str) -> Result<u32, String> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{iface}/queues")).map_err(|e| format!("interface {iface} not found ({e})"))?;
    Ok(dir.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count().max(1) as u32)
}

/// A random 128-bit key (ISNs, SYN cookies, the connection table's hash).
pub fn secret() -> [u8; 16] {
    let mut key = [0u8; 16];
    if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid") {
        // A fresh random UUID per read: 122 random bits, enough for a key.
        for (i, b) in bytes.iter().filter(|b| b.is_ascii_hexdigit()).enumerate().take(32) {
            let v = (*b as char).to_digit(16).unwrap_or(0) as u8;
            key[i / 2] |= v << if i % 2 == 0 { 4 } else { 0 };
        }
    }
    key
}

/// `ADDR[/LEN]`, /24 when no length is given.
pub fn parse_ip(s: &str) -> Result<(Ipv4Addr, u8), String> {
    match s.split_once('/') {
        Some((a, l)) => Ok((a.parse().map_err(|e| format!("--ip {a}: {e}"))?, l.parse().map_err(|e| format!("--ip /{l}: {e}"))?)),
        None => Ok((s.parse().map_err(|e| format!("--ip {s}: {e}"))?, 24)),
    }
}

/// The stack configuration for an interface: its MAC and MTU, our address.
pub fn stack_config(iface: &str, ip: &str, gateway: Option<Ipv4Addr>) -> Result<StackConfig, String> {
    let (ip, prefix) = parse_ip(ip)?;
    let mac: EthernetAddress = read_sys(iface, "address")?.parse().map_err(|_| format!("cannot read the MAC of {iface}"))?;
    let mtu: usize = read_sys(iface, "mtu")?.parse().unwrap_or(1500);
    let mut cfg = StackConfig::new(mac, ip, prefix);
    cfg.gateway = gateway;
    cfg.mtu = mtu;
    cfg.tcp = crate::tcp::Config::for_mtu(mtu);
    Ok(cfg)
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

/// Sets the MTU the stack sends with to `mtu` (from `--mtu`) when given:
/// at least 576 (IPv4's minimum datagram size every host takes) and at
/// most the interface's, which `stack_config` read. The advertised MSS
/// follows it (MTU − 40), and so does the largest segment sent.
pub fn apply_mtu(cfg: &mut StackConfig, iface: &str, mtu: Option<usize>) -> Result<(), String> {
    let Some(mtu) = mtu else { return Ok(()) };
    if mtu < 576 {
        return Err(format!("--mtu {mtu}: at least 576"));
    }
    if mtu > cfg.mtu {
        return Err(format!("--mtu {mtu} is above {iface}'s MTU of {}; raise it with `ip link set dev {iface} mtu {mtu}` (and the peer's)", cfg.mtu));
    }
    cfg.mtu = mtu;
    cfg.tcp.mss = crate::tcp::Config::mss_for_mtu(mtu);
    Ok(())
}

/// The interface's MTU (`/sys/class/net/IFACE/mtu`).
pub fn iface_mtu(iface: &str) -> Result<usize, String> {
    read_sys(iface, "mtu")?.parse().map_err(|e| format!("the MTU of {iface}: {e}"))
}

/// A byte count: digits with an optional binary suffix, K, M or G (KiB,
/// MiB, GiB): `65536`, `256K`, `64M`, `1G`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (digits, shift) = match t.as_bytes().last().map(|b| b.to_ascii_uppercase()) {
        Some(b'K') => (&t[..t.len() - 1], 10),
        Some(b'M') => (&t[..t.len() - 1], 20),
        Some(b'G') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: usize = digits.parse().map_err(|_| format!("{s:?} is not a byte count (e.g. 65536, 256K, 64M, 1G)"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

/// True when we are not root (the stack needs CAP_NET_ADMIN and CAP_BPF).
pub fn not_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) != Some("0")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_flag_sets_the_mss_within_the_interface_mtu() {
        let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let mut cfg = StackConfig::new(mac, Ipv4Addr::new(10, 0, 0, 1), 24);
        cfg.mtu = 9000;
        cfg.tcp = crate::tcp::Config::for_mtu(9000);
        cfg.tcp.send_buffer = 12345;
        apply_mtu(&mut cfg, "x", None).unwrap();
        assert_eq!((cfg.mtu, cfg.tcp.mss), (9000, 8960));
        apply_mtu(&mut cfg, "x", Some(4000)).unwrap();
        assert_eq!((cfg.mtu, cfg.tcp.mss, cfg.tcp.send_buffer), (4000, 3960, 12345));
        assert!(apply_mtu(&mut cfg, "x", Some(9000)).unwrap_err().contains("above x's MTU of 4000"));
        assert!(apply_mtu(&mut cfg, "x", Some(500)).is_err());
        assert_eq!(cfg.mtu, 4000);
    }

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("256K"), Ok(256 << 10));
        assert_eq!(parse_bytes("64m"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("-1").is_err());
    }
}
