//! xdptcp: a kernel-bypass TCP/IP stack on Linux AF_XDP.
//!
//! Layers, with one direction of dependency:
//! `wire` ← `tcp` (sans-IO engine) ← `stack` (per-core shard) ← `runtime` → `xdp`.
//! `sim` is an in-memory network with a virtual clock for deterministic tests.
//! `capture` (pcap files) sits below both `sim` and `runtime`; `host`
//! (sysfs probing: MAC, MTU, queues, a random key) below `runtime`, beside
//! `stack` whose configuration it fills in. Neither parses command lines.
//! `rss` is the NIC's receive-side scaling (Toeplitz hash, indirection), pure,
//! which the shard uses to pick source ports for its active opens.
//!
//! Only `xdp` may contain `unsafe`.
#![deny(unsafe_code)]

pub mod app;
pub mod apps;
pub mod capture;
pub mod host;
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
