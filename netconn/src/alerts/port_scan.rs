//! `port_scan`: one address touching many closed ports (each answered
//! with a reset) within a window.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Raising, Stamp};
use crate::alerts::Level;
use crate::config::ScanConfig;
use crate::config::Thresholds;
use crate::model::alert::Kind;
use crate::output::alert::{ScanAlert, ScanThresholds};

/// The most (address, port) pairs kept for `port_scan` windows (about
/// 4 MiB); past it, new pairs are not followed until old ones age out.
pub const MAX_SCAN_PAIRS: usize = 65536;
/// Ports an alert record lists.
pub const SCAN_SAMPLE: usize = 10;

#[derive(Debug)]
struct ScanState {
    /// Closed ports it touched, and when last.
    ports: HashMap<u16, std::time::Instant>,
    raising: Raising,
}

/// `port_scan` for every address that touched closed ports of a
/// namespace.
#[derive(Debug)]
pub struct PortScans {
    config: ScanConfig,
    sources: HashMap<IpAddr, ScanState>,
    pub(super) pairs: usize,
}

impl PortScans {
    pub fn new(config: ScanConfig) -> Self {
        Self {
            config,
            sources: HashMap::new(),
            pairs: 0,
        }
    }

    /// One interval: the closed ports each address touched in it.
    pub fn update(
        &mut self,
        touched: &[(IpAddr, u16)],
        now: std::time::Instant,
        stamp: &Stamp<'_>,
    ) -> Vec<ScanAlert> {
        let c = self.config;
        if !c.enabled {
            return Vec::new();
        }
        let thresholds = Thresholds {
            warn: c.ports,
            crit: c.critical * c.ports,
            clear: c.ports / 2.0,
        };
        for (addr, port) in touched {
            let known = self.sources.contains_key(addr);
            if !known && self.pairs >= MAX_SCAN_PAIRS {
                continue;
            }
            let state = self.sources.entry(*addr).or_insert_with(|| ScanState {
                ports: HashMap::new(),
                raising: Raising::new(thresholds),
            });
            // A port already seen is refreshed; a new one only within the
            // bound.
            let room = self.pairs < MAX_SCAN_PAIRS;
            if (room || state.ports.contains_key(port)) && state.ports.insert(*port, now).is_none()
            {
                self.pairs += 1;
            }
        }
        let mut out = Vec::new();
        for (addr, state) in &mut self.sources {
            let before = state.ports.len();
            state
                .ports
                .retain(|_, last| now.duration_since(*last) <= c.window);
            self.pairs -= before - state.ports.len();
            let Some((level, since)) = state.raising.update(state.ports.len() as f64, stamp.time)
            else {
                continue;
            };
            let mut sample: Vec<u16> = state.ports.keys().copied().collect();
            sample.sort_unstable();
            sample.truncate(SCAN_SAMPLE);
            out.push(ScanAlert {
                head: stamp.head(Kind::PortScan, level),
                addr: *addr,
                ports: state.ports.len() as u32,
                sample,
                window_s: c.window.as_secs_f64(),
                thresholds: ScanThresholds {
                    warning: thresholds.warn,
                    critical: thresholds.crit,
                    clear: thresholds.clear,
                },
                since,
            });
        }
        self.sources
            .retain(|_, s| !s.ports.is_empty() || s.raising.level() != Level::Clear);
        out
    }
}
