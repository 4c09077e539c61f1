//! DataKit's `netstat` input, read as DataKit reads it: its own file
//! (`[[inputs.netstat]]`), its entries (nothing refused, what matches
//! nothing said) and its `ENV_INPUT_NETSTAT_*` variables.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use super::groups::{Entry, one_group};
use super::{Config, RawConfig, parse_interval};

/// A port as DataKit writes a socket's (`strconv` of the number: no sign,
/// no leading zero), 0 included.
pub(super) fn datakit_port(s: &str) -> Option<u16> {
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
pub(super) struct RawInputs {
    pub(super) netstat: Vec<RawConfig>,
}

/// DataKit's netstat input takes intervals from 1 s to 1 min
/// (`config.ProtectedInterval`), and so does netconn for its files and
/// variables.
pub(super) const DATAKIT_INTERVALS: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(60));

/// An interval of DataKit's, brought within its bounds as DataKit does;
/// the warning says so when it was out.
pub(super) fn datakit_interval(d: Duration, source: &str) -> (Duration, Option<String>) {
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

impl Config {
    /// DataKit's variables for its netstat input, read as DataKit reads
    /// them (`ReadEnv`): `ENV_INPUT_NETSTAT_INTERVAL` (1s to 1m),
    /// `ENV_INPUT_NETSTAT_ADDR_PORTS` (a JSON list of ports: one group, no
    /// tags), `ENV_INPUT_NETSTAT_TAGS` (`k=v,k=v`, added). A value DataKit
    /// would ignore is ignored, with a warning; netconn's own `NETCONN_*`
    /// variables come after them and win.
    pub(super) fn apply_datakit_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;

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
}
