//! Ephemeral ports per destination, kept live: the programs count the
//! connected sockets as they establish and close (see
//! [`netconn_common::ephemeral`]); userspace adds the sockets connected
//! before the programs came, claimed from the first dump, and the
//! time-wait sockets, which hold their port for a minute after the close
//! and are read from the mini-socket dumps the tracker takes anyway. No
//! table is walked for this figure.
//!
//! A socket holds an ephemeral port towards a destination when its local
//! port lies in `ip_local_port_range` and it is not a listener's (an
//! accepted socket has its listener's port). Connects still in SYN_SENT are
//! not counted: the kernel gives them their port after their only event.

use std::collections::{HashMap, HashSet};

use netconn_common::{Destination, StateEvent, TCP_CLOSE};

use crate::ebpf::ProbeError;
use crate::ebpf::ephemeral::{Claim, EphemeralMaps};
use crate::model::socket::{DumpedSocket, SocketKind};
use crate::model::state::{TCP_LISTEN, TCP_TIME_WAIT, ip_addr};
use crate::output::figures::{DestinationFigures, EphemeralFigures, OtherDestinations};
use crate::tables::port_range::PortRange;

/// Destinations an interval record names.
pub const TOP_DESTINATIONS: usize = 10;
/// Readings between two looks at which claims are left.
const CHECK_CLAIMS_EVERY: u32 = 10;
/// Readings between two generation flips (see [`EphemeralPorts::read`]).
const FLIP_EVERY: u32 = 60;

/// The 16 bytes the programs keep an address in.
fn addr_bytes(addr: std::net::IpAddr) -> [u8; 16] {
    match addr {
        std::net::IpAddr::V4(a) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        std::net::IpAddr::V6(a) => a.octets(),
    }
}

/// Where a dumped socket is connected to, as the programs key it.
pub fn destination(s: &DumpedSocket, netns: u32) -> Destination {
    Destination {
        netns,
        family: s.conn_type.family(),
        rport: s.remote_port,
        laddr: addr_bytes(s.local_addr),
        raddr: addr_bytes(s.remote_addr),
    }
}

/// Whether a dumped TCP socket holds a port of `range` towards its peer:
/// connected (established or closing; time-wait sockets too) and on a
/// local port in the range that no listener has.
pub fn holds_port(s: &DumpedSocket, range: &PortRange, listening: &HashSet<u16>) -> bool {
    let connected = match s.kind {
        SocketKind::TimeWait => true,
        SocketKind::Request => false,
        SocketKind::Full => {
            s.conn_type.is_tcp() && netconn_common::ephemeral_leaves(s.state, TCP_CLOSE)
        }
    };
    connected && range.contains(s.local_port) && !listening.contains(&s.local_port)
}

/// The ports of the listening sockets of a dump.
pub fn listening_ports(dump: &[DumpedSocket]) -> HashSet<u16> {
    dump.iter()
        .filter(|s| s.conn_type.is_tcp() && s.state == TCP_LISTEN)
        .map(|s| s.local_port)
        .collect()
}

/// Every destination's figures, most sockets first, from the sockets
/// holding a port per destination (every state) and those of them in
/// TIME_WAIT.
pub fn destinations(
    range: &PortRange,
    held: &HashMap<Destination, i64>,
    time_wait: &HashMap<Destination, u64>,
) -> Vec<DestinationFigures> {
    let mut all: Vec<DestinationFigures> = held
        .iter()
        .filter_map(|(d, n)| {
            let tw = time_wait.get(d).copied().unwrap_or(0);
            let in_use = (*n).max(0) as u64;
            (in_use > 0).then(|| DestinationFigures {
                laddr: ip_addr(d.family, d.laddr),
                raddr: ip_addr(d.family, d.raddr),
                rport: d.rport,
                in_use,
                time_wait: tw,
                utilization: utilization(in_use, range.size),
            })
        })
        .collect();
    all.sort_by(|a, b| {
        b.in_use
            .cmp(&a.in_use)
            .then(a.raddr.cmp(&b.raddr))
            .then(a.rport.cmp(&b.rport))
            .then(a.laddr.cmp(&b.laddr))
    });
    all
}

