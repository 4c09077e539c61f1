//! What a watch keeps for its scrapers: the running totals of the
//! interval figures (Prometheus counters never go back), the last reading
//! of what is a level (listeners, conntrack, active alerts); the counts
//! themselves are read live at each scrape.

use crate::config::label_name;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use netconn_common::{RTT_BUCKETS, TcpMetrics};

use crate::model::counts::Counts;
use crate::output::conntrack::ConntrackRecord;
use crate::output::figures::{IntervalFigures, ListenerFigures, PortSeries, TcpFigures};
use crate::output::record::Source;
use crate::prometheus::page::{Family, Labels, Page, Value, labels};

/// Most listeners exported (by address and port); the rest are counted in
/// `netconn_listeners_not_exported`.
pub const MAX_LISTENERS: usize = 256;

/// The TCP figures as running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpTotals {
    pub retrans: u64,
    pub synack_retrans: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
    /// refused, timeout, unreachable, aborted.
    pub failed: [u64; 4],
    pub accepted: u64,
}

impl TcpTotals {
    fn add(&mut self, f: &TcpFigures) {
        self.retrans += u64::from(f.retrans);
        self.synack_retrans += u64::from(f.synack_retrans);
        self.resets_sent += u64::from(f.resets_sent);
        self.resets_received += u64::from(f.resets_received);
        let c = &f.failed_connects;
        for (total, n) in
            self.failed
                .iter_mut()
                .zip([c.refused, c.timeout, c.unreachable, c.aborted])
        {
            *total += u64::from(n);
        }
        self.accepted += u64::from(f.accepted);
    }
}

/// The RTT samples since start, per histogram bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RttTotals {
    hist: [u64; RTT_BUCKETS],
    sum_us: u64,
    samples: u64,
}

impl Default for RttTotals {
    fn default() -> Self {
        Self {
            hist: [0; RTT_BUCKETS],
            sum_us: 0,
            samples: 0,
        }
    }
}

impl RttTotals {
    fn add(&mut self, m: &TcpMetrics) {
        for (total, n) in self.hist.iter_mut().zip(m.hist) {
            *total += u64::from(n);
        }
        self.sum_us += m.sum_us;
        self.samples += m.samples;
    }

    /// Octave buckets: samples at or below 2^k - 1 µs (the kernel measures
    /// whole microseconds and a bucket of netconn's histogram ends below
    /// 2^k), from 7 µs to 33.5 s.
    fn buckets(&self) -> Vec<(f64, u64)> {
        let mut out = Vec::new();
        let mut below = 0u64;
        for (i, n) in self.hist.iter().enumerate() {
            below += n;
            let k = i / 4 + 2;
            if i % 4 == 3 && (3..=25).contains(&k) {
                out.push((((1u64 << k) - 1) as f64 / 1e6, below));
            }
        }
        out
    }
}

use crate::output::alert::Raised;

/// The conntrack figures of the last interval.
#[derive(Debug, Clone, Default, PartialEq)]
struct Conntrack {
    available: bool,
    count: u64,
    max: u64,
    totals: BTreeMap<String, u64>,
}

/// Everything a watch keeps for its scrapers.
#[derive(Debug, Clone)]
pub struct Exporter {
    tcp: Option<TcpTotals>,
    /// Connects established, connections closed since start.
    lifecycle: Option<(u64, u64)>,
    rtt: Option<RttTotals>,
    /// ListenOverflows, ListenDrops since start.
    listen: Option<(u64, u64)>,
    ports_tcp: BTreeMap<String, TcpTotals>,
    listeners: Vec<ListenerFigures>,
    listener_drops: HashMap<(IpAddr, u16), u64>,
    conntrack: Option<Conntrack>,
    /// Alerts raised and not cleared: their last record.
    active: BTreeMap<(String, String), Raised>,
    /// Alert records written, by alert and status.
    records: BTreeMap<(String, String), u64>,
}

/// What one interval of a namespace hands over.
#[derive(Default)]
pub struct IntervalInput<'a> {
    /// Its TCP figures (with the listen queue's).
    pub tcp: Option<&'a IntervalFigures>,
    /// The raw figures behind the RTT histogram.
    pub raw: Option<&'a TcpMetrics>,
    pub ports: Option<&'a [PortSeries]>,
    pub listeners: Option<&'a [ListenerFigures]>,
    pub conntrack: Option<&'a ConntrackRecord<'a>>,
    /// The alert records written.
    pub raised: Vec<Raised>,
}

