//! Where a watch's counts come from, for one namespace or for every one:
//! live from the kernel programs (the node), or a dump of the socket
//! tables at every reading; what one namespace's reading holds, and its
//! counts record.

use crate::cmd::CmdError;
use crate::live::node::{Change, Node, Scope};
use crate::live::ports::{Groups, PortTracker};
use crate::model::counts::Counts;
use crate::model::socket::DumpedSocket;
use crate::namespaces::discover::{self, Namespace, Way};
use crate::namespaces::owner::Owner;
use crate::output::record::{CountsRecord, Source};

/// Where the counts come from.
pub(super) enum Counting {
    Ebpf(Box<Node>),
    /// A dump at every reading: of the calling thread's namespace, or of
    /// every namespace found.
    Poll(Scope),
}

impl Counting {
    pub fn node(&self) -> Option<&Node> {
        match self {
            Self::Ebpf(n) => Some(n),
            Self::Poll(_) => None,
        }
    }

    pub fn scope(&self) -> Scope {
        match self {
            Self::Ebpf(n) => n.scope(),
            Self::Poll(scope) => *scope,
        }
    }
}

/// One namespace's reading.
pub(super) struct NamespaceReading {
    pub netns: u32,
    /// How to enter it; None: the calling thread's.
    pub ns: Option<Namespace>,
    /// What it belongs to (with `--all-namespaces`).
    pub owner: Option<Owner>,
    pub counts: Counts,
    pub verify: Option<Counts>,
    /// Its port groups' series (with groups).
    pub ports: Option<Vec<crate::output::figures::PortSeries>>,
    /// Its request sockets by listening address and port.
    pub requests: crate::live::listeners::Requests,
    /// Whether anything moved in it in the interval (see
    /// [`crate::live::space::SpaceState::moved`]); polled: always.
    pub moved: bool,
    /// Ephemeral ports, as a poll of one namespace reads them with its
    /// dump (a live watch reads them with the interval's listeners).
    pub ephemeral: Option<crate::live::ephemeral::EphemeralReading>,
}

impl NamespaceReading {
    pub fn way(&self) -> Way<'_> {
        match &self.ns {
            None => Way::Here,
            Some(ns) => Way::In(ns),
        }
    }
}

/// Every socket of a namespace, dumped from inside it; None when it
/// cannot be entered (it went away).
fn dump(way: Way<'_>) -> Option<std::io::Result<Vec<DumpedSocket>>> {
    way.visit(|| {
        let mut dump = Vec::new();
        for ct in crate::model::state::ConnType::ALL {
            crate::tables::snapshot::dump(ct, &mut dump)?;
        }
        Ok(dump)
    })
}

