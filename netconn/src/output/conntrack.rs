//! The conntrack record and the alert record, as types.

use std::collections::BTreeMap;

use serde::Serialize;

/// `"type":"conntrack"`: the namespace's conntrack table and counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConntrackRecord<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: &'a str,
    pub host: &'a str,
    pub netns: u32,
    pub available: bool,
    /// Why not available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(flatten)]
    pub table: Option<Table>,
}

/// What an available table reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    pub count: u64,
    pub max: u64,
    /// Percent of `max`, to 1/10000 of a percent.
    pub utilization: f64,
    /// The counters as per-second rates since the previous reading (null
    /// without one); with `totals`, when the kernel has the counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Option<BTreeMap<String, f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<BTreeMap<String, u64>>,
    /// Entries per protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<BTreeMap<&'static str, i64>>,
    /// (`watch`) events since start, and what was lost and repaired.
    #[serde(flatten)]
    pub live: Option<LiveFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// The ctnetlink events of `watch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveFigures {
    pub events: Events,
    pub lost_events: u64,
    pub resyncs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Events {
    pub new: BTreeMap<&'static str, u64>,
    pub destroy: BTreeMap<&'static str, u64>,
}

/// `"type":"alert"`: a level change of the table's fullness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRecord<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: &'a str,
    pub host: &'a str,
    pub netns: u32,
    pub alert: crate::model::alert::Kind,
    pub status: &'static str,
    pub utilization: f64,
    pub thresholds: AlertThresholds,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AlertThresholds {
    pub warning: f64,
    pub critical: f64,
    pub clear: f64,
}
