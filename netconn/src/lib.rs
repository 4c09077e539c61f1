//! netconn: live TCP/UDP connection counts from eBPF, exact against the
//! kernel's own tables.
//!
//! Folders by domain, each above the ones it uses:
//! - `model`: the pure core (states, counts, the merge rule, the socket);
//!   plain data in and out, no I/O.
//! - `tables`: the kernel's tables, read on demand (sock_diag, /proc/net,
//!   the O(1) totals, netlink).
//! - `ebpf`: loading and attaching the kernel programs, their maps.
//! - `live`: what the daemon keeps live (the node, port groups, TCP
//!   metrics, connection records) and the socket it serves them on.
//! - `output`: every record as a type, where records go (the one-shot
//!   sink, the daemon's writer thread), lines on stderr.
//! - `namespaces`: choosing another network namespace, finding every one
//!   on the host and what it belongs to.
//! - `alerts`: the alerts' shared hysteresis and the alerts computed on
//!   each interval's figures, one file per kind.
//! - `conntrack`, `plugin` (the Nagios check), `prometheus` (the metrics
//!   endpoint), `list`, `top` (the terminal view), `web` (the page beside
//!   `/metrics`): one feature each.
//! - `cli`, `config`, `host`, and `cmd/`: one module per subcommand.

pub mod alerts;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod conntrack;
pub mod ebpf;
pub mod host;
pub mod list;
pub mod live;
pub mod model;
pub mod namespaces;
pub mod output;
pub mod plugin;
pub mod prometheus;
pub mod tables;
pub mod top;
pub mod web;
