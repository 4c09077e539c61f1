//! `port_exhaustion`: the ephemeral ports to one destination running out.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Raising, Stamp};
use crate::alerts::Level;
use crate::config::ExhaustionConfig;
use crate::model::alert::Kind;
use crate::output::alert::{ExhaustionAlert, Levels};

/// The destinations a port_exhaustion alert is about.
type DestinationKey = (IpAddr, IpAddr, u16);

/// `port_exhaustion` for every destination of the ephemeral port range.
#[derive(Debug)]
pub struct PortExhaustion {
    config: ExhaustionConfig,
    /// Destinations with an alert raised.
    pub(super) raised: HashMap<DestinationKey, Raising>,
}

impl PortExhaustion {
    pub fn new(config: ExhaustionConfig) -> Self {
        Self {
            config,
            raised: HashMap::new(),
        }
    }

    /// One interval's destinations (every one, most sockets first): a
    /// record for each whose level changed; one no longer listed clears.
    pub fn update(
        &mut self,
        reading: &crate::live::ephemeral::EphemeralReading,
        stamp: &Stamp<'_>,
    ) -> Vec<ExhaustionAlert> {
        if !self.config.enabled {
            return Vec::new();
        }
        let t = self.config.levels;
        let mut out = Vec::new();
        let listed: std::collections::HashSet<DestinationKey> = reading
            .destinations
            .iter()
            .map(|d| (d.laddr, d.raddr, d.rport))
            .collect();
        // A destination whose sockets are all gone is at 0.
        let gone: Vec<_> = (self.raised.keys())
            .filter(|k| !listed.contains(*k))
            .map(
                |&(laddr, raddr, rport)| crate::output::figures::DestinationFigures {
                    laddr,
                    raddr,
                    rport,
                    in_use: 0,
                    time_wait: 0,
                    utilization: 0.0,
                },
            )
            .collect();
        for d in reading.destinations.iter().chain(&gone) {
            let key = (d.laddr, d.raddr, d.rport);
            let percent = d.utilization * 100.0;
            let raising = match self.raised.get_mut(&key) {
                Some(r) => r,
                // Below warning nothing starts.
                None if percent < t.warn => continue,
                None => self.raised.entry(key).or_insert_with(|| Raising::new(t)),
            };
            let Some((level, since)) = raising.update(percent, stamp.time) else {
                continue;
            };
            if level == Level::Clear {
                self.raised.remove(&key);
            }
            out.push(ExhaustionAlert {
                head: stamp.head(Kind::PortExhaustion, level),
                laddr: d.laddr,
                raddr: d.raddr,
                rport: d.rport,
                in_use: d.in_use,
                time_wait: d.time_wait,
                size: reading.range.size,
                utilization: d.utilization,
                thresholds: Levels {
                    warning: t.warn,
                    critical: t.crit,
                    clear: t.clear,
                },
                since,
            });
        }
        out
    }
}