fn utilization(in_use: u64, size: u32) -> f64 {
    if size == 0 {
        return 0.0;
    }
    (in_use as f64 / f64::from(size) * 10_000.0).round() / 10_000.0
}

/// The record's figures: the first `top` destinations and the rest summed.
pub fn figures(
    range: &PortRange,
    all: &[DestinationFigures],
    top: usize,
    untracked: Option<u64>,
) -> EphemeralFigures {
    let rest = all.get(top..).unwrap_or_default();
    EphemeralFigures {
        range: [range.low, range.high],
        size: range.size,
        top: all.iter().take(top).cloned().collect(),
        others: OtherDestinations {
            destinations: rest.len() as u64,
            in_use: rest.iter().map(|d| d.in_use).sum(),
        },
        untracked,
    }
}

/// A poll's figures: everything from one dump of the namespace.
pub fn from_dump(dump: &[DumpedSocket], range: &PortRange) -> Vec<DestinationFigures> {
    let listening = listening_ports(dump);
    let (mut held, mut time_wait) = (HashMap::new(), HashMap::new());
    for s in dump.iter().filter(|s| holds_port(s, range, &listening)) {
        *held.entry(destination(s, 0)).or_insert(0) += 1;
        if s.kind == SocketKind::TimeWait && s.state == TCP_TIME_WAIT {
            *time_wait.entry(destination(s, 0)).or_insert(0) += 1;
        }
    }
    destinations(range, &held, &time_wait)
}

#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("cannot read the ephemeral port range: {0}")]
    Range(#[source] std::io::Error),
}

/// The live count of one namespace (`watch` with eBPF).
pub struct EphemeralPorts {
    maps: EphemeralMaps,
    netns: u32,
    range: PortRange,
    /// Sockets userspace claimed, by cookie (their destinations are in
    /// the claims themselves).
    claimed: HashSet<u64>,
    /// Userspace's part of each count: its claims, and the programs'
    /// counts of the generations folded in.
    base: HashMap<Destination, i64>,
    /// Time-wait mini-sockets on a port of the range and of no listener,
    /// from the last dump, per destination: all of them (an orphaned
    /// FIN_WAIT2 is one too) and those in TIME_WAIT. Kept summed: under
    /// churn they are tens of thousands.
    minis: HashMap<Destination, (i64, u64)>,
    /// The listening ports at the last reading.
    listening: HashSet<u16>,
    /// Claims a full table refused.
    refused: u64,
    readings: u32,
    /// The first dump was adopted: later ones claim nothing.
    adopted: bool,
}

impl EphemeralPorts {
    /// Tells the programs the range: they count from now on (the sock_ops
    /// program counts connects and marks the sockets, see
    /// [`netconn_common::ephemeral`]).
    pub fn start(maps: EphemeralMaps, netns: u32) -> Result<Self, EphemeralError> {
        let range = PortRange::read().map_err(EphemeralError::Range)?;
        let mut e = Self {
            maps,
            netns,
            range,
            claimed: HashSet::new(),
            base: HashMap::new(),
            minis: HashMap::new(),
            listening: HashSet::new(),
            refused: 0,
            readings: 0,
            adopted: false,
        };
        // Claims from the start: one made for a socket that closes before
        // the journal goes off is then looked up at its close.
        e.maps.set_control(netconn_common::EphemeralControl {
            low: range.low,
            high: range.high,
            window: 1,
            claims: 1,
            ..e.maps.control()
        })?;
        Ok(e)
    }

