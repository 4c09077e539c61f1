//! `[[addr_ports]]`: port groups, their entries (`80`, `1.1.1.1:80`,
//! `*:80`) and the checks a set of groups must pass.

use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use super::Tags;

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
            Self::Port(p) | Self::AddrPort(_, p) | Self::EachAddress(p) => p,
        }
    }

    pub fn matches(self, addr: IpAddr, port: u16) -> bool {
        match self {
            Self::Port(p) | Self::EachAddress(p) => p == port,
            Self::AddrPort(a, p) => p == port && same_addr(a, addr),
        }
    }

    /// The entry as a configuration writes it (`80`, `1.1.1.1:80`,
    /// `*:80`), for messages.
    pub fn shown(self) -> String {
        match self {
            Self::EachAddress(p) => format!("*:{p}"),
            e => e.label(IpAddr::from([0, 0, 0, 0])),
        }
    }

    /// The `addr_port` a matching socket is reported under.
    pub fn label(self, addr: IpAddr) -> String {
        match self {
            Self::Port(p) => p.to_string(),
            Self::AddrPort(a, p) => crate::model::state::endpoint(a, p),
            Self::EachAddress(p) => crate::model::state::endpoint(addr, p),
        }
    }
}

/// Whether every socket `later` matches is taken by `earlier` (a socket
/// belongs to the first group that matches it).
pub(super) fn shadows(earlier: Entry, later: Entry) -> bool {
    match (earlier, later) {
        (Entry::Port(p) | Entry::EachAddress(p), l) => p == l.port(),
        (Entry::AddrPort(a, p), Entry::AddrPort(b, q)) => p == q && same_addr(a, b),
        (Entry::AddrPort(..), _) => false,
    }
}

/// The limits (an error past them), and a warning for each entry whose
/// series would stay zero because an earlier entry takes its sockets.
pub(super) fn check_groups(groups: &[Group]) -> Result<Vec<String>, String> {
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
pub(super) fn same_addr(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.to_canonical() == b.to_canonical()
}

pub(super) fn parse_port(s: &str) -> Option<u16> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    #[serde(default)]
    pub(super) ports: Vec<Spanned<PortValue>>,
    #[serde(default)]
    pub(super) ports_match: Vec<Spanned<PortValue>>,
    #[serde(default)]
    pub(super) tags: Tags,
}

/// A `ports` entry as written: `"80"`, `"1.1.1.1:80"`, or a bare `80`
/// (accepted as in `NETCONN_ADDR_PORTS`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum PortValue {
    Text(String),
    Number(i64),
}

impl PortValue {
    pub(super) fn text(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Number(n) => n.to_string(),
        }
    }
}

/// The groups a list of ports in a variable makes: one, without tags
/// (none for an empty list).
pub(super) fn one_group(entries: Vec<Entry>) -> Vec<Group> {
    if entries.is_empty() {
        return Vec::new();
    }
    vec![Group {
        entries,
        tags: Tags::new(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;

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
}
