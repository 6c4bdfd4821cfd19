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
pub use ethtool::{read_rss, HashFunction, RssError, RssSteering, Tcp4Fields};
pub use program::{ProgramError, SteerProgram, XdpMode, COUNTER_NAMES};
pub use rings::{Rings, XskRings};
pub use socket::{FrameCounts, KernelStats, QueueConfig, QueueStats, SocketError, XskQueue};
pub use umem::{FreeFrame, RxFrame, TxFrame};