    /// The first time: claims the connected sockets of a dump the
    /// programs did not count (they connected before the programs came).
    /// Every time: gives back the claims of sockets the dump no longer
    /// lists whose close the programs did not see. Runs while the journal
    /// is on, so that [`Self::settle`] sees every socket that closed
    /// before its claim.
    pub fn adopt(&mut self, dump: &[DumpedSocket]) -> Result<(), ProbeError> {
        // Nothing claimed yet (the first dump): no set of the whole dump.
        if !self.claimed.is_empty() {
            let listed: HashSet<u64> = dump.iter().map(|s| s.cookie).collect();
            let gone: Vec<u64> = self
                .claimed
                .iter()
                .filter(|c| !listed.contains(c))
                .copied()
                .collect();
            for cookie in gone {
                self.give_back(cookie);
            }
        }
        self.listening = listening_ports(dump);
        self.set_mini(dump);
        if self.adopted {
            return Ok(());
        }
        self.adopted = true;
        let listening = &self.listening;
        // The sock_ops program notes what it counted during this dump.
        let counted: HashSet<u64> = self.maps.window().into_iter().collect();
        let wanted: Vec<(u64, Destination)> = dump
            .iter()
            .filter(|s| s.kind == SocketKind::Full && holds_port(s, &self.range, listening))
            .filter(|s| !counted.contains(&s.cookie))
            .map(|s| (s.cookie, destination(s, self.netns)))
            .collect();
        let answers = self.maps.claim_unclaimed(&wanted)?;
        for ((cookie, dest), answer) in wanted.into_iter().zip(answers) {
            match answer {
                Claim::Claimed => {
                    self.claimed.insert(cookie);
                    *self.base.entry(dest).or_insert(0) += 1;
                }
                Claim::Taken => {}
                Claim::Full => self.refused += 1,
            }
        }
        Ok(())
    }

    /// After the journal went off: gives back the claims of sockets that
    /// closed during the dump (the programs found no claim at their
    /// close); after the first dump, ends the window in which the sock_ops
    /// program claims what it counts, and drops those claims (its marks
    /// say the same from now on).
    pub fn settle(&mut self, journal: &[StateEvent]) -> Result<(), ProbeError> {
        for e in journal.iter().filter(|e| e.newstate == TCP_CLOSE) {
            if self.claimed.contains(&e.cookie) {
                self.give_back(e.cookie);
            }
        }
        let control = self.maps.control();
        if control.window == 0 {
            return Ok(());
        }
        self.maps.set_control(netconn_common::EphemeralControl {
            window: 0,
            ..control
        })?;
        // A socket the dump listed established before the sock_ops
        // program counted it (it runs right after the state changes) was
        // claimed too: its note is there now. Undo such claims.
        crate::ebpf::probe::quiesce();
        for cookie in self.maps.window() {
            if self.claimed.contains(&cookie) {
                self.give_back(cookie);
            }
        }
        self.maps.clear_window();
        // With no claim (nothing older than netconn), no close is looked up.
        self.end_lookups_when_unclaimed()
    }

    /// Forgets the claims the programs took back (at the sockets'
    /// closes); once none is left, the programs stop looking closes up.
    fn forget_taken_back(&mut self) -> Result<(), ProbeError> {
        let control = self.maps.control();
        if control.claims == 0 {
            return Ok(());
        }
        let maps = &self.maps;
        self.claimed.retain(|cookie| maps.is_claimed(*cookie));
        self.end_lookups_when_unclaimed()
    }

    /// Once userspace holds no claim, tells the programs to stop looking
    /// up the closes of unmarked sockets.
    fn end_lookups_when_unclaimed(&mut self) -> Result<(), ProbeError> {
        if !self.claimed.is_empty() {
            return Ok(());
        }
        self.maps.set_control(netconn_common::EphemeralControl {
            claims: 0,
            ..self.maps.control()
        })
    }

