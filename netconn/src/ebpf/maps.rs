//! The map helpers the probe and every feature's handles share: taking a
//! typed map out of the loaded object, per-CPU counters and values,
//! removals that tolerate an entry already gone.

use super::error::{ProbeError, map_error};

/// Takes map `name` out of the loaded object as its typed handle.
pub(super) fn take_map<T>(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(ProbeError::MissingMap(name))?;
    T::try_from(map).map_err(map_error(name))
}

/// Slot `index` of a per-CPU counter array, summed over CPUs.
pub(super) fn counter(
    map: &aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    index: u32,
    name: &'static str,
) -> Result<u64, ProbeError> {
    Ok(map.get(&index, 0).map_err(map_error(name))?.iter().sum())
}

/// What removing a map entry came to, an entry already gone counting as
/// removed (the programs or an earlier pass may have taken it).
pub(super) fn removed(
    name: &'static str,
    result: Result<(), aya::maps::MapError>,
) -> Result<(), ProbeError> {
    match result {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(e) => Err(map_error(name)(e)),
    }
}

/// One value per possible CPU, for writing a per-CPU map entry.
pub(super) fn on_every_cpu<T: aya::Pod>(
    value: T,
) -> Result<aya::maps::PerCpuValues<T>, ProbeError> {
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| ProbeError::Cpus(e))?;
    aya::maps::PerCpuValues::try_from(vec![value; cpus]).map_err(ProbeError::Cpus)
}
