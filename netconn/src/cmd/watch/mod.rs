//! `netconn watch`: a counts record every interval until stopped; with
//! `--all-namespaces` one per namespace ([`node`]).

mod interval;
mod node;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::MissedTickBehavior;

use super::CmdError;
use crate::cli::WatchArgs;
use crate::config::Config;
use crate::host;
use crate::live::counter::Counter;
use crate::live::node::{Node, Scope};
use crate::live::ports::Groups;
use crate::live::serve;
use crate::model::state::ConnType;
use crate::output::log::Log;
use crate::output::writer::{Flow, Writer};

/// Serves the live counts to `netconn check` (eBPF mode only: in poll mode
/// the check's own dump is as good). A failure to serve is one line on
/// stderr, not the end of the watch; `retry` says whether to try again
/// each interval (another watch serves: take over when it stops).
fn serve(path: &std::path::Path, log: &Log, quiet: bool) -> (Option<serve::Served>, bool) {
    match serve::bind(path) {
        Ok(s) => (Some(s), false),
        Err(e @ serve::ServeError::Taken(_)) => {
            if !quiet {
                log.line(format!(
                    "netconn: {e}; `netconn check` asks that one, and this one serves once it stops"
                ));
            }
            (None, true)
        }
        Err(e) => {
            log.line(format!(
                "netconn: {e}; `netconn check` will dump the tables itself"
            ));
            (None, false)
        }
    }
}

/// Starts serving clients on the counts socket, when there is one; their
/// requests come out of the receiver. Inside the runtime.
fn start_serving(
    served: &Option<serve::Served>,
    board: &serve::Board,
) -> Result<Option<tokio::sync::mpsc::Receiver<serve::Asked>>, CmdError> {
    match served {
        Some(s) => serve::serve_clients(&s.listener, board)
            .map(Some)
            .map_err(CmdError::system("cannot serve counts")),
        None => Ok(None),
    }
}

