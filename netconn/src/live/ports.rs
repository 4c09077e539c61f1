//! Per-port groups (DataKit `netstat` semantics), live from events.
//!
//! The kernel streams every TCP event of a socket whose local port is
//! watched (a bitmap set from the groups' ports), with its local address,
//! whether or not the journal is on. This module keeps, per watched socket,
//! its series and state (memory per live connection on a watched port,
//! none for others), so a series count moves with each event. At a resync
//! the sockets are rebuilt from the dump and the journal by the rule in
//! [`crate::model::merge`] (a socket the journal mentions is taken in its state at
//! the flip), then the new epoch's events are applied in order.
//!
//! A connecting socket gets its port after its `CLOSE -> SYN_SENT` event,
//! so an outbound connection whose ephemeral port is watched is counted
//! from its first event that carries the port on (an entry event), or not
//! at all; time-wait and request sockets come from the same filtered dumps
//! as the global counts. Port groups count TCP (DataKit's port metrics are
//! TCP states too).

use std::collections::HashMap;
use std::net::IpAddr;

use netconn_common::{StateEvent, TcpMetrics};

use crate::config::Group;
use crate::model::merge::{
    counted_after, counted_before, dumped_state, journal_by_socket, state_at_flip,
};
use crate::model::socket::DumpedSocket;
use crate::model::socket::SocketKind;
use crate::model::state::{ConnType, ip_version};
use crate::output::figures::{PortSeries, TcpFigures, TcpStates};

/// One reported series: a group's entry, per IP version (and per local
/// address for `ports_match`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub group: usize,
    pub addr_port: String,
    pub ip_version: u8,
}

/// The groups, and which series a socket belongs to.
#[derive(Debug, Clone, Default)]
pub struct Groups(pub Vec<Group>);

impl Groups {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every port some entry names, for the kernel's bitmap.
    pub fn watched_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .0
            .iter()
            .flat_map(|g| g.entries.iter().map(|e| e.port()))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The series of a socket with this local address and port: the first
    /// group with a matching entry.
    pub fn classify(&self, addr: IpAddr, port: u16, ip_version: u8) -> Option<SeriesKey> {
        self.0.iter().enumerate().find_map(|(group, g)| {
            let entry = g.entries.iter().find(|e| e.matches(addr, port))?;
            Some(SeriesKey {
                group,
                addr_port: entry.label(addr),
                ip_version,
            })
        })
    }

    /// Series that exist before any socket does: `ports` entries (both IP
    /// versions for a bare port), so dashboards see them at zero.
    fn fixed_series(&self) -> Vec<SeriesKey> {
        let mut out = Vec::new();
        for (group, g) in self.0.iter().enumerate() {
            for e in &g.entries {
                let versions: &[u8] = match e {
                    crate::config::Entry::Port(_) => &[4, 6],
                    crate::config::Entry::AddrPort(a, _) if a.is_ipv4() => &[4],
                    crate::config::Entry::AddrPort(..) => &[6],
                    crate::config::Entry::EachAddress(_) => &[],
                };
                let unspecified = IpAddr::from([0u8; 4]);
                for v in versions {
                    out.push(SeriesKey {
                        group,
                        addr_port: e.label(unspecified),
                        ip_version: *v,
                    });
                }
            }
        }
        out
    }
}

/// Live per-series counts.
#[derive(Debug, Default)]
pub struct PortTracker {
    groups: Groups,
    series: Vec<SeriesKey>,
    index: HashMap<SeriesKey, u32>,
    /// Full sockets on watched ports: series and counted state.
    sockets: HashMap<u64, (u32, u8)>,
    full: Vec<[i64; 16]>,
    mini: Vec<[i64; 16]>,
    /// UDP sockets bound to a series' port, from the last UDP dump.
    udp: Vec<i64>,
}

