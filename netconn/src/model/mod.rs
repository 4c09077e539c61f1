//! The pure core: connection types and states, counts, the rule that merges
//! events into a snapshot, the socket as the kernel reports it, the alert
//! kinds. Plain data
//! in, plain data out; no I/O.

pub mod alert;
pub mod counts;
pub mod merge;
pub mod socket;
pub mod state;
