//! One scrape's page: metric families with their samples, encoded by
//! `prometheus-client` as OpenMetrics or as the Prometheus text format.

use std::borrow::Cow;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// A sample's labels, in order (names fixed or from the configuration's
/// tags).
pub type Labels = Vec<(Cow<'static, str>, String)>;

/// Labels with fixed names.
pub fn labels<const N: usize>(pairs: [(&'static str, String); N]) -> Labels {
    pairs
        .into_iter()
        .map(|(k, v)| (Cow::Borrowed(k), v))
        .collect()
}

/// One sample's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Gauge(i64),
    /// A gauge that is not a whole number (ratios).
    Ratio(f64),
    Counter(u64),
    /// `buckets`: (upper bound, samples at or below it), ascending; the
    /// `+Inf` bucket is added by the encoder.
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
}

/// A metric family: its name (without `_total` for counters: the encoder
/// adds it), help and samples, all of one type.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub samples: Vec<(Labels, Value)>,
}

impl Family {
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            samples: Vec::new(),
        }
    }

    pub fn with(mut self, labels: Labels, value: Value) -> Self {
        self.samples.push((labels, value));
        self
    }

    pub fn push(&mut self, labels: Labels, value: Value) {
        self.samples.push((labels, value));
    }

    fn metric_type(&self) -> MetricType {
        match self.samples.first().map(|(_, v)| v) {
            Some(Value::Counter(_)) => MetricType::Counter,
            Some(Value::Histogram { .. }) => MetricType::Histogram,
            _ => MetricType::Gauge,
        }
    }
}

/// Every family of a scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page(pub Vec<Family>);

impl Collector for Page {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A family without samples says nothing: left out (its type would
        // be a guess).
        for family in self.0.iter().filter(|f| !f.samples.is_empty()) {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.metric_type())?;
            for (labels, value) in &family.samples {
                let sample = metric.encode_family(labels)?;
                match value {
                    Value::Gauge(v) => ConstGauge::new(*v).encode(sample)?,
                    Value::Ratio(v) => ConstGauge::new(*v).encode(sample)?,
                    Value::Counter(v) => ConstCounter::new(*v).encode(sample)?,
                    Value::Histogram {
                        sum,
                        count,
                        buckets,
                    } => {
                        // The encoder adds the buckets up itself and
                        // wants the +Inf one given.
                        let mut below = 0;
                        let mut own: Vec<(f64, u64)> = buckets
                            .iter()
                            .map(|(le, n)| (*le, n - std::mem::replace(&mut below, *n)))
                            .collect();
                        own.push((f64::INFINITY, count.saturating_sub(below)));
                        let mut sample = sample;
                        sample.encode_histogram::<NoLabelSet>(*sum, *count, &own, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

/// The two exposition formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// `application/openmetrics-text; version=1.0.0` (what Prometheus asks
    /// for first).
    OpenMetrics,
    /// `text/plain; version=0.0.4` (anyone else: curl, older scrapers).
    Text,
}

impl Exposition {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// it (with a weight above 0), the text format otherwise.
    pub fn of_accept(accept: Option<&str>) -> Self {
        // The highest weight a client gives OpenMetrics (named), and the
        // text format (text/plain, text/*, */*): OpenMetrics when it is
        // wanted at least as much (Prometheus: 1 against 0.5).
        let (mut open_metrics, mut text) = (0.0f64, 0.0f64);
        for choice in accept.unwrap_or_default().split(',') {
            let mut parts = choice.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f64>().ok()))
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            match media.as_str() {
                "application/openmetrics-text" => open_metrics = open_metrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if open_metrics > 0.0 && open_metrics >= text {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

impl Page {
    /// Adds `families` with `extra` labels before each sample's own, each
    /// sample into the family of its name (`--all-namespaces`: every
    /// namespace's families, one series per namespace).
    pub fn merge(&mut self, families: Vec<Family>, extra: &Labels) {
        for family in families {
            let samples = family.samples.into_iter().map(|(own, v)| {
                let mut l = extra.clone();
                l.extend(own);
                (l, v)
            });
            match self.0.iter_mut().find(|f| f.name == family.name) {
                Some(f) => f.samples.extend(samples),
                None => self.0.push(Family {
                    name: family.name,
                    help: family.help,
                    samples: samples.collect(),
                }),
            }
        }
    }

    /// The page as the format says.
    pub fn encode(self, format: Exposition) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        let encoded = match format {
            Exposition::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut text, &registry)
            }
            Exposition::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            }
        };
        // Writing to a String cannot fail.
        encoded.expect("encoding to a string");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Page {
        Page(vec![
            Family::new("netconn_connections", "Sockets by type and state.")
                .with(
                    labels([("conn_type", "tcp".into()), ("state", "LISTEN".into())]),
                    Value::Gauge(3),
                )
                .with(
                    labels([("conn_type", "udp".into()), ("state", "NONE".into())]),
                    Value::Gauge(0),
                ),
            Family::new("netconn_lost_events", "Events lost.").with(vec![], Value::Counter(7)),
            Family::new("netconn_tcp_rtt_seconds", "RTT.").with(
                vec![],
                Value::Histogram {
                    sum: 0.5,
                    count: 3,
                    buckets: vec![(0.001, 1), (0.01, 2)],
                },
            ),
            Family::new("netconn_unused", "Never seen."),
        ])
    }

    #[test]
    fn openmetrics_has_types_totals_and_eof() {
        let text = page().encode(Exposition::OpenMetrics);
        assert!(
            text.contains("# TYPE netconn_connections gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("netconn_connections{conn_type=\"tcp\",state=\"LISTEN\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE netconn_lost_events counter\n"),
            "{text}"
        );
        assert!(text.contains("netconn_lost_events_total 7\n"), "{text}");
        assert!(
            text.contains("netconn_tcp_rtt_seconds_bucket{le=\"0.01\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("netconn_tcp_rtt_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(!text.contains("netconn_unused"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn text_format_names_counters_with_total_and_has_no_eof() {
        let text = page().encode(Exposition::Text);
        assert!(
            text.contains("# TYPE netconn_lost_events_total counter\n"),
            "{text}"
        );
        assert!(text.contains("netconn_lost_events_total 7\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn accept_headers() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(
            Exposition::of_accept(Some(prometheus)),
            Exposition::OpenMetrics
        );
        assert_eq!(Exposition::of_accept(Some("*/*")), Exposition::Text);
        assert_eq!(Exposition::of_accept(None), Exposition::Text);
        assert_eq!(
            Exposition::of_accept(Some("application/openmetrics-text;q=0, text/plain")),
            Exposition::Text
        );
        // Weights decide: text preferred gets text.
        assert_eq!(
            Exposition::of_accept(Some("text/plain;q=1, application/openmetrics-text;q=0.5")),
            Exposition::Text
        );
        assert_eq!(
            Exposition::of_accept(Some("text/plain;q=0.2, application/openmetrics-text;q=0.9")),
            Exposition::OpenMetrics
        );
    }
}
