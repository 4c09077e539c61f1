//! `netconn watch`: a counts record every interval until stopped; with
//! `--all-namespaces` one per namespace ([`node`]).

mod answers;
mod events;
mod interval;
mod reading;

use std::collections::HashMap;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::MissedTickBehavior;

use super::CmdError;
use crate::cli::WatchArgs;
use crate::config::Config;
use crate::host;
use crate::live::node::{Change, Node, Scope};
use crate::live::ports::Groups;
use crate::live::serve;
use crate::model::counts::Counts;
use crate::namespaces::owner::Owner;
use crate::output::log::Log;
use crate::output::record::{CountsRecord, HostRecord, NetnsRecord, Source};
use crate::output::writer::{Flow, Writer};
use events::News;
use reading::Counting;

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
    counts: &Counts,
    ports: Option<&[crate::output::figures::PortSeries]>,
    host: &str,
    tags: &crate::config::Tags,
) -> Flow {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let points = crate::output::datakit::points(counts, ports, host, tags, now);
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
    let result = watch(&args, config, interval, &runtime, signals, &out, &log);
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
    fn new() -> Result<Self, CmdError> {
        let on = |kind: SignalKind, name: &str| {
            signal(kind).map_err(CmdError::system(format!("cannot handle {name}")))
        };
        Ok(Self {
            int: on(SignalKind::interrupt(), "SIGINT")?,
            term: on(SignalKind::terminate(), "SIGTERM")?,
            hup: on(SignalKind::hangup(), "SIGHUP")?,
            usr1: on(SignalKind::user_defined1(), "SIGUSR1")?,
        })
    }
}

