//! `netconn list`: the namespace's sockets, one row each or grouped.

use super::CmdError;
use crate::cli::ListArgs;
use crate::list;
use crate::output::sink::Sink;

pub fn run(args: ListArgs) -> Result<(), CmdError> {
    let mut sink = Sink::create(args.output.as_deref()).map_err(CmdError::Usage)?;
    let netns = super::own_netns()?;
    let rows = list::rows(args.processes, netns).map_err(CmdError::Dump)?;
    let text = match (args.aggregate, args.json) {
        (false, false) => list::rows_table(&rows, netns).into_bytes(),
        (false, true) => {
            let mut out = Vec::with_capacity(rows.len() * 300);
            list::write_json(&rows, netns, &mut out);
            out.push(b'\n');
            out
        }
        (true, false) => list::aggregate_table(&list::aggregate(&rows)).into_bytes(),
        (true, true) => {
            let mut out = list::aggregate_json(&list::aggregate(&rows));
            out.push(b'\n');
            out
        }
    };
    super::written(sink.write_bytes(&text))
}
