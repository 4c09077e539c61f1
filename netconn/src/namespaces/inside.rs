//! Files read from inside a container, which its processes control: every
//! such read is resolved inside the container's root, with the
//! credentials of the container's process, of regular files only, bounded
//! in size and in time.
//!
//! A plain `read("/proc/PID/root/var/run/...")` by a root daemon follows an
//! absolute symlink of the container against the daemon's root (a pod
//! links the file to `/root/secret` and the daemon publishes the host's
//! file), reads `/dev/zero` until memory runs out, and blocks on a named
//! pipe or a FUSE file. Here:
//! - the path is resolved by `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//!   against the process's root, so that `..` and absolute links stay in
//!   it (an image's `/var/run -> /run` then works as it does inside);
//! - it is opened `O_PATH` (which opens no device and no pipe), checked to
//!   be a regular file of at most the size asked for, and only then
//!   reopened for reading;
//! - all of that on a thread that carries the process's file-system
//!   credentials (`setfsuid`/`setfsgid` and its groups, per thread), which
//!   drops root's `CAP_DAC_OVERRIDE`: what the process may not read, the
//!   daemon does not read for it;
//! - the caller waits at most [`PATIENCE`]; a read that hangs (a FUSE
//!   server that never answers) is abandoned, and once [`MAX_STUCK`]
//!   threads hang no more reads are tried.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a caller waits for one read.
pub const PATIENCE: Duration = Duration::from_millis(200);
/// Reads still hanging past which no more are tried.
pub const MAX_STUCK: usize = 4;

static STUCK: AtomicUsize = AtomicUsize::new(0);

/// A process's file-system credentials, as `/proc/PID/status` gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub fsuid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
}

impl Credentials {
    /// From the text of `/proc/PID/status`: the fourth figures of `Uid:`
    /// and `Gid:` (real, effective, saved, file system) and `Groups:`.
    pub fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|rest| {
                    rest.split_whitespace()
                        .map(str::parse::<u32>)
                        .collect::<Result<Vec<u32>, _>>()
                })
        };
        let uid = field("Uid:")?.ok()?;
        let gid = field("Gid:")?.ok()?;
        let groups = field("Groups:")?.ok()?;
        Some(Self {
            fsuid: *uid.get(3)?,
            fsgid: *gid.get(3)?,
            groups,
        })
    }

    fn of(pid: u32) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
    }
}

/// Reads the file at `path` (absolute, as the process sees it) inside the
/// root of process `pid`, as that process could: its text when it is a
/// regular file of at most `max` bytes in UTF-8; None otherwise, or when
/// the read did not end within [`PATIENCE`].
pub fn read_in_root(pid: u32, path: &str, max: usize) -> Option<String> {
    if STUCK.load(Ordering::Acquire) >= MAX_STUCK {
        return None;
    }
    let creds = Credentials::of(pid)?;
    // The process's root (a magic link, followed here by the daemon: it
    // is what the container calls "/"), held so the pid may go.
    let root: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(format!("/proc/{pid}/root"))
        .ok()?
        .into();
    let path = CString::new(path).ok()?;
    let (tx, rx) = std::sync::mpsc::channel();
    STUCK.fetch_add(1, Ordering::AcqRel);
    let spawned = std::thread::Builder::new()
        .name("netconn-inside".into())
        .spawn(move || {
            let text = as_process(&creds, || open_regular(&root, &path, max));
            STUCK.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(text);
        });
    if spawned.is_err() {
        STUCK.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    rx.recv_timeout(PATIENCE).ok().flatten()
}

/// Runs `f` with the calling thread's file-system credentials set to
/// `creds`: only call it on a thread of its own that ends after `f`.
/// None when they cannot be taken.
fn as_process<T>(creds: &Credentials, f: impl FnOnce() -> Option<T>) -> Option<T> {
    // setgroups(2) as a raw system call: glibc's wrapper would change
    // every thread of the daemon.
    // SAFETY: the pointer and length describe a live slice of gid_t (u32).
    let set = unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            creds.groups.len(),
            creds.groups.as_ptr(),
        )
    };
    if set != 0 {
        return None;
    }
    // setfsgid/setfsuid are per thread and answer with the previous value,
    // so a second call tells whether the first took.
    // SAFETY: no preconditions; they change only this thread's credentials.
    let taken = unsafe {
        libc::setfsgid(creds.fsgid);
        libc::setfsuid(creds.fsuid);
        libc::setfsgid(creds.fsgid) as u32 == creds.fsgid
            && libc::setfsuid(creds.fsuid) as u32 == creds.fsuid
    };
    if !taken {
        return None;
    }
    f()
}

/// Opens `path` under `root` (resolved inside it), and reads it when it is
/// a regular file of at most `max` bytes.
fn open_regular(root: &OwnedFd, path: &CString, max: usize) -> Option<String> {
    // SAFETY: open_how is plain integers; all zero is its empty value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the descriptor, the NUL-terminated path and the open_how of
    // the size given are valid for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            std::ptr::from_ref::<libc::open_how>(&how),
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let located = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let located = File::from(located);
    let meta = located.metadata().ok()?;
    let kind = meta.file_type();
    if !kind.is_file() || meta.len() > max as u64 {
        return None;
    }
    // Reopened through our own descriptor: the permission check of an
    // open is made now, with the process's credentials.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/thread-self/fd/{}", located.as_raw_fd()))
        .ok()?;
    let mut bytes = Vec::with_capacity(max.min(4096));
    (&mut file)
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() > max {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// Whether `s` is a DNS label (RFC 1123), as Kubernetes namespace names
/// are: 1 to 63 of `a-z`, `0-9` and `-`, starting and ending with a
/// letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| edge(c) || *c == b'-')
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
}

/// Whether `s` can be a host name as the kernel keeps it and as pods get
/// them: 1 to 64 of letters, digits, `-`, `.` and `_`.
pub fn is_host_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_the_file_system_ones() {
        let status = "Name:\tsleep\nUid:\t1000\t1001\t1002\t1003\nGid:\t2000\t2001\t2002\t2003\nGroups:\t4 24 \n";
        assert_eq!(
            Credentials::parse(status),
            Some(Credentials {
                fsuid: 1003,
                fsgid: 2003,
                groups: vec![4, 24]
            })
        );
        let none = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n";
        assert_eq!(Credentials::parse(none).unwrap().groups, Vec::<u32>::new());
        assert_eq!(Credentials::parse("Uid:\t0\t0\n"), None);
        assert_eq!(Credentials::parse("Uid:\tx\t0\t0\t0\n"), None);
    }

    #[test]
    fn namespace_names_are_dns_labels() {
        for good in ["default", "kube-system", "a", "0a", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Default",
            "a.b",
            "a b",
            "a\nb",
            "\x1b[31m",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn host_names_have_no_control_characters() {
        assert!(is_host_name("api-7d9f8b-x2x4q"));
        assert!(is_host_name("web_1.example"));
        for bad in ["", "a b", "\x1b]0;PWNED\x07", "é", &"a".repeat(65)] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn our_own_files_read_as_ourselves() {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("netconn-inside-{pid}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ns");
        std::fs::write(&file, "default\n").unwrap();
        let path = file.to_str().unwrap();
        assert_eq!(read_in_root(pid, path, 64).as_deref(), Some("default\n"));
        // Over the bound: nothing.
        assert_eq!(read_in_root(pid, path, 4), None);
        // Not a regular file: nothing, at once.
        assert_eq!(read_in_root(pid, "/dev/zero", 64), None);
        assert_eq!(read_in_root(pid, dir.to_str().unwrap(), 64), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
