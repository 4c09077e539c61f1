//! Alerts on the interval figures: `conn_spike` (new inbound connections
//! per second on a port against a baseline learned while netconn runs),
//! `syn_flood` (handshakes left uncompleted on a listener), `port_scan`
//! (one address touching many closed ports) and `port_exhaustion`
//! (ephemeral ports to one destination running out). Each keeps one
//! state machine per key with the conntrack alert's hysteresis, and says
//! which peers are behind it (a dump of that port's sockets, taken only
//! when an alert is raised or changes level).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::config::{ExhaustionConfig, ScanConfig, SpikeConfig, SynFloodConfig, Thresholds};
use crate::conntrack::{Alert, Level};
use crate::output::alert::{
    AlertHead, ExhaustionAlert, FloodFigures, Levels, Peer, ScanAlert, ScanThresholds, SpikeAlert,
    SynFloodAlert, SynFloodThresholds,
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
    fn head(&self, alert: &'static str, level: Level) -> AlertHead {
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
    alert: Alert,
    since: Option<String>,
}

impl Raising {
    fn new(thresholds: Thresholds) -> Raising {
        Raising {
            alert: Alert::new(thresholds),
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

#[derive(Debug)]
struct SpikeState {
    mean: f64,
    watched: Duration,
    raising: Raising,
}

/// What a spike is about: new connections to a local port (inbound), or to
/// a remote address and port (outbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpikeKey {
    Inbound(u16),
    Outbound(IpAddr, u16),
}

/// The most keys followed at once (outbound destinations are many); past
/// it, new ones wait until quiet ones are forgotten.
pub const MAX_SPIKE_KEYS: usize = 8192;

/// `conn_spike` for every inbound port and outbound destination of a
/// namespace.
#[derive(Debug)]
pub struct ConnSpikes {
    config: SpikeConfig,
    keys: HashMap<SpikeKey, SpikeState>,
}

impl ConnSpikes {
    pub fn new(config: SpikeConfig) -> ConnSpikes {
        ConnSpikes {
            config,
            keys: HashMap::new(),
        }
    }

    /// One interval of `elapsed`: the new connections per key. `peers(key)`:
    /// the remote addresses behind a spike (asked only for an alert
    /// record).
    pub fn update(
        &mut self,
        counts: &HashMap<SpikeKey, u64>,
        elapsed: Duration,
        stamp: &Stamp<'_>,
        mut peers: impl FnMut(&SpikeKey) -> Vec<Peer>,
    ) -> Vec<SpikeAlert> {
        let c = self.config;
        let seconds = elapsed.as_secs_f64();
        if !c.enabled || seconds <= 0.0 {
            return Vec::new();
        }
        for (key, n) in counts {
            if self.keys.len() >= MAX_SPIKE_KEYS {
                break;
            }
            self.keys.entry(*key).or_insert_with(|| SpikeState {
                mean: *n as f64 / seconds,
                watched: Duration::ZERO,
                raising: Raising::new(Thresholds::default()),
            });
        }
        let mut out = Vec::new();
        for (key, state) in &mut self.keys {
            let rate = counts.get(key).copied().unwrap_or(0) as f64 / seconds;
            state.watched += elapsed;
            if state.watched >= c.warmup {
                // The baseline, floored so that a quiet key's warning is
                // min_rate.
                let base = state.mean.max(c.min_rate / c.warning);
                state.raising.alert.thresholds = Thresholds {
                    warn: c.warning * base,
                    crit: c.critical * base,
                    clear: c.clear * base,
                };
                if let Some((level, since)) = state.raising.update(rate, stamp.time) {
                    let t = state.raising.alert.thresholds;
                    let (direction, addr, port) = match *key {
                        SpikeKey::Inbound(port) => ("inbound", None, port),
                        SpikeKey::Outbound(addr, port) => ("outbound", Some(addr), port),
                    };
                    out.push(SpikeAlert {
                        head: stamp.head("conn_spike", level),
                        direction,
                        addr,
                        port,
                        rate: round(rate),
                        baseline: round(state.mean),
                        thresholds: Levels {
                            warning: round(t.warn),
                            critical: round(t.crit),
                            clear: round(t.clear),
                        },
                        top_remote: if level == Level::Clear {
                            Vec::new()
                        } else {
                            peers(key)
                        },
                        since,
                    });
                }
            }
            // The baseline learns only while nothing alerts: a spike does
            // not become the normal.
            if state.raising.level() == Level::Clear {
                learn(&mut state.mean, rate, seconds, c.window, state.watched);
            }
        }
        // Keys gone quiet for good are forgotten.
        self.keys.retain(|k, s| {
            counts.contains_key(k) || s.mean >= 0.001 || s.raising.level() != Level::Clear
        });
        out
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[derive(Debug)]
struct FloodState {
    raising: Raising,
    /// Learned means of syn_recv, SYN-ACK retransmissions and drops per
    /// second, and how long they have been learned.
    means: [f64; 3],
    watched: Duration,
}

/// `syn_flood` for every listening address and port of a namespace.
#[derive(Debug)]
pub struct SynFloods {
    config: SynFloodConfig,
    listeners: HashMap<(IpAddr, u16), FloodState>,
}

impl SynFloods {
    pub fn new(config: SynFloodConfig) -> SynFloods {
        SynFloods {
            config,
            listeners: HashMap::new(),
        }
    }

    /// One interval of `elapsed`: the listeners (their request sockets and
    /// drops) and the SYN-ACKs retransmitted per port. `sources(port)`: the
    /// peers of the port's request sockets now (asked only for a record).
    pub fn update(
        &mut self,
        listeners: &[ListenerFigures],
        synack_retrans: &HashMap<u16, u64>,
        elapsed: Duration,
        stamp: &Stamp<'_>,
        mut sources: impl FnMut(u16) -> HashMap<IpAddr, u32>,
    ) -> Vec<SynFloodAlert> {
        let c = self.config;
        let seconds = elapsed.as_secs_f64();
        if !c.enabled || seconds <= 0.0 {
            return Vec::new();
        }
        // SO_REUSEPORT siblings: one key; their drops add up.
        let mut now: HashMap<(IpAddr, u16), (u32, u64)> = HashMap::new();
        for l in listeners {
            let e = now.entry((l.addr, l.port)).or_default();
            e.0 = e.0.max(l.syn_backlog);
            e.1 += u64::from(l.drops);
        }
        let mut out = Vec::new();
        for (&(addr, port), &(syn_recv, drops)) in &now {
            let synack = synack_retrans.get(&port).copied().unwrap_or(0) as f64 / seconds;
            let drops = drops as f64 / seconds;
            let figures = [f64::from(syn_recv), synack, drops];
            let state = self
                .listeners
                .entry((addr, port))
                .or_insert_with(|| FloodState {
                    raising: Raising::new(Thresholds {
                        warn: 1.0,
                        crit: c.critical,
                        clear: c.clear,
                    }),
                    means: [0.0; 3],
                    watched: Duration::ZERO,
                });
            state.watched += elapsed;
            // Each figure against its warning threshold (the absolute one,
            // or the baseline's multiple if higher): 1.0 is a warning.
            let absolute = [c.syn_recv, c.synack_retrans_per_s, c.drops_per_s];
            let pressure = (0..3)
                .map(|i| figures[i] / absolute[i].max(c.baseline * state.means[i]))
                .fold(0.0, f64::max);
            let changed = state.raising.update(pressure, stamp.time);
            // The baseline learns while nothing alerts (see ConnSpikes): a
            // flood never becomes the normal; a listener that grew busy
            // while netconn watched has a higher bar.
            if state.raising.level() == Level::Clear {
                for (mean, figure) in state.means.iter_mut().zip(figures) {
                    learn(mean, figure, seconds, c.window, state.watched);
                }
            }
            let Some((level, since)) = changed else {
                continue;
            };
            let top_sources = if level == Level::Clear {
                Vec::new()
            } else {
                top(sources(port))
            };
            out.push(flood_record(
                stamp,
                level,
                (addr, port),
                figures,
                state,
                &c,
                top_sources,
                since,
            ));
        }
        // A listener that went while alerting clears.
        let gone: Vec<(IpAddr, u16)> = self
            .listeners
            .keys()
            .filter(|k| !now.contains_key(k))
            .copied()
            .collect();
        for k in gone {
            let mut state = self.listeners.remove(&k).expect("listed");
            if let Some((level, since)) = state.raising.update(0.0, stamp.time) {
                out.push(flood_record(
                    stamp,
                    level,
                    k,
                    [0.0; 3],
                    &state,
                    &c,
                    Vec::new(),
                    since,
                ));
            }
        }
        out
    }
}

/// A `syn_flood` record of a listener's figures now.
#[allow(clippy::too_many_arguments)]
fn flood_record(
    stamp: &Stamp<'_>,
    level: Level,
    (addr, port): (IpAddr, u16),
    figures: [f64; 3],
    state: &FloodState,
    c: &SynFloodConfig,
    top_sources: Vec<Peer>,
    since: String,
) -> SynFloodAlert {
    SynFloodAlert {
        head: stamp.head("syn_flood", level),
        addr,
        port,
        syn_recv: figures[0] as u32,
        synack_retrans_per_s: round(figures[1]),
        drops_per_s: round(figures[2]),
        thresholds: SynFloodThresholds {
            syn_recv: c.syn_recv,
            synack_retrans_per_s: c.synack_retrans_per_s,
            drops_per_s: c.drops_per_s,
            critical: c.critical,
            clear: c.clear,
            baseline: c.baseline,
        },
        baseline: FloodFigures {
            syn_recv: round(state.means[0]),
            synack_retrans_per_s: round(state.means[1]),
            drops_per_s: round(state.means[2]),
        },
        top_sources,
        since,
    }
}

/// The most (address, port) pairs kept for `port_scan` windows (about
/// 4 MiB); past it, new pairs are not followed until old ones age out.
pub const MAX_SCAN_PAIRS: usize = 65536;
/// Ports an alert record lists.
pub const SCAN_SAMPLE: usize = 10;

#[derive(Debug)]
struct ScanState {
    /// Closed ports it touched, and when last.
    ports: HashMap<u16, std::time::Instant>,
    raising: Raising,
}

/// `port_scan` for every address that touched closed ports of a
/// namespace.
#[derive(Debug)]
pub struct PortScans {
    config: ScanConfig,
    sources: HashMap<IpAddr, ScanState>,
    pairs: usize,
}

impl PortScans {
    pub fn new(config: ScanConfig) -> PortScans {
        PortScans {
            config,
            sources: HashMap::new(),
            pairs: 0,
        }
    }

    /// One interval: the closed ports each address touched in it.
    pub fn update(
        &mut self,
        touched: &[(IpAddr, u16)],
        now: std::time::Instant,
        stamp: &Stamp<'_>,
    ) -> Vec<ScanAlert> {
        let c = self.config;
        if !c.enabled {
            return Vec::new();
        }
        let thresholds = Thresholds {
            warn: c.ports,
            crit: c.critical * c.ports,
            clear: c.ports / 2.0,
        };
        for (addr, port) in touched {
            let known = self.sources.contains_key(addr);
            if !known && self.pairs >= MAX_SCAN_PAIRS {
                continue;
            }
            let state = self.sources.entry(*addr).or_insert_with(|| ScanState {
                ports: HashMap::new(),
                raising: Raising::new(thresholds),
            });
            // A port already seen is refreshed; a new one only within the
            // bound.
            let room = self.pairs < MAX_SCAN_PAIRS;
            if (room || state.ports.contains_key(port)) && state.ports.insert(*port, now).is_none()
            {
                self.pairs += 1;
            }
        }
        let mut out = Vec::new();
        for (addr, state) in &mut self.sources {
            let before = state.ports.len();
            state
                .ports
                .retain(|_, last| now.duration_since(*last) <= c.window);
            self.pairs -= before - state.ports.len();
            let Some((level, since)) = state.raising.update(state.ports.len() as f64, stamp.time)
            else {
                continue;
            };
            let mut sample: Vec<u16> = state.ports.keys().copied().collect();
            sample.sort_unstable();
            sample.truncate(SCAN_SAMPLE);
            out.push(ScanAlert {
                head: stamp.head("port_scan", level),
                addr: *addr,
                ports: state.ports.len() as u32,
                sample,
                window_s: c.window.as_secs_f64(),
                thresholds: ScanThresholds {
                    warning: thresholds.warn,
                    critical: thresholds.crit,
                    clear: thresholds.clear,
                },
                since,
            });
        }
        self.sources
            .retain(|_, s| !s.ports.is_empty() || s.raising.level() != Level::Clear);
        out
    }
}

/// Both alerts of one namespace, fed once per interval.
#[derive(Debug)]
pub struct Alerting {
    spikes: ConnSpikes,
    floods: SynFloods,
    scans: PortScans,
    exhaustion: PortExhaustion,
    last: std::time::Instant,
}

/// Alert records of one interval.
#[derive(Debug, Default)]
pub struct Records {
    pub spikes: Vec<SpikeAlert>,
    pub floods: Vec<SynFloodAlert>,
    pub scans: Vec<ScanAlert>,
    pub exhaustion: Vec<ExhaustionAlert>,
}

/// The destinations a port_exhaustion alert is about.
type DestinationKey = (IpAddr, IpAddr, u16);

/// `port_exhaustion` for every destination of the ephemeral port range.
#[derive(Debug)]
pub struct PortExhaustion {
    config: ExhaustionConfig,
    /// Destinations with an alert raised.
    raised: HashMap<DestinationKey, Raising>,
}

impl PortExhaustion {
    pub fn new(config: ExhaustionConfig) -> PortExhaustion {
        PortExhaustion {
            config,
            raised: HashMap::new(),
        }
    }

    /// One interval's destinations (every one, most sockets first): a
    /// record for each whose level changed; one no longer listed clears.
    pub fn update(
        &mut self,
        reading: &crate::live::ephemeral::EphemeralReading,
        stamp: &Stamp<'_>,
    ) -> Vec<ExhaustionAlert> {
        if !self.config.enabled {
            return Vec::new();
        }
        let t = self.config.levels;
        let mut out = Vec::new();
        let listed: std::collections::HashSet<DestinationKey> = reading
            .destinations
            .iter()
            .map(|d| (d.laddr, d.raddr, d.rport))
            .collect();
        // A destination whose sockets are all gone is at 0.
        let gone: Vec<_> = (self.raised.keys())
            .filter(|k| !listed.contains(*k))
            .map(
                |&(laddr, raddr, rport)| crate::output::figures::DestinationFigures {
                    laddr,
                    raddr,
                    rport,
                    in_use: 0,
                    time_wait: 0,
                    utilization: 0.0,
                },
            )
            .collect();
        for d in reading.destinations.iter().chain(&gone) {
            let key = (d.laddr, d.raddr, d.rport);
            let percent = d.utilization * 100.0;
            let raising = match self.raised.get_mut(&key) {
                Some(r) => r,
                // Below warning nothing starts.
                None if percent < t.warn => continue,
                None => self.raised.entry(key).or_insert_with(|| Raising::new(t)),
            };
            let Some((level, since)) = raising.update(percent, stamp.time) else {
                continue;
            };
            if level == Level::Clear {
                self.raised.remove(&key);
            }
            out.push(ExhaustionAlert {
                head: stamp.head("port_exhaustion", level),
                laddr: d.laddr,
                raddr: d.raddr,
                rport: d.rport,
                in_use: d.in_use,
                time_wait: d.time_wait,
                size: reading.range.size,
                utilization: d.utilization,
                thresholds: Levels {
                    warning: t.warn,
                    critical: t.crit,
                    clear: t.clear,
                },
                since,
            });
        }
        out
    }
}

impl Alerting {
    pub fn new(
        spike: SpikeConfig,
        flood: SynFloodConfig,
        scan: ScanConfig,
        exhaustion: ExhaustionConfig,
    ) -> Alerting {
        Alerting {
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
    ) -> Records {
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
        Records {
            spikes,
            floods,
            scans,
            exhaustion,
        }
    }
}

impl Records {
    /// The records as the watch's readers see them.
    pub fn seen(&self) -> Vec<crate::output::alert::Raised> {
        use crate::output::alert::Raised as Seen;
        self.spikes
            .iter()
            .map(|a| match a.addr {
                Some(addr) => {
                    Seen::of(a, format!("to {}", std::net::SocketAddr::new(addr, a.port)))
                }
                None => Seen::of(a, format!("port {}", a.port)),
            })
            .chain(
                self.floods
                    .iter()
                    .map(|a| Seen::of(a, std::net::SocketAddr::new(a.addr, a.port).to_string())),
            )
            .chain(self.scans.iter().map(|a| Seen::of(a, a.addr.to_string())))
            .chain(self.exhaustion.iter().map(|a| {
                let to = std::net::SocketAddr::new(a.raddr, a.rport);
                Seen::of(a, format!("{} to {to}", a.laddr))
            }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp<'static> = Stamp {
        host: "h",
        netns: 1,
        time: "t",
        owner: None,
    };

    fn spikes() -> ConnSpikes {
        ConnSpikes::new(SpikeConfig {
            window: Duration::from_secs(20),
            warmup: Duration::from_secs(5),
            min_rate: 5.0,
            ..SpikeConfig::default()
        })
    }

    fn run(s: &mut ConnSpikes, rate: u64) -> Vec<SpikeAlert> {
        let counts = HashMap::from([(SpikeKey::Inbound(8080), rate)]);
        s.update(&counts, Duration::from_secs(1), &STAMP, |_| {
            top(HashMap::from([("127.0.0.2".parse().unwrap(), 3)]))
        })
    }

    #[test]
    fn a_steady_rate_is_quiet_and_a_burst_alerts_then_clears() {
        let mut s = spikes();
        for _ in 0..60 {
            assert!(run(&mut s, 30).is_empty());
        }
        let raised = run(&mut s, 600);
        assert_eq!(raised.len(), 1);
        assert_eq!((raised[0].head.status, raised[0].port), ("critical", 8080));
        assert_eq!(raised[0].baseline, 30.0);
        assert_eq!(raised[0].top_remote[0].sockets, 3);
        // Held: no new record; the baseline does not learn the burst.
        assert!(run(&mut s, 600).is_empty());
        let cleared = run(&mut s, 30);
        assert_eq!(cleared[0].head.status, "clear");
        assert_eq!(cleared[0].since, "t");
        assert!(cleared[0].top_remote.is_empty());
    }

    #[test]
    fn a_churn_that_starts_after_netconn_is_quiet_once_warm() {
        let mut s = spikes();
        // A first interval half covered, then the steady rate.
        assert!(run(&mut s, 15).is_empty());
        for _ in 0..120 {
            assert!(run(&mut s, 30).is_empty());
        }
    }

    #[test]
    fn quiet_ports_and_warm_up_do_not_alert() {
        let mut s = spikes();
        // A port's first connections: during its warm-up, nothing.
        assert!(run(&mut s, 100).is_empty());
        let mut s = spikes();
        for _ in 0..10 {
            run(&mut s, 0);
        }
        // Below min_rate, even from nothing: nothing.
        assert!(run(&mut s, 4).is_empty());
        assert_eq!(run(&mut s, 7)[0].head.status, "warning");
    }

    fn listener(syn_backlog: u32, drops: u32) -> ListenerFigures {
        ListenerFigures {
            addr: "127.0.0.1".parse().unwrap(),
            port: 80,
            ip_version: 4,
            pid: None,
            comm: None,
            accept_queue: 0,
            backlog: 128,
            syn_backlog,
            accepted: None,
            handshakes_started: None,
            handshakes_failed: None,
            drops,
        }
    }

    #[test]
    fn a_listener_that_grew_busy_is_no_flood() {
        let mut f = SynFloods::new(SynFloodConfig {
            syn_recv: 50.0,
            window: Duration::from_secs(20),
            ..SynFloodConfig::default()
        });
        let none = HashMap::new();
        let src = |_| HashMap::new();
        let tick = Duration::from_secs(1);
        // From 10 to 80 request sockets, slowly: past the absolute 50, but
        // never far from its learned normal.
        for n in (10..=80).chain(std::iter::repeat_n(80, 30)) {
            let raised = f.update(&[listener(n, 0)], &none, tick, &STAMP, src);
            assert!(raised.is_empty(), "{n}: {raised:?}");
        }
        assert!(
            f.update(&[listener(160, 0)], &none, tick, &STAMP, src)
                .is_empty()
        );
        // Well past three times its normal is a flood.
        let raised = f.update(&[listener(300, 0)], &none, tick, &STAMP, src);
        assert_eq!(raised[0].head.status, "warning");
        let learned = raised[0].baseline.syn_recv;
        assert!((75.0..=90.0).contains(&learned), "{learned}");
    }

    #[test]
    fn syn_floods_by_any_figure_with_hysteresis() {
        let mut f = SynFloods::new(SynFloodConfig {
            syn_recv: 50.0,
            // The baseline frozen from the second interval on.
            window: Duration::from_secs(1),
            ..SynFloodConfig::default()
        });
        let none = HashMap::new();
        let src = |_| HashMap::from([("127.0.0.3".parse().unwrap(), 60)]);
        let tick = Duration::from_secs(1);
        assert!(
            f.update(&[listener(10, 0)], &none, tick, &STAMP, src)
                .is_empty()
        );
        let raised = f.update(&[listener(60, 0)], &none, tick, &STAMP, src);
        assert_eq!(raised[0].head.status, "warning");
        assert_eq!(raised[0].top_sources[0].addr.to_string(), "127.0.0.3");
        // Retransmitted SYN-ACKs alone can make it critical.
        let synack = HashMap::from([(80, 500)]);
        let up = f.update(&[listener(60, 0)], &synack, tick, &STAMP, src);
        assert_eq!(up[0].head.status, "critical");
        // Between clear and warning: held (as a warning).
        let down = f.update(&[listener(40, 0)], &none, tick, &STAMP, src);
        assert_eq!(down[0].head.status, "warning");
        assert!(
            f.update(&[listener(30, 0)], &none, tick, &STAMP, src)
                .is_empty()
        );
        let clear = f.update(&[listener(10, 0)], &none, tick, &STAMP, src);
        assert_eq!(clear[0].head.status, "clear");
    }

    #[test]
    fn scans_count_distinct_ports_within_the_window() {
        let mut scans = PortScans::new(ScanConfig {
            ports: 5.0,
            window: Duration::from_secs(10),
            ..ScanConfig::default()
        });
        let start = std::time::Instant::now();
        let scanner: IpAddr = "10.0.0.9".parse().unwrap();
        let client: IpAddr = "10.0.0.8".parse().unwrap();
        // The same port again and again is one port.
        let same: Vec<(IpAddr, u16)> = (0..50).map(|_| (client, 80)).collect();
        assert!(scans.update(&same, start, &STAMP).is_empty());
        let many: Vec<(IpAddr, u16)> = (1..=6).map(|p| (scanner, p)).collect();
        let raised = scans.update(&many, start, &STAMP);
        assert_eq!(raised.len(), 1);
        assert_eq!((raised[0].addr, raised[0].ports), (scanner, 6));
        assert_eq!(raised[0].sample, vec![1, 2, 3, 4, 5, 6]);
        // Past the window the ports age out: clear.
        let later = start + Duration::from_secs(11);
        let cleared = scans.update(&[], later, &STAMP);
        assert_eq!(cleared[0].head.status, "clear");
        assert_eq!(scans.pairs, 0);
    }

    #[test]
    fn port_exhaustion_has_the_conntrack_hysteresis_and_clears_when_gone() {
        use crate::live::ephemeral::EphemeralReading;
        use crate::tables::port_range::PortRange;
        let range = PortRange {
            low: 1000,
            high: 1199,
            size: 200,
        };
        let at = |in_use: u64| {
            let d = crate::output::figures::DestinationFigures {
                laddr: "10.0.0.1".parse().unwrap(),
                raddr: "10.0.0.2".parse().unwrap(),
                rport: 80,
                in_use,
                time_wait: 0,
                utilization: in_use as f64 / 200.0,
            };
            EphemeralReading::new(range, vec![d], None)
        };
        let mut p = PortExhaustion::new(ExhaustionConfig::default());
        let mut statuses = Vec::new();
        for in_use in [150, 160, 180, 192, 170, 151, 149] {
            let out = p.update(&at(in_use), &STAMP);
            statuses.push(out.first().map(|a| a.head.status));
        }
        assert_eq!(
            statuses,
            [
                None,
                Some("warning"),
                None,
                Some("critical"),
                Some("warning"),
                None,
                Some("clear")
            ]
        );
        // Raised, then every socket gone: cleared at 0.
        p.update(&at(190), &STAMP);
        let out = p.update(&EphemeralReading::new(range, Vec::new(), None), &STAMP);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].head.status, out[0].in_use), ("clear", 0));
        assert!(p.raised.is_empty());
    }
}
