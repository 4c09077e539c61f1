//! `netconn watch`: a counts record every interval until stopped.

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::MissedTickBehavior;

use super::CmdError;
use crate::cli::WatchArgs;
use crate::counts::Counts;
use crate::output::{Sink, SinkError};
use crate::record::{CountsRecord, Source};
use crate::tracker::Tracker;
use crate::{host, snapshot};

/// Where counts come from for this run.
enum Mode {
    Ebpf(Box<Tracker>),
    Poll,
}

impl Mode {
    fn counts(&self) -> Result<(Counts, Source, u64, Option<u64>), CmdError> {
        let failed = |e: &dyn std::fmt::Display| CmdError::Failed(e.to_string());
        match self {
            Mode::Ebpf(t) => Ok((
                t.counts().map_err(|e| failed(&e))?,
                Source::Ebpf,
                t.lost_events().map_err(|e| failed(&e))?,
                Some(t.resyncs()),
            )),
            Mode::Poll => Ok((
                snapshot::counts()
                    .map_err(|e| failed(&format!("cannot dump the socket tables: {e}")))?,
                Source::Poll,
                0,
                None,
            )),
        }
    }
}

pub fn run(args: WatchArgs) -> Result<(), CmdError> {
    let mut sink = Sink::open(args.output.as_deref()).map_err(CmdError::Usage)?;
    let netns = host::netns_inode()
        .map_err(|e| CmdError::Failed(format!("cannot read own network namespace: {e}")))?;
    let host = host::hostname();
    let mode = if args.poll {
        Mode::Poll
    } else {
        match Tracker::start(netns) {
            Ok(t) => Mode::Ebpf(Box::new(t)),
            Err(e) => {
                eprintln!(
                    "netconn: eBPF unavailable ({e}); polling the socket tables every {} instead",
                    humantime::format_duration(args.interval)
                );
                Mode::Poll
            }
        }
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CmdError::Failed(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(async {
        let mut sigint = signal(SignalKind::interrupt())
            .map_err(|e| CmdError::Failed(format!("cannot handle SIGINT: {e}")))?;
        let mut sigterm = signal(SignalKind::terminate())
            .map_err(|e| CmdError::Failed(format!("cannot handle SIGTERM: {e}")))?;
        let mut ticker = tokio::time::interval(args.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut written = 0u64;
        loop {
            // The first tick is immediate: a record as soon as counting starts.
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = sigint.recv() => true,
                _ = sigterm.recv() => true,
            };
            let (counts, source, lost_events, resyncs) = mode.counts()?;
            let record = CountsRecord {
                host: &host,
                source,
                netns,
                counts: &counts,
                lost_events,
                resyncs,
            };
            match sink.write(&record.to_json(&host::now_rfc3339())) {
                Ok(()) => {}
                Err(SinkError::Closed) => return Ok(()),
                Err(e) => return Err(CmdError::Failed(e.to_string())),
            }
            written += 1;
            if stopping || args.count.is_some_and(|n| written >= n) {
                return Ok(());
            }
        }
    });
    // Detach the program and free its maps before reporting anything.
    drop(mode);
    result
}
