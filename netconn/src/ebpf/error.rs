//! Why the programs could not be loaded, attached or read: one type for
//! every part of the loader and every feature's maps, with the map
//! helpers the probe and the feature handles share.

use std::io;

use aya::programs::ProgramError;

use super::btf::BtfError;

pub(super) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// A load or attach error of aya, boxed: the object's loader and the
/// programs fail with different types.
pub type AyaError = Box<dyn std::error::Error + Send + Sync>;

/// Why the programs could not be loaded, attached or read. Each variant
/// keeps its cause as a source; messages are one line, a verifier log cut
/// to the line that refused the program (see `describe`).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read {VMLINUX_BTF} ({0}): the kernel needs CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf(#[source] io::Error),
    #[error("kernel BTF: {0}")]
    Btf(#[from] BtfError),
    #[error("parsing the kernel BTF failed: {}", describe(.0.as_ref()))]
    ParseBtf(#[source] AyaError),
    #[error("{0} panicked")]
    Panicked(&'static str),
    #[error(
        "loading eBPF failed: {} (netconn needs root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN)",
        describe(.0.as_ref())
    )]
    Permission(#[source] AyaError),
    #[error("loading eBPF failed: {}", describe(.0.as_ref()))]
    Load(#[source] AyaError),
    #[error("program {0} missing from the object")]
    MissingProgram(String),
    #[error("program {name}: {}", describe(.source))]
    Program {
        name: String,
        #[source]
        source: ProgramError,
    },
    #[error("{0}: not a cgroup program")]
    NotCgroup(&'static str),
    #[error("attaching to tracepoint {tracepoint} failed: {}", describe(.source))]
    Attach {
        tracepoint: String,
        #[source]
        source: ProgramError,
    },
    #[error("cannot open the cgroup v2 root for the UDP programs: {0}")]
    Cgroup(#[source] io::Error),
    #[error("attaching {name} at the cgroup v2 root failed: {}", describe(.source))]
    AttachCgroup {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("reading program info: {0}")]
    ProgramInfo(#[source] io::Error),
    #[error("cannot read the network namespace cookie (SO_NETNS_COOKIE, Linux 5.14+): {0}")]
    NetnsCookie(#[source] io::Error),
    #[error("cannot count CPUs: {0}")]
    Cpus(#[source] io::Error),
    #[error("cannot duplicate an eBPF map's descriptor: {0}")]
    Dup(#[source] io::Error),
    #[error("eBPF map {0} missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// An error and its sources on one line. A verifier log (hundreds of
/// lines) is cut to its last line, which says why the program was refused.
pub(super) fn describe(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        // Some errors already print their source: say it once.
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    if std::env::var_os("NETCONN_VERIFIER_LOG").is_some() {
        eprintln!("{msg}");
    }
    if let Some(at) = msg.find("Verifier output:") {
        let reason = msg[at..]
            .lines()
            .rev()
            .find(|l| {
                !l.trim().is_empty()
                    && !l.contains("processed ")
                    && !l.contains("verification time")
                    && !l.contains("stack depth")
                    && !l.starts_with(':')
            })
            .unwrap_or("")
            .trim()
            .to_owned();
        msg.truncate(at);
        msg.push_str("the verifier refused it: ");
        msg.push_str(&reason);
    }
    msg.replace('\n', " ")
}

/// Wraps a map error with the map's name.
pub(super) fn map_error(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> ProbeError {
    move |source| ProbeError::Map { map, source }
}

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
