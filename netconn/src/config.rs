//! Configuration: a TOML file (DataKit `netstat` semantics) and the
//! environment overrides containers use.
//!
//! ```toml
//! interval = "10s"
//! [tags]
//! dc = "zrh1"
//! [[addr_ports]]
//! ports = ["80", "443"]          # or ["1.1.1.1:80"]
//! [addr_ports.tags]
//! service = "http"
//! [[addr_ports]]
//! ports_match = ["*:5432"]       # one series per local address
//! ```
//!
//! A socket belongs to the first group one of whose entries matches its
//! local port (or local address and port). `ports_match` wins over `ports`
//! when a group has both. A bad file is refused whole: one line naming the
//! file, the line and the key.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// Read when no `--config` is given, if it exists.
pub const DEFAULT_PATH: &str = "/etc/netconn/netconn.toml";

pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub interval: Option<Duration>,
    pub tags: Tags,
    pub groups: Vec<Group>,
    /// `[conntrack]` warning / critical / clear, in % of the table.
    pub conntrack: Thresholds,
    /// `[metrics] top_ports`: service ports with their own TCP metrics
    /// besides the groups' (the busiest, by RTT samples).
    pub top_ports: usize,
    /// `[alerts.listeners] allow`: addresses and ports that may start
    /// listening without a `new_listener` alert.
    pub allowed_listeners: Vec<Entry>,
    /// `[alerts.conn_spike]` and `[alerts.syn_flood]`.
    pub conn_spike: SpikeConfig,
    pub syn_flood: SynFloodConfig,
    /// `[alerts.port_scan]`.
    pub port_scan: ScanConfig,
    /// `[alerts.port_exhaustion]`.
    pub port_exhaustion: ExhaustionConfig,
    /// What is allowed but probably not meant (an entry no socket can
    /// reach), one line each, for stderr.
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: None,
            tags: Tags::new(),
            groups: Vec::new(),
            conntrack: Thresholds::default(),
            top_ports: DEFAULT_TOP_PORTS,
            allowed_listeners: Vec::new(),
            conn_spike: Default::default(),
            syn_flood: Default::default(),
            port_scan: Default::default(),
            port_exhaustion: Default::default(),
            warnings: Vec::new(),
        }
    }
}

/// `[alerts.port_exhaustion]`: how much of the ephemeral port range one
/// destination may use, in % of it, with the conntrack alert's
/// hysteresis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExhaustionConfig {
    pub enabled: bool,
    pub levels: Thresholds,
}

impl Default for ExhaustionConfig {
    fn default() -> ExhaustionConfig {
        ExhaustionConfig {
            enabled: true,
            levels: Thresholds {
                warn: 80.0,
                crit: 95.0,
                clear: 75.0,
            },
        }
    }
}

/// `[conntrack]`: alert levels for the table's fullness, in % of it, as
/// Netdata's `netfilter_conntrack_full`: warning from `warn`, critical
/// from `crit`, back to clear only below `clear` (hysteresis).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warn: f64,
    pub crit: f64,
    pub clear: f64,
}

impl Thresholds {
    /// These levels with the ones given over them, checked (percentages:
    /// `[conntrack]` and `[alerts.port_exhaustion]`).
    fn over(
        self,
        warning: Option<f64>,
        critical: Option<f64>,
        clear: Option<f64>,
    ) -> Result<Thresholds, String> {
        let t = Thresholds {
            warn: warning.unwrap_or(self.warn),
            crit: critical.unwrap_or(self.crit),
            clear: clear.unwrap_or(self.clear),
        };
        if !(0.0 <= t.clear && t.clear <= t.warn && t.warn <= t.crit && t.crit <= 100.0) {
            return Err(format!(
                "need 0 <= clear <= warning <= critical <= 100, got clear {} warning {} critical {}",
                t.clear, t.warn, t.crit
            ));
        }
        Ok(t)
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn: 90.0,
            crit: 95.0,
            clear: 85.0,
        }
    }
}

/// `[alerts.conn_spike]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpikeConfig {
    pub enabled: bool,
    /// How far back the baseline looks (an exponentially weighted mean
    /// with this time constant).
    pub window: Duration,
    /// How long a port is watched before it may alert.
    pub warmup: Duration,
    /// Below this many new connections per second nothing alerts.
    pub min_rate: f64,
    /// Warning, critical and clear at these multiples of the baseline.
    pub warning: f64,
    pub critical: f64,
    pub clear: f64,
}

impl Default for SpikeConfig {
    fn default() -> SpikeConfig {
        SpikeConfig {
            enabled: true,
            window: Duration::from_secs(300),
            warmup: Duration::from_secs(60),
            min_rate: 20.0,
            warning: 5.0,
            critical: 10.0,
            clear: 2.0,
        }
    }
}

/// `[alerts.syn_flood]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynFloodConfig {
    pub enabled: bool,
    /// Warning thresholds: request sockets waiting on one listener, its
    /// SYN-ACK retransmissions and drops per second.
    pub syn_recv: f64,
    pub synack_retrans_per_s: f64,
    pub drops_per_s: f64,
    /// Critical at this many times a warning threshold.
    pub critical: f64,
    /// Clear once every figure is below this fraction of its threshold.
    pub clear: f64,
    /// A figure's threshold is also at least this many times what the
    /// listener usually has (a busy listener's normal is no flood)...
    pub baseline: f64,
    /// ...learned over this long (an exponentially weighted mean, the
    /// plain mean until then; not while alerting).
    pub window: Duration,
}

impl Default for SynFloodConfig {
    fn default() -> SynFloodConfig {
        SynFloodConfig {
            enabled: true,
            syn_recv: 128.0,
            synack_retrans_per_s: 100.0,
            drops_per_s: 10.0,
            critical: 4.0,
            clear: 0.5,
            baseline: 3.0,
            window: Duration::from_secs(300),
        }
    }
}

/// `[alerts.port_scan]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanConfig {
    pub enabled: bool,
    /// Distinct closed ports one address must touch within `window`.
    pub ports: f64,
    pub window: Duration,
    /// Critical at this many times `ports`.
    pub critical: f64,
}

impl Default for ScanConfig {
    fn default() -> ScanConfig {
        ScanConfig {
            enabled: true,
            ports: 20.0,
            window: Duration::from_secs(60),
            critical: 5.0,
        }
    }
}

/// Service ports in `top_ports` unless configured.
pub const DEFAULT_TOP_PORTS: usize = 10;
/// The most `top_ports` may be: the kernel keeps this many ports per
/// interval (see `METRICS_PORT_ENTRIES`).
pub const MAX_TOP_PORTS: usize = 100;

/// At most this many port groups, and entries over all groups: every
/// entry is a series in every record (100,000 groups cost 2.1 GB and
/// 74 MB per record), and DataKit setups use a handful.
pub const MAX_GROUPS: usize = 1024;
pub const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub entries: Vec<Entry>,
    pub tags: Tags,
}

