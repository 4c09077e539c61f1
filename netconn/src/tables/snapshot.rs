//! A one-shot dump of the socket tables: sock_diag, or /proc/net when the
//! kernel lacks sock_diag for a protocol.

use std::io;

use crate::model::counts::Counts;
use crate::model::socket::DumpedSocket;
use crate::model::state::ConnType;
use crate::tables::procnet;
use crate::tables::sockdiag;
use netlink_packet_sock_diag::inet::ExtensionFlags;

/// Dumps one conn-type of the calling thread's namespace into `out`.
pub fn dump(conn_type: ConnType, out: &mut Vec<DumpedSocket>) -> io::Result<()> {
    let start = out.len();
    sockdiag::dump(conn_type, out).or_else(|diag_err| {
        // What a failed dump delivered is dropped, so nothing is counted
        // twice.
        out.truncate(start);
        fallback(conn_type, diag_err, out)
    })
}

/// ENOENT/EOPNOTSUPP from sock_diag: no diag module for this protocol,
/// read /proc/net instead.
fn fallback(
    conn_type: ConnType,
    diag_err: io::Error,
    out: &mut Vec<DumpedSocket>,
) -> io::Result<()> {
    procnet::dump(conn_type, out).map_err(|proc_err| {
        io::Error::new(
            proc_err.kind(),
            format!(
                "sock_diag: {diag_err}; {}: {proc_err}",
                procnet::path(conn_type)
            ),
        )
    })
}

/// Counts of a one-shot dump of the given conn-types, counted as the
/// kernel's answers arrive (no socket is kept).
pub fn counts_of(conn_types: &[ConnType]) -> io::Result<Counts> {
    let mut total = Counts::default();
    for &ct in conn_types {
        let mut part = Counts::default();
        let counted = sockdiag::dump_each(ct, sockdiag::ALL_STATES, ExtensionFlags::empty(), |m| {
            part.add(ct, m.kind_and_state(ct).1, 1)
        });
        if let Err(diag_err) = counted {
            let mut sockets = Vec::new();
            fallback(ct, diag_err, &mut sockets)?;
            part = Counts::from_dump(&sockets);
        }
        total = total + part;
    }
    Ok(total)
}

/// Counts of a one-shot dump of every conn-type.
pub fn counts() -> io::Result<Counts> {
    counts_of(&ConnType::ALL)
}
