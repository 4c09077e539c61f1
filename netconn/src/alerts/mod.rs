//! Alerts: the hysteresis they share ([`Hysteresis`]), and those computed
//! on each interval's figures, one file each (their kinds are
//! [`crate::model::alert::Kind`]): `conn_spike` (new connections per second against a baseline
//! learned while netconn runs), `syn_flood` (handshakes left uncompleted
//! on a listener), `port_scan` (one address touching many closed ports)
//! and `port_exhaustion` (ephemeral ports to one destination running
//! out). Each keeps one state machine per key and says which peers are
//! behind it (a dump of that port's sockets, taken only when an alert is
//! raised or changes level). `new_listener` is the listeners' (see
//! [`crate::live::listeners`]) and `conntrack_full` the conntrack
//! monitor's.

mod conn_spike;
mod hysteresis;
mod port_exhaustion;
mod port_scan;
mod syn_flood;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::model::alert::Kind;
pub use conn_spike::{ConnSpikes, MAX_SPIKE_KEYS, SpikeKey};
pub use hysteresis::{Hysteresis, Level};
pub use port_exhaustion::PortExhaustion;
pub use port_scan::{MAX_SCAN_PAIRS, PortScans, SCAN_SAMPLE};
pub use syn_flood::SynFloods;

use crate::config::{ExhaustionConfig, ScanConfig, SpikeConfig, SynFloodConfig, Thresholds};
use crate::output::alert::{
    AlertHead, ExhaustionAlert, Peer, ScanAlert, SpikeAlert, SynFloodAlert,
};
use crate::output::figures::ListenerFigures;

/// The most peers an alert names.
pub const TOP_PEERS: usize = 5;

/// The peers behind an alert, most sockets first.
pub fn top(peers: HashMap<IpAddr, u32>) -> Vec<Peer> {
    let mut v: Vec<Peer> = peers
        .into_iter()
        .map(|(addr, sockets)| Peer { addr, sockets })
        .collect();
    v.sort_by(|a, b| b.sockets.cmp(&a.sockets).then(a.addr.cmp(&b.addr)));
    v.truncate(TOP_PEERS);
    v
}

/// Where an alert record goes out: the host, namespace and time.
pub struct Stamp<'a> {
    pub host: &'a str,
    pub netns: u32,
    pub time: &'a str,
    /// (`--all-namespaces`) What the namespace belongs to.
    pub owner: Option<&'a crate::namespaces::owner::Owner>,
}

impl Stamp<'_> {
    fn head(&self, alert: Kind, level: Level) -> AlertHead {
        AlertHead {
            kind: "alert",
            alert,
            status: level.name(),
            time: self.time.to_owned(),
            host: self.host.to_owned(),
            netns: self.netns,
            owner: self.owner.cloned(),
        }
    }
}

/// One alert's level with hysteresis and when it was raised.
#[derive(Debug)]
struct Raising {
    alert: Hysteresis,
    since: Option<String>,
}

impl Raising {
    fn new(thresholds: Thresholds) -> Self {
        Self {
            alert: Hysteresis::new(thresholds),
            since: None,
        }
    }

    fn level(&self) -> Level {
        self.alert.level
    }

    /// The new level when `value` changes it, with when the alert was
    /// raised (`time` for a new one); a clear ends it.
    fn update(&mut self, value: f64, time: &str) -> Option<(Level, String)> {
        let level = self.alert.update(value)?;
        let since = self.since.get_or_insert_with(|| time.to_owned()).clone();
        if level == Level::Clear {
            self.since = None;
        }
        Some((level, since))
    }
}

/// Moves a learned mean toward `value`: the plain mean of what was seen
/// until `window` has passed (an exponential mean started from the first
/// interval would lag a steady rate), then an exponentially weighted one
/// over the window. `watched`: how long it has learned, this interval
/// included.
fn learn(mean: &mut f64, value: f64, seconds: f64, window: Duration, watched: Duration) {
    let span = window.min(watched).as_secs_f64();
    let alpha = (seconds / span.max(seconds)).min(1.0);
    *mean += alpha * (value - *mean);
}
fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The interval alerts of one namespace, fed once per interval.
#[derive(Debug)]
pub struct Alerting {
    spikes: ConnSpikes,
    floods: SynFloods,
    scans: PortScans,
    exhaustion: PortExhaustion,
    last: std::time::Instant,
}

impl Alerting {
    pub fn new(
        spike: SpikeConfig,
        flood: SynFloodConfig,
        scan: ScanConfig,
        exhaustion: ExhaustionConfig,
    ) -> Self {
        Self {
            spikes: ConnSpikes::new(spike),
            floods: SynFloods::new(flood),
            scans: PortScans::new(scan),
            exhaustion: PortExhaustion::new(exhaustion),
            last: std::time::Instant::now(),
        }
    }