/// One entry of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `"80"`: the port on any local address; one series.
    Port(u16),
    /// `"1.1.1.1:80"`: that address and port only.
    AddrPort(IpAddr, u16),
    /// `"*:80"` in `ports_match`: any local address, one series each.
    EachAddress(u16),
}

impl Entry {
    pub fn port(self) -> u16 {
        match self {
            Entry::Port(p) | Entry::AddrPort(_, p) | Entry::EachAddress(p) => p,
        }
    }

    pub fn matches(self, addr: IpAddr, port: u16) -> bool {
        match self {
            Entry::Port(p) | Entry::EachAddress(p) => p == port,
            Entry::AddrPort(a, p) => p == port && same_addr(a, addr),
        }
    }

    /// The entry as a configuration writes it (`80`, `1.1.1.1:80`,
    /// `*:80`), for messages.
    pub fn shown(self) -> String {
        match self {
            Entry::EachAddress(p) => format!("*:{p}"),
            e => e.label(IpAddr::from([0, 0, 0, 0])),
        }
    }

    /// The `addr_port` a matching socket is reported under.
    pub fn label(self, addr: IpAddr) -> String {
        match self {
            Entry::Port(p) => p.to_string(),
            Entry::AddrPort(a, p) => crate::model::state::endpoint(a, p),
            Entry::EachAddress(p) => crate::model::state::endpoint(addr, p),
        }
    }
}

/// Whether every socket `later` matches is taken by `earlier` (a socket
/// belongs to the first group that matches it).
fn shadows(earlier: Entry, later: Entry) -> bool {
    match (earlier, later) {
        (Entry::Port(p) | Entry::EachAddress(p), l) => p == l.port(),
        (Entry::AddrPort(a, p), Entry::AddrPort(b, q)) => p == q && same_addr(a, b),
        (Entry::AddrPort(..), _) => false,
    }
}

/// The limits (an error past them), and a warning for each entry whose
/// series would stay zero because an earlier entry takes its sockets.
fn check_groups(groups: &[Group]) -> Result<Vec<String>, String> {
    let entries: usize = groups.iter().map(|g| g.entries.len()).sum();
    if groups.len() > MAX_GROUPS || entries > MAX_ENTRIES {
        return Err(format!(
            "{} port groups with {entries} entries: at most {MAX_GROUPS} groups and {MAX_ENTRIES} entries",
            groups.len()
        ));
    }
    let mut warnings = Vec::new();
    let mut seen: Vec<(usize, Entry)> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        for &e in &g.entries {
            if let Some((j, first)) = seen.iter().find(|(_, f)| shadows(*f, e)) {
                warnings.push(format!(
                    "port group {} entry {:?} is taken by group {} entry {:?} (a socket counts in the first group that matches it): its series stays 0",
                    i + 1,
                    e.shown(),
                    j + 1,
                    first.shown(),
                ));
            }
            seen.push((i, e));
        }
    }
    Ok(warnings)
}

/// An IPv4 address also matches its IPv4-mapped IPv6 form (dual-stack
/// sockets report that).
fn same_addr(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.to_canonical() == b.to_canonical()
}

fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// Parses a `ports` entry (`wildcard`: a `ports_match` entry).
pub fn parse_entry(s: &str, wildcard: bool) -> Result<Entry, String> {
    let bad = || {
        format!(
            "{s:?} is not a port (1-65535), an address:port{}",
            if wildcard { " or *:port" } else { "" }
        )
    };
    if let Some(p) = parse_port(s) {
        return Ok(if wildcard {
            Entry::EachAddress(p)
        } else {
            Entry::Port(p)
        });
    }
    let (addr, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port = parse_port(port).ok_or_else(bad)?;
    if addr == "*" {
        return if wildcard {
            Ok(Entry::EachAddress(port))
        } else {
            Err(format!("{s:?}: a wildcard address belongs in ports_match"))
        };
    }
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    Ok(Entry::AddrPort(addr, port))
}

/// A port as DataKit writes a socket's (`strconv` of the number: no sign,
/// no leading zero), 0 included.
fn datakit_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| p.to_string() == s)
}

