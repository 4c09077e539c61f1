//! Alert records other than conntrack's: `new_listener`, `conn_spike`,
//! `syn_flood`, `port_scan`.

use serde::Serialize;

/// `{"type":"alert","alert":"new_listener",...}`: a socket listens on an
/// address and port that did not listen when netconn started (and is not
/// allowed by `[alerts.listeners] allow`); `clear` when it stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerAlert {
    /// `warning` when it starts, `clear` when it stops listening.
    #[serde(flatten)]
    pub head: AlertHead,
    pub addr: std::net::IpAddr,
    pub port: u16,
    pub ip_version: u8,
    /// The process that listens (taken in its context by `watch
    /// --events`; null without it).
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// The user that made the socket.
    pub uid: u32,
    /// When the alert started.
    pub since: String,
}

/// What every alert record starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertHead {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub alert: crate::model::alert::Kind,
    pub status: &'static str,
    pub time: String,
    pub host: String,
    pub netns: u32,
    /// (`--all-namespaces`) What the namespace belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<crate::namespaces::owner::Owner>,
}

/// A peer behind an alert: its connections in the interval
/// (`conn_spike`), or its request sockets on the port now (`syn_flood`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub addr: std::net::IpAddr,
    pub sockets: u32,
}

/// `{"type":"alert","alert":"conn_spike",...}`: new inbound connections
/// per second on a port against its baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpikeAlert {
    #[serde(flatten)]
    pub head: AlertHead,
    pub direction: &'static str,
    /// (outbound) The remote address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<std::net::IpAddr>,
    /// The local port (inbound) or the remote one (outbound).
    pub port: u16,
    /// New connections per second in the interval.
    pub rate: f64,
    /// The learned rate (frozen while the alert holds).
    pub baseline: f64,
    pub thresholds: Levels,
    /// (inbound) The remote addresses that connected in the interval, most
    /// connections first (empty in a `clear` record, and outbound).
    pub top_remote: Vec<Peer>,
    pub since: String,
}

/// An alert's warning, critical and clear levels (a spike's in
/// connections per second, port_exhaustion's in % of the range).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Levels {
    pub warning: f64,
    pub critical: f64,
    pub clear: f64,
}

/// `{"type":"alert","alert":"syn_flood",...}`: handshakes left
/// uncompleted on a listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynFloodAlert {
    #[serde(flatten)]
    pub head: AlertHead,
    pub addr: std::net::IpAddr,
    pub port: u16,
    /// Request sockets waiting for their final ACK now.
    pub syn_recv: u32,
    pub synack_retrans_per_s: f64,
    pub drops_per_s: f64,
    pub thresholds: SynFloodThresholds,
    /// What the listener usually has (each figure's learned mean).
    pub baseline: FloodFigures,
    /// The addresses the waiting handshakes came from (empty in a `clear`
    /// record).
    pub top_sources: Vec<Peer>,
    pub since: String,
}

/// A SYN flood's warning thresholds, and the factors of its critical and
/// clear levels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SynFloodThresholds {
    pub syn_recv: f64,
    pub synack_retrans_per_s: f64,
    pub drops_per_s: f64,
    pub critical: f64,
    pub clear: f64,
    /// A threshold is at least this many times the baseline.
    pub baseline: f64,
}

/// A listener's handshake figures (learned means).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FloodFigures {
    pub syn_recv: f64,
    pub synack_retrans_per_s: f64,
    pub drops_per_s: f64,
}

/// `{"type":"alert","alert":"port_exhaustion",...}`: one destination
/// uses this much of the ephemeral port range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExhaustionAlert {
    #[serde(flatten)]
    pub head: AlertHead,
    pub laddr: std::net::IpAddr,
    pub raddr: std::net::IpAddr,
    pub rport: u16,
    pub in_use: u64,
    pub time_wait: u64,
    /// Ports of the range `connect()` may use.
    pub size: u32,
    pub utilization: f64,
    /// In % of the range.
    pub thresholds: Levels,
    pub since: String,
}

/// An alert record as the watch's readers see it (scrapers, `check
/// --alerts`): active while its status is not `clear`.
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    pub alert: crate::model::alert::Kind,
    /// What it is about (`addr:port` of a listener, "table" for conntrack,
    /// the port of a spike).
    pub key: String,
    pub status: String,
    /// The record as written.
    pub record: serde_json::Value,
}

impl Raised {
    /// An alert record (with `alert` and `status` fields) about `key`.
    pub fn of(record: &impl serde::Serialize, key: String) -> Self {
        let record = serde_json::to_value(record).expect("alert records serialize");
        let field = |name: &str| record[name].as_str().unwrap_or_default().to_owned();
        Self {
            alert: serde_json::from_value(record["alert"].clone()).expect("an alert record"),
            status: field("status"),
            key,
            record,
        }
    }
}

/// `{"type":"alert","alert":"port_scan",...}`: one address sent segments
/// to many closed ports (each answered with a reset) within the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanAlert {
    #[serde(flatten)]
    pub head: AlertHead,
    /// The address the segments came from.
    pub addr: std::net::IpAddr,
    /// Distinct closed ports it touched within the window.
    pub ports: u32,
    /// Some of them, lowest first.
    pub sample: Vec<u16>,
    pub window_s: f64,
    pub thresholds: ScanThresholds,
    pub since: String,
}

/// A scan's thresholds, in distinct ports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScanThresholds {
    pub warning: f64,
    pub critical: f64,
    pub clear: f64,
}
