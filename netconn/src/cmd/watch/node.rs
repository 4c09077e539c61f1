//! `netconn watch --all-namespaces`: every namespace of the host, each
//! interval one counts record per namespace and one host record.

use tokio::time::MissedTickBehavior;

use super::{Signals, bind_metrics, interval, next_request, serve, start_metrics, start_serving};
use crate::cli::WatchArgs;
use crate::cmd::CmdError;
use crate::config::Config;
use crate::host;
use crate::live::node::{Change, Node};
use crate::live::serve as served;
use crate::model::counts::Counts;
use crate::namespaces::discover;
use crate::namespaces::owner::Owner;
use crate::namespaces::target::{run_in, visit};
use crate::output::record::{CountsRecord, HostRecord, NetnsRecord, Source};
use crate::output::writer::{Flow, Writer};
use crate::prometheus::exporter::{Exporter, Health, info};
use crate::prometheus::page::{Family, Labels, Page, Value, labels};

/// One namespace's reading.
struct Reading {
    netns: u32,
    /// How to enter it (for its conntrack figures).
    ns: discover::Namespace,
    owner: Owner,
    counts: Counts,
    verify: Option<Counts>,
    /// Its port groups' series (with groups).
    ports: Option<Vec<crate::output::figures::PortSeries>>,
    /// Its request sockets by listening address and port.
    requests: crate::live::listeners::Requests,
    /// Whether anything moved in it in the interval (see
    /// [`crate::live::node::Space::moved`]); polled: always.
    moved: bool,
}

/// What the thread of `--events` learns of the namespaces.
enum News {
    /// A namespace to read directions by, with its owner.
    Seen {
        netns: u32,
        listening: Vec<u16>,
        locals: std::collections::HashSet<std::net::IpAddr>,
        owner: Owner,
    },
    Owner(u32, Owner),
    Gone(u32),
}

impl News {
    /// A namespace's listeners and addresses, read from inside it (none
    /// when it cannot be entered: directions then go by handshakes only).
    fn seen(space: &crate::live::node::Space) -> News {
        let (listening, locals) = space
            .ns
            .open()
            .and_then(|file| run_in(&file, super::listeners_and_locals).ok()?.ok())
            .unwrap_or_default();
        News::Seen {
            netns: space.ns.inode,
            listening,
            locals,
            owner: space.owner.clone(),
        }
    }

    fn apply(self, records: &mut crate::live::conns::Records) {
        match self {
            News::Seen {
                netns,
                listening,
                locals,
                owner,
            } => {
                records.know_namespace(netns, listening, locals);
                records.set_owner(netns, owner);
            }
            News::Owner(netns, owner) => records.set_owner(netns, owner),
            News::Gone(netns) => records.forget_namespace(netns),
        }
    }
}

/// Where the counts come from.
enum Counting {
    Ebpf(Box<Node>),
    /// A dump of every namespace at every reading.
    Poll,
}