/// An entry of a DataKit file (or `ENV_INPUT_NETSTAT_ADDR_PORTS`), read as
/// DataKit reads it (its netstat input, `input.go`): never an error. A
/// `ports` entry is compared as text with a socket's port and with its
/// `address:port` (the address as Go prints it: `1.2.3.4`, `::`); a
/// `ports_match` entry counts only in the form `*:PORT`. Err(why): DataKit
/// keeps it, and it matches no socket (a warning, not an error).
pub fn parse_datakit_entry(s: &str, wildcard: bool) -> Result<Entry, String> {
    if wildcard {
        let Some(port) = s.strip_prefix("*:") else {
            return Err(format!(
                "{s:?} is skipped, as DataKit skips a ports_match entry not written *:PORT"
            ));
        };
        return datakit_port(port).map(Entry::EachAddress).ok_or_else(|| {
            format!("{s:?} matches no socket in DataKit (its port is not a port as a socket's is written)")
        });
    }
    if let Some(p) = datakit_port(s) {
        return Ok(Entry::Port(p));
    }
    let never = || {
        format!(
            "{s:?} matches no socket in DataKit (ports compares it with a socket's PORT or ADDRESS:PORT as written, e.g. 8080, 10.0.0.1:8080, :::8080)"
        )
    };
    let (addr, port) = s.rsplit_once(':').ok_or_else(never)?;
    let port = datakit_port(port).ok_or_else(never)?;
    let ip: IpAddr = addr.parse().map_err(|_| never())?;
    if ip.to_string() != addr {
        return Err(never());
    }
    Ok(Entry::AddrPort(ip, port))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interval: Option<Spanned<String>>,
    #[serde(default)]
    tags: Tags,
    #[serde(default)]
    addr_ports: Vec<RawGroup>,
    conntrack: Option<Spanned<RawConntrack>>,
    metrics: Option<RawMetrics>,
    alerts: Option<RawAlerts>,
    /// DataKit's own file: `[[inputs.netstat]]` holding the keys above.
    inputs: Option<RawInputs>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInputs {
    netstat: Vec<RawConfig>,
}

/// DataKit's netstat input takes intervals from 1 s to 1 min
/// (`config.ProtectedInterval`), and so does netconn for its files and
/// variables.
const DATAKIT_INTERVALS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// An interval of DataKit's, brought within its bounds as DataKit does;
/// the warning says so when it was out.
fn datakit_interval(d: Duration, source: &str) -> (Duration, Option<String>) {
    let (min, max) = DATAKIT_INTERVALS;
    let kept = d.clamp(min, max);
    let warning = (kept != d).then(|| {
        format!(
            "{source}: DataKit's netstat input takes 1s to 1m; using {}",
            humantime::format_duration(kept)
        )
    });
    (kept, warning)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    listeners: Option<RawListenerAlerts>,
    conn_spike: Option<Spanned<RawSpike>>,
    syn_flood: Option<Spanned<RawSynFlood>>,
    port_scan: Option<Spanned<RawScan>>,
    port_exhaustion: Option<Spanned<RawExhaustion>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExhaustion {
    enabled: Option<bool>,
    warning: Option<Number>,
    critical: Option<Number>,
    clear: Option<Number>,
}

impl AlertTable for RawExhaustion {
    type Config = ExhaustionConfig;
    const NAME: &'static str = crate::model::alert::Kind::PortExhaustion.name();
    const KEYS: &'static [&'static str] = &["enabled", "warning", "critical", "clear"];

    fn config(self, mut c: ExhaustionConfig) -> Result<ExhaustionConfig, String> {
        c.enabled = self.enabled.unwrap_or(c.enabled);
        let get = |n: Option<Number>| n.map(Number::get);
        c.levels = c
            .levels
            .over(get(self.warning), get(self.critical), get(self.clear))?;
        Ok(c)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScan {
    enabled: Option<bool>,
    ports: Option<Number>,
    window: Option<String>,
    critical: Option<Number>,
}

/// An `[alerts.<name>]` table as written: its keys, and the values it
/// gives over a configuration, checked.
trait AlertTable: serde::de::DeserializeOwned {
    type Config: Default;
    const NAME: &'static str;
    const KEYS: &'static [&'static str];
    fn config(self, c: Self::Config) -> Result<Self::Config, String>;
}

impl AlertTable for RawScan {
    type Config = ScanConfig;
    const NAME: &'static str = crate::model::alert::Kind::PortScan.name();
    const KEYS: &'static [&'static str] = &["enabled", "ports", "window", "critical"];

    fn config(self, mut c: ScanConfig) -> Result<ScanConfig, String> {
        c.enabled = self.enabled.unwrap_or(c.enabled);
        c.ports = self.ports.map_or(c.ports, Number::get);
        c.critical = self.critical.map_or(c.critical, Number::get);
        if let Some(w) = self.window {
            c.window = parse_interval(&w).map_err(|e| format!("window: {e}"))?;
        }
        if !(c.ports >= 1.0 && c.ports.is_finite() && c.critical >= 1.0 && c.critical.is_finite()) {
            return Err(format!(
                "need ports >= 1 and critical >= 1 (times ports), got ports {} critical {}",
                c.ports, c.critical
            ));
        }
        Ok(c)
    }
}

/// A number written as an integer or a float.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn get(self) -> f64 {
        match self {
            Number::Int(n) => n as f64,
            Number::Float(f) => f,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpike {
    enabled: Option<bool>,
    window: Option<String>,
    warmup: Option<String>,
    min_rate: Option<Number>,
    warning: Option<Number>,
    critical: Option<Number>,
    clear: Option<Number>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSynFlood {
    enabled: Option<bool>,
    syn_recv: Option<Number>,
    synack_retrans_per_s: Option<Number>,
    drops_per_s: Option<Number>,
    critical: Option<Number>,
    clear: Option<Number>,
    baseline: Option<Number>,
    window: Option<String>,
}

impl AlertTable for RawSpike {
    type Config = SpikeConfig;
    const NAME: &'static str = crate::model::alert::Kind::ConnSpike.name();
    const KEYS: &'static [&'static str] = &[
        "enabled", "window", "warmup", "min_rate", "warning", "critical", "clear",
    ];

    fn config(self, mut c: SpikeConfig) -> Result<SpikeConfig, String> {
        c.enabled = self.enabled.unwrap_or(c.enabled);
        if let Some(w) = self.window {
            c.window = parse_interval(&w).map_err(|e| format!("window: {e}"))?;
        }
        if let Some(w) = self.warmup {
            c.warmup = parse_interval(&w).map_err(|e| format!("warmup: {e}"))?;
        }
        c.min_rate = self.min_rate.map_or(c.min_rate, Number::get);
        c.warning = self.warning.map_or(c.warning, Number::get);
        c.critical = self.critical.map_or(c.critical, Number::get);
        c.clear = self.clear.map_or(c.clear, Number::get);
        let ordered = 0.0 < c.clear && c.clear < c.warning && c.warning <= c.critical;
        if !(ordered && c.min_rate >= 0.0 && c.critical.is_finite() && c.min_rate.is_finite()) {
            return Err(format!(
                "need min_rate >= 0 and 0 < clear < warning <= critical (multiples of the baseline), got min_rate {} clear {} warning {} critical {}",
                c.min_rate, c.clear, c.warning, c.critical
            ));
        }
        Ok(c)
    }
}

impl AlertTable for RawSynFlood {
    type Config = SynFloodConfig;
    const NAME: &'static str = crate::model::alert::Kind::SynFlood.name();
    const KEYS: &'static [&'static str] = &[
        "enabled",
        "syn_recv",
        "synack_retrans_per_s",
        "drops_per_s",
        "critical",
        "clear",
        "baseline",
        "window",
    ];

    fn config(self, mut c: SynFloodConfig) -> Result<SynFloodConfig, String> {
        c.enabled = self.enabled.unwrap_or(c.enabled);
        c.syn_recv = self.syn_recv.map_or(c.syn_recv, Number::get);
        c.synack_retrans_per_s = self
            .synack_retrans_per_s
            .map_or(c.synack_retrans_per_s, Number::get);
        c.drops_per_s = self.drops_per_s.map_or(c.drops_per_s, Number::get);
        c.critical = self.critical.map_or(c.critical, Number::get);
        c.clear = self.clear.map_or(c.clear, Number::get);
        c.baseline = self.baseline.map_or(c.baseline, Number::get);
        if let Some(w) = self.window {
            c.window = parse_interval(&w).map_err(|e| format!("window: {e}"))?;
        }
        if !(c.baseline >= 1.0 && c.baseline.is_finite()) {
            return Err(format!("need baseline >= 1, got {}", c.baseline));
        }
        let positive = [c.syn_recv, c.synack_retrans_per_s, c.drops_per_s]
            .iter()
            .all(|t| *t > 0.0 && t.is_finite());
        if !(positive
            && c.critical >= 1.0
            && c.critical.is_finite()
            && 0.0 < c.clear
            && c.clear < 1.0)
        {
            return Err(format!(
                "need syn_recv, synack_retrans_per_s, drops_per_s > 0, critical >= 1 and 0 < clear < 1 (factors of the warning thresholds), got {} {} {} {} {}",
                c.syn_recv, c.synack_retrans_per_s, c.drops_per_s, c.critical, c.clear
            ));
        }
        Ok(c)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListenerAlerts {
    #[serde(default)]
    allow: Vec<Spanned<PortValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    top_ports: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConntrack {
    warning: Option<f64>,
    critical: Option<f64>,
    clear: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    ports: Vec<Spanned<PortValue>>,
    #[serde(default)]
    ports_match: Vec<Spanned<PortValue>>,
    #[serde(default)]
    tags: Tags,
}

/// A `ports` entry as written: `"80"`, `"1.1.1.1:80"`, or a bare `80`
/// (accepted as in `NETCONN_ADDR_PORTS`).
#[derive(Deserialize)]
#[serde(untagged)]
enum PortValue {
    Text(String),
    Number(i64),
}

impl PortValue {
    fn text(&self) -> String {
        match self {
            PortValue::Text(s) => s.clone(),
            PortValue::Number(n) => n.to_string(),
        }
    }
}

/// A configuration error, one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Config {
    /// Parses a file's text; `name` is how errors name it.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let msg = plain(e.message());
            match line {
                Some(l) => ConfigError(format!("{name}:{l}: {msg}")),
                None => ConfigError(format!("{name}: {msg}")),
            }
        })?;
        let at = |span: std::ops::Range<usize>, key: &str, msg: String| {
            ConfigError(format!(
                "{name}:{}: {key}: {msg}",
                line_of(text, span.start)
            ))
        };
        // DataKit's netstat.conf: its one [[inputs.netstat]] table is the
        // configuration.
        let (raw, datakit) = match raw.inputs {
            None => (raw, false),
            Some(inputs) => {
                let mut tables = inputs.netstat;
                let whole = |msg: &str| ConfigError(format!("{name}: inputs.netstat: {msg}"));
                let own_keys =
                    raw.interval.is_some() || !raw.tags.is_empty() || !raw.addr_ports.is_empty();
                if tables.len() != 1 || own_keys {
                    return Err(whole(
                        "a DataKit file holds one [[inputs.netstat]] table and nothing beside it",
                    ));
                }
                let inner = tables.pop().expect("one table");
                if inner.inputs.is_some() {
                    return Err(whole("an inputs table inside it is not DataKit's"));
                }
                (inner, true)
            }
        };
        let mut warnings = Vec::new();
        let interval = match raw.interval {
            Some(s) => {
                let d = parse_interval(s.get_ref()).map_err(|e| at(s.span(), "interval", e))?;
                if datakit {
                    let (d, warning) = datakit_interval(d, &format!("{name}: interval"));
                    warnings.extend(warning);
                    Some(d)
                } else {
                    Some(d)
                }
            }
            None => None,
        };
        let mut groups = Vec::with_capacity(raw.addr_ports.len());
        for g in raw.addr_ports {
            // ports_match wins when both are set.
            let (key, list, wildcard) = if g.ports_match.is_empty() {
                ("addr_ports.ports", g.ports, false)
            } else {
                ("addr_ports.ports_match", g.ports_match, true)
            };
            if list.is_empty() {
                return Err(ConfigError(format!(
                    "{name}: an [[addr_ports]] group needs ports or ports_match"
                )));
            }
            let entries = if datakit {
                // As DataKit: nothing refused; what matches nothing said.
                let mut entries = Vec::new();
                for s in list {
                    match parse_datakit_entry(&s.get_ref().text(), wildcard) {
                        Ok(e) => entries.push(e),
                        Err(why) => warnings.push(format!(
                            "{name}:{}: {key}: {why}",
                            line_of(text, s.span().start)
                        )),
                    }
                }
                entries
            } else {
                list.into_iter()
                    .map(|s| {
                        parse_entry(&s.get_ref().text(), wildcard).map_err(|e| at(s.span(), key, e))
                    })
                    .collect::<Result<_, _>>()?
            };
            groups.push(Group {
                entries,
                tags: g.tags,
            });
        }
        let mut conntrack = Thresholds::default();
        if let Some(c) = raw.conntrack {
            let span = c.span();
            let c = c.into_inner();
            conntrack = conntrack
                .over(c.warning, c.critical, c.clear)
                .map_err(|e| at(span, "conntrack", e))?;
        }
        let top_ports = match raw.metrics.and_then(|m| m.top_ports) {
            None => DEFAULT_TOP_PORTS,
            Some(n) => usize::try_from(*n.get_ref())
                .ok()
                .filter(|n| *n <= MAX_TOP_PORTS)
                .ok_or_else(|| {
                    at(
                        n.span(),
                        "metrics.top_ports",
                        format!("need 0 to {MAX_TOP_PORTS}, got {}", n.get_ref()),
                    )
                })?,
        };
        let (listeners, spike, flood, scan, exhaustion) = match raw.alerts {
            Some(a) => (
                a.listeners,
                a.conn_spike,
                a.syn_flood,
                a.port_scan,
                a.port_exhaustion,
            ),
            None => (None, None, None, None, None),
        };
        // An alert's table: its values checked, its line named on error.
        let port_scan = alert_table(scan, &at)?;
        let conn_spike = alert_table(spike, &at)?;
        let syn_flood = alert_table(flood, &at)?;
        let port_exhaustion = alert_table(exhaustion, &at)?;
        let allowed_listeners = listeners
            .map(|l| l.allow)
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                parse_entry(&s.get_ref().text(), false)
                    .map_err(|e| at(s.span(), "alerts.listeners.allow", e))
            })
            .collect::<Result<_, _>>()?;
        warnings.extend(check_groups(&groups).map_err(|e| ConfigError(format!("{name}: {e}")))?);
        Ok(Config {
            interval,
            tags: raw.tags,
            groups,
            conntrack,
            top_ports,
            allowed_listeners,
            conn_spike,
            syn_flood,
            port_scan,
            port_exhaustion,
            warnings,
        })
    }

    /// The file given, or the default one if present, or nothing; then
    /// the environment overrides.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let path: Option<PathBuf> = match path {
            Some(p) => Some(p.to_owned()),
            None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
        };
        let mut config = match &path {
            Some(p) => {
                let name = p.display().to_string();
                let text = read_bounded(p).map_err(|e| ConfigError(format!("{name}: {e}")))?;
                Config::parse(&text, &name)?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.check_tags()?;
        Ok(config)
    }

    /// Tags as line protocol and Prometheus can carry them: a tag with an
    /// empty value is left out (said once), control characters in a tag
    /// are refused (a newline would split a line of `--format line`), and
    /// so are two tags of a set whose Prometheus label names are one
    /// (`a-b` and `a.b` both become `a_b`: a scrape with a duplicate label
    /// is rejected whole).
    pub fn check_tags(&mut self) -> Result<(), ConfigError> {
        let mut warnings = Vec::new();
        let mut check = |tags: &mut Tags, what: &str| -> Result<(), ConfigError> {
            for (k, v) in tags.iter() {
                if k.chars().chain(v.chars()).any(char::is_control) {
                    return Err(ConfigError(format!(
                        "{what}tag {k:?}: control characters are not allowed in a tag"
                    )));
                }
            }
            tags.retain(|k, v| {
                let keep = !v.is_empty();
                if !keep {
                    warnings.push(format!(
                        "{what}tag {k:?} has an empty value: left out (line protocol cannot carry it)"
                    ));
                }
                keep
            });
            let mut named: BTreeMap<String, &str> = BTreeMap::new();
            for k in tags.keys() {
                if let Some(other) = named.insert(label_name(k), k) {
                    return Err(ConfigError(format!(
                        "{what}tags {other:?} and {k:?} both become the Prometheus label {:?}: rename one",
                        label_name(k)
                    )));
                }
            }
            Ok(())
        };
        check(&mut self.tags, "")?;
        for (i, group) in self.groups.iter_mut().enumerate() {
            check(&mut group.tags, &format!("port group {}: ", i + 1))?;
        }
        self.warnings.extend(warnings);
        Ok(())
    }

    /// The environment's `NETCONN_*` and `ENV_INPUT_NETSTAT_*` variables
    /// that are not UTF-8: an error naming the first, rather than a value
    /// silently ignored.
    pub fn check_env_text() -> Result<(), ConfigError> {
        for (key, value) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let ours = key.starts_with("NETCONN_") || key.starts_with("ENV_INPUT_NETSTAT_");
            if ours && value.to_str().is_none() {
                return Err(ConfigError(format!("{key}: not UTF-8 text")));
            }
            check_alert_var(&key)?;
        }
        Ok(())
    }

    /// `NETCONN_INTERVAL`, `NETCONN_ADDR_PORTS` (a JSON list of ports,
    /// replacing the groups with one), `NETCONN_TAGS` (`k=v,k=v`, added to
    /// the tags, replacing equal keys).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        self.apply_datakit_env(&env);
        // NETCONN_ALERTS_<ALERT>_<KEY>: one key of an [alerts.<alert>] table.
        self.conn_spike = alert_env::<RawSpike>(&env, self.conn_spike)?;
        self.syn_flood = alert_env::<RawSynFlood>(&env, self.syn_flood)?;
        self.port_scan = alert_env::<RawScan>(&env, self.port_scan)?;
        self.port_exhaustion = alert_env::<RawExhaustion>(&env, self.port_exhaustion)?;
        if let Some(v) = env("NETCONN_INTERVAL") {
            let d =
                parse_interval(&v).map_err(|e| ConfigError(format!("NETCONN_INTERVAL: {e}")))?;
            self.interval = Some(d);
        }
        if let Some(v) = env("NETCONN_ADDR_PORTS") {
            let bad = |e: String| ConfigError(format!("NETCONN_ADDR_PORTS: {e}"));
            let list: Vec<serde_json::Value> = serde_json::from_str(&v).map_err(|_| {
                bad(format!(
                    "expected a JSON list such as [\"80\",\"443\"], got {v:?}"
                ))
            })?;
            let entries = list
                .iter()
                .map(|p| match p {
                    serde_json::Value::String(s) => parse_entry(s, false),
                    serde_json::Value::Number(n) => parse_entry(&n.to_string(), false),
                    other => Err(format!("{other} is not a port")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)?;
            self.groups = one_group(entries);
            self.warnings = check_groups(&self.groups).map_err(bad)?;
        }
        if let Some(v) = env("NETCONN_TAGS") {
            for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, val) = pair
                    .split_once('=')
                    .filter(|(k, _)| !k.trim().is_empty())
                    .ok_or_else(|| {
                        ConfigError(format!("NETCONN_TAGS: expected key=value, got {pair:?}"))
                    })?;
                self.tags.insert(k.trim().to_owned(), val.trim().to_owned());
            }
        }
        Ok(())
    }
}

