//! What `netconn top` shows, from the records the daemon publishes (or
//! that top makes itself when polling): pure logic, no terminal.

use std::collections::VecDeque;

use serde_json::Value;

/// The conn-types, as the table's columns.
pub const TYPES: [&str; 4] = ["tcp", "tcp6", "udp", "udp6"];

/// The states, as the table's rows: TCP's in the kernel's order, then
/// UDP's one (the names `check` prints).
pub fn states() -> impl Iterator<Item = &'static str> {
    use crate::model::state::{UDP_STATE, tcp_state_names};
    tcp_state_names().chain([UDP_STATE])
}

/// One refresh: the records of one interval.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// The counts records: one, or one per namespace (`-A`).
    pub counts: Vec<Value>,
    /// The host record (`-A`).
    pub host: Option<Value>,
    /// The conntrack record (a watch of one namespace).
    pub conntrack: Option<Value>,
}

impl Frame {
    /// The frame in a records answer (JSON lines); None when it holds no
    /// counts record (the daemon has made no interval since first asked).
    pub fn parse(text: &str) -> Option<Self> {
        let mut frame = Self::default();
        for line in text.lines() {
            let Ok(record) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            match record["type"].as_str() {
                Some("counts") => frame.counts.push(record),
                Some("host") => frame.host = Some(record),
                Some("conntrack") => frame.conntrack = Some(record),
                _ => {}
            }
        }
        (!frame.counts.is_empty()).then_some(frame)
    }

    /// The time of its records.
    pub fn time(&self) -> Option<&str> {
        let record = self.host.as_ref().or(self.counts.first())?;
        record["time"].as_str()
    }

    /// The counts record of namespace `netns`.
    pub fn of(&self, netns: u64) -> Option<&Value> {
        self.counts.iter().find(|r| r["netns"] == netns)
    }
}

/// A cell of the state table: the count and its change since the frame
/// before (0 for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub now: i64,
    pub change: i64,
}

/// A row of the state table; a conn-type without the state has no cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub state: &'static str,
    pub cells: [Option<Cell>; 4],
}

/// The per-state table of a counts record (`connections`), each figure
/// with its change since `before`'s.
pub fn state_rows(now: &Value, before: Option<&Value>) -> Vec<StateRow> {
    let cell = |record: &Value, ct: &str, state: &str| record["connections"][ct][state].as_i64();
    states()
        .map(|state| {
            let mut cells = [None; 4];
            for (slot, ct) in cells.iter_mut().zip(TYPES) {
                *slot = cell(now, ct, state).map(|n| Cell {
                    now: n,
                    change: before
                        .and_then(|b| cell(b, ct, state))
                        .map_or(0, |was| n - was),
                });
            }
            StateRow { state, cells }
        })
        .collect()
}

/// Seconds since midnight (UTC) of an RFC 3339 time, for the rates.
fn seconds(time: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339(time).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
}

/// One point of the charts: a namespace's figures at one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub total: i64,
    pub established: i64,
    /// Per second over the interval (None: no figures, or the first):
    /// connections opened (accepted, and connects established), closed
    /// (established ones that ended), failed connects, resets,
    /// retransmitted segments.
    pub opened: Option<f64>,
    pub closed: Option<f64>,
    pub failed: Option<f64>,
    pub resets: Option<f64>,
    pub retrans: Option<f64>,
}

/// The last points of a namespace, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    points: VecDeque<Point>,
    last_time: Option<f64>,
}

/// Points kept: ten minutes at one a second.
pub const KEPT: usize = 600;

impl History {
    /// Adds the point of counts record `r` (an interval's figures are
    /// divided by the seconds since the record before).
    pub fn push(&mut self, r: &Value) {
        let time = r["time"].as_str().and_then(seconds);
        let span = match (time, self.last_time) {
            (Some(now), Some(was)) if now > was => Some(now - was),
            _ => None,
        };
        if time.is_some() && time == self.last_time {
            return;
        }
        self.last_time = time;
        let m = &r["tcp_metrics"];
        let rate = |v: Option<u64>| Some(v? as f64 / span?);
        let failed = m["failed_connects"]
            .as_object()
            .map(|f| f.values().filter_map(Value::as_u64).sum::<u64>());
        let resets = m["resets_sent"]
            .as_u64()
            .zip(m["resets_received"].as_u64())
            .map(|(s, r)| s + r);
        self.points.push_back(Point {
            total: r["total"].as_i64().unwrap_or(0),
            established: ["tcp", "tcp6"]
                .iter()
                .filter_map(|ct| r["connections"][ct]["ESTABLISHED"].as_i64())
                .sum(),
            opened: rate(
                m["accepted"]
                    .as_u64()
                    .zip(m["connected"].as_u64())
                    .map(|(a, c)| a + c),
            ),
            closed: rate(m["closed"].as_u64()),
            failed: rate(failed),
            resets: rate(resets),
            retrans: rate(m["retrans"].as_u64()),
        });
        while self.points.len() > KEPT {
            self.points.pop_front();
        }
    }

