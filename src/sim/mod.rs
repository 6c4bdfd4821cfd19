//! The simulated network: in-memory links with a virtual clock, between
//! hosts that are real shards (`stack::Shard`).
//!
//! Everything here is deterministic for a seed: the PRNG is our own, links
//! make a fixed number of random draws per frame, and hosts iterate in a
//! fixed order. Any run can be captured to a pcap file.

pub mod host;
pub mod link;
pub mod net;
pub mod rng;
pub mod tx;

pub use link::{Link, LinkConfig, LinkStats};
pub use host::{ConnMut, Host, HostStats, SimApp};
pub use net::{ConnId, Network, RxLimits};
/// Capture moved below the simulator; the old path stays for its users.
pub use crate::capture as pcap;
pub use crate::capture::PcapSink;
pub use rng::Rng;
pub use tx::LinkFrames;
