//! The NDJSON records netconn emits (schema documented in README.md).

use serde_json::{Map, Value, json};

use crate::model::counts::Counts;

/// Where the counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Live, from the eBPF programs merged with one snapshot.
    Ebpf,
    /// A fresh dump of the socket tables.
    Poll,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Ebpf => "ebpf",
            Source::Poll => "poll",
        }
    }
}

/// Everything a counts record says besides the time.
#[derive(Debug, Clone)]
pub struct CountsRecord<'a> {
    pub host: &'a str,
    pub source: Source,
    pub netns: u32,
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
    pub tags: Option<&'a crate::config::Tags>,
    /// Port groups' series (left out without groups).
    pub ports: Option<&'a Value>,
    /// TCP metrics of the interval (interval records of `watch`).
    pub tcp_metrics: Option<&'a Value>,
}

#[derive(Debug, Clone, Copy)]
pub struct Correction<'a> {
    pub time: &'a str,
    pub reason: &'a str,
    pub delta: &'a Counts,
}

impl CountsRecord<'_> {
    /// Renders the record with the given RFC 3339 time.
    pub fn to_json(&self, time: &str) -> Value {
        let mut r = Map::new();
        r.insert("type".into(), "counts".into());
        r.insert("time".into(), time.into());
        r.insert("host".into(), self.host.into());
        r.insert("source".into(), self.source.name().into());
        if let Some(tags) = self.tags.filter(|t| !t.is_empty()) {
            r.insert("tags".into(), json!(tags));
        }
        r.insert("netns".into(), self.netns.into());
        r.insert("connections".into(), self.counts.to_json());
        if let Some(ports) = self.ports {
            r.insert("ports".into(), ports.clone());
        }
        if let Some(m) = self.tcp_metrics {
            r.insert("tcp_metrics".into(), m.clone());
        }
        r.insert("lost_events".into(), self.lost_events.into());
        if let Some(n) = self.conn_records_lost {
            r.insert("conn_records_lost".into(), n.into());
        }
        if let Some(n) = self.output_dropped {
            r.insert("output_dropped".into(), n.into());
        }
        if let Some(n) = self.resyncs {
            r.insert("resyncs".into(), n.into());
            r.insert(
                "last_correction".into(),
                match self.last_correction {
                    Some(c) => json!({
                        "time": c.time,
                        "reason": c.reason,
                        "delta": c.delta.to_json_nonzero(),
                    }),
                    None => Value::Null,
                },
            );
        }
        if let Some(dump) = self.verify {
            let diff = *self.counts - *dump;
            r.insert(
                "verify".into(),
                json!({"equal": diff == Counts::default(), "diff": diff.to_json_nonzero()}),
            );
        }
        r.insert("total".into(), json!(self.counts.total()));
        Value::Object(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::state::ConnType;

    #[test]
    fn record_has_the_contract_keys_in_order() {
        let mut counts = Counts::default();
        counts.add(ConnType::Tcp, 10, 2);
        let r = CountsRecord {
            host: "h",
            source: Source::Ebpf,
            netns: 4026531840,
            counts: &counts,
            lost_events: 0,
            conn_records_lost: None,
            output_dropped: None,
            resyncs: Some(1),
            last_correction: Some(Correction {
                time: "2026-01-01T00:00:00.000Z",
                reason: "lost_events",
                delta: &counts,
            }),
            verify: Some(&Counts::default()),
            tags: None,
            ports: None,
            tcp_metrics: None,
        };
        let line = serde_json::to_string(&r.to_json("2026-01-01T00:00:00.000Z")).unwrap();
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
