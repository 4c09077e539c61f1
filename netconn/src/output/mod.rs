//! What netconn writes and where: the records, the sink of one-shot
//! commands, the daemon's writer thread, lines for people on stderr,
//! text tables.

pub mod alert;
pub mod conn;
pub mod conntrack;
pub mod datakit;
pub mod figures;
pub mod log;
pub mod record;
#[cfg(test)]
mod shapes;
pub mod sink;
pub mod table;
pub mod writer;
