//! netconn: live TCP/UDP connection counts from eBPF, exact against the
//! kernel's own tables.
//!
//! The pure core (`state`, `counts`, `merge`, `record`) takes plain data and
//! returns plain data; the edges (`sockdiag`, `procnet`, `snapshot`, `ebpf`,
//! `tracker`, `host`, `output`) talk to the kernel and the outside world.

pub mod check;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod conntrack;
pub mod counts;
pub mod ebpf;
pub mod events;
pub mod host;
pub mod kernel_totals;
pub mod list;
pub mod log;
pub mod merge;
pub mod metrics;
pub mod nagios;
pub mod netlink;
pub mod output;
pub mod ports;
pub mod procnet;
pub mod record;
pub mod serve;
pub mod snapshot;
pub mod sockdiag;
pub mod state;
pub mod tracker;
pub mod writer;
