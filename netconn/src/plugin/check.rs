//! `netconn check`: the Nagios/Icinga report, compatible with the
//! Linuxfabrik `network-connections` plugin (same options, same text and
//! perfdata, same exit codes), computed from counts. Ties in the order
//! (the plugin's follow psutil's socket order) are broken by conn-type
//! and state.

use crate::model::counts::Counts;
use crate::model::state::ConnType;
use crate::plugin::nagios::{Range, Status, evaluate};

/// What to report on.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Lower-case conn-types (`tcp`...) or `all`; empty means `all`.
    pub conn_types: Vec<String>,
    /// Lower-case states (`established`, `none`...) or `all`; empty: `all`.
    pub conn_status: Vec<String>,
    pub warning: Option<Range>,
    pub critical: Option<Range>,
    /// `--always-ok`: exit 0 whatever the state, said on the first line.
    pub always_ok: bool,
    /// `--no-perfdata`: the text alone (the state is unchanged).
    pub no_perfdata: bool,
}

/// Every `--conn-type` value.
pub const CONN_TYPES: [&str; 5] = ["all", "tcp", "tcp6", "udp", "udp6"];
/// Every `--conn-status` value.
pub const CONN_STATUS: [&str; 13] = [
    "all",
    "close",
    "close_wait",
    "closing",
    "established",
    "fin_wait1",
    "fin_wait2",
    "last_ack",
    "listen",
    "none",
    "syn_recv",
    "syn_sent",
    "time_wait",
];

fn selected(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|v| v == "all" || v == value)
}

fn shown(list: &[String]) -> String {
    if list.is_empty() {
        "all".into()
    } else {
        list.join(",")
    }
}

/// The plugin's output line and state.
pub fn report(counts: &Counts, spec: &Spec) -> (String, Status) {
    let mut pairs: Vec<(ConnType, &str, i64)> = counts
        .iter()
        .filter(|(ct, state, n)| {
            *n > 0
                && selected(&spec.conn_types, ct.name())
                && selected(&spec.conn_status, &state.to_ascii_lowercase())
        })
        .collect();
    if pairs.is_empty() {
        let mut text = format!(
            "No connections of type \"{}\" in status \"{}\" found.",
            shown(&spec.conn_types),
            shown(&spec.conn_status)
        );
        if spec.always_ok {
            text.push_str(" (always ok)");
        }
        return (text, Status::Ok);
    }
    // Most connections first; ties keep conn-type and state order.
    pairs.sort_by_key(|(_, _, n)| std::cmp::Reverse(*n));
    let mut status = Status::Ok;
    let mut message = Vec::with_capacity(pairs.len());
    let mut perfdata = Vec::with_capacity(pairs.len());
    for (ct, state, n) in pairs {
        let pair = evaluate(n as f64, spec.warning.as_ref(), spec.critical.as_ref());
        status = status.worst(pair);
        message.push(format!(
            "{} {}: {n}{}",
            ct.name(),
            state.replace('_', " "),
            pair.suffix()
        ));
        perfdata.push(format!("'{}_{state}'={n}", ct.name()));
    }
    let mut text = message.join(", ");
    if spec.always_ok {
        text.push_str(" (always ok)");
        status = Status::Ok;
    }
    if !spec.no_perfdata {
        text.push('|');
        text.push_str(&perfdata.join(" "));
    }
    (text, status)
}

/// What an alert record is about, for the check's text: a listener's
/// address and port, a port, or a figure.
fn about(record: &serde_json::Value) -> String {
    let port = record["port"].as_u64();
    match (record["addr"].as_str(), port) {
        (Some(addr), Some(port)) => match addr.parse::<std::net::IpAddr>() {
            Ok(ip) => std::net::SocketAddr::new(ip, port as u16).to_string(),
            Err(_) => format!("{addr}:{port}"),
        },
        (None, Some(port)) => format!("port {port}"),
        (Some(addr), None) => addr.to_owned(),
        _ => match record["utilization"].as_f64() {
            Some(u) => format!("{u}%"),
            None => String::new(),
        },
    }
}