/// netconn's own health, for the whole watch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health {
    pub lost_events: u64,
    pub resyncs: Option<u64>,
    pub conn_records_lost: Option<u64>,
    pub output_dropped: u64,
}

impl Default for Exporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Exporter {
    pub fn new() -> Self {
        Self {
            tcp: None,
            lifecycle: None,
            rtt: None,
            listen: None,
            ports_tcp: BTreeMap::new(),
            listeners: Vec::new(),
            listener_drops: HashMap::new(),
            conntrack: None,
            active: BTreeMap::new(),
            records: BTreeMap::new(),
        }
    }

    /// Takes in one interval of the namespace.
    pub fn interval(&mut self, got: IntervalInput<'_>) {
        if let Some(m) = got.tcp {
            if let Some(total) = &m.total {
                self.tcp.get_or_insert_with(TcpTotals::default).add(total);
            }
            if let Some(l) = &m.lifecycle {
                let (connected, closed) = self.lifecycle.get_or_insert((0, 0));
                *connected += u64::from(l.connected);
                *closed += u64::from(l.closed);
            }
            let (o, d) = self.listen.get_or_insert((0, 0));
            *o += m.listen.listen_overflows;
            *d += m.listen.listen_drops;
        }
        if let Some(raw) = got.raw {
            self.rtt.get_or_insert_with(RttTotals::default).add(raw);
        }
        for series in got.ports.into_iter().flatten() {
            if let Some(f) = &series.tcp_metrics {
                self.ports_tcp.entry(port_key(series)).or_default().add(f);
            }
        }
        if let Some(now) = got.listeners {
            let mut drops = HashMap::new();
            for l in now {
                let before = self.listener_drops.get(&(l.addr, l.port)).copied();
                let total = drops.entry((l.addr, l.port)).or_insert(before.unwrap_or(0));
                *total += u64::from(l.drops);
            }
            self.listener_drops = drops;
            self.listeners = now.to_vec();
        }
        if let Some(conntrack) = got.conntrack {
            self.conntrack = Some(match &conntrack.table {
                Some(t) => Conntrack {
                    available: true,
                    count: t.count,
                    max: t.max,
                    totals: t.totals.clone().unwrap_or_default(),
                },
                None => Conntrack::default(),
            });
        }
        for r in got.raised {
            *self
                .records
                .entry((r.alert.name().to_owned(), r.status.clone()))
                .or_default() += 1;
            let key = (r.alert.name().to_owned(), r.key.clone());
            if r.status == "clear" {
                self.active.remove(&key);
            } else {
                self.active.insert(key, r);
            }
        }
    }

    /// The alerts raised and not cleared: their last records, one JSON
    /// line each (`check --alerts` asks for them).
    pub fn active_lines(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in self.active.values() {
            out.extend(serde_json::to_vec(&r.record).expect("records serialize"));
            out.push(b'\n');
        }
        out
    }

    /// The namespace's families: its `counts` and port groups' series
    /// (read now), the rest as of the last interval.
    pub fn families(&self, counts: &Counts, ports: Option<&[PortSeries]>) -> Vec<Family> {
        let mut families = vec![connections(counts)];
        families.extend(port_families(ports, &self.ports_tcp));
        families.extend(self.tcp_families());
        families.extend(self.listener_families());
        families.extend(self.conntrack_families());
        families.extend(self.alert_families());
        families
    }

    /// The page of a watch of one namespace: its counts now and series.
    pub fn page(
        &self,
        source: Source,
        counts: &Counts,
        ports: Option<&[PortSeries]>,
        h: Health,
    ) -> Page {
        let mut families = vec![info(source)];
        families.extend(self.families(counts, ports));
        families.extend(health(h));
        Page(families)
    }