impl PortTracker {
    pub fn new(groups: Groups) -> Self {
        let mut t = Self {
            groups,
            ..Default::default()
        };
        for key in t.groups.fixed_series() {
            t.series_index(key);
        }
        t
    }

    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    fn series_index(&mut self, key: SeriesKey) -> u32 {
        if let Some(i) = self.index.get(&key) {
            return *i;
        }
        let i = self.series.len() as u32;
        self.series.push(key.clone());
        self.index.insert(key, i);
        self.full.push([0; 16]);
        self.mini.push([0; 16]);
        self.udp.push(0);
        i
    }

    fn classify_dumped(&mut self, s: &DumpedSocket) -> Option<u32> {
        let key =
            self.groups
                .classify(s.local_addr, s.local_port, ip_version(s.conn_type.family()))?;
        Some(self.series_index(key))
    }

    fn classify_event(&mut self, e: &StateEvent) -> Option<u32> {
        let ct = ConnType::of(e.family, e.protocol.into())?;
        if !ct.is_tcp() || e.watched == 0 {
            return None;
        }
        let key = self.groups.classify(
            crate::model::state::ip_addr(e.family, e.laddr),
            e.lport,
            ip_version(ct.family()),
        )?;
        Some(self.series_index(key))
    }

    /// Rebuilds the sockets after a resync to `epoch` (see the module docs),
    /// then applies the epoch's events.
    pub fn rebuild(
        &mut self,
        dump: &[DumpedSocket],
        journal: &[StateEvent],
        epoch: u8,
        netns: u32,
    ) {
        self.sockets.clear();
        self.full.iter_mut().for_each(|c| *c = [0; 16]);
        self.mini.iter_mut().for_each(|c| *c = [0; 16]);
        let per_socket = journal_by_socket(journal, epoch, netns, |e| {
            u16::from(e.protocol) == netconn_common::IPPROTO_TCP
        });
        let mut seen = std::collections::HashSet::new();
        for s in dump.iter().filter(|s| s.conn_type.is_tcp()) {
            let Some(series) = self.classify_dumped(s) else {
                continue;
            };
            if s.kind != SocketKind::Full {
                self.mini[series as usize][(s.state & 15) as usize] += 1;
                continue;
            }
            let state = match per_socket.get(&s.cookie) {
                Some(events) => {
                    seen.insert(s.cookie);
                    state_at_flip(events, epoch)
                }
                None => dumped_state(s),
            };
            if let Some(state) = state {
                self.enter(s.cookie, series, state);
            }
        }
        // Sockets the dump missed: counted by where their events put them.
        for (cookie, events) in per_socket.iter().filter(|(c, _)| !seen.contains(*c)) {
            let Some(state) = state_at_flip(events, epoch) else {
                continue;
            };
            let Some(series) = events.iter().rev().find_map(|e| self.classify_event(e)) else {
                continue;
            };
            self.enter(*cookie, series, state);
        }
        for e in journal
            .iter()
            .filter(|e| e.epoch == epoch && e.netns == netns)
        {
            self.apply(e);
        }
        self.set_udp(dump);
    }

    fn enter(&mut self, cookie: u64, series: u32, state: u8) {
        self.sockets.insert(cookie, (series, state));
        self.full[series as usize][(state & 15) as usize] += 1;
    }

    /// One streamed event of the current epoch.
    pub fn apply(&mut self, e: &StateEvent) {
        if u16::from(e.protocol) != netconn_common::IPPROTO_TCP {
            return;
        }
        match self.sockets.get(&e.cookie).copied() {
            Some((series, state)) => {
                self.full[series as usize][(state & 15) as usize] -= 1;
                match counted_after(e.newstate) {
                    Some(s) => {
                        self.sockets.insert(e.cookie, (series, s));
                        self.full[series as usize][(s & 15) as usize] += 1;
                    }
                    None => {
                        self.sockets.remove(&e.cookie);
                    }
                }
            }
            // A socket entering the tables on a watched port.
            None if counted_before(e.oldstate, e.newstate).is_none() => {
                if let (Some(s), Some(series)) = (counted_after(e.newstate), self.classify_event(e))
                {
                    self.enter(e.cookie, series, s);
                }
            }
            None => {}
        }
    }