    /// Removes a claim; uncounts it if the programs had not.
    fn give_back(&mut self, cookie: u64) {
        if !self.claimed.remove(&cookie) {
            return;
        }
        if let Some(dest) = self.maps.unclaim(cookie) {
            *self.base.entry(dest).or_insert(0) -= 1;
        }
    }

    /// Takes the time-wait sockets of a dump (a mini-socket dump, or a
    /// snapshot's).
    pub fn set_mini(&mut self, dump: &[DumpedSocket]) {
        self.minis.clear();
        for s in dump {
            if s.kind != SocketKind::TimeWait
                || !self.range.contains(s.local_port)
                || self.listening.contains(&s.local_port)
            {
                continue;
            }
            let e = self.minis.entry(destination(s, self.netns)).or_default();
            e.0 += 1;
            e.1 += u64::from(s.state == TCP_TIME_WAIT);
        }
        self.minis.shrink_to_fit();
    }

    /// Every destination now, most sockets first. `listening`: the ports
    /// listeners have now (their accepted sockets' time-wait sockets are
    /// not ephemeral; the next mini-socket dump leaves them out). Every
    /// [`FLIP_EVERY`] readings the programs move to the other generation
    /// and the one they left is folded into the base, so destinations no
    /// longer used leave the map.
    pub fn read(
        &mut self,
        listening: &HashSet<u16>,
    ) -> Result<(PortRange, Vec<DestinationFigures>), EphemeralError> {
        self.follow_range()?;
        self.readings = self.readings.wrapping_add(1);
        if self.readings.is_multiple_of(CHECK_CLAIMS_EVERY) {
            self.forget_taken_back()?;
        }
        let mut entries = self.maps.counts();
        let crowded = entries.len() as u32 > netconn_common::EPHEMERAL_MAX_DESTINATIONS / 4;
        if crowded || self.readings.is_multiple_of(FLIP_EVERY) {
            let control = self.maps.control();
            let old = control.generation;
            self.maps.set_control(netconn_common::EphemeralControl {
                generation: old ^ 1,
                ..control
            })?;
            crate::ebpf::probe::quiesce();
            for (key, n) in self.maps.counts() {
                if key.generation == old {
                    *self.base.entry(key.dest).or_insert(0) += n;
                    self.maps.remove_count(&key)?;
                }
            }
            self.base.retain(|_, n| *n != 0);
            entries = self.maps.counts();
        }
        let mut held = self.base.clone();
        for (key, n) in entries {
            *held.entry(key.dest).or_insert(0) += n;
        }
        self.listening.clone_from(listening);
        let mut time_wait = HashMap::new();
        for (dest, (all, tw)) in &self.minis {
            *held.entry(*dest).or_insert(0) += all;
            time_wait.insert(*dest, *tw);
        }
        Ok((self.range, destinations(&self.range, &held, &time_wait)))
    }

    /// Sockets left out of the counts: refused by a full table.
    pub fn untracked(&self) -> Result<u64, ProbeError> {
        Ok(self.maps.untracked()? + self.refused)
    }

    /// Re-reads the range; when it moved, the programs look up every
    /// close from then on (a socket counted under the old range may lie
    /// outside the new one), then count by the new range.
    fn follow_range(&mut self) -> Result<(), EphemeralError> {
        let range = PortRange::read().map_err(EphemeralError::Range)?;
        if range == self.range {
            return Ok(());
        }
        let control = self.maps.control();
        if (range.low, range.high) != (control.low, control.high) {
            let control = netconn_common::EphemeralControl {
                any_port: 1,
                ..control
            };
            self.maps.set_control(control)?;
            self.maps.set_control(netconn_common::EphemeralControl {
                low: range.low,
                high: range.high,
                ..control
            })?;
        }
        self.range = range;
        Ok(())
    }
}