    fn tcp_families(&self) -> Vec<Family> {
        let mut out = Vec::new();
        if let Some(rtt) = &self.rtt {
            out.push(
                Family::new(
                    "netconn_tcp_rtt_seconds",
                    "RTT samples of the TCP connections made since netconn started (each measured RTT the kernel feeds its estimator).",
                )
                .with(
                    vec![],
                    Value::Histogram {
                        sum: rtt.sum_us as f64 / 1e6,
                        count: rtt.samples,
                        buckets: rtt.buckets(),
                    },
                ),
            );
        }
        if let Some(t) = &self.tcp {
            out.extend(tcp_counters("netconn_tcp", t, vec![]));
        }
        if let Some((connected, closed)) = self.lifecycle {
            out.push(
                Family::new(
                    "netconn_tcp_connected_connections",
                    "Connects that reached ESTABLISHED since netconn started.",
                )
                .with(vec![], Value::Counter(connected)),
            );
            out.push(
                Family::new(
                    "netconn_tcp_closed_connections",
                    "Established connections that closed since netconn started (each end of a loopback connection counts).",
                )
                .with(vec![], Value::Counter(closed)),
            );
        }
        if let Some((overflows, drops)) = self.listen {
            out.push(
                Family::new(
                    "netconn_tcp_listen_overflows",
                    "Connections an accept queue had no room for (TcpExt ListenOverflows) since netconn started.",
                )
                .with(vec![], Value::Counter(overflows)),
            );
            out.push(
                Family::new(
                    "netconn_tcp_listen_drops",
                    "Segments listeners dropped (TcpExt ListenDrops) since netconn started.",
                )
                .with(vec![], Value::Counter(drops)),
            );
        }
        out
    }

    fn listener_families(&self) -> Vec<Family> {
        let mut sockets = Family::new(
            "netconn_listener_sockets",
            "Listening TCP sockets on the address and port (more than one with SO_REUSEPORT).",
        );
        let mut queue = Family::new(
            "netconn_listener_accept_queue",
            "Connections waiting for accept() (ss -lnt Recv-Q), summed over the sockets.",
        );
        let mut backlog = Family::new(
            "netconn_listener_backlog",
            "The accept queues' limit (ss -lnt Send-Q), summed over the sockets.",
        );
        let mut syn = Family::new(
            "netconn_listener_syn_backlog",
            "Request sockets (SYN_RECV) waiting for their final ACK.",
        );
        let mut drops = Family::new(
            "netconn_listener_drops",
            "Segments the listeners dropped since netconn started (their sk_drops): ListenDrops, overflows included.",
        );
        let mut by_key: BTreeMap<(IpAddr, u16), (i64, i64, i64, i64)> = BTreeMap::new();
        for l in &self.listeners {
            let e = by_key.entry((l.addr, l.port)).or_default();
            e.0 += 1;
            e.1 += i64::from(l.accept_queue);
            e.2 += i64::from(l.backlog);
            e.3 = e.3.max(i64::from(l.syn_backlog));
        }
        let left_out = by_key.len().saturating_sub(MAX_LISTENERS);
        for ((addr, port), (n, q, b, s)) in by_key.into_iter().take(MAX_LISTENERS) {
            let l = || labels([("addr", addr.to_string()), ("port", port.to_string())]);
            sockets.push(l(), Value::Gauge(n));
            queue.push(l(), Value::Gauge(q));
            backlog.push(l(), Value::Gauge(b));
            syn.push(l(), Value::Gauge(s));
            let d = self.listener_drops.get(&(addr, port)).copied().unwrap_or(0);
            drops.push(l(), Value::Counter(d));
        }
        let not_exported = Family::new(
            "netconn_listeners_not_exported",
            "Listening addresses and ports left out past the bound on series.",
        )
        .with(vec![], Value::Gauge(left_out as i64));
        vec![sockets, queue, backlog, syn, drops, not_exported]
    }

    fn conntrack_families(&self) -> Vec<Family> {
        let Some(c) = &self.conntrack else {
            return Vec::new();
        };
        let mut out = vec![
            Family::new(
                "netconn_conntrack_available",
                "1 when the namespace has a conntrack table (nf_conntrack loaded).",
            )
            .with(vec![], Value::Gauge(i64::from(c.available))),
        ];
        if c.available {
            out.push(
                Family::new("netconn_conntrack_entries", "Conntrack entries now.")
                    .with(vec![], Value::Gauge(c.count as i64)),
            );
            out.push(
                Family::new("netconn_conntrack_max", "The conntrack table's limit.")
                    .with(vec![], Value::Gauge(c.max as i64)),
            );
            let mut stats = Family::new(
                "netconn_conntrack_stat",
                "The kernel's conntrack counters (/proc/net/stat/nf_conntrack, summed over CPUs).",
            );
            // Two of its columns are levels, not counters: the entries
            // (above) and the longest hash chain.
            let levels = ["entries", "chainlength"];
            for (name, v) in c
                .totals
                .iter()
                .filter(|(n, _)| !levels.contains(&n.as_str()))
            {
                stats.push(labels([("stat", name.clone())]), Value::Counter(*v));
            }
            out.push(stats);
        }
        out
    }

