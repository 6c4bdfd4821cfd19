//! xdptcp: a kernel-bypass TCP/IP stack on Linux AF_XDP.
//!
//! Layers, with one direction of dependency:
//! `wire` ← `tcp` (sans-IO engine) ← `stack` (per-core shard) ← `runtime` → `xdp`.
//! `sim` is an in-memory network with a virtual clock for deterministic tests.
//! `rss` is the NIC's receive-side scaling (Toeplitz hash, indirection), pure,
//! which the shard uses to pick source ports for its active opens.
//!
//! Only `xdp` may contain `unsafe`.
#![deny(unsafe_code)]

pub mod app;
pub mod apps;
#[cfg(feature = "datapath")]
pub mod runtime;
pub mod sim;
pub mod rss;
pub mod stack;
pub mod tcp;
pub mod time;
pub mod wire;
#[cfg(feature = "datapath")]
#[allow(unsafe_code)]
pub mod xdp;