/// `check --alerts`: the active alerts (their last records), worst first.
pub fn alerts_report(records: &[serde_json::Value], spec: &Spec) -> (String, Status) {
    let status_of = |r: &serde_json::Value| match r["status"].as_str() {
        Some("critical") => Status::Critical,
        Some("warning") => Status::Warning,
        _ => Status::Ok,
    };
    let mut sorted: Vec<&serde_json::Value> = records.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(status_of(r).exit_code()));
    let status = sorted
        .iter()
        .map(|r| status_of(r))
        .fold(Status::Ok, Status::worst);
    let mut text = if sorted.is_empty() {
        "No active alerts".to_owned()
    } else {
        sorted
            .iter()
            .map(|r| {
                let about = about(r);
                let about = crate::host::printable(&about);
                let name = crate::host::printable(r["alert"].as_str().unwrap_or("alert"));
                let sep = if about.is_empty() { "" } else { " " };
                format!("{name}{sep}{about}{}", status_of(r).suffix())
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let count = |s: Status| sorted.iter().filter(|r| status_of(r) == s).count();
    let mut status = status;
    if spec.always_ok {
        text.push_str(" (always ok)");
        status = Status::Ok;
    }
    if !spec.no_perfdata {
        text.push_str(&format!(
            "|'alerts_warning'={} 'alerts_critical'={}",
            count(Status::Warning),
            count(Status::Critical)
        ));
    }
    (text, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(cells: &[(ConnType, u8, i64)]) -> Counts {
        let mut c = Counts::default();
        for (ct, state, n) in cells {
            c.add(*ct, *state, *n);
        }
        c
    }

    fn sample() -> Counts {
        // tcp ESTABLISHED 19, LISTEN 9, CLOSE_WAIT 4; udp 16; tcp6 LISTEN 2
        counts(&[
            (ConnType::Tcp, 1, 19),
            (ConnType::Tcp, 10, 9),
            (ConnType::Tcp, 8, 4),
            (ConnType::Udp, 7, 16),
            (ConnType::Tcp6, 10, 2),
        ])
    }

    fn spec(types: &[&str], status: &[&str], w: Option<&str>, c: Option<&str>) -> Spec {
        Spec {
            conn_types: types.iter().map(|s| s.to_string()).collect(),
            conn_status: status.iter().map(|s| s.to_string()).collect(),
            warning: w.map(|r| r.parse().unwrap()),
            critical: c.map(|r| r.parse().unwrap()),
            ..Spec::default()
        }
    }

    #[test]
    fn sorted_by_count_with_perfdata_for_every_pair() {
        let (text, status) = report(&sample(), &Spec::default());
        assert_eq!(
            text,
            "tcp ESTABLISHED: 19, udp NONE: 16, tcp LISTEN: 9, tcp CLOSE WAIT: 4, \
             tcp6 LISTEN: 2|'tcp_ESTABLISHED'=19 'udp_NONE'=16 \
             'tcp_LISTEN'=9 'tcp_CLOSE_WAIT'=4 'tcp6_LISTEN'=2"
        );
        assert_eq!(status, Status::Ok);
    }

    #[test]
    fn each_pair_outside_its_range_is_marked_and_the_worst_wins() {
        let (text, status) = report(&sample(), &spec(&[], &[], Some("8"), Some("18")));
        assert!(
            text.starts_with("tcp ESTABLISHED: 19 [CRITICAL], udp NONE: 16 [WARNING], tcp LISTEN: 9 [WARNING], tcp CLOSE WAIT: 4, "),
            "{text}"
        );
        assert_eq!(status, Status::Critical);
        let (_, status) = report(&sample(), &spec(&[], &[], Some("17"), None));
        assert_eq!(status, Status::Warning);
        // A range that wants at least 3 of something: 2 is too few.
        let (text, status) = report(&sample(), &spec(&["tcp6"], &[], None, Some("3:")));
        assert_eq!(text, "tcp6 LISTEN: 2 [CRITICAL]|'tcp6_LISTEN'=2");
        assert_eq!(status, Status::Critical);
    }

    #[test]
    fn filters_by_type_and_status() {
        let s = spec(&["tcp", "udp6"], &["listen", "close_wait"], None, None);
        let (text, _) = report(&sample(), &s);
        assert_eq!(
            text,
            "tcp LISTEN: 9, tcp CLOSE WAIT: 4|'tcp_LISTEN'=9 'tcp_CLOSE_WAIT'=4"
        );
        let (text, _) = report(&sample(), &spec(&["udp"], &["none"], None, None));
        assert_eq!(text, "udp NONE: 16|'udp_NONE'=16");
    }

    #[test]
    fn always_ok_and_no_perfdata() {
        let mut s = spec(&["tcp6"], &[], None, Some("3:"));
        s.always_ok = true;
        s.no_perfdata = true;
        assert_eq!(
            report(&sample(), &s),
            (
                "tcp6 LISTEN: 2 [CRITICAL] (always ok)".to_owned(),
                Status::Ok
            )
        );
    }

    #[test]
    fn nothing_matching_says_what_was_asked() {
        let s = spec(&["tcp6"], &["established", "closing"], Some("0"), None);
        let (text, status) = report(&sample(), &s);
        assert_eq!(
            text,
            "No connections of type \"tcp6\" in status \"established,closing\" found."
        );
        assert_eq!(status, Status::Ok);
        let (text, _) = report(&Counts::default(), &Spec::default());
        assert_eq!(
            text,
            "No connections of type \"all\" in status \"all\" found."
        );
    }

    #[test]
    fn alerts_worst_first_with_what_they_are_about() {
        let records: Vec<serde_json::Value> = [
            r#"{"alert":"new_listener","status":"warning","addr":"::1","port":7001}"#,
            r#"{"alert":"conn_spike","status":"critical","port":8080}"#,
            r#"{"alert":"conntrack_full","status":"warning","utilization":91.5}"#,
            r#"{"alert":"port_scan","status":"warning","addr":"127.0.0.2","ports":60}"#,
        ]
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
        let (text, status) = alerts_report(&records, &Spec::default());
        assert_eq!(status, Status::Critical);
        assert_eq!(
            text,
            "conn_spike port 8080 [CRITICAL], new_listener [::1]:7001 [WARNING], \
             conntrack_full 91.5% [WARNING], port_scan 127.0.0.2 [WARNING]\
             |'alerts_warning'=3 'alerts_critical'=1"
        );
        assert_eq!(
            alerts_report(&[], &Spec::default()),
            (
                "No active alerts|'alerts_warning'=0 'alerts_critical'=0".to_owned(),
                Status::Ok
            )
        );
    }
}
