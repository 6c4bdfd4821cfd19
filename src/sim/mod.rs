//! The simulated network: in-memory links with a virtual clock.
//!
//! Everything here is deterministic for a seed: the PRNG is our own, links
//! make a fixed number of random draws per frame, and hosts iterate in a
//! fixed order. Any run can be captured to a pcap file.

pub mod link;
pub mod net;
pub mod pcap;
pub mod rng;
pub mod tx;

pub use link::{Link, LinkConfig, LinkStats};
pub use net::{ConnId, Network, RxLimits};
pub use pcap::PcapSink;
pub use rng::Rng;
pub use tx::LinkFrames;
