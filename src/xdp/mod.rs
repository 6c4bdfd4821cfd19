//! AF_XDP: the only module with `unsafe`. It owns UMEM, rings, sockets and
//! the XDP program. Every `unsafe` block says why it is sound.

pub mod bind;
pub mod ethtool;
#[cfg(test)]
mod fake;
pub mod program;
pub mod rings;
pub mod socket;
pub mod umem;

pub use bind::{BindMode, HugePages, MemInfo, UmemInfo, ZeroCopy};
pub use ethtool::{read_rss, rss_steering, HashFunction, RssError, RssSteering, Tcp4Fields};
pub use program::{ProgramError, SteerProgram, XdpMode, COUNTER_NAMES};
pub use rings::{Rings, XskRings};
pub use socket::{FrameCounts, KernelStats, QueueConfig, QueueStats, SocketError, XskQueue};
pub use umem::{FreeFrame, RxFrame, TxFrame};

/// True when we are not root: loading the XDP program and binding AF_XDP
/// sockets need CAP_NET_ADMIN and CAP_BPF, which the binaries take root for.
pub fn not_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) != Some("0")))
        .unwrap_or(false)
}
