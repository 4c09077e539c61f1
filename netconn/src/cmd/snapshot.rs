//! `netconn snapshot`: one counts record from a one-shot dump.

use super::CmdError;
use crate::cli::SnapshotArgs;
use crate::host;
use crate::output::record::{CountsRecord, Source};
use crate::output::sink::Sink;

pub fn run(args: SnapshotArgs) -> Result<(), CmdError> {
    let mut sink = Sink::open(args.output.as_deref()).map_err(CmdError::Usage)?;
    let netns = super::own_netns()?;
    let counts = super::dump_counts()?;
    let host = host::hostname();
    let record = CountsRecord::new(&host, Source::Poll, netns, &counts);
    super::written(sink.write(&record.at(&host::now_rfc3339())))
}
