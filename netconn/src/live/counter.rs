//! Where a watch's counts come from: live from the kernel programs (the
//! node fixed to one namespace), or a poll of the socket tables at every
//! reading; and what one reading reports.

use crate::config::Tags;
use crate::live::node::{Node, Scope, TrackerError};
use crate::live::ports::{Groups, PortTracker};
use crate::model::counts::Counts;
use crate::model::state::ConnType;
use crate::output::figures::{IntervalFigures, PortSeries};
use crate::output::record::{Correction, CountsRecord, Source};

/// Where a watch's counts come from.
pub enum Counter {
    Ebpf(Box<Node>),
    /// Polling, with the port groups to classify each dump by.
    Poll(Groups),
}

/// What one record reports besides the host and time.
pub struct Reading {
    pub counts: Counts,
    pub source: Source,
    pub lost_events: u64,
    pub conn_records_lost: Option<u64>,
    pub resyncs: Option<u64>,
    pub correction: Option<crate::live::space::Correction>,
    pub ports: Option<Vec<PortSeries>>,
    pub tcp_metrics: Option<IntervalFigures>,
    /// The listening sockets (interval records).
    pub listeners: Option<Vec<crate::output::figures::ListenerFigures>>,
    /// Request sockets per listening address and port, from the last dump
    /// that read them.
    pub requests: crate::live::listeners::Requests,
    /// Ephemeral ports, as a poll reads them with its dump (a live
    /// watch reads them with the interval's listeners).
    pub ephemeral: Option<crate::live::ephemeral::EphemeralReading>,
}

impl Counter {
    /// The counts now. `maintain`: also check for losses and drift (each
    /// interval); without it only what changes without events is re-read
    /// (answers to `check`, which must be quick). `metrics`: the interval's
    /// TCP metrics, for the port groups' series.
    pub fn read(
        &mut self,
        maintain: bool,
        metrics: Option<&crate::live::metrics::Interval>,
    ) -> Result<Reading, TrackerError> {
        match self {
            Counter::Ebpf(n) => {
                let Scope::One(inode) = n.scope() else {
                    unreachable!("a counter counts one namespace");
                };
                if maintain {
                    n.maintain()?;
                } else {
                    n.refresh_mini_sockets(inode)?;
                }
                let ports = n.port_series(inode, metrics);
                let state = &n.spaces()[&inode].state;
                Ok(Reading {
                    ports,
                    tcp_metrics: None,
                    listeners: None,
                    requests: state.requests.clone(),
                    counts: n.counts(inode)?,
                    source: Source::Ebpf,
                    lost_events: n.lost_events()?,
                    conn_records_lost: n.conn_records_lost()?,
                    resyncs: Some(state.resyncs),
                    correction: state.last_correction.clone(),
                    ephemeral: None,
                })
            }
            Counter::Poll(groups) => {
                let mut dump = Vec::new();
                for ct in ConnType::ALL {
                    crate::tables::snapshot::dump(ct, &mut dump).map_err(TrackerError::Dump)?;
                }
                let ports = (!groups.is_empty()).then(|| {
                    let mut ports = PortTracker::new(groups.clone());
                    ports.rebuild(&dump, &[], 0, 0);
                    ports.series(None)
                });
                Ok(Reading {
                    counts: Counts::from_dump(&dump),
                    source: Source::Poll,
                    lost_events: 0,
                    conn_records_lost: None,
                    resyncs: None,
                    correction: None,
                    ports,
                    tcp_metrics: None,
                    listeners: None,
                    requests: crate::live::listeners::requests(&dump),
                    // A poll has the whole table at hand.
                    ephemeral: crate::tables::port_range::PortRange::read()
                        .ok()
                        .map(|range| {
                            let all = crate::live::ephemeral::from_dump(&dump, &range);
                            crate::live::ephemeral::EphemeralReading::new(range, all, None)
                        }),
                })
            }
        }
    }

    /// Applies streamed events (port groups) between readings.
    pub fn drain(&mut self) {
        if let Counter::Ebpf(n) = self {
            n.drain_stream();
        }
    }
}

impl Reading {
    pub fn record<'a>(
        &'a self,
        host: &'a str,
        netns: u32,
        tags: &'a Tags,
        verify: Option<&'a Counts>,
        output_dropped: Option<u64>,
    ) -> CountsRecord<'a> {
        CountsRecord {
            namespace: None,
            tags: Some(tags),
            ports: self.ports.as_deref(),
            tcp_metrics: self.tcp_metrics.as_ref(),
            listeners: self.listeners.as_deref(),
            ephemeral_ports: self.ephemeral.as_ref().map(|e| &e.figures),
            host,
            source: self.source,
            netns,
            counts: &self.counts,
            lost_events: self.lost_events,
            conn_records_lost: self.conn_records_lost,
            output_dropped,
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
