//! Every network namespace of the host that a process is in or that has a
//! name under /run/netns, found the way `lsns` and `ip netns` find them.
//! A namespace with no process and no name is gone: `watch -A` then lets
//! go of the files and sockets it keeps of it (which keep it alive until
//! then), and it goes away as it would without netconn.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::namespaces::inside;
use crate::namespaces::owner::{self, Owner};
use crate::namespaces::target::NAMED_DIR;

/// One network namespace, by its inode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    pub inode: u32,
    /// Processes in it (their main threads), lowest first.
    pub pids: Vec<u32>,
    /// Its names under /run/netns.
    pub names: Vec<String>,
}

/// How a namespace is entered from the calling thread: it is the
/// thread's own (read from here), or one found on the host (visited).
#[derive(Clone, Copy)]
pub enum Way<'a> {
    Here,
    In(&'a Namespace),
}

impl Way<'_> {
    /// Runs `f` inside the namespace, on the calling thread; None when it
    /// cannot be entered (gone).
    pub fn visit<T>(self, f: impl FnOnce() -> T) -> Option<T> {
        match self {
            Way::Here => Some(f()),
            Way::In(ns) => crate::namespaces::target::visit(&ns.open()?, f).ok(),
        }
    }
}

/// The namespace inode a `/proc/PID/ns/net` link names: "net:[4026531840]".
fn link_inode(link: &std::path::Path) -> Option<u32> {
    let target = std::fs::read_link(link).ok()?;
    let s = target.to_str()?;
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Every namespace with a process in it or a name, by inode.
pub fn scan() -> BTreeMap<u32, Namespace> {
    let mut found: BTreeMap<u32, Namespace> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(inode) = link_inode(&entry.path().join("ns/net")) {
                let ns = found.entry(inode).or_default();
                ns.inode = inode;
                ns.pids.push(pid);
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir(NAMED_DIR) {
        for entry in dir.flatten() {
            let (Ok(meta), Some(name)) = (
                entry.metadata(),
                entry.file_name().to_str().map(str::to_owned),
            ) else {
                continue;
            };
            // An unmounted leftover is a plain empty file of the tmpfs.
            if meta.dev() != nsfs_dev() {
                continue;
            }
            let ns = found.entry(meta.ino() as u32).or_default();
            ns.inode = meta.ino() as u32;
            ns.names.push(name);
        }
    }
    for ns in found.values_mut() {
        ns.pids.sort_unstable();
        ns.names.sort();
    }
    found
}

/// The device of the namespace filesystem, which every namespace file
/// (ours included) is on.
fn nsfs_dev() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.dev())
        .unwrap_or(0)
}

