//! TCP metrics in counts records: RTT distribution, retransmitted segments,
//! SYN-ACK retransmissions and resets per interval (added up in the kernel,
//! see `netconn-ebpf/src/metrics.rs`), and the namespace's listen queue
//! overflows and drops (`/proc/net/netstat`) as rates.
//!
//! # Intervals without loss
//!
//! The programs add to one of two slots, the one [`Control::metrics_epoch`]
//! names. Each interval userspace flips the epoch and reads the slot it
//! left. A program that read the old epoch just before the flip may still
//! add to that slot after the read, so the slot is neither cleared nor
//! reused at once: at the next interval it is read again (what arrived late
//! joins that interval's figures), cleared, and only then made current.
//! Counters are therefore exact; a late sample can only widen the next
//! interval's min/max.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use netconn_common::{DIRECTION_INBOUND, MetricsKey, TcpMetrics};

use crate::output::figures::{IntervalFigures, Lifecycle, ListenFigures, TcpFigures, TopPort};

use crate::ebpf::probe::{Probe, ProbeError};
use crate::live::ports::{Groups, SeriesKey};

/// One interval's figures: the namespace's and per service port (keys with
/// `epoch` 0).
#[derive(Debug, Clone, Default)]
pub struct Interval {
    pub total: TcpMetrics,
    pub ports: HashMap<MetricsKey, TcpMetrics>,
    /// (`--all-namespaces`) each namespace's figures.
    pub by_netns: HashMap<u32, TcpMetrics>,
    /// Connections established per peer (keys with `epoch` 0; see
    /// `netconn_common::MAP_PEERS`), and those the kernel's map had no
    /// room for.
    pub peers: HashMap<MetricsKey, u32>,
    pub peers_lost: u64,
}

impl Interval {
    /// (`--all-namespaces`) one interval per namespace: its figures and
    /// its ports.
    pub fn split(self) -> HashMap<u32, Self> {
        let mut out: HashMap<u32, Self> = HashMap::new();
        for (netns, total) in self.by_netns {
            out.entry(netns).or_default().total = total;
        }
        for (key, m) in self.ports {
            out.entry(key.netns).or_default().ports.insert(key, m);
        }
        for (key, n) in self.peers {
            out.entry(key.netns).or_default().peers.insert(key, n);
        }
        out
    }

    fn add_peer(&mut self, mut key: MetricsKey, n: u32) {
        key.epoch = 0;
        *self.peers.entry(key).or_default() += n;
    }

    /// Inbound connections per remote address on local port `port`.
    pub fn peers_of_port(&self, port: u16) -> HashMap<IpAddr, u32> {
        let mut out = HashMap::new();
        for (k, n) in &self.peers {
            if k.direction == DIRECTION_INBOUND && k.port == port {
                let addr = crate::model::state::ip_addr(u16::from(k.family), k.addr);
                *out.entry(addr).or_default() += n;
            }
        }
        out
    }

    fn add_port(&mut self, mut key: MetricsKey, m: &TcpMetrics) {
        key.epoch = 0;
        self.ports.entry(key).or_default().merge(m);
    }

    /// Figures per port group series: a series gets the inbound ports
    /// (listeners and the connections they accepted) its group matches.
    pub fn by_series(&self, groups: &Groups) -> HashMap<SeriesKey, TcpMetrics> {
        let mut out: HashMap<SeriesKey, TcpMetrics> = HashMap::new();
        for (key, m) in self.ports.iter() {
            if key.direction != DIRECTION_INBOUND {
                continue;
            }
            let (addr, version) = key_addr(key);
            if let Some(series) = groups.classify(addr, key.port, version) {
                out.entry(series).or_default().merge(m);
            }
        }
        out
    }

    /// The `top` busiest service ports (by RTT samples, then
    /// retransmissions), any address and IP version together.
    pub fn top_ports(&self, top: usize) -> Vec<(u8, u16, TcpMetrics)> {
        let mut by_port: HashMap<(u8, u16), TcpMetrics> = HashMap::new();
        for (key, m) in self.ports.iter() {
            by_port
                .entry((key.direction, key.port))
                .or_default()
                .merge(m);
        }
        let mut ports: Vec<(u8, u16, TcpMetrics)> =
            by_port.into_iter().map(|((d, p), m)| (d, p, m)).collect();
        ports.sort_by(|a, b| {
            (b.2.samples, b.2.retrans, a.0, a.1).cmp(&(a.2.samples, a.2.retrans, b.0, b.1))
        });
        ports.truncate(top);
        ports
    }
}

/// The local address of an inbound key and its IP version.
fn key_addr(key: &MetricsKey) -> (IpAddr, u8) {
    let family = u16::from(key.family);
    let version = crate::model::state::ip_version(family);
    (crate::model::state::ip_addr(family, key.addr), version)
}

