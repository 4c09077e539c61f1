//! The cgroup v2 root the socket lifecycle programs attach to, and the
//! namespace cookie they filter on.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Opens the root of the cgroup v2 hierarchy. Its mount point is taken from
/// `/proc/self/mounts` (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
/// hybrid layout); where none is visible (`ip netns exec` remounts `/sys`
/// without it), a private mount is made, opened and detached at once: the
/// open directory is all an attachment needs.
pub fn open_root() -> io::Result<OwnedFd> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    if let Some(dir) = cgroup2_mount(&mounts) {
        return Ok(File::open(dir)?.into());
    }
    mount_privately()
}

/// The first cgroup2 mount point listed in a mounts table.
pub fn cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, dir, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount_path(dir)))
    })
}

/// `/proc/self/mounts` writes space, tab, newline and backslash as octal.
fn unescape_mount_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn mount_privately() -> io::Result<OwnedFd> {
    let path = nix::unistd::mkdtemp("/tmp/netconn-cgroup2-XXXXXX")?;
    let result = mount_and_open(&path);
    let _ = std::fs::remove_dir(&path);
    result
}

fn mount_and_open(path: &Path) -> io::Result<OwnedFd> {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    mount(
        Some("cgroup2"),
        path,
        Some("cgroup2"),
        MsFlags::empty(),
        None::<&str>,
    )?;
    let opened = File::open(path);
    // Detaching leaves the open directory usable.
    let _ = umount2(path, MntFlags::MNT_DETACH);
    Ok(opened?.into())
}

/// `SO_NETNS_COOKIE` (Linux 5.14), not in every libc crate yet.
const SO_NETNS_COOKIE: libc::c_int = 71;

// The macro calls itself and its getter by name.
use nix::{getsockopt_impl, sockopt_impl};
sockopt_impl!(
    /// The cookie of the socket's network namespace.
    NetnsCookie,
    GetOnly,
    libc::SOL_SOCKET,
    SO_NETNS_COOKIE,
    u64
);

/// Cookie of the calling thread's network namespace: what
/// `bpf_get_netns_cookie()` returns for its sockets.
pub fn netns_cookie() -> io::Result<u64> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, getsockopt, socket};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    Ok(getsockopt(&sock, NetnsCookie)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_among_v1_ones() {
        let mounts = "sysfs /sys sysfs rw 0 0\n\
            tmpfs /sys/fs/cgroup tmpfs ro 0 0\n\
            cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0\n\
            cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n";
        assert_eq!(
            cgroup2_mount(mounts),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_mount("sysfs /sys sysfs rw 0 0\n"), None);
    }

    #[test]
    fn unescapes_octal_in_mount_paths() {
        assert_eq!(unescape_mount_path(r"/mnt/my\040cg"), "/mnt/my cg");
        assert_eq!(unescape_mount_path(r"/a\\b"), r"/a\\b");
    }
}
