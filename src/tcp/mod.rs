//! The sans-IO TCP engine.
//!
//! Segments, timeouts and application calls go in (`handle_*` and the
//! application methods); segments, deadlines and events come out (`poll_*`).
//! Nothing here touches a device, a thread or a clock: time is always an
//! argument. See [`connection`] for the calling convention.

pub mod assembler;
pub mod config;
pub mod congestion;
pub mod connection;
pub mod isn;
pub mod listener;
pub mod rack;
pub mod ring;
pub mod rtt;
pub mod scoreboard;
pub mod syncookie;

pub use config::{Config, Keepalive};
pub use congestion::Algorithm;
pub use connection::{CloseReason, ConnStats, Connection, Delivery, Event, Handle, RxBudget, SendError, Shutdown, State, Timer, SEND_MEMORY_FLOOR};
pub use listener::{reset_for, Listener, ListenerConfig, ListenerStats, SynCookieMode, SynOutcome};