/// Reads the kernel's slots interval by interval (see the module docs).
#[derive(Debug, Default)]
pub struct Reader {
    /// The slot the programs add to.
    active: u8,
    /// What the slot left at the last flip held when it was read.
    left_total: TcpMetrics,
    left_ports: HashMap<MetricsKey, TcpMetrics>,
    left_ns: HashMap<MetricsKey, TcpMetrics>,
    left_peers: HashMap<MetricsKey, u32>,
}

impl Reader {
    /// The figures since the previous call (since load, the first time).
    pub fn next(&mut self, probe: &mut Probe) -> Result<Interval, ProbeError> {
        let old = self.active ^ 1;
        let maps = probe.metrics();
        // What reached the slot left last time after it was read; then it
        // is cleared, while nothing adds to it.
        let mut interval = Interval {
            total: maps.total(old)?.since(&self.left_total),
            ..Interval::default()
        };
        for (key, m) in maps.ports(old)? {
            let late = match self.left_ports.get(&key) {
                Some(before) => m.since(before),
                None => m,
            };
            if !late.is_empty() {
                interval.add_port(key, &late);
            }
            maps.remove_port(&key)?;
        }
        for (key, m) in maps.namespaces(old)? {
            let late = match self.left_ns.get(&key) {
                Some(before) => m.since(before),
                None => m,
            };
            if !late.is_empty() {
                interval.by_netns.entry(key.netns).or_default().merge(&late);
            }
            maps.remove_namespace(&key)?;
        }
        for (key, n) in maps.peers(old)? {
            let late = n.saturating_sub(self.left_peers.get(&key).copied().unwrap_or(0));
            if late > 0 {
                interval.add_peer(key, late);
            }
            maps.remove_peer(&key)?;
        }
        interval.peers_lost += maps.take_peers_lost(old)?;
        maps.zero_total(old)?;
        probe.flip_metrics(old)?;
        // The slot just left.
        let maps = probe.metrics();
        self.left_total = maps.total(self.active)?;
        interval.total.merge(&self.left_total);
        self.left_ports = maps.ports(self.active)?.into_iter().collect();
        for (key, m) in self.left_ports.iter() {
            interval.add_port(*key, m);
        }
        self.left_peers = maps.peers(self.active)?.into_iter().collect();
        for (key, n) in self.left_peers.iter() {
            interval.add_peer(*key, *n);
        }
        self.left_ns = maps.namespaces(self.active)?.into_iter().collect();
        for (key, m) in self.left_ns.iter() {
            interval.by_netns.entry(key.netns).or_default().merge(m);
        }
        self.active = old;
        Ok(interval)
    }
}

fn direction_name(d: u8) -> &'static str {
    use crate::model::socket::Direction;
    let direction = if d == DIRECTION_INBOUND {
        Direction::Inbound
    } else {
        Direction::Outbound
    };
    direction.name()
}

/// TcpExt ListenOverflows and ListenDrops of the namespace, cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenCounters {
    pub overflows: u64,
    pub drops: u64,
}

impl ListenCounters {
    pub fn parse(netstat: &str) -> Option<Self> {
        let get = |k| crate::tables::totals::table_field(netstat, "TcpExt:", k);
        Some(Self {
            overflows: get("ListenOverflows")?.try_into().ok()?,
            drops: get("ListenDrops")?.try_into().ok()?,
        })
    }

    /// The calling thread's namespace's.
    pub fn read() -> std::io::Result<Self> {
        let text = std::fs::read_to_string("/proc/thread-self/net/netstat")?;
        Self::parse(&text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no TcpExt ListenOverflows/ListenDrops in /proc/net/netstat",
            )
        })
    }
}

/// The listen-queue part of the metrics, interval by interval.
#[derive(Debug)]
pub struct Listen {
    last: ListenCounters,
    at: Instant,
}

impl Listen {
    pub fn start() -> std::io::Result<Self> {
        Ok(Self {
            last: ListenCounters::read()?,
            at: Instant::now(),
        })
    }

    /// Overflows and drops since the last call, and their rates per
    /// second.
    pub fn interval(&mut self) -> std::io::Result<ListenFigures> {
        self.interval_with(ListenCounters::read()?)
    }

    /// The same when the namespace received no segment since the last
    /// call: its counters cannot have moved (each overflow or drop is a
    /// segment received), so they are not read.
    pub fn interval_unmoved(&mut self) -> ListenFigures {
        let last = self.last;
        self.interval_with(last)
            .expect("counters given, nothing read")
    }

    fn interval_with(&mut self, now: ListenCounters) -> std::io::Result<ListenFigures> {
        let at = Instant::now();
        let secs = at.duration_since(self.at).as_secs_f64();
        let overflows = now.overflows.saturating_sub(self.last.overflows);
        let drops = now.drops.saturating_sub(self.last.drops);
        let rate = |n: u64| {
            if secs > 0.0 {
                (n as f64 / secs * 1000.0).round() / 1000.0
            } else {
                0.0
            }
        };
        self.last = now;
        self.at = at;
        Ok(ListenFigures {
            listen_overflows: overflows,
            listen_drops: drops,
            listen_overflows_per_s: rate(overflows),
            listen_drops_per_s: rate(drops),
        })
    }
}

