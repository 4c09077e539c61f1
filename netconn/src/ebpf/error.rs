//! Why the programs could not be loaded, attached or read: one type for
//! every part of the loader and every feature's maps.

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
