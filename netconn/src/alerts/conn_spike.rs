//! `conn_spike`: new connections per second to a local port (inbound) or
//! a remote address and port (outbound), against a baseline learned while
//! netconn runs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::{Raising, Stamp, learn, round};
use crate::alerts::Level;
use crate::config::SpikeConfig;
use crate::config::Thresholds;
use crate::model::alert::Kind;
use crate::output::alert::{Levels, Peer, SpikeAlert};

#[derive(Debug)]
struct SpikeState {
    mean: f64,
    watched: Duration,
    raising: Raising,
}

/// What a spike is about: new connections to a local port (inbound), or to
/// a remote address and port (outbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpikeKey {
    Inbound(u16),
    Outbound(IpAddr, u16),
}

/// The most keys followed at once (outbound destinations are many); past
/// it, new ones wait until quiet ones are forgotten.
pub const MAX_SPIKE_KEYS: usize = 8192;

/// `conn_spike` for every inbound port and outbound destination of a
/// namespace.
#[derive(Debug)]
pub struct ConnSpikes {
    config: SpikeConfig,
    keys: HashMap<SpikeKey, SpikeState>,
}

impl ConnSpikes {
    pub fn new(config: SpikeConfig) -> Self {
        Self {
            config,
            keys: HashMap::new(),
        }
    }

    /// One interval of `elapsed`: the new connections per key. `peers(key)`:
    /// the remote addresses behind a spike (asked only for an alert
    /// record).
    pub fn update(
        &mut self,
        counts: &HashMap<SpikeKey, u64>,
        elapsed: Duration,
        stamp: &Stamp<'_>,
        mut peers: impl FnMut(&SpikeKey) -> Vec<Peer>,
    ) -> Vec<SpikeAlert> {
        let c = self.config;
        let seconds = elapsed.as_secs_f64();
        if !c.enabled || seconds <= 0.0 {
            return Vec::new();
        }
        for (key, n) in counts {
            if self.keys.len() >= MAX_SPIKE_KEYS {
                break;
            }
            self.keys.entry(*key).or_insert_with(|| SpikeState {
                mean: *n as f64 / seconds,
                watched: Duration::ZERO,
                raising: Raising::new(Thresholds::default()),
            });
        }
        let mut out = Vec::new();
        for (key, state) in &mut self.keys {
            let rate = counts.get(key).copied().unwrap_or(0) as f64 / seconds;
            state.watched += elapsed;
            if state.watched >= c.warmup {
                // The baseline, floored so that a quiet key's warning is
                // min_rate.
                let base = state.mean.max(c.min_rate / c.warning);
                state.raising.alert.thresholds = Thresholds {
                    warn: c.warning * base,
                    crit: c.critical * base,
                    clear: c.clear * base,
                };
                if let Some((level, since)) = state.raising.update(rate, stamp.time) {
                    let t = state.raising.alert.thresholds;
                    let (direction, addr, port) = match *key {
                        SpikeKey::Inbound(port) => ("inbound", None, port),
                        SpikeKey::Outbound(addr, port) => ("outbound", Some(addr), port),
                    };
                    out.push(SpikeAlert {
                        head: stamp.head(Kind::ConnSpike, level),
                        direction,
                        addr,
                        port,
                        rate: round(rate),
                        baseline: round(state.mean),
                        thresholds: Levels {
                            warning: round(t.warn),
                            critical: round(t.crit),
                            clear: round(t.clear),
                        },
                        top_remote: if level == Level::Clear {
                            Vec::new()
                        } else {
                            peers(key)
                        },
                        since,
                    });
                }
            }
            // The baseline learns only while nothing alerts: a spike does
            // not become the normal.
            if state.raising.level() == Level::Clear {
                learn(&mut state.mean, rate, seconds, c.window, state.watched);
            }
        }
        // Keys gone quiet for good are forgotten.
        self.keys.retain(|k, s| {
            counts.contains_key(k) || s.mean >= 0.001 || s.raising.level() != Level::Clear
        });
        out
    }
}