/// Ephemeral ports now (see [`crate::live::ephemeral`]).
#[derive(Debug, Clone)]
pub struct EphemeralReading {
    pub range: crate::tables::port_range::PortRange,
    /// Every destination, most sockets first (for the alerts).
    pub destinations: Vec<crate::output::figures::DestinationFigures>,
    /// What the record shows: the first destinations and the rest summed.
    pub figures: crate::output::figures::EphemeralFigures,
}

impl EphemeralReading {
    /// `untracked`: sockets a full table kept out (None when polling).
    pub fn new(
        range: crate::tables::port_range::PortRange,
        destinations: Vec<crate::output::figures::DestinationFigures>,
        untracked: Option<u64>,
    ) -> Self {
        let figures = figures(&range, &destinations, TOP_DESTINATIONS, untracked);
        Self {
            range,
            destinations,
            figures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::state::{ConnType, TCP_ESTABLISHED, TCP_FIN_WAIT2, TCP_SYN_SENT};

    fn range() -> PortRange {
        PortRange {
            low: 1000,
            high: 1199,
            size: 200,
        }
    }

    fn sock(state: u8, kind: SocketKind, lport: u16, raddr: &str, rport: u16) -> DumpedSocket {
        DumpedSocket {
            kind,
            local_port: lport,
            local_addr: "10.0.0.1".parse().unwrap(),
            remote_addr: raddr.parse().unwrap(),
            remote_port: rport,
            ..DumpedSocket::test(ConnType::Tcp, state)
        }
    }

    #[test]
    fn a_dump_groups_ports_in_the_range_by_destination() {
        let mut dump = vec![
            // A listener in the range: its accepted sockets are not ephemeral.
            sock(TCP_LISTEN, SocketKind::Full, 1100, "0.0.0.0", 0),
            sock(TCP_ESTABLISHED, SocketKind::Full, 1100, "10.0.0.9", 40000),
            sock(TCP_TIME_WAIT, SocketKind::TimeWait, 1100, "10.0.0.9", 40001),
            // Outside the range.
            sock(TCP_ESTABLISHED, SocketKind::Full, 999, "10.0.0.2", 80),
            // Still connecting: no port counted.
            sock(TCP_SYN_SENT, SocketKind::Full, 1001, "10.0.0.2", 80),
        ];
        for p in 1000..1090 {
            dump.push(sock(TCP_ESTABLISHED, SocketKind::Full, p, "10.0.0.2", 80));
        }
        for p in 1090..1095 {
            dump.push(sock(TCP_TIME_WAIT, SocketKind::TimeWait, p, "10.0.0.2", 80));
        }
        // An orphaned FIN_WAIT2 is a time-wait mini-socket too: in use, not
        // in TIME_WAIT.
        dump.push(sock(
            TCP_FIN_WAIT2,
            SocketKind::TimeWait,
            1095,
            "10.0.0.2",
            80,
        ));
        dump.push(sock(
            TCP_ESTABLISHED,
            SocketKind::Full,
            1096,
            "10.0.0.3",
            443,
        ));
        let all = from_dump(&dump, &range());
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(
            (
                all[0].raddr.to_string(),
                all[0].rport,
                all[0].in_use,
                all[0].time_wait
            ),
            ("10.0.0.2".into(), 80, 96, 5)
        );
        assert_eq!(all[0].utilization, 0.48);
        let f = figures(&range(), &all, 1, Some(0));
        assert_eq!(f.top.len(), 1);
        assert_eq!(
            f.others,
            OtherDestinations {
                destinations: 1,
                in_use: 1
            }
        );
        assert_eq!((f.range, f.size), ([1000, 1199], 200));
    }

    #[test]
    fn negative_or_empty_destinations_are_left_out() {
        let d = destination(
            &sock(TCP_ESTABLISHED, SocketKind::Full, 1000, "10.0.0.2", 80),
            7,
        );
        let full = HashMap::from([(d, 0), (Destination { rport: 81, ..d }, -1)]);
        assert!(destinations(&range(), &full, &HashMap::new()).is_empty());
    }
}
