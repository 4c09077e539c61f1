//! Alert records other than conntrack's: `new_listener`.

use serde::Serialize;

/// `{"type":"alert","alert":"new_listener",...}`: a socket listens on an
/// address and port that did not listen when netconn started (and is not
/// allowed by `[alerts.listeners] allow`); `clear` when it stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerAlert {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub alert: &'static str,
    /// `warning` when it starts, `clear` when it stops listening.
    pub status: &'static str,
    pub time: String,
    pub host: String,
    pub netns: u32,
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