    /// One interval: its TCP metrics (without them, no spikes and no
    /// SYN-ACK figures) and listeners. `peers(port, states)`: the remote
    /// addresses of the namespace's sockets on a port
    /// ([`crate::tables::sockdiag::peers_of_port`] in it), asked only for
    /// an alert record.
    pub fn interval(
        &mut self,
        metrics: Option<&crate::live::metrics::Interval>,
        listeners: &[ListenerFigures],
        ephemeral: Option<&crate::live::ephemeral::EphemeralReading>,
        stamp: &Stamp<'_>,
        mut peers: impl FnMut(u16, u32) -> HashMap<IpAddr, u32>,
    ) -> IntervalAlerts {
        use crate::tables::sockdiag::REQUEST_STATES;
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.last);
        self.last = now;
        let per_port = |figure: fn(&netconn_common::TcpMetrics) -> u32| {
            let mut out: HashMap<u16, u64> = HashMap::new();
            for (k, m) in metrics.iter().flat_map(|i| i.ports.iter()) {
                if k.direction == netconn_common::DIRECTION_INBOUND {
                    *out.entry(k.port).or_default() += u64::from(figure(m));
                }
            }
            out
        };
        let spikes = match metrics {
            Some(m) => {
                let mut counts: HashMap<SpikeKey, u64> = per_port(|m| m.accepted)
                    .into_iter()
                    .map(|(port, n)| (SpikeKey::Inbound(port), n))
                    .collect();
                for (k, n) in &m.peers {
                    if k.direction == netconn_common::DIRECTION_OUTBOUND {
                        let addr = crate::model::state::ip_addr(u16::from(k.family), k.addr);
                        *counts.entry(SpikeKey::Outbound(addr, k.port)).or_default() +=
                            u64::from(*n);
                    }
                }
                self.spikes
                    .update(&counts, elapsed, stamp, |key| match key {
                        // Who connected in the interval: the kernel's count per
                        // peer.
                        SpikeKey::Inbound(port) => top(m.peers_of_port(*port)),
                        SpikeKey::Outbound(..) => Vec::new(),
                    })
            }
            None => Vec::new(),
        };
        let floods = self.floods.update(
            listeners,
            &per_port(|m| m.synack_retrans),
            elapsed,
            stamp,
            |p| peers(p, REQUEST_STATES),
        );
        let touched: Vec<(IpAddr, u16)> = metrics
            .iter()
            .flat_map(|m| m.peers.keys())
            .filter(|k| k.direction == netconn_common::DIRECTION_CLOSED_PORT)
            .map(|k| {
                let addr = crate::model::state::ip_addr(u16::from(k.family), k.addr);
                (addr, k.port)
            })
            .collect();
        let scans = self.scans.update(&touched, now, stamp);
        let exhaustion = ephemeral
            .map(|e| self.exhaustion.update(e, stamp))
            .unwrap_or_default();
        let records = (spikes.into_iter().map(Record::ConnSpike))
            .chain(floods.into_iter().map(Record::SynFlood))
            .chain(scans.into_iter().map(Record::PortScan))
            .chain(exhaustion.into_iter().map(Record::PortExhaustion));
        IntervalAlerts(records.collect())
    }
}

/// One interval alert's record.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Record {
    ConnSpike(SpikeAlert),
    SynFlood(SynFloodAlert),
    PortScan(ScanAlert),
    PortExhaustion(ExhaustionAlert),
}

impl Record {
    /// The record as the watch's readers see it: what it is about.
    pub fn seen(&self) -> crate::output::alert::Raised {
        use crate::output::alert::Raised;
        use std::net::SocketAddr;
        match self {
            Self::ConnSpike(a) => match a.addr {
                Some(addr) => Raised::of(a, format!("to {}", SocketAddr::new(addr, a.port))),
                None => Raised::of(a, format!("port {}", a.port)),
            },
            Self::SynFlood(a) => Raised::of(a, SocketAddr::new(a.addr, a.port).to_string()),
            Self::PortScan(a) => Raised::of(a, a.addr.to_string()),
            Self::PortExhaustion(a) => {
                let to = SocketAddr::new(a.raddr, a.rport);
                Raised::of(a, format!("{} to {to}", a.laddr))
            }
        }
    }
}

/// The interval alerts' records of one interval, in kind order.
#[derive(Debug, Default)]
pub struct IntervalAlerts(pub Vec<Record>);

impl IntervalAlerts {
    /// The records as the watch's readers see them.
    pub fn seen(&self) -> Vec<crate::output::alert::Raised> {
        self.0.iter().map(Record::seen).collect()
    }
}
