pub mod btf;
pub mod cgroup;
pub mod probe;
pub mod prog_info;

pub use probe::{ConnRing, Journal, Losses, Probe, ProbeError};
