//! What the binaries read off the host: an interface's MAC, MTU and RX
//! queue count from sysfs, and a random key. Probing only: no command-line
//! parsing (that is the binaries'), no AF_XDP (the privilege check and the
//! NIC's RSS steering are `xdp`'s), no `unsafe`, and nothing on the hot path.
//!
//! Below `runtime` and beside `stack`, whose configuration it fills in.

use std::io;
use std::net::Ipv4Addr;
use std::num::ParseIntError;

use crate::stack::StackConfig;
use crate::wire::EthernetAddress;

/// Why the host could not be probed; the messages name the interface.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A file of `/sys/class/net/IFACE/` (or the directory) is unreadable.
    #[error("interface {iface} not found ({source})")]
    NoInterface { iface: String, source: io::Error },
    /// `address` is not a MAC address.
    #[error("cannot read the MAC of {iface}")]
    Mac { iface: String },
    /// `mtu` is not a number.
    #[error("the MTU of {iface}: {source}")]
    Mtu { iface: String, source: ParseIntError },
}

fn no_interface(iface: &str) -> impl FnOnce(io::Error) -> HostError + '_ {
    move |source| HostError::NoInterface { iface: iface.into(), source }
}

/// A file of `/sys/class/net/IFACE/`, trimmed.
pub fn read_sys(iface: &str, file: &str) -> Result<String, HostError> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/{file}")).map(|s| s.trim().to_string()).map_err(no_interface(iface))
}

/// The interface's RX queue count.
pub fn rx_queue_count(iface: &str) -> Result<u32, HostError> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{iface}/queues")).map_err(no_interface(iface))?;
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

/// The stack configuration for an interface: its MAC and MTU, our address
/// `ip`/`prefix`, and the next hop for off-link destinations.
pub fn stack_config(iface: &str, ip: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr>) -> Result<StackConfig, HostError> {
    let mac: EthernetAddress = read_sys(iface, "address")?.parse().map_err(|_| HostError::Mac { iface: iface.into() })?;
    let mtu: usize = read_sys(iface, "mtu")?.parse().unwrap_or(1500);
    let mut cfg = StackConfig::new(mac, ip, prefix);
    cfg.gateway = gateway;
    cfg.mtu = mtu;
    cfg.tcp = crate::tcp::Config::for_mtu(mtu);
    Ok(cfg)
}

/// The interface's MTU (`/sys/class/net/IFACE/mtu`).
pub fn iface_mtu(iface: &str) -> Result<usize, HostError> {
    read_sys(iface, "mtu")?.parse().map_err(|source| HostError::Mtu { iface: iface.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_is_named_with_the_os_error() {
        let e = rx_queue_count("xdptcp-nonexist").unwrap_err();
        assert!(matches!(&e, HostError::NoInterface { source, .. } if source.kind() == io::ErrorKind::NotFound), "{e:?}");
        assert!(e.to_string().starts_with("interface xdptcp-nonexist not found ("), "{e}");
        let e = stack_config("xdptcp-nonexist", Ipv4Addr::new(10, 0, 0, 1), 24, None).unwrap_err();
        assert!(e.to_string().starts_with("interface xdptcp-nonexist not found ("), "{e}");
        assert!(iface_mtu("xdptcp-nonexist").is_err());
    }

    #[test]
    fn loopback_is_probed() {
        // Every network namespace has lo, with a numeric MTU.
        if std::path::Path::new("/sys/class/net/lo").exists() {
            assert!(iface_mtu("lo").unwrap() >= 576);
            assert!(rx_queue_count("lo").unwrap() >= 1);
            let cfg = stack_config("lo", Ipv4Addr::new(10, 0, 0, 1), 24, None).unwrap();
            assert_eq!(cfg.mtu, iface_mtu("lo").unwrap());
        }
    }

    #[test]
    fn secrets_differ() {
        if std::path::Path::new("/proc/sys/kernel/random/uuid").exists() {
            assert_ne!(secret(), secret());
            assert_ne!(secret(), [0; 16]);
        }
    }
}