impl Config {
    /// DataKit's variables for its netstat input, read as DataKit reads
    /// them (`ReadEnv`): `ENV_INPUT_NETSTAT_INTERVAL` (1s to 1m),
    /// `ENV_INPUT_NETSTAT_ADDR_PORTS` (a JSON list of ports: one group, no
    /// tags), `ENV_INPUT_NETSTAT_TAGS` (`k=v,k=v`, added). A value DataKit
    /// would ignore is ignored, with a warning; netconn's own `NETCONN_*`
    /// variables come after them and win.
    fn apply_datakit_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        // As DataKit's ParseGlobalTags: split on commas, each piece on
        // '=' into exactly two parts (else skipped, with a warning), nothing
        // trimmed.
        if let Some(v) = env("ENV_INPUT_NETSTAT_TAGS").filter(|v| !v.is_empty()) {
            for pair in v.split(',') {
                match pair.split('=').collect::<Vec<_>>()[..] {
                    // DataKit keeps an empty name; no output can carry one.
                    ["", _] => self.warnings.push(format!(
                        "ENV_INPUT_NETSTAT_TAGS: {pair:?} has no tag name; skipped"
                    )),
                    [k, val] => {
                        self.tags.insert(k.to_owned(), val.to_owned());
                    }
                    _ => self.warnings.push(format!(
                        "ENV_INPUT_NETSTAT_TAGS: {pair:?} is not key=value; skipped, as DataKit does"
                    )),
                }
            }
        }
        if let Some(v) = env("ENV_INPUT_NETSTAT_INTERVAL") {
            match parse_interval(&v) {
                Ok(d) => {
                    let (d, warning) = datakit_interval(d, "ENV_INPUT_NETSTAT_INTERVAL");
                    self.warnings.extend(warning);
                    self.interval = Some(d);
                }
                Err(e) => self.warnings.push(format!(
                    "ENV_INPUT_NETSTAT_INTERVAL: {e}; ignored, as DataKit does"
                )),
            }
        }
        if let Some(v) = env("ENV_INPUT_NETSTAT_ADDR_PORTS") {
            // As DataKit: a JSON list (null: none) replaces the groups,
            // its entries unchecked (those that match nothing said).
            match serde_json::from_str::<Option<Vec<String>>>(&v) {
                Ok(list) => {
                    let mut entries = Vec::new();
                    for p in list.unwrap_or_default() {
                        match parse_datakit_entry(&p, false) {
                            Ok(e) => entries.push(e),
                            Err(why) => self
                                .warnings
                                .push(format!("ENV_INPUT_NETSTAT_ADDR_PORTS: {why}")),
                        }
                    }
                    self.groups = one_group(entries);
                }
                Err(_) => self.warnings.push(format!(
                    "ENV_INPUT_NETSTAT_ADDR_PORTS: expected a JSON list of strings, got {v:?}; ignored, as DataKit does"
                )),
            }
        }
    }
}

