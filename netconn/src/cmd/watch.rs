//! `netconn watch`: a counts record every interval until stopped.

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::MissedTickBehavior;

use super::CmdError;
use crate::cli::WatchArgs;
use crate::counts::Counts;
use crate::host;
use crate::output::{Sink, SinkError};
use crate::record::{Correction, CountsRecord, Source};
use crate::tracker::{self, Tracker};

/// Where counts come from for this run.
enum Mode {
    Ebpf(Box<Tracker>),
    Poll,
}

/// What one record reports besides the host and time.
struct Reading {
    counts: Counts,
    source: Source,
    lost_events: u64,
    resyncs: Option<u64>,
    correction: Option<tracker::Correction>,
}

impl Mode {
    fn read(&mut self) -> Result<Reading, CmdError> {
        let failed = |e: &dyn std::fmt::Display| CmdError::Failed(e.to_string());
        match self {
            Mode::Ebpf(t) => {
                t.maintain().map_err(|e| failed(&e))?;
                Ok(Reading {
                    counts: t.counts().map_err(|e| failed(&e))?,
                    source: Source::Ebpf,
                    lost_events: t.lost_events().map_err(|e| failed(&e))?,
                    resyncs: Some(t.resyncs()),
                    correction: t.last_correction().cloned(),
                })
            }
            Mode::Poll => Ok(Reading {
                counts: super::dump_counts()?,
                source: Source::Poll,
                lost_events: 0,
                resyncs: None,
                correction: None,
            }),
        }
    }
}

pub fn run(args: WatchArgs) -> Result<(), CmdError> {
    let mut sink = Sink::open(args.output.as_deref()).map_err(CmdError::Usage)?;
    let netns = super::own_netns()?;
    let host = host::hostname();
    let mut mode = if args.poll {
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
        let mut sighup = signal(SignalKind::hangup())
            .map_err(|e| CmdError::Failed(format!("cannot handle SIGHUP: {e}")))?;
        let mut ticker = tokio::time::interval(args.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut written = 0u64;
        loop {
            // The first tick is immediate: a record as soon as counting starts.
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = sigint.recv() => true,
                _ = sigterm.recv() => true,
                _ = sighup.recv() => {
                    // SIGHUP: take a fresh snapshot now (no record).
                    if let Mode::Ebpf(t) = &mut mode {
                        t.corrected_resync(crate::tracker::REASON_REQUESTED)
                            .map_err(|e| CmdError::Failed(e.to_string()))?;
                    }
                    continue;
                }
            };
            let r = mode.read()?;
            let verify = if args.verify {
                Some(super::dump_counts()?)
            } else {
                None
            };
            let record = CountsRecord {
                host: &host,
                source: r.source,
                netns,
                counts: &r.counts,
                lost_events: r.lost_events,
                resyncs: r.resyncs,
                last_correction: r.correction.as_ref().map(|c| Correction {
                    time: &c.time,
                    reason: c.reason,
                    delta: &c.delta,
                }),
                verify: verify.as_ref(),
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
