pub mod btf;
pub mod cgroup;
pub mod conns;
pub mod ephemeral;
pub mod error;
mod maps;
pub mod metrics;
pub mod probe;
pub mod prog_info;

pub use conns::ConnRing;
pub use probe::{Features, Journal, Losses, Probe, ProbeError};
