//! One namespace's work at each interval, the same for a watch of one
//! namespace and of every namespace: what only a thread inside it can read
//! (its netstat counters, listening sockets and conntrack table, in one
//! visit), its listeners' figures, its alerts, its exporter's series, and
//! the records they make, written in one order.

use crate::alerts::{Alerting, Stamp};
use crate::cmd::CmdError;
use crate::conntrack::Monitor;
use crate::live::listeners::{Listeners, NewListeners, Requests};
use crate::live::metrics::{Interval, Listen};
use crate::live::node::Node;
use crate::namespaces::discover::Way;
use crate::namespaces::owner::Owner;
use crate::output::alert::ListenerAlert;
use crate::output::figures::{IntervalFigures, ListenerFigures, PortSeries};
use crate::output::record::CountsRecord;
use crate::output::writer::{Flow, Writer};
use crate::prometheus::exporter::Exporter;
use crate::tables::listeners::ListenSocket;

/// What is kept of a namespace between intervals.
#[derive(Default)]
pub(super) struct Kept {
    conntrack: Option<Monitor>,
    /// Its listen-queue counters.
    listen: Option<Listen>,
    /// Its listeners' drop counters.
    listeners: Option<Listeners>,
    /// Listeners new since its first interval (`new_listener` alerts).
    new_listeners: Option<NewListeners>,
    /// Its interval alerts' state.
    alerting: Option<Alerting>,
    /// Its listening sockets as last dumped.
    listening: Option<Vec<ListenSocket>>,
    /// Its series for scrapers.
    pub exporter: Exporter,
}

/// What the configuration gives every namespace's interval.
pub(super) struct Rules<'a> {
    pub host: &'a str,
    pub config: &'a crate::config::Config,
    /// TCP metrics are on.
    pub tcp_metrics: bool,
}

impl Kept {
    /// What the calling thread's namespace keeps, started before the
    /// programs load (its conntrack events, listen counters and listeners'
    /// drops then count from the start, and the first interval's rates span
    /// the start-up): an error here is the watch's.
    pub fn here(config: &crate::config::Config, tcp_metrics: bool) -> Result<Self, CmdError> {
        Ok(Self {
            // Its own: the table's events too.
            conntrack: Some(Monitor::new(true, config.conntrack)),
            listen: match tcp_metrics {
                true => Some(
                    Listen::start().map_err(CmdError::system("cannot read /proc/net/netstat"))?,
                ),
                false => None,
            },
            listeners: Some(Listeners::start()),
            ..Self::default()
        })
    }
}

/// One namespace at this interval.
pub(super) struct Seen<'a> {
    pub netns: u32,
    pub way: Way<'a>,
    /// Its owner (with `--all-namespaces`).
    pub owner: Option<&'a Owner>,
    /// Its TCP metrics of the interval.
    pub metrics: Option<&'a Interval>,
    pub requests: &'a Requests,
    /// Whether anything moved in it (see
    /// [`crate::live::space::SpaceState::moved`]).
    pub moved: bool,
}

/// What the interval made of one namespace.
pub(super) struct Made<'a> {
    pub tcp_metrics: Option<IntervalFigures>,
    pub listeners: Option<Vec<ListenerFigures>>,
    pub ephemeral: Option<crate::live::ephemeral::EphemeralReading>,
    pub conntrack: Option<crate::conntrack::TableReading<'a>>,
    /// `new_listener` alerts.
    pub new_listeners: Vec<ListenerAlert>,
    /// The other alert kinds'.
    pub alerts: crate::alerts::IntervalAlerts,
}

