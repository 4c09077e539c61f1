//! The TCP figures of counts records (`tcp_metrics`, per port series and
//! per top port), as types: what the live metrics hand over is rendered
//! here and nowhere else.

use netconn_common::{TcpMetrics, rtt_bucket_bounds};
use serde::Serialize;

/// `rtt_us`: the RTT samples' distribution, microseconds; nulls without
/// samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RttFigures {
    pub count: u64,
    pub min: Option<u32>,
    pub p50: Option<u32>,
    pub p90: Option<u32>,
    pub p99: Option<u32>,
    pub max: Option<u32>,
    pub mean: Option<u64>,
}

impl RttFigures {
    pub fn of(m: &TcpMetrics) -> Self {
        let mean = m.sum_us.checked_div(m.samples);
        let seen = mean.is_some();
        Self {
            count: m.samples,
            min: seen.then_some(m.min_us),
            p50: quantile(m, 0.50),
            p90: quantile(m, 0.90),
            p99: quantile(m, 0.99),
            max: seen.then_some(m.max_us),
            mean,
        }
    }
}

/// The figures every scope reports: the namespace, a port series, a top
/// port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcpFigures {
    pub rtt_us: RttFigures,
    pub retrans: u32,
    pub synack_retrans: u32,
    pub resets_sent: u32,
    pub resets_received: u32,
    /// Connects that never reached ESTABLISHED, by reason.
    pub failed_connects: FailedConnects,
    /// Connections whose handshake a listener completed (inbound).
    pub accepted: u32,
}

/// Failed connects by reason (see `netconn_common::failure_reason`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FailedConnects {
    pub refused: u32,
    pub timeout: u32,
    pub unreachable: u32,
    pub aborted: u32,
}

impl TcpFigures {
    pub fn of(m: &TcpMetrics) -> Self {
        use netconn_common::{FAILED_ABORTED, FAILED_REFUSED, FAILED_TIMEOUT, FAILED_UNREACHABLE};
        Self {
            rtt_us: RttFigures::of(m),
            retrans: m.retrans,
            synack_retrans: m.synack_retrans,
            resets_sent: m.resets_sent,
            resets_received: m.resets_received,
            failed_connects: FailedConnects {
                refused: m.failed[FAILED_REFUSED],
                timeout: m.failed[FAILED_TIMEOUT],
                unreachable: m.failed[FAILED_UNREACHABLE],
                aborted: m.failed[FAILED_ABORTED],
            },
            accepted: m.accepted,
        }
    }
}

/// One listening socket in an interval record (`"listeners"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerFigures {
    pub addr: std::net::IpAddr,
    pub port: u16,
    pub ip_version: u8,
    /// The process that listens, when a `watch --events` saw it listen.
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// Connections waiting for `accept()` now (`ss -lnt` Recv-Q).
    pub accept_queue: u32,
    /// The accept queue's limit (`ss -lnt` Send-Q).
    pub backlog: u32,
    /// Request sockets (SYN_RECV) waiting for their final ACK.
    pub syn_backlog: u32,
    /// Handshakes it completed in the interval (TCP metrics on; null
    /// without them).
    pub accepted: Option<u32>,
    /// Handshakes it began in the interval (request sockets made; a SYN
    /// answered with a cookie makes none), and handshakes that never
    /// completed (their request socket expired or was dropped), as they
    /// became known. Null without TCP metrics.
    pub handshakes_started: Option<u32>,
    pub handshakes_failed: Option<u32>,
    /// Segments it dropped in the interval: every ListenDrops of the
    /// namespace, ListenOverflows included, is one of some listener's.
    pub drops: u32,
}

/// `"ephemeral_ports"` of an interval record: the range `connect()` takes
/// local ports from, and the destinations using most of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EphemeralFigures {
    pub range: [u16; 2],
    /// Ports of the range not reserved (`ip_local_reserved_ports`).
    pub size: u32,
    pub top: Vec<DestinationFigures>,
    /// The destinations past `top`, and their sockets.
    pub others: OtherDestinations,
    /// Connected sockets a full table kept out of the counts since start
    /// (null when polling).
    pub untracked: Option<u64>,
}

/// One destination of `ephemeral_ports`: sockets from `laddr` to `raddr`
/// port `rport` whose local port is in the range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationFigures {
    pub laddr: std::net::IpAddr,
    pub raddr: std::net::IpAddr,
    pub rport: u16,
    /// Every state, TIME_WAIT included.
    pub in_use: u64,
    pub time_wait: u64,
    /// `in_use / size`.
    pub utilization: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OtherDestinations {
    pub destinations: u64,
    pub in_use: u64,
}

/// A port group series of a counts record (DataKit's `addr_port`
/// series): every TCP state, and with `watch` its TCP figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortSeries {
    pub addr_port: String,
    pub ip_version: u8,
    pub tags: crate::config::Tags,
    pub states: TcpStates,
    /// UDP sockets bound to the port (DataKit's `udp_socket`).
    pub udp_socket: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_metrics: Option<TcpFigures>,
}

/// TCP states 1 (ESTABLISHED) to 11 (CLOSING) by kernel code, rendered as
/// a map from state name to count, every state present, in code order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpStates(pub [i64; 12]);

impl Serialize for TcpStates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(11))?;
        for code in 1..=11u8 {
            let name = crate::model::state::tcp_state_name(code).expect("named state");
            map.serialize_entry(name, &self.0[code as usize])?;
        }
        map.end()
    }
}

