//! The ephemeral-port maps (see [`netconn_common::ephemeral`]), taken out
//! of the probe: only the live ephemeral-port tracker reads and writes them.

use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap};
use netconn_common::{
    Destination, DestinationKey, EphemeralControl, MAP_EPHEMERAL_CONTROL, MAP_EPHEMERAL_COUNTS,
    MAP_EPHEMERAL_MARKED, MAP_EPHEMERAL_UNTRACKED,
};

use super::probe::{ProbeError, map_error};

const BPF_NOEXIST: u64 = 1;

pub struct EphemeralMaps {
    marked: HashMap<MapData, u64, Destination>,
    counts: PerCpuHashMap<MapData, DestinationKey, u64>,
    control: Array<MapData, EphemeralControl>,
    untracked: PerCpuArray<MapData, u64>,
    current: EphemeralControl,
}

/// What a claim of a socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Now counted by userspace.
    Claimed,
    /// The programs count it already.
    Taken,
    /// No room left: not counted.
    Full,
}

impl EphemeralMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<EphemeralMaps, ProbeError> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(ProbeError::MissingMap(name));
        Ok(EphemeralMaps {
            marked: HashMap::try_from(take(MAP_EPHEMERAL_MARKED)?)
                .map_err(map_error(MAP_EPHEMERAL_MARKED))?,
            counts: PerCpuHashMap::try_from(take(MAP_EPHEMERAL_COUNTS)?)
                .map_err(map_error(MAP_EPHEMERAL_COUNTS))?,
            control: Array::try_from(take(MAP_EPHEMERAL_CONTROL)?)
                .map_err(map_error(MAP_EPHEMERAL_CONTROL))?,
            untracked: PerCpuArray::try_from(take(MAP_EPHEMERAL_UNTRACKED)?)
                .map_err(map_error(MAP_EPHEMERAL_UNTRACKED))?,
            current: EphemeralControl::default(),
        })
    }

    pub fn control(&self) -> EphemeralControl {
        self.current
    }

    /// Writes the control word; callers change one field at a time.
    pub fn set_control(&mut self, control: EphemeralControl) -> Result<(), ProbeError> {
        self.control
            .set(0, control, 0)
            .map_err(map_error(MAP_EPHEMERAL_CONTROL))?;
        self.current = control;
        Ok(())
    }

    /// Counts a socket for userspace unless the programs count it.
    pub fn claim(&mut self, cookie: u64, dest: &Destination) -> Result<Claim, ProbeError> {
        match self.marked.insert(cookie, dest, BPF_NOEXIST) {
            Ok(()) => Ok(Claim::Claimed),
            Err(MapError::SyscallError(e)) => match e.io_error.raw_os_error() {
                Some(libc::EEXIST) => Ok(Claim::Taken),
                Some(libc::E2BIG | libc::ENOMEM) => Ok(Claim::Full),
                _ => Err(map_error(MAP_EPHEMERAL_MARKED)(MapError::SyscallError(e))),
            },
            Err(e) => Err(map_error(MAP_EPHEMERAL_MARKED)(e)),
        }
    }

    /// Undoes a claim: true when this call removed the entry (the programs
    /// had not, at the socket's close).
    pub fn unclaim(&mut self, cookie: u64) -> bool {
        self.marked.remove(&cookie).is_ok()
    }

    /// Whether a socket is claimed (by userspace or the programs).
    pub fn is_claimed(&self, cookie: u64) -> bool {
        self.marked.get(&cookie, 0).is_ok()
    }

    /// The cookies of every claim.
    pub fn claimed(&self) -> Vec<u64> {
        self.marked.keys().filter_map(Result::ok).collect()
    }

    /// Every destination's count per generation (entries made meanwhile
    /// may be missed: they are read at the next call).
    pub fn counts(&self) -> Vec<(DestinationKey, i64)> {
        self.counts
            .iter()
            .filter_map(Result::ok)
            .map(|(k, per_cpu)| {
                (
                    k,
                    per_cpu.iter().fold(0u64, |a, v| a.wrapping_add(*v)) as i64,
                )
            })
            .collect()
    }

    /// Removes an entry of a generation the programs no longer count into.
    pub fn remove_count(&mut self, key: &DestinationKey) -> Result<(), ProbeError> {
        match self.counts.remove(key) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(())
            }
            Err(e) => Err(map_error(MAP_EPHEMERAL_COUNTS)(e)),
        }
    }

    /// Sockets the programs left out of a count (a full map), since load.
    pub fn untracked(&self) -> Result<u64, ProbeError> {
        let v = self
            .untracked
            .get(&0, 0)
            .map_err(map_error(MAP_EPHEMERAL_UNTRACKED))?;
        Ok(v.iter().sum())
    }
}