    fn alert_families(&self) -> Vec<Family> {
        let mut active = Family::new(
            "netconn_alert_active",
            "Alerts raised and not cleared: 1 per alert and key, its status as a label.",
        );
        for ((alert, key), r) in &self.active {
            active.push(
                labels([
                    ("alert", alert.clone()),
                    ("key", key.clone()),
                    ("status", r.status.clone()),
                ]),
                Value::Gauge(1),
            );
        }
        let mut records = Family::new(
            "netconn_alert_records",
            "Alert records written since netconn started, by alert and status.",
        );
        for ((alert, status), n) in &self.records {
            records.push(
                labels([("alert", alert.clone()), ("status", status.clone())]),
                Value::Counter(*n),
            );
        }
        vec![active, records]
    }
}

/// A port series' key: its `addr_port` and IP version.
fn port_key(series: &PortSeries) -> String {
    format!("{}|{}", series.addr_port, series.ip_version)
}

/// `netconn_info`: where the counts come from.
pub fn info(source: Source) -> Family {
    Family::new(
        "netconn_info",
        "Where the counts come from: ebpf (live) or poll (a dump per reading).",
    )
    .with(
        labels([
            ("version", env!("CARGO_PKG_VERSION").into()),
            (
                "source",
                match source {
                    Source::Ebpf => "ebpf",
                    Source::Poll => "poll",
                }
                .into(),
            ),
        ]),
        Value::Gauge(1),
    )
}

fn connections(counts: &Counts) -> Family {
    let mut f = Family::new(
        "netconn_connections",
        "Sockets now, by conn_type (tcp, tcp6, udp, udp6) and state (UDP: NONE).",
    );
    for (ct, state, n) in counts.iter() {
        f.push(
            labels([("conn_type", ct.name().into()), ("state", state.into())]),
            Value::Gauge(n),
        );
    }
    f
}

/// Labels a port group's series carries: its own, then its tags (those
/// that would clash with its own are left out).
fn port_labels(series: &PortSeries) -> Labels {
    let mut l = labels([
        ("addr_port", series.addr_port.clone()),
        ("ip_version", series.ip_version.to_string()),
    ]);
    for (k, v) in &series.tags {
        let name = label_name(k);
        let reserved = ["addr_port", "ip_version", "state", "reason"];
        if !reserved.contains(&name.as_str()) && !name.starts_with("__") {
            l.push((Cow::Owned(name), v.clone()));
        }
    }
    l
}

fn port_families(
    ports: Option<&[PortSeries]>,
    totals: &BTreeMap<String, TcpTotals>,
) -> Vec<Family> {
    let Some(series) = ports else {
        return Vec::new();
    };
    let mut states = Family::new(
        "netconn_port_connections",
        "Sockets of a port group (DataKit's addr_ports) now, by TCP state; the group's tags as labels.",
    );
    let mut out = Vec::new();
    let mut tcp: Vec<Family> = Vec::new();
    for s in series {
        for code in 1..=11u8 {
            let mut l = port_labels(s);
            let name = crate::model::state::tcp_state_name(code).expect("named state");
            l.push((Cow::Borrowed("state"), name.into()));
            states.push(l, Value::Gauge(s.states.0[code as usize]));
        }
        if let Some(t) = totals.get(&port_key(s)) {
            let families = tcp_counters("netconn_port_tcp", t, port_labels(s));
            if tcp.is_empty() {
                tcp = families;
            } else {
                for (all, one) in tcp.iter_mut().zip(families) {
                    all.samples.extend(one.samples);
                }
            }
        }
    }
    out.push(states);
    out.extend(tcp);
    out
}

