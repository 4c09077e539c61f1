//! What the running daemon keeps: live counts (the node of one namespace or of all), port groups,
//! TCP metrics, connection records, alerts on the interval figures, and
//! the socket it serves them on.

pub mod conns;
pub mod ephemeral;
pub mod listeners;
pub mod metrics;
pub mod node;
pub mod ports;
pub mod resync;
pub mod serve;
pub mod slots;
pub mod space;
