//! The Prometheus / OpenMetrics endpoint of `watch --listen`: a page built
//! from the live state at each scrape (no dump per scrape in eBPF mode),
//! served by a small HTTP server on the watch's runtime.
//!
//! - `page`: metric families and their encoding (`prometheus-client`),
//!   with the format chosen by the scraper's `Accept` header.
//! - `exporter`: what the watch keeps between scrapes (running totals of
//!   the interval figures) and the page it makes of them.
//! - `http`: the server.

pub mod exporter;
pub mod http;
pub mod page;
pub mod web;