/// The Prometheus label name a tag becomes: Prometheus allows
/// `[a-zA-Z_][a-zA-Z0-9_]*`; anything else becomes `_`.
pub fn label_name(tag: &str) -> String {
    let mut out: String = tag
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A TOML error message on one line, in words a user knows.
fn plain(message: &str) -> String {
    message
        .replace('\n', " ")
        .replace(
            "data did not match any variant of untagged enum Number",
            "expected a number",
        )
        .replace(
            "data did not match any variant of untagged enum PortValue",
            "expected a port such as \"80\" or \"1.1.1.1:80\"",
        )
}

/// An alert's table of a file, over the defaults; an error names its line.
fn alert_table<R: AlertTable>(
    raw: Option<Spanned<R>>,
    at: &impl Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
) -> Result<R::Config, ConfigError> {
    match raw {
        Some(s) => {
            let span = s.span();
            let key = format!("alerts.{}", R::NAME);
            s.into_inner()
                .config(R::Config::default())
                .map_err(|e| at(span, &key, e))
        }
        None => Ok(R::Config::default()),
    }
}

/// A `NETCONN_ALERTS_*` variable that names no alert's key (a misspelt
/// one would otherwise be ignored): an error listing what there is.
fn check_alert_var(var: &str) -> Result<(), ConfigError> {
    let Some(rest) = var.strip_prefix("NETCONN_ALERTS_") else {
        return Ok(());
    };
    let tables: [(&str, &[&str]); 4] = [
        (RawSpike::NAME, RawSpike::KEYS),
        (RawSynFlood::NAME, RawSynFlood::KEYS),
        (RawScan::NAME, RawScan::KEYS),
        (RawExhaustion::NAME, RawExhaustion::KEYS),
    ];
    let known: Vec<String> = tables
        .iter()
        .flat_map(|(name, keys)| {
            keys.iter()
                .map(move |k| format!("{name}_{k}").to_uppercase())
        })
        .collect();
    if known.iter().any(|k| k == rest) {
        return Ok(());
    }
    Err(ConfigError(format!(
        "{var}: no such alert setting (NETCONN_ALERTS_ followed by one of {})",
        known.join(", ")
    )))
}

/// The `NETCONN_ALERTS_<ALERT>_<KEY>` variables of one alert, read as the
/// TOML table they stand for (numbers and booleans as such, anything else
/// a string) and given over `c`; an error names the variables.
fn alert_env<R: AlertTable>(
    env: &impl Fn(&str) -> Option<String>,
    c: R::Config,
) -> Result<R::Config, ConfigError> {
    let prefix = format!("NETCONN_ALERTS_{}_", R::NAME.to_uppercase());
    let mut text = String::new();
    let mut named = Vec::new();
    for key in R::KEYS {
        let var = format!("{prefix}{}", key.to_uppercase());
        let Some(v) = env(&var) else { continue };
        let v = v.trim();
        let value = if v.parse::<f64>().is_ok() || v == "true" || v == "false" {
            v.to_owned()
        } else {
            format!("{v:?}")
        };
        text.push_str(&format!("{key} = {value}\n"));
        named.push(var);
    }
    if text.is_empty() {
        return Ok(c);
    }
    let var = named.join(", ");
    let bad = |e: String| ConfigError(format!("{var}: {e}"));
    toml::from_str::<R>(&text)
        .map_err(|e| bad(plain(e.message())))?
        .config(c)
        .map_err(bad)
}

/// The groups a list of ports in a variable makes: one, without tags
/// (none for an empty list).
fn one_group(entries: Vec<Entry>) -> Vec<Group> {
    if entries.is_empty() {
        return Vec::new();
    }
    vec![Group {
        entries,
        tags: Tags::new(),
    }]
}

/// Parses `500ms`, `1s`, `1m`, `1m30s`...; zero is refused.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|_| format!("expected a duration such as 500ms, 1s or 1m, got {s:?}"))?;
    if d < Duration::from_millis(10) {
        return Err(format!("{s:?} is too short: the shortest interval is 10ms"));
    }
    Ok(d)
}

