//! netconn: live TCP/UDP connection counts from eBPF, exact against the
//! kernel's own tables.
//!
//! The pure core (`state`, `counts`, `merge`, `record`) takes plain data and
//! returns plain data; the edges (`sockdiag`, `procnet`, `snapshot`, `ebpf`,
//! `tracker`, `host`, `output`) talk to the kernel and the outside world.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod conntrack;
pub mod ebpf;
pub mod host;
pub mod list;
pub mod live;
pub mod model;
pub mod output;
pub mod plugin;
pub mod tables;
