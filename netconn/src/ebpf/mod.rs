pub mod btf;
pub mod cgroup;
pub mod ephemeral;
pub mod error;
pub mod metrics;
pub mod probe;
pub mod prog_info;

pub use probe::{ConnRing, Features, Journal, Losses, Probe, ProbeError};
