//! The Prometheus / OpenMetrics endpoint of `watch --listen`: a page built
//! from the live state at each scrape (no dump per scrape in eBPF mode),
//! served by hyper's HTTP/1 server on the watch's runtime.
//!
//! - `page`: metric families and their encoding (`prometheus-client`),
//!   with the format chosen by the scraper's `Accept` header.
//! - `exporter`: what the watch keeps between scrapes (running totals of
//!   the interval figures) and the page it makes of them.
//! - `node_page`: the page of every namespace, each one's series labelled.
//! - `http`: the server.

pub mod exporter;
pub mod http;
pub mod node_page;
pub mod page;
pub mod web;
