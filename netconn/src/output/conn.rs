//! The connection record (`watch --events`), as a type: `"type":"conn"`,
//! one when a TCP connection opens and one when it closes.

use std::net::IpAddr;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnRecord<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `open` or `close`.
    pub event: &'static str,
    pub time: String,
    pub host: &'a str,
    pub proto: &'static str,
    pub ip_version: u8,
    pub laddr: IpAddr,
    pub lport: u16,
    pub raddr: IpAddr,
    pub rport: u16,
    pub direction: &'static str,
    /// None where the process is not known (older than the watch).
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub netns: u32,
    /// `system` or `container`.
    pub namespace: &'static str,
    /// (`--all-namespaces`) what the namespace belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<crate::namespaces::owner::Owner>,
    /// At close only.
    #[serde(flatten)]
    pub close: Option<CloseFigures>,
    /// For a connect that failed only.
    #[serde(flatten)]
    pub failed: Option<FailedFigures>,
}

/// What a `"event":"failed"` record adds: why, and how long it tried.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FailedFigures {
    /// `refused`, `timeout`, `unreachable` or `aborted`.
    pub reason: &'static str,
    /// The socket's error as the kernel named it (ECONNREFUSED...), null
    /// for none (the application closed the socket).
    pub error: Option<&'static str>,
    /// From connect() to the failure; None when the connect() was not seen.
    pub duration_ms: Option<f64>,
    /// SYNs retransmitted (tcp_info's total_retrans at the failure).
    pub syn_retrans: u32,
}

/// What a close record adds: the kernel's figures for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CloseFigures {
    /// None for a connection older than the watch.
    pub duration_ms: Option<f64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub rtt_us: u32,
    pub retrans: u32,
    pub close_reason: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record's keys in order, with the JSON type of each: the
    /// contract README.md documents.
    #[test]
    fn shape_of_open_and_close_records() {
        let open = ConnRecord {
            kind: "conn",
            event: "open",
            time: "2026-11-21T15:35:33.408Z".into(),
            host: "vm",
            proto: "tcp",
            ip_version: 4,
            laddr: "127.0.0.1".parse().unwrap(),
            lport: 55322,
            raddr: "::1".parse().unwrap(),
            rport: 8080,
            direction: "local",
            pid: Some(13502),
            comm: Some("python3".into()),
            netns: 4026532664,
            namespace: "container",
            owner: None,
            close: None,
            failed: None,
        };
        let shape = |r: &ConnRecord| -> Vec<(String, &'static str)> {
            let v = serde_json::to_value(r).unwrap();
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let t = match v {
                        serde_json::Value::Null => "null",
                        serde_json::Value::Bool(_) => "bool",
                        serde_json::Value::Number(_) => "number",
                        serde_json::Value::String(_) => "string",
                        _ => "other",
                    };
                    (k.clone(), t)
                })
                .collect()
        };
        let want_open = [
            ("type", "string"),
            ("event", "string"),
            ("time", "string"),
            ("host", "string"),
            ("proto", "string"),
            ("ip_version", "number"),
            ("laddr", "string"),
            ("lport", "number"),
            ("raddr", "string"),
            ("rport", "number"),
            ("direction", "string"),
            ("pid", "number"),
            ("comm", "string"),
            ("netns", "number"),
            ("namespace", "string"),
        ];
        let as_owned = |w: &[(&str, &'static str)]| -> Vec<(String, &'static str)> {
            w.iter().map(|(k, t)| (k.to_string(), *t)).collect()
        };
        assert_eq!(shape(&open), as_owned(&want_open));
        let failed = ConnRecord {
            event: "failed",
            failed: Some(FailedFigures {
                reason: "timeout",
                error: Some("ETIMEDOUT"),
                duration_ms: Some(3071.7),
                syn_retrans: 2,
            }),
            ..open.clone()
        };
        let mut want_failed = as_owned(&want_open);
        want_failed.extend(as_owned(&[
            ("reason", "string"),
            ("error", "string"),
            ("duration_ms", "number"),
            ("syn_retrans", "number"),
        ]));
        assert_eq!(shape(&failed), want_failed);
        let close = ConnRecord {
            event: "close",
            pid: None,
            close: Some(CloseFigures {
                duration_ms: None,
                bytes_sent: 1002,
                bytes_received: 1,
                rtt_us: 35,
                retrans: 0,
                close_reason: "fin",
            }),
            ..open
        };
        let mut want_close = as_owned(&want_open);
        want_close[11].1 = "null";
        want_close.extend(as_owned(&[
            ("duration_ms", "null"),
            ("bytes_sent", "number"),
            ("bytes_received", "number"),
            ("rtt_us", "number"),
            ("retrans", "number"),
            ("close_reason", "string"),
        ]));
        assert_eq!(shape(&close), want_close);
        assert_eq!(serde_json::to_value(&close).unwrap()["raddr"], "::1");
    }
}
