//! What netconn writes and where: the records, the sink of one-shot
//! commands, the daemon's writer thread, lines for people on stderr.

pub mod conn;
pub mod figures;
pub mod log;
pub mod record;
pub mod sink;
pub mod writer;