/// The record's `tcp_metrics`: the namespace's figures (from the kernel,
/// with eBPF), the listen queue's, and the top service ports.
pub fn figures(
    interval: Option<&Interval>,
    listen: &mut Listen,
    top: usize,
) -> std::io::Result<IntervalFigures> {
    let counters = listen.interval()?;
    Ok(figures_with(interval, counters, top))
}

/// The same with the listen-queue figures given.
pub fn figures_with(
    interval: Option<&Interval>,
    listen: ListenFigures,
    top: usize,
) -> IntervalFigures {
    IntervalFigures {
        total: interval.map(|i| TcpFigures::of(&i.total)),
        lifecycle: interval.map(|i| Lifecycle::of(&i.total)),
        listen,
        top_ports: interval.map(|i| {
            i.top_ports(top)
                .into_iter()
                .map(|(d, port, m)| TopPort {
                    direction: direction_name(d),
                    port,
                    figures: TcpFigures::of(&m),
                })
                .collect()
        }),
        peers_untracked: interval.map(|i| i.peers_lost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::figures::tests::samples;
    use netconn_common::{AF_INET, DIRECTION_OUTBOUND};

    #[test]
    fn late_figures_are_differences_and_a_remade_entry_is_all_new() {
        let before = samples(&[100, 200]);
        let mut after = before;
        after.merge(&samples(&[50]));
        after.retrans += 3;
        let late = after.since(&before);
        assert_eq!((late.samples, late.retrans, late.sum_us), (1, 3, 50));
        assert_eq!(late.hist.iter().sum::<u32>(), 1);
        // An entry evicted and made anew reads lower than before: what it
        // holds is all new.
        let remade = samples(&[1]);
        assert_eq!(remade.since(&before), remade);
    }

    fn key(direction: u8, port: u16, addr: [u8; 4]) -> MetricsKey {
        let mut k = MetricsKey {
            direction,
            port,
            family: AF_INET as u8,
            ..Default::default()
        };
        if direction == DIRECTION_INBOUND {
            k.addr[..4].copy_from_slice(&addr);
        }
        k
    }

    #[test]
    fn top_ports_merge_addresses_and_rank_by_samples() {
        let mut i = Interval::default();
        i.add_port(
            key(DIRECTION_INBOUND, 80, [127, 0, 0, 1]),
            &samples(&[1, 2]),
        );
        i.add_port(key(DIRECTION_INBOUND, 80, [10, 0, 0, 1]), &samples(&[3]));
        i.add_port(key(DIRECTION_OUTBOUND, 443, [0; 4]), &samples(&[4, 5]));
        i.add_port(key(DIRECTION_OUTBOUND, 22, [0; 4]), &samples(&[6]));
        let top = i.top_ports(2);
        assert_eq!(
            top.iter()
                .map(|(d, p, m)| (*d, *p, m.samples))
                .collect::<Vec<_>>(),
            [(DIRECTION_INBOUND, 80, 3), (DIRECTION_OUTBOUND, 443, 2)]
        );
        assert!(i.top_ports(0).is_empty());
    }

    #[test]
    fn series_get_the_inbound_ports_their_group_matches() {
        use crate::config::{Entry, Group, parse_entry};
        let groups = Groups(vec![Group {
            entries: vec![
                Entry::Port(80),
                parse_entry("127.0.0.1:443", false).unwrap(),
            ],
            tags: Default::default(),
        }]);
        let mut i = Interval::default();
        i.add_port(key(DIRECTION_INBOUND, 80, [10, 0, 0, 1]), &samples(&[1]));
        i.add_port(
            key(DIRECTION_INBOUND, 443, [127, 0, 0, 1]),
            &samples(&[2, 3]),
        );
        i.add_port(key(DIRECTION_INBOUND, 443, [10, 0, 0, 1]), &samples(&[4]));
        i.add_port(key(DIRECTION_OUTBOUND, 80, [0; 4]), &samples(&[5]));
        let s = i.by_series(&groups);
        let n = |label: &str| {
            s.iter()
                .find(|(k, _)| k.addr_port == label)
                .map(|(_, m)| m.samples)
        };
        assert_eq!(n("80"), Some(1), "{s:?}");
        assert_eq!(n("127.0.0.1:443"), Some(2));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn listen_counters_parse_tcpext() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 7 9\nIpExt: A\nIpExt: 1\n";
        assert_eq!(
            ListenCounters::parse(text),
            Some(ListenCounters {
                overflows: 7,
                drops: 9
            })
        );
        assert_eq!(ListenCounters::parse("IpExt: A\nIpExt: 1\n"), None);
    }
}
