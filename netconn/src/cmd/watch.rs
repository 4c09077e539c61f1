//! `netconn watch`: a counts record every interval until stopped.

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::MissedTickBehavior;

use super::CmdError;
use crate::cli::WatchArgs;
use crate::config::{Config, Tags};
use crate::counts::Counts;
use crate::host;
use crate::output::{Sink, SinkError};
use crate::ports::{Groups, PortTracker};
use crate::record::{Correction, CountsRecord, Source};
use crate::serve;
use crate::state::ConnType;
use crate::tracker::{self, Tracker};

/// Where counts come from for this run.
enum Mode {
    Ebpf(Box<Tracker>),
    /// Polling, with the port groups to classify each dump by.
    Poll(Groups),
}

/// What one record reports besides the host and time.
struct Reading {
    counts: Counts,
    source: Source,
    lost_events: u64,
    resyncs: Option<u64>,
    correction: Option<tracker::Correction>,
    ports: Option<serde_json::Value>,
    tcp_metrics: Option<serde_json::Value>,
}

impl Mode {
    /// The counts now. `maintain`: also check for losses and drift (each
    /// interval); without it only what changes without events is re-read
    /// (answers to `check`, which must be quick). `metrics`: the interval's
    /// TCP metrics, for the port groups' series.
    fn read(
        &mut self,
        maintain: bool,
        metrics: Option<&crate::metrics::Interval>,
    ) -> Result<Reading, CmdError> {
        let failed = |e: &dyn std::fmt::Display| CmdError::Failed(e.to_string());
        match self {
            Mode::Ebpf(t) => {
                if maintain {
                    t.maintain().map_err(|e| failed(&e))?;
                } else {
                    t.refresh_mini_sockets().map_err(|e| failed(&e))?;
                }
                Ok(Reading {
                    ports: t.ports_json(metrics),
                    tcp_metrics: None,
                    counts: t.counts().map_err(|e| failed(&e))?,
                    source: Source::Ebpf,
                    lost_events: t.lost_events().map_err(|e| failed(&e))?,
                    resyncs: Some(t.resyncs()),
                    correction: t.last_correction().cloned(),
                })
            }
            Mode::Poll(groups) => {
                let mut dump = Vec::new();
                for ct in ConnType::ALL {
                    crate::snapshot::dump(ct, &mut dump).map_err(|e| {
                        CmdError::Failed(format!("cannot dump the socket tables: {e}"))
                    })?;
                }
                let ports = (!groups.is_empty()).then(|| {
                    let mut ports = PortTracker::new(groups.clone());
                    ports.rebuild(&dump, &[], 0, 0);
                    ports.to_json(None)
                });
                Ok(Reading {
                    counts: Counts::from_dump(&dump),
                    source: Source::Poll,
                    lost_events: 0,
                    resyncs: None,
                    correction: None,
                    ports,
                    tcp_metrics: None,
                })
            }
        }
    }

    /// Applies streamed events (port groups) between readings.
    fn drain(&mut self) {
        if let Mode::Ebpf(t) = self {
            t.drain_stream();
        }
    }
}

impl Reading {
    fn record<'a>(
        &'a self,
        host: &'a str,
        netns: u32,
        tags: &'a Tags,
        verify: Option<&'a Counts>,
    ) -> CountsRecord<'a> {
        CountsRecord {
            tags: Some(tags),
            ports: self.ports.as_ref(),
            tcp_metrics: self.tcp_metrics.as_ref(),
            host,
            source: self.source,
            netns,
            counts: &self.counts,
            lost_events: self.lost_events,
            resyncs: self.resyncs,
            last_correction: self.correction.as_ref().map(|c| Correction {
                time: &c.time,
                reason: c.reason,
                delta: &c.delta,
            }),
            verify,
        }
    }
}

/// Serves the live counts to `netconn check` (eBPF mode only: in poll mode
/// the check's own dump is as good). A failure to serve is one line on
/// stderr, not the end of the watch.
fn serve(netns: u32) -> Option<serve::Served> {
    match serve::bind(&serve::socket_path(netns)) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("netconn: {e}; `netconn check` will dump the tables itself");
            None
        }
    }
}

