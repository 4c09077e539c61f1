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
    let record = CountsRecord {
        namespace: None,
        host: &host,
        source: Source::Poll,
        netns,
        counts: &counts,
        lost_events: 0,
        conn_records_lost: None,
        output_dropped: None,
        resyncs: None,
        last_correction: None,
        verify: None,
        tags: None,
        ports: None,
        tcp_metrics: None,
        listeners: None,
        ephemeral_ports: None,
    };
    super::written(sink.write(&record.at(&host::now_rfc3339())))
}
