//! The NDJSON records netconn emits (schema documented in README.md).

use serde::Serialize;

use crate::config::Tags;
use crate::model::counts::{Counts, NonZero};
use crate::output::figures::{IntervalFigures, PortSeries};

/// Where the counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Live, from the eBPF programs merged with one snapshot.
    Ebpf,
    /// A fresh dump of the socket tables.
    Poll,
}

/// Everything a counts record says besides the time.
#[derive(Debug, Clone)]
pub struct CountsRecord<'a> {
    pub host: &'a str,
    pub source: Source,
    pub netns: u32,
    /// (`--all-namespaces`) "system" or "container", and what the
    /// namespace belongs to.
    pub namespace: Option<(&'static str, &'a crate::namespaces::owner::Owner)>,
    pub counts: &'a Counts,
    pub lost_events: u64,
    /// (`watch --events`) connection records the kernel could not hand
    /// over (their ring buffer full), since start. No count depends on
    /// them.
    pub conn_records_lost: Option<u64>,
    /// (`watch`) records the output could not take since start (a reader
    /// that stalls, a full disk).
    pub output_dropped: Option<u64>,
    /// Snapshots taken after the first (eBPF mode only).
    pub resyncs: Option<u64>,
    /// When the last resync happened, why, and what it changed
    /// (after - before).
    pub last_correction: Option<Correction<'a>>,
    /// `--verify`: the counts of a dump taken right after the live ones.
    pub verify: Option<&'a Counts>,
    /// Global tags from the configuration (left out when empty).
    pub tags: Option<&'a Tags>,
    /// Port groups' series (left out without groups).
    pub ports: Option<&'a [PortSeries]>,
    /// TCP metrics of the interval (interval records of `watch`).
    pub tcp_metrics: Option<&'a IntervalFigures>,
    /// The listening sockets (interval records of `watch`).
    pub listeners: Option<&'a [crate::output::figures::ListenerFigures]>,
    /// Ephemeral ports per destination (interval records of `watch`).
    pub ephemeral_ports: Option<&'a crate::output::figures::EphemeralFigures>,
}

#[derive(Debug, Clone, Copy)]
pub struct Correction<'a> {
    pub time: &'a str,
    pub reason: &'a str,
    pub delta: &'a Counts,
}

impl<'a> CountsRecord<'a> {
    /// The record of `counts` with every optional part left out (what a
    /// one-shot dump writes); callers add theirs with struct update
    /// syntax.
    pub fn new(host: &'a str, source: Source, netns: u32, counts: &'a Counts) -> Self {
        CountsRecord {
            host,
            source,
            netns,
            namespace: None,
            counts,
            lost_events: 0,
            conn_records_lost: None,
            output_dropped: None,
            resyncs: None,
            last_correction: None,
            verify: None,
            tags: None,
            ports: None,
            tcp_metrics: None,
            listeners: None,
            ephemeral_ports: None,
        }
    }

    /// The record as written, with its RFC 3339 time.
    pub fn at(&'a self, time: &'a str) -> impl Serialize + 'a {
        let diff = self.verify.map(|dump| *self.counts - *dump);
        CountsOut {
            kind: "counts",
            time,
            host: self.host,
            source: self.source,
            tags: self.tags.filter(|t| !t.is_empty()),
            netns: self.netns,
            namespace: self.namespace.map(|n| n.0),
            owner: self.namespace.map(|n| n.1),
            connections: self.counts,
            ports: self.ports,
            tcp_metrics: self.tcp_metrics,
            listeners: self.listeners,
            ephemeral_ports: self.ephemeral_ports,
            lost_events: self.lost_events,
            conn_records_lost: self.conn_records_lost,
            output_dropped: self.output_dropped,
            resyncs: self.resyncs,
            // Present (null or not) exactly when resyncs is.
            last_correction: self.resyncs.map(|_| {
                self.last_correction.map(|c| CorrectionOut {
                    time: c.time,
                    reason: c.reason,
                    delta: c.delta.nonzero(),
                })
            }),
            verify: diff.map(|diff| Verify {
                equal: diff == Counts::default(),
                diff,
            }),
            total: self.counts.total(),
        }
    }
}