impl Namespace {
    /// Paths that lead to this namespace while it lives.
    fn paths(&self) -> impl Iterator<Item = PathBuf> + '_ {
        let names = self.names.iter().map(|n| PathBuf::from(NAMED_DIR).join(n));
        let pids = self
            .pids
            .iter()
            .map(|p| PathBuf::from(format!("/proc/{p}/ns/net")));
        names.chain(pids)
    }

    /// The namespace's file, opened for entering (a process may have left
    /// it, and a pid been reused, since the scan: the inode is checked).
    /// None when no way into it is left: it is gone.
    pub fn open(&self) -> Option<File> {
        self.paths().find_map(|p| {
            let f = File::open(p).ok()?;
            (f.metadata().ok()?.ino() as u32 == self.inode).then_some(f)
        })
    }

    /// Whether the namespace is owned by the user namespace netconn runs
    /// in (the host's): made by root, a runtime or the kubelet, not by an
    /// unprivileged user inside a user namespace of their own. False when
    /// it cannot be told (the namespace is gone).
    pub fn owned_by_host_users(&self) -> bool {
        // NS_GET_USERNS, _IO(0xb7, 0x1): the owning user namespace.
        const NS_GET_USERNS: libc::c_ulong = 0xb701;
        let Some(file) = self.open() else {
            return false;
        };
        // SAFETY: an ioctl on a descriptor we own; it returns a new one.
        let fd = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&file), NS_GET_USERNS) };
        if fd < 0 {
            return false;
        }
        // SAFETY: the ioctl returned a new descriptor that nothing else owns.
        let owner = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let ours = std::fs::metadata("/proc/thread-self/ns/user").map(|m| m.ino());
        matches!((owner.metadata().map(|m| m.ino()), ours), (Ok(a), Ok(b)) if a == b)
    }

    /// A process of the namespace's own `/proc/PID/net`, for the tables
    /// read from files: the namespace's sockstat, snmp and conntrack.
    pub fn proc_net(&self) -> Option<PathBuf> {
        self.pids
            .iter()
            .find(|p| link_inode(&PathBuf::from(format!("/proc/{p}/ns/net"))) == Some(self.inode))
            .map(|p| PathBuf::from(format!("/proc/{p}/net")))
    }

    /// What the namespace belongs to.
    pub fn owner(&self) -> Owner {
        const PIDS: usize = 5;
        const LOOKED_AT: usize = 64;
        // Kernel threads (the host's namespace is theirs) own nothing.
        let users: Vec<u32> = self
            .pids
            .iter()
            .copied()
            .filter(|p| !is_kernel_thread(*p))
            .take(LOOKED_AT)
            .collect();
        let cgroups: Vec<(u32, String)> = users
            .iter()
            .filter_map(|&p| Some((p, cgroup_of(p)?)))
            .collect();
        let mut owner = Owner {
            netns_name: self.names.first().cloned(),
            pids: users.iter().take(PIDS).copied().collect(),
            ..Owner::default()
        };
        // One name for each pid, in the same order (a process gone
        // meanwhile has an empty name).
        owner.comm = (owner.pids.iter())
            .map(|p| crate::host::comm_of(*p).unwrap_or_default())
            .collect();
        if let Some((pid, path)) = owner::pick(&cgroups) {
            let names = owner::parse_cgroup(path);
            owner.cgroup = Some(path.clone());
            owner.runtime = names.runtime;
            owner.container_id = names.container_id;
            if let Some(uid) = &names.k8s_pod_uid {
                owner.k8s_pod_name = uts_hostname(*pid).filter(|h| inside::is_host_name(h));
                // The pod's first process is its infrastructure ("pause")
                // container, which mounts no service account: each of the
                // pod's processes is asked in turn.
                owner.k8s_namespace = cgroups
                    .iter()
                    .filter(|(_, c)| owner::parse_cgroup(c).k8s_pod_uid.as_ref() == Some(uid))
                    .take(SERVICE_ACCOUNT_TRIES)
                    .find_map(|(p, _)| service_account_namespace(*p));
            }
            owner.k8s_pod_uid = names.k8s_pod_uid;
        }
        owner
    }
}

/// Processes of a pod asked for its service account's namespace.
const SERVICE_ACCOUNT_TRIES: usize = 16;

/// The Kubernetes namespace of the service account mounted in the root of
/// process `pid`, read as [`inside`] reads a container's files, when it is
/// a DNS label (anything else is not published).
fn service_account_namespace(pid: u32) -> Option<String> {
    const PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
    // A namespace name is at most 63 bytes; a newline may follow.
    let text = inside::read_in_root(pid, PATH, 64)?;
    let name = text.trim_end_matches('\n');
    inside::is_dns_label(name).then(|| name.to_owned())
}

/// Whether `pid` is a kernel thread: it has no command line (nor has a
/// zombie, which owns nothing either).
fn is_kernel_thread(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |c| c.is_empty())
}

/// The cgroup v2 path of a process ("0::/path" in /proc/PID/cgroup).
fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// The host name of a process's UTS namespace, read from a thread that
/// joins it for the call.
fn uts_hostname(pid: u32) -> Option<String> {
    use nix::sched::{CloneFlags, setns};
    let file = File::open(format!("/proc/{pid}/ns/uts")).ok()?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(&file, CloneFlags::CLONE_NEWUTS).ok()?;
                nix::unistd::gethostname().ok()?.into_string().ok()
            })
            .join()
            .ok()
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_namespace_is_found_with_our_pid() {
        let own = crate::host::netns_inode().unwrap();
        let found = scan();
        let ns = &found[&own];
        assert!(ns.pids.contains(&std::process::id()), "{ns:?}");
        assert!(ns.open().is_some());
        assert!(ns.proc_net().is_some());
        let owner = ns.owner();
        assert!(!owner.pids.is_empty() && owner.pids.len() <= 5);
    }
}