/// The next request of a client (of the counts socket, of the metrics
/// endpoint); never, without a server.
async fn next_request<T>(asked: &mut Option<tokio::sync::mpsc::Receiver<T>>) -> T {
    match asked {
        Some(rx) => match rx.recv().await {
            Some(a) => a,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The metrics endpoint's socket and its protections.
type MetricsListener = (
    std::net::TcpListener,
    Option<std::sync::Arc<crate::prometheus::web::Web>>,
);

/// `--listen`: the metrics endpoint's socket, bound before anything loads,
/// with `--web-config-file` loaded and checked.
fn bind_metrics(args: &WatchArgs) -> Result<Option<MetricsListener>, CmdError> {
    let web = args
        .web_config_file
        .as_deref()
        .map(crate::prometheus::web::Web::load)
        .transpose()
        .map_err(|e| CmdError::Usage(e.to_string()))?;
    args.listen
        .map(|addr| {
            crate::prometheus::http::bind(addr)
                .map(|l| (l, web))
                .map_err(CmdError::system(format!("cannot serve metrics on {addr}")))
        })
        .transpose()
}

/// Starts serving scrapers; their scrapes come out of the receiver. Inside
/// the runtime.
fn start_metrics(
    listener: Option<MetricsListener>,
    last: &std::sync::Arc<crate::prometheus::http::LastPage>,
    board: &serve::Board,
) -> Result<Option<tokio::sync::mpsc::Receiver<crate::prometheus::http::Scrape>>, CmdError> {
    listener
        .map(|(l, web)| {
            crate::prometheus::http::serve(l, web, last.clone(), board.clone())
                .map_err(CmdError::system("cannot serve metrics"))
        })
        .transpose()
}

/// The alerts of an interval as the watch's readers see them.
fn raised(
    conntrack: Option<&crate::output::conntrack::AlertRecord<'_>>,
    listeners: &[crate::output::alert::ListenerAlert],
) -> Vec<crate::output::alert::Raised> {
    use crate::output::alert::Raised;
    conntrack
        .map(|a| Raised::of(a, "table".into()))
        .into_iter()
        .chain(
            listeners
                .iter()
                .map(|a| Raised::of(a, std::net::SocketAddr::new(a.addr, a.port).to_string())),
        )
        .collect()
}

/// One reading as DataKit's points (`--format datakit|line`).
fn write_points(
    out: &Writer,
    format: crate::cli::Format,
    r: &crate::live::counter::Reading,
    host: &str,
    tags: &crate::config::Tags,
) -> Flow {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let points = crate::output::datakit::points(&r.counts, r.ports.as_deref(), host, tags, now);
    for p in &points {
        let flow = match format {
            crate::cli::Format::Line => out.send_text(&p.line()),
            _ => out.send(p),
        };
        if flow == Flow::Closed {
            return Flow::Closed;
        }
    }
    Flow::Go
}

/// What `--events` reads directions by, in the calling thread's namespace:
/// the ports listening now (for connections older than the watch) and the
/// namespace's addresses (for "local").
fn listeners_and_locals() -> std::io::Result<(Vec<u16>, std::collections::HashSet<std::net::IpAddr>)>
{
    let mut listeners = Vec::new();
    for ct in [ConnType::Tcp, ConnType::Tcp6] {
        crate::tables::sockdiag::dump_states(
            ct,
            1 << crate::model::state::TCP_LISTEN,
            &mut listeners,
        )?;
    }
    let locals = crate::list::local_addresses()?;
    Ok((listeners.iter().map(|s| s.local_port).collect(), locals))
}

/// The record builder for `--events` of this namespace.
fn record_builder() -> Result<crate::live::conns::Records, CmdError> {
    let (listening, locals) =
        listeners_and_locals().map_err(CmdError::system("cannot prepare --events"))?;
    Ok(crate::live::conns::Records::new(listening, locals))
}

/// The thread of `--events`: waits for connection records in the kernel's
/// ring buffer and hands them to the writer, apart from the loop, whose
/// dumps (a resync, the mini-sockets under churn) would otherwise leave
/// the ring undrained long enough to fill. Until `stop`, then once more.
/// `news` is applied before each batch (`--all-namespaces`: namespaces
/// that came and went, owners).
fn write_conn_records(
    mut ring: crate::ebpf::ConnRing,
    mut records: crate::live::conns::Records,
    host: &str,
    out: &Writer,
    stop: &std::sync::atomic::AtomicBool,
    mut news: impl FnMut(&mut crate::live::conns::Records),
) {
    use std::sync::atomic::Ordering;
    let mut events = Vec::new();
    loop {
        let last = stop.load(Ordering::Acquire);
        news(&mut records);
        events.clear();
        ring.drain(&mut events);
        let now = crate::live::conns::monotonic_ns();
        let mut batch = out.batch();
        for record in records.batch(&events, host, now, |e| {
            crate::live::conns::wall_time(e.ts_ns)
        }) {
            if batch.push(&record) == Flow::Closed {
                return;
            }
        }
        drop(batch);
        if last {
            return;
        }
        ring.wait(DRAIN_EVERY);
    }
}

/// Streamed events are applied at least this often, so the ring buffer
/// never fills between records.
pub(super) const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// How long a stopping watch waits for its reader to take the records
/// still queued: stops are honoured within a second whatever the reader.
const FLUSH_PATIENCE: std::time::Duration = std::time::Duration::from_millis(600);
const LOG_PATIENCE: std::time::Duration = std::time::Duration::from_millis(200);

pub fn run(args: WatchArgs) -> Result<(), CmdError> {
    // Nothing starts half-configured: the configuration first.
    Config::check_env_text()?;
    let config = Config::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    let interval = args
        .interval
        .or(config.interval)
        .unwrap_or(crate::cli::DEFAULT_INTERVAL);
    for var in crate::ebpf::probe::RING_OVERRIDES {
        crate::ebpf::probe::ring_bytes_override(var).map_err(CmdError::Usage)?;
    }
    let log = Log::stderr();
    for w in &config.warnings {
        log.line(format!("netconn: {w}"));
    }
    let out = Writer::start(args.output.as_deref(), log.clone())?;
    // The loop runs on this thread (block_on); clients of the counts
    // socket and the metrics endpoint are read and written on one worker
    // thread of their own, so that a request is taken while the loop
    // works, and the loop answers it between two namespaces.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("netconn-clients")
        .enable_all()
        .build()
        .map_err(CmdError::system("cannot start the runtime"))?;
    // Signals are caught before the programs load (about 150 ms): a stop
    // during start-up still detaches everything and writes a record.
    let signals = {
        let _rt = runtime.enter();
        Signals::new()?
    };
    let result = if args.all_namespaces {
        node::watch(&args, config, interval, &runtime, signals, &out, &log)
    } else {
        watch(&args, config, interval, &runtime, signals, &out, &log)
    };
    out.finish(FLUSH_PATIENCE);
    // What was said on stderr gets out too, unless stderr is stuck.
    log.flush(LOG_PATIENCE);
    result
}

/// The signals a watch acts on.
pub(super) struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
    usr1: Signal,
}

impl Signals {
    fn new() -> Result<Signals, CmdError> {
        let on = |kind: SignalKind, name: &str| {
            signal(kind).map_err(CmdError::system(format!("cannot handle {name}")))
        };
        Ok(Signals {
            int: on(SignalKind::interrupt(), "SIGINT")?,
            term: on(SignalKind::terminate(), "SIGTERM")?,
            hup: on(SignalKind::hangup(), "SIGHUP")?,
            usr1: on(SignalKind::user_defined1(), "SIGUSR1")?,
        })
    }
}

fn watch(
    args: &WatchArgs,
    config: Config,
    interval: std::time::Duration,
    runtime: &tokio::runtime::Runtime,
    mut sig: Signals,
    out: &Writer,
    log: &Log,
) -> Result<(), CmdError> {
    let groups = Groups(config.groups.clone());
    let netns = super::own_netns()?;
    let host = host::hostname();
    let metrics_listener = bind_metrics(args)?;
    let mut counter = if args.poll {
        Counter::Poll(groups)
    } else {
        let features = crate::ebpf::Features {
            port_groups: !groups.is_empty(),
            conns: args.events,
            tcp_metrics: !args.no_tcp_metrics,
            ephemeral: !args.no_ephemeral_ports,
        };
        match Node::start(Scope::One(netns), groups.clone(), features, interval) {
            Ok(t) => Counter::Ebpf(Box::new(t)),
            Err(e) => {
                log.line(format!(
                    "netconn: eBPF unavailable ({e}); polling the socket tables every {} instead",
                    humantime::format_duration(interval)
                ));
                Counter::Poll(groups)
            }
        }
    };
    let streaming = matches!(&counter, Counter::Ebpf(t) if t.has_port_groups());
    let conns = match &mut counter {
        Counter::Ebpf(t) if args.events => t.take_conn_events().map(|r| (r, record_builder())),
        _ => None,
    };
    if args.events && conns.is_none() {
        log.line("netconn: --events needs eBPF; no connection records in poll mode".into());
    }
    let tags = config.tags.clone();
    let rules = interval::Rules {
        host: &host,
        config: &config,
        tcp_metrics: !args.no_tcp_metrics,
    };
    // What is kept of the namespace between intervals.
    let mut kept = interval::Kept::default();

    let (mut served, mut retry_serve) = match counter {
        Counter::Ebpf(_) => serve(&serve::socket_path(netns), log, false),
        Counter::Poll(_) => (None, false),
    };
    // What clients get while the loop is busy.
    let busy = serve::Busy::default();
    let board = serve::Board::new(netns, &busy);
    if let Counter::Ebpf(t) = &counter {
        board.set_owners(t.owners_reader()?);
    }

    let stop = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let conn_thread = match conns {
            Some((ring, builder)) => {
                let (builder, host, stop) = (builder?, &host, &stop);
                Some(
                    scope.spawn(move || write_conn_records(ring, builder, host, out, stop, |_| {})),
                )
            }
            None => None,
        };
        let result = runtime.block_on(async {
            let mut asked = start_serving(&served, &board)?;
            let last_page = std::sync::Arc::new(crate::prometheus::http::LastPage::new(&busy));
            let scraped = metrics_listener.is_some();
            let mut scrapes = start_metrics(metrics_listener, &last_page, &board)?;
            let mut ticker = tokio::time::interval(interval);
            let mut drain = tokio::time::interval(DRAIN_EVERY);
            drain.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut written = 0u64;
            loop {
                // The first tick is immediate: a record as soon as counting starts.
                let stopping = tokio::select! {
                    _ = ticker.tick() => false,
                    _ = sig.int.recv() => true,
                    _ = sig.term.recv() => true,
                    a = next_request(&mut asked) => {
                        if a.reply.is_closed() {
                            // Answered from the board meanwhile.
                            continue;
                        }
                        // Alerts, owners and records are the board's.
                        let answer = serve::answer(&mut counter, a.request, &host, netns, &tags)?;
                        // A client that gave up meanwhile just misses it.
                        let _ = a.reply.send(answer);
                        continue;
                    }
                    s = next_request(&mut scrapes) => {
                        if s.reply.is_closed() {
                            continue;
                        }
                        let live = counter.read(false, None)?;
                        let page = kept.exporter.page(&live, out.dropped());
                        last_page.keep(page.clone());
                        let page = page.encode(s.format);
                        let _ = s.reply.send(page);
                        continue;
                    }
                    _ = drain.tick(), if streaming => {
                        counter.drain();
                        continue;
                    }
                    _ = sig.hup.recv() => {
                        // SIGHUP: take a fresh snapshot now (no record).
                        let _working = busy.working();
                        if let Counter::Ebpf(n) = &mut counter {
                            n.resync_all()?;
                        }
                        continue;
                    }
                    _ = sig.usr1.recv() => {
                        // SIGUSR1: reopen --output (log rotation).
                        out.reopen();
                        continue;
                    }
                };
                // Clients the loop does not answer at once meanwhile get
                // what it last published.
                let _working = busy.working();
                // `netconn top` reads this interval's records.
                let keep_records = board.records_wanted();
                if retry_serve {
                    (served, retry_serve) = serve(&serve::socket_path(netns), log, true);
                    asked = start_serving(&served, &board)?;
                }
                let interval = match &mut counter {
                    Counter::Ebpf(n) => n.tcp_metrics()?.and_then(|mut m| m.remove(&netns)),
                    Counter::Poll(_) => None,
                };
                let mut r = counter.read(true, interval.as_ref())?;
                board.publish_counts(
                    netns,
                    serve::counts_line(&r.record(&host, netns, &tags, None, None)),
                );
                let verify = if args.verify {
                    Some(super::dump_counts()?)
                } else {
                    None
                };
                let time = host::now_rfc3339();
                let seen = interval::Seen {
                    netns,
                    way: interval::Way::Here,
                    owner: None,
                    metrics: interval.as_ref(),
                    requests: &r.requests,
                    moved: true,
                };
                let (node, polled) = match &counter {
                    Counter::Ebpf(n) => (Some(n.as_ref()), None),
                    Counter::Poll(_) => (None, r.ephemeral.take()),
                };
                let made = interval::run(&rules, &mut kept, &seen, &time, node, polled)?;
                made.export(&mut kept, interval.as_ref(), r.ports.as_deref());
                let mut record =
                    r.record(&host, netns, &tags, verify.as_ref(), Some(out.dropped()));
                made.fill(&mut record);
                let mut lines = Vec::new();
                if keep_records {
                    serve::push_line(&mut lines, &record.at(&time));
                    if let Some(ct) = &made.conntrack {
                        serve::push_line(&mut lines, &ct.record);
                    }
                }
                board.publish_records(lines);
                board.publish_alerts(kept.exporter.active_lines());
                if scraped && last_page.wanted() {
                    let live = counter.read(false, None)?;
                    last_page.keep(kept.exporter.page(&live, out.dropped()));
                }
                let flow = if args.format == crate::cli::Format::Json {
                    made.send(out, &record, &time)
                } else {
                    // DataKit's measurements instead of netconn's records.
                    write_points(out, args.format, &r, &host, &tags)
                };
                if flow == Flow::Closed {
                    return Ok(());
                }
                written += 1;
                if stopping || args.count.is_some_and(|n| written >= n) {
                    return Ok(());
                }
            }
        });
        stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = conn_thread {
            let _ = t.join();
        }
        result
    });
    // Stop serving, detach the programs and free their maps before
    // reporting anything.
    drop(served);
    drop(counter);
    result
}
