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
//!
//! One file per part: `groups` (`[[addr_ports]]` and its entries), `alerts`
//! (`[alerts.*]`, `[conntrack]` and `NETCONN_ALERTS_*`), `datakit`
//! (DataKit's own file and `ENV_INPUT_NETSTAT_*`); here, the file as a
//! whole, the tags and netconn's other variables.

mod alerts;
mod datakit;
mod groups;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use alerts::{ExhaustionConfig, ScanConfig, SpikeConfig, SynFloodConfig, Thresholds};
use alerts::{
    RawAlerts, RawExhaustion, RawScan, RawSpike, RawSynFlood, alert_env, alert_table,
    check_alert_var,
};
pub use datakit::parse_datakit_entry;
use datakit::{RawInputs, datakit_interval};
pub use groups::{Entry, Group, MAX_ENTRIES, MAX_GROUPS, parse_entry};
use groups::{RawGroup, check_groups, one_group};

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
        Self {
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

/// Service ports in `top_ports` unless configured.
pub const DEFAULT_TOP_PORTS: usize = 10;
/// The most `top_ports` may be: the kernel keeps this many ports per
/// interval (see `METRICS_PORT_ENTRIES`).
pub const MAX_TOP_PORTS: usize = 100;

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

/// A configuration error, one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Config {
    /// Parses a file's text; `name` is how errors name it.
    pub fn parse(text: &str, name: &str) -> Result<Self, ConfigError> {
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
        Ok(Self {
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
    ) -> Result<Self, ConfigError> {
        let path: Option<PathBuf> = match path {
            Some(p) => Some(p.to_owned()),
            None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
        };
        let mut config = match &path {
            Some(p) => {
                let name = p.display().to_string();
                let text = read_bounded(p).map_err(|e| ConfigError(format!("{name}: {e}")))?;
                Self::parse(&text, &name)?
            }
            None => Self::default(),
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
}
