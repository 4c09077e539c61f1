//! netconn: live TCP/UDP connection counts from eBPF, exact against the
//! kernel's own tables.
//!
//! The pure core (`state`, `counts`, `merge`, `record`) takes plain data and
//! returns plain data; the edges (`sockdiag`, `procnet`, `ebpf`, `netns`)
//! talk to the kernel.

pub mod counts;
pub mod ebpf;
pub mod merge;
pub mod sockdiag;
pub mod state;
