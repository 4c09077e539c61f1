//! A one-shot dump of the socket tables: sock_diag, or /proc/net when the
//! kernel lacks sock_diag for a protocol.

use std::io;

use crate::model::counts::Counts;
use crate::model::socket::DumpedSocket;
use crate::model::state::ConnType;
use crate::tables::procnet;
use crate::tables::sockdiag;

/// Dumps one conn-type of the calling thread's namespace into `out`.
pub fn dump(conn_type: ConnType, out: &mut Vec<DumpedSocket>) -> io::Result<()> {
    let mut part = Vec::new();
    match sockdiag::dump(conn_type, &mut part) {
        Ok(()) => {
            out.append(&mut part);
            Ok(())
        }
        // ENOENT/EOPNOTSUPP: no diag module for this protocol. What a failed
        // dump delivered is dropped, so nothing is counted twice.
        Err(diag_err) => procnet::dump(conn_type, out).map_err(|proc_err| {
            io::Error::new(
                proc_err.kind(),
                format!(
                    "sock_diag: {diag_err}; {}: {proc_err}",
                    procnet::path(conn_type)
                ),
            )
        }),
    }
}

/// Counts of a one-shot dump of the given conn-types.
pub fn counts_of(conn_types: &[ConnType]) -> io::Result<Counts> {
    let mut sockets = Vec::new();
    for ct in conn_types {
        dump(*ct, &mut sockets)?;
    }
    Ok(Counts::from_dump(&sockets))
}

/// Counts of a one-shot dump of every conn-type.
pub fn counts() -> io::Result<Counts> {
    counts_of(&ConnType::ALL)
}
