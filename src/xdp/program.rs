//! Loading and attaching the XDP program, its maps, and its counters.
//!
//! The program is attached through a bpf_link (aya), so the kernel removes
//! it if xdptcp dies; dropping [`SteerProgram`] detaches it on a clean exit.

use std::net::Ipv4Addr;

use aya::maps::{PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpFlags};
use aya::{Ebpf, EbpfLoader};

/// The object built by build.rs from bpf/xdp_steer.c.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_steer.o"));

/// Counter indices, as in bpf/xdp_steer.c.
pub const COUNTER_NAMES: [&str; 5] = ["redirected", "passed", "arp", "icmp", "tcp"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    Auto,
    Native,
    Generic,
}

#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("loading the XDP program failed (needs root, or CAP_BPF and CAP_NET_ADMIN): {0}")]
    Load(String),
    #[error("attaching the XDP program to {iface} failed: {reason}. If another XDP program is attached, remove it with `ip link set dev {iface} xdp off`")]
    Attach { iface: String, reason: String },
    #[error("{iface} already has an XDP program attached ({kind} mode, program id {id}; `bpftool prog show id {id}` tells what it is). Remove it with `ip link set dev {iface} {kind} off`, then start again")]
    AlreadyAttached { iface: String, kind: String, id: u32 },
    #[error("configuring the XDP program's maps failed: {0}")]
    Map(String),
}

/// The loaded and attached program.
pub struct SteerProgram {
    bpf: Ebpf,
    mode: XdpMode,
}

impl SteerProgram {
    /// Loads the program, tells it the stack's addresses (`count` of them
    /// from `ip` up) and port (0 for all), and attaches it to `iface`:
    /// native mode where the driver supports it (or as asked), else generic.
    pub fn attach(iface: &str, ip: Ipv4Addr, count: u32, port: u16, mode: XdpMode) -> Result<SteerProgram, ProgramError> {
        // What to steer becomes constants of the program (see bpf/xdp_steer.c).
        let (steer_ip, steer_count, steer_port) = (u32::from(ip), count.max(1), port.to_be());
        let mut bpf = EbpfLoader::new()
            .set_global("steer_ip", &steer_ip, true)
            .set_global("steer_count", &steer_count, true)
            .set_global("steer_port", &steer_port, true)
            .load(OBJECT)
            .map_err(|e| ProgramError::Load(e.to_string()))?;
        let prog: &mut Xdp = bpf
            .program_mut("xdp_steer")
            .ok_or_else(|| ProgramError::Load("no xdp_steer program in the object".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| ProgramError::Load(e.to_string()))?;
        prog.load().map_err(|e| ProgramError::Load(e.to_string()))?;
        let attach = |prog: &mut Xdp, flags| prog.attach(iface, flags).map_err(|e| e.to_string());
        let got = match mode {
            XdpMode::Native => attach(prog, XdpFlags::DRV_MODE).map(|_| XdpMode::Native),
            XdpMode::Generic => attach(prog, XdpFlags::SKB_MODE).map(|_| XdpMode::Generic),
            XdpMode::Auto => match attach(prog, XdpFlags::DRV_MODE) {
                Ok(_) => Ok(XdpMode::Native),
                Err(native) => {
                    log::warn!("native XDP on {iface} refused ({native}); falling back to generic mode");
                    attach(prog, XdpFlags::SKB_MODE).map(|_| XdpMode::Generic)
                }
            },
        };
        let mode = got.map_err(|reason| match attached_program(iface) {
            Some((kind, id)) => ProgramError::AlreadyAttached { iface: iface.into(), kind, id },
            None => ProgramError::Attach { iface: iface.into(), reason },
        })?;
        log::info!("XDP program attached to {iface} in {} mode", if mode == XdpMode::Native { "native" } else { "generic" });
        Ok(SteerProgram { bpf, mode })
    }

    /// Steers every IPv4 frame that arrives on `iface` (ARP for any target,
    /// ICMP and TCP to any address but 0.0.0.0) into the sockets: for a
    /// program that owns the interface, such as the impairment relay.
    pub fn attach_all(iface: &str, mode: XdpMode) -> Result<SteerProgram, ProgramError> {
        // `ours` in the program is `addr - steer_ip < steer_count`.
        SteerProgram::attach(iface, Ipv4Addr::new(0, 0, 0, 1), u32::MAX, 0, mode)
    }

    /// The mode the program runs in.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Steers queue `queue` into the AF_XDP socket `fd`.
    pub fn register(&mut self, queue: u32, fd: std::os::fd::RawFd) -> Result<(), ProgramError> {
        let map = self.bpf.map_mut("xsks_map").ok_or_else(|| ProgramError::Map("no xsks_map".into()))?;
        let mut xsks = XskMap::try_from(map).map_err(|e| ProgramError::Map(e.to_string()))?;
        // SAFETY: `fd` is an open AF_XDP socket that outlives its map entry
        // (the program is detached before the sockets are closed).
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        xsks.set(queue, borrowed, 0).map_err(|e| ProgramError::Map(e.to_string()))
    }

    /// The per-CPU counters, summed over CPUs.
    pub fn counters(&self) -> [u64; 5] {
        let mut out = [0u64; 5];
        let Some(map) = self.bpf.map("counters") else { return out };
        let Ok(arr) = PerCpuArray::<_, u64>::try_from(map) else { return out };
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(values) = arr.get(&(i as u32), 0) {
                *slot = values.iter().sum();
            }
        }
        // The program counts each steered frame once, by kind.
        out[0] = out[2] + out[3] + out[4];
        out
    }
}

/// The XDP program attached to `iface`, as `ip link` shows it: its kind
/// (`xdp`, `xdpgeneric`, `xdpoffload`) and id.
fn attached_program(iface: &str) -> Option<(String, u32)> {
    let out = std::process::Command::new("ip").args(["-o", "link", "show", "dev", iface]).output().ok()?;
    parse_attached(&String::from_utf8_lossy(&out.stdout))
}

/// Finds `prog/KIND id N` in `ip -o link show` output.
fn parse_attached(text: &str) -> Option<(String, u32)> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if let Some(kind) = w.strip_prefix("prog/") {
            if words.next() == Some("id") {
                return Some((kind.to_string(), words.next()?.parse().ok()?));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::parse_attached;

    #[test]
    fn finds_the_attached_program_in_ip_link_output() {
        let line = "7: veth0@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 xdpgeneric qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 16:8a:27:d8:b4:d0 brd ff:ff:ff:ff:ff:ff link-netns x-p\\    prog/xdpgeneric id 231 name xdp_steer tag 3b185187f1855c4d jited";
        assert_eq!(parse_attached(line), Some(("xdpgeneric".to_string(), 231)));
        assert_eq!(parse_attached("3: eth0: <UP> mtu 1500 qdisc mq"), None);
        assert_eq!(parse_attached("prog/xdp id"), None);
    }
}
