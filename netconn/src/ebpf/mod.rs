pub mod btf;
pub mod probe;

pub use probe::{Probe, ProbeError};