    /// Replaces the time-wait and request sockets from a filtered dump.
    pub fn set_mini(&mut self, mini: &[DumpedSocket]) {
        self.mini.iter_mut().for_each(|c| *c = [0; 16]);
        for s in mini.iter().filter(|s| s.conn_type.is_tcp()) {
            if let Some(series) = self.classify_dumped(s) {
                self.mini[series as usize][(s.state & 15) as usize] += 1;
            }
        }
    }

    /// Replaces the UDP sockets from a dump of the UDP tables (DataKit's
    /// `udp_socket`: sockets whose local port a group names).
    pub fn set_udp(&mut self, udp: &[DumpedSocket]) {
        self.udp.iter_mut().for_each(|n| *n = 0);
        for s in udp.iter().filter(|s| !s.conn_type.is_tcp()) {
            if let Some(series) = self.classify_dumped(s) {
                self.udp[series as usize] += 1;
            }
        }
    }

    /// Sockets tracked one by one (memory).
    pub fn tracked_sockets(&self) -> usize {
        self.sockets.len()
    }

    /// The series, in order; with `metrics` (of `watch`), each series gets
    /// its TCP figures (zeros when it has none).
    pub fn series(&self, metrics: Option<&HashMap<SeriesKey, TcpMetrics>>) -> Vec<PortSeries> {
        let mut order: Vec<usize> = (0..self.series.len()).collect();
        order.sort_by(|a, b| self.series[*a].cmp(&self.series[*b]));
        order
            .into_iter()
            .map(|i| {
                let key = &self.series[i];
                let mut states = TcpStates::default();
                for code in 1..=11 {
                    states.0[code] = self.full[i][code] + self.mini[i][code];
                }
                PortSeries {
                    addr_port: key.addr_port.clone(),
                    ip_version: key.ip_version,
                    tags: self.groups.0[key.group].tags.clone(),
                    states,
                    udp_socket: self.udp[i],
                    tcp_metrics: metrics
                        .map(|m| TcpFigures::of(&m.get(key).copied().unwrap_or_default())),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Entry, Tags, parse_entry};
    use crate::model::state::{
        TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN, TCP_SYN_RECV, TCP_TIME_WAIT,
    };
    use netconn_common::AF_INET;

    const NETNS: u32 = 1;

    fn groups() -> Groups {
        Groups(vec![
            Group {
                entries: vec![
                    Entry::Port(80),
                    parse_entry("127.0.0.1:443", false).unwrap(),
                ],
                tags: [("service".to_owned(), "http".to_owned())].into(),
            },
            Group {
                entries: vec![parse_entry("*:443", true).unwrap()],
                tags: Tags::new(),
            },
        ])
    }

    fn ev(cookie: u64, old: u8, new: u8, addr: [u8; 4], port: u16, epoch: u8) -> StateEvent {
        let mut laddr = [0; 16];
        laddr[..4].copy_from_slice(&addr);
        StateEvent {
            cookie,
            netns: NETNS,
            family: AF_INET,
            protocol: 6,
            lport: port,
            laddr,
            watched: 1,
            oldstate: old,
            newstate: new,
            epoch,
            ..Default::default()
        }
    }

    fn sock(cookie: u64, state: u8, addr: &str, port: u16, kind: SocketKind) -> DumpedSocket {
        DumpedSocket {
            kind,
            cookie,
            local_port: port,
            local_addr: addr.parse().unwrap(),
            ..DumpedSocket::test(ConnType::Tcp, state)
        }
    }

    fn state(t: &PortTracker, addr_port: &str, name: &str) -> i64 {
        let j = serde_json::to_value(t.series(None)).unwrap();
        j.as_array()
            .unwrap()
            .iter()
            .filter(|s| s["addr_port"] == addr_port && s["ip_version"] == 4)
            .map(|s| s["states"][name].as_i64().unwrap())
            .sum()
    }

    #[test]
    fn first_matching_group_wins_and_ports_match_splits_by_address() {
        let g = groups();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(g.classify(lo, 443, 4).unwrap().group, 0);
        let k = g.classify(other, 443, 4).unwrap();
        assert_eq!((k.group, k.addr_port.as_str()), (1, "10.0.0.1:443"));
        assert_eq!(g.classify(other, 80, 4).unwrap().addr_port, "80");
        assert!(g.classify(lo, 8080, 4).is_none());
        assert_eq!(g.watched_ports(), [80, 443]);
    }

    #[test]
    fn events_move_sockets_between_states_and_out() {
        let mut t = PortTracker::new(groups());
        let lo = [127, 0, 0, 1];
        t.rebuild(
            &[sock(1, TCP_LISTEN, "0.0.0.0", 80, SocketKind::Full)],
            &[],
            1,
            NETNS,
        );
        assert_eq!(state(&t, "80", "LISTEN"), 1);
        // An accepted child: LISTEN -> SYN_RECV (entry), then ESTABLISHED.
        t.apply(&ev(2, TCP_LISTEN, TCP_SYN_RECV, lo, 80, 1));
        t.apply(&ev(2, TCP_SYN_RECV, TCP_ESTABLISHED, lo, 80, 1));
        assert_eq!(state(&t, "80", "ESTABLISHED"), 1);
        assert_eq!(state(&t, "80", "SYN_RECV"), 0);
        t.apply(&ev(2, TCP_ESTABLISHED, TCP_CLOSE, lo, 80, 1));
        assert_eq!(state(&t, "80", "ESTABLISHED"), 0);
        assert_eq!(t.tracked_sockets(), 1);
        // An unknown socket leaving is ignored, never negative.
        t.apply(&ev(9, TCP_ESTABLISHED, TCP_CLOSE, lo, 80, 1));
        assert_eq!(state(&t, "80", "ESTABLISHED"), 0);
    }

    #[test]
    fn rebuild_takes_journal_sockets_at_the_flip() {
        let mut t = PortTracker::new(groups());
        let lo = [127, 0, 0, 1];
        // Socket 5 was ESTABLISHED in the dump but closed in epoch 1 (the
        // new one): counted at the flip, then the epoch's event applies.
        let journal = [
            ev(5, TCP_ESTABLISHED, TCP_CLOSE, lo, 443, 1),
            // Socket 6 entered in epoch 0, after the dump looked.
            ev(6, TCP_LISTEN, TCP_SYN_RECV, [10, 0, 0, 1], 443, 0),
            ev(6, TCP_SYN_RECV, TCP_ESTABLISHED, [10, 0, 0, 1], 443, 0),
        ];
        let dump = [
            sock(5, TCP_ESTABLISHED, "127.0.0.1", 443, SocketKind::Full),
            sock(7, TCP_TIME_WAIT, "127.0.0.1", 443, SocketKind::TimeWait),
            sock(8, TCP_ESTABLISHED, "127.0.0.1", 22, SocketKind::Full),
        ];
        t.rebuild(&dump, &journal, 1, NETNS);
        assert_eq!(state(&t, "127.0.0.1:443", "ESTABLISHED"), 0);
        assert_eq!(state(&t, "127.0.0.1:443", "TIME_WAIT"), 1);
        assert_eq!(state(&t, "10.0.0.1:443", "ESTABLISHED"), 1);
        assert_eq!(t.tracked_sockets(), 1);
        let j = serde_json::to_value(t.series(None)).unwrap();
        let first = &j.as_array().unwrap()[0];
        assert_eq!(first["tags"]["service"], "http");
        assert_eq!(first["addr_port"], "127.0.0.1:443");
    }
}
