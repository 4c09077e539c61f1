//! The ephemeral-port maps (see [`netconn_common::ephemeral`]), taken out
//! of the probe: only the live ephemeral-port tracker reads and writes them.

use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap};
use netconn_common::{
    Destination, DestinationKey, EphemeralControl, MAP_EPHEMERAL_CONTROL, MAP_EPHEMERAL_COUNTS,
    MAP_EPHEMERAL_MARKED, MAP_EPHEMERAL_UNTRACKED, MAP_EPHEMERAL_WINDOW,
};

use super::error::{ProbeError, map_error};
use super::maps::{counter, removed, take_map};

const BPF_NOEXIST: u64 = 1;
/// The kernel's own "not supported" (not in libc).
const ENOTSUPP: i32 = 524;

pub struct EphemeralMaps {
    marked: HashMap<MapData, u64, Destination>,
    /// The same map's descriptor, for batched updates (aya has none).
    marked_fd: std::os::fd::OwnedFd,
    counts: PerCpuHashMap<MapData, DestinationKey, u64>,
    window: HashMap<MapData, u64, u8>,
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
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, ProbeError> {
        // Untyped first: its descriptor is kept for batched updates.
        let marked = (ebpf.take_map(MAP_EPHEMERAL_MARKED))
            .ok_or(ProbeError::MissingMap(MAP_EPHEMERAL_MARKED))?;
        let marked_fd = match &marked {
            aya::maps::Map::HashMap(data) => {
                use std::os::fd::AsFd;
                data.fd()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| ProbeError::Map {
                        map: MAP_EPHEMERAL_MARKED,
                        source: MapError::SyscallError(aya::sys::SyscallError {
                            call: "dup",
                            io_error: e,
                        }),
                    })?
            }
            _ => return Err(ProbeError::MissingMap(MAP_EPHEMERAL_MARKED)),
        };
        Ok(Self {
            marked: HashMap::try_from(marked).map_err(map_error(MAP_EPHEMERAL_MARKED))?,
            marked_fd,
            counts: take_map(ebpf, MAP_EPHEMERAL_COUNTS)?,
            window: take_map(ebpf, MAP_EPHEMERAL_WINDOW)?,
            control: take_map(ebpf, MAP_EPHEMERAL_CONTROL)?,
            untracked: take_map(ebpf, MAP_EPHEMERAL_UNTRACKED)?,
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

    /// Counts a socket for userspace unless the programs count it: the
    /// one-at-a-time form of [`EphemeralMaps::claim_unclaimed`], for
    /// kernels without batches.
    fn claim(&mut self, cookie: u64, dest: &Destination) -> Result<Claim, ProbeError> {
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

    /// Claims sockets no program counts or claims (the sock_ops program's
    /// counts are marks, not claims): one system call for all of them
    /// (`BPF_MAP_UPDATE_BATCH`; at 100,000 sockets one call per socket
    /// took a quarter of a second). A full table refuses the rest.
    pub fn claim_unclaimed(
        &mut self,
        sockets: &[(u64, Destination)],
    ) -> Result<Vec<Claim>, ProbeError> {
        let (keys, values): (Vec<u64>, Vec<Destination>) = sockets.iter().copied().unzip();
        let mut out = Vec::with_capacity(sockets.len());
        while out.len() < sockets.len() {
            let at = out.len();
            let (written, done) = update_batch(&self.marked_fd, &keys[at..], &values[at..]);
            out.extend(std::iter::repeat_n(Claim::Claimed, written));
            let Err(e) = done else { continue };
            match e.raw_os_error() {
                // No room left: the rest is not counted.
                Some(libc::E2BIG | libc::ENOMEM) => out.resize(sockets.len(), Claim::Full),
                // Kernels without batches for this map: one at a time.
                Some(libc::EINVAL | ENOTSUPP | libc::EOPNOTSUPP) if written == 0 => {
                    let (cookie, dest) = sockets[at];
                    out.push(self.claim(cookie, &dest)?);
                }
                _ => {
                    return Err(map_error(MAP_EPHEMERAL_MARKED)(MapError::SyscallError(
                        aya::sys::SyscallError {
                            call: "bpf_map_update_batch",
                            io_error: e,
                        },
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The cookies the sock_ops program noted while the window was open.
    pub fn window(&self) -> Vec<u64> {
        self.window.keys().filter_map(Result::ok).collect()
    }

    /// Empties the window's notes (only once the window is closed).
    pub fn clear_window(&mut self) {
        for cookie in self.window() {
            let _ = self.window.remove(&cookie);
        }
    }

    /// Undoes a claim: its destination when this call removed the entry
    /// (the programs had not, at the socket's close).
    pub fn unclaim(&mut self, cookie: u64) -> Option<Destination> {
        let dest = self.marked.get(&cookie, 0).ok()?;
        self.marked.remove(&cookie).ok().map(|()| dest)
    }

    /// Whether a socket is claimed (by userspace or the programs).
    pub fn is_claimed(&self, cookie: u64) -> bool {
        self.marked.get(&cookie, 0).is_ok()
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
        removed(MAP_EPHEMERAL_COUNTS, self.counts.remove(key))
    }

    /// Sockets the programs left out of a count (a full map), since load.
    pub fn untracked(&self) -> Result<u64, ProbeError> {
        counter(&self.untracked, 0, MAP_EPHEMERAL_UNTRACKED)
    }
}

/// `BPF_MAP_UPDATE_BATCH` of every key with its value (`BPF_ANY`: the
/// kernel takes no per-element flag in a batch).
fn update_batch(
    fd: &std::os::fd::OwnedFd,
    keys: &[u64],
    values: &[Destination],
) -> (usize, std::io::Result<()>) {
    use std::os::fd::AsRawFd;
    // enum bpf_cmd (linux/bpf.h).
    const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
    // The `batch` member of `union bpf_attr` (linux/bpf.h).
    #[repr(C)]
    #[derive(Default)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: keys.len().min(values.len()) as u32,
        map_fd: fd.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: attr points at keys and values that outlive the call, and
    // count is no more than either holds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            std::ptr::from_mut::<BatchAttr>(&mut attr),
            std::mem::size_of::<BatchAttr>() as u32,
        )
    };
    let result = match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    };
    // The kernel writes back how many it updated, on failure too (not
    // when it refused the request as a whole: then none).
    let written = match &result {
        Ok(()) => keys.len(),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => 0,
        Err(_) => (attr.count as usize).min(keys.len()),
    };
    (written, result)
}
