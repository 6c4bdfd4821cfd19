//! The sans-IO TCP engine.
//!
//! Segments, timeouts and application calls go in (`handle_*`); segments,
//! deadlines and events come out (`poll_*`). Nothing here touches a device,
//! a thread or a clock: time is always an argument.

pub mod assembler;
pub mod congestion;
pub mod isn;
pub mod ring;
pub mod rtt;
pub mod scoreboard;
pub mod syncookie;
