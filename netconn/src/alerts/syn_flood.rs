//! `syn_flood`: handshakes left uncompleted on a listener (request
//! sockets, SYN-ACK retransmissions, listen drops) against their learned
//! means.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::{Raising, Stamp, learn, round, top};
use crate::alerts::Level;
use crate::config::SynFloodConfig;
use crate::config::Thresholds;
use crate::model::alert::Kind;
use crate::output::alert::{FloodFigures, Peer, SynFloodAlert, SynFloodThresholds};
use crate::output::figures::ListenerFigures;

#[derive(Debug)]
struct FloodState {
    raising: Raising,
    /// Learned means of syn_recv, SYN-ACK retransmissions and drops per
    /// second, and how long they have been learned.
    means: [f64; 3],
    watched: Duration,
}

/// `syn_flood` for every listening address and port of a namespace.
#[derive(Debug)]
pub struct SynFloods {
    config: SynFloodConfig,
    listeners: HashMap<(IpAddr, u16), FloodState>,
}

impl SynFloods {
    pub fn new(config: SynFloodConfig) -> Self {
        Self {
            config,
            listeners: HashMap::new(),
        }
    }

    /// One interval of `elapsed`: the listeners (their request sockets and
    /// drops) and the SYN-ACKs retransmitted per port. `sources(port)`: the
    /// peers of the port's request sockets now (asked only for a record).
    pub fn update(
        &mut self,
        listeners: &[ListenerFigures],
        synack_retrans: &HashMap<u16, u64>,
        elapsed: Duration,
        stamp: &Stamp<'_>,
        mut sources: impl FnMut(u16) -> HashMap<IpAddr, u32>,
    ) -> Vec<SynFloodAlert> {
        let c = self.config;
        let seconds = elapsed.as_secs_f64();
        if !c.enabled || seconds <= 0.0 {
            return Vec::new();
        }
        // SO_REUSEPORT siblings: one key; their drops add up.
        let mut now: HashMap<(IpAddr, u16), (u32, u64)> = HashMap::new();
        for l in listeners {
            let e = now.entry((l.addr, l.port)).or_default();
            e.0 = e.0.max(l.syn_backlog);
            e.1 += u64::from(l.drops);
        }
        let mut out = Vec::new();
        for (&(addr, port), &(syn_recv, drops)) in &now {
            let synack = synack_retrans.get(&port).copied().unwrap_or(0) as f64 / seconds;
            let drops = drops as f64 / seconds;
            let figures = [f64::from(syn_recv), synack, drops];
            let state = self
                .listeners
                .entry((addr, port))
                .or_insert_with(|| FloodState {
                    raising: Raising::new(Thresholds {
                        warn: 1.0,
                        crit: c.critical,
                        clear: c.clear,
                    }),
                    means: [0.0; 3],
                    watched: Duration::ZERO,
                });
            state.watched += elapsed;
            // Each figure against its warning threshold (the absolute one,
            // or the baseline's multiple if higher): 1.0 is a warning.
            let absolute = [c.syn_recv, c.synack_retrans_per_s, c.drops_per_s];
            let pressure = (0..3)
                .map(|i| figures[i] / absolute[i].max(c.baseline * state.means[i]))
                .fold(0.0, f64::max);
            let changed = state.raising.update(pressure, stamp.time);
            // The baseline learns while nothing alerts (see ConnSpikes): a
            // flood never becomes the normal; a listener that grew busy
            // while netconn watched has a higher bar.
            if state.raising.level() == Level::Clear {
                for (mean, figure) in state.means.iter_mut().zip(figures) {
                    learn(mean, figure, seconds, c.window, state.watched);
                }
            }
            let Some((level, since)) = changed else {
                continue;
            };
            let top_sources = if level == Level::Clear {
                Vec::new()
            } else {
                top(sources(port))
            };
            out.push(flood_record(
                stamp,
                level,
                (addr, port),
                figures,
                state,
                &c,
                top_sources,
                since,
            ));
        }
        // A listener that went while alerting clears.
        let gone: Vec<(IpAddr, u16)> = self
            .listeners
            .keys()
            .filter(|k| !now.contains_key(k))
            .copied()
            .collect();
        for k in gone {
            let mut state = self.listeners.remove(&k).expect("listed");
            if let Some((level, since)) = state.raising.update(0.0, stamp.time) {
                out.push(flood_record(
                    stamp,
                    level,
                    k,
                    [0.0; 3],
                    &state,
                    &c,
                    Vec::new(),
                    since,
                ));
            }
        }
        out
    }
}

/// A `syn_flood` record of a listener's figures now.
#[allow(clippy::too_many_arguments)]
fn flood_record(
    stamp: &Stamp<'_>,
    level: Level,
    (addr, port): (IpAddr, u16),
    figures: [f64; 3],
    state: &FloodState,
    c: &SynFloodConfig,
    top_sources: Vec<Peer>,
    since: String,
) -> SynFloodAlert {
    SynFloodAlert {
        head: stamp.head(Kind::SynFlood, level),
        addr,
        port,
        syn_recv: figures[0] as u32,
        synack_retrans_per_s: round(figures[1]),
        drops_per_s: round(figures[2]),
        thresholds: SynFloodThresholds {
            syn_recv: c.syn_recv,
            synack_retrans_per_s: c.synack_retrans_per_s,
            drops_per_s: c.drops_per_s,
            critical: c.critical,
            clear: c.clear,
            baseline: c.baseline,
        },
        baseline: FloodFigures {
            syn_recv: round(state.means[0]),
            synack_retrans_per_s: round(state.means[1]),
            drops_per_s: round(state.means[2]),
        },
        top_sources,
        since,
    }
}