    pub fn points(&self) -> impl ExactSizeIterator<Item = &Point> + DoubleEndedIterator {
        self.points.iter()
    }

    pub fn last(&self) -> Option<&Point> {
        self.points.back()
    }
}

/// An alert record shown: its time, status, kind, namespace and what
/// else it says, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub time: String,
    pub status: String,
    pub alert: String,
    pub netns: String,
    pub detail: String,
}

/// The active alerts in an `alerts` answer (JSON lines), newest first.
pub fn alert_rows(text: &str) -> Vec<AlertRow> {
    const SHOWN_APART: [&str; 8] = [
        "type", "alert", "status", "time", "host", "netns", "owner", "since",
    ];
    let mut rows: Vec<AlertRow> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|a| {
            let text = |k: &str| match &a[k] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                v => v.to_string(),
            };
            let detail = a
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, v)| !SHOWN_APART.contains(&k.as_str()) && !v.is_null())
                        .map(|(k, v)| match v {
                            Value::String(s) => format!("{k}={s}"),
                            v => format!("{k}={v}"),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            AlertRow {
                time: text("time"),
                status: text("status"),
                alert: text("alert"),
                netns: text("netns"),
                detail,
            }
        })
        .collect();
    rows.sort_by(|a, b| b.time.cmp(&a.time));
    rows
}

/// A row of the namespaces view (`-A`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRow {
    pub netns: u64,
    pub owner: String,
    pub total: i64,
    pub established: i64,
    pub listen: i64,
    /// Change of the total since the frame before.
    pub change: i64,
}

/// The namespaces of a frame, the busiest first.
pub fn namespace_rows(now: &Frame, before: Option<&Frame>) -> Vec<NamespaceRow> {
    let tcp = |r: &Value, state: &str| -> i64 {
        ["tcp", "tcp6"]
            .iter()
            .filter_map(|ct| r["connections"][ct][state].as_i64())
            .sum()
    };
    let mut rows: Vec<NamespaceRow> = now
        .counts
        .iter()
        .filter_map(|r| {
            let netns = r["netns"].as_u64()?;
            let total = r["total"].as_i64().unwrap_or(0);
            let was = before
                .and_then(|b| b.of(netns))
                .and_then(|b| b["total"].as_i64());
            let owner = if r["namespace"] == "system" {
                "host".to_owned()
            } else {
                crate::namespaces::owner::Owner::label_of(&r["owner"])
            };
            Some(NamespaceRow {
                netns,
                owner: crate::host::printable(&owner).into_owned(),
                total,
                established: tcp(r, "ESTABLISHED"),
                listen: tcp(r, "LISTEN"),
                change: was.map_or(0, |w| total - w),
            })
        })
        .collect();
    rows.sort_by(|a, b| b.total.cmp(&a.total).then(a.netns.cmp(&b.netns)));
    rows
}

/// How the connections view orders its rows: by one column, either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: usize,
    pub descending: bool,
}

/// The rows of a table of text cells that `filter` matches (any cell
/// contains it, ignoring case), ordered by `sort` (numbers as numbers).
pub fn filtered_sorted(rows: &[Vec<String>], filter: &str, sort: Sort) -> Vec<Vec<String>> {
    let needle = filter.to_lowercase();
    let mut kept: Vec<Vec<String>> = rows
        .iter()
        .filter(|r| needle.is_empty() || r.iter().any(|c| c.to_lowercase().contains(&needle)))
        .cloned()
        .collect();
    let key = |r: &Vec<String>| r.get(sort.column).cloned().unwrap_or_default();
    kept.sort_by(|a, b| {
        let (a, b) = (key(a), key(b));
        let order = match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.total_cmp(&y),
            _ => a.cmp(&b),
        };
        if sort.descending {
            order.reverse()
        } else {
            order
        }
    });
    kept
}

