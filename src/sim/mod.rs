//! The simulated network: in-memory links with a virtual clock.