/// The TCP counters of a scope (`prefix`: the namespace's or a port
/// group's), each sample with `base` labels.
fn tcp_counters(prefix: &'static str, t: &TcpTotals, base: Labels) -> Vec<Family> {
    let names: [(&'static str, &'static str); 5] = match prefix {
        "netconn_tcp" => [
            (
                "netconn_tcp_retransmitted_segments",
                "Segments retransmitted since netconn started (as RetransSegs counts them).",
            ),
            (
                "netconn_tcp_synack_retransmits",
                "SYN-ACKs retransmitted by listeners since netconn started.",
            ),
            (
                "netconn_tcp_resets_sent",
                "RSTs sent since netconn started.",
            ),
            (
                "netconn_tcp_resets_received",
                "RSTs received since netconn started.",
            ),
            (
                "netconn_tcp_accepted_connections",
                "Handshakes listeners completed since netconn started.",
            ),
        ],
        _ => [
            (
                "netconn_port_tcp_retransmitted_segments",
                "Segments the port group's connections retransmitted since netconn started.",
            ),
            (
                "netconn_port_tcp_synack_retransmits",
                "SYN-ACKs the port group's listeners retransmitted since netconn started.",
            ),
            (
                "netconn_port_tcp_resets_sent",
                "RSTs the port group's connections sent since netconn started.",
            ),
            (
                "netconn_port_tcp_resets_received",
                "RSTs the port group's connections received since netconn started.",
            ),
            (
                "netconn_port_tcp_accepted_connections",
                "Handshakes the port group's listeners completed since netconn started.",
            ),
        ],
    };
    let values = [
        t.retrans,
        t.synack_retrans,
        t.resets_sent,
        t.resets_received,
        t.accepted,
    ];
    let mut out: Vec<Family> = names
        .iter()
        .zip(values)
        .map(|((name, help), v)| Family::new(name, help).with(base.clone(), Value::Counter(v)))
        .collect();
    let (name, help) = match prefix {
        "netconn_tcp" => (
            "netconn_tcp_failed_connects",
            "Connects that never reached ESTABLISHED since netconn started, by reason (refused, timeout, unreachable, aborted).",
        ),
        _ => (
            "netconn_port_tcp_failed_connects",
            "The port group's connects that never reached ESTABLISHED since netconn started, by reason.",
        ),
    };
    let mut failed = Family::new(name, help);
    for (reason, n) in ["refused", "timeout", "unreachable", "aborted"]
        .into_iter()
        .zip(t.failed)
    {
        let mut l = base.clone();
        l.push((Cow::Borrowed("reason"), reason.into()));
        failed.push(l, Value::Counter(n));
    }
    out.push(failed);
    out
}

/// netconn's own health.
pub fn health(h: Health) -> Vec<Family> {
    let mut out = vec![
        Family::new(
            "netconn_lost_events",
            "State events the kernel could not hand over since start (each one repaired by a resync).",
        )
        .with(vec![], Value::Counter(h.lost_events)),
        Family::new(
            "netconn_output_dropped_records",
            "Records the output could not take since start (a stalled reader, a full disk).",
        )
        .with(vec![], Value::Counter(h.output_dropped)),
    ];
    if let Some(resyncs) = h.resyncs {
        out.push(
            Family::new(
                "netconn_resyncs",
                "Snapshots taken after the first, to repair losses or drift.",
            )
            .with(vec![], Value::Counter(resyncs)),
        );
    }
    if let Some(lost) = h.conn_records_lost {
        out.push(
            Family::new(
                "netconn_conn_records_lost",
                "Connection records (--events) the kernel could not hand over since start.",
            )
            .with(vec![], Value::Counter(lost)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octave_buckets_end_below_powers_of_two() {
        let mut m = TcpMetrics::default();
        for us in [5u32, 7, 8, 100, 1_000_000] {
            m.hist[netconn_common::rtt_bucket(us)] += 1;
            m.samples += 1;
            m.sum_us += u64::from(us);
        }
        let mut rtt = RttTotals::default();
        rtt.add(&m);
        let b = rtt.buckets();
        let at = |le_us: u64| {
            b.iter()
                .find(|(le, _)| (*le * 1e6).round() as u64 == le_us)
                .map(|(_, n)| *n)
        };
        // 5 and 7 are at or below 7 µs; 8 is not.
        assert_eq!(at(7), Some(2));
        assert_eq!(at(15), Some(3));
        assert_eq!(at(127), Some(4));
        assert_eq!(at(1_048_575), Some(5));
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn tags_become_valid_label_names() {
        assert_eq!(label_name("service"), "service");
        assert_eq!(
            label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(label_name("1st"), "_1st");
        assert_eq!(label_name(""), "_");
    }
}