/// A figure's change as shown beside it: `+3`, `-2`, nothing for none.
pub fn change(n: i64) -> String {
    match n {
        0 => String::new(),
        n if n > 0 => format!("+{n}"),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(netns: u64, time: &str, established: i64, udp: i64) -> Value {
        json!({
            "type": "counts", "time": time, "netns": netns, "total": established + udp,
            "connections": {
                "tcp": {"ESTABLISHED": established, "LISTEN": 1},
                "tcp6": {"ESTABLISHED": 0},
                "udp": {"NONE": udp}, "udp6": {"NONE": 0}
            },
            "tcp_metrics": {"accepted": 20, "connected": 4, "closed": 6, "retrans": 4, "resets_sent": 1, "resets_received": 1,
                "failed_connects": {"refused": 2, "timeout": 0}}
        })
    }

    #[test]
    fn the_state_table_has_each_figure_and_its_change() {
        let before = record(1, "2026-12-07T12:00:00Z", 3, 1);
        let now = record(1, "2026-12-07T12:00:02Z", 5, 1);
        let rows = state_rows(&now, Some(&before));
        assert_eq!(rows.len(), states().count());
        let est = &rows[0];
        assert_eq!(est.state, "ESTABLISHED");
        assert_eq!(est.cells[0], Some(Cell { now: 5, change: 2 }));
        assert_eq!(est.cells[1], Some(Cell { now: 0, change: 0 }));
        assert_eq!(est.cells[2], None, "UDP has no ESTABLISHED");
        let none = rows.last().unwrap();
        assert_eq!(none.state, "NONE");
        assert_eq!(none.cells[0], None, "TCP has no NONE");
        assert_eq!(none.cells[2], Some(Cell { now: 1, change: 0 }));
        // The first frame: no change.
        assert_eq!(
            state_rows(&now, None)[0].cells[0],
            Some(Cell { now: 5, change: 0 })
        );
    }

    #[test]
    fn rates_are_per_second_of_the_interval_and_a_record_counts_once() {
        let mut h = History::default();
        h.push(&record(1, "2026-12-07T12:00:00Z", 3, 1));
        assert_eq!(
            h.last().unwrap().opened,
            None,
            "no interval before the first"
        );
        h.push(&record(1, "2026-12-07T12:00:02Z", 5, 1));
        h.push(&record(1, "2026-12-07T12:00:02Z", 5, 1));
        assert_eq!(h.points().len(), 2, "the same record again is no new point");
        let p = h.last().unwrap();
        assert_eq!(p.opened, Some(12.0));
        assert_eq!(p.closed, Some(3.0));
        assert_eq!(p.failed, Some(1.0));
        assert_eq!(p.resets, Some(1.0));
        assert_eq!(p.retrans, Some(2.0));
        assert_eq!((p.total, p.established), (6, 5));
        for i in 0..KEPT + 5 {
            h.push(&json!({"time": format!("2026-12-07T13:{:02}:{:02}Z", i / 60 % 60, i % 60)}));
        }
        assert_eq!(h.points().len(), KEPT);
    }

    #[test]
    fn frames_parse_and_alerts_come_newest_first() {
        let text = format!(
            "{}\n{}\nnot json\n{}\n",
            record(7, "2026-12-07T12:00:00Z", 1, 0),
            json!({"type": "host", "time": "2026-12-07T12:00:01Z", "total": 1}),
            json!({"type": "conntrack", "count": 3}),
        );
        let f = Frame::parse(&text).unwrap();
        assert_eq!(f.counts.len(), 1);
        assert_eq!(f.time(), Some("2026-12-07T12:00:01Z"));
        assert!(f.of(7).is_some() && f.of(8).is_none());
        assert!(f.conntrack.is_some());
        assert!(Frame::parse("").is_none(), "no interval yet");

        let alerts = format!(
            "{}\n{}\n",
            json!({"type":"alert","alert":"new_listener","status":"warning","time":"2026-12-07T12:00:00Z","netns":1,"port":8080,"comm":null}),
            json!({"type":"alert","alert":"syn_flood","status":"critical","time":"2026-12-07T12:00:05Z","netns":1,"port":80}),
        );
        let rows = alert_rows(&alerts);
        assert_eq!(rows[0].alert, "syn_flood");
        assert_eq!(rows[1].detail, "port=8080");
    }

    #[test]
    fn namespaces_busiest_first_with_owners() {
        let mut host = record(1, "t", 9, 0);
        host["namespace"] = json!("system");
        let mut pod = record(2, "t", 2, 0);
        pod["namespace"] = json!("container");
        pod["owner"] = json!({"k8s_pod_name": "web-1", "k8s_namespace": "shop"});
        let before = Frame {
            counts: vec![record(2, "t", 1, 0)],
            ..Frame::default()
        };
        let now = Frame {
            counts: vec![pod, host],
            ..Frame::default()
        };
        let rows = namespace_rows(&now, Some(&before));
        assert_eq!(rows[0].owner, "host");
        assert_eq!(rows[1].owner, "pod:shop/web-1");
        assert_eq!((rows[1].total, rows[1].change, rows[1].listen), (2, 1, 1));
    }

    #[test]
    fn rows_filter_and_sort_numbers_as_numbers() {
        let rows: Vec<Vec<String>> = [
            ["tcp", "9", "nginx"],
            ["udp", "10", "dns"],
            ["tcp", "2", "Nginx"],
        ]
        .iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
        let sorted = filtered_sorted(
            &rows,
            "",
            Sort {
                column: 1,
                descending: false,
            },
        );
        let col: Vec<&str> = sorted.iter().map(|r| r[1].as_str()).collect();
        assert_eq!(col, ["2", "9", "10"]);
        let nginx = filtered_sorted(
            &rows,
            "NGINX",
            Sort {
                column: 1,
                descending: true,
            },
        );
        let col: Vec<&str> = nginx.iter().map(|r| r[1].as_str()).collect();
        assert_eq!(col, ["9", "2"]);
        assert_eq!(change(3), "+3");
        assert_eq!(change(-2), "-2");
        assert_eq!(change(0), "");
    }
}