/// A counts record as written (field order is the record's key order).
#[derive(Serialize)]
struct CountsOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: &'a str,
    host: &'a str,
    source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a Tags>,
    netns: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a crate::namespaces::owner::Owner>,
    connections: &'a Counts,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<&'a [PortSeries]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_metrics: Option<&'a IntervalFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listeners: Option<&'a [crate::output::figures::ListenerFigures]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ephemeral_ports: Option<&'a crate::output::figures::EphemeralFigures>,
    lost_events: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn_records_lost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dropped: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resyncs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_correction: Option<Option<CorrectionOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<Verify>,
    total: i64,
}

/// `"type":"host"` (`watch --all-namespaces`): every namespace together,
/// once per interval after their own records.
#[derive(Debug, Serialize)]
pub struct HostRecord<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: &'a str,
    pub host: &'a str,
    pub source: Source,
    /// Namespaces counted (the records before this one).
    pub namespaces: usize,
    /// Namespaces found past the bound, not counted (0 unless the host has
    /// more than `watch --max-namespaces`).
    pub namespaces_untracked: usize,
    /// The first of them, by inode (left out when there are none).
    #[serde(skip_serializing_if = "<[u32]>::is_empty")]
    pub untracked: &'a [u32],
    /// The sum over the namespaces counted.
    pub connections: &'a Counts,
    pub lost_events: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resyncs: Option<u64>,
    /// (`--events`) connection records the kernel could not hand over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn_records_lost: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dropped: Option<u64>,
    pub total: i64,
}

/// `"type":"netns"`: a namespace appeared or went away
/// (`watch --all-namespaces`).
#[derive(Debug, Serialize)]
pub struct NetnsRecord<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// "new", "gone" or "untracked" (its slot given to a namespace of the
    /// host's users, see `watch --max-namespaces`).
    pub event: &'static str,
    pub time: &'a str,
    pub host: &'a str,
    pub netns: u32,
    pub namespace: &'static str,
    pub owner: &'a crate::namespaces::owner::Owner,
}

#[derive(Serialize)]
struct CorrectionOut<'a> {
    time: &'a str,
    reason: &'a str,
    delta: NonZero<'a>,
}

/// Live counts minus a dump's.
struct Verify {
    equal: bool,
    diff: Counts,
}

impl Serialize for Verify {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("equal", &self.equal)?;
        map.serialize_entry("diff", &self.diff.nonzero())?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::state::ConnType;
    use serde_json::{Value, json};

    #[test]
    fn record_has_the_contract_keys_in_order() {
        let mut counts = Counts::default();
        counts.add(ConnType::Tcp, 10, 2);
        let r = CountsRecord {
            resyncs: Some(1),
            last_correction: Some(Correction {
                time: "2026-01-01T00:00:00.000Z",
                reason: "lost_events",
                delta: &counts,
            }),
            verify: Some(&Counts::default()),
            ..CountsRecord::new("h", Source::Ebpf, 4026531840, &counts)
        };
        let line = serde_json::to_string(&r.at("2026-01-01T00:00:00.000Z")).unwrap();
        assert!(
            line.starts_with(
                r#"{"type":"counts","time":"2026-01-01T00:00:00.000Z","host":"h","source":"ebpf","netns":4026531840,"connections":{"tcp":{"ESTABLISHED":0,"#
            ),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["connections"]["tcp"]["LISTEN"], 2);
        assert_eq!(v["lost_events"], 0);
        assert_eq!(v["total"], 2);
        assert_eq!(v["resyncs"], 1);
        assert_eq!(v["last_correction"]["delta"], json!({"tcp": {"LISTEN": 2}}));
        assert_eq!(v["last_correction"]["reason"], "lost_events");
        assert_eq!(
            v["verify"],
            json!({"equal": false, "diff": {"tcp": {"LISTEN": 2}}})
        );
        assert!(!line.contains('\n'));
    }
}
