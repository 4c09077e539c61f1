//! The kernel's tables, read on demand: sock_diag and /proc/net dumps,
//! the O(1) totals of sockstat and snmp, `tcp_info`, the namespace's
//! addresses, the processes behind sockets, the netlink plumbing under
//! them.

pub mod addresses;
pub mod listeners;
pub mod netlink;
pub mod port_range;
pub mod procnet;
pub mod procs;
pub mod snapshot;
pub mod sockdiag;
pub mod tcp_info;
pub mod totals;
