//! DataKit's netstat measurements (`watch --format datakit|line`), with
//! DataKit's names and values, so that dashboards and queries built on
//! its `netstat` input keep working: `netstat` (one point per IP version
//! with sockets, the namespace's states) and `netstat_port` (one point per
//! port group series with sockets), as JSON points or as InfluxDB line
//! protocol (what DataKit, Telegraf and InfluxDB ingest).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Tags;
use crate::model::counts::Counts;
use crate::model::state::ConnType;
use crate::output::figures::PortSeries;

/// DataKit's field for each TCP state code (1 to 11).
const TCP_FIELDS: [&str; 11] = [
    "tcp_established",
    "tcp_syn_sent",
    "tcp_syn_recv",
    "tcp_fin_wait1",
    "tcp_fin_wait2",
    "tcp_time_wait",
    "tcp_close",
    "tcp_close_wait",
    "tcp_last_ack",
    "tcp_listen",
    "tcp_closing",
];

/// One point: a measurement, its tags and integer fields, and its time in
/// nanoseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    pub measurement: &'static str,
    pub tags: BTreeMap<String, String>,
    pub fields: BTreeMap<&'static str, i64>,
    pub time: i64,
}

/// Escapes what line protocol gives a meaning to in a measurement, tag
/// key, tag value or field key.
fn escape(s: &str, also: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == ',' || c == ' ' || c == '\\' || also.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Point {
    /// The point in InfluxDB line protocol (integers as `12i`).
    pub fn line(&self) -> String {
        let mut out = escape(self.measurement, &[]);
        for (k, v) in &self.tags {
            out.push(',');
            out.push_str(&escape(k, &['=']));
            out.push('=');
            out.push_str(&escape(v, &['=']));
        }
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| format!("{}={v}i", escape(k, &['='])))
            .collect();
        out.push(' ');
        out.push_str(&fields.join(","));
        out.push(' ');
        out.push_str(&self.time.to_string());
        out
    }
}

/// The tags every point carries: `host`, then the configuration's tags
/// (DataKit's host tags merged with the input's).
fn merged(host: &str, tags: &Tags) -> BTreeMap<String, String> {
    let mut out = BTreeMap::from([("host".to_owned(), host.to_owned())]);
    out.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// DataKit's fields of a set of sockets: each TCP state (`tcp(code)`),
/// `tcp_none` (0: netconn counts no Unix sockets) and `udp_socket`.
fn fields(tcp: impl Fn(u8) -> i64, udp: i64) -> BTreeMap<&'static str, i64> {
    let mut fields: BTreeMap<&'static str, i64> = TCP_FIELDS
        .iter()
        .zip(1u8..)
        .map(|(name, code)| (*name, tcp(code)))
        .collect();
    fields.insert("tcp_none", 0);
    fields.insert("udp_socket", udp);
    fields
}

/// The points of one reading.
pub fn points(
    counts: &Counts,
    ports: Option<&[PortSeries]>,
    host: &str,
    tags: &Tags,
    time_ns: i64,
) -> Vec<Point> {
    let mut out = Vec::new();
    for (version, tcp, udp) in [
        (4, ConnType::Tcp, ConnType::Udp),
        (6, ConnType::Tcp6, ConnType::Udp6),
    ] {
        let fields = fields(|code| counts.get(tcp, code), counts.get(udp, 0));
        // DataKit makes a point for an IP version once it sees a socket.
        if fields.values().all(|n| *n == 0) {
            continue;
        }
        let mut t = merged(host, tags);
        t.insert("ip_version".into(), version.to_string());
        out.push(Point {
            measurement: "netstat",
            tags: t,
            fields,
            time: time_ns,
        });
    }
    for s in ports.into_iter().flatten() {
        let mut fields = fields(|code| s.states.0[code as usize], s.udp_socket);
        // A series DataKit has not seen a socket of has no point.
        if fields.values().all(|n| *n == 0) {
            continue;
        }
        fields.insert("pid", 0);
        let mut t: BTreeMap<String, String> = s.tags.clone();
        t.extend(merged(host, tags));
        t.insert("addr_port".into(), s.addr_port.clone());
        t.insert("ip_version".into(), s.ip_version.to_string());
        out.push(Point {
            measurement: "netstat_port",
            tags: t,
            fields,
            time: time_ns,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::figures::TcpStates;

    #[test]
    fn datakits_names_and_values() {
        let mut counts = Counts::default();
        counts.add(ConnType::Tcp, 1, 3);
        counts.add(ConnType::Tcp, 10, 1);
        counts.add(ConnType::Udp, 7, 2);
        let mut states = TcpStates::default();
        states.0[1] = 2;
        let ports = [
            PortSeries {
                addr_port: "8080".into(),
                ip_version: 4,
                tags: [("service".to_owned(), "web".to_owned())].into(),
                states,
                udp_socket: 1,
                tcp_metrics: None,
            },
            PortSeries {
                addr_port: "8080".into(),
                ip_version: 6,
                tags: Tags::new(),
                states: TcpStates::default(),
                udp_socket: 0,
                tcp_metrics: None,
            },
        ];
        let tags = [("dc".to_owned(), "zrh1".to_owned())].into();
        let p = points(
            &counts,
            Some(&ports),
            "vm",
            &tags,
            1_700_000_000_000_000_000,
        );
        // No IPv6 socket: no IPv6 point; an empty series: no point.
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(
            p[0].line(),
            "netstat,dc=zrh1,host=vm,ip_version=4 tcp_close=0i,tcp_close_wait=0i,tcp_closing=0i,\
             tcp_established=3i,tcp_fin_wait1=0i,tcp_fin_wait2=0i,tcp_last_ack=0i,tcp_listen=1i,\
             tcp_none=0i,tcp_syn_recv=0i,tcp_syn_sent=0i,tcp_time_wait=0i,udp_socket=2i \
             1700000000000000000"
        );
        assert_eq!(p[1].measurement, "netstat_port");
        assert_eq!(p[1].tags["addr_port"], "8080");
        assert_eq!(p[1].tags["service"], "web");
        assert_eq!(p[1].tags["ip_version"], "4");
        assert_eq!(p[1].fields["tcp_established"], 2);
        assert_eq!(p[1].fields["udp_socket"], 1);
        assert_eq!(p[1].fields["pid"], 0);
        assert_eq!(p[1].fields.len(), 14);
    }

    #[test]
    fn line_protocol_escapes() {
        let p = Point {
            measurement: "netstat",
            tags: [("a b".to_owned(), "x,y=z".to_owned())].into(),
            fields: [("n", 1)].into(),
            time: 5,
        };
        assert_eq!(p.line(), r"netstat,a\ b=x\,y\=z n=1i 5");
    }
}