pub(super) fn watch(
    args: &WatchArgs,
    config: Config,
    interval: std::time::Duration,
    runtime: &tokio::runtime::Runtime,
    mut sig: Signals,
    out: &Writer,
    log: &crate::output::log::Log,
) -> Result<(), CmdError> {
    let groups = crate::live::ports::Groups(config.groups.clone());
    let host = host::hostname();
    let metrics_listener = bind_metrics(args)?;
    let mut counting = if args.poll {
        Counting::Poll
    } else {
        let features = crate::ebpf::Features {
            port_groups: !groups.is_empty(),
            conns: args.events,
            tcp_metrics: !args.no_tcp_metrics,
            ephemeral: false,
        };
        let scope = crate::live::node::Scope::All {
            slots: args.max_namespaces,
        };
        match Node::start(scope, groups.clone(), features, interval) {
            Ok(n) => Counting::Ebpf(Box::new(n)),
            Err(e) => {
                log.line(format!(
                    "netconn: eBPF unavailable ({e}); polling every namespace every {} instead",
                    humantime::format_duration(interval)
                ));
                Counting::Poll
            }
        }
    };
    let tags = config.tags.clone();
    let rules = interval::Rules {
        host: &host,
        config: &config,
        tcp_metrics: !args.no_tcp_metrics,
    };
    // What is kept of each namespace between intervals.
    let mut inside: std::collections::HashMap<u32, interval::Kept> = Default::default();
    let path = served::node_socket_path();
    let (mut socket, mut retry_serve) = match counting {
        Counting::Ebpf(_) => serve(&path, log, false),
        Counting::Poll => (None, false),
    };
    // What clients get while the loop is busy.
    let busy = served::Busy::default();
    let board = served::Board::new(super::super::own_netns()?, &busy);
    if let Counting::Ebpf(n) = &counting {
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
    let mut owners_sent: std::collections::HashMap<u32, Owner> = Default::default();
    if let (Some(_), Counting::Ebpf(n)) = (&conns, &counting) {
        for space in n.spaces().values() {
            let _ = news.send(News::seen(space));
            owners_sent.insert(space.ns.inode, space.owner.clone());
        }
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let conn_thread = conns.map(|ring| {
            let (host, stop) = (&host, &stop);
            scope.spawn(move || {
                let records = crate::live::conns::Records::new([], Default::default());
                super::write_conn_records(ring, records, host, out, stop, |r| {
                    for n in heard.try_iter() {
                        n.apply(r);
                    }
                })
            })
        });
        let events_on = conn_thread.is_some();
        let result = runtime.block_on(async {
            let mut asked = start_serving(&socket, &board)?;
            let last_page = std::sync::Arc::new(crate::prometheus::http::LastPage::new(&busy));
            let scraped = metrics_listener.is_some();
            let mut scrapes = start_metrics(metrics_listener, &last_page, &board)?;
            let streaming = matches!(&counting, Counting::Ebpf(n) if n.has_port_groups());
            let mut drain = tokio::time::interval(super::DRAIN_EVERY);
            drain.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut written = 0u64;
            let mut first = true;
            loop {
                let stopping = tokio::select! {
                    _ = ticker.tick() => false,
                    _ = sig.int.recv() => true,
                    _ = sig.term.recv() => true,
                    _ = sig.hup.recv() => {
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
                        out.reopen();
                        continue;
                    }
                    s = next_request(&mut scrapes) => {
                        if s.reply.is_closed() {
                            continue;
                        }
                        let page = page(&mut counting, &groups, &inside, out.dropped())?;
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
                            Counting::Ebpf(n) => answer(n, a.request, &host, &tags)?,
                            Counting::Poll => Vec::new(),
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
                    (socket, retry_serve) = serve(&path, log, true);
                    asked = start_serving(&socket, &board)?;
                }
                let time = host::now_rfc3339();
                let (readings, changes) = read(&mut counting, &groups, args.verify, first)?;
                let mut intervals = match &mut counting {
                    Counting::Ebpf(n) => n.tcp_metrics()?,
                    Counting::Poll => None,
                };
                first = false;
                for change in changes {
                    if let Change::Gone(gone) | Change::Untracked(gone) = &change {
                        // Its inode may already be another namespace's.
                        inside.remove(&gone.0.ns.inode);
                    }
                    if events_on {
                        let _ = news.send(match &change {
                            Change::New(inode) => match &counting {
                                Counting::Ebpf(n) => match n.spaces().get(inode) {
                                    Some(space) => News::seen(space),
                                    None => continue,
                                },
                                Counting::Poll => continue,
                            },
                            Change::Gone(gone) | Change::Untracked(gone) => {
                                News::Gone(gone.0.ns.inode)
                            }
                        });
                    }
                    let (event, netns, owner, last) = match &change {
                        Change::New(inode) => {
                            let Counting::Ebpf(n) = &counting else {
                                continue;
                            };
                            let Some(space) = n.spaces().get(inode) else {
                                continue;
                            };
                            ("new", *inode, &space.owner, None)
                        }
                        Change::Gone(gone) => {
                            ("gone", gone.0.ns.inode, &gone.0.owner, Some(&**gone))
                        }
                        Change::Untracked(gone) => {
                            ("untracked", gone.0.ns.inode, &gone.0.owner, Some(&**gone))
                        }
                    };
                    // A namespace that went gets its last counts, then the news.
                    if let (Some((space, last)), Counting::Ebpf(n)) = (last, &counting) {
                        let record = counts_record(
                            &host,
                            netns,
                            owner,
                            last,
                            Some((n, Some(space))),
                            &tags,
                            Some(out.dropped()),
                            events_on,
                        )?;
                        if out.send(&record.at(&time)) == Flow::Closed {
                            return Ok(());
                        }
                    }
                    let record = NetnsRecord {
                        kind: "netns",
                        event,
                        time: &time,
                        host: &host,
                        netns,
                        namespace: host::namespace_class(netns),
                        owner,
                    };
                    if out.send(&record) == Flow::Closed {
                        return Ok(());
                    }
                }
                let node = match &counting {
                    Counting::Ebpf(n) => Some(n.as_ref()),
                    Counting::Poll => None,
                };
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
                            let _ = a.reply.send(answer_now(n, a.request, &host, &tags)?);
                        }
                    }
                    if let (Some(rx), Some(n)) = (scrapes.as_mut(), node) {
                        while let Ok(sc) = rx.try_recv() {
                            if sc.reply.is_closed() {
                                continue;
                            }
                            let page = page_now(n, &inside, out.dropped())?;
                            last_page.keep(page.clone());
                            let _ = sc.reply.send(page.encode(sc.format));
                        }
                    }
                    sum = sum + r.counts;
                    if events_on && owners_sent.get(&r.netns) != Some(&r.owner) {
                        let _ = news.send(News::Owner(r.netns, r.owner.clone()));
                        owners_sent.insert(r.netns, r.owner.clone());
                    }
                    let mut record = counts_record(
                        &host,
                        r.netns,
                        &r.owner,
                        &r.counts,
                        node.map(|n| (n, n.spaces().get(&r.netns))),
                        &tags,
                        Some(out.dropped()),
                        events_on,
                    )?;
                    // As `counts INODE` answers it.
                    let answer = CountsRecord {
                        output_dropped: None,
                        conn_records_lost: None,
                        ..record.clone()
                    };
                    board.publish_counts(r.netns, served::counts_line(&answer));
                    record.verify = r.verify.as_ref();
                    record.ports = r.ports.as_deref();
                    let interval = intervals
                        .as_mut()
                        .map(|m| m.remove(&r.netns).unwrap_or_default());
                    let seen = interval::Seen {
                        netns: r.netns,
                        way: interval::Way::In(&r.ns),
                        owner: Some(&r.owner),
                        metrics: interval.as_ref(),
                        requests: &r.requests,
                        moved: r.moved,
                    };
                    let kept = inside.entry(r.netns).or_default();
                    let made = interval::run(&rules, kept, &seen, &time, node, None)?;
                    made.export(kept, interval.as_ref(), r.ports.as_deref());
                    made.fill(&mut record);
                    if let Some(lines) = kept_records.as_mut() {
                        served::push_line(lines, &record.at(&time));
                    }
                    if made.send(out, &record, &time) == Flow::Closed {
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
                        Some(n) => page_now(n, &inside, out.dropped())?,
                        // Polled: a page from the readings just made.
                        None => polled_page(&readings, &inside, out.dropped()),
                    });
                }
                inside.retain(|netns, _| readings.iter().any(|r| r.netns == *netns));
                let untracked: Vec<u32> =
                    node.map_or_else(Vec::new, |n| n.untracked().take(UNTRACKED_LISTED).collect());
                let host_record = HostRecord {
                    kind: "host",
                    time: &time,
                    host: &host,
                    source: if node.is_some() {
                        Source::Ebpf
                    } else {
                        Source::Poll
                    },
                    namespaces: readings.len(),
                    namespaces_untracked: node.map_or(0, |n| n.untracked().len()),
                    untracked: &untracked,
                    connections: &sum,
                    lost_events: node.map(Node::lost_events).transpose()?.unwrap_or(0),
                    resyncs: node.map(Node::resyncs),
                    conn_records_lost: node.map(Node::conn_records_lost).transpose()?.flatten(),
                    output_dropped: Some(out.dropped()),
                    total: sum.total(),
                };
                board.publish_records(match kept_records {
                    Some(mut lines) => {
                        served::push_line(&mut lines, &host_record);
                        lines
                    }
                    None => Vec::new(),
                });
                if out.send(&host_record) == Flow::Closed {
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
    // Stop serving, then detach the programs.
    drop(socket);
    drop(counting);
    result
}

/// Untracked namespaces the host record lists at most.
const UNTRACKED_LISTED: usize = 64;

/// The labels of a namespace's series: its inode, class and owner.
fn namespace_labels(netns: u32, owner: &Owner) -> Labels {
    let known = |v: &Option<String>| v.clone().unwrap_or_default();
    labels([
        ("netns", netns.to_string()),
        ("namespace", host::namespace_class(netns).into()),
        ("netns_name", known(&owner.netns_name)),
        ("runtime", owner.runtime.unwrap_or_default().into()),
        ("container_id", known(&owner.container_id)),
        ("pod", known(&owner.k8s_pod_name)),
        ("pod_uid", known(&owner.k8s_pod_uid)),
        ("k8s_namespace", known(&owner.k8s_namespace)),
    ])
}

/// A scrape's page: every namespace's series (counts read now, its
/// mini-sockets read again where the kernel shows they may have changed),
/// labelled with the namespace, then netconn's own health.
fn page(
    counting: &mut Counting,
    groups: &crate::live::ports::Groups,
    inside: &std::collections::HashMap<u32, interval::Kept>,
    output_dropped: u64,
) -> Result<Page, CmdError> {
    match counting {
        Counting::Ebpf(node) => {
            let inodes: Vec<u32> = node.spaces().keys().copied().collect();
            for inode in inodes {
                node.refresh_mini_sockets(inode)?;
            }
            node.drain_stream();
            page_now(node, inside, output_dropped)
        }
        Counting::Poll => {
            // Polling: every namespace dumped now.
            let (readings, _) = read(counting, groups, false, true)?;
            Ok(polled_page(&readings, inside, output_dropped))
        }
    }
}

/// A polled node's page, from its readings.
fn polled_page(
    readings: &[Reading],
    inside: &std::collections::HashMap<u32, interval::Kept>,
    output_dropped: u64,
) -> Page {
    let none = Exporter::new();
    let mut page = Page(vec![info(Source::Poll)]);
    for r in readings {
        let exporter = inside.get(&r.netns).map_or(&none, |k| &k.exporter);
        let labels = namespace_labels(r.netns, &r.owner);
        page.merge(exporter.families(&r.counts, r.ports.as_deref()), &labels);
    }
    let health = Health {
        output_dropped,
        ..Health::default()
    };
    page_end(page, readings.len(), None, health)
}

/// The page from every namespace's state as it is: for scrapes answered
/// while the interval's work runs (between two namespaces).
fn page_now(
    node: &Node,
    inside: &std::collections::HashMap<u32, interval::Kept>,
    output_dropped: u64,
) -> Result<Page, CmdError> {
    let none = Exporter::new();
    let mut page = Page(vec![info(Source::Ebpf)]);
    for (inode, space) in node.spaces() {
        let counts = node.counts(*inode)?;
        let ports = node.port_series_now(*inode);
        let labels = namespace_labels(*inode, &space.owner);
        let exporter = inside.get(inode).map_or(&none, |k| &k.exporter);
        page.merge(exporter.families(&counts, ports.as_deref()), &labels);
    }
    let health = Health {
        lost_events: node.lost_events()?,
        resyncs: Some(node.resyncs()),
        conn_records_lost: node.conn_records_lost()?,
        output_dropped,
    };
    let untracked = node.untracked().len();
    Ok(page_end(page, node.spaces().len(), Some(untracked), health))
}

/// The node-wide families that close a page.
fn page_end(mut page: Page, namespaces: usize, untracked: Option<usize>, health: Health) -> Page {
    page.merge(
        vec![
            Family::new("netconn_namespaces", "Network namespaces counted.")
                .with(vec![], Value::Gauge(namespaces as i64)),
        ],
        &Vec::new(),
    );
    if let Some(untracked) = untracked {
        page.merge(
            vec![
                Family::new(
                    "netconn_namespaces_untracked",
                    "Namespaces past the bound of those counted apart in the kernel.",
                )
                .with(vec![], Value::Gauge(untracked as i64)),
            ],
            &Vec::new(),
        );
    }
    page.merge(crate::prometheus::exporter::health(health), &Vec::new());
    page
}

/// The answer to a client of `node.sock`: the counts record of the
/// namespace asked for (`counts INODE`; plain `counts`: netconn's own), or
/// nothing when that namespace is not counted. Its mini-sockets are read
/// again first when the kernel shows they may have changed.
fn answer(
    node: &mut Node,
    request: served::Request,
    host: &str,
    tags: &crate::config::Tags,
) -> Result<Vec<u8>, CmdError> {
    let inode = match request {
        served::Request::CountsOf(inode) => Some(inode),
        served::Request::Counts => Some(super::super::own_netns()?),
        served::Request::Owners { .. } | served::Request::Alerts | served::Request::Records => None,
    };
    if let Some(inode) = inode
        && node.spaces().contains_key(&inode)
    {
        node.refresh_mini_sockets(inode)?;
    }
    answer_now(node, request, host, tags)
}

/// The same from the namespace's state as it is (its mini-sockets as this
/// interval read them): for requests answered while the interval's work
/// runs.
fn answer_now(
    node: &Node,
    request: served::Request,
    host: &str,
    tags: &crate::config::Tags,
) -> Result<Vec<u8>, CmdError> {
    let inode = match request {
        served::Request::CountsOf(inode) => inode,
        served::Request::Counts => super::super::own_netns()?,
        // The board's.
        served::Request::Owners { .. } | served::Request::Alerts | served::Request::Records => {
            return Ok(Vec::new());
        }
    };
    if !node.spaces().contains_key(&inode) {
        return Ok(Vec::new());
    }
    let counts = node.counts(inode)?;
    let space = &node.spaces()[&inode];
    let record = counts_record(
        host,
        inode,
        &space.owner,
        &counts,
        Some((node, Some(space))),
        tags,
        None,
        false,
    )?;
    Ok(served::counts_line(&record))
}

/// One namespace's counts record; `node` None: polled, else with the
/// namespace's state when counted (its resyncs). `output_dropped`:
/// the writer's count (None in answers to `check`); `events`: with
/// `conn_records_lost`.
#[allow(clippy::too_many_arguments)]
fn counts_record<'a>(
    host: &'a str,
    netns: u32,
    owner: &'a crate::namespaces::owner::Owner,
    counts: &'a Counts,
    node: Option<(&Node, Option<&'a crate::live::node::Space>)>,
    tags: &'a crate::config::Tags,
    output_dropped: Option<u64>,
    events: bool,
) -> Result<CountsRecord<'a>, CmdError> {
    let space = node.and_then(|n| n.1);
    let node = node.map(|n| n.0);
    let source = match node {
        Some(_) => Source::Ebpf,
        None => Source::Poll,
    };
    Ok(CountsRecord {
        namespace: Some((host::namespace_class(netns), owner)),
        lost_events: node.map(Node::lost_events).transpose()?.unwrap_or(0),
        conn_records_lost: node
            .filter(|_| events)
            .map(Node::conn_records_lost)
            .transpose()?
            .flatten(),
        output_dropped,
        // The namespace's own.
        resyncs: node.map(|_| space.map_or(0, |s| s.state.resyncs)),
        last_correction: space
            .and_then(|s| s.state.last_correction.as_ref())
            .map(|c| crate::output::record::Correction {
                time: &c.time,
                reason: c.reason,
                delta: &c.delta,
            }),
        tags: Some(tags),
        ..CountsRecord::new(host, source, netns, counts)
    })
}

/// Every namespace's counts now (and with `verify` a dump's), and the
/// namespaces that came and went since the last reading.
fn read(
    counting: &mut Counting,
    groups: &crate::live::ports::Groups,
    verify: bool,
    first: bool,
) -> Result<(Vec<Reading>, Vec<Change>), CmdError> {
    let dump = |ns: &discover::Namespace| -> Option<Vec<crate::model::socket::DumpedSocket>> {
        let file = ns.open()?;
        visit(&file, || {
            let mut dump = Vec::new();
            for ct in crate::model::state::ConnType::ALL {
                crate::tables::snapshot::dump(ct, &mut dump)?;
            }
            Ok::<_, std::io::Error>(dump)
        })
        .ok()?
        .ok()
    };
    match counting {
        Counting::Ebpf(node) => {
            // At start every namespace was just snapshotted.
            let changes = if first { Vec::new() } else { node.maintain()? };
            let mut readings = Vec::new();
            let inodes: Vec<u32> = node.spaces().keys().copied().collect();
            for inode in inodes {
                let ports = node.port_series(inode, None);
                let space = &node.spaces()[&inode];
                readings.push(Reading {
                    netns: inode,
                    ns: space.ns.clone(),
                    owner: space.owner.clone(),
                    counts: node.counts(inode)?,
                    verify: if verify {
                        dump(&space.ns).map(|d| Counts::from_dump(&d))
                    } else {
                        None
                    },
                    ports,
                    requests: space.state.requests.clone(),
                    moved: space.state.moved,
                });
            }
            Ok((readings, changes))
        }
        Counting::Poll => {
            let mut readings = Vec::new();
            for ns in discover::scan().into_values() {
                let Some(sockets) = dump(&ns) else { continue };
                let counts = Counts::from_dump(&sockets);
                let ports = (!groups.is_empty()).then(|| {
                    let mut ports = crate::live::ports::PortTracker::new(groups.clone());
                    ports.rebuild(&sockets, &[], 0, 0);
                    ports.series(None)
                });
                readings.push(Reading {
                    netns: ns.inode,
                    owner: ns.owner(),
                    ns: ns.clone(),
                    verify: verify.then_some(counts),
                    counts,
                    ports,
                    requests: crate::live::listeners::requests(&sockets),
                    moved: true,
                });
            }
            Ok((readings, Vec::new()))
        }
    }
}