/// The next connection to the counts socket; never, without one.
async fn next_client(listener: Option<&tokio::net::UnixListener>) -> tokio::net::UnixStream {
    loop {
        match listener {
            Some(l) => match l.accept().await {
                Ok((stream, _)) => return stream,
                // A client that gave up already; keep serving.
                Err(_) => continue,
            },
            None => std::future::pending().await,
        }
    }
}

/// A client of the daemon's socket, with what it asks for; None for one
/// that asks nothing valid within a second.
fn request(
    stream: tokio::net::UnixStream,
) -> Option<(std::os::unix::net::UnixStream, serve::Request)> {
    let mut stream = stream.into_std().ok()?;
    stream.set_nonblocking(false).ok()?;
    stream
        .set_write_timeout(Some(std::time::Duration::from_secs(1)))
        .ok()?;
    let request = serve::Request::read(&mut stream, std::time::Duration::from_secs(1)).ok()?;
    Some((stream, request))
}

/// Answers a client: the live counts (`check`), or the owners of the
/// sockets the programs saw created (`list`).
fn answer(
    mode: &mut Mode,
    stream: tokio::net::UnixStream,
    host: &str,
    netns: u32,
    tags: &Tags,
) -> Result<(), CmdError> {
    use std::io::Write;
    let Some((mut stream, request)) = request(stream) else {
        return Ok(());
    };
    match request {
        serve::Request::Counts => {
            let r = mode.read(false, None)?;
            let record = r.record(host, netns, tags, None);
            let _ = writeln!(stream, "{}", record.to_json(&host::now_rfc3339()));
        }
        serve::Request::Owners => {
            let Mode::Ebpf(t) = mode else { return Ok(()) };
            let mut text = String::new();
            for (cookie, owner) in t.owners() {
                let comm = crate::events::comm(&owner.comm).unwrap_or_default();
                text.push_str(&serve::owner_line(cookie, owner.pid, &comm));
            }
            let _ = stream.write_all(text.as_bytes());
        }
    }
    Ok(())
}

/// The record builder for `--events`: ports listening now (for the
/// direction of connections older than the watch) and this namespace's
/// addresses (for "local").
fn conn_records() -> Result<crate::events::Records, CmdError> {
    let failed = |e: std::io::Error| CmdError::Failed(format!("cannot prepare --events: {e}"));
    let mut listeners = Vec::new();
    for ct in [ConnType::Tcp, ConnType::Tcp6] {
        crate::sockdiag::dump_states(ct, 1 << crate::state::TCP_LISTEN, &mut listeners)
            .map_err(failed)?;
    }
    let locals = crate::list::local_addresses().map_err(failed)?;
    Ok(crate::events::Records::new(
        listeners.iter().map(|s| s.local_port),
        locals,
    ))
}

/// Writes the connection records waiting in the kernel; true when the
/// output is closed.
fn write_conns(
    mode: &mut Mode,
    records: Option<&mut crate::events::Records>,
    host: &str,
    sink: &mut Sink,
) -> Result<bool, CmdError> {
    let (Mode::Ebpf(t), Some(records)) = (mode, records) else {
        return Ok(false);
    };
    let mut events = Vec::new();
    t.drain_conns(&mut events);
    for record in records.batch(&events, host, |e| crate::events::wall_time(e.ts_ns)) {
        match sink.write(&record) {
            Ok(()) => {}
            Err(SinkError::Closed) => return Ok(true),
            Err(e) => return Err(CmdError::Failed(e.to_string())),
        }
    }
    Ok(false)
}

/// Streamed events are applied at least this often, so the ring buffer
/// never fills between records.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