/// One namespace's interval. `node`: the live counts (owners, ephemeral
/// ports), None when polled; `ephemeral`: a poll's ephemeral ports.
pub(super) fn run<'a>(
    rules: &Rules<'a>,
    kept: &mut Kept,
    seen: &Seen<'_>,
    time: &'a str,
    node: Option<&Node>,
    ephemeral: Option<crate::live::ephemeral::EphemeralReading>,
) -> Result<Made<'a>, CmdError> {
    let config = rules.config;
    let here = matches!(seen.way, Way::Here);
    // Nothing moved in it and no connection waits to be accepted: its
    // listeners are as last dumped (only accept() changes them without an
    // event or a segment, and it only empties queues).
    let still = !seen.moved
        && (kept.listening.as_ref()).is_some_and(|l| l.iter().all(|s| s.accept_queue == 0));
    // Each part read apart: one that fails in another namespace leaves
    // the others.
    let inside = seen.way.visit(|| {
        let monitor = kept
            .conntrack
            .get_or_insert_with(|| Monitor::polled(config.conntrack));
        let figures = if rules.tcp_metrics {
            let listen = match kept.listen.take() {
                Some(l) => Ok(l),
                None => Listen::start(),
            };
            Some(listen.and_then(|mut l| {
                let figures = if still {
                    Ok(crate::live::metrics::figures_with(
                        seen.metrics,
                        l.interval_unmoved(),
                        config.top_ports,
                    ))
                } else {
                    crate::live::metrics::figures(seen.metrics, &mut l, config.top_ports)
                };
                kept.listen = Some(l);
                figures
            }))
        } else {
            None
        };
        let listening = match still {
            true => Ok(kept.listening.clone().unwrap_or_default()),
            false => crate::tables::listeners::dump(),
        };
        let ct = monitor.read(rules.host, seen.netns, time);
        (figures, listening, ct)
    });
    let (figures, now, ct) = match inside {
        // Its own namespace must be readable; another may be gone.
        Some((figures, listening, ct)) if here => (
            figures
                .transpose()
                .map_err(CmdError::system("cannot read /proc/net/netstat"))?,
            Some(listening.map_err(CmdError::Dump)?),
            Some(ct),
        ),
        Some((figures, listening, ct)) => (figures.and_then(Result::ok), listening.ok(), Some(ct)),
        None => (None, None, None),
    };
    kept.listening.clone_from(&now);
    let ephemeral = match (node, &now) {
        (Some(n), Some(now)) => {
            let listening = now.iter().map(|l| l.port).collect();
            n.ephemeral(&listening)?
        }
        _ => ephemeral,
    };
    let owner = |cookie| node.and_then(|n| n.owner_of(cookie));
    let mut new_listeners = now.as_ref().map_or_else(Vec::new, |now| {
        kept.new_listeners
            .get_or_insert_with(|| NewListeners::new(config.allowed_listeners.clone()))
            .check(now, owner, rules.host, seen.netns, time)
    });
    for a in &mut new_listeners {
        a.head.owner = seen.owner.cloned();
    }
    let listeners = now.map(|now| {
        kept.listeners
            .get_or_insert_with(|| Listeners::from(&now))
            .figures(now, seen.requests, seen.metrics, owner)
    });
    let stamp = Stamp {
        host: rules.host,
        netns: seen.netns,
        time,
        owner: seen.owner,
    };
    let alerts = kept
        .alerting
        .get_or_insert_with(|| {
            Alerting::new(
                config.conn_spike,
                config.syn_flood,
                config.port_scan,
                config.port_exhaustion,
            )
        })
        .interval(
            seen.metrics,
            listeners.as_deref().unwrap_or_default(),
            ephemeral.as_ref(),
            &stamp,
            // Only for an alert record: into the namespace.
            |port, states| {
                seen.way
                    .visit(|| crate::tables::sockdiag::peers_of_port(port, states))
                    .and_then(Result::ok)
                    .unwrap_or_default()
            },
        );
    Ok(Made {
        tcp_metrics: figures,
        listeners,
        ephemeral,
        conntrack: ct,
        new_listeners,
        alerts,
    })
}

impl Made<'_> {
    /// Hands the interval's figures and alerts to the namespace's exporter.
    pub fn export(
        &self,
        kept: &mut Kept,
        metrics: Option<&Interval>,
        ports: Option<&[PortSeries]>,
    ) {
        let mut raised = super::raised(
            self.conntrack.as_ref().and_then(|c| c.alert.as_ref()),
            &self.new_listeners,
        );
        raised.extend(self.alerts.seen());
        kept.exporter
            .interval(crate::prometheus::exporter::IntervalInput {
                tcp: self.tcp_metrics.as_ref(),
                raw: metrics.map(|i| &i.total),
                ports,
                listeners: self.listeners.as_deref(),
                conntrack: self.conntrack.as_ref().map(|c| &c.record),
                raised,
            });
    }

    /// Writes the namespace's records: counts, conntrack, then every alert
    /// kind.
    pub fn send(&self, out: &Writer, record: &CountsRecord<'_>, time: &str) -> Flow {
        let closed = out.send(&record.at(time)) == Flow::Closed
            || self.conntrack.as_ref().is_some_and(|ct| {
                out.send(&ct.record) == Flow::Closed
                    || ct
                        .alert
                        .as_ref()
                        .is_some_and(|a| out.send(a) == Flow::Closed)
            })
            || self
                .new_listeners
                .iter()
                .any(|a| out.send(a) == Flow::Closed)
            || (self.alerts.0.iter()).any(|a| out.send(a) == Flow::Closed);
        match closed {
            true => Flow::Closed,
            false => Flow::Go,
        }
    }

    /// Fills a counts record with the interval's figures.
    pub fn fill<'r>(&'r self, record: &mut CountsRecord<'r>) {
        record.tcp_metrics = self.tcp_metrics.as_ref();
        record.listeners = self.listeners.as_deref();
        record.ephemeral_ports = self.ephemeral.as_ref().map(|e| &e.figures);
    }
}
