//! The connection records' maps (`watch --events`), kept by the probe:
//! the ring buffer the programs write a record to at every open and close
//! (taken by the thread that drains it), the records it had no room for,
//! and the process behind each socket the programs saw connect, listen or
//! be accepted.

use aya::Ebpf;
use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use netconn_common::{ConnEvent, MAP_CONN_EVENTS, MAP_CONN_LOST, MAP_OWNERS, Owner};

use super::error::{ProbeError, map_error};
use super::maps::{counter, take_map};

pub struct ConnMaps {
    /// With `watch --events`, until a drain thread takes it.
    ring: Option<ConnRing>,
    lost: PerCpuArray<MapData, u64>,
    owners: HashMap<MapData, u64, Owner>,
}

impl ConnMaps {
    pub(super) fn take(ebpf: &mut Ebpf, records: bool) -> Result<Self, ProbeError> {
        let ring = match records {
            true => Some(ConnRing(take_map(ebpf, MAP_CONN_EVENTS)?)),
            false => None,
        };
        Ok(Self {
            ring,
            lost: take_map(ebpf, MAP_CONN_LOST)?,
            owners: take_map(ebpf, MAP_OWNERS)?,
        })
    }

    /// The ring buffer of connection records, for a thread that drains
    /// it: the first call only.
    pub fn take_ring(&mut self) -> Option<ConnRing> {
        self.ring.take()
    }

    /// Connection records the ring buffer could not take, since load.
    pub fn records_lost(&self) -> Result<u64, ProbeError> {
        counter(&self.lost, 0, MAP_CONN_LOST)
    }

    /// The processes behind the TCP sockets the programs saw connect,
    /// listen or be accepted, by socket cookie.
    pub fn owners(&self) -> Vec<(u64, Owner)> {
        // An entry removed during the walk is skipped.
        self.owners.iter().filter_map(Result::ok).collect()
    }

    /// A handle of its own on the owners map (the same kernel map), for
    /// a thread that answers `list` without the loop that holds the probe.
    pub fn owners_reader(&self) -> Result<OwnersReader, ProbeError> {
        use aya::maps::IterableMap;
        use std::os::fd::AsFd;
        // A duplicate of our descriptor: opening the map by id would need
        // CAP_SYS_ADMIN, which the service's unit does not grant.
        let fd = (self.owners.map().fd().as_fd())
            .try_clone_to_owned()
            .map_err(ProbeError::Dup)?;
        let map = MapData::from_fd(fd).map_err(map_error(MAP_OWNERS))?;
        let map = aya::maps::Map::from_map_data(map).map_err(map_error(MAP_OWNERS))?;
        Ok(OwnersReader(
            HashMap::try_from(map).map_err(map_error(MAP_OWNERS))?,
        ))
    }

    /// The process behind one socket (pid, comm), if the programs
    /// recorded it.
    pub fn owner_of(&self, cookie: u64) -> Option<(u32, String)> {
        Some(self.owners.get(&cookie, 0).ok()?.process())
    }
}

/// The owners map, read from another thread than the probe's.
pub struct OwnersReader(HashMap<MapData, u64, Owner>);

impl OwnersReader {
    /// The processes behind the TCP sockets, by socket cookie (see
    /// [`ConnMaps::owners`]).
    pub fn owners(&self) -> Vec<(u64, Owner)> {
        self.0.iter().filter_map(Result::ok).collect()
    }
}

/// The ring buffer of connection records (`watch --events`).
pub struct ConnRing(RingBuf<MapData>);

impl ConnRing {
    /// Moves every record waiting in the ring buffer into `out`.
    pub fn drain(&mut self, out: &mut Vec<ConnEvent>) {
        while let Some(item) = self.0.next() {
            out.extend(ConnEvent::from_bytes(&item));
        }
    }

    /// Waits until a quarter of the ring waits (the kernel wakes the
    /// ring's fd only then: see `submit_flags` in the kernel programs), or
    /// `timeout` has passed: the timeout bounds how late a record is.
    pub fn wait(&self, timeout: std::time::Duration) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let _ = poll(&mut fds, ms);
    }
}