/// The listen queue's part: overflows and drops in the interval, and per
/// second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ListenFigures {
    pub listen_overflows: u64,
    pub listen_drops: u64,
    pub listen_overflows_per_s: f64,
    pub listen_drops_per_s: f64,
}

/// One of the busiest service ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TopPort {
    pub direction: &'static str,
    pub port: u16,
    #[serde(flatten)]
    pub figures: TcpFigures,
}

/// Connections of the namespace that opened and that ended in the
/// interval, beside `accepted` (with eBPF).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    /// Its connects that reached ESTABLISHED.
    pub connected: u32,
    /// Its connections that ended: a socket that had been ESTABLISHED
    /// closed (`netconn_common::ended_connection`), whenever it opened.
    pub closed: u32,
}

impl Lifecycle {
    pub fn of(m: &TcpMetrics) -> Self {
        Self {
            connected: m.connected,
            closed: m.closed,
        }
    }
}

/// A counts record's `tcp_metrics`: the namespace's figures (with eBPF),
/// the listen queue's, and the top service ports (with eBPF).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalFigures {
    #[serde(flatten)]
    pub total: Option<TcpFigures>,
    #[serde(flatten)]
    pub lifecycle: Option<Lifecycle>,
    #[serde(flatten)]
    pub listen: ListenFigures,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_ports: Option<Vec<TopPort>>,
    /// (with eBPF) New connections whose peer the kernel's bounded table
    /// for `conn_spike` had no room for (counted, not followed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers_untracked: Option<u64>,
}

pub fn quantile(m: &TcpMetrics, q: f64) -> Option<u32> {
    if m.samples == 0 {
        return None;
    }
    let rank = ((q * m.samples as f64).ceil() as u64).clamp(1, m.samples);
    let mut seen = 0u64;
    for (i, n) in m.hist.iter().enumerate() {
        seen += u64::from(*n);
        if seen >= rank {
            let (_, high) = rtt_bucket_bounds(i);
            let top = u32::try_from(high - 1).unwrap_or(u32::MAX);
            return Some(top.clamp(m.min_us, m.max_us));
        }
    }
    // The histogram holds fewer samples than counted (a sample between
    // the counter's update and the bucket's, read mid-way).
    Some(m.max_us)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use netconn_common::rtt_bucket;

    /// An interval's metrics holding these RTT samples.
    pub fn samples(values: &[u32]) -> TcpMetrics {
        let mut m = TcpMetrics::default();
        for &v in values {
            let one = TcpMetrics {
                samples: 1,
                sum_us: u64::from(v),
                min_us: v,
                max_us: v,
                ..Default::default()
            };
            m.merge(&one);
            m.hist[rtt_bucket(v)] += 1;
        }
        m
    }

    #[test]
    fn quantiles_stay_within_a_quarter_of_the_truth() {
        let values: Vec<u32> = (1..=1000).map(|i| i * 37).collect();
        let m = samples(&values);
        for q in [0.5, 0.9, 0.99] {
            let truth = values[(q * values.len() as f64).ceil() as usize - 1];
            let got = quantile(&m, q).unwrap();
            assert!(
                got >= truth && got <= truth + truth / 4,
                "q{q}: {got} vs {truth}"
            );
        }
        assert_eq!(quantile(&m, 1.0), Some(37_000));
        assert_eq!(quantile(&samples(&[]), 0.5), None);
        // One sample: every quantile is it.
        assert_eq!(quantile(&samples(&[1234]), 0.99), Some(1234));
    }

    #[test]
    fn rtt_is_null_without_samples() {
        let v = serde_json::to_value(RttFigures::of(&TcpMetrics::default())).unwrap();
        assert_eq!(v["count"], 0);
        assert!(v["p50"].is_null() && v["min"].is_null() && v["mean"].is_null());
        let v = serde_json::to_value(RttFigures::of(&samples(&[10, 20, 30]))).unwrap();
        assert_eq!((v["min"].as_u64(), v["max"].as_u64()), (Some(10), Some(30)));
        assert_eq!(v["mean"], 20);
    }

    #[test]
    fn interval_figures_keep_the_record_shape() {
        let f = IntervalFigures {
            total: Some(TcpFigures::of(&samples(&[100]))),
            lifecycle: Some(Lifecycle {
                connected: 3,
                closed: 4,
            }),
            listen: ListenFigures {
                listen_overflows: 1,
                listen_drops: 2,
                listen_overflows_per_s: 0.5,
                listen_drops_per_s: 1.0,
            },
            top_ports: Some(vec![TopPort {
                direction: "inbound",
                port: 80,
                figures: TcpFigures::of(&TcpMetrics::default()),
            }]),
            peers_untracked: Some(0),
        };
        let text = serde_json::to_string(&f).unwrap();
        assert!(
            text.starts_with(r#"{"rtt_us":{"count":1,"min":100,"p50":100,"p90":100,"p99":100,"max":100,"mean":100},"retrans":0,"synack_retrans":0,"resets_sent":0,"resets_received":0,"failed_connects":{"refused":0,"timeout":0,"unreachable":0,"aborted":0},"accepted":0,"connected":3,"closed":4,"listen_overflows":1,"listen_drops":2,"listen_overflows_per_s":0.5,"listen_drops_per_s":1.0,"top_ports":[{"direction":"inbound","port":80,"rtt_us":{"count":0,"#),
            "{text}"
        );
        // Poll mode: the listen queue only.
        let poll = IntervalFigures {
            total: None,
            lifecycle: None,
            top_ports: None,
            ..f
        };
        assert!(
            serde_json::to_string(&poll)
                .unwrap()
                .starts_with(r#"{"listen_overflows":1,"#)
        );
    }
}