/// A configuration file is at most this long.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A configuration file's text: a regular file (a pipe or a device is
/// refused at once, never waited on or read without end) of at most
/// [`MAX_FILE_BYTES`].
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("larger than {} KiB", MAX_FILE_BYTES >> 10));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {} KiB", MAX_FILE_BYTES >> 10));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
interval = "5s"
[tags]
dc = "zrh1"

[[addr_ports]]
ports = ["80", "1.1.1.1:443", "[::1]:8443"]
[addr_ports.tags]
service = "http"

[[addr_ports]]
ports = ["5432"]
ports_match = ["*:5432"]
"#;

    #[test]
    fn listener_alerts_allow_ports_and_addresses() {
        let c = Config::parse(
            "[alerts.listeners]\nallow = [\"22\", \"127.0.0.1:631\", 8080]\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            c.allowed_listeners,
            [
                Entry::Port(22),
                Entry::AddrPort("127.0.0.1".parse().unwrap(), 631),
                Entry::Port(8080)
            ]
        );
        let err = Config::parse("[alerts.listeners]\nallow = [\"ssh\"]\n", "t").unwrap_err();
        assert!(err.to_string().contains("alerts.listeners.allow"), "{err}");
        assert!(Config::parse("[alerts.bogus]\n", "t").is_err());
    }

    #[test]
    fn parses_groups_tags_and_interval() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.interval, Some(Duration::from_secs(5)));
        assert_eq!(c.tags["dc"], "zrh1");
        assert_eq!(c.groups.len(), 2);
        assert_eq!(c.top_ports, DEFAULT_TOP_PORTS);
        assert_eq!(
            Config::parse("[metrics]\ntop_ports = 3\n", "t")
                .unwrap()
                .top_ports,
            3
        );
        assert_eq!(
            c.groups[0].entries,
            [
                Entry::Port(80),
                Entry::AddrPort("1.1.1.1".parse().unwrap(), 443),
                Entry::AddrPort("::1".parse().unwrap(), 8443),
            ]
        );
        assert_eq!(c.groups[0].tags["service"], "http");
        // ports_match preferred.
        assert_eq!(c.groups[1].entries, [Entry::EachAddress(5432)]);
        assert_eq!(c.conntrack, Thresholds::default());
        let c = Config::parse("[conntrack]\nwarning = 70\nclear = 60\n", "t").unwrap();
        assert_eq!(
            (c.conntrack.warn, c.conntrack.clear, c.conntrack.crit),
            (70.0, 60.0, 95.0)
        );
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let cases = [
            (
                "[[addr_ports]]\nports = [\"80\", \"http\"]\n",
                "t.toml:2: addr_ports.ports: \"http\"",
            ),
            ("interval = \"soon\"\n", "t.toml:1: interval:"),
            (
                "[[addr_ports]]\nports_match = [\"*:0\"]\n",
                "t.toml:2: addr_ports.ports_match:",
            ),
            (
                "[[addr_ports]]\nports = [\"*:80\"]\n",
                "t.toml:2: addr_ports.ports:",
            ),
            ("\n\nbogus = 1\n", "t.toml:3: unknown field `bogus`"),
            (
                "[[addr_ports]]\nport = [\"80\"]\n",
                "t.toml:2: unknown field `port`",
            ),
            (
                "[[addr_ports]]\n[addr_ports.tags]\na = \"b\"\n",
                "needs ports or ports_match",
            ),
            ("interval = 5\n", "t.toml:1:"),
            ("[tags\n", "t.toml:1:"),
            (
                "[conntrack]\nwarning = 99\n",
                "t.toml:1: conntrack: need 0 <= clear",
            ),
            ("[conntrack]\nwarn = 80\n", "t.toml:2: unknown field `warn`"),
            (
                "[metrics]\ntop_ports = -1\n",
                "t.toml:2: metrics.top_ports: need 0 to 100, got -1",
            ),
            ("[metrics]\ntop = 5\n", "t.toml:2: unknown field `top`"),
        ];
        for (text, want) in cases {
            let err = Config::parse(text, "t.toml").unwrap_err().0;
            assert!(
                err.starts_with(want) || err.contains(want),
                "{text:?}: {err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn entries_match_and_label() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let e = parse_entry("127.0.0.1:80", false).unwrap();
        assert!(e.matches(lo, 80) && e.matches(mapped, 80) && !e.matches(lo, 81));
        assert_eq!(e.label(lo), "127.0.0.1:80");
        let any = parse_entry("*:80", true).unwrap();
        assert_eq!(any.label("::1".parse().unwrap()), "[::1]:80");
        assert_eq!(parse_entry("80", false).unwrap().label(lo), "80");
        for bad in ["0", "65536", "x:80", "1.1.1.1:", ":80", "", "1.1.1.1:0"] {
            assert!(parse_entry(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_in_toml_as_in_the_environment() {
        let c = Config::parse("[[addr_ports]]\nports = [80, \"443\"]\n", "t").unwrap();
        assert_eq!(c.groups[0].entries, [Entry::Port(80), Entry::Port(443)]);
        let err = Config::parse("[[addr_ports]]\nports = [70000]\n", "t.toml").unwrap_err();
        assert!(
            err.0.starts_with("t.toml:2: addr_ports.ports: \"70000\""),
            "{err}"
        );
    }

    #[test]
    fn shadowed_entries_warn_and_limits_hold() {
        let c = Config::parse(
            "[[addr_ports]]\nports = [\"80\"]\n[[addr_ports]]\nports = [\"127.0.0.1:80\", \"81\"]\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("group 2 entry \"127.0.0.1:80\""),
            "{:?}",
            c.warnings
        );
        // An address entry does not shadow the whole port.
        let c = Config::parse(
            "[[addr_ports]]\nports = [\"127.0.0.1:80\"]\n[[addr_ports]]\nports = [\"80\"]\n",
            "t",
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let many = "[[addr_ports]]\nports = [\"80\"]\n".repeat(MAX_GROUPS + 1);
        let err = Config::parse(&many, "t.toml").unwrap_err();
        assert!(err.0.contains("at most 1024 groups"), "{err}");
    }

    #[test]
    fn environment_overrides() {
        let env = |k: &str| match k {
            "NETCONN_INTERVAL" => Some("2s".to_owned()),
            "NETCONN_ADDR_PORTS" => Some(r#"["8080", 9090]"#.to_owned()),
            "NETCONN_TAGS" => Some("dc=gva, role = web".to_owned()),
            _ => None,
        };
        let mut c = Config::parse(GOOD, "t.toml").unwrap();
        c.apply_env(env).unwrap();
        assert_eq!(c.interval, Some(Duration::from_secs(2)));
        assert_eq!(c.groups.len(), 1);
        assert_eq!(c.groups[0].entries, [Entry::Port(8080), Entry::Port(9090)]);
        assert_eq!(c.tags["dc"], "gva");
        assert_eq!(c.tags["role"], "web");
        for (k, v) in [
            ("NETCONN_INTERVAL", "0s"),
            ("NETCONN_ADDR_PORTS", "80"),
            ("NETCONN_ADDR_PORTS", "[\"x\"]"),
            ("NETCONN_TAGS", "novalue"),
        ] {
            let err = Config::default()
                .apply_env(|key| (key == k).then(|| v.to_owned()))
                .unwrap_err()
                .0;
            assert!(err.starts_with(k), "{err}");
        }
    }

    /// DataKit's own netstat.conf (its sample, uncommented), as it is.
    const DATAKIT_CONF: &str = r#"
[[inputs.netstat]]
  ##(Optional) Collect interval, default is 10 seconds
  interval = '10s'

[[inputs.netstat.addr_ports]]
  ports = ["80","443"]
[inputs.netstat.addr_ports.tags]
  service = "http"

[[inputs.netstat.addr_ports]]
  ports = ["9529"]
[inputs.netstat.addr_ports.tags]
  service = "datakit"
  foo = "bar"

[[inputs.netstat.addr_ports]]
  ports = ["1.1.1.1:80","2.2.2.2:80"]
  ports_match = ["*:80","*:443"]

[inputs.netstat.tags]
  some_tag = "some_value"
"#;

    #[test]
    fn datakits_own_file_is_read_as_it_is() {
        let c = Config::parse(DATAKIT_CONF, "netstat.conf").unwrap();
        assert_eq!(c.interval, Some(Duration::from_secs(10)));
        assert_eq!(c.tags["some_tag"], "some_value");
        assert_eq!(c.groups.len(), 3);
        assert_eq!(c.groups[1].tags["foo"], "bar");
        assert_eq!(c.groups[2].entries[0], Entry::EachAddress(80));
        // Out of DataKit's bounds: brought in, with a warning.
        let c = Config::parse("[[inputs.netstat]]\ninterval = '5m'\n", "n.conf").unwrap();
        assert_eq!(c.interval, Some(Duration::from_secs(60)));
        assert!(c.warnings[0].contains("1s to 1m"), "{:?}", c.warnings);
        for bad in [
            "[[inputs.netstat]]\n[[inputs.netstat]]\n",
            "interval = '1s'\n[[inputs.netstat]]\n",
            "[[inputs.cpu]]\n",
        ] {
            let e = Config::parse(bad, "n.conf").unwrap_err();
            assert!(e.0.starts_with("n.conf:"), "{bad}: {e}");
        }
    }

    #[test]
    fn datakit_entries_are_read_as_datakit_reads_them() {
        // Entries DataKit accepts are accepted (none refuses the file);
        // those that match no socket there match none here, said once.
        let text = "[[inputs.netstat]]\n\
            [[inputs.netstat.addr_ports]]\nports = [\"80\", \"0\", \"*:8081\", \"[::]:80\", \":::443\", \"080\"]\n\
            [[inputs.netstat.addr_ports]]\nports_match = [\"*:8081\", \"127.0.0.1:*\", \"8180\"]\n\
            [[inputs.netstat.addr_ports]]\nports_match = [\"*:8081\"]\n";
        let c = Config::parse(text, "netstat.conf").unwrap();
        assert_eq!(
            c.groups[0].entries,
            [
                Entry::Port(80),
                Entry::Port(0),
                Entry::AddrPort("::".parse().unwrap(), 443)
            ]
        );
        assert_eq!(c.groups[1].entries, [Entry::EachAddress(8081)]);
        let said = c.warnings.join("\n");
        for entry in [
            "\"*:8081\" matches no socket",
            "\"[::]:80\" matches no socket",
            "\"080\" matches",
        ] {
            assert!(said.contains(entry), "{entry} in {said}");
        }
        assert!(said.contains("\"127.0.0.1:*\" is skipped"), "{said}");
        assert!(said.contains("\"8180\" is skipped"), "{said}");
        // A shadowed entry is named as written, not as an address.
        assert!(
            said.contains("entry \"*:8081\" is taken by group 2 entry \"*:8081\""),
            "{said}"
        );
        assert!(!said.contains("0.0.0.0:8081"), "{said}");
        // netconn's own files stay strict.
        assert!(Config::parse("[[addr_ports]]\nports = [\"*:8081\"]\n", "n.toml").is_err());

        // ENV_INPUT_NETSTAT_TAGS as ParseGlobalTags: exactly one '=',
        // nothing trimmed.
        let env = |k: &str| match k {
            "ENV_INPUT_NETSTAT_TAGS" => Some("f=g=h, a = b ,=e,k=,x=y".to_owned()),
            "ENV_INPUT_NETSTAT_ADDR_PORTS" => Some(r#"["*:80","8080"]"#.to_owned()),
            _ => None,
        };
        let mut c = Config::default();
        c.apply_env(env).unwrap();
        c.check_tags().unwrap();
        assert!(!c.tags.contains_key("f"), "f=g=h is dropped: {:?}", c.tags);
        assert_eq!(c.tags[" a "], " b ");
        assert_eq!(c.tags["x"], "y");
        assert!(!c.tags.contains_key(""), "{:?}", c.tags);
        assert_eq!(c.groups[0].entries, [Entry::Port(8080)]);
        let said = c.warnings.join("\n");
        assert!(said.contains("\"f=g=h\" is not key=value"), "{said}");
        assert!(said.contains("\"=e\" has no tag name"), "{said}");
        assert!(said.contains("\"k\" has an empty value"), "{said}");
        assert!(said.contains("\"*:80\" matches no socket"), "{said}");
        // null: no groups.
        let mut c = Config::default();
        c.apply_env(|k: &str| (k == "ENV_INPUT_NETSTAT_ADDR_PORTS").then(|| "null".to_owned()))
            .unwrap();
        assert!(
            c.groups.is_empty() && c.warnings.is_empty(),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn datakits_variables_as_datakit_reads_them() {
        let env = |k: &str| match k {
            "ENV_INPUT_NETSTAT_INTERVAL" => Some("2s".to_owned()),
            "ENV_INPUT_NETSTAT_ADDR_PORTS" => Some(r#"["1.1.1.1:80","443"]"#.to_owned()),
            "ENV_INPUT_NETSTAT_TAGS" => Some("a=b,junk,c=d".to_owned()),
            _ => None,
        };
        let mut c = Config::default();
        c.apply_env(env).unwrap();
        assert_eq!(c.interval, Some(Duration::from_secs(2)));
        assert_eq!(c.groups.len(), 1);
        assert_eq!(c.groups[0].entries.len(), 2);
        assert_eq!((c.tags["a"].as_str(), c.tags["c"].as_str()), ("b", "d"));
        // What DataKit ignores is ignored, with a warning; ours win.
        let env = |k: &str| match k {
            "ENV_INPUT_NETSTAT_INTERVAL" => Some("soon".to_owned()),
            "ENV_INPUT_NETSTAT_ADDR_PORTS" => Some("80".to_owned()),
            "NETCONN_INTERVAL" => Some("3s".to_owned()),
            _ => None,
        };
        let mut c = Config::default();
        c.apply_env(env).unwrap();
        assert_eq!(c.interval, Some(Duration::from_secs(3)));
        assert!(c.groups.is_empty());
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    }

    #[test]
    fn alert_tables_are_checked_and_named() {
        let c = Config::parse(
            "[alerts.conn_spike]\nwindow = \"30s\"\nmin_rate = 2\n[alerts.port_scan]\nports = 8\n",
            "n.toml",
        )
        .unwrap();
        assert_eq!(c.conn_spike.window, Duration::from_secs(30));
        assert_eq!(c.conn_spike.min_rate, 2.0);
        assert_eq!(c.port_scan.ports, 8.0);
        assert_eq!(c.syn_flood, SynFloodConfig::default());
        let c = Config::parse(
            "[alerts.port_exhaustion]\nwarning = 60\nclear = 50\n",
            "n.toml",
        )
        .unwrap();
        let t = c.port_exhaustion.levels;
        assert_eq!((t.clear, t.warn, t.crit), (50.0, 60.0, 95.0));
        for (bad, key) in [
            (
                "[alerts.conn_spike]\nwarning = 1\nclear = 2\n",
                "alerts.conn_spike",
            ),
            (
                "[alerts.conn_spike]\nwindow = \"soon\"\n",
                "alerts.conn_spike",
            ),
            ("[alerts.syn_flood]\nclear = 1.5\n", "alerts.syn_flood"),
            ("[alerts.port_scan]\nports = 0\n", "alerts.port_scan"),
            (
                "[alerts.port_exhaustion]\nwarning = 70\nclear = 80\n",
                "alerts.port_exhaustion",
            ),
            ("[alerts.port_scan]\nbogus = 1\n", "bogus"),
        ] {
            let e = Config::parse(bad, "n.toml").unwrap_err();
            assert!(
                e.0.starts_with("n.toml:") && e.0.contains(key),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn alerts_from_the_environment() {
        let env = |k: &str| match k {
            "NETCONN_ALERTS_CONN_SPIKE_MIN_RATE" => Some("2".to_owned()),
            "NETCONN_ALERTS_CONN_SPIKE_WINDOW" => Some("30s".to_owned()),
            "NETCONN_ALERTS_PORT_SCAN_ENABLED" => Some("false".to_owned()),
            _ => None,
        };
        let mut c = Config::parse("[alerts.conn_spike]\nwarning = 3\n", "n.toml").unwrap();
        c.apply_env(env).unwrap();
        assert_eq!(c.conn_spike.min_rate, 2.0);
        assert_eq!(c.conn_spike.window, Duration::from_secs(30));
        assert_eq!(c.conn_spike.warning, 3.0, "the file's value stays");
        assert!(!c.port_scan.enabled);
        for (var, value) in [
            ("NETCONN_ALERTS_SYN_FLOOD_CLEAR", "2"),
            ("NETCONN_ALERTS_PORT_SCAN_PORTS", "many"),
            ("NETCONN_ALERTS_CONN_SPIKE_WARMUP", "0s"),
        ] {
            let mut c = Config::default();
            let e = c
                .apply_env(|k| (k == var).then(|| value.to_owned()))
                .unwrap_err();
            assert!(e.0.starts_with(var), "{var}: {e}");
        }
    }
}
