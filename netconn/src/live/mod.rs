//! What the running daemon keeps: live counts (the tracker), port groups,
//! TCP metrics, connection records, and the socket it serves them on.

pub mod conns;
pub mod counter;
pub mod listeners;
pub mod metrics;
pub mod node;
pub mod ports;
pub mod serve;
pub mod tracker;
