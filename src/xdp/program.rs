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
        let mut bpf = load(ip, count, port)?;
        let prog = xdp(&mut bpf)?;
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

/// Loads the program (into the kernel, not attached anywhere) to steer
/// `count` addresses from `ip` up and `port` (0 for all).
fn load(ip: Ipv4Addr, count: u32, port: u16) -> Result<Ebpf, ProgramError> {
    // What to steer becomes constants of the program (see bpf/xdp_steer.c).
    let (steer_ip, steer_count, steer_port) = (u32::from(ip), count.max(1), port.to_be());
    let mut bpf = EbpfLoader::new()
        .set_global("steer_ip", &steer_ip, true)
        .set_global("steer_count", &steer_count, true)
        .set_global("steer_port", &steer_port, true)
        .load(OBJECT)
        .map_err(|e| ProgramError::Load(e.to_string()))?;
    xdp(&mut bpf)?.load().map_err(|e| ProgramError::Load(e.to_string()))?;
    Ok(bpf)
}

fn xdp(bpf: &mut Ebpf) -> Result<&mut Xdp, ProgramError> {
    bpf.program_mut("xdp_steer")
        .ok_or_else(|| ProgramError::Load("no xdp_steer program in the object".into()))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| ProgramError::Load(e.to_string()))
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

/// Runs the loaded program once over a packet with BPF_PROG_TEST_RUN, as
/// the kernel would run it on a multi-buffer packet: `linear` bytes in the
/// first buffer, the rest in fragments. Returns the XDP action.
#[cfg(test)]
fn test_run(bpf: &Ebpf, packet: &[u8], linear: usize) -> std::io::Result<u32> {
    use std::os::fd::{AsFd, AsRawFd};
    // struct xdp_md: where the first buffer starts and ends.
    #[repr(C)]
    #[derive(Default)]
    struct XdpMd {
        data: u32,
        data_end: u32,
        data_meta: u32,
        ingress_ifindex: u32,
        rx_queue_index: u32,
        egress_ifindex: u32,
    }
    // The `test` member of union bpf_attr.
    #[repr(C)]
    #[derive(Default)]
    struct TestAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        /// Named, so that it is zero: the kernel wants every byte after
        /// the fields it knows to be zero.
        _pad: u32,
    }
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    let prog = bpf.program("xdp_steer").expect("loaded");
    let fd = prog.fd().map_err(std::io::Error::other)?.as_fd().as_raw_fd();
    let ctx = XdpMd { data_end: linear as u32, ..Default::default() };
    let mut attr = TestAttr {
        prog_fd: fd as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat: 1,
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: (&ctx as *const XdpMd) as u64,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid BPF_PROG_TEST_RUN request of the size
    // given; the kernel only reads `packet` and `ctx` (no output buffers
    // are given), which outlive the call, and writes back into `attr`.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_TEST_RUN, &mut attr as *mut TestAttr, std::mem::size_of::<TestAttr>()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(attr.retval)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 (with `opts` bytes of options) + TCP packet of
    /// `len` bytes from 10.0.0.2 to `dst`:`port`.
    fn tcp_packet(dst: Ipv4Addr, port: u16, opts: usize, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ihl = 20 + opts;
        p[14] = 0x40 | (ihl / 4) as u8;
        p[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        p[22] = 64;
        p[23] = 6; // TCP
        p[26..30].copy_from_slice(&[10, 0, 0, 2]);
        p[30..34].copy_from_slice(&dst.octets());
        let tcp = 14 + ihl;
        p[tcp..tcp + 2].copy_from_slice(&40000u16.to_be_bytes());
        p[tcp + 2..tcp + 4].copy_from_slice(&port.to_be_bytes());
        p[tcp + 12] = 5 << 4;
        p
    }

    fn arp_request(target: Ipv4Addr) -> Vec<u8> {
        let mut p = vec![0u8; 60];
        p[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        p[38..42].copy_from_slice(&target.octets());
        p
    }

    /// The verdict of the program on multi-buffer packets does not depend
    /// on where the kernel split them: headers wholly in the first buffer,
    /// or cut short anywhere (then read with bpf_xdp_load_bytes). Needs
    /// root (loading a program, BPF_PROG_TEST_RUN); the test command runs
    /// cargo test as root.
    #[test]
    fn steers_the_same_wherever_the_first_buffer_ends() {
        if crate::xdp::not_root() {
            eprintln!("skipped: loading an XDP program needs root");
            return;
        }
        let ours = Ipv4Addr::new(198, 18, 0, 1);
        let bpf = load(ours, 1, 7).expect("load the program");
        let counts = |bpf: &Ebpf| {
            let arr = PerCpuArray::<_, u64>::try_from(bpf.map("counters").unwrap()).unwrap();
            let get = |i: u32| arr.get(&i, 0).unwrap().iter().sum::<u64>();
            (get(1), get(2), get(4)) // passed, arp, tcp
        };
        // (packet, first-buffer length, steered as: 1 passed, 2 arp, 4 tcp)
        let cases = [
            (tcp_packet(ours, 7, 0, 1000), 1000, 4),         // one buffer
            (tcp_packet(ours, 7, 0, 9014), 3000, 4),         // headers in the first buffer
            (tcp_packet(ours, 7, 0, 9014), 20, 4),           // the IPv4 header cut
            (tcp_packet(ours, 7, 40, 9014), 76, 4),          // ports cut, after IPv4 options
            (tcp_packet(ours, 7, 40, 9014), 14, 4),          // Ethernet header only
            (tcp_packet(ours, 8, 40, 9014), 30, 1),          // another port
            (tcp_packet(Ipv4Addr::new(198, 18, 0, 9), 7, 0, 9014), 20, 1), // another address
            (arp_request(ours), 20, 2),                      // ARP cut short
            (arp_request(Ipv4Addr::new(198, 18, 0, 9)), 20, 1),
        ];
        for (i, (packet, linear, kind)) in cases.iter().enumerate() {
            let before = counts(&bpf);
            let action = test_run(&bpf, packet, *linear).unwrap_or_else(|e| panic!("case {i}: BPF_PROG_TEST_RUN: {e}"));
            // No socket is in xsks_map: a steered frame falls back to XDP_PASS.
            assert_eq!(action, 2, "case {i}: XDP_PASS");
            let after = counts(&bpf);
            let delta = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
            let want = match kind {
                1 => (1, 0, 0),
                2 => (0, 1, 0),
                _ => (0, 0, 1),
            };
            assert_eq!(delta, want, "case {i}: {} bytes, first buffer {linear}", packet.len());
        }
    }

    #[test]
    fn finds_the_attached_program_in_ip_link_output() {
        let line = "7: veth0@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 xdpgeneric qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 16:8a:27:d8:b4:d0 brd ff:ff:ff:ff:ff:ff link-netns x-p\\    prog/xdpgeneric id 231 name xdp_steer tag 3b185187f1855c4d jited";
        assert_eq!(parse_attached(line), Some(("xdpgeneric".to_string(), 231)));
        assert_eq!(parse_attached("3: eth0: <UP> mtu 1500 qdisc mq"), None);
        assert_eq!(parse_attached("prog/xdp id"), None);
    }
}