/// The watch of one namespace (the calling thread's) or, with
/// `--all-namespaces`, of every namespace: one loop, each interval one
/// namespace's work ([`interval`]) per namespace counted.
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
    let own = super::own_netns()?;
    let host = host::hostname();
    let metrics_listener = bind_metrics(args)?;
    let (scope, polling) = match args.all_namespaces {
        true => (
            Scope::All {
                slots: args.max_namespaces,
            },
            "every namespace",
        ),
        false => (Scope::One(own), "the socket tables"),
    };
    // What is kept of each namespace between intervals; the calling
    // thread's starts now, before the programs load.
    let mut inside: HashMap<u32, interval::Kept> = HashMap::new();
    if let Scope::One(netns) = scope {
        inside.insert(netns, interval::Kept::here(&config, !args.no_tcp_metrics)?);
    }
    let mut counting = if args.poll {
        Counting::Poll(scope)
    } else {
        let features = crate::ebpf::Features {
            port_groups: !groups.is_empty(),
            conns: args.events,
            tcp_metrics: !args.no_tcp_metrics,
            ephemeral: !args.no_ephemeral_ports,
        };
        match Node::start(scope, groups.clone(), features, interval) {
            Ok(n) => Counting::Ebpf(Box::new(n)),
            Err(e) => {
                log.line(format!(
                    "netconn: eBPF unavailable ({e}); polling {polling} every {} instead",
                    humantime::format_duration(interval)
                ));
                Counting::Poll(scope)
            }
        }
    };
    let tags = config.tags.clone();
    let rules = interval::Rules {
        host: &host,
        config: &config,
        tcp_metrics: !args.no_tcp_metrics,
    };
    let path = match scope {
        Scope::One(netns) => serve::socket_path(netns),
        Scope::All { .. } => serve::node_socket_path(),
    };
    let (mut served, mut retry_serve) = match counting {
        Counting::Ebpf(_) => serve(&path, log, false),
        Counting::Poll(_) => (None, false),
    };
    // What clients get while the loop is busy.
    let busy = serve::Busy::default();
    let board = serve::Board::new(own, &busy);
    if let Some(n) = counting.node() {
        board.set_owners(n.owners_reader()?);
    }
    let conns = match &mut counting {
        Counting::Ebpf(n) if args.events => n.take_conn_events(),
        _ => None,
    };
    if args.events && conns.is_none() {
        log.line("netconn: --events needs eBPF; no connection records in poll mode".into());
    }
    // What the connection records' thread learns of the namespaces.
    let (news, heard) = std::sync::mpsc::channel::<News>();
    let mut owners_sent: HashMap<u32, Owner> = HashMap::new();
    if let (Some(_), Some(n)) = (&conns, counting.node()) {
        for space in n.spaces().values() {
            let _ = news.send(News::seen(space)?);
            owners_sent.insert(space.ns.inode, space.owner.clone());
        }
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let result =
        std::thread::scope(|threads| {
            let conn_thread = conns.map(|ring| {
                let (host, stop) = (&host, &stop);
                threads.spawn(move || events::write_conn_records(ring, heard, host, out, stop))
            });
            let events_on = conn_thread.is_some();
            let result = runtime.block_on(async {
            let mut asked = start_serving(&served, &board)?;
            let last_page = std::sync::Arc::new(crate::prometheus::http::LastPage::new(&busy));
            let scraped = metrics_listener.is_some();
            let mut scrapes = start_metrics(metrics_listener, &last_page, &board)?;
            let streaming = counting.node().is_some_and(Node::has_port_groups);
            let mut drain = tokio::time::interval(events::DRAIN_EVERY);
            drain.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut written = 0u64;
            let mut first = true;
            loop {
                // The first tick is immediate: a record as soon as counting starts.
                let stopping = tokio::select! {
                    _ = ticker.tick() => false,
                    _ = sig.int.recv() => true,
                    _ = sig.term.recv() => true,
                    _ = sig.hup.recv() => {
                        // SIGHUP: take a fresh snapshot now (no record).
                        let _working = busy.working();
                        if let Counting::Ebpf(n) = &mut counting {
                            n.resync_all()?;
                        }
                        continue;
                    }
                    _ = drain.tick(), if streaming => {
                        if let Counting::Ebpf(n) = &mut counting {
                            n.drain_stream();
                        }
                        continue;
                    }
                    _ = sig.usr1.recv() => {
                        // SIGUSR1: reopen --output (log rotation).
                        out.reopen();
                        continue;
                    }
                    s = next_request(&mut scrapes) => {
                        if s.reply.is_closed() {
                            continue;
                        }
                        let page = answers::page(&mut counting, &groups, &inside, out.dropped())?;
                        last_page.keep(page.clone());
                        let _ = s.reply.send(page.encode(s.format));
                        continue;
                    }
                    a = next_request(&mut asked) => {
                        if a.reply.is_closed() {
                            // Answered from the board meanwhile.
                            continue;
                        }
                        // Alerts, owners and records are the board's.
                        let answer = match &mut counting {
                            Counting::Ebpf(n) => answers::answer(n, a.request, &host, &tags)?,
                            Counting::Poll(_) => Vec::new(),
                        };
                        // A client that gave up meanwhile just misses it.
                        let _ = a.reply.send(answer);
                        continue;
                    }
                };
                // Clients the loop does not answer between two namespaces
                // within a few milliseconds get what it last published.
                let _working = busy.working();
                // `netconn top` reads this interval's records.
                let mut kept_records = board.records_wanted().then(Vec::new);
                if retry_serve {
                    (served, retry_serve) = serve(&path, log, true);
                    asked = start_serving(&served, &board)?;
                }
                let time = host::now_rfc3339();
                let mut intervals = match &mut counting {
                    Counting::Ebpf(n) => n.tcp_metrics()?,
                    Counting::Poll(_) => None,
                };
                let (readings, changes) =
                    reading::read(&mut counting, &groups, args.verify, first, intervals.as_ref())?;
                first = false;
                // One reading of the kernel's losses for every record of
                // the interval.
                let losses = reading::Losses::of(counting.node())?;
                for change in changes {
                    if let Change::Gone(gone) | Change::Untracked(gone) = &change {
                        // Its inode may already be another namespace's.
                        inside.remove(&gone.0.ns.inode);
                    }
                    let node = counting.node().expect("only a node finds namespaces");
                    if events_on {
                        let _ = news.send(match &change {
                            Change::New(inode) => match node.spaces().get(inode) {
                                Some(space) => News::seen(space)?,
                                None => continue,
                            },
                            Change::Gone(gone) | Change::Untracked(gone) => {
                                News::Gone(gone.0.ns.inode)
                            }
                        });
                    }
                    let flow = report_change(&change, node, losses, &host, &tags, &time, out)?;
                    if flow == Flow::Closed {
                        return Ok(());
                    }
                }
                let node = counting.node();
                let mut sum = Counts::default();
                for r in &readings {
                    // Requests that came meanwhile are answered between
                    // two namespaces, from the counts as they are: a
                    // client never waits for the whole interval's work.
                    if let (Some(rx), Some(n)) = (asked.as_mut(), node) {
                        while let Ok(a) = rx.try_recv() {
                            if a.reply.is_closed() {
                                continue;
                            }
                            let _ = a.reply.send(answers::answer_now(n, a.request, &host, &tags)?);
                        }
                    }
                    if let (Some(rx), Some(n)) = (scrapes.as_mut(), node) {
                        while let Ok(sc) = rx.try_recv() {
                            if sc.reply.is_closed() {
                                continue;
                            }
                            let page = answers::page_now(n, &inside, out.dropped())?;
                            last_page.keep(page.clone());
                            let _ = sc.reply.send(page.encode(sc.format));
                        }
                    }
                    sum = sum + r.counts;
                    if let Some(owner) = r.owner.as_ref().filter(|_| events_on)
                        && owners_sent.get(&r.netns) != Some(owner)
                    {
                        let _ = news.send(News::Owner(r.netns, owner.clone()));
                        owners_sent.insert(r.netns, owner.clone());
                    }
                    let mut record = CountsRecord {
                        ports: r.ports.as_deref(),
                        ..reading::counts_record(
                            &host,
                            r.netns,
                            r.owner.as_ref(),
                            &r.counts,
                            node,
                            losses,
                            &tags,
                            Some(out.dropped()),
                        )
                    };
                    // As `counts INODE` answers it.
                    let answer = CountsRecord {
                        output_dropped: None,
                        ..record.clone()
                    };
                    board.publish_counts(r.netns, serve::counts_line(&answer));
                    record.verify = r.verify.as_ref();
                    let interval = intervals
                        .as_mut()
                        .map(|m| m.remove(&r.netns).unwrap_or_default());
                    let seen = interval::Seen {
                        netns: r.netns,
                        way: r.way(),
                        owner: r.owner.as_ref(),
                        metrics: interval.as_ref(),
                        requests: &r.requests,
                        moved: r.moved,
                    };
                    let kept = inside.entry(r.netns).or_default();
                    let polled = r.ephemeral.clone();
                    let made = interval::run(&rules, kept, &seen, &time, node, polled)?;
                    made.export(kept, interval.as_ref(), r.ports.as_deref());
                    made.fill(&mut record);
                    if let Some(lines) = kept_records.as_mut() {
                        serve::push_line(lines, &record.at(&time));
                        // A watch of one namespace shows its conntrack
                        // figures too.
                        if let (Scope::One(_), Some(ct)) = (scope, &made.conntrack) {
                            serve::push_line(lines, &ct.record);
                        }
                    }
                    let flow = if args.format == crate::cli::Format::Json {
                        made.send(out, &record, &time)
                    } else {
                        // DataKit's measurements instead of netconn's records.
                        write_points(out, args.format, &r.counts, r.ports.as_deref(), &host, &tags)
                    };
                    if flow == Flow::Closed {
                        return Ok(());
                    }
                }
                board.retain(|netns| readings.iter().any(|r| r.netns == netns));
                board.publish_alerts(
                    inside
                        .values()
                        .flat_map(|k| k.exporter.active_lines())
                        .collect(),
                );
                if scraped && last_page.wanted() {
                    last_page.keep(match node {
                        Some(n) => answers::page_now(n, &inside, out.dropped())?,
                        // Polled: a page from the readings just made.
                        None => answers::polled_page(scope, &readings, &inside, out.dropped()),
                    });
                }
                inside.retain(|netns, _| readings.iter().any(|r| r.netns == *netns));
                if let Scope::All { .. } = scope {
                    let untracked: Vec<u32> = node.map_or_else(Vec::new, |n| {
                        n.untracked().take(UNTRACKED_LISTED).collect()
                    });
                    let host_record =
                        host_record(node, losses, &readings, &sum, &untracked, &host, &time, out);
                    if let Some(lines) = kept_records.as_mut() {
                        serve::push_line(lines, &host_record);
                    }
                    if out.send(&host_record) == Flow::Closed {
                        return Ok(());
                    }
                }
                board.publish_records(kept_records.unwrap_or_default());
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
    drop(counting);
    result
}

/// Untracked namespaces the host record lists at most.
const UNTRACKED_LISTED: usize = 64;

/// The host record of an interval of `--all-namespaces`: the sum of every
/// namespace's counts and netconn's own health.
#[allow(clippy::too_many_arguments)]
fn host_record<'a>(
    node: Option<&Node>,
    losses: reading::Losses,
    readings: &[reading::NamespaceReading],
    sum: &'a Counts,
    untracked: &'a [u32],
    host: &'a str,
    time: &'a str,
    out: &Writer,
) -> HostRecord<'a> {
    HostRecord {
        kind: "host",
        time,
        host,
        source: match node {
            Some(_) => Source::Ebpf,
            None => Source::Poll,
        },
        namespaces: readings.len(),
        namespaces_untracked: node.map_or(0, |n| n.untracked().len()),
        untracked,
        connections: sum,
        lost_events: losses.lost_events,
        resyncs: node.map(Node::resyncs),
        conn_records_lost: losses.conn_records_lost,
        output_dropped: Some(out.dropped()),
        total: sum.total(),
    }
}

/// Writes what a change in the set of namespaces makes: a namespace that
/// went gets its last counts, then the news.
fn report_change(
    change: &Change,
    node: &Node,
    losses: reading::Losses,
    host: &str,
    tags: &crate::config::Tags,
    time: &str,
    out: &Writer,
) -> Result<Flow, CmdError> {
    let (event, netns, owner, last) = match change {
        Change::New(inode) => {
            let Some(space) = node.spaces().get(inode) else {
                return Ok(Flow::Go);
            };
            ("new", *inode, &space.owner, None)
        }
        Change::Gone(gone) => ("gone", gone.0.ns.inode, &gone.0.owner, Some(&gone.1)),
        Change::Untracked(gone) => ("untracked", gone.0.ns.inode, &gone.0.owner, Some(&gone.1)),
    };
    if let Some(last) = last {
        let space = match change {
            Change::Gone(gone) | Change::Untracked(gone) => &gone.0,
            Change::New(_) => unreachable!("a new namespace has no last counts"),
        };
        let record = CountsRecord {
            resyncs: Some(space.state.resyncs),
            last_correction: space.state.last_correction.as_ref().map(|c| {
                crate::output::record::Correction {
                    time: &c.time,
                    reason: c.reason,
                    delta: &c.delta,
                }
            }),
            ..reading::counts_record(
                host,
                netns,
                Some(owner),
                last,
                Some(node),
                losses,
                tags,
                Some(out.dropped()),
            )
        };
        if out.send(&record.at(time)) == Flow::Closed {
            return Ok(Flow::Closed);
        }
    }
    let record = NetnsRecord {
        kind: "netns",
        event,
        time,
        host,
        netns,
        namespace: host::namespace_class(netns),
        owner,
    };
    Ok(out.send(&record))
}