/// Every namespace's counts now, each port group series with its TCP
/// metrics in `metrics` (and with `verify` a dump's), and the namespaces
/// that came and went since the last reading. `first`: the reading right
/// after start, when every namespace was just snapshotted.
pub(super) fn read(
    counting: &mut Counting,
    groups: &Groups,
    verify: bool,
    first: bool,
    metrics: Option<&std::collections::HashMap<u32, crate::live::metrics::Interval>>,
) -> Result<(Vec<NamespaceReading>, Vec<Change>), CmdError> {
    match counting {
        Counting::Ebpf(node) => {
            let changes = if first { Vec::new() } else { node.maintain()? };
            let mut readings = Vec::new();
            let inodes: Vec<u32> = node.spaces().keys().copied().collect();
            for inode in inodes {
                let ports = node.port_series(inode, metrics.and_then(|m| m.get(&inode)));
                let space = &node.spaces()[&inode];
                let ns = (!space.here()).then(|| space.ns.clone());
                let mut r = NamespaceReading {
                    netns: inode,
                    owner: ns.is_some().then(|| space.owner.clone()),
                    ns,
                    counts: node.counts(inode)?,
                    verify: None,
                    ports,
                    requests: space.state.requests.clone(),
                    moved: space.state.moved,
                    ephemeral: None,
                };
                if verify {
                    r.verify = match dump(r.way()) {
                        Some(Ok(d)) => Some(Counts::from_dump(&d)),
                        Some(Err(e)) if r.ns.is_none() => return Err(CmdError::Dump(e)),
                        _ => None,
                    };
                }
                readings.push(r);
            }
            Ok((readings, changes))
        }
        Counting::Poll(scope) => {
            let scope = *scope;
            let found: Vec<Option<Namespace>> = match scope {
                Scope::One(_) => vec![None],
                Scope::All { .. } => discover::scan().into_values().map(Some).collect(),
            };
            let mut readings = Vec::new();
            for ns in found {
                let way = ns.as_ref().map_or(Way::Here, Way::In);
                let sockets = match dump(way) {
                    Some(Ok(sockets)) => sockets,
                    Some(Err(e)) if ns.is_none() => return Err(CmdError::Dump(e)),
                    // Gone meanwhile.
                    _ => continue,
                };
                let counts = Counts::from_dump(&sockets);
                let ports = (!groups.is_empty()).then(|| {
                    let mut ports = PortTracker::new(groups.clone());
                    ports.rebuild(&sockets, &[], 0, 0);
                    ports.series(None)
                });
                // A poll of one namespace has its whole table at hand.
                let ephemeral = ns.is_none().then(|| {
                    let range = crate::tables::port_range::PortRange::read().ok()?;
                    let all = crate::live::ephemeral::from_dump(&sockets, &range);
                    Some(crate::live::ephemeral::EphemeralReading::new(
                        range, all, None,
                    ))
                });
                readings.push(NamespaceReading {
                    netns: match (&ns, scope) {
                        (Some(ns), _) => ns.inode,
                        (None, Scope::One(inode)) => inode,
                        (None, Scope::All { .. }) => unreachable!("every namespace is found"),
                    },
                    owner: ns.as_ref().map(Namespace::owner),
                    ns,
                    verify: verify.then_some(counts),
                    counts,
                    ports,
                    requests: crate::live::listeners::requests(&sockets),
                    moved: true,
                    ephemeral: ephemeral.flatten(),
                });
            }
            Ok((readings, Vec::new()))
        }
    }
}

/// What the kernel could not hand over since start, read once for all
/// the records of an interval (three reads of the probe each time).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Losses {
    pub lost_events: u64,
    /// None without `--events`.
    pub conn_records_lost: Option<u64>,
}

impl Losses {
    /// The node's; none when polled.
    pub fn of(node: Option<&Node>) -> Result<Self, CmdError> {
        let Some(node) = node else {
            return Ok(Self::default());
        };
        Ok(Self {
            lost_events: node.lost_events()?,
            conn_records_lost: node.conn_records_lost()?,
        })
    }
}

/// One namespace's counts record; `node` None: polled. `owner`: what the
/// namespace belongs to (`--all-namespaces`). `losses`: the node's, as
/// read for this interval. `output_dropped`: the writer's count (None in
/// answers to clients).
#[allow(clippy::too_many_arguments)]
pub(super) fn counts_record<'a>(
    host: &'a str,
    netns: u32,
    owner: Option<&'a Owner>,
    counts: &'a Counts,
    node: Option<&'a Node>,
    losses: Losses,
    tags: &'a crate::config::Tags,
    output_dropped: Option<u64>,
) -> CountsRecord<'a> {
    let space = node.and_then(|n| n.spaces().get(&netns));
    CountsRecord {
        namespace: owner.map(|o| (crate::host::namespace_class(netns), o)),
        lost_events: losses.lost_events,
        conn_records_lost: losses.conn_records_lost,
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
        ..CountsRecord::new(
            host,
            match node {
                Some(_) => Source::Ebpf,
                None => Source::Poll,
            },
            netns,
            counts,
        )
    }
}