pub fn run(args: WatchArgs) -> Result<(), CmdError> {
    // Nothing starts half-configured: the configuration first.
    let config = Config::load(args.config.as_deref(), |k| std::env::var(k).ok())
        .map_err(|e| CmdError::Usage(e.to_string()))?;
    let interval = args
        .interval
        .or(config.interval)
        .unwrap_or(crate::cli::DEFAULT_INTERVAL);
    let groups = Groups(config.groups);
    let mut sink = Sink::open(args.output.as_deref()).map_err(CmdError::Usage)?;
    let netns = super::own_netns()?;
    let host = host::hostname();
    let mut mode = if args.poll {
        Mode::Poll(groups)
    } else {
        match Tracker::start(netns, groups.clone(), args.events, !args.no_tcp_metrics) {
            Ok(t) => Mode::Ebpf(Box::new(t)),
            Err(e) => {
                eprintln!(
                    "netconn: eBPF unavailable ({e}); polling the socket tables every {} instead",
                    humantime::format_duration(interval)
                );
                Mode::Poll(groups)
            }
        }
    };
    let streaming = matches!(&mode, Mode::Ebpf(t) if t.has_port_groups());
    let mut conn_records = match &mode {
        Mode::Ebpf(_) if args.events => Some(conn_records()?),
        _ => None,
    };
    if args.events && conn_records.is_none() {
        eprintln!("netconn: --events needs eBPF; no connection records in poll mode");
    }
    let tags = config.tags;
    let mut conntrack = crate::conntrack::Monitor::new(true, config.conntrack);
    let mut listen = crate::metrics::Listen::start()
        .map_err(|e| CmdError::Failed(format!("cannot read /proc/net/netstat: {e}")))?;

    let served = match mode {
        Mode::Ebpf(_) => serve(netns),
        Mode::Poll(_) => None,
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
        let listener = match &served {
            Some(s) => Some(
                s.listener
                    .try_clone()
                    .and_then(tokio::net::UnixListener::from_std)
                    .map_err(|e| CmdError::Failed(format!("cannot serve counts: {e}")))?,
            ),
            None => None,
        };
        let mut ticker = tokio::time::interval(interval);
        let mut drain = tokio::time::interval(DRAIN_EVERY);
        drain.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut written = 0u64;
        loop {
            // The first tick is immediate: a record as soon as counting starts.
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = sigint.recv() => true,
                _ = sigterm.recv() => true,
                client = next_client(listener.as_ref()) => {
                    answer(&mut mode, client, &host, netns, &tags)?;
                    continue;
                }
                _ = drain.tick(), if streaming || conn_records.is_some() => {
                    mode.drain();
                    if write_conns(&mut mode, conn_records.as_mut(), &host, &mut sink)? {
                        return Ok(());
                    }
                    continue;
                }
                _ = sighup.recv() => {
                    // SIGHUP: take a fresh snapshot now (no record).
                    if let Mode::Ebpf(t) = &mut mode {
                        t.corrected_resync(crate::tracker::REASON_REQUESTED)
                            .map_err(|e| CmdError::Failed(e.to_string()))?;
                    }
                    continue;
                }
            };
            let interval = match &mut mode {
                Mode::Ebpf(t) => t
                    .tcp_metrics()
                    .map_err(|e| CmdError::Failed(e.to_string()))?,
                Mode::Poll(_) => None,
            };
            let mut r = mode.read(true, interval.as_ref())?;
            if !args.no_tcp_metrics {
                let m = crate::metrics::record_json(
                    interval.as_ref(),
                    &mut listen,
                    config.top_ports,
                )
                .map_err(|e| CmdError::Failed(format!("cannot read /proc/net/netstat: {e}")))?;
                r.tcp_metrics = Some(m);
            }
            let verify = if args.verify {
                Some(super::dump_counts()?)
            } else {
                None
            };
            if write_conns(&mut mode, conn_records.as_mut(), &host, &mut sink)? {
                return Ok(());
            }
            let time = host::now_rfc3339();
            let record = r.record(&host, netns, &tags, verify.as_ref());
            let ct = conntrack.read(&host, netns, &time);
            let records = [Some(record.to_json(&time)), Some(ct.record), ct.alert];
            for record in records.iter().flatten() {
                match sink.write(record) {
                    Ok(()) => {}
                    Err(SinkError::Closed) => return Ok(()),
                    Err(e) => return Err(CmdError::Failed(e.to_string())),
                }
            }
            written += 1;
            if stopping || args.count.is_some_and(|n| written >= n) {
                return Ok(());
            }
        }
    });
    // Stop serving, detach the programs and free their maps before
    // reporting anything.
    drop(served);
    drop(mode);
    result
}
