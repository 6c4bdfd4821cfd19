//! xdptcp-bench: benchmarks of xdptcp against kernel TCP.
//!
//! This library holds what the benchmarks share; `benches/engine.rs` measures
//! the engine's per-segment cost without any I/O.

pub mod engine;
