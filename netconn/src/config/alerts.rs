//! `[alerts.*]` and `[conntrack]`: each alert's table, checked, and its
//! `NETCONN_ALERTS_<ALERT>_<KEY>` variables.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::groups::PortValue;
use super::{ConfigError, parse_interval, plain};

/// `[alerts.port_exhaustion]`: how much of the ephemeral port range one
/// destination may use, in % of it, with the conntrack alert's
/// hysteresis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExhaustionConfig {
    pub enabled: bool,
    pub levels: Thresholds,
}

impl Default for ExhaustionConfig {
    fn default() -> Self {
        Self {
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
    pub(super) fn over(
        self,
        warning: Option<f64>,
        critical: Option<f64>,
        clear: Option<f64>,
    ) -> Result<Self, String> {
        let t = Self {
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
        Self {
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
    fn default() -> Self {
        Self {
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
    fn default() -> Self {
        Self {
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
    fn default() -> Self {
        Self {
            enabled: true,
            ports: 20.0,
            window: Duration::from_secs(60),
            critical: 5.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    pub(super) listeners: Option<RawListenerAlerts>,
    pub(super) conn_spike: Option<Spanned<RawSpike>>,
    pub(super) syn_flood: Option<Spanned<RawSynFlood>>,
    pub(super) port_scan: Option<Spanned<RawScan>>,
    pub(super) port_exhaustion: Option<Spanned<RawExhaustion>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExhaustion {
    pub(super) enabled: Option<bool>,
    pub(super) warning: Option<Number>,
    pub(super) critical: Option<Number>,
    pub(super) clear: Option<Number>,
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
pub(super) struct RawScan {
    pub(super) enabled: Option<bool>,
    pub(super) ports: Option<Number>,
    pub(super) window: Option<String>,
    pub(super) critical: Option<Number>,
}

/// An `[alerts.<name>]` table as written: its keys, and the values it
/// gives over a configuration, checked.
pub(super) trait AlertTable: serde::de::DeserializeOwned {
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
pub(super) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn get(self) -> f64 {
        match self {
            Self::Int(n) => n as f64,
            Self::Float(f) => f,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpike {
    pub(super) enabled: Option<bool>,
    pub(super) window: Option<String>,
    pub(super) warmup: Option<String>,
    pub(super) min_rate: Option<Number>,
    pub(super) warning: Option<Number>,
    pub(super) critical: Option<Number>,
    pub(super) clear: Option<Number>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSynFlood {
    pub(super) enabled: Option<bool>,
    pub(super) syn_recv: Option<Number>,
    pub(super) synack_retrans_per_s: Option<Number>,
    pub(super) drops_per_s: Option<Number>,
    pub(super) critical: Option<Number>,
    pub(super) clear: Option<Number>,
    pub(super) baseline: Option<Number>,
    pub(super) window: Option<String>,
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
pub(super) struct RawListenerAlerts {
    #[serde(default)]
    pub(super) allow: Vec<Spanned<PortValue>>,
}

/// An alert's table of a file, over the defaults; an error names its line.
pub(super) fn alert_table<R: AlertTable>(
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
pub(super) fn check_alert_var(var: &str) -> Result<(), ConfigError> {
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
pub(super) fn alert_env<R: AlertTable>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;

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
