//! xdptcp-bench: xdptcp's load generator, and benchmarks of xdptcp against
//! kernel TCP.
//!
//! - `load`: workloads, the measurement window, latency bookkeeping, pacing.
//! - `kernel`: the kernel's TCP as client and as server (epoll).
//! - `xdp`: xdptcp as the client, over AF_XDP.
//! - `report`: the comparison table and picture of a results file.
//! - `engine`: an engine pair in memory, for `benches/engine.rs`.

pub mod engine;
pub mod frames;
pub mod kernel;
pub mod load;
pub mod relay;
pub mod report;
pub mod xdp;
